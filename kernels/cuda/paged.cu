/*
 * paged.cu -- the paged KV cache on the GPU: kv_store (one thread per stored
 * element) and paged_attention (causal, GQA, sliding window, online softmax
 * over chunks of 32 cache positions staged in shared memory, split over KV
 * ranges with a combine pass when the grid would not fill the device). The
 * CPU twins are in kernels/cpu/paged.c; bad indices give the same zero rows.
 */
#include "kn_cuda.h"

/* ---- kv_store ------------------------------------------------------------------ */

struct heads3 {                 /* a (A, B, C) tensor with a contiguous last dim */
    void *data;
    int dt;
    int64_t s0, s1;
};

static struct heads3 heads_of(const struct kn_tensor *t)
{
    struct heads3 h = { t->data, (int)t->dtype, t->stride[0], t->stride[1] };
    return h;
}

/* k, v (T, H, D) -> caches at rows slots[t]; rows outside [0, n_slots) skipped */
__global__ void kv_store_kernel(struct heads3 kc, struct heads3 vc, struct heads3 k,
                                struct heads3 v, const int32_t *slots, int64_t n_slots,
                                int64_t H, int64_t D, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t d = i % D, th = i / D, h = th % H, t = th / H, slot = slots[t];
        if (slot < 0 || slot >= n_slots)
            continue;
        kn_st(kc.data, kc.dt, slot * kc.s0 + h * kc.s1 + d, kn_ld(k.data, k.dt, t * k.s0 + h * k.s1 + d));
        kn_st(vc.data, vc.dt, slot * vc.s0 + h * vc.s1 + d, kn_ld(v.data, v.dt, t * v.s0 + h * v.s1 + d));
    }
}

int kn_cuda_kv_store(struct kn_backend *be, struct kn_tensor *k_cache, struct kn_tensor *v_cache,
                     const struct kn_tensor *k, const struct kn_tensor *v,
                     const struct kn_tensor *slots)
{
    KN_ASSERT(k->ndim == 3 && k_cache->ndim == 3 && slots->dtype == KN_I32 &&
              slots->shape[0] == k->shape[0]);
    int64_t n = k->shape[0] * k->shape[1] * k->shape[2];
    if (n == 0)
        return 0;
    if (CUDA_CHECK(cudaSetDevice(be->device)) < 0)
        return -1;
    kv_store_kernel<<<kn_grid(n, 256), 256, 0, kn_cuda_ctx_of(be)->stream>>>(
        heads_of(k_cache), heads_of(v_cache), heads_of(k), heads_of(v),
        (const int32_t *)slots->data, k_cache->shape[0], k->shape[1], k->shape[2], n);
    return CUDA_CHECK(cudaGetLastError());
}

/* ---- paged_attention --------------------------------------------------------------- */

#define ATT_CHUNK 32                            /* cache positions per shared stage */
#define ATT_MAX_WARPS 16
#define ATT_NREG (KN_CUDA_ATTN_MAX_D / 32)      /* accumulator registers per lane */

struct attn_args {
    struct heads3 out, q, kc, vc;
    const int32_t *bt, *seq, *pos;
    int64_t n_seqs, max_blocks, bs, n_slots;
    int T, H, G, D, GW, NT, window;
    float scale;
    int64_t split_len;          /* positions per split (absolute ranges) */
    float *part;                /* NULL, or (n_splits, T, H, D + 2): m, l, acc */
};

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Position range of token t: lo..p1, or -1 when its sequence or position is bad. */
__device__ __forceinline__ int64_t token_lo(const struct attn_args &a, int t, int64_t *p1)
{
    int64_t s = a.seq[t];
    *p1 = a.pos[t];
    if (s < 0 || s >= a.n_seqs || *p1 < 0)
        return -1;
    return a.window > 0 && *p1 - a.window + 1 > 0 ? *p1 - a.window + 1 : 0;
}

