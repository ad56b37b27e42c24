/*
 * encoder.cu -- the encoder worker's ops on the GPU (issue 7): layer_norm
 * (one block per row, f32 mean then f32 variance of the centred row), act
 * (exact-erf gelu, tanh, relu; one thread per element) and seq_attention
 * (bidirectional attention within each sequence of a packed batch, GQA,
 * online softmax over chunks of 32 keys staged in shared memory; f16 q, k, v
 * with D <= 128 take a tensor-core path, 64-query tiles). CPU twins:
 * kernels/cpu/encoder_ops.c. No host data beyond the launch arguments.
 */
#include <mma.h>

#include "kn_cuda.h"

/* ---- layer_norm ------------------------------------------------------------------ */

/* x (R,D), w (D,), b (D,) or none -> y (R,D); block r handles row r. Each
 * thread rereads only the elements it reads before, and writes them last, so
 * y may alias x. */
__global__ void layer_norm_kernel(struct kn_mat y, struct kn_mat x, const void *w, int wdt,
                                  const void *b, int bdt, int has_b, float eps)
{
    int64_t r = blockIdx.x, D = x.cols;
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
        s += kn_ld(x.data, x.dt, r * x.ld + i);
    float mean = kn_block_reduce(s, 0) / (float)D;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        float d = kn_ld(x.data, x.dt, r * x.ld + i) - mean;
        ss += d * d;
    }
    ss = kn_block_reduce(ss, 0);
    float inv = 1.0f / sqrtf(ss / (float)D + eps);
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
        float v = (kn_ld(x.data, x.dt, r * x.ld + i) - mean) * inv * kn_ld(w, wdt, i);
        if (has_b)
            v += kn_ld(b, bdt, i);
        kn_st(y.data, y.dt, r * y.ld + i, v);
    }
}

int kn_cuda_layer_norm(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x,
                       const struct kn_tensor *w, const struct kn_tensor *b, float eps)
{
    struct kn_mat ym = kn_mat_of(y), xm = kn_mat_of(x);
    KN_ASSERT(ym.rows == xm.rows && ym.cols == xm.cols);
    KN_ASSERT(w->ndim == 1 && w->shape[0] == xm.cols && w->stride[0] == 1);
    KN_ASSERT(!b || (b->ndim == 1 && b->shape[0] == xm.cols && b->stride[0] == 1));
    KN_ASSERT(xm.rows <= INT32_MAX);
    if (xm.rows == 0 || xm.cols == 0)
        return 0;
    if (CUDA_CHECK(cudaSetDevice(be->device)) < 0)
        return -1;
    int block = xm.cols >= 2048 ? 1024 : xm.cols >= 512 ? 256 : 64;
    layer_norm_kernel<<<(unsigned)xm.rows, block, 0, kn_cuda_ctx_of(be)->stream>>>(
        ym, xm, w->data, (int)w->dtype, b ? b->data : NULL, b ? (int)b->dtype : 0, b != NULL, eps);
    return CUDA_CHECK(cudaGetLastError());
}

/* ---- act ------------------------------------------------------------------------------ */

#define ACT_BLOCK 256

__global__ void act_kernel(struct kn_mat y, struct kn_mat x, int act)
{
    int64_t n = x.rows * x.cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / x.cols, c = i % x.cols;
        float v = kn_ld(x.data, x.dt, r * x.ld + c);
        if (act == KN_ACT_GELU_ERF)
            v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
        else if (act == KN_ACT_TANH)
            v = tanhf(v);
        else
            v = v > 0.0f ? v : 0.0f;
        kn_st(y.data, y.dt, r * y.ld + c, v);
    }
}

int kn_cuda_act(struct kn_backend *be, struct kn_tensor *y, const struct kn_tensor *x, int act)
{
    struct kn_mat ym = kn_mat_of(y), xm = kn_mat_of(x);
    KN_ASSERT(ym.rows == xm.rows && ym.cols == xm.cols && act >= 0 && act < KN_ACT_COUNT);
    int64_t n = xm.rows * xm.cols;
    if (n == 0)
        return 0;
    if (CUDA_CHECK(cudaSetDevice(be->device)) < 0)
        return -1;
    act_kernel<<<kn_grid(n, ACT_BLOCK), ACT_BLOCK, 0, kn_cuda_ctx_of(be)->stream>>>(ym, xm, act);
    return CUDA_CHECK(cudaGetLastError());
}

