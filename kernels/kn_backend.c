/*
 * kn_backend.c -- the backend registry, tensor bookkeeping and the kn_* op
 * entry points. Each entry point checks shapes once (backend-independent),
 * asks the backend whether it supports the operand dtypes and layouts, then
 * calls its vtable. Nothing here touches element data or device APIs.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

extern const struct kn_backend_ops kn_cpu_ops;
#ifdef HAVE_CUDA
extern const struct kn_backend_ops kn_cuda_ops;
#endif

size_t kn_dtype_size(enum kn_dtype dt)
{
    switch (dt) {
    case KN_F32: case KN_I32: return 4;
    case KN_F16: case KN_BF16: return 2;
    default: return 0;
    }
}

const char *kn_dtype_name(enum kn_dtype dt)
{
    static const char *names[] = { "f32", "f16", "bf16", "i32" };
    return (unsigned)dt < ARRAY_SIZE(names) ? names[dt] : "?";
}

const char *kn_op_name(enum kn_op op)
{
    static const char *names[] = { "matmul", "rms_norm", "rope", "silu_mul", "softmax",
                                   "embed", "add", "convert", "kv_store", "paged_attention",
                                   "gather_rows", "scatter_add_rows", "moe_route",
                                   "layer_norm", "act", "seq_attention", "seq_dwconv",
                                   "row_argmax" };
    return (unsigned)op < ARRAY_SIZE(names) ? names[op] : "?";
}

/* ---- tensors ------------------------------------------------------------- */

static void tensor_shape(struct kn_tensor *t, enum kn_dtype dt, int ndim, const int64_t *shape)
{
    memset(t, 0, sizeof(*t));
    t->dtype = dt;
    t->ndim = ndim;
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        t->shape[d] = shape[d];
        t->stride[d] = s;
        s *= shape[d];
    }
}

int kn_tensor_alloc(struct kn_tensor *t, struct kn_backend *be, enum kn_dtype dt,
                    int ndim, const int64_t *shape)
{
    if (ndim < 1 || ndim > KN_MAX_DIMS || kn_dtype_size(dt) == 0) {
        log_error("bad tensor: ndim %d dtype %d", ndim, (int)dt);
        memset(t, 0, sizeof(*t));
        return -1;
    }
    tensor_shape(t, dt, ndim, shape);
    size_t nbytes = (size_t)kn_tensor_nelem(t) * kn_dtype_size(dt);
    if (nbytes == 0)
        nbytes = 1;     /* keep data non-NULL for empty tensors */
    t->backend = be;
    t->data = be ? be->ops->alloc(be, nbytes) : xmalloc(nbytes);
    if (t->data == NULL) {
        log_error("%s: out of memory allocating %zu bytes", be->ops->name, nbytes);
        memset(t, 0, sizeof(*t));
        return -1;
    }
    t->owned = 1;
    return 0;
}

void kn_tensor_free(struct kn_tensor *t)
{
    if (t->owned && t->data) {
        if (t->backend)
            t->backend->ops->free_buf(t->backend, t->data);
        else
            free(t->data);
    }
    memset(t, 0, sizeof(*t));
}

int kn_buf_reserve(struct kn_backend *be, struct kn_buf *b, enum kn_dtype dt, int64_t n)
{
    if (n < 1)
        n = 1;
    if (b->cap >= n && b->t.dtype == dt)
        return 0;
    int64_t cap = b->cap > n ? b->cap : n;
    cap += cap / 2;
    kn_buf_free(b);
    if (kn_tensor_alloc(&b->t, be, dt, 1, &cap) < 0)
        return -1;
    b->cap = cap;
    return 0;
}

void kn_buf_free(struct kn_buf *b)
{
    kn_tensor_free(&b->t);
    b->cap = 0;
}

struct kn_tensor kn_tensor_host(enum kn_dtype dt, int ndim, const int64_t *shape, void *data)
{
    struct kn_tensor t;
    tensor_shape(&t, dt, ndim, shape);
    t.data = data;
    return t;
}

struct kn_tensor kn_tensor_view(const struct kn_tensor *base, int ndim, const int64_t *shape,
                                const int64_t *stride, int64_t offset)
{
    struct kn_tensor t;
    memset(&t, 0, sizeof(t));
    t.dtype = base->dtype;
    t.ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        t.shape[d] = shape[d];
        t.stride[d] = stride[d];
    }
    t.data = (char *)base->data + offset * (int64_t)kn_dtype_size(base->dtype);
    t.backend = base->backend;
    return t;
}

