// Mat-vec over weights read in place (GGUF blocks), for up to 8 vectors per pass.
//
// Quantized weights: the dot of a weight block with an activation block is an exact integer, scaled in
// f32 by d_w·d_x (plus m_w·s_x for Q4_1), as ggml's vec_dot kernels do. Each vector's result is computed by
// the same instruction sequence whatever the batch, so batching never changes results.
#include "internal.h"
#include <math.h>
#include <stdlib.h>

BK_INLINE int block_bytes(bk_type t) {
    switch (t) {
    case BK_TYPE_Q4_0: return 18;
    case BK_TYPE_Q4_1: return 20;
    case BK_TYPE_Q8_0: return 34;
    default: return 0;
    }
}

// MARK: - Scalar twins

float bk_q4_0_dot_scalar(const void *wrow, const void *act, int columns) {
    bk_act_layout l = bk_layout(columns);
    const uint8_t *a = (const uint8_t *)act;
    const int8_t *y = (const int8_t *)(a + l.qs);
    const float *dy = (const float *)(a + l.d);
    float sumf = 0;
    for (int b = 0; b < l.nb; b++) {
        const uint8_t *blk = (const uint8_t *)wrow + 18 * (size_t)b;
        const uint8_t *q = blk + 2;
        const int8_t *yb = y + 32 * b;
        int32_t sumi = 0;
        for (int j = 0; j < 16; j++) {
            sumi += ((int32_t)(q[j] & 0x0F) - 8) * yb[j];
            sumi += ((int32_t)(q[j] >> 4) - 8) * yb[j + 16];
        }
        sumf += (bk_f16_to_f32(bk_load_u16(blk)) * dy[b]) * (float)sumi;
    }
    return sumf;
}

float bk_q4_1_dot_scalar(const void *wrow, const void *act, int columns) {
    bk_act_layout l = bk_layout(columns);
    const uint8_t *a = (const uint8_t *)act;
    const int8_t *y = (const int8_t *)(a + l.qs);
    const float *dy = (const float *)(a + l.d);
    const float *sy = (const float *)(a + l.s);
    float sumf = 0;
    for (int b = 0; b < l.nb; b++) {
        const uint8_t *blk = (const uint8_t *)wrow + 20 * (size_t)b;
        const uint8_t *q = blk + 4;
        const int8_t *yb = y + 32 * b;
        int32_t sumi = 0;
        for (int j = 0; j < 16; j++) {
            sumi += (int32_t)(q[j] & 0x0F) * yb[j];
            sumi += (int32_t)(q[j] >> 4) * yb[j + 16];
        }
        float dx = bk_f16_to_f32(bk_load_u16(blk)), mx = bk_f16_to_f32(bk_load_u16(blk + 2));
        sumf += (dx * dy[b]) * (float)sumi + mx * sy[b];
    }
    return sumf;
}

float bk_q8_0_dot_scalar(const void *wrow, const void *act, int columns) {
    bk_act_layout l = bk_layout(columns);
    const uint8_t *a = (const uint8_t *)act;
    const int8_t *y = (const int8_t *)(a + l.qs);
    const float *dy = (const float *)(a + l.d);
    float sumf = 0;
    for (int b = 0; b < l.nb; b++) {
        const uint8_t *blk = (const uint8_t *)wrow + 34 * (size_t)b;
        const int8_t *q = (const int8_t *)(blk + 2);
        const int8_t *yb = y + 32 * b;
        int32_t sumi = 0;
        for (int j = 0; j < 32; j++) sumi += (int32_t)q[j] * yb[j];
        sumf += (bk_f16_to_f32(bk_load_u16(blk)) * dy[b]) * (float)sumi;
    }
    return sumf;
}

static void qmm_scalar(bk_type type, const uint8_t *w, size_t rb, int r0, int r1, int columns,
                       const uint8_t *act, int batch, float *out, size_t os) {
    size_t stride = bk_layout(columns).stride;
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = w + (size_t)r * rb;
        for (int v = 0; v < batch; v++) {
            const uint8_t *av = act + (size_t)v * stride;
            float s = type == BK_TYPE_Q4_0 ? bk_q4_0_dot_scalar(row, av, columns)
                    : type == BK_TYPE_Q4_1 ? bk_q4_1_dot_scalar(row, av, columns)
                                           : bk_q8_0_dot_scalar(row, av, columns);
            out[(size_t)v * os + r] = s;
        }
    }
}

BK_INLINE float load_weight_scalar(bk_type t, const uint8_t *row, int c) {
    switch (t) {
    case BK_TYPE_F16: return bk_f16_to_f32(bk_load_u16(row + 2 * (size_t)c));
    case BK_TYPE_BF16: { uint32_t u = (uint32_t)bk_load_u16(row + 2 * (size_t)c) << 16; float f; memcpy(&f, &u, 4); return f; }
    default: { float f; memcpy(&f, row + 4 * (size_t)c, 4); return f; }
    }
}

static void fmm_scalar(bk_type type, const uint8_t *w, size_t rb, int r0, int r1, int columns,
                       const float *x, int batch, float *out, size_t os) {
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = w + (size_t)r * rb;
        for (int v = 0; v < batch; v++) {
            const float *xv = x + (size_t)v * columns;
            float s = 0;
            for (int c = 0; c < columns; c++) s += load_weight_scalar(type, row, c) * xv[c];
            out[(size_t)v * os + r] = s;
        }
    }
}

// Instantiations with constant type and batch, so the per-vector accumulators live in registers.
#define BK_Q_VARIANT(isa, impl, T, name)                                                                    \
    isa static void name(int B, const uint8_t *w, size_t rb, int r0, int r1, int columns, const uint8_t *act, \
                         float *out, size_t os, float *dm) {                                                 \
        switch (B) {                                                                                         \
        case 1: impl(T, 1, w, rb, r0, r1, columns, act, out, os, dm); break;                                 \
        case 2: impl(T, 2, w, rb, r0, r1, columns, act, out, os, dm); break;                                 \
        case 3: impl(T, 3, w, rb, r0, r1, columns, act, out, os, dm); break;                                 \
        case 4: impl(T, 4, w, rb, r0, r1, columns, act, out, os, dm); break;                                 \
        case 5: impl(T, 5, w, rb, r0, r1, columns, act, out, os, dm); break;                                 \
        case 6: impl(T, 6, w, rb, r0, r1, columns, act, out, os, dm); break;                                 \
        case 7: impl(T, 7, w, rb, r0, r1, columns, act, out, os, dm); break;                                 \
        default: impl(T, 8, w, rb, r0, r1, columns, act, out, os, dm); break;                                \
        }                                                                                                    \
    }

#define BK_F_VARIANT(isa, impl, T, name)                                                                    \
    isa static void name(int B, const uint8_t *w, size_t rb, int r0, int r1, int columns, const float *x,   \
                         float *out, size_t os) {                                                           \
        switch (B) {                                                                                        \
        case 1: impl(T, 1, w, rb, r0, r1, columns, x, out, os); break;                                      \
        case 2: impl(T, 2, w, rb, r0, r1, columns, x, out, os); break;                                      \
        case 3: impl(T, 3, w, rb, r0, r1, columns, x, out, os); break;                                      \
        case 4: impl(T, 4, w, rb, r0, r1, columns, x, out, os); break;                                      \
        case 5: impl(T, 5, w, rb, r0, r1, columns, x, out, os); break;                                      \
        case 6: impl(T, 6, w, rb, r0, r1, columns, x, out, os); break;                                      \
        case 7: impl(T, 7, w, rb, r0, r1, columns, x, out, os); break;                                      \
        default: impl(T, 8, w, rb, r0, r1, columns, x, out, os); break;                                     \
        }                                                                                                   \
    }

#if BK_X86
// MARK: - AVX2 (one block per step: maddubs + madd, as ggml)

BK_INLINE uint32_t load_u32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }

BK_AVX2 BK_INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

BK_AVX2 BK_INLINE void qmm_avx2(const bk_type type, const int B, const uint8_t *w, size_t rb, int r0, int r1,
                                int columns, const uint8_t *act, float *out, size_t os, float *dm) {
    const bk_act_layout l = bk_layout(columns);
    const int bs = block_bytes(type);
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = w + (size_t)r * rb;
        __m256 acc[8];
        for (int v = 0; v < B; v++) acc[v] = _mm256_setzero_ps();
        for (int b = 0; b < l.nb; b++) {
            const uint8_t *blk = row + (size_t)b * bs;
            __m256i wq, wabs = _mm256_setzero_si256();
            __m256 dx;
            if (type == BK_TYPE_Q8_0) {
                wq = _mm256_loadu_si256((const __m256i *)(blk + 2));
                wabs = _mm256_abs_epi8(wq);
                dx = _mm256_set1_ps(_cvtsh_ss(bk_load_u16(blk)));
            } else {
                __m128i q = _mm_loadu_si128((const __m128i *)(blk + (type == BK_TYPE_Q4_1 ? 4 : 2)));
                wq = _mm256_and_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1), low4);
                if (type == BK_TYPE_Q4_1) {
                    __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)load_u32(blk)));
                    _mm_storel_pi((__m64 *)(dm + 2 * b), f);
                    dx = _mm256_broadcastss_ps(f);
                } else {
                    dx = _mm256_set1_ps(_cvtsh_ss(bk_load_u16(blk)));
                }
            }
            for (int v = 0; v < B; v++) {
                const uint8_t *av = act + (size_t)v * l.stride;
                __m256i y = _mm256_loadu_si256((const __m256i *)(av + l.qs + 32 * (size_t)b));
                __m256i p16 = type == BK_TYPE_Q8_0 ? _mm256_maddubs_epi16(wabs, _mm256_sign_epi8(y, wq))
                                                   : _mm256_maddubs_epi16(wq, y);
                __m256i p32 = _mm256_madd_epi16(p16, ones);
                if (type == BK_TYPE_Q4_0)
                    p32 = _mm256_add_epi32(p32, _mm256_loadu_si256((const __m256i *)(av + l.bias + 32 * (size_t)b)));
                __m256 sc = _mm256_mul_ps(dx, _mm256_loadu_ps((const float *)(av + l.dl) + 8 * b));
                acc[v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), sc, acc[v]);
            }
        }
        if (type == BK_TYPE_Q4_1) {
            for (int v = 0; v < B; v++) {
                const float *s2 = (const float *)(act + (size_t)v * l.stride + l.s2off);
                __m256 m = _mm256_setzero_ps();
                for (int k = 0; k < l.s2; k += 8) m = _mm256_fmadd_ps(_mm256_loadu_ps(dm + k), _mm256_loadu_ps(s2 + k), m);
                acc[v] = _mm256_add_ps(acc[v], m);
            }
        }
        for (int v = 0; v < B; v++) out[(size_t)v * os + r] = hsum8(acc[v]);
    }
}