/* ---- seq_attention ------------------------------------------------------------------- */

#define SA_CHUNK 32                             /* keys per shared stage */
#define SA_MAX_WARPS 16
#define SA_NREG (KN_CUDA_ATTN_MAX_D / 32)       /* accumulator registers per lane */

struct sa_heads {                /* a (T, heads, D) tensor with a contiguous last dim */
    const void *data;
    int dt;
    int64_t s0, s1;
};

static struct sa_heads sa_heads_of(const struct kn_tensor *t)
{
    struct sa_heads h = { t->data, (int)t->dtype, t->stride[0], t->stride[1] };
    return h;
}

struct sa_args {
    struct sa_heads q, k, v;
    void *out;
    int odt;
    int64_t os0, os1;
    const int32_t *start;
    int n_seqs, T, H, G, D, GW, NT;
    float scale;
};

__device__ __forceinline__ float sa_warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float sa_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* The sequence holding token t: the last s with start[s] <= t (empty
 * sequences before it share its start). */
__device__ __forceinline__ int sa_seq_of(const int32_t *st, int n, int t)
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

/* [start[s], start[s+1]) clamped into [0, T], so that a bad seq_start (which
 * only the cpu checks) cannot make the kernel read outside k and v. */
__device__ __forceinline__ void sa_range(const struct sa_args &a, int s, int *u0, int *u1)
{
    int lo = a.start[s], hi = a.start[s + 1];
    lo = lo < 0 ? 0 : lo > a.T ? a.T : lo;
    hi = hi < lo ? lo : hi > a.T ? a.T : hi;
    *u0 = lo;
    *u1 = hi;
}

/*
 * Block (tile of NT consecutive tokens, kv head g, a group of GW of its
 * query heads). Warp w handles token tile*NT + w/GW and query head
 * g*G + group*GW + w%GW. The block walks the sequences its tile touches one
 * after the other; the warps whose token is in the current sequence consume
 * each staged chunk of its keys. Lane j scores key j of a chunk; the running
 * max m, sum l and the D accumulators (lane + 32 i) are per warp.
 */
__global__ void seq_attn_kernel(struct sa_args a)
{
    extern __shared__ float sm[];
    const int ldk = a.D + 1;                    /* padded: lane j reads row j conflict-free */
    float *Ks = sm, *Vs = Ks + SA_CHUNK * ldk, *Qs = Vs + SA_CHUNK * ldk;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nhg = (a.G + a.GW - 1) / a.GW;
    int g = blockIdx.y / nhg, hin = (blockIdx.y % nhg) * a.GW + w % a.GW;
    int t0 = blockIdx.x * a.NT, t = t0 + w / a.GW, h = g * a.G + hin;
    int active = t < a.T && hin < a.G;
    int tl = t0 + a.NT - 1 < a.T - 1 ? t0 + a.NT - 1 : a.T - 1;
    int ms = active ? sa_seq_of(a.start, a.n_seqs, t) : -1;
    float *qw = Qs + w * a.D;
    if (active)
        for (int d = lane; d < a.D; d += 32)
            qw[d] = kn_ld(a.q.data, a.q.dt, t * a.q.s0 + h * a.q.s1 + d);
    __syncwarp();
    float m = -INFINITY, l = 0.0f, acc[SA_NREG];
#pragma unroll
    for (int i = 0; i < SA_NREG; i++)
        acc[i] = 0.0f;

    int s_last = sa_seq_of(a.start, a.n_seqs, tl);
    for (int s = sa_seq_of(a.start, a.n_seqs, t0); s <= s_last; s++) {
        int u0, u1;
        sa_range(a, s, &u0, &u1);               /* the same in every thread */
        int mine = active && ms == s;
        for (int c0 = u0; c0 < u1; c0 += SA_CHUNK) {
            __syncthreads();                    /* the previous chunk is consumed */
            for (int i = threadIdx.x; i < SA_CHUNK * a.D; i += blockDim.x) {
                int j = i / a.D, d = i % a.D, u = c0 + j;
                float kv = 0.0f, vv = 0.0f;
                if (u < u1) {
                    kv = kn_ld(a.k.data, a.k.dt, u * a.k.s0 + g * a.k.s1 + d);
                    vv = kn_ld(a.v.data, a.v.dt, u * a.v.s0 + g * a.v.s1 + d);
                }
                Ks[j * ldk + d] = kv;
                Vs[j * ldk + d] = vv;
            }
            __syncthreads();
            if (!mine)
                continue;
            int in = c0 + lane < u1;
            float sc = -INFINITY;
            if (in) {
                float dot = 0.0f;
                for (int d = 0; d < a.D; d++)
                    dot += qw[d] * Ks[lane * ldk + d];
                sc = dot * a.scale;
            }
            float mn = fmaxf(m, sa_warp_max(sc));   /* finite: lane 0 is always in */
            float alpha = expf(m - mn), e = in ? expf(sc - mn) : 0.0f;
            l = l * alpha + sa_warp_sum(e);
            m = mn;
#pragma unroll
            for (int i = 0; i < SA_NREG; i++)
                acc[i] *= alpha;
            int nj = u1 - c0 < SA_CHUNK ? u1 - c0 : SA_CHUNK;
            for (int j = 0; j < nj; j++) {
                float ej = __shfl_sync(0xffffffffu, e, j);
#pragma unroll
                for (int i = 0; i < SA_NREG; i++) {
                    int d = lane + 32 * i;
                    if (d < a.D)
                        acc[i] += ej * Vs[j * ldk + d];
                }
            }
        }
    }
    if (!active)
        return;
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
    for (int i = 0; i < SA_NREG; i++) {
        int d = lane + 32 * i;
        if (d < a.D)
            kn_st(a.out, a.odt, t * a.os0 + h * a.os1 + d, acc[i] * inv);
    }
}

