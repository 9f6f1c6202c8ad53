#!/usr/bin/env bash
# The seed's setup on one GPU, end to end, in one call: `wmx run
# experiments/qwen3-0.6b.toml --backend cuda` at the Qwen3-0.6B shape (random
# weights: no model hub here; the real Qwen3 tokenizer), every stage of a shortened
# standard curriculum, checkpoints, evaluation and report, in bf16. Then each
# answer's latency by part (question → candidates → sandbox → selection → answer),
# and the text stream's training step alone at the same batch, to show what the WAT
# stream and fusion cost. Prints one table; files go to $OUT (the device tool's
# output folder) or bench/out/.
#
#   bench/worldmodel-gpu.sh [path/to/wmx]         # from the repository root
#
# Environment: SCALE (train.epoch_scale, 0.02), PARAMETERS (train.parameters,
# frozen-text as in the seed; "all" trains the text stream too), RUN_LIMIT
# (seconds for the run, 420), LATENCY_LIMIT (seconds for the latency sample, 90),
# BATCH (eval.batch_size, 16), EVAL_BATCHES (after the run, `wmx eval` at each of
# these batch sizes, e.g. "1 64", EVAL_LIMIT seconds each), SET (more --set
# overrides, space-separated), TEXT_STEP (0 skips the text stream's
# step), CURRICULUM ("standard", the
# experiment's own, or "short": the tests' two-family curriculum of
# tests/common/mod.rs, whose evaluation is a handful of questions). CUBECL_AUTOTUNE_LEVEL and the kernel
# cache come from bench/kernel-cache.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
WMX=$(realpath "${1:-${WMX:-./wmx}}")
SCALE=${SCALE:-0.02}
PARAMETERS=${PARAMETERS:-frozen-text}
export BATCH=${BATCH:-16}
# shellcheck source=bench/kernel-cache.sh
. bench/kernel-cache.sh
# shellcheck source=bench/qwen3-shape.sh
. bench/qwen3-shape.sh
DIR=${OUT:-bench/out}
mkdir -p "$DIR"
CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
echo "card: $CARD; wmx: $WMX; epoch_scale $SCALE; parameters $PARAMETERS"

# Peak GPU memory of wmx's processes (nvidia-smi every 100 ms) into $DIR/$1.mem (MiB).
sample_memory() {
    ( peak=0
      while sleep 0.1; do
          used=$(nvidia-smi --query-compute-apps=used_memory --format=csv,noheader,nounits 2>/dev/null | awk '{s += $1} END {print s + 0}')
          if [ "${used:-0}" -gt "$peak" ]; then peak=$used; echo "$peak" > "$DIR/$1.mem"; fi
      done ) &
    SAMPLER=$!
}

WORK=$(mktemp -d)
if [ "${CURRICULUM:-standard}" = short ]; then
    sed -n '/^pub const CURRICULUM/,/^"#;/p' tests/common/mod.rs | sed '1d;$d' > "$WORK/short.toml"
    SET="curriculum=$WORK/short.toml ${SET:-}"
fi
# shellcheck disable=SC2206
EXTRA=(${SET:-})
OVERRIDES=(--backend cuda --set "model.checkpoint=$QWEN3_DIR" --set model.init=random
    --set "eval.batch_size=$BATCH"
    --set "train.epoch_scale=$SCALE" --set "train.parameters=$PARAMETERS")
for s in "${EXTRA[@]}"; do OVERRIDES+=(--set "$s"); done