BK_AVX2 BK_INLINE __m256 load_weights8(const bk_type t, const uint8_t *row, int c) {
    switch (t) {
    case BK_TYPE_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * (size_t)c)));
    case BK_TYPE_BF16:
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(row + 2 * (size_t)c))), 16));
    default: return _mm256_loadu_ps((const float *)(row + 4 * (size_t)c));
    }
}

BK_AVX2 BK_INLINE void fmm_avx2(const bk_type type, const int B, const uint8_t *w, size_t rb, int r0, int r1,
                                int columns, const float *x, float *out, size_t os) {
    const int main = columns & ~7;
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = w + (size_t)r * rb;
        __m256 acc[8];
        for (int v = 0; v < B; v++) acc[v] = _mm256_setzero_ps();
        for (int c = 0; c < main; c += 8) {
            __m256 wv = load_weights8(type, row, c);
            for (int v = 0; v < B; v++) acc[v] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + (size_t)v * columns + c), acc[v]);
        }
        for (int v = 0; v < B; v++) {
            float s = hsum8(acc[v]);
            for (int c = main; c < columns; c++) s += load_weight_scalar(type, row, c) * x[(size_t)v * columns + c];
            out[(size_t)v * os + r] = s;
        }
    }
}

// MARK: - AVX-512 VNNI, eight blocks at a time
//
// Eight weight blocks are regrouped into four 64-byte operands: operand k holds elements 8k..<8k+8 of each
// block, so one block's products land in 2 int32 lanes after four vpdpbusd. The f32 work (convert, scale,
// accumulate) then costs one instruction per 8 blocks per vector instead of one per 2. vpdpbusd multiplies
// unsigned (weights: Q4 nibbles as is, Q8_0 as x ^ 0x80) by signed (activations) bytes; the surplus that
// the unsigned encoding adds (8·Σy for Q4_0, 128·Σy for Q8_0) starts the accumulator at its exact negative.

/// Index tables of one call: bytes of the octet's qs and scales inside the 8 consecutive blocks.
typedef struct octet_tables {
    __m512i idx1, idx2, idxs;       // source offsets & 127 of Z1 (qs[0..8) per block), Z2 (qs[8..16)), scales
    __mmask64 hi1, hi2, his;        // which output bytes come from the third 64-byte table
} octet_tables;

BK_AVX512 static octet_tables make_tables(bk_type type) {
    const int bs = block_bytes(type), off = type == BK_TYPE_Q4_1 ? 4 : 2, sbytes = type == BK_TYPE_Q4_1 ? 4 : 2;
    uint8_t i1[64], i2[64], is[64];
    octet_tables t = {0};
    for (int i = 0; i < 8; i++) {
        for (int j = 0; j < 8; j++) {
            int s1 = i * bs + off + j, s2 = s1 + 8;
            i1[8 * i + j] = (uint8_t)(s1 & 127);
            i2[8 * i + j] = (uint8_t)(s2 & 127);
            if (s1 >= 128) t.hi1 |= 1ull << (8 * i + j);
            if (s2 >= 128) t.hi2 |= 1ull << (8 * i + j);
        }
    }
    for (int k = 0; k < 64; k++) {
        int src = k < 8 * sbytes ? (k / sbytes) * bs + k % sbytes : 0;
        is[k] = (uint8_t)(src & 127);
        if (src >= 128) t.his |= 1ull << k;
    }
    t.idx1 = _mm512_loadu_si512(i1);
    t.idx2 = _mm512_loadu_si512(i2);
    t.idxs = _mm512_loadu_si512(is);
    return t;
}

/// Masked load of `n` (≤ 64) bytes: never touches memory past them.
BK_AVX512 BK_INLINE __m512i load_bytes(const uint8_t *p, int n) {
    __mmask64 m = n >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << n) - 1);
    return _mm512_maskz_loadu_epi8(m, p);
}

/// Loads octet `ob` (first `valid` blocks real, the rest zero) as four unsigned operands and the per-lane
/// weight scales. Q4_1 also stores the eight minimums m at dm for the m·s term.
BK_AVX512 BK_INLINE void load_octet(const bk_type type, const uint8_t *ob, const int valid, const octet_tables *t,
                                    __m512i op[4], __m512 *dxl, float *dm) {
    const __m512i zero = _mm512_setzero_si512();
    if (type == BK_TYPE_Q8_0) {
        __m256i y[8];
        for (int i = 0; i < 8; i++)
            y[i] = i < valid ? _mm256_loadu_si256((const __m256i *)(ob + 34 * i + 2)) : _mm256_setzero_si256();
        __m512i z01 = _mm512_inserti64x4(_mm512_castsi256_si512(y[0]), y[1], 1);
        __m512i z23 = _mm512_inserti64x4(_mm512_castsi256_si512(y[2]), y[3], 1);
        __m512i z45 = _mm512_inserti64x4(_mm512_castsi256_si512(y[4]), y[5], 1);
        __m512i z67 = _mm512_inserti64x4(_mm512_castsi256_si512(y[6]), y[7], 1);
        // The eight f16 scales (offsets 34i) in one masked gather of the dwords there (lanes past `valid`
        // stay zero and read nothing), narrowed to their low halves.
        const __m256i dofs = _mm256_setr_epi32(0, 34, 68, 102, 136, 170, 204, 238);
        const __m256i dw = _mm256_mmask_i32gather_epi32(_mm256_setzero_si256(), (__mmask8)((1u << valid) - 1), dofs,
                                                         (const void *)ob, 1);
        const __m512i flip = _mm512_set1_epi8((char)0x80);
        for (int k = 0; k < 4; k++) {
            const __m512i idx = _mm512_setr_epi64(k, 4 + k, 8 + k, 12 + k, k, 4 + k, 8 + k, 12 + k);
            __m512i lo = _mm512_permutex2var_epi64(z01, idx, z23);
            __m512i hi = _mm512_permutex2var_epi64(z45, idx, z67);
            op[k] = _mm512_xor_si512(_mm512_inserti64x4(lo, _mm512_castsi512_si256(hi), 1), flip);
        }
        __m256 d = _mm256_cvtph_ps(_mm256_cvtepi32_epi16(dw));
        *dxl = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7),
                                     _mm512_castps256_ps512(d));
        return;
    }
    const int bs = block_bytes(type), n = valid * bs;
    __m512i t0, t1, t2;
    if (valid == 8) {
        t0 = _mm512_loadu_si512((const void *)ob);
        t1 = _mm512_loadu_si512((const void *)(ob + 64));
        t2 = type == BK_TYPE_Q4_1 ? _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(ob + 128)))
                                  : _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(ob + 128)));
    } else {
        t0 = load_bytes(ob, n);
        t1 = n > 64 ? load_bytes(ob + 64, n - 64) : zero;
        t2 = n > 128 ? load_bytes(ob + 128, n - 128) : zero;
    }
    __m512i z1 = _mm512_mask_permutexvar_epi8(_mm512_permutex2var_epi8(t0, t->idx1, t1), t->hi1, t->idx1, t2);
    __m512i z2 = _mm512_mask_permutexvar_epi8(_mm512_permutex2var_epi8(t0, t->idx2, t1), t->hi2, t->idx2, t2);
    __m512i sc = _mm512_mask_permutexvar_epi8(_mm512_permutex2var_epi8(t0, t->idxs, t1), t->his, t->idxs, t2);
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    op[0] = _mm512_and_si512(z1, low4);
    op[1] = _mm512_and_si512(z2, low4);
    op[2] = _mm512_and_si512(_mm512_srli_epi16(z1, 4), low4);
    op[3] = _mm512_and_si512(_mm512_srli_epi16(z2, 4), low4);
    if (type == BK_TYPE_Q4_1) {
        __m512 f = _mm512_cvtph_ps(_mm512_castsi512_si256(sc));  // [d0, m0, ..., d7, m7]
        __m512 m = _mm512_permutexvar_ps(_mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 1, 3, 5, 7, 9, 11, 13, 15), f);
        _mm256_storeu_ps(dm, _mm512_castps512_ps256(m));
        *dxl = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 2, 2, 4, 4, 6, 6, 8, 8, 10, 10, 12, 12, 14, 14), f);
    } else {
        __m256 d = _mm256_cvtph_ps(_mm512_castsi512_si128(sc));
        *dxl = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7),
                                     _mm512_castps256_ps512(d));
    }
}

