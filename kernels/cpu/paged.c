/*
 * paged.c -- the paged KV cache on the cpu: kv_store (new tokens' K/V into
 * their cache slots) and paged_attention (causal, GQA, optional sliding
 * window), threaded by token (store) and by (token, kv head) (attention, one item
 * at a time: causal rows differ in length). Indices are
 * validated here, one bad row at a time; shapes were checked by kn_*.
 */
#include "kn_cpu.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "log.h"

/* element (a, b, 0) of a (A, B, C) tensor with a contiguous last dim */
static inline char *at3(const struct kn_tensor *t, int64_t a, int64_t b)
{
    return (char *)t->data + (size_t)(a * t->stride[0] + b * t->stride[1]) * kn_dtype_size(t->dtype);
}

/* ---- kv_store --------------------------------------------------------------- */

struct store_job {
    struct kn_tensor *kc, *vc;
    const struct kn_tensor *k, *v;
    const int32_t *slots;
    int64_t T;
    struct kn_pool *pool;
    _Atomic int64_t bad;
};

/* (Hkv, D) rows of src token t -> cache row <slot>, converted to the cache dtype */
static void store_token(struct kn_tensor *cache, const struct kn_tensor *src, int64_t t,
                        int64_t slot, float *a)
{
    int64_t H = src->shape[1], D = src->shape[2];
    for (int64_t h = 0; h < H; h++) {
        if (src->dtype == cache->dtype) {
            memcpy(at3(cache, slot, h), at3(src, t, h), (size_t)D * kn_dtype_size(src->dtype));
        } else {
            kn_row_load(a, at3(src, t, h), src->dtype, D);
            kn_row_store(at3(cache, slot, h), a, cache->dtype, D);
        }
    }
}

static void store_chunk(void *arg, int tid, int64_t lo, int64_t hi)
{
    struct store_job *j = arg;
    int64_t bad = 0;
    float *a = kn_pool_scratch(j->pool, tid, (size_t)j->k->shape[2] + 1);
    for (int64_t t = lo; t < hi; t++) {
        int64_t slot = j->slots[t];
        if (slot < 0 || slot >= j->kc->shape[0]) {
            bad++;
            continue;
        }
        store_token(j->kc, j->k, t, slot, a);
        store_token(j->vc, j->v, t, slot, a);
    }
    atomic_fetch_add(&j->bad, bad);
}

int kn_cpu_kv_store(struct kn_backend *be, struct kn_tensor *k_cache, struct kn_tensor *v_cache,
                    const struct kn_tensor *k, const struct kn_tensor *v,
                    const struct kn_tensor *slots)
{
    struct store_job j = { .kc = k_cache, .vc = v_cache, .k = k, .v = v, .slots = slots->data,
                           .T = k->shape[0], .pool = cpu_pool(be) };
    int nth = cpu_nth(be, j.T, 2 * k->shape[1] * k->shape[2]);
    kn_pool_for(j.pool, store_chunk, &j, j.T, kn_grain(j.T, nth), nth);
    int64_t bad = atomic_load(&j.bad);
    if (bad) {
        log_error("kv_store: %lld slots outside the cache of %lld", (long long)bad,
                  (long long)k_cache->shape[0]);
        return -1;
    }
    return 0;
}

/* ---- paged_attention ----------------------------------------------------------- */

struct attn_job {
    struct kn_tensor *out;
    const struct kn_tensor *q, *kc, *vc;
    const int32_t *bt, *seq, *pos;
    int64_t n_seqs, max_blocks, bs, H, group, D, window, Lmax;
    float scale;
    struct kn_pool *pool;
    _Atomic int64_t bad;        /* items with a bad sequence, position or block */
};

/* Cache row of position p of sequence s, or -1 when the block table says nonsense. */
static int64_t cache_row(const struct attn_job *j, int64_t s, int64_t p)
{
    int64_t bi = p / j->bs;
    if (bi >= j->max_blocks)
        return -1;
    int64_t blk = j->bt[s * j->max_blocks + bi], row = blk * j->bs + p % j->bs;
    return blk < 0 || row >= j->kc->shape[0] ? -1 : row;
}

/* The <G> = H/Hkv query heads h = g*G.. of token t that share kv head g:
 * out[t, h] = sum_p softmax_p(q[t,h] . k[p,g] * scale) v[p,g], p over
 * lo..pos[t]. Each K row is read once for the G heads (4x3 tiles of q heads
 * by positions within a block), each V row once (a G-row axpy). Scratch <a>:
 * q (G,D), acc (G,D), scores (G,L), weights and sums (2G). Returns 0, or -1
 * (rows zeroed) on a bad index. */
