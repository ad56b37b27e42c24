/*
 * tmpl_eval.c -- the evaluator: runs the AST against scopes of values and
 * writes the output. Semantics follow jinja2's default Undefined (falsy,
 * prints "", iterates empty; attribute of it, arithmetic on it and calling it
 * are errors) and Python's operators. Every loop iteration and call counts
 * against a step budget, output and memory are capped, and recursion is
 * bounded, so no template can hang or crash the worker.
 */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tmpl.h"

int tp_fail(struct tp_ctx *c, int line, const char *fmt, ...)
{
    if (c->failed)
        return -1;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "template error at line %d: %s", line, msg);
    c->failed = 1;
    return -1;
}

static int oom(struct tp_ctx *c, int line)
{
    return tp_fail(c, line, "template exceeded its memory limit");
}

static const struct tv *scope_lookup(struct tp_scope *s, const char *name, size_t n)
{
    for (; s; s = s->parent) {
        const struct tv *v = tv_dict_get(s->vars, name, n);
        if (v)
            return v;
    }
    return NULL;
}

static int scope_push(struct tp_ctx *c, struct tp_scope *parent)
{
    struct tp_scope *s = tp_alloc(c->a, sizeof(*s));
    if (!s || !(s->vars = tv_dict_new(c->a, 4)))
        return -1;
    s->parent = parent;
    c->scope = s;
    return 0;
}

static int step(struct tp_ctx *c, int line)
{
    if (++c->steps > TP_MAX_STEPS)
        return tp_fail(c, line, "template exceeded its step limit (%lld loop iterations or calls)",
                       TP_MAX_STEPS);
    if (c->a->limit && c->a->used_total > c->a->limit - 4096)
        return oom(c, line);
    return 0;
}

/* ---- operators ------------------------------------------------------------- */
static int undef_op_error(struct tp_ctx *c, int line, struct tv v)
{
    if (v.u.undef)
        return tp_fail(c, line, "%s", v.u.undef);
    return tp_fail(c, line, "operation on an undefined value");
}

static int is_num(struct tv v)
{
    return v.t == TV_INT || v.t == TV_FLOAT || v.t == TV_BOOL;
}

static long long ival(struct tv v)
{
    return v.t == TV_INT ? v.u.i : v.u.b;
}

static double fval(struct tv v)
{
    return v.t == TV_FLOAT ? v.u.f : (double)ival(v);
}

static int concat_lists(struct tp_ctx *c, int line, struct tv x, struct tv y, struct tv *out)
{
    struct tv_list *l = tv_list_new(c->a, x.u.l->n + y.u.l->n);
    if (!l)
        return oom(c, line);
    for (size_t i = 0; i < x.u.l->n; i++)
        tv_list_push(c->a, l, x.u.l->v[i]);
    for (size_t i = 0; i < y.u.l->n; i++)
        tv_list_push(c->a, l, y.u.l->v[i]);
    l->tuple = x.u.l->tuple;
    out->t = TV_LIST;
    out->u.l = l;
    return 0;
}

static int repeat(struct tp_ctx *c, int line, struct tv s, long long k, struct tv *out)
{
    if (k < 0)
        k = 0;
    if (s.t == TV_STR) {
        if (k && s.u.s.n && (unsigned long long)k > TP_MAX_OUT / s.u.s.n)
            return tp_fail(c, line, "string repetition too large");
        char *p = tp_alloc(c->a, s.u.s.n * (size_t)k + 1);
        if (!p)
            return oom(c, line);
        for (long long i = 0; i < k; i++)
            memcpy(p + (size_t)i * s.u.s.n, s.u.s.p, s.u.s.n);
        *out = tv_str(p, s.u.s.n * (size_t)k);
        return 0;
    }
    if (k && s.u.l->n && (unsigned long long)k > 1000000 / s.u.l->n)
        return tp_fail(c, line, "list repetition too large");
    struct tv_list *l = tv_list_new(c->a, s.u.l->n * (size_t)k);
    if (!l)
        return oom(c, line);
    for (long long i = 0; i < k; i++)
        for (size_t j = 0; j < s.u.l->n; j++)
            tv_list_push(c->a, l, s.u.l->v[j]);
    out->t = TV_LIST;
    out->u.l = l;
    return 0;
}

