/*
 * test_kvcache.c -- the KV block bookkeeping: allocation and release, free
 * counts, reference counts of shared prefix blocks, prefix hits by chained
 * block hash (full blocks only, never the last token), LRU eviction of
 * cached blocks when the free list runs dry, and hit statistics.
 */
#include <string.h>

#include "kvcache.h"
#include "tap.h"

static void fill(int32_t *t, int n, int32_t base)
{
    for (int i = 0; i < n; i++)
        t[i] = base + i;
}

static void test_alloc_free(void)
{
    struct kvcache kv;
    struct kv_seq a = { 0 }, b = { 0 };
    int32_t t[64];

    ok(kvcache_init(&kv, 8, 4, 1) == 0, "init 8 blocks of 4");
    ok(kvcache_init(&(struct kvcache){ 0 }, 0, 4, 1) == -1, "zero blocks rejected");
    ok(kvcache_n_free(&kv) == 8, "all free");
    ok(kvcache_blocks_for(&kv, 0) == 0 && kvcache_blocks_for(&kv, 1) == 1 &&
       kvcache_blocks_for(&kv, 4) == 1 && kvcache_blocks_for(&kv, 5) == 2, "blocks_for");
    fill(t, 64, 100);
    ok(kvcache_seq_admit(&kv, &a, t, 10, 1, 10) == 0, "admit 10 tokens, nothing cached");
    ok(a.n_blocks == 3 && kvcache_n_free(&kv) == 5, "3 blocks held, 5 free");
    ok(kvcache_seq_reserve(&kv, &a, 12) == 0 && a.n_blocks == 3, "reserve within the last block");
    ok(kvcache_seq_reserve(&kv, &a, 13) == 0 && a.n_blocks == 4, "reserve a new block");
    ok(kvcache_seq_reserve(&kv, &a, 40) == -1 && a.n_blocks == 4 && kvcache_n_free(&kv) == 4,
       "reserve beyond the pool fails without change");
    ok(kvcache_seq_admit(&kv, &b, t + 32, 20, 1, 20) == -1 && b.n_blocks == 0 &&
       kvcache_n_free(&kv) == 4, "admit that does not fit fails without change");
    ok(kvcache_seq_admit(&kv, &b, t + 32, 20, 1, 8) == 0 && b.n_blocks == 2,
       "admit a first chunk of 8");
    {
        int seen[8] = { 0 }, dup = 0;
        for (int i = 0; i < a.n_blocks; i++)
            dup |= seen[a.blocks[i]]++;
        for (int i = 0; i < b.n_blocks; i++)
            dup |= seen[b.blocks[i]]++;
        ok(!dup, "no block is handed out twice");
    }
    kvcache_seq_release(&kv, &a);
    kvcache_seq_release(&kv, &b);
    ok(kvcache_n_free(&kv) == 8 && a.n_blocks == 0, "release returns everything");
    for (int i = 0; i < 8; i++)
        if (kv.blocks[i].ref != 0)
            ok(0, "block %d ref %d after release", i, kv.blocks[i].ref);
    kv_seq_free(&a);
    kv_seq_free(&b);
    kvcache_free(&kv);
}

