/*
 * test_cuda_ops.c -- every cuda op against its cpu twin on random shapes
 * (odd sizes, decode M=1, Qwen3-0.6B-sized rows, column-slice views; for
 * the chat worker ops also block-boundary and long paged contexts, repeated
 * and bad indices, routing ties; for the encoder ops layer_norm, act and
 * packed seq_attention odd shapes, GQA, empty sequences, in-place and
 * sliced operands; for the speech ops seq_dwconv at clip boundaries, short
 * and empty clips, column slices, and row_argmax with ties and logsumexp;
 * these outputs poisoned with NaN first): the
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
    struct twin w = twin_new(KN_F16, 2, (int64_t[]){ 3, 8 }, 1, NULL);
    struct twin y = twin_new(KN_F32, 2, (int64_t[]){ 2, 3 }, 1, NULL);
    ok(kn_matmul(gpu, &y.d, &x.d, &w.d) == -1, "cuda matmul refuses f16 W with f32 x");
    ok(kn_matmul(gpu, &y.d, &x.h, &w.d) == -1, "cuda op refuses a host operand");
    twin_free(&x);
    twin_free(&w);
    twin_free(&y);
}

/* bf16 W with f32 x and y (the model's weights as stored): the GEMV for
 * small M, the widened-slab SGEMM above; odd K takes the scalar tail, K a
 * multiple of 8 the 16-byte loads; large N the 2- and 4-row warps. */
