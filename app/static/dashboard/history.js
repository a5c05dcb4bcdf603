// History: newest first, filters (status, preset and the filter language of GET /simulations?filter=),
// pagination, final metrics, actions, compare selection, names, tags and notes edited in place
// (PATCH /simulations/{id}).
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
    el("button", { type: "button", class: "edit", text: "Edit", title: "Edit the name, tags and notes", onclick: (e) => editRun(e.target.closest("tr"), sim) }),
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
      ...Object.entries(sim.tags || {}).map(([k, v]) => el("span", { class: "tag", text: `${k}=${v}` })),
      sim.notes ? el("span", { class: "run-notes", text: sim.notes }) : null),
    el("td", { "data-label": "Preset", text: sim.preset }),
    el("td", { "data-label": "Differs", class: "differs", text: "" }),
    el("td", { "data-label": "Status" }, el("span", { class: "status", "data-status": sim.status, text: sim.status })),
    el("td", { "data-label": "Rounds", text: `${sim.progress.rounds_completed}/${sim.progress.rounds_total}` }),
    metricsCell,
    actions,
  );
}

// "key=value, key2=value2" ⇄ tags, as the form types them.
const tagsText = (tags) => Object.entries(tags || {}).map(([k, v]) => `${k}=${v}`).join(", ");

function parseTags(text) {
  const tags = {};
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const at = part.indexOf("=");
    if (at <= 0) throw new Error(`"${part}" is not key=value`);
    tags[part.slice(0, at).trim()] = part.slice(at + 1).trim();
  }
  return tags;
}

// The row's editor, in a row of its own below it: Save sends only what changed (tags merge key
// by key, so a removed tag is sent as null) and the row is redrawn from the API's answer.
function editRun(row, sim) {
  const open = row.nextElementSibling;
  if (open && open.classList.contains("edit-row")) { open.remove(); return; }
  const name = el("input", { type: "text", name: "name", value: sim.name || "", maxlength: "200" });
  const tags = el("input", { type: "text", name: "tags", value: tagsText(sim.tags), placeholder: "study=lr, team=fl" });
  const notes = el("textarea", { name: "notes", rows: "2" });
  notes.value = sim.notes || "";
  const error = el("p", { class: "error", role: "alert" });
  const close = () => editor.remove();
  const save = async (event) => {
    event.preventDefault();
    error.textContent = "";
    const body = {};
    try {
      const wanted = parseTags(tags.value);
      const changes = Object.fromEntries([
        ...Object.keys(sim.tags || {}).filter((k) => !(k in wanted)).map((k) => [k, null]),
        ...Object.entries(wanted).filter(([k, v]) => (sim.tags || {})[k] !== v),
      ]);
      if (Object.keys(changes).length) body.tags = changes;
    } catch (err) { error.textContent = `tags: ${err.message}`; return; }
    if (name.value.trim() !== (sim.name || "")) body.name = name.value.trim() || null;
    if (notes.value.trim() !== (sim.notes || "")) body.notes = notes.value.trim() || null;
    if (!Object.keys(body).length) { close(); return; }
    const response = await api(`/simulations/${sim.id}`, { method: "PATCH", body: JSON.stringify(body) });
    if (!response.ok) { error.textContent = await errorText(response); return; }
    const updated = await response.json();
    historyState.rows = historyState.rows.map((s) => (s.id === updated.id ? updated : s));
    close();
    row.replaceWith(historyRow(updated));
    showDiffers();
  };
  const editor = el("tr", { class: "edit-row", "data-edit": sim.id },
    el("td", { colspan: "9" }, el("form", { class: "run-edit", onsubmit: save },
      el("label", {}, "Name", name), el("label", {}, "Tags", tags), el("label", {}, "Notes", notes),
      el("div", { class: "form-actions" },
        el("button", { type: "submit", class: "primary", text: "Save" }),
        el("button", { type: "button", text: "Cancel", onclick: close })),
      error)));
  row.after(editor);
  tags.focus();
}

export async function loadHistory({ append = false } = {}) {
  const params = new URLSearchParams({ limit: "20" });
  if ($("#filter-status").value) params.set("status", $("#filter-status").value);
  if ($("#filter-preset").value) params.set("preset", $("#filter-preset").value);
  const query = $("#filter-query").value.trim();
  if (query) params.set("filter", query);
  if (append && historyState.cursor) params.set("cursor", historyState.cursor);
  let page;
  const response = await api(`/simulations?${params}`).catch((err) => err);
  if (response instanceof Response && response.status === 422) {
    // the filter did not parse: the server says where, next to the box; the list stays as it was
    $("#filter-error").textContent = await errorText(response);
    $("#filter-form").classList.add("invalid");
    return;
  }
  $("#filter-error").textContent = "";
  $("#filter-form").classList.remove("invalid");
  try {
    if (!(response instanceof Response)) throw response;
    if (!response.ok) throw new Error(await errorText(response));
    page = await response.json();
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
  $("#history-empty").textContent = query ? "No simulations match the filter." : "No simulations yet.";
  $("#history-more").hidden = !historyState.cursor;
  clearTimeout(historyState.timer);
  if (historyState.rows.some((s) => !FINISHED.has(s.status))) historyState.timer = setTimeout(pollHistory, 3000);
}

// The list of active runs refreshes itself, but not under an open editor (it would lose the text).
function pollHistory() {
  if (document.querySelector("#history-rows tr.edit-row")) historyState.timer = setTimeout(pollHistory, 3000);
  else refreshHistory();
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
  $("#filter-form").addEventListener("submit", (event) => { event.preventDefault(); refreshHistory(); });
  $("#history-more").addEventListener("click", () => loadHistory({ append: true }));
}
