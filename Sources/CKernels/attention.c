// Decode attention read straight from the paged KV cache (f16 or f32), without a gathered f32 copy.
//
// One call covers one query group (the query heads sharing a KV head) of one sequence. Each key and value row
// is read and converted once for all heads of the group; copying the cache to f32 first, as the engine used
// to, cost a write and a re-read of every cached element per step.
#include "internal.h"

/// Base of position `t`'s row in the layer's cache: block table[t / bs], slot t % bs.
BK_INLINE const uint8_t *kv_row(const uint8_t *base, size_t bb, const int32_t *table, int bs, size_t off,
                                size_t row_bytes, int t) {
    return base + (size_t)table[t / bs] * bb + off + (size_t)(t % bs) * row_bytes;
}

BK_INLINE float kv_load(int f16, const uint8_t *row, int d) {
    if (f16) return bk_f16_to_f32(bk_load_u16(row + 2 * (size_t)d));
    float f;
    memcpy(&f, row + 4 * (size_t)d, 4);
    return f;
}

// MARK: - Scalar twins

static void scores_scalar(int f16, const float *q, int group, int hd, float scale, const uint8_t *base, size_t bb,
                          const int32_t *table, int bs, size_t koff, int count, float *scores) {
    const size_t rowb = (size_t)hd * (f16 ? 2 : 4);
    for (int t = 0; t < count; t++) {
        const uint8_t *k = kv_row(base, bb, table, bs, koff, rowb, t);
        for (int h = 0; h < group; h++) {
            float s = 0;
            for (int d = 0; d < hd; d++) s += q[(size_t)h * hd + d] * kv_load(f16, k, d);
            scores[(size_t)h * count + t] = s * scale;
        }
    }
}

static void values_scalar(int f16, const float *p, int group, int hd, const uint8_t *base, size_t bb,
                          const int32_t *table, int bs, size_t voff, int count, float *out) {
    const size_t rowb = (size_t)hd * (f16 ? 2 : 4);
    for (size_t i = 0; i < (size_t)group * hd; i++) out[i] = 0;
    for (int t = 0; t < count; t++) {
        const uint8_t *v = kv_row(base, bb, table, bs, voff, rowb, t);
        for (int h = 0; h < group; h++) {
            const float w = p[(size_t)h * count + t];
            for (int d = 0; d < hd; d++) out[(size_t)h * hd + d] += w * kv_load(f16, v, d);
        }
    }
}

/// How far ahead the walks over a sequence's blocks prefetch, and into which cache. Blocks are scattered (a
/// layer's blocks sit 12 KB apart for SmolLM2), so the hardware prefetchers cannot see the next one coming.
/// Measured with `bench model --context 2048` on 1 thread (AVX-512): into L2 and two blocks ahead gives batch 1
/// 97–107 tokens/s against 76–90 for L1 and one ahead (whose fill buffers run out) and batch 8 212–223 against
/// 187–192; one or three ahead into L2, or also fetching the values during the scores, measured the same.
#ifndef KV_AHEAD
#define KV_AHEAD 2
#endif
#if BK_X86
#ifndef KV_HINT
#define KV_HINT _MM_HINT_T1
#endif
#define KV_PREFETCH(p) _mm_prefetch((const char *)(p), KV_HINT)
#else
#define KV_PREFETCH(p) __builtin_prefetch((p), 0, 2)  // read, into L2 (AArch64: prfm pldl2keep)
#endif

/// Starts fetching this head's rows of the block holding position `t` (if t < count).
BK_INLINE void prefetch_block(const uint8_t *base, size_t bb, const int32_t *table, int bs, size_t off, size_t row_bytes,
                              int t, int count) {
    if (t >= count) return;
    const uint8_t *p = base + (size_t)table[t / bs] * bb + off;
    const int rows = count - t < bs ? count - t : bs;
    for (size_t line = 0; line < (size_t)rows * row_bytes; line += 64) KV_PREFETCH(p + line);
}

/// Called at each block start `t0` of a walk over positions: keeps the blocks KV_AHEAD ahead on their way.
BK_INLINE void prefetch_ahead(const uint8_t *base, size_t bb, const int32_t *table, int bs, size_t off, size_t row_bytes,
                              int t0, int count) {
    if (t0 == 0)
        for (int a = 1; a < KV_AHEAD; a++) prefetch_block(base, bb, table, bs, off, row_bytes, a * bs, count);
    prefetch_block(base, bb, table, bs, off, row_bytes, t0 + KV_AHEAD * bs, count);
}

