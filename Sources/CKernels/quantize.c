// Activation quantization to int8 blocks of 32, bit-identical to ggml's x86 quantize_row_q8_0/q8_1:
// d = amax/127 (kept as f16), q = round-half-even(x · (127/amax)), s = f16(d · Σq).
#include "internal.h"
#include <math.h>

static int32_t bias_multiplier(bk_type wtype) {
    // The kernels multiply weights as unsigned bytes: Q4_0's nibble q stands for q - 8, Q5_0's q for q - 16
    // and Q8_0's x is used as x ^ 0x80 = x + 128, so Σw·y carries a surplus of 8·Σy, 16·Σy or 128·Σy, removed
    // exactly here.
    switch (wtype) {
    case BK_TYPE_Q4_0: return -8;
    case BK_TYPE_Q5_0: return -16;
    case BK_TYPE_Q8_0: return -128;
    default: return 0;
    }
}

/// Fills the per-block side data (everything but qs) from amax and Σq.
BK_INLINE void store_block_meta(uint8_t *base, const bk_act_layout *l, int b, float amax, int32_t sum, int32_t mult) {
    float d = amax / 127.f;
    float dq = bk_f16_to_f32(bk_f32_to_f16(d));
    float s = bk_f16_to_f32(bk_f32_to_f16(d * (float)sum));
    ((float *)(base + l->d))[b] = dq;
    ((float *)(base + l->s))[b] = s;
    ((int32_t *)(base + l->sum))[b] = sum;
    ((float *)(base + l->s2off))[2 * b] = 0;
    ((float *)(base + l->s2off))[2 * b + 1] = s;
    float *dl = (float *)(base + l->dl) + 8 * b;
    int32_t *bias = (int32_t *)(base + l->bias) + 8 * b;
    for (int k = 0; k < 8; k++) { dl[k] = dq; bias[k] = 0; }
    bias[0] = mult * sum;
}

/// Builds the AVX-512 octet copy of blocks `from`... (copied from qs, zero past the last block) and zeroes
/// the padding blocks and the s2 tail so kernels may read whole pairs and octets.
static void store_padding(uint8_t *base, const bk_act_layout *l, int from) {
    const int8_t *qs = (const int8_t *)(base + l->qs);
    const float *d = (const float *)(base + l->d);
    const int32_t *bias = (const int32_t *)(base + l->bias);
    uint8_t *qo = base + l->qo;
    float *dlo = (float *)(base + l->dlo);
    int32_t *bo = (int32_t *)(base + l->bo);
    for (int o = from / 8; o < l->nbo; o++) {
        for (int i = 0; i < 8; i++) {
            int b = 8 * o + i;
            if (b < from) continue;
            int real = b < l->nb;
            for (int k = 0; k < 4; k++) {
                uint64_t x = 0;
                if (real) memcpy(&x, qs + 32 * (size_t)b + 8 * k, 8);
                memcpy(qo + 256 * (size_t)o + 64 * k + 8 * i, &x, 8);
            }
            dlo[16 * o + 2 * i] = dlo[16 * o + 2 * i + 1] = real ? d[b] : 0.0f;
            bo[16 * o + 2 * i] = real ? bias[8 * b] : 0;
            bo[16 * o + 2 * i + 1] = 0;
        }
    }
    for (int b = l->nb; b < l->nbp; b++) {
        memset(base + l->qs + (size_t)b * 32, 0, 32);
        ((float *)(base + l->d))[b] = 0;
        ((float *)(base + l->s))[b] = 0;
        ((int32_t *)(base + l->sum))[b] = 0;
        memset((float *)(base + l->dl) + 8 * b, 0, 32);
        memset((int32_t *)(base + l->bias) + 8 * b, 0, 32);
    }
    for (int k = 2 * l->nb; k < l->s2; k++) ((float *)(base + l->s2off))[k] = 0;
}

