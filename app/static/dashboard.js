// Scarcity dashboard: built on the public HTTP API only (anything shown here a script can fetch).
// Submit (form generated from GET /presets + the OpenAPI SimulationCreate schema; clone a run into it), watch (events
// streamed with fetch so an API key can ride along), history, compare (GET /compare), export. Charts: uPlot.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
};
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
// Tableau 10: one distinct colour per class of the labelled data sets (digits has 10).
const CLASS_PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
const fmt = (v) => {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (typeof v !== "number") return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return String(Number(v.toFixed(4)));
};
const shortId = (id) => String(id).slice(0, 8);

// ---------------------------------------------------------------------------------------------
// API access: bearer key from sessionStorage; on 401 ask for one (once for concurrent calls).
const KEY_STORE = "scarcity.apiKey";
let keyPrompt = null;

function apiKey() { return sessionStorage.getItem(KEY_STORE) || ""; }

function askForKey(message) {
  if (keyPrompt) return keyPrompt;
  const dialog = $("#key-dialog");
  $("#key-error").textContent = message || "";
  $("#key-input").value = apiKey();
  $("#key-button").hidden = false;
  keyPrompt = new Promise((resolve) => {
    dialog.addEventListener("close", function onClose() {
      dialog.removeEventListener("close", onClose);
      keyPrompt = null;
      if (dialog.returnValue === "ok" && $("#key-input").value.trim()) {
        sessionStorage.setItem(KEY_STORE, $("#key-input").value.trim());
        resolve(true);
      } else {
        if (dialog.returnValue === "forget") sessionStorage.removeItem(KEY_STORE);
        resolve(false);
      }
    });
    dialog.showModal();
  });
  return keyPrompt;
}

async function api(path, options = {}) {
  for (let attempt = 0; ; attempt++) {
    const headers = { ...(options.headers || {}) };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
    const response = await fetch(path, { ...options, headers });
    if (response.status !== 401 || attempt >= 5) return response;
    const again = await askForKey(apiKey() ? "That key was refused; try another." : "");
    if (!again) return response;
  }
}

async function apiJSON(path, options) {
  const response = await api(path, options);
  if (!response.ok) throw new Error(await errorText(response));
  return response.json();
}

async function errorText(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  const detail = body && body.detail;
  if (Array.isArray(detail)) return detail.map((d) => (d.field ? `${d.field}: ` : "") + d.message).join("; ");
  if (detail) return `${response.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`;
  return `${response.status} ${response.statusText}`;
}

function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function downloadCSV(id) {
  const response = await api(`/simulations/${id}/metrics?format=csv`);
  if (!response.ok) return alert(await errorText(response));
  download(`scarcity-${shortId(id)}-metrics.csv`, await response.text(), "text/csv");
}

async function downloadJSON(id) {
  try {
    const [simulation, metrics, meta] = await Promise.all([
      apiJSON(`/simulations/${id}`), apiJSON(`/simulations/${id}/metrics`),
      apiJSON(`/simulations/${id}/meta-params`),
    ]);
    const metaByRound = new Map(meta.rounds.map((r) => [r.round, r]));
    const rounds = metrics.rounds.map((r) => {
      const m = metaByRound.get(r.round);
      const meta_params = m ? Object.fromEntries(Object.entries(m).filter(([k]) => k !== "round")) : null;
      return { ...r, meta_params };
    });
    download(`scarcity-${shortId(id)}.json`, JSON.stringify({ simulation, rounds }, null, 2), "application/json");
  } catch (err) {
    alert(String(err.message || err));
  }
}

// A constant series (drift = 0) gets a small band around its value, not uPlot's 0–100.
function flatSafeRange(u, min, max) {
  if (min === null || max === null) return [0, 1];
  if (min === max) {
    if (min === 0) return [0, 1];
    const pad = Math.abs(min) * 0.1;
    return [min - pad, max + pad];
  }
  return uPlot.rangeNum(min, max, 0.1, true);
}

// ---------------------------------------------------------------------------------------------
// Charts (uPlot). Each ChartBox owns one plot; it is rebuilt when its set of series changes.
class ChartBox {
  constructor(parent, { key, title, yLabel = "", rightAxis = [] }) {
    this.key = key; this.title = title; this.rightAxis = new Set(rightAxis);
    this.root = el("figure", { class: "chart-box", "data-chart": key, "data-points": "0" },
      el("figcaption", { text: title }));
    this.plotEl = el("div", { class: "plot" });
    this.root.append(this.plotEl);
    parent.append(this.root);
    this.plot = null; this.seriesKeys = []; this.yLabel = yLabel;
    this.observer = new ResizeObserver(() => this.resize());
    this.observer.observe(this.plotEl);
  }

  size() {
    const width = Math.max(200, Math.floor(this.plotEl.clientWidth || 300));
    return { width, height: Math.round(Math.min(220, Math.max(160, width * 0.55))) };
  }

  resize() { if (this.plot) this.plot.setSize(this.size()); }

  // xs: round numbers; series: [[name, values aligned with xs]]
  update(xs, series) {
    const keys = series.map(([name]) => name);
    const data = [xs, ...series.map(([, values]) => values)];
    const hasAny = series.some(([, v]) => v.some((x) => x !== null && x !== undefined));
    this.root.hidden = !hasAny;
    if (!this.plot || keys.join("\u0000") !== this.seriesKeys.join("\u0000")) {
      if (this.plot) this.plot.destroy();
      this.seriesKeys = keys;
      this.plot = new uPlot(this.options(keys), data, this.plotEl);
    } else {
      this.plot.setData(data);
    }
    this.root.dataset.points = String(xs.length);
    this.root.dataset.series = keys.join(",");
  }

  options(keys) {
    const useRight = keys.some((k) => this.rightAxis.has(k));
    return {
      ...this.size(),
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: false }, y: { range: flatSafeRange }, ...(useRight ? { r: { range: flatSafeRange } } : {}) },
      axes: [
        { label: "round", size: 30, labelSize: 18, labelGap: 0, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500], values: (u, v) => v.map((x) => (Number.isInteger(x) ? x : "")) },
        { label: this.yLabel, size: 56, values: (u, v) => v.map(fmt) },
        ...(useRight ? [{ scale: "r", side: 1, size: 56, grid: { show: false }, values: (u, v) => v.map(fmt) }] : []),
      ],
      series: [
        { label: "round" },
        ...keys.map((name, i) => ({
          label: name,
          stroke: PALETTE[i % PALETTE.length],
          width: 2,
          scale: this.rightAxis.has(name) ? "r" : "y",
          spanGaps: true,
          points: { show: true, size: 6 },
          value: (u, v) => fmt(v),
        })),
      ],
    };
  }

  destroy() { this.observer.disconnect(); if (this.plot) this.plot.destroy(); this.root.remove(); }
}

// The clients' data (GET /simulations/{id}/clients): one stacked bar per client, one colour per
// label (rows held); for regression, each client's rows. Bars are drawn tallest first: each
// label's series is the running total up to it, so the shorter ones paint over the taller.
class ClientsChart {
  constructor(parent) {
    this.root = el("figure", { class: "chart-box", "data-chart": "clients", "data-clients": "0", "data-labels": "0" },
      el("figcaption", { text: "Clients' data (rows per label)" }));
    this.plotEl = el("div", { class: "plot" });
    this.root.append(this.plotEl);
    this.root.hidden = true;
    parent.append(this.root);
    this.plot = null;
  }

