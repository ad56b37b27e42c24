/*
 * test_encoder.c -- the XLM-RoBERTa encoder (worker/models/xlmr.c,
 * encoder_forward.c, torch_zip.c) against the transformers goldens of
 * tests/golden/encoder/: mkmodel rebuilds each tiny model byte-identically
 * (sha256), encoder_forward on single sequences and on one packed batch of
 * all of them gives the dense vectors (cosine >= 0.99999), sparse weights
 * and reranker logits (1e-4) and ColBERT vectors (1e-4); the torch zip
 * reader reads real torch.save files and survives truncated and corrupted
 * ones; loader errors name what is wrong.
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

#include "encoder.h"
#include "kernels.h"
#include "log.h"
#include "golden.h"
#include "tap.h"
#include "torch_zip.h"
#include "util.h"

#define TOL 1e-4
#define COS_MIN 0.99999

static char *srcdir, *mkmodel, *tmpdir;

static int run_mkmodel(const char *out, json_t *args)
{
    return golden_mkmodel(mkmodel, out, args, NULL);
}

static int sha_ok(const char *dir, const char *file, json_t *want)
{
    char hex[65] = "", *p = xasprintf("%s/%s", dir, file);
    int r = golden_sha256_file(p, hex) == 0 && json_string_value(want) &&
            strcmp(hex, json_string_value(want)) == 0;
    free(p);
    return r;
}

static json_t *load_golden(const char *name)
{
    return golden_load(srcdir, "encoder", name);
}

static double cosine(const float *a, json_t *b, int n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) {
        double x = a[i], y = json_number_value(json_array_get(b, (size_t)i));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    return ab / sqrt(aa * bb + 1e-300);
}

static double max_diff(const float *a, json_t *b, int n)
{
    double m = json_array_size(b) == (size_t)n ? 0 : INFINITY;
    for (int i = 0; i < n && m < INFINITY; i++) {
        double d = fabs(a[i] - json_number_value(json_array_get(b, (size_t)i)));
        m = d > m || isnan(d) ? (isnan(d) ? INFINITY : d) : m;
    }
    return m;
}

/* A packed batch of the id lists of entries <idx[0..n)> of golden <list>. */
struct pack {
    int n;
    int32_t *tok, *start;
};

static void pack_make(struct pack *p, json_t *list, const int *idx, int n)
{
    p->n = n;
    p->start = xcalloc((size_t)n + 1, sizeof(int32_t));
    int T = 0;
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

/* Builds the golden's model; NULL when that fails (reported). */
static struct encoder *golden_model(json_t *g, const char *name, struct kn_backend *be,
                                    char **dir_out)
{
    char *dir = xasprintf("%s/%s", tmpdir, name), err[256] = "";
    ok(run_mkmodel(dir, json_object_get(g, "mkmodel_args")) == 0, "%s: mkmodel", name);
    const char *wf = json_string_value(json_object_get(g, "weights_file"));
    int same = sha_ok(dir, wf ? wf : "model.safetensors", json_object_get(g, "sha256"));
    if (json_object_get(g, "sha256_sparse_linear"))
        same = same && sha_ok(dir, "sparse_linear.pt", json_object_get(g, "sha256_sparse_linear"));
    if (json_object_get(g, "sha256_colbert_linear"))
        same = same && sha_ok(dir, "colbert_linear.pt", json_object_get(g, "sha256_colbert_linear"));
    ok(same, "%s: mkmodel rebuilds the golden's files byte-identically (sha256)", name);
    struct encoder *e = encoder_load(dir, be, err, sizeof(err));
    ok(e != NULL, "%s: encoder_load %s", name, err);
    *dir_out = dir;
    return e;
}

/* Runs entries <idx> of the embed golden packed; checks every output. */
static void embed_check(struct encoder *e, json_t *inputs, const int *idx, int n, const char *what,
                        const char *name)
{
    const struct encoder_info *in = encoder_get_info(e);
    int hd = in->hidden_size, cd = in->colbert_dim;
    struct pack p;
    pack_make(&p, inputs, idx, n);
    int T = p.start[n];
    float *dense = xcalloc((size_t)n * hd, sizeof(float));
    float *sparse = in->has_sparse ? xcalloc((size_t)T, sizeof(float)) : NULL;
    float *colbert = in->has_colbert ? xcalloc((size_t)T * cd, sizeof(float)) : NULL;
    struct encoder_batch b = { .n_seqs = n, .tokens = p.tok, .seq_start = p.start };
    struct encoder_out o = { .dense = dense, .sparse = sparse, .colbert = colbert };
    int rc = encoder_forward(e, &b, &o);
    double worst_cos = 1, worst_sp = 0, worst_cb = 0, first_row = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        json_t *g = json_array_get(inputs, (size_t)idx[i]);
        int t0 = p.start[i], L = p.start[i + 1] - t0;
        double c = cosine(dense + (size_t)i * hd, json_object_get(g, "dense"), hd);
        worst_cos = c < worst_cos ? c : worst_cos;
        if (sparse) {
            double d = max_diff(sparse + t0, json_object_get(g, "sparse"), L);
            worst_sp = d > worst_sp ? d : worst_sp;
        }
        if (colbert) {
            json_t *rows = json_object_get(g, "colbert");
            if (json_array_size(rows) != (size_t)L - 1)
                worst_cb = INFINITY;
            for (int t = 1; t < L; t++) {
                double d = max_diff(colbert + (size_t)(t0 + t) * cd,
                                    json_array_get(rows, (size_t)t - 1), cd);
                worst_cb = d > worst_cb ? d : worst_cb;
            }
            for (int k = 0; k < cd; k++)
                first_row += fabs(colbert[(size_t)t0 * cd + k]);
        }
    }
    ok(rc == 0 && worst_cos >= COS_MIN, "%s %s: dense cosine >= %g (worst %.8f)", name, what,
       COS_MIN, worst_cos);
    if (sparse)
        ok(rc == 0 && worst_sp <= TOL, "%s %s: sparse weights within %g (worst %.2e)", name,
           what, TOL, worst_sp);
    if (colbert)
        ok(rc == 0 && worst_cb <= TOL && first_row == 0,
           "%s %s: colbert vectors within %g (worst %.2e), <s> rows zero", name, what, TOL,
           worst_cb);
    free(dense);
    free(sparse);
    free(colbert);
    pack_free(&p);
}

