#!/usr/bin/env bash
# Same-call A/B of wmx training settings on the GPU machine: each variant (a list
# of environment assignments, "" for the defaults) trains the experiment's shape
# in turn, ROUNDS times, with each phase timed apart and the GPU memory its process
# holds sampled (nvidia-smi, every 100 ms; the peak); TORCH=1 adds PyTorch's
# reference to each round. Prints every run and then each variant's median.
#
#   bench/ab.sh "" "WMX_FUSED_NORM=0"      # from the repository root, wmx at ./wmx
#
# Environment: WMX (./wmx), EXP (experiments/qwen3-0.6b.toml), BATCH (8), SEQ (512),
# REPEATS (10), ROUNDS (2), TORCH (0), LIMIT (240 s per run). Compiled kernels are
# carried as bench/kernels.tar.xz (bench/kernel-cache.sh); the grown cache is left
# in $OUT (or bench/out).
set -uo pipefail
cd "$(dirname "$0")/.."
WMX=${WMX:-./wmx}
EXP=${EXP:-experiments/qwen3-0.6b.toml}
BATCH=${BATCH:-8}
SEQ=${SEQ:-512}
REPEATS=${REPEATS:-10}
ROUNDS=${ROUNDS:-2}
LIMIT=${LIMIT:-240}
# shellcheck source=bench/kernel-cache.sh
. bench/kernel-cache.sh
# shellcheck source=bench/qwen3-shape.sh
. bench/qwen3-shape.sh
# shellcheck source=bench/gpu-memory.sh
. bench/gpu-memory.sh
DIR=${OUT:-bench/out}
mkdir -p "$DIR"
[ $# -gt 0 ] || set -- ""
echo "card: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); batch $BATCH × $SEQ"
RESULTS=$DIR/ab.tsv
: > "$RESULTS"
for round in $(seq "$ROUNDS"); do
    for variant in "$@"; do
        echo 0 > "$DIR/ab.mem"
        sample_memory "$DIR/ab.mem"
        sampler=$SAMPLER
        # shellcheck disable=SC2086
        line=$(env $variant timeout "$LIMIT" "$WMX" bench train "$EXP" --set model.init=random --set "model.checkpoint=$QWEN3_DIR" --backend cuda \
            --batch "$BATCH" --seq "$SEQ" --repeats "$REPEATS" --phases --json 2> "$DIR/ab.err" | tail -1)
        kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
        row=$(python3 -c 'import json,sys
m = json.loads(sys.argv[1]); p = m.get("phases_s") or {}
print("%.0f\t%.1f\t%.1f\t%.1f\t%.2f" % (m["tokens_per_s"], 1e3 * p.get("forward", 0), 1e3 * p.get("backward", 0), 1e3 * p.get("optimizer", 0), int(sys.argv[2]) / 1024))' "$line" "$(cat "$DIR/ab.mem")" 2>/dev/null) \
            || { row="failed"; tail -3 "$DIR/ab.err"; }
        printf '%s\t%s\t%s\n' "${variant:-defaults}" "$round" "$row" | tee -a "$RESULTS"
    done
    if [ "${TORCH:-0}" = 1 ]; then
        tok=$(timeout "$LIMIT" python3 scripts/bench_torch_gpu.py train "$EXP" --batch "$BATCH" --seq "$SEQ" --repeats "$REPEATS" --json 2>/dev/null \
            | tail -1 | python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["tokens_per_s"])')
        printf 'pytorch\t%s\t%s\t-\t-\t-\t-\n' "$round" "${tok:-failed}" | tee -a "$RESULTS"
    fi
done
echo
echo "| variant | median tokens/s | forward ms | backward ms | optimizer ms | peak GiB | runs |"
echo "|---|---|---|---|---|---|---|"
python3 - "$RESULTS" <<'EOF'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, _, *values = line.rstrip("\n").split("\t")
    if values and values[0] not in ("failed", ""):
        runs.setdefault(name, []).append(values)
for name, rows in runs.items():
    med = lambda i: statistics.median(float(r[i]) for r in rows) if rows[0][i] != "-" else float("nan")
    peak = max(float(r[4]) for r in rows) if len(rows[0]) > 4 and rows[0][4] != "-" else float("nan")
    print(f"| {name} | {med(0):,.0f} | {med(1):.1f} | {med(2):.1f} | {med(3):.1f} | {peak:.2f} | {', '.join(r[0] for r in rows)} |")
EOF
save_kernel_cache "$DIR"
