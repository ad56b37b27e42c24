/*
 * tmpl_parse.c -- the template parser: tokens to an AST with jinja2's
 * grammar and operator precedence (condexpr < or < and < not < compare <
 * +,- < ~ < *,/,//,% < ** < unary < postfix, filters and tests). Statements:
 * if/elif/else, for (targets, filter, else), set (names, ns.attr, block),
 * macro, break/continue and transformers' generation block. A nesting
 * limit keeps hostile templates from exhausting the stack.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tmpl.h"

struct parser {
    struct tp_arena *a;
    const struct token *t;
    size_t n, i;
    int depth;
    char *err;
    size_t errlen;
    int failed;
};

static int pfail(struct parser *P, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int pfail(struct parser *P, int line, const char *fmt, ...)
{
    if (P->failed)
        return -1;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(P->err, P->errlen, "template syntax error at line %d: %s", line, msg);
    P->failed = 1;
    return -1;
}

static const struct token *cur(struct parser *P)
{
    return &P->t[P->i < P->n ? P->i : P->n - 1];
}

static const struct token *peek(struct parser *P, size_t k)
{
    size_t j = P->i + k;
    return &P->t[j < P->n ? j : P->n - 1];
}

static void next(struct parser *P)
{
    if (P->i < P->n - 1)
        P->i++;
}

static int is_op(const struct token *t, const char *op)
{
    return t->type == T_OP && t->n == strlen(op) && memcmp(t->p, op, t->n) == 0;
}

static int is_name(const struct token *t, const char *name)
{
    return t->type == T_NAME && t->n == strlen(name) && memcmp(t->p, name, t->n) == 0;
}

static const char *tok_desc(const struct token *t)
{
    switch (t->type) {
    case T_EOF: return "end of template";
    case T_VAR_END: return "end of print statement";
    case T_BLOCK_END: return "end of statement block";
    case T_TEXT: return "text";
    default: return "token";
    }
}

static int expect_op(struct parser *P, const char *op)
{
    if (!is_op(cur(P), op))
        return pfail(P, cur(P)->line, "expected '%s', got %s '%.*s'", op, tok_desc(cur(P)),
                     (int)(cur(P)->n > 20 ? 20 : cur(P)->n), cur(P)->p ? cur(P)->p : "");
    next(P);
    return 0;
}

static struct node *mk(struct parser *P, enum node_kind k, int line)
{
    struct node *n = tp_alloc(P->a, sizeof(*n));
    n->kind = k;
    n->line = line;
    return n;
}

/* growable node arrays in the arena */
struct nvec {
    struct node **v;
    size_t n, cap;
};

static void nv_push(struct parser *P, struct nvec *v, struct node *x)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        struct node **nv = tp_alloc(P->a, cap * sizeof(*nv));
        if (v->n)
            memcpy(nv, v->v, v->n * sizeof(*nv));
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = x;
}

static const char *tok_name(struct parser *P, const struct token *t)
{
    return tp_strndup(P->a, t->p, t->n);
}

static struct node *parse_expr(struct parser *P);
static struct node *parse_or(struct parser *P);
static struct node *parse_unary(struct parser *P, int with_filter);
static struct node *parse_primary(struct parser *P);
static struct node *parse_postfix(struct parser *P, struct node *n);
static struct node *parse_tuple(struct parser *P, int with_condexpr, int explicit_parens);

static int enter(struct parser *P)
{
    if (++P->depth > TP_MAX_DEPTH)
        return pfail(P, cur(P)->line, "expressions or blocks nested too deeply");
    return 0;
}

