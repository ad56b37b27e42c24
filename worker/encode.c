/*
 * encode.c -- the encoder batching engine: a mutex-protected request list
 * fed by the event loop, one thread planning batches (round-robin between
 * requests, shortest inputs first, bounded by tokens and sequences),
 * running the forward and scattering results back; finished requests go
 * to an output list and the loop is woken. No HTTP, no tokenizing.
 */
#include "encode.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define RATE_WINDOW 32

struct enc_req {
    struct enc_req *next;
    struct encode_output *out;      /* filled as batches finish */
    unsigned want;
    int *order;                     /* input indices, shortest first */
    int next_pos;                   /* next position in order not scheduled */
    int left;                       /* inputs not scheduled */
    int in_flight;                  /* inputs in the running batch */
    int done;
    int cancelled;
};

struct encode_engine {
    struct encode_config cfg;
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
    struct enc_req *head, *tail;    /* arrival order */
    struct encode_output *outs, *outs_tail;
    void (*notify)(void *);
    void *notify_arg;
    int has_run;
    /* load */
    int running;
    uint64_t batches, inputs_done, tokens_done;
    int last_seqs, last_tokens;
    int64_t rate_t[RATE_WINDOW];
    long rate_tok[RATE_WINDOW];
    int rate_n, rate_pos;
};

void encode_output_free(struct encode_output *o)
{
    if (o == NULL)
        return;
    for (int i = 0; i < o->n_inputs; i++) {
        if (o->ids)
            free(o->ids[i]);
        if (o->sparse)
            free(o->sparse[i]);
        if (o->colbert)
            free(o->colbert[i]);
    }
    free(o->ids);
    free(o->n_ids);
    free(o->dense);
    free(o->scores);
    free(o->sparse);
    free(o->colbert);
    free(o);
}

void encode_request_free_ids(struct encode_request *r)
{
    if (r->ids)
        for (int i = 0; i < r->n_inputs; i++)
            free(r->ids[i]);
    free(r->ids);
    free(r->n_ids);
    r->ids = NULL;
    r->n_ids = NULL;
}

static void req_free(struct enc_req *q)
{
    encode_output_free(q->out);
    free(q->order);
    free(q);
}

/* ---- planning ---------------------------------------------------------------- */

int encode_plan_batch(const struct encode_plan_src *s, int max_tokens, int max_seqs,
                      int *out_req, int *out_idx, long *out_tokens)
{
    int n = 0, progress = 1;
    long tokens = 0;
    int *pos = xcalloc((size_t)s->n_req + 1, sizeof(int));
    int *rem = xcalloc((size_t)s->n_req + 1, sizeof(int));
    for (int r = 0; r < s->n_req; r++) {
        pos[r] = s->next[r];
        rem[r] = s->left[r];
    }
    while (n < max_seqs && progress) {
        progress = 0;
        for (int r = 0; r < s->n_req && n < max_seqs; r++) {
            if (rem[r] <= 0)
                continue;
            int idx = s->order[r][pos[r]];
            int len = s->lens[r][idx];
            if (n > 0 && tokens + len > max_tokens) {
                rem[r] = 0;     /* its next input is longer still: done for this batch */
                continue;
            }
            out_req[n] = r;
            out_idx[n] = idx;
            n++;
            tokens += len;
            pos[r]++;
            rem[r]--;
            progress = 1;
        }
    }
    free(pos);
    free(rem);
    *out_tokens = tokens;
    return n;
}

/* ---- the thread -------------------------------------------------------------------- */

static void rate_add(struct encode_engine *e, long tokens)
{
    e->rate_t[e->rate_pos] = now_us();
    e->rate_tok[e->rate_pos] = tokens;
    e->rate_pos = (e->rate_pos + 1) % RATE_WINDOW;
    if (e->rate_n < RATE_WINDOW)
        e->rate_n++;
}

/* Unlink cancelled requests with nothing running. Under the lock. */
static void prune_cancelled(struct encode_engine *e)
{
    struct enc_req **pp = &e->head, *prev = NULL;
    while (*pp) {
        struct enc_req *q = *pp;
        if (q->cancelled && q->in_flight == 0) {
            *pp = q->next;
            if (e->tail == q)
                e->tail = prev;
            req_free(q);
            continue;
        }
        prev = q;
        pp = &q->next;
    }
}