/// One vector's int32 lanes for one octet: four vpdpbusd, in two chains when few chains run side by side
/// (halves the dependency latency; integer sums are exact, so the order never changes a result).
BK_AVX512 BK_INLINE __m512i octet_dot(const __m512i op[4], __m512i init, const uint8_t *q, const int split) {
    if (!split) {  // enough independent (row, vector) chains to hide the latency: one chain, fewer µops
        __m512i a = _mm512_dpbusd_epi32(init, op[0], _mm512_loadu_si512((const void *)q));
        a = _mm512_dpbusd_epi32(a, op[1], _mm512_loadu_si512((const void *)(q + 64)));
        a = _mm512_dpbusd_epi32(a, op[2], _mm512_loadu_si512((const void *)(q + 128)));
        return _mm512_dpbusd_epi32(a, op[3], _mm512_loadu_si512((const void *)(q + 192)));
    }
    __m512i a = _mm512_dpbusd_epi32(init, op[0], _mm512_loadu_si512((const void *)q));
    __m512i b = _mm512_dpbusd_epi32(_mm512_setzero_si512(), op[1], _mm512_loadu_si512((const void *)(q + 64)));
    a = _mm512_dpbusd_epi32(a, op[2], _mm512_loadu_si512((const void *)(q + 128)));
    b = _mm512_dpbusd_epi32(b, op[3], _mm512_loadu_si512((const void *)(q + 192)));
    return _mm512_add_epi32(a, b);
}

/// Octet `o` of R (1 or 2) consecutive rows (`rb` bytes apart) against all B vectors: the rows share each
/// vector's activation, bias and scale loads, which otherwise bound the batched kernel.
BK_AVX512 BK_INLINE void octet_step(const bk_type type, const int R, const int B, const uint8_t *ob, size_t rb,
                                    const int valid, const octet_tables *t, const uint8_t *act,
                                    const bk_act_layout *l, int o, float *dm, size_t dms, __m512 acc[2][8]) {
    __m512i op[2][4];
    __m512 dxl[2];
    for (int k = 0; k < R; k++) {
        // Two interleaved row streams defeat the hardware prefetcher on long rows: fetch the same octet of
        // the rows two groups ahead (past the matrix end a prefetch is a harmless no-op).
        for (int line = 0; R == 2 && line < 8 * block_bytes(type); line += 64)
            _mm_prefetch((const char *)(ob + (size_t)(k + 2 * R) * rb + line), _MM_HINT_T0);
        load_octet(type, ob + k * rb, valid, t, op[k], &dxl[k], dm + k * dms + 8 * o);
    }
    for (int v = 0; v < B; v++) {
        const uint8_t *av = act + (size_t)v * l->stride;
        const uint8_t *q = av + l->qo + 256 * (size_t)o;
        const __m512i init = type == BK_TYPE_Q4_1 ? _mm512_setzero_si512()
                                                  : _mm512_loadu_si512((const void *)(av + l->bo + 64 * (size_t)o));
        const __m512 dl = _mm512_loadu_ps((const float *)(av + l->dlo) + 16 * o);
        for (int k = 0; k < R; k++) {
            __m512i ai = octet_dot(op[k], init, q, R * B < 4);
            acc[k][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ai), _mm512_mul_ps(dxl[k], dl), acc[k][v]);
        }
    }
}

/// Loads a tail of one or two blocks in natural element order (8 int32 lanes per block), for rows whose
/// block count is not a multiple of 8 (576 columns = 2 octets + 2 blocks). `b` may equal `a` for a single
/// last block: the partner's activations are zero padding with scale 0.
BK_AVX512 BK_INLINE void load_pair(const bk_type type, const uint8_t *a, const uint8_t *b, int b0, float *dm,
                                   __m512i *wqOut, __m512 *dxlOut) {
    __m512i wq;
    __m512 dxl;
    if (type == BK_TYPE_Q8_0) {
        wq = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(a + 2))),
                                _mm256_loadu_si256((const __m256i *)(b + 2)), 1);
        wq = _mm512_xor_si512(wq, _mm512_set1_epi8((char)0x80));
    } else {
        const int off = type == BK_TYPE_Q4_1 ? 4 : 2;
        __m256i t = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(a + off))),
                                            _mm_loadu_si128((const __m128i *)(b + off)), 1);
        __m512i z = _mm512_castsi256_si512(t);
        z = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(1, 1, 0, 0));      // [qa, qa, qb, qb]
        z = _mm512_mask_srli_epi16(z, (__mmask32)0xFF00FF00u, z, 4);  // high nibbles in 128-bit lanes 1 and 3
        wq = _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
    }
    if (type == BK_TYPE_Q4_1) {
        __m128 f = _mm_cvtph_ps(_mm_insert_epi32(_mm_cvtsi32_si128((int)load_u32(a)), (int)load_u32(b), 1));
        dm[b0] = _mm_cvtss_f32(_mm_movehdup_ps(f));  // f = [da, ma, db, mb]
        dm[b0 + 1] = _mm_cvtss_f32(_mm_shuffle_ps(f, f, 3));
        dxl = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2),
                                    _mm512_castps128_ps512(f));
    } else {
        __m128i h = _mm_cvtsi32_si128((int)((uint32_t)bk_load_u16(a) | ((uint32_t)bk_load_u16(b) << 16)));
        dxl = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                                    _mm512_castps128_ps512(_mm_cvtph_ps(h)));
    }
    *wqOut = wq;
    *dxlOut = dxl;
}

/// Blocks b0 and b0 + 1 (or b0 alone when it is the last) of R rows against all B vectors.
BK_AVX512 BK_INLINE void pair_step(const bk_type type, const int R, const int B, const uint8_t *row, size_t rb,
                                   int bs, int b0, const uint8_t *act, const bk_act_layout *l, float *dm,
                                   size_t dms, __m512 acc[2][8]) {
    __m512i wq[2];
    __m512 dxl[2];
    for (int k = 0; k < R; k++) {
        const uint8_t *a = row + k * rb + (size_t)b0 * bs;
        load_pair(type, a, b0 + 1 < l->nb ? a + bs : a, b0, dm + k * dms, &wq[k], &dxl[k]);
    }
    for (int v = 0; v < B; v++) {
        const uint8_t *av = act + (size_t)v * l->stride;
        const __m512i init = type == BK_TYPE_Q4_1 ? _mm512_setzero_si512()
                                                  : _mm512_loadu_si512((const void *)(av + l->bias + 32 * (size_t)b0));
        const __m512i y = _mm512_loadu_si512((const void *)(av + l->qs + 32 * (size_t)b0));
        const __m512 dl = _mm512_loadu_ps((const float *)(av + l->dl) + 8 * b0);
        for (int k = 0; k < R; k++) {
            __m512i ai = _mm512_dpbusd_epi32(init, wq[k], y);
            acc[k][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ai), _mm512_mul_ps(dxl[k], dl), acc[k][v]);
        }
    }
}

/// Sum of the 16 lanes in a fixed order: halves (i, i+8), then (i, i+4), then (i, i+2), then (0, 1).
/// `store_sums` does the same additions for eight accumulators at once, so results never depend on batch.
BK_AVX512 BK_INLINE float reduce16(__m512 acc) {
    __m256 y = _mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1));
    __m128 z = _mm_add_ps(_mm256_castps256_ps128(y), _mm256_extractf128_ps(y, 1));
    __m128 w = _mm_add_ps(z, _mm_movehl_ps(z, z));
    return _mm_cvtss_f32(_mm_add_ss(w, _mm_movehdup_ps(w)));
}

