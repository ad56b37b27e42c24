/*
 * test_sensevoice_cuda.c -- the SenseVoice goldens of tests/golden/sensevoice/
 * (FunASR float32, models rebuilt by mkmodel) on the cuda backend: each case
 * as FunASR ran it, argmax alone, and one mixed batch of every clip plus an
 * empty one: CTC log-probs (top 5 and probe ids) and encoder output within
 * 2e-2 (the CUDA bound), per-frame argmax and greedy ids identical;
 * the worst errors are printed. With LLMUX_SV_BENCH=DIR (a model folder, e.g.
 * mkmodel --arch sensevoice at SenseVoiceSmall's sizes) it also times 10 s
 * clips of random features at batch 1 and 32 (not a check, figures only).
 * Prints "1..0 # SKIP" without a CUDA device (CI). The cpu bounds and the
 * byte-identical rebuild of the models are test_sensevoice's.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels.h"
#include "log.h"
#include "sensevoice.h"
#include "golden.h"
#include "tap.h"
#include "util.h"

#define TOL 2e-2

static char *srcdir, *mkmodel, *tmpdir;

static int run_mkmodel(const char *out, json_t *args)
{
    return golden_mkmodel(mkmodel, out, args, NULL);
}

static json_t *load_golden(const char *name)
{
    return golden_load(srcdir, "sensevoice", name);
}

/* The golden's features: v = u * 4 - 2, u = (splitmix64 >> 40) * 2^-24, state = seed. */
static float *features(int n, uint64_t seed, int dim)
{
    float *f = xmalloc((size_t)(n > 0 ? n : 1) * (size_t)dim * sizeof(float));
    uint64_t s = seed;
    for (int64_t i = 0; i < (int64_t)n * dim; i++) {
        uint64_t z = (s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        f[i] = (float)((double)(z >> 40) * (1.0 / 16777216.0) * 4.0 - 2.0);
    }
    return f;
}

struct clip_run {
    json_t *gold;
    struct sensevoice_clip c;
    float *feats;
};

static void clip_setup(struct clip_run *r, json_t *gclip, const char *lang, int itn,
                       const struct sensevoice_info *in, int want_lp)
{
    int n = (int)json_integer_value(json_object_get(gclip, "n_frames"));
    memset(r, 0, sizeof(*r));
    r->gold = gclip;
    r->feats = features(n, (uint64_t)json_integer_value(json_object_get(gclip, "seed")),
                        in->input_dim);
    r->c.feats = r->feats;
    r->c.n_frames = n;
    r->c.language = sv_language_parse(lang);
    r->c.use_itn = itn;
    r->c.logprobs = want_lp ? xmalloc((size_t)(n + 4) * (size_t)in->vocab_size * sizeof(float))
                            : NULL;
    r->c.argmax = xmalloc((size_t)(n + 4) * sizeof(int32_t));
    r->c.hidden = xmalloc((size_t)(n + 4) * (size_t)in->hidden_size * sizeof(float));
    /* poisoned: a row the forward pass does not write shows as NaN */
    memset(r->c.hidden, 0xff, (size_t)(n + 4) * (size_t)in->hidden_size * sizeof(float));
    if (r->c.logprobs)
        memset(r->c.logprobs, 0xff, (size_t)(n + 4) * (size_t)in->vocab_size * sizeof(float));
    memset(r->c.argmax, 0xff, (size_t)(n + 4) * sizeof(int32_t));
}

static void clip_free(struct clip_run *r)
{
    free(r->feats);
    free(r->c.logprobs);
    free(r->c.argmax);
    free(r->c.hidden);
}

static double upd(double worst, double d)
{
    return isnan(d) || d > worst ? d : worst;
}

/* The worst errors of one golden, printed at its end. */
struct worst {
    double lp, hid;
};

static void clip_check(const struct clip_run *r, const struct sensevoice_info *in, json_t *probe,
                       const char *what, struct worst *w)
{
    int n = r->c.n_frames + 4, V = in->vocab_size, D = in->hidden_size, bad_am = 0;
    double e_lp = 0, e_hid = 0;
    json_t *am = json_object_get(r->gold, "argmax"), *ti = json_object_get(r->gold, "top_ids");
    json_t *tv = json_object_get(r->gold, "top_vals"), *pv = json_object_get(r->gold, "probe");
    json_t *hid = json_object_get(r->gold, "hidden"), *gids = json_object_get(r->gold, "ids");
    int shapes = json_array_size(am) == (size_t)n && json_array_size(ti) == (size_t)n &&
                 json_array_size(pv) == (size_t)n;
    for (int t = 0; shapes && t < n; t++) {
        if (r->c.argmax[t] != json_integer_value(json_array_get(am, (size_t)t)))
            bad_am++;
        if (r->c.logprobs) {
            const float *lp = r->c.logprobs + (size_t)t * (size_t)V;
            json_t *tit = json_array_get(ti, (size_t)t), *tvt = json_array_get(tv, (size_t)t);
            for (size_t k = 0; k < json_array_size(tit); k++) {
                int id = (int)json_integer_value(json_array_get(tit, k));
                e_lp = upd(e_lp, fabs(lp[id] - json_number_value(json_array_get(tvt, k))));
            }
            json_t *pvt = json_array_get(pv, (size_t)t);
            for (size_t k = 0; k < json_array_size(probe); k++) {
                int id = (int)json_integer_value(json_array_get(probe, k));
                e_lp = upd(e_lp, fabs(lp[id] - json_number_value(json_array_get(pvt, k))));
            }
        }
        if (hid)
            for (int j = 0; j < D; j++)
                e_hid = upd(e_hid, fabs(r->c.hidden[(size_t)t * (size_t)D + (size_t)j] -
                                        json_number_value(json_array_get(
                                            json_array_get(hid, (size_t)t), (size_t)j))));
    }
    w->lp = upd(w->lp, e_lp);
    w->hid = upd(w->hid, e_hid);
    if (r->c.logprobs)
        ok(shapes && e_lp <= TOL, "%s: %d frames, log-probs (top 5, probe ids) max err %.3g",
           what, n, e_lp);
    if (hid)
        ok(shapes && e_hid <= TOL, "%s: encoder output max err %.3g", what, e_hid);
    int32_t *ids = xmalloc((size_t)n * sizeof(int32_t));
    int k = sensevoice_ctc_collapse(r->c.argmax, n, in->blank_id, ids, NULL);
    int same = k == (int)json_array_size(gids);
    for (int i = 0; same && i < k; i++)
        same = ids[i] == json_integer_value(json_array_get(gids, (size_t)i));
    ok(shapes && bad_am == 0 && same, "%s: argmax per frame (%d differ) and greedy ids (%d) "
       "identical", what, bad_am, k);
    free(ids);
}

static void check_golden(const char *name, struct kn_backend *be)
{
    json_t *g = load_golden(name);
    ok(g != NULL, "%s: golden loads", name);
    if (!g)
        return;
    char *dir = xasprintf("%s/%s", tmpdir, name), err[512] = "";
    ok(run_mkmodel(dir, json_object_get(g, "mkmodel_args")) == 0, "%s: mkmodel", name);
    struct sensevoice *m = sensevoice_load(dir, be, err, sizeof(err));
    ok(m != NULL, "%s: sensevoice_load on cuda (%s)", name, m ? "ok" : err);
    free(dir);
    if (!m) {
        json_decref(g);
        return;
    }
    const struct sensevoice_info *in = sensevoice_get_info(m);
    json_t *probe = json_object_get(g, "probe"), *cases = json_object_get(g, "cases");
    struct worst w = { 0, 0 };
    size_t total = 0;
    for (size_t ci = 0; ci < json_array_size(cases); ci++) {
        json_t *cs = json_array_get(cases, ci), *clips = json_object_get(cs, "clips");
        const char *lang = json_string_value(json_object_get(cs, "language"));
        int itn = json_is_true(json_object_get(cs, "use_itn")), nc = (int)json_array_size(clips);
        struct clip_run *r = xcalloc((size_t)nc, sizeof(*r));
        struct sensevoice_clip *cl = xcalloc((size_t)nc, sizeof(*cl));
        for (int i = 0; i < nc; i++) {
            clip_setup(&r[i], json_array_get(clips, (size_t)i), lang, itn, in, 1);
            cl[i] = r[i].c;
        }
        int rc = sensevoice_forward(m, cl, nc);
        ok(rc == 0, "%s case %zu (%s, itn %d, %d clip%s): forward on cuda", name, ci, lang, itn,
           nc, nc > 1 ? "s" : "");
        for (int i = 0; rc == 0 && i < nc; i++) {
            char what[96];
            snprintf(what, sizeof(what), "%s case %zu clip %d", name, ci, i);
            clip_check(&r[i], in, probe, what, &w);
        }
        for (int i = 0; i < nc; i++)
            clip_free(&r[i]);
        free(r);
        free(cl);
        total += (size_t)nc;
    }
    /* argmax alone: no logits come to the host */
    {
        json_t *cs = json_array_get(cases, 0), *g0 = json_array_get(json_object_get(cs, "clips"), 0);
        struct clip_run r0;
        clip_setup(&r0, g0, json_string_value(json_object_get(cs, "language")),
                   json_is_true(json_object_get(cs, "use_itn")), in, 0);
        int rc = sensevoice_forward(m, &r0.c, 1);
        ok(rc == 0, "%s: forward with argmax only", name);
        if (rc == 0)
            clip_check(&r0, in, probe, "argmax only", &w);
        clip_free(&r0);
    }
    /* every clip in one batch, each with its own prompt, plus an empty clip second */
    struct clip_run *r = xcalloc(total + 1, sizeof(*r));
    struct sensevoice_clip *cl = xcalloc(total + 1, sizeof(*cl));
    int32_t empty_am[4];
    size_t k = 0;
    for (size_t ci = 0; ci < json_array_size(cases); ci++) {
        json_t *cs = json_array_get(cases, ci), *clips = json_object_get(cs, "clips");
        for (size_t i = 0; i < json_array_size(clips); i++, k++) {
            clip_setup(&r[k], json_array_get(clips, i),
                       json_string_value(json_object_get(cs, "language")),
                       json_is_true(json_object_get(cs, "use_itn")), in, 1);
            cl[k] = r[k].c;
            if (k == 0) {
                k++;
                cl[k] = (struct sensevoice_clip){ .n_frames = 0, .language = SV_LANG_EN,
                                                  .argmax = empty_am };
            }
        }
    }
    int rc = sensevoice_forward(m, cl, (int)k);
    ok(rc == 0, "%s: one mixed batch of %zu clips (+1 empty) on cuda: forward", name, total);
    for (size_t i = 0, j = 0; rc == 0 && i < k; i++) {
        if (i == 1)
            continue;
        char what[96];
        snprintf(what, sizeof(what), "%s mixed batch clip %zu", name, j++);
        clip_check(&r[i], in, probe, what, &w);
    }
    for (size_t i = 0; i < k; i++)
        if (i != 1)
            clip_free(&r[i]);
    free(r);
    free(cl);
    diag("%s on cuda: worst log-prob err %.3g, worst encoder output err %.3g (bound %g)", name,
         w.lp, w.hid, TOL);
    sensevoice_free(m);
    json_decref(g);
}

/* 10 s of audio: 998 fbank frames (25 ms / 10 ms), LFR n=6 -> 167 rows. */
#define BENCH_FRAMES 167
#define BENCH_SECONDS 10.0

/* Times <n> clips of 10 s (argmax only, what greedy decoding needs). */
static void bench_batch(struct sensevoice *m, int n, int iters)
{
    const struct sensevoice_info *in = sensevoice_get_info(m);
    struct sensevoice_clip *cl = xcalloc((size_t)n, sizeof(*cl));
    float *f = features(BENCH_FRAMES, 12345, in->input_dim);
    for (int i = 0; i < n; i++) {
        cl[i].feats = f;
        cl[i].n_frames = BENCH_FRAMES;
        cl[i].language = SV_LANG_AUTO;
        cl[i].use_itn = 1;
        cl[i].argmax = xmalloc((BENCH_FRAMES + 4) * sizeof(int32_t));
    }
    int rc = 0;
    for (int w = 0; w < 3 && rc == 0; w++)
        rc = sensevoice_forward(m, cl, n);
    double best = 1e30, sum = 0;
    for (int it = 0; it < iters && rc == 0; it++) {
        int64_t t0 = now_us();
        rc = sensevoice_forward(m, cl, n);
        double ms = (double)(now_us() - t0) / 1000.0;
        best = ms < best ? ms : best;
        sum += ms;
    }
    ok(rc == 0, "bench: batch %d runs", n);
    if (rc == 0) {
        double mean = sum / iters;
        diag("bench batch %2d x 10 s: %.2f ms per batch (mean of %d, best %.2f), RTF %.5f, "
             "%.1f clips/s", n, mean, iters, best, mean / 1000.0 / (n * BENCH_SECONDS),
             n / (mean / 1000.0));
    }
    for (int i = 0; i < n; i++)
        free(cl[i].argmax);
    free(cl);
    free(f);
}

static void bench(const char *dir, struct kn_backend *be)
{
    char err[512] = "";
    int64_t t0 = now_us();
    struct sensevoice *m = sensevoice_load(dir, be, err, sizeof(err));
    ok(m != NULL, "bench: load %s on cuda (%s)", dir, m ? "ok" : err);
    if (!m)
        return;
    const struct sensevoice_info *in = sensevoice_get_info(m);
    diag("bench model: hidden %d, heads %d, units %d, blocks %d+%d, kernel %d, vocab %d, "
         "f32 weights on the GPU; loaded in %.1f s", in->hidden_size, in->n_heads,
         in->linear_units, in->n_blocks, in->tp_blocks, in->kernel_size, in->vocab_size,
         (double)(now_us() - t0) / 1e6);
    bench_batch(m, 1, 20);
    bench_batch(m, 32, 10);
    sensevoice_free(m);
}

static void rm_rf(const char *dir)
{
    pid_t pid = fork();
    if (pid == 0) {
        execlp("rm", "rm", "-rf", dir, (char *)NULL);
        _exit(127);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    const char *s = getenv("LLMUX_SRCDIR"), *b = getenv("LLMUX_BUILDDIR");
    const char *bench_dir = getenv("LLMUX_SV_BENCH");
    char *self = xstrdup(argv[0]), *slash = strrchr(self, '/');
    const struct kn_backend_ops *ops;
    if (slash)
        *slash = 0;
    else
        strcpy(self, ".");
    srcdir = s ? xstrdup(s) : xasprintf("%s/../../..", self);
    mkmodel = b ? xasprintf("%s/tests/tools/mkmodel", b) : xasprintf("%s/../tools/mkmodel", self);
    free(self);
    log_init("test");
    log_set_level(LOG_ERR);
    ops = kn_backend_get("cuda");
    if (ops == NULL || ops->device_count() <= 0)
        tap_skip_all("no CUDA device");
    if (access(mkmodel, X_OK) != 0)
        tap_skip_all("tests/tools/mkmodel not built");
    char tmpl[] = "/tmp/llmux-test-sensevoice-cuda-XXXXXX";
    tmpdir = mkdtemp(tmpl);
    struct kn_backend *be = kn_backend_init("cuda", 0);
    ok(be != NULL && tmpdir != NULL, "cuda backend");
    if (!be || !tmpdir)
        return tap_done();
    check_golden("tiny", be);
    check_golden("shift", be);
    if (bench_dir && *bench_dir)
        bench(bench_dir, be);
    ok(kn_backend_sync(be) == 0, "stream has no pending error");
    kn_backend_free(be);
    rm_rf(tmpdir);
    free(srcdir);
    free(mkmodel);
    return tap_done();
}
