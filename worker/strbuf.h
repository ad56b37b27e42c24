/*
 * strbuf.h -- a growable byte string for the worker's text stages (stop
 * strings, reasoning and tool-call parsers, response building). Always
 * NUL-terminated once anything was added; memory comes from xrealloc (OOM
 * aborts). Header-only; owned by the worker's server layer.
 */
#ifndef LLMUX_STRBUF_H
#define LLMUX_STRBUF_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct strbuf {
    char *p;            /* NULL until the first append */
    size_t len, cap;
};

static inline void strbuf_add(struct strbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static inline void strbuf_adds(struct strbuf *b, const char *s)
{
    strbuf_add(b, s, strlen(s));
}

/* The contents as a string ("" when empty); borrowed. */
static inline const char *strbuf_str(const struct strbuf *b)
{
    return b->p ? b->p : "";
}

static inline void strbuf_reset(struct strbuf *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

static inline void strbuf_free(struct strbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Length of the longest suffix of <s>[0..len) that is a proper prefix of
 * <tag> (text that may still become <tag> when more arrives). */
static inline size_t strbuf_partial_suffix(const char *s, size_t len, const char *tag)
{
    size_t tl = strlen(tag);
    size_t k = len < tl - 1 ? len : tl - 1;
    for (; k > 0; k--)
        if (memcmp(s + len - k, tag, k) == 0)
            return k;
    return 0;
}

#endif
