/* Runs page: the "Config defaults" panel follows the start form's Kind (the open section is the
 * chosen kind's; the others fold), on load too, so a form sent back with an error shows its kind. */
(function () {
  "use strict";

  function follow() {
    var kind = document.querySelector("form [name=kind]");
    if (!kind) return;
    document.querySelectorAll("details[data-kind]").forEach(function (d) {
      d.open = d.getAttribute("data-kind") === kind.value;
    });
  }
  document.addEventListener("change", function (e) {
    if (e.target.matches && e.target.matches("form [name=kind]")) follow();
  });
  document.addEventListener("DOMContentLoaded", follow);
})();
