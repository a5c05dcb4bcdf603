// Sweeps: the list with progress by status, one sweep's results table, sortable by column, and
// its configurations as parallel coordinates (the varied fields → a chosen final metric).
import { api, apiJSON, errorText } from "./api.js";
import { simulationsChanged } from "./notices.js";
import { $, COMMON_METRICS, download, el, fmt, shortId, shown } from "./util.js";

const sweepState = { results: null, id: null, sort: { key: null, desc: false }, timer: null };
const parallelState = { chart: null, metric: null };

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

export async function loadSweeps() {
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
  simulationsChanged();
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
  drawParallel(body, columns);
}

// One line per configuration through an axis per varied field and one for the metric's mean
// (Apache ECharts' parallel series); numbers on value axes, anything else on category axes.
function drawParallel(body, columns) {
  const box = $("#sweep-parallel-box");
  const metrics = columns.filter((c) => c.numeric).map((c) => c.label);
  if (!metrics.length || !body.varied.length) { box.hidden = true; return; }
  box.hidden = false;
  if (!metrics.includes(parallelState.metric)) parallelState.metric = metrics[0];
  const metric = parallelState.metric;
  $("#sweep-metric").replaceChildren(...metrics.map((m) => new Option(m, m, false, m === metric)));
  const numeric = body.varied.map((f) => body.rows.every((r) => typeof r.params[f] === "number"));
  const axes = body.varied.map((f, dim) => (numeric[dim]
    ? { dim, name: f }
    : { dim, name: f, type: "category", data: [...new Set(body.rows.map((r) => shown(r.params[f])))] }));
  axes.push({ dim: axes.length, name: metric });
  const rows = body.rows.filter((r) => r.metrics[metric] && typeof r.metrics[metric].mean === "number");
  const lines = rows.map((r) => [
    ...body.varied.map((f, dim) => (numeric[dim] ? r.params[f] : shown(r.params[f]))),
    r.metrics[metric].mean,
  ]);
  const means = lines.map((line) => line[line.length - 1]);
  if (!parallelState.chart) parallelState.chart = echarts.init($("#sweep-parallel"), null, { renderer: "canvas" });
  parallelState.chart.setOption({
    parallel: { left: 60, right: 90, top: 40, bottom: 30 },
    parallelAxis: axes,
    visualMap: {
      type: "continuous", dimension: axes.length - 1, orient: "vertical", right: 0, top: "middle",
      min: Math.min(...means), max: Math.max(...means) > Math.min(...means) ? Math.max(...means) : Math.min(...means) + 1,
      // the handles and ends read the metric's values ("0.1", "1.0"), not integers
      calculable: true, text: [metric, ""], formatter: (v) => fmt(v),
    },
    series: [{ type: "parallel", data: lines, lineStyle: { width: 2, opacity: 0.8 } }],
  }, true);
  box.dataset.lines = String(lines.length);
  box.dataset.metric = metric;
}

export function initSweeps() {
  $("#sweeps-refresh").addEventListener("click", loadSweeps);
  $("#sweep-metric").addEventListener("change", (event) => {
    parallelState.metric = event.target.value;
    if (sweepState.results) drawParallel(sweepState.results, sweepColumns(sweepState.results));
  });
}
