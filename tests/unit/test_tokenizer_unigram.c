/*
 * test_tokenizer_unigram.c -- worker/tokenizer's SentencePiece Unigram path
 * (XLM-R's tokenizer.json, as bge-m3 and bge-reranker-v2-m3 use it) against
 * the goldens Hugging Face tokenizers recorded
 * (tests/golden/tokenizer_xlmr/xlmr.jsonl, made by
 * tests/golden/make_unigram_golden.py): ids identical with add_special_tokens
 * both ways, pair encodings identical, decodes identical with
 * skip_special_tokens both ways, the incremental detokenizer equal to the full
 * decode. Plus accessors, load time and encode speed (diag), invalid input.
 * An optional argument names another golden file (differential fuzzing).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "tap.h"
#include "tokenizer.h"
#include "util.h"

#define MAX_DIAG 10

static char *find_file(const char *rel)
{
    const char *roots[] = { getenv("LLMUX_SRCDIR"), "..", ".", "../.." };
    struct stat st;
    for (size_t i = 0; i < ARRAY_SIZE(roots); i++) {
        if (!roots[i])
            continue;
        char *p = xasprintf("%s/%s", roots[i], rel);
        if (stat(p, &st) == 0)
            return p;
        free(p);
    }
    return NULL;
}

enum kind { K_ENCODE, K_PAIR, K_DECODE };

struct golden {
    enum kind kind;
    char *a, *b;
    size_t alen, blen;
    int32_t *ids, *ids_special;
    size_t n_ids, n_ids_special;
    char *dec, *dec_skip;
    size_t dec_len, dec_skip_len;
};

static void ids_of(json_t *arr, int32_t **ids, size_t *n)
{
    *n = json_array_size(arr);
    *ids = xcalloc(*n ? *n : 1, sizeof(int32_t));
    for (size_t i = 0; i < *n; i++)
        (*ids)[i] = (int32_t)json_integer_value(json_array_get(arr, i));
}

static char *str_of(json_t *s, size_t *len)
{
    *len = json_string_length(s);
    char *r = xmalloc(*len + 1);
    memcpy(r, json_is_string(s) ? json_string_value(s) : "", *len);
    r[*len] = '\0';
    return r;
}

static struct golden *load_goldens(const char *path, size_t *n, char *version, size_t vlen)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0, gcap = 0;
    struct golden *g = NULL;
    *n = 0;
    if (!f)
        return NULL;
    while (getline(&line, &cap, f) > 0) {
        json_error_t jerr;
        json_t *j = json_loads(line, JSON_ALLOW_NUL, &jerr);
        if (!j)
            continue;
        const char *kind = json_string_value(json_object_get(j, "kind"));
        if (kind && strcmp(kind, "meta") == 0) {
            snprintf(version, vlen, "%s %s", json_string_value(json_object_get(j, "library")),
                     json_string_value(json_object_get(j, "version")));
        } else if (kind) {
            xgrow((void **)&g, &gcap, *n + 1, sizeof(*g));
            struct golden *c = &g[(*n)++];
            memset(c, 0, sizeof(*c));
            c->kind = strcmp(kind, "encode") == 0 ? K_ENCODE
                    : strcmp(kind, "pair") == 0 ? K_PAIR : K_DECODE;
            ids_of(json_object_get(j, "ids"), &c->ids, &c->n_ids);
            ids_of(json_object_get(j, "ids_special"), &c->ids_special, &c->n_ids_special);
            if (c->kind == K_ENCODE)
                c->a = str_of(json_object_get(j, "text"), &c->alen);
            if (c->kind == K_PAIR) {
                c->a = str_of(json_object_get(j, "a"), &c->alen);
                c->b = str_of(json_object_get(j, "b"), &c->blen);
            }
            if (c->kind != K_PAIR) {
                c->dec = str_of(json_object_get(j, "decode"), &c->dec_len);
                c->dec_skip = str_of(json_object_get(j, "decode_skip"), &c->dec_skip_len);
            }
        }
        json_decref(j);
    }
    free(line);
    fclose(f);
    return g;
}

static void free_goldens(struct golden *g, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(g[i].a);
        free(g[i].b);
        free(g[i].ids);
        free(g[i].ids_special);
        free(g[i].dec);
        free(g[i].dec_skip);
    }
    free(g);
}

static void diag_ids(const char *what, const int32_t *ids, size_t n)
{
    char buf[512];
    size_t o = 0;
    for (size_t i = 0; i < n && o + 16 < sizeof(buf); i++)
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%d ", (int)ids[i]);
    buf[o] = '\0';
    diag("  %s: [%s] (%zu)", what, buf, n);
}

static int ids_equal(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof(int32_t)) == 0);
}

/* encode (or pair-encode) every golden both ways; returns mismatches */
static int check_encode(const struct tokenizer *tok, struct golden *g, size_t n, enum kind kind)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (g[i].kind != kind)
            continue;
        for (int sp = 0; sp < 2; sp++) {
            int32_t *ids = NULL;
            size_t nid = 0;
            char err[128];
            const int32_t *want = sp ? g[i].ids_special : g[i].ids;
            size_t nwant = sp ? g[i].n_ids_special : g[i].n_ids;
            int rc = kind == K_PAIR
                   ? tokenizer_encode_pair(tok, g[i].a, g[i].alen, g[i].b, g[i].blen, sp, &ids,
                                           &nid, err, sizeof(err))
                   : tokenizer_encode(tok, g[i].a, g[i].alen, sp, &ids, &nid, err, sizeof(err));
            if (rc != 0 || !ids_equal(ids, nid, want, nwant)) {
                if (bad++ < MAX_DIAG) {
                    diag("%s mismatch (add_special %d) case %zu: \"%.60s\"%s%.60s%s",
                         kind == K_PAIR ? "pair" : "encode", sp, i, g[i].a,
                         g[i].b ? " / \"" : "", g[i].b ? g[i].b : "", g[i].b ? "\"" : "");
                    diag_ids("want", want, nwant);
                    diag_ids("got ", ids, nid);
                }
            }
            free(ids);
        }
    }
    return bad;
}

