// The packed `logsync` tarball, installed into a fresh Vite app whose only
// Logsync-specific configuration is the README's one line, works in
// Chromium against a real server, built and in the dev server: init()
// finds the .wasm by itself, a store opens, dispatches, synced() resolves.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { launchBrowser } from './lib/browser.mjs';
import { ROOT, startServer } from './lib/server.mjs';

let dir;
let server;
let browser;
let vite;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'logsync-pack-'));
  const app = join(dir, 'app');
  const pkg = join(app, 'node_modules', 'logsync');
  mkdirSync(pkg, { recursive: true });
  execFileSync('npm', ['pack', '--ignore-scripts', '--pack-destination', dir], { cwd: join(ROOT, 'js'), stdio: 'ignore' });
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
  execFileSync('tar', ['-xzf', join(dir, tarball), '-C', pkg, '--strip-components=1']);

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