BK_AVX512 BK_INLINE void store_sums(const int B, const __m512 acc[8], float *out, size_t os, int r) {
    if (B < 8) {
        for (int v = 0; v < B; v++) out[(size_t)v * os + r] = reduce16(acc[v]);
        return;
    }
    __m256 y[8], p[4];
    for (int v = 0; v < 8; v++) y[v] = _mm256_add_ps(_mm512_castps512_ps256(acc[v]), _mm512_extractf32x8_ps(acc[v], 1));
    for (int k = 0; k < 4; k++)  // [z(2k) | z(2k+1)], z = low + high 128 bits of y
        p[k] = _mm256_add_ps(_mm256_permute2f128_ps(y[2 * k], y[2 * k + 1], 0x20),
                             _mm256_permute2f128_ps(y[2 * k], y[2 * k + 1], 0x31));
    // [w0 w0' w2 w2' | w1 w1' w3 w3'] with w = (z0 + z2, z1 + z3)
    __m256 r0 = _mm256_add_ps(_mm256_shuffle_ps(p[0], p[1], _MM_SHUFFLE(1, 0, 1, 0)),
                              _mm256_shuffle_ps(p[0], p[1], _MM_SHUFFLE(3, 2, 3, 2)));
    __m256 r1 = _mm256_add_ps(_mm256_shuffle_ps(p[2], p[3], _MM_SHUFFLE(1, 0, 1, 0)),
                              _mm256_shuffle_ps(p[2], p[3], _MM_SHUFFLE(3, 2, 3, 2)));
    // [s0 s2 s4 s6 | s1 s3 s5 s7]
    __m256 f = _mm256_add_ps(_mm256_shuffle_ps(r0, r1, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm256_shuffle_ps(r0, r1, _MM_SHUFFLE(3, 1, 3, 1)));
    float t[8];
    _mm256_storeu_ps(t, f);
    static const int order[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    for (int k = 0; k < 8; k++) out[(size_t)order[k] * os + r] = t[k];
}

/// R (1 or 2) consecutive rows starting at `r`. Each (row, vector) result goes through the same
/// instructions whatever R and B, so neither the batch nor the row split changes any result.
BK_AVX512 BK_INLINE void qmm_rows_avx512(const bk_type type, const int R, const int B, const uint8_t *row,
                                         size_t rb, int r, const bk_act_layout *l, const octet_tables *t,
                                         const uint8_t *act, float *out, size_t os, float *dm, size_t dms) {
    const int bs = block_bytes(type);
    const int full = l->nb / 8, tail = l->nb % 8;
    __m512 acc[2][8];
    for (int k = 0; k < R; k++)
        for (int v = 0; v < B; v++) acc[k][v] = _mm512_setzero_ps();
    for (int o = 0; o < full; o++)
        octet_step(type, R, B, row + (size_t)(8 * o) * bs, rb, 8, t, act, l, o, dm, dms, acc);
    if (tail > 4) {
        octet_step(type, R, B, row + (size_t)(8 * full) * bs, rb, tail, t, act, l, full, dm, dms, acc);
    } else {
        for (int b0 = 8 * full; b0 < l->nb; b0 += 2) pair_step(type, R, B, row, rb, bs, b0, act, l, dm, dms, acc);
    }
    if (type == BK_TYPE_Q4_1) {
        // Σ m_b·s_b over the row's blocks (dm + k·dms holds row k's m per block).
        for (int v = 0; v < B; v++) {
            const float *sv = (const float *)(act + (size_t)v * l->stride + l->s);
            __m512 m[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
            for (int c = 0; c < l->nb; c += 16) {
                __mmask16 mk = bk_tail16((size_t)l->nb, (size_t)c);
                const __m512 s = _mm512_maskz_loadu_ps(mk, sv + c);
                for (int k = 0; k < R; k++) m[k] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, dm + k * dms + c), s, m[k]);
            }
            for (int k = 0; k < R; k++) acc[k][v] = _mm512_add_ps(acc[k][v], m[k]);
        }
    }
    for (int k = 0; k < R; k++) store_sums(B, acc[k], out, os, r + k);
}

BK_AVX512 BK_INLINE void qmm_avx512(const bk_type type, const int B, const uint8_t *w, size_t rb, int r0, int r1,
                                    int columns, const uint8_t *act, float *out, size_t os, float *dm) {
    const bk_act_layout l = bk_layout(columns);
    const size_t dms = (size_t)l.s2 + 16;  // dm holds two rows' minimums (see bk_matmul)
    const octet_tables t = make_tables(type);
    int r = r0;
    // Pairs of rows only where the kernel is compute-bound (large batches): at small batches it waits on
    // DRAM, and two interleaved row streams measured up to 2× slower than one on 1536-column rows.
    for (; B >= 6 && r + 1 < r1; r += 2) qmm_rows_avx512(type, 2, B, w + (size_t)r * rb, rb, r, &l, &t, act, out, os, dm, dms);
    for (; r < r1; r++) qmm_rows_avx512(type, 1, B, w + (size_t)r * rb, rb, r, &l, &t, act, out, os, dm, dms);
}

BK_AVX512 BK_INLINE __m512 load_weights16(const bk_type t, const uint8_t *row, int c, __mmask16 m) {
    switch (t) {
    case BK_TYPE_F16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 2 * (size_t)c));
    case BK_TYPE_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row + 2 * (size_t)c)), 16));
    default: return _mm512_maskz_loadu_ps(m, row + 4 * (size_t)c);
    }
}

BK_AVX512 BK_INLINE void fmm_avx512(const bk_type type, const int B, const uint8_t *w, size_t rb, int r0, int r1,
                                    int columns, const float *x, float *out, size_t os) {
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = w + (size_t)r * rb;
        __m512 acc[8];
        for (int v = 0; v < B; v++) acc[v] = _mm512_setzero_ps();
        for (int c = 0; c < columns; c += 16) {
            __mmask16 m = bk_tail16((size_t)columns, (size_t)c);
            __m512 wv = load_weights16(type, row, c, m);
            for (int v = 0; v < B; v++)
                acc[v] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x + (size_t)v * columns + c), acc[v]);
        }
        store_sums(B, acc, out, os, r);
    }
}

BK_Q_VARIANT(BK_AVX512, qmm_avx512, BK_TYPE_Q4_0, q4_0_avx512)
BK_Q_VARIANT(BK_AVX512, qmm_avx512, BK_TYPE_Q4_1, q4_1_avx512)
BK_Q_VARIANT(BK_AVX512, qmm_avx512, BK_TYPE_Q8_0, q8_0_avx512)
BK_Q_VARIANT(BK_AVX2, qmm_avx2, BK_TYPE_Q4_0, q4_0_avx2)
BK_Q_VARIANT(BK_AVX2, qmm_avx2, BK_TYPE_Q4_1, q4_1_avx2)
BK_Q_VARIANT(BK_AVX2, qmm_avx2, BK_TYPE_Q8_0, q8_0_avx2)

BK_F_VARIANT(BK_AVX512, fmm_avx512, BK_TYPE_F32, f32_avx512)
BK_F_VARIANT(BK_AVX512, fmm_avx512, BK_TYPE_F16, f16_avx512)
BK_F_VARIANT(BK_AVX512, fmm_avx512, BK_TYPE_BF16, bf16_avx512)
BK_F_VARIANT(BK_AVX2, fmm_avx2, BK_TYPE_F32, f32_avx2)
BK_F_VARIANT(BK_AVX2, fmm_avx2, BK_TYPE_F16, f16_avx2)
BK_F_VARIANT(BK_AVX2, fmm_avx2, BK_TYPE_BF16, bf16_avx2)
#endif

#if BK_ARM
// MARK: - NEON, one block per step (as ggml's ARM vec_dot kernels)
//
// Weights become signed bytes (Q4_0: nibble - 8, Q4_1: the nibble, Q8_0: as stored), so a block's dot with the
// activation is one exact int32 with no correction term. With the dot-product extension two `sdot` per 32 elements
// give it; without, `smull`/`smlal2` multiply into int16 (a product ≤ 128·127, a pair of them ≤ 32512) and
// `saddlp`/`sadalp` widen the pairs. Each vector accumulates its blocks in its own registers, so the result never
// depends on the batch.

/// Block `blk` of `T` as 32 signed weights (w0: elements 0–15, w1: 16–31), its scale and (Q4_1) minimum.
BK_INLINE void neon_weights(const bk_type T, const uint8_t *blk, int8x16_t *w0, int8x16_t *w1, float *dw, float *mw) {
    *dw = bk_load_f16(blk);
    *mw = 0;
    if (T == BK_TYPE_Q8_0) {
        *w0 = vld1q_s8((const int8_t *)(blk + 2));
        *w1 = vld1q_s8((const int8_t *)(blk + 18));
        return;
    }
    const uint8x16_t q = vld1q_u8(blk + (T == BK_TYPE_Q4_1 ? 4 : 2));
    int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0F))), hi = vreinterpretq_s8_u8(vshrq_n_u8(q, 4));
    if (T == BK_TYPE_Q4_0) {
        lo = vsubq_s8(lo, vdupq_n_s8(8));
        hi = vsubq_s8(hi, vdupq_n_s8(8));
    } else {
        *mw = bk_load_f16(blk + 2);
    }
    *w0 = lo;
    *w1 = hi;
}

BK_INLINE int32x4_t dot32_neon(int8x16_t w0, int8x16_t w1, const int8_t *y) {
    const int8x16_t y0 = vld1q_s8(y), y1 = vld1q_s8(y + 16);
    const int16x8_t p0 = vmlal_high_s8(vmull_s8(vget_low_s8(w0), vget_low_s8(y0)), w0, y0);
    const int16x8_t p1 = vmlal_high_s8(vmull_s8(vget_low_s8(w1), vget_low_s8(y1)), w1, y1);
    return vpadalq_s16(vpaddlq_s16(p0), p1);
}

BK_DOTPROD BK_INLINE int32x4_t dot32_sdot(int8x16_t w0, int8x16_t w1, const int8_t *y) {
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), w0, vld1q_s8(y)), w1, vld1q_s8(y + 16));
}

/// The row kernel for one block-dot instruction sequence (`DOT`), compiled with the ISA attribute `ATTR`: GCC and
/// Clang refuse to inline an `sdot` helper into code built without the extension, so the sdot and plain variants
/// are two instantiations of the same text. `dm` is unused (the m·s term is summed in a float per vector).
#define BK_NEON_QMM(ATTR, NAME, DOT)                                                                              \
    ATTR BK_INLINE void NAME(const bk_type T, const int B, const uint8_t *w, size_t rb, int r0, int r1, int columns, \
                             const uint8_t *act, float *out, size_t os, float *dm) {                               \
        (void)dm;                                                                                                  \
        const bk_act_layout l = bk_layout(columns);                                                                \
        const int bs = block_bytes(T);                                                                             \
        for (int r = r0; r < r1; r++) {                                                                            \
            const uint8_t *row = w + (size_t)r * rb;                                                               \
            float32x4_t acc[8];                                                                                    \
            float ms[8];                                                                                           \
            for (int v = 0; v < B; v++) {                                                                          \
                acc[v] = vdupq_n_f32(0);                                                                           \
                ms[v] = 0;                                                                                         \
            }                                                                                                      \
            for (int b = 0; b < l.nb; b++) {                                                                       \
                int8x16_t w0, w1;                                                                                  \
                float dw, mw;                                                                                      \
                neon_weights(T, row + (size_t)b * bs, &w0, &w1, &dw, &mw);                                         \
                for (int v = 0; v < B; v++) {                                                                      \
                    const uint8_t *av = act + (size_t)v * l.stride;                                                \
                    const int32x4_t p = DOT(w0, w1, (const int8_t *)(av + l.qs) + 32 * b);                        \
                    acc[v] = vfmaq_n_f32(acc[v], vcvtq_f32_s32(p), dw * ((const float *)(av + l.d))[b]);           \
                    if (T == BK_TYPE_Q4_1) ms[v] += mw * ((const float *)(av + l.s))[b];                           \
                }                                                                                                  \
            }                                                                                                      \
            for (int v = 0; v < B; v++) out[(size_t)v * os + r] = vaddvq_f32(acc[v]) + ms[v];                      \
        }                                                                                                          \
    }