static void unlink_req(struct encode_engine *e, struct enc_req *q)
{
    struct enc_req **pp = &e->head, *prev = NULL;
    for (; *pp; prev = *pp, pp = &(*pp)->next) {
        if (*pp == q) {
            *pp = q->next;
            if (e->tail == q)
                e->tail = prev;
            return;
        }
    }
}

struct batch {
    int cap_seqs;
    struct enc_req **req;
    int *idx;
    int *plan_req;
    int32_t *tokens;
    size_t cap_tokens;
    int32_t *start;
    float *dense, *scores, *sparse, *colbert;
    size_t cap_dense, cap_scores, cap_sparse, cap_colbert;
};

static void batch_free(struct batch *b)
{
    free(b->req);
    free(b->idx);
    free(b->plan_req);
    free(b->tokens);
    free(b->start);
    free(b->dense);
    free(b->scores);
    free(b->sparse);
    free(b->colbert);
}

static float *grow_f(float *p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return p;
    free(p);
    *cap = need;
    return xmalloc(need * sizeof(float));
}

/* Choose the next batch from the queue. Under the lock. Returns the number
 * of sequences (0: nothing to do) and the union of what they want. */
static int batch_plan(struct encode_engine *e, struct batch *b, unsigned *want, long *n_tok)
{
    int n_req = 0;
    for (struct enc_req *q = e->head; q; q = q->next)
        if (!q->cancelled && q->left > 0)
            n_req++;
    if (n_req == 0)
        return 0;
    struct enc_req **reqs = xcalloc((size_t)n_req, sizeof(*reqs));
    int *left = xcalloc((size_t)n_req, sizeof(int)), *next = xcalloc((size_t)n_req, sizeof(int));
    const int **order = xcalloc((size_t)n_req, sizeof(int *));
    const int **lens = xcalloc((size_t)n_req, sizeof(int *));
    int k = 0;
    for (struct enc_req *q = e->head; q; q = q->next) {
        if (q->cancelled || q->left <= 0)
            continue;
        reqs[k] = q;
        left[k] = q->left;
        next[k] = q->next_pos;
        order[k] = q->order;
        lens[k] = q->out->n_ids;
        k++;
    }
    struct encode_plan_src src = { n_req, left, next, order, lens };
    int n = encode_plan_batch(&src, e->cfg.max_num_batched_tokens, b->cap_seqs, b->plan_req,
                              b->idx, n_tok);
    *want = 0;
    if ((size_t)*n_tok > b->cap_tokens) {
        free(b->tokens);
        b->cap_tokens = (size_t)*n_tok;
        b->tokens = xmalloc(b->cap_tokens * sizeof(int32_t));
    }
    long off = 0;
    for (int i = 0; i < n; i++) {
        struct enc_req *q = reqs[b->plan_req[i]];
        b->req[i] = q;
        q->next_pos++;
        q->left--;
        q->in_flight++;
        *want |= q->want;
        int len = q->out->n_ids[b->idx[i]];
        b->start[i] = (int32_t)off;
        memcpy(b->tokens + off, q->out->ids[b->idx[i]], (size_t)len * sizeof(int32_t));
        off += len;
    }
    b->start[n] = (int32_t)off;
    free(reqs);
    free(left);
    free(next);
    free(order);
    free(lens);
    return n;
}

static int batch_run(struct encode_engine *e, struct batch *b, int n, long n_tok, unsigned want)
{
    const struct encode_config *c = &e->cfg;
    struct encoder_out out = { 0 };
    if (want & ENCODE_DENSE)
        out.dense = b->dense = grow_f(b->dense, &b->cap_dense, (size_t)n * (size_t)c->hidden);
    if (want & ENCODE_SCORES)
        out.scores = b->scores = grow_f(b->scores, &b->cap_scores,
                                        (size_t)n * (size_t)(c->n_labels > 0 ? c->n_labels : 1));
    if (want & ENCODE_SPARSE)
        out.sparse = b->sparse = grow_f(b->sparse, &b->cap_sparse, (size_t)n_tok);
    if (want & ENCODE_COLBERT)
        out.colbert = b->colbert = grow_f(b->colbert, &b->cap_colbert,
                                          (size_t)n_tok * (size_t)c->colbert_dim);
    struct encoder_batch eb = { n, b->tokens, b->start };
    return c->forward(c->forward_arg, &eb, &out);
}

