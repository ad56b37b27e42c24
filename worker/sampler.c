/*
 * sampler.c -- next-token choice for one sequence on host f32 logits, in
 * vLLM v1's order: raw logprobs, min_tokens, penalties, greedy | (temperature,
 * min_p, top_k, top_p, draw). Scratch arrays are vocab-sized and reused;
 * the per-token cost is a few passes over the vocabulary (no full sort).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"
#include "util.h"

#define SAMPLER_GREEDY_EPS 1e-5f    /* vLLM's _SAMPLING_EPS */

struct cand {
    float v;
    int32_t id;
};

struct sampler {
    int vocab;
    uint64_t seed_base, seed_counter;
    float *raw;             /* (vocab) copy of the raw logits for logprobs */
    float *work;            /* (vocab) */
    struct cand *cand;      /* (vocab) */
    int32_t *count;         /* (vocab) zero between calls */
    uint8_t *mark;          /* (vocab) zero between calls */
};

/* ---- parameters ---------------------------------------------------------- */

void sampling_params_default(struct sampling_params *sp)
{
    memset(sp, 0, sizeof(*sp));
    sp->temperature = 1.0f;
    sp->top_p = 1.0f;
    sp->top_k = 0;
    sp->min_p = 0.0f;
    sp->repetition_penalty = 1.0f;
    sp->max_tokens = 16;
    sp->logprobs = -1;
    sp->prompt_logprobs = -1;
}

/* ---- PRNG ------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void sampler_rng_seed(struct sampler_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

double sampler_rng_uniform(struct sampler_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return (double)(out >> 11) * 0x1.0p-53;
}

/* ---- life cycle -------------------------------------------------------------- */

struct sampler *sampler_new(int vocab, uint64_t seed_base)
{
    struct sampler *s = xcalloc(1, sizeof(*s));
    s->vocab = vocab;
    s->seed_base = seed_base;
    s->raw = xmalloc((size_t)vocab * sizeof(float));
    s->work = xmalloc((size_t)vocab * sizeof(float));
    s->cand = xmalloc((size_t)vocab * sizeof(struct cand));
    s->count = xcalloc((size_t)vocab, sizeof(int32_t));
    s->mark = xcalloc((size_t)vocab, 1);
    return s;
}

void sampler_free(struct sampler *s)
{
    if (!s)
        return;
    free(s->raw);
    free(s->work);
    free(s->cand);
    free(s->count);
    free(s->mark);
    free(s);
}

uint64_t sampler_next_seed(struct sampler *s)
{
    uint64_t x = s->seed_base ^ (s->seed_counter++ * 0xd1b54a32d192ed03ULL);
    return splitmix64(&x);
}

/* ---- logprobs ------------------------------------------------------------------ */

static double log_sum_exp(const float *x, int n)
{
    float m = -INFINITY;
    double sum = 0;
    for (int i = 0; i < n; i++)
        if (x[i] > m)
            m = x[i];
    if (m == -INFINITY)
        return -INFINITY;
    for (int i = 0; i < n; i++)
        sum += expf(x[i] - m);
    return m + log(sum);
}

void sampler_logprob(struct sampler *s, const float *logits, int32_t id, int n_top,
                     struct token_logprob *lp)
{
    int v = s->vocab, rank = 0, n = 0;
    double lse = log_sum_exp(logits, v);
    float x = logits[id];

    if (n_top > v)
        n_top = v;
    if (n_top < 0)
        n_top = 0;
    lp->id = id;
    lp->logprob = (float)((double)x - lse);
    for (int i = 0; i < v; i++)
        rank += logits[i] >= x;
    lp->rank = rank;
    lp->n_top = n_top;
    lp->top_ids = n_top ? xmalloc((size_t)n_top * sizeof(int32_t)) : NULL;
    lp->top_logprobs = n_top ? xmalloc((size_t)n_top * sizeof(float)) : NULL;
    /* Insertion into a short sorted list: most candidates fail the first
     * compare. Equal values keep the lower id first. */
    for (int i = 0; i < v && n_top; i++) {
        float y = logits[i];
        int j;
        if (n == n_top && !(y > s->cand[n - 1].v))
            continue;
        j = n < n_top ? n++ : n - 1;
        while (j > 0 && s->cand[j - 1].v < y) {
            s->cand[j] = s->cand[j - 1];
            j--;
        }
        s->cand[j].v = y;
        s->cand[j].id = i;
    }
    for (int j = 0; j < n; j++) {
        lp->top_ids[j] = s->cand[j].id;
        lp->top_logprobs[j] = (float)((double)s->cand[j].v - lse);
    }
}