  update(clients) {
    if (this.plot) this.plot.destroy();
    const xs = clients.map((c) => c.client_id);
    const labels = clients.length && clients[0].label_counts ? clients[0].label_counts.length : 0;
    const stacks = [];
    if (labels) {
      for (let k = labels - 1; k >= 0; k--) {
        stacks.push([`label ${k}`, clients.map((c) => c.label_counts.slice(0, k + 1).reduce((a, b) => a + b, 0))]);
      }
    } else {
      stacks.push(["rows", clients.map((c) => c.train_samples)]);
    }
    const width = Math.max(200, Math.floor(this.plotEl.clientWidth || 300));
    const bars = uPlot.paths.bars({ size: [0.9, 40] });
    this.plot = new uPlot({
      width, height: 200,
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: false, range: (u, min, max) => [min - 0.5, max + 0.5] },
        y: { range: (u, min, max) => [0, max > 0 ? max * 1.05 : 1] },
      },
      axes: [
        { label: "client", size: 30, labelSize: 18, labelGap: 0, values: (u, v) => v.map((x) => (Number.isInteger(x) ? x : "")) },
        { label: "rows", size: 48, values: (u, v) => v.map(fmt) },
      ],
      series: [
        { label: "client" },
        ...stacks.map(([name], i) => {
          const colour = CLASS_PALETTE[(stacks.length - 1 - i) % CLASS_PALETTE.length];
          return { label: name, stroke: colour, fill: colour, width: 0, paths: bars, points: { show: false } };
        }),
      ],
    }, [xs, ...stacks.map(([, v]) => v)], this.plotEl);
    this.root.hidden = clients.length === 0;
    this.root.dataset.clients = String(clients.length);
    this.root.dataset.labels = String(labels);
  }

  destroy() { if (this.plot) this.plot.destroy(); this.root.remove(); }
}

// Clients × rounds heatmap of one per-client insight (GET /simulations/{id}/insights), drawn
// with Apache ECharts. Numbers on a continuous scale; the selected expert as categories.
const HEATMAP_INSIGHTS = ["loss", "uncertainty", "mean_grad", "loss_improvement", "selected_expert", "personal_accuracy", "personal_loss"];
const MAX_HEATMAP_CELLS = 20000;
const heatmapState = { insights: [], chart: null };

async function loadHeatmap(id, token) {
  const box = $("#heatmap-box");
  const sim = await apiJSON(`/simulations/${id}`);
  const cells = sim.config.num_clients * sim.progress.rounds_completed;
  if (!cells || cells > MAX_HEATMAP_CELLS) { box.hidden = true; return; }
  const rows = [];
  for (let offset = 0; ; offset += 10000) {
    const page = (await apiJSON(`/simulations/${id}/insights?limit=10000&offset=${offset}`)).insights;
    rows.push(...page);
    if (page.length < 10000) break;
  }
  if (token !== watchState.token) return;
  heatmapState.insights = rows;
  const available = HEATMAP_INSIGHTS.filter((k) => rows.some((r) => r.insight[k] !== undefined));
  box.hidden = !rows.length || !available.length;
  if (box.hidden) return;
  const select = $("#heatmap-insight");
  const previous = select.value;
  select.replaceChildren(...available.map((k) => new Option(k.replace(/_/g, " "), k)));
  select.value = available.includes(previous) ? previous : available[0];
  drawHeatmap();
}

function drawHeatmap() {
  const key = $("#heatmap-insight").value;
  const rows = heatmapState.insights.filter((r) => r.insight[key] !== undefined);
  const rounds = [...new Set(rows.map((r) => r.round))].sort((a, b) => a - b);
  const clients = [...new Set(rows.map((r) => r.client_id))].sort((a, b) => a - b);
  const categorical = rows.some((r) => typeof r.insight[key] === "string");
  const categories = categorical ? [...new Set(rows.map((r) => r.insight[key]))].sort() : [];
  const value = (v) => (categorical ? categories.indexOf(v) : v);
  const data = rows.map((r) => [rounds.indexOf(r.round), clients.indexOf(r.client_id), value(r.insight[key])]);
  const numbers = data.map((d) => d[2]);
  const visualMap = categorical
    ? { type: "piecewise", categories: categories.map((_, i) => i), dimension: 2, orient: "horizontal", left: "center", bottom: 0,
        formatter: (i) => categories[i], inRange: { color: CLASS_PALETTE.slice(0, categories.length) } }
    : { min: Math.min(...numbers), max: Math.max(...numbers), calculable: true, orient: "horizontal", left: "center", bottom: 0,
        inRange: { color: ["#f7fbff", "#6baed6", "#08306b"] } };
  if (!heatmapState.chart) heatmapState.chart = echarts.init($("#heatmap"), null, { renderer: "canvas" });
  heatmapState.chart.setOption({
    animation: false,
    tooltip: { formatter: (p) => `client ${clients[p.value[1]]}, round ${rounds[p.value[0]]}: ${categorical ? categories[p.value[2]] : fmt(p.value[2])}` },
    grid: { left: 50, right: 10, top: 10, bottom: 60 },
    xAxis: { type: "category", data: rounds, name: "round", nameLocation: "middle", nameGap: 25 },
    yAxis: { type: "category", data: clients, name: "client", nameLocation: "middle", nameGap: 35 },
    visualMap,
    series: [{ type: "heatmap", data }],
  }, true);
  const box = $("#heatmap-box");
  box.dataset.cells = String(data.length);
  box.dataset.insight = key;
}

// The gossip graph of one round: clients as nodes on a circle, each pair that averaged an
// expert as an edge coloured by that expert (ECharts graph).
const gossipState = { rounds: [], chart: null };

function loadGossipGraph() {
  const rounds = [...watchState.rounds.values()].sort((a, b) => a.round - b.round);
  const box = $("#gossip-graph-box");
  box.hidden = !rounds.some((r) => (r.gossip_pairs || []).length);
  if (box.hidden) return;
  gossipState.rounds = rounds;
  const select = $("#gossip-round");
  select.replaceChildren(...rounds.map((r) => new Option(String(r.round), String(r.round))));
  select.value = String(rounds[rounds.length - 1].round);
  drawGossipGraph();
}

function drawGossipGraph() {
  const round = gossipState.rounds.find((r) => String(r.round) === $("#gossip-round").value);
  const pairs = (round && round.gossip_pairs) || [];
  const clients = Number(($("#sim-meta").dataset.clients || "0")) ||
    1 + Math.max(0, ...pairs.flatMap((p) => [p.client_a, p.client_b]));
  const experts = [...new Set(gossipState.rounds.flatMap((r) => (r.gossip_pairs || []).map((p) => p.expert)))].sort();
  const colour = (e) => CLASS_PALETTE[experts.indexOf(e) % CLASS_PALETTE.length];
  if (!gossipState.chart) gossipState.chart = echarts.init($("#gossip-graph"), null, { renderer: "canvas" });
  gossipState.chart.setOption({
    animation: false,
    tooltip: {},
    legend: { data: experts, bottom: 0 },
    series: [{
      type: "graph",
      layout: "circular",
      roam: false,
      label: { show: clients <= 50 },
      categories: experts.map((name) => ({ name, itemStyle: { color: colour(name) } })),
      data: Array.from({ length: clients }, (_, i) => ({ id: String(i), name: `client ${i}`, symbolSize: 14, itemStyle: { color: "#9ca3af" } })),
      links: pairs.map((p) => ({ source: String(p.client_a), target: String(p.client_b), name: p.expert,
        lineStyle: { color: colour(p.expert), width: 3, opacity: 0.9 } })),
    }],
  }, true);
  const box = $("#gossip-graph-box");
  box.dataset.edges = String(pairs.length);
  box.dataset.round = $("#gossip-round").value;
}

