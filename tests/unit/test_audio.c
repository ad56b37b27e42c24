/*
 * test_audio.c -- worker/audio: the fbank, LFR+CMVN features against FunASR
 * WavFrontend / kaldi-native-fbank goldens (tests/golden/audio, 1e-4), the
 * front end's loader errors, decoding of files made by sox at run time (rates,
 * bit depths, float, stereo, flac, mp3; skipped with a reason without sox),
 * corrupt/empty/too-long files, and the VAD on synthetic speech and silence.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audio.h"
#include "tap.h"
#include "util.h"

static const char *srcdir;
static char tmpdir[] = "/tmp/test_audio.XXXXXX";
static char *model_dir;

static float *read_f32(const char *path, size_t want)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    float *v = xmalloc(sizeof(float) * (want ? want : 1));
    size_t got = fread(v, sizeof(float), want, fp);
    fclose(fp);
    if (got != want) {
        free(v);
        return NULL;
    }
    return v;
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d)
            m = d != d ? INFINITY : d;
    }
    return m;
}

static void test_golden(const struct fbank_frontend *fe, const char *name)
{
    char *path = xasprintf("%s/tests/golden/audio/%s.json", srcdir, name);
    json_error_t je;
    json_t *g = json_load_file(path, 0, &je);
    free(path);
    ok(g != NULL, "%s: golden loads", name);
    if (!g)
        return;
    const char *clip = json_string_value(json_object_get(g, "clip"));
    size_t samples = (size_t)json_integer_value(json_object_get(g, "samples"));
    json_t *gf = json_object_get(g, "fbank"), *gx = json_object_get(g, "feats");
    int fb_frames = (int)json_integer_value(json_object_get(gf, "frames"));
    int fb_dim = (int)json_integer_value(json_object_get(gf, "dim"));
    int ft_frames = (int)json_integer_value(json_object_get(gx, "frames"));
    int ft_dim = (int)json_integer_value(json_object_get(gx, "dim"));
    char *p1 = xasprintf("%s/tests/golden/audio/%s", srcdir,
                         json_string_value(json_object_get(gf, "file")));
    char *p2 = xasprintf("%s/tests/golden/audio/%s", srcdir,
                         json_string_value(json_object_get(gx, "file")));
    float *want_fb = read_f32(p1, (size_t)fb_frames * (size_t)fb_dim);
    float *want_ft = read_f32(p2, (size_t)ft_frames * (size_t)ft_dim);
    free(p1);
    free(p2);
    ok(want_fb && want_ft, "%s: golden arrays read", name);

    char err[256] = "";
    float *pcm = NULL;
    size_t n = 0;
    double dur = 0;
    char *wav = xasprintf("%s/%s", srcdir, clip);
    int rc = audio_decode_file(wav, 0, &pcm, &n, &dur, err, sizeof(err));
    free(wav);
    ok(rc == 0 && n >= samples, "%s: %s decodes (%zu samples, %s)", name, clip, n, err);
    if (rc == 0 && want_fb && want_ft) {
        float *fb = NULL, *ft = NULL, *ft2 = NULL;
        int nfb = 0, nft = 0, nft2 = 0, dim = 0;
        int r1 = fbank_frontend_fbank(fe, pcm, samples, &fb, &nfb);
        ok(r1 == 0 && nfb == fb_frames && fb_dim == 80, "%s: fbank has %d frames (golden %d)",
           name, nfb, fb_frames);
        if (nfb == fb_frames) {
            double d = max_abs_diff(fb, want_fb, (size_t)nfb * 80);
            ok(d <= 1e-4, "%s: fbank max |diff| %.3g <= 1e-4", name, d);
        }
        int r2 = fbank_frontend_lfr_cmvn(fe, want_fb, fb_frames, &ft, &nft);
        ok(r2 == 0 && nft == ft_frames, "%s: LFR of the golden fbank: %d frames (golden %d)", name, nft,
           ft_frames);
        if (nft == ft_frames) {
            double d = max_abs_diff(ft, want_ft, (size_t)nft * (size_t)ft_dim);
            ok(d <= 1e-4, "%s: LFR+CMVN of the golden fbank max |diff| %.3g <= 1e-4", name, d);
        }
        int r3 = fbank_frontend_compute(fe, pcm, samples, &ft2, &nft2, &dim);
        ok(r3 == 0 && nft2 == ft_frames && dim == ft_dim, "%s: features %dx%d (golden %dx%d)", name, nft2,
           dim, ft_frames, ft_dim);
        if (nft2 == ft_frames && dim == ft_dim) {
            double d = max_abs_diff(ft2, want_ft, (size_t)nft2 * (size_t)dim);
            ok(d <= 1e-4, "%s: fbank+LFR+CMVN max |diff| %.3g <= 1e-4", name, d);
        }
        free(fb);
        free(ft);
        free(ft2);
    }
    free(pcm);
    free(want_fb);
    free(want_ft);
    json_decref(g);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char *p = xasprintf("%s/%s", dir, name);
    FILE *fp = fopen(p, "w");
    if (fp) {
        fputs(text, fp);
        fclose(fp);
    }
    free(p);
}

static void test_frontend_errors(void)
{
    char err[256] = "";
    ok(fbank_frontend_load("/nonexistent/model", err, sizeof(err)) == NULL &&
       strstr(err, "config.yaml"), "missing folder: %s", err);
    char *d = xasprintf("%s/fe", tmpdir);
    mkdir(d, 0700);
    write_text(d, "config.yaml", "frontend: WavFrontend\nfrontend_conf:\n  window: kaiser\n");
    write_text(d, "am.mvn", "<AddShift> 2 2\n<LearnRateCoef> 0 [ 1 2 ]\n"
               "<Rescale> 2 2\n<LearnRateCoef> 0 [ 1 2 ]\n");
    ok(fbank_frontend_load(d, err, sizeof(err)) == NULL && strstr(err, "kaiser"),
       "unknown window: %s", err);
    write_text(d, "config.yaml", "frontend_conf:\n  n_mels: 80\n  lfr_m: 7\n");
    ok(fbank_frontend_load(d, err, sizeof(err)) == NULL && strstr(err, "am.mvn"),
       "am.mvn of the wrong width: %s", err);
    write_text(d, "config.yaml", "frontend_conf:\n  n_mels: 2\n  lfr_m: 1\n");
    struct fbank_frontend *f = fbank_frontend_load(d, err, sizeof(err));
    ok(f && fbank_frontend_dim(f) == 2, "tiny frontend loads (%s)", err);
    float *feats = (float *)1;
    int nf = -1, dim = 0;
    float pcm[100] = {0};
    ok(f && fbank_frontend_compute(f, pcm, 100, &feats, &nf, &dim) == 0 && nf == 0 &&
       feats == NULL, "audio shorter than one frame gives 0 frames");
    fbank_frontend_free(f);
    write_text(d, "config.yaml", "frontend: DefaultFrontend\n");
    ok(fbank_frontend_load(d, err, sizeof(err)) == NULL && strstr(err, "DefaultFrontend"),
       "other frontends refused: %s", err);
    free(d);
}

/* ---- decoding ---------------------------------------------------------- */

