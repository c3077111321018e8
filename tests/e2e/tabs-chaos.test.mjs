// Browser chaos for tabs that share one connection: the React TodoMVC
// example in three pages of one headless Chromium context (one IndexedDB
// database, one client id) and two pages of another, on two lists (rooms,
// so two streams in each database), against a real logsync-server with
// its SQLite file. Each context reaches
// the server through its own link, a TCP proxy that cuts, delays and black-
// holes; the server is kill -9'd and restarted; the leader page is closed
// at random moments and pages are reloaded. At the end every action whose
// dispatch was stored is in the log exactly once (one whose page died
// before its outbox write at most once), every page shows the same list,
// and no sample of the links ever saw more than one WebSocket per
// database.
//
// CI runs a short round (LOGSYNC_TABS_CHAOS_SECONDS, default 25). The
// soak is the same test for ten minutes:
//
//   cd tests/e2e && LOGSYNC_TABS_CHAOS_SECONDS=600 node --test tabs-chaos.test.mjs
//
// LOGSYNC_TABS_CHAOS_SEED replays a run's choices (the browser's and the
// network's timing still differ).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { waitFor } from './lib/browser.mjs';
import { todoSuite } from './lib/todo-suite.mjs';
import { openLink } from './lib/link.mjs';
import { openTodoApp, status, titles } from './lib/todo-page.mjs';

const SECONDS = Number(process.env.LOGSYNC_TABS_CHAOS_SECONDS ?? 25);
const SEED = Number(process.env.LOGSYNC_TABS_CHAOS_SEED ?? Date.now() % 2 ** 31);

const env = todoSuite();