#if BK_X86
/// Lane i = the sum of y[i]'s eight lanes.
BK_AVX2 BK_INLINE __m256 sums8(const __m256 y[8]) {
    __m256 p[4];
    for (int k = 0; k < 4; k++)  // [z(2k) | z(2k+1)], z = low + high 128 bits
        p[k] = _mm256_add_ps(_mm256_permute2f128_ps(y[2 * k], y[2 * k + 1], 0x20),
                             _mm256_permute2f128_ps(y[2 * k], y[2 * k + 1], 0x31));
    __m256 f = _mm256_hadd_ps(_mm256_hadd_ps(p[0], p[1]), _mm256_hadd_ps(p[2], p[3]));  // [z0 z2 z4 z6 | z1 z3 z5 z7]
    return _mm256_permutevar8x32_ps(f, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/// Up to 8 consecutive rows of one block (`n` of them, `hd` elements each) as f32, into `dst`.
BK_AVX2 BK_INLINE void rows_f32_avx2(int f16, const uint8_t *src, int n, int hd, float *dst) {
    const int total = n * hd;
    if (!f16) {
        memcpy(dst, src, (size_t)total * 4);
        return;
    }
    for (int i = 0; i < total; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + 2 * (size_t)i))));
}

BK_AVX2 static void scores_avx2(int f16, const float *q, int group, int hd, float scale, const uint8_t *base,
                                size_t bb, const int32_t *table, int bs, size_t koff, int count, float *scores) {
    const size_t rowb = (size_t)hd * (f16 ? 2 : 4);
    float rows[8 * 256];
    const __m256 vs = _mm256_set1_ps(scale);
    for (int t0 = 0; t0 < count; t0 += bs) {
        const uint8_t *block = base + (size_t)table[t0 / bs] * bb + koff;
        const int n = count - t0 < bs ? count - t0 : bs;
        prefetch_ahead(base, bb, table, bs, koff, rowb, t0, count);
        for (int j0 = 0; j0 < n; j0 += 8) {
            const int m = n - j0 < 8 ? n - j0 : 8;
            rows_f32_avx2(f16, block + (size_t)j0 * rowb, m, hd, rows);
            for (int h = 0; h < group; h++) {
                const float *qh = q + (size_t)h * hd;
                __m256 acc[8];
                for (int j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
                for (int j = 0; j < m; j++)
                    for (int d = 0; d < hd; d += 8)
                        acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(qh + d), _mm256_loadu_ps(rows + j * hd + d), acc[j]);
                __m256 s = _mm256_mul_ps(sums8(acc), vs);
                float tmp[8];
                _mm256_storeu_ps(tmp, s);
                memcpy(scores + (size_t)h * count + t0 + j0, tmp, (size_t)m * 4);
            }
        }
    }
}

BK_AVX2 static void values_avx2(int f16, const float *p, int group, int hd, const uint8_t *base, size_t bb,
                                const int32_t *table, int bs, size_t voff, int count, float *out) {
    const size_t rowb = (size_t)hd * (f16 ? 2 : 4);
    for (int h = 0; h < group; h++) {
        const float *ph = p + (size_t)h * count;
        float *oh = out + (size_t)h * hd;
        for (int d0 = 0; d0 < hd; d0 += 32) {  // four registers of the output row at a time
            const int nv = hd - d0 >= 32 ? 4 : (hd - d0) / 8;
            __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
            for (int t0 = 0; t0 < count; t0 += bs) {
                prefetch_ahead(base, bb, table, bs, voff, rowb, t0, count);
                const uint8_t *block = base + (size_t)table[t0 / bs] * bb + voff;
                const int n = count - t0 < bs ? count - t0 : bs;
                for (int j = 0; j < n; j++) {
                    const uint8_t *v = block + (size_t)j * rowb;
                    const __m256 w = _mm256_broadcast_ss(ph + t0 + j);
                    for (int k = 0; k < nv; k++) {
                        const int d = d0 + 8 * k;
                        __m256 x = f16 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + 2 * (size_t)d)))
                                       : _mm256_loadu_ps((const float *)(v + 4 * (size_t)d));
                        acc[k] = _mm256_fmadd_ps(w, x, acc[k]);
                    }
                }
            }
            for (int k = 0; k < nv; k++) _mm256_storeu_ps(oh + d0 + 8 * k, acc[k]);
        }
    }
}

// MARK: - AVX-512

