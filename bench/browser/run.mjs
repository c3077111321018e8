#!/usr/bin/env node
// Browser benchmarks of the `logsync` npm package (its release build in
// js/, made by `npm run build`), in headless Chromium driven by
// playwright-core, against a real logsync-server on loopback:
//
//   (a) dispatch cost against Redux (same reducer, same page) — a ratio;
//   (b) events/s applied during catch-up, against a plain-JS fold of the
//       same actions;
//   (c) start-up to first state with 1k … 1M stored events (IndexedDB
//       seeded in bulk in the store's own format), with snapshots and
//       with full replay, against a plain IndexedDB read of the records;
//   (d) catch-up of 100k events from the server;
//   (e) tabs: five pages on one database and stream — WebSocket
//       connections the server holds, events it sends per event, and the
//       time from a dispatch in one tab to the state change in another
//       (p50/p99), with the shared connection and without;
//   (f) a page's first store: a new tab imports the package and opens a
//       store of 1,000 stored events (import → usable store).
//
//   node bench/browser/run.mjs --server target/release/logsync-server \
//        --seeder target/release/logsync-bench [--json out.jsonl] [--quick]
//        [--server-cpus 1] [--profile-dispatch] [--profile-catchup] [--profile-startup]
//
// Starts and stops everything itself (a static file server, the
// logsync-server, Chromium); each run leaves nothing behind but --json.

import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');

// ---- options ---------------------------------------------------------------

const opts = { quick: false, json: null, server: null, seeder: null, cpus: null, profile: false, profileCatchup: false, profileStartup: false, profileEvery: 500, only: null, wasmDir: null, jsDir: null };
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') opts.quick = true;
    else if (a === '--json') opts.json = argv[++i];
    else if (a === '--server') opts.server = argv[++i];
    else if (a === '--seeder') opts.seeder = argv[++i];
    else if (a === '--server-cpus') opts.cpus = argv[++i];
    else if (a === '--profile-dispatch') opts.profile = true;
    else if (a === '--profile-startup') opts.profileStartup = true;
    else if (a === '--profile-catchup') opts.profileCatchup = true;
    // Hand over to wasm every N dispatches in the profile (1: one per microtask).
    else if (a === '--profile-every') opts.profileEvery = Number(argv[++i]);
    else if (a === '--only') opts.only = new Set(argv[++i].split(','));
    // Serve another build of the wasm module as js/wasm/ (e.g. one with
    // function names, `wasm-pack build --profiling --no-opt`, for profiles).
    else if (a === '--wasm-dir') opts.wasmDir = path.resolve(argv[++i]);
    // Serve another build of the whole package as js/ (e.g. the js/ of
    // another commit's worktree, built there), for before/after runs.
    else if (a === '--js-dir') opts.jsDir = path.resolve(argv[++i]);
    else fail(`unknown argument ${a}`);
  }
  opts.server ||= path.join(root, 'target/release/logsync-server');
  opts.seeder ||= path.join(root, 'target/release/logsync-bench');
  for (const [what, p] of [['--server', opts.server], ['--seeder', opts.seeder], ['js build', path.join(root, 'js/wasm/logsync_wasm_bg.wasm')]]) {
    if (!fs.existsSync(p)) fail(`${what}: ${p} does not exist (bench/run.sh builds it)`);
  }
}

const P = opts.quick
  ? { dispatchRepeats: 3, dispatchOps: 1000, catchupEvents: 20_000, catchupRepeats: 1, startupRuns: 3,
    startupSnap: [1000, 10_000, 100_000, 1_000_000], startupReplay: [1000, 10_000] }
  : { dispatchRepeats: 7, dispatchOps: 10000, catchupEvents: 100_000, catchupRepeats: 3, startupRuns: 7,
    startupSnap: [1000, 10_000, 100_000, 1_000_000], startupReplay: [1000, 10_000, 100_000] };

function fail(msg) {
  process.stderr.write(`bench/browser: ${msg}\n`);
  process.exit(2);
}

