// A real logsync-server (embedded SQLite) serving a built example app,
// controlled through the project's server-control harness
// (tests/harness/server-control.mjs): it starts the server on a free port,
// keeps that port across restarts, stops or kills it by PID, and removes
// its database directory when it exits.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
// Where cargo puts binaries: CARGO_TARGET_DIR when set (as scripts/test-js.sh's builds do).
export const TARGET_DIR = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(ROOT, 'target');
export const SERVER_BIN = process.env.LOGSYNC_SERVER_BIN ?? join(TARGET_DIR, 'release', 'logsync-server');
export const APP_DIST = process.env.LOGSYNC_APP_DIST ?? join(ROOT, 'examples', 'todo-react', 'dist');
export const ELM_APP_DIST = process.env.LOGSYNC_ELM_APP_DIST ?? join(ROOT, 'examples', 'todo-elm', 'dist');
const HARNESS = join(ROOT, 'tests', 'harness', 'server-control.mjs');

/**
 * Starts the harness and, through it, the server.
 * @param {{ staticDir?: string, args?: string[], env?: Record<string, string>, serverBin?: string }} [options]
 *   the app to serve (default: the React example), further server
 *   arguments and environment, the server binary (default: logsync-server)
 * @returns {Promise<{ url: string, port: number, pid: number, stop(): Promise<void>, kill(): Promise<void>, start(): Promise<void>, close(): Promise<void> }>}
 */
export async function startServer({ staticDir = APP_DIST, args = [], env = {}, serverBin = SERVER_BIN } = {}) {
  for (const [what, path] of [['server binary', serverBin], ['built app', join(staticDir, 'index.html')], ['server-control harness', HARNESS]]) {
    if (!existsSync(path)) throw new Error(`${what} not found at ${path}: run scripts/test-js.sh (it builds what is missing)`);
  }
  // stdin stays a pipe: if this process dies, the harness sees it close and
  // stops its server.
  const harness = spawn(process.execPath, [HARNESS, '--server', serverBin, '--', '--static', staticDir, ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn', ...env },
  });
  let log = '';
  harness.stderr.on('data', (d) => { log += d; });
  const exited = new Promise((res) => harness.once('exit', res));
  const control = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`the harness did not start within 10 s\n${log}`)), 10_000);
    createInterface({ input: harness.stdout }).on('line', (line) => {
      const m = /logsync-harness listening on (http:\/\/\S+)/.exec(line);
      if (m) { clearTimeout(timer); res(m[1]); }
    });
    exited.then((code) => { clearTimeout(timer); rej(new Error(`the harness exited (${code})\n${log}`)); });
  });

  const call = async (path, request) => {
    const r = await fetch(`${control}${path}`, {
      method: path === '/info' ? 'GET' : 'POST',
      ...(request ? { body: JSON.stringify(request), headers: { 'content-type': 'application/json' } } : {}),
    });
    const body = await r.json();
    if (!r.ok) throw new Error(`harness ${path}: ${JSON.stringify(body)}\n${log}`);
    return body;
  };

  const server = {
    url: '',
    port: 0,
    pid: 0,
    /** Starts it again on the same database, with `args` and `env` added to this start's. */
    async start({ args: more, env: moreEnv } = {}) {
      const info = await call('/start', more || moreEnv ? { args: more ?? [], env: moreEnv ?? {} } : undefined);
      Object.assign(server, { url: info.url, port: info.port, pid: info.pid });
    },
    /** SIGTERM, waits for the exit. */
    async stop() { await call('/stop'); },
    /** SIGKILL, waits for the exit. */
    async kill() { await call('/kill'); },
    /** Stops the server and deletes its database: the next start serves a new log (a new epoch). */
    async reset() { await call('/reset'); },
    /** Stops the server and the harness (which removes the database). */
    async close() {
      if (harness.exitCode !== null) return;
      harness.kill('SIGTERM');
      await exited;
    },
  };
  await server.start();
  return server;
}