static int attend(const struct attn_job *j, int64_t t, int64_t g, float *a)
{
    int64_t D = j->D, G = j->group, s = j->seq[t], p1 = j->pos[t], L = 0;
    float *qf = a, *acc = a + G * D, *sc = acc + G * D, *wv, *sum;
    memset(acc, 0, (size_t)(G * D) * sizeof(float));
    if (s < 0 || s >= j->n_seqs || p1 < 0)
        goto fail;
    int64_t lo = j->window > 0 && p1 - j->window + 1 > 0 ? p1 - j->window + 1 : 0;
    L = p1 - lo + 1;
    wv = sc + G * L;
    sum = wv + G;
    for (int64_t hh = 0; hh < G; hh++)
        kn_row_load(qf + hh * D, at3(j->q, t, g * G + hh), j->q->dtype, D);
    for (int64_t i = 0; i < L;) {               /* scores (G, L), one block run at a time */
        int64_t row = cache_row(j, s, lo + i), run = j->bs - (lo + i) % j->bs;
        if (row < 0)
            goto fail;
        run = run < L - i ? run : L - i;        /* cache rows row.. are consecutive */
        for (int64_t i2 = 0; i2 < run; i2 += KN_TILE_N) {
            int nr = (int)(run - i2 < KN_TILE_N ? run - i2 : KN_TILE_N);
            for (int64_t m0 = 0; m0 < G; m0 += KN_TILE_M)
                kn_cpu_tile(sc + m0 * L + i + i2, L, qf + m0 * D, D, at3(j->kc, row + i2, g),
                            j->kc->stride[0], j->kc->dtype,
                            (int)(G - m0 < KN_TILE_M ? G - m0 : KN_TILE_M), nr, D);
        }
        i += run;
    }
    for (int64_t hh = 0; hh < G; hh++) {        /* sc <- e^(sc*scale - max), sum */
        float *r = sc + hh * L, mx = -INFINITY, z = 0.0f;
        for (int64_t i = 0; i < L; i++) {
            r[i] *= j->scale;
            mx = r[i] > mx ? r[i] : mx;
        }
        for (int64_t i = 0; i < L; i++) {
            r[i] = expf(r[i] - mx);
            z += r[i];
        }
        sum[hh] = z;
    }
    for (int64_t i = 0; i < L; i++) {           /* acc (G, D) += e_i v_i */
        for (int64_t hh = 0; hh < G; hh++)
            wv[hh] = sc[hh * L + i];
        kn_cpu_axpy_rows(acc, D, wv, (int)G, at3(j->vc, cache_row(j, s, lo + i), g),
                         j->vc->dtype, D);
    }
    for (int64_t hh = 0; hh < G; hh++) {
        for (int64_t d = 0; d < D; d++)
            acc[hh * D + d] /= sum[hh];
        kn_row_store(at3(j->out, t, g * G + hh), acc + hh * D, j->out->dtype, D);
    }
    return 0;
fail:
    memset(acc, 0, (size_t)(G * D) * sizeof(float));
    for (int64_t hh = 0; hh < G; hh++)
        kn_row_store(at3(j->out, t, g * G + hh), acc, j->out->dtype, D);
    return -1;
}

static void attn_chunk(void *arg, int tid, int64_t i0, int64_t i1)
{
    struct attn_job *j = arg;
    float *a = kn_pool_scratch(j->pool, tid, (size_t)(j->group * (2 * j->D + j->Lmax + 2) + 1));
    int64_t bad = 0, Hkv = j->kc->shape[1];
    for (int64_t it = i0; it < i1; it++)
        bad -= attend(j, it / Hkv, it % Hkv, a);
    atomic_fetch_add(&j->bad, bad);
}

int kn_cpu_paged_attention(struct kn_backend *be, struct kn_tensor *out, const struct kn_tensor *q,
                           const struct kn_tensor *k_cache, const struct kn_tensor *v_cache,
                           const struct kn_tensor *block_table, const struct kn_tensor *seq,
                           const struct kn_tensor *pos, int block_size, float scale, int window)
{
    struct attn_job j = { .out = out, .q = q, .kc = k_cache, .vc = v_cache,
                          .bt = block_table->data, .seq = seq->data, .pos = pos->data,
                          .n_seqs = block_table->shape[0], .max_blocks = block_table->shape[1],
                          .bs = block_size, .H = q->shape[1], .D = q->shape[2],
                          .group = q->shape[1] / k_cache->shape[1], .window = window,
                          .scale = scale, .pool = cpu_pool(be) };
    int64_t T = q->shape[0], cost = 0;
    for (int64_t t = 0; t < T; t++) {           /* longest row: scratch; total: threads */
        int64_t L = j.pos[t] + 1;
        L = window > 0 && L > window ? window : L;
        L = L < 0 ? 0 : L;
        j.Lmax = L > j.Lmax ? L : j.Lmax;
        cost += L;
    }
    int64_t Hkv = k_cache->shape[1];
    int nth = cpu_nth(be, T * Hkv, cost / (T ? T : 1) * 2 * j.D * j.group);
    kn_pool_for(j.pool, attn_chunk, &j, T * Hkv, 1, nth);
    int64_t bad = atomic_load(&j.bad);
    if (bad) {
        log_error("paged_attention: %lld (token, kv head) groups with a bad sequence, "
                  "position or block index; zeroed", (long long)bad);
        return -1;
    }
    return 0;
}