int64_t kn_tensor_nelem(const struct kn_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= t->shape[d];
    return n;
}

int kn_tensor_is_contiguous(const struct kn_tensor *t)
{
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != s)
            return 0;
        s *= t->shape[d];
    }
    return 1;
}

int kn_tensor_rows(const struct kn_tensor *t, int64_t *rows, int64_t *cols, int64_t *ld)
{
    int last = t->ndim - 1, inner = -1;
    if (t->ndim < 1 || t->ndim > KN_MAX_DIMS || (t->shape[last] > 1 && t->stride[last] != 1))
        return -1;
    *cols = t->shape[last];
    *rows = 1;
    *ld = *cols;
    /* size-1 dims may carry any stride; the others must nest exactly */
    for (int d = last - 1; d >= 0; d--) {
        *rows *= t->shape[d];
        if (t->shape[d] <= 1)
            continue;
        if (inner < 0)
            *ld = t->stride[d];
        else if (t->stride[d] != t->stride[inner] * t->shape[inner])
            return -1;
        inner = d;
    }
    return *rows > 1 && *ld < *cols ? -1 : 0;
}

static size_t tensor_nbytes(const struct kn_tensor *t)
{
    return (size_t)kn_tensor_nelem(t) * kn_dtype_size(t->dtype);
}

int kn_tensor_set(struct kn_tensor *t, const void *host)
{
    if (!kn_tensor_is_contiguous(t)) {
        log_error("tensor_set: tensor is not contiguous");
        return -1;
    }
    if (t->backend == NULL) {
        memcpy(t->data, host, tensor_nbytes(t));
        return 0;
    }
    return t->backend->ops->upload(t->backend, t->data, host, tensor_nbytes(t));
}

int kn_tensor_get(const struct kn_tensor *t, void *host)
{
    if (!kn_tensor_is_contiguous(t)) {
        log_error("tensor_get: tensor is not contiguous");
        return -1;
    }
    if (t->backend == NULL) {
        memcpy(host, t->data, tensor_nbytes(t));
        return 0;
    }
    return t->backend->ops->download(t->backend, host, t->data, tensor_nbytes(t));
}

/* ---- registry ------------------------------------------------------------ */

static const struct kn_backend_ops *backend_find(const char *name)
{
    if (strcmp(name, "cpu") == 0)
        return &kn_cpu_ops;
#ifdef HAVE_CUDA
    if (strcmp(name, "cuda") == 0)
        return &kn_cuda_ops;
#endif
    return NULL;
}

const struct kn_backend_ops *kn_backend_get(const char *name)
{
    const struct kn_backend_ops *ops = NULL;
    if (strcmp(name, "auto") == 0) {
        ops = backend_find("cuda");
        if (ops == NULL || ops->device_count() <= 0)
            ops = &kn_cpu_ops;
        return ops;
    }
    ops = backend_find(name);
    if (ops == NULL) {
        if (strcmp(name, "cuda") == 0)
            log_error("backend \"cuda\": built without CUDA");
        else
            log_error("unknown backend \"%s\"", name);
    }
    return ops;
}

struct kn_backend *kn_backend_init(const char *name, int device)
{
    const struct kn_backend_ops *ops = kn_backend_get(name);
    if (ops == NULL)
        return NULL;
    struct kn_backend *be = xcalloc(1, sizeof(*be));
    be->ops = ops;
    be->device = device;
    if (ops->init(be) < 0) {
        log_error("backend \"%s\" device %d: init failed", ops->name, device);
        free(be);
        return NULL;
    }
    return be;
}

void kn_backend_free(struct kn_backend *be)
{
    if (be == NULL)
        return;
    be->ops->free(be);
    free(be);
}

int kn_backend_set_threads(struct kn_backend *be, int n_threads)
{
    return be->ops->set_threads ? be->ops->set_threads(be, n_threads) : 0;
}

int kn_backend_sync(struct kn_backend *be)
{
    return be->ops->sync(be);
}

