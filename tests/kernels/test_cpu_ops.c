/*
 * test_cpu_ops.c -- the cpu reference ops against direct double-precision
 * recomputation and known values: bf16/f16 rounding (exhaustive round trips
 * and an independent rint-based reference), matmul per weight dtype, rms_norm
 * with and without the fused residual, rope against the closed formula,
 * softmax (rows sum to 1, causal mask), silu_mul on a fused gate_up view,
 * embed, add with broadcast, convert, the chat worker ops (kv_store and
 * paged_attention on a shuffled block pool with GQA and a sliding window,
 * gather/scatter with repeated indices, moe_route ties and renormalization)
 * against direct computations, thread-count invariance, and the registry and
 * shape checks.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "log.h"
#include "../unit/tap.h"
#include "util.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static float frand(void) { return (float)rnd32() / 4294967296.0f * 2.0f - 1.0f; }
static int64_t irand(int64_t lo, int64_t hi) { return lo + (int64_t)(rnd32() % (uint32_t)(hi - lo + 1)); }

/* element (r,c) of <t> seen as rows, as a double */
static double at(const struct kn_tensor *t, int64_t r, int64_t c)
{
    int64_t R, C, ld;
    kn_tensor_rows(t, &R, &C, &ld);
    const char *p = (const char *)t->data + (size_t)(r * ld + c) * kn_dtype_size(t->dtype);
    uint16_t h;
    float f;
    switch (t->dtype) {
    case KN_BF16: memcpy(&h, p, 2); return kn_bf16_to_f32(h);
    case KN_F16: memcpy(&h, p, 2); return kn_f16_to_f32(h);
    default: memcpy(&f, p, 4); return f;
    }
}

/* element (a,b,c) of a 3-D <t> by its strides (views that are no row matrix) */
static double at3(const struct kn_tensor *t, int64_t a, int64_t b, int64_t c)
{
    struct kn_tensor r = kn_tensor_view(t, 1, (int64_t[]){ 1 }, (int64_t[]){ 1 },
                                        a * t->stride[0] + b * t->stride[1] + c * t->stride[2]);
    return at(&r, 0, 0);
}

static void put(struct kn_tensor *t, int64_t r, int64_t c, float v)
{
    int64_t R, C, ld;
    kn_tensor_rows(t, &R, &C, &ld);
    char *p = (char *)t->data + (size_t)(r * ld + c) * kn_dtype_size(t->dtype);
    uint16_t h = t->dtype == KN_BF16 ? kn_f32_to_bf16(v) : kn_f32_to_f16(v);
    if (t->dtype == KN_F32)
        memcpy(p, &v, 4);
    else
        memcpy(p, &h, 2);
}

/* new host tensor of random values in [-scale, scale) */
static struct kn_tensor trand(enum kn_dtype dt, int ndim, const int64_t *shape, float scale)
{
    struct kn_tensor t;
    int64_t R, C, ld;
    kn_tensor_alloc(&t, NULL, dt, ndim, shape);
    kn_tensor_rows(&t, &R, &C, &ld);
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++)
            put(&t, r, c, frand() * scale);
    return t;
}

/* |y - ref| <= atol + rtol*|ref| everywhere; diagnoses the first 5 misses */
static int close_to(const char *what, const struct kn_tensor *y, const double *ref,
                    double atol, double rtol)
{
    int64_t R, C, ld, bad = 0;
    kn_tensor_rows(y, &R, &C, &ld);
    for (int64_t i = 0; i < R * C; i++) {
        double v = at(y, i / C, i % C), d = fabs(v - ref[i]);
        if (!(d <= atol + rtol * fabs(ref[i])) && bad++ < 5)
            diag("%s: [%lld,%lld] got %.8g want %.8g", what, (long long)(i / C),
                 (long long)(i % C), v, ref[i]);
    }
    return ok(bad == 0, "%s (%lld x %lld, %lld mismatches)", what, (long long)R, (long long)C,
              (long long)bad);
}

/* ---- dtypes ---------------------------------------------------------------------- */

/* round <f> to <mbits> mantissa bits, min exponent <emin>, by rint() in double */
static double round_ref(float f, int mbits, int emin)
{
    if (f == 0.0f)
        return f;
    int e = (int)floor(log2(fabs((double)f)));
    if (e < emin)
        e = emin;
    return ldexp(rint(ldexp((double)f, mbits - e)), e - mbits);
}

