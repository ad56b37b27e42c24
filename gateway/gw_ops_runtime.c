/*
 * gw_ops_runtime.c -- the runtime half of gw_ops.h: split weights, status,
 * request statistics and the log level. Statistics are read back from the
 * metrics' own Prometheus rendering (gw_metrics keeps its series private), so
 * the admin socket and /metrics can never disagree. Runs on the event loop;
 * keeps no state of its own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "config.h"
#include "gw.h"
#include "gw_metrics.h"
#include "gw_ops.h"
#include "gw_router.h"
#include "log.h"
#include "util.h"

int gw_op_split_set(struct gw *gw, const char *route, const char *model, int weight,
                    char *err, size_t errlen)
{
    struct gw_router *r = gw->router;
    if (weight < 0 || weight > 1000000) {
        snprintf(err, errlen, "weight %d out of range (0 to 1000000)", weight);
        return -1;
    }
    struct gw_route *rt = gw_router_find_route(r, route);
    if (rt == NULL) {
        snprintf(err, errlen, "no route '%s'", route);
        return -1;
    }
    /* An alias names its model, as in a split directive. */
    struct gw_model *m = gw_router_find_model(r, model);
    if (m == NULL) {
        struct gw_resolved res;
        if (gw_router_find_route(r, model) == NULL &&
            gw_router_resolve(r, model, NULL, &res) == 0)
            m = res.model;
    }
    if (m == NULL) {
        snprintf(err, errlen, "no model '%s'", model);
        return -1;
    }
    size_t i = 0;
    while (i < rt->n_members && rt->members[i].model != m)
        i++;
    if (i == rt->n_members) {
        /* A model not yet in the route joins it (a canary arm). */
        rt->members = xrealloc(rt->members, (rt->n_members + 1) * sizeof(*rt->members));
        memset(&rt->members[i], 0, sizeof(rt->members[i]));
        rt->members[i].model = m;
        rt->n_members++;
    }
    int before = rt->members[i].weight;
    rt->members[i].weight = weight;
    /* Smooth round robin starts afresh, so the new ratio holds from the next pick. */
    for (size_t k = 0; k < rt->n_members; k++)
        rt->members[k].current = 0;
    log_notice("route \"%s\": weight of \"%s\" %d -> %d (until the next reload)", rt->name,
               m->name, before, weight);
    return 0;
}

int gw_op_log_level(struct gw *gw, const char *level, char *err, size_t errlen)
{
    int l = log_level_parse(level);
    if (l < 0) {
        snprintf(err, errlen, "unknown level '%s' (debug info notice warn error)", level);
        return -1;
    }
    log_set_level(l);
    log_notice("error log level set to %s", log_level_name(l));
    return 0;
}

/* ---- metrics read back ------------------------------------------------------------ */

/* One sample line of the exposition: name, up to 4 labels, value. */
struct sample {
    char   name[128];
    int    n_labels;
    char   keys[4][32];
    char   vals[4][256];
    double value;
};

/* Parse `name{k="v",...} value`. Label values are unescaped (\\, \", \n).
 * Returns 0, or -1 for comments and lines it does not understand. */
static int sample_parse(const char *line, struct sample *s)
{
    const char *p = line;
    size_t n = 0;
    memset(s, 0, sizeof(*s));
    if (*p == '#' || *p == '\0')
        return -1;
    while (*p && *p != '{' && *p != ' ' && n + 1 < sizeof(s->name))
        s->name[n++] = *p++;
    if (*p == '{') {
        p++;
        while (*p && *p != '}') {
            if (s->n_labels == 4)
                return -1;
            int k = s->n_labels++;
            n = 0;
            while (*p && *p != '=' && n + 1 < sizeof(s->keys[k]))
                s->keys[k][n++] = *p++;
            if (p[0] != '=' || p[1] != '"')
                return -1;
            p += 2;
            n = 0;
            while (*p && *p != '"') {
                char ch = *p++;
                if (ch == '\\' && *p) {
                    ch = *p++;
                    if (ch == 'n')
                        ch = '\n';
                }
                if (n + 1 < sizeof(s->vals[k]))
                    s->vals[k][n++] = ch;
            }
            if (*p != '"')
                return -1;
            p++;
            if (*p == ',')
                p++;
        }
        if (*p != '}')
            return -1;
        p++;
    }
    if (*p != ' ')
        return -1;
    char *end;
    s->value = strtod(p + 1, &end);
    return end == p + 1 ? -1 : 0;
}

