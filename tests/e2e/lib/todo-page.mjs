// Drives the React TodoMVC example the way a person does: typing, pressing
// Enter, reading what the page shows (list and status bar).
import { waitFor } from './browser.mjs';

export async function openTodoApp(context, baseUrl, room) {
  const page = await context.newPage();
  page.on('pageerror', (err) => console.error(`[page ${room}] ${err.message}`));
  await page.goto(`${baseUrl}/#${room}`);
  await page.waitForSelector('[data-testid=status]', { timeout: 15_000 });
  return page;
}

export async function addTodo(page, text) {
  const input = page.locator('[data-testid=new-todo]');
  await input.fill(text);
  await input.press('Enter');
}

export function titles(page) {
  return page.locator('[data-testid=todo-title]').allTextContents();
}

export async function status(page) {
  return page.locator('[data-testid=status]').evaluate((el) => ({
    online: el.dataset.online === 'true',
    pending: Number(el.dataset.pending),
    offset: Number(el.dataset.offset),
  }));
}

export function waitStatus(page, what, predicate, timeout = 15_000) {
  return waitFor(what, async () => {
    const s = await status(page);
    return predicate(s) ? s : false;
  }, { timeout });
}

/** Waits until the page shows exactly `expected` (in any order). */
export function waitTitles(page, expected, timeout = 15_000) {
  const want = [...expected].sort();
  return waitFor(`todos ${JSON.stringify(want)}`, async () => {
    const got = (await titles(page)).sort();
    return JSON.stringify(got) === JSON.stringify(want) ? got : false;
  }, { timeout });
}

/** Waits until the service worker controls the page (the app shell is cached). */
export async function waitOfflineReady(page) {
  await page.evaluate(async () => {
    await navigator.serviceWorker.ready;
    if (!navigator.serviceWorker.controller) {
      await new Promise((res) => navigator.serviceWorker.addEventListener('controllerchange', res, { once: true }));
    }
  });
}
