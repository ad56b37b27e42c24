/*
 * norm.cu -- rms_norm, optionally fused with the residual add: one block per
 * row, f32 sum of squares reduced over the block. With a residual the sum
 * x + res is stored first and the norm is taken of the stored (rounded)
 * value, as the CPU twin rms_norm_ref() in kernels/cpu/kn_cpu.c does.
 */
#include "kn_cuda.h"

/* x (R,D) [+ res (R,D)], w (D,) -> y (R,D); block r handles row r */
__global__ void rms_norm_kernel(struct kn_mat y, struct kn_mat x, const void *w, int wdt,
                                struct kn_mat res, int has_res, float eps)
{
    int64_t r = blockIdx.x, D = x.cols;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        float v = kn_ld(x.data, x.dt, r * x.ld + i);
        if (has_res) {
            kn_st(res.data, res.dt, r * res.ld + i, v + kn_ld(res.data, res.dt, r * res.ld + i));
            v = kn_ld(res.data, res.dt, r * res.ld + i);
        }
        ss += v * v;
    }
    ss = kn_block_reduce(ss, 0);
    float inv = 1.0f / sqrtf(ss / (float)D + eps);
    /* each thread rereads only the elements it wrote, so y may alias x */
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        float v = has_res ? kn_ld(res.data, res.dt, r * res.ld + i) : kn_ld(x.data, x.dt, r * x.ld + i);
        kn_st(y.data, y.dt, r * y.ld + i, v * inv * kn_ld(w, wdt, i));
    }
}

static int rms_norm_cuda(struct kn_mat y, struct kn_mat x, const void *w, int wdt,
                         struct kn_mat res, int has_res, float eps, cudaStream_t s)
{
    int block = x.cols >= 2048 ? 1024 : x.cols >= 512 ? 256 : 64;
    if (x.rows == 0)
        return 0;
    rms_norm_kernel<<<(unsigned)x.rows, block, 0, s>>>(y, x, w, wdt, res, has_res, eps);
    return CUDA_CHECK(cudaGetLastError());
}

int kn_cuda_rms_norm(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                     const struct kn_tensor *w, struct kn_tensor *res, float eps)
{
    struct kn_mat ym = kn_mat_of(y), xm = kn_mat_of(x), rm = res ? kn_mat_of(res) : xm;
    KN_ASSERT(ym.rows == xm.rows && ym.cols == xm.cols && rm.rows == xm.rows && rm.cols == xm.cols);
    KN_ASSERT(w->ndim == 1 && w->shape[0] == xm.cols && w->stride[0] == 1);
    KN_ASSERT(xm.rows <= INT32_MAX);
    if (CUDA_CHECK(cudaSetDevice(be->device)) < 0)
        return -1;
    return rms_norm_cuda(ym, xm, w->data, w->dtype, rm, res != NULL, eps, kn_cuda_ctx_of(be)->stream);
}
