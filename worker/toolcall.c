/*
 * toolcall.c -- hermes tool calls. Whole outputs: every <tool_call> block
 * (the last may be unclosed) must parse as {"name": str, "arguments": any},
 * else there are no tool calls. Streams: content before the first tag goes
 * out as content; in a block the name is sent once `{"name": "..."` is
 * complete, then the raw text of the arguments value in pieces, holding back
 * trailing '}'/whitespace and partial tags until the block closes.
 */
#include "toolcall.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define TC_OPEN  "<tool_call>"
#define TC_CLOSE "</tool_call>"

enum { ST_TEXT = 0, ST_CALL };

int toolcall_kind_parse(const char *name)
{
    return strcmp(name, "hermes") == 0 ? TOOLCALL_HERMES : -1;
}

void toolcall_new_id(char *buf, size_t len)
{
    static uint64_t counter;    /* mixed with the clock: unique per process */
    uint64_t a = hash64(&counter, sizeof(counter), (uint64_t)now_us());
    counter++;
    uint64_t b = hash64(&a, sizeof(a), counter);
    snprintf(buf, len, "call_%016llx%08llx", (unsigned long long)a,
             (unsigned long long)(b & 0xffffffffu));
}

/* ---- one block ------------------------------------------------------------ */

static size_t skip_ws(const char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* s[i] is '"': index just past the closing quote, 0 when incomplete. */
static size_t skip_string(const char *s, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (s[i] == '\\') {
            i++;
            continue;
        }
        if (s[i] == '"')
            return i + 1;
    }
    return 0;
}

/* Expect literal <lit> at s[i] (after whitespace). Returns the index after
 * it, 0 when the text differs, (size_t)-1 when the text ends first. */
static size_t expect(const char *s, size_t len, size_t i, const char *lit)
{
    size_t l = strlen(lit);
    i = skip_ws(s, len, i);
    if (i >= len)
        return (size_t)-1;
    size_t avail = len - i < l ? len - i : l;
    if (memcmp(s + i, lit, avail) != 0)
        return 0;
    return avail < l ? (size_t)-1 : i + l;
}

/*
 * Match `{"name": "<str>", "arguments": ` at the start of a block.
 * Returns 1 and sets *name_end (past the name literal) and *args_start when
 * both are there, 2 when only the name is complete, 0 while incomplete, -1
 * when the block has another shape. *name_start is the name literal's '"'.
 */
static int match_prefix(const char *s, size_t len, size_t *name_start, size_t *name_end,
                        size_t *args_start)
{
    size_t i = expect(s, len, 0, "{");
    if (i == 0)
        return -1;
    if (i == (size_t)-1)
        return 0;
    i = expect(s, len, i, "\"name\"");
    if (i == 0)
        return -1;
    if (i == (size_t)-1)
        return 0;
    i = expect(s, len, i, ":");
    if (i == 0)
        return -1;
    if (i == (size_t)-1)
        return 0;
    i = skip_ws(s, len, i);
    if (i >= len)
        return 0;
    if (s[i] != '"')
        return -1;
    *name_start = i;
    size_t e = skip_string(s, len, i);
    if (e == 0)
        return 0;
    *name_end = e;
    i = expect(s, len, e, ",");
    if (i == 0 || i == (size_t)-1)
        return i == 0 ? -1 : 2;
    i = expect(s, len, i, "\"arguments\"");
    if (i == 0 || i == (size_t)-1)
        return i == 0 ? -1 : 2;
    i = expect(s, len, i, ":");
    if (i == 0 || i == (size_t)-1)
        return i == 0 ? -1 : 2;
    i = skip_ws(s, len, i);
    if (i >= len)
        return 2;
    *args_start = i;
    return 1;
}

/* The name of a JSON string literal s[a..b) (new string), or NULL. */
static char *literal_string(const char *s, size_t a, size_t b)
{
    json_t *v = json_loadb(s + a, b - a, JSON_DECODE_ANY, NULL);
    char *out = NULL;
    if (v && json_is_string(v))
        out = xstrdup(json_string_value(v));
    json_decref(v);
    return out;
}

/*
 * Parse block text s[0..len). 0 with *name and *args (new strings), or -1.
 * The arguments string is the block's own text of the value when the block
 * reads {"name": ..., "arguments": VALUE}, else jansson's serialization.
 */
