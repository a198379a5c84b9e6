// wperf's browser page: idle latency, then download and upload over
// parallel wperf.v1 streams with latency probes throughout, all against
// the server that served this page (README.md, "Browser" and "Protocol").
'use strict';

const PAGE = 'wperf-web 1';
const PROBE_EVERY_MS = 100; // a latency probe's period, idle and loaded
const IDLE_PROBES = 20;
const PROBE_LOST_MS = 5000; // a probe unanswered this long is lost
const MIN_CHUNK = 8 << 10; // upload messages start here
const MAX_CHUNK = 1 << 20; // and double toward this while the link keeps up
const QUEUED_CHUNKS = 4; // an upload stream keeps at most this many messages queued
const SAMPLE_MS = 250; // how often the chart gets a download point

const params = new URLSearchParams(location.search);
const seconds = clamp(Number(params.get('t')) || 8, 1, 30);
const parallel = clamp(Number(params.get('p')) || 4, 1, 16);
const $ = (id) => document.getElementById(id);
const state = { running: false, token: '', result: null };
const chart = { t0: 0, rate: [], lat: [] };

function clamp(v, lo, hi) { return Math.min(hi, Math.max(lo, v)); }

// wsURL is this page's own directory with its own scheme: wss: under
// https:, and the reverse proxy's prefix kept.
function wsURL() {
  const u = new URL('.', location.href);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  u.search = '';
  u.hash = '';
  return u.href;
}

// protocols offers wperf.v1 and, when there is a token, a second entry
// that carries it: browsers cannot set Authorization on a WebSocket.
function protocols() {
  if (!state.token) return ['wperf.v1'];
  const b64 = btoa(String.fromCharCode(...new TextEncoder().encode(state.token)));
  return ['wperf.v1', 'wperf.token.' + b64.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')];
}

// open resolves with an open WebSocket, or rejects when it cannot open.
function open() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsURL(), protocols());
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => { ws.onerror = null; resolve(ws); };
    ws.onerror = () => reject(new Error('cannot connect to the server (wrong token, or not a wperf server?)'));
  });
}

// closed resolves when ws has closed, with its close event.
function closed(ws) {
  return new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) resolve({ code: 1006, reason: '' });
    else ws.addEventListener('close', resolve);
  });
}

// Control is a test's control connection: JSON messages in order, with
// the server's interval messages handed to onInterval as they come.
class Control {
  constructor(ws, onInterval) {
    this.ws = ws;
    this.queue = [];
    this.waiting = null;
    this.onInterval = onInterval;
    ws.onmessage = (ev) => this.push(JSON.parse(ev.data));
    ws.onclose = (ev) => this.push({ type: 'closed', error: ev.reason || 'the server closed the connection (' + ev.code + ')' });
  }
  push(msg) {
    if (msg.type === 'interval') { this.onInterval(msg); return; }
    this.queue.push(msg);
    if (this.waiting) { const w = this.waiting; this.waiting = null; w(); }
  }
  send(msg) { this.ws.send(JSON.stringify(msg)); }
  // next is the next message; refusals and errors reject.
  async next() {
    while (!this.queue.length) await new Promise((r) => { this.waiting = r; });
    const msg = this.queue.shift();
    if (msg.type === 'refuse' || msg.type === 'error' || msg.type === 'closed') throw new Error(msg.error || msg.type);
    return msg;
  }
}