/* Copy the results of sequence i of the batch into its request. Under the lock. */
static void batch_scatter_one(struct encode_engine *e, struct batch *b, int i, int failed)
{
    const struct encode_config *c = &e->cfg;
    struct enc_req *q = b->req[i];
    struct encode_output *o = q->out;
    int idx = b->idx[i];
    int len = b->start[i + 1] - b->start[i];
    q->in_flight--;
    q->done++;
    if (q->cancelled)
        return;
    if (failed) {
        o->error = 1;
    } else {
        if (o->dense)
            memcpy(o->dense + (size_t)idx * (size_t)c->hidden, b->dense + (size_t)i * (size_t)c->hidden,
                   (size_t)c->hidden * sizeof(float));
        if (o->scores)
            memcpy(o->scores + (size_t)idx * (size_t)c->n_labels,
                   b->scores + (size_t)i * (size_t)c->n_labels, (size_t)c->n_labels * sizeof(float));
        if (o->sparse) {
            o->sparse[idx] = xmalloc((size_t)len * sizeof(float) + 1);
            memcpy(o->sparse[idx], b->sparse + b->start[i], (size_t)len * sizeof(float));
        }
        if (o->colbert) {
            size_t m = (size_t)len * (size_t)c->colbert_dim;
            o->colbert[idx] = xmalloc(m * sizeof(float) + 1);
            memcpy(o->colbert[idx], b->colbert + (size_t)b->start[i] * (size_t)c->colbert_dim,
                   m * sizeof(float));
        }
    }
}

static void *encode_thread(void *arg)
{
    struct encode_engine *e = arg;
    struct batch b;
    memset(&b, 0, sizeof(b));
    b.cap_seqs = e->cfg.max_num_seqs;
    b.req = xcalloc((size_t)b.cap_seqs, sizeof(*b.req));
    b.idx = xcalloc((size_t)b.cap_seqs, sizeof(int));
    b.plan_req = xcalloc((size_t)b.cap_seqs, sizeof(int));
    b.start = xcalloc((size_t)b.cap_seqs + 1, sizeof(int32_t));

    pthread_mutex_lock(&e->mu);
    while (!e->stopping) {
        prune_cancelled(e);
        unsigned want;
        long n_tok;
        int n = batch_plan(e, &b, &want, &n_tok);
        if (n == 0) {
            pthread_cond_wait(&e->cv, &e->mu);
            continue;
        }
        e->running = 0;
        for (struct enc_req *q = e->head; q; q = q->next)
            e->running += q->in_flight > 0;
        pthread_mutex_unlock(&e->mu);

        int64_t t0 = now_us();
        int rc = batch_run(e, &b, n, n_tok, want);
        int64_t dt = now_us() - t0;
        if (rc < 0)
            log_error("encoder forward failed on a batch of %d sequences (%ld tokens)", n, n_tok);
        else
            log_debug("encode batch: %d sequences, %ld tokens, %.1f ms", n, n_tok,
                      (double)dt / 1000.0);

        int notify = 0;
        pthread_mutex_lock(&e->mu);
        for (int i = 0; i < n; i++)
            batch_scatter_one(e, &b, i, rc < 0);
        for (int i = 0; i < n; i++) {
            struct enc_req *q = b.req[i];
            if (q == NULL || q->cancelled || q->done < q->out->n_inputs)
                continue;
            for (int j = i + 1; j < n; j++)     /* the request once */
                if (b.req[j] == q)
                    b.req[j] = NULL;
            unlink_req(e, q);
            struct encode_output *o = q->out;
            q->out = NULL;
            if (o->error)
                snprintf(o->message, sizeof(o->message), "the encoder forward pass failed");
            o->next = NULL;
            if (e->outs_tail)
                e->outs_tail->next = o;
            else
                e->outs = o;
            e->outs_tail = o;
            req_free(q);
            notify = 1;
        }
        e->running = 0;
        if (rc == 0) {
            e->has_run = 1;
            e->batches++;
            e->inputs_done += (uint64_t)n;
            e->tokens_done += (uint64_t)n_tok;
            e->last_seqs = n;
            e->last_tokens = (int)n_tok;
            rate_add(e, n_tok);
        }
        if (notify) {
            pthread_mutex_unlock(&e->mu);
            e->notify(e->notify_arg);
            pthread_mutex_lock(&e->mu);
        }
    }
    pthread_mutex_unlock(&e->mu);
    batch_free(&b);
    return NULL;
}

