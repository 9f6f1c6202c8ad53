#!/usr/bin/env bash
# One CPU measurement in one sitting: `wmx bench model` (the text stream's forward +
# backward, and the whole WorldModel's) against PyTorch + transformers
# (scripts/bench_torch_cpu.py) on the same experiment's shape, at the benchmark's
# batch and at the batch one training shard of the experiment sees. wmx and
# PyTorch take turns ROUNDS times, since this VM's speed moves between runs; the
# table shows each side's median round. Writes bench/cpu-latest.json.
#
#   bench/cpu.sh [path/to/wmx]     # a release build: cargo build --release
#
# Environment: EXP (experiments/base.toml), BATCHES ("32 4": sequences per step),
# SEQ (64), REPEATS (5), ROUNDS (3), THREADS (PyTorch's, 2), PYTHON (one with torch
# and transformers; default $HOME/.cache/wmx/torch-venv/bin/python, as .ci/run makes).
set -euo pipefail
cd "$(dirname "$0")/.."
WMX=${1:-${WMX:-target/release/wmx}}
EXP=${EXP:-experiments/base.toml}
BATCHES=${BATCHES:-32 4}
SEQ=${SEQ:-64}
REPEATS=${REPEATS:-5}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
PYTHON=${PYTHON:-$HOME/.cache/wmx/torch-venv/bin/python}
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT

for round in $(seq "$ROUNDS"); do
    for batch in $BATCHES; do
        "$WMX" bench model "$EXP" -q --batch "$batch" --seq "$SEQ" --repeats "$REPEATS" \
            | sed -n -e 's/^text stream fwd+bwd ([^)]*) *\([0-9.]*\) ms .*/wmx_text '"$batch"' \1/p' \
                     -e 's/^WorldModel fwd+bwd ([^)]*) *\([0-9.]*\) ms .*/wmx_world '"$batch"' \1/p' >> "$LOG"
        "$PYTHON" scripts/bench_torch_cpu.py "$EXP" --batch "$batch" --seq "$SEQ" --repeats "$REPEATS" --threads "$THREADS" \
            | sed -n 's/.*: \([0-9.]*\) ms .*/torch_text '"$batch"' \1/p' >> "$LOG"
    done
    echo "round $round of $ROUNDS done" >&2
done

"$PYTHON" - "$LOG" "$WMX" "$EXP" "$SEQ" "$REPEATS" "$ROUNDS" <<'PY'
import json, platform, statistics, subprocess, sys, datetime
log, wmx, exp, seq, repeats, rounds = sys.argv[1:]
rows = {}
for line in open(log):
    kind, batch, ms = line.split()
    rows.setdefault((kind, int(batch)), []).append(float(ms))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
out = {"date": datetime.date.today().isoformat(), "cpu": cpu, "cores": __import__("os").cpu_count(),
       "command": f"bench/cpu.sh (EXP={exp} SEQ={seq} REPEATS={repeats} ROUNDS={rounds})", "batches": {}}
print(f"| batch × {seq} | wmx text fwd+bwd | PyTorch text fwd+bwd | wmx ÷ PyTorch throughput | wmx WorldModel fwd+bwd |")
print("|---|---|---|---|---|")
for batch in sorted({b for _, b in rows}, reverse=True):
    get = lambda k: rows.get((k, batch), [])
    text, torch, world = (statistics.median(get(k)) if get(k) else None for k in ("wmx_text", "torch_text", "wmx_world"))
    ratio = torch / text if text and torch else None
    fmt = lambda v: f"{v:.1f} ms" if v is not None else "—"
    print(f"| {batch} | {fmt(text)} | {fmt(torch)} | {ratio:.2f}× | {fmt(world)} |" if ratio else f"| {batch} | {fmt(text)} | {fmt(torch)} | — | {fmt(world)} |")
    out["batches"][str(batch)] = {"text_ms_wmx": text, "text_ms_torch": torch, "ratio": ratio, "world_ms_wmx": world,
                                  "text_ms_rounds_wmx": get("wmx_text"), "text_ms_rounds_torch": get("torch_text"),
                                  "world_ms_rounds_wmx": get("wmx_world")}
json.dump(out, open("bench/cpu-latest.json", "w"), indent=2)
print("wrote bench/cpu-latest.json")
PY
