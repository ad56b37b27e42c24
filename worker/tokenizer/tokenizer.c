/*
 * tokenizer.c -- loading a Hugging Face tokenizer.json (byte-level BPE: vocab,
 * merges, added tokens, normalizer, pre-tokenizer, post-processor, decoder)
 * and tokenizer_config.json (bos/eos/pad), and the read-only accessors. Any
 * component we do not implement exactly is a load error naming it, never a
 * silent approximation. Encoding and decoding live in tok_codec.c.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <utf8proc.h>

#include "log.h"
#include "tok_internal.h"
#include "util.h"

#define set_err tok_set_err

void tok_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static uint32_t pow2_at_least(size_t n)
{
    uint32_t c = 16;
    while (c < n)
        c <<= 1;
    return c;
}

/* ---- vocab hash: byte-level string -> id ---------------------------------- */

static uint64_t str_hash(const char *s, size_t len)
{
    return hash64(s, len, 0x746f6b);
}

int32_t tok_vocab_find(const struct tokenizer *tok, const char *s, size_t len)
{
    uint32_t i = (uint32_t)str_hash(s, len) & tok->vmap_mask;
    for (;;) {
        const struct tok_vslot *v = &tok->vmap[i];
        if (v->id < 0)
            return -1;
        const char *t = tok->strs + v->str_off;
        if (strncmp(t, s, len) == 0 && t[len] == '\0')
            return v->id;
        i = (i + 1) & tok->vmap_mask;
    }
}

static void vocab_insert(struct tokenizer *tok, int32_t id)
{
    const char *s = tok->strs + tok->str_off[id];
    uint32_t i = (uint32_t)str_hash(s, strlen(s)) & tok->vmap_mask;
    while (tok->vmap[i].id >= 0)
        i = (i + 1) & tok->vmap_mask;
    tok->vmap[i].id = id;
    tok->vmap[i].str_off = tok->str_off[id];
}

/* ---- merges: (left, right) -> (rank, new id) ------------------------------ */

static uint32_t merge_hash(uint64_t key, uint32_t mask)
{
    key *= 0x9e3779b97f4a7c15ull;
    return (uint32_t)(key >> 32) & mask;
}

int tok_merge_lookup(const struct tokenizer *tok, int32_t a, int32_t b, uint32_t *rank,
                     int32_t *new_id)
{
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint32_t i = merge_hash(key, tok->merges_mask);
    for (;;) {
        const struct tok_merge_slot *s = &tok->merges[i];
        if (s->key == key) {
            *rank = s->rank;
            *new_id = s->new_id;
            return 1;
        }
        if (s->key == 0)
            return 0;
        i = (i + 1) & tok->merges_mask;
    }
}

/* a later duplicate of a pair replaces the earlier one, as HF's HashMap
 * collect does */
static void merge_insert(struct tokenizer *tok, int32_t a, int32_t b, uint32_t rank,
                         int32_t new_id)
{
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint32_t i = merge_hash(key, tok->merges_mask);
    while (tok->merges[i].key != 0) {
        if (tok->merges[i].key == key)
            break;
        i = (i + 1) & tok->merges_mask;
    }
    tok->merges[i].key = key;
    tok->merges[i].rank = rank;
    tok->merges[i].new_id = new_id;
}

static int load_merges(struct tokenizer *tok, json_t *merges, char *err, size_t errlen)
{
    size_t n = json_array_size(merges);
    tok->merges_mask = pow2_at_least(n * 2 + 1) - 1;
    tok->merges = xcalloc((size_t)tok->merges_mask + 1, sizeof(*tok->merges));
    char *buf = NULL;
    size_t buf_cap = 0;
    for (size_t r = 0; r < n; r++) {
        json_t *m = json_array_get(merges, r);
        const char *a, *b;
        size_t alen, blen;
        if (json_is_string(m)) {
            a = json_string_value(m);
            const char *sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                set_err(err, errlen, "merge %zu is not \"a b\"", r);
                goto fail;
            }
            alen = (size_t)(sp - a);
            b = sp + 1;
            blen = strlen(b);
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            alen = strlen(a);
            blen = strlen(b);
        } else {
            set_err(err, errlen, "merge %zu is neither \"a b\" nor [\"a\", \"b\"]", r);
            goto fail;
        }
        int32_t ia = tok_vocab_find(tok, a, alen), ib = tok_vocab_find(tok, b, blen);
        if (ia < 0 || ib < 0) {
            set_err(err, errlen, "merge %zu: token %s not in the vocabulary", r,
                    ia < 0 ? "left" : "right");
            goto fail;
        }
        if (alen + blen + 1 > buf_cap)
            xgrow((void **)&buf, &buf_cap, alen + blen + 1, 1);
        memcpy(buf, a, alen);
        memcpy(buf + alen, b, blen);
        int32_t inew = tok_vocab_find(tok, buf, alen + blen);
        if (inew < 0) {
            buf[alen + blen] = '\0';
            set_err(err, errlen, "merge %zu: merged token \"%s\" not in the vocabulary", r, buf);
            goto fail;
        }
        merge_insert(tok, ia, ib, (uint32_t)r, inew);
    }
    free(buf);
    return 0;
fail:
    free(buf);
    return -1;
}

/* ---- strings of ids --------------------------------------------------------- */

