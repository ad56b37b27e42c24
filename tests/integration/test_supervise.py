# test_supervise.py -- the gateway spawns REAL llmux-workers ("path" model
# blocks): per-replica CUDA_VISIBLE_DEVICES seen in /proc/PID/environ, unix
# sockets under runtime_dir, states in /v1/models, a replica killed with -9
# mid-stream (that client gets an error event, a stream on the other replica
# finishes) is restarted and its restart count shows; workers stop with the
# gateway; reload with a changed, an unchanged and a removed model, and a
# broken conf that changes nothing.
import json
import os
import signal
import time

import lib
from lib import check, eq
import worker_lib


def skip_reason():
    return worker_lib.skip_reason()


def spawned_block(name, extra=""):
    return ("model %s { path %s; device cpu; kv_cache_memory 32m; max_model_len 512; "
            "restart_backoff 100ms 1s; health_check interval=500ms timeout=2s fails=2 passes=1; %s }\n"
            % (name, worker_lib.tiny_model(), extra))


def models(g):
    r = lib.get(g, "/v1/models")
    eq(r.status, 200, "/v1/models")
    return {e["id"]: e["llmux"] for e in r.json()["data"]}


def wait_state(g, name, state, timeout=40):
    lib.wait_for(lambda: models(g).get(name, {}).get("state") == state, timeout, 0.1,
                 what="%s %s (%s)" % (name, state, models(g).get(name)))
    return models(g)[name]


def environ(pid):
    with open("/proc/%d/environ" % pid, "rb") as f:
        return dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)


def test_spawn_two_models_two_replicas(t):
    rt = os.path.join(t.dir, "run")
    http = "runtime_dir %s;\n" % rt
    http += spawned_block("alpha", "replicas 2; gpus 0 | 1; task chat; max_num_seqs 7; "
                                   "served_name alpha-too; env LLMUX_TEST_ENV=yes;")
    http += spawned_block("beta", "replicas 2; gpus 2,3|cpu;")
    g = t.start_gateway(http)
    a = wait_state(g, "alpha", "ready")
    b = wait_state(g, "beta", "ready")
    want = {("alpha", 0): b"0", ("alpha", 1): b"1", ("beta", 0): b"2,3", ("beta", 1): b""}
    for name, m in (("alpha", a), ("beta", b)):
        eq(len(m["replicas"]), 2, name + " replicas")
        for rep in m["replicas"]:
            eq(rep["state"], "ready", "replica state")
            env = environ(rep["pid"])
            eq(env.get(b"CUDA_VISIBLE_DEVICES"), want[(name, rep["replica"])],
               "%s#%d CUDA_VISIBLE_DEVICES" % (name, rep["replica"]))
            if name == "alpha":
                with open("/proc/%d/cmdline" % rep["pid"], "rb") as f:
                    argv = f.read().decode().split("\0")
                for flag, val in (("--task", "chat"), ("--max-num-seqs", "7"), ("--served-name", "alpha"),
                             ("--served-name", "alpha-too"), ("--max-model-len", "512"),
                             ("--kv-cache-memory", "32m"), ("--device", "cpu")):
                    check(any(argv[i] == flag and argv[i + 1] == val for i in range(len(argv) - 1)),
                          "worker flag %s %s in %r" % (flag, val, argv))
                eq(env.get(b"LLMUX_TEST_ENV"), b"yes", "env directive")
            sock = os.path.join(rt, "%s.%d.sock" % (name, rep["replica"]))
            check(os.path.exists(sock), "socket %s exists" % sock)
    r = lib.post(g, "/v1/completions", {"model": "beta", "prompt": "hi", "max_tokens": 2}, timeout=30)
    eq(r.status, 200, "completion through a spawned worker")
    pids = [rep["pid"] for m in (a, b) for rep in m["replicas"]]
    g.signal(signal.SIGTERM)
    g.wait_exit(15)
    for pid in pids:
        check(lib.proc_gone(pid),
              "worker %d stopped with the gateway" % pid)


