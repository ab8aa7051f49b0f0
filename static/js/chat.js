// The chat page: send a message, read the answer's server-sent events from a fetch stream, show
// the text as it arrives (as plain text: the server's sanitised Markdown replaces it when done).
(function () {
  const root = document.getElementById("chat");
  if (!root) return;
  const log = document.getElementById("chat-log");
  const form = document.getElementById("chat-form");
  const text = document.getElementById("chat-text");
  const send = document.getElementById("chat-send");
  const regen = document.getElementById("chat-regenerate");
  const status = document.getElementById("chat-status");
  // No text after this long: say why (the first answer after a server start loads the model).
  const SLOW_MS = 5000;
  let busy = false;

  // Regenerate needs an answer to redo: offered only once the conversation exists.
  function offerRegenerate() {
    const ready = Boolean(root.dataset.conversation) && !send.disabled;
    regen.hidden = !ready; regen.disabled = !ready;
  }

  function bubble(role, content) {
    const div = document.createElement("div");
    div.className = "chat-msg chat-" + role + (role === "assistant" ? " streaming" : "");
    const who = document.createElement("div");
    who.className = "msg-role";
    who.textContent = role === "assistant" ? "Assistant" : "You";
    const body = document.createElement("div");
    body.className = "markdown";
    const p = document.createElement("p");
    p.className = "plain";
    p.textContent = content;
    body.appendChild(p);
    div.append(who, body);
    log.appendChild(div);
    log.scrollTop = log.scrollHeight;
    return p;
  }

  function listConversation(event) {
    const list = document.querySelector(".chat-list");
    if (!list) return;
    list.querySelectorAll("li.muted").forEach((li) => li.remove());
    list.querySelectorAll("a.active").forEach((a) => a.classList.remove("active"));
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = "?c=" + event.conversation;
    a.className = "active";
    a.textContent = event.title || "Untitled";
    li.appendChild(a);
    list.prepend(li);
  }

  function replaceWith(node, html) {
    const holder = document.createElement("div");
    holder.innerHTML = html;  // rendered and sanitised by the server
    const fresh = holder.firstElementChild;
    node.replaceWith(fresh);
    if (window.htmx) window.htmx.process(fresh);
  }

  async function stream(url, body, retype) {
    busy = true; send.disabled = true; regen.disabled = true; status.textContent = "Thinking…";
    const answer = bubble("assistant", "");
    const box = answer.closest(".chat-msg");
    const slow = setTimeout(() => {
      if (!answer.textContent) status.textContent = "Still thinking… the first answer after a server start also loads the model (up to a minute).";
    }, SLOW_MS);
    try {
      const response = await fetch(url, {method: "POST", body: body, headers: {"X-CSRFToken": root.dataset.csrf}});
      if (!response.ok) {
        let detail = response.statusText;
        try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
        throw new Error(detail);
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, {stream: true});
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const line = buffer.slice(0, cut).replace(/^data: /, "");
          buffer = buffer.slice(cut + 2);
          const event = JSON.parse(line);
          if (event.type === "start") {
            if (root.dataset.conversation !== String(event.conversation)) listConversation(event);
            root.dataset.conversation = event.conversation;
            history.replaceState(null, "", "?c=" + event.conversation);
          } else if (event.type === "delta") {
            answer.textContent += event.text; status.textContent = "Writing…";
          } else if (event.type === "replace") {
            answer.textContent = event.text;
          } else if (event.type === "done") {
            replaceWith(box, event.html);
          } else if (event.type === "error") {
            answer.textContent = event.text; box.classList.add("failed");
          }
          log.scrollTop = log.scrollHeight;
        }
      }
      status.textContent = "";
    } catch (err) {
      answer.textContent = "Could not send: " + err.message;
      box.classList.add("failed");
      status.textContent = "";
      if (retype && !text.value) text.value = retype;  // nothing was stored: the message is not lost
    } finally {
      clearTimeout(slow);
      box.classList.remove("streaming");
      busy = false; send.disabled = false;
      offerRegenerate();
      text.focus();
    }
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const message = text.value.trim();
    if (!message || busy) return;
    const empty = document.getElementById("chat-empty");
    if (empty) empty.remove();
    bubble("user", message);
    const body = new FormData();
    body.append("text", message);
    body.append("conversation", root.dataset.conversation || "");
    text.value = "";
    stream(root.dataset.send, body, message);
  });

  text.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });

  regen.addEventListener("click", () => {
    if (busy || !root.dataset.conversation) return;
    const answers = log.querySelectorAll(".chat-msg.chat-assistant");
    if (answers.length) answers[answers.length - 1].remove();
    stream(root.dataset.regenerate.replace("/0/", "/" + root.dataset.conversation + "/"), new FormData());
  });
})();
