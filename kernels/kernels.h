/*
 * kernels.h -- the backend interface: dtypes, tensors, backends and the ops a
 * model describes its computation with. Models never loop over elements or
 * call CUDA themselves; a backend (cpu, cuda) executes each op. Every CUDA
 * kernel has a CPU twin (kernels/cpu/) that is its reference.
 *
 * Layout: shape[0] is the outermost dimension (row-major, as numpy); strides
 * are in elements. Ops see a tensor as a matrix of rows: the last dimension
 * must be contiguous (stride 1) and the leading dimensions must collapse into
 * one row stride, so a column slice of a wider matrix (q out of a fused qkv,
 * gate out of gate_up) is a valid operand. Shape and dtype checks happen once
 * in the kn_* entry points; backends trust what reaches them.
 */
#ifndef LLMUX_KERNELS_H
#define LLMUX_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- dtypes ------------------------------------------------------------- */

enum kn_dtype {
    KN_F32 = 0,
    KN_F16 = 1,
    KN_BF16 = 2,
    KN_I32 = 3,         /* token ids and positions only */
    /* quantized block formats (INT4 groups, GPTQ/AWQ) will follow here */
    KN_DTYPE_COUNT
};

/* Bytes per element; 0 for an unknown dtype. */
size_t kn_dtype_size(enum kn_dtype dt);
/* "f32", "f16", "bf16", "i32" or "?"; static string. */
const char *kn_dtype_name(enum kn_dtype dt);

static inline uint32_t kn_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float kn_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* bf16 is the top half of an f32: widening is exact. */
static inline float kn_bf16_to_f32(uint16_t h) { return kn_bits_f32((uint32_t)h << 16); }

/* Round to nearest, ties to even; NaN stays a (quiet) NaN, overflow gives inf. */
static inline uint16_t kn_f32_to_bf16(float f)
{
    uint32_t x = kn_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

/* IEEE binary16 -> f32, exact (subnormals included). */
static inline float kn_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f)
        return kn_bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {     /* zero or subnormal: man * 2^-24 */
        float f = (float)man * 5.9604644775390625e-8f;
        return sign ? -f : f;
    }
    return kn_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

/* f32 -> binary16, round to nearest even, subnormals and overflow to inf. */
static inline uint16_t kn_f32_to_f16(float f)
{
    uint32_t x = kn_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu, h, rem, tie;
    if (ax > 0x7f800000u)                       /* NaN */
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u)                      /* >= 65520: inf */
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) {                     /* < 2^-14: subnormal or zero */
        if (ax < 0x33000000u)                   /* < 2^-25 */
            return (uint16_t)sign;
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - (ax >> 23);     /* 14..24 */
        h = m >> shift;
        rem = m & ((1u << shift) - 1u);
        tie = 1u << (shift - 1u);
    } else {
        uint32_t r = ax - 0x38000000u;          /* rebias 127 -> 15 */
        h = r >> 13;
        rem = r & 0x1fffu;
        tie = 0x1000u;
    }
    if (rem > tie || (rem == tie && (h & 1u)))
        h++;                                    /* a carry into the exponent is right */
    return (uint16_t)(sign | h);
}

/* ---- tensors ------------------------------------------------------------ */

#define KN_MAX_DIMS 4

struct kn_backend;

struct kn_tensor {
    enum kn_dtype dtype;
    int ndim;                           /* 1..KN_MAX_DIMS */
    int64_t shape[KN_MAX_DIMS];         /* shape[0] outermost */
    int64_t stride[KN_MAX_DIMS];        /* in elements */
    void *data;                         /* backend memory (host for cpu) */
    struct kn_backend *backend;         /* where data lives; NULL: host memory */
    int owned;                          /* 1: kn_tensor_free() releases data */
};

/* Allocate a contiguous tensor on <be> (NULL: host malloc). Returns 0, or -1
 * when the backend is out of memory (logged). Free with kn_tensor_free(). */
int kn_tensor_alloc(struct kn_tensor *t, struct kn_backend *be, enum kn_dtype dt,
                    int ndim, const int64_t *shape);
/* Release data if <t> owns it, then zero <t>. Safe on a zeroed tensor. */
void kn_tensor_free(struct kn_tensor *t);
/* Borrowed contiguous tensor over host memory <data> (backend NULL). */
struct kn_tensor kn_tensor_host(enum kn_dtype dt, int ndim, const int64_t *shape, void *data);
/* Borrowed view of <base>: <ndim>/<shape>/<stride> (elements), starting
 * <offset> elements in. The caller keeps it inside base; base must outlive it. */
