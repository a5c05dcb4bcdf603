// The views of per-client data: what each client holds (uPlot bars), the clients × rounds
// heatmap of an insight and the gossip graph of a round (Apache ECharts, the global echarts).
import { apiJSON } from "./api.js";
import { $, CLASS_PALETTE, el, fmt } from "./util.js";

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
// Above MAX_HEATMAP_CELLS the clients are binned (consecutive ids, each cell the bin's mean, the
// most common expert) so the cells fit, and above MAX_HEATMAP_ROWS fetched only the latest
// rounds are shown; a notice under the caption says which.
const HEATMAP_INSIGHTS = ["loss", "uncertainty", "mean_grad", "loss_improvement", "selected_expert", "personal_accuracy", "personal_loss"];
export const MAX_HEATMAP_CELLS = 20000;
const MAX_HEATMAP_ROWS = 200000;
const PAGE = 10000;
const heatmapState = { insights: [], chart: null, bin: 1, clients: 0, rounds: [] };

async function fetchInsights(id, rounds) {
  const rows = [];
  const pages = async (query) => {
    for (let offset = 0; ; offset += PAGE) {
      const page = (await apiJSON(`/simulations/${id}/insights?${query}limit=${PAGE}&offset=${offset}`)).insights;
      rows.push(...page);
      if (page.length < PAGE) break;
    }
  };
  if (!rounds) await pages("");
  else for (const r of rounds) await pages(`round=${r}&`);
  return rows;
}

const count = (n) => n.toLocaleString("en-US");

// isCurrent() is false once the page has moved on to another run: its answer is dropped.
export async function loadHeatmap(id, isCurrent) {
  const box = $("#heatmap-box");
  const sim = await apiJSON(`/simulations/${id}`);
  const clients = sim.config.num_clients;
  const done = sim.progress.rounds_completed;
  if (!clients || !done) { box.hidden = true; return; }
  // the latest rounds that fit MAX_HEATMAP_ROWS, fetched round by round when not all do
  const shownRounds = Math.min(done, Math.max(1, Math.floor(MAX_HEATMAP_ROWS / clients)));
  const rounds = shownRounds < done ? Array.from({ length: shownRounds }, (_, i) => done - shownRounds + 1 + i) : null;
  const rows = await fetchInsights(id, rounds);
  if (!isCurrent()) return;
  heatmapState.insights = rows;
  heatmapState.clients = clients;
  heatmapState.bin = Math.max(1, Math.ceil((clients * shownRounds) / MAX_HEATMAP_CELLS));
  const notes = [];
  if (heatmapState.bin > 1) {
    notes.push(`${count(clients)} clients × ${count(done)} rounds is more than the ${count(MAX_HEATMAP_CELLS)} cells drawn: ` +
      `each row is a bin of ${heatmapState.bin} consecutive clients (their mean; the most common expert).`);
  }
  if (rounds) notes.push(`Only the last ${count(shownRounds)} of ${count(done)} rounds are shown (GET /simulations/{id}/insights?round=… has every one).`);
  const notice = $("#heatmap-notice");
  notice.textContent = notes.join(" ");
  box.dataset.bin = String(heatmapState.bin);
  const available = HEATMAP_INSIGHTS.filter((k) => rows.some((r) => r.insight[k] !== undefined));
  box.hidden = !rows.length || !available.length;
  if (box.hidden) return;
  const select = $("#heatmap-insight");
  const previous = select.value;
  select.replaceChildren(...available.map((k) => new Option(k.replace(/_/g, " "), k)));
  select.value = available.includes(previous) ? previous : available[0];
  drawHeatmap();
}

// [round, client or bin, value] cells; a bin's number is the mean, its category the most common.
function heatmapCells(rows, key, bin, categorical) {
  if (bin === 1) return rows.map((r) => [r.round, r.client_id, r.insight[key]]);
  const groups = new Map();
  for (const r of rows) {
    const at = `${r.round}:${Math.floor(r.client_id / bin)}`;
    if (!groups.has(at)) groups.set(at, { round: r.round, bin: Math.floor(r.client_id / bin), values: [] });
    groups.get(at).values.push(r.insight[key]);
  }
  return [...groups.values()].map((g) => {
    if (!categorical) return [g.round, g.bin * bin, g.values.reduce((a, b) => a + b, 0) / g.values.length];
    const tally = new Map();
    for (const v of g.values) tally.set(v, (tally.get(v) || 0) + 1);
    return [g.round, g.bin * bin, [...tally.entries()].sort((a, b) => b[1] - a[1] || String(a[0]).localeCompare(String(b[0])))[0][0]];
  });
}

