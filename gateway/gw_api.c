/*
 * gw_api.c -- route table and the locally answered endpoints. The model list
 * is the union of models, aliases and routes with llmux's extra fields (kind,
 * task, state, backends healthy/total); /health is 200 only while every model
 * has a healthy backend. Everything here answers synchronously.
 */
#include "gw_api.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "config.h"
#include "gw.h"
#include "gw_metrics.h"
#include "gw_proxy.h"
#include "gw_router.h"
#include "gw_supervisor.h"
#include "gw_router.h"
#include "gw_supervisor.h"
#include "gw_server.h"
#include "util.h"

static const char *const proxied_paths[] = {
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings",
    "/v1/rerank", "/rerank", "/v2/rerank", "/v1/score", "/score",
    "/v1/audio/transcriptions", "/tokenize", "/detokenize", "/pooling", "/invocations",
};

static const char *const local_paths[] = {
    "/v1/models", "/health", "/version", "/metrics",
};

int gw_api_is_proxied_path(const char *path)
{
    for (size_t i = 0; i < ARRAY_SIZE(proxied_paths); i++)
        if (strcmp(path, proxied_paths[i]) == 0)
            return 1;
    return 0;
}

const char *gw_api_route_label(const char *path)
{
    if (path == NULL)
        return "other";
    size_t len = strcspn(path, "?");
    for (size_t i = 0; i < ARRAY_SIZE(proxied_paths); i++)
        if (strlen(proxied_paths[i]) == len && strncmp(path, proxied_paths[i], len) == 0)
            return proxied_paths[i];
    for (size_t i = 0; i < ARRAY_SIZE(local_paths); i++)
        if (strlen(local_paths[i]) == len && strncmp(path, local_paths[i], len) == 0)
            return local_paths[i];
    if (len > 11 && strncmp(path, "/v1/models/", 11) == 0)
        return "/v1/models/{model}";
    return "other";
}

static const char *model_state(const struct gw_model *m)
{
    size_t up = gw_model_healthy(m);
    if (up == m->n_backends)
        return "ready";
    return up > 0 ? "degraded" : "down";
}

static json_t *llmux_fields(struct gw *gw, const struct gw_model *m, const char *kind)
{
    json_t *o = json_object();
    json_t *sp = m->spawned ? gw_sup_model_json(gw->sup, gw->conf, m->name) : NULL;
    json_object_set_new(o, "kind", json_string(kind));
    json_object_set_new(o, "task", json_string(gw_task_name(m->task)));
    if (sp != NULL) {
        json_object_set(o, "state", json_object_get(sp, "state"));
        json_object_set(o, "replicas", json_object_get(sp, "replicas"));
        json_decref(sp);
    } else {
        json_object_set_new(o, "state", json_string(model_state(m)));
    }
    json_t *b = json_object();
    json_object_set_new(b, "healthy", json_integer((json_int_t)gw_model_healthy(m)));
    json_object_set_new(b, "total", json_integer((json_int_t)m->n_backends));
    json_object_set_new(o, "backends", b);
    return o;
}

static json_t *model_entry(const char *id, int64_t created, json_t *llmux)
{
    json_t *e = json_object();
    json_object_set_new(e, "id", json_string(id));
    json_object_set_new(e, "object", json_string("model"));
    json_object_set_new(e, "created", json_integer(created));
    json_object_set_new(e, "owned_by", json_string("llmux"));
    json_object_set_new(e, "llmux", llmux);
    return e;
}

static json_t *route_entry(const struct gw_route *rt, int64_t created)
{
    json_t *l = json_object();
    size_t healthy = 0, total = 0;
    int any_up = 0;
    json_t *members = json_array();
    for (size_t i = 0; i < rt->n_members; i++) {
        const struct gw_route_member *mb = &rt->members[i];
        json_t *o = json_object();
        json_object_set_new(o, "model", json_string(mb->model->name));
        json_object_set_new(o, "weight", json_integer(mb->weight));
        json_array_append_new(members, o);
        healthy += gw_model_healthy(mb->model);
        total += mb->model->n_backends;
        if (mb->weight > 0 && gw_model_healthy(mb->model) > 0)
            any_up = 1;
    }
    json_object_set_new(l, "kind", json_string("route"));
    json_object_set_new(l, "task", json_string(rt->n_members ? gw_task_name(rt->members[0].model->task) : "chat"));
    json_object_set_new(l, "state", json_string(healthy == total ? "ready" : any_up ? "degraded" : "down"));
    json_t *b = json_object();
    json_object_set_new(b, "healthy", json_integer((json_int_t)healthy));
    json_object_set_new(b, "total", json_integer((json_int_t)total));
    json_object_set_new(l, "backends", b);
    json_object_set_new(l, "members", members);
    if (rt->sticky != GW_STICKY_NONE)
        json_object_set_new(l, "sticky", json_string(rt->sticky_key));
    if (rt->fallback)
        json_object_set_new(l, "fallback", json_string(rt->fallback->name));
    return model_entry(rt->name, created, l);
}

