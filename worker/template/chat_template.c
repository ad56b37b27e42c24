/*
 * chat_template.c -- the public face of the chat template interpreter:
 * compile a template (newline normalization as jinja2 does, lex, parse),
 * find a model folder's template, and render a context of jansson values.
 * A render owns an arena freed before it returns; the compiled template is
 * read-only, so one template may render from several threads at once.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "tmpl.h"
#include "util.h"

struct chat_template {
    struct tp_arena arena; /* AST, constants and the normalized source */
    struct node *root;
};

/* jinja2 joins source.splitlines() with "\n": every line break Python knows
 * becomes "\n", and one trailing line break goes (keep_trailing_newline off). */
static char *normalize(struct tp_arena *a, const char *src, size_t len, size_t *outlen)
{
    char *o = tp_alloc(a, len + 1);
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == '\r') {
            if (i + 1 < len && src[i + 1] == '\n')
                i++;
            o[k++] = '\n';
        } else if (c == '\v' || c == '\f' || (c >= 0x1c && c <= 0x1e)) {
            o[k++] = '\n';
        } else if (c == 0xC2 && i + 1 < len && (unsigned char)src[i + 1] == 0x85) {
            o[k++] = '\n';
            i++;
        } else if (c == 0xE2 && i + 2 < len && (unsigned char)src[i + 1] == 0x80 &&
                   ((unsigned char)src[i + 2] == 0xA8 || (unsigned char)src[i + 2] == 0xA9)) {
            o[k++] = '\n';
            i += 2;
        } else {
            o[k++] = (char)c;
        }
    }
    if (k && o[k - 1] == '\n')
        k--;
    o[k] = 0;
    *outlen = k;
    return o;
}

struct chat_template *chat_template_compile(const char *src, size_t len, char *err, size_t errlen)
{
    struct chat_template *t = xcalloc(1, sizeof(*t));
    struct tp_tokens toks = {0};
    size_t n;
    if (memchr(src, 0, len)) {
        snprintf(err, errlen, "template holds a NUL byte");
        goto fail;
    }
    char *s = normalize(&t->arena, src, len, &n);
    if (tp_lex(&t->arena, s, n, &toks, err, errlen) < 0)
        goto fail;
    t->root = tp_parse(&t->arena, &toks, err, errlen);
    if (!t->root)
        goto fail;
    free(toks.v);
    return t;
fail:
    free(toks.v);
    chat_template_free(t);
    return NULL;
}

void chat_template_free(struct chat_template *t)
{
    if (!t)
        return;
    tp_arena_free(&t->arena);
    free(t);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 65536 > cap) {
            cap = cap ? cap * 2 : 65536;
            buf = xrealloc(buf, cap + 1);
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

struct chat_template *chat_template_load_dir(const char *dir, char *err, size_t errlen)
{
    char *path = xasprintf("%s/chat_template.jinja", dir);
    size_t len;
    char *src = read_file(path, &len);
    struct chat_template *t = NULL;
    json_t *cfg = NULL;
    if (src) {
        t = chat_template_compile(src, len, err, errlen);
        if (!t) {
            char tmp[512];
            snprintf(tmp, sizeof(tmp), "%s", err);
            snprintf(err, errlen, "%s: %s", path, tmp);
        }
        goto done;
    }
    free(path);
    path = xasprintf("%s/tokenizer_config.json", dir);
    json_error_t je;
    cfg = json_load_file(path, 0, &je);
    if (!cfg) {
        snprintf(err, errlen, "%s: %s", path, je.text);
        goto done;
    }
    json_t *ct = json_object_get(cfg, "chat_template");
    if (json_is_array(ct)) {
        json_t *e, *pick = NULL;
        size_t i;
        json_array_foreach(ct, i, e)
        {
            json_t *nm = json_object_get(e, "name");
            if (json_is_string(nm) && strcmp(json_string_value(nm), "default") == 0)
                pick = json_object_get(e, "template");
        }
        ct = pick;
    }
    if (!json_is_string(ct)) {
        snprintf(err, errlen, "%s: no chat template (no chat_template.jinja, no \"chat_template\" string or \"default\" entry)",
                 dir);
        goto done;
    }
    t = chat_template_compile(json_string_value(ct), json_string_length(ct), err, errlen);
    if (!t) {
        char tmp[512];
        snprintf(tmp, sizeof(tmp), "%s", err);
        snprintf(err, errlen, "%s chat_template: %s", path, tmp);
    }
done:
    json_decref(cfg);
    free(src);
    free(path);
    return t;
}

int chat_template_render(const struct chat_template *t, json_t *vars, char **out, size_t *out_len,
                         char *err, size_t errlen)
{
    struct tp_arena arena = {.limit = TP_MAX_MEM};
    struct tp_buf buf = {0};
    int rc = -1;
    if (!json_is_object(vars)) {
        snprintf(err, errlen, "template variables must be a JSON object");
        return -1;
    }
    struct tv g = tv_from_json(&arena, vars);
    struct tp_scope *scope = tp_alloc(&arena, sizeof(*scope));
    if (g.t != TV_DICT || !scope) {
        snprintf(err, errlen, "template variables too large");
        goto done;
    }
    scope->vars = g.u.d;
    struct tp_ctx c = {.a = &arena, .out = &buf, .scope = scope, .err = err, .errlen = errlen,
                       .out_limit = TP_MAX_OUT};
    buf_add(&buf, "", 0);
    if (tp_exec(&c, t->root) < 0 || c.failed) {
        if (!c.failed)
            snprintf(err, errlen, "template error");
        goto done;
    }
    *out = buf.p;
    *out_len = buf.n;
    buf.p = NULL;
    rc = 0;
done:
    free(buf.p);
    tp_arena_free(&arena);
    return rc;
}