/* (args) after a callable, filter or test: positional and keyword. */
static int parse_args(struct parser *P, struct node *call)
{
    struct nvec pos = {0}, kw = {0};
    const char **names = NULL;
    size_t ncap = 0;
    if (expect_op(P, "(") < 0)
        return -1;
    while (!is_op(cur(P), ")")) {
        if (pos.n + kw.n && expect_op(P, ",") < 0)
            return -1;
        if (is_op(cur(P), ")"))
            break;
        if (cur(P)->type == T_NAME && is_op(peek(P, 1), "=")) {
            const char *nm = tok_name(P, cur(P));
            next(P);
            next(P);
            struct node *v = parse_expr(P);
            if (!v)
                return -1;
            if (kw.n == ncap) {
                size_t cap = ncap ? ncap * 2 : 4;
                const char **nn = tp_alloc(P->a, cap * sizeof(*nn));
                if (kw.n)
                    memcpy(nn, names, kw.n * sizeof(*nn));
                names = nn;
                ncap = cap;
            }
            names[kw.n] = nm;
            nv_push(P, &kw, v);
        } else {
            if (is_op(cur(P), "*"))
                return pfail(P, cur(P)->line, "*args and **kwargs are not supported");
            if (kw.n)
                return pfail(P, cur(P)->line, "positional argument after keyword argument");
            struct node *v = parse_expr(P);
            if (!v)
                return -1;
            nv_push(P, &pos, v);
        }
    }
    next(P);
    call->kids = pos.v;
    call->nkids = pos.n;
    call->kw = kw.v;
    call->kwname = names;
    call->nkw = kw.n;
    return 0;
}

static struct node *parse_filter_expr(struct parser *P, struct node *n)
{
    for (;;) {
        const struct token *t = cur(P);
        if (is_op(t, "|")) {
            next(P);
            if (cur(P)->type != T_NAME)
                return pfail(P, cur(P)->line, "expected a filter name after '|'"), NULL;
            struct node *f = mk(P, N_FILTER, cur(P)->line);
            f->a = n;
            f->name = tok_name(P, cur(P));
            next(P);
            if (!tp_filter_known(f->name))
                return pfail(P, f->line, "no filter named '%s'", f->name), NULL;
            if (is_op(cur(P), "(") && parse_args(P, f) < 0)
                return NULL;
            n = f;
        } else if (is_name(t, "is")) {
            next(P);
            struct node *te = mk(P, N_TEST, t->line);
            if (is_name(cur(P), "not")) {
                te->op = 1;
                next(P);
            }
            if (cur(P)->type != T_NAME)
                return pfail(P, cur(P)->line, "expected a test name after 'is'"), NULL;
            te->a = n;
            te->name = tok_name(P, cur(P));
            if (!tp_test_known(te->name))
                return pfail(P, cur(P)->line, "no test named '%s'", te->name), NULL;
            next(P);
            const struct token *c = cur(P);
            if (is_op(c, "(")) {
                if (parse_args(P, te) < 0)
                    return NULL;
            } else if ((c->type == T_NAME || c->type == T_STRING || c->type == T_INT ||
                        c->type == T_FLOAT || is_op(c, "[") || is_op(c, "{")) &&
                       !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and") &&
                       !is_name(c, "if") && !is_name(c, "in") && !is_name(c, "not")) {
                if (is_name(c, "is"))
                    return pfail(P, c->line, "you cannot chain multiple tests with is"), NULL;
                struct node *arg = parse_primary(P);
                if (!arg || !(arg = parse_postfix(P, arg)))
                    return NULL;
                te->kids = tp_alloc(P->a, sizeof(struct node *));
                te->kids[0] = arg;
                te->nkids = 1;
            }
            n = te;
        } else if (is_op(t, "(")) {
            struct node *call = mk(P, N_CALL, t->line);
            call->a = n;
            if (parse_args(P, call) < 0)
                return NULL;
            n = call;
        } else {
            return n;
        }
    }
}

