// One browser, several users; pending actions listed and discarded; one
// rule for error messages — on the real wasm module in Node (IndexedDB is
// fake-indexeddb; stores open with `connect: false`).
import 'fake-indexeddb/auto';
import './wasm-node.mjs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createLogsyncStore, createSyncStore, dbNameFor, LogsyncError } from 'logsync';

const votes = (state = { votes: [] }, action) =>
  action.type === 'vote' ? { votes: [...state.votes, action.choice] } : state;

// A token as the auth service would mint it; the store only reads its
// subject (the server checks the signature).
const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
const tokenFor = (sub) => `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, exp: 4102444800 })}.signature`;

const offline = (extra = {}) => ({
  url: 'ws://127.0.0.1:9/v1/ws',
  stream: 'poll/lunch',
  reducer: votes,
  dbName: `poll-${randomUUID()}`,
  connect: false,
  ...extra,
});

test('dbNameFor keys a database by the token\'s subject', () => {
  assert.equal(dbNameFor('poll', tokenFor('alice')), 'poll@alice');
  assert.equal(dbNameFor('poll', tokenFor('zoë')), 'poll@zoë', 'UTF-8 subjects');
  assert.equal(dbNameFor('poll', null), 'poll');
  assert.equal(dbNameFor('poll', 'opaque-token'), 'poll');
  assert.equal(dbNameFor('poll', `${b64({})}.${b64({ exp: 1 })}.x`), 'poll', 'no subject');
  assert.equal(dbNameFor('poll', 'a.%%%.c'), 'poll');
});

test('each user of one browser has a replica of their own; setToken switches', async (t) => {
  const options = offline({ token: tokenFor('alice') });
  const store = await createSyncStore(options);
  t.after(() => store.close());
  const aliceId = store.status.clientId;
  store.dispatch({ type: 'vote', choice: 'pizza' });
  await Promise.resolve();
  assert.equal(store.status.pending, 1);

  let notified = 0;
  store.subscribe(() => notified++);
  const statuses = [];
  store.onStatus((s) => statuses.push(s));

  // Bob signs in on the same browser: his own client id, state and outbox.
  const switching = store.setToken(tokenFor('bob'));
  assert.ok(switching instanceof Promise, 'setToken returns a promise');
  assert.throws(() => store.dispatch({ type: 'vote', choice: 'x' }), (err) => {
    assert.ok(err instanceof LogsyncError);
    assert.equal(err.code, 'INVALID_REQUEST');
    assert.match(err.message, /await store\.setToken/);
    return true;
  }, 'no dispatch while the replicas switch');
  await switching;
  assert.notEqual(store.status.clientId, aliceId, 'another client id');
  assert.deepEqual(store.getState(), { votes: [] }, 'not alice\'s state');
  assert.equal(store.status.pending, 0, 'not alice\'s outbox');
  assert.ok(notified >= 1, 'subscribers hear of the new state');
  assert.equal(statuses.at(-1), store.status, 'status listeners follow the switch');
  store.dispatch({ type: 'vote', choice: 'sushi' });
  await Promise.resolve();
  assert.equal(store.status.pending, 1);
  const bobId = store.status.clientId;

  // The same user with a refreshed token: no switch.
  await store.setToken(tokenFor('bob'));
  assert.equal(store.status.clientId, bobId);
  assert.deepEqual(store.getState(), { votes: ['sushi'] });

  // Alice again: her pending vote was kept in her own database.
  await store.setToken(tokenFor('alice'));
  assert.equal(store.status.clientId, aliceId);
  assert.deepEqual(store.getState(), { votes: ['pizza'] });
  assert.equal(store.status.pending, 1);
  assert.deepEqual(store.pending().map((p) => p.action), [{ type: 'vote', choice: 'pizza' }]);

  // A store opened for bob later finds his.
  const again = await createSyncStore({ ...options, token: tokenFor('bob') });
  t.after(() => again.close());
  assert.equal(again.status.clientId, bobId);
  assert.deepEqual(again.getState(), { votes: ['sushi'] });
});

test('setToken with another user before hydration: dispatch is refused until the switch is done, as after hydration', async (t) => {
  const options = offline({ token: tokenFor('alice'), devtools: false });
  const store = createLogsyncStore(options);
  t.after(() => store.close());
  store.dispatch({ type: 'vote', choice: 'pizza' }); // alice's
  const switching = store.setToken(tokenFor('bob'));
  assert.throws(() => store.dispatch({ type: 'vote', choice: 'sushi' }), (err) => {
    assert.ok(err instanceof LogsyncError);
    assert.equal(err.code, 'INVALID_REQUEST');
    assert.match(err.message, /await store\.setToken/);
    return true;
  }, 'not sent under alice');
  await switching;
  assert.deepEqual(store.getState(), { votes: [] }, 'bob\'s replica');
  store.dispatch({ type: 'vote', choice: 'sushi' });
  assert.deepEqual(store.getState(), { votes: ['sushi'] });
  await store.close();
  const alice = await createSyncStore(options);
  try {
    assert.deepEqual(alice.getState(), { votes: ['pizza'] }, 'alice\'s vote kept in her database, and only it');
  } finally {
    await alice.close();
  }
  const bob = await createSyncStore({ ...options, token: tokenFor('bob') });
  try {
    assert.deepEqual(bob.getState(), { votes: ['sushi'] });
  } finally {
    await bob.close();
  }
});

