/*
 * tmpl_value.c -- values of the chat template interpreter: the arena they
 * live in, conversion from jansson, truthiness, equality and ordering, and
 * printing the way Python does (str(), repr(), float repr, json.dumps with
 * ensure_ascii=False). Nothing here evaluates templates or reports errors.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tmpl.h"
#include "util.h"

/* ---- arena ---------------------------------------------------------------- */
struct tp_chunk {
    struct tp_chunk *next;
    size_t used, cap;
    max_align_t data[];
};

void *tp_alloc(struct tp_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (a->limit && a->used_total + n > a->limit)
        return NULL;
    struct tp_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 32768 ? n : 32768;
        c = xmalloc(sizeof(*c) + cap);
        c->used = 0;
        c->cap = cap;
        c->next = a->head;
        a->head = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    a->used_total += n;
    memset(p, 0, n);
    return p;
}

char *tp_strndup(struct tp_arena *a, const char *s, size_t n)
{
    char *p = tp_alloc(a, n + 1);
    if (!p)
        return NULL;
    if (n)
        memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void tp_arena_free(struct tp_arena *a)
{
    struct tp_chunk *c = a->head;
    while (c) {
        struct tp_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->used_total = 0;
}

/* ---- output buffer ---------------------------------------------------------- */
void buf_add(struct tp_buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void buf_addc(struct tp_buf *b, char c)
{
    buf_add(b, &c, 1);
}

void buf_adds(struct tp_buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

/* ---- constructors ------------------------------------------------------------- */
struct tv tv_undef(const char *why)
{
    struct tv v = {.t = TV_UNDEF};
    v.u.undef = why;
    return v;
}

struct tv tv_none(void)
{
    struct tv v = {.t = TV_NONE};
    return v;
}

struct tv tv_bool(int b)
{
    struct tv v = {.t = TV_BOOL};
    v.u.b = !!b;
    return v;
}

struct tv tv_int(long long i)
{
    struct tv v = {.t = TV_INT};
    v.u.i = i;
    return v;
}

struct tv tv_float(double f)
{
    struct tv v = {.t = TV_FLOAT};
    v.u.f = f;
    return v;
}

struct tv tv_str(const char *p, size_t n)
{
    struct tv v = {.t = TV_STR};
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}

struct tv_list *tv_list_new(struct tp_arena *a, size_t cap)
{
    struct tv_list *l = tp_alloc(a, sizeof(*l));
    if (!l)
        return NULL;
    if (cap) {
        l->v = tp_alloc(a, cap * sizeof(struct tv));
        if (!l->v)
            return NULL;
        l->cap = cap;
    }
    return l;
}

void tv_list_push(struct tp_arena *a, struct tv_list *l, struct tv v)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        struct tv *nv = tp_alloc(a, cap * sizeof(*nv));
        if (!nv)
            return; /* over the memory cap: the caller's next check fails */
        if (l->n)
            memcpy(nv, l->v, l->n * sizeof(*nv));
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
}

struct tv_dict *tv_dict_new(struct tp_arena *a, size_t cap)
{
    struct tv_dict *d = tp_alloc(a, sizeof(*d));
    if (!d)
        return NULL;
    (void)cap;
    return d;
}

static long dict_find(const struct tv_dict *d, const char *k, size_t kn)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->kn[i] == kn && memcmp(d->kp[i], k, kn) == 0)
            return (long)i;
    return -1;
}

void tv_dict_set(struct tp_arena *a, struct tv_dict *d, const char *k, size_t kn, struct tv v)
{
    long i = dict_find(d, k, kn);
    if (i >= 0) {
        d->v[i] = v;
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        const char **kp = tp_alloc(a, cap * sizeof(*kp));
        size_t *kl = tp_alloc(a, cap * sizeof(*kl));
        struct tv *nv = tp_alloc(a, cap * sizeof(*nv));
        if (!kp || !kl || !nv)
            return;
        if (d->n) {
            memcpy(kp, d->kp, d->n * sizeof(*kp));
            memcpy(kl, d->kn, d->n * sizeof(*kl));
            memcpy(nv, d->v, d->n * sizeof(*nv));
        }
        d->kp = kp;
        d->kn = kl;
        d->v = nv;
        d->cap = cap;
    }
    d->kp[d->n] = k;
    d->kn[d->n] = kn;
    d->v[d->n] = v;
    d->n++;
}

const struct tv *tv_dict_get(const struct tv_dict *d, const char *k, size_t kn)
{
    long i = dict_find(d, k, kn);
    return i >= 0 ? &d->v[i] : NULL;
}

struct tv tv_from_json(struct tp_arena *a, json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_NULL:
        return tv_none();
    case JSON_TRUE:
        return tv_bool(1);
    case JSON_FALSE:
        return tv_bool(0);
    case JSON_INTEGER:
        return tv_int(json_integer_value(j));
    case JSON_REAL:
        return tv_float(json_real_value(j));
    case JSON_STRING:
        return tv_str(json_string_value(j), json_string_length(j));
    case JSON_ARRAY: {
        struct tv v = {.t = TV_LIST};
        v.u.l = tv_list_new(a, json_array_size(j));
        if (!v.u.l)
            return tv_none();
        for (size_t i = 0; i < json_array_size(j); i++)
            tv_list_push(a, v.u.l, tv_from_json(a, json_array_get(j, i)));
        return v;
    }
    case JSON_OBJECT: {
        struct tv v = {.t = TV_DICT};
        v.u.d = tv_dict_new(a, json_object_size(j));
        if (!v.u.d)
            return tv_none();
        const char *k;
        size_t kl;
        json_t *x;
        json_object_keylen_foreach(j, k, kl, x) tv_dict_set(a, v.u.d, k, kl, tv_from_json(a, x));
        return v;
    }
    }
    return tv_none();
}

