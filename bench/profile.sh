#!/usr/bin/env bash
# Where a CUDA training step's (or a generation's) time goes: runs `wmx bench train`
# (WHAT=generate: `wmx bench generate`) once to compile and tune every kernel (kept in
# the kernel cache, as bench/gpu.sh does), then one repetition under Nsight Compute,
# timing every kernel it launches, and prints a table of GPU time by kernel family
# next to the repetition's wall time (the gap is host time: launches, allocations,
# synchronisations).
#
#   bench/profile.sh [path/to/wmx]        # from the repository root, on the GPU machine
#
# Environment: WHAT (train or generate), EXP (experiments/qwen3-0.6b.toml), LAYERS (text layers kept, 4: the
# per-layer kernels repeat, so a few layers show their shares at a fraction of the
# profiling time), STEP_LAYERS (layer counts whose step time is measured without
# the profiler, "$LAYERS" by default: how the step grows with depth), PROFILE (1; 0
# skips ncu), NCU_ARGS (more ncu options; for WHAT=generate "--launch-count 3000" by
# default: a whole generation launches tens of thousands of kernels, which ncu did
# not get through in 8 minutes), BATCH (8), SEQ (512), TORCH (for WHAT=train, "compile" by
# default: the same step of PyTorch at the same layers, torch.compile'd, profiled by
# torch.profiler into the same tables, $DIR/profile-torch.md; "eager" for eager
# PyTorch, "" for none).
set -uo pipefail
cd "$(dirname "$0")/.."
WMX=${1:-${WMX:-./wmx}}
EXP=${EXP:-experiments/qwen3-0.6b.toml}
LAYERS=${LAYERS:-4}
BATCH=${BATCH:-8}
SEQ=${SEQ:-512}
# shellcheck source=bench/kernel-cache.sh
. bench/kernel-cache.sh
# shellcheck source=bench/qwen3-shape.sh
. bench/qwen3-shape.sh
DIR=${OUT:-bench/out}
mkdir -p "$DIR"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
WHAT=${WHAT:-train}
args() {
    ARGS=(bench "$WHAT" "$EXP" --set model.init=random --set "model.checkpoint=$(qwen3_dir_layers "$1")"
        --set "fusion.layers=[1, 2, 3]" --backend cuda)
    [ "$WHAT" = train ] && ARGS+=(--batch "$BATCH" --seq "$SEQ")
}
echo "card: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); ncu: $NCU"
# Times `layers` text layers without the profiler (median of 3 after a warm-up,
# which also compiles and tunes every kernel) into $DIR/profile-step-<layers>.json.
measure() {
    args "$1"
    "$WMX" "${ARGS[@]}" --warmup 1 --repeats 3 --json > "$DIR/profile-step-$1.json" 2> "$DIR/profile-step-$1.err"
}
echo "| text layers | $WHAT ms (median of 3) | tokens/s |"
echo "|---|---|---|"
for layers in ${STEP_LAYERS:-$LAYERS}; do
    measure "$layers"
    python3 - "$DIR/profile-step-$layers.json" "$layers" <<'PY' 2>/dev/null || { echo "| $layers | failed | |"; tail -3 "$DIR/profile-step-$layers.err"; }
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
print(f"| {sys.argv[2]} | {d['median_s'] * 1e3:.1f} | {d['tokens_per_s'] or 0:.0f} |")
PY
done
if [ "${PROFILE:-1}" = 1 ]; then
    [ -f "$DIR/profile-step-$LAYERS.json" ] || measure "$LAYERS"
    args "$LAYERS"
    echo "== one $WHAT repetition of $LAYERS layers under ncu"
    [ "$WHAT" = generate ] && NCU_ARGS=${NCU_ARGS:---launch-count 3000}
    # shellcheck disable=SC2086
    "$NCU" --clock-control none --metrics gpu__time_duration.sum --csv --print-units base ${NCU_ARGS:-} \
        --log-file "$DIR/profile-ncu.log" \
        "$WMX" "${ARGS[@]}" --warmup 0 --repeats 1 --json > /dev/null 2> "$DIR/profile-ncu.err"
    echo "   exit $?"
fi
save_kernel_cache "$DIR"
[ "${PROFILE:-1}" = 1 ] && python3 scripts/kernel_profile.py "$DIR/profile-ncu.log" "$DIR/profile-step-$LAYERS.json" | tee "$DIR/profile.md"
TORCH=${TORCH-compile}
if [ "$WHAT" = train ] && [ -n "$TORCH" ]; then
    echo "== PyTorch ($TORCH), $LAYERS layers, one step under torch.profiler"
    FLAGS=(); [ "$TORCH" = compile ] && FLAGS=(--compile)
    QWEN3_DIR=$(qwen3_dir_layers "$LAYERS") python3 scripts/bench_torch_gpu.py train "$EXP" --dtype bf16 \
        --batch "$BATCH" --seq "$SEQ" --warmup 3 --repeats 3 "${FLAGS[@]}" --profile "$DIR/profile-torch.md" --json \
        > "$DIR/profile-torch.json" 2> "$DIR/profile-torch.err" && cat "$DIR/profile-torch.md" \
        || { echo "   PyTorch failed:"; tail -5 "$DIR/profile-torch.err"; }
fi
