/*
 * test_request.c -- worker/api/request.c with the real Qwen3 tokenizer and
 * chat template: accepted bodies give the right sampling parameters and
 * prompts (defaults from generation_config applied, request fields winning),
 * and each bad body gives the right status and parameter.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/request.h"
#include "chat_template.h"
#include "log.h"
#include "reasoning.h"
#include "tap.h"
#include "tokenizer.h"
#include "toolcall.h"

static struct api_ctx ctx;

static int parse(enum api_kind k, const char *body, struct api_request *req, struct api_err *err)
{
    memset(err, 0, sizeof(*err));
    return api_request_parse(&ctx, k, body, strlen(body), NULL, req, err);
}

struct bad {
    int kind;
    const char *body;
    int status;
    const char *param;
};

int main(void)
{
    char dir[4096], e[256];
    static char *names[] = { "tiny", "alias" };
    const char *src = getenv("LLMUX_SRCDIR");
    snprintf(dir, sizeof(dir), "%s/examples/models/tokenizers/qwen3", src ? src : "..");
    log_init("test");
    log_set_level(LOG_ERR);
    ctx.tok = tokenizer_load(dir, e, sizeof(e));
    if (ctx.tok == NULL)
        tap_skip_all("no Qwen3 tokenizer (set LLMUX_SRCDIR)");
    ctx.tmpl = chat_template_load_dir(dir, e, sizeof(e));
    ok(ctx.tmpl != NULL, "template loaded: %s", ctx.tmpl ? "" : e);
    ctx.max_model_len = 400;
    ctx.served_names = names;
    ctx.n_served = 2;
    ctx.reasoning = REASONING_QWEN3;
    ctx.toolcall = TOOLCALL_HERMES;
    ctx.defs.has_temperature = 1;
    ctx.defs.temperature = 0.6f;
    ctx.defs.has_top_k = 1;
    ctx.defs.top_k = 20;

    struct api_request r;
    struct api_err err;
    int rc = parse(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &r, &err);
    ok(rc == 0, "minimal chat: %s", err.message);
    ok(r.n == 1 && r.n_prompts == 1 && strcmp(r.model, "tiny") == 0, "defaults: n 1, first name");
    ok(r.sp.temperature == 0.6f && r.sp.top_k == 20 && r.sp.top_p == 1.0f,
       "generation_config defaults applied");
    ok(r.prompt_max_tokens[0] == 400 - r.prompts[0].n_ids, "no max_tokens: the rest of the context");
    ok(strstr(r.prompts[0].text, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n") != NULL,
       "rendered with the template");
    ok(r.logprobs == -1 && r.sp.logprobs == -1 && r.skip_special_tokens == 1 && !r.stream,
       "off by default");
    api_request_free(&r);

    rc = parse(API_CHAT, "{\"model\":\"alias\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
               "\"temperature\":0,\"top_k\":-1,\"seed\":5,\"n\":3,\"stop\":[\"a\",\"b\"],"
               "\"max_completion_tokens\":7,\"logprobs\":true,\"top_logprobs\":4,\"stream\":true,"
               "\"stream_options\":{\"include_usage\":true},\"stop_token_ids\":[151643],"
               "\"chat_template_kwargs\":{\"enable_thinking\":false},\"tools\":[{\"type\":\"function\","
               "\"function\":{\"name\":\"f\"}}]}", &r, &err);
    ok(rc == 0, "full chat: %s", err.message);
    ok(strcmp(r.model, "alias") == 0 && r.sp.temperature == 0 && r.sp.top_k == -1 &&
       r.sp.has_seed && r.sp.seed == 5 && r.n == 3, "fields read");
    ok(r.n_stop == 2 && r.prompt_max_tokens[0] == 7 && r.logprobs == 4 && r.include_usage &&
       r.sp.n_stop_token_ids == 1, "stop, max_tokens, logprobs, usage");
    ok(!r.thinking_enabled && r.parse_tools, "thinking off, tools parsed");
    ok(strstr(r.prompts[0].text, "<think>\n\n</think>") != NULL, "enable_thinking false rendered");
    api_request_free(&r);

    rc = parse(API_COMPLETION, "{\"prompt\":[[1,2,3],\"hello\"],\"echo\":true,\"logprobs\":2,"
               "\"max_tokens\":5}", &r, &err);
    ok(rc == 0 && r.n_prompts == 2 && r.prompts[0].n_ids == 3 && r.sp.prompt_logprobs == 2,
       "completion prompts and echo logprobs: %s", err.message);
    api_request_free(&r);

    static const struct bad bads[] = {
        { API_CHAT, "{\"messages\":[]}", 400, "messages" },
        { API_CHAT, "{}", 400, "messages" },
        { API_CHAT, "{\"messages\":[{\"role\":\"bot\",\"content\":\"x\"}]}", 400, "messages" },
        { API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400, "messages" },
        { API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":-0.1}", 400, "temperature" },
        { API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_p\":0}", 400, "top_p" },
        { API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"min_p\":2}", 400, "min_p" },
        { API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":0}", 400, "n" },
        { API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":1.5}", 400, "n" },
        { API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"seed\":\"1\"}", 400, "seed" },
        { API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":1}", 400, "stream" },
        { API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":395}", 400, "max_tokens" },
        { API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":2}", 400, "top_logprobs" },
        { API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":{}}", 400, "tools" },
        { API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"maybe\"}", 400, "tool_choice" },
        { API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"chat_template_kwargs\":[]}", 400, "chat_template_kwargs" },
        { API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"model\":\"nope\"}", 404, "model" },
        { API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"min_tokens\":9,\"max_tokens\":3}", 400, "min_tokens" },
        { API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"\\ud800\"}]}", 400, "" },
        { API_CHAT, "[]", 400, "" },
        { API_COMPLETION, "{\"prompt\":\"x\",\"suffix\":\"y\"}", 400, "suffix" },
        { API_COMPLETION, "{\"prompt\":[]}", 400, "prompt" },
        { API_COMPLETION, "{\"prompt\":[1,\"a\"]}", 400, "prompt" },
        { API_COMPLETION, "{\"prompt\":[200000]}", 400, "prompt" },
        { API_COMPLETION, "{\"prompt\":\"\"}", 400, "prompt" },
        { API_COMPLETION, "{\"prompt\":\"x\",\"logprobs\":true}", 400, "logprobs" },
        { API_COMPLETION, "{\"prompt\":\"x\",\"logprobs\":21}", 400, "logprobs" },
        { API_COMPLETION, "{\"prompt\":\"x\",\"stop\":[1]}", 400, "stop" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(bads); i++) {
        rc = parse(bads[i].kind, bads[i].body, &r, &err);
        ok(rc == -1 && err.status == bads[i].status && strcmp(err.param, bads[i].param) == 0,
           "%s -> %d %s (got %d '%s': %s)", bads[i].body, bads[i].status, bads[i].param,
           err.status, err.param, err.message);
        api_request_free(&r);
    }
    rc = parse(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":399}", &r, &err);
    ok(rc == -1 && strstr(err.message, "maximum context length is 400 tokens") &&
       strstr(err.message, "399 in the completion"), "context message says both numbers: %s",
       err.message);
    api_request_free(&r);

    /* an alias or route the gateway resolved to a served model (X-Llmux-Model) */
    const char *alias = "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
    memset(&err, 0, sizeof(err));
    rc = api_request_parse(&ctx, API_CHAT, alias, strlen(alias), names[1], &r, &err);
    ok(rc == 0 && strcmp(r.model, "gpt-4o") == 0, "routed alias accepted, name echoed: %s",
       err.message);
    api_request_free(&r);
    memset(&err, 0, sizeof(err));
    rc = api_request_parse(&ctx, API_CHAT, alias, strlen(alias), "other", &r, &err);
    ok(rc == -1 && err.status == 404, "routed to a model not served here -> 404");
    api_request_free(&r);
    chat_template_free((struct chat_template *)ctx.tmpl);
    tokenizer_free((struct tokenizer *)ctx.tok);
    return tap_done();
}
