/*
 * test_encode_req.c -- encoder request parsing (worker/api/encode_req.c)
 * with the real Qwen3 tokenizer (shapes, limits, every 400) and, when the
 * XLM-R tokenizer loads, the pair template and document-side truncation.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/encode_job.h"
#include "api/encode_req.h"
#include "log.h"
#include "tap.h"
#include "tokenizer.h"
#include "util.h"

static struct api_ctx actx;
static struct enc_ctx ctx;

static int parse(enum enc_api api, const char *body, struct enc_request *r, struct api_err *e)
{
    memset(e, 0, sizeof(*e));
    return enc_request_parse(&ctx, api, body, strlen(body), NULL, r, e);
}

/* The body fails with <status> naming <param> (NULL: none). */
static void bad(enum enc_api api, const char *body, int status, const char *param, const char *what)
{
    struct enc_request r;
    struct api_err e;
    int rc = parse(api, body, &r, &e);
    ok(rc < 0 && e.status == status && strcmp(e.param, param ? param : "") == 0,
       "%s -> %d %s (%d %s: %s)", what, status, param ? param : "-", e.status, e.param, e.message);
    enc_request_free(&r);
}

static void test_embed_shapes(void)
{
    struct enc_request r;
    struct api_err e;
    ok(parse(ENC_API_EMBED, "{\"input\":\"hello world\"}", &r, &e) == 0 && r.n_inputs == 1 &&
       r.n_ids[0] >= 2 && r.prompt_tokens == r.n_ids[0] && strcmp(r.model, "tiny") == 0,
       "a string: one input, default model");
    enc_request_free(&r);
    ok(parse(ENC_API_EMBED, "{\"model\":\"tiny\",\"input\":[\"a\",\"b c\",\"d e f\"]}", &r, &e) == 0 &&
       r.n_inputs == 3 && r.prompt_tokens == r.n_ids[0] + r.n_ids[1] + r.n_ids[2],
       "a list of strings");
    enc_request_free(&r);
    ok(parse(ENC_API_EMBED, "{\"input\":[1,2,3]}", &r, &e) == 0 && r.n_inputs == 1 &&
       r.n_ids[0] == 3 && r.ids[0][2] == 3, "a list of ids is one input, used as given");
    enc_request_free(&r);
    ok(parse(ENC_API_EMBED, "{\"input\":[[1,2],[3],[4,5,6]],\"encoding_format\":\"base64\"}", &r,
             &e) == 0 && r.n_inputs == 3 && r.n_ids[2] == 3 && r.base64, "lists of ids, base64");
    enc_request_free(&r);
    ok(parse(ENC_API_EMBED, "{\"input\":\"x\",\"dimensions\":16,\"user\":\"u\"}", &r, &e) == 0,
       "dimensions equal to the model's are accepted");
    enc_request_free(&r);
    /* truncation */
    char body[4096];
    strcpy(body, "{\"input\":\"");
    for (int i = 0; i < 200; i++)
        strcat(body, "word ");
    strcat(body, "\"");
    char b2[4200];
    snprintf(b2, sizeof(b2), "%s}", body);
    bad(ENC_API_EMBED, b2, 400, "input", "over max_model_len without truncate_prompt_tokens");
    snprintf(b2, sizeof(b2), "%s,\"truncate_prompt_tokens\":-1}", body);
    ok(parse(ENC_API_EMBED, b2, &r, &e) == 0 && r.n_ids[0] == 100,
       "truncate_prompt_tokens -1: max_model_len tokens (%d)", r.n_inputs ? r.n_ids[0] : -1);
    enc_request_free(&r);
    snprintf(b2, sizeof(b2), "%s,\"truncate_prompt_tokens\":7}", body);
    ok(parse(ENC_API_EMBED, b2, &r, &e) == 0 && r.n_ids[0] == 7, "truncate_prompt_tokens 7");
    enc_request_free(&r);
    ok(parse(ENC_API_EMBED, "{\"input\":[1,2,3,4,5],\"truncate_prompt_tokens\":2}", &r, &e) == 0 &&
       r.n_ids[0] == 2 && r.ids[0][0] == 4 && r.ids[0][1] == 5, "token inputs keep their last tokens");
    enc_request_free(&r);
    bad(ENC_API_EMBED, "{\"input\":\"x\",\"truncate_prompt_tokens\":101}", 400,
        "truncate_prompt_tokens", "truncate_prompt_tokens over max_model_len");
    bad(ENC_API_EMBED, "{\"input\":\"x\",\"truncate_prompt_tokens\":0}", 400,
        "truncate_prompt_tokens", "truncate_prompt_tokens 0");
    bad(ENC_API_EMBED, "{\"input\":\"x\",\"truncate_prompt_tokens\":\"5\"}", 400,
        "truncate_prompt_tokens", "truncate_prompt_tokens a string");
}

