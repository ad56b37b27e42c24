/*
 * tok_bpe.c -- byte-level BPE of one pre-token, as Hugging Face's
 * Word::merge_all does it: symbols in a linked list, a min-heap of candidate
 * merges ordered by (rank, position), stale entries skipped when popped. A
 * bounded cache maps recent words (raw bytes) to their ids; it is the only
 * mutable part of a tokenizer and is guarded by a mutex taken with trylock,
 * so concurrent encoders never wait (they just skip the cache).
 */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"
#include "util.h"

#define CACHE_SLOTS (1u << 15)          /* power of two */
#define CACHE_MAX_ENTRIES (CACHE_SLOTS / 2)
#define CACHE_ARENA (2u << 20)
#define CACHE_MAX_WORD 64               /* longer words are not cached */

struct sym {
    int32_t id;
    int32_t prev, next;         /* symbol indices, -1 at the ends */
    uint32_t len;               /* bytes covered; 0 once merged into its left */
};

struct cand {
    uint32_t rank;
    uint32_t pos;
    int32_t new_id;
};

void tok_ids_push(int32_t **ids, size_t *n, size_t *cap, int32_t id)
{
    if (*n + 1 > *cap)
        xgrow((void **)ids, cap, *n + 1 < 16 ? 16 : *n + 1, sizeof(int32_t));
    (*ids)[(*n)++] = id;
}

void tok_bpe_scratch_free(struct tok_bpe_scratch *sc)
{
    free(sc->sym);
    free(sc->heap);
    free(sc->buf);
    memset(sc, 0, sizeof(*sc));
}

/* ---- word cache ------------------------------------------------------------ */

struct centry {
    uint32_t hash;
    uint16_t wlen, nids;
    /* word bytes, then padding to 4, then nids int32 ids */
};

void tok_cache_init(struct tok_cache *c)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    c->mask = CACHE_SLOTS - 1;
    c->slots = xcalloc(CACHE_SLOTS, sizeof(uint32_t));
    c->arena_cap = CACHE_ARENA;
    c->arena = xmalloc(c->arena_cap);
}

void tok_cache_free(struct tok_cache *c)
{
    if (!c->slots)
        return;
    pthread_mutex_destroy(&c->lock);
    free(c->slots);
    free(c->arena);
    c->slots = NULL;
    c->arena = NULL;
}

static size_t centry_ids_off(size_t wlen)
{
    return (sizeof(struct centry) + wlen + 3) & ~(size_t)3;
}

/* The cache slot of <w> (its arena entry), or NULL. Lock held. */
static const struct centry *cache_find(const struct tok_cache *c, uint32_t h, const char *w,
                                       size_t len)
{
    uint32_t i = h & c->mask;
    for (;;) {
        uint32_t o = c->slots[i];
        if (!o)
            return NULL;
        const struct centry *e = (const struct centry *)(c->arena + o - 1);
        if (e->hash == h && e->wlen == len && memcmp(e + 1, w, len) == 0)
            return e;
        i = (i + 1) & c->mask;
    }
}

static int cache_get(struct tokenizer *tok, uint32_t h, const char *w, size_t len,
                     int32_t **ids, size_t *n, size_t *cap)
{
    struct tok_cache *c = &tok->cache;
    if (pthread_mutex_trylock(&c->lock) != 0)
        return 0;
    const struct centry *e = cache_find(c, h, w, len);
    if (e) {
        const int32_t *eids = (const int32_t *)((const char *)e + centry_ids_off(len));
        if (*n + e->nids > *cap)
            xgrow((void **)ids, cap, *n + e->nids + 16, sizeof(int32_t));
        memcpy(*ids + *n, eids, e->nids * sizeof(int32_t));
        *n += e->nids;
    }
    pthread_mutex_unlock(&c->lock);
    return e != NULL;
}

static void cache_put(struct tokenizer *tok, uint32_t h, const char *w, size_t len,
                      const int32_t *ids, size_t nids)
{
    struct tok_cache *c = &tok->cache;
    size_t need = centry_ids_off(len) + nids * sizeof(int32_t);
    if (pthread_mutex_trylock(&c->lock) != 0)
        return;
    if (c->used >= CACHE_MAX_ENTRIES || c->arena_len + need > c->arena_cap) {
        memset(c->slots, 0, ((size_t)c->mask + 1) * sizeof(uint32_t));
        c->used = 0;
        c->arena_len = 0;
    }
    if (!cache_find(c, h, w, len)) {
        struct centry *e = (struct centry *)(c->arena + c->arena_len);
        e->hash = h;
        e->wlen = (uint16_t)len;
        e->nids = (uint16_t)nids;
        memcpy(e + 1, w, len);
        memcpy((char *)e + centry_ids_off(len), ids, nids * sizeof(int32_t));
        uint32_t i = h & c->mask;
        while (c->slots[i])
            i = (i + 1) & c->mask;
        c->slots[i] = (uint32_t)c->arena_len + 1;
        c->arena_len += need;
        c->used++;
    }
    pthread_mutex_unlock(&c->lock);
}