struct kn_tensor kn_tensor_view(const struct kn_tensor *base, int ndim, const int64_t *shape,
                                const int64_t *stride, int64_t offset);
int64_t kn_tensor_nelem(const struct kn_tensor *t);
int kn_tensor_is_contiguous(const struct kn_tensor *t);
/* Matrix view: rows = product of leading dims, cols = last dim, ld = row
 * stride. Returns 0, or -1 when the last dim is not contiguous or the leading
 * dims do not collapse into one stride. */
int kn_tensor_rows(const struct kn_tensor *t, int64_t *rows, int64_t *cols, int64_t *ld);
/* A reusable 1-D scratch tensor that only grows (by half again when it
 * must): the models' per-step activation buffers. */
struct kn_buf {
    struct kn_tensor t;
    int64_t cap;                        /* elements allocated */
};
/* Make <b> hold at least <n> (>= 1) elements of <dt> on <be>, reallocating
 * (contents lost) when it is smaller or of another dtype. 0 or -1. */
int kn_buf_reserve(struct kn_backend *be, struct kn_buf *b, enum kn_dtype dt, int64_t n);
/* Release <b>'s tensor; <b> is empty (reusable) afterwards. */
void kn_buf_free(struct kn_buf *b);
/* Copy a contiguous tensor from / to host memory of kn_tensor_nelem() elements.
 * Both return after the copy completed. 0 or -1. */
int kn_tensor_set(struct kn_tensor *t, const void *host);
int kn_tensor_get(const struct kn_tensor *t, void *host);

/* ---- backends ----------------------------------------------------------- */

enum kn_op {
    KN_OP_MATMUL, KN_OP_RMS_NORM, KN_OP_ROPE, KN_OP_SILU_MUL, KN_OP_SOFTMAX,
    KN_OP_EMBED, KN_OP_ADD, KN_OP_CONVERT,
    /* the chat worker's ops (paged KV cache, MoE); cuda: kernels/cuda/paged.cu, route.cu */
    KN_OP_KV_STORE, KN_OP_PAGED_ATTENTION, KN_OP_GATHER_ROWS, KN_OP_SCATTER_ADD_ROWS,
    KN_OP_MOE_ROUTE,
    /* the encoder worker's ops (issue 7); cuda: kernels/cuda/encoder.cu */
    KN_OP_LAYER_NORM, KN_OP_ACT, KN_OP_SEQ_ATTENTION,
    /* the speech worker's ops (issue 8); cuda: kernels/cuda/asr.cu */
    KN_OP_SEQ_DWCONV, KN_OP_ROW_ARGMAX,
    KN_OP_COUNT
};
#define KN_MAX_SRC 3
const char *kn_op_name(enum kn_op op);

struct kn_backend {
    const struct kn_backend_ops *ops;   /* borrowed, static */
    int device;                         /* device index (cuda), 0 for cpu */
    void *ctx;                          /* private; set by ops->init */
};

/*
 * The vtable every backend fills. Op entries receive tensors already checked
 * by the kn_* wrappers (shapes consistent, supports_op true) and return 0 or
 * -1. Ops on an asynchronous backend are queued in order on its stream; the
 * results are visible to the host after sync or download.
 */
struct kn_backend_ops {
    const char *name;
    int (*device_count)(void);                  /* 0 when unusable */
    int (*init)(struct kn_backend *be);         /* sets be->ctx; 0 or -1 */
    void (*free)(struct kn_backend *be);
    void *(*alloc)(struct kn_backend *be, size_t nbytes);   /* NULL on OOM */
    void (*free_buf)(struct kn_backend *be, void *p);
    int (*upload)(struct kn_backend *be, void *dst, const void *src, size_t nbytes);
    int (*download)(struct kn_backend *be, void *dst, const void *src, size_t nbytes);
    int (*sync)(struct kn_backend *be);
    /* 1 when this backend runs <op> on these dtypes/layouts (src[i] may be NULL).
     * Ops with more operands pass: kv_store dst k_cache, src {k, v_cache, v};
     * paged_attention dst out, src {q, k_cache, v_cache}; gather_rows dst y,
     * src {x, idx}; scatter_add_rows dst y, src {x, idx, w}; moe_route dst
     * weights, src {logits, ids}. */
    int (*supports_op)(struct kn_backend *be, enum kn_op op, const struct kn_tensor *dst,
                       const struct kn_tensor *const src[KN_MAX_SRC]);

