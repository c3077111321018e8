// logsync/elm against a port-shaped fake of an Elm app: connectElmPorts
// with an in-memory sync store, connectElmViewPorts with an in-memory view
// store and with a real one (createViewStore) reading a scripted feed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createViewStore } from 'logsync/views';
import { connectElmPorts, connectElmViewPorts } from 'logsync/elm';
import { LogsyncError } from '../src/errors.js';
import { incomingPort, outgoingPort } from './elm-fakes.mjs';
import { memoryStore, memoryViewStore } from './memory-store.mjs';

const todos = (state, action) => {
  switch (action.type) {
    case 'todo/added':
      return { todos: [...state.todos, { id: action.id, text: action.text }] };
    case 'noop':
      return state;
    default:
      return state;
  }
};

function app(extra = {}) {
  return { dispatch: outgoingPort(), stateChanged: incomingPort(), ...extra };
}

test('sends the initial state, then each new state after a dispatch from Elm', () => {
  const ports = app();
  const store = memoryStore(todos, { todos: [] });
  connectElmPorts(ports, store);
  assert.deepEqual(ports.stateChanged.received, [{ todos: [] }]);

  ports.dispatch.elmSends({ type: 'todo/added', id: 'a', text: 'milk' });
  assert.deepEqual(store.getState(), { todos: [{ id: 'a', text: 'milk' }] });
  assert.deepEqual(ports.stateChanged.received, [{ todos: [] }, { todos: [{ id: 'a', text: 'milk' }] }]);
});

test('state changes that come from elsewhere (the server, other code) reach Elm too', () => {
  const ports = app();
  const store = memoryStore(todos, { todos: [] });
  connectElmPorts(ports, store, { sendInitial: false });
  assert.equal(ports.stateChanged.received.length, 0);
  store.dispatch({ type: 'todo/added', id: 'b', text: 'eggs' });
  assert.deepEqual(ports.stateChanged.last, { todos: [{ id: 'b', text: 'eggs' }] });
});

test('an action that changes nothing sends nothing', () => {
  const ports = app();
  const store = memoryStore(todos, { todos: [] });
  connectElmPorts(ports, store);
  ports.dispatch.elmSends({ type: 'noop' });
  assert.equal(ports.stateChanged.received.length, 1);
});

test('encodeState maps the state before it is sent', () => {
  const ports = app();
  const store = memoryStore(todos, { todos: [] });
  connectElmPorts(ports, store, { encodeState: (s) => s.todos.map((t) => t.text) });
  ports.dispatch.elmSends({ type: 'todo/added', id: 'c', text: 'tea' });
  assert.deepEqual(ports.stateChanged.received, [[], ['tea']]);
});

test('status, rejections and errors go to their ports with the documented encoding', () => {
  const ports = app({ syncStatus: incomingPort(), rejected: incomingPort(), errors: incomingPort() });
  const store = memoryStore(todos, { todos: [] });
  connectElmPorts(ports, store, { statusPort: 'syncStatus', rejectedPort: 'rejected', errorPort: 'errors' });
  assert.deepEqual(ports.syncStatus.received, [
    { online: false, offset: 0, head: 0, pending: 0, lastError: null, clientId: '0'.repeat(32), needsToken: false, outdated: false, leader: false },
  ]);
  store.setStatus({ online: true, offset: 7, head: 9, pending: 2, lastError: { code: 'IDLE_TIMEOUT', message: 'ping timed out' } });
  assert.deepEqual(ports.syncStatus.last, {
    online: true, offset: 7, head: 9, pending: 2,
    lastError: { code: 'IDLE_TIMEOUT', message: 'ping timed out' }, clientId: '0'.repeat(32), needsToken: false, outdated: false, leader: false,
  });
  store.setStatus({ online: false, lastError: { code: 'FORBIDDEN', message: 'no write access' }, needsToken: true });
  assert.equal(ports.syncStatus.last.needsToken, true);
  store.setStatus({ lastError: { code: 'SCHEMA_TOO_NEW', message: 'newer data' }, outdated: true });
  assert.equal(ports.syncStatus.last.outdated, true);
  store.setStatus({ leader: true });
  assert.equal(ports.syncStatus.last.leader, true, 'the tab that holds the shared connection says so');

  store.emitRejected({ action: { type: 'todo/added', id: 'x', text: '' }, code: 'REJECTED', message: 'empty text' });
  assert.deepEqual(ports.rejected.received, [{ action: { type: 'todo/added', id: 'x', text: '' }, code: 'REJECTED', message: 'empty text' }]);

  store.emitError(new LogsyncError('STORAGE', 'IndexedDB write failed'));
  assert.deepEqual(ports.errors.received, [{ code: 'STORAGE', message: 'IndexedDB write failed' }]);
});

