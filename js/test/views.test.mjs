// View stores (createViewStore) against a real logsync-server running the
// TodoMVC module and the seats fixture: a view followed over SSE as a sync
// store writes, params, an unknown view, and a restart from the IndexedDB
// cache while the server is down. Plus the JSON Patch applier on its own.
// IndexedDB is fake-indexeddb; the writer's WebSocket is the `ws` package's.
import 'fake-indexeddb/auto';
import './wasm-node.mjs';
import { WebSocket } from 'ws';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { createLogsyncStore } from 'logsync';
import { applyPatch, createViewStore } from 'logsync/views';
import { readEvents } from '../src/views.js';
import { ROOT, SERVER_BIN, startServer } from '../../tests/e2e/lib/server.mjs';
import todosReducer, { addTodo, assignTodo, initialState, toggleTodo, views as todoViews } from '../../examples/todo-react/src/todos.js';

class NodeWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    this.on('error', () => {});
  }
}
globalThis.WebSocket ??= NodeWebSocket;

const skip = existsSync(SERVER_BIN) ? false : `${SERVER_BIN} is not built (scripts/test-js.sh builds it)`;
let server;
let staticDir;

before(async () => {
  if (skip) return;
  staticDir = mkdtempSync(join(tmpdir(), 'logsync-views-'));
  writeFileSync(join(staticDir, 'index.html'), '<!doctype html><title>logsync</title>');
  server = await startServer({
    staticDir,
    args: [
      '--reducer', `todos/*=${join(ROOT, 'examples/todo-react/src/todos.js')}`,
      '--reducer', `seats/*=${join(ROOT, 'server-stub/tests/fixtures/seats.js')}`,
    ],
  });
});
after(async () => {
  if (server) await server.close();
  if (staticDir) rmSync(staticDir, { recursive: true, force: true });
});

