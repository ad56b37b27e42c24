# test_worker_asr.py -- the real llmux-worker with task transcribe on a tiny
# random SenseVoiceSmall (mkmodel --arch sensevoice; the real frontend files
# and SentencePiece model): /v1/audio/transcriptions in every response
# format, WAV and MP3 and other rates/channels, every 400 (the param named),
# long audio cut into segments with timestamps, concurrent requests batched
# = one by one, a client that leaves, the routes of other tasks, /load, and
# the gateway in front (upstream, and a worker it spawns from a path).
# Random weights give random text: shapes, fields and formats are checked.
import json
import os
import re
import socket
import threading

import lib
from lib import check, eq, expect_openai_error, model_block
import worker_lib
from worker_lib import start_asr, tone, transcribe, wav_bytes

EXAMPLES = os.path.join(lib.SRCDIR, "examples", "models", "sensevoice")
SHARED = os.path.join(lib.SRCDIR, "..", "shared", "models", "sensevoice", "examples")


def skip_reason():
    return worker_lib.skip_reason()


def _read(name):
    with open(os.path.join(EXAMPLES, name), "rb") as f:
        return f.read()


def test_info_routes(t):
    w = start_asr(t)
    eq(lib.get(w, "/health").status, 200, "health 200 once listening (warm-up ran)")
    j = lib.get(w, "/v1/models").json()
    eq([m["id"] for m in j["data"]], ["sv-tiny"], "served name")
    ld = w.load()
    eq(ld["task"], "transcribe", "/load task")
    for k in ("running", "waiting", "segments_waiting", "kv_blocks_free", "kv_blocks_total",
              "batches", "requests_done", "audio_seconds_per_s", "healthy"):
        check(k in ld, "/load lacks %s: %r" % (k, ld))
    check("version" in lib.get(w, "/version").json(), "version")
    for path, body in (("/v1/chat/completions", {"messages": []}), ("/v1/embeddings", {"input": "x"}),
                       ("/v1/rerank", {"query": "q", "documents": []}), ("/tokenize", {"prompt": "x"})):
        e = expect_openai_error(lib.post(w, path, body), 400, path)
        check("transcribe" in e["message"], "%s names the task: %s" % (path, e["message"]))
    e = expect_openai_error(transcribe(w, _read("ko.wav"), path="/v1/audio/translations"), 400,
                            "translations")
    check("translat" in e["message"], "says the model does not translate: %s" % e["message"])


def test_formats(t):
    w = start_asr(t)
    ko = _read("ko.wav")
    r = transcribe(w, ko)
    eq(r.status, 200, "json")
    check(r.header("content-type", "").startswith("application/json"), "json content type")
    j = r.json()
    eq(list(j.keys()), ["text"], "json is {text}")
    check(isinstance(j["text"], str) and "<|" not in j["text"], "no tags in the text")
    r = transcribe(w, ko, response_format="text")
    eq(r.status, 200, "text")
    check(r.header("content-type", "").startswith("text/plain"), "text content type")
    eq(r.body.decode(), j["text"] + "\n", "text = json's text")
    r = transcribe(w, ko, response_format="verbose_json", timestamp_granularities=["word", "segment"])
    eq(r.status, 200, "verbose_json")
    v = r.json()
    eq(v["task"], "transcribe", "task")
    eq(v["text"], j["text"], "same text")
    check(abs(v["duration"] - 4.644) < 0.01, "duration of ko.wav: %r" % v["duration"])
    for k in ("language", "emotion", "event", "segments", "words"):
        check(k in v, "verbose_json lacks %s" % k)
    eq(len(v["segments"]), 1, "a 4.6 s clip is one segment")
    s = v["segments"][0]
    for k in ("id", "seek", "start", "end", "text", "tokens", "temperature"):
        check(k in s, "segment lacks %s: %r" % (k, s))
    eq((s["id"], s["start"]), (0, 0.0), "segment 0 from 0 s")
    check(abs(s["end"] - v["duration"]) < 0.01, "segment ends at the clip's end")
    eq(s["text"], v["text"], "segment text")
    words = v["words"]
    check(all(0 <= x["start"] <= x["end"] <= v["duration"] + 1e-6 for x in words), "word times")
    check(all(words[i]["start"] <= words[i + 1]["start"] for i in range(len(words) - 1)),
          "words in order")
    # FunASR's timing: a CTC frame is 60 ms, a token starts 30 ms before its frame (>= 0)
    check(all(x["start"] == 0 or abs((x["start"] * 1000 + 30) / 60 - round((x["start"] * 1000 + 30) / 60)) < 1e-6
              for x in words), "word starts on 60 ms CTC frames: %r" % words[:5])
    srt = transcribe(w, ko, response_format="srt")
    eq(srt.status, 200, "srt")
    if v["text"]:
        check(re.match(r"1\n00:00:00,000 --> 00:00:04,64\d\n", srt.body.decode()),
              "srt cue: %r" % srt.body[:80])
        check(srt.body.decode().rstrip("\n").endswith(v["text"]), "srt text")
    vtt = transcribe(w, ko, response_format="vtt")
    eq(vtt.status, 200, "vtt")
    check(vtt.body.decode().startswith("WEBVTT\n\n00:00:00.000 --> 00:00:04.64"),
          "vtt: %r" % vtt.body[:80])
    check(vtt.header("content-type", "").startswith("text/vtt"), "vtt content type")
    # accepted and ignored; language and use_itn run
    for extra in ({"prompt": "ignored", "temperature": "0"}, {"language": "ko"},
                  {"language": "en", "use_itn": "false"}, {"language": "auto"},
                  {"model": "sv-tiny"}):
        r = transcribe(w, ko, response_format="verbose_json", **extra)
        eq(r.status, 200, "with %r" % extra)
    r = transcribe(w, ko, response_format="verbose_json", prompt="something", temperature="0.5")
    eq(r.json()["text"], v["text"], "prompt and temperature change nothing")


