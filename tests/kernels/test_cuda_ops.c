/*
 * test_cuda_ops.c -- every cuda op against its cpu twin on random shapes
 * (odd sizes, decode M=1, Qwen3-0.6B-sized rows, column-slice views): the
 * same rounded inputs go to both backends and the outputs must agree within
 * atol + rtol*|ref|; the first 5 mismatches are printed. Prints TAP
 * "1..0 # SKIP no CUDA device" when no device is visible (CI has no GPU).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "log.h"
#include "../unit/tap.h"
#include "util.h"

/* Tolerances. Both sides compute in f32 from identical inputs; they differ
 * by summation order (reductions, cuBLAS tiling), FMA contraction and
 * CUDA's expf (<= 2 ulp). A bf16/f16 output can then round to the
 * neighbouring value: one ulp, 2^-7 (bf16) or 2^-10 (f16) relative. */
#define TOL_F32      1e-5               /* f32 outputs of row/elementwise ops */
#define TOL_BF16     0x1p-7             /* one bf16 ulp */
#define TOL_F16      0x1p-10            /* one f16 ulp */
#define ATOL         1e-6               /* values that cancel to ~0 */
#define ATOL_MATMUL  1e-4               /* f32 dot products of K <= 1024 terms of ~1 */

static struct kn_backend *cpu, *gpu;
static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint32_t rnd32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static float frand(void) { return (float)rnd32() / 4294967296.0f * 2.0f - 1.0f; }
static int64_t irand(int64_t lo, int64_t hi) { return lo + (int64_t)(rnd32() % (uint32_t)(hi - lo + 1)); }

static double rtol_of(enum kn_dtype dt, double f32)
{
    return dt == KN_BF16 ? TOL_BF16 : dt == KN_F16 ? TOL_F16 : f32;
}

static float to_f32(const void *p, enum kn_dtype dt, int64_t i)
{
    const uint16_t *h = p;
    return dt == KN_BF16 ? kn_bf16_to_f32(h[i]) : dt == KN_F16 ? kn_f16_to_f32(h[i])
                                                                : ((const float *)p)[i];
}

/* The same tensor on both backends: <h> on the host, <d> on the device. */
struct twin {
    struct kn_tensor h, d;
};

/* New twin of random values in [-scale, scale), or of <ints> for i32. */
static struct twin twin_new(enum kn_dtype dt, int ndim, const int64_t *shape, float scale,
                            const int32_t *ints)
{
    struct twin t;
    if (kn_tensor_alloc(&t.h, NULL, dt, ndim, shape) < 0 ||
        kn_tensor_alloc(&t.d, gpu, dt, ndim, shape) < 0) {
        diag("twin_new: allocation failed");
        exit(1);
    }
    int64_t n = kn_tensor_nelem(&t.h);
    for (int64_t i = 0; i < n; i++) {
        float v = frand() * scale;
        switch (dt) {
        case KN_BF16: ((uint16_t *)t.h.data)[i] = kn_f32_to_bf16(v); break;
        case KN_F16: ((uint16_t *)t.h.data)[i] = kn_f32_to_f16(v); break;
        case KN_I32: ((int32_t *)t.h.data)[i] = ints[i]; break;
        default: ((float *)t.h.data)[i] = v; break;
        }
    }
    if (kn_tensor_set(&t.d, t.h.data) < 0)
        exit(1);
    return t;
}

/* Copy the host half to the device, so that the next op starts from equal
 * inputs rather than from the previous op's within-tolerance differences. */
static void twin_sync(struct twin *t)
{
    if (kn_tensor_set(&t->d, t->h.data) < 0)
        exit(1);
}

static void twin_free(struct twin *t)
{
    kn_tensor_free(&t->h);
    kn_tensor_free(&t->d);
}

/* Both halves viewed the same way. */
static struct twin twin_view(const struct twin *b, int ndim, const int64_t *shape,
                             const int64_t *stride, int64_t off)
{
    struct twin t = { kn_tensor_view(&b->h, ndim, shape, stride, off),
                      kn_tensor_view(&b->d, ndim, shape, stride, off) };
    return t;
}

