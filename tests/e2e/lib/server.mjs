// Starts a real logsync-server (embedded SQLite) serving the built React
// example, on 127.0.0.1 port 0, and stops it by its PID.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const SERVER_BIN = process.env.LOGSYNC_SERVER_BIN ?? join(ROOT, 'target', 'release-native', 'logsync-server');
export const APP_DIST = process.env.LOGSYNC_APP_DIST ?? join(ROOT, 'examples', 'todo-react', 'dist');

const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * @param {{ db: string, listen?: string, staticDir?: string }} options
 * @returns {Promise<{ url: string, port: number, pid: number, stop: () => Promise<void>, log: () => string }>}
 */
export async function startServer({ db, listen = '127.0.0.1:0', staticDir = APP_DIST }) {
  for (const [what, path] of [['server binary', SERVER_BIN], ['built React example', join(staticDir, 'index.html')]]) {
    if (!existsSync(path)) throw new Error(`${what} not found at ${path}: run scripts/test-js.sh (it builds both)`);
  }
  const child = spawn(SERVER_BIN, ['--listen', listen, '--db', db, '--static', staticDir], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
  });
  running.add(child);
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  const exited = new Promise((res) => child.once('exit', (code, signal) => { running.delete(child); res({ code, signal }); }));

  const url = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`logsync-server did not report its address within 20 s\n${log}`)), 20_000);
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      log += `${line}\n`;
      const m = /logsync-server listening on (http:\/\/\S+)/.exec(line);
      if (m) { clearTimeout(timer); res(m[1].replace(/\/$/, '')); }
    });
    exited.then(({ code, signal }) => { clearTimeout(timer); rej(new Error(`logsync-server exited (${code ?? signal}) before listening\n${log}`)); });
  });

  return {
    url,
    port: Number(new URL(url).port),
    pid: child.pid,
    log: () => log,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
