# test_error_paths.py -- the gateway's own failure handling that the other
# suites do not reach: a backend answering something that is not HTTP (502),
# a backend closing after it took the request (502, not retried: the request
# may have run), a client too slow with its body (408), the model's timeout
# firing after the stream started (SSE error event, then [DONE]),
# Expect: 100-continue, and the -T / -s command-line flags.
# The two broken backends are tiny raw-socket servers: fine here, since what
# is tested is the gateway's handling of them.
import json
import os
import socket
import threading
import time

from lib import (Stream, chat_body, check, eq, expect_openai_error, model_block, post,
                 raw_connect, recv_until_close, wait_for)


def raw_backend(t, answer):
    """A listening socket that reads one request per connection, then sends
    <answer> (bytes; b"" = none) and closes. Returns its URL."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(2)
            buf = b""
            try:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        break
                    buf += d
                if answer:
                    c.sendall(answer)
            except OSError:
                pass
            c.close()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    t.extra_cleanup = getattr(t, "extra_cleanup", []) + [lambda: (stop.set(), srv.close())]
    return "http://127.0.0.1:%d" % srv.getsockname()[1]


def _cleanup(t):
    for fn in getattr(t, "extra_cleanup", []):
        fn()


def test_backend_answers_garbage_502(t):
    try:
        bad = raw_backend(t, b"THIS IS NOT HTTP\r\n\r\n")
        g = t.start_gateway("max_attempts 1;\n" + model_block("m1", [bad]))
        e = expect_openai_error(post(g, "/v1/chat/completions", chat_body("m1")), 502,
                                "backend answered something that is not HTTP")
        check("invalid response" in e["message"], "message names the cause: %r" % e["message"])
    finally:
        _cleanup(t)


def test_backend_closes_after_request_502_not_retried(t):
    try:
        bad = raw_backend(t, b"")
        good = t.start_upstream("GOOD")
        g = t.start_gateway(model_block("m1", [bad, good]))
        e = expect_openai_error(post(g, "/v1/chat/completions", chat_body("m1")), 502,
                                "backend closed before answering")
        check("before sending a response" in e["message"], "message: %r" % e["message"])
        eq(good.stats()["requests"], 1, "requests the healthy backend saw (only this /stats)")
    finally:
        _cleanup(t)


def test_client_body_timeout_408(t):
    a = t.start_upstream("A")
    g = t.start_gateway("client_body_timeout 300ms;\n" + model_block("m1", [a]))
    s = raw_connect(g, 5)
    try:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 100\r\n\r\n{\"model\":")
        t0 = time.monotonic()
        buf, closed = recv_until_close(s, 5)
        dt = time.monotonic() - t0
    finally:
        s.close()
    check(buf.startswith(b"HTTP/1.1 408 "), "408 expected, got %r" % buf[:80])
    check(closed, "connection closed after the 408")
    check(0.2 <= dt <= 2.5, "408 after ~0.3s, came after %.2fs" % dt)


def test_timeout_after_stream_started_ends_with_error_event(t):
    a = t.start_upstream("A", chunks=20, chunk_interval_ms=200)
    g = t.start_gateway(model_block("m1", [a], "timeout 700ms;"))
    s = Stream(g, "/v1/chat/completions", chat_body("m1", stream=True))
    eq(s.status, 200, "status (the stream had started)")
    s.read_all()
    check(s.error is None and s.done, "stream ends with a terminated chunked body: %r" % s.error)
    d = s.datas()
    eq(d[-1], "[DONE]", "last event")
    err = json.loads(d[-2])
    check("timed out" in err["error"]["message"], "error event names the timeout: %r" % d[-2])
    check(len([x for x in d if "tok" in x]) < 20, "the stream was cut, not completed")


def test_expect_100_continue(t):
    a = t.start_upstream("A")
    g = t.start_gateway(model_block("m1", [a]))
    body = json.dumps(chat_body("m1", "after continue")).encode()
    s = raw_connect(g, 5)
    try:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        first = s.recv(64)
        check(first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), "interim 100: %r" % first)
        s.sendall(body)
        rest, _ = recv_until_close(s, 5)
    finally:
        s.close()
    resp = first[25:] + rest
    check(resp.startswith(b"HTTP/1.1 200 "), "final answer 200: %r" % resp[:80])
    check(b"after continue" in resp, "the body reached the backend")


def test_dump_and_signal_flags(t):
    a = t.start_upstream("A")
    g = t.start_gateway(model_block("m1", [a]))
    rc, out = t.run_llmux(["-T", "-c", g.conf])
    eq(rc, 0, "-T exit status")
    check("test is successful" in out and "# configuration file %s:" % g.conf in out
          and "model m1" in out, "-T tests and dumps the conf: %r" % out[:300])
    check(os.path.exists(g.pid_path), "pid file written")
    rc, out = t.run_llmux(["-s", "reopen", "-c", g.conf])
    eq(rc, 0, "-s reopen exit status (%s)" % out)
    wait_for(lambda: "SIGUSR1 received" in g.error_log(), 3, what="-s reopen to send SIGUSR1")
    rc, out = t.run_llmux(["-s", "bogus", "-c", g.conf])
    eq(rc, 1, "-s with an unknown signal name")
    check("invalid signal" in out, "message: %r" % out)
    eq(g.proc.poll(), None, "llmux still running")
