// f16 conversion and the small f32 / f16 vector kernels used by attention.
#include "internal.h"
#include <math.h>

// MARK: - Scalar f16 (bit-exact with F16C's vcvtps2ph round-to-nearest-even and vcvtph2ps)

float bk_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t mant = h & 0x3FF;
    uint32_t bits;
    if (exp == 0) {
        // Subnormal or zero: mant · 2^-24 is exact in f32.
        float v = (float)mant * 5.9604644775390625e-08f;
        return sign ? -v : v;
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t bk_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t a = x & 0x7FFFFFFFu;
    if (a > 0x7F800000u) {
        // NaN: keep the top payload bits and force the quiet bit, as F16C does.
        return sign | 0x7E00 | (uint16_t)((a >> 13) & 0x3FF);
    }
    if (a >= 0x477FF000u) return sign | 0x7C00;  // ≥ 65520 rounds to infinity
    if (a < 0x38800000u) {
        // Below the smallest normal f16 (2^-14): the result is round(|f| · 2^24) units of 2^-24;
        // scaling by a power of two is exact here, and nearbyintf rounds half to even.
        float af;
        memcpy(&af, &a, 4);
        return sign | (uint16_t)nearbyintf(af * 16777216.0f);
    }
    uint32_t h = ((((a >> 23) - 112) << 10) | ((a >> 13) & 0x3FF));
    uint32_t rem = a & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h += 1;  // a carry rolls into the exponent correctly
    return sign | (uint16_t)h;
}

static void cvt_to_f16_scalar(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = bk_f32_to_f16(src[i]);
}
static void cvt_from_f16_scalar(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = bk_f16_to_f32(src[i]);
}
static float dot_f16_scalar(const float *a, const uint16_t *b, size_t n) {
    float s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * bk_f16_to_f32(b[i]);
    return s;
}
static void axpy_f16_scalar(float alpha, const uint16_t *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += alpha * bk_f16_to_f32(x[i]);
}
static float dot_f32_scalar(const float *a, const float *b, size_t n) {
    float s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}
static void axpy_f32_scalar(float alpha, const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

#if BK_X86
// MARK: - AVX2 + F16C

BK_AVX2 static float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

BK_AVX2 static void cvt_to_f16_avx2(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) dst[i] = bk_f32_to_f16(src[i]);
}
BK_AVX2 static void cvt_from_f16_avx2(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = bk_f16_to_f32(src[i]);
}
BK_AVX2 static float dot_f16_avx2(const float *a, const uint16_t *b, size_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i))), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i + 8))), acc1);
    }
    for (; i + 8 <= n; i += 8)
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i))), acc0);
    float s = hsum256(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s += a[i] * bk_f16_to_f32(b[i]);
    return s;
}
BK_AVX2 static void axpy_f16_avx2(float alpha, const uint16_t *x, float *y, size_t n) {
    __m256 va = _mm256_set1_ps(alpha);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += alpha * bk_f16_to_f32(x[i]);
}
BK_AVX2 static float dot_f32_avx2(const float *a, const float *b, size_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    float s = hsum256(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}
BK_AVX2 static void axpy_f32_avx2(float alpha, const float *x, float *y, size_t n) {
    __m256 va = _mm256_set1_ps(alpha);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += alpha * x[i];
}

// MARK: - AVX-512 (masked tails, no scalar remainder)

BK_AVX512 static void cvt_to_f16_avx512(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(dst + i), _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm256_mask_storeu_epi16(dst + i, m, _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, src + i), _MM_FROUND_TO_NEAREST_INT));
    }
}
BK_AVX512 static void cvt_from_f16_avx512(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(dst + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, src + i)));
    }
}
BK_AVX512 static float dot_f16_avx512(const float *a, const uint16_t *b, size_t n) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(b + i))), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(b + i + 16))), acc1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = bk_tail16(n, i);
        acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, b + i)), acc0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}
BK_AVX512 static void axpy_f16_avx512(float alpha, const uint16_t *x, float *y, size_t n) {
    __m512 va = _mm512_set1_ps(alpha);
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i))), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i)), _mm512_maskz_loadu_ps(m, y + i)));
    }
}
BK_AVX512 static float dot_f32_avx512(const float *a, const float *b, size_t n) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
    }
    for (; i < n; i += 16) {
        __mmask16 m = bk_tail16(n, i);
        acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}
