// logsync/elm against a port-shaped fake of an Elm app.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connectElmPorts } from 'logsync/elm';
import { LogsyncError } from '../src/errors.js';
import { incomingPort, outgoingPort } from './elm-fakes.mjs';
import { memoryStore } from './memory-store.mjs';

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
    { online: false, offset: 0, head: 0, pending: 0, lastError: null, clientId: '0'.repeat(32), needsToken: false },
  ]);
  store.setStatus({ online: true, offset: 7, head: 9, pending: 2, lastError: { code: 'IDLE_TIMEOUT', message: 'ping timed out' } });
  assert.deepEqual(ports.syncStatus.last, {
    online: true, offset: 7, head: 9, pending: 2,
    lastError: { code: 'IDLE_TIMEOUT', message: 'ping timed out' }, clientId: '0'.repeat(32), needsToken: false,
  });
  store.setStatus({ online: false, lastError: { code: 'FORBIDDEN', message: 'no write access' }, needsToken: true });
  assert.equal(ports.syncStatus.last.needsToken, true);

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
