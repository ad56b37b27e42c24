/*
 * kn_cuda.h -- shared by the cuda backend's .cu files only: the backend
 * context, CUDA_CHECK, dtype loads/stores and block reductions for kernels,
 * and the per-family entry points backend.cu puts in the vtable. Each family
 * file (matmul.cu + gemv.cu, norm.cu, rope.cu, softmax.cu, elementwise.cu, paged.cu,
 * route.cu, encoder.cu, asr.cu) has three
 * layers: the kernel, a launcher taking a cudaStream_t, and an entry point
 * that asserts what kn_backend.c already validated. No host data here.
 */
#ifndef LLMUX_KN_CUDA_H
#define LLMUX_KN_CUDA_H

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdlib.h>

#include "kernels.h"
extern "C" {
#include "log.h"
}

struct kn_cuda_ctx {
    cudaStream_t stream;        /* every op and copy of this backend, in order */
    cublasHandle_t cublas;      /* bound to stream */
    int n_sm;                   /* multiprocessors of the device */
    void *work;                 /* scratch of ops (split attention partials) */
    size_t work_bytes;
};

/* ctx->work of at least <nbytes>, grown (after a stream sync) when smaller;
 * NULL (logged) on OOM. Valid until the next call. */
void *kn_cuda_work(struct kn_backend *be, size_t nbytes);

/* 0, or -1 after logging "file:line: expr: error string". */
int kn_cuda_check(cudaError_t err, const char *expr, const char *file, int line);
int kn_cublas_check(cublasStatus_t st, const char *expr, const char *file, int line);
#define CUDA_CHECK(call) kn_cuda_check((call), #call, __FILE__, __LINE__)
#define CUBLAS_CHECK(call) kn_cublas_check((call), #call, __FILE__, __LINE__)

/* Invariants the kn_* entry points guarantee; failing one is a bug: abort. */
#define KN_ASSERT(cond) do { if (!(cond)) { \
    log_error("%s:%d: assertion failed: %s", __FILE__, __LINE__, #cond); abort(); } } while (0)

static inline struct kn_cuda_ctx *kn_cuda_ctx_of(const struct kn_backend *be)
{
    return (struct kn_cuda_ctx *)be->ctx;
}

/* A tensor as a matrix for kernels: element (r,c) is data[r*ld + c]. */
struct kn_mat {
    void *data;
    int dt;
    int64_t rows, cols, ld;
};

static inline struct kn_mat kn_mat_of(const struct kn_tensor *t)
{
    struct kn_mat m;
    KN_ASSERT(kn_tensor_rows(t, &m.rows, &m.cols, &m.ld) == 0);
    KN_ASSERT(t->dtype == KN_F32 || t->dtype == KN_F16 || t->dtype == KN_BF16);
    m.data = t->data;
    m.dt = t->dtype;
    return m;
}

/* Grid for a grid-stride loop over <n> items with <block> threads. */
static inline unsigned kn_grid(int64_t n, int block)
{
    int64_t g = (n + block - 1) / block;
    return (unsigned)(g < 1 ? 1 : g > 65536 ? 65536 : g);
}

/* ---- device helpers ------------------------------------------------------- */

__device__ __forceinline__ float kn_ld(const void *p, int dt, int64_t i)
{
    switch (dt) {
    case KN_BF16: return __bfloat162float(__ushort_as_bfloat16(((const unsigned short *)p)[i]));
    case KN_F16: return __half2float(__ushort_as_half(((const unsigned short *)p)[i]));
    default: return ((const float *)p)[i];
    }
}

/* round to nearest even, as kn_f32_to_bf16() / kn_f32_to_f16() */
__device__ __forceinline__ void kn_st(void *p, int dt, int64_t i, float v)
{
    switch (dt) {
    case KN_BF16: ((unsigned short *)p)[i] = __bfloat16_as_ushort(__float2bfloat16_rn(v)); break;
    case KN_F16: ((unsigned short *)p)[i] = __half_as_ushort(__float2half_rn(v)); break;
    default: ((float *)p)[i] = v; break;
    }
}

/* Sum / max of <v> over the block; every thread gets the result. blockDim.x
 * is a multiple of 32, at most 1024; all threads must call. */
__device__ __forceinline__ float kn_block_reduce(float v, int is_max)
{
    __shared__ float part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarp = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) {
        float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, u) : v + u;
    }
    __syncthreads();            /* part[] may still be read by a previous call */
    if (lane == 0)
        part[warp] = v;
    __syncthreads();
    v = lane < nwarp ? part[lane] : (is_max ? -INFINITY : 0.0f);
    for (int o = 16; o > 0; o >>= 1) {
        float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, u) : v + u;
    }
    return v;
}