async function loadClients(id, token) {
  try {
    const { clients } = await apiJSON(`/simulations/${id}/clients`);
    if (token !== watchState.token) return;
    if (!watchState.clientsChart) watchState.clientsChart = new ClientsChart($("#clients-chart"));
    watchState.clientsChart.update(clients);
  } catch { /* the chart stays hidden */ }
}

// ---------------------------------------------------------------------------------------------
// Watch: one simulation at a time; rounds arrive over the events stream (fetch-streamed SSE).
const METRIC_CHARTS = [
  { key: "loss", title: "Loss (mean client training loss, held-out test loss)", names: ["loss", "test_loss"] },
  { key: "recon", title: "Reconstruction loss and replay error", names: ["recon_loss", "replay_error"] },
  { key: "drift", title: "Drift", names: ["drift"] },
  { key: "accuracy", title: "Test accuracy", names: ["test_accuracy"] },
];
const CHARTED = new Set(METRIC_CHARTS.flatMap((c) => c.names));

const watchState = { id: null, token: 0, rounds: new Map(), meta: [], total: 0, lastRound: 0, charts: {}, abort: null };

function setStatus(status) {
  const node = $("#sim-status");
  node.textContent = status;
  node.dataset.status = status;
  const active = status === "queued" || status === "running";
  $("#watch-cancel").hidden = !active;
}

function setProgress(done, total) {
  const bar = $("#sim-progress");
  bar.max = Math.max(1, total); bar.value = done;
  $("#sim-progress-text").textContent = `round ${done} of ${total}`;
}

function showSimulation(sim) {
  setStatus(sim.status);
  watchState.total = sim.progress.rounds_total;
  setProgress(Math.max(sim.progress.rounds_completed, watchState.rounds.size), sim.progress.rounds_total);
  const c = sim.config || {};
  const bits = [sim.name, sim.preset, `${c.num_clients} clients`, `${c.rounds} rounds`, `seed ${c.seed}`,
    c.dataset, c.partition === "dirichlet" ? `dirichlet α=${c.dirichlet_alpha}` : c.partition,
    `created ${new Date(sim.created_at).toLocaleString()}`];
  if (sim.finished_at && sim.started_at) {
    bits.push(`ran ${((new Date(sim.finished_at) - new Date(sim.started_at)) / 1000).toFixed(1)} s`);
  }
  $("#sim-meta").textContent = bits.filter(Boolean).join(" · ");
  $("#sim-meta").dataset.clients = String(c.num_clients || 0);
  $("#sim-error").textContent = sim.error ? `Error: ${sim.error}` : "";
}

function logLine(r) {
  const total = r.rounds_total || watchState.total || "?";
  const metrics = Object.entries(r.metrics || {}).map(([k, v]) => `${k}=${fmt(v)}`).join(" ");
  return `Round ${r.round}/${total} ${metrics}`;
}

function ensureCharts() {
  if (Object.keys(watchState.charts).length) return watchState.charts;
  const root = $("#charts");
  root.replaceChildren();
  const charts = {};
  for (const spec of METRIC_CHARTS) charts[spec.key] = new ChartBox(root, spec);
  charts.other = new ChartBox(root, { key: "other", title: "Other metrics" });
  charts.meta = new ChartBox(root, { key: "meta", title: "Meta-parameters (lr on the right axis)", rightAxis: ["lr"] });
  charts.priors = new ChartBox(root, { key: "priors", title: "Structural priors (meta-learner)" });
  charts.experts = new ChartBox(root, { key: "experts", title: "Expert usage (clients routed per expert)" });
  charts.gossip = new ChartBox(root, { key: "gossip", title: "Gossip pairs per round (by expert)" });
  watchState.charts = charts;
  return charts;
}

function resetCharts() {
  for (const chart of Object.values(watchState.charts)) chart.destroy();
  watchState.charts = {};
}

function renderRounds() {
  const charts = ensureCharts();
  const rounds = [...watchState.rounds.values()].sort((a, b) => a.round - b.round);
  const xs = rounds.map((r) => r.round);
  const col = (get) => rounds.map((r) => { const v = get(r); return typeof v === "number" ? v : null; });
  const present = new Set(rounds.flatMap((r) => Object.keys(r.metrics || {})));
  for (const spec of METRIC_CHARTS) {
    const names = spec.names.filter((n) => present.has(n));
    charts[spec.key].update(xs, names.map((n) => [n, col((r) => r.metrics[n])]));
  }
  const others = [...present].filter((n) => !CHARTED.has(n)).sort();
  charts.other.update(xs, others.map((n) => [n, col((r) => r.metrics[n])]));
  const experts = [...new Set(rounds.flatMap((r) => Object.keys(r.expert_usage || {})))];
  charts.experts.update(xs, experts.map((e) => [e, col((r) => (r.expert_usage || {})[e] ?? 0)]));
  const pairExperts = [...new Set(rounds.flatMap((r) => (r.gossip_pairs || []).map((p) => p.expert || "pairs")))];
  const gossipSeries = pairExperts.map((e) => [e, col((r) => (r.gossip_pairs || []).filter((p) => (p.expert || "pairs") === e).length)]);
  if (pairExperts.length > 1) gossipSeries.unshift(["all pairs", col((r) => (r.gossip_pairs || []).length)]);
  charts.gossip.update(xs, rounds.some((r) => (r.gossip_pairs || []).length) ? gossipSeries : []);
  const last = rounds[rounds.length - 1];
  const pairs = last && last.gossip_pairs ? last.gossip_pairs : [];
  $("#gossip-latest").textContent = pairs.length
    ? `Gossip in round ${last.round}: ` + pairs.map((p) => `client ${p.client_a} ↔ client ${p.client_b}${p.expert ? ` (${p.expert})` : ""}`).join(", ")
    : "";
  renderMeta();
}

function renderMeta() {
  const charts = ensureCharts();
  const rows = [...watchState.meta].sort((a, b) => a.round - b.round);
  const xs = rows.map((r) => r.round);
  const col = (k) => rows.map((r) => (typeof r[k] === "number" ? r[k] : null));
  const metaKeys = ["mean", "std", "lr"].filter((k) => rows.some((r) => typeof r[k] === "number"));
  charts.meta.update(xs, metaKeys.map((k) => [k, col(k)]));
  const priors = [...new Set(rows.flatMap((r) => Object.keys(r).filter((k) => k.startsWith("prior_"))))].sort();
  charts.priors.update(xs, priors.map((k) => [k.replace(/^prior_/, ""), col(k)]));
}

let metaInFlight = null;
async function refreshMeta(token) {
  if (metaInFlight) { metaInFlight.again = true; return; }
  metaInFlight = { again: false };
  try {
    do {
      metaInFlight.again = false;
      const body = await apiJSON(`/simulations/${watchState.id}/meta-params`);
      if (token !== watchState.token) return;
      watchState.meta = body.rounds || [];
      renderMeta();
    } while (metaInFlight.again);
  } catch { /* meta-params are optional decoration; the next round retries */ } finally {
    metaInFlight = null;
  }
}

