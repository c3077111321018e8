#!/usr/bin/env bash
# Logsync's benchmark suite, one command (see BENCHMARKS.md):
#
#   bench/run.sh                  everything, ~7 min on 2 cores once built (~10 with --postgres)
#   bench/run.sh --quick          a short smoke run of everything, ~2 min
#   bench/run.sh --only fanout,append,reducer,boot,idle,browser,size
#   bench/run.sh --no-pin         do not pin the server and the load generator
#   bench/run.sh --postgres       also the PostgreSQL store (one node) in the fan-out
#                                 and append benchmarks, on a throwaway cluster
#                                 (scripts/pg-cluster.sh) that is removed afterwards;
#                                 two nodes: bench/postgres.sh
#
# Builds the server, the load generator and the relay with the speed
# profile (into target/release, or $CARGO_TARGET_DIR/release; when the
# reducer benchmark runs also logsync-todo-server) and the npm package (js/) in
# release, runs each benchmark, writes
# bench/results/<UTC date>[-quick].md (the tables) and .jsonl (one record
# per measured run), and prints the tables. Stops everything it started.
#
# More server variants (e.g. another store) run beside the default one:
#   LOGSYNC_BENCH_VARIANTS='pg=--store postgres://u@127.0.0.1:5432/bench_{run}' \
#   LOGSYNC_BENCH_PG_ADMIN_URL=postgres://u@127.0.0.1:5432/postgres bench/run.sh
# (`;`-separated LABEL=FLAGS; `{run}` becomes a name unique to each server
# start; with an admin URL the load generator creates that database before
# each start and drops it after). Each label is measured in the fan-out,
# append and idle benchmarks.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/.tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"

QUICK=0
PIN=1
POSTGRES=0
ONLY="fanout,append,reducer,boot,idle,browser,size"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --no-pin) PIN=0 ;;
    --postgres) POSTGRES=1 ;;
    --only) ONLY="$2"; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
want() { [[ ",$ONLY," == *",$1,"* ]]; }

started=$(date +%s)
stamp="$(date -u +%Y-%m-%dT%H-%M-%SZ)"
[ "$QUICK" = 1 ] && stamp="$stamp-quick"
mkdir -p bench/results
RAW="bench/results/$stamp.jsonl"
MD="bench/results/$stamp.md"
: >"$RAW"

# Everything started below is a direct child run in the foreground, or
# the one background job whose PID is in CHILD; each stops its own
# servers and browser. Chromium's leftovers go to this scratch TMPDIR.
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/logsync-bench.XXXXXX")"
CHILD=""
PG_STARTED=0
cleanup() {
  local rc=$?
  if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then
    kill -TERM "$CHILD" 2>/dev/null || true
    wait "$CHILD" 2>/dev/null || true
  fi
  if [ "$PG_STARTED" = 1 ]; then pg_cluster_stop; fi
  rm -rf "$SCRATCH"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
export TMPDIR="$SCRATCH"

# Runs "$@" as a tracked child so an interrupt stops it (and it its own).
run() {
  "$@" &
  CHILD=$!
  wait "$CHILD"
  CHILD=""
}

step() { printf '\n\033[1m==> %s\033[0m  (+%ss)\n' "$*" "$(( $(date +%s) - started ))"; }

# ---- build -----------------------------------------------------------------
step "build: server, load generator, relay (release); npm package (wasm-release)"
# --only reducer also measures logsync-todo-server (bench/todo-server:
# logsync-server from the server-stub library with the Rust todo reducer).
PACKAGES=(-p server-stub -p logsync-bench)
if want reducer; then PACKAGES+=(-p todo-server); fi
cargo build --release "${PACKAGES[@]}" --locked 2>&1 | tail -n 2
# Where Cargo put them: target/ or $CARGO_TARGET_DIR.
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps --locked \
  | node -e 'let s = ""; process.stdin.on("data", (d) => { s += d; }).on("end", () => console.log(JSON.parse(s).target_directory));')"
BIN="$TARGET_DIR/release"
if want browser || want size; then
  (cd js && { [ -d node_modules ] || npm ci --no-audit --no-fund >/dev/null; } && npm run build --silent >"$SCRATCH/npm-build.log" 2>&1) \
    || { cat "$SCRATCH/npm-build.log" >&2; exit 1; }
