/*
 * engine.c -- the engine thread: takes requests and aborts from locked
 * queues, schedules a continuous-batching step as vLLM v1 does (running
 * sequences first, then chunked prefills of waiting ones, within
 * max_num_batched_tokens and max_num_seqs; preemption by recompute when
 * blocks run out), runs model_forward, samples and queues outputs. Only this
 * thread touches sequences, the KV bookkeeping and the sampler; other
 * threads see the queues and a load snapshot under the mutex.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "kvcache.h"
#include "log.h"
#include "model.h"
#include "sampler.h"
#include "util.h"

#define PROMPT_LP_CHUNK 64      /* prefill tokens per step of a prompt_logprobs
                                 * sequence: bounds its logits rows */
#define RATE_BUCKETS 16
#define RATE_WINDOW_S 10

struct seq {
    struct engine_request *req;
    int32_t *tokens;            /* prompt then output */
    int n_tokens, cap;
    int n_prompt;
    int n_computed;             /* tokens whose K/V is in the cache */
    int max_len;                /* n_prompt + max_tokens, capped by max_model_len */
    struct kv_seq kv;
    struct sampler_rng rng;
    int n_cached_tokens;        /* prefix cache hit reported in the first output */
    int started;                /* first output emitted */
    int done;                   /* finished this step; freed at its end */
    int want_prompt_lp;         /* prompt logprobs still to be computed */
    struct token_logprob *prompt_lp;    /* (n_prompt) when wanted */
    /* this step */
    int n_new;
    int row0, n_rows;           /* its logit rows */
};

struct rate_bucket {
    int64_t sec;
    uint64_t prompt, gen;
};

struct engine {
    struct model *m;
    int vocab;
    struct engine_config cfg;   /* eos_ids points to our copy */
    int32_t *eos_ids;
    struct kvcache kv;
    struct sampler *smp;
    engine_notify_fn notify;
    void *notify_arg;

    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu */
    struct engine_request **incoming;
    int n_in, cap_in;
    uint64_t *aborts;
    int n_ab, cap_ab;
    struct engine_output *out_head, *out_tail;
    int stopping, stepped;
    struct engine_load load;
    struct rate_bucket rate[RATE_BUCKETS];
    int64_t start_us;

    /* engine thread only */
    struct seq **running, **waiting;
    int n_running, n_waiting, cap_running, cap_waiting;
    struct seq **sched;
    int n_sched, cap_sched;
    struct engine_output *step_head, *step_tail;
    uint64_t steps, preemptions;
    uint64_t step_prompt_tokens, step_gen_tokens;
    /* batch buffers */
    int32_t *b_tokens, *b_pos, *b_start, *b_len, *b_table, *b_rows;
    size_t cap_tokens, cap_pos, cap_start, cap_len, cap_table, cap_rows;
    float *logits;
    size_t cap_logits;
};

/* ---- requests and outputs ------------------------------------------------ */

void engine_request_free(struct engine_request *r)
{
    if (!r)
        return;
    free(r->prompt);
    free(r->sp.stop_token_ids);
    free(r);
}

static void logprobs_free(struct token_logprob *lp, int n)
{
    if (!lp)
        return;
    for (int i = 0; i < n; i++)
        sampler_logprob_clear(&lp[i]);
    free(lp);
}

void engine_output_free(struct engine_output *o)
{
    if (!o)
        return;
    free(o->tokens);
    logprobs_free(o->logprobs, o->n_tokens);
    logprobs_free(o->prompt_logprobs, o->n_prompt_logprobs);
    free(o);
}

/* ---- small arrays ------------------------------------------------------------ */

static void ptr_push(struct seq ***arr, int *n, int *cap, struct seq *s)
{
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 16;
        *arr = xrealloc(*arr, (size_t)*cap * sizeof(**arr));
    }
    (*arr)[(*n)++] = s;
}

static void ptr_insert(struct seq ***arr, int *n, int *cap, int at, struct seq *s)
{
    ptr_push(arr, n, cap, s);
    memmove(*arr + at + 1, *arr + at, (size_t)(*n - 1 - at) * sizeof(**arr));
    (*arr)[at] = s;
}

