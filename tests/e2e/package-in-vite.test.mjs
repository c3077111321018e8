// The packed `logsync` tarball in fresh Vite apps, in Chromium against a
// real server:
//   1. an app whose only Logsync-specific configuration is the README's one
//      line for Vite 7 (the React example's Vite), built and in the dev server:
//      init() finds the .wasm by itself, a store opens, dispatches, synced()
//      resolves;
//   2. the README's "Your first app", followed word for word in a fresh
//      folder (see below): the dev server with its /v1 proxy, then the
//      production build served by logsync-server, reloaded offline.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { launchBrowser, waitFor } from './lib/browser.mjs';
import { ROOT, SERVER_BIN, startServer } from './lib/server.mjs';
import { waitOfflineReady } from './lib/todo-page.mjs';

// The guide's commands run in the environment this file started with, as in
// a terminal: not with the NODE_ENV=production Vite's build sets in this
// process (npm would then skip devDependencies), nor with the test runner's
// marker (a Node process that inherits NODE_TEST_CONTEXT reports to the
// runner instead of printing).
const { NODE_TEST_CONTEXT: _runner, ...TERMINAL_ENV } = process.env;

let dir;
let server;
let browser;
let vite;
/** Processes the first-app test started, stopped at the end whatever happens. */
const background = new Set();

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'logsync-pack-'));
  // What the first-app guide's repository step leaves: the package's
  // tarball in logsync/js/, the server in logsync/target/release/.
  const packed = join(dir, 'logsync', 'js');
  mkdirSync(packed, { recursive: true });
  execFileSync('npm', ['pack', '--ignore-scripts', '--pack-destination', packed], { cwd: join(ROOT, 'js'), stdio: 'ignore' });
  const tarball = readdirSync(packed).find((f) => f.endsWith('.tgz'));
  if (!existsSync(SERVER_BIN)) throw new Error(`server binary not found at ${SERVER_BIN}: run scripts/test-js.sh (it builds it)`);
  mkdirSync(join(dir, 'logsync', 'target', 'release'), { recursive: true });
  symlinkSync(SERVER_BIN, join(dir, 'logsync', 'target', 'release', 'logsync-server'));

  const app = join(dir, 'app');
  const pkg = join(app, 'node_modules', 'logsync');
  mkdirSync(pkg, { recursive: true });
  execFileSync('tar', ['-xzf', join(packed, tarball), '-C', pkg, '--strip-components=1']);

  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'fresh-app', private: true, type: 'module' }));
  writeFileSync(join(app, 'index.html'), '<!doctype html><title>fresh</title><pre id="out"></pre><script type="module" src="/main.js"></script>');
  writeFileSync(join(app, 'vite.config.js'), "export default { optimizeDeps: { exclude: ['logsync'] } };\n");
  writeFileSync(join(app, 'main.js'), `
import { createSyncStore, LogsyncError } from 'logsync';
const reducer = (state = { n: 0 }, action) => (action.type === 'add' ? { n: state.n + action.by } : state);
try {
  const store = await createSyncStore({
    url: new URLSearchParams(location.search).get('ws') ?? \`ws://\${location.host}/v1/ws\`,
    stream: 'fresh/app', reducer, dbName: 'fresh-app',
  });
  const { dispatch } = store;
  dispatch({ type: 'add', by: 2 });
  dispatch({ type: 'add', by: 3 });
  let misuse = null;
  try { dispatch('add'); } catch (err) { misuse = err instanceof LogsyncError ? err.code : String(err); }
  await store.synced();
  window.result = { state: store.getState(), status: store.status, misuse };
} catch (err) {
  window.result = { error: \`\${err.code}: \${err.message}\` };
}
document.getElementById('out').textContent = JSON.stringify(window.result);
`);
  // Vite from the React example's install (nothing is downloaded here).
  vite = await import(pathToFileURL(join(ROOT, 'examples', 'todo-react', 'node_modules', 'vite', 'dist', 'node', 'index.js')).href);
  await vite.build({ root: app, logLevel: 'warn', configFile: join(app, 'vite.config.js') });

  server = await startServer({ staticDir: join(app, 'dist') });
  browser = await launchBrowser();
});

