# test_worker_api.py -- the real llmux-worker on a tiny random Qwen3 model
# (mkmodel, real Qwen3 tokenizer and chat template): every route, plain and
# streamed answers field for field, usage, n, seeds, stop strings, logprobs,
# token ids, echo, /tokenize against the template, and the 4xx answers.
import json

import lib
from lib import check, eq, expect_openai_error
import worker_lib
from worker_lib import start_worker

_W = {}


def skip_reason():
    return worker_lib.skip_reason()


def worker(t):
    return start_worker(t)


def chunks(events):
    return [json.loads(d) for d in events if d != "[DONE]"]


def test_models_version_health_load(t):
    w = worker(t)
    r = lib.get(w, "/v1/models")
    eq(r.status, 200, "models status")
    j = r.json()
    eq(j["object"], "list", "object")
    eq([m["id"] for m in j["data"]], ["tiny"], "served names")
    eq(j["data"][0]["max_model_len"], 1024, "max_model_len")
    eq(lib.get(w, "/health").status, 200, "health")
    check("version" in lib.get(w, "/version").json(), "version")
    ld = w.load()
    for k in ("running", "waiting", "kv_blocks_free", "kv_blocks_total", "prompt_tokens_per_s",
              "generation_tokens_per_s", "prefix_cache_queries", "prefix_cache_hits"):
        check(k in ld, "/load lacks %s: %r" % (k, ld))
    check(ld["kv_blocks_total"] > 0 and ld["kv_blocks_free"] <= ld["kv_blocks_total"], "kv blocks")


def test_chat_nonstream_shape(t):
    w = worker(t)
    r = w.chat("Say something.", max_tokens=8, temperature=0)
    eq(r.status, 200, "status")
    j = r.json()
    check(j["id"].startswith("chatcmpl-") and len(j["id"]) > 16, "id %r" % j["id"])
    eq(j["object"], "chat.completion", "object")
    eq(j["model"], "tiny", "model")
    check(isinstance(j["created"], int), "created")
    ch = j["choices"][0]
    eq(ch["index"], 0, "index")
    eq(ch["message"]["role"], "assistant", "role")
    check(isinstance(ch["message"]["content"], str), "content")
    check(ch["finish_reason"] in ("stop", "length"), "finish_reason")
    u = j["usage"]
    eq(u["total_tokens"], u["prompt_tokens"] + u["completion_tokens"], "usage sum")
    check(u["completion_tokens"] <= 8, "max_tokens honoured")
    if ch["finish_reason"] == "length":
        eq(u["completion_tokens"], 8, "length means max_tokens")


def test_chat_greedy_and_seed_reproducible(t):
    w = worker(t)
    a = w.chat("abc", max_tokens=12, temperature=0).json()
    b = w.chat("abc", max_tokens=12, temperature=0).json()
    eq(a["choices"][0]["message"]["content"], b["choices"][0]["message"]["content"], "greedy")
    s1 = w.chat("abc", max_tokens=12, temperature=1.0, seed=7).json()
    s2 = w.chat("abc", max_tokens=12, temperature=1.0, seed=7).json()
    eq(s1["choices"][0]["message"]["content"], s2["choices"][0]["message"]["content"], "seeded")


