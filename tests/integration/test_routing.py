# test_routing.py -- requests reach the model they name (directly, by alias or
# by route), on every proxied path, with the body forwarded byte for byte and
# the x-llmux-* headers set; local endpoints (/v1/models, /health, /version,
# /metrics) describe the configuration.
import json
import uuid

from lib import (chat_body, check, eq, expect_openai_error, get, metric_find,
                 metric_sum, model_block, post, request, sha256)

PATHS_CHAT = ["/v1/chat/completions", "/v1/completions", "/tokenize",
              "/detokenize", "/invocations"]
PATHS_EMBED = ["/v1/embeddings", "/pooling"]
PATHS_RERANK = ["/v1/rerank", "/rerank", "/v2/rerank", "/v1/score", "/score"]


def setup(t, **gw_extra):
    a = t.start_upstream("A")
    b = t.start_upstream("B")
    e = t.start_upstream("E")
    r = t.start_upstream("R")
    m2 = t.start_upstream("M2")
    conf = (model_block("m1", [a, b], "alias m1-alias; task chat;") +
            model_block("m2", [m2]) +
            model_block("emb", [e], "task embed;") +
            model_block("rr", [r], "task rerank;") +
            "route ab { split m1 50; split m2 50; fallback m1; }\n")
    g = t.start_gateway(conf, **gw_extra)
    return g, {"A": a, "B": b, "E": e, "R": r, "M2": m2}


def backend_matches_upstream(r, names_by_backend):
    be = r.header("x-llmux-backend")
    up = r.header("x-fake-upstream")
    check(be in names_by_backend, "unexpected x-llmux-backend %r" % be)
    eq(up, names_by_backend[be], "upstream that answered for backend %s" % be)


def test_chat_routed_to_model(t):
    g, _ = setup(t)
    for i in range(6):
        body = json.dumps(chat_body("m1", "hi %d" % i))
        r = post(g, "/v1/chat/completions", body,
                 headers={"Content-Type": "application/json"})
        eq(r.status, 200, "status")
        eq(r.header("x-llmux-model"), "m1", "x-llmux-model")
        backend_matches_upstream(r, {"m1#0": "A", "m1#1": "B"})
        j = r.json()
        eq(j["object"], "chat.completion", "object")
        eq(j["model"], "m1", "model echoed by upstream")
        eq(j["choices"][0]["message"]["content"],
           "%s: hi %d" % (r.header("x-fake-upstream"), i), "content")
        eq(r.header("x-fake-body-sha256"), sha256(body), "sha256 of forwarded body")


def test_least_loaded_backend(t):
    # two slow requests at once: the second must go to the idle backend
    import threading
    g, _ = setup(t)
    out = []

    def one():
        out.append(post(g, "/v1/chat/completions", chat_body("m1", fake_delay_ms=600)))
    th = [threading.Thread(target=one) for _ in range(2)]
    for x in th:
        x.start()
    for x in th:
        x.join(10)
    eq(sorted(r.status for r in out), [200, 200], "statuses")
    eq(sorted(r.header("x-llmux-backend") for r in out), ["m1#0", "m1#1"],
       "backends of two concurrent requests")


def test_body_forwarded_byte_for_byte(t):
    g, _ = setup(t)
    # odd spacing, key order, escapes, unicode, duplicate-free but unusual
    # numbers: any re-encoding by the gateway changes the hash
    bodies = [
        b'{ "messages" :[{"content":"caf\\u00e9 \xe2\x98\x95","role":"user"}] ,\n'
        b'  "model"   : "m1", "temperature": 1.0e0, "top_p": 0.10 }',
        b'{"model":"m1","messages":[{"role":"user","content":"x"}],"z":[1,2,{"a":null}]}\n\n',
        b'\t{"model":"m1-alias","messages":[],"n":1}',
    ]
    for body in bodies:
        r = post(g, "/v1/chat/completions", body,
                 headers={"Content-Type": "application/json"})
        eq(r.status, 200, "status for %r" % body[:40])
        eq(r.header("x-fake-body-sha256"), sha256(body), "sha256 of forwarded %r" % body[:40])


def test_alias_routes_to_model(t):
    g, _ = setup(t)
    body = json.dumps(chat_body("m1-alias"))
    r = post(g, "/v1/chat/completions", body, headers={"Content-Type": "application/json"})
    eq(r.status, 200, "status")
    eq(r.header("x-llmux-model"), "m1", "x-llmux-model for alias")
    check(r.header("x-llmux-backend", "").startswith("m1#"),
          "backend %r" % r.header("x-llmux-backend"))
    eq(r.json()["model"], "m1-alias", "model as the upstream received it (unchanged body)")
    eq(r.header("x-fake-body-sha256"), sha256(body), "body sha256")


