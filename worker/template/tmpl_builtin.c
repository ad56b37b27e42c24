/*
 * tmpl_builtin.c -- what templates call: attribute and item access as
 * jinja2's sandbox resolves them, the globals transformers provides
 * (raise_exception, namespace, range, dict, strftime_now), the string, dict
 * and list methods chat templates use, and jinja2's filters and tests.
 * Mutating methods (append, update, pop...) are refused as the immutable
 * sandbox refuses them. Errors go through tp_fail; nothing here aborts.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <utf8proc.h>

#include "tmpl.h"

enum fn_id {
    F_RAISE = 1, F_NAMESPACE, F_RANGE, F_DICT, F_STRFTIME, F_LOOP_CYCLE,
    F_S_STARTSWITH, F_S_ENDSWITH, F_S_SPLIT, F_S_RSPLIT, F_S_STRIP, F_S_LSTRIP, F_S_RSTRIP,
    F_S_REPLACE, F_S_UPPER, F_S_LOWER, F_S_TITLE, F_S_CAPITALIZE, F_S_FIND, F_S_COUNT,
    F_S_FORMAT, F_S_JOIN, F_S_ISDIGIT, F_S_ISALPHA, F_S_ISSPACE, F_S_SPLITLINES,
    F_D_GET, F_D_ITEMS, F_D_KEYS, F_D_VALUES, F_L_INDEX, F_L_COUNT, F_UNSAFE
};

static const struct { const char *name; int id; } str_methods[] = {
    {"startswith", F_S_STARTSWITH}, {"endswith", F_S_ENDSWITH}, {"split", F_S_SPLIT},
    {"rsplit", F_S_RSPLIT}, {"strip", F_S_STRIP}, {"lstrip", F_S_LSTRIP}, {"rstrip", F_S_RSTRIP},
    {"replace", F_S_REPLACE}, {"upper", F_S_UPPER}, {"lower", F_S_LOWER}, {"title", F_S_TITLE},
    {"capitalize", F_S_CAPITALIZE}, {"find", F_S_FIND}, {"count", F_S_COUNT},
    {"format", F_S_FORMAT}, {"join", F_S_JOIN}, {"isdigit", F_S_ISDIGIT},
    {"isalpha", F_S_ISALPHA}, {"isspace", F_S_ISSPACE}, {"splitlines", F_S_SPLITLINES},
    {NULL, 0}};
static const struct { const char *name; int id; } dict_methods[] = {
    {"get", F_D_GET}, {"items", F_D_ITEMS}, {"keys", F_D_KEYS}, {"values", F_D_VALUES},
    {"pop", F_UNSAFE}, {"popitem", F_UNSAFE}, {"update", F_UNSAFE}, {"setdefault", F_UNSAFE},
    {"clear", F_UNSAFE}, {NULL, 0}};
static const struct { const char *name; int id; } list_methods[] = {
    {"index", F_L_INDEX}, {"count", F_L_COUNT}, {"append", F_UNSAFE}, {"extend", F_UNSAFE},
    {"insert", F_UNSAFE}, {"pop", F_UNSAFE}, {"remove", F_UNSAFE}, {"clear", F_UNSAFE},
    {"sort", F_UNSAFE}, {"reverse", F_UNSAFE}, {NULL, 0}};

static int oom(struct tp_ctx *c, int line)
{
    return tp_fail(c, line, "template exceeded its memory limit");
}

static int name_is(const char *name, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(name, lit, n) == 0;
}

static char *fmt_undef(struct tp_ctx *c, const char *fmt, const char *a, const char *b, size_t bn)
{
    size_t len = strlen(fmt) + strlen(a) + bn + 8;
    char *p = tp_alloc(c->a, len);
    if (p)
        snprintf(p, len, fmt, a, (int)bn, b);
    return p;
}

static const char *obj_desc(struct tv v)
{
    switch (v.t) {
    case TV_NONE: return "'None'";
    case TV_DICT: return "'dict object'";
    case TV_STR: return "'str object'";
    case TV_LIST: return v.u.l->tuple ? "'tuple object'" : "'list object'";
    case TV_INT: return "'int object'";
    case TV_FLOAT: return "'float object'";
    case TV_BOOL: return "'bool object'";
    case TV_NS: return "'Namespace object'";
    case TV_LOOP: return "'LoopContext object'";
    default: return "'object'";
    }
}

static struct tv bound(struct tp_ctx *c, int id, struct tv self)
{
    struct tv f = {.t = TV_FUNC};
    struct tv *s = tp_alloc(c->a, sizeof(*s));
    if (s)
        *s = self;
    f.u.fn.id = id;
    f.u.fn.self = s;
    return f;
}

static int undef_error(struct tp_ctx *c, int line, struct tv v)
{
    return tp_fail(c, line, "%s", v.u.undef ? v.u.undef : "undefined value");
}

int tp_getattr(struct tp_ctx *c, int line, struct tv obj, const char *name, size_t n,
               struct tv *out)
{
    int i;
    switch (obj.t) {
    case TV_UNDEF:
        return undef_error(c, line, obj);
    case TV_DICT:
        for (i = 0; dict_methods[i].name; i++)
            if (name_is(name, n, dict_methods[i].name)) {
                *out = bound(c, dict_methods[i].id, obj);
                return 0;
            }
        /* fall through */
    case TV_NS: {
        const struct tv *v = tv_dict_get(obj.u.d, name, n);
        if (v) {
            *out = *v;
            return 0;
        }
        break;
    }
    case TV_STR:
        for (i = 0; str_methods[i].name; i++)
            if (name_is(name, n, str_methods[i].name)) {
                *out = bound(c, str_methods[i].id, obj);
                return 0;
            }
        break;
    case TV_LIST:
        for (i = 0; list_methods[i].name; i++)
            if (name_is(name, n, list_methods[i].name)) {
                *out = bound(c, list_methods[i].id, obj);
                return 0;
            }
        break;
    case TV_LOOP: {
        const struct tp_loop *lp = obj.u.loop;
        long long k = lp->index0, len = lp->length;
        if (name_is(name, n, "index")) *out = tv_int(k + 1);
        else if (name_is(name, n, "index0")) *out = tv_int(k);
        else if (name_is(name, n, "revindex")) *out = tv_int(len - k);
        else if (name_is(name, n, "revindex0")) *out = tv_int(len - k - 1);
        else if (name_is(name, n, "first")) *out = tv_bool(k == 0);
        else if (name_is(name, n, "last")) *out = tv_bool(k == len - 1);
        else if (name_is(name, n, "length")) *out = tv_int(len);
        else if (name_is(name, n, "depth")) *out = tv_int(1);
        else if (name_is(name, n, "depth0")) *out = tv_int(0);
        else if (name_is(name, n, "previtem"))
            *out = k > 0 ? lp->items->v[k - 1] : tv_undef("there is no previous item");
        else if (name_is(name, n, "nextitem"))
            *out = k + 1 < len ? lp->items->v[k + 1] : tv_undef("there is no next item");
        else if (name_is(name, n, "cycle")) *out = bound(c, F_LOOP_CYCLE, obj);
        else break;
        return 0;
    }
    default:
        break;
    }
    *out = tv_undef(fmt_undef(c, "%s has no attribute '%.*s'", obj_desc(obj), name, n));
    return 0;
}

