/*
 * matmul.cu -- y (M,N) = x (M,K) @ W (N,K)^T through cublasGemmEx with f32
 * accumulation (no TF32: CUBLAS_COMPUTE_32F). cuBLAS is column-major, and a
 * row-major (R,C) matrix with row stride ld is its column-major transpose
 * (C,R) with leading dimension ld. So y (M,N) is y^T (N,M) = W (N,K) x^T (K,M)
 * where W reaches cuBLAS as (K,N): gemm(op T, op N, m=N, n=M, k=K).
 * W bf16 with x and y f32 (weights kept as stored, activations f32) goes
 * to gemv.cu: the memory-bound GEMV for M <= KN_CUDA_GEMV_MAX_M, else two
 * bf16 tensor-core GEMMs over x split into a bf16 high and low part.
 * CPU twin: matmul_ref() in kernels/cpu/kn_cpu.c.
 */
#include <limits.h>

#include "kn_cuda.h"

static cudaDataType_t cuda_type(int dt)
{
    return dt == KN_BF16 ? CUDA_R_16BF : dt == KN_F16 ? CUDA_R_16F : CUDA_R_32F;
}

/* launcher: y = x W^T on the handle's stream */
static int matmul_cuda(cublasHandle_t h, struct kn_mat y, struct kn_mat x, struct kn_mat w)
{
    const float alpha = 1.0f, beta = 0.0f;
    return CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N,
                                     (int)w.rows, (int)x.rows, (int)x.cols, &alpha,
                                     w.data, cuda_type(w.dt), (int)w.ld,
                                     x.data, cuda_type(x.dt), (int)x.ld, &beta,
                                     y.data, cuda_type(y.dt), (int)y.ld,
                                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

int kn_cuda_matmul(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                   const struct kn_tensor *w)
{
    struct kn_mat ym = kn_mat_of(y), xm = kn_mat_of(x), wm = kn_mat_of(w);
    KN_ASSERT(xm.cols == wm.cols && ym.rows == xm.rows && ym.cols == wm.rows);
    int mixed = wm.dt == KN_BF16 && xm.dt == KN_F32 && ym.dt == KN_F32;
    KN_ASSERT(mixed || (xm.dt == wm.dt && (ym.dt == xm.dt || ym.dt == KN_F32)));
    KN_ASSERT(xm.rows <= INT_MAX && wm.rows <= INT_MAX && xm.cols <= INT_MAX &&
              xm.ld <= INT_MAX && wm.ld <= INT_MAX && ym.ld <= INT_MAX);
    if (ym.rows == 0 || ym.cols == 0)
        return 0;
    /* BLAS wants ld >= the leading extent even for a single row */
    xm.ld = xm.ld < xm.cols ? xm.cols : xm.ld;
    wm.ld = wm.ld < wm.cols ? wm.cols : wm.ld;
    ym.ld = ym.ld < ym.cols ? ym.cols : ym.ld;
    if (CUDA_CHECK(cudaSetDevice(be->device)) < 0)
        return -1;
    if (xm.cols == 0)   /* empty sum: cuBLAS may leave C untouched */
        return CUDA_CHECK(cudaMemset2DAsync(ym.data, (size_t)ym.ld * kn_dtype_size((enum kn_dtype)ym.dt),
                                            0, (size_t)ym.cols * kn_dtype_size((enum kn_dtype)ym.dt),
                                            (size_t)ym.rows, kn_cuda_ctx_of(be)->stream));
    if (mixed)
        return xm.rows <= KN_CUDA_GEMV_MAX_M ? kn_cuda_gemv_bf16(be, ym, xm, wm)
                                             : kn_cuda_matmul_bf16w_tiled(be, ym, xm, wm);
    return matmul_cuda(kn_cuda_ctx_of(be)->cublas, ym, xm, wm);
}
