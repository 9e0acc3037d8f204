// The dashboard's pages. A hash route (#/runs, #/runs/ID, #/artifacts/HASH, ...)
// picks a view; each view fetches the JSON API and builds its elements with dom.js.
// A run in progress is polled every second until it ends.
'use strict';

const main = document.getElementById('main');
let generation = 0; // bumps on every navigation; stale fetches and timers stop
let pollTimer = null;

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path) {
  let response;
  try {
    response = await fetch(path, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
  } catch (e) {
    throw new ApiError(0, `the dashboard server cannot be reached (${e.message})`);
  }
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) throw new ApiError(response.status, (body && body.error) || `${path} answered ${response.status}`);
  return body;
}

function showError(err) {
  const hint = err.status === 401 ? 'Open the dashboard once as /?token=YOUR_TOKEN to sign in.' : null;
  return h('div', { class: 'error', role: 'alert' }, h('strong', {}, 'Error: '), err.message, hint ? h('p', {}, hint) : null);
}

function setLive(on) { document.getElementById('live').hidden = !on; }

function parseRoute() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query] = raw.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts, query: new URLSearchParams(query || '') };
}

async function render() {
  const mine = ++generation;
  clearTimeout(pollTimer);
  setLive(false);
  const { parts, query } = parseRoute();
  const page = parts[0] || 'runs';
  document.querySelectorAll('[data-nav]').forEach((a) => a.classList.toggle('active', a.dataset.nav === page));
  const view = h('div', { class: 'view' });
  try {
    if (page === 'runs' && parts[1]) await runView(view, parts[1], query, mine);
    else if (page === 'runs') await runsView(view, query, mine);
    else if (page === 'pipelines') await pipelinesView(view, mine);
    else if (page === 'artifacts' && parts[1]) await artifactView(view, parts[1], mine);
    else if (page === 'artifacts') await artifactsView(view, query, mine);
    else if (page === 'dataflows' && parts[1]) await dataflowView(view, parts[1], mine);
    else if (page === 'dataflows') await dataflowsView(view, mine);
    else if (page === 'flows' && parts[1]) await flowView(view, parts[1], mine);
    else if (page === 'flows') await flowsView(view, query, mine);
    else view.append(showError(new ApiError(404, `there is no page ${location.hash}`)));
  } catch (err) {
    if (mine !== generation) return;
    view.append(showError(err));
  }
  if (mine !== generation) return;
  if (!view.isConnected) { clear(main); main.append(view); }
}

function mount(view, mine) {
  if (mine !== generation) return false;
  if (!view.isConnected) { clear(main); main.append(view); }
  return true;
}

// ---- runs ----

const NUMERIC = new Set(['Duration', 'Steps', 'Cache hits', 'Runs', 'Size']);

/** A table header cell, right-aligned over numbers. */
function header(text) { return h('th', { class: NUMERIC.has(text) ? 'num' : null }, text); }

function runRow(r) {
  return h('tr', { 'data-run-id': r.id },
    h('td', { class: 'mono' }, link(shortId(r.id), 'runs', r.id)),
    h('td', {}, link(r.pipeline_id, 'runs', { pipeline: r.pipeline_id })),
    h('td', {}, badge(r.status)),
    h('td', {}, r.runtime),
    h('td', {}, fmtTime(r.started_ms)),
    h('td', { class: 'num' }, fmtDuration(r.duration_ms)),
    h('td', { class: 'num' }, r.steps),
    h('td', { class: 'num' }, r.steps ? `${r.cache_hits} (${Math.round((100 * r.cache_hits) / r.steps)}%)` : '0'),
    h('td', { class: 'error-cell', title: r.error || '' }, r.error ? truncate(r.error, 60) : ''));
}