int tp_getitem(struct tp_ctx *c, int line, struct tv obj, struct tv key, struct tv *out)
{
    if (obj.t == TV_UNDEF)
        return undef_error(c, line, obj);
    if (key.t == TV_STR && (obj.t == TV_DICT || obj.t == TV_NS)) {
        const struct tv *v = tv_dict_get(obj.u.d, key.u.s.p, key.u.s.n);
        if (v) {
            *out = *v;
            return 0;
        }
    }
    if ((key.t == TV_INT || key.t == TV_BOOL) && (obj.t == TV_LIST || obj.t == TV_STR)) {
        long long k = key.t == TV_INT ? key.u.i : key.u.b;
        long long len = obj.t == TV_LIST ? (long long)obj.u.l->n
                                         : (long long)u8_len(obj.u.s.p, obj.u.s.n);
        if (k < 0)
            k += len;
        if (k >= 0 && k < len) {
            if (obj.t == TV_LIST) {
                *out = obj.u.l->v[k];
            } else {
                size_t b0 = u8_offset(obj.u.s.p, obj.u.s.n, (size_t)k);
                size_t cl;
                u8_decode(obj.u.s.p + b0, obj.u.s.n - b0, &cl);
                *out = tv_str(obj.u.s.p + b0, cl);
            }
            return 0;
        }
        *out = tv_undef(fmt_undef(c, "%s has no element %.*s", obj_desc(obj), "", 0));
        return 0;
    }
    if (key.t == TV_STR)
        return tp_getattr(c, line, obj, key.u.s.p, key.u.s.n, out);
    *out = tv_undef(fmt_undef(c, "%s has no such item%.*s", obj_desc(obj), "", 0));
    return 0;
}

int tp_iter(struct tp_ctx *c, int line, struct tv v, struct tv_list **out)
{
    struct tv_list *l;
    switch (v.t) {
    case TV_LIST:
        *out = v.u.l;
        return 0;
    case TV_UNDEF:
        *out = tv_list_new(c->a, 0);
        return *out ? 0 : oom(c, line);
    case TV_DICT:
        if (!(l = tv_list_new(c->a, v.u.d->n)))
            return oom(c, line);
        for (size_t i = 0; i < v.u.d->n; i++)
            tv_list_push(c->a, l, tv_str(v.u.d->kp[i], v.u.d->kn[i]));
        *out = l;
        return 0;
    case TV_STR: {
        if (!(l = tv_list_new(c->a, v.u.s.n)))
            return oom(c, line);
        size_t cl;
        for (size_t i = 0; i < v.u.s.n; i += cl) {
            u8_decode(v.u.s.p + i, v.u.s.n - i, &cl);
            tv_list_push(c->a, l, tv_str(v.u.s.p + i, cl));
        }
        *out = l;
        return 0;
    }
    default:
        return tp_fail(c, line, "'%s' object is not iterable", tv_type_name(v));
    }
}

int tp_global(const char *name, struct tv *out)
{
    static const struct { const char *name; int id; } g[] = {
        {"raise_exception", F_RAISE}, {"namespace", F_NAMESPACE}, {"range", F_RANGE},
        {"dict", F_DICT}, {"strftime_now", F_STRFTIME}, {NULL, 0}};
    for (int i = 0; g[i].name; i++)
        if (strcmp(name, g[i].name) == 0) {
            out->t = TV_FUNC;
            out->u.fn.id = g[i].id;
            out->u.fn.self = NULL;
            return 1;
        }
    return 0;
}

/* ---- string helpers --------------------------------------------------------------- */
static struct tv mkstr(struct tp_ctx *c, const char *p, size_t n)
{
    char *s = tp_strndup(c->a, p, n);
    return s ? tv_str(s, n) : tv_str("", 0);
}

static struct tv buf_to_str(struct tp_ctx *c, struct tp_buf *b)
{
    struct tv v = mkstr(c, b->p ? b->p : "", b->n);
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
    return v;
}

static int in_chars(const char *s, size_t n, size_t off, size_t *cl, struct tv chars)
{
    if (chars.t != TV_STR)
        return u8_isspace_at(s, n, off, cl);
    u8_decode(s + off, n - off, cl);
    return chars.u.s.n && memmem(chars.u.s.p, chars.u.s.n, s + off, *cl) != NULL;
}

/* strip: <which> 1 left, 2 right, 3 both; <chars> TV_STR or whitespace. */
static struct tv strip(struct tv s, struct tv chars, int which)
{
    const char *p = s.u.s.p;
    size_t n = s.u.s.n, b = 0, e = n, cl;
    if (which & 1)
        while (b < n && in_chars(p, n, b, &cl, chars))
            b += cl;
    if (which & 2) {
        size_t i = b, last = b;
        while (i < n) {
            if (!in_chars(p, n, i, &cl, chars))
                last = i + cl;
            i += cl;
        }
        e = last;
    }
    return tv_str(p + b, e - b);
}

static struct tv case_map(struct tp_ctx *c, struct tv s, int mode /* 0 lower 1 upper 2 title 3 cap */)
{
    struct tp_buf b = {0};
    size_t cl;
    int prev_cased = 0, first = 1;
    for (size_t i = 0; i < s.u.s.n; i += cl) {
        utf8proc_int32_t cp = (utf8proc_int32_t)u8_decode(s.u.s.p + i, s.u.s.n - i, &cl);
        utf8proc_int32_t o = cp;
        int is_letter = utf8proc_tolower(cp) != cp || utf8proc_toupper(cp) != cp;
        if (mode == 0)
            o = utf8proc_tolower(cp);
        else if (mode == 1)
            o = utf8proc_toupper(cp);
        else if (mode == 2)
            o = prev_cased ? utf8proc_tolower(cp) : utf8proc_toupper(cp);
        else
            o = first ? utf8proc_toupper(cp) : utf8proc_tolower(cp);
        prev_cased = is_letter;
        int was_first = first;
        first = 0;
        if (cp == 0xDF && (mode == 1 || (mode == 3 && was_first))) {
            buf_adds(&b, mode == 1 ? "SS" : "Ss"); /* Python's full case mapping of ß */
            continue;
        }
        utf8proc_uint8_t enc[4];
        utf8proc_ssize_t k = utf8proc_encode_char(o, enc);
        buf_add(&b, (const char *)enc, (size_t)k);
    }
    return buf_to_str(c, &b);
}

static struct tv replace(struct tp_ctx *c, struct tv s, struct tv old, struct tv new,
                         long long count)
{
    struct tp_buf b = {0};
    long long done = 0;
    if (old.u.s.n == 0) {
        size_t cl;
        for (size_t i = 0; i <= s.u.s.n; i += cl) {
            if (count < 0 || done < count) {
                buf_add(&b, new.u.s.p, new.u.s.n);
                done++;
            }
            if (i == s.u.s.n)
                break;
            u8_decode(s.u.s.p + i, s.u.s.n - i, &cl);
            buf_add(&b, s.u.s.p + i, cl);
        }
        return buf_to_str(c, &b);
    }
    size_t i = 0;
    while (i <= s.u.s.n) {
        const char *h = (count < 0 || done < count)
                            ? memmem(s.u.s.p + i, s.u.s.n - i, old.u.s.p, old.u.s.n)
                            : NULL;
        if (!h) {
            buf_add(&b, s.u.s.p + i, s.u.s.n - i);
            break;
        }
        size_t at = (size_t)(h - s.u.s.p);
        buf_add(&b, s.u.s.p + i, at - i);
        buf_add(&b, new.u.s.p, new.u.s.n);
        i = at + old.u.s.n;
        done++;
    }
    if (!b.p)
        return tv_str("", 0);
    return buf_to_str(c, &b);
}

