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

// Charts (uPlot). Each ChartBox owns one plot; it is rebuilt when its set of series changes.
export class ChartBox {
  constructor(parent, { key, title, yLabel = "", rightAxis = [] }) {
    this.key = key; this.title = title; this.rightAxis = new Set(rightAxis);
    this.root = el("figure", { class: "chart-box", "data-chart": key, "data-points": "0" },
      el("figcaption", { text: title }));
    this.plotEl = el("div", { class: "plot" });
    this.root.append(this.plotEl);
    parent.append(this.root);
    this.plot = null; this.seriesKeys = []; this.yLabel = yLabel;
    this.observer = new ResizeObserver(() => this.resize());
    this.observer.observe(this.plotEl);
  }

  size() {
    const width = Math.max(200, Math.floor(this.plotEl.clientWidth || 300));
    return { width, height: Math.round(Math.min(220, Math.max(160, width * 0.55))) };
  }

  resize() { if (this.plot) this.plot.setSize(this.size()); }

  // xs: round numbers; series: [[name, values aligned with xs]]
  update(xs, series) {
    const keys = series.map(([name]) => name);
    const data = [xs, ...series.map(([, values]) => values)];
    const hasAny = series.some(([, v]) => v.some((x) => x !== null && x !== undefined));
    this.root.hidden = !hasAny;
    if (!this.plot || keys.join("\u0000") !== this.seriesKeys.join("\u0000")) {
      if (this.plot) this.plot.destroy();
      this.seriesKeys = keys;
      this.plot = new uPlot(this.options(keys), data, this.plotEl);
    } else {
      this.plot.setData(data);
    }
    this.root.dataset.points = String(xs.length);
    this.root.dataset.series = keys.join(",");
  }

  options(keys) {
    const useRight = keys.some((k) => this.rightAxis.has(k));
    return {
      ...this.size(),
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: false }, y: { range: flatSafeRange }, ...(useRight ? { r: { range: flatSafeRange } } : {}) },
      axes: [
        { label: "round", size: 30, labelSize: 18, labelGap: 0, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500], values: (u, v) => v.map((x) => (Number.isInteger(x) ? x : "")) },
        { label: this.yLabel, size: 56, values: (u, v) => v.map(fmt) },
        ...(useRight ? [{ scale: "r", side: 1, size: 56, grid: { show: false }, values: (u, v) => v.map(fmt) }] : []),
      ],
      series: [
        { label: "round" },
        ...keys.map((name, i) => ({
          label: name,
          stroke: PALETTE[i % PALETTE.length],
          width: 2,
          scale: this.rightAxis.has(name) ? "r" : "y",
          spanGaps: true,
          points: { show: true, size: 6 },
          value: (u, v) => fmt(v),
        })),
      ],
    };
  }

  destroy() { this.observer.disconnect(); if (this.plot) this.plot.destroy(); this.root.remove(); }
}

// The clients' data (GET /simulations/{id}/clients): one stacked bar per client, one colour per
// label (rows held); for regression, each client's rows. Bars are drawn tallest first: each
