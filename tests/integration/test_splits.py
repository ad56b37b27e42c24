# test_splits.py -- a route splits traffic by weight (smooth weighted round
# robin: exact to within a few requests), keeps a user on one arm when sticky
# by header or by the body's `user` field, and ignores arms of weight 0.
import json
import threading

from lib import check, chat_body, connect, eq, model_block, request


def setup(t, route):
    m1 = t.start_upstream("M1")
    m2 = t.start_upstream("M2")
    conf = model_block("m1", [m1]) + model_block("m2", [m2]) + route
    return t.start_gateway(conf)


def count_models(g, n, conns=4, body_fn=None, headers_fn=None):
    """Sends n requests over <conns> keep-alive connections; returns
    {model: count} and checks every answer came from that model's upstream."""
    counts = {}
    errors = []
    lock = threading.Lock()
    per = n // conns

    def worker(k):
        c = connect(g)
        try:
            for i in range(per):
                idx = k * per + i
                body = body_fn(idx) if body_fn else chat_body("ab")
                hdrs = headers_fn(idx) if headers_fn else {}
                r = request(g, "POST", "/v1/chat/completions", body=body, headers=hdrs, conn=c)
                m = r.header("x-llmux-model")
                with lock:
                    if r.status != 200 or r.header("x-fake-upstream") != (m or "").upper():
                        errors.append((idx, r.status, m, r.header("x-fake-upstream")))
                    counts[m] = counts.get(m, 0) + 1
        finally:
            c.close()
    th = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
    for x in th:
        x.start()
    for x in th:
        x.join(60)
    check(not errors, "bad answers: %r" % errors[:5])
    eq(sum(counts.values()), per * conns, "answers")
    return counts


def test_split_90_10(t):
    g = setup(t, "route ab { split m1 90; split m2 10; }\n")
    counts = count_models(g, 1000)
    check(890 <= counts.get("m1", 0) <= 910 and 90 <= counts.get("m2", 0) <= 110,
          "90/10 split over 1000 requests gave %r (want 900±10 / 100±10)" % counts)


def test_split_smooth_in_small_windows(t):
    # smooth WRR: 3/1 gives exactly 3 m1 and 1 m2 in every 4 consecutive picks
    g = setup(t, "route ab { split m1 3; split m2 1; }\n")
    c = connect(g)
    seq = []
    try:
        for i in range(40):
            r = request(g, "POST", "/v1/chat/completions", body=chat_body("ab"), conn=c)
            eq(r.status, 200, "status")
            seq.append(r.header("x-llmux-model"))
    finally:
        c.close()
    eq(seq.count("m1"), 30, "m1 picks out of 40 with weights 3/1 (%s)" % " ".join(seq))
    for i in range(0, 40, 4):
        eq(seq[i:i + 4].count("m2"), 1, "m2 picks in window %d (%s)" % (i, " ".join(seq)))


def test_sticky_header(t):
    g = setup(t, "route ab { split m1 50; split m2 50; sticky header:X-User; }\n")
    users = ["user-%d" % i for i in range(20)]
    arm = {}
    c = connect(g)
    try:
        for rnd in range(4):
            for u in users:
                r = request(g, "POST", "/v1/chat/completions", body=chat_body("ab"),
                            headers={"X-User": u}, conn=c)
                eq(r.status, 200, "status")
                m = r.header("x-llmux-model")
                if u in arm:
                    eq(m, arm[u], "arm of %s in round %d" % (u, rnd))
                arm[u] = m
        # header names are case-insensitive
        for u in users[:5]:
            r = request(g, "POST", "/v1/chat/completions", body=chat_body("ab"),
                        headers={"x-user": u}, conn=c)
            eq(r.header("x-llmux-model"), arm[u], "arm of %s with a lower-case header" % u)
        # without the header the route still answers
        r = request(g, "POST", "/v1/chat/completions", body=chat_body("ab"), conn=c)
        eq(r.status, 200, "status without the sticky header")
    finally:
        c.close()
    eq(set(arm.values()), {"m1", "m2"}, "20 users spread over both arms")


def test_sticky_field(t):
    g = setup(t, "route ab { split m1 50; split m2 50; sticky field:user; }\n")
    arm = {}
    c = connect(g)
    try:
        for rnd in range(3):
            for i in range(20):
                u = "u%d" % i
                r = request(g, "POST", "/v1/chat/completions",
                            body=json.dumps(chat_body("ab", user=u)),
                            headers={"Content-Type": "application/json"}, conn=c)
                eq(r.status, 200, "status")
                m = r.header("x-llmux-model")
                if u in arm:
                    eq(m, arm[u], "arm of user %s in round %d" % (u, rnd))
                arm[u] = m
    finally:
        c.close()
    eq(set(arm.values()), {"m1", "m2"}, "20 users spread over both arms")


def test_weight_zero_arm_disabled(t):
    g = setup(t, "route ab { split m1 1; split m2 0; }\n")
    counts = count_models(g, 40, conns=2)
    eq(counts, {"m1": 40}, "picks with m2 at weight 0")
