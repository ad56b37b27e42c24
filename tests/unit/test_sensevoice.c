/*
 * test_sensevoice.c -- SenseVoiceSmall (worker/models/sensevoice*.c) against
 * the FunASR goldens of tests/golden/sensevoice/: mkmodel rebuilds each tiny
 * model byte-identically (sha256), sensevoice_forward on single clips, on
 * FunASR's padded batches and on one mixed batch of every clip (each with its
 * own language and textnorm prompt) gives FunASR's CTC log-probs (top 5 and
 * probe ids, 1e-4), encoder output (1e-4), per-frame argmax and greedy ids
 * (identical); language names, CTC collapse, forward argument checks and
 * loader errors that name what is wrong.
 */
#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels.h"
#include "log.h"
#include "sensevoice.h"
#include "golden.h"
#include "tap.h"
#include "util.h"

#define TOL 1e-4

static char *srcdir, *mkmodel, *tmpdir;

static int run_mkmodel(const char *out, json_t *args)
{
    return golden_mkmodel(mkmodel, out, args, NULL);
}

static int run_argv(const char *const *argv)
{
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
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

static int jint(json_t *o, const char *k)
{
    return (int)json_integer_value(json_object_get(o, k));
}

/* One clip's outputs vs its golden entry. Returns 1 when all match; <what>
 * names the comparison in the TAP lines. */
struct clip_run {
    json_t *gold;
    struct sensevoice_clip c;
    float *feats;
};

static void clip_setup(struct clip_run *r, json_t *gclip, const char *lang, int itn,
                       const struct sensevoice_info *in, int want_hidden)
{
    int n = jint(gclip, "n_frames");
    memset(r, 0, sizeof(*r));
    r->gold = gclip;
    r->feats = features(n, (uint64_t)json_integer_value(json_object_get(gclip, "seed")),
                        in->input_dim);
    r->c.feats = r->feats;
    r->c.n_frames = n;
    r->c.language = sv_language_parse(lang);
    r->c.use_itn = itn;
    r->c.logprobs = xmalloc((size_t)(n + 4) * (size_t)in->vocab_size * sizeof(float));
    r->c.argmax = xmalloc((size_t)(n + 4) * sizeof(int32_t));
    r->c.hidden = want_hidden ? xmalloc((size_t)(n + 4) * (size_t)in->hidden_size * sizeof(float))
                              : NULL;
}

static void clip_free(struct clip_run *r)
{
    free(r->feats);
    free(r->c.logprobs);
    free(r->c.argmax);
    free(r->c.hidden);
}

static void clip_check(const struct clip_run *r, const struct sensevoice_info *in, json_t *probe,
                       const char *what)
{
    int n = r->c.n_frames + 4, V = in->vocab_size, bad_am = 0;
    double e_top = 0, e_probe = 0, e_hid = 0;
    json_t *am = json_object_get(r->gold, "argmax"), *ti = json_object_get(r->gold, "top_ids");
    json_t *tv = json_object_get(r->gold, "top_vals"), *pv = json_object_get(r->gold, "probe");
    json_t *hid = json_object_get(r->gold, "hidden"), *gids = json_object_get(r->gold, "ids");
    int shapes = json_array_size(am) == (size_t)n && json_array_size(ti) == (size_t)n &&
                 json_array_size(pv) == (size_t)n;
    for (int t = 0; shapes && t < n; t++) {
        const float *lp = r->c.logprobs + (size_t)t * (size_t)V;
        if (r->c.argmax[t] != json_integer_value(json_array_get(am, (size_t)t)))
            bad_am++;
        for (size_t k = 0; k < json_array_size(json_array_get(ti, (size_t)t)); k++) {
            int id = (int)json_integer_value(json_array_get(json_array_get(ti, (size_t)t), k));
            double d = fabs(lp[id] - json_number_value(json_array_get(json_array_get(tv, (size_t)t), k)));
            e_top = d > e_top || isnan(d) ? d : e_top;
        }
        for (size_t k = 0; k < json_array_size(probe); k++) {
            int id = (int)json_integer_value(json_array_get(probe, k));
            double d = fabs(lp[id] - json_number_value(json_array_get(json_array_get(pv, (size_t)t), k)));
            e_probe = d > e_probe || isnan(d) ? d : e_probe;
        }
        if (hid && r->c.hidden)
            for (int j = 0; j < in->hidden_size; j++) {
                double d = fabs(r->c.hidden[(size_t)t * (size_t)in->hidden_size + (size_t)j] -
                                json_number_value(json_array_get(json_array_get(hid, (size_t)t),
                                                                 (size_t)j)));
                e_hid = d > e_hid || isnan(d) ? d : e_hid;
            }
    }
    ok(shapes && e_top <= TOL && e_probe <= TOL,
       "%s: %d frames, log-probs top-5 max err %.3g, probe ids max err %.3g", what, n, e_top,
       e_probe);
    if (hid && r->c.hidden)
        ok(e_hid <= TOL, "%s: encoder output max err %.3g", what, e_hid);
    int32_t *ids = xmalloc((size_t)n * sizeof(int32_t)), *fr = xmalloc((size_t)n * sizeof(int32_t));
    int32_t *ids2 = xmalloc((size_t)n * sizeof(int32_t));
    int k = sensevoice_ctc_collapse(r->c.argmax, n, in->blank_id, ids, fr);
    int k2 = sensevoice_ctc_greedy(r->c.logprobs, n, V, in->blank_id, ids2, NULL);
    int same = k == (int)json_array_size(gids) && k2 == k;
    for (int i = 0; same && i < k; i++)
        same = ids[i] == json_integer_value(json_array_get(gids, (size_t)i)) && ids2[i] == ids[i] &&
               r->c.argmax[fr[i]] == ids[i] && (i == 0 || fr[i] > fr[i - 1]);
    ok(bad_am == 0 && same, "%s: argmax per frame (%d differ) and greedy ids (%d) identical",
       what, bad_am, k);
    free(ids);
    free(ids2);
    free(fr);
}

static struct sensevoice *golden_model(json_t *g, const char *name, struct kn_backend *be)
{
    char *dir = xasprintf("%s/%s", tmpdir, name), err[512] = "";
    ok(run_mkmodel(dir, json_object_get(g, "mkmodel_args")) == 0, "%s: mkmodel", name);
    char *wf = xasprintf("%s/%s", dir, json_string_value(json_object_get(g, "weights_file")));
    char hex[65] = "";
    const char *want = json_string_value(json_object_get(g, "sha256"));
    ok(golden_sha256_file(wf, hex) == 0 && want && strcmp(hex, want) == 0,
       "%s: mkmodel rebuilds the golden's weights byte-identically (sha256)", name);
    struct sensevoice *m = sensevoice_load(dir, be, err, sizeof(err));
    ok(m != NULL, "%s: load (%s)", name, m ? "ok" : err);
    free(wf);
    free(dir);
    return m;
}

static void check_golden(const char *name, struct kn_backend *be)
{
    json_t *g = load_golden(name);
    ok(g != NULL, "%s: golden loads", name);
    if (!g)
        return;
    diag("%s golden: funasr %s, torch %s", name,
         json_string_value(json_object_get(json_object_get(g, "versions"), "funasr")),
         json_string_value(json_object_get(json_object_get(g, "versions"), "torch")));
    struct sensevoice *m = golden_model(g, name, be);
    if (!m) {
        json_decref(g);
        return;
    }
    const struct sensevoice_info *in = sensevoice_get_info(m);
    json_t *probe = json_object_get(g, "probe"), *cases = json_object_get(g, "cases");
    ok(in->vocab_size == jint(g, "vocab_size") && in->input_dim == 560 && in->blank_id == 0 &&
       in->n_queries == 16 && in->lid_query[SV_LANG_YUE] == 7 && in->no_itn_query == 15,
       "%s: info (vocab %d, input %d, hidden %d, blocks %d+%d, kernel %d shift %d)", name,
       in->vocab_size, in->input_dim, in->hidden_size, in->n_blocks, in->tp_blocks,
       in->kernel_size, in->sanm_shift);
    /* each case as FunASR ran it: one clip, or one batch */
    size_t total = 0;
    for (size_t ci = 0; ci < json_array_size(cases); ci++) {
        json_t *cs = json_array_get(cases, ci), *clips = json_object_get(cs, "clips");
        const char *lang = json_string_value(json_object_get(cs, "language"));
        int itn = json_is_true(json_object_get(cs, "use_itn")), nc = (int)json_array_size(clips);
        struct clip_run *r = xcalloc((size_t)nc, sizeof(*r));
        struct sensevoice_clip *cl = xcalloc((size_t)nc, sizeof(*cl));
        for (int i = 0; i < nc; i++) {
            clip_setup(&r[i], json_array_get(clips, (size_t)i), lang, itn, in, ci == 0);
            cl[i] = r[i].c;
        }
        int rc = sensevoice_forward(m, cl, nc);
        ok(rc == 0, "%s case %zu (%s, itn %d, %d clip%s): forward", name, ci, lang, itn, nc,
           nc > 1 ? "s" : "");
        for (int i = 0; rc == 0 && i < nc; i++) {
            char what[96];
            snprintf(what, sizeof(what), "%s case %zu clip %d", name, ci, i);
            clip_check(&r[i], in, probe, what);
        }
        for (int i = 0; i < nc; i++)
            clip_free(&r[i]);
        free(r);
        free(cl);
        total += (size_t)nc;
    }
    /* argmax alone (no log-probs to the host) */
    {
        json_t *cs = json_array_get(cases, 0), *g0 = json_array_get(json_object_get(cs, "clips"), 0);
        struct clip_run r0;
        clip_setup(&r0, g0, json_string_value(json_object_get(cs, "language")),
                   json_is_true(json_object_get(cs, "use_itn")), in, 0);
        struct sensevoice_clip c0 = r0.c;
        c0.logprobs = NULL;
        int rc = sensevoice_forward(m, &c0, 1), bad = 0;
        json_t *am = json_object_get(g0, "argmax");
        for (int t = 0; t < c0.n_frames + 4; t++)
            bad += c0.argmax[t] != json_integer_value(json_array_get(am, (size_t)t));
        ok(rc == 0 && bad == 0, "%s: argmax without log-probs identical (%d differ)", name, bad);
        clip_free(&r0);
    }
    /* every clip in one batch, each with its own prompt, plus an empty clip in the middle */
    struct clip_run *r = xcalloc(total + 1, sizeof(*r));
    struct sensevoice_clip *cl = xcalloc(total + 1, sizeof(*cl));
    size_t k = 0;
    for (size_t ci = 0; ci < json_array_size(cases); ci++) {
        json_t *cs = json_array_get(cases, ci), *clips = json_object_get(cs, "clips");
        for (size_t i = 0; i < json_array_size(clips); i++, k++) {
            clip_setup(&r[k], json_array_get(clips, i),
                       json_string_value(json_object_get(cs, "language")),
                       json_is_true(json_object_get(cs, "use_itn")), in, 1);
            cl[k] = r[k].c;
            if (k == 1) {
                k++;
                cl[k] = (struct sensevoice_clip){ .n_frames = 0, .language = SV_LANG_EN,
                                                  .argmax = xmalloc(4 * sizeof(int32_t)) };
            }
        }
    }
    int rc = sensevoice_forward(m, cl, (int)k);
    ok(rc == 0, "%s: one mixed batch of %zu clips (+1 empty): forward", name, total);
    for (size_t i = 0, j = 0; rc == 0 && i < k; i++) {
        if (i == 2)
            continue;
        char what[96];
        snprintf(what, sizeof(what), "%s mixed batch clip %zu", name, j++);
        r[i].c = cl[i];
        clip_check(&r[i], in, probe, what);
    }
    free(cl[2].argmax);
    for (size_t i = 0; i < k; i++)
        if (i != 2)
            clip_free(&r[i]);
    free(r);
    free(cl);
    sensevoice_free(m);
    json_decref(g);
}

static void check_api(void)
{
    ok(sv_language_parse("auto") == SV_LANG_AUTO && sv_language_parse("yue") == SV_LANG_YUE &&
       sv_language_parse("nospeech") == SV_LANG_NOSPEECH && sv_language_parse(NULL) == SV_LANG_AUTO &&
       sv_language_parse("") == SV_LANG_AUTO && sv_language_parse("fr") == -1 &&
       sv_language_parse("ZH") == -1, "sv_language_parse");
    ok(strcmp(sv_language_name(SV_LANG_KO), "ko") == 0 &&
       strcmp(sv_language_name(SV_LANG_COUNT), "?") == 0, "sv_language_name");
    int32_t am[12] = { 0, 5, 5, 0, 5, 7, 7, 7, 0, 0, 3, 3 }, ids[12], fr[12];
    int n = sensevoice_ctc_collapse(am, 12, 0, ids, fr);
    ok(n == 4 && ids[0] == 5 && fr[0] == 1 && ids[1] == 5 && fr[1] == 4 && ids[2] == 7 &&
       fr[2] == 5 && ids[3] == 3 && fr[3] == 10, "ctc collapse: repeats merged, blanks split "
       "and dropped, first frame of each run");
    ok(sensevoice_ctc_collapse(am, 0, 0, ids, NULL) == 0, "ctc collapse of nothing");
    float lp[3 * 4] = { -1, -2, -3, -4, -5, -1, -1, -9, -3, -2, -1, -1 };
    n = sensevoice_ctc_greedy(lp, 3, 4, 0, ids, fr);
    ok(n == 2 && ids[0] == 1 && fr[0] == 1 && ids[1] == 2 && fr[1] == 2,
       "ctc greedy: argmax ties go to the lowest id");
}

/* The published SenseVoiceSmall config.yaml (tests/golden/sensevoice/real_config.yaml,
 * a copy of shared/models/sensevoice/config.yaml, sha256 f71e239b...): its lists,
 * ${...} references and deeper sections do not confuse the reader. */
static void check_real_config(void)
{
    char *dir = xasprintf("%s/real", tmpdir), *src = xasprintf("%s/tests/golden/sensevoice/"
                                                               "real_config.yaml", srcdir);
    char *dst = xasprintf("%s/config.yaml", dir), err[256] = "";
    struct sensevoice_info in;
    memset(&in, 0xff, sizeof(in));
    FILE *f = fopen(src, "rb"), *o = NULL;
    char buf[8192];
    size_t n = f ? fread(buf, 1, sizeof(buf), f) : 0;
    if (mkdir(dir, 0755) == 0 && (o = fopen(dst, "wb")) != NULL) {
        fwrite(buf, 1, n, o);
        fclose(o);
    }
    if (f)
        fclose(f);
    int rc = sensevoice_read_config(dir, &in, err, sizeof(err));
    ok(rc == 0 && in.hidden_size == 512 && in.n_heads == 4 && in.linear_units == 2048 &&
       in.n_blocks == 50 && in.tp_blocks == 20 && in.kernel_size == 11 && in.sanm_shift == 0 &&
       in.blank_id == 0 && strcmp(in.arch_name, "SenseVoiceSmall") == 0,
       "the real SenseVoiceSmall config.yaml: output_size %d, heads %d, units %d, blocks %d+%d, "
       "kernel %d, shift %d%s%s", in.hidden_size, in.n_heads, in.linear_units, in.n_blocks,
       in.tp_blocks, in.kernel_size, in.sanm_shift, rc ? ": " : "", rc ? err : "");
    free(dir);
    free(src);
    free(dst);
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return xstrdup("");
    char *buf = xmalloc(1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* Replace the first <from> in <s> with <to>: new string. */
static char *subst(const char *s, const char *from, const char *to)
{
    const char *p = strstr(s, from);
    if (!p)
        return xstrdup(s);
    return xasprintf("%.*s%s%s", (int)(p - s), s, to, p + strlen(from));
}

static void expect_error(struct kn_backend *be, const char *dir, const char *needle,
                         const char *what)
{
    char err[512] = "";
    struct sensevoice *m = sensevoice_load(dir, be, err, sizeof(err));
    ok(!m && strstr(err, needle), "%s: %s", what, err);
    sensevoice_free(m);
}

static void check_errors(struct kn_backend *be)
{
    char *dir = xasprintf("%s/err", tmpdir), *cfg = xasprintf("%s/config.yaml", dir);
    const char *argv[] = { mkmodel, "--out", dir, "--arch", "sensevoice", "--hidden", "32",
                           "--heads", "2", "--intermediate", "48", "--layers", "2",
                           "--tp-layers", "1", "--vocab", "40", "--seed", "7", NULL };
    ok(run_argv(argv) == 0, "errors: mkmodel of a small model");
    char err[512] = "";
    struct sensevoice *m = sensevoice_load(dir, be, err, sizeof(err));
    ok(m != NULL, "errors: the untouched model loads (%s)", m ? "ok" : err);
    if (m) {
        const struct sensevoice_info *in = sensevoice_get_info(m);
        ok(in->vocab_size == 40 && in->hidden_size == 32 && in->n_heads == 2 &&
           in->linear_units == 48 && in->n_blocks == 2 && in->tp_blocks == 1, "errors: info");
        float f[560 * 3] = { 0 }, lp[7 * 40];
        int32_t am[7];
        struct sensevoice_clip c = { .feats = f, .n_frames = 3, .language = SV_LANG_COUNT,
                                     .logprobs = lp, .argmax = am };
        ok(sensevoice_forward(m, &c, 1) < 0, "forward: a bad language is refused");
        c.language = SV_LANG_ZH;
        c.n_frames = -1;
        ok(sensevoice_forward(m, &c, 1) < 0, "forward: negative frames are refused");
        c.n_frames = 3;
        c.feats = NULL;
        ok(sensevoice_forward(m, &c, 1) < 0, "forward: frames without features are refused");
        ok(sensevoice_forward(m, &c, 0) < 0, "forward: no clips is refused");
        c.feats = f;
        ok(sensevoice_forward(m, &c, 1) == 0, "forward: the good clip runs");
        double s = 0;
        for (int v = 0; v < 40; v++)
            s += exp(lp[v]);
        ok(fabs(s - 1.0) < 1e-5, "forward: log-probs of a row sum to 1 (%.7f)", s);
        sensevoice_free(m);
    }
    char *orig = read_text(cfg), *t;
    struct { const char *from, *to, *needle, *what; } bad[] = {
        { "encoder: SenseVoiceEncoderSmall", "encoder: SANMEncoder", "SANMEncoder",
          "an unsupported encoder" },
        { "model: SenseVoiceSmall", "model: Paraformer", "Paraformer", "an unsupported model" },
        { "selfattention_layer_type: sanm", "selfattention_layer_type: selfattn",
          "selfattention_layer_type", "another attention type" },
        { "normalize_before: true", "normalize_before: false", "normalize_before",
          "post-norm" },
        { "num_blocks: 2", "num_blocks: x2", "num_blocks", "a non-integer size" },
        { "attention_heads: 2", "attention_heads: 3", "attention_heads 3",
          "heads not dividing output_size" },
        { "num_blocks: 2", "num_blocks: 3", "missing tensor encoder.encoders.1.norm1.weight",
          "a layer missing from the weights" },
        { "output_size: 32", "output_size: 64", "shape [96, 560], expected [192, 560]",
          "a width not matching the weights" },
        { "kernel_size: 11", "kernel_size: 9", "fsmn_block.weight: shape [32, 1, 11], "
          "expected [32, 1, 9]", "a kernel size not matching the weights" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        t = subst(orig, bad[i].from, bad[i].to);
        write_file(cfg, t);
        free(t);
        expect_error(be, dir, bad[i].needle, bad[i].what);
    }
    write_file(cfg, orig);
    char *pt = xasprintf("%s/model.pt", dir), *pt2 = xasprintf("%s/model.pt.x", dir);
    rename(pt, pt2);
    expect_error(be, dir, "no model.pt or model.safetensors", "no weights");
    FILE *in = fopen(pt2, "rb"), *out = fopen(pt, "wb");
    char buf[4096];
    size_t n = in ? fread(buf, 1, sizeof(buf), in) : 0;
    if (out) {
        fwrite(buf, 1, n, out);
        fclose(out);
    }
    if (in)
        fclose(in);
    expect_error(be, dir, "model.pt", "a truncated model.pt");
    unlink(cfg);
    rename(pt2, pt);
    expect_error(be, dir, "config.yaml", "no config.yaml");
    free(orig);
    free(pt);
    free(pt2);
    free(cfg);
    free(dir);
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
    char *self = xstrdup(argv[0]), *slash = strrchr(self, '/');
    if (slash)
        *slash = 0;
    else
        strcpy(self, ".");
    srcdir = s ? xstrdup(s) : xasprintf("%s/../../..", self);
    mkmodel = b ? xasprintf("%s/tests/tools/mkmodel", b) : xasprintf("%s/../tools/mkmodel", self);
    free(self);
    log_init("test");
    log_set_level(-1);
    if (access(mkmodel, X_OK) != 0)
        tap_skip_all("tests/tools/mkmodel not built");
    char tmpl[] = "/tmp/llmux-test-sensevoice-XXXXXX";
    tmpdir = mkdtemp(tmpl);
    struct kn_backend *be = kn_backend_init("cpu", 0);
    ok(be != NULL, "cpu backend");
    if (!be || !tmpdir)
        return tap_done();
    check_api();
    check_real_config();
    check_golden("tiny", be);
    check_golden("shift", be);
    check_errors(be);
    kn_backend_free(be);
    rm_rf(tmpdir);
    free(srcdir);
    free(mkmodel);
    return tap_done();
}
