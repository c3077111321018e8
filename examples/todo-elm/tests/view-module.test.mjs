// src/Logsync/View.elm, compiled into a real Elm program
// (tests/elm/PortsCheck.elm) and connected with logsync/elm's
// connectElmViewPorts: a memory view store's status and results arrive as
// typed events; then a real logsync-server folding the TodoMVC module
// (../todo-react/src/todos.js): its `counts` view, followed by
// createViewStore over Server-Sent Events, reaches the Elm program as
// todos are added over HTTP, across a stop and a start of the server; an
// unknown view is a typed NOT_FOUND.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createViewStore } from 'logsync/views';
import { connectElmViewPorts } from 'logsync/elm';
import { memoryViewStore } from '../../../js/test/memory-store.mjs';
import { ROOT, SERVER_BIN, startServer } from '../../../tests/e2e/lib/server.mjs';
import { startPortsCheck, waitFor } from './lib/worker.mjs';

const PORTS = { resultPort: 'countsChanged', statusPort: 'countsStatus' };

function connected(viewStore) {
  const check = startPortsCheck();
  // Throws if the compiler dropped a port: both must exist.
  const disconnect = connectElmViewPorts(check.app.ports, viewStore, PORTS);
  const events = (kind) => check.reports.filter((r) => r.event === kind);
  const last = (kind) => events(kind).at(-1);
  // The result that came after the status of `offset` (a new result's
  // status comes first; the two reach Elm as two port values).
  const resultAt = (offset) => {
    const i = check.reports.findIndex((r) => r.event === 'viewStatus' && r.offset === offset);
    return i < 0 ? undefined : check.reports.slice(i + 1).find((r) => r.event === 'viewResult');
  };
  return { ...check, disconnect, events, last, resultAt };
}

test('a memory view store: status, then results, as typed events; a code from a newer server is UNKNOWN', async () => {
  const view = memoryViewStore(undefined);
  const { events, last } = connected(view);
  await waitFor('the initial status', () => events('viewStatus').length === 1);
  assert.deepEqual(last('viewStatus'), { event: 'viewStatus', online: false, offset: 0, hydrated: false, lastError: null, needsToken: false });

  view.setStatus({ hydrated: true, online: true });
  view.setResult({ all: 2, completed: 1 }, 9);
  await waitFor('the result', () => events('viewResult').length === 1);
  assert.deepEqual(last('viewResult'), { event: 'viewResult', all: 2, completed: 1 });
  assert.deepEqual(last('viewStatus'), { event: 'viewStatus', online: true, offset: 9, hydrated: true, lastError: null, needsToken: false });

  view.setStatus({ online: false, lastError: { code: 'UNAUTHORIZED', message: 'HTTP 401' }, needsToken: true });
  await waitFor('needsToken', () => last('viewStatus').needsToken);
  assert.deepEqual(last('viewStatus').lastError, { code: 'UNAUTHORIZED', message: 'HTTP 401' });
  view.setStatus({ lastError: { code: 'SOMETHING_NEWER', message: 'from the future' } });
  await waitFor('the unknown code', () => last('viewStatus').lastError.message === 'from the future');
  assert.equal(last('viewStatus').lastError.code, 'UNKNOWN');
});

test('a result that does not fit the decoder is DecodeFailed "result", and the program goes on', async () => {
  const view = memoryViewStore(undefined);
  const { events, last } = connected(view);
  view.setResult(['not', 'counts']);
  const [failed] = await waitFor('DecodeFailed', () => events('viewDecodeFailed').length && events('viewDecodeFailed'));
  assert.equal(failed.which, 'result');
  assert.equal(events('viewResult').length, 0);
  view.setResult({ all: 1, completed: 0 });
  await waitFor('the next result', () => events('viewResult').length === 1);
  assert.deepEqual(last('viewResult'), { event: 'viewResult', all: 1, completed: 0 });
});

// --- a real logsync-server

const skip = existsSync(SERVER_BIN) ? false : `${SERVER_BIN} is not built (scripts/test-js.sh builds it)`;
let server;
let staticDir;

before(async () => {
  if (skip) return;
  staticDir = mkdtempSync(join(tmpdir(), 'logsync-elm-views-'));
  writeFileSync(join(staticDir, 'index.html'), '<!doctype html><title>logsync</title>');
  server = await startServer({ staticDir, args: ['--reducer', `todos/*=${join(ROOT, 'examples/todo-react/src/todos.js')}`] });
});
after(async () => {
  if (server) await server.close();
  if (staticDir) rmSync(staticDir, { recursive: true, force: true });
});

