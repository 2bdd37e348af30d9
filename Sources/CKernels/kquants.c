// Q5_0, Q5_1 and the K-quants (Q2_K ... Q6_K): block layouts, dequantization, activation quantization to
// q8_K, scalar dot twins and the AVX2 mat-vec. The AVX-512 VNNI kernels over sixteen-row interleaved copies are in
// kquants_x16.c.
//
// Block layouts (ggml's ggml-common.h; little-endian, f16 = IEEE binary16). A "q" is the unsigned stored integer.
//
//   block_q5_0 (32 elements, 22 bytes): f16 d | u32 qh | u8 qs[16]
//     element j: q = (qs[j % 16] >> (4 * (j / 16))) & 15 | ((qh >> j) & 1) << 4;  value = d·(q − 16)
//   block_q5_1 (32 elements, 24 bytes): f16 d | f16 m | u32 qh | u8 qs[16]      value = d·q + m
//
//   The K-quants group 256 elements in a super-block with one or two f16 super-scales and small per-sub-block
//   integer scales:
//
//   block_q2_K (84 bytes): u8 scales[16] | u8 qs[64] | f16 d | f16 dmin
//     sub-block g (16 elements): scale = scales[g] & 15, min = scales[g] >> 4
//     element e (half h = e / 128, i = e % 128, shift s = 2·(i / 32), l = i % 32): q = (qs[32h + l] >> s) & 3
//     value = d·scale·q − dmin·min
//   block_q3_K (110 bytes): u8 hmask[32] | u8 qs[64] | u8 scales[12] | f16 d
//     sixteen 6-bit scales: scale g = low 4 bits from scales[g % 8] (>> 4 for g ≥ 8) | 2 high bits from
//     scales[8 + g % 4] >> (2·(g / 4)), used as scale − 32
//     element e (h, i, s, l as Q2_K): q = ((qs[32h + l] >> s) & 3) − 4·(1 − ((hmask[l] >> (4h + i / 32)) & 1))
//     value = d·(scale − 32)·q
//   block_q4_K (144 bytes): f16 d | f16 dmin | u8 scales[12] | u8 qs[128]
//     eight 6-bit scales and mins (ggml's get_scale_min_k4): for j < 4 scale = scales[j] & 63,
//     min = scales[j + 4] & 63; for j ≥ 4 scale = (scales[j + 4] & 15) | (scales[j − 4] >> 6) << 4,
//     min = (scales[j + 4] >> 4) | (scales[j] >> 6) << 4
//     element e (chunk c = e / 64, i = e % 64): q = (qs[32c + i % 32] >> (4·(i / 32))) & 15, sub-block 2c + i / 32
//     value = d·scale·q − dmin·min
//   block_q5_K (176 bytes): f16 d | f16 dmin | u8 scales[12] | u8 qh[32] | u8 qs[128]
//     as Q4_K, plus the fifth bit: q |= ((qh[i % 32] >> (2c + i / 32)) & 1) << 4
//   block_q6_K (210 bytes): u8 ql[128] | u8 qh[64] | i8 scales[16] | f16 d
//     element e (half h = e / 128, i = e % 128, quarter k = i / 32, l = i % 32):
//     q = ((ql[64h + l + 32·(k & 1)] >> (4·(k / 2))) & 15) | ((qh[32h + l] >> (2k)) & 3) << 4
//     sub-block g = e / 16; value = d·scales[g]·(q − 32)
//
// Decode-path arithmetic follows llama.cpp's vec_dot_*_q8_K: activations quantized per 256 to q8_K (one f32
// scale, int8 quants, sums of every 16), each super-block's dot an exact integer
//   S = Σ_g scale_g·(Σ_l q·y − offset·bsum_g),   M = Σ_g min_g·bsum_g
// scaled in f32 as (d·d_y)·S − (dmin·d_y)·M. Q5_0/Q5_1 take the q8_0/q8_1 activations of Q4_0/Q4_1.
#include "internal.h"
#include <math.h>

// Dequantization is bit-equal to ggml's dequantize_row_* and the gguf Python package: every product and
// difference rounded on its own, as numpy does, never fused.
#pragma clang fp contract(off)

BK_INLINE float f16at(const uint8_t *p) { return bk_f16_to_f32(bk_load_u16(p)); }

