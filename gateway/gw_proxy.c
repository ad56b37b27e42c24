/*
 * gw_proxy.c -- the proxied request. States: resolve -> attempt (pick a
 * backend, connect or reuse, send) -> wait for the response header block ->
 * relay the body -> finish. Failover happens only before any response byte
 * reached the client: on a refused/failed connect or a 502/503 answer the
 * next backend of the model is tried, then the route's fallback, at most
 * max_attempts in all. A connection that the backend closes after taking the
 * request is not retried (the request may have run): it is a 502. Once the
 * response started, an upstream failure ends an SSE stream with an error
 * event and [DONE] when the framing allows it, else the client connection is
 * closed. The body is relayed as the raw bytes the backend sent (chunk
 * framing included) unless the client speaks HTTP/1.0, when it is de-chunked.
 */
#include "gw_proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "gw.h"
#include "gw_body.h"
#include "gw_metrics.h"
#include "gw_router.h"
#include "gw_server.h"
#include "gw_upstream.h"
#include "log.h"
#include "oai_error.h"
#include "util.h"

#define CLIENT_OUT_HIGH  (1024 * 1024)  /* stop reading the backend above this */
#define CLIENT_OUT_LOW   (256 * 1024)   /* resume below this */

struct gw_request {
    struct gw_client   *client;
    struct gw          *gw;
    struct gw_router   *router;         /* the router this request started on (referenced) */
    char               *requested;      /* "model" as the client sent it */
    struct gw_model    *model;          /* model of the current attempt */
    struct gw_route    *route;
    int                 used_fallback;
    struct gw_backend  *backend;        /* backend of the current attempt */
    struct gw_upconn   *up;
    uint64_t            tried_mask;
    int                 attempts;
    int                 stale_retries;  /* pooled connections found closed */
    int                 got_bytes;      /* upstream sent something this attempt */
    struct http_parser  resp;
    int                 resp_headers;   /* response header block parsed */
    int                 headers_sent;   /* response header block sent to the client */
    int                 status;         /* status sent to the client */
    int                 raw;            /* relay raw bytes (else de-chunk via callback) */
    int                 sse;
    int                 upstream_paused;
    int64_t             ttfb_us;
    struct event       *timer;
    int                 last_status;    /* 502/503 of the last failed attempt, 0 if none */
    char                last_error[256];
    /* waiting for a loading replica (gw_proxy_wake) */
    int                 queued;
    struct gw_request  *qnext, *qprev;
    struct event       *qtimer;         /* queue_timeout */
};

#define PROXY_QUEUE_MAX 4096

/* Requests waiting for a spawned model's replica to become ready. */
static struct gw_request *queue_head;
static int queue_len;

static void queue_remove(struct gw_request *req)
{
    if (!req->queued)
        return;
    if (req->qprev)
        req->qprev->qnext = req->qnext;
    else
        queue_head = req->qnext;
    if (req->qnext)
        req->qnext->qprev = req->qprev;
    req->qnext = req->qprev = NULL;
    req->queued = 0;
    queue_len--;
}

static void attempt_next(struct gw_request *req);

/* Header blocks are assembled with memcpy into one buffer and added to the
 * evbuffer once: cheaper than a printf per header line on every request. */
struct hdrbuf {
    struct evbuffer *out;
    size_t len;
    char buf[4096];
};

static void hb_put(struct hdrbuf *h, const char *s, size_t n)
{
    if (h->len + n > sizeof(h->buf)) {
        evbuffer_add(h->out, h->buf, h->len);
        h->len = 0;
        if (n > sizeof(h->buf)) {
            evbuffer_add(h->out, s, n);
            return;
        }
    }
    memcpy(h->buf + h->len, s, n);
    h->len += n;
}

static void hb_str(struct hdrbuf *h, const char *s)
{
    hb_put(h, s, strlen(s));
}

static void hb_header(struct hdrbuf *h, const char *name, const char *value)
{
    hb_str(h, name);
    hb_put(h, ": ", 2);
    hb_str(h, value);
    hb_put(h, "\r\n", 2);
}

static void hb_done(struct hdrbuf *h)
{
    evbuffer_add(h->out, h->buf, h->len);
    h->len = 0;
}
static void up_read_cb(struct bufferevent *bev, void *arg);
static void up_write_cb(struct bufferevent *bev, void *arg);
static void up_event_cb(struct bufferevent *bev, short what, void *arg);

/* ---- lifecycle ------------------------------------------------------------ */

