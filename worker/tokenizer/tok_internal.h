/*
 * tok_internal.h -- the tokenizer's private state, shared by the files of
 * worker/tokenizer/ only (loading, pre-tokenizer, BPE, encode/decode). Nothing
 * outside this folder includes it. Everything is immutable after
 * tokenizer_load() except the word cache, which sits behind its own mutex.
 */
#ifndef LLMUX_TOK_INTERNAL_H
#define LLMUX_TOK_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

/* per-id flags */
#define TOKF_PRESENT 0x01       /* the id names a token (ids may have gaps) */
#define TOKF_ADDED 0x02         /* an added token (tokenizer.json "added_tokens") */
#define TOKF_SPECIAL 0x04       /* an added token with special: true */

/* normalizers we implement (tokenizer.json "normalizer") */
enum tok_norm { TOK_NORM_NONE = 0, TOK_NORM_NFC, TOK_NORM_NFKC, TOK_NORM_NFD, TOK_NORM_NFKD };

struct tok_added {
    const char *content;        /* as matched: normalized when <normalized> (in tok->arena) */
    uint32_t len;
    int32_t id;
    uint8_t single_word, lstrip, rstrip, normalized, special;
};

/* One set of added tokens to match (the raw or the normalized ones): for each
 * first byte, the indices into tok->added of the tokens starting with it,
 * longest first, so the first hit at a position is the leftmost-longest one. */
struct tok_added_set {
    uint32_t first[257];        /* first[b]..first[b+1]: range in <idx> */
    uint32_t *idx;
    uint32_t n;
};

/* merge (left id, right id) -> (rank, new id); open addressing */
struct tok_merge_slot {
    uint64_t key;               /* (left << 32 | right) + 1; 0 = empty */
    uint32_t rank;
    int32_t new_id;
};

/* model types (tokenizer.json "model.type") */
enum tok_model { TOK_MODEL_BPE = 0, TOK_MODEL_UNIGRAM };

/* SentencePiece's precompiled charsmap (tok_charsmap.c) */
struct tok_charsmap {
    uint32_t *units;            /* Darts double array */
    size_t n_units;
    char *blob;                 /* NUL-terminated replacements (blob[blob_len] = 0) */
    size_t blob_len;
    int64_t ascii[128];         /* replacement offset of each ASCII character, or -1 */
};

/* Metaspace prepend schemes */
enum tok_prepend { TOK_PREPEND_NEVER = 0, TOK_PREPEND_ALWAYS, TOK_PREPEND_FIRST };

/* The Unigram model and its normalizer / Metaspace settings (tok_unigram.c).
 * Piece strings are tok->strs + tok->str_off[id] for id < n_pieces. */
struct tok_unigram {
    size_t n_pieces;
    double *scores;             /* [n_pieces] */
    int32_t unk_id;
    double unk_score;           /* min score - 10 */
    int fuse_unk;
    /* trie of the pieces' bytes: node 0 is the root; a node's children are
     * edges[first_edge .. first_edge + n_edges), each child << 8 | label,
     * sorted by label */
    struct tok_uni_node {
        uint32_t first_edge, n_edges;
        int32_t id;             /* piece ending here, or -1 */
    } *nodes;
    uint32_t *edges;
    uint32_t n_nodes, n_edges;
    uint32_t root_child[256];
    /* normalizer: Precompiled, then Replace(" {2,}" -> " ") */
    int has_charsmap, collapse_spaces;
    struct tok_charsmap cm;
    /* Metaspace pre-tokenizer and decoder */
    int metaspace, split;
    enum tok_prepend prepend;
    int dec_metaspace;
    enum tok_prepend dec_prepend;
    char repl[8];               /* the replacement character's UTF-8 */
    size_t repl_len;
};

/* word cache: raw word bytes -> ids. Bounded; cleared when full. */
struct tok_cache {
    pthread_mutex_t lock;
    uint32_t *slots;            /* offset+1 into <arena>, 0 = empty */
    uint32_t mask, used;
    char *arena;
    size_t arena_len, arena_cap;
};

struct tokenizer {
    int32_t n_ids;              /* max id + 1 */
    uint8_t *flags;             /* [n_ids] TOKF_* */
    uint32_t *str_off;          /* [n_ids] token string (byte-level form) in <strs> */
    uint32_t *bytes_off;        /* [n_ids] decoded bytes in <bytes>, length in bytes_len */
    uint32_t *bytes_len;
    char *strs, *bytes;         /* NUL-separated arenas */
    char *arena;                /* added-token contents (normalized forms) */

    struct tok_vslot {          /* model vocab: byte-level string -> id */
        uint32_t str_off;       /* the model's string in <strs> */
        int32_t id;             /* -1: empty */
    } *vmap;
    uint32_t vmap_mask;
    struct tok_merge_slot *merges;
    uint32_t merges_mask;
    int32_t byte_id[256];       /* id of the one-character token of each byte, or -1 */

    struct tok_added *added;
    size_t n_added;
    struct tok_added_set raw_set, norm_set;