fi
if want browser && [ ! -d bench/browser/node_modules ]; then
  (cd bench/browser && npm ci --no-audit --no-fund >/dev/null)
fi

# ---- the machine -----------------------------------------------------------
# Two cores: with pinning the server (or relay) runs on CPU 1 and the load
# generator on CPU 0, so they never compete; the relay is measured the same
# way. Chromium is not pinned (it is several processes).
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  LOADGEN=(taskset -c 0 "$BIN/logsync-bench" --server-cpus 1)
  BROWSER_PIN=()
  pinning="Fan-out, append and idle: server (or relay) pinned to CPU 1, load generator to CPU 0 (taskset). Browser benchmarks: nothing pinned."
else
  LOADGEN=("$BIN/logsync-bench")
  BROWSER_PIN=()
  pinning="Nothing pinned: server, relay, load generator and browser share all cores."
fi
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge 20000 ]; then ulimit -n 20000; else ulimit -n "$hard"; fi

VARIANT_ARGS=()
TARGETS="logsync"
IFS=';' read -r -a variants <<<"${LOGSYNC_BENCH_VARIANTS:-}"
for v in "${variants[@]}"; do
  [ -z "${v// }" ] && continue
  VARIANT_ARGS+=(--variant "$v")
  TARGETS="$TARGETS,${v%%=*}"
done
IDLE_TARGETS="$TARGETS"

