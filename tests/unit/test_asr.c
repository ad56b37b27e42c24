/*
 * test_asr.c -- the transcription pieces of the worker: the multipart form
 * (common/multipart.c + transcribe_req.c), the SentencePiece reader against
 * tokens.json, ids -> text, rich tags, segment stitching with CTC-frame
 * timestamps and words, srt/vtt/json formats, and the speech engine's
 * batching with a fake forward (requests queued together share a batch).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "asr.h"
#include "api/transcribe_fmt.h"
#include "api/transcribe_req.h"
#include "multipart.h"
#include "spm_model.h"
#include "strbuf.h"
#include "tap.h"
#include "util.h"

static const char *srcdir;

/* ---- multipart form ---------------------------------------------------------- */

static void form_add(struct strbuf *b, const char *name, const char *filename, const char *val,
                     size_t n)
{
    strbuf_adds(b, "--XyZ\r\nContent-Disposition: form-data; name=\"");
    strbuf_adds(b, name);
    strbuf_adds(b, "\"");
    if (filename) {
        strbuf_adds(b, "; filename=\"");
        strbuf_adds(b, filename);
        strbuf_adds(b, "\"\r\nContent-Type: audio/wav");
    }
    strbuf_adds(b, "\r\n\r\n");
    strbuf_add(b, val, n);
    strbuf_adds(b, "\r\n");
}

static int parse_form(const char *const *kv, int n, struct asr_form *f, struct api_err *e)
{
    struct strbuf b = { 0 };
    for (int i = 0; i < n; i += 2) {
        if (strcmp(kv[i], "file") == 0)
            form_add(&b, "file", "a.wav", kv[i + 1], strlen(kv[i + 1]));
        else
            form_add(&b, kv[i], NULL, kv[i + 1], strlen(kv[i + 1]));
    }
    strbuf_adds(&b, "--XyZ--\r\n");
    memset(e, 0, sizeof(*e));
    int rc = asr_form_parse(b.p, b.len, "multipart/form-data; boundary=XyZ", f, e);
    strbuf_free(&b);
    return rc;
}

