# test_health.py -- active and passive health checks and load-aware routing:
# a backend whose /health answers 500 is ejected by the active checks and
# re-admitted after <passes> good ones; relayed 5xx answers eject too
# (passive); among healthy backends the least loaded by /load wins (two REAL
# llmux-workers, one busy with a stream sent to it directly); round robin
# when no backend reports load. Misbehaving backends are tests/tools/bad-worker.
import os
import re
import signal
import time

import lib
from lib import check, eq
import worker_lib

BAD = os.path.join(lib.BUILDDIR, "tests", "tools", "bad-worker")


def skip_reason():
    if not os.path.exists(BAD):
        return "%s is not built" % BAD
    return None


def start_bad(t, name, *flags):
    p = t.spawn([BAD, "--listen", "127.0.0.1:%d" % lib.free_port(), "--served-name", name]
                + list(flags), "bad-" + name, capture_stdout=True)
    line = t.read_line(p, 10.0)
    m = re.match(r"listening on (\S+)", line or "")
    if not m:
        raise lib.TestFailure("bad-worker did not start: %r" % line)
    p.addr = m.group(1)
    p.url = "http://" + p.addr
    return p


def backends(g, name):
    r = lib.get(g, "/v1/models")
    eq(r.status, 200, "/v1/models")
    for e in r.json()["data"]:
        if e["id"] == name:
            return e["llmux"]["backends"]["healthy"], e["llmux"]["backends"]["total"]
    raise lib.TestFailure("no model %s" % name)


def test_active_check_ejects_and_readmits(t):
    bad = start_bad(t, "m", "--health-status", "500")
    good = t.start_upstream("good")
    g = t.start_gateway("model m { upstream %s; upstream %s; "
                        "health_check interval=100ms timeout=1s fails=2 passes=3; }\n"
                        % (bad.url, good.url))
    lib.wait_for(lambda: backends(g, "m") == (1, 2), 10, 0.05, what="the /health-500 backend ejected")
    check("backend m#0 ejected after 2 failure(s)" in g.error_log(), "ejection logged")
    for i in range(6):
        r = lib.post(g, "/v1/completions", {"model": "m", "prompt": "x"})
        eq(r.status, 200, "request %d" % i)
        eq(r.header("x-llmux-backend"), "m#1", "the ejected backend gets no requests")
    bad.send_signal(signal.SIGUSR1)             # /health answers 200 from now on
    lib.wait_for(lambda: backends(g, "m") == (2, 2), 10, 0.05, what="re-admitted")
    check(re.search(r"backend m#0 passed 3 health check\(s\), back in rotation", g.error_log()),
          "re-admission after passes=3 logged")
    seen = set()
    for _ in range(6):
        seen.add(lib.post(g, "/v1/completions", {"model": "m", "prompt": "x"}).header("x-llmux-backend"))
    eq(seen, {"m#0", "m#1"}, "both backends serve again")


def test_passive_failures_eject(t):
    bad = start_bad(t, "m", "--answer-status", "500")
    good = t.start_upstream("good")
    # active checks pass (the /health of bad is fine) but seldom: only the
    # relayed 500s can eject it
    g = t.start_gateway("model m { upstream %s; upstream %s; "
                        "health_check interval=30s timeout=1s fails=2 passes=1; }\n"
                        % (bad.url, good.url))
    lib.wait_for(lambda: backends(g, "m") == (2, 2), 5, 0.05, what="both up")
    statuses = []
    for _ in range(4):
        r = lib.post(g, "/v1/completions", {"model": "m", "prompt": "x"})
        statuses.append((r.header("x-llmux-backend"), r.status))
    eq(sorted(statuses), [("m#0", 500), ("m#0", 500), ("m#1", 200), ("m#1", 200)],
       "round robin; the 500s are relayed as they are")
    eq(backends(g, "m"), (1, 2), "two relayed 500s ejected m#0")
    for _ in range(5):
        r = lib.post(g, "/v1/completions", {"model": "m", "prompt": "x"})
        eq((r.status, r.header("x-llmux-backend")), (200, "m#1"), "only m#1 is used")


def test_round_robin_without_load(t):
    a, b = t.start_upstream("a"), t.start_upstream("b")
    g = t.start_gateway("model m { upstream %s; upstream %s; }\n" % (a.url, b.url))
    seen = [lib.post(g, "/v1/completions", {"model": "m", "prompt": "x"}).header("x-llmux-backend")
            for _ in range(10)]
    eq(seen.count("m#0"), 5, "round robin among backends that report no load: %r" % seen)
    eq(seen.count("m#1"), 5, "round robin: %r" % seen)


def test_least_loaded_by_load_figures(t):
    reason = worker_lib.skip_reason()
    if reason:
        raise lib.Skip(reason)
    long = ("--max-model-len", "4096")
    w0 = worker_lib.start_worker(t, name="m", wait_health=False, args=long)
    w1 = worker_lib.start_worker(t, name="m", wait_health=False, args=long)
    g = t.start_gateway("model m { upstream http://%s; upstream http://%s; "
                        "health_check interval=100ms timeout=2s fails=3 passes=1; }\n"
                        % (w0.addr, w1.addr))
    lib.wait_for(lambda: backends(g, "m") == (2, 2), 10, 0.05, what="both workers healthy")
    # a long stream sent to worker 0 directly: the gateway counts nothing in
    # flight on it; only its /load figures (fewer free KV blocks) tell
    s = lib.Stream(w0, "/v1/completions", {"prompt": "hello", "max_tokens": 4000, "stream": True,
                                            "ignore_eos": True, "temperature": 0}, timeout=60)
    for _ in range(40):
        s.next_event()

    def busy():
        return lib.get(w0, "/load").json()["running"] == 1
    lib.wait_for(busy, 5, 0.05, what="worker 0 runs the stream")
    time.sleep(0.3)                             # two check intervals: fresh /load figures
    seen = []
    for _ in range(6):
        r = lib.post(g, "/v1/completions", {"model": "m", "prompt": "hi", "max_tokens": 1}, timeout=30)
        eq(r.status, 200, "completion")
        seen.append(r.header("x-llmux-backend"))
    eq(lib.get(w0, "/load").json()["running"], 1, "worker 0 still runs the stream")
    eq(seen, ["m#1"] * 6, "new requests go to the idle worker")
    s.close()
