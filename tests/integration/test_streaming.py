# test_streaming.py -- SSE is relayed event by event as the upstream produces
# it (no buffering), ends properly, survives concurrency; a client that goes
# away closes the upstream request; an upstream that dies mid-stream ends the
# client's stream with an error event, [DONE] and a proper chunked ending.
import json
import threading
import time

from lib import (Stream, chat_body, check, dechunk, eq, model_block, post,
                 raw_connect, recv_until_close, sse_content, stream, wait_for)


def setup(t, **up):
    a = t.start_upstream("A", **up)
    g = t.start_gateway("max_attempts 2;\n" + model_block("m1", [a]))
    return g, a


def content_times(s):
    return [tm for tm, d in s.events if d != "[DONE]" and "tok" in d]


def test_stream_relayed_as_produced(t):
    g, a = setup(t, chunks=5, chunk_interval_ms=200)
    s = stream(g, "/v1/chat/completions", chat_body("m1", stream=True))
    eq(s.status, 200, "status")
    check(s.error is None, "stream ended with %r" % s.error)
    check(s.headers.get("content-type", "").startswith("text/event-stream"),
          "content-type %r" % s.headers.get("content-type"))
    times = content_times(s)
    eq(len(times), 5, "content events")
    spread = times[-1] - times[0]
    check(spread >= 0.6, "first and last chunk arrived %.3fs apart; expected >= 0.6s "
          "(chunks 200ms apart upstream): the gateway buffers" % spread)
    first = times[0] - s.t0
    check(first < 0.4, "first chunk took %.3fs (the upstream sends it at once)" % first)
    gaps = [b - a_ for a_, b in zip(times, times[1:])]
    check(min(gaps) > 0.1, "chunk gaps %r: some chunks arrived together" % gaps)


def test_stream_content_and_done(t):
    g, a = setup(t)
    s = stream(g, "/v1/chat/completions",
               chat_body("m1", stream=True, stream_options={"include_usage": True}))
    eq(s.status, 200, "status")
    check(s.error is None and s.done, "stream did not end cleanly: %r" % s.error)
    d = s.datas()
    eq(d[-1], "[DONE]", "last event")
    eq(sse_content(d), "".join("tok%d " % i for i in range(8)), "content")
    usage = [json.loads(x) for x in d[:-1] if json.loads(x).get("usage")]
    eq(len(usage), 1, "usage chunks")
    eq(len(d), 8 + 1 + 1 + 1, "events (8 content, finish, usage, DONE)")
    check(s.headers.get("x-llmux-model") == "m1", "x-llmux-model on a stream")


def test_stream_raw_chunked_framing(t):
    g, a = setup(t, chunks=3)
    body = json.dumps(chat_body("m1", stream=True)).encode()
    s = raw_connect(g)
    try:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                  % (len(body), body))
        data, closed = recv_until_close(s, 10)
    finally:
        s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    check(head.startswith(b"HTTP/1.1 200"), "status line %r" % head[:40])
    check(b"transfer-encoding: chunked" in head.lower(), "not chunked: %r" % head)
    payload, complete = dechunk(rest)
    check(complete, "chunked body not terminated: %r" % rest[-80:])
    check(payload.endswith(b"data: [DONE]\n\n"), "payload end %r" % payload[-40:])


def test_completions_stream(t):
    g, a = setup(t, chunks=4)
    s = stream(g, "/v1/completions", {"model": "m1", "prompt": "x", "stream": True})
    eq(s.status, 200, "status")
    eq(sse_content(s.datas()), "tok0 tok1 tok2 tok3 ", "text")
    eq(s.datas()[-1], "[DONE]", "last event")


def test_concurrent_streams(t):
    g, a = setup(t, chunks=10, chunk_interval_ms=20)
    results = [None] * 16

    def one(i):
        try:
            s = stream(g, "/v1/chat/completions", chat_body("m1", "u%d" % i, stream=True))
            results[i] = (s.status, sse_content(s.datas()), s.datas()[-1] if s.events else None,
                          s.error)
        except Exception as e:  # reported below
            results[i] = ("exc", repr(e), None, None)
    th = [threading.Thread(target=one, args=(i,)) for i in range(len(results))]
    for x in th:
        x.start()
    for x in th:
        x.join(20)
    want = (200, "".join("tok%d " % i for i in range(10)), "[DONE]", None)
    for i, r in enumerate(results):
        eq(r, want, "stream %d" % i)


