// Line charts by round (uPlot, loaded as a classic script before the modules: the global uPlot).
import { el, fmt, PALETTE } from "./util.js";

// A constant series (drift = 0) gets a small band around its value, not uPlot's 0–100.
export function flatSafeRange(u, min, max) {
  if (min === null || max === null) return [0, 1];
  if (min === max) {
    if (min === 0) return [0, 1];
    const pad = Math.abs(min) * 0.1;
    return [min - pad, max + pad];
  }
  return uPlot.rangeNum(min, max, 0.1, true);
}

// A log axis needs a positive range; a flat series gets a factor of 2 either side.
function logRange(u, min, max) {
  if (min === null || max === null || !(min > 0) || !(max > 0)) return [1, 10];
  if (min === max) return [min / 2, max * 2];
  return uPlot.rangeLog(min, max, 10, true);
}

// Exponential moving average of a series (TensorBoard's smoothing, without its debiasing):
// s_t = alpha * s_{t-1} + (1 - alpha) * x_t, starting at the first value; gaps stay gaps.
export function ema(values, alpha) {
  if (!alpha) return values;
  let s = null;
  return values.map((x) => {
    if (x === null || x === undefined) return null;
    s = s === null ? x : alpha * s + (1 - alpha) * x;
    return s;
  });
}

const SMOOTHING = [0, 0.5, 0.8, 0.9, 0.95, 0.99];

// Charts (uPlot). Each ChartBox owns one plot; it is rebuilt when its set of series changes or
// its y axis switches between linear and log. Drag across a chart zooms into those rounds,
// a double click shows them all again (uPlot's cursor); hovering shows each series' raw value
// in the legend, also when the lines are smoothed. The plot's scales are mirrored onto the
// figure as data-x-min, data-x-max, data-y-min, data-y-max and data-y-distr (1 linear, 3 log).
export class ChartBox {
  constructor(parent, { key, title, yLabel = "", rightAxis = [] }) {
    this.key = key; this.title = title; this.rightAxis = new Set(rightAxis);
    this.root = el("figure", { class: "chart-box", "data-chart": key, "data-points": "0", "data-y-distr": "1", "data-smoothing": "0" },
      el("figcaption", { text: title }));
    this.logInput = el("input", { type: "checkbox", class: "chart-log", onchange: () => this.rebuild() });
    this.logLabel = el("label", { title: "Log scale of the y axis (only when every value is above 0)" }, this.logInput, " log y");
    this.smoothSelect = el("select", { class: "chart-smoothing", "aria-label": `Smoothing of ${title || key}`, onchange: () => this.redraw() },
      ...SMOOTHING.map((a) => new Option(a ? `EMA ${a}` : "no smoothing", String(a))));
    this.controls = el("div", { class: "chart-controls" }, this.logLabel, this.smoothSelect,
      el("span", { class: "chart-hint", text: "drag to zoom · double-click resets" }));
    this.plotEl = el("div", { class: "plot" });
    this.root.append(this.controls, this.plotEl);
    parent.append(this.root);
    this.plot = null; this.seriesKeys = []; this.yLabel = yLabel;
    this.xs = []; this.raw = [];
    this.observer = new ResizeObserver(() => this.resize());
    this.observer.observe(this.plotEl);
  }

  size() {
    const width = Math.max(200, Math.floor(this.plotEl.clientWidth || 300));
    return { width, height: Math.round(Math.min(220, Math.max(160, width * 0.55))) };
  }

  resize() { if (this.plot) this.plot.setSize(this.size()); }

  get alpha() { return Number(this.smoothSelect.value) || 0; }

  // What the plot draws: the raw series, smoothed when asked.
  shown() { return [this.xs, ...this.raw.map((v) => ema(v, this.alpha))]; }

  // Log is offered only when every value on the left axis is above 0.
  logAllowed() {
    const left = this.raw.filter((_, i) => !this.rightAxis.has(this.seriesKeys[i]));
    const values = left.flat().filter((v) => v !== null && v !== undefined);
    return values.length > 0 && values.every((v) => v > 0);
  }