static void check_embed(const char *name, struct kn_backend *be, int want_heads)
{
    json_t *g = load_golden(name);
    ok(g != NULL, "%s: golden loads", name);
    if (!g)
        return;
    char *dir = NULL;
    struct encoder *e = golden_model(g, name, be, &dir);
    if (e) {
        const struct encoder_info *in = encoder_get_info(e);
        int mean = strcmp(json_string_value(json_object_get(g, "pooling")), "mean") == 0;
        ok(in->kind == ENCODER_EMBED && in->max_model_len == 8192 && in->vocab_size == 250002 &&
           in->has_sparse == want_heads && in->has_colbert == want_heads &&
           (!want_heads || in->colbert_dim == 48) &&
           in->normalize == json_is_true(json_object_get(g, "normalize")) &&
           in->pooling == (mean ? POOL_MEAN : POOL_CLS),
           "%s: info (kind, max_model_len 8192, heads, pooling %s, normalize %d)", name,
           mean ? "mean" : "cls", in->normalize);
        json_t *inputs = json_object_get(g, "inputs");
        int n = (int)json_array_size(inputs), idx[64] = { 0 }, all_single = 1;
        n = n > 64 ? 64 : n;
        for (int i = 0; i < n && i < 64; i++) {
            idx[i] = i;
            /* one at a time; quiet unless it fails */
            float dv[512];
            struct pack p;
            pack_make(&p, inputs, &i, 1);
            struct encoder_batch b = { .n_seqs = 1, .tokens = p.tok, .seq_start = p.start };
            struct encoder_out o = { .dense = dv };
            if (in->hidden_size > 512 || encoder_forward(e, &b, &o) < 0 ||
                cosine(dv, json_object_get(json_array_get(inputs, (size_t)i), "dense"),
                       in->hidden_size) < COS_MIN)
                all_single = 0;
            pack_free(&p);
        }
        ok(all_single, "%s: each of %d inputs alone: dense cosine >= %g", name, n, COS_MIN);
        embed_check(e, inputs, idx + n - 1, 1, "longest alone", name);
        embed_check(e, inputs, idx, n, "all packed", name);
        int rev[64];
        for (int i = 0; i < n; i++)
            rev[i] = n - 1 - i;
        kn_backend_set_threads(be, 2);
        embed_check(e, inputs, rev, n, "reversed, 2 threads", name);
        kn_backend_set_threads(be, 1);
    }
    encoder_free(e);
    free(dir);
    json_decref(g);
}

