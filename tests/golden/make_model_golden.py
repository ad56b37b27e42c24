#!/usr/bin/env python3
"""make_model_golden.py -- goldens for worker/models from Hugging Face transformers.

Makes tiny random-weight Qwen2 / Qwen3 / Qwen3-MoE models with the real
151936-token vocabulary using tests/tools/mkmodel (deterministic, so CI
rebuilds byte-identical files without torch), loads each with
AutoModelForCausalLM in float32 with eager attention and records, for a few
real prompts tokenized with the Qwen3 tokenizer: the sha256 of the weights,
the prompt ids, per-position top-64 logprobs and the logsumexp of the raw
logits, a 32-token greedy continuation (generate, do_sample=False) and the
logprob of each continuation token (full forward, no cache).

Run:  /work/gvenv/bin/python tests/golden/make_model_golden.py --mkmodel BUILD/tests/tools/mkmodel
Writes tests/golden/model/<name>.json. Never hand-edit the output.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import torch
import transformers
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOKDIR = os.path.join(ROOT, "examples", "models", "tokenizers", "qwen3")

TOPK = 64
NEW_TOKENS = 32

# name -> mkmodel flags (besides --out); kept tiny: hidden 64, 2-4 layers, GQA
MODELS = {
    "qwen2-f32": ["--arch", "qwen2", "--dtype", "f32", "--hidden", "64", "--layers", "2",
                  "--heads", "4", "--kv-heads", "2", "--head-dim", "16", "--intermediate", "128",
                  "--tie", "0", "--seed", "11", "--rope-theta", "1000000"],
    "qwen3-bf16": ["--arch", "qwen3", "--dtype", "bf16", "--hidden", "64", "--layers", "3",
                   "--heads", "4", "--kv-heads", "2", "--head-dim", "32", "--intermediate", "128",
                   "--tie", "1", "--seed", "12"],
    "qwen3-moe": ["--arch", "qwen3_moe", "--dtype", "bf16", "--hidden", "64", "--layers", "2",
                  "--heads", "4", "--kv-heads", "2", "--head-dim", "16", "--intermediate", "128",
                  "--experts", "8", "--top-k", "2", "--moe-intermediate", "32",
                  "--norm-topk", "1", "--tie", "0", "--seed", "13"],
    "qwen3-moe-sparse": ["--arch", "qwen3_moe", "--dtype", "bf16", "--hidden", "64",
                         "--layers", "4", "--heads", "4", "--kv-heads", "1", "--head-dim", "16",
                         "--intermediate", "96", "--experts", "8", "--top-k", "3",
                         "--moe-intermediate", "32", "--norm-topk", "0", "--sparse-step", "2",
                         "--mlp-only", "3", "--tie", "1", "--seed", "14"],
    "qwen3-yarn": ["--arch", "qwen3", "--dtype", "bf16", "--hidden", "64", "--layers", "2",
                   "--heads", "4", "--kv-heads", "2", "--head-dim", "32", "--intermediate", "128",
                   "--rope", "yarn:4:256", "--max-pos", "1024", "--rope-theta", "10000",
                   "--tie", "1", "--seed", "15"],
    "qwen2-linear-window": ["--arch", "qwen2", "--dtype", "bf16", "--hidden", "64",
                            "--layers", "3", "--heads", "4", "--kv-heads", "2", "--head-dim", "16",
                            "--intermediate", "128", "--rope", "linear:2", "--rope-theta", "10000",
                            "--sliding-window", "8", "--max-window-layers", "1", "--tie", "1",
                            "--seed", "16"],
}

PROMPTS = [
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\n"
    "print([fib(i) for i in range(10)])  # 数列 of Fibonacci numbers, naïve recursion",
    "The quick brown fox",
]


def run_model(name, flags, mkmodel, tok, outdir):
    with tempfile.TemporaryDirectory() as tmp:
        mdir = os.path.join(tmp, name)
        subprocess.run([mkmodel, "--out", mdir, "--tokenizer", TOKDIR] + flags, check=True)
        with open(os.path.join(mdir, "model.safetensors"), "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        model, info = AutoModelForCausalLM.from_pretrained(
            mdir, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
        bad = {k: v for k, v in info.items() if v and k != "mismatched_keys"} \
            if isinstance(info, dict) else {}
        if bad or info.get("mismatched_keys"):
            sys.exit(f"{name}: loading info {info}")
        model.eval()
        rope = getattr(model.model.rotary_emb, "rope_type", "?")
        out = {
            "name": name,
            "mkmodel_args": flags,
            "sha256": sha,
            "rope_type": rope,
            "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
            "topk": TOPK,
            "prompts": [],
        }
        for text in PROMPTS:
            ids = tok.encode(text, add_special_tokens=False).ids
            x = torch.tensor([ids])
            with torch.no_grad():
                logits = model(x).logits[0].double()
                lse = torch.logsumexp(logits, -1)
                lp = logits - lse[:, None]
                top = torch.topk(lp, TOPK, dim=-1)
                gen = model.generate(x, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                                     do_sample=False, eos_token_id=None, pad_token_id=0,
                                     top_k=None, top_p=None, temperature=None)
                cont = gen[0, len(ids):].tolist()
                if len(cont) != NEW_TOKENS:
                    sys.exit(f"{name}: continuation of {len(cont)} tokens")
                full = model(gen).logits[0].double()
                flp = full - torch.logsumexp(full, -1)[:, None]
                cont_lp = [flp[len(ids) - 1 + i, t].item() for i, t in enumerate(cont)]
                # greedy must be the argmax of the no-cache forward too (no near ties)
                am = full[len(ids) - 1:-1].argmax(-1).tolist()
                if am != cont:
                    sys.exit(f"{name}: generate and argmax disagree: near tie, change the seed")
                s = torch.sort(full[len(ids) - 1:-1], -1, descending=True).values
                gap = (s[:, 0] - s[:, 1]).min().item()
            out["prompts"].append({
                "text": text,
                "ids": ids,
                "top_ids": top.indices.tolist(),
                "top_logprobs": [[round(v, 7) for v in row] for row in top.values.tolist()],
                "logsumexp": [round(v, 7) for v in lse.tolist()],
                "greedy": cont,
                "greedy_logprobs": [round(v, 7) for v in cont_lp],
                "greedy_min_gap": round(gap, 6),
            })
            print(f"{name}: {len(ids)} prompt tokens, min top-2 gap {gap:.4f}", file=sys.stderr)
        with open(os.path.join(outdir, name + ".json"), "w") as f:
            json.dump(out, f, separators=(",", ":"))
            f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mkmodel", default=os.path.join(ROOT, "build-model", "tests", "tools",
                                                      "mkmodel"))
    ap.add_argument("--only", help="one model name")
    args = ap.parse_args()
    torch.manual_seed(0)
    tok = Tokenizer.from_file(os.path.join(TOKDIR, "tokenizer.json"))
    outdir = os.path.join(HERE, "model")
    os.makedirs(outdir, exist_ok=True)
    for name, flags in MODELS.items():
        if args.only and name != args.only:
            continue
        run_model(name, flags, args.mkmodel, tok, outdir)


if __name__ == "__main__":
    main()
