#!/usr/bin/env python3
"""make_audio_golden.py -- goldens for worker/audio (tests/unit/test_audio.c).

For each clip: the kaldi log-mel fbank and the LFR+CMVN features that FunASR's
own WavFrontend computes (funasr.frontends.wav_frontend with funasr.utils.fbank,
taken from the funasr wheel; config.yaml frontend_conf + am.mvn of
examples/models/sensevoice, dither 0), cross-checked against kaldi-native-fbank
(the fbank must agree to 1e-4 or the script stops). Writes
tests/golden/audio/<clip>.json (shapes, versions, input sha256) and raw
little-endian float32 <clip>.fbank.f32 / <clip>.feats.f32. Also writes the
synthetic clip synth.wav (seeded tone + chirp + noise + silence, 16-bit).

kaldi-native-fbank is pinned to 1.20.0: its FFT is Ooura's in double, as the
C code's. Later releases (1.23.0 checked) moved to a float kissfft whose
rounding reaches 2.2e-4 in bins ~60 dB below a frame's peak (e.g. the synth
chirp), which is reference noise, not a difference in the method; the
LFR+CMVN features agree to 1e-4 with either. Without torchaudio, funasr's own
fbank (funasr.utils.fbank) calls kaldi-native-fbank, so the cross-check below
is the same computation and is kept only as a guard.

Run here, not in CI:  /work/gvenv/bin/python tests/golden/make_audio_golden.py \
    [--funasr-wheel /tmp/funasr_dl/funasr-1.4.16-py3-none-any.whl]
(pip download --no-deps funasr gives the wheel; torchaudio is not needed.)
"""
import argparse
import glob
import hashlib
import json
import os
import sys
import types
import wave
import zipfile

from importlib import metadata

import numpy as np
import torch
import kaldi_native_fbank as knf

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "golden", "audio")
MODEL = os.path.join(ROOT, "examples", "models", "sensevoice")

# name, wav (relative to the source root), samples used (None = all)
CLIPS = [
    ("ko", "examples/models/sensevoice/ko.wav", 48000),
    ("zh2s", "tests/golden/audio/zh2s.wav", None),
    ("synth", "tests/golden/audio/synth.wav", None),
]


def load_funasr(wheel):
    """Imports funasr.frontends.wav_frontend from the wheel without the rest
    of funasr (no torchaudio, no librosa)."""
    dst = os.path.join("/tmp", "funasr_min_" + hashlib.sha256(wheel.encode()).hexdigest()[:8])
    with zipfile.ZipFile(wheel) as z:
        for name in ["funasr/frontends/wav_frontend.py", "funasr/utils/fbank.py",
                     "funasr/register.py", "funasr/frontends/eend_ola_feature.py"]:
            z.extract(name, dst)
        version = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")][0]
        version = version.split("/")[0][len("funasr-"):-len(".dist-info")]
    for pkg in ["funasr", "funasr/utils", "funasr/frontends"]:
        open(os.path.join(dst, pkg, "__init__.py"), "a").close()
    sys.modules.setdefault("librosa", types.ModuleType("librosa"))
    sys.path.insert(0, dst)
    import funasr.frontends.wav_frontend as wf
    return wf, version


def read_wav(path):
    with wave.open(path, "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1 and w.getframerate() == 16000, path
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return data.astype(np.float32) / 32768.0


def write_wav(path, pcm_i16):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm_i16.astype("<i2").tobytes())


def make_synth(path):
    """1.5 s: 0.3 s 440 Hz tone, 0.2 s near-silence, 0.5 s chirp 300->6000 Hz
    plus noise, 0.2 s digital silence, 0.3 s white noise."""
    rng = np.random.default_rng(20261123)
    sr = 16000
    t = lambda s: np.arange(int(s * sr)) / sr
    tone = 0.5 * np.sin(2 * np.pi * 440 * t(0.3))
    quiet = 0.0005 * rng.standard_normal(int(0.2 * sr))
    tc = t(0.5)
    chirp = 0.3 * np.sin(2 * np.pi * (300 * tc + (6000 - 300) / (2 * 0.5) * tc * tc))
    chirp += 0.02 * rng.standard_normal(len(tc))
    zero = np.zeros(int(0.2 * sr))
    noise = 0.1 * rng.standard_normal(int(0.3 * sr))
    x = np.concatenate([tone, quiet, chirp, zero, noise])
    write_wav(path, np.clip(np.round(x * 32767), -32768, 32767))


