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
    json_t *special; /* {"bos_token": "...", ...} of the model folder; never NULL */
};

static const char *const SPECIAL_TOKENS[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                             "pad_token", "cls_token", "mask_token", NULL};

/* tokenizer_config.json's special tokens: a string or {"content": ...}. */
static void read_special_tokens(struct chat_template *t, json_t *cfg)
{
    for (int i = 0; SPECIAL_TOKENS[i]; i++) {
        json_t *v = json_object_get(cfg, SPECIAL_TOKENS[i]);
        if (json_is_object(v))
            v = json_object_get(v, "content");
        if (json_is_string(v))
            json_object_set(t->special, SPECIAL_TOKENS[i], v);
    }
}

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
    t->special = json_object();
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
    json_decref(t->special);
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
    char *cfg_path = xasprintf("%s/tokenizer_config.json", dir);
    size_t len;
    char *src = read_file(path, &len);
    struct chat_template *t = NULL;
    json_error_t je;
    json_t *cfg = json_load_file(cfg_path, 0, &je);
    if (src) {
        t = chat_template_compile(src, len, err, errlen);
        if (!t) {
            char tmp[512];
            snprintf(tmp, sizeof(tmp), "%s", err);
            snprintf(err, errlen, "%s: %s", path, tmp);
        } else if (cfg) {
            read_special_tokens(t, cfg);
        }
        goto done;
    }
    free(path);
    path = cfg_path;
    cfg_path = NULL;
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
    } else {
        read_special_tokens(t, cfg);
    }
done:
    json_decref(cfg);
    free(src);
    free(path);
    free(cfg_path);
    return t;
}

static json_t *prepare_message(json_t *m)
{
    static const char *const reasoning_keys[] = {"reasoning_content", "thinking", "reasoning"};
    json_t *out = json_object(), *r = NULL;
    const char *k;
    json_t *v;
    for (int i = 0; i < 3 && !r; i++) {
        json_t *x = json_object_get(m, reasoning_keys[i]);
        if (x && !json_is_null(x))
            r = x;
    }
    if (r)
        json_object_set(out, "thinking", r);
    json_object_foreach(m, k, v)
    {
        if (!json_is_null(v))
            json_object_set(out, k, v);
    }
    if (r)
        json_object_set(out, "reasoning_content", r);
    return out;
}

json_t *chat_template_vars(const struct chat_template *t, json_t *messages, json_t *tools,
                           int add_generation_prompt, json_t *kwargs, char *err, size_t errlen)
{
    if (!json_is_array(messages)) {
        snprintf(err, errlen, "messages must be an array");
        return NULL;
    }
    json_t *vars = json_object(), *msgs = json_array(), *m;
    size_t i;
    json_array_foreach(messages, i, m)
    {
        if (!json_is_object(m)) {
            snprintf(err, errlen, "messages[%zu] must be an object", i);
            json_decref(msgs);
            json_decref(vars);
            return NULL;
        }
        json_array_append_new(msgs, prepare_message(m));
    }
    json_object_set_new(vars, "messages", msgs);
    json_object_set_new(vars, "tools", tools ? json_incref(tools) : json_null());
    json_object_set_new(vars, "documents", json_null());
    json_object_set_new(vars, "add_generation_prompt", json_boolean(add_generation_prompt));
    json_object_update(vars, t->special);
    const char *k;
    json_t *v;
    json_object_foreach(kwargs, k, v)
    {
        if (strcmp(k, "messages") && strcmp(k, "tools") && strcmp(k, "documents") &&
            strcmp(k, "add_generation_prompt"))
            json_object_set(vars, k, v);
    }
    return vars;
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
