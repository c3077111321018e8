// The intent lifecycle and catch-up progress against a real
// logsync-server (started on a free port and stopped by PID through the
// repository's server harness), on the real wasm module in Node: IndexedDB
// is fake-indexeddb, the WebSocket is the `ws` package's (Node 20 has none).
// Needs target/release/logsync-server (scripts/test-js.sh builds it).
import 'fake-indexeddb/auto';
import './wasm-node.mjs';
import { WebSocket } from 'ws';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogsyncStore, createSyncStore } from 'logsync';
import { SERVER_BIN, startServer } from '../../tests/e2e/lib/server.mjs';

// A browser ignores an error event nobody listens to; Node's EventEmitter
// throws it. The store drops its handlers from a socket it gave up on, whose
// late `ECONNREFUSED` would then crash the test process.
class NodeWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    this.on('error', () => {});
  }
}
globalThis.WebSocket ??= NodeWebSocket;

const skip = existsSync(SERVER_BIN) ? false : `${SERVER_BIN} is not built (scripts/test-js.sh builds it)`;
const MAX_PAYLOAD = 200;
let server;
let staticDir;

before(async () => {
  if (skip) return;
  staticDir = mkdtempSync(join(tmpdir(), 'logsync-online-'));
  writeFileSync(join(staticDir, 'index.html'), '<!doctype html><title>logsync</title>');
  server = await startServer({ staticDir, args: ['--max-payload-bytes', String(MAX_PAYLOAD)] });
});
after(async () => {
  if (server) await server.close();
  if (staticDir) rmSync(staticDir, { recursive: true, force: true });
});

const list = (state = [], action) => (action.type === 'add' ? [...state, action.id] : state);
const options = (stream, extra = {}) => ({
  url: `ws://127.0.0.1:${server.port}/v1/ws`,
  stream,
  reducer: list,
  dbName: `online-${randomUUID()}`,
  devtools: false,
  backoffMinMs: 50,
  backoffMaxMs: 200,
  ...extra,
});

