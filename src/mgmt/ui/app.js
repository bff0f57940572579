// Warren management UI: plain JavaScript, no build step, no dependencies.
// It talks only to the RabbitMQ-compatible management API under api/ on the
// same origin, with HTTP basic auth.  All API data is rendered as text nodes
// (never innerHTML).
'use strict';

const REFRESH_MS = 5000;
const TRACE_POLL_MS = 2000;
const TRACE_MAX_ROWS = 500;

// ---------------------------------------------------------------- helpers

// h('tag', {attr: value, onclick: fn}, child, ...) builds an element.
// Children that are not nodes become text nodes, so API data is never parsed
// as HTML.
function h(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'value') e.value = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    e.append(kid instanceof Node ? kid : String(kid));
  }
  return e;
}

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;
const num = (n) => (typeof n === 'number' ? String(n) : '');
const yesno = (b) => (b ? 'yes' : 'no');
const json = (v) => JSON.stringify(v === undefined ? null : v);
const kebab = (s) => String(s).replace(/[^A-Za-z0-9_.-]/g, '_');

// message_stats.<key>_details.rate, formatted as "1.2/s" ("" when absent)
function rate(obj, key) {
  const d = obj && obj.message_stats && obj.message_stats[key + '_details'];
  return d && typeof d.rate === 'number' ? d.rate.toFixed(1) + '/s' : '';
}

// ---------------------------------------------------------------- charts

// The last CHART_SPAN_MS of samples of each chart, kept while the page is open (the
// overview's and each queue's), one sample per refresh.
const CHART_SPAN_MS = 10 * 60 * 1000;
const chartHistory = new Map();

// Adds a sample ({name: value}) to the history `key` and returns the history.
function remember(key, values) {
  const now = Date.now();
  const hist = chartHistory.get(key) || [];
  hist.push({ t: now, v: values });
  while (hist.length && hist[0].t < now - CHART_SPAN_MS) hist.shift();
  chartHistory.set(key, hist);
  return hist;
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...kids) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const kid of kids) e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  return e;
}

const CHART_COLOURS = ['#2f6fdf', '#e07b1f', '#2a9d55', '#b03a9a'];

// A line chart of `series` ([name, label]) over the samples in `hist` (as far back as they
// go: one minute at least, ten at most), with the latest value of each series in the legend.
function lineChart(testid, hist, series, unit) {
  const W = 560; const H = 140; const L = 48; const B = 18;
  const now = Date.now();
  const minutes = Math.min(10, Math.max(1, Math.ceil((now - (hist.length ? hist[0].t : now)) / 60000)));
  const span = minutes * 60000;
  const max = Math.max(1, ...hist.flatMap((s) => series.map(([k]) => s.v[k] || 0)));
  const x = (t) => L + ((t - (now - span)) / span) * (W - L - 4);
  const y = (v) => H - B - (v / max) * (H - B - 8);
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'data-testid': testid, id: testid });
  chart.append(
    svg('line', { x1: L, y1: H - B, x2: W - 4, y2: H - B, class: 'axis' }),
    svg('text', { x: L - 4, y: 12, class: 'tick', 'text-anchor': 'end' }, fmtNum(max)),
    svg('text', { x: L - 4, y: H - B, class: 'tick', 'text-anchor': 'end' }, '0'),
    svg('text', { x: L, y: H - 2, class: 'tick' }, `-${minutes} min`),
    svg('text', { x: W - 4, y: H - 2, class: 'tick', 'text-anchor': 'end' }, 'now'));
  series.forEach(([k], i) => {
    const pts = hist.map((s) => `${x(s.t).toFixed(1)},${y(s.v[k] || 0).toFixed(1)}`).join(' ');
    if (hist.length > 1) chart.append(svg('polyline', { points: pts, fill: 'none', stroke: CHART_COLOURS[i], 'stroke-width': 2 }));
  });
  const last = hist.length ? hist[hist.length - 1].v : {};
  const legend = h('div', { class: 'legend' }, series.map(([k, label], i) =>
    h('span', { class: 'legend-item' },
      svg('svg', { width: 10, height: 10, class: 'swatch' }, svg('rect', { width: 10, height: 10, rx: 2, fill: CHART_COLOURS[i] })),
      `${label} ${fmtNum(last[k] || 0)}${unit}`)));
  return h('div', { class: 'chart-box' }, chart, legend);
}

function fmtNum(n) {
  return n >= 100 || Number.isInteger(n) ? String(Math.round(n)) : n.toFixed(1);
}

// message_stats.<key>_details.rate as a number (0 when absent).
function rateOf(obj, key) {
  const d = obj && obj.message_stats && obj.message_stats[key + '_details'];
  return d && typeof d.rate === 'number' ? d.rate : 0;
}

function parseJsonObject(text, what) {
  if (!text.trim()) return {};
  let v;
  try { v = JSON.parse(text); } catch (e) { throw new Error(what + ' is not valid JSON: ' + e.message); }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(what + ' must be a JSON object');
  return v;
}

function flash(msg, kind) {
  const f = $('flash');
  f.textContent = msg;
  f.className = kind || 'ok';
  f.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { f.hidden = true; }, kind === 'error' ? 10000 : 4000);
}

// ---------------------------------------------------------------- auth + API

const AUTH_KEY = 'warren.auth';
const auth = {
  get: () => sessionStorage.getItem(AUTH_KEY),
  set(user, pass) {
    const bytes = new TextEncoder().encode(user + ':' + pass);
    let bin = '';
    for (const b of bytes) bin += String.fromCharCode(b);
    sessionStorage.setItem(AUTH_KEY, btoa(bin));
    sessionStorage.setItem(AUTH_KEY + '.user', user);
  },
  user: () => sessionStorage.getItem(AUTH_KEY + '.user') || '',
  clear() { sessionStorage.removeItem(AUTH_KEY); sessionStorage.removeItem(AUTH_KEY + '.user'); },
};

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// api('GET', '/queues') -> parsed JSON (or null for empty bodies).
// credentials: 'omit' keeps the browser from showing its own basic-auth
// prompt on a 401; the Authorization header is still sent.
async function api(method, path, body, extraHeaders) {
  const headers = Object.assign({ Authorization: 'Basic ' + (auth.get() || '') }, extraHeaders || {});
  const init = { method, headers, credentials: 'omit', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch('api' + path, init);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!r.ok) {
    const reason = (data && (data.reason || data.error)) || r.statusText || 'HTTP ' + r.status;
    throw new ApiError(r.status, reason);
  }
  return data;
}