// Prober times echo probes on a probe connection of its own, the
// messages of wperf --ping: a 64-bit sequence number, the clock in ns.
class Prober {
  constructor() { this.samples = []; this.pending = new Map(); this.seq = 0; this.phase = 'idle'; }
  async start() {
    this.ws = await open();
    this.ws.send(JSON.stringify({ type: 'ping', version: 1, purpose: 'probe', client: PAGE }));
    this.ws.onmessage = (ev) => this.reply(ev.data);
    this.timer = setInterval(() => this.probe(), PROBE_EVERY_MS);
  }
  probe() {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    const buf = new ArrayBuffer(64);
    const view = new DataView(buf);
    const now = performance.now();
    this.seq++;
    view.setBigUint64(0, BigInt(this.seq));
    view.setBigUint64(8, BigInt(Math.round(now * 1e6)));
    this.pending.set(this.seq, { sent: now, phase: this.phase });
    this.ws.send(buf);
  }
  reply(data) {
    if (!(data instanceof ArrayBuffer) || data.byteLength < 16) return;
    const seq = Number(new DataView(data).getBigUint64(0));
    const p = this.pending.get(seq);
    if (!p) return;
    this.pending.delete(seq);
    const rtt = performance.now() - p.sent;
    if (rtt > PROBE_LOST_MS) return;
    this.samples.push({ kind: 'echo', phase: p.phase, at: (p.sent - chart.t0) / 1000, rtt_ms: rtt });
    chart.lat.push({ t: (performance.now() - chart.t0) / 1000, v: rtt });
    draw();
  }
  // settle waits for the last probes' replies, then closes.
  async stop() {
    clearInterval(this.timer);
    const until = performance.now() + 1000;
    while (this.pending.size && performance.now() < until) await sleep(50);
    for (const p of this.pending.values()) this.samples.push({ kind: 'echo', phase: p.phase, at: (p.sent - chart.t0) / 1000, lost: true });
    this.ws.close(1000);
  }
  of(phase) { return this.samples.filter((s) => s.phase === phase); }
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

function cookie() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// runTest runs one wperf.v1 test in one direction and returns what each
// side measured: the page's streams and the server's results.
async function runTest(direction) {
  const upload = direction === 'upload';
  const intervals = [];
  const ctrl = new Control(await open(), (m) => {
    intervals.push(m);
    // The last interval may be a sliver; its rate would be noise.
    if (upload && m.end - m.start >= 0.1) plot('up', m.end + state.offset, (m.received * 8) / (m.end - m.start) / 1e6);
  });
  const ck = cookie();
  ctrl.send({ type: 'test', version: 1, cookie: ck, direction, protocol: 'tcp', time: seconds, bytes: 0, blocks: 0,
    length: MAX_CHUNK, parallel, omit: 0, interval: 0.5, client: PAGE, progress: true });
  const accept = await ctrl.next();
  state.server = accept.server;
  state.client = accept.client;
  showServer();
  const streams = await Promise.all(Array.from({ length: parallel }, async (_, i) => {
    const ws = await open();
    ws.send(JSON.stringify({ type: 'stream', cookie: ck, id: i + 1, direction: upload ? 'up' : 'down' }));
    const s = { id: i + 1, ws, bytes: 0, closed: closed(ws) };
    // Counted from the first byte: data may overtake the control
    // connection's start, which travels on another connection.
    if (!upload) ws.onmessage = (ev) => { s.bytes += ev.data.byteLength; };
    return s;
  }));
  const start = await ctrl.next();
  if (start.type !== 'start') throw new Error('expected start, got ' + start.type);
  state.offset = (performance.now() - chart.t0) / 1000;
  const began = performance.now();
  if (upload) streams.forEach((s) => send(s, began + seconds * 1000));
  else receive(streams, began);
  await Promise.all(streams.map((s) => s.closed));
  const secs = (performance.now() - began) / 1000;
  ctrl.send({ type: 'results', cpu: { total: 0, user: 0, system: 0 },
    streams: streams.map((s) => ({ id: s.id, sender: upload, bytes: s.bytes, seconds: secs, end: secs })) });
  const theirs = await ctrl.next();
  ctrl.ws.close(1000);
  return { direction, streams, seconds: secs, server: theirs, intervals, accept };
}

// send keeps one upload stream busy until the deadline. Messages double
// from 8 KiB while the socket drains between turns, and no more than a
// few are ever queued, so the browser never holds seconds of data.
function send(s, deadline) {
  let size = MIN_CHUNK;
  const payload = new Uint8Array(MAX_CHUNK);
  crypto.getRandomValues(payload.subarray(0, 65536));
  const turn = () => {
    if (performance.now() >= deadline || s.ws.readyState !== WebSocket.OPEN) {
      s.ws.close(1000);
      return;
    }
    if (s.ws.bufferedAmount === 0 && size < MAX_CHUNK) size *= 2;
    while (s.ws.bufferedAmount < QUEUED_CHUNKS * size) {
      s.ws.send(payload.subarray(0, size));
      s.bytes += size;
    }
    setTimeout(turn, 1);
  };
  turn();
}

// receive plots the download streams' rate as their bytes come in.
function receive(streams, began) {
  let last = { at: began, bytes: 0 };
  const tick = setInterval(() => {
    const now = performance.now();
    const bytes = streams.reduce((n, s) => n + s.bytes, 0);
    plot('down', (now - chart.t0) / 1000, ((bytes - last.bytes) * 8) / (now - last.at) / 1e3); // bits per ms / 1000: Mbit/s
    last = { at: now, bytes };
  }, SAMPLE_MS);
  Promise.all(streams.map((s) => s.closed)).then(() => clearInterval(tick));
}

// ---- statistics, as the CLI's latency report computes them ----

function quantile(sorted, q) {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? sorted[0];
}

// stats summarises probes: order statistics, and the mean without the
// top 5 % that RPM uses (draft-ietf-ippm-responsiveness).
function stats(samples) {
  const ok = samples.filter((s) => !s.lost).map((s) => s.rtt_ms).sort((a, b) => a - b);
  const kept = ok.slice(0, Math.max(1, Math.floor(ok.length * 0.95)));
  return {
    count: samples.length, lost: samples.length - ok.length,
    min_ms: ok[0] || 0, median_ms: quantile(ok, 0.5), p90_ms: quantile(ok, 0.9), p99_ms: quantile(ok, 0.99),
    max_ms: ok[ok.length - 1] || 0, trimmed_mean_ms: ok.length ? kept.reduce((a, b) => a + b, 0) / kept.length : 0,
  };
}

// jitter is RFC 3550 §6.4.1's running estimate over consecutive probes.
function jitter(samples) {
  let j = 0;
  const ok = samples.filter((s) => !s.lost);
  for (let i = 1; i < ok.length; i++) j += (Math.abs(ok[i].rtt_ms - ok[i - 1].rtt_ms) - j) / 16;
  return j;
}

function grade(increase) {
  const steps = [[5, 'A+'], [30, 'A'], [60, 'B'], [200, 'C'], [400, 'D']];
  for (const [limit, g] of steps) if (increase < limit) return g;
  return 'F';
}

// latency is the page's verdict: idle median and jitter, the loaded p90
// and its increase, RPM from the loaded echoes (60000 / trimmed mean:
// the page has only echo probes), and the grade.
function latency(prober) {
  const idle = stats(prober.of('idle'));
  const loadedSamples = prober.samples.filter((s) => s.phase !== 'idle');
  const loaded = stats(loadedSamples);
  const increase = Math.max(0, loaded.p90_ms - idle.median_ms);
  return {
    idle: { ...idle, jitter_ms: jitter(prober.of('idle')) },
    foreign: { echo: { ...loaded, increase_ms: loaded.p90_ms - idle.median_ms } },
    download: stats(prober.of('download')), upload: stats(prober.of('upload')),
    loaded_p90_ms: loaded.p90_ms, increase_ms: increase,
    rpm: loaded.trimmed_mean_ms > 0 ? Math.round(60000 / loaded.trimmed_mean_ms) : 0, grade: grade(increase),
    idle_phase: 'probes before the test', samples: prober.samples,
  };
}

// ---- the result, in the CLI's -J shape ----

function sum(test, sender) {
  const side = test.server.streams || [];
  const rows = test.direction === 'upload'
    ? (sender ? test.streams.map((s) => ({ bytes: s.bytes, seconds: test.seconds })) : side.filter((s) => !s.sender))
    : (sender ? side.filter((s) => s.sender) : test.streams.map((s) => ({ bytes: s.bytes, seconds: test.seconds })));
  const bytes = rows.reduce((n, r) => n + r.bytes, 0);
  const secs = Math.max(...rows.map((r) => r.seconds), 1e-9);
  return { start: 0, end: secs, seconds: secs, bytes, bits_per_second: (bytes * 8) / secs, sender };
}

// document is one direction's run as wperf -c -J shows it.
function document1(test, lat) {
  const u = new URL(wsURL());
  return {
    start: {
      connected: [], version: PAGE, system_info: navigator.userAgent,
      timestamp: { time: new Date(state.began).toUTCString(), timesecs: Math.floor(state.began / 1000) },
      connecting_to: { host: u.hostname, port: Number(u.port) || (u.protocol === 'wss:' ? 443 : 80) },
      cookie: '', test_start: { protocol: 'TCP', num_streams: parallel, blksize: MAX_CHUNK, omit: 0, duration: seconds,
        bytes: 0, blocks: 0, reverse: test.direction === 'download' ? 1 : 0, tos: 0, target_bitrate: 0 },
    },
    intervals: test.intervals.map((m) => {
      const bytes = test.direction === 'upload' ? m.received : m.sent;
      const secs = m.end - m.start;
      return { streams: [], sum: { start: m.start, end: m.end, seconds: secs, bytes, bits_per_second: secs > 0 ? (bytes * 8) / secs : 0, omitted: !!m.omitted, sender: test.direction === 'download' } };
    }),
    end: { streams: [], sum_sent: sum(test, true), sum_received: sum(test, false), wperf: { latency: lat } },
  };
}

function resultDocument(down, up, lat) {
  const doc = document1(down, lat);
  doc.browser = {
    page: PAGE, user_agent: navigator.userAgent, url: location.href, server: state.server, client_address: state.client,
    download_bits_per_second: doc.end.sum_received.bits_per_second,
    upload_bits_per_second: sum(up, false).bits_per_second,
    upload: document1(up, lat),
  };
  return doc;
}

// ---- the page ----

function plot(kind, t, mbps) {
  if (Number.isFinite(mbps)) chart.rate.push({ t, v: mbps, kind });
  draw();
}

function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

// draw shows throughput (top) and latency (bottom) on one time axis.
function draw() {
  const c = $('chart');
  const g = c.getContext('2d');
  // Drawn at the screen's own resolution, in CSS pixels.
  const dpr = window.devicePixelRatio || 1;
  const w = c.clientWidth || 640;
  const h = Math.round((w * 260) / 640);
  if (c.width !== Math.round(w * dpr)) {
    c.width = Math.round(w * dpr);
    c.height = Math.round(h * dpr);
  }
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  const half = h / 2;
  g.clearRect(0, 0, w, h);
  g.strokeStyle = css('--grid');
  g.beginPath(); g.moveTo(0, half); g.lineTo(w, half); g.stroke();
  const tmax = Math.max(2 + 2 * seconds, ...chart.rate.map((p) => p.t), ...chart.lat.map((p) => p.t));
  const x = (t) => (t / tmax) * w;
  const series = (points, top, color, vmax) => {
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.beginPath();
    points.forEach((p, i) => {
      const y = top + half - 4 - (p.v / vmax) * (half - 22);
      if (i === 0) g.moveTo(x(p.t), y); else g.lineTo(x(p.t), y);
    });
    g.stroke();
  };
  const label = (text, top, vmax) => {
    g.fillStyle = css('--muted');
    g.font = '12px system-ui, sans-serif';
    g.fillText(text + ', up to ' + fmt(vmax / 1.1), 6, top + 14);
  };
  const rmax = Math.max(1e-9, ...chart.rate.map((p) => p.v)) * 1.1;
  const lmax = Math.max(1e-9, ...chart.lat.map((p) => p.v)) * 1.1;
  label('Mbit/s', 0, rmax);
  label('latency ms', half, lmax);
  series(chart.rate.filter((p) => p.kind === 'down'), 0, css('--down'), rmax);
  series(chart.rate.filter((p) => p.kind === 'up'), 0, css('--up'), rmax);
  series(chart.lat, half, css('--lat'), lmax);
}

function fmt(v) { return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2); }

