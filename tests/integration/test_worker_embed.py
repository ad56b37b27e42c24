# test_worker_embed.py -- the real llmux-worker with task embed on a tiny
# random bge-m3-shaped XLM-R (mkmodel: sparse and ColBERT heads, CLS pooling,
# normalized; the real XLM-R tokenizer): /v1/embeddings in every input shape,
# base64 = float, usage, truncate_prompt_tokens, every 400, /pooling's tasks,
# dynamic batching (concurrent mixed requests = one by one), a client that
# leaves, large bodies tokenized off the loop, the routes of other tasks,
# /load, the gateway in front (upstream and spawned workers) and the
# official openai client straight and through the gateway.
import base64
import json
import math
import socket
import struct
import threading
import time

import lib
from lib import check, eq, expect_openai_error, model_block
import worker_lib
from worker_lib import start_encoder

HIDDEN = 32


def skip_reason():
    return worker_lib.skip_reason()


def emb(w, body, **kw):
    return lib.post(w, "/v1/embeddings", body, timeout=60, **kw)


def vec_close(a, b, tol=1e-5):
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b))


def tokenize(w, text):
    r = lib.post(w, "/tokenize", {"prompt": text})
    eq(r.status, 200, "/tokenize")
    return r.json()["tokens"]


def test_info_routes(t):
    w = start_encoder(t)
    eq(lib.get(w, "/health").status, 200, "health 200 once listening (warm-up ran)")
    j = lib.get(w, "/v1/models").json()
    eq([m["id"] for m in j["data"]], ["bge-tiny"], "served name")
    eq(j["data"][0]["max_model_len"], 512, "max_model_len = max_position_embeddings - 2")
    ld = w.load()
    eq(ld["task"], "embed", "/load task")
    for k in ("running", "waiting", "kv_blocks_free", "kv_blocks_total", "prompt_tokens_per_s",
              "batches", "inputs_waiting", "healthy"):
        check(k in ld, "/load lacks %s: %r" % (k, ld))
    check("version" in lib.get(w, "/version").json(), "version")
    toks = tokenize(w, "Hello world")
    eq(toks[0], 0, "<s> first")
    eq(toks[-1], 2, "</s> last")
    r = lib.post(w, "/detokenize", {"tokens": toks[1:-1]})
    eq(r.json()["prompt"], "Hello world", "detokenize")


def test_embeddings_shapes(t):
    w = start_encoder(t)
    r = emb(w, {"model": "bge-tiny", "input": "The quick brown fox"})
    eq(r.status, 200, "status")
    j = r.json()
    eq(j["object"], "list", "object")
    eq(j["model"], "bge-tiny", "model")
    eq(len(j["data"]), 1, "one item")
    d = j["data"][0]
    eq(d["object"], "embedding", "item object")
    eq(d["index"], 0, "index")
    eq(len(d["embedding"]), HIDDEN, "dimension")
    norm = math.sqrt(sum(x * x for x in d["embedding"]))
    check(abs(norm - 1) < 1e-4, "normalized (bge-m3): norm %r" % norm)
    ids = tokenize(w, "The quick brown fox")
    eq(j["usage"]["prompt_tokens"], len(ids), "usage.prompt_tokens = /tokenize count")
    eq(j["usage"]["total_tokens"], len(ids), "usage.total_tokens")
    # token ids give the same vector as the text
    r2 = emb(w, {"input": ids}).json()
    check(vec_close(r2["data"][0]["embedding"], d["embedding"], 1e-6), "ids = text")
    # lists keep their order
    texts = ["one", "two words", "three words here", "Ünïcödé 中文 text"]
    r3 = emb(w, {"input": texts}).json()
    eq([x["index"] for x in r3["data"]], [0, 1, 2, 3], "indices")
    for i, s in enumerate(texts):
        single = emb(w, {"input": s}).json()["data"][0]["embedding"]
        check(vec_close(r3["data"][i]["embedding"], single), "list item %d = alone" % i)
    eq(r3["usage"]["prompt_tokens"], sum(len(tokenize(w, s)) for s in texts), "usage of a list")
    # lists of ids
    r4 = emb(w, {"input": [tokenize(w, s) for s in texts]}).json()
    for i in range(len(texts)):
        check(vec_close(r4["data"][i]["embedding"], r3["data"][i]["embedding"], 1e-6),
              "ids list item %d" % i)
    # dimensions equal to the model's is fine
    eq(emb(w, {"input": "x", "dimensions": HIDDEN}).status, 200, "dimensions = hidden")


