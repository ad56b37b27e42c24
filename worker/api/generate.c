/*
 * generate.c -- requests in flight. gen_start() turns an api_request into
 * engine requests (seed + i for choice i, as vLLM); engine outputs are routed
 * here by request id and pushed through detokenizer, stop strings, reasoning
 * and tool-call parsers. A stop string aborts the engine request at once
 * (its late FINISH_ABORT is ignored). The formatting belongs to gen_ops.
 */
#include "generate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server.h"
#include "util.h"

void gen_new_id(char *buf, size_t len, const char *prefix)
{
    static uint64_t counter;
    uint64_t a = hash64(&counter, sizeof(counter), (uint64_t)now_us());
    counter++;
    uint64_t b = hash64(&a, sizeof(a), (uint64_t)now_us() ^ counter);
    snprintf(buf, len, "%s%016llx%016llx", prefix, (unsigned long long)a, (unsigned long long)b);
}

double gen_logprob_value(float lp)
{
    if (isnan(lp))
        return -9999.0;
    return lp < -9999.0f ? -9999.0 : (double)lp;
}

json_t *gen_token_json(struct wk_gen *g, int32_t id)
{
    if (g->req.return_tokens_as_token_ids) {
        char b[32];
        snprintf(b, sizeof(b), "token_id:%d", (int)id);
        return json_string(b);
    }
    char *s = NULL, err[64];
    size_t n = 0;
    if (tokenizer_decode(g->w->tok, &id, 1, 0, &s, &n, err, sizeof(err)) < 0)
        return json_string("");
    json_t *j = json_stringn(s, n);
    free(s);
    return j ? j : json_string("\xef\xbf\xbd");
}

json_t *gen_token_ids(const int32_t *ids, int from, int to)
{
    json_t *a = json_array();
    for (int i = from; i < to; i++)
        json_array_append_new(a, json_integer(ids[i]));
    return a;
}

json_t *gen_object_new(struct wk_gen *g, const char *object)
{
    json_t *j = json_object();
    json_object_set_new(j, "id", json_string(g->id));
    json_object_set_new(j, "object", json_string(object));
    json_object_set_new(j, "created", json_integer(g->created));
    json_object_set_new(j, "model", json_string(g->req.model));
    return j;
}

json_t *gen_token_bytes(struct wk_gen *g, int32_t id)
{
    const char *b;
    size_t n;
    json_t *arr = json_array();
    if (tokenizer_token_bytes(g->w->tok, id, &b, &n) == 0)
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, json_integer((unsigned char)b[i]));
    return arr;
}

json_t *gen_usage(struct wk_gen *g)
{
    long long prompt = 0, completion = 0, cached = 0;
    for (int p = 0; p < g->req.n_prompts; p++)
        prompt += g->req.prompts[p].n_ids;
    for (int i = 0; i < g->n_choices; i++) {
        completion += g->ch[i].n_tokens;
        if (i % g->req.n == 0)      /* the first choice of each prompt */
            cached += g->ch[i].n_cached;
    }
    json_t *u = json_object();
    json_object_set_new(u, "prompt_tokens", json_integer(prompt));
    json_object_set_new(u, "total_tokens", json_integer(prompt + completion));
    json_object_set_new(u, "completion_tokens", json_integer(completion));
    if (cached > 0) {
        json_t *d = json_object();
        json_object_set_new(d, "cached_tokens", json_integer(cached));
        json_object_set_new(u, "prompt_tokens_details", d);
    } else {
        json_object_set_new(u, "prompt_tokens_details", json_null());
    }
    return u;
}

static void choice_free(struct gen_choice *ch)
{
    stop_free(&ch->stop);
    reasoning_free(&ch->rs);
    toolcall_stream_free(&ch->tc);
    strbuf_free(&ch->text);
    strbuf_free(&ch->reasoning);
    strbuf_free(&ch->content);
    json_decref(ch->tool_calls);
    free(ch->tokens);
    for (int i = 0; ch->lps && i < ch->n_tokens; i++) {
        free(ch->lps[i].top_ids);
        free(ch->lps[i].top_logprobs);
    }
    free(ch->lps);
    for (int i = 0; i < ch->n_plps; i++) {
        free(ch->plps[i].top_ids);
        free(ch->plps[i].top_logprobs);
    }
    free(ch->plps);
    json_decref(ch->stop_reason);
}

