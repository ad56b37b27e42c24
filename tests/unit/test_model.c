/*
 * test_model.c -- worker/models against the transformers goldens of
 * tests/golden/model/: mkmodel rebuilds each tiny model byte-identically
 * (sha256), the loader maps it, and the forward pass gives logprobs within
 * 1e-4 of transformers float32 at every prompt position (chunked prefill),
 * the same 32-token greedy continuation (incremental decode through a paged
 * cache with a scattered block table; a batch of two sequences at once),
 * and loader errors name what is wrong.
 */
#include <errno.h>
#include <fcntl.h>
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
#include "model.h"
#include "golden.h"
#include "tap.h"
#include "util.h"

#define TOL 1e-4
#define BLOCK 4
#define N_BLOCKS 96
#define MAX_BLOCKS 32

static char *srcdir, *mkmodel, *tmpdir;

static int run_mkmodel(const char *out, json_t *args, const char *extra[])
{
    return golden_mkmodel(mkmodel, out, args, extra);
}

/* Sequence state: its tokens so far and a scattered block table. */
struct seq {
    int32_t tokens[160];
    int len;
    int32_t blocks[MAX_BLOCKS];
};

/* Blocks handed out back to front, interleaved between sequences. */
static void seq_init(struct seq *s, int which)
{
    memset(s, 0, sizeof(*s));
    for (int j = 0; j < MAX_BLOCKS; j++)
        s->blocks[j] = N_BLOCKS - 1 - (2 * j + which) % N_BLOCKS;
}

/*
 * One step: for each of <ns> sequences append <n_new[i]> tokens (already in
 * tokens[]) and run them; <all_rows>: logits for every new token, else the
 * last of each sequence. Returns the rows in <logits>.
 */
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
        if (row[i] > mx)
            mx = row[i];
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

/* Largest |logprob - golden| over the golden's top ids at position <p>. */
static double pos_err(const float *row, int V, json_t *prompt, int p)
{
    json_t *ids = json_array_get(json_object_get(prompt, "top_ids"), (size_t)p);
    json_t *lps = json_array_get(json_object_get(prompt, "top_logprobs"), (size_t)p);
    double lse = row_lse(row, V), worst = 0;
    double glse = json_real_value(json_array_get(json_object_get(prompt, "logsumexp"), (size_t)p));
    for (size_t k = 0; k < json_array_size(ids); k++) {
        int id = (int)json_integer_value(json_array_get(ids, k));
        double e = fabs((double)row[id] - lse - json_number_value(json_array_get(lps, k)));
        if (e > worst)
            worst = e;
    }
    double e = fabs(lse - glse);
    return e > worst ? e : worst;
}

/* Chunked prefill (chunks of <chunk>) with every row checked, then greedy
 * decode of the continuation one token per step. */
static void check_prompt(struct model *m, const char *name, json_t *prompt, int chunk)
{
    int V = model_get_config(m)->vocab_size;
    json_t *ids = json_object_get(prompt, "ids"), *greedy = json_object_get(prompt, "greedy");
    json_t *glp = json_object_get(prompt, "greedy_logprobs");
    int n = (int)json_array_size(ids), ng = (int)json_array_size(greedy);
    struct seq s, *sp = &s;
    seq_init(&s, 1);
    for (int i = 0; i < n; i++)
        s.tokens[i] = (int32_t)json_integer_value(json_array_get(ids, i));
    float *lg = xmalloc((size_t)chunk * V * sizeof(float));
    double worst = 0;
    int rc = 0, p = 0, next = -1;
    while (p < n && rc == 0) {
        int c = n - p < chunk ? n - p : chunk;
        rc = step(m, &sp, &c, 1, 1, lg);
        for (int j = 0; rc == 0 && j < c; j++) {
            double e = pos_err(lg + (size_t)j * V, V, prompt, p + j);
            worst = e > worst ? e : worst;
        }
        if (rc == 0 && p + c == n)
            next = row_argmax(lg + (size_t)(c - 1) * V, V);
        p += c;
    }
    ok(rc == 0 && worst < TOL, "%s: %d prompt positions (chunks of %d) within %g: max err %.2e",
       name, n, chunk, TOL, worst);
    int same = rc == 0, one = 1, at = -1;
    double lp_worst = 0;
    for (int i = 0; same && i < ng; i++) {
        if (next != json_integer_value(json_array_get(greedy, i))) {
            same = 0;
            at = i;
            break;
        }
        if (i == ng - 1)
            break;
        s.tokens[s.len] = next;
        if (step(m, &sp, &one, 1, 0, lg) < 0) {
            same = 0;
            break;
        }
        next = row_argmax(lg, V);
        double e = fabs((double)lg[json_integer_value(json_array_get(greedy, i + 1))] -
                        row_lse(lg, V) - json_number_value(json_array_get(glp, i + 1)));
        lp_worst = e > lp_worst ? e : lp_worst;
    }
    ok(same && lp_worst < TOL, "%s: greedy continuation of %d identical (decode logprob err "
       "%.2e)%s", name, ng, lp_worst, at >= 0 ? " - differs" : "");
    if (at >= 0)
        diag("first difference at %d", at);
    free(lg);
}