BK_NEON_QMM(BK_NEON, qmm_neon, dot32_neon)
BK_NEON_QMM(BK_DOTPROD, qmm_sdot, dot32_sdot)

BK_INLINE float32x4_t load_weights4(const bk_type t, const uint8_t *row, int c) {
    switch (t) {
    case BK_TYPE_F16: return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(row + 2 * (size_t)c))));
    case BK_TYPE_BF16: return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16((const uint16_t *)(row + 2 * (size_t)c)), 16));
    default: return vld1q_f32((const float *)(row + 4 * (size_t)c));
    }
}

BK_INLINE void fmm_neon(const bk_type type, const int B, const uint8_t *w, size_t rb, int r0, int r1, int columns,
                        const float *x, float *out, size_t os) {
    const int main = columns & ~3;
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = w + (size_t)r * rb;
        float32x4_t acc[8];
        for (int v = 0; v < B; v++) acc[v] = vdupq_n_f32(0);
        for (int c = 0; c < main; c += 4) {
            const float32x4_t wv = load_weights4(type, row, c);
            for (int v = 0; v < B; v++) acc[v] = vfmaq_f32(acc[v], wv, vld1q_f32(x + (size_t)v * columns + c));
        }
        for (int v = 0; v < B; v++) {
            float s = vaddvq_f32(acc[v]);
            for (int c = main; c < columns; c++) s += load_weight_scalar(type, row, c) * x[(size_t)v * columns + c];
            out[(size_t)v * os + r] = s;
        }
    }
}

BK_Q_VARIANT(BK_NEON, qmm_neon, BK_TYPE_Q4_0, q4_0_neon)
BK_Q_VARIANT(BK_NEON, qmm_neon, BK_TYPE_Q4_1, q4_1_neon)
BK_Q_VARIANT(BK_NEON, qmm_neon, BK_TYPE_Q8_0, q8_0_neon)
BK_Q_VARIANT(BK_DOTPROD, qmm_sdot, BK_TYPE_Q4_0, q4_0_sdot)
BK_Q_VARIANT(BK_DOTPROD, qmm_sdot, BK_TYPE_Q4_1, q4_1_sdot)
BK_Q_VARIANT(BK_DOTPROD, qmm_sdot, BK_TYPE_Q8_0, q8_0_sdot)
BK_F_VARIANT(BK_NEON, fmm_neon, BK_TYPE_F32, f32_neon)
BK_F_VARIANT(BK_NEON, fmm_neon, BK_TYPE_F16, f16_neon)
BK_F_VARIANT(BK_NEON, fmm_neon, BK_TYPE_BF16, bf16_neon)
#endif

// MARK: - Entry points
//
// Each pass of up to 8 vectors goes to the kernel of (ISA, type): qmm_simd for the quantized types, fmm_simd for the
// float ones. Where an ISA has no kernel for a type they return 0 and the scalar twin runs. A new weight type adds a
// case to the switch of every ISA it has a kernel for (and its block layout to block_bytes and the scalar twins).

/// One pass of the in-place quantized kernel of ISA `e` (already effective) for `wtype`; 0 if there is none.
static int qmm_simd(bk_isa e, bk_type wtype, int B, const uint8_t *w, size_t rb, int r0, int r1, int columns,
                    const uint8_t *a, float *o, size_t os, float *dm) {
    switch (e) {
#if BK_X86
    case BK_ISA_AVX512:
        switch (wtype) {
        case BK_TYPE_Q4_0: q4_0_avx512(B, w, rb, r0, r1, columns, a, o, os, dm); return 1;
        case BK_TYPE_Q4_1: q4_1_avx512(B, w, rb, r0, r1, columns, a, o, os, dm); return 1;
        case BK_TYPE_Q8_0: q8_0_avx512(B, w, rb, r0, r1, columns, a, o, os, dm); return 1;
        default: return 0;
        }
    case BK_ISA_AVX2:
        switch (wtype) {
        case BK_TYPE_Q4_0: q4_0_avx2(B, w, rb, r0, r1, columns, a, o, os, dm); return 1;
        case BK_TYPE_Q4_1: q4_1_avx2(B, w, rb, r0, r1, columns, a, o, os, dm); return 1;
        case BK_TYPE_Q8_0: q8_0_avx2(B, w, rb, r0, r1, columns, a, o, os, dm); return 1;
        default: return 0;
        }
#elif BK_ARM
    case BK_ISA_NEON_DOTPROD:
        switch (wtype) {
        case BK_TYPE_Q4_0: q4_0_sdot(B, w, rb, r0, r1, columns, a, o, os, dm); return 1;
        case BK_TYPE_Q4_1: q4_1_sdot(B, w, rb, r0, r1, columns, a, o, os, dm); return 1;
        case BK_TYPE_Q8_0: q8_0_sdot(B, w, rb, r0, r1, columns, a, o, os, dm); return 1;
        default: return 0;
        }
    case BK_ISA_NEON:
        switch (wtype) {
        case BK_TYPE_Q4_0: q4_0_neon(B, w, rb, r0, r1, columns, a, o, os, dm); return 1;
        case BK_TYPE_Q4_1: q4_1_neon(B, w, rb, r0, r1, columns, a, o, os, dm); return 1;
        case BK_TYPE_Q8_0: q8_0_neon(B, w, rb, r0, r1, columns, a, o, os, dm); return 1;
        default: return 0;
        }
#endif
    default:
        (void)wtype, (void)B, (void)w, (void)rb, (void)r0, (void)r1, (void)columns, (void)a, (void)o, (void)os, (void)dm;
        return 0;
    }
}

/// One pass of the float-weight kernel of ISA `e` (already effective) for `wtype`; 0 if there is none.
static int fmm_simd(bk_isa e, bk_type wtype, int B, const uint8_t *w, size_t rb, int r0, int r1, int columns,
                    const float *x, float *o, size_t os) {
    switch (e) {
#if BK_X86
    case BK_ISA_AVX512:
        switch (wtype) {
        case BK_TYPE_F16: f16_avx512(B, w, rb, r0, r1, columns, x, o, os); return 1;
        case BK_TYPE_BF16: bf16_avx512(B, w, rb, r0, r1, columns, x, o, os); return 1;
        case BK_TYPE_F32: f32_avx512(B, w, rb, r0, r1, columns, x, o, os); return 1;
        default: return 0;
        }
    case BK_ISA_AVX2:
        switch (wtype) {
        case BK_TYPE_F16: f16_avx2(B, w, rb, r0, r1, columns, x, o, os); return 1;
        case BK_TYPE_BF16: bf16_avx2(B, w, rb, r0, r1, columns, x, o, os); return 1;
        case BK_TYPE_F32: f32_avx2(B, w, rb, r0, r1, columns, x, o, os); return 1;
        default: return 0;
        }
#elif BK_ARM
    case BK_ISA_NEON_DOTPROD:
    case BK_ISA_NEON:
        switch (wtype) {
        case BK_TYPE_F16: f16_neon(B, w, rb, r0, r1, columns, x, o, os); return 1;
        case BK_TYPE_BF16: bf16_neon(B, w, rb, r0, r1, columns, x, o, os); return 1;
        case BK_TYPE_F32: f32_neon(B, w, rb, r0, r1, columns, x, o, os); return 1;
        default: return 0;
        }
#endif
    default:
        (void)wtype, (void)B, (void)w, (void)rb, (void)r0, (void)r1, (void)columns, (void)x, (void)o, (void)os;
        return 0;
    }
}

void bk_matmul(bk_isa isa, bk_type wtype, const void *w, size_t row_bytes, int row_begin, int row_end,
               int columns, const void *act, int batch, float *out, size_t out_stride) {
    if (row_begin >= row_end || batch <= 0 || columns <= 0) return;
    if (bk_kq_block_bytes(wtype)) {
        bk_kq_matmul(isa, wtype, w, row_bytes, row_begin, row_end, columns, act, batch, out, out_stride);
        return;
    }
    const uint8_t *wb = (const uint8_t *)w;
    int quantized = wtype == BK_TYPE_Q4_0 || wtype == BK_TYPE_Q4_1 || wtype == BK_TYPE_Q8_0;
    bk_isa e = bk_effective_isa(isa);
    if (quantized) {
        bk_act_layout l = bk_layout(columns);
        // Q4_1's per-row minimums for the m·s term (AVX2: [d, m] pairs, AVX-512: m per block); entries
        // past the row's blocks stay zero. On the stack for rows up to ~16k columns, else on the heap.
        const int dmCount = 2 * (l.s2 + 16);  // two rows (the AVX-512 kernel does rows in pairs)
        float dmStack[8192];
        float *dm = dmCount <= 8192 ? dmStack : (float *)malloc(sizeof(float) * (size_t)dmCount);
        if (!dm) return;
        for (int k = 0; k < dmCount; k++) dm[k] = 0;
        for (int v0 = 0; v0 < batch; v0 += 8) {
            int B = batch - v0 < 8 ? batch - v0 : 8;
            const uint8_t *a = (const uint8_t *)act + (size_t)v0 * l.stride;
            float *o = out + (size_t)v0 * out_stride;
            if (qmm_simd(e, wtype, B, wb, row_bytes, row_begin, row_end, columns, a, o, out_stride, dm)) continue;
            qmm_scalar(wtype, wb, row_bytes, row_begin, row_end, columns, a, B, o, out_stride);
        }
        if (dm != dmStack) free(dm);
        return;
    }
    for (int v0 = 0; v0 < batch; v0 += 8) {
        int B = batch - v0 < 8 ? batch - v0 : 8;
        const float *x = (const float *)act + (size_t)v0 * columns;
        float *o = out + (size_t)v0 * out_stride;
        if (fmm_simd(e, wtype, B, wb, row_bytes, row_begin, row_end, columns, x, o, out_stride)) continue;
        fmm_scalar(wtype, wb, row_bytes, row_begin, row_end, columns, x, B, o, out_stride);
    }
}

