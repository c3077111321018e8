// `Rejection`, the class a reducer throws to refuse an action with the
// app's code: exported by `logsync` (the same import a reducer module
// makes when logsync-server runs it at the ordering point), and what a
// store does in the browser when its reducer throws one on dispatch.
import 'fake-indexeddb/auto';
import './wasm-node.mjs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createSyncStore, isLogsyncError, LogsyncError, Rejection } from 'logsync';

// The seat reducer as an app shares it with the server.
const seats = (state = { seats: {} }, action) => {
  if (action.type !== 'book') return state;
  if (state.seats[action.seat] !== undefined) {
    throw new Rejection('SEAT_TAKEN', `seat ${action.seat} is taken`);
  }
  return { seats: { ...state.seats, [action.seat]: action.who } };
};

test('Rejection is an Error with the app code and message', () => {
  const r = new Rejection('SEAT_TAKEN', 'seat 4A is taken');
  assert.ok(r instanceof Rejection);
  assert.ok(r instanceof Error);
  assert.equal(r.name, 'Rejection');
  assert.equal(r.code, 'SEAT_TAKEN');
  assert.equal(r.message, 'seat 4A is taken');
  assert.equal(String(r), 'Rejection: seat 4A is taken');
  assert.match(r.stack, /Rejection: seat 4A is taken/);
  assert.equal(new Rejection('NO_REASON').message, '');
  // An app's refusal is not an error Logsync made.
  assert.ok(!(r instanceof LogsyncError));
  assert.equal(isLogsyncError(r), false);
  assert.throws(() => seats({ seats: { '4A': 'ann' } }, { type: 'book', seat: '4A', who: 'bob' }),
    (e) => e instanceof Rejection && e.code === 'SEAT_TAKEN');
});

test('a Rejection on dispatch throws REDUCER with it as the cause, nothing applied or queued', async (t) => {
  const store = await createSyncStore({
    url: 'ws://127.0.0.1:9/v1/ws',
    stream: 'seats/show',
    reducer: seats,
    dbName: `test-${randomUUID()}`,
    connect: false,
  });
  t.after(() => store.close());
  store.dispatch({ type: 'book', seat: '4A', who: 'ann' });
  const before = store.getState();
  assert.throws(() => store.dispatch({ type: 'book', seat: '4A', who: 'bob' }), (err) => {
    assert.ok(err instanceof LogsyncError, String(err));
    assert.equal(err.code, 'REDUCER');
    assert.match(err.message, /the reducer threw Rejection: seat 4A is taken/);
    assert.ok(err.cause instanceof Rejection);
    assert.equal(err.cause.code, 'SEAT_TAKEN');
    return true;
  });
  assert.equal(store.getState(), before, 'the state is unchanged');
  await null;
  assert.equal(store.status.pending, 1, 'only the first booking is pending');
  assert.deepEqual(store.pending().map((p) => p.action.who), ['ann']);
});
