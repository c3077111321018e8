#!/usr/bin/env bash
# Scale-out numbers: durable appends per second and fan-out latency with
# 1 and 2 logsync-server nodes on one PostgreSQL, against SQLite on one
# node, all driven by the same load generator
# (server-stub/examples/scaleout.rs: closed-loop writers spread over the
# nodes, 4 subscribers spread over the nodes, payloads stamped with their
# push time). Starts a throwaway PostgreSQL on 127.0.0.1 like
# scripts/test-postgres.sh (fsync and synchronous commits on) and removes
# it afterwards. Every run gets fresh storage and fresh nodes.
#
#   bench/postgres.sh                              # 3 rounds, 1/10/100 writers, 5 s each
#   ROUNDS=1 DURATION=3s WRITERS=1,10 bench/postgres.sh
#   STREAMS=10 bench/postgres.sh                   # writers spread over 10 streams
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5s}"
WRITERS="${WRITERS:-1,10,100}"
STREAMS="${STREAMS:-1}"

cargo build --release -p server-stub --bin logsync-server --example scaleout --locked
BIN=target/release

# shellcheck source=scripts/pg-cluster.sh
source "$ROOT/scripts/pg-cluster.sh"
SCRATCH="$(mktemp -d /tmp/logsync-pg-bench.XXXXXX)"
trap pg_cluster_stop EXIT
trap 'exit 130' INT TERM
pg_cluster_start "$SCRATCH"

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); PostgreSQL $("$(pg_bin_dir)/postgres" --version | awk '{print $3}') on the same machine"
run() {
  "$BIN/examples/scaleout" --server-bin "$BIN/logsync-server" --writers "$WRITERS" \
    --streams "$STREAMS" --duration "$DURATION" "$@" | tail -n +3
}
for round in $(seq 1 "$ROUNDS"); do
  echo
  echo "round $round (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
  echo "| store | nodes | streams | writers | intents/s | push→Ack ms p50 / p99 | fan-out ms, writer's node p50 / p99 | fan-out ms, other node p50 / p99 |"
  echo "|---|---:|---:|---:|---:|---|---|---|"
  run
  run --postgres "$PG_URL" --nodes 1
  run --postgres "$PG_URL" --nodes 2
done