// MARK: - Dequantization

void bk_dequantize_row(bk_isa isa, bk_type wtype, const void *wrow, float *dst, int count) {
    if (bk_kq_dequantize_row(wtype, wrow, dst, count)) return;
    const uint8_t *row = (const uint8_t *)wrow;
    switch (wtype) {
    case BK_TYPE_Q4_0:
        for (int b = 0; b < count / 32; b++) {
            const uint8_t *blk = row + 18 * (size_t)b;
            float d = bk_f16_to_f32(bk_load_u16(blk));
            for (int j = 0; j < 16; j++) {
                dst[32 * b + j] = (float)((int)(blk[2 + j] & 0x0F) - 8) * d;
                dst[32 * b + j + 16] = (float)((int)(blk[2 + j] >> 4) - 8) * d;
            }
        }
        break;
    case BK_TYPE_Q4_1:
        for (int b = 0; b < count / 32; b++) {
            const uint8_t *blk = row + 20 * (size_t)b;
            float d = bk_f16_to_f32(bk_load_u16(blk)), m = bk_f16_to_f32(bk_load_u16(blk + 2));
            for (int j = 0; j < 16; j++) {
                dst[32 * b + j] = (float)(blk[4 + j] & 0x0F) * d + m;
                dst[32 * b + j + 16] = (float)(blk[4 + j] >> 4) * d + m;
            }
        }
        break;
    case BK_TYPE_Q8_0:
        for (int b = 0; b < count / 32; b++) {
            const uint8_t *blk = row + 34 * (size_t)b;
            float d = bk_f16_to_f32(bk_load_u16(blk));
            for (int j = 0; j < 32; j++) dst[32 * b + j] = (float)(int8_t)blk[2 + j] * d;
        }
        break;
    case BK_TYPE_F16: bk_convert_f16_to_f32(isa, (const uint16_t *)wrow, dst, (size_t)count); break;
    case BK_TYPE_BF16:
        for (int c = 0; c < count; c++) dst[c] = load_weight_scalar(BK_TYPE_BF16, row, c);
        break;
    default: memcpy(dst, wrow, (size_t)count * 4); break;
    }
}

// MARK: - Peak of the integer dot-product instructions

#if BK_X86
BK_AVX512 static uint64_t burn_avx512(uint64_t iterations, int32_t *sink) {
    __m512i acc[24];
    for (int i = 0; i < 24; i++) acc[i] = _mm512_set1_epi32(i);
    __m512i w = _mm512_set1_epi8(3), x = _mm512_set1_epi8(5);
    for (uint64_t n = 0; n < iterations; n++) {
        for (int i = 0; i < 24; i++) acc[i] = _mm512_dpbusd_epi32(acc[i], w, x);
        __asm__ volatile("" : "+v"(w), "+v"(x));  // keeps the operands opaque, so nothing is hoisted
    }
    __m512i s = acc[0];
    for (int i = 1; i < 24; i++) s = _mm512_add_epi32(s, acc[i]);
    *sink = _mm512_reduce_add_epi32(s);
    return iterations * 24 * 64;
}

BK_AVX2 static uint64_t burn_avx2(uint64_t iterations, int32_t *sink) {
    __m256i acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm256_set1_epi32(i);
    __m256i w = _mm256_set1_epi8(3), x = _mm256_set1_epi8(5), ones = _mm256_set1_epi16(1);
    for (uint64_t n = 0; n < iterations; n++) {
        for (int i = 0; i < 12; i++)
            acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones));
        __asm__ volatile("" : "+v"(w), "+v"(x));
    }
    __m256i s = acc[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_epi32(s, acc[i]);
    int32_t t[8];
    _mm256_storeu_si256((__m256i *)t, s);
    *sink = t[0] + t[7];
    return iterations * 12 * 32;
}
#elif BK_ARM
/// The NEON mat-vec's dot without `sdot`: smull + smlal2 + sadalp per 16 multiply-accumulates.
static uint64_t burn_neon(uint64_t iterations, int32_t *sink) {
    int32x4_t acc[12];
    for (int i = 0; i < 12; i++) acc[i] = vdupq_n_s32(i);
    int8x16_t w = vdupq_n_s8(3), x = vdupq_n_s8(5);
    for (uint64_t n = 0; n < iterations; n++) {
        for (int i = 0; i < 12; i++) acc[i] = vpadalq_s16(acc[i], vmlal_high_s8(vmull_s8(vget_low_s8(w), vget_low_s8(x)), w, x));
        __asm__ volatile("" : "+w"(w), "+w"(x));
    }
    int32x4_t s = acc[0];
    for (int i = 1; i < 12; i++) s = vaddq_s32(s, acc[i]);
    *sink = vgetq_lane_s32(s, 0) + vgetq_lane_s32(s, 3);
    return iterations * 12 * 16;
}

BK_DOTPROD static uint64_t burn_sdot(uint64_t iterations, int32_t *sink) {
    int32x4_t acc[24];
    for (int i = 0; i < 24; i++) acc[i] = vdupq_n_s32(i);
    int8x16_t w = vdupq_n_s8(3), x = vdupq_n_s8(5);
    for (uint64_t n = 0; n < iterations; n++) {
        for (int i = 0; i < 24; i++) acc[i] = vdotq_s32(acc[i], w, x);
        __asm__ volatile("" : "+w"(w), "+w"(x));
    }
    int32x4_t s = acc[0];
    for (int i = 1; i < 24; i++) s = vaddq_s32(s, acc[i]);
    *sink = vgetq_lane_s32(s, 0) + vgetq_lane_s32(s, 3);
    return iterations * 24 * 16;
}
#endif

uint64_t bk_int8_dot_burn(bk_isa isa, uint64_t iterations, int32_t *sink) {
    *sink = 0;
#if BK_X86
    switch (bk_effective_isa(isa)) {
    case BK_ISA_AVX512: return burn_avx512(iterations, sink);
    case BK_ISA_AVX2: return burn_avx2(iterations, sink);
    default: break;
    }
#elif BK_ARM
    switch (bk_effective_isa(isa)) {
    case BK_ISA_NEON_DOTPROD: return burn_sdot(iterations, sink);
    case BK_ISA_NEON: return burn_neon(iterations, sink);
    default: break;
    }
#else
    (void)isa;
    (void)iterations;
#endif
    return 0;
}

// MARK: - Sixteen-row interleaved copies (x16)
//
// At batch sizes where the mat-vec is compute-bound, the octet kernel above spends most of its instructions
// regrouping weight bytes, scaling per block and reducing lanes. Weights re-laid out once, sixteen rows
// interleaved, make one int32 lane hold one row: per block and vector, eight vpdpbusd (the activation's
// four bytes broadcast from memory), one convert and one scaled accumulate give sixteen rows at once, with
// no reduction at the end and no tail for odd block counts. The copy holds the same bytes as the GGUF
// blocks, reordered (Q8_0 quants stored as x ^ 0x80, the unsigned form vpdpbusd multiplies):
//   per group of 16 rows, per block b, `bk_x16_group_block_bytes` bytes:
//     Q4_0/Q4_1: 4 × 64 bytes, word j lane r = bytes 4j..<4j+4 of row r's 16 quant bytes;
//     Q8_0:      8 × 64 bytes, word j lane r = bytes 4j..<4j+4 of row r's 32 quants, ^ 0x80;
//     then d[16] (f16), and for Q4_1 m[16] (f16).

/// Group-blocks ahead of the one in use to prefetch, into L2: at batch 8 the output matrix (30 MB, evicted from
/// L3 by the layers' weights every step) must stream from DRAM while the core is busy, and L1 prefetches run
/// out of miss buffers. Measured on `bench model` batch 8: L2 and 24 ahead beat L1 and 12 by ~13 %, and 48.
#ifndef X16_AHEAD
#define X16_AHEAD 24
#endif
#ifndef X16_HINT
#define X16_HINT _MM_HINT_T1
#endif

static size_t x16_qbytes(bk_type t) { return t == BK_TYPE_Q8_0 ? 512 : 256; }

size_t bk_x16_group_block_bytes(bk_type t) {
    if (bk_kq_block_bytes(t)) return (size_t)bk_kq_x16_group_block_bytes(t);
    switch (t) {
    case BK_TYPE_Q4_0: return 256 + 32;
    case BK_TYPE_Q4_1: return 256 + 64;
    case BK_TYPE_Q8_0: return 512 + 32;
    default: return 0;
    }
}

