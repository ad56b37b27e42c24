/*
 * kn_cpu.c -- the cpu backend: its vtable, context (thread pool) and the row
 * ops (rms_norm, rope, silu_mul, softmax, embed, add, convert). Each op is
 * <op>_rows() over a range of independent rows; run_rows() splits the rows
 * across the pool's threads, so no kernel knows about threads. Rows of any
 * float dtype are widened to f32 scratch, computed in f32 (reductions in
 * double) and rounded once on store. matmul, the paged KV cache ops and the
 * gathers live in their own files; SIMD loops in simd.c.
 */
#include "kn_cpu.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

/* ---- rows split across threads --------------------------------------------- */

/* One row op: operands, constants and the range function the threads run. */
struct row_job {
    void (*range)(struct row_job *j, float *a, int64_t r0, int64_t r1);
    int64_t n;                  /* rows */
    size_t scratch;             /* floats of scratch per thread */
    struct kn_pool *pool;
    struct rows y, x, b, res;   /* y, first and second operands, residual */
    int has_res, bcast;
    const float *wf;            /* rms_norm weight (D,) in f32 */
    const float *cs;            /* rope table (P, n_rot) */
    const int32_t *idx;         /* rope positions, embed ids */
    const struct kn_tensor *xt; /* rope's x (T,H,D) */
    int64_t P, n_rot, T;        /* rope table rows and width; softmax queries */
    float f;                    /* eps, scale */
    _Atomic int64_t bad;        /* rows with an index out of range */
};

static void row_chunk(void *arg, int tid, int64_t r0, int64_t r1)
{
    struct row_job *j = arg;
    j->range(j, kn_pool_scratch(j->pool, tid, j->scratch), r0, r1);
}

/* Run j->range over rows [0, j->n) of <cost> elements each; returns j->bad. */
static int64_t run_rows(struct kn_backend *be, struct row_job *j, int64_t cost)
{
    int nth = cpu_nth(be, j->n, cost);
    j->pool = cpu_pool(be);
    kn_pool_for(j->pool, row_chunk, j, j->n, kn_grain(j->n, nth), nth);
    return atomic_load(&j->bad);
}

/* ---- reference ops ------------------------------------------------------------ */

/* x (R,D) [+ res] -> y (R,D) = xr / sqrt(mean(xr^2) + eps) * wf, rows [r0,r1) */
static void rms_norm_rows(struct row_job *j, float *a, int64_t r0, int64_t r1)
{
    int64_t D = j->x.cols;
    for (int64_t r = r0; r < r1; r++) {
        kn_row_load(a, row_at(&j->x, r), j->x.dt, D);
        if (j->has_res) {
            float *b = a + D;
            kn_row_load(b, row_at(&j->res, r), j->res.dt, D);
            for (int64_t i = 0; i < D; i++)
                b[i] += a[i];
            kn_row_store(row_at(&j->res, r), b, j->res.dt, D);
            kn_row_load(a, row_at(&j->res, r), j->res.dt, D);   /* norm of the stored sum */
        }
        double ss = 0.0;
        for (int64_t i = 0; i < D; i++)
            ss += (double)a[i] * a[i];
        float inv = (float)(1.0 / sqrt(ss / (double)D + j->f));
        for (int64_t i = 0; i < D; i++)
            a[i] = a[i] * inv * j->wf[i];
        kn_row_store(row_at(&j->y, r), a, j->y.dt, D);
    }
}

/* x (T,H,D) in place, tokens [t0,t1): for i < h = n_rot/2,
 * (x_i, x_{i+h}) <- (x_i c - x_{i+h} s, x_i s + x_{i+h} c), c,s at pos[t].
 * A position outside the table leaves the token unchanged and counts as bad. */
static void rope_rows(struct row_job *j, float *a, int64_t t0, int64_t t1)
{
    const struct kn_tensor *x = j->xt;
    int64_t H = x->shape[1], n_rot = j->n_rot, half = n_rot / 2, bad = 0;
    size_t esz = kn_dtype_size(x->dtype);
    for (int64_t t = t0; t < t1; t++) {
        if (j->idx[t] < 0 || j->idx[t] >= j->P) {
            bad++;
            continue;
        }
        const float *c = j->cs + j->idx[t] * n_rot, *s = c + half;
        for (int64_t h = 0; h < H; h++) {
            char *p = (char *)x->data + (size_t)(t * x->stride[0] + h * x->stride[1]) * esz;
            kn_row_load(a, p, x->dtype, n_rot);
            for (int64_t i = 0; i < half; i++) {
                float x0 = a[i], x1 = a[i + half];
                a[i] = x0 * c[i] - x1 * s[i];
                a[i + half] = x0 * s[i] + x1 * c[i];
            }
            kn_row_store(p, a, x->dtype, n_rot);
        }
    }
    atomic_fetch_add(&j->bad, bad);
}

