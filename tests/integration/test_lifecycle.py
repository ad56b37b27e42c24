# test_lifecycle.py -- the daemon's life: `llmux -t` accepts a good conf and
# rejects a bad one with file:line; the access log has one line per request
# (model, backend, status) and SIGUSR1 reopens it; SIGTERM lets an in-flight
# stream finish, refuses new connections, exits 0, and is bounded by
# shutdown_timeout; `daemon on;` detaches and writes the pid file; SIGHUP
# reloads (and a broken conf changes nothing).
import os
import signal
import socket
import time

from lib import (Stream, chat_body, check, eq, free_port, get, model_block,
                 post, raw_connect, wait_for)


def conf_for(t, a, extra_http=""):
    conf, listen = t.gateway_conf(extra_http + model_block("m1", [a]))
    return conf, listen


def test_conf_test_ok(t):
    a = t.start_upstream("A")
    conf, _ = conf_for(t, a)
    path = t.write("ok.conf", conf)
    rc, out = t.run_llmux(["-t", "-c", path])
    eq(rc, 0, "exit status of -t on a good conf (output %r)" % out)
    check("configuration file %s test is successful" % path in out,
          "-t output %r" % out)


def test_conf_test_errors_with_file_line(t):
    cases = [
        # (conf text, 1-based line of the error, words the message should hold)
        ("daemon off;\nhttp {\n    listen 127.0.0.1:1;\n    bogus_directive 1;\n}\n",
         4, ["bogus_directive"]),
        ("daemon off;\nhttp {\n  model m1 { upstream http://127.0.0.1:1; }\n"
         "  model m1 { upstream http://127.0.0.1:2; }\n}\n", 4, ["m1"]),
        ("http {\n  model m1 { upstream http://127.0.0.1:1; }\n"
         "  route r { split m9 10; }\n}\n", 3, ["m9"]),
        ("http {\n  timeout 5parsecs;\n}\n", 2, ["5parsecs"]),
        ("http {\n  model m1 { upstream http://127.0.0.1:1;\n}\n", None, []),
        ("http {\n  model m1 { upstream http://127.0.0.1:1; task dance; }\n}\n", 2, ["dance"]),
        ("http {\n  listen 127.0.0.1:1\n}\n", None, []),
    ]
    for i, (text, line, words) in enumerate(cases):
        path = t.write("bad%d.conf" % i, text)
        rc, out = t.run_llmux(["-t", "-c", path])
        eq(rc, 1, "exit status of -t on bad conf %d (output %r)" % (i, out))
        if line is not None:
            check("%s:%d:" % (path, line) in out,
                  "bad conf %d: output should hold %s:%d: -- got %r" % (i, path, line, out))
        else:
            check(path + ":" in out, "bad conf %d: output should name the file: %r" % (i, out))
        for w in words:
            check(w in out, "bad conf %d: output should mention %r: %r" % (i, w, out))
        check("test is successful" not in out, "bad conf %d reported success" % i)


def test_start_fails_on_bad_conf(t):
    path = t.write("bad.conf", "http {\n  nonsense;\n}\n")
    rc, out = t.run_llmux(["-c", path])
    eq(rc, 1, "exit status when starting with a bad conf (output %r)" % out)
    check("%s:2:" % path in out, "error position in %r" % out)


def test_access_log_lines(t):
    a = t.start_upstream("A")
    g = t.start_gateway(model_block("m1", [a]))
    eq(post(g, "/v1/chat/completions", chat_body("m1")).status, 200, "status")
    eq(post(g, "/v1/chat/completions", chat_body("zz")).status, 404, "status")
    lines = wait_for(lambda: len(g.access_lines()) >= 2 and g.access_lines(), 3,
                     what="two access log lines")
    eq(len(lines), 2, "access log lines for 2 requests: %r" % lines)
    check("m1" in lines[0] and "m1#0" in lines[0] and " 200" in lines[0],
          "first line should hold model, backend and status: %r" % lines[0])
    check(" 404" in lines[1], "second line should hold 404: %r" % lines[1])
    check("/v1/chat/completions" in lines[0], "path in %r" % lines[0])