int kn_backend_supports(struct kn_backend *be, enum kn_op op, const struct kn_tensor *dst,
                        const struct kn_tensor *src0, const struct kn_tensor *src1,
                        const struct kn_tensor *src2)
{
    const struct kn_tensor *src[KN_MAX_SRC] = { src0, src1, src2 };
    return be->ops->supports_op(be, op, dst, src);
}

/* ---- op entry points ----------------------------------------------------- */

/* 1 when <t> lives where <be> can read it: its own memory, or host memory
 * for the cpu backend. */
static int tensor_on(const struct kn_backend *be, const struct kn_tensor *t)
{
    if (t->backend == NULL)
        return be->ops == &kn_cpu_ops;
    return t->backend->ops == be->ops && (be->ops == &kn_cpu_ops || t->backend->device == be->device);
}

static int is_float(const struct kn_tensor *t)
{
    return t->dtype == KN_F32 || t->dtype == KN_F16 || t->dtype == KN_BF16;
}

/* Common checks: residence, supports_op. <bad> is a shape complaint or NULL. */
static int op_check(struct kn_backend *be, enum kn_op op, const char *bad,
                    const struct kn_tensor *dst, const struct kn_tensor *s0,
                    const struct kn_tensor *s1, const struct kn_tensor *s2)
{
    const struct kn_tensor *all[4] = { dst, s0, s1, s2 };
    if (bad) {
        log_error("%s: %s", kn_op_name(op), bad);
        return -1;
    }
    for (int i = 0; i < 4; i++)
        if (all[i] && !tensor_on(be, all[i])) {
            log_error("%s: operand %d is not in %s memory", kn_op_name(op), i, be->ops->name);
            return -1;
        }
    if (!kn_backend_supports(be, op, dst, s0, s1, s2)) {
        log_error("%s: backend %s does not support dtypes %s <- %s, %s, %s or this layout",
                  kn_op_name(op), be->ops->name, kn_dtype_name(dst->dtype),
                  s0 ? kn_dtype_name(s0->dtype) : "-", s1 ? kn_dtype_name(s1->dtype) : "-",
                  s2 ? kn_dtype_name(s2->dtype) : "-");
        return -1;
    }
    return 0;
}

/* "rows" of both tensors exist and are equal; NULL when fine, else a complaint. */
static const char *same_rows(const struct kn_tensor *a, const struct kn_tensor *b)
{
    int64_t ra, ca, la, rb, cb, lb;
    if (kn_tensor_rows(a, &ra, &ca, &la) < 0 || kn_tensor_rows(b, &rb, &cb, &lb) < 0)
        return "operand is not a matrix of contiguous rows";
    if (!is_float(a) || !is_float(b))
        return "operand is not a float tensor";
    return ra == rb && ca == cb ? NULL : "operand shapes differ";
}

int kn_matmul(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
              const struct kn_tensor *w)
{
    int64_t M, K, ldx, N, Kw, ldw, My, Ny, ldy;
    const char *bad = NULL;
    if (kn_tensor_rows(x, &M, &K, &ldx) < 0 || kn_tensor_rows(w, &N, &Kw, &ldw) < 0 ||
        kn_tensor_rows(y, &My, &Ny, &ldy) < 0 || w->ndim != 2)
        bad = "operands must be row matrices, W 2-D";
    else if (K != Kw || M != My || N != Ny)
        bad = "shapes: need W (N,K), x (M,K), y (M,N)";
    else if (!is_float(x) || !is_float(w) || !is_float(y))
        bad = "operands must be float";
    if (op_check(be, KN_OP_MATMUL, bad, y, x, w, NULL) < 0)
        return -1;
    return be->ops->matmul(be, y, x, w);
}

int kn_rms_norm(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                const struct kn_tensor *w, struct kn_tensor *res, float eps)
{
    int64_t R, D, ld;
    const char *bad = same_rows(y, x);
    if (!bad && res)
        bad = res->dtype != x->dtype ? "residual dtype differs from x" : same_rows(res, x);
    if (!bad) {
        kn_tensor_rows(x, &R, &D, &ld);
        if (!is_float(w) || w->ndim != 1 || w->shape[0] != D || w->stride[0] != 1)
            bad = "weight must be a contiguous float vector (D,)";
        else if (!(eps >= 0.0f))
            bad = "eps must be >= 0";
    }
    if (op_check(be, KN_OP_RMS_NORM, bad, y, x, w, res) < 0)
        return -1;
    return be->ops->rms_norm(be, y, x, w, res, eps);
}