static void ptr_remove_at(struct seq **arr, int *n, int at)
{
    memmove(arr + at, arr + at + 1, (size_t)(*n - 1 - at) * sizeof(*arr));
    (*n)--;
}

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return p;
    *cap = need > 2 * *cap ? need : 2 * *cap;
    return xrealloc(p, *cap * elem);
}

/* ---- sequences ------------------------------------------------------------------ */

static void seq_free(struct engine *e, struct seq *s)
{
    kvcache_seq_release(&e->kv, &s->kv);
    kv_seq_free(&s->kv);
    if (s->prompt_lp)
        logprobs_free(s->prompt_lp, s->n_prompt);
    engine_request_free(s->req);
    free(s->tokens);
    free(s);
}

static void seq_append(struct seq *s, int32_t t)
{
    if (s->n_tokens == s->cap) {
        s->cap = 2 * s->cap + 16;
        s->tokens = xrealloc(s->tokens, (size_t)s->cap * sizeof(int32_t));
    }
    s->tokens[s->n_tokens++] = t;
}

static struct engine_output *output_new(uint64_t id)
{
    struct engine_output *o = xcalloc(1, sizeof(*o));
    o->req_id = id;
    o->stop_token = -1;
    return o;
}

static void output_queue(struct engine *e, struct engine_output *o)
{
    if (e->step_tail)
        e->step_tail->next = o;
    else
        e->step_head = o;
    e->step_tail = o;
}

static void output_error(struct engine *e, uint64_t id, const char *msg)
{
    struct engine_output *o = output_new(id);
    o->finish = FINISH_ERROR;
    snprintf(o->error, sizeof(o->error), "%s", msg);
    output_queue(e, o);
}

/* The output for <s> this step (tokens appended by the caller). First
 * outputs carry the prompt logprobs and the cached-token count. */
static struct engine_output *seq_output(struct seq *s)
{
    struct engine_output *o = output_new(s->req->id);
    if (!s->started) {
        s->started = 1;
        o->n_cached_tokens = s->n_cached_tokens;
        if (s->prompt_lp) {
            o->prompt_logprobs = s->prompt_lp;
            o->n_prompt_logprobs = s->n_prompt;
            s->prompt_lp = NULL;
        }
        s->want_prompt_lp = 0;
    }
    return o;
}

static void seq_finish(struct engine *e, struct seq *s, struct engine_output *o,
                       enum finish_reason why)
{
    if (!o)
        o = seq_output(s);
    o->finish = why;
    output_queue(e, o);
    seq_free(e, s);
}

/* Turn a new request into a waiting sequence, or answer it with an error. */
static void request_admit(struct engine *e, struct engine_request *r)
{
    char msg[160];
    struct seq *s;
    int at, max_len;

    if (r->n_prompt <= 0) {
        output_error(e, r->id, "the prompt is empty");
        goto reject;
    }
    for (int i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= e->vocab) {
            snprintf(msg, sizeof(msg), "prompt token %d is out of the vocabulary (%d)",
                     (int)r->prompt[i], e->vocab);
            output_error(e, r->id, msg);
            goto reject;
        }
    if (r->n_prompt >= e->cfg.max_model_len) {
        snprintf(msg, sizeof(msg), "the prompt (%d tokens) leaves no room in max_model_len %d",
                 r->n_prompt, e->cfg.max_model_len);
        output_error(e, r->id, msg);
        goto reject;
    }
    max_len = r->sp.max_tokens < 1 ? r->n_prompt + 1 : r->n_prompt + r->sp.max_tokens;
    if (max_len > e->cfg.max_model_len || max_len < r->n_prompt)
        max_len = e->cfg.max_model_len;
    /* the last token is sampled, never computed: max_len - 1 need slots */
    if (kvcache_blocks_for(&e->kv, max_len - 1) > e->kv.n_blocks) {
        snprintf(msg, sizeof(msg), "the request needs %d KV cache blocks (%d tokens) "
                 "and the cache has %d", kvcache_blocks_for(&e->kv, max_len - 1),
                 max_len - 1, e->kv.n_blocks);
        output_error(e, r->id, msg);
        goto reject;
    }
    s = xcalloc(1, sizeof(*s));
    s->req = r;
    s->n_prompt = r->n_prompt;
    s->max_len = max_len;
    s->cap = r->n_prompt + 16;
    s->tokens = xmalloc((size_t)s->cap * sizeof(int32_t));
    memcpy(s->tokens, r->prompt, (size_t)r->n_prompt * sizeof(int32_t));
    s->n_tokens = r->n_prompt;
    sampler_rng_seed(&s->rng, r->sp.has_seed ? r->sp.seed : sampler_next_seed(e->smp));
    if (r->sp.prompt_logprobs >= 0) {
        s->want_prompt_lp = 1;
        s->prompt_lp = xcalloc((size_t)s->n_prompt, sizeof(*s->prompt_lp));
        s->prompt_lp[0].id = s->tokens[0];
        s->prompt_lp[0].logprob = NAN;
    }
    /* lower priority value first, arrival order within a priority */
    for (at = e->n_waiting; at > 0 && e->waiting[at - 1]->req->priority > r->priority; at--)
        ;
    ptr_insert(&e->waiting, &e->n_waiting, &e->cap_waiting, at, s);
    return;
reject:
    engine_request_free(r);
}