    enum tok_norm norm;
    int ignore_merges;
    int32_t *post_pre, *post_post;      /* ids the post-processor adds around a sequence */
    size_t n_post_pre, n_post_post;
    /* pair template: pair_pre A pair_mid B pair_post; pair_ok 0 when the
     * post-processor's pair form is one we cannot express so */
    int32_t *pair_pre, *pair_mid, *pair_post;
    size_t n_pair_pre, n_pair_mid, n_pair_post;
    int pair_ok;

    enum tok_model model;
    struct tok_unigram *uni;    /* TOK_MODEL_UNIGRAM only */

    int32_t bos_id, eos_id, pad_id;
    char *bos_tok, *eos_tok, *pad_tok;
    int add_bos_token;

    struct tok_cache cache;
};

/* GPT-2 byte-level mapping: the code point that stands for byte <b>, and the
 * byte a code point stands for (-1 when none). */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp);

/* Pre-tokenizer (tok_pretok.c): the end of the Qwen2 regex match starting at
 * <pos> of the valid UTF-8 <s>[0..len); always > pos when pos < len. */
size_t tok_pretok_next(const char *s, size_t len, size_t pos);
/* The exact pattern tok_pretok_next implements. */
extern const char tok_qwen2_pattern[];

/* Unicode helpers (tok_pretok.c). Decode one code point from valid UTF-8. */
uint32_t tok_utf8_decode(const unsigned char *s, size_t *n);
int tok_is_white_space(uint32_t cp);
int tok_is_word_char(uint32_t cp);
/* Strict validation: 1 when <s>[0..len) is valid UTF-8 (no overlongs,
 * surrogates or values above U+10FFFF); else 0 and *bad = first bad offset. */
int tok_utf8_valid(const char *s, size_t len, size_t *bad);

/* BPE (tok_bpe.c). Append the ids of one pre-token (raw bytes) to
 * the id array (ids, n, cap), using and filling the word cache. <scratch> is reusable
 * per-call memory (freed with tok_bpe_scratch_free). */
struct tok_bpe_scratch {
    void *sym;
    size_t sym_cap;
    void *heap;
    size_t heap_cap;
    char *buf;
    size_t buf_cap;
};
void tok_bpe_word(const struct tokenizer *tok, const char *w, size_t len,
                  struct tok_bpe_scratch *sc, int32_t **ids, size_t *n, size_t *cap);
void tok_bpe_scratch_free(struct tok_bpe_scratch *sc);
int tok_merge_lookup(const struct tokenizer *tok, int32_t a, int32_t b, uint32_t *rank,
                     int32_t *new_id);
void tok_cache_init(struct tok_cache *c);
void tok_cache_free(struct tok_cache *c);

/* One encode call's state: the ids so far and reusable scratch memory. */
struct tok_uni_scratch {
    char *norm, *word;
    size_t norm_len, norm_cap, word_len, word_cap;
    void *best;
    size_t best_cap;
};
struct tok_enc {
    const struct tokenizer *tok;
    int32_t *ids;
    size_t n, cap;
    struct tok_bpe_scratch sc;
    struct tok_uni_scratch usc;
    const char *base;           /* start of the text being encoded */
};

/* Unigram (tok_unigram.c): build the piece trie from the loaded vocabulary;
 * encode one piece of text between added tokens (normalize, Metaspace,
 * Viterbi), appending to e->ids. */
int tok_unigram_build(struct tokenizer *tok, char *err, size_t errlen);
void tok_unigram_piece(struct tok_enc *e, const char *s, size_t len);
void tok_uni_scratch_free(struct tok_uni_scratch *sc);
void tok_unigram_free(struct tok_unigram *u);

/* Precompiled charsmap (tok_charsmap.c): load from the base64 text; append
 * the normalization of text[0..n) (valid UTF-8) to *out (NUL-terminated). */
int tok_charsmap_load(struct tok_charsmap *cm, const char *b64, size_t b64_len, char *err,
                      size_t errlen);
void tok_charsmap_free(struct tok_charsmap *cm);
void tok_charsmap_normalize(const struct tok_charsmap *cm, const char *text, size_t n,
                            char **out, size_t *len, size_t *cap);

/* printf into a caller's error buffer (tokenizer.c) */
void tok_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The model vocabulary id of a byte-level string, or -1. */
int32_t tok_vocab_find(const struct tokenizer *tok, const char *s, size_t len);

/* Append ids to a growing array. */
void tok_ids_push(int32_t **ids, size_t *n, size_t *cap, int32_t id);

/* utf8proc_map options of a normalizer (tok_codec.c) */
int tok_norm_options(enum tok_norm norm);

/* Lossy UTF-8 (tok_codec.c): append <in>[0..n) to <out> as Rust's
 * String::from_utf8_lossy does (one U+FFFD per maximal invalid subpart).
 * With <final> 0 an incomplete but valid tail is not consumed: the number of
 * bytes consumed is returned. */
size_t tok_utf8_lossy(const unsigned char *in, size_t n, int final, char **out,
                      size_t *out_len, size_t *out_cap);

#endif
