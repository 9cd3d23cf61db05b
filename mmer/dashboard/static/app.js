// mmer dashboard page: one WebSocket feed, uPlot traces, a stream table and the decisions.
"use strict";
(function () {
  const token = new URLSearchParams(location.search).get("token") || "";
  const WINDOW = 20;          // seconds of trace shown
  const PHYSIO = ["EDA", "ECG", "PPG", "RSP"];
  const COLORS = { EDA: "#00897b", ECG: "#c62828", PPG: "#6a1b9a", RSP: "#1565c0" };
  const traces = {};          // physiology stream name -> {t, v, peaks, plot, dirty}
  const score = { t: [], me: [], mae: [], plot: null, dirty: false, drawnAt: 0 };
  const decisions = [];       // newest last
  const truth = {};           // onset frame -> {t_on, t_off, kind, emotion}
  let clock = { lsl: 0, at: performance.now() };
  let lastRows = [];

  // Instrumentation the browser tests read: draws per trace, and when each trace's newest sample
  // was first painted (wall-clock ms).
  const probe = { draws: {}, drawn: {}, decisions: 0, hello: 0, ticks: 0 };
  window.mmer = probe;
  window.mmerDrawnAt = function (name, t) {
    const log = probe.drawn[name] || [];
    for (const [maxT, wall] of log) if (maxT >= t - 1e-6) return wall;
    return null;
  };

  const now = () => clock.lsl + (performance.now() - clock.at) / 1000;
  const fmt = (v, d) => (v === null || v === undefined ? "-" : Number(v).toFixed(d));
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

  function xRange() { const n = now(); return [n - WINDOW, n]; }
  function xAxis() {
    return { values: (u, splits) => splits.map((v) => (v - now()).toFixed(0) + " s"), size: 24 };
  }
  function lowerBound(arr, x) {
    let lo = 0, hi = arr.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (arr[mid] < x) lo = mid + 1; else hi = mid; }
    return lo;
  }

  // -- physiology ------------------------------------------------------------------------------
  function physioTrace(name, type) {
    if (traces[name]) return traces[name];
    const el = document.createElement("div");
    el.dataset.trace = name;
    document.getElementById("physio").appendChild(el);
    const tr = { t: [], v: [], peaks: [], dirty: false, name: name };
    const color = COLORS[type] || "#333";
    tr.plot = new uPlot({
      width: Math.max(300, (document.getElementById("physio").clientWidth - 8) / 2), height: 130,
      title: name, legend: { show: false }, cursor: { show: false },
      scales: { x: { time: false, range: xRange } },
      axes: [xAxis(), { size: 50 }],
      series: [{}, { stroke: color, width: 1, points: { show: false } }],
      hooks: { draw: [(u) => drawPeaks(u, tr, color)] },
    }, [[], []], el);
    traces[name] = tr;
    return tr;
  }
  function drawPeaks(u, tr, color) {
    const ctx = u.ctx, [x0, x1] = [u.scales.x.min, u.scales.x.max];
    ctx.save(); ctx.fillStyle = color;
    for (const t of tr.peaks) {
      if (t < x0 || t > x1 || !tr.t.length) continue;
      const i = Math.min(lowerBound(tr.t, t), tr.t.length - 1);
      const v = tr.v[i];
      if (v === null) continue;
      ctx.beginPath();
      ctx.arc(u.valToPos(t, "x", true), u.valToPos(v, "y", true) - 6, 3.5 * devicePixelRatio, 0, 2 * Math.PI);
      ctx.fill();
    }
    ctx.restore();
  }

  // -- spotter score, candidates, truth, decisions ----------------------------------------------
  function scorePlot() {
    if (score.plot) return score.plot;
    const el = document.getElementById("score");
    score.plot = new uPlot({
      width: el.clientWidth || 900, height: 170, legend: { show: true, live: false }, cursor: { show: false },
      scales: { x: { time: false, range: xRange } },
      axes: [xAxis(), { size: 40 }],
      series: [{}, { label: "ME scale", stroke: "#3949ab", width: 1, spanGaps: true },
               { label: "macro scale", stroke: "#fb8c00", width: 1, spanGaps: true }],
      hooks: { draw: [drawBands] },
    }, [[], [], []], el);
    return score.plot;
  }
  function band(u, t0, t1, fill) {
    const a = u.valToPos(t0, "x", true), b = u.valToPos(t1, "x", true);
    u.ctx.fillStyle = fill;
    u.ctx.fillRect(a, u.bbox.top, Math.max(2, b - a), u.bbox.height);
  }
  function drawBands(u) {
    const [x0, x1] = [u.scales.x.min, u.scales.x.max];
    const ctx = u.ctx;
    ctx.save();
    for (const g of Object.values(truth)) {
      const end = g.t_off === null ? x1 : g.t_off;
      if (end >= x0 && g.t_on <= x1) band(u, g.t_on, end, "rgba(46,125,50,0.18)");
    }
    ctx.font = `${11 * devicePixelRatio}px system-ui`;
    for (const d of decisions) {
      if (d.t_offset < x0 || d.t_onset > x1) continue;
      if (d.stage === "early") band(u, d.t_onset, d.t_offset, "rgba(30,136,229,0.22)");
      ctx.fillStyle = d.stage === "early" ? "#0d47a1" : "#37474f";
      const x = u.valToPos(d.t_onset, "x", true);
      const y = u.bbox.top + (d.stage === "early" ? 12 : 26) * devicePixelRatio;
      ctx.fillText(`${d.stage === "early" ? "E" : "L"} ${d.label}`, x + 2, y);
    }
    ctx.restore();
  }

  // -- feed --------------------------------------------------------------------------------------
  function addPoints(name, entry) {
    if (entry.type === "SpotScore") {
      scorePlot();
      for (const [t, track, v] of entry.points) {
        score.t.push(t); score.me.push(track === 0 ? v : null); score.mae.push(track === 1 ? v : null);
      }
      score.dirty = true;
      return;
    }
    if (!PHYSIO.includes(entry.type)) return;
    const tr = physioTrace(name, entry.type);
    for (const [t, , v] of entry.points) { tr.t.push(t); tr.v.push(v); }
    tr.dirty = true;
  }
  function addMarker(m) {
    if (m.kind === "decision") {
      const d = m.data;
      decisions.push(d);
      if (decisions.length > 200) decisions.shift();
      probe.decisions += 1;
      score.dirty = true;
    } else if (m.kind === "truth") {
      const d = m.data, key = d.onset;
      const g = truth[key] || (truth[key] = { t_on: m.t, t_off: null, kind: d.kind, emotion: d.emotion,
                                              onset: d.onset, offset: d.offset });
      if (d.phase === "onset") g.t_on = m.t;
      if (d.phase === "offset") g.t_off = m.t;
      score.dirty = true;
    }
  }
  function trim(t, arrays, from) {
    const k = lowerBound(t, from);
    if (k > 0) for (const a of arrays) a.splice(0, k);
  }

  function renderStreams(rows) {
    lastRows = rows;
    const body = document.querySelector("#streams tbody");
    body.innerHTML = rows.map((r) => `<tr data-stream="${esc(r.name)}" data-source="${esc(r.source_id)}">
      <td>${esc(r.name)}</td><td>${esc(r.type)}</td><td>${r.nominal_hz ? fmt(r.nominal_hz, 0) : "irreg."}</td>
      <td>${fmt(r.effective_hz, 1)}</td><td>${fmt(r.jitter_ms, 2)}</td><td>${fmt(r.offset_ms, 3)}</td>
      <td>${r.drops}</td><td>${r.stalls}</td><td>${fmt(r.age_ms, 0)}</td>
      <td class="state state-${esc(r.state)}">${esc(r.state)}</td></tr>`).join("");
  }
  function renderRecording(rec) {
    const el = document.getElementById("recording");
    if (!rec) { el.textContent = "not recording"; return; }
    if (!rec.exists) { el.textContent = `recording: ${rec.dir} (not there yet)`; return; }
    const mb = (b) => (b / 1e6).toFixed(1) + " MB", gb = (b) => (b / 1e9).toFixed(1) + " GB";
    const el_s = rec.elapsed_s === null ? "-" : new Date(rec.elapsed_s * 1000).toISOString().substr(11, 8);
    const files = rec.files.map((f) => `${f.name} ${mb(f.bytes)}`).join(", ");
    el.textContent = `recording ${el_s} · ${mb(rec.total_bytes)} · free ${gb(rec.free_bytes)}`;
    el.title = `${rec.dir}: ${files}`;
  }
  function renderDecisions() {
    const body = document.querySelector("#decisions tbody");
    const rows = decisions.slice(-12).reverse().map((d) => {
      const probs = Object.entries(d.probabilities).sort((a, b) => b[1] - a[1]).slice(0, 4)
        .map(([k, p]) => `<span>${esc(k)} <i class="bar" style="width:${Math.round(p * 50)}px"></i> ${fmt(p, 2)}</span>`).join("");
      const hit = Object.values(truth).find((g) => g.onset <= d.offset && d.onset <= g.offset);
      const truthCell = hit ? `<td class="hit">${esc(hit.kind)} ${esc(hit.emotion || "")}</td>`
        : `<td class="miss">${Object.keys(truth).length ? "none" : "-"}</td>`;
      return `<tr class="${esc(d.stage)}" data-candidate="${d.candidate_id}"><td>${fmt(d.t_onset, 1)} s</td>
        <td>${d.candidate_id}</td><td>${esc(d.stage)}</td><td>${esc(d.kind)}</td><td>${esc(d.label)}</td>
        <td class="probs">${probs}</td>${truthCell}<td>${fmt(d.latency_ms, 0)}</td></tr>`;
    });
    body.innerHTML = rows.join("");
  }
  function renderVideo(v) {
    document.getElementById("video").src = "data:image/jpeg;base64," + v.jpeg;
    document.getElementById("video-info").textContent = `${v.stream} frame ${v.index}`;
    const f = v.face;
    document.getElementById("face-info").textContent = f.found ? `face: found, ${Object.keys(f.rois).length} ROIs`
      : f.box ? "face: detected, no landmarks" : "face: NOT FOUND";
  }

  function onMessage(msg) {
    clock = { lsl: msg.now, at: performance.now() };
    if (msg.type === "hello") {
      probe.hello += 1;
      for (const k of Object.keys(truth)) delete truth[k];
      decisions.length = 0;
      for (const [name, entry] of Object.entries(msg.traces)) {
        const tr = traces[name];
        if (tr) { tr.t.length = 0; tr.v.length = 0; }
        if (entry.type === "SpotScore") { score.t.length = score.me.length = score.mae.length = 0; }
        addPoints(name, entry);
      }
    } else {
      probe.ticks += 1;
      for (const [name, entry] of Object.entries(msg.points)) addPoints(name, entry);
    }
    for (const m of msg.markers) addMarker(m);
    if (msg.peaks) for (const [name, ts] of Object.entries(msg.peaks)) if (traces[name]) traces[name].peaks = ts;
    if (msg.streams) renderStreams(msg.streams);
    if ("recording" in msg) renderRecording(msg.recording);
    if (msg.video) renderVideo(msg.video);
    if (msg.markers.length || msg.type === "hello") renderDecisions();
  }

  function frame() {
    const from = now() - WINDOW - 1;
    for (const tr of Object.values(traces)) {
      if (!tr.dirty) continue;
      tr.dirty = false;
      trim(tr.t, [tr.t, tr.v], from);
      tr.plot.setData([tr.t, tr.v]);
      mark(tr.name, tr.t);
    }
    // The score plot also scrolls when no score arrives (truth and decisions still move along).
    if (score.plot && (score.dirty || performance.now() - score.drawnAt > 100)) {
      score.dirty = false;
      score.drawnAt = performance.now();
      trim(score.t, [score.t, score.me, score.mae], from);
      score.plot.setData([score.t, score.me, score.mae]);
      mark("score", score.t);
    }
    document.getElementById("clock").textContent = `LSL ${now().toFixed(1)} s`;
    requestAnimationFrame(frame);
  }
  function mark(name, t) {
    probe.draws[name] = (probe.draws[name] || 0) + 1;
    if (!t.length) return;
    const log = probe.drawn[name] || (probe.drawn[name] = []);
    if (!log.length || log[log.length - 1][0] < t[t.length - 1]) log.push([t[t.length - 1], Date.now()]);
    if (log.length > 4000) log.splice(0, 1000);
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/ws?token=${encodeURIComponent(token)}`);
    const conn = document.getElementById("conn");
    ws.onopen = () => { conn.textContent = "live"; conn.className = "conn on"; };
    ws.onmessage = (ev) => onMessage(JSON.parse(ev.data));
    ws.onclose = () => { conn.textContent = "reconnecting"; conn.className = "conn off"; setTimeout(connect, 1000); };
  }
  scorePlot();
  requestAnimationFrame(frame);
  connect();
})();