static void test_prefix(void)
{
    struct kvcache kv;
    struct kv_seq a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 };
    int32_t t[32], u[32];

    kvcache_init(&kv, 10, 4, 1);
    fill(t, 32, 7);
    /* a computes 10 tokens: blocks 0,1 full, block 2 partial */
    ok(kvcache_seq_admit(&kv, &a, t, 10, 1, 10) == 0, "a: no hit on an empty cache");
    kvcache_seq_commit(&kv, &a, t, 10);
    ok(a.n_hashed == 2, "a: two full blocks hashed");
    ok(kv.blocks[a.blocks[0]].cached && kv.blocks[a.blocks[1]].cached &&
       !kv.blocks[a.blocks[2]].cached, "full blocks cached, partial one not");
    ok(kvcache_peek_prefix(&kv, t, 10) == 8, "peek: 8 tokens cached");
    ok(kvcache_peek_prefix(&kv, t, 8) == 4, "peek: the last token is never cached (8 -> 4)");
    ok(kvcache_peek_prefix(&kv, t, 9) == 8, "peek: 9 tokens -> 8 cached");
    memcpy(u, t, sizeof(u));
    u[5] = 999;
    ok(kvcache_peek_prefix(&kv, u, 12) == 4, "peek: a change in block 1 stops the chain");
    u[5] = t[5];
    u[1] = 999;
    ok(kvcache_peek_prefix(&kv, u, 12) == 0, "peek: a change in block 0 -> nothing");
    ok(kvcache_peek_prefix(&kv, t + 4, 12) == 0,
       "peek: the same tokens at another position do not match (chained hash)");

    /* b shares a's prefix while a still runs */
    ok(kvcache_seq_admit(&kv, &b, t, 12, 1, 4) == 8, "b: 8 cached tokens");
    ok(b.blocks[0] == a.blocks[0] && b.blocks[1] == a.blocks[1] && b.blocks[2] != a.blocks[2],
       "b shares a's two full blocks, owns its third");
    ok(kv.blocks[a.blocks[0]].ref == 2 && kv.blocks[a.blocks[1]].ref == 2, "refs are 2");
    ok(kvcache_n_free(&kv) == 6, "shared blocks counted once (3 + 1 held)");
    ok(kv.queries == 22 && kv.hits == 8, "stats: 22 queried (10 + 12), 8 hit");
    kvcache_seq_commit(&kv, &b, t, 12);
    ok(kv.blocks[b.blocks[2]].cached, "b's third block now cached");
    kvcache_seq_release(&kv, &a);
    ok(kv.blocks[b.blocks[0]].ref == 1, "release of a keeps b's refs");
    ok(kvcache_n_free(&kv) == 7, "a's private block is free");
    kvcache_seq_release(&kv, &b);
    ok(kvcache_n_free(&kv) == 10, "all free again");
    ok(kvcache_peek_prefix(&kv, t, 13) == 12, "freed cached blocks still match");

    /* hit on freed blocks takes them off the free list */
    ok(kvcache_seq_admit(&kv, &c, t, 13, 1, 1) == 12, "c: 12 cached from freed blocks");
    ok(c.n_blocks == 4 && kvcache_n_free(&kv) == 6, "c holds 3 reused + 1 new");
    ok(kvcache_seq_admit(&kv, &d, t, 13, 0, 13) == 0, "use_cache 0: no match");
    kvcache_seq_commit(&kv, &d, t, 13);
    ok(!kv.blocks[d.blocks[0]].cached, "a twin block is not registered twice");
    kvcache_seq_release(&kv, &d);
    kvcache_seq_release(&kv, &c);

    /* the same-step twin case: two sequences compute the same prompt */
    {
        struct kv_seq x = { 0 }, y = { 0 };
        kvcache_free(&kv);
        kvcache_init(&kv, 10, 4, 1);
        ok(kvcache_seq_admit(&kv, &x, t, 9, 1, 9) == 0 &&
           kvcache_seq_admit(&kv, &y, t, 9, 1, 9) == 0, "twins admitted before any commit");
        kvcache_seq_commit(&kv, &x, t, 9);
        kvcache_seq_commit(&kv, &y, t, 9);
        ok(kv.blocks[x.blocks[0]].cached && !kv.blocks[y.blocks[0]].cached,
           "the first twin's blocks are the cached ones");
        kvcache_seq_release(&kv, &x);
        kvcache_seq_release(&kv, &y);
        ok(kvcache_n_free(&kv) == 10 && kvcache_peek_prefix(&kv, t, 9) == 8,
           "all free, prefix still cached");
        kv_seq_free(&x);
        kv_seq_free(&y);
    }
    kv_seq_free(&a);
    kv_seq_free(&b);
    kv_seq_free(&c);
    kv_seq_free(&d);
    kvcache_free(&kv);
}

static void test_eviction(void)
{
    struct kvcache kv;
    struct kv_seq a = { 0 }, b = { 0 }, c = { 0 };
    int32_t t[64], u[64];

    kvcache_init(&kv, 6, 2, 1);
    fill(t, 64, 1000);
    fill(u, 64, 5000);
    kvcache_seq_admit(&kv, &a, t, 6, 1, 6);     /* 3 blocks */
    kvcache_seq_commit(&kv, &a, t, 6);
    kvcache_seq_release(&kv, &a);
    ok(kvcache_peek_prefix(&kv, t, 7) == 6, "a's 3 blocks cached and free");
    /* b needs 4 blocks: 3 never-cached free ones first, then the LRU cached */
    kvcache_seq_admit(&kv, &b, u, 8, 1, 8);
    ok(b.n_blocks == 4 && kvcache_n_free(&kv) == 2, "b holds 4");
    ok(kvcache_peek_prefix(&kv, t, 7) == 4, "one cached block of a evicted: its tail");
    ok(kv.evictions == 1, "one eviction counted");
    kvcache_seq_commit(&kv, &b, u, 8);
    kvcache_seq_release(&kv, &b);
    /* c uses everything: all cached content goes */
    ok(kvcache_seq_admit(&kv, &c, u + 20, 12, 1, 12) == 0 && c.n_blocks == 6,
       "c takes the whole pool");
    ok(kvcache_peek_prefix(&kv, t, 7) == 0 && kvcache_peek_prefix(&kv, u, 9) == 0,
       "every cached block evicted");
    kvcache_seq_release(&kv, &c);
    ok(kvcache_n_free(&kv) == 6, "free again");
    kv_seq_free(&a);
    kv_seq_free(&b);
    kv_seq_free(&c);
    kvcache_free(&kv);

    /* caching off: nothing is registered or matched */
    kvcache_init(&kv, 4, 2, 0);
    kvcache_seq_admit(&kv, &a, t, 5, 1, 5);
    kvcache_seq_commit(&kv, &a, t, 5);
    kvcache_seq_release(&kv, &a);
    ok(kvcache_peek_prefix(&kv, t, 5) == 0 && kv.queries == 0, "prefix caching off");
    kv_seq_free(&a);
    kvcache_free(&kv);
}

int main(void)
{
    test_alloc_free();
    test_prefix();
    test_eviction();
    return tap_done();
}
