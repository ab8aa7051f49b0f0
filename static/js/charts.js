/* Dashboard charts: draws every <canvas data-chart="ID"> from the JSON in <script id="ID-data">
 * (Chart.js from static/vendor/chartjs). Without JavaScript the box stays hidden and the table of the
 * same numbers under it is open; with it, long tables fold away under "Numbers". Redraws after htmx swaps. */
(function () {
  "use strict";
  var palette = ["#3b5bdb", "#e67700", "#2b8a3e", "#c92a2a", "#7048e8", "#0c8599", "#5c940d"];

  function draw(root) {
    if (typeof Chart === "undefined") return;
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (Chart.getChart(canvas)) return;
      var source = document.getElementById(canvas.dataset.chart + "-data");
      if (!source) return;
      var spec = JSON.parse(source.textContent);
      var many = spec.labels.length > 60;
      var datasets = spec.datasets.map(function (d, i) {
        var color = palette[i % palette.length];
        return {
          label: d.label, data: d.data, borderColor: color, spanGaps: true, tension: 0.15,
          backgroundColor: spec.type === "bar" ? color + "cc" : color,
          pointRadius: many ? 0 : 3, borderWidth: 2
        };
      });
      var box = canvas.parentElement;
      box.hidden = false;
      new Chart(canvas, {
        type: spec.type,
        data: { labels: spec.labels, datasets: datasets },
        options: {
          responsive: true, maintainAspectRatio: false, animation: false,
          interaction: { mode: "index", intersect: false },
          plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
          scales: {
            x: { title: { display: !!spec.x_label, text: spec.x_label }, ticks: { maxTicksLimit: 12, autoSkip: true } },
            y: { beginAtZero: spec.type === "bar", title: { display: !!spec.y_label, text: spec.y_label } }
          }
        }
      });
      var numbers = box.parentElement.querySelector("details.numbers");
      if (numbers && numbers.dataset.fold === "1") numbers.open = false;
    });
  }

  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:beforeSwap", function (event) {
    event.detail.target.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var chart = Chart.getChart(canvas);
      if (chart) chart.destroy();
    });
  });
  document.addEventListener("htmx:afterSettle", function (event) { draw(event.detail.elt || document); });
})();
