// Proves a running logsync-server serves the example app and speaks the
// protocol: GET / is the app's page, GET /sw.js its service worker, and on
// /v1/ws a Hello then a Ping (the golden fixtures of sync-core) get a Pong
// with the same nonce back, and the server folds the todo streams with the
// example's reducer (GET /v1/streams/todos%2F…/state answers its initial
// state). Used by `scripts/start.sh --check [--app elm]`.
//   node --experimental-websocket scripts/check-app.mjs http://127.0.0.1:8080 [react|elm]
import { readFileSync } from 'node:fs';

const base = (process.argv[2] ?? 'http://127.0.0.1:8080').replace(/\/$/, '');
const app = process.argv[3] ?? 'react';
// Each example's page has its mount point, which the other's has not.
const APPS = {
  react: { name: 'the React example', mount: '<div id="root">' },
  elm: { name: 'the Elm example', mount: '<div id="app">' },
};
if (!APPS[app]) {
  console.error(`check failed: unknown app ${JSON.stringify(app)} (react or elm)`);
  process.exit(2);
}
const { name, mount } = APPS[app];
const fixture = (name) => readFileSync(new URL(`../sync-core/fixtures/protocol-v5/${name}.bin`, import.meta.url));
const fail = (msg) => {
  console.error(`check failed: ${msg}`);
  process.exit(1);
};

const page = await fetch(`${base}/`).catch((e) => fail(`GET / : ${e.message}`));
const html = await page.text();
if (page.status !== 200 || !html.includes(mount)) fail(`GET / answered ${page.status} without the page of ${name}`);
const room = await fetch(`${base}/some/deep/link`);
if (room.status !== 200 || !(await room.text()).includes(mount)) fail(`GET /some/deep/link answered ${room.status}, not the index.html fallback`);
const sw = await fetch(`${base}/sw.js`);
if (sw.status !== 200 || !(await sw.text()).includes('PRECACHE')) fail(`GET /sw.js answered ${sw.status}`);
console.log(`ok  ${base}/ serves ${name} (and its service worker)`);

const wsUrl = `${base.replace(/^http/, 'ws')}/v1/ws`;
const pong = fixture('server-pong');
await new Promise((resolve) => {
  const ws = new WebSocket(wsUrl);
  ws.binaryType = 'arraybuffer';
  const timer = setTimeout(() => fail(`no Pong from ${wsUrl} within 5 s`), 5_000);
  ws.onerror = (e) => fail(`WebSocket ${wsUrl}: ${e.message ?? 'connection failed'}`);
  ws.onopen = () => {
    ws.send(fixture('client-hello'));
    ws.send(fixture('client-ping'));
  };
  let frames = 0;
  ws.onmessage = (event) => {
    frames++;
    const bytes = Buffer.from(event.data);
    if (bytes.equals(pong)) {
      clearTimeout(timer);
      console.log(`ok  ${wsUrl} answered Hello + Ping with Welcome + Pong (${frames} frames)`);
      ws.close();
      resolve();
    }
  };
  ws.onclose = (event) => {
    if (!event.wasClean && frames === 0) fail(`${wsUrl} closed (${event.code}) before answering`);
  };
});

// The server runs the example's reducer on `todos/*` (start.sh --reducer):
// the state of a list nobody wrote to is the reducer's initial state.
const stateUrl = `${base}/v1/streams/todos%2Fcheck-${Date.now()}/state`;
const stateAnswer = await fetch(stateUrl).catch((e) => fail(`GET ${stateUrl}: ${e.message}`));
const body = await stateAnswer.text();
let folded = null;
try { folded = JSON.parse(body); } catch { /* reported below */ }
if (stateAnswer.status !== 200 || folded?.offset !== 0 || !Array.isArray(folded?.state?.todos) || folded.state.todos.length !== 0) {
  fail(`GET ${stateUrl} answered ${stateAnswer.status} ${body.slice(0, 200)}, not the example reducer's initial state`);
}
console.log(`ok  the server folds todos/* with the example's reducer (${stateUrl} → ${body})`);

// And answers the module's views on that state.
const viewUrl = `${base}/v1/streams/todos%2Fcheck-${Date.now()}/views/counts`;
const viewAnswer = await fetch(viewUrl).catch((e) => fail(`GET ${viewUrl}: ${e.message}`));
const viewBody = await viewAnswer.text();
if (viewAnswer.status !== 200 || viewBody !== '{"offset":0,"result":{"all":0,"completed":0}}') {
  fail(`GET ${viewUrl} answered ${viewAnswer.status} ${viewBody.slice(0, 200)}, not the counts view of an empty list`);
}
console.log(`ok  the server answers the example's views (${viewUrl} → ${viewBody})`);