/* The bytes a token decodes to, as the ByteLevel decoder does: every
 * character mapped back to its byte, or the token's own UTF-8 when one
 * character is outside the byte-level alphabet. Written to <out> (room for
 * strlen(s) bytes); returns the length. */
static size_t token_decode_bytes(const char *s, char *out)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0, w;
    while (*p) {
        uint32_t cp = tok_utf8_decode(p, &w);
        int b = tok_cp_to_byte(cp);
        if (b < 0) {
            n = strlen(s);
            memcpy(out, s, n);
            return n;
        }
        out[n++] = (char)b;
        p += w;
    }
    return n;
}

static int json_flag(json_t *o, const char *key)
{
    return json_is_true(json_object_get(o, key));
}

static char *normalize_str(enum tok_norm norm, const char *s)
{
    utf8proc_uint8_t *dst = NULL;
    if (norm == TOK_NORM_NONE ||
        utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)strlen(s), &dst,
                     (utf8proc_option_t)tok_norm_options(norm)) < 0)
        return xstrdup(s);
    char *r = xstrdup((char *)dst);
    free(dst);
    return r;
}

/* The added token whose content is <c>, or NULL. */
static struct tok_added *added_find(struct tokenizer *tok, const char *c)
{
    for (size_t i = 0; i < tok->n_added; i++)
        if (strcmp(tok->added[i].content, c) == 0)
            return &tok->added[i];
    return NULL;
}

/* Give the added tokens their ids as HF's AddedVocabulary::add_tokens does
 * (the ids written in tokenizer.json are only checked, with a warning, by
 * HF): a content already known (added before, or in the model vocab) keeps
 * that id, a new one takes the next id after the model's vocabulary size (or
 * after the highest added id). An empty content is ignored; a repeated
 * content replaces the earlier properties. Contents point into <added>. */
static int assign_added(struct tokenizer *tok, json_t *added, size_t vocab_count,
                        int64_t *max_id, char *err, size_t errlen)
{
    int64_t next_id = (int64_t)vocab_count;
    tok->added = xcalloc(json_array_size(added) + 1, sizeof(*tok->added));
    tok->n_added = 0;
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i);
        json_t *jid = json_object_get(a, "id");
        json_t *jc = json_object_get(a, "content");
        if (!json_is_integer(jid) || !json_is_string(jc)) {
            set_err(err, errlen, "added_tokens[%zu] needs an id and a content", i);
            return -1;
        }
        const char *c = json_string_value(jc);
        if (!*c)
            continue;
        struct tok_added t = { .content = c, .len = (uint32_t)strlen(c) };
        t.single_word = (uint8_t)json_flag(a, "single_word");
        t.lstrip = (uint8_t)json_flag(a, "lstrip");
        t.rstrip = (uint8_t)json_flag(a, "rstrip");
        t.special = (uint8_t)json_flag(a, "special");
        /* AddedToken's default: normalized = !special */
        json_t *jn = json_object_get(a, "normalized");
        t.normalized = (uint8_t)(jn ? json_is_true(jn) : !t.special);
        struct tok_added *prev = added_find(tok, c);
        if (prev) {
            t.id = prev->id;
            *prev = t;
            continue;
        }
        int32_t id = tok_vocab_find(tok, c, t.len);
        t.id = id >= 0 ? id : (int32_t)next_id++;
        if (next_id > 0x7fffffff) {
            set_err(err, errlen, "too many added tokens");
            return -1;
        }
        if (t.id != json_integer_value(jid))
            log_warn("tokenizer: added token \"%s\" has id %d, not %lld as written", c,
                     (int)t.id, (long long)json_integer_value(jid));
        if (t.id > *max_id)
            *max_id = t.id;
        tok->added[tok->n_added++] = t;
    }
    return 0;
}

/* The decoded form of a Unigram piece: the Metaspace replacement character
 * turned into a space. Written to <out> (room for strlen(s) bytes). */
static size_t piece_decode_bytes(const struct tok_unigram *u, const char *s, char *out)
{
    size_t n = 0;
    while (*s) {
        if (u->repl_len && strncmp(s, u->repl, u->repl_len) == 0 && u->dec_metaspace) {
            out[n++] = ' ';
            s += u->repl_len;
        } else
            out[n++] = *s++;
    }
    return n;
}

/* Build the per-id tables from the vocabulary (keys[i] has id ids[i]) and
 * the added tokens. A Unigram vocabulary may repeat a string: the last id
 * wins its lookups, as in HF's map. */
