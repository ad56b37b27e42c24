/*
 * gemv.cu -- y (M,N) f32 = x (M,K) f32 @ W (N,K) bf16 ^T for the decode
 * shapes (small M): W is read once, as stored, in 16-byte loads; each warp
 * owns R rows of W and walks K with 8 bf16 per lane per step, widening to
 * f32 and accumulating in f32 against up to MT rows of x (through L1). It
 * is memory-bound by design; larger M splits x into bf16 hi+lo for two
 * tensor-core GEMMs (kn_cuda_matmul_bf16w_tiled, below).
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

/* f32 -> bf16 bits, round to nearest even (NaN kept quiet) */
__device__ static inline uint16_t to_bf16(float f)
{
    uint32_t x = __float_as_uint(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

/* x (M,K) f32 with row stride ldx -> hi (M,K) and lo (M,K) bf16 with
 * hi + lo == x to about 2^-17 relative: hi = bf16(x), lo = bf16(x - hi). */
__global__ void split_rows(const float *__restrict__ x, int64_t ldx, uint16_t *__restrict__ hi,
                           uint16_t *__restrict__ lo, int64_t M, int64_t K)
{
    int64_t n = M * K;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / K, k = i - r * K;
        float v = x[r * ldx + k];
        uint16_t h = to_bf16(v);
        hi[i] = h;
        lo[i] = to_bf16(v - __uint_as_float((uint32_t)h << 16));
    }
}

/* y = x W^T for W bf16, x and y f32, M above the GEMV's range: x is split
 * into a bf16 high and low part (x = hi + lo to ~2^-17) and W, exactly bf16,
 * multiplies both on the tensor cores with f32 accumulation:
 * y = W hi^T + W lo^T. Accuracy stays that of an f32 product (the CPU twin
 * widens W and keeps x f32) while W is read as stored, no f32 copy. */
int kn_cuda_matmul_bf16w_tiled(struct kn_backend *be, struct kn_mat y, struct kn_mat x,
                               struct kn_mat w)
{
    struct kn_cuda_ctx *c = kn_cuda_ctx_of(be);
    int64_t M = x.rows, K = x.cols;
    uint16_t *hi = (uint16_t *)kn_cuda_work(be, (size_t)(2 * M * K) * sizeof(uint16_t));
    if (hi == NULL)
        return -1;
    uint16_t *lo = hi + M * K;
    split_rows<<<kn_grid(M * K, 256), 256, 0, c->stream>>>((const float *)x.data, x.ld, hi, lo,
                                                          M, K);
    if (CUDA_CHECK(cudaGetLastError()) < 0)
        return -1;
    const float one = 1.0f, zero = 0.0f;
    const uint16_t *parts[2] = { hi, lo };
    for (int p = 0; p < 2; p++)
        if (CUBLAS_CHECK(cublasGemmEx(c->cublas, CUBLAS_OP_T, CUBLAS_OP_N, (int)w.rows, (int)M,
                                      (int)K, &one, w.data, CUDA_R_16BF, (int)w.ld, parts[p],
                                      CUDA_R_16BF, (int)K, p == 0 ? &zero : &one, y.data,
                                      CUDA_R_32F, (int)y.ld, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT)) < 0)
            return -1;
    return 0;
}
