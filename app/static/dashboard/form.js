// Submit form: one control per SimulationCreate property, defaults from the chosen preset.
import { api, apiJSON, errorText } from "./api.js";
import { simulationsChanged } from "./notices.js";
import { watch } from "./run.js";
import { $, el, shortId } from "./util.js";

const LABELS = {
  num_clients: "Clients", rounds: "Rounds", seed: "Seed", input_dim: "Input dim", output_dim: "Output dim",
  samples_per_client: "Samples per client", local_epochs: "Local epochs", learning_rate: "Learning rate",
  batch_size: "Batch size", router_strategy: "Router strategy", dataset: "Data set", partition: "Partition",
  dirichlet_alpha: "Dirichlet α", quantity_skew: "Quantity skew σ", drift: "Drift",
  test_fraction: "Test fraction", min_partition_size: "Min rows per client",
  num_classes_per_partition: "Classes per client", num_shards_per_partition: "Shards per client",
  feature_noise: "Feature noise σ", client_test_fraction: "Client test fraction",
  model: "Model", hidden_sizes: "Hidden sizes", cnn_channels: "CNN filters",
  scenario: "Scenario", drift_blocks: "Time blocks", drift_kind: "Concept change", drift_mode: "Drift mode",
  num_tasks: "Tasks", task_kind: "Task kind",
  availability_rate: "Online share", availability_mode: "Availability", availability_period: "On/off period (rounds)",
  labelled_fraction: "Labelled fraction", unseen_fraction: "Unseen clients", adapt_steps: "Adaptation steps",
  finetune_epochs: "Fine-tuning epochs", ditto_lambda: "Ditto λ", num_clusters: "Clusters (IFCA)",
  name: "Name", tags: "Tags", notes: "Notes",
  drift_detector: "Drift detector (loss stream)", gossip_peers: "Gossip peers",
};
const GROUPS = [
  ["Run", ["name", "tags", "notes", "num_clients", "rounds", "seed"]],
  ["Model and training", ["model", "hidden_sizes", "cnn_channels", "input_dim", "output_dim", "learning_rate", "local_epochs", "batch_size", "router_strategy"]],
  ["Data", ["dataset", "partition", "dirichlet_alpha", "min_partition_size", "self_balancing", "num_classes_per_partition", "class_assignment_mode", "num_shards_per_partition", "samples_per_client", "quantity_skew", "resample_to_size", "feature_scaling", "feature_noise", "drift", "test_fraction", "client_test_fraction"]],
  ["Strategy (shared model)", ["strategy", "reptile_step_size", "server_learning_rate", "server_momentum", "beta_1", "beta_2", "tau", "proximal_mu", "trim_beta", "num_malicious_clients", "num_clients_to_keep", "q_param", "qffl_learning_rate", "dp_clipping_norm", "dp_noise_multiplier", "dp_clipping", "dp_delta", "finetune_epochs", "ditto_lambda", "num_clusters"]],
  ["Scenario over time", ["scenario", "drift_blocks", "drift_kind", "drift_mode", "num_tasks", "task_kind", "availability_rate", "availability_mode", "availability_period", "labelled_fraction", "unseen_fraction", "adapt_steps"]],
  ["Experts: drift detection and gossip", ["drift_detector", "gossip_peers"]],
  ["Memory and meta-initialisation", ["replay_size", "meta_init", "meta_step_size"]],
  ["Participation and attackers", ["clients_per_round", "fraction_fit", "min_fit_clients", "malicious_fraction", "attack", "attack_scale"]],
];
const form = { presets: [], strategies: [], scenarios: [], partitions: [], models: [], fields: new Map() };

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

// Only the chosen strategy's (model's) parameters are shown: GET /strategies (/models) says
// which fields each reads.
function showChosenParameters(field, catalogue) {
  const select = form.fields.get(field);
  if (!select) return;
  const all = new Set(catalogue.flatMap((s) => Object.keys(s.parameters)));
  const chosen = catalogue.find((s) => s.name === select.input.value);
  const wanted = new Set(chosen ? Object.keys(chosen.parameters) : []);
  for (const name of all) {
    const f = form.fields.get(name);
    if (f) f.wrap.hidden = !wanted.has(name);
  }
}

function showStrategyParameters() {
  showChosenParameters("strategy", form.strategies);
  showChosenParameters("model", form.models);
  showChosenParameters("scenario", form.scenarios);
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
  } else if (s.type === "array") {  // hidden_sizes: integers typed as "64, 32"
    kind = "integers";
    input = el("input", { type: "text", id, name, placeholder: "64, 32", inputmode: "numeric" });
  } else if (s.enum || s.examples) {  // examples: an open set, filled in from its catalogue
    kind = "enum";
    input = el("select", { id, name }, ...(s.enum || s.examples).map((v) => new Option(v, v)));
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
  if (f.kind === "integers") {
    const parts = f.input.value.split(",").map((p) => p.trim()).filter(Boolean);
    if (!parts.length) return null;
    const numbers = parts.map(Number);
    if (!numbers.every(Number.isInteger)) return { bad: "whole numbers separated by commas" };
    return numbers;
  }
  if (f.kind === "integer" || f.kind === "number") {
    if (f.input.validity && f.input.validity.badInput) return { bad: "not a number" };
    return f.input.value.trim() === "" ? null : Number(f.input.value);
  }
  return f.input.value;
}

