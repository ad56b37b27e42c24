/*
 * request.c -- OpenAI request bodies to api_request: one checker per field
 * (type, range, the vLLM message), the chat messages and tools validated and
 * rendered through the chat template, prompts tokenized and the context
 * length enforced. Every error names its parameter; nothing here trusts a
 * field's type before checking it.
 */
#include "request.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"
#include "reasoning.h"
#include "strbuf.h"
#include "tokenizer.h"
#include "toolcall.h"
#include "util.h"

int api_err_set(struct api_err *err, int status, const char *param, const char *fmt, ...)
{
    va_list ap;
    err->status = status;
    snprintf(err->param, sizeof(err->param), "%s", param ? param : "");
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- scalar fields: 1 when set, 0 when absent or null, -1 on error -------- */

static int get_bool(json_t *root, const char *key, int *out, struct api_err *err)
{
    json_t *v = json_object_get(root, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return api_err_set(err, 400, key, "'%s' must be a boolean", key);
    *out = json_is_true(v);
    return 1;
}

static int get_num(json_t *root, const char *key, double lo, double hi, int lo_open,
                   double *out, struct api_err *err)
{
    json_t *v = json_object_get(root, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return api_err_set(err, 400, key, "'%s' must be a number", key);
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi || (lo_open && d == lo))
        return api_err_set(err, 400, key, "'%s' must be in %s%g, %g], got %g", key,
                           lo_open ? "(" : "[", lo, hi, d);
    *out = d;
    return 1;
}

static int get_int(json_t *root, const char *key, long long lo, long long hi, long long *out,
                   struct api_err *err)
{
    json_t *v = json_object_get(root, key);
    if (v == NULL || json_is_null(v))
        return 0;
    long long x;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
               fabs(json_real_value(v)) < 9e15) {
        x = (long long)json_real_value(v);
    } else {
        return api_err_set(err, 400, key, "'%s' must be an integer", key);
    }
    if (x < lo || x > hi)
        return api_err_set(err, 400, key, "'%s' must be between %lld and %lld, got %lld", key, lo,
                           hi, x);
    *out = x;
    return 1;
}

/* ---- sampling fields shared by chat and completions ------------------------------ */

static int parse_stop(json_t *root, struct api_request *req, struct api_err *err)
{
    json_t *v = json_object_get(root, "stop");
    if (v == NULL || json_is_null(v))
        return 0;
    if (json_is_string(v)) {
        req->stop = xcalloc(1, sizeof(char *));
        req->stop[0] = xstrdup(json_string_value(v));
        req->n_stop = 1;
        return 0;
    }
    if (!json_is_array(v))
        return api_err_set(err, 400, "stop", "'stop' must be a string or a list of strings");
    if (json_array_size(v) > API_MAX_STOP)
        return api_err_set(err, 400, "stop", "at most %d stop strings", API_MAX_STOP);
    req->stop = xcalloc(json_array_size(v) + 1, sizeof(char *));
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s) {
        if (!json_is_string(s))
            return api_err_set(err, 400, "stop", "'stop' must be a string or a list of strings");
        req->stop[req->n_stop++] = xstrdup(json_string_value(s));
    }
    return 0;
}

static int parse_stop_ids(const struct api_ctx *ctx, json_t *root, struct api_request *req,
                          struct api_err *err)
{
    json_t *v = json_object_get(root, "stop_token_ids");
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_array(v) || json_array_size(v) > 1024)
        return api_err_set(err, 400, "stop_token_ids", "'stop_token_ids' must be a list of token ids");
    int vocab = tokenizer_vocab_size(ctx->tok);
    req->sp.stop_token_ids = xcalloc(json_array_size(v) + 1, sizeof(int32_t));
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= vocab)
            return api_err_set(err, 400, "stop_token_ids",
                               "'stop_token_ids' must hold token ids in [0, %d)", vocab);
        req->sp.stop_token_ids[req->sp.n_stop_token_ids++] = (int32_t)json_integer_value(x);
    }
    return 0;
}

