/*
 * fuzz_request.c -- libFuzzer target for the worker's request parser: the
 * first input byte picks chat completions, completions or /tokenize-style
 * chat rendering; the rest is the body, parsed, validated and (chat)
 * rendered with the real Qwen3 chat template and tokenized with the real
 * tokenizer. Build: clang -fsanitize=fuzzer,address (see tests/fuzz/README);
 * replay.c runs the corpus without libFuzzer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/request.h"
#include "chat_template.h"
#include "log.h"
#include "reasoning.h"
#include "tokenizer.h"
#include "toolcall.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct api_ctx ctx;
static int ready;

/* Tokenizer and template from $LLMUX_FUZZ_MODEL, else the Qwen3 files of
 * the source tree ($LLMUX_SRCDIR or the current directory). */
static void setup(void)
{
    char dir[4096], err[256];
    static char *names[] = { "tiny", "other" };
    const char *m = getenv("LLMUX_FUZZ_MODEL");
    const char *src = getenv("LLMUX_SRCDIR");
    if (m)
        snprintf(dir, sizeof(dir), "%s", m);
    else
        snprintf(dir, sizeof(dir), "%s/examples/models/tokenizers/qwen3", src ? src : ".");
    log_init("fuzz");
    log_set_level(LOG_ERR);
    ctx.tok = tokenizer_load(dir, err, sizeof(err));
    if (ctx.tok == NULL) {
        fprintf(stderr, "fuzz_request: tokenizer %s: %s\n", dir, err);
        exit(1);
    }
    ctx.tmpl = chat_template_load_dir(dir, err, sizeof(err));
    if (ctx.tmpl == NULL) {
        fprintf(stderr, "fuzz_request: template %s: %s\n", dir, err);
        exit(1);
    }
    ctx.max_model_len = 4096;
    ctx.served_names = names;
    ctx.n_served = 2;
    ctx.reasoning = REASONING_QWEN3;
    ctx.toolcall = TOOLCALL_HERMES;
    ready = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready)
        setup();
    if (size < 1)
        return 0;
    int which = data[0] % 4;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    struct api_request req;
    struct api_err err;
    if (which <= 1) {
        api_request_parse(&ctx, which == 0 ? API_CHAT : API_COMPLETION, body, len, NULL, &req, &err);
        api_request_free(&req);
    } else if (which == 2) {
        json_t *root = json_loadb(body, len, 0, NULL);
        if (root && json_is_object(root)) {
            char *text = NULL;
            int thinking, tools;
            if (api_chat_render(&ctx, root, &text, &thinking, &tools, &err) == 0)
                free(text);
        }
        json_decref(root);
    } else {
        size_t cl;
        json_t *calls = toolcall_parse(body, len, &cl);
        json_decref(calls);
    }
    return 0;
}