static int have_sox;

static int run(const char *cmd)
{
    char *c = xasprintf("%s >/dev/null 2>&1", cmd);
    int rc = system(c);
    free(c);
    return rc;
}

/* Amplitude of the <hz> sinusoid in pcm (least squares over whole periods). */
static double tone_amp(const float *pcm, size_t n, double hz)
{
    double s = 0, c = 0;
    size_t skip = n / 10, end = n - n / 10;
    for (size_t i = skip; i < end; i++) {
        double ph = 2 * M_PI * hz * (double)i / AUDIO_RATE;
        s += pcm[i] * sin(ph);
        c += pcm[i] * cos(ph);
    }
    return 2.0 * sqrt(s * s + c * c) / (double)(end - skip);
}

static void check_file(const char *label, const char *file, double amp, double tol)
{
    char err[256] = "";
    float *pcm = NULL;
    size_t n = 0;
    double dur = 0;
    char *p = xasprintf("%s/%s", tmpdir, file);
    int rc = audio_decode_file(p, 10, &pcm, &n, &dur, err, sizeof(err));
    free(p);
    ok(rc == 0, "%s: decodes (%s)", label, rc ? err : "ok");
    if (rc == 0) {
        ok(fabs(dur - 1.0) < 0.06 && fabs((double)n - 16000) < 0.06 * 16000,
           "%s: 1 s -> %.3f s, %zu samples at 16 kHz", label, dur, n);
        double a = tone_amp(pcm, n, 440.0);
        ok(fabs(a - amp) < tol, "%s: 440 Hz amplitude %.4f (want %.4f +- %.3f)", label, a, amp,
           tol);
    }
    free(pcm);
}