async function runsView(view, query, mine) {
  const limit = 50;
  const offset = Math.max(0, parseInt(query.get('offset') || '0', 10) || 0);
  const filters = { pipeline: query.get('pipeline') || '', status: query.get('status') || '', from: query.get('from') || '', to: query.get('to') || '' };
  const params = new URLSearchParams({ limit, offset });
  for (const [k, v] of Object.entries(filters)) if (v) params.set(k, v);
  const [page, pipelines] = await Promise.all([api(`/api/runs?${params}`), api('/api/pipelines')]);

  const select = (name, options, value) => h('select', { name, id: `filter-${name}` },
    options.map(([v, label]) => h('option', { value: v, selected: v === value }, label)));
  const form = h('form', { class: 'filters', id: 'run-filters' },
    h('label', {}, 'Pipeline ', select('pipeline', [['', 'all'], ...pipelines.pipelines.map((p) => [p.id, p.id])], filters.pipeline)),
    h('label', {}, 'Status ', select('status', [['', 'all'], ['running', 'running'], ['succeeded', 'succeeded'], ['failed', 'failed'], ['cancelled', 'cancelled']], filters.status)),
    h('label', {}, 'From ', h('input', { type: 'date', name: 'from', value: filters.from })),
    h('label', {}, 'To ', h('input', { type: 'date', name: 'to', value: filters.to })),
    h('button', { type: 'submit' }, 'Apply'),
    h('a', { href: '#/runs', class: 'reset' }, 'Reset'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const data = Object.fromEntries(new FormData(form).entries());
    location.hash = route('runs', data);
  });
  const first = page.total ? offset + 1 : 0;
  const last = offset + page.runs.length;
  const pager = h('div', { class: 'pager' },
    h('span', { id: 'runs-count' }, `${first}–${last} of ${page.total} runs`),
    offset > 0 ? h('a', { href: route('runs', { ...filters, offset: Math.max(0, offset - limit) }) }, '← newer') : null,
    last < page.total ? h('a', { href: route('runs', { ...filters, offset: offset + limit }) }, 'older →') : null);
  const table = h('table', { class: 'list', id: 'runs-table' },
    h('thead', {}, h('tr', {}, ['Run', 'Pipeline', 'Status', 'Runtime', 'Started', 'Duration', 'Steps', 'Cache hits', 'Error'].map(header))),
    h('tbody', {}, page.runs.map(runRow)));
  view.append(h('h1', {}, 'Runs'), form, pager,
    page.runs.length ? table : h('p', { class: 'muted', id: 'runs-empty' },
      Object.values(filters).some((v) => v) || offset > 0
        ? 'No runs match.'
        : 'No runs yet. Make a first run from the project folder with: run --workflow ID (the Pipelines page lists the ids).'));
  if (!mount(view, mine)) return;
  // Milliseconds from navigation to this table on screen (read by `riffle bench ui`).
  if (!document.body.dataset.firstRunsMs) document.body.dataset.firstRunsMs = String(Math.round(performance.now()));
  document.body.dataset.ready = 'runs';
  if (page.runs.some((r) => r.status === 'running')) {
    setLive(true);
    pollTimer = setTimeout(() => { if (mine === generation) render(); }, 3000);
  }
}

// ---- one run ----

function stepNode(s) {
  const sub = s.status === 'cached' ? 'cached'
    : s.duration_ms !== null ? `${s.status} · ${fmtDuration(s.duration_ms)}`
    : s.status.replace('_', ' ');
  return {
    id: s.step_id, label: s.step_id, sublabel: sub + (s.attempts > 1 ? ` · ${s.attempts} attempts` : ''),
    cls: `status-${s.status}`, title: `${s.step_id}: ${s.status}`,
  };
}

