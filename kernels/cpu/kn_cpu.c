/*
 * kn_cpu.c -- the cpu backend: the clean, minimal reference every CUDA kernel
 * is checked against. Plain single-threaded loops with shape comments; each
 * op is <op>_ref() over a range of independent rows, so that splitting the
 * range across threads later changes no kernel. Rows of any float dtype are
 * widened to f32 scratch, computed in f32 (reductions in double) and rounded
 * once on store. No SIMD intrinsics, no threads, no global state.
 */
#include "kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

/* ---- rows of any dtype ----------------------------------------------------- */

/* A tensor as a matrix: row r starts at data + r*ld elements. */
struct rows {
    char *data;
    enum kn_dtype dt;
    int64_t n, cols, ld;
    size_t esz;
};

static struct rows rows_of(const struct kn_tensor *t)
{
    struct rows m;
    kn_tensor_rows(t, &m.n, &m.cols, &m.ld);    /* validated by the kn_* entry */
    m.data = t->data;
    m.dt = t->dtype;
    m.esz = kn_dtype_size(t->dtype);
    return m;
}

static void *row_at(const struct rows *m, int64_t r)
{
    return m->data + (size_t)(r * m->ld) * m->esz;
}

/* src (n,) of dtype <dt> -> dst (n,) f32 */
static void row_load(float *dst, const void *src, enum kn_dtype dt, int64_t n)
{
    const uint16_t *h = src;
    switch (dt) {
    case KN_BF16: for (int64_t i = 0; i < n; i++) dst[i] = kn_bf16_to_f32(h[i]); break;
    case KN_F16:  for (int64_t i = 0; i < n; i++) dst[i] = kn_f16_to_f32(h[i]); break;
    default:      memcpy(dst, src, (size_t)n * sizeof(float)); break;
    }
}

/* src (n,) f32 -> dst (n,) of dtype <dt>, round to nearest even */
static void row_store(void *dst, const float *src, enum kn_dtype dt, int64_t n)
{
    uint16_t *h = dst;
    switch (dt) {
    case KN_BF16: for (int64_t i = 0; i < n; i++) h[i] = kn_f32_to_bf16(src[i]); break;
    case KN_F16:  for (int64_t i = 0; i < n; i++) h[i] = kn_f32_to_f16(src[i]); break;
    default:      memmove(dst, src, (size_t)n * sizeof(float)); break;
    }
}

/* ---- reference ops ------------------------------------------------------------ */

