# test_worker_rerank.py -- the real llmux-worker with task rerank on a tiny
# random bge-reranker-shaped XLMRobertaForSequenceClassification (mkmodel,
# real XLM-R tokenizer): /v1/rerank, /rerank, /v2/rerank (sorted results,
# top_n, return_documents, {text} documents), /v1/score and /score (1:1,
# 1:N, N:N), scores equal across routes and batching, document-side
# truncation, every 400, --task mismatches, and rerank through the gateway.
import json
import threading

import lib
from lib import check, eq, expect_openai_error, model_block
import worker_lib
from worker_lib import start_encoder

QUERY = "what is a giant panda?"
DOCS = ["hi", "The giant panda is a bear species endemic to China.",
        "Pandas eat bamboo.", "Paris is the capital of France.", "ein Bär"]


def skip_reason():
    return worker_lib.skip_reason()


def score(w, t1, t2, **extra):
    b = {"text_1": t1, "text_2": t2}
    b.update(extra)
    return lib.post(w, "/v1/score", b, timeout=60)


def test_rerank_shape_and_order(t):
    w = start_encoder(t, "rerank")
    eq(w.load()["task"], "rerank", "/load task")
    eq(lib.get(w, "/health").status, 200, "health")
    r = lib.post(w, "/v1/rerank", {"model": "reranker-tiny", "query": QUERY, "documents": DOCS})
    eq(r.status, 200, "status")
    j = r.json()
    check(j["id"].startswith("rerank-"), "id")
    eq(j["model"], "reranker-tiny", "model")
    check(j["usage"]["total_tokens"] > 0, "usage.total_tokens")
    res = j["results"]
    eq(len(res), len(DOCS), "all documents")
    eq(sorted(x["index"] for x in res), list(range(len(DOCS))), "each index once")
    scores = [x["relevance_score"] for x in res]
    eq(scores, sorted(scores, reverse=True), "sorted by score, highest first")
    for x in res:
        check(0 < x["relevance_score"] < 1, "sigmoid range")
        eq(x["document"]["text"], DOCS[x["index"]], "document text")
    # the same scores from /v1/score (1:N), in input order
    s = score(w, QUERY, DOCS).json()
    eq(s["object"], "list", "score object")
    by_index = {x["index"]: x["relevance_score"] for x in res}
    for item in s["data"]:
        eq(item["object"], "score", "item object")
        check(abs(item["score"] - by_index[item["index"]]) < 1e-6, "score = rerank score")
    eq(s["usage"]["prompt_tokens"], j["usage"]["total_tokens"], "same tokens counted")
    # every alias route answers alike
    for path in ("/rerank", "/v2/rerank"):
        o = lib.post(w, path, {"query": QUERY, "documents": DOCS}).json()
        eq([x["index"] for x in o["results"]], [x["index"] for x in res], path)


def test_rerank_options(t):
    w = start_encoder(t, "rerank")
    full = lib.post(w, "/v1/rerank", {"query": QUERY, "documents": DOCS}).json()["results"]
    top = lib.post(w, "/v1/rerank", {"query": QUERY, "documents": DOCS, "top_n": 2,
                                      "return_documents": False}).json()["results"]
    eq(len(top), 2, "top_n")
    eq([x["index"] for x in top], [x["index"] for x in full[:2]], "top_n keeps the best")
    check(all("document" not in x for x in top), "return_documents false")
    objs = [{"text": d} for d in DOCS]
    o = lib.post(w, "/v1/rerank", {"query": QUERY, "documents": objs}).json()["results"]
    eq([x["index"] for x in o], [x["index"] for x in full], "{text} documents")
    eq(o[0]["document"]["text"], DOCS[o[0]["index"]], "document from an object")