function drawHeatmap() {
  const key = $("#heatmap-insight").value;
  const bin = heatmapState.bin;
  const rows = heatmapState.insights.filter((r) => r.insight[key] !== undefined);
  const categorical = rows.some((r) => typeof r.insight[key] === "string");
  const cells = heatmapCells(rows, key, bin, categorical);
  const rounds = [...new Set(cells.map((c) => c[0]))].sort((a, b) => a - b);
  const clients = [...new Set(cells.map((c) => c[1]))].sort((a, b) => a - b);
  const rowName = (c) => (bin === 1 ? String(c) : `${c}–${Math.min(c + bin, heatmapState.clients) - 1}`);
  const categories = categorical ? [...new Set(cells.map((c) => c[2]))].sort() : [];
  const value = (v) => (categorical ? categories.indexOf(v) : v);
  const roundAt = new Map(rounds.map((r, i) => [r, i]));
  const clientAt = new Map(clients.map((c, i) => [c, i]));
  const data = cells.map(([r, c, v]) => [roundAt.get(r), clientAt.get(c), value(v)]);
  let lo = Infinity, hi = -Infinity;
  for (const d of data) { if (d[2] < lo) lo = d[2]; if (d[2] > hi) hi = d[2]; }
  const visualMap = categorical
    ? { type: "piecewise", categories: categories.map((_, i) => i), dimension: 2, orient: "horizontal", left: "center", bottom: 0,
        formatter: (i) => categories[i], inRange: { color: CLASS_PALETTE.slice(0, categories.length) } }
    : { min: lo, max: hi > lo ? hi : lo + 1, calculable: true, orient: "horizontal", left: "center", bottom: 0,
        formatter: (v) => fmt(v), inRange: { color: ["#f7fbff", "#6baed6", "#08306b"] } };
  if (!heatmapState.chart) heatmapState.chart = echarts.init($("#heatmap"), null, { renderer: "canvas" });
  const who = bin === 1 ? "client" : "clients";
  heatmapState.chart.setOption({
    animation: false,
    tooltip: { formatter: (p) => `${who} ${rowName(clients[p.value[1]])}, round ${rounds[p.value[0]]}: ${categorical ? categories[p.value[2]] : fmt(p.value[2])}` },
    grid: { left: 60, right: 10, top: 10, bottom: 60 },
    xAxis: { type: "category", data: rounds, name: "round", nameLocation: "middle", nameGap: 25 },
    yAxis: { type: "category", data: bin === 1 ? clients : clients.map(rowName), name: who, nameLocation: "middle", nameGap: 45 },
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

// rounds: the run's rounds as the event stream sent them (with gossip_pairs).
export function loadGossipGraph(rounds) {
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

let clientsChart = null;

export async function loadClients(id, isCurrent) {
  try {
    const { clients } = await apiJSON(`/simulations/${id}/clients`);
    if (!isCurrent()) return;
    if (!clientsChart) clientsChart = new ClientsChart($("#clients-chart"));
    clientsChart.update(clients);
  } catch { /* the chart stays hidden */ }
}

// Another run is opened: nothing of the previous one stays.
export function resetClients() {
  if (clientsChart) { clientsChart.destroy(); clientsChart = null; }
  $("#heatmap-box").hidden = true;
  $("#heatmap-notice").textContent = "";
  $("#gossip-graph-box").hidden = true;
}

export function initClients() {
  $("#heatmap-insight").addEventListener("change", drawHeatmap);
  $("#gossip-round").addEventListener("change", drawGossipGraph);
  window.addEventListener("resize", () => {
    for (const chart of [heatmapState.chart, gossipState.chart]) if (chart) chart.resize();
  });
}