const records = [];
function record(r) {
  records.push(r);
  if (opts.json) fs.appendFileSync(opts.json, `${JSON.stringify(r)}\n`);
}

// ---- everything this script starts, stopped on every exit path ----------------

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'logsync-browser-bench-'));
let server = null;
let statics = null;
let browser = null;

async function cleanup() {
  try { if (browser) await browser.close(); } catch { /* already gone */ }
  browser = null;
  if (server && server.exitCode === null && server.signalCode === null) {
    server.kill('SIGTERM');
    await new Promise((r) => { const t = setTimeout(() => { server.kill('SIGKILL'); r(); }, 10_000); server.once('exit', () => { clearTimeout(t); r(); }); });
  }
  server = null;
  if (statics) statics.close();
  statics = null;
  fs.rmSync(scratch, { recursive: true, force: true });
}
process.on('SIGINT', () => { cleanup().finally(() => process.exit(130)); });
process.on('SIGTERM', () => { cleanup().finally(() => process.exit(143)); });
process.on('exit', () => { if (server) server.kill('SIGKILL'); });

// ---- the static files: the package, Redux, the page ------------------------------

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.map': 'application/json' };
// [prefix, directory, the cache-control it is served with]
const ROUTES = [
  ...(opts.wasmDir ? [['/js/wasm/', opts.wasmDir + path.sep]] : []),
  ['/js/', (opts.jsDir ?? path.join(root, 'js')) + path.sep],
  ['/bench/browser/', here + path.sep],
  // (f): the production bundle, fetched again each time or cached.
  ['/first/nocache/', path.join(scratch, 'first') + path.sep],
  ['/first/cached/', path.join(scratch, 'first') + path.sep, 'max-age=3600'],
];

function startStatics() {
  return new Promise((resolve) => {
    const srv = http.createServer((req, res) => {
      const url = new URL(req.url, 'http://x');
      let file = null;
      let cache = 'no-store';
      if (url.pathname === '/redux.mjs') {
        // Redux's production browser build, as an app would ship it.
        file = path.join(here, 'node_modules/redux/dist/redux.browser.mjs');
      } else {
        for (const [prefix, dir, cacheControl] of ROUTES) {
          if (url.pathname.startsWith(prefix)) {
            const f = path.resolve(dir, `.${url.pathname.slice(prefix.length - 1)}`);
            if (f.startsWith(dir)) file = f;
            if (cacheControl) cache = cacheControl;
            break;
          }
        }
      }
      if (!file || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, {
        'content-type': TYPES[path.extname(file)] || 'application/octet-stream',
        // Cross-origin isolation gives performance.now() 5 µs resolution
        // instead of 100 µs.
        'cross-origin-opener-policy': 'same-origin',
        'cross-origin-embedder-policy': 'require-corp',
        'cache-control': cache,
      });
      fs.createReadStream(file).pipe(res);
    });
    srv.listen(0, '127.0.0.1', () => resolve(srv));
  });
}

// ---- the server ----------------------------------------------------------------

function startServer() {
  return new Promise((resolve, reject) => {
    const argv = ['--listen', '127.0.0.1:0', '--db', path.join(scratch, 'bench.db')];
    const [cmd, args] = opts.cpus ? ['taskset', ['-c', opts.cpus, opts.server, ...argv]] : [opts.server, argv];
    const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } });
    let buf = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`logsync-server printed no address in 20 s: ${err}`)), 20_000);
    proc.stderr.on('data', (c) => { err = (err + c).slice(-4000); });
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (c) => {
      buf += c;
      const m = /logsync-server listening on http:\/\/(\S+)/.exec(buf);
      if (m) { clearTimeout(timer); resolve({ proc, addr: m[1] }); }
    });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`logsync-server exited (${code}): ${err}`)); });
  });
}