static int split(struct tp_ctx *c, int line, struct tv s, struct tv sep, long long maxsplit,
                 int from_right, struct tv *out)
{
    struct tv_list *l = tv_list_new(c->a, 4);
    if (!l)
        return oom(c, line);
    const char *p = s.u.s.p;
    size_t n = s.u.s.n, cl;
    if (sep.t == TV_STR && sep.u.s.n == 0)
        return tp_fail(c, line, "empty separator");
    if (sep.t == TV_STR) {
        if (!from_right) {
            size_t i = 0;
            long long k = 0;
            for (;;) {
                const char *h = (maxsplit < 0 || k < maxsplit) ? memmem(p + i, n - i, sep.u.s.p, sep.u.s.n) : NULL;
                if (!h) {
                    tv_list_push(c->a, l, tv_str(p + i, n - i));
                    break;
                }
                tv_list_push(c->a, l, tv_str(p + i, (size_t)(h - p) - i));
                i = (size_t)(h - p) + sep.u.s.n;
                k++;
            }
        } else {
            /* collect from the right, then reverse */
            size_t end = n;
            long long k = 0;
            for (;;) {
                const char *h = NULL;
                if ((maxsplit < 0 || k < maxsplit) && end >= sep.u.s.n)
                    for (size_t j = end - sep.u.s.n + 1; j-- > 0;)
                        if (memcmp(p + j, sep.u.s.p, sep.u.s.n) == 0) {
                            h = p + j;
                            break;
                        }
                if (!h) {
                    tv_list_push(c->a, l, tv_str(p, end));
                    break;
                }
                size_t at = (size_t)(h - p);
                tv_list_push(c->a, l, tv_str(p + at + sep.u.s.n, end - at - sep.u.s.n));
                end = at;
                k++;
            }
            for (size_t a = 0, b = l->n ? l->n - 1 : 0; a < b; a++, b--) {
                struct tv t = l->v[a];
                l->v[a] = l->v[b];
                l->v[b] = t;
            }
        }
    } else if (!from_right) {
        size_t i = 0;
        long long k = 0;
        for (;;) {
            while (i < n && u8_isspace_at(p, n, i, &cl))
                i += cl;
            if (i >= n)
                break;
            if (maxsplit >= 0 && k >= maxsplit) {
                tv_list_push(c->a, l, tv_str(p + i, n - i));
                break;
            }
            size_t j = i;
            while (j < n && !u8_isspace_at(p, n, j, &cl))
                j += cl;
            tv_list_push(c->a, l, tv_str(p + i, j - i));
            k++;
            i = j;
        }
    } else {
        struct tv ws = tv_none();
        struct tv t = strip(s, ws, 2);
        size_t end = t.u.s.n;
        long long k = 0;
        struct tv_list *r = tv_list_new(c->a, 4);
        if (!r)
            return oom(c, line);
        while (end > 0) {
            if (maxsplit >= 0 && k >= maxsplit) {
                tv_list_push(c->a, r, tv_str(p, end));
                break;
            }
            size_t j = end; /* find start of last word */
            size_t start = 0, i = 0;
            while (i < j) {
                if (u8_isspace_at(p, n, i, &cl))
                    start = i + cl;
                i += cl;
            }
            tv_list_push(c->a, r, tv_str(p + start, j - start));
            k++;
            end = start;
            while (end > 0) { /* drop whitespace before it */
                size_t q = end - 1;
                while (q > 0 && ((unsigned char)p[q] & 0xC0) == 0x80)
                    q--;
                if (!u8_isspace_at(p, n, q, &cl))
                    break;
                end = q;
            }
        }
        for (size_t a = r->n; a-- > 0;)
            tv_list_push(c->a, l, r->v[a]);
    }
    out->t = TV_LIST;
    out->u.l = l;
    return 0;
}

static int arg_str(struct tp_ctx *c, int line, const char *fn, struct tv v)
{
    if (v.t == TV_STR)
        return 0;
    return tp_fail(c, line, "%s: expected a string argument, got %s", fn, tv_type_name(v));
}

static int prefix_test(struct tp_ctx *c, int line, struct tv s, struct tv arg, int suffix, int *out)
{
    struct tv_list one = {1, 1, &arg, 0};
    const struct tv_list *l = arg.t == TV_LIST ? arg.u.l : &one;
    *out = 0;
    for (size_t i = 0; i < l->n; i++) {
        struct tv p = l->v[i];
        if (arg_str(c, line, suffix ? "endswith" : "startswith", p) < 0)
            return -1;
        if (p.u.s.n <= s.u.s.n &&
            memcmp(s.u.s.p + (suffix ? s.u.s.n - p.u.s.n : 0), p.u.s.p, p.u.s.n) == 0)
            *out = 1;
    }
    return 0;
}

/* str.format with {} {0} {name} fields, no format specs. */
static int str_format(struct tp_ctx *c, int line, struct tv fmt, struct tv *args, size_t nargs,
                      const char **kwn, struct tv *kwv, size_t nkw, struct tv *out)
{
    struct tp_buf b = {0};
    size_t auto_idx = 0;
    const char *p = fmt.u.s.p;
    size_t n = fmt.u.s.n;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '{' && i + 1 < n && p[i + 1] == '{') {
            buf_addc(&b, '{');
            i++;
        } else if (p[i] == '}' && i + 1 < n && p[i + 1] == '}') {
            buf_addc(&b, '}');
            i++;
        } else if (p[i] == '{') {
            size_t j = i + 1;
            while (j < n && p[j] != '}')
                j++;
            if (j >= n) {
                free(b.p);
                return tp_fail(c, line, "Single '{' encountered in format string");
            }
            const char *f = p + i + 1;
            size_t fl = j - i - 1;
            struct tv v;
            int found = 0;
            if (memchr(f, ':', fl) || memchr(f, '!', fl) || memchr(f, '.', fl) || memchr(f, '[', fl)) {
                free(b.p);
                return tp_fail(c, line, "format specs are not supported in str.format");
            }
            if (fl == 0) {
                if (auto_idx < nargs) {
                    v = args[auto_idx++];
                    found = 1;
                }
            } else if (f[0] >= '0' && f[0] <= '9') {
                size_t k = (size_t)strtoul(f, NULL, 10);
                if (k < nargs) {
                    v = args[k];
                    found = 1;
                }
            } else {
                for (size_t k = 0; k < nkw; k++)
                    if (strlen(kwn[k]) == fl && memcmp(kwn[k], f, fl) == 0) {
                        v = kwv[k];
                        found = 1;
                    }
            }
            if (!found) {
                free(b.p);
                return tp_fail(c, line, "str.format: missing argument for field '{%.*s}'", (int)fl, f);
            }
            tv_str_into(&b, v);
            i = j;
        } else if (p[i] == '}') {
            free(b.p);
            return tp_fail(c, line, "Single '}' encountered in format string");
        } else {
            buf_addc(&b, p[i]);
        }
    }
    *out = buf_to_str(c, &b);
    return 0;
}

static int int_arg(struct tp_ctx *c, int line, struct tv v, long long *out)
{
    if (v.t == TV_INT || v.t == TV_BOOL) {
        *out = v.t == TV_INT ? v.u.i : v.u.b;
        return 0;
    }
    return tp_fail(c, line, "expected an integer argument, got %s", tv_type_name(v));
}

static struct tv kwarg(const char **kwn, struct tv *kwv, size_t nkw, const char *name,
                       struct tv *args, size_t nargs, size_t pos, struct tv dflt)
{
    for (size_t k = 0; k < nkw; k++)
        if (strcmp(kwn[k], name) == 0)
            return kwv[k];
    return pos < nargs ? args[pos] : dflt;
}

