/*
 * tok_pretok.c -- the Qwen2 pre-tokenizer as a hand-written matcher, plus the
 * Unicode and byte-level helpers it needs. tok_pretok_next() returns exactly
 * the match that a backtracking engine (Oniguruma, as Hugging Face tokenizers
 * uses) finds for tok_qwen2_pattern at a position: alternatives in order,
 * greedy quantifiers, the (?!\S) lookahead. Categories come from utf8proc,
 * patched for the code points of newer Unicode versions that HF's engine
 * knows (tok_class_patch.h); \s is Unicode White_Space. No allocation, no
 * state.
 */
#include <string.h>

#include <utf8proc.h>

#include "tok_internal.h"
#include "util.h"

const char tok_qwen2_pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* ---- byte-level mapping (GPT-2 bytes_to_unicode) ----------------------- */

static int byte_is_printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
}

/* The other 68 bytes take 256.. in byte order: 0x00-0x20 (33), 0x7f-0xa0
 * (34), then 0xad. */
uint32_t tok_byte_to_cp(uint8_t b)
{
    if (byte_is_printable(b))
        return b;
    if (b <= 0x20)
        return 256u + b;
    if (b <= 0xa0)
        return 256u + 33 + (b - 0x7fu);
    return 256u + 67;           /* 0xad */
}

int tok_cp_to_byte(uint32_t cp)
{
    if (cp < 256)
        return byte_is_printable(cp) ? (int)cp : -1;
    if (cp < 256 + 33)
        return (int)(cp - 256);
    if (cp < 256 + 67)
        return (int)(0x7f + cp - (256 + 33));
    return cp == 256 + 67 ? 0xad : -1;
}

/* ---- UTF-8 ---------------------------------------------------------------- */

uint32_t tok_utf8_decode(const unsigned char *s, size_t *n)
{
    unsigned c = s[0];
    if (c < 0x80) {
        *n = 1;
        return c;
    }
    if (c < 0xe0) {
        *n = 2;
        return ((c & 0x1fu) << 6) | (s[1] & 0x3fu);
    }
    if (c < 0xf0) {
        *n = 3;
        return ((c & 0x0fu) << 12) | ((s[1] & 0x3fu) << 6) | (s[2] & 0x3fu);
    }
    *n = 4;
    return ((c & 0x07u) << 18) | ((s[1] & 0x3fu) << 12) | ((s[2] & 0x3fu) << 6) | (s[3] & 0x3fu);
}

int tok_utf8_valid(const char *str, size_t len, size_t *bad)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        unsigned lo = 0x80, hi = 0xbf;
        size_t w;
        if (c >= 0xc2 && c <= 0xdf)
            w = 2;
        else if (c >= 0xe0 && c <= 0xef) {
            w = 3;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            w = 4;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else
            goto fail;
        if (i + w > len || s[i + 1] < lo || s[i + 1] > hi)
            goto fail;
        for (size_t k = 2; k < w; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                goto fail;
        i += w;
    }
    return 1;
fail:
    if (bad)
        *bad = i;
    return 0;
}

/* ---- character classes -------------------------------------------------- */

#define CL_L 1                  /* \p{L} */
#define CL_N 2                  /* \p{N} */
#define CL_WS 4                 /* \s: Unicode White_Space */
#define CL_NL 8                 /* \r or \n */

int tok_is_white_space(uint32_t cp)
{
    if (cp < 0x80)
        return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20;
    return cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

#define L CL_L
#define N CL_N
#define W CL_WS
#define NL CL_NL
static const unsigned char ascii_class[128] = {
    0, 0, 0, 0, 0, 0, 0, 0,
    0, W, W|NL, W, W, W|NL, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0,
    W, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0,
    N, N, N, N, N, N, N, N,
    N, N, 0, 0, 0, 0, 0, 0,
    0, L, L, L, L, L, L, L,
    L, L, L, L, L, L, L, L,
    L, L, L, L, L, L, L, L,
    L, L, L, 0, 0, 0, 0, 0,
    0, L, L, L, L, L, L, L,
    L, L, L, L, L, L, L, L,
    L, L, L, L, L, L, L, L,
    L, L, L, 0, 0, 0, 0, 0,
};
#undef L
#undef N
#undef W
#undef NL

#include "tok_class_patch.h"

/* HF's class of a code point utf8proc does not know (assigned in a newer
 * Unicode than utf8proc's; see gen_class_patch.py), 0 when none */
static unsigned class_patch(uint32_t cp)
{
    size_t lo = 0, hi = ARRAY_SIZE(tok_class_patch);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < tok_class_patch[mid].lo)
            hi = mid;
        else if (cp > tok_class_patch[mid].hi)
            lo = mid + 1;
        else
            return tok_class_patch[mid].cls;
    }
    return 0;
}

static unsigned char_class(uint32_t cp)
{
    if (cp < 0x80)
        return ascii_class[cp];
    if (tok_is_white_space(cp))
        return CL_WS;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
        return CL_L;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        return CL_N;
    case UTF8PROC_CATEGORY_CN:
        return class_patch(cp);
    default:
        return 0;
    }
}