/* Device result == host result within atol + rtol*|ref|; contiguous only. */
static int twin_same(const char *what, const struct twin *t, double atol, double rtol)
{
    int64_t n = kn_tensor_nelem(&t->h), bad = 0;
    size_t nb = (size_t)n * kn_dtype_size(t->h.dtype);
    void *got = xmalloc(nb ? nb : 1);
    if (kn_tensor_get(&t->d, got) < 0)
        return ok(0, "%s: download", what);
    for (int64_t i = 0; i < n; i++) {
        double r = to_f32(t->h.data, t->h.dtype, i), g = to_f32(got, t->h.dtype, i);
        if (!(fabs(g - r) <= atol + rtol * fabs(r)) && bad++ < 5)
            diag("%s: [%lld] cuda %.8g cpu %.8g", what, (long long)i, g, r);
    }
    free(got);
    return ok(bad == 0, "%s (%lld elements, %lld mismatches)", what, (long long)n, (long long)bad);
}

/* ---- ops ----------------------------------------------------------------------- */

static void test_matmul(void)
{
    /* (W, x, y) dtypes cuBLAS takes; the last shape is a Qwen3-0.6B MLP up */
    static const enum kn_dtype dts[][3] = {
        { KN_F32, KN_F32, KN_F32 }, { KN_BF16, KN_BF16, KN_BF16 },
        { KN_BF16, KN_BF16, KN_F32 }, { KN_F16, KN_F16, KN_F32 }, { KN_F16, KN_F16, KN_F16 },
    };
    for (int i = 0; i < 12; i++) {
        const enum kn_dtype *dt = dts[i % 5];
        int64_t M = i % 3 == 0 ? 1 : irand(2, 70), N = irand(1, 300), K = irand(1, 1024);
        int64_t pad = i % 4 == 1 ? 7 : 0;
        if (i == 11)
            M = 7, N = 3072, K = 1024, dt = dts[1];
        struct twin xb = twin_new(dt[1], 2, (int64_t[]){ M, K + pad }, 1.0f, NULL);
        struct twin x = twin_view(&xb, 2, (int64_t[]){ M, K }, (int64_t[]){ K + pad, 1 }, pad);
        struct twin w = twin_new(dt[0], 2, (int64_t[]){ N, K }, 1.0f, NULL);
        struct twin y = twin_new(dt[2], 2, (int64_t[]){ M, N }, 1.0f, NULL);
        char what[128];
        snprintf(what, sizeof(what), "matmul W %s (%lld,%lld) x %s%s (%lld) -> %s",
                 kn_dtype_name(dt[0]), (long long)N, (long long)K, kn_dtype_name(dt[1]),
                 pad ? " strided" : "", (long long)M, kn_dtype_name(dt[2]));
        ok(kn_matmul(cpu, &y.h, &x.h, &w.h) == 0 && kn_matmul(gpu, &y.d, &x.d, &w.d) == 0,
           "%s runs", what);
        twin_same(what, &y, ATOL_MATMUL, rtol_of(dt[2], 1e-5));
        twin_free(&xb);
        twin_free(&w);
        twin_free(&y);
    }
    struct twin x = twin_new(KN_F32, 2, (int64_t[]){ 2, 8 }, 1, NULL);
    struct twin w = twin_new(KN_BF16, 2, (int64_t[]){ 3, 8 }, 1, NULL);
    struct twin y = twin_new(KN_F32, 2, (int64_t[]){ 2, 3 }, 1, NULL);
    ok(kn_matmul(gpu, &y.d, &x.d, &w.d) == -1, "cuda matmul refuses bf16 W with f32 x");
    ok(kn_matmul(gpu, &y.d, &x.h, &w.d) == -1, "cuda op refuses a host operand");
    twin_free(&x);
    twin_free(&w);
    twin_free(&y);
}

static void test_rms_norm(void)
{
    for (int i = 0; i < 6; i++) {
        enum kn_dtype dt = i & 1 ? KN_BF16 : KN_F32;
        int64_t R = irand(1, 40), D = i == 5 ? 1024 : irand(1, 4096);
        int fused = i >= 2;
        struct twin x = twin_new(dt, 2, (int64_t[]){ R, D }, 3.0f, NULL);
        struct twin res = twin_new(dt, 2, (int64_t[]){ R, D }, 3.0f, NULL);
        struct twin w = twin_new(KN_BF16, 1, (int64_t[]){ D }, 1.0f, NULL);
        struct twin y = twin_new(dt, 2, (int64_t[]){ R, D }, 1.0f, NULL);
        char what[96];
        snprintf(what, sizeof(what), "rms_norm %s (%lld,%lld)%s", kn_dtype_name(dt),
                 (long long)R, (long long)D, fused ? " + residual" : "");
        ok(kn_rms_norm(cpu, &y.h, &x.h, &w.h, fused ? &res.h : NULL, 1e-6f) == 0 &&
           kn_rms_norm(gpu, &y.d, &x.d, &w.d, fused ? &res.d : NULL, 1e-6f) == 0, "%s runs", what);
        twin_same(what, &y, ATOL, rtol_of(dt, TOL_F32));
        if (fused)
            twin_same("rms_norm residual sum", &res, 0, 0);  /* one rounding of x + res */
        twin_free(&x);
        twin_free(&res);
        twin_free(&w);
        twin_free(&y);
    }
}