test('a bad action from Elm goes to the error port and does not throw into Elm', () => {
  const ports = app({ errors: incomingPort() });
  const store = memoryStore(todos, { todos: [] });
  connectElmPorts(ports, store, { errorPort: 'errors' });
  assert.doesNotThrow(() => ports.dispatch.elmSends('just a string'));
  assert.equal(ports.errors.received.length, 1);
  assert.equal(ports.errors.last.code, 'INVALID_REQUEST');
  assert.equal(ports.stateChanged.received.length, 1);
});

test('without an error port, a bad action is logged to the console', (t) => {
  const ports = app();
  const store = memoryStore(todos, { todos: [] });
  const logged = [];
  t.mock.method(console, 'error', (...args) => logged.push(args.join(' ')));
  connectElmPorts(ports, store);
  ports.dispatch.elmSends(42);
  assert.equal(logged.length, 1);
  assert.match(logged[0], /INVALID_REQUEST/);
});

test('custom port names', () => {
  const ports = { send: outgoingPort(), model: incomingPort() };
  const store = memoryStore(todos, { todos: [] });
  connectElmPorts(ports, store, { dispatchPort: 'send', statePort: 'model' });
  ports.send.elmSends({ type: 'todo/added', id: 'd', text: 'jam' });
  assert.equal(ports.model.received.length, 2);
});

test('disconnect stops every subscription, and is idempotent', () => {
  const ports = app({ syncStatus: incomingPort(), errors: incomingPort(), rejected: incomingPort() });
  const store = memoryStore(todos, { todos: [] });
  const disconnect = connectElmPorts(ports, store, { statusPort: 'syncStatus', errorPort: 'errors', rejectedPort: 'rejected' });
  assert.equal(ports.dispatch.subscriberCount, 1);
  assert.equal(store.listenerCount(), 4);
  disconnect();
  disconnect();
  assert.equal(ports.dispatch.subscriberCount, 0);
  assert.equal(store.listenerCount(), 0);
  ports.dispatch.elmSends({ type: 'todo/added', id: 'e', text: 'no' });
  assert.deepEqual(store.getState(), { todos: [] });
});

test('missing ports fail with a LogsyncError that says how to declare them', () => {
  const store = memoryStore(todos, { todos: [] });
  assert.throws(() => connectElmPorts({ stateChanged: incomingPort() }, store), (err) => {
    assert.ok(err instanceof LogsyncError);
    assert.equal(err.code, 'INVALID_REQUEST');
    assert.match(err.message, /port dispatch : Json\.Encode\.Value -> Cmd msg/);
    assert.match(err.message, /drops ports/);
    return true;
  });
  assert.throws(() => connectElmPorts({ dispatch: outgoingPort() }, store), /port stateChanged : \(Json\.Decode\.Value -> msg\) -> Sub msg/);
  assert.throws(() => connectElmPorts(app(), store, { statusPort: 'nope' }), /app\.ports\.nope is missing/);
  // An incoming port where an outgoing one is expected:
  assert.throws(() => connectElmPorts({ dispatch: incomingPort(), stateChanged: incomingPort() }, store), /not an outgoing port/);
  assert.throws(() => connectElmPorts(undefined, store), /declares no port/);
  assert.throws(() => connectElmPorts(app(), {}), /needs the store/);
});

test('statePort: null connects dispatch only', () => {
  const ports = { dispatch: outgoingPort() };
  const store = memoryStore(todos, { todos: [] });
  connectElmPorts(ports, store, { statePort: null });
  ports.dispatch.elmSends({ type: 'todo/added', id: 'f', text: 'ok' });
  assert.equal(store.getState().todos.length, 1);
});

// connectElmViewPorts

const VIEW_PORTS = { resultPort: 'countsChanged', statusPort: 'countsStatus' };
const viewApp = () => ({ countsChanged: incomingPort(), countsStatus: incomingPort() });
const initialViewStatus = { online: false, offset: 0, hydrated: false, lastError: null, needsToken: false };

