/*
 * kn_cpu.h -- private to the cpu backend (the files of kernels/cpu/): rows of any
 * dtype, the backend context and its thread pool, the SIMD primitives and the
 * entry points of the op files. Nothing outside kernels/cpu/ includes it.
 * A cpu backend instance is driven by one caller thread at a time.
 */
#ifndef LLMUX_KN_CPU_H
#define LLMUX_KN_CPU_H

#include "kernels.h"

/* ---- rows of any dtype ------------------------------------------------------ */

/* A tensor as a matrix: row r starts at data + r*ld elements. */
struct rows {
    char *data;
    enum kn_dtype dt;
    int64_t n, cols, ld;
    size_t esz;
};

static inline struct rows rows_of(const struct kn_tensor *t)
{
    struct rows m;
    kn_tensor_rows(t, &m.n, &m.cols, &m.ld);    /* validated by the kn_* entry */
    m.data = t->data;
    m.dt = t->dtype;
    m.esz = kn_dtype_size(t->dtype);
    return m;
}

static inline void *row_at(const struct rows *m, int64_t r)
{
    return m->data + (size_t)(r * m->ld) * m->esz;
}

/* src (n,) of dtype <dt> -> dst (n,) f32 (exact) */
void kn_row_load(float *dst, const void *src, enum kn_dtype dt, int64_t n);
/* src (n,) f32 -> dst (n,) of dtype <dt>, round to nearest even; dst may
 * alias src when dt is f32 */
void kn_row_store(void *dst, const float *src, enum kn_dtype dt, int64_t n);

/* ---- thread pool (pool.c) ------------------------------------------------------ */

struct kn_pool;
/* fn handles items [i0, i1) on thread <tid> (0: the caller); it may use
 * thread <tid>'s scratch */
typedef void (*kn_pool_fn)(void *arg, int tid, int64_t i0, int64_t i1);

/* Pool of n_threads - 1 workers plus the caller; never NULL (aborts on OOM). */
struct kn_pool *kn_pool_new(int n_threads);
void kn_pool_free(struct kn_pool *p);
int kn_pool_threads(const struct kn_pool *p);
/* Items [0, n) in chunks of <grain>, handed out through an atomic counter to
 * the caller and up to nth-1 workers; returns when every item is done. A
 * worker that has not joined by the time the caller ran out of chunks is not
 * waited for, so a descheduled worker (a busy machine) costs at most the
 * chunk it holds. Which thread runs a chunk must not change the result. */
void kn_pool_for(struct kn_pool *p, kn_pool_fn fn, void *arg, int64_t n, int64_t grain, int nth);
/* Scratch of thread <tid>, at least <nfloats> floats, 64-byte aligned, kept
 * between ops; only thread <tid> may call it during a run. */
float *kn_pool_scratch(struct kn_pool *p, int tid, size_t nfloats);

/* chunk size giving each of <nth> threads about 4 chunks of n items */
static inline int64_t kn_grain(int64_t n, int nth)
{
    int64_t g = (n + 4 * nth - 1) / (4 * nth);
    return g < 1 ? 1 : g;
}

struct cpu_ctx {
    struct kn_pool *pool;
};

static inline struct kn_pool *cpu_pool(struct kn_backend *be)
{
    return ((struct cpu_ctx *)be->ctx)->pool;
}

/* Threads worth using for <items> independent items of <cost> elements each:
 * about 32k elements per thread at least, so that tiny ops stay on the caller. */
static inline int cpu_nth(struct kn_backend *be, int64_t items, int64_t cost)
{
    int64_t nth = kn_pool_threads(cpu_pool(be)), by_work = items * cost / 32768;
    nth = nth < items ? nth : items;
    nth = nth < by_work ? nth : by_work;
    return nth < 1 ? 1 : (int)nth;
}

/* ---- SIMD primitives (simd.c) ---------------------------------------------------- */

/* x (K,) f32 . w (K,) of dtype wdt, f32 accumulation */
float kn_cpu_dot(const float *x, const void *w, enum kn_dtype wdt, int64_t K);
/* y (n,) f32 += a * x (n,) of dtype dt */
void kn_cpu_axpy(float *y, float a, const void *x, enum kn_dtype dt, int64_t n);
/* y row r (n,) f32 += a[r] * x (n,) of dtype dt, for r < na; y rows ldy apart */
void kn_cpu_axpy_rows(float *y, int64_t ldy, const float *a, int na, const void *x,
                      enum kn_dtype dt, int64_t n);
/* out[m*ldo + j] = x row m . w row j for m < mr, j < nr; x f32 (mr, K) with
 * row stride ldx, w (nr, K) of dtype wdt with row stride ldw elements. */
void kn_cpu_tile(float *out, int64_t ldo, const float *x, int64_t ldx, const void *w,
                 int64_t ldw, enum kn_dtype wdt, int mr, int nr, int64_t K);
/* rows of the tile kn_cpu_tile handles at once */
#define KN_TILE_M 4
#define KN_TILE_N 3

/* ---- op files ---------------------------------------------------------------------- */

int kn_cpu_matmul(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                  const struct kn_tensor *w);
int kn_cpu_kv_store(struct kn_backend *be, struct kn_tensor *k_cache, struct kn_tensor *v_cache,
                    const struct kn_tensor *k, const struct kn_tensor *v,
                    const struct kn_tensor *slots);
int kn_cpu_paged_attention(struct kn_backend *be, struct kn_tensor *out, const struct kn_tensor *q,
                           const struct kn_tensor *k_cache, const struct kn_tensor *v_cache,
                           const struct kn_tensor *block_table, const struct kn_tensor *seq,
                           const struct kn_tensor *pos, int block_size, float scale, int window);
int kn_cpu_gather_rows(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                       const struct kn_tensor *idx);
int kn_cpu_scatter_add_rows(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                            const struct kn_tensor *idx, const struct kn_tensor *w);
int kn_cpu_moe_route(struct kn_backend *be, struct kn_tensor *ids, struct kn_tensor *weights,
                     const struct kn_tensor *logits, int k, int norm);
/* encoder_ops.c */
int kn_cpu_layer_norm(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                      const struct kn_tensor *w, const struct kn_tensor *b, float eps);
int kn_cpu_act(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x, int act);
int kn_cpu_seq_attention(struct kn_backend *be, struct kn_tensor *out, const struct kn_tensor *q,
                         const struct kn_tensor *k, const struct kn_tensor *v,
                         const struct kn_tensor *seq_start, float scale);
/* asr_ops.c */
int kn_cpu_seq_dwconv(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                      const struct kn_tensor *w, const struct kn_tensor *seq_start, int left,
                      int add_x);
int kn_cpu_row_argmax(struct kn_backend *be, struct kn_tensor *ids, struct kn_tensor *lse,
                      const struct kn_tensor *x);

#endif
