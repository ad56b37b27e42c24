/*
 * route.cu -- row gathers and MoE routing on the GPU: gather_rows (one thread
 * per output element), scatter_add_rows (one thread per column walking the
 * rows in index order, so repeated indices add in the CPU's order, with the
 * CPU's unfused multiply-add) and moe_route (one warp per token: softmax,
 * k argmax passes with the CPU's tie and NaN rules). CPU twins:
 * kernels/cpu/route.c. Out-of-range indices are skipped (gather: zero row).
 */
#include "kn_cuda.h"

/* y (n, D) = x[idx[i]]; an index outside [0, x.rows) gives a zero row */
__global__ void gather_rows_kernel(struct kn_mat y, struct kn_mat x, const int32_t *idx)
{
    int64_t n = y.rows * y.cols;
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n;
         k += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = k / y.cols, c = k % y.cols, r = idx[i];
        float v = r >= 0 && r < x.rows ? kn_ld(x.data, x.dt, r * x.ld + c) : 0.0f;
        kn_st(y.data, y.dt, i * y.ld + c, v);
    }
}

/* column c of y[idx[i]] += w[i] * x[i] for i in order; rounded on each store */
__global__ void scatter_add_kernel(struct kn_mat y, struct kn_mat x, const int32_t *idx,
                                   const float *w)
{
    for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < y.cols;
         c += (int64_t)gridDim.x * blockDim.x) {
        for (int64_t i = 0; i < x.rows; i++) {
            int64_t r = idx[i];
            if (r < 0 || r >= y.rows)
                continue;
            float wi = w ? w[i] : 1.0f;
            float v = __fadd_rn(kn_ld(y.data, y.dt, r * y.ld + c),
                                __fmul_rn(wi, kn_ld(x.data, x.dt, i * x.ld + c)));
            kn_st(y.data, y.dt, r * y.ld + c, v);
        }
    }
}

/* Warp per token (row t of logits (T, E)): p = softmax in f32, then k passes
 * of argmax (p >= 0, ties to the lower id; when only NaNs are left, the
 * first untaken) -> ids, weights; renormalized when norm. */
__global__ void moe_route_kernel(int32_t *ids, float *wts, struct kn_mat lg, int k, int norm)
{
    extern __shared__ float prow[];
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    int64_t t = (int64_t)blockIdx.x * (blockDim.x >> 5) + w, E = lg.cols;
    if (t >= lg.rows)
        return;                                 /* warp-uniform; no block barrier below */
    float *p = prow + (int64_t)w * E, mx = -INFINITY, sum = 0.0f;
    for (int64_t e = lane; e < E; e += 32) {
        p[e] = kn_ld(lg.data, lg.dt, t * lg.ld + e);
        mx = p[e] > mx ? p[e] : mx;             /* as the CPU: NaN never becomes the max */
    }
    for (int o = 16; o > 0; o >>= 1) {
        float u = __shfl_xor_sync(0xffffffffu, mx, o);
        mx = u > mx ? u : mx;
    }
    for (int64_t e = lane; e < E; e += 32) {
        p[e] = expf(p[e] - mx);
        sum += p[e];
    }
    for (int o = 16; o > 0; o >>= 1)
        sum += __shfl_xor_sync(0xffffffffu, sum, o);
    for (int64_t e = lane; e < E; e += 32)
        p[e] /= sum;
    __syncwarp();
    float top = 0.0f;
    for (int i = 0; i < k; i++) {
        int64_t best = -1, first = -1;
        float bp = 0.0f;
        for (int64_t e = lane; e < E; e += 32) {
            float v = p[e];
            if (v >= 0.0f && (best < 0 || v > bp)) {
                best = e;
                bp = v;
            }
            if (first < 0 && v != -1.0f)
                first = e;
        }
        for (int o = 16; o > 0; o >>= 1) {
            int64_t ob = __shfl_xor_sync(0xffffffffu, best, o);
            float op = __shfl_xor_sync(0xffffffffu, bp, o);
            int64_t of = __shfl_xor_sync(0xffffffffu, first, o);
            if (ob >= 0 && (best < 0 || op > bp || (op == bp && ob < best))) {
                best = ob;
                bp = op;
            }
            if (of >= 0 && (first < 0 || of < first))
                first = of;
        }
        best = best >= 0 ? best : first;
        float pb = p[best];
        __syncwarp();
        if (lane == 0) {
            ids[t * k + i] = (int32_t)best;
            wts[t * k + i] = pb;
            p[best] = -1.0f;
        }
        __syncwarp();
        top += pb;
    }
    if (norm && lane == 0)
        for (int i = 0; i < k; i++)
            wts[t * k + i] /= top;
}

int kn_cuda_gather_rows(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                        const struct kn_tensor *idx)
{
    struct kn_mat ym = kn_mat_of(y), xm = kn_mat_of(x);
    KN_ASSERT(ym.cols == xm.cols && idx->dtype == KN_I32 && idx->shape[0] == ym.rows);
    if (ym.rows * ym.cols == 0)
        return 0;
    if (CUDA_CHECK(cudaSetDevice(be->device)) < 0)
        return -1;
    gather_rows_kernel<<<kn_grid(ym.rows * ym.cols, 256), 256, 0, kn_cuda_ctx_of(be)->stream>>>(
        ym, xm, (const int32_t *)idx->data);
    return CUDA_CHECK(cudaGetLastError());
}

int kn_cuda_scatter_add_rows(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                             const struct kn_tensor *idx, const struct kn_tensor *w)
{
    struct kn_mat ym = kn_mat_of(y), xm = kn_mat_of(x);
    KN_ASSERT(ym.cols == xm.cols && idx->dtype == KN_I32 && idx->shape[0] == xm.rows);
    KN_ASSERT(w == NULL || (w->dtype == KN_F32 && w->shape[0] == xm.rows));
    if (ym.cols == 0 || xm.rows == 0)
        return 0;
    if (CUDA_CHECK(cudaSetDevice(be->device)) < 0)
        return -1;
    int block = ym.cols >= 1024 ? 128 : 32;
    scatter_add_kernel<<<kn_grid(ym.cols, block), block, 0, kn_cuda_ctx_of(be)->stream>>>(
        ym, xm, (const int32_t *)idx->data, w ? (const float *)w->data : NULL);
    return CUDA_CHECK(cudaGetLastError());
}

int kn_cuda_moe_route(struct kn_backend *be, struct kn_tensor *ids, struct kn_tensor *weights,
                      const struct kn_tensor *logits, int k, int norm)
{
    struct kn_mat lm = kn_mat_of(logits);
    KN_ASSERT(k >= 1 && k <= lm.cols && lm.cols <= KN_CUDA_ROUTE_MAX_E);
    KN_ASSERT(ids->dtype == KN_I32 && weights->dtype == KN_F32 && ids->shape[0] == lm.rows);
    if (lm.rows == 0)
        return 0;
    int wpb = lm.cols <= 512 ? 4 : 1;           /* warps (tokens) per block */
    size_t smem = (size_t)wpb * lm.cols * sizeof(float);
    int64_t blocks = (lm.rows + wpb - 1) / wpb;
    KN_ASSERT(blocks <= INT32_MAX);
    if (CUDA_CHECK(cudaSetDevice(be->device)) < 0)
        return -1;
    moe_route_kernel<<<(unsigned)blocks, 32 * wpb, smem, kn_cuda_ctx_of(be)->stream>>>(
        (int32_t *)ids->data, (float *)weights->data, lm, k, norm);
    return CUDA_CHECK(cudaGetLastError());
}
