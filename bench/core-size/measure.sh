#!/usr/bin/env bash
# What a wasm module holding only sync-core (src/lib.rs) weighs, built the
# way the package's module is (the pinned nightly and flags of
# js/scripts/nightly.mjs) and after the package build's passes (wasm-opt -O,
# then -Os): raw and gzip -9 bytes of the module, and of its glue bundled
# and minified. Run from anywhere after scripts/setup.sh; builds in its own
# target directory.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
export PATH="$ROOT/.tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
TARGET="${CORE_SIZE_TARGET_DIR:-$ROOT/target/core-size}"
cp "$ROOT/Cargo.lock" "$HERE/Cargo.lock"
IFS=$'\t' read -r -a NIGHTLY < <(node "$ROOT/js/scripts/nightly.mjs")
CARGO_TARGET_DIR="$TARGET" RUSTFLAGS="${NIGHTLY[1]}" cargo "+${NIGHTLY[0]}" build --manifest-path "$HERE/Cargo.toml" --profile wasm-release "${NIGHTLY[@]:2}"
wasm-bindgen "$TARGET/wasm32-unknown-unknown/wasm-release/core_size.wasm" --out-dir "$OUT" --target web
wasm-opt -O "$OUT/core_size_bg.wasm" -o "$OUT/a.wasm"
wasm-opt -Os --strip-producers "$OUT/a.wasm" -o "$OUT/m.wasm"
node --input-type=module -e "
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { buildSync } from '$ROOT/js/node_modules/esbuild/lib/main.js';
const wasm = readFileSync('$OUT/m.wasm');
const glue = buildSync({ entryPoints: ['$OUT/core_size.js'], bundle: true, minify: true, format: 'esm', write: false }).outputFiles[0].contents;
const row = (what, b) => console.log(\`\${what}: \${b.length} B raw, \${gzipSync(b, { level: 9 }).length} B gzip -9\`);
row('core-only module', wasm);
row('its glue, minified', glue);
"
