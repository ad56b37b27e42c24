/*
 * encoder_ops.c -- the encoder worker's ops on the cpu (issue 7): layer_norm
 * (torch LayerNorm: mean, biased variance, affine; by row), act (exact-erf
 * gelu, tanh, relu; by row) and seq_attention (bidirectional attention within
 * each sequence of a packed batch; by (token, kv head)). f32 math, reductions
 * in double for the norm; shapes were checked by kn_*, seq_start is checked here.
 */
#include "kn_cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

/* ---- layer_norm and act, by row ------------------------------------------------ */

struct enc_job {
    struct rows y, x;
    const float *w, *b;         /* layer_norm weight and bias (D,) in f32 */
    float eps;
    int act;
    struct kn_pool *pool;
};

static void layer_norm_chunk(void *arg, int tid, int64_t r0, int64_t r1)
{
    struct enc_job *j = arg;
    int64_t D = j->x.cols;
    float *a = kn_pool_scratch(j->pool, tid, (size_t)D + 1);
    for (int64_t r = r0; r < r1; r++) {
        kn_row_load(a, row_at(&j->x, r), j->x.dt, D);
        double s = 0.0, ss = 0.0;
        for (int64_t i = 0; i < D; i++)
            s += a[i];
        float mean = (float)(s / (double)D);
        for (int64_t i = 0; i < D; i++) {
            a[i] -= mean;
            ss += (double)a[i] * a[i];
        }
        float inv = (float)(1.0 / sqrt(ss / (double)D + j->eps));
        for (int64_t i = 0; i < D; i++)
            a[i] = a[i] * inv * j->w[i] + (j->b ? j->b[i] : 0.0f);
        kn_row_store(row_at(&j->y, r), a, j->y.dt, D);
    }
}

static void act_chunk(void *arg, int tid, int64_t r0, int64_t r1)
{
    struct enc_job *j = arg;
    int64_t C = j->x.cols;
    float *a = kn_pool_scratch(j->pool, tid, (size_t)C + 1);
    for (int64_t r = r0; r < r1; r++) {
        kn_row_load(a, row_at(&j->x, r), j->x.dt, C);
        switch (j->act) {
        case KN_ACT_GELU_ERF:
            for (int64_t i = 0; i < C; i++)
                a[i] = 0.5f * a[i] * (1.0f + erff(a[i] * 0.70710678118654752f));
            break;
        case KN_ACT_TANH:
            for (int64_t i = 0; i < C; i++)
                a[i] = tanhf(a[i]);
            break;
        default:
            for (int64_t i = 0; i < C; i++)
                a[i] = a[i] > 0.0f ? a[i] : 0.0f;
            break;
        }
        kn_row_store(row_at(&j->y, r), a, j->y.dt, C);
    }
}

static void run(struct kn_backend *be, kn_pool_fn fn, struct enc_job *j, int64_t n, int64_t cost)
{
    int nth = cpu_nth(be, n, cost);
    j->pool = cpu_pool(be);
    kn_pool_for(j->pool, fn, j, n, kn_grain(n, nth), nth);
}

int kn_cpu_layer_norm(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                      const struct kn_tensor *w, const struct kn_tensor *b, float eps)
{
    struct enc_job j = { .y = rows_of(y), .x = rows_of(x), .eps = eps };
    int64_t D = j.x.cols;
    float *wb = xmalloc((size_t)(2 * D + 1) * sizeof(float));
    kn_row_load(wb, w->data, w->dtype, D);
    if (b)
        kn_row_load(wb + D, b->data, b->dtype, D);
    j.w = wb;
    j.b = b ? wb + D : NULL;
    run(be, layer_norm_chunk, &j, j.x.n, 3 * D);
    free(wb);
    return 0;
}

int kn_cpu_act(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x, int act)
{
    struct enc_job j = { .y = rows_of(y), .x = rows_of(x), .act = act };
    run(be, act_chunk, &j, j.x.n, 8 * j.x.cols);
    return 0;
}