static const char *opname(int op)
{
    static const char *const names[] = {"", "+", "-", "*", "/", "//", "%", "**", "~",
                                        "==", "!=", "<", "<=", ">", ">=", "in", "not in"};
    return op > 0 && op <= OP_NOTIN ? names[op] : "?";
}

static int binop(struct tp_ctx *c, int line, int op, struct tv x, struct tv y, struct tv *out)
{
    if (op == OP_CONCAT) {
        struct tp_buf b = {0};
        tv_str_into(&b, x);
        tv_str_into(&b, y);
        char *p = tp_strndup(c->a, b.p ? b.p : "", b.n);
        size_t n = b.n;
        free(b.p);
        if (!p)
            return oom(c, line);
        *out = tv_str(p, n);
        return 0;
    }
    if (x.t == TV_UNDEF)
        return undef_op_error(c, line, x);
    if (y.t == TV_UNDEF)
        return undef_op_error(c, line, y);
    if (is_num(x) && is_num(y)) {
        int fl = x.t == TV_FLOAT || y.t == TV_FLOAT;
        long long a = ival(x), b = ival(y);
        double fa = fval(x), fb = fval(y);
        switch (op) {
        case OP_ADD:
            *out = fl ? tv_float(fa + fb) : tv_int((long long)((unsigned long long)a + (unsigned long long)b));
            return 0;
        case OP_SUB:
            *out = fl ? tv_float(fa - fb) : tv_int((long long)((unsigned long long)a - (unsigned long long)b));
            return 0;
        case OP_MUL:
            *out = fl ? tv_float(fa * fb) : tv_int((long long)((unsigned long long)a * (unsigned long long)b));
            return 0;
        case OP_DIV:
            if (fb == 0.0)
                return tp_fail(c, line, "division by zero");
            *out = tv_float(fa / fb);
            return 0;
        case OP_FDIV:
        case OP_MOD:
            if (fl) {
                if (fb == 0.0)
                    return tp_fail(c, line, "float division by zero");
                double q = floor(fa / fb);
                *out = op == OP_FDIV ? tv_float(q) : tv_float(fa - q * fb);
                return 0;
            }
            if (b == 0)
                return tp_fail(c, line, "integer division or modulo by zero");
            if (a == LLONG_MIN && b == -1)
                return tp_fail(c, line, "integer overflow");
            {
                long long q = a / b, r = a % b;
                if (r && ((r < 0) != (b < 0))) {
                    q--;
                    r += b;
                }
                *out = tv_int(op == OP_FDIV ? q : r);
            }
            return 0;
        case OP_POW:
            if (!fl && b >= 0) {
                long long r = 1;
                for (long long i = 0; i < b && i < 64; i++)
                    r = (long long)((unsigned long long)r * (unsigned long long)a);
                *out = tv_int(r);
            } else {
                *out = tv_float(pow(fa, fb));
            }
            return 0;
        }
    }
    if (op == OP_ADD && x.t == TV_STR && y.t == TV_STR) {
        char *p = tp_alloc(c->a, x.u.s.n + y.u.s.n + 1);
        if (!p)
            return oom(c, line);
        memcpy(p, x.u.s.p, x.u.s.n);
        memcpy(p + x.u.s.n, y.u.s.p, y.u.s.n);
        *out = tv_str(p, x.u.s.n + y.u.s.n);
        return 0;
    }
    if (op == OP_ADD && x.t == TV_LIST && y.t == TV_LIST && x.u.l->tuple == y.u.l->tuple)
        return concat_lists(c, line, x, y, out);
    if (op == OP_MUL && (x.t == TV_STR || x.t == TV_LIST) && (y.t == TV_INT || y.t == TV_BOOL))
        return repeat(c, line, x, ival(y), out);
    if (op == OP_MUL && (y.t == TV_STR || y.t == TV_LIST) && (x.t == TV_INT || x.t == TV_BOOL))
        return repeat(c, line, y, ival(x), out);
    if (op == OP_ADD && x.t == TV_STR)
        return tp_fail(c, line, "can only concatenate str (not \"%s\") to str", tv_type_name(y));
    return tp_fail(c, line, "unsupported operand type(s) for %s: '%s' and '%s'", opname(op),
                   tv_type_name(x), tv_type_name(y));
}

