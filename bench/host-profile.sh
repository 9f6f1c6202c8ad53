#!/usr/bin/env bash
# Where a CUDA training step's *host* time goes, for when the step is host-bound
# (its time barely grows with the batch). Runs `wmx bench train` on the 0.6B shape
# with `--host-profile`, which samples every thread's stack in-process (pprof,
# 1 kHz of CPU time) over the timed steps; meanwhile prints each thread's CPU use
# over a few seconds (from /proc: a thread near 100 % is the stage the step waits
# on). Then summarises the stacks per thread (scripts/host_profile.py). There is no
# perf, gdb or nsys on the GPU machine; this needs a binary built with the
# `profile` feature and its symbols:
#
#   CUDARC_CUDA_VERSION=13000 cargo rustc --release --features cuda,profile --bin wmx -- -C strip=none
#
#   bench/host-profile.sh [path/to/wmx]   # from the repository root, on the GPU machine
#
# Environment: EXP (experiments/qwen3-0.6b.toml), BATCH (8), SEQ (512), REPEATS
# (timed steps, 40), WARMUP_S (seconds before measuring thread CPU, 40),
# CPU_WINDOW_S (5), TOP (functions listed per thread, 30).
set -uo pipefail
cd "$(dirname "$0")/.."
WMX=${1:-${WMX:-./wmx}}
EXP=${EXP:-experiments/qwen3-0.6b.toml}
# shellcheck source=bench/kernel-cache.sh
. bench/kernel-cache.sh
# shellcheck source=bench/qwen3-shape.sh
. bench/qwen3-shape.sh
DIR=${OUT:-bench/out}
mkdir -p "$DIR"
"$WMX" bench train "$EXP" --set model.init=random --set "model.checkpoint=$QWEN3_DIR" --backend cuda --batch "${BATCH:-8}" --seq "${SEQ:-512}" \
    --warmup 3 --repeats "${REPEATS:-40}" --host-profile "$DIR/host.folded" --json \
    > "$DIR/host-train.json" 2> "$DIR/host-profile.err" &
pid=$!
sleep "${WARMUP_S:-40}"
if kill -0 "$pid" 2>/dev/null; then
    python3 scripts/host_profile.py --cpu "$pid" --window "${CPU_WINDOW_S:-5}" | tee "$DIR/host-cpu.md"
fi
wait "$pid"
echo "wmx exited $?: $(cat "$DIR/host-train.json")"
tail -3 "$DIR/host-profile.err"
save_kernel_cache "$DIR"
[ -s "$DIR/host.folded" ] && python3 scripts/host_profile.py "$DIR/host.folded" --top "${TOP:-30}" | tee "$DIR/host-profile.md"
