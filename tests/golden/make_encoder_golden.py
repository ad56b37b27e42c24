#!/usr/bin/env python3
"""make_encoder_golden.py -- goldens for the XLM-RoBERTa encoder (worker/models/xlmr.c).

Makes tiny random-weight encoders with the real 250002-token XLM-R
vocabulary using tests/tools/mkmodel (deterministic, so CI rebuilds
byte-identical files without torch):
  embed       XLMRobertaModel as bge-m3: safetensors f32, sparse_linear.pt and
              colbert_linear.pt heads, modules.json (CLS pooling + Normalize)
  embed-mean  XLMRobertaModel, bf16 weights in pytorch_model.bin, mean pooling,
              no Normalize module, no heads
  rerank      XLMRobertaForSequenceClassification, one label (bge-reranker-v2-m3)
loads each with transformers in float32 (eager attention), tokenizes real
texts with the `tokenizers` library on examples/models/tokenizers/xlmr and
records the ids and:
  dense    pooled last hidden state (CLS or mean), L2-normalized when the
           model has the Normalize module; checked against sentence-transformers
  sparse   relu(sparse_linear(last_hidden)) per token, 0 for <s> </s> <pad>
           <unk> (FlagEmbedding's BGEM3 drops those ids)
  colbert  colbert_linear(last_hidden[:, 1:]) L2-normalized per token (first
           token's row absent: FlagEmbedding skips <s>)
  logits   reranker logits of (query, document) pair encodings
It also writes tiny torch.save files (tests/golden/encoder/*.pt) that the
torch_zip reader is tested on, with their expected contents.

Run:  /work/gvenv/bin/python tests/golden/make_encoder_golden.py --mkmodel BUILD/tests/tools/mkmodel
Writes tests/golden/encoder/. Never hand-edit the output.
"""
import argparse
import collections
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import torch
import transformers
import tokenizers
from tokenizers import Tokenizer
from transformers import XLMRobertaForSequenceClassification, XLMRobertaModel

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOKDIR = os.path.join(ROOT, "examples", "models", "tokenizers", "xlmr")
OUT = os.path.join(HERE, "encoder")

COMMON = ["--hidden", "48", "--layers", "2", "--heads", "4", "--intermediate", "96"]
MODELS = {
    "embed": ["--arch", "xlmr-embed", "--dtype", "f32", "--sparse", "1", "--colbert", "48",
              "--pooling", "cls", "--normalize", "1", "--seed", "31"] + COMMON,
    "embed-mean": ["--arch", "xlmr-embed", "--dtype", "bf16", "--weights", "bin",
                   "--pooling", "mean", "--normalize", "0", "--seed", "32"] + COMMON,
    "rerank": ["--arch", "xlmr-rerank", "--dtype", "f32", "--seed", "33"] + COMMON,
}

LONG = ("Retrieval-augmented generation combines a search step with a language model: the "
        "question is embedded, the nearest passages are fetched from an index, a reranker "
        "orders them by relevance and the best few are placed in the prompt. Dense vectors "
        "capture meaning, sparse lexical weights capture exact terms such as product codes "
        "(XK-2291-B) or names, and multi-vector ColBERT scores compare every query token with "
        "every document token. Die Kombination aller drei Signale ist oft robuster als jedes "
        "einzelne; 検索の精度は文書の長さや言語にも依存します。 En pratique, on normalise les "
        "vecteurs et on tronque les documents trop longs à 8192 jetons. Числа 3.14159 и 2.71828 "
        "встречаются часто, как и эмодзи 🙂 и URL https://example.org/a?b=c.")

TEXTS = [
    "Hi!",
    "What is BGE M3?",
    "Definition of BM25",
    "BGE M3 is an embedding model supporting dense retrieval, lexical matching and "
    "multi-vector interaction.",
    "BM25 is a bag-of-words retrieval function that ranks a set of documents based on the "
    "query terms appearing in each document.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "北京是中华人民共和国的首都，也是全国的政治和文化中心。",
    "¿Dónde está la biblioteca? Necesito devolver dos libros antes del viernes.",
    "ما هي عاصمة المغرب؟",
    LONG,
]

PAIRS = [
    ("what is panda?", "hi"),
    ("what is panda?", "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear "
                       "or simply panda, is a bear species endemic to China."),
    ("北京是哪个国家的首都？", "北京是中华人民共和国的首都。"),
    ("Wie hoch ist der Mount Everest?", "Le mont Everest culmine à 8 849 mètres d'altitude."),
    ("retrieval pipeline", LONG),
]

SPECIAL = {0, 1, 2, 3}      # <s> <pad> </s> <unk>


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def rnd(xs, nd=7):
    return [round(float(v), nd) for v in xs]