static void request_abort(struct engine *e, uint64_t id)
{
    for (int i = 0; i < e->n_waiting; i++)
        if (e->waiting[i]->req->id == id) {
            struct seq *s = e->waiting[i];
            ptr_remove_at(e->waiting, &e->n_waiting, i);
            seq_finish(e, s, NULL, FINISH_ABORT);
            return;
        }
    for (int i = 0; i < e->n_running; i++)
        if (e->running[i]->req->id == id) {
            struct seq *s = e->running[i];
            ptr_remove_at(e->running, &e->n_running, i);
            seq_finish(e, s, NULL, FINISH_ABORT);
            return;
        }
}

/* ---- scheduling ---------------------------------------------------------------- */

/* The running sequence to preempt: the largest priority value, and among
 * equals the latest admitted (vLLM: FCFS pops the last running request). */
static int victim_index(const struct engine *e)
{
    int v = e->n_running - 1;
    for (int i = e->n_running - 2; i >= 0; i--)
        if (e->running[i]->req->priority > e->running[v]->req->priority)
            v = i;
    return v;
}

/* Free the blocks of running[<at>] and put it back in the waiting queue,
 * ahead of everything of its priority; it recomputes prompt + output when
 * admitted again. A sequence already scheduled this step leaves the
 * schedule and gives back its tokens to <*budget>. */
static struct seq *preempt_at(struct engine *e, int at, int *budget)
{
    struct seq *v = e->running[at];
    int pos = 0;
    for (int j = 0; j < e->n_sched; j++)
        if (e->sched[j] == v) {
            *budget += v->n_new;
            ptr_remove_at(e->sched, &e->n_sched, j);
            break;
        }
    ptr_remove_at(e->running, &e->n_running, at);
    kvcache_seq_release(&e->kv, &v->kv);
    v->n_computed = 0;
    while (pos < e->n_waiting && e->waiting[pos]->req->priority < v->req->priority)
        pos++;
    ptr_insert(&e->waiting, &e->n_waiting, &e->cap_waiting, pos, v);
    e->preemptions++;
    log_debug("preempted request %llu (%d tokens)", (unsigned long long)v->req->id,
              v->n_tokens);
    return v;
}

static int chunk_tokens(const struct seq *s, int budget)
{
    int n = s->n_tokens - s->n_computed;
    if (n > budget)
        n = budget;
    if (s->want_prompt_lp && n > PROMPT_LP_CHUNK)
        n = PROMPT_LP_CHUNK;
    return n;
}

static void sched_add(struct engine *e, struct seq *s, int n_new)
{
    s->n_new = n_new;
    ptr_push(&e->sched, &e->n_sched, &e->cap_sched, s);
}