static void test_dtypes(void)
{
    ok(kn_f32_to_bf16(1.0f) == 0x3f80, "bf16(1) = 0x3f80");
    ok(kn_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80, "bf16 tie rounds to even (down)");
    ok(kn_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82, "bf16 tie rounds to even (up)");
    ok(kn_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81, "bf16 above tie rounds up");
    ok(kn_f32_to_bf16(FLT_MAX) == 0x7f80, "bf16(FLT_MAX) overflows to inf");
    ok(kn_f32_to_bf16(-0.0f) == 0x8000, "bf16(-0) keeps the sign");
    ok(isnan(kn_bf16_to_f32(kn_f32_to_bf16(NAN))), "bf16(NaN) is NaN");
    ok(kn_f32_to_f16(65504.0f) == 0x7bff && kn_f32_to_f16(65519.0f) == 0x7bff &&
       kn_f32_to_f16(65520.0f) == 0x7c00, "f16 max 65504, 65520 rounds to inf");
    ok(kn_f32_to_f16(0x1p-24f) == 0x0001 && kn_f32_to_f16(0x1p-25f) == 0 &&
       kn_f32_to_f16(0x1.8p-25f) == 0x0001 && kn_f32_to_f16(0x1p-14f) == 0x0400,
       "f16 subnormals round to nearest even");
    ok(kn_f32_to_f16(1.0f / 3.0f) == 0x3555 && kn_f32_to_f16(-2.0f) == 0xc000, "f16 1/3, -2");
    ok(kn_f16_to_f32(0x3c00) == 1.0f && kn_f16_to_f32(0x0001) == 0x1p-24f &&
       isinf(kn_f16_to_f32(0x7c00)) && isnan(kn_f16_to_f32(0x7e00)), "f16 widening known values");

    int rt16 = 1, rtb = 1, wid = 1;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = kn_f16_to_f32((uint16_t)h), g = kn_bf16_to_f32((uint16_t)h);
        if (!isnan(f) && kn_f32_to_f16(f) != h)
            rt16 = 0;
        if (!isnan(g) && kn_f32_to_bf16(g) != h)
            rtb = 0;
        uint32_t e = (h >> 10) & 31, m = h & 1023;
        double want = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, (int)e - 25);
        if (e != 31 && f != ((h & 0x8000) ? -want : want))
            wid = 0;
    }
    ok(rt16, "f16 -> f32 -> f16 is the identity on all 65536 values");
    ok(rtb, "bf16 -> f32 -> bf16 is the identity on all 65536 values");
    ok(wid, "f16 -> f32 matches (1024+m)*2^(e-25) on all finite values");

    int ok16 = 1, okb = 1;
    for (int i = 0; i < 1000000; i++) {
        float f = kn_bits_f32(rnd32() << 1 ^ rnd32());
        if (isnan(f) || isinf(f))
            continue;
        double r16 = round_ref(f, 10, -14), rb = round_ref(f, 7, -126);
        double g16 = kn_f16_to_f32(kn_f32_to_f16(f)), gb = kn_bf16_to_f32(kn_f32_to_bf16(f));
        if (!(fabs(r16) >= 65520.0 ? isinf(g16) : g16 == r16))
            ok16 = 0;
        if (!(fabs(rb) > FLT_MAX ? isinf(gb) : gb == rb))
            okb = 0;
    }
    ok(ok16, "f32 -> f16 matches a rint() reference on 1e6 random floats");
    ok(okb, "f32 -> bf16 matches a rint() reference on 1e6 random floats");
}

/* ---- ops ------------------------------------------------------------------------- */

static void test_matmul(struct kn_backend *be)
{
    static const enum kn_dtype wdt[] = { KN_F32, KN_BF16, KN_F16 };
    for (int trial = 0; trial < 6; trial++) {
        int64_t M = trial == 4 ? 40 : irand(1, 9), N = irand(1, 70), K = irand(1, 300), pad = trial & 1 ? 5 : 0;
        enum kn_dtype xt = trial % 3 == 2 ? KN_BF16 : KN_F32, yt = trial == 5 ? KN_BF16 : KN_F32;
        /* x is a column slice of a wider (M, K+pad) buffer when pad > 0 */
        struct kn_tensor xb = trand(xt, 2, (int64_t[]){ M, K + pad }, 1.0f);
        struct kn_tensor x = kn_tensor_view(&xb, 2, (int64_t[]){ M, K }, (int64_t[]){ K + pad, 1 }, pad);
        struct kn_tensor w = trand(wdt[trial % 3], 2, (int64_t[]){ N, K }, 1.0f), y;
        kn_tensor_alloc(&y, NULL, yt, 2, (int64_t[]){ M, N });
        double *ref = xmalloc((size_t)(M * N) * sizeof(double));
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double s = 0;
                for (int64_t k = 0; k < K; k++)
                    s += at(&x, m, k) * at(&w, n, k);
                ref[m * N + n] = s;
            }
        ok(kn_matmul(be, &y, &x, &w) == 0, "matmul runs");
        char what[96];
        snprintf(what, sizeof(what), "matmul W %s x %s%s -> %s vs double", kn_dtype_name(w.dtype),
                 kn_dtype_name(xt), pad ? " (strided)" : "", kn_dtype_name(yt));
        /* f32 accumulation: ~sqrt(K) eps relative; bf16 output: half an ulp, 2^-9 */
        close_to(what, &y, ref, 1e-5, yt == KN_BF16 ? 4e-3 : 1e-5);
        free(ref);
        kn_tensor_free(&xb);
        kn_tensor_free(&w);
        kn_tensor_free(&y);
    }
    struct kn_tensor a = trand(KN_F32, 2, (int64_t[]){ 2, 3 }, 1), b = trand(KN_F32, 2, (int64_t[]){ 4, 5 }, 1);
    struct kn_tensor c = trand(KN_F32, 2, (int64_t[]){ 2, 4 }, 1);
    ok(kn_matmul(be, &c, &a, &b) == -1, "matmul rejects K mismatch");
    kn_tensor_free(&a);
    kn_tensor_free(&b);
    kn_tensor_free(&c);
}

