/*
 * tokenize.c -- POST /tokenize ({"prompt", "add_special_tokens"} or
 * {"messages", "add_generation_prompt", "tools", "chat_template_kwargs"},
 * rendered exactly as chat requests are) -> {"count", "max_model_len",
 * "tokens"}; POST /detokenize {"tokens"} -> {"prompt"}.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "request.h"
#include "server.h"
#include "tokenizer.h"
#include "util.h"

static json_t *load_body(struct wk_conn *c, struct api_err *err)
{
    size_t len;
    json_error_t jerr;
    const char *body = wk_conn_body(c, &len);
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        api_err_set(err, 400, NULL, "request body is not valid JSON: %s (line %d, column %d)",
                    jerr.text, jerr.line, jerr.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        api_err_set(err, 400, NULL, "request body must be a JSON object");
        return NULL;
    }
    return root;
}

void api_tokenize(struct wk_conn *c)
{
    struct wk *w = wk_conn_worker(c);
    struct api_err err;
    char *text = NULL, terr[256];
    int32_t *ids = NULL;
    size_t n = 0;
    json_t *root = load_body(c, &err);
    if (root == NULL)
        goto fail;
    json_t *ast = json_object_get(root, "add_special_tokens");
    if (ast != NULL && !json_is_null(ast) && !json_is_boolean(ast)) {
        api_err_set(&err, 400, "add_special_tokens", "'add_special_tokens' must be a boolean");
        goto fail;
    }
    json_t *msgs = json_object_get(root, "messages");
    json_t *prompt = json_object_get(root, "prompt");
    int add_special;
    if (msgs != NULL && !json_is_null(msgs)) {
        int thinking, tools;
        if (api_chat_render(&w->api, root, &text, &thinking, &tools, &err) < 0)
            goto fail;
        add_special = ast ? json_is_true(ast) : 0;
    } else if (json_is_string(prompt)) {
        text = xstrndup(json_string_value(prompt), json_string_length(prompt));
        add_special = ast ? json_is_true(ast) : 1;
    } else {
        api_err_set(&err, 400, "prompt", "'prompt' (a string) or 'messages' is required");
        goto fail;
    }
    if (tokenizer_encode(w->tok, text, strlen(text), add_special, &ids, &n, terr,
                         sizeof(terr)) < 0) {
        api_err_set(&err, 400, "prompt", "%s", terr);
        goto fail;
    }
    json_t *toks = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(toks, json_integer(ids[i]));
    json_t *j = json_object();
    json_object_set_new(j, "count", json_integer((json_int_t)n));
    json_object_set_new(j, "max_model_len", json_integer(w->api.max_model_len));
    json_object_set_new(j, "tokens", toks);
    json_object_set_new(j, "token_strs", json_null());
    wk_conn_respond_json(c, 200, j);
    free(ids);
    free(text);
    json_decref(root);
    return;
fail:
    free(ids);
    free(text);
    json_decref(root);
    wk_conn_error(c, &err);
}

void api_detokenize(struct wk_conn *c)
{
    struct wk *w = wk_conn_worker(c);
    struct api_err err;
    int32_t *ids = NULL;
    char *out = NULL, terr[256];
    size_t n = 0, olen;
    json_t *root = load_body(c, &err);
    if (root == NULL)
        goto fail;
    json_t *toks = json_object_get(root, "tokens");
    if (!json_is_array(toks)) {
        api_err_set(&err, 400, "tokens", "'tokens' must be a list of token ids");
        goto fail;
    }
    int vocab = tokenizer_vocab_size(w->tok);
    ids = xcalloc(json_array_size(toks) + 1, sizeof(int32_t));
    size_t i;
    json_t *x;
    json_array_foreach(toks, i, x) {
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= vocab) {
            api_err_set(&err, 400, "tokens", "'tokens' must hold token ids in [0, %d)", vocab);
            goto fail;
        }
        ids[n++] = (int32_t)json_integer_value(x);
    }
    if (tokenizer_decode(w->tok, ids, n, 0, &out, &olen, terr, sizeof(terr)) < 0) {
        api_err_set(&err, 400, "tokens", "%s", terr);
        goto fail;
    }
    json_t *j = json_object();
    json_object_set_new(j, "prompt", json_stringn(out, olen));
    wk_conn_respond_json(c, 200, j);
    free(out);
    free(ids);
    json_decref(root);
    return;
fail:
    free(out);
    free(ids);
    json_decref(root);
    wk_conn_error(c, &err);
}
