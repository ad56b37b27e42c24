/*
 * embeddings.c -- POST /v1/embeddings (OpenAI shape): input string, list
 * of strings, token ids or lists of ids -> {object:"list", data:[{object:
 * "embedding", index, embedding}], model, usage}; the dense vector the
 * encoder pools (bge-m3: CLS, normalized), float list or base64 of
 * little-endian f32.
 */
#include <stdlib.h>

#include "api.h"
#include "encode_job.h"
#include "server.h"

static void embeddings_done(struct wk_enc *j, struct encode_output *o)
{
    int hid = j->w->enc_hidden;
    json_t *data = json_array();
    for (int i = 0; i < o->n_inputs; i++) {
        const float *v = o->dense + (size_t)i * (size_t)hid;
        json_t *e = json_object();
        json_object_set_new(e, "object", json_string("embedding"));
        json_object_set_new(e, "index", json_integer(i));
        json_object_set_new(e, "embedding", j->req.base64 ? enc_b64_floats(v, (size_t)hid)
                                                          : enc_float_array(v, (size_t)hid));
        json_array_append_new(data, e);
    }
    json_t *r = json_object();
    json_object_set_new(r, "id", json_string(j->id));
    json_object_set_new(r, "object", json_string("list"));
    json_object_set_new(r, "created", json_integer(j->created));
    json_object_set_new(r, "model", json_string(j->req.model));
    json_object_set_new(r, "data", data);
    json_object_set_new(r, "usage", enc_usage(o->n_tokens));
    wk_conn_respond_json(j->conn, 200, r);
}

void api_embeddings(struct wk_conn *c)
{
    struct enc_request req;
    if (enc_parse_or_answer(c, ENC_API_EMBED, &req) < 0)
        return;
    enc_job_start(wk_conn_worker(c), c, &req, ENCODE_DENSE, "embd-", embeddings_done);
}