int bk_kq_block_bytes(bk_type t) {
    switch (t) {
    case BK_TYPE_Q5_0: return 22;
    case BK_TYPE_Q5_1: return 24;
    case BK_TYPE_Q2_K: return 84;
    case BK_TYPE_Q3_K: return 110;
    case BK_TYPE_Q4_K: return 144;
    case BK_TYPE_Q5_K: return 176;
    case BK_TYPE_Q6_K: return 210;
    default: return 0;
    }
}

int bk_kq_is_k(bk_type t) { return t >= BK_TYPE_Q2_K && t <= BK_TYPE_Q6_K; }

/// Q4_K / Q5_K: the eight 6-bit scales and mins.
BK_INLINE void scale_min_k4(const uint8_t *q, uint8_t sc[8], uint8_t mn[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = q[j] & 63;
        mn[j] = q[j + 4] & 63;
    }
    for (int j = 4; j < 8; j++) {
        sc[j] = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        mn[j] = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/// Q3_K: the sixteen 6-bit scales, minus 32.
BK_INLINE void scales_q3k(const uint8_t *s, int8_t out[16]) {
    for (int g = 0; g < 16; g++) {
        int low = g < 8 ? s[g] & 0xF : s[g - 8] >> 4;
        int high = (s[8 + g % 4] >> (2 * (g / 4))) & 3;
        out[g] = (int8_t)((low | (high << 4)) - 32);
    }
}

/// The 256 unsigned q of one K-quant super-block, in element order (Q3_K: q + 4, so 0...7; Q6_K: 0...63).
BK_INLINE void unpack_k(bk_type t, const uint8_t *b, uint8_t q[256]) {
    switch (t) {
    case BK_TYPE_Q2_K:
        for (int e = 0; e < 256; e++) {
            int h = e / 128, i = e % 128;
            q[e] = (b[16 + 32 * h + i % 32] >> (2 * (i / 32))) & 3;
        }
        break;
    case BK_TYPE_Q3_K:
        for (int e = 0; e < 256; e++) {
            int h = e / 128, i = e % 128;
            int low = (b[32 + 32 * h + i % 32] >> (2 * (i / 32))) & 3;
            int high = (b[i % 32] >> (4 * h + i / 32)) & 1;
            q[e] = (uint8_t)(low + 4 * high);
        }
        break;
    case BK_TYPE_Q4_K:
        for (int e = 0; e < 256; e++) {
            int c = e / 64, i = e % 64;
            q[e] = (b[16 + 32 * c + i % 32] >> (4 * (i / 32))) & 15;
        }
        break;
    case BK_TYPE_Q5_K:
        for (int e = 0; e < 256; e++) {
            int c = e / 64, i = e % 64;
            int low = (b[48 + 32 * c + i % 32] >> (4 * (i / 32))) & 15;
            int high = (b[16 + i % 32] >> (2 * c + i / 32)) & 1;
            q[e] = (uint8_t)(low | high << 4);
        }
        break;
    default:  // Q6_K
        for (int e = 0; e < 256; e++) {
            int h = e / 128, i = e % 128, k = i / 32, l = i % 32;
            int low = (b[64 * h + l + 32 * (k & 1)] >> (4 * (k / 2))) & 15;
            int high = (b[128 + 32 * h + l] >> (2 * k)) & 3;
            q[e] = (uint8_t)(low | high << 4);
        }
        break;
    }
}

/// Per 16 elements of one super-block: the integer scale, the min (0 where the type has none) and the offset
/// the unsigned q carries (value ∝ q − offset); and the super-block's f32 scales.
BK_INLINE void k_scales(bk_type t, const uint8_t *b, int16_t sc[16], int16_t mn[16], int *offset, float *d, float *dmin) {
    uint8_t s8[8], m8[8];
    int8_t s3[16];
    *dmin = 0;
    switch (t) {
    case BK_TYPE_Q2_K:
        for (int g = 0; g < 16; g++) { sc[g] = b[g] & 15; mn[g] = b[g] >> 4; }
        *offset = 0;
        *d = f16at(b + 80);
        *dmin = f16at(b + 82);
        break;
    case BK_TYPE_Q3_K:
        scales_q3k(b + 96, s3);
        for (int g = 0; g < 16; g++) { sc[g] = s3[g]; mn[g] = 0; }
        *offset = 4;
        *d = f16at(b + 108);
        break;
    case BK_TYPE_Q4_K:
    case BK_TYPE_Q5_K:
        scale_min_k4(b + 4, s8, m8);
        for (int g = 0; g < 16; g++) { sc[g] = s8[g / 2]; mn[g] = m8[g / 2]; }
        *offset = 0;
        *d = f16at(b);
        *dmin = f16at(b + 2);
        break;
    default:  // Q6_K
        for (int g = 0; g < 16; g++) { sc[g] = (int8_t)b[192 + g]; mn[g] = 0; }
        *offset = 32;
        *d = f16at(b + 208);
        break;
    }
}

// MARK: - Dequantization (ggml's dequantize_row_*, operation for operation)

static void dequantize_k_block(bk_type t, const uint8_t *b, float *y) {
    uint8_t q[256];
    unpack_k(t, b, q);
    switch (t) {
    case BK_TYPE_Q2_K: {
        const float d = f16at(b + 80), min = f16at(b + 82);
        for (int g = 0; g < 16; g++) {
            const float dl = d * (float)(b[g] & 15), ml = min * (float)(b[g] >> 4);
            for (int l = 0; l < 16; l++) y[16 * g + l] = dl * (float)q[16 * g + l] - ml;
        }
        break;
    }
    case BK_TYPE_Q3_K: {
        int8_t s3[16];
        scales_q3k(b + 96, s3);
        const float d = f16at(b + 108);
        for (int g = 0; g < 16; g++) {
            const float dl = d * (float)s3[g];
            for (int l = 0; l < 16; l++) y[16 * g + l] = dl * (float)((int)q[16 * g + l] - 4);
        }
        break;
    }
    case BK_TYPE_Q4_K:
    case BK_TYPE_Q5_K: {
        uint8_t s8[8], m8[8];
        scale_min_k4(b + 4, s8, m8);
        const float d = f16at(b), min = f16at(b + 2);
        for (int j = 0; j < 8; j++) {
            const float d1 = d * (float)s8[j], m1 = min * (float)m8[j];
            for (int l = 0; l < 32; l++) y[32 * j + l] = d1 * (float)q[32 * j + l] - m1;
        }
        break;
    }
    default: {  // Q6_K
        const float d = f16at(b + 208);
        for (int g = 0; g < 16; g++) {
            const float dl = d * (float)(int8_t)b[192 + g];
            for (int l = 0; l < 16; l++) y[16 * g + l] = dl * (float)((int)q[16 * g + l] - 32);
        }
        break;
    }
    }
}

int bk_kq_dequantize_row(bk_type t, const void *wrow, float *dst, int count) {
    const uint8_t *row = (const uint8_t *)wrow;
    switch (t) {
    case BK_TYPE_Q5_0:
    case BK_TYPE_Q5_1: {
        const int bs = bk_kq_block_bytes(t), q1 = t == BK_TYPE_Q5_1;
        for (int b = 0; b < count / 32; b++) {
            const uint8_t *blk = row + (size_t)b * bs;
            const float d = f16at(blk), m = q1 ? f16at(blk + 2) : 0.0f;
            uint32_t qh;
            memcpy(&qh, blk + (q1 ? 4 : 2), 4);
            const uint8_t *qs = blk + (q1 ? 8 : 6);
            for (int j = 0; j < 32; j++) {
                int q = ((qs[j % 16] >> (4 * (j / 16))) & 15) | (int)((qh >> j) & 1) << 4;
                dst[32 * b + j] = q1 ? d * (float)q + m : d * (float)(q - 16);
            }
        }
        return 1;
    }
    case BK_TYPE_Q2_K:
    case BK_TYPE_Q3_K:
    case BK_TYPE_Q4_K:
    case BK_TYPE_Q5_K:
    case BK_TYPE_Q6_K: {
        const int bs = bk_kq_block_bytes(t);
        for (int b = 0; b < count / 256; b++) dequantize_k_block(t, row + (size_t)b * bs, dst + 256 * (size_t)b);
        return 1;
    }
    default: return 0;
    }
}

// MARK: - q8_K activations
//
// Per vector of `columns` (a multiple of 256; nk = columns / 256), 64-byte aligned stride:
//   qs    int8  [nk * 256]
//   d     float [nk]          1 / iscale, iscale = −127 / (the element of largest magnitude)
//   bsums int16 [nk * 16]     Σ qs over each 16 elements
// Always smaller than the q8_0 layout of the same columns, so `bk_act_bytes` covers both.

typedef struct kact_layout { int nk; size_t qs, d, bsums, stride; } kact_layout;

BK_INLINE kact_layout klayout(int columns) {
    kact_layout l;
    l.nk = columns / 256;
    l.qs = 0;
    l.d = (size_t)l.nk * 256;
    l.bsums = l.d + (size_t)l.nk * 4;
    l.stride = (l.bsums + (size_t)l.nk * 32 + 63) & ~(size_t)63;
    return l;
}

size_t bk_kq_act_stride(int columns) { return klayout(columns).stride; }

/// ggml's nearest_int: round half to even through the f32 adder (|f| ≤ 4194303).
BK_INLINE int nearest_int(float f) {
    float v = f + 12582912.f;
    int i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

/// ggml's quantize_row_q8_K_ref (which its x86 build uses), one super-block. Not vectorized: its ties to the
/// first element of largest magnitude and its f32 adder rounding are cheap to follow exactly in C.
static void quantize_q8k_block(const float *x, int8_t *qs, float *d, int16_t *bsums) {
    float max = 0, amax = 0;
    for (int j = 0; j < 256; j++) {
        float ax = fabsf(x[j]);
        if (ax > amax) { amax = ax; max = x[j]; }
    }
    if (!amax) {
        *d = 0;
        memset(qs, 0, 256);
        memset(bsums, 0, 32);
        return;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < 256; j++) {
        int v = nearest_int(iscale * x[j]);
        qs[j] = (int8_t)(v < 127 ? v : 127);
    }
    for (int g = 0; g < 16; g++) {
        int s = 0;
        for (int l = 0; l < 16; l++) s += qs[16 * g + l];
        bsums[g] = (int16_t)s;
    }
    *d = 1 / iscale;
}

void bk_kq_quantize_act(const float *x, int columns, int batch, void *scratch) {
    const kact_layout l = klayout(columns);
    for (int v = 0; v < batch; v++) {
        uint8_t *base = (uint8_t *)scratch + (size_t)v * l.stride;
        const float *xv = x + (size_t)v * columns;
        for (int b = 0; b < l.nk; b++)
            quantize_q8k_block(xv + 256 * (size_t)b, (int8_t *)(base + l.qs) + 256 * (size_t)b,
                               (float *)(base + l.d) + b, (int16_t *)(base + l.bsums) + 16 * (size_t)b);
    }
}

void bk_act_k_block(const void *scratch, int columns, int vector, int block, int8_t qs[256], float *d,
                    int16_t bsums[16]) {
    const kact_layout l = klayout(columns);
    const uint8_t *base = (const uint8_t *)scratch + (size_t)vector * l.stride;
    memcpy(qs, base + l.qs + 256 * (size_t)block, 256);
    *d = ((const float *)(base + l.d))[block];
    memcpy(bsums, base + l.bsums + 32 * (size_t)block, 32);
}

void bk_q8k_roundtrip(const float *x, float *y, int columns, int rows) {
    int8_t qs[256];
    int16_t bsums[16];
    float d;
    for (int r = 0; r < rows; r++) {
        for (int b = 0; b < columns / 256; b++) {
            const size_t o = (size_t)r * columns + 256 * (size_t)b;
            quantize_q8k_block(x + o, qs, &d, bsums);
            for (int j = 0; j < 256; j++) y[o + j] = d * (float)qs[j];
        }
    }
}

// MARK: - Scalar twins

float bk_q5_0_dot_scalar(const void *wrow, const void *act, int columns) {
    bk_act_layout l = bk_layout(columns);
    const uint8_t *a = (const uint8_t *)act;
    const int8_t *y = (const int8_t *)(a + l.qs);
    const float *dy = (const float *)(a + l.d);
    float sumf = 0;
    for (int b = 0; b < l.nb; b++) {
        const uint8_t *blk = (const uint8_t *)wrow + 22 * (size_t)b;
        uint32_t qh;
        memcpy(&qh, blk + 2, 4);
        const int8_t *yb = y + 32 * b;
        int32_t sumi = 0;
        for (int j = 0; j < 32; j++) {
            int q = ((blk[6 + j % 16] >> (4 * (j / 16))) & 15) | (int)((qh >> j) & 1) << 4;
            sumi += (q - 16) * yb[j];
        }
        sumf += (f16at(blk) * dy[b]) * (float)sumi;
    }
    return sumf;
}

float bk_q5_1_dot_scalar(const void *wrow, const void *act, int columns) {
    bk_act_layout l = bk_layout(columns);
    const uint8_t *a = (const uint8_t *)act;
    const int8_t *y = (const int8_t *)(a + l.qs);
    const float *dy = (const float *)(a + l.d);
    const float *sy = (const float *)(a + l.s);
    float sumf = 0;
    for (int b = 0; b < l.nb; b++) {
        const uint8_t *blk = (const uint8_t *)wrow + 24 * (size_t)b;
        uint32_t qh;
        memcpy(&qh, blk + 4, 4);
        const int8_t *yb = y + 32 * b;
        int32_t sumi = 0;
        for (int j = 0; j < 32; j++) {
            int q = ((blk[8 + j % 16] >> (4 * (j / 16))) & 15) | (int)((qh >> j) & 1) << 4;
            sumi += q * yb[j];
        }
        sumf += (f16at(blk) * dy[b]) * (float)sumi + f16at(blk + 2) * sy[b];
    }
    return sumf;
}

float bk_k_dot_scalar(bk_type t, const void *wrow, const void *act, int columns) {
    const kact_layout l = klayout(columns);
    const uint8_t *a = (const uint8_t *)act;
    const int bs = bk_kq_block_bytes(t);
    float sumf = 0;
    for (int b = 0; b < l.nk; b++) {
        const uint8_t *blk = (const uint8_t *)wrow + (size_t)b * bs;
        const int8_t *y = (const int8_t *)(a + l.qs) + 256 * (size_t)b;
        const int16_t *bsums = (const int16_t *)(a + l.bsums) + 16 * (size_t)b;
        const float dy = ((const float *)(a + l.d))[b];
        uint8_t q[256];
        int16_t sc[16], mn[16];
        int offset;
        float d, dmin;
        unpack_k(t, blk, q);
        k_scales(t, blk, sc, mn, &offset, &d, &dmin);
        int32_t s = 0, m = 0;
        for (int g = 0; g < 16; g++) {
            int32_t dot = 0;
            for (int e = 16 * g; e < 16 * g + 16; e++) dot += (int32_t)q[e] * y[e];
            s += sc[g] * (dot - offset * bsums[g]);
            m += mn[g] * bsums[g];
        }
        sumf += (d * dy) * (float)s;
        sumf -= (dmin * dy) * (float)m;
    }
    return sumf;
}

float bk_kq_dot_scalar(bk_type t, const void *wrow, const void *act, int columns) {
    switch (t) {
    case BK_TYPE_Q5_0: return bk_q5_0_dot_scalar(wrow, act, columns);
    case BK_TYPE_Q5_1: return bk_q5_1_dot_scalar(wrow, act, columns);
    default: return bk_k_dot_scalar(t, wrow, act, columns);
    }
}

static void kq_scalar(bk_type t, const uint8_t *w, size_t rb, int r0, int r1, int columns, const uint8_t *act,
                      int batch, float *out, size_t os) {
    const size_t stride = bk_kq_is_k(t) ? klayout(columns).stride : bk_layout(columns).stride;
    for (int r = r0; r < r1; r++)
        for (int v = 0; v < batch; v++)
            out[(size_t)v * os + r] = bk_kq_dot_scalar(t, w + (size_t)r * rb, act + (size_t)v * stride, columns);
}

#if BK_X86
#pragma clang fp contract(on)
// MARK: - AVX2
//
// Q5_0 / Q5_1: one block per step as the Q4 kernels in matmul.c, the fifth bit spread from qh to bit 4 of each
// byte (ggml's bytes_from_bits_32). K-quants: each super-block's q are unpacked once into 256 bytes for all
// vectors, then per vector maddubs (unsigned q × signed y, pairs ≤ 2·63·127 fit int16) and madd with the
// sub-block scales give exact int32 lanes, as in ggml's AVX2 vec_dot_*_q8_K.

BK_AVX2 BK_INLINE float hsum8k(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

BK_AVX2 BK_INLINE __m256i bytes_from_bits32(const uint8_t *p) {
    uint32_t x;
    memcpy(&x, p, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
}

BK_AVX2 BK_INLINE void q5_avx2(const bk_type type, const int B, const uint8_t *w, size_t rb, int r0, int r1,
                               int columns, const uint8_t *act, float *out, size_t os) {
    const bk_act_layout l = bk_layout(columns);
    const int q1 = type == BK_TYPE_Q5_1, bs = q1 ? 24 : 22;
    const __m256i ones = _mm256_set1_epi16(1), low4 = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10);
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = w + (size_t)r * rb;
        __m256 acc[8];
        float accm[8];
        for (int v = 0; v < B; v++) { acc[v] = _mm256_setzero_ps(); accm[v] = 0; }
        for (int b = 0; b < l.nb; b++) {
            const uint8_t *blk = row + (size_t)b * bs;
            __m128i q = _mm_loadu_si128((const __m128i *)(blk + (q1 ? 8 : 6)));
            __m256i wq = _mm256_and_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1), low4);
            wq = _mm256_or_si256(wq, _mm256_and_si256(bytes_from_bits32(blk + (q1 ? 4 : 2)), bit4));
            const __m256 dx = _mm256_set1_ps(f16at(blk));
            const float mx = q1 ? f16at(blk + 2) : 0.0f;
            for (int v = 0; v < B; v++) {
                const uint8_t *av = act + (size_t)v * l.stride;
                __m256i y = _mm256_loadu_si256((const __m256i *)(av + l.qs + 32 * (size_t)b));
                __m256i p32 = _mm256_madd_epi16(_mm256_maddubs_epi16(wq, y), ones);
                if (!q1) p32 = _mm256_add_epi32(p32, _mm256_setr_epi32(-16 * ((const int32_t *)(av + l.sum))[b], 0, 0, 0, 0, 0, 0, 0));
                __m256 sc = _mm256_mul_ps(dx, _mm256_set1_ps(((const float *)(av + l.d))[b]));
                acc[v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), sc, acc[v]);
                if (q1) accm[v] += mx * ((const float *)(av + l.s))[b];
            }
        }
        for (int v = 0; v < B; v++) out[(size_t)v * os + r] = hsum8k(acc[v]) + accm[v];
    }
}

