# test_llmuxctl.py -- the llmuxctl binary against a real gateway: one command
# per run and its exit status (0, 1 for an error reply, 2 when the socket
# cannot be reached, with the path in the message), -j, -s and
# LLMUX_ADMIN_SOCKET, quoting of arguments, interactive mode through a pipe,
# split through llmuxctl. Then the supervisor's operations (load, unload,
# drain, undrain, restart, reload) on real llmux-workers serving a tiny model.
import json
import os
import subprocess
import time

import lib
from lib import Skip, check, chat_body, eq, model_block, post, wait_for

LLMUXCTL = os.path.join(lib.BUILDDIR, "llmuxctl")


def skip_reason():
    if not os.path.exists(LLMUXCTL):
        return "%s is not built" % LLMUXCTL
    return None


def start(t, http_text=None, main_extra=""):
    if http_text is None:
        m1 = t.start_upstream("M1")
        m2 = t.start_upstream("M2")
        http_text = (model_block("m1", [m1]) + model_block("m2", [m2])
                     + "route ab { split m1 1; split m2 1; }\n")
    sock = os.path.join(t.dir, "admin.sock")
    g = t.start_gateway(http_text, main_text="admin_socket %s;\n%s" % (sock, main_extra))
    g.admin = sock
    wait_for(lambda: os.path.exists(sock), 5, what="admin socket file")
    return g