static int vocab_tables(struct tokenizer *tok, const char *const *keys, const int32_t *ids,
                        size_t n_vocab, json_t *added, char *err, size_t errlen)
{
    int64_t max_id = -1;
    size_t total = 0;

    for (size_t i = 0; i < n_vocab; i++) {
        if (ids[i] > max_id)
            max_id = ids[i];
        total += strlen(keys[i]) + 1;
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        const char *c = json_string_value(json_object_get(json_array_get(added, i), "content"));
        total += (c ? strlen(c) : 0) + 1;
    }
    if (max_id < 0) {
        set_err(err, errlen, "empty vocabulary");
        return -1;
    }
    if (total >= UINT32_MAX) {
        set_err(err, errlen, "vocabulary too large");
        return -1;
    }
    /* room for every id the added tokens can take */
    size_t cap = (size_t)max_id + 1;
    if (n_vocab + json_array_size(added) > cap)
        cap = n_vocab + json_array_size(added);
    tok->flags = xcalloc(cap, 1);
    tok->str_off = xcalloc(cap, sizeof(uint32_t));
    tok->bytes_off = xcalloc(cap, sizeof(uint32_t));
    tok->bytes_len = xcalloc(cap, sizeof(uint32_t));
    tok->strs = xmalloc(total + 1);
    tok->bytes = xmalloc(total + 1);
    size_t so = 0, bo = 0;
    tok->strs[so++] = '\0';     /* offset 0: "" for absent ids */
    tok->bytes[bo++] = '\0';

    for (size_t i = 0; i < n_vocab; i++) {
        const char *key = keys[i];
        int32_t id = ids[i];
        size_t l = strlen(key);
        if (tok->flags[id] & TOKF_PRESENT) {
            set_err(err, errlen, "vocab id %d appears twice", (int)id);
            return -1;
        }
        tok->flags[id] = TOKF_PRESENT;
        tok->str_off[id] = (uint32_t)so;
        memcpy(tok->strs + so, key, l + 1);
        so += l + 1;
    }
    tok->vmap_mask = pow2_at_least(n_vocab * 2 + 1) - 1;
    tok->vmap = xmalloc(((size_t)tok->vmap_mask + 1) * sizeof(*tok->vmap));
    memset(tok->vmap, 0xff, ((size_t)tok->vmap_mask + 1) * sizeof(*tok->vmap));
    if (tok->model == TOK_MODEL_UNIGRAM) {
        /* the first string found wins a lookup: insert the last ids first */
        for (int64_t id = max_id; id >= 0; id--)
            if (tok->flags[id] & TOKF_PRESENT)
                vocab_insert(tok, (int32_t)id);
    } else {
        for (size_t id = 0; id <= (size_t)max_id; id++)
            if (tok->flags[id] & TOKF_PRESENT)
                vocab_insert(tok, (int32_t)id);
    }

    if (assign_added(tok, added, n_vocab, &max_id, err, errlen) < 0)
        return -1;
    tok->n_ids = (int32_t)(max_id + 1);
    /* added tokens own their ids' strings (the same text when in the vocab) */
    for (size_t i = 0; i < tok->n_added; i++) {
        struct tok_added *t = &tok->added[i];
        tok->flags[t->id] =
            (uint8_t)(TOKF_PRESENT | TOKF_ADDED | (t->special ? TOKF_SPECIAL : 0));
        tok->str_off[t->id] = (uint32_t)so;
        memcpy(tok->strs + so, t->content, t->len + 1);
        so += t->len + 1;
    }
    for (int32_t id = 0; id < tok->n_ids; id++) {
        if (!(tok->flags[id] & TOKF_PRESENT))
            continue;
        size_t l = tok->model == TOK_MODEL_UNIGRAM
                       ? piece_decode_bytes(tok->uni, tok->strs + tok->str_off[id], tok->bytes + bo)
                       : token_decode_bytes(tok->strs + tok->str_off[id], tok->bytes + bo);
        tok->bytes_off[id] = (uint32_t)bo;
        tok->bytes_len[id] = (uint32_t)l;
        tok->bytes[bo + l] = '\0';
        bo += l + 1;
    }
    for (unsigned b = 0; b < 256; b++) {
        char s[4];
        uint32_t cp = tok_byte_to_cp((uint8_t)b);
        size_t l = (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)s);
        tok->byte_id[b] = tok_vocab_find(tok, s, l);
    }
    return 0;
}

/* BPE: the vocab object {"string": id, ...} */
static int load_vocab(struct tokenizer *tok, json_t *vocab, json_t *added, char *err,
                      size_t errlen)
{
    const char *key;
    json_t *val;
    size_t n = 0, cap = json_object_size(vocab) + 1;
    const char **keys = xcalloc(cap, sizeof(*keys));
    int32_t *ids = xcalloc(cap, sizeof(*ids));
    int rc = -1;

    json_object_foreach(vocab, key, val) {
        json_int_t id = json_integer_value(val);
        if (!json_is_integer(val) || id < 0 || id > 0x7fffffff) {
            set_err(err, errlen, "vocab entry \"%s\" has no valid id", key);
            goto done;
        }
        keys[n] = key;
        ids[n++] = (int32_t)id;
    }
    rc = vocab_tables(tok, keys, ids, n, added, err, errlen);
done:
    free(keys);
    free(ids);
    return rc;
}

/* Index the added tokens of one kind (normalized or not) for matching. */
static void build_added_set(struct tokenizer *tok, struct tok_added_set *set, int normalized)
{
    uint32_t count[257] = { 0 };
    set->idx = xcalloc(tok->n_added ? tok->n_added : 1, sizeof(uint32_t));
    set->n = 0;
    for (size_t i = 0; i < tok->n_added; i++)
        if (tok->added[i].len && tok->added[i].normalized == normalized)
            count[(unsigned char)tok->added[i].content[0]]++;
    set->first[0] = 0;
    for (unsigned b = 0; b < 256; b++)
        set->first[b + 1] = set->first[b] + count[b];
    uint32_t fill[256];
    for (unsigned b = 0; b < 256; b++)
        fill[b] = set->first[b];
    for (size_t i = 0; i < tok->n_added; i++) {
        const struct tok_added *t = &tok->added[i];
        if (!t->len || t->normalized != normalized)
            continue;
        unsigned b = (unsigned char)t->content[0];
        /* insertion sort, longest first; equal contents keep the first */
        uint32_t j = fill[b]++;
        while (j > set->first[b] && tok->added[set->idx[j - 1]].len < t->len) {
            set->idx[j] = set->idx[j - 1];
            j--;
        }
        set->idx[j] = (uint32_t)i;
        set->n++;
    }
}