static int contains(struct tp_ctx *c, int line, struct tv item, struct tv seq, int *out)
{
    switch (seq.t) {
    case TV_UNDEF:
        *out = 0;
        return 0;
    case TV_STR:
        if (item.t != TV_STR)
            return tp_fail(c, line, "'in <string>' requires string as left operand, not %s",
                           tv_type_name(item));
        *out = item.u.s.n == 0 ||
               (item.u.s.n <= seq.u.s.n && memmem(seq.u.s.p, seq.u.s.n, item.u.s.p, item.u.s.n));
        return 0;
    case TV_LIST:
        *out = 0;
        for (size_t i = 0; i < seq.u.l->n; i++)
            if (tv_equal(seq.u.l->v[i], item)) {
                *out = 1;
                break;
            }
        return 0;
    case TV_DICT:
        *out = item.t == TV_STR && tv_dict_get(seq.u.d, item.u.s.p, item.u.s.n) != NULL;
        return 0;
    default:
        return tp_fail(c, line, "argument of type '%s' is not iterable", tv_type_name(seq));
    }
}

static int compare(struct tp_ctx *c, int line, int op, struct tv x, struct tv y, int *out)
{
    switch (op) {
    case OP_EQ:
        *out = tv_equal(x, y);
        return 0;
    case OP_NE:
        *out = !tv_equal(x, y);
        return 0;
    case OP_IN:
        return contains(c, line, x, y, out);
    case OP_NOTIN:
        if (contains(c, line, x, y, out) < 0)
            return -1;
        *out = !*out;
        return 0;
    }
    if (x.t == TV_UNDEF)
        return undef_op_error(c, line, x);
    if (y.t == TV_UNDEF)
        return undef_op_error(c, line, y);
    int r = tv_compare(x, y);
    if (r == -2)
        return tp_fail(c, line, "'%s' not supported between instances of '%s' and '%s'",
                       opname(op), tv_type_name(x), tv_type_name(y));
    *out = op == OP_LT ? r < 0 : op == OP_LE ? r <= 0 : op == OP_GT ? r > 0 : r >= 0;
    return 0;
}

/* ---- slicing ---------------------------------------------------------------------- */
static int slice_bound(struct tp_ctx *c, const struct node *e, long long len, long long stepv,
                       int is_start, long long *out)
{
    if (!e) {
        *out = stepv > 0 ? (is_start ? 0 : len) : (is_start ? len - 1 : -1 - len);
        if (stepv < 0 && !is_start)
            *out = -1; /* sentinel: before index 0 */
        return 1;
    }
    struct tv v;
    if (tp_eval(c, e, &v) < 0)
        return -1;
    if (v.t == TV_NONE || v.t == TV_UNDEF) {
        *out = stepv > 0 ? (is_start ? 0 : len) : (is_start ? len - 1 : -1);
        return 1;
    }
    if (v.t != TV_INT && v.t != TV_BOOL)
        return tp_fail(c, e->line, "slice indices must be integers or None");
    long long i = ival(v);
    if (i < 0)
        i += len;
    if (stepv > 0) {
        if (i < 0)
            i = 0;
        if (i > len)
            i = len;
    } else {
        if (i < 0)
            i = -1;
        if (i >= len)
            i = len - 1;
    }
    *out = i;
    return 0;
}

