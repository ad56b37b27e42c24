/*
 * elementwise.cu -- the memory-bound ops: silu_mul, add (with a broadcast
 * row), convert and the embedding gather. One thread per output element in
 * a grid-stride loop over rows x cols; f32 math, rounded once on store.
 * CPU twins: silu_mul_ref(), add_ref(), convert_ref(), embed_ref().
 */
#include "kn_cuda.h"

#define EW_BLOCK 256

/* gate (R,C), up (R,C) -> y (R,C) = gate * sigmoid(gate) * up */
__global__ void silu_mul_kernel(struct kn_mat y, struct kn_mat g, struct kn_mat u)
{
    int64_t n = y.rows * y.cols;
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n;
         k += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = k / y.cols, c = k % y.cols;
        float a = kn_ld(g.data, g.dt, r * g.ld + c);
        kn_st(y.data, y.dt, r * y.ld + c, a / (1.0f + expf(-a)) * kn_ld(u.data, u.dt, r * u.ld + c));
    }
}

/* a (R,C) + b (R,C), or + b (C,) when bcast -> y (R,C) */
__global__ void add_kernel(struct kn_mat y, struct kn_mat a, struct kn_mat b, int bcast)
{
    int64_t n = y.rows * y.cols;
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n;
         k += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = k / y.cols, c = k % y.cols;
        float v = kn_ld(a.data, a.dt, r * a.ld + c) + kn_ld(b.data, b.dt, (bcast ? 0 : r * b.ld) + c);
        kn_st(y.data, y.dt, r * y.ld + c, v);
    }
}

/* x (R,C) -> y (R,C) in y's dtype */
__global__ void convert_kernel(struct kn_mat y, struct kn_mat x)
{
    int64_t n = y.rows * y.cols;
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n;
         k += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = k / y.cols, c = k % y.cols;
        kn_st(y.data, y.dt, r * y.ld + c, kn_ld(x.data, x.dt, r * x.ld + c));
    }
}

/* table (V,D)[ids] -> y (n,D); an id outside [0,V) gives a zero row */
__global__ void embed_kernel(struct kn_mat y, struct kn_mat tab, const int32_t *ids)
{
    int64_t n = y.rows * y.cols;
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < n;
         k += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = k / y.cols, c = k % y.cols, id = ids[r];
        float v = id >= 0 && id < tab.rows ? kn_ld(tab.data, tab.dt, id * tab.ld + c) : 0.0f;
        kn_st(y.data, y.dt, r * y.ld + c, v);
    }
}

/* ---- launchers ------------------------------------------------------------- */

static int silu_mul_cuda(struct kn_mat y, struct kn_mat g, struct kn_mat u, cudaStream_t s)
{
    silu_mul_kernel<<<kn_grid(y.rows * y.cols, EW_BLOCK), EW_BLOCK, 0, s>>>(y, g, u);
    return CUDA_CHECK(cudaGetLastError());
}

static int add_cuda(struct kn_mat y, struct kn_mat a, struct kn_mat b, int bcast, cudaStream_t s)
{
    add_kernel<<<kn_grid(y.rows * y.cols, EW_BLOCK), EW_BLOCK, 0, s>>>(y, a, b, bcast);
    return CUDA_CHECK(cudaGetLastError());
}

static int convert_cuda(struct kn_mat y, struct kn_mat x, cudaStream_t s)
{
    convert_kernel<<<kn_grid(y.rows * y.cols, EW_BLOCK), EW_BLOCK, 0, s>>>(y, x);
    return CUDA_CHECK(cudaGetLastError());
}

static int embed_cuda(struct kn_mat y, struct kn_mat tab, const int32_t *ids, cudaStream_t s)
{
    embed_kernel<<<kn_grid(y.rows * y.cols, EW_BLOCK), EW_BLOCK, 0, s>>>(y, tab, ids);
    return CUDA_CHECK(cudaGetLastError());
}

/* ---- entry points ---------------------------------------------------------- */

static int same_shape(struct kn_mat a, struct kn_mat b)
{
    return a.rows == b.rows && a.cols == b.cols;
}

int kn_cuda_silu_mul(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *gate,
                     const struct kn_tensor *up)
{
    struct kn_mat ym = kn_mat_of(y), gm = kn_mat_of(gate), um = kn_mat_of(up);
    KN_ASSERT(same_shape(ym, gm) && same_shape(ym, um));
    if (ym.rows * ym.cols == 0)
        return 0;
    if (CUDA_CHECK(cudaSetDevice(be->device)) < 0)
        return -1;
    return silu_mul_cuda(ym, gm, um, kn_cuda_ctx_of(be)->stream);
}

int kn_cuda_add(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *a,
                const struct kn_tensor *b)
{
    struct kn_mat ym = kn_mat_of(y), am = kn_mat_of(a), bm;
    /* same rule as the CPU twin: a single (C,) row b broadcasts */
    int bcast = kn_tensor_nelem(b) == am.cols && am.rows != 1;
    if (bcast) {
        bm = am;
        bm.data = b->data;
        bm.dt = b->dtype;
        KN_ASSERT(b->stride[b->ndim - 1] == 1);
    } else {
        bm = kn_mat_of(b);
        KN_ASSERT(same_shape(bm, am));
    }
    KN_ASSERT(same_shape(ym, am));
    if (ym.rows * ym.cols == 0)
        return 0;
    if (CUDA_CHECK(cudaSetDevice(be->device)) < 0)
        return -1;
    return add_cuda(ym, am, bm, bcast, kn_cuda_ctx_of(be)->stream);
}

int kn_cuda_convert(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x)
{
    struct kn_mat ym = kn_mat_of(y), xm = kn_mat_of(x);
    KN_ASSERT(same_shape(ym, xm));
    if (ym.rows * ym.cols == 0)
        return 0;
    if (CUDA_CHECK(cudaSetDevice(be->device)) < 0)
        return -1;
    return convert_cuda(ym, xm, kn_cuda_ctx_of(be)->stream);
}

int kn_cuda_embed(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *table,
                  const struct kn_tensor *ids)
{
    struct kn_mat ym = kn_mat_of(y), tm = kn_mat_of(table);
    KN_ASSERT(ids->dtype == KN_I32 && ids->shape[0] == ym.rows && tm.cols == ym.cols);
    if (ym.rows * ym.cols == 0)
        return 0;
    if (CUDA_CHECK(cudaSetDevice(be->device)) < 0)
        return -1;
    return embed_cuda(ym, tm, (const int32_t *)ids->data, kn_cuda_ctx_of(be)->stream);
}
