#!/usr/bin/env bash
# The server on a real PostgreSQL: starts a throwaway cluster on 127.0.0.1
# (Debian's package, a free port, fsync on), runs the tests that need it,
# then stops the cluster by its PID and removes its directory.
#
#   scripts/test-postgres.sh
#
# - store tests (server-stub/src/store/postgres/tests.rs): two store
#   instances on one database are two nodes — dense offsets under
#   concurrent appends, exactly-once across nodes, rejections replayed,
#   shared epoch, concurrent migrations, cross-node fan-out, LISTEN
#   reconnect and missed notifications, client bindings, snapshots and
#   compaction (a node behind compacted events restores from the snapshot);
# - process tests (server-stub/tests/postgres.rs): real logsync-server
#   processes and WebSocket/HTTP/SSE clients — two nodes, one order,
#   resends answered once; a node killed mid-load loses nothing; a
#   compacted stream: 410 COMPACTED and the snapshot boot through the other
#   node, 200,000 events within the retention; a view watched on one node
#   follows the other node's commits.
#
# Without this script (plain `cargo test`) those tests are listed as
# ignored: they need LOGSYNC_TEST_POSTGRES_URL, which this script sets.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"

# shellcheck source=scripts/pg-cluster.sh
source "$ROOT/scripts/pg-cluster.sh"
# Under /tmp, not $TMPDIR: the server runs as the postgres user, which must
# be able to reach the directory.
SCRATCH="$(mktemp -d /tmp/logsync-pg.XXXXXX)"
trap pg_cluster_stop EXIT
trap 'exit 130' INT TERM
pg_cluster_start "$SCRATCH"
export LOGSYNC_TEST_POSTGRES_URL="$PG_URL"

cargo test -p server-stub --locked --lib -- --ignored store::postgres
cargo test -p server-stub --locked --test postgres -- --ignored
