// The Rust seats example (examples/seats-rust) in two headless Chromium
// contexts against logsync-seats-server serving its page: the page's wasm
// module and the server fold with the same Rust reducer crate. A seat
// booked offline that another device took meanwhile is refused with the
// app's code and rolled back; both pages and the server's /state agree.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { launchBrowser, waitFor } from './lib/browser.mjs';
import { ROOT, TARGET_DIR, startServer } from './lib/server.mjs';

const SEATS_SERVER_BIN = process.env.LOGSYNC_SEATS_SERVER_BIN
  ?? join(TARGET_DIR, 'debug', 'logsync-seats-server');
const SEATS_WWW = join(ROOT, 'examples', 'seats-rust', 'web', 'www');

let server;
let browser;

before(async () => {
  server = await startServer({ serverBin: SEATS_SERVER_BIN, staticDir: SEATS_WWW });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.close();
});

async function openPage(t, show, who) {
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${server.url}/?show=${show}`);
  await waitFor(`the seat plan of ${who}`, async () => (await page.locator('#plan button').count()) === 20 || errors[0]);
  assert.deepEqual(errors, []);
  await page.fill('#who', who);
  await waitFor(`${who} online`, async () => /· online ·/.test(await page.textContent('#status')));
  return page;
}

const seat = (page, s) => page.locator(`#plan button[data-seat="${s}"]`);

test('a seat booked offline that another device took is refused with SEAT_TAKEN and rolled back', async (t) => {
  const show = `e2e-${randomUUID().slice(0, 8)}`;
  const ann = await openPage(t, show, 'ann');
  const bob = await openPage(t, show, 'bob');

  await seat(ann, '1A').click();
  await waitFor('bob sees 1A taken by ann', async () => (await seat(bob, '1A').textContent()) === '1A ann');

  await bob.click('#offline');
  await waitFor('bob offline', async () => /· offline ·/.test(await bob.textContent('#status')));
  await seat(ann, '2B').click();
  await waitFor('ann synced', async () => /offset 2 · 0 pending/.test(await ann.textContent('#status')));
  // Offline, bob still sees 2B free and books it: applied at once.
  await seat(bob, '2B').click();
  assert.equal(await seat(bob, '2B').textContent(), '2B bob');

  await bob.click('#offline');
  await waitFor('bob is told why', async () => (await bob.textContent('#notice'))
    === "bob's booking of 2B was refused (SEAT_TAKEN): seat 2B is taken");
  await waitFor('bob holds ann\'s booking', async () => (await seat(bob, '2B').textContent()) === '2B ann');

  const r = await fetch(`${server.url}/v1/streams/${encodeURIComponent(`seats/${show}`)}/state`);
  assert.deepEqual(await r.json(), { offset: 2, state: { seats: { '1A': 'ann', '2B': 'ann' } } });
  for (const page of [ann, bob]) {
    const shown = await page.locator('#plan button.taken').allTextContents();
    assert.deepEqual(shown, ['1A ann', '2B ann']);
  }
});