static void request_free(struct gw_request *req)
{
    queue_remove(req);
    if (req->qtimer)
        event_free(req->qtimer);
    if (req->timer)
        event_free(req->timer);
    if (req->router != NULL && --req->router->refs == 0 && req->router->retired)
        gw_upstream_router_free(req->router);
    http_parser_free(&req->resp);
    free(req->requested);
    free(req);
}

/* Give the upstream connection back (or close it) and drop the load count. */
static void detach_upstream(struct gw_request *req, int reusable)
{
    if (req->up == NULL)
        return;
    bufferevent_setcb(req->up->bev, NULL, NULL, NULL, NULL);
    req->backend->in_flight--;
    req->backend->hs->in_flight--;
    req->backend->hs->done_since_load++;
    gw_upstream_release(req->up, reusable, req->model->keepalive);
    req->up = NULL;
}

static struct gw_req_summary summary_of(struct gw_request *req, int status)
{
    struct gw_req_summary sum = {
        .model = req->model ? req->model->name : "",
        .backend = req->backend ? req->backend->name : "-",
        .status = status,
        .ttfb_us = req->headers_sent ? req->ttfb_us : -1,
        .attempts = req->attempts,
    };
    return sum;
}

/* The response was fully queued to the client. */
static void finish_request(struct gw_request *req)
{
    struct gw_client *c = req->client;
    struct gw_req_summary sum = summary_of(req, req->status);
    gw_bev_flush(c->bev);
    c->req = NULL;
    /* Account first: <sum> points into the router, which request_free()
     * releases when this was the last request on a retired one. */
    gw_client_finish(c, &sum);
    request_free(req);
}

/* Answer an error before any response byte was sent. */
static void fail_request(struct gw_request *req, int status, const char *msg, const char *extra)
{
    struct gw_client *c = req->client;
    char *body = oai_error_json(status, msg, NULL, NULL);
    struct gw_req_summary sum = summary_of(req, status);
    detach_upstream(req, 0);
    c->req = NULL;
    log_warn("%s %s model \"%s\": %d %s", c->addr, c->path, req->requested, status, msg);
    gw_client_respond(c, status, "application/json", body, strlen(body), extra, &sum);
    free(body);
    request_free(req);
}

/* Every candidate is used up. */
static void fail_no_backend(struct gw_request *req)
{
    char msg[512];
    int status = req->last_status ? req->last_status : 503;
    if (req->attempts == 0)
        snprintf(msg, sizeof(msg), "no healthy backend for model `%s`", req->model->name);
    else
        snprintf(msg, sizeof(msg), "no backend of model `%s` could serve the request after %d attempt(s): %s",
                 req->model->name, req->attempts, req->last_error);
    fail_request(req, status, msg, status == 503 ? "Retry-After: 1\r\n" : NULL);
}

/* ---- sending -------------------------------------------------------------- */

static void send_request(struct gw_request *req, struct gw_backend *b, struct gw_upconn *up)
{
    struct gw_client *c = req->client;
    struct http_msg *m = &c->parser.msg;
    struct evbuffer *out = bufferevent_get_output(up->bev);
    const char *xff = NULL;

    req->backend = b;
    req->up = up;
    req->got_bytes = 0;
    req->resp_headers = 0;
    b->in_flight++;
    b->hs->in_flight++;
    b->requests++;
    http_parser_reset(&req->resp);

    struct hdrbuf h;
    char num[32];
    h.out = out;
    h.len = 0;
    hb_put(&h, "POST ", 5);
    hb_str(&h, b->path_prefix);
    hb_str(&h, m->url);
    hb_str(&h, " HTTP/1.1\r\n");
    hb_header(&h, "Host", b->host_header);
    for (size_t i = 0; i < m->n_headers; i++) {
        const char *n = m->headers[i].name;
        if (http_header_is_hop_by_hop(n) || strcasecmp(n, "Host") == 0 ||
            strcasecmp(n, "Content-Length") == 0 || strcasecmp(n, "Expect") == 0 ||
            strcasecmp(n, "X-Llmux-Model") == 0)
            continue;
        if (strcasecmp(n, "X-Forwarded-For") == 0) {
            xff = m->headers[i].value;
            continue;
        }
        hb_header(&h, n, m->headers[i].value);
    }
    hb_str(&h, "X-Forwarded-For: ");
    if (xff != NULL) {
        hb_str(&h, xff);
        hb_put(&h, ", ", 2);
    }
    hb_str(&h, c->addr);
    /* the model this attempt resolved to (an alias, route or fallback in
     * the body): llmux-worker accepts the body's name when this is one of
     * its served names */
    hb_str(&h, "\r\nX-Llmux-Model: ");
    hb_str(&h, req->model->name);
    size_t len = evbuffer_get_length(c->body);
    snprintf(num, sizeof(num), "%zu", len);
    hb_str(&h, "\r\nContent-Length: ");
    hb_str(&h, num);
    hb_str(&h, "\r\nConnection: keep-alive\r\n\r\n");
    hb_done(&h);
    if (len > 0)
        evbuffer_add(out, evbuffer_pullup(c->body, -1), len);

    bufferevent_setcb(up->bev, up_read_cb, up_write_cb, up_event_cb, req);
    bufferevent_enable(up->bev, EV_READ);
    gw_bev_flush(up->bev);      /* a new connection is still connecting: it writes itself */
}

