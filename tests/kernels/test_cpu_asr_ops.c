/*
 * test_cpu_asr_ops.c -- the speech ops of the cpu backend (seq_dwconv, the
 * FSMN memory of SAN-M) against a direct double-precision recomputation: f32
 * and bf16 operands, a strided column slice of a fused qkv as input, packed
 * sequences (an empty one, one shorter than the kernel), left paddings from
 * 0 to K-1, with and without the input added, thread-count invariance, and
 * the checks (bad seq_start, aliasing, left out of range, weight shape);
 * row_argmax (argmax with ties to the lowest index, logsumexp against
 * double, strided and bf16 rows, threads, checks).
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

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

enum { NSEQ = 5, T = 41, C = 24, LD = 3 * C, K = 11 };
static const int32_t starts[NSEQ + 1] = { 0, 13, 13, 16, 37, 41 };

/* y[t] = add_x x[t] + sum_k w[c,k] x[t+k-left] within t's sequence; x rows LD apart */
static void dw_ref(double *y, const float *x, const float *w, int left, int add_x)
{
    for (int s = 0; s < NSEQ; s++)
        for (int t = starts[s]; t < starts[s + 1]; t++)
            for (int c = 0; c < C; c++) {
                double a = add_x ? x[t * LD + c] : 0.0;
                for (int k = 0; k < K; k++) {
                    int r = t + k - left;
                    if (r >= starts[s] && r < starts[s + 1])
                        a += (double)w[c * K + k] * x[r * LD + c];
                }
                y[t * C + c] = a;
            }
}

static double max_err(const float *a, const double *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m))
            m = isnan(d) ? INFINITY : d;
    }
    return m;
}

static void test_dwconv(struct kn_backend *be, int threads)
{
    float *qkv = xmalloc(T * LD * sizeof(float)), w[C * K], y[T * C];
    double ref[T * C];
    for (int i = 0; i < T * LD; i++)
        qkv[i] = frand() * 2.0f;
    for (int i = 0; i < C * K; i++)
        w[i] = frand();
    kn_backend_set_threads(be, threads);
    int64_t xsh[2] = { T, C }, xst[2] = { LD, 1 }, wsh[2] = { C, K }, ssh[1] = { NSEQ + 1 };
    int64_t ysh[2] = { T, C };
    struct kn_tensor base = kn_tensor_host(KN_F32, 2, (int64_t[2]){ T, LD }, qkv);
    struct kn_tensor x = kn_tensor_view(&base, 2, xsh, xst, 2 * C);     /* v of a fused qkv */
    struct kn_tensor tw = kn_tensor_host(KN_F32, 2, wsh, w);
    struct kn_tensor ty = kn_tensor_host(KN_F32, 2, ysh, y);
    struct kn_tensor ts = kn_tensor_host(KN_I32, 1, ssh, (void *)starts);
    int lefts[4] = { 5, 0, K - 1, 7 };
    for (int li = 0; li < 4; li++)
        for (int add_x = 0; add_x < 2; add_x++) {
            memset(y, 0xff, sizeof(y));     /* NaN poison */
            int rc = kn_seq_dwconv(be, &ty, &x, &tw, &ts, lefts[li], add_x);
            dw_ref(ref, qkv + 2 * C, w, lefts[li], add_x);
            double e = max_err(y, ref, T * C);
            ok(rc == 0 && e < 1e-5, "seq_dwconv f32 left %d add_x %d, %d threads: max err %.3g",
               lefts[li], add_x, threads, e);
        }
    /* bf16 x, w and y: the f32 result of the bf16 inputs, rounded once */
    uint16_t *xb = xmalloc(T * C * 2), wb[C * K], yb[T * C];
    float *xr = xmalloc(T * LD * sizeof(float)), wr[C * K];
    for (int t = 0; t < T; t++)
        for (int c = 0; c < C; c++) {
            xb[t * C + c] = kn_f32_to_bf16(qkv[t * LD + 2 * C + c]);
            xr[t * LD + c] = kn_bf16_to_f32(xb[t * C + c]);
        }
    for (int i = 0; i < C * K; i++) {
        wb[i] = kn_f32_to_bf16(w[i]);
        wr[i] = kn_bf16_to_f32(wb[i]);
    }
    struct kn_tensor bx = kn_tensor_host(KN_BF16, 2, ysh, xb), bw = kn_tensor_host(KN_BF16, 2, wsh, wb);
    struct kn_tensor by = kn_tensor_host(KN_BF16, 2, ysh, yb);
    int rc = kn_seq_dwconv(be, &by, &bx, &bw, &ts, 5, 1);
    dw_ref(ref, xr, wr, 5, 1);
    double e = 0;
    for (int i = 0; i < T * C; i++) {
        double d = fabs(kn_bf16_to_f32(yb[i]) - ref[i]) / (fabs(ref[i]) + 1e-3);
        e = d > e || isnan(d) ? d : e;
    }
    ok(rc == 0 && e < 8e-3, "seq_dwconv bf16, %d threads: max rel err %.3g", threads, e);
    free(xb);
    free(xr);
    free(qkv);
    kn_backend_set_threads(be, 1);
}