/* ---- truth, equality, order -------------------------------------------------------- */
int tv_truthy(struct tv v)
{
    switch (v.t) {
    case TV_UNDEF:
    case TV_NONE:
        return 0;
    case TV_BOOL:
        return v.u.b;
    case TV_INT:
        return v.u.i != 0;
    case TV_FLOAT:
        return v.u.f != 0.0;
    case TV_STR:
        return v.u.s.n != 0;
    case TV_LIST:
        return v.u.l->n != 0;
    case TV_DICT:
        return v.u.d->n != 0;
    default:
        return 1;
    }
}

const char *tv_type_name(struct tv v)
{
    switch (v.t) {
    case TV_UNDEF: return "Undefined";
    case TV_NONE: return "NoneType";
    case TV_BOOL: return "bool";
    case TV_INT: return "int";
    case TV_FLOAT: return "float";
    case TV_STR: return "str";
    case TV_LIST: return v.u.l->tuple ? "tuple" : "list";
    case TV_DICT: return "dict";
    case TV_NS: return "Namespace";
    case TV_LOOP: return "LoopContext";
    case TV_FUNC: return "function";
    case TV_MACRO: return "Macro";
    }
    return "object";
}

static int is_num(struct tv v)
{
    return v.t == TV_INT || v.t == TV_FLOAT || v.t == TV_BOOL;
}

static double num_of(struct tv v)
{
    return v.t == TV_FLOAT ? v.u.f : v.t == TV_INT ? (double)v.u.i : (double)v.u.b;
}

int tv_equal(struct tv x, struct tv y)
{
    if (is_num(x) && is_num(y)) {
        if (x.t != TV_FLOAT && y.t != TV_FLOAT) {
            long long a = x.t == TV_INT ? x.u.i : x.u.b, b = y.t == TV_INT ? y.u.i : y.u.b;
            return a == b;
        }
        return num_of(x) == num_of(y);
    }
    if (x.t != y.t)
        return 0;
    switch (x.t) {
    case TV_UNDEF:
    case TV_NONE:
        return 1;
    case TV_STR:
        return x.u.s.n == y.u.s.n && memcmp(x.u.s.p, y.u.s.p, x.u.s.n) == 0;
    case TV_LIST:
        if (x.u.l->n != y.u.l->n || x.u.l->tuple != y.u.l->tuple)
            return 0;
        for (size_t i = 0; i < x.u.l->n; i++)
            if (!tv_equal(x.u.l->v[i], y.u.l->v[i]))
                return 0;
        return 1;
    case TV_DICT:
        if (x.u.d->n != y.u.d->n)
            return 0;
        for (size_t i = 0; i < x.u.d->n; i++) {
            const struct tv *o = tv_dict_get(y.u.d, x.u.d->kp[i], x.u.d->kn[i]);
            if (!o || !tv_equal(x.u.d->v[i], *o))
                return 0;
        }
        return 1;
    case TV_NS:
        return x.u.d == y.u.d;
    case TV_LOOP:
        return x.u.loop == y.u.loop;
    case TV_FUNC:
        return x.u.fn.id == y.u.fn.id && x.u.fn.self == y.u.fn.self;
    case TV_MACRO:
        return x.u.macro == y.u.macro;
    default:
        return 0;
    }
}

