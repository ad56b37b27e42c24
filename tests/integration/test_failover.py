# test_failover.py -- connection refused and 502/503 before the first byte
# fail over to the next backend of the model, then to the route's fallback,
# bounded by max_attempts; 429/4xx/500 pass through unretried; failed
# backends are marked down for fail_timeout and /health, /v1/models and
# llmux_backend_up say so; they come back after fail_timeout.
import time

from lib import (chat_body, check, eq, expect_openai_error, free_port, get,
                 metric_find, metric_sum, model_block, post)

BASE = "max_attempts 3; max_fails 1; fail_timeout 10s; connect_timeout 1s;\n"


def dead_url():
    return "http://127.0.0.1:%d" % free_port()


def upstream_requests(*ups):
    # each stats() call counts itself once
    return sum(u.stats()["requests"] - 1 for u in ups)


def test_connection_refused_fails_over(t):
    b = t.start_upstream("B")
    g = t.start_gateway(BASE + model_block("m1", [dead_url(), b]))
    for i in range(6):
        r = post(g, "/v1/chat/completions", chat_body("m1", "q%d" % i))
        eq(r.status, 200, "request %d status" % i)
        eq(r.header("x-llmux-backend"), "m1#1", "request %d backend" % i)
        eq(r.header("x-fake-upstream"), "B", "request %d upstream" % i)
    eq(upstream_requests(b), 6, "B saw each request once")
    s = g.metrics()
    check(metric_sum(s, "llmux_upstream_connect_errors_total") >= 1,
          "llmux_upstream_connect_errors_total >= 1")
    up = {l.get("backend"): v for l, v in metric_find(s, "llmux_backend_up", model="m1")}
    eq(sorted(up.values()), [0.0, 1.0], "llmux_backend_up for m1 (%r)" % up)


def test_503_and_502_fail_over(t):
    for code in (503, 502):
        a = t.start_upstream("A%d" % code, status=code)
        b = t.start_upstream("B%d" % code)
        g = t.start_gateway(BASE + model_block("m1", [a, b]), name="c%d.conf" % code,
                            listen="127.0.0.1:%d" % free_port())
        for i in range(4):
            r = post(g, "/v1/chat/completions", chat_body("m1"))
            eq(r.status, 200, "%d upstream: request %d status" % (code, i))
            eq(r.header("x-fake-upstream"), "B%d" % code, "%d upstream: request %d" % (code, i))
        check(upstream_requests(a) <= 1, "a backend answering %d is marked down after one "
              "failure (max_fails 1): it saw %d requests" % (code, upstream_requests(a)))
        g.signal(15)
        g.wait_exit(10)


def test_4xx_429_500_passed_through_not_retried(t):
    a = t.start_upstream("A")
    b = t.start_upstream("B")
    g = t.start_gateway(BASE + model_block("m1", [a, b]))
    n = 0
    for code in (429, 400, 401, 404, 422, 500):
        for i in range(2):
            r = post(g, "/v1/chat/completions", chat_body("m1", fake_status=code))
            n += 1
            eq(r.status, code, "upstream %d passed through" % code)
            j = r.json()
            check(j.get("fake_upstream") in ("A", "B"),
                  "the upstream's own error body is relayed for %d: %r" % (code, j))
    eq(upstream_requests(a, b), n, "upstream requests (no retries)")
    # and those answers did not take the backends down
    r = get(g, "/v1/models/m1")
    eq(r.json()["llmux"]["backends"], {"healthy": 2, "total": 2}, "m1 backends")


def test_fallback_model(t):
    m2 = t.start_upstream("M2")
    conf = (BASE + model_block("m1", [dead_url(), dead_url()]) + model_block("m2", [m2]) +
            "route r { split m1 100; fallback m2; }\n")
    g = t.start_gateway(conf)
    for i in range(3):
        r = post(g, "/v1/chat/completions", chat_body("r"))
        eq(r.status, 200, "request %d via fallback" % i)
        eq(r.header("x-llmux-model"), "m2", "x-llmux-model after fallback")
        eq(r.header("x-llmux-backend"), "m2#0", "x-llmux-backend after fallback")


def test_fallback_after_503s(t):
    a = t.start_upstream("A", status=503)
    m2 = t.start_upstream("M2")
    conf = (BASE + model_block("m1", [a]) + model_block("m2", [m2]) +
            "route r { split m1 1; fallback m2; }\n")
    g = t.start_gateway(conf)
    r = post(g, "/v1/chat/completions", chat_body("r"))
    eq(r.status, 200, "status")
    eq(r.header("x-fake-upstream"), "M2", "answered by the fallback")


