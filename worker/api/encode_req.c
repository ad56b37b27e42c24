/*
 * encode_req.c -- encoder request bodies to token-id sequences: the
 * embeddings/pooling input shapes (string, strings, ids, lists of ids),
 * rerank's query and documents, score's text_1/text_2 (1:1, 1:N, N:N),
 * truncate_prompt_tokens as vLLM applies it, and the 400s. Nothing here
 * trusts a field's type before checking it.
 */
#include "encode_req.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "util.h"

/* What parsing leaves for enc_request_tokenize: the texts (copied out of
 * the JSON) of the inputs still to tokenize. */
struct enc_pending {
    int add_special, trunc;
    int n;                      /* items (= req->n_inputs) */
    char **text;                /* embed/pool: item text, NULL for an id item */
    size_t *len;
    /* pairs: item i is (a[a_of[i]], b[i]) */
    char **a;
    size_t *alen;
    int n_a;
    int *a_of;
    char **b;
    size_t *blen;
    int b_borrowed;             /* b[] points into req->docs */
    const char *pa, *pb;        /* parameter names */
};

static void pending_free(struct enc_pending *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < p->n; i++) {
        if (p->text)
            free(p->text[i]);
        if (p->b && !p->b_borrowed)
            free(p->b[i]);
    }
    for (int i = 0; i < p->n_a; i++)
        free(p->a[i]);
    free(p->text);
    free(p->len);
    free(p->a);
    free(p->alen);
    free(p->a_of);
    free(p->b);
    free(p->blen);
    free(p);
}

void enc_request_free(struct enc_request *req)
{
    pending_free(req->pending);
    if (req->ids)
        for (int i = 0; i < req->n_inputs; i++)
            free(req->ids[i]);
    free(req->ids);
    free(req->n_ids);
    for (int i = 0; i < req->n_docs; i++)
        free(req->docs[i]);
    free(req->docs);
    free(req->model);
    memset(req, 0, sizeof(*req));
}

static void add_input(struct enc_request *req, int32_t *ids, int n)
{
    req->ids[req->n_inputs] = ids;
    req->n_ids[req->n_inputs] = n;
    req->n_inputs++;
    req->prompt_tokens += n;
}

static void alloc_inputs(struct enc_request *req, size_t n)
{
    req->ids = xcalloc(n + 1, sizeof(int32_t *));
    req->n_ids = xcalloc(n + 1, sizeof(int));
}

/* truncate_prompt_tokens: 0 when absent or null (no truncation: over-long
 * is a 400), else the limit (-1 means max_model_len). */
static int parse_truncate(const struct enc_ctx *ctx, json_t *root, int *limit, struct api_err *err)
{
    json_t *v = json_object_get(root, "truncate_prompt_tokens");
    *limit = 0;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v))
        return api_err_set(err, 400, "truncate_prompt_tokens",
                           "'truncate_prompt_tokens' must be an integer (-1: the model's maximum)");
    json_int_t k = json_integer_value(v);
    int max = ctx->api->max_model_len;
    if (k == -1) {
        *limit = max;
        return 0;
    }
    if (k < 1)
        return api_err_set(err, 400, "truncate_prompt_tokens",
                           "'truncate_prompt_tokens' must be -1 or at least 1, got %lld",
                           (long long)k);
    if (k > max)
        return api_err_set(err, 400, "truncate_prompt_tokens",
                           "truncate_prompt_tokens value (%lld) is greater than max_model_len "
                           "(%d). Please, select a smaller truncation size.", (long long)k, max);
    *limit = (int)k;
    return 0;
}

static int too_long(const struct enc_ctx *ctx, int n, const char *param, const char *what,
                    struct api_err *err)
{
    return api_err_set(err, 400, param,
                       "This model's maximum context length is %d tokens. However, you requested "
                       "%d tokens in the input for %s. Please reduce the length of the input, or "
                       "set truncate_prompt_tokens.", ctx->api->max_model_len, n, what);
}

/* Text: keep the first tokens and the closing special token (HF's right
 * truncation with specials re-added). */