/// Lanes 0..<P (2 or 4) = the sums of acc[0..<P]'s sixteen lanes.
BK_AVX512 BK_INLINE __m128 sums_p(const int P, const __m512 *acc) {
    __m128 x[4];
    for (int p = 0; p < P; p++) {
        const __m256 y = _mm256_add_ps(_mm512_castps512_ps256(acc[p]), _mm512_extractf32x8_ps(acc[p], 1));
        x[p] = _mm_add_ps(_mm256_castps256_ps128(y), _mm256_extractf128_ps(y, 1));
    }
    if (P == 2) return _mm_hadd_ps(_mm_hadd_ps(x[0], x[1]), _mm_setzero_ps());
    return _mm_hadd_ps(_mm_hadd_ps(x[0], x[1]), _mm_hadd_ps(x[2], x[3]));
}

/// Head sizes 64 and 128 (`HD`): P positions' keys (P·HD = 256 floats, sixteen registers) are converted once
/// into registers and serve every head of the group, with the queries read from L1 as operands (converting
/// through a buffer, as the AVX2 kernel does, costs a store and a reload of every element per step). Other head
/// sizes run the AVX2 kernel.
BK_AVX512 BK_INLINE void scores_regs_avx512(const int HD, int f16, const float *q, int group, float scale,
                                            const uint8_t *base, size_t bb, const int32_t *table, int bs, size_t koff,
                                            int count, float *scores) {
    const int P = 256 / HD, NV = HD / 16;
    const size_t rowb = (size_t)HD * (f16 ? 2 : 4);
    const __m128 vs = _mm_set1_ps(scale);
    for (int t0 = 0; t0 < count; t0 += bs) {
        const uint8_t *block = base + (size_t)table[t0 / bs] * bb + koff;
        const int n = count - t0 < bs ? count - t0 : bs;
        prefetch_ahead(base, bb, table, bs, koff, rowb, t0, count);
        for (int j0 = 0; j0 < n; j0 += P) {
            const int m = n - j0 < P ? n - j0 : P;
            __m512 k[4][8];
            for (int p = 0; p < P; p++) {
                const uint8_t *row = block + (size_t)(j0 + p) * rowb;
                for (int v = 0; v < NV; v++)  // missing positions (past the block's last) are zeros, never stored
                    k[p][v] = p >= m ? _mm512_setzero_ps()
                            : f16    ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 32 * (size_t)v)))
                                     : _mm512_loadu_ps((const float *)(row + 64 * (size_t)v));
            }
            for (int h = 0; h < group; h++) {
                const float *qh = q + (size_t)h * HD;
                __m512 acc[4];
                for (int p = 0; p < P; p++) {
                    acc[p] = _mm512_mul_ps(k[p][0], _mm512_loadu_ps(qh));
                    for (int v = 1; v < NV; v++) acc[p] = _mm512_fmadd_ps(k[p][v], _mm512_loadu_ps(qh + 16 * v), acc[p]);
                }
                _mm_mask_storeu_ps(scores + (size_t)h * count + t0 + j0, (__mmask8)((1u << m) - 1),
                                   _mm_mul_ps(sums_p(P, acc), vs));
            }
        }
    }
}

BK_AVX512 static void scores_avx512(int f16, const float *q, int group, int hd, float scale, const uint8_t *base,
                                    size_t bb, const int32_t *table, int bs, size_t koff, int count, float *scores) {
    if (hd == 64) scores_regs_avx512(64, f16, q, group, scale, base, bb, table, bs, koff, count, scores);
    else scores_regs_avx512(128, f16, q, group, scale, base, bb, table, bs, koff, count, scores);
}

/// `HN` heads × 64 output elements starting at d0, accumulated over every position.
BK_AVX512 BK_INLINE void values_tile_avx512(const int HN, int f16, const float *p, int count, int hd, int d0,
                                            const uint8_t *base, size_t bb, const int32_t *table, int bs,
                                            size_t voff, float *out) {
    const size_t rowb = (size_t)hd * (f16 ? 2 : 4);
    __m512 acc[4][4];
    for (int h = 0; h < HN; h++)
        for (int k = 0; k < 4; k++) acc[h][k] = _mm512_setzero_ps();
    for (int t0 = 0; t0 < count; t0 += bs) {
        prefetch_ahead(base, bb, table, bs, voff, rowb, t0, count);
        const uint8_t *block = base + (size_t)table[t0 / bs] * bb + voff + (size_t)d0 * (f16 ? 2 : 4);
        const int n = count - t0 < bs ? count - t0 : bs;
        for (int j = 0; j < n; j++) {
            const uint8_t *v = block + (size_t)j * rowb;
            __m512 x[4];
            for (int k = 0; k < 4; k++)
                x[k] = f16 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(v + 32 * (size_t)k)))
                           : _mm512_loadu_ps((const float *)(v + 64 * (size_t)k));
            for (int h = 0; h < HN; h++) {
                const __m512 w = _mm512_set1_ps(p[(size_t)h * count + t0 + j]);
                for (int k = 0; k < 4; k++) acc[h][k] = _mm512_fmadd_ps(w, x[k], acc[h][k]);
            }
        }
    }
    for (int h = 0; h < HN; h++)
        for (int k = 0; k < 4; k++) _mm512_storeu_ps(out + (size_t)h * hd + d0 + 16 * k, acc[h][k]);
}

