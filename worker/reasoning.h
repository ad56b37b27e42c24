/*
 * reasoning.h -- reasoning parsers (qwen3, deepseek_r1): split generated text
 * into reasoning_content (inside <think>...</think>) and content, for whole
 * outputs and for streams, as vLLM's parsers of the same names do. Works on
 * text only; knows nothing of tokens, JSON or HTTP.
 */
#ifndef LLMUX_REASONING_H
#define LLMUX_REASONING_H

#include <stddef.h>

#include "strbuf.h"

enum reasoning_kind { REASONING_NONE = 0, REASONING_QWEN3, REASONING_DEEPSEEK_R1 };

/* "qwen3", "deepseek_r1" -> kind; -1 when unknown. */
int reasoning_kind_parse(const char *name);

struct reasoning_state {
    enum reasoning_kind kind;
    int in_reasoning;           /* 1 until </think> was seen */
    int start_stripped;         /* a generated <think> was already removed */
    int ended;                  /* </think> was seen */
    struct strbuf hold;         /* text that may be the start of a tag */
};

/*
 * Start a parse. The output begins inside the reasoning (the template put
 * <think> in the prompt, or the model opens with it, or deepseek_r1 emits
 * none) unless <kind> is REASONING_NONE or, for qwen3, <thinking_enabled>
 * is 0 (chat_template_kwargs.enable_thinking false: the template closed
 * the think block in the prompt, so everything is content).
 */
void reasoning_init(struct reasoning_state *r, enum reasoning_kind kind, int thinking_enabled);
void reasoning_free(struct reasoning_state *r);
/* Feed new text: the parts that are certain go to <reasoning> / <content>
 * (appended). A generated "<think>" is dropped, "</think>" switches to
 * content; partial tags at the end are held back. */
void reasoning_feed(struct reasoning_state *r, const char *text, size_t len,
                    struct strbuf *reasoning, struct strbuf *content);
/* End of output: release held-back text. Output that never closed its think
 * block is all reasoning (vLLM: truncated reasoning). */
void reasoning_finish(struct reasoning_state *r, struct strbuf *reasoning,
                      struct strbuf *content);

#endif