static void test_rope(void)
{
    const int64_t P = 4096;
    for (int i = 0; i < 4; i++) {
        enum kn_dtype dt = i & 1 ? KN_BF16 : KN_F32;
        int64_t T = irand(1, 33), H = irand(1, 16), D = i == 3 ? 128 : 2 * irand(1, 64);
        int64_t n_rot = i == 2 ? 2 * irand(1, D / 2) : D;
        int32_t *pv = xmalloc((size_t)T * sizeof(int32_t));
        float *tab = xmalloc((size_t)(P * n_rot) * sizeof(float));
        for (int64_t t = 0; t < T; t++)
            pv[t] = (int32_t)irand(0, P - 1);
        kn_rope_table(tab, (int)P, (int)n_rot, 1000000.0);
        struct twin pos = twin_new(KN_I32, 1, (int64_t[]){ T }, 0, pv);
        struct twin cs;
        kn_tensor_alloc(&cs.d, gpu, KN_F32, 2, (int64_t[]){ P, n_rot });
        cs.h = kn_tensor_host(KN_F32, 2, (int64_t[]){ P, n_rot }, tab);
        kn_tensor_set(&cs.d, tab);
        /* q is the first H heads of a fused qkv row of 2H heads */
        struct twin qkv = twin_new(dt, 2, (int64_t[]){ T, 2 * H * D }, 2.0f, NULL);
        struct twin q = twin_view(&qkv, 3, (int64_t[]){ T, H, D }, (int64_t[]){ 2 * H * D, D, 1 }, 0);
        char what[96];
        snprintf(what, sizeof(what), "rope %s T %lld H %lld D %lld n_rot %lld (qkv slice)",
                 kn_dtype_name(dt), (long long)T, (long long)H, (long long)D, (long long)n_rot);
        ok(kn_rope(cpu, &q.h, &pos.h, &cs.h) == 0 && kn_rope(gpu, &q.d, &pos.d, &cs.d) == 0,
           "%s runs", what);
        twin_same(what, &qkv, ATOL, rtol_of(dt, TOL_F32));
        twin_free(&pos);
        twin_free(&qkv);
        kn_tensor_free(&cs.d);
        free(tab);
        free(pv);
    }
}

static void test_softmax(void)
{
    for (int i = 0; i < 6; i++) {
        enum kn_dtype dt = i & 1 ? KN_BF16 : KN_F32;
        int64_t H = irand(1, 8), T = irand(1, 20), S = T + irand(0, 100);
        if (i == 4)             /* fewer keys than queries: leading rows fully masked */
            T += 4, S = T - 3;
        if (i == 5)             /* long rows take the 1024-thread path */
            S = T + 2500;
        int causal = i >= 2;
        struct twin x = twin_new(dt, 3, (int64_t[]){ H, T, S }, 10.0f, NULL);
        struct twin y = twin_new(dt, 3, (int64_t[]){ H, T, S }, 1.0f, NULL);
        char what[96];
        snprintf(what, sizeof(what), "softmax %s (%lld,%lld,%lld)%s", kn_dtype_name(dt),
                 (long long)H, (long long)T, (long long)S, causal ? " causal" : "");
        ok(kn_softmax(cpu, &y.h, &x.h, 0.088388f, causal) == 0 &&
           kn_softmax(gpu, &y.d, &x.d, 0.088388f, causal) == 0, "%s runs", what);
        twin_same(what, &y, ATOL, rtol_of(dt, TOL_F32));
        twin_free(&x);
        twin_free(&y);
    }
}

