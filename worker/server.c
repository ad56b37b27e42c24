/*
 * server.c -- the worker's HTTP/1.1 server: listener, connections (one
 * request at a time, keep-alive, header and body limits), the route table,
 * plain and chunked SSE responses, the engine's eventfd, and the graceful
 * stop. A client that goes away aborts its generation (or its encoder
 * request, its transcription) at once. Routes are per task: chat, embed,
 * rerank or transcribe.
 */
#include "server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "api/api.h"
#include "api/encode_job.h"
#include "api/generate.h"
#include "api/transcribe.h"
#include "asr.h"
#include "encode.h"
#include "engine.h"
#include "http.h"
#include "log.h"
#include "netaddr.h"
#include "oai_error.h"
#include "util.h"

#define WK_MAX_HEADER_BYTES (32 * 1024)
#define WK_IDLE_TIMEOUT_S   75
#define WK_READ_TIMEOUT_S   60

enum { CONN_IDLE = 0, CONN_BUSY, CONN_CLOSING };

struct wk_conn {
    struct wk_conn *next, *prev;
    struct wk *w;
    struct bufferevent *bev;
    struct http_parser parser;
    struct evbuffer *body;
    char *path;
    int state;
    int keep_alive;
    int body_too_large;
    int streaming;              /* SSE headers sent */
    struct wk_gen *gen;
    struct wk_enc *enc;
    struct wk_asr *asr;
    struct event *resume_ev;
};

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);
static void conn_process(struct wk_conn *c);

struct wk *wk_conn_worker(struct wk_conn *c) { return c->w; }

const char *wk_conn_body(struct wk_conn *c, size_t *len)
{
    *len = evbuffer_get_length(c->body);
    return (const char *)evbuffer_pullup(c->body, -1);
}

const char *wk_conn_header(struct wk_conn *c, const char *name)
{
    return http_msg_header(&c->parser.msg, name);
}

void wk_conn_set_gen(struct wk_conn *c, struct wk_gen *g) { c->gen = g; }

void wk_conn_set_enc(struct wk_conn *c, struct wk_enc *j) { c->enc = j; }

void wk_conn_set_asr(struct wk_conn *c, struct wk_asr *j) { c->asr = j; }

const char *wk_task_name(int task)
{
    switch (task) {
    case WK_TASK_EMBED: return "embed";
    case WK_TASK_RERANK: return "rerank";
    case WK_TASK_TRANSCRIBE: return "transcribe";
    default: return "chat";
    }
}

/* Nothing in flight: a stopping worker may exit. */
static int wk_idle(const struct wk *w)
{
    return w->n_conns == 0 && w->gens == NULL && w->encs == NULL && w->asrs == NULL;
}

/* ---- connections ----------------------------------------------------------- */