/* decode of encode goldens' ids_special and of the decode goldens' ids */
static int check_decode(const struct tokenizer *tok, struct golden *g, size_t n, enum kind kind)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (g[i].kind != kind)
            continue;
        const int32_t *ids = kind == K_ENCODE ? g[i].ids_special : g[i].ids;
        size_t nid = kind == K_ENCODE ? g[i].n_ids_special : g[i].n_ids;
        for (int skip = 0; skip < 2; skip++) {
            char *out = NULL, err[128];
            size_t len = 0;
            const char *want = skip ? g[i].dec_skip : g[i].dec;
            size_t wlen = skip ? g[i].dec_skip_len : g[i].dec_len;
            int rc = tokenizer_decode(tok, ids, nid, skip, &out, &len, err, sizeof(err));
            if (rc != 0 || len != wlen || memcmp(out, want, len) != 0 || out[len] != '\0') {
                if (bad++ < MAX_DIAG) {
                    diag("decode mismatch (skip %d) case %zu: rc %d", skip, i, rc);
                    diag("  want \"%.80s\"", want);
                    diag("  got  \"%.80s\"", out ? out : "(null)");
                }
            }
            free(out);
        }
    }
    return bad;
}

/* the stream of every decode golden equals its full decode */
static int check_detok(const struct tokenizer *tok, struct golden *g, size_t n)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (g[i].kind == K_PAIR)
            continue;
        const int32_t *ids = g[i].kind == K_ENCODE ? g[i].ids_special : g[i].ids;
        size_t nid = g[i].kind == K_ENCODE ? g[i].n_ids_special : g[i].n_ids;
        for (int skip = 0; skip < 2; skip++) {
            struct detok d;
            char *out = NULL;
            size_t len = 0, cap = 0;
            int ok_all = 1;
            detok_init(&d, tok, skip);
            for (size_t k = 0; k < nid; k++) {
                size_t before = len;
                long r = detok_push(&d, ids[k], &out, &len, &cap);
                if (r < 0 || (size_t)r != len - before)
                    ok_all = 0;
            }
            size_t before = len;
            long r = detok_finish(&d, &out, &len, &cap);
            if (r < 0 || (size_t)r != len - before)
                ok_all = 0;
            const char *want = skip ? g[i].dec_skip : g[i].dec;
            size_t wlen = skip ? g[i].dec_skip_len : g[i].dec_len;
            if (!ok_all || len != wlen || (len && memcmp(out, want, len) != 0)) {
                if (bad++ < MAX_DIAG)
                    diag("detok mismatch (skip %d) case %zu: \"%.60s\" vs \"%.60s\"", skip, i,
                         out ? out : "", want);
            }
            free(out);
        }
    }
    return bad;
}