static int call_str_method(struct tp_ctx *c, int line, int id, struct tv s, struct tv *args,
                           size_t nargs, const char **kwn, struct tv *kwv, size_t nkw,
                           struct tv *out)
{
    struct tv none = tv_none();
    long long k = -1;
    int r;
    switch (id) {
    case F_S_STARTSWITH:
    case F_S_ENDSWITH:
        if (nargs < 1)
            return tp_fail(c, line, "startswith/endswith takes one argument");
        if (prefix_test(c, line, s, args[0], id == F_S_ENDSWITH, &r) < 0)
            return -1;
        *out = tv_bool(r);
        return 0;
    case F_S_SPLIT:
    case F_S_RSPLIT: {
        struct tv sep = kwarg(kwn, kwv, nkw, "sep", args, nargs, 0, none);
        struct tv ms = kwarg(kwn, kwv, nkw, "maxsplit", args, nargs, 1, tv_int(-1));
        if (sep.t != TV_NONE && arg_str(c, line, "split", sep) < 0)
            return -1;
        if (int_arg(c, line, ms, &k) < 0)
            return -1;
        return split(c, line, s, sep, k, id == F_S_RSPLIT, out);
    }
    case F_S_STRIP:
    case F_S_LSTRIP:
    case F_S_RSTRIP: {
        struct tv chars = nargs ? args[0] : none;
        if (chars.t != TV_NONE && arg_str(c, line, "strip", chars) < 0)
            return -1;
        *out = strip(s, chars, id == F_S_STRIP ? 3 : id == F_S_LSTRIP ? 1 : 2);
        return 0;
    }
    case F_S_REPLACE:
        if (nargs < 2 || arg_str(c, line, "replace", args[0]) < 0 ||
            arg_str(c, line, "replace", args[1]) < 0)
            return nargs < 2 ? tp_fail(c, line, "replace takes two arguments") : -1;
        k = -1;
        if (nargs > 2 && int_arg(c, line, args[2], &k) < 0)
            return -1;
        *out = replace(c, s, args[0], args[1], k);
        return 0;
    case F_S_UPPER:
        *out = case_map(c, s, 1);
        return 0;
    case F_S_LOWER:
        *out = case_map(c, s, 0);
        return 0;
    case F_S_TITLE:
        *out = case_map(c, s, 2);
        return 0;
    case F_S_CAPITALIZE:
        *out = case_map(c, s, 3);
        return 0;
    case F_S_FIND:
    case F_S_COUNT: {
        if (nargs < 1 || arg_str(c, line, "find", args[0]) < 0)
            return nargs < 1 ? tp_fail(c, line, "find/count takes an argument") : -1;
        struct tv sub = args[0];
        if (id == F_S_FIND) {
            const char *h = sub.u.s.n ? memmem(s.u.s.p, s.u.s.n, sub.u.s.p, sub.u.s.n) : s.u.s.p;
            *out = tv_int(h ? (long long)u8_len(s.u.s.p, (size_t)(h - s.u.s.p)) : -1);
            return 0;
        }
        if (!sub.u.s.n) {
            *out = tv_int((long long)u8_len(s.u.s.p, s.u.s.n) + 1);
            return 0;
        }
        long long cnt = 0;
        size_t i = 0;
        const char *h;
        while (i < s.u.s.n && (h = memmem(s.u.s.p + i, s.u.s.n - i, sub.u.s.p, sub.u.s.n))) {
            cnt++;
            i = (size_t)(h - s.u.s.p) + sub.u.s.n;
        }
        *out = tv_int(cnt);
        return 0;
    }
    case F_S_FORMAT:
        return str_format(c, line, s, args, nargs, kwn, kwv, nkw, out);
    case F_S_JOIN: {
        struct tv_list *l;
        if (nargs < 1 || tp_iter(c, line, args[0], &l) < 0)
            return nargs < 1 ? tp_fail(c, line, "join takes an argument") : -1;
        struct tp_buf b = {0};
        for (size_t i = 0; i < l->n; i++) {
            if (l->v[i].t != TV_STR) {
                free(b.p);
                return tp_fail(c, line, "sequence item %zu: expected str instance, %s found", i,
                               tv_type_name(l->v[i]));
            }
            if (i)
                buf_add(&b, s.u.s.p, s.u.s.n);
            buf_add(&b, l->v[i].u.s.p, l->v[i].u.s.n);
        }
        *out = buf_to_str(c, &b);
        return 0;
    }
    case F_S_ISDIGIT:
    case F_S_ISALPHA:
    case F_S_ISSPACE: {
        size_t cl;
        int ok = s.u.s.n > 0;
        for (size_t i = 0; i < s.u.s.n && ok; i += cl) {
            utf8proc_int32_t cp = (utf8proc_int32_t)u8_decode(s.u.s.p + i, s.u.s.n - i, &cl);
            utf8proc_category_t cat = utf8proc_category(cp);
            if (id == F_S_ISDIGIT)
                ok = cat == UTF8PROC_CATEGORY_ND;
            else if (id == F_S_ISALPHA)
                ok = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
            else
                ok = u8_isspace_at(s.u.s.p, s.u.s.n, i, &cl);
        }
        *out = tv_bool(ok);
        return 0;
    }
    case F_S_SPLITLINES: {
        struct tv_list *l = tv_list_new(c->a, 4);
        if (!l)
            return oom(c, line);
        size_t i = 0, st = 0;
        while (i < s.u.s.n) {
            char ch = s.u.s.p[i];
            if (ch == '\n' || ch == '\r') {
                tv_list_push(c->a, l, tv_str(s.u.s.p + st, i - st));
                if (ch == '\r' && i + 1 < s.u.s.n && s.u.s.p[i + 1] == '\n')
                    i++;
                st = i + 1;
            }
            i++;
        }
        if (st < s.u.s.n)
            tv_list_push(c->a, l, tv_str(s.u.s.p + st, s.u.s.n - st));
        out->t = TV_LIST;
        out->u.l = l;
        return 0;
    }
    }
    return tp_fail(c, line, "unknown string method");
}

static int items_of(struct tp_ctx *c, int line, const struct tv_dict *d, struct tv *out)
{
    struct tv_list *l = tv_list_new(c->a, d->n);
    if (!l)
        return oom(c, line);
    for (size_t i = 0; i < d->n; i++) {
        struct tv_list *p = tv_list_new(c->a, 2);
        if (!p)
            return oom(c, line);
        tv_list_push(c->a, p, tv_str(d->kp[i], d->kn[i]));
        tv_list_push(c->a, p, d->v[i]);
        p->tuple = 1;
        struct tv pv = {.t = TV_LIST};
        pv.u.l = p;
        tv_list_push(c->a, l, pv);
    }
    out->t = TV_LIST;
    out->u.l = l;
    return 0;
}

static int make_namespace(struct tp_ctx *c, int line, struct tv *args, size_t nargs,
                          const char **kwn, struct tv *kwv, size_t nkw, struct tv *out, int ns)
{
    struct tv_dict *d = tv_dict_new(c->a, nkw);
    if (!d)
        return oom(c, line);
    for (size_t i = 0; i < nargs; i++) {
        if (args[i].t != TV_DICT)
            return tp_fail(c, line, "%s() positional argument must be a mapping",
                           ns ? "namespace" : "dict");
        for (size_t k = 0; k < args[i].u.d->n; k++)
            tv_dict_set(c->a, d, args[i].u.d->kp[k], args[i].u.d->kn[k], args[i].u.d->v[k]);
    }
    for (size_t k = 0; k < nkw; k++) {
        if (ns && kwn[k][0] == '_')
            return tp_fail(c, line, "chat templates cannot store underscore-prefixed attributes on a namespace");
        tv_dict_set(c->a, d, kwn[k], strlen(kwn[k]), kwv[k]);
    }
    out->t = ns ? TV_NS : TV_DICT;
    out->u.d = d;
    return 0;
}