static void check_rerank(struct kn_backend *be)
{
    json_t *g = load_golden("rerank");
    ok(g != NULL, "rerank: golden loads");
    if (!g)
        return;
    char *dir = NULL;
    struct encoder *e = golden_model(g, "rerank", be, &dir);
    if (e) {
        const struct encoder_info *in = encoder_get_info(e);
        ok(in->kind == ENCODER_RERANK && in->n_labels == 1 && !in->has_sparse &&
           !in->has_colbert && strcmp(in->arch_name, "XLMRobertaForSequenceClassification") == 0,
           "rerank: info (kind, 1 label, no heads)");
        json_t *pairs = json_object_get(g, "pairs");
        int n = (int)json_array_size(pairs), idx[16] = { 0 };
        n = n > 16 ? 16 : n;
        double worst1 = 0, worst = 0;
        float s[16];
        for (int i = 0; i < n && i < 16; i++) {
            struct pack p;
            pack_make(&p, pairs, &i, 1);
            struct encoder_batch b = { .n_seqs = 1, .tokens = p.tok, .seq_start = p.start };
            struct encoder_out o = { .scores = s };
            double d = encoder_forward(e, &b, &o) < 0 ? INFINITY
                     : max_diff(s, json_object_get(json_array_get(pairs, (size_t)i), "logits"), 1);
            worst1 = d > worst1 ? d : worst1;
            pack_free(&p);
            idx[i] = i;
        }
        ok(worst1 <= TOL, "rerank: %d pairs alone: logits within %g (worst %.2e)", n, TOL, worst1);
        struct pack p;
        pack_make(&p, pairs, idx, n);
        float dense[16 * 64];
        struct encoder_batch b = { .n_seqs = n, .tokens = p.tok, .seq_start = p.start };
        struct encoder_out o = { .scores = s, .dense = in->hidden_size <= 64 ? dense : NULL };
        int rc = encoder_forward(e, &b, &o);
        for (int i = 0; i < n && rc == 0; i++) {
            double d = max_diff(s + i, json_object_get(json_array_get(pairs, (size_t)i), "logits"), 1);
            worst = d > worst ? d : worst;
        }
        ok(rc == 0 && worst <= TOL, "rerank: %d pairs packed: logits within %g (worst %.2e)", n,
           TOL, worst);
        pack_free(&p);
    }
    encoder_free(e);
    free(dir);
    json_decref(g);
}

/* ---- torch zip reader ------------------------------------------------------ */

static int read_all(const char *path, unsigned char **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 0;
    *buf = NULL;
    *len = 0;
    for (;;) {
        xgrow((void **)buf, &cap, *len + 4096, 1);
        size_t n = fread(*buf + *len, 1, cap - *len, f);
        if (n == 0)
            break;
        *len += n;
    }
    fclose(f);
    return 0;
}

static double tz_value(const struct tz_tensor *t, size_t i)
{
    const unsigned char *p = t->data;
    uint16_t h;
    float f;
    switch (t->dtype) {
    case KN_BF16: memcpy(&h, p + 2 * i, 2); return kn_bf16_to_f32(h);
    case KN_F16: memcpy(&h, p + 2 * i, 2); return kn_f16_to_f32(h);
    default: memcpy(&f, p + 4 * i, 4); return f;
    }
}

