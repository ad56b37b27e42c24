/*
 * engine.h -- the generation engine: one thread that runs continuous-batching
 * steps over a model (chunked prefills and decodes mixed up to
 * max_num_batched_tokens), owns the paged KV cache (kvcache.c: blocks, free
 * list, prefix caching by block hash, preemption by recompute) and samples
 * (sampler.c). Requests come in and outputs go out through thread-safe
 * queues; the engine knows nothing of HTTP, JSON or text (stop strings and
 * detokenization belong to the server). Owned by worker/ (engine.c,
 * kvcache.c, sampler.c).
 */
#ifndef LLMUX_ENGINE_H
#define LLMUX_ENGINE_H

#include <stddef.h>
#include <stdint.h>

struct model;

/* Sampling parameters of one sequence (OpenAI/vLLM semantics). */
struct sampling_params {
    float temperature;          /* 0: greedy */
    float top_p;                /* 1: off */
    int top_k;                  /* 0 or -1: off */
    float min_p;                /* 0: off */
    int has_seed;
    uint64_t seed;              /* same seed, same prompt: same output */
    float presence_penalty;     /* 0: off; output tokens only */
    float frequency_penalty;    /* 0: off; output tokens only */
    float repetition_penalty;   /* 1: off; prompt and output tokens */
    int max_tokens;             /* >= 1 */
    int min_tokens;             /* eos/stop ids suppressed before this many */
    int ignore_eos;
    int32_t *stop_token_ids;    /* malloc'd, owned by the request; besides eos */
    int n_stop_token_ids;
    int logprobs;               /* -1: none; N >= 0: chosen token + top N */
    int prompt_logprobs;        /* -1: none; N >= 0: per prompt position */
};
void sampling_params_default(struct sampling_params *sp);

struct engine_request {
    uint64_t id;                /* unique per engine, chosen by the caller */
    int32_t *prompt;            /* malloc'd, owned by the request */
    int n_prompt;
    struct sampling_params sp;
    int priority;               /* lower runs first (vLLM); default 0 */
};
/* Free a request that was not handed to engine_add_request(). */
void engine_request_free(struct engine_request *r);

enum finish_reason {
    FINISH_NONE = 0,            /* still running */
    FINISH_STOP,                /* eos or a stop token id */
    FINISH_LENGTH,              /* max_tokens or max_model_len */
    FINISH_ABORT,               /* engine_abort() */
    FINISH_ERROR                /* cannot run (e.g. larger than the KV cache) */
};

/* Log-probabilities of one position: the chosen (or prompt) token and the
 * top n_top alternatives, most likely first. */
struct token_logprob {
    int32_t id;
    float logprob;
    int rank;                   /* 1-based rank of id in the distribution */
    int n_top;
    int32_t *top_ids;           /* (n_top), malloc'd with the output */
    float *top_logprobs;        /* (n_top) */
};

/* What one request produced since its last output. */
struct engine_output {
    struct engine_output *next;
    uint64_t req_id;
    int n_tokens;               /* new tokens (0 is possible on finish) */
    int32_t *tokens;            /* (n_tokens) */
    struct token_logprob *logprobs;     /* (n_tokens) when sp.logprobs >= 0 */
    /* first output only, when sp.prompt_logprobs >= 0: one entry per prompt
     * token; entry 0 has no logprob (logprob = NAN, n_top = 0) */
    int n_prompt_logprobs;
    struct token_logprob *prompt_logprobs;
    int n_cached_tokens;        /* prompt tokens served by the prefix cache */
    enum finish_reason finish;
    /* the eos/stop id that finished it (FINISH_STOP), or -1. It is the last
     * of <tokens> (counted in usage, listed in token ids) but, as in vLLM,
     * its text is not part of the answer. */
    int32_t stop_token;
    char error[160];            /* for FINISH_ERROR */
};
void engine_output_free(struct engine_output *o);

struct engine_config {
    int block_size;             /* tokens per KV block; default 16 */
    int n_blocks;               /* KV blocks; 0: kv_cache_bytes / block bytes */
    size_t kv_cache_bytes;      /* used when n_blocks is 0 */
    int max_num_seqs;           /* running sequences; default 256 */
    int max_num_batched_tokens; /* tokens per step; default 2048 */
    int max_model_len;          /* prompt + output; default from the model */
    int enable_prefix_caching;  /* default 1 */
    const int32_t *eos_ids;     /* copied; generation_config's eos ids */
    int n_eos_ids;
};

struct engine_load {
    int running, waiting;
    int kv_blocks_free, kv_blocks_total;
    uint64_t prefix_cache_queries, prefix_cache_hits;   /* in tokens */
    uint64_t steps, preemptions;
    double prompt_tokens_per_s, generation_tokens_per_s;   /* recent */
};

/* Called on the engine thread after outputs were queued; must be
 * thread-safe and quick (e.g. write to an eventfd). */
typedef void (*engine_notify_fn)(void *arg);

struct engine;

/* Allocate the KV cache on the model and start the engine thread. NULL with
 * a message in <err>. */
struct engine *engine_start(struct model *m, const struct engine_config *cfg,
                            engine_notify_fn notify, void *notify_arg,
                            char *err, size_t errlen);
/* Stop the thread (running requests are dropped) and free the engine. */
void engine_stop(struct engine *e);
/* Queue a request; the engine takes ownership of <r> (heap-allocated) on
 * success. Thread-safe. 0, or -1 when the engine is stopping. */
int engine_add_request(struct engine *e, struct engine_request *r);
/* Ask the engine to finish request <id> (its blocks are freed at the next
 * step; a final output with FINISH_ABORT follows unless the request finished
 * on its own first). Thread-safe; unknown ids are ignored. The server uses it
 * for client disconnects and for stop strings (then reporting "stop"). */
void engine_abort(struct engine *e, uint64_t id);
/* Take every output queued so far, oldest first, as a list the caller frees
 * with engine_output_free() on each. Thread-safe. */
struct engine_output *engine_take_outputs(struct engine *e);
void engine_get_load(struct engine *e, struct engine_load *out);
/* The configuration in effect, defaults filled in (block_size, n_blocks,
 * max_num_seqs, max_num_batched_tokens, max_model_len; eos_ids is the
 * engine's copy). Borrowed, constant while the engine runs. */
const struct engine_config *engine_get_config(const struct engine *e);
/* 1 once a step has run (the worker's /health is 200 only then). */
int engine_has_stepped(struct engine *e);

#endif
