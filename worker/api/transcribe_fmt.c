/*
 * transcribe_fmt.c -- ids to text, rich tags to fields, segment stitching,
 * CTC-frame timestamps and words, and the five response formats of
 * /v1/audio/transcriptions. Pure functions over the engine's output.
 */
#include "transcribe_fmt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"
#include "util.h"

int asr_format_parse(const char *s)
{
    static const char *const names[] = { "json", "text", "verbose_json", "srt", "vtt" };
    if (s == NULL || *s == '\0')
        return ASR_FMT_JSON;
    for (int i = 0; i < 5; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

int asr_tag_classify(const char *piece, char *name, size_t namelen)
{
    static const char *const emotions[] = { "HAPPY", "SAD", "ANGRY", "NEUTRAL", "FEARFUL",
                                            "DISGUSTED", "SURPRISED", "OTHER", "EMO_UNKNOWN" };
    static const char *const events[] = { "Speech", "BGM", "Laughter", "Applause", "Cry",
                                          "Sneeze", "Breath", "Cough", "Sing", "Speech_Noise",
                                          "GBG", "Event_UNK" };
    size_t l = piece ? strlen(piece) : 0;
    if (l < 4 || piece[0] != '<' || piece[1] != '|' || piece[l - 2] != '|' || piece[l - 1] != '>')
        return ASR_TAG_NONE;
    size_t n = l - 4;
    if (n + 1 > namelen)
        n = namelen - 1;
    memcpy(name, piece + 2, n);
    name[n] = '\0';
    if (strcmp(name, "withitn") == 0 || strcmp(name, "woitn") == 0)
        return ASR_TAG_ITN;
    for (size_t i = 0; i < ARRAY_SIZE(emotions); i++)
        if (strcmp(name, emotions[i]) == 0)
            return ASR_TAG_EMOTION;
    for (size_t i = 0; i < ARRAY_SIZE(events); i++)
        if (strcmp(name, events[i]) == 0)
            return ASR_TAG_EVENT;
    int lower = n > 0;
    for (size_t i = 0; i < n; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || name[i] == '/'))
            lower = 0;
    return lower ? ASR_TAG_LANGUAGE : ASR_TAG_OTHER;
}

static void set_once(char *dst, size_t cap, const char *v)
{
    if (dst[0] != '\0')
        return;
    size_t n = strnlen(v, cap - 1);
    memcpy(dst, v, n);
    dst[n] = '\0';
}

/* Append segment text <t> to <b>, with a space between unless both sides are
 * non-ASCII (CJK scripts write no spaces). */
static void stitch(struct strbuf *b, const char *t)
{
    if (*t == '\0')
        return;
    if (b->len > 0) {
        unsigned char last = (unsigned char)b->p[b->len - 1], first = (unsigned char)t[0];
        if (!(last >= 0x80 && first >= 0x80))
            strbuf_add(b, " ", 1);
    }
    strbuf_adds(b, t);
}

static void add_word(struct asr_result *r, const char *text, double start, double end)
{
    r->words = xrealloc(r->words, (size_t)(r->n_words + 1) * sizeof(*r->words));
    r->words[r->n_words].word = xstrdup(text);
    r->words[r->n_words].start = start;
    r->words[r->n_words].end = end;
    r->n_words++;
}

static int ascii_alpha(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
            return 0;
    return 1;
}

/* Words of one segment as FunASR's SenseVoiceSmall.post() forms them: a
 * piece starting with U+2581 begins a word (a lone U+2581 is skipped), an
 * ASCII-letter piece after an ASCII-letter word continues it, any other
 * piece (CJK, digits, punctuation) is a word of its own. A piece spans its
 * CTC run: from max(t * 60 - 30 ms, 0) to min(end * 60 - 30 ms, n * 60 -
 * 30 ms) of the segment's feature frames, as FunASR's timestamps. Tags and
 * control pieces are left out; pieces on the prompt rows count as frame 0. */
static void seg_words(const struct spm_model *spm, const struct asr_segment *s, double frame_s,
                      struct asr_result *r)
{
    static const char ws[] = "\xe2\x96\x81";
    double half = frame_s / 2, tmax = s->n_frames * frame_s - half;
    char *prev = NULL;              /* the last word (FunASR's prev_word) */
    int first = 1;
    for (int i = 0; i < s->n_ids; i++) {
        int id = s->ids[i];
        const char *p = spm_model_piece(spm, id);
        if (p == NULL || spm_piece_is_tag(spm, id) || spm_model_type(spm, id) == SPM_CONTROL)
            continue;
        if (strcmp(p, ws) == 0)
            continue;
        int t0 = s->rows[i] > SV_N_PROMPT ? s->rows[i] - SV_N_PROMPT : 0;
        int t1 = s->ends[i] > SV_N_PROMPT ? s->ends[i] - SV_N_PROMPT : 0;
        double a = t0 * frame_s - half, b = t1 * frame_s - half;
        if (a < 0)
            a = 0;
        if (b > tmax)
            b = tmax;
        if (b < a)
            b = a;
        a += s->start;
        b += s->start;
        int starts = strncmp(p, ws, 3) == 0;
        const char *word = starts ? p + 3 : p;
        if (!first && !starts && prev && ascii_alpha(prev) && ascii_alpha(word) &&
            r->n_words > 0) {
            char *m = xasprintf("%s%s", prev, word);
            free(r->words[r->n_words - 1].word);
            r->words[r->n_words - 1].word = xstrdup(m);
            r->words[r->n_words - 1].end = b;
            free(prev);
            prev = m;
        } else {
            add_word(r, word, a, b);
            free(prev);
            prev = xstrdup(word);
        }
        first = 0;
    }
    free(prev);
}

void asr_result_build(const struct spm_model *spm, const struct asr_output *o,
                      struct asr_result *r)
{
    struct strbuf all = { 0 };
    char name[64];
    memset(r, 0, sizeof(*r));
    r->itn = -1;
    r->duration = o->duration;
    double frame_s = o->frame_s > 0 ? o->frame_s : 0.06;
    r->segs = xcalloc((size_t)(o->n_segs > 0 ? o->n_segs : 1), sizeof(*r->segs));
    for (int i = 0; i < o->n_segs; i++) {
        const struct asr_segment *s = &o->segs[i];
        struct asr_text_seg *d = &r->segs[r->n_segs];
        d->start = s->start;
        d->end = s->end;
        d->tokens = xmalloc((size_t)(s->n_ids > 0 ? s->n_ids : 1) * sizeof(int32_t));
        for (int k = 0; k < s->n_ids; k++) {
            const char *p = spm_model_piece(spm, s->ids[k]);
            switch (asr_tag_classify(p, name, sizeof(name))) {
            case ASR_TAG_LANGUAGE: set_once(d->language, sizeof(d->language), name); break;
            case ASR_TAG_EMOTION: set_once(d->emotion, sizeof(d->emotion), name); break;
            case ASR_TAG_EVENT: set_once(d->event, sizeof(d->event), name); break;
            case ASR_TAG_ITN:
                if (r->itn < 0)
                    r->itn = strcmp(name, "withitn") == 0;
                break;
            case ASR_TAG_OTHER: break;
            default:
                d->tokens[d->n_tokens++] = s->ids[k];
            }
        }
        d->text = spm_model_decode(spm, d->tokens, d->n_tokens, 1);
        set_once(r->language, sizeof(r->language), d->language);
        set_once(r->emotion, sizeof(r->emotion), d->emotion);
        set_once(r->event, sizeof(r->event), d->event);
        stitch(&all, d->text);
        seg_words(spm, s, frame_s, r);
        r->n_segs++;
    }
    strbuf_add(&all, "", 0);
    r->text = all.p;
}

void asr_result_free(struct asr_result *r)
{
    for (int i = 0; i < r->n_segs; i++) {
        free(r->segs[i].text);
        free(r->segs[i].tokens);
    }
    free(r->segs);
    for (int i = 0; i < r->n_words; i++)
        free(r->words[i].word);
    free(r->words);
    free(r->text);
    memset(r, 0, sizeof(*r));
}

void asr_fmt_timestamp(double s, char sep, char *out, size_t outlen)
{
    if (!(s > 0))
        s = 0;
    long ms = lround(s * 1000.0);
    snprintf(out, outlen, "%02ld:%02ld:%02ld%c%03ld", ms / 3600000, ms / 60000 % 60,
             ms / 1000 % 60, sep, ms % 1000);
}

static char *format_cues(const struct asr_result *r, int vtt)
{
    struct strbuf b = { 0 };
    char t0[32], t1[32];
    int n = 0;
    strbuf_adds(&b, vtt ? "WEBVTT\n\n" : "");
    for (int i = 0; i < r->n_segs; i++) {
        const struct asr_text_seg *s = &r->segs[i];
        if (s->text[0] == '\0')
            continue;
        asr_fmt_timestamp(s->start, vtt ? '.' : ',', t0, sizeof(t0));
        asr_fmt_timestamp(s->end, vtt ? '.' : ',', t1, sizeof(t1));
        char *cue = vtt ? xasprintf("%s --> %s\n%s\n\n", t0, t1, s->text)
                        : xasprintf("%d\n%s --> %s\n%s\n\n", ++n, t0, t1, s->text);
        strbuf_adds(&b, cue);
        free(cue);
    }
    strbuf_add(&b, "", 0);
    return b.p;
}

char *asr_format_srt(const struct asr_result *r) { return format_cues(r, 0); }

char *asr_format_vtt(const struct asr_result *r) { return format_cues(r, 1); }

/* A JSON string of <s>; bytes of invalid UTF-8 (random weights can give
 * broken byte pieces) become U+FFFD. */
static json_t *jstr(const char *s)
{
    json_t *v = json_string(s);
    if (v != NULL)
        return v;
    struct strbuf b = { 0 };
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x80)
            strbuf_add(&b, (const char *)p, 1);
        else
            strbuf_adds(&b, "\xef\xbf\xbd");
    }
    strbuf_add(&b, "", 0);
    v = json_string(b.p);
    strbuf_free(&b);
    return v;
}