function addRound(r, token) {
  if (token !== watchState.token) return;
  const isNew = !watchState.rounds.has(r.round);
  watchState.rounds.set(r.round, r);
  if (r.rounds_total) watchState.total = r.rounds_total;
  if (isNew) {
    const log = $("#sim-log");
    if (r.round > watchState.lastRound) {
      log.append(`${logLine(r)}\n`);
      watchState.lastRound = r.round;
    } else {
      const lines = [...watchState.rounds.values()].sort((a, b) => a.round - b.round).map(logLine);
      log.textContent = lines.join("\n") + "\n";
    }
    log.scrollTop = log.scrollHeight;
  }
  const status = $("#sim-status").dataset.status;
  if (!FINISHED.has(status)) setStatus("running");
  setProgress(watchState.rounds.size, watchState.total);
  scheduleRender(token);
  refreshMeta(token);
}

// A replayed stream can deliver hundreds of rounds at once: draw at most once per frame.
let renderPending = false;
function scheduleRender(token) {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => {
    renderPending = false;
    if (token === watchState.token) renderRounds();
  });
}

// Server-sent events over fetch (EventSource cannot send the Authorization header).
async function streamEvents(id, token, signal) {
  const response = await api(`/simulations/${id}/events`, { signal, headers: { Accept: "text/event-stream" } });
  if (!response.ok || !response.body) throw new Error(await errorText(response));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return false;
    buffer += value.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
      let event = "message"; const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const [field, ...rest] = line.split(":");
        const v = rest.join(":").replace(/^ /, "");
        if (field === "event") event = v; else if (field === "data") data.push(v);
      }
      if (!data.length || token !== watchState.token) continue;
      const payload = JSON.parse(data.join("\n"));
      if (event === "round") addRound(payload, token);
      else if (event === "end") { finishWatch(payload, token); return true; }
    }
  }
}

async function finishWatch(sim, token) {
  if (token !== watchState.token) return;
  showSimulation(sim);
  setProgress(sim.progress.rounds_completed, sim.progress.rounds_total);
  await refreshMeta(token);
  loadServerLog(token);
  loadHeatmap(watchState.id, token).catch(() => { $("#heatmap-box").hidden = true; });
  loadGossipGraph();
  refreshHistory();
}

async function loadServerLog(token) {
  try {
    const body = await apiJSON(`/simulations/${watchState.id}/logs`);
    if (token !== watchState.token) return;
    $("#server-log").textContent = body.lines.map((l) => `[r${l.round}] ${l.level} ${l.message}`).join("\n");
  } catch (err) {
    $("#server-log").textContent = String(err.message || err);
  }
}

async function watch(id) {
  if (watchState.abort) watchState.abort.abort();
  const token = ++watchState.token;
  const abort = new AbortController();
  Object.assign(watchState, { id, rounds: new Map(), meta: [], total: 0, lastRound: 0, abort });
  resetCharts();
  $("#watch-empty").hidden = true;
  $("#watch-body").hidden = false;
  for (const b of ["#watch-csv", "#watch-json"]) $(b).hidden = false;
  window.history.replaceState(null, "", `#sim=${id}`);
  $("#sim-id").textContent = shortId(id);
  $("#sim-id").title = id;
  $("#sim-log").textContent = "";
  $("#server-log").textContent = "";
  $("#sim-error").textContent = "";
  setStatus("…");
  setProgress(0, 0);
  for (const row of document.querySelectorAll("#history-rows tr")) row.classList.toggle("current", row.dataset.id === id);
  let sim;
  try {
    sim = await apiJSON(`/simulations/${id}`);
  } catch (err) {
    setStatus("error");
    $("#sim-error").textContent = String(err.message || err);
    return;
  }
  if (token !== watchState.token) return;
  showSimulation(sim);
  ensureCharts();
  if (watchState.clientsChart) { watchState.clientsChart.destroy(); watchState.clientsChart = null; }
  $("#heatmap-box").hidden = true;
  $("#gossip-graph-box").hidden = true;
  loadClients(id, token);
  // The stream replays every stored round, then follows live ones until the end event.
  for (let attempt = 0; token === watchState.token; attempt++) {
    try {
      if (await streamEvents(id, token, abort.signal)) return;
    } catch (err) {
      if (abort.signal.aborted) return;
      if (attempt >= 3) { $("#sim-error").textContent = `Event stream failed: ${err.message || err}; polling instead.`; break; }
    }
    await new Promise((r) => setTimeout(r, 1000 * (attempt + 1)));
  }
  // Fallback: poll the resource and its metrics.
  while (token === watchState.token) {
    try {
      const [s, m] = await Promise.all([apiJSON(`/simulations/${id}`), apiJSON(`/simulations/${id}/metrics`)]);
      for (const r of m.rounds) addRound({ ...r, rounds_total: s.progress.rounds_total }, token);
      if (FINISHED.has(s.status)) { finishWatch(s, token); return; }
      showSimulation(s);
    } catch { /* keep polling */ }
    await new Promise((r) => setTimeout(r, 1500));
  }
}

// ---------------------------------------------------------------------------------------------
// Submit form: one control per SimulationCreate property, defaults from the chosen preset.
const LABELS = {
  num_clients: "Clients", rounds: "Rounds", seed: "Seed", input_dim: "Input dim", output_dim: "Output dim",
  samples_per_client: "Samples per client", local_epochs: "Local epochs", learning_rate: "Learning rate",
  batch_size: "Batch size", router_strategy: "Router strategy", dataset: "Data set", partition: "Partition",
  dirichlet_alpha: "Dirichlet α", quantity_skew: "Quantity skew σ", drift: "Drift",
  test_fraction: "Test fraction", min_partition_size: "Min rows per client",
  num_classes_per_partition: "Classes per client", num_shards_per_partition: "Shards per client",
  feature_noise: "Feature noise σ", client_test_fraction: "Client test fraction",
  name: "Name", tags: "Tags", notes: "Notes",
};
const GROUPS = [
  ["Run", ["name", "tags", "notes", "num_clients", "rounds", "seed"]],
  ["Model and training", ["input_dim", "output_dim", "learning_rate", "local_epochs", "batch_size", "router_strategy"]],
  ["Data", ["dataset", "partition", "dirichlet_alpha", "min_partition_size", "self_balancing", "num_classes_per_partition", "class_assignment_mode", "num_shards_per_partition", "samples_per_client", "quantity_skew", "resample_to_size", "feature_scaling", "feature_noise", "drift", "test_fraction", "client_test_fraction"]],
  ["Strategy (shared model)", ["strategy", "reptile_step_size", "server_learning_rate", "server_momentum", "beta_1", "beta_2", "tau", "proximal_mu", "trim_beta", "num_malicious_clients", "num_clients_to_keep", "q_param", "qffl_learning_rate", "dp_clipping_norm", "dp_noise_multiplier", "dp_clipping"]],
  ["Participation and attackers", ["clients_per_round", "fraction_fit", "min_fit_clients", "malicious_fraction", "attack", "attack_scale"]],
];
const form = { presets: [], strategies: [], partitions: [], fields: new Map() };

