/*
 * asr.cu -- the speech worker's ops on the GPU (issue 8): seq_dwconv (the
 * FSMN memory block of SAN-M: a depthwise 1-D convolution along each
 * sequence of a packed batch, zero padded at both ends of every sequence; one
 * block per token, threads over channels) and row_argmax (argmax per row with
 * ties to the lowest index, optional logsumexp; one block per row). CPU twins:
 * kernels/cpu/asr_ops.c. No host data beyond the launch arguments.
 */
#include "kn_cuda.h"

/* ---- seq_dwconv ------------------------------------------------------------------ */

struct dw_args {
    struct kn_mat y, x;
    const void *w;              /* (C, K) contiguous */
    int wdt;
    const int32_t *start;
    int n_seqs, T, K, left, add_x;
};

/* The sequence holding token t: the last s with start[s] <= t (empty
 * sequences before it share its start). */
__device__ __forceinline__ int dw_seq_of(const int32_t *st, int n, int t)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (st[mid] <= t)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Block t: y[t, c] for every c. The taps whose row leaves t's sequence (its
 * bounds clamped into [0, T], so that a bad seq_start, which only the cpu
 * checks, cannot make the kernel read outside x) add nothing. Taps are summed
 * in k order after x, as the cpu does. */
__global__ void seq_dwconv_kernel(struct dw_args a)
{
    int t = blockIdx.x;
    int s = dw_seq_of(a.start, a.n_seqs, t);
    int lo = a.start[s], hi = a.start[s + 1];
    lo = lo < 0 ? 0 : lo > a.T ? a.T : lo;
    hi = hi < lo ? lo : hi > a.T ? a.T : hi;
    int k0 = lo - (t - a.left), k1 = hi - (t - a.left);    /* taps inside: [k0, k1) */
    k0 = k0 < 0 ? 0 : k0;
    k1 = k1 > a.K ? a.K : k1;
    int64_t C = a.x.cols;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = a.add_x ? kn_ld(a.x.data, a.x.dt, t * a.x.ld + c) : 0.0f;
        for (int k = k0; k < k1; k++) {
            int64_t r = t + k - a.left;
            acc += kn_ld(a.w, a.wdt, c * a.K + k) * kn_ld(a.x.data, a.x.dt, r * a.x.ld + c);
        }
        kn_st(a.y.data, a.y.dt, t * a.y.ld + c, acc);
    }
}

int kn_cuda_seq_dwconv(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                       const struct kn_tensor *w, const struct kn_tensor *seq_start, int left,
                       int add_x)
{
    struct dw_args a;
    memset(&a, 0, sizeof(a));
    a.y = kn_mat_of(y);
    a.x = kn_mat_of(x);
    KN_ASSERT(a.y.rows == a.x.rows && a.y.cols == a.x.cols);
    KN_ASSERT(w->ndim == 2 && w->shape[0] == a.x.cols && w->shape[1] >= 1 &&
              w->shape[1] <= INT32_MAX && left >= 0 && left < w->shape[1]);
    KN_ASSERT(seq_start->dtype == KN_I32 && seq_start->shape[0] >= 2 &&
              seq_start->shape[0] <= INT32_MAX && a.x.rows <= INT32_MAX);
    a.w = w->data;
    a.wdt = (int)w->dtype;
    a.start = (const int32_t *)seq_start->data;
    a.n_seqs = (int)(seq_start->shape[0] - 1);
    a.T = (int)a.x.rows;
    a.K = (int)w->shape[1];
    a.left = left;
    a.add_x = add_x != 0;
    if (a.T == 0 || a.x.cols == 0)
        return 0;
    if (CUDA_CHECK(cudaSetDevice(be->device)) < 0)
        return -1;
    int block = a.x.cols >= 256 ? 256 : a.x.cols >= 64 ? 64 : 32;
    seq_dwconv_kernel<<<(unsigned)a.T, block, 0, kn_cuda_ctx_of(be)->stream>>>(a);
    return CUDA_CHECK(cudaGetLastError());
}

/* ---- row_argmax ------------------------------------------------------------------- */

/* (v, i) beats (bv, bi): larger, or equal with a lower index. */
__device__ __forceinline__ int am_better(float v, int i, float bv, int bi)
{
    return v > bv || (v == bv && i < bi);
}

/* Block r: ids[r] and, when lse, lse[r] of row r. Each thread keeps the best
 * of its strided elements (a NaN never wins, as on the cpu unless it is
 * first), then the warps and the block reduce the (value, index) pairs. */
__global__ void row_argmax_kernel(struct kn_mat x, int32_t *ids, float *lse)
{
    __shared__ float pv[32];
    __shared__ int pi[32];
    int64_t r = blockIdx.x, V = x.cols;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarp = blockDim.x >> 5;
    float bv = -INFINITY;
    int bi = INT32_MAX;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
        float u = kn_ld(x.data, x.dt, r * x.ld + v);
        if (am_better(u, (int)v, bv, bi))
            bv = u, bi = (int)v;
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (am_better(ov, oi, bv, bi))
            bv = ov, bi = oi;
    }
    if (lane == 0) {
        pv[warp] = bv;
        pi[warp] = bi;
    }
    __syncthreads();
    bv = lane < nwarp ? pv[lane] : -INFINITY;
    bi = lane < nwarp ? pi[lane] : INT32_MAX;
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (am_better(ov, oi, bv, bi))
            bv = ov, bi = oi;
    }
    /* a row of NaN and -inf only: nothing beat the start; the cpu answers 0 */
    if (bi == INT32_MAX)
        bi = 0, bv = kn_ld(x.data, x.dt, r * x.ld);
    if (threadIdx.x == 0)
        ids[r] = bi;
    if (lse == NULL)
        return;
    float s = 0.0f;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x)
        s += expf(kn_ld(x.data, x.dt, r * x.ld + v) - bv);
    s = kn_block_reduce(s, 0);
    if (threadIdx.x == 0)
        lse[r] = bv + logf(s);
}

int kn_cuda_row_argmax(struct kn_backend *be, struct kn_tensor *ids, struct kn_tensor *lse,
                       const struct kn_tensor *x)
{
    struct kn_mat xm = kn_mat_of(x);
    KN_ASSERT(ids->dtype == KN_I32 && kn_tensor_nelem(ids) == xm.rows);
    KN_ASSERT(!lse || (lse->dtype == KN_F32 && kn_tensor_nelem(lse) == xm.rows));
    KN_ASSERT(xm.rows <= INT32_MAX && xm.cols <= INT32_MAX && xm.cols >= 1);
    if (xm.rows == 0)
        return 0;
    if (CUDA_CHECK(cudaSetDevice(be->device)) < 0)
        return -1;
    int block = xm.cols >= 4096 ? 512 : xm.cols >= 256 ? 128 : 32;
    row_argmax_kernel<<<(unsigned)xm.rows, block, 0, kn_cuda_ctx_of(be)->stream>>>(
        xm, (int32_t *)ids->data, lse ? (float *)lse->data : NULL);
    return CUDA_CHECK(cudaGetLastError());
}