BK_AVX512 static void axpy_f32_avx512(float alpha, const float *x, float *y, size_t n) {
    __m512 va = _mm512_set1_ps(alpha);
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}
#endif

#if BK_ARM
// MARK: - NEON (FCVTL/FCVTN convert f16 as F16C does: round to nearest even, NaNs quieted with their payload)

BK_INLINE float32x4_t load_f16x4(const uint16_t *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

static void cvt_to_f16_neon(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float16x8_t h = vcvt_high_f16_f32(vcvt_f16_f32(vld1q_f32(src + i)), vld1q_f32(src + i + 4));
        vst1q_u16(dst + i, vreinterpretq_u16_f16(h));
    }
    for (; i < n; i++) dst[i] = bk_f32_to_f16(src[i]);
}
static void cvt_from_f16_neon(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, load_f16x4(src + i));
    for (; i < n; i++) dst[i] = bk_f16_to_f32(src[i]);
}
static float dot_f16_neon(const float *a, const uint16_t *b, size_t n) {
    float32x4_t acc0 = vdupq_n_f32(0), acc1 = vdupq_n_f32(0);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), load_f16x4(b + i));
        acc1 = vfmaq_f32(acc1, vld1q_f32(a + i + 4), load_f16x4(b + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(acc0, acc1));
    for (; i < n; i++) s += a[i] * bk_f16_to_f32(b[i]);
    return s;
}
static void axpy_f16_neon(float alpha, const uint16_t *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), load_f16x4(x + i), alpha));
    for (; i < n; i++) y[i] += alpha * bk_f16_to_f32(x[i]);
}
static float dot_f32_neon(const float *a, const float *b, size_t n) {
    float32x4_t acc0 = vdupq_n_f32(0), acc1 = vdupq_n_f32(0);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vld1q_f32(b + i));
        acc1 = vfmaq_f32(acc1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(acc0, acc1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}
static void axpy_f32_neon(float alpha, const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), alpha));
    for (; i < n; i++) y[i] += alpha * x[i];
}
#endif

// MARK: - exp, softmax, SwiGLU and argmax (the forward pass's element-wise steps)
//
// e^x by Cephes' polynomial after range reduction by ln 2, clamped and branch-free, with the multiply-adds
// fused the same way in every variant, so the variants agree to an ulp or two.

#define BK_EXP_LOW -87.33654f
#define BK_EXP_HIGH 88.37f
#define BK_EXP_MAGIC 12582912.0f

static float exp1(float x) {
    x = x < BK_EXP_LOW ? BK_EXP_LOW : (x > BK_EXP_HIGH ? BK_EXP_HIGH : x);
    const float shifted = fmaf(x, 1.44269504f, BK_EXP_MAGIC);
    const float n = shifted - BK_EXP_MAGIC;
    float r = fmaf(n, -0.693359375f, x);
    r = fmaf(n, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3344519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p, r * r, r) + 1.0f;
    uint32_t sb, mb;
    const float magic = BK_EXP_MAGIC;
    memcpy(&sb, &shifted, 4);
    memcpy(&mb, &magic, 4);
    const uint32_t e = (sb - mb + 127u) << 23;
    float scale;
    memcpy(&scale, &e, 4);
    return p * scale;
}

static void swiglu_scalar(float *gate, const float *up, size_t n) {
    for (size_t i = 0; i < n; i++) gate[i] = gate[i] / (exp1(-gate[i]) + 1.0f) * up[i];
}

static void exp_scalar(const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = exp1(x[i]);
}

static void softmax_scalar(float *x, size_t n) {
    float maximum = -INFINITY;
    for (size_t i = 0; i < n; i++) maximum = x[i] > maximum ? x[i] : maximum;
    float sum = 0;
    for (size_t i = 0; i < n; i++) {
        x[i] = exp1(x[i] - maximum);
        sum += x[i];
    }
    const float inverse = 1.0f / sum;
    for (size_t i = 0; i < n; i++) x[i] *= inverse;
}

static size_t argmax_scalar(const float *x, size_t n) {
    size_t best = 0;
    float value = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (x[i] > value) { value = x[i]; best = i; }
    return best;
}

/// Σ x[i]², each square rounded to float (as ggml squares) and added in double into eight lanes (lane i % 8),
/// the lanes then combined as (l0+l4 + l2+l6) + (l1+l5 + l3+l7): the SIMD variants keep exactly this order,
/// so every ISA gives the same bits.
static double sumsq_combine(const double l[8]) {
    const double a0 = l[0] + l[4], a1 = l[1] + l[5], a2 = l[2] + l[6], a3 = l[3] + l[7];
    return (a0 + a2) + (a1 + a3);
}