  // xs: round numbers; series: [[name, values aligned with xs]]
  update(xs, series) {
    const keys = series.map(([name]) => name);
    const zoomed = this.zoomed();  // against the rounds drawn so far
    this.xs = xs; this.raw = series.map(([, values]) => values);
    const hasAny = series.some(([, v]) => v.some((x) => x !== null && x !== undefined));
    this.root.hidden = !hasAny;
    const keysChanged = keys.join("\u0000") !== this.seriesKeys.join("\u0000");
    this.seriesKeys = keys;
    const allowed = this.logAllowed();
    const logWas = this.logInput.checked;
    this.logInput.disabled = !allowed;
    if (!allowed) this.logInput.checked = false;
    this.logLabel.title = allowed ? "Log scale of the y axis" : "Log scale needs every value above 0";
    if (!this.plot || keysChanged || logWas !== this.logInput.checked) {
      this.rebuild(zoomed);
    } else {
      // a zoomed chart keeps its rounds while new ones arrive
      this.plot.setData(this.shown(), !zoomed);
      this.mirror();
    }
    this.root.dataset.points = String(xs.length);
    this.root.dataset.series = keys.join(",");
  }

  zoomed() {
    if (!this.plot || !this.xs.length) return false;
    const { min, max } = this.plot.scales.x;
    return min > this.xs[0] || max < this.xs[this.xs.length - 1];
  }

  // A new plot (series, log), keeping the zoomed rounds.
  rebuild(zoomed = this.zoomed()) {
    const keep = zoomed ? { min: this.plot.scales.x.min, max: this.plot.scales.x.max } : null;
    if (this.plot) this.plot.destroy();
    this.plot = new uPlot(this.options(this.seriesKeys), this.shown(), this.plotEl);
    if (keep) this.plot.setScale("x", keep);
    this.mirror();
  }

  // New smoothing: same plot, new lines, same zoom.
  redraw() {
    this.root.dataset.smoothing = String(this.alpha);
    if (this.plot) { this.plot.setData(this.shown(), !this.zoomed()); this.mirror(); }
  }

  mirror(u = this.plot) {
    if (!u) return;
    const { x, y } = u.scales;
    Object.assign(this.root.dataset, {
      xMin: String(x.min), xMax: String(x.max), yMin: String(y.min), yMax: String(y.max), yDistr: String(y.distr),
    });
  }

  options(keys) {
    const useRight = keys.some((k) => this.rightAxis.has(k));
    const log = this.logInput.checked;
    // the legend shows the raw value under the cursor; smoothed lines add the drawn one
    const value = (u, v, si, idx) => {
      if (idx === null || idx === undefined) return "–";
      const raw = fmt(this.raw[si - 1] ? this.raw[si - 1][idx] : null);
      return this.alpha && v !== null && v !== undefined ? `${raw} (EMA ${fmt(v)})` : raw;
    };
    return {
      ...this.size(),
      legend: { live: true },
      cursor: { drag: { x: true, y: false, setScale: true } },
      hooks: { setScale: [(u) => this.mirror(u)] },
      scales: {
        x: { time: false },
        y: log ? { distr: 3, log: 10, range: logRange } : { range: flatSafeRange },
        ...(useRight ? { r: { range: flatSafeRange } } : {}),
      },
      axes: [
        { label: "round", size: 30, labelSize: 18, labelGap: 0, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500], values: (u, v) => v.map((x) => (Number.isInteger(x) ? x : "")) },
        { label: this.yLabel, size: 56, values: (u, v) => v.map(fmt) },
        ...(useRight ? [{ scale: "r", side: 1, size: 56, grid: { show: false }, values: (u, v) => v.map(fmt) }] : []),
      ],
      series: [
        { label: "round", value: (u, v) => (v === null || v === undefined ? "–" : String(v)) },
        ...keys.map((name, i) => ({
          label: name,
          stroke: PALETTE[i % PALETTE.length],
          width: 2,
          scale: this.rightAxis.has(name) ? "r" : "y",
          spanGaps: true,
          points: { show: true, size: 6 },
          value,
        })),
      ],
    };
  }

  destroy() { this.observer.disconnect(); if (this.plot) this.plot.destroy(); this.root.remove(); }
}

// The clients' data (GET /simulations/{id}/clients): one stacked bar per client, one colour per
// label (rows held); for regression, each client's rows. Bars are drawn tallest first: each
