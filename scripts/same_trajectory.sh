#!/usr/bin/env bash
# Trains one experiment with two wmx binaries at once, each from its own empty
# directory, and compares their metrics.csv loss columns row by row
# (scripts/compare_metrics.py): a change that should not touch training, such as
# a refactor, must give the same trajectory bit for bit.
#
#   scripts/same_trajectory.sh BEFORE_WMX AFTER_WMX [EXPERIMENT]   # default experiments/base.toml
#
# Both runs share the machine, so compare on one machine only. Writes each run's
# directory and log under $OUT (default bench/out/trajectory/).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
before="$(realpath "$1")"
after="$(realpath "$2")"
experiment="$(realpath "${3:-$root/experiments/base.toml}")"
out="${OUT:-$root/bench/out}/trajectory"
mkdir -p "$out/before" "$out/after"
started=$(date +%s)
(cd "$out/before" && "$before" run "$experiment" > log.txt 2>&1) &
(cd "$out/after" && "$after" run "$experiment" > log.txt 2>&1) &
wait
echo "both runs done in $(( $(date +%s) - started )) s"
for side in before after; do tail -n 1 "$out/$side/log.txt"; done
python3 "$root/scripts/compare_metrics.py" "$out"/before/runs/*/*/metrics.csv "$out"/after/runs/*/*/metrics.csv