/* ---- seq_attention ------------------------------------------------------------- */

struct sa_job {
    struct kn_tensor *out;
    const struct kn_tensor *q, *k, *v;
    const int32_t *start;
    int32_t *seq_of;            /* sequence of each token */
    int64_t T, H, Hk, G, D, Lmax;
    float scale;
    struct kn_pool *pool;
};

static inline char *at3(const struct kn_tensor *t, int64_t a, int64_t b)
{
    return (char *)t->data + (size_t)(a * t->stride[0] + b * t->stride[1]) * kn_dtype_size(t->dtype);
}

/* Item i = (token t, kv head g): the G query heads of t sharing g. Scratch:
 * q (D), acc (D), scores (L). */
static void sa_chunk(void *arg, int tid, int64_t i0, int64_t i1)
{
    struct sa_job *j = arg;
    int64_t D = j->D;
    float *qf = kn_pool_scratch(j->pool, tid, (size_t)(2 * D + j->Lmax + 1));
    float *acc = qf + D, *sc = acc + D;
    for (int64_t it = i0; it < i1; it++) {
        int64_t t = it / j->Hk, g = it % j->Hk, s = j->seq_of[t];
        int64_t u0 = j->start[s], L = j->start[s + 1] - u0;
        for (int64_t h = g * j->G; h < (g + 1) * j->G; h++) {
            kn_row_load(qf, at3(j->q, t, h), j->q->dtype, D);
            float mx = -INFINITY;
            for (int64_t u = 0; u < L; u++) {
                sc[u] = kn_cpu_dot(qf, at3(j->k, u0 + u, g), j->k->dtype, D) * j->scale;
                mx = sc[u] > mx ? sc[u] : mx;
            }
            double sum = 0.0;
            for (int64_t u = 0; u < L; u++) {
                sc[u] = expf(sc[u] - mx);
                sum += sc[u];
            }
            float inv = (float)(1.0 / sum);
            memset(acc, 0, (size_t)D * sizeof(float));
            for (int64_t u = 0; u < L; u++)
                kn_cpu_axpy(acc, sc[u] * inv, at3(j->v, u0 + u, g), j->v->dtype, D);
            kn_row_store(at3(j->out, t, h), acc, j->out->dtype, D);
        }
    }
}

int kn_cpu_seq_attention(struct kn_backend *be, struct kn_tensor *out, const struct kn_tensor *q,
                         const struct kn_tensor *k, const struct kn_tensor *v,
                         const struct kn_tensor *seq_start, float scale)
{
    const int32_t *st = seq_start->data;
    int64_t n = seq_start->shape[0] - 1, T = q->shape[0], Lmax = 0;
    if (st[0] != 0 || st[n] != T) {
        log_error("seq_attention: seq_start runs %d..%d, not 0..%lld", st[0], st[n], (long long)T);
        return -1;
    }
    for (int64_t s = 0; s < n; s++) {
        if (st[s + 1] < st[s]) {
            log_error("seq_attention: seq_start decreases at %lld", (long long)s);
            return -1;
        }
        if (st[s + 1] - st[s] > Lmax)
            Lmax = st[s + 1] - st[s];
    }
    if (T == 0)
        return 0;
    struct sa_job j = { .out = out, .q = q, .k = k, .v = v, .start = st, .T = T,
                        .H = q->shape[1], .Hk = k->shape[1], .D = q->shape[2], .Lmax = Lmax,
                        .scale = scale, .pool = cpu_pool(be) };
    j.G = j.H / j.Hk;
    j.seq_of = xmalloc((size_t)T * sizeof(int32_t));
    for (int64_t s = 0; s < n; s++)
        for (int64_t t = st[s]; t < st[s + 1]; t++)
            j.seq_of[t] = (int32_t)s;
    int64_t items = T * j.Hk;
    int nth = cpu_nth(be, items, 4 * Lmax * j.G * j.D);
    kn_pool_for(j.pool, sa_chunk, &j, items, kn_grain(items, nth), nth);
    free(j.seq_of);
    return 0;
}