// Only the chosen partition's parameters are shown (GET /partitions says which it reads);
// samples_per_client and quantity_skew also size synthetic clients and resampled ones.
function showPartitionParameters() {
  const partition = form.fields.get("partition");
  if (!partition) return;
  const all = new Set(form.partitions.flatMap((p) => Object.keys(p.parameters)));
  const chosen = form.partitions.find((p) => p.name === partition.input.value);
  const wanted = new Set(chosen ? Object.keys(chosen.parameters) : []);
  const dataset = form.fields.get("dataset");
  const resample = form.fields.has("resample_to_size") && fieldValue("resample_to_size") === true;
  const sized = !dataset || dataset.input.value === "synthetic" || resample;
  if (sized) for (const name of ["samples_per_client", "quantity_skew"]) wanted.add(name);
  for (const name of all) {
    const f = form.fields.get(name);
    if (f) f.wrap.hidden = !wanted.has(name);
  }
  // Synthetic clients draw their own data: no split, no scaling of a real data set.
  const real = dataset && dataset.input.value !== "synthetic";
  for (const name of ["partition", "resample_to_size", "feature_scaling"]) {
    const f = form.fields.get(name);
    if (f) f.wrap.hidden = !real;
  }
}

// Only the chosen strategy's parameters are shown (GET /strategies says which it reads).
function showStrategyParameters() {
  const strategy = form.fields.get("strategy");
  if (!strategy) return;
  const all = new Set(form.strategies.flatMap((s) => Object.keys(s.parameters)));
  const chosen = form.strategies.find((s) => s.name === strategy.input.value);
  const wanted = new Set(chosen ? Object.keys(chosen.parameters) : []);
  for (const name of all) {
    const f = form.fields.get(name);
    if (f) f.wrap.hidden = !wanted.has(name);
  }
}

function resolveSchema(prop) {
  const variants = prop.anyOf || prop.oneOf || [prop];
  const main = variants.find((v) => v.type && v.type !== "null") || variants[0] || {};
  return { ...prop, ...main };
}

function boundsText(s) {
  const lo = s.minimum ?? (s.exclusiveMinimum !== undefined ? `>${s.exclusiveMinimum}` : null);
  const hi = s.maximum ?? (s.exclusiveMaximum !== undefined ? `<${s.exclusiveMaximum}` : null);
  if (lo === null && hi === null) return "";
  if (lo !== null && hi !== null) return typeof lo === "number" && typeof hi === "number" ? `${lo}–${hi}` : `${lo}, ${hi}`;
  return lo !== null ? (typeof lo === "number" ? `≥ ${lo}` : lo) : (typeof hi === "number" ? `≤ ${hi}` : hi);
}

function humanize(name, s) {
  return LABELS[name] || s.title || name.replace(/_/g, " ");
}

function buildField(name, prop) {
  const s = resolveSchema(prop);
  const id = `f-${name}`;
  let input;
  let kind;
  if (s.type === "boolean") {
    kind = "boolean";
    input = el("input", { type: "checkbox", id, name });
  } else if (s.type === "object") {  // tags: key → value, typed as "key=value, key2=value2"
    kind = "tags";
    input = el("input", { type: "text", id, name, placeholder: "study=lr, team=fl" });
  } else if (s.enum) {
    kind = "enum";
    input = el("select", { id, name }, ...s.enum.map((v) => new Option(v, v)));
  } else if (s.type === "integer" || s.type === "number") {
    kind = s.type;
    const min = s.minimum ?? s.exclusiveMinimum;
    input = el("input", {
      type: "number", id, name, inputmode: s.type === "integer" ? "numeric" : "decimal",
      step: s.type === "integer" ? "1" : "any", min, max: s.maximum ?? s.exclusiveMaximum,
    });
  } else {
    kind = "string";
    input = el("input", { type: "text", id, name });
  }
  const label = humanize(name, s);
  const hintText = [s.description, boundsText(s)].filter(Boolean).join(" · ");
  const wrap = el("div", { class: `field field-${kind}`, "data-field": name });
  if (kind === "boolean") {
    wrap.append(el("label", { for: id, class: "check" }, input, el("span", { text: label })));
  } else {
    wrap.append(el("label", { for: id, text: label }), input);
  }
  if (hintText) wrap.append(el("small", { class: "hint", text: hintText }));
  wrap.append(el("small", { class: "field-error", role: "alert" }));
  input.addEventListener("input", () => { markChanged(name); clearFieldError(name); });
  input.addEventListener("change", () => { markChanged(name); clearFieldError(name); });
  form.fields.set(name, { input, kind, wrap });
  return wrap;
}

function buildForm(schema) {
  const props = { ...schema.properties };
  delete props.preset;
  const used = new Set();
  const root = $("#form-groups");
  root.replaceChildren();
  const group = (title, names, open = true) => {
    const present = names.filter((n) => props[n] && !used.has(n));
    if (!present.length) return;
    present.forEach((n) => used.add(n));
    const fs = el("fieldset", { class: "group" }, el("legend", { text: title }));
    const grid = el("div", { class: "grid" }, ...present.map((n) => buildField(n, props[n])));
    if (open) {
      fs.append(grid);
      root.append(fs);
    } else {
      root.append(el("details", { class: "group advanced" }, el("summary", { text: title }), grid));
    }
  };
  for (const [title, names] of GROUPS) group(title, names);
  const booleans = Object.keys(props).filter((n) => resolveSchema(props[n]).type === "boolean");
  group("Features (stage toggles)", booleans);
  group("Advanced", Object.keys(props), false);
}

function presetConfig() {
  const p = form.presets.find((x) => x.name === $("#f-preset").value);
  return p ? p.config : {};
}

function parseTags(text) {
  const tags = {};
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const at = part.indexOf("=");
    if (at <= 0) return { bad: `"${part}" is not key=value` };
    tags[part.slice(0, at).trim()] = part.slice(at + 1).trim();
  }
  return Object.keys(tags).length ? tags : null;
}

const tagsText = (tags) => Object.entries(tags || {}).map(([k, v]) => `${k}=${v}`).join(", ");

function fieldValue(name) {
  const f = form.fields.get(name);
  if (f.kind === "boolean") return f.input.checked;
  if (f.kind === "tags") return parseTags(f.input.value);
  if (f.kind === "integer" || f.kind === "number") {
    if (f.input.validity && f.input.validity.badInput) return { bad: "not a number" };
    return f.input.value.trim() === "" ? null : Number(f.input.value);
  }
  return f.input.value;
}

function markChanged(name) {
  const f = form.fields.get(name);
  const def = presetConfig()[name];
  const v = fieldValue(name);
  f.wrap.classList.toggle("changed", def !== undefined && v !== null && v !== def);
}

function applyPreset() {
  const p = form.presets.find((x) => x.name === $("#f-preset").value);
  $("#preset-description").textContent = p ? p.description : "";
  const config = p ? p.config : {};
  for (const [name, f] of form.fields) {
    const v = config[name];
    if (f.kind === "boolean") f.input.checked = Boolean(v);
    else f.input.value = v === undefined || v === null ? "" : String(v);
    markChanged(name);
    clearFieldError(name);
  }
  showStrategyParameters();
  showPartitionParameters();
  $("#form-error").textContent = "";
  $("#form-note").textContent = "";
}

// Clone: the form takes a stored run's preset and every config value (its name gets "copy").
function cloneIntoForm(sim) {
  const select = $("#f-preset");
  if ([...select.options].some((o) => o.value === sim.preset)) select.value = sim.preset;
  applyPreset();
  const config = sim.config || {};
  for (const [name, f] of form.fields) {
    let v = config[name];
    if (name === "name") v = sim.name ? `${sim.name} copy` : "";
    else if (name === "tags") v = tagsText(sim.tags);
    else if (name === "notes") v = "";
    if (v === undefined) continue;
    if (f.kind === "boolean") f.input.checked = Boolean(v);
    else f.input.value = v === null ? "" : String(v);
    markChanged(name);
  }
  showStrategyParameters();
  $("#form-note").textContent = `Cloned from ${sim.name || shortId(sim.id)}: change what you want and press Run.`;
  $("#run-form").scrollIntoView({ behavior: "smooth" });
}

