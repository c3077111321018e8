#!/usr/bin/env node
// Size of the npm package's release build (js/, after `npm run build`):
// the wasm module, its JS glue and the package's own JS, raw and gzip -9,
// as shipped and as a minified production bundle, against the gzip
// budget (js/scripts/size.mjs measures; js/test/size.test.mjs holds the
// budget).
//
//   node bench/size.mjs [--json out.jsonl]

import fs from 'node:fs';
import { BUDGET_GZIP, measureSize } from '../js/scripts/size.mjs';

const jsonAt = process.argv.indexOf('--json');
const jsonOut = jsonAt > 0 ? process.argv[jsonAt + 1] : null;

let m;
try {
  m = await measureSize();
} catch (e) {
  process.stderr.write(`${e.message}\n`);
  process.exit(2);
}
const { rows, wasmGlue, total, bundle, production } = m;
const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
console.log('| what | raw | gzip -9 |');
console.log('|---|---:|---:|');
for (const r of rows) console.log(`| ${r.what} | ${r.raw} B (${kib(r.raw)}) | ${r.gzip} B (${kib(r.gzip)}) |`);
console.log(`| **wasm + glue** | ${wasmGlue.raw} B | **${wasmGlue.gzip} B (${kib(wasmGlue.gzip)})** |`);
console.log(`| **all that \`import 'logsync'\` loads, as shipped** | ${total.raw} B | **${total.gzip} B (${kib(total.gzip)})** |`);
console.log(`| production bundle JS (package + glue, esbuild --minify) | ${bundle.raw} B (${kib(bundle.raw)}) | ${bundle.gzip} B (${kib(bundle.gzip)}) |`);
console.log(`| **production: bundle JS + wasm** | ${production.raw} B | **${production.gzip} B (${kib(production.gzip)})** |`);
const pct = (n) => (100 * n / BUDGET_GZIP).toFixed(0);
console.log(`budget: ${BUDGET_GZIP} B gzip (${kib(BUDGET_GZIP)}) for the production bundle + wasm: at ${pct(production.gzip)}% (as shipped, unminified: ${pct(total.gzip)}%)`);
if (jsonOut) {
  fs.appendFileSync(jsonOut, `${JSON.stringify({ bench: 'size', parts: rows, wasm_glue: wasmGlue, total, bundle, production, budget_gzip: BUDGET_GZIP })}\n`);
}