static void test_rms_norm(struct kn_backend *be)
{
    float xv[2] = { 3, 4 }, wv[2] = { 1, 2 }, yv[2];
    struct kn_tensor x = kn_tensor_host(KN_F32, 1, (int64_t[]){ 2 }, xv);
    struct kn_tensor w = kn_tensor_host(KN_F32, 1, (int64_t[]){ 2 }, wv);
    struct kn_tensor y = kn_tensor_host(KN_F32, 1, (int64_t[]){ 2 }, yv);
    ok(kn_rms_norm(be, &y, &x, &w, NULL, 0.0f) == 0 && fabsf(yv[0] - 0.84852814f) < 1e-6f &&
       fabsf(yv[1] - 2.2627417f) < 1e-6f, "rms_norm([3,4]) * [1,2] = [0.8485, 2.2627]");

    for (int trial = 0; trial < 4; trial++) {
        int64_t R = irand(1, 6), D = irand(1, 500);
        enum kn_dtype dt = trial & 1 ? KN_BF16 : KN_F32;
        float eps = 1e-6f;
        struct kn_tensor xt = trand(dt, 2, (int64_t[]){ R, D }, 2.0f);
        struct kn_tensor wt = trand(KN_BF16, 1, (int64_t[]){ D }, 1.0f);
        struct kn_tensor res = trand(dt, 2, (int64_t[]){ R, D }, 2.0f), yt;
        kn_tensor_alloc(&yt, NULL, dt, 2, (int64_t[]){ R, D });
        int fused = trial >= 2;
        double *ref = xmalloc((size_t)(R * D) * sizeof(double) * 2), *rref = ref + R * D;
        for (int64_t r = 0; r < R; r++) {
            double ss = 0;
            for (int64_t i = 0; i < D; i++) {
                double v = at(&xt, r, i);
                if (fused) {    /* the sum is stored (rounded) before the norm */
                    float s = (float)(v + at(&res, r, i));
                    v = dt == KN_BF16 ? kn_bf16_to_f32(kn_f32_to_bf16(s)) : s;
                }
                rref[r * D + i] = v;
                ss += v * v;
            }
            for (int64_t i = 0; i < D; i++)
                ref[r * D + i] = rref[r * D + i] / sqrt(ss / D + eps) * at(&wt, 0, i);
        }
        /* in place (y == x) on odd trials */
        struct kn_tensor *out = trial & 1 ? &xt : &yt;
        ok(kn_rms_norm(be, out, &xt, &wt, fused ? &res : NULL, eps) == 0, "rms_norm runs");
        double rt = dt == KN_BF16 ? 0x1p-8 : 1e-6;
        close_to(fused ? "rms_norm fused residual: y" : "rms_norm vs double", out, ref, 1e-6, rt);
        if (fused)
            close_to("rms_norm fused residual: res = x + res", &res, rref, 0, 0);
        free(ref);
        kn_tensor_free(&xt);
        kn_tensor_free(&wt);
        kn_tensor_free(&res);
        kn_tensor_free(&yt);
    }
}

static void test_rope(struct kn_backend *be)
{
    for (int trial = 0; trial < 3; trial++) {
        int64_t T = irand(1, 7), H = irand(1, 4), D = 2 * irand(1, 40), P = 5000;
        int64_t n_rot = trial == 1 ? 2 * irand(1, D / 2) : D;
        double theta = trial == 2 ? 10000.0 : 1000000.0;
        float *tab = xmalloc((size_t)(P * n_rot) * sizeof(float));
        kn_rope_table(tab, (int)P, (int)n_rot, theta);
        struct kn_tensor cs = kn_tensor_host(KN_F32, 2, (int64_t[]){ P, n_rot }, tab);
        int32_t *pv = xmalloc((size_t)T * sizeof(int32_t));
        for (int64_t t = 0; t < T; t++)
            pv[t] = t == 0 ? 0 : (int32_t)irand(0, P - 1);
        struct kn_tensor pos = kn_tensor_host(KN_I32, 1, (int64_t[]){ T }, pv);
        struct kn_tensor x = trand(KN_F32, 3, (int64_t[]){ T, H, D }, 1.0f);
        double *ref = xmalloc((size_t)(T * H * D) * sizeof(double));
        int64_t half = n_rot / 2;
        for (int64_t r = 0; r < T * H; r++)
            for (int64_t i = 0; i < D; i++) {
                double v = at(&x, r, i), a, c, s, o;
                if (i >= n_rot) {
                    ref[r * D + i] = v;
                    continue;
                }
                a = pv[r / H] * pow(theta, -2.0 * (double)(i % half) / (double)n_rot);
                c = cos(a);
                s = sin(a);
                o = i < half ? at(&x, r, i + half) : at(&x, r, i - half);
                ref[r * D + i] = i < half ? v * c - o * s : o * s + v * c;
            }
        ok(kn_rope(be, &x, &pos, &cs) == 0, "rope runs");
        char what[80];
        snprintf(what, sizeof(what), "rope vs closed formula (n_rot %lld of %lld, theta %g)",
                 (long long)n_rot, (long long)D, theta);
        close_to(what, &x, ref, 2e-6, 2e-6);
        pv[0] = (int32_t)P;
        ok(kn_rope(be, &x, &pos, &cs) == -1, "rope rejects a position outside the table");
        free(ref);
        free(pv);
        free(tab);
        kn_tensor_free(&x);
    }
}

static void test_softmax(struct kn_backend *be)
{
    for (int trial = 0; trial < 4; trial++) {
        int64_t H = irand(1, 3), T = irand(1, 6), S = T + irand(0, 40) - (trial == 3 ? T : 0);
        int causal = trial >= 2;
        float scale = trial ? 0.125f : 1.0f;
        S = S < 1 ? 1 : S;
        struct kn_tensor x = trand(KN_F32, 3, (int64_t[]){ H, T, S }, 8.0f), y;
        kn_tensor_alloc(&y, NULL, trial == 1 ? KN_BF16 : KN_F32, 3, (int64_t[]){ H, T, S });
        double *ref = xmalloc((size_t)(H * T * S) * sizeof(double));
        for (int64_t r = 0; r < H * T; r++) {
            int64_t lim = causal ? r % T + S - T + 1 : S;
            double mx = -INFINITY, sum = 0;
            for (int64_t c = 0; c < lim; c++)
                mx = fmax(mx, at(&x, r, c) * scale);
            for (int64_t c = 0; c < lim; c++)
                sum += exp(at(&x, r, c) * scale - mx);
            for (int64_t c = 0; c < S; c++)
                ref[r * S + c] = c < lim ? exp(at(&x, r, c) * scale - mx) / sum : 0.0;
        }
        ok(kn_softmax(be, &y, &x, scale, causal) == 0, "softmax runs");
        int sums = 1;
        for (int64_t r = 0; r < H * T; r++) {
            double s = 0;
            for (int64_t c = 0; c < S; c++)
                s += at(&y, r, c);
            int64_t lim = causal ? r % T + S - T + 1 : S;
            if (fabs(s - (lim > 0 ? 1.0 : 0.0)) > (y.dtype == KN_BF16 ? 1e-2 : 1e-5))
                sums = 0;
        }
        ok(sums, "softmax rows sum to 1 (%s, scale %g)", causal ? "causal" : "full", scale);
        close_to(causal ? "softmax causal vs double" : "softmax vs double", &y, ref, 1e-7,
                 y.dtype == KN_BF16 ? 0x1p-8 : 1e-5);
        free(ref);
        kn_tensor_free(&x);
        kn_tensor_free(&y);
    }
}

