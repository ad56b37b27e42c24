/*
 * test_tokenizer.c -- worker/tokenizer against the goldens that Hugging Face
 * tokenizers recorded (tests/golden/tokenizer/qwen3.jsonl, made by
 * tests/golden/make_tokenizer_golden.py): ids identical for every string with
 * add_special_tokens both ways, decodes identical with skip_special_tokens
 * both ways, and the incremental detokenizer equal to the full decode without
 * ever emitting half a character. Plus accessors, unknown ids, invalid input.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "tap.h"
#include "tokenizer.h"
#include "util.h"

#define MAX_DIAG 8

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

static int utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i], lo = 0x80, hi = 0xbf;
        size_t w;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            w = 2;
        else if (c >= 0xe0 && c <= 0xef) {
            w = 3;
            lo = c == 0xe0 ? 0xa0 : 0x80;
            hi = c == 0xed ? 0x9f : 0xbf;
        } else if (c >= 0xf0 && c <= 0xf4) {
            w = 4;
            lo = c == 0xf0 ? 0x90 : 0x80;
            hi = c == 0xf4 ? 0x8f : 0xbf;
        } else
            return 0;
        if (i + w > len || p[i + 1] < lo || p[i + 1] > hi)
            return 0;
        for (size_t k = 2; k < w; k++)
            if ((p[i + k] & 0xc0) != 0x80)
                return 0;
        i += w;
    }
    return 1;
}

struct golden {
    int is_encode;
    char *text;
    size_t text_len;
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
    memcpy(r, json_string_value(s), *len);
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
            c->is_encode = strcmp(kind, "encode") == 0;
            ids_of(json_object_get(j, "ids"), &c->ids, &c->n_ids);
            if (c->is_encode) {
                c->text = str_of(json_object_get(j, "text"), &c->text_len);
                ids_of(json_object_get(j, "ids_special"), &c->ids_special, &c->n_ids_special);
            }
            c->dec = str_of(json_object_get(j, "decode"), &c->dec_len);
            c->dec_skip = str_of(json_object_get(j, "decode_skip"), &c->dec_skip_len);
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
        free(g[i].text);
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

/* encode every golden string both ways; returns the number of mismatches */
static int check_encode(const struct tokenizer *tok, struct golden *g, size_t n, int pass)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (!g[i].is_encode)
            continue;
        for (int sp = 0; sp < 2; sp++) {
            int32_t *ids = NULL;
            size_t nid = 0;
            char err[128];
            const int32_t *want = sp ? g[i].ids_special : g[i].ids;
            size_t nwant = sp ? g[i].n_ids_special : g[i].n_ids;
            int rc = tokenizer_encode(tok, g[i].text, g[i].text_len, sp, &ids, &nid, err,
                                      sizeof(err));
            if (rc != 0 || !ids_equal(ids, nid, want, nwant)) {
                if (bad++ < MAX_DIAG) {
                    diag("pass %d encode mismatch (add_special %d) case %zu: \"%.60s\"", pass, sp,
                         i, g[i].text);
                    diag_ids("want", want, nwant);
                    diag_ids("got ", ids, nid);
                }
            }
            free(ids);
        }
    }
    return bad;
}

