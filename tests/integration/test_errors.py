# test_errors.py -- every error the gateway answers itself has the right
# status and OpenAI's shape {"error":{"message","type","param","code"}}:
# unknown model (with close names), bad JSON, bad "model", body too large,
# no healthy backend, upstream timeout, wrong method, unknown path; malformed
# HTTP gets a 400 and a closed connection.
import time

from lib import (chat_body, check, eq, expect_openai_error, free_port, get,
                 model_block, parse_response, post, raw_exchange, request)


def setup(t, extra_http="", **up):
    a = t.start_upstream("A", **up)
    conf = (extra_http +
            model_block("m1", [a], "alias gpt-m1;") +
            model_block("emb", [a], "task embed;") +
            "route chat { split m1 1; }\n")
    return t.start_gateway(conf), a


def test_unknown_model_404_suggests(t):
    g, a = setup(t)
    for asked in ("m11", "m", "emd"):
        r = post(g, "/v1/chat/completions", chat_body(asked))
        e = expect_openai_error(r, 404, "model %r" % asked)
        check(asked in e["message"], "message should name %r: %r" % (asked, e["message"]))
    for asked in ("m11", "m"):
        e = post(g, "/v1/chat/completions", chat_body(asked)).json()["error"]
        check("m1" in e["message"].replace("m11", ""),
              "asking %r: message should suggest 'm1': %r" % (asked, e["message"]))
    e = post(g, "/v1/embeddings", {"model": "emd", "input": "x"}).json()["error"]
    check("emb" in e["message"], "asking 'emd': message should suggest 'emb': %r" % e["message"])
    eq(a.stats()["requests"], 1, "upstream requests (only the /stats call itself)")


def test_malformed_json_400(t):
    g, a = setup(t)
    for body in (b'{"model": "m1", ', b'not json', b'', b'{"model":"m1"}garbage',
                 b'\xff\xfe{}'):
        r = post(g, "/v1/chat/completions", body, headers={"Content-Type": "application/json"})
        expect_openai_error(r, 400, "body %r" % body)


def test_model_missing_or_not_string_400(t):
    g, a = setup(t)
    for body in ({"messages": []}, {"model": 12}, {"model": None}, {"model": ["m1"]},
                 {"model": {"name": "m1"}}, [{"model": "m1"}], "m1"):
        r = post(g, "/v1/chat/completions", body)
        e = expect_openai_error(r, 400, "body %r" % (body,))
        if isinstance(body, dict):
            check("model" in e["message"] or e.get("param") == "model",
                  "error for %r should mention model: %r" % (body, e))


def test_body_too_large_413(t):
    g, a = setup(t, "client_max_body_size 1k;\n")
    ok = chat_body("m1", "x" * 800)
    eq(post(g, "/v1/chat/completions", ok).status, 200, "body under the limit")
    big = chat_body("m1", "x" * 4000)
    r = post(g, "/v1/chat/completions", big)
    expect_openai_error(r, 413, "4k body with 1k limit")
    # the limit applies to chunked bodies too
    from lib import raw_connect, recv_until_close
    s = raw_connect(g)
    try:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        payload = b'{"model":"m1","pad":"' + b"y" * 3000 + b'"}'
        for i in range(0, len(payload), 500):
            part = payload[i:i + 500]
            s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        s.sendall(b"0\r\n\r\n")
        data, _ = recv_until_close(s, 5)
    finally:
        s.close()
    r, _ = parse_response(data)
    check(r is not None, "no response to an oversized chunked body: %r" % data[:200])
    expect_openai_error(r, 413, "oversized chunked body")
    eq(a.stats()["requests"], 2, "upstream saw only the small request (+ /stats)")


def test_no_healthy_backend_503(t):
    dead = free_port()
    conf = ("max_fails 1; fail_timeout 30s;\n" +
            model_block("m1", ["http://127.0.0.1:%d" % dead]))
    g = t.start_gateway(conf)
    r1 = post(g, "/v1/chat/completions", chat_body("m1"))
    expect_openai_error(r1, 503, "first request to a refused backend")
    r2 = post(g, "/v1/chat/completions", chat_body("m1"))
    expect_openai_error(r2, 503, "request while the only backend is down")