static int parse_sampling(const struct api_ctx *ctx, json_t *root, struct api_request *req,
                          struct api_err *err)
{
    struct sampling_params *sp = &req->sp;
    const struct api_defaults *d = &ctx->defs;
    double x;
    long long k;
    int b, r;

    sampling_params_default(sp);
    sp->temperature = d->has_temperature ? d->temperature : 1.0f;
    sp->top_p = d->has_top_p ? d->top_p : 1.0f;
    sp->top_k = d->has_top_k ? d->top_k : 0;
    sp->min_p = d->has_min_p ? d->min_p : 0.0f;
    sp->repetition_penalty = d->has_repetition_penalty ? d->repetition_penalty : 1.0f;
    sp->logprobs = -1;
    sp->prompt_logprobs = -1;

    if ((r = get_num(root, "temperature", 0, 1e6, 0, &x, err)) < 0)
        return -1;
    if (r)
        sp->temperature = (float)x;
    if ((r = get_num(root, "top_p", 0, 1, 1, &x, err)) < 0)
        return -1;
    if (r)
        sp->top_p = (float)x;
    if ((r = get_int(root, "top_k", -1, 1 << 30, &k, err)) < 0)
        return -1;
    if (r)
        sp->top_k = (int)k;
    if ((r = get_num(root, "min_p", 0, 1, 0, &x, err)) < 0)
        return -1;
    if (r)
        sp->min_p = (float)x;
    if ((r = get_num(root, "presence_penalty", -2, 2, 0, &x, err)) < 0)
        return -1;
    if (r)
        sp->presence_penalty = (float)x;
    if ((r = get_num(root, "frequency_penalty", -2, 2, 0, &x, err)) < 0)
        return -1;
    if (r)
        sp->frequency_penalty = (float)x;
    if ((r = get_num(root, "repetition_penalty", 0, 1e6, 1, &x, err)) < 0)
        return -1;
    if (r)
        sp->repetition_penalty = (float)x;
    if ((r = get_int(root, "seed", INT64_MIN, INT64_MAX, &k, err)) < 0)
        return -1;
    if (r) {
        sp->has_seed = 1;
        sp->seed = (uint64_t)k;
    }
    if ((r = get_int(root, "n", 1, API_MAX_N, &k, err)) < 0)
        return -1;
    req->n = r ? (int)k : 1;
    if ((r = get_bool(root, "ignore_eos", &b, err)) < 0)
        return -1;
    if (r)
        sp->ignore_eos = b;
    if ((r = get_int(root, "min_tokens", 0, 1 << 30, &k, err)) < 0)
        return -1;
    if (r)
        sp->min_tokens = (int)k;
    /* max_tokens: max_completion_tokens wins (chat) */
    long long mt = 0;
    int have = 0;
    if ((r = get_int(root, "max_tokens", 1, 1 << 30, &k, err)) < 0)
        return -1;
    if (r) {
        mt = k;
        have = 1;
    }
    if (req->kind == API_CHAT) {
        if ((r = get_int(root, "max_completion_tokens", 1, 1 << 30, &k, err)) < 0)
            return -1;
        if (r) {
            mt = k;
            have = 1;
        }
    }
    req->max_tokens_given = have;
    sp->max_tokens = have ? (int)mt : 0;
    if (have && sp->min_tokens > sp->max_tokens)
        return api_err_set(err, 400, "min_tokens",
                           "'min_tokens' (%d) must be less than or equal to 'max_tokens' (%d)",
                           sp->min_tokens, sp->max_tokens);
    if (parse_stop(root, req, err) < 0 || parse_stop_ids(ctx, root, req, err) < 0)
        return -1;
    if ((r = get_int(root, "priority", INT32_MIN, INT32_MAX, &k, err)) < 0)
        return -1;
    req->priority = r ? (int)k : 0;