async function runView(view, runId, query, mine) {
  const state = { selected: query.get('step') || null, detail: null };
  const header = h('div', { class: 'run-header' });
  const dag = h('div', { class: 'graph-box', id: 'dag' });
  const side = h('aside', { class: 'side', id: 'step-details' }, h('p', { class: 'muted' }, 'Click a step to see its details.'));
  const gantt = h('div', { class: 'graph-box', id: 'gantt' });
  view.append(header,
    h('div', { class: 'split' }, h('section', { class: 'grow' }, h('h2', {}, 'Graph'), dag), side),
    h('section', {}, h('h2', {}, 'Timeline'), gantt));

  const select = (stepId) => {
    state.selected = stepId;
    history.replaceState(null, '', route('runs', runId, { step: stepId }));
    draw();
    showStep(stepId);
  };
  const draw = () => {
    const d = state.detail;
    drawGraph(dag, {
      id: 'dag-svg', label: `graph of run ${d.run.id}`, selected: state.selected,
      nodes: d.steps.map(stepNode),
      edges: d.edges.map((e) => ({ from: e.from, to: e.to, cls: `edge-${e.kind}` })),
      onSelect: (n) => select(n.id),
    });
    drawGantt(gantt, d.run, d.steps, d.edges, select, state.selected);
  };
  const showStep = async (stepId) => {
    const s = state.detail.steps.find((x) => x.step_id === stepId);
    clear(side);
    if (!s) { side.append(h('p', { class: 'muted' }, `This run has no step ${stepId}.`)); return; }
    if (s.step_run_id === null) {
      side.append(h('h2', {}, s.step_id), badge(s.status),
        h('p', { class: 'muted' }, s.status === 'pending' ? 'The run has not reached this step yet.' : 'The run ended without running this step.'));
      return;
    }
    let detail;
    try { detail = await api(`/api/runs/${encodeURIComponent(state.detail.run.id)}/steps/${encodeURIComponent(stepId)}`); } catch (err) { side.append(showError(err)); return; }
    if (state.selected !== stepId || mine !== generation) return;
    clear(side);
    side.append(stepDetails(detail));
  };
  const refresh = async (first) => {
    const detail = await api(`/api/runs/${encodeURIComponent(runId)}`);
    if (mine !== generation) return;
    state.detail = detail;
    clear(header);
    header.append(runHeader(detail));
    if (first && !mount(view, mine)) return;
    draw();
    if (state.selected) await showStep(state.selected);
    const going = detail.run.status === 'running';
    setLive(going);
    document.body.dataset.ready = `run:${detail.run.status}`;
    if (going) pollTimer = setTimeout(() => { if (mine === generation) refresh(false).catch((e) => header.append(showError(e))); }, 1000);
  };
  await refresh(true);
}

function runHeader(d) {
  const r = d.run;
  const config = Object.entries(d.config && typeof d.config === 'object' ? d.config : {});
  return h('div', {},
    h('h1', {}, 'Run ', h('span', { class: 'mono', id: 'run-id' }, shortId(r.id)), ' of ', link(r.pipeline_id, 'runs', { pipeline: r.pipeline_id }), ' ', h('span', { id: 'run-status' }, badge(r.status))),
    h('div', { class: 'cards' },
      card('Runtime', r.runtime), card('Environment', r.environment),
      card('Started', fmtTime(r.started_ms)), card('Duration', fmtDuration(r.duration_ms)),
      card('Steps', `${r.steps}${d.steps.length > r.steps ? ` of ${d.steps.length}` : ''}`),
      card('Cache hits', r.cache_hits), card('Failed', r.failed_steps),
      r.only_step ? card('Only step', r.only_step) : null),
    r.error ? h('pre', { class: 'error-text', id: 'run-error' }, r.error) : null,
    config.length ? h('details', {}, h('summary', {}, `Config (${config.length} ${config.length === 1 ? 'value' : 'values'})`),
      facts(config.map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]))) : null,
    h('p', { class: 'muted small' }, `Run id ${r.id}`, d.registered ? '' : ' · this pipeline is not registered with the binary serving the dashboard, so only the steps that ran are shown'));
}

function card(label, value) {
  return h('div', { class: 'card' }, h('div', { class: 'card-label' }, label), h('div', { class: 'card-value' }, String(value)));
}

function artifactLink(hash, text) { return h('a', { class: 'mono', href: route('artifacts', hash) }, text || String(hash).slice(0, 12)); }