int kn_rope(struct kn_backend *be, struct kn_tensor *x, const struct kn_tensor *pos,
            const struct kn_tensor *cos_sin)
{
    const char *bad = NULL;
    if (x->ndim != 3 || x->stride[2] != 1 || !is_float(x))
        bad = "x must be float (T, H, D) with contiguous D";
    else if (pos->dtype != KN_I32 || pos->ndim != 1 || pos->shape[0] != x->shape[0] ||
             pos->stride[0] != 1)
        bad = "pos must be contiguous i32 (T,)";
    else if (cos_sin->dtype != KN_F32 || cos_sin->ndim != 2 || !kn_tensor_is_contiguous(cos_sin) ||
             cos_sin->shape[1] < 2 || cos_sin->shape[1] % 2 || cos_sin->shape[1] > x->shape[2])
        bad = "cos_sin must be contiguous f32 (P, n_rot), n_rot even and <= D";
    if (op_check(be, KN_OP_ROPE, bad, x, pos, cos_sin, NULL) < 0)
        return -1;
    return be->ops->rope(be, x, pos, cos_sin);
}

void kn_rope_table(float *cos_sin, int max_pos, int n_rot, double theta)
{
    int half = n_rot / 2;
    for (int p = 0; p < max_pos; p++)
        for (int i = 0; i < half; i++) {
            double a = p * pow(theta, -2.0 * i / n_rot);
            cos_sin[(size_t)p * n_rot + i] = (float)cos(a);
            cos_sin[(size_t)p * n_rot + half + i] = (float)sin(a);
        }
}

int kn_silu_mul(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *gate,
                const struct kn_tensor *up)
{
    const char *bad = same_rows(y, gate);
    if (!bad)
        bad = same_rows(y, up);
    if (op_check(be, KN_OP_SILU_MUL, bad, y, gate, up, NULL) < 0)
        return -1;
    return be->ops->silu_mul(be, y, gate, up);
}

int kn_softmax(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
               float scale, int causal)
{
    const char *bad = same_rows(y, x);
    if (!bad && causal && x->ndim < 2)
        bad = "causal softmax needs x (..., T, S)";
    if (op_check(be, KN_OP_SOFTMAX, bad, y, x, NULL, NULL) < 0)
        return -1;
    return be->ops->softmax(be, y, x, scale, causal);
}

int kn_embed(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *table,
             const struct kn_tensor *ids)
{
    int64_t V, D, ldt, n, Dy, ldy;
    const char *bad = NULL;
    if (table->ndim != 2 || kn_tensor_rows(table, &V, &D, &ldt) < 0 || !is_float(table) ||
        kn_tensor_rows(y, &n, &Dy, &ldy) < 0 || !is_float(y))
        bad = "table (V,D) and y (n,D) must be float row matrices";
    else if (ids->dtype != KN_I32 || ids->ndim != 1 || ids->stride[0] != 1 ||
             ids->shape[0] != n || Dy != D)
        bad = "shapes: need ids contiguous i32 (n,), y (n,D)";
    if (op_check(be, KN_OP_EMBED, bad, y, table, ids, NULL) < 0)
        return -1;
    return be->ops->embed(be, y, table, ids);
}

int kn_add(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *a,
           const struct kn_tensor *b)
{
    const char *bad = same_rows(y, a);
    int64_t R, C, ld;
    if (bad == NULL && same_rows(b, a) != NULL) {
        kn_tensor_rows(a, &R, &C, &ld);
        if (!is_float(b) || kn_tensor_nelem(b) != C || b->stride[b->ndim - 1] != 1)
            bad = "b must have a's shape or be one row (D,)";
    }
    if (op_check(be, KN_OP_ADD, bad, y, a, b, NULL) < 0)
        return -1;
    return be->ops->add(be, y, a, b);
}

int kn_convert(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x)
{
    if (op_check(be, KN_OP_CONVERT, same_rows(y, x), y, x, NULL, NULL) < 0)
        return -1;
    return be->ops->convert(be, y, x);
}

/* ---- chat worker ops ------------------------------------------------------- */