int tp_call(struct tp_ctx *c, int line, struct tv fn, struct tv *args, size_t nargs,
            const char **kwn, struct tv *kwv, size_t nkw, struct tv *out)
{
    if (fn.t == TV_UNDEF)
        return undef_error(c, line, fn);
    if (fn.t != TV_FUNC)
        return tp_fail(c, line, "'%s' object is not callable", tv_type_name(fn));
    struct tv self = fn.u.fn.self ? *fn.u.fn.self : tv_none();
    switch (fn.u.fn.id) {
    case F_RAISE: {
        struct tp_buf b = {0};
        if (nargs)
            tv_str_into(&b, args[0]);
        if (!c->failed) {
            snprintf(c->err, c->errlen, "%s", b.p ? b.p : "");
            c->failed = 1;
        }
        free(b.p);
        return -1;
    }
    case F_NAMESPACE:
    case F_DICT:
        return make_namespace(c, line, args, nargs, kwn, kwv, nkw, out, fn.u.fn.id == F_NAMESPACE);
    case F_RANGE: {
        long long a = 0, b = 0, st = 1;
        if (nargs < 1 || nargs > 3)
            return tp_fail(c, line, "range expected 1 to 3 arguments");
        for (size_t i = 0; i < nargs; i++)
            if (args[i].t != TV_INT && args[i].t != TV_BOOL)
                return tp_fail(c, line, "range() arguments must be integers");
        if (nargs == 1) {
            b = args[0].u.i;
        } else {
            a = args[0].u.i;
            b = args[1].u.i;
            if (nargs == 3)
                st = args[2].u.i;
        }
        if (st == 0)
            return tp_fail(c, line, "range() arg 3 must not be zero");
        long long cnt = st > 0 ? (b > a ? (b - a + st - 1) / st : 0) : (a > b ? (a - b - st - 1) / -st : 0);
        if (cnt > 100000)
            return tp_fail(c, line, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
        struct tv_list *l = tv_list_new(c->a, (size_t)cnt);
        if (!l)
            return oom(c, line);
        for (long long i = 0; i < cnt; i++)
            tv_list_push(c->a, l, tv_int(a + i * st));
        out->t = TV_LIST;
        out->u.l = l;
        return 0;
    }
    case F_STRFTIME: {
        if (nargs < 1 || args[0].t != TV_STR)
            return tp_fail(c, line, "strftime_now expects a format string");
        char fmt[256], res[512];
        snprintf(fmt, sizeof(fmt), "%.*s", (int)args[0].u.s.n, args[0].u.s.p);
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        size_t n = strftime(res, sizeof(res), fmt, &tm);
        *out = mkstr(c, res, n);
        return 0;
    }
    case F_LOOP_CYCLE:
        if (!nargs)
            return tp_fail(c, line, "no items for cycling given");
        *out = args[self.u.loop->index0 % (long long)nargs];
        return 0;
    case F_D_GET: {
        if (nargs < 1)
            return tp_fail(c, line, "get expected at least 1 argument");
        const struct tv *v = args[0].t == TV_STR ? tv_dict_get(self.u.d, args[0].u.s.p, args[0].u.s.n) : NULL;
        *out = v ? *v : (nargs > 1 ? args[1] : tv_none());
        return 0;
    }
    case F_D_ITEMS:
        return items_of(c, line, self.u.d, out);
    case F_D_KEYS:
    case F_D_VALUES: {
        struct tv_list *l = tv_list_new(c->a, self.u.d->n);
        if (!l)
            return oom(c, line);
        for (size_t i = 0; i < self.u.d->n; i++)
            tv_list_push(c->a, l, fn.u.fn.id == F_D_KEYS ? tv_str(self.u.d->kp[i], self.u.d->kn[i])
                                                        : self.u.d->v[i]);
        out->t = TV_LIST;
        out->u.l = l;
        return 0;
    }
    case F_L_INDEX:
    case F_L_COUNT: {
        if (nargs < 1)
            return tp_fail(c, line, "index/count takes an argument");
        long long cnt = 0;
        for (size_t i = 0; i < self.u.l->n; i++)
            if (tv_equal(self.u.l->v[i], args[0])) {
                if (fn.u.fn.id == F_L_INDEX) {
                    *out = tv_int((long long)i);
                    return 0;
                }
                cnt++;
            }
        if (fn.u.fn.id == F_L_INDEX)
            return tp_fail(c, line, "value is not in list");
        *out = tv_int(cnt);
        return 0;
    }
    case F_UNSAFE:
        return tp_fail(c, line, "modifying a %s is not allowed in a chat template (immutable sandbox)",
                       tv_type_name(self));
    default:
        if (self.t == TV_STR)
            return call_str_method(c, line, fn.u.fn.id, self, args, nargs, kwn, kwv, nkw, out);
    }
    return tp_fail(c, line, "object is not callable");
}

/* ---- names known at compile time (jinja2 rejects unknown ones there) ---------------- */
static const char *const FILTERS[] = {
    "tojson", "safe", "string", "e", "escape", "forceescape", "default", "d", "length", "count",
    "items", "list", "first", "last", "join", "upper", "lower", "capitalize", "title", "trim",
    "replace", "int", "float", "abs", "round", "reverse", "map", "select", "reject",
    "selectattr", "rejectattr", "attr", "unique", "sort", "min", "max", "sum", "indent",
    "wordcount", "center", NULL};
static const char *const TESTS[] = {
    "defined", "undefined", "none", "string", "number", "integer", "float", "boolean", "true",
    "false", "mapping", "iterable", "sequence", "callable", "lower", "upper", "odd", "even",
    "divisibleby", "eq", "equalto", "==", "ne", "!=", "sameas", "lt", "lessthan", "gt",
    "greaterthan", "le", "ge", "in", NULL};

static int known(const char *const *list, const char *name)
{
    for (int i = 0; list[i]; i++)
        if (!strcmp(list[i], name))
            return 1;
    return 0;
}

int tp_filter_known(const char *name)
{
    return known(FILTERS, name);
}

int tp_test_known(const char *name)
{
    return known(TESTS, name);
}

/* ---- tests ------------------------------------------------------------------------- */
int tp_test(struct tp_ctx *c, int line, const char *name, struct tv v, struct tv *args,
            size_t nargs, int *out)
{
    struct tv a0 = nargs ? args[0] : tv_undef(NULL);
    int t = v.t;
    if (!strcmp(name, "defined")) *out = t != TV_UNDEF;
    else if (!strcmp(name, "undefined")) *out = t == TV_UNDEF;
    else if (!strcmp(name, "none")) *out = t == TV_NONE;
    else if (!strcmp(name, "string")) *out = t == TV_STR;
    else if (!strcmp(name, "number")) *out = t == TV_INT || t == TV_FLOAT || t == TV_BOOL;
    else if (!strcmp(name, "integer")) *out = t == TV_INT;
    else if (!strcmp(name, "float")) *out = t == TV_FLOAT;
    else if (!strcmp(name, "boolean")) *out = t == TV_BOOL;
    else if (!strcmp(name, "true")) *out = t == TV_BOOL && v.u.b;
    else if (!strcmp(name, "false")) *out = t == TV_BOOL && !v.u.b;
    else if (!strcmp(name, "mapping")) *out = t == TV_DICT;
    else if (!strcmp(name, "iterable")) *out = t == TV_LIST || t == TV_DICT || t == TV_STR || t == TV_UNDEF;
    else if (!strcmp(name, "sequence")) *out = t == TV_LIST || t == TV_DICT || t == TV_STR || t == TV_UNDEF;
    else if (!strcmp(name, "callable")) *out = t == TV_FUNC || t == TV_MACRO;
    else if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        if (t != TV_STR) {
            *out = 0;
        } else {
            struct tv m = case_map(c, v, name[0] == 'l' ? 0 : 1);
            *out = tv_equal(m, v);
        }
    } else if (!strcmp(name, "odd") || !strcmp(name, "even") || !strcmp(name, "divisibleby")) {
        if (t != TV_INT && t != TV_BOOL)
            return tp_fail(c, line, "test '%s' needs an integer", name);
        long long x = t == TV_INT ? v.u.i : v.u.b, d = 2;
        if (name[0] == 'd' && int_arg(c, line, a0, &d) < 0)
            return -1;
        if (d == 0)
            return tp_fail(c, line, "integer division or modulo by zero");
        long long r = x % d;
        *out = name[0] == 'o' ? r != 0 : r == 0;
    } else if (!strcmp(name, "eq") || !strcmp(name, "equalto") || !strcmp(name, "==")) *out = tv_equal(v, a0);
    else if (!strcmp(name, "ne") || !strcmp(name, "!=")) *out = !tv_equal(v, a0);
    else if (!strcmp(name, "sameas")) *out = tv_equal(v, a0) && v.t == a0.t;
    else if (!strcmp(name, "lt") || !strcmp(name, "lessthan") || !strcmp(name, "gt") ||
             !strcmp(name, "greaterthan") || !strcmp(name, "le") || !strcmp(name, "ge")) {
        int r = tv_compare(v, a0);
        if (r == -2)
            return tp_fail(c, line, "'%s' not supported between instances of '%s' and '%s'", name,
                           tv_type_name(v), tv_type_name(a0));
        *out = name[0] == 'l' ? (name[1] == 'e' ? r <= 0 : r < 0) : (name[1] == 'e' ? r >= 0 : r > 0);
    } else if (!strcmp(name, "in")) {
        *out = 0;
        if (a0.t == TV_STR && v.t == TV_STR)
            *out = v.u.s.n == 0 || memmem(a0.u.s.p, a0.u.s.n, v.u.s.p, v.u.s.n) != NULL;
        else if (a0.t == TV_LIST)
            for (size_t i = 0; i < a0.u.l->n; i++)
                *out |= tv_equal(a0.u.l->v[i], v);
        else if (a0.t == TV_DICT)
            *out = v.t == TV_STR && tv_dict_get(a0.u.d, v.u.s.p, v.u.s.n) != NULL;
    } else {
        return tp_fail(c, line, "no test named '%s'", name);
    }
    return 0;
}