static int parse_block(const char *s, size_t len, char **name, char **args)
{
    json_error_t jerr;
    json_t *root = json_loadb(s, len, 0, &jerr);
    *name = *args = NULL;
    if (root == NULL || !json_is_object(root))
        goto fail;
    json_t *jn = json_object_get(root, "name");
    if (!json_is_string(jn))
        goto fail;
    json_t *ja = json_object_get(root, "arguments");
    if (ja == NULL)
        ja = json_object_get(root, "parameters");
    *name = xstrdup(json_string_value(jn));
    size_t ns, ne, as = 0;
    if (ja != NULL && json_object_size(root) == 2 && match_prefix(s, len, &ns, &ne, &as) == 1) {
        size_t end = len;
        while (end > as && isspace((unsigned char)s[end - 1]))
            end--;
        if (end > as && s[end - 1] == '}')
            end--;              /* the block's own closing brace */
        while (end > as && isspace((unsigned char)s[end - 1]))
            end--;
        json_t *v = json_loadb(s + as, end - as, JSON_DECODE_ANY, NULL);
        if (v != NULL && json_equal(v, ja))
            *args = xstrndup(s + as, end - as);
        json_decref(v);
    }
    if (*args == NULL) {
        if (ja == NULL) {
            *args = xstrdup("{}");
        } else {
            char *d = json_dumps(ja, JSON_ENCODE_ANY);
            if (d == NULL)
                goto fail;
            *args = xstrdup(d);
            free(d);
        }
    }
    json_decref(root);
    return 0;
fail:
    json_decref(root);
    free(*name);
    *name = NULL;
    return -1;
}

json_t *toolcall_parse(const char *text, size_t len, size_t *content_len)
{
    const char *first = memmem(text, len, TC_OPEN, strlen(TC_OPEN));
    if (first == NULL)
        return NULL;
    json_t *calls = json_array();
    const char *p = first, *end = text + len;
    while (p != NULL) {
        const char *body = p + strlen(TC_OPEN);
        const char *close = memmem(body, (size_t)(end - body), TC_CLOSE, strlen(TC_CLOSE));
        const char *bend = close ? close : end;
        char *name, *args;
        if (parse_block(body, (size_t)(bend - body), &name, &args) == -1) {
            json_decref(calls);
            return NULL;
        }
        char id[40];
        toolcall_new_id(id, sizeof(id));
        json_t *fn = json_object();
        json_object_set_new(fn, "name", json_string(name));
        json_object_set_new(fn, "arguments", json_string(args));
        json_t *c = json_object();
        json_object_set_new(c, "id", json_string(id));
        json_object_set_new(c, "type", json_string("function"));
        json_object_set_new(c, "function", fn);
        json_array_append_new(calls, c);
        free(name);
        free(args);
        if (close == NULL)
            break;
        const char *next = close + strlen(TC_CLOSE);
        p = memmem(next, (size_t)(end - next), TC_OPEN, strlen(TC_OPEN));
    }
    *content_len = (size_t)(first - text);
    return calls;
}

/* ---- streams ---------------------------------------------------------------- */

void toolcall_stream_init(struct toolcall_stream *s)
{
    memset(s, 0, sizeof(*s));
}

void toolcall_stream_free(struct toolcall_stream *s)
{
    strbuf_free(&s->cur);
    strbuf_free(&s->hold);
}

void toolcall_delta_free(struct toolcall_delta *d)
{
    free(d->id);
    free(d->name);
    free(d->args);
}

static struct toolcall_delta *push_delta(struct toolcall_stream *s, struct toolcall_delta **ds,
                                         int *n)
{
    *ds = xrealloc(*ds, (size_t)(*n + 1) * sizeof(**ds));
    struct toolcall_delta *d = &(*ds)[*n];
    (*n)++;
    memset(d, 0, sizeof(*d));
    d->index = s->n_calls - 1;
    return d;
}

/* Send what of the arguments is certain (not trailing '}'/space/partial tag). */
static void send_args_progress(struct toolcall_stream *s, struct toolcall_delta **ds, int *n)
{
    const char *c = s->cur.p;
    size_t t = s->cur.len;
    t -= strbuf_partial_suffix(c, t, TC_CLOSE);
    while (t > s->args_start && (c[t - 1] == '}' || isspace((unsigned char)c[t - 1])))
        t--;
    if (t > s->args_sent) {
        struct toolcall_delta *d = push_delta(s, ds, n);
        d->args = xstrndup(c + s->args_sent, t - s->args_sent);
        s->args_sent = t;
    }
}