/* ---- entry points (vtable ops), one family per file ----------------------------- */

int kn_cuda_matmul(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                   const struct kn_tensor *w);
/* gemv.cu: W bf16, x and y f32 (y = x W^T); called by kn_cuda_matmul */
int kn_cuda_gemv_bf16(struct kn_backend *be, struct kn_mat y, struct kn_mat x, struct kn_mat w);
int kn_cuda_matmul_bf16w_tiled(struct kn_backend *be, struct kn_mat y, struct kn_mat x,
                               struct kn_mat w);
/* largest M the GEMV takes; above, x split into bf16 hi+lo and two bf16
 * tensor-core GEMMs (gemv.cu). Measured on the
 * H100 (8B shape): M=1 GEMV 66 tok/s (f32 cuBLAS 51); M=32 as two 16-row
 * GEMV passes 306 tok/s, far below f32 cuBLAS (1095): the 16 x rows per W
 * word make it L1-bound; widened-slab SGEMMs gave 339 at M=32. */
#define KN_CUDA_GEMV_MAX_M 4
int kn_cuda_rms_norm(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                     const struct kn_tensor *w, struct kn_tensor *res, float eps);
int kn_cuda_rope(struct kn_backend *be, struct kn_tensor *x, const struct kn_tensor *pos,
                 const struct kn_tensor *cos_sin);
int kn_cuda_softmax(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                    float scale, int causal);
int kn_cuda_silu_mul(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *gate,
                     const struct kn_tensor *up);
int kn_cuda_embed(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *table,
                  const struct kn_tensor *ids);
int kn_cuda_add(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *a,
                const struct kn_tensor *b);
int kn_cuda_convert(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x);
/* paged.cu */
int kn_cuda_kv_store(struct kn_backend *be, struct kn_tensor *k_cache, struct kn_tensor *v_cache,
                     const struct kn_tensor *k, const struct kn_tensor *v,
                     const struct kn_tensor *slots);
int kn_cuda_paged_attention(struct kn_backend *be, struct kn_tensor *out, const struct kn_tensor *q,
                            const struct kn_tensor *k_cache, const struct kn_tensor *v_cache,
                            const struct kn_tensor *block_table, const struct kn_tensor *seq,
                            const struct kn_tensor *pos, int block_size, float scale, int window);
/* largest head dim paged_attention takes */
#define KN_CUDA_ATTN_MAX_D 256
/* route.cu */
int kn_cuda_gather_rows(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                        const struct kn_tensor *idx);
int kn_cuda_scatter_add_rows(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                             const struct kn_tensor *idx, const struct kn_tensor *w);
int kn_cuda_moe_route(struct kn_backend *be, struct kn_tensor *ids, struct kn_tensor *weights,
                      const struct kn_tensor *logits, int k, int norm);
/* most experts moe_route takes (one warp's shared row) */
#define KN_CUDA_ROUTE_MAX_E 4096
/* encoder.cu (seq_attention takes D <= KN_CUDA_ATTN_MAX_D too) */
int kn_cuda_layer_norm(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                       const struct kn_tensor *w, const struct kn_tensor *b, float eps);
int kn_cuda_act(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x, int act);
int kn_cuda_seq_attention(struct kn_backend *be, struct kn_tensor *out, const struct kn_tensor *q,
                          const struct kn_tensor *k, const struct kn_tensor *v,
                          const struct kn_tensor *seq_start, float scale);
/* asr.cu */
int kn_cuda_seq_dwconv(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                       const struct kn_tensor *w, const struct kn_tensor *seq_start, int left,
                       int add_x);
int kn_cuda_row_argmax(struct kn_backend *be, struct kn_tensor *ids, struct kn_tensor *lse,
                       const struct kn_tensor *x);

#endif