/* x (K,) . w (K,); eight partial sums give the compiler independent chains */
static float dot_f32(const float *x, const float *w, int64_t K)
{
    float s[8] = { 0 };
    int64_t k = 0;
    for (; k + 8 <= K; k += 8)
        for (int j = 0; j < 8; j++)
            s[j] += x[k + j] * w[k + j];
    for (; k < K; k++)
        s[0] += x[k] * w[k];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

static float dot_bf16(const float *x, const uint16_t *w, int64_t K)
{
    float s[8] = { 0 };
    int64_t k = 0;
    for (; k + 8 <= K; k += 8)
        for (int j = 0; j < 8; j++)
            s[j] += x[k + j] * kn_bf16_to_f32(w[k + j]);
    for (; k < K; k++)
        s[0] += x[k] * kn_bf16_to_f32(w[k]);
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* W (N,K) @ xf (M,K) -> y (M,N), for W rows [n0,n1). <xf> is x widened to f32
 * with row stride <ldx>; <wrow> is K floats of scratch for f16 weights. */
static void matmul_ref(const struct rows *y, const float *xf, int64_t ldx, const struct rows *w,
                       float *wrow, int64_t n0, int64_t n1)
{
    int64_t M = y->n, K = w->cols;
    for (int64_t n = n0; n < n1; n++) {
        const void *wn = row_at(w, n);
        if (w->dt == KN_F16)
            row_load(wrow, wn, KN_F16, K);
        for (int64_t m = 0; m < M; m++) {
            const float *xm = xf + m * ldx;
            float v = w->dt == KN_BF16 ? dot_bf16(xm, wn, K)
                    : dot_f32(xm, w->dt == KN_F16 ? wrow : wn, K);
            row_store((char *)row_at(y, m) + (size_t)n * y->esz, &v, y->dt, 1);
        }
    }
}

/* x (R,D) [+ res] -> y (R,D) = xr / sqrt(mean(xr^2) + eps) * wf, rows [r0,r1) */
static void rms_norm_ref(const struct rows *y, const struct rows *x, const float *wf,
                         const struct rows *res, float eps, float *a, int64_t r0, int64_t r1)
{
    int64_t D = x->cols;
    for (int64_t r = r0; r < r1; r++) {
        row_load(a, row_at(x, r), x->dt, D);
        if (res) {
            float *b = a + D;
            row_load(b, row_at(res, r), res->dt, D);
            for (int64_t i = 0; i < D; i++)
                b[i] += a[i];
            row_store(row_at(res, r), b, res->dt, D);
            row_load(a, row_at(res, r), res->dt, D);    /* norm of the stored sum */
        }
        double ss = 0.0;
        for (int64_t i = 0; i < D; i++)
            ss += (double)a[i] * a[i];
        float inv = (float)(1.0 / sqrt(ss / (double)D + eps));
        for (int64_t i = 0; i < D; i++)
            a[i] = a[i] * inv * wf[i];
        row_store(row_at(y, r), a, y->dt, D);
    }
}

/* x (T,H,D) in place, tokens [t0,t1): for i < h = n_rot/2,
 * (x_i, x_{i+h}) <- (x_i c - x_{i+h} s, x_i s + x_{i+h} c), c,s at pos[t].
 * Returns how many tokens had a position outside the table. */
static int64_t rope_ref(const struct kn_tensor *x, const int32_t *pos, const float *cs,
                        int64_t P, int64_t n_rot, float *a, int64_t t0, int64_t t1)
{
    int64_t H = x->shape[1], half = n_rot / 2, bad = 0;
    size_t esz = kn_dtype_size(x->dtype);
    for (int64_t t = t0; t < t1; t++) {
        if (pos[t] < 0 || pos[t] >= P) {
            bad++;
            continue;
        }
        const float *c = cs + pos[t] * n_rot, *s = c + half;
        for (int64_t h = 0; h < H; h++) {
            char *p = (char *)x->data + (size_t)(t * x->stride[0] + h * x->stride[1]) * esz;
            row_load(a, p, x->dtype, n_rot);
            for (int64_t i = 0; i < half; i++) {
                float x0 = a[i], x1 = a[i + half];
                a[i] = x0 * c[i] - x1 * s[i];
                a[i + half] = x0 * s[i] + x1 * c[i];
            }
            row_store(p, a, x->dtype, n_rot);
        }
    }
    return bad;
}

/* gate (R,C), up (R,C) -> y (R,C) = gate * sigmoid(gate) * up, rows [r0,r1) */
static void silu_mul_ref(const struct rows *y, const struct rows *g, const struct rows *u,
                         float *a, int64_t r0, int64_t r1)
{
    int64_t C = y->cols;
    float *b = a + C;
    for (int64_t r = r0; r < r1; r++) {
        row_load(a, row_at(g, r), g->dt, C);
        row_load(b, row_at(u, r), u->dt, C);
        for (int64_t i = 0; i < C; i++)
            a[i] = a[i] / (1.0f + expf(-a[i])) * b[i];
        row_store(row_at(y, r), a, y->dt, C);
    }
}

/* x (R,S) -> y (R,S) = softmax(x*scale) per row, rows [r0,r1); row r is query
 * t = r % T and sees columns < t + S - T + 1 when causal (T = 0: no mask). */
static void softmax_ref(const struct rows *y, const struct rows *x, float scale, int64_t T,
                        float *a, int64_t r0, int64_t r1)
{
    int64_t S = x->cols;
    for (int64_t r = r0; r < r1; r++) {
        int64_t lim = T > 0 ? r % T + S - T + 1 : S;
        lim = lim < 0 ? 0 : lim > S ? S : lim;
        row_load(a, row_at(x, r), x->dt, S);
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
        row_store(row_at(y, r), a, y->dt, S);
    }
}

/* table (V,D)[ids] -> y (n,D), rows [r0,r1); returns the count of bad ids */
static int64_t embed_ref(const struct rows *y, const struct rows *tab, const int32_t *ids,
                         float *a, int64_t r0, int64_t r1)
{
    int64_t D = y->cols, bad = 0;
    for (int64_t r = r0; r < r1; r++) {
        if (ids[r] < 0 || ids[r] >= tab->n) {
            memset(a, 0, (size_t)D * sizeof(float));
            bad++;
        } else {
            row_load(a, row_at(tab, ids[r]), tab->dt, D);
        }
        row_store(row_at(y, r), a, y->dt, D);
    }
    return bad;
}

/* a (R,C) + b (R,C) or b (C,) -> y (R,C), rows [r0,r1) */
static void add_ref(const struct rows *y, const struct rows *a, const struct rows *b,
                    int bcast, float *s, int64_t r0, int64_t r1)
{
    int64_t C = y->cols;
    float *t = s + C;
    for (int64_t r = r0; r < r1; r++) {
        row_load(s, row_at(a, r), a->dt, C);
        row_load(t, row_at(b, bcast ? 0 : r), b->dt, C);
        for (int64_t i = 0; i < C; i++)
            s[i] += t[i];
        row_store(row_at(y, r), s, y->dt, C);
    }
}

/* x (R,C) -> y (R,C) in y's dtype, rows [r0,r1) */
static void convert_ref(const struct rows *y, const struct rows *x, float *a, int64_t r0, int64_t r1)
{
    for (int64_t r = r0; r < r1; r++) {
        row_load(a, row_at(x, r), x->dt, x->cols);
        row_store(row_at(y, r), a, y->dt, x->cols);
    }
}

/* ---- vtable ----------------------------------------------------------------- */

static int cpu_device_count(void) { return 1; }
static int cpu_init(struct kn_backend *be) { be->ctx = NULL; return 0; }
static void cpu_free(struct kn_backend *be) { (void)be; }

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
    return (unsigned)op < KN_OP_KV_STORE;     /* the worker ops: next commit */
}

static int cpu_matmul(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                      const struct kn_tensor *w)
{
    struct rows ym = rows_of(y), xm = rows_of(x), wm = rows_of(w);
    float *xf = (float *)x->data, *wrow = xmalloc((size_t)(wm.cols + 1) * sizeof(float));
    int64_t ldx = xm.ld;
    if (x->dtype != KN_F32 || x->data == y->data) {
        xf = xmalloc((size_t)(xm.n * xm.cols + 1) * sizeof(float));
        for (int64_t m = 0; m < xm.n; m++)
            row_load(xf + m * xm.cols, row_at(&xm, m), xm.dt, xm.cols);
        ldx = xm.cols;
    }
    matmul_ref(&ym, xf, ldx, &wm, wrow, 0, wm.n);
    if (xf != (float *)x->data)
        free(xf);
    free(wrow);
    return 0;
}

static int cpu_rms_norm(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                        const struct kn_tensor *w, struct kn_tensor *res, float eps)
{
    struct rows ym = rows_of(y), xm = rows_of(x), rm;
    if (res)
        rm = rows_of(res);
    float *wf = xmalloc((size_t)(3 * xm.cols + 1) * sizeof(float));
    row_load(wf, w->data, w->dtype, xm.cols);
    rms_norm_ref(&ym, &xm, wf, res ? &rm : NULL, eps, wf + xm.cols, 0, xm.n);
    free(wf);
    return 0;
}

static int cpu_rope(struct kn_backend *be, struct kn_tensor *x, const struct kn_tensor *pos,
                    const struct kn_tensor *cos_sin)
{
    int64_t n_rot = cos_sin->shape[1];
    float *a = xmalloc((size_t)n_rot * sizeof(float));
    int64_t bad = rope_ref(x, pos->data, cos_sin->data, cos_sin->shape[0], n_rot, a, 0, x->shape[0]);
    free(a);
    if (bad) {
        log_error("rope: %lld positions outside the table of %lld", (long long)bad,
                  (long long)cos_sin->shape[0]);
        return -1;
    }
    return 0;
}

static int cpu_silu_mul(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *gate,
                        const struct kn_tensor *up)
{
    struct rows ym = rows_of(y), gm = rows_of(gate), um = rows_of(up);
    float *a = xmalloc((size_t)(2 * ym.cols + 1) * sizeof(float));
    silu_mul_ref(&ym, &gm, &um, a, 0, ym.n);
    free(a);
    return 0;
}

static int cpu_softmax(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                       float scale, int causal)
{
    struct rows ym = rows_of(y), xm = rows_of(x);
    float *a = xmalloc((size_t)(xm.cols + 1) * sizeof(float));
    softmax_ref(&ym, &xm, scale, causal ? x->shape[x->ndim - 2] : 0, a, 0, xm.n);
    free(a);
    return 0;
}

static int cpu_embed(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *table,
                     const struct kn_tensor *ids)
{
    struct rows ym = rows_of(y), tm = rows_of(table);
    float *a = xmalloc((size_t)(ym.cols + 1) * sizeof(float));
    int64_t bad = embed_ref(&ym, &tm, ids->data, a, 0, ym.n);
    free(a);
    if (bad) {
        log_error("embed: %lld ids outside the vocabulary of %lld", (long long)bad,
                  (long long)tm.n);
        return -1;
    }
    return 0;
}

static int cpu_add(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *a,
                   const struct kn_tensor *b)
{
    struct rows ym = rows_of(y), am = rows_of(a), bm;
    int bcast = kn_tensor_nelem(b) == am.cols && am.n != 1;
    if (bcast) {
        bm = am;
        bm.data = b->data;
        bm.dt = b->dtype;
        bm.esz = kn_dtype_size(b->dtype);
    } else {
        bm = rows_of(b);
    }
    float *s = xmalloc((size_t)(2 * ym.cols + 1) * sizeof(float));
    add_ref(&ym, &am, &bm, bcast, s, 0, ym.n);
    free(s);
    return 0;
}

static int cpu_convert(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x)
{
    struct rows ym = rows_of(y), xm = rows_of(x);
    float *a = xmalloc((size_t)(xm.cols + 1) * sizeof(float));
    convert_ref(&ym, &xm, a, 0, xm.n);
    free(a);
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
    .matmul = cpu_matmul,
    .rms_norm = cpu_rms_norm,
    .rope = cpu_rope,
    .silu_mul = cpu_silu_mul,
    .softmax = cpu_softmax,
    .embed = cpu_embed,
    .add = cpu_add,
    .convert = cpu_convert,
};
