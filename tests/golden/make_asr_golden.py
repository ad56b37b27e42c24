#!/usr/bin/env python3
"""make_asr_golden.py -- goldens for the transcribe API's ids -> text
(tests/unit/test_asr.c): FunASR's SentencepiecesTokenizer.decode (the
sentencepiece library's DecodeIds) of id sequences over the SenseVoice
.bpe.model: random ids from every range (text pieces, tags, <unk>, <s>,
</s>), runs typical of CTC output (tags then text), and FunASR's
With --mkmodel BUILD/tests/tools/mkmodel it also runs FunASR end to end
(WavFrontend from the folder's am.mvn + config.yaml, dither 0;
SenseVoiceSmall.inference with data_type "sound"; the real
SentencepiecesTokenizer) on examples/models/sensevoice/ko.wav with the tiny
random SenseVoice that tests/integration/worker_lib.py makes (same mkmodel
flags, deterministic bytes), per language / use_itn: FunASR's text (tags
inside) and greedy ids. test_worker_asr.py compares the worker's answer.

    /work/gvenv/bin/python tests/golden/make_asr_golden.py [--mkmodel BUILD/tests/tools/mkmodel]

Writes tests/golden/asr/spm_decode.json and transcribe_ko.json (library
versions recorded)."""
import argparse
import hashlib
import json
import os
import random
import subprocess
import tempfile
import wave

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODEL = os.path.join(ROOT, "examples", "models", "sensevoice", "chn_jpn_yue_eng_ko_spectok.bpe.model")


def main():
    sp = spm.SentencePieceProcessor()
    sp.Load(MODEL)
    n = sp.GetPieceSize()
    rng = random.Random(8)
    tags = [i for i in range(n) if sp.IdToPiece(i).startswith("<|")]
    seqs = []
    for k in range(60):
        length = rng.randint(0, 30)
        seqs.append([rng.randrange(n) for _ in range(length)])
    for k in range(40):
        head = [rng.choice(tags) for _ in range(4)]
        body = [rng.randrange(3, tags[0]) for _ in range(rng.randint(0, 25))]
        if k % 5 == 0:
            body.insert(rng.randint(0, len(body)), rng.choice([0, 1, 2]))
        seqs.append(head + body)
    # texts of real sentences, encoded then decoded
    for text in ["The tribal chieftain called for the boy.", "开放时间早上9点至下午5点。",
                 "うちの中学は弁当制で", "조금만 생각을 하면서 살면", "呢几个字都表达唔到"]:
        seqs.append(sp.EncodeAsIds(text))
    out = {"sentencepiece": spm.__version__, "model": os.path.basename(MODEL),
           "pieces": n, "cases": [{"ids": s, "text": sp.DecodeIds(s)} for s in seqs]}
    try:
        import funasr
        out["funasr"] = funasr.__version__
    except Exception:  # noqa: BLE001
        pass
    os.makedirs(os.path.join(HERE, "asr"), exist_ok=True)
    with open(os.path.join(HERE, "asr", "spm_decode.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print("%d cases" % len(seqs))


# the flags of worker_lib.tiny_sensevoice()
TINY = ["--arch", "sensevoice", "--hidden", "32", "--layers", "2", "--tp-layers", "1",
        "--heads", "4", "--intermediate", "64"]
CASES = [("auto", True), ("auto", False), ("ko", True), ("en", False), ("zh", True)]


def end_to_end(mkmodel):
    import numpy as np
    import torch
    import yaml
    import funasr
    from funasr.models.sense_voice.model import SenseVoiceSmall
    from funasr.frontends.wav_frontend import WavFrontend
    from funasr.tokenizer.sentencepiece_tokenizer import SentencepiecesTokenizer
    frontend_dir = os.path.join(ROOT, "examples", "models", "sensevoice")
    d = tempfile.mkdtemp(prefix="asr-golden-")
    subprocess.run([mkmodel, "--out", d] + TINY + ["--frontend", frontend_dir], check=True,
                   stdout=subprocess.DEVNULL)
    conf = yaml.safe_load(open(os.path.join(d, "config.yaml")))
    pt = os.path.join(d, "model.pt")
    sd = torch.load(pt, map_location="cpu", weights_only=True)
    model = SenseVoiceSmall(encoder=conf["encoder"], encoder_conf=conf["encoder_conf"],
                            input_size=sd["embed.weight"].shape[1],
                            vocab_size=sd["ctc.ctc_lo.weight"].shape[0], **conf["model_conf"])
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    model.eval()
    fc = dict(conf["frontend_conf"])
    fc.pop("cmvn_file", None)
    fe = WavFrontend(cmvn_file=os.path.join(d, "am.mvn"), dither=0.0, **fc)
    fe.eval()
    tok = SentencepiecesTokenizer(bpemodel=os.path.join(d, "chn_jpn_yue_eng_ko_spectok.bpe.model"))
    with wave.open(os.path.join(frontend_dir, "ko.wav")) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768
    got = []
    orig = tok.decode

    def decode(ids, **kw):
        got.append([int(i) for i in ids])
        return orig(ids, **kw)
    tok.decode = decode
    cases = []
    for language, itn in CASES:
        got.clear()
        with torch.no_grad():
            res, _ = model.inference([torch.from_numpy(pcm.copy())], key=["ko"], tokenizer=tok,
                                     frontend=fe, device="cpu", language=language, use_itn=itn,
                                     data_type="sound")
        cases.append({"language": language, "use_itn": itn, "text": res[0]["text"],
                      "ids": got[0]})
    h = hashlib.sha256(open(pt, "rb").read()).hexdigest()
    out = {"funasr": funasr.__version__, "torch": torch.__version__, "mkmodel": TINY,
           "model_pt_sha256": h, "clip": "examples/models/sensevoice/ko.wav", "cases": cases}
    with open(os.path.join(HERE, "asr", "transcribe_ko.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print("%d end-to-end cases (model.pt %s)" % (len(cases), h[:12]))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--mkmodel")
    a = ap.parse_args()
    main()
    if a.mkmodel:
        end_to_end(a.mkmodel)
