// Builds the wasm module into js/wasm/ (git-ignored, shipped by `npm pack`):
// ../sync-wasm built by cargo with the `wasm-release` profile (the
// size-first cargo profile of the root Cargo.toml; `release` is the native
// server's) and a pinned nightly that rebuilds the standard library for
// size, then wasm-bindgen (`--target web`) and the repository's wasm-opt,
// then prints the package's size.
// js/scripts/nightly.mjs says why a nightly, and which.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { CARGO_ARGS, NIGHTLY, NIGHTLY_COMMIT, RUSTFLAGS, findNightly } from './nightly.mjs';
import { shortenNames } from './short-names.mjs';

const jsDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const root = resolve(jsDir, '..');
const outDir = join(jsDir, 'wasm');
const tools = join(root, '.tools', 'node_modules', '.bin');
const PROFILE = 'wasm-release';
// A target directory of its own: other flags than the stable builds', so
// neither rebuilds the other's crates.
const targetDir = join(process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(root, 'target'), 'package');
const cargoWasm = join(targetDir, 'wasm32-unknown-unknown', PROFILE, 'sync_wasm.wasm');
const env = { ...process.env, PATH: `${tools}${delimiter}${process.env.PATH}` };

if (!existsSync(join(tools, 'wasm-opt'))) {
  console.error(`wasm-opt not found in ${tools}; run scripts/setup.sh first`);
  process.exit(1);
}
const toolchain = findNightly();
if (toolchain === null) {
  console.error(`the ${NIGHTLY} toolchain (rustc ${NIGHTLY_COMMIT}) with rust-src was not found; run scripts/setup.sh first`);
  process.exit(1);
}

// wasm-bindgen writes the crate's JS snippets but never removes old ones: a
// snippet the module no longer imports would still be shipped.
rmSync(join(outDir, 'snippets'), { recursive: true, force: true });

run('cargo', [
  `+${toolchain}`, 'build', '-p', 'sync-wasm', '--lib', '--profile', PROFILE, '--locked', ...CARGO_ARGS,
], { ...env, CARGO_TARGET_DIR: targetDir, RUSTFLAGS });
console.log(`  cargo +${toolchain}, profile ${PROFILE}: ${cargoWasm}`);
run('wasm-bindgen', [cargoWasm, '--target', 'web', '--out-dir', outDir, '--out-name', 'logsync_wasm'], env);

// wasm-opt -O, then one more pass for size (-Os): about 430 B less gzip
// than -O alone, at no cost the dispatch benchmark can tell; and without the
// `producers` section (the toolchain's names and versions, which no browser
// reads): 88 B more (BENCHMARKS.md, "wasm-opt -Os"). The module's features
// are read from its own section.
const wasmFile = join(outDir, 'logsync_wasm_bg.wasm');
run(join(tools, 'wasm-opt'), ['-O', wasmFile, '-o', wasmFile], env);
run(join(tools, 'wasm-opt'), ['-Os', '--strip-producers', wasmFile, '-o', wasmFile], env);

// The names the module and the glue find each other by, shortened in both
// (scripts/short-names.mjs says why and how; BENCHMARKS.md, "Short names").
const glueFile = join(outDir, 'logsync_wasm.js');
const short = shortenNames(wasmFile, glueFile, [join(outDir, 'logsync_wasm.d.ts'), join(outDir, 'logsync_wasm_bg.wasm.d.ts')]);
console.log(`  short names: ${short.imports} imports, ${short.exports} exports, ${short.modules} modules; module ${short.before} -> ${short.after} B`);

// Only the module, its glue and their types are shipped. `snippets/` holds
// the crate's inline JS, imported by the glue.
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

function run(cmd, args, runEnv) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', env: runEnv });
  if (r.error) {
    console.error(`could not run ${cmd}: ${r.error.message} (run scripts/setup.sh)`);
    process.exit(1);
  }
  if (r.status !== 0) {
    console.error(`${cmd} ${args.join(' ')} failed: ${r.signal ? `killed by ${r.signal}` : `exit ${r.status}`}`);
    process.exit(r.status ?? 1);
  }
}