int tv_compare(struct tv x, struct tv y)
{
    if (is_num(x) && is_num(y)) {
        if (x.t != TV_FLOAT && y.t != TV_FLOAT) {
            long long a = x.t == TV_INT ? x.u.i : x.u.b, b = y.t == TV_INT ? y.u.i : y.u.b;
            return a < b ? -1 : a > b;
        }
        double a = num_of(x), b = num_of(y);
        return a < b ? -1 : a > b;
    }
    if (x.t == TV_STR && y.t == TV_STR) {
        size_t n = x.u.s.n < y.u.s.n ? x.u.s.n : y.u.s.n;
        int r = memcmp(x.u.s.p, y.u.s.p, n); /* UTF-8 byte order = code point order */
        if (r)
            return r < 0 ? -1 : 1;
        return x.u.s.n < y.u.s.n ? -1 : x.u.s.n > y.u.s.n;
    }
    if (x.t == TV_LIST && y.t == TV_LIST) {
        size_t n = x.u.l->n < y.u.l->n ? x.u.l->n : y.u.l->n;
        for (size_t i = 0; i < n; i++) {
            if (tv_equal(x.u.l->v[i], y.u.l->v[i]))
                continue;
            return tv_compare(x.u.l->v[i], y.u.l->v[i]);
        }
        return x.u.l->n < y.u.l->n ? -1 : x.u.l->n > y.u.l->n;
    }
    return -2;
}

/* ---- UTF-8 ---------------------------------------------------------------------- */
size_t u8_len(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            k++;
    return k;
}

size_t u8_offset(const char *s, size_t n, size_t cp)
{
    size_t k = 0, i = 0;
    while (i < n) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (k == cp)
                return i;
            k++;
        }
        i++;
    }
    return n;
}

unsigned u8_decode(const char *s, size_t n, size_t *clen)
{
    const unsigned char *p = (const unsigned char *)s;
    if (p[0] < 0x80 || n < 2) {
        *clen = 1;
        return p[0];
    }
    if ((p[0] & 0xE0) == 0xC0) {
        *clen = 2;
        return ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu);
    }
    if ((p[0] & 0xF0) == 0xE0 && n >= 3) {
        *clen = 3;
        return ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
    }
    if (n >= 4) {
        *clen = 4;
        return ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) |
               (p[3] & 0x3Fu);
    }
    *clen = 1;
    return p[0];
}

/* Python's str.isspace() set. */
int u8_isspace_at(const char *s, size_t n, size_t off, size_t *clen)
{
    unsigned c = u8_decode(s + off, n - off, clen);
    if ((c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x20))
        return 1;
    switch (c) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x3000:
        return 1;
    }
    return c >= 0x2000 && c <= 0x200A;
}

/* ---- printing --------------------------------------------------------------------- */
void py_float_repr(struct tp_buf *b, double f)
{
    char tmp[64];
    if (isnan(f)) {
        buf_adds(b, "nan");
        return;
    }
    if (isinf(f)) {
        buf_adds(b, f < 0 ? "-inf" : "inf");
        return;
    }
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f)
            break;
    }
    /* tmp: d.ddde[+-]XX with the shortest round-tripping digits */
    char digits[32];
    size_t nd = 0;
    const char *q = tmp;
    int neg = 0;
    if (*q == '-') {
        neg = 1;
        q++;
    }
    for (; *q && *q != 'e'; q++)
        if (*q >= '0' && *q <= '9')
            digits[nd++] = *q;
    int exp10 = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    if (neg)
        buf_addc(b, '-');
    if (exp10 < -4 || exp10 >= 16) {
        buf_addc(b, digits[0]);
        if (nd > 1) {
            buf_addc(b, '.');
            buf_add(b, digits + 1, nd - 1);
        }
        snprintf(tmp, sizeof(tmp), "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
        buf_adds(b, tmp);
    } else if (exp10 < 0) {
        buf_adds(b, "0.");
        for (int i = 0; i < -exp10 - 1; i++)
            buf_addc(b, '0');
        buf_add(b, digits, nd);
    } else {
        for (int i = 0; i <= exp10; i++)
            buf_addc(b, (size_t)i < nd ? digits[i] : '0');
        buf_addc(b, '.');
        if ((size_t)exp10 + 1 < nd)
            buf_add(b, digits + exp10 + 1, nd - (size_t)exp10 - 1);
        else
            buf_addc(b, '0');
    }
}

