/*
 * vad.c -- vad_split(): cuts long 16 kHz audio into pieces of at most
 * max_segment_s at silences. Energy only: 10 ms frame RMS in dB against a
 * threshold set from the clip's own loud and quiet frames. Pieces that fit
 * are merged; a piece with no silence inside is cut at its quietest 100 ms.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "audio.h"
#include "util.h"

#define VAD_FRAME 160            /* 10 ms */
#define VAD_FLOOR_DB (-55.0)     /* below this a frame is silent whatever the clip */
#define VAD_BELOW_LOUD_DB 35.0   /* silent: this far below the loud (95th pct) level */
#define VAD_ABOVE_QUIET_DB 8.0   /* speech: at least this far above the quiet (10th pct) level */
#define VAD_MIN_SPEECH 3         /* frames: shorter bursts are clicks */
#define VAD_HANGOVER 20          /* frames: silences shorter than this stay inside speech */
#define VAD_PAD 10               /* frames of context kept around speech */
#define VAD_MERGE_GAP 100        /* frames: pieces this close are merged when they fit */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The frame index in [lo, hi) where the 10-frame mean energy is lowest. */
static int quietest(const double *db, int lo, int hi)
{
    int best = hi, w = 10;
    double best_e = INFINITY;
    for (int i = lo; i < hi; i++) {
        double e = 0;
        int c = 0;
        for (int j = i - w / 2; j < i + w / 2; j++)
            if (j >= lo && j < hi) {
                e += db[j];
                c++;
            }
        e /= c;
        if (e < best_e) {
            best_e = e;
            best = i;
        }
    }
    return best;
}

static void push(struct audio_segment **segs, int *n, size_t *cap, size_t a, size_t b)
{
    xgrow((void **)segs, cap, (size_t)*n + 1, sizeof(**segs));
    (*segs)[*n].start = a;
    (*segs)[*n].end = b;
    (*n)++;
}

int vad_split(const float *pcm, size_t n, double max_segment_s, struct audio_segment **segs,
              int *n_segs)
{
    if (!segs || !n_segs || (n && !pcm))
        return -1;
    *segs = NULL;
    *n_segs = 0;
    if (max_segment_s <= 0)
        max_segment_s = 30.0;
    int nf = (int)((n + VAD_FRAME - 1) / VAD_FRAME);
    if (nf == 0)
        return 0;
    int max_frames = (int)(max_segment_s * 100.0);
    if (max_frames < 2 * VAD_PAD + 1)
        max_frames = 2 * VAD_PAD + 1;
    double *db = xmalloc(sizeof(double) * (size_t)nf);
    double *sorted = xmalloc(sizeof(double) * (size_t)nf);
    unsigned char *sp = xcalloc((size_t)nf, 1);
    for (int i = 0; i < nf; i++) {
        size_t a = (size_t)i * VAD_FRAME, b = a + VAD_FRAME < n ? a + VAD_FRAME : n;
        double e = 0;
        for (size_t k = a; k < b; k++)
            e += (double)pcm[k] * pcm[k];
        db[i] = 10.0 * log10(e / (double)(b - a) + 1e-12);
        sorted[i] = db[i];
    }
    qsort(sorted, (size_t)nf, sizeof(double), cmp_double);
    double loud = sorted[(int)(0.95 * (nf - 1))], quiet = sorted[(int)(0.10 * (nf - 1))];
    double thr = fmax(VAD_FLOOR_DB, fmax(loud - VAD_BELOW_LOUD_DB, quiet + VAD_ABOVE_QUIET_DB));
    if (thr > loud - 3.0)     /* flat level (one long sound or steady noise) */
        thr = fmax(VAD_FLOOR_DB, loud - 3.0 - VAD_ABOVE_QUIET_DB);
    for (int i = 0; i < nf; i++)
        sp[i] = db[i] > thr;
    /* fill short silences, then drop short bursts */
    for (int i = 0; i < nf;) {
        int j = i;
        while (j < nf && sp[j] == sp[i])
            j++;
        if (!sp[i] && i > 0 && j < nf && j - i < VAD_HANGOVER)
            memset(sp + i, 1, (size_t)(j - i));
        i = j;
    }
    for (int i = 0; i < nf;) {
        int j = i;
        while (j < nf && sp[j] == sp[i])
            j++;
        if (sp[i] && j - i < VAD_MIN_SPEECH)
            memset(sp + i, 0, (size_t)(j - i));
        i = j;
    }
    size_t cap = 0;
    int cur_a = -1, cur_b = -1; /* frames of the piece being built */
    for (int i = 0; i < nf;) {
        if (!sp[i]) {
            i++;
            continue;
        }
        int j = i;
        while (j < nf && sp[j])
            j++;
        int a = i - VAD_PAD < 0 ? 0 : i - VAD_PAD, b = j + VAD_PAD > nf ? nf : j + VAD_PAD;
        if (cur_a >= 0 && a < cur_b)
            a = cur_b;
        if (cur_a >= 0 && b - cur_a <= max_frames && a - cur_b <= VAD_MERGE_GAP) {
            cur_b = b;
        } else {
            if (cur_a >= 0)
                push(segs, n_segs, &cap, (size_t)cur_a * VAD_FRAME,
                     (size_t)cur_b * VAD_FRAME < n ? (size_t)cur_b * VAD_FRAME : n);
            cur_a = a;
            cur_b = b;
            /* a run longer than a piece: cut at the quietest point of its second half */
            while (cur_b - cur_a > max_frames) {
                int cut = quietest(db, cur_a + max_frames / 2, cur_a + max_frames);
                push(segs, n_segs, &cap, (size_t)cur_a * VAD_FRAME, (size_t)cut * VAD_FRAME);
                cur_a = cut;
            }
        }
        i = j;
    }
    if (cur_a >= 0)
        push(segs, n_segs, &cap, (size_t)cur_a * VAD_FRAME,
             (size_t)cur_b * VAD_FRAME < n ? (size_t)cur_b * VAD_FRAME : n);
    free(db);
    free(sorted);
    free(sp);
    return 0;
}