// Runs an async action; API errors become a flash message, a 401 logs out.
async function attempt(fn, okMsg) {
  try {
    const r = await fn();
    if (okMsg) flash(typeof okMsg === 'function' ? okMsg(r) : okMsg, 'ok');
    return r;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      auth.clear();
      loginError = 'Not authorised: ' + e.message;
      location.hash = '#/login';
    } else {
      flash(e.message || String(e), 'error');
    }
    return undefined;
  }
}

// ---------------------------------------------------------------- widgets

function section(title, ...kids) {
  return h('section', { class: 'card' }, h('h2', {}, title), kids);
}

// cols: [{key, label, get(row) -> string|Node, num}]
function dataTable(testid, cols, rows, rowAttrs, empty) {
  if (!rows || rows.length === 0) {
    return h('p', { class: 'muted', 'data-testid': testid + '-empty' }, empty || 'Nothing to show.');
  }
  return h('table', { class: 'data', 'data-testid': testid, id: testid },
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { class: c.num ? 'num' : null }, c.label)))),
    h('tbody', {}, rows.map((r) => h('tr', rowAttrs ? rowAttrs(r) : {},
      cols.map((c) => h('td', { class: c.num ? 'num' : null, 'data-col': c.key }, c.get(r)))))));
}

// key/value list: rows [label, value, testid?]; rows with undefined value are skipped
function kv(rows) {
  return h('dl', { class: 'kv' }, rows.filter((r) => r[1] !== undefined && r[1] !== null && r[1] !== '')
    .map(([k, v, id]) => [h('dt', {}, k), h('dd', { 'data-testid': id || null, id: id || null }, v)]));
}

function argsTable(testid, args) {
  const rows = Object.entries(args || {});
  return dataTable(testid, [
    { key: 'key', label: 'Argument', get: (r) => r[0] },
    { key: 'value', label: 'Value', get: (r) => (typeof r[1] === 'string' ? r[1] : json(r[1])) },
  ], rows, null, 'No arguments.');
}

function tile(label, value, testid) {
  return h('div', { class: 'tile' }, h('div', { class: 'tile-value', 'data-testid': testid, id: testid }, value),
    h('div', { class: 'tile-label' }, label));
}

function field(label, input, cls) {
  return h('label', { class: 'field' + (cls ? ' ' + cls : '') }, h('span', {}, label), input);
}

function input(id, attrs) { return h('input', Object.assign({ id, name: id, 'data-testid': id }, attrs || {})); }
function textarea(id, attrs) { return h('textarea', Object.assign({ id, name: id, 'data-testid': id, rows: 3 }, attrs || {})); }

function select(id, options, value) {
  const s = h('select', { id, name: id, 'data-testid': id });
  fillSelect(s, options, value);
  return s;
}

// options: [value] or [[value, label]]; keeps the current choice when possible
function fillSelect(sel, options, value) {
  const current = value !== undefined ? value : sel.value;
  sel.replaceChildren(...options.map((o) => {
    const [v, l] = Array.isArray(o) ? o : [o, o];
    return h('option', { value: v }, l);
  }));
  if (options.some((o) => (Array.isArray(o) ? o[0] : o) === current)) sel.value = current;
}

// A vhost <select> filled from GET /api/vhosts.
function vhostSelect(id) {
  const s = select(id, ['/']);
  attempt(async () => fillSelect(s, (await api('GET', '/vhosts')).map((v) => v.name)));
  return s;
}

// A form whose submit handler is an async action; the button is disabled meanwhile.
function form(id, title, fields, submitLabel, onSubmit) {
  const button = h('button', { type: 'submit', id: id + '-submit', 'data-testid': id + '-submit' }, submitLabel);
  const f = h('form', { id, 'data-testid': id, class: 'form' }, title ? h('h3', {}, title) : null,
    h('div', { class: 'fields' }, fields), h('div', { class: 'actions' }, button));
  f.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    button.disabled = true;
    try { await onSubmit(); } finally { button.disabled = false; }
  });
  return f;
}

function button(id, label, onClick, cls) {
  return h('button', { type: 'button', id, 'data-testid': id, class: cls || null, onclick: onClick }, label);
}

function features(o) {
  const f = [];
  if (o.durable) f.push('D');
  if (o.auto_delete) f.push('AD');
  if (o.exclusive) f.push('Excl');
  if (o.internal) f.push('I');
  for (const k of Object.keys(o.arguments || {})) if (k !== 'x-queue-type') f.push(k);
  if (o.policy) f.push('policy: ' + o.policy);
  if (!f.length) return '';
  return h('span', { class: 'features', title: 'D = durable, AD = auto-delete, I = internal' }, f.join(' '));
}

// ---------------------------------------------------------------- publish / get

function publishForm(vhost, exchange, fixedKey) {
  const key = input('publish-routing-key', { value: fixedKey || '', placeholder: 'routing key' });
  if (fixedKey !== undefined) key.readOnly = true;
  const mode = select('publish-delivery-mode', [['1', '1 - non-persistent'], ['2', '2 - persistent']]);
  const headers = textarea('publish-headers', { placeholder: '{"x-my-header": "value"}', rows: 2 });
  const props = textarea('publish-properties', { placeholder: '{"content_type": "text/plain"}', rows: 2 });
  const payload = textarea('publish-payload', { rows: 4 });
  const encoding = select('publish-encoding', ['string', 'base64']);
  const result = h('p', { id: 'publish-result', 'data-testid': 'publish-result', class: 'result' });
  const f = form('publish', null, [
    field('Routing key', key), field('Delivery mode', mode), field('Headers (JSON)', headers),
    field('Properties (JSON)', props), field('Payload encoding', encoding), field('Payload', payload, 'wide'),
  ], 'Publish message', () => attempt(async () => {
    const properties = parseJsonObject(props.value, 'Properties');
    properties.delivery_mode = Number(mode.value);
    const hdrs = parseJsonObject(headers.value, 'Headers');
    if (Object.keys(hdrs).length) properties.headers = hdrs;
    const r = await api('POST', `/exchanges/${enc(vhost)}/${enc(exchange || 'amq.default')}/publish`, {
      properties, routing_key: key.value, payload: payload.value, payload_encoding: encoding.value,
    });
    result.textContent = r && r.routed ? 'Message published.' : 'Message published, but not routed.';
  }));
  f.append(result);
  return f;
}

