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

step "lint: clippy, wasm32"
cargo clippy -p sync-core -p sync-wasm --target wasm32-unknown-unknown --locked -- -D warnings

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
cargo test --workspace --exclude sync-wasm --locked

if [ -x scripts/test-postgres.sh ]; then
  step "server on PostgreSQL"
  scripts/test-postgres.sh
fi

if [ -x scripts/test-wasm.sh ]; then
  step "browser SDK in headless Chromium"
  scripts/test-wasm.sh
fi

if [ -x scripts/test-js.sh ]; then
  step "npm package, React/Elm bindings, end-to-end"
  scripts/test-js.sh
fi

step "all tests passed"
