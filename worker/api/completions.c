/*
 * completions.c -- POST /v1/completions: string, list, token-id and
 * list-of-id prompts, n choices per prompt (index = prompt * n + i), echo
 * (with prompt logprobs, the first null), logprobs as {tokens,
 * token_logprobs, top_logprobs, text_offset}, text_completion objects and
 * SSE chunks as vLLM sends them.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "generate.h"
#include "server.h"
#include "util.h"

static long utf8_chars(const char *s, size_t n)
{
    long c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

/* Append one position to the logprobs object <lp>. <top> NULL: no top. */
static void lp_append(struct wk_gen *g, struct gen_choice *ch, json_t *lp, int32_t id,
                      const struct token_logprob *e, int first_prompt)
{
    json_t *tok = gen_token_json(g, id);
    long chars = utf8_chars(json_string_value(tok), json_string_length(tok));
    json_array_append_new(json_object_get(lp, "text_offset"), json_integer(ch->lp_offset));
    ch->lp_offset += chars;
    json_array_append_new(json_object_get(lp, "tokens"), tok);
    if (first_prompt || e == NULL) {
        json_array_append_new(json_object_get(lp, "token_logprobs"), json_null());
        json_array_append_new(json_object_get(lp, "top_logprobs"), json_null());
        return;
    }
    json_array_append_new(json_object_get(lp, "token_logprobs"),
                          json_real(gen_logprob_value(e->logprob)));
    json_t *top = json_object();
    for (int k = 0; k < e->n_top && k < g->req.logprobs; k++) {
        json_t *t = gen_token_json(g, e->top_ids[k]);
        json_object_set_new(top, json_string_value(t), json_real(gen_logprob_value(e->top_logprobs[k])));
        json_decref(t);
    }
    json_t *chosen = gen_token_json(g, id);   /* the chosen token is always listed */
    if (json_object_get(top, json_string_value(chosen)) == NULL)
        json_object_set_new(top, json_string_value(chosen), json_real(gen_logprob_value(e->logprob)));
    json_decref(chosen);
    json_array_append_new(json_object_get(lp, "top_logprobs"), top);
}

static json_t *lp_new(void)
{
    json_t *lp = json_object();
    json_object_set_new(lp, "text_offset", json_array());
    json_object_set_new(lp, "token_logprobs", json_array());
    json_object_set_new(lp, "tokens", json_array());
    json_object_set_new(lp, "top_logprobs", json_array());
    return lp;
}

static void lp_prompt(struct wk_gen *g, struct gen_choice *ch, json_t *lp)
{
    struct api_prompt *p = &g->req.prompts[ch->prompt];
    for (int i = 0; i < p->n_ids; i++) {
        const struct token_logprob *e = i < ch->n_plps ? &ch->plps[i] : NULL;
        lp_append(g, ch, lp, p->ids[i], e, i == 0);
    }
}

static void lp_output(struct wk_gen *g, struct gen_choice *ch, json_t *lp, int from, int to)
{
    for (int i = from; i < to && ch->lps; i++)
        lp_append(g, ch, lp, ch->tokens[i], &ch->lps[i], 0);
}

static void cmpl_delta(struct wk_gen *g, struct gen_choice *ch, struct gen_delta *d)
{
    struct strbuf text = { 0 };
    json_t *lp = g->req.logprobs >= 0 ? lp_new() : NULL;
    struct api_prompt *p = &g->req.prompts[ch->prompt];
    if (d->first && g->req.echo) {
        strbuf_adds(&text, p->text);
        if (lp)
            lp_prompt(g, ch, lp);
    }
    strbuf_add(&text, strbuf_str(&d->text), d->text.len);
    if (lp)
        lp_output(g, ch, lp, d->tok_from, d->tok_to);
    if (text.len == 0 && !d->finish && !(d->first && g->req.return_token_ids)) {
        json_decref(lp);
        strbuf_free(&text);
        return;
    }
    json_t *j = gen_object_new(g, "text_completion");
    json_t *c = json_object();
    json_object_set_new(c, "index", json_integer(ch->index));
    json_object_set_new(c, "text", json_stringn(strbuf_str(&text), text.len));
    json_object_set_new(c, "logprobs", lp ? lp : json_null());
    json_object_set_new(c, "finish_reason", d->finish ? json_string(d->finish) : json_null());
    json_object_set_new(c, "stop_reason", ch->stop_reason && d->finish ? json_incref(ch->stop_reason) : json_null());
    if (g->req.return_token_ids) {
        if (d->first)
            json_object_set_new(c, "prompt_token_ids", gen_token_ids(p->ids, 0, p->n_ids));
        json_object_set_new(c, "token_ids", gen_token_ids(ch->tokens, d->tok_from, d->tok_to));
    }
    json_t *arr = json_array();
    json_array_append_new(arr, c);
    json_object_set_new(j, "choices", arr);
    wk_conn_sse_json(g->conn, j);
    strbuf_free(&text);
}