async function until(what, check, ms = 10_000) {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

// The events of one action, as [type, seq known?, offset or code].
const fate = (events, id) => events
  .filter((e) => e.action.id === id)
  .map((e) => [e.type, e.seq === null ? 'no seq' : 'seq', e.offset ?? e.code].filter((x) => x !== undefined));

test('confirmed: pending → sent → confirmed at its offset, with its seq', { skip }, async (t) => {
  const stream = `intents/${randomUUID()}`;
  const store = createLogsyncStore(options(stream));
  t.after(() => store.close());
  const events = [];
  store.onIntent((e) => events.push(e));
  await store.ready;
  await until('online', () => store.status.online);
  store.dispatch({ type: 'add', id: 'a' });
  await store.synced();
  await until('the confirmation', () => events.some((e) => e.type === 'confirmed'));
  assert.deepEqual(fate(events, 'a'), [['pending', 'no seq'], ['sent', 'seq'], ['confirmed', 'seq', 1]]);
  const seqs = new Set(events.filter((e) => e.seq !== null).map((e) => e.seq));
  assert.equal(seqs.size, 1, 'one seq throughout');
  assert.equal(store.status.offset, 1);
  assert.equal(store.status.behind, 0);
});

test('discarded after it was sent: the server takes it all the same, and it is confirmed (not an event of others)', { skip }, async (t) => {
  const stream = `intents/${randomUUID()}`;
  const monitor = [];
  const extension = { connect: () => ({ init() {}, send: (action) => monitor.push(action.type), subscribe: () => () => {} }) };
  const store = createLogsyncStore(options(stream, { devtools: { extension } }));
  t.after(() => store.close());
  const events = [];
  // Discarded as soon as it is sent, before the server's answer can come.
  store.onIntent((e) => {
    events.push(e);
    if (e.type === 'sent') store.discard(e.seq);
  });
  await store.ready;
  await until('online', () => store.status.online);
  store.dispatch({ type: 'add', id: 'a' });
  await until('a decided', () => events.length === 3);
  assert.deepEqual(fate(events, 'a'), [['pending', 'no seq'], ['sent', 'seq'], ['confirmed', 'seq', 1]]);
  await store.synced();
  assert.deepEqual(store.getState(), ['a'], 'its event applied');
  assert.equal(events.length, 3, 'no discarded after it');
  assert.ok(!monitor.some((type) => type.startsWith('@@logsync/remote')), `no remote event in the DevTools: ${monitor}`);
});

test('discarded before it was sent: discarded at once', { skip }, async (t) => {
  const stream = `intents/${randomUUID()}`;
  const store = createLogsyncStore(options(stream, { connect: false }));
  t.after(() => store.close());
  const events = [];
  store.onIntent((e) => events.push(e));
  await store.ready;
  store.dispatch({ type: 'add', id: 'a' });
  await until('a written', () => store.pending()[0]?.seq != null);
  store.discard(store.pending()[0].seq);
  await until('a decided', () => events.length === 2);
  store.reconnect();
  await store.synced();
  assert.deepEqual(fate(events, 'a'), [['pending', 'no seq'], ['discarded', 'seq']]);
  assert.deepEqual(store.getState(), []);
  assert.equal(store.status.offset, 0, 'withdrawn: not in the log');
});

test('rebased: another device\'s event comes first; then confirmed after it; catch-up progress in status', { skip }, async (t) => {
  const stream = `intents/${randomUUID()}`;
  const monitor = [];
  const extension = { connect: () => ({ init() {}, send: (action) => monitor.push(action.type), subscribe: () => () => {} }) };
  const a = await createSyncStore(options(stream, { devtools: { extension } }));
  const b = await createSyncStore(options(stream));
  t.after(() => Promise.all([a.close(), b.close()]));
  await until('both online', () => a.status.online && b.status.online);
  a.goOffline();
  await until('a offline', () => !a.status.online);
  const events = [];
  a.onIntent((e) => events.push(e));
  a.dispatch({ type: 'add', id: 'x' });
  await until('x written', () => a.status.writing === 0);
  b.dispatch({ type: 'add', id: 'y1' });
  b.dispatch({ type: 'add', id: 'y2' });
  await b.synced();
  const behind = [];
  a.onStatus((s) => behind.push([s.head, s.offset, s.behind]));
  a.reconnect();
  await a.synced();
  await until('x confirmed', () => events.some((e) => e.type === 'confirmed'));
  assert.deepEqual(a.getState(), ['y1', 'y2', 'x']);
  // On reconnect the store subscribes (catch-up: y1, y2) and pushes x. The
  // server mostly answers in two frames — the catch-up, then x's event —
  // and x is rebased onto y2 in between; when it has decided x before it
  // reads the catch-up, all three come in one frame, and x is confirmed
  // with no step in which it waited on top of y2. The DevTools say which.
  const seen = monitor.slice(monitor.indexOf('add (pending)'));
  if (seen.includes('@@logsync/remote (2 events, offset 2)')) {
    assert.deepEqual(fate(events, 'x'), [['pending', 'no seq'], ['sent', 'seq'], ['rebased', 'seq', 2], ['confirmed', 'seq', 3]]);
    assert.deepEqual(seen, ['add (pending)', '@@logsync/remote (2 events, offset 2)', 'add (rebased onto 2)', 'add (confirmed at 3)'],
      'the DevTools show the same fates, and the remote events');
  } else {
    assert.deepEqual(fate(events, 'x'), [['pending', 'no seq'], ['sent', 'seq'], ['confirmed', 'seq', 3]]);
    assert.deepEqual(seen, ['add (pending)', '@@logsync/remote (2 events, offset 3)', 'add (confirmed at 3)']);
  }
  assert.ok(behind.every(([head, offset, n]) => n === Math.max(0, head - offset)), `behind = head - offset: ${JSON.stringify(behind)}`);
  assert.equal(a.status.behind, 0);
});

test('rejected: the server refuses an action with its code; the others are confirmed', { skip }, async (t) => {
  const stream = `intents/${randomUUID()}`;
  const opts = options(stream, { connect: false });
  const store = createLogsyncStore(opts);
  t.after(() => store.close());
  const events = [];
  store.onIntent((e) => events.push(e));
  const rejections = [];
  store.onRejected((r) => rejections.push(r.code));
  store.dispatch({ type: 'add', id: 'ok' });
  store.dispatch({ type: 'add', id: 'big', pad: 'p'.repeat(MAX_PAYLOAD) }); // within the store's default limit, over the server's
  await store.ready;
  await until('both written', () => store.status.writing === 0);
  store.reconnect();
  await until('both decided', () => events.filter((e) => e.type === 'confirmed' || e.type === 'rejected').length === 2);
  assert.deepEqual(fate(events, 'ok'), [['pending', 'no seq'], ['sent', 'seq'], ['confirmed', 'seq', 1]]);
  assert.deepEqual(fate(events, 'big'), [['pending', 'no seq'], ['sent', 'seq'], ['rejected', 'seq', 'PAYLOAD_TOO_LARGE']]);
  assert.deepEqual(rejections, ['PAYLOAD_TOO_LARGE']);
  assert.deepEqual(store.getState(), ['ok']);
});

// Last in this file: it replaces the server's database.
test('a new log epoch: pending actions are renumbered, neither reported decided early nor twice', { skip }, async (t) => {
  const stream = `intents/${randomUUID()}`;
  const store = await createSyncStore(options(stream));
  t.after(() => store.close());
  store.dispatch({ type: 'add', id: 'old' });
  await store.synced();
  const events = [];
  store.onIntent((e) => events.push(e));
  const errors = [];
  store.onError((err) => errors.push(err.code));
  await server.reset();
  await until('offline', () => !store.status.online);
  store.dispatch({ type: 'add', id: 'p1' });
  store.dispatch({ type: 'add', id: 'p2' });
  await until('seqs', () => store.pending().length === 2 && store.pending().every((p) => p.seq !== null));
  await server.start();
  store.reconnect();
  await until('EPOCH_CHANGED', () => errors.includes('EPOCH_CHANGED'));
  await store.synced();
  await until('both confirmed', () => events.filter((e) => e.type === 'confirmed').length === 2);
  assert.deepEqual(store.getState(), ['p1', 'p2']);
  const steps = (id) => fate(events, id).map(([type, seq]) => [type, seq]);
  assert.deepEqual(steps('p1'), [['pending', 'no seq'], ['sent', 'seq'], ['confirmed', 'seq']]);
  assert.deepEqual(steps('p2'), [['pending', 'no seq'], ['sent', 'seq'], ['confirmed', 'seq']]);
  const confirmed = events.filter((e) => e.type === 'confirmed');
  assert.deepEqual(confirmed.map((e) => [e.action.id, e.seq]), [['p1', 1], ['p2', 2]], 'with the seqs of the new numbering');
  // Events 1 and 2 of the new log; when both arrive in one batch, both are reported at 2.
  assert.ok(confirmed[0].offset >= 1 && confirmed[1].offset === 2, JSON.stringify(confirmed.map((e) => e.offset)));
});