static struct node *parse_subscribed(struct parser *P)
{
    int line = cur(P)->line;
    struct node *parts[3] = {NULL, NULL, NULL};
    if (!is_op(cur(P), ":")) {
        parts[0] = parse_expr(P);
        if (!parts[0])
            return NULL;
        if (!is_op(cur(P), ":"))
            return parts[0];
    }
    next(P); /* first ':' */
    if (!is_op(cur(P), "]") && !is_op(cur(P), ",") && !is_op(cur(P), ":")) {
        if (!(parts[1] = parse_expr(P)))
            return NULL;
    }
    if (is_op(cur(P), ":")) {
        next(P);
        if (!is_op(cur(P), "]") && !is_op(cur(P), ",")) {
            if (!(parts[2] = parse_expr(P)))
                return NULL;
        }
    }
    struct node *s = mk(P, N_SLICE, line);
    s->b = parts[0];
    s->c = parts[1];
    s->d = parts[2];
    return s;
}

static struct node *parse_postfix(struct parser *P, struct node *n)
{
    for (;;) {
        const struct token *t = cur(P);
        if (is_op(t, ".")) {
            next(P);
            const struct token *a = cur(P);
            if (a->type == T_NAME) {
                struct node *x = mk(P, N_ATTR, a->line);
                x->a = n;
                x->name = tok_name(P, a);
                x->namelen = a->n;
                n = x;
            } else if (a->type == T_INT) {
                struct node *x = mk(P, N_ITEM, a->line);
                struct node *k = mk(P, N_CONST, a->line);
                k->val = tv_int(a->i);
                x->a = n;
                x->b = k;
                n = x;
            } else {
                return pfail(P, a->line, "expected a name after '.'"), NULL;
            }
            next(P);
        } else if (is_op(t, "[")) {
            next(P);
            struct nvec idx = {0};
            while (!is_op(cur(P), "]")) {
                if (idx.n && expect_op(P, ",") < 0)
                    return NULL;
                if (is_op(cur(P), "]"))
                    break;
                struct node *s = parse_subscribed(P);
                if (!s)
                    return NULL;
                nv_push(P, &idx, s);
            }
            next(P);
            if (idx.n == 0)
                return pfail(P, t->line, "expected a subscript"), NULL;
            struct node *key = idx.v[0];
            for (size_t k = 0; idx.n > 1 && k < idx.n; k++)
                if (idx.v[k]->kind == N_SLICE)
                    return pfail(P, t->line, "slices inside a tuple subscript are not supported"), NULL;
            if (idx.n > 1) {
                key = mk(P, N_TUPLE, t->line);
                key->kids = idx.v;
                key->nkids = idx.n;
            }
            if (key->kind == N_SLICE) {
                key->a = n;
                n = key;
            } else {
                struct node *x = mk(P, N_ITEM, t->line);
                x->a = n;
                x->b = key;
                n = x;
            }
        } else if (is_op(t, "(")) {
            struct node *call = mk(P, N_CALL, t->line);
            call->a = n;
            if (parse_args(P, call) < 0)
                return NULL;
            n = call;
        } else {
            return n;
        }
    }
}

