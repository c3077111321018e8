// App upgrades and per-action offline policy, with the real wasm store
// (fake-indexeddb in Node) against a real logsync-server: a store reopened
// by a newer version of the app (schemaVersion, upcast, migrate), a store
// older than the data it meets (status.outdated, SCHEMA_TOO_NEW), two
// versions on one database, online-only actions (OFFLINE) and actions with
// a time-to-live (EXPIRED).
import 'fake-indexeddb/auto';
import './wasm-node.mjs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogsyncStore, createSyncStore } from 'logsync';
import { serverForFile, skip, until } from './real-server.mjs';

const files = serverForFile();
const url = () => `ws://127.0.0.1:${files.server.port}/v1/ws`;
const base = { devtools: false, backoffMinMs: 50, backoffMaxMs: 200 };

// Version 1 of the app: an item is `{ type: 'add', text }`.
const v1 = {
  ...base,
  initialState: { items: [] },
  reducer: (state, action) => (action.type === 'add' ? { items: [...state.items, action.text] } : state),
};
// Version 2: it is `{ type: 'add', title }`, and the state's items are
// objects. Upcasts and migrations are counted.
function v2({ migrate = false } = {}) {
  const calls = { upcast: [], migrate: [] };
  const options = {
    ...base,
    initialState: { items: [] },
    schemaVersion: 2,
    reducer: (state, action, meta) => {
      if (action.type !== 'add') return state;
      assert.equal(typeof action.title, 'string', `v2 folds v2 actions only: ${JSON.stringify(action)}`);
      return { items: [...state.items, { title: action.title, schema: meta.schema }] };
    },
    upcast: (action, from) => {
      calls.upcast.push([action.text ?? action.title, from]);
      return action.type === 'add' ? { type: 'add', title: action.text.toUpperCase() } : action;
    },
  };
  if (migrate) {
    options.migrate = (state, from) => {
      calls.migrate.push(from);
      return { items: state.items.map((text) => ({ title: text.toUpperCase(), schema: from, migrated: true })) };
    };
  }
  return { options, calls };
}