def test_score_shapes(t):
    w = start_encoder(t, "rerank")
    one = score(w, QUERY, DOCS[1]).json()
    eq(len(one["data"]), 1, "1:1")
    many = score(w, QUERY, DOCS).json()
    check(abs(one["data"][0]["score"] - many["data"][1]["score"]) < 1e-6, "1:1 = 1:N item")
    nn = score(w, [QUERY, "bamboo"], [DOCS[1], DOCS[2]]).json()
    eq(len(nn["data"]), 2, "N:N")
    check(abs(nn["data"][0]["score"] - many["data"][1]["score"]) < 1e-6, "N:N pairs zip")
    alt = score(w, "bamboo", DOCS[2]).json()
    check(abs(nn["data"][1]["score"] - alt["data"][0]["score"]) < 1e-6, "N:N second pair")
    eq(lib.post(w, "/score", {"text_1": QUERY, "text_2": DOCS[1]}).json()["data"][0]["score"],
       one["data"][0]["score"], "/score = /v1/score")


def test_concurrent_equals_alone(t):
    w = start_encoder(t, "rerank", args=["--max-num-batched-tokens", "48", "--max-num-seqs", "4"])
    alone = [score(w, QUERY, d).json()["data"][0]["score"] for d in DOCS]
    out = [None] * 6
    errors = []

    def client(k):
        try:
            out[k] = lib.post(w, "/v1/rerank", {"query": QUERY, "documents": DOCS}, timeout=60).json()
        except Exception as ex:  # noqa: BLE001
            errors.append(repr(ex))
    th = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    for x in th:
        x.start()
    for x in th:
        x.join(60)
    eq(errors, [], "client errors")
    for k in range(6):
        for x in out[k]["results"]:
            check(abs(x["relevance_score"] - alone[x["index"]]) < 1e-6,
                  "client %d doc %d = alone" % (k, x["index"]))


def test_large_body(t):
    # 64 KiB and more: tokenized on the helper thread, same scores
    w = start_encoder(t, "rerank")
    filler = "bamboo forest text " * 30
    docs = DOCS + [filler + str(i) for i in range(150)]
    big = lib.post(w, "/v1/rerank", {"query": QUERY, "documents": docs, "top_n": 0,
                                     "return_documents": False}, timeout=60).json()
    by_index = {x["index"]: x["relevance_score"] for x in big["results"]}
    eq(len(by_index), len(docs), "all documents")
    alone = score(w, QUERY, DOCS).json()["data"]
    for x in alone:
        check(abs(by_index[x["index"]] - x["score"]) < 1e-6, "doc %d = small request" % x["index"])
    e = expect_openai_error(lib.post(w, "/v1/rerank", {"query": QUERY, "documents": docs + [""]}),
                            400, "an empty document in a large body")
    eq(e["param"], "documents", "param")


def test_truncation(t):
    w = start_encoder(t, "rerank", args=["--max-model-len", "32"])
    long_doc = " ".join("word%d" % i for i in range(60))
    e = expect_openai_error(lib.post(w, "/v1/rerank", {"query": QUERY, "documents": [long_doc]}),
                            400, "over-long pair")
    check("32" in e["message"], "message names max_model_len: %r" % e["message"])
    r = lib.post(w, "/v1/rerank", {"query": QUERY, "documents": [long_doc, "short"],
                                   "truncate_prompt_tokens": -1})
    eq(r.status, 200, "truncate_prompt_tokens -1")
    # the document side is cut: the cut pair scores like the query with the
    # document's first tokens
    r2 = score(w, QUERY, long_doc, truncate_prompt_tokens=20)
    eq(r2.status, 200, "truncate 20")
    eq(r2.json()["usage"]["prompt_tokens"], 20, "pair cut to 20 tokens")
    long_q = " ".join("q%d" % i for i in range(60))
    expect_openai_error(score(w, long_q, "d", truncate_prompt_tokens=20), 400,
                        "the query alone does not fit")