static void str_repr(struct tp_buf *b, const char *s, size_t n)
{
    int has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = (has_sq && !has_dq) ? '"' : '\'';
    buf_addc(b, q);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[8];
        if (c == (unsigned char)q || c == '\\') {
            buf_addc(b, '\\');
            buf_addc(b, (char)c);
        } else if (c == '\n') {
            buf_adds(b, "\\n");
        } else if (c == '\r') {
            buf_adds(b, "\\r");
        } else if (c == '\t') {
            buf_adds(b, "\\t");
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(tmp, sizeof(tmp), "\\x%02x", c);
            buf_adds(b, tmp);
        } else {
            buf_addc(b, (char)c);
        }
    }
    buf_addc(b, q);
}

void tv_repr_into(struct tp_buf *b, struct tv v)
{
    switch (v.t) {
    case TV_STR:
        str_repr(b, v.u.s.p, v.u.s.n);
        return;
    case TV_UNDEF:
        return;
    case TV_LIST:
        buf_addc(b, v.u.l->tuple ? '(' : '[');
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i)
                buf_adds(b, ", ");
            tv_repr_into(b, v.u.l->v[i]);
        }
        if (v.u.l->tuple && v.u.l->n == 1)
            buf_addc(b, ',');
        buf_addc(b, v.u.l->tuple ? ')' : ']');
        return;
    case TV_DICT:
    case TV_NS:
        buf_adds(b, v.t == TV_NS ? "<Namespace {" : "{");
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i)
                buf_adds(b, ", ");
            str_repr(b, v.u.d->kp[i], v.u.d->kn[i]);
            buf_adds(b, ": ");
            tv_repr_into(b, v.u.d->v[i]);
        }
        buf_adds(b, v.t == TV_NS ? "}>" : "}");
        return;
    default:
        tv_str_into(b, v);
    }
}

void tv_str_into(struct tp_buf *b, struct tv v)
{
    char tmp[32];
    switch (v.t) {
    case TV_UNDEF:
        return;
    case TV_NONE:
        buf_adds(b, "None");
        return;
    case TV_BOOL:
        buf_adds(b, v.u.b ? "True" : "False");
        return;
    case TV_INT:
        snprintf(tmp, sizeof(tmp), "%lld", v.u.i);
        buf_adds(b, tmp);
        return;
    case TV_FLOAT:
        py_float_repr(b, v.u.f);
        return;
    case TV_STR:
        buf_add(b, v.u.s.p, v.u.s.n);
        return;
    case TV_LIST:
    case TV_DICT:
    case TV_NS:
        tv_repr_into(b, v);
        return;
    case TV_LOOP:
        buf_adds(b, "<LoopContext>");
        return;
    case TV_FUNC:
        buf_adds(b, "<built-in function>");
        return;
    case TV_MACRO:
        buf_adds(b, "<Macro>");
        return;
    }
}

struct tv tv_to_str(struct tp_arena *a, struct tv v)
{
    if (v.t == TV_STR)
        return v;
    struct tp_buf b = {0};
    tv_str_into(&b, v);
    char *p = tp_strndup(a, b.p ? b.p : "", b.n);
    free(b.p);
    return p ? tv_str(p, b.n) : tv_str("", 0);
}

