/*
 * gw_server.h -- client side of the gateway: listening sockets (TCP and unix),
 * one struct gw_client per connection, HTTP/1.1 request reading with limits
 * and timeouts, keep-alive and pipelining (one request at a time; later bytes
 * wait in the input buffer), response writing helpers, graceful shutdown.
 * Dispatch of a complete request goes to gw_api_dispatch().
 */
#ifndef LLMUX_GW_SERVER_H
#define LLMUX_GW_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"

struct gw;
struct bufferevent;
struct evbuffer;
struct event;
struct gw_request;

enum gw_client_state {
    GW_CLIENT_IDLE = 0,         /* waiting for (the rest of) a request */
    GW_CLIENT_BUSY,             /* a complete request is being answered */
    GW_CLIENT_CLOSING,          /* flushing the last response */
    GW_CLIENT_LINGERING         /* sent FIN; discarding input until EOF or a short timeout */
};

struct gw_client {
    struct gw          *gw;
    struct gw_client   *next, *prev;
    struct bufferevent *bev;
    struct event       *resume_ev;      /* deferred parse of pipelined input */
    char                addr[64];       /* peer address for logs */
    struct http_parser  parser;
    struct evbuffer    *body;           /* de-chunked body of the current request */
    int                 state;          /* enum gw_client_state */
    int                 keep_alive;     /* for the current request */
    int                 body_too_large;
    int                 linger;
    int64_t             read_timeout_ms;  /* as last set (-1: never), to skip re-arming */         /* close with a lingering drain (request not fully read) */
    unsigned            n_requests;
    int64_t             t_start_us;     /* first byte of the current request */
    struct gw_request  *req;            /* proxied request in progress, or NULL */
    uint64_t            bytes_in;       /* current request */
    uint64_t            bytes_out;      /* current request */
    char               *path;           /* request path without query (new) */
};

/* Facts about a finished request for metrics and the access log. */
struct gw_req_summary {
    const char *model;          /* resolved model or "" */
    const char *backend;        /* "model#i" or "-" */
    int         status;
    int64_t     ttfb_us;        /* -1 when nothing was sent */
    int         attempts;
};

/* Open the listeners of gw->conf. 0, or -1 after logging the error. */
int gw_server_listen(struct gw *gw);
/* Stop accepting, close idle connections; busy ones finish and close.
 * gw->shutting_down must be set first. */
void gw_server_stop_accepting(struct gw *gw);
/* Free every client and listener (at exit). */
void gw_server_free_all(struct gw *gw);

/* Write a complete response and finish the request. <extra_headers> is
 * NULL or "Name: value\r\n..." lines. */
void gw_client_respond(struct gw_client *c, int status, const char *content_type,
                       const char *body, size_t len, const char *extra_headers,
                       const struct gw_req_summary *sum);
/* An OpenAI-shaped error response (see common/oai_error.h). */
void gw_client_error(struct gw_client *c, int status, const char *message,
                     const char *param, const char *extra_headers, const char *model);

/* Record a finished or abandoned request in the metrics and the access log. */
void gw_client_account(struct gw_client *c, const struct gw_req_summary *sum);

/* The request is answered (its bytes are queued): log it, then read the next
 * one (keep-alive) or close once flushed. <c> may be freed: the caller must
 * not touch it afterwards (this holds for gw_client_respond/error too). */
void gw_client_finish(struct gw_client *c, const struct gw_req_summary *sum);
/* Close the connection once what is queued is flushed (or at once when <now>). */
void gw_client_close(struct gw_client *c, int now);

/* The first contiguous bytes of <in> (one chain; the parsers are fed chain
 * by chain, so nothing is copied): borrowed, valid until <in> changes;
 * *<len> is 0 (and the pointer "") when it is empty. */
const char *gw_evbuffer_head(struct evbuffer *in, size_t *len);

/* Write what is queued on <bev> now, without a trip through the event loop;
 * whatever the socket does not take is left to the bufferevent (EV_WRITE is
 * enabled only then, and its write callback disables it once drained). This
 * keeps epoll_ctl out of the common path: each response would otherwise add
 * and remove the write event. Used for client and backend connections. */
void gw_bev_flush(struct bufferevent *bev);

/* Header "Connection: keep-alive" or "close" for the current response. */
const char *gw_client_connection_header(struct gw_client *c);

#endif