void gen_free(struct wk_gen *g)
{
    struct wk *w = g->w;
    if (g->prev)
        g->prev->next = g->next;
    else if (w->gens == g)
        w->gens = g->next;
    if (g->next)
        g->next->prev = g->prev;
    if (g->conn)
        wk_conn_set_gen(g->conn, NULL);
    for (int i = 0; i < g->n_choices; i++)
        choice_free(&g->ch[i]);
    free(g->ch);
    api_request_free(&g->req);
    free(g);
}

void gen_abort(struct wk_gen *g)
{
    for (int i = 0; i < g->n_choices; i++)
        if (!g->ch[i].done)
            engine_abort(g->w->eng, g->ch[i].req_id);
    g->conn = NULL;
    gen_free(g);
}

struct wk_gen *gen_start(struct wk *w, struct wk_conn *c, struct api_request *req,
                         const struct gen_ops *ops, const char *id_prefix)
{
    struct wk_gen *g = xcalloc(1, sizeof(*g));
    g->w = w;
    g->conn = c;
    g->ops = ops;
    g->req = *req;
    memset(req, 0, sizeof(*req));
    gen_new_id(g->id, sizeof(g->id), id_prefix);
    g->created = wall_time_s();
    g->n_choices = g->req.n_prompts * g->req.n;
    g->ch = xcalloc((size_t)g->n_choices, sizeof(*g->ch));
    for (int i = 0; i < g->n_choices; i++) {
        struct gen_choice *ch = &g->ch[i];
        ch->index = i;
        ch->prompt = i / g->req.n;
        ch->req_id = ++w->next_req_id;
        detok_init(&ch->dt, w->tok, g->req.skip_special_tokens);
        stop_init(&ch->stop, g->req.stop, g->req.n_stop);
        ch->use_reasoning = g->req.kind == API_CHAT && w->api.reasoning != REASONING_NONE;
        reasoning_init(&ch->rs, ch->use_reasoning ? w->api.reasoning : REASONING_NONE,
                       g->req.thinking_enabled);
        ch->use_tools = g->req.kind == API_CHAT && g->req.parse_tools;
        toolcall_stream_init(&ch->tc);
    }
    /* linked before submitting: outputs may arrive at once */
    g->next = w->gens;
    if (w->gens)
        w->gens->prev = g;
    w->gens = g;
    wk_conn_set_gen(c, g);
    for (int i = 0; i < g->n_choices; i++) {
        struct gen_choice *ch = &g->ch[i];
        struct api_prompt *p = &g->req.prompts[ch->prompt];
        struct engine_request *r = xcalloc(1, sizeof(*r));
        r->id = ch->req_id;
        r->n_prompt = p->n_ids;
        r->prompt = xmalloc((size_t)p->n_ids * sizeof(int32_t));
        memcpy(r->prompt, p->ids, (size_t)p->n_ids * sizeof(int32_t));
        r->sp = g->req.sp;
        r->sp.max_tokens = g->req.prompt_max_tokens[ch->prompt];
        if (g->req.sp.has_seed)
            r->sp.seed = g->req.sp.seed + (uint64_t)(i % g->req.n);
        r->sp.stop_token_ids = NULL;
        if (g->req.sp.n_stop_token_ids > 0) {
            r->sp.stop_token_ids = xmalloc((size_t)g->req.sp.n_stop_token_ids * sizeof(int32_t));
            memcpy(r->sp.stop_token_ids, g->req.sp.stop_token_ids,
                   (size_t)g->req.sp.n_stop_token_ids * sizeof(int32_t));
        }
        r->priority = g->req.priority;
        if (engine_add_request(w->eng, r) < 0) {
            engine_request_free(r);
            for (int j = 0; j < i; j++)
                engine_abort(w->eng, g->ch[j].req_id);
            for (int j = 0; j < g->n_choices; j++)
                g->ch[j].done = 1;
            wk_conn_error_msg(c, 503, NULL, "the worker is shutting down");
            gen_free(g);
            return NULL;
        }
    }
    return g;
}

/* ---- the text pipeline -------------------------------------------------------- */

