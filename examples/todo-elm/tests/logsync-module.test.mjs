// src/Logsync.elm, compiled into a real Elm program (tests/elm/PortsCheck.elm)
// and connected with logsync/elm's connectElmPorts under the port names
// the module documents: what the adapter sends arrives as typed events,
// and Logsync.send reaches the store.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connectElmPorts } from 'logsync/elm';
import { LogsyncError } from '../../../js/src/errors.js';
import { memoryStore } from '../../../js/test/memory-store.mjs';
import { startPortsCheck, waitFor } from './lib/worker.mjs';

const PORTS = { dispatchPort: 'dispatch', statePort: 'stateChanged', statusPort: 'syncStatus', rejectedPort: 'rejected', errorPort: 'errors' };

const items = (state = { items: [] }, action) => {
  if (action.type === 'item/added' && typeof action.text === 'string') return { items: [...state.items, action.text] };
  if (action.type === 'shape/broken') return { items: 'not a list' };
  return state;
};

function connected() {
  const check = startPortsCheck();
  const store = memoryStore(items, { items: ['first'] });
  // Throws if the compiler dropped a port: all five must exist.
  const disconnect = connectElmPorts(check.app.ports, store, PORTS);
  const events = (kind) => check.reports.filter((r) => r.event === kind);
  return { ...check, store, disconnect, events };
}

test('the initial state and status arrive decoded', async () => {
  const { events } = connected();
  const [state] = await waitFor('the initial state', () => events('state').length === 1 && events('state'));
  assert.deepEqual(state.items, ['first']);
  const [status] = await waitFor('the initial status', () => events('status').length === 1 && events('status'));
  assert.deepEqual(status, {
    event: 'status', online: false, offset: 0, head: 0, pending: 0, lastError: null,
    clientId: '0'.repeat(32), needsToken: false, synced: false,
  });
});

test('status changes: online, pending, offsets, lastError as a typed code, needsToken', async () => {
  const { store, events } = connected();
  store.setStatus({ online: true, offset: 7, head: 9, pending: 0 });
  let last = await waitFor('online', () => events('status').find((s) => s.online));
  assert.equal(last.synced, true);
  assert.equal(last.head, 9);
  store.setStatus({ online: false, pending: 2, lastError: { code: 'FORBIDDEN', message: 'no write access' }, needsToken: true });
  last = await waitFor('the token request', () => events('status').find((s) => s.needsToken));
  assert.deepEqual(last.lastError, { code: 'FORBIDDEN', message: 'no write access' });
  assert.equal(last.pending, 2);
  assert.equal(last.synced, false);
  // A code from a newer server decodes, as UNKNOWN.
  store.setStatus({ lastError: { code: 'SOMETHING_NEWER', message: 'from the future' } });
  last = await waitFor('the unknown code', () => events('status').find((s) => s.lastError?.message === 'from the future'));
  assert.equal(last.lastError.code, 'UNKNOWN');
});

test('a rejection arrives with its action and its code', async () => {
  const { store, events } = connected();
  const action = { type: 'item/added', text: 'x'.repeat(300) };
  store.emitRejected({ action, code: 'PAYLOAD_TOO_LARGE', message: 'payload of 330 bytes is over the limit of 200 bytes' });
  const [r] = await waitFor('the rejection', () => events('rejected').length && events('rejected'));
  assert.deepEqual(r, { event: 'rejected', action, code: 'PAYLOAD_TOO_LARGE', message: 'payload of 330 bytes is over the limit of 200 bytes' });
});

test('errors arrive on the error port with typed codes', async () => {
  const { store, events } = connected();
  store.emitError(new LogsyncError('STORAGE', 'IndexedDB write failed'));
  const [e] = await waitFor('the storage error', () => events('error').length && events('error'));
  assert.deepEqual(e.error, { code: 'STORAGE', message: 'IndexedDB write failed' });
});

test('Logsync.send dispatches to the store, and the new state comes back', async () => {
  const { store, events, command } = connected();
  command({ run: 'send', type: 'item/added', fields: { text: 'second' } });
  await waitFor('the dispatched action in the state', () => events('state').some((s) => s.items.includes('second')));
  assert.deepEqual(store.getState(), { items: ['first', 'second'] });
});

test('Logsync.send: the action type always wins over a "type" field', async () => {
  const { reports, command } = startPortsCheck();
  command({ run: 'encode' });
  const encoded = await waitFor('the encoded action', () => reports.find((r) => r.type));
  assert.deepEqual(encoded, { type: 'todo/added', id: 'x' });
});

test('a state that does not fit the decoder is a DecodeFailed event, not a crash', async () => {
  const { events, command } = connected();
  command({ run: 'send', type: 'shape/broken', fields: {} });
  const [failed] = await waitFor('DecodeFailed', () => events('decodeFailed').length && events('decodeFailed'));
  assert.equal(failed.port, 'stateChanged');
  // The program still runs.
  command({ run: 'send', type: 'item/added', fields: { text: 'after' } });
  await waitFor('a later state', () => events('state').length >= 2);
});

test('disconnect: the program no longer reaches the store', async () => {
  const check = connected();
  const { store, disconnect, command, events } = check;
  await waitFor('the initial state', () => events('state').length === 1);
  disconnect();
  command({ run: 'send', type: 'item/added', fields: { text: 'lost' } });
  store.setStatus({ online: true });
  // Elm handles commands in order: once the next one has answered, the
  // send before it has gone out through the (now unsubscribed) port.
  command({ run: 'encode' });
  await waitFor('the command after the send', () => check.reports.some((r) => r.type));
  assert.deepEqual(store.getState(), { items: ['first'] });
  assert.equal(events('status').length, 1);
});
