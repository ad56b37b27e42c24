/*
 * embeddings.c -- POST /v1/embeddings (OpenAI shape): input string, list
 * of strings, token ids or lists of ids -> {object:"list", data:[{object:
 * "embedding", index, embedding}], model, usage}; the dense vector the
 * encoder pools (bge-m3: CLS, normalized), float list or base64 of
 * little-endian f32. The answer is written as text, not built in jansson.
 */
#include <stdio.h>
#include <stdlib.h>

#include "api.h"
#include "encode_job.h"
#include "server.h"

/* The body is written directly (floats with enc_fmt_float, the same text
 * jansson would give, ~4x faster: 64 x 1024 floats in ~5 ms instead of
 * ~20 ms on the shared dev box). */
static void embeddings_done(struct wk_enc *j, struct encode_output *o)
{
    int hid = j->w->enc_hidden;
    struct strbuf b = { 0 };
    char tmp[160];
    json_t *model = json_string(j->req.model);
    char *model_json = json_dumps(model, JSON_ENCODE_ANY);
    json_decref(model);
    snprintf(tmp, sizeof(tmp), "{\"id\":\"%s\",\"object\":\"list\",\"created\":%lld,\"model\":",
             j->id, (long long)j->created);
    strbuf_adds(&b, tmp);
    strbuf_adds(&b, model_json ? model_json : "\"\"");
    free(model_json);
    strbuf_adds(&b, ",\"data\":[");
    for (int i = 0; i < o->n_inputs; i++) {
        const float *v = o->dense + (size_t)i * (size_t)hid;
        snprintf(tmp, sizeof(tmp), "%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":",
                 i ? "," : "", i);
        strbuf_adds(&b, tmp);
        if (j->req.base64) {
            json_t *s64 = enc_b64_floats(v, (size_t)hid);
            strbuf_add(&b, "\"", 1);
            strbuf_add(&b, json_string_value(s64), json_string_length(s64));
            strbuf_add(&b, "\"", 1);
            json_decref(s64);
        } else {
            enc_append_floats(&b, v, (size_t)hid);
        }
        strbuf_add(&b, "}", 1);
    }
    snprintf(tmp, sizeof(tmp), "],\"usage\":{\"prompt_tokens\":%ld,\"total_tokens\":%ld}}",
             o->n_tokens, o->n_tokens);
    strbuf_adds(&b, tmp);
    wk_conn_respond(j->conn, 200, "application/json", strbuf_str(&b), b.len);
    strbuf_free(&b);
}

void api_embeddings(struct wk_conn *c)
{
    struct enc_request req;
    if (enc_parse_or_answer(c, ENC_API_EMBED, &req) < 0)
        return;
    enc_job_start(wk_conn_worker(c), c, &req, ENCODE_DENSE, "embd-", embeddings_done);
}
