/*
 * reasoning.c -- the <think>...</think> splitter behind the qwen3 and
 * deepseek_r1 reasoning parsers. Both start inside the reasoning (vLLM's
 * current parsers: the think block is opened by the template or implied);
 * a generated "<think>" is stripped once, the first "</think>" ends the
 * reasoning, everything after it is content. qwen3 with enable_thinking
 * false passes everything through as content.
 */
#include "reasoning.h"

#include <string.h>

#define TAG_OPEN  "<think>"
#define TAG_CLOSE "</think>"

int reasoning_kind_parse(const char *name)
{
    if (strcmp(name, "qwen3") == 0)
        return REASONING_QWEN3;
    if (strcmp(name, "deepseek_r1") == 0)
        return REASONING_DEEPSEEK_R1;
    return -1;
}

void reasoning_init(struct reasoning_state *r, enum reasoning_kind kind, int thinking_enabled)
{
    memset(r, 0, sizeof(*r));
    r->kind = kind;
    r->in_reasoning = kind != REASONING_NONE &&
                      !(kind == REASONING_QWEN3 && !thinking_enabled);
}

void reasoning_free(struct reasoning_state *r)
{
    strbuf_free(&r->hold);
}

void reasoning_feed(struct reasoning_state *r, const char *text, size_t len,
                    struct strbuf *reasoning, struct strbuf *content)
{
    if (!r->in_reasoning) {
        strbuf_add(content, text, len);
        return;
    }
    strbuf_add(&r->hold, text, len);
    const char *s = r->hold.p;
    size_t n = r->hold.len, pos = 0;
    for (;;) {
        const char *close = memmem(s + pos, n - pos, TAG_CLOSE, strlen(TAG_CLOSE));
        const char *open = r->start_stripped ? NULL : memmem(s + pos, n - pos, TAG_OPEN,
                                                             strlen(TAG_OPEN));
        if (open != NULL && (close == NULL || open < close)) {
            strbuf_add(reasoning, s + pos, (size_t)(open - (s + pos)));
            pos = (size_t)(open - s) + strlen(TAG_OPEN);
            r->start_stripped = 1;
            continue;
        }
        if (close != NULL) {
            strbuf_add(reasoning, s + pos, (size_t)(close - (s + pos)));
            pos = (size_t)(close - s) + strlen(TAG_CLOSE);
            r->in_reasoning = 0;
            r->ended = 1;
            strbuf_add(content, s + pos, n - pos);
            strbuf_reset(&r->hold);
            return;
        }
        break;
    }
    size_t keep = strbuf_partial_suffix(s + pos, n - pos, TAG_CLOSE);
    if (!r->start_stripped) {
        size_t k2 = strbuf_partial_suffix(s + pos, n - pos, TAG_OPEN);
        if (k2 > keep)
            keep = k2;
    }
    strbuf_add(reasoning, s + pos, n - pos - keep);
    memmove(r->hold.p, s + n - keep, keep);
    r->hold.len = keep;
    r->hold.p[keep] = '\0';
}

void reasoning_finish(struct reasoning_state *r, struct strbuf *reasoning,
                      struct strbuf *content)
{
    if (r->in_reasoning && r->hold.len > 0)
        strbuf_add(reasoning, r->hold.p, r->hold.len);
    strbuf_reset(&r->hold);
    (void)content;
}