def test_upstream_timeout_504(t):
    a = t.start_upstream("A", delay_ms=5000)
    g = t.start_gateway(model_block("slow", [a], "timeout 1s;"))
    t0 = time.monotonic()
    r = post(g, "/v1/chat/completions", chat_body("slow"), timeout=10)
    dt = time.monotonic() - t0
    expect_openai_error(r, 504, "upstream slower than the model's timeout")
    check(0.8 <= dt <= 3.5, "504 should come after ~1s, came after %.2fs" % dt)


def test_hanging_upstream_504_and_upstream_closed(t):
    a = t.start_upstream("A", hang=True)
    g = t.start_gateway("max_attempts 1;\n" + model_block("h", [a], "timeout 1s;"))
    r = post(g, "/v1/chat/completions", chat_body("h"), timeout=10)
    expect_openai_error(r, 504, "hanging upstream")
    # the gateway gives up on the upstream connection: the fake sees it go
    from lib import wait_for
    wait_for(lambda: a.stats()["cancelled"] >= 1, 3,
             what="upstream to see its hanging request's connection closed")


def test_wrong_method_405(t):
    g, a = setup(t)
    for method, path, allow in (("GET", "/v1/chat/completions", "POST"),
                                ("PUT", "/v1/embeddings", "POST"),
                                ("DELETE", "/v1/chat/completions", "POST"),
                                ("POST", "/v1/models", "GET"),
                                ("POST", "/health", "GET"),
                                ("POST", "/metrics", "GET")):
        r = request(g, method, path, body=b"{}" if method != "GET" else None)
        expect_openai_error(r, 405, "%s %s" % (method, path))
        al = r.header("allow")
        check(al is not None and allow in al, "%s %s: Allow header %r should include %s"
              % (method, path, al, allow))


def test_unknown_path_404(t):
    g, a = setup(t)
    for method, path in (("POST", "/v1/nope"), ("GET", "/nope"), ("POST", "/v1/chat"),
                         ("GET", "/v1/models/m1/extra"), ("POST", "/"),
                         ("POST", "/v1/chat/completions/x")):
        r = request(g, method, path, body=b'{"model":"m1"}' if method == "POST" else None)
        expect_openai_error(r, 404, "%s %s" % (method, path))


def test_query_string_ignored_for_routing(t):
    g, a = setup(t)
    r = post(g, "/v1/chat/completions?foo=bar", chat_body("m1"))
    eq(r.status, 200, "status with a query string")
    check(r.header("x-fake-path") == "/v1/chat/completions", "path %r" % r.header("x-fake-path"))


def test_malformed_http_400_and_close(t):
    g, a = setup(t)
    for data in (b"GARBAGE\r\n\r\n",
                 b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
                 b"POST /v1/chat/completions HTTP/9.9\r\n\r\n",
                 b"POST /v1/chat/completions HTTP/1.1\r\nBad Header Line\r\n\r\n",
                 b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"):
        buf, closed = raw_exchange(g, data, timeout=5)
        check(closed, "connection not closed after %r" % data)
        r, _ = parse_response(buf)
        check(r is not None, "no HTTP response to %r: %r" % (data, buf[:200]))
        check(r.status in (400, 505) if b"9.9" in data else r.status == 400,
              "status %d for %r" % (r.status, data))
    # the gateway still serves
    eq(post(g, "/v1/chat/completions", chat_body("m1")).status, 200, "status after garbage")


def test_header_too_large(t):
    g, a = setup(t)
    data = (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (256 * 1024) + b"\r\n\r\n")
    from lib import raw_connect, recv_until_close
    s = raw_connect(g, 10)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        buf, closed = recv_until_close(s, 5)
    finally:
        s.close()
    check(closed, "connection not closed after a 256k header")
    r, _ = parse_response(buf)
    check(r is not None, "no response to a 256k header: %r" % buf[:200])
    check(r.status in (431, 400), "status %d for a 256k header" % r.status)
    eq(get(g, "/health").status, 200, "health after the big header")


def test_error_statuses_counted(t):
    g, a = setup(t)
    post(g, "/v1/chat/completions", chat_body("zzz"))
    post(g, "/v1/chat/completions", b"{", headers={"Content-Type": "application/json"})
    from lib import metric_sum
    s = g.metrics()
    check(metric_sum(s, "llmux_requests_total", status="404") >= 1, "404 counted")
    check(metric_sum(s, "llmux_requests_total", status="400") >= 1, "400 counted")
