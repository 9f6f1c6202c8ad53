#!/usr/bin/env bash
# Data-parallel training (`train.devices`) against one process, in one device call:
# the tiny experiment of tests/common/mod.rs trained on CUDA in f32
#   - by one process training every shard (the reference);
#   - as rank 0 of a world of one, through NCCL (WMX_RANK=0 WMX_WORLD_SIZE=1): the
#     whole data-parallel path, whose sums of one rank must change nothing;
#   - by one process again, with the kernel cache the first run filled: how far
#     two runs of the same thing differ on this GPU;
#   - on 2 and 4 GPUs (`--devices N`) where the machine has them;
# each with the same shards, so every run takes the same gradient per step up to
# the order of additions. Prints one table: steps, the largest
# difference of any step's logged loss from the reference, test accuracy, training
# tokens/s and time. Logs go to $OUT (default bench/out/).
#
#   scripts/multi_gpu.sh path/to/wmx        # from the repository root
#
# SHARDS (4), SCALE (train.epoch_scale, 1), LIMIT (seconds per run, 240),
# MODEL (extra --set for a larger model, e.g. "model.hidden_size=512").
set -uo pipefail
cd "$(dirname "$0")/.."
WMX=$(realpath "${1:-./wmx}")
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
# shellcheck source=bench/kernel-cache.sh
. bench/kernel-cache.sh
# NCCL from PyTorch's wheels when the system has none.
if ! ldconfig -p 2>/dev/null | grep -q libnccl.so.2; then
    lib=$(python3 -c 'import site,glob; print(next(iter(sorted(glob.glob(site.getsitepackages()[0]+"/nvidia/nccl/lib/libnccl.so*"))), ""))' 2>/dev/null)
    [ -n "$lib" ] && export WMX_NCCL=$lib
fi
GPUS=$(nvidia-smi -L 2>/dev/null | grep -c "^GPU ")
WORK=$(mktemp -d)
# shellcheck source=scripts/tiny-experiment.sh
. scripts/tiny-experiment.sh
tiny_experiment "$WORK"
SHARDS=${SHARDS:-4}
sets=(--set "train.shards=$SHARDS" --set "train.epoch_scale=${SCALE:-1}" --set "train.batch_size=16")
for s in ${MODEL:-}; do sets+=(--set "$s"); done

run() { # name, environment ("K=V …" or ""), then extra arguments
    local name=$1 environment=$2; shift 2
    mkdir -p "$WORK/$name" && cp "$WORK/curriculum.toml" "$WORK/tiny.toml" "$WORK/$name/"
    local start=$SECONDS
    # shellcheck disable=SC2086
    (cd "$WORK/$name" && env $environment timeout -k 5 "${LIMIT:-240}" "$WMX" run tiny.toml --backend cuda \
        "${sets[@]}" "$@" > "$OUT/multi-$name.log" 2>&1)
    echo "$name exit $? after $((SECONDS - start)) s" >> "$OUT/multi-exits.txt"
}
: > "$OUT/multi-exits.txt"
run one ""
run nccl-1 "WMX_RANK=0 WMX_WORLD_SIZE=1 WMX_RENDEZVOUS=$WORK/rendezvous"
run one-again ""
names=(one nccl-1 one-again)
for n in 2 4; do
    if [ "$GPUS" -ge "$n" ] && [ $((SHARDS % n)) -eq 0 ]; then
        run "devices-$n" "" --devices "$n"
        names+=("devices-$n")
    fi
done
cat "$OUT/multi-exits.txt"
python3 - "$WORK" "$OUT" "${names[@]}" <<'EOF'
import csv, glob, json, re, sys
work, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
def load(name):
    runs = glob.glob(f"{work}/{name}/runs/tiny/*/")
    if not runs:
        return None
    run = runs[0]
    rows = list(csv.DictReader(open(run + "metrics.csv")))
    meta = json.load(open(run + "meta.json"))
    summary = json.load(open(run + "eval/summary.json")) if glob.glob(run + "eval/summary.json") else {}
    log = open(f"{out}/multi-{name}.log", errors="replace").read()
    return rows, meta, summary, log
ref = load(names[0])
print("| run | GPUs | status | steps | max Δ text loss vs one | max Δ WAT loss | test accuracy | tokens/s (median step) | training s |")
print("|---|---|---|---|---|---|---|---|---|")
for name in names:
    got = load(name)
    if got is None:
        print(f"| {name} | | no run | | | | | | |"); continue
    rows, meta, summary, log = got
    gpus = re.search(r"training on (\d+) GPUs", log)
    dt = dw = 0.0
    if ref:
        for a, b in zip(ref[0], rows):
            dt = max(dt, abs(float(a["text_loss"]) - float(b["text_loss"])))
            wa = [k for k in a if k.startswith("wat_loss")]
            dw = max([dw] + [abs(float(a[k]) - float(b[k])) for k in wa])
    rates = sorted(float(r["tokens_per_second"]) for r in rows)
    rate = rates[len(rates) // 2] if rates else 0
    secs = sum(float(r["step_seconds"]) for r in rows)
    acc = summary.get("accuracy")
    print(f"| {name} | {gpus.group(1) if gpus else 1} | {meta.get('status')} | {len(rows)} | {dt:.3g} | {dw:.3g} | "
          f"{'' if acc is None else f'{acc:.4f}'} | {rate:.0f} | {secs:.1f} |")
EOF
