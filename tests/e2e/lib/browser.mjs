// Debian's Chromium through playwright-core, headless, with the flags this
// machine needs. Playwright gives each launch a fresh profile directory
// under $TMPDIR (the test script points TMPDIR at a scratch folder).
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';

export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
}

/** Polls `check` until it returns a truthy value or the deadline passes
 * (on the monotonic clock: a step of the wall clock does not move it). */
export async function waitFor(what, check, { timeout = 10_000, interval = 25 } = {}) {
  const deadline = performance.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}