// Arrays (hidden_sizes) compare by value.
const same = (a, b) => a === b || (Array.isArray(a) && JSON.stringify(a) === JSON.stringify(b));

function markChanged(name) {
  const f = form.fields.get(name);
  const def = presetConfig()[name];
  const v = fieldValue(name);
  f.wrap.classList.toggle("changed", def !== undefined && v !== null && !same(v, def));
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
export function cloneIntoForm(sim) {
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

// false when the field is not on the form or hidden (another strategy's, model's, …): the
// summary by the Run button then carries the message.
function showFieldError(name, message) {
  const wrap = document.querySelector(`#run-form [data-field="${CSS.escape(name)}"]`);
  if (!wrap || wrap.hidden) return false;
  wrap.classList.add("invalid");
  const box = $(".field-error", wrap);
  box.textContent = box.textContent ? `${box.textContent}; ${message}` : message;
  const details = wrap.closest("details");
  if (details) details.open = true;
  return true;
}

// The 422's summary, next to the Run button: each field marked in red as a link to it (the form
// is long; the field may be far above), then what belongs to no field shown.
function showSummary(marked, general) {
  const box = $("#form-error");
  const links = marked.map((name) => {
    const wrap = document.querySelector(`#run-form [data-field="${CSS.escape(name)}"]`);
    const label = $("label", wrap);
    return el("button", { type: "button", class: "link", "data-field": name, text: label ? label.textContent : name,
      onclick: () => { wrap.scrollIntoView({ block: "center" }); const input = $("input, select", wrap); if (input) input.focus(); } });
  });
  const parts = [];
  if (links.length) {
    parts.push(`Not run: fix ${links.length === 1 ? "this field" : `these ${links.length} fields`} (in red): `);
    links.forEach((a, i) => parts.push(...(i ? [", ", a] : [a])));
    if (general.length) parts.push(". ");
  } else if (general.length) {
    parts.push("Not run: ");
  }
  if (general.length) parts.push(general.join("; "));
  box.replaceChildren(...parts);
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
    if (v === null || v === "" || same(v, defaults[name])) continue;
    body[name] = v;
  }
  if (bad) { $("#form-error").textContent = "Fix the fields marked in red."; return; }
  const button = $("#run-button");
  button.disabled = true;
  try {
    const response = await api("/simulations", { method: "POST", body: JSON.stringify(body) });
    if (response.status === 202 || response.ok) {
      const sim = await response.json();
      simulationsChanged();
      watch(sim.id);
      if (window.matchMedia("(max-width: 900px)").matches) $("#watch").scrollIntoView({ behavior: "smooth" });
      return;
    }
    let data = null;
    try { data = await response.clone().json(); } catch { /* not JSON */ }
    if (response.status === 422 && data && Array.isArray(data.detail)) {
      const general = [];
      const marked = [];
      for (const d of data.detail) {
        const name = String(d.field || "").split(".")[0];
        if (name && showFieldError(name, d.message)) { if (!marked.includes(name)) marked.push(name); }
        else general.push((d.field ? `${d.field}: ` : "") + d.message);
      }
      showSummary(marked, general);
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

// The data set choices: synthetic, the built-in ones and the caller's uploads (GET /datasets).
function listDatasets(datasets) {
  const f = form.fields.get("dataset");
  if (!f) return;
  const label = (d) => (d.kind === "upload" ? `${d.filename || d.summary} (${d.id})` : d.id);
  f.input.replaceChildren(
    new Option("synthetic", "synthetic"),
    ...datasets.map((d) => new Option(label(d), d.id)),
  );
}

// Loads the presets and the schema and builds the form (again once an API key is given).
export async function initForm() {
  try {
    const [presets, openapi, strategies, partitions, models, datasets, scenarios] = await Promise.all([
      apiJSON("/presets"), apiJSON("/openapi.json"), apiJSON("/strategies"), apiJSON("/partitions"),
      apiJSON("/models"), apiJSON("/datasets"), apiJSON("/scenarios"),
    ]);
    form.scenarios = scenarios;
    form.presets = presets;
    form.models = models;
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
    listDatasets(datasets);
    applyPreset();
    for (const name of ["strategy", "model", "scenario"]) {
      const f = form.fields.get(name);
      if (f) f.input.addEventListener("change", showStrategyParameters);
    }
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

export function bindForm() {
  $("#run-form").addEventListener("submit", submit);
  $("#f-preset").addEventListener("change", applyPreset);
  $("#reset-button").addEventListener("click", applyPreset);
}
