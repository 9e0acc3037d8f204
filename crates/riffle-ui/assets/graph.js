// Drawing graphs and timelines as SVG: a laid-out DAG (see layout.js) with nodes
// coloured by status, zoom buttons and scrolling for big graphs; and a Gantt chart of
// a run's steps with the critical path outlined.
'use strict';

const NODE_W = 176;
const NODE_H = 40;

function truncate(text, max) {
  const s = String(text ?? '');
  return s.length > max ? s.slice(0, max - 1) + '…' : s;
}

function edgePath(points) {
  let d = `M${points[0][0]},${points[0][1]}`;
  for (let i = 1; i < points.length; i++) {
    const [x0, y0] = points[i - 1];
    const [x1, y1] = points[i];
    const dx = Math.max(20, (x1 - x0) / 2);
    d += ` C${x0 + dx},${y0} ${x1 - dx},${y1} ${x1},${y1}`;
  }
  return d;
}

/**
 * Draws a graph into `container`.
 * spec: {id, nodes: [{id, label, sublabel, cls, title}], edges: [{from, to, cls}],
 *        selected, onSelect(node)}
 * Keeps the zoom and scroll of a previous drawing in the same container.
 */
function drawGraph(container, spec) {
  const previous = container.graphState || { scale: null, left: 0, top: 0 };
  const scroller = container.querySelector('.graph-scroll');
  if (scroller) { previous.left = scroller.scrollLeft; previous.top = scroller.scrollTop; }
  clear(container);

  const layout = layeredLayout(spec.nodes.map((n) => ({ id: n.id, w: NODE_W, h: NODE_H })), spec.edges);
  const byId = new Map(spec.nodes.map((n) => [n.id, n]));
  const root = svg('svg', {
    id: spec.id, class: 'graph', role: 'img', 'aria-label': spec.label || 'graph',
    viewBox: `0 0 ${Math.max(layout.width, 10)} ${Math.max(layout.height, 10)}`,
  });
  root.append(svg('defs', {},
    svg('marker', { id: `${spec.id}-arrow`, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
      svg('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow' }))));
  const edgeLayer = svg('g', { class: 'edges' });
  for (const e of layout.edges) {
    edgeLayer.append(svg('path', {
      d: edgePath(e.points), class: `edge ${e.data.cls || ''}`,
      'marker-end': `url(#${spec.id}-arrow)`, 'data-from': e.from, 'data-to': e.to,
    }));
  }
  root.append(edgeLayer);
  const nodeLayer = svg('g', { class: 'nodes' });
  for (const [id, p] of layout.nodes) {
    const n = byId.get(id);
    const g = svg('g', {
      class: `node ${n.cls || ''}${spec.selected === id ? ' selected' : ''}`,
      transform: `translate(${p.x},${p.y})`, 'data-id': id, tabindex: 0, role: 'button',
      'aria-label': n.title || n.label,
    },
    svg('title', { text: n.title || n.label }),
    svg('rect', { width: p.w, height: p.h, rx: 6 }),
    svg('text', { x: 10, y: n.sublabel ? 16 : 25, class: 'label', text: truncate(n.label, 24) }),
    n.sublabel ? svg('text', { x: 10, y: 31, class: 'sublabel', text: truncate(n.sublabel, 28) }) : null);
    if (spec.onSelect) {
      const pick = () => spec.onSelect(n);
      g.addEventListener('click', pick);
      g.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); pick(); } });
    }
    nodeLayer.append(g);
  }
  root.append(nodeLayer);

  const scroll = h('div', { class: 'graph-scroll' }, root);
  const fitScale = () => Math.min(1, (container.clientWidth - 4) / layout.width);
  const state = { scale: previous.scale ?? Math.max(0.8, fitScale()), left: previous.left, top: previous.top };
  const apply = () => {
    root.setAttribute('width', Math.round(layout.width * state.scale));
    root.setAttribute('height', Math.round(layout.height * state.scale));
    zoomLabel.textContent = `${Math.round(state.scale * 100)}%`;
  };
  const zoomLabel = h('span', { class: 'zoom-label' });
  const tools = h('div', { class: 'graph-tools' },
    h('span', { class: 'muted' }, `${spec.nodes.length} nodes · ${spec.edges.length} edges`),
    h('button', { type: 'button', title: 'Zoom out', onclick: () => { state.scale = Math.max(0.1, state.scale / 1.25); apply(); } }, '−'),
    zoomLabel,
    h('button', { type: 'button', title: 'Zoom in', onclick: () => { state.scale = Math.min(3, state.scale * 1.25); apply(); } }, '+'),
    h('button', { type: 'button', title: 'Fit the width', onclick: () => { state.scale = fitScale(); apply(); } }, 'Fit'),
    h('button', { type: 'button', title: 'Actual size', onclick: () => { state.scale = 1; apply(); } }, '100%'));
  container.append(tools, scroll);
  container.graphState = state;
  apply();
  scroll.scrollLeft = state.left;
  scroll.scrollTop = state.top;
  scroll.addEventListener('scroll', () => { state.left = scroll.scrollLeft; state.top = scroll.scrollTop; });
  return layout;
}