function getForm(vhost, queue, onDone) {
  const ackmode = select('get-ackmode', [
    ['ack_requeue_true', 'Nack message, requeue true'], ['reject_requeue_true', 'Reject, requeue true'],
    ['ack_requeue_false', 'Automatic ack'], ['reject_requeue_false', 'Reject, requeue false'],
  ]);
  const encoding = select('get-encoding', [['auto', 'Auto string / base64'], ['base64', 'base64']]);
  const count = input('get-count', { type: 'number', min: 1, value: '1' });
  const results = h('div', { id: 'get-results', 'data-testid': 'get-results' });
  const f = form('get', null, [
    field('Ack mode', ackmode), field('Encoding', encoding), field('Messages', count),
  ], 'Get message(s)', () => attempt(async () => {
    const msgs = await api('POST', `/queues/${enc(vhost)}/${enc(queue)}/get`, {
      count: Number(count.value) || 1, ackmode: ackmode.value, encoding: encoding.value, truncate: 50000,
    });
    results.replaceChildren(...(msgs.length ? msgs.map((m, i) => renderMessage(m, i + 1))
      : [h('p', { class: 'muted', 'data-testid': 'get-empty' }, 'Queue is empty.')]));
    if (onDone) onDone();
  }));
  f.append(results);
  return f;
}

function renderMessage(m, n) {
  return h('div', { class: 'message', 'data-testid': 'get-message' },
    h('h4', {}, 'Message ' + n),
    kv([
      ['Exchange', m.exchange === '' ? '(AMQP default)' : m.exchange],
      ['Routing key', m.routing_key],
      ['Redelivered', yesno(m.redelivered)],
      ['Messages left', num(m.message_count)],
      ['Properties', json(m.properties)],
      ['Payload', num(m.payload_bytes) + ' bytes, encoding: ' + m.payload_encoding],
    ]),
    h('pre', { class: 'payload', 'data-testid': 'get-payload' }, m.payload));
}

// ---------------------------------------------------------------- pages

let loginError = '';

function pageLogin(main) {
  $('topbar').hidden = true;
  $('flash').hidden = true;
  const user = input('login-username', { autocomplete: 'username', value: auth.user() || '' });
  const pass = input('login-password', { type: 'password', autocomplete: 'current-password' });
  const err = h('p', { id: 'login-error', 'data-testid': 'login-error', class: 'error', hidden: !loginError }, loginError);
  loginError = '';
  const f = form('login', null, [field('Username', user), field('Password', pass)], 'Log in', async () => {
    auth.set(user.value, pass.value);
    try {
      await api('GET', '/whoami');
      location.hash = '#/';
    } catch (e) {
      auth.clear();
      err.textContent = e.status !== 401 ? 'Cannot reach the API: ' + e.message
        : /login failed/i.test(e.message) ? 'Login failed.' : 'Login failed: ' + e.message;
      err.hidden = false;
    }
  });
  main.append(h('div', { class: 'login card' }, h('h1', {}, 'Warren management'), f, err));
  user.focus();
}

function pageOverview(main) {
  const slot = h('div');
  main.append(h('h1', {}, 'Overview'), slot);
  return async () => {
    const o = await api('GET', '/overview');
    const nodes = await api('GET', '/nodes');
    const t = o.object_totals || {};
    const q = o.queue_totals || {};
    const hist = remember('overview', {
      ready: q.messages_ready || 0, unacked: q.messages_unacknowledged || 0,
      publish: rateOf(o, 'publish'), deliver: rateOf(o, 'deliver_get'), ack: rateOf(o, 'ack'),
    });
    slot.replaceChildren(
      section('Node', kv([
        ['Node', o.node, 'overview-node'], ['Cluster', o.cluster_name, 'overview-cluster'],
        ['Product', [o.product_name, o.product_version].filter(Boolean).join(' '), 'overview-product'],
        ['RabbitMQ version', o.rabbitmq_version, 'overview-rabbitmq-version'],
        ['Management version', o.management_version], ['Erlang', o.erlang_version],
      ])),
      section('Nodes', dataTable('nodes-table', nodeCols, nodes, (n) => ({ class: n.running ? null : 'down' }))),
      section('Totals', h('div', { class: 'tiles' },
        ['connections', 'channels', 'exchanges', 'queues', 'consumers'].map((k) =>
          tile(k[0].toUpperCase() + k.slice(1), num(t[k] || 0), 'total-' + k)))),
      section('Queued messages', h('div', { class: 'tiles' },
        tile('Ready', num(q.messages_ready || 0), 'queued-ready'),
        tile('Unacked', num(q.messages_unacknowledged || 0), 'queued-unacked'),
        tile('Total', num(q.messages || 0), 'queued-total'))),
      section('Message rates', h('div', { class: 'tiles' },
        tile('Publish', rate(o, 'publish') || '0.0/s', 'rate-publish'),
        tile('Deliver / get', rate(o, 'deliver_get') || '0.0/s', 'rate-deliver'),
        tile('Consumer ack', rate(o, 'ack') || '0.0/s', 'rate-ack'))),
      section('Recent', h('div', { class: 'two' },
        lineChart('chart-queued', hist, [['ready', 'Ready'], ['unacked', 'Unacked']], ''),
        lineChart('chart-rates', hist, [['publish', 'Publish'], ['deliver', 'Deliver / get'], ['ack', 'Ack']], '/s'))),
    );
  };
}

const mib = (n) => (typeof n === 'number' ? `${(n / 1048576).toFixed(0)} MiB` : '');
const ago = (ms) => (typeof ms === 'number' ? `${Math.floor(ms / 3600000)}h ${Math.floor(ms / 60000) % 60}m ${Math.floor(ms / 1000) % 60}s` : '');
const nodeCols = [
  { key: 'name', label: 'Name', get: (n) => n.name },
  { key: 'running', label: 'State', get: (n) => (!n.running ? 'down' : n.being_drained ? 'maintenance' : 'running') },
  { key: 'uptime', label: 'Uptime', get: (n) => ago(n.uptime) },
  { key: 'memory', label: 'Memory', num: true, get: (n) => mib(n.mem_used) },
  { key: 'disk', label: 'Disk free', num: true, get: (n) => mib(n.disk_free) },
  { key: 'alarms', label: 'Alarms', get: (n) => [n.mem_alarm && 'memory', n.disk_free_alarm && 'disk'].filter(Boolean).join(', ') },
  { key: 'leaders', label: 'Quorum leaders', num: true, get: (n) => num(n.quorum_leaders) },
];

