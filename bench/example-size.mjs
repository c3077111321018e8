#!/usr/bin/env node
// Size of the two TodoMVC examples' production builds (examples/*/dist,
// after `npm run build` in each), raw and gzip -9, by kind of file: what a
// browser downloads to open each app. The Elm row "compiled Elm" is the
// compiler's own output (elm-out/elm.js, before Vite minifies it into the
// JS bundle).
//
//   node bench/example-size.mjs [--json out.jsonl]

import fs from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const jsonAt = process.argv.indexOf('--json');
const jsonOut = jsonAt > 0 ? process.argv[jsonAt + 1] : null;

const apps = [
  ['React', 'examples/todo-react'],
  ['Elm', 'examples/todo-elm'],
];
const kinds = [
  ['JS bundle (app + framework + logsync JS + wasm glue)', (f) => f.startsWith('assets/') && f.endsWith('.js')],
  ['wasm module', (f) => f.endsWith('.wasm')],
  ['CSS', (f) => f.endsWith('.css')],
  ['index.html + sw.js', (f) => f === 'index.html' || f === 'sw.js'],
];

const measure = (files) => files.reduce((acc, f) => {
  const bytes = fs.readFileSync(f);
  return { raw: acc.raw + bytes.length, gzip: acc.gzip + gzipSync(bytes, { level: 9 }).length };
}, { raw: 0, gzip: 0 });
const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;

const results = [];
for (const [name, dir] of apps) {
  const dist = path.join(root, dir, 'dist');
  if (!fs.existsSync(path.join(dist, 'index.html'))) {
    process.stderr.write(`${dist} is missing: run \`npm run build\` in ${dir} first\n`);
    process.exit(2);
  }
  const files = fs.readdirSync(dist, { recursive: true }).map(String).filter((f) => fs.statSync(path.join(dist, f)).isFile());
  const rows = kinds.map(([what, match]) => ({ what, ...measure(files.filter(match).map((f) => path.join(dist, f))) }));
  const total = rows.reduce((a, r) => ({ raw: a.raw + r.raw, gzip: a.gzip + r.gzip }), { raw: 0, gzip: 0 });
  const elmOut = path.join(root, dir, 'elm-out', 'elm.js');
  if (name === 'Elm' && fs.existsSync(elmOut)) rows.push({ what: 'compiled Elm (elm make --optimize, unminified; in the JS bundle above)', ...measure([elmOut]) });
  results.push({ app: name, rows, total });
}

console.log('| app | what | raw | gzip -9 |');
console.log('|---|---|---:|---:|');
for (const { app, rows, total } of results) {
  for (const r of rows) console.log(`| ${app} | ${r.what} | ${r.raw} B (${kib(r.raw)}) | ${r.gzip} B (${kib(r.gzip)}) |`);
  console.log(`| **${app}** | **everything the app loads** | ${total.raw} B | **${total.gzip} B (${kib(total.gzip)})** |`);
}
if (jsonOut) fs.appendFileSync(jsonOut, `${JSON.stringify({ bench: 'example-size', apps: results })}\n`);