static int prepare_added(struct tokenizer *tok, char *err, size_t errlen)
{
    size_t total = 0;
    for (size_t i = 0; i < tok->n_added; i++)
        if (tok->model == TOK_MODEL_UNIGRAM && tok->added[i].normalized) {
            set_err(err, errlen, "added token \"%s\": normalized added tokens are not "
                    "supported with a Unigram model", tok->added[i].content);
            return -1;
        }
    char **forms = xcalloc(tok->n_added ? tok->n_added : 1, sizeof(char *));
    for (size_t i = 0; i < tok->n_added; i++) {
        const char *c = tok->strs + tok->str_off[tok->added[i].id];
        forms[i] = tok->added[i].normalized ? normalize_str(tok->norm, c) : xstrdup(c);
        total += strlen(forms[i]) + 1;
    }
    tok->arena = xmalloc(total + 1);
    size_t o = 0;
    for (size_t i = 0; i < tok->n_added; i++) {
        size_t l = strlen(forms[i]);
        memcpy(tok->arena + o, forms[i], l + 1);
        tok->added[i].content = tok->arena + o;
        tok->added[i].len = (uint32_t)l;
        o += l + 1;
        free(forms[i]);
    }
    free(forms);
    build_added_set(tok, &tok->raw_set, 0);
    build_added_set(tok, &tok->norm_set, 1);
    return 0;
}

/* ---- pipeline components -------------------------------------------------- */

static int load_normalizer(struct tokenizer *tok, json_t *n, char *err, size_t errlen)
{
    if (!n || json_is_null(n))
        return 0;
    const char *type = json_string_value(json_object_get(n, "type"));
    if (!type)
        type = "";
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(n, "normalizers");
        if (json_array_size(list) > 1) {
            set_err(err, errlen, "normalizer Sequence of %zu is not supported",
                    json_array_size(list));
            return -1;
        }
        return json_array_size(list) ? load_normalizer(tok, json_array_get(list, 0), err, errlen)
                                     : 0;
    }
    if (strcmp(type, "NFC") == 0)
        tok->norm = TOK_NORM_NFC;
    else if (strcmp(type, "NFKC") == 0)
        tok->norm = TOK_NORM_NFKC;
    else if (strcmp(type, "NFD") == 0)
        tok->norm = TOK_NORM_NFD;
    else if (strcmp(type, "NFKD") == 0)
        tok->norm = TOK_NORM_NFKD;
    else {
        set_err(err, errlen, "normalizer \"%s\" is not supported", type);
        return -1;
    }
    return 0;
}

static int is_bytelevel(json_t *o, int need_no_regex)
{
    const char *type = json_string_value(json_object_get(o, "type"));
    if (!type || strcmp(type, "ByteLevel") != 0)
        return 0;
    if (json_is_true(json_object_get(o, "add_prefix_space")))
        return 0;
    if (need_no_regex && !json_is_false(json_object_get(o, "use_regex")))
        return 0;
    return 1;
}

/* Only Qwen2's pre-tokenizer: Split(Qwen2 regex, Isolated) then ByteLevel. */
static int load_pre_tokenizer(json_t *p, char *err, size_t errlen)
{
    const char *type = json_string_value(json_object_get(p, "type"));
    json_t *list = json_object_get(p, "pretokenizers");
    if (type && strcmp(type, "Sequence") == 0 && json_array_size(list) == 2) {
        json_t *split = json_array_get(list, 0);
        const char *st = json_string_value(json_object_get(split, "type"));
        const char *re = json_string_value(json_object_get(json_object_get(split, "pattern"),
                                                           "Regex"));
        const char *beh = json_string_value(json_object_get(split, "behavior"));
        if (st && strcmp(st, "Split") == 0 && re && strcmp(re, tok_qwen2_pattern) == 0 && beh &&
            strcmp(beh, "Isolated") == 0 && !json_is_true(json_object_get(split, "invert")) &&
            is_bytelevel(json_array_get(list, 1), 1))
            return 0;
    }
    set_err(err, errlen, "pre_tokenizer is not supported (only Qwen2's Split regex + ByteLevel)");
    return -1;
}

static void ids_from_json(json_t *arr, int32_t **ids, size_t *n)
{
    size_t cap = *n;            /* appending keeps what is there */
    for (size_t i = 0; i < json_array_size(arr); i++)
        tok_ids_push(ids, n, &cap, (int32_t)json_integer_value(json_array_get(arr, i)));
}

/* TemplateProcessing's "pair": special tokens before A, between A and B and
 * after B. A pair form we cannot express that way (B before A, a sequence
 * twice, no pair at all) leaves pair_ok 0: tokenizer_encode_pair() then
 * refuses add_special_tokens. */