static void test_checks(struct kn_backend *be)
{
    float x[8 * 4] = { 0 }, y[8 * 4], w[4 * 3] = { 0 };
    int32_t st[3] = { 0, 5, 8 };
    int64_t xsh[2] = { 8, 4 }, wsh[2] = { 4, 3 }, ssh[1] = { 3 }, w2sh[2] = { 3, 3 };
    struct kn_tensor tx = kn_tensor_host(KN_F32, 2, xsh, x), ty = kn_tensor_host(KN_F32, 2, xsh, y);
    struct kn_tensor tw = kn_tensor_host(KN_F32, 2, wsh, w), ts = kn_tensor_host(KN_I32, 1, ssh, st);
    struct kn_tensor tw2 = kn_tensor_host(KN_F32, 2, w2sh, w);
    ok(kn_seq_dwconv(be, &ty, &tx, &tw, &ts, 1, 1) == 0, "good call accepted");
    ok(kn_seq_dwconv(be, &tx, &tx, &tw, &ts, 1, 1) < 0, "y aliasing x rejected");
    ok(kn_seq_dwconv(be, &ty, &tx, &tw, &ts, 3, 1) < 0, "left = K rejected");
    ok(kn_seq_dwconv(be, &ty, &tx, &tw, &ts, -1, 1) < 0, "negative left rejected");
    ok(kn_seq_dwconv(be, &ty, &tx, &tw2, &ts, 1, 1) < 0, "weight rows != C rejected");
    st[2] = 9;
    ok(kn_seq_dwconv(be, &ty, &tx, &tw, &ts, 1, 1) < 0, "seq_start past T rejected");
    st[2] = 8;
    st[1] = 9;
    ok(kn_seq_dwconv(be, &ty, &tx, &tw, &ts, 1, 1) < 0, "decreasing seq_start rejected");
    st[1] = 5;
    st[0] = 1;
    ok(kn_seq_dwconv(be, &ty, &tx, &tw, &ts, 1, 1) < 0, "seq_start[0] != 0 rejected");
}

