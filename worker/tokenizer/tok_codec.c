/*
 * tok_codec.c -- encode (added tokens split out first, then normalization,
 * pre-tokenization and BPE of each remaining piece, then the post-processor),
 * decode (byte-level bytes, then lossy UTF-8 as Rust's from_utf8_lossy) and
 * the incremental detokenizer. The tokenizer is only read here, except for
 * its word cache (see tok_bpe.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "tok_internal.h"
#include "util.h"

#include "tok_nfc_gate.h"

static void out_append(char **out, size_t *len, size_t *cap, const void *p, size_t n)
{
    if (*len + n + 1 > *cap)
        xgrow((void **)out, cap, *len + n + 1 + 64, 1);
    if (n)
        memcpy(*out + *len, p, n);
    *len += n;
    (*out)[*len] = '\0';
}

int tok_norm_options(enum tok_norm norm)
{
    switch (norm) {
    case TOK_NORM_NFC:
        return UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    case TOK_NORM_NFKC:
        return UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    case TOK_NORM_NFD:
        return UTF8PROC_STABLE | UTF8PROC_DECOMPOSE;
    case TOK_NORM_NFKD:
        return UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    default:
        return 0;
    }
}

/* ---- lossy UTF-8 ------------------------------------------------------------ */

size_t tok_utf8_lossy(const unsigned char *in, size_t n, int final, char **out,
                      size_t *out_len, size_t *out_cap)
{
    static const char repl[3] = { (char)0xef, (char)0xbf, (char)0xbd };
    size_t i = 0, valid = 0;

    while (i < n) {
        unsigned c = in[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t w;
        unsigned lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf)
            w = 2;
        else if (c >= 0xe0 && c <= 0xef) {
            w = 3;
            lo = c == 0xe0 ? 0xa0 : 0x80;
            hi = c == 0xed ? 0x9f : 0xbf;
        } else if (c >= 0xf0 && c <= 0xf4) {
            w = 4;
            lo = c == 0xf0 ? 0x90 : 0x80;
            hi = c == 0xf4 ? 0x8f : 0xbf;
        } else
            w = 0;
        /* k: how many bytes of a valid prefix are present */
        size_t k = 1;
        if (w) {
            if (k < w && i + k < n && in[i + k] >= lo && in[i + k] <= hi)
                k++;
            while (k >= 2 && k < w && i + k < n && (in[i + k] & 0xc0) == 0x80)
                k++;
        }
        if (w && k == w) {
            i += w;
            continue;
        }
        if (w && i + k == n && !final) {
            /* a valid but unfinished character ends the input: keep it */
            out_append(out, out_len, out_cap, in + valid, i - valid);
            return i;
        }
        /* maximal invalid subpart in[i..i+k): one U+FFFD */
        out_append(out, out_len, out_cap, in + valid, i - valid);
        out_append(out, out_len, out_cap, repl, sizeof(repl));
        i += k;
        valid = i;
    }
    out_append(out, out_len, out_cap, in + valid, n - valid);
    return n;
}

/* ---- encode ----------------------------------------------------------------- */

typedef void (*piece_fn)(struct tok_enc *e, const char *s, size_t len);

static int ends_with_word(const char *s, size_t len)
{
    if (!len)
        return 0;
    size_t i = len - 1, w;
    while (i > 0 && ((unsigned char)s[i] & 0xc0) == 0x80)
        i--;
    return tok_is_word_char(tok_utf8_decode((const unsigned char *)s + i, &w));
}

static int starts_with_word(const char *s, size_t len)
{
    size_t w;
    return len && tok_is_word_char(tok_utf8_decode((const unsigned char *)s, &w));
}

/* start of the white space that ends s[0..len) */
static size_t space_start_at_end(const char *s, size_t len)
{
    size_t i = len;
    while (i > 0) {
        size_t j = i - 1, w;
        while (j > 0 && ((unsigned char)s[j] & 0xc0) == 0x80)
            j--;
        if (!tok_is_white_space(tok_utf8_decode((const unsigned char *)s + j, &w)))
            break;
        i = j;
    }
    return i;
}

/* length of the white space that starts s[0..len) */
static size_t space_len_at_start(const char *s, size_t len)
{
    size_t i = 0, w;
    while (i < len && tok_is_white_space(tok_utf8_decode((const unsigned char *)s + i, &w)))
        i += w;
    return i;
}