static void test_embed_errors(void)
{
    bad(ENC_API_EMBED, "{", 400, NULL, "invalid JSON");
    bad(ENC_API_EMBED, "[1]", 400, NULL, "not an object");
    bad(ENC_API_EMBED, "{}", 400, "input", "no input");
    bad(ENC_API_EMBED, "{\"input\":null}", 400, "input", "null input");
    bad(ENC_API_EMBED, "{\"input\":[]}", 400, "input", "empty list");
    bad(ENC_API_EMBED, "{\"input\":\"\"}", 400, "input", "empty string");
    bad(ENC_API_EMBED, "{\"input\":[\"a\",\"\"]}", 400, "input", "an empty string in the list");
    bad(ENC_API_EMBED, "{\"input\":[[1],[]]}", 400, "input", "an empty id list");
    bad(ENC_API_EMBED, "{\"input\":[\"a\",[1]]}", 400, "input", "mixed strings and lists");
    bad(ENC_API_EMBED, "{\"input\":[1,\"a\"]}", 400, "input", "mixed ids and strings");
    bad(ENC_API_EMBED, "{\"input\":42}", 400, "input", "a number");
    bad(ENC_API_EMBED, "{\"input\":{\"a\":1}}", 400, "input", "an object");
    bad(ENC_API_EMBED, "{\"input\":[1.5]}", 400, "input", "a float id");
    bad(ENC_API_EMBED, "{\"input\":[99999999]}", 400, "input", "an id out of vocabulary");
    bad(ENC_API_EMBED, "{\"input\":[-1]}", 400, "input", "a negative id");
    bad(ENC_API_EMBED, "{\"input\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400, "input",
        "more items than max_batch_inputs");
    bad(ENC_API_EMBED, "{\"input\":\"x\",\"dimensions\":8}", 400, "dimensions", "other dimensions");
    bad(ENC_API_EMBED, "{\"input\":\"x\",\"dimensions\":\"16\"}", 400, "dimensions", "dimensions a string");
    bad(ENC_API_EMBED, "{\"input\":\"x\",\"encoding_format\":\"int8\"}", 400, "encoding_format",
        "unknown encoding_format");
    bad(ENC_API_EMBED, "{\"input\":\"x\",\"model\":\"nope\"}", 404, "model", "unknown model");
    bad(ENC_API_EMBED, "{\"input\":\"x\",\"model\":3}", 400, "model", "model a number");
    bad(ENC_API_EMBED, "{\"input\":\"x\",\"user\":3}", 400, "user", "user a number");
    bad(ENC_API_EMBED, "{\"input\":\"x\",\"add_special_tokens\":1}", 400, "add_special_tokens",
        "add_special_tokens a number");
    bad(ENC_API_EMBED, "{\"input\":\"x\",\"input\":\"y\"}", 400, NULL, "duplicate keys");
}

