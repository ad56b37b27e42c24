/*
 * test_toolcall.c -- worker/toolcall.c: hermes blocks to tool_calls for whole
 * outputs (content before the first tag kept, a bad block means no tool
 * calls) and streams fed at every split: names once, argument pieces that
 * concatenate to the whole-output arguments string.
 */
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "toolcall.h"

struct tcase {
    const char *text;
    int n_calls;                /* -1: no tool calls */
    const char *content;
    const char *name0, *args0;
    const char *name1, *args1;
};

static int check_stream(const struct tcase *t, size_t step)
{
    struct toolcall_stream s;
    struct strbuf content = { 0 };
    struct toolcall_delta *ds = NULL;
    int nd = 0, good = 1;
    size_t len = strlen(t->text);
    toolcall_stream_init(&s);
    for (size_t i = 0; i < len; i += step) {
        size_t k = len - i < step ? len - i : step;
        toolcall_stream_feed(&s, t->text + i, k, &content, &ds, &nd);
    }
    toolcall_stream_finish(&s, &content, &ds, &nd);
    struct strbuf args[2] = { { 0 }, { 0 } };
    const char *names[2] = { NULL, NULL };
    int names_seen[2] = { 0, 0 };
    for (int i = 0; i < nd; i++) {
        int x = ds[i].index;
        if (x < 0 || x > 1) {
            good = 0;
            continue;
        }
        if (ds[i].name) {
            names[x] = ds[i].name;
            names_seen[x]++;
            if (ds[i].id == NULL || strncmp(ds[i].id, "call_", 5) != 0)
                good = 0;
        }
        if (ds[i].args)
            strbuf_adds(&args[x], ds[i].args);
    }
    if (t->n_calls > 0) {
        if (!names[0] || strcmp(names[0], t->name0) || names_seen[0] != 1 ||
            strcmp(strbuf_str(&args[0]), t->args0))
            good = 0;
        if (t->n_calls > 1 && (!names[1] || strcmp(names[1], t->name1) || names_seen[1] != 1 ||
                               strcmp(strbuf_str(&args[1]), t->args1)))
            good = 0;
        if (strcmp(strbuf_str(&content), t->content))
            good = 0;
    }
    if (!good)
        diag("step %zu: content '%s' name0 %s args0 '%s'", step, strbuf_str(&content),
             names[0] ? names[0] : "-", strbuf_str(&args[0]));
    for (int i = 0; i < nd; i++)
        toolcall_delta_free(&ds[i]);
    free(ds);
    strbuf_free(&args[0]);
    strbuf_free(&args[1]);
    strbuf_free(&content);
    toolcall_stream_free(&s);
    return good;
}

int main(void)
{
    static const struct tcase cases[] = {
        { "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
          1, "", "get_weather", "{\"city\": \"Paris\"}", NULL, NULL },
        { "Let me check.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": {\"b\": [1, 2]}}}\n</tool_call>\n"
          "<tool_call>\n{\"name\": \"g\", \"arguments\": {}}\n</tool_call>",
          2, "Let me check.\n", "f", "{\"a\": {\"b\": [1, 2]}}", "g", "{}" },
        { "<tool_call>{\"name\":\"x\",\"arguments\":{\"s\":\"}</tool_call>\"}}</tool_call>",
          -1, NULL, NULL, NULL, NULL, NULL },
        { "<tool_call>\n{\"arguments\": {\"q\": 1}, \"name\": \"late\"}\n</tool_call>",
          1, "", "late", "{\"q\": 1}", NULL, NULL },
        { "<tool_call>\n{\"name\": \"unclosed\", \"arguments\": {\"k\": \"v\"}}",
          1, "", "unclosed", "{\"k\": \"v\"}", NULL, NULL },
        { "no tools here", -1, NULL, NULL, NULL, NULL, NULL },
        { "<tool_call>not json</tool_call>", -1, NULL, NULL, NULL, NULL, NULL },
        { "<tool_call>{\"name\": \"esc\\u00e9\", \"arguments\": \"str}\"}</tool_call>",
          1, "", "esc\xc3\xa9", "\"str}\"", NULL, NULL },
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const struct tcase *t = &cases[c];
        size_t clen = 99;
        json_t *calls = toolcall_parse(t->text, strlen(t->text), &clen);
        if (t->n_calls < 0) {
            ok(calls == NULL, "case %zu: no tool calls", c);
            json_decref(calls);
            continue;
        }
        int good = calls && (int)json_array_size(calls) == t->n_calls &&
                   clen == strlen(t->content);
        for (int i = 0; good && i < t->n_calls; i++) {
            json_t *fn = json_object_get(json_array_get(calls, (size_t)i), "function");
            const char *id = json_string_value(json_object_get(json_array_get(calls, (size_t)i), "id"));
            const char *nm = json_string_value(json_object_get(fn, "name"));
            const char *ar = json_string_value(json_object_get(fn, "arguments"));
            good = id && strncmp(id, "call_", 5) == 0 && nm && ar &&
                   strcmp(nm, i ? t->name1 : t->name0) == 0 &&
                   strcmp(ar, i ? t->args1 : t->args0) == 0;
            if (!good)
                diag("call %d: %s %s", i, nm ? nm : "-", ar ? ar : "-");
        }
        ok(good, "case %zu: whole output parses to %d call(s)", c, t->n_calls);
        json_decref(calls);
        int all = 1;
        for (size_t step = 1; step <= strlen(t->text) + 1; step++)
            all &= check_stream(t, step);
        ok(all, "case %zu: stream deltas at every feed size", c);
    }
    /* streaming: plain text after the first call is not content; the name
     * goes out before the block closes */
    struct toolcall_stream s;
    struct strbuf content = { 0 };
    struct toolcall_delta *ds = NULL;
    int nd = 0;
    toolcall_stream_init(&s);
    const char *p1 = "hi <tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1";
    toolcall_stream_feed(&s, p1, strlen(p1), &content, &ds, &nd);
    ok(nd == 2 && ds[0].name && strcmp(ds[0].name, "f") == 0 && ds[1].args &&
       strcmp(ds[1].args, "{\"a\": 1") == 0, "name and argument prefix streamed early");
    ok(strcmp(strbuf_str(&content), "hi ") == 0, "content before the tag");
    for (int i = 0; i < nd; i++)
        toolcall_delta_free(&ds[i]);
    free(ds);
    toolcall_stream_free(&s);
    strbuf_free(&content);
    char id1[40], id2[40];
    toolcall_new_id(id1, sizeof(id1));
    toolcall_new_id(id2, sizeof(id2));
    ok(strlen(id1) == 29 && strcmp(id1, id2) != 0, "ids are call_<24 hex>, unique: %s", id1);
    return tap_done();
}
