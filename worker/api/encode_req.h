/*
 * encode_req.h -- parsing and validation of the encoder request bodies
 * (/v1/embeddings, /pooling, /v1/rerank /rerank /v2/rerank, /v1/score
 * /score) into token-id sequences ready for the encode engine: input
 * shapes, vLLM's truncate_prompt_tokens, the pair template, every limit as
 * a 400 naming its parameter. No I/O, no engine calls.
 */
#ifndef LLMUX_API_ENCODE_REQ_H
#define LLMUX_API_ENCODE_REQ_H

#include <stddef.h>
#include <stdint.h>

#include "request.h"

enum enc_api { ENC_API_EMBED = 0, ENC_API_POOL, ENC_API_RERANK, ENC_API_SCORE };

/* /pooling "task": what each input's data is. */
enum enc_pool { ENC_POOL_EMBED = 0, ENC_POOL_TOKEN_EMBED, ENC_POOL_SPARSE, ENC_POOL_ALL };

struct enc_ctx {
    const struct api_ctx *api;  /* tokenizer, max_model_len, served names */
    int hidden;                 /* dense width (dimensions must equal it) */
    int max_batch_inputs;       /* inputs (or pairs) per request */
    int has_sparse, has_colbert;
};

struct enc_pending;

struct enc_request {
    enum enc_api api;
    char *model;                /* the served name to answer with */
    int n_inputs;
    int32_t **ids;              /* (n_inputs) malloc'd each; stolen by the engine */
    int *n_ids;
    long prompt_tokens;
    int base64;                 /* encoding_format "base64" */
    enum enc_pool pool;
    /* rerank: the documents' texts (for return_documents); input i is
     * (query, documents[i]) */
    char **docs;
    int n_docs;
    int top_n;                  /* 0: all */
    int return_documents;
    struct enc_pending *pending;    /* texts still to tokenize (parse_body) */
};

/* Parse <body> for <api> into <req> (zeroed here; free it with
 * enc_request_free whatever the result). <routed>: the x-llmux-model
 * header or NULL. 0, or -1 with <err>. enc_request_parse is
 * enc_request_parse_body (JSON, shapes, limits, token-id inputs; the texts
 * kept in req->pending) then enc_request_tokenize (the texts tokenized,
 * truncated and length-checked: req->ids complete). enc_request_tokenize
 * only reads <ctx> (the tokenizer is shareable), so it may run on another
 * thread than the parse. */
int enc_request_parse(const struct enc_ctx *ctx, enum enc_api api, const char *body, size_t len,
                      const char *routed, struct enc_request *req, struct api_err *err);
int enc_request_parse_body(const struct enc_ctx *ctx, enum enc_api api, const char *body,
                           size_t len, const char *routed, struct enc_request *req,
                           struct api_err *err);
int enc_request_tokenize(const struct enc_ctx *ctx, struct enc_request *req, struct api_err *err);
void enc_request_free(struct enc_request *req);

/* The pair <s> A </s></s> B </s> from the two single encodings <a> and <b>
 * (each as tokenizer_encode(add_special_tokens=1) gives it); when the
 * tokenizer adds no <s>/</s> the pair is A B. When longer than <limit>,
 * B's content (its specials kept) is cut to fit: -1 if even an empty B
 * does not fit. *out is new. */
int enc_pair_ids(const struct tokenizer *tok, const int32_t *a, int na, const int32_t *b, int nb,
                 int limit, int32_t **out, int *n_out);

#endif