    /* streaming */
    req->stream = 0;
    if (get_bool(root, "stream", &req->stream, err) < 0)
        return -1;
    json_t *so = json_object_get(root, "stream_options");
    if (so != NULL && !json_is_null(so)) {
        if (!json_is_object(so))
            return api_err_set(err, 400, "stream_options", "'stream_options' must be an object");
        if (!req->stream)
            return api_err_set(err, 400, "stream_options",
                               "Stream options can only be defined when `stream=True`.");
        if (get_bool(so, "include_usage", &req->include_usage, err) < 0)
            return api_err_set(err, 400, "stream_options.include_usage",
                               "'stream_options.include_usage' must be a boolean");
    }
    /* token ids and text options */
    req->skip_special_tokens = 1;
    if (get_bool(root, "skip_special_tokens", &req->skip_special_tokens, err) < 0 ||
        get_bool(root, "return_token_ids", &req->return_token_ids, err) < 0 ||
        get_bool(root, "return_tokens_as_token_ids", &req->return_tokens_as_token_ids, err) < 0)
        return -1;

    /* logprobs */
    if (req->kind == API_CHAT) {
        int lp = 0;
        if (get_bool(root, "logprobs", &lp, err) < 0)
            return -1;
        if ((r = get_int(root, "top_logprobs", 0, API_MAX_LOGPROBS, &k, err)) < 0)
            return -1;
        if (r && k > 0 && !lp)
            return api_err_set(err, 400, "top_logprobs",
                               "when using `top_logprobs`, `logprobs` must be set to true");
        req->logprobs = lp ? (r ? (int)k : 0) : -1;
    } else {
        json_t *v = json_object_get(root, "logprobs");
        if (v != NULL && json_is_boolean(v))
            return api_err_set(err, 400, "logprobs", "'logprobs' must be an integer");
        if ((r = get_int(root, "logprobs", 0, API_MAX_LOGPROBS, &k, err)) < 0)
            return -1;
        req->logprobs = r ? (int)k : -1;
        if (get_bool(root, "echo", &req->echo, err) < 0)
            return -1;
    }
    sp->logprobs = req->logprobs;
    if (req->echo && req->logprobs >= 0)
        sp->prompt_logprobs = req->logprobs;
    return 0;
}

static int is_served(const struct api_ctx *ctx, const char *name)
{
    for (int i = 0; i < ctx->n_served; i++)
        if (strcmp(ctx->served_names[i], name) == 0)
            return 1;
    return 0;
}

int api_parse_model(const struct api_ctx *ctx, json_t *root, const char *routed, char **model,
                    struct api_err *err)
{
    json_t *v = json_object_get(root, "model");
    if (v == NULL || json_is_null(v)) {
        *model = xstrdup(ctx->n_served > 0 ? ctx->served_names[0] : "");
        return 0;
    }
    if (!json_is_string(v))
        return api_err_set(err, 400, "model", "'model' must be a string");
    const char *m = json_string_value(v);
    if (is_served(ctx, m) || (routed != NULL && is_served(ctx, routed))) {
        *model = xstrdup(m);
        return 0;
    }
    return api_err_set(err, 404, "model", "The model `%s` does not exist.", m);
}

static int parse_model(const struct api_ctx *ctx, json_t *root, const char *routed,
                       struct api_request *req, struct api_err *err)
{
    return api_parse_model(ctx, root, routed, &req->model, err);
}

/* ---- chat messages ----------------------------------------------------------------- */

static const char *const ROLES[] = { "system", "user", "assistant", "tool", "developer" };

/* Content as vLLM's "string" format: a string, or the text parts joined by
 * newlines. New reference in *out (a string or null). */
