/*
 * fbank.c -- features of 16 kHz PCM as FunASR's WavFrontend computes them at
 * inference: kaldi log-mel fbank (snip_edges framing, DC removal,
 * pre-emphasis, window, power spectrum, mel bank, log), LFR stacking, CMVN.
 * Reads a loaded struct fbank_frontend only; all scratch is per call.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fbank_priv.h"
#include "util.h"

int fbank_frontend_dim(const struct fbank_frontend *f)
{
    return f->dim;
}

int fbank_frontend_fbank(const struct fbank_frontend *f, const float *pcm, size_t n,
                         float **fbank, int *n_frames)
{
    if (!f || !fbank || !n_frames || (n && !pcm))
        return -1;
    *fbank = NULL;
    *n_frames = 0;
    size_t flen = (size_t)f->frame_len, shift = (size_t)f->frame_shift;
    if (n < flen)
        return 0;
    size_t nf = 1 + (n - flen) / shift;
    if (nf > (size_t)INT32_MAX / (size_t)f->n_mels)
        return -1;
    int np = f->padded, half = np / 2;
    float *fr = xmalloc(sizeof(float) * flen);
    double *re = xmalloc(sizeof(double) * (size_t)np);
    double *im = xmalloc(sizeof(double) * (size_t)np);
    float *pow_spec = xmalloc(sizeof(float) * (size_t)half);
    float *out = xmalloc(sizeof(float) * nf * (size_t)f->n_mels);
    for (size_t t = 0; t < nf; t++) {
        /* float like kaldi: a sequential float sum for the DC offset */
        const float *x = pcm + t * shift;
        float sum = 0;
        for (size_t i = 0; i < flen; i++) {
            fr[i] = x[i] * f->scale;
            sum += fr[i];
        }
        float mean = sum / (float)flen;
        for (size_t i = 0; i < flen; i++)
            fr[i] -= mean;
        for (size_t i = flen - 1; i > 0; i--)
            fr[i] -= f->preemph * fr[i - 1];
        fr[0] -= f->preemph * fr[0];
        for (size_t i = 0; i < flen; i++)
            re[i] = (double)(fr[i] * f->window[i]);
        for (int i = (int)flen; i < np; i++)
            re[i] = 0;
        memset(im, 0, sizeof(double) * (size_t)np);
        fft_forward(f->fft, re, im);
        for (int k = 0; k < half; k++) {
            float r = (float)re[k], m = (float)im[k];
            pow_spec[k] = r * r + m * m;
        }
        float *row = out + t * (size_t)f->n_mels;
        for (int b = 0; b < f->n_mels; b++) {
            const float *w = f->mel_w + (size_t)b * (size_t)half;
            float e = 0;
            for (int k = f->mel_first[b]; k < f->mel_first[b] + f->mel_count[b]; k++)
                e += w[k] * pow_spec[k];
            row[b] = logf(e < FLT_EPSILON ? FLT_EPSILON : e);
        }
    }
    free(fr);
    free(re);
    free(im);
    free(pow_spec);
    *fbank = out;
    *n_frames = (int)nf;
    return 0;
}

int fbank_frontend_lfr_cmvn(const struct fbank_frontend *f, const float *fbank, int n_frames,
                            float **feats, int *n_out)
{
    if (!f || !feats || !n_out || n_frames < 0 || (n_frames && !fbank))
        return -1;
    *feats = NULL;
    *n_out = 0;
    if (n_frames == 0)
        return 0;
    int m = f->lfr_m, hop = f->lfr_n, d = f->n_mels, left = (m - 1) / 2;
    int t_out = (n_frames + hop - 1) / hop;
    float *out = xmalloc(sizeof(float) * (size_t)t_out * (size_t)f->dim);
    /* Row j of the left-padded input: frame 0 for j < left, else frame
     * j - left; rows past the end repeat the last frame. */
    for (int i = 0; i < t_out; i++) {
        float *o = out + (size_t)i * (size_t)f->dim;
        for (int k = 0; k < m; k++) {
            int j = i * hop + k - left;
            if (j < 0)
                j = 0;
            if (j > n_frames - 1)
                j = n_frames - 1;
            memcpy(o + (size_t)k * (size_t)d, fbank + (size_t)j * (size_t)d,
                   sizeof(float) * (size_t)d);
        }
        if (f->cmvn_shift)
            for (int c = 0; c < f->dim; c++)
                o[c] = (o[c] + f->cmvn_shift[c]) * f->cmvn_scale[c];
    }
    *feats = out;
    *n_out = t_out;
    return 0;
}

int fbank_frontend_compute(const struct fbank_frontend *f, const float *pcm16k, size_t n,
                           float **feats, int *n_frames, int *dim)
{
    if (!f || !feats || !n_frames || !dim)
        return -1;
    float *fb = NULL;
    int nf = 0;
    *feats = NULL;
    *n_frames = 0;
    *dim = f->dim;
    if (fbank_frontend_fbank(f, pcm16k, n, &fb, &nf) < 0)
        return -1;
    int rc = fbank_frontend_lfr_cmvn(f, fb, nf, feats, n_frames);
    free(fb);
    return rc;
}