function seed(url, stream, events) {
  const r = spawnSync(opts.seeder, ['seed', '--url', url, '--stream', stream, '--events', String(events), ...(opts.json ? ['--json', opts.json] : [])], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`seeding ${stream} failed: ${r.stderr || r.error}`);
  process.stdout.write(r.stdout);
}

// ---- aggregation -------------------------------------------------------------

const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor(s.length / 2)], max: s[s.length - 1] };
};
const f = (v, d = 2) => (v === undefined || v === null || Number.isNaN(v) ? '—' : Number(v).toFixed(d));
const mmm = (xs, d = 2) => { const s = stats(xs); return `${f(s.min, d)} / **${f(s.median, d)}** / ${f(s.max, d)}`; };

async function profileDispatch(page) {
  // Chrome's sampling profiler over a loop of dispatches into an offline
  // store (the `list` reducer): where a dispatch's time goes.
  await page.evaluate(() => window.bench.openForProfile({ reducer: 'list' }));
  await page.evaluate((every) => window.bench.dispatchLoop({ ops: 2000, every }), opts.profileEvery); // warm
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Profiler.enable');
  await cdp.send('Profiler.setSamplingInterval', { interval: 20 });
  const finished = new Promise((resolve) => cdp.once('Profiler.consoleProfileFinished', (e) => resolve(e.profile)));
  const perOp = await page.evaluate((every) => window.bench.dispatchLoop({ ops: 20000, profile: true, every }), opts.profileEvery);
  const profile = await finished;
  await page.evaluate(() => window.bench.closeProfiled());
  printProfile(profile, `profile of 20,000 dispatches into an offline store (${f(perOp, 2)} µs each under the profiler)`, { bench: 'browser-profile', what: 'dispatch', us_per_dispatch: perOp });
}

/** Self time per function of a CPU profile, top 25, printed and recorded with `row`. */
function printProfile(profile, title, row) {
  const self = new Map();
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  for (let i = 0; i < profile.samples.length; i++) {
    const n = byId.get(profile.samples[i]);
    const fn = n.callFrame.functionName || '(anonymous)';
    if (fn === '(idle)' || fn === '(program)') continue;
    const name = `${fn} ${n.callFrame.url ? path.basename(n.callFrame.url) : ''}`.trim();
    self.set(name, (self.get(name) || 0) + (profile.timeDeltas[i] || 0));
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  // How much of the profiled span the page's thread worked at all: the
  // rest it waited (for the network, storage or a timer).
  let all = 0;
  let idle = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    all += profile.timeDeltas[i] || 0;
    if (byId.get(profile.samples[i]).callFrame.functionName === '(idle)') idle += profile.timeDeltas[i] || 0;
  }
  const top = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 25);
  console.log(`\n${title}; the page's thread idle ${f(idle / 1000, 1)} of ${f(all / 1000, 1)} ms sampled; self time of the rest, top 25:`);
  for (const [name, us] of top) console.log(`  ${(100 * us / total).toFixed(1).padStart(5)}%  ${name}`);
  record({ ...row, sampled_ms: all / 1000, idle_ms: idle / 1000, top: top.map(([name, us]) => ({ name, pct: +(100 * us / total).toFixed(1) })) });
}

async function profileCatchup(page, wsUrl, stream, n) {
  // Chrome's sampling profiler over one catch-up (snapshots every 1000,
  // the default): where applying remote events spends its time.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Profiler.enable');
  await cdp.send('Profiler.setSamplingInterval', { interval: 50 });
  const finished = new Promise((resolve) => cdp.once('Profiler.consoleProfileFinished', (e) => resolve(e.profile)));
  const c = await page.evaluate((a) => window.bench.catchup(a), { url: wsUrl, stream, n, snapshotEvery: 1000, profile: true });
  printProfile(await finished, `profile of a catch-up of ${n} events (${f(c.to_head_ms, 0)} ms to offset = head under the profiler)`, { bench: 'browser-profile', what: 'catchup', to_head_ms: c.to_head_ms });
}

