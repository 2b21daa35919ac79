/* Small hand-written SVG charts for the portal: bars (import up, export down), lines, and a band.
 * Each chart is drawn at the container's current pixel width (redrawn on resize by the caller), so text stays
 * legible on a phone instead of shrinking with a scaled viewBox. No dependencies, no build step. */
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#1f6feb", "#d97706", "#059669", "#9333ea", "#dc2626", "#0891b2", "#4b5563", "#be185d",
    "#65a30d", "#7c3aed", "#b45309", "#0f766e"];

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }

  function niceStep(span, count) {
    const raw = span / Math.max(count, 1);
    const mag = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * mag) return m * mag;
    return 10 * mag;
  }

  function frame(container, lo, hi, opts) {
    container.textContent = "";
    const width = Math.max(container.clientWidth || 600, 260);
    const height = opts.height || (width < 480 ? 200 : 240);
    const pad = { l: 56, r: 24, t: 10, b: 28 };
    const svg = el("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "svg-chart" }, container);
    if (hi === lo) hi = lo + 1;
    const step = niceStep(hi - lo, height < 220 ? 4 : 5);
    lo = Math.floor(lo / step) * step;
    hi = Math.ceil(hi / step) * step;
    const y = (v) => pad.t + (height - pad.t - pad.b) * (hi - v) / (hi - lo);
    for (let v = lo; v <= hi + step / 2; v += step) {
      el("line", { x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v), class: v === 0 ? "axis" : "gridline" }, svg);
      const t = el("text", { x: pad.l - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }, svg);
      t.textContent = opts.format ? opts.format(v) : String(v);
    }
    return { svg, width, height, pad, y, plotW: width - pad.l - pad.r };
  }

  function xLabels(f, labels, xOf) {
    const every = Math.ceil(labels.length / Math.max(2, Math.floor(f.plotW / 56)));
    labels.forEach((lab, i) => {
      if (i % every) return;
      const t = el("text", { x: xOf(i), y: f.height - 8, class: "tick", "text-anchor": "middle" }, f.svg);
      t.textContent = lab;
    });
  }

  function legend(container, series) {
    const div = document.createElement("div");
    div.className = "legend";
    series.forEach((s, i) => {
      const item = document.createElement("span");
      const sw = document.createElement("i");
      sw.style.background = s.color || PALETTE[i % PALETTE.length];
      item.appendChild(sw);
      item.appendChild(document.createTextNode(s.name));
      div.appendChild(item);
    });
    container.appendChild(div);
  }

  /* up: values drawn above the axis; down: drawn below it (export). */
  function bars(container, { labels, up, down, format, upName, downName }) {
    const lo = down && down.some((v) => v > 0) ? -Math.max(...down) : 0;
    const hi = Math.max(1, ...up);
    const f = frame(container, lo, hi, { format });
    const n = labels.length;
    const slot = f.plotW / Math.max(n, 1);
    const w = Math.max(1, slot * 0.8);
    const xOf = (i) => f.pad.l + slot * (i + 0.5);
    up.forEach((v, i) => {
      const r = el("rect", { x: xOf(i) - w / 2, y: f.y(v), width: w, height: Math.max(0, f.y(0) - f.y(v)), class: "bar-up" }, f.svg);
      el("title", {}, r).textContent = `${labels[i]}: ${format ? format(v) : v}`;
    });
    (down || []).forEach((v, i) => {
      if (!v) return;
      const r = el("rect", { x: xOf(i) - w / 2, y: f.y(0), width: w, height: Math.max(0, f.y(-v) - f.y(0)), class: "bar-down" }, f.svg);
      el("title", {}, r).textContent = `${labels[i]}: −${format ? format(v) : v}`;
    });
    xLabels(f, labels, xOf);
    const series = [{ name: upName || "Import", color: "#1f6feb" }];
    if (down && down.some((v) => v > 0)) series.push({ name: downName || "Export", color: "#059669" });
    legend(container, series);
  }

  function lines(container, { labels, series, format }) {
    const all = series.flatMap((s) => s.values);
    const f = frame(container, Math.min(0, ...all), Math.max(1, ...all), { format });
    const n = labels.length;
    const xOf = (i) => f.pad.l + (n > 1 ? f.plotW * i / (n - 1) : f.plotW / 2);
    series.forEach((s, k) => {
      const color = s.color || PALETTE[k % PALETTE.length];
      const d = s.values.map((v, i) => `${i ? "L" : "M"}${xOf(i).toFixed(1)},${f.y(v).toFixed(1)}`).join("");
      el("path", { d, fill: "none", stroke: color, "stroke-width": s.width || 2, "stroke-dasharray": s.dash || "" }, f.svg);
      s.values.forEach((v, i) => {
        const c = el("circle", { cx: xOf(i), cy: f.y(v), r: 2.5, fill: color }, f.svg);
        el("title", {}, c).textContent = `${s.name}, ${labels[i]}: ${format ? format(v) : v}`;
      });
    });
    xLabels(f, labels, xOf);
    legend(container, series);
  }

  function band(container, { labels, low, mid, high, level, format }) {
    const f = frame(container, Math.min(0, ...low), Math.max(1, ...high, level || 0), { format });
    const n = labels.length;
    const xOf = (i) => f.pad.l + (n > 1 ? f.plotW * i / (n - 1) : f.plotW / 2);
    const top = high.map((v, i) => `${i ? "L" : "M"}${xOf(i).toFixed(1)},${f.y(v).toFixed(1)}`).join("");
    const bottom = low.map((v, i) => `L${xOf(n - 1 - i).toFixed(1)},${f.y(low[n - 1 - i]).toFixed(1)}`).join("");
    el("path", { d: `${top}${bottom}Z`, class: "band" }, f.svg);
    const series = [{ name: "Expected bill", values: mid, color: "#1f6feb" }];
    if (level != null) series.push({ name: "Budget billing", values: labels.map(() => level), color: "#d97706", dash: "6 4" });
    series.forEach((s) => {
      const d = s.values.map((v, i) => `${i ? "L" : "M"}${xOf(i).toFixed(1)},${f.y(v).toFixed(1)}`).join("");
      el("path", { d, fill: "none", stroke: s.color, "stroke-width": 2, "stroke-dasharray": s.dash || "" }, f.svg);
    });
    mid.forEach((v, i) => {
      const c = el("circle", { cx: xOf(i), cy: f.y(v), r: 3, fill: "#1f6feb" }, f.svg);
      el("title", {}, c).textContent = `${labels[i]}: ${format(v)} (${format(low[i])} to ${format(high[i])})`;
    });
    xLabels(f, labels, xOf);
    legend(container, [...series, { name: "Likely range (80 %)", color: "rgba(31,111,235,0.18)" }]);
  }

  window.Charts = { bars, lines, band, PALETTE };
})();
