// The live run page: a snapshot over HTTP, then websocket events applied in sequence order.
// On a gap in the sequence (or after a reconnect) it asks for what it missed ({"after": seq}).
// Redraws are batched: at most REDRAWS_PER_S per second, and only when something changed.
"use strict";
(function () {
  const REDRAWS_PER_S = 4;
  const root = document.getElementById("run");
  const runId = Number(root.dataset.runId);
  const S = {
    lastSeq: 0, nodes: new Map([[0, {node_id: 0, parent_id: null, created_by: null, visits: 0, depth: 0}]]),
    header: null, trials: 0, trialsBudget: 0, calls: 0, usd: 0, perModel: {}, largest: null,
    bestId: null, best: null, baseline: null, bestSeries: [], escalations: [], status: null,
    dirty: true, layout: null, selected: null, transform: d3.zoomIdentity, drawn: 0, live: 0, evaluations: 0, sketches: 0, sketchesTotal: 0,
    elapsed: 0, measureS: 0, llmS: 0, coarse: 0,  // where the run's time went (progress, llm_call)
    pendingSent: [], latencies: [],  // event-to-screen latency, for events that carry sent_ms
    log: [], replaying: false, improvements: [],  // every event applied (for the replay), best improvements
  };
  window.coltState = S;  // for tests and benchmarks

  const palette = d3.schemeTableau10;
  const modelColor = new Map();
  /** An element with text content (never HTML). */
  function el(tag, text) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // what made a node (engine.events.ORIGINS), in the page's words; a node of a run made before nodes
  // recorded their origin has none where its fields do not tell (migration 0010): "origin not recorded"
  const ORIGIN_LABELS = JSON.parse(document.getElementById("origin-labels").textContent);
  function originOf(n) {
    return ORIGIN_LABELS[n.origin] || "origin not recorded";
  }
  /** Who made a node: the model whose proposal it applies and how, or what made it without one. */
  function madeBy(n) {
    return n.created_by ? `${n.created_by} (${originOf(n)})` : originOf(n);
  }

  /** Per origin: the nodes made, those measured and the measurements that set a new best, most measured first. */
  function originRows() {
    const by = new Map();
    const cell = (n) => {
      const k = originOf(n);
      if (!by.has(k)) by.set(k, {made: 0, measured: 0, improved: 0});
      return by.get(k);
    };
    for (const n of S.nodes.values()) {
      if (n.node_id === 0) continue;
      const c = cell(n); c.made += 1; if (n.status) c.measured += 1;
    }
    for (const imp of S.improvements) { const n = S.nodes.get(imp.node_id); if (n) cell(n).improved += 1; }
    return Array.from(by.entries()).sort((a, b) => b[1].measured - a[1].measured || b[1].made - a[1].made);
  }

  function colorOf(model) {
    if (!model) return "#9aa";
    if (!modelColor.has(model)) modelColor.set(model, palette[modelColor.size % palette.length]);
    return modelColor.get(model);
  }

  function apply(e) {
    if (e.seq !== undefined) {
      if (e.seq <= S.lastSeq) return;
      S.lastSeq = e.seq;
      if (!S.replaying) S.log.push(e);
    }
    if (e.sent_ms) S.pendingSent.push(e.sent_ms);
    switch (e.kind) {
      case "run_started":
        S.trialsBudget = e.budget.trials;
        if (!S.phaseFinal) S.phase = S.baseline || (S.header && S.header.baseline_latency) ? "searching" : "measuring the unscheduled kernel";
        break;
      case "run_resumed":  // the time split starts again: elapsed and measuring time restart in the new process
        S.status = "running"; S.stopReason = ""; S.phase = "searching"; S.phaseFinal = false;
        S.elapsed = 0; S.measureS = 0; S.llmS = 0; break;
      case "baseline_measured":
        S.baseline = e.latency_s; S.repeats = e.repeats_s || []; S.phase = "searching"; break;
      case "node_created":
        // a node is its node_created event: the node schema's fields (NodeRecord), nothing renamed
        S.nodes.set(e.node_id, Object.assign({visits: 0, status: null, latency: null}, e));
        S.layout = null; break;
      case "backpropagated":
        for (const id of e.path) { const n = S.nodes.get(id); if (n) n.visits += 1; }
        break;
      case "node_measured": {
        const n = S.nodes.get(e.node_id); if (n) { n.latency = e.latency_s; n.status = e.status; n.coarse = !!e.coarse; }
        S.trials = Math.max(S.trials, e.trial); break;
      }
      case "best_improved":
        S.bestId = e.node_id; S.best = e.latency_s; S.bestSeries.push([e.trial, e.latency_s]);
        S.improvements.push({node_id: e.node_id, trial: e.trial, latency: e.latency_s}); break;
      case "llm_call":
        S.calls += 1; S.usd += e.usd; S.llmS += e.latency_s || 0; S.perModel[e.model] = (S.perModel[e.model] || 0) + 1; break;
      case "escalation":
        S.escalations.push(e); break;
      case "progress":
        S.trials = e.trials; S.trialsBudget = e.trials_budget; S.evaluations = e.evaluations || 0;
        S.elapsed = e.elapsed_s || 0; S.measureS = e.measure_s || 0; S.coarse = e.coarse || 0;
        S.sketches = e.sketches || 0; S.sketchesTotal = e.sketches_total || 0; break;
      case "run_finished":
        S.elapsed = e.elapsed_s || S.elapsed;
        S.status = e.status; S.stopReason = e.reason; S.phase = e.status; S.phaseFinal = true; break;
    }
    S.dirty = true;
  }

  // --- transport -------------------------------------------------------------------------------
  let ws = null;
  function connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    ws = new WebSocket(`${proto}://${location.host}/ws/runs/${runId}/`);
    ws.onmessage = (m) => {
      if (S.replaying) return;  // only a finished run replays: nothing live is lost
      const msg = JSON.parse(m.data);
      if (msg.type === "hello") {
        if (msg.last_seq > S.lastSeq) ws.send(JSON.stringify({after: S.lastSeq}));
      } else if (msg.type === "events") {
        msg.events.forEach(apply);
      } else if (msg.type === "event") {
        S.live += 1;  // pushed, not fetched
        if (msg.event.seq > S.lastSeq + 1) ws.send(JSON.stringify({after: S.lastSeq}));  // a gap
        else apply(msg.event);
      }
    };
    ws.onclose = (ev) => {
      // 4401: logged out; 4404: no access to this run (any more); 4400: the page sent bad frames
      if (ev.code === 4401 || ev.code === 4404 || ev.code === 4400) {
        S.closed = ev.code;
        document.getElementById("stop-reason").textContent =
          ev.code === 4401 ? "live updates stopped: you are logged out" : "live updates stopped: no access to this run";
        return;
      }
      setTimeout(connect, 1000);
    };
  }

  function setHeader(h) {
    // the header is read from the database: its status is the truth (events may lag a resume)
    S.header = h; S.status = h.cancelling ? "cancelling…" : h.status;
    S.phase = h.phase;
    S.trialsBudget = S.trialsBudget || h.budget.trials;
    if (h.fleet.length) S.largest = h.fleet.reduce((a, b) => (b.params > a.params ? b : a)).name;
    S.dirty = true;
  }

  async function refreshHeader() {
    const r = await fetch(`/api/runs/${runId}`);
    if (!r.ok) return;
    const h = (await r.json()).run;
    setHeader(h);
    // the socket may be open but deaf (the channel layer restarted and forgot this page's
    // group): events stored since the last one applied are asked for again
    if (!S.replaying && h.last_seq > S.lastSeq && ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({after: S.lastSeq}));
    }
  }

  async function load() {
    const r = await fetch(`/api/runs/${runId}?after=0`);
    const data = await r.json();
    setHeader(data.run);
    data.events.forEach(apply);
    connect();
    setInterval(() => { if (S.dirty) { S.dirty = false; draw(); } }, 1000 / REDRAWS_PER_S);
    setInterval(refreshHeader, 5000);
    window.addEventListener("resize", () => { S.dirty = true; });
  }

  // --- drawing ---------------------------------------------------------------------------------
  const canvas = document.getElementById("tree");
  const ctx = canvas.getContext("2d");
  const zoom = d3.zoom().scaleExtent([0.05, 8]).on("zoom", (ev) => { S.transform = ev.transform; S.dirty = true; });
  d3.select(canvas).call(zoom).call(zoom.transform, d3.zoomIdentity.translate(canvas.width / 2, 20));
  canvas.addEventListener("click", (ev) => {
    if (!S.layout) return;
    const rect = canvas.getBoundingClientRect();
    const sx = (ev.clientX - rect.left) * canvas.width / rect.width, sy = (ev.clientY - rect.top) * canvas.height / rect.height;
    const [x, y] = S.transform.invert([sx, sy]);
    let best = null, bestD = 400;
    for (const d of S.layout.descendants()) {
      const dd = (d.x - x) ** 2 + (d.y - y) ** 2;
      if (dd < bestD && d.data.node_id !== 0) { best = d; bestD = dd; }
    }
    if (best) select(best.data.node_id);
  });

  function layoutTree() {
    const items = Array.from(S.nodes.values());
    const strat = d3.stratify().id((d) => d.node_id).parentId((d) => d.parent_id)(items);
    return d3.tree().nodeSize([14, 36])(strat);
  }

  function draw() {
    if (!S.layout) S.layout = layoutTree();
    const t = S.transform;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.setTransform(t.k, 0, 0, t.k, t.x, t.y);
    const nodes = S.layout.descendants();
    const bestPath = new Set();
    for (let id = S.bestId; id !== null && id !== undefined;) { bestPath.add(id); const n = S.nodes.get(id); id = n ? n.parent_id : null; }
    ctx.lineWidth = 1; ctx.strokeStyle = "#bbb";
    ctx.beginPath();
    for (const d of nodes) if (d.parent) { ctx.moveTo(d.parent.x, d.parent.y); ctx.lineTo(d.x, d.y); }
    ctx.stroke();
    ctx.lineWidth = 3; ctx.strokeStyle = "#e45";
    ctx.beginPath();
    for (const d of nodes) if (d.parent && bestPath.has(d.data.node_id)) { ctx.moveTo(d.parent.x, d.parent.y); ctx.lineTo(d.x, d.y); }
    ctx.stroke();
    for (const d of nodes) {
      const n = d.data;
      const r = n.node_id === 0 ? 4 : Math.min(9, 2 + Math.sqrt(n.visits));
      ctx.fillStyle = n.node_id === 0 ? "#333" : colorOf(n.created_by);
      ctx.beginPath(); ctx.arc(d.x, d.y, r, 0, 2 * Math.PI); ctx.fill();
      if (n.node_id === S.selected) { ctx.strokeStyle = "#000"; ctx.lineWidth = 2; ctx.stroke(); }
    }
    // each improvement of the best latency: a ring in the colour of the model that proposed it
    const byId = new Map(nodes.map((d) => [d.data.node_id, d]));
    for (const imp of S.improvements) {
      const d = byId.get(imp.node_id);
      if (!d) continue;
      ctx.strokeStyle = colorOf(d.data.created_by); ctx.lineWidth = 2.5;
      ctx.beginPath(); ctx.arc(d.x, d.y, 12, 0, 2 * Math.PI); ctx.stroke();
    }
    S.drawn += 1;
    drawPanels();
    if (S.pendingSent.length) {
      const now = Date.now();
      for (const t of S.pendingSent) S.latencies.push(now - t);
      S.pendingSent = [];
    }
  }

  const fmt = (s) => (s == null ? "-" : s >= 1e-3 ? `${(s * 1e3).toFixed(3)} ms` : `${(s * 1e6).toFixed(1)} µs`);
  function drawPanels() {
    const h = S.header || {};
    document.getElementById("status").textContent = S.status || h.status || "";
    const phase = S.phase || h.phase || "";
    document.getElementById("phase").textContent = phase === (S.status || h.status) ? "" : phase;
    // actions only when they are valid: cancel while running, resume once stopped short
    const final = ["succeeded", "failed", "cancelled"].includes(S.status);
    document.getElementById("cancel-form").hidden = final || S.status === "cancelling…";
    document.getElementById("resume-form").hidden = !final ||
      (S.status === "succeeded" && S.trials >= (S.trialsBudget || Infinity));
    const shared = h.baseline;
    const baseText = shared
      ? `unscheduled ${fmt(shared.latency_s)} (${fmt(shared.low_s)} – ${fmt(shared.high_s)} over ${shared.repeats} repeats), ` +
        `shared by this kernel's runs on ${shared.host}`
      : `unscheduled ${fmt(S.baseline || h.baseline_latency)}`;
    document.getElementById("baseline").textContent = baseText;
    document.getElementById("stop-reason").textContent = S.stopReason || h.stop_reason || "";
    document.getElementById("last-seq").textContent = S.lastSeq;
    document.getElementById("node-count").textContent = `${S.nodes.size - 1} nodes`;
    document.getElementById("evals").textContent = S.trials ? `${Math.round(S.evaluations / S.trials)}` : "-";
    document.getElementById("sketches").textContent = S.sketchesTotal ? `${S.sketches} of ${S.sketchesTotal}` : "-";
    document.getElementById("best").textContent = fmt(S.best);
    const base = S.baseline || h.baseline_latency;
    document.getElementById("speedup").textContent = S.best && base ? `${(base / S.best).toFixed(1)}x over unscheduled` : "";
    const budgets = [["trials", S.trials, S.trialsBudget], ["LLM calls", S.calls, h.budget.llm_calls],
                     ["USD", S.usd, h.budget.usd], ["wall-clock s", Math.round(S.elapsed), h.budget.wall_s]];
    document.getElementById("time-split").textContent = timeSplit();
    // built with textContent only: model names and event fields are never parsed as HTML
    document.getElementById("budgets").replaceChildren(...budgets.map(([k, v, lim]) => {
      const pct = lim ? Math.min(100, 100 * v / lim) : 0;
      const val = k === "USD" ? `$${v.toFixed(6)}` : v;
      const div = el("div", `${k}: ${val}${lim ? ` / ${k === "USD" ? "$" + lim : lim}` : " (no limit)"}`);
      div.className = "budget"; div.dataset.budget = k;
      const track = el("div"), fill = el("div");
      track.className = "track"; fill.className = "fill"; fill.style.width = `${pct}%`;
      track.append(fill); div.append(track);
      return div;
    }));
    const largestCalls = S.largest ? (S.perModel[S.largest] || 0) : 0;
    document.getElementById("share").textContent = S.calls ? `${Math.round(100 * largestCalls / S.calls)}%` : "-";
    document.getElementById("largest").textContent = S.largest ? `(${S.largest})` : "(no LLM)";
    document.getElementById("per-model").replaceChildren(...Object.entries(S.perModel).map(([m, c]) => {
      const li = el("li"), swatch = el("i");
      swatch.style.cssText = "display:inline-block;width:.8em;height:.8em";
      swatch.style.background = colorOf(m);
      li.append(swatch, ` ${m}: ${c} calls`);
      return li;
    }));
    const legend = Array.from(modelColor.entries()).concat([["no LLM: root sample, prior's mutator, refine", "#9aa"]]).map(([m, c]) => {
      const span = el("span"), swatch = el("i");
      swatch.style.background = c;
      span.append(swatch, m);
      return span;
    });
    document.getElementById("legend").replaceChildren(...legend);
    document.getElementById("escalation-count").textContent = S.escalations.length;
    const list = document.getElementById("escalations");
    if (list.children.length !== S.escalations.length) {
      list.replaceChildren(...S.escalations.map((e) => {
        const li = el("li", `node ${e.node_id}: ${e.small_model} regressed ${e.streak}x → ` +
          `${e.large_model} ${e.accepted ? "replaced the child" : "was not better"}`);
        li.dataset.node = e.child_id ?? e.node_id;
        li.onclick = () => select(Number(li.dataset.node));
        return li;
      }));
    }
    const imps = document.getElementById("improvements");
    if (imps.children.length !== S.improvements.length) {
      imps.replaceChildren(...S.improvements.map((imp) => {
        const n = S.nodes.get(imp.node_id) || {};
        const li = el("li"), swatch = el("i");
        swatch.style.background = colorOf(n.created_by);
        li.append(swatch, ` trial ${imp.trial}: ${fmt(imp.latency)} by ${madeBy(n)} (node ${imp.node_id})`);
        li.dataset.model = n.created_by || "";
        li.onclick = () => select(imp.node_id);
        return li;
      }));
    }
    const origins = originRows();
    document.querySelector("#origins tbody").replaceChildren(...origins.map(([label, c]) => {
      const tr = el("tr");
      tr.dataset.origin = label;
      const bests = c.improved ? `, ${c.improved} new best${c.improved > 1 ? "s" : ""}` : "";
      tr.append(el("th", label), el("td", `${c.measured} measured of ${c.made} made${bests}`));
      return tr;
    }));
    drawReplay();
    drawPlot();
  }

  // where the search's time went, at the last measurement round: building and timing candidates,
  // waiting on LLM calls, and the rest (the tree, screening, the cost model); the tree strategies report it
  function timeSplit() {
    if (!S.elapsed || !S.measureS) return "";
    const llm = Math.min(S.llmS, S.elapsed - S.measureS), rest = Math.max(0, S.elapsed - S.measureS - llm);
    const pct = (x) => `${Math.round(100 * x / S.elapsed)}%`;
    const coarse = S.coarse ? ` (${S.coarse} timed by two runs: slower than the timing cutoff)` : "";
    return `time: ${pct(S.measureS)} building and timing candidates${coarse} · ${pct(llm)} LLM calls · ` +
      `${pct(rest)} search and cost model, of ${Math.round(S.elapsed)} s`;
  }

  // --- replay: the tree as it was after any event of the log ------------------------------------
  function reset() {
    Object.assign(S, {
      lastSeq: 0, nodes: new Map([[0, {node_id: 0, parent_id: null, created_by: null, visits: 0, depth: 0}]]),
      trials: 0, calls: 0, usd: 0, perModel: {}, bestId: null, best: null, bestSeries: [], escalations: [],
      evaluations: 0, elapsed: 0, measureS: 0, llmS: 0, coarse: 0, sketches: 0, sketchesTotal: 0, layout: null, improvements: [],
    });
  }
  function replayTo(seq) {
    const log = S.log;
    S.replaying = true;
    reset();
    for (const e of log) { if (e.seq > seq) break; apply(e); }
    S.replaying = seq < (log.length ? log[log.length - 1].seq : 0);
    S.log = log;
    S.dirty = true;
  }
  function drawReplay() {
    const bar = document.getElementById("replay-bar");
    const final = ["succeeded", "failed", "cancelled"].includes(S.status);
    bar.hidden = !final || !S.log.length;
    if (bar.hidden) return;
    const slider = document.getElementById("replay");
    const last = S.log[S.log.length - 1].seq;
    slider.max = last;
    if (!S.replaying) slider.value = last;
    const at = S.log.filter((e) => e.seq <= +slider.value);
    const t = at.length ? at[at.length - 1] : null;
    document.getElementById("replay-label").textContent =
      `event ${slider.value} of ${last}${t ? ` (${t.kind}, trial ${S.trials})` : ""}`;
  }
  document.getElementById("replay").addEventListener("input", (ev) => replayTo(+ev.target.value));
  document.getElementById("replay-live").addEventListener("click", () => replayTo(Infinity));

  function drawPlot() {
    const svg = d3.select("#plot");
    // the plot fills its panel (it resizes with the window)
    const w = Math.max(240, Math.round(svg.node().parentNode.getBoundingClientRect().width)), hgt = +svg.attr("height");
    svg.attr("width", w);
    const m = {left: 64, bottom: 34, top: 10, right: 12};
    svg.selectAll("*").remove();
    if (!S.bestSeries.length) return;
    const pts = S.bestSeries.concat([[Math.max(S.trials, S.bestSeries[S.bestSeries.length - 1][0]), S.best]]);
    const micro = d3.max(pts, (p) => p[1]) < 1e-3, scale = micro ? 1e6 : 1e3, unit = micro ? " µs" : " ms";
    const x = d3.scaleLinear().domain([0, Math.max(1, S.trialsBudget, d3.max(pts, (p) => p[0]))]).range([m.left, w - m.right]);
    const y = d3.scaleLog().domain([d3.min(pts, (p) => p[1]) * 0.9, d3.max(pts, (p) => p[1]) * 1.1]).range([hgt - m.bottom, m.top]);
    svg.append("g").attr("transform", `translate(0,${hgt - m.bottom})`).call(d3.axisBottom(x).ticks(5));
    svg.append("g").attr("class", "y-axis").attr("transform", `translate(${m.left},0)`)
      .call(d3.axisLeft(y).tickValues(d3.range(4).map((i) => y.domain()[0] * (y.domain()[1] / y.domain()[0]) ** (i / 3)))
        .tickFormat((v) => +(v * scale).toPrecision(3) + unit));
    svg.append("text").attr("x", w - m.right).attr("y", hgt - 2).attr("text-anchor", "end")
      .attr("class", "axis-label").text("measured trials");
    svg.append("path").attr("id", "best-line").attr("fill", "none").attr("stroke", "#e45").attr("stroke-width", 2)
      .attr("d", d3.line().curve(d3.curveStepAfter).x((p) => x(p[0])).y((p) => y(p[1]))(pts));
    svg.attr("data-points", S.bestSeries.length);
  }

  function rows(tableId, pairs) {
    document.querySelector(`#${tableId} tbody`).replaceChildren(...pairs.map(([k, v, title]) => {
      const tr = el("tr"), th = el("th", k), td = el("td", v === null || v === undefined || v === "" ? "-" : String(v));
      if (title) th.title = title;
      tr.append(th, td);
      return tr;
    }));
  }

  // TVMScript with its keywords, strings and comments coloured: spans with textContent only
  const TOKENS = /(#[^\n]*)|("(?:[^"\\]|\\.)*")|\b(def|for|in|with|if|else|return|import|from|as|class)\b|\b(T\.[A-Za-z_]+)|(\b\d+\b)/g;
  function highlight(box, text) {
    const parts = [];
    let last = 0;
    for (const m of text.matchAll(TOKENS)) {
      if (m.index > last) parts.push(document.createTextNode(text.slice(last, m.index)));
      const span = el("span", m[0]);
      span.className = m[1] ? "tok-comment" : m[2] ? "tok-string" : m[3] ? "tok-keyword" : m[4] ? "tok-tir" : "tok-number";
      parts.push(span);
      last = m.index + m[0].length;
    }
    parts.push(document.createTextNode(text.slice(last)));
    box.replaceChildren(...parts);
  }

  async function select(nodeId) {
    S.selected = nodeId; S.dirty = true;
    const r = await fetch(`/api/runs/${runId}/nodes/${nodeId}`);
    if (!r.ok) return;
    const d = await r.json();
    const box = document.getElementById("details");
    box.hidden = false;
    document.getElementById("d-id").textContent = nodeId;
    rows("d-summary", [
      ["made by", madeBy(d), "what made this node: the model whose proposal it applies, in the tree or in refine (a mutant of one of the fastest measured schedules), or a root sample, a mutator drawn from the prior..."],
      ["mutators", (d.mutators || []).join(", ")],
      ["status", d.status || "not measured"],
      ["latency", d.coarse ? `${fmt(d.latency)} (two single runs: slower than the timing cutoff)` : fmt(d.latency),
        "the mean of the timing's repeats, or the faster of two single runs for a schedule far slower than the best"],
      ["score", d.predicted !== undefined ? d.predicted.toFixed(3) : null, "the cost model's score when the node was made (higher is faster)"],
      ["parent score", d.parent_score !== null && d.parent_score !== undefined ? d.parent_score.toFixed(3) : null],
      ["visits / value", `${d.visits} / ${(d.value || 0).toFixed(3)}`, "UCT statistics: times on a selected path, summed reward"],
      ["next model", d.expand_model, "the model assigned to expand this node"],
      ["subtree cost", d.subtree ? `$${d.subtree.usd.toFixed(6)} over ${d.subtree.calls} calls` : null],
    ]);
    const dec = d.decisions || {};
    rows("d-decisions", Object.entries(dec).map(([k, v]) => [k, Array.isArray(v) ? JSON.stringify(v) : v]));
    document.getElementById("d-path").replaceChildren(...(d.path || []).map((p) => {
      const li = el("li", `#${p.node_id} ${madeBy(p)}: ${(p.mutators || []).join(", ") || "-"} → ${p.latency ? fmt(p.latency) : p.status || "not measured"}`);
      li.onclick = () => select(p.node_id);
      return li;
    }));
    const c = d.call;
    rows("d-call", c ? [
      ["model", c.model], ["outcome", c.outcome], ["tokens in / out", `${c.prompt_tokens} / ${c.completion_tokens}`],
      ["latency", `${c.latency_s.toFixed(2)} s`], ["USD", `$${c.usd.toFixed(6)}`], ["proposed", (c.mutators || []).join(", ")],
      ["next model", c.next_model], ["error", c.error],
    ] : [["call", `none: ${originOf(d)}`]]);
    document.getElementById("d-body").textContent = JSON.stringify(d, null, 1);
    const scriptBox = document.getElementById("d-script-body");
    scriptBox.hidden = true;
    document.getElementById("d-script").onclick = async () => {
      const s = await (await fetch(`/api/runs/${runId}/nodes/${nodeId}?script=1`)).json();
      highlight(scriptBox, s.script || "(no trace)"); scriptBox.hidden = false;
    };
  }
  document.getElementById("d-close").onclick = () => {
    document.getElementById("details").hidden = true; S.selected = null; S.dirty = true;
  };

  load();
})();
