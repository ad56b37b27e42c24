/*
 * fbank_load.c -- builds a struct fbank_frontend from a model folder: the
 * frontend_conf block of config.yaml (a flat "key: value" block; no general
 * YAML here), the <AddShift>/<Rescale> vectors of am.mvn (kaldi nnet text),
 * the window and the kaldi mel filter bank. Computes no features.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fbank_priv.h"
#include "util.h"

struct fe_conf {
    int fs, n_mels, lfr_m, lfr_n, snip_edges, upscale;
    double frame_length_ms, frame_shift_ms;
    char window[32];
};

static char *read_text(const char *path, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, len = 0;
    char *buf = xmalloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, fp)) > 0) {
        len += got;
        if (cap - len < 2) {
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
    }
    int bad = ferror(fp);
    fclose(fp);
    if (bad) {
        snprintf(err, errlen, "%s: read error", path);
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

static int parse_bool(const char *v, int *out)
{
    if (!strcasecmp(v, "true") || !strcmp(v, "1")) {
        *out = 1;
        return 0;
    }
    if (!strcasecmp(v, "false") || !strcmp(v, "0")) {
        *out = 0;
        return 0;
    }
    return -1;
}

/* One "key: value" of frontend_conf; unknown keys are ignored. */
static int conf_set(struct fe_conf *c, const char *key, const char *val, char *err, size_t errlen)
{
    char *end = NULL;
    double d = strtod(val, &end);
    int is_num = end != val && *end == '\0';
    if (!strcmp(key, "window")) {
        snprintf(c->window, sizeof(c->window), "%s", val);
        return 0;
    }
    if (!strcmp(key, "snip_edges"))
        return parse_bool(val, &c->snip_edges) == 0 ? 0
               : (snprintf(err, errlen, "config.yaml: frontend_conf.snip_edges: not a boolean"), -1);
    if (!strcmp(key, "upsacle_samples") || !strcmp(key, "upscale_samples"))
        return parse_bool(val, &c->upscale) == 0 ? 0
               : (snprintf(err, errlen, "config.yaml: frontend_conf.%s: not a boolean", key), -1);
    int *ip = !strcmp(key, "fs") ? &c->fs : !strcmp(key, "n_mels") ? &c->n_mels
            : !strcmp(key, "lfr_m") ? &c->lfr_m : !strcmp(key, "lfr_n") ? &c->lfr_n : NULL;
    double *dp = !strcmp(key, "frame_length") ? &c->frame_length_ms
               : !strcmp(key, "frame_shift") ? &c->frame_shift_ms : NULL;
    if (!ip && !dp)
        return 0; /* cmvn_file, dither (always 0 at inference), ... */
    if (!is_num || d <= 0 || d > 1e6 || (ip && d != floor(d))) {
        snprintf(err, errlen, "config.yaml: frontend_conf.%s: bad value '%s'", key, val);
        return -1;
    }
    if (ip)
        *ip = (int)d;
    else
        *dp = d;
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    if (e - s >= 2 && ((*s == '"' && e[-1] == '"') || (*s == '\'' && e[-1] == '\''))) {
        e[-1] = '\0';
        s++;
    }
    return s;
}