    int (*matmul)(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                  const struct kn_tensor *w);
    int (*rms_norm)(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                    const struct kn_tensor *w, struct kn_tensor *res, float eps);
    int (*rope)(struct kn_backend *be, struct kn_tensor *x, const struct kn_tensor *pos,
                const struct kn_tensor *cos_sin);
    int (*silu_mul)(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *gate,
                    const struct kn_tensor *up);
    int (*softmax)(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                   float scale, int causal);
    int (*embed)(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *table,
                 const struct kn_tensor *ids);
    int (*add)(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *a,
               const struct kn_tensor *b);
    int (*convert)(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x);

    /* Appended entries: a backend's positional initializer may stop above
     * and leave them NULL, provided its supports_op answers 0 for their ops. */
    int (*set_threads)(struct kn_backend *be, int n_threads);  /* NULL: no threads */
    int (*kv_store)(struct kn_backend *be, struct kn_tensor *k_cache, struct kn_tensor *v_cache,
                    const struct kn_tensor *k, const struct kn_tensor *v,
                    const struct kn_tensor *slots);
    int (*paged_attention)(struct kn_backend *be, struct kn_tensor *out, const struct kn_tensor *q,
                           const struct kn_tensor *k_cache, const struct kn_tensor *v_cache,
                           const struct kn_tensor *block_table, const struct kn_tensor *seq,
                           const struct kn_tensor *pos, int block_size, float scale, int window);
    int (*gather_rows)(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                       const struct kn_tensor *idx);
    int (*scatter_add_rows)(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                            const struct kn_tensor *idx, const struct kn_tensor *w);
    int (*moe_route)(struct kn_backend *be, struct kn_tensor *ids, struct kn_tensor *weights,
                     const struct kn_tensor *logits, int k, int norm);
    /* encoder ops (issue 7); NULL: unsupported, whatever supports_op says */
    int (*layer_norm)(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                      const struct kn_tensor *w, const struct kn_tensor *b, float eps);
    int (*act)(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x, int act);
    int (*seq_attention)(struct kn_backend *be, struct kn_tensor *out, const struct kn_tensor *q,
                         const struct kn_tensor *k, const struct kn_tensor *v,
                         const struct kn_tensor *seq_start, float scale);
    /* speech ops (issue 8); NULL: unsupported, whatever supports_op says */
    int (*seq_dwconv)(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                      const struct kn_tensor *w, const struct kn_tensor *seq_start, int left,
                      int add_x);
    int (*row_argmax)(struct kn_backend *be, struct kn_tensor *ids, struct kn_tensor *lse,
                      const struct kn_tensor *x);
};

/* The vtable for "cpu" or "cuda" (borrowed, static), or for "auto": cuda
 * when built with it and a device is visible, else cpu. NULL with a logged
 * reason for an unknown name or "cuda" in a build without CUDA. */
const struct kn_backend_ops *kn_backend_get(const char *name);
/* New backend instance of <name> on <device>; NULL (logged) on failure.
 * Free with kn_backend_free(). */
struct kn_backend *kn_backend_init(const char *name, int device);
void kn_backend_free(struct kn_backend *be);
/* Threads the cpu backend uses for every op (default 1; <= 0: all cores):
 * a pool created here, once; ops split their rows over it and results do not
 * depend on the count. A no-op returning 0 on backends without threads.
 * 0 or -1 (logged). Like every call on a backend instance, one caller thread
 * at a time. */
int kn_backend_set_threads(struct kn_backend *be, int n_threads);
/* Wait for every queued op. 0 or -1. */
int kn_backend_sync(struct kn_backend *be);
/* 1 when <be> implements <op> for these operands. */
int kn_backend_supports(struct kn_backend *be, enum kn_op op, const struct kn_tensor *dst,
                        const struct kn_tensor *src0, const struct kn_tensor *src1,
                        const struct kn_tensor *src2);

/* ---- ops ---------------------------------------------------------------- */
/* Every op returns 0, or -1 (logged) for mismatched shapes or an operand
 * combination the backend does not support. Activations are f32/bf16/f16
 * unless stated; math is done in f32 and rounded once on store. */