static int load_template_pair(struct tokenizer *tok, json_t *pair, json_t *specials, char *err,
                              size_t errlen)
{
    int stage = 0;              /* 0: before A, 1: after A, 2: after B */
    int32_t **dst[3] = { &tok->pair_pre, &tok->pair_mid, &tok->pair_post };
    size_t *cnt[3] = { &tok->n_pair_pre, &tok->n_pair_mid, &tok->n_pair_post };

    for (int k = 0; k < 3; k++) {
        free(*dst[k]);
        *dst[k] = NULL;
        *cnt[k] = 0;
    }
    tok->pair_ok = 0;
    if (!json_is_array(pair))
        return 0;
    for (size_t i = 0; i < json_array_size(pair); i++) {
        json_t *item = json_array_get(pair, i);
        json_t *seq = json_object_get(item, "Sequence");
        if (seq) {
            const char *id = json_string_value(json_object_get(seq, "id"));
            if (!id || strcmp(id, stage == 0 ? "A" : "B") != 0 || stage == 2)
                return 0;
            stage++;
            continue;
        }
        const char *name = json_string_value(json_object_get(json_object_get(item, "SpecialToken"),
                                                             "id"));
        json_t *def = name ? json_object_get(specials, name) : NULL;
        if (!def) {
            set_err(err, errlen, "TemplateProcessing: unknown special token in pair");
            return -1;
        }
        ids_from_json(json_object_get(def, "ids"), dst[stage], cnt[stage]);
    }
    tok->pair_ok = stage == 2;
    return 0;
}

/* Post-processors: ByteLevel (adds nothing), TemplateProcessing ("single"),
 * Bert/Roberta (cls ... sep), or a Sequence of those. */
static int load_post(struct tokenizer *tok, json_t *p, char *err, size_t errlen)
{
    if (!p || json_is_null(p))
        return 0;
    const char *type = json_string_value(json_object_get(p, "type"));
    if (!type)
        type = "";
    if (strcmp(type, "ByteLevel") == 0)
        return 0;
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(p, "processors");
        for (size_t i = 0; i < json_array_size(list); i++)
            if (load_post(tok, json_array_get(list, i), err, errlen) < 0)
                return -1;
        return 0;
    }
    if (strcmp(type, "TemplateProcessing") == 0) {
        json_t *single = json_object_get(p, "single");
        json_t *specials = json_object_get(p, "special_tokens");
        int seen_seq = 0;
        for (size_t i = 0; i < json_array_size(single); i++) {
            json_t *item = json_array_get(single, i);
            json_t *sp = json_object_get(item, "SpecialToken");
            if (json_object_get(item, "Sequence")) {
                seen_seq = 1;
                continue;
            }
            const char *name = json_string_value(json_object_get(sp, "id"));
            json_t *def = name ? json_object_get(specials, name) : NULL;
            if (!def) {
                set_err(err, errlen, "TemplateProcessing: unknown special token");
                return -1;
            }
            if (seen_seq)
                ids_from_json(json_object_get(def, "ids"), &tok->post_post, &tok->n_post_post);
            else
                ids_from_json(json_object_get(def, "ids"), &tok->post_pre, &tok->n_post_pre);
        }
        return load_template_pair(tok, json_object_get(p, "pair"), specials, err, errlen);
    }
    if (strcmp(type, "BertProcessing") == 0 || strcmp(type, "RobertaProcessing") == 0) {
        json_t *cls = json_object_get(p, "cls"), *sep = json_object_get(p, "sep");
        size_t cap = 0;
        tok_ids_push(&tok->post_pre, &tok->n_post_pre, &cap,
                     (int32_t)json_integer_value(json_array_get(cls, 1)));
        cap = 0;
        tok_ids_push(&tok->post_post, &tok->n_post_post, &cap,
                     (int32_t)json_integer_value(json_array_get(sep, 1)));
        /* pair: cls A sep B sep (Bert), cls A sep sep B sep (Roberta) */
        int32_t c = (int32_t)json_integer_value(json_array_get(cls, 1));
        int32_t e = (int32_t)json_integer_value(json_array_get(sep, 1));
        free(tok->pair_pre);
        free(tok->pair_mid);
        free(tok->pair_post);
        tok->pair_pre = tok->pair_mid = tok->pair_post = NULL;
        tok->n_pair_pre = tok->n_pair_mid = tok->n_pair_post = 0;
        cap = 0;
        tok_ids_push(&tok->pair_pre, &tok->n_pair_pre, &cap, c);
        cap = 0;
        tok_ids_push(&tok->pair_mid, &tok->n_pair_mid, &cap, e);
        if (strcmp(type, "RobertaProcessing") == 0)
            tok_ids_push(&tok->pair_mid, &tok->n_pair_mid, &cap, e);
        cap = 0;
        tok_ids_push(&tok->pair_post, &tok->n_pair_post, &cap, e);
        tok->pair_ok = 1;
        return 0;
    }
    set_err(err, errlen, "post_processor \"%s\" is not supported", type);
    return -1;
}