static int eval_slice(struct tp_ctx *c, const struct node *e, struct tv *out)
{
    struct tv obj;
    if (tp_eval(c, e->a, &obj) < 0)
        return -1;
    long long stepv = 1;
    if (e->d) {
        struct tv s;
        if (tp_eval(c, e->d, &s) < 0)
            return -1;
        if (s.t == TV_INT || s.t == TV_BOOL)
            stepv = ival(s);
        else if (s.t != TV_NONE)
            return tp_fail(c, e->line, "slice indices must be integers or None");
        if (stepv == 0)
            return tp_fail(c, e->line, "slice step cannot be zero");
    }
    long long len;
    if (obj.t == TV_STR)
        len = (long long)u8_len(obj.u.s.p, obj.u.s.n);
    else if (obj.t == TV_LIST)
        len = (long long)obj.u.l->n;
    else if (obj.t == TV_UNDEF)
        return undef_op_error(c, e->line, obj);
    else
        return tp_fail(c, e->line, "'%s' object is not subscriptable", tv_type_name(obj));
    long long start, stop;
    if (slice_bound(c, e->b, len, stepv, 1, &start) < 0 ||
        slice_bound(c, e->c, len, stepv, 0, &stop) < 0)
        return -1;
    if (obj.t == TV_LIST) {
        struct tv_list *l = tv_list_new(c->a, 0);
        if (!l)
            return oom(c, e->line);
        for (long long i = start; stepv > 0 ? i < stop : i > stop; i += stepv)
            tv_list_push(c->a, l, obj.u.l->v[i]);
        l->tuple = obj.u.l->tuple;
        out->t = TV_LIST;
        out->u.l = l;
        return 0;
    }
    /* strings: by code point */
    const char *s = obj.u.s.p;
    size_t n = obj.u.s.n;
    if (stepv == 1) {
        size_t b0 = start < stop ? u8_offset(s, n, (size_t)start) : 0;
        size_t b1 = start < stop ? u8_offset(s, n, (size_t)stop) : 0;
        *out = tv_str(s + b0, b1 - b0);
        return 0;
    }
    size_t *offs = tp_alloc(c->a, ((size_t)len + 1) * sizeof(size_t));
    char *p = tp_alloc(c->a, n + 1);
    if (!offs || !p)
        return oom(c, e->line);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            offs[k++] = i;
    offs[k] = n;
    size_t o = 0;
    for (long long i = start; stepv > 0 ? i < stop : i > stop; i += stepv) {
        size_t cl = offs[i + 1] - offs[i];
        memcpy(p + o, s + offs[i], cl);
        o += cl;
    }
    *out = tv_str(p, o);
    return 0;
}

/* ---- calls ---------------------------------------------------------------------- */
struct argv {
    struct tv *pos;
    size_t npos;
    struct tv *kw;
};

static int eval_args(struct tp_ctx *c, const struct node *e, struct argv *av)
{
    av->pos = tp_alloc(c->a, (e->nkids + 1) * sizeof(struct tv));
    av->kw = tp_alloc(c->a, (e->nkw + 1) * sizeof(struct tv));
    if (!av->pos || !av->kw)
        return oom(c, e->line);
    av->npos = e->nkids;
    for (size_t i = 0; i < e->nkids; i++)
        if (tp_eval(c, e->kids[i], &av->pos[i]) < 0)
            return -1;
    for (size_t i = 0; i < e->nkw; i++)
        if (tp_eval(c, e->kw[i], &av->kw[i]) < 0)
            return -1;
    return 0;
}

int tp_call_macro(struct tp_ctx *c, const struct node *m, int line, struct tv *args, size_t nargs,
                  const char **kwn, struct tv *kwv, size_t nkw, struct tv *out)
{
    if (c->macro_depth >= TP_MAX_MACRO_DEPTH)
        return tp_fail(c, line, "macro recursion too deep");
    if (nargs > m->nnames)
        return tp_fail(c, line, "macro '%s' takes not more than %zu argument(s)", m->name,
                       m->nnames);
    struct tp_scope *saved = c->scope, *global = c->scope;
    while (global->parent)
        global = global->parent;
    struct tp_buf *saved_out = c->out;
    struct tp_buf buf = {0};
    int rc = -1;
    if (scope_push(c, global) < 0) {
        oom(c, line);
        goto fail;
    }
    for (size_t i = 0; i < m->nnames; i++) {
        struct tv v = tv_undef(NULL);
        int found = 0;
        if (i < nargs) {
            v = args[i];
            found = 1;
        }
        for (size_t k = 0; k < nkw; k++)
            if (strcmp(kwn[k], m->names[i]) == 0) {
                v = kwv[k];
                found = 1;
            }
        if (!found && m->kids2[i] && tp_eval(c, m->kids2[i], &v) < 0)
            goto fail;
        tv_dict_set(c->a, c->scope->vars, m->names[i], strlen(m->names[i]), v);
    }
    for (size_t k = 0; k < nkw; k++) {
        int known = 0;
        for (size_t i = 0; i < m->nnames; i++)
            known |= strcmp(kwn[k], m->names[i]) == 0;
        if (!known) {
            tp_fail(c, line, "macro '%s' takes no keyword argument '%s'", m->name, kwn[k]);
            goto fail;
        }
    }
    c->out = &buf;
    c->macro_depth++;
    rc = tp_exec(c, m->a);
    c->macro_depth--;
    c->out = saved_out;
    if (rc == 0) {
        char *p = tp_strndup(c->a, buf.p ? buf.p : "", buf.n);
        if (!p)
            rc = oom(c, line);
        else
            *out = tv_str(p, buf.n);
    }
fail:
    c->out = saved_out;
    c->scope = saved;
    free(buf.p);
    return rc;
}