/* Split s[0..len) on the added tokens of <set> as HF's find_matches:
 * leftmost-longest matches, single_word/lstrip/rstrip applied; gaps go to
 * <gap>, tokens are appended. */
static void split_added(struct tok_enc *e, const struct tok_added_set *set, const char *s,
                        size_t len, piece_fn gap)
{
    const struct tokenizer *tok = e->tok;
    size_t start_off = 0, pos = 0;

    if (set->n == 0) {
        gap(e, s, len);
        return;
    }
    while (pos < len) {
        unsigned b = (unsigned char)s[pos];
        const struct tok_added *hit = NULL;
        for (uint32_t j = set->first[b]; j < set->first[b + 1]; j++) {
            const struct tok_added *t = &tok->added[set->idx[j]];
            if (t->len <= len - pos && memcmp(s + pos, t->content, t->len) == 0) {
                hit = t;
                break;
            }
        }
        if (!hit) {
            pos++;
            continue;
        }
        size_t mstart = pos, mstop = pos + hit->len;
        pos = mstop;            /* the next search starts after this match */
        if (hit->single_word) {
            int start_space = mstart == 0 || !ends_with_word(s, mstart);
            int stop_space = mstop == len || !starts_with_word(s + mstop, len - mstop);
            if (!start_space || !stop_space)
                continue;
        }
        if (hit->lstrip) {
            size_t ns = space_start_at_end(s, mstart);
            mstart = ns > start_off ? ns : start_off;
        }
        if (hit->rstrip)
            mstop += space_len_at_start(s + mstop, len - mstop);
        if (start_off < mstart)
            gap(e, s + start_off, mstart - start_off);
        tok_ids_push(&e->ids, &e->n, &e->cap, hit->id);
        start_off = mstop;
    }
    if (start_off < len)
        gap(e, s + start_off, len - start_off);
}

static void piece_bpe(struct tok_enc *e, const char *s, size_t len)
{
    size_t pos = 0;
    while (pos < len) {
        size_t end = tok_pretok_next(s, len, pos);
        tok_bpe_word(e->tok, s + pos, end - pos, &e->sc, &e->ids, &e->n, &e->cap);
        pos = end;
    }
}

/* 1 when normalization may change s[0..len) */
static int needs_norm(enum tok_norm norm, const char *s, size_t len)
{
    /* below U+0300 nothing composes (NFC); only ASCII is safe otherwise */
    unsigned limit = norm == TOK_NORM_NFC ? 0xcc : 0x80;
    if (norm == TOK_NORM_NONE)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] >= limit)
            return 1;
    return 0;
}

/* 1 when <cp> is normalized differently by utf8proc and by HF's Unicode 9.0
 * tables (see gen_nfc_gate.py) */
