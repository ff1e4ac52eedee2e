#!/usr/bin/env bash
# Creates against the reference in alternating rounds (this VM's figures swing by a third
# from one run to the next, so a single pair of runs says little; bench/README.md):
#
#   bench/ab.sh [--postgres] [--users N] [--rounds R] [VAR=value ...]
#
# Each round runs bench/run.sh --reference, then bench/run.sh (the app, with the VAR=value
# settings in its environment), both with --phases creates, and prints both rates and
# their ratio; the medians come last.
set -euo pipefail
cd "$(dirname "$0")/.."

DB=()
USERS=4000
ROUNDS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --postgres) DB=(--postgres); shift ;;
    --users) USERS="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    *) break ;;
  esac
done

rate() {  # the creates/s of one bench/run.sh
  "$@" --users "$USERS" --phases creates 2>&1 |
    sed -nE 's|^POST /Users x[0-9,]+, [0-9]+ clients: ([0-9.]+)/s.*|\1|p'
}

ratios=()
for round in $(seq "$ROUNDS"); do
  ref="$(rate bench/run.sh "${DB[@]}" --reference)"
  app="$(rate env "$@" bench/run.sh "${DB[@]}")"
  ratio="$(python3 -c "print(round($app / $ref, 3))")"
  ratios+=("$ratio")
  echo "round $round: reference $ref/s, app $app/s, ratio $ratio"
done
python3 -c "import statistics, sys; print('median ratio', statistics.median(map(float, sys.argv[1:])))" "${ratios[@]}"