static void schedule(struct engine *e)
{
    int budget = e->cfg.max_num_batched_tokens, preempted = 0;

    e->n_sched = 0;
    for (int i = 0; i < e->n_running && budget > 0; i++) {
        struct seq *s = e->running[i];
        int n_new = chunk_tokens(s, budget), fits = 0;
        if (n_new <= 0)
            continue;
        for (;;) {
            int vi;
            if (kvcache_seq_reserve(&e->kv, &s->kv, s->n_computed + n_new) == 0) {
                fits = 1;
                break;
            }
            vi = victim_index(e);
            preempt_at(e, vi, &budget);
            preempted = 1;
            if (vi == i)
                break;
            if (vi < i)
                i--;
        }
        if (!fits)
            break;
        sched_add(e, s, n_new);
        budget -= n_new;
    }
    if (preempted)
        return;     /* as vLLM: no admissions in a step that had to preempt */
    while (e->n_waiting > 0 && budget > 0 && e->n_running < e->cfg.max_num_seqs) {
        struct seq *s = e->waiting[0];
        int use_cache = e->cfg.enable_prefix_caching && !s->want_prompt_lp;
        int n_cached = use_cache ? kvcache_peek_prefix(&e->kv, s->tokens, s->n_tokens) : 0;
        int n_new, got;
        s->n_computed = n_cached;
        n_new = chunk_tokens(s, budget);
        got = kvcache_seq_admit(&e->kv, &s->kv, s->tokens, s->n_tokens, use_cache, n_new);
        if (got < 0) {
            s->n_computed = 0;
            break;
        }
        s->n_computed = got;
        if (!s->started)
            s->n_cached_tokens = got;
        ptr_remove_at(e->waiting, &e->n_waiting, 0);
        ptr_push(&e->running, &e->n_running, &e->cap_running, s);
        sched_add(e, s, n_new);
        budget -= n_new;
    }
}

/* ---- the step ---------------------------------------------------------------- */

/* Fill <b> from e->sched: each sequence's new tokens, its block table row
 * and its logit rows (the last token when it reaches the end of the
 * sequence; every token of a prompt_logprobs chunk). */
static void batch_build(struct engine *e, struct model_batch *b)
{
    int n_tok = 0, max_blocks = 1, n_rows = 0, t = 0;
    int n = e->n_sched;

    for (int i = 0; i < n; i++) {
        struct seq *s = e->sched[i];
        n_tok += s->n_new;
        if (s->kv.n_blocks > max_blocks)
            max_blocks = s->kv.n_blocks;
    }
    e->b_tokens = grow(e->b_tokens, &e->cap_tokens, (size_t)n_tok, sizeof(int32_t));
    e->b_pos = grow(e->b_pos, &e->cap_pos, (size_t)n_tok, sizeof(int32_t));
    e->b_rows = grow(e->b_rows, &e->cap_rows, (size_t)n_tok, sizeof(int32_t));
    e->b_start = grow(e->b_start, &e->cap_start, (size_t)n + 1, sizeof(int32_t));
    e->b_len = grow(e->b_len, &e->cap_len, (size_t)n, sizeof(int32_t));
    e->b_table = grow(e->b_table, &e->cap_table, (size_t)n * (size_t)max_blocks,
                      sizeof(int32_t));
    for (int i = 0; i < n; i++) {
        struct seq *s = e->sched[i];
        int32_t *row = e->b_table + (size_t)i * max_blocks;
        int end = s->n_computed + s->n_new;
        e->b_start[i] = t;
        e->b_len[i] = end;
        for (int j = 0; j < max_blocks; j++)
            row[j] = j < s->kv.n_blocks ? s->kv.blocks[j] : 0;
        s->row0 = n_rows;
        s->n_rows = 0;
        for (int p = s->n_computed; p < end; p++, t++) {
            e->b_tokens[t] = s->tokens[p];
            e->b_pos[t] = p;
            if ((s->want_prompt_lp && p < s->n_prompt - 1) || p == s->n_tokens - 1) {
                e->b_rows[n_rows++] = t;
                s->n_rows++;
            }
        }
    }
    e->b_start[n] = t;
    memset(b, 0, sizeof(*b));
    b->n_tokens = n_tok;
    b->tokens = e->b_tokens;
    b->positions = e->b_pos;
    b->n_seqs = n;
    b->seq_start = e->b_start;
    b->seq_len = e->b_len;
    b->block_table = e->b_table;
    b->max_blocks = max_blocks;
    b->n_logits = n_rows;
    b->logit_rows = e->b_rows;
    e->logits = grow(e->logits, &e->cap_logits, (size_t)(n_rows ? n_rows : 1) * e->vocab,
                     sizeof(float));
}