function stepDetails(d) {
  const s = d.step;
  const params = Object.entries(s.params || {});
  const metrics = Object.entries(d.metrics || {});
  return h('div', { class: 'step-detail' },
    h('h2', { id: 'step-title' }, s.step_id), badge(s.status),
    facts([
      ['Attempts', s.attempts],
      ['Started', fmtTime(s.started_ms)],
      ['Finished', fmtTime(s.finished_ms)],
      ['Duration', fmtDuration(s.duration_ms)],
      ['Cache hit', s.cache_hit ? 'yes' : 'no'],
      ['Cache key', s.cache_key ? h('span', { class: 'mono wrap', title: s.cache_key }, s.cache_key) : '—'],
    ]),
    s.error ? [h('h3', {}, 'Error'), h('pre', { class: 'error-text' }, s.error)] : null,
    h('h3', {}, 'Parameters'),
    params.length ? facts(params.map(([k, v]) => [k, h('span', { class: 'mono' }, JSON.stringify(v))])) : h('p', { class: 'muted' }, 'none'),
    metrics.length ? [h('h3', {}, 'Metrics'), facts(metrics.map(([k, v]) => [k, String(v)]))] : null,
    h('h3', {}, 'Inputs'),
    d.inputs.length ? h('ul', { class: 'artifacts', id: 'step-inputs' }, d.inputs.map((i) => h('li', {},
      h('span', {}, `${i.name}: `), artifactLink(i.hash), i.artifact ? h('span', { class: 'muted' }, ` ${truncate(i.artifact.type_name, 48)}, ${fmtBytes(i.artifact.size)}`) : null)))
      : h('p', { class: 'muted' }, 'none'),
    h('h3', {}, 'Output'),
    d.output ? h('p', { id: 'step-output' }, artifactLink(d.output.hash), h('span', { class: 'muted' }, ` ${truncate(d.output.type_name, 48)}, ${fmtBytes(d.output.size)}`)) : h('p', { class: 'muted' }, 'none'),
    h('h3', {}, `Log (${d.logs.length} lines)`),
    d.logs.length ? h('pre', { class: 'log', id: 'step-log' }, d.logs.map((l) => `${fmtTime(l.at_ms)} ${l.level.padEnd(5)} ${l.message}\n`).join('')) : h('p', { class: 'muted' }, 'empty'));
}

// ---- pipelines ----

async function pipelinesView(view, mine) {
  const data = await api('/api/pipelines');
  view.append(h('h1', {}, 'Pipelines'),
    data.pipelines.length ? h('table', { class: 'list', id: 'pipelines-table' },
      h('thead', {}, h('tr', {}, ['Pipeline', 'About', 'Schedule', 'Steps', 'Runs', 'Latest runs (newest first)'].map(header))),
      h('tbody', {}, data.pipelines.map((p) => h('tr', {},
        h('td', {}, link(p.id, 'runs', { pipeline: p.id }), p.registered ? '' : h('span', { class: 'muted small' }, ' (not registered)')),
        h('td', {}, p.about || ''),
        h('td', { class: 'mono' }, p.schedule || '—'),
        h('td', { class: 'num' }, p.steps ?? '—'),
        h('td', { class: 'num' }, p.runs_total),
        h('td', {}, h('span', { class: 'dots' }, p.last_runs.map((r) => h('a', {
          href: route('runs', r.id), class: `dot status-${r.status}`, title: `${r.status}: ${r.runtime}, started ${fmtTime(r.started_ms)}`,
          'aria-label': `${r.status} run ${shortId(r.id)}`,
        })))))))) : h('p', { class: 'muted' }, 'No pipelines yet.'));
  mount(view, mine);
  document.body.dataset.ready = 'pipelines';
}

// ---- artifacts ----

async function artifactsView(view, query, mine) {
  const limit = 50;
  const offset = Math.max(0, parseInt(query.get('offset') || '0', 10) || 0);
  const page = await api(`/api/artifacts?limit=${limit}&offset=${offset}`);
  const last = offset + page.artifacts.length;
  view.append(h('h1', {}, 'Artifacts'),
    h('div', { class: 'pager' }, `${page.total ? offset + 1 : 0}–${last} of ${page.total} artifacts`,
      offset > 0 ? h('a', { href: route('artifacts', { offset: Math.max(0, offset - limit) }) }, '← newer') : null,
      last < page.total ? h('a', { href: route('artifacts', { offset: offset + limit }) }, 'older →') : null),
    h('table', { class: 'list', id: 'artifacts-table' },
      h('thead', {}, h('tr', {}, ['Hash', 'Type', 'Size', 'Created'].map(header))),
      h('tbody', {}, page.artifacts.map((a) => h('tr', {},
        h('td', {}, artifactLink(a.hash, a.hash.slice(0, 16))),
        h('td', { class: 'mono', title: a.type_name }, truncate(a.type_name, 70)),
        h('td', { class: 'num' }, fmtBytes(a.size)),
        h('td', {}, fmtTime(a.created_ms)))))));
  mount(view, mine);
  document.body.dataset.ready = 'artifacts';
}