static void check_torch_files(void)
{
    json_t *g = load_golden("torch_files");
    json_t *files = json_object_get(g, "files");
    char err[256];
    const char *good[] = { "torch_linear.pt", "torch_mixed.pt" };
    for (size_t k = 0; k < ARRAY_SIZE(good); k++) {
        char *path = xasprintf("%s/tests/golden/encoder/%s", srcdir, good[k]);
        struct tz_file f;
        err[0] = 0;
        int rc = tz_open(&f, path, err, sizeof(err)), all = rc == 0;
        json_t *want = json_object_get(files, good[k]), *ent;
        const char *key;
        json_object_foreach(want, key, ent) {
            const struct tz_tensor *t = tz_find(&f, key);
            json_t *shape = json_object_get(ent, "shape"), *vals = json_object_get(ent, "values");
            if (!t || t->ndim != (int)json_array_size(shape)) {
                all = 0;
                continue;
            }
            for (int d = 0; d < t->ndim; d++)
                if (t->shape[d] != json_integer_value(json_array_get(shape, (size_t)d)))
                    all = 0;
            for (size_t i = 0; i < json_array_size(vals); i++) {
                double w = json_number_value(json_array_get(vals, i));
                if (fabs(tz_value(t, i) - w) > 1e-6 * (1 + fabs(w)))
                    all = 0;
            }
        }
        ok(all && f.n_tensors == (int)json_object_size(want),
           "torch_zip: %s read as torch wrote it (%d tensors) %s", good[k], f.n_tensors, err);
        tz_close(&f);
        free(path);
    }
    char *path = xasprintf("%s/tests/golden/encoder/torch_transposed.pt", srcdir);
    struct tz_file f;
    int rc = tz_open(&f, path, err, sizeof(err));
    ok(rc < 0 && strstr(err, "not contiguous"), "torch_zip: a transposed tensor is refused: %s", err);
    tz_close(&f);
    free(path);
    path = xasprintf("%s/tests/golden/encoder/torch_long.pt", srcdir);
    rc = tz_open(&f, path, err, sizeof(err));
    const struct tz_tensor *t = rc == 0 ? tz_find(&f, "i") : NULL;
    ok(t && t->dtype == KN_DTYPE_COUNT && strcmp(t->dtype_name, "LongStorage") == 0,
       "torch_zip: an int64 tensor is listed with its storage class");
    tz_close(&f);
    free(path);

    /* every truncation and every single-byte corruption of a real file: no crash */
    path = xasprintf("%s/tests/golden/encoder/torch_linear.pt", srcdir);
    unsigned char *buf = NULL;
    size_t len = 0;
    int trunc_fail = 1, survived = 1;
    volatile unsigned sum = 0;
    if (read_all(path, &buf, &len) == 0) {
        for (size_t n = 0; n < len; n++) {
            unsigned char *cp = xmalloc(n + 1);
            memcpy(cp, buf, n);
            if (tz_open_mem(&f, cp, n, err, sizeof(err)) == 0)
                trunc_fail = 0;
            tz_close(&f);
            free(cp);
        }
        for (size_t i = 0; i < len; i++) {
            unsigned char *cp = xmalloc(len);
            memcpy(cp, buf, len);
            cp[i] ^= (unsigned char)(0x5a + i);
            if (tz_open_mem(&f, cp, len, err, sizeof(err)) == 0)
                for (int k = 0; k < f.n_tensors; k++) {  /* touch every byte it claims */
                    const unsigned char *q = f.tensors[k].data;
                    for (size_t j = 0; q && j < f.tensors[k].nbytes; j++)
                        sum += q[j];
                    if (q && (q < cp || q + f.tensors[k].nbytes > cp + len))
                        survived = 0;
                }
            tz_close(&f);
            free(cp);
        }
    }
    ok(len > 0 && trunc_fail, "torch_zip: all %zu truncations of a checkpoint are refused", len);
    ok(len > 0 && survived, "torch_zip: %zu single-byte corruptions read safely", len);
    free(buf);
    free(path);
    json_decref(g);
}

/* ---- loader errors ------------------------------------------------------------ */

static int write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char *p = xasprintf("%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    int rc = f && fwrite(data, 1, len, f) == len ? 0 : -1;
    if (f && fclose(f) != 0)
        rc = -1;
    free(p);
    return rc;
}

/* <dir> gets symlinks to the files of <from> named in <names>. */
static void link_files(const char *from, const char *dir, const char *const *names)
{
    mkdir(dir, 0755);
    for (int i = 0; names[i]; i++) {
        char *a = xasprintf("%s/%s", from, names[i]), *b = xasprintf("%s/%s", dir, names[i]);
        if (symlink(a, b) < 0 && errno != EEXIST)
            diag("symlink %s: %s", b, strerror(errno));
        free(a);
        free(b);
    }
}

static char *file_text(const char *path)
{
    unsigned char *b;
    size_t n;
    if (read_all(path, &b, &n) < 0)
        return NULL;
    b[n] = 0;
    return (char *)b;
}