static int load_model(struct tokenizer *tok, json_t *root, char *err, size_t errlen)
{
    json_t *model = json_object_get(root, "model");
    const char *type = json_string_value(json_object_get(model, "type"));
    json_t *vocab = json_object_get(model, "vocab");
    json_t *merges = json_object_get(model, "merges");
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(model) || (type && strcmp(type, "BPE") != 0)) {
        set_err(err, errlen, "model type \"%s\" is not supported (only BPE and Unigram)",
                type ? type : "?");
        return -1;
    }
    if (!json_is_object(vocab) || !json_is_array(merges)) {
        set_err(err, errlen, "BPE model without vocab or merges");
        return -1;
    }
    json_t *d = json_object_get(model, "dropout");
    const char *pfx = json_string_value(json_object_get(model, "continuing_subword_prefix"));
    const char *sfx = json_string_value(json_object_get(model, "end_of_word_suffix"));
    if ((d && !json_is_null(d) && json_number_value(d) != 0.0) || (pfx && *pfx) ||
        (sfx && *sfx) || json_is_true(json_object_get(model, "byte_fallback"))) {
        set_err(err, errlen, "BPE dropout, subword prefix/suffix and byte_fallback "
                "are not supported");
        return -1;
    }
    tok->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    if (load_vocab(tok, vocab, added, err, errlen) < 0)
        return -1;
    return load_merges(tok, merges, err, errlen);
}

/* ---- Unigram -------------------------------------------------------------------- */

/* Metaspace (pre-tokenizer or decoder): replacement, prepend scheme (the old
 * add_prefix_space too, as HF reads it) and split. */
static int load_metaspace(json_t *m, const char *what, char *repl, size_t *repl_len,
                          enum tok_prepend *prepend, int *split, char *err, size_t errlen)
{
    const char *type = json_string_value(json_object_get(m, "type"));
    const char *r = json_string_value(json_object_get(m, "replacement"));
    if (!type || strcmp(type, "Metaspace") != 0 || !r) {
        set_err(err, errlen, "%s is not supported for Unigram (only Metaspace)", what);
        return -1;
    }
    size_t w = 0;
    if (!*r || !tok_utf8_valid(r, strlen(r), &w) || (tok_utf8_decode((const unsigned char *)r, &w),
                                                     w != strlen(r))) {
        set_err(err, errlen, "%s: replacement must be one character", what);
        return -1;
    }
    memcpy(repl, r, w + 1);
    *repl_len = w;
    *prepend = TOK_PREPEND_ALWAYS;
    const char *ps = json_string_value(json_object_get(m, "prepend_scheme"));
    if (ps && strcmp(ps, "never") == 0)
        *prepend = TOK_PREPEND_NEVER;
    else if (ps && strcmp(ps, "first") == 0)
        *prepend = TOK_PREPEND_FIRST;
    else if (ps && strcmp(ps, "always") != 0) {
        set_err(err, errlen, "%s: prepend_scheme \"%s\" is not known", what, ps);
        return -1;
    }
    if (json_is_false(json_object_get(m, "add_prefix_space"))) {
        if (*prepend != TOK_PREPEND_NEVER && ps) {
            set_err(err, errlen, "%s: add_prefix_space does not match prepend_scheme", what);
            return -1;
        }
        *prepend = TOK_PREPEND_NEVER;
    }
    json_t *sp = json_object_get(m, "split");
    *split = !json_is_false(sp);
    return 0;
}

/* Precompiled, Replace(" {2,}" -> " "), or a Sequence of them in that order */
static int load_uni_normalizer(struct tok_unigram *u, json_t *n, int depth, char *err,
                               size_t errlen)
{
    if (!n || json_is_null(n))
        return 0;
    const char *type = json_string_value(json_object_get(n, "type"));
    if (!type)
        type = "";
    if (strcmp(type, "Sequence") == 0 && depth == 0) {
        json_t *list = json_object_get(n, "normalizers");
        for (size_t i = 0; i < json_array_size(list); i++)
            if (load_uni_normalizer(u, json_array_get(list, i), 1, err, errlen) < 0)
                return -1;
        return 0;
    }
    if (strcmp(type, "Precompiled") == 0 && !u->has_charsmap && !u->collapse_spaces) {
        json_t *b = json_object_get(n, "precompiled_charsmap");
        if (json_is_null(b) || (json_is_string(b) && json_string_length(b) == 0))
            return 0;
        if (!json_is_string(b) ||
            tok_charsmap_load(&u->cm, json_string_value(b), json_string_length(b), err,
                              errlen) < 0) {
            if (!json_is_string(b))
                set_err(err, errlen, "Precompiled without precompiled_charsmap");
            return -1;
        }
        u->has_charsmap = 1;
        return 0;
    }
    if (strcmp(type, "Replace") == 0 && !u->collapse_spaces) {
        const char *re = json_string_value(json_object_get(json_object_get(n, "pattern"),
                                                           "Regex"));
        const char *content = json_string_value(json_object_get(n, "content"));
        if (re && content && strcmp(re, " {2,}") == 0 && strcmp(content, " ") == 0) {
            u->collapse_spaces = 1;
            return 0;
        }
        set_err(err, errlen, "normalizer Replace is only supported as \" {2,}\" -> \" \"");
        return -1;
    }
    set_err(err, errlen, "normalizer \"%s\" is not supported for Unigram", type);
    return -1;
}

