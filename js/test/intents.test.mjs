// store.onIntent: each of this tab's actions as pending → sent →
// confirmed | rejected | discarded, with rebased in between. The tracker
// that derives the events from the wasm store's reports is tested on its
// own with scripted reports (status, pending list, rejections), then on
// the real wasm store in Node (offline: pending, restored, rebased at
// hydration, rejected at hydration, discarded).
import 'fake-indexeddb/auto';
import './wasm-node.mjs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createLogsyncStore, createSyncStore } from 'logsync';
import { intentTracker } from '../src/intents.js';

const a = { type: 'add', id: 'a' };
const b = { type: 'add', id: 'b' };
const online = (offset) => ({ online: true, offset });
const offline = (offset) => ({ online: false, offset });

function tracked() {
  const events = [];
  const tracker = intentTracker((e) => events.push(e));
  const short = () => events.map((e) => [e.type, e.seq, e.action.id, e.offset ?? e.code].filter((x) => x !== undefined));
  return { tracker, events, short };
}

test('tracker: pending → sent → confirmed at its offset', () => {
  const { tracker, short, events } = tracked();
  tracker.hydrated(offline(0), false);
  tracker.dispatched(JSON.stringify(a), a);
  tracker.reconcile(offline(0), [{ seq: null, action: a }]);
  tracker.reconcile(offline(0), [{ seq: 1, action: a }]);
  assert.deepEqual(short(), [['pending', null, 'a']], 'offline: not sent');
  tracker.reconcile(online(0), [{ seq: 1, action: a }]);
  tracker.reconcile(online(1), []);
  assert.deepEqual(short(), [['pending', null, 'a'], ['sent', 1, 'a'], ['confirmed', 1, 'a', 1]]);
  assert.equal(events[2].action, a, 'the action as dispatched');
  assert.ok(Object.isFrozen(events[2]));
  assert.equal(tracker.size, 0);
});

test('tracker: rejected with the server\'s code and message', () => {
  const { tracker, short, events } = tracked();
  tracker.hydrated(online(0), false);
  tracker.dispatched(JSON.stringify(a), a);
  tracker.dispatched(JSON.stringify(b), b);
  tracker.reconcile(online(0), [{ seq: 1, action: a }, { seq: 2, action: b }]);
  tracker.rejected({ action: { type: 'add', id: 'a' }, code: 'FORBIDDEN', message: 'not yours' });
  const others = tracker.reconcile(online(1), []);
  assert.deepEqual(short(), [
    ['pending', null, 'a'], ['pending', null, 'b'], ['sent', 1, 'a'], ['sent', 2, 'b'],
    ['rejected', 1, 'a', 'FORBIDDEN'], ['confirmed', 2, 'b', 1],
  ]);
  assert.equal(events[4].message, 'not yours');
  assert.equal(others, 0, 'the offset moved by our own event only');
});

test('tracker: rebased when events of others come before it, then confirmed', () => {
  const { tracker, short } = tracked();
  tracker.hydrated(online(5), false);
  tracker.dispatched(JSON.stringify(a), a);
  tracker.reconcile(online(5), [{ seq: 7, action: a }]);
  assert.equal(tracker.reconcile(online(8), [{ seq: 7, action: a }]), 3, 'three events of others');
  assert.equal(tracker.reconcile(online(10), []), 1, 'ours and one more');
  assert.deepEqual(short(), [['pending', null, 'a'], ['sent', 7, 'a'], ['rebased', 7, 'a', 8], ['confirmed', 7, 'a', 10]]);
});

test('tracker: an action not pushed yet (its write under way) is rebased before it is sent, as the README says', () => {
  const { tracker, short } = tracked();
  tracker.hydrated(online(0), false);
  tracker.dispatched(JSON.stringify(a), a);
  tracker.reconcile(online(2), [{ seq: null, action: a }]);
  tracker.reconcile(online(2), [{ seq: 1, action: a }]);
  tracker.reconcile(online(3), []);
  assert.deepEqual(short(), [['pending', null, 'a'], ['rebased', null, 'a', 2], ['sent', 1, 'a'], ['confirmed', 1, 'a', 3]]);
});

