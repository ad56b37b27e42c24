/*
 * chat.c -- POST /v1/chat/completions: parse (request.c), start the
 * generation (generate.c) and format it as OpenAI/vLLM do: chat.completion
 * objects, or chat.completion.chunk SSE events (a role chunk per choice,
 * content / reasoning_content / tool_calls deltas, the finish chunk, the
 * usage chunk when asked, [DONE]).
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "generate.h"
#include "server.h"
#include "util.h"

static json_t *chat_logprobs(struct wk_gen *g, struct gen_choice *ch, int from, int to)
{
    json_t *content = json_array();
    for (int i = from; i < to && ch->lps; i++) {
        struct token_logprob *lp = &ch->lps[i];
        json_t *e = json_object();
        json_object_set_new(e, "token", gen_token_json(g, ch->tokens[i]));
        json_object_set_new(e, "logprob", json_real(gen_logprob_value(lp->logprob)));
        json_object_set_new(e, "bytes", gen_token_bytes(g, ch->tokens[i]));
        json_t *top = json_array();
        for (int k = 0; k < lp->n_top && k < g->req.logprobs; k++) {
            json_t *t = json_object();
            json_object_set_new(t, "token", gen_token_json(g, lp->top_ids[k]));
            json_object_set_new(t, "logprob", json_real(gen_logprob_value(lp->top_logprobs[k])));
            json_object_set_new(t, "bytes", gen_token_bytes(g, lp->top_ids[k]));
            json_array_append_new(top, t);
        }
        json_object_set_new(e, "top_logprobs", top);
        json_array_append_new(content, e);
    }
    json_t *o = json_object();
    json_object_set_new(o, "content", content);
    return o;
}

static void chat_delta(struct wk_gen *g, struct gen_choice *ch, struct gen_delta *d)
{
    if (d->first) {
        json_t *j = gen_object_new(g, "chat.completion.chunk");
        json_t *c = json_object();
        json_t *delta = json_object();
        json_object_set_new(delta, "role", json_string("assistant"));
        json_object_set_new(delta, "content", json_string(""));
        json_object_set_new(c, "index", json_integer(ch->index));
        json_object_set_new(c, "delta", delta);
        json_object_set_new(c, "logprobs", json_null());
        json_object_set_new(c, "finish_reason", json_null());
        json_t *arr = json_array();
        json_array_append_new(arr, c);
        json_object_set_new(j, "choices", arr);
        if (g->req.return_token_ids) {
            struct api_prompt *p = &g->req.prompts[ch->prompt];
            json_object_set_new(j, "prompt_token_ids", gen_token_ids(p->ids, 0, p->n_ids));
        }
        wk_conn_sse_json(g->conn, j);
    }
    int has = d->text.len || d->reasoning.len || d->n_tools || d->finish;
    if (!has)
        return;
    json_t *delta = json_object();
    if (d->reasoning.len)
        json_object_set_new(delta, "reasoning_content", json_stringn(d->reasoning.p, d->reasoning.len));
    if (d->text.len)
        json_object_set_new(delta, "content", json_stringn(d->text.p, d->text.len));
    if (d->n_tools) {
        json_t *tcs = json_array();
        for (int i = 0; i < d->n_tools; i++) {
            struct toolcall_delta *t = &d->tools[i];
            json_t *tc = json_object(), *fn = json_object();
            json_object_set_new(tc, "index", json_integer(t->index));
            if (t->id) {
                json_object_set_new(tc, "id", json_string(t->id));
                json_object_set_new(tc, "type", json_string("function"));
            }
            if (t->name)
                json_object_set_new(fn, "name", json_string(t->name));
            if (t->args)
                json_object_set_new(fn, "arguments", json_string(t->args));
            json_object_set_new(tc, "function", fn);
            json_array_append_new(tcs, tc);
        }
        json_object_set_new(delta, "tool_calls", tcs);
    }
    json_t *j = gen_object_new(g, "chat.completion.chunk");
    json_t *c = json_object();
    json_object_set_new(c, "index", json_integer(ch->index));
    json_object_set_new(c, "delta", delta);
    json_object_set_new(c, "logprobs", g->req.logprobs >= 0 && d->tok_to > d->tok_from
                        ? chat_logprobs(g, ch, d->tok_from, d->tok_to) : json_null());
    json_object_set_new(c, "finish_reason", d->finish ? json_string(d->finish) : json_null());
    if (d->finish)
        json_object_set_new(c, "stop_reason", ch->stop_reason ? json_incref(ch->stop_reason) : json_null());
    if (g->req.return_token_ids)
        json_object_set_new(c, "token_ids", gen_token_ids(ch->tokens, d->tok_from, d->tok_to));
    json_t *arr = json_array();
    json_array_append_new(arr, c);
    json_object_set_new(j, "choices", arr);
    wk_conn_sse_json(g->conn, j);
}

static void chat_done(struct wk_gen *g)
{
    if (g->conn == NULL) {
        gen_free(g);
        return;
    }
    if (g->req.stream) {
        if (g->failed) {
            struct api_err e = { .status = 500 };
            for (int i = 0; i < g->n_choices; i++)
                if (g->ch[i].error[0])
                    snprintf(e.message, sizeof(e.message), "%s", g->ch[i].error);
            json_t *err = json_object(), *o = json_object();
            json_object_set_new(err, "message", json_string(e.message));
            json_object_set_new(err, "type", json_string("server_error"));
            json_object_set_new(err, "param", json_null());
            json_object_set_new(err, "code", json_integer(500));
            json_object_set_new(o, "error", err);
            wk_conn_sse_json(g->conn, o);
        }
        if (g->req.include_usage) {
            json_t *j = gen_object_new(g, "chat.completion.chunk");
            json_object_set_new(j, "choices", json_array());
            json_object_set_new(j, "usage", gen_usage(g));
            wk_conn_sse_json(g->conn, j);
        }
        wk_conn_sse_end(g->conn);
        gen_free(g);
        return;
    }
    if (g->failed) {
        for (int i = 0; i < g->n_choices; i++)
            if (g->ch[i].error[0]) {
                wk_conn_error_msg(g->conn, 500, NULL, g->ch[i].error);
                break;
            }
        gen_free(g);
        return;
    }
    json_t *j = gen_object_new(g, "chat.completion");
    json_t *choices = json_array();
    for (int i = 0; i < g->n_choices; i++) {
        struct gen_choice *ch = &g->ch[i];
        int n_tools = ch->tool_calls ? (int)json_array_size(ch->tool_calls) : 0;
        json_t *m = json_object();
        json_object_set_new(m, "role", json_string("assistant"));
        if (ch->content.len > 0 || (!ch->use_reasoning && n_tools == 0))
            json_object_set_new(m, "content", json_stringn(strbuf_str(&ch->content), ch->content.len));
        else
            json_object_set_new(m, "content", json_null());
        json_object_set_new(m, "reasoning_content", ch->reasoning.len
                            ? json_stringn(ch->reasoning.p, ch->reasoning.len) : json_null());
        json_object_set_new(m, "tool_calls", n_tools ? json_incref(ch->tool_calls) : json_array());
        json_t *c = json_object();
        json_object_set_new(c, "index", json_integer(ch->index));
        json_object_set_new(c, "message", m);
        json_object_set_new(c, "logprobs", g->req.logprobs >= 0
                            ? chat_logprobs(g, ch, 0, ch->n_tokens) : json_null());
        json_object_set_new(c, "finish_reason", json_string(ch->finish ? ch->finish : "stop"));
        json_object_set_new(c, "stop_reason", ch->stop_reason ? json_incref(ch->stop_reason) : json_null());
        if (g->req.return_token_ids)
            json_object_set_new(c, "token_ids", gen_token_ids(ch->tokens, 0, ch->n_tokens));
        json_array_append_new(choices, c);
    }
    json_object_set_new(j, "choices", choices);
    json_object_set_new(j, "usage", gen_usage(g));
    if (g->req.return_token_ids) {
        struct api_prompt *p = &g->req.prompts[0];
        json_object_set_new(j, "prompt_token_ids", gen_token_ids(p->ids, 0, p->n_ids));
    }
    wk_conn_respond_json(g->conn, 200, j);
    gen_free(g);
}

static const struct gen_ops chat_ops = { chat_delta, chat_done };

void api_chat_completions(struct wk_conn *c)
{
    struct wk *w = wk_conn_worker(c);
    struct api_request req;
    struct api_err err;
    size_t len;
    const char *body = wk_conn_body(c, &len);
    if (api_request_parse(&w->api, API_CHAT, body, len, wk_conn_header(c, "x-llmux-model"),
                          &req, &err) < 0) {
        api_request_free(&req);
        wk_conn_error(c, &err);
        return;
    }
    int stream = req.stream;
    if (stream)
        wk_conn_sse_start(c);
    gen_start(w, c, &req, &chat_ops, "chatcmpl-");
}