/// Unpacks one K super-block's q (element order, unsigned) into `q` with SIMD loads where the layout allows.
BK_AVX2 BK_INLINE void unpack_k_avx2(const bk_type t, const uint8_t *b, uint8_t q[256]) {
    const __m256i m3 = _mm256_set1_epi8(3), m15 = _mm256_set1_epi8(15);
    switch (t) {
    case BK_TYPE_Q2_K:
    case BK_TYPE_Q3_K: {
        const uint8_t *qs = b + (t == BK_TYPE_Q2_K ? 16 : 32);
        const __m256i hm = t == BK_TYPE_Q3_K ? _mm256_loadu_si256((const __m256i *)b) : _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(qs + 32 * h));
            for (int k = 0; k < 4; k++) {
                __m256i v = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * k), m3);
                if (t == BK_TYPE_Q3_K) {
                    // bit (4h + k) of hmask → + 4
                    __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + k), _mm256_set1_epi8(1));
                    v = _mm256_add_epi8(v, _mm256_slli_epi16(hb, 2));
                }
                _mm256_storeu_si256((__m256i *)(q + 128 * h + 32 * k), v);
            }
        }
        break;
    }
    case BK_TYPE_Q4_K:
    case BK_TYPE_Q5_K: {
        const uint8_t *qs = b + (t == BK_TYPE_Q4_K ? 16 : 48);
        const __m256i qh = t == BK_TYPE_Q5_K ? _mm256_loadu_si256((const __m256i *)(b + 16)) : _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            const __m256i bits = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
            __m256i lo = _mm256_and_si256(bits, m15), hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m15);
            if (t == BK_TYPE_Q5_K) {
                const __m256i one = _mm256_set1_epi8(1);
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one), 4));
            }
            _mm256_storeu_si256((__m256i *)(q + 64 * c), lo);
            _mm256_storeu_si256((__m256i *)(q + 64 * c + 32), hi);
        }
        break;
    }
    default: {  // Q6_K, as ggml's AVX2 vec_dot_q6_K_q8_K
        for (int h = 0; h < 2; h++) {
            const __m256i b1 = _mm256_loadu_si256((const __m256i *)(b + 64 * h));
            const __m256i b2 = _mm256_loadu_si256((const __m256i *)(b + 64 * h + 32));
            const __m256i hb = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h));
            const __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4);
            const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(hb, _mm256_set1_epi8(12)), 2);
            const __m256i h2 = _mm256_and_si256(hb, _mm256_set1_epi8(48));
            const __m256i h3 = _mm256_srli_epi16(_mm256_and_si256(hb, _mm256_set1_epi8(-64)), 2);
            _mm256_storeu_si256((__m256i *)(q + 128 * h), _mm256_or_si256(_mm256_and_si256(b1, m15), h0));
            _mm256_storeu_si256((__m256i *)(q + 128 * h + 32), _mm256_or_si256(_mm256_and_si256(b2, m15), h1));
            _mm256_storeu_si256((__m256i *)(q + 128 * h + 64),
                                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b1, 4), m15), h2));
            _mm256_storeu_si256((__m256i *)(q + 128 * h + 96),
                                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b2, 4), m15), h3));
        }
        break;
    }
    }
}