static void check_api(const struct tokenizer *tok)
{
    const char *b;
    size_t bl, nid, len;
    char err[128], *out = NULL;
    int32_t *ids = NULL;

    ok(tokenizer_model_type(tok) == TOKENIZER_UNIGRAM, "model type is Unigram");
    ok(tokenizer_vocab_size(tok) == 250002, "vocab size %d", tokenizer_vocab_size(tok));
    ok(tokenizer_bos_id(tok) == 0 && strcmp(tokenizer_bos_token(tok), "<s>") == 0 &&
       tokenizer_eos_id(tok) == 2 && strcmp(tokenizer_eos_token(tok), "</s>") == 0 &&
       tokenizer_pad_id(tok) == 1, "bos <s> 0, eos </s> 2, pad <pad> 1 (tokenizer_config.json)");
    ok(tokenizer_token_to_id(tok, "<mask>") == 250001 && tokenizer_token_to_id(tok, "<unk>") == 3,
       "token_to_id of special tokens");
    int32_t hello = tokenizer_token_to_id(tok, "\xe2\x96\x81Hello");
    ok(hello == 35378 && strcmp(tokenizer_id_to_token(tok, hello), "\xe2\x96\x81Hello") == 0,
       "token_to_id / id_to_token of \"\xe2\x96\x81Hello\"");
    ok(tokenizer_token_bytes(tok, hello, &b, &bl) == 0 && bl == 6 && memcmp(b, " Hello", 6) == 0,
       "token_bytes turns \xe2\x96\x81 into a space");
    ok(tokenizer_is_special(tok, 0) && tokenizer_is_special(tok, 250001) &&
       !tokenizer_is_special(tok, hello), "is_special");
    ok(tokenizer_id_to_token(tok, 250002) == NULL && tokenizer_id_to_token(tok, -1) == NULL,
       "unknown ids");
    int32_t bad_ids[] = { 6, 250002 };
    ok(tokenizer_decode(tok, bad_ids, 2, 0, &out, &len, err, sizeof(err)) == -1 && !out,
       "decode rejects an unknown id");
    ok(tokenizer_encode(tok, "ok\xff", 3, 1, &ids, &nid, err, sizeof(err)) == -1 && !ids &&
       strstr(err, "UTF-8"), "invalid UTF-8 rejected: %s", err);
    ok(tokenizer_encode_pair(tok, "ok", 2, "\xc3(", 2, 1, &ids, &nid, err, sizeof(err)) == -1 &&
       !ids && strstr(err, "second"), "invalid UTF-8 in the second text rejected: %s", err);
    ok(tokenizer_encode(tok, "", 0, 1, &ids, &nid, err, sizeof(err)) == 0 && nid == 2 &&
       ids[0] == 0 && ids[1] == 2, "empty text gives <s> </s>");
    free(ids);
    /* an unknown character is <unk>, a run of them one <unk> */
    ok(tokenizer_encode(tok, "\xf0\x9f\xab\xa0\xf0\x9f\xab\xa0", 8, 0, &ids, &nid, err,
                        sizeof(err)) == 0 && nid == 2 && ids[1] == 3,
       "a run of unknown characters is one <unk> (%zu ids)", nid);
    free(ids);
}

/* long inputs: round trip and encode speed on a mixed text */
static void check_speed(const struct tokenizer *tok)
{
    static const char *const unit[] = {
        "The quick brown fox jumps over the lazy dog. ", "Größe Übel naïve café. ",
        "大熊猫是中国特有的熊科动物。", "Здравствуйте, меня зовут Иван. ", "नमस्ते दुनिया! ",
        "العربية جميلة ", "def f(x):\n    return x + 1\n", "😀 ok ",
    };
    size_t total = 0, cap = 0;
    char *text = NULL;
    for (size_t k = 0; total < (1u << 20); k++) {
        const char *u = unit[(k * 7 + k / 3) % ARRAY_SIZE(unit)];
        size_t ul = strlen(u);
        xgrow((void **)&text, &cap, total + ul + 1, 1);
        memcpy(text + total, u, ul);
        total += ul;
    }
    text[total] = '\0';
    int32_t *ids = NULL;
    size_t nid = 0, olen = 0;
    char err[128], *out = NULL;
    int64_t t0 = now_us();
    int rc = tokenizer_encode(tok, text, total, 0, &ids, &nid, err, sizeof(err));
    int64_t t1 = now_us();
    double mbs = (double)total / 1e6 / ((double)(t1 - t0) / 1e6);
    ok(rc == 0 && nid > total / 16, "encode 1 MiB of mixed text: %zu ids, %.1f MB/s", nid, mbs);
    diag("encode speed: %.2f MB/s (%zu bytes in %.1f ms)", mbs, total, (t1 - t0) / 1000.0);
    rc = tokenizer_decode(tok, ids, nid, 0, &out, &olen, err, sizeof(err));
    ok(rc == 0 && olen > total / 2, "decode of it (%zu bytes)", olen);
    free(ids);
    free(out);
    free(text);
}