def test_errors(t):
    w = start_encoder(t, "rerank", args=["--max-batch-inputs", "3"])
    cases = [
        ("/v1/rerank", {"documents": ["a"]}, "query"),
        ("/v1/rerank", {"query": "", "documents": ["a"]}, "query"),
        ("/v1/rerank", {"query": 3, "documents": ["a"]}, "query"),
        ("/v1/rerank", {"query": "q"}, "documents"),
        ("/v1/rerank", {"query": "q", "documents": []}, "documents"),
        ("/v1/rerank", {"query": "q", "documents": [""]}, "documents"),
        ("/v1/rerank", {"query": "q", "documents": [7]}, "documents"),
        ("/v1/rerank", {"query": "q", "documents": ["a", "b", "c", "d"]}, "documents"),
        ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": -2}, "top_n"),
        ("/v1/rerank", {"query": "q", "documents": ["a"], "return_documents": "yes"},
         "return_documents"),
        ("/v1/score", {"text_1": "q"}, "text_2"),
        ("/v1/score", {"text_1": [], "text_2": "a"}, "text_1"),
        ("/v1/score", {"text_1": ["a", "b"], "text_2": ["c", "d", "e"]}, "text_1"),
        ("/v1/score", {"text_1": "a", "text_2": [1]}, "text_2"),
    ]
    for path, body, param in cases:
        e = expect_openai_error(lib.post(w, path, body), 400, path + " " + json.dumps(body))
        eq(e["param"], param, "param of %s" % json.dumps(body))
    expect_openai_error(lib.post(w, "/v1/rerank", {"model": "nope", "query": "q",
                                                   "documents": ["a"]}), 404, "unknown model")
    for path, body in (("/v1/embeddings", {"input": "x"}), ("/pooling", {"input": "x"}),
                       ("/v1/chat/completions", {"messages": []})):
        e = expect_openai_error(lib.post(w, path, body), 400, path)
        check("rerank" in e["message"], "message names the task: %r" % e["message"])


def test_task_flag(t):
    rc, out = worker_lib.run_worker(t, ["--model", worker_lib.tiny_encoder("rerank"), "--listen",
                                        "127.0.0.1:0", "--task", "embed"])
    eq(rc, 2, "--task embed on a reranker exits 2")
    check("does not fit" in out, "says why: %r" % out[-300:])
    rc, out = worker_lib.run_worker(t, ["--model", worker_lib.tiny_encoder("embed"), "--listen",
                                        "127.0.0.1:0", "--task", "score"])
    eq(rc, 2, "--task score on an embedder exits 2")
    rc, out = worker_lib.run_worker(t, ["--model", "x", "--listen", "127.0.0.1:0", "--task", "asr"])
    eq(rc, 2, "unknown --task")
    rc, out = worker_lib.run_worker(t, ["--model", worker_lib.tiny_encoder("rerank"), "--listen",
                                        "127.0.0.1:0", "--max-model-len", "600"])
    eq(rc, 2, "--max-model-len over the position embeddings exits 2")
    check("512" in out, "says the bound: %r" % out[-300:])
    # score is a name for rerank
    w = start_encoder(t, "rerank", args=["--task", "score"])
    eq(score(w, "a", "b").status, 200, "--task score serves /v1/score")


def test_rerank_through_gateway(t):
    w = start_encoder(t, "rerank", name="bge-reranker-tiny")
    g = t.start_gateway(model_block("bge-reranker-tiny", [w.url]))
    body = {"model": "bge-reranker-tiny", "query": QUERY, "documents": DOCS, "top_n": 3}
    direct = lib.post(w, "/v1/rerank", body).json()
    for path in ("/v1/rerank", "/rerank", "/v2/rerank"):
        r = lib.post(g, path, body, timeout=30)
        eq(r.status, 200, path + " through the gateway")
        eq(r.json()["results"], direct["results"], path + " = direct")
    r = lib.post(g, "/v1/score", {"model": "bge-reranker-tiny", "text_1": QUERY, "text_2": DOCS})
    eq(r.status, 200, "/v1/score through the gateway")
