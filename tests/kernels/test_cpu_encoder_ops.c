/*
 * test_cpu_encoder_ops.c -- the encoder ops of the cpu backend (layer_norm,
 * act, seq_attention) against direct double-precision recomputation: f32 and
 * bf16 operands, aliasing, strided head views of a fused qkv, GQA, a packed
 * batch with an empty sequence, thread-count invariance, and the checks
 * (bad seq_start, aliasing, unknown activation).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "log.h"
#include "../unit/tap.h"
#include "util.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;

static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void fill(float *p, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        p[i] = frand() * scale;
}

static double max_abs_diff(const float *a, const double *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m))
            m = isnan(d) ? INFINITY : d;
    }
    return m;
}

static void test_layer_norm(struct kn_backend *be)
{
    enum { R = 37, D = 96 };
    float *x = xmalloc(R * D * sizeof(float)), *y = xmalloc(R * D * sizeof(float));
    float w[D], b[D];
    double *ref = xmalloc(R * D * sizeof(double));
    fill(x, R * D, 3.0f);
    for (int i = 0; i < R * D; i++)
        x[i] += 1.5f;   /* a mean far from 0 */
    fill(w, D, 1.0f);
    fill(b, D, 0.5f);
    for (int with_b = 0; with_b < 2; with_b++) {
        for (int r = 0; r < R; r++) {
            double s = 0, ss = 0;
            for (int i = 0; i < D; i++)
                s += x[r * D + i];
            double mean = s / D;
            for (int i = 0; i < D; i++)
                ss += (x[r * D + i] - mean) * (x[r * D + i] - mean);
            double inv = 1.0 / sqrt(ss / D + 1e-5);
            for (int i = 0; i < D; i++)
                ref[r * D + i] = (x[r * D + i] - mean) * inv * w[i] + (with_b ? b[i] : 0);
        }
        int64_t sh[2] = { R, D }, sv[1] = { D };
        struct kn_tensor tx = kn_tensor_host(KN_F32, 2, sh, x), ty = kn_tensor_host(KN_F32, 2, sh, y);
        struct kn_tensor tw = kn_tensor_host(KN_F32, 1, sv, w), tb = kn_tensor_host(KN_F32, 1, sv, b);
        int rc = kn_layer_norm(be, &ty, &tx, &tw, with_b ? &tb : NULL, 1e-5f);
        double e = max_abs_diff(y, ref, R * D);
        ok(rc == 0 && e < 1e-5, "layer_norm f32 %s bias: max err %.3g", with_b ? "with" : "without", e);
    }
    /* in place, bf16 rows: result is the rounded f32 result */
    uint16_t *xb = xmalloc(R * D * 2);
    for (int i = 0; i < R * D; i++)
        xb[i] = kn_f32_to_bf16(x[i]);
    int64_t sh[2] = { R, D }, sv[1] = { D };
    struct kn_tensor txb = kn_tensor_host(KN_BF16, 2, sh, xb);
    struct kn_tensor tw = kn_tensor_host(KN_F32, 1, sv, w), tb = kn_tensor_host(KN_F32, 1, sv, b);
    int rc = kn_layer_norm(be, &txb, &txb, &tw, &tb, 1e-5f);
    double e = 0;
    for (int r = 0; r < R; r++) {
        double s = 0, ss = 0;
        float xr[D];
        for (int i = 0; i < D; i++)
            s += xr[i] = kn_bf16_to_f32(kn_f32_to_bf16(x[r * D + i]));
        double mean = s / D;
        for (int i = 0; i < D; i++)
            ss += (xr[i] - mean) * (xr[i] - mean);
        for (int i = 0; i < D; i++) {
            double want = (xr[i] - mean) / sqrt(ss / D + 1e-5) * w[i] + b[i];
            double d = fabs(kn_bf16_to_f32(xb[r * D + i]) - want);
            e = d > e ? d : e;
        }
    }
    ok(rc == 0 && e < 2e-2, "layer_norm bf16 in place: max err %.3g", e);
    free(xb);
    free(x);
    free(y);
    free(ref);
}