/* ---- seq_attention on tensor cores (f16 q, k, v; D <= 128) ----------------------
 * Block (64-token query tile, query head): 4 warps of 16 query rows. Per
 * 64-key tile of each sequence the tile touches: K, V staged in shared memory
 * (f16, D zero-padded to DP), S = Q K^T on wmma (f16 in, f32 out), the
 * online softmax in f32 (two lanes per row, exp2 of scaled scores), P split
 * into f16 hi + lo so that P V (two wmma passes, f32 accumulate) keeps f32
 * accuracy, O rescaled in registers. Rows of another sequence than the one
 * staged get p = 0 and keep their running max and sum. The f16 products are
 * exact; only the summation order differs from the f32 kernel. */
#define TC_BQ 64
#define TC_BK 64

template <int DP>
static size_t tc_smem(void)
{
    const int LH = DP + 8, LP = TC_BK + 8, SW = (DP > TC_BK ? DP : TC_BK) + 4;
    return (size_t)(3 * 64 * LH + 2 * TC_BQ * LP) * sizeof(__half) +
           (size_t)(4 * 16 * SW) * sizeof(float);
}

template <int DP>
__global__ void __launch_bounds__(128) seq_attn_tc_kernel(struct sa_args a)
{
    using namespace nvcuda;
    extern __shared__ __align__(128) unsigned char tc_sm[];
    const int LH = DP + 8, LP = TC_BK + 8, SW = (DP > TC_BK ? DP : TC_BK) + 4;
    __half *Qs = (__half *)tc_sm, *Ks = Qs + TC_BQ * LH, *Vs = Ks + TC_BK * LH;
    __half *Ph = Vs + TC_BK * LH, *Pl = Ph + TC_BQ * LP;
    float *Ss = (float *)(Pl + TC_BQ * LP);
    const unsigned full = 0xffffffffu;
    int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
    int h = blockIdx.y, g = h / a.G, t0 = blockIdx.x * TC_BQ;
    const __half *qd = (const __half *)a.q.data, *kd = (const __half *)a.k.data;
    const __half *vd = (const __half *)a.v.data;
    for (int i = tid; i < TC_BQ * DP; i += blockDim.x) {
        int r = i / DP, d = i % DP, t = t0 + r;
        Qs[r * LH + d] = t < a.T && d < a.D ? qd[(int64_t)t * a.q.s0 + (int64_t)h * a.q.s1 + d]
                                            : __float2half(0.0f);
    }
    int r = lane >> 1, hf = lane & 1, trow = t0 + w * 16 + r;
    int rs = trow < a.T ? sa_seq_of(a.start, a.n_seqs, trow) : -1;
    float m = -INFINITY, l = 0.0f, o[DP / 2];
#pragma unroll
    for (int i = 0; i < DP / 2; i++)
        o[i] = 0.0f;
    float *Sw = Ss + w * 16 * SW;
    __half *Phw = Ph + w * 16 * LP, *Plw = Pl + w * 16 * LP;
    const float sl2 = a.scale * 1.4426950408889634f;
    int tl = t0 + TC_BQ - 1 < a.T - 1 ? t0 + TC_BQ - 1 : a.T - 1;
    int s_last = sa_seq_of(a.start, a.n_seqs, tl);
    for (int s = sa_seq_of(a.start, a.n_seqs, t0); s <= s_last; s++) {
        int u0, u1;
        sa_range(a, s, &u0, &u1);               /* the same in every thread */
        int mine = rs == s;
        for (int c0 = u0; c0 < u1; c0 += TC_BK) {
            __syncthreads();                    /* the previous tile is consumed */
            for (int i = tid; i < TC_BK * DP; i += blockDim.x) {
                int j = i / DP, d = i % DP, u = c0 + j;
                __half kv = __float2half(0.0f), vv = kv;
                if (u < u1 && d < a.D) {
                    kv = kd[(int64_t)u * a.k.s0 + (int64_t)g * a.k.s1 + d];
                    vv = vd[(int64_t)u * a.v.s0 + (int64_t)g * a.v.s1 + d];
                }
                Ks[j * LH + d] = kv;
                Vs[j * LH + d] = vv;
            }
            __syncthreads();
            if (!__any_sync(full, mine))
                continue;
#pragma unroll
            for (int n = 0; n < TC_BK / 16; n++) {
                wmma::fragment<wmma::accumulator, 16, 16, 16, float> sf;
                wmma::fill_fragment(sf, 0.0f);
#pragma unroll
                for (int kk = 0; kk < DP / 16; kk++) {
                    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> qf;
                    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> kf;
                    wmma::load_matrix_sync(qf, Qs + w * 16 * LH + kk * 16, LH);
                    wmma::load_matrix_sync(kf, Ks + n * 16 * LH + kk * 16, LH);
                    wmma::mma_sync(sf, qf, kf, sf);
                }
                wmma::store_matrix_sync(Sw + n * 16, sf, SW, wmma::mem_row_major);
            }
            __syncwarp();
            int nv = u1 - c0 < TC_BK ? u1 - c0 : TC_BK;
            const float *srow = Sw + r * SW + hf * 32;
            float mx = -INFINITY;
            for (int j = 0; j < 32; j++)
                if (hf * 32 + j < nv)
                    mx = fmaxf(mx, srow[j] * sl2);
            mx = fmaxf(mx, __shfl_xor_sync(full, mx, 1));  /* finite: key c0 is in */
            float mn = mine ? fmaxf(m, mx) : m;
            float alpha = mine ? exp2f(m - mn) : 1.0f;
            float ps = 0.0f;
            for (int j = 0; j < 32; j++) {
                float p = mine && hf * 32 + j < nv ? exp2f(srow[j] * sl2 - mn) : 0.0f;
                __half hi = __float2half_rn(p);
                ps += p;
                Phw[r * LP + hf * 32 + j] = hi;
                Plw[r * LP + hf * 32 + j] = __float2half_rn(p - __half2float(hi));
            }
            ps += __shfl_xor_sync(full, ps, 1);
            l = l * alpha + ps;
            m = mn;
            __syncwarp();                       /* S read, P written */
#pragma unroll
            for (int n = 0; n < DP / 16; n++) {
                wmma::fragment<wmma::accumulator, 16, 16, 16, float> of;
                wmma::fill_fragment(of, 0.0f);
#pragma unroll
                for (int kk = 0; kk < TC_BK / 16; kk++) {
                    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> pf;
                    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> vf;
                    wmma::load_matrix_sync(vf, Vs + kk * 16 * LH + n * 16, LH);
                    wmma::load_matrix_sync(pf, Phw + kk * 16, LP);
                    wmma::mma_sync(of, pf, vf, of);
                    wmma::load_matrix_sync(pf, Plw + kk * 16, LP);
                    wmma::mma_sync(of, pf, vf, of);
                }
                wmma::store_matrix_sync(Sw + n * 16, of, SW, wmma::mem_row_major);
            }
            __syncwarp();
            const float *prow = Sw + r * SW + hf * (DP / 2);
#pragma unroll
            for (int i = 0; i < DP / 2; i++)
                o[i] = o[i] * alpha + prow[i];
            __syncwarp();                       /* PV read before the next S */
        }
    }
    if (trow >= a.T)
        return;
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
    for (int i = 0; i < DP / 2; i++) {
        int d = hf * (DP / 2) + i;
        if (d < a.D)
            kn_st(a.out, a.odt, (int64_t)trow * a.os0 + (int64_t)h * a.os1 + d, o[i] * inv);
    }
}

