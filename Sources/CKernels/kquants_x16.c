// Sixteen-row interleaved copies of Q5_0, Q5_1, Q4_K and Q6_K weights and their AVX-512 VNNI mat-vec: the layout idea
// of matmul.c's x16 section (one int32 lane holds one row, so a vpdpbusd with a broadcast activation word
// advances sixteen rows at once, with no byte regrouping or lane reduction), for the types of llama.cpp's Q4_K_M
// files. The copies hold the GGUF bytes rearranged, a few bits per weight more at most:
//
//   Q5_0, per group of 16 rows and block of 32 (352 bytes):
//     4 × 64   word j lane r = qs bytes 4j..<4j+4 of row r (low nibbles elements 4j.., high nibbles 16 + 4j..)
//     64       lane r = the fifth bits, placed so one shift and a mask put them at bit 4 of each byte: bit 8k+4+j
//              = fifth bit of element 4j+k, bit 8k+j = fifth bit of element 16+4j+k (j, k in 0..<4)
//     32       d[16] (f16)
//   Q5_1, per group of 16 rows and block of 32 (384 bytes): as Q5_0, then m[16] (f16)
//   Q4_K, per group of 16 rows and super-block of 256 (2368 bytes):
//     32 × 64  word w lane r = qs bytes 4w..<4w+4 of row r (sub-block s reads words 8·(s/2).., nibble s % 2)
//     128      scale of sub-block s of row r at byte 16s + r (unsigned 6 bits)
//     128      mins in pairs: byte 32t + 2r + i = min of sub-block 2t+i of row r
//     32, 32   d[16], dmin[16] (f16)
//   Q6_K, per group of 16 rows and super-block of 256 (3360 bytes):
//     32 × 64  word w lane r = ql bytes 4w..<4w+4 of row r
//     16 × 64  word w lane r = qh bytes 4w..<4w+4 of row r
//     256      scale of sub-block g of row r at byte 16g + r (signed)
//     32       d[16] (f16)
//
// Per super-block and vector the kernel keeps the exact integers of the scalar twin, S = Σ_s scale·dot_s (vpmulld)
// and M = Σ_s min·bsum_s (vpdpwssd on the min pairs), and scales them once: acc += S·(d·d_y) − M·(dmin·d_y).
#include "internal.h"
#include <stdlib.h>

int bk_kq_x16_group_block_bytes(bk_type t) {
    switch (t) {
    case BK_TYPE_Q5_0: return 352;
    case BK_TYPE_Q5_1: return 384;
    case BK_TYPE_Q4_K: return 2368;
    case BK_TYPE_Q6_K: return 3360;
    default: return 0;
    }
}

static int elements_of(bk_type t) { return t == BK_TYPE_Q5_0 || t == BK_TYPE_Q5_1 ? 32 : 256; }

size_t bk_kq_x16_bytes(bk_type t, int rows, int columns) {
    const int gbb = bk_kq_x16_group_block_bytes(t), e = elements_of(t);
    if (!gbb || rows <= 0 || rows % 16 != 0 || columns <= 0 || columns % e != 0) return 0;
    return (size_t)(rows / 16) * (size_t)(columns / e) * (size_t)gbb;
}

