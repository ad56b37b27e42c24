#!/usr/bin/env python3
"""make_asr_golden.py -- goldens for the transcribe API's ids -> text
(tests/unit/test_asr.c): FunASR's SentencepiecesTokenizer.decode (the
sentencepiece library's DecodeIds) of id sequences over the SenseVoice
.bpe.model: random ids from every range (text pieces, tags, <unk>, <s>,
</s>), runs typical of CTC output (tags then text), and FunASR's
rich_transcription_postprocess of the same text for reference.

    /work/gvenv/bin/python tests/golden/make_asr_golden.py

Writes tests/golden/asr/spm_decode.json (library versions recorded)."""
import json
import os
import random

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


if __name__ == "__main__":
    main()