static void test_elementwise(struct kn_backend *be)
{
    int64_t R = irand(2, 7), C = irand(1, 300);
    /* silu_mul on a fused gate_up (R, 2C): gate and up are column slices */
    struct kn_tensor gu = trand(KN_BF16, 2, (int64_t[]){ R, 2 * C }, 4.0f), y;
    struct kn_tensor g = kn_tensor_view(&gu, 2, (int64_t[]){ R, C }, (int64_t[]){ 2 * C, 1 }, 0);
    struct kn_tensor u = kn_tensor_view(&gu, 2, (int64_t[]){ R, C }, (int64_t[]){ 2 * C, 1 }, C);
    kn_tensor_alloc(&y, NULL, KN_F32, 2, (int64_t[]){ R, C });
    double *ref = xmalloc((size_t)(R * C) * sizeof(double));
    for (int64_t i = 0; i < R * C; i++) {
        double a = at(&g, i / C, i % C);
        ref[i] = a / (1 + exp(-a)) * at(&u, i / C, i % C);
    }
    ok(kn_silu_mul(be, &y, &g, &u) == 0, "silu_mul runs");
    close_to("silu_mul on gate_up slices vs double", &y, ref, 1e-6, 1e-6);

    /* add: full shape, then a (C,) row broadcast (a bias) */
    struct kn_tensor b = trand(KN_F32, 2, (int64_t[]){ R, C }, 1.0f), bias = trand(KN_BF16, 1, (int64_t[]){ C }, 1.0f);
    for (int64_t i = 0; i < R * C; i++)
        ref[i] = (double)(float)(at(&y, i / C, i % C) + at(&b, i / C, i % C)) + at(&bias, 0, i % C);
    ok(kn_add(be, &b, &y, &b) == 0 && kn_add(be, &b, &b, &bias) == 0, "add runs");
    close_to("add, then add a broadcast bias row", &b, ref, 1e-6, 1e-6);

    /* convert f32 -> bf16 / f16 matches the scalar conversions */
    struct kn_tensor cb, ch;
    kn_tensor_alloc(&cb, NULL, KN_BF16, 2, (int64_t[]){ R, C });
    kn_tensor_alloc(&ch, NULL, KN_F16, 2, (int64_t[]){ R, C });
    ok(kn_convert(be, &cb, &y) == 0 && kn_convert(be, &ch, &y) == 0, "convert runs");
    int same = 1;
    for (int64_t i = 0; i < R * C; i++) {
        float v = (float)at(&y, i / C, i % C);
        if (((uint16_t *)cb.data)[i] != kn_f32_to_bf16(v) || ((uint16_t *)ch.data)[i] != kn_f32_to_f16(v))
            same = 0;
    }
    ok(same, "convert f32 -> bf16, f16 rounds like kn_f32_to_bf16/f16");

    /* embed: bf16 table rows widened exactly; a bad id gives zeros and -1 */
    int64_t V = irand(2, 50);
    struct kn_tensor tab = trand(KN_BF16, 2, (int64_t[]){ V, C }, 1.0f), e;
    int32_t idv[3] = { (int32_t)(V - 1), 0, (int32_t)(V - 1) };
    struct kn_tensor ids = kn_tensor_host(KN_I32, 1, (int64_t[]){ 3 }, idv);
    kn_tensor_alloc(&e, NULL, KN_F32, 2, (int64_t[]){ 3, C });
    double *eref = xmalloc((size_t)(3 * C) * sizeof(double));
    for (int64_t i = 0; i < 3 * C; i++)
        eref[i] = at(&tab, idv[i / C], i % C);
    ok(kn_embed(be, &e, &tab, &ids) == 0, "embed runs");
    close_to("embed gathers table rows", &e, eref, 0, 0);
    idv[1] = (int32_t)V;
    for (int64_t c = 0; c < C; c++)
        eref[C + c] = 0;
    ok(kn_embed(be, &e, &tab, &ids) == -1, "embed reports an id outside the vocabulary");
    close_to("embed: that row is zero, the others intact", &e, eref, 0, 0);

    free(ref);
    free(eref);
    kn_tensor_free(&gu);
    kn_tensor_free(&y);
    kn_tensor_free(&b);
    kn_tensor_free(&bias);
    kn_tensor_free(&cb);
    kn_tensor_free(&ch);
    kn_tensor_free(&tab);
    kn_tensor_free(&e);
}

/* ---- chat worker ops ------------------------------------------------------------- */

/* A paged cache filled by kv_store from head slices of a fused qkv, then
 * paged_attention for a few query tokens per sequence against a direct double
 * computation over the same (rounded) cached K/V. Blocks are handed out from a
 * shuffled pool, so a sequence's blocks are not contiguous; sequence lengths
 * are random, so last blocks are partial. */
