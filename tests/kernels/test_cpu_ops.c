/*
 * test_cpu_ops.c -- the cpu reference ops against direct double-precision
 * recomputation and known values: bf16/f16 rounding (exhaustive round trips
 * and an independent rint-based reference), matmul per weight dtype, rms_norm
 * with and without the fused residual, rope against the closed formula,
 * softmax (rows sum to 1, causal mask), silu_mul on a fused gate_up view,
 * embed, add with broadcast, convert, and the registry and shape checks.
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
        int64_t M = irand(1, 9), N = irand(1, 70), K = irand(1, 300), pad = trial & 1 ? 5 : 0;
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
    test_registry();
    kn_backend_free(be);
    return tap_done();
}
