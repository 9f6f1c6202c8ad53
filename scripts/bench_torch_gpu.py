"""PyTorch + transformers reference for `bench/gpu.sh`, and the table it prints.

    python3 scripts/bench_torch_gpu.py train experiments/qwen3-0.6b.toml --batch 8 --seq 512 --json
    python3 scripts/bench_torch_gpu.py generate experiments/qwen3-0.6b.toml --prompt 32 --new 48 --json
    python3 scripts/bench_torch_gpu.py report OUTDIR --card "NVIDIA H100 80GB HBM3" --command "..."

`train` and `generate` measure what `wmx bench train` / `wmx bench generate` measure,
on the same Qwen3 shape (the experiment's [model] table, random weights), dtype,
batch and lengths, and print the same JSON fields:

- train: forward, cross-entropy over every position (in the model's dtype, as wmx
  computes it), backward and an AdamW step; the device is synchronised before and
  after each timed step; sdpa attention. `--compile` is what a PyTorch user gets
  with one line: the model under `torch.compile` (default mode) and the fused
  AdamW; the warm-up steps, which compile, are timed apart (`compile_s`).
  `--profile FILE` then runs one more step under torch.profiler and writes its
  kernels' GPU time by family to FILE, in bench/profile.sh's tables.
- generate: greedy decoding of `new` tokens after a `prompt`-token question,
  batch 1, with the KV cache, no early stop.

`report` reads the JSON files bench/gpu.sh wrote (and the peak GPU memory it
sampled with nvidia-smi for each process) and prints one table with the
wmx ÷ PyTorch ratios; it writes gpu-latest.json and results.md beside them.
"""

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_torch_cpu import model_section  # noqa: E402

# Dense bf16 tensor-core peak (FLOP/s) by card, for MFU.
PEAK_BF16 = [("H100 PCIe", 756e12), ("H100", 989.4e12), ("H200", 989.4e12), ("A100", 312e12)]


def build(path, dtype_name):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    m = model_section(path, os.environ.get("QWEN3_DIR"))
    dtype = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[dtype_name or m.get("dtype", "f32")]
    config = Qwen3Config(
        vocab_size=m["vocab_size"],
        hidden_size=m["hidden_size"],
        intermediate_size=m["intermediate_size"],
        num_hidden_layers=m["num_hidden_layers"],
        num_attention_heads=m["num_attention_heads"],
        num_key_value_heads=m["num_key_value_heads"],
        head_dim=m["head_dim"],
        max_position_embeddings=m["max_position_embeddings"],
        rope_theta=m["rope_theta"],
        rms_norm_eps=m["rms_norm_eps"],
        tie_word_embeddings=m["tie_word_embeddings"],
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config).to(device="cuda", dtype=dtype)
    return model, config, dtype