static const char *label(const struct sample *s, const char *key)
{
    for (int i = 0; i < s->n_labels; i++)
        if (strcmp(s->keys[i], key) == 0)
            return s->vals[i];
    return "";
}

static void add_int(json_t *obj, const char *key, double v)
{
    json_t *cur = json_object_get(obj, key);
    json_int_t base = cur ? json_integer_value(cur) : 0;
    json_object_set_new(obj, key, json_integer(base + (json_int_t)v));
}

static json_t *child(json_t *obj, const char *key)
{
    json_t *c = json_object_get(obj, key);
    if (c == NULL) {
        c = json_object();
        json_object_set_new(obj, key, c);
    }
    return c;
}

/* Calls <fn> for every sample of the current metrics. */
static void metrics_foreach(struct gw *gw, void (*fn)(const struct sample *s, void *arg),
                            void *arg)
{
    struct evbuffer *buf = evbuffer_new();
    struct sample *s = xmalloc(sizeof(*s));
    char *line;
    size_t n;
    gw_metrics_render(gw->metrics, gw->router, buf);
    while ((line = evbuffer_readln(buf, &n, EVBUFFER_EOL_LF)) != NULL) {
        if (sample_parse(line, s) == 0)
            fn(s, arg);
        free(line);
    }
    free(s);
    evbuffer_free(buf);
}

struct status_acc {
    double in_flight, requests, connections_total;
};

static void status_sample(const struct sample *s, void *arg)
{
    struct status_acc *a = arg;
    if (strcmp(s->name, "llmux_requests_in_flight") == 0)
        a->in_flight = s->value;
    else if (strcmp(s->name, "llmux_requests_total") == 0)
        a->requests += s->value;
    else if (strcmp(s->name, "llmux_connections_total") == 0)
        a->connections_total = s->value;
}

json_t *gw_op_status(struct gw *gw)
{
    struct status_acc a = { 0 };
    metrics_foreach(gw, status_sample, &a);
    int64_t now = wall_time_s();
    size_t backends = 0, up = 0;
    for (size_t i = 0; i < gw->router->n_models; i++) {
        backends += gw->router->models[i]->n_backends;
        up += gw_model_healthy(gw->router->models[i]);
    }
    return json_pack("{s:s, s:i, s:I, s:I, s:s, s:s, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
                     " s:b}",
                     "version", PACKAGE_VERSION,
                     "pid", (int)getpid(),
                     "uptime_s", (json_int_t)(now - gw->start_time),
                     "started", (json_int_t)gw->start_time,
                     "conf", gw->conf_path ? gw->conf_path : "-",
                     "log_level", log_level_name(log_current_level),
                     "connections", gw->n_clients,
                     "connections_total", (json_int_t)a.connections_total,
                     "requests_in_flight", (json_int_t)a.in_flight,
                     "requests_total", (json_int_t)a.requests,
                     "models", (json_int_t)gw->router->n_models,
                     "routes", (json_int_t)gw->router->n_routes,
                     "backends", (json_int_t)backends,
                     "backends_up", (json_int_t)up,
                     "shutting_down", gw->shutting_down);
}

struct stats_acc {
    json_t *root, *models, *status, *backends;
};

/* "200" -> "2xx" */
static void status_class(const char *status, char out[4])
{
    out[0] = status[0] ? status[0] : '?';
    out[1] = 'x';
    out[2] = 'x';
    out[3] = '\0';
}

