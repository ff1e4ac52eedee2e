#!/usr/bin/env bash
# The instructions one SCIM create costs in the app's process (valgrind's callgrind,
# through app.test_client(): no gunicorn, no client), for this tree and, given REV, for
# that revision beside it. Throughput here swings by a third between runs of the same
# code; an instruction count does not (two runs of one tree agree within 0.1 %), so a
# change of a few per cent in the app's own work can be seen (bench/README.md, seventh
# pass). It counts nothing outside the process: not gunicorn's sockets, not PostgreSQL's
# work, not the kernel's.
#
#   bench/instructions.sh [REV] [--postgres]
#
# Each tree runs bench/count_creates.py twice under callgrind, with 100 and with 500
# creates after the same warm-up, both at once (2 cores, about 2 minutes a tree); the count
# per create is the difference over 400.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
REV=""
DB=()
while [ $# -gt 0 ]; do
  case "$1" in
    --postgres) DB=(--postgres); shift ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) REV="$1"; shift ;;
  esac
done
command -v valgrind >/dev/null || { echo "valgrind is needed (Debian: apt-get install valgrind)" >&2; exit 1; }

WORK="$(mktemp -d /tmp/bench-instructions.XXXXXX)"
OLD=""
cleanup() {
  [ -n "$OLD" ] && { git -C "$ROOT" worktree remove --force "$OLD" >/dev/null 2>&1 || rm -rf "$OLD"; }
  rm -rf "$WORK"
}
trap cleanup EXIT

per_create() {  # the instructions per create of the tree in $1
  local tree="$1" n
  for n in 100 500; do
    (cd "$tree/bench" &&
      SCIM_LOG_FLUSH_SECONDS=100000 PYTHONHASHSEED=0 valgrind --tool=callgrind \
        --callgrind-out-file="$WORK/callgrind.$n" "$ROOT/.venv/bin/python" count_creates.py \
        "$n" "${DB[@]}" >"$WORK/log.$n" 2>&1) &
  done
  wait
  for n in 100 500; do
    grep -q "Collected" "$WORK/log.$n" || { tail -20 "$WORK/log.$n" >&2; exit 1; }
  done
  "$ROOT/.venv/bin/python" - "$WORK/log.100" "$WORK/log.500" <<'PY'
import re, sys

def collected(path):
    return int(re.search(r"Collected : ([\d,]+)", open(path).read()).group(1).replace(",", ""))

print(round((collected(sys.argv[2]) - collected(sys.argv[1])) / 400))
PY
}

if [ -n "$REV" ]; then
  OLD="$(mktemp -d /tmp/bench-rev.XXXXXX)"
  git worktree add --detach --force "$OLD" "$REV" >/dev/null 2>&1
  ln -s "$ROOT/.venv" "$OLD/.venv"
  [ -f "$OLD/bench/count_creates.py" ] || cp bench/count_creates.py "$OLD/bench/"
  old="$(per_create "$OLD")"
  echo "$REV: $old instructions per create"
fi
new="$(per_create "$ROOT")"
echo "this tree: $new instructions per create"
if [ -n "$REV" ]; then
  python3 -c "print(f'this/$REV: {$new / $old:.4f}')"
fi