static void test_decode_sox(void)
{
    if (!have_sox) {
        ok(1, "# SKIP sox not installed: rate/bit-depth/flac/mp3/stereo decode cases skipped");
        return;
    }
    char *cmd;
#define SOX(...) (cmd = xasprintf(__VA_ARGS__), run(cmd) == 0 ? (free(cmd), 1) : (free(cmd), 0))
    int made = SOX("cd %s && sox -n -r 48000 -b 24 -c 1 src.wav synth 1 sine 440 vol 0.5",
                   tmpdir);
    ok(made, "sox makes a 1 s 440 Hz source");
    if (!made)
        return;
    static const struct { const char *label, *args, *file; double amp, tol; } cases[] = {
        {"wav 16 kHz 16-bit", "-r 16000 -b 16", "r16k.wav", 0.5, 0.01},
        {"wav 8 kHz 16-bit", "-r 8000 -b 16", "r8k.wav", 0.5, 0.01},
        {"wav 44.1 kHz 16-bit", "-r 44100 -b 16", "r44k.wav", 0.5, 0.01},
        {"wav 48 kHz 16-bit", "-r 48000 -b 16", "r48k.wav", 0.5, 0.01},
        {"wav 16 kHz 8-bit", "-r 16000 -b 8", "b8.wav", 0.5, 0.02},
        {"wav 22.05 kHz 24-bit", "-r 22050 -b 24", "b24.wav", 0.5, 0.01},
        {"wav 16 kHz 32-bit", "-r 16000 -b 32", "b32.wav", 0.5, 0.01},
        {"wav 32 kHz float", "-r 32000 -e floating-point -b 32", "f32.wav", 0.5, 0.01},
        {"wav 16 kHz double", "-r 16000 -e floating-point -b 64", "f64.wav", 0.5, 0.01},
        {"flac 44.1 kHz", "-r 44100 -b 16", "c.flac", 0.5, 0.01},
        {"ogg vorbis 48 kHz", "-r 48000", "c.ogg", 0.5, 0.03},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        if (!SOX("cd %s && sox src.wav %s %s", tmpdir, cases[i].args, cases[i].file)) {
            ok(1, "# SKIP %s: this sox cannot write it", cases[i].label);
            continue;
        }
        check_file(cases[i].label, cases[i].file, cases[i].amp, cases[i].tol);
    }
    /* stereo: left 0.6, right 0.2 -> mono mean 0.4 */
    if (SOX("cd %s && sox -n -r 44100 -b 16 l.wav synth 1 sine 440 vol 0.6 && "
            "sox -n -r 44100 -b 16 r.wav synth 1 sine 440 vol 0.2 && sox -M l.wav r.wav st.wav",
            tmpdir))
        check_file("stereo 44.1 kHz mixed down", "st.wav", 0.4, 0.01);
    else
        ok(0, "sox makes a stereo file");
    /* mp3: only when both sox and libsndfile handle it */
    if (!SOX("cd %s && sox src.wav -r 44100 c.mp3", tmpdir)) {
        ok(1, "# SKIP mp3: sox has no mp3 writer (libsox-fmt-mp3)");
    } else {
        char err[256] = "";
        float *pcm = NULL;
        size_t n = 0;
        double dur = 0;
        char *p = xasprintf("%s/c.mp3", tmpdir);
        int rc = audio_decode_file(p, 10, &pcm, &n, &dur, err, sizeof(err));
        free(p);
        if (rc != 0 && strstr(err, "unsupported")) {
            ok(1, "# SKIP mp3: this libsndfile has no MP3 (%s)", err);
        } else {
            ok(rc == 0 && fabs(dur - 1.0) < 0.1, "mp3 44.1 kHz: %.3f s (%s)", dur, err);
            double a = rc == 0 ? tone_amp(pcm, n, 440.0) : 0;
            ok(fabs(a - 0.5) < 0.05, "mp3: 440 Hz amplitude %.3f", a);
        }
        free(pcm);
    }
#undef SOX
}