static void truncate_text_ids(const struct tokenizer *tok, int32_t *ids, int *n, int limit)
{
    if (*n <= limit)
        return;
    int32_t last = ids[*n - 1];
    if (limit >= 2 && tokenizer_is_special(tok, last)) {
        ids[limit - 1] = last;
        *n = limit;
    } else {
        *n = limit;
    }
}

static int encode_text(const struct enc_ctx *ctx, const char *s, size_t len, int add_special,
                       const char *param, int32_t **ids, int *n, struct api_err *err)
{
    char terr[160];
    size_t m = 0;
    *ids = NULL;
    if (len == 0)
        return api_err_set(err, 400, param, "'%s' must not contain empty strings", param);
    if (tokenizer_encode(ctx->api->tok, s, len, add_special, ids, &m, terr, sizeof(terr)) < 0)
        return api_err_set(err, 400, param, "%s", terr);
    if (m == 0) {
        free(*ids);
        *ids = NULL;
        return api_err_set(err, 400, param, "'%s' encodes to no tokens", param);
    }
    *n = (int)m;
    return 0;
}

/* One input of embeddings/pooling: a string (kept for tokenizing) or an
 * id list (checked against the vocabulary and the length limit). */
static int add_one(const struct enc_ctx *ctx, struct enc_request *req, json_t *x, int trunc,
                   struct api_err *err)
{
    int32_t *ids = NULL;
    int n = 0;
    struct enc_pending *p = req->pending;
    if (json_is_string(x)) {    /* tokenized later (enc_request_tokenize) */
        if (json_string_length(x) == 0)
            return api_err_set(err, 400, "input", "'input' must not contain empty strings");
        p->text[req->n_inputs] = xstrndup(json_string_value(x), json_string_length(x));
        p->len[req->n_inputs] = json_string_length(x);
        req->n_inputs++;
        return 0;
    } else {
        int vocab = tokenizer_vocab_size(ctx->api->tok);
        size_t m = json_array_size(x), i;
        json_t *y;
        if (m == 0)
            return api_err_set(err, 400, "input", "'input' must not contain empty token lists");
        ids = xcalloc(m, sizeof(int32_t));
        json_array_foreach(x, i, y) {
            if (!json_is_integer(y)) {
                free(ids);
                return api_err_set(err, 400, "input",
                                   "'input' must be a string, a list of strings, a list of token "
                                   "ids or a list of lists of token ids");
            }
            json_int_t id = json_integer_value(y);
            if (id < 0 || id >= vocab) {
                free(ids);
                return api_err_set(err, 400, "input", "token id %lld is out of vocabulary [0, %d)",
                                   (long long)id, vocab);
            }
            ids[n++] = (int32_t)id;
        }
        if (trunc > 0 && n > trunc) {   /* token inputs keep their last tokens, as vLLM */
            memmove(ids, ids + (n - trunc), (size_t)trunc * sizeof(int32_t));
            n = trunc;
        }
    }
    if (n > ctx->api->max_model_len) {
        free(ids);
        return too_long(ctx, n, "input", req->api == ENC_API_EMBED ? "embedding generation"
                        : "pooling", err);
    }
    add_input(req, ids, n);
    return 0;
}

static int parse_inputs(const struct enc_ctx *ctx, json_t *root, struct enc_request *req,
                        struct api_err *err)
{
    static const char shape[] = "'input' must be a string, a list of strings, a list of token "
                                "ids or a list of lists of token ids";
    int add_special = 1, trunc;
    json_t *v = json_object_get(root, "add_special_tokens");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_boolean(v))
            return api_err_set(err, 400, "add_special_tokens", "'add_special_tokens' must be a boolean");
        add_special = json_is_true(v);
    }
    if (parse_truncate(ctx, root, &trunc, err) < 0)
        return -1;
    json_t *in = json_object_get(root, "input");
    if (in == NULL || json_is_null(in))
        return api_err_set(err, 400, "input", "'input' is required");
    struct enc_pending *p = req->pending = xcalloc(1, sizeof(*p));
    p->add_special = add_special;
    p->trunc = trunc;
    if (json_is_string(in) || json_is_integer(json_array_get(in, 0))) {
        alloc_inputs(req, 1);
        p->n = 1;
        p->text = xcalloc(1, sizeof(char *));
        p->len = xcalloc(1, sizeof(size_t));
        return add_one(ctx, req, in, trunc, err);
    }
    if (!json_is_array(in))
        return api_err_set(err, 400, "input", "%s", shape);
    size_t n = json_array_size(in), i;
    json_t *x;
    if (n == 0)
        return api_err_set(err, 400, "input", "'input' must not be an empty list");
    json_t *first = json_array_get(in, 0);
    if (n > (size_t)ctx->max_batch_inputs)
        return api_err_set(err, 400, "input",
                           "'input' has %zu items; this worker takes at most %d per request",
                           n, ctx->max_batch_inputs);
    int strings = json_is_string(first);
    alloc_inputs(req, n);
    p->n = (int)n;
    p->text = xcalloc(n, sizeof(char *));
    p->len = xcalloc(n, sizeof(size_t));
    json_array_foreach(in, i, x) {
        if (strings ? !json_is_string(x) : !json_is_array(x))
            return api_err_set(err, 400, "input", "%s (not mixed)", shape);
        if (add_one(ctx, req, x, trunc, err) < 0)
            return -1;
    }
    return 0;
}