async function until(what, check, ms = 10_000) {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const wsUrl = () => `ws://127.0.0.1:${server.port}/v1/ws`;
const writer = (stream, reducer) => createLogsyncStore({
  url: wsUrl(), stream, reducer, dbName: `views-writer-${randomUUID()}`, devtools: false, backoffMinMs: 50, backoffMaxMs: 200,
});
const viewStore = (extra) => createViewStore({ url: wsUrl(), dbName: `views-${randomUUID()}`, backoffMinMs: 50, backoffMaxMs: 200, ...extra });
const texts = (todos) => (todos ?? []).map((t) => t.text);

test('applyPatch: add, remove, replace on objects and arrays, new objects only along the changed path', () => {
  const doc = Object.freeze({ a: Object.freeze({ x: 1 }), list: Object.freeze([1, 2, 3]), 'p/q': 0, 't~': 0 });
  const next = applyPatch(doc, [
    { op: 'replace', path: '/list/1', value: 20 },
    { op: 'add', path: '/list/-', value: 4 },
    { op: 'add', path: '/list/0', value: 0 },
    { op: 'remove', path: '/list/2' },
    { op: 'replace', path: '/p~1q', value: 1 },
    { op: 'remove', path: '/t~0' },
    { op: 'add', path: '/b', value: { y: [] } },
    { op: 'add', path: '/b/y/0', value: 'z' },
  ]);
  assert.deepEqual(next, { a: { x: 1 }, list: [0, 1, 3, 4], 'p/q': 1, b: { y: ['z'] } });
  assert.deepEqual(doc, { a: { x: 1 }, list: [1, 2, 3], 'p/q': 0, 't~': 0 }, 'the input is unchanged');
  assert.notEqual(next, doc);
  assert.equal(next.a, doc.a, 'an untouched branch is shared');
  assert.deepEqual(applyPatch([1], [{ op: 'replace', path: '', value: { whole: true } }]), { whole: true });
  const proto = applyPatch({}, [{ op: 'add', path: '/__proto__', value: { polluted: true } }]);
  assert.equal(Object.getPrototypeOf(proto), Object.prototype);
  assert.deepEqual(Object.keys(proto), ['__proto__']);
  for (const [ops, what] of [
    [[{ op: 'remove', path: '/missing' }], 'a missing member'],
    [[{ op: 'replace', path: '/list/3' }], 'an index past the end'],
    [[{ op: 'add', path: '/list/5', value: 0 }], 'an add past the end'],
    [[{ op: 'add', path: '/list/01', value: 0 }], 'a leading zero'],
    [[{ op: 'add', path: '/a/x/y', value: 0 }], 'a member of a number'],
    [[{ op: 'move', path: '/a', from: '/b' }], 'an operation the server does not send'],
    [[{ op: 'add', path: 'a', value: 0 }], 'not a pointer'],
  ]) {
    assert.throws(() => applyPatch(doc, ops), { code: 'INVALID_REQUEST' }, what);
  }
});

test('a view store follows the todo module\'s `open` view as a sync store writes', { skip }, async (t) => {
  const stream = `todos/${randomUUID()}`;
  const store = writer(stream, todosReducer);
  const view = viewStore({ url: `http://127.0.0.1:${server.port}/`, stream, view: 'open' });
  t.after(() => { store.close(); view.close(); });
  assert.equal(view.getState(), undefined, 'no result before one is known');
  const seen = [];
  view.subscribe(() => seen.push(view.getState()));
  await view.ready;
  assert.equal(view.status.hydrated, true);
  await until('the first result', () => Array.isArray(view.getState()));
  assert.equal(view.status.online, true);
  assert.deepEqual(view.getState(), []);

  const milk = addTodo('milk');
  store.dispatch(milk);
  store.dispatch(addTodo('eggs'));
  await until('two open todos', () => texts(view.getState()).length === 2);
  assert.deepEqual(texts(view.getState()), ['milk', 'eggs']);
  const before = view.getState();
  store.dispatch(toggleTodo(milk.id));
  await until('milk done', () => texts(view.getState()).join() === 'eggs');
  assert.notEqual(view.getState(), before, 'a change is a new reference');
  assert.equal(before.length, 2, 'the previous result is unchanged');
  await store.synced();
  await until('the view at the writer\'s offset', () => view.status.offset === store.status.offset);
  assert.ok(seen.length >= 3, `listeners heard the changes (${seen.length})`);
  assert.equal(view.status.lastError, null);
});

test('params reach the view (the seats fixture\'s heldBy), a ws:// url is taken as the server', { skip }, async (t) => {
  const stream = `seats/${randomUUID()}`;
  const store = writer(stream, (s = { seats: {} }, a) => (a.type === 'book' ? { seats: { ...s.seats, [a.seat]: a.who } } : s));
  const alice = viewStore({ stream, view: 'heldBy', params: { who: 'alice' } });
  const bob = viewStore({ stream, view: 'heldBy', params: { who: 'bob' } });
  t.after(() => { store.close(); alice.close(); bob.close(); });
  for (const [seat, who] of [['b2', 'alice'], ['a1', 'bob'], ['a3', 'alice']]) store.dispatch({ type: 'book', seat, who });
  await store.synced();
  await until('alice\'s seats', () => alice.getState()?.length === 2);
  await until('bob\'s seats', () => bob.getState()?.length === 1);
  assert.deepEqual(alice.getState(), ['a3', 'b2']);
  assert.deepEqual(bob.getState(), ['a1']);
});

test('the todo module: todo/assigned sets or clears `assignee`, ignores what it does not understand; assignedTo lists open todos', () => {
  const fold = (actions, state = initialState) => actions.reduce((s, a) => todosReducer(s, a), state);
  const milk = { type: 'todo/added', id: 'm', text: 'milk' };
  const eggs = { type: 'todo/added', id: 'e', text: 'eggs' };
  const start = fold([milk, eggs]);
  assert.deepEqual(start.todos[0], { id: 'm', text: 'milk', completed: false }, 'no assignee field on a new todo');

  const assigned = fold([{ type: 'todo/assigned', id: 'm', to: '  bob ' }], start);
  assert.deepEqual(assigned.todos, [{ id: 'm', text: 'milk', completed: false, assignee: 'bob' }, start.todos[1]]);
  assert.equal(assigned.todos[1], start.todos[1], 'the other todo is the same object');
  assert.equal(todosReducer(assigned, { type: 'todo/assigned', id: 'm', to: 'bob' }), assigned, 'the same name again changes nothing');
  for (const to of [null, '', '   ']) {
    const cleared = todosReducer(assigned, { type: 'todo/assigned', id: 'm', to });
    assert.deepEqual(cleared, start, `to ${JSON.stringify(to)} unassigns`);
    assert.ok(!('assignee' in cleared.todos[0]), 'no assignee field once unassigned');
  }
  assert.equal(todosReducer(start, { type: 'todo/assigned', id: 'm', to: null }), start, 'unassigning an unassigned todo changes nothing');
  for (const bad of [
    { type: 'todo/assigned', id: 'nope', to: 'bob' },
    { type: 'todo/assigned', id: 'm', to: 42 },
    { type: 'todo/assigned', id: 'm', to: { name: 'bob' } },
    { type: 'todo/assigned', id: 'm' },
    { type: 'todo/assigned', to: 'bob' },
  ]) assert.equal(todosReducer(start, bad), start, JSON.stringify(bad));
  assert.equal(fold([{ type: 'todo/assigned', id: 'm', to: 'x'.repeat(100) }], start).todos[0].assignee, 'x'.repeat(64), 'names are cut at 64');
  assert.deepEqual(assignTodo('m', '  ann '), { type: 'todo/assigned', id: 'm', to: 'ann' });
  assert.deepEqual(assignTodo('m', ' '), { type: 'todo/assigned', id: 'm', to: null });

  // Edits and toggles keep the assignee.
  const later = fold([{ type: 'todo/edited', id: 'm', text: 'oat milk' }, { type: 'todo/toggled', id: 'm' }], assigned);
  assert.deepEqual(later.todos[0], { id: 'm', text: 'oat milk', completed: true, assignee: 'bob' });

  const both = fold([{ type: 'todo/assigned', id: 'e', to: 'bob' }], assigned);
  assert.deepEqual(todoViews.assignedTo(both, { user: 'bob' }).map((t) => t.id), ['m', 'e']);
  assert.deepEqual(todoViews.assignedTo(both, { user: ' bob ' }).map((t) => t.id), ['m', 'e'], 'the name as todos carry it');
  assert.deepEqual(todoViews.assignedTo(later, { user: 'bob' }), [], 'a completed todo is not listed');
  assert.deepEqual(todoViews.assignedTo(both, { user: 'ann' }), []);
  for (const params of [null, {}, { user: 7 }, { user: '' }, 'bob']) {
    assert.deepEqual(todoViews.assignedTo(both, params), [], `params ${JSON.stringify(params)}`);
  }
});

test('the server evaluates the todo module\'s `assignedTo` view per user as assignments, completions and unassignments commit', { skip }, async (t) => {
  const stream = `todos/${randomUUID()}`;
  const store = writer(stream, todosReducer);
  const bob = viewStore({ stream, view: 'assignedTo', params: { user: 'bob' } });
  const ann = viewStore({ stream, view: 'assignedTo', params: { user: 'ann' } });
  t.after(() => { store.close(); bob.close(); ann.close(); });
  const milk = addTodo('milk');
  const eggs = addTodo('eggs');
  store.dispatch(milk);
  store.dispatch(eggs);
  store.dispatch(assignTodo(milk.id, 'bob'));
  store.dispatch(assignTodo(eggs.id, 'ann'));
  await until('bob\'s milk', () => texts(bob.getState()).join() === 'milk');
  await until('ann\'s eggs', () => texts(ann.getState()).join() === 'eggs');
  assert.deepEqual(bob.getState(), [{ id: milk.id, text: 'milk', completed: false, assignee: 'bob' }]);

  store.dispatch(assignTodo(eggs.id, 'bob'));
  await until('eggs moved to bob', () => texts(bob.getState()).join() === 'milk,eggs' && texts(ann.getState()).length === 0);
  store.dispatch(toggleTodo(milk.id));
  await until('milk done: gone from bob\'s', () => texts(bob.getState()).join() === 'eggs');
  store.dispatch(assignTodo(eggs.id, null));
  await until('eggs unassigned', () => bob.getState()?.length === 0);
  await store.synced();
  await until('bob\'s view at the writer\'s offset', () => bob.status.offset === store.status.offset);
  assert.deepEqual(ann.getState(), []);
});

test('the browser\'s `online` event: a view store waiting out a long backoff connects at once', { skip }, async (t) => {
  // Node has no `online` event on its global object; a stand-in for the browser's.
  const target = new EventTarget();
  globalThis.addEventListener = target.addEventListener.bind(target);
  globalThis.removeEventListener = target.removeEventListener.bind(target);
  t.after(() => { delete globalThis.addEventListener; delete globalThis.removeEventListener; });
  const stream = `todos/${randomUUID()}`;
  await server.stop();
  const view = viewStore({ stream, view: 'open', backoffMinMs: 120_000, backoffMaxMs: 120_000 });
  t.after(() => view.close());
  await until('a failed connection', () => view.status.lastError?.code === 'CONNECT_FAILED');
  await server.start();
  target.dispatchEvent(new Event('online'));
  // The backoff would wait at least 60 s; the event makes it try now.
  await until('online', () => view.status.online, 10_000);
  await until('the result', () => Array.isArray(view.getState()));
  view.close();
  target.dispatchEvent(new Event('online')); // nothing happens after close
});

test('an unknown view: lastError NOT_FOUND, no result, nothing thrown', { skip }, async (t) => {
  const view = viewStore({ stream: `todos/${randomUUID()}`, view: 'nope' });
  t.after(() => view.close());
  await until('the error', () => view.status.lastError !== null);
  assert.equal(view.status.lastError.code, 'NOT_FOUND');
  assert.match(view.status.lastError.message, /open/, 'the message names the views there are');
  assert.equal(view.status.online, false);
  assert.equal(view.getState(), undefined);
});

test('restart with the server down: the cached result, online false; the server back: updates resume', { skip }, async (t) => {
  const stream = `todos/${randomUUID()}`;
  const dbName = `views-cache-${randomUUID()}`;
  const store = writer(stream, todosReducer);
  t.after(() => store.close());
  store.dispatch(addTodo('bread'));
  await store.synced();
  const first = viewStore({ stream, view: 'open', dbName });
  await until('bread', () => texts(first.getState()).join() === 'bread');
  const offset = first.status.offset;
  first.close();

  await server.stop();
  const again = viewStore({ stream, view: 'open', dbName });
  t.after(() => again.close());
  const statuses = [];
  again.onStatus((s) => statuses.push(s));
  await again.ready;
  assert.deepEqual(texts(again.getState()), ['bread'], 'the cached result');
  assert.equal(again.status.hydrated, true);
  assert.equal(again.status.offset, offset);
  await until('a failed connection', () => again.status.lastError !== null);
  assert.equal(again.status.lastError.code, 'CONNECT_FAILED');
  assert.equal(again.status.online, false);
  assert.ok(statuses.every((s) => !s.online));

  await server.start();
  await until('online again', () => again.status.online, 20_000);
  assert.equal(again.status.lastError, null, 'cleared when the feed opens');
  store.dispatch(addTodo('jam'));
  await until('jam', () => texts(again.getState()).join() === 'bread,jam', 20_000);
});

test('a refused token: UNAUTHORIZED or FORBIDDEN, needsToken, no feed; setToken with a good one opens it', { skip }, async (t) => {
  const env = { LOGSYNC_JWT_SECRET: `secret-${randomUUID()}` };
  const authed = await startServer({ staticDir, env, args: ['--reducer', `todos/*=${join(ROOT, 'examples/todo-react/src/todos.js')}`] });
  t.after(() => authed.close());
  const token = (...args) => execFileSync(SERVER_BIN, ['token', '--sub', 'ann', ...args], { env: { ...process.env, ...env } }).toString().trim();
  const stream = `todos/${randomUUID()}`;
  const url = `ws://127.0.0.1:${authed.port}/v1/ws`;

  const expired = viewStore({ url, stream, view: 'open', token: token('--read', 'todos/*', '--expired') });
  t.after(() => expired.close());
  await until('the refusal', () => expired.status.needsToken);
  assert.equal(expired.status.lastError.code, 'UNAUTHORIZED');
  assert.equal(expired.status.online, false);
  expired.setToken(token('--read', 'todos/*'));
  assert.equal(expired.status.needsToken, false);
  await until('online with the new token', () => expired.status.online);
  await until('the result', () => Array.isArray(expired.getState()));
  assert.equal(expired.status.lastError, null);

  const elsewhere = viewStore({ url, stream, view: 'open', token: token('--read', 'seats/*') });
  t.after(() => elsewhere.close());
  await until('the refusal', () => elsewhere.status.needsToken);
  assert.equal(elsewhere.status.lastError.code, 'FORBIDDEN');
  assert.equal(elsewhere.getState(), undefined);
});

test('the SSE reading: chunks split anywhere, CRLF, comments, multi-line data; a patch that does not fit asks for a whole result; an error event is lastError', async (t) => {
  // A scripted feed on node:http: each request gets the next script.
  const requests = [];
  const enc = (text) => Buffer.from(text, 'utf8');
  const scripts = [
    async (res) => {
      // Byte by byte, so a line, an event and the UTF-8 of "é" are split.
      for (const byte of enc(': hello\r\nevent: result\r\nid: 3\r\ndata: {"offset":3,\r\ndata: "result":{"a":["é"]}}\r\n\r\n')) {
        res.write(Buffer.from([byte]));
      }
      res.write('event: patch\nid: 4\ndata: {"offset":4,"patch":[{"op":"add","path":"/a/-","value":2}]}\n\n');
      res.write('event: patch\nid: 5\ndata: {"offset":5,"patch":[{"op":"remove","path":"/missing"}]}\n\n');
    },
    async (res) => {
      res.write('event: result\nid: 6\ndata: {"offset":6,"result":{"a":[9]}}\n\n');
      res.end('event: error\ndata: {"error":{"code":"REDUCER","message":"boom"}}\n\n');
    },
    async (res) => {
      res.write(':\n\n');
    },
  ];
  const http = createServer((req, res) => {
    requests.push({ url: req.url, lastEventId: req.headers['last-event-id'], accept: req.headers.accept, auth: req.headers.authorization });
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const script = scripts[requests.length - 1];
    if (script) script(res);
  });
  await new Promise((r) => http.listen(0, '127.0.0.1', r));
  t.after(() => { http.closeAllConnections(); http.close(); });
  const view = createViewStore({
    url: `ws://127.0.0.1:${http.address().port}/v1/ws`, stream: 'a/b', view: 'v', params: { x: 1 }, token: 'tok',
    dbName: `views-sse-${randomUUID()}`, backoffMinMs: 10, backoffMaxMs: 20,
  });
  t.after(() => view.close());
  const states = [];
  const errors = [];
  view.subscribe(() => states.push(view.getState()));
  view.onStatus((s) => { if (s.lastError) errors.push(s.lastError.code); });
  await until('the third request', () => requests.length === 3 && view.status.online);
  assert.deepEqual(states, [{ a: ['é'] }, { a: ['é', 2] }, { a: [9] }]);
  assert.equal(view.status.offset, 6);
  assert.deepEqual(requests.map((r) => r.lastEventId), [undefined, undefined, '6'], 'no Last-Event-ID after a patch that did not fit');
  assert.equal(requests[0].url, `/v1/streams/a%2Fb/views/v?params=${encodeURIComponent('{"x":1}')}`);
  assert.equal(requests[0].accept, 'text/event-stream');
  assert.equal(requests[0].auth, 'Bearer tok');
  assert.ok(errors.includes('REDUCER'), `the error event was lastError (${errors})`);
  assert.equal(view.status.lastError, null, 'cleared when the next feed opened');
});

test('readEvents: events split at every byte, "\\r\\n" split between chunks, comments, multi-line data, an unnamed event', async () => {
  const text = ': c\r\nevent: result\r\nid: 1\r\ndata: {"a":\r\ndata:"é"}\r\n\r\ndata: plain\n\nevent: patch\rdata: x\r\rdata: no blank line yet';
  const bytes = new TextEncoder().encode(text);
  const body = new ReadableStream({
    start(controller) {
      for (const b of bytes) controller.enqueue(new Uint8Array([b]));
      controller.close();
    },
  });
  const events = [];
  await readEvents(body, (type, data) => events.push([type, data]));
  assert.deepEqual(events, [['result', '{"a":\n"é"}'], ['message', 'plain'], ['patch', 'x']]);
});

test('createViewStore checks its options', () => {
  const ok = { url: 'ws://127.0.0.1:1/v1/ws', stream: 's', view: 'v' };
  for (const [options, what] of [
    [null, 'no options'],
    [{ ...ok, view: '' }, 'an empty view name'],
    [{ ...ok, stream: 42 }, 'a stream that is not a string'],
    [{ ...ok, params: () => 1 }, 'params that are not JSON'],
    [{ ...ok, token: 7 }, 'a token that is not a string'],
    [{ ...ok, backoffMinMs: 10, backoffMaxMs: 5 }, 'a backoff minimum above its maximum'],
  ]) {
    assert.throws(() => createViewStore(options), { code: 'INVALID_REQUEST' }, what);
  }
});