const events = async (stream) => {
  const r = await fetch(`http://127.0.0.1:${files.server.port}/v1/streams/${encodeURIComponent(stream)}/events?after=0`);
  return (await r.json()).events;
};
const metric = async (name) => {
  const text = await (await fetch(`http://127.0.0.1:${files.server.port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.split(' ')[1]);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test('a v1 outbox reopened in place by v2: folded upcast, each action pushed once, synced state = the upcast fold', { skip }, async (t) => {
  const stream = `schema/${randomUUID()}`;
  const dbName = `upgrade-${randomUUID()}`;
  const old = await createSyncStore({ ...v1, url: url(), stream, dbName, connect: false });
  old.dispatch({ type: 'add', text: 'milk' });
  old.dispatch({ type: 'add', text: 'eggs' });
  await until('both written', () => old.status.pending === 2 && old.status.writing === 0);
  await old.close();

  const { options, calls } = v2();
  const store = await createSyncStore({ ...options, url: url(), stream, dbName, connect: false });
  t.after(() => store.close());
  const expected = { items: [{ title: 'MILK', schema: 1 }, { title: 'EGGS', schema: 1 }] };
  assert.deepEqual(store.getState(), expected, 'the queued v1 actions fold upcast, meta.schema says 1');
  assert.deepEqual(calls.upcast.slice(0, 2), [['milk', 1], ['eggs', 1]]);
  assert.equal(store.status.pending, 2);
  store.dispatch({ type: 'add', title: 'TEA' });
  store.reconnect();
  await store.synced();
  const log = await events(stream);
  assert.deepEqual(log.map((e) => [e.payload.text ?? e.payload.title, e.schema]), [['milk', 1], ['eggs', 1], ['TEA', 2]], 'each once, under the version it was made in');
  assert.deepEqual(store.getState(), { items: [...expected.items, { title: 'TEA', schema: 2 }] }, 'confirmed: the same upcast fold');
  assert.equal(store.status.outdated, false);
});

test('a stored v1 snapshot opened by v2: migrated with migrate; without it dropped and rebuilt from the server', { skip }, async (t) => {
  const stream = `schema/${randomUUID()}`;
  const dbName = `snap-${randomUUID()}`;
  const old = await createSyncStore({ ...v1, url: url(), stream, dbName, snapshotEvery: 2 });
  old.dispatch({ type: 'add', text: 'a' });
  old.dispatch({ type: 'add', text: 'b' });
  await old.synced();
  old.dispatch({ type: 'add', text: 'c' });
  await old.synced();
  await old.close();
  // The database holds a snapshot at offset 2 (made by v1) and event 3.
  const snapshots = await rawAll(dbName, 'snapshots');
  assert.deepEqual(snapshots.map((s) => [s.offset, s.schema]), [[2, 1]]);

  const copy = `${dbName}-copy`;
  await copyDb(dbName, copy);

  const migrating = v2({ migrate: true });
  const m = await createSyncStore({ ...migrating.options, url: url(), stream, dbName, connect: false });
  assert.deepEqual(migrating.calls.migrate, [1]);
  assert.deepEqual(m.getState(), { items: [{ title: 'A', schema: 1, migrated: true }, { title: 'B', schema: 1, migrated: true }, { title: 'C', schema: 1 }] },
    'the snapshot migrated, the stored event after it upcast');
  assert.equal(m.status.offset, 3);
  await m.close();

  const rebuilding = v2();
  const r = await createSyncStore({ ...rebuilding.options, url: url(), stream, dbName: copy, connect: false });
  t.after(() => r.close());
  assert.deepEqual(r.getState(), { items: [] }, 'no migrate: the v1 snapshot is not used');
  assert.equal(r.status.offset, 0);
  r.reconnect();
  await until('rebuilt from the server', () => r.status.offset === 3);
  const rebuilt = { items: [{ title: 'A', schema: 1 }, { title: 'B', schema: 1 }, { title: 'C', schema: 1 }] };
  assert.deepEqual(r.getState(), rebuilt);
  await r.synced();
  await until('the events stored', async () => (await rawAll(copy, 'events')).length === 3);
  assert.deepEqual(await rawAll(copy, 'snapshots'), [], 'the v1 snapshot is gone from storage');
  await r.close();
  const offline = await createSyncStore({ ...rebuilding.options, url: url(), stream, dbName: copy, connect: false });
  t.after(() => offline.close());
  assert.deepEqual(offline.getState(), rebuilt, 'reopened offline from the stored events');
  assert.equal(offline.status.offset, 3);
});

test('a v1 store meeting an event of schema 2 stops: SCHEMA_TOO_NEW, outdated, outbox kept, no reconnect loop', { skip }, async (t) => {
  const stream = `schema/${randomUUID()}`;
  const newer = await createSyncStore({ ...v2().options, url: url(), stream, dbName: `newer-${randomUUID()}` });
  t.after(() => newer.close());
  newer.dispatch({ type: 'add', title: 'NEW' });
  await newer.synced();

  const dbName = `older-${randomUUID()}`;
  const old = await createSyncStore({ ...v1, url: url(), stream, dbName, connect: false });
  const errors = [];
  old.onError((e) => errors.push(e.code));
  old.reconnect();
  await until('outdated', () => old.status.outdated);
  assert.equal(old.status.lastError?.code, 'SCHEMA_TOO_NEW');
  assert.ok(errors.includes('SCHEMA_TOO_NEW'), errors.join());
  assert.equal(old.status.online, false);
  assert.deepEqual(old.getState(), { items: [] }, 'the newer event was not applied');
  old.dispatch({ type: 'add', text: 'kept' });
  await until('written', () => old.status.writing === 0);
  const connections = await metric('logsync_connections_total');
  assert.ok(connections >= 2, `the counter counts connections: ${connections}`);
  old.reconnect(); // an outdated store does not connect, even when asked
  await sleep(1000); // backoffMinMs is 50: a loop would connect many times
  assert.equal(await metric('logsync_connections_total'), connections, 'no connection since');
  assert.equal(old.status.pending, 1, 'the action stays queued');
  await old.close();
  assert.deepEqual((await events(stream)).map((e) => e.payload.title ?? e.payload.text), ['NEW'], 'nothing of it was sent');

  // Reloaded with the newer version, the same database sends it.
  const reloaded = await createSyncStore({ ...v2().options, url: url(), stream, dbName });
  t.after(() => reloaded.close());
  await reloaded.synced();
  assert.deepEqual((await events(stream)).map((e) => [e.payload.title ?? e.payload.text, e.schema]), [['NEW', 2], ['kept', 1]]);
  assert.deepEqual(reloaded.getState(), { items: [{ title: 'NEW', schema: 2 }, { title: 'KEPT', schema: 1 }] });
});

test('a v1 and a v2 store on one database at once: v1 becomes outdated, v2 works', { skip }, async (t) => {
  const stream = `schema/${randomUUID()}`;
  const dbName = `both-${randomUUID()}`;
  const old = await createSyncStore({ ...v1, url: url(), stream, dbName });
  const { options } = v2();
  const store = await createSyncStore({ ...options, url: url(), stream, dbName });
  t.after(async () => { await old.close(); await store.close(); });
  old.dispatch({ type: 'add', text: 'one' });
  await old.synced();
  await until('v2 has it', () => store.status.offset === 1);
  store.dispatch({ type: 'add', title: 'TWO' });
  await store.synced();
  await until('v1 outdated', () => old.status.outdated);
  assert.equal(old.status.lastError?.code, 'SCHEMA_TOO_NEW');
  assert.deepEqual(old.getState(), { items: ['one'] }, 'v1 applied nothing of v2');
  store.dispatch({ type: 'add', title: 'THREE' });
  await store.synced();
  assert.deepEqual(store.getState().items.map((i) => i.title), ['ONE', 'TWO', 'THREE']);
  assert.equal(store.status.outdated, false);
  assert.equal(store.status.online, true);
  assert.deepEqual((await events(stream)).map((e) => e.schema), [1, 2, 2]);
  // A v2 reopening the database afterwards works from what both wrote.
  await store.close();
  const again = await createSyncStore({ ...v2().options, url: url(), stream, dbName, connect: false });
  t.after(() => again.close());
  assert.deepEqual(again.getState().items.map((i) => i.title), ['ONE', 'TWO', 'THREE']);
});

test('online-only actions throw OFFLINE while not live and nothing is queued; live, they sync', { skip }, async (t) => {
  const stream = `schema/${randomUUID()}`;
  const options = { ...v1, url: url(), stream, dbName: `online-${randomUUID()}`, onlineOnly: ['buy'], connect: false };
  const early = createLogsyncStore({ ...options, dbName: `early-${randomUUID()}` });
  assert.throws(() => early.dispatch({ type: 'buy', text: 'x' }), (e) => e.code === 'OFFLINE' && e.name === 'LogsyncError');
  await early.ready;
  await early.close();

  const store = await createSyncStore(options);
  t.after(() => store.close());
  assert.throws(() => store.dispatch({ type: 'buy', text: 'now' }), (e) => e.code === 'OFFLINE' && /buy/.test(e.message));
  store.dispatch({ type: 'add', text: 'cart' }); // not online-only: queued
  await sleep(20);
  assert.equal(store.status.pending, 1, 'only the other action is queued');
  assert.deepEqual(store.getState(), { items: ['cart'] });
  store.reconnect();
  await until('live', () => store.status.online);
  store.dispatch({ type: 'buy', text: 'now' });
  await store.synced();
  assert.deepEqual((await events(stream)).map((e) => e.payload.text), ['cart', 'now']);
});

test('an action queued offline past its ttl is withdrawn (EXPIRED) and never appended; others go', { skip }, async (t) => {
  const stream = `schema/${randomUUID()}`;
  const store = await createSyncStore({
    ...v1, url: url(), stream, dbName: `ttl-${randomUUID()}`, connect: false,
    ttl: { add: 300, keep: 3_600_000 },
  });
  t.after(() => store.close());
  const rejected = [];
  store.onRejected((r) => rejected.push([r.code, r.action.text]));
  const fates = [];
  store.onIntent((e) => { if (!['pending', 'sent', 'rebased'].includes(e.type)) fates.push([e.type, e.action.text, e.code]); });
  store.dispatch({ type: 'add', text: 'stale' });
  store.dispatch({ type: 'keep', text: 'fresh' });
  assert.deepEqual(store.getState(), { items: ['stale'] });
  await until('withdrawn while offline', () => store.getState().items.length === 0, 2000);
  assert.deepEqual(store.pending().map((p) => [p.action.text, p.expired]), [['stale', true], ['fresh', undefined]]);
  assert.deepEqual(fates, [], 'nothing decided yet');
  store.reconnect();
  await store.synced();
  await until('the rejection', () => rejected.length === 1);
  assert.deepEqual(rejected, [['EXPIRED', 'stale']]);
  await until('both fates', () => fates.length === 2);
  // (In either order: the refusal and the event are two answers.)
  assert.deepEqual(fates.sort(), [['confirmed', 'fresh', undefined], ['rejected', 'stale', 'EXPIRED']], 'onIntent: the expired one is not taken for confirmed');
  assert.deepEqual((await events(stream)).map((e) => e.payload.text), ['fresh'], 'the expired one never appended');
  assert.equal(store.status.pending, 0);
});

test('an action the server refuses as older than its module takes: SCHEMA_TOO_OLD, rolled back, status.outdated', { skip }, async (t) => {
  // The module at version 3 takes actions of version 2 and later.
  const dir = mkdtempSync(join(tmpdir(), 'logsync-schema-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const module = join(dir, 'items.js');
  writeFileSync(module, `export const initialState = { items: [] };
export const schemaVersion = 3;
export const minSchemaVersion = 2;
export function upcast(action) { return action; }
export default function items(state, action) {
  return action.type === 'add' ? { items: [...state.items, action.title] } : state;
}
`);
  const server = await files.start({ args: ['--reducer', `old/*=${module}`] });
  const stream = `old/${randomUUID()}`;
  const store = await createSyncStore({ ...v1, url: `ws://127.0.0.1:${server.port}/v1/ws`, stream, dbName: `old-${randomUUID()}` });
  t.after(() => store.close());
  const rejected = [];
  store.onRejected((r) => rejected.push([r.code, r.action.text]));
  assert.equal(store.status.outdated, false);
  store.dispatch({ type: 'add', text: 'too old' });
  await store.synced();
  assert.deepEqual(rejected, [['SCHEMA_TOO_OLD', 'too old']]);
  assert.deepEqual(store.getState(), { items: [] }, 'rolled back');
  assert.equal(store.status.outdated, true);
  assert.equal(store.status.lastError?.code, 'SCHEMA_TOO_OLD');
  assert.equal(store.status.online, true, 'it still syncs: only its own actions are refused');
});

// Every value of one object store of database `name` (fake-indexeddb).
function rawAll(name, store) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(name);
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      const req = db.transaction([store]).objectStore(store).getAll();
      req.onsuccess = () => { db.close(); resolve(req.result); };
      req.onerror = () => { db.close(); reject(req.error); };
    };
  });
}

// Copies every record of database `from` into a new database `to`.
function copyDb(from, to) {
  const open = (name, upgrade) => new Promise((resolve, reject) => {
    const r = upgrade ? indexedDB.open(name, upgrade.version) : indexedDB.open(name);
    r.onerror = () => reject(r.error);
    if (upgrade) r.onupgradeneeded = () => { for (const s of upgrade.stores) r.result.createObjectStore(s); };
    r.onsuccess = () => resolve(r.result);
  });
  return (async () => {
    const src = await open(from);
    const stores = [...src.objectStoreNames];
    const dst = await open(to, { version: src.version, stores });
    for (const s of stores) {
      const [keys, values] = await new Promise((resolve) => {
        const tx = src.transaction([s]);
        const k = tx.objectStore(s).getAllKeys();
        const v = tx.objectStore(s).getAll();
        tx.oncomplete = () => resolve([k.result, v.result]);
      });
      await new Promise((resolve, reject) => {
        const tx = dst.transaction([s], 'readwrite');
        keys.forEach((key, i) => tx.objectStore(s).put(values[i], key));
        tx.oncomplete = resolve;
        tx.onerror = () => reject(tx.error);
      });
    }
    src.close();
    dst.close();
  })();
}
