/* Keyboard shortcuts and timing of the labeling and review pages (no dependencies but htmx).
 *
 * Task pages (#task): Ctrl+Enter submits, Esc or "s" opens the skip dialog, "f" the flag dialog,
 * "g" folds the guidelines, "/" jumps back to the answer, Alt+P previews the answer's Markdown. In a dialog, 1..9 choose a reason and
 * Enter confirms. Time spent on a task counts only while the tab is visible and is sent with it.
 * Review page (#review-item): "a" approve, "e" edit, "r" reject (type the reason, Enter).
 */
(function () {
  "use strict";

  var clock = { visibleMs: 0, since: null };

  function startClock() {
    clock.visibleMs = 0;
    clock.since = document.hidden ? null : performance.now();
  }
  function elapsedMs() {
    return Math.round(clock.visibleMs + (clock.since === null ? 0 : performance.now() - clock.since));
  }
  document.addEventListener("visibilitychange", function () {
    if (document.hidden && clock.since !== null) {
      clock.visibleMs += performance.now() - clock.since;
      clock.since = null;
    } else if (!document.hidden && clock.since === null) {
      clock.since = performance.now();
    }
  });

  function typing(el) {
    return el && (el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable ||
      (el.tagName === "INPUT" && !/^(checkbox|radio|button|submit)$/.test(el.type)));
  }
  function task() { return document.getElementById("task"); }
  function openDialog(name) {
    var t = task();
    var d = t && t.querySelector('dialog[data-dialog="' + name + '"]');
    if (!d || d.open) return;
    d.showModal();
    var first = d.querySelector("input[type=radio]:checked") || d.querySelector("input,button");
    if (first) first.focus();
  }
  function focusAnswer() {
    var t = task();
    var answer = t && t.querySelector("[data-answer]");
    if (answer) { answer.focus(); return true; }
    return false;
  }
  function submitForm(form) {
    if (!form) return;
    /* A key can beat htmx to a just-swapped form: make sure htmx handles it, or it would post as a plain page. */
    if (window.htmx) htmx.process(form);
    if (form.requestSubmit) form.requestSubmit(); else form.submit();
  }

  /* Fill the time spent just before any task form is sent (plain submit or htmx). */
  document.addEventListener("submit", function (e) {
    var field = e.target.querySelector && e.target.querySelector("[data-time-spent]");
    if (field) field.value = String(elapsedMs());
  }, true);

  function onTaskLoaded() {
    startClock();
    var t = task();
    if (!t) return;
    var stored = localStorage.getItem("tuneloop.guidelines");
    t.querySelectorAll("[data-guidelines]").forEach(function (g) {
      if (stored === "closed") g.open = false;
      if (stored === "open") g.open = true;
      g.addEventListener("toggle", function () { localStorage.setItem("tuneloop.guidelines", g.open ? "open" : "closed"); });
    });
    var answer = t.querySelector("[data-answer]"), counter = t.querySelector("[data-word-count]");
    keepDraft(t, answer);
    focusAnswer();
    if (answer && counter) {
      var count = function () {
        var n = (answer.value.match(/\S+/g) || []).length;
        counter.textContent = n ? n + " word" + (n === 1 ? "" : "s") : "";
      };
      answer.addEventListener("input", count);
      count();
    }
  }
  /* The answer being written survives a reload or a closed tab: it is kept per task until the next task. */
  function keepDraft(t, answer) {
    var id = t.getAttribute("data-assignment"), key = "tuneloop.draft." + id;
    if (!answer || !id) return;
    try {
      Object.keys(localStorage).forEach(function (k) {
        if (k.indexOf("tuneloop.draft.") === 0 && k !== key) localStorage.removeItem(k);
      });
      var draft = localStorage.getItem(key);
      if (draft && !answer.value) answer.value = draft;
      answer.addEventListener("input", function () { localStorage.setItem(key, answer.value); });
    } catch (err) { /* storage disabled: no drafts */ }
  }

  /* Run once per task fragment: on first load and after every htmx swap that brings a new one. */
  var seen = null;
  function checkTask() {
    var t = task() || document.getElementById("review-item");
    if (t && t !== seen) { seen = t; onTaskLoaded(); }
  }
  document.addEventListener("DOMContentLoaded", checkTask);
  document.addEventListener("htmx:afterSettle", checkTask);

  /* Dialogs: number keys pick a reason, Enter confirms, buttons [data-close] cancel. */
  document.addEventListener("click", function (e) {
    var opener = e.target.closest("[data-open]");
    if (opener) { e.preventDefault(); openDialog(opener.getAttribute("data-open")); return; }
    var closer = e.target.closest("dialog [data-close]");
    if (closer) { closer.closest("dialog").close(); focusAnswer(); }
  });
  document.addEventListener("htmx:beforeRequest", function (e) {
    var d = e.target.closest && e.target.closest("dialog");
    if (d && d.open) d.close();
  });

  function dialogKeys(e, d) {
    if (/^[1-9]$/.test(e.key) && !typing(e.target)) {
      var radios = d.querySelectorAll("input[type=radio]");
      var r = radios[Number(e.key) - 1];
      if (r) { r.checked = true; r.focus(); e.preventDefault(); }
      return;
    }
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      submitForm(d.querySelector("form"));
    }
    /* Esc: the browser closes a modal dialog by itself. */
  }

  function reviewKeys(e, box) {
    var edit = box.querySelector("[data-edit-form]");
    var editing = edit && !edit.hidden;
    if (e.key === "Escape") {
      if (editing) { stopEdit(box); e.preventDefault(); }
      else if (typing(e.target)) e.target.blur();
      return;
    }
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && editing) { e.preventDefault(); submitForm(edit); return; }
    if (typing(e.target) || e.ctrlKey || e.metaKey || e.altKey) return;
    if (box.querySelector(".htmx-request")) return;  /* one decision at a time */
    var key = e.key.toLowerCase();
    if (key === "a") { e.preventDefault(); submitForm(box.querySelector("[data-approve-form]")); }
    else if (key === "e" && edit) { e.preventDefault(); startEdit(box); }
    else if (key === "r") { e.preventDefault(); var reason = box.querySelector("[data-reject-reason]"); if (reason) reason.focus(); }
    else if (key === "g") { toggleGuidelines(box); }
  }
  function startEdit(box) {
    var edit = box.querySelector("[data-edit-form]"), view = box.querySelector("[data-answer-view]");
    edit.hidden = false; if (view) view.hidden = true;
    var text = edit.querySelector("[data-edit-text]");
    text.focus(); text.setSelectionRange(text.value.length, text.value.length);
  }
  function stopEdit(box) {
    var edit = box.querySelector("[data-edit-form]"), view = box.querySelector("[data-answer-view]");
    edit.hidden = true; if (view) view.hidden = false;
  }
  function toggleGuidelines(root) {
    root.querySelectorAll("[data-guidelines]").forEach(function (g) { g.open = !g.open; });
  }
  document.addEventListener("click", function (e) {
    var box = document.getElementById("review-item");
    if (!box) return;
    if (e.target.closest("[data-start-edit]")) startEdit(box);
    if (e.target.closest("[data-cancel-edit]")) stopEdit(box);
  });

  document.addEventListener("keydown", function (e) {
    if (e.defaultPrevented || e.isComposing) return;
    var d = document.querySelector("dialog[open]");
    if (d) { dialogKeys(e, d); return; }
    var review = document.getElementById("review-item");
    if (review) { reviewKeys(e, review); return; }
    var t = task();
    if (!t || !t.querySelector("[data-task-form]")) return;
    var form = t.querySelector("[data-task-form]");
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); submitForm(form); return; }
    if (e.altKey && e.key.toLowerCase() === "p") {
      var preview = t.querySelector("[data-preview]");
      if (preview) { e.preventDefault(); preview.click(); }
      return;
    }
    if (e.key === "Escape") {
      e.preventDefault();
      openDialog("skip");
      return;
    }
    if (typing(e.target) || e.ctrlKey || e.metaKey || e.altKey) return;
    var key = e.key.toLowerCase();
    if (key === "s") { e.preventDefault(); openDialog("skip"); }
    else if (key === "f") { e.preventDefault(); openDialog("flag"); }
    else if (key === "g") { toggleGuidelines(t); }
    else if (e.key === "/") { if (focusAnswer()) e.preventDefault(); }
  });

  window.tuneloopTasks = { elapsedMs: elapsedMs, openDialog: openDialog };
})();
