/*
 * info.c -- GET /v1/models (the served names), /health (200 once the engine
 * has stepped -- encoder and speech workers: once a forward ran -- else
 * 503), /load (the engine's load for the gateway's routing), /version.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "asr.h"
#include "encode.h"
#include "engine.h"
#include "server.h"
#include "util.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.1.0"
#endif

void api_models(struct wk_conn *c)
{
    struct wk *w = wk_conn_worker(c);
    json_t *data = json_array();
    for (int i = 0; i < w->n_served; i++) {
        json_t *m = json_object();
        json_object_set_new(m, "id", json_string(w->served[i]));
        json_object_set_new(m, "object", json_string("model"));
        json_object_set_new(m, "created", json_integer(w->started));
        json_object_set_new(m, "owned_by", json_string("llmux"));
        json_object_set_new(m, "root", json_string(w->model_dir ? w->model_dir : w->served[i]));
        json_object_set_new(m, "parent", json_null());
        json_object_set_new(m, "max_model_len", json_integer(w->api.max_model_len));
        json_object_set_new(m, "permission", json_array());
        json_array_append_new(data, m);
    }
    json_t *j = json_object();
    json_object_set_new(j, "object", json_string("list"));
    json_object_set_new(j, "data", data);
    wk_conn_respond_json(c, 200, j);
}

void api_health(struct wk_conn *c)
{
    struct wk *w = wk_conn_worker(c);
    if (w->asrq != NULL) {
        if (!asr_has_run(w->asrq))
            wk_conn_error_msg(c, 503, NULL, "the speech model has not run a forward pass yet");
        else
            wk_conn_respond(c, 200, "application/json", "", 0);
        return;
    }
    if (w->encq != NULL) {
        if (!encode_has_run(w->encq))
            wk_conn_error_msg(c, 503, NULL, "the encoder has not run a forward pass yet");
        else
            wk_conn_respond(c, 200, "application/json", "", 0);
        return;
    }
    if (w->eng == NULL || !engine_has_stepped(w->eng)) {
        wk_conn_error_msg(c, 503, NULL, "the engine has not run a step yet");
        return;
    }
    wk_conn_respond(c, 200, "application/json", "", 0);
}

/* Encoder workers: requests and inputs queued, batches run, tokens/s. The
 * kv_blocks fields are 0 (no KV cache). */
static void encode_load_json(struct wk_conn *c, struct wk *w)
{
    struct encode_load l;
    encode_get_load(w->encq, &l);
    json_t *j = json_object();
    json_object_set_new(j, "task", json_string(wk_task_name(w->task)));
    json_object_set_new(j, "running", json_integer(l.running));
    json_object_set_new(j, "waiting", json_integer(l.waiting));
    json_object_set_new(j, "inputs_waiting", json_integer(l.inputs_waiting));
    json_object_set_new(j, "kv_blocks_free", json_integer(0));
    json_object_set_new(j, "kv_blocks_total", json_integer(0));
    json_object_set_new(j, "prompt_tokens_per_s", json_real(l.tokens_per_s));
    json_object_set_new(j, "generation_tokens_per_s", json_real(0));
    json_object_set_new(j, "batches", json_integer((json_int_t)l.batches));
    json_object_set_new(j, "inputs_done", json_integer((json_int_t)l.inputs_done));
    json_object_set_new(j, "tokens_done", json_integer((json_int_t)l.tokens_done));
    json_object_set_new(j, "last_batch_seqs", json_integer(l.last_batch_seqs));
    json_object_set_new(j, "last_batch_tokens", json_integer(l.last_batch_tokens));
    json_object_set_new(j, "healthy", json_boolean(encode_has_run(w->encq)));
    wk_conn_respond_json(c, 200, j);
}

/* Speech workers: requests running / waiting, segments waiting, batches,
 * seconds of audio per second. The kv_blocks fields are 0. */
static void asr_load_json(struct wk_conn *c, struct wk *w)
{
    struct asr_load l;
    asr_get_load(w->asrq, &l);
    json_t *j = json_object();
    json_object_set_new(j, "task", json_string(wk_task_name(w->task)));
    json_object_set_new(j, "running", json_integer(l.running));
    json_object_set_new(j, "waiting", json_integer(l.waiting));
    json_object_set_new(j, "segments_waiting", json_integer(l.segments_waiting));
    json_object_set_new(j, "kv_blocks_free", json_integer(0));
    json_object_set_new(j, "kv_blocks_total", json_integer(0));
    json_object_set_new(j, "audio_seconds_per_s", json_real(l.audio_s_per_s));
    json_object_set_new(j, "batches", json_integer((json_int_t)l.batches));
    json_object_set_new(j, "requests_done", json_integer((json_int_t)l.requests_done));
    json_object_set_new(j, "segments_done", json_integer((json_int_t)l.segments_done));
    json_object_set_new(j, "audio_seconds_done", json_real(l.audio_seconds_done));
    json_object_set_new(j, "last_batch_seqs", json_integer(l.last_batch_seqs));
    json_object_set_new(j, "last_batch_frames", json_integer(l.last_batch_frames));
    json_object_set_new(j, "healthy", json_boolean(asr_has_run(w->asrq)));
    wk_conn_respond_json(c, 200, j);
}

void api_load(struct wk_conn *c)
{
    struct wk *w = wk_conn_worker(c);
    if (w->asrq != NULL) {
        asr_load_json(c, w);
        return;
    }
    if (w->encq != NULL) {
        encode_load_json(c, w);
        return;
    }
    struct engine_load l;
    memset(&l, 0, sizeof(l));
    if (w->eng)
        engine_get_load(w->eng, &l);
    json_t *j = json_object();
    json_object_set_new(j, "running", json_integer(l.running));
    json_object_set_new(j, "waiting", json_integer(l.waiting));
    json_object_set_new(j, "kv_blocks_free", json_integer(l.kv_blocks_free));
    json_object_set_new(j, "kv_blocks_total", json_integer(l.kv_blocks_total));
    json_object_set_new(j, "prompt_tokens_per_s", json_real(l.prompt_tokens_per_s));
    json_object_set_new(j, "generation_tokens_per_s", json_real(l.generation_tokens_per_s));
    json_object_set_new(j, "prefix_cache_queries", json_integer((json_int_t)l.prefix_cache_queries));
    json_object_set_new(j, "prefix_cache_hits", json_integer((json_int_t)l.prefix_cache_hits));
    json_object_set_new(j, "steps", json_integer((json_int_t)l.steps));
    json_object_set_new(j, "preemptions", json_integer((json_int_t)l.preemptions));
    json_object_set_new(j, "task", json_string(wk_task_name(w->task)));
    json_object_set_new(j, "healthy", json_boolean(w->eng && engine_has_stepped(w->eng)));
    wk_conn_respond_json(c, 200, j);
}

void api_version(struct wk_conn *c)
{
    json_t *j = json_object();
    json_object_set_new(j, "version", json_string(PACKAGE_VERSION));
    wk_conn_respond_json(c, 200, j);
}