/* W (N,K) @ x (M,K) -> y (M,N), i.e. y = x W^T; leading dims of x/y flatten
 * into M. cpu: any float dtypes. cuda (cuBLAS, f32 accumulate): W and x the
 * same dtype, y that dtype or f32. */
int kn_matmul(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
              const struct kn_tensor *w);
/* x (R,D), w (D,) -> y (R,D) = x / sqrt(mean(x^2) + eps) * w. With <res>
 * (R,D, x's dtype): first res += x (stored, rounded), then y = norm(res) * w.
 * y may alias x. */
int kn_rms_norm(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                const struct kn_tensor *w, struct kn_tensor *res, float eps);
/* In place on x (T, H, D): neox rotate-half on the first n_rot dims of each
 * head, for token t at position pos[t] (i32 (T,)). cos_sin (P, n_rot) f32 is
 * the table from kn_rope_table(). Positions outside [0,P) leave that token
 * unchanged (cpu also returns -1). */
int kn_rope(struct kn_backend *be, struct kn_tensor *x, const struct kn_tensor *pos,
            const struct kn_tensor *cos_sin);
/* Fill host <cos_sin> (max_pos, n_rot): row p = [cos(p f_0..f_{h-1}),
 * sin(p f_0..f_{h-1})], f_i = theta^(-2i/n_rot), h = n_rot/2; computed in
 * double. Upload it once per model. */
void kn_rope_table(float *cos_sin, int max_pos, int n_rot, double theta);
/* gate (R,C), up (R,C) -> y (R,C) = silu(gate) * up. */
int kn_silu_mul(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *gate,
                const struct kn_tensor *up);
/* Row softmax of x*scale -> y (same shape). causal: x is (..., T, S) and row
 * t sees columns c <= t + S - T (the queries are the last T of S keys);
 * masked outputs are 0, a fully masked row is all 0. y may alias x. */
int kn_softmax(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
               float scale, int causal);
/* table (V,D), ids i32 (n,) -> y (n,D) = table[ids]. An id outside [0,V)
 * gives a zero row (cpu also returns -1). */
int kn_embed(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *table,
             const struct kn_tensor *ids);
/* y = a + b; b has a's shape or is one row (D,) broadcast over a's rows. */
int kn_add(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *a,
           const struct kn_tensor *b);
/* y = x converted to y's dtype (same shape), round to nearest even. */
int kn_convert(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x);

/* ---- chat worker ops: paged KV cache, gathers, MoE routing ----------------
 * Index operands are contiguous i32 vectors. An index out of range is an
 * error the cpu backend reports (-1, logged) after skipping that row; device
 * backends cannot read indices cheaply and leave such rows undefined. */

/* Store the K/V of T new tokens in the paged cache: k, v (T, Hkv, D) ->
 * k_cache, v_cache (n_slots, Hkv, D) at row slots[t] (i32 (T,)); converted to
 * the cache dtype on store. k and v may be strided views (head slices of a
 * fused qkv): only their last dim must be contiguous. */
int kn_kv_store(struct kn_backend *be, struct kn_tensor *k_cache, struct kn_tensor *v_cache,
                const struct kn_tensor *k, const struct kn_tensor *v,
                const struct kn_tensor *slots);

/* Paged causal attention. q (T, H, D) -> out (T, H, D). Token t belongs to
 * sequence seq[t] (i32 (T,)) and attends to that sequence's positions
 * lo..pos[t] (pos i32 (T,)), lo = 0, or pos[t]-window+1 when window > 0
 * (clamped at 0). Position p of sequence s lives at row
 * block_table[s*max_blocks + p/block_size]*block_size + p%block_size of
 * k_cache/v_cache (n_slots, Hkv, D); block_table is i32 (n_seqs, max_blocks).
 * GQA: query head h reads kv head h / (H/Hkv). softmax(q.k * scale) in f32.
 * q and out: only the last dim must be contiguous; out must not alias q. */
int kn_paged_attention(struct kn_backend *be, struct kn_tensor *out, const struct kn_tensor *q,
                       const struct kn_tensor *k_cache, const struct kn_tensor *v_cache,
                       const struct kn_tensor *block_table, const struct kn_tensor *seq,
                       const struct kn_tensor *pos, int block_size, float scale, int window);

/* y (n, D) = x[idx[i]] rows; idx i32 (n,), x (M, D). */
int kn_gather_rows(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                   const struct kn_tensor *idx);