def test_sigusr1_reopens_logs(t):
    a = t.start_upstream("A")
    g = t.start_gateway(model_block("m1", [a]))
    eq(post(g, "/v1/chat/completions", chat_body("m1", "before")).status, 200, "status")
    wait_for(lambda: len(g.access_lines()) == 1, 3, what="first access log line")
    os.rename(g.access_log_path, g.access_log_path + ".1")
    os.rename(g.error_log_path, g.error_log_path + ".1")
    g.signal(signal.SIGUSR1)
    wait_for(lambda: os.path.exists(g.access_log_path), 3, what="access.log reopened")
    eq(post(g, "/v1/chat/completions", chat_body("m1", "after")).status, 200, "status")
    wait_for(lambda: len(g.access_lines()) == 1, 3, what="a line in the new access.log")
    with open(g.access_log_path + ".1") as f:
        eq(len([l for l in f if l.strip()]), 1, "lines in the rotated access log")
    check(os.path.exists(g.error_log_path), "error.log reopened on SIGUSR1")
    eq(g.proc.poll(), None, "llmux still running after SIGUSR1")


def test_sigterm_graceful(t):
    a = t.start_upstream("A", chunks=15, chunk_interval_ms=100)
    g = t.start_gateway("shutdown_timeout 10s;\n" + model_block("m1", [a]))
    s = Stream(g, "/v1/chat/completions", chat_body("m1", stream=True))
    eq(s.status, 200, "status")
    check(s.next_event() is not None, "first event")
    g.signal(signal.SIGTERM)

    def refused():
        try:
            c = raw_connect(g, 1)
        except OSError:
            return True
        c.close()
        return False
    wait_for(refused, 1.0, what="new connections to be refused after SIGTERM")
    s.read_all()
    check(s.error is None and s.done, "in-flight stream cut by SIGTERM: %r" % s.error)
    eq(s.datas()[-1], "[DONE]", "in-flight stream finished")
    eq(len([d for d in s.datas() if "tok" in d]), 15, "content events of the finished stream")
    eq(g.wait_exit(5), 0, "exit status after SIGTERM")


def test_sigterm_idle_exits_fast(t):
    a = t.start_upstream("A")
    g = t.start_gateway(model_block("m1", [a]))
    c = raw_connect(g)      # an idle keep-alive connection must not delay the exit
    try:
        c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        c.recv(4096)
        t0 = time.monotonic()
        g.signal(signal.SIGTERM)
        eq(g.wait_exit(5), 0, "exit status")
        check(time.monotonic() - t0 < 2.0, "idle gateway took %.2fs to stop"
              % (time.monotonic() - t0))
    finally:
        c.close()


def test_sigterm_bounded_by_shutdown_timeout(t):
    a = t.start_upstream("A", chunks=100, chunk_interval_ms=100)
    g = t.start_gateway("shutdown_timeout 1s;\n" + model_block("m1", [a]))
    s = Stream(g, "/v1/chat/completions", chat_body("m1", stream=True))
    s.next_event()
    t0 = time.monotonic()
    g.signal(signal.SIGTERM)
    rc = g.wait_exit(6)
    dt = time.monotonic() - t0
    check(dt < 3.0, "exit took %.2fs with shutdown_timeout 1s" % dt)
    eq(rc, 0, "exit status")
    s.read_all()
    check(s.done or s.error is not None, "stream ended when the gateway stopped")


