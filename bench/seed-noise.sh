#!/usr/bin/env bash
# Is base.toml's accuracy on CUDA the CPU's? A seed starts both backends from the
# same weights (drawn on the host), so their runs differ by rounding alone. In one
# device call, for each seed of $SEEDS ("0 1 2 3" by default): the CUDA run, one
# after another, and beside them the CPU run of the same seed (two threads each).
# Prints each pair's accuracy and step 1's losses (the same initial model gives the
# same first loss, to rounding), and each run's last metrics row; logs and
# metrics.csv go to $OUT (or bench/out/). CPU=0 runs CUDA alone.
#
#   bench/seed-noise.sh [path/to/wmx]     # from the repository root, on the GPU machine
#
# Without a path, the binary is bench/out/bin/wmx.xz (built here with
# `--features cuda --release`, xz-compressed, carried with bench/kernels.tar.xz).
# A CUDA run whose start would leave under 120 s of a 10-minute call is skipped.
set -u
OUT=${OUT:-bench/out}
SEEDS=${SEEDS:-0 1 2 3}
mkdir -p "$OUT"
if [ $# -ge 1 ]; then wmx=$(realpath "$1"); else xz -dc bench/out/bin/wmx.xz > wmx && chmod +x wmx && wmx=$PWD/wmx; fi
. bench/kernel-cache.sh
repo=$PWD
# backend, seed: runs base.toml into $OUT/<backend>-s<seed>.log and -metrics.csv.
run() {
  local work; work=$(mktemp -d)
  (cd "$work" && RAYON_NUM_THREADS=2 timeout "$3" "$wmx" run "$repo/experiments/base.toml" --backend "$1" --set "seed=$2" -q > "$OUT/$1-s$2.log" 2>&1
   echo "exit $?" >> "$OUT/$1-s$2.log"
   cp runs/base/*/metrics.csv "$OUT/$1-s$2-metrics.csv" 2>/dev/null)
}
if [ "${CPU:-1}" = 1 ]; then
  for s in $SEEDS; do run cpu "$s" 560 & done
fi
for s in $SEEDS; do
  if [ $SECONDS -gt 470 ]; then echo "cuda seed $s: skipped (${SECONDS} s into the call)"; continue; fi
  start=$SECONDS
  run cuda "$s" $((590 - SECONDS))
  echo "cuda seed $s: $((SECONDS - start)) s"
done
wait
echo "| seed | backend | accuracy | step 1: text loss, WAT losses | last row | how it ended |"
echo "|---|---|---|---|---|---|"
for s in $SEEDS; do
  for b in cpu cuda; do
    log=$OUT/$b-s$s.log csv=$OUT/$b-s$s-metrics.csv
    [ -f "$log" ] || continue
    first=$( [ -f "$csv" ] && sed -n 2p "$csv" | cut -d, -f5-8)
    last=$( [ -f "$csv" ] && tail -1 "$csv" | cut -d, -f1-3,5)
    echo "| $s | $b | $(grep -o "accuracy [0-9.]*" "$log" | tail -1 | cut -d' ' -f2) | $first | $last | $(tail -1 "$log") |"
  done
done
save_kernel_cache "$OUT"