after(async () => {
  for (const p of background) await p.stop();
  await browser?.close();
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function runApp(pageUrl, expectedOffset) {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(pageUrl);
    await page.waitForFunction(() => window.result !== undefined, null, { timeout: 15_000 });
    const result = await page.evaluate(() => window.result);
    assert.equal(result.error, undefined, result.error);
    assert.equal(result.misuse, 'INVALID_REQUEST');
    assert.equal(result.status.pending, 0);
    assert.equal(result.status.offset, expectedOffset);
    assert.equal(result.status.online, true);
    return result.state;
  } finally {
    await context.close();
  }
}

test('vite build: the .wasm is an emitted asset and the app syncs', async () => {
  const wasmAssets = readdirSync(join(dir, 'app', 'dist', 'assets')).filter((f) => f.endsWith('.wasm'));
  assert.equal(wasmAssets.length, 1, 'Vite emitted the .wasm as an asset');
  assert.deepEqual(await runApp(`${server.url}/`, 2), { n: 5 });
});

test('vite dev server: the same app works with the same config', async () => {
  const dev = await vite.createServer({
    root: join(dir, 'app'),
    configFile: join(dir, 'app', 'vite.config.js'),
    logLevel: 'error',
    server: { host: '127.0.0.1', port: 0 },
  });
  await dev.listen();
  try {
    const devUrl = dev.resolvedUrls.local[0];
    // A second device on the same stream: it starts from the first one's events.
    assert.deepEqual(await runApp(`${devUrl}?ws=${encodeURIComponent(`ws://${new URL(server.url).host}/v1/ws`)}`, 4), { n: 10 });
  } finally {
    await dev.close();
  }
});

// ---------------------------------------------------------------------------
// js/README.md, "Your first app", followed word for word in a fresh folder.
//
// The README's fenced blocks whose info string has `first-app:KIND` are the
// script, taken in their order:
//   first-app:repo        the commands run in the repository (build the server,
//                         build and pack the package). The block must read
//                         exactly REPO_BLOCK below; the test does not rebuild
//                         (scripts/test-js.sh ran the same builds before it):
//                         it packs js/ into <tmp>/logsync/js/ and links the
//                         built server to <tmp>/logsync/target/release/,
//                         so the guide's `../logsync/...` paths hold as written
//   first-app:run         shell commands, run with bash -e; a `cd` carries over
//   first-app:file=PATH   written to PATH in the current folder
//   first-app:serve       a long-running command, started in the background and
//                         stopped by its PID (its process group)
//   first-app:check       a command whose output the test checks
// The only changes made to what the README says:
//   - `--listen 127.0.0.1:8080` becomes `--listen 127.0.0.1:0` (a free port;
//     the server prints the real one), and `http://127.0.0.1:8080` in a check
//     becomes that real address;
//   - `npm run dev` gets `-- --host 127.0.0.1 --port 0` and the environment
//     variable LOGSYNC_SERVER (the proxy target the guide's vite.config.js
//     reads, defaulting to http://127.0.0.1:8080) set to the server's address;
//   - the browser steps the guide describes in prose (open the page, press
//     +1, reload with the network off) are done with Playwright.
// npm installs from the registry into the fresh folder (npm's cache makes
// this quick after the first run). The test fails when a block is added,
// removed or reordered without the test following, and when the guide's
// app does not do what the guide says it does.
const REPO_BLOCK = `cargo build --release -p server-stub
cd js && npm install && npm run build && npm pack
`;

function firstAppSteps() {
  const markdown = readFileSync(join(ROOT, 'js', 'README.md'), 'utf8');
  const steps = [];
  for (const m of markdown.matchAll(/^```\w* first-app:([^\s=]+)(?:=(\S+))?\n([\s\S]*?)^```$/gm)) {
    steps.push({ kind: m[1], path: m[2], text: m[3] });
  }
  return steps;
}

/** Runs `script` with bash -e in `cwd`; returns { stdout, cwd after it }. */
function runShell(script, cwd, env) {
  const marker = join(dir, '.first-app-cwd');
  const stdout = execFileSync('bash', ['-euo', 'pipefail', '-c', `${script}\npwd > ${JSON.stringify(marker)}\n`], {
    cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'],
  });
  const after = readFileSync(marker, 'utf8').trim();
  rmSync(marker);
  return { stdout, cwd: after };
}

/**
 * Starts `command` in its own process group; resolves with the first URL
 * a line of its stdout matching `pattern` captures.
 */
async function startBackground(command, args, { cwd, env, pattern, shell = false }) {
  const child = spawn(command, args, { cwd, env, shell, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  child.stdout.on('data', (d) => { log += d; });
  const exited = new Promise((res) => child.once('exit', res));
  const url = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`${command} ${args.join(' ')} printed no URL within 20 s\n${log}`)), 20_000);
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = pattern.exec(line);
      if (m) { clearTimeout(timer); res(m[1]); }
    });
    exited.then((code) => { clearTimeout(timer); rej(new Error(`${command} exited (${code}) before printing its URL\n${log}`)); });
  });
  return {
    url,
    /** What it printed so far (stdout and stderr). */
    output: () => log,
    /** SIGTERM to the process group, then waits for the exit. */
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      try { process.kill(-child.pid, 'SIGTERM'); } catch { /* already gone */ }
      await exited;
    },
  };
}