/* The block s->cur[0..len) is complete: send what is missing. */
static void finish_call(struct toolcall_stream *s, size_t len, struct toolcall_delta **ds,
                        int *n)
{
    char *name, *args;
    if (parse_block(s->cur.p, len, &name, &args) == 0) {
        if (!s->name_sent) {
            struct toolcall_delta *d = push_delta(s, ds, n);
            d->id = xstrdup(s->id);
            d->name = name;
            name = NULL;
            d->args = args;
            args = NULL;
        } else {
            size_t sent = s->args_start ? s->args_sent - s->args_start : 0;
            if (strlen(args) > sent && strncmp(args, s->cur.p + s->args_start, sent) == 0) {
                struct toolcall_delta *d = push_delta(s, ds, n);
                d->args = xstrdup(args + sent);
            }
        }
        free(name);
        free(args);
    }
    s->state = ST_TEXT;
    s->name_sent = 0;
    s->args_start = s->args_sent = 0;
}

static void call_progress(struct toolcall_stream *s, struct toolcall_delta **ds, int *n)
{
    if (s->args_start == (size_t)-1)
        return;                 /* another shape: wait for the close tag */
    size_t ns = 0, ne = 0, as = 0;
    if (!s->name_sent || s->args_start == 0) {
        int m = match_prefix(s->cur.p, s->cur.len, &ns, &ne, &as);
        if (m == -1) {
            if (!s->name_sent)
                s->args_start = (size_t)-1;
            return;
        }
        if (m == 0)
            return;
        if (!s->name_sent) {
            char *name = literal_string(s->cur.p, ns, ne);
            if (name == NULL) {
                s->args_start = (size_t)-1;
                return;
            }
            struct toolcall_delta *d = push_delta(s, ds, n);
            d->id = xstrdup(s->id);
            d->name = name;
            s->name_sent = 1;
        }
        if (m == 1) {
            s->args_start = as;
            s->args_sent = as;
        }
    }
    if (s->args_start > 0)
        send_args_progress(s, ds, n);
}

void toolcall_stream_feed(struct toolcall_stream *s, const char *text, size_t len,
                          struct strbuf *content, struct toolcall_delta **deltas, int *n_deltas)
{
    strbuf_add(&s->hold, text, len);
    size_t pos = 0;
    while (pos < s->hold.len) {
        const char *h = s->hold.p + pos;
        size_t hl = s->hold.len - pos;
        if (s->state == ST_TEXT) {
            const char *open = memmem(h, hl, TC_OPEN, strlen(TC_OPEN));
            if (open == NULL) {
                size_t keep = strbuf_partial_suffix(h, hl, TC_OPEN);
                if (s->n_calls == 0)
                    strbuf_add(content, h, hl - keep);
                pos += hl - keep;
                break;
            }
            if (s->n_calls == 0)
                strbuf_add(content, h, (size_t)(open - h));
            pos += (size_t)(open - h) + strlen(TC_OPEN);
            s->state = ST_CALL;
            s->n_calls++;
            toolcall_new_id(s->id, sizeof(s->id));
            strbuf_reset(&s->cur);
            continue;
        }
        /* in a call: move everything into cur, then look for the close tag */
        size_t before = s->cur.len;
        strbuf_add(&s->cur, h, hl);
        pos += hl;
        size_t from = before > strlen(TC_CLOSE) ? before - strlen(TC_CLOSE) : 0;
        const char *close = memmem(s->cur.p + from, s->cur.len - from, TC_CLOSE,
                                   strlen(TC_CLOSE));
        if (close == NULL) {
            call_progress(s, deltas, n_deltas);
            break;
        }
        size_t blen = (size_t)(close - s->cur.p);
        size_t after = blen + strlen(TC_CLOSE);
        /* text after the close tag goes back through the loop */
        struct strbuf rest = { 0 };
        strbuf_add(&rest, s->cur.p + after, s->cur.len - after);
        finish_call(s, blen, deltas, n_deltas);
        strbuf_reset(&s->hold);
        strbuf_add(&s->hold, strbuf_str(&rest), rest.len);
        strbuf_free(&rest);
        pos = 0;
    }
    memmove(s->hold.p, s->hold.p + pos, s->hold.len - pos);
    s->hold.len -= pos;
    s->hold.p[s->hold.len] = '\0';
}

void toolcall_stream_finish(struct toolcall_stream *s, struct strbuf *content,
                            struct toolcall_delta **deltas, int *n_deltas)
{
    if (s->state == ST_CALL) {
        if (s->hold.len > 0)
            strbuf_add(&s->cur, s->hold.p, s->hold.len);
        finish_call(s, s->cur.len, deltas, n_deltas);
    } else if (s->n_calls == 0 && s->hold.len > 0) {
        strbuf_add(content, s->hold.p, s->hold.len);
    }
    strbuf_reset(&s->hold);
}