/* 1 when <t> is a contiguous i32 vector of <n> elements (n < 0: any length) */
static int is_index(const struct kn_tensor *t, int64_t n)
{
    return t->dtype == KN_I32 && t->ndim == 1 && (t->stride[0] == 1 || t->shape[0] <= 1) &&
           (n < 0 || t->shape[0] == n);
}

/* 1 when <t> is a float (A, B, C) with a contiguous last dim, any outer strides */
static int is_heads(const struct kn_tensor *t)
{
    return t->ndim == 3 && is_float(t) && (t->stride[2] == 1 || t->shape[2] <= 1);
}

static int same_shape(const struct kn_tensor *a, const struct kn_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return 0;
    return 1;
}

/* Residence of the operands op_check does not see. */
static int more_on(struct kn_backend *be, enum kn_op op, const struct kn_tensor *a,
                   const struct kn_tensor *b, const struct kn_tensor *c)
{
    const struct kn_tensor *all[3] = { a, b, c };
    for (int i = 0; i < 3; i++)
        if (all[i] && !tensor_on(be, all[i])) {
            log_error("%s: an index operand is not in %s memory", kn_op_name(op), be->ops->name);
            return -1;
        }
    return 0;
}

int kn_kv_store(struct kn_backend *be, struct kn_tensor *k_cache, struct kn_tensor *v_cache,
                const struct kn_tensor *k, const struct kn_tensor *v,
                const struct kn_tensor *slots)
{
    const char *bad = NULL;
    if (!is_heads(k_cache) || !is_heads(v_cache) || !is_heads(k) || !is_heads(v))
        bad = "caches and k, v must be float (rows, Hkv, D) with contiguous D";
    else if (!same_shape(k_cache, v_cache) || !same_shape(k, v) ||
             k->shape[1] != k_cache->shape[1] || k->shape[2] != k_cache->shape[2])
        bad = "shapes: need k, v (T, Hkv, D) and k_cache, v_cache (n_slots, Hkv, D)";
    else if (!is_index(slots, k->shape[0]))
        bad = "slots must be contiguous i32 (T,)";
    if (op_check(be, KN_OP_KV_STORE, bad, k_cache, k, v_cache, v) < 0 ||
        more_on(be, KN_OP_KV_STORE, slots, NULL, NULL) < 0)
        return -1;
    return be->ops->kv_store(be, k_cache, v_cache, k, v, slots);
}

int kn_paged_attention(struct kn_backend *be, struct kn_tensor *out, const struct kn_tensor *q,
                       const struct kn_tensor *k_cache, const struct kn_tensor *v_cache,
                       const struct kn_tensor *block_table, const struct kn_tensor *seq,
                       const struct kn_tensor *pos, int block_size, float scale, int window)
{
    const char *bad = NULL;
    if (!is_heads(q) || !is_heads(out) || !is_heads(k_cache) || !is_heads(v_cache))
        bad = "q, out, k_cache, v_cache must be float (rows, heads, D) with contiguous D";
    else if (!same_shape(q, out) || !same_shape(k_cache, v_cache) ||
             q->shape[2] != k_cache->shape[2])
        bad = "shapes: need q, out (T, H, D) and k_cache, v_cache (n_slots, Hkv, D)";
    else if (k_cache->shape[1] < 1 || q->shape[1] % k_cache->shape[1] != 0)
        bad = "H must be a multiple of Hkv";
    else if (out->data == q->data)
        bad = "out must not alias q";
    else if (block_table->dtype != KN_I32 || block_table->ndim != 2 ||
             !kn_tensor_is_contiguous(block_table))
        bad = "block_table must be contiguous i32 (n_seqs, max_blocks)";
    else if (!is_index(seq, q->shape[0]) || !is_index(pos, q->shape[0]))
        bad = "seq and pos must be contiguous i32 (T,)";
    else if (block_size < 1 || window < 0 || !isfinite(scale))
        bad = "need block_size >= 1, window >= 0, a finite scale";
    if (op_check(be, KN_OP_PAGED_ATTENTION, bad, out, q, k_cache, v_cache) < 0 ||
        more_on(be, KN_OP_PAGED_ATTENTION, block_table, seq, pos) < 0)
        return -1;
    return be->ops->paged_attention(be, out, q, k_cache, v_cache, block_table, seq, pos,
                                    block_size, scale, window);
}

