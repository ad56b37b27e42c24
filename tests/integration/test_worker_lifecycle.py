# test_worker_lifecycle.py -- llmux-worker as a process: flags and bad model
# folders exit 2, a client leaving mid-stream frees its sequence (/load
# shows nothing running), SIGTERM stops it gracefully (exit 0, in-flight
# request answered), unix sockets.
import os
import signal
import threading
import time

import lib
from lib import check, eq
import worker_lib
from worker_lib import start_worker, run_worker


def skip_reason():
    return worker_lib.skip_reason()


def test_bad_flags_exit_2(t):
    rc, out = run_worker(t, ["--bogus"])
    eq(rc, 2, "unknown flag: %s" % out)
    check("bogus" in out, "names the flag: %s" % out)
    rc, out = run_worker(t, ["--model", t.dir, "--listen", "127.0.0.1:0"])
    eq(rc, 2, "a folder without a model: %s" % out)
    rc, out = run_worker(t, ["--model", worker_lib.tiny_model(), "--listen", "127.0.0.1:0",
                             "--reasoning-parser", "nope"])
    eq(rc, 2, "bad parser: %s" % out)
    rc, out = run_worker(t, ["--help"])
    eq(rc, 0, "help")
    check("--max-model-len" in out, "help lists flags")


def test_disconnect_frees_sequence(t):
    w = start_worker(t)
    body = {"model": "tiny", "prompt": "go", "max_tokens": 900, "ignore_eos": True,
            "stream": True, "temperature": 0}
    s = lib.Stream(w, "/v1/completions", body, timeout=60)
    eq(s.status, 200, "stream started")
    s.next_event()
    lib.wait_for(lambda: w.load()["running"] == 1, 10, what="running 1")
    s.close()
    lib.wait_for(lambda: w.load()["running"] == 0 and w.load()["waiting"] == 0, 10,
                 what="sequence freed after disconnect")


def test_sigterm_graceful(t):
    w = start_worker(t)
    result = {}

    def run():
        result["r"] = w.complete("x", max_tokens=40, ignore_eos=True, temperature=0)
    th = threading.Thread(target=run)
    th.start()
    lib.wait_for(lambda: w.load()["running"] >= 1, 10, what="request running")
    w.signal(signal.SIGTERM)
    th.join(30)
    eq(result["r"].status, 200, "in-flight request finished")
    eq(result["r"].json()["usage"]["completion_tokens"], 40, "whole answer")
    eq(w.wait_exit(15), 0, "exit status")


def test_unix_socket(t):
    path = os.path.join(t.dir, "w.sock")
    w = start_worker(t, listen="unix:" + path)
    eq(w.addr, "unix:" + path, "address")
    eq(lib.get(w, "/health").status, 200, "health over unix socket")
    w.signal(signal.SIGTERM)
    eq(w.wait_exit(15), 0, "exit")
    check(not os.path.exists(path), "socket removed at exit")


def test_prefix_cache_in_load(t):
    w = start_worker(t)
    system = "You are a helpful assistant. " * 20
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": "one"}]
    lib.post(w, "/v1/chat/completions", {"messages": msgs, "max_tokens": 1}, timeout=60)
    before = w.load()["prefix_cache_hits"]
    msgs[1]["content"] = "two"
    j = lib.post(w, "/v1/chat/completions", {"messages": msgs, "max_tokens": 1}, timeout=60).json()
    check(w.load()["prefix_cache_hits"] > before, "prefix cache hits grew")
    d = j["usage"].get("prompt_tokens_details") or {}
    check(d.get("cached_tokens", 0) > 0, "cached_tokens reported: %r" % j["usage"])


def test_pipelining_and_keepalive(t):
    w = start_worker(t)
    req = (b"GET /health HTTP/1.1\r\nHost: w\r\n\r\n"
           b"GET /version HTTP/1.1\r\nHost: w\r\n\r\n"
           b"POST /tokenize HTTP/1.1\r\nHost: w\r\nConnection: close\r\nContent-Length: 16\r\n\r\n"
           b'{"prompt":"hi!"}')
    data, closed = lib.raw_exchange(w, req, timeout=10)
    rs = lib.parse_responses(data)
    eq([r.status for r in rs], [200, 200, 200], "three pipelined answers in order")
    eq(rs[2].json()["count"], 2, "tokenize answer last")
    check(closed, "Connection: close honoured")
    c = lib.connect(w)
    for _ in range(3):
        eq(lib.get(w, "/v1/models", conn=c).status, 200, "keep-alive reuse")
    c.close()
