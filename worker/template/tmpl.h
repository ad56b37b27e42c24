/*
 * tmpl.h -- internals of the chat template interpreter (worker/template/):
 * values, arenas, tokens, the AST and the entry points the files share.
 * Values are small structs passed by copy; everything they point to lives in
 * an arena (the template's for the AST and its constants, the render's for
 * the rest) and is never freed one by one. Only chat_template.c is public.
 */
#ifndef LLMUX_TMPL_H
#define LLMUX_TMPL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* ---- arena --------------------------------------------------------------- */
struct tp_arena {
    struct tp_chunk *head;
    size_t used_total; /* bytes handed out, for the render's memory cap */
    size_t limit;      /* 0: none; past it tp_alloc returns NULL */
};
void *tp_alloc(struct tp_arena *a, size_t n); /* zeroed; NULL only past limit */
char *tp_strndup(struct tp_arena *a, const char *s, size_t n);
void tp_arena_free(struct tp_arena *a);

/* ---- values -------------------------------------------------------------- */
enum tv_type {
    TV_UNDEF, TV_NONE, TV_BOOL, TV_INT, TV_FLOAT, TV_STR, TV_LIST, TV_DICT,
    TV_NS, TV_LOOP, TV_FUNC, TV_MACRO
};

struct tv_list;
struct tv_dict;
struct tp_loop;
struct node;

struct tv {
    enum tv_type t;
    union {
        int b;
        long long i;
        double f;
        struct { const char *p; size_t n; } s;
        struct tv_list *l;
        struct tv_dict *d; /* TV_DICT and TV_NS */
        struct tp_loop *loop;
        struct { int id; const struct tv *self; } fn;
        const struct node *macro;
        const char *undef; /* TV_UNDEF: what was missing, for messages (may be NULL) */
    } u;
};

struct tv_list {
    size_t n, cap;
    struct tv *v;
    int tuple; /* printed as ( ) */
};

struct tv_dict {
    size_t n, cap;
    const char **kp; /* keys (UTF-8, may hold NUL) */
    size_t *kn;
    struct tv *v;
};

struct tp_loop {
    long long index0, length;
    const struct tv_list *items;
};

/* ---- AST ---------------------------------------------------------------- */
enum node_kind {
    /* statements */
    N_BODY, N_TEXT, N_OUTPUT, N_IF, N_FOR, N_SET, N_SETBLOCK, N_MACRO, N_BREAK,
    N_CONTINUE,
    /* expressions */
    N_CONST, N_NAME, N_ATTR, N_ITEM, N_SLICE, N_CALL, N_FILTER, N_TEST, N_BIN,
    N_NEG, N_POS, N_NOT, N_AND, N_OR, N_CMP, N_COND, N_LIST, N_TUPLE, N_DICT
};

enum tp_op {
    OP_ADD = 1, OP_SUB, OP_MUL, OP_DIV, OP_FDIV, OP_MOD, OP_POW, OP_CONCAT,
    OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN
};

struct node {
    enum node_kind kind;
    int line;
    int op;   /* enum tp_op; N_TEST: negated */
    struct node *a, *b, *c, *d;
    struct node **kids; /* body statements, args, list items, dict keys,
                           if conditions, compare operands */
    size_t nkids;
    struct node **kids2; /* dict values, if bodies, macro defaults */
    size_t nkids2;
    struct node **kw;    /* keyword argument values */
    const char **kwname;
    size_t nkw;
    const char *name; /* names, attributes, filter/test names, text */
    size_t namelen;
    const char **names; /* for/set targets, macro parameters; N_SET op: 1 unpack, 2 ns.attr */
    size_t nnames;
    int *ops;           /* N_CMP operators */
    struct tv val;      /* N_CONST */
};

/* ---- lexer ---------------------------------------------------------------- */
enum tok_type {
    T_EOF, T_TEXT, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END, T_NAME,
    T_STRING, T_INT, T_FLOAT, T_OP
};

struct token {
    enum tok_type type;
    int line;
    const char *p; /* T_TEXT: text; T_NAME/T_OP: spelling; T_STRING: unescaped */
    size_t n;
    long long i;
    double f;
};

struct tp_tokens {
    struct token *v;
    size_t n, cap;
};

/* Tokenize <src> (already newline-normalized, in arena <a>) with trim_blocks
 * and lstrip_blocks on. 0, or -1 with a message naming the line. */
int tp_lex(struct tp_arena *a, const char *src, size_t len, struct tp_tokens *out, char *err,
           size_t errlen);
/* Parse the tokens into a body. NULL with a message naming the line. */
struct node *tp_parse(struct tp_arena *a, const struct tp_tokens *toks, char *err, size_t errlen);

/* ---- rendering ------------------------------------------------------------ */
struct tp_buf {
    char *p;
    size_t n, cap;
};
void buf_add(struct tp_buf *b, const char *s, size_t n);
void buf_addc(struct tp_buf *b, char c);
void buf_adds(struct tp_buf *b, const char *s);

