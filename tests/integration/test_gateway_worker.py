# test_gateway_worker.py -- the gateway in front of REAL llmux-worker
# processes (tiny random Qwen3 with the real tokenizer and chat template):
# the official openai client through the gateway (chat, stream with usage,
# completions with logprobs), aliases and A/B splits resolved by the gateway
# and accepted by the worker, a client that disconnects mid-stream frees the
# worker's sequence, a worker killed mid-stream ends the stream with an error
# event while the next request fails over to the surviving worker.
import json
import signal
import socket
import time

import lib
from lib import check, eq, model_block, openai_client
import worker_lib
from worker_lib import start_worker


def skip_reason():
    return worker_lib.skip_reason()


def greedy(**extra):
    b = {"temperature": 0, "max_tokens": 8}
    b.update(extra)
    return b


def setup(t, n_workers=1, extra=""):
    ws = [start_worker(t, name="qwen-tiny") for _ in range(n_workers)]
    conf = model_block("qwen-tiny", [w.url for w in ws], "alias tiny-latest; " + extra)
    g = t.start_gateway(conf)
    return g, ws


def test_openai_chat_through_gateway(t):
    g, (w,) = setup(t)
    client = openai_client(g)
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    resp = client.chat.completions.create(model="qwen-tiny", messages=msgs, **greedy())
    eq(resp.object, "chat.completion", "object")
    eq(resp.model, "qwen-tiny", "model")
    eq(resp.choices[0].message.role, "assistant", "role")
    check(isinstance(resp.choices[0].message.content, str), "content")
    check(resp.choices[0].finish_reason in ("stop", "length"), "finish_reason")
    # the prompt the worker counted is the chat template + tokenizer's count
    tok = lib.post(g, "/tokenize", {"model": "qwen-tiny", "messages": msgs,
                                    "add_generation_prompt": True}).json()
    eq(resp.usage.prompt_tokens, tok["count"], "prompt_tokens = /tokenize count")
    eq(resp.usage.total_tokens, resp.usage.prompt_tokens + resp.usage.completion_tokens, "usage")
    # the same request straight to the worker gives the same greedy answer
    direct = w.chat("hello there", **greedy(messages=msgs)).json()
    eq(resp.choices[0].message.content, direct["choices"][0]["message"]["content"],
       "gateway answer = direct answer")


def test_openai_stream_through_gateway(t):
    g, (w,) = setup(t)
    client = openai_client(g)
    msgs = [{"role": "user", "content": "count to five"}]
    full = client.chat.completions.create(model="qwen-tiny", messages=msgs, **greedy())
    stream = client.chat.completions.create(model="qwen-tiny", messages=msgs, stream=True,
                                            stream_options={"include_usage": True}, **greedy())
    text, finish, usage, roles = "", None, None, 0
    for chunk in stream:
        eq(chunk.object, "chat.completion.chunk", "chunk object")
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            roles += 1 if c.delta.role == "assistant" else 0
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    eq(roles, 1, "one role delta")
    eq(text, full.choices[0].message.content, "streamed text = non-streamed text")
    eq(finish, full.choices[0].finish_reason, "finish_reason")
    check(usage is not None, "usage chunk")
    eq(usage.completion_tokens, full.usage.completion_tokens, "completion tokens")


def test_openai_completions_through_gateway(t):
    g, (w,) = setup(t)
    client = openai_client(g)
    resp = client.completions.create(model="tiny-latest", prompt="Once upon a time",
                                     logprobs=2, echo=True, **greedy(max_tokens=4))
    eq(resp.object, "text_completion", "object")
    ch = resp.choices[0]
    check(ch.text.startswith("Once upon a time"), "echo %r" % ch.text)
    lp = ch.logprobs
    eq(len(lp.tokens), len(lp.token_logprobs), "tokens/logprobs")
    check(lp.token_logprobs[0] is None, "first prompt token has no logprob")
    check(all(len(x) <= 3 for x in lp.top_logprobs[1:]), "top logprobs <= N+1")
    text = "".join(c.choices[0].text for c in client.completions.create(
        model="qwen-tiny", prompt="Once upon a time", stream=True, **greedy(max_tokens=4))
        if c.choices)
    eq("Once upon a time" + text, ch.text, "streamed completion = echo + text")


