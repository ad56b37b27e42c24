/*
 * fake_upstream.c -- an honest, OpenAI-shaped HTTP server for the integration
 * tests and the benchmark. One thread, one event_base, libevent's evhttp.
 * It answers every OpenAI route llmux proxies with tiny deterministic bodies,
 * streams chat/completions as SSE (one HTTP chunk per event), and can be made
 * to misbehave per process (CLI flags) or per request ("fake_*" body fields):
 * error status, delay before headers, hang, die mid-stream.
 * Every reply carries x-fake-upstream, x-fake-path, x-fake-seq and
 * x-fake-body-sha256 (SHA-256 of the exact request body bytes received).
 * GET /stats: {"requests","in_flight","cancelled" (requests whose client left
 * before the answer ended),"connections" (distinct client TCP ports seen)}.
 * It must stay cheap per request: it is the benchmark's upstream too.
 *
 * Usage: fake-upstream --listen HOST:PORT|unix:PATH [--name ID] [--status CODE]
 *        [--delay-ms N] [--chunks N] [--chunk-interval-ms N]
 *        [--die-after-chunks N] [--hang] [--health-status CODE] [--pid-file F]
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <event2/event.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

/* ---- SHA-256 (FIPS 180-4), small and self-contained ---------------------- */

struct fu_sha256 {
    uint32_t h[8];
    uint64_t len;
    unsigned char buf[64];
    size_t n;
};

static const uint32_t fu_sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
    0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
    0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
    0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};

