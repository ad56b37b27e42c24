/*
 * tok_unigram.c -- the SentencePiece Unigram model of a tokenizer.json as
 * Hugging Face tokenizers runs it: each piece between added tokens is
 * normalized (precompiled charsmap, then runs of spaces collapsed), given the
 * Metaspace treatment (spaces become the replacement character, one is
 * prepended, the text is split before each), and each word is cut by Viterbi
 * over the piece scores, candidates taken in the library's order (start
 * ascending, shorter pieces first, unknown last; ties keep the first) so that
 * equal-score paths resolve the same way. Unknown characters score
 * min_score - 10 and consecutive ones are fused into one <unk>.
 * The piece trie is immutable after tok_unigram_build().
 */
#include <stdlib.h>
#include <string.h>

#include "tok_internal.h"
#include "util.h"

#define UNK_PENALTY 10.0

/* ---- piece trie ------------------------------------------------------------- */

struct sort_item {
    const char *s;
    int32_t id;
};

static int sort_cmp(const void *a, const void *b)
{
    const struct sort_item *x = a, *y = b;
    int c = strcmp(x->s, y->s);
    return c ? c : (x->id > y->id) - (x->id < y->id);
}

/* items[lo..hi) share their first <depth> bytes and end at or below <node> */
static void build_node(struct tok_unigram *u, const struct sort_item *items, uint32_t node,
                       size_t lo, size_t hi, size_t depth)
{
    /* pieces ending here: equal strings, the last id wins (as HF's map) */
    while (lo < hi && items[lo].s[depth] == '\0') {
        u->nodes[node].id = items[lo].id;
        lo++;
    }
    uint32_t k = 0;
    for (size_t i = lo; i < hi;) {
        unsigned char b = (unsigned char)items[i].s[depth];
        while (i < hi && (unsigned char)items[i].s[depth] == b)
            i++;
        k++;
    }
    uint32_t first = u->n_edges;
    u->nodes[node].first_edge = first;
    u->nodes[node].n_edges = k;
    u->n_edges += k;
    uint32_t j = 0;
    for (size_t i = lo; i < hi;) {
        unsigned char b = (unsigned char)items[i].s[depth];
        size_t g = i;
        while (i < hi && (unsigned char)items[i].s[depth] == b)
            i++;
        uint32_t child = u->n_nodes++;
        u->nodes[child].id = -1;
        u->edges[first + j++] = child << 8 | b;
        build_node(u, items, child, g, i, depth + 1);
    }
}

int tok_unigram_build(struct tokenizer *tok, char *err, size_t errlen)
{
    struct tok_unigram *u = tok->uni;
    size_t n = u->n_pieces, total = 1;
    struct sort_item *items = xmalloc((n ? n : 1) * sizeof(*items));

    for (size_t i = 0; i < n; i++) {
        items[i].s = tok->strs + tok->str_off[i];
        items[i].id = (int32_t)i;
        total += strlen(items[i].s);
    }
    if (total >= (1u << 24)) {
        tok_set_err(err, errlen, "unigram vocabulary too large");
        free(items);
        return -1;
    }
    qsort(items, n, sizeof(*items), sort_cmp);
    u->nodes = xmalloc(total * sizeof(*u->nodes));
    u->edges = xmalloc(total * sizeof(*u->edges));
    u->n_nodes = 1;
    u->n_edges = 0;
    u->nodes[0].id = -1;
    build_node(u, items, 0, 0, n, 0);
    free(items);
    u->nodes = xrealloc(u->nodes, u->n_nodes * sizeof(*u->nodes));
    u->edges = xrealloc(u->edges, (u->n_edges ? u->n_edges : 1) * sizeof(*u->edges));
    memset(u->root_child, 0, sizeof(u->root_child));
    for (uint32_t e = 0; e < u->nodes[0].n_edges; e++) {
        uint32_t v = u->edges[u->nodes[0].first_edge + e];
        u->root_child[v & 0xff] = v >> 8;
    }
    return 0;
}

