// What the package's tests against a real logsync-server share: Node's
// WebSocket (its error events left to the store, as a browser's are), one
// server per test file with a throwaway static folder, started before the
// file's tests and stopped after them, and waiting for a condition with a
// deadline.
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { SERVER_BIN, startServer } from '../../tests/e2e/lib/server.mjs';

class NodeWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    this.on('error', () => {});
  }
}
globalThis.WebSocket ??= NodeWebSocket;

export { SERVER_BIN };

/** `false`, or why the file's tests are skipped. */
export const skip = existsSync(SERVER_BIN) ? false : `${SERVER_BIN} is not built (scripts/test-js.sh builds it)`;

/**
 * A server with `args` for this file's tests: `files.server` once they
 * run; `files.start(options)` starts another one (stopped with the file).
 */
export function serverForFile(args = []) {
  const files = { server: null, staticDir: null, others: [] };
  files.start = async ({ args: more = [], env = {} } = {}) => {
    const other = await startServer({ staticDir: files.staticDir, args: more, env });
    files.others.push(other);
    return other;
  };
  before(async () => {
    if (skip) return;
    files.staticDir = mkdtempSync(join(tmpdir(), 'logsync-test-'));
    writeFileSync(join(files.staticDir, 'index.html'), '<!doctype html><title>logsync</title>');
    files.server = await startServer({ staticDir: files.staticDir, args });
  });
  after(async () => {
    for (const s of [files.server, ...files.others]) if (s) await s.close();
    if (files.staticDir) rmSync(files.staticDir, { recursive: true, force: true });
  });
  return files;
}

/** Waits until `check()` holds, failing the test after `ms`. */
export async function until(what, check, ms = 30_000) {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
