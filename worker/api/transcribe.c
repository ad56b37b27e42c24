/*
 * transcribe.c -- POST /v1/audio/transcriptions: parse the form, queue the
 * audio in the speech engine (decoding and features run on its thread, never
 * on the event loop), answer in json / text / verbose_json / srt / vtt when
 * the segments come back; /v1/audio/translations is refused (SenseVoice
 * does not translate).
 */
#include "transcribe.h"

#include <stdlib.h>
#include <string.h>

#include "asr.h"
#include "log.h"
#include "server.h"
#include "transcribe_fmt.h"
#include "transcribe_req.h"
#include "util.h"

static void job_unlink_free(struct wk_asr *j)
{
    struct wk *w = j->w;
    if (j->prev)
        j->prev->next = j->next;
    else
        w->asrs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    free(j->model);
    free(j);
}

void api_transcriptions(struct wk_conn *c)
{
    struct wk *w = wk_conn_worker(c);
    struct asr_form f;
    struct api_err err;
    size_t len;
    const char *body = wk_conn_body(c, &len);
    char *model = NULL;
    memset(&err, 0, sizeof(err));
    if (asr_form_parse(body, len, wk_conn_header(c, "content-type"), &f, &err) < 0)
        goto bad;
    json_t *root = json_object();
    if (f.model != NULL)
        json_object_set_new(root, "model", json_string(f.model));
    int rc = api_parse_model(&w->api, root, wk_conn_header(c, "x-llmux-model"), &model, &err);
    json_decref(root);
    if (rc < 0)
        goto bad;
    struct wk_asr *j = xcalloc(1, sizeof(*j));
    j->w = w;
    j->conn = c;
    j->req_id = ++w->next_req_id;
    j->model = model;
    j->format = f.format;
    j->words = f.words;
    j->language = f.language;
    struct asr_request r = { .id = j->req_id, .len = f.file_len, .language = f.language,
                             .use_itn = f.use_itn };
    r.audio = xmalloc(f.file_len > 0 ? f.file_len : 1);
    if (f.file_len > 0)
        memcpy(r.audio, f.file, f.file_len);
    asr_form_free(&f);
    j->next = w->asrs;
    if (w->asrs)
        w->asrs->prev = j;
    w->asrs = j;
    if (asr_submit(w->asrq, &r) < 0) {
        free(r.audio);
        job_unlink_free(j);
        wk_conn_error_msg(c, 503, NULL, "the worker is stopping");
        return;
    }
    wk_conn_set_asr(c, j);
    return;
bad:
    asr_form_free(&f);
    free(model);
    wk_conn_error(c, &err);
}

void api_translations(struct wk_conn *c)
{
    struct wk *w = wk_conn_worker(c);
    char msg[300];
    snprintf(msg, sizeof(msg), "\"%s\" (SenseVoiceSmall) does not translate: it transcribes in "
             "the language spoken; use /v1/audio/transcriptions",
             w->n_served ? w->served[0] : "this model");
    wk_conn_error_msg(c, 400, NULL, msg);
}

static void answer(struct wk_asr *j, struct asr_output *o)
{
    struct wk_conn *c = j->conn;
    struct wk *w = j->w;
    if (o->status != 0) {
        wk_conn_error_msg(c, o->status, o->status == 400 ? "file" : NULL, o->message);
        return;
    }
    struct asr_result r;
    asr_result_build(w->spm, o, &r);
    if (r.language[0] == '\0' && j->language != SV_LANG_AUTO)
        snprintf(r.language, sizeof(r.language), "%s", sv_language_name(j->language));
    char *s;
    switch (j->format) {
    case ASR_FMT_TEXT:
        s = xasprintf("%s\n", r.text);
        wk_conn_respond(c, 200, "text/plain; charset=utf-8", s, strlen(s));
        free(s);
        break;
    case ASR_FMT_SRT:
        s = asr_format_srt(&r);
        wk_conn_respond(c, 200, "text/plain; charset=utf-8", s, strlen(s));
        free(s);
        break;
    case ASR_FMT_VTT:
        s = asr_format_vtt(&r);
        wk_conn_respond(c, 200, "text/vtt; charset=utf-8", s, strlen(s));
        free(s);
        break;
    default: {
        /* seconds as 4.644, not 4.6440000000000001 */
        json_t *js = asr_format_json(&r, j->format == ASR_FMT_VERBOSE_JSON, j->words);
        s = json_dumps(js, JSON_COMPACT | JSON_REAL_PRECISION(9));
        json_decref(js);
        if (s == NULL)
            wk_conn_error_msg(c, 500, NULL, "response could not be encoded");
        else
            wk_conn_respond(c, 200, "application/json", s, strlen(s));
        free(s);
    }
    }
    asr_result_free(&r);
}

void asr_dispatch_output(struct wk *w, struct asr_output *o)
{
    struct wk_asr *j = w->asrs;
    while (j && j->req_id != o->req_id)
        j = j->next;
    if (j != NULL) {
        if (j->conn != NULL) {
            wk_conn_set_asr(j->conn, NULL);
            answer(j, o);
        }
        job_unlink_free(j);
    }
    asr_output_free(o);
}

void asr_job_abort(struct wk_asr *j)
{
    if (j->conn)
        wk_conn_set_asr(j->conn, NULL);
    j->conn = NULL;
    asr_cancel(j->w->asrq, j->req_id);
    job_unlink_free(j);
}

void asr_jobs_free_all(struct wk *w)
{
    while (w->asrs != NULL) {
        struct wk_asr *j = w->asrs;
        if (j->conn)
            wk_conn_set_asr(j->conn, NULL);
        j->conn = NULL;
        if (w->asrq)
            asr_cancel(w->asrq, j->req_id);
        job_unlink_free(j);
    }
}
