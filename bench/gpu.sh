#!/usr/bin/env bash
# One whole GPU measurement: wmx (a binary built elsewhere with `--features cuda`)
# against PyTorch + transformers on the same Qwen3 shape, batch and lengths, then
# parity on the GPU. Prints one table; writes gpu-latest.json and results.md to
# $OUT (the device tool's output folder) or bench/out/.
#
#   bench/gpu.sh [path/to/wmx]            # from the repository root, on the GPU machine
#
# The 0.6B shape is Qwen3-0.6B's config.json with random weights (bench/qwen3-shape.sh).
# Environment: EXP (experiment, default experiments/qwen3-0.6b.toml), BATCH (8),
# SEQ (512), REPEATS (10), ROUNDS (3: wmx and PyTorch take turns this many times,
# and the table shows each side's median round, since either one's speed moves
# from run to run on a shared host), LIMIT (seconds any one step may take, 240), PARTS
# (which of "train generate parity base" to run, the first three by default;
# "train" times wmx, eager PyTorch and PyTorch under torch.compile, its compiling
# timed apart;
# "base" trains and evaluates experiments/base.toml on CUDA as shipped, within
# BASE_LIMIT seconds (480), then evaluates that run again at each batch size of
# BASE_EVAL_BATCHES (e.g. "16 128"; none by default); "cubecl" trains again with cubecl's own matmul kernels
# (WMX_CUBLAS=0) for comparison with cuBLAS's, wmx's default; "spread" prints how far
# transformers' own bf16 logits move between devices and attention kernels
# (scripts/bf16_spread.py); PARITY_DTYPES (f32 bf16) picks parity's dtypes, each run
# with cubecl's matmuls and with cuBLAS's (PARITY_CUBLAS, "0 1"; cubecl's matmuls
# for the fixtures' shapes may take minutes to tune on a cold kernel cache, so
# PARITY_CUBLAS=1 checks only wmx's default path); cubecl tunes and
# compiles every kernel shape on first use, which took most of a 10-minute call
# on an H100, so split the parts over calls where commands are time-limited).
# CUBECL_AUTOTUNE_LEVEL defaults to minimal here for the same reason. Compiled kernels
# and autotune results are carried between calls as bench/kernels.tar.xz
# (bench/kernel-cache.sh), so a later call can skip the compiling.
set -uo pipefail
cd "$(dirname "$0")/.."
WMX=${1:-${WMX:-./wmx}}
EXP=${EXP:-experiments/qwen3-0.6b.toml}
BATCH=${BATCH:-8}
SEQ=${SEQ:-512}
REPEATS=${REPEATS:-10}
LIMIT=${LIMIT:-240}
PARTS=${PARTS:-train generate parity}
ROUNDS=${ROUNDS:-3}
# shellcheck source=bench/kernel-cache.sh
. bench/kernel-cache.sh
# shellcheck source=bench/qwen3-shape.sh
. bench/qwen3-shape.sh
# shellcheck source=bench/gpu-memory.sh
. bench/gpu-memory.sh
has() { [[ " $PARTS " == *" $1 "* ]]; }
DIR=${OUT:-bench/out}
mkdir -p "$DIR"
CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $CARD; wmx: $WMX; experiment: $EXP; batch $BATCH × $SEQ"

# Runs "$@" with stdout to $DIR/<tag>.json, sampling the GPU memory its processes
# hold (nvidia-smi, every 100 ms) into $DIR/<tag>.mem (MiB, the peak).
sampled() {
    local tag=$1; shift
    echo "== $tag: $*"
    sample_memory "$DIR/$tag.mem"
    local sampler=$SAMPLER
    local start=$SECONDS
    timeout "$LIMIT" "$@" > "$DIR/$tag.json" 2> "$DIR/$tag.err"
    local rc=$?
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
    echo "   exit $rc after $((SECONDS - start)) s; $(tail -c 300 "$DIR/$tag.json")"
    [ $rc -eq 0 ] || tail -5 "$DIR/$tag.err"
}

