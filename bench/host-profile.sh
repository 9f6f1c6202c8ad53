#!/usr/bin/env bash
# Where a CUDA training step's *host* time goes, for when the step is host-bound
# (its time barely grows with the batch). Starts `wmx bench train` on the 0.6B
# shape with many repetitions, lets it warm up, prints each thread's CPU use over
# a few seconds (from /proc, without stopping anything: a thread near 100 % is the
# stage the step waits on), then, if SAMPLES > 0, samples every thread's stack
# SAMPLES times with (cuda-)gdb and prints the functions most often on the stack
# of each busy thread (scripts/host_profile.py). There is no perf or nsys on the
# GPU machine. The stacks are only a hint: once cuda-gdb has attached, CUDA
# launches run slower, so the samples over-count them. Stacks need a binary with
# symbols:
#
#   CUDARC_CUDA_VERSION=13000 cargo rustc --release --features cuda --bin wmx -- -C strip=none
#
#   bench/host-profile.sh [path/to/wmx]   # from the repository root, on the GPU machine
#
# Environment: EXP (experiments/qwen3-0.6b.toml), BATCH (8), SEQ (512), WARMUP_S
# (seconds before measuring, 40), CPU_WINDOW_S (5), SAMPLES (0).
set -uo pipefail
cd "$(dirname "$0")/.."
WMX=${1:-${WMX:-./wmx}}
EXP=${EXP:-experiments/qwen3-0.6b.toml}
# shellcheck source=bench/kernel-cache.sh
. bench/kernel-cache.sh
DIR=${OUT:-bench/out}
mkdir -p "$DIR"
GDB=$(command -v gdb || command -v cuda-gdb || echo /usr/local/cuda/bin/cuda-gdb)
"$WMX" bench train "$EXP" --set model.init=random --backend cuda --batch "${BATCH:-8}" --seq "${SEQ:-512}" \
    --warmup 3 --repeats 100000 --json > /dev/null 2> "$DIR/host-profile.err" &
pid=$!
sleep "${WARMUP_S:-40}"
# CPU time of each thread over CPU_WINDOW_S seconds (from /proc, without stopping
# anything): a thread near 100 % is the stage the step waits on.
python3 scripts/host_profile.py --cpu "$pid" --window "${CPU_WINDOW_S:-5}" | tee "$DIR/host-cpu.md"
: > "$DIR/host-stacks.txt"
for i in $(seq "${SAMPLES:-0}"); do
    kill -0 "$pid" 2>/dev/null || { echo "wmx exited early:"; tail -5 "$DIR/host-profile.err"; break; }
    echo "=== sample $i" >> "$DIR/host-stacks.txt"
    timeout 60 "$GDB" -p "$pid" -batch -nx -ex "set pagination off" -ex "thread apply all bt 60" \
        >> "$DIR/host-stacks.txt" 2>/dev/null
    sleep 0.3
done
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
save_kernel_cache "$DIR"
if [ "${SAMPLES:-0}" -gt 0 ]; then
    python3 scripts/host_profile.py "$DIR/host-stacks.txt" | tee "$DIR/host-profile.md"
fi
