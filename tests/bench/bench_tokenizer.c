/*
 * bench_tokenizer.c -- encode/decode speed of worker/tokenizer on one core.
 * Not a test: tests/bench/tokenizer.sh runs it beside the Python
 * `tokenizers` library on the same corpus.
 *   bench_tokenizer --write-corpus FILE [MB]   write the mixed corpus
 *   bench_tokenizer TOKENIZER_DIR CORPUS [CHUNK [IDS_OUT]]  time it; prints
 *     "load_ms X", "encode_cold_MBps X", "encode_MBps X", "decode_MBps X",
 *     "tokens N" (lines the script parses)
 * The corpus mixes English, Chinese, Japanese, Russian, Arabic, code, JSON,
 * emoji and numbers, with made-up words so that the word cache does not see
 * only repeats. Chunks (default 4096 bytes, cut at line ends) are encoded
 * one call each, as prompts are. IDS_OUT gets every id, one a line, for the
 * script to compare with the Python library's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "util.h"

static const char *const paragraphs[] = {
    "The quick brown fox jumps over the lazy dog. It wasn't the first time they'd "
    "seen it happen, and it won't be the last. Researchers at the institute said the "
    "results, published on Tuesday, were \"surprising but robust\".\n",
    "In 2023, revenue grew 12.5% to $4,200 million, while operating costs fell by 3%. "
    "The board approved a dividend of 0.45 per share (payable 2024-03-15).\n",
    "人工智能正在改变我们的生活方式。大型语言模型可以回答问题、写代码、翻译文本，"
    "但它们也会犯错误。我们需要仔细评估它们的能力和局限性。\n",
    "东京是日本的首都，也是世界上人口最多的城市之一。每年有数百万游客前来参观。\n",
    "今日はとても良い天気ですね。東京タワーに行って、美味しいラーメンを食べました。\n",
    "Москва — столица России. Сегодня хорошая погода, и мы пошли гулять в парк.\n",
    "مرحبا بكم في عالم البرمجة. هذا نص تجريبي باللغة العربية.\n",
    "def fibonacci(n: int) -> int:\n    if n < 2:\n        return n\n"
    "    return fibonacci(n - 1) + fibonacci(n - 2)\n\n\nprint([fibonacci(i) for i in range(10)])\n",
    "static int parse_line(const char *s, size_t len, struct item *out)\n{\n"
    "    if (!s || len == 0)\n        return -1;\n    for (size_t i = 0; i < len; i++) {\n"
    "        if (s[i] == '\\n')\n            break;\n    }\n    return 0;\n}\n",
    "{\"model\": \"qwen3\", \"messages\": [{\"role\": \"user\", \"content\": \"Hi!\"}], "
    "\"temperature\": 0.7, \"max_tokens\": 256, \"stream\": true}\n",
    "Great job 👍🏽 on the release! 🎉🎉 Let's celebrate 🍕🍺 with the team 👨‍👩‍👧‍👦 "
    "and friends 🇫🇷🇯🇵 ❤️\n",
    "## Installation\n\n1. Clone the repo: `git clone https://example.com/x.git`\n"
    "2. Run `make -j8 && sudo make install`\n3. Edit `/etc/llmux.conf`\n\n",
    "Ça va très bien, merci! Où est la gare? Straße, naïve café, résumé.\n",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "Explain quantum computing in simple terms.<|im_end|>\n<|im_start|>assistant\n<think>\n",
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int write_corpus(const char *path, double mb)
{
    FILE *f = fopen(path, "w");
    size_t want = (size_t)(mb * 1e6), have = 0;
    static const char *const cjk[] = { "模型", "数据", "系统", "学习", "网络", "测试" };
    if (!f) {
        perror(path);
        return 1;
    }
    while (have < want) {
        const char *p = paragraphs[rng_next() % ARRAY_SIZE(paragraphs)];
        have += (size_t)fprintf(f, "%s", p);
        /* made-up words, numbers and CJK pairs: not all words repeat */
        int extra = (int)(rng_next() % 12);
        for (int i = 0; i < extra; i++) {
            uint64_t r = rng_next();
            if (r % 5 == 0) {
                have += (size_t)fprintf(f, " %llu", (unsigned long long)(r >> 40));
            } else if (r % 5 == 1) {
                have += (size_t)fprintf(f, "%s", cjk[(r >> 8) % ARRAY_SIZE(cjk)]);
            } else {
                char w[16];
                int n = 3 + (int)((r >> 8) % 8);
                for (int k = 0; k < n; k++)
                    w[k] = (char)('a' + (rng_next() % 26));
                w[n] = '\0';
                have += (size_t)fprintf(f, " %s", w);
            }
        }
        have += (size_t)fprintf(f, "\n");
    }
    fclose(f);
    return 0;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = xmalloc((size_t)n + 1);
    *len = fread(buf, 1, (size_t)n, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

/* encode every chunk once; returns seconds, adds the token count */
static double encode_pass(const struct tokenizer *tok, const char *text, size_t len, size_t chunk,
                          size_t *tokens, int32_t **all, size_t *n_all, size_t *cap_all)
{
    int64_t t0 = now_us();
    size_t pos = 0;
    *tokens = 0;
    if (all)
        *n_all = 0;
    while (pos < len) {
        size_t end = pos + chunk < len ? pos + chunk : len;
        while (end < len && text[end - 1] != '\n')
            end++;
        int32_t *ids;
        size_t n;
        char err[128];
        if (tokenizer_encode(tok, text + pos, end - pos, 0, &ids, &n, err, sizeof(err)) < 0) {
            fprintf(stderr, "encode: %s\n", err);
            exit(1);
        }
        *tokens += n;
        if (all) {
            xgrow((void **)all, cap_all, *n_all + n, sizeof(int32_t));
            memcpy(*all + *n_all, ids, n * sizeof(int32_t));
            *n_all += n;
        }
        free(ids);
        pos = end;
    }
    return (double)(now_us() - t0) / 1e6;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "--write-corpus") == 0)
        return write_corpus(argv[2], argc > 3 ? atof(argv[3]) : 4.0);
    if (argc < 3) {
        fprintf(stderr, "usage: %s TOKENIZER_DIR CORPUS [CHUNK] | --write-corpus FILE [MB]\n",
                argv[0]);
        return 2;
    }
    size_t chunk = argc > 3 ? (size_t)atol(argv[3]) : 4096;
    size_t len;
    char *text = read_file(argv[2], &len);
    char err[256];
    if (!text) {
        perror(argv[2]);
        return 1;
    }
    int64_t t0 = now_us();
    struct tokenizer *tok = tokenizer_load(argv[1], err, sizeof(err));
    if (!tok) {
        fprintf(stderr, "load: %s\n", err);
        return 1;
    }
    printf("load_ms %.1f\n", (double)(now_us() - t0) / 1000.0);

    size_t tokens = 0, n_all = 0, cap_all = 0;
    int32_t *all = NULL;
    double cold = encode_pass(tok, text, len, chunk, &tokens, &all, &n_all, &cap_all);
    double best = 1e9;
    for (int r = 0; r < 3; r++) {
        double t = encode_pass(tok, text, len, chunk, &tokens, NULL, NULL, NULL);
        if (t < best)
            best = t;
    }
    printf("bytes %zu\n", len);
    printf("tokens %zu\n", tokens);
    printf("encode_cold_MBps %.2f\n", len / cold / 1e6);
    printf("encode_MBps %.2f\n", len / best / 1e6);
    printf("encode_tokens_per_s %.0f\n", tokens / best);

    int64_t t1 = now_us();
    char *out;
    size_t out_len;
    if (tokenizer_decode(tok, all, n_all, 0, &out, &out_len, err, sizeof(err)) < 0) {
        fprintf(stderr, "decode: %s\n", err);
        return 1;
    }
    double dt = (double)(now_us() - t1) / 1e6;
    printf("decode_MBps %.2f\n", out_len / dt / 1e6);
    printf("roundtrip %s\n", out_len == len && memcmp(out, text, len) == 0 ? "ok" : "DIFFERS");
    free(out);

    struct detok d;
    char *s = NULL;
    size_t sl = 0, sc = 0;
    t1 = now_us();
    detok_init(&d, tok, 0);
    for (size_t i = 0; i < n_all; i++)
        detok_push(&d, all[i], &s, &sl, &sc);
    detok_finish(&d, &s, &sl, &sc);
    dt = (double)(now_us() - t1) / 1e6;
    printf("detok_tokens_per_s %.0f\n", n_all / dt);
    free(s);
    if (argc > 4) {
        FILE *f = fopen(argv[4], "w");
        if (!f) {
            perror(argv[4]);
            return 1;
        }
        for (size_t i = 0; i < n_all; i++)
            fprintf(f, "%d\n", (int)all[i]);
        fclose(f);
    }
    free(all);
    free(text);
    tokenizer_free(tok);
    return 0;
}