static void conn_free(struct wk_conn *c)
{
    struct wk *w = c->w;
    if (c->gen != NULL) {
        log_info("client closed the connection during %s: aborting", c->path ? c->path : "-");
        gen_abort(c->gen);
        c->gen = NULL;
    }
    if (c->enc != NULL) {
        log_info("client closed the connection during %s: cancelling", c->path ? c->path : "-");
        enc_job_abort(c->enc);      /* clears c->enc */
        c->enc = NULL;
    }
    if (c->asr != NULL) {
        log_info("client closed the connection during %s: cancelling", c->path ? c->path : "-");
        asr_job_abort(c->asr);      /* clears c->asr */
        c->asr = NULL;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->n_conns--;
    bufferevent_free(c->bev);
    if (c->resume_ev)
        event_free(c->resume_ev);
    evbuffer_free(c->body);
    http_parser_free(&c->parser);
    free(c->path);
    free(c);
    if (w->shutting_down && wk_idle(w))
        event_base_loopexit(w->base, NULL);
}

static int conn_body_cb(void *arg, const char *at, size_t len)
{
    struct wk_conn *c = arg;
    if (evbuffer_get_length(c->body) + len > c->w->max_body) {
        c->body_too_large = 1;
        return -1;
    }
    evbuffer_add(c->body, at, len);
    return 0;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct wk *w = arg;
    if (w->shutting_down) {
        evutil_closesocket(fd);
        return;
    }
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    struct wk_conn *c = xcalloc(1, sizeof(*c));
    c->w = w;
    c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        evutil_closesocket(fd);
        free(c);
        return;
    }
    c->body = evbuffer_new();
    http_parser_init(&c->parser, HTTP_REQUEST, conn_body_cb, c);
    c->parser.max_header_bytes = WK_MAX_HEADER_BYTES;
    c->keep_alive = 1;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->n_conns++;
    struct timeval rt = { WK_IDLE_TIMEOUT_S, 0 };
    bufferevent_set_timeouts(c->bev, &rt, NULL);
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    log_error("accept() failed: %s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

int wk_server_listen(struct wk *w, const char *addr)
{
    struct net_addr na;
    char err[256], shown[300];
    if (net_addr_parse(addr, 1, &na, err, sizeof(err)) < 0) {
        log_error("listen %s", err);
        return -1;
    }
    w->listener = net_listen(w->base, &na, accept_cb, w);
    if (w->listener == NULL) {
        log_error("bind() to %s failed: %s", addr, strerror(errno));
        return -1;
    }
    if (na.unix_path != NULL)
        w->unix_path = xstrdup(na.unix_path);
    evconnlistener_set_error_cb(w->listener, accept_error_cb);
    net_listener_name(w->listener, &na, shown, sizeof(shown));
    log_notice("listening on %s", shown);
    /* a line on stdout for supervisors and tests that let the kernel pick a port */
    printf("listening on %s\n", shown);
    fflush(stdout);
    return 0;
}

/* ---- responses ---------------------------------------------------------------- */

static const char *conn_connection_header(struct wk_conn *c)
{
    return c->keep_alive && !c->w->shutting_down ? "keep-alive" : "close";
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    conn_process(arg);
}

static void conn_finish(struct wk_conn *c)
{
    struct wk *w = c->w;
    c->gen = NULL;
    c->enc = NULL;
    c->asr = NULL;
    c->streaming = 0;
    evbuffer_drain(c->body, evbuffer_get_length(c->body));
    if (!c->keep_alive || w->shutting_down || c->body_too_large) {
        c->state = CONN_CLOSING;
        bufferevent_disable(c->bev, EV_READ);
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
            conn_free(c);
        return;
    }
    http_parser_reset(&c->parser);
    c->state = CONN_IDLE;
    bufferevent_enable(c->bev, EV_READ);
    struct timeval rt = { WK_IDLE_TIMEOUT_S, 0 };
    bufferevent_set_timeouts(c->bev, &rt, NULL);
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
        if (c->resume_ev == NULL)
            c->resume_ev = event_new(w->base, -1, 0, resume_cb, c);
        event_active(c->resume_ev, EV_READ, 0);
    }
}

void wk_conn_respond(struct wk_conn *c, int status, const char *content_type, const char *body,
                     size_t len)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "Connection: %s\r\n\r\n", status, http_status_reason(status),
                        content_type, len, conn_connection_header(c));
    if (c->parser.msg.method != HTTP_HEAD)
        evbuffer_add(out, body, len);
    conn_finish(c);
}

void wk_conn_respond_json(struct wk_conn *c, int status, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (s == NULL) {
        wk_conn_error_msg(c, 500, NULL, "response could not be encoded");
        return;
    }
    wk_conn_respond(c, status, "application/json", s, strlen(s));
    free(s);
}

