/*
 * kvcache.c -- block pool, free list (LRU of evictable blocks), per-sequence
 * block tables and prefix caching by chained block hash. Only bookkeeping:
 * the K/V memory lives in the model, addressed by the block ids handed out
 * here. A cached block whose last holder left stays in the free list and can
 * be matched again until the list runs dry and it is evicted (head first).
 */
#include <stdlib.h>
#include <string.h>

#include "kvcache.h"
#include "util.h"

/* Parent hash of a sequence's first block. */
#define KV_ROOT_HASH 0x6c6c6d75786b7631ULL

/* ---- free list ---------------------------------------------------------- */

static void free_unlink(struct kvcache *kv, int b)
{
    struct kv_block *k = &kv->blocks[b];
    if (k->prev >= 0)
        kv->blocks[k->prev].next = k->next;
    else
        kv->free_head = k->next;
    if (k->next >= 0)
        kv->blocks[k->next].prev = k->prev;
    else
        kv->free_tail = k->prev;
    k->prev = k->next = -1;
    kv->n_free--;
}

static void free_push_tail(struct kvcache *kv, int b)
{
    struct kv_block *k = &kv->blocks[b];
    k->next = -1;
    k->prev = kv->free_tail;
    if (kv->free_tail >= 0)
        kv->blocks[kv->free_tail].next = b;
    else
        kv->free_head = b;
    kv->free_tail = b;
    kv->n_free++;
}

static void free_push_head(struct kvcache *kv, int b)
{
    struct kv_block *k = &kv->blocks[b];
    k->prev = -1;
    k->next = kv->free_head;
    if (kv->free_head >= 0)
        kv->blocks[kv->free_head].prev = b;
    else
        kv->free_tail = b;
    kv->free_head = b;
    kv->n_free++;
}

/* ---- hash table ----------------------------------------------------------- */

static uint64_t block_hash(const struct kvcache *kv, const int32_t *tokens, uint64_t parent)
{
    return hash64(tokens, (size_t)kv->block_size * sizeof(int32_t), parent);
}

/* The cached block holding exactly (parent, tokens) under <h>, or -1. */
static int table_find(const struct kvcache *kv, uint64_t h, uint64_t parent,
                      const int32_t *tokens)
{
    int b = kv->buckets[h & (uint64_t)(kv->n_buckets - 1)];
    for (; b >= 0; b = kv->blocks[b].hnext) {
        const struct kv_block *k = &kv->blocks[b];
        if (k->hash == h && k->parent_hash == parent &&
            memcmp(kv->block_tokens + (size_t)b * kv->block_size, tokens,
                   (size_t)kv->block_size * sizeof(int32_t)) == 0)
            return b;
    }
    return -1;
}

static void table_insert(struct kvcache *kv, int b, uint64_t h, uint64_t parent,
                         const int32_t *tokens)
{
    struct kv_block *k = &kv->blocks[b];
    int *head = &kv->buckets[h & (uint64_t)(kv->n_buckets - 1)];
    k->cached = 1;
    k->hash = h;
    k->parent_hash = parent;
    memcpy(kv->block_tokens + (size_t)b * kv->block_size, tokens,
           (size_t)kv->block_size * sizeof(int32_t));
    k->hnext = *head;
    *head = b;
}

static void table_remove(struct kvcache *kv, int b)
{
    struct kv_block *k = &kv->blocks[b];
    int *p = &kv->buckets[k->hash & (uint64_t)(kv->n_buckets - 1)];
    while (*p >= 0 && *p != b)
        p = &kv->blocks[*p].hnext;
    if (*p == b)
        *p = k->hnext;
    k->hnext = -1;
    k->cached = 0;
}

/* ---- pool ----------------------------------------------------------------- */

int kvcache_init(struct kvcache *kv, int n_blocks, int block_size, int prefix_caching)
{
    memset(kv, 0, sizeof(*kv));
    if (n_blocks <= 0 || block_size <= 0)
        return -1;
    kv->n_blocks = n_blocks;
    kv->block_size = block_size;
    kv->prefix_caching = prefix_caching;
    kv->blocks = xcalloc((size_t)n_blocks, sizeof(*kv->blocks));
    kv->block_tokens = xcalloc((size_t)n_blocks * (size_t)block_size, sizeof(int32_t));
    kv->n_buckets = 16;
    while (kv->n_buckets < 2 * n_blocks)
        kv->n_buckets *= 2;
    kv->buckets = xmalloc((size_t)kv->n_buckets * sizeof(int));
    for (int i = 0; i < kv->n_buckets; i++)
        kv->buckets[i] = -1;
    kv->free_head = kv->free_tail = -1;
    for (int b = 0; b < n_blocks; b++) {
        kv->blocks[b].hnext = -1;
        free_push_tail(kv, b);
    }
    return 0;
}

void kvcache_free(struct kvcache *kv)
{
    free(kv->blocks);
    free(kv->block_tokens);
    free(kv->buckets);
    memset(kv, 0, sizeof(*kv));
}

int kvcache_n_free(const struct kvcache *kv)
{
    return kv->n_free;
}

int kvcache_blocks_for(const struct kvcache *kv, int n_tokens)
{
    return n_tokens <= 0 ? 0 : (n_tokens + kv->block_size - 1) / kv->block_size;
}

