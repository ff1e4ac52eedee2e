#!/usr/bin/env bash
# A complete SCIM benchmark run on this machine (bench/README.md):
#   a fresh database (SQLite in a temp dir, or with --postgres a scratch PostgreSQL
#   database), migrations, the demo account with SCIM on, gunicorn (2 workers x 4
#   threads), bench/scim_bench.py against it, then everything is stopped and removed.
#
#   bench/run.sh                      # SQLite
#   bench/run.sh --postgres           # PostgreSQL on postgresql+psycopg://postgres@127.0.0.1:5432
#   bench/run.sh --users 2000 --phases lookups1k,creates   # any scim_bench.py option
#   bench/run.sh [--postgres] --reference   # creates against bench/thin_app.py instead
#
# Environment: BENCH_PORT (default: a free port), BENCH_PG_URL (server URL without the
# database), BENCH_GUNICORN_ARGS (default "-w 2 --threads 4 --reuse-port"), BENCH_KEEP=1 keeps the temp
# dir (database, server log) and the PostgreSQL database afterwards.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/.venv/bin"
cd "$ROOT"

DB=sqlite
if [ "${1:-}" = "--postgres" ]; then
  DB=postgresql
  shift
fi
# --reference: serve bench/thin_app.py (the thinnest durable Flask + SQLAlchemy server)
# instead of the app, for the phases it answers (lookups at 1,000 users, creates, paging):
# the ceiling our figures are read against.
APP='app:create_app()'
if [ "${1:-}" = "--reference" ]; then
  APP='bench.thin_app:create_app()'
  shift
  set -- --phases lookups1k,creates,paging "$@"
fi

WORK="$(mktemp -d /tmp/scim-bench.XXXXXX)"
PORT="${BENCH_PORT:-$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
PG_URL="${BENCH_PG_URL:-postgresql+psycopg://postgres@127.0.0.1:5432}"
PG_NAME=""
SERVER_PID=""

pg() {  # run one statement on the server's maintenance database, outside a transaction
  "$BIN/python" - "$PG_URL" "$1" <<'EOF'
import sys

import psycopg

url = sys.argv[1].replace("postgresql+psycopg://", "postgresql://", 1)
with psycopg.connect(url + "/postgres", autocommit=True) as conn:
    conn.execute(sys.argv[2])
EOF
}

cleanup() {
  status=$?
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
  fi
  if [ -n "$PG_NAME" ] && [ "${BENCH_KEEP:-0}" = 1 ]; then
    echo "kept database $PG_NAME (drop it with: DROP DATABASE $PG_NAME)" >&2
  elif [ -n "$PG_NAME" ]; then
    pg "DROP DATABASE IF EXISTS $PG_NAME WITH (FORCE)" || echo "could not drop $PG_NAME" >&2
  fi
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    echo "kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export INSTANCE_PATH="$WORK/instance"
export BASE_URL="http://127.0.0.1:$PORT"
export SCHEDULER_ENABLED=0
if [ "$DB" = sqlite ]; then
  export DATABASE_URL="sqlite:///$WORK/bench.db"
else
  PG_NAME="scim_bench_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
  pg "CREATE DATABASE $PG_NAME"
  export DATABASE_URL="$PG_URL/$PG_NAME"
fi
echo "database: $DATABASE_URL" >&2

"$BIN/flask" --app app db upgrade >"$WORK/upgrade.log" 2>&1 || { cat "$WORK/upgrade.log" >&2; exit 1; }
SEED="$("$BIN/flask" --app app seed-demo --with-scim 2>"$WORK/seed.log")" || { cat "$WORK/seed.log" >&2; exit 1; }
SCIM_BASE_URL="$(printf '%s\n' "$SEED" | sed -n 's/^SCIM_BASE_URL=//p')"
SCIM_TOKEN="$(printf '%s\n' "$SEED" | sed -n 's/^SCIM_TOKEN=//p')"
if [ -z "$SCIM_BASE_URL" ] || [ -z "$SCIM_TOKEN" ]; then
  echo "seed-demo printed no SCIM_BASE_URL/SCIM_TOKEN:" >&2
  printf '%s\n' "$SEED" >&2
  exit 1
fi
export SCIM_BASE_URL SCIM_TOKEN

# No control socket: its default path is shared by every gunicorn of this user.
# BENCH_GUNICORN_ARGS replaces the worker model (e.g. "-w 4 --threads 1") for experiments.
# --reuse-port, as the README's production command: each worker has its own listening
# socket and the kernel spreads the clients' connections over them (bench/README.md).
# shellcheck disable=SC2086
"$BIN/gunicorn" ${BENCH_GUNICORN_ARGS:--w 2 --threads 4 --reuse-port} \
  -b "127.0.0.1:$PORT" --no-control-socket "$APP" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 100); do
  code="$("$BIN/python" - <<'EOF'
import os

import requests

try:
    r = requests.get(
        os.environ["SCIM_BASE_URL"] + "/ServiceProviderConfig",
        headers={"Authorization": "Bearer " + os.environ["SCIM_TOKEN"]},
        timeout=2,
    )
    print(r.status_code)
except requests.RequestException:
    print(0)
EOF
)"
  [ "$code" = 200 ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.2
done
[ "$code" = 200 ] || { echo "the server did not answer" >&2; cat "$WORK/server.log" >&2; exit 1; }

STAMP="$(date +%Y%m%d-%H%M%S)"
KIND="$DB"
[ "$APP" = 'app:create_app()' ] || KIND="$DB-reference"
OUT="$ROOT/bench/results/scim-$KIND-$STAMP.json"
echo "server pid $SERVER_PID on $BASE_URL; results in $OUT" >&2
# PostgreSQL: ANALYZE before the lookups, as autovacuum would (this machine's server runs
# with autovacuum=off, and without statistics the planner picks the wrong index).
EXTRA=()
[ "$DB" = postgresql ] && EXTRA+=(--analyze)
"$BIN/python" bench/scim_bench.py --server-pid "$SERVER_PID" --seed-direct "${EXTRA[@]}" \
  --label "$KIND, gunicorn ${BENCH_GUNICORN_ARGS:--w 2 --threads 4 --reuse-port}" --json-out "$OUT" "$@"