BK_AVX512 static void values_avx512(int f16, const float *p, int group, int hd, const uint8_t *base, size_t bb,
                                    const int32_t *table, int bs, size_t voff, int count, float *out) {
    for (int d0 = 0; d0 < hd; d0 += 64) {  // head sizes in whole 64-float tiles; others run the AVX2 kernel
        for (int h = 0; h < group; h += 4) {
            const float *ph = p + (size_t)h * count;
            float *oh = out + (size_t)h * hd;
            switch (group - h < 4 ? group - h : 4) {
            case 1: values_tile_avx512(1, f16, ph, count, hd, d0, base, bb, table, bs, voff, oh); break;
            case 2: values_tile_avx512(2, f16, ph, count, hd, d0, base, bb, table, bs, voff, oh); break;
            case 3: values_tile_avx512(3, f16, ph, count, hd, d0, base, bb, table, bs, voff, oh); break;
            default: values_tile_avx512(4, f16, ph, count, hd, d0, base, bb, table, bs, voff, oh); break;
            }
        }
    }
}
#endif

#if BK_ARM
// MARK: - NEON

/// Up to 8 consecutive rows of one block (`n` of them, `hd` elements each, hd a multiple of 4) as f32, into `dst`.
BK_INLINE void rows_f32_neon(int f16, const uint8_t *src, int n, int hd, float *dst) {
    const int total = n * hd;
    if (!f16) {
        memcpy(dst, src, (size_t)total * 4);
        return;
    }
    for (int i = 0; i < total; i += 4)
        vst1q_f32(dst + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(src + 2 * (size_t)i)))));
}

static void scores_neon(int f16, const float *q, int group, int hd, float scale, const uint8_t *base, size_t bb,
                        const int32_t *table, int bs, size_t koff, int count, float *scores) {
    const size_t rowb = (size_t)hd * (f16 ? 2 : 4);
    float rows[8 * 256];
    for (int t0 = 0; t0 < count; t0 += bs) {
        const uint8_t *block = base + (size_t)table[t0 / bs] * bb + koff;
        const int n = count - t0 < bs ? count - t0 : bs;
        prefetch_ahead(base, bb, table, bs, koff, rowb, t0, count);
        for (int j0 = 0; j0 < n; j0 += 8) {  // each key row converted once for all heads of the group
            const int m = n - j0 < 8 ? n - j0 : 8;
            rows_f32_neon(f16, block + (size_t)j0 * rowb, m, hd, rows);
            for (int h = 0; h < group; h++) {
                const float *qh = q + (size_t)h * hd;
                for (int j = 0; j < m; j++) {
                    float32x4_t a0 = vdupq_n_f32(0), a1 = vdupq_n_f32(0);
                    int d = 0;
                    for (; d + 8 <= hd; d += 8) {
                        a0 = vfmaq_f32(a0, vld1q_f32(qh + d), vld1q_f32(rows + j * hd + d));
                        a1 = vfmaq_f32(a1, vld1q_f32(qh + d + 4), vld1q_f32(rows + j * hd + d + 4));
                    }
                    if (d < hd) a0 = vfmaq_f32(a0, vld1q_f32(qh + d), vld1q_f32(rows + j * hd + d));
                    scores[(size_t)h * count + t0 + j0 + j] = vaddvq_f32(vaddq_f32(a0, a1)) * scale;
                }
            }
        }
    }
}

