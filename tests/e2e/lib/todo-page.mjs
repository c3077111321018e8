// Drives the TodoMVC examples (React and Elm show the same markup and test
// ids) the way a person does: typing, pressing Enter, clicking, reading what
// the page shows (list and status bar).
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
export async function waitOfflineReady(page, timeout = 15_000) {
  await page.evaluate(async (ms) => {
    const ready = (async () => {
      await navigator.serviceWorker.ready;
      if (!navigator.serviceWorker.controller) {
        await new Promise((res) => navigator.serviceWorker.addEventListener('controllerchange', res, { once: true }));
      }
    })();
    const late = new Promise((_, rej) => setTimeout(() => rej(new Error(`no service worker controls the page after ${ms} ms`)), ms));
    await Promise.race([ready, late]);
  }, timeout);
}

/** The row of the todo whose title is exactly `text`. */
export function todoItem(page, text) {
  return page.locator('[data-testid=todo-item]').filter({ has: page.locator(`[data-testid=todo-title]:text-is(${JSON.stringify(text)})`) });
}

export async function toggleTodo(page, text) {
  await todoItem(page, text).locator('.toggle').click();
}

/** Double-click the title, replace the text, press Enter. */
export async function editTodo(page, text, next) {
  const item = todoItem(page, text);
  await item.locator('[data-testid=todo-title]').dblclick();
  const input = item.locator('.edit');
  await input.fill(next);
  await input.press('Enter');
}

/** The delete button shows on hover, as in TodoMVC. */
export async function deleteTodo(page, text) {
  const item = todoItem(page, text);
  await item.hover();
  await item.locator('.destroy').click();
}

/** `[{ text, completed }]` in the order shown. */
export function todos(page) {
  return page.locator('[data-testid=todo-item]').evaluateAll((items) => items.map((li) => ({
    text: li.querySelector('[data-testid=todo-title]').textContent,
    completed: li.classList.contains('completed'),
  })));
}

/** Waits until the page shows exactly `expected` (`[{ text, completed }]`, in order). */
export function waitTodos(page, expected, timeout = 15_000) {
  const want = JSON.stringify(expected);
  return waitFor(`todos ${want}`, async () => {
    const got = await todos(page);
    return JSON.stringify(got) === want ? got : false;
  }, { timeout });
}

/** The stream's events as the server has them (GET /v1/streams/{s}/events). */
export async function serverEvents(baseUrl, stream) {
  const r = await fetch(`${baseUrl}/v1/streams/${encodeURIComponent(stream)}/events?after=0&limit=1000`);
  if (!r.ok) throw new Error(`GET events of ${stream}: ${r.status} ${await r.text()}`);
  return (await r.json()).events;
}