def train(args):
    import torch
    import torch.nn.functional as F

    model, config, dtype = build(args.experiment, args.dtype)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=args.compile or None)
    parameters = sum(p.numel() for p in model.parameters())
    if args.compile:
        model = torch.compile(model)
    vocab = config.vocab_size

    def step(i):
        """One timed training step on batch `i`: its wall seconds."""
        g = torch.Generator(device="cuda").manual_seed(i)
        ids = torch.randint(0, vocab, (args.batch, args.seq), device="cuda", generator=g)
        targets = torch.randint(0, vocab, (args.batch, args.seq), device="cuda", generator=g)
        torch.cuda.synchronize()
        t = time.perf_counter()
        logits = model(input_ids=ids).logits
        loss = F.cross_entropy(logits.view(-1, vocab), targets.view(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        return time.perf_counter() - t

    seconds, warmup = [], []
    for i in range(args.warmup + args.repeats):
        (seconds if i >= args.warmup else warmup).append(step(i))
    med = statistics.median(seconds)
    if args.profile:
        Path(args.profile).write_text(profile(lambda: step(args.warmup + args.repeats), med) + "\n")
    return {
        "what": "train",
        "backend": "torch.compile" if args.compile else "torch",
        "compile_s": sum(warmup) if args.compile else None,
        "dtype": str(dtype).replace("torch.", ""),
        "parameters": parameters,
        "batch": args.batch,
        "seq": args.seq,
        "seconds": seconds,
        "median_s": med,
        "tokens_per_s": args.batch * args.seq / med,
        "torch_max_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
    }


def profile(step, median_s):
    """One more step under torch.profiler: its kernels' GPU time by family and the
    costliest kernels, as scripts/kernel_profile.py tables Nsight Compute's."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    from kernel_profile import tables

    with profiler(activities=[ProfilerActivity.CUDA]) as prof:
        step()
    kernels = []
    for e in prof.key_averages():
        total_us = getattr(e, "self_device_time_total", None)
        if total_us is None:
            total_us = e.self_cuda_time_total
        if total_us > 0 and e.count > 0:
            kernels += [(e.key, total_us * 1e-6 / e.count)] * e.count
    return tables(kernels, median_s)


def generate(args):
    import torch

    model, config, dtype = build(args.experiment, args.dtype)
    model.eval()
    model.generation_config.eos_token_id = None
    prompt = torch.tensor([[(i * 7919 + 13) % config.vocab_size for i in range(args.prompt)]], device="cuda")
    seconds = []
    with torch.no_grad():
        for i in range(args.warmup + args.repeats):
            torch.cuda.synchronize()
            t = time.perf_counter()
            out = model.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=args.new,
                min_new_tokens=args.new,
                do_sample=False,
                pad_token_id=0,
            )
            torch.cuda.synchronize()
            assert out.shape[1] - args.prompt == args.new
            if i >= args.warmup:
                seconds.append(time.perf_counter() - t)
    return {
        "what": "generate",
        "backend": "torch",
        "dtype": str(dtype).replace("torch.", ""),
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch": 1,
        "seq": args.prompt + args.new,
        "seconds": seconds,
        "median_s": statistics.median(seconds),
        "tokens_per_s": None,
        "torch_max_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
    }


def report(args):
    out = Path(args.outdir)

    def load_one(path):
        try:
            lines = [l for l in path.read_text().splitlines() if l.startswith("{")]
            data = json.loads(lines[-1])
        except (OSError, IndexError, json.JSONDecodeError):
            return None
        mem = path.with_suffix(".mem")
        data["peak_mem_gib"] = int(mem.read_text().split()[0]) / 1024 if mem.exists() else None
        return data

    def load(tag):
        """`tag.json`, or the median round of `tag.1.json`, `tag.2.json`, … (ROUNDS in
        bench/gpu.sh), with every round's value in "rounds" and the largest peak memory."""
        rows = [r for r in (load_one(p) for p in [out / f"{tag}.json", *sorted(out.glob(f"{tag}.[0-9]*.json"))]) if r]
        if not rows:
            return None
        key = "tokens_per_s" if rows[0].get("tokens_per_s") else "median_s"
        rows.sort(key=lambda r: r[key])
        row = dict(rows[(len(rows) - 1) // 2])
        row["rounds"] = [r[key] for r in rows]
        mems = [r["peak_mem_gib"] for r in rows if r["peak_mem_gib"] is not None]
        row["peak_mem_gib"] = max(mems) if mems else None
        return row

    wt, tt, wg, tg = load("wmx-train"), load("torch-train"), load("wmx-gen"), load("torch-gen")
    wc = load("wmx-train-cubecl")
    tc = load("torch-compile-train")
    m = model_section(args.experiment, os.environ.get("QWEN3_DIR"))
    peak = next((p for name, p in PEAK_BF16 if name in args.card), None)
    attn = m["num_attention_heads"] * m["head_dim"]

    def mfu(row):
        if not row or not row.get("tokens_per_s") or not peak:
            return None
        flops_per_token = 6 * row["parameters"] + 12 * m["num_hidden_layers"] * row["seq"] * attn
        return row["tokens_per_s"] * flops_per_token / peak

    def ratio(a, b):
        return a / b if a is not None and b else None

    def f(v, spec):
        return "-" if v is None else format(v, spec)

    g = lambda row, key: row.get(key) if row else None  # noqa: E731
    def spread(label, w, t, spec):
        """`label`, and each side's rounds when there were several."""
        if not ((w and len(w["rounds"]) > 1) or (t and len(t["rounds"]) > 1)):
            return label
        each = lambda row: "/".join(format(v, spec) for v in row["rounds"]) if row else "-"  # noqa: E731
        return f"{label}; median of rounds, wmx {each(w)}, PyTorch {each(t)}"

    rows = [
        ("training tokens/s (fwd+bwd+AdamW)", g(wt, "tokens_per_s"), g(tt, "tokens_per_s"), ",.0f", spread("higher is better", wt, tt, ",.0f")),
        *(
            [("training tokens/s, cubecl's matmuls (WMX_CUBLAS=0)", g(wc, "tokens_per_s"), g(tt, "tokens_per_s"), ",.0f", "wmx's own kernels, for comparison")]
            if wc
            else []
        ),
        *(
            [
                ("training tokens/s against torch.compile", g(wt, "tokens_per_s"), g(tc, "tokens_per_s"), ",.0f",
                 spread(f"PyTorch column: compiled, fused AdamW; compiling took {g(tc, 'compile_s') or 0:.0f} s, excluded", wt, tc, ",.0f")),
                ("peak GPU memory, training, against torch.compile (GiB)", g(wt, "peak_mem_gib"), g(tc, "peak_mem_gib"), ".2f", "lower is better"),
            ]
            if tc
            else []
        ),
        ("MFU", mfu(wt), mfu(tt), ".1%", f"bf16 dense peak {peak / 1e12:.0f} TFLOP/s" if peak else "unknown card"),
        ("peak GPU memory, training (GiB)", g(wt, "peak_mem_gib"), g(tt, "peak_mem_gib"), ".2f", "nvidia-smi, per process"),
        (f"generation {args.prompt}+{args.new} tokens (s)", g(wg, "median_s"), g(tg, "median_s"), ".3f", spread("lower is better", wg, tg, ".3f")),
        ("peak GPU memory, generation (GiB)", g(wg, "peak_mem_gib"), g(tg, "peak_mem_gib"), ".2f", "nvidia-smi, per process"),
    ]
    shape = f"{m['num_hidden_layers']} layers × {m['hidden_size']}, vocab {m['vocab_size']}"
    title = f"{args.card}: Qwen3 {shape}, {wt['dtype'] if wt else '?'}, batch {wt['batch'] if wt else '?'} × {wt['seq'] if wt else '?'}"
    lines = [title, "", "| measurement | wmx | PyTorch | wmx ÷ PyTorch | note |", "|---|---|---|---|---|"]
    for name, w, t, spec, note in rows:
        lines.append(f"| {name} | {f(w, spec)} | {f(t, spec)} | {f(ratio(w, t), '.2f')} | {note} |")
    table = "\n".join(lines)
    print(table)
    date = datetime.date.today().isoformat()
    latest = {
        "date": date,
        "card": args.card,
        "command": args.command,
        "train_tok_s_wmx": g(wt, "tokens_per_s"),
        "train_tok_s_torch": g(tt, "tokens_per_s"),
        "gen_s_wmx": g(wg, "median_s"),
        "gen_s_torch": g(tg, "median_s"),
        "peak_mem_gib_wmx": g(wt, "peak_mem_gib"),
        "peak_mem_gib_torch": g(tt, "peak_mem_gib"),
        "mfu_wmx": mfu(wt),
        "mfu_torch": mfu(tt),
        "train_tok_s_torch_compile": g(tc, "tokens_per_s"),
        "peak_mem_gib_torch_compile": g(tc, "peak_mem_gib"),
        "compile_s_torch_compile": g(tc, "compile_s"),
        "mfu_torch_compile": mfu(tc),
        "train_tok_s_rounds_torch_compile": g(tc, "rounds"),
        "train_tok_s_rounds_wmx": g(wt, "rounds"),
        "train_tok_s_rounds_torch": g(tt, "rounds"),
        "gen_s_rounds_wmx": g(wg, "rounds"),
        "gen_s_rounds_torch": g(tg, "rounds"),
    }
    (out / "gpu-latest.json").write_text(json.dumps(latest, indent=2) + "\n")
    (out / "results.md").write_text(f"### {date} — {args.card}\n\nCommand: `{args.command}`\n\n{table}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    for mode in ("train", "generate"):
        p = sub.add_parser(mode)
        p.add_argument("experiment")
        p.add_argument("--dtype", choices=["f32", "bf16", "f16"], help="default: the experiment's model.dtype")
        p.add_argument("--warmup", type=int, default=3 if mode == "train" else 2)
        p.add_argument("--repeats", type=int, default=10 if mode == "train" else 5)
        p.add_argument("--json", action="store_true")
        if mode == "train":
            p.add_argument("--batch", type=int, default=8)
            p.add_argument("--seq", type=int, default=512)
            p.add_argument("--compile", action="store_true", help="torch.compile the model and fuse AdamW")
            p.add_argument("--profile", metavar="FILE", help="after the timed steps, one more under torch.profiler: "
                           "its kernels' GPU time by family into FILE (Markdown)")
        else:
            p.add_argument("--prompt", type=int, default=32)
            p.add_argument("--new", type=int, default=48)
    p = sub.add_parser("report")
    p.add_argument("outdir")
    p.add_argument("--experiment", default="experiments/qwen3-0.6b.toml")
    p.add_argument("--card", required=True)
    p.add_argument("--command", default="bench/gpu.sh")
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--new", type=int, default=48)
    args = parser.parse_args()
    if args.mode == "report":
        report(args)
        return
    result = train(args) if args.mode == "train" else generate(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