def test_base64_equals_float(t):
    w = start_encoder(t)
    texts = ["alpha", "beta gamma"]
    f = emb(w, {"input": texts, "encoding_format": "float"}).json()
    b = emb(w, {"input": texts, "encoding_format": "base64"}).json()
    for i in range(2):
        raw = base64.b64decode(b["data"][i]["embedding"])
        eq(len(raw), 4 * HIDDEN, "base64 bytes")
        vals = struct.unpack("<%df" % HIDDEN, raw)
        check(vec_close(vals, f["data"][i]["embedding"], 0), "base64 item %d = float" % i)


def test_truncate_prompt_tokens(t):
    w = start_encoder(t, args=["--max-model-len", "24"])
    long_text = " ".join("word%d" % i for i in range(40))
    r = emb(w, {"input": long_text})
    e = expect_openai_error(r, 400, "over-long input")
    eq(e["param"], "input", "param")
    check("24" in e["message"] and "truncate_prompt_tokens" in e["message"],
          "message names the numbers: %r" % e["message"])
    j = emb(w, {"input": long_text, "truncate_prompt_tokens": -1}).json()
    eq(j["usage"]["prompt_tokens"], 24, "-1 truncates to max_model_len")
    j = emb(w, {"input": long_text, "truncate_prompt_tokens": 10}).json()
    eq(j["usage"]["prompt_tokens"], 10, "k truncates to k")
    # the truncated text is its first tokens plus </s>: same as the ids given so
    ids = tokenize(w, long_text)
    want = emb(w, {"input": ids[:9] + [2]}).json()["data"][0]["embedding"]
    check(vec_close(j["data"][0]["embedding"], want, 1e-6), "text truncation keeps <s>..</s>")
    expect_openai_error(emb(w, {"input": "x", "truncate_prompt_tokens": 25}), 400, "k > max")