# ---- PostgreSQL (--postgres) ------------------------------------------------
# A throwaway cluster (fsync and synchronous commits on); the load
# generator creates a fresh database in it for every server start (the
# server never creates databases) and drops it after. With pinning the
# cluster runs on the server's CPU: the store is part of the server side.
if [ "$POSTGRES" = 1 ]; then
  step "PostgreSQL: a throwaway cluster"
  # shellcheck source=scripts/pg-cluster.sh
  source "$ROOT/scripts/pg-cluster.sh"
  # Under /tmp: the cluster runs as the postgres user, which must reach it.
  PG_STARTED=1
  pg_cluster_start "$(mktemp -d /tmp/logsync-bench-pg.XXXXXX)"
  if [ "${#LOADGEN[@]}" -gt 1 ]; then
    for pid in "$PG_CLUSTER_PID" $(pgrep -P "$PG_CLUSTER_PID"); do
      taskset -a -p -c 1 "$pid" >/dev/null || true
    done
  fi
  export LOGSYNC_BENCH_PG_ADMIN_URL="$PG_URL"
  VARIANT_ARGS+=(--variant "postgres=--store ${PG_URL%/*}/bench_{run}")
  TARGETS="$TARGETS,postgres"
  pg_version="$("$(pg_bin_dir)/postgres" --version | awk '{print $3}')"
  pinning="$pinning PostgreSQL $pg_version (fsync and synchronous commits on) on the same machine$([ "${#LOADGEN[@]}" -gt 1 ] && echo ', pinned to CPU 1 with the server')."
fi

node -e '
const [nproc, cpu, mem, kernel, load, commit, mode, pinning, date] = process.argv.slice(1);
console.log(JSON.stringify({ bench: "machine", nproc: +nproc, cpu, memory: mem, kernel, load, commit, mode, pinning, date }));
' "$(nproc)" "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)" \
  "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)" "$(uname -r)" \
  "$(cut -d' ' -f1-3 /proc/loadavg)" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- bench server-stub sync-wasm sync-core js 2>/dev/null || echo '+changes')" \
  "$([ "$QUICK" = 1 ] && echo quick || echo full)" "$pinning" "$(date -u '+%Y-%m-%d %H:%M UTC')" >>"$RAW"
echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$pinning"

# ---- the benchmarks ----------------------------------------------------------
if [ "$QUICK" = 1 ]; then
  FANOUT=(--subscribers 10,100 --many-writers 20 --repeats 1 --duration 1s --warmup 300ms --drain 5s)
  PIPELINED=(--repeats 1 --duration 1s --warmup 300ms --drain 5s)
  APPEND=(--writers 1,10 --repeats 1 --duration 1s --warmup 300ms)
  REDUCER=(--writers 1,10,100 --repeats 1 --duration 1s --warmup 300ms)
  IDLE=(--connections 1000 --repeats 1 --settle 1s)
  BOOT=(--events 10000 --clients 1)
  BROWSER=(--quick)
else
  FANOUT=(--subscribers 10,100,1000 --many-writers 100 --repeats 3 --duration 3s --warmup 1s --drain 5s)
  PIPELINED=(--repeats 3 --duration 3s --warmup 1s --drain 5s)
  APPEND=(--writers 1,10,100 --repeats 3 --duration 3s --warmup 500ms)
  REDUCER=(--writers 1,10,100 --repeats 5 --duration 3s --warmup 500ms)
  IDLE=(--connections 1000,10000 --repeats 2 --settle 2s)
  BOOT=(--events 10000,100000,1000000 --clients 3)
  BROWSER=()
fi

if want fanout; then
  step "1. fan-out: server vs relay"
  run "${LOADGEN[@]}" "${VARIANT_ARGS[@]}" --json "$RAW" fanout --targets "relay,$TARGETS" "${FANOUT[@]}"
  step "1b. fan-out, one intent per push, pipelined (as fast as the window allows)"
  run "${LOADGEN[@]}" "${VARIANT_ARGS[@]}" --json "$RAW" fanout --targets "relay,$TARGETS" \
    --subscribers 10 --many-writers 0 --modes max --max-batch 1 "${PIPELINED[@]}"
fi
if want append; then
  step "2. durable append: group commit vs one commit per intent"
  run "${LOADGEN[@]}" "${VARIANT_ARGS[@]}" --json "$RAW" append --targets "$TARGETS" "${APPEND[@]}"
fi
if want reducer; then
  # The TodoMVC example's own actions on streams todos/0.. (group commit),
  # against the same server without a reducer, logsync-todo-server (the
  # same server with the example's reducer ported to Rust, bench/todo-reducer,
  # folding todos/*) and the same server with the example's reducer module
  # folding todos/* in its JavaScript engine.
  step "2b. durable append with the Rust and the JavaScript todo reducer at the ordering point"
  run "${LOADGEN[@]}" --json "$RAW" \
    --variant-bin "logsync-rust-todo=$BIN/logsync-todo-server" \
    --variant "logsync-js-todo=--reducer todos/*=$ROOT/examples/todo-react/src/todos.js" \
    append --targets logsync,logsync-rust-todo,logsync-js-todo --modes group --payload todo --stream-prefix todos/ \
    "${REDUCER[@]}"
fi
if want boot; then
  # A history of N events folded by bench/boot-reducer.js; a new client
  # subscribes from 0: every event (the whole log kept) vs the server's
  # snapshot and the events after it (--retain-events 1000).
  step "2c. a new client's time to first state: full catch-up vs snapshot boot"
  run "${LOADGEN[@]}" --json "$RAW" boot --reducer "$ROOT/bench/boot-reducer.js" "${BOOT[@]}"
fi
if want idle; then
  step "3. memory per idle connection"
  run "${LOADGEN[@]}" "${VARIANT_ARGS[@]}" --json "$RAW" idle --targets "$IDLE_TARGETS" "${IDLE[@]}"
fi
if want browser; then
  step "4. client in headless Chromium (release build)"
  run node bench/browser/run.mjs --server "$BIN/logsync-server" --seeder "$BIN/logsync-bench" \
    --json "$RAW" --profile-dispatch "${BROWSER_PIN[@]}" "${BROWSER[@]}"
fi
if want size; then
  step "5. size of the npm package's release build"
  node bench/size.mjs --json "$RAW"
fi

# ---- the report --------------------------------------------------------------
elapsed=$(( $(date +%s) - started ))
node -e 'const fs=require("fs");const f=process.argv[1];const l=fs.readFileSync(f,"utf8").split("\n");const m=JSON.parse(l[0]);m.duration_s=+process.argv[2];l[0]=JSON.stringify(m);fs.writeFileSync(f,l.join("\n"));' "$RAW" "$elapsed"
node bench/report.mjs "$RAW" >"$MD"
step "results ($elapsed s): $MD"
cat "$MD"
