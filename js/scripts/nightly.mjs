// The compiler the npm package's module is built with, and how: a pinned
// nightly that rebuilds the standard library for size. Used by build.mjs
// (the package) and bench/core-size/measure.sh (what a module of sync-core
// alone would weigh, built the same way).
//
// Why a nightly: the prebuilt standard library keeps the panic machinery
// (messages formatted, locations) and is compiled with reference types and
// multi-value, whose shims each export carries. Rebuilt with panics that
// trap at once (`-Cpanic=immediate-abort`; with `panic = "abort"` a panic
// already ended in a trap whose message no one could read, since the
// module installs no hook), without locations, without those two target
// features and with std's `optimize_for_size`, the module is about 8 KB
// smaller in gzip (BENCHMARKS.md, "A pinned nightly for the package").
// Offering every function of every crate for inlining across crates
// (`-Zcross-crate-inline-threshold=always`; at opt-level "z" rustc offers
// only `#[inline]` ones) takes about 7 KB more (BENCHMARKS.md, "Every
// function inlinable across crates").
// scripts/setup.sh installs it. Tests and every other build use stable.
import { spawnSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// The nightly scripts/setup.sh installs (or finds as `nightly`), known by
// its commit.
export const NIGHTLY = 'nightly-2026-05-20';
export const NIGHTLY_COMMIT = 'e50aa6fba';

/** cargo's arguments after `build`, for a wasm32 build that rebuilds std. */
export const CARGO_ARGS = [
  '--target', 'wasm32-unknown-unknown',
  '-Zbuild-std=std,panic_abort', '-Zbuild-std-features=optimize_for_size',
];

/** The RUSTFLAGS of that build. */
export const RUSTFLAGS = [
  '-Zunstable-options', '-Cpanic=immediate-abort', '-Zlocation-detail=none',
  '-Ctarget-feature=-reference-types,-multivalue',
  '-Zcross-crate-inline-threshold=always',
].join(' ');

/** The rustup toolchain to build with (`+name`), or null when neither name is the pinned nightly with rust-src. */
export function findNightly() {
  return [NIGHTLY, 'nightly'].find(hasNightly) ?? null;
}

// Asked with rustup's auto-install off: naming a toolchain that is not
// there must not download it (scripts/setup.sh installs it, minimal and
// with rust-src, when neither name is it).
const ASK = { encoding: 'utf8', env: { ...process.env, RUSTUP_AUTO_INSTALL: '0' } };

function hasNightly(name) {
  const version = spawnSync('rustc', [`+${name}`, '-V'], ASK);
  if (version.status !== 0 || !version.stdout.includes(NIGHTLY_COMMIT)) return false;
  const sysroot = spawnSync('rustc', [`+${name}`, '--print', 'sysroot'], ASK);
  return sysroot.status === 0 && existsSync(join(sysroot.stdout.trim(), 'lib', 'rustlib', 'src', 'rust', 'library', 'std'));
}

// `node nightly.mjs`: prints `TOOLCHAIN<TAB>RUSTFLAGS<TAB>ARGS...` for
// shell scripts, or fails with the reason. `node nightly.mjs --name`:
// prints the pinned nightly's name (what scripts/setup.sh installs).
if (process.argv[1] && existsSync(process.argv[1]) && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv[2] === '--name') {
    console.log(NIGHTLY);
  } else {
    const toolchain = findNightly();
    if (toolchain === null) {
      console.error(`the ${NIGHTLY} toolchain (rustc ${NIGHTLY_COMMIT}) with rust-src was not found; run scripts/setup.sh first`);
      process.exit(1);
    }
    console.log([toolchain, RUSTFLAGS, ...CARGO_ARGS].join('\t'));
  }
}