void sampler_logprob_clear(struct token_logprob *lp)
{
    free(lp->top_ids);
    free(lp->top_logprobs);
    lp->top_ids = NULL;
    lp->top_logprobs = NULL;
    lp->n_top = 0;
}

/* ---- processing ------------------------------------------------------------------ */

static void apply_min_tokens(float *x, int v, const struct sampler_seq *q)
{
    const struct sampling_params *sp = q->sp;
    if (q->n_output >= sp->min_tokens)
        return;
    if (!sp->ignore_eos)
        for (int i = 0; i < q->n_eos_ids; i++)
            if (q->eos_ids[i] >= 0 && q->eos_ids[i] < v)
                x[q->eos_ids[i]] = -INFINITY;
    for (int i = 0; i < sp->n_stop_token_ids; i++)
        if (sp->stop_token_ids[i] >= 0 && sp->stop_token_ids[i] < v)
            x[sp->stop_token_ids[i]] = -INFINITY;
}

static void repetition_one(struct sampler *s, float *x, int32_t t, float r)
{
    if (t < 0 || t >= s->vocab || s->mark[t])
        return;
    s->mark[t] = 1;
    x[t] = x[t] > 0 ? x[t] / r : x[t] * r;
}

static void apply_penalties(struct sampler *s, float *x, const struct sampler_seq *q)
{
    const struct sampling_params *sp = q->sp;
    int v = s->vocab;

    if (sp->repetition_penalty > 0 && sp->repetition_penalty != 1.0f) {
        for (int i = 0; i < q->n_prompt; i++)
            repetition_one(s, x, q->prompt[i], sp->repetition_penalty);
        for (int i = 0; i < q->n_output; i++)
            repetition_one(s, x, q->output[i], sp->repetition_penalty);
        for (int i = 0; i < q->n_prompt; i++)
            if (q->prompt[i] >= 0 && q->prompt[i] < v)
                s->mark[q->prompt[i]] = 0;
        for (int i = 0; i < q->n_output; i++)
            if (q->output[i] >= 0 && q->output[i] < v)
                s->mark[q->output[i]] = 0;
    }
    if (sp->frequency_penalty != 0 || sp->presence_penalty != 0) {
        for (int i = 0; i < q->n_output; i++)
            if (q->output[i] >= 0 && q->output[i] < v)
                s->count[q->output[i]]++;
        for (int i = 0; i < q->n_output; i++) {
            int32_t t = q->output[i];
            if (t < 0 || t >= v || s->count[t] == 0)
                continue;
            x[t] -= sp->frequency_penalty * (float)s->count[t] + sp->presence_penalty;
            s->count[t] = 0;
        }
    }
}

static int32_t argmax(const float *x, int v)
{
    int32_t best = 0;
    float bv = x[0];
    for (int i = 1; i < v; i++)
        if (x[i] > bv) {
            bv = x[i];
            best = i;
        }
    return best;
}

/* The <k>-th largest (1-based) of w[0..n), reordering w (quickselect). */
static float kth_largest(float *w, int n, int k)
{
    int lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        float a = w[lo], b = w[(lo + hi) / 2], c = w[hi], pivot;
        int i = lo, j = hi;
        /* median of three */
        pivot = a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
        while (i <= j) {
            while (w[i] > pivot)
                i++;
            while (w[j] < pivot)
                j--;
            if (i <= j) {
                float t = w[i];
                w[i] = w[j];
                w[j] = t;
                i++;
                j--;
            }
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            return w[want];
    }
    return w[want];
}

static void apply_top_k(struct sampler *s, float *x, int k)
{
    int v = s->vocab;
    float kth;
    if (k <= 0 || k >= v)
        return;
    memcpy(s->work, x, (size_t)v * sizeof(float));
    kth = kth_largest(s->work, v, k);
    for (int i = 0; i < v; i++)
        if (x[i] < kth)
            x[i] = -INFINITY;
}

