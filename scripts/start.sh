#!/usr/bin/env bash
# The main command: sets up the machine (only what is missing), builds the
# server, the npm package and the React example, and starts logsync-server
# (embedded SQLite) serving the app and the API on one origin. The server
# folds every `todos/*` stream with the example's own reducer module
# (examples/todo-react/src/todos.js, which both examples' actions follow):
# GET /v1/streams/todos%2F<room>/state answers the list as the server has it.
#
#   scripts/start.sh                 run until Ctrl-C
#   scripts/start.sh --app elm       the Elm example instead of the React one
#                                    (same rooms; examples/todo-elm/README.md
#                                    shows both side by side)
#   scripts/start.sh --check         build, start (on a free port), prove it
#                                    serves the app and answers on the
#                                    WebSocket, stop, exit 0/1 (with
#                                    --app elm: the same for the Elm example)
#   scripts/start.sh --port 9000     another port (or LOGSYNC_PORT=9000)
#   LOGSYNC_DB=/path/to/log.db       where the log is kept (default ./logsync.db)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

CHECK=0
APP=react
PORT="${LOGSYNC_PORT:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --check) CHECK=1 ;;
    --app) APP="${2:?--app needs react or elm}"; shift ;;
    --app=*) APP="${1#--app=}" ;;
    --port) PORT="${2:?--port needs a number}"; shift ;;
    --port=*) PORT="${1#--port=}" ;;
    -h|--help) sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
[ "${LOGSYNC_START_CHECK:-0}" = 1 ] && CHECK=1
case "$APP" in
  react|elm) ;;
  *) echo "unknown app: $APP (--app react or --app elm)" >&2; exit 2 ;;
esac
# A check picks a free port unless told otherwise, so it never collides.
if [ -z "$PORT" ]; then
  if [ "$CHECK" = 1 ]; then PORT=0; else PORT=8080; fi
fi
DB="${LOGSYNC_DB:-$ROOT/logsync.db}"

log() { printf '\033[1m[start]\033[0m %s\n' "$*"; }

scripts/setup.sh
export PATH="$ROOT/.tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"

log "building logsync-server"
cargo build --release -p server-stub --bin logsync-server --locked
log "building the npm package (wasm + JS)"
(cd js && npm run --silent build)
if [ "$APP" = elm ]; then
  log "building the Elm example"
  (cd examples/todo-elm && npm run --silent build -- --logLevel warn)
else
  log "building the React example"
  (cd examples/todo-react && npm run --silent build -- --logLevel warn)
fi

SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/logsync-start.XXXXXX")"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$CHECK" = 1 ]; then
  # A throwaway database, so a check never touches the real log.
  DB="$SCRATCH/check.db"
fi

log "starting logsync-server on 127.0.0.1:$PORT (log in $DB)"
# Server output goes to the terminal and to a file we read the address from;
# $! is the server's own PID (process substitution, not a pipeline).
: > "$SCRATCH/server.out"
target/release/logsync-server --listen "127.0.0.1:$PORT" --db "$DB" \
  --static "examples/todo-$APP/dist" --reducer 'todos/*=examples/todo-react/src/todos.js' \
  > >(tee "$SCRATCH/server.out") 2>&1 &
SERVER_PID=$!

URL=""
for _ in $(seq 200); do
  URL="$(sed -n 's/.*logsync-server listening on \(http[^ ]*\).*/\1/p' "$SCRATCH/server.out" | head -n1 || true)"
  [ -n "$URL" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "logsync-server exited; is port $PORT free? (try --port)" >&2; exit 1; }
  sleep 0.1
done
[ -n "$URL" ] || { echo "logsync-server did not report its address within 20 s" >&2; exit 1; }
URL="${URL%/}"

if [ "$CHECK" = 1 ]; then
  node --no-warnings --experimental-websocket scripts/check-app.mjs "$URL" "$APP"
  log "check passed"
  exit 0
fi

printf '\n  \033[1mOpen %s/ in two browser windows\033[0m and add todos in one: they appear in the other.\n' "$URL"
printf '  Rooms: %s/#team-42 opens another list. Ctrl-C stops the server.\n' "$URL"
printf '  The server folds each list with the app'"'"'s reducer: %s/v1/streams/todos%%2Fteam-42/state\n' "$URL"
if [ "$APP" = react ]; then
  printf '  As bob: %s/?user=bob#team-42 shows "Assigned to me", a view the server answers;\n' "$URL"
  printf '  %s/?user=bob&only=assigned#team-42 loads only that view, not the list.\n' "$URL"
fi
printf '\n'
wait "$SERVER_PID"
