/*
 * tok_charsmap.c -- SentencePiece's precompiled character map (the
 * "Precompiled" normalizer of tokenizer.json): the base64 blob decoded into a
 * Darts double-array trie of UTF-8 keys and a blob of NUL-terminated
 * replacements, applied as Hugging Face tokenizers does: per extended grapheme
 * cluster shorter than 6 bytes the SHORTEST key that prefixes the cluster
 * replaces the whole cluster (yes, even when the key is shorter than it),
 * otherwise each character is replaced by its own entry or kept. Read-only
 * after tok_charsmap_load().
 */
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "tok_internal.h"
#include "util.h"

#include "tok_grapheme_patch.h"

/* ---- base64 ----------------------------------------------------------------- */

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Standard base64 with padding, as Rust's BASE64_STANDARD decodes it.
 * Returns the new buffer (caller frees) or NULL when malformed. */
static unsigned char *b64_decode(const char *s, size_t len, size_t *out_len)
{
    if (len % 4)
        return NULL;
    unsigned char *out = xmalloc(len / 4 * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)s[i + k];
            if (c == '=' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            v[k] = b64_value(c);
            if (v[k] < 0 || pad)
                goto fail;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                     (uint32_t)v[3];
        out[o++] = (unsigned char)(w >> 16);
        if (pad < 2)
            out[o++] = (unsigned char)(w >> 8);
        if (pad < 1)
            out[o++] = (unsigned char)w;
    }
    *out_len = o;
    return out;
fail:
    free(out);
    return NULL;
}

/* ---- the double array ----------------------------------------------------- */

/* Darts unit layout: bit 8 has_leaf, low 31 bits value (on a leaf unit), label
 * = bit 31 | low 8 bits, offset = (unit >> 10) << ((unit & 512) >> 6). */
static uint32_t unit_offset(uint32_t u)
{
    return (u >> 10) << ((u & (1u << 9)) >> 6);
}

static uint32_t unit_label(uint32_t u)
{
    return u & ((1u << 31) | 0xff);
}

/* The replacement offset of the shortest key prefixing key[0..len) (stopping
 * at a NUL byte), or -1. Out-of-range positions end the search. */
static int64_t shortest_prefix(const struct tok_charsmap *cm, const unsigned char *key,
                               size_t len)
{
    uint32_t pos = unit_offset(cm->units[0]);
    for (size_t i = 0; i < len; i++) {
        if (key[i] == 0)
            return -1;
        pos ^= key[i];
        if (pos >= cm->n_units)
            return -1;
        uint32_t u = cm->units[pos];
        if (unit_label(u) != key[i])
            return -1;
        pos ^= unit_offset(u);
        if ((u >> 8) & 1) {
            if (pos >= cm->n_units)
                return -1;
            return (int64_t)(cm->units[pos] & 0x7fffffffu);
        }
    }
    return -1;
}

/* the replacement at blob offset <off>: up to its NUL or the blob's end */
static void repl_at(const struct tok_charsmap *cm, int64_t off, const char **s, size_t *len)
{
    if (off < 0 || (size_t)off > cm->blob_len) {
        *s = "";
        *len = 0;
        return;
    }
    const char *p = cm->blob + off;
    const char *nul = memchr(p, '\0', cm->blob_len - (size_t)off);
    *s = p;
    *len = nul ? (size_t)(nul - p) : cm->blob_len - (size_t)off;
}

int tok_charsmap_load(struct tok_charsmap *cm, const char *b64, size_t b64_len, char *err,
                      size_t errlen)
{
    size_t n = 0;
    memset(cm, 0, sizeof(*cm));
    unsigned char *raw = b64_decode(b64, b64_len, &n);
    if (!raw || n < 4) {
        tok_set_err(err, errlen, "precompiled_charsmap is not valid base64");
        goto fail;
    }
    uint32_t trie_size = (uint32_t)raw[0] | (uint32_t)raw[1] << 8 | (uint32_t)raw[2] << 16 |
                         (uint32_t)raw[3] << 24;
    if ((size_t)trie_size > n - 4 || trie_size < 4) {
        tok_set_err(err, errlen, "precompiled_charsmap: bad trie size %u", trie_size);
        goto fail;
    }
    cm->n_units = trie_size / 4;
    cm->units = xmalloc(cm->n_units * sizeof(uint32_t));
    for (size_t i = 0; i < cm->n_units; i++) {
        const unsigned char *p = raw + 4 + 4 * i;
        cm->units[i] = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                       (uint32_t)p[3] << 24;
    }
    size_t boff = 4 + (size_t)cm->n_units * 4;
    cm->blob_len = n - boff;
    cm->blob = xmalloc(cm->blob_len + 1);
    memcpy(cm->blob, raw + boff, cm->blob_len);
    cm->blob[cm->blob_len] = '\0';
    size_t bad;
    if (!tok_utf8_valid(cm->blob, cm->blob_len, &bad)) {
        tok_set_err(err, errlen, "precompiled_charsmap: replacements are not UTF-8");
        goto fail;
    }
    for (unsigned c = 0; c < 128; c++) {
        unsigned char k = (unsigned char)c;
        cm->ascii[c] = shortest_prefix(cm, &k, 1);
    }
    free(raw);
    return 0;
fail:
    free(raw);
    tok_charsmap_free(cm);
    return -1;
}

