#!/usr/bin/env bash
# Is base.toml's accuracy on CUDA below the CPU's (0.961 at seed 2 in session 23), or
# is it the run-to-run spread that rounding alone gives? In one device call: CUDA at
# seeds 2, 3 and 4, one after another; beside them, the CPU backend at seed 2 with
# shards 4, 2 and 1 and at seeds 3 and 4 (two threads each). Prints each run's
# accuracy and last metrics row; logs and metrics.csv go to $OUT (or bench/out/).
#
#   bench/seed-noise.sh [path/to/wmx]     # from the repository root, on the GPU machine
#
# Without a path, the binary is bench/out/bin/wmx.xz (built here with
# `--features cuda --release`, xz-compressed, carried with bench/kernels.tar.xz).
set -u
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
if [ $# -ge 1 ]; then wmx=$(realpath "$1"); else xz -dc bench/out/bin/wmx.xz > wmx && chmod +x wmx && wmx=$PWD/wmx; fi
. bench/kernel-cache.sh
repo=$PWD
cpu_run() { # name, --set arguments...
  local name=$1; shift
  local work; work=$(mktemp -d)
  (cd "$work" && RAYON_NUM_THREADS=2 timeout 560 "$wmx" run "$repo/experiments/base.toml" --backend cpu "$@" -q > "$OUT/cpu-$name.log" 2>&1
   echo "cpu $name exit $?" >> "$OUT/cpu-$name.log"
   cp runs/base/*/metrics.csv "$OUT/cpu-$name-metrics.csv" 2>/dev/null)
}
cpu_run s2k4 --set seed=2 &
cpu_run s2k2 --set seed=2 --set train.shards=2 &
cpu_run s2k1 --set seed=2 --set train.shards=1 &
cpu_run s3k4 --set seed=3 &
cpu_run s4k4 --set seed=4 &
for s in 2 3 4; do
  work=$(mktemp -d); start=$SECONDS
  (cd "$work" && timeout 190 "$wmx" run "$repo/experiments/base.toml" --backend cuda --set seed=$s -q > "$OUT/gpu-s$s.log" 2>&1)
  echo "cuda seed $s exit $? after $((SECONDS-start)) s: $(grep -o "accuracy [0-9.]*" "$OUT/gpu-s$s.log" | tail -1)"
  cp "$work"/runs/base/*/metrics.csv "$OUT/gpu-s$s-metrics.csv" 2>/dev/null
done
wait
for f in "$OUT"/cpu-*.log; do echo "$(basename "$f" .log): $(grep -o "accuracy [0-9.]*" "$f" | tail -1) $(grep -h "exit" "$f" | tail -1)"; done
for f in "$OUT"/*-metrics.csv; do echo "$(basename "$f"): $(tail -1 "$f")"; done