static void test_pool(void)
{
    struct enc_request r;
    struct api_err e;
    ok(parse(ENC_API_POOL, "{\"input\":\"x\"}", &r, &e) == 0 && r.pool == ENC_POOL_EMBED,
       "pooling default task embed");
    enc_request_free(&r);
    ctx.has_sparse = ctx.has_colbert = 1;
    ok(parse(ENC_API_POOL, "{\"input\":\"x\",\"task\":\"colbert\"}", &r, &e) == 0 &&
       r.pool == ENC_POOL_TOKEN_EMBED, "task colbert");
    enc_request_free(&r);
    ok(parse(ENC_API_POOL, "{\"input\":\"x\",\"task\":\"lexical\"}", &r, &e) == 0 &&
       r.pool == ENC_POOL_SPARSE, "task lexical");
    enc_request_free(&r);
    ok(parse(ENC_API_POOL, "{\"input\":[\"x\",\"y\"],\"task\":\"all\"}", &r, &e) == 0 &&
       r.pool == ENC_POOL_ALL && r.n_inputs == 2, "task all");
    enc_request_free(&r);
    bad(ENC_API_POOL, "{\"input\":\"x\",\"task\":\"all\",\"encoding_format\":\"base64\"}", 400,
        "encoding_format", "base64 with sparse weights");
    ctx.has_sparse = ctx.has_colbert = 0;
    bad(ENC_API_POOL, "{\"input\":\"x\",\"task\":\"sparse\"}", 400, "task", "sparse without the head");
    bad(ENC_API_POOL, "{\"input\":\"x\",\"task\":\"token_embed\"}", 400, "task",
        "token_embed without the head");
    bad(ENC_API_POOL, "{\"input\":\"x\",\"task\":\"classify\"}", 400, "task", "unknown task");
    bad(ENC_API_POOL, "{\"input\":[]}", 400, "input", "pooling: empty input");
}

static void test_rerank_score(void)
{
    struct enc_request r;
    struct api_err e;
    ok(parse(ENC_API_RERANK, "{\"query\":\"q\",\"documents\":[\"a b\",{\"text\":\"c\"}],\"top_n\":1,"
             "\"return_documents\":false}", &r, &e) == 0 && r.n_inputs == 2 && r.n_docs == 2 &&
       strcmp(r.docs[1], "c") == 0 && r.top_n == 1 && !r.return_documents,
       "rerank: strings and {text} documents, top_n, return_documents");
    enc_request_free(&r);
    ok(parse(ENC_API_RERANK, "{\"query\":\"q\",\"documents\":[\"a\"],\"top_n\":9}", &r, &e) == 0 &&
       r.top_n == 1 && r.return_documents, "top_n above the count is the count; documents returned by default");
    enc_request_free(&r);
    bad(ENC_API_RERANK, "{\"documents\":[\"a\"]}", 400, "query", "rerank without query");
    bad(ENC_API_RERANK, "{\"query\":\"\",\"documents\":[\"a\"]}", 400, "query", "empty query");
    bad(ENC_API_RERANK, "{\"query\":\"q\"}", 400, "documents", "no documents");
    bad(ENC_API_RERANK, "{\"query\":\"q\",\"documents\":[]}", 400, "documents", "empty documents");
    bad(ENC_API_RERANK, "{\"query\":\"q\",\"documents\":[\"\"]}", 400, "documents", "an empty document");
    bad(ENC_API_RERANK, "{\"query\":\"q\",\"documents\":[3]}", 400, "documents", "a number document");
    bad(ENC_API_RERANK, "{\"query\":\"q\",\"documents\":[{\"txt\":\"a\"}]}", 400, "documents",
        "an object without text");
    bad(ENC_API_RERANK, "{\"query\":\"q\",\"documents\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400,
        "documents", "more documents than max_batch_inputs");
    bad(ENC_API_RERANK, "{\"query\":\"q\",\"documents\":[\"a\"],\"top_n\":-1}", 400, "top_n", "top_n < 0");
    bad(ENC_API_RERANK, "{\"query\":\"q\",\"documents\":[\"a\"],\"return_documents\":1}", 400,
        "return_documents", "return_documents a number");
    ok(parse(ENC_API_SCORE, "{\"text_1\":\"q\",\"text_2\":\"d\"}", &r, &e) == 0 && r.n_inputs == 1,
       "score 1:1");
    enc_request_free(&r);
    ok(parse(ENC_API_SCORE, "{\"text_1\":\"q\",\"text_2\":[\"a\",\"b\",\"c\"]}", &r, &e) == 0 &&
       r.n_inputs == 3, "score 1:N");
    enc_request_free(&r);
    ok(parse(ENC_API_SCORE, "{\"text_1\":[\"q\"],\"text_2\":[\"a\",\"b\"]}", &r, &e) == 0 &&
       r.n_inputs == 2, "score [1]:N");
    enc_request_free(&r);
    ok(parse(ENC_API_SCORE, "{\"text_1\":[\"q\",\"r\"],\"text_2\":[\"a\",\"b\"]}", &r, &e) == 0 &&
       r.n_inputs == 2, "score N:N");
    enc_request_free(&r);
    bad(ENC_API_SCORE, "{\"text_1\":[\"q\",\"r\"],\"text_2\":[\"a\",\"b\",\"c\"]}", 400, "text_1",
        "score N:M");
    bad(ENC_API_SCORE, "{\"text_1\":[],\"text_2\":\"a\"}", 400, "text_1", "score empty text_1");
    bad(ENC_API_SCORE, "{\"text_1\":\"q\"}", 400, "text_2", "score without text_2");
    bad(ENC_API_SCORE, "{\"text_1\":\"q\",\"text_2\":[1]}", 400, "text_2", "score number in text_2");
    bad(ENC_API_SCORE, "{\"text_1\":5,\"text_2\":\"a\"}", 400, "text_1", "score text_1 a number");
}

