/*
 * encode_job.h -- one encoder request in flight (embeddings, pooling,
 * rerank, score): its parsed request, the engine request id, the
 * connection waiting for it, and the formatter that answers when the
 * engine hands the results back. Also the shared answer helpers (ids,
 * usage, base64 floats).
 */
#ifndef LLMUX_API_ENCODE_JOB_H
#define LLMUX_API_ENCODE_JOB_H

#include <stdint.h>
#include <jansson.h>

#include "encode.h"
#include "encode_req.h"

struct wk;
struct wk_conn;
struct wk_enc;

/* Answer the client from <o> (results of every input, in order). */
typedef void (*enc_done_fn)(struct wk_enc *j, struct encode_output *o);

struct wk_enc {
    struct wk_enc *next, *prev;     /* in wk->encs */
    struct wk *w;
    struct wk_conn *conn;           /* NULL once the client left */
    struct enc_request req;
    uint64_t req_id;
    char id[48];                    /* embd-... / rerank-... / score-... */
    int64_t created;
    enc_done_fn done;
};

/* The enc_ctx of the worker (its api ctx, hidden, limits, heads). */
void enc_ctx_of(struct wk *w, struct enc_ctx *ctx);
/* Parse the connection's body for <api>; on error answer it and return -1. */
int enc_parse_or_answer(struct wk_conn *c, enum enc_api api, struct enc_request *req);
/* Queue <req> (stolen) with <want> (ENCODE_*): the job is linked into
 * w->encs and attached to <c>. NULL when the engine refused (answered). */
struct wk_enc *enc_job_start(struct wk *w, struct wk_conn *c, struct enc_request *req,
                             unsigned want, const char *id_prefix, enc_done_fn done);
/* Route a finished engine output to its job (answers and frees the job);
 * frees <o>. */
void enc_dispatch_output(struct wk *w, struct encode_output *o);
/* The client went away: cancel in the engine and free. */
void enc_job_abort(struct wk_enc *j);

/* Helpers for the formatters. */
/* <n> floats as base64 of their little-endian IEEE bytes (OpenAI's
 * encoding_format "base64"). New. */
json_t *enc_b64_floats(const float *v, size_t n);
/* A JSON array of <n> floats. New. */
json_t *enc_float_array(const float *v, size_t n);
/* {"prompt_tokens": n, "total_tokens": n}. New. */
json_t *enc_usage(long prompt_tokens);
/* 1 / (1 + exp(-x)) */
double enc_sigmoid(double x);

#endif