/* 1 when <t> ends <s> by eos or a stop id (min_tokens reached). */
static int is_stop(const struct engine *e, const struct seq *s, int32_t t)
{
    const struct sampling_params *sp = &s->req->sp;
    if (s->n_tokens - s->n_prompt < sp->min_tokens)
        return 0;
    if (!sp->ignore_eos)
        for (int i = 0; i < e->cfg.n_eos_ids; i++)
            if (e->eos_ids[i] == t)
                return 1;
    for (int i = 0; i < sp->n_stop_token_ids; i++)
        if (sp->stop_token_ids[i] == t)
            return 1;
    return 0;
}

/* After the forward: record computed tokens, prompt logprobs, sample and
 * queue the output. Returns 1 when <s> finished (marked done, not freed). */
static int seq_after_step(struct engine *e, struct seq *s, float *logits)
{
    const struct sampling_params *sp = &s->req->sp;
    struct sampler_seq q;
    struct engine_output *o;
    int first = s->n_computed, row = s->row0;
    int32_t tok;

    s->n_computed += s->n_new;
    for (int p = first; p < s->n_computed && p < s->n_prompt; p++)
        e->step_prompt_tokens++;
    kvcache_seq_commit(&e->kv, &s->kv, s->tokens, s->n_computed);
    if (s->want_prompt_lp)
        for (int p = first; p < s->n_computed && p < s->n_prompt - 1; p++, row++) {
            struct token_logprob *lp = &s->prompt_lp[p + 1];
            sampler_logprob_clear(lp);
            sampler_logprob(e->smp, logits + (size_t)row * e->vocab, s->tokens[p + 1],
                            sp->prompt_logprobs, lp);
        }
    if (s->n_computed < s->n_tokens)
        return 0;   /* a prefill chunk short of the end */

    q.sp = sp;
    q.prompt = s->tokens;
    q.n_prompt = s->n_prompt;
    q.output = s->tokens + s->n_prompt;
    q.n_output = s->n_tokens - s->n_prompt;
    q.eos_ids = e->eos_ids;
    q.n_eos_ids = e->cfg.n_eos_ids;
    q.rng = &s->rng;
    o = seq_output(s);
    o->tokens = xmalloc(sizeof(int32_t));
    if (sp->logprobs >= 0)
        o->logprobs = xcalloc(1, sizeof(*o->logprobs));
    tok = sampler_sample(e->smp, logits + (size_t)row * e->vocab, &q, o->logprobs);
    o->tokens[0] = tok;
    o->n_tokens = 1;
    seq_append(s, tok);
    e->step_gen_tokens++;
    if (is_stop(e, s, tok)) {
        o->stop_token = tok;
        o->finish = FINISH_STOP;
    } else if (s->n_tokens >= s->max_len) {
        o->finish = FINISH_LENGTH;
    }
    s->done = o->finish != FINISH_NONE;
    output_queue(e, o);
    return s->done;
}

/* Free the running sequences marked done, keeping the others' order. */
static void running_sweep(struct engine *e)
{
    int n_keep = 0;
    for (int i = 0; i < e->n_running; i++) {
        struct seq *s = e->running[i];
        if (s->done)
            seq_free(e, s);
        else
            e->running[n_keep++] = s;
    }
    e->n_running = n_keep;
}

