#!/usr/bin/env bash
# Runs every fuzz target for SECS seconds each (default 600), one after
# another, on the stable toolchain (no sanitizer: the code under test is
# safe Rust, so what the fuzzer hunts is panics and broken invariants).
#
#   scripts/fuzz.sh [SECS] [TARGET...]
#
# A crash leaves its input in fuzz/artifacts/<target>/; copy it to
# sync-core/fixtures/fuzz-regressions/<target>/ (server_session:
# server-stub/fixtures/fuzz-regressions/server_session/) so the regression
# tests keep it, then fix the bug.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECS="${1:-600}"; shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
cd "$ROOT/fuzz"
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(decode_client decode_server client_driver intent_json server_session)
byte() { printf "\\x$(printf %02x "$1")"; }
for t in "${targets[@]}"; do
  echo "== fuzz $t for ${SECS}s"
  mkdir -p "corpus/$t"
  # Seed the corpus with the golden protocol fixtures.
  case "$t" in
    decode_client) cp "$ROOT"/sync-core/fixtures/protocol-v5/client-*.bin "corpus/$t/" ;;
    decode_server|client_driver) cp "$ROOT"/sync-core/fixtures/protocol-v5/server-*.bin "corpus/$t/" ;;
    server_session)
      # A setting byte (0: open server, 1: auth with a valid token), then
      # Hello and one golden client frame, each behind its length byte.
      hello="$ROOT/sync-core/fixtures/protocol-v5/client-hello.bin"
      for setting in 0 1; do
        for f in "$ROOT"/sync-core/fixtures/protocol-v5/client-*.bin; do
          { byte "$setting"; byte "$(stat -c %s "$hello")"; cat "$hello"
            byte "$(stat -c %s "$f")"; cat "$f"; } > "corpus/$t/seed-$setting-$(basename "$f" .bin)"
        done
      done ;;
  esac
  cargo fuzz run -s none "$t" -- -max_total_time="$SECS" -print_final_stats=1 2>&1 \
    | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)|panicked|SUMMARY|Test unit written' || true
  if ls "artifacts/$t"/crash-* >/dev/null 2>&1; then
    echo "fuzz target $t crashed: see fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
echo "no crashes"
