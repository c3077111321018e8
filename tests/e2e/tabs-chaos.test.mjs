// Browser chaos for tabs that share one connection: the React TodoMVC
// example in three pages of one headless Chromium context (one IndexedDB
// database, one client id) and two pages of another, all in one room,
// against a real logsync-server with its SQLite file. Each context reaches
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
  const room = `chaos-${randomUUID().slice(0, 8)}`;
  const stream = `todos/${room}`;
  const devices = [];
  for (const [name, n] of [['A', 3], ['B', 2]]) {
    const link = await openLink(() => env.server.port);
    const context = await env.browser.newContext();
    const pages = [];
    for (let i = 0; i < n; i++) pages.push(await openTodoApp(context, link.url, room));
    devices.push({ name, link, context, pages });
  }
  t.after(async () => {
    for (const d of devices) {
      await d.context.close().catch(() => {});
      await d.link.close();
    }
  });

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
    // The outbox write (with its seq) is done when nothing is being written.
    const deadline = Date.now() + 10_000;
    while (store.getStatus().writing > 0) {
      if (Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 5));
    }
    return true;
  }, id);

  const leaderOf = async (d) => {
    for (const p of d.pages) {
      const v = await p.locator('[data-testid=status]').getAttribute('data-leader', { timeout: 2_000 }).catch(() => null);
      if (v === 'true') return p;
    }
    return null;
  };

  const faults = [];
  const deadline = Date.now() + SECONDS * 1000;
  const killsPlanned = Math.max(2, Math.floor(SECONDS / 12));
  const killAt = Array.from({ length: killsPlanned }, (_, i) => Date.now() + ((i + 0.5) * SECONDS * 1000) / killsPlanned);
  while (Date.now() < deadline) {
    const r = random();
    const d = pick(devices);
    if (killAt.length > 0 && Date.now() >= killAt[0]) {
      killAt.shift();
      await env.server.kill();
      counts.kills++;
      await sleep(100 + random() * 900);
      await env.server.start();
    } else if (r < 0.6) {
      const page = pick(d.pages);
      const id = `t${next++}`;
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
        d.pages[i] = await openTodoApp(d.context, d.link.url, room);
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
      const l = await leaderOf(dev);
      if (l && leaders.has(dev.name) && leaders.get(dev.name) !== l) counts.leaderChanges++;
      if (l) leaders.set(dev.name, l);
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
  const head = async () => {
    const r = await fetch(`${env.server.url}/v1/streams/${encodeURIComponent(stream)}/events?after=0`);
    const body = await r.json();
    return body.head ?? body.events.length;
  };
  const all = devices.flatMap((d) => d.pages);
  let last = null;
  try {
    await waitFor('every page online, nothing pending, all at the same offset as the server', async () => {
      const h = await head();
      const st = await Promise.all(all.map(async (p) => ({
        ...(await status(p)),
        leader: await p.locator('[data-testid=status]').getAttribute('data-leader'),
      })));
      last = { head: h, pages: st };
      return st.every((s) => s.online && s.pending === 0 && s.offset === h) && h;
    }, { timeout: 120_000, interval: 250 });
  } catch (e) {
    // What each page showed last (A's pages first), to tell a stuck page.
    throw new Error(`${e.message}; seed ${SEED}; last seen ${JSON.stringify(last)}`);
  }

  // The log: every stored dispatch once, the maybes at most once, nothing else.
  const events = [];
  for (let after = 0; ;) {
    const r = await fetch(`${env.server.url}/v1/streams/${encodeURIComponent(stream)}/events?after=${after}`);
    const page = await r.json();
    if (page.events.length === 0) break;
    events.push(...page.events);
    after = page.events[page.events.length - 1].offset;
  }
  const ids = events.map((e) => e.payload.id);
  const seen = new Map();
  for (const id of ids) seen.set(id, (seen.get(id) ?? 0) + 1);
  for (const id of stored) assert.equal(seen.get(id), 1, `${id} (stored) is in the log ${seen.get(id) ?? 0} times`);
  for (const [id, n] of seen) {
    assert.ok(stored.has(id) || maybe.has(id), `${id} is in the log but was never dispatched`);
    assert.equal(n, 1, `${id} is in the log ${n} times`);
  }
  // Every page shows the same list: the log's.
  const want = [...seen.keys()].sort();
  for (const [i, p] of all.entries()) {
    assert.deepEqual((await titles(p)).sort(), want, `page ${i} shows the log's todos`);
  }
  assert.equal(over, null, `more than one WebSocket per database: ${over}`);
  t.diagnostic(`actions ${counts.dispatches} (stored ${stored.size}, maybe ${maybe.size}, in the log ${ids.length}); faults: ${counts.cuts} cuts, ${counts.delays} delays, ${counts.blackHoles} black holes; ${counts.kills} kill -9 + restart; ${counts.leaderCloses} leader pages closed, ${counts.reloads} reloads, ${counts.leaderChanges} leader changes seen; WebSockets per database: at most ${maxWebSockets} over ${samples} samples`);
});
