/*
 * route.c -- row gathers and MoE routing on the cpu: gather_rows (threaded by
 * output row), scatter_add_rows (threaded by column range so that the adds
 * into each y row stay in index order: deterministic with repeats) and
 * moe_route (softmax, top k, optional renormalization; by token).
 */
#include "kn_cpu.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "log.h"

struct route_job {
    struct rows y, x;
    const int32_t *idx;
    const float *w;             /* scatter weights or NULL */
    int32_t *ids;               /* moe_route */
    float *wout;
    int k, norm;
    int64_t n;                  /* rows (gather, route) or columns (scatter) */
    struct kn_pool *pool;
    _Atomic int64_t bad;
};

/* ---- gather_rows ---------------------------------------------------------------- */

static void gather_chunk(void *arg, int tid, int64_t lo, int64_t hi)
{
    struct route_job *j = arg;
    int64_t D = j->y.cols, bad = 0;
    float *a = kn_pool_scratch(j->pool, tid, (size_t)D + 1);
    for (int64_t i = lo; i < hi; i++) {
        int64_t r = j->idx[i];
        if (r < 0 || r >= j->x.n) {
            memset(a, 0, (size_t)D * sizeof(float));
            bad++;
        } else if (j->x.dt == j->y.dt) {
            memcpy(row_at(&j->y, i), row_at(&j->x, r), (size_t)D * j->y.esz);
            continue;
        } else {
            kn_row_load(a, row_at(&j->x, r), j->x.dt, D);
        }
        kn_row_store(row_at(&j->y, i), a, j->y.dt, D);
    }
    atomic_fetch_add(&j->bad, bad);
}

int kn_cpu_gather_rows(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                       const struct kn_tensor *idx)
{
    struct route_job j = { .y = rows_of(y), .x = rows_of(x), .idx = idx->data, .pool = cpu_pool(be) };
    j.n = j.y.n;
    int nth = cpu_nth(be, j.n, j.y.cols);
    kn_pool_for(j.pool, gather_chunk, &j, j.n, kn_grain(j.n, nth), nth);
    int64_t bad = atomic_load(&j.bad);
    if (bad) {
        log_error("gather_rows: %lld indices outside the %lld rows of x; zeroed", (long long)bad,
                  (long long)j.x.n);
        return -1;
    }
    return 0;
}

/* ---- scatter_add_rows ------------------------------------------------------------- */

/* columns [16 u0, 16 u1) of y[idx[i]] += w[i] * x[i], i in order; 16-column
 * units share no cache line of f32 rows; the last unit runs to the end */
static void scatter_chunk(void *arg, int tid, int64_t u0, int64_t u1)
{
    struct route_job *j = arg;
    int64_t bad = 0, n = j->x.n, c0 = 16 * u0, c1 = u1 == (j->n + 15) / 16 ? j->n : 16 * u1;
    int64_t C = c1 - c0;
    float *a = kn_pool_scratch(j->pool, tid, 2 * (size_t)C), *b = a + C;
    for (int64_t i = 0; i < n; i++) {
        int64_t r = j->idx[i];
        if (r < 0 || r >= j->y.n) {
            bad++;
            continue;
        }
        float wi = j->w ? j->w[i] : 1.0f;
        char *yr = (char *)row_at(&j->y, r) + (size_t)c0 * j->y.esz;
        kn_row_load(a, (char *)row_at(&j->x, i) + (size_t)c0 * j->x.esz, j->x.dt, C);
        kn_row_load(b, yr, j->y.dt, C);
        for (int64_t c = 0; c < C; c++)
            b[c] += wi * a[c];
        kn_row_store(yr, b, j->y.dt, C);
    }
    if (u0 == 0)                                /* every chunk sees the same indices */
        atomic_fetch_add(&j->bad, bad);
}

int kn_cpu_scatter_add_rows(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                            const struct kn_tensor *idx, const struct kn_tensor *w)
{
    struct route_job j = { .y = rows_of(y), .x = rows_of(x), .idx = idx->data,
                           .w = w ? w->data : NULL, .pool = cpu_pool(be) };
    j.n = j.y.cols;
    int64_t units = (j.n + 15) / 16;
    int nth = cpu_nth(be, units, 16 * j.x.n);
    kn_pool_for(j.pool, scatter_chunk, &j, units, kn_grain(units, nth), nth);
    int64_t bad = atomic_load(&j.bad);
    if (bad) {
        log_error("scatter_add_rows: %lld indices outside the %lld rows of y; skipped",
                  (long long)bad, (long long)j.y.n);
        return -1;
    }
    return 0;
}

/* ---- moe_route ------------------------------------------------------------------ */

/* logits (T,E) row t -> ids (k,), weights (k,): top k of softmax, ties to the
 * lower expert id, most likely first; renormalized when j->norm */
static void route_token(struct route_job *j, int64_t t, float *p)
{
    int64_t E = j->x.cols;
    int32_t *ids = j->ids + t * j->k;
    float *wt = j->wout + t * j->k;
    kn_row_load(p, row_at(&j->x, t), j->x.dt, E);
    float mx = -INFINITY, sum = 0.0f, top = 0.0f;
    for (int64_t e = 0; e < E; e++)
        mx = p[e] > mx ? p[e] : mx;
    for (int64_t e = 0; e < E; e++) {
        p[e] = expf(p[e] - mx);
        sum += p[e];
    }
    for (int64_t e = 0; e < E; e++)
        p[e] /= sum;
    for (int i = 0; i < j->k; i++) {            /* k passes of argmax; taken ones are -1 */
        int64_t best = -1;
        for (int64_t e = 0; e < E; e++)
            if (p[e] >= 0.0f && (best < 0 || p[e] > p[best]))
                best = e;
        for (int64_t e = 0; best < 0 && e < E; e++)     /* NaN logits: first untaken */
            if (p[e] != -1.0f)
                best = e;
        ids[i] = (int32_t)best;
        wt[i] = p[best];
        top += p[best];
        p[best] = -1.0f;
    }
    if (j->norm)
        for (int i = 0; i < j->k; i++)
            wt[i] /= top;
}

static void route_chunk(void *arg, int tid, int64_t lo, int64_t hi)
{
    struct route_job *j = arg;
    float *p = kn_pool_scratch(j->pool, tid, (size_t)j->x.cols + 1);
    for (int64_t t = lo; t < hi; t++)
        route_token(j, t, p);
}

int kn_cpu_moe_route(struct kn_backend *be, struct kn_tensor *ids, struct kn_tensor *weights,
                     const struct kn_tensor *logits, int k, int norm)
{
    struct route_job j = { .x = rows_of(logits), .ids = ids->data, .wout = weights->data,
                           .k = k, .norm = norm, .pool = cpu_pool(be) };
    j.n = j.x.n;
    int nth = cpu_nth(be, j.n, j.x.cols * (k + 2));
    kn_pool_for(j.pool, route_chunk, &j, j.n, kn_grain(j.n, nth), nth);
    return 0;
}
