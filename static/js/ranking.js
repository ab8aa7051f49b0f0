/* Ranking page: order K answers by keys or drag and drop, ties allowed, with a live pairs preview.
 *
 * The board (rows 1..K plus a "not placed" pool) is the only state: each answer has one chip, and
 * the row holding the chip is its place. One answer is always selected (A at the start). Keys: the
 * letters A..(K-th letter) select that answer; a number 1..K puts the selected answer in that row
 * and selects the next unplaced one (or keeps it when all are placed), so a number never means
 * "select". Arrows (or j/k) move the selection, 0 or Backspace unplaces, u/w/n/p (and v, "not supported
 * by the evidence", when the prompt has passages) toggle the selected answer's flags, Enter submits. The letters take precedence over the task page's F and G (the
 * template hides those keys' hints when K reaches them). Chips drag between rows with SortableJS
 * when it is loaded, else with HTML5 drag and drop.
 */
(function () {
  "use strict";

  var FLAG_KEYS = { u: "unsafe", w: "factually_wrong", n: "not_helpful", p: "personal_data", v: "not_supported" };
  var state = null;

  function init(root) {
    var form = root.querySelector("[data-ranking]");
    if (!form) { state = null; return; }
    var cards = Array.prototype.slice.call(form.querySelectorAll("article.completion"));
    state = { form: form, cards: cards, selected: null };
    form.querySelectorAll("[data-tier-items]").forEach(makeDroppable);
    cards.forEach(function (card) {
      card.addEventListener("click", function (e) {
        if (e.target.closest("input,label,a,textarea")) return;
        select(card.getAttribute("data-cid"));
      });
    });
    form.querySelectorAll(".chip").forEach(function (chip) {
      chip.addEventListener("click", function () { select(chip.getAttribute("data-cid")); });
    });
    form.querySelectorAll("input[type=checkbox]").forEach(function (box) {
      box.addEventListener("change", function () { markFlags(box.closest("article")); });
    });
    select(cards.length ? cards[0].getAttribute("data-cid") : null);
    update();
  }

  function makeDroppable(list) {
    if (window.Sortable) {
      window.Sortable.create(list, {
        group: "ranking", animation: 120, ghostClass: "chip-ghost",
        onAdd: update, onEnd: function (evt) { select(evt.item.getAttribute("data-cid"), true); update(); },
      });
      return;
    }
    /* Fallback without SortableJS: native drag and drop of chips onto rows. */
    list.querySelectorAll(".chip").forEach(function (chip) { chip.draggable = true; });
    list.addEventListener("dragstart", function (e) {
      var chip = e.target.closest(".chip");
      if (chip) e.dataTransfer.setData("text/plain", chip.getAttribute("data-cid"));
    });
    list.addEventListener("dragover", function (e) { e.preventDefault(); });
    list.addEventListener("drop", function (e) {
      e.preventDefault();
      var cid = e.dataTransfer.getData("text/plain");
      var chip = cid && chipOf(cid);
      if (chip) { list.appendChild(chip); update(); }
    });
  }

  function chipOf(cid) { return state.form.querySelector('.chip[data-cid="' + cid + '"]'); }
  function cardOf(cid) { return state.form.querySelector('article.completion[data-cid="' + cid + '"]'); }
  function nameOf(cid) { var c = cardOf(cid); return c ? c.getAttribute("data-name") : "?"; }
  function tierOf(cid) {
    var row = chipOf(cid).closest("[data-tier]");
    return Number(row.getAttribute("data-tier"));
  }
  function tiers() {
    var out = [];
    state.form.querySelectorAll(".tier:not(.pool)").forEach(function (row) {
      var ids = Array.prototype.map.call(row.querySelectorAll(".chip"), function (c) { return c.getAttribute("data-cid"); });
      if (ids.length) out.push(ids);
    });
    return out;
  }
  function unplaced() {
    return Array.prototype.map.call(state.form.querySelectorAll(".pool .chip"), function (c) { return c.getAttribute("data-cid"); });
  }

  function select(cid, quiet) {
    state.selected = cid;
    state.cards.forEach(function (card) { card.classList.toggle("selected", card.getAttribute("data-cid") === cid); });
    state.form.querySelectorAll(".chip").forEach(function (chip) { chip.classList.toggle("selected", chip.getAttribute("data-cid") === cid); });
    var k = state.cards.length;
    state.cards.forEach(function (card) {
      var hint = card.querySelector("[data-hint]");
      if (!hint) return;
      if (card.getAttribute("data-cid") === cid) hint.innerHTML = "selected · <kbd>1</kbd>–<kbd>" + k + "</kbd> puts it in that row";
      else hint.innerHTML = "<kbd>" + card.getAttribute("data-name") + "</kbd> selects it";
    });
    if (cid && !quiet) {
      var card = cardOf(cid);
      if (card && card.scrollIntoView) card.scrollIntoView({ block: "nearest", behavior: "smooth" });
    }
  }

  function place(cid, tier) {
    var row = state.form.querySelector('.tier[data-tier="' + tier + '"] [data-tier-items]');
    if (!row) return;
    row.appendChild(chipOf(cid));
    update();
  }

  function nextUnplaced(after) {
    var ids = state.cards.map(function (c) { return c.getAttribute("data-cid"); });
    var waiting = unplaced();
    var start = Math.max(0, ids.indexOf(after));
    for (var i = 1; i <= ids.length; i++) {
      var cid = ids[(start + i) % ids.length];
      if (waiting.indexOf(cid) !== -1) return cid;
    }
    return null;
  }

  function update() {
    if (!state) return;
    var t = tiers();
    var placeOf = {};
    t.forEach(function (tier, i) { tier.forEach(function (cid) { placeOf[cid] = i; }); });
    state.cards.forEach(function (card) {
      var cid = card.getAttribute("data-cid");
      var badge = card.querySelector("[data-tier-badge]");
      card.classList.remove("tier-1", "tier-2", "tier-3", "tier-last", "placed");
      if (!(cid in placeOf)) { badge.textContent = "not placed"; return; }
      var row = tierOf(cid), mates = t[placeOf[cid]].filter(function (o) { return o !== cid; });
      card.classList.add("placed", placeOf[cid] === 0 ? "tier-1" : (placeOf[cid] === t.length - 1 ? "tier-last" : "tier-2"));
      badge.textContent = "row " + row + (placeOf[cid] === 0 ? " · best" : "") +
        (mates.length ? " · tied with " + mates.map(nameOf).join(", ") : "");
    });
    renderPairs(t);
    state.form.querySelector("[data-order]").value = JSON.stringify(t.map(function (tier) { return tier.map(Number); }));
    var left = unplaced().length;
    var submit = state.form.querySelector("[data-submit]");
    submit.classList.toggle("not-ready", left > 0);
    submit.title = left ? left + " answer" + (left === 1 ? "" : "s") + " not placed yet" : "";
  }

  function renderPairs(t) {
    var list = state.form.querySelector("[data-pairs]"), count = state.form.querySelector("[data-pairs-count]");
    var items = [], pairs = 0, ties = 0;
    for (var i = 0; i < t.length; i++) {
      for (var a = 0; a < t[i].length; a++) {
        for (var b = a + 1; b < t[i].length; b++) { items.push({ text: nameOf(t[i][a]) + " = " + nameOf(t[i][b]), tie: true }); ties++; }
        for (var j = i + 1; j < t.length; j++) {
          for (var c = 0; c < t[j].length; c++) { items.push({ text: nameOf(t[i][a]) + " > " + nameOf(t[j][c]) }); pairs++; }
        }
      }
    }
    list.innerHTML = "";
    items.forEach(function (it) {
      var li = document.createElement("li");
      li.textContent = it.text;
      if (it.tie) { li.className = "tie"; li.title = "A tie: no comparison is made"; }
      list.appendChild(li);
    });
    var left = unplaced().length;
    if (!items.length) {
      var li = document.createElement("li");
      li.className = "muted";
      li.textContent = "Place the answers to see the comparisons.";
      list.appendChild(li);
    }
    count.textContent = pairs + " comparison" + (pairs === 1 ? "" : "s") + (ties ? ", " + ties + " tie" + (ties === 1 ? "" : "s") : "") +
      (left ? " · " + left + " not placed" : "");
  }

  function markFlags(card) {
    if (!card) return;
    card.classList.toggle("flagged", !!card.querySelector("input[type=checkbox]:checked"));
  }

  function typing(el) {
    return el && (el.tagName === "TEXTAREA" || el.tagName === "SELECT" ||
      (el.tagName === "INPUT" && !/^(checkbox|radio|button|submit)$/.test(el.type)));
  }

  /* Capture phase: runs before shortcuts.js, so an answer letter (F, G when K reaches them) selects. */
  document.addEventListener("keydown", function (e) {
    boot();
    if (!state || !document.body.contains(state.form)) return;
    if (e.defaultPrevented || e.isComposing || document.querySelector("dialog[open]")) return;
    if (typing(e.target) || e.ctrlKey || e.metaKey || e.altKey) return;
    var k = state.cards.length, key = e.key;
    if (/^[0-9]$/.test(key)) {
      var n = Number(key);
      e.preventDefault();
      if (n === 0) { if (state.selected) { place0(state.selected); } return; }
      if (n > k || state.selected === null) return;
      var cid = state.selected;
      place(cid, n);
      select(nextUnplaced(cid) || cid);
      return;
    }
    var lettered = byLetter(key);
    if (lettered) { e.preventDefault(); select(lettered.getAttribute("data-cid")); return; }
    if (key === "Backspace" || key === "Delete") { if (state.selected) { e.preventDefault(); place0(state.selected); } return; }
    if (key === "ArrowDown" || key === "ArrowUp" || key === "j" || key === "k") {
      e.preventDefault();
      var ids = state.cards.map(function (c) { return c.getAttribute("data-cid"); });
      var at = ids.indexOf(state.selected), step = (key === "ArrowDown" || key === "j") ? 1 : -1;
      select(ids[at === -1 ? 0 : (at + step + ids.length) % ids.length]);
      return;
    }
    if (key === "Enter") { e.preventDefault(); submit(); return; }
    var flag = FLAG_KEYS[key.toLowerCase()];
    if (flag && state.selected) {
      e.preventDefault();
      var box = state.form.querySelector('input[name="flag-' + state.selected + '"][value="' + flag + '"]');
      if (box) { box.checked = !box.checked; markFlags(box.closest("article")); }
    }
  }, true);

  function byLetter(key) {
    if (!/^[a-z]$/i.test(key)) return null;
    var name = key.toUpperCase();
    return state.cards.filter(function (c) { return c.getAttribute("data-name") === name; })[0] || null;
  }

  function place0(cid) {
    state.form.querySelector(".pool [data-tier-items]").appendChild(chipOf(cid));
    update();
  }

  function submit() {
    if (window.htmx) htmx.process(state.form);  /* see shortcuts.js: a key can beat htmx to a new form */
    if (state.form.requestSubmit) state.form.requestSubmit(); else state.form.submit();
  }

  /* Refuse to send a partial ranking; say what is missing instead. */
  document.addEventListener("submit", function (e) {
    if (!state || e.target !== state.form) return;
    update();
    var left = unplaced();
    if (left.length) {
      e.preventDefault();
      e.stopPropagation();
      var status = document.querySelector("#task .task-status");
      var msg = status.querySelector("[data-rank-missing]") || document.createElement("span");
      msg.setAttribute("data-rank-missing", "");
      msg.className = "error";
      msg.setAttribute("role", "alert");
      msg.textContent = "Place " + left.map(nameOf).join(", ") + " first.";
      status.prepend(msg);
      select(left[0]);
    }
  }, true);

  /* (Re)initialise whenever a new task fragment is in the page: first load and every htmx swap. */
  function boot() {
    var form = document.querySelector("#task [data-ranking]");
    if (form && (!state || state.form !== form)) init(document);
  }
  document.addEventListener("DOMContentLoaded", boot);
  document.addEventListener("htmx:afterSettle", boot);
})();
