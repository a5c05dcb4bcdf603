// Compare: 2–8 simulations through GET /compare, one metric, one chart; the legend names each run
// by what sets it apart (its name, then the config fields that differ), aligned by round.
import { apiJSON } from "./api.js";
import { ChartBox } from "./charts.js";
import { $, COMMON_METRICS } from "./util.js";

let compareChart = null;
let compareBody = null;
export const COMPARE_MAX = 8;
// The ids ticked in the history.
export const selected = new Set();

export function updateCompareControls() {
  const n = selected.size;
  $("#compare-button").disabled = n < 2 || n > COMPARE_MAX;
  $("#compare-clear").disabled = n === 0;
  $("#compare-hint").textContent = n < 2 ? `Tick 2–${COMPARE_MAX} simulations above to put their curves on one chart.`
    : `${n} selected.`;
}

async function compare() {
  const ids = [...selected];
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

export function initCompare() {
  $("#compare-button").addEventListener("click", compare);
  $("#compare-clear").addEventListener("click", () => {
    selected.clear();
    for (const c of document.querySelectorAll("#history-rows input[type=checkbox]")) c.checked = false;
    updateCompareControls();
  });
  $("#compare-metric").addEventListener("change", () => {
    if (compareBody) drawCompare(compareBody, $("#compare-metric").value);
  });
  $("#compare-metric").replaceChildren(...COMMON_METRICS.map((m) => new Option(m, m)));
}
