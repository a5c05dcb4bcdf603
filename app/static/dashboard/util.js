// Shared helpers of the dashboard's views: DOM building, number formatting, colours, downloads.

export const $ = (sel, root = document) => root.querySelector(sel);
export const el = (tag, attrs = {}, ...children) => {
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
export const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
// Tableau 10: one distinct colour per class of the labelled data sets (digits has 10).
export const CLASS_PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
export const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
export const fmt = (v) => {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (typeof v !== "number") return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return String(Number(v.toFixed(4)));
};
export const shortId = (id) => String(id).slice(0, 8);

export function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// A config value as the tables show it.
export const shown = (v) => (typeof v === "number" ? fmt(v) : v === null || v === undefined ? "null" : String(v));

// The metrics most runs report, listed first wherever a metric is chosen or shown as a column.
export const COMMON_METRICS = ["loss", "test_loss", "test_accuracy", "ensemble_accuracy", "probe_accuracy", "recon_loss", "replay_error", "drift", "avg_uncertainty"];
