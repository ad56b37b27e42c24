/*
 * transcribe_fmt.h -- from the speech engine's per-segment CTC ids to the
 * transcription the client gets: SentencePiece pieces to text, SenseVoice's
 * rich tags (<|zh|> language, <|HAPPY|> emotion, <|Speech|> event,
 * <|withitn|>) taken out of the text into fields, segments stitched with
 * timestamps from CTC frame positions, words, and the OpenAI response
 * formats (json, text, verbose_json, srt, vtt). Pure: no I/O, no engine.
 */
#ifndef LLMUX_API_TRANSCRIBE_FMT_H
#define LLMUX_API_TRANSCRIBE_FMT_H

#include <jansson.h>

#include "asr.h"
#include "spm_model.h"

enum asr_format { ASR_FMT_JSON = 0, ASR_FMT_TEXT, ASR_FMT_VERBOSE_JSON, ASR_FMT_SRT, ASR_FMT_VTT };
/* "json", ... -> the enum; -1 for anything else. */
int asr_format_parse(const char *s);

/* The kind of a rich tag piece "<|x|>". */
enum asr_tag_kind { ASR_TAG_NONE = 0, ASR_TAG_LANGUAGE, ASR_TAG_EMOTION, ASR_TAG_EVENT, ASR_TAG_ITN,
                    ASR_TAG_OTHER };
/* Classify piece text <piece>; the name between <| and |> goes to <name>. */
int asr_tag_classify(const char *piece, char *name, size_t namelen);

struct asr_word {
    double start, end;
    char *word;
};

struct asr_text_seg {
    double start, end;
    char *text;
    int32_t *tokens;                /* text tokens (tags left out) */
    int n_tokens;
    char language[24], emotion[24], event[24];
};

struct asr_result {
    char *text;                     /* stitched segments */
    char language[24];              /* "" when the model gave none */
    char emotion[24], event[24];
    int itn;                        /* 1 withitn, 0 woitn, -1 none */
    double duration;
    int n_segs;
    struct asr_text_seg *segs;
    int n_words;
    struct asr_word *words;
};

/* Build the result of <o> (status 0) with <spm>. */
void asr_result_build(const struct spm_model *spm, const struct asr_output *o,
                      struct asr_result *r);
void asr_result_free(struct asr_result *r);

/* "HH:MM:SS<sep>mmm" of <s> seconds into <out> (>= 16 bytes). */
void asr_fmt_timestamp(double s, char sep, char *out, size_t outlen);
/* New strings (caller frees). */
char *asr_format_srt(const struct asr_result *r);
char *asr_format_vtt(const struct asr_result *r);
/* json {text} or verbose_json (task, language, duration, text, segments,
 * emotion, event, words when <words>). New. */
json_t *asr_format_json(const struct asr_result *r, int verbose, int words);

#endif
