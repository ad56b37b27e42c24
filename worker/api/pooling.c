/*
 * pooling.c -- POST /pooling (vLLM's shape: {object:"list", data:[{index,
 * object:"pooling", data}], usage}): "task" picks what data is -- "embed"
 * (the dense vector), "token_embed"/"colbert" (bge-m3's ColBERT vectors,
 * one per token after <s>), "sparse"/"lexical" (bge-m3's lexical weights
 * {"token_id": weight}: relu, max per id, special tokens and zeros
 * dropped), "all" ({dense, sparse, colbert}).
 */
#include <stdio.h>
#include <stdlib.h>

#include "api.h"
#include "encode_job.h"
#include "server.h"
#include "tokenizer.h"

static json_t *sparse_json(struct wk *w, const int32_t *ids, const float *wt, int n)
{
    json_t *m = json_object();
    char key[16];
    for (int t = 0; t < n; t++) {
        if (!(wt[t] > 0.0f) || tokenizer_is_special(w->tok, ids[t]))
            continue;
        snprintf(key, sizeof(key), "%d", (int)ids[t]);
        json_t *old = json_object_get(m, key);
        if (old == NULL || json_real_value(old) < (double)wt[t])
            json_object_set_new(m, key, json_real((double)wt[t]));
    }
    return m;
}

/* ColBERT rows 1..n-1 (FlagEmbedding skips <s>), one list per token. */
static json_t *colbert_json(struct wk *w, const float *v, int n, int b64)
{
    int d = w->enc_colbert_dim;
    size_t rows = n > 1 ? (size_t)(n - 1) : 0;
    if (b64)
        return enc_b64_floats(v + d, rows * (size_t)d);
    json_t *a = json_array();
    for (size_t r = 0; r < rows; r++)
        json_array_append_new(a, enc_float_array(v + (r + 1) * (size_t)d, (size_t)d));
    return a;
}

static void pooling_done(struct wk_enc *j, struct encode_output *o)
{
    struct wk *w = j->w;
    int hid = w->enc_hidden;
    json_t *data = json_array();
    for (int i = 0; i < o->n_inputs; i++) {
        const float *dense = o->dense ? o->dense + (size_t)i * (size_t)hid : NULL;
        json_t *x = NULL;
        switch (j->req.pool) {
        case ENC_POOL_EMBED:
            x = j->req.base64 ? enc_b64_floats(dense, (size_t)hid) : enc_float_array(dense, (size_t)hid);
            break;
        case ENC_POOL_TOKEN_EMBED:
            x = colbert_json(w, o->colbert[i], o->n_ids[i], j->req.base64);
            break;
        case ENC_POOL_SPARSE:
            x = sparse_json(w, o->ids[i], o->sparse[i], o->n_ids[i]);
            break;
        case ENC_POOL_ALL:
            x = json_object();
            json_object_set_new(x, "dense", enc_float_array(dense, (size_t)hid));
            json_object_set_new(x, "sparse", sparse_json(w, o->ids[i], o->sparse[i], o->n_ids[i]));
            json_object_set_new(x, "colbert", colbert_json(w, o->colbert[i], o->n_ids[i], 0));
            break;
        }
        json_t *e = json_object();
        json_object_set_new(e, "index", json_integer(i));
        json_object_set_new(e, "object", json_string("pooling"));
        json_object_set_new(e, "data", x);
        json_array_append_new(data, e);
    }
    json_t *r = json_object();
    json_object_set_new(r, "id", json_string(j->id));
    json_object_set_new(r, "object", json_string("list"));
    json_object_set_new(r, "created", json_integer(j->created));
    json_object_set_new(r, "model", json_string(j->req.model));
    json_object_set_new(r, "data", data);
    json_object_set_new(r, "usage", enc_usage(o->n_tokens));
    wk_conn_respond_json(j->conn, 200, r);
}

void api_pooling(struct wk_conn *c)
{
    struct enc_request req;
    if (enc_parse_or_answer(c, ENC_API_POOL, &req) < 0)
        return;
    unsigned want = 0;
    switch (req.pool) {
    case ENC_POOL_EMBED: want = ENCODE_DENSE; break;
    case ENC_POOL_TOKEN_EMBED: want = ENCODE_COLBERT; break;
    case ENC_POOL_SPARSE: want = ENCODE_SPARSE; break;
    case ENC_POOL_ALL: want = ENCODE_DENSE | ENCODE_SPARSE | ENCODE_COLBERT; break;
    }
    enc_job_start(wk_conn_worker(c), c, &req, want, "pool-", pooling_done);
}
