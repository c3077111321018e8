#!/usr/bin/env bash
# Tests of the npm package `logsync` and of the examples:
#   1. builds: wasm + npm package, logsync-server, logsync-bench (its
#      `seed` fills a stream for the catch-up test), the React example, the
#      Elm example (elm make --optimize, failing on any compiler output
#      besides progress; packages from the offline cache setup.sh unpacks),
#      the Rust seats example (logsync-seats-server, its page's wasm module)
#   2. the Elm sources are elm-formatted
#   3. node --test js/test: error codes (sync-core = wasm = JS = TypeScript),
#      the store API in Node, tsc --noEmit on a usage file, React hooks,
#      react-redux <Provider> with a Logsync store, the Elm ports adapter,
#      the size budget (a minified production bundle + wasm, gzip)
#   4. node --test examples/todo-elm/tests: the generated Elm ErrorCode
#      module matches sync-core; Logsync.elm and Logsync/View.elm compiled
#      into a real Elm program and connected with connectElmPorts and
#      connectElmViewPorts (a view of a real logsync-server over SSE)
#   5. node --test tests/e2e: the React and Elm examples in headless
#      Chromium contexts against a real logsync-server (started and stopped
#      by PID inside the tests); the React example's catch-up progress bar
#      during a 100,000-event catch-up (seeded with the example's own
#      actions); the Rust seats example's page against its own server
#      (a seat booked offline and taken meanwhile: SEAT_TAKEN, rolled
#      back); the packed package in fresh Vite apps,
#      among them js/README.md's "Your first app" run word for word (it
#      npm-installs Vite and React from the registry into a temp folder)
# Exits non-zero on any failure. Chromium's profile files go to a scratch
# TMPDIR that is removed at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"

started=$(date +%s)
step() { printf '\n\033[1m==> %s\033[0m  (+%ss)\n' "$*" "$(( $(date +%s) - started ))"; }

SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/logsync-test-js.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT
export TMPDIR="$SCRATCH"

for dir in js examples/todo-react examples/todo-elm tests/e2e; do
  if [ ! -d "$dir/node_modules" ]; then
    step "npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund)
  fi
done

step "build: wasm module + npm package (js/)"
(cd js && npm run --silent build)

step "build: logsync-server"
cargo build --release -p server-stub --bin logsync-server --locked

step "build: logsync-bench (seeds the e2e catch-up test's stream)"
cargo build --release -p logsync-bench --bin logsync-bench --locked

step "build: the Rust seats example (logsync-seats-server, its page's wasm module)"
cargo build -p seats-server --bin logsync-seats-server --locked
# wasm-pack never removes a snippet the module no longer imports.
rm -rf examples/seats-rust/web/www/pkg/snippets
wasm-pack build --profile wasm-release --target web --no-pack --out-dir www/pkg examples/seats-rust/web

step "build: React example"
(cd examples/todo-react && npm run --silent build -- --logLevel warn)

step "build: Elm example (elm make --optimize, no warnings)"
(cd examples/todo-elm && npm run --silent build -- --logLevel warn)

step "Elm example: sources are elm-formatted"
out="$(cd examples/todo-elm && node_modules/.bin/elm-format --validate src/ tests/elm/)"
if [ "$out" != "[]" ]; then echo "$out" >&2; exit 1; fi
echo "ok (elm-format --validate src/ tests/elm/)"

step "node --test js/test (package, types, React, react-redux, Elm adapter)"
(cd js && node --test test/*.test.mjs)

step "node --test examples/todo-elm/tests (generated error codes, Logsync.elm and Logsync/View.elm compiled)"
(cd examples/todo-elm && node --test tests/)

step "node --test tests/e2e (React, Elm and Rust seats examples in Chromium, real server)"
(cd tests/e2e && node --test --test-concurrency=1 ./*.test.mjs)

step "js tests passed"