/* Two sequences at once: whole-prompt prefill of both, then both decode
 * together; the continuations must equal the goldens. */
static void check_batch(struct model *m, const char *name, json_t *pa, json_t *pb)
{
    int V = model_get_config(m)->vocab_size;
    json_t *pr[2] = { pa, pb };
    struct seq s[2], *sp[2] = { &s[0], &s[1] };
    int n_new[2], ng = (int)json_array_size(json_object_get(pa, "greedy")), same = 1;
    for (int i = 0; i < 2; i++) {
        json_t *ids = json_object_get(pr[i], "ids");
        seq_init(&s[i], i);
        n_new[i] = (int)json_array_size(ids);
        for (int j = 0; j < n_new[i]; j++)
            s[i].tokens[j] = (int32_t)json_integer_value(json_array_get(ids, j));
    }
    float *lg = xmalloc(2 * (size_t)V * sizeof(float));
    int rc = step(m, sp, n_new, 2, 0, lg);
    for (int t = 0; rc == 0 && same && t < ng; t++) {
        for (int i = 0; i < 2; i++) {
            int next = row_argmax(lg + (size_t)i * V, V);
            if (next != json_integer_value(json_array_get(json_object_get(pr[i], "greedy"), t)))
                same = 0;
            s[i].tokens[s[i].len] = next;
            n_new[i] = 1;
        }
        if (t < ng - 1)
            rc = step(m, sp, n_new, 2, 0, lg);
    }
    ok(rc == 0 && same, "%s: a batch of two sequences gives both continuations", name);
    free(lg);
}

static void check_golden(const char *name, struct kn_backend *be, int full)
{
    char *path = xasprintf("%s/tests/golden/model/%s.json", srcdir, name);
    char *dir = xasprintf("%s/%s", tmpdir, name), *st = xasprintf("%s/model.safetensors", dir);
    char err[512] = "", hex[65] = "";
    json_error_t jerr;
    json_t *g = json_load_file(path, 0, &jerr);
    struct model *m = NULL;
    if (!ok(g != NULL, "%s: golden loads", name)) {
        diag("%s: %s", path, jerr.text);
        goto out;
    }
    ok(run_mkmodel(dir, json_object_get(g, "mkmodel_args"), NULL) == 0 &&
       golden_sha256_file(st, hex) == 0 && strcmp(hex, json_string_value(json_object_get(g, "sha256"))) == 0,
       "%s: mkmodel rebuilds the golden's weights (sha256 %.12s)", name, hex);
    m = model_load(dir, be, err, sizeof(err));
    if (!ok(m != NULL, "%s: loads", name)) {
        diag("%s", err);
        goto out;
    }
    if (!ok(model_kv_alloc(m, N_BLOCKS, BLOCK) == 0, "%s: kv cache", name))
        goto out;
    json_t *prompts = json_object_get(g, "prompts");
    int chunks[3] = { 5, 64, 3 };
    for (size_t i = 0; i < json_array_size(prompts); i++)
        if (full || i == 0)
            check_prompt(m, name, json_array_get(prompts, i), chunks[i % 3]);
    if (full)
        check_batch(m, name, json_array_get(prompts, 0), json_array_get(prompts, 2));
out:
    model_free(m);
    json_decref(g);
    unlink(st);
    free(st);
    free(dir);
    free(path);
}

