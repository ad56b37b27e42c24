/*
 * gw_upstream.h -- connections to backends: non-blocking connect over TCP or a
 * unix socket, and a per-backend pool of idle keep-alive connections (LIFO,
 * bounded, closed when the backend sends anything or closes while idle, or
 * after an idle timeout). While a connection is handed out, its bufferevent's
 * callbacks belong to the caller (gw_proxy.c).
 */
#ifndef LLMUX_GW_UPSTREAM_H
#define LLMUX_GW_UPSTREAM_H

#include <stdint.h>

struct event_base;
struct bufferevent;
struct gw_backend;

#define GW_UPSTREAM_IDLE_TIMEOUT_MS 60000

struct gw_upconn {
    struct gw_backend  *backend;    /* borrowed */
    struct bufferevent *bev;        /* owned; closes the socket when freed */
    int                 reused;     /* served a request before this one */
    int                 connected;
    int                 idle;       /* parked in the pool */
};

/* A connection to <b>: an idle pooled one when available (reused = 1), else a
 * new non-blocking connect with <connect_timeout_ms> as its read/write
 * timeout until the caller changes them. Returns a connection owned by the
 * caller (give it back with gw_upstream_release or gw_upstream_close), or NULL
 * when the socket could not even be created (message in <err>, 256 bytes). */
struct gw_upconn *gw_upstream_get(struct event_base *base, struct gw_backend *b,
                                  int64_t connect_timeout_ms, char *err);

/* Park <c> in its backend's pool (at most <max_idle>, 0 = never pool) when
 * <reusable>, else close it. */
void gw_upstream_release(struct gw_upconn *c, int reusable, int max_idle);

/* Close <c> now. */
void gw_upstream_close(struct gw_upconn *c);

/* Close every idle connection of <b> and free its pool. */
void gw_upstream_pool_free(struct gw_backend *b);

/* Close the pools of every backend of <r>, then free <r>. */
struct gw_router;
void gw_upstream_router_free(struct gw_router *r);

#endif
