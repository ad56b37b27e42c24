/*
 * gw_body.c -- request body inspection: jansson for JSON (parsed once, only
 * to read fields), a small scanner for multipart/form-data fields. Nothing
 * here allocates beyond the returned strings.
 */
#include "gw_body.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

static char *json_scalar_string(json_t *v)
{
    if (json_is_string(v))
        return xstrndup(json_string_value(v), json_string_length(v));
    if (json_is_integer(v))
        return xasprintf("%lld", (long long)json_integer_value(v));
    if (json_is_real(v))
        return xasprintf("%.17g", json_real_value(v));
    return NULL;
}

int gw_body_inspect_json(const char *body, size_t len, const char *sticky_field,
                         struct gw_body_info *info, char *err, size_t errlen)
{
    memset(info, 0, sizeof(*info));
    json_error_t je;
    json_t *root = json_loadb(body, len, 0, &je);
    if (root == NULL) {
        snprintf(err, errlen, "request body is not valid JSON: %s (line %d, column %d)",
                 je.text, je.line, je.column);
        return -1;
    }
    if (!json_is_object(root)) {
        snprintf(err, errlen, "request body must be a JSON object");
        json_decref(root);
        return -1;
    }
    json_t *model = json_object_get(root, "model");
    if (json_is_string(model))
        info->model = xstrndup(json_string_value(model), json_string_length(model));
    else if (model != NULL && !json_is_null(model))
        info->model_bad_type = 1;
    info->stream = json_is_true(json_object_get(root, "stream"));
    if (sticky_field != NULL)
        info->sticky = json_scalar_string(json_object_get(root, sticky_field));
    json_decref(root);
    return 0;
}

/* Copy the boundary parameter of <ct> into <out>; 0 or -1. */
static int multipart_boundary(const char *ct, char *out, size_t outlen)
{
    const char *p = strcasestr(ct, "boundary=");
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

/* The form field name in a part's header block [h, hend), into <out>. */
static int part_name(const char *h, const char *hend, char *out, size_t outlen)
{
    const char *line = h;
    while (line < hend) {
        const char *eol = mem_find(line, (size_t)(hend - line), "\r\n", 2);
        if (eol == NULL)
            eol = hend;
        size_t ll = (size_t)(eol - line);
        if (ll > 20 && strncasecmp(line, "Content-Disposition:", 20) == 0) {
            const char *n = mem_find(line, ll, "name=\"", 6);
            /* skip "filename=" matches: require a separator before name= */
            while (n != NULL && n > line && n[-1] != ' ' && n[-1] != ';' && n[-1] != '\t')
                n = mem_find(n + 1, (size_t)(eol - n - 1), "name=\"", 6);
            if (n == NULL)
                return -1;
            n += 6;
            const char *q = memchr(n, '"', (size_t)(eol - n));
            if (q == NULL || (size_t)(q - n) + 1 > outlen)
                return -1;
            memcpy(out, n, (size_t)(q - n));
            out[q - n] = '\0';
            return 0;
        }
        line = eol + 2;
    }
    return -1;
}

int gw_body_inspect_multipart(const char *body, size_t len, const char *content_type,
                              const char *sticky_field, struct gw_body_info *info,
                              char *err, size_t errlen)
{
    char boundary[80], delim[84], name[128];
    memset(info, 0, sizeof(*info));
    if (multipart_boundary(content_type, boundary, sizeof(boundary)) == -1) {
        snprintf(err, errlen, "multipart/form-data body without a valid boundary");
        return -1;
    }
    size_t dlen = (size_t)snprintf(delim, sizeof(delim), "--%s", boundary);
    const char *p = mem_find(body, len, delim, dlen);
    if (p == NULL) {
        snprintf(err, errlen, "multipart/form-data body has no part");
        return -1;
    }
    const char *end = body + len;
    for (;;) {
        p += dlen;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            return 0;                           /* closing delimiter */
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
            break;
        p += 2;
        const char *hend = mem_find(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (hend == NULL)
            break;
        const char *data = hend + 4;
        char nd[88];
        size_t ndlen = (size_t)snprintf(nd, sizeof(nd), "\r\n%s", delim);
        const char *next = mem_find(data, (size_t)(end - data), nd, ndlen);
        if (next == NULL)
            break;
        if (part_name(p, hend, name, sizeof(name)) == 0) {
            if (strcmp(name, "model") == 0 && info->model == NULL)
                info->model = xstrndup(data, (size_t)(next - data));
            else if (strcmp(name, "stream") == 0)
                info->stream = (next - data) == 4 && strncasecmp(data, "true", 4) == 0;
            else if (sticky_field != NULL && strcmp(name, sticky_field) == 0 && info->sticky == NULL)
                info->sticky = xstrndup(data, (size_t)(next - data));
        }
        p = next + 2;
    }
    if (info->model != NULL)
        return 0;                               /* tolerate a truncated tail after the model */
    snprintf(err, errlen, "malformed multipart/form-data body");
    gw_body_info_free(info);
    return -1;
}

void gw_body_info_free(struct gw_body_info *info)
{
    free(info->model);
    free(info->sticky);
    info->model = info->sticky = NULL;
}