/* ---- the loop's side ---------------------------------------------------------------- */

/* One forward of the warm-up sequence on the caller's thread. 0 or -1. */
static int encode_warmup(struct encode_engine *e)
{
    struct batch b;
    memset(&b, 0, sizeof(b));
    b.cap_tokens = (size_t)e->cfg.n_warmup;
    b.tokens = xmalloc(b.cap_tokens * sizeof(int32_t));
    b.start = xcalloc(2, sizeof(int32_t));
    memcpy(b.tokens, e->cfg.warmup_ids, b.cap_tokens * sizeof(int32_t));
    b.start[1] = e->cfg.n_warmup;
    int64_t t0 = now_us();
    unsigned want = e->cfg.n_labels > 0 ? ENCODE_SCORES : ENCODE_DENSE;
    if (e->cfg.hidden > 0)
        want |= ENCODE_DENSE;
    int rc = batch_run(e, &b, 1, e->cfg.n_warmup, want);
    if (rc == 0) {
        log_info("encoder warm-up forward: %.1f ms", (double)(now_us() - t0) / 1000.0);
        e->has_run = 1;
    }
    batch_free(&b);
    return rc;
}

struct encode_engine *encode_start(const struct encode_config *cfg, void (*notify)(void *),
                                   void *arg, char *err, size_t errlen)
{
    if (cfg->forward == NULL || cfg->max_num_seqs < 1 || cfg->max_num_batched_tokens < 1 ||
        cfg->hidden < 0 || cfg->n_labels < 0 || cfg->colbert_dim < 0) {
        snprintf(err, errlen, "invalid encode engine configuration");
        return NULL;
    }
    struct encode_engine *e = xcalloc(1, sizeof(*e));
    e->cfg = *cfg;
    e->notify = notify;
    e->notify_arg = arg;
    if (cfg->n_warmup > 0 && encode_warmup(e) < 0) {
        snprintf(err, errlen, "the warm-up forward pass failed");
        free(e);
        return NULL;
    }
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    int rc = pthread_create(&e->thread, NULL, encode_thread, e);
    if (rc != 0) {
        snprintf(err, errlen, "pthread_create: %s", strerror(rc));
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->cv);
        free(e);
        return NULL;
    }
    e->thread_started = 1;
    return e;
}