/* ---- filters ---------------------------------------------------------------------- */
static int filter_attr(struct tp_ctx *c, int line, struct tv item, struct tv attr, struct tv *out)
{
    if (attr.t == TV_INT)
        return tp_getitem(c, line, item, attr, out);
    if (attr.t != TV_STR)
        return tp_fail(c, line, "attribute must be a string");
    /* dotted paths: "a.b" */
    const char *p = attr.u.s.p, *e = p + attr.u.s.n;
    *out = item;
    while (p <= e) {
        const char *dot = memchr(p, '.', (size_t)(e - p));
        size_t n = dot ? (size_t)(dot - p) : (size_t)(e - p);
        struct tv key = tv_str(p, n);
        if (n && p[0] >= '0' && p[0] <= '9')
            key = tv_int(strtoll(p, NULL, 10));
        if (out->t == TV_UNDEF)
            return 0;
        if (tp_getitem(c, line, *out, key, out) < 0)
            return -1;
        if (!dot)
            break;
        p = dot + 1;
    }
    return 0;
}

static int html_escape(struct tp_ctx *c, struct tv v, struct tv *out)
{
    struct tp_buf b = {0}, s = {0};
    tv_str_into(&s, v);
    for (size_t i = 0; i < s.n; i++) {
        switch (s.p[i]) {
        case '&': buf_adds(&b, "&amp;"); break;
        case '<': buf_adds(&b, "&lt;"); break;
        case '>': buf_adds(&b, "&gt;"); break;
        case '"': buf_adds(&b, "&#34;"); break;
        case '\'': buf_adds(&b, "&#39;"); break;
        default: buf_addc(&b, s.p[i]);
        }
    }
    free(s.p);
    *out = buf_to_str(c, &b);
    return 0;
}

static int select_items(struct tp_ctx *c, int line, struct tv v, struct tv *args, size_t nargs,
                        int by_attr, int reject, struct tv *out)
{
    struct tv_list *l, *res;
    if (tp_iter(c, line, v, &l) < 0)
        return -1;
    if (!(res = tv_list_new(c->a, l->n)))
        return oom(c, line);
    size_t first_test = by_attr ? 1 : 0;
    if (by_attr && nargs < 1)
        return tp_fail(c, line, "selectattr/rejectattr need an attribute");
    for (size_t i = 0; i < l->n; i++) {
        struct tv x = l->v[i];
        if (by_attr && filter_attr(c, line, x, args[0], &x) < 0)
            return -1;
        int keep;
        if (nargs > first_test) {
            if (args[first_test].t != TV_STR)
                return tp_fail(c, line, "test name must be a string");
            char *tn = tp_strndup(c->a, args[first_test].u.s.p, args[first_test].u.s.n);
            if (!tn)
                return oom(c, line);
            if (tp_test(c, line, tn, x, args + first_test + 1, nargs - first_test - 1, &keep) < 0)
                return -1;
        } else {
            keep = tv_truthy(x);
        }
        if (keep != reject)
            tv_list_push(c->a, res, l->v[i]);
    }
    out->t = TV_LIST;
    out->u.l = res;
    return 0;
}

static int sort_cmp_ok(struct tp_ctx *c, int line, struct tv a, struct tv b, int *r)
{
    *r = tv_compare(a, b);
    if (*r == -2)
        return tp_fail(c, line, "'<' not supported between instances of '%s' and '%s'",
                       tv_type_name(a), tv_type_name(b));
    return 0;
}