/* Take the least recently used free block, evicting its cache entry. */
static int pool_take(struct kvcache *kv)
{
    int b = kv->free_head;
    free_unlink(kv, b);
    if (kv->blocks[b].cached) {
        table_remove(kv, b);
        kv->evictions++;
    }
    kv->blocks[b].ref = 1;
    return b;
}

static void seq_push(struct kv_seq *s, int b)
{
    if (s->n_blocks == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 8;
        s->blocks = xrealloc(s->blocks, (size_t)s->cap * sizeof(int));
    }
    s->blocks[s->n_blocks++] = b;
}

/* Walk the chain of cached full blocks of <tokens>, leaving at least the last
 * token uncovered; block ids into <out> (may be NULL). Number matched. */
static int prefix_walk(const struct kvcache *kv, const int32_t *tokens, int n_tokens,
                       int *out, uint64_t *last_hash)
{
    uint64_t parent = KV_ROOT_HASH;
    int max_full = n_tokens > 0 ? (n_tokens - 1) / kv->block_size : 0;
    int n = 0;
    if (!kv->prefix_caching)
        return 0;
    for (; n < max_full; n++) {
        const int32_t *t = tokens + (size_t)n * kv->block_size;
        uint64_t h = block_hash(kv, t, parent);
        int b = table_find(kv, h, parent, t);
        if (b < 0)
            break;
        if (out)
            out[n] = b;
        parent = h;
    }
    if (last_hash)
        *last_hash = parent;
    return n;
}

int kvcache_peek_prefix(const struct kvcache *kv, const int32_t *tokens, int n_tokens)
{
    return prefix_walk(kv, tokens, n_tokens, NULL, NULL) * kv->block_size;
}

int kvcache_seq_admit(struct kvcache *kv, struct kv_seq *s, const int32_t *tokens,
                      int n_tokens, int use_cache, int n_new)
{
    int n_match = 0, cost = 0, n_cached;
    uint64_t last = KV_ROOT_HASH;
    int *match = NULL;

    if (use_cache && kv->prefix_caching && n_tokens > kv->block_size) {
        match = xmalloc((size_t)((n_tokens - 1) / kv->block_size) * sizeof(int));
        n_match = prefix_walk(kv, tokens, n_tokens, match, &last);
    }
    n_cached = n_match * kv->block_size;
    for (int i = 0; i < n_match; i++)
        if (kv->blocks[match[i]].ref == 0)
            cost++;
    cost += kvcache_blocks_for(kv, n_cached + n_new) - n_match;
    if (s->n_blocks != 0 || cost > kv->n_free) {
        free(match);
        return -1;
    }
    for (int i = 0; i < n_match; i++) {
        struct kv_block *k = &kv->blocks[match[i]];
        if (k->ref++ == 0)
            free_unlink(kv, match[i]);
        seq_push(s, match[i]);
    }
    free(match);
    s->n_hashed = n_match;
    s->last_hash = last;
    if (kvcache_seq_reserve(kv, s, n_cached + n_new) != 0)
        abort();    /* counted above: cannot happen */
    if (use_cache && kv->prefix_caching) {
        kv->queries += (uint64_t)n_tokens;
        kv->hits += (uint64_t)n_cached;
    }
    return n_cached;
}

int kvcache_seq_reserve(struct kvcache *kv, struct kv_seq *s, int n_tokens)
{
    int need = kvcache_blocks_for(kv, n_tokens) - s->n_blocks;
    if (need <= 0)
        return 0;
    if (need > kv->n_free)
        return -1;
    if (s->n_blocks == 0)
        s->last_hash = KV_ROOT_HASH;
    while (need-- > 0)
        seq_push(s, pool_take(kv));
    return 0;
}

void kvcache_seq_commit(struct kvcache *kv, struct kv_seq *s, const int32_t *tokens,
                        int n_computed)
{
    int full = n_computed / kv->block_size;
    if (full > s->n_blocks)
        full = s->n_blocks;
    for (int i = s->n_hashed; i < full; i++) {
        const int32_t *t = tokens + (size_t)i * kv->block_size;
        uint64_t parent = i == 0 ? KV_ROOT_HASH : s->last_hash;
        uint64_t h = block_hash(kv, t, parent);
        int b = s->blocks[i];
        /* A twin computed by another sequence in the same step keeps the
         * entry; this copy stays private and is freed uncached. */
        if (kv->prefix_caching && !kv->blocks[b].cached && table_find(kv, h, parent, t) < 0)
            table_insert(kv, b, h, parent, t);
        s->last_hash = h;
        s->n_hashed = i + 1;
    }
}

void kvcache_seq_release(struct kvcache *kv, struct kv_seq *s)
{
    for (int i = s->n_blocks - 1; i >= 0; i--) {
        int b = s->blocks[i];
        if (--kv->blocks[b].ref == 0) {
            if (kv->blocks[b].cached)
                free_push_tail(kv, b);
            else
                free_push_head(kv, b);
        }
    }
    s->n_blocks = 0;
    s->n_hashed = 0;
    s->last_hash = KV_ROOT_HASH;
}

void kv_seq_free(struct kv_seq *s)
{
    free(s->blocks);
    memset(s, 0, sizeof(*s));
}
