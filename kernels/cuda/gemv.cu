/*
 * gemv.cu -- y (M,N) f32 = x (M,K) f32 @ W (N,K) bf16 ^T for the decode
 * shapes (small M): W is read once, as stored, in 16-byte loads; each warp
 * owns R rows of W and walks K with 8 bf16 per lane per step, widening to
 * f32 and accumulating in f32 against up to MT rows of x (through L1). It
 * is memory-bound by design; the tiled large-M path lives in matmul.cu.
 * CPU twin: matmul_ref() in kernels/cpu/kn_cpu.c (same widening, f32 sums).
 */
#include <stdint.h>

#include "kn_cuda.h"

/* the 8 bf16 of a 16-byte word, widened (exact) */
__device__ __forceinline__ void gemv_widen8(uint4 v, float f[8])
{
    const uint32_t u[4] = { v.x, v.y, v.z, v.w };
#pragma unroll
    for (int i = 0; i < 4; i++) {
        f[2 * i] = __uint_as_float(u[i] << 16);
        f[2 * i + 1] = __uint_as_float(u[i] & 0xffff0000u);
    }
}

/* One warp: rows n0..n0+R-1 of W against rows m0..m0+MT-1 of x (those < M).
 * kv: the prefix of K done with vector loads (a multiple of 8; 0 when W or
 * x rows are not 16-byte aligned); the rest goes element by element. */
template <int MT, int R>
__global__ void __launch_bounds__(256) gemv_bf16_f32(const uint16_t *__restrict__ w, int64_t ldw,
                                                     const float *__restrict__ x, int64_t ldx,
                                                     float *__restrict__ y, int64_t ldy,
                                                     int M, int N, int K, int kv)
{
    int lane = threadIdx.x & 31;
    int64_t warp = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int64_t n0 = warp * R;
    if (n0 >= N)
        return;
    float acc[R][MT];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int m = 0; m < MT; m++)
            acc[r][m] = 0.0f;
    const uint16_t *wr[R];
#pragma unroll
    for (int r = 0; r < R; r++)     /* rows past N re-read the last row; never stored */
        wr[r] = w + (n0 + r < N ? n0 + r : (int64_t)N - 1) * ldw;

#pragma unroll 2
    for (int k = lane * 8; k < kv; k += 256) {
        uint4 wv[R];
#pragma unroll
        for (int r = 0; r < R; r++)
            wv[r] = __ldg((const uint4 *)(wr[r] + k));
        float wf[R][8];
#pragma unroll
        for (int r = 0; r < R; r++)
            gemv_widen8(wv[r], wf[r]);
#pragma unroll
        for (int m = 0; m < MT; m++) {
            if (m < M) {
                const float4 *xp = (const float4 *)(x + (int64_t)m * ldx + k);
                float4 a = __ldg(xp), b = __ldg(xp + 1);
#pragma unroll
                for (int r = 0; r < R; r++) {
                    float s = acc[r][m];
                    s = fmaf(wf[r][0], a.x, s); s = fmaf(wf[r][1], a.y, s);
                    s = fmaf(wf[r][2], a.z, s); s = fmaf(wf[r][3], a.w, s);
                    s = fmaf(wf[r][4], b.x, s); s = fmaf(wf[r][5], b.y, s);
                    s = fmaf(wf[r][6], b.z, s); s = fmaf(wf[r][7], b.w, s);
                    acc[r][m] = s;
                }
            }
        }
    }
    for (int k = kv + lane; k < K; k += 32) {
        float wf[R];
#pragma unroll
        for (int r = 0; r < R; r++)
            wf[r] = __uint_as_float((uint32_t)wr[r][k] << 16);
#pragma unroll
        for (int m = 0; m < MT; m++)
            if (m < M) {
                float a = x[(int64_t)m * ldx + k];
#pragma unroll
                for (int r = 0; r < R; r++)
                    acc[r][m] = fmaf(wf[r], a, acc[r][m]);
            }
    }
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int m = 0; m < MT; m++) {
            float v = acc[r][m];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1)
                v += __shfl_xor_sync(0xffffffffu, v, o);
            if (lane == ((r * MT + m) & 31) && m < M && n0 + r < N)
                y[(int64_t)m * ldy + n0 + r] = v;
        }
}

template <int MT, int R>
static void gemv_launch(cudaStream_t s, const struct kn_mat &y, const struct kn_mat &x,
                        const struct kn_mat &w, int kv)
{
    const int block = 256;
    int64_t warps = (w.rows + R - 1) / R;
    unsigned grid = (unsigned)((warps * 32 + block - 1) / block);
    gemv_bf16_f32<MT, R><<<grid, block, 0, s>>>((const uint16_t *)w.data, w.ld,
                                                (const float *)x.data, x.ld, (float *)y.data,
                                                y.ld, (int)x.rows, (int)w.rows, (int)x.cols, kv);
}

