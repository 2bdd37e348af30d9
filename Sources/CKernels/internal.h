// Shared definitions of the kernel translation units (not part of the public API).
#ifndef BK_INTERNAL_H
#define BK_INTERNAL_H

#include "CKernels.h"
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define BK_X86 1
#include <immintrin.h>
// Each variant is compiled for its own ISA so the rest of the binary stays baseline x86-64.
#define BK_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi,avx2,fma,f16c")))
#define BK_AVX2 __attribute__((target("avx2,fma,f16c")))
#else
#define BK_X86 0
#endif

#if defined(__aarch64__) && defined(__ARM_NEON)
#define BK_ARM 1
#include <arm_neon.h>
// The NEON variants need nothing beyond the AArch64 baseline; the `sdot` ones are compiled for ARMv8.2's dot
// product alone, so the rest of the binary runs on any ARMv8-A core.
#define BK_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#define BK_NEON
#else
#define BK_ARM 0
#endif

#define BK_INLINE static inline __attribute__((always_inline))

/// The ISA a request actually runs: the requested one if supported (of this architecture, at or below the
/// BATON_ISA cap), else the best usable one below it; an ISA of another architecture runs scalar.
bk_isa bk_effective_isa(bk_isa requested);

// MARK: - Quantized activation scratch layout (per vector; nbp = block count rounded up to even,
// nbo = block count in groups of 8 ("octets"), rounded up)
//   qs   int8  [nbp * 32]   the quants, blocks in order (scalar and AVX2 kernels)
//   dl   float [nbp * 8]    each block's scale repeated in 8 lanes (the int32 lanes of its AVX2 dot)
//   bias int32 [nbp * 8]    lane 0 of each block: the correction for weights used unsigned: -8·Σq for
//                           Q4_0 (nibble q stands for q - 8), -128·Σq for Q8_0 (x ^ 0x80 = x + 128); else 0
//   s2   float [16 * nbo]   [0, s_b] pairs, zero padded (AVX2's Q4_1 m·s term; AVX-512 reads s)
//   qo   int8  [nbo * 256]  AVX-512 octet layout: for octet o, operand k (0...3), block i (0...7):
//                           8 bytes = elements 8k..<8k+8 of block 8o+i
//   dlo  float [nbo * 16]   each octet block's scale in its 2 int32 lanes
//   bo   int32 [nbo * 16]   the bias above in lane 2i of octet block i
//   d, s float [nbp], sum int32 [nbp]
// Padding blocks have q = 0 and scale 0.
typedef struct bk_act_layout {
    int nb, nbp, nbo, s2;
    size_t qs, dl, bias, s2off, qo, dlo, bo, d, s, sum, stride;
} bk_act_layout;

BK_INLINE bk_act_layout bk_layout(int columns) {
    bk_act_layout l;
    l.nb = columns / 32;
    l.nbp = (l.nb + 1) & ~1;
    l.nbo = (l.nb + 7) / 8;
    l.s2 = 16 * l.nbo;
    l.qs = 0;
    l.dl = l.qs + (size_t)l.nbp * 32;
    l.bias = l.dl + (size_t)l.nbp * 32;
    l.s2off = l.bias + (size_t)l.nbp * 32;
    l.qo = l.s2off + (size_t)l.s2 * 4;
    l.dlo = l.qo + (size_t)l.nbo * 256;
    l.bo = l.dlo + (size_t)l.nbo * 64;
    l.d = l.bo + (size_t)l.nbo * 64;
    l.s = l.d + (size_t)l.nbp * 4;
    l.sum = l.s + (size_t)l.nbp * 4;
    l.stride = (l.sum + (size_t)l.nbp * 4 + 63) & ~(size_t)63;
    return l;
}

// kquants.c: Q5_0, Q5_1 and the K-quants, reached from the generic entry points.
/// Block bytes of a type kquants.c handles, else 0.
int bk_kq_block_bytes(bk_type t);
/// 1 for Q2_K ... Q6_K (q8_K activations).
int bk_kq_is_k(bk_type t);
/// Dequantizes for a kquants.c type and returns 1, else returns 0.
int bk_kq_dequantize_row(bk_type t, const void *wrow, float *dst, int count);
void bk_kq_quantize_act(const float *x, int columns, int batch, void *scratch);
size_t bk_kq_act_stride(int columns);
void bk_kq_matmul(bk_isa isa, bk_type t, const void *w, size_t row_bytes, int row_begin, int row_end, int columns,
                  const void *act, int batch, float *out, size_t out_stride);
// kquants_x16.c: interleaved copies of Q5_0, Q5_1, Q4_K and Q6_K (0 / -1 for other types).
int bk_kq_x16_group_block_bytes(bk_type t);
size_t bk_kq_x16_bytes(bk_type t, int rows, int columns);
int bk_kq_x16_pack(bk_type t, const void *w, size_t row_bytes, int rows, int columns, void *dst);
void bk_kq_matmul_x16(bk_isa isa, bk_type t, const void *packed, int row_begin, int row_end, int columns,
                      const void *act, int batch, float *out, size_t out_stride);

BK_INLINE uint16_t bk_load_u16(const void *p) { uint16_t v; memcpy(&v, p, 2); return v; }

#if BK_ARM
/// An f16 at `p` (any alignment) as f32, by the AArch64 conversion instruction (exact, as bk_f16_to_f32).
BK_INLINE float bk_load_f16(const void *p) { __fp16 h; memcpy(&h, p, 2); return (float)h; }
#endif

/// The lanes of a 16-lane (or 8-lane) loop step at element i of n: all of them, or the n - i left at the tail.
BK_INLINE uint16_t bk_tail16(size_t n, size_t i) { return n - i >= 16 ? (uint16_t)0xFFFF : (uint16_t)((1u << (n - i)) - 1); }
BK_INLINE uint8_t bk_tail8(size_t n, size_t i) { return n - i >= 8 ? (uint8_t)0xFF : (uint8_t)((1u << (n - i)) - 1); }

#endif
