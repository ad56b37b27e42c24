/*
 * gw_body.c -- request body inspection: gw_json_scan for JSON (validated,
 * no tree built; a sticky field scans again), common/multipart.c for
 * multipart/form-data. Nothing here changes or copies the body.
 */
#include "gw_body.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gw_json_scan.h"
#include "multipart.h"
#include "util.h"

/* A scalar member as text: a string decoded, a number as written. */
static char *span_text(const struct gw_json_span *v)
{
    if (v->type == GWJ_STRING)
        return gw_json_string(v);
    if (v->type == GWJ_NUMBER)
        return xstrndup(v->p, v->len);
    return NULL;
}

int gw_body_inspect_json(const char *body, size_t len, struct gw_body_info *info,
                         char *err, size_t errlen)
{
    static const char *const keys[] = { "model", "stream" };
    struct gw_json_span v[2];
    enum gw_json_type top;
    char why[200];
    memset(info, 0, sizeof(*info));
    if (gw_json_scan(body, len, keys, 2, v, &top, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "request body is not valid JSON: %s", why);
        return -1;
    }
    if (top != GWJ_OBJECT) {
        snprintf(err, errlen, "request body must be a JSON object");
        return -1;
    }
    if (v[0].type == GWJ_STRING)
        info->model = gw_json_string(&v[0]);
    else if (v[0].type != GWJ_NONE && v[0].type != GWJ_NULL)
        info->model_bad_type = 1;
    info->stream = v[1].type == GWJ_TRUE;
    info->is_json = 1;
    info->body = body;
    info->len = len;
    return 0;
}

static int inspect_part(void *arg, const struct multipart_part *part)
{
    struct gw_body_info *info = arg;
    if (strcmp(part->name, "model") == 0 && info->model == NULL)
        info->model = xstrndup(part->data, part->len);
    else if (strcmp(part->name, "stream") == 0)
        info->stream = part->len == 4 && strncasecmp(part->data, "true", 4) == 0;
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

static int find_part(void *arg, const struct multipart_part *part)
{
    struct field_find *f = arg;
    if (strcmp(part->name, f->name) != 0)
        return 0;
    f->value = xstrndup(part->data, part->len);
    return 1;
}

char *gw_body_field(const struct gw_body_info *info, const char *name)
{
    if (info->body == NULL)
        return NULL;
    if (info->is_json) {
        struct gw_json_span v;
        enum gw_json_type top;
        char err[64];
        const char *const keys[] = { name };
        if (gw_json_scan(info->body, info->len, keys, 1, &v, &top, err, sizeof(err)) < 0)
            return NULL;
        return span_text(&v);
    }
    struct field_find f = { .name = name, .value = NULL };
    char err[128];
    multipart_each(info->body, info->len, info->content_type, find_part, &f, err, sizeof(err));
    return f.value;
}

void gw_body_info_free(struct gw_body_info *info)
{
    free(info->model);
    info->model = NULL;
    info->is_json = 0;
    info->body = NULL;
}