def test_daemon_mode(t):
    a = t.start_upstream("A")
    port = free_port()
    pid_path = os.path.join(t.dir, "llmux.pid")
    conf = ("daemon on;\nerror_log %s/error.log info;\npid %s;\nhttp {\n"
            "  access_log %s/access.log;\n  listen 127.0.0.1:%d;\n%s}\n"
            % (t.dir, pid_path, t.dir, port, model_block("m1", [a])))
    path = t.write("daemon.conf", conf)
    t0 = time.monotonic()
    rc, out = t.run_llmux(["-c", path], timeout=10)
    eq(rc, 0, "foreground process exit status (output %r)" % out)
    check(time.monotonic() - t0 < 5, "foreground process returned promptly")
    pid = int(wait_for(lambda: open(pid_path).read().strip() if os.path.exists(pid_path)
                       else None, 3, what="pid file"))
    t.extra_pids = [pid]
    check(os.path.exists("/proc/%d" % pid), "daemon pid %d is running" % pid)
    target = "127.0.0.1:%d" % port
    wait_for(lambda: _accepts(target), 5, what="daemon to accept connections")
    r = post(target, "/v1/chat/completions", chat_body("m1", "daemon"))
    eq(r.status, 200, "status from the daemon")
    eq(get(target, "/health").status, 200, "health from the daemon")
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not _alive(pid), 5, what="daemon to exit on SIGTERM")
    check(not os.path.exists(pid_path), "pid file removed at exit")


def _accepts(target):
    try:
        s = socket.create_connection(tuple([target.rsplit(":", 1)[0],
                                            int(target.rsplit(":", 1)[1])]), 1)
        s.close()
        return True
    except OSError:
        return False


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_listen_address_in_use(t):
    a = t.start_upstream("A")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        conf, _ = t.gateway_conf(model_block("m1", [a]), listen="127.0.0.1:%d" % port)
        path = t.write("busy.conf", conf)
        rc, out = t.run_llmux(["-c", path], timeout=10)
        check(rc != 0, "llmux should fail to start on a busy port (rc %d)" % rc)
        log = out + open(os.path.join(t.dir, "error.log")).read() \
            if os.path.exists(os.path.join(t.dir, "error.log")) else out
        check(str(port) in log, "error should name the address: %r" % log[-500:])
    finally:
        busy.close()


def test_sighup_reload(t):
    """SIGHUP re-reads the conf: a model added, a route's weights changed; a
    stream in flight on the old configuration finishes; a broken conf changes
    nothing and is reported in the error log."""
    a = t.start_upstream("A", chunks=6, chunk_interval_ms=100)
    b = t.start_upstream("B")
    g = t.start_gateway(model_block("m1", [a]))
    eq(get(g, "/v1/models/m2").status, 404, "m2 before reload")
    s = Stream(g, "/v1/chat/completions", chat_body("m1", stream=True))
    eq(s.status, 200, "stream status")
    conf, _ = t.gateway_conf(model_block("m1", [a]) + model_block("m2", [b]),
                             listen=g.addr)
    t.write("llmux.conf", conf)
    g.signal(signal.SIGHUP)
    wait_for(lambda: get(g, "/v1/models/m2").status == 200, 3, what="m2 after reload")
    r = post(g, "/v1/chat/completions", chat_body("m2", "hi"))
    eq(r.status, 200, "request to the new model")
    eq(r.headers.get("x-llmux-backend"), "m2#0", "served by the new model")
    s.read_all()
    check(s.error is None and s.done, "stream across the reload: %r" % s.error)
    eq(len([d for d in s.datas() if "tok" in d]), 6, "events of the stream across the reload")

    t.write("llmux.conf", conf.replace("model m2", "modle m2"))
    g.signal(signal.SIGHUP)
    wait_for(lambda: "reload failed" in g.error_log(), 3, what="reload failure logged")
    check("llmux.conf:" in g.error_log(), "the failure names file:line")
    eq(post(g, "/v1/chat/completions", chat_body("m2", "hi")).status, 200,
       "broken conf changed nothing")
    eq(g.proc.poll(), None, "llmux still running")
