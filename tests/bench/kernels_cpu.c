/*
 * kernels_cpu.c -- benchmark of the cpu backend against the memory roofline
 * (run by tests/bench/kernels_cpu.sh; not a test). Prints memory bandwidth
 * (memcpy of 1 GB; a read-only sum over 1 GB at 1 and 2 threads), the bf16
 * matvec GB/s of Qwen3-0.6B's projections at 1 and 2 threads beside it, one
 * whole Qwen3-0.6B decode step's matmuls (1.19 GB of bf16 weights) as
 * tokens/s against its roofline, and M=8 / M=512 matmul GFLOP/s.
 *
 * Which bandwidth counts: decode reads each weight once per token and writes
 * almost nothing, so its roofline is weight bytes per token / READ-ONLY
 * bandwidth (the 2-thread sum). memcpy is printed as bytes copied per second
 * (it moves twice that: read + write) for comparison with the usual "copy
 * bandwidth"; read + write is not the decode roofline.
 *
 * Matrices are views at successive offsets of one 1.25 GB arena of random
 * bf16, cycled through (more than any L3 cache, 300 MB on big Xeons), so that
 * every figure is a DRAM figure, as in a real decode step.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels.h"
#include "log.h"
#include "util.h"

#define GB 1e9
#define BUF_BYTES ((size_t)1 << 30)
#define ARENA_BYTES ((size_t)1280 << 20)    /* weights of every figure: > any L3 */
#define TARGET 0.60                         /* of the roofline, decode, 2 threads */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fill_bf16(uint16_t *p, size_t n, uint32_t seed)
{
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = kn_f32_to_bf16(((float)(s >> 8) / 16777216.0f - 0.5f) * 0.1f);
    }
}

/* ---- bandwidth ---------------------------------------------------------------- */

static double bench_memcpy(void)
{
    char *a = xmalloc(BUF_BYTES), *b = xmalloc(BUF_BYTES);
    memset(a, 1, BUF_BYTES);
    memset(b, 2, BUF_BYTES);
    double best = 1e9;
    for (int r = 0; r < 4; r++) {
        double t = now_s();
        memcpy(b, a, BUF_BYTES);
        t = now_s() - t;
        best = t < best ? t : best;
    }
    if (b[12345] != 1)
        printf("memcpy failed\n");
    free(a);
    free(b);
    return BUF_BYTES / best / GB;
}

struct sum_arg {
    const uint64_t *p;
    size_t n;
    uint64_t sum;
};

typedef uint64_t v4u64 __attribute__((vector_size(32)));

#define STREAMS 4

/* Sum of the thread's range read as STREAMS interleaved sequential streams
 * with a software prefetch 2 KB ahead in each: as many misses in flight as
 * the matmul tile (3 weight rows and the next tile's) has, so that the
 * figure is the read bandwidth a core can reach, not one stream's latency. */
static void *sum_main(void *arg)
{
    struct sum_arg *s = arg;
    size_t per = s->n / STREAMS / 4 * 4;
    const uint64_t *p[STREAMS];
    v4u64 acc[STREAMS] = { { 0 } };
    for (int j = 0; j < STREAMS; j++)
        p[j] = s->p + per * j;
    for (size_t i = 0; i + 4 <= per; i += 4)
        for (int j = 0; j < STREAMS; j++) {
            v4u64 x;
            if ((i & 7) == 0)
                __builtin_prefetch(p[j] + i + 256);
            memcpy(&x, p[j] + i, 32);
            acc[j] += x;
        }
    for (int j = 1; j < STREAMS; j++)
        acc[0] += acc[j];
    s->sum = acc[0][0] + acc[0][1] + acc[0][2] + acc[0][3];
    return NULL;
}

/* read-only bandwidth: a sum over a 1 GB buffer split across <nth> threads */
static double bench_read(const uint64_t *buf, int nth)
{
    double best = 1e9;
    size_t n = BUF_BYTES / 8;
    for (int r = 0; r < 4; r++) {
        pthread_t th[8];
        struct sum_arg arg[8];
        double t = now_s();
        for (int i = 0; i < nth; i++) {
            arg[i] = (struct sum_arg){ buf + n / nth * i, n / nth, 0 };
            pthread_create(&th[i], NULL, sum_main, &arg[i]);
        }
        for (int i = 0; i < nth; i++)
            pthread_join(th[i], NULL);
        t = now_s() - t;
        best = t < best ? t : best;
    }
    return BUF_BYTES / best / GB;
}

/* ---- matmul --------------------------------------------------------------------- */