static void test_paged(struct kn_backend *be, int trial)
{
    enum { S = 3 };
    int64_t Hkv = irand(1, 2), group = trial == 3 ? 6 : irand(1, 3), H = Hkv * group, D = trial == 1 ? 20 : 8 * irand(1, 6);
    int bs = (int)(trial == 0 ? 1 : irand(2, 8)), window = trial == 2 ? (int)irand(1, 6) : 0;
    enum kn_dtype cdt = trial & 1 ? KN_F32 : KN_BF16, qdt = trial == 3 ? KN_BF16 : KN_F32;
    int64_t len[S], need[S], nb = 0, max_blocks = 0, Tall = 0;
    for (int s = 0; s < S; s++) {
        len[s] = irand(1, 40);
        need[s] = (len[s] + bs - 1) / bs;
        nb += need[s];
        max_blocks = need[s] + 1 > max_blocks ? need[s] + 1 : max_blocks;
        Tall += len[s];
    }
    nb += 2;                                        /* unused blocks in the pool */
    int32_t *perm = xmalloc((size_t)nb * sizeof(int32_t));
    for (int64_t i = 0; i < nb; i++)
        perm[i] = (int32_t)i;
    for (int64_t i = nb - 1; i > 0; i--) {
        int64_t r = irand(0, i);
        int32_t tmp = perm[i];
        perm[i] = perm[r];
        perm[r] = tmp;
    }
    int32_t *bt = xmalloc((size_t)(S * max_blocks) * sizeof(int32_t)), next = 0;
    for (int s = 0; s < S; s++)
        for (int64_t b = 0; b < max_blocks; b++)
            bt[s * max_blocks + b] = b < need[s] ? perm[next++] : -1;

    /* every position of every sequence stored at once: k, v head slices of qkv */
    int64_t W = (H + 2 * Hkv) * D, n_slots = nb * bs;
    struct kn_tensor qkv = trand(KN_F32, 2, (int64_t[]){ Tall, W }, 1.0f), kc, vc;
    struct kn_tensor k = kn_tensor_view(&qkv, 3, (int64_t[]){ Tall, Hkv, D }, (int64_t[]){ W, D, 1 }, H * D);
    struct kn_tensor v = kn_tensor_view(&qkv, 3, (int64_t[]){ Tall, Hkv, D }, (int64_t[]){ W, D, 1 }, (H + Hkv) * D);
    kn_tensor_alloc(&kc, NULL, cdt, 3, (int64_t[]){ n_slots, Hkv, D });
    kn_tensor_alloc(&vc, NULL, cdt, 3, (int64_t[]){ n_slots, Hkv, D });
    int32_t *slot = xmalloc((size_t)Tall * sizeof(int32_t));
    int64_t *first = xmalloc(S * sizeof(int64_t));    /* token index of (s, 0) */
    for (int s = 0, t = 0; s < S; s++) {
        first[s] = t;
        for (int64_t p = 0; p < len[s]; p++, t++)
            slot[t] = bt[s * max_blocks + p / bs] * bs + (int32_t)(p % bs);
    }
    struct kn_tensor slots = kn_tensor_host(KN_I32, 1, (int64_t[]){ Tall }, slot);
    ok(kn_kv_store(be, &kc, &vc, &k, &v, &slots) == 0, "kv_store runs (%lld tokens, %s cache)",
       (long long)Tall, kn_dtype_name(cdt));
    int stored = 1;
    for (int64_t t = 0; t < Tall; t++)
        for (int64_t h = 0; h < Hkv; h++)
            for (int64_t d = 0; d < D; d++) {
                float kw = (float)at3(&k, t, h, d), vw = (float)at3(&v, t, h, d);
                if (cdt == KN_BF16) {
                    kw = kn_bf16_to_f32(kn_f32_to_bf16(kw));
                    vw = kn_bf16_to_f32(kn_f32_to_bf16(vw));
                }
                if (at(&kc, slot[t] * Hkv + h, d) != kw || at(&vc, slot[t] * Hkv + h, d) != vw)
                    stored = 0;
            }
    ok(stored, "kv_store put each token's K/V, rounded to the cache dtype, at its slot");

    /* queries: the last position of each sequence and two random ones */
    int64_t T = 3 * S;
    int32_t *sq = xmalloc((size_t)T * sizeof(int32_t)), *ps = xmalloc((size_t)T * sizeof(int32_t));
    for (int64_t t = 0; t < T; t++) {
        sq[t] = (int32_t)(t % S);
        ps[t] = (int32_t)(t < S ? len[t] - 1 : irand(0, len[t % S] - 1));
    }
    struct kn_tensor seq = kn_tensor_host(KN_I32, 1, (int64_t[]){ T }, sq);
    struct kn_tensor pos = kn_tensor_host(KN_I32, 1, (int64_t[]){ T }, ps);
    struct kn_tensor btab = kn_tensor_host(KN_I32, 2, (int64_t[]){ S, max_blocks }, bt);
    struct kn_tensor q = trand(qdt, 3, (int64_t[]){ T, H, D }, 1.0f), out;
    kn_tensor_alloc(&out, NULL, qdt, 3, (int64_t[]){ T, H, D });
    float scale = 1.0f / sqrtf((float)D);
    double *ref = xmalloc((size_t)(T * H * D) * sizeof(double)), *sc = xmalloc(64 * sizeof(double));
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++) {
            int64_t g = h / group, lo = window && ps[t] - window + 1 > 0 ? ps[t] - window + 1 : 0;
            double mx = -INFINITY, sum = 0;
            for (int64_t p = lo; p <= ps[t]; p++) {
                int64_t row = (first[sq[t]] + p) * Hkv + g;  /* token row of (seq, p) in k */
                double dot = 0;
                for (int64_t d = 0; d < D; d++)
                    dot += at(&q, t * H + h, d) * at(&kc, slot[row / Hkv] * Hkv + g, d);
                sc[p - lo] = dot * scale;
                mx = fmax(mx, sc[p - lo]);
            }
            for (int64_t p = lo; p <= ps[t]; p++)
                sum += exp(sc[p - lo] - mx);
            for (int64_t d = 0; d < D; d++) {
                double o = 0;
                for (int64_t p = lo; p <= ps[t]; p++)
                    o += exp(sc[p - lo] - mx) / sum *
                         at(&vc, slot[first[sq[t]] + p] * Hkv + g, d);
                ref[(t * H + h) * D + d] = o;
            }
        }
    ok(kn_paged_attention(be, &out, &q, &kc, &vc, &btab, &seq, &pos, bs, scale, window) == 0,
       "paged_attention runs");
    char what[128];
    snprintf(what, sizeof(what), "paged_attention vs double (H %lld, Hkv %lld, D %lld, block %d, "
             "window %d, %s cache, %s q)", (long long)H, (long long)Hkv, (long long)D, bs, window,
             kn_dtype_name(cdt), kn_dtype_name(qdt));
    /* f32: scores are D-term f32 dots of |terms| <= 1 (error ~ D * 2^-24), and
     * the output an f32 weighted mean of |v| <= 1: 1e-5 absolute covers both.
     * bf16 out: half an ulp, 2^-9 relative. */
    close_to(what, &out, ref, 1e-5, qdt == KN_BF16 ? 0x1p-8 : 1e-5);

    /* same results with 3 threads, bit for bit */
    struct kn_tensor out3;
    kn_tensor_alloc(&out3, NULL, qdt, 3, (int64_t[]){ T, H, D });
    kn_backend_set_threads(be, 3);
    ok(kn_paged_attention(be, &out3, &q, &kc, &vc, &btab, &seq, &pos, bs, scale, window) == 0 &&
       memcmp(out3.data, out.data, (size_t)(T * H * D) * kn_dtype_size(qdt)) == 0,
       "paged_attention with 3 threads is bitwise the 1-thread result");
    kn_backend_set_threads(be, 1);

    /* bad indices: an unmapped block zeroes that token's rows; a bad slot is refused */
    if (trial == 0) {
        bt[sq[0] * max_blocks] = -1;
        ok(kn_paged_attention(be, &out, &q, &kc, &vc, &btab, &seq, &pos, bs, scale, window) == -1,
           "paged_attention reports an unmapped block");
        int zero = 1;
        for (int64_t i = 0; i < H * D; i++)
            zero &= at(&out, i / D, i % D) == 0.0;
        ok(zero, "paged_attention: that token's output is zero");
        slot[0] = (int32_t)n_slots;
        ok(kn_kv_store(be, &kc, &vc, &k, &v, &slots) == -1, "kv_store reports a slot outside the cache");
        int64_t bad_pos = -1;
        struct kn_tensor pos2 = kn_tensor_host(KN_I32, 1, (int64_t[]){ 2 }, ps);
        ok(kn_paged_attention(be, &out, &q, &kc, &vc, &btab, &seq, &pos2, bs, scale, window) == -1,
           "paged_attention rejects pos of another length than q");
        (void)bad_pos;
    }

    free(perm);
    free(bt);
    free(slot);
    free(first);
    free(sq);
    free(ps);
    free(ref);
    free(sc);
    kn_tensor_free(&qkv);
    kn_tensor_free(&kc);
    kn_tensor_free(&vc);
    kn_tensor_free(&q);
    kn_tensor_free(&out);
    kn_tensor_free(&out3);
}