static struct node *parse_primary(struct parser *P)
{
    const struct token *t = cur(P);
    struct node *n;
    if (enter(P) < 0)
        return NULL;
    switch (t->type) {
    case T_NAME:
        n = mk(P, N_CONST, t->line);
        if (is_name(t, "true") || is_name(t, "True"))
            n->val = tv_bool(1);
        else if (is_name(t, "false") || is_name(t, "False"))
            n->val = tv_bool(0);
        else if (is_name(t, "none") || is_name(t, "None"))
            n->val = tv_none();
        else {
            n->kind = N_NAME;
            n->name = tok_name(P, t);
            n->namelen = t->n;
        }
        next(P);
        break;
    case T_STRING: {
        /* adjacent literals concatenate */
        size_t total = 0, j = P->i;
        while (j < P->n && P->t[j].type == T_STRING)
            total += P->t[j++].n;
        char *s = tp_alloc(P->a, total + 1);
        size_t k = 0;
        while (cur(P)->type == T_STRING) {
            memcpy(s + k, cur(P)->p, cur(P)->n);
            k += cur(P)->n;
            next(P);
        }
        n = mk(P, N_CONST, t->line);
        n->val = tv_str(s, total);
        break;
    }
    case T_INT:
        n = mk(P, N_CONST, t->line);
        n->val = tv_int(t->i);
        next(P);
        break;
    case T_FLOAT:
        n = mk(P, N_CONST, t->line);
        n->val = tv_float(t->f);
        next(P);
        break;
    case T_OP:
        if (is_op(t, "(")) {
            next(P);
            n = parse_tuple(P, 1, 1);
            if (!n || expect_op(P, ")") < 0)
                return NULL;
        } else if (is_op(t, "[")) {
            next(P);
            struct nvec items = {0};
            while (!is_op(cur(P), "]")) {
                if (items.n && expect_op(P, ",") < 0)
                    return NULL;
                if (is_op(cur(P), "]"))
                    break;
                struct node *x = parse_expr(P);
                if (!x)
                    return NULL;
                nv_push(P, &items, x);
            }
            next(P);
            n = mk(P, N_LIST, t->line);
            n->kids = items.v;
            n->nkids = items.n;
        } else if (is_op(t, "{")) {
            next(P);
            struct nvec keys = {0}, vals = {0};
            while (!is_op(cur(P), "}")) {
                if (keys.n && expect_op(P, ",") < 0)
                    return NULL;
                if (is_op(cur(P), "}"))
                    break;
                struct node *k = parse_expr(P);
                if (!k || expect_op(P, ":") < 0)
                    return NULL;
                struct node *v = parse_expr(P);
                if (!v)
                    return NULL;
                nv_push(P, &keys, k);
                nv_push(P, &vals, v);
            }
            next(P);
            n = mk(P, N_DICT, t->line);
            n->kids = keys.v;
            n->nkids = keys.n;
            n->kids2 = vals.v;
            n->nkids2 = vals.n;
        } else {
            return pfail(P, t->line, "unexpected '%.*s'", (int)t->n, t->p), NULL;
        }
        break;
    default:
        return pfail(P, t->line, "unexpected %s", tok_desc(t)), NULL;
    }
    P->depth--;
    return n;
}

static struct node *parse_unary(struct parser *P, int with_filter)
{
    const struct token *t = cur(P);
    struct node *n;
    if (enter(P) < 0)
        return NULL;
    if (is_op(t, "-") || is_op(t, "+")) {
        next(P);
        struct node *x = parse_unary(P, 0);
        if (!x)
            return NULL;
        n = mk(P, is_op(t, "-") ? N_NEG : N_POS, t->line);
        n->a = x;
    } else {
        n = parse_primary(P);
    }
    if (n)
        n = parse_postfix(P, n);
    if (n && with_filter)
        n = parse_filter_expr(P, n);
    P->depth--;
    return n;
}

static struct node *binop(struct parser *P, int op, int line, struct node *l, struct node *r)
{
    struct node *n = mk(P, N_BIN, line);
    n->op = op;
    n->a = l;
    n->b = r;
    return n;
}

static struct node *parse_pow(struct parser *P)
{
    struct node *l = parse_unary(P, 1);
    while (l && is_op(cur(P), "**")) {
        int line = cur(P)->line;
        next(P);
        struct node *r = parse_unary(P, 1);
        if (!r)
            return NULL;
        l = binop(P, OP_POW, line, l, r);
    }
    return l;
}

static struct node *parse_math2(struct parser *P)
{
    struct node *l = parse_pow(P);
    for (;;) {
        if (!l)
            return NULL;
        const struct token *t = cur(P);
        int op = is_op(t, "*") ? OP_MUL : is_op(t, "/") ? OP_DIV : is_op(t, "//") ? OP_FDIV
                 : is_op(t, "%") ? OP_MOD : 0;
        if (!op)
            return l;
        next(P);
        struct node *r = parse_pow(P);
        if (!r)
            return NULL;
        l = binop(P, op, t->line, l, r);
    }
}

