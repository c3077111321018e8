#!/usr/bin/env bash
# Browser SDK benchmarks, on a stable wasm-release build (the npm package's
# module is built by a pinned nightly: js/scripts/build.mjs, and its size by
# `node bench/size.mjs` after `npm run build` in js/):
#   1. size: wasm + JS glue of `wasm-pack build --profile wasm-release --target web`,
#      raw and gzip -9;
#   2. start-up: `openStore` → first state with N stored events (default
#      10,000, 100,000 and 100,999 — the last one leaves 999 events after the
#      last snapshot, the worst case; set LOGSYNC_BENCH_SIZES=1000,5000 to change),
#      in headless Chromium against a real logsync-server.
#
#   scripts/bench-wasm.sh            both
#   scripts/bench-wasm.sh size       size only
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
what="${1:-all}"

SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/logsync-wasm-bench.XXXXXX")"
HARNESS_PID=""
cleanup() {
  local rc=$?
  if [ -n "$HARNESS_PID" ] && kill -0 "$HARNESS_PID" 2>/dev/null; then
    kill -TERM "$HARNESS_PID" 2>/dev/null || true
    wait "$HARNESS_PID" 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ] && [ -s "$SCRATCH/harness.err" ]; then tail -n 40 "$SCRATCH/harness.err" >&2 || true; fi
  rm -rf "$SCRATCH"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(chromium --version 2>/dev/null || echo chromium)"

if [ "$what" = all ] || [ "$what" = size ]; then
  command -v wasm-opt >/dev/null || { echo "wasm-opt not on PATH (scripts/setup.sh installs it into .tools/)" >&2; exit 1; }
  wasm-pack build --profile wasm-release --target web --out-dir "$SCRATCH/pkg" --out-name logsync_wasm sync-wasm >/dev/null 2>&1 \
    || wasm-pack build --profile wasm-release --target web --out-dir "$SCRATCH/pkg" --out-name logsync_wasm sync-wasm
  total=0
  echo "== size (wasm-release profile, wasm-opt, gzip -9)"
  for f in "$SCRATCH/pkg/logsync_wasm_bg.wasm" "$SCRATCH/pkg/logsync_wasm.js" "$SCRATCH"/pkg/snippets/*/*.js; do
    raw=$(stat -c %s "$f"); gz=$(gzip -9 -c "$f" | wc -c); total=$((total + gz))
    printf '%-28s %8d B raw %8d B gzip\n' "$(basename "$f")" "$raw" "$gz"
  done
  printf '%-28s %8s       %8d B gzip (%.1f KB)\n' "total" "" "$total" "$(echo "$total/1024" | bc -l)"
fi

if [ "$what" = all ] || [ "$what" = startup ]; then
  cargo build -p server-stub --bin logsync-server --release --locked
  export TMPDIR="$SCRATCH"
  node tests/harness/server-control.mjs --server "$ROOT/target/release/logsync-server" \
    >"$SCRATCH/harness.out" 2>"$SCRATCH/harness.err" &
  HARNESS_PID=$!
  LOGSYNC_HARNESS_URL=""
  for _ in $(seq 1 100); do
    LOGSYNC_HARNESS_URL="$(sed -n 's/^logsync-harness listening on \(http:[^ ]*\)$/\1/p' "$SCRATCH/harness.out" | head -n 1)"
    [ -n "$LOGSYNC_HARNESS_URL" ] && break
    sleep 0.1
  done
  [ -n "$LOGSYNC_HARNESS_URL" ] || { echo "the harness did not start" >&2; exit 1; }
  export LOGSYNC_HARNESS_URL
  export LOGSYNC_BENCH_SIZES="${LOGSYNC_BENCH_SIZES:-10000,100000,100999}"
  export CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_TEST_TIMEOUT=1800
  echo "== start-up (wasm-release build, headless Chromium, sizes $LOGSYNC_BENCH_SIZES)"
  wasm-pack test --headless --chrome --chromedriver /usr/bin/chromedriver sync-wasm \
    --profile wasm-release --features bench --test bench_startup
  grep '^REPORT ' "$SCRATCH/harness.out" | sed 's/^REPORT //'
fi