def test_audio_kinds(t):
    w = start_asr(t)
    r = transcribe(w, _read("ko.mp3"), filename="ko.mp3", response_format="verbose_json")
    eq(r.status, 200, "mp3")
    check(abs(r.json()["duration"] - 4.64) < 0.1, "mp3 duration %r" % r.json()["duration"])
    x = tone(1.5, rate=8000)
    for rate, ch, width, samples in ((8000, 1, 2, x), (44100, 1, 2, tone(1.0, rate=44100)),
                                     (48000, 2, 2, [s for v in tone(1.0, rate=48000) for s in (v, v)]),
                                     (16000, 1, 4, [s * 65536 for s in tone(1.0)])):
        r = transcribe(w, wav_bytes(samples, rate, ch, width), response_format="verbose_json")
        eq(r.status, 200, "wav %d Hz %d ch %d-bit" % (rate, ch, width * 8))
        want = len(samples) / ch / rate
        check(abs(r.json()["duration"] - want) < 0.01, "duration %r vs %r" % (r.json()["duration"], want))
    # the real example clips of the shared folder, when present (not in CI)
    if os.path.isdir(SHARED):
        for name in ("zh.wav", "en.mp3", "ja.wav", "yue.mp3"):
            with open(os.path.join(SHARED, name), "rb") as f:
                r = transcribe(w, f.read(), filename=name)
            eq(r.status, 200, name)


def test_long_audio(t):
    w = start_asr(t, args=["--max-audio-seconds", "90"])
    r = transcribe(w, wav_bytes(tone(70.0, gap_every=9.0)), response_format="verbose_json",
                   timeout=120)
    eq(r.status, 200, "70 s")
    v = r.json()
    segs = v["segments"]
    check(len(segs) >= 3, "70 s is cut into >= 3 segments: %d" % len(segs))
    eq([s["id"] for s in segs], list(range(len(segs))), "ids")
    for i, s in enumerate(segs):
        check(s["end"] - s["start"] <= 30.0 + 1e-6, "segment %d <= 30 s" % i)
        check(i == 0 or s["start"] >= segs[i - 1]["end"], "segments in order")
        check(s["end"] <= v["duration"] + 1e-6, "inside the clip")
    srt = transcribe(w, wav_bytes(tone(70.0, gap_every=9.0)), response_format="srt",
                     timeout=120).body.decode()
    n_cues = len([s for s in segs if s["text"]])
    eq(len(re.findall(r"^\d+\n\d\d:\d\d:\d\d,\d\d\d --> ", srt, re.M)), n_cues, "one cue per segment")
    e = expect_openai_error(transcribe(w, wav_bytes(tone(95.0))), 400, "too long")
    eq(e["param"], "file", "param")
    check("max_audio_seconds" in e["message"], e["message"])


