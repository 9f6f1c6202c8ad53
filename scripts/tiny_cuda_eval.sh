#!/usr/bin/env bash
# Where evaluation on CUDA spends its time, in one device call: the tiny experiment
# of tests/common/mod.rs trained on CUDA and evaluated (f32 with one shard, bf16
# with one and with four, one after another on the GPU), every decoding step
# logged (RUST_LOG trace of wmx::model::world and wmx::infer); then bf16 logits
# parity, the check that met burn-cubecl-fusion's panic. Prints one table; each
# run's log goes to $OUT (default bench/out/).
#
#   scripts/tiny_cuda_eval.sh path/to/wmx        # from the repository root
#
# LIMIT: seconds for each run (100).
set -uo pipefail
cd "$(dirname "$0")/.."
WMX=$(realpath "${1:-./wmx}")
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
# shellcheck source=bench/kernel-cache.sh
. bench/kernel-cache.sh
WORK=$(mktemp -d)
# shellcheck source=scripts/tiny-experiment.sh
. scripts/tiny-experiment.sh
tiny_experiment "$WORK"
rows=()
for config in f32:1 bf16:1 bf16:4; do
    dtype=${config%:*} shards=${config#*:} name=${config/:/-}
    mkdir -p "$WORK/$name" && cp "$WORK/curriculum.toml" "$WORK/tiny.toml" "$WORK/$name/"
    start=$SECONDS
    (cd "$WORK/$name" && RUST_LOG="warn,wmx=info,wmx::model::world=trace,wmx::infer=trace" \
        timeout -k 5 "${LIMIT:-100}" "$WMX" run tiny.toml --backend cuda --set "model.dtype=$dtype" \
        --set "train.shards=$shards" > "$OUT/tiny-$name.log" 2>&1)
    code=$?
    secs=$((SECONDS - start))
    status=$(python3 -c 'import json,glob,sys; print(json.load(open(glob.glob(sys.argv[1])[0]))["status"])' \
        "$WORK/$name/runs/tiny/*/meta.json" 2>/dev/null || echo none)
    evaluation=$(grep -o "evaluation on .*" "$OUT/tiny-$name.log" | tail -1)
    last=$(grep -v "^\s*$" "$OUT/tiny-$name.log" | tail -1 | cut -c1-90)
    rows+=("| $dtype | $shards | $code | $status | $secs s | ${evaluation:-none} | \`$last\` |")
done
start=$SECONDS
RUST_BACKTRACE=1 timeout 120 "$WMX" bench parity --backend cuda --dtype bf16 > "$OUT/parity-bf16.log" 2>&1
parity="exit $? after $((SECONDS - start)) s: $(grep -m1 "panicked at\|pass\|fail" "$OUT/parity-bf16.log" | cut -c1-120)"
echo "| dtype | shards | exit | status | time | evaluation | last line |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "bf16 parity: $parity"
