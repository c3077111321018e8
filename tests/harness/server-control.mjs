#!/usr/bin/env node
// Lets browser tests start, stop and kill a real `logsync-server`: browser
// code cannot spawn processes, so it asks this small HTTP service to.
// Plain Node 20, no dependencies. See README.md next to this file.
//
//   node tests/harness/server-control.mjs --server target/debug/logsync-server [-- extra server args]
//
// Prints `logsync-harness listening on http://127.0.0.1:PORT` once ready.

import http from 'node:http';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// ---- command line -------------------------------------------------------

function parseArgs(argv) {
  const out = {
    server: process.env.LOGSYNC_SERVER_BIN || '',
    extra: (process.env.LOGSYNC_SERVER_ARGS || '').split(/\s+/).filter(Boolean),
    verbose: process.env.LOGSYNC_HARNESS_VERBOSE === '1',
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--server') out.server = argv[++i] || '';
    else if (a === '--verbose') out.verbose = true;
    else if (a === '--') { out.extra.push(...argv.slice(i + 1)); break; }
    else fail(`unknown argument ${JSON.stringify(a)}; usage: server-control.mjs --server PATH [--verbose] [-- server args]`);
  }
  if (!out.server) fail('no server binary: pass --server PATH or set LOGSYNC_SERVER_BIN');
  if (!fs.existsSync(out.server)) fail(`server binary ${out.server} does not exist (cargo build -p server-stub --bin logsync-server)`);
  return out;
}

function fail(msg) {
  process.stderr.write(`server-control: ${msg}\n`);
  process.exit(2);
}

const args = parseArgs(process.argv.slice(2));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'logsync-harness-'));
const dbPath = path.join(dir, 'log.db');
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 10_000;

// ---- the server process ---------------------------------------------------

/** The running server, or null. Its port is kept across restarts. */
let child = null;
let port = 0;
let stderrTail = [];
/** Whether the running server got arguments or environment of its own start. */
let custom = false;

function info() {
  const running = child !== null;
  return {
    running,
    pid: running ? child.pid : null,
    port: port || null,
    url: port ? `http://127.0.0.1:${port}` : null,
    wsUrl: port ? `ws://127.0.0.1:${port}/v1/ws` : null,
    db: dbPath,
    custom: running && custom,
    brokenPeerConnections: { ...brokenPeers },
  };
}

function log(line) {
  if (args.verbose) process.stderr.write(`[server] ${line}\n`);
}

async function start(extraArgs = [], env = {}) {
  if (child) return info();
  // The port may still be held for a moment after a kill; retry briefly.
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    try {
      return await startOnce(extraArgs, env, deadline);
    } catch (e) {
      if (!(port && /in use/i.test(String(e.message))) || Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function startOnce(extraArgs, env, deadline) {
  return new Promise((resolve, reject) => {
    const argv = ['--listen', `127.0.0.1:${port}`, '--db', dbPath, ...args.extra, ...extraArgs];
    const proc = spawn(args.server, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    stderrTail = [];
    let settled = false;
    let buffered = '';
    const timer = setTimeout(() => {
      if (settled) return;
      settled = true;
      proc.kill('SIGKILL');
      reject(new Error(`logsync-server did not print its address within ${START_TIMEOUT_MS} ms; stderr:\n${stderrTail.join('\n')}`));
    }, Math.max(0, deadline - Date.now()));
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (chunk) => {
      buffered += chunk;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        log(line);
        const m = /logsync-server listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(line);
        if (m && !settled) {
          settled = true;
          clearTimeout(timer);
          port = Number(m[1]);
          child = proc;
          custom = extraArgs.length > 0 || Object.keys(env).length > 0;
          resolve(info());
        }
      }
    });
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk) => {
      for (const line of chunk.split('\n').filter(Boolean)) {
        log(line);
        stderrTail.push(line);
        if (stderrTail.length > 40) stderrTail.shift();
      }
    });
    proc.on('error', (e) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`cannot start ${args.server}: ${e.message}`));
    });
    proc.on('exit', (code, signal) => {
      if (child === proc) child = null;
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new Error(`logsync-server exited (${signal || code}) before it was ready; stderr:\n${stderrTail.join('\n')}`));
    });
  });
}

function waitExit(proc, ms) {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve(true);
    const timer = setTimeout(() => resolve(false), ms);
    proc.once('exit', () => { clearTimeout(timer); resolve(true); });
  });
}

async function stop(signal = 'SIGTERM') {
  const proc = child;
  if (!proc) return info();
  proc.kill(signal);
  if (!(await waitExit(proc, STOP_TIMEOUT_MS))) {
    proc.kill('SIGKILL');
    await waitExit(proc, STOP_TIMEOUT_MS);
  }
  child = null;
  return info();
}

async function reset() {
  await stop();
  for (const f of [dbPath, `${dbPath}-wal`, `${dbPath}-shm`]) fs.rmSync(f, { force: true });
  return info();
}

// One operation at a time: a start racing a stop would leak a process.
let queue = Promise.resolve();
function serial(fn) {
  const run = queue.then(fn, fn);
  queue = run.catch(() => {});
  return run;
}