static int eval_call(struct tp_ctx *c, const struct node *e, struct tv *out)
{
    struct tv fn;
    struct argv av;
    if (tp_eval(c, e->a, &fn) < 0 || eval_args(c, e, &av) < 0 || step(c, e->line) < 0)
        return -1;
    if (fn.t == TV_MACRO)
        return tp_call_macro(c, fn.u.macro, e->line, av.pos, av.npos, e->kwname, av.kw, e->nkw,
                             out);
    return tp_call(c, e->line, fn, av.pos, av.npos, e->kwname, av.kw, e->nkw, out);
}

/* ---- expressions ------------------------------------------------------------------ */
int tp_eval(struct tp_ctx *c, const struct node *e, struct tv *out)
{
    if (c->failed)
        return -1;
    if (!e)
        return tp_fail(c, 0, "internal error: missing expression");
    if (++c->depth > TP_MAX_DEPTH) {
        c->depth--;
        return tp_fail(c, e->line, "expression nested too deeply");
    }
    int rc = 0;
    struct tv x, y;
    switch (e->kind) {
    case N_CONST:
        *out = e->val;
        break;
    case N_NAME: {
        const struct tv *v = scope_lookup(c->scope, e->name, e->namelen);
        if (v)
            *out = *v;
        else if (!tp_global(e->name, out)) {
            char *why = tp_alloc(c->a, e->namelen + 32);
            if (why)
                snprintf(why, e->namelen + 32, "'%s' is undefined", e->name);
            *out = tv_undef(why);
        }
        break;
    }
    case N_ATTR:
        if ((rc = tp_eval(c, e->a, &x)) == 0)
            rc = tp_getattr(c, e->line, x, e->name, e->namelen, out);
        break;
    case N_ITEM:
        if ((rc = tp_eval(c, e->a, &x)) == 0 && (rc = tp_eval(c, e->b, &y)) == 0)
            rc = tp_getitem(c, e->line, x, y, out);
        break;
    case N_SLICE:
        rc = eval_slice(c, e, out);
        break;
    case N_CALL:
        rc = eval_call(c, e, out);
        break;
    case N_FILTER: {
        struct argv av;
        if ((rc = tp_eval(c, e->a, &x)) == 0 && (rc = eval_args(c, e, &av)) == 0)
            rc = tp_filter(c, e->line, e->name, x, av.pos, av.npos, e->kwname, av.kw, e->nkw, out);
        break;
    }
    case N_TEST: {
        struct argv av;
        int r = 0;
        if ((rc = tp_eval(c, e->a, &x)) == 0 && (rc = eval_args(c, e, &av)) == 0 &&
            (rc = tp_test(c, e->line, e->name, x, av.pos, av.npos, &r)) == 0)
            *out = tv_bool(e->op ? !r : r);
        break;
    }
    case N_BIN:
        if ((rc = tp_eval(c, e->a, &x)) == 0 && (rc = tp_eval(c, e->b, &y)) == 0)
            rc = binop(c, e->line, e->op, x, y, out);
        break;
    case N_NEG:
    case N_POS:
        if ((rc = tp_eval(c, e->a, &x)) == 0) {
            if (x.t == TV_INT || x.t == TV_BOOL)
                *out = tv_int(e->kind == N_NEG ? -ival(x) : ival(x));
            else if (x.t == TV_FLOAT)
                *out = tv_float(e->kind == N_NEG ? -x.u.f : x.u.f);
            else if (x.t == TV_UNDEF)
                rc = undef_op_error(c, e->line, x);
            else
                rc = tp_fail(c, e->line, "bad operand type for unary %s: '%s'",
                             e->kind == N_NEG ? "-" : "+", tv_type_name(x));
        }
        break;
    case N_NOT:
        if ((rc = tp_eval(c, e->a, &x)) == 0)
            *out = tv_bool(!tv_truthy(x));
        break;
    case N_AND:
        if ((rc = tp_eval(c, e->a, &x)) == 0) {
            if (!tv_truthy(x))
                *out = x;
            else
                rc = tp_eval(c, e->b, out);
        }
        break;
    case N_OR:
        if ((rc = tp_eval(c, e->a, &x)) == 0) {
            if (tv_truthy(x))
                *out = x;
            else
                rc = tp_eval(c, e->b, out);
        }
        break;
    case N_CMP: {
        if ((rc = tp_eval(c, e->a, &x)) < 0)
            break;
        int r = 1;
        for (size_t i = 0; i < e->nkids && r; i++) {
            if ((rc = tp_eval(c, e->kids[i], &y)) < 0 ||
                (rc = compare(c, e->line, e->ops[i], x, y, &r)) < 0)
                break;
            x = y;
        }
        if (rc == 0)
            *out = tv_bool(r);
        break;
    }
    case N_COND:
        if ((rc = tp_eval(c, e->a, &x)) == 0) {
            if (tv_truthy(x))
                rc = tp_eval(c, e->b, out);
            else if (e->c)
                rc = tp_eval(c, e->c, out);
            else
                *out = tv_undef("the inline if expression evaluated to false and no else section was defined");
        }
        break;
    case N_LIST:
    case N_TUPLE: {
        struct tv_list *l = tv_list_new(c->a, e->nkids);
        if (!l) {
            rc = oom(c, e->line);
            break;
        }
        for (size_t i = 0; i < e->nkids && rc == 0; i++)
            if ((rc = tp_eval(c, e->kids[i], &x)) == 0)
                tv_list_push(c->a, l, x);
        l->tuple = e->kind == N_TUPLE;
        out->t = TV_LIST;
        out->u.l = l;
        break;
    }
    case N_DICT: {
        struct tv_dict *d = tv_dict_new(c->a, e->nkids);
        if (!d) {
            rc = oom(c, e->line);
            break;
        }
        for (size_t i = 0; i < e->nkids && rc == 0; i++) {
            if ((rc = tp_eval(c, e->kids[i], &x)) < 0 || (rc = tp_eval(c, e->kids2[i], &y)) < 0)
                break;
            if (x.t != TV_STR) {
                rc = tp_fail(c, e->line, "only string keys are supported in dict literals");
                break;
            }
            tv_dict_set(c->a, d, x.u.s.p, x.u.s.n, y);
        }
        out->t = TV_DICT;
        out->u.d = d;
        break;
    }
    default:
        rc = tp_fail(c, e->line, "statement used as an expression");
    }
    c->depth--;
    return rc < 0 || c->failed ? -1 : 0;
}

