#!/usr/bin/env bash
# Runs every fuzz target for SECS seconds each (default 600), one after
# another, on the stable toolchain (no sanitizer: the code under test is
# safe Rust, so what the fuzzer hunts is panics and broken invariants).
#
#   scripts/fuzz.sh [SECS] [TARGET...]
#
# A crash leaves its input in fuzz/artifacts/<target>/; copy it to
# sync-core/fixtures/fuzz-regressions/<target>/ so the regression tests keep
# it, then fix the bug.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECS="${1:-600}"; shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
cd "$ROOT/fuzz"
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(decode_client decode_server client_driver intent_json)
for t in "${targets[@]}"; do
  echo "== fuzz $t for ${SECS}s"
  mkdir -p "corpus/$t"
  # Seed the corpus with the golden protocol fixtures.
  case "$t" in
    decode_client) cp "$ROOT"/sync-core/fixtures/protocol-v1/client-*.bin "corpus/$t/" ;;
    decode_server|client_driver) cp "$ROOT"/sync-core/fixtures/protocol-v1/server-*.bin "corpus/$t/" ;;
  esac
  cargo fuzz run -s none "$t" -- -max_total_time="$SECS" -print_final_stats=1 2>&1 \
    | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)|panicked|SUMMARY|Test unit written' || true
  if ls "artifacts/$t"/crash-* >/dev/null 2>&1; then
    echo "fuzz target $t crashed: see fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
echo "no crashes"