BK_AVX2 BK_INLINE void k_avx2(const bk_type t, const int B, const uint8_t *w, size_t rb, int r0, int r1, int columns,
                              const uint8_t *act, float *out, size_t os) {
    const kact_layout l = klayout(columns);
    const int bs = bk_kq_block_bytes(t);
    _Alignas(32) uint8_t q[256];
    _Alignas(32) int16_t sc[16];
    int16_t mn[16];
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = w + (size_t)r * rb;
        __m256 acc[8];
        for (int v = 0; v < B; v++) acc[v] = _mm256_setzero_ps();
        for (int b = 0; b < l.nk; b++) {
            const uint8_t *blk = row + (size_t)b * bs;
            int offset;
            float d, dmin;
            unpack_k_avx2(t, blk, q);
            k_scales(t, blk, sc, mn, &offset, &d, &dmin);
            // Scales per int16 lane: lanes 0..7 of a 32-element step take sub-block 2s, lanes 8..15 sub-block 2s+1
            // (maddubs pairs of elements 2i, 2i+1 of the step land in int16 lane i).
            __m256i scv[8];
            for (int s = 0; s < 8; s++)
                scv[s] = _mm256_setr_m128i(_mm_set1_epi16(sc[2 * s]), _mm_set1_epi16(sc[2 * s + 1]));
            for (int v = 0; v < B; v++) {
                const uint8_t *av = act + (size_t)v * l.stride;
                const int8_t *y = (const int8_t *)(av + l.qs) + 256 * (size_t)b;
                const int16_t *bsums = (const int16_t *)(av + l.bsums) + 16 * (size_t)b;
                __m256i sumi = _mm256_setzero_si256();
                for (int s = 0; s < 8; s++) {
                    __m256i p16 = _mm256_maddubs_epi16(_mm256_load_si256((const __m256i *)(q + 32 * s)),
                                                       _mm256_loadu_si256((const __m256i *)(y + 32 * s)));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, scv[s]));
                }
                int32_t corr = 0, m = 0;
                for (int g = 0; g < 16; g++) {
                    corr += sc[g] * bsums[g];
                    m += mn[g] * bsums[g];
                }
                const float dy = ((const float *)(av + l.d))[b];
                // The offset and min terms are exact integers; S = Σ lanes − offset·corr stays exact in the lanes.
                sumi = _mm256_sub_epi32(sumi, _mm256_setr_epi32(offset * corr, 0, 0, 0, 0, 0, 0, 0));
                acc[v] = _mm256_fmadd_ps(_mm256_set1_ps(d * dy), _mm256_cvtepi32_ps(sumi), acc[v]);
                if (t == BK_TYPE_Q2_K || t == BK_TYPE_Q4_K || t == BK_TYPE_Q5_K)
                    acc[v] = _mm256_fmadd_ps(_mm256_set1_ps(-(dmin * dy)),
                                             _mm256_setr_ps((float)m, 0, 0, 0, 0, 0, 0, 0), acc[v]);
            }
        }
        for (int v = 0; v < B; v++) out[(size_t)v * os + r] = hsum8k(acc[v]);
    }
}