/* ---- merging ---------------------------------------------------------------- */

static int cand_less(const struct cand *a, const struct cand *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(struct cand *h, size_t *n, struct cand c)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static struct cand heap_pop(struct cand *h, size_t *n)
{
    struct cand top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, m = l;
        if (l >= *n)
            break;
        if (l + 1 < *n && cand_less(&h[l + 1], &h[l]))
            m = l + 1;
        if (!cand_less(&h[m], &last))
            break;
        h[i] = h[m];
        i = m;
    }
    if (*n)
        h[i] = last;
    return top;
}

static void push_pair(const struct tokenizer *tok, struct cand *heap, size_t *nh,
                      const struct sym *s, int32_t pos)
{
    uint32_t rank;
    int32_t new_id;
    if (s[pos].next >= 0 && tok_merge_lookup(tok, s[pos].id, s[s[pos].next].id, &rank, &new_id))
        heap_push(heap, nh, (struct cand){ rank, (uint32_t)pos, new_id });
}

/* Merge the symbols of <w>; appends the ids. */
static void bpe_merge(const struct tokenizer *tok, const char *w, size_t len,
                      struct tok_bpe_scratch *sc, int32_t **ids, size_t *n, size_t *cap)
{
    if (len > sc->sym_cap)
        xgrow(&sc->sym, &sc->sym_cap, len, sizeof(struct sym));
    /* each merge pushes at most two candidates */
    if (3 * len > sc->heap_cap)
        xgrow(&sc->heap, &sc->heap_cap, 3 * len, sizeof(struct cand));
    struct sym *s = sc->sym;
    struct cand *heap = sc->heap;
    size_t nh = 0;
    int32_t ns = 0;

    for (size_t i = 0; i < len; i++) {
        int32_t id = tok->byte_id[(unsigned char)w[i]];
        if (id < 0)
            continue;           /* no token for this byte and no unk: dropped, as HF */
        s[ns] = (struct sym){ id, ns - 1, -1, 1 };
        if (ns > 0)
            s[ns - 1].next = ns;
        ns++;
    }
    for (int32_t i = 0; i + 1 < ns; i++)
        push_pair(tok, heap, &nh, s, i);

    while (nh) {
        struct cand top = heap_pop(heap, &nh);
        struct sym *l = &s[top.pos];
        if (l->len == 0 || l->next < 0)
            continue;
        struct sym *r = &s[l->next];
        uint32_t rank;
        int32_t new_id;
        if (!tok_merge_lookup(tok, l->id, r->id, &rank, &new_id) || new_id != top.new_id)
            continue;           /* stale */
        l->id = new_id;
        l->len += r->len;
        l->next = r->next;
        r->len = 0;
        if (l->next >= 0)
            s[l->next].prev = (int32_t)top.pos;
        if (l->prev >= 0)
            push_pair(tok, heap, &nh, s, l->prev);
        push_pair(tok, heap, &nh, s, (int32_t)top.pos);
    }
    for (int32_t i = ns ? 0 : -1; i >= 0; i = s[i].next)
        tok_ids_push(ids, n, cap, s[i].id);
}

void tok_bpe_word(const struct tokenizer *ctok, const char *w, size_t len,
                  struct tok_bpe_scratch *sc, int32_t **ids, size_t *n, size_t *cap)
{
    /* the cache is the one mutable part; it has its own lock */
    struct tokenizer *tok = (struct tokenizer *)ctok;
    uint32_t h = 0;
    int cacheable = len <= CACHE_MAX_WORD;

    if (len == 0)
        return;
    if (len == 1 && tok->byte_id[(unsigned char)w[0]] >= 0) {
        tok_ids_push(ids, n, cap, tok->byte_id[(unsigned char)w[0]]);
        return;
    }
    if (tok->ignore_merges) {
        /* a word that is itself a token is that token */
        size_t need = 2 * len + 1;
        if (need > sc->buf_cap)
            xgrow((void **)&sc->buf, &sc->buf_cap, need, 1);
        size_t bl = 0;
        for (size_t i = 0; i < len; i++) {
            uint32_t cp = tok_byte_to_cp((unsigned char)w[i]);
            if (cp < 0x80)
                sc->buf[bl++] = (char)cp;
            else {
                sc->buf[bl++] = (char)(0xc0 | (cp >> 6));
                sc->buf[bl++] = (char)(0x80 | (cp & 0x3f));
            }
        }
        int32_t id = tok_vocab_find(tok, sc->buf, bl);
        if (id >= 0) {
            tok_ids_push(ids, n, cap, id);
            return;
        }
    }
    if (cacheable) {
        h = (uint32_t)hash64(w, len, 0x627065);
        if (cache_get(tok, h, w, len, ids, n, cap))
            return;
    }
    size_t start = *n;
    bpe_merge(tok, w, len, sc, ids, n, cap);
    if (cacheable)
        cache_put(tok, h, w, len, *ids + start, *n - start);
}