static int message_content(json_t *c, size_t idx, json_t **out, struct api_err *err)
{
    if (c == NULL || json_is_null(c)) {
        *out = json_null();
        return 0;
    }
    if (json_is_string(c)) {
        *out = json_incref(c);
        return 0;
    }
    if (!json_is_array(c))
        return api_err_set(err, 400, "messages",
                           "messages[%zu].content must be a string or a list of content parts", idx);
    struct strbuf b = { 0 };
    size_t i;
    json_t *part;
    json_array_foreach(c, i, part) {
        const char *type = json_string_value(json_object_get(part, "type"));
        json_t *text = json_object_get(part, "text");
        if (!json_is_object(part) || type == NULL || strcmp(type, "text") != 0 ||
            !json_is_string(text)) {
            strbuf_free(&b);
            return api_err_set(err, 400, "messages",
                               "messages[%zu].content[%zu]: only parts {\"type\": \"text\", "
                               "\"text\": ...} are supported", idx, i);
        }
        if (i > 0)
            strbuf_adds(&b, "\n");
        strbuf_add(&b, json_string_value(text), json_string_length(text));
    }
    *out = json_stringn(strbuf_str(&b), b.len);
    strbuf_free(&b);
    return 0;
}

/* Tool calls of an assistant message, arguments strings parsed to objects
 * (as vLLM does before rendering). New reference in *out. */
static int message_tool_calls(json_t *tc, size_t idx, json_t **out, struct api_err *err)
{
    if (!json_is_array(tc))
        return api_err_set(err, 400, "messages", "messages[%zu].tool_calls must be a list", idx);
    json_t *arr = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(tc, i, c) {
        json_t *fn = json_object_get(c, "function");
        json_t *name = json_object_get(fn, "name");
        json_t *args = json_object_get(fn, "arguments");
        if (!json_is_object(c) || !json_is_object(fn) || !json_is_string(name) ||
            (args != NULL && !json_is_string(args) && !json_is_object(args))) {
            json_decref(arr);
            return api_err_set(err, 400, "messages",
                               "messages[%zu].tool_calls[%zu] must be {\"id\", \"type\": "
                               "\"function\", \"function\": {\"name\", \"arguments\"}}", idx, i);
        }
        json_t *copy = json_deep_copy(c);
        if (json_is_string(args)) {
            json_t *parsed = json_loads(json_string_value(args), 0, NULL);
            if (parsed != NULL && json_is_object(parsed))
                json_object_set_new(json_object_get(copy, "function"), "arguments", parsed);
            else
                json_decref(parsed);
        }
        json_array_append_new(arr, copy);
    }
    *out = arr;
    return 0;
}