static void check_errors(struct kn_backend *be)
{
    char err[256], *embed = xasprintf("%s/embed", tmpdir), *mean = xasprintf("%s/embed-mean", tmpdir);
    char *cfg_path = xasprintf("%s/config.json", embed), *cfg = file_text(cfg_path);
    struct encoder *e;
    const char *weights[] = { "model.safetensors", "sparse_linear.pt", "colbert_linear.pt", NULL };

    /* a layer more in config.json than in the weights */
    char *d = xasprintf("%s/e-missing", tmpdir);
    link_files(embed, d, weights);
    char *c = cfg ? xstrdup(cfg) : xstrdup("{}"), *at = strstr(c, "\"num_hidden_layers\": 2");
    if (at)
        at[strlen("\"num_hidden_layers\": ")] = '3';
    write_file(d, "config.json", c, strlen(c));
    err[0] = 0;
    e = encoder_load(d, be, err, sizeof(err));
    ok(!e && strstr(err, "missing tensor encoder.layer.2."), "missing tensor: %s", err);
    encoder_free(e);
    free(d);

    /* unsupported architecture and activation */
    d = xasprintf("%s/e-arch", tmpdir);
    link_files(embed, d, weights);
    free(c);
    c = cfg ? xstrdup(cfg) : xstrdup("{}");
    if ((at = strstr(c, "XLMRobertaModel")))
        memcpy(at, "BertModelXXXXXX", 15);
    write_file(d, "config.json", c, strlen(c));
    e = encoder_load(d, be, err, sizeof(err));
    ok(!e && strstr(err, "unsupported architecture BertModelXXXXXX"), "architecture: %s", err);
    encoder_free(e);
    free(d);

    /* bad and truncated .pt heads */
    const char *model_only[] = { "model.safetensors", "config.json", NULL };
    d = xasprintf("%s/e-badpt", tmpdir);
    link_files(embed, d, model_only);
    const char *junk = "PK\003\004 this is not a checkpoint";
    write_file(d, "sparse_linear.pt", junk, strlen(junk));
    e = encoder_load(d, be, err, sizeof(err));
    ok(!e && strstr(err, "sparse_linear.pt"), "garbage sparse_linear.pt: %s", err);
    encoder_free(e);
    char *pt = xasprintf("%s/colbert_linear.pt", embed), *ptt = file_text(pt);
    char *sp = xasprintf("%s/sparse_linear.pt", d);
    unlink(sp);
    free(sp);
    struct stat st;
    if (ptt && stat(pt, &st) == 0)
        write_file(d, "colbert_linear.pt", ptt, (size_t)st.st_size - 40);
    e = encoder_load(d, be, err, sizeof(err));
    ok(!e && strstr(err, "colbert_linear.pt"), "truncated colbert_linear.pt: %s", err);
    encoder_free(e);
    free(pt);
    free(ptt);
    free(d);

    /* truncated pytorch_model.bin */
    d = xasprintf("%s/e-truncbin", tmpdir);
    mkdir(d, 0755);
    char *bin = xasprintf("%s/pytorch_model.bin", mean), *mcfg_path = xasprintf("%s/config.json", mean);
    char *mcfg = file_text(mcfg_path);
    unsigned char *bb = NULL;
    size_t bl = 0;
    if (mcfg && read_all(bin, &bb, &bl) == 0 && bl > 1000) {
        write_file(d, "config.json", mcfg, strlen(mcfg));
        write_file(d, "pytorch_model.bin", bb, bl - 1000);
    }
    e = encoder_load(d, be, err, sizeof(err));
    ok(!e && strstr(err, "pytorch_model.bin"), "truncated pytorch_model.bin: %s", err);
    encoder_free(e);
    free(bb);
    free(bin);
    free(mcfg);
    free(mcfg_path);
    free(d);

    /* forward refuses bad batches */
    e = encoder_load(embed, be, err, sizeof(err));
    if (e) {
        float dv[64];
        int32_t tok[3] = { 0, 250002, 2 }, st3[2] = { 0, 3 }, st0[3] = { 0, 0, 3 };
        struct encoder_batch b = { .n_seqs = 1, .tokens = tok, .seq_start = st3 };
        struct encoder_out o = { .dense = dv };
        ok(encoder_forward(e, &b, &o) < 0, "a token outside the vocabulary is refused");
        tok[1] = 100;
        b = (struct encoder_batch){ .n_seqs = 2, .tokens = tok, .seq_start = st0 };
        ok(encoder_forward(e, &b, &o) < 0, "an empty sequence is refused");
        int32_t *longt = xcalloc(8193, sizeof(int32_t)), stl[2] = { 0, 8193 };
        b = (struct encoder_batch){ .n_seqs = 1, .tokens = longt, .seq_start = stl };
        ok(encoder_forward(e, &b, &o) < 0, "8193 tokens (over max_model_len) are refused");
        free(longt);
    }
    encoder_free(e);
    free(c);
    free(cfg);
    free(cfg_path);
    free(embed);
    free(mean);
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
    char tmpl[] = "/tmp/llmux-test-encoder-XXXXXX";
    tmpdir = mkdtemp(tmpl);
    struct kn_backend *be = kn_backend_init("cpu", 0);
    ok(be != NULL, "cpu backend");
    if (!be || !tmpdir)
        return tap_done();
    check_torch_files();
    check_embed("embed", be, 1);
    check_embed("embed-mean", be, 0);
    check_rerank(be);
    check_errors(be);
    kn_backend_free(be);
    rm_rf(tmpdir);
    free(srcdir);
    free(mkmodel);
    return tap_done();
}
