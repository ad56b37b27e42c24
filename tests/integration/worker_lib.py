# worker_lib.py -- helpers for llmux-worker integration tests: a tiny random
# Qwen3 model made by tests/tools/mkmodel with the real Qwen3 tokenizer, or a
# tiny random XLM-R encoder (bge-m3-shaped embedder with sparse and ColBERT
# heads, or a bge-reranker-shaped cross-encoder) with the real XLM-R
# tokenizer (made once per test module, removed at exit), and starting the
# real llmux-worker on it (it prints "listening on ADDR" once it serves).
import atexit
import os
import re
import shutil
import subprocess
import tempfile

import lib

WORKER = os.path.join(lib.BUILDDIR, "llmux-worker")
MKMODEL = os.path.join(lib.BUILDDIR, "tests", "tools", "mkmodel")
TOKENIZER_DIR = os.path.join(lib.SRCDIR, "examples", "models", "tokenizers", "qwen3")
XLMR_TOKENIZER_DIR = os.path.join(lib.SRCDIR, "examples", "models", "tokenizers", "xlmr")

_models = {}


def skip_reason():
    for p in (WORKER, MKMODEL):
        if not os.path.exists(p):
            return "%s is not built" % p
    return None


def tiny_model(arch="qwen3", **flags):
    """A model folder for <arch> (made once per process)."""
    key = (arch, tuple(sorted(flags.items())))
    if key in _models:
        return _models[key]
    d = tempfile.mkdtemp(prefix="llmux-wk-model-")
    atexit.register(shutil.rmtree, d, True)
    args = [MKMODEL, "--out", d, "--arch", arch, "--hidden", "64", "--layers", "2",
            "--heads", "4", "--kv-heads", "2", "--head-dim", "16", "--intermediate", "128",
            "--dtype", "bf16", "--max-pos", "4096", "--tokenizer", TOKENIZER_DIR]
    for k, v in flags.items():
        args += ["--" + k.replace("_", "-"), str(v)]
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    if p.returncode != 0:
        raise lib.TestFailure("mkmodel failed: %s" % p.stdout.decode(errors="replace"))
    _models[key] = d
    return d


def tiny_encoder(kind="embed", **flags):
    """A tiny random XLM-R folder: kind "embed" (XLMRobertaModel with sparse
    and ColBERT heads, CLS pooling, normalized, as bge-m3) or "rerank"
    (XLMRobertaForSequenceClassification, one label). Made once per process."""
    key = ("xlmr-" + kind, tuple(sorted(flags.items())))
    if key in _models:
        return _models[key]
    d = tempfile.mkdtemp(prefix="llmux-wk-enc-")
    atexit.register(shutil.rmtree, d, True)
    args = [MKMODEL, "--out", d, "--arch", "xlmr-" + kind, "--hidden", "32", "--layers", "2",
            "--heads", "4", "--intermediate", "64", "--dtype", "f32", "--max-pos", "514",
            "--tokenizer", XLMR_TOKENIZER_DIR]
    if kind == "embed":
        args += ["--sparse", "1", "--colbert", "32"]
    for k, v in flags.items():
        args += ["--" + k.replace("_", "-"), str(v)]
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    if p.returncode != 0:
        raise lib.TestFailure("mkmodel failed: %s" % p.stdout.decode(errors="replace"))
    _models[key] = d
    return d


def start_encoder(t, kind="embed", model_dir=None, name=None, listen="127.0.0.1:0", args=()):
    """llmux-worker on a tiny encoder (its /health is 200 once it listens:
    the warm-up forward ran before)."""
    model_dir = model_dir or tiny_encoder(kind)
    name = name or ("bge-tiny" if kind == "embed" else "reranker-tiny")
    argv = [WORKER, "--model", model_dir, "--listen", listen, "--served-name", name,
            "--device", "cpu"] + list(args)
    p = t.spawn(argv, "worker-" + name, capture_stdout=True)
    line = t.read_line(p, 60.0)
    m = re.match(r"listening on (\S+)", line or "")
    if not m:
        raise lib.TestFailure("llmux-worker did not start (%r, exit %s)\n%s"
                              % (line, p.poll(), "\n".join(t.diagnostics())))
    return Worker(t, p, m.group(1), model_dir, name)


class Worker:
    def __init__(self, t, proc, addr, model_dir, name):
        self.t = t
        self.proc = proc
        self.addr = addr
        self.model_dir = model_dir
        self.name = name
        self.url = "http://" + addr if not addr.startswith("unix:") else None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=15):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise lib.TestFailure("llmux-worker did not exit within %ss" % timeout)

    def load(self):
        r = lib.get(self, "/load")
        lib.eq(r.status, 200, "/load status")
        return r.json()

    def chat(self, content="hello", **extra):
        b = {"model": self.name, "messages": [{"role": "user", "content": content}]}
        b.update(extra)
        return lib.post(self, "/v1/chat/completions", b, timeout=60)

    def complete(self, prompt="hello", **extra):
        b = {"model": self.name, "prompt": prompt}
        b.update(extra)
        return lib.post(self, "/v1/completions", b, timeout=60)