/* y[idx[i]] += w[i] * x[i] for i = 0..n-1 in order (deterministic; indices may
 * repeat). x (n, D), y (M, D), idx i32 (n,), w f32 (n,) or NULL (weight 1).
 * Each add is done in f32 and rounded to y's dtype on store. */
int kn_scatter_add_rows(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                        const struct kn_tensor *idx, const struct kn_tensor *w);

/* MoE routing as Qwen3-MoE/transformers: logits (T, E) -> softmax over E in
 * f32 -> top k (ties: lower expert id first) -> ids i32 (T, k), weights f32
 * (T, k), most likely first; renormalized to sum 1 when <norm>. 1 <= k <= E. */
int kn_moe_route(struct kn_backend *be, struct kn_tensor *ids, struct kn_tensor *weights,
                 const struct kn_tensor *logits, int k, int norm);

/* ---- encoder ops (issue 7: XLM-RoBERTa) --------------------------------------
 * supports_op operands: layer_norm dst y, src {x, w, b}; act dst y, src {x};
 * seq_attention dst out, src {q, k, v}. */

/* x (R,D) -> y (R,D) = (x - mean) / sqrt(var + eps) * w + b (biased variance,
 * as torch's LayerNorm); w, b float (D,), b may be NULL. y may alias x. */
int kn_layer_norm(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                  const struct kn_tensor *w, const struct kn_tensor *b, float eps);

enum kn_act {
    KN_ACT_GELU_ERF,    /* 0.5 x (1 + erf(x / sqrt 2)), torch's exact gelu */
    KN_ACT_TANH,
    KN_ACT_RELU,
    KN_ACT_COUNT
};
/* y = act(x), elementwise (same shape). y may alias x. */
int kn_act(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x, enum kn_act act);

/* Bidirectional attention over a packed batch of sequences: q (T, H, D),
 * k, v (T, Hkv, D) -> out (T, H, D); token t of sequence s (seq_start[s] <=
 * t < seq_start[s+1]) attends to every token of s and no other:
 * out[t,h] = sum_u softmax_u(q[t,h] . k[u,g] * scale) v[u,g], g = h / (H/Hkv),
 * in f32. seq_start is contiguous i32 (n_seqs+1) with seq_start[0] = 0,
 * non-decreasing, seq_start[n_seqs] = T (cpu checks it: -1). q, k, v, out:
 * only the last dim must be contiguous (head slices of a fused qkv are
 * fine); out must not alias q, k or v. */
int kn_seq_attention(struct kn_backend *be, struct kn_tensor *out, const struct kn_tensor *q,
                     const struct kn_tensor *k, const struct kn_tensor *v,
                     const struct kn_tensor *seq_start, float scale);

/* ---- speech ops (issue 8: SenseVoice) -----------------------------------------
 * supports_op operands: seq_dwconv dst y, src {x, w, seq_start}; row_argmax dst
 * ids, src {x, lse}. */

/* Depthwise 1-D convolution along the tokens of each sequence of a packed
 * batch (the FSMN memory block of SAN-M): x (T, C), w float (C, K) -> y (T, C),
 *   y[t,c] = (add_x ? x[t,c] : 0) + sum_k w[c,k] * x[t + k - left, c],
 * where a term whose row t + k - left lies outside t's sequence is 0 (zero
 * padding at both ends of every sequence, as torch's Conv1d over a masked,
 * padded batch). 0 <= left < K. seq_start as kn_seq_attention (cpu checks
 * it: -1). x, y: only the last dim must be contiguous (a column slice of a
 * fused qkv is fine); y must not alias x. f32 math, rounded once on store. */
int kn_seq_dwconv(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                  const struct kn_tensor *w, const struct kn_tensor *seq_start, int left,
                  int add_x);

/* Per row of x float (R, V): ids i32 (R,) = the index of the row's largest
 * value (the lowest index among equals, as torch's argmax), and, when <lse>
 * (f32 (R,)) is not NULL, lse = log(sum_v exp(x[v])) computed as
 * max + log(sum exp(x - max)) in f32 with a double sum on the cpu: greedy CTC
 * and log_softmax (x - lse) without moving a (R, V) matrix to the host.
 * ids and lse contiguous; x: only the last dim must be contiguous. */
int kn_row_argmax(struct kn_backend *be, struct kn_tensor *ids, struct kn_tensor *lse,
                  const struct kn_tensor *x);

#ifdef __cplusplus
}
#endif

#endif