int enc_pair_ids(const struct tokenizer *tok, const int32_t *a, int na, const int32_t *b, int nb,
                 int limit, int32_t **out, int *n_out)
{
    int32_t bos = tokenizer_bos_id(tok), eos = tokenizer_eos_id(tok);
    int roberta = na >= 2 && nb >= 2 && bos >= 0 && eos >= 0 && a[0] == bos && a[na - 1] == eos &&
                  b[0] == bos && b[nb - 1] == eos;
    /* <s> A </s> + </s> B </s>: B's <s> becomes </s> */
    int b_head = roberta ? 1 : 0, b_tail = roberta ? 1 : 0;
    int b_content = nb - b_head - b_tail;
    int total = na + nb;
    if (total > limit) {
        int cut = total - limit;
        if (cut > b_content)
            return -1;
        b_content -= cut;
        total = limit;
    }
    int32_t *p = xmalloc((size_t)total * sizeof(int32_t) + 1);
    int k = 0;
    memcpy(p, a, (size_t)na * sizeof(int32_t));
    k = na;
    if (roberta)
        p[k++] = eos;
    memcpy(p + k, b + b_head, (size_t)b_content * sizeof(int32_t));
    k += b_content;
    if (roberta)
        p[k++] = b[nb - 1];
    *out = p;
    *n_out = k;
    return 0;
}

/* A text field of rerank/score: a non-empty string. */
static int text_of(json_t *x, const char **s, size_t *len)
{
    if (json_is_object(x))
        x = json_object_get(x, "text");
    if (!json_is_string(x))
        return -1;
    *s = json_string_value(x);
    *len = json_string_length(x);
    return 0;
}

/* The pair inputs (as[i], bs[i]): texts checked and kept for tokenizing;
 * a first text repeated (the rerank query) is kept once. */
static int add_pairs(const struct enc_ctx *ctx, struct enc_request *req, json_t *const *as,
                     json_t *const *bs, size_t n, const char *pa, const char *pb, int trunc,
                     struct api_err *err)
{
    struct enc_pending *p = req->pending = xcalloc(1, sizeof(*p));
    json_t *prev_a = NULL;
    (void)ctx;
    p->trunc = trunc;
    p->pa = pa;
    p->pb = pb;
    p->a = xcalloc(n, sizeof(char *));
    p->alen = xcalloc(n, sizeof(size_t));
    p->a_of = xcalloc(n, sizeof(int));
    p->b = xcalloc(n, sizeof(char *));
    p->blen = xcalloc(n, sizeof(size_t));
    for (size_t i = 0; i < n; i++) {
        const char *s;
        size_t len;
        if (as[i] != prev_a) {
            if (text_of(as[i], &s, &len) < 0)
                return api_err_set(err, 400, pa, "'%s' must be a string or a list of strings", pa);
            if (len == 0)
                return api_err_set(err, 400, pa, "'%s' must not contain empty strings", pa);
            p->a[p->n_a] = xstrndup(s, len);
            p->alen[p->n_a++] = len;
            prev_a = as[i];
        }
        p->a_of[i] = p->n_a - 1;
        if (text_of(bs[i], &s, &len) < 0)
            return api_err_set(err, 400, pb, req->api == ENC_API_RERANK
                               ? "'documents' must hold strings or {\"text\": string} objects"
                               : "'%s' must be a string or a list of strings", pb);
        if (len == 0)
            return api_err_set(err, 400, pb, "'%s' must not contain empty strings", pb);
        p->b[i] = xstrndup(s, len);
        p->blen[i] = len;
        p->n = (int)i + 1;
    }
    alloc_inputs(req, n);
    req->n_inputs = (int)n;
    return 0;
}