def test_client_disconnect_cancels_upstream(t):
    g, a = setup(t, chunks=100, chunk_interval_ms=100)
    from lib import metric_sum
    # the /metrics request may count itself: compare with an idle gateway
    idle = metric_sum(g.metrics(), "llmux_requests_in_flight")
    s = Stream(g, "/v1/chat/completions", chat_body("m1", stream=True))
    eq(s.status, 200, "status")
    s.next_event()
    s.next_event()
    eq(a.stats()["cancelled"], 0, "cancelled before the disconnect")
    t0 = time.monotonic()
    s.close()
    wait_for(lambda: a.stats()["cancelled"] >= 1, 2.0,
             what="fake upstream to see the stream cancelled")
    dt = time.monotonic() - t0
    check(dt <= 1.0, "upstream saw the cancel after %.2fs (> 1s)" % dt)
    wait_for(lambda: a.stats()["in_flight"] == 0, 2.0, what="upstream in_flight back to 0")
    # the gateway keeps serving, nothing left in flight
    eq(post(g, "/v1/chat/completions", chat_body("m1")).status, 200, "next request")
    eq(metric_sum(g.metrics(), "llmux_requests_in_flight"), idle,
       "llmux_requests_in_flight after the disconnect (as when idle)")


def test_upstream_dies_midstream(t):
    g, a = setup(t, chunks=8, chunk_interval_ms=20)
    s = stream(g, "/v1/chat/completions", chat_body("m1", stream=True, fake_die_after_chunks=3))
    eq(s.status, 200, "status (headers went out before the upstream died)")
    check(s.error is None and s.done,
          "client's stream should end properly (terminated chunked body), got %r" % s.error)
    d = s.datas()
    eq(sse_content([x for x in d if "error" not in x]), "tok0 tok1 tok2 ", "content before death")
    check(len(d) >= 2, "events %r" % d)
    eq(d[-1], "[DONE]", "last event after the error")
    err = json.loads(d[-2])
    check(isinstance(err.get("error"), dict) and "message" in err["error"],
          "error event should be {\"error\":{...}}: %r" % d[-2])
    # nothing is retried after the first byte
    eq(a.stats()["requests"], 1 + 1, "upstream requests (the stream + this /stats)")


def test_upstream_dies_before_first_chunk_midstream_raw(t):
    # dies right after sending its headers: still "after the first byte"
    # only if the gateway relayed the headers; either a clean error event
    # stream or a retried/failed answer is acceptable, never a hang or a
    # broken chunked body
    g, a = setup(t)
    body = json.dumps(chat_body("m1", stream=True, fake_die_after_chunks=0)).encode()
    s = raw_connect(g)
    try:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                  % (len(body), body))
        data, closed = recv_until_close(s, 10)
    finally:
        s.close()
    check(closed, "connection not closed")
    head, _, rest = data.partition(b"\r\n\r\n")
    check(head.startswith(b"HTTP/1.1 "), "no response: %r" % data[:100])
    if b"chunked" in head.lower():
        payload, complete = dechunk(rest)
        check(complete, "chunked body not terminated: %r" % rest[-80:])
        check(b'"error"' in payload and payload.endswith(b"data: [DONE]\n\n"),
              "payload %r" % payload[-200:])
    else:
        status = int(head[9:12])
        check(status in (502, 503, 504), "status %d for an upstream that died at once" % status)


def test_stream_not_buffered_with_small_chunks_and_idle_gap(t):
    # one chunk, then a long gap: the chunk must reach the client during the gap
    g, a = setup(t, chunks=2, chunk_interval_ms=800)
    s = Stream(g, "/v1/chat/completions", chat_body("m1", stream=True))
    ev = s.next_event()
    dt = time.monotonic() - s.t0
    check(ev is not None and "tok0" in ev, "first event %r" % ev)
    check(dt < 0.5, "first event arrived after %.2fs; the upstream sent it at once" % dt)
    s.read_all()
    eq(s.datas()[-1], "[DONE]", "last event")
