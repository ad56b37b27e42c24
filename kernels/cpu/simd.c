/*
 * simd.c -- the cpu backend's inner loops: row widening/narrowing, dot, axpy
 * and the matmul tile. Each has a portable C version and, on x86-64 with GCC
 * or clang, an AVX2+FMA+F16C version compiled with a target attribute and
 * chosen at run time, so the build runs on any x86-64. All accumulate in f32
 * in the same order in both versions up to the last lanes' reduction.
 */
#include "kn_cpu.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KN_X86 1
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma,f16c")))
/* full unrolling keeps the tile accumulators in registers */
#define UNROLL _Pragma("GCC unroll 4")
#ifndef PREFETCH
#define PREFETCH 512
#endif
#define INLINE_AVX2 static inline __attribute__((always_inline, target("avx2,fma,f16c")))

static int have_avx2(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
}
#endif

static inline float load1(const void *p, enum kn_dtype dt, int64_t i)
{
    switch (dt) {
    case KN_BF16: return kn_bf16_to_f32(((const uint16_t *)p)[i]);
    case KN_F16: return kn_f16_to_f32(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}

/* ---- portable versions --------------------------------------------------------- */

static void row_load_c(float *dst, const void *src, enum kn_dtype dt, int64_t n)
{
    const uint16_t *h = src;
    switch (dt) {
    case KN_BF16: for (int64_t i = 0; i < n; i++) dst[i] = kn_bf16_to_f32(h[i]); break;
    case KN_F16:  for (int64_t i = 0; i < n; i++) dst[i] = kn_f16_to_f32(h[i]); break;
    default:      memmove(dst, src, (size_t)n * sizeof(float)); break;
    }
}

/* x (K,) . w (K,); eight partial sums give the compiler independent chains */
static float dot_c(const float *x, const void *w, enum kn_dtype wdt, int64_t K)
{
    float s[8] = { 0 };
    int64_t k = 0;
    for (; k + 8 <= K; k += 8)
        for (int j = 0; j < 8; j++)
            s[j] += x[k + j] * load1(w, wdt, k + j);
    for (; k < K; k++)
        s[0] += x[k] * load1(w, wdt, k);
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

static void axpy_c(float *y, float a, const void *x, enum kn_dtype dt, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += a * load1(x, dt, i);
}

static void axpy_rows_c(float *y, int64_t ldy, const float *a, int na, const void *x,
                        enum kn_dtype dt, int64_t n)
{
    for (int r = 0; r < na; r++)
        axpy_c(y + r * ldy, a[r], x, dt, n);
}

/* ---- AVX2 versions --------------------------------------------------------------- */

#ifdef KN_X86
/* 8 elements of <p> at index k, widened to f32 (exact) */
INLINE_AVX2 __m256 load8(const void *p, enum kn_dtype dt, int64_t k)
{
    if (dt == KN_F32)
        return _mm256_loadu_ps((const float *)p + k);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + k));
    if (dt == KN_F16)
        return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* sum of the 8 lanes: (0+4, 1+5, 2+6, 3+7) then pairs */
INLINE_AVX2 float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static AVX2 void row_load_avx2(float *dst, const void *src, enum kn_dtype dt, int64_t n)
{
    int64_t i = 0;
    if (dt == KN_BF16)
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, load8(src, KN_BF16, i));
    else if (dt == KN_F16)
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, load8(src, KN_F16, i));
    row_load_c(dst + i, (const char *)src + (size_t)i * kn_dtype_size(dt), dt, n - i);
}

/* One (MR x NR) tile, specialised by the compiler for each constant MR, NR, dt:
 * MR*NR vector accumulators over K in steps of 8, then the K % 8 tail. */
