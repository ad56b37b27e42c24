/*
 * fbank_priv.h -- the inside of struct fbank_frontend, shared by
 * fbank_load.c (config.yaml + am.mvn -> settings, window, mel bank) and
 * fbank.c (the features). Like kaldi (BaseFloat) and kaldi-native-fbank, the
 * arithmetic is float except the FFT (double). Nobody outside worker/audio/
 * includes this.
 */
#ifndef LLMUX_AUDIO_FBANK_PRIV_H
#define LLMUX_AUDIO_FBANK_PRIV_H

#include "audio.h"
#include "fft.h"

struct fbank_frontend {
    int fs;            /* sample rate the model expects (16000) */
    int n_mels;        /* mel bins (80) */
    int frame_len;     /* samples per frame (400 = 25 ms) */
    int frame_shift;   /* samples between frames (160 = 10 ms) */
    int padded;        /* FFT size (512) */
    int lfr_m, lfr_n;  /* low frame rate: stack m frames, hop n */
    float preemph;     /* 0.97f */
    float scale;       /* waveform multiplier before fbank (32768 = upsacle_samples) */
    float *window;     /* [frame_len] */
    struct fft_plan *fft;
    int *mel_first;    /* [n_mels] first FFT bin with a nonzero weight */
    int *mel_count;    /* [n_mels] number of such bins */
    float *mel_w;      /* [n_mels][padded/2] weights, row b starts at b*padded/2 */
    float *cmvn_shift; /* [dim] AddShift (added), NULL without am.mvn */
    float *cmvn_scale; /* [dim] Rescale (multiplied) */
    int dim;           /* n_mels * lfr_m */
};

#endif
