# test_openai_client.py -- the official `openai` Python client talks to the
# gateway as it would to OpenAI: chat, streaming (with usage) and legacy
# completions answered by a real llmux-worker (tiny random Qwen3), embeddings
# from a stand-in server (the embedding worker is a later issue), and typed
# errors (NotFoundError, BadRequestError, and RateLimitError passed through
# from the stand-in upstream, which can be told to fail). Skipped when the
# openai module is not installed.
from lib import check, eq, model_block, openai_client
import worker_lib


def skip_reason():
    try:
        import openai  # noqa: F401
    except ImportError:
        return "python module openai is not installed"
    return worker_lib.skip_reason()


def setup(t, **up):
    w = worker_lib.start_worker(t, name="m1")
    a = t.start_upstream("A", **up)
    e = t.start_upstream("E")
    conf = (model_block("m1", [w.url], "alias gpt-4o;") +
            model_block("fake", [a]) +
            model_block("emb", [e], "task embed;"))
    g = t.start_gateway(conf)
    return g, openai_client(g)


def test_chat(t):
    g, client = setup(t)
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    resp = client.chat.completions.create(model="m1", messages=msgs, max_tokens=6, temperature=0)
    eq(resp.object, "chat.completion", "object")
    check(resp.id.startswith("chatcmpl-"), "id %r" % resp.id)
    eq(resp.model, "m1", "model")
    eq(resp.choices[0].message.role, "assistant", "role")
    check(isinstance(resp.choices[0].message.content, str), "content")
    eq(resp.choices[0].finish_reason, "length", "finish_reason (6 tokens asked)")
    eq(resp.usage.completion_tokens, 6, "completion tokens")
    eq(resp.usage.total_tokens, resp.usage.prompt_tokens + 6, "usage")


def test_chat_alias_with_raw_headers(t):
    g, client = setup(t)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}], max_tokens=2)
    eq(raw.headers.get("x-llmux-model"), "m1", "x-llmux-model")
    eq(raw.headers.get("x-llmux-backend"), "m1#0", "x-llmux-backend")
    eq(raw.parse().model, "gpt-4o", "model as the client named it")


def test_chat_stream(t):
    g, client = setup(t)
    msgs = [{"role": "user", "content": "count"}]
    full = client.chat.completions.create(model="m1", messages=msgs, max_tokens=6, temperature=0)
    stream = client.chat.completions.create(
        model="m1", messages=msgs, stream=True, max_tokens=6, temperature=0,
        stream_options={"include_usage": True})
    text, finish, usage, n = "", None, None, 0
    for chunk in stream:
        n += 1
        eq(chunk.object, "chat.completion.chunk", "chunk object")
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    eq(text, full.choices[0].message.content, "streamed content = non-streamed content")
    eq(finish, "length", "finish_reason")
    check(usage is not None and usage.completion_tokens == 6, "usage chunk %r" % usage)
    check(n >= 3, "role, content and usage chunks (%d)" % n)


def test_completions(t):
    g, client = setup(t)
    resp = client.completions.create(model="m1", prompt="once upon", max_tokens=5,
                                     temperature=0)
    eq(resp.object, "text_completion", "object")
    eq(resp.usage.completion_tokens, 5, "completion tokens")
    stream = client.completions.create(model="m1", prompt="once upon", stream=True,
                                       max_tokens=5, temperature=0)
    eq("".join(c.choices[0].text for c in stream if c.choices), resp.choices[0].text,
       "streamed completion = non-streamed")


def test_embeddings(t):
    g, client = setup(t)
    resp = client.embeddings.create(model="emb", input=["a", "b", "c"])
    eq(len(resp.data), 3, "vectors")
    eq([d.index for d in resp.data], [0, 1, 2], "indexes")
    for d in resp.data:
        eq(len(d.embedding), 8, "dim")
    one = client.embeddings.create(model="emb", input="a", encoding_format="float")
    eq(one.data[0].embedding, resp.data[0].embedding, "same input, same vector")


def test_not_found_error(t):
    import openai
    g, client = setup(t)
    try:
        client.chat.completions.create(model="m2", messages=[{"role": "user", "content": "x"}])
    except openai.NotFoundError as e:
        eq(e.status_code, 404, "status")
        check("m2" in str(e.message), "message %r" % e.message)
        check(isinstance(e.body, dict) and "message" in e.body, "error body %r" % e.body)
    else:
        raise AssertionError("expected openai.NotFoundError")
    try:
        client.embeddings.create(model="nope", input="x")
    except openai.NotFoundError:
        pass
    else:
        raise AssertionError("expected openai.NotFoundError for embeddings")


def test_bad_request_error(t):
    import openai
    g, client = setup(t)
    try:
        client.chat.completions.create(model=42, messages=[{"role": "user", "content": "x"}])
    except openai.BadRequestError as e:
        eq(e.status_code, 400, "status")
    else:
        raise AssertionError("expected openai.BadRequestError for a numeric model")


def test_rate_limit_passed_through(t):
    import openai
    g, client = setup(t)
    try:
        client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "x"}],
                                       extra_body={"fake_status": 429})
    except openai.RateLimitError as e:
        eq(e.status_code, 429, "status")
        check("fake upstream A" in str(e.message), "upstream's message relayed: %r" % e.message)
    else:
        raise AssertionError("expected openai.RateLimitError")


def test_stream_error_before_first_byte(t):
    import openai
    g, client = setup(t)
    try:
        s = client.chat.completions.create(model="unknown-model", stream=True,
                                           messages=[{"role": "user", "content": "x"}])
        list(s)
    except openai.NotFoundError:
        pass
    else:
        raise AssertionError("expected openai.NotFoundError for a stream to an unknown model")


def test_models_list(t):
    g, client = setup(t)
    ids = sorted(m.id for m in client.models.list())
    eq(ids, ["emb", "fake", "gpt-4o", "m1"], "model ids")
    m = client.models.retrieve("m1")
    eq(m.id, "m1", "retrieve id")
    eq(m.owned_by, "llmux", "owned_by")
