/*
 * rerank.c -- the cross-encoder routes: POST /v1/rerank, /rerank,
 * /v2/rerank (Jina/Cohere: query, documents, top_n, return_documents ->
 * results sorted by relevance_score) and POST /v1/score, /score (text_1,
 * text_2: 1:1, 1:N or N:N -> data[{index, object:"score", score}]).
 * score = sigmoid(logit) of the classifier's first label.
 */
#include <stdlib.h>

#include "api.h"
#include "encode_job.h"
#include "server.h"
#include "util.h"

struct ranked {
    int index;
    double score;
};

static int cmp_ranked(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->index - y->index;
}

static double score_of(struct wk_enc *j, struct encode_output *o, int i)
{
    int nl = j->w->enc_n_labels > 0 ? j->w->enc_n_labels : 1;
    return enc_sigmoid((double)o->scores[(size_t)i * (size_t)nl]);
}

static void rerank_done(struct wk_enc *j, struct encode_output *o)
{
    int n = o->n_inputs;
    struct ranked *r = xcalloc((size_t)n + 1, sizeof(*r));
    for (int i = 0; i < n; i++) {
        r[i].index = i;
        r[i].score = score_of(j, o, i);
    }
    qsort(r, (size_t)n, sizeof(*r), cmp_ranked);
    int top = j->req.top_n > 0 && j->req.top_n < n ? j->req.top_n : n;
    json_t *results = json_array();
    for (int k = 0; k < top; k++) {
        json_t *e = json_object();
        json_object_set_new(e, "index", json_integer(r[k].index));
        if (j->req.return_documents && r[k].index < j->req.n_docs) {
            json_t *d = json_object();
            json_object_set_new(d, "text", json_string(j->req.docs[r[k].index]));
            json_object_set_new(e, "document", d);
        }
        json_object_set_new(e, "relevance_score", json_real(r[k].score));
        json_array_append_new(results, e);
    }
    free(r);
    json_t *u = json_object();
    json_object_set_new(u, "total_tokens", json_integer(o->n_tokens));
    json_t *out = json_object();
    json_object_set_new(out, "id", json_string(j->id));
    json_object_set_new(out, "model", json_string(j->req.model));
    json_object_set_new(out, "usage", u);
    json_object_set_new(out, "results", results);
    wk_conn_respond_json(j->conn, 200, out);
}

static void score_done(struct wk_enc *j, struct encode_output *o)
{
    json_t *data = json_array();
    for (int i = 0; i < o->n_inputs; i++) {
        json_t *e = json_object();
        json_object_set_new(e, "index", json_integer(i));
        json_object_set_new(e, "object", json_string("score"));
        json_object_set_new(e, "score", json_real(score_of(j, o, i)));
        json_array_append_new(data, e);
    }
    json_t *out = json_object();
    json_object_set_new(out, "id", json_string(j->id));
    json_object_set_new(out, "object", json_string("list"));
    json_object_set_new(out, "created", json_integer(j->created));
    json_object_set_new(out, "model", json_string(j->req.model));
    json_object_set_new(out, "data", data);
    json_object_set_new(out, "usage", enc_usage(o->n_tokens));
    wk_conn_respond_json(j->conn, 200, out);
}

void api_rerank(struct wk_conn *c)
{
    struct enc_request req;
    if (enc_parse_or_answer(c, ENC_API_RERANK, &req) < 0)
        return;
    enc_job_start(wk_conn_worker(c), c, &req, ENCODE_SCORES, "rerank-", rerank_done);
}

void api_score(struct wk_conn *c)
{
    struct enc_request req;
    if (enc_parse_or_answer(c, ENC_API_SCORE, &req) < 0)
        return;
    enc_job_start(wk_conn_worker(c), c, &req, ENCODE_SCORES, "score-", score_done);
}