/* child of <node> labelled <b>, or 0 (the root is never a child) */
static uint32_t trie_child(const struct tok_unigram *u, uint32_t node, unsigned char b)
{
    if (node == 0)
        return u->root_child[b];
    const uint32_t *e = u->edges + u->nodes[node].first_edge;
    uint32_t lo = 0, hi = u->nodes[node].n_edges;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        unsigned l = e[mid] & 0xff;
        if (l == b)
            return e[mid] >> 8;
        if (l < b)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/* ---- Viterbi ------------------------------------------------------------------- */

struct best {
    double score;
    int32_t start;              /* -1: no path ends here yet */
    int32_t id;
};

static size_t utf8_len(unsigned char c)
{
    return c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
}

/* Append the ids of one word w[0..len) (valid UTF-8, len > 0). */
static void unigram_word(struct tok_enc *e, const char *w, size_t len)
{
    const struct tokenizer *tok = e->tok;
    const struct tok_unigram *u = tok->uni;
    struct tok_uni_scratch *sc = &e->usc;
    const unsigned char *s = (const unsigned char *)w;

    if (len + 1 > sc->best_cap)
        xgrow(&sc->best, &sc->best_cap, len + 1, sizeof(struct best));
    struct best *best = sc->best;
    for (size_t i = 0; i <= len; i++)
        best[i].start = -1;
    best[0].score = 0.0;

    for (size_t st = 0; st < len;) {
        double here = best[st].score;
        size_t mblen = utf8_len(s[st]);
        int single = 0;
        uint32_t node = 0;
        for (size_t i = st; i < len; i++) {
            node = trie_child(u, node, s[i]);
            if (!node)
                break;
            int32_t id = u->nodes[node].id;
            if (id < 0)
                continue;
            double cand = u->scores[id] + here;
            struct best *t = &best[i + 1];
            if (t->start < 0 || cand > t->score) {
                t->score = cand;
                t->start = (int32_t)st;
                t->id = id;
            }
            if (i + 1 - st == mblen)
                single = 1;
        }
        if (!single) {
            double cand = u->unk_score + here;
            struct best *t = &best[st + mblen];
            if (t->start < 0 || cand > t->score) {
                t->score = cand;
                t->start = (int32_t)st;
                t->id = u->unk_id;
            }
        }
        st += mblen;
    }

    /* backtrack: (start, end, id) from the end, unknown runs fused */
    size_t first = e->n, end = len, unk_end = 0;
    int in_unk = 0;
    while (end > 0) {
        const struct best *b = &best[end];
        size_t start = (size_t)b->start;
        if (u->fuse_unk && b->id == u->unk_id) {
            if (!in_unk) {
                in_unk = 1;
                unk_end = end;
            }
        } else {
            if (in_unk) {
                int32_t id = tok_vocab_find(tok, w + end, unk_end - end);
                tok_ids_push(&e->ids, &e->n, &e->cap, id >= 0 ? id : u->unk_id);
                in_unk = 0;
            }
            tok_ids_push(&e->ids, &e->n, &e->cap, b->id);
        }
        end = start;
    }
    if (in_unk) {
        int32_t id = tok_vocab_find(tok, w, unk_end);
        tok_ids_push(&e->ids, &e->n, &e->cap, id >= 0 ? id : u->unk_id);
    }
    /* reverse what this word appended */
    for (size_t i = first, j = e->n; i + 1 < j; i++, j--) {
        int32_t t = e->ids[i];
        e->ids[i] = e->ids[j - 1];
        e->ids[j - 1] = t;
    }
}

/* ---- normalizer and pre-tokenizer -------------------------------------------- */

/* Collapse runs of two or more spaces into one, in place (" {2,}" -> " "). */
static size_t collapse_spaces(char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ' && o > 0 && s[o - 1] == ' ' && i > 0 && s[i - 1] == ' ')
            continue;
        s[o++] = s[i];
    }
    return o;
}

static void buf_append(char **b, size_t *len, size_t *cap, const void *p, size_t n)
{
    if (*len + n + 1 > *cap)
        xgrow((void **)b, cap, *len + n + 1 + 64, 1);
    memcpy(*b + *len, p, n);
    *len += n;
}

void tok_unigram_piece(struct tok_enc *e, const char *s, size_t len)
{
    const struct tok_unigram *u = e->tok->uni;
    struct tok_uni_scratch *sc = &e->usc;
    const char *norm = s;
    size_t nlen = len;

    if (u->has_charsmap || u->collapse_spaces) {
        sc->norm_len = 0;
        if (u->has_charsmap)
            tok_charsmap_normalize(&u->cm, s, len, &sc->norm, &sc->norm_len, &sc->norm_cap);
        else
            buf_append(&sc->norm, &sc->norm_len, &sc->norm_cap, s, len);
        if (u->collapse_spaces)
            sc->norm_len = collapse_spaces(sc->norm, sc->norm_len);
        norm = sc->norm;
        nlen = sc->norm_len;
    }
    if (nlen == 0)
        return;
    if (!u->metaspace) {
        unigram_word(e, norm, nlen);
        return;
    }
    /* spaces become the replacement; maybe one is prepended */
    sc->word_len = 0;
    int starts = norm[0] == ' ' ||
                 (nlen >= u->repl_len && memcmp(norm, u->repl, u->repl_len) == 0);
    if (!starts && (u->prepend == TOK_PREPEND_ALWAYS ||
                    (u->prepend == TOK_PREPEND_FIRST && s == e->base)))
        buf_append(&sc->word, &sc->word_len, &sc->word_cap, u->repl, u->repl_len);
    size_t run = 0;
    for (size_t i = 0; i < nlen; i++)
        if (norm[i] == ' ') {
            buf_append(&sc->word, &sc->word_len, &sc->word_cap, norm + run, i - run);
            buf_append(&sc->word, &sc->word_len, &sc->word_cap, u->repl, u->repl_len);
            run = i + 1;
        }
    buf_append(&sc->word, &sc->word_len, &sc->word_cap, norm + run, nlen - run);
    const char *w = sc->word;
    size_t wl = sc->word_len;
    if (!u->split) {
        unigram_word(e, w, wl);
        return;
    }
    /* split before each replacement character (MergedWithNext) */
    size_t start = 0;
    for (size_t i = 1; i + u->repl_len <= wl; i++)
        if (memcmp(w + i, u->repl, u->repl_len) == 0) {
            unigram_word(e, w + start, i - start);
            start = i;
            i += u->repl_len - 1;
        }
    unigram_word(e, w + start, wl - start);
}

void tok_uni_scratch_free(struct tok_uni_scratch *sc)
{
    free(sc->norm);
    free(sc->word);
    free(sc->best);
    memset(sc, 0, sizeof(*sc));
}

void tok_unigram_free(struct tok_unigram *u)
{
    if (!u)
        return;
    free(u->scores);
    free(u->nodes);
    free(u->edges);
    tok_charsmap_free(&u->cm);
    free(u);
}