static void quantize_scalar(bk_type wtype, const float *x, int columns, int batch, void *scratch) {
    bk_act_layout l = bk_layout(columns);
    int32_t mult = bias_multiplier(wtype);
    for (int v = 0; v < batch; v++) {
        uint8_t *base = (uint8_t *)scratch + (size_t)v * l.stride;
        const float *xv = x + (size_t)v * columns;
        for (int b = 0; b < l.nb; b++) {
            const float *xb = xv + 32 * b;
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(xb[j]));
            float id = amax != 0.0f ? 127.f / amax : 0.0f;
            int8_t *q = (int8_t *)(base + l.qs) + 32 * b;
            int32_t sum = 0;
            for (int j = 0; j < 32; j++) {
                float r = nearbyintf(xb[j] * id);
                // NaN input: the SIMD conversions give INT_MIN, saturated to -128; avoid C's UB.
                q[j] = r == r ? (int8_t)(int)r : (int8_t)-128;
                sum += q[j];
            }
            store_block_meta(base, &l, b, amax, sum, mult);
        }
        store_padding(base, &l, 0);
    }
}

#if BK_X86
BK_AVX2 static void quantize_avx2(bk_type wtype, const float *x, int columns, int batch, void *scratch) {
    bk_act_layout l = bk_layout(columns);
    int32_t mult = bias_multiplier(wtype);
    const __m256 signbit = _mm256_set1_ps(-0.0f);
    for (int v = 0; v < batch; v++) {
        uint8_t *base = (uint8_t *)scratch + (size_t)v * l.stride;
        const float *xv = x + (size_t)v * columns;
        for (int b = 0; b < l.nb; b++) {
            const float *xb = xv + 32 * b;
            __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
            __m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
            __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(signbit, v0), _mm256_andnot_ps(signbit, v1)),
                                     _mm256_max_ps(_mm256_andnot_ps(signbit, v2), _mm256_andnot_ps(signbit, v3)));
            __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
            m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
            float amax = _mm_cvtss_f32(m4);
            __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.f / amax : 0.0f);
            __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            __m256i s = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
            __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
            int32_t sum = _mm_cvtsi128_si32(s4);
            // Pack to int8 in element order (packs interleave 128-bit lanes; the permute undoes it).
            __m256i p01 = _mm256_packs_epi32(i0, i1), p23 = _mm256_packs_epi32(i2, i3);
            __m256i p = _mm256_packs_epi16(p01, p23);
            p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(base + l.qs + 32 * (size_t)b), p);
            store_block_meta(base, &l, b, amax, sum, mult);
        }
        store_padding(base, &l, 0);
    }
}

BK_AVX512 static void quantize_avx512(bk_type wtype, const float *x, int columns, int batch, void *scratch) {
    bk_act_layout l = bk_layout(columns);
    int32_t mult = bias_multiplier(wtype);
    for (int v = 0; v < batch; v++) {
        uint8_t *base = (uint8_t *)scratch + (size_t)v * l.stride;
        const float *xv = x + (size_t)v * columns;
        for (int b = 0; b < l.nb; b++) {
            const float *xb = xv + 32 * b;
            __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
            float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
            __m512 id = _mm512_set1_ps(amax != 0.0f ? 127.f / amax : 0.0f);
            __m512i i0 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v0, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            __m512i i1 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v1, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            int32_t sum = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
            __m128i q0 = _mm512_cvtsepi32_epi8(i0), q1 = _mm512_cvtsepi32_epi8(i1);
            uint8_t *qs = base + l.qs + 32 * (size_t)b;
            _mm_storeu_si128((__m128i *)qs, q0);
            _mm_storeu_si128((__m128i *)(qs + 16), q1);
            // Same roundings as store_block_meta, with F16C (round to nearest even, like bk_f32_to_f16).
            float d = amax / 127.f;
            float dq = _cvtsh_ss(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));
            float sv = _cvtsh_ss(_cvtss_sh(d * (float)sum, _MM_FROUND_TO_NEAREST_INT));
            ((float *)(base + l.d))[b] = dq;
            ((float *)(base + l.s))[b] = sv;
            ((int32_t *)(base + l.sum))[b] = sum;
            ((float *)(base + l.s2off))[2 * b] = 0;
            ((float *)(base + l.s2off))[2 * b + 1] = sv;
            _mm256_storeu_ps((float *)(base + l.dl) + 8 * b, _mm256_set1_ps(dq));
            _mm256_storeu_si256((__m256i *)((int32_t *)(base + l.bias) + 8 * b), _mm256_setr_epi32(mult * sum, 0, 0, 0, 0, 0, 0, 0));
            uint8_t *qo = base + l.qo + 256 * (size_t)(b / 8) + 8 * (b % 8);
            _mm_storel_epi64((__m128i *)qo, q0);
            _mm_storeh_pd((double *)(qo + 64), _mm_castsi128_pd(q0));
            _mm_storel_epi64((__m128i *)(qo + 128), q1);
            _mm_storeh_pd((double *)(qo + 192), _mm_castsi128_pd(q1));
            float *dlo = (float *)(base + l.dlo) + 2 * b;
            dlo[0] = dlo[1] = dq;
            int32_t *bo = (int32_t *)(base + l.bo) + 2 * b;
            bo[0] = mult * sum;
            bo[1] = 0;
        }
        store_padding(base, &l, l.nb);
    }
}
#endif