/* \w of the Rust regex crate (used for added tokens' single_word):
 * Alphabetic (letters, Nl, Other_Alphabetic), marks, decimal digits,
 * connector punctuation, joiners. Other_Alphabetic outside M and L is the
 * circled and squared Latin letters (symbols), listed here. */
int tok_is_word_char(uint32_t cp)
{
    if (cp < 0x80)
        return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
               (cp >= '0' && cp <= '9') || cp == '_';
    if (cp == 0x200c || cp == 0x200d || (cp >= 0x24b6 && cp <= 0x24e9) ||
        (cp >= 0x1f130 && cp <= 0x1f149) || (cp >= 0x1f150 && cp <= 0x1f169) ||
        (cp >= 0x1f170 && cp <= 0x1f189))
        return 1;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_PC:
        return 1;
    default:
        return 0;
    }
}

/* ---- the matcher ---------------------------------------------------------- */

struct cursor {
    const unsigned char *s;
    size_t len;
};

/* class and width of the character at <pos>; class 0 width 0 at the end */
static unsigned cls_at(const struct cursor *c, size_t pos, size_t *w, uint32_t *cp)
{
    if (pos >= c->len) {
        *w = 0;
        if (cp)
            *cp = 0;
        return 0;
    }
    uint32_t v;
    if (c->s[pos] < 0x80) {
        *w = 1;
        v = c->s[pos];
    } else {
        v = tok_utf8_decode(c->s + pos, w);
    }
    if (cp)
        *cp = v;
    return char_class(v);
}

static size_t skip_letters(const struct cursor *c, size_t pos)
{
    size_t w;
    while (pos < c->len && (cls_at(c, pos, &w, NULL) & CL_L))
        pos += w;
    return pos;
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d) at <pos> (the apostrophe): end or 0 */
static size_t match_contraction(const struct cursor *c, size_t pos)
{
    size_t p = pos + 1, w;
    uint32_t a, b;
    if (p >= c->len)
        return 0;
    cls_at(c, p, &w, &a);
    p += w;
    /* simple case folding: only s has a non-ASCII fold (U+017F LONG S) */
    if (a == 's' || a == 'S' || a == 0x17f || a == 't' || a == 'T' || a == 'm' || a == 'M' ||
        a == 'd' || a == 'D')
        return p;
    if (p >= c->len)
        return 0;
    b = c->s[p];
    if (((a == 'r' || a == 'R') && (b == 'e' || b == 'E')) ||
        ((a == 'v' || a == 'V') && (b == 'e' || b == 'E')) ||
        ((a == 'l' || a == 'L') && (b == 'l' || b == 'L')))
        return p + 1;
    return 0;
}

size_t tok_pretok_next(const char *str, size_t len, size_t pos)
{
    struct cursor c = { (const unsigned char *)str, len };
    size_t w0, w1, e;
    uint32_t cp0;
    unsigned k0 = cls_at(&c, pos, &w0, &cp0);

    /* 1: (?i:'s|'t|'re|'ve|'m|'ll|'d) */
    if (cp0 == '\'' && (e = match_contraction(&c, pos)) != 0)
        return e;
    /* 2: [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (k0 & CL_L)
        return skip_letters(&c, pos + w0);
    if (!(k0 & (CL_NL | CL_N))) {
        unsigned k1 = cls_at(&c, pos + w0, &w1, NULL);
        if (k1 & CL_L)
            return skip_letters(&c, pos + w0 + w1);
    }
    /* 3: \p{N} */
    if (k0 & CL_N)
        return pos + w0;
    /* 4: ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
    {
        size_t p = pos;
        if (cp0 == ' ' && !(cls_at(&c, pos + 1, &w1, NULL) & (CL_WS | CL_L | CL_N)) &&
            pos + 1 < len)
            p = pos + 1;
        size_t q = p, w;
        while (q < len && !(cls_at(&c, q, &w, NULL) & (CL_WS | CL_L | CL_N)))
            q += w;
        if (q > p) {
            while (q < len && (c.s[q] == '\r' || c.s[q] == '\n'))
                q++;
            return q;
        }
    }
    /* here the character is white space: W = the run of it */
    size_t q = pos, w, last_nl = 0, last_start = pos;
    int have_nl = 0;
    while (q < len) {
        unsigned k = cls_at(&c, q, &w, NULL);
        if (!(k & CL_WS))
            break;
        if (k & CL_NL) {
            have_nl = 1;
            last_nl = q;
        }
        last_start = q;
        q += w;
    }
    if (q == pos)               /* unreachable for valid input; never loop */
        return pos + (w0 ? w0 : 1);
    /* 5: \s*[\r\n]+ -- backtracks to the last newline of the run */
    if (have_nl)
        return last_nl + 1;
    /* 6: \s+(?!\S) */
    if (q == len)
        return q;
    if (last_start > pos)
        return last_start;
    /* 7: \s+ */
    return q;
}