static void test_gather_scatter(struct kn_backend *be)
{
    int64_t M = irand(3, 20), D = irand(1, 100), n = 7;
    struct kn_tensor x = trand(KN_BF16, 2, (int64_t[]){ M, D }, 1.0f), yf, yb;
    int32_t iv[7];
    for (int i = 0; i < 7; i++)
        iv[i] = (int32_t)irand(0, M - 1);
    iv[3] = iv[1];                                  /* a repeat */
    struct kn_tensor idx = kn_tensor_host(KN_I32, 1, (int64_t[]){ n }, iv);
    kn_tensor_alloc(&yf, NULL, KN_F32, 2, (int64_t[]){ n, D });
    kn_tensor_alloc(&yb, NULL, KN_BF16, 2, (int64_t[]){ n, D });
    double *ref = xmalloc((size_t)(n * D + M * 20000) * sizeof(double));
    for (int64_t i = 0; i < n * D; i++)
        ref[i] = at(&x, iv[i / D], i % D);
    ok(kn_gather_rows(be, &yf, &x, &idx) == 0 && kn_gather_rows(be, &yb, &x, &idx) == 0,
       "gather_rows runs");
    close_to("gather_rows bf16 -> f32", &yf, ref, 0, 0);
    close_to("gather_rows bf16 -> bf16 (copy)", &yb, ref, 0, 0);
    iv[2] = (int32_t)M;
    ok(kn_gather_rows(be, &yf, &x, &idx) == -1, "gather_rows reports an index out of range");
    for (int64_t c = 0; c < D; c++)
        ref[2 * D + c] = 0;
    close_to("gather_rows: that row is zero", &yf, ref, 0, 0);
    iv[2] = 0;

    /* scatter_add: y (M, D) f32 += w[i] x[i] at idx[i], repeats included, in order;
     * then the same with D wide enough for 3 threads, bitwise equal */
    for (int wide = 0; wide < 2; wide++) {
        int64_t Dw = wide ? 20000 : D;     /* wide: enough columns for 3 threads */
        struct kn_tensor xs = trand(KN_BF16, 2, (int64_t[]){ n, Dw }, 1.0f);
        struct kn_tensor ys = trand(KN_F32, 2, (int64_t[]){ M, Dw }, 1.0f), y3;
        kn_tensor_alloc(&y3, NULL, KN_F32, 2, (int64_t[]){ M, Dw });
        memcpy(y3.data, ys.data, (size_t)(M * Dw) * sizeof(float));
        float wv[7];
        for (int i = 0; i < 7; i++)
            wv[i] = frand();
        struct kn_tensor w = kn_tensor_host(KN_F32, 1, (int64_t[]){ n }, wv);
        for (int64_t i = 0; i < M * Dw; i++)
            ref[i] = at(&ys, i / Dw, i % Dw);
        for (int64_t i = 0; i < n; i++)
            for (int64_t c = 0; c < Dw; c++)
                ref[iv[i] * Dw + c] += (wide ? wv[i] : 1.0) * at(&xs, i, c);
        ok(kn_scatter_add_rows(be, &ys, &xs, &idx, wide ? &w : NULL) == 0, "scatter_add_rows runs");
        /* each add rounds to f32 once: a few f32 ulps of |y| <= ~4 */
        close_to(wide ? "scatter_add_rows weighted, repeated indices" :
                 "scatter_add_rows unweighted, repeated indices", &ys, ref, 2e-6, 1e-6);
        if (wide) {
            kn_backend_set_threads(be, 3);
            ok(kn_scatter_add_rows(be, &y3, &xs, &idx, &w) == 0 &&
               memcmp(y3.data, ys.data, (size_t)(M * Dw) * sizeof(float)) == 0,
               "scatter_add_rows with 3 threads is bitwise the 1-thread result");
            kn_backend_set_threads(be, 1);
        }
        kn_tensor_free(&xs);
        kn_tensor_free(&ys);
        kn_tensor_free(&y3);
    }
    free(ref);
    kn_tensor_free(&x);
    kn_tensor_free(&yf);
    kn_tensor_free(&yb);
}