/* gate (R,C), up (R,C) -> y (R,C) = gate * sigmoid(gate) * up, rows [r0,r1) */
static void silu_mul_rows(struct row_job *j, float *a, int64_t r0, int64_t r1)
{
    int64_t C = j->y.cols;
    float *b = a + C;
    for (int64_t r = r0; r < r1; r++) {
        kn_row_load(a, row_at(&j->x, r), j->x.dt, C);
        kn_row_load(b, row_at(&j->b, r), j->b.dt, C);
        for (int64_t i = 0; i < C; i++)
            a[i] = a[i] / (1.0f + expf(-a[i])) * b[i];
        kn_row_store(row_at(&j->y, r), a, j->y.dt, C);
    }
}

/* x (R,S) -> y (R,S) = softmax(x*scale) per row, rows [r0,r1); row r is query
 * t = r % T and sees columns < t + S - T + 1 when causal (T = 0: no mask). */
static void softmax_rows(struct row_job *j, float *a, int64_t r0, int64_t r1)
{
    int64_t S = j->x.cols, T = j->T;
    float scale = j->f;
    for (int64_t r = r0; r < r1; r++) {
        int64_t lim = T > 0 ? r % T + S - T + 1 : S;
        lim = lim < 0 ? 0 : lim > S ? S : lim;
        kn_row_load(a, row_at(&j->x, r), j->x.dt, S);
        float mx = -INFINITY;
        for (int64_t c = 0; c < lim; c++) {
            a[c] *= scale;
            mx = a[c] > mx ? a[c] : mx;
        }
        double sum = 0.0;
        for (int64_t c = 0; c < lim; c++) {
            a[c] = expf(a[c] - mx);
            sum += a[c];
        }
        for (int64_t c = 0; c < S; c++)
            a[c] = c < lim ? (float)(a[c] / sum) : 0.0f;
        kn_row_store(row_at(&j->y, r), a, j->y.dt, S);
    }
}

/* table (V,D)[ids] -> y (n,D), rows [r0,r1); a bad id gives a zero row */
static void embed_rows(struct row_job *j, float *a, int64_t r0, int64_t r1)
{
    int64_t D = j->y.cols, bad = 0;
    for (int64_t r = r0; r < r1; r++) {
        if (j->idx[r] < 0 || j->idx[r] >= j->x.n) {
            memset(a, 0, (size_t)D * sizeof(float));
            bad++;
        } else {
            kn_row_load(a, row_at(&j->x, j->idx[r]), j->x.dt, D);
        }
        kn_row_store(row_at(&j->y, r), a, j->y.dt, D);
    }
    atomic_fetch_add(&j->bad, bad);
}

/* a (R,C) + b (R,C) or b (C,) -> y (R,C), rows [r0,r1) */
static void add_rows(struct row_job *j, float *s, int64_t r0, int64_t r1)
{
    int64_t C = j->y.cols;
    float *t = s + C;
    for (int64_t r = r0; r < r1; r++) {
        kn_row_load(s, row_at(&j->x, r), j->x.dt, C);
        kn_row_load(t, row_at(&j->b, j->bcast ? 0 : r), j->b.dt, C);
        for (int64_t i = 0; i < C; i++)
            s[i] += t[i];
        kn_row_store(row_at(&j->y, r), s, j->y.dt, C);
    }
}

/* x (R,C) -> y (R,C) in y's dtype, rows [r0,r1) */
static void convert_rows(struct row_job *j, float *a, int64_t r0, int64_t r1)
{
    for (int64_t r = r0; r < r1; r++) {
        kn_row_load(a, row_at(&j->x, r), j->x.dt, j->x.cols);
        kn_row_store(row_at(&j->y, r), a, j->y.dt, j->x.cols);
    }
}

/* ---- vtable ----------------------------------------------------------------- */

static int cpu_device_count(void) { return 1; }

static int cpu_init(struct kn_backend *be)
{
    struct cpu_ctx *c = xcalloc(1, sizeof(*c));
    c->pool = kn_pool_new(1);
    be->ctx = c;
    return 0;
}

static void cpu_free(struct kn_backend *be)
{
    struct cpu_ctx *c = be->ctx;
    if (c) {
        kn_pool_free(c->pool);
        free(c);
    }
    be->ctx = NULL;
}

static int cpu_set_threads(struct kn_backend *be, int n)
{
    struct cpu_ctx *c = be->ctx;
    if (n <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (int)cores : 1;
    }
    if (n == kn_pool_threads(c->pool))
        return 0;
    kn_pool_free(c->pool);
    c->pool = kn_pool_new(n);
    return 0;
}

static void *cpu_alloc(struct kn_backend *be, size_t nbytes)
{
    void *p = NULL;
    return posix_memalign(&p, 64, nbytes) == 0 ? p : NULL;
}

static void cpu_free_buf(struct kn_backend *be, void *p) { free(p); }

static int cpu_copy(struct kn_backend *be, void *dst, const void *src, size_t nbytes)
{
    memcpy(dst, src, nbytes);
    return 0;
}

static int cpu_sync(struct kn_backend *be) { return 0; }

/* Every float dtype combination and every row layout: the reference must
 * cover whatever another backend supports. */
static int cpu_supports_op(struct kn_backend *be, enum kn_op op, const struct kn_tensor *dst,
                           const struct kn_tensor *const src[KN_MAX_SRC])
{
    return (unsigned)op < KN_OP_COUNT;
}

