// The model page: polls the model run's figures (api/models/<id>) every two seconds while it
// runs and updates the task table, budgets, results and the estimate plot. textContent only.
(function () {
  "use strict";
  const root = document.getElementById("model");
  if (!root) return;
  const api = root.dataset.api;
  const FINAL = ["succeeded", "failed", "cancelled"];

  function latency(s) {
    if (s === null || s === undefined) return "-";
    return s >= 1e-3 ? (s * 1e3).toFixed(3) + " ms" : (s * 1e6).toFixed(1) + " µs";
  }
  function set(id, text) {
    const el = document.getElementById(id);
    if (el) el.textContent = text;
  }

  function plot(history, untuned) {
    const svg = d3.select("#m-plot");
    const width = +svg.attr("width"), height = +svg.attr("height");
    const m = { top: 10, right: 12, bottom: 32, left: 64 };
    svg.selectAll("*").remove();
    const raw = history.filter((p) => p[1] !== null).map((p) => ({ t: p[0], s: p[1] }));
    if (untuned) raw.unshift({ t: 0, s: untuned });
    if (!raw.length) return;
    // the unit that reads best for the largest value: ms, or µs for sub-millisecond models
    const micro = d3.max(raw, (p) => p.s) < 1e-3;
    const unit = micro ? " µs" : " ms", scale = micro ? 1e6 : 1e3;
    const points = raw.map((p) => ({ t: p.t, y: p.s * scale }));
    const x = d3.scaleLinear().domain([0, d3.max(points, (p) => p.t) || 1]).range([m.left, width - m.right]);
    const y = d3.scaleLinear().domain([0, d3.max(points, (p) => p.y) * 1.05]).range([height - m.bottom, m.top]);
    svg.append("g").attr("transform", `translate(0,${height - m.bottom})`).call(d3.axisBottom(x).ticks(5));
    svg.append("g").attr("transform", `translate(${m.left},0)`).call(d3.axisLeft(y).ticks(5).tickFormat((v) => d3.format("~g")(v) + unit));
    svg.append("text").attr("x", width - m.right).attr("y", height - 2).attr("text-anchor", "end")
      .attr("class", "axis-label").text("seconds since start");
    svg.append("path").datum(points).attr("fill", "none").attr("stroke", "#2a6fdb").attr("stroke-width", 2)
      .attr("d", d3.line().curve(d3.curveStepAfter).x((p) => x(p.t)).y((p) => y(p.y)));
  }

  function render(o) {
    set("m-status", o.cancel_requested && FINAL.indexOf(o.status) < 0 ? "cancelling" : o.status);
    set("m-phase", o.phase);
    set("m-estimate", latency(o.estimate_s));
    set("m-untuned", "untuned estimate " + latency(o.untuned_estimate_s));
    set("m-trials", String(o.trials_done));
    set("m-trials-budget", String(o.trials_budget));
    set("m-calls", String(o.llm_calls));
    set("m-usd", o.usd.toFixed(6));
    set("m-share", o.largest_share === null ? "-" : Math.round(o.largest_share * 100) + "%");
    const err = document.getElementById("m-error");
    err.textContent = o.error || "";
    err.hidden = !o.error;
    const final = FINAL.indexOf(o.status) >= 0;
    document.getElementById("m-cancel-form").hidden = final;
    document.getElementById("m-resume-form").hidden = !final || o.status === "succeeded";
    const r = o.results || {};
    if (r.tuned_s) {
      set("r-untuned", latency(r.untuned_s[0]));
      set("r-tuned", latency(r.tuned_s[0]) + " (" + latency(r.tuned_s[1]) + " - " + latency(r.tuned_s[2]) + ")");
      set("r-ort", latency(r.onnxruntime_s[0]));
      set("r-speedup", r.speedup ? r.speedup.toFixed(2) + "x" : "-");
      set("r-vs", r.vs_onnxruntime ? r.vs_onnxruntime.toFixed(2) + "x" : "-");
      set("r-diff", r.max_abs_diff === null ? "outputs differ in count or shape" : r.max_abs_diff.toPrecision(3));
    }
    o.tasks.forEach((t, i) => {
      const row = document.querySelector(`#m-tasks tbody tr[data-task="${i}"]`);  // rows may be sorted
      if (!row) return;
      const cell = (cls, text) => { const c = row.querySelector("." + cls); if (c) c.textContent = text; };
      cell("c-base", latency(t.baseline_s));
      cell("c-share", t.share === undefined || t.share === null ? "-" : Math.round(t.share * 100) + "%");
      cell("c-trials", t.trials_done + " / " + (t.trials === undefined ? "-" : t.trials));
      cell("c-best", latency(t.best_s));
      cell("c-speedup", t.speedup ? t.speedup.toFixed(1) + "x" : "-");
      cell("c-status", t.status);
      cell("c-calls", String(t.llm_calls));
      cell("c-usd", t.usd.toFixed(6));
      const runCell = row.querySelector(".c-run");
      if (t.run && runCell && !runCell.querySelector("a")) {
        runCell.textContent = "";
        const a = document.createElement("a");
        a.href = "/runs/" + t.run;
        a.textContent = "#" + t.run;
        runCell.appendChild(a);
      }
    });
    plot(o.history, o.untuned_estimate_s);
    return final;
  }

  function poll() {
    fetch(api, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then((o) => { if (!render(o)) setTimeout(poll, 2000); })
      .catch(() => setTimeout(poll, 5000));
  }
  poll();
})();