static void test_act(struct kn_backend *be)
{
    enum { R = 9, C = 300 };
    float x[R * C], y[R * C];
    double ref[R * C];
    fill(x, R * C, 6.0f);
    const char *names[] = { "gelu_erf", "tanh", "relu" };
    for (int a = 0; a < KN_ACT_COUNT; a++) {
        for (int i = 0; i < R * C; i++) {
            double v = x[i];
            ref[i] = a == KN_ACT_GELU_ERF ? 0.5 * v * (1.0 + erf(v / sqrt(2.0)))
                   : a == KN_ACT_TANH ? tanh(v) : (v > 0 ? v : 0);
        }
        int64_t sh[2] = { R, C };
        struct kn_tensor tx = kn_tensor_host(KN_F32, 2, sh, x), ty = kn_tensor_host(KN_F32, 2, sh, y);
        int rc = kn_act(be, &ty, &tx, (enum kn_act)a);
        double e = max_abs_diff(y, ref, R * C);
        ok(rc == 0 && e < 2e-6, "act %s: max err %.3g", names[a], e);
    }
    ok(fabsf(0.5f * 1.0f * (1.0f + erff(0.70710678f)) - 0.8413447f) < 1e-6, "gelu(1) = 0.8413447");
    int64_t sh[2] = { R, C };
    struct kn_tensor tx = kn_tensor_host(KN_F32, 2, sh, x);
    ok(kn_act(be, &tx, &tx, KN_ACT_COUNT) < 0, "unknown activation rejected");
}

/* q, k, v as head views of a fused (T, H+2Hk, D) buffer */
static void attention_ref(double *out, const float *qkv, const int32_t *st, int n, int H, int Hk,
                          int D, float scale)
{
    int W = (H + 2 * Hk) * D, G = H / Hk;
    for (int s = 0; s < n; s++)
        for (int t = st[s]; t < st[s + 1]; t++)
            for (int h = 0; h < H; h++) {
                int g = h / G, L = st[s + 1] - st[s];
                double *sc = xmalloc((size_t)(L + 1) * sizeof(double)), mx = -INFINITY, sum = 0;
                for (int u = 0; u < L; u++) {
                    double d = 0;
                    for (int i = 0; i < D; i++)
                        d += (double)qkv[t * W + h * D + i] * qkv[(st[s] + u) * W + (H + g) * D + i];
                    sc[u] = d * scale;
                    mx = sc[u] > mx ? sc[u] : mx;
                }
                for (int u = 0; u < L; u++)
                    sum += sc[u] = exp(sc[u] - mx);
                for (int i = 0; i < D; i++) {
                    double acc = 0;
                    for (int u = 0; u < L; u++)
                        acc += sc[u] / sum * qkv[(st[s] + u) * W + (H + Hk + g) * D + i];
                    out[(t * H + h) * D + i] = acc;
                }
                free(sc);
            }
}

