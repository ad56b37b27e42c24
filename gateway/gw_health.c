/*
 * gw_health.c -- active health checks (see gw_health.h): one short HTTP/1.1
 * exchange per check on a fresh connection (Connection: close), read to EOF,
 * bounded by the check timeout. Writes only the struct gw_bhealth it was given.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>

#include "gw_health.h"
#include "gw_router.h"
#include "log.h"
#include "util.h"

#define LOADING_POLL_MS 200
#define HC_MAX_BODY     (64 * 1024)

enum { STEP_HEALTH, STEP_LOAD };

struct gw_prober {
    struct event_base  *base;
    char               *name;
    char               *unix_path;      /* or host:port */
    char               *host;
    int                 port;
    struct gw_bhealth  *hs;
    struct gw_health_conf h;
    gw_prober_fn        cb;
    void               *arg;
    struct event       *timer;
    struct bufferevent *bev;            /* check in progress */
    int                 step;
};

static void prober_schedule(struct gw_prober *p, int64_t ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    evtimer_add(p->timer, &tv);
}

static void prober_close(struct gw_prober *p)
{
    if (p->bev) {
        bufferevent_free(p->bev);
        p->bev = NULL;
    }
}

static void prober_next(struct gw_prober *p)
{
    int64_t ms = p->hs->loading ? LOADING_POLL_MS : p->h.interval_ms;
    if (p->hs->loading && ms > p->h.interval_ms)
        ms = p->h.interval_ms;
    prober_schedule(p, ms);
}

static void prober_start(struct gw_prober *p, int step);

/* "HTTP/1.1 200 OK\r\n...\r\n\r\nbody" -> status, body */
static int parse_reply(struct evbuffer *in, const char **body, size_t *blen)
{
    size_t len = evbuffer_get_length(in);
    char *s = (char *)evbuffer_pullup(in, -1);
    int status = -1;
    if (s == NULL || len < 12 || strncmp(s, "HTTP/1.", 7) != 0)
        return -1;
    status = atoi(s + 9);
    char *end = NULL;
    for (size_t i = 0; i + 3 < len; i++)
        if (memcmp(s + i, "\r\n\r\n", 4) == 0) {
            end = s + i + 4;
            break;
        }
    *body = end ? end : "";
    *blen = end ? len - (size_t)(end - s) : 0;
    return status;
}

static void apply_load(struct gw_bhealth *hs, const char *body, size_t len)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return;
    }
    hs->waiting = json_integer_value(json_object_get(j, "waiting"));
    hs->running = json_integer_value(json_object_get(j, "running"));
    hs->kv_free = json_integer_value(json_object_get(j, "kv_blocks_free"));
    hs->kv_total = json_integer_value(json_object_get(j, "kv_blocks_total"));
    hs->has_load = 1;
    hs->done_since_load = 0;
    json_decref(j);
}

static void check_result(struct gw_prober *p, int ok)
{
    struct gw_bhealth *hs = p->hs;
    if (ok) {
        hs->fails = 0;
        if (hs->passes < 1000000)
            hs->passes++;
        if (!hs->up && hs->passes >= hs->passes_thr) {
            hs->up = 1;
            log_notice("backend %s passed %d health check(s), back in rotation", p->name,
                       hs->passes);
        }
    } else {
        gw_bhealth_report(hs, p->name, 0);
    }
    if (p->cb)
        p->cb(p->arg, ok);
}

static void prober_done(struct gw_prober *p, int status, const char *body, size_t blen)
{
    int step = p->step;
    prober_close(p);
    if (step == STEP_HEALTH) {
        int ok = status == 200;
        if (!ok && p->hs->loading) {
            /* not listening yet, or not ready (llmux-worker runs its
             * warm-up step before it listens, so a 503 is another
             * server): still loading, not a failure */
            prober_next(p);
            return;
        }
        check_result(p, ok);
        if (ok) {
            prober_start(p, STEP_LOAD);
            return;
        }
    } else if (step == STEP_LOAD) {
        if (status == 200)
            apply_load(p->hs, body, blen);
    }
    prober_next(p);
}

static void prober_read_cb(struct bufferevent *bev, void *arg)
{
    struct gw_prober *p = arg;
    if (evbuffer_get_length(bufferevent_get_input(bev)) > HC_MAX_BODY)
        prober_done(p, -1, NULL, 0);
}

static void prober_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct gw_prober *p = arg;
    if (what & BEV_EVENT_CONNECTED)
        return;
    if (what & BEV_EVENT_EOF) {
        const char *body = NULL;
        size_t blen = 0;
        struct evbuffer *in = bufferevent_get_input(bev);
        int status = parse_reply(in, &body, &blen);
        char *copy = blen ? xstrndup(body, blen) : NULL;
        prober_done(p, status, copy ? copy : "", blen);
        free(copy);
        return;
    }
    prober_done(p, -1, NULL, 0);
}

