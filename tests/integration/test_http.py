# test_http.py -- HTTP/1.1 details of the client side: keep-alive, pipelining
# (answers in order), chunked request bodies forwarded with the same bytes,
# HTTP/1.0 clients (closed after the answer), Connection: close, big and slow
# bodies; unix sockets on both sides (listen unix:, upstream unix:).
import json
import os
import time

from lib import (chat_body, check, connect, eq, get, model_block,
                 parse_response, parse_responses, post, raw_connect,
                 recv_until_close, request, sha256, stream)


def setup(t, extra=""):
    a = t.start_upstream("A")
    conf = extra + model_block("m1", [a]) + model_block("emb", [a], "task embed;")
    return t.start_gateway(conf), a


def http_req(path, body, extra_headers=b"", version=b"1.1"):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    return (b"POST " + path.encode() + b" HTTP/" + version + b"\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
            % (len(body), extra_headers, body))


def read_responses(s, n, timeout=10):
    buf = b""
    s.settimeout(timeout)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rs = parse_responses(buf)
        if len(rs) >= n:
            return rs
        d = s.recv(65536)
        if not d:
            break
        buf += d
    return parse_responses(buf)


def test_keepalive(t):
    g, a = setup(t)
    s = raw_connect(g)
    try:
        for i in range(5):
            body = json.dumps(chat_body("m1", "k%d" % i)).encode()
            s.sendall(http_req("/v1/chat/completions", body))
            rs = read_responses(s, 1)
            eq(len(rs), 1, "response %d on the kept-alive connection" % i)
            eq(rs[0].status, 200, "status %d" % i)
            eq(rs[0].header("x-fake-body-sha256"), sha256(body), "body sha %d" % i)
            check((rs[0].header("connection") or "").lower() != "close",
                  "gateway asked to close a keep-alive connection")
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        eq(read_responses(s, 1)[0].status, 200, "local GET on the same connection")
    finally:
        s.close()


