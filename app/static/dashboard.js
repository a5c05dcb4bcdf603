// Minimal dashboard on the public API only: submit, watch (server-sent events), history.
const api = (path, options = {}) =>
  fetch(path, { ...options, headers: { "Content-Type": "application/json", ...(options.headers || {}) } });

async function loadPresets() {
  const presets = await (await api("/presets")).json();
  const select = document.getElementById("preset");
  for (const p of presets) select.add(new Option(`${p.name} — ${p.description}`, p.name));
  select.value = "stage8";
  const describe = () => {
    const p = presets.find((x) => x.name === select.value);
    document.getElementById("preset-description").textContent = p ? p.description : "";
  };
  select.addEventListener("change", describe);
  describe();
}

async function loadHistory() {
  const page = await (await api("/simulations?limit=20")).json();
  const body = document.getElementById("history-rows");
  body.replaceChildren(...page.data.map((s) => {
    const tr = document.createElement("tr");
    for (const v of [new Date(s.created_at).toLocaleString(), s.preset, s.status,
                     `${s.progress.rounds_completed}/${s.progress.rounds_total}`]) {
      const td = document.createElement("td"); td.textContent = v; tr.append(td);
    }
    tr.addEventListener("click", () => watch(s.id));
    return tr;
  }));
}

function watch(id) {
  document.getElementById("watch").hidden = false;
  document.getElementById("sim-id").textContent = id;
  const log = document.getElementById("sim-log");
  log.textContent = "";
  const show = (s) => {
    document.getElementById("sim-status").textContent = s.status;
    const bar = document.getElementById("sim-progress");
    bar.max = s.progress.rounds_total; bar.value = s.progress.rounds_completed;
    document.getElementById("sim-progress-text").textContent =
      `round ${s.progress.rounds_completed} of ${s.progress.rounds_total}`;
  };
  api(`/simulations/${id}`).then((r) => r.json()).then(show);
  const events = new EventSource(`/simulations/${id}/events`);
  events.addEventListener("round", (e) => {
    const r = JSON.parse(e.data);
    const metrics = Object.entries(r.metrics).map(([k, v]) => `${k}=${Number(v).toFixed(4)}`).join(" ");
    log.textContent += `Round ${r.round}/${r.rounds_total} ${metrics}\n`;
    document.getElementById("sim-status").textContent = "running";
    const bar = document.getElementById("sim-progress"); bar.max = r.rounds_total; bar.value = r.round;
    document.getElementById("sim-progress-text").textContent = `round ${r.round} of ${r.rounds_total}`;
  });
  events.addEventListener("end", (e) => { show(JSON.parse(e.data)); events.close(); loadHistory(); });
}

document.getElementById("run-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = {};
  for (const [k, v] of new FormData(event.target)) body[k] = k === "preset" ? v : Number(v);
  const response = await api("/simulations", { method: "POST", body: JSON.stringify(body) });
  const data = await response.json();
  const error = document.getElementById("form-error");
  if (!response.ok) {
    error.textContent = Array.isArray(data.detail)
      ? data.detail.map((d) => `${d.field}: ${d.message}`).join("; ") : String(data.detail);
    return;
  }
  error.textContent = "";
  watch(data.id);
  loadHistory();
});

loadPresets();
loadHistory();
