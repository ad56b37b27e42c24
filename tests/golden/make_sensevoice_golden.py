#!/usr/bin/env python3
"""make_sensevoice_golden.py -- goldens for the SenseVoiceSmall model (worker/models/sensevoice*.c).

Makes tiny random-weight SenseVoiceSmall folders with tests/tools/mkmodel
--arch sensevoice (deterministic, so CI rebuilds byte-identical files without
torch) and the real 25055-token vocabulary:
  tiny   f32 model.pt, output_size 64, 4 heads, linear_units 128, num_blocks 2,
         tp_blocks 1, kernel 11, sanm_shfit 0
  shift  bf16 model.safetensors, num_blocks 3, tp_blocks 2, kernel 5,
         sanm_shfit 1 (asymmetric FSMN padding)
loads each into FunASR's own SenseVoiceSmall class (funasr.models.sense_voice
.model, built from the folder's config.yaml; torch.load / safetensors then
load_state_dict(strict=True)), and runs SenseVoiceSmall.inference on fixed
pseudo-random features (data_type "fbank": the frontend is not part of this
golden) with a language and use_itn per case, in float32 on the CPU. It
records, per clip and per encoder frame (the 4 prompt frames included, as
FunASR's CTC output has them):
  argmax    argmax id of the CTC log-probs
  top_ids / top_vals   the 5 largest log-probs
  probe     log-probs at the fixed ids PROBE
  ids       FunASR's greedy token ids (unique_consecutive, blank dropped)
and, for the first case, the encoder output (after tp_norm). Batched cases
go through inference as one padded batch (FunASR's masks).

Features: clip (n, seed) is n rows of 560 values v = u * 4 - 2 with
u = (splitmix64(state) >> 40) * 2^-24, state = seed (exact in f32; the C test
makes the same values).

Run:  /work/gvenv/bin/python tests/golden/make_sensevoice_golden.py --mkmodel BUILD/tests/tools/mkmodel
Writes tests/golden/sensevoice/. Never hand-edit the output.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import funasr
from funasr.models.sense_voice.model import SenseVoiceSmall
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "sensevoice")
FRONTEND = "/work/shared/models/sensevoice"

MODELS = {
    "tiny": ["--arch", "sensevoice", "--hidden", "64", "--heads", "4", "--intermediate", "128",
             "--layers", "2", "--tp-layers", "1", "--kernel-size", "11", "--sanm-shift", "0",
             "--seed", "41"],
    "shift": ["--arch", "sensevoice", "--hidden", "64", "--heads", "4", "--intermediate", "96",
              "--layers", "3", "--tp-layers", "2", "--kernel-size", "5", "--sanm-shift", "1",
              "--dtype", "bf16", "--weights", "safetensors", "--seed", "42"],
}

# (language, use_itn, [(n_frames, seed), ...]); one clip = single, several = one padded batch
CASES = {
    "tiny": [
        ("auto", False, [(37, 1)]),
        ("zh", True, [(23, 2)]),
        ("en", False, [(9, 3)]),
        ("yue", True, [(16, 4)]),
        ("ja", False, [(3, 5)]),
        ("ko", True, [(1, 6)]),
        ("nospeech", False, [(11, 7)]),
        ("auto", True, [(180, 8)]),
        ("en", True, [(37, 9), (5, 10), (60, 11), (12, 12)]),
    ],
    "shift": [
        ("auto", False, [(29, 21)]),
        ("zh", True, [(14, 22), (33, 23), (2, 24)]),
    ],
}

PROBE = [0, 1, 2, 3, 100, 1000, 5000, 12345, 24884, 24885, 24992, 25001, 25004, 25009,
         25016, 25017, 25054]
TOPK = 5
MASK64 = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return state, z ^ (z >> 31)


def features(n, seed, dim=560):
    out = np.empty(n * dim, dtype=np.float32)
    st = seed
    for i in range(n * dim):
        st, z = splitmix64(st)
        out[i] = np.float32((z >> 40) * (1.0 / 16777216.0) * 4.0 - 2.0)
    return out.reshape(n, dim)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


class IdTokenizer:
    """Stands in for the SentencePiece tokenizer: decode keeps the ids."""
    def __init__(self):
        self.last = None

    def decode(self, ids):
        self.last = list(ids)
        return " ".join(str(i) for i in ids)


def load_model(folder):
    with open(os.path.join(folder, "config.yaml")) as f:
        conf = yaml.safe_load(f)
    pt = os.path.join(folder, "model.pt")
    if os.path.exists(pt):
        sd = torch.load(pt, map_location="cpu", weights_only=True)
        wfile = "model.pt"
    else:
        from safetensors.torch import load_file
        sd = load_file(os.path.join(folder, "model.safetensors"))
        wfile = "model.safetensors"
    vocab, input_size = sd["ctc.ctc_lo.weight"].shape[0], sd["embed.weight"].shape[1]
    model = SenseVoiceSmall(encoder=conf["encoder"], encoder_conf=conf["encoder_conf"],
                            input_size=input_size, vocab_size=vocab, **conf["model_conf"])
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    model.eval()
    return model, wfile


def run_case(model, language, use_itn, clips):
    feats = [torch.from_numpy(features(n, seed)) for n, seed in clips]
    T = max(n for n, _ in clips)
    batch = torch.zeros(len(clips), T, 560)
    for i, f in enumerate(feats):
        batch[i, : f.shape[0]] = f
    lens = torch.tensor([n for n, _ in clips], dtype=torch.int32)
    captured = {}
    orig = model.ctc.log_softmax

    def grab(hs):
        captured["enc"] = hs.detach().clone()
        out = orig(hs)
        captured["lp"] = out.detach().clone()
        return out

    model.ctc.log_softmax = grab
    results = []
    tok = IdTokenizer()
    ids_per_clip = []

    # inference decodes clip by clip; capture each decode's ids
    def decode(ids):
        ids_per_clip.append([int(i) for i in ids])
        return ""
    tok.decode = decode
    with torch.no_grad():
        model.inference(batch, data_lengths=lens, data_type="fbank", language=language,
                        use_itn=use_itn, tokenizer=tok, device="cpu", key=["k"] * len(clips))
    model.ctc.log_softmax = orig
    lp, enc = captured["lp"], captured["enc"]
    for i, (n, seed) in enumerate(clips):
        x = lp[i, : n + 4]
        top = torch.topk(x, TOPK, dim=-1)
        results.append({
            "n_frames": n, "seed": seed,
            "argmax": x.argmax(dim=-1).tolist(),
            "top_ids": top.indices.tolist(),
            "top_vals": [[float(v) for v in r] for r in top.values],
            "probe": [[float(v) for v in r] for r in x[:, PROBE]],
            "ids": ids_per_clip[i],
            "_enc": enc[i, : n + 4],
        })
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mkmodel", required=True)
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    for name, margs in MODELS.items():
        with tempfile.TemporaryDirectory() as tmp:
            folder = os.path.join(tmp, name)
            subprocess.run([args.mkmodel, "--out", folder] + margs, check=True)
            model, wfile = load_model(folder)
            cases = []
            for ci, (language, use_itn, clips) in enumerate(CASES[name]):
                res = run_case(model, language, use_itn, clips)
                for r in res:
                    enc = r.pop("_enc")
                    if ci == 0:
                        r["hidden"] = [[float(v) for v in row] for row in enc]
                cases.append({"language": language, "use_itn": use_itn, "clips": res})
            g = {
                "generator": "tests/golden/make_sensevoice_golden.py",
                "versions": {"funasr": funasr.__version__, "torch": torch.__version__,
                             "numpy": np.__version__, "python": sys.version.split()[0]},
                "mkmodel_args": margs,
                "weights_file": wfile,
                "sha256": sha256(os.path.join(folder, wfile)),
                "vocab_size": int(model.vocab_size),
                "probe": PROBE,
                "cases": cases,
            }
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(g, f, separators=(",", ":"))
            f.write("\n")
        print(name, "cases", len(cases), file=sys.stderr)


if __name__ == "__main__":
    main()
