/*
 * tmpl_lex.c -- the template lexer: splits source into text and the tokens
 * of {{ }} and {% %} tags as jinja2's lexer does with trim_blocks and
 * lstrip_blocks on (transformers' settings): "-" strips whitespace, "+"
 * keeps it, {# #} comments vanish, {% raw %} passes text through. The source
 * is newline-normalized first and loses one trailing newline
 * (keep_trailing_newline off). It builds tokens only; parsing is elsewhere.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tmpl.h"
#include "util.h"

struct lexer {
    struct tp_arena *a;
    const char *s;
    size_t n, pos;
    int line;
    int line_starting;
    struct tp_tokens *out;
    char *err;
    size_t errlen;
};

static int lex_fail(struct lexer *L, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int lex_fail(struct lexer *L, int line, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(L->err, L->errlen, "template syntax error at line %d: %s", line, msg);
    return -1;
}

static struct token *emit(struct lexer *L, enum tok_type t, int line, const char *p, size_t n)
{
    if (L->out->n == L->out->cap) {
        size_t cap = L->out->cap ? L->out->cap * 2 : 256;
        L->out->v = xrealloc(L->out->v, cap * sizeof(*L->out->v));
        L->out->cap = cap;
    }
    struct token *t0 = &L->out->v[L->out->n++];
    memset(t0, 0, sizeof(*t0));
    t0->type = t;
    t0->line = line;
    t0->p = p;
    t0->n = n;
    return t0;
}

static void count_lines(struct lexer *L, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (L->s[i] == '\n')
            L->line++;
}

/* Skip whitespace from L->pos (Python \s). */
static void skip_ws(struct lexer *L)
{
    size_t cl;
    while (L->pos < L->n && u8_isspace_at(L->s, L->n, L->pos, &cl)) {
        if (L->s[L->pos] == '\n')
            L->line++;
        L->pos += cl;
    }
}

static int is_ws_run(const char *s, size_t n, size_t from, size_t to)
{
    size_t cl;
    for (size_t i = from; i < to; i += cl)
        if (!u8_isspace_at(s, n, i, &cl))
            return 0;
    return 1;
}

/* Length of <text> without trailing whitespace. */
static size_t rstrip_len(const char *s, size_t n)
{
    size_t end = n, i = 0, cl, last = 0;
    while (i < end) {
        if (!u8_isspace_at(s, n, i, &cl))
            last = i + cl;
        i += cl;
    }
    return last;
}

/* Emit text s[from, to) with the strip rules of the tag that follows. */
static void emit_text(struct lexer *L, size_t from, size_t to, char sign, int is_var, int line)
{
    const char *t = L->s + from;
    size_t n = to - from;
    if (sign == '-') {
        n = rstrip_len(t, n);
    } else if (sign != '+' && !is_var) {
        size_t lpos = 0;
        for (size_t i = n; i > 0; i--)
            if (t[i - 1] == '\n') {
                lpos = i;
                break;
            }
        if ((lpos > 0 || L->line_starting) && lpos < n && is_ws_run(t, n, lpos, n))
            n = lpos;
    }
    if (n)
        emit(L, T_TEXT, line, t, n);
}