def knf_fbank(pcm, conf):
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = conf["fs"]
    opts.frame_opts.dither = 0.0
    opts.frame_opts.window_type = conf["window"]
    opts.frame_opts.frame_shift_ms = float(conf["frame_shift"])
    opts.frame_opts.frame_length_ms = float(conf["frame_length"])
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = conf["n_mels"]
    opts.energy_floor = 0.0
    fb = knf.OnlineFbank(opts)
    fb.accept_waveform(conf["fs"], (pcm * 32768.0).tolist())
    fb.input_finished()
    return np.array([fb.get_frame(i) for i in range(fb.num_frames_ready)], dtype=np.float32)


def frontend_conf():
    conf, block = {}, False
    for line in open(os.path.join(MODEL, "config.yaml"), encoding="utf-8"):
        if line.strip() and not line[0].isspace():
            block = line.startswith("frontend_conf:")
            continue
        if block and ":" in line:
            k, v = (s.strip() for s in line.split(":", 1))
            conf[k] = v
    out = {"fs": int(conf["fs"]), "window": conf["window"], "n_mels": int(conf["n_mels"]),
           "frame_length": int(conf["frame_length"]), "frame_shift": int(conf["frame_shift"]),
           "lfr_m": int(conf["lfr_m"]), "lfr_n": int(conf["lfr_n"])}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--funasr-wheel", default=(sorted(glob.glob("/tmp/funasr_dl/funasr-*.whl")) or [None])[-1])
    args = ap.parse_args()
    if not args.funasr_wheel:
        sys.exit("need --funasr-wheel (pip download --no-deps funasr)")
    if metadata.version("kaldi-native-fbank") != "1.20.0":
        sys.exit("pip install kaldi-native-fbank==1.20.0 (see the docstring)")
    wf, funasr_version = load_funasr(args.funasr_wheel)
    conf = frontend_conf()
    frontend = wf.WavFrontend(cmvn_file=os.path.join(MODEL, "am.mvn"), dither=0.0, **conf)
    frontend.eval()

    os.makedirs(OUT, exist_ok=True)
    make_synth(os.path.join(OUT, "synth.wav"))
    zh = read_wav("/work/shared/models/sensevoice/examples/zh.wav")
    write_wav(os.path.join(OUT, "zh2s.wav"), np.round(zh[:32000] * 32768))

    for name, rel, limit in CLIPS:
        pcm = read_wav(os.path.join(ROOT, rel))
        if limit:
            pcm = pcm[:limit]
        x = torch.from_numpy(pcm.copy())[None, :]
        with torch.no_grad():
            fb, _ = frontend.forward_fbank(x, torch.tensor([len(pcm)]))
            fb = fb[0].numpy().astype(np.float32)
            feats, _ = frontend(x, torch.tensor([len(pcm)]))
            feats = feats[0].numpy().astype(np.float32)
        kn = knf_fbank(pcm, conf)
        assert kn.shape == fb.shape, (kn.shape, fb.shape)
        knf_diff = float(np.max(np.abs(kn - fb)))
        print(f"{name}: {len(pcm)} samples, fbank {fb.shape}, feats {feats.shape}, "
              f"|funasr - kaldi-native-fbank| max {knf_diff:.3g}")
        if knf_diff > 1e-4:
            sys.exit(f"{name}: funasr and kaldi-native-fbank disagree by {knf_diff}")
        fb.astype("<f4").tofile(os.path.join(OUT, name + ".fbank.f32"))
        feats.astype("<f4").tofile(os.path.join(OUT, name + ".feats.f32"))
        meta = {
            "clip": rel, "samples": len(pcm),
            "pcm_sha256": hashlib.sha256(pcm.astype("<f4").tobytes()).hexdigest(),
            "fbank": {"frames": fb.shape[0], "dim": fb.shape[1], "file": name + ".fbank.f32"},
            "feats": {"frames": feats.shape[0], "dim": feats.shape[1], "file": name + ".feats.f32"},
            "frontend_conf": conf, "dither": 0.0,
            "knf_fbank_max_abs_diff": knf_diff,
            "versions": {"funasr": funasr_version, "kaldi_native_fbank": metadata.version("kaldi-native-fbank"),
                         "torch": torch.__version__, "numpy": np.__version__},
        }
        with open(os.path.join(OUT, name + ".json"), "w") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