function clearFieldError(name) {
  const f = name === "preset" ? { wrap: $('[data-field="preset"]') } : form.fields.get(name);
  if (!f) return;
  f.wrap.classList.remove("invalid");
  $(".field-error", f.wrap).textContent = "";
}

function showFieldError(name, message) {
  const wrap = document.querySelector(`#run-form [data-field="${CSS.escape(name)}"]`);
  if (!wrap) return false;
  wrap.classList.add("invalid");
  const box = $(".field-error", wrap);
  box.textContent = box.textContent ? `${box.textContent}; ${message}` : message;
  const details = wrap.closest("details");
  if (details) details.open = true;
  return true;
}

async function submit(event) {
  event.preventDefault();
  for (const name of ["preset", ...form.fields.keys()]) clearFieldError(name);
  $("#form-error").textContent = "";
  const defaults = presetConfig();
  const body = { preset: $("#f-preset").value };
  let bad = false;
  for (const name of form.fields.keys()) {
    const v = fieldValue(name);
    if (v && typeof v === "object" && v.bad) { showFieldError(name, v.bad); bad = true; continue; }
    if (v === null || v === "" || v === defaults[name]) continue;
    body[name] = v;
  }
  if (bad) { $("#form-error").textContent = "Fix the fields marked in red."; return; }
  const button = $("#run-button");
  button.disabled = true;
  try {
    const response = await api("/simulations", { method: "POST", body: JSON.stringify(body) });
    if (response.status === 202 || response.ok) {
      const sim = await response.json();
      refreshHistory();
      watch(sim.id);
      if (window.matchMedia("(max-width: 900px)").matches) $("#watch").scrollIntoView({ behavior: "smooth" });
      return;
    }
    let data = null;
    try { data = await response.clone().json(); } catch { /* not JSON */ }
    if (response.status === 422 && data && Array.isArray(data.detail)) {
      const general = [];
      for (const d of data.detail) {
        const name = String(d.field || "").split(".")[0];
        if (!name || !showFieldError(name, d.message)) general.push((d.field ? `${d.field}: ` : "") + d.message);
      }
      $("#form-error").textContent = general.length ? general.join("; ") : "Fix the fields marked in red.";
    } else if (response.status === 413) {
      $("#form-error").textContent = "Request too large (413).";
    } else {
      $("#form-error").textContent = await errorText(response);
    }
  } catch (err) {
    $("#form-error").textContent = `Could not reach the API: ${err.message || err}`;
  } finally {
    button.disabled = false;
  }
}

async function initForm() {
  try {
    const [presets, openapi, strategies, partitions] = await Promise.all([
      apiJSON("/presets"), apiJSON("/openapi.json"), apiJSON("/strategies"), apiJSON("/partitions"),
    ]);
    form.presets = presets;
    form.strategies = strategies;
    form.partitions = partitions;
    const schema = openapi.components.schemas.SimulationCreate;
    const select = $("#f-preset");
    const names = (resolveSchema(schema.properties.preset).enum || presets.map((p) => p.name));
    select.replaceChildren(...names.map((n) => {
      const p = presets.find((x) => x.name === n);
      return new Option(p ? `${n} — ${p.description}` : n, n);
    }));
    select.value = names.includes("stage8") ? "stage8" : names[names.length - 1];
    buildForm(schema);
    applyPreset();
    const strategy = form.fields.get("strategy");
    if (strategy) strategy.input.addEventListener("change", showStrategyParameters);
    for (const name of ["partition", "dataset", "resample_to_size"]) {
      const f = form.fields.get(name);
      if (f) f.input.addEventListener("change", showPartitionParameters);
    }
    showPartitionParameters();
    const filter = $("#filter-preset");
    for (const n of names) filter.add(new Option(n, n));
  } catch (err) {
    $("#form-groups").replaceChildren(el("p", { class: "error", text: `Could not load the form: ${err.message || err}` }));
  }
}

// ---------------------------------------------------------------------------------------------
// History: newest first, filters, pagination, final metrics, actions, compare selection.
const historyState = { cursor: null, finalMetrics: new Map(), selected: new Set(), timer: null, rows: [] };

async function finalMetrics(sim) {
  if (sim.final_metrics !== undefined) return sim.final_metrics;  // the API sends it
  const k = sim.progress.rounds_completed;
  if (!k) return null;
  const cacheKey = `${sim.id}:${k}`;
  if (historyState.finalMetrics.has(cacheKey)) return historyState.finalMetrics.get(cacheKey);
  const body = await apiJSON(`/simulations/${sim.id}/metrics?from_round=${k}&to_round=${k}`);
  const last = body.rounds[body.rounds.length - 1];
  const metrics = last ? last.metrics : null;
  historyState.finalMetrics.set(cacheKey, metrics);
  return metrics;
}

function metricsSummary(m) {
  if (!m) return "–";
  const order = ["loss", "test_loss", "test_accuracy", "recon_loss", "replay_error"];
  return order.filter((k) => k in m).map((k) => `${k}=${fmt(m[k])}`).join(" ");
}

function historyRow(sim) {
  const active = !FINISHED.has(sim.status);
  const check = el("input", {
    type: "checkbox", "aria-label": `compare ${shortId(sim.id)}`, checked: historyState.selected.has(sim.id),
    onchange: (e) => {
      if (e.target.checked) {
        if (historyState.selected.size >= COMPARE_MAX) { e.target.checked = false; alert(`Compare at most ${COMPARE_MAX} simulations.`); return; }
        historyState.selected.add(sim.id);
      } else historyState.selected.delete(sim.id);
      updateCompareControls();
    },
  });
  const metricsCell = el("td", { class: "metrics", "data-label": "Final", text: "…" });
  finalMetrics(sim).then((m) => { metricsCell.textContent = metricsSummary(m); }).catch(() => { metricsCell.textContent = "?"; });
  const actions = el("td", { class: "actions" },
    el("button", { type: "button", text: "Open", onclick: () => { watch(sim.id); $("#watch").scrollIntoView({ behavior: "smooth" }); } }),
    el("button", { type: "button", text: "Clone", title: "Fill the form with this run's settings", onclick: () => cloneIntoForm(sim) }),
    el("button", { type: "button", text: "CSV", onclick: () => downloadCSV(sim.id) }),
    el("button", { type: "button", text: "JSON", onclick: () => downloadJSON(sim.id) }),
    active ? el("button", { type: "button", text: "Cancel", onclick: () => cancelSimulation(sim.id) }) : null,
    el("button", { type: "button", class: "danger", text: "Delete", onclick: () => deleteSimulation(sim.id) }),
  );
  const created = new Date(sim.created_at);
  return el("tr", { "data-id": sim.id, class: sim.id === watchState.id ? "current" : "" },
    el("td", { "data-label": "Compare" }, check),
    el("td", { "data-label": "Created", title: sim.id, text: created.toLocaleString([], { dateStyle: "short", timeStyle: "medium" }) }),
    el("td", { "data-label": "Run", class: "run" },
      el("span", { class: "run-name", text: sim.name || shortId(sim.id), title: sim.notes || sim.id }),
      ...Object.entries(sim.tags || {}).map(([k, v]) => el("span", { class: "tag", text: `${k}=${v}` }))),
    el("td", { "data-label": "Preset", text: sim.preset }),
    el("td", { "data-label": "Differs", class: "differs", text: "" }),
    el("td", { "data-label": "Status" }, el("span", { class: "status", "data-status": sim.status, text: sim.status })),
    el("td", { "data-label": "Rounds", text: `${sim.progress.rounds_completed}/${sim.progress.rounds_total}` }),
    metricsCell,
    actions,
  );
}