test('tracker: an action decided before its seq was seen is still reported, in order', () => {
  const { tracker, short } = tracked();
  tracker.hydrated(online(0), false);
  tracker.dispatched(JSON.stringify(a), a);
  tracker.dispatched(JSON.stringify(b), b);
  tracker.reconcile(online(1), [{ seq: 2, action: b }]);
  assert.deepEqual(short(), [['pending', null, 'a'], ['pending', null, 'b'], ['sent', null, 'a'], ['confirmed', null, 'a', 1], ['sent', 2, 'b']]);
});

test('tracker: discarded, and actions it never saw dispatched are adopted', () => {
  const { tracker, short } = tracked();
  tracker.hydrated(offline(0), false);
  tracker.reconcile(offline(0), [{ seq: 4, action: a }]);
  tracker.discarded(4);
  tracker.reconcile(offline(0), []);
  assert.deepEqual(short(), [['pending', 4, 'a'], ['discarded', 4, 'a']]);
});

test('tracker: a discarded intent the server took anyway is confirmed, not an event of others', () => {
  const { tracker, short } = tracked();
  tracker.hydrated(online(0), false);
  tracker.dispatched(JSON.stringify(a), a);
  tracker.reconcile(online(0), [{ seq: 1, action: a }]); // sent
  tracker.discarded(1);
  tracker.reconcile(online(0), []);
  assert.deepEqual(short(), [['pending', null, 'a'], ['sent', 1, 'a']], 'not finally discarded while the server may take it');
  const others = tracker.reconcile(online(1), []);
  assert.deepEqual(short().slice(2), [['confirmed', 1, 'a', 1]]);
  assert.equal(others, 0, 'its event is not counted as one of others');
  tracker.settled();
  assert.equal(short().length, 3, 'decided once');
});

test('tracker: a discarded intent the server did not take is discarded once the store has settled', () => {
  const { tracker, short } = tracked();
  tracker.hydrated(online(0), false);
  tracker.dispatched(JSON.stringify(a), a);
  tracker.dispatched(JSON.stringify(b), b);
  tracker.reconcile(online(0), [{ seq: 1, action: a }, { seq: 2, action: b }]);
  tracker.discarded(1);
  tracker.reconcile(online(0), [{ seq: 2, action: b }]);
  assert.equal(tracker.withdrawing, true);
  assert.equal(tracker.reconcile(online(1), []), 0, 'b\'s own event');
  tracker.settled();
  assert.deepEqual(short().slice(4), [['confirmed', 2, 'b', 1], ['discarded', 1, 'a']]);
  assert.equal(tracker.withdrawing, false);
});

test('tracker: a listener that dispatches while it hears events does not extend the step it hears', () => {
  const events = [];
  let tracker;
  tracker = intentTracker((e) => {
    events.push([e.type, e.action.id]);
    if (events.length > 20) throw new Error('the tracker keeps reporting: it iterates what the listener adds');
    if (e.type === 'rebased' && e.action.id === 'a') tracker.dispatched(JSON.stringify(b), b);
  });
  tracker.hydrated(online(0), false);
  tracker.dispatched(JSON.stringify(a), a);
  tracker.reconcile(online(0), [{ seq: 1, action: a }]);
  tracker.reconcile(online(2), [{ seq: 1, action: a }]);
  assert.deepEqual(events, [['pending', 'a'], ['sent', 'a'], ['rebased', 'a'], ['pending', 'b']],
    'one rebased, for the intent open when the step began (b was dispatched onto the new state)');
  assert.equal(tracker.size, 2);
});

const list = (state = [], action) => {
  if (action.type !== 'add') return state;
  if (state.includes(action.id)) throw new Error(`${action.id} is there already`);
  return [...state, action.id];
};
const options = () => ({
  url: 'ws://127.0.0.1:9/v1/ws',
  stream: 'test/intents',
  reducer: list,
  dbName: `intents-${randomUUID()}`,
  connect: false,
  devtools: false,
});

