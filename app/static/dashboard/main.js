// The dashboard's entry point (a module script: index.html loads uPlot and ECharts first as
// classic scripts). Each view is its own module; this one wires them to the page and starts.
import { apiKey, askForKey } from "./api.js";
import { initClients } from "./clients.js";
import { initCompare } from "./compare.js";
import { bindForm, initForm } from "./form.js";
import { initHistory, refreshHistory } from "./history.js";
import { initRun, watch } from "./run.js";
import { initSweeps, loadSweeps } from "./sweeps.js";
import { $ } from "./util.js";

// Scripts driving the page (a browser test, the console) open a run with watch(id), as before
// the split into modules, whose names are not global.
window.watch = watch;

bindForm();
initHistory();
initCompare();
initClients();
initRun();
initSweeps();
$("#key-button").hidden = !apiKey();
$("#key-button").addEventListener("click", async () => {
  if (await askForKey("")) { initForm(); refreshHistory(); loadSweeps(); }
});
initForm();
refreshHistory();
loadSweeps();
const fromHash = location.hash.match(/^#sim=([0-9a-f-]{36})$/i);
if (fromHash) watch(fromHash[1]);