/* Reads frontend_conf (a top-level key whose indented lines are key: value). */
static int conf_parse(char *text, struct fe_conf *c, char *err, size_t errlen)
{
    int in_block = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        int indented = isspace((unsigned char)line[0]);
        char *s = trim(line);
        if (!*s)
            continue;
        if (!indented) {
            in_block = !strncmp(s, "frontend_conf:", 14) && !*trim(s + 14);
            if (!strncmp(s, "frontend:", 9)) {
                const char *v = trim(s + 9);
                if (strcmp(v, "WavFrontend") != 0) {
                    snprintf(err, errlen, "config.yaml: frontend '%s' is not supported "
                             "(only WavFrontend)", v);
                    return -1;
                }
            }
            continue;
        }
        if (!in_block)
            continue;
        char *colon = strchr(s, ':');
        if (!colon)
            continue;
        *colon = '\0';
        if (conf_set(c, trim(s), trim(colon + 1), err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* The numbers between '[' and ']' on the <LearnRateCoef> line after <tag>. */
static int mvn_vector(const char *text, const char *tag, float **out, int *n, char *err,
                      size_t errlen)
{
    const char *p = strstr(text, tag);
    const char *lb = p ? strstr(p, "<LearnRateCoef>") : NULL;
    lb = lb ? strchr(lb, '[') : NULL;
    const char *rb = lb ? strchr(lb, ']') : NULL;
    if (!rb) {
        snprintf(err, errlen, "am.mvn: no %s vector", tag);
        return -1;
    }
    size_t cap = 0;
    int cnt = 0;
    float *v = NULL;
    const char *q = lb + 1;
    while (q < rb) {
        char *end;
        double d = strtod(q, &end);
        if (end == q) {
            if (isspace((unsigned char)*q)) {
                q++;
                continue;
            }
            snprintf(err, errlen, "am.mvn: bad number in %s", tag);
            free(v);
            return -1;
        }
        xgrow((void **)&v, &cap, (size_t)cnt + 1, sizeof(float));
        v[cnt++] = (float)d;
        q = end;
    }
    *out = v;
    *n = cnt;
    return 0;
}

/* Float on purpose: the bank's weights are kaldi's float weights. */
static float mel_scale(float hz)
{
    return 1127.0f * logf(1.0f + hz / 700.0f);
}

/* The kaldi window of <n> samples (a = 2 pi / (n - 1)). */
static int make_window(struct fbank_frontend *f, const char *type, char *err, size_t errlen)
{
    int n = f->frame_len;
    f->window = xmalloc(sizeof(float) * (size_t)n);
    double a = 2.0 * M_PI / (double)(n - 1);
    for (int i = 0; i < n; i++) {
        double c = cos(a * i), w;
        if (!strcmp(type, "hamming"))
            w = 0.54 - 0.46 * c;
        else if (!strcmp(type, "hanning"))
            w = 0.5 - 0.5 * c;
        else if (!strcmp(type, "povey"))
            w = pow(0.5 - 0.5 * c, 0.85);
        else if (!strcmp(type, "rectangular"))
            w = 1.0;
        else if (!strcmp(type, "blackman"))
            w = 0.42 - 0.5 * c + 0.08 * cos(2.0 * a * i);
        else {
            snprintf(err, errlen, "config.yaml: frontend_conf.window '%s' is not a kaldi "
                     "window (hamming, hanning, povey, rectangular, blackman)", type);
            return -1;
        }
        f->window[i] = (float)w;
    }
    return 0;
}

/* Triangles evenly spaced on the mel scale between 20 Hz and Nyquist over the
 * first padded/2 FFT bins (kaldi MelBanks, no VTLN). */
static void make_mel_bank(struct fbank_frontend *f)
{
    int half = f->padded / 2, nb = f->n_mels;
    float bin_hz = (float)f->fs / (float)f->padded;
    float lo = mel_scale(20.0f), hi = mel_scale(0.5f * (float)f->fs);
    float delta = (hi - lo) / (float)(nb + 1);
    f->mel_w = xcalloc((size_t)nb * (size_t)half, sizeof(float));
    f->mel_first = xcalloc((size_t)nb, sizeof(int));
    f->mel_count = xcalloc((size_t)nb, sizeof(int));
    for (int b = 0; b < nb; b++) {
        float left = lo + (float)b * delta, center = lo + (float)(b + 1) * delta;
        float right = lo + (float)(b + 2) * delta;
        int first = -1, last = -1;
        for (int k = 0; k < half; k++) {
            float mel = mel_scale(bin_hz * (float)k);
            if (mel <= left || mel >= right)
                continue;
            float w = mel <= center ? (mel - left) / (center - left)
                                     : (right - mel) / (right - center);
            f->mel_w[(size_t)b * (size_t)half + (size_t)k] = w;
            if (first < 0)
                first = k;
            last = k;
        }
        f->mel_first[b] = first < 0 ? 0 : first;
        f->mel_count[b] = first < 0 ? 0 : last - first + 1;
    }
}

struct fbank_frontend *fbank_frontend_load(const char *model_dir, char *err, size_t errlen)
{
    struct fe_conf c = {.fs = 16000, .n_mels = 80, .lfr_m = 1, .lfr_n = 1, .snip_edges = 1,
                        .upscale = 1, .frame_length_ms = 25, .frame_shift_ms = 10};
    snprintf(c.window, sizeof(c.window), "hamming");
    struct fbank_frontend *f = NULL;
    char *path = xasprintf("%s/config.yaml", model_dir);
    char *text = read_text(path, err, errlen);
    char *mvn = NULL;
    float *scale = NULL;
    free(path);
    if (!text || conf_parse(text, &c, err, errlen) < 0)
        goto fail;
    if (!c.snip_edges) {
        snprintf(err, errlen, "config.yaml: frontend_conf.snip_edges false is not supported");
        goto fail;
    }
    if (c.fs != AUDIO_RATE) {
        snprintf(err, errlen, "config.yaml: frontend_conf.fs %d is not supported (only %d Hz)",
                 c.fs, AUDIO_RATE);
        goto fail;
    }
    f = xcalloc(1, sizeof(*f));
    f->fs = c.fs;
    f->n_mels = c.n_mels;
    f->lfr_m = c.lfr_m;
    f->lfr_n = c.lfr_n;
    f->preemph = 0.97f;
    f->scale = c.upscale ? 32768.0f : 1.0f;
    f->frame_len = (int)(c.fs * 0.001 * c.frame_length_ms);
    f->frame_shift = (int)(c.fs * 0.001 * c.frame_shift_ms);
    if (f->frame_len < 2 || f->frame_shift < 1 || f->n_mels > 1024 || f->lfr_m > 64 ||
        f->lfr_n > 64) {
        snprintf(err, errlen, "config.yaml: frontend_conf values out of range");
        goto fail;
    }
    f->padded = 1;
    while (f->padded < f->frame_len)
        f->padded <<= 1;
    if (f->padded / 2 < f->n_mels) {
        snprintf(err, errlen, "config.yaml: n_mels %d too large for %d-sample frames",
                 f->n_mels, f->frame_len);
        goto fail;
    }
    f->dim = f->n_mels * f->lfr_m;
    f->fft = fft_plan_new(f->padded);
    if (make_window(f, c.window, err, errlen) < 0)
        goto fail;
    make_mel_bank(f);

    path = xasprintf("%s/am.mvn", model_dir);
    mvn = read_text(path, err, errlen);
    free(path);
    if (!mvn)
        goto fail;
    int ns = 0, nr = 0;
    if (mvn_vector(mvn, "<AddShift>", &f->cmvn_shift, &ns, err, errlen) < 0 ||
        mvn_vector(mvn, "<Rescale>", &scale, &nr, err, errlen) < 0)
        goto fail;
    f->cmvn_scale = scale;
    scale = NULL;
    if (ns != f->dim || nr != f->dim) {
        snprintf(err, errlen, "am.mvn: vectors have %d and %d values; the features have %d "
                 "(n_mels %d x lfr_m %d)", ns, nr, f->dim, f->n_mels, f->lfr_m);
        goto fail;
    }
    free(text);
    free(mvn);
    return f;
fail:
    free(text);
    free(mvn);
    free(scale);
    fbank_frontend_free(f);
    return NULL;
}

void fbank_frontend_free(struct fbank_frontend *f)
{
    if (!f)
        return;
    free(f->window);
    fft_plan_free(f->fft);
    free(f->mel_first);
    free(f->mel_count);
    free(f->mel_w);
    free(f->cmvn_shift);
    free(f->cmvn_scale);
    free(f);
}
