/*
 * gw_body.c -- request body inspection: jansson for JSON (parsed once; the
 * parse is kept for later field lookups), a small scanner for
 * multipart/form-data. Nothing here changes or copies the body.
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

int gw_body_inspect_json(const char *body, size_t len, struct gw_body_info *info,
                         char *err, size_t errlen)
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
    info->json = root;
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

/* Called for each form field: its name and value. Return 1 to stop. */
typedef int (*part_fn)(void *arg, const char *name, const char *data, size_t n);

/* Walk the parts of a multipart body. Returns 1 when the closing delimiter
 * was reached or <fn> stopped, 0 when the body ends early (truncated or
 * malformed after the last whole part), -1 with <err> when it has no valid
 * boundary or no part at all. */
static int multipart_each(const char *body, size_t len, const char *content_type,
                          part_fn fn, void *arg, char *err, size_t errlen)
{
    char boundary[80], delim[84], nd[88], name[128];
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
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
            return 0;
        p += 2;
        const char *hend = mem_find(p, (size_t)(end - p), "\r\n\r\n", 4);
        if (hend == NULL)
            return 0;
        const char *data = hend + 4;
        const char *next = mem_find(data, (size_t)(end - data), nd, ndlen);
        if (next == NULL)
            return 0;
        if (part_name(p, hend, name, sizeof(name)) == 0 &&
            fn(arg, name, data, (size_t)(next - data)))
            return 1;
        p = next + 2;
    }
}

static int inspect_part(void *arg, const char *name, const char *data, size_t n)
{
    struct gw_body_info *info = arg;
    if (strcmp(name, "model") == 0 && info->model == NULL)
        info->model = xstrndup(data, n);
    else if (strcmp(name, "stream") == 0)
        info->stream = n == 4 && strncasecmp(data, "true", 4) == 0;
    return 0;
}

int gw_body_inspect_multipart(const char *body, size_t len, const char *content_type,
                              struct gw_body_info *info, char *err, size_t errlen)
{
    memset(info, 0, sizeof(*info));
    int rc = multipart_each(body, len, content_type, inspect_part, info, err, errlen);
    if (rc == -1)
        return -1;
    if (rc == 0 && info->model == NULL) {
        snprintf(err, errlen, "malformed multipart/form-data body");
        gw_body_info_free(info);
        return -1;
    }
    /* a truncated tail after the model field is tolerated */
    info->body = body;
    info->len = len;
    info->content_type = content_type;
    return 0;
}

struct field_find {
    const char *name;
    char       *value;
};

static int find_part(void *arg, const char *name, const char *data, size_t n)
{
    struct field_find *f = arg;
    if (strcmp(name, f->name) != 0)
        return 0;
    f->value = xstrndup(data, n);
    return 1;
}

char *gw_body_field(const struct gw_body_info *info, const char *name)
{
    if (info->json != NULL)
        return json_scalar_string(json_object_get(info->json, name));
    if (info->body == NULL)
        return NULL;
    struct field_find f = { .name = name, .value = NULL };
    char err[128];
    multipart_each(info->body, info->len, info->content_type, find_part, &f, err, sizeof(err));
    return f.value;
}

void gw_body_info_free(struct gw_body_info *info)
{
    free(info->model);
    info->model = NULL;
    if (info->json != NULL)
        json_decref(info->json);
    info->json = NULL;
    info->body = NULL;
}
