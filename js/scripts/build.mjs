// Builds the wasm module into js/wasm/ (git-ignored, shipped by `npm pack`):
// `wasm-pack build --profile wasm-release --target web` of ../sync-wasm (the
// size-first cargo profile of the root Cargo.toml; `release` is the native
// server's), with the repository's wasm-opt on PATH, then prints the
// package's size.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { shortenNames } from './short-names.mjs';

const jsDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const root = resolve(jsDir, '..');
const crate = join(root, 'sync-wasm');
const outDir = join(jsDir, 'wasm');
const tools = join(root, '.tools', 'node_modules', '.bin');
const PROFILE = 'wasm-release';
// Where cargo puts the module wasm-pack hands to wasm-bindgen.
const targetDir = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(root, 'target');
const cargoWasm = join(targetDir, 'wasm32-unknown-unknown', PROFILE, 'sync_wasm.wasm');

if (!existsSync(join(tools, 'wasm-opt'))) {
  console.error(`wasm-opt not found in ${tools}; run scripts/setup.sh first`);
  process.exit(1);
}

// wasm-pack writes the crate's JS snippets but never removes old ones: a
// snippet the module no longer imports would still be shipped.
rmSync(join(outDir, 'snippets'), { recursive: true, force: true });

const result = spawnSync('wasm-pack', [
  'build', '--profile', PROFILE, '--target', 'web',
  '--out-dir', outDir, '--out-name', 'logsync_wasm',
  '--no-pack', '--no-gitignore', crate,
], {
  stdio: 'inherit',
  env: { ...process.env, PATH: `${tools}${delimiter}${process.env.PATH}` },
});
if (result.error) {
  console.error(`could not run wasm-pack: ${result.error.message} (run scripts/setup.sh)`);
  process.exit(1);
}
if (result.status !== 0) process.exit(result.status ?? 1);
// The module must come from the size-first profile: a build that fell back
// to another profile would ship a bigger, slower-to-download module.
if (!existsSync(cargoWasm)) {
  console.error(`expected the ${PROFILE} module at ${cargoWasm}`);
  process.exit(1);
}
console.log(`  cargo profile ${PROFILE}: ${cargoWasm}`);

// One more wasm-opt pass, for size (-Os) after wasm-pack's -O: about 430 B
// less gzip, at no cost the dispatch benchmark can tell; and without the
// `producers` section (the toolchain's names and versions, which no browser
// reads): 88 B more (BENCHMARKS.md, "wasm-opt -Os"). The module's features
// are read from its own section.
const wasmFile = join(outDir, 'logsync_wasm_bg.wasm');
const opt = spawnSync(join(tools, 'wasm-opt'), ['-Os', '--strip-producers', wasmFile, '-o', wasmFile], { stdio: 'inherit' });
if (opt.error || opt.status !== 0) {
  console.error(`wasm-opt -Os failed: ${opt.error?.message ?? `exit ${opt.status}`}`);
  process.exit(opt.status || 1);
}

// The names the module and the glue find each other by, shortened in both
// (scripts/short-names.mjs says why and how; BENCHMARKS.md, "Short names").
const glueFile = join(outDir, 'logsync_wasm.js');
const short = shortenNames(wasmFile, glueFile, [join(outDir, 'logsync_wasm.d.ts'), join(outDir, 'logsync_wasm_bg.wasm.d.ts')]);
console.log(`  short names: ${short.imports} imports, ${short.exports} exports, ${short.modules} modules; module ${short.before} -> ${short.after} B`);

// wasm-pack copies the crate's README and licence; the package has its own.
// `snippets/` holds the crate's inline JS, imported by the glue.
for (const name of readdirSync(outDir)) {
  if (name !== 'snippets' && !/^logsync_wasm(_bg)?\.(js|wasm|d\.ts|wasm\.d\.ts)$/.test(name)) {
    rmSync(join(outDir, name), { recursive: true });
  }
}

const files = [
  join(outDir, 'logsync_wasm_bg.wasm'),
  join(outDir, 'logsync_wasm.js'),
  ...listJs(join(outDir, 'snippets')),
  ...listJs(join(jsDir, 'src')),
];
let raw = 0;
let gz = 0;
for (const file of files) {
  const bytes = readFileSync(file);
  const g = gzipSync(bytes, { level: 9 }).length;
  raw += statSync(file).size;
  gz += g;
  console.log(`  ${file.slice(jsDir.length + 1).padEnd(52)} ${kb(bytes.length).padStart(9)} raw ${kb(g).padStart(9)} gzip`);
}
console.log(`  ${'total (wasm + JS)'.padEnd(52)} ${kb(raw).padStart(9)} raw ${kb(gz).padStart(9)} gzip`);

function listJs(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true })
    .filter((f) => f.endsWith('.js'))
    .sort()
    .map((f) => join(dir, f));
}

function kb(n) {
  return `${(n / 1024).toFixed(1)} KiB`;
}