// ---- HTTP API -----------------------------------------------------------

const CORS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'GET, POST, OPTIONS',
  'access-control-allow-headers': 'content-type',
  'access-control-max-age': '600',
};

function send(res, status, body) {
  res.writeHead(status, { ...CORS, 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (c) => { text += c; });
    req.on('end', () => {
      if (!text.trim()) return resolve({});
      try { resolve(JSON.parse(text)); } catch (e) { reject(new Error(`body is not JSON: ${e.message}`)); }
    });
    req.on('error', reject);
  });
}

const routes = {
  'GET /info': async () => info(),
  // The server's /metrics text (a page cannot read it across origins).
  'GET /metrics': async () => {
    if (!child) throw Object.assign(new Error('the server is not running'), { status: 409 });
    const r = await fetch(`${info().url}/metrics`);
    return { text: await r.text() };
  },
  'POST /start': async (body) => {
    const extra = body.args ?? [];
    if (!Array.isArray(extra) || !extra.every((a) => typeof a === 'string')) {
      throw Object.assign(new Error('"args" must be an array of strings'), { status: 400 });
    }
    const env = body.env ?? {};
    if (typeof env !== 'object' || Array.isArray(env) || !Object.values(env).every((v) => typeof v === 'string')) {
      throw Object.assign(new Error('"env" must be an object of strings'), { status: 400 });
    }
    return serial(() => start(extra, env));
  },
  // An HS256 JWT of `claims` signed with `secret`, for auth tests.
  'POST /token': async (body) => {
    if (typeof body.secret !== 'string' || typeof body.claims !== 'object' || body.claims === null) {
      throw Object.assign(new Error('body must be {"secret": string, "claims": object}'), { status: 400 });
    }
    const b64 = (s) => Buffer.from(s).toString('base64url');
    const head = `${b64(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64(JSON.stringify(body.claims))}`;
    const sig = crypto.createHmac('sha256', body.secret).update(head).digest('base64url');
    return { token: `${head}.${sig}` };
  },
  'POST /stop': async () => serial(() => stop('SIGTERM')),
  'POST /kill': async () => serial(() => stop('SIGKILL')),
  'POST /reset': async () => serial(() => reset()),
  // Benchmarks post their results here; they go to stdout as one line.
  'POST /report': async (body) => {
    process.stdout.write(`REPORT ${JSON.stringify(body)}\n`);
    return { ok: true };
  },
};

const server = http.createServer(async (req, res) => {
  if (req.method === 'OPTIONS') {
    res.writeHead(204, CORS);
    return res.end();
  }
  const route = routes[`${req.method} ${new URL(req.url, 'http://x').pathname}`];
  if (!route) return send(res, 404, { error: { code: 'NOT_FOUND', message: `no route ${req.method} ${req.url}` } });
  try {
    send(res, 200, await route(req.method === 'POST' ? await readJson(req) : {}));
  } catch (e) {
    send(res, e.status || 500, { error: { code: e.status === 400 ? 'INVALID_REQUEST' : 'INTERNAL', message: e.message } });
  }
});

// Two deliberately broken WebSocket peers for browser tests:
// `ws://…/malformed-ws` answers the first frame it receives with a binary
// frame no Logsync decoder accepts, then stays open; `ws://…/silent-ws`
// accepts the connection and never sends a byte (a half-open connection).
// `GET /info` counts the connections each one accepted.
const brokenPeers = { malformed: 0, silent: 0 };
server.on('upgrade', (req, socket) => {
  socket.on('error', () => {});
  const kind = { '/malformed-ws': 'malformed', '/silent-ws': 'silent' }[new URL(req.url, 'http://x').pathname];
  if (!kind) {
    socket.end('HTTP/1.1 404 Not Found\r\n\r\n');
    return;
  }
  brokenPeers[kind] += 1;
  const key = req.headers['sec-websocket-key'];
  const accept = crypto.createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  if (kind === 'malformed') {
    socket.once('data', () => {
      const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x13, 0x37]);
      socket.write(Buffer.concat([Buffer.from([0x82, garbage.length]), garbage]));
    });
  }
});

// ---- lifetime -------------------------------------------------------------

let exiting = false;
async function shutdown(code) {
  if (exiting) return;
  exiting = true;
  try { await stop('SIGTERM'); } catch { /* best effort */ }
  fs.rmSync(dir, { recursive: true, force: true });
  server.close();
  process.exit(code);
}

process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
// Last resort if something throws: never leave the server running.
process.on('exit', () => { if (child) child.kill('SIGKILL'); });
// A parent that holds our stdin as a pipe can stop us by closing it.
try {
  const st = fs.fstatSync(0);
  if (st.isFIFO() || st.isSocket()) {
    process.stdin.on('end', () => shutdown(0));
    process.stdin.on('error', () => shutdown(0));
    process.stdin.resume();
  }
} catch { /* no stdin */ }

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`logsync-harness listening on http://127.0.0.1:${server.address().port}\n`);
});