BK_INLINE void scale_min_k4x(const uint8_t *q, uint8_t sc[8], uint8_t mn[8]) {
    for (int j = 0; j < 4; j++) { sc[j] = q[j] & 63; mn[j] = q[j + 4] & 63; }
    for (int j = 4; j < 8; j++) {
        sc[j] = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        mn[j] = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/// One row's block `blk` into lane `r` of group-block `p`.
static void pack_lane(bk_type t, const uint8_t *blk, uint8_t *p, int r) {
    switch (t) {
    case BK_TYPE_Q5_0:
    case BK_TYPE_Q5_1: {
        const int q1 = t == BK_TYPE_Q5_1;
        for (int j = 0; j < 4; j++) memcpy(p + 64 * j + 4 * r, blk + (q1 ? 8 : 6) + 4 * j, 4);
        uint32_t qh, w = 0;
        memcpy(&qh, blk + (q1 ? 4 : 2), 4);
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 4; k++) {
                w |= ((qh >> (4 * j + k)) & 1u) << (8 * k + 4 + j);
                w |= ((qh >> (16 + 4 * j + k)) & 1u) << (8 * k + j);
            }
        memcpy(p + 256 + 4 * r, &w, 4);
        memcpy(p + 320 + 2 * r, blk, 2);
        if (q1) memcpy(p + 352 + 2 * r, blk + 2, 2);
        break;
    }
    case BK_TYPE_Q4_K: {
        for (int w = 0; w < 32; w++) memcpy(p + 64 * w + 4 * r, blk + 16 + 4 * w, 4);
        uint8_t sc[8], mn[8];
        scale_min_k4x(blk + 4, sc, mn);
        for (int s = 0; s < 8; s++) {
            p[2048 + 16 * s + r] = sc[s];
            p[2176 + 32 * (s / 2) + 2 * r + s % 2] = mn[s];
        }
        memcpy(p + 2304 + 2 * r, blk, 2);
        memcpy(p + 2336 + 2 * r, blk + 2, 2);
        break;
    }
    default: {  // Q6_K
        for (int w = 0; w < 32; w++) memcpy(p + 64 * w + 4 * r, blk + 4 * w, 4);
        for (int w = 0; w < 16; w++) memcpy(p + 2048 + 64 * w + 4 * r, blk + 128 + 4 * w, 4);
        for (int g = 0; g < 16; g++) p[3072 + 16 * g + r] = blk[192 + g];
        memcpy(p + 3328 + 2 * r, blk + 208, 2);
        break;
    }
    }
}

/// The inverse: rebuilds lane `r`'s GGUF block from group-block `p` (the portable reading of the layout).
static void unpack_lane(bk_type t, const uint8_t *p, int r, uint8_t *blk) {
    switch (t) {
    case BK_TYPE_Q5_0:
    case BK_TYPE_Q5_1: {
        const int q1 = t == BK_TYPE_Q5_1;
        for (int j = 0; j < 4; j++) memcpy(blk + (q1 ? 8 : 6) + 4 * j, p + 64 * j + 4 * r, 4);
        uint32_t w, qh = 0;
        memcpy(&w, p + 256 + 4 * r, 4);
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 4; k++) {
                qh |= ((w >> (8 * k + 4 + j)) & 1u) << (4 * j + k);
                qh |= ((w >> (8 * k + j)) & 1u) << (16 + 4 * j + k);
            }
        memcpy(blk + (q1 ? 4 : 2), &qh, 4);
        memcpy(blk, p + 320 + 2 * r, 2);
        if (q1) memcpy(blk + 2, p + 352 + 2 * r, 2);
        break;
    }
    case BK_TYPE_Q4_K: {
        for (int w = 0; w < 32; w++) memcpy(blk + 16 + 4 * w, p + 64 * w + 4 * r, 4);
        uint8_t sc[8], mn[8];
        for (int s = 0; s < 8; s++) {
            sc[s] = p[2048 + 16 * s + r];
            mn[s] = p[2176 + 32 * (s / 2) + 2 * r + s % 2];
        }
        uint8_t *q = blk + 4;  // get_scale_min_k4's packing, inverted
        for (int j = 0; j < 4; j++) {
            q[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
            q[j + 4] = (uint8_t)((mn[j] & 63) | ((mn[j + 4] >> 4) << 6));
            q[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
        }
        memcpy(blk, p + 2304 + 2 * r, 2);
        memcpy(blk + 2, p + 2336 + 2 * r, 2);
        break;
    }
    default: {
        for (int w = 0; w < 32; w++) memcpy(blk + 4 * w, p + 64 * w + 4 * r, 4);
        for (int w = 0; w < 16; w++) memcpy(blk + 128 + 4 * w, p + 2048 + 64 * w + 4 * r, 4);
        for (int g = 0; g < 16; g++) blk[192 + g] = p[3072 + 16 * g + r];
        memcpy(blk + 208, p + 3328 + 2 * r, 2);
        break;
    }
    }
}

int bk_kq_x16_pack(bk_type t, const void *w, size_t row_bytes, int rows, int columns, void *dst) {
    if (bk_kq_x16_bytes(t, rows, columns) == 0) return -1;
    const int nb = columns / elements_of(t), bs = bk_kq_block_bytes(t), gbb = bk_kq_x16_group_block_bytes(t);
    const uint8_t *src = (const uint8_t *)w;
    for (int g = 0; g < rows / 16; g++)
        for (int b = 0; b < nb; b++) {
            uint8_t *p = (uint8_t *)dst + ((size_t)g * nb + b) * gbb;
            for (int r = 0; r < 16; r++) pack_lane(t, src + (size_t)(16 * g + r) * row_bytes + (size_t)b * bs, p, r);
        }
    return 0;
}

/// Portable reading: rebuilds each row's GGUF blocks and runs the scalar twin.
static void x16_scalar(bk_type t, const uint8_t *packed, int r0, int r1, int columns, const uint8_t *act, int batch,
                       float *out, size_t os) {
    const int nb = columns / elements_of(t), bs = bk_kq_block_bytes(t), gbb = bk_kq_x16_group_block_bytes(t);
    const size_t stride = bk_kq_is_k(t) ? bk_kq_act_stride(columns) : bk_layout(columns).stride;
    uint8_t *row = (uint8_t *)malloc((size_t)nb * (size_t)bs);
    if (!row) return;
    for (int r = r0; r < r1; r++) {
        for (int b = 0; b < nb; b++) unpack_lane(t, packed + ((size_t)(r / 16) * nb + b) * gbb, r % 16, row + (size_t)b * bs);
        for (int v = 0; v < batch; v++) out[(size_t)v * os + r] = bk_kq_dot_scalar(t, row, act + (size_t)v * stride, columns);
    }
    free(row);
}

#if BK_X86
#ifndef KX16_AHEAD
#define KX16_AHEAD 3  // group-blocks ahead to prefetch into L2 (a Q4_K group-block is 37 cache lines)
#endif

BK_AVX512 BK_INLINE void prefetch_ahead(const uint8_t *p, size_t bytes) {
    for (size_t line = 0; line < bytes; line += 64) _mm_prefetch((const char *)(p + line), _MM_HINT_T1);
}

/// Q5_0 / Q5_1: sixteen rows against B vectors, one block per step (as matmul.c's Q4_0 / Q4_1 x16 kernels, plus
/// the fifth bits).
BK_AVX512 BK_INLINE void q5_group(const bk_type T, const int B, const uint8_t *g, int nb, const uint8_t *act,
                                  const bk_act_layout *l, float *out, size_t os, int r) {
    const size_t gbb = T == BK_TYPE_Q5_1 ? 384 : 352;
    const __m512i low4 = _mm512_set1_epi8(0x0F), bit4 = _mm512_set1_epi8(0x10);
    __m512 acc[8];
    for (int v = 0; v < B; v++) acc[v] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *p = g + (size_t)b * gbb;
        prefetch_ahead(p + 24 * gbb, gbb);
        const __m512i hw = _mm512_loadu_si512((const void *)(p + 256));
        __m512i op[8];
        for (int j = 0; j < 4; j++) {
            const __m512i z = _mm512_loadu_si512((const void *)(p + 64 * j));
            // op = (nibble & 15) | (shifted fifth bits & 16): vpternlogd A | (B & C) = 0xF8.
            op[j] = _mm512_ternarylogic_epi32(_mm512_and_si512(z, low4), _mm512_srli_epi32(hw, j), bit4, 0xF8);
            op[j + 4] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(z, 4), low4),
                                                  _mm512_slli_epi32(hw, 4 - j), bit4, 0xF8);
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 320)));
        const __m512 mw = T == BK_TYPE_Q5_1 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 352)))
                                            : _mm512_setzero_ps();
        for (int v = 0; v < B; v++) {
            const uint8_t *av = act + (size_t)v * l->stride;
            const int32_t *q = (const int32_t *)(av + l->qs + 32 * (size_t)b);
            // Word j holds elements 4j.. (op j) and 16 + 4j.. (op j + 4): activation words j and 4 + j.
            // Q5_0's q stands for q − 16: start at −16·Σy (the scratch's bias for Q5_0).
            __m512i a0 = T == BK_TYPE_Q5_1 ? _mm512_setzero_si512()
                                           : _mm512_set1_epi32(((const int32_t *)(av + l->bias))[8 * b]);
            __m512i a1 = _mm512_setzero_si512();
            for (int j = 0; j < 4; j++) {
                a0 = _mm512_dpbusd_epi32(a0, op[j], _mm512_set1_epi32(q[j]));
                a1 = _mm512_dpbusd_epi32(a1, op[j + 4], _mm512_set1_epi32(q[4 + j]));
            }
            const float dl = ((const float *)(av + l->d))[b];
            acc[v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(a0, a1)), _mm512_mul_ps(dw, _mm512_set1_ps(dl)), acc[v]);
            if (T == BK_TYPE_Q5_1) acc[v] = _mm512_fmadd_ps(mw, _mm512_set1_ps(((const float *)(av + l->s))[b]), acc[v]);
        }
    }
    for (int v = 0; v < B; v++) _mm512_storeu_ps(out + (size_t)v * os + r, acc[v]);
}

