/*
 * gw_upstream.c -- backend connections and their keep-alive pools. The
 * address of a TCP backend is resolved once (getaddrinfo, at first use) and
 * cached in the pool; unix backends connect to their path. An idle connection
 * that becomes readable is closed: a backend may not speak unasked, and EOF
 * means it went away.
 */
#include "gw_upstream.h"
#include "gw_health.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "gw_router.h"
#include "log.h"
#include "util.h"

struct gw_pool {
    struct gw_upconn      **idle;
    size_t                  n_idle, cap_idle;
    struct sockaddr_storage addr;
    socklen_t               addrlen;
    int                     resolved;
};

static struct gw_pool *pool_of(struct gw_backend *b)
{
    if (b->pool == NULL)
        b->pool = xcalloc(1, sizeof(struct gw_pool));
    return b->pool;
}

static int resolve(struct gw_backend *b, struct gw_pool *p, char *err)
{
    if (p->resolved)
        return 0;
    memset(&p->addr, 0, sizeof(p->addr));
    if (b->is_unix) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&p->addr;
        if (strlen(b->unix_path) >= sizeof(sun->sun_path)) {
            snprintf(err, 256, "unix socket path too long: %s", b->unix_path);
            return -1;
        }
        sun->sun_family = AF_UNIX;
        strcpy(sun->sun_path, b->unix_path);
        p->addrlen = sizeof(*sun);
    } else {
        struct addrinfo hints, *res = NULL;
        char port[16];
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        snprintf(port, sizeof(port), "%d", b->port);
        int rc = getaddrinfo(b->host, port, &hints, &res);
        if (rc != 0 || res == NULL) {
            snprintf(err, 256, "cannot resolve \"%s\": %s", b->host, gai_strerror(rc));
            return -1;
        }
        memcpy(&p->addr, res->ai_addr, res->ai_addrlen);
        p->addrlen = res->ai_addrlen;
        freeaddrinfo(res);
    }
    p->resolved = 1;
    return 0;
}

static void pool_remove(struct gw_pool *p, struct gw_upconn *c)
{
    for (size_t i = 0; i < p->n_idle; i++) {
        if (p->idle[i] == c) {
            p->idle[i] = p->idle[--p->n_idle];
            return;
        }
    }
}

static void conn_free(struct gw_upconn *c)
{
    if (c->bev != NULL)
        bufferevent_free(c->bev);
    free(c);
}

/* An idle connection spoke or closed or timed out: drop it. */
static void idle_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct gw_upconn *c = arg;
    pool_remove(pool_of(c->backend), c);
    conn_free(c);
}

static void idle_read_cb(struct bufferevent *bev, void *arg)
{
    idle_event_cb(bev, BEV_EVENT_READING, arg);
}

struct gw_upconn *gw_upstream_get(struct event_base *base, struct gw_backend *b,
                                  int64_t connect_timeout_ms, char *err)
{
    struct gw_pool *p = pool_of(b);
    if (p->n_idle > 0) {
        struct gw_upconn *c = p->idle[--p->n_idle];
        c->idle = 0;
        c->reused = 1;
        bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
        bufferevent_set_timeouts(c->bev, NULL, NULL);
        return c;
    }
    if (resolve(b, p, err) == -1)
        return NULL;
    int fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        snprintf(err, 256, "socket() failed: %s", strerror(errno));
        return NULL;
    }
    if (!b->is_unix) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    struct gw_upconn *c = xcalloc(1, sizeof(*c));
    c->backend = b;
    c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        close(fd);
        free(c);
        snprintf(err, 256, "bufferevent_socket_new failed");
        return NULL;
    }
    struct timeval tv = { .tv_sec = connect_timeout_ms / 1000,
                          .tv_usec = (connect_timeout_ms % 1000) * 1000 };
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&p->addr, (int)p->addrlen) == -1) {
        /* Immediate failure (e.g. ECONNREFUSED on a unix socket): the caller
         * treats it like a refused connection. */
        snprintf(err, 256, "connect() to %s failed: %s", b->url,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        conn_free(c);
        return NULL;
    }
    return c;
}

void gw_upstream_release(struct gw_upconn *c, int reusable, int max_idle)
{
    struct gw_pool *p = pool_of(c->backend);
    if (!reusable || max_idle <= 0 || (int)p->n_idle >= max_idle) {
        conn_free(c);
        return;
    }
    c->idle = 1;
    xgrow((void **)&p->idle, &p->cap_idle, p->n_idle + 1, sizeof(*p->idle));
    p->idle[p->n_idle++] = c;
    struct timeval tv = { .tv_sec = GW_UPSTREAM_IDLE_TIMEOUT_MS / 1000, .tv_usec = 0 };
    bufferevent_set_timeouts(c->bev, &tv, NULL);
    bufferevent_setcb(c->bev, idle_read_cb, NULL, idle_event_cb, c);
    bufferevent_enable(c->bev, EV_READ);
}

void gw_upstream_close(struct gw_upconn *c)
{
    if (c == NULL)
        return;
    if (c->idle)
        pool_remove(pool_of(c->backend), c);
    conn_free(c);
}

void gw_upstream_pool_free(struct gw_backend *b)
{
    struct gw_pool *p = b->pool;
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n_idle; i++)
        conn_free(p->idle[i]);
    free(p->idle);
    free(p);
    b->pool = NULL;
}

void gw_upstream_router_free(struct gw_router *r)
{
    if (r == NULL)
        return;
    gw_health_router_stop(r);
    for (size_t i = 0; i < r->n_models; i++)
        for (size_t j = 0; j < r->models[i]->n_backends; j++)
            gw_upstream_pool_free(r->models[i]->backends[j]);
    gw_router_free(r);
}
