/*
 * transcribe.h -- transcription requests in flight (transcribe workers):
 * the parsed form, the speech engine request id, the connection waiting,
 * and the answer in the asked format once the engine hands the segments
 * back. Routes: /v1/audio/transcriptions, /v1/audio/translations (400).
 */
#ifndef LLMUX_API_TRANSCRIBE_H
#define LLMUX_API_TRANSCRIBE_H

#include <stdint.h>

struct wk;
struct wk_conn;
struct asr_output;

struct wk_asr {
    struct wk_asr *next, *prev;     /* in wk->asrs */
    struct wk *w;
    struct wk_conn *conn;           /* NULL once the client left */
    uint64_t req_id;
    char *model;
    int format, words, language;
};

void api_transcriptions(struct wk_conn *c);
void api_translations(struct wk_conn *c);
/* Answer the job of <o> (frees <o>). */
void asr_dispatch_output(struct wk *w, struct asr_output *o);
/* The client went away: cancel in the engine and free the job. */
void asr_job_abort(struct wk_asr *j);
/* Free every job (worker exit; the engine is stopped after). */
void asr_jobs_free_all(struct wk *w);

#endif
