/*
 * transcribe_req.c -- parsing and validating the multipart form of a
 * transcription request (common/multipart.c walks it). Values are trimmed;
 * unknown fields are ignored as OpenAI does.
 */
#include "transcribe_req.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "multipart.h"
#include "sensevoice.h"
#include "transcribe_fmt.h"
#include "util.h"

struct walk {
    struct asr_form *f;
    struct api_err *err;
    int failed;
    int has_file;
};

/* The trimmed value of a text field into <out>; -1 when too long. */
static int field_text(const struct multipart_part *p, char *out, size_t outlen)
{
    const char *s = p->data, *e = p->data + p->len;
    while (s < e && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
        e--;
    if ((size_t)(e - s) + 1 > outlen)
        return -1;
    memcpy(out, s, (size_t)(e - s));
    out[e - s] = '\0';
    return 0;
}

static int parse_bool(const char *v, int *out)
{
    if (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0)
        *out = 1;
    else if (strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0)
        *out = 0;
    else
        return -1;
    return 0;
}

static int on_part(void *arg, const struct multipart_part *p)
{
    struct walk *wk = arg;
    struct asr_form *f = wk->f;
    char v[512];
    if (strcmp(p->name, "file") == 0) {
        f->file = p->data;
        f->file_len = p->len;
        snprintf(f->filename, sizeof(f->filename), "%s", p->filename);
        wk->has_file = 1;
        return 0;
    }
    if (strcmp(p->name, "prompt") == 0)
        return 0;                                       /* accepted, ignored */
    if (field_text(p, v, sizeof(v)) < 0) {
        if (strcmp(p->name, "model") && strcmp(p->name, "language") &&
            strcmp(p->name, "response_format") && strcmp(p->name, "use_itn") &&
            strncmp(p->name, "timestamp_granularities", 23) && strcmp(p->name, "temperature") &&
            strcmp(p->name, "stream"))
            return 0;                                   /* unknown and long: ignored */
        api_err_set(wk->err, 400, p->name, "'%s' is too long", p->name);
        goto fail;
    }
    if (strcmp(p->name, "model") == 0) {
        free(f->model);
        f->model = xstrdup(v);
    } else if (strcmp(p->name, "language") == 0) {
        int l = sv_language_parse(v);
        if (l < 0 || l == SV_LANG_NOSPEECH) {
            api_err_set(wk->err, 400, "language", "language '%s' is not supported: use auto, zh, "
                        "en, yue, ja or ko", v);
            goto fail;
        }
        f->language = l;
    } else if (strcmp(p->name, "response_format") == 0) {
        int fmt = asr_format_parse(v);
        if (fmt < 0) {
            api_err_set(wk->err, 400, "response_format", "response_format '%s' is not supported: "
                        "use json, text, verbose_json, srt or vtt", v);
            goto fail;
        }
        f->format = fmt;
    } else if (strcmp(p->name, "use_itn") == 0) {
        if (parse_bool(v, &f->use_itn) < 0) {
            api_err_set(wk->err, 400, "use_itn", "use_itn must be true or false, not '%s'", v);
            goto fail;
        }
    } else if (strcmp(p->name, "temperature") == 0) {
        char *end;
        double t = strtod(v, &end);
        if (v[0] == '\0' || *end != '\0' || t < 0 || t > 1) {
            api_err_set(wk->err, 400, "temperature", "temperature must be a number between 0 "
                        "and 1, not '%s'", v);
            goto fail;
        }
    } else if (strcmp(p->name, "timestamp_granularities[]") == 0 ||
               strcmp(p->name, "timestamp_granularities") == 0) {
        if (strcmp(v, "word") == 0)
            f->words = 1;
        else if (strcmp(v, "segment") != 0) {
            api_err_set(wk->err, 400, "timestamp_granularities", "timestamp_granularities takes "
                        "'word' or 'segment', not '%s'", v);
            goto fail;
        }
    } else if (strcmp(p->name, "stream") == 0) {
        int s = 0;
        if (parse_bool(v, &s) < 0 || s) {
            api_err_set(wk->err, 400, "stream", "stream is not supported for transcriptions "
                        "with this model");
            goto fail;
        }
    }
    return 0;
fail:
    wk->failed = 1;
    return 1;
}

int asr_form_parse(const char *body, size_t len, const char *content_type, struct asr_form *f,
                   struct api_err *err)
{
    memset(f, 0, sizeof(*f));
    f->use_itn = 1;
    f->language = SV_LANG_AUTO;
    f->format = ASR_FMT_JSON;
    if (content_type == NULL || strncasecmp(content_type, "multipart/form-data", 19) != 0)
        return api_err_set(err, 400, NULL, "the request must be multipart/form-data (OpenAI's "
                           "audio upload) with the audio in the 'file' field");
    struct walk wk = { f, err, 0, 0 };
    char msg[160];
    int rc = multipart_each(body, len, content_type, on_part, &wk, msg, sizeof(msg));
    if (wk.failed)
        return -1;
    if (rc < 0)
        return api_err_set(err, 400, NULL, "%s", msg);
    if (rc == 0 && !wk.has_file)
        return api_err_set(err, 400, NULL, "malformed multipart/form-data body");
    if (!wk.has_file)
        return api_err_set(err, 400, "file", "the 'file' field (the audio to transcribe) is "
                           "missing");
    if (f->words && f->format != ASR_FMT_VERBOSE_JSON)
        return api_err_set(err, 400, "timestamp_granularities", "timestamp_granularities needs "
                           "response_format verbose_json");
    return 0;
}

void asr_form_free(struct asr_form *f)
{
    free(f->model);
    f->model = NULL;
}