def test_all_down_503_and_health(t):
    ok = t.start_upstream("OK")
    conf = (BASE + model_block("m1", [dead_url(), dead_url()]) + model_block("m2", [ok]))
    g = t.start_gateway(conf)
    eq(get(g, "/health").status, 200, "health before any failure (passive checks)")
    r = post(g, "/v1/chat/completions", chat_body("m1"))
    expect_openai_error(r, 503, "every backend refuses")
    r = post(g, "/v1/chat/completions", chat_body("m1"))
    expect_openai_error(r, 503, "every backend down")
    eq(post(g, "/v1/chat/completions", chat_body("m2")).status, 200, "m2 still serves")
    h = get(g, "/health")
    eq(h.status, 503, "health with m1 down")
    check("m1" in h.body.decode(), "health details should name m1: %r" % h.body)
    m = get(g, "/v1/models/m1").json()["llmux"]
    eq(m["state"], "down", "m1 state")
    eq(m["backends"], {"healthy": 0, "total": 2}, "m1 backends")
    eq(get(g, "/v1/models/m2").json()["llmux"]["state"], "ready", "m2 state")
    up = metric_find(g.metrics(), "llmux_backend_up", model="m1")
    eq(sorted(v for _, v in up), [0.0, 0.0], "llmux_backend_up for m1")


def test_max_attempts_bound(t):
    ups = [t.start_upstream("U%d" % i, status=503) for i in range(4)]
    conf = ("max_attempts 2; max_fails 5; fail_timeout 10s;\n" + model_block("m1", ups))
    g = t.start_gateway(conf)
    r = post(g, "/v1/chat/completions", chat_body("m1"))
    eq(r.status, 503, "status when every attempt got 503")
    eq(upstream_requests(*ups), 2, "upstream attempts with max_attempts 2")


def test_kill_upstream_mid_test(t):
    a = t.start_upstream("A")
    b = t.start_upstream("B")
    g = t.start_gateway(BASE + model_block("m1", [a, b]))
    for i in range(6):     # warms keep-alive connections to both
        eq(post(g, "/v1/chat/completions", chat_body("m1")).status, 200, "warm-up %d" % i)
    a.kill()
    for i in range(10):
        r = post(g, "/v1/chat/completions", chat_body("m1", "after %d" % i))
        eq(r.status, 200, "request %d after A was killed (%r)" % (i, r.body[:200]))
        eq(r.header("x-fake-upstream"), "B", "request %d answered by" % i)
    eq(get(g, "/health").status, 200, "health with one of two backends up")
    m = get(g, "/v1/models/m1").json()["llmux"]
    eq(m["state"], "degraded", "m1 state")
    eq(m["backends"], {"healthy": 1, "total": 2}, "m1 backends")


def test_backend_comes_back_after_fail_timeout(t):
    a = t.start_upstream("A")
    b = t.start_upstream("B")
    conf = "max_attempts 3; max_fails 1; fail_timeout 1s;\n" + model_block("m1", [a, b])
    g = t.start_gateway(conf)
    a.kill()
    for i in range(4):
        eq(post(g, "/v1/chat/completions", chat_body("m1")).status, 200, "with A dead")
    a.restart()
    time.sleep(1.3)
    import threading
    seen, statuses = set(), []

    def one():
        r = post(g, "/v1/chat/completions", chat_body("m1", fake_delay_ms=300))
        statuses.append(r.status)
        seen.add(r.header("x-fake-upstream"))
    for i in range(3):     # two at once: least-loaded must use both backends
        th = [threading.Thread(target=one) for _ in range(2)]
        for x in th:
            x.start()
        for x in th:
            x.join(10)
        if "A" in seen:
            break
    eq(set(statuses), {200}, "statuses after A came back")
    check("A" in seen, "A never used again after fail_timeout (answered by %r)" % seen)


def test_no_retry_after_first_byte(t):
    a = t.start_upstream("A", chunks=6)
    b = t.start_upstream("B", chunks=6)
    g = t.start_gateway(BASE + model_block("m1", [a, b]))
    from lib import stream
    s = stream(g, "/v1/chat/completions", chat_body("m1", stream=True, fake_die_after_chunks=2))
    eq(s.status, 200, "status")
    eq(upstream_requests(a, b), 1, "upstream requests: a broken stream is not retried")
    check(any('"error"' in d for d in s.datas()), "error event in %r" % s.datas())
