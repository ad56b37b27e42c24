/*
 * toolcall.h -- the hermes tool-call parser (Qwen2.5/Qwen3): blocks
 * <tool_call>{"name": ..., "arguments": {...}}</tool_call> in the content
 * become OpenAI tool_calls, for whole outputs and as stream deltas (name
 * first, then pieces of the arguments string), as vLLM's hermes parser does.
 * The arguments string is the model's own JSON text of the value, so the
 * streamed pieces concatenate to exactly the non-stream string.
 */
#ifndef LLMUX_TOOLCALL_H
#define LLMUX_TOOLCALL_H

#include <stddef.h>
#include <jansson.h>

#include "strbuf.h"

enum toolcall_kind { TOOLCALL_NONE = 0, TOOLCALL_HERMES };

/* "hermes" -> TOOLCALL_HERMES; -1 when unknown. */
int toolcall_kind_parse(const char *name);

/* A new "call_<24 hex>" id into <buf> (>= 32 bytes). */
void toolcall_new_id(char *buf, size_t len);

/*
 * Whole output: when <text> holds at least one <tool_call> block and every
 * block parses, returns a new JSON array of {id, type, function{name,
 * arguments}} and sets *<content_len> to the length of the text before the
 * first tag (the content to keep). Otherwise NULL (no tool calls: the whole
 * text is content, as vLLM does when a block does not parse).
 */
json_t *toolcall_parse(const char *text, size_t len, size_t *content_len);

/* One stream delta of a tool call. */
struct toolcall_delta {
    int index;                  /* tool call number, from 0 */
    char *id;                   /* set on the first delta of a call (new) */
    char *name;                 /* set on the first delta of a call (new) */
    char *args;                 /* a piece of the arguments string, or NULL (new) */
};

struct toolcall_stream {
    int state;                  /* internal */
    int n_calls;                /* calls opened so far */
    int name_sent;              /* the current call's name delta went out */
    size_t args_start;          /* offset of the arguments value in cur */
    size_t args_sent;           /* bytes of cur already sent as arguments */
    struct strbuf cur;          /* text of the current block so far */
    struct strbuf hold;         /* text that may start a tag */
    char id[40];
};

void toolcall_stream_init(struct toolcall_stream *s);
void toolcall_stream_free(struct toolcall_stream *s);
/*
 * Feed content text: plain content (before the first tag) is appended to
 * <content>; tool-call deltas are appended to *<deltas> (array grown with
 * xrealloc; *<n_deltas> counts them; the caller frees each delta's strings
 * with toolcall_delta_free() and the array with free()).
 */
void toolcall_stream_feed(struct toolcall_stream *s, const char *text, size_t len,
                          struct strbuf *content, struct toolcall_delta **deltas,
                          int *n_deltas);
/* End of output: flush what is held (an unclosed call is completed if its
 * text parses). */
void toolcall_stream_finish(struct toolcall_stream *s, struct strbuf *content,
                            struct toolcall_delta **deltas, int *n_deltas);
void toolcall_delta_free(struct toolcall_delta *d);

#endif