void encode_stop(struct encode_engine *e)
{
    if (e == NULL)
        return;
    pthread_mutex_lock(&e->mu);
    e->stopping = 1;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (e->thread_started)
        pthread_join(e->thread, NULL);
    while (e->head) {
        struct enc_req *q = e->head;
        e->head = q->next;
        req_free(q);
    }
    struct encode_output *o = e->outs, *next;
    for (; o; o = next) {
        next = o->next;
        encode_output_free(o);
    }
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

static const int *sort_lens;

static int cmp_len(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    if (sort_lens[x] != sort_lens[y])
        return sort_lens[x] < sort_lens[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

int encode_submit(struct encode_engine *e, struct encode_request *r)
{
    struct enc_req *q = xcalloc(1, sizeof(*q));
    struct encode_output *o = xcalloc(1, sizeof(*o));
    const struct encode_config *c = &e->cfg;
    o->req_id = r->id;
    o->n_inputs = r->n_inputs;
    o->ids = r->ids;
    o->n_ids = r->n_ids;
    r->ids = NULL;
    r->n_ids = NULL;
    for (int i = 0; i < o->n_inputs; i++)
        o->n_tokens += o->n_ids[i];
    if (r->want & ENCODE_DENSE)
        o->dense = xcalloc((size_t)o->n_inputs * (size_t)c->hidden + 1, sizeof(float));
    if (r->want & ENCODE_SCORES)
        o->scores = xcalloc((size_t)o->n_inputs * (size_t)c->n_labels + 1, sizeof(float));
    if (r->want & ENCODE_SPARSE)
        o->sparse = xcalloc((size_t)o->n_inputs, sizeof(float *));
    if (r->want & ENCODE_COLBERT)
        o->colbert = xcalloc((size_t)o->n_inputs, sizeof(float *));
    q->out = o;
    q->want = r->want;
    q->left = o->n_inputs;
    q->order = xcalloc((size_t)o->n_inputs + 1, sizeof(int));
    for (int i = 0; i < o->n_inputs; i++)
        q->order[i] = i;
    /* qsort has no context argument in C11: the lengths go through a
     * file static, only ever touched by the event-loop thread */
    sort_lens = o->n_ids;
    qsort(q->order, (size_t)o->n_inputs, sizeof(int), cmp_len);
    sort_lens = NULL;

    pthread_mutex_lock(&e->mu);
    if (e->stopping) {
        pthread_mutex_unlock(&e->mu);
        r->ids = o->ids;
        r->n_ids = o->n_ids;
        o->ids = NULL;
        o->n_ids = NULL;
        o->n_inputs = 0;
        req_free(q);
        return -1;
    }
    if (e->tail)
        e->tail->next = q;
    else
        e->head = q;
    e->tail = q;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

void encode_cancel(struct encode_engine *e, uint64_t id)
{
    pthread_mutex_lock(&e->mu);
    for (struct enc_req *q = e->head; q; q = q->next) {
        if (q->out && q->out->req_id == id) {
            q->cancelled = 1;
            break;
        }
    }
    /* an output already made is dropped too */
    struct encode_output **pp = &e->outs, *prev = NULL;
    for (; *pp; prev = *pp, pp = &(*pp)->next) {
        if ((*pp)->req_id == id) {
            struct encode_output *o = *pp;
            *pp = o->next;
            if (e->outs_tail == o)
                e->outs_tail = prev;
            encode_output_free(o);
            break;
        }
    }
    pthread_mutex_unlock(&e->mu);
}

struct encode_output *encode_take_outputs(struct encode_engine *e)
{
    pthread_mutex_lock(&e->mu);
    struct encode_output *o = e->outs;
    e->outs = e->outs_tail = NULL;
    pthread_mutex_unlock(&e->mu);
    return o;
}

void encode_get_load(struct encode_engine *e, struct encode_load *l)
{
    memset(l, 0, sizeof(*l));
    pthread_mutex_lock(&e->mu);
    for (struct enc_req *q = e->head; q; q = q->next) {
        if (q->cancelled)
            continue;
        if (q->next_pos == 0)
            l->waiting++;
        l->inputs_waiting += q->left;
    }
    l->running = e->running;
    l->batches = e->batches;
    l->inputs_done = e->inputs_done;
    l->tokens_done = e->tokens_done;
    l->last_batch_seqs = e->last_seqs;
    l->last_batch_tokens = e->last_tokens;
    if (e->rate_n > 0) {
        int64_t now = now_us(), oldest = now;
        long tok = 0;
        for (int i = 0; i < e->rate_n; i++) {
            if (now - e->rate_t[i] > 10 * 1000000LL)
                continue;
            tok += e->rate_tok[i];
            if (e->rate_t[i] < oldest)
                oldest = e->rate_t[i];
        }
        double span = (double)(now - oldest) / 1e6;
        if (tok > 0)
            l->tokens_per_s = (double)tok / (span > 1.0 ? span : 1.0);
    }
    pthread_mutex_unlock(&e->mu);
}

int encode_has_run(struct encode_engine *e)
{
    pthread_mutex_lock(&e->mu);
    int r = e->has_run;
    pthread_mutex_unlock(&e->mu);
    return r;
}