static int load_unigram(struct tokenizer *tok, json_t *root, char *err, size_t errlen)
{
    json_t *model = json_object_get(root, "model");
    json_t *vocab = json_object_get(model, "vocab");
    json_t *unk = json_object_get(model, "unk_id");
    struct tok_unigram *u = tok->uni = xcalloc(1, sizeof(*tok->uni));
    const char **keys = NULL;
    int32_t *ids = NULL;
    int rc = -1;

    if (load_uni_normalizer(u, json_object_get(root, "normalizer"), 0, err, errlen) < 0)
        goto done;
    json_t *pre = json_object_get(root, "pre_tokenizer");
    if (pre && !json_is_null(pre)) {
        if (load_metaspace(pre, "pre_tokenizer", u->repl, &u->repl_len, &u->prepend, &u->split,
                           err, errlen) < 0)
            goto done;
        u->metaspace = 1;
    }
    char drepl[8];
    size_t drepl_len;
    int dsplit;
    if (load_metaspace(json_object_get(root, "decoder"), "decoder", drepl, &drepl_len,
                       &u->dec_prepend, &dsplit, err, errlen) < 0)
        goto done;
    if (u->metaspace && strcmp(drepl, u->repl) != 0) {
        set_err(err, errlen, "Metaspace decoder and pre-tokenizer replacements differ");
        goto done;
    }
    memcpy(u->repl, drepl, sizeof(drepl));
    u->repl_len = drepl_len;
    u->dec_metaspace = 1;
    if (json_is_true(json_object_get(model, "byte_fallback"))) {
        set_err(err, errlen, "Unigram byte_fallback is not supported");
        goto done;
    }
    size_t n = json_array_size(vocab);
    if (!json_is_array(vocab) || n == 0) {
        set_err(err, errlen, "Unigram model without a vocab");
        goto done;
    }
    if (!json_is_integer(unk) || json_integer_value(unk) < 0 ||
        (size_t)json_integer_value(unk) >= n) {
        set_err(err, errlen, "Unigram model needs an unk_id inside its vocab");
        goto done;
    }
    u->n_pieces = n;
    u->unk_id = (int32_t)json_integer_value(unk);
    u->fuse_unk = 1;
    u->scores = xmalloc(n * sizeof(double));
    keys = xmalloc(n * sizeof(*keys));
    ids = xmalloc(n * sizeof(*ids));
    double min_score = 1.0 / 0.0;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(vocab, i);
        json_t *ps = json_array_get(e, 0), *sc = json_array_get(e, 1);
        if (!json_is_string(ps) || !json_is_number(sc) || strlen(json_string_value(ps)) !=
            json_string_length(ps)) {
            set_err(err, errlen, "Unigram vocab entry %zu is not [piece, score]", i);
            goto done;
        }
        keys[i] = json_string_value(ps);
        ids[i] = (int32_t)i;
        u->scores[i] = json_number_value(sc);
        if (u->scores[i] < min_score)
            min_score = u->scores[i];
    }
    u->unk_score = min_score - 10.0;
    if (vocab_tables(tok, keys, ids, n, json_object_get(root, "added_tokens"), err, errlen) < 0 ||
        tok_unigram_build(tok, err, errlen) < 0)
        goto done;
    rc = 0;
done:
    free(keys);
    free(ids);
    return rc;
}

/* ---- tokenizer_config.json ------------------------------------------------ */

/* "eos_token": "<x>" or {"content": "<x>", ...} or null */
static char *config_token(json_t *cfg, const char *key)
{
    json_t *v = json_object_get(cfg, key);
    if (json_is_object(v))
        v = json_object_get(v, "content");
    return xstrdup(json_is_string(v) ? json_string_value(v) : "");
}

static int load_config(struct tokenizer *tok, const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return 0;               /* optional */
    json_error_t jerr;
    json_t *cfg = json_load_file(path, 0, &jerr);
    if (!cfg) {
        set_err(err, errlen, "%s:%d: %s", path, jerr.line, jerr.text);
        return -1;
    }
    free(tok->bos_tok);
    free(tok->eos_tok);
    free(tok->pad_tok);
    tok->bos_tok = config_token(cfg, "bos_token");
    tok->eos_tok = config_token(cfg, "eos_token");
    tok->pad_tok = config_token(cfg, "pad_token");
    tok->add_bos_token = json_is_true(json_object_get(cfg, "add_bos_token"));
    json_decref(cfg);
    tok->bos_id = *tok->bos_tok ? tokenizer_token_to_id(tok, tok->bos_tok) : -1;
    tok->eos_id = *tok->eos_tok ? tokenizer_token_to_id(tok, tok->eos_tok) : -1;
    tok->pad_id = *tok->pad_tok ? tokenizer_token_to_id(tok, tok->pad_tok) : -1;
    return 0;
}

/* json_load_file reads with one getc per byte; reading the file whole first
 * makes a 17 MB tokenizer.json parse about twice as fast. */
static json_t *load_json_file(const char *path, json_error_t *jerr)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0, got;
    json_t *root = NULL;

    if (!f)
        return json_load_file(path, JSON_ALLOW_NUL, jerr);      /* its error message */
    do {
        xgrow((void **)&buf, &cap, len + (1u << 20), 1);
        got = fread(buf + len, 1, cap - len, f);
        len += got;
    } while (got > 0);
    if (ferror(f))
        root = json_load_file(path, JSON_ALLOW_NUL, jerr);
    else
        root = json_loadb(buf, len, JSON_ALLOW_NUL, jerr);
    fclose(f);
    free(buf);
    return root;
}

/* ---- public ----------------------------------------------------------------- */