/// Q4_K and Q6_K: sixteen rows against B vectors, one super-block per step.
BK_AVX512 BK_INLINE void k_group(const bk_type T, const int B, const uint8_t *g, int nb, const uint8_t *act,
                                 size_t stride, float *out, size_t os, int r) {
    const size_t gbb = (size_t)bk_kq_x16_group_block_bytes(T);
    const int nk = nb;
    const size_t dOff = (size_t)nk * 256, bsOff = dOff + (size_t)nk * 4;  // q8_K layout (kquants.c)
    const __m512i low4 = _mm512_set1_epi8(0x0F), hi2 = _mm512_set1_epi8(0x30);
    __m512 acc[8];
    for (int v = 0; v < B; v++) acc[v] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *p = g + (size_t)b * gbb;
        prefetch_ahead(p + KX16_AHEAD * gbb, gbb);
        __m512i S[8];
        for (int v = 0; v < B; v++) S[v] = _mm512_setzero_si512();
        if (T == BK_TYPE_Q4_K) {
            for (int s = 0; s < 8; s++) {
                __m512i op[8];
                for (int k = 0; k < 8; k++) {
                    const __m512i z = _mm512_loadu_si512((const void *)(p + 64 * (8 * (s / 2) + k)));
                    op[k] = _mm512_and_si512(s & 1 ? _mm512_srli_epi16(z, 4) : z, low4);
                }
                const __m512i sc = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + 2048 + 16 * s)));
                for (int v = 0; v < B; v++) {
                    const int32_t *q = (const int32_t *)(act + (size_t)v * stride) + 64 * b + 8 * s;
                    __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
                    for (int k = 0; k < 8; k += 2) {
                        a0 = _mm512_dpbusd_epi32(a0, op[k], _mm512_set1_epi32(q[k]));
                        a1 = _mm512_dpbusd_epi32(a1, op[k + 1], _mm512_set1_epi32(q[k + 1]));
                    }
                    S[v] = _mm512_add_epi32(S[v], _mm512_mullo_epi32(_mm512_add_epi32(a0, a1), sc));
                }
            }
            __m512i mins[4];
            for (int t = 0; t < 4; t++) mins[t] = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(p + 2176 + 32 * t)));
            const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 2304)));
            const __m512 mw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 2336)));
            for (int v = 0; v < B; v++) {
                const uint8_t *av = act + (size_t)v * stride;
                const int16_t *bs = (const int16_t *)(av + bsOff) + 16 * b;
                __m512i M = _mm512_setzero_si512();
                for (int t = 0; t < 4; t++) {
                    // (Σ y of sub-block 2t, of sub-block 2t+1) as an int16 pair, each ≤ 32·127.
                    const uint32_t lo = (uint16_t)(bs[4 * t] + bs[4 * t + 1]), hi = (uint16_t)(bs[4 * t + 2] + bs[4 * t + 3]);
                    M = _mm512_dpwssd_epi32(M, mins[t], _mm512_set1_epi32((int)(lo | hi << 16)));
                }
                const __m512 dy = _mm512_set1_ps(((const float *)(av + dOff))[b]);
                acc[v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S[v]), _mm512_mul_ps(dw, dy), acc[v]);
                acc[v] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(M), _mm512_mul_ps(mw, dy), acc[v]);
            }
        } else {
            for (int g16 = 0; g16 < 16; g16++) {
                // Sub-block g16: half h, quarter k, elements l0..<l0+16 of the quarter (see kquants.c's layout).
                const int h = g16 / 8, gq = g16 % 8, k = gq / 2, l0 = 16 * (gq & 1);
                __m512i op[4];
                for (int m = 0; m < 4; m++) {
                    const __m512i ql = _mm512_loadu_si512((const void *)(p + 64 * ((64 * h + 32 * (k & 1) + l0) / 4 + m)));
                    const __m512i qh = _mm512_loadu_si512((const void *)(p + 2048 + 64 * ((32 * h + l0) / 4 + m)));
                    const __m512i lo = _mm512_and_si512(k >= 2 ? _mm512_srli_epi16(ql, 4) : ql, low4);
                    const __m512i hs = k == 0 ? _mm512_slli_epi16(qh, 4) : k == 1 ? _mm512_slli_epi16(qh, 2)
                                     : k == 2 ? qh : _mm512_srli_epi16(qh, 2);
                    op[m] = _mm512_ternarylogic_epi32(lo, hs, hi2, 0xF8);
                }
                const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 3072 + 16 * g16)));
                for (int v = 0; v < B; v++) {
                    const uint8_t *av = act + (size_t)v * stride;
                    const int32_t *q = (const int32_t *)av + 64 * b + 4 * g16;
                    // q is stored + 32: start at −32·Σy of the sub-block.
                    __m512i a0 = _mm512_set1_epi32(-32 * ((const int16_t *)(av + bsOff))[16 * b + g16]), a1 = _mm512_setzero_si512();
                    a0 = _mm512_dpbusd_epi32(a0, op[0], _mm512_set1_epi32(q[0]));
                    a1 = _mm512_dpbusd_epi32(a1, op[1], _mm512_set1_epi32(q[1]));
                    a0 = _mm512_dpbusd_epi32(a0, op[2], _mm512_set1_epi32(q[2]));
                    a1 = _mm512_dpbusd_epi32(a1, op[3], _mm512_set1_epi32(q[3]));
                    S[v] = _mm512_add_epi32(S[v], _mm512_mullo_epi32(_mm512_add_epi32(a0, a1), sc));
                }
            }
            const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 3328)));
            for (int v = 0; v < B; v++) {
                const __m512 dy = _mm512_set1_ps(((const float *)(act + (size_t)v * stride + dOff))[b]);
                acc[v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(S[v]), _mm512_mul_ps(dw, dy), acc[v]);
            }
        }
    }
    for (int v = 0; v < B; v++) _mm512_storeu_ps(out + (size_t)v * os + r, acc[v]);
}

