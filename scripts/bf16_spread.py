"""How far transformers' own bf16 logits move between devices and attention kernels.

`wmx bench parity --dtype bf16` compares wmx's logits with the fixture's
`logits_bf16`: transformers in bf16 with eager attention, computed on a CPU
(scripts/qwen3_fixtures.py). This script computes the same logits with
transformers on every device present (CPU, and CUDA when there is one) and
with eager and sdpa attention, and prints each one's distance from the stored
bf16 and f32 references on the parity bound's scale (max |Δ| / max |reference|),
so a wmx result can be read against the spread of the reference itself.

    python3 scripts/bf16_spread.py            # from the repository root
"""

import os

import torch
from safetensors.torch import load_file
from transformers import Qwen3ForCausalLM

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "qwen3")


def scaled(got, want):
    return ((got - want).abs().max() / want.abs().max()).item()


def main():
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print("| fixture | device | attention | vs stored bf16 | vs f32 |")
    print("|---|---|---|---|---|")
    for name in ("tiny-tied", "tiny-untied"):
        fixture = os.path.join(ROOT, name)
        expected = load_file(os.path.join(fixture, "expected.safetensors"))
        for device in devices:
            for attention in ("eager", "sdpa"):
                model = Qwen3ForCausalLM.from_pretrained(
                    fixture, dtype=torch.bfloat16, attn_implementation=attention
                ).to(device).eval()
                with torch.no_grad():
                    logits = model(input_ids=expected["input_ids"].to(device)).logits.float().cpu()
                print(
                    f"| {name} | {device} | {attention} | {scaled(logits, expected['logits_bf16']):.2e} "
                    f"| {scaled(logits, expected['logits']):.2e} |"
                )
        print(f"| {name} | (stored bf16) | eager | 0 | {scaled(expected['logits_bf16'], expected['logits']):.2e} |")


if __name__ == "__main__":
    main()
