/*
 * encode_job.h -- one encoder request in flight (embeddings, pooling,
 * rerank, score): its parsed request, the engine request id, the
 * connection waiting for it, and the formatter that answers when the
 * engine hands the results back. Bodies over ENC_INLINE_BYTES are
 * tokenized on a helper thread (the event loop never tokenizes megabytes).
 * Also the shared answer helpers (usage, base64 floats).
 */
#ifndef LLMUX_API_ENCODE_JOB_H
#define LLMUX_API_ENCODE_JOB_H

#include <stdint.h>
#include <jansson.h>

#include "encode.h"
#include "encode_req.h"
#include "strbuf.h"

struct wk;
struct wk_conn;
struct wk_enc;

/* Answer the client from <o> (results of every input, in order). */
typedef void (*enc_done_fn)(struct wk_enc *j, struct encode_output *o);

/* Bodies at least this large are tokenized off the event loop. */
#define ENC_INLINE_BYTES (64 * 1024)

enum { ENC_JOB_PREP = 0, ENC_JOB_RUN };

struct wk_enc {
    struct wk_enc *next, *prev;     /* in wk->encs */
    int state;                      /* ENC_JOB_PREP: on the tokenizing thread */
    int abandoned;                  /* the client left during PREP (under the prep lock) */
    struct wk_enc *prep_next;
    struct api_err prep_err;
    int prep_rc;
    unsigned want;
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
/* Parse the connection's body for <api> (tokenized here when the body is
 * small; else req->pending stays for the helper thread); on error answer
 * it and return -1. */
int enc_parse_or_answer(struct wk_conn *c, enum enc_api api, struct enc_request *req);
/* Queue <req> (stolen) with <want> (ENCODE_*): the job is linked into
 * w->encs and attached to <c>; with texts pending it goes to the
 * tokenizing thread first. NULL when refused (answered). */
struct wk_enc *enc_job_start(struct wk *w, struct wk_conn *c, struct enc_request *req,
                             unsigned want, const char *id_prefix, enc_done_fn done);
/* Route a finished engine output to its job (answers and frees the job);
 * frees <o>. */
void enc_dispatch_output(struct wk *w, struct encode_output *o);
/* The client went away: cancel in the engine and free (a job on the
 * tokenizing thread is only marked; it is freed when it comes back). */
void enc_job_abort(struct wk_enc *j);
/* Jobs back from the tokenizing thread: answer a 400 or queue them in the
 * engine (the notify callback calls this). */
void enc_prep_drain(struct wk *w);
/* Stop the tokenizing thread and free every job (worker exit). */
void enc_jobs_free_all(struct wk *w);

/* Helpers for the formatters. */
/* <n> floats as base64 of their little-endian IEEE bytes (OpenAI's
 * encoding_format "base64"). New. */
json_t *enc_b64_floats(const float *v, size_t n);
/* A JSON array of <n> floats. New. */
json_t *enc_float_array(const float *v, size_t n);
/* <f> as jansson writes json_real((double)f) ("%.17g" of the exact value,
 * ".0" added to integers, exponent without '+' or leading zeros), several
 * times faster (exact integer arithmetic, snprintf only for |x| < ~1e-11
 * or >= ~1e16); <out> holds 40 bytes. Returns the length. */
size_t enc_fmt_float(float f, char *out);
/* "[f,f,...]" of <n> floats (non-finite as 0.0) appended to <b>. */
void enc_append_floats(struct strbuf *b, const float *v, size_t n);
/* {"prompt_tokens": n, "total_tokens": n}. New. */
json_t *enc_usage(long prompt_tokens);
/* 1 / (1 + exp(-x)) */
double enc_sigmoid(double x);

#endif