void wk_conn_error_msg(struct wk_conn *c, int status, const char *param, const char *msg)
{
    if (status >= 400 && status != 503)
        log_info("%s -> %d: %s", c->path ? c->path : "-", status, msg);
    char *body = oai_error_json(status, msg, param, NULL);
    if (c->streaming) {     /* headers are gone: the error becomes an event */
        struct evbuffer *out = bufferevent_get_output(c->bev);
        size_t n = strlen(body) + 8;
        evbuffer_add_printf(out, "%zx\r\ndata: %s\n\n\r\n", n, body);
        free(body);
        wk_conn_sse_end(c);
        return;
    }
    wk_conn_respond(c, status, "application/json", body, strlen(body));
    free(body);
}

void wk_conn_error(struct wk_conn *c, const struct api_err *e)
{
    wk_conn_error_msg(c, e->status ? e->status : 400, e->param[0] ? e->param : NULL, e->message);
}

void wk_conn_sse_start(struct wk_conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                        "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n"
                        "Connection: %s\r\n\r\n", conn_connection_header(c));
    c->streaming = 1;
}

void wk_conn_sse_json(struct wk_conn *c, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (s == NULL)
        return;
    size_t n = strlen(s);
    evbuffer_add_printf(bufferevent_get_output(c->bev), "%zx\r\ndata: %s\n\n\r\n", n + 8, s);
    free(s);
}

void wk_conn_sse_end(struct wk_conn *c)
{
    static const char done[] = "e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n";
    evbuffer_add(bufferevent_get_output(c->bev), done, sizeof(done) - 1);
    conn_finish(c);
}

/* ---- requests ------------------------------------------------------------------- */

struct route {
    int method;
    const char *path;
    void (*fn)(struct wk_conn *c);
    unsigned tasks;             /* 1 << enum wk_task */
};

#define T_CHAT   (1u << WK_TASK_CHAT)
#define T_EMBED  (1u << WK_TASK_EMBED)
#define T_RERANK (1u << WK_TASK_RERANK)
#define T_ASR    (1u << WK_TASK_TRANSCRIBE)
#define T_ALL    (T_CHAT | T_EMBED | T_RERANK | T_ASR)
#define T_TOK    (T_CHAT | T_EMBED | T_RERANK)

static const struct route ROUTES[] = {
    { HTTP_POST, "/v1/chat/completions", api_chat_completions, T_CHAT },
    { HTTP_POST, "/v1/completions", api_completions, T_CHAT },
    { HTTP_POST, "/v1/embeddings", api_embeddings, T_EMBED },
    { HTTP_POST, "/pooling", api_pooling, T_EMBED },
    { HTTP_POST, "/v1/rerank", api_rerank, T_RERANK },
    { HTTP_POST, "/rerank", api_rerank, T_RERANK },
    { HTTP_POST, "/v2/rerank", api_rerank, T_RERANK },
    { HTTP_POST, "/v1/score", api_score, T_RERANK },
    { HTTP_POST, "/score", api_score, T_RERANK },
    { HTTP_POST, "/v1/audio/transcriptions", api_transcriptions, T_ASR },
    { HTTP_POST, "/v1/audio/translations", api_translations, T_ASR },
    { HTTP_POST, "/tokenize", api_tokenize, T_TOK },
    { HTTP_POST, "/detokenize", api_detokenize, T_TOK },
    { HTTP_GET, "/v1/models", api_models, T_ALL },
    { HTTP_GET, "/health", api_health, T_ALL },
    { HTTP_GET, "/load", api_load, T_ALL },
    { HTTP_GET, "/version", api_version, T_ALL },
};

/* The task a route needs (for the message when this worker's task lacks it). */
static const char *route_task_name(unsigned tasks)
{
    return (tasks & T_CHAT) ? "chat" : (tasks & T_EMBED) ? "embed" :
           (tasks & T_RERANK) ? "rerank or score" : "transcribe";
}

