# test_hot_reload.py -- supervision paths the real worker cannot show, with
# tests/tools/bad-worker as worker_binary (its misbehaviour set per model by
# `env "BAD_WORKER=..."`): a crash loop ends `failed` (max_restarts) and an
# admin `restart` brings it back; requests queue while every replica loads,
# then get 503 + Retry-After; hot load/unload through the admin socket while
# a load generator hits another model (zero failures there); unload drains an
# in-flight request to completion; drain/undrain; a broken reload (admin
# socket) changes nothing.
import concurrent.futures
import json
import os
import socket
import threading
import time

import lib
from lib import check, eq

BAD = os.path.join(lib.BUILDDIR, "tests", "tools", "bad-worker")


def skip_reason():
    if not os.path.exists(BAD):
        return "%s is not built" % BAD
    return None


def block(name, bad="", extra=""):
    env = ' env "BAD_WORKER=%s";' % bad if bad else ""
    return ("model %s { path /nonexistent/%s; restart_backoff 50ms 200ms; "
            "health_check interval=200ms timeout=1s fails=2 passes=1;%s %s }\n"
            % (name, name, env, extra))


def start(t, http_text):
    sock = os.path.join(t.dir, "admin.sock")
    g = t.start_gateway("worker_binary %s;\nruntime_dir %s;\n%s"
                        % (BAD, os.path.join(t.dir, "run"), http_text),
                        main_text="admin_socket %s;" % sock)
    g.admin = sock
    lib.wait_for(lambda: os.path.exists(sock), 5, what="admin socket")
    return g