/* Validated copy of "messages" for the template. New reference or NULL. */
static json_t *check_messages(json_t *root, struct api_err *err)
{
    json_t *msgs = json_object_get(root, "messages");
    if (msgs == NULL || json_is_null(msgs)) {
        api_err_set(err, 400, "messages", "'messages' is required");
        return NULL;
    }
    if (!json_is_array(msgs)) {
        api_err_set(err, 400, "messages", "'messages' must be a list");
        return NULL;
    }
    if (json_array_size(msgs) == 0) {
        api_err_set(err, 400, "messages", "'messages' must not be empty");
        return NULL;
    }
    json_t *out = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        if (!json_is_object(m)) {
            api_err_set(err, 400, "messages", "messages[%zu] must be an object", i);
            goto fail;
        }
        json_t *role = json_object_get(m, "role");
        if (!json_is_string(role)) {
            api_err_set(err, 400, "messages", "messages[%zu].role must be a string", i);
            goto fail;
        }
        int known = 0;
        for (size_t r = 0; r < ARRAY_SIZE(ROLES); r++)
            known |= strcmp(json_string_value(role), ROLES[r]) == 0;
        if (!known) {
            api_err_set(err, 400, "messages", "messages[%zu]: unknown role '%s'", i,
                        json_string_value(role));
            goto fail;
        }
        json_t *copy = json_object();
        const char *key;
        json_t *val;
        json_object_foreach(m, key, val) {
            json_t *nv = NULL;
            if (strcmp(key, "content") == 0) {
                if (message_content(val, i, &nv, err) < 0) {
                    json_decref(copy);
                    goto fail;
                }
            } else if (strcmp(key, "tool_calls") == 0 && !json_is_null(val)) {
                if (message_tool_calls(val, i, &nv, err) < 0) {
                    json_decref(copy);
                    goto fail;
                }
            } else if (strcmp(key, "name") == 0 || strcmp(key, "tool_call_id") == 0 ||
                       strcmp(key, "reasoning_content") == 0 || strcmp(key, "reasoning") == 0) {
                if (!json_is_string(val) && !json_is_null(val)) {
                    json_decref(copy);
                    api_err_set(err, 400, "messages", "messages[%zu].%s must be a string", i, key);
                    goto fail;
                }
                nv = json_incref(val);
            } else {
                nv = json_incref(val);
            }
            json_object_set_new(copy, key, nv);
        }
        if (json_object_get(copy, "content") == NULL)
            json_object_set_new(copy, "content", json_null());
        const char *rs = json_string_value(role);
        if (json_is_null(json_object_get(copy, "content")) && strcmp(rs, "assistant") != 0) {
            json_decref(copy);
            api_err_set(err, 400, "messages", "messages[%zu].content is required for role '%s'", i, rs);
            goto fail;
        }
        json_array_append_new(out, copy);
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

/* "tools": a list of {"type": "function", "function": {"name", ...}}. */
static int check_tools(json_t *tools, struct api_err *err)
{
    if (!json_is_array(tools))
        return api_err_set(err, 400, "tools", "'tools' must be a list");
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *fn = json_object_get(t, "function");
        const char *type = json_string_value(json_object_get(t, "type"));
        json_t *params = json_object_get(fn, "parameters");
        json_t *desc = json_object_get(fn, "description");
        if (!json_is_object(t) || (type != NULL && strcmp(type, "function") != 0) ||
            (json_object_get(t, "type") != NULL && type == NULL) || !json_is_object(fn) ||
            !json_is_string(json_object_get(fn, "name")) ||
            json_string_length(json_object_get(fn, "name")) == 0 ||
            (params != NULL && !json_is_object(params) && !json_is_null(params)) ||
            (desc != NULL && !json_is_string(desc) && !json_is_null(desc)))
            return api_err_set(err, 400, "tools",
                               "tools[%zu] must be {\"type\": \"function\", \"function\": "
                               "{\"name\": str, \"description\"?: str, \"parameters\"?: object}}", i);
    }
    return 0;
}

/* tool_choice: "none" | "auto" | "required" | {"type": "function", "function": {"name"}}.
 * Sets *none when tools must not be rendered. */
static int check_tool_choice(json_t *root, int have_tools, int *none, struct api_err *err)
{
    json_t *tc = json_object_get(root, "tool_choice");
    *none = 0;
    if (tc == NULL || json_is_null(tc))
        return 0;
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        if (strcmp(s, "none") == 0) {
            *none = 1;
            return 0;
        }
        if (strcmp(s, "auto") == 0)
            return 0;
        if (strcmp(s, "required") == 0) {
            if (!have_tools)
                return api_err_set(err, 400, "tool_choice",
                                   "tool_choice 'required' needs 'tools'");
            return 0;
        }
        return api_err_set(err, 400, "tool_choice",
                           "'tool_choice' must be \"none\", \"auto\", \"required\" or a named function");
    }
    json_t *fn = json_object_get(tc, "function");
    if (!json_is_object(tc) || !json_is_object(fn) || !json_is_string(json_object_get(fn, "name")))
        return api_err_set(err, 400, "tool_choice",
                           "'tool_choice' must be \"none\", \"auto\", \"required\" or a named function");
    if (!have_tools)
        return api_err_set(err, 400, "tool_choice", "a named 'tool_choice' needs 'tools'");
    return 0;
}