async function loadHistory({ append = false } = {}) {
  const params = new URLSearchParams({ limit: "20" });
  if ($("#filter-status").value) params.set("status", $("#filter-status").value);
  if ($("#filter-preset").value) params.set("preset", $("#filter-preset").value);
  if (append && historyState.cursor) params.set("cursor", historyState.cursor);
  let page;
  try {
    page = await apiJSON(`/simulations?${params}`);
  } catch (err) {
    $("#history-empty").hidden = false;
    $("#history-empty").textContent = `Could not load the history: ${err.message || err}`;
    return;
  }
  historyState.rows = append ? [...historyState.rows, ...page.data] : page.data;
  historyState.cursor = page.next_cursor || null;
  const body = $("#history-rows");
  const rows = page.data.map(historyRow);
  if (append) body.append(...rows); else body.replaceChildren(...rows);
  showDiffers();
  $("#history-empty").hidden = historyState.rows.length > 0;
  $("#history-empty").textContent = "No simulations yet.";
  $("#history-more").hidden = !historyState.cursor;
  clearTimeout(historyState.timer);
  if (historyState.rows.some((s) => !FINISHED.has(s.status))) historyState.timer = setTimeout(refreshHistory, 3000);
}

function refreshHistory() { return loadHistory({ append: false }); }

// The config fields whose values are not the same in every listed run: what tells rows apart.
const DIFFERS_SHOWN = 3;
const shown = (v) => (typeof v === "number" ? fmt(v) : v === null || v === undefined ? "null" : String(v));

function differingFields(configs) {
  if (configs.length < 2) return [];
  const names = [...new Set(configs.flatMap((c) => Object.keys(c)))];
  return names.filter((n) => configs.some((c) => JSON.stringify(c[n]) !== JSON.stringify(configs[0][n])));
}

function showDiffers() {
  const fields = differingFields(historyState.rows.map((s) => s.config || {}));
  const byId = new Map(historyState.rows.map((s) => [s.id, s]));
  for (const row of document.querySelectorAll("#history-rows tr")) {
    const sim = byId.get(row.dataset.id);
    const cell = $("td.differs", row);
    if (!sim || !cell) continue;
    const parts = fields.slice(0, DIFFERS_SHOWN).map((f) => `${f}=${shown(sim.config[f])}`);
    if (fields.length > DIFFERS_SHOWN) parts.push("…");
    cell.textContent = parts.join(" ");
    cell.title = fields.map((f) => `${f}=${shown(sim.config[f])}`).join("\n");
  }
}

async function cancelSimulation(id) {
  const response = await api(`/simulations/${id}/cancel`, { method: "POST" });
  if (!response.ok) alert(await errorText(response));
  refreshHistory();
  if (id === watchState.id && response.ok) {
    try { showSimulation(await apiJSON(`/simulations/${id}`)); } catch { /* the stream will tell */ }
  }
}

async function deleteSimulation(id) {
  if (!confirm(`Delete simulation ${shortId(id)} and all its results?`)) return;
  const response = await api(`/simulations/${id}`, { method: "DELETE" });
  if (!response.ok && response.status !== 204) { alert(await errorText(response)); return; }
  historyState.selected.delete(id);
  updateCompareControls();
  if (id === watchState.id) {
    if (watchState.abort) watchState.abort.abort();
    watchState.token++; watchState.id = null;
    resetCharts();
    $("#watch-body").hidden = true; $("#watch-empty").hidden = false;
    for (const b of ["#watch-csv", "#watch-json", "#watch-cancel"]) $(b).hidden = true;
    $("#sim-id").textContent = "—"; setStatus("idle");
    window.history.replaceState(null, "", window.location.pathname);
  }
  refreshHistory();
}

// ---------------------------------------------------------------------------------------------
// Compare: 2–8 simulations through GET /compare, one metric, one chart; the legend names each run
// by what sets it apart (its name, then the config fields that differ), aligned by round.
let compareChart = null;
let compareBody = null;
const COMPARE_MAX = 8;
const COMMON_METRICS = ["loss", "test_loss", "test_accuracy", "recon_loss", "replay_error", "drift", "avg_uncertainty"];

function updateCompareControls() {
  const n = historyState.selected.size;
  $("#compare-button").disabled = n < 2 || n > COMPARE_MAX;
  $("#compare-clear").disabled = n === 0;
  $("#compare-hint").textContent = n < 2 ? `Tick 2–${COMPARE_MAX} simulations above to put their curves on one chart.`
    : `${n} selected.`;
}

async function compare() {
  const ids = [...historyState.selected];
  const metric = $("#compare-metric").value;
  try {
    compareBody = await apiJSON(`/compare?ids=${ids.join(",")}`);
    const names = Object.keys(compareBody.metrics);
    const select = $("#compare-metric");
    const options = [...new Set([...COMMON_METRICS.filter((m) => names.includes(m)), ...names.sort()])];
    select.replaceChildren(...options.map((m) => new Option(m, m)));
    select.value = options.includes(metric) ? metric : options[0] || "loss";
    const fields = compareBody.differing_fields;
    $("#compare-hint").textContent = fields.length ? `Differing: ${fields.join(", ")}.` : "Same settings in every run.";
    drawCompare(compareBody, select.value);
  } catch (err) {
    $("#compare-hint").textContent = `Could not compare: ${err.message || err}`;
  }
}

function drawCompare(body, metric) {
  const box = $("#compare-chart");
  box.hidden = false;
  if (!compareChart) compareChart = new ChartBox(box, { key: "compare", title: "" });
  const values = body.metrics[metric] || body.runs.map(() => body.rounds.map(() => null));
  const series = body.runs.map((run, i) => [run.label, values[i]]);
  $("figcaption", compareChart.root).textContent = `${metric} by round`;
  compareChart.update(body.rounds, series);
  compareChart.root.hidden = false;
}

// ---------------------------------------------------------------------------------------------
// Sweeps: the list with progress by status, and one sweep's results table, sortable by column.
const sweepState = { results: null, id: null, sort: { key: null, desc: false }, timer: null };

function sweepProgressText(p) {
  const parts = [`${p.succeeded}/${p.total} succeeded`];
  for (const s of ["running", "queued", "pending", "failed", "cancelled"]) if (p[s]) parts.push(`${p[s]} ${s}`);
  return parts.join(", ");
}

function sweepRow(sweep) {
  const actions = el("td", { class: "actions" },
    el("button", { type: "button", text: "Results", onclick: () => showSweepResults(sweep.id) }),
    el("button", { type: "button", text: "CSV", onclick: () => downloadSweepCSV(sweep.id) }),
    sweep.status === "running" ? el("button", { type: "button", text: "Cancel", onclick: () => sweepAction(sweep.id, "cancel") }) : null,
    el("button", { type: "button", class: "danger", text: "Delete", onclick: () => sweepAction(sweep.id, "delete") }),
  );
  return el("tr", { "data-id": sweep.id, class: sweep.id === sweepState.id ? "current" : "" },
    el("td", { "data-label": "Created", text: new Date(sweep.created_at).toLocaleString([], { dateStyle: "short", timeStyle: "medium" }) }),
    el("td", { "data-label": "Sweep", class: "run" }, el("span", { class: "run-name", text: sweep.name || shortId(sweep.id), title: sweep.id })),
    el("td", { "data-label": "Method", text: sweep.method }),
    el("td", { "data-label": "Varies", text: sweep.varied.join(", ") || "seeds only" }),
    el("td", { "data-label": "Status" }, el("span", { class: "status", "data-status": sweep.status, text: sweep.status })),
    el("td", { "data-label": "Progress", class: "progress", text: sweepProgressText(sweep.progress) }),
    actions,
  );
}

