#!/usr/bin/env node
// Size of the npm package's release build (js/, after `npm run build`):
// the wasm module, its JS glue (wasm-bindgen output and snippets) and the
// package's own JS, raw and gzip -9, against the 100 KiB gzip budget.
//
//   node bench/size.mjs [--json out.jsonl]

import fs from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const js = path.join(root, 'js');
const jsonAt = process.argv.indexOf('--json');
const jsonOut = jsonAt > 0 ? process.argv[jsonAt + 1] : null;
const BUDGET = 100 * 1024;

const listJs = (dir) => (fs.existsSync(dir)
  ? fs.readdirSync(dir, { recursive: true }).filter((f) => f.endsWith('.js')).sort().map((f) => path.join(dir, f))
  : []);

const wasm = path.join(js, 'wasm/logsync_wasm_bg.wasm');
if (!fs.existsSync(wasm)) {
  process.stderr.write(`${wasm} is missing: run \`npm run build\` in js/ first\n`);
  process.exit(2);
}
// What `import 'logsync'` loads: index.js and what it imports.
const parts = [
  ['wasm module', [wasm]],
  ['JS glue (wasm-bindgen output + snippets)', [path.join(js, 'wasm/logsync_wasm.js'), ...listJs(path.join(js, 'wasm/snippets'))]],
  ['package JS (src/index.js + errors, intents, devtools)', ['index.js', 'errors.js', 'intents.js', 'devtools.js'].map((f) => path.join(js, 'src', f))],
];
const measure = (files) => files.reduce((acc, f) => {
  const bytes = fs.readFileSync(f);
  return { raw: acc.raw + bytes.length, gzip: acc.gzip + gzipSync(bytes, { level: 9 }).length };
}, { raw: 0, gzip: 0 });

const rows = parts.map(([what, files]) => ({ what, ...measure(files) }));
const wasmGlue = { raw: rows[0].raw + rows[1].raw, gzip: rows[0].gzip + rows[1].gzip };
const total = { raw: wasmGlue.raw + rows[2].raw, gzip: wasmGlue.gzip + rows[2].gzip };
const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
console.log('| what | raw | gzip -9 |');
console.log('|---|---:|---:|');
for (const r of rows) console.log(`| ${r.what} | ${r.raw} B (${kib(r.raw)}) | ${r.gzip} B (${kib(r.gzip)}) |`);
console.log(`| **wasm + glue** | ${wasmGlue.raw} B | **${wasmGlue.gzip} B (${kib(wasmGlue.gzip)})** |`);
console.log(`| **all that \`import 'logsync'\` loads** | ${total.raw} B | **${total.gzip} B (${kib(total.gzip)})** |`);
console.log(`budget: ${BUDGET} B gzip (100 KiB): wasm + glue at ${(100 * wasmGlue.gzip / BUDGET).toFixed(0)}%, everything at ${(100 * total.gzip / BUDGET).toFixed(0)}%`);
if (jsonOut) {
  fs.appendFileSync(jsonOut, `${JSON.stringify({ bench: 'size', parts: rows, wasm_glue: wasmGlue, total, budget_gzip: BUDGET })}\n`);
}