/*
 * Block (tile of NT consecutive tokens, kv head g and a group of GW of its
 * query heads, split z). Warp w handles token tile*NT + w/GW, query head
 * g*G + group*GW + w%GW. Tokens of one sequence in the tile share each staged
 * chunk of K/V; a tile spanning several sequences runs them one after the
 * other. Split z covers absolute positions [z*split_len, (z+1)*split_len).
 */
__global__ void attn_kernel(struct attn_args a)
{
    extern __shared__ float sm[];
    __shared__ int64_t rows[ATT_CHUNK];
    const int ldk = a.D + 1;                    /* padded: lane j reads row j conflict-free */
    float *Ks = sm, *Vs = Ks + ATT_CHUNK * ldk, *Qs = Vs + ATT_CHUNK * ldk;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nhg = (a.G + a.GW - 1) / a.GW;
    int g = blockIdx.y / nhg, hin = (blockIdx.y % nhg) * a.GW + w % a.GW, tt = w / a.GW;
    int t = blockIdx.x * a.NT + tt, h = g * a.G + hin;
    int active = t < a.T && hin < a.G, bad = 0;
    int64_t slo = (int64_t)blockIdx.z * a.split_len, shi = slo + a.split_len - 1;
    int64_t mlo = 1, mhi = 0, p1;
    float *qw = Qs + w * a.D;
    if (active) {
        int64_t lo = token_lo(a, t, &p1);
        bad = lo < 0;
        if (!bad) {
            mlo = lo > slo ? lo : slo;
            mhi = p1 < shi ? p1 : shi;
        }
        for (int d = lane; d < a.D; d += 32)
            qw[d] = kn_ld(a.q.data, a.q.dt, t * a.q.s0 + h * a.q.s1 + d);
    }
    __syncwarp();
    float m = -INFINITY, l = 0.0f, acc[ATT_NREG];
#pragma unroll
    for (int i = 0; i < ATT_NREG; i++)
        acc[i] = 0.0f;

    for (int r0 = 0; r0 < a.NT && blockIdx.x * a.NT + r0 < a.T;) {
        int t0 = blockIdx.x * a.NT + r0, r1 = r0 + 1;
        int64_t rs = a.seq[t0], ulo = INT64_MAX, uhi = -1;
        while (r1 < a.NT && t0 + (r1 - r0) < a.T && a.seq[t0 + (r1 - r0)] == rs)
            r1++;
        for (int r = r0; r < r1; r++) {         /* union of the run's ranges in this split */
            int64_t q1, qlo = token_lo(a, blockIdx.x * a.NT + r, &q1);
            if (qlo < 0)
                continue;
            qlo = qlo > slo ? qlo : slo;
            q1 = q1 < shi ? q1 : shi;
            ulo = qlo < ulo ? qlo : ulo;
            uhi = q1 > uhi ? q1 : uhi;
        }
        int mine = active && !bad && tt >= r0 && tt < r1;
        for (int64_t c0 = ulo; c0 <= uhi; c0 += ATT_CHUNK) {
            __syncthreads();                    /* the previous chunk is consumed */
            if (threadIdx.x < ATT_CHUNK) {
                int64_t p = c0 + threadIdx.x, row = -1;
                if (p <= uhi && p / a.bs < a.max_blocks) {
                    int64_t blk = a.bt[rs * a.max_blocks + p / a.bs];
                    row = blk * a.bs + p % a.bs;
                    row = blk < 0 || row >= a.n_slots ? -1 : row;
                }
                rows[threadIdx.x] = row;
            }
            __syncthreads();
            for (int i = threadIdx.x; i < ATT_CHUNK * a.D; i += blockDim.x) {
                int j = i / a.D, d = i % a.D;
                int64_t row = rows[j];
                float kv = 0.0f, vv = 0.0f;
                if (row >= 0) {
                    kv = kn_ld(a.kc.data, a.kc.dt, row * a.kc.s0 + g * a.kc.s1 + d);
                    vv = kn_ld(a.vc.data, a.vc.dt, row * a.vc.s0 + g * a.vc.s1 + d);
                }
                Ks[j * ldk + d] = kv;
                Vs[j * ldk + d] = vv;
            }
            __syncthreads();
            if (!mine)
                continue;
            int64_t p = c0 + lane;
            int in = p >= mlo && p <= mhi;
            if (__any_sync(0xffffffffu, in && rows[lane] < 0))
                bad = 1;
            if (bad)
                continue;
            float sc = -INFINITY;
            if (in) {
                float dot = 0.0f;
                for (int d = 0; d < a.D; d++)
                    dot += qw[d] * Ks[lane * ldk + d];
                sc = dot * a.scale;
            }
            float mn = fmaxf(m, warp_max(sc));
            if (mn == -INFINITY)
                continue;                       /* nothing of this warp's yet */
            float alpha = expf(m - mn), e = in ? expf(sc - mn) : 0.0f;
            l = l * alpha + warp_sum(e);
            m = mn;
#pragma unroll
            for (int i = 0; i < ATT_NREG; i++)
                acc[i] *= alpha;
            for (int j = 0; j < ATT_CHUNK; j++) {
                float ej = __shfl_sync(0xffffffffu, e, j);
#pragma unroll
                for (int i = 0; i < ATT_NREG; i++) {
                    int d = lane + 32 * i;
                    if (d < a.D)
                        acc[i] += ej * Vs[j * ldk + d];
                }
            }
        }
        r0 = r1;
    }
    if (!active)
        return;
    if (a.part == NULL) {
        float inv = !bad && l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
        for (int i = 0; i < ATT_NREG; i++) {
            int d = lane + 32 * i;
            if (d < a.D)
                kn_st(a.out.data, a.out.dt, t * a.out.s0 + h * a.out.s1 + d, bad ? 0.0f : acc[i] * inv);
        }
        return;
    }
    float *pp = a.part + (((int64_t)blockIdx.z * a.T + t) * a.H + h) * (a.D + 2);
    if (lane == 0) {
        pp[0] = bad ? NAN : m;
        pp[1] = l;
    }
#pragma unroll
    for (int i = 0; i < ATT_NREG; i++) {
        int d = lane + 32 * i;
        if (d < a.D)
            pp[2 + d] = acc[i];
    }
}