function previewView(p) {
  if (p.kind === 'text') return [h('pre', { class: 'preview', id: 'preview' }, p.text), p.truncated ? h('p', { class: 'muted' }, 'truncated') : null];
  if (p.kind === 'json') return h('pre', { class: 'preview', id: 'preview' }, JSON.stringify(p.value, null, 2));
  if (p.kind === 'table') {
    const cell = (v) => (typeof v === 'string' ? v : JSON.stringify(v));
    return [h('div', { class: 'table-scroll' }, h('table', { class: 'list preview-table', id: 'preview' },
      h('thead', {}, h('tr', {}, p.columns.map((c) => h('th', {}, c)))),
      h('tbody', {}, p.rows.map((row) => h('tr', {}, row.map((v) => h('td', { class: typeof v === 'number' ? 'num' : '' }, cell(v)))))))),
    h('p', { class: 'muted' }, p.rows.length < p.total_rows ? `first ${p.rows.length} of ${p.total_rows} rows` : `${p.total_rows} rows`)];
  }
  return h('p', { class: 'muted', id: 'preview' }, `No preview: ${p.reason}`);
}

function stepRefList(refs, total) {
  if (!refs.length) return h('p', { class: 'muted' }, 'none');
  return [h('ul', { class: 'refs' }, refs.map((r) => h('li', {},
    h('a', { href: route('runs', r.run_id, { step: r.step_id }) }, `${r.pipeline_id}.${r.step_id}`),
    h('span', { class: 'muted mono' }, ` run ${shortId(r.run_id)}`)))),
  total > refs.length ? h('p', { class: 'muted' }, `… and ${total - refs.length} more`) : null];
}

async function artifactView(view, hash, mine) {
  const [d, lineage] = await Promise.all([
    api(`/api/artifacts/${encodeURIComponent(hash)}`),
    api(`/api/artifacts/${encodeURIComponent(hash)}/lineage`),
  ]);
  const a = d.artifact;
  const graphBox = h('div', { class: 'graph-box', id: 'lineage' });
  view.append(h('h1', {}, 'Artifact ', h('span', { class: 'mono', id: 'artifact-hash' }, a.hash.slice(0, 16))),
    facts([
      ['Hash', h('span', { class: 'mono wrap' }, a.hash)],
      ['Type', h('span', { class: 'mono wrap' }, a.type_name)],
      ['Size', fmtBytes(a.size)],
      ['URI', h('span', { class: 'mono wrap' }, a.uri)],
      ['Created', fmtTime(a.created_ms)],
    ]),
    h('h2', {}, 'Lineage'),
    h('p', { class: 'muted' }, `${lineage.upstream_steps} steps upstream, ${lineage.downstream_steps} downstream. Click a step to open its run, an artifact to open it.`),
    graphBox,
    h('div', { class: 'two-col' },
      h('section', {}, h('h2', {}, `Made by (${d.produced_count})`), stepRefList(d.produced_by, d.produced_count)),
      h('section', {}, h('h2', {}, `Read by (${d.read_count})`), stepRefList(d.read_by, d.read_count))),
    h('h2', {}, 'Preview'), h('div', { class: 'preview-box' }, previewView(d.preview)));
  if (!mount(view, mine)) return;
  drawGraph(graphBox, {
    id: 'lineage-svg', label: `lineage of ${a.hash}`, selected: `artifact:${a.hash}`,
    nodes: lineage.nodes.map((n) => n.kind === 'step'
      ? { id: n.id, label: n.label, sublabel: `run ${shortId(n.key)}`, cls: 'kind-step', title: `${n.label} in run ${n.key}`, data: n }
      : { id: n.id, label: n.key.slice(0, 16), sublabel: typeName(n.label), cls: `kind-artifact${n.key === a.hash ? ' focus' : ''}`, title: `${n.key} ${n.label}`, data: n }),
    edges: lineage.edges.map((e) => ({ from: e.from, to: e.to })),
    onSelect: (n) => {
      location.hash = n.data.kind === 'step' ? route('runs', n.data.key, { step: n.data.step_id }) : route('artifacts', n.data.key);
    },
  });
  document.body.dataset.ready = 'artifact';
}

/** `alloc::vec::Vec<(alloc::string::String, f64)>` -> `Vec<(String, f64)>`. */
function typeName(full) { return String(full || '').replace(/[a-z_][a-z0-9_]*::/g, ''); }

// ---- dataflows ----