static void test_decode_errors(void)
{
    char err[256] = "";
    float *pcm = NULL;
    size_t n = 0;
    double dur = 0;
    ok(audio_decode("", 0, 0, &pcm, &n, &dur, err, sizeof(err)) < 0 &&
       strstr(err, "empty"), "empty file: %s", err);
    unsigned char junk[2000];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (unsigned char)(i * 7919u >> 3);
    ok(audio_decode(junk, sizeof(junk), 0, &pcm, &n, &dur, err, sizeof(err)) < 0 &&
       strstr(err, "unsupported or corrupt"), "junk bytes: %s", err);

    /* a real wav, then its header damaged */
    char *path = xasprintf("%s/examples/models/sensevoice/ko.wav", srcdir);
    FILE *fp = fopen(path, "rb");
    free(path);
    static unsigned char wav[200000];
    size_t len = fp ? fread(wav, 1, sizeof(wav), fp) : 0;
    if (fp)
        fclose(fp);
    ok(len > 44, "ko.wav read (%zu bytes)", len);
    if (len <= 44)
        return;
    int rc0 = audio_decode(wav, len, 0, &pcm, &n, &dur, err, sizeof(err));
    ok(rc0 == 0 &&
       fabs(dur - 4.645) < 0.01 && n == (len - 44) / 2, "ko.wav: %.3f s, %zu samples", dur, n);
    free(pcm);
    ok(audio_decode(wav, len, 3.0, &pcm, &n, &dur, err, sizeof(err)) < 0 &&
       strstr(err, "max_audio_seconds") && strstr(err, "4.6 s") && pcm == NULL,
       "too long: %s", err);
    ok(audio_decode(wav, 30, 0, &pcm, &n, &dur, err, sizeof(err)) < 0,
       "truncated header: %s", err);
    unsigned char bad[200];
    memcpy(bad, wav, sizeof(bad));
    memcpy(bad + 8, "WAVX", 4);
    ok(audio_decode(bad, sizeof(bad), 0, &pcm, &n, &dur, err, sizeof(err)) < 0 &&
       strstr(err, "unsupported or corrupt"), "corrupt header (WAVX): %s", err);
    memcpy(bad, wav, sizeof(bad));
    memset(bad + 22, 0, 2); /* 0 channels */
    ok(audio_decode(bad, sizeof(bad), 0, &pcm, &n, &dur, err, sizeof(err)) < 0,
       "0 channels: %s", err);
    ok(audio_decode(wav, 44, 0, &pcm, &n, &dur, err, sizeof(err)) < 0 && strstr(err, "empty"),
       "header without samples: %s", err);

    if (have_sox) {
        char *cmd = xasprintf("cd %s && sox -n -r 8000 -b 16 long.wav synth 40 sine 300", tmpdir);
        int made = run(cmd) == 0;
        free(cmd);
        char *p = xasprintf("%s/long.wav", tmpdir);
        ok(made && audio_decode_file(p, 30, &pcm, &n, &dur, err, sizeof(err)) < 0 &&
           strstr(err, "40.0 s") && strstr(err, "30 s"), "40 s at 8 kHz, limit 30: %s", err);
        free(p);
    }
    /* the real mp3 next to the wav made from it */
    char *mp3 = xasprintf("%s/examples/models/sensevoice/ko.mp3", srcdir);
    err[0] = '\0';
    int rc = audio_decode_file(mp3, 0, &pcm, &n, &dur, err, sizeof(err));
    free(mp3);
    if (rc != 0 && strstr(err, "unsupported"))
        ok(1, "# SKIP ko.mp3: this libsndfile has no MP3 (%s)", err);
    else
        ok(rc == 0 && fabs(dur - 4.645) < 0.06, "ko.mp3 (32 kHz): %.3f s, %zu samples (%s)", dur,
           n, err);
    free(pcm);
}