/* 1 when another attempt could be made after this one failed. */
static int can_retry(struct gw_request *req)
{
    if (req->attempts >= req->gw->conf->max_attempts)
        return 0;
    for (size_t i = 0; i < req->model->n_backends; i++)
        if (!(req->tried_mask & (1ULL << (i & 63))))
            return 1;
    return req->route && req->route->fallback && !req->used_fallback &&
           req->route->fallback != req->model;
}

static void queue_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_request *req = arg;
    char msg[300];
    (void)fd;
    (void)what;
    queue_remove(req);
    snprintf(msg, sizeof(msg), "model `%s` is loading; no replica became ready within %lld ms",
             req->model->name, (long long)req->model->queue_timeout_ms);
    fail_request(req, 503, msg, "Retry-After: 5\r\n");
}

/* No backend now, but a replica is loading: wait for gw_proxy_wake. 0 when queued. */
static int queue_add(struct gw_request *req)
{
    if (req->attempts > 0 || !gw_model_loading(req->model) || req->model->queue_timeout_ms <= 0 ||
        queue_len >= PROXY_QUEUE_MAX)
        return -1;
    if (req->qtimer == NULL) {
        int64_t ms = req->model->queue_timeout_ms;
        struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
        req->qtimer = evtimer_new(req->gw->base, queue_timeout_cb, req);
        evtimer_add(req->qtimer, &tv);
    }
    req->queued = 1;
    req->qprev = NULL;
    req->qnext = queue_head;
    if (queue_head)
        queue_head->qprev = req;
    queue_head = req;
    queue_len++;
    return 0;
}

void gw_proxy_wake(void)
{
    struct gw_request *list = queue_head;
    queue_head = NULL;
    queue_len = 0;
    while (list != NULL) {
        struct gw_request *req = list;
        list = req->qnext;
        req->queued = 0;
        req->qnext = req->qprev = NULL;
        attempt_next(req);
    }
}

static void attempt_next(struct gw_request *req)
{
    struct gw *gw = req->gw;
    char err[256];
    for (;;) {
        if (req->attempts >= gw->conf->max_attempts) {
            fail_no_backend(req);
            return;
        }
        int64_t now = now_ms();
        struct gw_backend *b = gw_model_pick_backend(req->model, req->tried_mask, now);
        if (b == NULL) {
            struct gw_model *fb = req->route ? req->route->fallback : NULL;
            if (fb != NULL && !req->used_fallback && fb != req->model) {
                log_info("model \"%s\": no backend left, falling back to \"%s\"",
                         req->model->name, fb->name);
                req->model = fb;
                req->tried_mask = 0;
                req->used_fallback = 1;
                continue;
            }
            if (queue_add(req) == 0)
                return;
            fail_no_backend(req);
            return;
        }
        req->tried_mask |= 1ULL << (b->index & 63);
        req->attempts++;
        if (req->attempts > 1)
            gw_metrics_retry(gw->metrics, req->model->name);
        struct gw_upconn *up = gw_upstream_get(gw->base, b, req->model->connect_timeout_ms, err);
        if (up == NULL) {
            b->connect_errors++;
            gw_metrics_connect_error(gw->metrics, b->name);
            gw_router_report(req->router, b, 0, now);
            snprintf(req->last_error, sizeof(req->last_error), "%.60s: %.190s", b->name, err);
            log_warn("%s", req->last_error);
            req->backend = b;
            continue;
        }
        send_request(req, b, up);
        return;
    }
}

/* ---- response ------------------------------------------------------------- */