def run_embed(name, mdir, tok, out):
    model, info = XLMRobertaModel.from_pretrained(
        mdir, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    if any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")):
        sys.exit(f"{name}: loading info {info}")
    model.eval()
    mods = json.load(open(os.path.join(mdir, "modules.json")))
    pool = json.load(open(os.path.join(mdir, "1_Pooling", "config.json")))
    cls = pool["pooling_mode_cls_token"]
    normalize = any("Normalize" in m["type"] for m in mods)
    heads = {}
    for h in ("sparse_linear", "colbert_linear"):
        p = os.path.join(mdir, h + ".pt")
        if os.path.exists(p):
            sd = torch.load(p, map_location="cpu", weights_only=True)
            lin = torch.nn.Linear(sd["weight"].shape[1], sd["weight"].shape[0])
            lin.load_state_dict(sd)
            heads[h] = lin.float().eval()
            out["sha256_" + h] = sha256(p)
    from sentence_transformers import SentenceTransformer
    import sentence_transformers
    st = SentenceTransformer(mdir, device="cpu", model_kwargs={"attn_implementation": "eager",
                                                               "dtype": torch.float32})
    out["versions"]["sentence_transformers"] = sentence_transformers.__version__
    out["pooling"] = "cls" if cls else "mean"
    out["normalize"] = normalize
    out["inputs"] = []
    worst = 1.0
    for text in TEXTS:
        ids = tok.encode(text).ids
        x = torch.tensor([ids])
        with torch.no_grad():
            h = model(x).last_hidden_state[0]
            d = h[0] if cls else h.mean(0)
            if normalize:
                d = torch.nn.functional.normalize(d, dim=-1)
            ref = torch.tensor(st.encode([text], convert_to_numpy=True, batch_size=1)[0])
            if ref.shape != d.shape:
                sys.exit(f"{name}: sentence-transformers gives {ref.shape}")
            cos = torch.nn.functional.cosine_similarity(ref, d, dim=0).item()
            worst = min(worst, cos)
            rec = {"text": text, "ids": ids, "dense": rnd(d.tolist())}
            if "sparse_linear" in heads:
                w = torch.relu(heads["sparse_linear"](h))[:, 0]
                w = [0.0 if t in SPECIAL else v for t, v in zip(ids, w.tolist())]
                rec["sparse"] = rnd(w)
            if "colbert_linear" in heads:
                c = torch.nn.functional.normalize(heads["colbert_linear"](h[1:]), dim=-1)
                rec["colbert"] = [rnd(r, 6) for r in c.tolist()]
        out["inputs"].append(rec)
        print(f"{name}: {len(ids)} tokens", file=sys.stderr)
    out["st_min_cosine"] = worst
    if worst < 0.99999:
        sys.exit(f"{name}: sentence-transformers disagrees (cosine {worst})")


def run_rerank(name, mdir, tok, out):
    model, info = XLMRobertaForSequenceClassification.from_pretrained(
        mdir, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    if any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")):
        sys.exit(f"{name}: loading info {info}")
    model.eval()
    out["pairs"] = []
    for q, d in PAIRS:
        ids = tok.encode(q, d).ids
        with torch.no_grad():
            logit = model(torch.tensor([ids])).logits[0].tolist()
        out["pairs"].append({"query": q, "document": d, "ids": ids, "logits": rnd(logit)})
        print(f"{name}: pair of {len(ids)} tokens, logit {logit[0]:.4f}", file=sys.stderr)


def run_model(name, flags, mkmodel, tok):
    with tempfile.TemporaryDirectory() as tmp:
        mdir = os.path.join(tmp, name)
        subprocess.run([mkmodel, "--out", mdir, "--tokenizer", TOKDIR] + flags, check=True)
        wfile = "pytorch_model.bin" if "bin" in flags else "model.safetensors"
        out = {
            "name": name,
            "mkmodel_args": flags,
            "weights_file": wfile,
            "sha256": sha256(os.path.join(mdir, wfile)),
            "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                         "tokenizers": tokenizers.__version__},
        }
        if "xlmr-rerank" in flags:
            run_rerank(name, mdir, tok, out)
        else:
            run_embed(name, mdir, tok, out)
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(out, f, separators=(",", ":"), ensure_ascii=False)
            f.write("\n")


def torch_fixtures():
    """Small torch.save checkpoints and what the reader must find in them."""
    g = torch.Generator().manual_seed(5)
    files = {}
    lin = torch.nn.Linear(4, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(3, 4, generator=g))
        lin.bias.copy_(torch.randn(3, generator=g))
    files["torch_linear.pt"] = lin.state_dict()
    base = torch.randn(10, generator=g)
    sd = collections.OrderedDict()
    sd["a.bf16"] = torch.randn(2, 3, generator=g).to(torch.bfloat16)
    sd["b.f16"] = torch.randn(5, generator=g).to(torch.float16)
    sd["c.scalar"] = torch.tensor(2.5)
    sd["d.offset"] = base[4:]                   # storage offset 4, storage shared with e
    sd["e.shared"] = base.view(2, 5)
    files["torch_mixed.pt"] = sd
    files["torch_transposed.pt"] = collections.OrderedDict(t=torch.randn(3, 4, generator=g).t())
    files["torch_long.pt"] = collections.OrderedDict(i=torch.arange(6))
    expect = {}
    for fn, sd in files.items():
        torch.save(sd, os.path.join(OUT, fn))
        ent = {}
        for k, v in sd.items():
            ent[k] = {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape),
                      "values": rnd(v.float().flatten().tolist())}
        expect[fn] = ent
    with open(os.path.join(OUT, "torch_files.json"), "w") as f:
        json.dump({"versions": {"torch": torch.__version__}, "files": expect}, f,
                  separators=(",", ":"))
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mkmodel", default=os.path.join(ROOT, "build-enc", "tests", "tools",
                                                      "mkmodel"))
    ap.add_argument("--only", help="one model name")
    args = ap.parse_args()
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    tok = Tokenizer.from_file(os.path.join(TOKDIR, "tokenizer.json"))
    if not args.only:
        torch_fixtures()
    for name, flags in MODELS.items():
        if args.only and name != args.only:
            continue
        run_model(name, flags, args.mkmodel, tok)


if __name__ == "__main__":
    main()