async function dataflowsView(view, mine) {
  const data = await api('/api/dataflows');
  view.append(h('h1', {}, 'Dataflows'),
    data.dataflows.length ? h('table', { class: 'list', id: 'dataflows-table' },
      h('thead', {}, h('tr', {}, ['Dataflow', 'About', 'Steps'].map((t) => h('th', {}, t)))),
      h('tbody', {}, data.dataflows.map((f) => h('tr', {},
        h('td', {}, link(f.name, 'dataflows', f.name)),
        h('td', {}, f.about),
        h('td', { class: 'num' }, f.steps ?? h('span', { class: 'muted', title: f.error || '' }, 'needs parameters')))))) : h('p', { class: 'muted' }, 'No dataflows are registered.'));
  mount(view, mine);
  document.body.dataset.ready = 'dataflows';
}

async function dataflowView(view, name, mine) {
  const f = await api(`/api/dataflows/${encodeURIComponent(name)}`);
  const box = h('div', { class: 'graph-box', id: 'dataflow' });
  const side = h('aside', { class: 'side', id: 'dataflow-step' }, h('p', { class: 'muted' }, 'Click a step to see its kind, upstreams and outputs.'));
  view.append(h('h1', {}, 'Dataflow ', f.name), h('p', {}, f.about),
    f.description ? h('div', { class: 'split' }, h('section', { class: 'grow' }, box), side)
      : h('div', { class: 'error' }, `The graph could not be built without parameters: ${f.error || 'unknown reason'}`));
  if (!mount(view, mine) || !f.description) return;
  const steps = f.description.steps || [];
  drawGraph(box, {
    id: 'dataflow-svg', label: `dataflow ${f.name}`,
    nodes: steps.map((s) => ({ id: s.step_id, label: s.step_id, sublabel: s.kind, cls: `kind-${String(s.kind).replace(/[^a-z_]/g, '')}`, title: `${s.step_id} (${s.kind})`, data: s })),
    edges: steps.flatMap((s) => (s.upstreams || []).map((u) => ({ from: u.step_id, to: s.step_id }))),
    onSelect: (n) => {
      clear(side).append(h('h2', {}, n.data.step_id), facts([
        ['Kind', n.data.kind],
        ['Upstreams', (n.data.upstreams || []).map((u) => `${u.step_id}.${u.port}`).join(', ') || 'none'],
        ['Outputs', (n.data.outputs || []).join(', ') || 'none'],
      ]));
    },
  });
  document.body.dataset.ready = 'dataflow';
}

// ---- flows ----

async function flowsView(view, query, mine) {
  const flow = query.get('flow') || '';
  const data = await api(`/api/flows${flow ? `?flow=${encodeURIComponent(flow)}` : ''}`);
  view.append(h('h1', {}, 'Flows', flow ? ` · ${flow}` : ''),
    h('p', { class: 'muted' }, 'Runs of Flows (riffle flow run), newest first. A run records each processor every second while it goes.'),
    data.runs.length ? h('table', { class: 'list', id: 'flows-table' },
      h('thead', {}, h('tr', {}, ['Run', 'Flow', 'Status', 'Started', 'Duration', 'Host', 'Address', 'Error'].map(header))),
      h('tbody', {}, data.runs.map((r) => h('tr', { 'data-flow-run-id': r.id },
        h('td', { class: 'mono' }, link(shortId(r.id), 'flows', r.id)),
        h('td', {}, link(r.flow, 'flows', { flow: r.flow })),
        h('td', {}, badge(r.status)),
        h('td', {}, fmtTime(r.started_ms)),
        h('td', { class: 'num' }, fmtDuration(r.duration_ms)),
        h('td', {}, r.host),
        h('td', { class: 'mono' }, r.addr),
        h('td', { class: 'error-cell', title: r.error || '' }, r.error ? truncate(r.error, 60) : '')))))
      : h('p', { class: 'muted', id: 'flows-empty' }, flow ? 'No runs of this flow.' : 'No flow runs yet. Start one from the project folder with: flow run NAME (flow list names them).'));
  if (!mount(view, mine)) return;
  document.body.dataset.ready = 'flows';
  if (data.runs.some((r) => r.status === 'running')) {
    setLive(true);
    pollTimer = setTimeout(() => { if (mine === generation) render(); }, 3000);
  }
}