int tp_filter(struct tp_ctx *c, int line, const char *name, struct tv v, struct tv *args,
              size_t nargs, const char **kwn, struct tv *kwv, size_t nkw, struct tv *out)
{
    struct tv none = tv_none();
    struct tv_list *l;
    if (!strcmp(name, "tojson")) {
        struct tv ind = kwarg(kwn, kwv, nkw, "indent", args, nargs, 1, none);
        struct tv asc = kwarg(kwn, kwv, nkw, "ensure_ascii", args, nargs, 0, tv_bool(0));
        struct tv sep = kwarg(kwn, kwv, nkw, "separators", args, nargs, 2, none);
        struct tv srt = kwarg(kwn, kwv, nkw, "sort_keys", args, nargs, 3, tv_bool(0));
        /* transformers' signature: tojson(x, ensure_ascii, indent, separators, sort_keys) */
        struct tp_json_opts o = {.indent = -1, .ensure_ascii = tv_truthy(asc),
                                 .sort_keys = tv_truthy(srt), .item_sep = ", ", .key_sep = ": "};
        if (ind.t == TV_INT) {
            o.indent = ind.u.i < 0 ? 0 : (int)(ind.u.i > 64 ? 64 : ind.u.i);
            o.item_sep = ",";
        } else if (ind.t == TV_STR) {
            return tp_fail(c, line, "tojson: string indent is not supported");
        }
        char *is = NULL, *ks = NULL;
        if (sep.t == TV_LIST && sep.u.l->n == 2 && sep.u.l->v[0].t == TV_STR && sep.u.l->v[1].t == TV_STR) {
            is = tp_strndup(c->a, sep.u.l->v[0].u.s.p, sep.u.l->v[0].u.s.n);
            ks = tp_strndup(c->a, sep.u.l->v[1].u.s.p, sep.u.l->v[1].u.s.n);
            if (!is || !ks)
                return oom(c, line);
            o.item_sep = is;
            o.key_sep = ks;
        }
        struct tp_buf b = {0};
        if (tv_tojson_into(&b, v, &o) < 0) {
            free(b.p);
            if (v.t == TV_UNDEF)
                return tp_fail(c, line, "Object of type Undefined is not JSON serializable");
            return tp_fail(c, line, "a value inside is not JSON serializable");
        }
        *out = buf_to_str(c, &b);
        return 0;
    }
    if (!strcmp(name, "safe")) {
        *out = v;
        return 0;
    }
    if (!strcmp(name, "string")) {
        *out = tv_to_str(c->a, v);
        return 0;
    }
    if (!strcmp(name, "e") || !strcmp(name, "escape") || !strcmp(name, "forceescape"))
        return html_escape(c, v, out);
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        struct tv dv = kwarg(kwn, kwv, nkw, "default_value", args, nargs, 0, tv_str("", 0));
        struct tv bo = kwarg(kwn, kwv, nkw, "boolean", args, nargs, 1, tv_bool(0));
        *out = (v.t == TV_UNDEF || (tv_truthy(bo) && !tv_truthy(v))) ? dv : v;
        return 0;
    }
    if (!strcmp(name, "length") || !strcmp(name, "count")) {
        if (v.t == TV_STR) *out = tv_int((long long)u8_len(v.u.s.p, v.u.s.n));
        else if (v.t == TV_LIST) *out = tv_int((long long)v.u.l->n);
        else if (v.t == TV_DICT || v.t == TV_NS) *out = tv_int((long long)v.u.d->n);
        else if (v.t == TV_UNDEF) *out = tv_int(0);
        else return tp_fail(c, line, "object of type '%s' has no len()", tv_type_name(v));
        return 0;
    }
    if (!strcmp(name, "items")) {
        if (v.t == TV_UNDEF) {
            out->t = TV_LIST;
            out->u.l = tv_list_new(c->a, 0);
            return out->u.l ? 0 : oom(c, line);
        }
        if (v.t != TV_DICT)
            return tp_fail(c, line, "Can only get item pairs from a mapping.");
        return items_of(c, line, v.u.d, out);
    }
    if (!strcmp(name, "list")) {
        if (tp_iter(c, line, v, &l) < 0)
            return -1;
        struct tv_list *cp = tv_list_new(c->a, l->n);
        if (!cp)
            return oom(c, line);
        for (size_t i = 0; i < l->n; i++)
            tv_list_push(c->a, cp, l->v[i]);
        out->t = TV_LIST;
        out->u.l = cp;
        return 0;
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        if (tp_iter(c, line, v, &l) < 0)
            return -1;
        *out = l->n ? l->v[name[0] == 'f' ? 0 : l->n - 1]
                    : tv_undef(name[0] == 'f' ? "No first item, sequence was empty."
                                              : "No last item, sequence was empty.");
        return 0;
    }
    if (!strcmp(name, "join")) {
        struct tv sep = kwarg(kwn, kwv, nkw, "d", args, nargs, 0, tv_str("", 0));
        struct tv attr = kwarg(kwn, kwv, nkw, "attribute", args, nargs, 1, none);
        if (tp_iter(c, line, v, &l) < 0)
            return -1;
        struct tp_buf b = {0};
        for (size_t i = 0; i < l->n; i++) {
            struct tv x = l->v[i];
            if (attr.t != TV_NONE && filter_attr(c, line, x, attr, &x) < 0) {
                free(b.p);
                return -1;
            }
            if (i)
                tv_str_into(&b, sep);
            tv_str_into(&b, x);
        }
        *out = buf_to_str(c, &b);
        return 0;
    }
    if (!strcmp(name, "upper") || !strcmp(name, "lower") || !strcmp(name, "capitalize") ||
        !strcmp(name, "title")) {
        struct tv s = tv_to_str(c->a, v);
        *out = case_map(c, s, name[0] == 'l' ? 0 : name[0] == 'u' ? 1 : name[0] == 't' ? 2 : 3);
        return 0;
    }
    if (!strcmp(name, "trim")) {
        struct tv s = tv_to_str(c->a, v);
        struct tv chars = kwarg(kwn, kwv, nkw, "chars", args, nargs, 0, none);
        *out = strip(s, chars.t == TV_STR ? chars : none, 3);
        return 0;
    }
    if (!strcmp(name, "replace")) {
        struct tv s = tv_to_str(c->a, v);
        if (nargs < 2)
            return tp_fail(c, line, "replace filter takes two arguments");
        struct tv o = tv_to_str(c->a, args[0]), nw = tv_to_str(c->a, args[1]);
        long long k = -1;
        struct tv cnt = kwarg(kwn, kwv, nkw, "count", args, nargs, 2, none);
        if (cnt.t != TV_NONE && int_arg(c, line, cnt, &k) < 0)
            return -1;
        *out = replace(c, s, o, nw, k);
        return 0;
    }
    if (!strcmp(name, "int") || !strcmp(name, "float")) {
        int is_int = name[0] == 'i';
        struct tv dv = kwarg(kwn, kwv, nkw, "default", args, nargs, 0, is_int ? tv_int(0) : tv_float(0.0));
        double f = 0;
        int ok = 1;
        if (v.t == TV_INT || v.t == TV_BOOL) f = (double)(v.t == TV_INT ? v.u.i : v.u.b);
        else if (v.t == TV_FLOAT) f = v.u.f;
        else if (v.t == TV_STR) {
            char tmp[64];
            struct tv s = strip(v, none, 3);
            if (s.u.s.n == 0 || s.u.s.n >= sizeof(tmp)) {
                ok = 0;
            } else {
                memcpy(tmp, s.u.s.p, s.u.s.n);
                tmp[s.u.s.n] = 0;
                char *end;
                if (is_int) {
                    long long x = strtoll(tmp, &end, 10);
                    if (*end == 0) {
                        *out = tv_int(x);
                        return 0;
                    }
                }
                f = strtod(tmp, &end);
                ok = *end == 0;
            }
        } else ok = 0;
        if (!ok) {
            *out = dv;
            return 0;
        }
        if (v.t == TV_INT && is_int) {
            *out = v;
            return 0;
        }
        *out = is_int ? tv_int((long long)f) : tv_float(f);
        return 0;
    }
    if (!strcmp(name, "abs")) {
        if (v.t == TV_INT) *out = tv_int(v.u.i < 0 ? -v.u.i : v.u.i);
        else if (v.t == TV_FLOAT) *out = tv_float(fabs(v.u.f));
        else if (v.t == TV_BOOL) *out = tv_int(v.u.b);
        else return tp_fail(c, line, "bad operand type for abs(): '%s'", tv_type_name(v));
        return 0;
    }
    if (!strcmp(name, "round")) {
        struct tv pr = kwarg(kwn, kwv, nkw, "precision", args, nargs, 0, tv_int(0));
        struct tv me = kwarg(kwn, kwv, nkw, "method", args, nargs, 1, tv_str("common", 6));
        if (v.t != TV_INT && v.t != TV_FLOAT && v.t != TV_BOOL)
            return tp_fail(c, line, "round needs a number");
        double x = v.t == TV_FLOAT ? v.u.f : (double)(v.t == TV_INT ? v.u.i : v.u.b);
        double m = pow(10.0, (double)(pr.t == TV_INT ? pr.u.i : 0));
        if (me.t == TV_STR && me.u.s.n == 4 && !memcmp(me.u.s.p, "ceil", 4)) x = ceil(x * m) / m;
        else if (me.t == TV_STR && me.u.s.n == 5 && !memcmp(me.u.s.p, "floor", 5)) x = floor(x * m) / m;
        else x = nearbyint(x * m) / m; /* Python's round(): half to even */
        *out = tv_float(x);
        return 0;
    }
    if (!strcmp(name, "reverse")) {
        if (v.t == TV_STR) {
            struct tp_buf b = {0};
            size_t i = v.u.s.n;
            while (i > 0) {
                size_t q = i - 1;
                while (q > 0 && ((unsigned char)v.u.s.p[q] & 0xC0) == 0x80)
                    q--;
                buf_add(&b, v.u.s.p + q, i - q);
                i = q;
            }
            *out = buf_to_str(c, &b);
            return 0;
        }
        if (tp_iter(c, line, v, &l) < 0)
            return -1;
        struct tv_list *r = tv_list_new(c->a, l->n);
        if (!r)
            return oom(c, line);
        for (size_t i = l->n; i-- > 0;)
            tv_list_push(c->a, r, l->v[i]);
        out->t = TV_LIST;
        out->u.l = r;
        return 0;
    }
    if (!strcmp(name, "map")) {
        if (tp_iter(c, line, v, &l) < 0)
            return -1;
        struct tv_list *r = tv_list_new(c->a, l->n);
        if (!r)
            return oom(c, line);
        struct tv attr = kwarg(kwn, kwv, nkw, "attribute", NULL, 0, 0, none);
        struct tv dflt = kwarg(kwn, kwv, nkw, "default", NULL, 0, 0, tv_undef(NULL));
        char *fname = NULL;
        if (attr.t == TV_NONE) {
            if (nargs < 1 || args[0].t != TV_STR)
                return tp_fail(c, line, "map needs a filter name or attribute=");
            fname = tp_strndup(c->a, args[0].u.s.p, args[0].u.s.n);
            if (!fname)
                return oom(c, line);
        }
        for (size_t i = 0; i < l->n; i++) {
            struct tv x;
            if (fname) {
                if (tp_filter(c, line, fname, l->v[i], args + 1, nargs - 1, NULL, NULL, 0, &x) < 0)
                    return -1;
            } else {
                if (filter_attr(c, line, l->v[i], attr, &x) < 0)
                    return -1;
                if (x.t == TV_UNDEF && dflt.t != TV_UNDEF)
                    x = dflt;
            }
            tv_list_push(c->a, r, x);
        }
        out->t = TV_LIST;
        out->u.l = r;
        return 0;
    }
    if (!strcmp(name, "select") || !strcmp(name, "reject"))
        return select_items(c, line, v, args, nargs, 0, name[0] == 'r', out);
    if (!strcmp(name, "selectattr") || !strcmp(name, "rejectattr"))
        return select_items(c, line, v, args, nargs, 1, name[0] == 'r', out);
    if (!strcmp(name, "attr")) {
        if (nargs < 1 || args[0].t != TV_STR)
            return tp_fail(c, line, "attr needs a name");
        return tp_getattr(c, line, v, args[0].u.s.p, args[0].u.s.n, out);
    }
    if (!strcmp(name, "unique") || !strcmp(name, "sort") || !strcmp(name, "min") ||
        !strcmp(name, "max") || !strcmp(name, "sum")) {
        struct tv attr = kwarg(kwn, kwv, nkw, "attribute", NULL, 0, 0, none);
        if (tp_iter(c, line, v, &l) < 0)
            return -1;
        size_t n = l->n;
        struct tv *keys = tp_alloc(c->a, (n + 1) * sizeof(*keys));
        struct tv *vals = tp_alloc(c->a, (n + 1) * sizeof(*vals));
        if (!keys || !vals)
            return oom(c, line);
        for (size_t i = 0; i < n; i++) {
            vals[i] = l->v[i];
            keys[i] = l->v[i];
            if (attr.t != TV_NONE && filter_attr(c, line, l->v[i], attr, &keys[i]) < 0)
                return -1;
        }
        if (!strcmp(name, "sum")) {
            struct tv acc = kwarg(kwn, kwv, nkw, "start", args, nargs, 1, tv_int(0));
            for (size_t i = 0; i < n; i++) {
                struct tv k = keys[i];
                if ((k.t != TV_INT && k.t != TV_FLOAT && k.t != TV_BOOL) ||
                    (acc.t != TV_INT && acc.t != TV_FLOAT))
                    return tp_fail(c, line, "sum needs numbers");
                if (acc.t == TV_INT && k.t != TV_FLOAT)
                    acc = tv_int(acc.u.i + (k.t == TV_INT ? k.u.i : k.u.b));
                else
                    acc = tv_float((acc.t == TV_INT ? (double)acc.u.i : acc.u.f) +
                                   (k.t == TV_FLOAT ? k.u.f : (double)(k.t == TV_INT ? k.u.i : k.u.b)));
            }
            *out = acc;
            return 0;
        }
        if (!strcmp(name, "unique")) {
            struct tv_list *r = tv_list_new(c->a, n);
            if (!r)
                return oom(c, line);
            for (size_t i = 0; i < n; i++) {
                int seen = 0;
                for (size_t j = 0; j < i && !seen; j++)
                    seen = tv_equal(keys[j], keys[i]);
                if (!seen)
                    tv_list_push(c->a, r, vals[i]);
            }
            out->t = TV_LIST;
            out->u.l = r;
            return 0;
        }
        if (!strcmp(name, "min") || !strcmp(name, "max")) {
            if (!n) {
                *out = tv_undef("No aggregated item, sequence was empty.");
                return 0;
            }
            size_t best = 0;
            for (size_t i = 1; i < n; i++) {
                int r;
                if (sort_cmp_ok(c, line, keys[i], keys[best], &r) < 0)
                    return -1;
                if (name[1] == 'i' ? r < 0 : r > 0)
                    best = i;
            }
            *out = vals[best];
            return 0;
        }
        /* sort: stable insertion sort */
        struct tv rev = kwarg(kwn, kwv, nkw, "reverse", args, nargs, 0, tv_bool(0));
        int desc = tv_truthy(rev);
        for (size_t i = 1; i < n; i++)
            for (size_t j = i; j > 0; j--) {
                int r;
                if (sort_cmp_ok(c, line, keys[j - 1], keys[j], &r) < 0)
                    return -1;
                if (desc ? r >= 0 : r <= 0)
                    break;
                struct tv t = keys[j]; keys[j] = keys[j - 1]; keys[j - 1] = t;
                t = vals[j]; vals[j] = vals[j - 1]; vals[j - 1] = t;
            }
        struct tv_list *r = tv_list_new(c->a, n);
        if (!r)
            return oom(c, line);
        for (size_t i = 0; i < n; i++)
            tv_list_push(c->a, r, vals[i]);
        out->t = TV_LIST;
        out->u.l = r;
        return 0;
    }
    if (!strcmp(name, "indent")) {
        struct tv w = kwarg(kwn, kwv, nkw, "width", args, nargs, 0, tv_int(4));
        struct tv first = kwarg(kwn, kwv, nkw, "first", args, nargs, 1, tv_bool(0));
        struct tv blank = kwarg(kwn, kwv, nkw, "blank", args, nargs, 2, tv_bool(0));
        struct tv s = tv_to_str(c->a, v);
        struct tp_buf pad = {0}, b = {0};
        if (w.t == TV_STR)
            buf_add(&pad, w.u.s.p, w.u.s.n);
        else
            for (long long i = 0; i < (w.t == TV_INT ? w.u.i : 4) && i < 256; i++)
                buf_addc(&pad, ' ');
        size_t st = 0;
        int lineno = 0;
        for (size_t i = 0; i <= s.u.s.n; i++) {
            if (i < s.u.s.n && s.u.s.p[i] != '\n')
                continue;
            size_t len = i - st;
            if ((lineno > 0 || tv_truthy(first)) && (len > 0 || tv_truthy(blank)))
                buf_add(&b, pad.p ? pad.p : "", pad.n);
            buf_add(&b, s.u.s.p + st, len);
            if (i < s.u.s.n)
                buf_addc(&b, '\n');
            st = i + 1;
            lineno++;
        }
        free(pad.p);
        *out = buf_to_str(c, &b);
        return 0;
    }
    if (!strcmp(name, "wordcount")) {
        struct tv s = tv_to_str(c->a, v), r;
        if (split(c, line, s, none, -1, 0, &r) < 0)
            return -1;
        *out = tv_int((long long)r.u.l->n);
        return 0;
    }
    if (!strcmp(name, "center")) {
        struct tv s = tv_to_str(c->a, v);
        long long w = 80;
        if (nargs && int_arg(c, line, args[0], &w) < 0)
            return -1;
        long long len = (long long)u8_len(s.u.s.p, s.u.s.n);
        struct tp_buf b = {0};
        long long total = w > len ? w - len : 0, left = total / 2 + (total & w & 1);
        for (long long i = 0; i < left && i < 4096; i++)
            buf_addc(&b, ' ');
        buf_add(&b, s.u.s.p, s.u.s.n);
        for (long long i = 0; i < total - left && i < 4096; i++)
            buf_addc(&b, ' ');
        *out = buf_to_str(c, &b);
        return 0;
    }
    return tp_fail(c, line, "no filter named '%s'", name);
}