static void test_moe_route(struct kn_backend *be)
{
    int64_t T = 6, E = 16;
    int k = 4;
    struct kn_tensor lg = trand(KN_F32, 2, (int64_t[]){ T, E }, 3.0f), ids, wts;
    float *l = lg.data;
    l[0 * E + 5] = l[0 * E + 9] = l[0 * E + 2] = 10.0f;     /* a three-way tie on top */
    l[1 * E + 7] = l[1 * E + 3] = 5.0f;                      /* a tie further down */
    l[1 * E + 1] = 6.0f;
    for (int64_t e = 0; e < E; e++)
        l[2 * E + e] = 0.5f;                                  /* all equal */
    kn_tensor_alloc(&ids, NULL, KN_I32, 2, (int64_t[]){ T, k });
    kn_tensor_alloc(&wts, NULL, KN_F32, 2, (int64_t[]){ T, k });
    for (int norm = 0; norm < 2; norm++) {
        ok(kn_moe_route(be, &ids, &wts, &lg, k, norm) == 0, "moe_route runs (norm %d)", norm);
        int same_ids = 1;
        double *ref = xmalloc((size_t)(T * k) * sizeof(double));
        for (int64_t t = 0; t < T; t++) {
            double p[16], mx = -INFINITY, sum = 0, top = 0;
            int taken[16] = { 0 };
            for (int64_t e = 0; e < E; e++)
                mx = fmax(mx, l[t * E + e]);
            for (int64_t e = 0; e < E; e++)
                sum += p[e] = exp(l[t * E + e] - mx);
            for (int i = 0; i < k; i++) {           /* stable: first maximum wins */
                int b = -1;
                for (int e = 0; e < E; e++)
                    if (!taken[e] && (b < 0 || p[e] > p[b]))
                        b = e;
                taken[b] = 1;
                if (((int32_t *)ids.data)[t * k + i] != b)
                    same_ids = 0;
                ref[t * k + i] = p[b] / sum;
                top += p[b] / sum;
            }
            for (int i = 0; norm && i < k; i++)
                ref[t * k + i] /= top;
        }
        ok(same_ids, "moe_route picks the top %d, ties to the lower expert id (norm %d)", k, norm);
        close_to(norm ? "moe_route weights renormalized" : "moe_route weights = softmax probs",
                 &wts, ref, 1e-7, 1e-6);
        free(ref);
    }
    const int32_t *id = ids.data;
    ok(id[0] == 2 && id[1] == 5 && id[2] == 9 && id[k + 0] == 1 && id[k + 1] == 3 && id[k + 2] == 7 &&
       id[2 * k] == 0 && id[2 * k + 3] == 3, "moe_route tie order on known rows");
    ok(kn_moe_route(be, &ids, &wts, &lg, (int)E + 1, 0) == -1, "moe_route rejects k > E");
    kn_tensor_free(&lg);
    kn_tensor_free(&ids);
    kn_tensor_free(&wts);
}

/* Threads change no result: matmul (decode and prefill paths) and the row ops
 * with 3 threads are bitwise their 1-thread results, and a prefill-sized
 * matmul equals the row-by-row (decode path) products bit for bit. */