static void test_matmul_bf16w(void)
{
    static const int64_t Ms[] = { 1, 2, 3, 7, 8, 16, 33, 128 };
    for (int i = 0; i < 8 * 3; i++) {
        int64_t M = Ms[i % 8], N, K, pad = 0;
        switch (i / 8) {
        case 0: N = 2 * irand(1, 150) + 1, K = 2 * irand(1, 500) + 1; break;   /* odd */
        case 1: N = irand(1, 300), K = 8 * irand(1, 128), pad = i % 2 ? 4 : 0; break;
        default: N = i % 2 ? 2201 : 8500, K = i % 3 ? 1024 : 1000; break;
        }
        struct twin xb = twin_new(KN_F32, 2, (int64_t[]){ M, K + pad }, 1.0f, NULL);
        struct twin x = twin_view(&xb, 2, (int64_t[]){ M, K }, (int64_t[]){ K + pad, 1 }, pad);
        struct twin w = twin_new(KN_BF16, 2, (int64_t[]){ N, K }, 1.0f, NULL);
        struct twin y = twin_new(KN_F32, 2, (int64_t[]){ M, N }, 1.0f, NULL);
        char what[128];
        snprintf(what, sizeof(what), "matmul W bf16 (%lld,%lld) x f32%s (%lld) -> f32",
                 (long long)N, (long long)K, pad ? " strided" : "", (long long)M);
        ok(kn_matmul(cpu, &y.h, &x.h, &w.h) == 0 && kn_matmul(gpu, &y.d, &x.d, &w.d) == 0,
           "%s runs", what);
        twin_same(what, &y, ATOL_MATMUL, 1e-5);
        twin_free(&xb);
        twin_free(&w);
        twin_free(&y);
    }
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

/* ---- chat worker ops ------------------------------------------------------------ */

/* Both halves filled with all-ones bytes (NaN in every float dtype), so an
 * element the op does not write shows as a mismatch. */
static void twin_poison(struct twin *t)
{
    size_t nb = (size_t)kn_tensor_nelem(&t->h) * kn_dtype_size(t->h.dtype);
    memset(t->h.data, 0xff, nb);
    if (kn_tensor_set(&t->d, t->h.data) < 0)
        exit(1);
}

static void test_kv_store(void)
{
    static const enum kn_dtype cdt[] = { KN_BF16, KN_F16, KN_F32 };
    for (int i = 0; i < 6; i++) {
        enum kn_dtype kdt = i & 1 ? KN_BF16 : KN_F32, c = cdt[i % 3];
        int64_t T = i == 0 ? 1 : irand(2, 40), Hk = irand(1, 8), D = i == 5 ? 128 : irand(1, 80);
        int64_t n_slots = T + irand(0, 50), H = irand(1, 4) * Hk;
        int32_t *sl = xmalloc((size_t)T * sizeof(int32_t));
        for (int64_t t = 0; t < T; t++)     /* distinct slots: a stride through the cache */
            sl[t] = (int32_t)((t * 7 + 3) % n_slots);
        int clash = 0;
        for (int64_t a = 0; a < T; a++)
            for (int64_t b = a + 1; b < T; b++)
                clash |= sl[a] == sl[b];
        if (clash)
            for (int64_t t = 0; t < T; t++)
                sl[t] = (int32_t)t;
        if (i == 4)
            sl[T - 1] = (int32_t)n_slots;   /* out of range: skipped on both (cpu: -1) */
        struct twin slots = twin_new(KN_I32, 1, (int64_t[]){ T }, 0, sl);
        /* k and v are head slices of a fused qkv (T, (H + 2 Hk) D) */
        int64_t W = (H + 2 * Hk) * D;
        struct twin qkv = twin_new(kdt, 2, (int64_t[]){ T, W }, 2.0f, NULL);
        struct twin k = twin_view(&qkv, 3, (int64_t[]){ T, Hk, D }, (int64_t[]){ W, D, 1 }, H * D);
        struct twin v = twin_view(&qkv, 3, (int64_t[]){ T, Hk, D }, (int64_t[]){ W, D, 1 },
                                  (H + Hk) * D);
        struct twin kc = twin_new(c, 3, (int64_t[]){ n_slots, Hk, D }, 1.0f, NULL);
        struct twin vc = twin_new(c, 3, (int64_t[]){ n_slots, Hk, D }, 1.0f, NULL);
        char what[128];
        snprintf(what, sizeof(what), "kv_store %s -> %s cache T %lld Hkv %lld D %lld%s",
                 kn_dtype_name(kdt), kn_dtype_name(c), (long long)T, (long long)Hk, (long long)D,
                 i == 4 ? " (one bad slot)" : "");
        int rc = kn_kv_store(cpu, &kc.h, &vc.h, &k.h, &v.h, &slots.h);
        ok(rc == (i == 4 ? -1 : 0) && kn_kv_store(gpu, &kc.d, &vc.d, &k.d, &v.d, &slots.d) == 0,
           "%s runs", what);
        twin_same(what, &kc, 0, 0);             /* a conversion: exact */
        twin_same("kv_store v cache", &vc, 0, 0);
        twin_free(&slots);
        twin_free(&qkv);
        twin_free(&kc);
        twin_free(&vc);
        free(sl);
    }
}

/* One paged attention trial: <ns> sequences of lengths len[], each with its
 * last n_new[] tokens as queries (decode: 1), blocks scattered through the
 * cache. bad: 1 = a token of an unknown sequence, 2 = a hole in a block table. */
static void attn_case(const char *tag, int ns, const int *len, const int *n_new, int64_t H,
                      int64_t Hk, int64_t D, int bs, int window, enum kn_dtype qdt,
                      enum kn_dtype cdt, enum kn_dtype odt, int bad)
{
    int max_blocks = 0, total_blocks = 0, T = 0;
    for (int s = 0; s < ns; s++) {
        int nb = (len[s] + bs - 1) / bs;
        max_blocks = nb > max_blocks ? nb : max_blocks;
        total_blocks += nb;
        T += n_new[s];
    }
    max_blocks += 1;                            /* a spare column, as real tables have */
    int64_t n_blocks = total_blocks + 3, n_slots = n_blocks * bs;
    int32_t *perm = xmalloc((size_t)n_blocks * sizeof(int32_t));
    int32_t *bt = xmalloc((size_t)ns * max_blocks * sizeof(int32_t));
    int32_t *seq = xmalloc((size_t)T * sizeof(int32_t)), *pos = xmalloc((size_t)T * sizeof(int32_t));
    for (int64_t b = 0; b < n_blocks; b++)
        perm[b] = (int32_t)b;
    for (int64_t b = n_blocks - 1; b > 0; b--) {
        int64_t j = irand(0, b);
        int32_t x = perm[b];
        perm[b] = perm[j];
        perm[j] = x;
    }
    for (int s = 0, used = 0, t = 0; s < ns; s++) {
        int nb = (len[s] + bs - 1) / bs;
        for (int j = 0; j < max_blocks; j++)
            bt[s * max_blocks + j] = j < nb ? perm[used + j] : -1;
        used += nb;
        for (int j = 0; j < n_new[s]; j++, t++) {
            seq[t] = s;
            pos[t] = len[s] - n_new[s] + j;
        }
    }
    if (bad == 1)
        seq[T - 1] = ns;
    if (bad == 2)
        bt[0] = -1;
    struct twin tb = twin_new(KN_I32, 2, (int64_t[]){ ns, max_blocks }, 0, bt);
    struct twin ts = twin_new(KN_I32, 1, (int64_t[]){ T }, 0, seq);
    struct twin tp = twin_new(KN_I32, 1, (int64_t[]){ T }, 0, pos);
    /* q is the first H heads of a fused qkv row */
    int64_t W = (H + 2 * Hk) * D;
    struct twin qkv = twin_new(qdt, 2, (int64_t[]){ T, W }, 2.0f, NULL);
    struct twin q = twin_view(&qkv, 3, (int64_t[]){ T, H, D }, (int64_t[]){ W, D, 1 }, 0);
    struct twin kc = twin_new(cdt, 3, (int64_t[]){ n_slots, Hk, D }, 2.0f, NULL);
    struct twin vc = twin_new(cdt, 3, (int64_t[]){ n_slots, Hk, D }, 1.0f, NULL);
    struct twin out = twin_new(odt, 3, (int64_t[]){ T, H, D }, 1.0f, NULL);
    twin_poison(&out);
    float scale = (float)(1.0 / sqrt((double)D));
    char what[192];
    snprintf(what, sizeof(what), "paged_attention %s: q %s cache %s out %s, %d seqs, T %d, "
             "H %lld/%lld D %lld bs %d max len %d window %d%s", tag, kn_dtype_name(qdt),
             kn_dtype_name(cdt), kn_dtype_name(odt), ns, T, (long long)H, (long long)Hk,
             (long long)D, bs, len[0], window, bad ? " (bad index: zero rows)" : "");
    int rc = kn_paged_attention(cpu, &out.h, &q.h, &kc.h, &vc.h, &tb.h, &ts.h, &tp.h, bs, scale,
                                window);
    ok(rc == (bad ? -1 : 0) &&
       kn_paged_attention(gpu, &out.d, &q.d, &kc.d, &vc.d, &tb.d, &ts.d, &tp.d, bs, scale,
                          window) == 0, "%s runs", what);
    /* f32 sums in another order, online rescaling: far under 1e-4 of |v| ~ 1 */
    twin_same(what, &out, 2e-5, rtol_of(odt, 1e-4));
    twin_free(&tb);
    twin_free(&ts);
    twin_free(&tp);
    twin_free(&qkv);
    twin_free(&kc);
    twin_free(&vc);
    twin_free(&out);
    free(perm);
    free(bt);
    free(seq);
    free(pos);
}

static void test_paged_attention(void)
{
    /* decode: one query per sequence; lengths at and around block boundaries */
    attn_case("decode", 3, (int[]){ 16, 17, 1 }, (int[]){ 1, 1, 1 }, 8, 2, 64, 16, 0,
              KN_F32, KN_F32, KN_F32, 0);
    attn_case("decode", 4, (int[]){ 32, 31, 33, 5 }, (int[]){ 1, 1, 1, 1 }, 16, 8, 128, 16, 0,
              KN_BF16, KN_BF16, KN_BF16, 0);
    attn_case("decode GQA 6", 2, (int[]){ 100, 7 }, (int[]){ 1, 1 }, 12, 2, 80, 7, 0,
              KN_F32, KN_F16, KN_F32, 0);
    /* long contexts: the split over KV ranges with the combine pass */
    attn_case("decode long", 1, (int[]){ 3001 }, (int[]){ 1 }, 32, 8, 128, 16, 0,
              KN_F32, KN_BF16, KN_F32, 0);
    attn_case("decode long", 2, (int[]){ 2048, 1537 }, (int[]){ 1, 1 }, 4, 4, 256, 32, 0,
              KN_F32, KN_F32, KN_F32, 0);
    attn_case("decode long window", 1, (int[]){ 2500 }, (int[]){ 1 }, 8, 1, 64, 16, 100,
              KN_F32, KN_BF16, KN_F32, 0);
    attn_case("decode G 32", 1, (int[]){ 700 }, (int[]){ 1 }, 32, 1, 32, 16, 0,
              KN_F32, KN_F32, KN_F32, 0);
    /* prefill: tiles of tokens sharing K/V chunks, causal, runs of several sequences */
    attn_case("prefill", 1, (int[]){ 77 }, (int[]){ 77 }, 4, 2, 16, 4, 0,
              KN_F32, KN_F32, KN_F32, 0);
    attn_case("prefill", 3, (int[]){ 40, 9, 33 }, (int[]){ 40, 9, 20 }, 16, 8, 128, 16, 0,
              KN_BF16, KN_BF16, KN_F32, 0);
    attn_case("chunked prefill + decode", 3, (int[]){ 130, 65, 64 }, (int[]){ 30, 1, 1 }, 6, 1,
              48, 8, 0, KN_F32, KN_F32, KN_BF16, 0);
    attn_case("prefill window", 2, (int[]){ 90, 50 }, (int[]){ 90, 50 }, 4, 2, 32, 4, 8,
              KN_F32, KN_F32, KN_F32, 0);
    attn_case("prefill odd", 2, (int[]){ 37, 3 }, (int[]){ 37, 3 }, 3, 3, 33, 1, 0,
              KN_F32, KN_F32, KN_F32, 0);
    attn_case("prefill long", 1, (int[]){ 1100 }, (int[]){ 300 }, 16, 8, 128, 16, 0,
              KN_BF16, KN_BF16, KN_BF16, 0);
    attn_case("decode", 3, (int[]){ 20, 21, 5 }, (int[]){ 1, 1, 1 }, 4, 2, 32, 4, 0,
              KN_F32, KN_F32, KN_F32, 1);
    attn_case("prefill", 2, (int[]){ 20, 21 }, (int[]){ 20, 21 }, 4, 2, 32, 4, 0,
              KN_F32, KN_F32, KN_F32, 2);
    attn_case("decode long", 2, (int[]){ 2000, 30 }, (int[]){ 1, 1 }, 4, 2, 32, 16, 0,
              KN_F32, KN_F32, KN_F32, 2);
}

static void test_gather_scatter(void)
{
    for (int i = 0; i < 6; i++) {
        enum kn_dtype xdt = i & 1 ? KN_BF16 : KN_F32, ydt = i % 3 == 2 ? KN_BF16 : KN_F32;
        int64_t M = irand(1, 60), n = i == 0 ? 1 : irand(1, 100), D = i == 5 ? 2048 : irand(1, 700);
        int32_t *idx = xmalloc((size_t)n * sizeof(int32_t));
        for (int64_t r = 0; r < n; r++)
            idx[r] = (int32_t)irand(0, M - 1);  /* repeats on purpose */
        if (i == 3)
            idx[n - 1] = (int32_t)M;            /* out of range */
        struct twin ti = twin_new(KN_I32, 1, (int64_t[]){ n }, 0, idx);
        struct twin x = twin_new(xdt, 2, (int64_t[]){ M, D }, 3.0f, NULL);
        struct twin y = twin_new(ydt, 2, (int64_t[]){ n, D }, 1.0f, NULL);
        char what[128];
        twin_poison(&y);
        snprintf(what, sizeof(what), "gather_rows %s (%lld,%lld) -> %s %lld rows%s",
                 kn_dtype_name(xdt), (long long)M, (long long)D, kn_dtype_name(ydt), (long long)n,
                 i == 3 ? " (one bad index: zero row)" : "");
        int rc = kn_gather_rows(cpu, &y.h, &x.h, &ti.h);
        ok(rc == (i == 3 ? -1 : 0) && kn_gather_rows(gpu, &y.d, &x.d, &ti.d) == 0, "%s runs", what);
        twin_same(what, &y, 0, 0);

        /* scatter back: x2 (n, D) into y2 (M, D), repeated rows add in index order */
        struct twin x2 = twin_new(xdt, 2, (int64_t[]){ n, D }, 3.0f, NULL);
        struct twin y2 = twin_new(ydt, 2, (int64_t[]){ M, D }, 1.0f, NULL);
        struct twin w = twin_new(KN_F32, 1, (int64_t[]){ n }, 1.0f, NULL);
        snprintf(what, sizeof(what), "scatter_add_rows %s %lld rows -> %s (%lld,%lld)%s%s",
                 kn_dtype_name(xdt), (long long)n, kn_dtype_name(ydt), (long long)M, (long long)D,
                 i & 2 ? " weighted" : "", i == 3 ? " (one bad index: skipped)" : "");
        rc = kn_scatter_add_rows(cpu, &y2.h, &x2.h, &ti.h, i & 2 ? &w.h : NULL);
        ok(rc == (i == 3 ? -1 : 0) &&
           kn_scatter_add_rows(gpu, &y2.d, &x2.d, &ti.d, i & 2 ? &w.d : NULL) == 0, "%s runs", what);
        twin_same(what, &y2, 0, 0);             /* same adds in the same order: exact */
        twin_free(&ti);
        twin_free(&x);
        twin_free(&y);
        twin_free(&x2);
        twin_free(&y2);
        twin_free(&w);
        free(idx);
    }
}

static void test_moe_route(void)
{
    static const int64_t Es[] = { 8, 60, 128, 129, 512, 7 };
    static const int ks[] = { 2, 4, 8, 3, 10, 7 };
    for (int i = 0; i < 6; i++) {
        enum kn_dtype dt = i & 1 ? KN_BF16 : KN_F32;
        int64_t E = Es[i], T = i == 0 ? 1 : irand(2, 70);
        int k = ks[i], norm = i % 3 != 1;
        /* bf16 logits in a small range: exact ties between experts */
        struct twin lg = twin_new(dt, 2, (int64_t[]){ T, E }, i & 1 ? 0.05f : 4.0f, NULL);
        int32_t *zero = xcalloc((size_t)(T * k), sizeof(int32_t));
        struct twin ids = twin_new(KN_I32, 2, (int64_t[]){ T, k }, 0, zero);
        free(zero);
        struct twin w = twin_new(KN_F32, 2, (int64_t[]){ T, k }, 1.0f, NULL);
        twin_poison(&ids);
        twin_poison(&w);
        char what[128];
        snprintf(what, sizeof(what), "moe_route %s T %lld E %lld k %d%s", kn_dtype_name(dt),
                 (long long)T, (long long)E, k, norm ? " norm" : "");
        ok(kn_moe_route(cpu, &ids.h, &w.h, &lg.h, k, norm) == 0 &&
           kn_moe_route(gpu, &ids.d, &w.d, &lg.d, k, norm) == 0, "%s runs", what);
        /* ids compared as bits: equal ids, ties to the lower id on both */
        int32_t *got = xmalloc((size_t)(T * k) * sizeof(int32_t));
        int64_t diff = 0;
        kn_tensor_get(&ids.d, got);
        for (int64_t j = 0; j < T * k; j++)
            if (got[j] != ((int32_t *)ids.h.data)[j] && diff++ < 5)
                diag("moe_route ids [%lld] cuda %d cpu %d", (long long)j, got[j],
                     ((int32_t *)ids.h.data)[j]);
        ok(diff == 0, "%s: ids identical (%lld differ)", what, (long long)diff);
        twin_same(what, &w, 1e-7, 1e-5);
        free(got);
        twin_free(&lg);
        twin_free(&ids);
        twin_free(&w);
    }
}

/* ---- encoder ops (issue 7) -------------------------------------------------------- */

/* layer_norm: f32/bf16/f16 rows, odd and bge-m3 widths, with and without
 * bias, bf16 or f32 weights, in place and from a column slice; act: the three
 * activations on strided rows and in place. Outputs poisoned first. */
static void test_layer_norm_act(void)
{
    static const enum kn_dtype dts[] = { KN_F32, KN_BF16, KN_F16 };
    for (int i = 0; i < 9; i++) {
        enum kn_dtype dt = dts[i % 3], wdt = i & 1 ? KN_BF16 : KN_F32;
        int64_t R = i == 0 ? 1 : irand(2, 40), D = i == 3 ? 1 : i == 4 ? 1024 : i == 5 ? 4099 :
                                                   irand(2, 3000);
        int has_b = i != 2 && i != 7, inplace = i >= 6, pad = i == 1 || i == 8 ? 5 : 0;
        struct twin xb = twin_new(dt, 2, (int64_t[]){ R, D + pad }, 3.0f, NULL);
        struct twin x = twin_view(&xb, 2, (int64_t[]){ R, D }, (int64_t[]){ D + pad, 1 }, pad);
        struct twin w = twin_new(wdt, 1, (int64_t[]){ D }, 1.5f, NULL);
        struct twin b = twin_new(wdt, 1, (int64_t[]){ D }, 1.0f, NULL);
        struct twin yo = twin_new(dt, 2, (int64_t[]){ R, D }, 1.0f, NULL);
        struct twin *y = inplace ? &xb : &yo;
        if (!inplace)
            twin_poison(&yo);
        char what[128];
        snprintf(what, sizeof(what), "layer_norm %s (%lld,%lld) w %s%s%s%s", kn_dtype_name(dt),
                 (long long)R, (long long)D, kn_dtype_name(wdt), has_b ? " + bias" : " no bias",
                 pad ? " column slice" : "", inplace ? " in place" : "");
        struct twin *yv = inplace ? &x : y;
        ok(kn_layer_norm(cpu, &yv->h, &x.h, &w.h, has_b ? &b.h : NULL, 1e-5f) == 0 &&
           kn_layer_norm(gpu, &yv->d, &x.d, &w.d, has_b ? &b.d : NULL, 1e-5f) == 0,
           "%s runs", what);
        /* f32 vs double sums: a few f32 ulps of terms ~3 that may cancel with b */
        twin_same(what, y, 4e-6, rtol_of(dt, TOL_F32));
        twin_free(&xb);
        twin_free(&w);
        twin_free(&b);
        twin_free(&yo);
    }
    static const char *names[] = { "gelu_erf", "tanh", "relu" };
    for (int i = 0; i < 9; i++) {
        enum kn_dtype dt = dts[i % 3];
        int act = i % KN_ACT_COUNT, inplace = i >= 6;
        int64_t R = i == 0 ? 1 : irand(2, 50), C = i == 3 ? 1 : i == 4 ? 4096 : irand(2, 3000);
        int64_t pad = i == 1 || i == 5 ? 3 : 0;
        struct twin xb = twin_new(dt, 2, (int64_t[]){ R, C + pad }, 6.0f, NULL);
        struct twin x = twin_view(&xb, 2, (int64_t[]){ R, C }, (int64_t[]){ C + pad, 1 }, 0);
        struct twin yo = twin_new(dt, 2, (int64_t[]){ R, C }, 1.0f, NULL);
        twin_poison(&yo);
        struct twin *y = inplace ? &xb : &yo, *yv = inplace ? &x : &yo;
        char what[128];
        snprintf(what, sizeof(what), "act %s %s (%lld,%lld)%s%s", names[act], kn_dtype_name(dt),
                 (long long)R, (long long)C, pad ? " strided" : "", inplace ? " in place" : "");
        ok(kn_act(cpu, &yv->h, &x.h, (enum kn_act)act) == 0 &&
           kn_act(gpu, &yv->d, &x.d, (enum kn_act)act) == 0, "%s runs", what);
        /* erff/tanhf: <= 2 ulp each side; gelu's 1 + erf cancels for x << 0,
         * which |x| * 2^-23 absolute bounds (|x| < 6) */
        twin_same(what, y, 1e-6, rtol_of(dt, TOL_F32));
        twin_free(&xb);
        twin_free(&yo);
    }
}

/* One packed bidirectional attention trial: <ns> sequences of lengths len[]
 * (0 allowed), q/k/v head slices of a fused qkv, out poisoned. */
static void seq_attn_case(const char *tag, int ns, const int *len, int64_t H, int64_t Hk,
                          int64_t D, enum kn_dtype qdt, enum kn_dtype odt)
{
    int32_t *st = xmalloc((size_t)(ns + 1) * sizeof(int32_t));
    int64_t T = 0, Lmax = 0;
    for (int s = 0; s < ns; s++) {
        st[s] = (int32_t)T;
        T += len[s];
        Lmax = len[s] > Lmax ? len[s] : Lmax;
    }
    st[ns] = (int32_t)T;
    struct twin ts = twin_new(KN_I32, 1, (int64_t[]){ ns + 1 }, 0, st);
    int64_t W = (H + 2 * Hk) * D;
    struct twin qkv = twin_new(qdt, 2, (int64_t[]){ T, W }, 2.0f, NULL);
    struct twin q = twin_view(&qkv, 3, (int64_t[]){ T, H, D }, (int64_t[]){ W, D, 1 }, 0);
    struct twin k = twin_view(&qkv, 3, (int64_t[]){ T, Hk, D }, (int64_t[]){ W, D, 1 }, H * D);
    struct twin v = twin_view(&qkv, 3, (int64_t[]){ T, Hk, D }, (int64_t[]){ W, D, 1 },
                              (H + Hk) * D);
    struct twin out = twin_new(odt, 3, (int64_t[]){ T, H, D }, 1.0f, NULL);
    twin_poison(&out);
    float scale = (float)(1.0 / sqrt((double)D));
    char what[192];
    snprintf(what, sizeof(what), "seq_attention %s: q %s out %s, %d seqs, T %lld (longest "
             "%lld), H %lld/%lld D %lld", tag, kn_dtype_name(qdt), kn_dtype_name(odt), ns,
             (long long)T, (long long)Lmax, (long long)H, (long long)Hk, (long long)D);
    ok(kn_seq_attention(cpu, &out.h, &q.h, &k.h, &v.h, &ts.h, scale) == 0 &&
       kn_seq_attention(gpu, &out.d, &q.d, &k.d, &v.d, &ts.d, scale) == 0, "%s runs", what);
    /* f32 sums in another order, online rescaling: far under 1e-4 of |v| ~ 1 */
    twin_same(what, &out, 2e-5, rtol_of(odt, 1e-4));
    twin_free(&ts);
    twin_free(&qkv);
    twin_free(&out);
    free(st);
}

static void test_seq_attention(void)
{
    seq_attn_case("one token", 1, (int[]){ 1 }, 4, 4, 64, KN_F32, KN_F32);
    seq_attn_case("chunk edges", 4, (int[]){ 31, 32, 33, 1 }, 4, 2, 64, KN_F32, KN_F32);
    seq_attn_case("bge-m3 heads", 3, (int[]){ 120, 7, 64 }, 16, 16, 64, KN_F32, KN_F32);
    seq_attn_case("many short", 12, (int[]){ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 19 }, 3, 3, 33,
                  KN_F32, KN_F32);
    seq_attn_case("empty seqs", 5, (int[]){ 0, 17, 0, 0, 5 }, 2, 1, 16, KN_F32, KN_F32);
    seq_attn_case("GQA 4", 2, (int[]){ 50, 21 }, 8, 2, 128, KN_BF16, KN_F32);
    seq_attn_case("G 32", 2, (int[]){ 40, 3 }, 32, 1, 32, KN_F32, KN_BF16);
    seq_attn_case("D 256", 2, (int[]){ 45, 70 }, 4, 4, 256, KN_F32, KN_F32);
    seq_attn_case("odd D", 2, (int[]){ 13, 29 }, 5, 5, 7, KN_F16, KN_F16);
    seq_attn_case("D 1", 1, (int[]){ 9 }, 2, 2, 1, KN_F32, KN_F32);
    seq_attn_case("long", 2, (int[]){ 700, 300 }, 2, 1, 64, KN_BF16, KN_BF16);
    /* refusals: D over the register budget; a host operand */
    struct twin q = twin_new(KN_F32, 3, (int64_t[]){ 2, 1, 260 }, 1.0f, NULL);
    struct twin o = twin_new(KN_F32, 3, (int64_t[]){ 2, 1, 260 }, 1.0f, NULL);
    struct twin ts = twin_new(KN_I32, 1, (int64_t[]){ 2 }, 0, (int32_t[]){ 0, 2 });
    ok(kn_seq_attention(gpu, &o.d, &q.d, &q.d, &q.d, &ts.d, 1.0f) == -1,
       "cuda seq_attention refuses D 260 (> %d)", 256);
    ok(kn_seq_attention(gpu, &o.d, &q.d, &q.d, &q.d, &ts.h, 1.0f) == -1,
       "cuda seq_attention refuses a host seq_start");
    twin_free(&q);
    twin_free(&o);
    twin_free(&ts);
}

/* ---- speech ops (issue 8) ------------------------------------------------------- */

/* One seq_dwconv trial: <ns> clips of lengths len[] (0 allowed), x the V
 * slice of a fused qkv (T, 3C) as SAN-M reads it, y poisoned. */
static void dwconv_case(const char *tag, int ns, const int *len, int64_t C, int64_t K, int left,
                        int add_x, enum kn_dtype xdt, enum kn_dtype wdt, enum kn_dtype ydt)
{
    int32_t *st = xmalloc((size_t)(ns + 1) * sizeof(int32_t));
    int64_t T = 0;
    for (int s = 0; s < ns; s++) {
        st[s] = (int32_t)T;
        T += len[s];
    }
    st[ns] = (int32_t)T;
    struct twin ts = twin_new(KN_I32, 1, (int64_t[]){ ns + 1 }, 0, st);
    struct twin xb = twin_new(xdt, 2, (int64_t[]){ T, 3 * C }, 2.0f, NULL);
    struct twin x = twin_view(&xb, 2, (int64_t[]){ T, C }, (int64_t[]){ 3 * C, 1 }, 2 * C);
    struct twin w = twin_new(wdt, 2, (int64_t[]){ C, K }, 0.5f, NULL);
    struct twin y = twin_new(ydt, 2, (int64_t[]){ T, C }, 1.0f, NULL);
    twin_poison(&y);
    char what[192];
    snprintf(what, sizeof(what), "seq_dwconv %s: x %s w %s y %s, %d clips, T %lld C %lld K %lld "
             "left %d%s", tag, kn_dtype_name(xdt), kn_dtype_name(wdt), kn_dtype_name(ydt), ns,
             (long long)T, (long long)C, (long long)K, left, add_x ? " + x" : "");
    ok(kn_seq_dwconv(cpu, &y.h, &x.h, &w.h, &ts.h, left, add_x) == 0 &&
       kn_seq_dwconv(gpu, &y.d, &x.d, &w.d, &ts.d, left, add_x) == 0, "%s runs", what);
    /* K <= 31 products of terms <= 2 * 0.5, summed in the same order; FMA */
    twin_same(what, &y, 2e-6, rtol_of(ydt, TOL_F32));
    twin_free(&ts);
    twin_free(&xb);
    twin_free(&w);
    twin_free(&y);
    free(st);
}

static void row_argmax_case(const char *tag, int64_t R, int64_t V, int pad, int with_lse,
                            enum kn_dtype dt, float scale)
{
    struct twin xb = twin_new(dt, 2, (int64_t[]){ R, V + pad }, scale, NULL);
    struct twin x = twin_view(&xb, 2, (int64_t[]){ R, V }, (int64_t[]){ V + pad, 1 }, pad);
    int32_t *zero = xcalloc((size_t)R + 1, sizeof(int32_t));
    struct twin ids = twin_new(KN_I32, 1, (int64_t[]){ R }, 0, zero);
    struct twin lse = twin_new(KN_F32, 1, (int64_t[]){ R }, 1.0f, NULL);
    free(zero);
    twin_poison(&ids);
    twin_poison(&lse);
    char what[160];
    snprintf(what, sizeof(what), "row_argmax %s: %s (%lld,%lld)%s%s", tag, kn_dtype_name(dt),
             (long long)R, (long long)V, pad ? " column slice" : "", with_lse ? " + lse" : "");
    ok(kn_row_argmax(cpu, &ids.h, with_lse ? &lse.h : NULL, &x.h) == 0 &&
       kn_row_argmax(gpu, &ids.d, with_lse ? &lse.d : NULL, &x.d) == 0, "%s runs", what);
    int32_t *got = xmalloc((size_t)R * sizeof(int32_t) + 1);
    int64_t diff = 0;
    kn_tensor_get(&ids.d, got);
    for (int64_t r = 0; r < R; r++)
        if (got[r] != ((int32_t *)ids.h.data)[r] && diff++ < 5)
            diag("row_argmax ids [%lld] cuda %d cpu %d", (long long)r, got[r],
                 ((int32_t *)ids.h.data)[r]);
    ok(diff == 0, "%s: ids identical, ties to the lowest index (%lld differ)", what,
       (long long)diff);
    if (with_lse)   /* f32 vs double sum of <= 30000 terms in (0, 1] */
        twin_same(what, &lse, 1e-5, 2e-6);
    free(got);
    twin_free(&xb);
    twin_free(&ids);
    twin_free(&lse);
}

static void test_asr_ops(void)
{
    dwconv_case("SAN-M", 3, (int[]){ 40, 7, 23 }, 64, 11, 5, 1, KN_F32, KN_F32, KN_F32);
    dwconv_case("shift", 2, (int[]){ 13, 30 }, 64, 5, 3, 1, KN_F32, KN_F32, KN_F32);
    dwconv_case("clips shorter than K", 6, (int[]){ 1, 2, 3, 4, 5, 20 }, 37, 11, 5, 1, KN_F32,
                KN_F32, KN_F32);
    dwconv_case("empty clips", 5, (int[]){ 0, 9, 0, 0, 6 }, 33, 7, 3, 0, KN_F32, KN_F32, KN_F32);
    dwconv_case("left 0", 2, (int[]){ 12, 17 }, 300, 4, 0, 1, KN_BF16, KN_BF16, KN_F32);
    dwconv_case("left K-1", 2, (int[]){ 12, 17 }, 5, 6, 5, 0, KN_F16, KN_F32, KN_F16);
    dwconv_case("K 1", 1, (int[]){ 9 }, 1, 1, 0, 1, KN_F32, KN_F32, KN_BF16);
    dwconv_case("SenseVoiceSmall", 4, (int[]){ 171, 60, 171, 5 }, 512, 11, 5, 1, KN_F32, KN_F32,
                KN_F32);
    dwconv_case("K 31", 2, (int[]){ 100, 29 }, 130, 31, 17, 1, KN_BF16, KN_F32, KN_BF16);
    row_argmax_case("one row", 1, 1, 0, 1, KN_F32, 3.0f);
    row_argmax_case("SenseVoice vocab", 37, 25055, 0, 1, KN_F32, 8.0f);
    /* bf16 in a tiny range: many exact ties per row */
    row_argmax_case("ties", 50, 3000, 3, 1, KN_BF16, 0.02f);
    row_argmax_case("no lse", 21, 777, 5, 0, KN_F16, 4.0f);
    row_argmax_case("narrow", 300, 7, 0, 1, KN_F32, 1.0f);
    /* all equal: index 0 */
    {
        struct twin x = twin_new(KN_F32, 2, (int64_t[]){ 3, 1000 }, 0.0f, NULL);
        int32_t z[3] = { 7, 7, 7 }, got[3] = { -1, -1, -1 };
        struct twin ids = twin_new(KN_I32, 1, (int64_t[]){ 3 }, 0, z);
        ok(kn_row_argmax(gpu, &ids.d, NULL, &x.d) == 0 && kn_tensor_get(&ids.d, got) == 0 &&
           got[0] == 0 && got[1] == 0 && got[2] == 0, "row_argmax of equal rows is 0");
        twin_free(&x);
        twin_free(&ids);
    }
    /* refusal: a host seq_start */
    struct twin x = twin_new(KN_F32, 2, (int64_t[]){ 4, 8 }, 1.0f, NULL);
    struct twin y = twin_new(KN_F32, 2, (int64_t[]){ 4, 8 }, 1.0f, NULL);
    struct twin w = twin_new(KN_F32, 2, (int64_t[]){ 8, 3 }, 1.0f, NULL);
    struct twin ts = twin_new(KN_I32, 1, (int64_t[]){ 2 }, 0, (int32_t[]){ 0, 4 });
    ok(kn_seq_dwconv(gpu, &y.d, &x.d, &w.d, &ts.h, 1, 1) == -1,
       "cuda seq_dwconv refuses a host seq_start");
    twin_free(&x);
    twin_free(&y);
    twin_free(&w);
    twin_free(&ts);
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
    test_matmul_bf16w();
    if (getenv("KN_TEST_ONLY") && strcmp(getenv("KN_TEST_ONLY"), "matmul") == 0) {
        ok(kn_backend_sync(gpu) == 0, "stream has no pending error");
        kn_backend_free(gpu);
        kn_backend_free(cpu);
        return tap_done();
    }
    test_rms_norm();
    test_rope();
    test_softmax();
    test_elementwise();
    test_kv_store();
    test_paged_attention();
    test_gather_scatter();
    test_moe_route();
    test_layer_norm_act();
    test_seq_attention();
    test_asr_ops();
    ok(kn_backend_sync(gpu) == 0, "stream has no pending error");
    kn_backend_free(gpu);
    kn_backend_free(cpu);
    return tap_done();
}
