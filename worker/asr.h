/*
 * asr.h -- the speech batching engine (transcribe workers): one thread
 * takes queued requests, decodes their audio (audio_decode), cuts it into
 * <= 30 s segments (whole when short, vad_split when long), computes the
 * features, and runs the segments of all queued requests together in
 * packed encoder batches (sensevoice_forward: each clip masked to itself),
 * then greedy CTC per segment. Hands back per-segment ids with their
 * encoder frame positions. It never parses HTTP or turns ids into text.
 */
#ifndef LLMUX_ASR_H
#define LLMUX_ASR_H

#include <stddef.h>
#include <stdint.h>

#include "audio/audio.h"
#include "sensevoice.h"

/* The forward the engine drives (sensevoice_forward in the worker, a fake
 * in tests): fills clips[i].argmax. 0 or -1. */
typedef int (*asr_forward_fn)(void *arg, struct sensevoice_clip *clips, int n_clips);

struct asr_config {
    int max_num_seqs;               /* segments per encoder batch */
    long max_batch_frames;          /* feature frames per batch (a longer segment runs alone) */
    double max_audio_seconds;       /* longer audio is refused (<= 0: no limit) */
    double max_segment_seconds;     /* VAD pieces (<= 0: 30) */
    int blank_id;
    const struct fbank_frontend *frontend;  /* borrowed; outlives the engine */
    asr_forward_fn forward;
    void *forward_arg;
    int warmup;                     /* 1: run a short forward in asr_start */
};

/* One request; <audio> (the uploaded file) is stolen. */
struct asr_request {
    uint64_t id;
    void *audio;
    size_t len;
    enum sv_language language;
    int use_itn;
};

/* One recognized segment: the kept CTC ids (rich tags included), the
 * encoder row of the first frame of each id's run and the row after its
 * run (row r < SV_N_PROMPT is a prompt frame, row SV_N_PROMPT + t is
 * feature frame t, t * frame_s into the segment). */
struct asr_segment {
    double start, end;              /* seconds in the audio */
    int n_frames;                   /* feature frames */
    int n_ids;
    int32_t *ids;
    int32_t *rows;
    int32_t *ends;
};

struct asr_output {
    struct asr_output *next;
    uint64_t req_id;
    int status;                     /* 0 ok; 400 bad audio; 500 forward failed */
    char message[256];
    double duration;                /* seconds of audio */
    double frame_s;                 /* seconds per feature frame (0.06) */
    int n_segs;
    struct asr_segment *segs;
};
void asr_output_free(struct asr_output *o);

struct asr_load {
    int running, waiting;           /* requests in the current batch / not started */
    long segments_waiting;
    double audio_s_per_s;           /* seconds of audio recognized per second, recent */
    uint64_t batches, requests_done, segments_done;
    double audio_seconds_done;
    int last_batch_seqs;
    long last_batch_frames;
};

struct asr_engine;

/* Start the thread; <notify>(<arg>) wakes the event loop when outputs are
 * ready. NULL with <err> (a failed warm-up too). */
struct asr_engine *asr_start(const struct asr_config *cfg, void (*notify)(void *), void *arg,
                             char *err, size_t errlen);
void asr_stop(struct asr_engine *e);
/* Queue <r> (audio stolen). 0, or -1 when stopping. */
int asr_submit(struct asr_engine *e, struct asr_request *r);
/* Drop request <id>: no output comes. */
void asr_cancel(struct asr_engine *e, uint64_t id);
struct asr_output *asr_take_outputs(struct asr_engine *e);
void asr_get_load(struct asr_engine *e, struct asr_load *l);
int asr_has_run(struct asr_engine *e);

/* The segments of <n> samples (16 kHz): one whole piece when it fits in
 * max_segment_s, else vad_split's. *segs new (caller frees). 0 or -1. */
int asr_split(const float *pcm, size_t n, double max_segment_s, struct audio_segment **segs,
              int *n_segs);

#endif