/* y (n, D) and x (M, D) float row matrices, idx i32 (n,); NULL or a complaint */
static const char *rows_by_index(const struct kn_tensor *y, const struct kn_tensor *x,
                                 const struct kn_tensor *idx, int64_t n_of_x)
{
    int64_t ry, cy, ly, rx, cx, lx;
    if (kn_tensor_rows(y, &ry, &cy, &ly) < 0 || kn_tensor_rows(x, &rx, &cx, &lx) < 0 ||
        !is_float(y) || !is_float(x))
        return "x and y must be float row matrices";
    if (cy != cx)
        return "x and y rows differ in length";
    if (!is_index(idx, n_of_x ? rx : ry))
        return "idx must be contiguous i32 with one entry per row";
    return NULL;
}

int kn_gather_rows(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                   const struct kn_tensor *idx)
{
    const char *bad = rows_by_index(y, x, idx, 0);
    if (!bad && y->data == x->data)
        bad = "y must not alias x";
    if (op_check(be, KN_OP_GATHER_ROWS, bad, y, x, idx, NULL) < 0)
        return -1;
    return be->ops->gather_rows(be, y, x, idx);
}

int kn_scatter_add_rows(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                        const struct kn_tensor *idx, const struct kn_tensor *w)
{
    const char *bad = rows_by_index(y, x, idx, 1);
    if (!bad && w && (w->dtype != KN_F32 || w->ndim != 1 ||
                      w->shape[0] != idx->shape[0] || (w->stride[0] != 1 && w->shape[0] > 1)))
        bad = "w must be contiguous f32 (n,)";
    if (!bad && y->data == x->data)
        bad = "y must not alias x";
    if (op_check(be, KN_OP_SCATTER_ADD_ROWS, bad, y, x, idx, w) < 0)
        return -1;
    return be->ops->scatter_add_rows(be, y, x, idx, w);
}

int kn_moe_route(struct kn_backend *be, struct kn_tensor *ids, struct kn_tensor *weights,
                 const struct kn_tensor *logits, int k, int norm)
{
    int64_t T, E, ld;
    const char *bad = NULL;
    if (kn_tensor_rows(logits, &T, &E, &ld) < 0 || !is_float(logits))
        bad = "logits must be a float row matrix (T, E)";
    else if (k < 1 || k > E)
        bad = "need 1 <= k <= E";
    else if (ids->dtype != KN_I32 || weights->dtype != KN_F32 || ids->ndim != 2 ||
             weights->ndim != 2 || !kn_tensor_is_contiguous(ids) ||
             !kn_tensor_is_contiguous(weights) || ids->shape[0] != T || ids->shape[1] != k ||
             !same_shape(ids, weights))
        bad = "ids must be contiguous i32 (T, k), weights contiguous f32 (T, k)";
    if (op_check(be, KN_OP_MOE_ROUTE, bad, weights, logits, ids, NULL) < 0)
        return -1;
    return be->ops->moe_route(be, ids, weights, logits, k, norm);
}

/* ---- encoder ops ------------------------------------------------------------ */

/* The vtable entry of an appended op is missing: unsupported on <be>. */
static int op_missing(struct kn_backend *be, enum kn_op op, const void *fn)
{
    if (fn)
        return 0;
    log_error("%s: backend %s does not implement it", kn_op_name(op), be->ops->name);
    return -1;
}

int kn_layer_norm(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                  const struct kn_tensor *w, const struct kn_tensor *b, float eps)
{
    int64_t R, D, ld;
    const char *bad = same_rows(y, x);
    if (!bad) {
        kn_tensor_rows(x, &R, &D, &ld);
        if (!is_float(w) || w->ndim != 1 || w->shape[0] != D || w->stride[0] != 1)
            bad = "weight must be a contiguous float vector (D,)";
        else if (b && (!is_float(b) || b->ndim != 1 || b->shape[0] != D || b->stride[0] != 1))
            bad = "bias must be a contiguous float vector (D,)";
        else if (!(eps >= 0.0f))
            bad = "eps must be >= 0";
    }
    if (op_missing(be, KN_OP_LAYER_NORM, (const void *)be->ops->layer_norm) < 0 ||
        op_check(be, KN_OP_LAYER_NORM, bad, y, x, w, b) < 0)
        return -1;
    return be->ops->layer_norm(be, y, x, w, b, eps);
}