size_t bk_x16_bytes(bk_type t, int rows, int columns) {
    if (bk_kq_block_bytes(t)) return bk_kq_x16_bytes(t, rows, columns);
    if (rows <= 0 || rows % 16 != 0 || columns <= 0 || columns % 32 != 0) return 0;
    return (size_t)(rows / 16) * (size_t)(columns / 32) * bk_x16_group_block_bytes(t);
}

int bk_x16_pack(bk_type t, const void *w, size_t row_bytes, int rows, int columns, void *dst) {
    if (bk_kq_block_bytes(t)) return bk_kq_x16_pack(t, w, row_bytes, rows, columns, dst);
    const size_t gbb = bk_x16_group_block_bytes(t);
    if (gbb == 0 || bk_x16_bytes(t, rows, columns) == 0) return -1;
    const int nb = columns / 32, bs = block_bytes(t), qoff = t == BK_TYPE_Q4_1 ? 4 : 2;
    const int words = t == BK_TYPE_Q8_0 ? 8 : 4;
    const uint8_t *src = (const uint8_t *)w;
    uint8_t *out = (uint8_t *)dst;
    for (int g = 0; g < rows / 16; g++) {
        for (int b = 0; b < nb; b++) {
            uint8_t *p = out + ((size_t)g * nb + b) * gbb;
            for (int r = 0; r < 16; r++) {
                const uint8_t *blk = src + (size_t)(16 * g + r) * row_bytes + (size_t)b * bs;
                for (int j = 0; j < words; j++)
                    for (int k = 0; k < 4; k++) {
                        uint8_t q = blk[qoff + 4 * j + k];
                        p[64 * j + 4 * r + k] = t == BK_TYPE_Q8_0 ? (uint8_t)(q ^ 0x80) : q;
                    }
                memcpy(p + x16_qbytes(t) + 2 * r, blk, 2);                               // d
                if (t == BK_TYPE_Q4_1) memcpy(p + x16_qbytes(t) + 32 + 2 * r, blk + 2, 2);  // m
            }
        }
    }
    return 0;
}

/// Portable reading of the x16 layout (other CPUs): rebuilds each row's block and runs the scalar twin's
/// arithmetic on it.
static void x16_scalar(bk_type t, const uint8_t *packed, int r0, int r1, int columns, const uint8_t *act, int batch,
                       float *out, size_t os) {
    const bk_act_layout l = bk_layout(columns);
    const size_t gbb = bk_x16_group_block_bytes(t), qb = x16_qbytes(t);
    const int words = t == BK_TYPE_Q8_0 ? 8 : 4, bs = block_bytes(t), qoff = t == BK_TYPE_Q4_1 ? 4 : 2;
    uint8_t *row = (uint8_t *)malloc((size_t)l.nb * (size_t)bs);
    if (!row) return;
    for (int r = r0; r < r1; r++) {
        const int g = r / 16, lane = r % 16;
        for (int b = 0; b < l.nb; b++) {
            const uint8_t *p = packed + ((size_t)g * l.nb + b) * gbb;
            uint8_t *blk = row + (size_t)b * bs;
            for (int j = 0; j < words; j++)
                for (int k = 0; k < 4; k++) {
                    uint8_t q = p[64 * j + 4 * lane + k];
                    blk[qoff + 4 * j + k] = t == BK_TYPE_Q8_0 ? (uint8_t)(q ^ 0x80) : q;
                }
            memcpy(blk, p + qb + 2 * lane, 2);
            if (t == BK_TYPE_Q4_1) memcpy(blk + 2, p + qb + 32 + 2 * lane, 2);
        }
        for (int v = 0; v < batch; v++) {
            const uint8_t *av = act + (size_t)v * l.stride;
            out[(size_t)v * os + r] = t == BK_TYPE_Q4_0 ? bk_q4_0_dot_scalar(row, av, columns)
                                    : t == BK_TYPE_Q4_1 ? bk_q4_1_dot_scalar(row, av, columns)
                                                        : bk_q8_0_dot_scalar(row, av, columns);
        }
    }
    free(row);
}

#if BK_X86
/// Sixteen rows (one group) against B vectors. Integer sums are exact, so splitting a block's eight vpdpbusd
/// into two chains (done when few vectors run side by side, to halve the latency) never changes a result:
/// each (row, vector) result is the same whatever B.
BK_AVX512 BK_INLINE void x16_group(const bk_type T, const int B, const uint8_t *g, int nb, const uint8_t *act,
                                   const bk_act_layout *l, float *out, size_t os, int r) {
    const size_t gbb = bk_x16_group_block_bytes(T), qb = x16_qbytes(T);
    const __m512i low4 = _mm512_set1_epi8(0x0F);
    __m512 acc[8];
    for (int v = 0; v < B; v++) acc[v] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *p = g + (size_t)b * gbb;
        // One sequential stream, but the hardware prefetchers stop at each 4 KiB page and look only a little ahead.
        for (size_t line = 0; line < gbb; line += 64) _mm_prefetch((const char *)(p + X16_AHEAD * gbb + line), X16_HINT);
        __m512i op[8];
        if (T == BK_TYPE_Q8_0) {
            for (int k = 0; k < 8; k++) op[k] = _mm512_loadu_si512((const void *)(p + 64 * k));
        } else {
            for (int j = 0; j < 4; j++) {
                __m512i z = _mm512_loadu_si512((const void *)(p + 64 * j));
                op[j] = _mm512_and_si512(z, low4);
                op[j + 4] = _mm512_and_si512(_mm512_srli_epi16(z, 4), low4);
            }
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + qb)));
        const __m512 mw = T == BK_TYPE_Q4_1 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + qb + 32)))
                                            : _mm512_setzero_ps();
        for (int v = 0; v < B; v++) {
            const uint8_t *av = act + (size_t)v * l->stride;
            const int32_t *q = (const int32_t *)(av + l->qs + 32 * (size_t)b);
            const __m512i init = T == BK_TYPE_Q4_1 ? _mm512_setzero_si512()
                                                   : _mm512_set1_epi32(((const int32_t *)(av + l->bias))[8 * b]);
            __m512i ai;
            if (B >= 4) {
                ai = init;
                for (int k = 0; k < 8; k++) ai = _mm512_dpbusd_epi32(ai, op[k], _mm512_set1_epi32(q[k]));
            } else {
                __m512i a0 = init, a1 = _mm512_setzero_si512();
                for (int k = 0; k < 8; k += 2) {
                    a0 = _mm512_dpbusd_epi32(a0, op[k], _mm512_set1_epi32(q[k]));
                    a1 = _mm512_dpbusd_epi32(a1, op[k + 1], _mm512_set1_epi32(q[k + 1]));
                }
                ai = _mm512_add_epi32(a0, a1);
            }
            const float dl = ((const float *)(av + l->d))[b];
            acc[v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ai), _mm512_mul_ps(dw, _mm512_set1_ps(dl)), acc[v]);
            if (T == BK_TYPE_Q4_1)
                acc[v] = _mm512_fmadd_ps(mw, _mm512_set1_ps(((const float *)(av + l->s))[b]), acc[v]);
        }
    }
    for (int v = 0; v < B; v++) _mm512_storeu_ps(out + (size_t)v * os + r, acc[v]);
}

BK_AVX512 BK_INLINE void x16_avx512(const bk_type T, const int B, const uint8_t *packed, int r0, int r1, int columns,
                                    const uint8_t *act, float *out, size_t os) {
    const bk_act_layout l = bk_layout(columns);
    const size_t gbb = bk_x16_group_block_bytes(T);
    for (int r = r0; r < r1; r += 16)
        x16_group(T, B, packed + (size_t)(r / 16) * l.nb * gbb, l.nb, act, &l, out, os, r);
}

#define BK_X16_VARIANT(T, name)                                                                                  \
    BK_AVX512 static void name(int B, const uint8_t *p, int r0, int r1, int columns, const uint8_t *act, float *out, \
                               size_t os) {                                                                       \
        switch (B) {                                                                                              \
        case 1: x16_avx512(T, 1, p, r0, r1, columns, act, out, os); break;                                        \
        case 2: x16_avx512(T, 2, p, r0, r1, columns, act, out, os); break;                                        \
        case 3: x16_avx512(T, 3, p, r0, r1, columns, act, out, os); break;                                        \
        case 4: x16_avx512(T, 4, p, r0, r1, columns, act, out, os); break;                                        \
        case 5: x16_avx512(T, 5, p, r0, r1, columns, act, out, os); break;                                        \
        case 6: x16_avx512(T, 6, p, r0, r1, columns, act, out, os); break;                                        \
        case 7: x16_avx512(T, 7, p, r0, r1, columns, act, out, os); break;                                        \
        default: x16_avx512(T, 8, p, r0, r1, columns, act, out, os); break;                                       \
        }                                                                                                         \
    }
BK_X16_VARIANT(BK_TYPE_Q4_0, x16_q4_0_avx512)
BK_X16_VARIANT(BK_TYPE_Q4_1, x16_q4_1_avx512)
BK_X16_VARIANT(BK_TYPE_Q8_0, x16_q8_0_avx512)

