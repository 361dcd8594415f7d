// Compare runs: best latency and USD against trials, one line per run (d3, vendored).
(function () {
  "use strict";
  const runs = JSON.parse(document.getElementById("compare-data").textContent);
  const colour = d3.scaleOrdinal(d3.schemeTableau10).domain(runs.map((r) => r.id));

  function chart(id, value, format, seriesOf) {
    const svg = d3.select("#" + id);
    const box = document.querySelector(".charts").getBoundingClientRect().width;
    const width = Math.max(240, Math.min(720, Math.round(box) - 4));
    svg.attr("width", width);
    const height = +svg.attr("height");
    const m = { top: 12, right: 12, bottom: 32, left: 72 };
    const lines = runs.map((r) => ({
      run: r, points: seriesOf(r).filter((p) => value(p) !== null && value(p) !== undefined),
    }));
    const all = lines.flatMap((l) => l.points);
    if (!all.length) {
      svg.append("text").attr("x", width / 2).attr("y", height / 2).attr("text-anchor", "middle").text("no data yet");
      return;
    }
    const x = d3.scaleLinear().domain([0, d3.max(all, (p) => p.trials) || 1]).range([m.left, width - m.right]);
    const y = d3.scaleLinear().domain([0, d3.max(all, value) || 1]).nice().range([height - m.bottom, m.top]);
    svg.append("g").attr("transform", `translate(0,${height - m.bottom})`).call(d3.axisBottom(x).ticks(6));
    svg.append("g").attr("transform", `translate(${m.left},0)`).call(d3.axisLeft(y).ticks(5).tickFormat(format));
    svg.append("text").attr("x", (m.left + width - m.right) / 2).attr("y", height - 2)
      .attr("text-anchor", "middle").attr("class", "axis-label").text("trials");
    const line = d3.line().curve(d3.curveStepAfter).x((p) => x(p.trials)).y((p) => y(value(p)));
    lines.forEach((l, i) => {
      if (!l.points.length) return;
      svg.append("path").datum(l.points).attr("fill", "none").attr("stroke", colour(l.run.id))
        .attr("stroke-width", 2).attr("d", line).attr("data-run", l.run.id);
      // the legend inside the plot's top-right corner: never past the chart's edge
      svg.append("text").attr("x", width - 4).attr("y", m.top + 14 * (i + 1)).attr("text-anchor", "end")
        .attr("fill", colour(l.run.id)).attr("class", "legend").text(l.run.label);
    });
  }

  // the latency steps at the trial that improved it (best_improved), as on the run page; the
  // unit is ms, or µs when every run is under a millisecond
  const micro = runs.every((r) => !r.best_latency_s || r.best_latency_s < 1e-3);
  const scale = micro ? 1e6 : 1e3, unit = micro ? " µs" : " ms";
  chart("chart-latency", (p) => (p.latency === null ? null : p.latency * scale), (v) => d3.format("~r")(+v.toPrecision(3)) + unit,
    (r) => r.best_series.map(([trials, latency]) => ({ trials, latency })));
  chart("chart-usd", (p) => p.usd, (v) => "$" + d3.format("~g")(v), (r) => r.series);
})();