int main(int argc, char **argv)
{
    char *dir = find_file("examples/models/tokenizers/xlmr");
    char *gpath = argc > 1 ? xstrdup(argv[1]) : find_file("tests/golden/tokenizer_xlmr/xlmr.jsonl");
    char err[256] = "", version[64] = "?";
    size_t n = 0;

    if (!dir || !gpath)
        tap_skip_all("XLM-R tokenizer or golden files not found (set LLMUX_SRCDIR)");
    int64_t t0 = now_us();
    struct tokenizer *tok = tokenizer_load(dir, err, sizeof(err));
    int64_t t1 = now_us();
    ok(tok != NULL, "load the XLM-R tokenizer folder (%.0f ms) %s", (t1 - t0) / 1000.0, err);
    diag("load time: %.0f ms", (t1 - t0) / 1000.0);
    if (!tok)
        goto done;
    struct golden *g = load_goldens(gpath, &n, version, sizeof(version));
    size_t cnt[3] = { 0, 0, 0 };
    for (size_t i = 0; i < n; i++)
        cnt[g[i].kind]++;
    ok(cnt[K_ENCODE] >= (argc > 1 ? 1u : 300u) && (argc > 1 || cnt[K_PAIR] >= 50),
       "%s: %zu encode, %zu pair, %zu decode cases (%s)", gpath, cnt[K_ENCODE], cnt[K_PAIR],
       cnt[K_DECODE], version);
    int e = check_encode(tok, g, n, K_ENCODE);
    ok(e == 0, "encode ids identical to %s, both add_special_tokens (%d mismatches)", version, e);
    e = check_encode(tok, g, n, K_PAIR);
    ok(e == 0, "pair encode ids identical, both add_special_tokens (%d mismatches)", e);
    e = check_decode(tok, g, n, K_ENCODE);
    ok(e == 0, "decode of the encodes identical, both skip_special_tokens (%d)", e);
    e = check_decode(tok, g, n, K_DECODE);
    ok(e == 0, "decode of random id sequences identical (%d)", e);
    e = check_detok(tok, g, n);
    ok(e == 0, "detok pushes + finish == full decode (%d)", e);
    free_goldens(g, n);
    if (argc <= 1) {
        check_api(tok);
        check_speed(tok);
    }
    tokenizer_free(tok);

    if (argc <= 1) {
        /* the BPE path's pair: no pair template in Qwen3's post-processor */
        char *qdir = find_file("examples/models/tokenizers/qwen3");
        struct tokenizer *q = qdir ? tokenizer_load(qdir, err, sizeof(err)) : NULL;
        int32_t *a = NULL, *b = NULL, *p = NULL;
        size_t na = 0, nb = 0, np = 0;
        int good = q && tokenizer_encode(q, "Hello", 5, 1, &a, &na, err, sizeof(err)) == 0 &&
                   tokenizer_encode(q, " world", 6, 1, &b, &nb, err, sizeof(err)) == 0 &&
                   tokenizer_encode_pair(q, "Hello", 5, " world", 6, 1, &p, &np, err,
                                         sizeof(err)) == 0 &&
                   np == na + nb && memcmp(p, a, na * 4) == 0 && memcmp(p + na, b, nb * 4) == 0;
        ok(good, "BPE (Qwen3) pair encode is A then B");
        ok(q && tokenizer_model_type(q) == TOKENIZER_BPE, "Qwen3 model type is BPE");
        free(a);
        free(b);
        free(p);
        tokenizer_free(q);
        free(qdir);
    }
done:
    free(dir);
    free(gpath);
    return tap_done();
}