def admin(g, cmd):
    """One admin command with the json prefix; returns the decoded reply."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(g.admin)
    s.sendall(("json %s\n" % cmd).encode())
    s.shutdown(socket.SHUT_WR)
    buf = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    s.close()
    return json.loads(buf.decode().split("\n\n")[0])


def models(g):
    r = lib.get(g, "/v1/models")
    eq(r.status, 200, "/v1/models")
    return {e["id"]: e["llmux"] for e in r.json()["data"]}


def state(g, name):
    return models(g).get(name, {}).get("state")


def wait_state(g, name, want, timeout=15):
    lib.wait_for(lambda: state(g, name) == want, timeout, 0.05,
                 what="%s %s (%s)" % (name, want, models(g).get(name)))
    return models(g)[name]


def complete(g, model, timeout=10):
    return lib.post(g, "/v1/completions", {"model": model, "prompt": "x"}, timeout=timeout)


def test_crash_loop_fails_then_restart(t):
    flag = os.path.join(t.dir, "crash")
    open(flag, "w").close()
    g = start(t, block("c", "--crash-if-exists %s" % flag, "max_restarts 2 30s;"))
    m = wait_state(g, "c", "failed")
    rep = m["replicas"][0]
    eq(rep["state"], "failed", "replica state")
    eq(rep["restarts"], 2, "restarted max_restarts times before failing")
    eq(rep["pid"], None, "no process")
    log = g.error_log()
    check("exited with status 3" in log, "exit status in the error log")
    check("crashing at start as told" in log, "the worker's last lines in the error log")
    check("failed: 2 restart(s)" in log, "failure logged")
    r = complete(g, "c")
    eq(r.status, 503, "a failed model answers 503 at once")
    os.unlink(flag)
    res = admin(g, "restart c#0")
    check(res.get("ok"), "admin restart: %r" % res)
    m = wait_state(g, "c", "ready")
    check(m["replicas"][0]["pid"], "a process again")
    eq(complete(g, "c").status, 200, "the restarted model answers")


def test_queue_while_loading_then_503(t):
    g = start(t, block("slow", "--slow-health-ms 3000", "queue_timeout 400ms;")
              + block("soon", "--slow-health-ms 700", "queue_timeout 10s;"))
    eq(state(g, "slow"), "loading", "slow is loading")
    t0 = time.monotonic()
    r = complete(g, "slow")
    dt = time.monotonic() - t0
    eq(r.status, 503, "queued past queue_timeout")
    check(r.header("retry-after") is not None, "Retry-After is set")
    check("is loading" in r.json()["error"]["message"], "message: %r" % r.body)
    check(0.3 < dt < 3, "answered after queue_timeout (%.2fs)" % dt)
    r = complete(g, "soon")
    eq(r.status, 200, "a queued request is served once a replica is ready")
    eq(state(g, "soon"), "ready", "soon is ready")


def load_unload_extra(g):
    res = admin(g, "load extra /nonexistent/extra replicas=2 max_num_seqs=4")
    check(res.get("ok"), "admin load: %r" % res)
    m = wait_state(g, "extra", "ready")
    eq(len(m["replicas"]), 2, "two replicas loaded")
    eq(complete(g, "extra").status, 200, "the loaded model answers")
    steady_pids = [r["pid"] for r in models(g)["steady"]["replicas"]]
    res = admin(g, "unload extra")
    check(res.get("ok"), "admin unload: %r" % res)
    lib.wait_for(lambda: "extra" not in models(g), 10, 0.05, what="extra gone")
    eq(complete(g, "extra").status, 404, "an unloaded model is unknown")
    # unload, then load the same name again
    res = admin(g, "load extra /nonexistent/extra")
    check(res.get("ok"), "admin load again: %r" % res)
    wait_state(g, "extra", "ready")
    time.sleep(0.3)
    return steady_pids


def test_hot_load_unload_under_load(t):
    g = start(t, block("steady", extra="replicas 2;"))
    wait_state(g, "steady", "ready")
    stop = threading.Event()
    results = []

    def generator():
        while not stop.is_set() and len(results) < 20000:
            try:
                results.append(complete(g, "steady").status)
            except Exception as e:  # noqa: B902 -- a failure to count
                results.append(repr(e))
                time.sleep(0.05)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futs = [pool.submit(generator) for _ in range(4)]
        try:
            steady_pids = load_unload_extra(g)
        finally:
            stop.set()
            for f in futs:
                f.result()
    bad = [x for x in results if x != 200]
    check(len(results) > 20, "the load generator ran (%d requests)" % len(results))
    eq(bad, [], "no failed request for the untouched model")
    eq([r["pid"] for r in models(g)["steady"]["replicas"]], steady_pids,
       "the untouched model kept its workers")


def test_unload_drains_in_flight(t):
    g = start(t, block("slow", "--answer-delay-ms 1500", "drain_timeout 10s;")
              + block("other"))
    m = wait_state(g, "slow", "ready")
    pid = m["replicas"][0]["pid"]
    out = {}
    th = threading.Thread(target=lambda: out.setdefault("r", complete(g, "slow", timeout=15)))
    th.start()
    lib.wait_for(lambda: models(g)["slow"]["replicas"][0]["in_flight"] == 1, 5, 0.02,
                 what="the request is in flight")
    res = admin(g, "unload slow")
    check(res.get("ok"), "admin unload: %r" % res)
    eq(complete(g, "slow").status, 404, "no new requests for an unloading model")
    check(os.path.exists("/proc/%d" % pid), "the worker runs while it drains")
    th.join(15)
    eq(out["r"].status, 200, "the in-flight request finished")
    lib.wait_for(lambda: lib.proc_gone(pid), 10, 0.05,
                 what="the drained worker stopped")
    check("model slow (generation 0) drained, stopping its workers" in g.error_log(), "drain logged")
    lib.wait_for(lambda: "model slow (generation 0): freed" in g.error_log(), 5, 0.05,
                 what="the unloaded instance freed once its last router was released")
    eq(complete(g, "other").status, 200, "the other model is untouched")


def test_drain_undrain_and_broken_reload(t):
    g = start(t, block("m", extra="replicas 2;"))
    wait_state(g, "m", "ready")
    res = admin(g, "drain m#0")
    check(res.get("ok"), "admin drain: %r" % res)
    seen = {complete(g, "m").header("x-llmux-backend") for _ in range(6)}
    eq(seen, {"m#1"}, "a drained replica gets no new requests")
    eq(models(g)["m"]["replicas"][0]["state"], "draining", "shown as draining")
    check(admin(g, "undrain m#0").get("ok"), "admin undrain")
    seen = {complete(g, "m").header("x-llmux-backend") for _ in range(6)}
    eq(seen, {"m#0", "m#1"}, "back in rotation")
    before = models(g)
    path = os.path.join(t.dir, "llmux.conf")
    text = open(path).read()
    with open(path, "w") as f:
        f.write(text.replace("replicas 2;", "replicas 2; bogus_directive 1;"))
    res = admin(g, "reload")
    check("error" in res and "bogus_directive" in res["error"], "the reload error is reported: %r" % res)
    after = models(g)
    eq([r["pid"] for r in after["m"]["replicas"]], [r["pid"] for r in before["m"]["replicas"]],
       "a broken reload changes nothing")


def test_reload_keeps_old_when_replacement_fails(t):
    g = start(t, block("m"))
    before = wait_state(g, "m", "ready")
    path = os.path.join(t.dir, "llmux.conf")
    text = open(path).read()
    with open(path, "w") as f:
        f.write(text.replace(block("m"), block("m", "--crash-at-start", "max_restarts 1 30s;")))
    res = admin(g, "reload")
    check(res.get("ok"), "admin reload accepted (it waits for the new workers): %r" % res)
    eq(complete(g, "m").status, 200, "the old workers serve while the new ones start")
    lib.wait_for(lambda: "reload abandoned" in g.error_log(), 10, 0.05, what="reload abandoned")
    after = wait_state(g, "m", "ready")
    eq(after["replicas"][0]["pid"], before["replicas"][0]["pid"], "the running worker stays")
    eq(complete(g, "m").status, 200, "and serves")
    lib.wait_for(lambda: "model m (generation 1): freed" in g.error_log(), 5, 0.05,
                 what="the failed replacement is freed")


def test_own_log_file(t):
    logf = os.path.join(t.dir, "worker-w.log")
    g = start(t, block("w", "--crash-at-start", "max_restarts 0; log %s;" % logf))
    wait_state(g, "w", "failed")
    check("crashing at start as told" in open(logf).read(), "the worker wrote its own log")
    log = g.error_log()
    check("[w#0]" not in log, "nothing relayed to the error log")
    check("exited with status 3; last lines of its log:" in log and "crashing at start as told" in log,
          "the exit status and the tail of its log file in the error log")


def test_user_and_slash_name(t):
    if os.geteuid() != 0:
        raise lib.Skip("needs root to drop privileges")
    os.chmod(t.dir, 0o711)                  # the worker reaches its socket directory
    g = start(t, block("org/m", extra="user nobody;") + block("plain"))
    m = wait_state(g, "org/m", "ready")
    wait_state(g, "plain", "ready")
    pid = m["replicas"][0]["pid"]
    with open("/proc/%d/status" % pid) as f:
        uids = [line.split()[1:] for line in f if line.startswith(("Uid:", "Gid:"))]
    eq(uids[0], ["65534"] * 4, "the worker runs as nobody")
    eq(uids[1], ["65534"] * 4, "with nobody's primary group")
    addr = m["replicas"][0]["address"]
    check("org%2Fm.g0.d/org%2Fm.0.sock" in addr, "its own socket directory: %s" % addr)
    eq(os.stat(os.path.dirname(addr[5:])).st_uid, 65534, "owned by the user")
    eq(complete(g, "org/m").status, 200, "it serves")
    eq(complete(g, "plain").status, 200, "the other model too")