def test_route_picks_member(t):
    g, ups = setup(t)
    models = set()
    for i in range(10):
        r = post(g, "/v1/chat/completions", chat_body("ab"))
        eq(r.status, 200, "status")
        m = r.header("x-llmux-model")
        check(m in ("m1", "m2"), "x-llmux-model %r for route ab" % m)
        models.add(m)
        if m == "m2":
            eq(r.header("x-llmux-backend"), "m2#0", "backend")
            eq(r.header("x-fake-upstream"), "M2", "upstream")
    eq(models, {"m1", "m2"}, "members used by a 50/50 route over 10 requests")


def test_every_proxied_path(t):
    g, _ = setup(t)
    cases = ([(p, "m1") for p in PATHS_CHAT] + [(p, "emb") for p in PATHS_EMBED] +
             [(p, "rr") for p in PATHS_RERANK])
    for path, model in cases:
        body = json.dumps({"model": model, "prompt": "p", "input": "hello",
                           "query": "q", "documents": ["a", "b"],
                           "messages": [{"role": "user", "content": "x"}],
                           "text_1": "a", "text_2": "b", "tokens": [1, 2]})
        r = post(g, path, body, headers={"Content-Type": "application/json"})
        eq(r.status, 200, "status of POST %s" % path)
        eq(r.header("x-fake-path"), path, "path the upstream saw for %s" % path)
        eq(r.header("x-llmux-model"), model, "x-llmux-model for %s" % path)
        eq(r.header("x-fake-body-sha256"), sha256(body), "body sha256 for %s" % path)
        j = r.json()
        eq(j.get("path"), path, "path in body for %s" % path)
        eq(j.get("model"), model, "model in body for %s" % path)


def test_audio_transcription_multipart(t):
    a = t.start_upstream("ASR")
    g = t.start_gateway(model_block("whisper", [a], "task transcribe;"))
    boundary = "----llmux" + uuid.uuid4().hex
    audio = bytes(range(256)) * 40          # 10240 bytes, includes CR/LF/NUL
    body = (("--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
             "Content-Type: audio/wav\r\n\r\n" % boundary).encode() + audio +
            ("\r\n--%s\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n"
             "--%s--\r\n" % (boundary, boundary)).encode())
    r = post(g, "/v1/audio/transcriptions", body,
             headers={"Content-Type": "multipart/form-data; boundary=%s" % boundary})
    eq(r.status, 200, "status (%r)" % r.body[:200])
    eq(r.header("x-llmux-model"), "whisper", "x-llmux-model")
    eq(r.header("x-fake-body-sha256"), sha256(body), "multipart body sha256")
    j = r.json()
    eq(j["text"], "ASR heard %d bytes" % len(audio), "transcription text")
    eq(j["model"], "whisper", "model form field")


def test_upstream_status_and_content_type_relayed(t):
    g, _ = setup(t)
    r = post(g, "/v1/embeddings", {"model": "emb", "input": ["a", "b"]})
    eq(r.status, 200, "status")
    check("application/json" in r.header("content-type", ""),
          "content-type %r" % r.header("content-type"))
    j = r.json()
    eq(len(j["data"]), 2, "embeddings count")
    eq(len(j["data"][0]["embedding"]), 8, "embedding dim")


def _models_by_id(j):
    eq(j.get("object"), "list", "/v1/models object")
    check(isinstance(j.get("data"), list), "data list: %r" % j)
    return {m["id"]: m for m in j["data"]}


def test_models_list(t):
    g, _ = setup(t)
    r = get(g, "/v1/models")
    eq(r.status, 200, "status")
    ms = _models_by_id(r.json())
    for name in ("m1", "m2", "emb", "rr", "m1-alias", "ab"):
        check(name in ms, "/v1/models lacks %r (has %r)" % (name, sorted(ms)))
    for name, m in ms.items():
        eq(m.get("object"), "model", "object of %s" % name)
        eq(m.get("owned_by"), "llmux", "owned_by of %s" % name)
        check(isinstance(m.get("created"), int), "created of %s: %r" % (name, m.get("created")))
        check(isinstance(m.get("llmux"), dict), "llmux object of %s: %r" % (name, m))
    m1 = ms["m1"]["llmux"]
    eq(m1.get("kind"), "model", "m1 kind")
    eq(m1.get("task"), "chat", "m1 task")
    eq(m1.get("state"), "ready", "m1 state")
    eq(m1.get("backends"), {"healthy": 2, "total": 2}, "m1 backends")
    eq(ms["emb"]["llmux"].get("task"), "embed", "emb task")
    eq(ms["rr"]["llmux"].get("task"), "rerank", "rr task")
    al = ms["m1-alias"]["llmux"]
    eq(al.get("kind"), "alias", "alias kind")
    eq(al.get("alias_of"), "m1", "alias_of")
    rt = ms["ab"]["llmux"]
    eq(rt.get("kind"), "route", "route kind")
    eq(sorted((x["model"], x["weight"]) for x in rt.get("members", [])),
       [("m1", 50), ("m2", 50)], "route members")