static void conn_dispatch(struct wk_conn *c)
{
    int method = c->parser.msg.method;
    int path_known = 0;
    for (size_t i = 0; i < ARRAY_SIZE(ROUTES); i++) {
        if (strcmp(ROUTES[i].path, c->path) != 0)
            continue;
        path_known = 1;
        if (!(ROUTES[i].tasks & (1u << c->w->task))) {
            char msg[300];
            snprintf(msg, sizeof(msg), "%s is not served here: this worker serves \"%s\" with task "
                     "%s, and %s needs a worker with task %s", c->path, c->w->n_served ? c->w->served[0] : "",
                     wk_task_name(c->w->task), c->path, route_task_name(ROUTES[i].tasks));
            wk_conn_error_msg(c, 400, NULL, msg);
            return;
        }
        if (ROUTES[i].method == method ||
            (method == HTTP_HEAD && ROUTES[i].method == HTTP_GET)) {
            ROUTES[i].fn(c);
            return;
        }
    }
    if (path_known) {
        char msg[160];
        snprintf(msg, sizeof(msg), "method %s is not allowed on %s", http_method_name(method), c->path);
        wk_conn_error_msg(c, 405, NULL, msg);
        return;
    }
    char msg[300];
    snprintf(msg, sizeof(msg), "no route %s %.200s", http_method_name(method), c->path);
    wk_conn_error_msg(c, 404, NULL, msg);
}

static void conn_process(struct wk_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    int zero_feed = 0;
    while (c->state == CONN_IDLE && (evbuffer_get_length(in) > 0 || zero_feed)) {
        struct evbuffer_iovec v;
        const char *data = "";
        size_t len = 0, used = 0;
        if (evbuffer_peek(in, -1, NULL, &v, 1) >= 1) {
            data = v.iov_base;
            len = v.iov_len;
        }
        zero_feed = 0;
        enum http_event ev = http_parser_feed(&c->parser, data, len, &used);
        evbuffer_drain(in, used);
        switch (ev) {
        case HTTP_EV_MORE:
            break;
        case HTTP_EV_HEADERS: {
            struct http_msg *m = &c->parser.msg;
            c->keep_alive = m->keep_alive;
            free(c->path);
            const char *q = strchr(m->url, '?');
            c->path = q ? xstrndup(m->url, (size_t)(q - m->url)) : xstrdup(m->url);
            if (m->content_length > 0 && (uint64_t)m->content_length > c->w->max_body) {
                char msg[128];
                c->keep_alive = 0;
                c->body_too_large = 1;
                c->state = CONN_BUSY;
                snprintf(msg, sizeof(msg), "request body is larger than the limit (%zu bytes)",
                         c->w->max_body);
                wk_conn_error_msg(c, 413, NULL, msg);
                return;
            }
            if (m->expect_continue && m->http_minor >= 1)
                bufferevent_write(c->bev, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            struct timeval rt = { WK_READ_TIMEOUT_S, 0 };
            bufferevent_set_timeouts(c->bev, &rt, NULL);
            zero_feed = 1;
            break;
        }
        case HTTP_EV_COMPLETE:
            c->state = CONN_BUSY;
            bufferevent_set_timeouts(c->bev, NULL, NULL);
            conn_dispatch(c);
            return;
        case HTTP_EV_ERROR:
            c->keep_alive = 0;
            c->state = CONN_BUSY;
            if (c->body_too_large) {
                char msg[128];
                snprintf(msg, sizeof(msg), "request body is larger than the limit (%zu bytes)",
                         c->w->max_body);
                wk_conn_error_msg(c, 413, NULL, msg);
            } else if (c->parser.too_large) {
                wk_conn_error_msg(c, 431, NULL, "request header fields too large");
            } else {
                char msg[256];
                snprintf(msg, sizeof(msg), "malformed HTTP request: %s", http_parser_error(&c->parser));
                wk_conn_error_msg(c, 400, NULL, msg);
            }
            return;
        }
    }
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct wk_conn *c = arg;
    if (c->state == CONN_IDLE)
        conn_process(c);
    else if (c->state == CONN_CLOSING)
        evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
    else if (evbuffer_get_length(bufferevent_get_input(bev)) > c->w->max_body + 65536)
        bufferevent_disable(bev, EV_READ);     /* pipelined too far ahead: wait */
    /* BUSY: the next request waits in the input buffer (pipelining) */
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct wk_conn *c = arg;
    if (c->state == CONN_CLOSING && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        conn_free(c);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct wk_conn *c = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        conn_free(c);
}

/* ---- engine notifications ---------------------------------------------------------- */

void wk_engine_notify(void *arg)
{
    struct wk *w = arg;
    uint64_t one = 1;
    ssize_t r = write(w->notify_fd, &one, sizeof(one));
    (void)r;
}

static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wk *w = arg;
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof(v));
    (void)r;
    if (w->eng != NULL) {
        struct engine_output *o = engine_take_outputs(w->eng), *next;
        for (; o != NULL; o = next) {
            next = o->next;
            gen_dispatch_output(w, o);
            engine_output_free(o);
        }
    }
    if (w->encq != NULL) {
        enc_prep_drain(w);
        struct encode_output *o = encode_take_outputs(w->encq), *next;
        for (; o != NULL; o = next) {
            next = o->next;
            enc_dispatch_output(w, o);      /* frees o */
        }
    }
    if (w->asrq != NULL) {
        struct asr_output *o = asr_take_outputs(w->asrq), *next;
        for (; o != NULL; o = next) {
            next = o->next;
            asr_dispatch_output(w, o);      /* frees o */
        }
    }
    if (w->shutting_down && wk_idle(w))
        event_base_loopexit(w->base, NULL);
}