/* ---- loader errors --------------------------------------------------------- */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = xmalloc((size_t)n + 1);
    *len = fread(buf, 1, (size_t)n, f);
    buf[*len] = 0;
    fclose(f);
    return buf;
}

static void spit(const char *path, const char *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(buf, 1, len, f);
        fclose(f);
    }
}

/* Replace the first <from> in file <path> by <to>. */
static void edit_file(const char *path, const char *from, const char *to)
{
    size_t len;
    char *s = slurp(path, &len), *at = s ? memmem(s, len, from, strlen(from)) : NULL;
    if (!at) {
        free(s);
        return;
    }
    size_t pre = (size_t)(at - s), fl = strlen(from), tl = strlen(to);
    char *out = xmalloc(len - fl + tl + 1);
    memcpy(out, s, pre);
    memcpy(out + pre, to, tl);
    memcpy(out + pre + tl, at + fl, len - pre - fl);
    spit(path, out, len - fl + tl);
    free(out);
    free(s);
}

/* Make a small-vocabulary model in <name>, apply <edit>, expect a load error
 * containing <needle>. */
static void expect_error(struct kn_backend *be, const char *what, const char *file,
                         const char *from, const char *to, const char *needle)
{
    const char *extra[] = { "--vocab", "300", "--hidden", "32", "--heads", "2", "--kv-heads", "1",
                            "--head-dim", "16", "--intermediate", "64", NULL };
    char *dir = xasprintf("%s/err", tmpdir), *path = xasprintf("%s/%s", dir, file);
    char err[512] = "";
    run_mkmodel(dir, NULL, extra);
    if (to)
        edit_file(path, from, to);
    else {      /* truncate by <from> bytes */
        size_t len;
        char *s = slurp(path, &len);
        if (s)
            spit(path, s, len - (size_t)atoi(from));
        free(s);
    }
    struct model *m = model_load(dir, be, err, sizeof(err));
    ok(m == NULL && strstr(err, needle), "%s: error names it (%s)", what, err);
    model_free(m);
    free(path);
    free(dir);
}

