/*
 * sampler.h -- turns one sequence's f32 logits into the next token, as vLLM
 * v1 does: logprobs from the raw logits, then min_tokens, repetition /
 * frequency / presence penalties, greedy or temperature, min_p, top_k,
 * top_p and a draw from the sequence's own PRNG (so a seeded sequence gives
 * the same tokens whatever else is in the batch). Knows nothing of batches,
 * the KV cache or text. Not thread-safe: one sampler per engine thread.
 */
#ifndef LLMUX_SAMPLER_H
#define LLMUX_SAMPLER_H

#include <stdint.h>

#include "engine.h"

/* A sequence's random stream (xoshiro256**). */
struct sampler_rng {
    uint64_t s[4];
};
void sampler_rng_seed(struct sampler_rng *r, uint64_t seed);
/* Uniform in [0, 1) with 53 random bits. */
double sampler_rng_uniform(struct sampler_rng *r);

/* What the sampler needs to know of one sequence (all borrowed). */
struct sampler_seq {
    const struct sampling_params *sp;
    const int32_t *prompt;
    int n_prompt;
    const int32_t *output;      /* tokens generated so far */
    int n_output;
    const int32_t *eos_ids;     /* ignored when sp->ignore_eos */
    int n_eos_ids;
    struct sampler_rng *rng;    /* advanced by one draw when not greedy */
};

struct sampler;

/* New sampler for logits rows of <vocab> entries; <seed_base> seeds the
 * streams of unseeded sequences (e.g. from /dev/urandom). Free with
 * sampler_free(). */
struct sampler *sampler_new(int vocab, uint64_t seed_base);
void sampler_free(struct sampler *s);
/* A fresh seed for a sequence without one (a counter mixed with the base). */
uint64_t sampler_next_seed(struct sampler *s);

/*
 * Sample the next token of <q> from <logits> (vocab entries; overwritten
 * with the processed logits). When <lp> is not NULL it receives the chosen
 * token's logprob, rank and top q->sp->logprobs alternatives computed from
 * the RAW logits (lp->top_* are malloc'd; free with sampler_logprob_clear()).
 * Returns the token id.
 */
int32_t sampler_sample(struct sampler *s, float *logits, const struct sampler_seq *q,
                       struct token_logprob *lp);

/* Logprob and 1-based rank of <id> under log_softmax(<logits>) and the top
 * <n_top> ids (most likely first, lower id first on ties) into <lp>; the
 * rank counts the ids whose logprob is >= that of <id> (vLLM's rule). */
void sampler_logprob(struct sampler *s, const float *logits, int32_t id, int n_top,
                     struct token_logprob *lp);
void sampler_logprob_clear(struct token_logprob *lp);

#endif