template <int DP>
static int seq_attn_tc_launch(struct kn_backend *be, const struct sa_args &a, int H)
{
    size_t smem = tc_smem<DP>();
    if (CUDA_CHECK(cudaFuncSetAttribute(seq_attn_tc_kernel<DP>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)smem)) < 0)
        return -1;
    dim3 grid((unsigned)((a.T + TC_BQ - 1) / TC_BQ), (unsigned)H);
    seq_attn_tc_kernel<DP><<<grid, 128, smem, kn_cuda_ctx_of(be)->stream>>>(a);
    return CUDA_CHECK(cudaGetLastError());
}

int kn_cuda_seq_attention(struct kn_backend *be, struct kn_tensor *out, const struct kn_tensor *q,
                          const struct kn_tensor *k, const struct kn_tensor *v,
                          const struct kn_tensor *seq_start, float scale)
{
    KN_ASSERT(q->ndim == 3 && k->ndim == 3 && v->ndim == 3 && out->ndim == 3);
    KN_ASSERT(q->shape[2] <= KN_CUDA_ATTN_MAX_D && q->shape[1] % k->shape[1] == 0);
    KN_ASSERT(q->shape[0] <= INT32_MAX / 2 && seq_start->shape[0] >= 2 &&
              seq_start->shape[0] <= INT32_MAX && seq_start->dtype == KN_I32);
    struct sa_args a;
    memset(&a, 0, sizeof(a));
    a.q = sa_heads_of(q);
    a.k = sa_heads_of(k);
    a.v = sa_heads_of(v);
    a.out = out->data;
    a.odt = (int)out->dtype;
    a.os0 = out->stride[0];
    a.os1 = out->stride[1];
    a.start = (const int32_t *)seq_start->data;
    a.n_seqs = (int)(seq_start->shape[0] - 1);
    a.T = (int)q->shape[0];
    a.H = (int)q->shape[1];
    a.G = (int)(q->shape[1] / k->shape[1]);
    a.D = (int)q->shape[2];
    a.scale = scale;
    if (a.T == 0 || a.D == 0 || a.H == 0)
        return 0;
    int Hkv = (int)k->shape[1];
    if (q->dtype == KN_F16 && k->dtype == KN_F16 && v->dtype == KN_F16 && a.D <= 128 &&
        a.H <= 65535) {
        if (CUDA_CHECK(cudaSetDevice(be->device)) < 0)
            return -1;
        return a.D <= 16 ? seq_attn_tc_launch<16>(be, a, a.H)
             : a.D <= 32 ? seq_attn_tc_launch<32>(be, a, a.H)
             : a.D <= 64 ? seq_attn_tc_launch<64>(be, a, a.H)
                         : seq_attn_tc_launch<128>(be, a, a.H);
    }
    a.GW = a.G < SA_MAX_WARPS ? a.G : SA_MAX_WARPS;
    a.NT = SA_MAX_WARPS / a.GW;
    a.NT = a.NT < a.T ? a.NT : a.T;
    int nhg = (a.G + a.GW - 1) / a.GW, warps = a.NT * a.GW;
    int64_t tiles = (a.T + a.NT - 1) / a.NT;
    KN_ASSERT(tiles <= INT32_MAX && (int64_t)Hkv * nhg <= 65535);
    size_t smem = (size_t)(2 * SA_CHUNK * (a.D + 1) + warps * a.D) * sizeof(float);
    if (CUDA_CHECK(cudaSetDevice(be->device)) < 0)
        return -1;
    if (smem > 48 * 1024 &&
        CUDA_CHECK(cudaFuncSetAttribute(seq_attn_kernel,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)smem)) < 0)
        return -1;
    dim3 grid((unsigned)tiles, (unsigned)(Hkv * nhg));
    seq_attn_kernel<<<grid, 32 * warps, smem, kn_cuda_ctx_of(be)->stream>>>(a);
    return CUDA_CHECK(cudaGetLastError());
}