RANDOM_SHAPE=(--set model.init=random --set "model.checkpoint=$QWEN3_DIR" --backend cuda)
if has train; then
    for round in $(seq "$ROUNDS"); do
        sampled "wmx-train.$round" "$WMX" bench train "$EXP" "${RANDOM_SHAPE[@]}" --batch "$BATCH" --seq "$SEQ" --repeats "$REPEATS" --json
        sampled "torch-train.$round" python3 scripts/bench_torch_gpu.py train "$EXP" --batch "$BATCH" --seq "$SEQ" --repeats "$REPEATS" --json
        sampled "torch-compile-train.$round" python3 scripts/bench_torch_gpu.py train "$EXP" --batch "$BATCH" --seq "$SEQ" --repeats "$REPEATS" --compile --json
    done
    if has cubecl; then
        WMX_CUBLAS=0 sampled wmx-train-cubecl "$WMX" bench train "$EXP" "${RANDOM_SHAPE[@]}" --batch "$BATCH" --seq "$SEQ" --repeats "$REPEATS" --json
    fi
fi
if has generate; then
    for round in $(seq "$ROUNDS"); do
        sampled "wmx-gen.$round" "$WMX" bench generate "$EXP" "${RANDOM_SHAPE[@]}" --json
        sampled "torch-gen.$round" python3 scripts/bench_torch_gpu.py generate "$EXP" --json
    done
fi
if has parity; then
    # cubecl's matmuls, then cuBLAS's (src/ops/cuda/cublas.rs).
    for cublas in ${PARITY_CUBLAS:-0 1}; do
        for dtype in ${PARITY_DTYPES:-f32 bf16}; do
            echo "== parity on cuda, $dtype, WMX_CUBLAS=$cublas"
            WMX_CUBLAS=$cublas timeout "$LIMIT" "$WMX" bench parity --backend cuda --dtype "$dtype" 2>&1 | grep -v "panicked\|backtrace\|CallError\|^note:" | tail -3 | tee "$DIR/parity-$dtype-cublas$cublas.txt"
        done
    done
fi
if has spread; then
    echo "== transformers' bf16 logits across devices and attention kernels"
    python3 scripts/bf16_spread.py 2>&1 | grep "^|" | tee "$DIR/bf16-spread.md"
fi
if has base; then
    echo "== experiments/base.toml on cuda"
    start=$SECONDS
    work=$(mktemp -d)
    repo=$PWD
    bin=$(realpath "$WMX")
    (cd "$work" && timeout "${BASE_LIMIT:-480}" "$bin" run "$repo/experiments/base.toml" --backend cuda > "$DIR/base-cuda.log" 2>&1)
    echo "   exit $? after $((SECONDS - start)) s"
    grep -v "panicked\|backtrace\|CallError\|^note:" "$DIR/base-cuda.log" | grep "done\|accuracy\|error" | tail -8
    cp "$work"/runs/base/*/eval/summary.json "$DIR/base-cuda-summary.json" 2>/dev/null
    cp "$work"/runs/base/*/metrics.csv "$DIR/base-cuda-metrics.csv" 2>/dev/null
    # Evaluation of the same run again at each of BASE_EVAL_BATCHES questions together.
    for b in ${BASE_EVAL_BATCHES:-}; do
        start=$SECONDS
        (cd "$work" && timeout "${BASE_LIMIT:-480}" "$bin" eval "$(ls -d runs/base/*/ | head -1)" --backend cuda --batch "$b" --out "$work/eval-$b" > "$DIR/base-eval-$b.log" 2>&1)
        rc=$?
        echo "   wmx eval --batch $b: exit $rc after $((SECONDS - start)) s, accuracy $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['accuracy'])" "$work/eval-$b/summary.json" 2>/dev/null)"
    done
fi
save_kernel_cache "$DIR"
echo "kernel cache: $(du -sh "$KERNELS" | cut -f1), $(find "$KERNELS" -type f | wc -l) files, $(du -h "$DIR/kernels.tar.xz" | cut -f1) compressed"
echo
python3 scripts/bench_torch_gpu.py report "$DIR" --experiment "$EXP" --card "$CARD" \
    --command "bench/gpu.sh (EXP=$EXP BATCH=$BATCH SEQ=$SEQ REPEATS=$REPEATS ROUNDS=$ROUNDS)"
