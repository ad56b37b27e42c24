/*
 * decode.c -- audio_decode(): an in-memory audio file to 16 kHz mono float
 * PCM. libsndfile reads the container and codec (through its virtual I/O,
 * no temp files), channels are averaged, libsoxr resamples. Errors are
 * one-line messages fit for an HTTP 400. No features, no VAD here.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sndfile.h>
#include <soxr.h>

#include "audio.h"
#include "util.h"

struct mem_file {
    const unsigned char *data;
    sf_count_t len, pos;
};

static sf_count_t mem_len(void *user)
{
    return ((struct mem_file *)user)->len;
}

static sf_count_t mem_seek(sf_count_t off, int whence, void *user)
{
    struct mem_file *m = user;
    sf_count_t to = whence == SEEK_SET ? off : whence == SEEK_CUR ? m->pos + off : m->len + off;
    if (to < 0 || to > m->len)
        return -1;
    m->pos = to;
    return to;
}

static sf_count_t mem_read(void *ptr, sf_count_t count, void *user)
{
    struct mem_file *m = user;
    if (count > m->len - m->pos)
        count = m->len - m->pos;
    if (count <= 0)
        return 0;
    memcpy(ptr, m->data + m->pos, (size_t)count);
    m->pos += count;
    return count;
}

static sf_count_t mem_write(const void *ptr, sf_count_t count, void *user)
{
    (void)ptr;
    (void)count;
    (void)user;
    return 0;
}

static sf_count_t mem_tell(void *user)
{
    return ((struct mem_file *)user)->pos;
}

static void too_long(double seconds, double max_seconds, char *err, size_t errlen)
{
    snprintf(err, errlen, "audio is %.1f s long; the limit (max_audio_seconds) is %g s",
             seconds, max_seconds);
}

/* Reads every frame of <sf> mixed down to mono; -1 past max_seconds. */
static int read_mono(SNDFILE *sf, const SF_INFO *info, double max_seconds, float **out,
                     size_t *n, char *err, size_t errlen)
{
    enum { CHUNK = 4096 };
    int ch = info->channels;
    float *buf = xmalloc(sizeof(float) * (size_t)CHUNK * (size_t)ch);
    float *mono = NULL;
    size_t len = 0, cap = 0;
    double limit = max_seconds > 0 ? max_seconds * info->samplerate : INFINITY;
    for (;;) {
        sf_count_t got = sf_readf_float(sf, buf, CHUNK);
        if (got <= 0)
            break;
        if ((double)(len + (size_t)got) > limit + 0.5) {
            /* count the rest only when the header told us the length */
            double total = info->frames > 0 && info->frames < SF_COUNT_MAX / 2
                           ? (double)info->frames : (double)(len + (size_t)got);
            too_long(total / info->samplerate, max_seconds, err, errlen);
            free(buf);
            free(mono);
            return -1;
        }
        xgrow((void **)&mono, &cap, len + (size_t)got, sizeof(float));
        for (sf_count_t i = 0; i < got; i++) {
            double s = 0;
            for (int c = 0; c < ch; c++)
                s += buf[i * ch + c];
            mono[len + (size_t)i] = (float)(s / ch);
        }
        len += (size_t)got;
    }
    free(buf);
    if (sf_error(sf) != SF_ERR_NO_ERROR && len == 0) {
        snprintf(err, errlen, "corrupt audio file: %s", sf_strerror(sf));
        free(mono);
        return -1;
    }
    *out = mono;
    *n = len;
    return 0;
}

static int resample(const float *in, size_t n, int rate, float **out, size_t *n_out, char *err,
                    size_t errlen)
{
    double ratio = (double)AUDIO_RATE / rate;
    size_t olen = (size_t)ceil((double)n * ratio) + 64;
    float *o = xmalloc(sizeof(float) * olen);
    size_t idone = 0, odone = 0;
    soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
    soxr_error_t e = soxr_oneshot(rate, AUDIO_RATE, 1, in, n, &idone, o, olen, &odone, NULL, &q,
                                  NULL);
    if (e) {
        snprintf(err, errlen, "resampling from %d Hz failed: %s", rate, e);
        free(o);
        return -1;
    }
    *out = o;
    *n_out = odone;
    return 0;
}

int audio_decode(const void *data, size_t len, double max_seconds, float **pcm16k, size_t *n,
                 double *duration_s, char *err, size_t errlen)
{
    SF_VIRTUAL_IO vio = {mem_len, mem_seek, mem_read, mem_write, mem_tell};
    struct mem_file mf = {data, (sf_count_t)len, 0};
    SF_INFO info;
    SNDFILE *sf = NULL;
    float *mono = NULL, *out = NULL;
    size_t nm = 0, no = 0;
    *pcm16k = NULL;
    *n = 0;
    if (duration_s)
        *duration_s = 0;
    if (!data || len == 0) {
        snprintf(err, errlen, "empty audio file");
        return -1;
    }
    memset(&info, 0, sizeof(info));
    sf = sf_open_virtual(&vio, SFM_READ, &info, &mf);
    if (!sf) {
        snprintf(err, errlen, "unsupported or corrupt audio file: %s", sf_strerror(NULL));
        return -1;
    }
    if (info.channels < 1 || info.samplerate < 1000 || info.samplerate > 768000) {
        snprintf(err, errlen, "unsupported audio: %d channels at %d Hz", info.channels,
                 info.samplerate);
        goto fail;
    }
    if (max_seconds > 0 && info.frames > 0 && info.frames < SF_COUNT_MAX / 2 &&
        (double)info.frames > max_seconds * info.samplerate + 0.5) {
        too_long((double)info.frames / info.samplerate, max_seconds, err, errlen);
        goto fail;
    }
    if (read_mono(sf, &info, max_seconds, &mono, &nm, err, errlen) < 0)
        goto fail;
    if (nm == 0) {
        snprintf(err, errlen, "empty audio file (no samples)");
        goto fail;
    }
    if (info.samplerate == AUDIO_RATE) {
        out = mono;
        no = nm;
        mono = NULL;
    } else if (resample(mono, nm, info.samplerate, &out, &no, err, errlen) < 0) {
        goto fail;
    }
    for (size_t i = 0; i < no; i++) {
        if (isnan(out[i]))
            out[i] = 0.0f;
        else if (out[i] < -1.0f)
            out[i] = -1.0f;
        else if (out[i] > 1.0f)
            out[i] = 1.0f;
    }
    if (no == 0) {
        snprintf(err, errlen, "audio too short to resample");
        goto fail;
    }
    if (duration_s)
        *duration_s = (double)nm / info.samplerate;
    sf_close(sf);
    free(mono);
    *pcm16k = out;
    *n = no;
    return 0;
fail:
    sf_close(sf);
    free(mono);
    free(out);
    return -1;
}

int audio_decode_file(const char *path, double max_seconds, float **pcm16k, size_t *n,
                      double *duration_s, char *err, size_t errlen)
{
    *pcm16k = NULL;
    *n = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, len = 0, got;
    unsigned char *buf = xmalloc(cap);
    while ((got = fread(buf + len, 1, cap - len, fp)) > 0) {
        len += got;
        if (len == cap) {
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
    }
    int bad = ferror(fp);
    fclose(fp);
    if (bad) {
        snprintf(err, errlen, "%s: read error", path);
        free(buf);
        return -1;
    }
    int rc = audio_decode(buf, len, max_seconds, pcm16k, n, duration_s, err, errlen);
    free(buf);
    return rc;
}
