/*
 * gw_json_scan.c -- the request-body JSON scanner (see gw_json_scan.h): a
 * recursive-descent validator over the bytes that records the spans of a
 * few top-level members. Recursion is bounded by GW_JSON_MAX_DEPTH
 * (jansson's parser allows 2048).
 */
#include "gw_json_scan.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define GW_JSON_MAX_DEPTH 2048

struct scan {
    const char *p, *end, *start;
    const char *errmsg;
    const char *errpos;
};

static int fail(struct scan *s, const char *msg)
{
    if (s->errmsg == NULL) {
        s->errmsg = msg;
        s->errpos = s->p;
    }
    return -1;
}

static void skip_ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_u4(const char *p, const char *end, unsigned *out)
{
    if (end - p < 4)
        return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = v << 4 | (unsigned)h;
    }
    *out = v;
    return 0;
}

/* One UTF-8 sequence at s->p (first byte >= 0x80); advances. */
static int utf8_seq(struct scan *s)
{
    const unsigned char *u = (const unsigned char *)s->p;
    size_t left = (size_t)(s->end - s->p);
    unsigned c = u[0], n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) { n = 1; cp = c & 0x1f; }
    else if (c >= 0xe0 && c <= 0xef) { n = 2; cp = c & 0x0f; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 3; cp = c & 0x07; }
    else return fail(s, "invalid UTF-8 in a string");
    if (left < n + 1)
        return fail(s, "invalid UTF-8 in a string");
    for (unsigned i = 1; i <= n; i++) {
        if ((u[i] & 0xc0) != 0x80)
            return fail(s, "invalid UTF-8 in a string");
        cp = cp << 6 | (u[i] & 0x3f);
    }
    if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
        return fail(s, "invalid UTF-8 in a string");
    s->p += n + 1;
    return 0;
}

/* s->p at the opening quote; on return after the closing one. */
static int scan_string(struct scan *s, struct gw_json_span *out)
{
    s->p++;
    const char *begin = s->p;
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            if (out) {
                out->type = GWJ_STRING;
                out->p = begin;
                out->len = (size_t)(s->p - begin);
            }
            s->p++;
            return 0;
        }
        if (c < 0x20)
            return fail(s, "control character in a string");
        if (c == '\\') {
            s->p++;
            if (s->p >= s->end)
                break;
            char e = *s->p;
            if (e == 'u') {
                unsigned v, w;
                if (read_u4(s->p + 1, s->end, &v) < 0)
                    return fail(s, "invalid \\u escape");
                s->p += 5;
                if (v == 0)
                    return fail(s, "\\u0000 is not allowed");
                if (v >= 0xd800 && v <= 0xdbff) {
                    if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u' ||
                        read_u4(s->p + 2, s->end, &w) < 0 || w < 0xdc00 || w > 0xdfff)
                        return fail(s, "invalid Unicode surrogate pair");
                    s->p += 6;
                } else if (v >= 0xdc00 && v <= 0xdfff) {
                    return fail(s, "invalid Unicode surrogate pair");
                }
                continue;
            }
            if (strchr("\"\\/bfnrt", e) == NULL || e == '\0')
                return fail(s, "invalid escape in a string");
            s->p++;
            continue;
        }
        if (c >= 0x80) {
            if (utf8_seq(s) < 0)
                return -1;
            continue;
        }
        s->p++;
    }
    return fail(s, "premature end of input in a string");
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int scan_number(struct scan *s, struct gw_json_span *out)
{
    const char *b = s->p;
    if (s->p < s->end && *s->p == '-')
        s->p++;
    if (s->p >= s->end || !is_digit(*s->p))
        return fail(s, "invalid number");
    if (*s->p == '0')
        s->p++;
    else
        while (s->p < s->end && is_digit(*s->p))
            s->p++;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (s->p >= s->end || !is_digit(*s->p))
            return fail(s, "invalid number");
        while (s->p < s->end && is_digit(*s->p))
            s->p++;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (s->p >= s->end || !is_digit(*s->p))
            return fail(s, "invalid number");
        while (s->p < s->end && is_digit(*s->p))
            s->p++;
    }
    if (out) {
        out->type = GWJ_NUMBER;
        out->p = b;
        out->len = (size_t)(s->p - b);
    }
    return 0;
}

static int literal(struct scan *s, const char *word, enum gw_json_type t,
                   struct gw_json_span *out)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return fail(s, "invalid token");
    if (out) {
        out->type = t;
        out->p = s->p;
        out->len = n;
    }
    s->p += n;
    return 0;
}

/* Compare a raw (escaped) string span with plain <key>. */
static int key_equals(const char *p, size_t len, const char *key)
{
    if (memchr(p, '\\', len) == NULL)
        return strlen(key) == len && memcmp(p, key, len) == 0;
    struct gw_json_span sp = { GWJ_STRING, p, len };
    char *k = gw_json_string(&sp);
    int eq = strcmp(k, key) == 0;
    free(k);
    return eq;
}