function niceStep(span, target) {
  const raw = span / target;
  const pow = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const m of [1, 2, 5, 10]) if (raw <= m * pow) return m * pow;
  return 10 * pow;
}

/**
 * The critical path: from the step that finished last, walk back through the
 * predecessor that finished last, to a step with none.
 */
function criticalPath(steps, edges) {
  const byId = new Map(steps.map((s) => [s.step_id, s]));
  const preds = new Map();
  for (const e of edges) {
    if (!preds.has(e.to)) preds.set(e.to, []);
    preds.get(e.to).push(e.from);
  }
  const end = (s) => s.finished_ms ?? (s.started_ms !== null ? Date.now() : null);
  let current = null;
  for (const s of steps) if (end(s) !== null && (current === null || end(s) > end(current))) current = s;
  const path = new Set();
  while (current && !path.has(current.step_id)) {
    path.add(current.step_id);
    let next = null;
    for (const p of preds.get(current.step_id) || []) {
      const s = byId.get(p);
      if (s && end(s) !== null && (next === null || end(s) > end(next))) next = s;
    }
    current = next;
  }
  return path;
}

/** Draws the run's steps as a Gantt chart into `container`. */
function drawGantt(container, run, steps, edges, onSelect, selected) {
  clear(container);
  const order = new Map(steps.map((s, i) => [s.step_id, i]));
  const timed = steps.filter((s) => s.started_ms !== null)
    .sort((a, b) => a.started_ms - b.started_ms || order.get(a.step_id) - order.get(b.step_id));
  if (!timed.length) { container.append(h('p', { class: 'muted' }, 'No step has started yet.')); return; }
  const now = Date.now();
  const t0 = Math.min(run.started_ms, ...timed.map((s) => s.started_ms));
  const t1 = Math.max(t0 + 1, run.finished_ms ?? now, ...timed.map((s) => s.finished_ms ?? now));
  const labelW = 190;
  const chartW = Math.max(480, container.clientWidth - labelW - 30);
  const rowH = 20;
  const top = 26;
  const height = top + timed.length * rowH + 8;
  const scale = chartW / (t1 - t0);
  const critical = criticalPath(steps, edges);
  const root = svg('svg', { id: 'gantt-chart', class: 'gantt', width: labelW + chartW + 20, height, role: 'img', 'aria-label': 'timeline of the steps' });
  const step = niceStep(t1 - t0, 8);
  for (let t = 0; t <= t1 - t0; t += step) {
    const x = labelW + t * scale;
    root.append(svg('line', { x1: x, x2: x, y1: top - 6, y2: height, class: 'tick' }));
    root.append(svg('text', { x: x + 3, y: 14, class: 'tick-label', text: fmtDuration(Math.round(t)) }));
  }
  timed.forEach((s, i) => {
    const y = top + i * rowH;
    const start = s.started_ms;
    const end = s.finished_ms ?? now;
    const x = labelW + (start - t0) * scale;
    const w = Math.max(3, (end - start) * scale);
    const g = svg('g', { class: `bar status-${s.status}${critical.has(s.step_id) ? ' critical' : ''}${selected === s.step_id ? ' selected' : ''}`, 'data-step': s.step_id, role: 'button', tabindex: 0 },
      svg('title', { text: `${s.step_id}: ${s.status}, ${fmtDuration(s.duration_ms)}${s.cache_hit ? ' (cache hit)' : ''}${critical.has(s.step_id) ? ', on the critical path' : ''}` }),
      svg('rect', { x: 0, y: y - 2, width: labelW + chartW + 20, height: rowH, class: 'row-band' }),
      svg('text', { x: 6, y: y + 12, class: 'row-label', text: truncate(s.step_id, 26) }),
      svg('rect', { x, y: y + 2, width: w, height: rowH - 8, rx: 2, class: 'bar-rect' }));
    g.addEventListener('click', () => onSelect(s.step_id));
    root.append(g);
  });
  container.append(
    h('div', { class: 'graph-tools' }, h('span', { class: 'muted' }, `${timed.length} steps over ${fmtDuration(t1 - t0)} · outlined: the critical path (${critical.size} steps)`)),
    h('div', { class: 'graph-scroll gantt-scroll' }, root));
}