static int unescape_string(struct lexer *L, const char *p, size_t n, int line, struct token *tk)
{
    char *o = tp_alloc(L->a, n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\\' || i + 1 >= n) {
            o[k++] = p[i];
            continue;
        }
        char c = p[++i];
        unsigned cp = 0;
        int hex = 0;
        switch (c) {
        case '\n': break;
        case '\\': o[k++] = '\\'; break;
        case '\'': o[k++] = '\''; break;
        case '"': o[k++] = '"'; break;
        case 'a': o[k++] = '\a'; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'n': o[k++] = '\n'; break;
        case 'r': o[k++] = '\r'; break;
        case 't': o[k++] = '\t'; break;
        case 'v': o[k++] = '\v'; break;
        case 'x': hex = 2; break;
        case 'u': hex = 4; break;
        case 'U': hex = 8; break;
        default:
            if (c >= '0' && c <= '7') {
                int d = 0;
                while (d < 3 && i < n && p[i] >= '0' && p[i] <= '7') {
                    cp = cp * 8 + (unsigned)(p[i] - '0');
                    i++;
                    d++;
                }
                i--;
                hex = -1;
            } else {
                o[k++] = '\\';
                o[k++] = c;
            }
        }
        if (hex > 0) {
            for (int d = 0; d < hex; d++) {
                char h = (i + 1 < n) ? p[i + 1] : 0;
                int v = (h >= '0' && h <= '9')   ? h - '0'
                        : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                        : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                                 : -1;
                if (v < 0)
                    return lex_fail(L, line, "truncated \\%c escape in a string", c);
                cp = cp * 16 + (unsigned)v;
                i++;
            }
        }
        if (hex) {
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                return lex_fail(L, line, "invalid code point in a string escape");
            if (cp < 0x80) {
                o[k++] = (char)cp;
            } else if (cp < 0x800) {
                o[k++] = (char)(0xC0 | (cp >> 6));
                o[k++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                o[k++] = (char)(0xE0 | (cp >> 12));
                o[k++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                o[k++] = (char)(0x80 | (cp & 0x3F));
            } else {
                o[k++] = (char)(0xF0 | (cp >> 18));
                o[k++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                o[k++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                o[k++] = (char)(0x80 | (cp & 0x3F));
            }
        }
    }
    o[k] = 0;
    tk->p = o;
    tk->n = k;
    return 0;
}

static const char *const ops2[] = {"//", "**", "==", "!=", ">=", "<=", NULL};
static const char ops1[] = "+-/*%~[](){}><=.:|,;";

/* Tokens of one tag up to its end delimiter ("}}" or "%}"). */
static int lex_tag(struct lexer *L, int is_block, int open_line)
{
    int balance = 0;
    for (;;) {
        skip_ws(L);
        if (L->pos >= L->n)
            return lex_fail(L, open_line, "unexpected end of template, the tag opened here is not closed");
        const char *p = L->s + L->pos;
        size_t rest = L->n - L->pos;
        const char *end = is_block ? "%}" : "}}";
        if (balance == 0) {
            char sign = 0;
            size_t k = 0;
            if ((p[0] == '-' || p[0] == '+') && rest >= 3 && memcmp(p + 1, end, 2) == 0) {
                sign = p[0];
                k = 3;
            } else if (rest >= 2 && memcmp(p, end, 2) == 0) {
                k = 2;
            }
            if (sign == '+' && !is_block)
                k = 0; /* "+}}" is an operator then "}}" */
            if (k) {
                emit(L, is_block ? T_BLOCK_END : T_VAR_END, L->line, p, k);
                L->pos += k;
                if (sign == '-') {
                    skip_ws(L);
                } else if (sign != '+' && is_block && L->pos < L->n && L->s[L->pos] == '\n') {
                    L->pos++;
                    L->line++;
                }
                L->line_starting = L->pos > 0 && L->s[L->pos - 1] == '\n';
                return 0;
            }
        }
        int line = L->line;
        unsigned char c = (unsigned char)p[0];
        if (c == '\'' || c == '"') {
            size_t i = 1;
            while (i < rest && p[i] != (char)c) {
                if (p[i] == '\\')
                    i++;
                i++;
            }
            if (i >= rest)
                return lex_fail(L, line, "unterminated string");
            struct token *tk = emit(L, T_STRING, line, NULL, 0);
            if (unescape_string(L, p + 1, i - 1, line, tk) < 0)
                return -1;
            count_lines(L, L->pos, L->pos + i + 1);
            L->pos += i + 1;
            continue;
        }
        if (c >= '0' && c <= '9') {
            size_t i = 0;
            int is_float = 0;
            char num[128];
            size_t k = 0;
            while (i < rest && ((p[i] >= '0' && p[i] <= '9') || p[i] == '_')) {
                if (p[i] != '_' && k < sizeof(num) - 1)
                    num[k++] = p[i];
                i++;
            }
            int prev_dot = L->out->n && L->out->v[L->out->n - 1].type == T_OP &&
                           L->out->v[L->out->n - 1].p[0] == '.';
            if (!prev_dot && i + 1 < rest && p[i] == '.' && p[i + 1] >= '0' && p[i + 1] <= '9') {
                is_float = 1;
                num[k++] = p[i++];
                while (i < rest && ((p[i] >= '0' && p[i] <= '9') || p[i] == '_')) {
                    if (p[i] != '_' && k < sizeof(num) - 1)
                        num[k++] = p[i];
                    i++;
                }
            }
            if (!prev_dot && i < rest && (p[i] == 'e' || p[i] == 'E')) {
                size_t j = i + 1;
                if (j < rest && (p[j] == '+' || p[j] == '-'))
                    j++;
                if (j < rest && p[j] >= '0' && p[j] <= '9') {
                    is_float = 1;
                    while (i < j && k < sizeof(num) - 1)
                        num[k++] = p[i++];
                    while (i < rest && p[i] >= '0' && p[i] <= '9' && k < sizeof(num) - 1)
                        num[k++] = p[i++];
                }
            }
            num[k] = 0;
            struct token *tk = emit(L, is_float ? T_FLOAT : T_INT, line, p, i);
            if (is_float)
                tk->f = strtod(num, NULL);
            else
                tk->i = strtoll(num, NULL, 10);
            L->pos += i;
            continue;
        }
        if (c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
            size_t i = 1;
            while (i < rest && (p[i] == '_' || (p[i] >= 'a' && p[i] <= 'z') ||
                                (p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= '0' && p[i] <= '9')))
                i++;
            emit(L, T_NAME, line, p, i);
            L->pos += i;
            continue;
        }
        size_t k = 0;
        for (int j = 0; ops2[j]; j++)
            if (rest >= 2 && memcmp(p, ops2[j], 2) == 0)
                k = 2;
        if (!k && c && strchr(ops1, c))
            k = 1;
        if (!k)
            return lex_fail(L, line, "unexpected character '%c'", c >= 0x20 && c < 0x7f ? c : '?');
        if (k == 1 && (c == '(' || c == '[' || c == '{'))
            balance++;
        if (k == 1 && (c == ')' || c == ']' || c == '}')) {
            if (balance == 0)
                return lex_fail(L, line, "unexpected '%c'", c);
            balance--;
        }
        emit(L, T_OP, line, p, k);
        L->pos += k;
    }
}

/* "{% raw %}" at <p>? Sets *after to the end of the tag. */
static int match_word_tag(const char *s, size_t n, size_t p, const char *word, size_t *after)
{
    size_t i = p + 2;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        i++;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    size_t wl = strlen(word);
    if (i + wl > n || memcmp(s + i, word, wl) != 0)
        return 0;
    i += wl;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    if (i < n && (s[i] == '-' || s[i] == '+'))
        i++;
    if (i + 2 > n || s[i] != '%' || s[i + 1] != '}')
        return 0;
    *after = i + 2;
    return 1;
}

int tp_lex(struct tp_arena *a, const char *src, size_t len, struct tp_tokens *out, char *err,
           size_t errlen)
{
    struct lexer L = {.a = a, .s = src, .n = len, .line = 1, .line_starting = 1, .out = out,
                      .err = err, .errlen = errlen};
    while (L.pos < L.n) {
        size_t i = L.pos;
        const char *hit = NULL;
        while (i + 1 < L.n) {
            hit = memchr(L.s + i, '{', L.n - i - 1);
            if (!hit)
                break;
            char k = hit[1];
            if (k == '{' || k == '%' || k == '#')
                break;
            i = (size_t)(hit - L.s) + 1;
            hit = NULL;
        }
        if (!hit) {
            emit_text(&L, L.pos, L.n, 0, 1, L.line);
            count_lines(&L, L.pos, L.n);
            break;
        }
        size_t tag = (size_t)(hit - L.s);
        char kind = hit[1];
        char sign = (tag + 2 < L.n && (L.s[tag + 2] == '-' || L.s[tag + 2] == '+')) ? L.s[tag + 2] : 0;
        int text_line = L.line;
        emit_text(&L, L.pos, tag, sign, kind == '{', text_line);
        count_lines(&L, L.pos, tag);
        int open_line = L.line;
        if (kind == '#') {
            const char *e = NULL;
            for (size_t j = tag + 2; j + 1 < L.n; j++)
                if (L.s[j] == '#' && L.s[j + 1] == '}') {
                    e = L.s + j;
                    break;
                }
            if (!e)
                return lex_fail(&L, open_line, "missing end of comment tag");
            size_t endp = (size_t)(e - L.s) + 2;
            count_lines(&L, tag, endp);
            L.pos = endp;
            if (e > L.s + tag + 2 && e[-1] == '-') {
                skip_ws(&L);
            } else if (L.pos < L.n && L.s[L.pos] == '\n') {
                L.pos++;
                L.line++;
            }
            L.line_starting = L.pos > 0 && L.s[L.pos - 1] == '\n';
            continue;
        }
        size_t after;
        if (kind == '%' && match_word_tag(L.s, L.n, tag, "raw", &after)) {
            size_t j = after, body_end = 0, end_after = 0;
            for (; j + 1 < L.n; j++)
                if (L.s[j] == '{' && L.s[j + 1] == '%' &&
                    match_word_tag(L.s, L.n, j, "endraw", &end_after)) {
                    body_end = j;
                    break;
                }
            if (!end_after)
                return lex_fail(&L, open_line, "missing end of raw directive");
            size_t b0 = after;
            if (L.s[after - 3] == '-')
                while (b0 < body_end && strchr(" \t\n\r", L.s[b0]))
                    b0++;
            size_t b1 = body_end;
            if (L.s[body_end + 2] == '-')
                b1 = b0 + rstrip_len(L.s + b0, body_end - b0);
            if (b1 > b0)
                emit(&L, T_TEXT, open_line, L.s + b0, b1 - b0);
            count_lines(&L, tag, end_after);
            L.pos = end_after;
            if (L.s[end_after - 3] == '-')
                skip_ws(&L);
            else if (L.pos < L.n && L.s[L.pos] == '\n') {
                L.pos++;
                L.line++;
            }
            L.line_starting = L.pos > 0 && L.s[L.pos - 1] == '\n';
            continue;
        }
        emit(&L, kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN, open_line, hit, 2);
        L.pos = tag + 2 + (sign ? 1 : 0);
        if (lex_tag(&L, kind == '%', open_line) < 0)
            return -1;
    }
    emit(&L, T_EOF, L.line, "", 0);
    return 0;
}