/* ---- VAD ------------------------------------------------------------------ */

static unsigned rng_state = 12345;

static float noise(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return ((float)((rng_state >> 8) & 0xffff) / 32768.0f) - 1.0f;
}

/* "Speech": noise shaped by a 4 Hz syllable envelope that never goes silent. */
static void fill_speech(float *x, size_t n, float level)
{
    for (size_t i = 0; i < n; i++) {
        double env = 0.55 + 0.45 * sin(2 * M_PI * 4.0 * (double)i / AUDIO_RATE);
        x[i] = (float)(level * env) * noise();
    }
}

static void fill_silence(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = 0.0003f * noise();
}

#define SEC(s) ((size_t)((s) * AUDIO_RATE))

static void test_vad(void)
{
    struct audio_segment *s = NULL;
    int ns = -1;
    float *x = xmalloc(sizeof(float) * SEC(40));

    /* 0.5 s silence, 2 s speech, 1 s silence, 2 s speech, 0.5 s silence */
    fill_silence(x, SEC(0.5));
    fill_speech(x + SEC(0.5), SEC(2), 0.3f);
    fill_silence(x + SEC(2.5), SEC(1));
    fill_speech(x + SEC(3.5), SEC(2), 0.3f);
    fill_silence(x + SEC(5.5), SEC(0.5));
    int rv = vad_split(x, SEC(6), 30, &s, &ns);
    ok(rv == 0 && ns == 1 && s[0].start >= SEC(0.3) &&
       s[0].start <= SEC(0.5) && s[0].end >= SEC(5.5) && s[0].end <= SEC(5.7),
       "speech-1s silence-speech, max 30 s: one merged piece, edges trimmed (%d: %.2f-%.2f)",
       ns, ns > 0 ? s[0].start / 16000.0 : 0, ns > 0 ? s[0].end / 16000.0 : 0);
    free(s);
    rv = vad_split(x, SEC(6), 3, &s, &ns);
    ok(rv == 0 && ns == 2 && s[0].end > SEC(2.5) &&
       s[0].end <= SEC(3.5) && s[1].start >= s[0].end && s[1].start < SEC(3.5) &&
       s[1].end - s[1].start <= SEC(3),
       "same, max 3 s: two pieces cut in the silence (%d: %.2f-%.2f, %.2f-%.2f)", ns,
       ns > 0 ? s[0].start / 16000.0 : 0, ns > 0 ? s[0].end / 16000.0 : 0,
       ns > 1 ? s[1].start / 16000.0 : 0, ns > 1 ? s[1].end / 16000.0 : 0);
    free(s);

    /* 2 s speech, 4 s silence, 2 s speech: too far apart to merge */
    fill_speech(x, SEC(2), 0.2f);
    fill_silence(x + SEC(2), SEC(4));
    fill_speech(x + SEC(6), SEC(2), 0.05f);
    rv = vad_split(x, SEC(8), 30, &s, &ns);
    ok(rv == 0 && ns == 2 && s[0].end <= SEC(2.2) &&
       s[1].start >= SEC(5.8) && s[1].end == SEC(8),
       "a long silence separates two pieces (quiet second speaker kept) (%d)", ns);
    free(s);

    /* 35 s of unbroken speech, max 10 s: pieces <= 10 s, contiguous, cover it all */
    fill_speech(x, SEC(35), 0.3f);
    int good = vad_split(x, SEC(35), 10, &s, &ns) == 0 && ns >= 4;
    for (int i = 0; good && i < ns; i++)
        good = s[i].end - s[i].start <= SEC(10) && s[i].end > s[i].start &&
               (i == 0 ? s[i].start == 0 : s[i].start == s[i - 1].end);
    ok(good && s[ns - 1].end == SEC(35), "35 s unbroken, max 10 s: %d contiguous pieces <= 10 s",
       ns);
    free(s);

    /* speech with 0.4 s pauses every 4 s, 40 s long, max 30: cuts land in pauses */
    for (int k = 0; k < 10; k++) {
        fill_speech(x + SEC(4 * k), SEC(3.6), 0.3f);
        fill_silence(x + SEC(4 * k + 3.6), SEC(0.4));
    }
    good = vad_split(x, SEC(40), 30, &s, &ns) == 0 && ns == 2;
    for (int i = 0; good && i < ns; i++)
        good = s[i].end - s[i].start <= SEC(30);
    double cut = good ? fmod(s[0].end / 16000.0, 4.0) : -1;
    ok(good && cut >= 3.6, "40 s with pauses, max 30 s: 2 pieces, first ends in a pause "
       "(at %.2f s)", good ? s[0].end / 16000.0 : 0);
    free(s);

    fill_silence(x, SEC(5));
    ok(vad_split(x, SEC(5), 30, &s, &ns) == 0 && ns == 0 && s == NULL, "silence: no pieces");
    memset(x, 0, sizeof(float) * SEC(5));
    ok(vad_split(x, SEC(5), 30, &s, &ns) == 0 && ns == 0, "digital silence: no pieces");
    ok(vad_split(x, 0, 30, &s, &ns) == 0 && ns == 0, "no samples: no pieces");
    /* a steady tone: one piece */
    for (size_t i = 0; i < SEC(5); i++)
        x[i] = 0.3f * (float)sin(2 * M_PI * 300.0 * (double)i / AUDIO_RATE);
    rv = vad_split(x, SEC(5), 30, &s, &ns);
    ok(rv == 0 && ns == 1 && s[0].start == 0 &&
       s[0].end == SEC(5), "a steady 5 s tone is one piece (%d)", ns);
    free(s);
    free(x);
}

int main(void)
{
    srcdir = getenv("LLMUX_SRCDIR");
    if (!srcdir)
        srcdir = getenv("srcdir");
    if (!srcdir)
        srcdir = ".";
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    have_sox = run("command -v sox") == 0;
    model_dir = xasprintf("%s/examples/models/sensevoice", srcdir);
    char err[256] = "";
    struct fbank_frontend *fe = fbank_frontend_load(model_dir, err, sizeof(err));
    ok(fe && fbank_frontend_dim(fe) == 560, "SenseVoice frontend loads, dim 560 (%s)", err);
    if (fe) {
        test_golden(fe, "ko");
        test_golden(fe, "zh2s");
        test_golden(fe, "synth");
    }
    fbank_frontend_free(fe);
    test_frontend_errors();
    test_decode_errors();
    test_decode_sox();
    test_vad();
    char *rm = xasprintf("rm -rf %s", tmpdir);
    run(rm);
    free(rm);
    free(model_dir);
    return tap_done();
}
