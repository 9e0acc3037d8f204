// A layered (Sugiyama-style) layout for directed graphs, drawn left to right.
//
// 1. Cycles are broken by reversing the back edges a depth-first search finds (a
//    pipeline is acyclic; this only guards against bad data).
// 2. Layers by longest path: a node sits one layer after the furthest of its
//    predecessors, so every edge points rightwards.
// 3. Edges spanning several layers get a dummy node in each layer they cross, so
//    they can bend around nodes and take part in ordering.
// 4. Crossing reduction: alternate sweeps down and up the layers, sorting each layer
//    by the barycenter (mean position) of its neighbours in the layer just fixed;
//    the ordering with the fewest crossings seen is kept.
// 5. Coordinates: x by layer; y by repeatedly pulling each node towards the mean y of
//    its neighbours while keeping the layer's order and spacing (solved exactly per
//    layer as an isotonic regression with the pool-adjacent-violators algorithm).
'use strict';

/**
 * Lays out `nodes` ([{id, w, h}]) and `edges` ([{from, to}]).
 * Returns {nodes: Map(id -> {x, y, w, h, layer}), edges: [{from, to, points}], width, height}.
 */
function layeredLayout(nodes, edges, options = {}) {
  const gapX = options.gapX ?? 70;
  const gapY = options.gapY ?? 16;
  const dummyGap = options.dummyGap ?? 8;
  const margin = options.margin ?? 20;

  const byId = new Map();
  nodes.forEach((n, i) => byId.set(n.id, { id: n.id, w: n.w, h: n.h, dummy: false, index: i }));
  const seen = new Set();
  const links = [];
  for (const e of edges) {
    if (!byId.has(e.from) || !byId.has(e.to) || e.from === e.to) continue;
    const key = e.from + '\u0000' + e.to;
    if (seen.has(key)) continue;
    seen.add(key);
    links.push({ from: e.from, to: e.to, original: e, reversed: false });
  }

  // 1. Break cycles.
  const out = new Map([...byId.keys()].map((id) => [id, []]));
  links.forEach((l) => out.get(l.from).push(l));
  const state = new Map();
  for (const start of byId.keys()) {
    if (state.has(start)) continue;
    const stack = [[start, 0]];
    state.set(start, 1);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const outs = out.get(top[0]);
      if (top[1] >= outs.length) { state.set(top[0], 2); stack.pop(); continue; }
      const l = outs[top[1]++];
      const s = state.get(l.to);
      if (s === 1) l.reversed = true;
      else if (!s) { state.set(l.to, 1); stack.push([l.to, 0]); }
    }
  }
  for (const l of links) if (l.reversed) [l.from, l.to] = [l.to, l.from];

  // 2. Longest-path layering (Kahn's order).
  const preds = new Map([...byId.keys()].map((id) => [id, []]));
  const succs = new Map([...byId.keys()].map((id) => [id, []]));
  links.forEach((l) => { succs.get(l.from).push(l.to); preds.get(l.to).push(l.from); });
  const indeg = new Map([...byId.keys()].map((id) => [id, preds.get(id).length]));
  const queue = [...byId.keys()].filter((id) => indeg.get(id) === 0);
  const layerOf = new Map(queue.map((id) => [id, 0]));
  for (let i = 0; i < queue.length; i++) {
    const id = queue[i];
    for (const t of succs.get(id)) {
      layerOf.set(t, Math.max(layerOf.get(t) ?? 0, layerOf.get(id) + 1));
      indeg.set(t, indeg.get(t) - 1);
      if (indeg.get(t) === 0) queue.push(t);
    }
  }
  const layerCount = Math.max(0, ...layerOf.values()) + 1;

  // 3. Dummy nodes on long edges.
  const layers = Array.from({ length: layerCount }, () => []);
  for (const id of queue) layers[layerOf.get(id)].push(id);
  const up = new Map([...byId.keys()].map((id) => [id, []]));
  const down = new Map([...byId.keys()].map((id) => [id, []]));
  const chains = [];
  let dummyCount = 0;
  for (const l of links) {
    const chain = [l.from];
    for (let layer = layerOf.get(l.from) + 1; layer < layerOf.get(l.to); layer++) {
      const id = `\u0000dummy${dummyCount++}`;
      byId.set(id, { id, w: 0, h: 0, dummy: true, index: Infinity });
      layerOf.set(id, layer);
      layers[layer].push(id);
      up.set(id, []);
      down.set(id, []);
      chain.push(id);
    }
    chain.push(l.to);
    for (let i = 0; i + 1 < chain.length; i++) {
      down.get(chain[i]).push(chain[i + 1]);
      up.get(chain[i + 1]).push(chain[i]);
    }
    chains.push({ link: l, chain });
  }

  // 4. Crossing reduction by barycenters.
  const pos = new Map();
  const number = () => layers.forEach((layer) => layer.forEach((id, i) => pos.set(id, i)));
  number();
  const crossings = () => {
    let total = 0;
    for (let k = 0; k + 1 < layers.length; k++) {
      const pairs = [];
      for (const id of layers[k]) for (const t of down.get(id)) pairs.push([pos.get(id), pos.get(t)]);
      pairs.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      total += inversions(pairs.map((p) => p[1]), layers[k + 1].length);
    }
    return total;
  };
  let best = layers.map((layer) => layer.slice());
  let bestCrossings = crossings();
  const sweeps = layers.length > 400 ? 4 : 24;
  for (let sweep = 0; sweep < sweeps && bestCrossings > 0; sweep++) {
    const downward = sweep % 2 === 0;
    const order = downward ? [...layers.keys()].slice(1) : [...layers.keys()].reverse().slice(1);
    for (const k of order) {
      const neighbours = downward ? up : down;
      const bary = new Map();
      for (const id of layers[k]) {
        const ns = neighbours.get(id);
        bary.set(id, ns.length ? ns.reduce((s, n) => s + pos.get(n), 0) / ns.length : pos.get(id));
      }
      layers[k].sort((a, b) => bary.get(a) - bary.get(b) || pos.get(a) - pos.get(b));
      layers[k].forEach((id, i) => pos.set(id, i));
    }
    const c = crossings();
    if (c < bestCrossings) { bestCrossings = c; best = layers.map((layer) => layer.slice()); }
  }
  best.forEach((layer, k) => { layers[k] = layer; });
  number();

  // 5. Coordinates.
  const colWidth = Math.max(...[...byId.values()].map((n) => n.w), 10);
  const x = new Map();
  const y = new Map();
  layers.forEach((layer, k) => {
    let at = 0;
    for (const id of layer) {
      const n = byId.get(id);
      x.set(id, k * (colWidth + gapX) + (colWidth - n.w) / 2);
      y.set(id, at + n.h / 2);
      at += n.h + (n.dummy ? dummyGap : gapY);
    }
  });
  const sep = (a, b) => {
    const na = byId.get(a);
    const nb = byId.get(b);
    return (na.h + nb.h) / 2 + (na.dummy || nb.dummy ? dummyGap : gapY);
  };
  const place = (layer, neighbours) => {
    if (!layer.length) return;
    const targets = layer.map((id) => {
      const ns = neighbours.get(id);
      return ns.length ? ns.reduce((s, n) => s + y.get(n), 0) / ns.length : y.get(id);
    });
    const weights = layer.map((id) => (byId.get(id).dummy ? 1 : 2));
    // y_i >= y_{i-1} + sep: substitute z_i = y_i - offset_i and fit a non-decreasing z.
    const offsets = [0];
    for (let i = 1; i < layer.length; i++) offsets.push(offsets[i - 1] + sep(layer[i - 1], layer[i]));
    const fitted = isotonic(targets.map((t, i) => t - offsets[i]), weights);
    layer.forEach((id, i) => y.set(id, fitted[i] + offsets[i]));
  };
  for (let round = 0; round < 8; round++) {
    for (let k = 1; k < layers.length; k++) place(layers[k], up);
    for (let k = layers.length - 2; k >= 0; k--) place(layers[k], down);
  }
  let minY = Infinity;
  let maxY = -Infinity;
  for (const [id, n] of byId) {
    minY = Math.min(minY, y.get(id) - n.h / 2);
    maxY = Math.max(maxY, y.get(id) + n.h / 2);
  }
  if (!Number.isFinite(minY)) { minY = 0; maxY = 0; }
  const shift = margin - minY;

  const placed = new Map();
  for (const [id, n] of byId) {
    if (n.dummy) continue;
    placed.set(id, { x: x.get(id) + margin, y: y.get(id) + shift - n.h / 2, w: n.w, h: n.h, layer: layerOf.get(id) });
  }
  const routed = chains.map(({ link, chain }) => {
    const points = chain.map((id, i) => {
      const n = byId.get(id);
      const cx = x.get(id) + margin;
      const cy = y.get(id) + shift;
      if (i === 0) return [cx + n.w, cy];
      if (i === chain.length - 1) return [cx, cy];
      return [cx, cy];
    });
    if (link.reversed) points.reverse();
    return { from: link.original.from, to: link.original.to, data: link.original, points };
  });
  return {
    nodes: placed,
    edges: routed,
    width: layerCount * (colWidth + gapX) - gapX + 2 * margin,
    height: maxY - minY + 2 * margin,
    crossings: bestCrossings,
  };
}

/** Inversions in `values` (integers below `size`), with a Fenwick tree. */
function inversions(values, size) {
  const tree = new Array(size + 1).fill(0);
  let count = 0;
  let seenSoFar = 0;
  for (const v of values) {
    let i = v + 1;
    let notGreater = 0;
    while (i > 0) { notGreater += tree[i]; i -= i & -i; }
    count += seenSoFar - notGreater;
    for (i = v + 1; i <= size; i += i & -i) tree[i]++;
    seenSoFar++;
  }
  return count;
}

/** Weighted least-squares fit of a non-decreasing sequence (pool adjacent violators). */
function isotonic(values, weights) {
  const blocks = [];
  values.forEach((v, i) => {
    blocks.push({ sum: v * weights[i], weight: weights[i], count: 1 });
    while (blocks.length > 1) {
      const b = blocks[blocks.length - 1];
      const a = blocks[blocks.length - 2];
      if (a.sum / a.weight <= b.sum / b.weight) break;
      blocks.pop();
      a.sum += b.sum; a.weight += b.weight; a.count += b.count;
    }
  });
  const out = [];
  for (const b of blocks) for (let i = 0; i < b.count; i++) out.push(b.sum / b.weight);
  return out;
}
