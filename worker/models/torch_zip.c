/*
 * torch_zip.c -- PyTorch zip checkpoints (torch.save of a tensor state dict):
 * the zip central directory (stored entries only, no zip64), then data.pkl
 * through a pickle machine limited to protocol-2 opcodes torch.save emits
 * (GLOBAL, REDUCE of collections.OrderedDict and
 * torch._utils._rebuild_tensor_v2, BINPERSID storages, memo, tuples, ints,
 * strings, dict items, BUILD), then each tensor checked against its
 * storage record <prefix>/data/<key>. Never reads outside the buffer.
 */
#include "torch_zip.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

/* ---- zip --------------------------------------------------------------- */

struct zrec {
    const char *name;           /* inside the buffer, not terminated */
    size_t name_len;
    const unsigned char *data;
    size_t size;
    int stored;                 /* method 0 and sizes agree */
};

struct tz_parse {
    const unsigned char *buf;
    size_t len;
    struct zrec *recs;
    int n_recs;
    size_t prefix_len;          /* "archive/" */
    char *err;
    size_t errlen;
};

static int fail(struct tz_parse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct tz_parse *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, p->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static uint32_t rd16(const unsigned char *b) { return (uint32_t)b[0] | (uint32_t)b[1] << 8; }
static uint32_t rd32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static int zip_read(struct tz_parse *p)
{
    const unsigned char *b = p->buf;
    size_t len = p->len, eocd = (size_t)-1;
    if (len < 22)
        return fail(p, "not a zip file (%zu bytes)", len);
    for (size_t i = len - 22 + 1; i-- > 0 && len - i <= 22 + 65535;)
        if (rd32(b + i) == 0x06054b50u) {
            eocd = i;
            break;
        }
    if (eocd == (size_t)-1)
        return fail(p, "not a zip file (no end of central directory)");
    uint32_t n = rd16(b + eocd + 10), cd_size = rd32(b + eocd + 12), cd_off = rd32(b + eocd + 16);
    if (n == 0xffff || cd_off == 0xffffffffu)
        return fail(p, "zip64 archives are not supported");
    if ((size_t)cd_off > eocd || (size_t)cd_size > eocd - cd_off)
        return fail(p, "zip central directory outside the file (truncated?)");
    p->recs = xcalloc(n ? n : 1, sizeof(*p->recs));
    size_t at = cd_off, end = (size_t)cd_off + cd_size;
    for (uint32_t i = 0; i < n; i++) {
        if (end - at < 46 || rd32(b + at) != 0x02014b50u)
            return fail(p, "zip central directory entry %u is bad", i);
        uint32_t method = rd16(b + at + 10), csize = rd32(b + at + 20), usize = rd32(b + at + 24);
        uint32_t nl = rd16(b + at + 28), el = rd16(b + at + 30), cl = rd16(b + at + 32);
        uint32_t loff = rd32(b + at + 42);
        if ((size_t)46 + nl + el + cl > end - at)
            return fail(p, "zip central directory entry %u runs past the directory", i);
        struct zrec *r = &p->recs[p->n_recs++];
        r->name = (const char *)b + at + 46;
        r->name_len = nl;
        at += 46 + (size_t)nl + el + cl;
        if (csize == 0xffffffffu || usize == 0xffffffffu || loff == 0xffffffffu)
            return fail(p, "zip64 entries are not supported");
        if ((size_t)loff > len || len - loff < 30 || rd32(b + loff) != 0x04034b50u)
            return fail(p, "zip entry %.*s: bad local header (truncated?)", (int)nl, r->name);
        size_t data = (size_t)loff + 30 + rd16(b + loff + 26) + rd16(b + loff + 28);
        if (data > len || (size_t)csize > len - data)
            return fail(p, "zip entry %.*s: data past the end of the file (truncated?)",
                        (int)nl, r->name);
        r->data = b + data;
        r->size = csize;
        r->stored = method == 0 && csize == usize;
    }
    if (p->n_recs == 0)
        return fail(p, "empty zip archive");
    const char *slash = memchr(p->recs[0].name, '/', p->recs[0].name_len);
    if (!slash)
        return fail(p, "zip entry %.*s has no archive folder", (int)p->recs[0].name_len,
                    p->recs[0].name);
    p->prefix_len = (size_t)(slash - p->recs[0].name) + 1;
    return 0;
}

/* The record <prefix><rest>, or NULL. */
static const struct zrec *zip_find(const struct tz_parse *p, const char *rest)
{
    size_t rl = strlen(rest);
    for (int i = 0; i < p->n_recs; i++) {
        const struct zrec *r = &p->recs[i];
        if (r->name_len == p->prefix_len + rl &&
            memcmp(r->name, p->recs[0].name, p->prefix_len) == 0 &&
            memcmp(r->name + p->prefix_len, rest, rl) == 0)
            return r;
    }
    return NULL;
}

/* ---- pickle -------------------------------------------------------------- */

enum vkind { V_MARK, V_NONE, V_INT, V_BOOL, V_STR, V_GLOBAL, V_TUPLE, V_DICT, V_LIST,
             V_STORAGE, V_TENSOR };

struct val {
    enum vkind kind;
    int64_t i;                  /* int, bool; storage numel */
    char *s;                    /* str, global "module.name", storage key and class */
    int *items, n_items;        /* tuple, list; dict as key, value pairs */
    size_t cap;
    /* tensor */
    int storage, ndim;
    int64_t offset, shape[KN_MAX_DIMS], stride[KN_MAX_DIMS];
    char *cls;                  /* storage class */
};

struct vm {
    struct tz_parse *p;
    struct val *v;
    size_t n_v, cap_v;
    int *stack;
    size_t n_st, cap_st;
    int *memo;
    size_t cap_memo;
};

static int new_val(struct vm *m, enum vkind k)
{
    xgrow((void **)&m->v, &m->cap_v, m->n_v + 1, sizeof(*m->v));
    memset(&m->v[m->n_v], 0, sizeof(*m->v));
    m->v[m->n_v].kind = k;
    return (int)m->n_v++;
}

static void push(struct vm *m, int id)
{
    xgrow((void **)&m->stack, &m->cap_st, m->n_st + 1, sizeof(*m->stack));
    m->stack[m->n_st++] = id;
}

static void add_item(struct val *v, int id)
{
    xgrow((void **)&v->items, &v->cap, (size_t)v->n_items + 1, sizeof(*v->items));
    v->items[v->n_items++] = id;
}

/* Index of the topmost mark, or -1. */
static long find_mark(const struct vm *m)
{
    for (size_t i = m->n_st; i-- > 0;)
        if (m->v[m->stack[i]].kind == V_MARK)
            return (long)i;
    return -1;
}

static const char *kind_name(enum vkind k)
{
    static const char *n[] = { "mark", "None", "int", "bool", "str", "global", "tuple", "dict",
                               "list", "storage", "tensor" };
    return n[k];
}

/* Storage class -> dtype and element size (0: unknown class). */
static enum kn_dtype storage_dtype(const char *cls, size_t *esize)
{
    static const struct { const char *name; enum kn_dtype dt; size_t es; } t[] = {
        { "torch.FloatStorage", KN_F32, 4 }, { "torch.HalfStorage", KN_F16, 2 },
        { "torch.BFloat16Storage", KN_BF16, 2 }, { "torch.DoubleStorage", KN_DTYPE_COUNT, 8 },
        { "torch.LongStorage", KN_DTYPE_COUNT, 8 }, { "torch.IntStorage", KN_DTYPE_COUNT, 4 },
        { "torch.ShortStorage", KN_DTYPE_COUNT, 2 }, { "torch.CharStorage", KN_DTYPE_COUNT, 1 },
        { "torch.ByteStorage", KN_DTYPE_COUNT, 1 }, { "torch.BoolStorage", KN_DTYPE_COUNT, 1 },
    };
    for (size_t i = 0; i < ARRAY_SIZE(t); i++)
        if (strcmp(cls, t[i].name) == 0) {
            *esize = t[i].es;
            return t[i].dt;
        }
    *esize = 0;
    return KN_DTYPE_COUNT;
}

/* REDUCE: callable <f>, arguments tuple <a> -> new value id, or -1. */
static int reduce(struct vm *m, int f, int a)
{
    struct tz_parse *p = m->p;
    if (m->v[f].kind != V_GLOBAL || m->v[a].kind != V_TUPLE)
        return fail(p, "data.pkl: REDUCE of a %s with a %s", kind_name(m->v[f].kind),
                    kind_name(m->v[a].kind));
    if (strcmp(m->v[f].s, "collections.OrderedDict") == 0) {
        if (m->v[a].n_items != 0)
            return fail(p, "data.pkl: OrderedDict() with arguments");
        return new_val(m, V_DICT);
    }
    if (strcmp(m->v[f].s, "torch._utils._rebuild_tensor_v2") != 0)
        return fail(p, "data.pkl: unsupported callable %s (not a plain tensor state dict)",
                    m->v[f].s);
    struct val *args = &m->v[a];
    if (args->n_items < 4 || m->v[args->items[0]].kind != V_STORAGE ||
        m->v[args->items[1]].kind != V_INT || m->v[args->items[2]].kind != V_TUPLE ||
        m->v[args->items[3]].kind != V_TUPLE)
        return fail(p, "data.pkl: _rebuild_tensor_v2 with unexpected arguments");
    const struct val *sh = &m->v[args->items[2]], *st = &m->v[args->items[3]];
    if (sh->n_items > KN_MAX_DIMS || st->n_items != sh->n_items)
        return fail(p, "data.pkl: tensor of %d dims (at most %d)", sh->n_items, KN_MAX_DIMS);
    int64_t off = m->v[args->items[1]].i, shape[KN_MAX_DIMS], stride[KN_MAX_DIMS];
    int ndim = sh->n_items, storage = args->items[0];
    for (int d = 0; d < ndim; d++) {
        const struct val *x = &m->v[sh->items[d]], *y = &m->v[st->items[d]];
        if (x->kind != V_INT || y->kind != V_INT || x->i < 0 || x->i > ((int64_t)1 << 40) ||
            y->i < 0 || y->i > ((int64_t)1 << 40))
            return fail(p, "data.pkl: bad tensor shape or stride");
        shape[d] = x->i;
        stride[d] = y->i;
    }
    if (off < 0 || off > ((int64_t)1 << 50))
        return fail(p, "data.pkl: bad storage offset %lld", (long long)off);
    int id = new_val(m, V_TENSOR);
    struct val *t = &m->v[id];
    t->storage = storage;
    t->ndim = ndim;
    t->offset = off;
    memcpy(t->shape, shape, sizeof(shape));
    memcpy(t->stride, stride, sizeof(stride));
    return id;
}

/* BINPERSID: ('storage', class, key, location, numel) -> storage value id, or -1 */
static int persid(struct vm *m, int tup)
{
    const struct val *t = &m->v[tup];
    if (t->kind != V_TUPLE || t->n_items != 5 || m->v[t->items[0]].kind != V_STR ||
        strcmp(m->v[t->items[0]].s, "storage") != 0 || m->v[t->items[1]].kind != V_GLOBAL ||
        m->v[t->items[2]].kind != V_STR || m->v[t->items[4]].kind != V_INT ||
        m->v[t->items[4]].i < 0)
        return fail(m->p, "data.pkl: persistent id is not a torch storage");
    char *key = xstrdup(m->v[t->items[2]].s), *cls = xstrdup(m->v[t->items[1]].s);
    int64_t numel = m->v[t->items[4]].i;
    int id = new_val(m, V_STORAGE);      /* may move m->v: t is stale from here */
    m->v[id].s = key;
    m->v[id].cls = cls;
    m->v[id].i = numel;
    return id;
}

/* Run data.pkl; the id of the resulting dict, or -1. */
static int vm_run(struct vm *m, const unsigned char *b, size_t len)
{
    struct tz_parse *p = m->p;
    size_t at = 0;
#define NEED(n) do { if (len - at < (size_t)(n)) return fail(p, "data.pkl: truncated"); } while (0)
#define POP(var) do { if (m->n_st == 0) return fail(p, "data.pkl: stack underflow"); \
                      (var) = m->stack[--m->n_st]; } while (0)
    while (at < len) {
        unsigned char op = b[at++];
        int id = -1, x, y, z;
        long mk;
        uint32_t idx;
        switch (op) {
        case 0x80: NEED(1); at++; break;                               /* PROTO */
        case 'c': {                                                     /* GLOBAL */
            const unsigned char *nl1 = memchr(b + at, '\n', len - at), *nl2;
            if (!nl1 || !(nl2 = memchr(nl1 + 1, '\n', len - (size_t)(nl1 + 1 - b))))
                return fail(p, "data.pkl: truncated GLOBAL");
            id = new_val(m, V_GLOBAL);
            m->v[id].s = xasprintf("%.*s.%.*s", (int)(nl1 - (b + at)), (const char *)b + at,
                                   (int)(nl2 - nl1 - 1), (const char *)nl1 + 1);
            at = (size_t)(nl2 + 1 - b);
            push(m, id);
            break;
        }
        case 'q': case 'r':                                             /* BINPUT, LONG_BINPUT */
            NEED(op == 'q' ? 1 : 4);
            idx = op == 'q' ? b[at] : rd32(b + at);
            at += op == 'q' ? 1 : 4;
            if (m->n_st == 0 || idx > (1u << 24))
                return fail(p, "data.pkl: bad memo put");
            if (idx >= m->cap_memo) {
                size_t old = m->cap_memo;
                xgrow((void **)&m->memo, &m->cap_memo, (size_t)idx + 1, sizeof(*m->memo));
                for (size_t i = old; i < m->cap_memo; i++)
                    m->memo[i] = -1;
            }
            m->memo[idx] = m->stack[m->n_st - 1];
            break;
        case 'h': case 'j':                                             /* BINGET, LONG_BINGET */
            NEED(op == 'h' ? 1 : 4);
            idx = op == 'h' ? b[at] : rd32(b + at);
            at += op == 'h' ? 1 : 4;
            if (idx >= m->cap_memo || m->memo[idx] < 0)
                return fail(p, "data.pkl: memo get of an unset slot %u", idx);
            push(m, m->memo[idx]);
            break;
        case '(': push(m, new_val(m, V_MARK)); break;
        case ')': push(m, new_val(m, V_TUPLE)); break;
        case '}': push(m, new_val(m, V_DICT)); break;
        case ']': push(m, new_val(m, V_LIST)); break;
        case 'N': push(m, new_val(m, V_NONE)); break;
        case 0x88: case 0x89:                                           /* NEWTRUE, NEWFALSE */
            id = new_val(m, V_BOOL);
            m->v[id].i = op == 0x88;
            push(m, id);
            break;
        case 'K': case 'M': case 'J': {                                 /* BININT1/2, BININT */
            int nb = op == 'K' ? 1 : op == 'M' ? 2 : 4;
            NEED(nb);
            id = new_val(m, V_INT);
            m->v[id].i = nb == 1 ? b[at] : nb == 2 ? (int64_t)rd16(b + at) : (int64_t)(int32_t)rd32(b + at);
            at += (size_t)nb;
            push(m, id);
            break;
        }
        case 0x8a: {                                                    /* LONG1 */
            NEED(1);
            unsigned n = b[at++];
            NEED(n);
            if (n > 8)
                return fail(p, "data.pkl: integer of %u bytes", n);
            uint64_t u = 0;
            for (unsigned i = 0; i < n; i++)
                u |= (uint64_t)b[at + i] << (8 * i);
            if (n > 0 && n < 8 && (b[at + n - 1] & 0x80))
                u |= ~(uint64_t)0 << (8 * n);                           /* sign extend */
            at += n;
            id = new_val(m, V_INT);
            m->v[id].i = (int64_t)u;
            push(m, id);
            break;
        }
        case 'X': case 'T': case 'U': case 0x8c: {                      /* strings */
            int nb = op == 'X' || op == 'T' ? 4 : 1;
            NEED(nb);
            size_t n = nb == 4 ? rd32(b + at) : b[at];
            at += (size_t)nb;
            NEED(n);
            id = new_val(m, V_STR);
            m->v[id].s = xmalloc(n + 1);
            memcpy(m->v[id].s, b + at, n);
            m->v[id].s[n] = 0;
            at += n;
            push(m, id);
            break;
        }
        case 't': case 'l':                                             /* TUPLE, LIST */
            if ((mk = find_mark(m)) < 0)
                return fail(p, "data.pkl: TUPLE without a mark");
            id = new_val(m, op == 't' ? V_TUPLE : V_LIST);
            for (size_t i = (size_t)mk + 1; i < m->n_st; i++)
                add_item(&m->v[id], m->stack[i]);
            m->n_st = (size_t)mk;
            push(m, id);
            break;
        case 0x85: case 0x86: case 0x87: {                              /* TUPLE1..3 */
            int n = op - 0x84, items[3];
            for (int i = n - 1; i >= 0; i--)
                POP(items[i]);
            id = new_val(m, V_TUPLE);
            for (int i = 0; i < n; i++)
                add_item(&m->v[id], items[i]);
            push(m, id);
            break;
        }
        case 'Q':                                                       /* BINPERSID */
            POP(x);
            if ((id = persid(m, x)) < 0)
                return -1;
            push(m, id);
            break;
        case 'R':                                                       /* REDUCE */
            POP(y);
            POP(x);
            if ((id = reduce(m, x, y)) < 0)
                return -1;
            push(m, id);
            break;
        case 's':                                                       /* SETITEM */
            POP(z);
            POP(y);
            if (m->n_st == 0 || m->v[m->stack[m->n_st - 1]].kind != V_DICT)
                return fail(p, "data.pkl: SETITEM on a non-dict");
            add_item(&m->v[m->stack[m->n_st - 1]], y);
            add_item(&m->v[m->stack[m->n_st - 1]], z);
            break;
        case 'u': case 'e':                                             /* SETITEMS, APPENDS */
            if ((mk = find_mark(m)) < 1 ||
                m->v[m->stack[mk - 1]].kind != (op == 'u' ? V_DICT : V_LIST) ||
                (op == 'u' && (m->n_st - (size_t)mk - 1) % 2))
                return fail(p, "data.pkl: bad SETITEMS/APPENDS");
            for (size_t i = (size_t)mk + 1; i < m->n_st; i++)
                add_item(&m->v[m->stack[mk - 1]], m->stack[i]);
            m->n_st = (size_t)mk;
            break;
        case 'a':                                                       /* APPEND */
            POP(y);
            if (m->n_st == 0 || m->v[m->stack[m->n_st - 1]].kind != V_LIST)
                return fail(p, "data.pkl: APPEND on a non-list");
            add_item(&m->v[m->stack[m->n_st - 1]], y);
            break;
        case 'b':                                                       /* BUILD: state ignored */
            POP(y);
            if (m->n_st == 0)
                return fail(p, "data.pkl: BUILD on an empty stack");
            break;
        case '.':                                                       /* STOP */
            POP(x);
            if (m->v[x].kind != V_DICT)
                return fail(p, "data.pkl: the pickle is a %s, not a state dict",
                            kind_name(m->v[x].kind));
            return x;
        default:
            return fail(p, "data.pkl: unsupported pickle opcode 0x%02x at %zu", op, at - 1);
        }
    }
    return fail(p, "data.pkl: no STOP");
#undef NEED
#undef POP
}

