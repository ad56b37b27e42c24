/*
 * softmax.cu -- row softmax of x*scale with an optional causal mask, one
 * block per row: max, then sum of exp, then the normalized write, all in f32.
 * Row r is query t = r % T of S keys and sees columns c <= t + S - T; masked
 * columns (and fully masked rows) are 0. CPU twin: softmax_ref().
 */
#include "kn_cuda.h"

__global__ void softmax_kernel(struct kn_mat y, struct kn_mat x, float scale, int64_t T)
{
    int64_t r = blockIdx.x, S = x.cols;
    int64_t lim = T > 0 ? r % T + S - T + 1 : S;
    lim = lim < 0 ? 0 : lim > S ? S : lim;
    float mx = -INFINITY, sum = 0.0f;
    for (int64_t c = threadIdx.x; c < lim; c += blockDim.x)
        mx = fmaxf(mx, kn_ld(x.data, x.dt, r * x.ld + c) * scale);
    mx = kn_block_reduce(mx, 1);
    for (int64_t c = threadIdx.x; c < lim; c += blockDim.x)
        sum += expf(kn_ld(x.data, x.dt, r * x.ld + c) * scale - mx);
    sum = kn_block_reduce(sum, 0);
    /* each thread rereads only the elements it writes, so y may alias x */
    for (int64_t c = threadIdx.x; c < S; c += blockDim.x) {
        float v = c < lim ? expf(kn_ld(x.data, x.dt, r * x.ld + c) * scale - mx) / sum : 0.0f;
        kn_st(y.data, y.dt, r * y.ld + c, v);
    }
}

static int softmax_cuda(struct kn_mat y, struct kn_mat x, float scale, int64_t T, cudaStream_t s)
{
    int block = x.cols >= 2048 ? 1024 : x.cols >= 256 ? 256 : 64;
    if (x.rows == 0)
        return 0;
    softmax_kernel<<<(unsigned)x.rows, block, 0, s>>>(y, x, scale, T);
    return CUDA_CHECK(cudaGetLastError());
}

int kn_cuda_softmax(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                    float scale, int causal)
{
    struct kn_mat ym = kn_mat_of(y), xm = kn_mat_of(x);
    KN_ASSERT(ym.rows == xm.rows && ym.cols == xm.cols && (!causal || x->ndim >= 2));
    KN_ASSERT(xm.rows <= INT32_MAX);
    if (CUDA_CHECK(cudaSetDevice(be->device)) < 0)
        return -1;
    return softmax_cuda(ym, xm, scale, causal ? x->shape[x->ndim - 2] : 0, kn_cuda_ctx_of(be)->stream);
}