static void test_pairs_xlmr(const char *src)
{
    char dir[4096], e[256];
    snprintf(dir, sizeof(dir), "%s/examples/models/tokenizers/xlmr", src);
    struct tokenizer *x = tokenizer_load(dir, e, sizeof(e));
    if (x == NULL) {
        diag("XLM-R tokenizer does not load here (%s): pair checks skipped", e);
        ok(1, "# SKIP no XLM-R tokenizer");
        return;
    }
    int32_t bos = tokenizer_bos_id(x), eos = tokenizer_eos_id(x);
    int32_t a[] = { bos, 100, 101, eos }, b[] = { bos, 200, 201, 202, eos }, *p;
    int n;
    ok(enc_pair_ids(x, a, 4, b, 5, 100, &p, &n) == 0 && n == 9 && p[0] == bos && p[3] == eos &&
       p[4] == eos && p[5] == 200 && p[7] == 202 && p[8] == eos,
       "pair: <s> A </s></s> B </s>");
    free(p);
    ok(enc_pair_ids(x, a, 4, b, 5, 7, &p, &n) == 0 && n == 7 && p[5] == 200 && p[6] == eos,
       "pair truncated on B's side, </s> kept");
    free(p);
    ok(enc_pair_ids(x, a, 4, b, 5, 5, &p, &n) < 0, "A alone over the limit: -1");
    /* against the tokenizer's own pair encoding, when it has one */
    const struct api_ctx *saved = ctx.api;
    struct api_ctx xa = actx;
    xa.tok = x;
    ctx.api = &xa;
    struct enc_request r;
    struct api_err er;
    ok(parse(ENC_API_SCORE, "{\"text_1\":\"what is panda?\",\"text_2\":\"The giant panda is a bear.\"}",
             &r, &er) == 0 && r.n_inputs == 1 && r.ids[0][0] == bos, "score on XLM-R: a pair");
    if (r.n_inputs == 1) {
        int k = 0;
        for (int i = 0; i < r.n_ids[0]; i++)
            k += r.ids[0][i] == eos;
        ok(k == 3 && r.ids[0][r.n_ids[0] - 1] == eos, "three </s> in the pair");
    }
    enc_request_free(&r);
    char words[1024] = "", body[2048];
    for (int i = 0; i < 150; i++)
        strcat(words, "word ");
    snprintf(body, sizeof(body), "{\"query\":\"q\",\"documents\":[\"%s\"]}", words);
    ok(parse(ENC_API_RERANK, body, &r, &er) < 0 && er.status == 400 &&
       strcmp(er.param, "documents") == 0,
       "an over-long pair without truncate_prompt_tokens: 400 documents (%s)", er.message);
    enc_request_free(&r);
    snprintf(body, sizeof(body), "{\"query\":\"q\",\"documents\":[\"%s\"],"
             "\"truncate_prompt_tokens\":-1}", words);
    ok(parse(ENC_API_RERANK, body, &r, &er) == 0 && r.n_ids[0] == 100 && r.ids[0][99] == eos,
       "truncate_prompt_tokens -1: the pair cut to max_model_len, </s> last");
    enc_request_free(&r);
    ctx.api = saved;
    tokenizer_free(x);
}