const queueCols = [
  { key: 'vhost', label: 'Virtual host', get: (q) => q.vhost },
  { key: 'name', label: 'Name', get: (q) => h('a', { href: `#/queues/${enc(q.vhost)}/${enc(q.name)}` }, q.name) },
  { key: 'type', label: 'Type', get: (q) => q.type || '' },
  { key: 'node', label: 'Node', get: queueNode },
  { key: 'features', label: 'Features', get: features },
  { key: 'state', label: 'State', get: (q) => q.state || '' },
  { key: 'ready', label: 'Ready', num: true, get: (q) => num(q.messages_ready) },
  { key: 'unacked', label: 'Unacked', num: true, get: (q) => num(q.messages_unacknowledged) },
  { key: 'messages', label: 'Total', num: true, get: (q) => num(q.messages) },
  { key: 'consumers', label: 'Consumers', num: true, get: (q) => num(q.consumers) },
  { key: 'rate-publish', label: 'Incoming', num: true, get: (q) => rate(q, 'publish') },
  { key: 'rate-deliver', label: 'Deliver / get', num: true, get: (q) => rate(q, 'deliver_get') },
  { key: 'rate-ack', label: 'Ack', num: true, get: (q) => rate(q, 'ack') },
];

// A replicated queue's node as RabbitMQ's UI shows it: its leader, then "+N" for the other
// members online and "-N" (in red) for those that are not.
function queueNode(q) {
  const leader = q.leader || q.node || '';
  if (!Array.isArray(q.members)) return leader;
  const online = new Set(q.online || []);
  const others = q.members.filter((m) => m !== leader);
  const up = others.filter((m) => online.has(m)).length;
  const down = others.length - up;
  return h('span', { title: `members: ${q.members.join(', ')}` }, leader,
    up ? h('span', { class: 'members-up', 'data-testid': 'members-up' }, ` +${up}`) : '',
    down ? h('span', { class: 'members-down', 'data-testid': 'members-down' }, ` -${down}`) : '');
}

function pageQueues(main) {
  const slot = h('div', { id: 'queues-slot' });
  const vhost = vhostSelect('queue-vhost');
  const name = input('queue-name-input', { required: true });
  const type = select('queue-type', ['classic', 'quorum']);
  const durable = select('queue-durable', [['true', 'Durable'], ['false', 'Transient']]);
  const autoDelete = select('queue-auto-delete', [['false', 'No'], ['true', 'Yes']]);
  const args = textarea('queue-arguments', { placeholder: '{"x-max-length": 1000}', rows: 2 });
  const add = form('add-queue', null, [
    field('Virtual host', vhost), field('Name', name), field('Type', type), field('Durability', durable),
    field('Auto delete', autoDelete), field('Arguments (JSON)', args),
  ], 'Add queue', () => attempt(async () => {
    const a = parseJsonObject(args.value, 'Arguments');
    if (type.value !== 'classic') a['x-queue-type'] = type.value;
    await api('PUT', `/queues/${enc(vhost.value)}/${enc(name.value)}`, {
      durable: durable.value === 'true', auto_delete: autoDelete.value === 'true', arguments: a,
    });
    name.value = '';
    await refresh();
  }, 'Queue declared.'));
  main.append(h('h1', {}, 'Queues'), section('All queues', slot), section('Add a queue', add));
  const refresh = async () => {
    const qs = await api('GET', '/queues');
    slot.replaceChildren(dataTable('queues-table', queueCols, qs,
      (q) => ({ 'data-testid': 'queue-row-' + q.name, 'data-name': q.name, 'data-vhost': q.vhost }), 'No queues.'));
  };
  return refresh;
}

function bindingsTable(testid, vhost, bindings, refresh, showSource) {
  return dataTable(testid, [
    showSource ? { key: 'source', label: 'From exchange', get: (b) => (b.source === '' ? '(AMQP default)' : b.source) }
      : { key: 'destination', label: 'To', get: (b) => `${b.destination} (${b.destination_type})` },
    { key: 'routing_key', label: 'Routing key', get: (b) => b.routing_key },
    { key: 'arguments', label: 'Arguments', get: (b) => (Object.keys(b.arguments || {}).length ? json(b.arguments) : '') },
    { key: 'actions', label: '', get: (b) => (b.source === '' ? '' : h('button', {
      type: 'button', class: 'small', 'data-testid': 'unbind',
      onclick: () => attempt(async () => {
        const d = b.destination_type === 'exchange' ? 'e' : 'q';
        await api('DELETE', `/bindings/${enc(vhost)}/e/${enc(b.source)}/${d}/${enc(b.destination)}/${enc(b.properties_key)}`);
        await refresh();
      }, 'Binding removed.'),
    }, 'Unbind')) },
  ], bindings, (b) => ({ 'data-testid': 'binding-row' }), 'No bindings.');
}

