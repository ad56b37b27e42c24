/*
 * transcribe_req.h -- the form of POST /v1/audio/transcriptions
 * (multipart/form-data as OpenAI's): file, model, language, response_format,
 * prompt and temperature (accepted, ignored), use_itn (extension),
 * timestamp_granularities[], stream (false only). Bad input becomes an
 * api_err naming the parameter. Pure: no I/O; the file stays in the body.
 */
#ifndef LLMUX_API_TRANSCRIBE_REQ_H
#define LLMUX_API_TRANSCRIBE_REQ_H

#include <stddef.h>

#include "request.h"

struct asr_form {
    const char *file;           /* borrowed from the body; NULL when absent */
    size_t file_len;
    char filename[256];
    char *model;                /* new; NULL when the form has none */
    int language;               /* enum sv_language */
    int format;                 /* enum asr_format */
    int use_itn;                /* default 1 */
    int words;                  /* timestamp_granularities has "word" */
};

/* Parse <body> (Content-Type <content_type>). 0, or -1 with <err> (400).
 * Free with asr_form_free() either way. */
int asr_form_parse(const char *body, size_t len, const char *content_type, struct asr_form *f,
                   struct api_err *err);
void asr_form_free(struct asr_form *f);

#endif