static void check_errors(struct kn_backend *be)
{
    expect_error(be, "unknown architecture", "config.json", "Qwen3ForCausalLM",
                 "LlamaForCausalLM", "LlamaForCausalLM");
    expect_error(be, "missing tensor", "config.json", "Qwen3ForCausalLM", "Qwen2ForCausalLM",
                 "missing tensor model.layers.0.self_attn.q_proj.bias");
    expect_error(be, "wrong shape", "config.json", "\"intermediate_size\": 64",
                 "\"intermediate_size\": 48", "model.layers.0.mlp.gate_proj.weight: shape [64, 32]");
    expect_error(be, "bad config dtype", "config.json", "bfloat16", "int8", "int8");
    expect_error(be, "bad tensor dtype", "model.safetensors", "\"BF16\"", "\"I16\" ", "I16");
    expect_error(be, "truncated safetensors", "model.safetensors", "100", NULL, "truncated");
    expect_error(be, "lying header length", "model.safetensors", "", "\xff\xff\xff",
                 "truncated");

    /* shards: same logits as the single file */
    const char *small[] = { "--vocab", "300", "--hidden", "32", "--heads", "2", "--kv-heads", "1",
                            "--head-dim", "16", "--intermediate", "64", "--layers", "3", NULL };
    const char *sharded[] = { "--vocab", "300", "--hidden", "32", "--heads", "2", "--kv-heads",
                              "1", "--head-dim", "16", "--intermediate", "64", "--layers", "3",
                              "--shards", "3", NULL };
    char *d1 = xasprintf("%s/one", tmpdir), *d3 = xasprintf("%s/three", tmpdir), err[512] = "";
    run_mkmodel(d1, NULL, small);
    run_mkmodel(d3, NULL, sharded);
    struct model *m1 = model_load(d1, be, err, sizeof(err));
    struct model *m3 = model_load(d3, be, err, sizeof(err));
    float l1[3 * 300], l3[3 * 300];
    int same = m1 && m3 && model_kv_alloc(m1, N_BLOCKS, BLOCK) == 0 &&
               model_kv_alloc(m3, N_BLOCKS, BLOCK) == 0;
    if (same) {
        struct seq s1, s3, *p1 = &s1, *p3 = &s3;
        int n = 3;
        seq_init(&s1, 0);
        seq_init(&s3, 0);
        s1.tokens[0] = s3.tokens[0] = 7;
        s1.tokens[1] = s3.tokens[1] = 299;
        s1.tokens[2] = s3.tokens[2] = 0;
        same = step(m1, &p1, &n, 1, 1, l1) == 0 && step(m3, &p3, &n, 1, 1, l3) == 0 &&
               memcmp(l1, l3, sizeof(l1)) == 0;
    }
    ok(same, "three shards with an index give the single file's logits (%s)", err);
    model_free(m1);
    model_free(m3);

    /* f16 weights: the same model rounded to f16 loads and gives nearly the same logits */
    const char *half[] = { "--vocab", "300", "--hidden", "32", "--heads", "2", "--kv-heads", "1",
                           "--head-dim", "16", "--intermediate", "64", "--layers", "3",
                           "--dtype", "f16", NULL };
    const char *full[] = { "--vocab", "300", "--hidden", "32", "--heads", "2", "--kv-heads", "1",
                           "--head-dim", "16", "--intermediate", "64", "--layers", "3",
                           "--dtype", "f32", NULL };
    char *dh = xasprintf("%s/half", tmpdir), *df = xasprintf("%s/full", tmpdir);
    run_mkmodel(dh, NULL, half);
    run_mkmodel(df, NULL, full);
    m1 = model_load(df, be, err, sizeof(err));
    m3 = model_load(dh, be, err, sizeof(err));
    double diff = 1e9;
    if (m1 && m3 && model_kv_alloc(m1, N_BLOCKS, BLOCK) == 0 &&
        model_kv_alloc(m3, N_BLOCKS, BLOCK) == 0) {
        struct seq s1, s3, *p1 = &s1, *p3 = &s3;
        int n = 3;
        seq_init(&s1, 0);
        seq_init(&s3, 1);
        s1.tokens[0] = s3.tokens[0] = 5;
        s1.tokens[1] = s3.tokens[1] = 6;
        s1.tokens[2] = s3.tokens[2] = 7;
        if (step(m1, &p1, &n, 1, 1, l1) == 0 && step(m3, &p3, &n, 1, 1, l3) == 0) {
            diff = 0;
            for (int i = 0; i < 3 * 300; i++)
                diff = fabs(l1[i] - l3[i]) > diff ? fabs(l1[i] - l3[i]) : diff;
        }
    }
    ok(diff < 0.02, "f16 weights load and run (max logit diff to f32 %.4f) %s", diff, err);
    model_free(m1);
    model_free(m3);
    free(dh);
    free(df);
    free(d1);
    free(d3);
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
    log_set_level(LOG_ERR);
    if (access(mkmodel, X_OK) != 0)
        tap_skip_all("tests/tools/mkmodel not built");
    char tmpl[] = "/tmp/llmux-test-model-XXXXXX";
    tmpdir = mkdtemp(tmpl);
    struct kn_backend *be = kn_backend_init("cpu", 0);
    ok(be != NULL, "cpu backend");
    if (!be || !tmpdir)
        return tap_done();
    const char *goldens[] = { "qwen2-f32", "qwen3-bf16", "qwen3-moe", "qwen3-moe-sparse",
                              "qwen3-yarn", "qwen2-linear-window" };
    const char *quick = getenv("LLMUX_TEST_QUICK");
    for (size_t i = 0; i < ARRAY_SIZE(goldens); i++)
        check_golden(goldens[i], be, !quick);
    check_errors(be);
    kn_backend_free(be);
    rm_rf(tmpdir);
    free(srcdir);
    free(mkmodel);
    return tap_done();
}