/* Entry for any name (model, alias or route), or NULL. New reference. */
static json_t *entry_for(struct gw *gw, struct gw_router *r, const char *name)
{
    for (size_t i = 0; i < r->n_models; i++) {
        struct gw_model *m = r->models[i];
        if (strcmp(m->name, name) == 0)
            return model_entry(m->name, m->created, llmux_fields(gw, m, "model"));
        for (size_t a = 0; a < m->n_aliases; a++) {
            if (strcmp(m->aliases[a], name) == 0) {
                json_t *l = llmux_fields(gw, m, "alias");
                json_object_set_new(l, "alias_of", json_string(m->name));
                return model_entry(m->aliases[a], m->created, l);
            }
        }
    }
    struct gw_route *rt = gw_router_find_route(r, name);
    if (rt != NULL)
        return route_entry(rt, r->n_models ? r->models[0]->created : wall_time_s());
    return NULL;
}

static void respond_json(struct gw_client *c, int status, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    struct gw_req_summary sum = { .model = "", .backend = "-", .status = status,
                                  .ttfb_us = 0, .attempts = 0 };
    gw_client_respond(c, status, "application/json", s, strlen(s), NULL, &sum);
    free(s);
    json_decref(j);
}

static void api_models(struct gw_client *c)
{
    struct gw_router *r = c->gw->router;
    json_t *data = json_array();
    for (size_t i = 0; i < r->n_models; i++) {
        struct gw_model *m = r->models[i];
        json_array_append_new(data, entry_for(c->gw, r, m->name));
        for (size_t a = 0; a < m->n_aliases; a++)
            json_array_append_new(data, entry_for(c->gw, r, m->aliases[a]));
    }
    for (size_t i = 0; i < r->n_routes; i++)
        json_array_append_new(data, entry_for(c->gw, r, r->routes[i]->name));
    json_t *root = json_object();
    json_object_set_new(root, "object", json_string("list"));
    json_object_set_new(root, "data", data);
    respond_json(c, 200, root);
}

static void api_model_one(struct gw_client *c, const char *name)
{
    json_t *e = entry_for(c->gw, c->gw->router, name);
    if (e == NULL) {
        char *msg = xasprintf("The model `%s` does not exist.", name);
        gw_client_error(c, 404, msg, "model", NULL, "");
        free(msg);
        return;
    }
    respond_json(c, 200, e);
}

static void api_health(struct gw_client *c)
{
    struct gw_router *r = c->gw->router;
    json_t *models = json_object();
    int all = 1;
    for (size_t i = 0; i < r->n_models; i++) {
        struct gw_model *m = r->models[i];
        json_t *o = json_object();
        size_t up = gw_model_healthy(m);
        json_object_set_new(o, "state", json_string(model_state(m)));
        json_object_set_new(o, "healthy", json_integer((json_int_t)up));
        json_object_set_new(o, "total", json_integer((json_int_t)m->n_backends));
        json_object_set_new(models, m->name, o);
        if (up == 0)
            all = 0;
    }
    json_t *root = json_object();
    json_object_set_new(root, "status", json_string(all ? "ok" : "unhealthy"));
    json_object_set_new(root, "models", models);
    respond_json(c, all ? 200 : 503, root);
}

static void api_version(struct gw_client *c)
{
    json_t *root = json_object();
    json_object_set_new(root, "name", json_string(PACKAGE_NAME));
    json_object_set_new(root, "version", json_string(PACKAGE_VERSION));
    respond_json(c, 200, root);
}

static void api_metrics(struct gw_client *c)
{
    struct evbuffer *b = evbuffer_new();
    gw_metrics_render(c->gw->metrics, c->gw->router, b);
    size_t len = evbuffer_get_length(b);
    const char *text = (const char *)evbuffer_pullup(b, -1);
    struct gw_req_summary sum = { .model = "", .backend = "-", .status = 200,
                                  .ttfb_us = 0, .attempts = 0 };
    gw_client_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", text ? text : "", len,
                      NULL, &sum);
    evbuffer_free(b);
}

void gw_api_dispatch(struct gw_client *c)
{
    int method = c->parser.msg.method;
    const char *path = c->path;

    if (gw_api_is_proxied_path(path)) {
        if (method != HTTP_POST) {
            gw_client_error(c, 405, "method not allowed: use POST", NULL, "Allow: POST\r\n", "");
            return;
        }
        gw_proxy_start(c);
        return;
    }
    int is_get = method == HTTP_GET;
    const char *label = gw_api_route_label(path);
    int local = strcmp(label, "other") != 0;
    if (local && !is_get) {
        gw_client_error(c, 405, "method not allowed: use GET", NULL, "Allow: GET\r\n", "");
        return;
    }
    if (strcmp(path, "/v1/models") == 0)
        api_models(c);
    else if (str_starts_with(path, "/v1/models/") && path[11] != '\0')
        api_model_one(c, path + 11);
    else if (strcmp(path, "/health") == 0)
        api_health(c);
    else if (strcmp(path, "/version") == 0)
        api_version(c);
    else if (strcmp(path, "/metrics") == 0)
        api_metrics(c);
    else {
        char *msg = xasprintf("unknown path %s", path);
        gw_client_error(c, 404, msg, NULL, NULL, "");
        free(msg);
    }
}