static json_t *str_or_null(const char *s)
{
    return s && s[0] ? jstr(s) : json_null();
}

/* seconds rounded to the millisecond, as a JSON number */
static json_t *secs(double s)
{
    return json_real(round(s * 1000.0) / 1000.0);
}

json_t *asr_format_json(const struct asr_result *r, int verbose, int words)
{
    json_t *j = json_object();
    if (!verbose) {
        json_object_set_new(j, "text", jstr(r->text));
        return j;
    }
    json_object_set_new(j, "task", json_string("transcribe"));
    json_object_set_new(j, "language", str_or_null(r->language));
    json_object_set_new(j, "duration", secs(r->duration));
    json_object_set_new(j, "text", jstr(r->text));
    json_t *segs = json_array();
    for (int i = 0; i < r->n_segs; i++) {
        const struct asr_text_seg *s = &r->segs[i];
        json_t *o = json_object(), *toks = json_array();
        for (int k = 0; k < s->n_tokens; k++)
            json_array_append_new(toks, json_integer(s->tokens[k]));
        json_object_set_new(o, "id", json_integer(i));
        json_object_set_new(o, "seek", json_integer(lround(s->start * 100.0)));
        json_object_set_new(o, "start", secs(s->start));
        json_object_set_new(o, "end", secs(s->end));
        json_object_set_new(o, "text", jstr(s->text));
        json_object_set_new(o, "tokens", toks);
        json_object_set_new(o, "temperature", json_real(0.0));
        json_object_set_new(o, "language", str_or_null(s->language));
        json_object_set_new(o, "emotion", str_or_null(s->emotion));
        json_object_set_new(o, "event", str_or_null(s->event));
        json_array_append_new(segs, o);
    }
    json_object_set_new(j, "segments", segs);
    if (words) {
        json_t *wa = json_array();
        for (int i = 0; i < r->n_words; i++) {
            json_t *o = json_object();
            json_object_set_new(o, "word", jstr(r->words[i].word));
            json_object_set_new(o, "start", secs(r->words[i].start));
            json_object_set_new(o, "end", secs(r->words[i].end));
            json_array_append_new(wa, o);
        }
        json_object_set_new(j, "words", wa);
    }
    json_object_set_new(j, "emotion", str_or_null(r->emotion));
    json_object_set_new(j, "event", str_or_null(r->event));
    json_object_set_new(j, "use_itn", r->itn < 0 ? json_null() : json_boolean(r->itn));
    return j;
}
