#!/usr/bin/env bash
# Where each CPU thread's time goes in a training step, to find work that only
# one thread does while the others wait (what bench/cpu.sh's ratio to PyTorch
# cannot show). Samples `wmx bench model` with perf (999 Hz of CPU time) and
# prints, for each thread, its share of the samples and its busiest functions.
# The training loop runs on a pool of its own (`backend::on_pool`): its thread 0
# (`wmx-train-0`) is the loop itself, so functions found only there are serial.
# Needs perf (Debian's linux-perf) and a binary with symbols; the release profile
# strips them, so build one apart, which rebuilds only wmx:
#
#   CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_OPT_LEVEL=3 CARGO_PROFILE_DEV_DEBUG=line-tables-only \
#     CARGO_TARGET_DIR=$HOME/.cache/wmx/target-prof cargo build
#
#   bench/cpu-threads.sh $HOME/.cache/wmx/target-prof/debug/wmx
#
# (debug assertions stay on in that build: compare its shares, not its times.)
# Environment: EXP (experiments/base.toml), BATCH (32), SEQ (64), REPEATS (5),
# TOP (functions per thread, 12).
set -euo pipefail
cd "$(dirname "$0")/.."
WMX=${1:?usage: bench/cpu-threads.sh path/to/wmx-with-symbols}
EXP=${EXP:-experiments/base.toml}
BATCH=${BATCH:-32}
SEQ=${SEQ:-64}
REPEATS=${REPEATS:-5}
TOP=${TOP:-12}
DATA=$(mktemp)
trap 'rm -f "$DATA"' EXIT
perf record -q -F 999 -o "$DATA" "$WMX" bench model "$EXP" -q --batch "$BATCH" --seq "$SEQ" --repeats "$REPEATS" 2>&1 | grep -E "fwd\+bwd" || true
perf script -i "$DATA" -F comm,tid,ip,sym 2>/dev/null | awk -v top="$TOP" '
    { comm = $1; tid = $2; $1 = ""; $2 = ""; $3 = ""; sym = substr($0, 4, 90)
      key = comm " " tid; n[key]++; total++; c[key SUBSEP sym]++ }
    END {
        for (k in n) order[k] = n[k]
        for (k in n) {
            printf "\n%s: %d samples, %.1f%% of all\n", k, n[k], 100 * n[k] / total
            m = 0
            for (ks in c) { split(ks, p, SUBSEP); if (p[1] == k) { rows[++m] = c[ks] "\t" p[2] } }
            # the busiest functions first
            for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) {
                split(rows[i], a, "\t"); split(rows[j], b, "\t")
                if (b[1] + 0 > a[1] + 0) { t = rows[i]; rows[i] = rows[j]; rows[j] = t }
            }
            for (i = 1; i <= m && i <= top; i++) { split(rows[i], a, "\t"); printf "  %6d  %s\n", a[1], a[2] }
            delete rows
        }
    }'