function pageQueue(main, vhost, name) {
  const base = `/queues/${enc(vhost)}/${enc(name)}`;
  const info = h('div'); const args = h('div'); const consumers = h('div'); const bindings = h('div'); const charts = h('div');
  const purge = button('queue-purge', 'Purge messages', () => {
    if (!confirm(`Purge all messages from queue "${name}"?`)) return;
    attempt(async () => { await api('DELETE', base + '/contents'); await refresh(); }, 'Queue purged.');
  });
  const del = button('queue-delete', 'Delete queue', () => {
    if (!confirm(`Delete queue "${name}"?`)) return;
    attempt(async () => { await api('DELETE', base); location.hash = '#/queues'; }, 'Queue deleted.');
  }, 'danger');
  main.append(
    h('h1', {}, 'Queue ', h('span', { id: 'queue-name', 'data-testid': 'queue-name' }, name),
      h('small', { class: 'muted' }, ' in virtual host ' + vhost)),
    h('div', { class: 'toolbar' }, purge, del),
    section('Details', info), section('Recent', charts), section('Arguments', args),
    section('Consumers', consumers),
    section('Bindings', bindings),
    h('div', { class: 'two' }, section('Publish message', publishForm(vhost, '', name)),
      section('Get messages', getForm(vhost, name, () => refresh()))),
  );
  const refresh = async () => {
    let q; let b;
    try {
      [q, b] = await Promise.all([api('GET', base), api('GET', base + '/bindings')]);
    } catch (e) {
      if (e.status === 404) { info.replaceChildren(h('p', { class: 'error' }, 'Queue not found.')); return; }
      throw e;
    }
    info.replaceChildren(kv([
      ['Type', q.type], ['State', q.state, 'queue-state'], ['Features', features(q)], ['Node', q.node],
      ...(Array.isArray(q.members) ? [
        ['Leader', q.leader || '', 'queue-leader'], ['Members', q.members.join(', '), 'queue-members'],
        ['Online', (q.online || []).join(', '), 'queue-online'],
      ] : []),
      ['Policy', q.policy || ''], ['Ready', num(q.messages_ready), 'queue-ready'],
      ['Unacked', num(q.messages_unacknowledged), 'queue-unacked'], ['Total', num(q.messages), 'queue-messages'],
      ['Consumers', num(q.consumers)], ['Incoming', rate(q, 'publish')],
      ['Deliver / get', rate(q, 'deliver_get')], ['Ack', rate(q, 'ack')],
    ]));
    const hist = remember('queue ' + vhost + ' ' + name, {
      ready: q.messages_ready || 0, unacked: q.messages_unacknowledged || 0,
      publish: rateOf(q, 'publish'), deliver: rateOf(q, 'deliver_get'), ack: rateOf(q, 'ack'),
    });
    charts.replaceChildren(h('div', { class: 'two' },
      lineChart('queue-chart-queued', hist, [['ready', 'Ready'], ['unacked', 'Unacked']], ''),
      lineChart('queue-chart-rates', hist, [['publish', 'Incoming'], ['deliver', 'Deliver / get'], ['ack', 'Ack']], '/s')));
    args.replaceChildren(argsTable('queue-arguments-table', q.arguments));
    consumers.replaceChildren(dataTable('queue-consumers-table', [
      { key: 'tag', label: 'Consumer tag', get: (c) => c.consumer_tag },
      { key: 'channel', label: 'Channel', get: (c) => (c.channel_details && c.channel_details.name) || '' },
      { key: 'ack', label: 'Ack required', get: (c) => yesno(c.ack_required) },
      { key: 'exclusive', label: 'Exclusive', get: (c) => yesno(c.exclusive) },
      { key: 'prefetch', label: 'Prefetch', num: true, get: (c) => num(c.prefetch_count) },
      { key: 'active', label: 'Active', get: (c) => (c.active === undefined ? '' : yesno(c.active)) },
    ], q.consumer_details, null, 'No consumers.'));
    bindings.replaceChildren(bindingsTable('queue-bindings-table', vhost, b, refresh, true));
  };
  return refresh;
}

const exchangeCols = [
  { key: 'vhost', label: 'Virtual host', get: (x) => x.vhost },
  { key: 'name', label: 'Name', get: (x) => h('a', { href: `#/exchanges/${enc(x.vhost)}/${enc(x.name || 'amq.default')}` },
    x.name === '' ? '(AMQP default)' : x.name) },
  { key: 'type', label: 'Type', get: (x) => x.type },
  { key: 'features', label: 'Features', get: features },
  { key: 'rate-in', label: 'Rate in', num: true, get: (x) => rate(x, 'publish_in') },
  { key: 'rate-out', label: 'Rate out', num: true, get: (x) => rate(x, 'publish_out') },
];

const EXCHANGE_TYPES = ['direct', 'fanout', 'topic', 'headers'];

function pageExchanges(main) {
  const slot = h('div');
  const vhost = vhostSelect('exchange-vhost');
  const name = input('exchange-name-input', { required: true });
  const type = select('exchange-type', EXCHANGE_TYPES);
  attempt(async () => {
    const types = ((await api('GET', '/overview')).exchange_types || []).map((t) => t.name);
    if (types.length) fillSelect(type, types);
  });
  const durable = select('exchange-durable', [['true', 'Durable'], ['false', 'Transient']]);
  const autoDelete = select('exchange-auto-delete', [['false', 'No'], ['true', 'Yes']]);
  const internal = select('exchange-internal', [['false', 'No'], ['true', 'Yes']]);
  const args = textarea('exchange-arguments', { placeholder: '{"alternate-exchange": "my-ae"}', rows: 2 });
  const add = form('add-exchange', null, [
    field('Virtual host', vhost), field('Name', name), field('Type', type), field('Durability', durable),
    field('Auto delete', autoDelete), field('Internal', internal), field('Arguments (JSON)', args),
  ], 'Add exchange', () => attempt(async () => {
    await api('PUT', `/exchanges/${enc(vhost.value)}/${enc(name.value)}`, {
      type: type.value, durable: durable.value === 'true', auto_delete: autoDelete.value === 'true',
      internal: internal.value === 'true', arguments: parseJsonObject(args.value, 'Arguments'),
    });
    name.value = '';
    await refresh();
  }, 'Exchange declared.'));
  main.append(h('h1', {}, 'Exchanges'), section('All exchanges', slot), section('Add an exchange', add));
  const refresh = async () => {
    const xs = await api('GET', '/exchanges');
    slot.replaceChildren(dataTable('exchanges-table', exchangeCols, xs,
      (x) => ({ 'data-testid': 'exchange-row-' + x.name, 'data-name': x.name, 'data-vhost': x.vhost })));
  };
  return refresh;
}

