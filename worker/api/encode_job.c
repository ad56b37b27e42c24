/*
 * encode_job.c -- encoder requests in flight: parse-or-answer, queueing in
 * the encode engine, dispatch of the engine's finished outputs to their
 * jobs (the formatter answers), abort on client disconnect; base64 and
 * usage helpers shared by embeddings.c, pooling.c and rerank.c.
 */
#include "encode_job.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "generate.h"
#include "server.h"
#include "util.h"

void enc_ctx_of(struct wk *w, struct enc_ctx *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->api = &w->api;
    ctx->hidden = w->enc_hidden;
    ctx->max_batch_inputs = w->max_batch_inputs;
    ctx->has_sparse = w->enc_has_sparse;
    ctx->has_colbert = w->enc_has_colbert;
}

int enc_parse_or_answer(struct wk_conn *c, enum enc_api api, struct enc_request *req)
{
    struct wk *w = wk_conn_worker(c);
    struct enc_ctx ctx;
    struct api_err err;
    size_t len;
    const char *body = wk_conn_body(c, &len);
    enc_ctx_of(w, &ctx);
    memset(&err, 0, sizeof(err));
    if (enc_request_parse(&ctx, api, body, len, wk_conn_header(c, "x-llmux-model"), req, &err) < 0) {
        enc_request_free(req);
        wk_conn_error(c, &err);
        return -1;
    }
    return 0;
}

static void job_unlink_free(struct wk_enc *j)
{
    struct wk *w = j->w;
    if (j->prev)
        j->prev->next = j->next;
    else
        w->encs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    enc_request_free(&j->req);
    free(j);
}

struct wk_enc *enc_job_start(struct wk *w, struct wk_conn *c, struct enc_request *req,
                             unsigned want, const char *id_prefix, enc_done_fn done)
{
    struct wk_enc *j = xcalloc(1, sizeof(*j));
    j->w = w;
    j->conn = c;
    j->req = *req;
    memset(req, 0, sizeof(*req));
    j->req_id = ++w->next_req_id;
    j->created = wall_time_s();
    j->done = done;
    gen_new_id(j->id, sizeof(j->id), id_prefix);
    struct encode_request er = { j->req_id, j->req.n_inputs, j->req.ids, j->req.n_ids, want };
    j->req.ids = NULL;          /* the engine owns them now (given back in the output) */
    j->req.n_ids = NULL;
    int n_inputs = j->req.n_inputs;
    j->req.n_inputs = 0;
    if (encode_submit(w->encq, &er) < 0) {
        encode_request_free_ids(&er);
        enc_request_free(&j->req);
        free(j);
        wk_conn_error_msg(c, 503, NULL, "the worker is stopping");
        return NULL;
    }
    j->req.n_inputs = n_inputs;
    j->next = w->encs;
    if (w->encs)
        w->encs->prev = j;
    w->encs = j;
    wk_conn_set_enc(c, j);
    return j;
}

void enc_dispatch_output(struct wk *w, struct encode_output *o)
{
    struct wk_enc *j = w->encs;
    while (j && j->req_id != o->req_id)
        j = j->next;
    if (j == NULL) {            /* aborted meanwhile */
        encode_output_free(o);
        return;
    }
    if (j->conn) {
        struct wk_conn *c = j->conn;
        wk_conn_set_enc(c, NULL);
        if (o->error)
            wk_conn_error_msg(c, 500, NULL, o->message[0] ? o->message : "encoder failure");
        else
            j->done(j, o);
    }
    encode_output_free(o);
    job_unlink_free(j);
}

void enc_job_abort(struct wk_enc *j)
{
    encode_cancel(j->w->encq, j->req_id);
    if (j->conn)
        wk_conn_set_enc(j->conn, NULL);
    job_unlink_free(j);
}

/* ---- helpers ------------------------------------------------------------------ */

json_t *enc_b64_floats(const float *v, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t nb = n * 4;
    unsigned char *b = xmalloc(nb + 1);
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        b[4 * i] = (unsigned char)(u & 0xff);
        b[4 * i + 1] = (unsigned char)((u >> 8) & 0xff);
        b[4 * i + 2] = (unsigned char)((u >> 16) & 0xff);
        b[4 * i + 3] = (unsigned char)(u >> 24);
    }
    size_t olen = (nb + 2) / 3 * 4;
    char *out = xmalloc(olen + 1);
    size_t k = 0;
    for (size_t i = 0; i < nb; i += 3) {
        uint32_t x = (uint32_t)b[i] << 16;
        if (i + 1 < nb)
            x |= (uint32_t)b[i + 1] << 8;
        if (i + 2 < nb)
            x |= b[i + 2];
        out[k++] = tbl[(x >> 18) & 63];
        out[k++] = tbl[(x >> 12) & 63];
        out[k++] = i + 1 < nb ? tbl[(x >> 6) & 63] : '=';
        out[k++] = i + 2 < nb ? tbl[x & 63] : '=';
    }
    json_t *j = json_stringn(out, k);
    free(out);
    free(b);
    return j;
}

json_t *enc_float_array(const float *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_real(isfinite(v[i]) ? (double)v[i] : 0.0));
    return a;
}

json_t *enc_usage(long prompt_tokens)
{
    json_t *u = json_object();
    json_object_set_new(u, "prompt_tokens", json_integer(prompt_tokens));
    json_object_set_new(u, "total_tokens", json_integer(prompt_tokens));
    return u;
}

double enc_sigmoid(double x)
{
    return 1.0 / (1.0 + exp(-x));
}