/* One step over what schedule() chose. 0, or -1 when nothing ran. */
static int engine_step(struct engine *e)
{
    struct model_batch b;

    schedule(e);
    if (e->n_sched == 0) {
        /* Only possible when the head of the queue cannot get blocks with
         * nothing running, which the admission check rules out. */
        if (e->n_running == 0 && e->n_waiting > 0) {
            struct seq *s = e->waiting[0];
            struct engine_output *o = seq_output(s);
            ptr_remove_at(e->waiting, &e->n_waiting, 0);
            snprintf(o->error, sizeof(o->error), "no KV cache blocks for the request");
            seq_finish(e, s, o, FINISH_ERROR);
        }
        return -1;
    }
    batch_build(e, &b);
    if (model_forward(e->m, &b, e->logits) != 0) {
        log_error("model forward failed for a step of %d tokens in %d sequences; "
                  "failing them", b.n_tokens, b.n_seqs);
        for (int i = 0; i < e->n_sched; i++) {
            struct seq *s = e->sched[i];
            struct engine_output *o = seq_output(s);
            snprintf(o->error, sizeof(o->error), "the model failed to run");
            o->finish = FINISH_ERROR;
            output_queue(e, o);
            s->done = 1;
        }
    } else {
        for (int i = 0; i < e->n_sched; i++)
            seq_after_step(e, e->sched[i], e->logits);
    }
    running_sweep(e);
    e->n_sched = 0;
    e->steps++;
    return 0;
}

/* ---- thread and queues ------------------------------------------------------ */

static void rate_add(struct engine *e, int64_t t_us, uint64_t prompt, uint64_t gen)
{
    int64_t sec = t_us / 1000000;
    struct rate_bucket *r = &e->rate[sec % RATE_BUCKETS];
    if (r->sec != sec) {
        r->sec = sec;
        r->prompt = r->gen = 0;
    }
    r->prompt += prompt;
    r->gen += gen;
}

/* Hand the step's outputs and the new load figures over (under mu). */
static void step_publish(struct engine *e)
{
    struct engine_output *head = e->step_head;
    int64_t t = now_us();

    pthread_mutex_lock(&e->mu);
    if (head) {
        if (e->out_tail)
            e->out_tail->next = head;
        else
            e->out_head = head;
        e->out_tail = e->step_tail;
    }
    rate_add(e, t, e->step_prompt_tokens, e->step_gen_tokens);
    e->load.running = e->n_running;
    e->load.waiting = e->n_waiting;
    e->load.kv_blocks_free = kvcache_n_free(&e->kv);
    e->load.kv_blocks_total = e->kv.n_blocks;
    e->load.prefix_cache_queries = e->kv.queries;
    e->load.prefix_cache_hits = e->kv.hits;
    e->load.steps = e->steps;
    e->load.preemptions = e->preemptions;
    pthread_mutex_unlock(&e->mu);
    e->step_head = e->step_tail = NULL;
    e->step_prompt_tokens = e->step_gen_tokens = 0;
    if (head && e->notify)
        e->notify(e->notify_arg);
}

static void *engine_main(void *arg)
{
    struct engine *e = arg;
    struct engine_request **in = NULL;
    uint64_t *ab = NULL;
    int cap_in = 0, cap_ab = 0;

    for (;;) {
        int n_in, n_ab;
        pthread_mutex_lock(&e->mu);
        while (!e->stopping && e->n_in == 0 && e->n_ab == 0 && e->n_running == 0 &&
               e->n_waiting == 0)
            pthread_cond_wait(&e->cv, &e->mu);
        if (e->stopping) {
            pthread_mutex_unlock(&e->mu);
            break;
        }
        /* swap the queues with our spare arrays */
        {
            struct engine_request **t = e->incoming;
            uint64_t *u = e->aborts;
            int c = e->cap_in, d = e->cap_ab;
            n_in = e->n_in;
            n_ab = e->n_ab;
            e->incoming = in;
            e->cap_in = cap_in;
            e->aborts = ab;
            e->cap_ab = cap_ab;
            e->n_in = e->n_ab = 0;
            in = t;
            cap_in = c;
            ab = u;
            cap_ab = d;
        }
        pthread_mutex_unlock(&e->mu);

        for (int i = 0; i < n_in; i++)
            request_admit(e, in[i]);
        for (int i = 0; i < n_ab; i++)
            request_abort(e, ab[i]);
        engine_step(e);
        step_publish(e);
    }
    free(in);
    free(ab);
    return NULL;
}