def test_errors(t):
    w = start_encoder(t, args=["--max-batch-inputs", "3"])
    cases = [
        ({"input": []}, "input"), ({"input": ""}, "input"), ({"input": ["a", ""]}, "input"),
        ({"input": [[]]}, "input"), ({}, "input"), ({"input": 5}, "input"),
        ({"input": ["a", 1]}, "input"), ({"input": [1, "a"]}, "input"),
        ({"input": [300000]}, "input"), ({"input": ["a", "b", "c", "d"]}, "input"),
        ({"input": "x", "dimensions": 8}, "dimensions"),
        ({"input": "x", "encoding_format": "binary"}, "encoding_format"),
        ({"input": "x", "truncate_prompt_tokens": "all"}, "truncate_prompt_tokens"),
    ]
    for body, param in cases:
        e = expect_openai_error(emb(w, body), 400, json.dumps(body))
        eq(e["param"], param, "param of %s" % json.dumps(body))
        eq(e["type"], "invalid_request_error", "type")
    expect_openai_error(emb(w, {"input": "x", "model": "nope"}), 404, "unknown model")
    r = lib.request(w, "POST", "/v1/embeddings", body=b"{nope", headers={"Content-Type": "application/json"})
    expect_openai_error(r, 400, "bad JSON")
    eq(emb(w, {"input": ["a", "b", "c"]}).status, 200, "max_batch_inputs items are fine")
    # routes of other tasks
    for path, body in (("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}),
                       ("/v1/completions", {"prompt": "x"}),
                       ("/v1/rerank", {"query": "q", "documents": ["d"]}),
                       ("/v1/score", {"text_1": "a", "text_2": "b"})):
        e = expect_openai_error(lib.post(w, path, body), 400, path)
        check("embed" in e["message"], "message names the task: %r" % e["message"])
    expect_openai_error(lib.get(w, "/v1/embeddings"), 405, "GET")


def test_pooling(t):
    w = start_encoder(t)
    text = "the cat sat on the mat the end"
    ids = tokenize(w, text)
    dense = emb(w, {"input": text}).json()["data"][0]["embedding"]
    r = lib.post(w, "/pooling", {"model": "bge-tiny", "input": text})
    eq(r.status, 200, "pooling status")
    j = r.json()
    eq(j["object"], "list", "object")
    eq(j["data"][0]["object"], "pooling", "item object")
    check(vec_close(j["data"][0]["data"], dense, 1e-6), "task embed = /v1/embeddings")
    eq(j["usage"]["prompt_tokens"], len(ids), "usage")
    # ColBERT: one normalized vector per token after <s>
    cb = lib.post(w, "/pooling", {"input": text, "task": "token_embed"}).json()["data"][0]["data"]
    eq(len(cb), len(ids) - 1, "colbert rows = tokens - 1")
    for row in cb:
        eq(len(row), 32, "colbert dim")
        check(abs(math.sqrt(sum(x * x for x in row)) - 1) < 1e-4, "colbert row normalized")
    cb64 = lib.post(w, "/pooling", {"input": text, "task": "colbert",
                                    "encoding_format": "base64"}).json()["data"][0]["data"]
    flat = struct.unpack("<%df" % (32 * len(cb)), base64.b64decode(cb64))
    check(vec_close(flat, [x for row in cb for x in row], 0), "colbert base64 = float")
    # sparse: non-special ids of the input, positive weights
    sp = lib.post(w, "/pooling", {"input": text, "task": "sparse"}).json()["data"][0]["data"]
    check(isinstance(sp, dict), "sparse is an object")
    for k, v in sp.items():
        check(int(k) in ids[1:-1], "sparse key %s is an input token" % k)
        check(v > 0, "sparse weight > 0")
    # all three at once, for a list
    a = lib.post(w, "/pooling", {"input": [text, "other"], "task": "all"}).json()["data"]
    eq(len(a), 2, "two items")
    check(vec_close(a[0]["data"]["dense"], dense, 1e-6), "all: dense")
    eq(a[0]["data"]["sparse"], sp, "all: sparse")
    eq(len(a[0]["data"]["colbert"]), len(ids) - 1, "all: colbert")
    e = expect_openai_error(lib.post(w, "/pooling", {"input": "x", "task": "classify"}), 400, "task")
    eq(e["param"], "task", "param")
    expect_openai_error(lib.post(w, "/pooling", {"input": []}), 400, "empty")


def test_pooling_without_heads(t):
    d = worker_lib.tiny_encoder("embed", sparse=0, colbert=0)
    w = start_encoder(t, model_dir=d)
    eq(lib.post(w, "/pooling", {"input": "x"}).status, 200, "embed works")
    for task in ("sparse", "token_embed", "all"):
        e = expect_openai_error(lib.post(w, "/pooling", {"input": "x", "task": task}), 400, task)
        eq(e["param"], "task", "param")


def test_concurrent_batching(t):
    w = start_encoder(t, args=["--max-num-batched-tokens", "64", "--max-num-seqs", "8"])
    texts = [" ".join("tok%d" % j for j in range(1 + (i * 7) % 23)) for i in range(24)]
    alone = [emb(w, {"input": s}).json()["data"][0]["embedding"] for s in texts]
    b0 = w.load()["batches"]
    results = [None] * 8
    errors = []

    def client(k):
        try:
            mine = texts[k::8]
            results[k] = emb(w, {"input": mine}).json()
        except Exception as ex:  # noqa: BLE001
            errors.append(repr(ex))
    th = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for x in th:
        x.start()
    for x in th:
        x.join(60)
    eq(errors, [], "client errors")
    for k in range(8):
        for i, item in enumerate(results[k]["data"]):
            check(vec_close(item["embedding"], alone[k + 8 * i]),
                  "client %d item %d = one by one" % (k, i))
    ld = w.load()
    check(ld["batches"] > b0, "batches ran")
    check(ld["last_batch_tokens"] <= 64 or ld["last_batch_seqs"] == 1, "token bound: %r" % ld)
    eq(ld["inputs_waiting"], 0, "nothing left waiting")


def test_small_request_not_starved(t):
    w = start_encoder(t, args=["--max-num-batched-tokens", "1024"])
    big = {"input": [" ".join("w%d" % j for j in range(100))] * 100}
    done = {}

    def run_big():
        r = emb(w, big)
        done["big"] = (r.status, time.monotonic())
    th = threading.Thread(target=run_big)
    th.start()
    lib.wait_for(lambda: w.load()["batches"] >= 2, 20, what="the big request runs")
    r = emb(w, {"input": "a small request"})
    small_at = time.monotonic()
    eq(r.status, 200, "small request")
    th.join(60)
    eq(done.get("big", (0,))[0], 200, "big request")
    check(small_at < done["big"][1], "the small request finished first (it shared the big "
          "request's batches)")


def test_large_body_tokenized_off_loop(t):
    # bodies of 64 KiB and more are tokenized on a helper thread: same
    # answers, same errors, and the loop keeps answering meanwhile
    w = start_encoder(t)
    filler = "lorem ipsum dolor sit amet " * 40
    texts = ["first item", "second, longer item here"] + [filler + str(i) for i in range(80)]
    big = emb(w, {"input": texts, "truncate_prompt_tokens": 16}).json()
    eq(len(big["data"]), len(texts), "all items")
    for i in (0, 1, 50):
        small = emb(w, {"input": texts[i], "truncate_prompt_tokens": 16}).json()
        check(vec_close(big["data"][i]["embedding"], small["data"][0]["embedding"]),
              "item %d = alone" % i)
    e = expect_openai_error(emb(w, {"input": texts + [filler * 10]}), 400, "over-long item")
    eq(e["param"], "input", "param")
    check("512" in e["message"], "numbers in the message: %r" % e["message"])
    e = expect_openai_error(emb(w, {"input": texts + [""]}), 400, "empty item")
    # /health answers while a few MB are tokenized
    huge = {"input": [filler * 3 + str(i) for i in range(600)], "truncate_prompt_tokens": 4}
    done = {}

    def run_huge():
        done["status"] = emb(w, huge).status
        done["at"] = time.monotonic()
    th = threading.Thread(target=run_huge)
    th.start()
    time.sleep(0.05)
    h = lib.get(w, "/health")
    health_at = time.monotonic()
    th.join(60)
    eq(h.status, 200, "/health during the tokenization")
    eq(done.get("status"), 200, "huge request")
    check(health_at < done["at"], "/health answered before the huge request finished")
    # rerank-sized pairs through the same path
    r = lib.post(w, "/v1/embeddings", {"input": [filler] * 30, "encoding_format": "base64",
                                       "truncate_prompt_tokens": -1})
    eq(r.status, 200, "base64 large body")


def test_client_disconnect(t):
    w = start_encoder(t)
    big = {"input": [" ".join("w%d" % j for j in range(200))] * 400}
    s = socket.create_connection(tuple(w.addr.rsplit(":", 1)[0:1]) + (int(w.addr.rsplit(":", 1)[1]),))
    data = json.dumps(big).encode()
    s.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(data) + data)
    lib.wait_for(lambda: w.load()["inputs_waiting"] > 0 or w.load()["batches"] > 1, 10,
                 what="the big request runs")
    s.close()
    lib.wait_for(lambda: w.load()["inputs_waiting"] == 0, 20, what="its inputs are dropped")
    eq(emb(w, {"input": "still here"}).status, 200, "the worker serves on")
    check(w.load()["inputs_done"] < 1 + 400 + 1, "not all 400 inputs ran")
    # gone while its body is still being tokenized
    for _ in range(3):
        s = socket.create_connection(tuple(w.addr.rsplit(":", 1)[0:1]) + (int(w.addr.rsplit(":", 1)[1]),))
        s.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(data) + data)
        s.close()
    eq(emb(w, {"input": "still here"}).status, 200, "the worker serves on")
    lib.wait_for(lambda: w.load()["inputs_waiting"] == 0, 30, what="nothing left")