static double sumsq_scalar(const float *x, size_t n) {
    double l[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (size_t i = 0; i < n; i++) l[i % 8] += (double)(x[i] * x[i]);
    return sumsq_combine(l);
}

/// Merges per-lane maxima (value, first index) — the largest value, ties to the lower index — then scans the
/// elements from `from` on, which the lanes did not cover.
static size_t argmax_merge(const float *bv, const int32_t *bi, int lanes, const float *x, size_t from, size_t n) {
    size_t result = 0;
    float value = -INFINITY;
    for (int k = 0; k < lanes; k++)
        if (bv[k] > value || (bv[k] == value && value > -INFINITY && (size_t)bi[k] < result)) { value = bv[k]; result = (size_t)bi[k]; }
    for (size_t i = from; i < n; i++)
        if (x[i] > value) { value = x[i]; result = i; }
    return result;
}

#if BK_X86
#define BK_EXP_BODY(W, cast_i, cast_f)                                                            \
    x = _mm##W##_min_ps(_mm##W##_max_ps(x, _mm##W##_set1_ps(BK_EXP_LOW)), _mm##W##_set1_ps(BK_EXP_HIGH));   \
    const __m##W shifted = _mm##W##_fmadd_ps(x, _mm##W##_set1_ps(1.44269504f), _mm##W##_set1_ps(BK_EXP_MAGIC)); \
    const __m##W n = _mm##W##_sub_ps(shifted, _mm##W##_set1_ps(BK_EXP_MAGIC));                              \
    __m##W r = _mm##W##_fmadd_ps(n, _mm##W##_set1_ps(-0.693359375f), x);                                    \
    r = _mm##W##_fmadd_ps(n, _mm##W##_set1_ps(2.12194440e-4f), r);                                          \
    __m##W p = _mm##W##_set1_ps(1.9875691500e-4f);                                                          \
    p = _mm##W##_fmadd_ps(p, r, _mm##W##_set1_ps(1.3981999507e-3f));                                       \
    p = _mm##W##_fmadd_ps(p, r, _mm##W##_set1_ps(8.3344519073e-3f));                                        \
    p = _mm##W##_fmadd_ps(p, r, _mm##W##_set1_ps(4.1665795894e-2f));                                        \
    p = _mm##W##_fmadd_ps(p, r, _mm##W##_set1_ps(1.6666665459e-1f));                                        \
    p = _mm##W##_fmadd_ps(p, r, _mm##W##_set1_ps(5.0000001201e-1f));                                        \
    p = _mm##W##_add_ps(_mm##W##_fmadd_ps(p, _mm##W##_mul_ps(r, r), r), _mm##W##_set1_ps(1.0f));            \
    const __m##W##i e = _mm##W##_slli_epi32(                                                                  \
        _mm##W##_add_epi32(_mm##W##_sub_epi32(cast_i(shifted), cast_i(_mm##W##_set1_ps(BK_EXP_MAGIC))),       \
                           _mm##W##_set1_epi32(127)), 23);                                                    \
    return _mm##W##_mul_ps(p, cast_f(e));

BK_AVX2 BK_INLINE __m256 exp8(__m256 x) { BK_EXP_BODY(256, _mm256_castps_si256, _mm256_castsi256_ps) }
BK_AVX512 BK_INLINE __m512 exp16(__m512 x) { BK_EXP_BODY(512, _mm512_castps_si512, _mm512_castsi512_ps) }

BK_AVX2 static void swiglu_avx2(float *gate, const float *up, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 z = _mm256_loadu_ps(gate + i);
        const __m256 e = _mm256_add_ps(exp8(_mm256_sub_ps(_mm256_setzero_ps(), z)), _mm256_set1_ps(1.0f));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(_mm256_div_ps(z, e), _mm256_loadu_ps(up + i)));
    }
    swiglu_scalar(gate + i, up + i, n - i);
}

BK_AVX512 static void swiglu_avx512(float *gate, const float *up, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = bk_tail16(n, i);
        const __m512 z = _mm512_maskz_loadu_ps(m, gate + i);
        const __m512 e = _mm512_add_ps(exp16(_mm512_sub_ps(_mm512_setzero_ps(), z)), _mm512_set1_ps(1.0f));
        _mm512_mask_storeu_ps(gate + i, m, _mm512_mul_ps(_mm512_div_ps(z, e), _mm512_maskz_loadu_ps(m, up + i)));
    }
}

