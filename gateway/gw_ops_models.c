/*
 * gw_ops_models.c -- the supervisor half of gw_ops.h: reload, hot load and
 * unload (kept as an overlay on the configuration file, so a later reload
 * keeps them), replica drain/restart, and the models/backends listings. Runs
 * on the event loop; changes go through gw_reload_apply so that a refused
 * change leaves everything as it was.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "gw_ops.h"
#include "gw_router.h"
#include "gw_supervisor.h"
#include "util.h"

int gw_op_reload(struct gw *gw, char *err, size_t errlen)
{
    return gw_reload_apply(gw, err, errlen);
}

static int name_removed(struct gw *gw, const char *name)
{
    for (size_t i = 0; i < gw->n_removed; i++)
        if (strcmp(gw->removed[i], name) == 0)
            return (int)i;
    return -1;
}

static int word_ok(const char *s)
{
    for (; *s; s++)
        if (*s == ';' || *s == '{' || *s == '}' || *s == '"' || *s == '\'' || *s == '#' ||
            *s == '\n' || *s == '\\')
            return 0;
    return 1;
}

/* <extra> without the block of model <name> (blocks are ours: "model NAME {"
 * at a line start, no nested braces, "}\n" at the end), as a new string, or
 * NULL when it has none. */
static char *extra_cut(const char *extra, const char *name)
{
    if (extra == NULL)
        return NULL;
    char *head = xasprintf("model %s {\n", name);
    size_t hl = strlen(head);
    const char *p = extra, *at = NULL;
    while (p != NULL && *p) {
        if (strncmp(p, head, hl) == 0) {
            at = p;
            break;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    free(head);
    if (at == NULL)
        return NULL;
    const char *end = strstr(at, "}\n");
    end = end ? end + 2 : at + strlen(at);
    return xasprintf("%.*s%s", (int)(at - extra), extra, end);
}

int gw_op_model_load(struct gw *gw, const char *name, const char *path, int n_kv,
                     char *const *kv, char *err, size_t errlen)
{
    if (gw_router_find_model(gw->router, name) != NULL ||
        (gw->pending_router && gw_router_find_model(gw->pending_router, name))) {
        snprintf(err, errlen, "model \"%s\" exists", name);
        return -1;
    }
    if (!word_ok(name) || !word_ok(path)) {
        snprintf(err, errlen, "invalid character in the name or path");
        return -1;
    }
    char *block = xasprintf("model %s {\n    path \"%s\";\n", name, path);
    for (int i = 0; i < n_kv; i++) {
        const char *eq = strchr(kv[i], '=');
        if (eq == NULL || eq == kv[i] || !word_ok(kv[i])) {
            snprintf(err, errlen, "expected key=value, got \"%s\"", kv[i]);
            free(block);
            return -1;
        }
        /* gpus=0|1 -> gpus 0|1; env=A=1 -> env "A=1"; health_check=interval=1s,fails=2 */
        char *val = xstrdup(eq + 1);
        if (strncmp(kv[i], "health_check=", 13) == 0)
            for (char *c = val; *c; c++)
                if (*c == ',')
                    *c = ' ';
        char *n = xasprintf("%s    %.*s %s;\n", block, (int)(eq - kv[i]), kv[i], val);
        free(val);
        free(block);
        block = n;
    }
    char *n = xasprintf("%s%s}\n", gw->extra_models ? gw->extra_models : "", block);
    free(block);
    char *old_extra = gw->extra_models;
    int rm = name_removed(gw, name);
    char *old_rm = NULL;
    gw->extra_models = n;
    if (rm >= 0) {      /* loading a name unloaded before */
        old_rm = gw->removed[rm];
        gw->removed[rm] = gw->removed[--gw->n_removed];
    }
    if (gw_reload_apply(gw, err, errlen) == -1) {
        free(gw->extra_models);
        gw->extra_models = old_extra;
        if (old_rm)
            gw->removed[gw->n_removed++] = old_rm;
        return -1;
    }
    free(old_extra);
    free(old_rm);
    return 0;
}

int gw_op_model_unload(struct gw *gw, const char *name, char *err, size_t errlen)
{
    if (gw_router_find_model(gw->router, name) == NULL) {
        snprintf(err, errlen, "no model \"%s\"", name);
        return -1;
    }
    char *cut = extra_cut(gw->extra_models, name);
    if (cut != NULL) {          /* a hot-loaded model: forget its block */
        char *old_extra = gw->extra_models;
        gw->extra_models = cut;
        if (gw_reload_apply(gw, err, errlen) == -1) {
            gw->extra_models = old_extra;
            free(cut);
            return -1;
        }
        free(old_extra);
        return 0;
    }
    gw->removed = xrealloc(gw->removed, (gw->n_removed + 1) * sizeof(char *));
    gw->removed[gw->n_removed++] = xstrdup(name);
    if (gw_reload_apply(gw, err, errlen) == -1) {
        free(gw->removed[--gw->n_removed]);
        return -1;
    }
    return 0;
}

int gw_op_replica_drain(struct gw *gw, const char *model, int replica, int drain, char *err,
                        size_t errlen)
{
    struct gw_model *m = gw_router_find_model(gw->router, model);
    if (m != NULL && !m->spawned) {     /* an external upstream */
        if (replica < 0 || (size_t)replica >= m->n_backends) {
            snprintf(err, errlen, "model \"%s\" has %zu backend(s)", model, m->n_backends);
            return -1;
        }
        m->backends[replica]->hs->draining = drain;
        return 0;
    }
    return gw_sup_replica_drain(gw->sup, gw->conf, model, replica, drain, err, errlen);
}

int gw_op_replica_restart(struct gw *gw, const char *model, int replica, char *err,
                          size_t errlen)
{
    return gw_sup_replica_restart(gw->sup, gw->conf, model, replica, err, errlen);
}

json_t *gw_op_models(struct gw *gw)
{
    struct gw_router *r = gw->router;
    json_t *arr = json_array();
    for (size_t i = 0; i < r->n_models; i++) {
        struct gw_model *m = r->models[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(m->name));
        json_object_set_new(o, "task", json_string(gw_task_name(m->task)));
        json_t *sp = m->spawned ? gw_sup_model_json(gw->sup, gw->conf, m->name) : NULL;
        if (sp != NULL) {
            json_object_update(o, sp);
            json_decref(sp);
        } else {
            size_t up = gw_model_healthy(m);
            json_object_set_new(o, "state", json_string(up == m->n_backends ? "ready"
                                                        : up ? "degraded" : "down"));
            json_object_set_new(o, "replicas", json_array());
        }
        json_object_set_new(o, "spawned", json_boolean(m->spawned));
        json_array_append_new(arr, o);
    }
    return arr;
}

json_t *gw_op_backends(struct gw *gw)
{
    struct gw_router *r = gw->router;
    json_t *arr = json_array();
    for (size_t i = 0; i < r->n_models; i++) {
        struct gw_model *m = r->models[i];
        for (size_t j = 0; j < m->n_backends; j++) {
            struct gw_backend *b = m->backends[j];
            const struct gw_bhealth *h = b->hs;
            json_t *o = json_object();
            json_object_set_new(o, "name", json_string(b->name));
            json_object_set_new(o, "address", json_string(b->url));
            const char *health = h->draining ? "draining"
                                 : (h->loading || !h->up || b->state != GW_BACKEND_UP) ? "down"
                                 : "up";
            json_object_set_new(o, "health", json_string(health));
            json_object_set_new(o, "fails", json_integer(h->checked ? h->fails
                                                         : b->consecutive_fails));
            json_object_set_new(o, "in_flight", json_integer(b->in_flight));
            json_object_set_new(o, "requests", json_integer((json_int_t)b->requests));
            if (h->has_load) {
                json_t *l = json_object();
                json_object_set_new(l, "running", json_integer(h->running));
                json_object_set_new(l, "waiting", json_integer(h->waiting));
                json_object_set_new(l, "kv_blocks_free", json_integer(h->kv_free));
                json_object_set_new(l, "kv_blocks_total", json_integer(h->kv_total));
                json_object_set_new(o, "load", l);
            } else {
                json_object_set_new(o, "load", json_null());
            }
            json_array_append_new(arr, o);
        }
    }
    return arr;
}