function pageExchange(main, vhost, name) {
  const isDefault = name === 'amq.default' || name === '';
  const base = `/exchanges/${enc(vhost)}/${enc(name)}`;
  const info = h('div'); const args = h('div'); const bindings = h('div');
  const destType = select('binding-destination-type', [['q', 'To queue'], ['e', 'To exchange']]);
  const dest = input('binding-destination', { required: true });
  const key = input('binding-routing-key');
  const bargs = textarea('binding-arguments', { rows: 2, placeholder: '{"x-match": "all"}' });
  const bind = form('add-binding', 'Add binding from this exchange', [
    field('Destination', destType), field('Name', dest), field('Routing key', key), field('Arguments (JSON)', bargs),
  ], 'Bind', () => attempt(async () => {
    await api('POST', `/bindings/${enc(vhost)}/e/${enc(name)}/${destType.value}/${enc(dest.value)}`,
      { routing_key: key.value, arguments: parseJsonObject(bargs.value, 'Arguments') });
    await refresh();
  }, 'Binding added.'));
  const del = button('exchange-delete', 'Delete exchange', () => {
    if (!confirm(`Delete exchange "${name}"?`)) return;
    attempt(async () => { await api('DELETE', base); location.hash = '#/exchanges'; }, 'Exchange deleted.');
  }, 'danger');
  main.append(
    h('h1', {}, 'Exchange ', h('span', { id: 'exchange-name', 'data-testid': 'exchange-name' },
      isDefault ? '(AMQP default)' : name), h('small', { class: 'muted' }, ' in virtual host ' + vhost)),
    h('div', { class: 'toolbar', hidden: isDefault }, del),
    section('Details', info), section('Arguments', args),
    section('Bindings from this exchange', bindings, isDefault ? null : bind),
    section('Publish message', publishForm(vhost, isDefault ? 'amq.default' : name)),
  );
  const refresh = async () => {
    const [x, b] = await Promise.all([api('GET', base),
      isDefault ? Promise.resolve([]) : api('GET', base + '/bindings/source')]);
    info.replaceChildren(kv([
      ['Type', x.type, 'exchange-type-value'], ['Durable', yesno(x.durable)], ['Auto delete', yesno(x.auto_delete)],
      ['Internal', yesno(x.internal)], ['Policy', x.policy || ''],
      ['Rate in', rate(x, 'publish_in')], ['Rate out', rate(x, 'publish_out')],
    ]));
    args.replaceChildren(argsTable('exchange-arguments-table', x.arguments));
    bindings.replaceChildren(isDefault
      ? h('p', { class: 'muted' }, 'The default exchange is implicitly bound to every queue, with the queue name as routing key.')
      : bindingsTable('exchange-bindings-table', vhost, b, refresh, false));
  };
  return refresh;
}

function pageConnections(main) {
  const conns = h('div'); const chans = h('div');
  main.append(h('h1', {}, 'Connections and channels'), section('Connections', conns), section('Channels', chans));
  const refresh = async () => {
    const [cs, chs] = await Promise.all([api('GET', '/connections'), api('GET', '/channels')]);
    conns.replaceChildren(dataTable('connections-table', [
      { key: 'name', label: 'Name', get: (c) => c.name },
      { key: 'client-name', label: 'Client name', get: (c) => (c.client_properties && c.client_properties.connection_name) || '' },
      { key: 'vhost', label: 'Virtual host', get: (c) => c.vhost },
      { key: 'user', label: 'User', get: (c) => c.user },
      { key: 'protocol', label: 'Protocol', get: (c) => c.protocol || '' },
      { key: 'state', label: 'State', get: (c) => c.state || '' },
      { key: 'channels', label: 'Channels', num: true, get: (c) => num(c.channels) },
      { key: 'actions', label: '', get: (c) => h('button', {
        type: 'button', class: 'small danger', 'data-testid': 'connection-close',
        onclick: () => {
          if (!confirm(`Close connection "${c.name}"?`)) return;
          attempt(async () => {
            await api('DELETE', '/connections/' + enc(c.name), undefined, { 'X-Reason': 'Closed via management UI' });
            await refresh();
          }, 'Connection closed.');
        },
      }, 'Close') },
    ], cs, (c) => ({ 'data-testid': 'connection-row', 'data-name': c.name }), 'No connections.'));
    chans.replaceChildren(dataTable('channels-table', [
      { key: 'name', label: 'Channel', get: (c) => c.name },
      { key: 'vhost', label: 'Virtual host', get: (c) => c.vhost },
      { key: 'user', label: 'User', get: (c) => c.user },
      { key: 'mode', label: 'Mode', get: (c) => [c.confirm ? 'confirm' : '', c.transactional ? 'tx' : ''].filter(Boolean).join(' ') },
      { key: 'state', label: 'State', get: (c) => c.state || '' },
      { key: 'consumers', label: 'Consumers', num: true, get: (c) => num(c.consumer_count) },
      { key: 'prefetch', label: 'Prefetch', num: true, get: (c) => num(c.prefetch_count) },
      { key: 'unacked', label: 'Unacked', num: true, get: (c) => num(c.messages_unacknowledged) },
      { key: 'rate-publish', label: 'Publish', num: true, get: (c) => rate(c, 'publish') },
      { key: 'rate-deliver', label: 'Deliver / get', num: true, get: (c) => rate(c, 'deliver_get') },
    ], chs, (c) => ({ 'data-testid': 'channel-row', 'data-name': c.name }), 'No channels.'));
  };
  return refresh;
}

function deleteButton(testid, what, path, refresh) {
  return h('button', {
    type: 'button', class: 'small danger', 'data-testid': testid,
    onclick: () => {
      if (!confirm(`Delete ${what}?`)) return;
      attempt(async () => { await api('DELETE', path); await refresh(); }, 'Deleted ' + what + '.');
    },
  }, 'Delete');
}

const tagList = (tags) => (Array.isArray(tags) ? tags.join(', ') : tags || '');