async function metric(metricsUrl, name) {
  const text = await (await fetch(metricsUrl)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };

async function benchTabs(origin, wsUrl, metricsUrl) {
  const TABS = 5;
  const n = opts.quick ? 50 : 200;
  console.log(`\n(e) ${TABS} tabs on one database and stream; tab 1 dispatches ${n} actions, one every 20 ms`);
  console.log('| connection | WebSocket connections (max sampled) | events sent by the server per event | dispatch in tab 1 → state change in tab 2, p50 ms | p99 ms | in every other tab, p50 ms | p99 ms |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const share of [true, false]) {
    const stream = `tabs-${share}-${Date.now().toString(36)}`;
    const dbName = `bench-tabs-${share}-${Date.now().toString(36)}`;
    const pages = [];
    for (let i = 0; i < TABS; i++) {
      const p = await browser.newPage();
      p.setDefaultTimeout(120_000);
      p.on('pageerror', (e) => process.stderr.write(`tab ${i} page error: ${e.message}\n`));
      await p.goto(`${origin}/bench/browser/page.html`);
      await p.waitForFunction(() => window.benchReady === true);
      await p.evaluate((a) => window.bench.tabOpen(a), { url: wsUrl, stream, dbName, shareConnection: share });
      pages.push(p);
    }
    const until = async (what, pred, ms = 60_000) => {
      const t0 = Date.now();
      for (;;) {
        const st = await Promise.all(pages.map((p) => p.evaluate(() => window.bench.tabStatus())));
        if (pred(st)) return st;
        if (Date.now() - t0 > ms) throw new Error(`tabs: timed out waiting for ${what}: ${JSON.stringify(st)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await until('every tab online', (st) => st.every((s) => s.online));
    const delivered0 = await metric(metricsUrl, 'logsync_events_delivered_total');
    let maxConns = await metric(metricsUrl, 'logsync_connections');
    const sampler = setInterval(async () => { maxConns = Math.max(maxConns, await metric(metricsUrl, 'logsync_connections')); }, 100);
    await pages[0].evaluate((a) => window.bench.tabDispatch(a), { name: 'tab1', n, gapMs: 20 });
    await until('every tab at the last offset', (st) => st.every((s) => s.offset >= n && s.pending === 0 && s.items >= n));
    clearInterval(sampler);
    maxConns = Math.max(maxConns, await metric(metricsUrl, 'logsync_connections'));
    const delivered = await metric(metricsUrl, 'logsync_events_delivered_total') - delivered0;
    const second = await pages[1].evaluate(() => window.bench.tabLatencies());
    const others = (await Promise.all(pages.slice(1).map((p) => p.evaluate(() => window.bench.tabLatencies())))).flat();
    const row = {
      bench: 'tabs', tabs: TABS, actions: n, shared: share, max_connections: maxConns,
      events_sent_per_event: delivered / n,
      tab2_p50_ms: pct(second, 0.5), tab2_p99_ms: pct(second, 0.99),
      others_p50_ms: pct(others, 0.5), others_p99_ms: pct(others, 0.99),
    };
    record(row);
    console.log(`| ${share ? 'shared (one leader)' : 'one per tab (shareConnection: false)'} | ${maxConns} | ${f(row.events_sent_per_event, 2)} | ${f(row.tab2_p50_ms, 1)} | ${f(row.tab2_p99_ms, 1)} | ${f(row.others_p50_ms, 1)} | ${f(row.others_p99_ms, 1)} |`);
    for (const p of pages) {
      await p.evaluate(() => window.bench.tabClose());
      await p.close();
    }
  }
}

// ---- main ------------------------------------------------------------------------

async function main() {
  statics = await startStatics();
  const origin = `http://127.0.0.1:${statics.address().port}`;
  const started = await startServer();
  server = started.proc;
  const wsUrl = `ws://${started.addr}/v1/ws`;

  const userDataDir = fs.mkdtempSync(path.join(scratch, 'chromium-'));
  browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const version = browser.browser()?.version() ?? spawnSync('/usr/bin/chromium', ['--version'], { encoding: 'utf8' }).stdout.trim();
  const page = browser.pages()[0] ?? await browser.newPage();
  page.setDefaultTimeout(600_000);
  page.on('pageerror', (e) => process.stderr.write(`page error: ${e.message}\n`));
  await page.goto(`${origin}/bench/browser/page.html`);
  await page.waitForFunction(() => window.benchReady === true);
  const isolated = await page.evaluate(() => self.crossOriginIsolated);
  record({ bench: 'browser-env', chromium: version, cross_origin_isolated: isolated });
  console.log(`chromium ${version}; cross-origin isolated (5 µs timers): ${isolated}`);

  const { init_ms: initMs } = await page.evaluate(() => window.bench.initTime());
  record({ bench: 'browser-init', init_ms: initMs });
  console.log(`wasm module load + instantiate: ${f(initMs, 1)} ms`);

  const want = (what) => !opts.only || opts.only.has(what);
  if (opts.profile) await profileDispatch(page);

  // (a) dispatch vs Redux
  if (want('dispatch')) {
  console.log('\n(a) dispatch: µs per dispatch, min / median / max over repeats');
  console.log('| reducer | Redux | Redux + JSON round trip | Logsync | Logsync ÷ Redux | Logsync ÷ (Redux + JSON) | dispatch → all confirmed, intents/s |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const [reducer, perTick] of [['list', false], ['counter', false], ['list', true], ['counter', true]]) {
    const runs = await page.evaluate((a) => window.bench.dispatch(a), { url: wsUrl, reducer, repeats: P.dispatchRepeats, ops: P.dispatchOps, perTick });
    runs.forEach((r, i) => record({ bench: 'dispatch', reducer, per_tick: perTick, repeat: i + 1, ops: P.dispatchOps, ...r, confirm_intents_per_s: P.dispatchOps / (r.confirm_all_ms / 1000) }));
    console.log(`| ${reducer}${perTick ? ', one per microtask' : ''} | ${mmm(runs.map((r) => r.redux_us), 3)} | ${mmm(runs.map((r) => r.redux_json_us), 3)} | ${mmm(runs.map((r) => r.logsync_us), 2)} | ${mmm(runs.map((r) => r.ratio), 1)} | ${mmm(runs.map((r) => r.ratio_vs_json), 1)} | ${mmm(runs.map((r) => P.dispatchOps / (r.confirm_all_ms / 1000)), 0)} |`);
  }
  }

  // (b) + (d) catch-up from the server
  if (want('catchup')) {
  const n = P.catchupEvents;
  const stream = `catchup/${n}-${Date.now().toString(36)}`;
  seed(wsUrl, stream, n);
  const formatStream = `format-${Date.now().toString(36)}`;
  seed(wsUrl, formatStream, 50);
  const fmt = await page.evaluate((a) => window.bench.checkFormat(a), { url: wsUrl, stream: formatStream, n: 50 });
  record({ bench: 'format-check', ...fmt });
  console.log(`stored-event format check: ${fmt.records} records written by the store, re-made byte for byte by the seeding encoder`);
  console.log(`\n(b, d) catch-up of ${n} events from the server, min / median / max over ${P.catchupRepeats}`);
  console.log('| snapshots | to first batch ms | to offset = head ms | to all written ms | applied events/s | plain JS fold events/s | applied ÷ fold |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const [label, every] of [['every 1000 (default)', 1000], ['off', 1e9]]) {
    if (label === 'off' && opts.quick) continue;
    const runs = [];
    for (let r = 0; r < (label === 'off' ? 1 : P.catchupRepeats); r++) {
      const c = await page.evaluate((a) => window.bench.catchup(a), { url: wsUrl, stream, n, snapshotEvery: every });
      const fo = await page.evaluate((a) => window.bench.fold(a), { n });
      const run = { ...c, ...fo, apply_vs_fold: c.apply_events_per_s / fo.fold_events_per_s };
      runs.push(run);
      record({ bench: 'catchup', events: n, snapshots: label, repeat: r + 1, ...run });
    }
    console.log(`| ${label} | ${mmm(runs.map((r) => r.first_batch_ms), 0)} | ${mmm(runs.map((r) => r.to_head_ms), 0)} | ${mmm(runs.map((r) => r.to_written_ms), 0)} | ${mmm(runs.map((r) => r.apply_events_per_s), 0)} | ${mmm(runs.map((r) => r.fold_events_per_s), 0)} | ${mmm(runs.map((r) => r.apply_vs_fold), 2)} |`);
  }
  if (opts.profileCatchup) await profileCatchup(page, wsUrl, stream, n);

  }

  // (e) tabs
  if (want('tabs')) await benchTabs(origin, wsUrl, `http://${started.addr}/metrics`);

  // (c) start-up
  if (want('startup')) {
  console.log(`\n(c) start-up: openStore (no network) → first getState(), ms, min / median / max over ${P.startupRuns}`);
  console.log('| stored events | stored as | records read | Logsync start-up | plain IndexedDB read of the same records | seeding s |');
  console.log('|---:|---|---:|---:|---:|---:|');
  const cases = [
    ...P.startupSnap.map((size) => ({ n: size, tail: Math.min(999, size), label: 'snapshot + 999 events (worst case)', snapshotEvery: 1000 })),
    ...P.startupReplay.map((size) => ({ n: size, tail: size, label: 'events only (snapshots off)', snapshotEvery: 1e9 })),
  ];
  for (const c of cases) {
    // --profile-startup: the largest replay once more, under the profiler.
    const profiled = opts.profileStartup && c === cases[cases.length - 1];
    let cdp = null;
    let finished = null;
    if (profiled) {
      cdp = await page.context().newCDPSession(page);
      await cdp.send('Profiler.enable');
      await cdp.send('Profiler.setSamplingInterval', { interval: 50 });
      finished = new Promise((resolve) => cdp.once('Profiler.consoleProfileFinished', (e) => resolve(e.profile)));
    }
    const r = await page.evaluate((a) => window.bench.startup(a), { n: c.n, tail: c.tail, runs: P.startupRuns, snapshotEvery: c.snapshotEvery, profile: profiled });
    if (profiled) printProfile(await finished, `profile of a start-up with ${c.tail} stored events`, { bench: 'browser-profile', what: 'startup', events: c.tail });
    const s = stats(r.store_ms);
    record({ bench: 'startup', events: c.n, stored: c.label, tail_events: c.tail, runs: P.startupRuns, store_ms: r.store_ms, idb_ms: r.idb_ms, median_ms: s.median, idb_median_ms: stats(r.idb_ms).median, seed_ms: r.seed_ms });
    console.log(`| ${c.n} | ${c.label} | ${c.tail + (c.tail < c.n ? 1 : 0)} | ${mmm(r.store_ms, 1)} | ${mmm(r.idb_ms, 1)} | ${f(r.seed_ms / 1000, 1)} |`);
  }
  }

  // (f) a page's first store: a new tab imports the package and opens a
  // store of 1,000 stored events (the "import → usable store"):
  // as the package's files come (unbundled), and as an app ships them (one
  // minified bundle with the wasm file beside it), fetched again each time
  // (a first visit) or from the browser's cache (a return visit).
  if (want('first')) {
  const bundleDir = path.join(scratch, 'first');
  await bundlePackage(bundleDir);
  console.log(`\n(f) first store of a new page: import of the package → a store's first getState(), 1,000 stored events, ms, min / median / max over ${P.startupRuns}`);
  console.log('| stored as | the package as | import of the package | createSyncStore (the wasm fetched, compiled, instantiated; the store opened) → state | import → usable store | navigation start → usable store |');
  console.log('|---|---|---:|---:|---:|---:|');
  for (const c of [
    { n: 1000, tail: 999, label: 'snapshot + 999 events', snapshotEvery: 1000 },
    { n: 1000, tail: 1000, label: 'events only', snapshotEvery: 1e9 },
  ]) {
    for (const [how, pkg] of [
      ['— (plain IndexedDB read of the same records in a new page)', null],
      ['its files (unbundled), fetched again', '/js/src/index.js'],
      ['one minified bundle, fetched again', '/first/nocache/index.js'],
      ['one minified bundle, from the cache', '/first/cached/index.js'],
    ]) {
      const seeded = await page.evaluate((a) => window.bench.seedFirst(a), { n: c.n, tail: c.tail });
      const runs = [];
      // Run 0 is a warm-up (the database files' first use, the cache
      // filled), not reported.
      for (let r = 0; r <= P.startupRuns; r++) {
        const tab = await browser.newPage();
        try {
          const q = new URLSearchParams({ pkg: pkg ?? '', plain: pkg ? '0' : '1', db: seeded.dbName, stream: seeded.stream, n: String(c.n), snapshotEvery: String(c.snapshotEvery) });
          await tab.goto(`${origin}/bench/browser/first.html?${q}`);
          const got = await (await tab.waitForFunction(() => window.first, null, { timeout: 60_000 })).jsonValue();
          if (got.error) throw new Error(`first store: ${got.error}`);
          if (r > 0) runs.push(got);
        } finally {
          await tab.close();
        }
      }
      await page.evaluate((a) => window.bench.dropSeeded(a), seeded);
      const col = (k) => runs.map((x) => x[k]);
      if (!pkg) {
        record({ bench: 'first-store-plain-read', stored: c.label, runs: runs.length, plain_ms: col('plain_ms'), median_ms: stats(col('plain_ms')).median });
        console.log(`| ${c.label} | ${how} | | ${mmm(col('plain_ms'), 1)} | | |`);
        continue;
      }
      record({ bench: 'first-store', stored: c.label, package: how, runs: runs.length, import_ms: col('import_ms'), open_ms: col('open_ms'), total_ms: col('total_ms'), navigation_ms: col('navigation_ms'), median_ms: stats(col('total_ms')).median });
      console.log(`| ${c.label} | ${how} | ${mmm(col('import_ms'), 1)} | ${mmm(col('open_ms'), 1)} | ${mmm(col('total_ms'), 1)} | ${mmm(runs.map((x) => x.navigation_ms + x.total_ms), 1)} |`);
    }
  }
  }
}

/** The package as an app's production build ships it: `import 'logsync'`
 * bundled and minified into `dir/index.js` (as js/scripts/size.mjs
 * measures it), the wasm file beside it, where the glue looks for it. */
async function bundlePackage(dir) {
  const esbuild = createRequire(path.join(root, 'js', 'package.json'))('esbuild');
  fs.mkdirSync(dir, { recursive: true });
  await esbuild.build({
    entryPoints: [path.join(opts.jsDir ?? path.join(root, 'js'), 'src', 'index.js')],
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    outfile: path.join(dir, 'index.js'),
    logLevel: 'silent',
    // With --wasm-dir, that build's glue beside its module: the names they
    // find each other by differ from build to build.
    plugins: opts.wasmDir ? [{
      name: 'wasm-dir',
      setup(build) {
        build.onResolve({ filter: /\/logsync_wasm\.js$/ }, () => ({ path: path.join(opts.wasmDir, 'logsync_wasm.js') }));
      },
    }] : [],
  });
  fs.copyFileSync(path.join(opts.wasmDir ?? path.join(opts.jsDir ?? path.join(root, 'js'), 'wasm'), 'logsync_wasm_bg.wasm'), path.join(dir, 'logsync_wasm_bg.wasm'));
}

main().then(
  async () => { await cleanup(); },
  async (e) => { process.stderr.write(`bench/browser: ${e.stack || e}\n`); await cleanup(); process.exit(1); },
);
