/*
 * test_encoder_cuda.c -- the encoder goldens of tests/golden/encoder/
 * (transformers float32, models rebuilt by mkmodel) on the cuda backend:
 * each input alone, all packed into one batch and packed in reverse order:
 * dense cosine >= 0.999, sparse weights, ColBERT vectors and reranker logits
 * within 1e-2 (the CUDA bounds); the worst figures are printed.
 * Prints "1..0 # SKIP" without a CUDA device (CI). The cpu bounds and the
 * byte-identical rebuild of the models are test_encoder's.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "encoder.h"
#include "kernels.h"
#include "log.h"
#include "golden.h"
#include "tap.h"
#include "util.h"

#define TOL 1e-2
#define COS_MIN 0.999
#define MAX_IN 64

static char *srcdir, *mkmodel, *tmpdir;

static int run_mkmodel(const char *out, json_t *args)
{
    return golden_mkmodel(mkmodel, out, args, NULL);
}

static double cosine(const float *a, json_t *b, int n)
{
    double ab = 0, aa = 0, bb = 0;
    if (json_array_size(b) != (size_t)n)
        return -1;
    for (int i = 0; i < n; i++) {
        double x = a[i], y = json_number_value(json_array_get(b, (size_t)i));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    double c = ab / sqrt(aa * bb + 1e-300);
    return isnan(c) ? -1 : c;
}

static double max_diff(const float *a, json_t *b, int n)
{
    double m = json_array_size(b) == (size_t)n ? 0 : INFINITY;
    for (int i = 0; i < n && m < INFINITY; i++) {
        double d = fabs(a[i] - json_number_value(json_array_get(b, (size_t)i)));
        m = isnan(d) ? INFINITY : d > m ? d : m;
    }
    return m;
}

/* A packed batch of the id lists of entries <idx[0..n)> of golden <list>. */
struct pack {
    int32_t *tok, *start;
};

static void pack_make(struct pack *p, json_t *list, const int *idx, int n)
{
    int T = 0;
    p->start = xcalloc((size_t)n + 1, sizeof(int32_t));
    for (int i = 0; i < n; i++)
        T += (int)json_array_size(json_object_get(json_array_get(list, (size_t)idx[i]), "ids"));
    p->tok = xcalloc((size_t)T + 1, sizeof(int32_t));
    T = 0;
    for (int i = 0; i < n; i++) {
        json_t *ids = json_object_get(json_array_get(list, (size_t)idx[i]), "ids");
        p->start[i] = T;
        for (size_t j = 0; j < json_array_size(ids); j++)
            p->tok[T++] = (int32_t)json_integer_value(json_array_get(ids, j));
    }
    p->start[n] = T;
}

static void pack_free(struct pack *p)
{
    free(p->tok);
    free(p->start);
}

static json_t *load_golden(const char *name)
{
    return golden_load(srcdir, "encoder", name);
}

/* Worst figures over the runs of one golden. */
struct worst {
    double cos, sparse, colbert, logit;
    int failed;                 /* a forward pass returned -1 */
};

/* Entries <idx> of <list> packed into one batch on <e>; folds the errors into <w>. */
static void run_batch(struct encoder *e, json_t *list, const int *idx, int n, struct worst *w)
{
    const struct encoder_info *in = encoder_get_info(e);
    int hd = in->hidden_size, cd = in->colbert_dim, rerank = in->kind == ENCODER_RERANK;
    struct pack p;
    pack_make(&p, list, idx, n);
    int T = p.start[n];
    float *dense = rerank ? NULL : xcalloc((size_t)n * hd, sizeof(float));
    float *scores = rerank ? xcalloc((size_t)n * in->n_labels, sizeof(float)) : NULL;
    float *sparse = in->has_sparse ? xcalloc((size_t)T, sizeof(float)) : NULL;
    float *colbert = in->has_colbert ? xcalloc((size_t)T * cd, sizeof(float)) : NULL;
    struct encoder_batch b = { .n_seqs = n, .tokens = p.tok, .seq_start = p.start };
    struct encoder_out o = { .dense = dense, .scores = scores, .sparse = sparse,
                             .colbert = colbert };
    if (encoder_forward(e, &b, &o) < 0) {
        w->failed = 1;
        goto out;
    }
    for (int i = 0; i < n; i++) {
        json_t *g = json_array_get(list, (size_t)idx[i]);
        int t0 = p.start[i], L = p.start[i + 1] - t0;
        if (dense) {
            double c = cosine(dense + (size_t)i * hd, json_object_get(g, "dense"), hd);
            w->cos = c < w->cos ? c : w->cos;
        }
        if (scores) {
            double d = max_diff(scores + (size_t)i * in->n_labels, json_object_get(g, "logits"),
                                in->n_labels);
            w->logit = d > w->logit ? d : w->logit;
        }
        if (sparse) {
            double d = max_diff(sparse + t0, json_object_get(g, "sparse"), L);
            w->sparse = d > w->sparse ? d : w->sparse;
        }
        if (colbert) {
            json_t *rows = json_object_get(g, "colbert");
            if (json_array_size(rows) != (size_t)L - 1)
                w->colbert = INFINITY;
            for (int t = 1; t < L; t++) {
                double d = max_diff(colbert + (size_t)(t0 + t) * cd,
                                    json_array_get(rows, (size_t)t - 1), cd);
                w->colbert = d > w->colbert ? d : w->colbert;
            }
        }
    }
out:
    free(dense);
    free(scores);
    free(sparse);
    free(colbert);
    pack_free(&p);
}

