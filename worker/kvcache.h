/*
 * kvcache.h -- the paged KV cache's bookkeeping: a pool of n_blocks blocks
 * of block_size token slots, a free list that doubles as the LRU of cached
 * blocks, per-sequence block tables, reference counts and prefix caching by
 * block hash (vLLM's scheme: a FULL block is keyed by the hash of its parent
 * block's hash and its token ids). It never touches the K/V memory itself
 * (the model owns that) and knows nothing of scheduling. Not thread-safe:
 * the engine thread alone uses it.
 */
#ifndef LLMUX_KVCACHE_H
#define LLMUX_KVCACHE_H

#include <stdint.h>

struct kv_block {
    int ref;                /* sequences holding the block */
    int cached;             /* 1: registered in the hash table under <hash> */
    uint64_t hash;          /* valid when cached */
    uint64_t parent_hash;   /* key parts, to verify a hash match exactly */
    int prev, next;         /* free list links (-1: none) when ref == 0 */
    int hnext;              /* hash chain */
};

struct kvcache {
    int n_blocks, block_size;
    int prefix_caching;     /* 0: blocks are never registered or matched */
    struct kv_block *blocks;    /* (n_blocks) */
    int32_t *block_tokens;      /* (n_blocks, block_size): ids of cached blocks */
    int free_head, free_tail;   /* head is evicted first */
    int n_free;
    int *buckets;               /* (n_buckets) hash table heads, -1: empty */
    int n_buckets;              /* power of two */
    uint64_t queries, hits;     /* prefix cache look-ups, in tokens */
    uint64_t evictions;
};

/* A sequence's block table and how far its full blocks are hashed. */
struct kv_seq {
    int *blocks;            /* block ids, position p lives in blocks[p / block_size] */
    int n_blocks, cap;
    int n_hashed;           /* leading full blocks whose hash is known */
    uint64_t last_hash;     /* hash of block n_hashed-1 (the chain's parent) */
};

/* Set up <kv> with every block free. <prefix_caching> 0 turns caching off.
 * 0, or -1 when the sizes are not positive. Free with kvcache_free(). */
int kvcache_init(struct kvcache *kv, int n_blocks, int block_size, int prefix_caching);
void kvcache_free(struct kvcache *kv);

/* Blocks not held by any sequence (cached-but-unused ones count: they are
 * evicted when needed). */
int kvcache_n_free(const struct kvcache *kv);
/* Blocks needed to hold <n_tokens> tokens. */
int kvcache_blocks_for(const struct kvcache *kv, int n_tokens);

/*
 * Admit a new (or preempted) sequence <s> (empty block table) whose tokens are
 * <tokens>[0..<n_tokens>): match the longest chain of cached full blocks of
 * its prefix (never all of it: at least the last token stays to compute; no
 * match when <use_cache> is 0), then hold blocks for <n_cached> + <n_new>
 * tokens where n_cached is the matched length. All or nothing: -1 and no
 * change when the free blocks do not suffice; else the number of cached
 * tokens (>= 0). Counts a query of <n_tokens> tokens only on success.
 */
int kvcache_seq_admit(struct kvcache *kv, struct kv_seq *s, const int32_t *tokens,
                      int n_tokens, int use_cache, int n_new);
/* Tokens a later kvcache_seq_admit() of <tokens> would find cached now (no
 * change to anything). */
int kvcache_peek_prefix(const struct kvcache *kv, const int32_t *tokens, int n_tokens);
/* Make <s> hold blocks for <n_tokens> tokens in all. 0, or -1 with no change
 * when not enough blocks are free (LRU cached blocks are evicted as needed). */
int kvcache_seq_reserve(struct kvcache *kv, struct kv_seq *s, int n_tokens);
/* Register the full blocks among <s>'s first <n_computed> tokens (their K/V
 * now written) in the prefix cache. <tokens> are the sequence's ids. */
void kvcache_seq_commit(struct kvcache *kv, struct kv_seq *s, const int32_t *tokens,
                        int n_computed);
/* Release every block of <s> (last block first, so that a prefix outlives
 * its tail in the LRU) and empty its table; its memory is kept. */
void kvcache_seq_release(struct kvcache *kv, struct kv_seq *s);
/* Free <s>'s table memory (after kvcache_seq_release). */
void kv_seq_free(struct kv_seq *s);

#endif