/** A `first-app:serve` line that runs logsync-server, on `port` (0: a free one). */
async function startGuideServer(line, cwd, env, port) {
  assert.match(line, /^\S*logsync-server( \S+)*$/, `one plain logsync-server command line: ${line}`);
  assert.ok(line.includes('--listen 127.0.0.1:8080'), `the guide's server listens on 127.0.0.1:8080: ${line}`);
  const [bin, ...args] = line.replace('--listen 127.0.0.1:8080', `--listen 127.0.0.1:${port}`).split(' ');
  const proc = await startBackground(resolve(cwd, bin), args, { cwd, env, pattern: /logsync-server listening on (http:\/\/\S+)/ });
  background.add(proc);
  return proc;
}

async function stopBackground(proc) {
  await proc.stop();
  background.delete(proc);
}

/** What the guide's app shows: the count, and "online, 0 pending". */
async function view(page) {
  return page.evaluate(() => ({
    alert: document.querySelector('[role=alert]')?.textContent ?? null,
    count: document.querySelector('output')?.textContent ?? null,
    status: document.querySelector('main p')?.textContent ?? null,
  }));
}

async function waitView(page, what, count, status, timeout = 15_000) {
  await waitFor(what, async () => {
    const v = await view(page);
    if (v.alert) throw new Error(`the app shows an error: ${v.alert}`);
    if (v.count !== count || v.status !== status) throw new Error(`the page shows ${JSON.stringify(v)}`);
    return true;
  }, { timeout });
}

async function serverEvents(url) {
  const r = await fetch(`${url}/v1/streams/counters%2Ffirst/events?after=0`);
  assert.equal(r.status, 200);
  return (await r.json()).events.map((e) => e.payload);
}