/* enc_fmt_float writes what jansson writes for json_real((double)f). */
static void test_fmt_float(void)
{
    static const float special[] = { 0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 100.0f, 1e16f, 1e17f,
                                     1e20f, 123456789.0f, 0.1f, 1e-4f, 1e-5f, 9.99999e-5f,
                                     3.4028235e38f, 1.17549435e-38f, 1e-45f, 2.5f, 0.125f,
                                     16777216.0f, 1e-11f, 1e-12f, 0.0001f, 99999.99f };
    int bad = 0, n = 0;
    char mine[64];
    uint64_t st = 88172645463325252ULL;
    for (int i = 0; i < 400000 + (int)(sizeof(special) / sizeof(special[0])); i++) {
        float f;
        if (i < (int)(sizeof(special) / sizeof(special[0]))) {
            f = special[i];
        } else {
            st ^= st << 13;
            st ^= st >> 7;
            st ^= st << 17;
            uint32_t bits = (uint32_t)st;
            if (i % 4 != 0)     /* mostly embedding-like magnitudes */
                bits = (bits & 0x807fffffu) | ((uint32_t)(100 + (st >> 40) % 40) << 23);
            memcpy(&f, &bits, sizeof(f));
            if (!isfinite(f))
                continue;
        }
        json_t *j = json_real((double)f);
        char *ref = json_dumps(j, JSON_ENCODE_ANY);
        enc_fmt_float(f, mine);
        if (strcmp(ref, mine) != 0 && bad++ < 5)
            diag("%.9g: jansson %s, mine %s", (double)f, ref, mine);
        n++;
        free(ref);
        json_decref(j);
    }
    ok(bad == 0, "enc_fmt_float = jansson on %d floats (%d differ)", n, bad);
    struct strbuf b = { 0 };
    float v[] = { 1.0f, -0.25f, NAN };
    enc_append_floats(&b, v, 3);
    ok(strcmp(strbuf_str(&b), "[1.0,-0.25,0.0]") == 0, "enc_append_floats: %s", strbuf_str(&b));
    strbuf_free(&b);
}

int main(void)
{
    char dir[4096], e[256];
    static char *names[] = { "tiny", "alias" };
    const char *src = getenv("LLMUX_SRCDIR");
    if (src == NULL)
        src = "..";
    snprintf(dir, sizeof(dir), "%s/examples/models/tokenizers/qwen3", src);
    log_init("test");
    log_set_level(LOG_ERR);
    actx.tok = tokenizer_load(dir, e, sizeof(e));
    if (actx.tok == NULL)
        tap_skip_all("no Qwen3 tokenizer (set LLMUX_SRCDIR)");
    actx.max_model_len = 100;
    actx.served_names = names;
    actx.n_served = 2;
    ctx.api = &actx;
    ctx.hidden = 16;
    ctx.max_batch_inputs = 4;
    test_embed_shapes();
    test_embed_errors();
    test_pool();
    test_rerank_score();
    test_pairs_xlmr(src);
    test_fmt_float();
    tokenizer_free((struct tokenizer *)actx.tok);
    return tap_done();
}