static void test_row_argmax(struct kn_backend *be, int threads)
{
    enum { R = 37, V = 1000, LDX = 1003 };
    float *x = xmalloc(R * LDX * sizeof(float)), lse[R];
    int32_t ids[R];
    for (int i = 0; i < R * LDX; i++)
        x[i] = frand() * 20.0f;
    for (int r = 0; r < R; r += 3) {    /* ties: the lowest index wins */
        x[r * LDX + 10 + r] = 50.0f;
        x[r * LDX + 900 - r] = 50.0f;
    }
    x[5 * LDX + 0] = 60.0f;             /* the first column wins */
    x[7 * LDX + V - 1] = 60.0f;         /* the last column wins */
    kn_backend_set_threads(be, threads);
    int64_t sh[2] = { R, V }, st[2] = { LDX, 1 }, rs[1] = { R };
    struct kn_tensor base = kn_tensor_host(KN_F32, 2, (int64_t[2]){ R, LDX }, x);
    struct kn_tensor tx = kn_tensor_view(&base, 2, sh, st, 0);
    struct kn_tensor ti = kn_tensor_host(KN_I32, 1, rs, ids), tl = kn_tensor_host(KN_F32, 1, rs, lse);
    int rc = kn_row_argmax(be, &ti, &tl, &tx), bad = 0;
    double e = 0;
    for (int r = 0; r < R; r++) {
        int best = 0;
        double mx = x[r * LDX], s = 0;
        for (int v = 1; v < V; v++)
            if (x[r * LDX + v] > x[r * LDX + best])
                best = v;
        mx = x[r * LDX + best];
        for (int v = 0; v < V; v++)
            s += exp((double)x[r * LDX + v] - mx);
        bad += ids[r] != best;
        double d = fabs(lse[r] - (mx + log(s)));
        e = d > e || isnan(d) ? d : e;
    }
    ok(rc == 0 && bad == 0 && ids[0] == 10 && ids[5] == 0 && ids[7] == V - 1 && e < 1e-5,
       "row_argmax f32 strided, %d threads: %d ids differ, lse max err %.3g", threads, bad, e);
    /* bf16 rows, no lse */
    uint16_t *xb = xmalloc(R * V * 2);
    for (int r = 0; r < R; r++)
        for (int v = 0; v < V; v++)
            xb[r * V + v] = kn_f32_to_bf16(x[r * LDX + v]);
    struct kn_tensor bx = kn_tensor_host(KN_BF16, 2, sh, xb);
    rc = kn_row_argmax(be, &ti, NULL, &bx);
    bad = 0;
    for (int r = 0; r < R; r++) {
        int best = 0;
        for (int v = 1; v < V; v++)
            if (kn_bf16_to_f32(xb[r * V + v]) > kn_bf16_to_f32(xb[r * V + best]))
                best = v;
        bad += ids[r] != best;
    }
    ok(rc == 0 && bad == 0, "row_argmax bf16 without lse, %d threads", threads);
    free(xb);
    free(x);
    kn_backend_set_threads(be, 1);
}

static void test_row_argmax_checks(struct kn_backend *be)
{
    float x[4 * 5] = { 0 }, l[4];
    int32_t ids[4];
    int64_t xs[2] = { 4, 5 }, s4[1] = { 4 }, s3[1] = { 3 };
    struct kn_tensor tx = kn_tensor_host(KN_F32, 2, xs, x), ti = kn_tensor_host(KN_I32, 1, s4, ids);
    struct kn_tensor tl = kn_tensor_host(KN_F32, 1, s4, l), ti3 = kn_tensor_host(KN_I32, 1, s3, ids);
    struct kn_tensor tif = kn_tensor_host(KN_F32, 1, s4, ids), tl3 = kn_tensor_host(KN_F32, 1, s3, l);
    ok(kn_row_argmax(be, &ti, &tl, &tx) == 0 && ids[0] == 0 && fabsf(l[0] - logf(5.0f)) < 1e-6f,
       "row_argmax of a constant row: id 0, lse log(V)");
    ok(kn_row_argmax(be, &ti3, NULL, &tx) < 0, "row_argmax: ids of the wrong length rejected");
    ok(kn_row_argmax(be, &tif, NULL, &tx) < 0, "row_argmax: f32 ids rejected");
    ok(kn_row_argmax(be, &ti, &tl3, &tx) < 0, "row_argmax: lse of the wrong length rejected");
    ok(strcmp(kn_op_name(KN_OP_ROW_ARGMAX), "row_argmax") == 0, "row_argmax op name");
}

int main(void)
{
    log_set_level(-1);
    struct kn_backend *be = kn_backend_init("cpu", 0);
    if (!be)
        tap_skip_all("no cpu backend");
    ok(strcmp(kn_op_name(KN_OP_SEQ_DWCONV), "seq_dwconv") == 0, "op name");
    test_dwconv(be, 1);
    test_dwconv(be, 3);
    test_checks(be);
    test_row_argmax(be, 1);
    test_row_argmax(be, 3);
    test_row_argmax_checks(be);
    kn_backend_free(be);
    return tap_done();
}