static void test_elementwise(void)
{
    for (int i = 0; i < 3; i++) {
        enum kn_dtype dt = i == 1 ? KN_F32 : KN_BF16;
        int64_t R = irand(1, 50), C = i == 2 ? 3072 : irand(1, 2000), V = irand(1, 1000);
        char what[96];

        /* silu_mul on the two halves of a fused gate_up */
        struct twin gu = twin_new(dt, 2, (int64_t[]){ R, 2 * C }, 6.0f, NULL);
        struct twin g = twin_view(&gu, 2, (int64_t[]){ R, C }, (int64_t[]){ 2 * C, 1 }, 0);
        struct twin u = twin_view(&gu, 2, (int64_t[]){ R, C }, (int64_t[]){ 2 * C, 1 }, C);
        struct twin y = twin_new(dt, 2, (int64_t[]){ R, C }, 1.0f, NULL);
        snprintf(what, sizeof(what), "silu_mul %s (%lld,%lld) gate_up slices", kn_dtype_name(dt),
                 (long long)R, (long long)C);
        ok(kn_silu_mul(cpu, &y.h, &g.h, &u.h) == 0 && kn_silu_mul(gpu, &y.d, &g.d, &u.d) == 0,
           "%s runs", what);
        twin_same(what, &y, ATOL, rtol_of(dt, TOL_F32));

        /* add in place, then a broadcast bias row */
        twin_sync(&y);
        struct twin b = twin_new(dt, 2, (int64_t[]){ R, C }, 1.0f, NULL);
        struct twin bias = twin_new(KN_BF16, 1, (int64_t[]){ C }, 1.0f, NULL);
        snprintf(what, sizeof(what), "add %s (%lld,%lld) + bias row", kn_dtype_name(dt),
                 (long long)R, (long long)C);
        ok(kn_add(cpu, &y.h, &y.h, &b.h) == 0 && kn_add(gpu, &y.d, &y.d, &b.d) == 0 &&
           kn_add(cpu, &y.h, &y.h, &bias.h) == 0 && kn_add(gpu, &y.d, &y.d, &bias.d) == 0,
           "%s runs", what);
        twin_same(what, &y, ATOL, rtol_of(dt, TOL_F32));

        /* convert: round to nearest even on both sides, so exact */
        twin_sync(&y);
        static const enum kn_dtype to[] = { KN_F16, KN_BF16, KN_F32 };
        struct twin c = twin_new(to[i], 2, (int64_t[]){ R, C }, 1.0f, NULL);
        snprintf(what, sizeof(what), "convert %s -> %s", kn_dtype_name(dt), kn_dtype_name(to[i]));
        ok(kn_convert(cpu, &c.h, &y.h) == 0 && kn_convert(gpu, &c.d, &y.d) == 0, "%s runs", what);
        twin_same(what, &c, 0, 0);

        /* embed: a gather, exact */
        int32_t *idv = xmalloc((size_t)R * sizeof(int32_t));
        for (int64_t r = 0; r < R; r++)
            idv[r] = (int32_t)irand(0, V - 1);
        struct twin ids = twin_new(KN_I32, 1, (int64_t[]){ R }, 0, idv);
        struct twin tab = twin_new(KN_BF16, 2, (int64_t[]){ V, C }, 1.0f, NULL);
        snprintf(what, sizeof(what), "embed bf16 (%lld,%lld) -> %s", (long long)V, (long long)C,
                 kn_dtype_name(dt));
        ok(kn_embed(cpu, &y.h, &tab.h, &ids.h) == 0 && kn_embed(gpu, &y.d, &tab.d, &ids.d) == 0,
           "%s runs", what);
        twin_same(what, &y, 0, 0);

        free(idv);
        twin_free(&gu);
        twin_free(&y);
        twin_free(&b);
        twin_free(&bias);
        twin_free(&c);
        twin_free(&ids);
        twin_free(&tab);
    }
}

int main(void)
{
    const struct kn_backend_ops *ops;
    int n;
    log_set_level(LOG_ERR);
    ops = kn_backend_get("cuda");
    if (ops == NULL || (n = ops->device_count()) <= 0)
        tap_skip_all("no CUDA device");
    diag("%d CUDA device(s)", n);
    cpu = kn_backend_init("cpu", 0);
    gpu = kn_backend_init("cuda", 0);
    if (cpu == NULL || gpu == NULL) {
        ok(0, "backend init");
        return tap_done();
    }
    test_matmul();
    test_rms_norm();
    test_rope();
    test_softmax();
    test_elementwise();
    ok(kn_backend_sync(gpu) == 0, "stream has no pending error");
    kn_backend_free(gpu);
    kn_backend_free(cpu);
    return tap_done();
}