def test_pipelining_in_order(t):
    g, a = setup(t)
    b1 = json.dumps(chat_body("m1", "first", fake_delay_ms=300)).encode()
    b2 = json.dumps(chat_body("m1", "second")).encode()
    b3 = json.dumps({"model": "emb", "input": "third"}).encode()
    data = (http_req("/v1/chat/completions", b1) + http_req("/v1/chat/completions", b2) +
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" + http_req("/v1/embeddings", b3))
    s = raw_connect(g)
    try:
        s.sendall(data)                  # all four in one write
        rs = read_responses(s, 4)
    finally:
        s.close()
    eq(len(rs), 4, "responses to 4 pipelined requests")
    eq([r.status for r in rs], [200, 200, 200, 200], "statuses")
    eq(rs[0].header("x-fake-body-sha256"), sha256(b1), "1st response is the 1st request's")
    eq(json.loads(rs[0].body)["choices"][0]["message"]["content"], "A: first", "1st content")
    eq(rs[1].header("x-fake-body-sha256"), sha256(b2), "2nd response is the 2nd request's")
    eq(json.loads(rs[2].body).get("status"), "ok", "3rd is /health")
    eq(rs[3].header("x-fake-body-sha256"), sha256(b3), "4th response is the 4th request's")


def test_chunked_request_body(t):
    g, a = setup(t)
    body = json.dumps(chat_body("m1", "chunked " + "z" * 5000)).encode()
    pieces = [body[:7], body[7:100], body[100:4000], body[4000:]]
    s = raw_connect(g)
    try:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        for p in pieces:
            s.sendall(b"%x;ext=1\r\n%s\r\n" % (len(p), p))
            time.sleep(0.05)
        s.sendall(b"0\r\nX-Trailer: y\r\n\r\n")
        rs = read_responses(s, 1)
        eq(len(rs), 1, "response to a chunked request")
        eq(rs[0].status, 200, "status (%r)" % rs[0].body[:200])
        eq(rs[0].header("x-fake-body-sha256"), sha256(body), "forwarded body sha256")
        # and the connection is still usable
        s.sendall(http_req("/v1/chat/completions", chat_body("m1")))
        eq(read_responses(s, 1)[0].status, 200, "next request on the same connection")
    finally:
        s.close()


def test_http10_client(t):
    g, a = setup(t)
    body = json.dumps(chat_body("m1", "old")).encode()
    s = raw_connect(g)
    try:
        s.sendall(http_req("/v1/chat/completions", body, version=b"1.0"))
        data, closed = recv_until_close(s, 5)
    finally:
        s.close()
    check(closed, "HTTP/1.0 connection not closed after the response")
    r, rest = parse_response(data)
    check(r is not None, "no response: %r" % data[:200])
    eq(r.status, 200, "status")
    check("chunked" not in (r.header("transfer-encoding") or ""),
          "chunked encoding sent to an HTTP/1.0 client")
    eq(json.loads(r.body)["choices"][0]["message"]["content"], "A: old", "content")
    eq(r.header("x-fake-body-sha256"), sha256(body), "body sha")


def test_http10_stream(t):
    g, a = setup(t)
    body = json.dumps(chat_body("m1", stream=True, fake_chunks=3)).encode()
    s = raw_connect(g)
    try:
        s.sendall(http_req("/v1/chat/completions", body, version=b"1.0"))
        data, closed = recv_until_close(s, 5)
    finally:
        s.close()
    check(closed, "HTTP/1.0 stream not closed at its end")
    head, _, payload = data.partition(b"\r\n\r\n")
    check(b" 200 " in head.split(b"\r\n")[0], "status line %r" % head[:40])
    check(b"chunked" not in head.lower(), "chunked encoding sent to an HTTP/1.0 client")
    check(payload.count(b"data: ") == 3 + 1 + 1 and payload.endswith(b"data: [DONE]\n\n"),
          "SSE payload %r" % payload[-200:])


def test_connection_close_header(t):
    g, a = setup(t)
    s = raw_connect(g)
    try:
        s.sendall(http_req("/v1/chat/completions", chat_body("m1"), b"Connection: close\r\n"))
        data, closed = recv_until_close(s, 5)
    finally:
        s.close()
    check(closed, "connection not closed after Connection: close")
    r, _ = parse_response(data)
    eq(r.status, 200, "status")


def test_large_body_and_response(t):
    g, a = setup(t, "client_max_body_size 2m;\n")
    big = chat_body("m1", "x" * (1536 * 1024))
    raw = json.dumps(big).encode()
    r = post(g, "/v1/chat/completions", raw, headers={"Content-Type": "application/json"})
    eq(r.status, 200, "status of a 1.5 MiB body")
    eq(r.header("x-fake-body-sha256"), sha256(raw), "sha of a 1.5 MiB body")
    eq(len(r.json()["choices"][0]["message"]["content"]), 3 + 1536 * 1024, "echoed content")


def test_slow_client_body(t):
    g, a = setup(t)
    body = json.dumps(chat_body("m1", "slow")).encode()
    s = raw_connect(g)
    try:
        req = http_req("/v1/chat/completions", body)
        for i in range(0, len(req), 10):
            s.sendall(req[i:i + 10])
            time.sleep(0.01)
        rs = read_responses(s, 1)
    finally:
        s.close()
    eq(rs[0].status, 200, "status")
    eq(rs[0].header("x-fake-body-sha256"), sha256(body), "sha")


def test_unix_listen(t):
    a = t.start_upstream("A")
    sock = os.path.join(t.dir, "gw.sock")
    g = t.start_gateway(model_block("m1", [a]), listen="unix:" + sock)
    eq(g.addr, "unix:" + sock, "gateway address")
    r = post(g, "/v1/chat/completions", chat_body("m1", "over unix"))
    eq(r.status, 200, "status over a unix socket")
    eq(r.json()["choices"][0]["message"]["content"], "A: over unix", "content")
    eq(get(g, "/health").status, 200, "health over a unix socket")
    s = stream(g, "/v1/chat/completions", chat_body("m1", stream=True))
    eq(s.datas()[-1], "[DONE]", "stream over a unix socket")


def test_unix_upstream(t):
    path = os.path.join(t.dir, "emb.sock")
    e = t.start_upstream("E", listen="unix:" + path)
    eq(e.url, "unix:" + path, "upstream url")
    g = t.start_gateway(model_block("emb", [e], "task embed;") + model_block("c", [e]))
    body = json.dumps({"model": "emb", "input": ["a", "b"]})
    r = post(g, "/v1/embeddings", body, headers={"Content-Type": "application/json"})
    eq(r.status, 200, "status via a unix upstream (%r)" % r.body[:200])
    eq(r.header("x-llmux-backend"), "emb#0", "backend")
    eq(r.header("x-fake-body-sha256"), sha256(body), "sha")
    eq(len(r.json()["data"]), 2, "vectors")
    s = stream(g, "/v1/chat/completions", chat_body("c", stream=True))
    eq(s.status, 200, "stream status via a unix upstream")
    eq(s.datas()[-1], "[DONE]", "stream via a unix upstream")


def test_many_keepalive_clients(t):
    # 50 clients with 10 requests each on their own connections
    import threading
    g, a = setup(t)
    bad = []

    def client(k):
        c = connect(g)
        try:
            for i in range(10):
                r = request(g, "POST", "/v1/chat/completions",
                            body=chat_body("m1", "c%d-%d" % (k, i)), conn=c)
                if r.status != 200 or r.json()["choices"][0]["message"]["content"] != \
                        "A: c%d-%d" % (k, i):
                    bad.append((k, i, r.status, r.body[:100]))
        except Exception as e:
            bad.append((k, repr(e)))
        finally:
            c.close()
    th = [threading.Thread(target=client, args=(k,)) for k in range(50)]
    for x in th:
        x.start()
    for x in th:
        x.join(30)
    check(not bad, "bad answers: %r" % bad[:5])


def test_upstream_connections_reused(t):
    # the gateway keeps idle upstream connections: sequential requests, even
    # from separate client connections, do not each open a new one
    g, a = setup(t)
    for i in range(20):
        eq(post(g, "/v1/chat/completions", chat_body("m1", "p%d" % i)).status, 200, "status")
    for i in range(5):
        s = stream(g, "/v1/chat/completions", chat_body("m1", stream=True))
        eq(s.datas()[-1], "[DONE]", "stream %d" % i)
    st = a.stats()
    check(st["connections"] <= 3, "upstream saw %d connections for 25 sequential requests "
          "(+ /stats): keep-alive to the upstream is not used" % st["connections"])