def ctl(args, stdin=None, env=None, timeout=30):
    """Runs llmuxctl; returns (rc, stdout, stderr)."""
    e = dict(os.environ)
    e.pop("LLMUX_ADMIN_SOCKET", None)
    e.update(env or {})
    p = subprocess.run([LLMUXCTL] + list(args), input=stdin, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=e, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def test_help_and_version(t):
    rc, out, err = ctl(["-h"])
    eq(rc, 0, "-h exit")
    check("usage: llmuxctl" in out and "-s socket" in out and "/run/llmux/admin.sock" in out,
          "usage: %r" % out)
    rc, out, err = ctl(["-v"])
    eq(rc, 0, "-v exit")
    check(out.startswith("llmuxctl "), "version: %r" % out)
    rc, out, err = ctl(["-Z"])
    eq(rc, 2, "bad option exit")


def test_exit_codes(t):
    g = start(t)
    rc, out, err = ctl(["-s", g.admin, "status"])
    eq(rc, 0, "status exit")
    check(("pid: %d\n" % g.proc.pid) in out and not out.endswith("\n\n"),
          "status output: %r" % out)
    rc, out, err = ctl(["-s", g.admin, "frobnicate"])
    eq((rc, out), (1, "error: unknown command 'frobnicate' (try help)\n"), "unknown command")
    rc, out, err = ctl(["-s", g.admin, "split", "ab", "m1", "lots"])
    eq(rc, 1, "bad weight exit")
    check(out.startswith("error: bad weight 'lots'"), out)
    missing = os.path.join(t.dir, "nope.sock")
    rc, out, err = ctl(["-s", missing, "status"])
    eq(rc, 2, "unreachable socket exit")
    check(missing in err and "cannot connect" in err and out == "", "message: %r" % err)
    # a gateway that has gone away
    g.signal(15)
    g.wait_exit()
    rc, out, err = ctl(["-s", g.admin, "status"])
    eq(rc, 2, "exit after the gateway stopped")


def test_json_flag_and_env(t):
    g = start(t)
    rc, out, err = ctl(["-j", "-s", g.admin, "status"])
    eq(rc, 0, "-j status exit")
    eq(json.loads(out)["pid"], g.proc.pid, "-j status pid")
    rc, out, err = ctl(["-j", "models"], env={"LLMUX_ADMIN_SOCKET": g.admin})
    eq(rc, 0, "env socket exit: %s" % err)
    check("m1" in json.dumps(json.loads(out)), "json models: %r" % out[:200])
    rc, out, err = ctl(["-j", "-s", g.admin, "nosuch"])
    eq(rc, 1, "-j error exit")
    check("unknown command" in json.loads(out)["error"], out)
    # -s wins over the environment
    rc, out, err = ctl(["-s", g.admin, "log-level"], env={"LLMUX_ADMIN_SOCKET": "/nonexistent"})
    eq((rc, out), (0, "level: info\n"), "-s over LLMUX_ADMIN_SOCKET")
    rc, out, err = ctl(["log-level"], env={"LLMUX_ADMIN_SOCKET": os.path.join(t.dir, "x.sock")})
    eq(rc, 2, "env socket that does not exist")
    check("x.sock" in err, err)


def test_arguments_are_quoted(t):
    g = start(t)
    # one argv word holding blanks or ';' stays one word on the socket
    rc, out, err = ctl(["-s", g.admin, "help", "status; log-level"])
    eq((rc, out), (1, "error: unknown command 'status; log-level' (try help)\n"), "quoted ;")
    rc, out, err = ctl(["-s", g.admin, "help", "a \"b\" \\c"])
    eq((rc, out), (1, "error: unknown command 'a \"b\" \\c' (try help)\n"), "quotes, backslash")
    rc, out, err = ctl(["-s", g.admin, "help", ""])
    eq((rc, out), (1, "error: unknown command '' (try help)\n"), "empty word")
    # arguments starting with '-' are the command's, not llmuxctl's
    rc, out, err = ctl(["-s", g.admin, "split", "ab", "m1", "-5"])
    eq(rc, 1, "negative weight exit")
    check(out.startswith("error: bad weight '-5'"), out)


def test_split_with_llmuxctl(t):
    g = start(t)
    rc, out, err = ctl(["-s", g.admin, "split", "ab", "m1", "0"])
    eq((rc, out), (0, "ok: route 'ab': 'm1' weight 0\n"), "split")
    for i in range(4):
        r = post(g, "/v1/chat/completions", chat_body("ab"))
        eq(r.header("x-llmux-model"), "m2", "request %d after split" % i)


def test_interactive_pipe(t):
    g = start(t)
    script = b"status\n\nlog-level; nosuch\n  help log-level  \nquit\nlog-level\n"
    rc, out, err = ctl(["-s", g.admin], stdin=script)
    eq(rc, 1, "interactive exit with an error reply")
    check("llmux> " not in out, "no prompt on a pipe: %r" % out[:100])
    parts = out.split("\n\n")
    eq(parts[-1], "", "output ends with an empty line")
    parts = parts[:-1]
    eq(len(parts), 4, "replies: %r" % parts)
    check(parts[0].startswith("version: "), parts[0])
    eq(parts[1], "level: info", "second reply")
    check(parts[2].startswith("error: unknown command 'nosuch'"), parts[2])
    check(parts[3].startswith("log-level [LEVEL]"), parts[3])
    # no error: 0; -j makes each line JSON
    rc, out, err = ctl(["-j", "-s", g.admin], stdin=b"log-level\nstatus\n")
    eq(rc, 0, "interactive exit")
    docs = [json.loads(x) for x in out.split("\n\n") if x.strip()]
    eq(docs[0], {"level": "info"}, "-j interactive")
    eq(docs[1]["pid"], g.proc.pid, "-j interactive status")
    # end of input without a newline still runs the last command
    rc, out, err = ctl(["-s", g.admin], stdin=b"log-level")
    eq((rc, out), (0, "level: info\n\n"), "last line without newline")
    # an unreachable socket: 2
    rc, out, err = ctl(["-s", os.path.join(t.dir, "gone.sock")], stdin=b"status\n")
    eq(rc, 2, "interactive, unreachable")
    check("gone.sock" in err, err)


def test_interactive_prompt_on_a_terminal(t):
    import pty
    g = start(t)
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(LLMUXCTL, [LLMUXCTL, "-s", g.admin])
    out = b""

    def read_until(marker, timeout=5):
        nonlocal out
        end = time.monotonic() + timeout
        while marker not in out and time.monotonic() < end:
            try:
                d = os.read(fd, 4096)
            except OSError:
                break
            if not d:
                break
            out += d
        return marker in out
    try:
        check(read_until(b"llmux> "), "first prompt: %r" % out)
        os.write(fd, b"log-level\n")
        check(read_until(b"level: info\r\n\r\nllmux> "), "reply then prompt: %r" % out)
        os.write(fd, b"quit\n")
        _, status = os.waitpid(pid, 0)
        eq(os.waitstatus_to_exitcode(status), 0, "exit after quit")
    finally:
        os.close(fd)


# ---- the supervisor's operations, on real llmux-workers ------------------------------

def _ops_skip():
    import worker_lib
    r = worker_lib.skip_reason()
    if r:
        raise Skip(r)
    return worker_lib


def find_model(doc, name):
    """The model object <name> in `json models` (a list of objects with
    "name", or an object keyed by name, possibly under "models")."""
    if isinstance(doc, dict) and "models" in doc:
        doc = doc["models"]
    if isinstance(doc, dict):
        m = doc.get(name)
        if isinstance(m, dict):
            m.setdefault("name", name)
        return m
    for m in doc:
        if m.get("name") == name:
            return m
    return None


def models_doc(g):
    rc, out, err = ctl(["-j", "-s", g.admin, "models"])
    eq(rc, 0, "json models: %s %s" % (out, err))
    return json.loads(out)


def model_state(g, name):
    m = find_model(models_doc(g), name)
    return m.get("state") if m else None


def replicas(g, name):
    m = find_model(models_doc(g), name) or {}
    return m.get("replicas") or []


def spawned_block(worker_lib, name, replicas_n=1, extra=""):
    return ("model %s { path %s; replicas %d; gpus cpu; kv_cache_memory 64m; "
            "max_model_len 1024; threads 1; %s }\n"
            % (name, worker_lib.tiny_model(), replicas_n, extra))


def chat_ok(g, model):
    r = post(g, "/v1/chat/completions", chat_body(model, max_tokens=2), timeout=60)
    return r.status == 200


def test_load_and_unload(t):
    worker_lib = _ops_skip()
    m1 = t.start_upstream("M1")
    g = start(t, model_block("m1", [m1]))
    rc, out, err = ctl(["-s", g.admin, "load", "tiny", worker_lib.tiny_model(),
                        "replicas=1", "gpus=cpu", "kv_cache_memory=64m", "max_model_len=1024",
                        "threads=1"])
    eq(rc, 0, "load: %s %s" % (out, err))
    check(out.startswith("ok: loading model 'tiny'"), out)
    wait_for(lambda: model_state(g, "tiny") == "ready", 90, interval=0.3, what="tiny ready")
    check(chat_ok(g, "tiny"), "chat on the loaded model")
    check(chat_ok(g, "m1"), "the other model untouched")
    rc, out, err = ctl(["-s", g.admin, "load", "tiny", worker_lib.tiny_model()])
    eq(rc, 1, "loading a name twice: %s" % out)
    rc, out, err = ctl(["-s", g.admin, "unload", "tiny"])
    eq(rc, 0, "unload: %s %s" % (out, err))
    wait_for(lambda: model_state(g, "tiny") is None, 60, interval=0.3, what="tiny gone")
    r = post(g, "/v1/chat/completions", chat_body("tiny"))
    eq(r.status, 404, "unloaded model")
    rc, out, err = ctl(["-s", g.admin, "unload", "tiny"])
    eq(rc, 1, "unload of an unknown model: %s" % out)


def test_drain_undrain_restart(t):
    worker_lib = _ops_skip()
    g = start(t, spawned_block(worker_lib, "tiny", 2))
    wait_for(lambda: model_state(g, "tiny") == "ready", 90, interval=0.3, what="tiny ready")
    rc, out, err = ctl(["-s", g.admin, "drain", "tiny#1"])
    eq(rc, 0, "drain: %s %s" % (out, err))
    rc, out, err = ctl(["-j", "-s", g.admin, "backends"])
    check("draining" in out, "backends show the drained replica: %s" % out[:600])
    rc, out, err = ctl(["-s", g.admin, "undrain", "tiny#1"])
    eq(rc, 0, "undrain: %s %s" % (out, err))
    rc, out, err = ctl(["-s", g.admin, "drain", "tiny#7"])
    eq(rc, 1, "drain of a replica that does not exist: %s" % out)
    pid0 = replicas(g, "tiny")[0].get("pid")
    rc, out, err = ctl(["-s", g.admin, "restart", "tiny#0"])
    eq(rc, 0, "restart: %s %s" % (out, err))
    wait_for(lambda: (replicas(g, "tiny")[0].get("pid") not in (None, pid0)
                      and model_state(g, "tiny") == "ready"), 90, interval=0.3,
             what="tiny#0 restarted")
    check(chat_ok(g, "tiny"), "chat after the restart")


def test_reload(t):
    worker_lib = _ops_skip()
    m1 = t.start_upstream("M1")
    g = start(t, model_block("m1", [m1]))
    with open(g.conf) as f:
        text = f.read()
    # a broken conf changes nothing and the reply says why
    with open(g.conf, "w") as f:
        f.write(text.replace("http {", "http {\n    bogus_directive 1;"))
    rc, out, err = ctl(["-s", g.admin, "reload"])
    eq(rc, 1, "reload of a broken conf: %s" % out)
    check("bogus_directive" in out, out)
    check(chat_ok(g, "m1"), "m1 after the failed reload")
    # a model added to the conf starts
    with open(g.conf, "w") as f:
        f.write(text.replace("http {", "http {\n" + spawned_block(worker_lib, "tiny")))
    rc, out, err = ctl(["-s", g.admin, "reload"])
    eq(rc, 0, "reload: %s %s" % (out, err))
    wait_for(lambda: model_state(g, "tiny") == "ready", 90, interval=0.3, what="tiny ready")
    check(chat_ok(g, "tiny") and chat_ok(g, "m1"), "both models after the reload")