test('view ports: the status at connect time, no result while none is known, then each result after its status', () => {
  const ports = viewApp();
  const view = memoryViewStore(undefined);
  connectElmViewPorts(ports, view, VIEW_PORTS);
  assert.deepEqual(ports.countsStatus.received, [initialViewStatus]);
  assert.deepEqual(ports.countsChanged.received, [], 'undefined (no result yet) is not sent');

  const order = [];
  const sendStatus = ports.countsStatus.send;
  const sendResult = ports.countsChanged.send;
  ports.countsStatus.send = (v) => { order.push('status'); sendStatus(v); };
  ports.countsChanged.send = (v) => { order.push('result'); sendResult(v); };
  view.setStatus({ hydrated: true, online: true });
  view.setResult({ all: 2, completed: 1 }, 7);
  assert.deepEqual(ports.countsChanged.received, [{ all: 2, completed: 1 }]);
  assert.deepEqual(ports.countsStatus.last, { online: true, offset: 7, hydrated: true, lastError: null, needsToken: false });
  assert.deepEqual(order, ['status', 'status', 'result'], 'the offset arrives before the result it belongs to');
});

test('view ports: a result known at connect time (e.g. from the cache) is sent at once; a status change alone does not resend it', () => {
  const ports = viewApp();
  const view = memoryViewStore({ all: 1, completed: 0 });
  view.setStatus({ hydrated: true, offset: 4 });
  connectElmViewPorts(ports, view, VIEW_PORTS);
  assert.deepEqual(ports.countsChanged.received, [{ all: 1, completed: 0 }]);
  assert.deepEqual(ports.countsStatus.received, [{ ...initialViewStatus, hydrated: true, offset: 4 }]);
  view.setStatus({ online: true });
  view.setStatus({ online: false, lastError: { code: 'CONNECT_FAILED', message: 'fetch failed', extra: 'dropped' } });
  assert.equal(ports.countsChanged.received.length, 1);
  assert.deepEqual(ports.countsStatus.last, {
    online: false, offset: 4, hydrated: true, lastError: { code: 'CONNECT_FAILED', message: 'fetch failed' }, needsToken: false,
  });
  view.setStatus({ lastError: { code: 'UNAUTHORIZED', message: 'HTTP 401' }, needsToken: true });
  assert.equal(ports.countsStatus.last.needsToken, true);
  assert.equal(ports.countsStatus.last.lastError.code, 'UNAUTHORIZED');
});

test('view ports: sendInitial false waits for the next change; encodeResult maps the result', () => {
  const ports = viewApp();
  const view = memoryViewStore({ all: 3, completed: 1 });
  connectElmViewPorts(ports, view, { ...VIEW_PORTS, sendInitial: false, encodeResult: (c) => c.all - c.completed });
  assert.equal(ports.countsChanged.received.length, 0);
  assert.equal(ports.countsStatus.received.length, 0);
  view.setResult({ all: 4, completed: 1 });
  assert.deepEqual(ports.countsChanged.received, [3]);
  assert.equal(ports.countsStatus.received.length, 1);
});

test('view ports: without a status port only the result is sent', () => {
  const ports = { countsChanged: incomingPort() };
  const view = memoryViewStore([]);
  connectElmViewPorts(ports, view, { resultPort: 'countsChanged' });
  view.setResult(['milk']);
  assert.deepEqual(ports.countsChanged.received, [[], ['milk']]);
  assert.equal(view.listenerCount(), 1);
});

test('view ports: an encodeResult that throws is logged, and the store and the later results go on', (t) => {
  const ports = viewApp();
  const view = memoryViewStore(undefined);
  const logged = [];
  t.mock.method(console, 'error', (...args) => logged.push(args.join(' ')));
  connectElmViewPorts(ports, view, { ...VIEW_PORTS, encodeResult: (r) => { if (r.bad) throw new TypeError('no'); return r; } });
  assert.doesNotThrow(() => view.setResult({ bad: true }));
  assert.equal(logged.length, 1);
  assert.match(logged[0], /encodeResult threw .*app\.ports\.countsChanged/);
  view.setResult({ bad: false });
  assert.deepEqual(ports.countsChanged.received, [{ bad: false }]);
});