BK_AVX2 static double sumsq_avx2(const float *x, size_t n) {
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();  // lanes 0-3 and 4-7
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 sq = _mm256_mul_ps(v, v);
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
        hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
    }
    double l[8];
    _mm256_storeu_pd(l, lo);
    _mm256_storeu_pd(l + 4, hi);
    for (size_t k = 0; i < n; i++, k++) l[k] += (double)(x[i] * x[i]);
    return sumsq_combine(l);
}

BK_AVX512 static double sumsq_avx512(const float *x, size_t n) {
    __m512d acc = _mm512_setzero_pd();
    for (size_t i = 0; i < n; i += 8) {
        const __mmask8 m = bk_tail8(n, i);
        const __m256 v = _mm256_maskz_loadu_ps(m, x + i);  // missing lanes add +0.0, which changes nothing
        acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm256_mul_ps(v, v)));
    }
    double l[8];
    _mm512_storeu_pd(l, acc);
    return sumsq_combine(l);
}


BK_AVX2 static void exp_avx2(const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp8(_mm256_loadu_ps(x + i)));
    exp_scalar(x + i, y + i, n - i);
}

BK_AVX512 static void exp_avx512(const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = bk_tail16(n, i);
        _mm512_mask_storeu_ps(y + i, m, exp16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

BK_AVX2 static void softmax_avx2(float *x, size_t n) {
    if (n < 8) { softmax_scalar(x, n); return; }
    __m256 mv = _mm256_set1_ps(-INFINITY);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) mv = _mm256_max_ps(_mm256_loadu_ps(x + i), mv);  // a NaN in x never replaces the max
    float lanes[8];
    _mm256_storeu_ps(lanes, mv);
    float maximum = -INFINITY;
    for (int k = 0; k < 8; k++) maximum = lanes[k] > maximum ? lanes[k] : maximum;
    for (size_t j = i; j < n; j++) maximum = x[j] > maximum ? x[j] : maximum;
    const __m256 vmax = _mm256_set1_ps(maximum);
    __m256 sv = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
        _mm256_storeu_ps(x + i, e);
        sv = _mm256_add_ps(sv, e);
    }
    _mm256_storeu_ps(lanes, sv);
    float sum = 0;
    for (int k = 0; k < 8; k++) sum += lanes[k];
    for (; i < n; i++) {
        x[i] = exp1(x[i] - maximum);
        sum += x[i];
    }
    const __m256 inverse = _mm256_set1_ps(1.0f / sum);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inverse));
    for (; i < n; i++) x[i] *= 1.0f / sum;
}

BK_AVX512 static void softmax_avx512(float *x, size_t n) {
    __m512 mv = _mm512_set1_ps(-INFINITY);
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = bk_tail16(n, i);
        mv = _mm512_mask_max_ps(mv, m, _mm512_maskz_loadu_ps(m, x + i), mv);
    }
    const float maximum = _mm512_reduce_max_ps(mv);
    const __m512 vmax = _mm512_set1_ps(maximum);
    __m512 sv = _mm512_setzero_ps();
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = bk_tail16(n, i);
        const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vmax));
        _mm512_mask_storeu_ps(x + i, m, e);
        sv = _mm512_add_ps(sv, _mm512_maskz_mov_ps(m, e));
    }
    const __m512 inverse = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sv));
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = bk_tail16(n, i);
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inverse));
    }
}

// Per-lane running maxima and their first indices; lanes then merge by value, ties to the lower index. A NaN
// never compares greater, so it is skipped as the scalar loop skips it.
BK_AVX2 static size_t argmax_avx2(const float *x, size_t n) {
    if (n < 8 || n > (size_t)INT32_MAX) return argmax_scalar(x, n);
    __m256 best = _mm256_set1_ps(-INFINITY);
    __m256i index = _mm256_setzero_si256(), lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 greater = _mm256_cmp_ps(v, best, _CMP_GT_OQ);
        best = _mm256_blendv_ps(best, v, greater);
        index = _mm256_blendv_epi8(index, _mm256_add_epi32(lanes, _mm256_set1_epi32((int)i)), _mm256_castps_si256(greater));
    }
    float bv[8];
    int32_t bi[8];
    _mm256_storeu_ps(bv, best);
    _mm256_storeu_si256((__m256i *)bi, index);
    return argmax_merge(bv, bi, 8, x, i, n);
}