static void values_neon(int f16, const float *p, int group, int hd, const uint8_t *base, size_t bb,
                        const int32_t *table, int bs, size_t voff, int count, float *out) {
    const size_t rowb = (size_t)hd * (f16 ? 2 : 4);
    for (int h = 0; h < group; h++) {
        const float *ph = p + (size_t)h * count;
        float *oh = out + (size_t)h * hd;
        for (int d0 = 0; d0 < hd; d0 += 16) {  // four registers of the output row at a time
            const int nv = hd - d0 >= 16 ? 4 : (hd - d0) / 4;
            float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
            for (int t0 = 0; t0 < count; t0 += bs) {
                prefetch_ahead(base, bb, table, bs, voff, rowb, t0, count);
                const uint8_t *block = base + (size_t)table[t0 / bs] * bb + voff;
                const int n = count - t0 < bs ? count - t0 : bs;
                for (int j = 0; j < n; j++) {
                    const uint8_t *v = block + (size_t)j * rowb;
                    const float w = ph[t0 + j];
                    for (int k = 0; k < nv; k++) {
                        const int d = d0 + 4 * k;
                        const float32x4_t x = f16 ? vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)(v + 2 * (size_t)d))))
                                                  : vld1q_f32((const float *)(v + 4 * (size_t)d));
                        acc[k] = vfmaq_n_f32(acc[k], x, w);
                    }
                }
            }
            for (int k = 0; k < nv; k++) vst1q_f32(oh + d0 + 4 * k, acc[k]);
        }
    }
}
#endif

// MARK: - Entry points

/// The variant a call runs: the AVX-512 kernel where it takes the head size (`wide`), else AVX2 for head sizes
/// in whole 8-float registers (NEON: 4-float), else the scalar twin; heads over 256 floats (the row buffer) always
/// run scalar.
static bk_isa attention_isa(bk_isa isa, int hd, int wide) {
    bk_isa e = bk_effective_isa(isa);
    if (hd > 256) return BK_ISA_SCALAR;
    if (e == BK_ISA_AVX512 && !wide) e = BK_ISA_AVX2;
    if (e == BK_ISA_AVX2 && hd % 8 != 0) e = BK_ISA_SCALAR;
    if (e == BK_ISA_NEON_DOTPROD) e = BK_ISA_NEON;  // float work: the dot-product extension changes nothing
    if (e == BK_ISA_NEON && hd % 4 != 0) e = BK_ISA_SCALAR;
    return e;
}

void bk_attn_scores(bk_isa isa, int is_f16, const float *q, int group, int hd, float scale, const void *layer_base,
                    size_t block_bytes, const int32_t *table, int block_size, size_t k_offset, int count,
                    float *scores) {
    if (count <= 0 || group <= 0 || hd <= 0) return;
    const uint8_t *base = (const uint8_t *)layer_base;
#if BK_X86
    switch (attention_isa(isa, hd, hd == 64 || hd == 128)) {
    case BK_ISA_AVX512:
        scores_avx512(is_f16, q, group, hd, scale, base, block_bytes, table, block_size, k_offset, count, scores);
        return;
    case BK_ISA_AVX2:
        scores_avx2(is_f16, q, group, hd, scale, base, block_bytes, table, block_size, k_offset, count, scores);
        return;
    default: break;
    }
#elif BK_ARM
    if (attention_isa(isa, hd, 0) == BK_ISA_NEON) {
        scores_neon(is_f16, q, group, hd, scale, base, block_bytes, table, block_size, k_offset, count, scores);
        return;
    }
#else
    (void)isa;
#endif
    scores_scalar(is_f16, q, group, hd, scale, base, block_bytes, table, block_size, k_offset, count, scores);
}

void bk_attn_values(bk_isa isa, int is_f16, const float *p, int group, int hd, const void *layer_base,
                    size_t block_bytes, const int32_t *table, int block_size, size_t v_offset, int count,
                    float *out) {
    if (group <= 0 || hd <= 0) return;
    const uint8_t *base = (const uint8_t *)layer_base;
    if (count <= 0) {
        for (size_t i = 0; i < (size_t)group * hd; i++) out[i] = 0;
        return;
    }
#if BK_X86
    switch (attention_isa(isa, hd, hd % 64 == 0)) {
    case BK_ISA_AVX512:
        values_avx512(is_f16, p, group, hd, base, block_bytes, table, block_size, v_offset, count, out);
        return;
    case BK_ISA_AVX2:
        values_avx2(is_f16, p, group, hd, base, block_bytes, table, block_size, v_offset, count, out);
        return;
    default: break;
    }
#elif BK_ARM
    if (attention_isa(isa, hd, 0) == BK_ISA_NEON) {
        values_neon(is_f16, p, group, hd, base, block_bytes, table, block_size, v_offset, count, out);
        return;
    }
#else
    (void)isa;
#endif
    values_scalar(is_f16, p, group, hd, base, block_bytes, table, block_size, v_offset, count, out);
}