static void prober_start(struct gw_prober *p, int step)
{
    struct sockaddr_storage ss;
    socklen_t slen;
    memset(&ss, 0, sizeof(ss));
    if (p->unix_path) {
        struct sockaddr_un *su = (struct sockaddr_un *)&ss;
        su->sun_family = AF_UNIX;
        snprintf(su->sun_path, sizeof(su->sun_path), "%s", p->unix_path);
        slen = sizeof(*su);
    } else {
        char addr[300];
        int l = (int)sizeof(ss);
        snprintf(addr, sizeof(addr), strchr(p->host, ':') ? "[%s]:%d" : "%s:%d", p->host, p->port);
        if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &l) != 0) {
            prober_done(p, -1, NULL, 0);
            return;
        }
        slen = (socklen_t)l;
    }
    p->step = step;
    p->bev = bufferevent_socket_new(p->base, -1, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(p->bev, prober_read_cb, NULL, prober_event_cb, p);
    struct timeval tv = { .tv_sec = p->h.timeout_ms / 1000,
                          .tv_usec = (p->h.timeout_ms % 1000) * 1000 };
    bufferevent_set_timeouts(p->bev, &tv, &tv);
    struct evbuffer *out = bufferevent_get_output(p->bev);
    const char *path = step == STEP_LOAD ? "/load" : "/health";
    evbuffer_add_printf(out, "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                        path);
    bufferevent_enable(p->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(p->bev, (struct sockaddr *)&ss, (int)slen) != 0)
        prober_done(p, -1, NULL, 0);
}

static void prober_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_prober *p = arg;
    (void)fd;
    (void)what;
    if (p->bev == NULL)
        prober_start(p, STEP_HEALTH);
}

struct gw_prober *gw_prober_new(struct event_base *base, const char *url, const char *name,
                                struct gw_bhealth *hs, const struct gw_health_conf *h,
                                gw_prober_fn cb, void *arg)
{
    struct gw_prober *p = xcalloc(1, sizeof(*p));
    p->base = base;
    p->name = xstrdup(name);
    if (strncmp(url, "unix:", 5) == 0) {
        p->unix_path = xstrdup(url + 5);
    } else {
        const char *hp = strncmp(url, "http://", 7) == 0 ? url + 7 : url;
        const char *slash = strchr(hp, '/');
        size_t n = slash ? (size_t)(slash - hp) : strlen(hp);
        char *hostport = xstrndup(hp, n);
        char *colon = strrchr(hostport, ':');
        p->port = 80;
        if (colon && !strchr(colon, ']')) {
            p->port = atoi(colon + 1);
            *colon = '\0';
        }
        if (hostport[0] == '[') {
            size_t l = strlen(hostport);
            memmove(hostport, hostport + 1, l);
            if (l >= 2 && hostport[l - 2] == ']')
                hostport[l - 2] = '\0';
        }
        p->host = hostport;
    }
    p->hs = hs;
    p->h = *h;
    if (p->h.interval_ms <= 0)
        p->h.interval_ms = 5000;
    if (p->h.timeout_ms <= 0)
        p->h.timeout_ms = 2000;
    hs->checked = 1;
    hs->fails_thr = h->fails > 0 ? h->fails : 3;
    hs->passes_thr = h->passes > 0 ? h->passes : 2;
    p->cb = cb;
    p->arg = arg;
    p->timer = evtimer_new(base, prober_timer_cb, p);
    prober_schedule(p, hs->loading ? LOADING_POLL_MS : 0);
    return p;
}

void gw_prober_kick(struct gw_prober *p)
{
    if (p->bev == NULL)
        prober_schedule(p, 0);
}

void gw_prober_free(struct gw_prober *p)
{
    if (p == NULL)
        return;
    prober_close(p);
    event_free(p->timer);
    free(p->name);
    free(p->unix_path);
    free(p->host);
    free(p);
}

void gw_health_router_start(struct event_base *base, struct gw_router *r)
{
    for (size_t i = 0; i < r->n_models; i++) {
        struct gw_model *m = r->models[i];
        if (m->spawned || !m->health.set)
            continue;
        for (size_t j = 0; j < m->n_backends; j++) {
            struct gw_backend *b = m->backends[j];
            r->probers = xrealloc(r->probers, (r->n_probers + 1) * sizeof(*r->probers));
            r->probers[r->n_probers++] = gw_prober_new(base, b->url, b->name, b->hs, &m->health,
                                                       NULL, NULL);
        }
    }
}

void gw_health_router_stop(struct gw_router *r)
{
    for (size_t i = 0; i < r->n_probers; i++)
        gw_prober_free(r->probers[i]);
    free(r->probers);
    r->probers = NULL;
    r->n_probers = 0;
}