/* Released text (after stop strings) through reasoning and tool parsers. */
static void pipe_text(struct wk_gen *g, struct gen_choice *ch, const char *s, size_t n,
                      struct gen_delta *d)
{
    if (g->req.kind != API_CHAT || (!ch->use_reasoning && !ch->use_tools)) {
        strbuf_add(&d->text, s, n);
        return;
    }
    struct strbuf content = { 0 };
    if (ch->use_reasoning)
        reasoning_feed(&ch->rs, s, n, &d->reasoning, &content);
    else
        strbuf_add(&content, s, n);
    if (ch->use_tools)
        toolcall_stream_feed(&ch->tc, strbuf_str(&content), content.len, &d->text, &d->tools,
                             &d->n_tools);
    else
        strbuf_add(&d->text, strbuf_str(&content), content.len);
    strbuf_free(&content);
}

static void pipe_finish(struct wk_gen *g, struct gen_choice *ch, struct gen_delta *d)
{
    if (g->req.kind != API_CHAT || (!ch->use_reasoning && !ch->use_tools))
        return;
    struct strbuf content = { 0 };
    if (ch->use_reasoning)
        reasoning_finish(&ch->rs, &d->reasoning, &content);
    if (ch->use_tools) {
        if (content.len)
            toolcall_stream_feed(&ch->tc, content.p, content.len, &d->text, &d->tools, &d->n_tools);
        toolcall_stream_finish(&ch->tc, &d->text, &d->tools, &d->n_tools);
    } else {
        strbuf_add(&d->text, strbuf_str(&content), content.len);
    }
    strbuf_free(&content);
}

static void choice_feed_text(struct wk_gen *g, struct gen_choice *ch, const char *s, size_t n,
                             struct gen_delta *d, int *stopped)
{
    const char *out;
    size_t on;
    if (*stopped)
        return;
    if (stop_feed(&ch->stop, s, n, &out, &on)) {
        *stopped = 1;
        ch->stop_reason = json_string(g->req.stop[ch->stop.hit]);
    }
    if (on > 0) {
        strbuf_add(&ch->text, out, on);
        pipe_text(g, ch, out, on, d);
    }
}

/* Keep the whole tool calls for the non-stream answer. */
static void record_tool_delta(struct gen_choice *ch, const struct toolcall_delta *t)
{
    if (ch->tool_calls == NULL)
        ch->tool_calls = json_array();
    if (t->name) {
        json_t *fn = json_object();
        json_object_set_new(fn, "name", json_string(t->name));
        json_object_set_new(fn, "arguments", json_string(""));
        json_t *c = json_object();
        json_object_set_new(c, "id", json_string(t->id ? t->id : ""));
        json_object_set_new(c, "type", json_string("function"));
        json_object_set_new(c, "function", fn);
        json_array_append_new(ch->tool_calls, c);
    }
    json_t *last = json_array_get(ch->tool_calls, (size_t)t->index);
    if (t->args && last) {
        json_t *fn = json_object_get(last, "function");
        char *joined = xasprintf("%s%s", json_string_value(json_object_get(fn, "arguments")), t->args);
        json_object_set_new(fn, "arguments", json_string(joined));
        free(joined);
    }
}

static int is_stop_id(struct wk_gen *g, int32_t id)
{
    for (int i = 0; i < g->req.sp.n_stop_token_ids; i++)
        if (g->req.sp.stop_token_ids[i] == id)
            return 1;
    return 0;
}

