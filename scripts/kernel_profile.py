#!/usr/bin/env python3
"""Summarises Nsight Compute's per-kernel durations (bench/profile.sh).

    kernel_profile.py NCU_OUTPUT... [STEP_JSON]

Reads every `gpu__time_duration.sum` row of the CSV report found in the given files
(ncu writes it to stdout or to its log file), groups the kernels into families by
name, and prints Markdown tables: GPU time per family and the costliest kernels. A
`wmx bench ... --json` result among the files gives the step's wall time, so the
table also says how much of the step the GPU spent in kernels at all.
"""
import csv
import io
import json
import sys
from collections import defaultdict

FAMILIES = [
    ("matmul", ("matmul", "gemm", "mma", "nvjet")),
    ("attention", ("attention", "flash", "fmha")),
    ("softmax", ("softmax",)),
    ("reduce", ("reduce", "sum_", "mean", "argmax", "max_dim", "norm")),
    ("fused element-wise", ("fused", "elemwise", "element_wise")),
    ("copy / layout", ("copy", "contiguous", "layout", "transpose", "permute", "slice", "cat")),
    ("gather / scatter", ("gather", "scatter", "select", "index", "embedding")),
    ("cast", ("cast",)),
    ("init / fill", ("random", "fill", "zeros", "ones", "full", "arange")),
]

UNITS = {"ns": 1e-9, "nsecond": 1e-9, "us": 1e-6, "usecond": 1e-6, "ms": 1e-3, "msecond": 1e-3, "s": 1.0, "second": 1.0}


def family(name: str) -> str:
    low = name.lower()
    for fam, keys in FAMILIES:
        if any(k in low for k in keys):
            return fam
    return "other"


def rows(path):
    text = open(path, errors="replace").read()
    start = text.find('"ID","')
    if start < 0:
        return []
    return [r for r in csv.DictReader(io.StringIO(text[start:])) if r.get("Metric Name") == "gpu__time_duration.sum"]


def step_seconds(path):
    """The median seconds of a `wmx bench ... --json` result (its last line)."""
    try:
        return float(json.loads(open(path).read().strip().splitlines()[-1])["median_s"])
    except (ValueError, IndexError, KeyError, OSError):
        return None


def main(paths):
    kernels = []
    step = None
    for path in paths:
        found = rows(path)
        if found:
            kernels += found
        elif step is None:
            step = step_seconds(path)
    if not kernels:
        sys.exit("no gpu__time_duration.sum rows in " + ", ".join(paths))
    timed = [(r["Kernel Name"], float(r["Metric Value"].replace(",", "")) * UNITS.get(r["Metric Unit"], 1e-9)) for r in kernels]
    print(tables(timed, step))


def tables(kernels, step=None, top=20):
    """Markdown: the kernels' GPU time by family and the costliest kernels, from
    (name, seconds) pairs, one per launch; `step` is the wall time they ran in."""
    per_family = defaultdict(lambda: [0, 0.0])
    per_kernel = defaultdict(lambda: [0, 0.0])
    for name, seconds in kernels:
        for entry in (per_family[family(name)], per_kernel[name]):
            entry[0] += 1
            entry[1] += seconds
    total = sum(s for _, s in per_family.values()) or 1e-12
    out = [f"{len(kernels)} kernels, {total * 1e3:.1f} ms of GPU time"]
    if step:
        out[0] += (f"; one repetition takes {step * 1e3:.1f} ms of wall time when not profiled "
                   f"(the GPU is busy {min(total / step, 1.0):.0%} of it)")
    out.append("\n| kernel family | launches | GPU ms | share |\n|---|---|---|---|")
    for fam, (n, s) in sorted(per_family.items(), key=lambda kv: -kv[1][1]):
        out.append(f"| {fam} | {n} | {s * 1e3:.2f} | {s / total:.1%} |")
    out.append("\n| kernel | launches | GPU ms | mean µs | share |\n|---|---|---|---|---|")
    for name, (n, s) in sorted(per_kernel.items(), key=lambda kv: -kv[1][1])[:top]:
        out.append(f"| `{name[:70]}` | {n} | {s * 1e3:.2f} | {s / n * 1e6:.1f} | {s / total:.1%} |")
    return "\n".join(out)


if __name__ == "__main__":
    main(sys.argv[1:])
