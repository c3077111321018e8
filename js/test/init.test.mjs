// init(): idempotent, retried after a failure, and clear when it fails or
// when something needs the module before it. Each case runs in a fresh
// Node process, where the wasm module has not been loaded yet.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const jsDir = fileURLToPath(new URL('..', import.meta.url));

function run(source) {
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', source], { cwd: jsDir, encoding: 'utf8' });
  return JSON.parse(out);
}

test('using the module before init() says to call init()', () => {
  const r = run(`
    import { wasmErrorCodes } from 'logsync';
    try { wasmErrorCodes(); console.log(JSON.stringify({ ok: true })); }
    catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message })); }
  `);
  assert.equal(r.name, 'LogsyncError');
  assert.equal(r.code, 'INVALID_REQUEST');
  assert.match(r.message, /call `await init\(\)` first/);
});

test('a failed load rejects with how to fix it, and the next init() tries again', () => {
  const r = run(`
    import { readFileSync } from 'node:fs';
    import { init, wasmErrorCodes } from 'logsync';
    const result = {};
    const bad = init({ wasm: new Uint8Array([0, 1, 2, 3]) });
    result.same = init() === bad;
    try { await bad; } catch (e) { result.error = { name: e.name, code: e.code, message: e.message, cause: e.cause instanceof Error }; }
    const good = init({ wasm: readFileSync('wasm/logsync_wasm_bg.wasm') });
    result.retried = good !== bad;
    await good;
    result.idempotent = init() === good && init({ wasm: 'ignored' }) === good;
    result.codes = wasmErrorCodes().length;
    console.log(JSON.stringify(result));
  `);
  assert.equal(r.same, true, 'a second call while loading returns the same promise');
  assert.equal(r.error?.name, 'LogsyncError');
  assert.equal(r.error.code, 'INTERNAL');
  assert.match(r.error.message, /could not load its WebAssembly module/);
  assert.match(r.error.message, /optimizeDeps: \{ exclude: \['logsync'\] \}/);
  assert.match(r.error.message, /init\(\{ wasm: url \}\)/);
  assert.equal(r.error.cause, true, 'the cause is kept');
  assert.equal(r.retried, true);
  assert.equal(r.idempotent, true);
  assert.ok(r.codes > 30);
});

test('createSyncStore checks its options before loading anything', () => {
  const r = run(`
    import { createSyncStore } from 'logsync';
    try { await createSyncStore({ url: 'ws://x/v1/ws', stream: 's' }); }
    catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }
  `);
  assert.equal(r.code, 'INVALID_REQUEST');
  assert.match(r.message, /options\.reducer must be a function/);
});

test('a store created at once whose wasm cannot load: usable in memory, onError hears it, ready rejects', () => {
  const r = run(`
    import 'fake-indexeddb/auto';
    import { init, createLogsyncStore } from 'logsync';
    const result = { errors: [] };
    init({ wasm: new Uint8Array([0, 1, 2, 3]) }).catch(() => {});
    const store = createLogsyncStore({ url: 'ws://127.0.0.1:9/v1/ws', stream: 's', dbName: 'x', connect: false, devtools: false,
      reducer: (s = [], a) => (a.type === 'add' ? [...s, a.id] : s) });
    store.onError((e) => result.errors.push(e.code));
    store.dispatch({ type: 'add', id: 'a' });
    try { await store.ready; } catch (e) { result.ready = { name: e.name, code: e.code, message: e.message }; }
    store.dispatch({ type: 'add', id: 'b' });
    result.state = store.getState();
    result.status = { hydrated: store.status.hydrated, lastError: store.status.lastError?.code, pending: store.status.pending };
    await store.close();
    console.log(JSON.stringify(result));
  `);
  assert.equal(r.ready?.name, 'LogsyncError');
  assert.equal(r.ready.code, 'INTERNAL');
  assert.match(r.ready.message, /could not load its WebAssembly module/);
  assert.deepEqual(r.errors, ['INTERNAL']);
  assert.deepEqual(r.state, ['a', 'b']);
  assert.deepEqual(r.status, { hydrated: false, lastError: 'INTERNAL', pending: 0 });
});