static struct node *parse_concat(struct parser *P)
{
    struct node *l = parse_math2(P);
    while (l && is_op(cur(P), "~")) {
        int line = cur(P)->line;
        next(P);
        struct node *r = parse_math2(P);
        if (!r)
            return NULL;
        l = binop(P, OP_CONCAT, line, l, r);
    }
    return l;
}

static struct node *parse_math1(struct parser *P)
{
    struct node *l = parse_concat(P);
    for (;;) {
        if (!l)
            return NULL;
        const struct token *t = cur(P);
        int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : 0;
        if (!op)
            return l;
        next(P);
        struct node *r = parse_concat(P);
        if (!r)
            return NULL;
        l = binop(P, op, t->line, l, r);
    }
}

static struct node *parse_compare(struct parser *P)
{
    struct node *first = parse_math1(P);
    if (!first)
        return NULL;
    struct nvec rhs = {0};
    int ops[64];
    size_t nops = 0;
    for (;;) {
        const struct token *t = cur(P);
        int op = is_op(t, "==") ? OP_EQ : is_op(t, "!=") ? OP_NE : is_op(t, "<") ? OP_LT
                 : is_op(t, "<=") ? OP_LE : is_op(t, ">") ? OP_GT : is_op(t, ">=") ? OP_GE
                 : is_name(t, "in") ? OP_IN : 0;
        if (!op && is_name(t, "not") && is_name(peek(P, 1), "in")) {
            op = OP_NOTIN;
            next(P);
        }
        if (!op)
            break;
        if (nops == 64)
            return pfail(P, t->line, "comparison chain too long"), NULL;
        next(P);
        struct node *r = parse_math1(P);
        if (!r)
            return NULL;
        ops[nops++] = op;
        nv_push(P, &rhs, r);
    }
    if (!nops)
        return first;
    struct node *n = mk(P, N_CMP, first->line);
    n->a = first;
    n->kids = rhs.v;
    n->nkids = rhs.n;
    n->ops = tp_alloc(P->a, nops * sizeof(int));
    memcpy(n->ops, ops, nops * sizeof(int));
    return n;
}

static struct node *parse_not(struct parser *P)
{
    if (is_name(cur(P), "not")) {
        int line = cur(P)->line;
        next(P);
        if (enter(P) < 0)
            return NULL;
        struct node *x = parse_not(P);
        P->depth--;
        if (!x)
            return NULL;
        struct node *n = mk(P, N_NOT, line);
        n->a = x;
        return n;
    }
    return parse_compare(P);
}

static struct node *parse_and(struct parser *P)
{
    struct node *l = parse_not(P);
    while (l && is_name(cur(P), "and")) {
        int line = cur(P)->line;
        next(P);
        struct node *r = parse_not(P);
        if (!r)
            return NULL;
        struct node *n = mk(P, N_AND, line);
        n->a = l;
        n->b = r;
        l = n;
    }
    return l;
}

static struct node *parse_or(struct parser *P)
{
    struct node *l = parse_and(P);
    while (l && is_name(cur(P), "or")) {
        int line = cur(P)->line;
        next(P);
        struct node *r = parse_and(P);
        if (!r)
            return NULL;
        struct node *n = mk(P, N_OR, line);
        n->a = l;
        n->b = r;
        l = n;
    }
    return l;
}

static struct node *parse_expr(struct parser *P)
{
    if (enter(P) < 0)
        return NULL;
    struct node *e = parse_or(P);
    while (e && is_name(cur(P), "if")) {
        int line = cur(P)->line;
        next(P);
        struct node *cond = parse_or(P);
        if (!cond)
            return NULL;
        struct node *other = NULL;
        if (is_name(cur(P), "else")) {
            next(P);
            if (!(other = parse_expr(P)))
                return NULL;
        }
        struct node *n = mk(P, N_COND, line);
        n->a = cond;
        n->b = e;
        n->c = other;
        e = n;
    }
    P->depth--;
    return e;
}

