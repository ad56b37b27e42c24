/*
 * gw_server.c -- listeners and client connections. A connection reads one
 * request at a time: headers (client_header_timeout, header size limit), then
 * the body (client_body_timeout, client_max_body_size), then hands the
 * request to gw_api_dispatch() and stops parsing until the response is
 * finished. Bytes of pipelined requests stay in the input buffer. Writes are
 * bounded by send_timeout. The connection list lets shutdown close idle ones.
 */
#include "gw_server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "gw.h"
#include "gw_access_log.h"
#include "gw_api.h"
#include "gw_metrics.h"
#include "gw_proxy.h"
#include "log.h"
#include "netaddr.h"
#include "oai_error.h"
#include "util.h"

#define GW_MAX_HEADER_BYTES   (32 * 1024)
#define GW_INPUT_HIGH_WATER   (256 * 1024)
#define GW_LINGER_MS          2000      /* lingering close: how long unread input is drained */

static void client_read_cb(struct bufferevent *bev, void *arg);
static void client_write_cb(struct bufferevent *bev, void *arg);
static void client_event_cb(struct bufferevent *bev, short what, void *arg);
static void client_free(struct gw_client *c);
static int client_body_cb(void *arg, const char *at, size_t len);

static struct timeval tv_ms(int64_t ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    return tv;
}

static void client_set_read_timeout(struct gw_client *c, int64_t ms)
{
    if (ms == c->read_timeout_ms)
        return;         /* re-arming costs timer-heap work on every request */
    c->read_timeout_ms = ms;
    struct timeval rt = tv_ms(ms), wt = tv_ms(c->gw->conf->send_timeout_ms);
    bufferevent_set_timeouts(c->bev, ms > 0 ? &rt : NULL, &wt);
}

/* ---- listeners ------------------------------------------------------------ */

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct gw *gw = arg;
    if (gw->shutting_down) {
        evutil_closesocket(fd);
        return;
    }
    struct gw_client *c = xcalloc(1, sizeof(*c));
    c->gw = gw;
    if (sa->sa_family == AF_INET) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, c->addr, sizeof(c->addr));
    } else if (sa->sa_family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, c->addr, sizeof(c->addr));
    } else {
        snprintf(c->addr, sizeof(c->addr), "unix:");
    }
    c->bev = bufferevent_socket_new(gw->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        evutil_closesocket(fd);
        free(c);
        return;
    }
    c->body = evbuffer_new();
    http_parser_init(&c->parser, HTTP_REQUEST, client_body_cb, c);
    c->parser.max_header_bytes = GW_MAX_HEADER_BYTES;
    c->keep_alive = 1;
    c->read_timeout_ms = -1;
    c->next = gw->clients;
    if (gw->clients)
        gw->clients->prev = c;
    gw->clients = c;
    gw->n_clients++;
    gw_metrics_connection(gw->metrics, 1);
    bufferevent_setcb(c->bev, client_read_cb, client_write_cb, client_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, GW_INPUT_HIGH_WATER);
    client_set_read_timeout(c, gw->conf->client_header_timeout_ms);
    bufferevent_enable(c->bev, EV_READ);
    bufferevent_disable(c->bev, EV_WRITE);      /* on by default; see gw_bev_flush() */
    if (gw->conf->worker_connections > 0 && gw->n_clients >= gw->conf->worker_connections &&
        !gw->listeners_paused) {
        log_warn("%d worker_connections are not enough, pausing accept", gw->n_clients);
        for (size_t i = 0; i < gw->n_listeners; i++)
            evconnlistener_disable(gw->listeners[i]);
        gw->listeners_paused = 1;
    }
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    log_error("accept() failed: %s", evutil_socket_error_to_string(err));
}

int gw_server_listen(struct gw *gw)
{
    struct gw_conf *conf = gw->conf;
    gw->listeners = xcalloc(conf->n_listens, sizeof(*gw->listeners));
    gw->listen_unix_paths = xcalloc(conf->n_listens, sizeof(char *));
    for (size_t i = 0; i < conf->n_listens; i++) {
        const char *a = conf->listens[i].addr;
        struct net_addr na;
        char err[256];
        if (net_addr_parse(a, 0, &na, err, sizeof(err)) == -1) {
            log_error("listen %s (%s:%d)", err, conf->listens[i].pos.file,
                      conf->listens[i].pos.line);
            return -1;
        }
        gw->listeners[i] = net_listen(gw->base, &na, accept_cb, gw);
        if (gw->listeners[i] == NULL) {
            log_error("bind() to %s failed: %s", a, strerror(errno));
            return -1;
        }
        if (na.unix_path != NULL)
            gw->listen_unix_paths[i] = xstrdup(na.unix_path);
        evconnlistener_set_error_cb(gw->listeners[i], accept_error_cb);
        gw->n_listeners = i + 1;
        log_notice("listening on %s", a);
    }
    return 0;
}