static void apply_min_p(float *x, int v, float min_p)
{
    float m = -INFINITY, thr;
    if (min_p <= 0)
        return;
    for (int i = 0; i < v; i++)
        if (x[i] > m)
            m = x[i];
    thr = m + logf(min_p);
    for (int i = 0; i < v; i++)
        if (x[i] < thr)
            x[i] = -INFINITY;
}

static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->v != y->v)
        return x->v > y->v ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Keep the smallest set of most likely tokens whose probability reaches <p>
 * (ties at the cut are all kept), exactly, without sorting the vocabulary:
 * tokens are bucketed by (max - logit); whole buckets are kept until the one
 * where the mass crosses p, and only that bucket is sorted. */
#define TOP_P_BUCKETS 1024
#define TOP_P_SCALE 32.0f       /* buckets per unit of logit */

static void apply_top_p(struct sampler *s, float *x, float p)
{
    int v = s->vocab, n = 0, cut, bk;
    float m = -INFINITY;
    double z = 0, acc = 0, target, mass[TOP_P_BUCKETS] = { 0 };
    if (p >= 1.0f)
        return;
    for (int i = 0; i < v; i++)
        if (x[i] > m)
            m = x[i];
    if (m == -INFINITY)
        return;
    for (int i = 0; i < v; i++) {
        float d = (m - x[i]) * TOP_P_SCALE;
        int k = d < TOP_P_BUCKETS - 1 ? (int)d : TOP_P_BUCKETS - 1;
        double e = expf(x[i] - m);
        s->work[i] = (float)e;
        mass[k] += e;
        z += e;
    }
    target = p * z;
    for (bk = 0; bk < TOP_P_BUCKETS - 1 && acc + mass[bk] < target; bk++)
        acc += mass[bk];
    /* the crossing bucket, sorted; everything above it is kept */
    for (int i = 0; i < v; i++) {
        float d = (m - x[i]) * TOP_P_SCALE;
        int k = d < TOP_P_BUCKETS - 1 ? (int)d : TOP_P_BUCKETS - 1;
        if (k == bk && x[i] > -INFINITY) {
            s->cand[n].v = x[i];
            s->cand[n].id = i;
            n++;
        }
    }
    if (n == 0)
        return;
    qsort(s->cand, (size_t)n, sizeof(*s->cand), cand_cmp);
    for (cut = 0; cut < n - 1; cut++) {
        acc += s->work[s->cand[cut].id];
        if (acc >= target)
            break;
    }
    for (int i = 0; i < v; i++)
        if (x[i] < s->cand[cut].v)
            x[i] = -INFINITY;
}

/* Draw from softmax(x) with one uniform of <rng> (inverse CDF in id order);
 * <e> is scratch for the exponentials. */
static int32_t draw(const float *x, float *e, int v, struct sampler_rng *rng)
{
    float m = -INFINITY;
    double z = 0, u, acc = 0;
    int32_t last = -1;
    for (int i = 0; i < v; i++)
        if (x[i] > m)
            m = x[i];
    if (m == -INFINITY)
        return 0;
    for (int i = 0; i < v; i++) {
        e[i] = x[i] == -INFINITY ? 0.0f : expf(x[i] - m);
        z += e[i];
    }
    u = sampler_rng_uniform(rng) * z;
    for (int i = 0; i < v; i++) {
        if (e[i] == 0)
            continue;
        acc += e[i];
        last = i;
        if (u < acc)
            return i;
    }
    return last;
}

int32_t sampler_sample(struct sampler *s, float *logits, const struct sampler_seq *q,
                       struct token_logprob *lp)
{
    const struct sampling_params *sp = q->sp;
    int v = s->vocab;
    int32_t tok;

    if (lp)
        memcpy(s->raw, logits, (size_t)v * sizeof(float));
    apply_min_tokens(logits, v, q);
    apply_penalties(s, logits, q);
    if (!(sp->temperature >= SAMPLER_GREEDY_EPS)) {
        tok = argmax(logits, v);
    } else {
        if (sp->temperature != 1.0f)
            for (int i = 0; i < v; i++)
                logits[i] /= sp->temperature;
        apply_min_p(logits, v, sp->min_p);
        apply_top_k(s, logits, sp->top_k);
        apply_top_p(s, logits, sp->top_p);
        tok = draw(logits, s->work, v, q->rng);
    }
    if (lp)
        sampler_logprob(s, s->raw, tok, sp->logprobs > 0 ? sp->logprobs : 0, lp);
    return tok;
}