/* expr or expr, expr, ... (a tuple); parens allow the empty tuple. */
static struct node *parse_tuple(struct parser *P, int with_condexpr, int explicit_parens)
{
    int line = cur(P)->line;
    struct nvec items = {0};
    int comma = 0;
    for (;;) {
        if (items.n) {
            if (!is_op(cur(P), ","))
                break;
            next(P);
            comma = 1;
        }
        const struct token *t = cur(P);
        if (t->type == T_VAR_END || t->type == T_BLOCK_END || is_op(t, ")") ||
            (items.n && is_name(t, "if")))
            break;
        struct node *x = with_condexpr ? parse_expr(P) : parse_or(P);
        if (!x)
            return NULL;
        nv_push(P, &items, x);
    }
    if (!comma && items.n == 1)
        return items.v[0];
    if (!items.n && !explicit_parens)
        return pfail(P, line, "expected an expression, got %s", tok_desc(cur(P))), NULL;
    struct node *n = mk(P, N_TUPLE, line);
    n->kids = items.v;
    n->nkids = items.n;
    return n;
}

/* ---- statements ------------------------------------------------------------------ */
static struct node *parse_body(struct parser *P, const char *const *ends);

static int expect_block_end(struct parser *P)
{
    if (cur(P)->type != T_BLOCK_END)
        return pfail(P, cur(P)->line, "expected end of statement block, got '%.*s'",
                     (int)(cur(P)->n > 20 ? 20 : cur(P)->n), cur(P)->p ? cur(P)->p : "");
    next(P);
    return 0;
}

static const char *const END_IF[] = {"elif", "else", "endif", NULL};
static const char *const END_FOR[] = {"else", "endfor", NULL};
static const char *const END_FOR2[] = {"endfor", NULL};
static const char *const END_SET[] = {"endset", NULL};
static const char *const END_MACRO[] = {"endmacro", NULL};
static const char *const END_GEN[] = {"endgeneration", NULL};

static struct node *parse_if(struct parser *P, int line)
{
    struct node *n = mk(P, N_IF, line);
    struct nvec conds = {0}, bodies = {0};
    for (;;) {
        struct node *c = parse_tuple(P, 1, 0);
        if (!c || expect_block_end(P) < 0)
            return NULL;
        struct node *b = parse_body(P, END_IF);
        if (!b)
            return NULL;
        nv_push(P, &conds, c);
        nv_push(P, &bodies, b);
        const struct token *t = cur(P); /* the name that ended the body */
        next(P);
        if (is_name(t, "elif"))
            continue;
        if (is_name(t, "else")) {
            if (expect_block_end(P) < 0 || !(n->a = parse_body(P, END_IF + 2)))
                return NULL;
            next(P);
        }
        break;
    }
    if (expect_block_end(P) < 0)
        return NULL;
    n->kids = conds.v;
    n->nkids = conds.n;
    n->kids2 = bodies.v;
    n->nkids2 = bodies.n;
    return n;
}

static int parse_targets(struct parser *P, struct node *n, const char *what)
{
    const char *names[16];
    size_t k = 0;
    int paren = 0;
    if (is_op(cur(P), "(")) {
        paren = 1;
        next(P);
    }
    for (;;) {
        if (cur(P)->type != T_NAME)
            return pfail(P, cur(P)->line, "expected a name in %s", what);
        if (k == 16)
            return pfail(P, cur(P)->line, "too many names in %s", what);
        names[k++] = tok_name(P, cur(P));
        next(P);
        if (!is_op(cur(P), ","))
            break;
        next(P);
    }
    if (paren && expect_op(P, ")") < 0)
        return -1;
    n->names = tp_alloc(P->a, k * sizeof(*names));
    memcpy(n->names, names, k * sizeof(*names));
    n->nnames = k;
    n->op = (k > 1 || paren) ? 1 : 0; /* unpack */
    return 0;
}