static int tokenize_pairs(const struct enc_ctx *ctx, struct enc_request *req,
                          struct enc_pending *p, struct api_err *err)
{
    int limit = p->trunc > 0 ? p->trunc : ctx->api->max_model_len;
    int32_t **qa = xcalloc((size_t)p->n_a + 1, sizeof(int32_t *)), *db = NULL;
    int *nqa = xcalloc((size_t)p->n_a + 1, sizeof(int)), ndb = 0, rc = -1;
    for (int k = 0; k < p->n_a; k++)
        if (encode_text(ctx, p->a[k], p->alen[k], 1, p->pa, &qa[k], &nqa[k], err) < 0)
            goto out;
    for (int i = 0; i < p->n; i++) {
        int k = p->a_of[i];
        if (encode_text(ctx, p->b[i], p->blen[i], 1, p->pb, &db, &ndb, err) < 0)
            goto out;
        int32_t *ids;
        int np;
        if (p->trunc <= 0 && nqa[k] + ndb > limit) {   /* the pair is nqa + ndb tokens */
            too_long(ctx, nqa[k] + ndb, p->pb, "scoring", err);
            goto out;
        }
        if (enc_pair_ids(ctx->api->tok, qa[k], nqa[k], db, ndb, limit, &ids, &np) < 0) {
            api_err_set(err, 400, p->pa, "'%s' alone (%d tokens) does not fit in "
                        "truncate_prompt_tokens %d", p->pa, nqa[k], p->trunc);
            goto out;
        }
        free(db);
        db = NULL;
        req->ids[i] = ids;
        req->n_ids[i] = np;
        req->prompt_tokens += np;
    }
    rc = 0;
out:
    for (int k = 0; k < p->n_a; k++)
        free(qa[k]);
    free(qa);
    free(nqa);
    free(db);
    return rc;
}

static int tokenize_inputs(const struct enc_ctx *ctx, struct enc_request *req,
                           struct enc_pending *p, struct api_err *err)
{
    for (int i = 0; i < p->n; i++) {
        if (p->text[i] == NULL)
            continue;
        int32_t *ids;
        int n;
        if (encode_text(ctx, p->text[i], p->len[i], p->add_special, "input", &ids, &n, err) < 0)
            return -1;
        if (p->trunc > 0)
            truncate_text_ids(ctx->api->tok, ids, &n, p->trunc);
        if (n > ctx->api->max_model_len) {
            free(ids);
            return too_long(ctx, n, "input", req->api == ENC_API_EMBED ? "embedding generation"
                            : "pooling", err);
        }
        req->ids[i] = ids;
        req->n_ids[i] = n;
        req->prompt_tokens += n;
        free(p->text[i]);
        p->text[i] = NULL;
    }
    return 0;
}

int enc_request_tokenize(const struct enc_ctx *ctx, struct enc_request *req, struct api_err *err)
{
    struct enc_pending *p = req->pending;
    if (p == NULL)
        return 0;
    int rc = p->a ? tokenize_pairs(ctx, req, p, err) : tokenize_inputs(ctx, req, p, err);
    pending_free(p);
    req->pending = NULL;
    return rc;
}