static void vm_free(struct vm *m)
{
    for (size_t i = 0; i < m->n_v; i++) {
        free(m->v[i].s);
        free(m->v[i].items);
        free(m->v[i].cls);
    }
    free(m->v);
    free(m->stack);
    free(m->memo);
}

/* One dict entry -> <out>. 0, 1 (not a tensor: skipped) or -1. */
static int make_tensor(struct vm *m, int key, int val, struct tz_tensor *out)
{
    struct tz_parse *p = m->p;
    if (m->v[key].kind != V_STR || m->v[val].kind != V_TENSOR)
        return 1;
    const struct val *t = &m->v[val], *s = &m->v[t->storage];
    const char *name = m->v[key].s;
    size_t es;
    memset(out, 0, sizeof(*out));
    out->dtype = storage_dtype(s->cls, &es);
    snprintf(out->dtype_name, sizeof(out->dtype_name), "%s",
             strncmp(s->cls, "torch.", 6) == 0 ? s->cls + 6 : s->cls);
    out->ndim = t->ndim;
    int64_t n = 1, want = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        out->shape[d] = t->shape[d];
        if (t->shape[d] != 1 && t->stride[d] != want)
            return fail(p, "tensor %s is not contiguous", name);
        want *= t->shape[d];
        n *= t->shape[d];
        if (n > ((int64_t)1 << 40))
            return fail(p, "tensor %s is too large", name);
    }
    if (es == 0)
        return fail(p, "tensor %s: unknown storage class %s", name, s->cls);
    char rest[96];
    snprintf(rest, sizeof(rest), "data/%s", s->s);
    const struct zrec *r = zip_find(p, rest);
    if (!r)
        return fail(p, "tensor %s: storage record %s missing", name, rest);
    if (!r->stored)
        return fail(p, "tensor %s: storage record %s is compressed", name, rest);
    if (s->i > (int64_t)(r->size / es) || t->offset + n > s->i)
        return fail(p, "tensor %s: %lld elements at %lld past its storage of %lld (%zu bytes)",
                    name, (long long)n, (long long)t->offset, (long long)s->i, r->size);
    out->data = r->data + (size_t)t->offset * es;
    out->nbytes = (size_t)n * es;
    out->name = xstrdup(name);
    return 0;
}