function show(id, v) { $(id).textContent = typeof v === 'number' ? fmt(v) : v; }

function showServer() {
  $('server').textContent = (state.server || 'wperf') + ' at ' + new URL(wsURL()).host;
  if (state.client) $('client').textContent = 'The server sees you as ' + state.client;
}

function phase(p) { $('phase').textContent = p; }

async function runAll() {
  if (state.running) return;
  state.running = true;
  state.token = $('token').value;
  $('start').disabled = true;
  $('save').disabled = true;
  $('error').hidden = true;
  document.body.dataset.state = 'running';
  chart.rate = []; chart.lat = []; chart.t0 = performance.now();
  state.began = Date.now();
  const prober = new Prober();
  try {
    phase('idle latency…');
    await prober.start();
    await sleep(IDLE_PROBES * PROBE_EVERY_MS);
    const idle = stats(prober.of('idle'));
    show('idle', idle.median_ms);
    show('jitter', jitter(prober.of('idle')));
    phase('download…');
    prober.phase = 'download';
    const down = await runTest('download');
    show('download', sum(down, false).bits_per_second / 1e6);
    phase('upload…');
    prober.phase = 'upload';
    const up = await runTest('upload');
    show('upload', sum(up, false).bits_per_second / 1e6);
    await prober.stop();
    const lat = latency(prober);
    show('loaded', lat.loaded_p90_ms);
    show('rpm', String(lat.rpm));
    show('grade', lat.grade);
    state.result = resultDocument(down, up, lat);
    phase('done');
    document.body.dataset.state = 'done';
    $('save').disabled = false;
  } catch (err) {
    clearInterval(prober.timer);
    $('error').textContent = String(err.message || err);
    $('error').hidden = false;
    phase('failed');
    document.body.dataset.state = 'failed';
  } finally {
    state.running = false;
    $('start').disabled = false;
  }
}

// save offers the result as a JSON file, made in the page: no cookies,
// nothing sent anywhere.
function save() {
  const blob = new Blob([JSON.stringify(state.result, null, 2)], { type: 'application/json' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = 'wperf-' + new Date(state.began).toISOString().replace(/[:.]/g, '-') + '.json';
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

// needsToken asks the server, with a HEAD of this page, whether its
// WebSockets want a token; it says so in a header.
async function needsToken() {
  try {
    const r = await fetch(location.href, { method: 'HEAD', cache: 'no-store', credentials: 'omit' });
    return r.headers.get('X-Wperf-Token') === 'required';
  } catch {
    return false;
  }
}

async function init() {
  $('start').addEventListener('click', runAll);
  $('save').addEventListener('click', save);
  window.addEventListener('resize', draw);
  draw();
  const token = await needsToken();
  $('token-row').hidden = !token;
  if (params.get('autostart') === '1' && !token) runAll();
}

// wperfResult lets a kiosk or a test read the result from the page.
window.wperfResult = () => state.result;
init();
