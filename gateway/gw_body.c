/*
 * gw_body.c -- request body inspection: jansson for JSON (parsed once; the
 * parse is kept for later field lookups), common/multipart.c for
 * multipart/form-data. Nothing here changes or copies the body.
 */
#include "gw_body.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "multipart.h"
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