#define KQ_VARIANT(impl, T, name)                                                                            \
    BK_AVX2 static void name(int B, const uint8_t *w, size_t rb, int r0, int r1, int columns, const uint8_t *act, \
                             float *out, size_t os) {                                                         \
        switch (B) {                                                                                          \
        case 1: impl(T, 1, w, rb, r0, r1, columns, act, out, os); break;                                      \
        case 2: impl(T, 2, w, rb, r0, r1, columns, act, out, os); break;                                      \
        case 3: impl(T, 3, w, rb, r0, r1, columns, act, out, os); break;                                      \
        case 4: impl(T, 4, w, rb, r0, r1, columns, act, out, os); break;                                      \
        case 5: impl(T, 5, w, rb, r0, r1, columns, act, out, os); break;                                      \
        case 6: impl(T, 6, w, rb, r0, r1, columns, act, out, os); break;                                      \
        case 7: impl(T, 7, w, rb, r0, r1, columns, act, out, os); break;                                      \
        default: impl(T, 8, w, rb, r0, r1, columns, act, out, os); break;                                     \
        }                                                                                                     \
    }
KQ_VARIANT(q5_avx2, BK_TYPE_Q5_0, q5_0_avx2)
KQ_VARIANT(q5_avx2, BK_TYPE_Q5_1, q5_1_avx2)
KQ_VARIANT(k_avx2, BK_TYPE_Q2_K, q2_k_avx2)
KQ_VARIANT(k_avx2, BK_TYPE_Q3_K, q3_k_avx2)
KQ_VARIANT(k_avx2, BK_TYPE_Q4_K, q4_k_avx2)
KQ_VARIANT(k_avx2, BK_TYPE_Q5_K, q5_k_avx2)
KQ_VARIANT(k_avx2, BK_TYPE_Q6_K, q6_k_avx2)
#endif