function pageAdmin(main) {
  const users = h('div'); const vhosts = h('div'); const perms = h('div'); const policies = h('div');
  // users
  const uName = input('user-name', { required: true, autocomplete: 'off' });
  const uPass = input('user-password', { type: 'password', autocomplete: 'new-password' });
  const uTags = input('user-tags', { placeholder: 'administrator, management' });
  const addUser = form('add-user', 'Add a user', [field('Username', uName), field('Password', uPass), field('Tags', uTags)],
    'Add user', () => attempt(async () => {
      const tags = uTags.value.split(',').map((t) => t.trim()).filter(Boolean).join(',');
      await api('PUT', '/users/' + enc(uName.value), { password: uPass.value, tags });
      uName.value = ''; uPass.value = ''; uTags.value = '';
      await refresh();
    }, 'User added.'));
  // vhosts
  const vName = input('vhost-name', { required: true });
  const vDesc = input('vhost-description');
  const addVhost = form('add-vhost', 'Add a virtual host', [field('Name', vName), field('Description', vDesc)],
    'Add virtual host', () => attempt(async () => {
      await api('PUT', '/vhosts/' + enc(vName.value), { description: vDesc.value });
      vName.value = ''; vDesc.value = '';
      await refresh();
    }, 'Virtual host added.'));
  // permissions
  const pUser = select('permission-user', []);
  const pVhost = select('permission-vhost', ['/']);
  const [pConf, pWrite, pRead] = ['configure', 'write', 'read'].map((k) => input('permission-' + k, { value: '.*' }));
  const setPerm = form('set-permission', 'Set permission', [
    field('User', pUser), field('Virtual host', pVhost), field('Configure regexp', pConf),
    field('Write regexp', pWrite), field('Read regexp', pRead),
  ], 'Set permission', () => attempt(async () => {
    await api('PUT', `/permissions/${enc(pVhost.value)}/${enc(pUser.value)}`,
      { configure: pConf.value, write: pWrite.value, read: pRead.value });
    await refresh();
  }, 'Permission set.'));
  // policies
  const polVhost = select('policy-vhost', ['/']);
  const polName = input('policy-name', { required: true });
  const polPattern = input('policy-pattern', { required: true, placeholder: '^amq\\.' });
  const polApply = select('policy-apply-to', [['all', 'Exchanges and queues'], ['queues', 'Queues'], ['exchanges', 'Exchanges']]);
  const polPrio = input('policy-priority', { type: 'number', value: '0' });
  const polDef = textarea('policy-definition', { placeholder: '{"max-length": 1000}', rows: 2 });
  const addPolicy = form('add-policy', 'Add / update a policy', [
    field('Virtual host', polVhost), field('Name', polName), field('Pattern', polPattern), field('Apply to', polApply),
    field('Priority', polPrio), field('Definition (JSON)', polDef),
  ], 'Add / update policy', () => attempt(async () => {
    await api('PUT', `/policies/${enc(polVhost.value)}/${enc(polName.value)}`, {
      pattern: polPattern.value, 'apply-to': polApply.value, priority: Number(polPrio.value) || 0,
      definition: parseJsonObject(polDef.value, 'Definition'),
    });
    await refresh();
  }, 'Policy set.'));

  main.append(h('h1', {}, 'Admin'),
    section('Users', users, addUser), section('Virtual hosts', vhosts, addVhost),
    section('Permissions', perms, setPerm), section('Policies', policies, addPolicy));

  const refresh = async () => {
    const [us, vs, ps, pols] = await Promise.all(['/users', '/vhosts', '/permissions', '/policies'].map((p) => api('GET', p)));
    fillSelect(pUser, us.map((u) => u.name));
    for (const s of [pVhost, polVhost]) fillSelect(s, vs.map((v) => v.name));
    users.replaceChildren(dataTable('users-table', [
      { key: 'name', label: 'Name', get: (u) => u.name },
      { key: 'tags', label: 'Tags', get: (u) => tagList(u.tags) },
      { key: 'actions', label: '', get: (u) => deleteButton('user-delete', `user "${u.name}"`, '/users/' + enc(u.name), refresh) },
    ], us, (u) => ({ 'data-testid': 'user-row-' + u.name, 'data-name': u.name })));
    vhosts.replaceChildren(dataTable('vhosts-table', [
      { key: 'name', label: 'Name', get: (v) => v.name },
      { key: 'description', label: 'Description', get: (v) => v.description || '' },
      { key: 'tracing', label: 'Tracing', get: (v) => h('span', {}, v.tracing ? 'on ' : 'off ',
        h('button', { type: 'button', class: 'small', 'data-testid': 'vhost-tracing-toggle',
          onclick: () => attempt(async () => { await setTracing(v, !v.tracing); await refresh(); },
            `Tracing ${v.tracing ? 'disabled' : 'enabled'} on ${v.name}.`) },
        v.tracing ? 'Disable' : 'Enable')) },
      { key: 'messages', label: 'Messages', num: true, get: (v) => num(v.messages) },
      { key: 'actions', label: '', get: (v) => deleteButton('vhost-delete', `virtual host "${v.name}"`, '/vhosts/' + enc(v.name), refresh) },
    ], vs, (v) => ({ 'data-testid': 'vhost-row-' + v.name, 'data-name': v.name })));
    perms.replaceChildren(dataTable('permissions-table', [
      { key: 'user', label: 'User', get: (p) => p.user },
      { key: 'vhost', label: 'Virtual host', get: (p) => p.vhost },
      { key: 'configure', label: 'Configure', get: (p) => p.configure },
      { key: 'write', label: 'Write', get: (p) => p.write },
      { key: 'read', label: 'Read', get: (p) => p.read },
      { key: 'actions', label: '', get: (p) => h('button', {
        type: 'button', class: 'small danger', 'data-testid': 'permission-clear',
        onclick: () => attempt(async () => {
          await api('DELETE', `/permissions/${enc(p.vhost)}/${enc(p.user)}`); await refresh();
        }, 'Permission cleared.'),
      }, 'Clear') },
    ], ps, (p) => ({ 'data-testid': 'permission-row', 'data-user': p.user, 'data-vhost': p.vhost }), 'No permissions.'));
    policies.replaceChildren(dataTable('policies-table', [
      { key: 'vhost', label: 'Virtual host', get: (p) => p.vhost },
      { key: 'name', label: 'Name', get: (p) => p.name },
      { key: 'pattern', label: 'Pattern', get: (p) => p.pattern },
      { key: 'apply-to', label: 'Apply to', get: (p) => p['apply-to'] },
      { key: 'definition', label: 'Definition', get: (p) => h('code', {}, json(p.definition)) },
      { key: 'priority', label: 'Priority', num: true, get: (p) => num(p.priority) },
      { key: 'actions', label: '', get: (p) => deleteButton('policy-delete', `policy "${p.name}"`,
        `/policies/${enc(p.vhost)}/${enc(p.name)}`, refresh) },
    ], pols, (p) => ({ 'data-testid': 'policy-row-' + p.name, 'data-name': p.name }), 'No policies.'));
  };
  return refresh;
}

// PUT /api/vhosts/{v} replaces the vhost's metadata, so send it back along with the tracing flag.
function setTracing(v, on) {
  const body = { tracing: on, description: v.description || '', tags: tagList(v.tags).replace(/, /g, ',') };
  if (v.default_queue_type && v.default_queue_type !== 'undefined') body.default_queue_type = v.default_queue_type;
  return api('PUT', '/vhosts/' + enc(v.name), body);
}