static int parse_rerank(const struct enc_ctx *ctx, json_t *root, struct enc_request *req,
                        struct api_err *err)
{
    int trunc;
    if (parse_truncate(ctx, root, &trunc, err) < 0)
        return -1;
    json_t *q = json_object_get(root, "query");
    if (!json_is_string(q))
        return api_err_set(err, 400, "query", "'query' (a string) is required");
    json_t *docs = json_object_get(root, "documents");
    if (!json_is_array(docs))
        return api_err_set(err, 400, "documents",
                           "'documents' (a list of strings or {\"text\": string} objects) is required");
    size_t n = json_array_size(docs), i;
    if (n == 0)
        return api_err_set(err, 400, "documents", "'documents' must not be an empty list");
    if (n > (size_t)ctx->max_batch_inputs)
        return api_err_set(err, 400, "documents",
                           "'documents' has %zu items; this worker takes at most %d per request",
                           n, ctx->max_batch_inputs);
    json_t *v = json_object_get(root, "top_n");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return api_err_set(err, 400, "top_n", "'top_n' must be a non-negative integer");
        json_int_t t = json_integer_value(v);
        req->top_n = t > (json_int_t)n ? (int)n : (int)t;
    }
    req->return_documents = 1;
    v = json_object_get(root, "return_documents");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_boolean(v))
            return api_err_set(err, 400, "return_documents", "'return_documents' must be a boolean");
        req->return_documents = json_is_true(v);
    }
    json_t **as = xcalloc(n, sizeof(json_t *)), **bs = xcalloc(n, sizeof(json_t *));
    json_t *x;
    req->docs = xcalloc(n, sizeof(char *));
    json_array_foreach(docs, i, x) {
        const char *s;
        size_t len;
        as[i] = q;
        bs[i] = x;
        if (text_of(x, &s, &len) == 0)
            req->docs[req->n_docs++] = xstrndup(s, len);
    }
    int rc = add_pairs(ctx, req, as, bs, n, "query", "documents", trunc, err);
    free(as);
    free(bs);
    return rc;
}

static int parse_score(const struct enc_ctx *ctx, json_t *root, struct enc_request *req,
                       struct api_err *err)
{
    int trunc;
    if (parse_truncate(ctx, root, &trunc, err) < 0)
        return -1;
    json_t *t1 = json_object_get(root, "text_1"), *t2 = json_object_get(root, "text_2");
    const char *p1 = "text_1", *p2 = "text_2";
    if (t1 == NULL && t2 == NULL) {     /* vLLM's newer names */
        t1 = json_object_get(root, "queries");
        t2 = json_object_get(root, "documents");
        p1 = "queries";
        p2 = "documents";
    }
    if (!json_is_string(t1) && !json_is_array(t1))
        return api_err_set(err, 400, p1, "'%s' (a string or a list of strings) is required", p1);
    if (!json_is_string(t2) && !json_is_array(t2))
        return api_err_set(err, 400, p2, "'%s' (a string or a list of strings) is required", p2);
    size_t n1 = json_is_array(t1) ? json_array_size(t1) : 1;
    size_t n2 = json_is_array(t2) ? json_array_size(t2) : 1;
    if (n1 == 0 || n2 == 0)
        return api_err_set(err, 400, n1 == 0 ? p1 : p2, "'%s' must not be an empty list",
                           n1 == 0 ? p1 : p2);
    if (n1 > 1 && n1 != n2)
        return api_err_set(err, 400, p1, "'%s' and '%s' must be 1:1, 1:N or N:N (got %zu and %zu "
                           "items)", p1, p2, n1, n2);
    if (n2 > (size_t)ctx->max_batch_inputs)
        return api_err_set(err, 400, p2, "'%s' has %zu items; this worker takes at most %d per "
                           "request", p2, n2, ctx->max_batch_inputs);
    json_t **as = xcalloc(n2, sizeof(json_t *)), **bs = xcalloc(n2, sizeof(json_t *));
    for (size_t i = 0; i < n2; i++) {
        as[i] = json_is_array(t1) ? json_array_get(t1, n1 == 1 ? 0 : i) : t1;
        bs[i] = json_is_array(t2) ? json_array_get(t2, i) : t2;
        if (!json_is_string(as[i]) || !json_is_string(bs[i])) {
            const char *p = json_is_string(as[i]) ? p2 : p1;
            free(as);
            free(bs);
            return api_err_set(err, 400, p, "'%s' must be a string or a list of strings", p);
        }
    }
    int rc = add_pairs(ctx, req, as, bs, n2, p1, p2, trunc, err);
    free(as);
    free(bs);
    return rc;
}

