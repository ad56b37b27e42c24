/*
 * stop.c -- the stop-string matcher. Keeps the unreleased tail of the text
 * (never longer than the longest stop string minus one byte after a feed),
 * searches only where a new match can start, and holds back the longest
 * suffix that is a prefix of some stop string.
 */
#include "stop.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

void stop_init(struct stop_matcher *m, char *const *stops, int n)
{
    memset(m, 0, sizeof(*m));
    m->hit = -1;
    if (n > 0) {
        m->stops = xcalloc((size_t)n, sizeof(char *));
        m->lens = xcalloc((size_t)n, sizeof(size_t));
    }
    for (int i = 0; i < n; i++) {
        size_t l = strlen(stops[i]);
        if (l == 0)
            continue;
        m->stops[m->n] = xstrdup(stops[i]);
        m->lens[m->n] = l;
        if (l > m->max_len)
            m->max_len = l;
        m->n++;
    }
}

void stop_free(struct stop_matcher *m)
{
    for (int i = 0; i < m->n; i++)
        free(m->stops[i]);
    free(m->stops);
    free(m->lens);
    free(m->buf);
    memset(m, 0, sizeof(*m));
    m->hit = -1;
}

/* Longest suffix of buf[from..len) that is a proper prefix of a stop. */
static size_t holdback(const struct stop_matcher *m, size_t from)
{
    size_t best = 0, avail = m->len - from;
    for (int i = 0; i < m->n; i++) {
        size_t k = m->lens[i] - 1 < avail ? m->lens[i] - 1 : avail;
        for (; k > best; k--)
            if (memcmp(m->buf + m->len - k, m->stops[i], k) == 0) {
                best = k;
                break;
            }
    }
    return best;
}

int stop_feed(struct stop_matcher *m, const char *text, size_t len, const char **out,
              size_t *out_len)
{
    *out = "";
    *out_len = 0;
    if (m->hit >= 0)
        return 1;
    if (m->n == 0) {            /* nothing to match: pass through */
        *out = text;
        *out_len = len;
        return 0;
    }
    /* drop what the previous call released */
    if (m->released > 0) {
        memmove(m->buf, m->buf + m->released, m->len - m->released);
        m->len -= m->released;
        m->released = 0;
    }
    size_t old = m->len;
    if (m->len + len + 1 > m->cap) {
        m->cap = (m->len + len + 1) * 2;
        m->buf = xrealloc(m->buf, m->cap);
    }
    memcpy(m->buf + m->len, text, len);
    m->len += len;
    m->buf[m->len] = '\0';

    /* a match must end in the new bytes: it starts at most max_len-1 back */
    size_t start = old > m->max_len - 1 ? old - (m->max_len - 1) : 0;
    size_t best = (size_t)-1;
    int which = -1;
    for (int i = 0; i < m->n; i++) {
        if (m->len - start < m->lens[i])
            continue;
        const char *p = memmem(m->buf + start, m->len - start, m->stops[i], m->lens[i]);
        if (p != NULL && (size_t)(p - m->buf) < best) {
            best = (size_t)(p - m->buf);
            which = i;
        }
    }
    if (which >= 0) {
        m->hit = which;
        *out = m->buf;
        *out_len = best;
        m->released = m->len;
        return 1;
    }
    size_t keep = holdback(m, 0);
    *out = m->buf;
    *out_len = m->len - keep;
    m->released = m->len - keep;
    return 0;
}

void stop_flush(struct stop_matcher *m, const char **out, size_t *out_len)
{
    *out = "";
    *out_len = 0;
    if (m->hit >= 0 || m->n == 0)
        return;
    *out = m->buf + m->released;
    *out_len = m->len - m->released;
    m->released = m->len;
}
