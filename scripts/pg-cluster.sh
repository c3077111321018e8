# A throwaway PostgreSQL cluster on 127.0.0.1, for tests and benchmarks.
# Sourced, not run:
#
#   source scripts/pg-cluster.sh
#   pg_cluster_start "$(mktemp -d)"     # sets PG_URL (postgres://postgres@127.0.0.1:PORT/postgres)
#   trap pg_cluster_stop EXIT           # stops the server by its PID and removes the directory
#
# Uses Debian's `postgresql` package (installed when missing and running as
# root). The server runs as the `postgres` OS user when called as root
# (PostgreSQL refuses to run as root), with fsync and synchronous commits
# on: acknowledged intents are as durable in tests as in production.

PG_CLUSTER_DIR=""
PG_CLUSTER_PID=""
PG_URL=""

pg_log() { printf '\033[1m[postgres]\033[0m %s\n' "$*" >&2; }

# The newest installed server's bin directory.
pg_bin_dir() {
  local d
  # The highest major version (a plain glob would sort 10 before 9).
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/postgres" ] && echo "$d"
  done | sort -t/ -k4,4n | tail -n1
}

pg_ensure_installed() {
  if [ -n "$(pg_bin_dir)" ]; then return 0; fi
  if [ "$(id -u)" -ne 0 ]; then
    pg_log "PostgreSQL is not installed; run: sudo apt-get install -y postgresql (or scripts/setup.sh)"
    return 1
  fi
  pg_log "installing Debian's postgresql package"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  # The package starts a cluster of its own on 5432; ours run on free ports.
  if command -v systemctl >/dev/null 2>&1; then systemctl stop postgresql >/dev/null 2>&1 || true; fi
  [ -n "$(pg_bin_dir)" ]
}

# PostgreSQL refuses to run as root: as root, clusters belong to the
# `postgres` OS user, made here if binaries exist without it.
pg_ensure_owner() {
  if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    pg_log "creating the postgres OS user"
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  fi
}

# Runs a PostgreSQL binary as the cluster's owner.
pg_as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pg_port_busy() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pg_cluster_start DIR [extra postgres -c settings...]
pg_cluster_start() {
  local dir="$1"; shift
  local bin port try
  pg_ensure_installed || return 1
  pg_ensure_owner || return 1
  bin="$(pg_bin_dir)"
  PG_CLUSTER_DIR="$dir"
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
  # --no-sync only skips flushing the freshly made data directory (a
  # throwaway); the server itself runs with fsync on.
  pg_as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C \
    --no-sync --no-instructions >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2
    return 1
  }
  local settings=(-c listen_addresses=127.0.0.1 -c "unix_socket_directories=$dir"
    -c fsync=on -c synchronous_commit=on -c max_connections=400 "$@")
  for try in 1 2 3 4 5 6 7 8 9 10; do
    port=$(( 20000 + RANDOM % 30000 ))
    pg_port_busy "$port" && continue
    if pg_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c port=$port ${settings[*]}" start >/dev/null 2>&1; then
      PG_CLUSTER_PID="$(head -n1 "$dir/data/postmaster.pid")"
      PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
      export PG_URL
      pg_log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (pid $PG_CLUSTER_PID, data $dir/data)"
      return 0
    fi
    # Most likely the port was taken between the check and the bind.
    tail -n 3 "$dir/server.log" >&2 || true
  done
  pg_log "could not start PostgreSQL; log: $dir/server.log"
  return 1
}

pg_cluster_stop() {
  if [ -n "$PG_CLUSTER_DIR" ] && [ -d "$PG_CLUSTER_DIR/data" ] && [ -n "$PG_CLUSTER_PID" ]; then
    pg_as_owner "$(pg_bin_dir)/pg_ctl" -D "$PG_CLUSTER_DIR/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
      kill -TERM "$PG_CLUSTER_PID" 2>/dev/null || true
  fi
  if [ -n "$PG_CLUSTER_DIR" ]; then rm -rf "$PG_CLUSTER_DIR"; fi
  PG_CLUSTER_DIR=""
  PG_CLUSTER_PID=""
}
