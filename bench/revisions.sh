#!/usr/bin/env bash
# This tree against an earlier revision, on the same machine in the same run, in
# alternating rounds (bench/README.md: this VM's figures swing by a third between runs):
#
#   bench/revisions.sh REV [--postgres] [--users N] [--rounds R] [--phases P]
#
# REV is checked out in a temporary git worktree that uses this tree's .venv; each round
# runs bench/run.sh there and here with the same options, and prints creates/s, the
# lookups' p50 and the first page's p50 of both; the medians of new/old come last
# (creates: higher is better; the others: lower is better).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

REV="${1:?usage: bench/revisions.sh REV [--postgres] [--users N] [--rounds R] [--phases P]}"
shift
DB=()
USERS=4000
ROUNDS=3
PHASES=lookups1k,creates,paging
while [ $# -gt 0 ]; do
  case "$1" in
    --postgres) DB=(--postgres); shift ;;
    --users) USERS="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --phases) PHASES="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

OLD="$(mktemp -d /tmp/bench-rev.XXXXXX)"
trap 'git -C "$ROOT" worktree remove --force "$OLD" >/dev/null 2>&1 || rm -rf "$OLD"' EXIT
git worktree add --detach --force "$OLD" "$REV" >/dev/null 2>&1
ln -s "$ROOT/.venv" "$OLD/.venv"  # gunicorn and flask import the code of the tree they run in
mkdir -p "$OLD/bench/results" "$ROOT/bench/results"

figures() {  # the JSON results of one bench/run.sh in tree $1, as "creates userName externalId page"
  local out
  out="$(cd "$1" && bench/run.sh "${DB[@]}" --users "$USERS" --phases "$PHASES" 2>&1 >/dev/null |
    sed -n 's/.*results in \(.*\.json\)$/\1/p')"
  "$ROOT/.venv/bin/python" - "$out" <<'PY'
import json, sys

phases = json.load(open(sys.argv[1]))["phases"]
creates = phases.get("creates", {}).get("creates_per_s", "-")
lookups = phases.get("lookups1k", {})
page = phases.get("paging", {}).get("first_page", {}).get("p50_ms", "-")
print(creates, lookups.get("userName", {}).get("p50_ms", "-"),
      lookups.get("externalId", {}).get("p50_ms", "-"), page)
PY
}

ratios=()
for round in $(seq "$ROUNDS"); do
  read -r oc ou oe op <<<"$(figures "$OLD")"
  read -r nc nu ne np <<<"$(figures "$ROOT")"
  echo "round $round  $REV: creates ${oc}/s userName ${ou} ms externalId ${oe} ms page ${op} ms"
  echo "round $round  this: creates ${nc}/s userName ${nu} ms externalId ${ne} ms page ${np} ms"
  ratios+=("$nc/$oc $nu/$ou $ne/$oe $np/$op")
done
"$ROOT/.venv/bin/python" - "${ratios[@]}" <<'PY'
import statistics, sys

names = ["creates/s", "userName p50", "externalId p50", "page p50"]
rounds = [r.split() for r in sys.argv[1:]]
for i, name in enumerate(names):
    values = []
    for r in rounds:
        new, old = r[i].split("/")
        if new != "-" and old != "-":
            values.append(float(new) / float(old))
    if values:
        print(f"median this/{'old'}: {name} {statistics.median(values):.3f}  (rounds: "
              + ", ".join(f"{v:.3f}" for v in values) + ")")
PY