#define KX16_VARIANT(call, name)                                                                               \
    BK_AVX512 static void name(int B, const uint8_t *packed, int r0, int r1, int columns, const uint8_t *act,   \
                               float *out, size_t os) {                                                      \
        switch (B) {                                                                                         \
        case 1: call(1); break;                                                                              \
        case 2: call(2); break;                                                                              \
        case 3: call(3); break;                                                                              \
        case 4: call(4); break;                                                                              \
        case 5: call(5); break;                                                                              \
        case 6: call(6); break;                                                                              \
        case 7: call(7); break;                                                                              \
        default: call(8); break;                                                                             \
        }                                                                                                    \
    }

#define Q5_0_ROWS(NB)                                                                                        \
    do {                                                                                                     \
        const bk_act_layout l = bk_layout(columns);                                                          \
        for (int r = r0; r < r1; r += 16)                                                                    \
            q5_group(BK_TYPE_Q5_0, NB, packed + (size_t)(r / 16) * l.nb * 352, l.nb, act, &l, out, os, r);   \
    } while (0)
#define Q5_1_ROWS(NB)                                                                                        \
    do {                                                                                                     \
        const bk_act_layout l = bk_layout(columns);                                                          \
        for (int r = r0; r < r1; r += 16)                                                                    \
            q5_group(BK_TYPE_Q5_1, NB, packed + (size_t)(r / 16) * l.nb * 384, l.nb, act, &l, out, os, r);   \
    } while (0)