static void choice_output(struct wk_gen *g, struct gen_choice *ch, struct engine_output *o)
{
    struct gen_delta d;
    struct strbuf piece = { 0 };
    size_t pcap = 0;
    int stopped = 0;
    memset(&d, 0, sizeof(d));
    d.first = !ch->started;
    ch->started = 1;
    if (o->n_prompt_logprobs > 0 && ch->plps == NULL) {
        ch->plps = o->prompt_logprobs;  /* taken over */
        ch->n_plps = o->n_prompt_logprobs;
        o->prompt_logprobs = NULL;
        o->n_prompt_logprobs = 0;
    }
    if (o->n_cached_tokens > ch->n_cached)
        ch->n_cached = o->n_cached_tokens;
    d.tok_from = ch->n_tokens;
    for (int i = 0; i < o->n_tokens; i++) {
        int32_t id = o->tokens[i];
        if (ch->n_tokens + 1 > ch->cap_tokens) {
            ch->cap_tokens = ch->cap_tokens ? ch->cap_tokens * 2 : 64;
            ch->tokens = xrealloc(ch->tokens, (size_t)ch->cap_tokens * sizeof(int32_t));
            if (g->req.logprobs >= 0)
                ch->lps = xrealloc(ch->lps, (size_t)ch->cap_tokens * sizeof(*ch->lps));
        }
        ch->tokens[ch->n_tokens] = id;
        if (g->req.logprobs >= 0) {
            struct token_logprob *lp = &ch->lps[ch->n_tokens];
            memset(lp, 0, sizeof(*lp));
            if (o->logprobs) {
                *lp = o->logprobs[i];
                o->logprobs[i].top_ids = NULL;      /* taken over */
                o->logprobs[i].top_logprobs = NULL;
                o->logprobs[i].n_top = 0;
            } else {
                lp->id = id;
                lp->logprob = NAN;
            }
        }
        ch->n_tokens++;
        /* the eos/stop token that ends the sequence is not text */
        if (i == o->n_tokens - 1 && o->finish == FINISH_STOP && o->stop_token == id)
            continue;
        if (stopped)
            continue;
        piece.len = 0;
        pcap = piece.cap;
        if (detok_push(&ch->dt, id, &piece.p, &piece.len, &pcap) < 0) {
            piece.cap = pcap;
            continue;
        }
        piece.cap = pcap;
        if (piece.len)
            choice_feed_text(g, ch, piece.p, piece.len, &d, &stopped);
    }
    d.tok_to = ch->n_tokens;
    if (!stopped && o->finish != FINISH_NONE) {
        const char *out;
        size_t on;
        piece.len = 0;
        pcap = piece.cap;
        detok_finish(&ch->dt, &piece.p, &piece.len, &pcap);
        piece.cap = pcap;
        if (piece.len)
            choice_feed_text(g, ch, piece.p, piece.len, &d, &stopped);
        if (!stopped) {
            stop_flush(&ch->stop, &out, &on);
            if (on) {
                strbuf_add(&ch->text, out, on);
                pipe_text(g, ch, out, on, &d);
            }
        }
    }
    strbuf_free(&piece);
    if (stopped) {
        engine_abort(g->w->eng, ch->req_id);
        ch->finish = "stop";
    } else if (o->finish != FINISH_NONE) {
        switch (o->finish) {
        case FINISH_STOP:
            ch->finish = "stop";
            if (o->stop_token >= 0 && is_stop_id(g, o->stop_token))
                ch->stop_reason = json_integer(o->stop_token);
            break;
        case FINISH_LENGTH:
            ch->finish = "length";
            break;
        case FINISH_ABORT:
            ch->finish = "abort";
            break;
        default:
            ch->finish = "error";
            snprintf(ch->error, sizeof(ch->error), "%s", o->error[0] ? o->error : "engine error");
            g->failed = 1;
            break;
        }
    }
    if (ch->finish != NULL) {
        pipe_finish(g, ch, &d);
        if (ch->use_tools && ch->tc.n_calls > 0)
            ch->finish = "tool_calls";
        ch->done = 1;
        g->n_done++;
        d.finish = ch->finish;
    }
    if (d.reasoning.len)
        strbuf_add(&ch->reasoning, d.reasoning.p, d.reasoning.len);
    if (d.text.len)
        strbuf_add(&ch->content, d.text.p, d.text.len);
    for (int i = 0; i < d.n_tools; i++)
        record_tool_delta(ch, &d.tools[i]);
    if (g->req.stream && g->ops->delta && g->conn)
        g->ops->delta(g, ch, &d);
    strbuf_free(&d.text);
    strbuf_free(&d.reasoning);
    for (int i = 0; i < d.n_tools; i++)
        toolcall_delta_free(&d.tools[i]);
    free(d.tools);
}

void gen_dispatch_output(struct wk *w, struct engine_output *o)
{
    for (struct wk_gen *g = w->gens; g != NULL; g = g->next) {
        for (int i = 0; i < g->n_choices; i++) {
            struct gen_choice *ch = &g->ch[i];
            if (ch->req_id != o->req_id)
                continue;
            if (ch->done)
                return;         /* e.g. the abort after a stop string */
            choice_output(g, ch, o);
            if (g->n_done == g->n_choices)
                g->ops->done(g);        /* answers and frees */
            return;
        }
    }
}