/* ---- json.dumps ------------------------------------------------------------------ */
static void json_str(struct tp_buf *b, const char *s, size_t n, int ensure_ascii)
{
    buf_addc(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char tmp[16];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                snprintf(tmp, sizeof(tmp), "\\u%04x", c);
                esc = tmp;
            } else if (c >= 0x80 && ensure_ascii) {
                size_t cl;
                unsigned cp = u8_decode(s + i, n - i, &cl);
                buf_add(b, s + i - run, run);
                run = 0;
                if (cp >= 0x10000) {
                    cp -= 0x10000;
                    snprintf(tmp, sizeof(tmp), "\\u%04x", 0xD800 + (cp >> 10));
                    buf_adds(b, tmp);
                    cp = 0xDC00 + (cp & 0x3FF);
                }
                snprintf(tmp, sizeof(tmp), "\\u%04x", cp);
                buf_adds(b, tmp);
                i += cl - 1;
                continue;
            }
        }
        if (esc) {
            buf_add(b, s + i - run, run);
            run = 0;
            buf_adds(b, esc);
        } else {
            run++;
        }
    }
    buf_add(b, s + n - run, run);
    buf_addc(b, '"');
}

static void json_indent(struct tp_buf *b, int indent, int level)
{
    buf_addc(b, '\n');
    for (int i = 0; i < indent * level; i++)
        buf_addc(b, ' ');
}

static int key_cmp_idx(const struct tv_dict *d, size_t x, size_t y)
{
    size_t n = d->kn[x] < d->kn[y] ? d->kn[x] : d->kn[y];
    int r = memcmp(d->kp[x], d->kp[y], n);
    if (r)
        return r;
    return d->kn[x] < d->kn[y] ? -1 : d->kn[x] > d->kn[y];
}

static int tojson_level(struct tp_buf *b, struct tv v, const struct tp_json_opts *o, int level)
{
    char tmp[32];
    if (level > TP_MAX_DEPTH)
        return -1;
    switch (v.t) {
    case TV_NONE:
        buf_adds(b, "null");
        return 0;
    case TV_BOOL:
        buf_adds(b, v.u.b ? "true" : "false");
        return 0;
    case TV_INT:
        snprintf(tmp, sizeof(tmp), "%lld", v.u.i);
        buf_adds(b, tmp);
        return 0;
    case TV_FLOAT:
        if (isnan(v.u.f))
            buf_adds(b, "NaN");
        else if (isinf(v.u.f))
            buf_adds(b, v.u.f < 0 ? "-Infinity" : "Infinity");
        else
            py_float_repr(b, v.u.f);
        return 0;
    case TV_STR:
        json_str(b, v.u.s.p, v.u.s.n, o->ensure_ascii);
        return 0;
    case TV_LIST:
        if (v.u.l->n == 0) {
            buf_adds(b, "[]");
            return 0;
        }
        buf_addc(b, '[');
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i)
                buf_adds(b, o->item_sep);
            if (o->indent >= 0)
                json_indent(b, o->indent, level + 1);
            if (tojson_level(b, v.u.l->v[i], o, level + 1) < 0)
                return -1;
        }
        if (o->indent >= 0)
            json_indent(b, o->indent, level);
        buf_addc(b, ']');
        return 0;
    case TV_DICT: {
        const struct tv_dict *d = v.u.d;
        if (d->n == 0) {
            buf_adds(b, "{}");
            return 0;
        }
        size_t *order = xmalloc(d->n * sizeof(*order));
        for (size_t i = 0; i < d->n; i++)
            order[i] = i;
        if (o->sort_keys) /* insertion sort: dicts in chat templates are small */
            for (size_t i = 1; i < d->n; i++)
                for (size_t j = i; j > 0 && key_cmp_idx(d, order[j - 1], order[j]) > 0; j--) {
                    size_t t = order[j];
                    order[j] = order[j - 1];
                    order[j - 1] = t;
                }
        buf_addc(b, '{');
        for (size_t k = 0; k < d->n; k++) {
            size_t i = order[k];
            if (k)
                buf_adds(b, o->item_sep);
            if (o->indent >= 0)
                json_indent(b, o->indent, level + 1);
            json_str(b, d->kp[i], d->kn[i], o->ensure_ascii);
            buf_adds(b, o->key_sep);
            if (tojson_level(b, d->v[i], o, level + 1) < 0) {
                free(order);
                return -1;
            }
        }
        free(order);
        if (o->indent >= 0)
            json_indent(b, o->indent, level);
        buf_addc(b, '}');
        return 0;
    }
    default:
        return -1;
    }
}

int tv_tojson_into(struct tp_buf *b, struct tv v, const struct tp_json_opts *o)
{
    return tojson_level(b, v, o, 0);
}