static void test_seq_attention(struct kn_backend *be, int H, int Hk, int threads)
{
    enum { D = 16 };
    int32_t st[] = { 0, 5, 5, 6, 40, 77 };
    int n = 5, T = 77, W = (H + 2 * Hk) * D;
    float *qkv = xmalloc((size_t)T * W * sizeof(float)), *out = xmalloc((size_t)T * H * D * 4);
    double *ref = xmalloc((size_t)T * H * D * sizeof(double));
    fill(qkv, (size_t)T * W, 2.0f);
    float scale = 0.25f;
    attention_ref(ref, qkv, st, n, H, Hk, D, scale);
    kn_backend_set_threads(be, threads);
    int64_t fsh[2] = { T, W }, osh[3] = { T, H, D }, ssh[1] = { n + 1 };
    struct kn_tensor f = kn_tensor_host(KN_F32, 2, fsh, qkv), o = kn_tensor_host(KN_F32, 3, osh, out);
    int64_t qs[3] = { T, H, D }, ks[3] = { T, Hk, D }, str[3] = { W, D, 1 };
    struct kn_tensor q = kn_tensor_view(&f, 3, qs, str, 0), k = kn_tensor_view(&f, 3, ks, str, H * D);
    struct kn_tensor v = kn_tensor_view(&f, 3, ks, str, (H + Hk) * D);
    struct kn_tensor s = kn_tensor_host(KN_I32, 1, ssh, st);
    int rc = kn_seq_attention(be, &o, &q, &k, &v, &s, scale);
    double e = max_abs_diff(out, ref, (size_t)T * H * D);
    ok(rc == 0 && e < 1e-5, "seq_attention H %d Hkv %d, %d threads, packed 5 seqs: max err %.3g",
       H, Hk, threads, e);
    kn_backend_set_threads(be, 1);
    free(qkv);
    free(out);
    free(ref);
}

static void test_checks(struct kn_backend *be)
{
    float q[4 * 2 * 8] = { 0 }, o[4 * 2 * 8];
    int64_t sh[3] = { 4, 2, 8 }, ssh[1] = { 3 };
    struct kn_tensor tq = kn_tensor_host(KN_F32, 3, sh, q), to = kn_tensor_host(KN_F32, 3, sh, o);
    int32_t bad1[3] = { 0, 3, 5 }, bad2[3] = { 0, 3, 2 }, bad3[3] = { 1, 2, 4 }, good[3] = { 0, 1, 4 };
    struct kn_tensor s;
    s = kn_tensor_host(KN_I32, 1, ssh, bad1);
    ok(kn_seq_attention(be, &to, &tq, &tq, &tq, &s, 1.0f) < 0, "seq_start past T rejected");
    s = kn_tensor_host(KN_I32, 1, ssh, bad2);
    ok(kn_seq_attention(be, &to, &tq, &tq, &tq, &s, 1.0f) < 0, "decreasing seq_start rejected");
    s = kn_tensor_host(KN_I32, 1, ssh, bad3);
    ok(kn_seq_attention(be, &to, &tq, &tq, &tq, &s, 1.0f) < 0, "seq_start[0] != 0 rejected");
    s = kn_tensor_host(KN_I32, 1, ssh, good);
    ok(kn_seq_attention(be, &tq, &tq, &tq, &tq, &s, 1.0f) < 0, "out aliasing q rejected");
    ok(kn_seq_attention(be, &to, &tq, &tq, &tq, &s, 1.0f) == 0, "good call accepted");
    int64_t one[1] = { 2 };
    s = kn_tensor_host(KN_I32, 1, one, good);
    ok(kn_seq_attention(be, &to, &tq, &tq, &tq, &s, 1.0f) < 0, "seq_start not covering T rejected");
    float w[7] = { 1 };
    int64_t wsh[1] = { 7 }, xsh[2] = { 4, 16 };
    struct kn_tensor tw = kn_tensor_host(KN_F32, 1, wsh, w), tx = kn_tensor_host(KN_F32, 2, xsh, q);
    ok(kn_layer_norm(be, &tx, &tx, &tw, NULL, 1e-5f) < 0, "layer_norm weight of the wrong size rejected");
}

int main(void)
{
    log_set_level(-1);
    struct kn_backend *be = kn_backend_init("cpu", 0);
    if (!be)
        tap_skip_all("no cpu backend");
    ok(strcmp(kn_op_name(KN_OP_SEQ_ATTENTION), "seq_attention") == 0 &&
       strcmp(kn_op_name(KN_OP_LAYER_NORM), "layer_norm") == 0, "op names");
    test_layer_norm(be);
    test_act(be);
    test_seq_attention(be, 4, 4, 1);
    test_seq_attention(be, 6, 2, 1);
    test_seq_attention(be, 6, 2, 3);
    test_checks(be);
    kn_backend_free(be);
    return tap_done();
}