int api_chat_render(const struct api_ctx *ctx, json_t *root, char **text, int *thinking,
                    int *has_tools, struct api_err *err)
{
    json_t *vars = NULL, *msgs = NULL;
    char terr[512];
    int agp = 1, cfm = 0, none = 0;
    *text = NULL;
    *thinking = 1;
    *has_tools = 0;
    if (ctx->tmpl == NULL)
        return api_err_set(err, 400, "messages",
                           "this model has no chat template; use /v1/completions");
    if ((msgs = check_messages(root, err)) == NULL)
        goto fail;
    json_t *tools = json_object_get(root, "tools");
    if (tools != NULL && !json_is_null(tools) && check_tools(tools, err) < 0)
        goto fail;
    int have_tools = tools != NULL && json_is_array(tools) && json_array_size(tools) > 0;
    if (check_tool_choice(root, have_tools, &none, err) < 0)
        goto fail;
    if (get_bool(root, "add_generation_prompt", &agp, err) < 0 ||
        get_bool(root, "continue_final_message", &cfm, err) < 0)
        goto fail;
    if (agp && cfm && json_object_get(root, "add_generation_prompt") != NULL) {
        api_err_set(err, 400, "continue_final_message",
                    "Cannot set both `continue_final_message` and `add_generation_prompt` to True.");
        goto fail;
    }
    if (cfm)
        agp = 0;
    vars = json_object();
    json_t *kw = json_object_get(root, "chat_template_kwargs");
    if (kw != NULL && !json_is_null(kw)) {
        if (!json_is_object(kw)) {
            api_err_set(err, 400, "chat_template_kwargs", "'chat_template_kwargs' must be an object");
            goto fail;
        }
        json_object_update(vars, kw);
        json_t *et = json_object_get(kw, "enable_thinking");
        if (et != NULL && (json_is_false(et) || json_is_null(et)))
            *thinking = 0;
    }
    json_object_set(vars, "messages", msgs);
    if (have_tools && !none) {
        json_object_set(vars, "tools", tools);
        *has_tools = 1;
    } else {
        json_object_del(vars, "tools");
    }
    json_object_set_new(vars, "add_generation_prompt", json_boolean(agp));
    json_object_set_new(vars, "bos_token", json_string(tokenizer_bos_token(ctx->tok)));
    json_object_set_new(vars, "eos_token", json_string(tokenizer_eos_token(ctx->tok)));
    size_t len = 0;
    terr[0] = '\0';
    if (chat_template_render(ctx->tmpl, vars, text, &len, terr, sizeof(terr)) < 0) {
        api_err_set(err, 400, "messages", "chat template error: %s", terr[0] ? terr : "render failed");
        *text = NULL;
        goto fail;
    }
    if (cfm) {
        /* end the prompt right after the final message's content */
        json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
        const char *c = json_string_value(json_object_get(last, "content"));
        size_t cl = c ? strlen(c) : 0;
        char *hit = NULL;
        for (char *p = *text; c && cl && (p = memmem(p, len - (size_t)(p - *text), c, cl)) != NULL; p++)
            hit = p;
        if (hit == NULL) {
            api_err_set(err, 400, "continue_final_message",
                        "the final message's content is not in the rendered prompt");
            free(*text);
            *text = NULL;
            goto fail;
        }
        hit[cl] = '\0';
    }
    json_decref(vars);
    json_decref(msgs);
    return 0;
fail:
    json_decref(vars);
    json_decref(msgs);
    return -1;
}

/* ---- prompts -------------------------------------------------------------------- */

