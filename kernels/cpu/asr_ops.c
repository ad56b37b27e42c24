/*
 * asr_ops.c -- the speech worker's ops on the cpu (issue 8): seq_dwconv, the
 * depthwise 1-D convolution along each sequence of a packed batch that SAN-M's
 * FSMN memory block is (zero padding at the ends of every sequence; split by
 * token), and row_argmax (argmax and logsumexp per row: greedy CTC; split by
 * row). f32 math; shapes were checked by kn_*, seq_start is checked here.
 */
#include "kn_cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

struct dw_job {
    struct rows y, x;
    const float *wt;            /* (K, C) f32: the weight transposed */
    const int32_t *start;
    const int32_t *seq_of;      /* sequence of each token */
    int64_t K, left;
    int add_x;
    struct kn_pool *pool;
};

/* Tokens [t0, t1): scratch acc (C) and one input row (C). */
static void dw_chunk(void *arg, int tid, int64_t t0, int64_t t1)
{
    struct dw_job *j = arg;
    int64_t C = j->x.cols;
    float *acc = kn_pool_scratch(j->pool, tid, (size_t)(2 * C + 1)), *in = acc + C;
    for (int64_t t = t0; t < t1; t++) {
        int64_t s = j->seq_of[t], lo = j->start[s], hi = j->start[s + 1];
        if (j->add_x)
            kn_row_load(acc, row_at(&j->x, t), j->x.dt, C);
        else
            memset(acc, 0, (size_t)C * sizeof(float));
        for (int64_t k = 0; k < j->K; k++) {
            int64_t r = t + k - j->left;
            if (r < lo || r >= hi)
                continue;
            const float *w = j->wt + k * C;
            kn_row_load(in, row_at(&j->x, r), j->x.dt, C);
            for (int64_t c = 0; c < C; c++)
                acc[c] += w[c] * in[c];
        }
        kn_row_store(row_at(&j->y, t), acc, j->y.dt, C);
    }
}

int kn_cpu_seq_dwconv(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                      const struct kn_tensor *w, const struct kn_tensor *seq_start, int left,
                      int add_x)
{
    const int32_t *st = seq_start->data;
    struct dw_job j = { .y = rows_of(y), .x = rows_of(x), .start = st, .K = w->shape[1],
                        .left = left, .add_x = add_x, .pool = cpu_pool(be) };
    int64_t n = seq_start->shape[0] - 1, T = j.x.n, C = j.x.cols;
    if (st[0] != 0 || st[n] != T) {
        log_error("seq_dwconv: seq_start runs %d..%d, not 0..%lld", st[0], st[n], (long long)T);
        return -1;
    }
    for (int64_t s = 0; s < n; s++)
        if (st[s + 1] < st[s]) {
            log_error("seq_dwconv: seq_start decreases at %lld", (long long)s);
            return -1;
        }
    if (T == 0)
        return 0;
    float *wt = xmalloc((size_t)(C * j.K + 1) * sizeof(float));
    float *wrow = xmalloc((size_t)(j.K + 1) * sizeof(float));
    for (int64_t c = 0; c < C; c++) {
        kn_row_load(wrow, (const char *)w->data + (size_t)(c * j.K) * kn_dtype_size(w->dtype),
                    w->dtype, j.K);
        for (int64_t k = 0; k < j.K; k++)
            wt[k * C + c] = wrow[k];
    }
    int32_t *seq_of = xmalloc((size_t)T * sizeof(int32_t));
    for (int64_t s = 0; s < n; s++)
        for (int64_t t = st[s]; t < st[s + 1]; t++)
            seq_of[t] = (int32_t)s;
    j.wt = wt;
    j.seq_of = seq_of;
    int nth = cpu_nth(be, T, 2 * j.K * C);
    kn_pool_for(j.pool, dw_chunk, &j, T, kn_grain(T, nth), nth);
    free(seq_of);
    free(wrow);
    free(wt);
    return 0;
}

/* ---- row_argmax ------------------------------------------------------------------- */

struct am_job {
    struct rows x;
    int32_t *ids;
    float *lse;
    struct kn_pool *pool;
};

static void am_chunk(void *arg, int tid, int64_t r0, int64_t r1)
{
    struct am_job *j = arg;
    int64_t V = j->x.cols;
    float *a = kn_pool_scratch(j->pool, tid, (size_t)V + 1);
    for (int64_t r = r0; r < r1; r++) {
        kn_row_load(a, row_at(&j->x, r), j->x.dt, V);
        int64_t best = 0;
        for (int64_t v = 1; v < V; v++)
            if (a[v] > a[best])
                best = v;
        j->ids[r] = (int32_t)best;
        if (j->lse) {
            double s = 0.0;
            float mx = a[best];
            for (int64_t v = 0; v < V; v++)
                s += expf(a[v] - mx);
            j->lse[r] = mx + (float)log(s);
        }
    }
}

int kn_cpu_row_argmax(struct kn_backend *be, struct kn_tensor *ids, struct kn_tensor *lse,
                      const struct kn_tensor *x)
{
    struct am_job j = { .x = rows_of(x), .ids = ids->data, .lse = lse ? lse->data : NULL,
                        .pool = cpu_pool(be) };
    if (j.x.n == 0)
        return 0;
    int nth = cpu_nth(be, j.x.n, 2 * j.x.cols);
    kn_pool_for(j.pool, am_chunk, &j, j.x.n, kn_grain(j.x.n, nth), nth);
    return 0;
}
