// `npm pack` ships what an app needs and nothing else: the ESM sources and
// their types, the wasm module with its glue and snippets, the README.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const jsDir = fileURLToPath(new URL('..', import.meta.url));

test('npm pack contains the wasm build, the sources and their types', () => {
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: jsDir, encoding: 'utf8' });
  const [pack] = JSON.parse(out);
  const files = pack.files.map((f) => f.path).sort();
  for (const needed of [
    'package.json', 'README.md',
    'src/index.js', 'src/index.d.ts', 'src/errors.js', 'src/errors.d.ts',
    'src/react.js', 'src/react.d.ts', 'src/elm.js', 'src/elm.d.ts',
    'wasm/logsync_wasm.js', 'wasm/logsync_wasm_bg.wasm',
  ]) {
    assert.ok(files.includes(needed), `${needed} missing from the tarball: ${files.join(', ')}`);
  }
  assert.ok(files.some((f) => f.startsWith('wasm/snippets/')), 'the glue imports wasm/snippets/…');
  for (const f of files) {
    assert.ok(!/^(test|scripts|node_modules)\//.test(f), `${f} should not be published`);
  }
  const exportsMap = JSON.parse(execFileSync('npm', ['pkg', 'get', 'exports'], { cwd: jsDir, encoding: 'utf8' }));
  for (const [subpath, target] of Object.entries(exportsMap)) {
    const paths = typeof target === 'string' ? [target] : Object.values(target);
    for (const p of paths) assert.ok(files.includes(p.replace(/^\.\//, '')), `exports["${subpath}"] points at ${p}, which is not packed`);
  }
});