static void listeners_free(struct gw *gw)
{
    for (size_t i = 0; i < gw->n_listeners; i++) {
        if (gw->listeners[i])
            evconnlistener_free(gw->listeners[i]);
        if (gw->listen_unix_paths[i]) {
            unlink(gw->listen_unix_paths[i]);
            free(gw->listen_unix_paths[i]);
        }
    }
    free(gw->listeners);
    free(gw->listen_unix_paths);
    gw->listeners = NULL;
    gw->listen_unix_paths = NULL;
    gw->n_listeners = 0;
}

void gw_server_stop_accepting(struct gw *gw)
{
    listeners_free(gw);
    struct gw_client *c = gw->clients, *next;
    for (; c != NULL; c = next) {
        next = c->next;
        if (c->state == GW_CLIENT_IDLE && !http_parser_in_message(&c->parser) &&
            evbuffer_get_length(bufferevent_get_input(c->bev)) == 0)
            gw_client_close(c, 1);
    }
}

void gw_server_free_all(struct gw *gw)
{
    while (gw->clients != NULL)
        client_free(gw->clients);
    listeners_free(gw);
}

/* ---- connections ---------------------------------------------------------- */

static void client_free(struct gw_client *c)
{
    struct gw *gw = c->gw;
    if (c->req != NULL)
        gw_proxy_client_gone(c->req);
    c->req = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        gw->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    gw->n_clients--;
    gw_metrics_connection(gw->metrics, -1);
    bufferevent_free(c->bev);
    if (c->resume_ev)
        event_free(c->resume_ev);
    evbuffer_free(c->body);
    http_parser_free(&c->parser);
    free(c->path);
    free(c);
    if (gw->listeners_paused && !gw->shutting_down &&
        gw->n_clients < gw->conf->worker_connections) {
        for (size_t i = 0; i < gw->n_listeners; i++)
            evconnlistener_enable(gw->listeners[i]);
        gw->listeners_paused = 0;
    }
    if (gw->shutting_down && gw->n_clients == 0)
        event_base_loopexit(gw->base, NULL);
}

/* All output is flushed: half-close and drain what the client still sends
 * (a body we refused, say) so that the kernel does not answer it with a
 * reset that would destroy our response in flight (nginx's lingering close). */
static void client_linger(struct gw_client *c)
{
    struct timeval tv = tv_ms(GW_LINGER_MS);
    c->state = GW_CLIENT_LINGERING;
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    evbuffer_drain(bufferevent_get_input(c->bev), evbuffer_get_length(bufferevent_get_input(c->bev)));
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    bufferevent_set_timeouts(c->bev, &tv, NULL);
    c->read_timeout_ms = -1;
    bufferevent_enable(c->bev, EV_READ);
}

void gw_client_close(struct gw_client *c, int now)
{
    if (now) {
        client_free(c);
        return;
    }
    /* Linger only when the client may still be sending: we answered before
     * its request was complete, or more of its bytes are waiting. */
    c->linger = c->state != GW_CLIENT_BUSY ||
                evbuffer_get_length(bufferevent_get_input(c->bev)) > 0;
    c->state = GW_CLIENT_CLOSING;
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        if (c->linger)
            client_linger(c);
        else
            client_free(c);
        return;
    }
    bufferevent_disable(c->bev, EV_READ);
}

const char *gw_evbuffer_head(struct evbuffer *in, size_t *len)
{
    struct evbuffer_iovec v;
    if (evbuffer_peek(in, -1, NULL, &v, 1) < 1) {
        *len = 0;
        return "";
    }
    *len = v.iov_len;
    return v.iov_base;
}

void gw_bev_flush(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    if (evbuffer_get_length(out) == 0 || (bufferevent_get_enabled(bev) & EV_WRITE))
        return;                 /* nothing to do, or the bufferevent is writing */
    /* A bufferevent freezes the start of its output buffer so that only its
     * writer drains it; that writer is off (EV_WRITE disabled), so we may. */
    evbuffer_unfreeze(out, 1);
    evbuffer_write(out, bufferevent_getfd(bev));
    evbuffer_freeze(out, 1);
    /* EAGAIN or a partial write: the rest goes when the socket is writable;
     * an error surfaces there as BEV_EVENT_ERROR. */
    if (evbuffer_get_length(out) > 0)
        bufferevent_enable(bev, EV_WRITE);
}