/* The row of <model> in by_model, its columns in a fixed order. */
static json_t *model_row(struct stats_acc *a, const char *model)
{
    static const char *const cols[] = { "requests", "2xx", "3xx", "4xx", "5xx", "bytes_in",
                                        "bytes_out", "failovers" };
    json_t *m = json_object_get(a->models, model);
    if (m == NULL) {
        m = json_object();
        for (size_t i = 0; i < ARRAY_SIZE(cols); i++)
            json_object_set_new(m, cols[i], json_integer(0));
        json_object_set_new(a->models, model, m);
    }
    return m;
}

static void stats_sample(const struct sample *s, void *arg)
{
    struct stats_acc *a = arg;
    const char *model = label(s, "model");
    /* "": requests that named no known model, and local routes (/health...) */
    const char *mkey = model[0] ? model : "(no model)";
    char cls[4];
    if (strcmp(s->name, "llmux_requests_total") == 0) {
        const char *st = label(s, "status");
        json_t *m = model_row(a, mkey);
        status_class(st, cls);
        add_int(a->root, "requests", s->value);
        add_int(m, "requests", s->value);
        add_int(m, cls, s->value);
        add_int(a->status, st, s->value);
    } else if (strcmp(s->name, "llmux_request_bytes_total") == 0) {
        add_int(a->root, "bytes_in", s->value);
        add_int(model_row(a, mkey), "bytes_in", s->value);
    } else if (strcmp(s->name, "llmux_response_bytes_total") == 0) {
        add_int(a->root, "bytes_out", s->value);
        add_int(model_row(a, mkey), "bytes_out", s->value);
    } else if (strcmp(s->name, "llmux_upstream_retries_total") == 0) {
        add_int(a->root, "failovers", s->value);
        add_int(model_row(a, mkey), "failovers", s->value);
    } else if (strcmp(s->name, "llmux_upstream_connect_errors_total") == 0) {
        add_int(a->root, "connect_errors", s->value);
    } else if (strcmp(s->name, "llmux_requests_in_flight") == 0) {
        add_int(a->root, "in_flight", s->value);
    } else if (strcmp(s->name, "llmux_backend_requests_total") == 0) {
        add_int(child(a->backends, label(s, "backend")), "requests", s->value);
    } else if (strcmp(s->name, "llmux_backend_in_flight") == 0) {
        add_int(child(a->backends, label(s, "backend")), "in_flight", s->value);
    } else if (strcmp(s->name, "llmux_backend_connect_errors_total") == 0) {
        add_int(child(a->backends, label(s, "backend")), "connect_errors", s->value);
    } else if (strcmp(s->name, "llmux_backend_up") == 0) {
        json_object_set_new(child(a->backends, label(s, "backend")), "up",
                            json_boolean(s->value > 0));
    }
}

json_t *gw_op_stats(struct gw *gw)
{
    struct stats_acc a;
    a.root = json_object();
    /* fixed order of the totals, then the breakdowns */
    static const char *const totals[] = { "requests", "in_flight", "bytes_in", "bytes_out",
                                          "failovers", "connect_errors" };
    for (size_t i = 0; i < ARRAY_SIZE(totals); i++)
        json_object_set_new(a.root, totals[i], json_integer(0));
    a.models = json_object();
    a.status = json_object();
    a.backends = json_object();
    json_object_set_new(a.root, "by_status", a.status);
    json_object_set_new(a.root, "by_model", a.models);
    json_object_set_new(a.root, "by_backend", a.backends);
    metrics_foreach(gw, stats_sample, &a);
    /* statuses in numeric order (the metrics sort by model first) */
    json_t *sorted = json_object();
    for (int code = 100; code < 600; code++) {
        char k[8];
        snprintf(k, sizeof(k), "%d", code);
        json_t *v = json_object_get(a.status, k);
        if (v != NULL)
            json_object_set(sorted, k, v);
    }
    json_object_set_new(a.root, "by_status", sorted);
    return a.root;
}