def start_worker(t, model_dir=None, name="tiny", listen="127.0.0.1:0", args=(), wait_health=True):
    model_dir = model_dir or tiny_model()
    argv = [WORKER, "--model", model_dir, "--listen", listen, "--served-name", name,
            "--device", "cpu", "--kv-cache-memory", "64m", "--max-model-len", "1024"] + list(args)
    p = t.spawn(argv, "worker-" + name, capture_stdout=True)
    line = t.read_line(p, 60.0)
    m = re.match(r"listening on (\S+)", line or "")
    if not m:
        raise lib.TestFailure("llmux-worker did not start (%r, exit %s)\n%s"
                              % (line, p.poll(), "\n".join(t.diagnostics())))
    w = Worker(t, p, m.group(1), model_dir, name)
    if wait_health:
        # /health is 200 once a step ran: one tiny request makes it run
        lib.post(w, "/v1/completions", {"prompt": "hi", "max_tokens": 1}, timeout=60)
        lib.wait_for(lambda: lib.get(w, "/health").status == 200, 20, what="/health 200")
    return w


def run_worker(t, args, timeout=60):
    """Runs llmux-worker to completion; returns (rc, output)."""
    p = subprocess.run([WORKER] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, cwd=t.dir, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


# ---- speech (task transcribe) ---------------------------------------------------

SENSEVOICE_FRONTEND = os.path.join(lib.SRCDIR, "examples", "models", "sensevoice")


def tiny_sensevoice(**flags):
    """A tiny random SenseVoiceSmall folder (mkmodel --arch sensevoice: model.pt,
    config.yaml, the real am.mvn, .bpe.model and tokens.json). Made once."""
    key = ("sensevoice", tuple(sorted(flags.items())))
    if key in _models:
        return _models[key]
    d = tempfile.mkdtemp(prefix="llmux-wk-sv-")
    atexit.register(shutil.rmtree, d, True)
    args = [MKMODEL, "--out", d, "--arch", "sensevoice", "--hidden", "32", "--layers", "2",
            "--tp-layers", "1", "--heads", "4", "--intermediate", "64",
            "--frontend", SENSEVOICE_FRONTEND]
    for k, v in flags.items():
        args += ["--" + k.replace("_", "-"), str(v)]
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    if p.returncode != 0:
        raise lib.TestFailure("mkmodel failed: %s" % p.stdout.decode(errors="replace"))
    _models[key] = d
    return d


def start_asr(t, model_dir=None, name="sv-tiny", listen="127.0.0.1:0", args=()):
    """llmux-worker (task transcribe from config.yaml) on a tiny SenseVoice;
    /health is 200 once it listens (the warm-up forward ran before)."""
    model_dir = model_dir or tiny_sensevoice()
    argv = [WORKER, "--model", model_dir, "--listen", listen, "--served-name", name,
            "--device", "cpu"] + list(args)
    p = t.spawn(argv, "worker-" + name, capture_stdout=True)
    line = t.read_line(p, 60.0)
    m = re.match(r"listening on (\S+)", line or "")
    if not m:
        raise lib.TestFailure("llmux-worker did not start (%r, exit %s)\n%s"
                              % (line, p.poll(), "\n".join(t.diagnostics())))
    return Worker(t, p, m.group(1), model_dir, name)


def multipart(fields, files=(), boundary="llmuxBoundary7a1f"):
    """(body, content_type) of a multipart/form-data upload: <fields> a list
    of (name, value) pairs, <files> of (name, filename, bytes)."""
    out = []
    for k, v in fields:
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n"
                    % (boundary, k, v)).encode())
    for k, fn, data in files:
        out.append(("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                    "Content-Type: application/octet-stream\r\n\r\n" % (boundary, k, fn)).encode())
        out.append(data + b"\r\n")
    out.append(("--%s--\r\n" % boundary).encode())
    return b"".join(out), "multipart/form-data; boundary=" + boundary


def transcribe(target, audio, filename="a.wav", path="/v1/audio/transcriptions", timeout=60,
               **fields):
    """POST a transcription; <fields> become form fields (lists repeat)."""
    pairs = []
    for k, v in fields.items():
        for x in (v if isinstance(v, (list, tuple)) else [v]):
            pairs.append((k, x))
    files = [("file", filename, audio)] if audio is not None else []
    body, ct = multipart(pairs, files)
    return lib.post(target, path, body, headers={"Content-Type": ct}, timeout=timeout)


def wav_bytes(samples, rate=16000, channels=1, width=2):
    """A PCM WAV file of integer <samples> (interleaved when channels > 1)."""
    import io
    import struct
    import wave
    b = io.BytesIO()
    with wave.open(b, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        fmt = {1: "b", 2: "h", 4: "i"}[width]
        w.writeframes(struct.pack("<%d%s" % (len(samples), fmt), *samples))
    return b.getvalue()


def tone(seconds, rate=16000, freq=220.0, gap_every=0.0, amp=8000):
    """<seconds> of a modulated tone; with gap_every > 0, gap_every s of tone
    then 1 s of silence, repeated."""
    import math
    n = int(seconds * rate)
    out = []
    for i in range(n):
        t = i / rate
        if gap_every > 0 and (t % (gap_every + 1.0)) >= gap_every:
            out.append(0)
        else:
            out.append(int(amp * math.sin(2 * math.pi * freq * t) * (0.6 + 0.4 * math.sin(7 * t))))
    return out