static struct node *parse_for(struct parser *P, int line)
{
    struct node *n = mk(P, N_FOR, line);
    if (parse_targets(P, n, "a for loop") < 0)
        return NULL;
    if (!is_name(cur(P), "in"))
        return pfail(P, cur(P)->line, "expected 'in' in a for loop"), NULL;
    next(P);
    if (!(n->a = parse_tuple(P, 0, 0)))
        return NULL;
    if (is_name(cur(P), "if")) {
        next(P);
        if (!(n->b = parse_expr(P)))
            return NULL;
    }
    if (is_name(cur(P), "recursive"))
        return pfail(P, cur(P)->line, "recursive for loops are not supported"), NULL;
    if (expect_block_end(P) < 0 || !(n->c = parse_body(P, END_FOR)))
        return NULL;
    if (is_name(cur(P), "else")) {
        next(P);
        if (expect_block_end(P) < 0 || !(n->d = parse_body(P, END_FOR2)))
            return NULL;
    }
    next(P);
    if (expect_block_end(P) < 0)
        return NULL;
    return n;
}

static struct node *parse_set(struct parser *P, int line)
{
    struct node *n = mk(P, N_SET, line);
    if (cur(P)->type == T_NAME && is_op(peek(P, 1), ".") && peek(P, 2)->type == T_NAME) {
        n->name = tok_name(P, cur(P)); /* namespace */
        next(P);
        next(P);
        n->names = tp_alloc(P->a, sizeof(char *));
        n->names[0] = tok_name(P, cur(P));
        n->nnames = 1;
        n->op = 2; /* ns.attr */
        next(P);
    } else if (parse_targets(P, n, "a set statement") < 0) {
        return NULL;
    }
    if (is_op(cur(P), "=")) {
        next(P);
        if (!(n->a = parse_tuple(P, 1, 0)) || expect_block_end(P) < 0)
            return NULL;
        return n;
    }
    if (n->op == 2 || n->nnames != 1)
        return pfail(P, cur(P)->line, "a block set takes one name"), NULL;
    n->kind = N_SETBLOCK;
    if (is_op(cur(P), "|"))
        return pfail(P, cur(P)->line, "filtered block set is not supported"), NULL;
    if (expect_block_end(P) < 0 || !(n->a = parse_body(P, END_SET)))
        return NULL;
    next(P);
    if (expect_block_end(P) < 0)
        return NULL;
    return n;
}

static struct node *parse_macro(struct parser *P, int line)
{
    struct node *n = mk(P, N_MACRO, line);
    if (cur(P)->type != T_NAME)
        return pfail(P, cur(P)->line, "expected a macro name"), NULL;
    n->name = tok_name(P, cur(P));
    next(P);
    if (expect_op(P, "(") < 0)
        return NULL;
    const char *names[32];
    struct node *defs[32];
    size_t k = 0;
    while (!is_op(cur(P), ")")) {
        if (k && expect_op(P, ",") < 0)
            return NULL;
        if (cur(P)->type != T_NAME || k == 32)
            return pfail(P, cur(P)->line, "bad macro parameter"), NULL;
        names[k] = tok_name(P, cur(P));
        defs[k] = NULL;
        next(P);
        if (is_op(cur(P), "=")) {
            next(P);
            if (!(defs[k] = parse_expr(P)))
                return NULL;
        }
        k++;
    }
    next(P);
    n->names = tp_alloc(P->a, (k + 1) * sizeof(char *));
    n->kids2 = tp_alloc(P->a, (k + 1) * sizeof(struct node *));
    memcpy(n->names, names, k * sizeof(char *));
    memcpy(n->kids2, defs, k * sizeof(struct node *));
    n->nnames = n->nkids2 = k;
    if (expect_block_end(P) < 0 || !(n->a = parse_body(P, END_MACRO)))
        return NULL;
    next(P);
    if (cur(P)->type == T_NAME)
        next(P); /* {% endmacro name %} */
    if (expect_block_end(P) < 0)
        return NULL;
    return n;
}