static void test_form(void)
{
    struct asr_form f;
    struct api_err e;
    /* a file with CRLFs and a near-delimiter inside, every field */
    static const char bin[] = "RIFF\r\n\r\nx--XyZ-- inside a line\r\n-XyZ\0\1\2";
    struct strbuf b = { 0 };
    form_add(&b, "model", NULL, " sv ", 4);
    form_add(&b, "file", "speech.wav", bin, sizeof(bin));
    form_add(&b, "language", NULL, "ko", 2);
    form_add(&b, "response_format", NULL, "verbose_json", 12);
    form_add(&b, "use_itn", NULL, "false", 5);
    form_add(&b, "prompt", NULL, "ignored", 7);
    form_add(&b, "temperature", NULL, "0.2", 3);
    form_add(&b, "timestamp_granularities[]", NULL, "word", 4);
    form_add(&b, "timestamp_granularities[]", NULL, "segment", 7);
    form_add(&b, "something_else", NULL, "x", 1);
    strbuf_adds(&b, "--XyZ--\r\n");
    int rc = asr_form_parse(b.p, b.len, "multipart/form-data; boundary=\"XyZ\"", &f, &e);
    ok(rc == 0, "a full form parses (%s)", rc ? e.message : "");
    ok(f.file_len == sizeof(bin) && memcmp(f.file, bin, sizeof(bin)) == 0,
       "the file bytes are exact (CRLFs and boundary-like text inside)");
    ok(strcmp(f.filename, "speech.wav") == 0, "filename");
    ok(f.model && strcmp(f.model, "sv") == 0, "model trimmed");
    ok(f.language == SV_LANG_KO && f.format == ASR_FMT_VERBOSE_JSON && f.use_itn == 0 && f.words,
       "language, response_format, use_itn, word granularity");
    asr_form_free(&f);
    strbuf_free(&b);

    const char *d[] = { "file", "x" };
    rc = parse_form(d, 2, &f, &e);
    ok(rc == 0 && f.language == SV_LANG_AUTO && f.format == ASR_FMT_JSON && f.use_itn == 1 &&
       !f.words && f.model == NULL, "defaults: auto, json, use_itn true, no model");
    asr_form_free(&f);

    struct { const char *kv[6]; int n; const char *param; const char *what; } bad[] = {
        { { "model", "sv" }, 2, "file", "no file field" },
        { { "file", "x", "language", "fr" }, 4, "language", "unsupported language" },
        { { "file", "x", "language", "nospeech" }, 4, "language", "nospeech is no request language" },
        { { "file", "x", "response_format", "xml" }, 4, "response_format", "bad response_format" },
        { { "file", "x", "use_itn", "maybe" }, 4, "use_itn", "bad use_itn" },
        { { "file", "x", "temperature", "hot" }, 4, "temperature", "bad temperature" },
        { { "file", "x", "timestamp_granularities[]", "word" }, 4, "timestamp_granularities",
          "word timestamps need verbose_json" },
        { { "file", "x", "timestamp_granularities[]", "char" }, 4, "timestamp_granularities",
          "unknown granularity" },
        { { "file", "x", "stream", "true" }, 4, "stream", "stream=true" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        rc = parse_form(bad[i].kv, bad[i].n, &f, &e);
        ok(rc < 0 && e.status == 400 && strcmp(e.param, bad[i].param) == 0,
           "400 naming %s: %s (%s)", bad[i].param, bad[i].what, e.message);
        asr_form_free(&f);
    }
    rc = asr_form_parse("{}", 2, "application/json", &f, &e);
    ok(rc < 0 && e.status == 400 && strstr(e.message, "multipart/form-data"),
       "a JSON body is refused (%s)", e.message);
    asr_form_free(&f);
    rc = asr_form_parse("--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc", 56,
                        "multipart/form-data; boundary=XyZ", &f, &e);
    ok(rc < 0 && e.status == 400, "a truncated file part is refused (%s)", e.message);
    asr_form_free(&f);
    rc = asr_form_parse("abc", 3, "multipart/form-data", &f, &e);
    ok(rc < 0 && strstr(e.message, "boundary"), "no boundary (%s)", e.message);
    asr_form_free(&f);

    /* the walker: filename never mistaken for name, part content type */
    char bnd[80];
    ok(multipart_boundary("multipart/form-data; boundary=abc; charset=x", bnd, sizeof(bnd)) == 0 &&
       strcmp(bnd, "abc") == 0, "boundary parameter");
}

/* ---- SentencePiece ------------------------------------------------------------- */

static struct spm_model *spm;

static void test_spm(void)
{
    char err[256] = "";
    char *p = xasprintf("%s/examples/models/sensevoice/chn_jpn_yue_eng_ko_spectok.bpe.model",
                        srcdir);
    spm = spm_model_load(p, err, sizeof(err));
    free(p);
    ok(spm != NULL, "the SenseVoice .bpe.model parses (%s)", err);
    if (spm == NULL)
        exit(1);
    p = xasprintf("%s/examples/models/sensevoice/tokens.json", srcdir);
    struct spm_model *tj = spm_model_load_tokens_json(p, err, sizeof(err));
    free(p);
    ok(tj != NULL, "tokens.json loads (%s)", err);
    ok(spm_model_size(spm) == 25055 && spm_model_size(tj) == 25055,
       "25055 pieces in both (%d, %d)", spm_model_size(spm), spm_model_size(tj));
    int same = 0;
    for (int i = 0; i < spm_model_size(spm) && i < spm_model_size(tj); i++)
        same += strcmp(spm_model_piece(spm, i), spm_model_piece(tj, i)) == 0;
    ok(same == 25055, "every piece of the protobuf equals tokens.json's (%d equal)", same);
    ok(spm_model_type(spm, 0) == SPM_UNKNOWN && spm_model_type(spm, 1) == SPM_CONTROL &&
       spm_model_type(spm, 2) == SPM_CONTROL, "<unk> unknown, <s> </s> control");
    int zh = spm_model_find(spm, "<|zh|>"), happy = spm_model_find(spm, "<|HAPPY|>");
    ok(zh == 24884 && spm_piece_is_tag(spm, zh) && happy > 0, "tags found (<|zh|> %d, type %d)",
       zh, spm_model_type(spm, zh));
    int the = spm_model_find(spm, "\xe2\x96\x81the"), s = spm_model_find(spm, "s");
    int32_t ids[] = { zh, the, s, 1, the, happy, 2 };
    char *t = spm_model_decode(spm, ids, 7, 0);
    ok(strcmp(t, "<|zh|> thes the<|HAPPY|>") == 0, "decode keeps tags (\"%s\")", t);
    free(t);
    t = spm_model_decode(spm, ids, 7, 1);
    ok(strcmp(t, "thes the") == 0, "decode without tags, trimmed (\"%s\")", t);
    free(t);
    int32_t unk[] = { the, 0 };
    t = spm_model_decode(spm, unk, 2, 0);
    ok(strcmp(t, "the \xe2\x81\x87 ") == 0, "unknown as U+2047 (\"%s\")", t);
    free(t);
    /* DecodeIds of the sentencepiece library (tests/golden/make_asr_golden.py) */
    p = xasprintf("%s/tests/golden/asr/spm_decode.json", srcdir);
    json_error_t je;
    json_t *g = json_load_file(p, 0, &je);
    free(p);
    ok(g != NULL, "golden spm_decode.json (%s)", g ? "" : je.text);
    json_t *cases = json_object_get(g, "cases");
    size_t ci;
    json_t *cv;
    int n_ok = 0, n_ok_tj = 0, n_cases = (int)json_array_size(cases);
    json_array_foreach(cases, ci, cv) {
        json_t *ja = json_object_get(cv, "ids");
        int n = (int)json_array_size(ja);
        int32_t *v = xmalloc((size_t)(n + 1) * sizeof(int32_t));
        for (int k = 0; k < n; k++)
            v[k] = (int32_t)json_integer_value(json_array_get(ja, (size_t)k));
        const char *want = json_string_value(json_object_get(cv, "text"));
        char *got = spm_model_decode(spm, v, n, 0), *got_tj = spm_model_decode(tj, v, n, 0);
        if (strcmp(got, want) == 0)
            n_ok++;
        else if (n_ok == (int)ci)      /* the first mismatch */
            diag("case %zu: got \"%s\" want \"%s\"", ci, got, want);
        n_ok_tj += strcmp(got_tj, want) == 0;
        free(got);
        free(got_tj);
        free(v);
    }
    ok(n_cases > 100 && n_ok == n_cases, "decode = sentencepiece %s DecodeIds on %d/%d cases",
       json_string_value(json_object_get(g, "sentencepiece")), n_ok, n_cases);
    ok(n_ok_tj == n_cases, "decode with tokens.json's pieces = the same (%d/%d)", n_ok_tj,
       n_cases);
    json_decref(g);
    ok(spm_model_parse("\x0a\x05\x0a\x09", 4, err, sizeof(err)) == NULL, "truncated protobuf: %s",
       err);
    ok(spm_model_parse("", 0, err, sizeof(err)) == NULL, "empty model: %s", err);
    spm_model_free(tj);
}

/* ---- tags, stitching, timestamps, formats ------------------------------------------ */

static void test_tags(void)
{
    char n[64];
    ok(asr_tag_classify("<|zh|>", n, sizeof(n)) == ASR_TAG_LANGUAGE && strcmp(n, "zh") == 0, "zh");
    ok(asr_tag_classify("<|nospeech|>", n, sizeof(n)) == ASR_TAG_LANGUAGE, "nospeech");
    ok(asr_tag_classify("<|HAPPY|>", n, sizeof(n)) == ASR_TAG_EMOTION, "HAPPY");
    ok(asr_tag_classify("<|EMO_UNKNOWN|>", n, sizeof(n)) == ASR_TAG_EMOTION, "EMO_UNKNOWN");
    ok(asr_tag_classify("<|Speech|>", n, sizeof(n)) == ASR_TAG_EVENT, "Speech");
    ok(asr_tag_classify("<|BGM|>", n, sizeof(n)) == ASR_TAG_EVENT, "BGM");
    ok(asr_tag_classify("<|withitn|>", n, sizeof(n)) == ASR_TAG_ITN, "withitn");
    ok(asr_tag_classify("<|SPECIAL_TOKEN_3|>", n, sizeof(n)) == ASR_TAG_OTHER, "other tags");
    ok(asr_tag_classify("\xe2\x96\x81the", n, sizeof(n)) == ASR_TAG_NONE, "not a tag");
    ok(asr_format_parse("srt") == ASR_FMT_SRT && asr_format_parse("") == ASR_FMT_JSON &&
       asr_format_parse("mp3") < 0, "format names");
    char ts[32];
    asr_fmt_timestamp(3723.456, ',', ts, sizeof(ts));
    ok(strcmp(ts, "01:02:03,456") == 0, "srt timestamp %s", ts);
    asr_fmt_timestamp(0.0604, '.', ts, sizeof(ts));
    ok(strcmp(ts, "00:00:00.060") == 0, "vtt timestamp %s", ts);
}

static int32_t P(const char *s)
{
    int id = spm_model_find(spm, s);
    if (id < 0)
        diag("piece %s missing", s);
    return id;
}

static void test_result(void)
{
    /* two segments as the engine gives them: tags on the 4 prompt rows,
     * text pieces on feature rows (row 4 + t is t * 60 ms into the segment) */
    struct asr_output o;
    memset(&o, 0, sizeof(o));
    o.duration = 40.0;
    o.frame_s = 0.06;
    o.n_segs = 2;
    o.segs = xcalloc(2, sizeof(*o.segs));
    int32_t ids0[] = { P("<|en|>"), P("<|HAPPY|>"), P("<|Speech|>"), P("<|withitn|>"),
                       P("\xe2\x96\x81the"), P("\xe2\x96\x81" "and"), P("s") };
    int32_t rows0[] = { 0, 1, 2, 3, 4, 14, 20 };
    int32_t ends0[] = { 1, 2, 3, 4, 6, 16, 22 };
    int32_t ids1[] = { P("<|en|>"), P("<|SAD|>"), P("<|BGM|>"), P("<|withitn|>"),
                       P("\xe2\x96\x81of") };
    int32_t rows1[] = { 0, 1, 2, 3, 9 };
    int32_t ends1[] = { 1, 2, 3, 4, 11 };
    o.segs[0] = (struct asr_segment){ .start = 1.0, .end = 3.0, .n_frames = 33, .n_ids = 7 };
    o.segs[1] = (struct asr_segment){ .start = 31.0, .end = 32.5, .n_frames = 25, .n_ids = 5 };
    o.segs[0].ids = xmalloc(sizeof(ids0));
    o.segs[0].rows = xmalloc(sizeof(rows0));
    memcpy(o.segs[0].ids, ids0, sizeof(ids0));
    memcpy(o.segs[0].rows, rows0, sizeof(rows0));
    o.segs[0].ends = xmalloc(sizeof(ends0));
    memcpy(o.segs[0].ends, ends0, sizeof(ends0));
    o.segs[1].ends = xmalloc(sizeof(ends1));
    memcpy(o.segs[1].ends, ends1, sizeof(ends1));
    o.segs[1].ids = xmalloc(sizeof(ids1));
    o.segs[1].rows = xmalloc(sizeof(rows1));
    memcpy(o.segs[1].ids, ids1, sizeof(ids1));
    memcpy(o.segs[1].rows, rows1, sizeof(rows1));

    struct asr_result r;
    asr_result_build(spm, &o, &r);
    ok(strcmp(r.text, "the ands of") == 0, "stitched text without tags (\"%s\")", r.text);
    ok(strcmp(r.language, "en") == 0 && strcmp(r.emotion, "HAPPY") == 0 &&
       strcmp(r.event, "Speech") == 0 && r.itn == 1, "fields from the first segment's tags");
    ok(r.n_segs == 2 && strcmp(r.segs[1].emotion, "SAD") == 0 &&
       strcmp(r.segs[1].event, "BGM") == 0 && r.segs[0].n_tokens == 3,
       "per-segment tags and text tokens");
    ok(r.n_words == 3, "three words (%d)", r.n_words);
    if (r.n_words == 3) {
        /* FunASR: max(t*60-30 ms, 0) .. end*60-30 ms of the run, from the segment start */
        ok(strcmp(r.words[0].word, "the") == 0 && fabs(r.words[0].start - 1.0) < 1e-9 &&
           fabs(r.words[0].end - 1.09) < 1e-9, "word 0: frames 0-2 -> 1.0-1.09 s (%g-%g)",
           r.words[0].start, r.words[0].end);
        ok(strcmp(r.words[1].word, "ands") == 0 && fabs(r.words[1].start - 1.57) < 1e-9 &&
           fabs(r.words[1].end - 2.05) < 1e-9, "word 1 joins an ASCII continuation piece: "
           "1.57-2.05 s (%g-%g)", r.words[1].start, r.words[1].end);
        ok(strcmp(r.words[2].word, "of") == 0 && fabs(r.words[2].start - 31.27) < 1e-9 &&
           fabs(r.words[2].end - 31.39) < 1e-9, "word 2 in segment 2 (%g-%g)",
           r.words[2].start, r.words[2].end);
    }
    char *srt = asr_format_srt(&r);
    ok(strcmp(srt, "1\n00:00:01,000 --> 00:00:03,000\nthe ands\n\n"
                   "2\n00:00:31,000 --> 00:00:32,500\nof\n\n") == 0, "srt cues");
    free(srt);
    char *vtt = asr_format_vtt(&r);
    ok(strcmp(vtt, "WEBVTT\n\n00:00:01.000 --> 00:00:03.000\nthe ands\n\n"
                   "00:00:31.000 --> 00:00:32.500\nof\n\n") == 0, "vtt cues");
    free(vtt);
    json_t *j = asr_format_json(&r, 0, 0);
    ok(json_object_size(j) == 1 && strcmp(json_string_value(json_object_get(j, "text")),
                                          "the ands of") == 0, "json is {text}");
    json_decref(j);
    j = asr_format_json(&r, 1, 1);
    json_t *segs = json_object_get(j, "segments");
    ok(strcmp(json_string_value(json_object_get(j, "task")), "transcribe") == 0 &&
       json_real_value(json_object_get(j, "duration")) == 40.0 &&
       json_array_size(segs) == 2 && json_array_size(json_object_get(j, "words")) == 3 &&
       strcmp(json_string_value(json_object_get(j, "emotion")), "HAPPY") == 0 &&
       strcmp(json_string_value(json_object_get(j, "event")), "Speech") == 0 &&
       strcmp(json_string_value(json_object_get(j, "language")), "en") == 0,
       "verbose_json: task, duration, language, segments, words, emotion, event");
    json_t *s1 = json_array_get(segs, 1);
    ok(json_integer_value(json_object_get(s1, "id")) == 1 &&
       json_real_value(json_object_get(s1, "start")) == 31.0 &&
       json_real_value(json_object_get(s1, "end")) == 32.5 &&
       strcmp(json_string_value(json_object_get(s1, "text")), "of") == 0 &&
       json_array_size(json_object_get(s1, "tokens")) == 1, "segment fields");
    json_decref(j);
    asr_result_free(&r);

    /* CJK segments stitch without a space; an empty result */
    o.n_segs = 0;
    asr_result_build(spm, &o, &r);
    ok(strcmp(r.text, "") == 0 && r.language[0] == '\0' && r.itn == -1, "no segment: empty text");
    char *e = asr_format_srt(&r);
    ok(strcmp(e, "") == 0, "no cue");
    free(e);
    asr_result_free(&r);
    o.n_segs = 2;
    for (int i = 0; i < 2; i++) {
        free(o.segs[i].ids);
        free(o.segs[i].rows);
        free(o.segs[i].ends);
    }
    free(o.segs);
}

/* ---- the engine with a fake forward -------------------------------------------- */

struct fake {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int gate;               /* 1: the next forward waits until opened */
    int waiting;
    int calls, max_clips, clips_total;
    int fail;
};

/* argmax: prompt rows get the tag ids, then runs of (frame/3 % 5 + 100) with
 * blanks between; the language prompt shows up as <|ko|> when asked. */
static int fake_forward(void *arg, struct sensevoice_clip *clips, int n)
{
    struct fake *f = arg;
    pthread_mutex_lock(&f->mu);
    while (f->gate) {
        f->waiting = 1;
        pthread_cond_broadcast(&f->cv);
        pthread_cond_wait(&f->cv, &f->mu);
    }
    f->waiting = 0;
    f->calls++;
    f->clips_total += n;
    if (n > f->max_clips)
        f->max_clips = n;
    int fail = f->fail;
    pthread_mutex_unlock(&f->mu);
    if (fail)
        return -1;
    for (int i = 0; i < n; i++) {
        int32_t *a = clips[i].argmax;
        a[0] = clips[i].language == SV_LANG_KO ? 24896 : 24885;
        a[1] = 1;
        a[2] = 2;
        a[3] = clips[i].use_itn ? 3 : 4;
        for (int t = 0; t < clips[i].n_frames; t++)
            a[SV_N_PROMPT + t] = (t % 3 == 2) ? 0 : 100 + (t / 3) % 5;
    }
    return 0;
}

static void wav16(struct strbuf *b, const short *x, int n, int rate)
{
    unsigned char h[44];
    uint32_t data = (uint32_t)n * 2;
    memcpy(h, "RIFF", 4);
    uint32_t v = 36 + data;
    memcpy(h + 4, &v, 4);
    memcpy(h + 8, "WAVEfmt ", 8);
    v = 16;
    memcpy(h + 16, &v, 4);
    uint16_t s = 1;
    memcpy(h + 20, &s, 2);
    memcpy(h + 22, &s, 2);
    v = (uint32_t)rate;
    memcpy(h + 24, &v, 4);
    v = (uint32_t)rate * 2;
    memcpy(h + 28, &v, 4);
    s = 2;
    memcpy(h + 32, &s, 2);
    s = 16;
    memcpy(h + 34, &s, 2);
    memcpy(h + 36, "data", 4);
    memcpy(h + 40, &data, 4);
    strbuf_add(b, (const char *)h, 44);
    strbuf_add(b, (const char *)x, (size_t)n * 2);
}

/* <secs> of a tone (with <gap_every> s of speech then 1 s of silence when > 0). */
static void *tone_wav(double secs, double gap_every, size_t *len)
{
    int n = (int)(secs * 16000);
    short *x = xcalloc((size_t)n, sizeof(short));
    for (int i = 0; i < n; i++) {
        double t = (double)i / 16000;
        int silent = gap_every > 0 && fmod(t, gap_every + 1.0) >= gap_every;
        x[i] = silent ? 0 : (short)(8000 * sin(2 * M_PI * 220 * t) * (0.6 + 0.4 * sin(7 * t)));
    }
    struct strbuf b = { 0 };
    wav16(&b, x, n, 16000);
    free(x);
    *len = b.len;
    return b.p;
}

static volatile int notified;
static void on_notify(void *arg)
{
    (void)arg;
    __atomic_add_fetch(&notified, 1, __ATOMIC_SEQ_CST);
}

/* Wait until <want> outputs arrived (collected into out[] by req_id - 1). */
static int collect(struct asr_engine *e, struct asr_output **out, int n_out, int want)
{
    int got = 0;
    for (int tries = 0; tries < 3000 && got < want; tries++) {
        struct asr_output *o = asr_take_outputs(e), *next;
        for (; o; o = next) {
            next = o->next;
            o->next = NULL;
            if (o->req_id >= 1 && (int)o->req_id <= n_out && out[o->req_id - 1] == NULL) {
                out[o->req_id - 1] = o;
                got++;
            } else {
                asr_output_free(o);
            }
        }
        if (got < want)
            usleep(10000);
    }
    return got;
}

static void submit(struct asr_engine *e, uint64_t id, const void *data, size_t len, int lang)
{
    struct asr_request r = { .id = id, .audio = xmalloc(len ? len : 1), .len = len,
                             .language = lang, .use_itn = 1 };
    memcpy(r.audio, data, len);
    if (asr_submit(e, &r) < 0)
        free(r.audio);
}

static void test_engine(void)
{
    char err[256] = "";
    char *dir = xasprintf("%s/examples/models/sensevoice", srcdir);
    struct fbank_frontend *fe = fbank_frontend_load(dir, err, sizeof(err));
    free(dir);
    ok(fe != NULL, "front end (%s)", err);
    if (fe == NULL)
        return;
    struct fake f = { .gate = 0 };
    pthread_mutex_init(&f.mu, NULL);
    pthread_cond_init(&f.cv, NULL);
    struct asr_config cfg = { .max_num_seqs = 8, .max_batch_frames = 8 * 500,
                              .max_audio_seconds = 100, .max_segment_seconds = 30,
                              .blank_id = 0, .frontend = fe, .forward = fake_forward,
                              .forward_arg = &f, .warmup = 1 };
    struct asr_engine *e = asr_start(&cfg, on_notify, NULL, err, sizeof(err));
    ok(e != NULL && asr_has_run(e) && f.calls == 1, "engine starts after a warm-up forward");

    /* hold the engine in a forward, queue several requests, release: they
     * share one batch */
    size_t l2, l5, l70, lshort;
    void *w2 = tone_wav(2.0, 0, &l2), *w5 = tone_wav(5.0, 0, &l5);
    void *w70 = tone_wav(70.0, 8.0, &l70), *wshort = tone_wav(0.01, 0, &lshort);
    pthread_mutex_lock(&f.mu);
    f.gate = 1;
    pthread_mutex_unlock(&f.mu);
    submit(e, 100, w2, l2, SV_LANG_AUTO);       /* the blocker */
    pthread_mutex_lock(&f.mu);
    while (!f.waiting)
        pthread_cond_wait(&f.cv, &f.mu);
    int calls0 = f.calls;
    pthread_mutex_unlock(&f.mu);
    submit(e, 1, w2, l2, SV_LANG_KO);
    submit(e, 2, w5, l5, SV_LANG_AUTO);
    submit(e, 3, w70, l70, SV_LANG_AUTO);
    submit(e, 4, "not audio at all", 16, SV_LANG_AUTO);
    submit(e, 5, wshort, lshort, SV_LANG_AUTO);
    submit(e, 6, "", 0, SV_LANG_AUTO);
    submit(e, 7, w2, l2, SV_LANG_AUTO);
    asr_cancel(e, 7);
    struct asr_load ld;
    asr_get_load(e, &ld);
    ok(ld.waiting >= 6, "load: %d requests waiting", ld.waiting);
    pthread_mutex_lock(&f.mu);
    f.gate = 0;
    pthread_cond_broadcast(&f.cv);
    pthread_mutex_unlock(&f.mu);
    struct asr_output *out[7] = { 0 };
    int got = collect(e, out, 7, 6);
    ok(got == 6, "six answers (the cancelled one gives none): %d", got);
    usleep(50000);
    struct asr_output *late = asr_take_outputs(e);
    ok(late == NULL || late->req_id == 100, "nothing for the cancelled request");
    while (late) {
        struct asr_output *n = late->next;
        asr_output_free(late);
        late = n;
    }
    pthread_mutex_lock(&f.mu);
    int batches = f.calls - calls0 - 1;
    pthread_mutex_unlock(&f.mu);
    ok(out[0] && out[1] && out[2] && out[0]->status == 0 && out[1]->status == 0 &&
       out[2]->status == 0, "the three audio requests succeed");
    if (out[0] && out[1] && out[2] && out[2]->status == 0) {
        ok(out[0]->n_segs == 1 && out[1]->n_segs == 1 && out[2]->n_segs >= 3,
           "2 s and 5 s are one segment each, 70 s is cut at silences (%d)", out[2]->n_segs);
        int max_len_ok = 1;
        for (int i = 0; i < out[2]->n_segs; i++)
            max_len_ok &= out[2]->segs[i].end - out[2]->segs[i].start <= 30.0 + 1e-9 &&
                          (i == 0 || out[2]->segs[i].start >= out[2]->segs[i - 1].end);
        ok(max_len_ok, "segments <= 30 s, in order");
        ok(batches == 1 && f.max_clips == 2 + out[2]->n_segs,
           "all %d segments of the queued requests ran in one batch (%d batches, max %d clips)",
           2 + out[2]->n_segs, batches, f.max_clips);
        ok(fabs(out[1]->duration - 5.0) < 1e-6, "duration %g", out[1]->duration);
        const struct asr_segment *s = &out[0]->segs[0];
        /* 2 s: 198 fbank frames -> 33 LFR frames; prompt tags + runs */
        ok(s->n_frames == 33, "33 feature frames in 2 s (%d)", s->n_frames);
        ok(s->n_ids >= 4 && s->ids[0] == 24896 && s->rows[0] == 0 && s->ids[3] == 3 &&
           s->ids[4] == 100 && s->rows[4] == 4 && s->ends[4] == 6 && s->ids[5] == 101 &&
           s->rows[5] == 7 && s->ends[5] == 9,
           "CTC collapse keeps the prompt tags (ko asked) and runs with their rows");
    }
    ok(out[3] && out[3]->status == 400 && strstr(out[3]->message, "audio"),
       "corrupt audio: 400 (%s)", out[3] ? out[3]->message : "");
    ok(out[4] && out[4]->status == 400 && strstr(out[4]->message, "too short"),
       "10 ms of audio: 400 (%s)", out[4] ? out[4]->message : "");
    ok(out[5] && out[5]->status == 400 && strstr(out[5]->message, "empty"),
       "empty file: 400 (%s)", out[5] ? out[5]->message : "");
    for (int i = 0; i < 7; i++)
        asr_output_free(out[i]);

    /* too long, and a failing forward */
    size_t l120;
    void *w120 = tone_wav(120.0, 0, &l120);
    submit(e, 1, w120, l120, SV_LANG_AUTO);
    memset(out, 0, sizeof(out));
    collect(e, out, 7, 1);
    ok(out[0] && out[0]->status == 400 && strstr(out[0]->message, "max_audio_seconds"),
       "120 s over a 100 s limit: 400 (%s)", out[0] ? out[0]->message : "");
    asr_output_free(out[0]);
    f.fail = 1;
    submit(e, 2, w2, l2, SV_LANG_AUTO);
    memset(out, 0, sizeof(out));
    collect(e, out, 7, 1);
    ok(out[1] && out[1]->status == 500, "a failed forward: 500 (%s)", out[1] ? out[1]->message : "");
    asr_output_free(out[1]);
    asr_get_load(e, &ld);
    ok(ld.batches >= 2 && ld.requests_done >= 6 && ld.waiting == 0, "load counters");
    /* stop with work queued */
    f.fail = 0;
    submit(e, 3, w70, l70, SV_LANG_AUTO);
    asr_stop(e);
    ok(1, "stop with a request queued");
    free(w2);
    free(w5);
    free(w70);
    free(w120);
    free(wshort);
    fbank_frontend_free(fe);
    pthread_mutex_destroy(&f.mu);
    pthread_cond_destroy(&f.cv);
}

int main(void)
{
    srcdir = getenv("LLMUX_SRCDIR");
    if (!srcdir)
        srcdir = getenv("srcdir");
    if (!srcdir)
        srcdir = "..";
    test_form();
    test_spm();
    test_tags();
    test_result();
    test_engine();
    spm_model_free(spm);
    return tap_done();
}