def test_errors(t):
    w = start_asr(t)
    ko = _read("ko.wav")
    cases = [
        (transcribe(w, None, model="sv-tiny"), "file", "no file"),
        (transcribe(w, b""), "file", "empty"),
        (transcribe(w, b"this is not audio, just some text" * 10), "file", "corrupt"),
        (transcribe(w, wav_bytes(tone(0.01))), "file", "too short"),
        (transcribe(w, ko, language="fr"), "language", "language"),
        (transcribe(w, ko, response_format="xml"), "response_format", "format"),
        (transcribe(w, ko, use_itn="perhaps"), "use_itn", "use_itn"),
        (transcribe(w, ko, timestamp_granularities="word"), "timestamp_granularities", "words in json"),
        (transcribe(w, ko, stream="true"), "stream", "stream"),
    ]
    for r, param, what in cases:
        e = expect_openai_error(r, 400, what)
        eq(e["param"], param, what + " param")
    msgs = {what: r.json()["error"]["message"] for r, _, what in cases}
    check("empty" in msgs["empty"], msgs["empty"])
    check("corrupt" in msgs["corrupt"] or "unsupported" in msgs["corrupt"], msgs["corrupt"])
    check("short" in msgs["too short"], msgs["too short"])
    e = expect_openai_error(transcribe(w, ko, model="whisper-1"), 404, "unknown model")
    eq(e["param"], "model", "model param")
    e = expect_openai_error(lib.post(w, "/v1/audio/transcriptions", {"file": "x"}), 400, "json body")
    check("multipart" in e["message"], e["message"])
    r = lib.post(w, "/v1/audio/transcriptions", b"--b\r\nbroken",
                 headers={"Content-Type": "multipart/form-data; boundary=b"})
    expect_openai_error(r, 400, "broken multipart")
    eq(transcribe(w, ko).status, 200, "serves on after the errors")


def test_concurrent_batching(t):
    w = start_asr(t, args=["--max-num-seqs", "8"])
    clips = [wav_bytes(tone(0.5 + 0.4 * i, freq=150 + 40 * i)) for i in range(10)]
    clips.append(_read("ko.wav"))
    alone = [transcribe(w, c, response_format="verbose_json").json() for c in clips]
    b0 = w.load()["batches"]
    results = [None] * len(clips)
    errors = []

    def client(k):
        try:
            results[k] = transcribe(w, clips[k], response_format="verbose_json").json()
        except Exception as ex:  # noqa: BLE001
            errors.append(repr(ex))
    th = [threading.Thread(target=client, args=(k,)) for k in range(len(clips))]
    for x in th:
        x.start()
    for x in th:
        x.join(60)
    eq(errors, [], "client errors")
    for k in range(len(clips)):
        eq(results[k]["segments"][0]["tokens"], alone[k]["segments"][0]["tokens"],
           "clip %d batched = alone" % k)
        eq(results[k]["text"], alone[k]["text"], "clip %d text" % k)
    ld = w.load()
    ran = ld["batches"] - b0
    check(1 <= ran <= len(clips), "batches ran: %d" % ran)
    print("# %d concurrent clips ran in %d batches (last %d segments)"
          % (len(clips), ran, ld["last_batch_seqs"]))
    eq(ld["waiting"], 0, "nothing waiting")


def test_client_disconnect(t):
    w = start_asr(t)
    body, ct = worker_lib.multipart([], [("file", "long.wav", wav_bytes(tone(60.0, gap_every=9.0)))])
    host, port = w.addr.rsplit(":", 1)
    for _ in range(3):
        s = socket.create_connection((host, int(port)))
        s.sendall(b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\n"
                  b"Content-Length: %d\r\n\r\n" % (ct.encode(), len(body)) + body)
        s.close()
    eq(transcribe(w, _read("ko.wav")).status, 200, "the worker serves on")
    lib.wait_for(lambda: w.load()["segments_waiting"] == 0 and w.load()["waiting"] == 0, 30,
                 what="nothing left")
    eq(lib.get(w, "/health").status, 200, "healthy")