struct tokenizer *tokenizer_load(const char *path, char *err, size_t errlen)
{
    struct tokenizer *tok = xcalloc(1, sizeof(*tok));
    json_t *root = NULL;
    char *json_path = NULL, *cfg_path = NULL;
    struct stat st;

    tok->bos_id = tok->eos_id = tok->pad_id = -1;
    tok->bos_tok = xstrdup("");
    tok->eos_tok = xstrdup("");
    tok->pad_tok = xstrdup("");
    tok_cache_init(&tok->cache);
    if (stat(path, &st) < 0) {
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        json_path = xasprintf("%s/tokenizer.json", path);
        cfg_path = xasprintf("%s/tokenizer_config.json", path);
    } else {
        const char *slash = strrchr(path, '/');
        json_path = xstrdup(path);
        if (slash)
            cfg_path = xasprintf("%.*s/tokenizer_config.json", (int)(slash - path), path);
        else
            cfg_path = xstrdup("tokenizer_config.json");
    }
    json_error_t jerr;
    root = load_json_file(json_path, &jerr);
    if (!root) {
        set_err(err, errlen, "%s:%d: %s", json_path, jerr.line, jerr.text);
        goto fail;
    }
    const char *mtype = json_string_value(json_object_get(json_object_get(root, "model"),
                                                          "type"));
    tok->pair_ok = 1;           /* no post-processor: a pair is A then B */
    if (mtype && strcmp(mtype, "Unigram") == 0) {
        tok->model = TOK_MODEL_UNIGRAM;
        if (load_unigram(tok, root, err, errlen) < 0 ||
            load_post(tok, json_object_get(root, "post_processor"), err, errlen) < 0)
            goto fail;
    } else {
        if (load_normalizer(tok, json_object_get(root, "normalizer"), err, errlen) < 0 ||
            load_pre_tokenizer(json_object_get(root, "pre_tokenizer"), err, errlen) < 0)
            goto fail;
        json_t *dec = json_object_get(root, "decoder");
        if (!is_bytelevel(dec, 0)) {
            set_err(err, errlen, "decoder is not supported (only ByteLevel)");
            goto fail;
        }
        if (load_model(tok, root, err, errlen) < 0 ||
            load_post(tok, json_object_get(root, "post_processor"), err, errlen) < 0)
            goto fail;
    }
    if (prepare_added(tok, err, errlen) < 0)
        goto fail;
    json_decref(root);
    root = NULL;
    if (load_config(tok, cfg_path, err, errlen) < 0)
        goto fail;
    free(json_path);
    free(cfg_path);
    return tok;
fail:
    json_decref(root);
    free(json_path);
    free(cfg_path);
    tokenizer_free(tok);
    return NULL;
}

void tokenizer_free(struct tokenizer *tok)
{
    if (!tok)
        return;
    free(tok->flags);
    free(tok->str_off);
    free(tok->bytes_off);
    free(tok->bytes_len);
    free(tok->strs);
    free(tok->bytes);
    free(tok->arena);
    free(tok->vmap);
    free(tok->merges);
    free(tok->added);
    free(tok->raw_set.idx);
    free(tok->norm_set.idx);
    free(tok->post_pre);
    free(tok->post_post);
    free(tok->pair_pre);
    free(tok->pair_mid);
    free(tok->pair_post);
    tok_unigram_free(tok->uni);
    free(tok->bos_tok);
    free(tok->eos_tok);
    free(tok->pad_tok);
    tok_cache_free(&tok->cache);
    free(tok);
}

int tokenizer_vocab_size(const struct tokenizer *tok)
{
    return tok->n_ids;
}

int32_t tokenizer_token_to_id(const struct tokenizer *tok, const char *s)
{
    for (size_t i = 0; i < tok->n_added; i++)
        if (strcmp(tok->strs + tok->str_off[tok->added[i].id], s) == 0)
            return tok->added[i].id;
    return tok_vocab_find(tok, s, strlen(s));
}

const char *tokenizer_id_to_token(const struct tokenizer *tok, int32_t id)
{
    if (id < 0 || id >= tok->n_ids || !(tok->flags[id] & TOKF_PRESENT))
        return NULL;
    return tok->strs + tok->str_off[id];
}

int tokenizer_token_bytes(const struct tokenizer *tok, int32_t id, const char **bytes,
                          size_t *len)
{
    if (id < 0 || id >= tok->n_ids || !(tok->flags[id] & TOKF_PRESENT))
        return -1;
    *bytes = tok->bytes + tok->bytes_off[id];
    *len = tok->bytes_len[id];
    return 0;
}

int tokenizer_is_special(const struct tokenizer *tok, int32_t id)
{
    return id >= 0 && id < tok->n_ids && (tok->flags[id] & TOKF_SPECIAL) != 0;
}

int32_t tokenizer_bos_id(const struct tokenizer *tok)
{
    return tok->bos_id;
}

int32_t tokenizer_eos_id(const struct tokenizer *tok)
{
    return tok->eos_id;
}

int32_t tokenizer_pad_id(const struct tokenizer *tok)
{
    return tok->pad_id;
}

const char *tokenizer_bos_token(const struct tokenizer *tok)
{
    return tok->bos_tok;
}

const char *tokenizer_eos_token(const struct tokenizer *tok)
{
    return tok->eos_tok;
}

int tokenizer_add_bos_token(const struct tokenizer *tok)
{
    return tok->add_bos_token;
}