static int parse_embed_fields(const struct enc_ctx *ctx, json_t *root, struct enc_request *req,
                              struct api_err *err)
{
    json_t *v = json_object_get(root, "encoding_format");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_string(v) ||
            (strcmp(json_string_value(v), "float") && strcmp(json_string_value(v), "base64")))
            return api_err_set(err, 400, "encoding_format",
                               "'encoding_format' must be \"float\" or \"base64\"");
        req->base64 = strcmp(json_string_value(v), "base64") == 0;
    }
    v = json_object_get(root, "dimensions");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1)
            return api_err_set(err, 400, "dimensions", "'dimensions' must be a positive integer");
        if (json_integer_value(v) != ctx->hidden)
            return api_err_set(err, 400, "dimensions",
                               "Model does not support matryoshka representation: 'dimensions' "
                               "can only be %d, got %lld", ctx->hidden,
                               (long long)json_integer_value(v));
    }
    v = json_object_get(root, "user");
    if (v != NULL && !json_is_null(v) && !json_is_string(v))
        return api_err_set(err, 400, "user", "'user' must be a string");
    if (req->api != ENC_API_POOL)
        return 0;
    v = json_object_get(root, "task");
    req->pool = ENC_POOL_EMBED;
    if (v != NULL && !json_is_null(v)) {
        const char *t = json_is_string(v) ? json_string_value(v) : "";
        if (strcmp(t, "embed") == 0)
            req->pool = ENC_POOL_EMBED;
        else if (strcmp(t, "token_embed") == 0 || strcmp(t, "colbert") == 0)
            req->pool = ENC_POOL_TOKEN_EMBED;
        else if (strcmp(t, "sparse") == 0 || strcmp(t, "lexical") == 0)
            req->pool = ENC_POOL_SPARSE;
        else if (strcmp(t, "all") == 0)
            req->pool = ENC_POOL_ALL;
        else
            return api_err_set(err, 400, "task", "'task' must be \"embed\", \"token_embed\" (or "
                               "\"colbert\"), \"sparse\" (or \"lexical\") or \"all\"");
    }
    if ((req->pool == ENC_POOL_TOKEN_EMBED || req->pool == ENC_POOL_ALL) && !ctx->has_colbert)
        return api_err_set(err, 400, "task", "this model has no ColBERT head (colbert_linear.pt)");
    if ((req->pool == ENC_POOL_SPARSE || req->pool == ENC_POOL_ALL) && !ctx->has_sparse)
        return api_err_set(err, 400, "task", "this model has no sparse head (sparse_linear.pt)");
    if (req->base64 && (req->pool == ENC_POOL_SPARSE || req->pool == ENC_POOL_ALL))
        return api_err_set(err, 400, "encoding_format",
                           "\"base64\" applies to the \"embed\" and \"token_embed\" tasks only");
    return 0;
}

int enc_request_parse_body(const struct enc_ctx *ctx, enum enc_api api, const char *body,
                           size_t len, const char *routed, struct enc_request *req,
                           struct api_err *err)
{
    json_error_t jerr;
    memset(req, 0, sizeof(*req));
    req->api = api;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return api_err_set(err, 400, NULL, "request body is not valid JSON: %s (line %d, column %d)",
                           jerr.text, jerr.line, jerr.column);
    int rc = -1;
    if (!json_is_object(root)) {
        api_err_set(err, 400, NULL, "request body must be a JSON object");
        goto out;
    }
    if (api_parse_model(ctx->api, root, routed, &req->model, err) < 0)
        goto out;
    switch (api) {
    case ENC_API_EMBED:
    case ENC_API_POOL:
        if (parse_embed_fields(ctx, root, req, err) < 0 || parse_inputs(ctx, root, req, err) < 0)
            goto out;
        break;
    case ENC_API_RERANK:
        if (parse_rerank(ctx, root, req, err) < 0)
            goto out;
        break;
    case ENC_API_SCORE:
        if (parse_score(ctx, root, req, err) < 0)
            goto out;
        break;
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int enc_request_parse(const struct enc_ctx *ctx, enum enc_api api, const char *body, size_t len,
                      const char *routed, struct enc_request *req, struct api_err *err)
{
    if (enc_request_parse_body(ctx, api, body, len, routed, req, err) < 0)
        return -1;
    return enc_request_tokenize(ctx, req, err);
}