def test_openai_client(t):
    w = start_encoder(t)
    client = lib.openai_client(w.addr)
    r = client.embeddings.create(model="bge-tiny", input=["hello", "world"])
    eq(len(r.data), 2, "two embeddings")
    eq(len(r.data[0].embedding), HIDDEN, "dimension (the client asks base64 and decodes it)")
    direct = emb(w, {"input": "hello"}).json()["data"][0]["embedding"]
    check(vec_close(r.data[0].embedding, direct, 0), "client vector = float answer")
    check(r.usage.prompt_tokens > 0, "usage")
    r = client.embeddings.create(model="bge-tiny", input="hello", encoding_format="float")
    check(vec_close(r.data[0].embedding, direct, 0), "float through the client")


def test_through_gateway(t):
    w = start_encoder(t, name="bge-m3-tiny")
    g = t.start_gateway(model_block("bge-m3-tiny", [w.url], "alias embedder;"))
    direct = emb(w, {"input": "gateway text"}).json()["data"][0]["embedding"]
    r = lib.post(g, "/v1/embeddings", {"model": "embedder", "input": "gateway text"}, timeout=30)
    eq(r.status, 200, "/v1/embeddings through the gateway (alias)")
    eq(r.json()["model"], "embedder", "an alias answered with its own name")
    check(vec_close(r.json()["data"][0]["embedding"], direct, 0), "through the gateway = direct")
    p = lib.post(g, "/pooling", {"model": "bge-m3-tiny", "input": "gateway text", "task": "sparse"})
    eq(p.status, 200, "/pooling through the gateway")
    e = expect_openai_error(lib.post(g, "/v1/embeddings", {"model": "bge-m3-tiny", "input": []}),
                            400, "a 400 relayed")
    eq(e["param"], "input", "param")
    client = lib.openai_client(g)      # skips here when the module is missing
    r = client.embeddings.create(model="bge-m3-tiny", input="gateway text")
    check(vec_close(r.data[0].embedding, direct, 0), "openai client through the gateway = direct")


