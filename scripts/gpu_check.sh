#!/usr/bin/env bash
# Checks a CUDA build of wmx on a GPU machine in one call, printing one table:
# wmx's kernels against burn's autodiff (f32, bf16), logits parity with
# transformers' fixtures (f32, bf16), and a small WorldModel trained end to end on
# CUDA — SIGTERM mid-run (interrupted, checkpoint kept), resumed to the end,
# evaluated and reported — then answered from its best checkpoint, a sweep pinned
# to GPUs, and the same model in bf16 with 4 shards trained and evaluated.
#
#   scripts/gpu_check.sh path/to/wmx        # from the repository root
#
# Writes each check's output under $OUT (default bench/out/gpu-check/).
set -uo pipefail
cd "$(dirname "$0")/.."
WMX=$(realpath "${1:-./wmx}")
OUT=${OUT:-bench/out}/gpu-check
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
# shellcheck source=bench/kernel-cache.sh
. bench/kernel-cache.sh
rows=()
check() { # name, command...
    local name=$1; shift
    local started=$SECONDS
    if timeout 240 "$@" > "$OUT/$name.txt" 2>&1; then status=pass; else status="FAIL ($?)"; fi
    rows+=("$(printf '| %-34s | %-9s | %4d s |' "$name" "$status" $((SECONDS - started)))")
}
check kernels-f32 "$WMX" bench kernels --backend cuda
check kernels-bf16 "$WMX" bench kernels --backend cuda --dtype bf16
check parity-f32 "$WMX" bench parity --backend cuda
check parity-bf16 "$WMX" bench parity --backend cuda --dtype bf16

# The tiny experiment of tests/common/mod.rs, on CUDA with one shard.
RUN=$(mktemp -d)
sed -n '/^pub const CURRICULUM/,/^"#;/p' tests/common/mod.rs | sed '1d;$d' > "$RUN/curriculum.toml"
sed -n '/let text = format!(/,/^"#$/p' tests/common/mod.rs | sed '1d;$d' \
    | sed -e 's/^ *r#"//' -e "s|{base:?}|\"$PWD/experiments/base.toml\"|" > "$RUN/tiny.toml"
printf 'backend = "cuda"\n' | cat - "$RUN/tiny.toml" > "$RUN/exp.toml"
cd "$RUN"
sigterm_then_resume() {
    "$WMX" run exp.toml --set train.shards=1 > first.txt 2>&1 &
    local pid=$!
    for _ in $(seq 1 600); do
        [ "$(cat runs/tiny/*/metrics.csv 2>/dev/null | wc -l)" -ge 8 ] && break
        sleep 0.2
    done
    kill -TERM $pid
    wait $pid; local code=$?
    grep -q '"interrupted"' runs/tiny/*/meta.json || { echo "not interrupted (exit $code)"; return 1; }
    [ "$code" = 130 ] || { echo "exit $code, not 130"; return 1; }
    "$WMX" run exp.toml --set train.shards=1 && grep -q '"complete"' runs/tiny/*/meta.json
}
export -f sigterm_then_resume
export WMX
check "cuda: SIGTERM, resume, evaluate" bash -c sigterm_then_resume
check "cuda: infer --checkpoint best" bash -c "'$WMX' infer runs/tiny/*[0-9a-f] --checkpoint best 'What is 2 + 3?'"
sweep_pins_gpus() {
    cp exp.toml sweep.toml
    printf '[sweep]\n"fusion.layers" = [[0], [1]]\n' >> sweep.toml
    "$WMX" sweep sweep.toml --jobs 2 --set train.shards=1 --set train.epoch_scale=0.3 | tee sweep.txt
    grep -q 'on GPU 0' sweep.txt
}
export -f sweep_pins_gpus
check "cuda: sweep --jobs 2 pins GPUs" bash -c sweep_pins_gpus
# base.toml's 4 shards (one after another on a GPU) and bf16, trained and
# evaluated.
bf16_shards() {
    mkdir -p bf16 && cd bf16 && cp ../curriculum.toml ../exp.toml . || return 1
    "$WMX" run exp.toml --set model.dtype=bf16 --set train.shards=4 --set train.epoch_scale=0.5 > run.txt 2>&1
    local code=$?
    tail -3 run.txt
    [ "$code" = 0 ] && grep -q '"complete"' runs/tiny/*/meta.json
}
export -f bf16_shards
check "cuda: bf16, 4 shards, evaluate" bash -c bf16_shards
cp -r runs "$OUT/runs"
cd - > /dev/null
echo "| check | result | time |"
echo "|---|---|---|"
printf '%s\n' "${rows[@]}"
save_kernel_cache "$OUT"
