/*
 * matmul.c -- y (M,N) = x (M,K) W(N,K)^T on the cpu, threaded by chunks of W
 * rows handed out by the pool (threads that get less CPU time take fewer). Decode (small M) streams each W chunk once and widens
 * it in registers inside the tile; prefill (M > 8) widens a chunk to f32
 * scratch once and sweeps every 4-row block of x over it while it sits in L2.
 * Every output is one tile dot product, so results do not depend on the
 * thread count or the chunking.
 */
#include "kn_cpu.h"

#include <stdlib.h>

#include "util.h"

#define DECODE_CHUNK_BYTES (64 * 1024)      /* W bytes per work item, streamed */
#define PREFILL_CHUNK_BYTES (256 * 1024)    /* f32 bytes of a widened chunk (L2) */

struct mm_job {
    struct rows y, w;
    const float *xf;            /* x widened to f32, row stride ldx */
    int64_t ldx, M, N, K;
    int64_t chunk, n_chunks;    /* W rows per work item; chunk % KN_TILE_N == 0 */
    int widen;                  /* widen each W chunk to f32 scratch first */
    struct kn_pool *pool;
};

/* W rows [n0, n1) against every row of x */
static void mm_chunk(struct mm_job *j, int tid, int64_t n0, int64_t n1)
{
    const char *wp = row_at(&j->w, n0);
    int64_t ldw = j->w.ld, K = j->K;
    enum kn_dtype wdt = j->w.dt;
    size_t wesz = j->w.esz;
    float out[KN_TILE_M * KN_TILE_N];

    if (j->widen && wdt != KN_F32) {
        float *buf = kn_pool_scratch(j->pool, tid, (size_t)((n1 - n0) * K));
        for (int64_t n = n0; n < n1; n++)
            kn_row_load(buf + (n - n0) * K, row_at(&j->w, n), wdt, K);
        wp = (const char *)buf;
        ldw = K;
        wdt = KN_F32;
        wesz = sizeof(float);
    }
    for (int64_t m0 = 0; m0 < j->M; m0 += KN_TILE_M) {
        int mr = (int)(j->M - m0 < KN_TILE_M ? j->M - m0 : KN_TILE_M);
        for (int64_t n = n0; n < n1; n += KN_TILE_N) {
            int nr = (int)(n1 - n < KN_TILE_N ? n1 - n : KN_TILE_N);
            kn_cpu_tile(out, KN_TILE_N, j->xf + m0 * j->ldx, j->ldx,
                        wp + (size_t)((n - n0) * ldw) * wesz, ldw, wdt, mr, nr, K);
            for (int i = 0; i < mr; i++)
                kn_row_store((char *)row_at(&j->y, m0 + i) + (size_t)n * j->y.esz,
                             out + i * KN_TILE_N, j->y.dt, nr);
        }
    }
}

static void mm_chunks(void *arg, int tid, int64_t c0, int64_t c1)
{
    struct mm_job *j = arg;
    for (int64_t c = c0; c < c1; c++) {
        int64_t n0 = c * j->chunk, n1 = n0 + j->chunk;
        mm_chunk(j, tid, n0, n1 < j->N ? n1 : j->N);
    }
}

int kn_cpu_matmul(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                  const struct kn_tensor *w)
{
    struct mm_job *j = xcalloc(1, sizeof(*j));
    struct rows xm = rows_of(x);
    float *xbuf = NULL;
    j->y = rows_of(y);
    j->w = rows_of(w);
    j->M = xm.n;
    j->N = j->w.n;
    j->K = j->w.cols;
    j->pool = cpu_pool(be);
    j->xf = (const float *)x->data;
    j->ldx = xm.ld;
    if (x->dtype != KN_F32 || x->data == y->data) {     /* widen x (M,K) once */
        xbuf = xmalloc((size_t)(j->M * j->K + 1) * sizeof(float));
        for (int64_t m = 0; m < j->M; m++)
            kn_row_load(xbuf + m * j->K, row_at(&xm, m), xm.dt, j->K);
        j->xf = xbuf;
        j->ldx = j->K;
    }

    int nth = cpu_nth(be, j->N, j->M * j->K);
    int64_t row_bytes = j->K * (int64_t)j->w.esz + 1;
    j->widen = j->M > 2 * KN_TILE_M;     /* measured: 8 beats 4 and 1 for M <= 16 */
    j->chunk = j->widen ? PREFILL_CHUNK_BYTES / (j->K * 4 + 1) : DECODE_CHUNK_BYTES / row_bytes;
    /* at least 4 chunks per thread to even out the load */
    int64_t fair = (j->N + 4 * nth - 1) / (4 * nth);
    j->chunk = j->chunk < fair ? j->chunk : fair;
    j->chunk = (j->chunk + KN_TILE_N - 1) / KN_TILE_N * KN_TILE_N;
    j->chunk = j->chunk < KN_TILE_N ? KN_TILE_N : j->chunk;
    j->n_chunks = (j->N + j->chunk - 1) / j->chunk;
    kn_pool_for(j->pool, mm_chunks, j, j->n_chunks, 1, nth);
    free(xbuf);
    free(j);
    return 0;
}