static int cpu_rms_norm(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                        const struct kn_tensor *w, struct kn_tensor *res, float eps)
{
    struct row_job j = { .range = rms_norm_rows, .y = rows_of(y), .x = rows_of(x), .f = eps };
    float *wf = xmalloc((size_t)(j.x.cols + 1) * sizeof(float));
    kn_row_load(wf, w->data, w->dtype, j.x.cols);
    if (res) {
        j.res = rows_of(res);
        j.has_res = 1;
    }
    j.wf = wf;
    j.n = j.x.n;
    j.scratch = (size_t)(2 * j.x.cols + 1);
    run_rows(be, &j, j.x.cols);
    free(wf);
    return 0;
}

static int cpu_rope(struct kn_backend *be, struct kn_tensor *x, const struct kn_tensor *pos,
                    const struct kn_tensor *cos_sin)
{
    struct row_job j = { .range = rope_rows, .xt = x, .idx = pos->data, .cs = cos_sin->data,
                         .P = cos_sin->shape[0], .n_rot = cos_sin->shape[1], .n = x->shape[0] };
    j.scratch = (size_t)(j.n_rot + 1);
    int64_t bad = run_rows(be, &j, x->shape[1] * j.n_rot);
    if (bad) {
        log_error("rope: %lld positions outside the table of %lld", (long long)bad, (long long)j.P);
        return -1;
    }
    return 0;
}

static int cpu_silu_mul(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *gate,
                        const struct kn_tensor *up)
{
    struct row_job j = { .range = silu_mul_rows, .y = rows_of(y), .x = rows_of(gate), .b = rows_of(up) };
    j.n = j.y.n;
    j.scratch = (size_t)(2 * j.y.cols + 1);
    run_rows(be, &j, j.y.cols);
    return 0;
}

static int cpu_softmax(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                       float scale, int causal)
{
    struct row_job j = { .range = softmax_rows, .y = rows_of(y), .x = rows_of(x), .f = scale,
                         .T = causal ? x->shape[x->ndim - 2] : 0 };
    j.n = j.x.n;
    j.scratch = (size_t)(j.x.cols + 1);
    run_rows(be, &j, j.x.cols);
    return 0;
}

static int cpu_embed(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *table,
                     const struct kn_tensor *ids)
{
    struct row_job j = { .range = embed_rows, .y = rows_of(y), .x = rows_of(table), .idx = ids->data };
    j.n = j.y.n;
    j.scratch = (size_t)(j.y.cols + 1);
    int64_t bad = run_rows(be, &j, j.y.cols);
    if (bad) {
        log_error("embed: %lld ids outside the vocabulary of %lld", (long long)bad,
                  (long long)j.x.n);
        return -1;
    }
    return 0;
}

static int cpu_add(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *a,
                   const struct kn_tensor *b)
{
    struct row_job j = { .range = add_rows, .y = rows_of(y), .x = rows_of(a) };
    j.bcast = kn_tensor_nelem(b) == j.x.cols && j.x.n != 1;
    if (j.bcast) {
        j.b = j.x;
        j.b.data = b->data;
        j.b.dt = b->dtype;
        j.b.esz = kn_dtype_size(b->dtype);
    } else {
        j.b = rows_of(b);
    }
    j.n = j.y.n;
    j.scratch = (size_t)(2 * j.y.cols + 1);
    run_rows(be, &j, j.y.cols);
    return 0;
}

static int cpu_convert(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x)
{
    struct row_job j = { .range = convert_rows, .y = rows_of(y), .x = rows_of(x) };
    j.n = j.x.n;
    j.scratch = (size_t)(j.x.cols + 1);
    run_rows(be, &j, j.x.cols);
    return 0;
}

const struct kn_backend_ops kn_cpu_ops = {
    .name = "cpu",
    .device_count = cpu_device_count,
    .init = cpu_init,
    .free = cpu_free,
    .alloc = cpu_alloc,
    .free_buf = cpu_free_buf,
    .upload = cpu_copy,
    .download = cpu_copy,
    .sync = cpu_sync,
    .supports_op = cpu_supports_op,
    .matmul = kn_cpu_matmul,
    .rms_norm = cpu_rms_norm,
    .rope = cpu_rope,
    .silu_mul = cpu_silu_mul,
    .softmax = cpu_softmax,
    .embed = cpu_embed,
    .add = cpu_add,
    .convert = cpu_convert,
    .set_threads = cpu_set_threads,
    .kv_store = kn_cpu_kv_store,
    .paged_attention = kn_cpu_paged_attention,
    .gather_rows = kn_cpu_gather_rows,
    .scatter_add_rows = kn_cpu_scatter_add_rows,
    .moe_route = kn_cpu_moe_route,
    .layer_norm = kn_cpu_layer_norm,
    .act = kn_cpu_act,
    .seq_attention = kn_cpu_seq_attention,
    .seq_dwconv = kn_cpu_seq_dwconv,
    .row_argmax = kn_cpu_row_argmax,
};