struct want {
    const char *const *keys;
    size_t n;
    struct gw_json_span *vals;
};

static int scan_value(struct scan *s, int depth, struct gw_json_span *out,
                      const struct want *want);

static int scan_object(struct scan *s, int depth, const struct want *want)
{
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return 0;
    }
    for (;;) {
        skip_ws(s);
        if (s->p >= s->end)
            return fail(s, "premature end of input in an object");
        if (*s->p != '"')
            return fail(s, "string or '}' expected");
        struct gw_json_span key;
        if (scan_string(s, &key) < 0)
            return -1;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':')
            return fail(s, "':' expected");
        s->p++;
        skip_ws(s);
        struct gw_json_span *slot = NULL;
        if (want != NULL)
            for (size_t i = 0; i < want->n; i++)
                if (key_equals(key.p, key.len, want->keys[i]))
                    slot = &want->vals[i];
        if (scan_value(s, depth + 1, slot, NULL) < 0)
            return -1;
        skip_ws(s);
        if (s->p >= s->end)
            return fail(s, "premature end of input in an object");
        if (*s->p == '}') {
            s->p++;
            return 0;
        }
        if (*s->p != ',')
            return fail(s, "',' or '}' expected");
        s->p++;
    }
}

static int scan_array(struct scan *s, int depth)
{
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return 0;
    }
    for (;;) {
        skip_ws(s);
        if (scan_value(s, depth + 1, NULL, NULL) < 0)
            return -1;
        skip_ws(s);
        if (s->p >= s->end)
            return fail(s, "premature end of input in an array");
        if (*s->p == ']') {
            s->p++;
            return 0;
        }
        if (*s->p != ',')
            return fail(s, "',' or ']' expected");
        s->p++;
    }
}

static int scan_value(struct scan *s, int depth, struct gw_json_span *out,
                      const struct want *want)
{
    if (depth > GW_JSON_MAX_DEPTH)
        return fail(s, "maximum nesting depth exceeded");
    if (s->p >= s->end)
        return fail(s, "premature end of input");
    const char *b = s->p;
    switch (*s->p) {
    case '{':
        if (scan_object(s, depth, want) < 0)
            return -1;
        if (out) { out->type = GWJ_OBJECT; out->p = b; out->len = (size_t)(s->p - b); }
        return 0;
    case '[':
        if (scan_array(s, depth) < 0)
            return -1;
        if (out) { out->type = GWJ_ARRAY; out->p = b; out->len = (size_t)(s->p - b); }
        return 0;
    case '"': return scan_string(s, out);
    case 't': return literal(s, "true", GWJ_TRUE, out);
    case 'f': return literal(s, "false", GWJ_FALSE, out);
    case 'n': return literal(s, "null", GWJ_NULL, out);
    default:
        if (*s->p == '-' || is_digit(*s->p))
            return scan_number(s, out);
        return fail(s, "invalid token");
    }
}

int gw_json_scan(const char *body, size_t len, const char *const *keys, size_t n,
                 struct gw_json_span *vals, enum gw_json_type *top, char *err, size_t errlen)
{
    struct scan s = { body, body + len, body, NULL, NULL };
    struct want want = { keys, n, vals };
    struct gw_json_span whole = { GWJ_NONE, NULL, 0 };
    for (size_t i = 0; i < n; i++)
        vals[i].type = GWJ_NONE;
    skip_ws(&s);
    if (scan_value(&s, 1, &whole, &want) == 0) {
        skip_ws(&s);
        if (s.p != s.end)
            fail(&s, "end of file expected");
    }
    if (s.errmsg != NULL) {
        int line = 1, col = 0;
        for (const char *q = body; q < s.errpos && q < body + len; q++) {
            if (*q == '\n') {
                line++;
                col = 0;
            } else {
                col++;
            }
        }
        snprintf(err, errlen, "%s (line %d, column %d)", s.errmsg, line, col + 1);
        return -1;
    }
    *top = whole.type;
    return 0;
}

/* Append code point <cp> as UTF-8 at <o>; returns bytes written. */
static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

char *gw_json_string(const struct gw_json_span *sp)
{
    char *out = xmalloc(sp->len + 1), *o = out;     /* decoding never grows it */
    const char *p = sp->p, *end = sp->p + sp->len;
    while (p < end) {
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        p++;
        char e = *p++;
        switch (e) {
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned v = 0, w = 0;
            read_u4(p, end, &v);
            p += 4;
            uint32_t cp = v;
            if (v >= 0xd800 && v <= 0xdbff && end - p >= 6) {
                read_u4(p + 2, end, &w);
                p += 6;
                cp = 0x10000 + ((v - 0xd800) << 10) + (w - 0xdc00);
            }
            o += put_utf8(o, cp);
            break;
        }
        default: *o++ = e; break;          /* " \ / */
        }
    }
    *o = '\0';
    return out;
}