async function loadSweeps() {
  let page;
  try {
    page = await apiJSON("/sweeps?limit=20");
  } catch (err) {
    $("#sweeps-empty").hidden = false;
    $("#sweeps-empty").textContent = `Could not load the sweeps: ${err.message || err}`;
    return;
  }
  $("#sweep-rows").replaceChildren(...page.data.map(sweepRow));
  $("#sweeps-empty").hidden = page.data.length > 0;
  $("#sweeps-empty").textContent = "No sweeps yet.";
  clearTimeout(sweepState.timer);
  if (page.data.some((s) => s.status === "running")) {
    sweepState.timer = setTimeout(() => { loadSweeps(); if (sweepState.id) showSweepResults(sweepState.id); }, 3000);
  }
}

async function sweepAction(id, action) {
  if (action === "delete" && !confirm(`Delete sweep ${shortId(id)} with all its simulations?`)) return;
  const response = action === "delete" ? await api(`/sweeps/${id}`, { method: "DELETE" })
    : await api(`/sweeps/${id}/cancel`, { method: "POST" });
  if (!response.ok) alert(await errorText(response));
  if (action === "delete" && id === sweepState.id) { sweepState.id = null; $("#sweep-results-box").hidden = true; }
  loadSweeps();
  refreshHistory();
}

async function downloadSweepCSV(id) {
  const response = await api(`/sweeps/${id}/results?format=csv`);
  if (!response.ok) return alert(await errorText(response));
  download(`scarcity-sweep-${shortId(id)}-results.csv`, await response.text(), "text/csv");
}

async function showSweepResults(id) {
  try {
    sweepState.results = await apiJSON(`/sweeps/${id}/results`);
  } catch (err) {
    alert(`Could not load the results: ${err.message || err}`);
    return;
  }
  if (sweepState.id !== id) sweepState.sort = { key: null, desc: false };
  sweepState.id = id;
  for (const row of document.querySelectorAll("#sweep-rows tr")) row.classList.toggle("current", row.dataset.id === id);
  drawSweepResults();
}

function sweepColumns(body) {
  const metrics = [...new Set(body.rows.flatMap((r) => Object.keys(r.metrics)))];
  const ordered = [...COMMON_METRICS.filter((m) => metrics.includes(m)), ...metrics.filter((m) => !COMMON_METRICS.includes(m)).sort()];
  return [
    ...body.varied.map((f) => ({ key: `param:${f}`, label: f, value: (r) => r.params[f], text: (r) => shown(r.params[f]) })),
    { key: "runs", label: "runs", value: (r) => r.runs, text: (r) => String(r.runs) },
    { key: "succeeded", label: "succeeded", value: (r) => r.succeeded, text: (r) => String(r.succeeded) },
    ...ordered.map((m) => ({
      key: `metric:${m}`, label: m, numeric: true,
      value: (r) => (r.metrics[m] ? r.metrics[m].mean : null),
      text: (r) => (r.metrics[m] ? `${fmt(r.metrics[m].mean)} ± ${r.metrics[m].std === null ? "–" : fmt(r.metrics[m].std)}` : "–"),
    })),
  ];
}

function compareValues(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return 1;  // missing last, either way
  if (b === null || b === undefined) return -1;
  return typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b));
}

function drawSweepResults() {
  const body = sweepState.results;
  const columns = sweepColumns(body);
  const { key, desc } = sweepState.sort;
  const column = columns.find((c) => c.key === key);
  const rows = [...body.rows];
  if (column) {
    rows.sort((a, b) => {
      const va = column.value(a), vb = column.value(b);
      if (va === null || va === undefined || vb === null || vb === undefined) return compareValues(va, vb);
      return desc ? compareValues(vb, va) : compareValues(va, vb);
    });
  }
  const head = el("tr", {}, ...columns.map((c) => el("th", {
    scope: "col", "data-key": c.key, "aria-sort": c.key === key ? (desc ? "descending" : "ascending") : "none",
  }, el("button", {
    type: "button", text: c.label + (c.key === key ? (desc ? " ▼" : " ▲") : ""),
    onclick: () => {
      sweepState.sort = { key: c.key, desc: sweepState.sort.key === c.key ? !sweepState.sort.desc : false };
      drawSweepResults();
    },
  }))));
  $("#sweep-results thead").replaceChildren(head);
  $("#sweep-results tbody").replaceChildren(...rows.map((r) => el("tr", {},
    ...columns.map((c) => el("td", { class: c.numeric ? "num" : "", "data-label": c.label, text: c.text(r) })))));
  const sweep = document.querySelector(`#sweep-rows tr[data-id="${CSS.escape(body.sweep_id)}"] .run-name`);
  $("#sweep-results-title").textContent = `Results of ${sweep ? sweep.textContent : shortId(body.sweep_id)}`;
  $("#sweep-results-box").hidden = false;
}

// ---------------------------------------------------------------------------------------------
function init() {
  $("#run-form").addEventListener("submit", submit);
  $("#f-preset").addEventListener("change", applyPreset);
  $("#reset-button").addEventListener("click", applyPreset);
  $("#filter-status").addEventListener("change", refreshHistory);
  $("#filter-preset").addEventListener("change", refreshHistory);
  $("#history-refresh").addEventListener("click", refreshHistory);
  $("#history-more").addEventListener("click", () => loadHistory({ append: true }));
  $("#compare-button").addEventListener("click", compare);
  $("#compare-clear").addEventListener("click", () => {
    historyState.selected.clear();
    for (const c of document.querySelectorAll("#history-rows input[type=checkbox]")) c.checked = false;
    updateCompareControls();
  });
  $("#compare-metric").addEventListener("change", () => {
    if (compareBody) drawCompare(compareBody, $("#compare-metric").value);
  });
  $("#compare-metric").replaceChildren(...COMMON_METRICS.map((m) => new Option(m, m)));
  $("#heatmap-insight").addEventListener("change", drawHeatmap);
  $("#gossip-round").addEventListener("change", drawGossipGraph);
  window.addEventListener("resize", () => {
    for (const chart of [heatmapState.chart, gossipState.chart]) if (chart) chart.resize();
  });
  $("#watch-cancel").addEventListener("click", () => watchState.id && cancelSimulation(watchState.id));
  $("#watch-csv").addEventListener("click", () => watchState.id && downloadCSV(watchState.id));
  $("#watch-json").addEventListener("click", () => watchState.id && downloadJSON(watchState.id));
  $("#key-button").hidden = !apiKey();
  $("#key-button").addEventListener("click", async () => {
    if (await askForKey("")) { initForm(); refreshHistory(); loadSweeps(); }
  });
  $("#sweeps-refresh").addEventListener("click", loadSweeps);
  initForm();
  refreshHistory();
  loadSweeps();
  const fromHash = location.hash.match(/^#sim=([0-9a-f-]{36})$/i);
  if (fromHash) watch(fromHash[1]);
}

init();
