// What the npm package costs a page, measured on its release build (after
// `npm run build`): the wasm module, its JS glue (wasm-bindgen output and
// snippets) and the package's own JS, raw and gzip -9, as shipped
// (unminified) and as a production bundle of `import 'logsync'` (esbuild,
// minified, the way an app's bundler ships it), against the budget.
// Used by bench/size.mjs (the table) and test/size.test.mjs (the budget).
import fs from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';

const js = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The budget, gzip -9 bytes, for what a production bundle of `import 'logsync'` loads (wasm included). */
export const BUDGET_GZIP = 83_300;

const listJs = (dir) => (fs.existsSync(dir)
  ? fs.readdirSync(dir, { recursive: true }).filter((f) => f.endsWith('.js')).sort().map((f) => path.join(dir, f))
  : []);
const sizeOf = (buffers) => buffers.reduce((acc, bytes) => (
  { raw: acc.raw + bytes.length, gzip: acc.gzip + gzipSync(bytes, { level: 9 }).length }
), { raw: 0, gzip: 0 });

/**
 * Measures the built package.
 * @returns {Promise<{ rows: { what: string, raw: number, gzip: number }[], wasmGlue: { raw: number, gzip: number }, total: { raw: number, gzip: number }, bundle: { raw: number, gzip: number }, production: { raw: number, gzip: number } }>}
 */
export async function measureSize() {
  const wasm = path.join(js, 'wasm/logsync_wasm_bg.wasm');
  if (!fs.existsSync(wasm)) throw new Error(`${wasm} is missing: run \`npm run build\` in js/ first`);
  const files = (list) => list.map((f) => fs.readFileSync(f));
  // What `import 'logsync'` loads: index.js and what it imports.
  const parts = [
    ['wasm module', [wasm]],
    ['JS glue (wasm-bindgen output + snippets)', [path.join(js, 'wasm/logsync_wasm.js'), ...listJs(path.join(js, 'wasm/snippets'))]],
    ['package JS (src/index.js + errors, intents, devtools)', ['index.js', 'errors.js', 'intents.js', 'devtools.js'].map((f) => path.join(js, 'src', f))],
  ];
  const rows = parts.map(([what, list]) => ({ what, ...sizeOf(files(list)) }));
  const wasmGlue = { raw: rows[0].raw + rows[1].raw, gzip: rows[0].gzip + rows[1].gzip };
  const total = { raw: wasmGlue.raw + rows[2].raw, gzip: wasmGlue.gzip + rows[2].gzip };
  // The JS an app's production bundle holds for `import 'logsync'`: the
  // package and its glue bundled and minified in one file.
  const esbuild = await import('esbuild');
  const built = await esbuild.build({
    entryPoints: [path.join(js, 'src/index.js')],
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    write: false,
    logLevel: 'silent',
    // The wasm file is fetched by URL, not bundled.
    loader: { '.wasm': 'file' },
    outdir: 'out',
  });
  const bundleJs = built.outputFiles.filter((f) => f.path.endsWith('.js')).map((f) => Buffer.from(f.contents));
  const bundle = sizeOf(bundleJs);
  const production = { raw: bundle.raw + rows[0].raw, gzip: bundle.gzip + rows[0].gzip };
  return { rows, wasmGlue, total, bundle, production };
}