def test_models_one(t):
    g, _ = setup(t)
    r = get(g, "/v1/models/m1")
    eq(r.status, 200, "status of /v1/models/m1")
    j = r.json()
    eq(j.get("id"), "m1", "id")
    eq(j.get("object"), "model", "object")
    eq(j["llmux"]["kind"], "model", "kind")
    r = get(g, "/v1/models/m1-alias")
    eq(r.status, 200, "status of /v1/models/m1-alias")
    eq(r.json()["llmux"]["kind"], "alias", "alias kind")
    r = get(g, "/v1/models/nope")
    expect_openai_error(r, 404, "GET /v1/models/nope")


def test_health_ok(t):
    g, _ = setup(t)
    r = get(g, "/health")
    eq(r.status, 200, "status")
    eq(r.json().get("status"), "ok", "health status field")


def test_version(t):
    g, _ = setup(t)
    r = get(g, "/version")
    eq(r.status, 200, "status")
    v = r.json().get("version")
    check(isinstance(v, str) and v, "version %r" % v)


def test_metrics(t):
    g, _ = setup(t)
    for _ in range(3):
        eq(post(g, "/v1/chat/completions", chat_body("m1")).status, 200, "chat status")
    eq(post(g, "/v1/embeddings", {"model": "emb", "input": "x"}).status, 200, "embed status")
    eq(post(g, "/v1/chat/completions", chat_body("nope")).status, 404, "unknown model status")
    r = get(g, "/metrics")
    eq(r.status, 200, "status")
    check(r.header("content-type", "").startswith("text/plain"),
          "metrics content-type %r" % r.header("content-type"))
    text = r.body.decode()
    from lib import parse_metrics
    s = parse_metrics(text)
    names = {n for n, _, _ in s}
    check(metric_sum(s, "llmux_requests_total", model="m1", status="200") >= 3,
          "llmux_requests_total{model=m1,status=200} >= 3:\n%s" %
          "\n".join(l for l in text.splitlines() if "requests_total" in l))
    check(metric_sum(s, "llmux_requests_total", model="emb", status="200") >= 1,
          "llmux_requests_total{model=emb,status=200} >= 1")
    check(metric_sum(s, "llmux_requests_total", status="404") >= 1,
          "llmux_requests_total{status=404} >= 1")
    for want in ("llmux_request_duration_seconds_bucket", "llmux_request_duration_seconds_sum",
                 "llmux_request_duration_seconds_count",
                 "llmux_time_to_first_byte_seconds_bucket", "llmux_requests_in_flight",
                 "llmux_backend_up"):
        check(want in names, "metric %s missing; have %s" % (want, sorted(names)))
    check(any("bytes" in n for n in names), "no bytes counter in %s" % sorted(names))
    check("llmux_upstream_connect_errors_total" in text,
          "llmux_upstream_connect_errors_total not declared")
    check(metric_sum(s, "llmux_request_duration_seconds_count", model="m1") >= 3,
          "duration histogram count for m1 >= 3")
    inf = metric_find(s, "llmux_request_duration_seconds_bucket", model="m1", le="+Inf")
    check(inf and sum(v for _, v in inf) >= 3, "m1 +Inf bucket: %r" % inf)
    up = metric_find(s, "llmux_backend_up", model="m1")
    eq(sorted(v for _, v in up), [1.0, 1.0], "llmux_backend_up for m1's two backends")
    check("# TYPE llmux_requests_total counter" in text, "TYPE line for requests_total")
    check("# TYPE llmux_request_duration_seconds histogram" in text, "TYPE line for histogram")


def test_local_endpoints_on_keepalive(t):
    g, _ = setup(t)
    from lib import connect
    c = connect(g)
    try:
        for path in ("/health", "/v1/models", "/version", "/metrics", "/v1/models/m1"):
            r = request(g, "GET", path, conn=c)
            eq(r.status, 200, "GET %s on a kept-alive connection" % path)
        r = request(g, "POST", "/v1/chat/completions", body=chat_body("m1"), conn=c)
        eq(r.status, 200, "chat after local GETs on one connection")
    finally:
        c.close()