echo "== wmx run experiments/qwen3-0.6b.toml ${OVERRIDES[*]}"
sample_memory run
start=$SECONDS
(cd "$WORK" && timeout -k 15 "${RUN_LIMIT:-420}" "$WMX" run "$REPO/experiments/qwen3-0.6b.toml" "${OVERRIDES[@]}" > "$DIR/run.log" 2>&1)
RC=$?
kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null
echo "   exit $RC after $((SECONDS - start)) s"
grep -v "panicked at\|backtrace\|^note:" "$DIR/run.log" | grep "done\|accuracy\|error\|failed" | tail -12
RUN=$(ls -d "$WORK"/runs/qwen3-0.6b/*/ 2>/dev/null | head -1)
if [ -n "$RUN" ]; then
    cp "$RUN/meta.json" "$RUN/metrics.csv" "$RUN/log.txt" "$DIR/" 2>/dev/null
    cp "$RUN/eval/summary.json" "$DIR/summary.json" 2>/dev/null
    ls "$RUN/report/index.html" >/dev/null 2>&1 && echo "   report written"
    python3 -c 'import json,sys; m = json.load(open(sys.argv[1])); print("   status:", m["status"], m.get("reason") or "")' "$RUN/meta.json"
fi

# Answer latency by part, over a fixed set of questions (one process, model loaded once).
if [ -n "$RUN" ] && [ -n "$(ls "$RUN/checkpoints" 2>/dev/null)" ]; then
    echo "== latency: wmx infer --json (latest checkpoint)"
    sample_memory infer
    printf '%s\n' "What is 4127 + 6350?" "What is 12 * 7?" "Divide 144 by 12." "Subtract 9 from 20." \
        "What is 305 minus 78?" "Multiply 16 by 25." "Add 3.5 and 4." "What is 9 * 13?" \
        "Count the 's' characters in: \"Database systems store and retrieve information\"" \
        "How many words are in: \"the quick brown fox jumps\"?" "What is 81 / 9?" "What is 1000 - 1?" \
        | (cd "$WORK" && timeout -k 5 "${LATENCY_LIMIT:-90}" "$WMX" infer "$RUN" --backend cuda --json > "$DIR/infer.jsonl" 2> "$DIR/infer.err")
    echo "   exit $?"
    kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null
fi

# Evaluation's throughput by batch size (EVAL_BATCHES, e.g. "1 64"; EVAL_LIMIT seconds each).
rm -f "$DIR/eval-batches.txt"
if [ -n "$RUN" ] && [ -n "${EVAL_BATCHES:-}" ]; then
    for b in $EVAL_BATCHES; do
        echo "== wmx eval --batch $b"
        start=$(date +%s.%N)
        (cd "$WORK" && timeout -k 5 "${EVAL_LIMIT:-90}" "$WMX" eval "$RUN" --backend cuda --batch "$b" --out "$WORK/eval-$b" > "$DIR/eval-$b.log" 2>&1)
        code=$?
        secs=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
        total=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total"])' "$WORK/eval-$b/summary.json" 2>/dev/null || echo 0)
        echo "$b $code $secs $total" >> "$DIR/eval-batches.txt"
        echo "   exit $code after $secs s"
    done
fi

# The text stream's training step alone, same shape and dtype, batch 8 × the run's lengths.
if [ "${TEXT_STEP:-1}" = 1 ]; then
    echo "== wmx bench train (text stream alone)"
    timeout 240 "$WMX" bench train experiments/qwen3-0.6b.toml --backend cuda --set model.init=random \
        --set "model.checkpoint=$QWEN3_DIR" --batch 8 --seq 128 --repeats 10 --json > "$DIR/text-train.json" 2> "$DIR/text-train.err"
    echo "   exit $?"
fi

save_kernel_cache "$DIR"
python3 - "$DIR" "$CARD" "$SCALE" "$PARAMETERS" <<'PY'
import csv, json, os, statistics, sys
d, card, scale, parameters = sys.argv[1:]
def load(name):
    try:
        return json.load(open(os.path.join(d, name)))
    except Exception:
        return None
def mem(name):
    try:
        return int(open(os.path.join(d, name + ".mem")).read()) / 1024
    except Exception:
        return None
rows = []
try:
    rows = list(csv.DictReader(open(os.path.join(d, "metrics.csv"))))
except Exception:
    pass
meta = load("meta.json") or {}
summary = load("summary.json") or {}
print(f"\n### The 0.6B WorldModel on {card} (epoch_scale {scale}, parameters {parameters}, bf16)\n")
print("| measure | value |\n|---|---|")
print(f"| run status | {meta.get('status', 'none')} {('— ' + meta['reason']) if meta.get('reason') else ''} |")
print(f"| optimizer steps | {len(rows)} |")
if rows:
    tps = [float(r["tokens_per_second"]) for r in rows]
    tail = tps[len(tps) // 2:]
    print(f"| training tokens/s, median of the second half (all steps) | {statistics.median(tail):,.0f} ({statistics.median(tps):,.0f}) |")
    stages = {}
    for r in rows:
        stages.setdefault(r["stage"], []).append(float(r["step_seconds"]))
    for name, secs in stages.items():
        print(f"| stage {name}: steps, time in steps | {len(secs)}, {sum(secs):.1f} s |")
m = mem("run")
print(f"| peak GPU memory, whole run | {m:.1f} GiB |" if m else "| peak GPU memory, whole run | — |")
if summary:
    print(f"| test accuracy (random weights, shortened) | {summary.get('accuracy', float('nan')):.3f} |")
import re
try:
    log = open(os.path.join(d, "run.log")).read()
except Exception:
    log = ""
m = re.search(r"evaluation on \w+: accuracy \S+ \((\d+)/(\d+)\) in (\S+) s, (\S+) questions/s", log)
if m:
    print(f"| the run's evaluation: {m.group(2)} questions, eval.batch_size {os.environ.get('BATCH', 16)} | {m.group(3)} s, {m.group(4)} questions/s |")
for line in open(os.path.join(d, "eval-batches.txt")) if os.path.exists(os.path.join(d, "eval-batches.txt")) else []:
    batch, code, secs, total = line.split()
    rate = f"{int(total) / float(secs):.2f} questions/s" if code == "0" else f"did not finish (exit {code})"
    print(f"| `wmx eval --batch {batch}`: {total} questions | {secs} s, {rate} |")
answers = []
try:
    answers = [json.loads(l) for l in open(os.path.join(d, "infer.jsonl")) if l.strip().startswith("{")]
except Exception:
    pass
if answers:
    t = [a["timings"] for a in answers]
    for part in ["prefill_ms", "candidates_ms", "sandbox_ms", "selection_ms", "answer_ms", "total_ms"]:
        v = [x[part] for x in t]
        print(f"| answer latency {part[:-3]}, median of {len(v)} (max) | {statistics.median(v):.1f} ms ({max(v):.1f}) |")
text = load("text-train.json")
if text:
    print(f"| text stream alone, bench train 8 × 128: tokens/s | {text.get('tokens_per_s', 0):,.0f} |")
PY