/** Appends actions to `stream` over HTTP as one client, in order; resolves to their offsets. */
function writer(stream) {
  const clientId = randomBytes(16).toString('hex');
  let seq = 0;
  return async (payload) => {
    seq += 1;
    const res = await fetch(`${server.url}/v1/streams/${encodeURIComponent(stream)}/intents`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_id: clientId, seq, payload }),
    });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    assert.equal(body.duplicate, false);
    return body.offset;
  };
}

const viewStore = (stream, view) => createViewStore({ url: `ws://127.0.0.1:${server.port}/v1/ws`, stream, view, backoffMinMs: 50, backoffMaxMs: 200 });

test('the server\'s `counts` view reaches the compiled Elm program over SSE, as todos are added; across a stop and a start', { skip }, async (t) => {
  const stream = `todos/${randomUUID()}`;
  const write = writer(stream);
  const view = viewStore(stream, 'counts');
  t.after(() => view.close());
  const { events, last, resultAt } = connected(view);

  await waitFor('the first result', () => events('viewResult').length >= 1, 10_000);
  assert.deepEqual(last('viewResult'), { event: 'viewResult', all: 0, completed: 0 });
  assert.equal(last('viewStatus').online, true);
  assert.equal(last('viewStatus').hydrated, true);

  // The counts after each commit, by offset.
  const expected = [{ all: 0, completed: 0 }];
  for (const [payload, counts] of [
    [{ type: 'todo/added', id: 'a', text: 'milk' }, { all: 1, completed: 0 }],
    [{ type: 'todo/added', id: 'b', text: 'eggs' }, { all: 2, completed: 0 }],
    [{ type: 'todo/toggled', id: 'a' }, { all: 2, completed: 1 }],
  ]) {
    assert.equal(await write(payload), expected.length);
    expected.push(counts);
  }
  const at3 = await waitFor('the counts at offset 3', () => resultAt(3), 10_000);
  assert.deepEqual(at3, { event: 'viewResult', all: 2, completed: 1 });
  // Every result Elm got is the view at some offset, in the order of the
  // log (the server may join commits, so some offsets can be skipped).
  const got = events('viewResult').map(({ all, completed }) => ({ all, completed }));
  let at = 0;
  for (const counts of got) {
    const i = expected.findIndex((e, j) => j >= at && e.all === counts.all && e.completed === counts.completed);
    assert.ok(i >= 0, `${JSON.stringify(counts)} is a result of the view at an offset after ${at} (got ${JSON.stringify(got)})`);
    at = i;
  }
  const offsets = events('viewStatus').map((s) => s.offset);
  assert.deepEqual(offsets, [...offsets].sort((a, b) => a - b), 'the offsets only grow');

  // The server goes away: the Elm program is told, and keeps the result.
  const resultsBefore = events('viewResult').length;
  await server.stop();
  await waitFor('offline with CONNECT_FAILED', () => !last('viewStatus').online && last('viewStatus').lastError?.code === 'CONNECT_FAILED', 10_000);
  assert.equal(last('viewStatus').offset, 3);
  assert.equal(events('viewResult').length, resultsBefore);

  await server.start();
  await waitFor('online again, the error cleared', () => last('viewStatus').online && last('viewStatus').lastError === null, 20_000);
  assert.equal(await write({ type: 'todo/added', id: 'c', text: 'bread' }), 4);
  const at4 = await waitFor('the counts at offset 4', () => resultAt(4), 10_000);
  assert.deepEqual(at4, { event: 'viewResult', all: 3, completed: 1 });
});

test('a view the module does not export: a typed NOT_FOUND in the Elm program, no result', { skip }, async (t) => {
  const view = viewStore(`todos/${randomUUID()}`, 'nope');
  t.after(() => view.close());
  const { events, last } = connected(view);
  await waitFor('the error', () => last('viewStatus')?.lastError, 10_000);
  assert.equal(last('viewStatus').lastError.code, 'NOT_FOUND');
  assert.match(last('viewStatus').lastError.message, /counts/, 'the message names the views there are');
  assert.equal(last('viewStatus').online, false);
  assert.equal(events('viewResult').length, 0);
});