#define Q4_K_ROWS(NB)                                                                                        \
    do {                                                                                                     \
        const int nk = columns / 256;                                                                        \
        for (int r = r0; r < r1; r += 16)                                                                    \
            k_group(BK_TYPE_Q4_K, NB, packed + (size_t)(r / 16) * nk * 2368, nk, act, bk_kq_act_stride(columns), \
                    out, os, r);                                                                             \
    } while (0)
#define Q6_K_ROWS(NB)                                                                                        \
    do {                                                                                                     \
        const int nk = columns / 256;                                                                        \
        for (int r = r0; r < r1; r += 16)                                                                    \
            k_group(BK_TYPE_Q6_K, NB, packed + (size_t)(r / 16) * nk * 3360, nk, act, bk_kq_act_stride(columns), \
                    out, os, r);                                                                             \
    } while (0)
KX16_VARIANT(Q5_0_ROWS, x16_q5_0_avx512)
KX16_VARIANT(Q5_1_ROWS, x16_q5_1_avx512)
KX16_VARIANT(Q4_K_ROWS, x16_q4_k_avx512)
KX16_VARIANT(Q6_K_ROWS, x16_q6_k_avx512)
#endif

void bk_kq_matmul_x16(bk_isa isa, bk_type t, const void *packed, int row_begin, int row_end, int columns,
                      const void *act, int batch, float *out, size_t out_stride) {
    const size_t stride = bk_kq_is_k(t) ? bk_kq_act_stride(columns) : bk_layout(columns).stride;
    const uint8_t *p = (const uint8_t *)packed;
    for (int v0 = 0; v0 < batch; v0 += 8) {
        const int B = batch - v0 < 8 ? batch - v0 : 8;
        const uint8_t *a = (const uint8_t *)act + (size_t)v0 * stride;
        float *o = out + (size_t)v0 * out_stride;
#if BK_X86
        if (bk_effective_isa(isa) == BK_ISA_AVX512) {
            if (t == BK_TYPE_Q5_0) x16_q5_0_avx512(B, p, row_begin, row_end, columns, a, o, out_stride);
            else if (t == BK_TYPE_Q5_1) x16_q5_1_avx512(B, p, row_begin, row_end, columns, a, o, out_stride);
            else if (t == BK_TYPE_Q4_K) x16_q4_k_avx512(B, p, row_begin, row_end, columns, a, o, out_stride);
            else x16_q6_k_avx512(B, p, row_begin, row_end, columns, a, o, out_stride);
            continue;
        }
#else
        (void)isa;
#endif
        x16_scalar(t, p, row_begin, row_end, columns, a, B, o, out_stride);
    }
}
