// The run view: one simulation at a time, its status, progress, log, charts by round and
// exports; the per-client views below it come from clients.js.
import { api, apiJSON, apiKey, errorText, eventStream } from "./api.js";
import { ChartBox } from "./charts.js";
import { loadClients, loadGossipGraph, loadHeatmap, resetClients } from "./clients.js";
import { simulationsChanged } from "./notices.js";
import { $, download, el, FINISHED, fmt, shortId } from "./util.js";

export async function downloadCSV(id) {
  const response = await api(`/simulations/${id}/metrics?format=csv`);
  if (!response.ok) return alert(await errorText(response));
  download(`scarcity-${shortId(id)}-metrics.csv`, await response.text(), "text/csv");
}

export async function downloadJSON(id) {
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

// Watch: one simulation at a time; rounds arrive over the events stream (fetch-streamed SSE).
const METRIC_CHARTS = [
  { key: "loss", title: "Loss (mean client training loss, held-out test loss, the clients' ensembles, the label-free probe)", names: ["loss", "test_loss", "ensemble_loss", "probe_loss"] },
  { key: "recon", title: "Reconstruction loss and replay error", names: ["recon_loss", "replay_error"] },
  { key: "drift", title: "Drift", names: ["drift"] },
  { key: "accuracy", title: "Accuracy (shared model on the test set, the clients' ensembles, the label-free probe, personalised)", names: ["test_accuracy", "ensemble_accuracy", "probe_accuracy", "personal_accuracy_mean", "personal_accuracy_worst10"] },
  { key: "scenario", title: "Over time (scenarios: the next block's concept, the tasks seen, forgetting, backward transfer, unseen clients after 0, 1 and 5 local steps)", names: ["next_block_accuracy", "avg_task_accuracy", "forgetting", "backward_transfer", "unseen_accuracy_k0", "unseen_accuracy_k1", "unseen_accuracy_k5"] },
  // Bytes are orders of magnitude above the other metrics: charts of their own.
  { key: "bytes", title: "Communication per round (bytes the clients sent up and received down)", names: ["bytes_up", "bytes_down"] },
  { key: "bytes_total", title: "Communication so far (bytes, the run's totals)", names: ["bytes_up_total", "bytes_down_total"] },
  { key: "privacy", title: "Privacy spent (DP-FedAvg: ε at dp_delta)", names: ["epsilon"] },
];
const CHARTED = new Set(METRIC_CHARTS.flatMap((c) => c.names));

const watchState = { id: null, token: 0, rounds: new Map(), meta: [], total: 0, lastRound: 0, charts: {}, abort: null };

export function setStatus(status) {
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

export function showSimulation(sim) {
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
  showLatestGossip(rounds[rounds.length - 1]);
  renderMeta();
}

// Above LIST_MAX items a list is summarised (a count, a sample) rather than printed whole:
// a 1,000-client round has hundreds of gossip pairs and uncertain clients.
const LIST_MAX = 50;
const SAMPLE = 10;

const pairText = (p) => `client ${p.client_a} ↔ client ${p.client_b}${p.expert ? ` (${p.expert})` : ""}`;

// The last round's gossip pairs: all of them when few; else the count per expert, a sample and a
// link to the round's JSON (GET /simulations/{id}/metrics?from_round=r&to_round=r).
function showLatestGossip(last) {
  const box = $("#gossip-latest");
  const pairs = last && last.gossip_pairs ? last.gossip_pairs : [];
  box.dataset.pairs = String(pairs.length);
  if (pairs.length <= LIST_MAX) {
    if (pairs.length) box.replaceChildren(`Gossip in round ${last.round}: ${pairs.map(pairText).join(", ")}`);
    else box.replaceChildren();
    return;
  }
  const perExpert = new Map();
  for (const p of pairs) perExpert.set(p.expert || "pairs", (perExpert.get(p.expert || "pairs") || 0) + 1);
  const counts = [...perExpert.entries()].sort((a, b) => String(a[0]).localeCompare(String(b[0])))
    .map(([e, n]) => `${e}: ${n}`).join(", ");
  const url = `/simulations/${watchState.id}/metrics?from_round=${last.round}&to_round=${last.round}`;
  const link = el("a", { href: url, class: "all-pairs", target: "_blank", rel: "noopener", text: `all ${pairs.length} pairs (JSON)`,
    onclick: (event) => {
      if (!apiKey()) return;  // open API: the browser follows the link
      event.preventDefault();  // a key rides only on api(): fetch it and save the file
      apiJSON(url).then((body) => download(`scarcity-${shortId(watchState.id)}-round-${last.round}.json`,
        JSON.stringify(body, null, 2), "application/json")).catch((err) => alert(String(err.message || err)));
    } });
  box.replaceChildren(
    `Gossip in round ${last.round}: ${pairs.length} pairs (${counts}); the first ${SAMPLE}: `,
    pairs.slice(0, SAMPLE).map(pairText).join(", "), " … ", link);
}

// "3, 7, 12" or, above LIST_MAX ids, "412 clients (3, 7, 12, … )".
function clientList(ids) {
  if (!ids.length) return "none";
  if (ids.length <= LIST_MAX) return ids.join(", ");
  return `${ids.length} clients (${ids.slice(0, SAMPLE).join(", ")}, …)`;
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
  // The meta-learner's split of the last round's clients around their mean uncertainty.
  const last = rows[rows.length - 1];
  const high = last && last.high_uncertainty_clients;
  $("#uncertainty-latest").textContent = Array.isArray(high)
    ? `Meta-learner, round ${last.round}: high-uncertainty clients ${clientList(high)}; ` +
      `low-uncertainty clients ${clientList(last.low_uncertainty_clients || [])}`
    : "";
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

// The stream replays every stored round, then follows live ones; true once the end event came.
async function streamEvents(id, token, signal) {
  for await (const { event, data } of eventStream(`/simulations/${id}/events`, signal)) {
    if (token !== watchState.token) continue;
    if (event === "round") addRound(data, token);
    else if (event === "end") { finishWatch(data, token); return true; }
  }
  return false;
}

async function finishWatch(sim, token) {
  if (token !== watchState.token) return;
  showSimulation(sim);
  setProgress(sim.progress.rounds_completed, sim.progress.rounds_total);
  await refreshMeta(token);
  loadServerLog(token);
  loadHeatmap(watchState.id, () => token === watchState.token).catch(() => { $("#heatmap-box").hidden = true; });
  loadGossipGraph([...watchState.rounds.values()].sort((a, b) => a.round - b.round));
  simulationsChanged();
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

export async function watch(id) {
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
  resetClients();
  loadClients(id, () => token === watchState.token);
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

// The run shown, or null.
export function watchedId() { return watchState.id; }

export async function cancelSimulation(id) {
  const response = await api(`/simulations/${id}/cancel`, { method: "POST" });
  if (!response.ok) alert(await errorText(response));
  simulationsChanged();
  if (id === watchedId() && response.ok) {
    try { showSimulation(await apiJSON(`/simulations/${id}`)); } catch { /* the stream will tell */ }
  }
}

// The watched run was deleted: back to the empty view.
export function closeWatch() {
  if (watchState.abort) watchState.abort.abort();
  watchState.token++; watchState.id = null;
  resetCharts();
  $("#watch-body").hidden = true; $("#watch-empty").hidden = false;
  for (const b of ["#watch-csv", "#watch-json", "#watch-cancel"]) $(b).hidden = true;
  $("#sim-id").textContent = "—"; setStatus("idle");
  window.history.replaceState(null, "", window.location.pathname);
}

export function initRun() {
  $("#watch-cancel").addEventListener("click", () => watchState.id && cancelSimulation(watchState.id));
  $("#watch-csv").addEventListener("click", () => watchState.id && downloadCSV(watchState.id));
  $("#watch-json").addEventListener("click", () => watchState.id && downloadJSON(watchState.id));
}