static int add_prompt_ids(const struct api_ctx *ctx, struct api_request *req, json_t *arr,
                          struct api_err *err)
{
    int vocab = tokenizer_vocab_size(ctx->tok);
    size_t n = json_array_size(arr), i;
    json_t *x;
    if (n == 0)
        return api_err_set(err, 400, "prompt", "the prompt cannot be empty");
    struct api_prompt *p = &req->prompts[req->n_prompts];
    p->ids = xcalloc(n, sizeof(int32_t));
    json_array_foreach(arr, i, x) {
        if (!json_is_integer(x))
            return api_err_set(err, 400, "prompt",
                               "'prompt' must be a string, a list of strings, a list of token "
                               "ids or a list of lists of token ids");
        json_int_t id = json_integer_value(x);
        if (id < 0 || id >= vocab)
            return api_err_set(err, 400, "prompt", "token id %lld is out of vocabulary [0, %d)",
                               (long long)id, vocab);
        p->ids[p->n_ids++] = (int32_t)id;
    }
    char terr[128];
    size_t tl;
    if (tokenizer_decode(ctx->tok, p->ids, (size_t)p->n_ids, 0, &p->text, &tl, terr,
                         sizeof(terr)) < 0)
        return api_err_set(err, 400, "prompt", "%s", terr);
    req->n_prompts++;
    return 0;
}

static int add_prompt_text(const struct api_ctx *ctx, struct api_request *req, const char *s,
                           size_t len, int add_special, const char *param, struct api_err *err)
{
    struct api_prompt *p = &req->prompts[req->n_prompts];
    char terr[128];
    size_t n = 0;
    if (tokenizer_encode(ctx->tok, s, len, add_special, &p->ids, &n, terr, sizeof(terr)) < 0)
        return api_err_set(err, 400, param, "%s", terr);
    p->n_ids = (int)n;
    p->text = xstrndup(s, len);
    req->n_prompts++;
    if (n == 0)
        return api_err_set(err, 400, param, "the prompt cannot be empty");
    return 0;
}

static int parse_prompts(const struct api_ctx *ctx, json_t *root, struct api_request *req,
                         struct api_err *err)
{
    json_t *pr = json_object_get(root, "prompt");
    const char *shape = "'prompt' must be a string, a list of strings, a list of token ids or "
                        "a list of lists of token ids";
    if (pr == NULL || json_is_null(pr))
        return api_err_set(err, 400, "prompt", "'prompt' is required");
    if (json_is_string(pr)) {
        req->prompts = xcalloc(1, sizeof(*req->prompts));
        req->n_prompt_slots = 1;
        return add_prompt_text(ctx, req, json_string_value(pr), json_string_length(pr), 1,
                               "prompt", err);
    }
    if (!json_is_array(pr))
        return api_err_set(err, 400, "prompt", "%s", shape);
    size_t n = json_array_size(pr), i;
    json_t *x;
    if (n == 0)
        return api_err_set(err, 400, "prompt", "the prompt cannot be empty");
    if (json_is_integer(json_array_get(pr, 0))) {
        req->prompts = xcalloc(1, sizeof(*req->prompts));
        req->n_prompt_slots = 1;
        return add_prompt_ids(ctx, req, pr, err);
    }
    if (n > 256)
        return api_err_set(err, 400, "prompt", "at most 256 prompts per request");
    req->prompts = xcalloc(n, sizeof(*req->prompts));
    req->n_prompt_slots = (int)n;
    json_array_foreach(pr, i, x) {
        if (json_is_string(x)) {
            if (add_prompt_text(ctx, req, json_string_value(x), json_string_length(x), 1, "prompt",
                                err) < 0)
                return -1;
        } else if (json_is_array(x)) {
            if (add_prompt_ids(ctx, req, x, err) < 0)
                return -1;
        } else {
            return api_err_set(err, 400, "prompt", "%s", shape);
        }
    }
    return 0;
}