async function until(what, check, ms = 5_000) {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('onIntent on the real store: restored, pending, rebased at hydration, rejected at hydration, discarded', async () => {
  const opts = options();
  const first = await createSyncStore(opts);
  first.dispatch({ type: 'add', id: 'stored' });
  await first.close();

  const store = createLogsyncStore(opts);
  const events = [];
  const stop = store.onIntent((e) => events.push([e.type, e.action.id, e.seq === null ? 'no seq' : 'seq', e.code].filter(Boolean)));
  const errors = [];
  store.onError((err) => errors.push(err.code));
  store.dispatch({ type: 'add', id: 'early' });
  store.dispatch({ type: 'add', id: 'stored' }); // fine on the initial state, not on the restored one
  assert.deepEqual(store.getState(), ['early', 'stored']);
  await store.ready;
  assert.deepEqual(store.getState(), ['stored', 'early'], 'the conflicting action was dropped');
  assert.deepEqual(errors, ['REDUCER']);
  assert.deepEqual(events, [
    ['pending', 'early', 'no seq'],
    ['pending', 'stored', 'no seq'],
    ['pending', 'stored', 'seq'], // restored from storage
    ['rejected', 'stored', 'no seq', 'REDUCER'],
    ['rebased', 'early', 'no seq'], // dispatched before hydration, folded onto the restored state
  ]);

  // After hydration: pending at dispatch; discard gives discarded with its seq.
  events.length = 0;
  store.dispatch({ type: 'add', id: 'late' });
  assert.deepEqual(events, [['pending', 'late', 'no seq']]);
  await until('seqs', () => store.pending().length === 3 && store.pending().every((p) => p.seq !== null));
  const late = store.pending().find((p) => p.action.id === 'late');
  store.discard(late.seq);
  await until('the discarded event', () => events.length === 2);
  assert.deepEqual(events[1], ['discarded', 'late', 'seq']);
  assert.deepEqual(store.getState(), ['stored', 'early']);
  stop();
  store.dispatch({ type: 'add', id: 'unheard' });
  assert.equal(events.length, 2, 'no events after the listener stopped');
  await store.close();
});

test('listeners that dispatch when an action fails at hydration: their action comes after the replayed ones, and is tracked', async () => {
  const opts = options();
  const first = await createSyncStore(opts);
  first.dispatch({ type: 'add', id: 'stored' });
  await first.close();

  const store = createLogsyncStore(opts);
  const events = [];
  store.onIntent((e) => {
    events.push([e.type, e.action.id]);
    if (e.type === 'rejected') store.dispatch({ type: 'add', id: 'after-rejected' });
  });
  store.onError(() => store.dispatch({ type: 'add', id: 'after-error' }));
  store.dispatch({ type: 'add', id: 'stored' }); // fails on the restored state
  store.dispatch({ type: 'add', id: 'early' });
  await store.ready;
  assert.deepEqual(store.getState(), ['stored', 'early', 'after-rejected', 'after-error'], 'replayed actions first, in order');
  assert.deepEqual(events, [
    ['pending', 'stored'],
    ['pending', 'early'],
    ['pending', 'stored'], // restored from storage
    ['rejected', 'stored'],
    ['pending', 'after-rejected'],
    ['rebased', 'early'], // not the actions dispatched onto the restored state
    ['pending', 'after-error'],
  ]);
  await until('seqs', () => store.pending().length === 4 && store.pending().every((p) => p.seq !== null));
  assert.deepEqual(store.pending().map((p) => p.action.id), ['stored', 'early', 'after-rejected', 'after-error']);
  await store.close();
});

test('tracker: a new log epoch renumbers the pending intents; they stay pending, then are confirmed', () => {
  const { tracker, short } = tracked();
  tracker.hydrated(online(10), false);
  tracker.dispatched(JSON.stringify(a), a);
  tracker.dispatched(JSON.stringify(b), b);
  tracker.reconcile(online(10), [{ seq: 5, action: a }, { seq: 6, action: b }]);
  tracker.epochChanged();
  tracker.reconcile(online(0), [{ seq: 1, action: { ...a } }, { seq: 2, action: { ...b } }]);
  assert.deepEqual(short().slice(2), [['sent', 5, 'a'], ['sent', 6, 'b']], 'not taken as decided');
  tracker.reconcile(online(2), []);
  assert.deepEqual(short().slice(4), [['confirmed', 1, 'a', 2], ['confirmed', 2, 'b', 2]]);
});

test('tracker: without an epoch change, a vanished seq is a decision', () => {
  const { tracker, short } = tracked();
  tracker.hydrated(online(10), false);
  tracker.dispatched(JSON.stringify(a), a);
  tracker.reconcile(online(10), [{ seq: 5, action: a }]);
  tracker.reconcile(online(11), [{ seq: 1, action: { ...a } }]);
  assert.deepEqual(short().slice(2), [['pending', 1, 'a'], ['confirmed', 5, 'a', 11], ['sent', 1, 'a']],
    'seq 5 was decided; seq 1 is another action of this tab it had not seen');
});