static void cmpl_done(struct wk_gen *g)
{
    if (g->conn == NULL) {
        gen_free(g);
        return;
    }
    const char *error = NULL;
    for (int i = 0; i < g->n_choices; i++)
        if (g->ch[i].error[0])
            error = g->ch[i].error;
    if (g->req.stream) {
        if (error) {
            json_t *err = json_object(), *o = json_object();
            json_object_set_new(err, "message", json_string(error));
            json_object_set_new(err, "type", json_string("server_error"));
            json_object_set_new(err, "param", json_null());
            json_object_set_new(err, "code", json_integer(500));
            json_object_set_new(o, "error", err);
            wk_conn_sse_json(g->conn, o);
        }
        if (g->req.include_usage) {
            json_t *j = gen_object_new(g, "text_completion");
            json_object_set_new(j, "choices", json_array());
            json_object_set_new(j, "usage", gen_usage(g));
            wk_conn_sse_json(g->conn, j);
        }
        wk_conn_sse_end(g->conn);
        gen_free(g);
        return;
    }
    if (error) {
        wk_conn_error_msg(g->conn, 500, NULL, error);
        gen_free(g);
        return;
    }
    json_t *j = gen_object_new(g, "text_completion");
    json_t *choices = json_array();
    for (int i = 0; i < g->n_choices; i++) {
        struct gen_choice *ch = &g->ch[i];
        struct api_prompt *p = &g->req.prompts[ch->prompt];
        struct strbuf text = { 0 };
        json_t *lp = g->req.logprobs >= 0 ? lp_new() : NULL;
        if (g->req.echo) {
            strbuf_adds(&text, p->text);
            if (lp)
                lp_prompt(g, ch, lp);
        }
        strbuf_add(&text, strbuf_str(&ch->text), ch->text.len);
        if (lp)
            lp_output(g, ch, lp, 0, ch->n_tokens);
        json_t *c = json_object();
        json_object_set_new(c, "index", json_integer(ch->index));
        json_object_set_new(c, "text", json_stringn(strbuf_str(&text), text.len));
        json_object_set_new(c, "logprobs", lp ? lp : json_null());
        json_object_set_new(c, "finish_reason", json_string(ch->finish ? ch->finish : "stop"));
        json_object_set_new(c, "stop_reason", ch->stop_reason ? json_incref(ch->stop_reason) : json_null());
        if (g->req.return_token_ids) {
            json_object_set_new(c, "prompt_token_ids", gen_token_ids(p->ids, 0, p->n_ids));
            json_object_set_new(c, "token_ids", gen_token_ids(ch->tokens, 0, ch->n_tokens));
        }
        json_array_append_new(choices, c);
        strbuf_free(&text);
    }
    json_object_set_new(j, "choices", choices);
    json_object_set_new(j, "usage", gen_usage(g));
    wk_conn_respond_json(g->conn, 200, j);
    gen_free(g);
}

static const struct gen_ops cmpl_ops = { cmpl_delta, cmpl_done };

void api_completions(struct wk_conn *c)
{
    struct wk *w = wk_conn_worker(c);
    struct api_request req;
    struct api_err err;
    size_t len;
    const char *body = wk_conn_body(c, &len);
    if (api_request_parse(&w->api, API_COMPLETION, body, len,
                          wk_conn_header(c, "x-llmux-model"), &req, &err) < 0) {
        api_request_free(&req);
        wk_conn_error(c, &err);
        return;
    }
    if (req.stream)
        wk_conn_sse_start(c);
    gen_start(w, c, &req, &cmpl_ops, "cmpl-");
}