/* ---- statements ----------------------------------------------------------------- */
static int assign(struct tp_ctx *c, const struct node *s, struct tv v)
{
    if (s->nnames == 1 && !s->op) {
        tv_dict_set(c->a, c->scope->vars, s->names[0], strlen(s->names[0]), v);
        return 0;
    }
    struct tv_list *items;
    if (v.t == TV_LIST) {
        items = v.u.l;
    } else if (v.t == TV_STR || v.t == TV_DICT) {
        if (tp_iter(c, s->line, v, &items) < 0)
            return -1;
    } else {
        return tp_fail(c, s->line, "cannot unpack non-iterable %s object", tv_type_name(v));
    }
    if (items->n != s->nnames)
        return tp_fail(c, s->line, "%s values to unpack (expected %zu, got %zu)",
                       items->n > s->nnames ? "too many" : "not enough", s->nnames, items->n);
    for (size_t i = 0; i < s->nnames; i++)
        tv_dict_set(c->a, c->scope->vars, s->names[i], strlen(s->names[i]), items->v[i]);
    return 0;
}

static int exec_for(struct tp_ctx *c, const struct node *s)
{
    struct tv seq;
    struct tv_list *all, *items;
    if (tp_eval(c, s->a, &seq) < 0 || tp_iter(c, s->line, seq, &all) < 0)
        return -1;
    struct tp_scope *saved = c->scope;
    if (scope_push(c, saved) < 0)
        return oom(c, s->line);
    items = all;
    if (s->b) { /* filter first: loop.length counts the kept items */
        items = tv_list_new(c->a, all->n);
        if (!items)
            return oom(c, s->line);
        for (size_t i = 0; i < all->n; i++) {
            struct tv keep;
            if (step(c, s->line) < 0 || assign(c, s, all->v[i]) < 0 || tp_eval(c, s->b, &keep) < 0)
                goto fail;
            if (tv_truthy(keep))
                tv_list_push(c->a, items, all->v[i]);
        }
    }
    struct tp_loop *lp = tp_alloc(c->a, sizeof(*lp));
    if (!lp) {
        oom(c, s->line);
        goto fail;
    }
    lp->items = items;
    lp->length = (long long)items->n;
    struct tv lv = {.t = TV_LOOP};
    lv.u.loop = lp;
    struct tp_scope *iter_scope = c->scope;
    for (size_t i = 0; i < items->n; i++) {
        /* each iteration starts from the outer scope: jinja2 does not carry
         * a {% set %} of one iteration into the next */
        if (step(c, s->line) < 0)
            goto fail;
        iter_scope->vars->n = 0;
        c->scope = iter_scope;
        lp->index0 = (long long)i;
        tv_dict_set(c->a, c->scope->vars, "loop", 4, lv);
        if (assign(c, s, items->v[i]) < 0 || tp_exec(c, s->c) < 0)
            goto fail;
        if (c->brk) {
            c->brk = 0;
            break;
        }
        c->cont = 0;
    }
    c->scope = saved;
    if (items->n == 0 && s->d)
        return tp_exec(c, s->d);
    return 0;
fail:
    c->scope = saved;
    return -1;
}

