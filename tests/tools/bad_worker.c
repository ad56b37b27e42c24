/*
 * bad_worker.c -- a stand-in for llmux-worker that misbehaves on purpose, for
 * the gateway's supervision and health tests (the real worker cannot be made
 * to crash at start, hang or answer 500). Takes llmux-worker's flags (--listen,
 * --model, --served-name, and any other "--flag value", ignored) so the
 * gateway can spawn it through `worker_binary`, prints "listening on ADDR"
 * like the worker, and serves GET /health, GET /load and POST /v1/... with
 * tiny OpenAI-shaped answers (streams: 3 SSE events and [DONE]).
 * Misbehaviour flags: --crash-at-start, --crash-if-exists FILE (at start),
 * --crash-after-ms N, --hang (accepts,
 * never answers), --health-status N, --slow-health-ms N (/health is 503 for
 * the first N ms), --answer-status N (POSTs get N in OpenAI's error shape),
 * --answer-delay-ms N; also read from $BAD_WORKER (words split on spaces:
 * a model block's `env` sets them per model). SIGUSR1 makes /health answer
 * 200, SIGUSR2 500. Not a model server: no tokens, no state.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

struct bad {
    struct event_base *base;
    int hang, health_status, answer_status;
    long slow_health_ms, answer_delay_ms, crash_after_ms;
    int64_t t_start;
    int in_flight;
    const char *name;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void reply(struct evhttp_request *req, int status, const char *ctype, const char *body)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, body, strlen(body));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    evhttp_send_reply(req, status, status == 200 ? "OK" : "Error", b);
    evbuffer_free(b);
}

static void answer_now(struct bad *w, struct evhttp_request *req)
{
    char body[512];
    if (w->answer_status != 0 && w->answer_status != 200) {
        snprintf(body, sizeof(body),
                 "{\"error\":{\"message\":\"bad_worker answers %d\",\"type\":\"server_error\","
                 "\"param\":null,\"code\":%d}}", w->answer_status, w->answer_status);
        reply(req, w->answer_status, "application/json", body);
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    char *text = malloc(n + 1);
    evbuffer_copyout(in, text, n);
    text[n] = '\0';
    int stream = strstr(text, "\"stream\":true") != NULL || strstr(text, "\"stream\": true") != NULL;
    free(text);
    if (!stream) {
        snprintf(body, sizeof(body),
                 "{\"id\":\"cmpl-bad\",\"object\":\"text_completion\",\"model\":\"%s\","
                 "\"choices\":[{\"index\":0,\"text\":\"ok\",\"finish_reason\":\"stop\"}],"
                 "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}",
                 w->name);
        reply(req, 200, "application/json", body);
        return;
    }
    struct evbuffer *b = evbuffer_new();
    for (int i = 0; i < 3; i++)
        evbuffer_add_printf(b, "data: {\"id\":\"cmpl-bad\",\"object\":\"text_completion\","
                            "\"model\":\"%s\",\"choices\":[{\"index\":0,\"text\":\"t%d\","
                            "\"finish_reason\":%s}]}\n\n", w->name, i, i == 2 ? "\"stop\"" : "null");
    evbuffer_add_printf(b, "data: [DONE]\n\n");
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/event-stream");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

struct delayed {
    struct bad *w;
    struct evhttp_request *req;
    struct event *ev;
};

static void delayed_cb(evutil_socket_t fd, short what, void *arg)
{
    struct delayed *d = arg;
    (void)fd;
    (void)what;
    answer_now(d->w, d->req);
    d->w->in_flight--;
    event_free(d->ev);
    free(d);
}

static void request_cb(struct evhttp_request *req, void *arg)
{
    struct bad *w = arg;
    const char *uri = evhttp_request_get_uri(req);
    char body[256];
    if (w->hang)
        return;                 /* never answered: the gateway's timeout must act */
    if (strcmp(uri, "/health") == 0) {
        int st = w->health_status;
        if (w->slow_health_ms > 0 && mono_ms() - w->t_start < w->slow_health_ms)
            st = 503;
        reply(req, st, "application/json", st == 200 ? "" : "{\"error\":\"not healthy\"}");
        return;
    }
    if (strcmp(uri, "/load") == 0) {
        snprintf(body, sizeof(body), "{\"running\":%d,\"waiting\":0,\"kv_blocks_free\":100,"
                 "\"kv_blocks_total\":100}", w->in_flight);
        reply(req, 200, "application/json", body);
        return;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        reply(req, 404, "application/json", "{\"error\":{\"message\":\"no route\"}}");
        return;
    }
    if (w->answer_delay_ms > 0) {
        struct delayed *d = calloc(1, sizeof(*d));
        struct timeval tv = { w->answer_delay_ms / 1000, (w->answer_delay_ms % 1000) * 1000 };
        d->w = w;
        d->req = req;
        d->ev = evtimer_new(w->base, delayed_cb, d);
        w->in_flight++;
        evtimer_add(d->ev, &tv);
        return;
    }
    answer_now(w, req);
}

static void crash_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    fprintf(stderr, "bad_worker: crashing as told (--crash-after-ms)\n");
    _exit(4);
}

static void health_signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct bad *w = arg;
    (void)what;
    w->health_status = sig == SIGUSR1 ? 200 : 500;
    w->slow_health_ms = 0;
    fprintf(stderr, "bad_worker: /health now answers %d\n", w->health_status);
}