#define FU_ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void fu_sha256_block(struct fu_sha256 *s, const unsigned char *p)
{
    uint32_t w[64], a, b, c, d, e, f, g, h, t1, t2;
    int i;

    for (i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (i = 16; i < 64; i++) {
        uint32_t s0 = FU_ROR(w[i - 15], 7) ^ FU_ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = FU_ROR(w[i - 2], 17) ^ FU_ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = s->h[0]; b = s->h[1]; c = s->h[2]; d = s->h[3];
    e = s->h[4]; f = s->h[5]; g = s->h[6]; h = s->h[7];
    for (i = 0; i < 64; i++) {
        t1 = h + (FU_ROR(e, 6) ^ FU_ROR(e, 11) ^ FU_ROR(e, 25)) +
             ((e & f) ^ (~e & g)) + fu_sha_k[i] + w[i];
        t2 = (FU_ROR(a, 2) ^ FU_ROR(a, 13) ^ FU_ROR(a, 22)) +
             ((a & b) ^ (a & c) ^ (b & c));
        h = g; g = f; f = e; e = d + t1;
        d = c; c = b; b = a; a = t1 + t2;
    }
    s->h[0] += a; s->h[1] += b; s->h[2] += c; s->h[3] += d;
    s->h[4] += e; s->h[5] += f; s->h[6] += g; s->h[7] += h;
}

static void fu_sha256_init(struct fu_sha256 *s)
{
    static const uint32_t iv[8] = {
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
    };
    memcpy(s->h, iv, sizeof(iv));
    s->len = 0;
    s->n = 0;
}

static void fu_sha256_update(struct fu_sha256 *s, const unsigned char *p, size_t len)
{
    s->len += len;
    while (len > 0) {
        if (s->n == 0 && len >= 64) {
            fu_sha256_block(s, p);
            p += 64;
            len -= 64;
            continue;
        }
        size_t take = 64 - s->n < len ? 64 - s->n : len;
        memcpy(s->buf + s->n, p, take);
        s->n += take;
        p += take;
        len -= take;
        if (s->n == 64) {
            fu_sha256_block(s, s->buf);
            s->n = 0;
        }
    }
}

/* Writes 64 lowercase hex digits and a NUL into <hex>. */
static void fu_sha256_final_hex(struct fu_sha256 *s, char hex[65])
{
    uint64_t bits = s->len * 8;
    unsigned char pad[72];
    size_t padlen = (s->n < 56) ? 56 - s->n : 120 - s->n;
    int i;

    memset(pad, 0, sizeof(pad));
    pad[0] = 0x80;
    for (i = 0; i < 8; i++)
        pad[padlen + i] = (unsigned char)(bits >> (56 - 8 * i));
    fu_sha256_update(s, pad, padlen + 8);
    for (i = 0; i < 8; i++)
        snprintf(hex + 8 * i, 9, "%08x", s->h[i]);
    hex[64] = '\0';
}

/* ---- options and process state ------------------------------------------- */

struct fu_opts {
    int status;             /* 200 unless --status */
    int delay_ms;
    int chunks;             /* SSE content events per stream; default 8 */
    int chunk_interval_ms;
    int die_after;          /* close after N events; -1 = never */
    int hang;
    int health_status;
};

enum fu_phase { FU_DELAY, FU_HANG, FU_STREAM, FU_DYING };

/* One request that outlives its callback (delayed, hanging or streaming).
 * Owned by the active list; freed by fu_state_free(). */
struct fu_state {
    struct fu_state *prev, *next;
    struct evhttp_request *req;         /* NULL once freed by libevent or us */
    struct evhttp_connection *evcon;    /* NULL once the client went away */
    struct event *ev;                   /* timer: delay, next chunk, cleanup */
    struct timeval deadline;            /* end of the delay */
    int phase;
    int gone;                           /* client closed before we finished */
    int chat;                           /* chat.completion vs text_completion */
    int status, chunks, interval_ms, die_after, include_usage, stream;
    int sent;                           /* SSE events written */
    long created;
    unsigned long seq;
    char *path;
    char *model_json;                   /* the request's model, JSON-encoded */
    json_t *body;                       /* parsed request body or NULL */
    size_t body_len, file_len;
    char *mp_model;                     /* multipart "model" field */
};

static struct event_base *fu_base;
static const char *fu_name = "fake";
static struct fu_opts fu_opt = { 200, 0, 8, 0, -1, 0, 200 };
static struct fu_state *fu_active;
static unsigned long fu_requests, fu_in_flight, fu_cancelled, fu_seq;
/* client TCP ports seen: a cheap count of the connections the gateway opened
 * to us (its keep-alive pool reuses them); unix sockets are not counted */
static unsigned char fu_ports_seen[65536 / 8];
static unsigned long fu_connections;

static const char *const fu_post_paths[] = {
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings",
    "/v1/rerank", "/rerank", "/v2/rerank", "/v1/score", "/score",
    "/tokenize", "/detokenize", "/pooling", "/invocations",
    "/v1/audio/transcriptions", NULL
};

static void fu_state_free(struct fu_state *st)
{
    if (st->prev)
        st->prev->next = st->next;
    else
        fu_active = st->next;
    if (st->next)
        st->next->prev = st->prev;
    if (st->ev)
        event_free(st->ev);
    json_decref(st->body);
    free(st->model_json);
    free(st->mp_model);
    free(st->path);
    free(st);
    fu_in_flight--;
}

/* ---- reply helpers --------------------------------------------------------- */

static void fu_reply_json(struct evhttp_request *req, int status, json_t *obj)
{
    struct evbuffer *out = evbuffer_new();
    char *s = json_dumps(obj, JSON_COMPACT);

    evhttp_add_header(evhttp_request_get_output_headers(req),
                      "Content-Type", "application/json");
    if (s) {
        evbuffer_add(out, s, strlen(s));
        free(s);
    }
    evhttp_send_reply(req, status, status == 200 ? "OK" : "Fake", out);
    evbuffer_free(out);
}

static void fu_reply_error(struct evhttp_request *req, int status, const char *msg)
{
    const char *type = status == 429 ? "rate_limit_error" :
                       status == 404 ? "not_found_error" :
                       status >= 500 ? "server_error" : "invalid_request_error";
    json_t *e = json_pack("{s:{s:s,s:s,s:n,s:i},s:s}",
                          "error", "message", msg, "type", type, "param",
                          "code", status, "fake_upstream", fu_name);
    fu_reply_json(req, status, e);
    json_decref(e);
}

/* Adds "model" (as received, or null), "fake_upstream" and "path" to <obj>. */
static void fu_tag(json_t *obj, struct fu_state *st)
{
    json_t *m = st->body && json_is_object(st->body) ?
                json_object_get(st->body, "model") : NULL;

    if (st->mp_model)
        json_object_set_new(obj, "model", json_string(st->mp_model));
    else
        json_object_set(obj, "model", m ? m : json_null());
    json_object_set_new(obj, "fake_upstream", json_string(fu_name));
    json_object_set_new(obj, "path", json_string(st->path));
}

static uint64_t fu_fnv(const char *s, size_t n, uint64_t h)
{
    size_t i;
    for (i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* Deterministic unit-ish vector of dim 8 from the text of one input. */
static json_t *fu_vector(json_t *in)
{
    char *s = json_dumps(in, JSON_COMPACT | JSON_ENCODE_ANY);
    uint64_t h = fu_fnv(s ? s : "", s ? strlen(s) : 0, 1469598103934665603ULL);
    json_t *v = json_array();
    int i;

    free(s);
    for (i = 0; i < 8; i++) {
        h = h * 6364136223846793005ULL + 1442695040888963407ULL;
        json_array_append_new(v, json_real(((double)(h >> 40) / 16777216.0) * 2.0 - 1.0));
    }
    return v;
}

/* Text of the last user message (string content, or joined text parts). */
static const char *fu_last_user(json_t *body, char *buf, size_t cap)
{
    json_t *msgs = json_object_get(body, "messages");
    size_t i, n = json_array_size(msgs);

    buf[0] = '\0';
    for (i = n; i > 0; i--) {
        json_t *m = json_array_get(msgs, i - 1);
        const char *role = json_string_value(json_object_get(m, "role"));
        json_t *c = json_object_get(m, "content");
        if (!role || strcmp(role, "user") != 0)
            continue;
        if (json_is_string(c))
            return json_string_value(c);
        if (json_is_array(c)) {
            size_t j, len = 0;
            for (j = 0; j < json_array_size(c); j++) {
                const char *t = json_string_value(
                    json_object_get(json_array_get(c, j), "text"));
                if (t && len + strlen(t) + 1 < cap) {
                    memcpy(buf + len, t, strlen(t));
                    len += strlen(t);
                }
            }
            buf[len] = '\0';
        }
        return buf;
    }
    return buf;
}

static void fu_reply_ok(struct fu_state *st)
{
    struct evhttp_request *req = st->req;
    json_t *b = st->body && json_is_object(st->body) ? st->body : NULL;
    json_t *o = json_object(), *usage;
    const char *p = st->path;
    char id[64], buf[4096], *text = NULL;
    long pt = (long)st->body_len / 4 + 1;

    snprintf(id, sizeof(id), "%s-%s-%lu",
             st->chat ? "chatcmpl" : "cmpl", fu_name, st->seq);
    usage = json_pack("{s:i,s:i,s:i}", "prompt_tokens", (json_int_t)pt,
                      "completion_tokens", (json_int_t)st->chunks,
                      "total_tokens", (json_int_t)(pt + st->chunks));
    if (strcmp(p, "/v1/chat/completions") == 0) {
        const char *u = b ? fu_last_user(b, buf, sizeof(buf)) : "";
        if (asprintf(&text, "%s: %s", fu_name, u) < 0)
            abort();
        json_object_set_new(o, "id", json_string(id));
        json_object_set_new(o, "object", json_string("chat.completion"));
        json_object_set_new(o, "created", json_integer(st->created));
        json_object_set_new(o, "choices", json_pack("[{s:i,s:{s:s,s:s},s:n,s:s}]",
            "index", 0, "message", "role", "assistant", "content", text,
            "logprobs", "finish_reason", "stop"));
        json_object_set(o, "usage", usage);
    } else if (strcmp(p, "/v1/completions") == 0) {
        json_t *pr = b ? json_object_get(b, "prompt") : NULL;
        if (asprintf(&text, "%s: %s", fu_name,
                     json_is_string(pr) ? json_string_value(pr) : "") < 0)
            abort();
        json_object_set_new(o, "id", json_string(id));
        json_object_set_new(o, "object", json_string("text_completion"));
        json_object_set_new(o, "created", json_integer(st->created));
        json_object_set_new(o, "choices", json_pack("[{s:i,s:s,s:n,s:s}]",
            "index", 0, "text", text, "logprobs", "finish_reason", "stop"));
        json_object_set(o, "usage", usage);
    } else if (strcmp(p, "/v1/embeddings") == 0 || strcmp(p, "/pooling") == 0) {
        json_t *in = b ? json_object_get(b, "input") : NULL, *data = json_array();
        size_t i;
        if (json_is_array(in) && json_array_size(in) > 0 &&
            !json_is_integer(json_array_get(in, 0))) {
            for (i = 0; i < json_array_size(in); i++)
                json_array_append_new(data, json_pack("{s:s,s:i,s:o}",
                    "object", "embedding", "index", (json_int_t)i,
                    "embedding", fu_vector(json_array_get(in, i))));
        } else {
            json_array_append_new(data, json_pack("{s:s,s:i,s:o}",
                "object", "embedding", "index", 0,
                "embedding", fu_vector(in ? in : json_null())));
        }
        json_object_set_new(o, "object", json_string("list"));
        json_object_set_new(o, "data", data);
        json_object_set(o, "usage", usage);
    } else if (strstr(p, "rerank")) {
        json_t *docs = b ? json_object_get(b, "documents") : NULL, *res = json_array();
        size_t i;
        for (i = 0; i < json_array_size(docs); i++)
            json_array_append_new(res, json_pack("{s:i,s:f}", "index", (json_int_t)i,
                "relevance_score", 1.0 / (double)(i + 1)));
        json_object_set_new(o, "id", json_string(id));
        json_object_set_new(o, "results", res);
        json_object_set(o, "usage", usage);
    } else if (strstr(p, "score")) {
        json_object_set_new(o, "id", json_string(id));
        json_object_set_new(o, "object", json_string("list"));
        json_object_set_new(o, "data", json_pack("[{s:i,s:s,s:f}]",
            "index", 0, "object", "score", "score", 0.5));
        json_object_set(o, "usage", usage);
    } else if (strcmp(p, "/tokenize") == 0) {
        json_object_set_new(o, "tokens", json_pack("[i,i,i]", 1, 2, 3));
        json_object_set_new(o, "count", json_integer(3));
        json_object_set_new(o, "max_model_len", json_integer(4096));
    } else if (strcmp(p, "/detokenize") == 0) {
        json_object_set_new(o, "prompt", json_string("tok1 tok2 tok3"));
    } else if (strcmp(p, "/v1/audio/transcriptions") == 0) {
        if (asprintf(&text, "%s heard %zu bytes", fu_name, st->file_len) < 0)
            abort();
        json_object_set_new(o, "text", json_string(text));
    } else {
        json_object_set_new(o, "ok", json_true());
    }
    fu_tag(o, st);
    fu_reply_json(req, 200, o);
    json_decref(usage);
    json_decref(o);
    free(text);
}

/* ---- streaming ------------------------------------------------------------- */

static void fu_stream_tick(evutil_socket_t fd, short what, void *arg);

/* The client closed: count it once; the timer frees the state after the
 * callback returned (libevent still holds the connection here). */
static void fu_close_cb(struct evhttp_connection *evcon, void *arg)
{
    struct fu_state *st = arg;
    struct timeval zero = { 0, 0 };

    if (st->phase == FU_DYING || st->gone)
        return;
    st->gone = 1;
    st->evcon = NULL;
    fu_cancelled++;
    event_del(st->ev);
    event_assign(st->ev, fu_base, -1, 0, fu_stream_tick, st);
    event_add(st->ev, &zero);
}

/* Detaches <st> from its connection and frees it; the reply was finished. */
static void fu_finish(struct fu_state *st)
{
    if (st->evcon)
        evhttp_connection_set_closecb(st->evcon, NULL, NULL);
    fu_state_free(st);
}

static void fu_event(struct fu_state *st, struct evbuffer *buf)
{
    int k = st->sent;
    int last_content = st->chunks;          /* index of the finish event */
    const char *obj = st->chat ? "chat.completion.chunk" : "text_completion";
    const char *pre = st->chat ? "chatcmpl" : "cmpl";

    if (k < st->chunks) {
        if (st->chat)
            evbuffer_add_printf(buf,
                "data: {\"id\":\"%s-%s-%lu\",\"object\":\"%s\",\"created\":%ld,"
                "\"model\":%s,\"choices\":[{\"index\":0,\"delta\":{%s\"content\":\"tok%d \"},"
                "\"logprobs\":null,\"finish_reason\":null}]}\n\n",
                pre, fu_name, st->seq, obj, st->created, st->model_json,
                k == 0 ? "\"role\":\"assistant\"," : "", k);
        else
            evbuffer_add_printf(buf,
                "data: {\"id\":\"%s-%s-%lu\",\"object\":\"%s\",\"created\":%ld,"
                "\"model\":%s,\"choices\":[{\"index\":0,\"text\":\"tok%d \","
                "\"logprobs\":null,\"finish_reason\":null}]}\n\n",
                pre, fu_name, st->seq, obj, st->created, st->model_json, k);
    } else if (k == last_content) {
        if (st->chat)
            evbuffer_add_printf(buf,
                "data: {\"id\":\"%s-%s-%lu\",\"object\":\"%s\",\"created\":%ld,"
                "\"model\":%s,\"choices\":[{\"index\":0,\"delta\":{},"
                "\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n",
                pre, fu_name, st->seq, obj, st->created, st->model_json);
        else
            evbuffer_add_printf(buf,
                "data: {\"id\":\"%s-%s-%lu\",\"object\":\"%s\",\"created\":%ld,"
                "\"model\":%s,\"choices\":[{\"index\":0,\"text\":\"\","
                "\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n",
                pre, fu_name, st->seq, obj, st->created, st->model_json);
    } else if (k == last_content + 1 && st->include_usage) {
        long pt = (long)st->body_len / 4 + 1;
        evbuffer_add_printf(buf,
            "data: {\"id\":\"%s-%s-%lu\",\"object\":\"%s\",\"created\":%ld,"
            "\"model\":%s,\"choices\":[],\"usage\":{\"prompt_tokens\":%ld,"
            "\"completion_tokens\":%d,\"total_tokens\":%ld}}\n\n",
            pre, fu_name, st->seq, obj, st->created, st->model_json,
            pt, st->chunks, pt + st->chunks);
    } else {
        evbuffer_add_printf(buf, "data: [DONE]\n\n");
    }
}

static int fu_total_events(struct fu_state *st)
{
    return st->chunks + 1 + (st->include_usage ? 1 : 0) + 1;
}

/* Closes the connection without ending the chunked body, once what was
 * written reached the kernel. */
static void fu_die(struct fu_state *st)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(st->evcon);
    struct timeval ms = { 0, 1000 };

    if (evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
        event_add(st->ev, &ms);
        return;
    }
    st->phase = FU_DYING;
    evhttp_connection_set_closecb(st->evcon, NULL, NULL);
    evhttp_connection_free(st->evcon);     /* frees st->req as well */
    st->req = NULL;
    st->evcon = NULL;
    fu_state_free(st);
}

static void fu_stream_tick(evutil_socket_t fd, short what, void *arg)
{
    struct fu_state *st = arg;
    struct evbuffer *buf;
    int total = fu_total_events(st);

    if (st->gone) {
        /* the request was detached from its connection: ending it frees it */
        if (st->req)
            evhttp_send_reply_end(st->req);
        st->req = NULL;
        fu_state_free(st);
        return;
    }
    if (st->phase == FU_DYING) {
        fu_die(st);
        return;
    }
    buf = evbuffer_new();
    do {
        if (st->die_after >= 0 && st->sent >= st->die_after) {
            evbuffer_free(buf);
            st->phase = FU_DYING;
            fu_die(st);
            return;
        }
        fu_event(st, buf);
        evhttp_send_reply_chunk(st->req, buf);
        st->sent++;
    } while (st->interval_ms == 0 && st->sent < total);
    evbuffer_free(buf);
    if (st->sent >= total && !(st->die_after >= 0 && st->sent >= st->die_after)) {
        evhttp_send_reply_end(st->req);
        st->req = NULL;
        fu_finish(st);
        return;
    }
    {
        struct timeval tv = { st->interval_ms / 1000, (st->interval_ms % 1000) * 1000 };
        if (st->sent >= total)
            tv.tv_sec = 0, tv.tv_usec = 0;    /* die right after the last */
        event_add(st->ev, &tv);
    }
}

/* Sends the answer now: error, stream start, or a JSON body. */
static void fu_respond(struct fu_state *st)
{
    char msg[128];

    if (st->status != 200) {
        snprintf(msg, sizeof(msg), "fake upstream %s: status %d", fu_name, st->status);
        fu_reply_error(st->req, st->status, msg);
        st->req = NULL;
        fu_finish(st);
        return;
    }
    if (st->stream && (strcmp(st->path, "/v1/chat/completions") == 0 ||
                       strcmp(st->path, "/v1/completions") == 0)) {
        struct evkeyvalq *h = evhttp_request_get_output_headers(st->req);
        evhttp_add_header(h, "Content-Type", "text/event-stream");
        evhttp_add_header(h, "Cache-Control", "no-cache");
        evhttp_send_reply_start(st->req, 200, "OK");
        st->phase = FU_STREAM;
        event_assign(st->ev, fu_base, -1, 0, fu_stream_tick, st);
        fu_stream_tick(-1, 0, st);
        return;
    }
    fu_reply_ok(st);
    st->req = NULL;
    fu_finish(st);
}

/* evhttp does not read while a request waits for its reply, so a client that
 * went away during a delay or a hang is found by peeking at the socket. */
static int fu_peer_closed(struct fu_state *st)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(st->evcon);
    evutil_socket_t fd = bufferevent_getfd(bev);
    char c;
    ssize_t n;

    if (fd == -1)
        return 1;
    n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

#define FU_POLL_MS 50

/* Delay and hang timer: answers when the deadline passed, polls the client
 * meanwhile and drops the request if it left. */
static void fu_delay_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fu_state *st = arg;
    struct timeval now, tv;
    long left_ms;

    if (st->gone) {
        fu_stream_tick(-1, 0, st);
        return;
    }
    if (fu_peer_closed(st)) {
        fu_cancelled++;
        st->phase = FU_DYING;
        evhttp_connection_set_closecb(st->evcon, NULL, NULL);
        evhttp_connection_free(st->evcon);     /* frees st->req as well */
        st->req = NULL;
        st->evcon = NULL;
        fu_state_free(st);
        return;
    }
    evutil_gettimeofday(&now, NULL);
    left_ms = (st->deadline.tv_sec - now.tv_sec) * 1000L +
              (st->deadline.tv_usec - now.tv_usec) / 1000L;
    if (st->phase == FU_DELAY && left_ms <= 0) {
        fu_respond(st);
        return;
    }
    if (st->phase == FU_HANG || left_ms > FU_POLL_MS)
        left_ms = FU_POLL_MS;
    tv.tv_sec = left_ms / 1000;
    tv.tv_usec = (left_ms % 1000) * 1000;
    event_add(st->ev, &tv);
}

/* ---- request parsing --------------------------------------------------------- */

static int fu_int_field(json_t *b, const char *k, int dflt)
{
    json_t *v = b ? json_object_get(b, k) : NULL;
    return json_is_integer(v) ? (int)json_integer_value(v) : dflt;
}

static const char *fu_memmem(const char *h, size_t hn, const char *n)
{
    return memmem(h, hn, n, strlen(n));
}

/* Finds the "model" field and the file part's size in a multipart body. */
static void fu_multipart(struct fu_state *st, const char *ctype,
                         const char *body, size_t len)
{
    const char *bd = strstr(ctype, "boundary=");
    char delim[256];
    const char *p, *end = body + len;

    if (!bd)
        return;
    bd += 9;
    if (*bd == '"')
        bd++;
    snprintf(delim, sizeof(delim), "\r\n--%.*s", (int)strcspn(bd, "\";"), bd);
    p = body;
    while (p < end) {
        const char *hdr_end, *next, *name;
        const char *part = fu_memmem(p, (size_t)(end - p), delim + 2);
        if (!part)
            break;
        part += strlen(delim + 2);
        if (part + 2 <= end && part[0] == '-' && part[1] == '-')
            break;
        hdr_end = fu_memmem(part, (size_t)(end - part), "\r\n\r\n");
        if (!hdr_end)
            break;
        next = fu_memmem(hdr_end + 4, (size_t)(end - hdr_end - 4), delim);
        if (!next)
            next = end;
        name = fu_memmem(part, (size_t)(hdr_end - part), "name=\"");
        if (name) {
            name += 6;
            if (strncmp(name, "model\"", 6) == 0 && !st->mp_model)
                st->mp_model = strndup(hdr_end + 4, (size_t)(next - hdr_end - 4));
            else if (fu_memmem(part, (size_t)(hdr_end - part), "filename="))
                st->file_len = (size_t)(next - hdr_end - 4);
        }
        p = next;
    }
}

static void fu_get(struct evhttp_request *req, const char *path)
{
    json_t *o;

    if (strcmp(path, "/health") == 0) {
        struct evbuffer *out = evbuffer_new();
        evhttp_add_header(evhttp_request_get_output_headers(req),
                          "Content-Type", "application/json");
        evbuffer_add(out, "{}", 2);
        evhttp_send_reply(req, fu_opt.health_status, "Health", out);
        evbuffer_free(out);
        return;
    }
    if (strcmp(path, "/v1/models") == 0) {
        o = json_pack("{s:s,s:[{s:s,s:s,s:i,s:s}]}", "object", "list", "data",
                      "id", fu_name, "object", "model", "created", 1700000000,
                      "owned_by", "fake-upstream");
    } else if (strcmp(path, "/stats") == 0) {
        o = json_pack("{s:I,s:I,s:I,s:I,s:s}", "requests", (json_int_t)fu_requests,
                      "in_flight", (json_int_t)fu_in_flight,
                      "cancelled", (json_int_t)fu_cancelled,
                      "connections", (json_int_t)fu_connections, "name", fu_name);
    } else if (strcmp(path, "/load") == 0) {
        o = json_pack("{s:I,s:i,s:i,s:i}", "running", (json_int_t)fu_in_flight,
                      "waiting", 0, "kv_blocks_free", 1000, "kv_blocks_total", 1000);
    } else {
        fu_reply_error(req, 404, "not found");
        return;
    }
    fu_reply_json(req, 200, o);
    json_decref(o);
}

static void fu_request_cb(struct evhttp_request *req, void *arg)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";
    const char *ctype;
    struct fu_sha256 sha;
    struct fu_state *st;
    char hex[65], seqs[32];
    json_t *b = NULL;
    int i, known = 0;
    json_error_t jerr;

    if (!path) {
        evhttp_send_error(req, 400, NULL);
        return;
    }
    fu_requests++;
    fu_seq++;
    {
        char *peer = NULL;
        ev_uint16_t pport = 0;
        evhttp_connection_get_peer(evhttp_request_get_connection(req), &peer, &pport);
        if (pport != 0 && !(fu_ports_seen[pport / 8] & (1u << (pport % 8)))) {
            fu_ports_seen[pport / 8] |= (unsigned char)(1u << (pport % 8));
            fu_connections++;
        }
    }
    fu_sha256_init(&sha);
    fu_sha256_update(&sha, (const unsigned char *)body, len);
    fu_sha256_final_hex(&sha, hex);
    snprintf(seqs, sizeof(seqs), "%lu", fu_seq);
    evhttp_add_header(oh, "x-fake-upstream", fu_name);
    evhttp_add_header(oh, "x-fake-body-sha256", hex);
    evhttp_add_header(oh, "x-fake-path", path);
    evhttp_add_header(oh, "x-fake-seq", seqs);

    if (evhttp_request_get_command(req) == EVHTTP_REQ_GET) {
        fu_get(req, path);
        return;
    }
    for (i = 0; fu_post_paths[i]; i++)
        if (strcmp(path, fu_post_paths[i]) == 0)
            known = 1;
    if (!known) {
        fu_reply_error(req, 404, "unknown path");
        return;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        evhttp_add_header(oh, "Allow", "POST");
        fu_reply_error(req, 405, "method not allowed");
        return;
    }

    st = calloc(1, sizeof(*st));
    if (!st)
        abort();
    st->req = req;
    st->evcon = evhttp_request_get_connection(req);
    st->path = strdup(path);
    st->body_len = len;
    st->seq = fu_seq;
    st->created = (long)time(NULL);
    st->chat = strcmp(path, "/v1/chat/completions") == 0;
    st->ev = evtimer_new(fu_base, fu_delay_cb, st);
    st->next = fu_active;
    if (fu_active)
        fu_active->prev = st;
    fu_active = st;
    fu_in_flight++;

    ctype = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    if (ctype && strncasecmp(ctype, "multipart/form-data", 19) == 0) {
        fu_multipart(st, ctype, body, len);
    } else {
        b = json_loadb(body, len, 0, &jerr);
        if (!b || !json_is_object(b)) {
            char msg[300];
            snprintf(msg, sizeof(msg), "invalid JSON body: %s", b ? "not an object" : jerr.text);
            json_decref(b);
            fu_reply_error(req, 400, msg);
            st->req = NULL;
            fu_finish(st);
            return;
        }
    }
    st->body = b;
    {
        json_t *m = b ? json_object_get(b, "model") : NULL;
        json_t *so = b ? json_object_get(b, "stream_options") : NULL;
        json_t *tmp = NULL;
        if (!m && st->mp_model)
            m = tmp = json_string(st->mp_model);
        st->model_json = json_dumps(m ? m : json_null(), JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(tmp);
        st->stream = b && json_is_true(json_object_get(b, "stream"));
        st->include_usage = json_is_true(json_object_get(so, "include_usage"));
    }
    st->status = fu_int_field(b, "fake_status", fu_opt.status);
    st->chunks = fu_int_field(b, "fake_chunks", fu_opt.chunks);
    st->interval_ms = fu_int_field(b, "fake_chunk_interval_ms", fu_opt.chunk_interval_ms);
    st->die_after = fu_int_field(b, "fake_die_after_chunks", fu_opt.die_after);
    if (st->chunks < 0)
        st->chunks = 0;
    if (st->interval_ms < 0)
        st->interval_ms = 0;

    evhttp_connection_set_closecb(st->evcon, fu_close_cb, st);
    if ((b && json_is_true(json_object_get(b, "fake_hang"))) ||
        (fu_opt.hang && !(b && json_is_false(json_object_get(b, "fake_hang"))))) {
        st->phase = FU_HANG;
        fu_delay_cb(-1, 0, st);
        return;
    }
    {
        int delay = fu_int_field(b, "fake_delay_ms", fu_opt.delay_ms);
        if (delay > 0) {
            struct timeval tv = { delay / 1000, (delay % 1000) * 1000 };
            evutil_gettimeofday(&st->deadline, NULL);
            evutil_timeradd(&st->deadline, &tv, &st->deadline);
            st->phase = FU_DELAY;
            fu_delay_cb(-1, 0, st);
            return;
        }
    }
    fu_respond(st);
}

/* ---- main -------------------------------------------------------------------- */

static void fu_signal_cb(evutil_socket_t sig, short what, void *arg)
{
    event_base_loopexit(fu_base, NULL);
}

static void fu_usage(void)
{
    fprintf(stderr,
        "usage: fake-upstream --listen HOST:PORT|unix:PATH [--name ID] [--status CODE]\n"
        "       [--delay-ms N] [--chunks N] [--chunk-interval-ms N] [--die-after-chunks N]\n"
        "       [--hang] [--health-status CODE] [--pid-file F]\n");
}

/* Binds <addr>; prints the bound address into <shown>. Returns 0 or -1. */
static int fu_listen(struct evhttp *http, const char *addr, char *shown, size_t cap)
{
    if (strncmp(addr, "unix:", 5) == 0) {
        struct sockaddr_un sun;
        evutil_socket_t fd;
        const char *p = addr + 5;

        if (strlen(p) >= sizeof(sun.sun_path)) {
            fprintf(stderr, "fake-upstream: unix path too long\n");
            return -1;
        }
        memset(&sun, 0, sizeof(sun));
        sun.sun_family = AF_UNIX;
        strcpy(sun.sun_path, p);
        unlink(p);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd == -1 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
            listen(fd, 1024) == -1) {
            fprintf(stderr, "fake-upstream: %s: %s\n", addr, strerror(errno));
            if (fd != -1)
                close(fd);
            return -1;
        }
        evutil_make_socket_nonblocking(fd);
        if (!evhttp_accept_socket_with_handle(http, fd)) {
            fprintf(stderr, "fake-upstream: cannot accept on %s\n", addr);
            close(fd);
            return -1;
        }
        snprintf(shown, cap, "%s", addr);
        return 0;
    } else {
        char host[256];
        const char *colon = strrchr(addr, ':');
        struct evhttp_bound_socket *bs;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int port;
        size_t hl;

        if (!colon) {
            fprintf(stderr, "fake-upstream: bad --listen %s\n", addr);
            return -1;
        }
        hl = (size_t)(colon - addr);
        if (hl >= sizeof(host))
            return -1;
        memcpy(host, addr, hl);
        host[hl] = '\0';
        if (host[0] == '[' && hl > 1 && host[hl - 1] == ']') {
            memmove(host, host + 1, hl - 2);
            host[hl - 2] = '\0';
        }
        port = atoi(colon + 1);
        bs = evhttp_bind_socket_with_handle(http, host[0] ? host : "0.0.0.0",
                                            (ev_uint16_t)port);
        if (!bs) {
            fprintf(stderr, "fake-upstream: cannot bind %s: %s\n", addr, strerror(errno));
            return -1;
        }
        if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &sl) == 0) {
            if (ss.ss_family == AF_INET6)
                port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
            else
                port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        }
        if (strchr(host, ':'))
            snprintf(shown, cap, "[%s]:%d", host, port);
        else
            snprintf(shown, cap, "%s:%d", host[0] ? host : "0.0.0.0", port);
        return 0;
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "listen", required_argument, NULL, 'l' },
        { "name", required_argument, NULL, 'n' },
        { "status", required_argument, NULL, 's' },
        { "delay-ms", required_argument, NULL, 'd' },
        { "chunks", required_argument, NULL, 'c' },
        { "chunk-interval-ms", required_argument, NULL, 'i' },
        { "die-after-chunks", required_argument, NULL, 'D' },
        { "hang", no_argument, NULL, 'H' },
        { "health-status", required_argument, NULL, 'h' },
        { "pid-file", required_argument, NULL, 'p' },
        { NULL, 0, NULL, 0 }
    };
    const char *listen_addr = NULL, *pid_file = NULL;
    struct evhttp *http = NULL;
    struct event *sigterm = NULL, *sigint = NULL;
    char shown[512];
    int c, rc = 1;

    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'l': listen_addr = optarg; break;
        case 'n': fu_name = optarg; break;
        case 's': fu_opt.status = atoi(optarg); break;
        case 'd': fu_opt.delay_ms = atoi(optarg); break;
        case 'c': fu_opt.chunks = atoi(optarg); break;
        case 'i': fu_opt.chunk_interval_ms = atoi(optarg); break;
        case 'D': fu_opt.die_after = atoi(optarg); break;
        case 'H': fu_opt.hang = 1; break;
        case 'h': fu_opt.health_status = atoi(optarg); break;
        case 'p': pid_file = optarg; break;
        default: fu_usage(); return 2;
        }
    }
    if (!listen_addr || optind != argc) {
        fu_usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    fu_base = event_base_new();
    if (!fu_base)
        return 1;
    http = evhttp_new(fu_base);
    if (!http)
        goto err;
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
        EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
        EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_timeout(http, 3600);
    evhttp_set_gencb(http, fu_request_cb, NULL);
    if (fu_listen(http, listen_addr, shown, sizeof(shown)) == -1)
        goto err;
    if (pid_file) {
        FILE *f = fopen(pid_file, "w");
        if (!f) {
            fprintf(stderr, "fake-upstream: %s: %s\n", pid_file, strerror(errno));
            goto err;
        }
        fprintf(f, "%ld\n", (long)getpid());
        fclose(f);
    }
    sigterm = evsignal_new(fu_base, SIGTERM, fu_signal_cb, NULL);
    sigint = evsignal_new(fu_base, SIGINT, fu_signal_cb, NULL);
    event_add(sigterm, NULL);
    event_add(sigint, NULL);
    printf("listening on %s\n", shown);
    fflush(stdout);

    event_base_dispatch(fu_base);
    rc = 0;

err:
    /* pending requests: detach from their connections before evhttp_free
     * frees those (and the requests still queued on them) */
    while (fu_active) {
        struct fu_state *st = fu_active;
        if (st->evcon)
            evhttp_connection_set_closecb(st->evcon, NULL, NULL);
        else if (st->req)
            evhttp_request_free(st->req);
        fu_state_free(st);
    }
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    if (http)
        evhttp_free(http);
    event_base_free(fu_base);
    if (pid_file && rc == 0)
        unlink(pid_file);
    if (strncmp(listen_addr, "unix:", 5) == 0 && rc == 0)
        unlink(listen_addr + 5);
    return rc;
}
