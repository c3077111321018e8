#!/usr/bin/env bash
# Durable appends per second, group commit vs one commit per intent, for
# 1, 10 and 100 closed-loop writers. Builds the server and the load
# generator with the speed profile, then runs `logsync-bench append`
# ROUNDS times (the machine may be shared: compare within a round, and
# look at the spread across rounds).
#
#   bench/append.sh                 # 3 rounds of 5 s per cell
#   ROUNDS=1 DURATION=3s bench/append.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5s}"
cargo build --profile release-native -p server-stub -p logsync-bench --locked
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); load: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$ROUNDS"); do
  echo
  echo "round $round"
  target/release-native/logsync-bench append --writers 1,10,100 --modes group,per-intent \
    --duration "$DURATION" --warmup 1s "$@"
done