static int check_decode(const struct tokenizer *tok, struct golden *g, size_t n, int want_kind)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (g[i].is_encode != want_kind)
            continue;
        for (int skip = 0; skip < 2; skip++) {
            char *out = NULL, err[128];
            size_t len = 0;
            const char *want = skip ? g[i].dec_skip : g[i].dec;
            size_t wlen = skip ? g[i].dec_skip_len : g[i].dec_len;
            int rc = tokenizer_decode(tok, g[i].ids, g[i].n_ids, skip, &out, &len, err,
                                      sizeof(err));
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

/* stream every golden's ids; returns mismatches, counts half characters */
static int check_detok(const struct tokenizer *tok, struct golden *g, size_t n, int *halves)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        for (int skip = 0; skip < 2; skip++) {
            struct detok d;
            char *out = NULL;
            size_t len = 0, cap = 0;
            int ok_all = 1;
            detok_init(&d, tok, skip);
            for (size_t k = 0; k < g[i].n_ids; k++) {
                size_t before = len;
                long r = detok_push(&d, g[i].ids[k], &out, &len, &cap);
                if (r < 0 || (size_t)r != len - before)
                    ok_all = 0;
                if (!utf8_valid(out + before, len - before))
                    (*halves)++;
            }
            size_t before = len;
            long r = detok_finish(&d, &out, &len, &cap);
            if (r < 0 || (size_t)r != len - before)
                ok_all = 0;
            const char *want = skip ? g[i].dec_skip : g[i].dec;
            size_t wlen = skip ? g[i].dec_skip_len : g[i].dec_len;
            if (!ok_all || len != wlen || (len && memcmp(out, want, len) != 0) ||
                (out && out[len] != '\0')) {
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
    size_t bl;
    char err[128], *out = NULL;
    size_t len;
    int32_t *ids = NULL;
    size_t nid;

    ok(tokenizer_vocab_size(tok) == 151669, "vocab size %d", tokenizer_vocab_size(tok));
    ok(tokenizer_eos_id(tok) == 151645 && strcmp(tokenizer_eos_token(tok), "<|im_end|>") == 0,
       "eos is <|im_end|> (tokenizer_config.json)");
    ok(tokenizer_pad_id(tok) == 151643, "pad is <|endoftext|>");
    ok(tokenizer_bos_id(tok) == -1 && strcmp(tokenizer_bos_token(tok), "") == 0 &&
       !tokenizer_add_bos_token(tok), "no bos");
    ok(tokenizer_token_to_id(tok, "<|im_start|>") == 151644, "token_to_id of a special token");
    ok(tokenizer_token_to_id(tok, "<think>") == 151667, "token_to_id of an added token");
    ok(tokenizer_token_to_id(tok, "Hello") == 9707, "token_to_id of a vocab token");
    ok(tokenizer_token_to_id(tok, "no such token here") == -1, "token_to_id unknown");
    int32_t sp_id = tokenizer_token_to_id(tok, "Ġhello");
    ok(sp_id >= 0 && strcmp(tokenizer_id_to_token(tok, sp_id), "Ġhello") == 0,
       "id_to_token gives the byte-level form");
    ok(tokenizer_token_bytes(tok, sp_id, &b, &bl) == 0 && bl == 6 && memcmp(b, " hello", 6) == 0,
       "token_bytes undoes the byte-level mapping");
    ok(tokenizer_token_bytes(tok, 151645, &b, &bl) == 0 && bl == 10 &&
       memcmp(b, "<|im_end|>", 10) == 0, "token_bytes of a special token is its content");
    int32_t nl = tokenizer_token_to_id(tok, "Ċ");
    ok(tokenizer_token_bytes(tok, nl, &b, &bl) == 0 && bl == 1 && b[0] == '\n',
       "token_bytes of Ċ is a newline");
    ok(tokenizer_is_special(tok, 151643) && !tokenizer_is_special(tok, 151667) &&
       !tokenizer_is_special(tok, 9707) && !tokenizer_is_special(tok, -1) &&
       !tokenizer_is_special(tok, 1 << 30), "is_special");

    /* unknown ids */
    ok(tokenizer_id_to_token(tok, -1) == NULL && tokenizer_id_to_token(tok, 151669) == NULL &&
       tokenizer_id_to_token(tok, 1 << 30) == NULL, "id_to_token of unknown ids is NULL");
    ok(tokenizer_token_bytes(tok, 151669, &b, &bl) == -1 &&
       tokenizer_token_bytes(tok, -5, &b, &bl) == -1, "token_bytes of unknown ids fails");
    int32_t bad_ids[] = { 9707, 151669 };
    err[0] = '\0';
    ok(tokenizer_decode(tok, bad_ids, 2, 0, &out, &len, err, sizeof(err)) == -1 && !out &&
       strstr(err, "151669"), "decode rejects an unknown id: %s", err);
    int32_t neg[] = { -1 };
    ok(tokenizer_decode(tok, neg, 1, 1, &out, &len, err, sizeof(err)) == -1,
       "decode rejects a negative id");
    struct detok d;
    char *s = NULL;
    size_t sl = 0, sc = 0;
    detok_init(&d, tok, 0);
    ok(detok_push(&d, 151669, &s, &sl, &sc) == -1 && detok_push(&d, -3, &s, &sl, &sc) == -1,
       "detok_push rejects unknown ids");
    free(s);

    /* invalid UTF-8 input */
    static const struct { const char *s; size_t n; } inv[] = {
        { "\xff", 1 }, { "ab\xc0\x80", 4 }, { "\xed\xa0\x80", 3 }, { "x\xe4\xb8", 3 },
        { "\xf4\x90\x80\x80", 4 }, { "\x80", 1 }, { "ok\xf0\x9f\x98", 5 }, { "\xc3(", 2 },
    };
    int rejected = 0;
    for (size_t i = 0; i < ARRAY_SIZE(inv); i++) {
        ids = NULL;
        err[0] = '\0';
        if (tokenizer_encode(tok, inv[i].s, inv[i].n, 0, &ids, &nid, err, sizeof(err)) == -1 &&
            ids == NULL && strstr(err, "UTF-8"))
            rejected++;
        free(ids);
    }
    ok(rejected == (int)ARRAY_SIZE(inv), "invalid UTF-8 input rejected (%d of %zu)", rejected,
       ARRAY_SIZE(inv));
    ok(tokenizer_encode(tok, "", 0, 1, &ids, &nid, err, sizeof(err)) == 0 && nid == 0 && ids,
       "empty input gives no ids");
    free(ids);

    /* a stream split in the middle of characters never shows half of one */
    detok_init(&d, tok, 1);
    s = NULL;
    sl = sc = 0;
    int32_t bytes_ids[16];
    size_t nb = 0;
    /* the one-byte tokens of the four bytes of U+1F600 */
    for (const unsigned char *p = (const unsigned char *)"\xf0\x9f\x98\x80"; *p; p++)
        for (int32_t id = 0; id < 512; id++)
            if (tokenizer_token_bytes(tok, id, &b, &bl) == 0 && bl == 1 &&
                (unsigned char)b[0] == *p) {
                bytes_ids[nb++] = id;
                break;
            }
    long r1 = detok_push(&d, bytes_ids[0], &s, &sl, &sc);
    long r2 = detok_push(&d, bytes_ids[1], &s, &sl, &sc);
    long r3 = detok_push(&d, bytes_ids[2], &s, &sl, &sc);
    long r4 = detok_push(&d, bytes_ids[3], &s, &sl, &sc);
    ok(nb == 4 && r1 == 0 && r2 == 0 && r3 == 0 && r4 == 4 && strcmp(s, "😀") == 0,
       "byte tokens of one emoji: nothing until the last byte");
    r1 = detok_push(&d, bytes_ids[0], &s, &sl, &sc);
    r2 = detok_finish(&d, &s, &sl, &sc);
    ok(r1 == 0 && r2 == 3 && strcmp(s, "😀\xef\xbf\xbd") == 0,
       "finish turns an unfinished character into U+FFFD");
    free(s);
}

/* all golden checks of one tokenizer; returns it (caller frees) or NULL */
static struct tokenizer *run_goldens(const char *dir_rel, const char *golden_rel, int need_decode)
{
    char *dir = find_file(dir_rel);
    char *gpath = find_file(golden_rel);
    char err[256] = "";
    char version[64] = "?";
    size_t n = 0;
    struct tokenizer *tok = NULL;

    if (!dir || !gpath)
        tap_skip_all("tokenizer or golden files not found (set LLMUX_SRCDIR)");
    int64_t t0 = now_us();
    tok = tokenizer_load(dir, err, sizeof(err));
    int64_t t1 = now_us();
    ok(tok != NULL, "load %s (%.0f ms) %s", dir_rel, (t1 - t0) / 1000.0, err);
    if (!tok)
        goto done;
    struct golden *g = load_goldens(gpath, &n, version, sizeof(version));
    size_t n_enc = 0, n_dec = 0;
    for (size_t i = 0; i < n; i++)
        g[i].is_encode ? n_enc++ : n_dec++;
    ok(n_enc >= (need_decode ? 300u : 100u) && (!need_decode || n_dec > 0),
       "%s: %zu encode, %zu decode cases (%s)", golden_rel, n_enc, n_dec, version);

    int e1 = check_encode(tok, g, n, 1);
    ok(e1 == 0, "encode ids identical to %s on all %zu strings, both add_special_tokens "
       "(%d mismatches)", version, n_enc, e1);
    int e2 = check_encode(tok, g, n, 2);
    ok(e2 == 0, "encode again through the word cache (%d mismatches)", e2);
    int d1 = check_decode(tok, g, n, 1);
    ok(d1 == 0, "decode of the encode goldens identical, both skip_special_tokens (%d)", d1);
    if (need_decode) {
        int d2 = check_decode(tok, g, n, 0);
        ok(d2 == 0, "decode of %zu invalid-UTF-8 id sequences identical (%d)", n_dec, d2);
    }
    int halves = 0;
    int dt = check_detok(tok, g, n, &halves);
    ok(dt == 0, "detok pushes + finish == full decode for every golden (%d)", dt);
    ok(halves == 0, "detok never emits half a character (%d)", halves);
    free_goldens(g, n);
done:
    free(dir);
    free(gpath);
    return tok;
}

struct mt_arg {
    const struct tokenizer *tok;
    const char *text;
    size_t len;
    const int32_t *want;
    size_t n_want;
    int bad;
};

static void *mt_encode(void *p)
{
    struct mt_arg *a = p;
    for (int r = 0; r < 30; r++) {
        int32_t *ids;
        size_t n;
        char err[64];
        if (tokenizer_encode(a->tok, a->text, a->len, 0, &ids, &n, err, sizeof(err)) < 0 ||
            n != a->n_want || memcmp(ids, a->want, n * sizeof(int32_t)) != 0)
            a->bad++;
        free(ids);
    }
    return NULL;
}

/* long words and runs: encode then decode gives the text back, quickly */
static void check_long(const struct tokenizer *tok)
{
    static const char *const unit[] = { "a", "中文", " ", "\n", " \t", "😀", "ab1", "e\xcc\x81" };
    int good = 0;
    int64_t t0 = now_us();
    for (size_t u = 0; u < ARRAY_SIZE(unit); u++) {
        size_t ul = strlen(unit[u]), n = 60000 / ul, len = n * ul, nid, out_len;
        char *text = xmalloc(len + 1), *out = NULL, err[64];
        int32_t *ids = NULL;
        for (size_t i = 0; i < n; i++)
            memcpy(text + i * ul, unit[u], ul);
        text[len] = '\0';
        if (tokenizer_encode(tok, text, len, 0, &ids, &nid, err, sizeof(err)) == 0 &&
            tokenizer_decode(tok, ids, nid, 0, &out, &out_len, err, sizeof(err)) == 0) {
            /* NFC composes e + U+0301 */
            if (u == 7)
                good += out_len == n * 2 && strncmp(out, "\xc3\xa9", 2) == 0;
            else
                good += out_len == len && memcmp(out, text, len) == 0;
        }
        free(text);
        free(out);
        free(ids);
    }
    ok(good == (int)ARRAY_SIZE(unit), "60 KB runs of one unit round-trip (%d of %zu, %.0f ms)", good,
       ARRAY_SIZE(unit), (now_us() - t0) / 1000.0);
}

/* one tokenizer shared by threads that encode at once (the word cache) */
static void check_threads(const struct tokenizer *tok)
{
    static const char text[] = "Shared tokenizers must be safe: 你好, мир, 😀 and code { x = 1; } "
                               "repeated words words words and more words.\n";
    int32_t *want;
    size_t n_want;
    char err[64];
    pthread_t th[4];
    struct mt_arg args[4];
    int bad = 0;

    tokenizer_encode(tok, text, strlen(text), 0, &want, &n_want, err, sizeof(err));
    for (int i = 0; i < 4; i++) {
        args[i] = (struct mt_arg){ tok, text, strlen(text), want, n_want, 0 };
        pthread_create(&th[i], NULL, mt_encode, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        bad += args[i].bad;
    }
    ok(bad == 0, "4 threads encoding with one tokenizer agree (%d bad)", bad);
    free(want);
}

int main(void)
{
    char err[256] = "";
    struct tokenizer *tok = run_goldens("examples/models/tokenizers/qwen3",
                                        "tests/golden/tokenizer/qwen3.jsonl", 1);
    if (tok) {
        check_api(tok);
        check_threads(tok);
        check_long(tok);
        tokenizer_free(tok);
    }
    struct tokenizer *bad = tokenizer_load("/nonexistent/tokenizer.json", err, sizeof(err));
    ok(bad == NULL && err[0], "load of a missing file fails: %s", err);

    /* a small tokenizer with what Qwen's does not use: added-token flags,
     * TemplateProcessing, ignore_merges, "a b" merges, a config with objects */
    tok = run_goldens("tests/golden/tokenizer/synth", "tests/golden/tokenizer/synth.jsonl", 0);
    if (tok) {
        ok(tokenizer_bos_id(tok) == 4256 && strcmp(tokenizer_bos_token(tok), "<s>") == 0 &&
           tokenizer_eos_id(tok) == 4257 && tokenizer_pad_id(tok) == -1 &&
           tokenizer_add_bos_token(tok),
           "synth: bos/eos/pad from tokenizer_config.json (object and string forms)");
        tokenizer_free(tok);
    }
    return tap_done();
}
