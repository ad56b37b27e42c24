/*
 * fft.c -- the radix-2 decimation-in-time complex FFT declared in fft.h:
 * bit-reversal permutation, then log2(n) butterfly passes with precomputed
 * twiddles. Double precision so the log-mel features do not depend on
 * rounding in quiet bands. Owns nothing beyond its plan.
 */
#include "fft.h"

#include <math.h>
#include <stdlib.h>

#include "util.h"

struct fft_plan {
    int n;
    int *rev;      /* bit-reversed index of each i */
    double *wr;    /* cos(2 pi k / n), k < n/2 */
    double *wi;    /* -sin(2 pi k / n) */
};

struct fft_plan *fft_plan_new(int n)
{
    if (n < 2 || (n & (n - 1)) != 0)
        return NULL;
    struct fft_plan *p = xcalloc(1, sizeof(*p));
    p->n = n;
    p->rev = xmalloc(sizeof(int) * (size_t)n);
    p->wr = xmalloc(sizeof(double) * (size_t)(n / 2));
    p->wi = xmalloc(sizeof(double) * (size_t)(n / 2));
    int bits = 0;
    while ((1 << bits) < n)
        bits++;
    for (int i = 0; i < n; i++) {
        int r = 0;
        for (int b = 0; b < bits; b++)
            if (i & (1 << b))
                r |= 1 << (bits - 1 - b);
        p->rev[i] = r;
    }
    for (int k = 0; k < n / 2; k++) {
        double a = 2.0 * M_PI * (double)k / (double)n;
        p->wr[k] = cos(a);
        p->wi[k] = -sin(a);
    }
    return p;
}

void fft_plan_free(struct fft_plan *p)
{
    if (!p)
        return;
    free(p->rev);
    free(p->wr);
    free(p->wi);
    free(p);
}

int fft_plan_size(const struct fft_plan *p)
{
    return p->n;
}

void fft_forward(const struct fft_plan *p, double *re, double *im)
{
    int n = p->n;
    for (int i = 0; i < n; i++) {
        int j = p->rev[i];
        if (j > i) {
            double t = re[i];
            re[i] = re[j];
            re[j] = t;
            t = im[i];
            im[i] = im[j];
            im[j] = t;
        }
    }
    for (int len = 2; len <= n; len <<= 1) {
        int half = len / 2, step = n / len;
        for (int s = 0; s < n; s += len) {
            for (int k = 0; k < half; k++) {
                double wr = p->wr[k * step], wi = p->wi[k * step];
                int a = s + k, b = a + half;
                double tr = re[b] * wr - im[b] * wi;
                double ti = re[b] * wi + im[b] * wr;
                re[b] = re[a] - tr;
                im[b] = im[a] - ti;
                re[a] += tr;
                im[a] += ti;
            }
        }
    }
}