/* views of one (N, K) shape at successive offsets of the arena, wrapping */
struct mats {
    int n;
    struct kn_tensor *w;
};

static uint16_t *arena;
static size_t arena_off;        /* next free element */

static struct kn_tensor arena_view(int64_t N, int64_t K)
{
    size_t ne = (size_t)(N * K);
    if (arena_off + ne > ARENA_BYTES / 2)
        arena_off = 0;
    struct kn_tensor t = kn_tensor_host(KN_BF16, 2, (int64_t[]){ N, K }, arena + arena_off);
    arena_off += (ne + 31) / 32 * 32;   /* 64-byte aligned views */
    return t;
}

/* as many views as fit in the arena (at least 1) */
static struct mats mats_new(int64_t N, int64_t K)
{
    struct mats m;
    size_t one = (size_t)(N * K) * 2 + 64;
    m.n = (int)(ARENA_BYTES / one);
    m.n = m.n < 1 ? 1 : m.n > 256 ? 256 : m.n;
    m.w = xcalloc((size_t)m.n, sizeof(*m.w));
    arena_off = 0;
    for (int i = 0; i < m.n; i++)
        m.w[i] = arena_view(N, K);
    return m;
}

static void mats_free(struct mats *m)
{
    free(m->w);
}

/* best seconds per matmul (M rows of x) over <passes> passes through every copy */
static double time_matmul(struct kn_backend *be, struct mats *m, int64_t M, int passes)
{
    int64_t N = m->w[0].shape[0], K = m->w[0].shape[1];
    struct kn_tensor x, y;
    kn_tensor_alloc(&x, NULL, KN_F32, 2, (int64_t[]){ M, K });
    kn_tensor_alloc(&y, NULL, KN_F32, 2, (int64_t[]){ M, N });
    for (int64_t i = 0; i < M * K; i++)
        ((float *)x.data)[i] = (float)(i % 17) * 0.01f;
    double best = 1e9;
    kn_matmul(be, &y, &x, &m->w[0]);    /* warm the pool */
    for (int p = 0; p < passes; p++) {
        double t = now_s();
        for (int i = 0; i < m->n; i++)
            kn_matmul(be, &y, &x, &m->w[i]);
        t = (now_s() - t) / m->n;
        best = t < best ? t : best;
    }
    kn_tensor_free(&x);
    kn_tensor_free(&y);
    return best;
}

/* one Qwen3-0.6B decode step's matmuls: 28 x (qkv, o, gate_up, down) + lm_head */
static double time_decode(struct kn_backend *be, struct kn_tensor *w, int nw, int passes)
{
    struct kn_tensor x, y;
    kn_tensor_alloc(&x, NULL, KN_F32, 2, (int64_t[]){ 1, 6144 });
    kn_tensor_alloc(&y, NULL, KN_F32, 2, (int64_t[]){ 1, 151936 });
    memset(x.data, 0, 6144 * 4);
    double best = 1e9;
    for (int p = 0; p < passes; p++) {
        double t = now_s();
        for (int i = 0; i < nw; i++) {
            int64_t N = w[i].shape[0], K = w[i].shape[1];
            struct kn_tensor xv = kn_tensor_view(&x, 2, (int64_t[]){ 1, K }, (int64_t[]){ K, 1 }, 0);
            struct kn_tensor yv = kn_tensor_view(&y, 2, (int64_t[]){ 1, N }, (int64_t[]){ N, 1 }, 0);
            kn_matmul(be, &yv, &xv, &w[i]);
        }
        t = now_s() - t;
        best = t < best ? t : best;
    }
    kn_tensor_free(&x);
    kn_tensor_free(&y);
    return best;
}

/* 1 when no section was named on the command line, or <name> was */
static int want(int argc, char **argv, const char *name)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return 1;
    return argc < 2;
}

/* kernels_cpu [matvec] [decode] [gemm]: the sections to run after the
 * bandwidth figures (default all) */
