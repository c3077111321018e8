// The setup the React TodoMVC example's end-to-end tests share: a real
// logsync-server serving the built app and folding each list with the
// example's reducer module (as scripts/start.sh runs it), and headless
// Chromium; both started before a file's tests and stopped after them.
import { after, before } from 'node:test';
import { join } from 'node:path';
import { launchBrowser } from './browser.mjs';
import { ROOT, startServer } from './server.mjs';

/**
 * Registers the file's `before` and `after` hooks; returns the object
 * whose `server` and `browser` they set.
 * @returns {{ server: Awaited<ReturnType<typeof startServer>>, browser: import('playwright-core').Browser }}
 */
export function todoSuite() {
  const env = { server: null, browser: null };
  before(async () => {
    env.server = await startServer({ args: ['--reducer', `todos/*=${join(ROOT, 'examples', 'todo-react', 'src', 'todos.js')}`] });
    env.browser = await launchBrowser();
  });
  after(async () => {
    await env.browser?.close();
    await env.server?.close();
  });
  return env;
}
