/*
 * test_reasoning.c -- worker/reasoning.c: the qwen3 and deepseek_r1 splits of
 * <think>...</think> for whole outputs and for streams fed at every split
 * (the concatenated stream deltas equal the whole-output split).
 */
#include <stdlib.h>
#include <string.h>

#include "reasoning.h"
#include "tap.h"

struct rcase {
    int kind;
    int thinking;
    const char *text;
    const char *reasoning;
    const char *content;
};

static void run(const struct rcase *t, size_t step, struct strbuf *r, struct strbuf *c)
{
    struct reasoning_state st;
    size_t len = strlen(t->text);
    reasoning_init(&st, t->kind, t->thinking);
    for (size_t i = 0; i < len; i += step) {
        size_t k = len - i < step ? len - i : step;
        reasoning_feed(&st, t->text + i, k, r, c);
    }
    reasoning_finish(&st, r, c);
    reasoning_free(&st);
}

int main(void)
{
    static const struct rcase cases[] = {
        { REASONING_QWEN3, 1, "<think>\nplan\n</think>\n\nanswer", "\nplan\n", "\n\nanswer" },
        { REASONING_QWEN3, 1, "plan</think>answer", "plan", "answer" },
        { REASONING_QWEN3, 1, "still thinking", "still thinking", "" },
        { REASONING_QWEN3, 1, "<think>a</think>b</think>c", "a", "b</think>c" },
        { REASONING_QWEN3, 0, "no think block</think>x", "", "no think block</think>x" },
        { REASONING_QWEN3, 0, "<think>", "", "<think>" },
        { REASONING_DEEPSEEK_R1, 1, "reason</think>\n\nfinal", "reason", "\n\nfinal" },
        { REASONING_DEEPSEEK_R1, 0, "reason</think>final", "reason", "final" },
        { REASONING_DEEPSEEK_R1, 1, "<think>r</think>", "r", "" },
        { REASONING_DEEPSEEK_R1, 1, "ends with </thi", "ends with </thi", "" },
        { REASONING_NONE, 1, "a</think>b", "", "a</think>b" },
        { REASONING_QWEN3, 1, "x < y <th </t </think>ok", "x < y <th </t ", "ok" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct rcase *t = &cases[i];
        int all = 1;
        for (size_t step = 1; step <= strlen(t->text) + 1; step++) {
            struct strbuf r = { 0 }, c = { 0 };
            run(t, step, &r, &c);
            if (strcmp(strbuf_str(&r), t->reasoning) != 0 || strcmp(strbuf_str(&c), t->content) != 0) {
                diag("case %zu step %zu: reasoning '%s' content '%s'", i, step, strbuf_str(&r),
                     strbuf_str(&c));
                all = 0;
            }
            strbuf_free(&r);
            strbuf_free(&c);
        }
        ok(all, "case %zu (%s): '%s'", i, t->kind == REASONING_QWEN3 ? "qwen3" : "other", t->text);
    }
    /* stream: nothing of a partial tag leaks into reasoning before it resolves */
    struct reasoning_state st;
    struct strbuf r = { 0 }, c = { 0 };
    reasoning_init(&st, REASONING_QWEN3, 1);
    reasoning_feed(&st, "abc</thi", 8, &r, &c);
    ok(strcmp(strbuf_str(&r), "abc") == 0 && c.len == 0, "partial </think> held back");
    reasoning_feed(&st, "nk>def", 6, &r, &c);
    ok(strcmp(strbuf_str(&r), "abc") == 0 && strcmp(strbuf_str(&c), "def") == 0,
       "tag completed: content starts");
    reasoning_free(&st);
    strbuf_free(&r);
    strbuf_free(&c);
    ok(reasoning_kind_parse("qwen3") == REASONING_QWEN3 &&
       reasoning_kind_parse("deepseek_r1") == REASONING_DEEPSEEK_R1 &&
       reasoning_kind_parse("granite") == -1, "parser names");
    return tap_done();
}