template <int MT>
static void gemv_rows(cudaStream_t s, int n_sm, const struct kn_mat &y, const struct kn_mat &x,
                      const struct kn_mat &w, int kv)
{
    /* more rows per warp means more 16-byte loads in flight per lane and
     * less x traffic per W byte, but fewer warps: keep ~16 warps per SM */
    int64_t N = w.rows;
    if (N >= (int64_t)n_sm * 64)
        gemv_launch<MT, 4>(s, y, x, w, kv);
    else if (N >= (int64_t)n_sm * 16)
        gemv_launch<MT, 2>(s, y, x, w, kv);
    else
        gemv_launch<MT, 1>(s, y, x, w, kv);
}

/* y = x W^T for W bf16, x and y f32, any M (passes of up to 16 rows of x). */
int kn_cuda_gemv_bf16(struct kn_backend *be, struct kn_mat y, struct kn_mat x, struct kn_mat w)
{
    struct kn_cuda_ctx *c = kn_cuda_ctx_of(be);
    int vec = ((uintptr_t)w.data % 16) == 0 && w.ld % 8 == 0 &&
              ((uintptr_t)x.data % 16) == 0 && x.ld % 4 == 0;
    int kv = vec ? (int)(x.cols & ~(int64_t)7) : 0;
    for (int64_t m0 = 0; m0 < x.rows; m0 += 16) {
        struct kn_mat xs = x, ys = y;
        int64_t mt = x.rows - m0 < 16 ? x.rows - m0 : 16;
        xs.data = (float *)x.data + m0 * x.ld;
        ys.data = (float *)y.data + m0 * y.ld;
        xs.rows = ys.rows = mt;
        if (mt == 1)
            gemv_rows<1>(c->stream, c->n_sm, ys, xs, w, kv);
        else if (mt == 2)
            gemv_rows<2>(c->stream, c->n_sm, ys, xs, w, kv);
        else if (mt <= 4)
            gemv_rows<4>(c->stream, c->n_sm, ys, xs, w, kv);
        else if (mt <= 8)
            gemv_rows<8>(c->stream, c->n_sm, ys, xs, w, kv);
        else
            gemv_rows<16>(c->stream, c->n_sm, ys, xs, w, kv);
    }
    return CUDA_CHECK(cudaGetLastError());
}

/* rows [n0, n0+rows) of bf16 W (ld ldw) -> contiguous f32 (rows, K) */
__global__ void widen_rows(const uint16_t *__restrict__ w, int64_t ldw, float *__restrict__ out,
                           int64_t rows, int64_t K)
{
    int64_t n = rows * K;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / K, k = i - r * K;
        out[i] = __uint_as_float((uint32_t)w[r * ldw + k] << 16);
    }
}

/* y = x W^T for W bf16, x and y f32, large M: W is widened to f32 a slab of
 * rows at a time (a slab small enough to stay in L2) and each slab goes
 * through cuBLAS SGEMM (CUBLAS_COMPUTE_32F, no TF32). */
int kn_cuda_matmul_bf16w_tiled(struct kn_backend *be, struct kn_mat y, struct kn_mat x,
                               struct kn_mat w)
{
    struct kn_cuda_ctx *c = kn_cuda_ctx_of(be);
    int64_t K = x.cols, slab = ((int64_t)4 << 20) / (K > 0 ? K : 1);
    slab = slab < 64 ? 64 : slab;
    slab = slab > w.rows ? w.rows : slab;
    float *ws = (float *)kn_cuda_work(be, (size_t)(slab * K) * sizeof(float));
    if (ws == NULL)
        return -1;
    const float alpha = 1.0f, beta = 0.0f;
    for (int64_t n0 = 0; n0 < w.rows; n0 += slab) {
        int64_t rows = w.rows - n0 < slab ? w.rows - n0 : slab;
        widen_rows<<<kn_grid(rows * K, 256), 256, 0, c->stream>>>(
            (const uint16_t *)w.data + n0 * w.ld, w.ld, ws, rows, K);
        if (CUDA_CHECK(cudaGetLastError()) < 0 ||
            CUBLAS_CHECK(cublasGemmEx(c->cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)x.rows,
                                      (int)K, &alpha, ws, CUDA_R_32F, (int)K, x.data, CUDA_R_32F,
                                      (int)x.ld, &beta, (float *)y.data + n0, CUDA_R_32F,
                                      (int)y.ld, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT)) < 0)
            return -1;
    }
    return 0;
}