// MARK: - Entry

void bk_kq_matmul(bk_isa isa, bk_type t, const void *w, size_t row_bytes, int row_begin, int row_end, int columns,
                  const void *act, int batch, float *out, size_t out_stride) {
    const size_t stride = bk_kq_is_k(t) ? klayout(columns).stride : bk_layout(columns).stride;
    const uint8_t *wb = (const uint8_t *)w;
    for (int v0 = 0; v0 < batch; v0 += 8) {
        const int B = batch - v0 < 8 ? batch - v0 : 8;
        const uint8_t *a = (const uint8_t *)act + (size_t)v0 * stride;
        float *o = out + (size_t)v0 * out_stride;
#if BK_X86
        // AVX-512 machines run these in-place kernels too; their fast path is the interleaved copy (kquants_x16.c).
        const bk_isa e = bk_effective_isa(isa);
        if (e == BK_ISA_AVX2 || e == BK_ISA_AVX512) {
            switch (t) {
            case BK_TYPE_Q5_0: q5_0_avx2(B, wb, row_bytes, row_begin, row_end, columns, a, o, out_stride); continue;
            case BK_TYPE_Q5_1: q5_1_avx2(B, wb, row_bytes, row_begin, row_end, columns, a, o, out_stride); continue;
            case BK_TYPE_Q2_K: q2_k_avx2(B, wb, row_bytes, row_begin, row_end, columns, a, o, out_stride); continue;
            case BK_TYPE_Q3_K: q3_k_avx2(B, wb, row_bytes, row_begin, row_end, columns, a, o, out_stride); continue;
            case BK_TYPE_Q4_K: q4_k_avx2(B, wb, row_bytes, row_begin, row_end, columns, a, o, out_stride); continue;
            case BK_TYPE_Q5_K: q5_k_avx2(B, wb, row_bytes, row_begin, row_end, columns, a, o, out_stride); continue;
            case BK_TYPE_Q6_K: q6_k_avx2(B, wb, row_bytes, row_begin, row_end, columns, a, o, out_stride); continue;
            default: break;
            }
        }
#else
        (void)isa;
#endif
        kq_scalar(t, wb, row_bytes, row_begin, row_end, columns, a, B, o, out_stride);
    }
}