function fmtMs(ms) { return ms === null || ms === undefined ? '—' : `${ms < 10 ? ms.toFixed(2) : ms.toFixed(1)} ms`; }

function flowProcessor(p, run) {
  const s = p.series;
  const t0 = run.started_ms;
  const t1 = Math.max(t0 + 1000, run.ended_ms ?? (run.status === 'running' ? Date.now() : run.last_sample_ms ?? t0), ...s.at_ms);
  const slug = `${p.id}`.replace(/[^A-Za-z0-9_-]/g, '_');
  const knownBacklog = s.backlog.some((v) => v !== null);
  return h('section', { class: 'flow-processor', 'data-processor': p.id },
    h('h2', {}, p.id, ' ', h('span', { class: 'muted small' }, p.kind)),
    h('div', { class: 'charts' },
      h('figure', {}, h('figcaption', {}, `Replicas (now ${p.replicas})`),
        lineChart({ id: `chart-replicas-${slug}`, label: `replicas of ${p.id} over time`, cls: 'replicas', times: s.at_ms, values: s.replicas, t0, t1, integer: true })),
      h('figure', {}, h('figcaption', {}, knownBacklog ? `Backlog (now ${p.backlog ?? 'not known'})` : 'Backlog (its source cannot say)'),
        lineChart({ id: `chart-backlog-${slug}`, label: `backlog of ${p.id} over time`, cls: 'backlog', times: s.at_ms, values: s.backlog, t0, t1, integer: true }))));
}

async function flowView(view, runId, mine) {
  const head = h('div', {});
  const body = h('div', {});
  view.append(head, body);
  const refresh = async (first) => {
    const d = await api(`/api/flows/${encodeURIComponent(runId)}`);
    if (mine !== generation) return;
    const r = d.run;
    appendAll(clear(head), [
      h('h1', {}, 'Flow run ', h('span', { class: 'mono', id: 'flow-run-id' }, shortId(r.id)), ' of ', link(r.flow, 'flows', { flow: r.flow }), ' ', h('span', { id: 'flow-run-status' }, badge(r.status))),
      h('div', { class: 'cards' },
        card('Started', fmtTime(r.started_ms)), card('Duration', fmtDuration(r.duration_ms)),
        card('Processors', d.processors.length), card('Host', r.host || '—'), card('Address', r.addr)),
      r.error ? h('pre', { class: 'error-text', id: 'flow-run-error' }, r.error) : null,
      r.status === 'lost' ? h('p', { class: 'muted' }, 'Its samples stopped without an end being recorded: the process was killed or lost its store.') : null]);
    appendAll(clear(body), [
      d.processors.length ? h('table', { class: 'list', id: 'flow-processors' },
        h('thead', {}, h('tr', {}, ['Processor', 'Kind', 'Replicas', 'Backlog', 'In', 'Out', 'Errors', 'Dead letters', 'In flight', 'p50', 'p99'].map((t) => h('th', { class: t === 'Processor' || t === 'Kind' ? null : 'num' }, t)))),
        h('tbody', {}, d.processors.map((p) => h('tr', { 'data-processor': p.id },
          h('td', {}, p.id), h('td', {}, p.kind),
          ...[p.replicas, p.backlog ?? '—', p.items_in, p.items_out, p.errors, p.dead_letters, p.in_flight].map((v) => h('td', { class: 'num' }, v)),
          h('td', { class: 'num' }, fmtMs(p.latency_p50_ms)), h('td', { class: 'num' }, fmtMs(p.latency_p99_ms))))))
        : h('p', { class: 'muted', id: 'flow-no-samples' }, 'No samples yet.'),
      d.thinned ? h('p', { class: 'muted small' }, 'A long run: the charts show evenly spaced samples.') : null,
      d.processors.map((p) => flowProcessor(p, r))]);
    if (first && !mount(view, mine)) return;
    const going = r.status === 'running';
    setLive(going);
    document.body.dataset.ready = `flow:${r.status}`;
    if (going) pollTimer = setTimeout(() => { if (mine === generation) refresh(false).catch((e) => head.append(showError(e))); }, 1000);
  };
  await refresh(true);
}

window.addEventListener('hashchange', render);
api('/api/info').then((info) => {
  document.getElementById('app-name').textContent = `${info.name} · Riffle`;
  document.title = `${info.name} · Riffle dashboard`;
}).catch(() => {});
render();
