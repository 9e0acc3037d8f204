// Small line charts as SVG, for a value over time (a flow processor's replicas or
// backlog): a time axis from the run's start, a value axis from 0, the line split
// where the value is unknown, and a dot per point when there are few of them.
'use strict';

/** A round step near span / count: 1, 2 or 5 times a power of ten. */
function roundStep(span, count) {
  const raw = Math.max(span, 1e-9) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const m = raw / power;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * power;
}

/** A count for an axis: 1200 -> 1.2k. */
function fmtCount(n) {
  if (Math.abs(n) >= 1e6) return `${+(n / 1e6).toFixed(1)}M`;
  if (Math.abs(n) >= 1e4) return `${+(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n * 100) / 100);
}

/**
 * A line chart of `values` (numbers or null) at `times` (ms), over [t0, t1].
 * spec: {id, label, times, values, t0, t1, cls, integer}
 * The line's points are also on the polyline elements (one per run of known values).
 */
function lineChart(spec) {
  const width = 460;
  const height = 150;
  const left = 48;
  const right = 26;
  const top = 12;
  const bottom = 24;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const known = spec.values.filter((v) => v !== null && v !== undefined);
  const maxValue = Math.max(spec.integer ? 1 : 1e-9, ...known);
  const yStep = spec.integer ? Math.max(1, Math.ceil(roundStep(maxValue, 4))) : roundStep(maxValue, 4);
  const yMax = Math.max(yStep, Math.ceil(maxValue / yStep) * yStep);
  const t0 = spec.t0;
  const t1 = Math.max(spec.t1, t0 + 1);
  const x = (t) => left + ((t - t0) / (t1 - t0)) * plotW;
  const y = (v) => top + plotH - (v / yMax) * plotH;
  const root = svg('svg', {
    id: spec.id, class: `chart ${spec.cls || ''}`, width, height, viewBox: `0 0 ${width} ${height}`,
    role: 'img', 'aria-label': spec.label, 'data-points': known.length,
  });
  for (let v = 0; v <= yMax + yStep / 1000; v += yStep) {
    root.append(svg('line', { x1: left, x2: width - right, y1: y(v), y2: y(v), class: 'grid' }));
    root.append(svg('text', { x: left - 6, y: y(v) + 4, class: 'axis-label', 'text-anchor': 'end', text: fmtCount(v) }));
  }
  const tStep = roundStep(t1 - t0, 5);
  for (let t = 0; t <= t1 - t0; t += tStep) {
    root.append(svg('line', { x1: x(t0 + t), x2: x(t0 + t), y1: top + plotH, y2: top + plotH + 4, class: 'axis' }));
    root.append(svg('text', { x: x(t0 + t), y: height - 6, class: 'axis-label', 'text-anchor': 'middle', text: fmtDuration(Math.round(t)) }));
  }
  root.append(svg('line', { x1: left, x2: width - right, y1: top + plotH, y2: top + plotH, class: 'axis' }));
  // One polyline per stretch of known values.
  let stretch = [];
  const lines = [];
  spec.times.forEach((t, i) => {
    const v = spec.values[i];
    if (v === null || v === undefined) {
      if (stretch.length) lines.push(stretch);
      stretch = [];
    } else {
      stretch.push([x(t), y(v), t, v]);
    }
  });
  if (stretch.length) lines.push(stretch);
  for (const line of lines) {
    root.append(svg('polyline', {
      class: 'line', points: line.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(' '),
    }));
  }
  if (known.length <= 120) {
    for (const line of lines) {
      for (const [px, py, t, v] of line) {
        root.append(svg('circle', { cx: px.toFixed(1), cy: py.toFixed(1), r: 2.5, class: 'point' },
          svg('title', { text: `${fmtCount(v)} at ${fmtTime(t)}` })));
      }
    }
  }
  if (!known.length) {
    root.append(svg('text', { x: left + plotW / 2, y: top + plotH / 2, class: 'axis-label', 'text-anchor': 'middle', text: 'not known' }));
  }
  return root;
}
