#!/usr/bin/env bash
# Runs every test of Logsync, in order of cost: lints, the pure core
# (including the property tests), the server against real SQLite (and
# PostgreSQL), the browser SDK in headless Chromium against a real server,
# then the npm package and the end-to-end tests in two browser contexts.
#
#   scripts/test.sh            everything (what CI runs)
#
# Run scripts/setup.sh once first on a fresh machine (.ci/run does).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# 1,000+ cases per property in CI (the tests default to these too).
export PROPTEST_CASES="${PROPTEST_CASES:-1000}"

started=$(date +%s)
step() { printf '\n\033[1m==> %s\033[0m  (+%ss)\n' "$*" "$(( $(date +%s) - started ))"; }

step "lint: cargo fmt --check"
cargo fmt --all --check

step "lint: clippy, native, all targets"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "lint: clippy, the server with the otel feature"
cargo clippy -p server-stub --all-targets --features otel --locked -- -D warnings

step "lint: clippy, wasm32"
cargo clippy -p sync-core -p sync-wasm -p seats-reducer -p seats-web --target wasm32-unknown-unknown --locked -- -D warnings

step "sync-core stays pure (no wasm-bindgen, js-sys, web-sys, tokio)"
if cargo tree -p sync-core -e normal,build --prefix none --locked | grep -E '^(wasm-bindgen|js-sys|web-sys|tokio|getrandom) '; then
  echo "sync-core must not depend on the crates above" >&2
  exit 1
fi

step "docs: rustdoc warnings are errors"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p sync-core --locked

step "build: sync-core for wasm32-unknown-unknown"
cargo build -p sync-core --target wasm32-unknown-unknown --locked

step "cargo test: core, server (native)"
cargo test --workspace --exclude sync-wasm --exclude seats-web --locked

step "cargo test: the server's otel feature (spans to a real OTLP/HTTP collector)"
cargo test -p server-stub --features otel --locked --test otel

# Every layer's script must be there and executable: a missing one is a
# failure, never a silently skipped layer.
layer() {
  local script="$1"
  shift
  if [ ! -f "$script" ]; then
    echo "$script is missing: the test layer \"$*\" cannot run" >&2
    exit 1
  fi
  if [ ! -x "$script" ]; then
    echo "$script is not executable (chmod +x $script): the test layer \"$*\" cannot run" >&2
    exit 1
  fi
  step "$*"
  "$script"
}

layer scripts/test-postgres.sh "server on PostgreSQL"
layer scripts/test-wasm.sh "browser SDK in headless Chromium"
layer scripts/test-js.sh "npm package, React/Elm bindings, end-to-end"

step "all tests passed"