/* A 1-token forward of a dummy sequence in block 0 (free, so nothing is
 * overwritten that anyone reads): proves the model runs. */
static int engine_warmup(struct engine *e, char *err, size_t errlen)
{
    int32_t tok = 0, pos = 0, start[2] = { 0, 1 }, len = 1, table = 0, row = 0;
    struct model_batch b = {
        .n_tokens = 1, .tokens = &tok, .positions = &pos, .n_seqs = 1,
        .seq_start = start, .seq_len = &len, .block_table = &table, .max_blocks = 1,
        .n_logits = 1, .logit_rows = &row,
    };
    e->logits = grow(e->logits, &e->cap_logits, (size_t)e->vocab, sizeof(float));
    if (model_forward(e->m, &b, e->logits) != 0) {
        snprintf(err, errlen, "the warm-up step of the model failed");
        return -1;
    }
    return 0;
}

static uint64_t random_seed(void)
{
    uint64_t x = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &x, sizeof(x)) != (ssize_t)sizeof(x))
            x = 0;
        close(fd);
    }
    return x ^ (uint64_t)now_us() ^ ((uint64_t)getpid() << 32);
}

struct engine *engine_start(struct model *m, const struct engine_config *cfg,
                            engine_notify_fn notify, void *notify_arg,
                            char *err, size_t errlen)
{
    const struct model_config *mc = model_get_config(m);
    struct engine *e = xcalloc(1, sizeof(*e));
    size_t block_bytes;
    int rc;

    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->m = m;
    e->vocab = mc->vocab_size;
    e->cfg = *cfg;
    e->notify = notify;
    e->notify_arg = notify_arg;
    if (e->cfg.block_size <= 0)
        e->cfg.block_size = 16;
    if (e->cfg.max_num_seqs <= 0)
        e->cfg.max_num_seqs = 256;
    if (e->cfg.max_num_batched_tokens <= 0)
        e->cfg.max_num_batched_tokens = 2048;
    if (e->cfg.max_model_len <= 0)
        e->cfg.max_model_len = mc->max_position_embeddings;
    if (e->cfg.max_model_len <= 1) {
        snprintf(err, errlen, "max_model_len %d is too small", e->cfg.max_model_len);
        goto fail;
    }
    if (cfg->n_eos_ids > 0) {
        e->eos_ids = xmalloc((size_t)cfg->n_eos_ids * sizeof(int32_t));
        memcpy(e->eos_ids, cfg->eos_ids, (size_t)cfg->n_eos_ids * sizeof(int32_t));
    }
    e->cfg.eos_ids = e->eos_ids;
    block_bytes = model_kv_block_bytes(m, e->cfg.block_size);
    if (e->cfg.n_blocks <= 0 && block_bytes > 0)
        e->cfg.n_blocks = (int)(e->cfg.kv_cache_bytes / block_bytes);
    if (e->cfg.n_blocks <= 0) {
        snprintf(err, errlen, "no KV cache: %zu bytes hold no block of %zu bytes "
                 "(%d tokens)", e->cfg.kv_cache_bytes, block_bytes, e->cfg.block_size);
        goto fail;
    }
    if (kvcache_init(&e->kv, e->cfg.n_blocks, e->cfg.block_size,
                     e->cfg.enable_prefix_caching) != 0 ||
        model_kv_alloc(m, e->cfg.n_blocks, e->cfg.block_size) != 0) {
        snprintf(err, errlen, "cannot allocate the KV cache (%d blocks of %zu bytes)",
                 e->cfg.n_blocks, block_bytes);
        goto fail;
    }
    e->smp = sampler_new(e->vocab, random_seed());
    if (engine_warmup(e, err, errlen) != 0)
        goto fail;
    e->stepped = 1;
    e->start_us = now_us();
    e->load.kv_blocks_free = e->load.kv_blocks_total = e->kv.n_blocks;
    rc = pthread_create(&e->thread, NULL, engine_main, e);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the engine thread: %s", strerror(rc));
        goto fail;
    }
    e->thread_started = 1;
    log_info("engine: %d KV blocks of %d tokens (%zu bytes each), max_num_seqs %d, "
             "max_num_batched_tokens %d, max_model_len %d, prefix caching %s",
             e->cfg.n_blocks, e->cfg.block_size, block_bytes, e->cfg.max_num_seqs,
             e->cfg.max_num_batched_tokens, e->cfg.max_model_len,
             e->cfg.enable_prefix_caching ? "on" : "off");
    return e;
