/*
 * backend.cu -- the cuda backend's vtable: device discovery, one stream and
 * one cuBLAS handle per backend instance, device memory, copies and
 * supports_op. Ops are queued on the stream; upload, download and sync wait
 * for it. The kernels live in the op family files.
 */
#include "kn_cuda.h"

int kn_cuda_check(cudaError_t err, const char *expr, const char *file, int line)
{
    if (err == cudaSuccess)
        return 0;
    log_error("%s:%d: %s: %s", file, line, expr, cudaGetErrorString(err));
    return -1;
}

int kn_cublas_check(cublasStatus_t st, const char *expr, const char *file, int line)
{
    if (st == CUBLAS_STATUS_SUCCESS)
        return 0;
    log_error("%s:%d: %s: %s", file, line, expr, cublasGetStatusString(st));
    return -1;
}

/* Visible devices; 0 without a driver or device (not an error: cpu fallback). */
static int cuda_device_count(void)
{
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        log_debug("cudaGetDeviceCount: %s", cudaGetErrorString(err));
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

static void cuda_free(struct kn_backend *be)
{
    struct kn_cuda_ctx *c = kn_cuda_ctx_of(be);
    if (c == NULL)
        return;
    cudaSetDevice(be->device);
    if (c->cublas)
        cublasDestroy(c->cublas);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    if (c->work)
        cudaFree(c->work);
    free(c);
    be->ctx = NULL;
}

static int cuda_init(struct kn_backend *be)
{
    struct kn_cuda_ctx *c = (struct kn_cuda_ctx *)calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    be->ctx = c;
    if (CUDA_CHECK(cudaSetDevice(be->device)) < 0 ||
        CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) < 0 ||
        CUBLAS_CHECK(cublasCreate(&c->cublas)) < 0 ||
        CUBLAS_CHECK(cublasSetStream(c->cublas, c->stream)) < 0 ||
        CUDA_CHECK(cudaDeviceGetAttribute(&c->n_sm, cudaDevAttrMultiProcessorCount,
                                          be->device)) < 0)
        goto err;
    return 0;
err:
    cuda_free(be);
    return -1;
}

void *kn_cuda_work(struct kn_backend *be, size_t nbytes)
{
    struct kn_cuda_ctx *c = kn_cuda_ctx_of(be);
    if (nbytes <= c->work_bytes)
        return c->work;
    size_t want = nbytes + nbytes / 2;
    /* queued ops may still read the old buffer */
    if (CUDA_CHECK(cudaStreamSynchronize(c->stream)) < 0)
        return NULL;
    if (c->work)
        CUDA_CHECK(cudaFree(c->work));
    c->work = NULL;
    c->work_bytes = 0;
    if (CUDA_CHECK(cudaMalloc(&c->work, want)) < 0)
        return NULL;
    c->work_bytes = want;
    return c->work;
}

static void *cuda_alloc(struct kn_backend *be, size_t nbytes)
{
    void *p = NULL;
    if (CUDA_CHECK(cudaSetDevice(be->device)) < 0 || CUDA_CHECK(cudaMalloc(&p, nbytes)) < 0)
        return NULL;
    return p;
}

static void cuda_free_buf(struct kn_backend *be, void *p)
{
    cudaSetDevice(be->device);
    CUDA_CHECK(cudaFree(p));
}

static int cuda_copy(struct kn_backend *be, void *dst, const void *src, size_t nbytes,
                     cudaMemcpyKind kind)
{
    cudaStream_t s = kn_cuda_ctx_of(be)->stream;
    if (CUDA_CHECK(cudaSetDevice(be->device)) < 0 ||
        CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, kind, s)) < 0)
        return -1;
    return CUDA_CHECK(cudaStreamSynchronize(s));
}

static int cuda_upload(struct kn_backend *be, void *dst, const void *src, size_t nbytes)
{
    return cuda_copy(be, dst, src, nbytes, cudaMemcpyHostToDevice);
}

static int cuda_download(struct kn_backend *be, void *dst, const void *src, size_t nbytes)
{
    return cuda_copy(be, dst, src, nbytes, cudaMemcpyDeviceToHost);
}

static int cuda_sync(struct kn_backend *be)
{
    return CUDA_CHECK(cudaStreamSynchronize(kn_cuda_ctx_of(be)->stream));
}

/* Elementwise, row and index ops take any float dtypes; matmul goes through
 * cublasGemmEx, which wants A and B of one type and C of that type or f32,
 * or W bf16 with x and y f32 (gemv.cu: weights kept bf16, f32 activations);
 * attention (paged and packed) keeps a head in registers (D <=
 * KN_CUDA_ATTN_MAX_D), routing a row of experts in shared memory. */
static int cuda_supports_op(struct kn_backend *be, enum kn_op op, const struct kn_tensor *dst,
                            const struct kn_tensor *const src[KN_MAX_SRC])
{
    if (op == KN_OP_MATMUL)
        return (src[0]->dtype == src[1]->dtype &&
                (dst->dtype == src[0]->dtype || dst->dtype == KN_F32)) ||
               (src[1]->dtype == KN_BF16 && src[0]->dtype == KN_F32 && dst->dtype == KN_F32);
    if (op == KN_OP_PAGED_ATTENTION || op == KN_OP_SEQ_ATTENTION)
        return src[0]->shape[2] <= KN_CUDA_ATTN_MAX_D;
    if (op == KN_OP_MOE_ROUTE)
        return src[0]->shape[src[0]->ndim - 1] <= KN_CUDA_ROUTE_MAX_E;
    return (unsigned)op <= KN_OP_ROW_ARGMAX;    /* ops appended later: not here yet */
}

extern "C" const struct kn_backend_ops kn_cuda_ops = {
    /* .name         = */ "cuda",
    /* .device_count = */ cuda_device_count,
    /* .init         = */ cuda_init,
    /* .free         = */ cuda_free,
    /* .alloc        = */ cuda_alloc,
    /* .free_buf     = */ cuda_free_buf,
    /* .upload       = */ cuda_upload,
    /* .download     = */ cuda_download,
    /* .sync         = */ cuda_sync,
    /* .supports_op  = */ cuda_supports_op,
    /* .matmul       = */ kn_cuda_matmul,
    /* .rms_norm     = */ kn_cuda_rms_norm,
    /* .rope         = */ kn_cuda_rope,
    /* .silu_mul     = */ kn_cuda_silu_mul,
    /* .softmax      = */ kn_cuda_softmax,
    /* .embed        = */ kn_cuda_embed,
    /* .add          = */ kn_cuda_add,
    /* .convert      = */ kn_cuda_convert,
    /* .set_threads  = */ NULL,
    /* .kv_store     = */ kn_cuda_kv_store,
    /* .paged_attention = */ kn_cuda_paged_attention,
    /* .gather_rows  = */ kn_cuda_gather_rows,
    /* .scatter_add_rows = */ kn_cuda_scatter_add_rows,
    /* .moe_route    = */ kn_cuda_moe_route,
    /* .layer_norm   = */ kn_cuda_layer_norm,
    /* .act          = */ kn_cuda_act,
    /* .seq_attention = */ kn_cuda_seq_attention,
    /* .seq_dwconv   = */ kn_cuda_seq_dwconv,
    /* .row_argmax   = */ kn_cuda_row_argmax,
};