static int resp_body_cb(void *arg, const char *at, size_t len)
{
    struct gw_request *req = arg;
    if (req->headers_sent && !req->raw) {
        evbuffer_add(bufferevent_get_output(req->client->bev), at, len);
        req->client->bytes_out += len;
    }
    return 0;
}

/* Header block of the backend's answer is parsed. Returns 1 when the request
 * moved on (retried elsewhere), 0 to relay this response. */
static int on_response_headers(struct gw_request *req)
{
    struct gw_client *c = req->client;
    struct http_msg *rm = &req->resp.msg;
    int status = rm->status;

    if (status == 502 || status == 503) {
        gw_router_report(req->router, req->backend, 0, now_ms());
        req->last_status = status;
        snprintf(req->last_error, sizeof(req->last_error), "%s answered %d", req->backend->name,
                 status);
        if (can_retry(req)) {
            log_warn("%s, trying another backend", req->last_error);
            detach_upstream(req, 0);
            attempt_next(req);
            return 1;
        }
    } else if (status >= 500) {
        /* relayed as is, but counts toward the active-check circuit */
        gw_bhealth_report(req->backend->hs, req->backend->name, 0);
    } else {
        gw_router_report(req->router, req->backend, 1, now_ms());
    }

    struct http_msg *cm = &c->parser.msg;
    int client11 = cm->http_major > 1 || (cm->http_major == 1 && cm->http_minor >= 1);
    int bodyless = status == 204 || status == 304 || (status >= 100 && status < 200);
    req->raw = 1;
    if (rm->chunked && !client11) {
        req->raw = 0;           /* HTTP/1.0 client: de-chunk, end by closing */
        c->keep_alive = 0;
    } else if (!rm->chunked && rm->content_length < 0 && !bodyless) {
        c->keep_alive = 0;      /* delimited by close: so is ours */
    }
    const char *ct = http_msg_header(rm, "Content-Type");
    req->sse = ct != NULL && strncasecmp(ct, "text/event-stream", 17) == 0;

    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t before = evbuffer_get_length(out);
    struct hdrbuf h;
    char line[64];
    h.out = out;
    h.len = 0;
    hb_put(&h, line, (size_t)snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status,
                                      http_status_reason(status)));
    for (size_t i = 0; i < rm->n_headers; i++) {
        const char *n = rm->headers[i].name;
        if (strcasecmp(n, "Transfer-Encoding") == 0) {
            if (req->raw)
                hb_header(&h, n, rm->headers[i].value);
            continue;
        }
        if (http_header_is_hop_by_hop(n) || str_ieq_n("x-llmux-model", n, 13) ||
            str_ieq_n("x-llmux-backend", n, 15))
            continue;
        hb_header(&h, n, rm->headers[i].value);
    }
    hb_header(&h, "x-llmux-model", req->model->name);
    hb_header(&h, "x-llmux-backend", req->backend->name);
    hb_header(&h, "Connection", gw_client_connection_header(c));
    hb_put(&h, "\r\n", 2);
    hb_done(&h);
    c->bytes_out += evbuffer_get_length(out) - before;
    req->headers_sent = 1;
    req->status = status;
    req->ttfb_us = now_us() - c->t_start_us;
    return 0;
}

/* The response finished cleanly. */
static void on_response_complete(struct gw_request *req)
{
    struct evbuffer *in = bufferevent_get_input(req->up->bev);
    int reusable = req->resp.msg.keep_alive && evbuffer_get_length(in) == 0;
    detach_upstream(req, reusable);
    finish_request(req);
}

/* The backend failed after the response started. */
static void abort_stream(struct gw_request *req, const char *why)
{
    struct gw_client *c = req->client;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    int chunked_ok = req->raw && req->resp.msg.chunked && req->resp.at_chunk_boundary;

    log_warn("%s %s: %s after the response started (backend %s)", c->addr, c->path, why,
             req->backend ? req->backend->name : "-");
    if (req->backend)
        gw_router_report(req->router, req->backend, 0, now_ms());
    detach_upstream(req, 0);
    if (req->sse && (chunked_ok || !req->raw)) {
        char *err = oai_error_json(502, why, NULL, NULL);
        char *event = xasprintf("data: %s\n\ndata: [DONE]\n\n", err);
        size_t before = evbuffer_get_length(out);
        if (chunked_ok)
            evbuffer_add_printf(out, "%zx\r\n%s\r\n0\r\n\r\n", strlen(event), event);
        else
            evbuffer_add(out, event, strlen(event));
        c->bytes_out += evbuffer_get_length(out) - before;
        free(event);
        free(err);
        if (!chunked_ok)
            c->keep_alive = 0;
    } else {
        c->keep_alive = 0;      /* the client sees a truncated body */
    }
    finish_request(req);
}

