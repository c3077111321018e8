// The React TodoMVC example catching up on 100,000 events: the server's
// stream is filled first (`logsync-bench seed`, batches of intents over one
// WebSocket, with the example's own actions), then a fresh Chromium context
// opens the room. The status bar's progress element must be on screen, part
// way, while the page catches up, and gone once it is done; the page must
// then show what the example's reducer makes of those events.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { launchBrowser, waitFor } from './lib/browser.mjs';
import { TARGET_DIR, startServer } from './lib/server.mjs';
import { openTodoApp, status, todos } from './lib/todo-page.mjs';
import { todosReducer, initialState } from '../../examples/todo-react/src/todos.js';

const SEEDER = process.env.LOGSYNC_BENCH_BIN ?? join(TARGET_DIR, 'release', 'logsync-bench');
const EVENTS = 100_000;
const TODOS = 1_000;

let server;
let browser;
let scratch;

before(async () => {
  if (!existsSync(SEEDER)) throw new Error(`the seeder is not built at ${SEEDER}: run scripts/test-js.sh (it builds what is missing)`);
  scratch = mkdtempSync(join(tmpdir(), 'logsync-catch-up-'));
  // The per-connection and per-subject intent rates (abuse guards, 10,000
  // and 20,000 a second) would pace the seeding to several seconds.
  server = await startServer({ args: ['--max-intents-per-sec', '0', '--max-subject-intents-per-sec', '0'] });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/**
 * The example's own actions: TODOS todos added, then toggles and edits
 * spread over them (a list of 100,000 todos would test the reducer's
 * quadratic adds and the DOM, not the catch-up).
 */
function actions() {
  const id = (i) => `t${String(i).padStart(4, '0')}`;
  const out = [];
  for (let i = 0; i < TODOS; i++) out.push({ type: 'todo/added', id: id(i), text: `todo ${i}` });
  for (let k = 0; out.length < EVENTS; k++) {
    const i = (k * 7) % TODOS;
    out.push(k % 3 === 1 ? { type: 'todo/edited', id: id(i), text: `todo ${i}, edit ${k}` } : { type: 'todo/toggled', id: id(i) });
  }
  return out;
}

/** Runs the seeder against the server; resolves with its summary line. */
function seed(stream, file) {
  return new Promise((resolve, reject) => {
    const child = spawn(SEEDER, ['seed', '--url', `ws://127.0.0.1:${server.port}/v1/ws`, '--stream', stream, '--payloads', file, '--batch', '1000'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out.trim());
      else reject(new Error(`seeding ${stream} failed (${signal ?? code}): ${err}`));
    });
  });
}

// Installed before the app's scripts: every animation frame, and every DOM
// change, notes whether the progress element is on screen and its value and
// max. A poll from the test could fall between two frames of a catch-up
// that is quick; this sees each frame the page draws.
function recordCatchUp() {
  const seen = { frames: [], mutations: [], gone: false };
  window.__catchUp = seen;
  const sample = (into) => {
    const el = document.querySelector('[data-testid=catch-up]');
    if (!el) {
      if (seen.frames.length > 0 || seen.mutations.length > 0) seen.gone = true;
      return;
    }
    const box = el.getBoundingClientRect();
    if (into.length < 1000) into.push({ value: el.value, max: el.max, visible: box.width > 0 && box.height > 0, t: performance.now() });
  };
  const frame = () => {
    sample(seen.frames);
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  new MutationObserver(() => sample(seen.mutations)).observe(document, { subtree: true, childList: true, attributes: true });
}

test('the React example shows its catch-up progress bar while it catches up on 100,000 events', async (t) => {
  const room = `catch-up-${randomUUID().slice(0, 8)}`;
  const all = actions();
  assert.equal(all.length, EVENTS);
  const file = join(scratch, 'payloads.jsonl');
  writeFileSync(file, all.map((a) => JSON.stringify(a)).join('\n'));
  const expected = all.reduce(todosReducer, initialState).todos.map(({ text, completed }) => ({ text, completed }));
  const active = expected.filter((x) => !x.completed).length;

  const seeding = performance.now();
  t.diagnostic(await seed(`todos/${room}`, file));
  t.diagnostic(`seeded in ${((performance.now() - seeding) / 1000).toFixed(1)} s`);
  const head = await (await fetch(`${server.url}/v1/streams/${encodeURIComponent(`todos/${room}`)}`)).json();
  assert.equal(head.head, EVENTS, 'the server holds every seeded event');

  const context = await browser.newContext();
  t.after(() => context.close());
  await context.addInitScript(recordCatchUp);
  const opened = performance.now();
  const page = await openTodoApp(context, server.url, room);

  // On screen, part way: a frame drew the bar with value < max = head.
  const during = await waitFor('a frame that shows the catch-up progress part way', async () => {
    const seen = await page.evaluate(() => window.__catchUp);
    return seen.frames.find((f) => f.visible && f.max === EVENTS && f.value < f.max) ?? false;
  }, { timeout: 30_000 });
  t.diagnostic(`progress drawn at ${during.value} of ${during.max}`);

  // Then gone, at the head, with the state the reducer makes of the log.
  await waitFor('the progress bar gone and the page at the head', async () => {
    const s = await status(page);
    return s.offset === EVENTS && (await page.locator('[data-testid=catch-up]').count()) === 0;
  }, { timeout: 60_000 });
  const caughtUp = performance.now() - opened;
  const seen = await page.evaluate(() => window.__catchUp);
  assert.ok(seen.gone, 'the progress element was removed');
  const values = seen.frames.map((f) => f.value);
  t.diagnostic(`caught up ${EVENTS} events in ${(caughtUp / 1000).toFixed(1)} s after opening the page; ${seen.frames.length} frames drew the bar, values ${values.slice(0, 8).join(', ')}${values.length > 8 ? ', …' : ''}`);
  assert.ok(values.every((v, i) => i === 0 || v >= values[i - 1]), `the value never goes back: ${values.join(', ')}`);

  assert.equal(await page.locator('[data-testid=todo-item]').count(), TODOS, 'every seeded todo is listed');
  assert.deepEqual(await todos(page), expected, 'texts and completion as the reducer folds the seeded log');
  assert.equal(await page.locator('[data-testid=todo-count] strong').textContent(), String(active));
  assert.equal((await status(page)).pending, 0);
});