int wk_server_notify_init(struct wk *w)
{
    w->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->notify_fd < 0) {
        log_error("eventfd: %s", strerror(errno));
        return -1;
    }
    w->notify_ev = event_new(w->base, w->notify_fd, EV_READ | EV_PERSIST, notify_cb, w);
    event_add(w->notify_ev, NULL);
    return 0;
}

void wk_server_notify_free(struct wk *w)
{
    if (w->notify_ev)
        event_free(w->notify_ev);
    w->notify_ev = NULL;
    if (w->notify_fd >= 0)
        close(w->notify_fd);
    w->notify_fd = -1;
}

/* ---- stop ---------------------------------------------------------------------------- */

static void stop_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct wk *w = arg;
    if (w->gens != NULL || w->encs != NULL || w->asrs != NULL)
        log_warn("graceful stop: aborting the requests still running");
    while (w->conns != NULL)
        conn_free(w->conns);    /* aborts their generations */
    event_base_loopexit(w->base, NULL);
}

void wk_server_shutdown(struct wk *w, int grace_ms)
{
    if (w->shutting_down)
        return;
    w->shutting_down = 1;
    if (w->listener) {
        evconnlistener_free(w->listener);
        w->listener = NULL;
    }
    struct wk_conn *c = w->conns, *next;
    for (; c != NULL; c = next) {
        next = c->next;
        if (c->state == CONN_IDLE && !http_parser_in_message(&c->parser))
            conn_free(c);
        else
            c->keep_alive = 0;
    }
    if (wk_idle(w)) {
        event_base_loopexit(w->base, NULL);
        return;
    }
    struct timeval tv = { grace_ms / 1000, (grace_ms % 1000) * 1000 };
    w->stop_timer = evtimer_new(w->base, stop_timer_cb, w);
    evtimer_add(w->stop_timer, &tv);
}

void wk_server_free(struct wk *w)
{
    while (w->conns != NULL)
        conn_free(w->conns);
    while (w->gens != NULL)
        gen_abort(w->gens);
    enc_jobs_free_all(w);
    asr_jobs_free_all(w);
    if (w->listener)
        evconnlistener_free(w->listener);
    w->listener = NULL;
    if (w->unix_path) {
        unlink(w->unix_path);
        free(w->unix_path);
        w->unix_path = NULL;
    }
    if (w->stop_timer)
        event_free(w->stop_timer);
    w->stop_timer = NULL;
}