def test_kill_replica_mid_stream(t):
    g = t.start_gateway(spawned_block("m", "replicas 2;").replace("max_model_len 512", "max_model_len 4096"))
    wait_state(g, "m", "ready")
    body = {"model": "m", "prompt": "hello", "max_tokens": 500, "stream": True,
            "temperature": 0, "ignore_eos": True}
    s1 = lib.Stream(g, "/v1/completions", body, timeout=60)
    s2 = lib.Stream(g, "/v1/completions", body, timeout=60)
    eq(s1.status, 200, "stream 1 status")
    eq(s2.status, 200, "stream 2 status")
    s1.next_event()
    s2.next_event()
    b1, b2 = s1.headers.get("x-llmux-backend"), s2.headers.get("x-llmux-backend")
    check(b1 != b2, "least loaded: the two streams run on different replicas (%s, %s)" % (b1, b2))
    reps = models(g)["m"]["replicas"]
    eq([r["in_flight"] for r in reps], [1, 1], "in_flight per replica")
    victim = [r for r in reps if r["replica"] == int(b1.split("#")[1])][0]
    os.kill(victim["pid"], signal.SIGKILL)
    ev1 = s1.read_all().datas()
    ev2 = s2.read_all().datas()
    check(any('"error"' in e for e in ev1), "the killed replica's client got an error event: %r" % ev1[-3:])
    eq(ev1[-1], "[DONE]", "the error event is followed by [DONE]")
    check(not any('"error"' in e for e in ev2), "the other stream saw no error")
    check(s2.done, "the other stream finished")
    last = json.loads(ev2[-2])
    eq(last["choices"][0]["finish_reason"], "length", "the other stream ran to max_tokens")
    eq(ev2[-1], "[DONE]", "the other stream ends with [DONE]")
    m = wait_state(g, "m", "ready")
    rep = [r for r in m["replicas"] if r["replica"] == victim["replica"]][0]
    eq(rep["restarts"], 1, "restart count")
    check(rep["pid"] != victim["pid"], "a new process")
    eq(sum(r["in_flight"] for r in m["replicas"]), 0, "nothing in flight at the end")
    check("killed by signal 9" in g.error_log(), "exit status in the error log")
    r = lib.post(g, "/v1/completions", {"model": "m", "prompt": "hi", "max_tokens": 2}, timeout=30)
    eq(r.status, 200, "the model answers after the restart")


def test_reload_changed_unchanged_removed(t):
    keep, change, drop = (spawned_block("keep"), spawned_block("change"),
                          spawned_block("drop"))
    g = t.start_gateway(keep + change + drop)
    for n in ("keep", "change", "drop"):
        wait_state(g, n, "ready")
    before = models(g)
    # broken conf: nothing changes
    conf, _ = t.gateway_conf(keep + "model broken { }\n", listen=g.addr)
    t.write("llmux.conf", conf)
    g.signal(signal.SIGHUP)
    lib.wait_for(lambda: "reload failed" in g.error_log(), 5, what="reload failed logged")
    eq(sorted(models(g)), ["change", "drop", "keep"], "models after a broken reload")
    conf, _ = t.gateway_conf(keep + spawned_block("change", "max_num_seqs 8;"), listen=g.addr)
    t.write("llmux.conf", conf)
    g.signal(signal.SIGHUP)
    lib.wait_for(lambda: "drop" not in models(g), 40, 0.1, what="reload applied")
    after = models(g)
    eq(after["keep"]["replicas"][0]["pid"], before["keep"]["replicas"][0]["pid"], "unchanged keeps its worker")
    check(after["change"]["replicas"][0]["pid"] != before["change"]["replicas"][0]["pid"], "changed got a new worker")
    eq(after["change"]["state"], "ready", "replacement is ready when switched (make-before-break)")
    old = before["drop"]["replicas"][0]["pid"]
    lib.wait_for(lambda: lib.proc_gone(old), 10, what="removed model stopped")
    r = lib.post(g, "/v1/completions", {"model": "change", "prompt": "hi", "max_tokens": 2}, timeout=30)
    eq(r.status, 200, "the changed model answers")
