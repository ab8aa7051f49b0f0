// The import page's upload progress bar (htmx upload events); no inline script: the CSP forbids it.
(function () {
  var form = document.querySelector("[data-import-form]");
  var box = form.querySelector("[data-import-progress]"), bar = box.querySelector("[data-bar]"), text = box.querySelector("[data-progress-text]");
  var started = 0, timer = null;
  form.addEventListener("htmx:beforeRequest", function () {
    box.hidden = false; bar.style.width = "0%"; text.textContent = "Uploading…"; started = Date.now();
  });
  form.addEventListener("htmx:xhr:progress", function (e) {
    if (!e.detail.lengthComputable) return;
    var pct = Math.round(100 * e.detail.loaded / e.detail.total);
    bar.style.width = pct + "%";
    var mb = (e.detail.total / 1048576).toFixed(1);
    text.textContent = pct < 100 ? "Uploading " + pct + "% of " + mb + " MB" : "Uploaded " + mb + " MB; importing…";
    if (pct >= 100 && !timer) {
      box.classList.add("working");
      timer = setInterval(function () { text.textContent = "Uploaded " + mb + " MB; importing… " + Math.round((Date.now() - started) / 1000) + " s"; }, 1000);
    }
  });
  form.addEventListener("htmx:afterRequest", function () {
    clearInterval(timer); timer = null; box.classList.remove("working"); bar.style.width = "100%"; text.textContent = "Uploaded.";
  });
})();
