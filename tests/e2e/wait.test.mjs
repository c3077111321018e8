// The tests' `waitFor` (lib/browser.mjs) measures its deadline on a
// monotonic clock: a step of the wall clock (the machine's time set
// forward while a test waits) must not end a wait early. One did: a
// link test gave up "after 5000 ms" 162 ms into its run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from './lib/browser.mjs';

test('waitFor keeps waiting when the wall clock steps forward', async (t) => {
  const realNow = Date.now;
  // From the first reading on, the wall clock is a minute ahead.
  let calls = 0;
  Date.now = () => realNow() + (calls++ > 0 ? 60_000 : 0);
  t.after(() => {
    Date.now = realNow;
  });
  const start = performance.now();
  const done = await waitFor('a condition true after 100 ms', () => performance.now() - start >= 100, { timeout: 5_000, interval: 5 });
  assert.equal(done, true);
});

test('waitFor still gives up at its deadline', async () => {
  const start = performance.now();
  await assert.rejects(waitFor('a condition never true', () => false, { timeout: 200, interval: 5 }), /timed out after 200 ms waiting for a condition never true/);
  assert.ok(performance.now() - start >= 200);
});
