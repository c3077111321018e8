#!/usr/bin/env bash
# Brings a fresh machine to a state where every part of Logsync builds and
# every test runs. Idempotent: each step checks before it installs.
#
# Steps (see docs/TOOLCHAIN notes in ARCHITECTURE.md):
#   1. wasm32 target for rustc; the pinned nightly with the standard
#      library's sources, which the npm package's build rebuilds for size
#      (js/scripts/nightly.mjs says why)
#   2. Chromium + chromedriver (headless browser tests), PostgreSQL (scale-out tests)
#   3. wasm-pack, pinned
#   4. wasm-bindgen CLI matching Cargo.lock exactly
#   5. wasm-opt from npm's binaryen, into .tools/
#   6. node packages of js/, tests/e2e and examples (the Elm compiler is
#      the example's pinned npm package @lydell/elm, which ships the binary)
#   7. Elm packages: the offline cache beside the clone, when there is one
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

WASM_PACK_VERSION=0.15.1
BINARYEN_VERSION=132.0.0
log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. wasm target
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding rustup target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# The npm package's module is built by a pinned nightly that rebuilds the
# standard library (js/scripts/nightly.mjs names it and says why). A
# machine whose `nightly` is that very compiler with its sources uses it;
# any other gets the dated one.
if [ -z "$(node js/scripts/nightly.mjs 2>/dev/null)" ]; then
  NIGHTLY="$(node js/scripts/nightly.mjs --name)"
  log "rustup toolchain install $NIGHTLY (minimal, with rust-src)"
  rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src --no-self-update
  [ -n "$(node js/scripts/nightly.mjs)" ]
fi

# 2. system packages
need_apt=()
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium chromium-driver)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then need_apt+=(postgresql); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
  # Debian starts a cluster on install; our tests run their own on a free port.
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl stop postgresql >/dev/null 2>&1 || true; fi
fi

# 3. wasm-pack
if ! wasm-pack --version 2>/dev/null | grep -q "$WASM_PACK_VERSION"; then
  log "cargo install wasm-pack $WASM_PACK_VERSION"
  cargo install wasm-pack --version "$WASM_PACK_VERSION" --locked
fi

# 4. wasm-bindgen CLI, exactly the version in Cargo.lock (wasm-pack uses the
# one on PATH only when it matches; otherwise it tries to download one).
WBG_VERSION="$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' Cargo.lock)"
if [ -z "$WBG_VERSION" ]; then echo "cannot read wasm-bindgen version from Cargo.lock" >&2; exit 1; fi
if ! wasm-bindgen --version 2>/dev/null | grep -q " $WBG_VERSION\$\| $WBG_VERSION "; then
  log "cargo install wasm-bindgen-cli $WBG_VERSION"
  # Not --locked: its lockfile pins a crate version the registry does not serve.
  cargo install wasm-bindgen-cli --version "$WBG_VERSION" --force
fi

# 5. wasm-opt from npm
if [ ! -x "$ROOT/.tools/node_modules/.bin/wasm-opt" ]; then
  log "npm install binaryen@$BINARYEN_VERSION into .tools/"
  mkdir -p "$ROOT/.tools"
  npm install --silent --no-audit --no-fund --prefix "$ROOT/.tools" "binaryen@$BINARYEN_VERSION"
fi

# 6. node packages
for dir in js tests/e2e examples/todo-react examples/todo-elm; do
  if [ -f "$ROOT/$dir/package.json" ]; then
    if [ ! -d "$ROOT/$dir/node_modules" ] || [ "$ROOT/$dir/package.json" -nt "$ROOT/$dir/node_modules/.stamp" ]; then
      log "npm install in $dir"
      (cd "$ROOT/$dir" && npm install --no-audit --no-fund --silent && touch node_modules/.stamp)
    fi
  fi
done

# 7. Elm packages. Where ../shared/elm holds the offline ELM_HOME (machines
# that cannot reach package.elm-lang.org), unpack it into .tools/elm, which
# stays writable; examples/todo-elm/scripts/elm-make.mjs uses it from there.
# Without it, elm uses its own cache (~/.elm) and downloads what it needs.
ELM_CACHE="$ROOT/../shared/elm/elm-home-0.19.1.tar.gz"
if [ -f "$ELM_CACHE" ] && { [ ! -f "$ROOT/.tools/elm/.stamp" ] || [ "$ELM_CACHE" -nt "$ROOT/.tools/elm/.stamp" ]; }; then
  log "unpacking the offline Elm package cache into .tools/elm"
  "$ROOT/../shared/elm/use-elm-home.sh" "$ROOT/.tools/elm" "$ELM_CACHE" >/dev/null
  touch "$ROOT/.tools/elm/.stamp"
fi

log "ready"
