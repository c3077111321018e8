// The seat constraint through the npm package: twenty stores (Node,
// fake-indexeddb) book ten seats each of a pool of thirty while offline,
// then reconnect at once to a real logsync-server that folds the stream
// with the same module. Every seat anyone wanted is taken exactly once;
// each device hears of each seat it lost through onRejected, with the
// app's code; every replica ends equal to the server's /state.
import 'fake-indexeddb/auto';
import './wasm-node.mjs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { createSyncStore } from 'logsync';
import seats, { initialState } from './fixtures/seats.js';
import { serverForFile, skip, until } from './real-server.mjs';

const MODULE = fileURLToPath(new URL('./fixtures/seats.js', import.meta.url));
const DEVICES = 20;
const PER_DEVICE = 10;
const POOL = 30;
const files = serverForFile(['--reducer', `seats/*=${MODULE}`]);

// The seats device `d` books, distinct, overlapping other devices'.
const plan = (d) => Array.from({ length: PER_DEVICE }, (_, k) => `s${String((d * 7 + k * 3) % POOL).padStart(2, '0')}`);

test('twenty devices book offline: each seat once, losers told with the app code, replicas equal the server', { skip }, async (t) => {
  const stream = `seats/${randomUUID()}`;
  const devices = await Promise.all(Array.from({ length: DEVICES }, () => createSyncStore({
    url: `ws://127.0.0.1:${files.server.port}/v1/ws`,
    stream,
    reducer: seats,
    initialState,
    dbName: `seats-${randomUUID()}`,
    connect: false,
    devtools: false,
    backoffMinMs: 50,
    backoffMaxMs: 200,
  })));
  t.after(() => Promise.all(devices.map((s) => s.close())));
  const rejected = devices.map(() => []);
  devices.forEach((s, d) => s.onRejected((r) => rejected[d].push(r)));

  // Offline: every booking applies at once on its own device.
  devices.forEach((s, d) => {
    for (const seat of plan(d)) s.dispatch({ type: 'book', seat, who: `d${d}` });
    assert.deepEqual(Object.keys(s.getState().seats), plan(d));
  });
  await until('every booking pending', () => devices.every((s) => s.status.pending === PER_DEVICE));
  for (const s of devices) s.reconnect();
  await Promise.all(devices.map((s) => s.synced()));

  const r = await fetch(`http://127.0.0.1:${files.server.port}/v1/streams/${encodeURIComponent(stream)}/state`);
  assert.equal(r.status, 200);
  const { offset, state } = await r.json();
  const wanted = new Set(devices.flatMap((_, d) => plan(d)));
  assert.deepEqual(Object.keys(state.seats).sort(), [...wanted].sort(), 'every seat anyone wanted is taken');
  assert.equal(offset, wanted.size, 'the log holds one booking per seat, nothing refused');

  let won = 0;
  devices.forEach((_, d) => {
    const mine = plan(d).filter((seat) => state.seats[seat] === `d${d}`);
    const lost = plan(d).filter((seat) => state.seats[seat] !== `d${d}`);
    won += mine.length;
    assert.deepEqual(rejected[d].map((x) => x.action.seat).sort(), lost.sort(), `device ${d} is told of each seat it lost`);
    for (const x of rejected[d]) {
      assert.equal(x.code, 'REJECTED');
      assert.equal(x.message, `SEAT_TAKEN: seat ${x.action.seat} is taken`);
    }
  });
  assert.equal(won, wanted.size);
  assert.ok(won < DEVICES * PER_DEVICE, 'the plans overlap: some bookings lost');

  await until('every replica equals the server', () => devices.every((s) => s.status.offset === offset
    && s.status.pending === 0 && JSON.stringify(s.getState()) === JSON.stringify(state)));
});
