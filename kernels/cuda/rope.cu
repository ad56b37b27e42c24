/*
 * rope.cu -- neox rotate-half rotary embedding in place on x (T, H, D), one
 * thread per rotated pair (t, h, i < n_rot/2), cos/sin from the table that
 * kn_rope_table() builds. A token whose position is outside the table is left
 * unchanged (the CPU twin rope_ref() does the same and also reports it).
 */
#include "kn_cuda.h"

__global__ void rope_kernel(void *x, int dt, int64_t s0, int64_t s1, int64_t H,
                            const int32_t *pos, const float *cs, int64_t P, int64_t n_rot,
                            int64_t n)
{
    int64_t hr = n_rot / 2;
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n;
         k += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = k % hr, th = k / hr, h = th % H, t = th / H;
        int64_t p = pos[t];
        if (p < 0 || p >= P)
            continue;
        float c = cs[p * n_rot + i], s = cs[p * n_rot + hr + i];
        int64_t o = t * s0 + h * s1 + i;
        float x0 = kn_ld(x, dt, o), x1 = kn_ld(x, dt, o + hr);
        kn_st(x, dt, o, x0 * c - x1 * s);
        kn_st(x, dt, o + hr, x0 * s + x1 * c);
    }
}

static int rope_cuda(void *x, int dt, int64_t T, int64_t H, int64_t s0, int64_t s1,
                     const int32_t *pos, const float *cs, int64_t P, int64_t n_rot, cudaStream_t s)
{
    int64_t n = T * H * (n_rot / 2);
    if (n == 0)
        return 0;
    rope_kernel<<<kn_grid(n, 256), 256, 0, s>>>(x, dt, s0, s1, H, pos, cs, P, n_rot, n);
    return CUDA_CHECK(cudaGetLastError());
}

int kn_cuda_rope(struct kn_backend *be, struct kn_tensor *x, const struct kn_tensor *pos,
                 const struct kn_tensor *cos_sin)
{
    KN_ASSERT(x->ndim == 3 && x->stride[2] == 1 && x->dtype != KN_I32);
    KN_ASSERT(pos->dtype == KN_I32 && pos->shape[0] == x->shape[0]);
    KN_ASSERT(cos_sin->dtype == KN_F32 && cos_sin->shape[1] % 2 == 0 && cos_sin->shape[1] <= x->shape[2]);
    if (CUDA_CHECK(cudaSetDevice(be->device)) < 0)
        return -1;
    return rope_cuda(x->data, x->dtype, x->shape[0], x->shape[1], x->stride[0], x->stride[1],
                     (const int32_t *)pos->data, (const float *)cos_sin->data, cos_sin->shape[0],
                     cos_sin->shape[1], kn_cuda_ctx_of(be)->stream);
}