void tok_charsmap_free(struct tok_charsmap *cm)
{
    free(cm->units);
    free(cm->blob);
    cm->units = NULL;
    cm->blob = NULL;
}

/* ---- normalization ---------------------------------------------------------- */

/* 1 when a cluster breaks between <prev> and <next>: utf8proc's rules, except
 * that marks newer than its tables join as HF's segmentation has them (see
 * gen_grapheme_patch.py); nothing joins a control, CR or LF. */
static int cluster_break(uint32_t prev, uint32_t next, utf8proc_int32_t *state)
{
    if (!utf8proc_grapheme_break_stateful((utf8proc_int32_t)prev, (utf8proc_int32_t)next, state))
        return 0;
    if (next < tok_grapheme_join[0][0] || next > 0xffff)
        return 1;
    for (size_t k = 0; k < ARRAY_SIZE(tok_grapheme_join); k++)
        if (next >= tok_grapheme_join[k][0] && next <= tok_grapheme_join[k][1]) {
            int bc = utf8proc_get_property((utf8proc_int32_t)prev)->boundclass;
            return bc == UTF8PROC_BOUNDCLASS_CONTROL || bc == UTF8PROC_BOUNDCLASS_CR ||
                   bc == UTF8PROC_BOUNDCLASS_LF;
        }
    return 1;
}

static void append(char **out, size_t *len, size_t *cap, const void *p, size_t n)
{
    if (*len + n + 1 > *cap)
        xgrow((void **)out, cap, *len + n + 1 + 64, 1);
    memcpy(*out + *len, p, n);
    *len += n;
}

/* one character: its replacement, or itself */
static void map_char(const struct tok_charsmap *cm, const unsigned char *c, size_t w, char **out,
                     size_t *len, size_t *cap)
{
    int64_t off = w == 1 ? cm->ascii[c[0]] : shortest_prefix(cm, c, w);
    if (off < 0) {
        append(out, len, cap, c, w);
    } else {
        const char *r;
        size_t rl;
        repl_at(cm, off, &r, &rl);
        append(out, len, cap, r, rl);
    }
}

void tok_charsmap_normalize(const struct tok_charsmap *cm, const char *text, size_t n,
                            char **out, size_t *len, size_t *cap)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;

    while (i < n) {
        /* ASCII followed by ASCII (but not CR LF) is a one-character cluster */
        if (s[i] < 0x80 && (i + 1 == n || (s[i + 1] < 0x80 && !(s[i] == '\r' &&
                                                                 s[i + 1] == '\n')))) {
            map_char(cm, s + i, 1, out, len, cap);
            i++;
            continue;
        }
        /* the extended grapheme cluster starting at i */
        utf8proc_int32_t state = 0;
        size_t w, end = i;
        uint32_t prev = tok_utf8_decode(s + i, &w);
        end += w;
        while (end < n) {
            size_t w2;
            uint32_t next = tok_utf8_decode(s + end, &w2);
            if (cluster_break(prev, next, &state))
                break;
            prev = next;
            end += w2;
        }
        if (end - i < 6) {
            int64_t off = shortest_prefix(cm, s + i, end - i);
            if (off >= 0) {
                const char *r;
                size_t rl;
                repl_at(cm, off, &r, &rl);
                append(out, len, cap, r, rl);
                i = end;
                continue;
            }
        }
        while (i < end) {
            tok_utf8_decode(s + i, &w);
            map_char(cm, s + i, w, out, len, cap);
            i += w;
        }
    }
    if (*len + 1 > *cap)
        xgrow((void **)out, cap, *len + 1, 1);
    (*out)[*len] = '\0';
}