static int cmp_tensor(const void *a, const void *b)
{
    return strcmp(((const struct tz_tensor *)a)->name, ((const struct tz_tensor *)b)->name);
}

static int tz_parse_all(struct tz_file *f, struct tz_parse *p)
{
    struct vm m = { .p = p };
    int rc = -1;
    if (zip_read(p) < 0)
        goto out;
    const struct zrec *pk = zip_find(p, "data.pkl");
    if (!pk) {
        fail(p, "no data.pkl in the archive (not a torch.save zip checkpoint)");
        goto out;
    }
    if (!pk->stored) {
        fail(p, "data.pkl is compressed");
        goto out;
    }
    const struct zrec *bo = zip_find(p, "byteorder");
    if (bo && !(bo->size == 6 && memcmp(bo->data, "little", 6) == 0)) {
        fail(p, "byteorder is not little");
        goto out;
    }
    int d = vm_run(&m, pk->data, pk->size);
    if (d < 0)
        goto out;
    const struct val *dict = &m.v[d];
    f->tensors = xcalloc((size_t)dict->n_items / 2 + 1, sizeof(*f->tensors));
    for (int i = 0; i + 1 < dict->n_items; i += 2) {
        int r = make_tensor(&m, dict->items[i], dict->items[i + 1], &f->tensors[f->n_tensors]);
        if (r < 0)
            goto out;
        if (r == 0)
            f->n_tensors++;
    }
    qsort(f->tensors, (size_t)f->n_tensors, sizeof(*f->tensors), cmp_tensor);
    for (int i = 1; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0) {
            fail(p, "tensor %s appears twice", f->tensors[i].name);
            goto out;
        }
    rc = 0;
out:
    vm_free(&m);
    free(p->recs);
    return rc;
}