#if BK_ARM
/// FCVTNS rounds half to even like the scalar nearbyintf, but turns NaN into 0 where x86 gives INT_MIN (saturated
/// to -128, which the scalar twin copies): NaN lanes are set to -128 so every ISA stores the same bytes.
BK_INLINE int32x4_t round_q_neon(float32x4_t x, float32x4_t id) {
    const int32x4_t q = vcvtnq_s32_f32(vmulq_f32(x, id));
    return vbslq_s32(vceqq_f32(x, x), q, vdupq_n_s32(-128));
}

static void quantize_neon(bk_type wtype, const float *x, int columns, int batch, void *scratch) {
    bk_act_layout l = bk_layout(columns);
    int32_t mult = bias_multiplier(wtype);
    for (int v = 0; v < batch; v++) {
        uint8_t *base = (uint8_t *)scratch + (size_t)v * l.stride;
        const float *xv = x + (size_t)v * columns;
        for (int b = 0; b < l.nb; b++) {
            const float *xb = xv + 32 * b;
            float32x4_t f[8];
            float32x4_t m = vdupq_n_f32(0);
            for (int k = 0; k < 8; k++) {
                f[k] = vld1q_f32(xb + 4 * k);
                m = vmaxnmq_f32(m, vabsq_f32(f[k]));  // skips NaNs, as fmaxf does
            }
            const float amax = vmaxnmvq_f32(m);
            const float32x4_t id = vdupq_n_f32(amax != 0.0f ? 127.f / amax : 0.0f);
            int32x4_t sum = vdupq_n_s32(0);
            int8_t *qs = (int8_t *)(base + l.qs) + 32 * b;
            for (int k = 0; k < 8; k += 2) {
                const int32x4_t q0 = round_q_neon(f[k], id), q1 = round_q_neon(f[k + 1], id);
                sum = vaddq_s32(sum, vaddq_s32(q0, q1));
                vst1_s8(qs + 4 * k, vqmovn_s16(vcombine_s16(vqmovn_s32(q0), vqmovn_s32(q1))));
            }
            store_block_meta(base, &l, b, amax, vaddvq_s32(sum), mult);
        }
        store_padding(base, &l, 0);
    }
}

static void q8_roundtrip_neon(const float *x, float *y, int columns, int rows) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * columns;
        float *yr = y + (size_t)r * columns;
        for (int b = 0; b < columns / 32; b++) {
            const float *xb = xr + 32 * b;
            float32x4_t f[8];
            float32x4_t m = vdupq_n_f32(0);
            for (int k = 0; k < 8; k++) {
                f[k] = vld1q_f32(xb + 4 * k);
                m = vmaxnmq_f32(m, vabsq_f32(f[k]));
            }
            const float amax = vmaxnmvq_f32(m);
            const float32x4_t id = vdupq_n_f32(amax != 0.0f ? 127.f / amax : 0.0f);
            const float dq = bk_f16_to_f32(bk_f32_to_f16(amax / 127.f));
            for (int k = 0; k < 8; k++) vst1q_f32(yr + 32 * b + 4 * k, vmulq_n_f32(vrndnq_f32(vmulq_f32(f[k], id)), dq));
        }
    }
}
#endif