static void test_threads(struct kn_backend *be)
{
    static const enum kn_dtype wdt[] = { KN_BF16, KN_F16, KN_F32 };
    for (int trial = 0; trial < 3; trial++) {
        int64_t M = trial == 0 ? 3 : 37, N = 301, K = 203;
        struct kn_tensor x = trand(KN_F32, 2, (int64_t[]){ M, K }, 1.0f);
        struct kn_tensor w = trand(wdt[trial], 2, (int64_t[]){ N, K }, 1.0f), y1, y3, yr;
        kn_tensor_alloc(&y1, NULL, KN_F32, 2, (int64_t[]){ M, N });
        kn_tensor_alloc(&y3, NULL, KN_F32, 2, (int64_t[]){ M, N });
        kn_tensor_alloc(&yr, NULL, KN_F32, 2, (int64_t[]){ M, N });
        int rc = kn_matmul(be, &y1, &x, &w);
        for (int64_t m = 0; m < M; m++) {
            struct kn_tensor xm = kn_tensor_view(&x, 2, (int64_t[]){ 1, K }, (int64_t[]){ K, 1 }, m * K);
            struct kn_tensor ym = kn_tensor_view(&yr, 2, (int64_t[]){ 1, N }, (int64_t[]){ N, 1 }, m * N);
            rc |= kn_matmul(be, &ym, &xm, &w);
        }
        kn_backend_set_threads(be, 3);
        rc |= kn_matmul(be, &y3, &x, &w);
        kn_backend_set_threads(be, 1);
        size_t nb = (size_t)(M * N) * sizeof(float);
        ok(rc == 0 && memcmp(y1.data, y3.data, nb) == 0,
           "matmul M=%lld W %s: 3 threads bitwise equal 1 thread", (long long)M, kn_dtype_name(wdt[trial]));
        ok(memcmp(y1.data, yr.data, nb) == 0, "matmul M=%lld W %s: equals row-by-row products",
           (long long)M, kn_dtype_name(wdt[trial]));
        kn_tensor_free(&x);
        kn_tensor_free(&w);
        kn_tensor_free(&y1);
        kn_tensor_free(&y3);
        kn_tensor_free(&yr);
    }

    /* many short jobs back to back: workers spin, sleep and rejoin; any lost
     * or doubled chunk would change some output */
    {
        int64_t N = 300, K = 200;
        struct kn_tensor x = trand(KN_F32, 2, (int64_t[]){ 1, K }, 1.0f), w = trand(KN_BF16, 2, (int64_t[]){ N, K }, 1.0f);
        struct kn_tensor y1, y3;
        kn_tensor_alloc(&y1, NULL, KN_F32, 2, (int64_t[]){ 1, N });
        kn_tensor_alloc(&y3, NULL, KN_F32, 2, (int64_t[]){ 1, N });
        int rc = kn_matmul(be, &y1, &x, &w), same = 1;
        kn_backend_set_threads(be, 3);
        for (int i = 0; i < 2000 && same; i++) {
            memset(y3.data, 0xff, (size_t)N * 4);
            rc |= kn_matmul(be, &y3, &x, &w);
            same = memcmp(y1.data, y3.data, (size_t)N * 4) == 0;
        }
        kn_backend_set_threads(be, 1);
        ok(rc == 0 && same, "2000 back-to-back 3-thread matmuls all equal the 1-thread result");
        kn_tensor_free(&x);
        kn_tensor_free(&w);
        kn_tensor_free(&y1);
        kn_tensor_free(&y3);
    }

    int64_t R = 64, D = 1536;
    struct kn_tensor x = trand(KN_BF16, 2, (int64_t[]){ R, D }, 2.0f), w = trand(KN_F32, 1, (int64_t[]){ D }, 1.0f);
    struct kn_tensor r1 = trand(KN_BF16, 2, (int64_t[]){ R, D }, 1.0f), r3, y1, y3;
    kn_tensor_alloc(&r3, NULL, KN_BF16, 2, (int64_t[]){ R, D });
    memcpy(r3.data, r1.data, (size_t)(R * D) * 2);
    kn_tensor_alloc(&y1, NULL, KN_F32, 2, (int64_t[]){ R, D });
    kn_tensor_alloc(&y3, NULL, KN_F32, 2, (int64_t[]){ R, D });
    int rc = kn_rms_norm(be, &y1, &x, &w, &r1, 1e-6f) | kn_silu_mul(be, &y1, &y1, &x) |
             kn_softmax(be, &y1, &y1, 0.5f, 1);
    kn_backend_set_threads(be, 3);
    rc |= kn_rms_norm(be, &y3, &x, &w, &r3, 1e-6f) | kn_silu_mul(be, &y3, &y3, &x) |
          kn_softmax(be, &y3, &y3, 0.5f, 1);
    kn_backend_set_threads(be, 0);
    ok(rc == 0 && memcmp(y1.data, y3.data, (size_t)(R * D) * 4) == 0 &&
       memcmp(r1.data, r3.data, (size_t)(R * D) * 2) == 0,
       "rms_norm, silu_mul, softmax with 3 threads bitwise equal 1 thread");
    kn_backend_set_threads(be, 1);
    kn_tensor_free(&x);
    kn_tensor_free(&w);
    kn_tensor_free(&r1);
    kn_tensor_free(&r3);
    kn_tensor_free(&y1);
    kn_tensor_free(&y3);
}

static void test_registry(void)
{
    int64_t R, C, ld;
    float buf[64];
    struct kn_tensor t = kn_tensor_host(KN_F32, 3, (int64_t[]){ 2, 3, 4 }, buf);
    ok(kn_tensor_rows(&t, &R, &C, &ld) == 0 && R == 6 && C == 4 && ld == 4, "rows of (2,3,4)");
    struct kn_tensor v = kn_tensor_view(&t, 3, (int64_t[]){ 2, 3, 2 }, (int64_t[]){ 12, 4, 1 }, 1);
    ok(kn_tensor_rows(&v, &R, &C, &ld) == 0 && R == 6 && C == 2 && ld == 4, "rows of a column slice");
    v = kn_tensor_view(&t, 3, (int64_t[]){ 2, 2, 4 }, (int64_t[]){ 12, 4, 1 }, 0);
    ok(kn_tensor_rows(&v, &R, &C, &ld) == -1, "a view whose rows do not nest is rejected");
    v = kn_tensor_view(&t, 2, (int64_t[]){ 4, 2 }, (int64_t[]){ 1, 4 }, 0);
    ok(kn_tensor_rows(&v, &R, &C, &ld) == -1, "a transposed view is rejected");

    ok(kn_backend_get("cpu") != NULL, "cpu backend is registered");
    ok(kn_backend_get("tpu") == NULL, "unknown backend gives NULL");
    const struct kn_backend_ops *cuda = kn_backend_get("cuda");
#ifdef HAVE_CUDA
    ok(cuda != NULL, "cuda backend is registered in a CUDA build");
#else
    ok(cuda == NULL, "cuda backend is NULL in a build without CUDA");
#endif
    const struct kn_backend_ops *a = kn_backend_get("auto");
    ok(a != NULL && (strcmp(a->name, "cpu") == 0 || (cuda && cuda->device_count() > 0)),
       "auto picks %s", a ? a->name : "nothing");
}

int main(void)
{
    log_set_level(LOG_ERR);
    struct kn_backend *be = kn_backend_init("cpu", 0);
    ok(be != NULL, "cpu backend init");
    test_dtypes();
    test_matmul(be);
    test_rms_norm(be);
    test_rope(be);
    test_softmax(be);
    test_elementwise(be);
    for (int trial = 0; trial < 4; trial++)
        test_paged(be, trial);
    test_gather_scatter(be);
    test_moe_route(be);
    test_threads(be);
    test_registry();
    kn_backend_free(be);
    return tap_done();
}
