// The reducer's `meta` end to end: stores in Node (fake-indexeddb) against
// a real logsync-server that folds the same poll module at the ordering
// point with a JWT secret. The voter is the token's verified subject, so a
// token for mallory cannot vote as alice; a vote cast before the reset was
// seen is refused with the app's STALE; every replica equals the server's
// state, `at` (meta.time) and `by` (meta.clientId) included.
import 'fake-indexeddb/auto';
import './wasm-node.mjs';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { createSyncStore } from 'logsync';
import poll, { initialState } from './fixtures/poll.js';
import { SERVER_BIN, startServer } from '../../tests/e2e/lib/server.mjs';

class NodeWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    this.on('error', () => {});
  }
}
globalThis.WebSocket ??= NodeWebSocket;

const SECRET = 'meta-test-secret-0123456789abcdef';
const MODULE = fileURLToPath(new URL('./fixtures/poll.js', import.meta.url));
const skip = existsSync(SERVER_BIN) ? false : `${SERVER_BIN} is not built (scripts/test-js.sh builds it)`;
let server;
let staticDir;

before(async () => {
  if (skip) return;
  staticDir = mkdtempSync(join(tmpdir(), 'logsync-meta-'));
  writeFileSync(join(staticDir, 'index.html'), '<!doctype html><title>logsync</title>');
  server = await startServer({
    staticDir,
    args: ['--reducer', `polls/*=${MODULE}`],
    env: { LOGSYNC_JWT_SECRET: SECRET },
  });
});
after(async () => {
  if (server) await server.close();
  if (staticDir) rmSync(staticDir, { recursive: true, force: true });
});

const b64 = (s) => Buffer.from(s).toString('base64url');
function token(sub) {
  const body = `${b64(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64(JSON.stringify({
    sub, exp: Math.floor(Date.now() / 1000) + 3600, read: ['polls/*'], write: ['polls/*'],
  }))}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

async function until(what, check, ms = 10_000) {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('meta: the server-verified voter, a stale vote refused, every replica equal to the server', { skip }, async (t) => {
  const stream = `polls/${randomUUID()}`;
  const open = (sub) => createSyncStore({
    url: `ws://127.0.0.1:${server.port}/v1/ws`,
    stream,
    reducer: poll,
    initialState,
    dbName: `meta-${randomUUID()}`,
    token: token(sub),
    devtools: false,
    backoffMinMs: 50,
    backoffMaxMs: 200,
  });
  const [alice, mallory, cy] = await Promise.all([open('alice'), open('mallory'), open('cy')]);
  t.after(() => Promise.all([alice.close(), mallory.close(), cy.close()]));
  const rejected = [];
  cy.onRejected((r) => rejected.push(r));

  // Mallory fills in alice as the voter: the vote is mallory's, already
  // while pending (the store's subject) and as confirmed (the server's).
  mallory.dispatch({ type: 'vote', choice: 'sushi', voter: 'alice' });
  assert.deepEqual(Object.keys(mallory.getState().votes), ['mallory']);
  await mallory.synced();
  alice.dispatch({ type: 'vote', choice: 'pizza', voter: 'alice' });
  await alice.synced();

  const serverState = async () => {
    const r = await fetch(`http://127.0.0.1:${server.port}/v1/streams/${encodeURIComponent(stream)}/state`, {
      headers: { authorization: `Bearer ${token('dashboard')}` },
    });
    assert.equal(r.status, 200);
    return r.json();
  };
  const equalToServer = async (store) => {
    const s = await serverState();
    if (process.env.DEBUG_META) console.log(JSON.stringify({ server: s, offset: store.status.offset, state: store.getState() }));
    return store.status.offset === s.offset && JSON.stringify(store.getState()) === JSON.stringify(s.state);
  };
  await until('both replicas equal the server', async () => (await equalToServer(alice)) && (await equalToServer(mallory)));
  const votes = alice.getState().votes;
  assert.deepEqual(Object.keys(votes).sort(), ['alice', 'mallory']);
  assert.equal(votes.mallory.choice, 'sushi');
  assert.equal(votes.mallory.by, mallory.status.clientId);
  assert.equal(typeof votes.alice.at, 'number');

  // Cy has seen both votes and goes offline; alice resets the poll; cy,
  // not having seen the reset, votes: applied on cy's device, refused by
  // the server as stale (the app's code), and rolled back.
  await until('cy has seen the votes', () => cy.status.offset === 2);
  cy.goOffline();
  alice.dispatch({ type: 'reset' });
  await alice.synced();
  const resetAt = alice.status.offset;
  assert.equal(alice.getState().resetAt, resetAt);
  cy.dispatch({ type: 'vote', choice: 'tacos' });
  assert.equal(cy.getState().votes.cy.choice, 'tacos', 'applied at once, offline');
  cy.reconnect();
  await until('the stale vote is refused', () => rejected.length === 1);
  assert.equal(rejected[0].code, 'REJECTED');
  assert.match(rejected[0].message, /^STALE: the poll was reset at offset 3, after the offset 2 this vote saw/);
  // Having seen the reset, cy's vote counts.
  await until('cy has seen the reset', () => cy.status.offset >= resetAt);
  cy.dispatch({ type: 'vote', choice: 'tacos' });
  await cy.synced();
  await until('every replica equals the server again', async () => (await equalToServer(alice))
    && (await equalToServer(mallory)) && (await equalToServer(cy)));
  assert.deepEqual(Object.keys(alice.getState().votes), ['cy']);
});