const char *gw_client_connection_header(struct gw_client *c)
{
    return c->keep_alive && !c->gw->shutting_down && c->gw->conf->keepalive_timeout_ms > 0 &&
           c->state == GW_CLIENT_BUSY ? "keep-alive" : "close";
}

static int client_body_cb(void *arg, const char *at, size_t len)
{
    struct gw_client *c = arg;
    int64_t limit = c->gw->conf->client_max_body_size;
    if (limit > 0 && (int64_t)(evbuffer_get_length(c->body) + len) > limit) {
        c->body_too_large = 1;
        return -1;
    }
    evbuffer_add(c->body, at, len);
    return 0;
}

static void request_too_large(struct gw_client *c)
{
    char msg[160];
    c->keep_alive = 0;          /* the rest of the body is not read */
    snprintf(msg, sizeof(msg), "request body is larger than client_max_body_size (%lld bytes)",
             (long long)c->gw->conf->client_max_body_size);
    gw_client_error(c, 413, msg, NULL, NULL, "");
}

/* Header block read: check what can be checked before the body arrives. */
static int on_request_headers(struct gw_client *c)
{
    struct http_msg *m = &c->parser.msg;
    int64_t limit = c->gw->conf->client_max_body_size;
    c->keep_alive = m->keep_alive;
    free(c->path);
    const char *q = strchr(m->url, '?');
    c->path = q ? xstrndup(m->url, (size_t)(q - m->url)) : xstrdup(m->url);
    if (limit > 0 && m->content_length > limit) {
        request_too_large(c);
        return -1;
    }
    if (m->expect_continue) {
        if (m->http_major == 1 && m->http_minor >= 1) {
            bufferevent_write(c->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            gw_bev_flush(c->bev);
        }
    }
    client_set_read_timeout(c, c->gw->conf->client_body_timeout_ms);
    return 0;
}

/* Parse what is buffered; dispatch at most one complete request. */
static void client_process_input(struct gw_client *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    int zero_feed = 0;
    while (c->state == GW_CLIENT_IDLE && (evbuffer_get_length(in) > 0 || zero_feed)) {
        size_t len, used = 0;
        const char *data = gw_evbuffer_head(in, &len);
        zero_feed = 0;
        if (!http_parser_in_message(&c->parser) && len > 0 && c->t_start_us == 0) {
            c->t_start_us = now_us();
            c->bytes_in = 0;
            c->bytes_out = 0;
            client_set_read_timeout(c, c->gw->conf->client_header_timeout_ms);
        }
        enum http_event ev = http_parser_feed(&c->parser, data, len, &used);
        evbuffer_drain(in, used);
        c->bytes_in += used;
        switch (ev) {
        case HTTP_EV_MORE:
            break;
        case HTTP_EV_HEADERS:
            if (on_request_headers(c) == -1)
                return;
            zero_feed = 1;
            break;
        case HTTP_EV_COMPLETE:
            c->state = GW_CLIENT_BUSY;
            c->n_requests++;
            client_set_read_timeout(c, 0);
            gw_metrics_in_flight(c->gw->metrics, 1);
            gw_api_dispatch(c);
            return;
        case HTTP_EV_ERROR:
            c->keep_alive = 0;
            if (c->body_too_large) {
                request_too_large(c);
            } else if (c->parser.too_large) {
                gw_client_error(c, 431, "request header fields too large", NULL, NULL, "");
            } else {
                char msg[256];
                snprintf(msg, sizeof(msg), "malformed HTTP request: %s", http_parser_error(&c->parser));
                if (c->path == NULL)
                    c->path = xstrdup("-");
                gw_client_error(c, 400, msg, NULL, NULL, "");
            }
            return;
        }
    }
}

static void client_read_cb(struct bufferevent *bev, void *arg)
{
    struct gw_client *c = arg;
    if (c->state == GW_CLIENT_IDLE)
        client_process_input(c);
    else if (c->state == GW_CLIENT_LINGERING)
        evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_client *c = arg;
    client_process_input(c);
}

static void client_write_cb(struct bufferevent *bev, void *arg)
{
    struct gw_client *c = arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE);     /* drained: back to direct writes */
    if (c->state == GW_CLIENT_CLOSING) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
            if (c->linger)
                client_linger(c);
            else
                client_free(c);
        }
        return;
    }
    if (c->state == GW_CLIENT_LINGERING)
        return;
    if (c->req != NULL)
        gw_proxy_client_drained(c->req);
}

