/*
 * test_model_cuda.c -- the model goldens of tests/golden/model/ (transformers
 * float32) on the cuda backend: logprobs within 2e-2 at every prompt position
 * (chunked prefill) and along the golden's greedy continuation (paged decode,
 * teacher-forced, one sequence and a batch of two); the greedy id equal to
 * the golden's wherever the golden's top-2 margin exceeds 0.05. Then the
 * LLMUX_MODEL_LOWP plan (bf16 matmul inputs and KV) is run and its errors
 * only reported. Prints "1..0 # SKIP" without a CUDA device (CI).
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
#include "model.h"
#include "golden.h"
#include "tap.h"
#include "util.h"

#define TOL 2e-2
#define MARGIN 0.05
#define BLOCK 4
#define N_BLOCKS 96
#define MAX_BLOCKS 32

static char *srcdir, *mkmodel, *tmpdir;

static int run_mkmodel(const char *out, json_t *args)
{
    return golden_mkmodel(mkmodel, out, args, NULL);
}

struct seq {
    int32_t tokens[160];
    int len;
    int32_t blocks[MAX_BLOCKS];
};

static void seq_init(struct seq *s, int which)
{
    memset(s, 0, sizeof(*s));
    for (int j = 0; j < MAX_BLOCKS; j++)
        s->blocks[j] = N_BLOCKS - 1 - (2 * j + which) % N_BLOCKS;
}

/* Append n_new[i] tokens (already in tokens[]) to each of <ns> sequences and
 * run them; logits of every new token (all_rows) or the last of each. */
static int step(struct model *m, struct seq **ss, const int *n_new, int ns, int all_rows,
                float *logits)
{
    int32_t tok[256], pos[256], start[9], len[8], bt[8 * MAX_BLOCKS], rows[256];
    int T = 0, NL = 0;
    for (int i = 0; i < ns; i++) {
        start[i] = T;
        for (int j = 0; j < n_new[i]; j++) {
            int p = ss[i]->len + j;
            tok[T] = ss[i]->tokens[p];
            pos[T] = p;
            if (all_rows || j == n_new[i] - 1)
                rows[NL++] = T;
            T++;
        }
        ss[i]->len += n_new[i];
        len[i] = ss[i]->len;
        memcpy(bt + i * MAX_BLOCKS, ss[i]->blocks, sizeof(ss[i]->blocks));
    }
    start[ns] = T;
    struct model_batch b = { .n_tokens = T, .tokens = tok, .positions = pos, .n_seqs = ns,
                             .seq_start = start, .seq_len = len, .block_table = bt,
                             .max_blocks = MAX_BLOCKS, .n_logits = NL, .logit_rows = rows };
    return model_forward(m, &b, logits);
}

static double row_lse(const float *row, int V)
{
    double mx = -INFINITY, s = 0;
    for (int i = 0; i < V; i++)
        mx = row[i] > mx ? row[i] : mx;
    for (int i = 0; i < V; i++)
        s += exp((double)row[i] - mx);
    return mx + log(s);
}

static int row_argmax(const float *row, int V)
{
    int best = 0;
    for (int i = 1; i < V; i++)
        if (row[i] > row[best])
            best = i;
    return best;
}

static double jnum(json_t *a, size_t i) { return json_number_value(json_array_get(a, i)); }
static int jint(json_t *a, size_t i) { return (int)json_integer_value(json_array_get(a, i)); }

struct score {
    double lp_err;              /* largest |logprob - golden| */
    int checked, wrong;         /* greedy ids compared (margin > MARGIN), differing */
};

/* Prompt position <p>: the golden's top ids and logsumexp; its argmax where
 * the golden's top-2 margin is clear. */