test('view ports: disconnect stops both ports, is idempotent, and leaves the view store open', () => {
  const ports = viewApp();
  const view = memoryViewStore({ all: 0, completed: 0 });
  const closed = [];
  view.close = () => closed.push(true);
  const disconnect = connectElmViewPorts(ports, view, VIEW_PORTS);
  assert.equal(view.listenerCount(), 2);
  disconnect();
  disconnect();
  assert.equal(view.listenerCount(), 0);
  assert.deepEqual(closed, []);
  view.setResult({ all: 1, completed: 0 });
  assert.equal(ports.countsChanged.received.length, 1);
  assert.equal(ports.countsStatus.received.length, 1);
});

test('view ports: missing ports and wrong arguments fail with a LogsyncError that says what to do', () => {
  const view = memoryViewStore(undefined);
  assert.throws(() => connectElmViewPorts({ countsStatus: incomingPort() }, view, VIEW_PORTS), (err) => {
    assert.ok(err instanceof LogsyncError);
    assert.equal(err.code, 'INVALID_REQUEST');
    assert.match(err.message, /^connectElmViewPorts: app\.ports\.countsChanged is missing/);
    assert.match(err.message, /port countsChanged : \(Json\.Decode\.Value -> msg\) -> Sub msg/);
    assert.match(err.message, /drops ports/);
    return true;
  });
  assert.throws(() => connectElmViewPorts({ countsChanged: incomingPort() }, view, VIEW_PORTS),
    { code: 'INVALID_REQUEST', message: /app\.ports\.countsStatus is missing.*port countsStatus : \(Json\.Decode\.Value -> msg\) -> Sub msg/ });
  // An outgoing port where an incoming one is expected:
  assert.throws(() => connectElmViewPorts({ countsChanged: outgoingPort() }, view, { resultPort: 'countsChanged' }), /not an incoming port/);
  for (const options of [undefined, {}, { resultPort: '' }, { resultPort: 7 }]) {
    assert.throws(() => connectElmViewPorts(viewApp(), view, options),
      { code: 'INVALID_REQUEST', message: /needs options\.resultPort.*port countsChanged : \(Json\.Decode\.Value -> msg\) -> Sub msg/ });
  }
  assert.throws(() => connectElmViewPorts(undefined, view, VIEW_PORTS), { code: 'INVALID_REQUEST', message: /declares no port/ });
  assert.throws(() => connectElmViewPorts(viewApp(), {}, VIEW_PORTS), { code: 'INVALID_REQUEST', message: /needs the store that createViewStore\(\) returned/ });
  // The two kinds of store, each given to the other's function:
  const sync = memoryStore(todos, { todos: [] });
  assert.throws(() => connectElmViewPorts(viewApp(), sync, VIEW_PORTS), { code: 'INVALID_REQUEST', message: /connected with connectElmPorts/ });
  assert.throws(() => connectElmPorts(app(), view), { code: 'INVALID_REQUEST', message: /connect it with connectElmViewPorts/ });
});

test('view ports with a real view store: a scripted feed\'s result and patch reach the ports, then the feed\'s end', async (t) => {
  let feed;
  const http = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('event: result\nid: 3\ndata: {"offset":3,"result":{"all":1,"completed":0}}\n\n');
    feed = res;
  });
  await new Promise((r) => http.listen(0, '127.0.0.1', r));
  t.after(() => { http.closeAllConnections(); http.close(); });
  const view = createViewStore({
    url: `ws://127.0.0.1:${http.address().port}/v1/ws`, stream: 'todos/x', view: 'counts', backoffMinMs: 60_000, backoffMaxMs: 60_000,
  });
  t.after(() => view.close());
  const ports = viewApp();
  connectElmViewPorts(ports, view, VIEW_PORTS);
  await until('the first result', () => ports.countsChanged.received.length === 1);
  assert.deepEqual(ports.countsChanged.last, { all: 1, completed: 0 });
  assert.deepEqual(ports.countsStatus.last, { online: true, offset: 3, hydrated: true, lastError: null, needsToken: false });

  feed.write('event: patch\nid: 5\ndata: {"offset":5,"patch":[{"op":"replace","path":"/completed","value":1}]}\n\n');
  await until('the patched result', () => ports.countsChanged.received.length === 2);
  assert.deepEqual(ports.countsChanged.last, { all: 1, completed: 1 });
  assert.equal(ports.countsStatus.last.offset, 5);

  feed.end();
  await until('offline', () => ports.countsStatus.last.online === false);
  assert.equal(ports.countsStatus.last.offset, 5, 'the result held is still the one at offset 5');
  assert.equal(ports.countsChanged.received.length, 2);
});

async function until(what, check, ms = 5_000) {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