test('setToken with another user after hydration: onIntent forgets the previous user\'s intents (no fates for them), hears the new user\'s as restored; local actions are cleared', async (t) => {
  const withPanel = (state = { votes: [] }, action) => (action.type === 'panel' ? { ...state, panel: action.open } : votes(state, action));
  const options = offline({ reducer: withPanel, filter: (action) => action.type !== 'panel', devtools: false });
  const waitSeqs = async (store) => {
    const deadline = performance.now() + 5000;
    while (store.pending().some((p) => p.seq === null)) {
      assert.ok(performance.now() < deadline, 'seqs assigned within 5 s');
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  // Bob voted earlier on this browser: his vote waits in his database, with seq 1.
  const bobBefore = await createSyncStore({ ...options, token: tokenFor('bob') });
  bobBefore.dispatch({ type: 'vote', choice: 'salad' });
  await waitSeqs(bobBefore);
  await bobBefore.close();

  const store = await createSyncStore({ ...options, token: tokenFor('alice') });
  t.after(() => store.close());
  const events = [];
  store.onIntent((e) => events.push([e.type, e.action.choice, e.seq, e.restored].filter((x) => x !== undefined)));
  store.dispatch({ type: 'vote', choice: 'pizza' });
  store.dispatch({ type: 'panel', open: true }); // local: not synced
  await waitSeqs(store);
  assert.equal(store.pending()[0].seq, 1, 'alice\'s seq overlaps bob\'s');
  assert.deepEqual(store.getState(), { votes: ['pizza'], panel: true });
  events.length = 0;

  await store.setToken(tokenFor('bob'));
  // The pending list is compared on status changes and a microtask after
  // state changes: a task later, every comparison the switch caused is done.
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(store.getState(), { votes: ['salad'] }, 'bob\'s state, without alice\'s local actions');
  assert.deepEqual(events, [['pending', 'salad', 1, true]], 'no fate for alice\'s pizza; bob\'s vote adopted as restored');
  store.discard(1);
  const deadline = performance.now() + 5000;
  while (events.length < 2) {
    assert.ok(performance.now() < deadline, 'the discard is reported within 5 s');
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.deepEqual(events.slice(1), [['discarded', 'salad', 1]], 'seq 1 is bob\'s salad now');
  assert.deepEqual(store.getState(), { votes: [] });
});

test('pending actions are listed and discarded', async (t) => {
  const store = await createSyncStore(offline());
  t.after(() => store.close());
  store.dispatch({ type: 'vote', choice: 'a' });
  store.dispatch({ type: 'vote', choice: 'b' });
  let list = store.pending();
  assert.deepEqual(list.map((p) => p.action.choice), ['a', 'b']);
  // Seqs arrive with the IndexedDB write.
  const deadline = performance.now() + 5000;
  while (store.pending().some((p) => p.seq === null)) {
    assert.ok(performance.now() < deadline, 'seqs assigned within 5 s');
    await new Promise((r) => setTimeout(r, 10));
  }
  list = store.pending();
  store.discard(list[0].seq);
  assert.deepEqual(store.getState(), { votes: ['b'] });
  assert.equal(store.status.pending, 1);
  assert.deepEqual(store.pending().map((p) => p.action.choice), ['b']);
  assert.throws(() => store.discard(list[0].seq), (err) => err.code === 'INVALID_REQUEST');
  assert.throws(() => store.discard('1'), (err) => err.code === 'INVALID_REQUEST');
});

test('error messages never repeat the code', async (t) => {
  const store = await createSyncStore(offline());
  t.after(() => store.close());
  const made = [];
  const grab = (fn) => { try { fn(); } catch (err) { made.push(err); } };
  grab(() => store.dispatch('vote'));
  grab(() => store.dispatch({ type: 'vote', bad: 1n }));
  grab(() => store.dispatch({ type: 'boom' }));
  const throwing = await createSyncStore(offline({ reducer: (s = {}, a) => { if (a.type === 'boom') throw new Error('no'); return s; } }));
  t.after(() => throwing.close());
  grab(() => throwing.dispatch({ type: 'boom' }));
  grab(() => store.discard(99));
  assert.ok(made.length >= 4, `${made.length} errors made`);
  for (const err of made) {
    assert.ok(err instanceof LogsyncError, String(err));
    assert.ok(!err.message.startsWith(err.code), `"${err.message}" repeats ${err.code}`);
    assert.ok(!/^[A-Z_]+: /.test(err.message), `"${err.message}" starts with a code`);
  }
});