static void score_prompt_row(struct score *sc, const float *row, int V, json_t *pr, int p)
{
    json_t *ids = json_array_get(json_object_get(pr, "top_ids"), (size_t)p);
    json_t *lps = json_array_get(json_object_get(pr, "top_logprobs"), (size_t)p);
    double lse = row_lse(row, V);
    double e = fabs(lse - jnum(json_object_get(pr, "logsumexp"), (size_t)p));
    for (size_t k = 0; k < json_array_size(ids); k++) {
        double d = fabs((double)row[jint(ids, k)] - lse - jnum(lps, k));
        e = d > e ? d : e;
    }
    sc->lp_err = e > sc->lp_err ? e : sc->lp_err;
    if (json_array_size(lps) >= 2 && jnum(lps, 0) - jnum(lps, 1) > MARGIN) {
        sc->checked++;
        sc->wrong += row_argmax(row, V) != jint(ids, 0);
    }
}

/* Greedy step: golden token <g> with golden logprob <glp>. The golden's
 * margin is unknown here but at most glp - (our logprob of our argmax) + TOL
 * (our logprobs are within TOL): a different argmax counts as wrong unless
 * that bound allows a margin <= MARGIN. */
static void score_greedy_row(struct score *sc, const float *row, int V, int g, double glp)
{
    double lse = row_lse(row, V), e = fabs((double)row[g] - lse - glp);
    int our = row_argmax(row, V);
    sc->lp_err = e > sc->lp_err ? e : sc->lp_err;
    if (our == g) {
        sc->checked++;
    } else if (glp - ((double)row[our] - lse) + TOL > MARGIN) {
        sc->checked++;
        sc->wrong++;
    }
}

/* Chunked prefill of prompt <pr>, then its greedy continuation teacher-forced. */
static void check_prompt(struct model *m, json_t *pr, int chunk, struct score *sc)
{
    int V = model_get_config(m)->vocab_size;
    json_t *ids = json_object_get(pr, "ids"), *greedy = json_object_get(pr, "greedy");
    json_t *glp = json_object_get(pr, "greedy_logprobs");
    int n = (int)json_array_size(ids), ng = (int)json_array_size(greedy), one = 1;
    struct seq s, *sp = &s;
    float *lg = xmalloc((size_t)chunk * V * sizeof(float));
    seq_init(&s, 1);
    for (int i = 0; i < n; i++)
        s.tokens[i] = jint(ids, (size_t)i);
    for (int i = 0; i < ng && n + i < 160; i++)
        s.tokens[n + i] = jint(greedy, (size_t)i);
    for (int p = 0; p < n;) {
        int c = n - p < chunk ? n - p : chunk;
        if (step(m, &sp, &c, 1, 1, lg) < 0)
            goto fail;
        for (int j = 0; j < c; j++)
            score_prompt_row(sc, lg + (size_t)j * V, V, pr, p + j);
        if (p + c == n)
            score_greedy_row(sc, lg + (size_t)(c - 1) * V, V, jint(greedy, 0), jnum(glp, 0));
        p += c;
    }
    for (int i = 1; i < ng; i++) {
        if (step(m, &sp, &one, 1, 0, lg) < 0)
            goto fail;
        score_greedy_row(sc, lg, V, jint(greedy, (size_t)i), jnum(glp, (size_t)i));
    }
    free(lg);
    return;
fail:
    sc->lp_err = INFINITY;
    free(lg);
}

/* Prompts <a> and <b> prefilled in one batch, then decoded together. */
static void check_batch(struct model *m, json_t *pa, json_t *pb, struct score *sc)
{
    int V = model_get_config(m)->vocab_size;
    json_t *pr[2] = { pa, pb };
    struct seq s[2], *sp[2] = { &s[0], &s[1] };
    int n_new[2], ng = 1 << 30;
    float *lg = xmalloc(2 * (size_t)V * sizeof(float));
    for (int i = 0; i < 2; i++) {
        json_t *ids = json_object_get(pr[i], "ids"), *g = json_object_get(pr[i], "greedy");
        seq_init(&s[i], i);
        n_new[i] = (int)json_array_size(ids);
        for (int j = 0; j < n_new[i]; j++)
            s[i].tokens[j] = jint(ids, (size_t)j);
        for (size_t j = 0; j < json_array_size(g) && n_new[i] + j < 160; j++)
            s[i].tokens[n_new[i] + j] = jint(g, j);
        ng = (int)json_array_size(g) < ng ? (int)json_array_size(g) : ng;
    }
    for (int t = 0; t < ng; t++) {
        if (step(m, sp, n_new, 2, 0, lg) < 0) {
            sc->lp_err = INFINITY;
            break;
        }
        for (int i = 0; i < 2; i++) {
            score_greedy_row(sc, lg + (size_t)i * V, V, jint(json_object_get(pr[i], "greedy"), t),
                             jnum(json_object_get(pr[i], "greedy_logprobs"), (size_t)t));
            n_new[i] = 1;
        }
    }
    free(lg);
}

