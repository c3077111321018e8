// The size budget: what an app's production bundle loads for
// `import 'logsync'` (the package and its wasm-bindgen glue bundled and
// minified, plus the wasm module), gzip -9, stays within BUDGET_GZIP.
// Measured on the release build that scripts/test-js.sh makes first.
import test from 'node:test';
import assert from 'node:assert/strict';
import { BUDGET_GZIP, measureSize } from '../scripts/size.mjs';

test('import \'logsync\' in a production bundle stays within the gzip budget', async (t) => {
  const { production, bundle, total } = await measureSize();
  t.diagnostic(`production: ${production.gzip} B gzip (bundle JS ${bundle.gzip} B + wasm); as shipped: ${total.gzip} B`);
  // The minified bundle is smaller than the sources: the measure is real.
  assert.ok(bundle.gzip > 0 && bundle.gzip < total.gzip, JSON.stringify({ bundle, total }));
  assert.ok(production.gzip <= BUDGET_GZIP, `${production.gzip} B gzip is over the budget of ${BUDGET_GZIP} B`);
});

test('the built module and its glue find each other by short names, and the module carries no custom sections', async () => {
  const fs = await import('node:fs');
  const bytes = fs.readFileSync(new URL('../wasm/logsync_wasm_bg.wasm', import.meta.url));
  const module = new WebAssembly.Module(bytes);
  const imports = WebAssembly.Module.imports(module);
  const exports = WebAssembly.Module.exports(module);
  assert.ok(imports.length > 50 && exports.length > 10, `${imports.length} imports, ${exports.length} exports`);
  // The glue's own module gives most imports; a snippet's module gives its
  // functions under their own names.
  const byModule = new Map();
  for (const i of imports) byModule.set(i.module, [...(byModule.get(i.module) ?? []), i]);
  const glueModule = [...byModule.keys()].sort((a, b) => byModule.get(b).length - byModule.get(a).length)[0];
  const long = [...byModule.keys(), ...byModule.get(glueModule).map((i) => i.name), ...exports.map((e) => e.name)]
    .filter((name) => name.length > 2);
  assert.deepEqual(long, [], 'long names left in the module');
  for (const section of ['name', 'producers', 'target_features']) {
    assert.equal(WebAssembly.Module.customSections(module, section).length, 0, `custom section ${section}`);
  }
  const glue = fs.readFileSync(new URL('../wasm/logsync_wasm.js', import.meta.url), 'utf8');
  assert.doesNotMatch(glue, /__wbg_\w+_[0-9a-f]{16}: function/, 'hashed import names left in the glue');
});

test('the glue imports each of its JS files once and bundles without warnings', async () => {
  const fs = await import('node:fs');
  const esbuild = await import('esbuild');
  const file = new URL('../wasm/logsync_wasm.js', import.meta.url);
  const glue = fs.readFileSync(file, 'utf8');
  const namespaces = [...glue.matchAll(/^import \* as \w+ from "([^"\n]+)"/gm)].map((m) => m[1]);
  assert.ok(namespaces.length > 0, 'the glue imports its snippets as namespaces');
  assert.deepEqual(namespaces, [...new Set(namespaces)], 'a snippet imported twice');
  // What an app's bundler says about the glue (a duplicate key in its
  // imports object is a warning in every app's build).
  const built = await esbuild.build({
    entryPoints: [file.pathname], bundle: true, minify: true, format: 'esm', write: false, logLevel: 'silent',
  });
  assert.deepEqual(built.warnings.map((w) => w.text), []);
});