def test_spawned_by_gateway(t):
    # the gateway starts both encoder workers itself (model blocks with path)
    import os
    rt = os.path.join(t.dir, "run")
    os.mkdir(rt)
    conf = ("worker_binary %s;\nruntime_dir %s;\n"
            "model bge-m3-tiny { path %s; task embed; device cpu; }\n"
            "model reranker-tiny { path %s; task rerank; device cpu; }\n"
            % (worker_lib.WORKER, rt, worker_lib.tiny_encoder("embed"),
               worker_lib.tiny_encoder("rerank")))
    g = t.start_gateway(conf)

    def ready():
        ms = lib.get(g, "/v1/models").json()["data"]
        return all(m.get("llmux", {}).get("state") == "ready" for m in ms) and len(ms) == 2
    lib.wait_for(ready, 60, what="both spawned workers ready")
    r = lib.post(g, "/v1/embeddings", {"model": "bge-m3-tiny", "input": ["a", "b"]}, timeout=30)
    eq(r.status, 200, "embeddings from the spawned worker")
    eq(len(r.json()["data"][1]["embedding"]), HIDDEN, "dimension")
    r = lib.post(g, "/v1/rerank", {"model": "reranker-tiny", "query": "q", "documents": ["a", "b"]},
                 timeout=30)
    eq(r.status, 200, "rerank from the spawned worker")
    eq(len(r.json()["results"]), 2, "results")