int kn_act(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x, enum kn_act act)
{
    const char *bad = same_rows(y, x);
    if (!bad && (unsigned)act >= KN_ACT_COUNT)
        bad = "unknown activation";
    if (op_missing(be, KN_OP_ACT, (const void *)be->ops->act) < 0 ||
        op_check(be, KN_OP_ACT, bad, y, x, NULL, NULL) < 0)
        return -1;
    return be->ops->act(be, y, x, (int)act);
}

int kn_seq_attention(struct kn_backend *be, struct kn_tensor *out, const struct kn_tensor *q,
                     const struct kn_tensor *k, const struct kn_tensor *v,
                     const struct kn_tensor *seq_start, float scale)
{
    const char *bad = NULL;
    if (!is_heads(q) || !is_heads(out) || !is_heads(k) || !is_heads(v))
        bad = "q, k, v, out must be float (T, heads, D) with contiguous D";
    else if (!same_shape(q, out) || !same_shape(k, v) || k->shape[0] != q->shape[0] ||
             k->shape[2] != q->shape[2])
        bad = "shapes: need q, out (T, H, D) and k, v (T, Hkv, D)";
    else if (k->shape[1] < 1 || q->shape[1] % k->shape[1] != 0)
        bad = "H must be a multiple of Hkv";
    else if (out->data == q->data || out->data == k->data || out->data == v->data)
        bad = "out must not alias q, k or v";
    else if (!is_index(seq_start, -1) || seq_start->shape[0] < 2)
        bad = "seq_start must be contiguous i32 (n_seqs+1), n_seqs >= 1";
    else if (!isfinite(scale))
        bad = "scale must be finite";
    if (op_missing(be, KN_OP_SEQ_ATTENTION, (const void *)be->ops->seq_attention) < 0 ||
        op_check(be, KN_OP_SEQ_ATTENTION, bad, out, q, k, v) < 0 ||
        more_on(be, KN_OP_SEQ_ATTENTION, seq_start, NULL, NULL) < 0)
        return -1;
    return be->ops->seq_attention(be, out, q, k, v, seq_start, scale);
}

/* ---- speech ops ----------------------------------------------------------------- */

int kn_seq_dwconv(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                  const struct kn_tensor *w, const struct kn_tensor *seq_start, int left,
                  int add_x)
{
    const char *bad = same_rows(y, x);
    int64_t T, C, ld;
    if (!bad) {
        kn_tensor_rows(x, &T, &C, &ld);
        if (!is_float(w) || w->ndim != 2 || w->shape[0] != C || w->shape[1] < 1 ||
            !kn_tensor_is_contiguous(w))
            bad = "w must be a contiguous float (C, K)";
        else if (left < 0 || left >= w->shape[1])
            bad = "need 0 <= left < K";
        else if (y->data == x->data)
            bad = "y must not alias x";
        else if (!is_index(seq_start, -1) || seq_start->shape[0] < 2)
            bad = "seq_start must be contiguous i32 (n_seqs+1), n_seqs >= 1";
    }
    if (op_missing(be, KN_OP_SEQ_DWCONV, (const void *)be->ops->seq_dwconv) < 0 ||
        op_check(be, KN_OP_SEQ_DWCONV, bad, y, x, w, seq_start) < 0)
        return -1;
    return be->ops->seq_dwconv(be, y, x, w, seq_start, left, add_x);
}

int kn_row_argmax(struct kn_backend *be, struct kn_tensor *ids, struct kn_tensor *lse,
                  const struct kn_tensor *x)
{
    int64_t R, V, ld;
    const char *bad = NULL;
    if (kn_tensor_rows(x, &R, &V, &ld) < 0 || !is_float(x) || V < 1)
        bad = "x must be a float row matrix (R, V), V >= 1";
    else if (!is_index(ids, R))
        bad = "ids must be contiguous i32 (R,)";
    else if (lse && (lse->dtype != KN_F32 || lse->ndim != 1 || lse->shape[0] != R ||
                     (lse->stride[0] != 1 && R > 1)))
        bad = "lse must be contiguous f32 (R,)";
    if (op_missing(be, KN_OP_ROW_ARGMAX, (const void *)be->ops->row_argmax) < 0 ||
        op_check(be, KN_OP_ROW_ARGMAX, bad, ids, x, lse, NULL) < 0)
        return -1;
    return be->ops->row_argmax(be, ids, lse, x);
}