def test_alias_and_split_reach_real_workers(t):
    a = start_worker(t, name="tiny-a")
    b = start_worker(t, name="tiny-b")
    conf = (model_block("tiny-a", [a.url], "alias a-latest;") + model_block("tiny-b", [b.url]) +
            "route tiny { split tiny-a 1; split tiny-b 1; }\n")
    g = t.start_gateway(conf)
    seen = {}
    for i in range(6):
        r = lib.post(g, "/v1/chat/completions", lib.chat_body("tiny", "hi %d" % i, **greedy()))
        eq(r.status, 200, "split request status: %s" % r.body[:200])
        seen[r.headers.get("x-llmux-model")] = seen.get(r.headers.get("x-llmux-model"), 0) + 1
        eq(r.json()["model"], "tiny", "the answer names the model the client asked for")
    eq(seen, {"tiny-a": 3, "tiny-b": 3}, "1:1 split over two real workers")
    r = lib.post(g, "/v1/chat/completions", lib.chat_body("a-latest", "x", **greedy()))
    eq(r.status, 200, "alias status: %s" % r.body[:200])
    eq(r.headers.get("x-llmux-model"), "tiny-a", "alias resolved by the gateway")
    r = lib.post(g, "/v1/chat/completions", lib.chat_body("tiny-c", "x"))
    lib.expect_openai_error(r, 404, "unknown model at the gateway")


def test_client_disconnect_frees_worker_sequence(t):
    g, (w,) = setup(t)
    body = json.dumps({"model": "qwen-tiny", "stream": True, "max_tokens": 900,
                       "ignore_eos": True, "messages": [{"role": "user", "content": "go"}]})
    s = socket.create_connection(("127.0.0.1", g.port), timeout=10)
    s.sendall(("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
               "\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)).encode())
    got = b""
    while got.count(b"data: ") < 3:
        d = s.recv(65536)
        check(d, "stream ended early: %r" % got[-300:])
        got += d
    lib.wait_for(lambda: w.load()["running"] == 1, 10, what="the worker runs the sequence")
    s.close()
    lib.wait_for(lambda: w.load()["running"] == 0, 10,
                 what="the worker freed the sequence after the client left")
    ld = w.load()
    eq(ld["kv_blocks_free"], ld["kv_blocks_total"], "every KV block is free again")
    # and the worker still serves
    r = lib.post(g, "/v1/chat/completions", lib.chat_body("qwen-tiny", "again", **greedy()))
    eq(r.status, 200, "next request")


def test_worker_killed_midstream_then_failover(t):
    g, (w1, w2) = setup(t, n_workers=2)
    # pin the first stream to one worker: whichever it lands on gets killed
    body = {"model": "qwen-tiny", "stream": True, "max_tokens": 900, "ignore_eos": True,
            "messages": [{"role": "user", "content": "go on"}]}
    st = lib.Stream(g, "/v1/chat/completions", body, timeout=30)
    eq(st.status, 200, "stream status")
    backend = st.headers.get("x-llmux-backend")
    victim = w1 if backend.endswith("#0") else w2
    for _ in range(3):
        check(st.next_event() is not None,
              "stream started: %r %r" % (st.error, st.body[-300:]))
    n_before = len(st.events)
    victim.proc.send_signal(signal.SIGKILL)
    rest = st.read_all().datas()[n_before:]
    tail = [e for e in rest if e != "[DONE]"]
    check(rest and rest[-1] == "[DONE]", "stream ends with [DONE] after the worker died")
    check(any("error" in json.loads(e) for e in tail if e.startswith("{")),
          "an SSE error event tells the client: %r" % rest[-3:])
    # the next requests go to the survivor
    for i in range(3):
        r = lib.post(g, "/v1/chat/completions", lib.chat_body("qwen-tiny", "after %d" % i,
                                                             **greedy()))
        eq(r.status, 200, "request after the kill: %s" % r.body[:200])