/* Feed buffered backend bytes through the parser and on to the client. */
static void process_upstream(struct gw_request *req)
{
    struct evbuffer *in = bufferevent_get_input(req->up->bev);
    struct evbuffer *out = bufferevent_get_output(req->client->bev);
    int zero_feed = 0;

    while (evbuffer_get_length(in) > 0 || zero_feed) {
        size_t len, used = 0;
        const char *data = gw_evbuffer_head(in, &len);
        zero_feed = 0;
        if (len > 0)
            req->got_bytes = 1;
        enum http_event ev = http_parser_feed(&req->resp, data, len, &used);
        if (!req->resp_headers) {
            evbuffer_drain(in, used);
            if (ev == HTTP_EV_ERROR) {
                char msg[300];
                gw_router_report(req->router, req->backend, 0, now_ms());
                snprintf(msg, sizeof(msg), "invalid response from backend %s: %s",
                         req->backend->name, http_parser_error(&req->resp));
                fail_request(req, 502, msg, NULL);
                return;
            }
            if (ev == HTTP_EV_HEADERS) {
                req->resp_headers = 1;
                if (on_response_headers(req))
                    return;
                zero_feed = 1;
            }
            continue;
        }
        if (req->raw) {
            evbuffer_remove_buffer(in, out, used);
            req->client->bytes_out += used;
        } else {
            evbuffer_drain(in, used);
        }
        if (ev == HTTP_EV_COMPLETE) {
            on_response_complete(req);
            return;
        }
        if (ev == HTTP_EV_ERROR) {
            abort_stream(req, "invalid response framing from the backend");
            return;
        }
        gw_bev_flush(req->client->bev);         /* relay each piece as it arrives */
        if (evbuffer_get_length(out) > CLIENT_OUT_HIGH) {
            bufferevent_disable(req->up->bev, EV_READ);
            bufferevent_setwatermark(req->client->bev, EV_WRITE, CLIENT_OUT_LOW, 0);
            req->upstream_paused = 1;
            return;
        }
    }
}

static void up_read_cb(struct bufferevent *bev, void *arg)
{
    process_upstream(arg);
}

static void up_write_cb(struct bufferevent *bev, void *arg)
{
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE);     /* request sent: direct writes again */
}

static void up_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct gw_request *req = arg;
    struct gw *gw = req->gw;
    struct gw_upconn *up = req->up;
    struct gw_backend *b = req->backend;

    if (what & BEV_EVENT_CONNECTED) {
        up->connected = 1;
        bufferevent_set_timeouts(bev, NULL, NULL);
        return;
    }
    if (!req->resp_headers) {
        int connect_failed = !up->connected && !up->reused;
        if (up->reused && !req->got_bytes && req->stale_retries < 2) {
            /* A pooled connection the backend had closed: not the backend's
             * fault, and the request never reached it. */
            req->stale_retries++;
            detach_upstream(req, 0);
            req->tried_mask &= ~(1ULL << (b->index & 63));
            req->attempts--;
            attempt_next(req);
            return;
        }
        if (connect_failed) {
            b->connect_errors++;
            gw_metrics_connect_error(gw->metrics, b->name);
            gw_router_report(req->router, b, 0, now_ms());
            snprintf(req->last_error, sizeof(req->last_error), "connect to %s (%s) %s", b->name,
                     b->url, (what & BEV_EVENT_TIMEOUT) ? "timed out" :
                     evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
            log_warn("%s", req->last_error);
            detach_upstream(req, 0);
            attempt_next(req);
            return;
        }
        char msg[300];
        gw_router_report(req->router, b, 0, now_ms());
        snprintf(msg, sizeof(msg), "backend %s closed the connection before sending a response",
                 b->name);
        fail_request(req, 502, msg, NULL);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        process_upstream(req);
        if (req->client->req != req)
            return;             /* completed or aborted while draining */
        if (http_parser_finish(&req->resp) == HTTP_EV_COMPLETE) {
            detach_upstream(req, 0);
            finish_request(req);
            return;
        }
    }
    abort_stream(req, "backend closed the connection mid-response");
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_request *req = arg;
    char msg[200];
    snprintf(msg, sizeof(msg), "backend %s of model `%s` timed out after %lld ms",
             req->backend ? req->backend->name : "-", req->model->name,
             (long long)req->model->timeout_ms);
    if (!req->headers_sent)
        fail_request(req, 504, msg, NULL);
    else
        abort_stream(req, msg);
}