/// The same copy read with AVX2 (no VNNI): each 64-byte word's 32-byte halves hold rows 0–7 and 8–15 of the group,
/// so a half is eight rows with one int32 lane each, walked in its own pass over the group's blocks (the second
/// pass reads the group from L1). vpmaddubsw multiplies unsigned weight bytes by signed activation bytes into int16
/// pairs. A Q4 nibble (≤ 15) times |q| ≤ 127 keeps a pair ≤ 3810, so a block's eight products add up in int16
/// (≤ 30480) before one vpmaddwd widens them. Q8_0's pairs would overflow int16 (the copy holds x ^ 0x80, up to 255),
/// so its bytes are turned back to signed and multiplied as |w| · sign(y, w), as qmm_avx2 does, each product widened
/// on its own. Per (row, vector) the f32 steps are those of x16_group, so each result is the same whatever B.
BK_AVX2 BK_INLINE void x16_half_avx2(const bk_type T, const int B, const uint8_t *g, int nb, int half,
                                     const uint8_t *act, const bk_act_layout *l, float *out, size_t os, int r) {
    const size_t gbb = bk_x16_group_block_bytes(T), qb = x16_qbytes(T);
    const __m256i low4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256 acc[4];
    for (int v = 0; v < B; v++) acc[v] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *p = g + (size_t)b * gbb;
        if (half == 0)
            for (size_t line = 0; line < gbb; line += 64) _mm_prefetch((const char *)(p + X16_AHEAD * gbb + line), X16_HINT);
        __m256i w[8];    // unsigned operands (Q4 nibbles, Q8_0 |w|)
        __m256i sgn[8];  // Q8_0: the signed weights, whose signs move onto the activations
        if (T == BK_TYPE_Q8_0) {
            const __m256i flip = _mm256_set1_epi8((char)0x80);
            for (int k = 0; k < 8; k++) {
                sgn[k] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + 64 * k + 32 * half)), flip);
                w[k] = _mm256_abs_epi8(sgn[k]);
            }
        } else {
            for (int j = 0; j < 4; j++) {
                const __m256i z = _mm256_loadu_si256((const __m256i *)(p + 64 * j + 32 * half));
                w[j] = _mm256_and_si256(z, low4);
                w[j + 4] = _mm256_and_si256(_mm256_srli_epi16(z, 4), low4);
            }
        }
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + qb + 16 * half)));
        const __m256 mw = T == BK_TYPE_Q4_1 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + qb + 32 + 16 * half)))
                                            : _mm256_setzero_ps();
        for (int v = 0; v < B; v++) {
            const uint8_t *av = act + (size_t)v * l->stride;
            const int32_t *q = (const int32_t *)(av + l->qs + 32 * (size_t)b);
            __m256i ai;
            if (T == BK_TYPE_Q8_0) {
                ai = _mm256_setzero_si256();
                for (int k = 0; k < 8; k++) {
                    const __m256i y = _mm256_sign_epi8(_mm256_set1_epi32(q[k]), sgn[k]);
                    ai = _mm256_add_epi32(ai, _mm256_madd_epi16(_mm256_maddubs_epi16(w[k], y), ones));
                }
            } else {
                __m256i s16 = _mm256_maddubs_epi16(w[0], _mm256_set1_epi32(q[0]));
                for (int k = 1; k < 8; k++) s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(w[k], _mm256_set1_epi32(q[k])));
                ai = _mm256_madd_epi16(s16, ones);
                if (T == BK_TYPE_Q4_0) ai = _mm256_add_epi32(ai, _mm256_set1_epi32(((const int32_t *)(av + l->bias))[8 * b]));
            }
            const float dl = ((const float *)(av + l->d))[b];
            acc[v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ai), _mm256_mul_ps(dw, _mm256_set1_ps(dl)), acc[v]);
            if (T == BK_TYPE_Q4_1) acc[v] = _mm256_fmadd_ps(mw, _mm256_set1_ps(((const float *)(av + l->s))[b]), acc[v]);
        }
    }
    for (int v = 0; v < B; v++) _mm256_storeu_ps(out + (size_t)v * os + r + 8 * half, acc[v]);
}

/// Up to four vectors per pass over a group: eight weight operands and four accumulators fill AVX2's sixteen
/// registers, so a batch of eight walks each (L1-resident) group twice.
BK_AVX2 BK_INLINE void x16_avx2(const bk_type T, const int B, const uint8_t *packed, int r0, int r1, int columns,
                                const uint8_t *act, float *out, size_t os) {
    const bk_act_layout l = bk_layout(columns);
    const size_t gbb = bk_x16_group_block_bytes(T);
    for (int r = r0; r < r1; r += 16) {
        const uint8_t *g = packed + (size_t)(r / 16) * l.nb * gbb;
        for (int half = 0; half < 2; half++) {
            for (int v0 = 0; v0 < B; v0 += 4) {
                const uint8_t *a = act + (size_t)v0 * l.stride;
                float *o = out + (size_t)v0 * os;
                switch (B - v0 < 4 ? B - v0 : 4) {
                case 1: x16_half_avx2(T, 1, g, l.nb, half, a, &l, o, os, r); break;
                case 2: x16_half_avx2(T, 2, g, l.nb, half, a, &l, o, os, r); break;
                case 3: x16_half_avx2(T, 3, g, l.nb, half, a, &l, o, os, r); break;
                default: x16_half_avx2(T, 4, g, l.nb, half, a, &l, o, os, r); break;
                }
            }
        }
    }
}

BK_AVX2 static void x16_q4_0_avx2(int B, const uint8_t *p, int r0, int r1, int columns, const uint8_t *act, float *out,
                                  size_t os) { x16_avx2(BK_TYPE_Q4_0, B, p, r0, r1, columns, act, out, os); }
BK_AVX2 static void x16_q4_1_avx2(int B, const uint8_t *p, int r0, int r1, int columns, const uint8_t *act, float *out,
                                  size_t os) { x16_avx2(BK_TYPE_Q4_1, B, p, r0, r1, columns, act, out, os); }
BK_AVX2 static void x16_q8_0_avx2(int B, const uint8_t *p, int r0, int r1, int columns, const uint8_t *act, float *out,
                                  size_t os) { x16_avx2(BK_TYPE_Q8_0, B, p, r0, r1, columns, act, out, os); }
#endif

/// One pass (B ≤ 8 vectors) of `isa`'s interleaved kernel for `wtype`; 0 where there is none (the caller runs the
/// scalar reading). A new type or ISA adds its case here and its entry in bk_x16_preferred.
static int x16_simd(bk_isa isa, bk_type wtype, int B, const uint8_t *p, int r0, int r1, int columns,
                    const uint8_t *a, float *o, size_t os) {
    switch (bk_effective_isa(isa)) {
#if BK_X86
    case BK_ISA_AVX512:
        switch (wtype) {
        case BK_TYPE_Q4_0: x16_q4_0_avx512(B, p, r0, r1, columns, a, o, os); return 1;
        case BK_TYPE_Q4_1: x16_q4_1_avx512(B, p, r0, r1, columns, a, o, os); return 1;
        case BK_TYPE_Q8_0: x16_q8_0_avx512(B, p, r0, r1, columns, a, o, os); return 1;
        default: return 0;
        }
    case BK_ISA_AVX2:
        switch (wtype) {
        case BK_TYPE_Q4_0: x16_q4_0_avx2(B, p, r0, r1, columns, a, o, os); return 1;
        case BK_TYPE_Q4_1: x16_q4_1_avx2(B, p, r0, r1, columns, a, o, os); return 1;
        case BK_TYPE_Q8_0: x16_q8_0_avx2(B, p, r0, r1, columns, a, o, os); return 1;
        default: return 0;
        }
#endif
    default:
        (void)wtype, (void)B, (void)p, (void)r0, (void)r1, (void)columns, (void)a, (void)o, (void)os;
        return 0;
    }
}

/// Measured per call on one Zen 4 core (thread CPU time, the model's shapes, weights in cache except the 30 MB
/// Q8_0 output matrix): AVX2 interleaved over in place 2.6–3.1× at batch 1 and 2.0–2.2× at batch 8 for Q4_0/Q4_1,
/// 1.0× and 1.3× for that Q8_0 matrix (batch 1 streams it from DRAM either way); AVX-512 2.6–4.0× and 1.8–2.9×.
int bk_x16_preferred(bk_isa isa, bk_type wtype) {
    if (bk_x16_group_block_bytes(wtype) == 0) return 0;
    if (bk_kq_block_bytes(wtype)) return bk_effective_isa(isa) == BK_ISA_AVX512;  // kquants_x16.c: AVX-512 only
    switch (bk_effective_isa(isa)) {
    case BK_ISA_AVX512: return 1;
    case BK_ISA_AVX2: return 1;
    default: return 0;
    }
}

void bk_matmul_x16(bk_isa isa, bk_type wtype, const void *packed, int row_begin, int row_end, int columns,
                   const void *act, int batch, float *out, size_t out_stride) {
    if (row_begin >= row_end || batch <= 0 || columns <= 0 || bk_x16_group_block_bytes(wtype) == 0) return;
    if (bk_kq_block_bytes(wtype)) {
        bk_kq_matmul_x16(isa, wtype, packed, row_begin, row_end, columns, act, batch, out, out_stride);
        return;
    }
    const bk_act_layout l = bk_layout(columns);
    const uint8_t *p = (const uint8_t *)packed;
    for (int v0 = 0; v0 < batch; v0 += 8) {
        const int B = batch - v0 < 8 ? batch - v0 : 8;
        const uint8_t *a = (const uint8_t *)act + (size_t)v0 * l.stride;
        float *o = out + (size_t)v0 * out_stride;
        if (!x16_simd(isa, wtype, B, p, row_begin, row_end, columns, a, o, out_stride))
            x16_scalar(wtype, p, row_begin, row_end, columns, a, B, o, out_stride);
    }
}
