/*
 * request.h -- parsing and validation of the OpenAI request bodies the
 * worker serves (chat completions, completions, tokenize): every field of
 * the DESIGN.md contract with vLLM's names, defaults (generation_config.json
 * applied as vLLM does) and limits; bad input becomes an api_err naming the
 * parameter (a 400, or 404 for an unknown model). Chat messages are rendered
 * with the chat template and tokenized here. No I/O, no engine calls.
 */
#ifndef LLMUX_API_REQUEST_H
#define LLMUX_API_REQUEST_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "engine.h"

struct tokenizer;
struct chat_template;

struct api_err {
    int status;                 /* 400, 404, ... */
    char param[48];             /* "" when no parameter is to blame */
    char message[512];
};

/* Sampling defaults from generation_config.json (has_* set when present). */
struct api_defaults {
    int has_temperature, has_top_p, has_top_k, has_min_p, has_repetition_penalty;
    float temperature, top_p, min_p, repetition_penalty;
    int top_k;
    int max_new_tokens;         /* 0: none */
};

/* What request parsing needs from the worker; all borrowed. */
struct api_ctx {
    const struct tokenizer *tok;
    const struct chat_template *tmpl;   /* NULL: chat requests are refused */
    int max_model_len;
    struct api_defaults defs;
    char *const *served_names;  /* the first is the default model name */
    int n_served;
    int reasoning;              /* enum reasoning_kind of the worker */
    int toolcall;               /* enum toolcall_kind of the worker */
};

enum api_kind { API_CHAT = 0, API_COMPLETION };

#define API_MAX_N        128
#define API_MAX_STOP     64
#define API_MAX_LOGPROBS 20

struct api_prompt {
    int32_t *ids;               /* malloc'd */
    int n_ids;
    char *text;                 /* the prompt's text (decoded for id prompts) */
};

struct api_request {
    enum api_kind kind;
    char *model;                /* the served name to answer with */
    int stream, include_usage;
    int n;
    int echo;                   /* completions */
    int logprobs;               /* -1: none; N: chosen token + top N */
    int return_token_ids, return_tokens_as_token_ids, skip_special_tokens;
    int priority;
    int max_tokens_given;
    struct sampling_params sp;  /* max_tokens is per prompt: see prompt_max_tokens */
    char **stop;                /* stop strings */
    int n_stop;
    struct api_prompt *prompts; /* chat: one */
    int n_prompts;
    int n_prompt_slots;         /* allocated entries of prompts */
    int *prompt_max_tokens;     /* (n_prompts) */
    /* chat */
    int parse_tools;            /* tools given, tool_choice not "none", parser set */
    int thinking_enabled;       /* chat_template_kwargs.enable_thinking != false */
};

/*
 * Parse body <body> (<len> bytes) of a <kind> request into <req> (zeroed
 * here; free with api_request_free() whatever the result). <routed> is the
 * x-llmux-model header the gateway adds (NULL when absent): the model the
 * gateway resolved the body's "model" (an alias or a route) to; when it is
 * one of the served names, the body's name is accepted as it is and echoed
 * in the answer. 0, or -1 with <err> filled.
 */
int api_request_parse(const struct api_ctx *ctx, enum api_kind kind, const char *body,
                      size_t len, const char *routed, struct api_request *req,
                      struct api_err *err);
void api_request_free(struct api_request *req);

/*
 * Render a chat request's messages (validated) with the template: <root> is
 * the request object (messages, tools, tool_choice, chat_template_kwargs,
 * add_generation_prompt, continue_final_message). *text is new (caller
 * frees). 0, or -1 with <err>. *thinking gets enable_thinking (default 1).
 */
int api_chat_render(const struct api_ctx *ctx, json_t *root, char **text, int *thinking,
                    int *has_tools, struct api_err *err);

/* The "model" field of <root>: absent or null means the first served name;
 * a served name, or any name when <routed> (x-llmux-model) is served. 0 with
 * *model new (caller frees), or -1 (400 wrong type, 404 unknown). */
int api_parse_model(const struct api_ctx *ctx, json_t *root, const char *routed, char **model,
                    struct api_err *err);

/* Fill <err> (printf-style message). Always returns -1. */
int api_err_set(struct api_err *err, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