function pageTrace(main) {
  const vhost = vhostSelect('trace-vhost');
  const status = h('span', { id: 'trace-status', 'data-testid': 'trace-status' });
  const queue = input('trace-queue', { value: 'warren.trace.ui', list: 'trace-queues' });
  const known = h('datalist', { id: 'trace-queues' });
  const rows = h('tbody');
  const table = h('table', { class: 'data', id: 'trace-table', 'data-testid': 'trace-table' },
    h('thead', {}, h('tr', {}, ['Received', 'Routing key', 'exchange_name', 'routing_keys', 'Payload'].map((t) => h('th', {}, t)))),
    rows);
  let vhostInfo = null;
  let poller = null;

  const start = button('trace-start', 'Start tracing', () => vhostInfo && attempt(async () => {
    await setTracing(vhostInfo, true); await refresh();
  }, 'Tracing enabled.'));
  const stop = button('trace-stop', 'Stop tracing', () => vhostInfo && attempt(async () => {
    await setTracing(vhostInfo, false); await refresh();
  }, 'Tracing disabled.'));
  const create = button('trace-create', 'Create trace queue and binding', () => attempt(async () => {
    if (!queue.value.startsWith('warren.trace.')) queue.value = 'warren.trace.' + (queue.value || 'ui');
    const v = enc(vhost.value); const q = enc(queue.value);
    await api('PUT', `/queues/${v}/${q}`, { durable: false, auto_delete: false, arguments: { 'x-max-length': 1000 } });
    await api('POST', `/bindings/${v}/e/amq.rabbitmq.trace/q/${q}`, { routing_key: '#', arguments: {} });
    await refresh();
  }, () => `Queue ${queue.value} bound to amq.rabbitmq.trace with key #.`));
  const poll = button('trace-poll', 'Start polling', () => {
    if (poller) {
      clearInterval(poller); poller = null; poll.textContent = 'Start polling';
    } else {
      poller = setInterval(fetchTraces, TRACE_POLL_MS); view.timers.push(poller);
      poll.textContent = 'Stop polling';
      fetchTraces();
    }
  });
  const clear = button('trace-clear', 'Clear', () => rows.replaceChildren());

  async function fetchTraces() {
    const msgs = await attempt(() => api('POST', `/queues/${enc(vhost.value)}/${enc(queue.value)}/get`,
      { count: 100, ackmode: 'ack_requeue_false', encoding: 'auto', truncate: 2000 }));
    for (const m of msgs || []) {
      const hd = (m.properties && m.properties.headers) || {};
      const keys = Array.isArray(hd.routing_keys) ? hd.routing_keys.join(', ') : json(hd.routing_keys);
      const payload = m.payload_encoding === 'base64' ? '(base64) ' + m.payload : m.payload;
      rows.prepend(h('tr', { 'data-testid': 'trace-row' },
        h('td', {}, new Date().toLocaleTimeString()), h('td', { 'data-col': 'routing_key' }, m.routing_key),
        h('td', { 'data-col': 'exchange_name' }, hd.exchange_name === '' ? '(AMQP default)' : hd.exchange_name),
        h('td', { 'data-col': 'routing_keys' }, keys),
        h('td', { 'data-col': 'payload' }, h('pre', { class: 'payload' }, payload))));
    }
    while (rows.children.length > TRACE_MAX_ROWS) rows.lastChild.remove();
  }

  vhost.addEventListener('change', () => refresh());
  main.append(h('h1', {}, 'Trace viewer'),
    section('Firehose tracing', h('div', { class: 'fields' }, field('Virtual host', vhost)),
      h('p', {}, status), h('div', { class: 'toolbar' }, start, stop)),
    section('Trace queue',
      h('p', { class: 'muted' }, 'Trace messages are read (and removed) from a queue bound to amq.rabbitmq.trace. ' +
        'The button creates warren.trace.<name> (x-max-length 1000) bound with key #.'),
      h('div', { class: 'fields' }, field('Queue', queue), known),
      h('div', { class: 'toolbar' }, create, poll, clear)),
    section('Messages', h('p', { class: 'muted' }, 'publish.<exchange> = a message published; deliver.<queue> = a message delivered.'), table));

  const refresh = async () => {
    const v = vhost.value;
    const [info, binds] = await Promise.all([api('GET', '/vhosts/' + enc(v)),
      api('GET', `/exchanges/${enc(v)}/amq.rabbitmq.trace/bindings/source`).catch(() => [])]);
    if (v !== vhost.value) return;
    vhostInfo = info;
    status.textContent = `Tracing is ${info.tracing ? 'ON' : 'off'} for virtual host ${v}.`;
    status.className = info.tracing ? 'on' : '';
    start.disabled = !!info.tracing;
    stop.disabled = !info.tracing;
    known.replaceChildren(...binds.filter((b) => b.destination_type === 'queue').map((b) => h('option', { value: b.destination })));
  };
  return refresh;
}

// ---------------------------------------------------------------- router

const routes = [
  [/^\/login$/, pageLogin, null],
  [/^\/$/, pageOverview, 'overview'],
  [/^\/queues$/, pageQueues, 'queues'],
  [/^\/queues\/([^/]+)\/([^/]+)$/, pageQueue, 'queues'],
  [/^\/exchanges$/, pageExchanges, 'exchanges'],
  [/^\/exchanges\/([^/]+)\/([^/]+)$/, pageExchange, 'exchanges'],
  [/^\/connections$/, pageConnections, 'connections'],
  [/^\/admin$/, pageAdmin, 'admin'],
  [/^\/trace$/, pageTrace, 'trace'],
];

let view = { timers: [] };

async function runRefresh(v, fn) {
  if (v.busy || v !== view) return;
  v.busy = true;
  try {
    const ok = await attempt(async () => { await fn(); return true; });
    if (ok && v === view) $('refreshed').textContent = 'Updated ' + new Date().toLocaleTimeString();
  } finally { v.busy = false; }
}

function route() {
  for (const t of view.timers) clearInterval(t);
  const path = location.hash.replace(/^#/, '') || '/';
  if (!auth.get() && path !== '/login') { location.hash = '#/login'; return; }
  const main = $('main');
  main.replaceChildren();
  view = { timers: [] };
  for (const [re, page, nav] of routes) {
    const m = path.match(re);
    if (!m) continue;
    if (nav) {
      $('topbar').hidden = false;
      $('whoami').textContent = auth.user();
      for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === nav);
    }
    const refresh = page(main, ...m.slice(1).map(decodeURIComponent));
    if (refresh) {
      const v = view;
      const fn = () => runRefresh(v, refresh);
      fn();
      v.timers.push(setInterval(fn, REFRESH_MS));
    }
    return;
  }
  main.append(h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/' }, 'Back to the overview')));
}

$('logout').addEventListener('click', () => { auth.clear(); location.hash = '#/login'; });
window.addEventListener('hashchange', route);
route();