size_t bk_act_bytes(int columns, int batch) {
    if (columns <= 0 || batch <= 0) return 0;
    return bk_layout(columns).stride * (size_t)batch;
}

void bk_quantize_act(bk_isa isa, bk_type wtype, const float *x, int columns, int batch, void *scratch) {
    if (bk_kq_is_k(wtype)) { bk_kq_quantize_act(x, columns, batch, scratch); return; }
#if BK_X86
    switch (bk_effective_isa(isa)) {
    case BK_ISA_AVX512: quantize_avx512(wtype, x, columns, batch, scratch); return;
    case BK_ISA_AVX2: quantize_avx2(wtype, x, columns, batch, scratch); return;
    default: break;
    }
#elif BK_ARM
    if (bk_effective_isa(isa) != BK_ISA_SCALAR) { quantize_neon(wtype, x, columns, batch, scratch); return; }
#else
    (void)isa;
#endif
    quantize_scalar(wtype, x, columns, batch, scratch);
}

void bk_act_block(const void *scratch, int columns, int vector, int block,
                  int8_t qs[32], float *d, float *s, int32_t *sum) {
    bk_act_layout l = bk_layout(columns);
    const uint8_t *base = (const uint8_t *)scratch + (size_t)vector * l.stride;
    memcpy(qs, base + l.qs + 32 * (size_t)block, 32);
    *d = ((const float *)(base + l.d))[block];
    *s = ((const float *)(base + l.s))[block];
    *sum = ((const int32_t *)(base + l.sum))[block];
}

static void q8_roundtrip_scalar(const float *x, float *y, int columns, int rows) {
    // The same rounding as quantize_scalar, written back as floats: y = f16(d) · q.
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * columns;
        float *yr = y + (size_t)r * columns;
        for (int b = 0; b < columns / 32; b++) {
            const float *xb = xr + 32 * b;
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(xb[j]));
            float id = amax != 0.0f ? 127.f / amax : 0.0f;
            float dq = bk_f16_to_f32(bk_f32_to_f16(amax / 127.f));
            for (int j = 0; j < 32; j++) yr[32 * b + j] = dq * nearbyintf(xb[j] * id);
        }
    }
}

#if BK_X86
BK_AVX2 static void q8_roundtrip_avx2(const float *x, float *y, int columns, int rows) {
    const __m256 signbit = _mm256_set1_ps(-0.0f);
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * columns;
        float *yr = y + (size_t)r * columns;
        for (int b = 0; b < columns / 32; b++) {
            const float *xb = xr + 32 * b;
            __m256 v[4];
            __m256 m = _mm256_setzero_ps();
            for (int k = 0; k < 4; k++) {
                v[k] = _mm256_loadu_ps(xb + 8 * k);
                m = _mm256_max_ps(m, _mm256_andnot_ps(signbit, v[k]));
            }
            __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
            m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
            float amax = _mm_cvtss_f32(m4);
            __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.f / amax : 0.0f);
            __m256 dq = _mm256_set1_ps(bk_f16_to_f32(bk_f32_to_f16(amax / 127.f)));
            for (int k = 0; k < 4; k++) {
                __m256 q = _mm256_round_ps(_mm256_mul_ps(v[k], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                _mm256_storeu_ps(yr + 32 * b + 8 * k, _mm256_mul_ps(dq, q));
            }
        }
    }
}
#endif

void bk_q8_roundtrip(bk_isa isa, const float *x, float *y, int columns, int rows) {
#if BK_X86
    if (bk_effective_isa(isa) != BK_ISA_SCALAR) { q8_roundtrip_avx2(x, y, columns, rows); return; }
#elif BK_ARM
    if (bk_effective_isa(isa) != BK_ISA_SCALAR) { q8_roundtrip_neon(x, y, columns, rows); return; }
#else
    (void)isa;
#endif
    q8_roundtrip_scalar(x, y, columns, rows);
}
