#!/usr/bin/env bash
# Server memory per idle WebSocket connection: opens N connections (each
# says Hello and subscribes, then only answers pings) and compares the
# server's RSS before and after. Needs about N+256 open files in both the
# load generator and the server, so it raises the limit first.
#
#   bench/idle.sh                   # 10,000 connections
#   CONNECTIONS=2000 bench/idle.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CONNECTIONS="${CONNECTIONS:-10000}"
cargo build --profile release-native -p server-stub -p logsync-bench --locked
want=$((CONNECTIONS + 512))
hard=$(ulimit -Hn)
if [ "$hard" != "unlimited" ] && [ "$hard" -lt "$want" ]; then
  echo "the hard open-files limit is $hard; $CONNECTIONS connections need $want" >&2
  exit 1
fi
ulimit -n "$want"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); open files: $(ulimit -n)"
target/release-native/logsync-bench idle --connections "$CONNECTIONS" "$@"
target/release-native/logsync-bench idle --connections "$CONNECTIONS" --subscribe false "$@"