INLINE_AVX2 void tile_avx2(float *out, int64_t ldo, const float *x, int64_t ldx, const void *w,
                           int64_t ldw, enum kn_dtype dt, const int MR, const int NR, int64_t K)
{
    __m256 acc[KN_TILE_M][KN_TILE_N];
    size_t esz = dt == KN_F32 ? 4 : 2;
    const char *wr[KN_TILE_N];
    UNROLL for (int j = 0; j < NR; j++)
        wr[j] = (const char *)w + (size_t)(j * ldw) * esz;
    UNROLL for (int i = 0; i < MR; i++)
        UNROLL for (int j = 0; j < NR; j++)
            acc[i][j] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 wv[KN_TILE_N];
        UNROLL for (int j = 0; j < NR; j++) {
            /* one line in 32 elements, PREFETCH ahead in this row, and past
             * its end in row j of the next tile (rows NR further on) */
            if (PREFETCH && (k & 31) == 0) {
                int64_t kp = k + PREFETCH;
                _mm_prefetch(wr[j] + (size_t)(kp < K ? kp : NR * ldw + kp - K) * esz, _MM_HINT_T0);
            }
            wv[j] = load8(wr[j], dt, k);
        }
        UNROLL for (int i = 0; i < MR; i++) {
            __m256 xv = _mm256_loadu_ps(x + i * ldx + k);
            UNROLL for (int j = 0; j < NR; j++)
                acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    UNROLL for (int i = 0; i < MR; i++)
        UNROLL for (int j = 0; j < NR; j++) {
            float s = hsum8(acc[i][j]);
            for (int64_t kk = k; kk < K; kk++)
                s += x[i * ldx + kk] * load1(wr[j], dt, kk);
            out[i * ldo + j] = s;
        }
}

#define TILE_CASE(MR, NR)                                                              \
    case (MR) * 8 + (NR):                                                              \
        if (dt == KN_BF16)                                                             \
            tile_avx2(out, ldo, x, ldx, w, ldw, KN_BF16, MR, NR, K);                   \
        else if (dt == KN_F16)                                                         \
            tile_avx2(out, ldo, x, ldx, w, ldw, KN_F16, MR, NR, K);                    \
        else                                                                           \
            tile_avx2(out, ldo, x, ldx, w, ldw, KN_F32, MR, NR, K);                    \
        break;

static AVX2 void tile_dispatch_avx2(float *out, int64_t ldo, const float *x, int64_t ldx,
                                    const void *w, int64_t ldw, enum kn_dtype dt, int mr, int nr,
                                    int64_t K)
{
    switch (mr * 8 + nr) {
    TILE_CASE(1, 1) TILE_CASE(1, 2) TILE_CASE(1, 3)
    TILE_CASE(2, 1) TILE_CASE(2, 2) TILE_CASE(2, 3)
    TILE_CASE(3, 1) TILE_CASE(3, 2) TILE_CASE(3, 3)
    TILE_CASE(4, 1) TILE_CASE(4, 2) TILE_CASE(4, 3)
    default: break;
    }
}

static AVX2 float dot_avx2(const float *x, const void *w, enum kn_dtype wdt, int64_t K)
{
    float s;
    tile_dispatch_avx2(&s, 1, x, K, w, K, wdt, 1, 1, K);
    return s;
}

static AVX2 void axpy_avx2(float *y, float a, const void *x, enum kn_dtype dt, int64_t n)
{
    __m256 av = _mm256_set1_ps(a);
    int64_t i = 0;
    if (dt == KN_BF16)
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, load8(x, KN_BF16, i), _mm256_loadu_ps(y + i)));
    else if (dt == KN_F16)
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, load8(x, KN_F16, i), _mm256_loadu_ps(y + i)));
    else
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, load8(x, KN_F32, i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * load1(x, dt, i);
}

/* y row r (n,) += a[r] * x (n,) for r < na, widening each 8 of x once */
static AVX2 void axpy_rows_avx2(float *y, int64_t ldy, const float *a, int na, const void *x,
                                enum kn_dtype dt, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv = dt == KN_BF16 ? load8(x, KN_BF16, i) : dt == KN_F16 ? load8(x, KN_F16, i)
                  : load8(x, KN_F32, i);
        for (int r = 0; r < na; r++) {
            float *yr = y + r * ldy + i;
            _mm256_storeu_ps(yr, _mm256_fmadd_ps(_mm256_set1_ps(a[r]), xv, _mm256_loadu_ps(yr)));
        }
    }
    for (; i < n; i++)
        for (int r = 0; r < na; r++)
            y[r * ldy + i] += a[r] * load1(x, dt, i);
}
#endif

/* ---- dispatch ---------------------------------------------------------------------- */

void kn_row_load(float *dst, const void *src, enum kn_dtype dt, int64_t n)
{
#ifdef KN_X86
    if (dt != KN_F32 && have_avx2()) {
        row_load_avx2(dst, src, dt, n);
        return;
    }
#endif
    row_load_c(dst, src, dt, n);
}

void kn_row_store(void *dst, const float *src, enum kn_dtype dt, int64_t n)
{
    uint16_t *h = dst;
    switch (dt) {
    case KN_BF16: for (int64_t i = 0; i < n; i++) h[i] = kn_f32_to_bf16(src[i]); break;
    case KN_F16:  for (int64_t i = 0; i < n; i++) h[i] = kn_f32_to_f16(src[i]); break;
    default:      memmove(dst, src, (size_t)n * sizeof(float)); break;
    }
}

float kn_cpu_dot(const float *x, const void *w, enum kn_dtype wdt, int64_t K)
{
#ifdef KN_X86
    if (have_avx2())
        return dot_avx2(x, w, wdt, K);
#endif
    return dot_c(x, w, wdt, K);
}

void kn_cpu_axpy(float *y, float a, const void *x, enum kn_dtype dt, int64_t n)
{
#ifdef KN_X86
    if (have_avx2()) {
        axpy_avx2(y, a, x, dt, n);
        return;
    }
#endif
    axpy_c(y, a, x, dt, n);
}

void kn_cpu_axpy_rows(float *y, int64_t ldy, const float *a, int na, const void *x,
                      enum kn_dtype dt, int64_t n)
{
#ifdef KN_X86
    if (have_avx2()) {
        axpy_rows_avx2(y, ldy, a, na, x, dt, n);
        return;
    }
#endif
    axpy_rows_c(y, ldy, a, na, x, dt, n);
}

void kn_cpu_tile(float *out, int64_t ldo, const float *x, int64_t ldx, const void *w,
                 int64_t ldw, enum kn_dtype wdt, int mr, int nr, int64_t K)
{
#ifdef KN_X86
    if (have_avx2()) {
        tile_dispatch_avx2(out, ldo, x, ldx, w, ldw, wdt, mr, nr, K);
        return;
    }
#endif
    size_t esz = kn_dtype_size(wdt);
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++)
            out[i * ldo + j] = dot_c(x + i * ldx, (const char *)w + (size_t)(j * ldw) * esz, wdt, K);
}
