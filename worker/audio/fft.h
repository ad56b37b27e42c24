/*
 * fft.h -- an in-place radix-2 complex FFT in double precision for the fbank
 * front end (frame sizes are powers of two: 512 at 16 kHz). A plan holds the
 * twiddles and the bit-reversal table; it is immutable once made, so threads
 * may share one. No other transform lives here.
 */
#ifndef LLMUX_AUDIO_FFT_H
#define LLMUX_AUDIO_FFT_H

struct fft_plan;

/* NULL unless n is a power of two >= 2. */
struct fft_plan *fft_plan_new(int n);
void fft_plan_free(struct fft_plan *p);
int fft_plan_size(const struct fft_plan *p);
/* Forward transform (e^{-2 pi i k n / N}, no scaling) of re[]/im[] in place. */
void fft_forward(const struct fft_plan *p, double *re, double *im);

#endif
