/* Chat answers with citations: each "[n]" in an answer's text that names one of the passages listed
 * under it becomes a link that opens that passage beside the answer. Only text nodes are touched (the
 * answer's HTML was sanitised by the server), and answers that arrive later (a streamed answer is
 * replaced by the server's rendering when done) are handled as they are added to the page.
 */
(function () {
  "use strict";

  var CITE = /\[(\d{1,2})\]/g;

  function linkify(message) {
    if (!message || message.getAttribute("data-cites-linked")) return;
    var list = message.querySelector("[data-citations]");
    var body = message.querySelector(".markdown");
    if (!list || !body) return;
    message.setAttribute("data-cites-linked", "1");
    var walker = document.createTreeWalker(body, NodeFilter.SHOW_TEXT);
    var nodes = [];
    while (walker.nextNode()) nodes.push(walker.currentNode);
    nodes.forEach(function (node) {
      var text = node.nodeValue;
      CITE.lastIndex = 0;
      if (!CITE.test(text) || node.parentNode.closest("a,code,pre")) return;
      var out = document.createDocumentFragment(), last = 0, match;
      CITE.lastIndex = 0;
      while ((match = CITE.exec(text)) !== null) {
        var target = list.querySelector('[data-citation="' + match[1] + '"]');
        if (!target) continue;
        out.appendChild(document.createTextNode(text.slice(last, match.index)));
        var link = document.createElement("a");
        link.className = "cite";
        link.href = "#" + target.id;
        link.setAttribute("data-cite", match[1]);
        link.textContent = match[0];
        out.appendChild(link);
        last = match.index + match[0].length;
      }
      if (last === 0) return;
      out.appendChild(document.createTextNode(text.slice(last)));
      node.parentNode.replaceChild(out, node);
    });
  }

  function open(target) {
    target.open = true;
    target.classList.add("highlight");
    target.scrollIntoView({ block: "nearest" });
    window.setTimeout(function () { target.classList.remove("highlight"); }, 1500);
  }

  document.addEventListener("click", function (e) {
    var link = e.target.closest("a.cite");
    if (!link) return;
    var target = document.getElementById(link.getAttribute("href").slice(1));
    if (!target) return;
    e.preventDefault();
    open(target);
  });

  function scan(root) {
    if (root.matches && root.matches(".chat-msg")) linkify(root);
    if (root.querySelectorAll) root.querySelectorAll(".chat-msg").forEach(linkify);
  }

  function init() {
    scan(document);
    var log = document.getElementById("chat-log");
    if (!log || !window.MutationObserver) return;
    new MutationObserver(function (changes) {
      changes.forEach(function (change) { change.addedNodes.forEach(scan); });
    }).observe(log, { childList: true, subtree: true });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