def test_chat_stream_matches_nonstream(t):
    w = worker(t)
    body = {"model": "tiny", "messages": [{"role": "user", "content": "stream me"}],
            "max_tokens": 10, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    s = lib.stream(w, "/v1/chat/completions", body, timeout=60)
    eq(s.status, 200, "status")
    check(s.headers.get("content-type", "").startswith("text/event-stream"), "SSE type")
    check(s.done and s.error is None, "stream ended cleanly: %s" % s.error)
    ds = s.datas()
    eq(ds[-1], "[DONE]", "last event")
    cs = chunks(ds)
    eq(cs[0]["choices"][0]["delta"].get("role"), "assistant", "first chunk has the role")
    for c in cs:
        eq(c["object"], "chat.completion.chunk", "chunk object")
        eq(c["id"], cs[0]["id"], "same id")
    usage = cs[-1]
    eq(usage["choices"], [], "usage chunk has no choices")
    finals = [c for c in cs if c["choices"] and c["choices"][0]["finish_reason"]]
    eq(len(finals), 1, "one finish chunk")
    text = lib.sse_content(ds)
    ns = w.chat("stream me", max_tokens=10, temperature=0).json()
    eq(text, ns["choices"][0]["message"]["content"], "stream text == non-stream")
    eq(usage["usage"], ns["usage"], "usage equal")


def test_chat_n_choices(t):
    w = worker(t)
    j = w.chat("n", max_tokens=5, n=3, temperature=1.0, seed=1).json()
    eq(sorted(c["index"] for c in j["choices"]), [0, 1, 2], "indices")
    eq(j["usage"]["completion_tokens"],
       sum(len(c["token_ids"]) for c in w.chat("n", max_tokens=5, n=3, temperature=1.0, seed=1,
                                               return_token_ids=True).json()["choices"]),
       "completion tokens summed over choices")


def test_stop_string_not_emitted(t):
    w = worker(t)
    base = w.complete("The", max_tokens=24, temperature=0).json()["choices"][0]["text"]
    if len(base) < 6:
        raise lib.Skip("greedy output too short to pick a stop string")
    stop = base[3:5]
    r = w.complete("The", max_tokens=24, temperature=0, stop=[stop]).json()
    c = r["choices"][0]
    eq(c["finish_reason"], "stop", "finish_reason")
    eq(c["stop_reason"], stop, "stop_reason")
    eq(c["text"], base[:base.find(stop)], "truncated before the stop string")
    s = lib.stream(w, "/v1/completions", {"prompt": "The", "max_tokens": 24, "temperature": 0,
                                          "stop": stop, "stream": True}, timeout=60)
    eq(lib.sse_content(s.datas()), c["text"], "stream holds back and drops the stop string")


def test_logprobs_shapes(t):
    w = worker(t)
    j = w.chat("lp", max_tokens=4, temperature=0, logprobs=True, top_logprobs=3).json()
    content = j["choices"][0]["logprobs"]["content"]
    eq(len(content), j["usage"]["completion_tokens"], "one entry per token")
    for e in content:
        check(isinstance(e["token"], str) and isinstance(e["logprob"], float), "entry %r" % e)
        check(isinstance(e["bytes"], list), "bytes")
        eq(len(e["top_logprobs"]), 3, "top_logprobs")
        check(e["logprob"] <= 0.0, "logprob <= 0")
    j = w.chat("lp", max_tokens=3, temperature=0, logprobs=True, top_logprobs=2,
               return_tokens_as_token_ids=True).json()
    for e in j["choices"][0]["logprobs"]["content"]:
        check(e["token"].startswith("token_id:"), "token_id form %r" % e["token"])
    c = w.complete("hello there", max_tokens=3, temperature=0, logprobs=2).json()["choices"][0]
    lp = c["logprobs"]
    n = len(lp["tokens"])
    for k in ("token_logprobs", "top_logprobs", "text_offset"):
        eq(len(lp[k]), n, "completions logprobs %s length" % k)
    e = w.complete("hello there", max_tokens=3, temperature=0, logprobs=1, echo=True).json()
    ec = e["choices"][0]
    check(ec["text"].startswith("hello there"), "echo prepends the prompt")
    eq(ec["logprobs"]["token_logprobs"][0], None, "first prompt token has no logprob")
    check(ec["logprobs"]["token_logprobs"][1] is not None, "prompt logprobs present")


def test_token_ids_and_tokenize(t):
    w = worker(t)
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    tk = lib.post(w, "/tokenize", {"messages": msgs}).json()
    eq(tk["count"], len(tk["tokens"]), "count")
    eq(tk["max_model_len"], 1024, "max_model_len")
    j = lib.post(w, "/v1/chat/completions", {"messages": msgs, "max_tokens": 3,
                                             "return_token_ids": True}, timeout=60).json()
    eq(j["prompt_token_ids"], tk["tokens"], "chat prompt == /tokenize of messages")
    eq(j["usage"]["prompt_tokens"], tk["count"], "usage prompt tokens")
    d = lib.post(w, "/detokenize", {"tokens": tk["tokens"]}).json()
    check(d["prompt"].startswith("<|im_start|>system\nBe brief.<|im_end|>"), "template: %r" % d["prompt"])
    check(d["prompt"].endswith("<|im_start|>assistant\n"), "generation prompt")
    p = lib.post(w, "/tokenize", {"prompt": "hello world"}).json()
    eq(lib.post(w, "/detokenize", {"tokens": p["tokens"]}).json()["prompt"], "hello world", "round trip")
    # completions with token-id prompts and lists of prompts
    c = w.complete(p["tokens"], max_tokens=2, temperature=0).json()
    eq(c["usage"]["prompt_tokens"], p["count"], "id prompt")
    c = w.complete(["a", "b c"], max_tokens=2, n=2).json()
    eq(sorted(x["index"] for x in c["choices"]), [0, 1, 2, 3], "prompts x n choices")


def test_completion_stream_shape(t):
    w = worker(t)
    s = lib.stream(w, "/v1/completions", {"prompt": "x", "max_tokens": 5, "stream": True,
                                          "stream_options": {"include_usage": True}}, timeout=60)
    cs = chunks(s.datas())
    eq(s.datas()[-1], "[DONE]", "DONE")
    for c in cs:
        eq(c["object"], "text_completion", "object")
        check(c["id"].startswith("cmpl-"), "id")
    eq(cs[-1]["choices"], [], "usage chunk")
    check(cs[-1]["usage"]["completion_tokens"] <= 5, "usage")


def test_reasoning_and_tools_fields(t):
    w = start_worker(t, name="r", args=["--reasoning-parser", "qwen3", "--tool-call-parser", "hermes"])
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "w",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    j = w.chat("weather?", max_tokens=6, tools=tools).json()
    m = j["choices"][0]["message"]
    for k in ("content", "reasoning_content", "tool_calls"):
        check(k in m, "message lacks %s: %r" % (k, m))
    check(isinstance(m["tool_calls"], list), "tool_calls list")
    # with thinking on and no </think> in 6 random tokens everything is reasoning
    if m["reasoning_content"] is not None:
        check(isinstance(m["reasoning_content"], str), "reasoning string")
    j = w.chat("hi", max_tokens=4, chat_template_kwargs={"enable_thinking": False}).json()
    eq(j["choices"][0]["message"]["reasoning_content"], None, "thinking off: no reasoning")
    tk = lib.post(w, "/tokenize", {"messages": [{"role": "user", "content": "hi"}],
                                   "tools": tools}).json()
    txt = lib.post(w, "/detokenize", {"tokens": tk["tokens"]}).json()["prompt"]
    check("get_weather" in txt and "<tools>" in txt, "tools rendered into the prompt")
    tk2 = lib.post(w, "/tokenize", {"messages": [{"role": "user", "content": "hi"}],
                                    "tools": tools, "tool_choice": "none"}).json()
    check(tk2["count"] < tk["count"], "tool_choice none renders without tools")


def test_errors(t):
    w = worker(t)
    cases = [
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages"),
        ({"messages": [{"role": "user"}]}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": -1}, "temperature"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
        ({"messages": [{"role": "user", "content": "x"}], "top_p": 0}, "top_p"),
        ({"messages": [{"role": "user", "content": "x"}], "top_p": 1.5}, "top_p"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 0}, "n"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 30, "logprobs": True}, "top_logprobs"),
        ({"messages": [{"role": "user", "content": "x"}], "stop": 5}, "stop"),
        ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}, "tools"),
        ({"messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": True}}, "stream_options"),
        ({"messages": [{"role": "user", "content": "x"}], "presence_penalty": 3}, "presence_penalty"),
    ]
    for body, param in cases:
        e = expect_openai_error(lib.post(w, "/v1/chat/completions", body), 400, json.dumps(body))
        eq(e["param"], param, "param of %s" % json.dumps(body))
    e = expect_openai_error(w.chat("x", max_tokens=5000), 400, "context length")
    check("1024" in e["message"] and "5000" in e["message"], "both numbers: %s" % e["message"])
    e = expect_openai_error(w.complete("x", suffix="y"), 400, "suffix")
    e = expect_openai_error(w.complete([], max_tokens=1), 400, "empty prompt list")
    e = expect_openai_error(w.complete([999999999], max_tokens=1), 400, "bad token id")
    e = expect_openai_error(w.complete("x", logprobs=21), 400, "completion logprobs")
    expect_openai_error(lib.post(w, "/v1/chat/completions", b"{not json"), 400, "malformed JSON")
    expect_openai_error(lib.post(w, "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "\xff"}]}'), 400, "invalid UTF-8")
    expect_openai_error(lib.post(w, "/v1/chat/completions", b"[1,2]"), 400, "not an object")
    expect_openai_error(w.chat("x", model="other"), 404, "unknown model")
    expect_openai_error(lib.get(w, "/nope"), 404, "unknown route")
    expect_openai_error(lib.get(w, "/v1/chat/completions"), 405, "GET on a POST route")
    head = ("POST /v1/completions HTTP/1.1\r\nHost: w\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % (64 << 20)).encode()
    data, _ = lib.raw_exchange(w, head, timeout=10)
    rs = lib.parse_responses(data)
    check(rs, "an answer to an oversize body: %r" % data[:200])
    expect_openai_error(rs[0], 413, "oversize body")
    # the worker survived all of it
    eq(w.chat("still alive", max_tokens=2).status, 200, "alive")


def test_openai_client(t):
    openai = lib.openai_module()
    w = worker(t)
    client = lib.openai_client(w, timeout=60)
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=5, temperature=0)
    check(r.choices[0].message.role == "assistant", "role")
    check(r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, "usage")
    text = ""
    for ch in client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                             max_tokens=5, temperature=0, stream=True):
        if ch.choices and ch.choices[0].delta.content:
            text += ch.choices[0].delta.content
    eq(text, r.choices[0].message.content, "client stream == non-stream")
    c = client.completions.create(model="tiny", prompt="hello", max_tokens=3, logprobs=2)
    check(len(c.choices[0].logprobs.tokens) >= 1, "completion logprobs")
    try:
        client.chat.completions.create(model="tiny", messages=[], max_tokens=1)
        raise lib.TestFailure("empty messages accepted")
    except openai.BadRequestError:
        pass
    ms = client.models.list()
    eq([m.id for m in ms.data], ["tiny"], "models")


def test_stream_n_and_echo(t):
    w = worker(t)
    s = lib.stream(w, "/v1/chat/completions",
                   {"messages": [{"role": "user", "content": "two"}], "n": 2, "max_tokens": 4,
                    "stream": True, "return_token_ids": True, "logprobs": True}, timeout=60)
    cs = chunks(s.datas())
    roles = [c["choices"][0]["index"] for c in cs if c["choices"][0]["delta"].get("role")]
    eq(sorted(roles), [0, 1], "a role chunk per choice")
    check(all("prompt_token_ids" in c for c in cs if c["choices"][0]["delta"].get("role")),
          "prompt_token_ids in the first chunks")
    ends = [c["choices"][0]["index"] for c in cs if c["choices"][0]["finish_reason"]]
    eq(sorted(ends), [0, 1], "a finish chunk per choice")
    ids = {0: [], 1: []}
    for c in cs:
        ch = c["choices"][0]
        ids[ch["index"]] += ch.get("token_ids") or []
    check(all(1 <= len(v) <= 4 for v in ids.values()), "token_ids streamed: %r" % ids)
    s = lib.stream(w, "/v1/completions", {"prompt": "Echo me", "max_tokens": 3, "echo": True,
                                          "stream": True, "temperature": 0}, timeout=60)
    text = lib.sse_content(s.datas())
    ns = w.complete("Echo me", max_tokens=3, echo=True, temperature=0).json()
    check(text.startswith("Echo me"), "stream echo starts with the prompt")
    eq(text, ns["choices"][0]["text"], "stream echo == non-stream echo")