static int exec_set(struct tp_ctx *c, const struct node *s)
{
    struct tv v;
    if (s->kind == N_SETBLOCK) {
        struct tp_buf *saved = c->out;
        struct tp_buf buf = {0};
        c->out = &buf;
        int rc = tp_exec(c, s->a);
        c->out = saved;
        if (rc == 0) {
            char *p = tp_strndup(c->a, buf.p ? buf.p : "", buf.n);
            if (!p)
                rc = oom(c, s->line);
            else
                tv_dict_set(c->a, c->scope->vars, s->names[0], strlen(s->names[0]),
                            tv_str(p, buf.n));
        }
        free(buf.p);
        return rc;
    }
    if (tp_eval(c, s->a, &v) < 0)
        return -1;
    if (s->op == 2) {
        const struct tv *ns = scope_lookup(c->scope, s->name, strlen(s->name));
        if (!ns || ns->t != TV_NS)
            return tp_fail(c, s->line, "cannot assign attribute on non-namespace object");
        if (s->names[0][0] == '_')
            return tp_fail(c, s->line, "chat templates cannot store underscore-prefixed attributes on a namespace");
        tv_dict_set(c->a, ns->u.d, s->names[0], strlen(s->names[0]), v);
        return 0;
    }
    return assign(c, s, v);
}

int tp_exec(struct tp_ctx *c, const struct node *body)
{
    for (size_t i = 0; i < body->nkids; i++) {
        const struct node *s = body->kids[i];
        struct tv v;
        if (c->failed)
            return -1;
        switch (s->kind) {
        case N_TEXT:
            buf_add(c->out, s->name, s->namelen);
            break;
        case N_OUTPUT:
            if (tp_eval(c, s->a, &v) < 0)
                return -1;
            tv_str_into(c->out, v);
            break;
        case N_IF: {
            int done = 0;
            for (size_t k = 0; k < s->nkids && !done; k++) {
                if (tp_eval(c, s->kids[k], &v) < 0)
                    return -1;
                if (tv_truthy(v)) {
                    done = 1;
                    if (tp_exec(c, s->kids2[k]) < 0)
                        return -1;
                }
            }
            if (!done && s->a && tp_exec(c, s->a) < 0)
                return -1;
            break;
        }
        case N_FOR:
            if (exec_for(c, s) < 0)
                return -1;
            break;
        case N_SET:
        case N_SETBLOCK:
            if (exec_set(c, s) < 0)
                return -1;
            break;
        case N_MACRO:
            v.t = TV_MACRO;
            v.u.macro = s;
            tv_dict_set(c->a, c->scope->vars, s->name, strlen(s->name), v);
            break;
        case N_BREAK:
            c->brk = 1;
            return 0;
        case N_CONTINUE:
            c->cont = 1;
            return 0;
        case N_BODY:
            if (tp_exec(c, s) < 0)
                return -1;
            break;
        default:
            return tp_fail(c, s->line, "expression used as a statement");
        }
        if (c->out->n > c->out_limit)
            return tp_fail(c, s->line, "template output exceeded %zu bytes", c->out_limit);
        if (c->brk || c->cont)
            return 0;
    }
    return 0;
}