/* Every prompt of golden <name> on <be>; asserted unless <report_only>. */
static void check_golden(const char *name, struct kn_backend *be, int report_only)
{
    char *path = xasprintf("%s/tests/golden/model/%s.json", srcdir, name);
    char *dir = xasprintf("%s/%s", tmpdir, name), err[512] = "";
    const char *plan = report_only ? "lowp" : "f32";
    json_error_t jerr;
    json_t *g = json_load_file(path, 0, &jerr);
    struct model *m = NULL;
    struct score sc = { 0, 0, 0 };
    if (!report_only && !ok(g != NULL && run_mkmodel(dir, json_object_get(g, "mkmodel_args")) == 0,
                            "%s: golden loads and mkmodel makes its model", name))
        goto out;
    m = model_load(dir, be, err, sizeof(err));
    if (!m || model_kv_alloc(m, N_BLOCKS, BLOCK) < 0) {
        ok(report_only, "%s (%s): loads on cuda: %s", name, plan, err);
        goto out;
    }
    json_t *prompts = json_object_get(g, "prompts");
    int chunks[3] = { 5, 64, 3 };
    for (size_t i = 0; i < json_array_size(prompts); i++)
        check_prompt(m, json_array_get(prompts, i), chunks[i % 3], &sc);
    check_batch(m, json_array_get(prompts, 0), json_array_get(prompts, 2), &sc);
    if (report_only) {
        diag("%s (%s plan): max logprob err %.3e, greedy ids %d/%d identical", name, plan,
             sc.lp_err, sc.checked - sc.wrong, sc.checked);
        goto out;
    }
    ok(sc.lp_err < TOL, "%s: logprobs within %g of the golden on cuda: max err %.3e", name, TOL,
       sc.lp_err);
    ok(sc.checked > 0 && sc.wrong == 0, "%s: greedy ids identical where the margin > %g "
       "(%d compared, %d differ)", name, MARGIN, sc.checked, sc.wrong);
out:
    model_free(m);
    json_decref(g);
    free(dir);
    free(path);
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
    char tmpl[] = "/tmp/llmux-test-model-cuda-XXXXXX";
    tmpdir = mkdtemp(tmpl);
    struct kn_backend *be = kn_backend_init("cuda", 0);
    ok(be != NULL && tmpdir != NULL, "cuda backend");
    if (!be || !tmpdir)
        return tap_done();
    const char *goldens[] = { "qwen2-f32", "qwen3-bf16", "qwen3-moe", "qwen3-moe-sparse",
                              "qwen3-yarn", "qwen2-linear-window" };
    for (size_t i = 0; i < ARRAY_SIZE(goldens); i++)
        check_golden(goldens[i], be, 0);
    setenv("LLMUX_MODEL_LOWP", "1", 1);
    for (size_t i = 0; i < ARRAY_SIZE(goldens); i++)
        check_golden(goldens[i], be, 1);
    unsetenv("LLMUX_MODEL_LOWP");
    ok(kn_backend_sync(be) == 0, "stream has no pending error");
    kn_backend_free(be);
    rm_rf(tmpdir);
    free(srcdir);
    free(mkmodel);
    return tap_done();
}