struct tp_scope {
    struct tp_scope *parent;
    struct tv_dict *vars;
};

struct tp_ctx {
    struct tp_arena *a;
    struct tp_buf *out;
    struct tp_scope *scope;
    char *err;
    size_t errlen;
    int failed;
    int depth;         /* evaluation recursion depth */
    int macro_depth;
    long long steps;   /* loop iterations and calls, against a budget */
    size_t out_limit;
    int brk, cont;     /* loop control signals */
};

/* Report an error at <line> (first error wins). Returns -1. */
int tp_fail(struct tp_ctx *c, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* value helpers (tmpl_value.c) */
struct tv tv_undef(const char *why);
struct tv tv_none(void);
struct tv tv_bool(int b);
struct tv tv_int(long long i);
struct tv tv_float(double f);
struct tv tv_str(const char *p, size_t n);
struct tv_list *tv_list_new(struct tp_arena *a, size_t cap);
void tv_list_push(struct tp_arena *a, struct tv_list *l, struct tv v);
struct tv_dict *tv_dict_new(struct tp_arena *a, size_t cap);
void tv_dict_set(struct tp_arena *a, struct tv_dict *d, const char *k, size_t kn, struct tv v);
const struct tv *tv_dict_get(const struct tv_dict *d, const char *k, size_t kn);
struct tv tv_from_json(struct tp_arena *a, json_t *j);
int tv_truthy(struct tv v);
const char *tv_type_name(struct tv v);
int tv_equal(struct tv x, struct tv y);
/* -2 when not comparable (TypeError), else -1/0/1 */
int tv_compare(struct tv x, struct tv y);
/* str(v) as Python prints it (undefined: ""), appended to <b>. */
void tv_str_into(struct tp_buf *b, struct tv v);
void tv_repr_into(struct tp_buf *b, struct tv v);
struct tv tv_to_str(struct tp_arena *a, struct tv v);
/* json.dumps(v, ...) as Python writes it; -1 on a value JSON cannot hold
 * (undefined, functions, namespace). */
struct tp_json_opts {
    int indent; /* < 0: single line */
    int sort_keys, ensure_ascii;
    const char *item_sep, *key_sep;
};
int tv_tojson_into(struct tp_buf *b, struct tv v, const struct tp_json_opts *o);
void py_float_repr(struct tp_buf *b, double f);

/* UTF-8 helpers */
size_t u8_len(const char *s, size_t n);              /* code points */
size_t u8_offset(const char *s, size_t n, size_t cp); /* byte offset of code point <cp> */
int u8_isspace_at(const char *s, size_t n, size_t off, size_t *clen);
/* Code point at <s> (<n> bytes left), its length in *<clen>. */
unsigned u8_decode(const char *s, size_t n, size_t *clen);

/* evaluator (tmpl_eval.c) */
int tp_eval(struct tp_ctx *c, const struct node *e, struct tv *out);
int tp_exec(struct tp_ctx *c, const struct node *body);
int tp_call_macro(struct tp_ctx *c, const struct node *m, int line, struct tv *args, size_t nargs,
                  const char **kwn, struct tv *kwv, size_t nkw, struct tv *out);

/* builtins (tmpl_builtin.c) */
int tp_filter(struct tp_ctx *c, int line, const char *name, struct tv v, struct tv *args,
              size_t nargs, const char **kwn, struct tv *kwv, size_t nkw, struct tv *out);
int tp_test(struct tp_ctx *c, int line, const char *name, struct tv v, struct tv *args,
            size_t nargs, int *out);
/* 1 when a filter / test of that name exists (the parser checks). */
int tp_filter_known(const char *name);
int tp_test_known(const char *name);
/* Attribute of a value as jinja's sandboxed getattr does (methods first on
 * dicts, strings, lists). */
int tp_getattr(struct tp_ctx *c, int line, struct tv obj, const char *name, size_t n,
               struct tv *out);
int tp_getitem(struct tp_ctx *c, int line, struct tv obj, struct tv key, struct tv *out);
int tp_call(struct tp_ctx *c, int line, struct tv fn, struct tv *args, size_t nargs,
            const char **kwn, struct tv *kwv, size_t nkw, struct tv *out);
/* Global function by name (raise_exception, namespace, range, dict,
 * strftime_now); 1 when found. */
int tp_global(const char *name, struct tv *out);
/* Iterate: list items (dict: keys; str: characters; undefined: empty). */
int tp_iter(struct tp_ctx *c, int line, struct tv v, struct tv_list **out);

#define TP_MAX_DEPTH 200
#define TP_MAX_MACRO_DEPTH 64
#define TP_MAX_STEPS 2000000LL
#define TP_MAX_OUT (64u << 20)
#define TP_MAX_MEM (128u << 20)

#endif