/* Per-prompt max_tokens and the context-length check (vLLM's messages). */
static int check_lengths(const struct api_ctx *ctx, struct api_request *req, struct api_err *err)
{
    const char *where = req->kind == API_CHAT ? "messages" : "prompt";
    req->prompt_max_tokens = xcalloc((size_t)req->n_prompts, sizeof(int));
    for (int i = 0; i < req->n_prompts; i++) {
        int in = req->prompts[i].n_ids;
        if (in >= ctx->max_model_len)
            return api_err_set(err, 400, where,
                               "This model's maximum context length is %d tokens. However, your "
                               "request has %d input tokens. Please reduce the length of the "
                               "input %s.", ctx->max_model_len, in, where);
        int mt;
        if (req->max_tokens_given) {
            mt = req->sp.max_tokens;
            if ((long long)in + mt > ctx->max_model_len)
                return api_err_set(err, 400, "max_tokens",
                                   "This model's maximum context length is %d tokens. However, you "
                                   "requested %lld tokens (%d in the %s, %d in the completion). "
                                   "Please reduce the length of the %s or completion.",
                                   ctx->max_model_len, (long long)in + mt, in, where, mt, where);
        } else {
            mt = ctx->max_model_len - in;
            if (ctx->defs.max_new_tokens > 0 && ctx->defs.max_new_tokens < mt)
                mt = ctx->defs.max_new_tokens;
        }
        if (req->sp.min_tokens > mt)
            return api_err_set(err, 400, "min_tokens",
                               "'min_tokens' (%d) is larger than the tokens left (%d)",
                               req->sp.min_tokens, mt);
        req->prompt_max_tokens[i] = mt;
    }
    return 0;
}

int api_request_parse(const struct api_ctx *ctx, enum api_kind kind, const char *body,
                      size_t len, const char *routed, struct api_request *req,
                      struct api_err *err)
{
    json_error_t jerr;
    json_t *root = NULL;
    char *text = NULL;
    memset(req, 0, sizeof(*req));
    req->kind = kind;
    req->thinking_enabled = 1;
    req->logprobs = -1;
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        api_err_set(err, 400, NULL, "request body is not valid JSON: %s (line %d, column %d)",
                    jerr.text, jerr.line, jerr.column);
        goto fail;
    }
    if (!json_is_object(root)) {
        api_err_set(err, 400, NULL, "request body must be a JSON object");
        goto fail;
    }
    if (parse_model(ctx, root, routed, req, err) < 0 || parse_sampling(ctx, root, req, err) < 0)
        goto fail;
    if (kind == API_CHAT) {
        int has_tools = 0;
        if (api_chat_render(ctx, root, &text, &req->thinking_enabled, &has_tools, err) < 0)
            goto fail;
        req->parse_tools = has_tools && ctx->toolcall != TOOLCALL_NONE;
        req->prompts = xcalloc(1, sizeof(*req->prompts));
        req->n_prompt_slots = 1;
        int add_special = 0;
        if (get_bool(root, "add_special_tokens", &add_special, err) < 0)
            goto fail;
        if (add_prompt_text(ctx, req, text, strlen(text), add_special, "messages", err) < 0)
            goto fail;
    } else {
        json_t *suffix = json_object_get(root, "suffix");
        if (suffix != NULL && !json_is_null(suffix)) {
            api_err_set(err, 400, "suffix", "suffix is not currently supported");
            goto fail;
        }
        if (parse_prompts(ctx, root, req, err) < 0)
            goto fail;
        if ((long long)req->n_prompts * req->n > 1024) {
            api_err_set(err, 400, "n", "too many choices: %d prompts x n=%d", req->n_prompts, req->n);
            goto fail;
        }
    }
    if (check_lengths(ctx, req, err) < 0)
        goto fail;
    free(text);
    json_decref(root);
    return 0;
fail:
    free(text);
    json_decref(root);
    return -1;
}

void api_request_free(struct api_request *req)
{
    free(req->model);
    free(req->sp.stop_token_ids);
    for (int i = 0; i < req->n_stop; i++)
        free(req->stop[i]);
    free(req->stop);
    if (req->prompts) {
        /* a failing prompt may be half filled: free every slot */
        for (int i = 0; i < req->n_prompt_slots; i++) {
            free(req->prompts[i].ids);
            free(req->prompts[i].text);
        }
    }
    free(req->prompts);
    free(req->prompt_max_tokens);
    memset(req, 0, sizeof(*req));
}
