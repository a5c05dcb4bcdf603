// History: newest first, filters, pagination, final metrics, actions, compare selection.
import { api, apiJSON, errorText } from "./api.js";
import { COMPARE_MAX, selected, updateCompareControls } from "./compare.js";
import { cloneIntoForm } from "./form.js";
import { onSimulationsChanged } from "./notices.js";
import { cancelSimulation, closeWatch, downloadCSV, downloadJSON, watch, watchedId } from "./run.js";
import { $, el, FINISHED, fmt, shortId, shown } from "./util.js";

const historyState = { cursor: null, finalMetrics: new Map(), timer: null, rows: [] };

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
  const order = ["loss", "test_loss", "test_accuracy", "ensemble_accuracy", "probe_accuracy", "recon_loss", "replay_error"];
  return order.filter((k) => k in m).map((k) => `${k}=${fmt(m[k])}`).join(" ");
}

function historyRow(sim) {
  const active = !FINISHED.has(sim.status);
  const check = el("input", {
    type: "checkbox", "aria-label": `compare ${shortId(sim.id)}`, checked: selected.has(sim.id),
    onchange: (e) => {
      if (e.target.checked) {
        if (selected.size >= COMPARE_MAX) { e.target.checked = false; alert(`Compare at most ${COMPARE_MAX} simulations.`); return; }
        selected.add(sim.id);
      } else selected.delete(sim.id);
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
  return el("tr", { "data-id": sim.id, class: sim.id === watchedId() ? "current" : "" },
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

export async function loadHistory({ append = false } = {}) {
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

export function refreshHistory() { return loadHistory({ append: false }); }

// The config fields whose values are not the same in every listed run: what tells rows apart.
const DIFFERS_SHOWN = 3;

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

async function deleteSimulation(id) {
  if (!confirm(`Delete simulation ${shortId(id)} and all its results?`)) return;
  const response = await api(`/simulations/${id}`, { method: "DELETE" });
  if (!response.ok && response.status !== 204) { alert(await errorText(response)); return; }
  selected.delete(id);
  updateCompareControls();
  if (id === watchedId()) closeWatch();
  refreshHistory();
}

export function initHistory() {
  onSimulationsChanged(refreshHistory);
  $("#filter-status").addEventListener("change", refreshHistory);
  $("#filter-preset").addEventListener("change", refreshHistory);
  $("#history-refresh").addEventListener("click", refreshHistory);
  $("#history-more").addEventListener("click", () => loadHistory({ append: true }));
}