/* Merge the splits' (m, l, acc) of each (t, h) into out; a bad split (m NaN)
 * or no position at all gives a zero row. One thread per output element. */
__global__ void attn_combine_kernel(struct heads3 out, const float *part, int n_splits, int T,
                                    int H, int D)
{
    int64_t n = (int64_t)T * H * D;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t d = i % D, th = i / D, h = th % H, t = th / H;
        float M = -INFINITY, L = 0.0f, A = 0.0f;
        int bad = 0;
        for (int s = 0; s < n_splits; s++) {
            float ms = part[((int64_t)s * T * H + th) * (D + 2)];
            bad |= isnan(ms);
            M = fmaxf(M, ms);
        }
        for (int s = 0; !bad && M != -INFINITY && s < n_splits; s++) {
            const float *pp = part + ((int64_t)s * T * H + th) * (D + 2);
            if (pp[0] == -INFINITY)
                continue;
            float f = expf(pp[0] - M);
            L += pp[1] * f;
            A += pp[2 + d] * f;
        }
        float v = bad || M == -INFINITY || !(L > 0.0f) ? 0.0f : A / L;
        kn_st(out.data, out.dt, t * out.s0 + h * out.s1 + d, v);
    }
}

int kn_cuda_paged_attention(struct kn_backend *be, struct kn_tensor *out, const struct kn_tensor *q,
                            const struct kn_tensor *k_cache, const struct kn_tensor *v_cache,
                            const struct kn_tensor *block_table, const struct kn_tensor *seq,
                            const struct kn_tensor *pos, int block_size, float scale, int window)
{
    struct kn_cuda_ctx *c = kn_cuda_ctx_of(be);
    KN_ASSERT(q->ndim == 3 && k_cache->ndim == 3 && q->shape[2] <= KN_CUDA_ATTN_MAX_D);
    KN_ASSERT(q->shape[1] % k_cache->shape[1] == 0 && block_table->ndim == 2);
    KN_ASSERT(q->shape[0] <= INT32_MAX && q->shape[1] <= 65535);
    struct attn_args a;
    memset(&a, 0, sizeof(a));
    a.out = heads_of(out);
    a.q = heads_of(q);
    a.kc = heads_of(k_cache);
    a.vc = heads_of(v_cache);
    a.bt = (const int32_t *)block_table->data;
    a.seq = (const int32_t *)seq->data;
    a.pos = (const int32_t *)pos->data;
    a.n_seqs = block_table->shape[0];
    a.max_blocks = block_table->shape[1];
    a.bs = block_size;
    a.n_slots = k_cache->shape[0];
    a.T = (int)q->shape[0];
    a.H = (int)q->shape[1];
    a.G = (int)(q->shape[1] / k_cache->shape[1]);
    a.D = (int)q->shape[2];
    a.window = window;
    a.scale = scale;
    if (a.T == 0 || a.D == 0)
        return 0;
    int Hkv = (int)k_cache->shape[1];
    a.GW = a.G < ATT_MAX_WARPS ? a.G : ATT_MAX_WARPS;
    /* more tokens than sequences: prefill, whose tokens share K/V chunks */
    a.NT = a.T > a.n_seqs ? ATT_MAX_WARPS / a.GW : 1;
    a.NT = a.NT < a.T ? a.NT : a.T;
    int nhg = (a.G + a.GW - 1) / a.GW, warps = a.NT * a.GW;
    int64_t tiles = (a.T + a.NT - 1) / a.NT, blocks = tiles * Hkv * nhg;
    /* split the positions when the grid would leave most multiprocessors idle */
    int64_t cap = a.max_blocks * a.bs, n_splits = 1;
    if (blocks < 2 * (int64_t)c->n_sm && cap > 256) {
        n_splits = (2 * (int64_t)c->n_sm + blocks - 1) / blocks;
        int64_t most = (cap + 255) / 256;
        n_splits = n_splits < most ? n_splits : most;
    }
    if (n_splits > 1) {
        a.split_len = (cap + n_splits - 1) / n_splits;
        a.split_len = (a.split_len + ATT_CHUNK - 1) / ATT_CHUNK * ATT_CHUNK;
        n_splits = (cap + a.split_len - 1) / a.split_len;
    }
    if (n_splits > 1) {
        size_t nb = (size_t)n_splits * a.T * a.H * (a.D + 2) * sizeof(float);
        if ((a.part = (float *)kn_cuda_work(be, nb)) == NULL)
            return -1;
    } else {
        a.split_len = INT64_MAX / 4;
    }
    KN_ASSERT(tiles <= INT32_MAX && (int64_t)Hkv * nhg <= 65535 && n_splits <= 65535);
    size_t smem = (size_t)(2 * ATT_CHUNK * (a.D + 1) + warps * a.D) * sizeof(float);
    if (CUDA_CHECK(cudaSetDevice(be->device)) < 0)
        return -1;
    if (smem > 48 * 1024 &&
        CUDA_CHECK(cudaFuncSetAttribute(attn_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)smem)) < 0)
        return -1;
    dim3 grid((unsigned)tiles, (unsigned)(Hkv * nhg), (unsigned)n_splits);
    attn_kernel<<<grid, 32 * warps, smem, c->stream>>>(a);
    if (CUDA_CHECK(cudaGetLastError()) < 0)
        return -1;
    if (n_splits > 1) {
        int64_t n = (int64_t)a.T * a.H * a.D;
        attn_combine_kernel<<<kn_grid(n, 256), 256, 0, c->stream>>>(a.out, a.part, (int)n_splits,
                                                                   a.T, a.H, a.D);
        return CUDA_CHECK(cudaGetLastError());
    }
    return 0;
}