def test_openai_client(t):
    w = start_asr(t)
    client = lib.openai_client(w.addr)
    with open(os.path.join(EXAMPLES, "ko.wav"), "rb") as f:
        r = client.audio.transcriptions.create(model="sv-tiny", file=f)
    direct = transcribe(w, _read("ko.wav")).json()["text"]
    eq(r.text, direct, "openai client text = direct")
    with open(os.path.join(EXAMPLES, "ko.mp3"), "rb") as f:
        r = client.audio.transcriptions.create(model="sv-tiny", file=f, response_format="verbose_json",
                                               timestamp_granularities=["word"])
    check(r.duration > 4 and r.segments, "verbose_json through the client")


def test_through_gateway(t):
    w = start_asr(t, name="sensevoice-tiny")
    g = t.start_gateway(model_block("sensevoice-tiny", [w.url], "alias asr; task transcribe;"))
    ko = _read("ko.wav")
    direct = transcribe(w, ko, response_format="verbose_json").json()
    r = transcribe(g, ko, model="asr", response_format="verbose_json")
    eq(r.status, 200, "multipart through the gateway (alias)")
    eq(r.json()["text"], direct["text"], "through the gateway = direct")
    r = transcribe(g, ko, model="sensevoice-tiny", response_format="srt")
    eq(r.status, 200, "srt through the gateway")
    e = expect_openai_error(transcribe(g, ko, model="nope"), 404, "unknown model at the gateway")
    e = expect_openai_error(transcribe(g, ko, model="asr", language="xx"), 400, "400 relayed")
    eq(e["param"], "language", "param relayed")


def test_spawned_by_gateway(t):
    rt = os.path.join(t.dir, "run")
    os.mkdir(rt)
    conf = ("worker_binary %s;\nruntime_dir %s;\n"
            "model sensevoice-tiny { path %s; task transcribe; device cpu; }\n"
            % (worker_lib.WORKER, rt, worker_lib.tiny_sensevoice()))
    g = t.start_gateway(conf)

    def ready():
        ms = lib.get(g, "/v1/models").json()["data"]
        return len(ms) == 1 and ms[0].get("llmux", {}).get("state") == "ready"
    lib.wait_for(ready, 60, what="the spawned speech worker ready")
    r = transcribe(g, _read("ko.mp3"), filename="ko.mp3", model="sensevoice-tiny",
                   response_format="verbose_json")
    eq(r.status, 200, "transcription from the spawned worker")
    check(abs(r.json()["duration"] - 4.64) < 0.1, "duration")


def test_funasr_golden(t):
    # FunASR 1.4.16 end to end (WavFrontend, SenseVoiceSmall.inference, its
    # SentencePiece decode) on ko.wav with this very tiny model
    # (tests/golden/make_asr_golden.py): the same ids, text and tags
    with open(os.path.join(lib.SRCDIR, "tests", "golden", "asr", "transcribe_ko.json"),
              encoding="utf-8") as f:
        g = json.load(f)
    with open(os.path.join(EXAMPLES, "tokens.json"), encoding="utf-8") as f:
        pieces = json.load(f)
    import hashlib
    d = worker_lib.tiny_sensevoice()
    with open(os.path.join(d, "model.pt"), "rb") as f:
        eq(hashlib.sha256(f.read()).hexdigest(), g["model_pt_sha256"], "mkmodel made the golden's model")
    w = start_asr(t, model_dir=d)
    ko = _read("ko.wav")
    tag = re.compile(r"<\|[^|]*\|>")
    for c in g["cases"]:
        r = transcribe(w, ko, response_format="verbose_json", language=c["language"],
                       use_itn="true" if c["use_itn"] else "false")
        eq(r.status, 200, "case %r" % c)
        v = r.json()
        what = "%s itn=%s" % (c["language"], c["use_itn"])
        text_ids = [i for i in c["ids"] if not tag.fullmatch(pieces[i])]
        eq(v["segments"][0]["tokens"], text_ids, what + ": ids = FunASR's (tags aside)")
        eq(v["text"], tag.sub("", c["text"]).strip(), what + ": text = FunASR's without tags")
        langs = [pieces[i][2:-2] for i in c["ids"] if tag.fullmatch(pieces[i])
                 and pieces[i][2:-2].replace("/", "").islower()
                 and pieces[i][2:-2] not in ("withitn", "woitn")]
        eq(v["language"], langs[0] if langs else (None if c["language"] == "auto" else c["language"]),
           what + ": language from the first language tag")