BK_AVX512 static size_t argmax_avx512(const float *x, size_t n) {
    if (n < 16 || n > (size_t)INT32_MAX) return argmax_scalar(x, n);
    __m512 best = _mm512_set1_ps(-INFINITY);
    __m512i index = _mm512_setzero_si512();
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        const __mmask16 greater = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
        best = _mm512_mask_mov_ps(best, greater, v);
        index = _mm512_mask_mov_epi32(index, greater, _mm512_add_epi32(lanes, _mm512_set1_epi32((int)i)));
    }
    float bv[16];
    int32_t bi[16];
    _mm512_storeu_ps(bv, best);
    _mm512_storeu_si512(bi, index);
    return argmax_merge(bv, bi, 16, x, i, n);
}
#endif

#if BK_ARM
/// exp1's steps on four lanes, each multiply-add fused as there (vfmaq_f32(c, a, b) = a·b + c), so the lanes give
/// exp1's bits.
BK_INLINE float32x4_t exp4(float32x4_t x) {
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(BK_EXP_LOW)), vdupq_n_f32(BK_EXP_HIGH));
    const float32x4_t magic = vdupq_n_f32(BK_EXP_MAGIC);
    const float32x4_t shifted = vfmaq_f32(magic, x, vdupq_n_f32(1.44269504f));
    const float32x4_t n = vsubq_f32(shifted, magic);
    float32x4_t r = vfmaq_f32(x, n, vdupq_n_f32(-0.693359375f));
    r = vfmaq_f32(r, n, vdupq_n_f32(2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3344519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vaddq_f32(vfmaq_f32(r, p, vmulq_f32(r, r)), vdupq_n_f32(1.0f));
    const uint32x4_t e = vshlq_n_u32(
        vaddq_u32(vsubq_u32(vreinterpretq_u32_f32(shifted), vreinterpretq_u32_f32(magic)), vdupq_n_u32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_u32(e));
}

static void swiglu_neon(float *gate, const float *up, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t z = vld1q_f32(gate + i);
        const float32x4_t e = vaddq_f32(exp4(vnegq_f32(z)), vdupq_n_f32(1.0f));
        vst1q_f32(gate + i, vmulq_f32(vdivq_f32(z, e), vld1q_f32(up + i)));
    }
    swiglu_scalar(gate + i, up + i, n - i);
}

static void exp_neon(const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, exp4(vld1q_f32(x + i)));
    exp_scalar(x + i, y + i, n - i);
}

static void softmax_neon(float *x, size_t n) {
    if (n < 4) { softmax_scalar(x, n); return; }
    float32x4_t mv = vdupq_n_f32(-INFINITY);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {  // a NaN in x never replaces the max (the comparison is false)
        const float32x4_t v = vld1q_f32(x + i);
        mv = vbslq_f32(vcgtq_f32(v, mv), v, mv);
    }
    float maximum = vmaxvq_f32(mv);
    for (size_t j = i; j < n; j++) maximum = x[j] > maximum ? x[j] : maximum;
    const float32x4_t vmax = vdupq_n_f32(maximum);
    float32x4_t sv = vdupq_n_f32(0);
    for (i = 0; i + 4 <= n; i += 4) {
        const float32x4_t e = exp4(vsubq_f32(vld1q_f32(x + i), vmax));
        vst1q_f32(x + i, e);
        sv = vaddq_f32(sv, e);
    }
    float sum = vaddvq_f32(sv);
    for (; i < n; i++) {
        x[i] = exp1(x[i] - maximum);
        sum += x[i];
    }
    const float inverse = 1.0f / sum;
    for (i = 0; i + 4 <= n; i += 4) vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), inverse));
    for (; i < n; i++) x[i] *= inverse;
}

/// Eight lanes of doubles in four pairs, element i into lane i % 8, as sumsq_scalar adds them.
static double sumsq_neon(const float *x, size_t n) {
    float64x2_t l01 = vdupq_n_f64(0), l23 = l01, l45 = l01, l67 = l01;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float32x4_t a = vld1q_f32(x + i), b = vld1q_f32(x + i + 4);
        const float32x4_t sa = vmulq_f32(a, a), sb = vmulq_f32(b, b);
        l01 = vaddq_f64(l01, vcvt_f64_f32(vget_low_f32(sa)));
        l23 = vaddq_f64(l23, vcvt_high_f64_f32(sa));
        l45 = vaddq_f64(l45, vcvt_f64_f32(vget_low_f32(sb)));
        l67 = vaddq_f64(l67, vcvt_high_f64_f32(sb));
    }
    double l[8];
    vst1q_f64(l, l01);
    vst1q_f64(l + 2, l23);
    vst1q_f64(l + 4, l45);
    vst1q_f64(l + 6, l67);
    for (size_t k = 0; i < n; i++, k++) l[k] += (double)(x[i] * x[i]);
    return sumsq_combine(l);
}