static void check_golden(const char *name, struct kn_backend *be)
{
    json_t *g = load_golden(name);
    ok(g != NULL, "%s: golden loads", name);
    if (!g)
        return;
    char *dir = xasprintf("%s/%s", tmpdir, name), err[256] = "";
    ok(run_mkmodel(dir, json_object_get(g, "mkmodel_args")) == 0, "%s: mkmodel", name);
    struct encoder *e = encoder_load(dir, be, err, sizeof(err));
    ok(e != NULL, "%s: encoder_load on cuda %s", name, err);
    if (e) {
        const struct encoder_info *in = encoder_get_info(e);
        json_t *list = json_object_get(g, in->kind == ENCODER_RERANK ? "pairs" : "inputs");
        int n = (int)json_array_size(list), idx[MAX_IN], rev[MAX_IN];
        n = n > MAX_IN ? MAX_IN : n;
        for (int i = 0; i < n; i++) {
            idx[i] = i;
            rev[i] = n - 1 - i;
        }
        static const char *runs[] = { "each alone", "all packed", "packed reversed" };
        for (int r = 0; r < 3; r++) {
            struct worst w = { 1, 0, 0, 0, 0 };
            if (r == 0)
                for (int i = 0; i < n; i++)
                    run_batch(e, list, idx + i, 1, &w);
            else
                run_batch(e, list, r == 1 ? idx : rev, n, &w);
            diag("%s %s: worst dense cosine %.8f, sparse %.2e, colbert %.2e, logits %.2e", name,
                 runs[r], w.cos, w.sparse, w.colbert, w.logit);
            if (in->kind == ENCODER_RERANK) {
                ok(!w.failed && w.logit <= TOL, "%s %s (%d pairs): logits within %g (worst %.2e)",
                   name, runs[r], n, TOL, w.logit);
                continue;
            }
            ok(!w.failed && w.cos >= COS_MIN, "%s %s (%d inputs): dense cosine >= %g "
               "(worst %.8f)", name, runs[r], n, COS_MIN, w.cos);
            if (in->has_sparse)
                ok(!w.failed && w.sparse <= TOL, "%s %s: sparse weights within %g (worst %.2e)",
                   name, runs[r], TOL, w.sparse);
            if (in->has_colbert)
                ok(!w.failed && w.colbert <= TOL, "%s %s: colbert vectors within %g "
                   "(worst %.2e)", name, runs[r], TOL, w.colbert);
        }
    }
    encoder_free(e);
    free(dir);
    json_decref(g);
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
    char tmpl[] = "/tmp/llmux-test-encoder-cuda-XXXXXX";
    tmpdir = mkdtemp(tmpl);
    struct kn_backend *be = kn_backend_init("cuda", 0);
    ok(be != NULL && tmpdir != NULL, "cuda backend");
    if (!be || !tmpdir)
        return tap_done();
    check_golden("embed", be);
    check_golden("embed-mean", be);
    check_golden("rerank", be);
    ok(kn_backend_sync(be) == 0, "stream has no pending error");
    kn_backend_free(be);
    rm_rf(tmpdir);
    free(srcdir);
    free(mkmodel);
    return tap_done();
}