static void usage(void)
{
    fprintf(stderr, "usage: bad-worker --listen unix:PATH|HOST:PORT [--model DIR] [--served-name N]\n"
            "  [--crash-at-start] [--crash-if-exists FILE] [--crash-after-ms N] [--hang] [--health-status N]\n"
            "  [--slow-health-ms N] [--answer-status N] [--answer-delay-ms N]\n"
            "  (other --flag VALUE pairs of llmux-worker are accepted and ignored)\n");
}

int main(int argc, char **argv)
{
    struct bad w = { .health_status = 200, .name = "bad" };
    const char *listen = NULL;
    int crash_at_start = 0;
    const char *crash_file = NULL;

    /* argv, then the words of $BAD_WORKER */
    char *envflags = getenv("BAD_WORKER") ? strdup(getenv("BAD_WORKER")) : NULL;
    char **args = calloc((size_t)argc + (envflags ? strlen(envflags) : 0) + 1, sizeof(char *));
    int nargs = argc;
    memcpy(args, argv, (size_t)argc * sizeof(char *));
    for (char *save = NULL, *tok = envflags ? strtok_r(envflags, " ", &save) : NULL; tok;
         tok = strtok_r(NULL, " ", &save))
        args[nargs++] = tok;
    argc = nargs;
    argv = args;
    /* llmux-worker's flags: all "--flag value" except the few switches */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--crash-at-start") == 0) {
            crash_at_start = 1;
        } else if (strcmp(a, "--hang") == 0) {
            w.hang = 1;
        } else if (strcmp(a, "--enable-prefix-caching") == 0 ||
                   strcmp(a, "--no-enable-prefix-caching") == 0) {
            continue;
        } else if (strncmp(a, "--", 2) == 0 && v != NULL) {
            i++;
            if (strcmp(a, "--listen") == 0)
                listen = v;
            else if (strcmp(a, "--served-name") == 0 && strcmp(w.name, "bad") == 0)
                w.name = v;
            else if (strcmp(a, "--crash-if-exists") == 0)
                crash_file = v;
            else if (strcmp(a, "--crash-after-ms") == 0)
                w.crash_after_ms = atol(v);
            else if (strcmp(a, "--health-status") == 0)
                w.health_status = atoi(v);
            else if (strcmp(a, "--slow-health-ms") == 0)
                w.slow_health_ms = atol(v);
            else if (strcmp(a, "--answer-status") == 0)
                w.answer_status = atoi(v);
            else if (strcmp(a, "--answer-delay-ms") == 0)
                w.answer_delay_ms = atol(v);
        } else {
            usage();
            _exit(2);
        }
    }
    fprintf(stderr, "bad_worker: pid %d, CUDA_VISIBLE_DEVICES=%s\n", (int)getpid(),
            getenv("CUDA_VISIBLE_DEVICES") ? getenv("CUDA_VISIBLE_DEVICES") : "(unset)");
    if (crash_at_start || (crash_file != NULL && access(crash_file, F_OK) == 0)) {
        fprintf(stderr, "bad_worker: crashing at start as told\n");
        _exit(3);               /* _exit: no leak report changes the status */
    }
    if (listen == NULL) {
        usage();
        _exit(2);
    }
    signal(SIGPIPE, SIG_IGN);
    w.base = event_base_new();
    w.t_start = mono_ms();
    struct evhttp *http = evhttp_new(w.base);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(http, request_cb, &w);
    if (strncmp(listen, "unix:", 5) == 0) {
        struct sockaddr_un su;
        memset(&su, 0, sizeof(su));
        su.sun_family = AF_UNIX;
        snprintf(su.sun_path, sizeof(su.sun_path), "%s", listen + 5);
        unlink(su.sun_path);
        struct evconnlistener *l = evconnlistener_new_bind(
            w.base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 128,
            (struct sockaddr *)&su, (int)sizeof(su));
        if (l == NULL || evhttp_bind_listener(http, l) == NULL) {
            fprintf(stderr, "bad_worker: cannot listen on %s: %s\n", listen, strerror(errno));
            _exit(1);
        }
    } else {
        char host[256];
        const char *colon = strrchr(listen, ':');
        if (colon == NULL || (size_t)(colon - listen) >= sizeof(host)) {
            fprintf(stderr, "bad_worker: bad --listen %s\n", listen);
            _exit(2);
        }
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = '\0';
        if (evhttp_bind_socket(http, host, (ev_uint16_t)atoi(colon + 1)) != 0) {
            fprintf(stderr, "bad_worker: cannot listen on %s\n", listen);
            _exit(1);
        }
    }
    struct event *s1 = evsignal_new(w.base, SIGUSR1, health_signal_cb, &w);
    struct event *s2 = evsignal_new(w.base, SIGUSR2, health_signal_cb, &w);
    event_add(s1, NULL);
    event_add(s2, NULL);
    printf("listening on %s\n", listen);
    fflush(stdout);
    if (w.crash_after_ms > 0) {
        struct timeval tv = { w.crash_after_ms / 1000, (w.crash_after_ms % 1000) * 1000 };
        event_add(evtimer_new(w.base, crash_cb, NULL), &tv);
    }
    event_base_dispatch(w.base);
    _exit(0);                   /* ends by a signal anyway; nothing to free */
}