static int nfc_gated(uint32_t cp)
{
    size_t lo = 0, hi = ARRAY_SIZE(tok_nfc_gate);
    if (cp < tok_nfc_gate[0][0] || cp > tok_nfc_gate[ARRAY_SIZE(tok_nfc_gate) - 1][1] ||
        (cp > 0xa82c && cp < 0x10d24))
        return 0;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < tok_nfc_gate[mid][0])
            hi = mid;
        else if (cp > tok_nfc_gate[mid][1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

/* Append the normalization of s[0..len) (no gated characters) to <out>. */
static void normalize_run(enum tok_norm norm, const char *s, size_t len, char **out,
                          size_t *out_len, size_t *out_cap)
{
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t n = 0;
    if (len)
        n = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &dst,
                         (utf8proc_option_t)tok_norm_options(norm));
    if (n < 0)                  /* cannot happen on validated input: keep as is */
        out_append(out, out_len, out_cap, s, len);
    else
        out_append(out, out_len, out_cap, dst, (size_t)n);
    free(dst);
}

/* Normalize s[0..len) as HF does: with utf8proc, except that characters HF's
 * older Unicode tables do not know stay as they are and split the text. */
static void piece_normalize(struct tok_enc *e, const char *s, size_t len)
{
    const struct tokenizer *tok = e->tok;
    if (!needs_norm(tok->norm, s, len)) {
        split_added(e, &tok->norm_set, s, len, piece_bpe);
        return;
    }
    char *buf = NULL;
    size_t blen = 0, bcap = 0, run = 0, i = 0, w;
    while (i < len) {
        if ((unsigned char)s[i] < 0xdf) {      /* below U+07C0: never gated */
            i += (unsigned char)s[i] < 0x80 ? 1 : 2;
            continue;
        }
        uint32_t cp = tok_utf8_decode((const unsigned char *)s + i, &w);
        if (nfc_gated(cp)) {
            normalize_run(tok->norm, s + run, i - run, &buf, &blen, &bcap);
            out_append(&buf, &blen, &bcap, s + i, w);
            run = i + w;
        }
        i += w;
    }
    normalize_run(tok->norm, s + run, len - run, &buf, &blen, &bcap);
    split_added(e, &tok->norm_set, buf, blen, piece_bpe);
    free(buf);
}

static int check_utf8(const char *text, size_t len, const char *what, char *err, size_t errlen)
{
    size_t bad = 0;
    if (tok_utf8_valid(text, len, &bad))
        return 0;
    if (err && errlen)
        snprintf(err, errlen, "invalid UTF-8 at byte %zu%s", bad, what);
    return -1;
}

static void push_ids(struct tok_enc *e, const int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tok_ids_push(&e->ids, &e->n, &e->cap, ids[i]);
}

/* the ids of one sequence, no post-processor */
static void encode_seq(struct tok_enc *e, const char *text, size_t len)
{
    e->base = text;
    split_added(e, &e->tok->raw_set, text, len,
                e->tok->model == TOK_MODEL_UNIGRAM ? tok_unigram_piece : piece_normalize);
}

static void enc_done(struct tok_enc *e, int32_t **ids, size_t *n_ids)
{
    tok_bpe_scratch_free(&e->sc);
    tok_uni_scratch_free(&e->usc);
    *ids = e->ids;
    *n_ids = e->n;
}

int tokenizer_encode(const struct tokenizer *tok, const char *text, size_t len,
                     int add_special_tokens, int32_t **ids, size_t *n_ids, char *err,
                     size_t errlen)
{
    struct tok_enc e = { .tok = tok };

    *ids = NULL;
    *n_ids = 0;
    if (check_utf8(text, len, "", err, errlen) < 0)
        return -1;
    tok_ids_push(&e.ids, &e.n, &e.cap, 0);      /* never NULL, even when empty */
    e.n = 0;
    if (add_special_tokens)
        push_ids(&e, tok->post_pre, tok->n_post_pre);
    encode_seq(&e, text, len);
    if (add_special_tokens)
        push_ids(&e, tok->post_post, tok->n_post_post);
    enc_done(&e, ids, n_ids);
    return 0;
}

int tokenizer_encode_pair(const struct tokenizer *tok, const char *a, size_t alen,
                          const char *b, size_t blen, int add_special_tokens, int32_t **ids,
                          size_t *n_ids, char *err, size_t errlen)
{
    struct tok_enc e = { .tok = tok };

    *ids = NULL;
    *n_ids = 0;
    if (check_utf8(a, alen, " of the first text", err, errlen) < 0 ||
        check_utf8(b, blen, " of the second text", err, errlen) < 0)
        return -1;
    if (add_special_tokens && !tok->pair_ok) {
        if (err && errlen)
            snprintf(err, errlen, "the tokenizer's post-processor has no usable pair template");
        return -1;
    }
    tok_ids_push(&e.ids, &e.n, &e.cap, 0);
    e.n = 0;
    if (add_special_tokens)
        push_ids(&e, tok->pair_pre, tok->n_pair_pre);
    encode_seq(&e, a, alen);
    if (add_special_tokens)
        push_ids(&e, tok->pair_mid, tok->n_pair_mid);
    encode_seq(&e, b, blen);
    if (add_special_tokens)
        push_ids(&e, tok->pair_post, tok->n_pair_post);
    enc_done(&e, ids, n_ids);
    return 0;
}

int tokenizer_model_type(const struct tokenizer *tok)
{
    return tok->model == TOK_MODEL_UNIGRAM ? TOKENIZER_UNIGRAM : TOKENIZER_BPE;
}

/* ---- decode ------------------------------------------------------------------ */

static int id_ok(const struct tokenizer *tok, int32_t id)
{
    return id >= 0 && id < tok->n_ids && (tok->flags[id] & TOKF_PRESENT);
}

/* 1 when the decoder drops the replacement characters of the first token
 * (Metaspace with a prepend scheme) */
static int strip_first(const struct tokenizer *tok)
{
    return tok->model == TOK_MODEL_UNIGRAM && tok->uni->dec_prepend != TOK_PREPEND_NEVER;
}

/* the first token as the Metaspace decoder gives it: replacements dropped */
static void append_stripped(const struct tokenizer *tok, int32_t id, char **out, size_t *len,
                            size_t *cap)
{
    const struct tok_unigram *u = tok->uni;
    const char *p = tok->strs + tok->str_off[id];
    out_append(out, len, cap, "", 0);
    while (*p) {
        if (strncmp(p, u->repl, u->repl_len) == 0) {
            p += u->repl_len;
            continue;
        }
        size_t run = 0;
        while (p[run] && strncmp(p + run, u->repl, u->repl_len) != 0)
            run++;
        out_append(out, len, cap, p, run);
        p += run;
    }
}

int tokenizer_decode(const struct tokenizer *tok, const int32_t *ids, size_t n_ids,
                     int skip_special_tokens, char **out, size_t *out_len, char *err,
                     size_t errlen)
{
    char *raw = NULL, *res = NULL;
    size_t raw_len = 0, raw_cap = 0, res_len = 0, res_cap = 0, kept = 0;

    *out = NULL;
    *out_len = 0;
    for (size_t i = 0; i < n_ids; i++) {
        int32_t id = ids[i];
        if (!id_ok(tok, id)) {
            if (err && errlen)
                snprintf(err, errlen, "token id %ld is not in the vocabulary", (long)id);
            free(raw);
            return -1;
        }
        if (skip_special_tokens && (tok->flags[id] & TOKF_SPECIAL))
            continue;
        if (kept++ == 0 && strip_first(tok))
            append_stripped(tok, id, &raw, &raw_len, &raw_cap);
        else
            out_append(&raw, &raw_len, &raw_cap, tok->bytes + tok->bytes_off[id],
                       tok->bytes_len[id]);
    }
    out_append(&res, &res_len, &res_cap, "", 0);
    tok_utf8_lossy((const unsigned char *)raw, raw_len, 1, &res, &res_len, &res_cap);
    free(raw);
    *out = res;
    *out_len = res_len;
    return 0;
}

/* ---- incremental detokenization --------------------------------------------- */

void detok_init(struct detok *d, const struct tokenizer *tok, int skip_special_tokens)
{
    memset(d, 0, sizeof(*d));
    d->tok = tok;
    d->skip_special = skip_special_tokens;
}

static void ensure_out(char **out, size_t *out_len, size_t *out_cap)
{
    if (!*out || *out_cap < *out_len + 1)
        out_append(out, out_len, out_cap, "", 0);
}

long detok_push(struct detok *d, int32_t id, char **out, size_t *out_len, size_t *out_cap)
{
    const struct tokenizer *tok = d->tok;
    size_t before = *out_len;

    if (!id_ok(tok, id))
        return -1;
    ensure_out(out, out_len, out_cap);
    if (d->skip_special && (tok->flags[id] & TOKF_SPECIAL))
        return 0;
    if (d->n_tokens++ == 0 && strip_first(tok)) {
        append_stripped(tok, id, out, out_len, out_cap);
        return (long)(*out_len - before);
    }
    const unsigned char *b = (const unsigned char *)tok->bytes + tok->bytes_off[id];
    size_t n = tok->bytes_len[id];
    unsigned char stack[256], *buf = stack;
    size_t total = d->n_pending + n;
    if (total > sizeof(stack))
        buf = xmalloc(total);
    memcpy(buf, d->pending, d->n_pending);
    memcpy(buf + d->n_pending, b, n);
    size_t used = tok_utf8_lossy(buf, total, 0, out, out_len, out_cap);
    /* what is left is an unfinished character: at most 3 bytes */
    d->n_pending = total - used;
    memcpy(d->pending, buf + used, d->n_pending);
    if (buf != stack)
        free(buf);
    return (long)(*out_len - before);
}

long detok_finish(struct detok *d, char **out, size_t *out_len, size_t *out_cap)
{
    size_t before = *out_len;
    ensure_out(out, out_len, out_cap);
    if (d->n_pending)
        tok_utf8_lossy((const unsigned char *)d->pending, d->n_pending, 1, out, out_len,
                       out_cap);
    d->n_pending = 0;
    return (long)(*out_len - before);
}