int main(int argc, char **argv)
{
    log_set_level(LOG_WARN);
    struct kn_backend *be = kn_backend_init("cpu", 0);
    if (be == NULL)
        return 1;
    int missed = 0;

    printf("== memory bandwidth\n");
    double copy = bench_memcpy();
    uint64_t *buf = xmalloc(BUF_BYTES);
    memset(buf, 3, BUF_BYTES);
    double rd1 = bench_read(buf, 1), rd2 = bench_read(buf, 2);
    free(buf);
    printf("memcpy 1 GB (best of 4)      %6.1f GB/s copied (%.1f GB/s read+write)\n", copy, 2 * copy);
    printf("read-only sum 1 GB, 1 thread  %6.1f GB/s\n", rd1);
    printf("read-only sum 1 GB, 2 threads %6.1f GB/s   <- the decode roofline\n", rd2);

    if (want(argc, argv, "matvec")) {
        arena = xmalloc(ARENA_BYTES);
    fill_bf16(arena, ARENA_BYTES / 2, 7);

    printf("\n== bf16 matvec (M=1), GB/s of weights streamed; %% of read-only bandwidth\n");
        static const int64_t shapes[][2] = {
            { 4096, 1024 },     /* fused q,k,v */
            { 2048, 1024 },     /* q */
            { 1024, 2048 },     /* o */
            { 3072, 1024 },     /* gate, up */
            { 1024, 3072 },     /* down */
            { 151936, 1024 },   /* lm_head (tied embedding) */
        };
        for (size_t s = 0; s < ARRAY_SIZE(shapes); s++) {
            int64_t N = shapes[s][0], K = shapes[s][1];
            struct mats m = mats_new(N, K);
            double gbs[2];
            for (int th = 1; th <= 2; th++) {
                kn_backend_set_threads(be, th);
                gbs[th - 1] = (double)(N * K * 2) / time_matmul(be, &m, 1, 3) / GB;
            }
            printf("%6lld x %-5lld  1 thread %6.1f GB/s (%3.0f%% of %.1f)   2 threads %6.1f GB/s "
                   "(%3.0f%% of %.1f)\n", (long long)N, (long long)K, gbs[0], 100 * gbs[0] / rd1, rd1,
                   gbs[1], 100 * gbs[1] / rd2, rd2);
            mats_free(&m);
        }
    }
    if (want(argc, argv, "decode")) {
        printf("\n== Qwen3-0.6B decode step, matmuls only (bf16 weights, batch 1)\n");
        int nw = 28 * 4 + 1;
        struct kn_tensor *w = xcalloc((size_t)nw, sizeof(*w));
    arena_off = 0;
        static const int64_t layer[4][2] = { { 4096, 1024 }, { 1024, 2048 }, { 6144, 1024 }, { 1024, 3072 } };
        double bytes = 0;
        for (int i = 0; i < nw; i++) {
            int64_t N = i == nw - 1 ? 151936 : layer[i % 4][0], K = i == nw - 1 ? 1024 : layer[i % 4][1];
            kn_tensor_alloc(&w[i], NULL, KN_BF16, 2, (int64_t[]){ N, K });
            fill_bf16(w[i].data, (size_t)(N * K), (uint32_t)i);
            bytes += (double)(N * K * 2);
        }
        for (int th = 1; th <= 2; th++) {
            kn_backend_set_threads(be, th);
            double t = time_decode(be, w, nw, 3), rd = th == 1 ? rd1 : rd2;
            double roof = rd * GB / bytes, frac = 1.0 / t / roof;
            int miss = th == 2 && frac < TARGET;
            missed |= miss;
            printf("%d thread%s: %.2f GB/token, %6.1f ms/token = %5.1f tokens/s; roofline %.1f "
                   "tokens/s (read %.1f GB/s), %.0f%%%s; vs memcpy roofline %.0f%%\n", th,
                   th > 1 ? "s" : " ", bytes / GB, t * 1e3, 1 / t, roof, rd, 100 * frac,
                   miss ? "  MISSED (target 60%)" : th == 2 ? " (target 60%)" : "",
                   100 / t / (copy * GB / bytes));
        }
        free(w);
    }
    if (want(argc, argv, "gemm")) {
        printf("\n== matmul GFLOP/s, W bf16 3072 x 1024, x f32 (M, 1024)\n");
        struct mats m = mats_new(3072, 1024);
        struct mats m1 = m;
        m1.n = 1;                   /* prefill: one W is reused by every row anyway */
        for (int th = 1; th <= 2; th++) {
            kn_backend_set_threads(be, th);
            double t8 = time_matmul(be, &m, 8, 3), t512 = time_matmul(be, &m1, 512, 2);
            printf("%d thread%s: M=8 %6.1f GFLOP/s (%5.1f GB/s of W)   M=512 %6.1f GFLOP/s\n", th,
                   th > 1 ? "s" : " ", 2.0 * 8 * 3072 * 1024 / t8 / GB, 3072.0 * 1024 * 2 / t8 / GB,
                   2.0 * 512 * 3072 * 1024 / t512 / GB);
        }
        mats_free(&m);
    }
    free(arena);
    kn_backend_free(be);
    return missed ? 0 : 0;      /* benchmarks report, they do not fail */
}
