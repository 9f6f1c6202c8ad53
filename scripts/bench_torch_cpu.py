"""PyTorch reference for `wmx bench model`: forward + backward time per batch of a
transformers Qwen3 text stream with the shape an experiment declares, on this CPU.

    pip install torch transformers
    python3 scripts/bench_torch_cpu.py experiments/base.toml --batch 32 --seq 64

Prints one line per measurement; bench/RESULTS.md keeps the numbers beside wmx's.
"""

import argparse
import json
import statistics
import time
import tomllib
from pathlib import Path

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM


def model_section(path, checkpoint=None):
    """The [model] table, following `extends` like wmx does; with a checkpoint
    directory (`checkpoint`, or a pretrained/random experiment's own), the text
    stream's shapes come from its config.json, as in wmx."""
    data = tomllib.loads(Path(path).read_text())
    base = {}
    if "extends" in data:
        base = model_section(Path(path).parent / data["extends"])
    model = data.get("model", {})
    if "checkpoint" in model:
        model = dict(model, checkpoint=str(Path(path).parent / model["checkpoint"]))
    base.update(model)
    directory = checkpoint or (base.get("checkpoint") if base.get("init", "scratch") != "scratch" else None)
    config = Path(directory or "/nonexistent") / "config.json"
    if config.is_file():
        c = json.loads(config.read_text())
        for key in ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                    "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings"]:
            if key in c:
                base[key] = c[key]
        base["head_dim"] = c.get("head_dim", c["hidden_size"] // c["num_attention_heads"])
        base["rope_theta"] = c.get("rope_theta", (c.get("rope_parameters") or {}).get("rope_theta", 10000.0))
    return base


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", nargs="?", default="experiments/base.toml")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    m = model_section(args.experiment)
    config = Qwen3Config(
        vocab_size=m.get("vocab_size", 1024),
        hidden_size=m.get("hidden_size", 128),
        intermediate_size=m.get("intermediate_size", 384),
        num_hidden_layers=m.get("num_hidden_layers", 4),
        num_attention_heads=m.get("num_attention_heads", 4),
        num_key_value_heads=m.get("num_key_value_heads", 2),
        head_dim=m.get("head_dim", 32),
        max_position_embeddings=m.get("max_position_embeddings", 512),
        rope_theta=m.get("rope_theta", 1e6),
        tie_word_embeddings=m.get("tie_word_embeddings", True),
    )
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config).train()
    ids = torch.randint(0, config.vocab_size, (args.batch, args.seq))

    def step():
        model.zero_grad(set_to_none=True)
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()

    step()
    step()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    ms = statistics.median(times)
    tokens = args.batch * args.seq
    print(f"pytorch {torch.__version__} text stream fwd+bwd "
          f"({config.num_hidden_layers} layers x {config.hidden_size}): {ms:.1f} ms "
          f"({tokens / ms * 1e3:.0f} tokens/s; batch {args.batch} x {args.seq}, "
          f"{args.threads} threads, attention {model.config._attn_implementation}, median of {args.repeats})")


if __name__ == "__main__":
    main()