fail:
    engine_stop(e);
    return NULL;
}

void engine_stop(struct engine *e)
{
    struct engine_output *o;
    if (!e)
        return;
    if (e->thread_started) {
        pthread_mutex_lock(&e->mu);
        e->stopping = 1;
        pthread_cond_signal(&e->cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
    }
    for (int i = 0; i < e->n_running; i++)
        seq_free(e, e->running[i]);
    for (int i = 0; i < e->n_waiting; i++)
        seq_free(e, e->waiting[i]);
    for (int i = 0; i < e->n_in; i++)
        engine_request_free(e->incoming[i]);
    while ((o = e->out_head) != NULL) {
        e->out_head = o->next;
        engine_output_free(o);
    }
    while ((o = e->step_head) != NULL) {
        e->step_head = o->next;
        engine_output_free(o);
    }
    free(e->running);
    free(e->waiting);
    free(e->sched);
    free(e->incoming);
    free(e->aborts);
    free(e->b_tokens);
    free(e->b_pos);
    free(e->b_start);
    free(e->b_len);
    free(e->b_table);
    free(e->b_rows);
    free(e->logits);
    free(e->eos_ids);
    sampler_free(e->smp);
    kvcache_free(&e->kv);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

int engine_add_request(struct engine *e, struct engine_request *r)
{
    pthread_mutex_lock(&e->mu);
    if (e->stopping) {
        pthread_mutex_unlock(&e->mu);
        return -1;
    }
    if (e->n_in == e->cap_in) {
        e->cap_in = e->cap_in ? 2 * e->cap_in : 16;
        e->incoming = xrealloc(e->incoming, (size_t)e->cap_in * sizeof(*e->incoming));
    }
    e->incoming[e->n_in++] = r;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

void engine_abort(struct engine *e, uint64_t id)
{
    pthread_mutex_lock(&e->mu);
    if (e->n_ab == e->cap_ab) {
        e->cap_ab = e->cap_ab ? 2 * e->cap_ab : 16;
        e->aborts = xrealloc(e->aborts, (size_t)e->cap_ab * sizeof(*e->aborts));
    }
    e->aborts[e->n_ab++] = id;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

struct engine_output *engine_take_outputs(struct engine *e)
{
    struct engine_output *o;
    pthread_mutex_lock(&e->mu);
    o = e->out_head;
    e->out_head = e->out_tail = NULL;
    pthread_mutex_unlock(&e->mu);
    return o;
}

void engine_get_load(struct engine *e, struct engine_load *out)
{
    int64_t t = now_us(), sec = t / 1000000;
    double window;
    uint64_t prompt = 0, gen = 0;

    pthread_mutex_lock(&e->mu);
    *out = e->load;
    out->waiting += e->n_in;
    for (int i = 0; i < RATE_BUCKETS; i++)
        if (e->rate[i].sec > sec - RATE_WINDOW_S && e->rate[i].sec <= sec) {
            prompt += e->rate[i].prompt;
            gen += e->rate[i].gen;
        }
    window = (double)(t - e->start_us) / 1e6;
    pthread_mutex_unlock(&e->mu);
    if (window > RATE_WINDOW_S)
        window = RATE_WINDOW_S;
    if (window < 1)
        window = 1;
    out->prompt_tokens_per_s = (double)prompt / window;
    out->generation_tokens_per_s = (double)gen / window;
}

const struct engine_config *engine_get_config(const struct engine *e)
{
    return &e->cfg;
}

int engine_has_stepped(struct engine *e)
{
    int v;
    pthread_mutex_lock(&e->mu);
    v = e->stepped;
    pthread_mutex_unlock(&e->mu);
    return v;
}
