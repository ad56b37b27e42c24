/*
 * encode.h -- the encoder batching engine (embed / rerank workers): one
 * thread takes the inputs of every queued request, packs them into batches
 * bounded by max_num_batched_tokens and max_num_seqs (round-robin between
 * requests so a large request never starves small ones, each request's
 * inputs shortest first), runs one forward per batch and scatters the
 * results back per request. It never tokenizes, parses HTTP or formats.
 */
#ifndef LLMUX_ENCODE_H
#define LLMUX_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "encoder.h"

/* What a request wants computed (bit set). */
enum {
    ENCODE_DENSE = 1,
    ENCODE_SCORES = 2,
    ENCODE_SPARSE = 4,      /* per token (n_ids floats per input) */
    ENCODE_COLBERT = 8      /* per token (n_ids x colbert_dim per input) */
};

/* The forward pass the engine drives: encoder_forward() in the worker, a
 * fake in unit tests. 0 or -1. */
typedef int (*encode_forward_fn)(void *arg, const struct encoder_batch *b,
                                 struct encoder_out *out);

struct encode_config {
    int max_num_batched_tokens;     /* tokens per batch; an input longer than
                                       this runs alone */
    int max_num_seqs;               /* sequences per batch */
    int hidden;                     /* dense width */
    int n_labels;                   /* scores per input */
    int colbert_dim;
    encode_forward_fn forward;
    void *forward_arg;
    /* a forward of one short sequence in encode_start (so the worker
     * listens only once the model runs); n_warmup 0: none */
    const int32_t *warmup_ids;
    int n_warmup;
};

/* One request: n_inputs sequences (ids stolen: each ids[i] malloc'd, the
 * array too). Results come back in the same order. */
struct encode_request {
    uint64_t id;                    /* unique, chosen by the caller */
    int n_inputs;
    int32_t **ids;
    int *n_ids;
    unsigned want;                  /* ENCODE_* */
};

/* A finished request, handed back whole. Arrays are malloc'd; the taker
 * may steal them (set the field to NULL) before encode_output_free(). */
struct encode_output {
    struct encode_output *next;
    uint64_t req_id;
    int n_inputs;
    int32_t **ids;                  /* the request's ids, given back */
    int *n_ids;
    float *dense;                   /* (n_inputs, hidden) when ENCODE_DENSE */
    float *scores;                  /* (n_inputs, n_labels) when ENCODE_SCORES */
    float **sparse;                 /* [i]: (n_ids[i]) when ENCODE_SPARSE */
    float **colbert;                /* [i]: (n_ids[i], colbert_dim) when ENCODE_COLBERT */
    long n_tokens;                  /* sum of n_ids */
    int error;                      /* a forward failed: no results */
    char message[160];
};
void encode_output_free(struct encode_output *o);
void encode_request_free_ids(struct encode_request *r);

struct encode_load {
    int running;                    /* requests with inputs in the current batch */
    int waiting;                    /* requests queued, none of their inputs run yet */
    long inputs_waiting;            /* inputs not run yet */
    double tokens_per_s;            /* over the last few seconds */
    uint64_t batches, inputs_done, tokens_done;
    int last_batch_seqs, last_batch_tokens;
};

struct encode_engine;

/* Start the thread. <notify>(<arg>) is called from it whenever outputs are
 * ready (it must only wake the event loop). NULL with <err> on failure.
 * When cfg->n_warmup > 0 the warm-up forward runs first, on the caller's
 * thread (a failure is an error: the model cannot run). */
struct encode_engine *encode_start(const struct encode_config *cfg, void (*notify)(void *),
                                   void *arg, char *err, size_t errlen);
/* Stop the thread and free everything still queued. */
void encode_stop(struct encode_engine *e);
/* Queue <r> (its arrays stolen; r->ids is NULL after). 0, or -1 when
 * stopping. */
int encode_submit(struct encode_engine *e, struct encode_request *r);
/* Drop request <id>: inputs not run are never run, no output comes. */
void encode_cancel(struct encode_engine *e, uint64_t id);
/* Finished requests (a list in completion order; caller frees each). */
struct encode_output *encode_take_outputs(struct encode_engine *e);
void encode_get_load(struct encode_engine *e, struct encode_load *l);
/* 1 once a forward ran (the warm-up or a batch) without error. */
int encode_has_run(struct encode_engine *e);

/* Batch planning, exposed for unit tests: from requests with remaining
 * input counts left[r] (inputs taken in order from next[r]) and lengths
 * len(r, k), choose a batch: out_req/out_idx get up to max_seqs (request,
 * input) pairs. Round-robin over requests in order 0..n_req-1. Returns
 * the number of sequences chosen (at least one when anything is left). */
struct encode_plan_src {
    int n_req;
    const int *left;                /* inputs left per request */
    const int *next;                /* position of the next input in order */
    const int *const *order;        /* per request: input indices, shortest first */
    const int *const *lens;         /* per request: n_ids per input */
};
int encode_plan_batch(const struct encode_plan_src *s, int max_tokens, int max_seqs,
                      int *out_req, int *out_idx, long *out_tokens);

#endif