static void client_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct gw_client *c = arg;
    if (c->state == GW_CLIENT_LINGERING) {
        client_free(c);
        return;
    }
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) &&
        c->state == GW_CLIENT_IDLE && http_parser_in_message(&c->parser) && c->parser.headers_done) {
        c->keep_alive = 0;
        gw_client_error(c, 408, "client body timeout", NULL, NULL, "");
        return;
    }
    if (c->state == GW_CLIENT_CLOSING && !(what & BEV_EVENT_ERROR) &&
        !((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_WRITING))) {
        bufferevent_disable(bev, EV_READ);
        return;     /* a half-closed client still reads our answer */
    }
    if ((what & BEV_EVENT_EOF) && c->state == GW_CLIENT_BUSY && c->req == NULL)
        return;     /* local answer in progress; finish will close */
    if (what & (BEV_EVENT_TIMEOUT | BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (c->req != NULL && (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
            log_info("client %s closed the connection while %s was in progress", c->addr,
                     c->path ? c->path : "a request");
        client_free(c);
    }
}

/* ---- responses ------------------------------------------------------------ */

void gw_client_respond(struct gw_client *c, int status, const char *content_type,
                       const char *body, size_t len, const char *extra_headers,
                       const struct gw_req_summary *sum)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t before = evbuffer_get_length(out);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "Connection: %s\r\n%s\r\n",
                        status, http_status_reason(status), content_type, len,
                        gw_client_connection_header(c), extra_headers ? extra_headers : "");
    evbuffer_add(out, body, len);
    c->bytes_out += evbuffer_get_length(out) - before;
    gw_bev_flush(c->bev);
    struct gw_req_summary local = *sum;
    if (local.ttfb_us <= 0)     /* answered here: the first byte goes out now */
        local.ttfb_us = now_us() - (c->t_start_us ? c->t_start_us : now_us());
    gw_client_finish(c, &local);
}

void gw_client_error(struct gw_client *c, int status, const char *message,
                     const char *param, const char *extra_headers, const char *model)
{
    char *body = oai_error_json(status, message, param, NULL);
    struct gw_req_summary sum = { .model = model ? model : "", .backend = "-",
                                  .status = status, .ttfb_us = -1, .attempts = 0 };
    if (status == 400 || status == 404 || status == 405 || status == 413 || status == 503)
        log_info("%s %s -> %d: %s", c->addr, c->path ? c->path : "-", status, message);
    gw_client_respond(c, status, "application/json", body, strlen(body), extra_headers, &sum);
    free(body);
}

void gw_client_account(struct gw_client *c, const struct gw_req_summary *sum)
{
    struct gw *gw = c->gw;
    int64_t now = now_us();
    int64_t start = c->t_start_us ? c->t_start_us : now;
    double latency = (double)(now - start) / 1e6;
    double ttfb = sum->ttfb_us >= 0 ? (double)sum->ttfb_us / 1e6 : -1.0;
    const char *path = c->path ? c->path : "-";

    gw_metrics_request_done(gw->metrics, sum->model, path, sum->status, latency, ttfb,
                            c->bytes_in, c->bytes_out);
    if (c->state == GW_CLIENT_BUSY)
        gw_metrics_in_flight(gw->metrics, -1);
    if (gw->access_log != NULL)
        gw_access_log_write(gw->access_log, c->addr,
                            c->parser.msg.url ? http_method_name(c->parser.msg.method) : "-",
                            path, sum, c->bytes_in, c->bytes_out, latency, ttfb);
}

void gw_client_finish(struct gw_client *c, const struct gw_req_summary *sum)
{
    struct gw *gw = c->gw;
    gw_client_account(c, sum);
    c->req = NULL;
    c->t_start_us = 0;
    evbuffer_drain(c->body, evbuffer_get_length(c->body));
    int keep = c->state == GW_CLIENT_BUSY && c->keep_alive && !gw->shutting_down &&
               !c->body_too_large && gw->conf->keepalive_timeout_ms > 0;
    if (!keep) {
        gw_client_close(c, 0);
        return;
    }
    http_parser_reset(&c->parser);
    c->state = GW_CLIENT_IDLE;
    client_set_read_timeout(c, gw->conf->keepalive_timeout_ms);
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
        if (c->resume_ev == NULL)
            c->resume_ev = event_new(gw->base, -1, 0, resume_cb, c);
        event_active(c->resume_ev, EV_READ, 0);
    }
}