static struct node *parse_statement(struct parser *P)
{
    const struct token *t = cur(P);
    int line = t->line;
    if (t->type != T_NAME)
        return pfail(P, line, "expected a tag name"), NULL;
    next(P);
    if (is_name(t, "if"))
        return parse_if(P, line);
    if (is_name(t, "for"))
        return parse_for(P, line);
    if (is_name(t, "set"))
        return parse_set(P, line);
    if (is_name(t, "macro"))
        return parse_macro(P, line);
    if (is_name(t, "break") || is_name(t, "continue")) {
        struct node *n = mk(P, is_name(t, "break") ? N_BREAK : N_CONTINUE, line);
        if (expect_block_end(P) < 0)
            return NULL;
        return n;
    }
    if (is_name(t, "generation")) {
        struct node *b;
        if (expect_block_end(P) < 0 || !(b = parse_body(P, END_GEN)))
            return NULL;
        next(P);
        if (expect_block_end(P) < 0)
            return NULL;
        return b;
    }
    return pfail(P, line, "encountered unknown tag '%.*s'", (int)t->n, t->p), NULL;
}

/* Statements until a block whose name is in <ends> (the parser stops on that
 * name) or end of input (an error when <ends> is not NULL). */
static struct node *parse_body(struct parser *P, const char *const *ends)
{
    int line = cur(P)->line;
    struct nvec st = {0};
    if (enter(P) < 0)
        return NULL;
    for (;;) {
        const struct token *t = cur(P);
        if (t->type == T_EOF) {
            if (ends)
                return pfail(P, t->line, "unexpected end of template, expected '%s'",
                             ends[0]), NULL;
            break;
        }
        if (t->type == T_TEXT) {
            struct node *x = mk(P, N_TEXT, t->line);
            x->name = t->p;
            x->namelen = t->n;
            nv_push(P, &st, x);
            next(P);
            continue;
        }
        if (t->type == T_VAR_BEGIN) {
            next(P);
            struct node *x = mk(P, N_OUTPUT, t->line);
            if (!(x->a = parse_tuple(P, 1, 0)))
                return NULL;
            if (cur(P)->type != T_VAR_END)
                return pfail(P, cur(P)->line, "expected end of print statement, got '%.*s'",
                             (int)(cur(P)->n > 20 ? 20 : cur(P)->n), cur(P)->p ? cur(P)->p : ""), NULL;
            next(P);
            nv_push(P, &st, x);
            continue;
        }
        if (t->type == T_BLOCK_BEGIN) {
            const struct token *nm = peek(P, 1);
            int stop = 0;
            for (size_t k = 0; ends && ends[k]; k++)
                if (is_name(nm, ends[k]))
                    stop = 1;
            if (stop) {
                next(P); /* leave the parser on the end name */
                break;
            }
            if (nm->type == T_NAME && nm->n >= 3 && memcmp(nm->p, "end", 3) == 0)
                return pfail(P, nm->line, "unexpected '%.*s'%s%s", (int)nm->n, nm->p,
                             ends ? ", expected " : "", ends ? ends[0] : ""), NULL;
            if (nm->type == T_NAME && (is_name(nm, "else") || is_name(nm, "elif")))
                return pfail(P, nm->line, "unexpected '%.*s'", (int)nm->n, nm->p), NULL;
            next(P);
            struct node *x = parse_statement(P);
            if (!x)
                return NULL;
            nv_push(P, &st, x);
            continue;
        }
        return pfail(P, t->line, "unexpected %s", tok_desc(t)), NULL;
    }
    struct node *b = mk(P, N_BODY, line);
    b->kids = st.v;
    b->nkids = st.n;
    P->depth--;
    return b;
}

struct node *tp_parse(struct tp_arena *a, const struct tp_tokens *toks, char *err, size_t errlen)
{
    struct parser P = {.a = a, .t = toks->v, .n = toks->n, .err = err, .errlen = errlen};
    struct node *b = parse_body(&P, NULL);
    return P.failed ? NULL : b;
}