int tz_open_mem(struct tz_file *f, const void *buf, size_t len, char *err, size_t errlen)
{
    memset(f, 0, sizeof(*f));
    struct tz_parse p = { .buf = buf, .len = len, .err = err, .errlen = errlen };
    if (tz_parse_all(f, &p) < 0) {
        tz_close(f);
        return -1;
    }
    return 0;
}

int tz_open(struct tz_file *f, const char *path, char *err, size_t errlen)
{
    memset(f, 0, sizeof(*f));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    void *map = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    close(fd);
    if (map == MAP_FAILED) {
        snprintf(err, errlen, "%s: %s", path, size ? strerror(errno) : "empty file");
        return -1;
    }
    char msg[256];
    struct tz_parse p = { .buf = map, .len = size, .err = msg, .errlen = sizeof(msg) };
    f->map = map;
    f->map_size = size;
    if (tz_parse_all(f, &p) < 0) {
        snprintf(err, errlen, "%s: %s", path, msg);
        tz_close(f);
        return -1;
    }
    return 0;
}

const struct tz_tensor *tz_find(const struct tz_file *f, const char *name)
{
    struct tz_tensor key = { .name = (char *)(uintptr_t)name };
    if (f->n_tensors == 0)
        return NULL;
    return bsearch(&key, f->tensors, (size_t)f->n_tensors, sizeof(*f->tensors), cmp_tensor);
}

void tz_close(struct tz_file *f)
{
    for (int i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    free(f->tensors);
    if (f->map)
        munmap(f->map, f->map_size);
    memset(f, 0, sizeof(*f));
}
