/*
 * audio.h -- the speech front end of the transcribe worker: decode any file
 * libsndfile reads into 16 kHz mono float PCM (libsoxr resampling), the
 * kaldi log-mel fbank + LFR + CMVN features FunASR's WavFrontend computes for
 * SenseVoice, and an energy VAD that cuts long audio at silences. No model,
 * no HTTP here; everything is reentrant (no global mutable state).
 */
#ifndef LLMUX_AUDIO_H
#define LLMUX_AUDIO_H

#include <stddef.h>

#define AUDIO_RATE 16000

/* Decode the in-memory file <data>/<len> (any format libsndfile reads: WAV in
 * 8/16/24/32-bit PCM, u8, float/double, FLAC, OGG/Vorbis/Opus, MP3 when the
 * installed libsndfile has it), mix all channels down to mono (mean), resample
 * to 16 kHz with libsoxr (high quality), clamp to [-1,1].
 * On success *pcm16k is a new xmalloc'd array of *n > 0 floats (caller
 * frees; a stream without samples is an error), *duration_s (may be NULL) is
 * the source duration in seconds. max_seconds <= 0 means no limit.
 * Returns 0, or -1 with a one-line message in <err> that names the problem and
 * is fit for a 400 ("empty audio file", "unsupported or corrupt audio file:
 * ...", "audio is 45.2 s long; the limit (max_audio_seconds) is 30 s", ...). */
int audio_decode(const void *data, size_t len, double max_seconds, float **pcm16k,
                 size_t *n, double *duration_s, char *err, size_t errlen);

/* Same as audio_decode for a file on disk (tests, CLI). */
int audio_decode_file(const char *path, double max_seconds, float **pcm16k, size_t *n,
                      double *duration_s, char *err, size_t errlen);

/* The feature front end of one model: fbank settings from <model_dir>/config.yaml
 * (frontend_conf: fs, window, n_mels, frame_length, frame_shift, lfr_m, lfr_n;
 * absent keys take SenseVoice's values) and CMVN from <model_dir>/am.mvn.
 * Immutable after load; may be shared by threads. */
struct fbank_frontend;

struct fbank_frontend *fbank_frontend_load(const char *model_dir, char *err, size_t errlen);
void fbank_frontend_free(struct fbank_frontend *f);
/* Output feature width (n_mels * lfr_m, 560 for SenseVoice). */
int fbank_frontend_dim(const struct fbank_frontend *f);

/* Features of <n> samples of 16 kHz PCM in [-1,1], as FunASR WavFrontend at
 * inference: waveform * 32768, kaldi fbank (dither 0, remove DC offset,
 * pre-emphasis 0.97, hamming window, snip_edges, power spectrum, 80 mel bins
 * 20 Hz..8 kHz, log with floor FLT_EPSILON), then LFR (m=7 frames stacked,
 * hop n=6, left pad with (m-1)/2 copies of frame 0, right pad with the last
 * frame), then CMVN ((x + shift) * scale from am.mvn).
 * *feats is a new xmalloc'd row-major array [*n_frames][*dim] (caller frees).
 * Audio shorter than one 25 ms frame gives 0 frames and *feats NULL (return 0).
 * Returns 0, or -1 on bad arguments. */
int fbank_frontend_compute(const struct fbank_frontend *f, const float *pcm16k, size_t n,
                           float **feats, int *n_frames, int *dim);

/* The stages alone (golden tests; <dim> is n_mels on input to lfr_cmvn). */
/* Kaldi log-mel fbank: new [*n_frames][n_mels] array, caller frees. */
int fbank_frontend_fbank(const struct fbank_frontend *f, const float *pcm16k, size_t n,
                         float **fbank, int *n_frames);
/* LFR + CMVN of a [n_frames][n_mels] fbank: new [*n_out][n_mels*lfr_m], caller frees. */
int fbank_frontend_lfr_cmvn(const struct fbank_frontend *f, const float *fbank, int n_frames,
                            float **feats, int *n_out);

/* One piece of audio cut by vad_split: samples [start, end) of the input. */
struct audio_segment {
    size_t start;
    size_t end;
};

/* Split <n> samples of 16 kHz PCM into pieces no longer than max_segment_s
 * (<= 0: 30 s), cutting inside silences (energy-based: 10 ms frame RMS below a
 * threshold relative to the clip's loud frames and an absolute floor). Leading
 * and trailing silence is dropped and long silences are dropped between
 * pieces; pieces of speech shorter than max_segment_s are merged while they fit.
 * A piece with no silence to cut in is cut hard at max_segment_s. All-silent
 * audio gives 0 segments. *segs is a new xmalloc'd array (caller frees; NULL
 * when 0). Returns 0, or -1 on bad arguments. */
int vad_split(const float *pcm16k, size_t n, double max_segment_s,
              struct audio_segment **segs, int *n_segs);

#endif