test('js README "Your first app", word for word: dev server with the /v1 proxy, then the build served by logsync-server, reloaded offline', async () => {
  const steps = firstAppSteps();
  const env = {
    ...TERMINAL_ENV,
    NO_COLOR: '1',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
  };
  let cwd = dir;
  let at = 0;
  // Runs the `run` and `file` blocks up to the next block of another kind,
  // which must be `kind`.
  const advanceTo = (kind) => {
    for (;;) {
      const step = steps[at++];
      assert.ok(step, `the guide ends where the test expects a first-app:${kind} block`);
      if (step.kind === 'run') {
        cwd = runShell(step.text, cwd, env).cwd;
      } else if (step.kind === 'file') {
        assert.ok(step.path, 'first-app:file=PATH names its file');
        mkdirSync(dirname(join(cwd, step.path)), { recursive: true });
        writeFileSync(join(cwd, step.path), step.text);
      } else {
        assert.equal(step.kind, kind, `block ${at} of the guide`);
        return step.text;
      }
    }
  };

  // 1. The repository: built by scripts/test-js.sh, packed and linked in before().
  assert.equal(advanceTo('repo'), REPO_BLOCK, 'the guide\'s repository step is the one this test stands in for');

  // 2. The app, and 3. development: the server, then Vite's dev server.
  const devServerLine = advanceTo('serve').trim();
  assert.equal(cwd, join(dir, 'my-app'), 'the guide works in my-app/, beside logsync/');
  assert.deepEqual(JSON.parse(readFileSync(join(cwd, 'package.json'), 'utf8')).dependencies.logsync, 'file:../logsync/js/logsync-0.1.0.tgz');
  let api = await startGuideServer(devServerLine, cwd, env, 0);
  assert.equal(advanceTo('serve').trim(), 'npm run dev');
  const dev = await startBackground('npm run dev -- --host 127.0.0.1 --port 0', [], {
    cwd, env: { ...env, LOGSYNC_SERVER: api.url }, shell: true, pattern: /Local:\s+(http:\/\/\S+)/,
  });
  background.add(dev);

  const pageErrors = [];
  const devContext = await browser.newContext();
  try {
    const page = await devContext.newPage();
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(dev.url);
    await waitView(page, 'the app in the dev server, online', '0', 'online, 0 pending');
    await page.getByRole('button', { name: '+1' }).click();
    await waitView(page, '+1 applied and confirmed through the proxy', '1', 'online, 0 pending');
  } finally {
    await devContext.close();
  }
  const check = advanceTo('check');
  assert.ok(check.includes('http://127.0.0.1:8080/'), check);
  const logged = JSON.parse(runShell(check.replaceAll('http://127.0.0.1:8080', api.url), cwd, env).stdout);
  assert.deepEqual(logged.events.map((e) => e.payload), [{ type: 'counter/added', by: 1 }], 'the server\'s log has the action');
  await stopBackground(dev);
  await stopBackground(api);

  // 4. Production: `npm run build`, the server serves dist/.
  const prodServerLine = advanceTo('serve').trim();
  assert.ok(prodServerLine.endsWith('--static dist'), prodServerLine);
  const assets = readdirSync(join(cwd, 'dist', 'assets'));
  assert.equal(assets.filter((f) => f.endsWith('.wasm')).length, 1, `one .wasm among the built assets: ${assets.join(', ')}`);
  const sw = readFileSync(join(cwd, 'dist', 'sw.js'), 'utf8');
  const wasmAsset = assets.find((f) => f.endsWith('.wasm'));
  assert.ok(sw.includes(`"/assets/${wasmAsset}"`), 'the service worker precaches the .wasm');
  api = await startGuideServer(prodServerLine, cwd, env, 0);
  const port = new URL(api.url).port;
  const wasmServed = await fetch(`${api.url}/assets/${wasmAsset}`);
  assert.equal(wasmServed.headers.get('content-type'), 'application/wasm', 'served for streaming compilation');
  await wasmServed.arrayBuffer();

  // Another device (a fresh browser profile): the server's log brings it to 1.
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(`${api.url}/`);
    await waitView(page, 'the built app served by logsync-server', '1', 'online, 0 pending');
    await waitOfflineReady(page);
    await page.getByRole('button', { name: '+1' }).click();
    await waitView(page, '+1 confirmed', '2', 'online, 0 pending');

    // No server and no network: the service worker serves the app, the
    // store opens from IndexedDB.
    await stopBackground(api);
    await context.setOffline(true);
    await page.reload();
    await waitView(page, 'the reload with no network', '2', 'offline, 0 pending');
    await page.getByRole('button', { name: '+1' }).click();
    await waitView(page, '+1 offline, kept in the outbox', '3', 'offline, 1 pending');
    // The action shows at once; its outbox record is written a moment
    // later (one IndexedDB transaction). A reload before that commits
    // would lose it, as it would for any app: wait for the record.
    await waitFor('the outbox record stored', async () => {
      const n = await page.evaluate(() => new Promise((resolve, reject) => {
        const open = indexedDB.open('my-app');
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const db = open.result;
          const req = db.transaction(['outbox'], 'readonly').objectStore('outbox').count();
          req.onsuccess = () => { db.close(); resolve(req.result); };
          req.onerror = () => { db.close(); reject(req.error); };
        };
      }));
      if (n !== 1) throw new Error(`${n} outbox records`);
      return true;
    });
    await page.reload();
    await waitView(page, 'the outbox kept across an offline reload', '3', 'offline, 1 pending');

    // The server back on the same address, then the network.
    api = await startGuideServer(prodServerLine, cwd, env, port);
    await context.setOffline(false);
    await waitView(page, 'back online, the outbox sent', '3', 'online, 0 pending', 30_000);
    assert.deepEqual(await serverEvents(api.url), Array(3).fill({ type: 'counter/added', by: 1 }));
  } finally {
    await context.close();
  }
  assert.equal(at, steps.length, `every block of the guide was run (stopped at ${at} of ${steps.length})`);
  assert.deepEqual(pageErrors, []);
  await stopBackground(api);
});
