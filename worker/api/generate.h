/*
 * generate.h -- one chat or completion request in flight: its n x prompts
 * engine requests (choices), and per choice the text pipeline
 * detokenizer -> stop strings -> reasoning parser -> tool-call parser, the
 * tokens and logprobs. chat.c and completions.c format what it produces
 * (stream chunks or the final object) through struct gen_ops.
 */
#ifndef LLMUX_API_GENERATE_H
#define LLMUX_API_GENERATE_H

#include <stdint.h>
#include <jansson.h>

#include "engine.h"
#include "reasoning.h"
#include "request.h"
#include "stop.h"
#include "strbuf.h"
#include "tokenizer.h"
#include "toolcall.h"

struct wk;
struct wk_conn;
struct wk_gen;

/* What one engine output added to a choice. */
struct gen_delta {
    struct strbuf text;             /* completions: text; chat: content */
    struct strbuf reasoning;        /* chat with a reasoning parser */
    struct toolcall_delta *tools;
    int n_tools;
    int tok_from, tok_to;           /* new tokens: ch->tokens[tok_from..tok_to) */
    int first;                      /* the choice's first delta */
    const char *finish;             /* the choice finished: its finish_reason */
};

struct gen_choice {
    int index;                      /* choice index in the response */
    int prompt;                     /* index into req.prompts */
    uint64_t req_id;                /* engine request */
    int started, done;
    struct detok dt;
    struct stop_matcher stop;
    struct reasoning_state rs;
    struct toolcall_stream tc;
    int use_reasoning, use_tools;
    struct strbuf text, reasoning;  /* everything released so far */
    struct strbuf content;          /* chat: content after the parsers */
    json_t *tool_calls;             /* chat: [{id, type, function{name, arguments}}] */
    int32_t *tokens;
    int n_tokens, cap_tokens;
    struct token_logprob *lps;      /* (n_tokens) when logprobs asked */
    struct token_logprob *plps;     /* prompt logprobs (echo) */
    int n_plps;
    int n_cached;
    long lp_offset;                 /* completions logprobs: text_offset so far */
    const char *finish;             /* "stop", "length", "tool_calls", "abort" */
    json_t *stop_reason;            /* stop string or token id, or NULL */
    char error[160];
};

struct gen_ops {
    /* a choice made progress (stream); may be NULL for non-stream */
    void (*delta)(struct wk_gen *g, struct gen_choice *ch, struct gen_delta *d);
    /* every choice is done: answer (non-stream) or end the stream */
    void (*done)(struct wk_gen *g);
};

struct wk_gen {
    struct wk_gen *next, *prev;     /* in wk->gens */
    struct wk *w;
    struct wk_conn *conn;           /* NULL once the client left */
    const struct gen_ops *ops;
    struct api_request req;
    char id[48];                    /* chatcmpl-... / cmpl-... */
    int64_t created;
    int n_choices, n_done;
    struct gen_choice *ch;
    int failed;                     /* an engine error ended a choice */
};

/*
 * Start <req> (stolen: the gen owns it) for connection <c>: one engine
 * request per prompt and choice. Returns the gen (linked into w->gens and
 * attached to <c>), or NULL when the engine refused (answer sent).
 */
struct wk_gen *gen_start(struct wk *w, struct wk_conn *c, struct api_request *req,
                         const struct gen_ops *ops, const char *id_prefix);
/* Route one engine output (its request id) to its gen; consumes <o>'s
 * logprob arrays but not <o> itself. */
void gen_dispatch_output(struct wk *w, struct engine_output *o);
/* The client went away: abort every choice and free the gen. */
void gen_abort(struct wk_gen *g);
/* Finished and answered: unlink and free. */
void gen_free(struct wk_gen *g);

/* Helpers for the formatters. */
/* The token's text as a JSON string ("token_id:N" when asked). New. */
json_t *gen_token_json(struct wk_gen *g, int32_t id);
/* The token's raw bytes as a JSON list of ints. New. */
json_t *gen_token_bytes(struct wk_gen *g, int32_t id);
/* JSON array of ids[from..to). */
json_t *gen_token_ids(const int32_t *ids, int from, int to);
/* A new answer object: id, <object>, created, model. */
json_t *gen_object_new(struct wk_gen *g, const char *object);
/* max(logprob, -9999) as vLLM (JSON has no -inf). */
double gen_logprob_value(float lp);
/* usage: prompt tokens once per prompt, completion tokens of every choice. New. */
json_t *gen_usage(struct wk_gen *g);
/* A new random hex id "<prefix><32 hex>". */
void gen_new_id(char *buf, size_t len, const char *prefix);

#endif
