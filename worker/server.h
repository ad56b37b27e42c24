/*
 * server.h -- llmux-worker's process state and its HTTP/1.1 server on
 * libevent + common/http.c: one listener (unix socket or TCP), keep-alive
 * connections reading one request at a time with a body limit, a route
 * table, plain and chunked (SSE) responses, the engine's eventfd and the
 * graceful stop. Routes live in worker/api/; they answer through wk_conn_*.
 */
#ifndef LLMUX_WK_SERVER_H
#define LLMUX_WK_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "api/request.h"

struct event_base;
struct event;
struct evconnlistener;
struct engine;
struct engine_output;
struct model;
struct tokenizer;
struct chat_template;
struct kn_backend;
struct wk_conn;
struct wk_gen;
struct wk_enc;
struct encoder;
struct encode_engine;
struct enc_prep;
struct wk_asr;
struct asr_engine;
struct spm_model;
struct sensevoice;
struct fbank_frontend;

/* What the worker serves (its routes): from config.json's architectures
 * or --task. */
enum wk_task { WK_TASK_CHAT = 0, WK_TASK_EMBED, WK_TASK_RERANK, WK_TASK_TRANSCRIBE };
const char *wk_task_name(int task);

struct wk {
    struct event_base *base;
    struct api_ctx api;             /* what request parsing needs */
    struct tokenizer *tok;
    struct chat_template *tmpl;
    struct model *model;
    struct kn_backend *be;
    struct engine *eng;             /* chat workers */
    int task;                       /* enum wk_task */
    /* encoder workers (embed, rerank) */
    struct encoder *encoder;
    struct encode_engine *encq;
    struct wk_enc *encs;            /* encoder requests in flight */
    struct enc_prep *prep;          /* their tokenizing thread (started on first use) */
    int max_batch_inputs;
    int enc_hidden, enc_n_labels, enc_colbert_dim, enc_has_sparse, enc_has_colbert;
    /* transcribe workers (SenseVoice) */
    struct sensevoice *sv;
    struct fbank_frontend *frontend;
    struct spm_model *spm;          /* the .bpe.model pieces: ids -> text */
    struct asr_engine *asrq;
    struct wk_asr *asrs;            /* transcriptions in flight */
    char **served;                  /* served names (api.served_names) */
    int n_served;
    char *model_dir;
    size_t max_body;                /* request body limit (bytes) */
    int64_t started;                /* wall clock, for /v1/models "created" */
    /* server */
    struct evconnlistener *listener;
    char *unix_path;                /* unlinked at exit */
    struct wk_conn *conns;
    int n_conns;
    struct wk_gen *gens;            /* generations in flight */
    uint64_t next_req_id;
    int notify_fd;                  /* eventfd the engine thread writes */
    struct event *notify_ev;
    int shutting_down;
    struct event *stop_timer;       /* bound on the graceful stop */
};

/* Listen on "unix:PATH" or "HOST:PORT". 0 or -1 (logged). */
int wk_server_listen(struct wk *w, const char *addr);
/* Create the eventfd and its event; wk_engine_notify is the engine's
 * notify callback (arg: the struct wk). 0 or -1. */
int wk_server_notify_init(struct wk *w);
void wk_engine_notify(void *arg);
/* Close the eventfd: only once the engine thread is stopped. */
void wk_server_notify_free(struct wk *w);
/* Graceful stop: close the listener and idle connections; in-flight
 * requests finish (or are aborted after <grace_ms>); the loop exits when
 * nothing is left. */
void wk_server_shutdown(struct wk *w, int grace_ms);
/* Close connections (aborting their generations or encoder requests: the
 * engine must still run), the listener and the unix socket file. */
void wk_server_free(struct wk *w);

/* ---- answering a request (routes) ------------------------------------------ */
/* Whole response; <body> copied. The connection goes on (keep-alive) or closes. */
void wk_conn_respond(struct wk_conn *c, int status, const char *content_type, const char *body,
                     size_t len);
/* JSON response; <j> is stolen. */
void wk_conn_respond_json(struct wk_conn *c, int status, json_t *j);
void wk_conn_error(struct wk_conn *c, const struct api_err *e);
void wk_conn_error_msg(struct wk_conn *c, int status, const char *param, const char *msg);
/* SSE: headers (200, text/event-stream, chunked), then events, then end. */
void wk_conn_sse_start(struct wk_conn *c);
/* One "data: <json>\n\n" event; <j> is stolen. */
void wk_conn_sse_json(struct wk_conn *c, json_t *j);
/* "data: [DONE]", the last chunk, and the request is finished. */
void wk_conn_sse_end(struct wk_conn *c);
/* Attach/detach the generation a connection waits for (aborted if the
 * client goes away). */
void wk_conn_set_gen(struct wk_conn *c, struct wk_gen *g);
/* The same for an encoder request (cancelled if the client goes away). */
void wk_conn_set_enc(struct wk_conn *c, struct wk_enc *j);
/* The same for a transcription. */
void wk_conn_set_asr(struct wk_conn *c, struct wk_asr *j);
struct wk *wk_conn_worker(struct wk_conn *c);
const char *wk_conn_body(struct wk_conn *c, size_t *len);
/* Borrowed value of request header <name> (case-insensitive), or NULL. */
const char *wk_conn_header(struct wk_conn *c, const char *name);

#endif