static size_t argmax_neon(const float *x, size_t n) {
    if (n < 4 || n > (size_t)INT32_MAX) return argmax_scalar(x, n);
    float32x4_t best = vdupq_n_f32(-INFINITY);
    uint32x4_t index = vdupq_n_u32(0);
    const uint32x4_t lanes = {0, 1, 2, 3};
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t v = vld1q_f32(x + i);
        const uint32x4_t greater = vcgtq_f32(v, best);
        best = vbslq_f32(greater, v, best);
        index = vbslq_u32(greater, vaddq_u32(lanes, vdupq_n_u32((uint32_t)i)), index);
    }
    float bv[4];
    int32_t bi[4];
    vst1q_f32(bv, best);
    vst1q_s32(bi, vreinterpretq_s32_u32(index));
    return argmax_merge(bv, bi, 4, x, i, n);
}
#endif

// MARK: - Dispatch

#if BK_X86
#define BK_DISPATCH(isa, name, ...)                                            \
    switch (bk_effective_isa(isa)) {                                           \
    case BK_ISA_AVX512: return name##_avx512(__VA_ARGS__);                     \
    case BK_ISA_AVX2: return name##_avx2(__VA_ARGS__);                         \
    default: return name##_scalar(__VA_ARGS__);                                \
    }
#elif BK_ARM
#define BK_DISPATCH(isa, name, ...)                                            \
    switch (bk_effective_isa(isa)) {                                           \
    case BK_ISA_NEON_DOTPROD:                                                  \
    case BK_ISA_NEON: return name##_neon(__VA_ARGS__);                         \
    default: return name##_scalar(__VA_ARGS__);                                \
    }
#else
#define BK_DISPATCH(isa, name, ...) (void)isa; return name##_scalar(__VA_ARGS__);
#endif

void bk_convert_f32_to_f16(bk_isa isa, const float *src, uint16_t *dst, size_t n) { BK_DISPATCH(isa, cvt_to_f16, src, dst, n) }
void bk_convert_f16_to_f32(bk_isa isa, const uint16_t *src, float *dst, size_t n) { BK_DISPATCH(isa, cvt_from_f16, src, dst, n) }
float bk_dot_f16(bk_isa isa, const float *a, const uint16_t *b, size_t n) { BK_DISPATCH(isa, dot_f16, a, b, n) }
void bk_axpy_f16(bk_isa isa, float alpha, const uint16_t *x, float *y, size_t n) { BK_DISPATCH(isa, axpy_f16, alpha, x, y, n) }
float bk_dot_f32(bk_isa isa, const float *a, const float *b, size_t n) { BK_DISPATCH(isa, dot_f32, a, b, n) }
void bk_axpy_f32(bk_isa isa, float alpha, const float *x, float *y, size_t n) { BK_DISPATCH(isa, axpy_f32, alpha, x, y, n) }
void bk_swiglu(bk_isa isa, float *gate, const float *up, size_t n) { BK_DISPATCH(isa, swiglu, gate, up, n) }
size_t bk_argmax(bk_isa isa, const float *x, size_t n) { BK_DISPATCH(isa, argmax, x, n) }
void bk_exp(bk_isa isa, const float *x, float *y, size_t n) { BK_DISPATCH(isa, exp, x, y, n) }
void bk_softmax(bk_isa isa, float *x, size_t n) { BK_DISPATCH(isa, softmax, x, n) }
static double sumsq(bk_isa isa, const float *x, size_t n) { BK_DISPATCH(isa, sumsq, x, n) }

void bk_rms_norm(bk_isa isa, const float *x, const float *gain, float epsilon, float *y, size_t n) {
    if (n == 0) return;
    const float scale = 1.0f / sqrtf((float)(sumsq(isa, x, n) / (double)n) + epsilon);
    for (size_t i = 0; i < n; i++) y[i] = (x[i] * scale) * gain[i];
}