/* ---- entry points ----------------------------------------------------------- */

static void not_found(struct gw_client *c, const char *name)
{
    char *sugg = gw_router_suggest(c->gw->router, name, 3);
    char *msg = sugg ? xasprintf("The model `%s` does not exist. Did you mean %s?", name, sugg)
                     : xasprintf("The model `%s` does not exist.", name);
    gw_client_error(c, 404, msg, "model", NULL, "");   /* unknown names stay out of metric labels */
    free(msg);
    free(sugg);
}

void gw_proxy_start(struct gw_client *c)
{
    struct gw *gw = c->gw;
    size_t len = evbuffer_get_length(c->body);
    const char *body = len ? (const char *)evbuffer_pullup(c->body, -1) : "";
    const char *ct = http_msg_header(&c->parser.msg, "Content-Type");
    int multipart = ct != NULL && strncasecmp(ct, "multipart/form-data", 19) == 0;
    struct gw_body_info info;
    char err[300];

    if (len == 0) {
        gw_client_error(c, 400, "request body is empty: expected a JSON object with a \"model\" field",
                        NULL, NULL, "");
        return;
    }
    int rc = multipart ? gw_body_inspect_multipart(body, len, ct, &info, err, sizeof(err))
                       : gw_body_inspect_json(body, len, &info, err, sizeof(err));
    if (rc == -1) {
        gw_client_error(c, 400, err, NULL, NULL, "");
        return;
    }
    if (info.model_bad_type) {
        gw_body_info_free(&info);
        gw_client_error(c, 400, "\"model\" must be a string", "model", NULL, "");
        return;
    }
    if (info.model == NULL || info.model[0] == '\0') {
        gw_body_info_free(&info);
        gw_client_error(c, 400, "you must provide a model parameter", "model", NULL, "");
        return;
    }

    char *sticky = NULL;
    struct gw_route *rt = gw_router_find_route(gw->router, info.model);
    if (rt != NULL && rt->sticky == GW_STICKY_HEADER) {
        sticky = xstrdup(http_msg_header(&c->parser.msg, rt->sticky_key));
    } else if (rt != NULL && rt->sticky == GW_STICKY_FIELD) {
        sticky = gw_body_field(&info, rt->sticky_key);
    }
    struct gw_resolved res;
    rc = gw_router_resolve(gw->router, info.model, sticky, &res);
    free(sticky);
    if (rc == -1) {
        not_found(c, info.model);
        gw_body_info_free(&info);
        return;
    }

    struct gw_request *req = xcalloc(1, sizeof(*req));
    req->client = c;
    req->gw = gw;
    req->router = gw->router;
    req->router->refs++;
    req->requested = info.model;
    info.model = NULL;
    gw_body_info_free(&info);
    req->model = res.model;
    req->route = res.route;
    req->ttfb_us = -1;
    http_parser_init(&req->resp, HTTP_RESPONSE, resp_body_cb, req);
    req->resp.max_header_bytes = 64 * 1024;
    c->req = req;

    req->timer = evtimer_new(gw->base, timer_cb, req);
    struct timeval tv = { .tv_sec = req->model->timeout_ms / 1000,
                          .tv_usec = (req->model->timeout_ms % 1000) * 1000 };
    evtimer_add(req->timer, &tv);
    attempt_next(req);
}

void gw_proxy_client_gone(struct gw_request *req)
{
    struct gw_client *c = req->client;
    struct gw_req_summary sum = summary_of(req, 499);
    detach_upstream(req, 0);    /* closing the connection cancels the backend's work */
    gw_client_account(c, &sum);
    c->req = NULL;
    request_free(req);
}

void gw_proxy_client_drained(struct gw_request *req)
{
    if (!req->upstream_paused || req->up == NULL)
        return;
    if (evbuffer_get_length(bufferevent_get_output(req->client->bev)) > CLIENT_OUT_LOW)
        return;
    req->upstream_paused = 0;
    bufferevent_setwatermark(req->client->bev, EV_WRITE, 0, 0);
    bufferevent_enable(req->up->bev, EV_READ);
    process_upstream(req);
}
