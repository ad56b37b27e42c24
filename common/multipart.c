/*
 * multipart.c -- multipart/form-data walking: boundary, delimiters, part
 * headers (Content-Disposition name/filename, Content-Type). Parts are
 * borrowed slices of the body; nothing is allocated or copied here.
 */
#include "multipart.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

int multipart_boundary(const char *ct, char *out, size_t outlen)
{
    const char *p = ct ? strcasestr(ct, "boundary=") : NULL;
    if (p == NULL)
        return -1;
    p += 9;
    size_t n = 0;
    if (*p == '"') {
        p++;
        while (p[n] && p[n] != '"')
            n++;
    } else {
        while (p[n] && p[n] != ';' && p[n] != ' ' && p[n] != '\t')
            n++;
    }
    if (n == 0 || n > 70 || n + 1 > outlen)
        return -1;
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

static const char *mem_find(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
    if (nlen == 0 || hlen < nlen)
        return NULL;
    const char *end = hay + hlen - nlen;
    for (const char *p = hay; p <= end; p++) {
        p = memchr(p, needle[0], (size_t)(end - p) + 1);
        if (p == NULL)
            return NULL;
        if (memcmp(p, needle, nlen) == 0)
            return p;
    }
    return NULL;
}

/* The value of parameter <key> (e.g. "name") in the header line [line, eol):
 * quoted or token; requires a separator before the key so "filename" never
 * matches "name". 1 found, 0 not. */
static int header_param(const char *line, const char *eol, const char *key, char *out,
                        size_t outlen)
{
    size_t kl = strlen(key);
    const char *p = line;
    while (p < eol) {
        const char *k = mem_find(p, (size_t)(eol - p), key, kl);
        if (k == NULL)
            return 0;
        p = k + kl;
        if (k == line || (k[-1] != ' ' && k[-1] != ';' && k[-1] != '\t'))
            continue;
        if (p >= eol || *p != '=')
            continue;
        p++;
        const char *v = p, *ve;
        if (p < eol && *p == '"') {
            v = p + 1;
            ve = memchr(v, '"', (size_t)(eol - v));
            if (ve == NULL)
                return 0;
        } else {
            ve = v;
            while (ve < eol && *ve != ';' && *ve != ' ' && *ve != '\t')
                ve++;
        }
        size_t n = (size_t)(ve - v);
        if (n + 1 > outlen)
            n = outlen - 1;
        memcpy(out, v, n);
        out[n] = '\0';
        return 1;
    }
    return 0;
}

static void part_headers(const char *h, const char *hend, struct multipart_part *part)
{
    const char *line = h;
    while (line < hend) {
        const char *eol = mem_find(line, (size_t)(hend - line), "\r\n", 2);
        if (eol == NULL)
            eol = hend;
        size_t ll = (size_t)(eol - line);
        if (ll > 20 && strncasecmp(line, "Content-Disposition:", 20) == 0) {
            header_param(line + 20, eol, "name", part->name, sizeof(part->name));
            part->has_filename = header_param(line + 20, eol, "filename", part->filename,
                                              sizeof(part->filename));
        } else if (ll > 13 && strncasecmp(line, "Content-Type:", 13) == 0) {
            const char *v = line + 13;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            size_t n = (size_t)(eol - v);
            if (n + 1 > sizeof(part->content_type))
                n = sizeof(part->content_type) - 1;
            memcpy(part->content_type, v, n);
            part->content_type[n] = '\0';
        }
        line = eol + 2;
    }
}

int multipart_each(const char *body, size_t len, const char *content_type, multipart_fn fn,
                   void *arg, char *err, size_t errlen)
{
    char boundary[80], delim[84], nd[88];
    if (multipart_boundary(content_type, boundary, sizeof(boundary)) == -1) {
        snprintf(err, errlen, "multipart/form-data body without a valid boundary");
        return -1;
    }
    size_t dlen = (size_t)snprintf(delim, sizeof(delim), "--%s", boundary);
    size_t ndlen = (size_t)snprintf(nd, sizeof(nd), "\r\n%s", delim);
    const char *p = mem_find(body, len, delim, dlen);
    if (p == NULL) {
        snprintf(err, errlen, "multipart/form-data body has no part");
        return -1;
    }
    const char *end = body + len;
    for (;;) {
        p += dlen;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            return 1;                           /* closing delimiter */
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;                                /* transport padding */
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
            return 0;
        p += 2;
        const char *data, *hend;
        if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') {
            hend = p;                           /* no header at all */
            data = p + 2;
        } else {
            hend = mem_find(p, (size_t)(end - p), "\r\n\r\n", 4);
            if (hend == NULL)
                return 0;
            data = hend + 4;
        }
        const char *next = mem_find(data, (size_t)(end - data), nd, ndlen);
        if (next == NULL)
            return 0;
        struct multipart_part part;
        memset(&part, 0, sizeof(part));
        part_headers(p, hend, &part);
        part.data = data;
        part.len = (size_t)(next - data);
        if (fn(arg, &part))
            return 1;
        p = next + 2;
    }
}
