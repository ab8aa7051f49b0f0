// The overview page's keys: w writes, k ranks, v reviews (the targets come from data-shortcut-* attributes).
document.addEventListener("keydown", function (e) {
  if (e.ctrlKey || e.metaKey || e.altKey || /INPUT|TEXTAREA|SELECT/.test(e.target.tagName)) return;
  var holder = document.querySelector("[data-shortcut-w]");
  var go = holder && holder.getAttribute("data-shortcut-" + e.key);
  if (go && /^[a-z]$/.test(e.key)) window.location = go;
});