/** A small seeded generator (mulberry32), so a run's choices can be replayed. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test(`tabs sharing a connection lose and double nothing under network faults, kill -9, leader closes and reloads (${SECONDS} s)`, { timeout: (SECONDS + 240) * 1000 }, async (t) => {
  const random = rng(SEED);
  const pick = (xs) => xs[Math.floor(random() * xs.length)];
  t.diagnostic(`seed ${SEED} (LOGSYNC_TABS_CHAOS_SEED to replay)`);
  const run = randomUUID().slice(0, 8);
  const roomNames = [`chaos-${run}-1`, `chaos-${run}-2`];
  const streamOf = (room) => `todos/${room}`;
  const devices = [];
  // A: two pages on the first list, one on the second; B: one on each.
  // Each database's pages share one connection, whatever their list.
  for (const [name, rooms] of [['A', [0, 0, 1]], ['B', [0, 1]]]) {
    const link = await openLink(() => env.server.port);
    const context = await env.browser.newContext();
    const pages = [];
    for (const r of rooms) pages.push(await openTodoApp(context, link.url, roomNames[r]));
    devices.push({ name, link, context, pages, rooms: rooms.map((r) => roomNames[r]) });
  }
  t.after(async () => {
    for (const d of devices) {
      await d.context.close().catch(() => {});
      await d.link.close();
    }
  });

  const roomOf = new Map(); // action id -> its list
  const stored = new Set(); // dispatched, and its outbox write done: must be in the log once
  const maybe = new Set(); // its page died or reloaded around the dispatch: at most once
  const counts = { dispatches: 0, cuts: 0, delays: 0, blackHoles: 0, kills: 0, leaderCloses: 0, reloads: 0, leaderChanges: 0 };
  let maxWebSockets = 0;
  let samples = 0;
  let over = null;
  const leaders = new Map();
  let next = 0;

  // Samples: WebSockets per database (its link), and who leads.
  const sampler = setInterval(() => {
    for (const d of devices) {
      const n = d.link.webSockets();
      samples++;
      maxWebSockets = Math.max(maxWebSockets, n);
      if (n > 1 && over === null) over = `${d.name}: ${n} WebSockets at ${new Date().toISOString()}`;
    }
  }, 50);
  t.after(() => clearInterval(sampler));

  /** Dispatches one todo in `page`; resolves true once its outbox write is done. */
  const dispatch = async (page, id) => page.evaluate(async (todo) => {
    const store = window.logsync?.store;
    if (!store) return false;
    await store.ready;
    store.dispatch({ type: 'todo/added', id: todo, text: todo });
    // The store takes a burst of dispatches over a microtask later: only
    // then does `writing` count its outbox write (read at once, it was 0,
    // and every dispatch counted as stored before its write began).
    await null;
    // The outbox write (with its seq) is done when nothing is being written.
    const deadline = performance.now() + 10_000;
    while (store.getStatus().writing > 0) {
      if (performance.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 5));
    }
    return true;
  }, id);

  /** The page of `d` leading list `room` (any list when null). */
  const leaderOf = async (d, room = null) => {
    for (const [i, p] of d.pages.entries()) {
      if (room !== null && d.rooms[i] !== room) continue;
      const v = await p.locator('[data-testid=status]').getAttribute('data-leader', { timeout: 2_000 }).catch(() => null);
      if (v === 'true') return p;
    }
    return null;
  };

  const faults = [];
  const deadline = performance.now() + SECONDS * 1000;
  const killsPlanned = Math.max(2, Math.floor(SECONDS / 12));
  const killAt = Array.from({ length: killsPlanned }, (_, i) => performance.now() + ((i + 0.5) * SECONDS * 1000) / killsPlanned);
  while (performance.now() < deadline) {
    const r = random();
    const d = pick(devices);
    if (killAt.length > 0 && performance.now() >= killAt[0]) {
      killAt.shift();
      await env.server.kill();
      counts.kills++;
      await sleep(100 + random() * 900);
      await env.server.start();
    } else if (r < 0.6) {
      const i = Math.floor(random() * d.pages.length);
      const page = d.pages[i];
      const id = `t${next++}`;
      roomOf.set(id, d.rooms[i]);
      counts.dispatches++;
      maybe.add(id);
      if (await dispatch(page, id).catch(() => false)) {
        maybe.delete(id);
        stored.add(id);
      }
    } else if (r < 0.68) {
      const leader = await leaderOf(d);
      if (leader) {
        // Closed at a random moment (its writes, pushes and notices in
        // flight), then the tab comes back as a new page.
        const i = d.pages.indexOf(leader);
        counts.leaderCloses++;
        await leader.close({ runBeforeUnload: false });
        d.pages[i] = await openTodoApp(d.context, d.link.url, d.rooms[i]);
      }
    } else if (r < 0.74) {
      const i = Math.floor(random() * d.pages.length);
      counts.reloads++;
      await d.pages[i].reload().catch(() => {});
    } else if (r < 0.8) {
      counts.cuts++;
      d.link.cut();
      faults.push(sleep(200 + random() * 1500).then(() => d.link.restore()));
    } else if (r < 0.85) {
      counts.delays++;
      d.link.delay(20 + Math.floor(random() * 300));
      faults.push(sleep(500 + random() * 2000).then(() => d.link.delay(0)));
    } else if (r < 0.88) {
      counts.blackHoles++;
      d.link.blackHole(true);
      faults.push(sleep(300 + random() * 1500).then(() => d.link.blackHole(false)));
    }
    for (const dev of devices) {
      for (const room of roomNames) {
        const l = await leaderOf(dev, room);
        const key = `${dev.name} ${room}`;
        if (l && leaders.has(key) && leaders.get(key) !== l) counts.leaderChanges++;
        if (l) leaders.set(key, l);
      }
    }
    await sleep(20 + random() * 100);
  }
  await Promise.all(faults);
  for (const d of devices) {
    d.link.restore();
    d.link.delay(0);
    d.link.blackHole(false);
  }

  // Settle: every page online, nothing pending, all at the server's head.
  const head = async (room) => {
    const r = await fetch(`${env.server.url}/v1/streams/${encodeURIComponent(streamOf(room))}/events?after=0`);
    const body = await r.json();
    return body.head ?? body.events.length;
  };
  const all = devices.flatMap((d) => d.pages.map((page, i) => ({ page, room: d.rooms[i] })));
  let last = null;
  try {
    await waitFor('every page online, nothing pending, all at the same offset as the server', async () => {
      const heads = Object.fromEntries(await Promise.all(roomNames.map(async (r) => [r, await head(r)])));
      const st = await Promise.all(all.map(async ({ page, room }) => ({
        ...(await status(page)),
        room,
        leader: await page.locator('[data-testid=status]').getAttribute('data-leader'),
      })));
      last = { heads, pages: st };
      return st.every((s) => s.online && s.pending === 0 && s.offset === heads[s.room]);
    }, { timeout: 120_000, interval: 250 });
  } catch (e) {
    // What each page showed last (A's pages first), to tell a stuck page.
    throw new Error(`${e.message}; seed ${SEED}; last seen ${JSON.stringify(last)}`);
  }

  // The log: every stored dispatch once, the maybes at most once, nothing else.
  const logs = {};
  for (const room of roomNames) {
    logs[room] = [];
    for (let after = 0; ;) {
      const r = await fetch(`${env.server.url}/v1/streams/${encodeURIComponent(streamOf(room))}/events?after=${after}`);
      const page = await r.json();
      if (page.events.length === 0) break;
      logs[room].push(...page.events.map((e) => e.payload.id));
      after = page.events[page.events.length - 1].offset;
    }
  }
  const ids = roomNames.flatMap((room) => logs[room]);
  const seen = new Map();
  for (const id of ids) seen.set(id, (seen.get(id) ?? 0) + 1);
  for (const room of roomNames) {
    for (const id of logs[room]) assert.equal(roomOf.get(id), room, `${id} is in the log of the list it was added to`);
  }
  for (const id of stored) assert.equal(seen.get(id), 1, `${id} (stored) is in the log ${seen.get(id) ?? 0} times`);
  for (const [id, n] of seen) {
    assert.ok(stored.has(id) || maybe.has(id), `${id} is in the log but was never dispatched`);
    assert.equal(n, 1, `${id} is in the log ${n} times`);
  }
  // Every page shows its list's log.
  for (const [i, { page, room }] of all.entries()) {
    assert.deepEqual((await titles(page)).sort(), [...logs[room]].sort(), `page ${i} shows its list's log`);
  }
  assert.equal(over, null, `more than one WebSocket per database: ${over}`);
  t.diagnostic(`lists: ${roomNames.map((r) => `${r}: ${logs[r].length} todos`).join(', ')}`);
  t.diagnostic(`actions ${counts.dispatches} (stored ${stored.size}, maybe ${maybe.size}, in the log ${ids.length}); faults: ${counts.cuts} cuts, ${counts.delays} delays, ${counts.blackHoles} black holes; ${counts.kills} kill -9 + restart; ${counts.leaderCloses} leader pages closed, ${counts.reloads} reloads, ${counts.leaderChanges} leader changes seen; WebSockets per database: at most ${maxWebSockets} over ${samples} samples`);
});
