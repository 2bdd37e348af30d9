// CKernels: the decode-path compute kernels (quantized mat-vec, f16 helpers) in C with intrinsics.
//
// Every SIMD kernel has variants selected at run time — on x86-64 AVX-512 VNNI, AVX2+FMA+F16C and portable
// scalar; on AArch64 NEON with the dot-product extension (`sdot`), plain NEON and scalar — so one binary runs on
// any CPU of its architecture (other architectures build scalar-only). Functions taking a `bk_isa` run exactly
// that variant (tests use it to compare each one with its scalar twin); pass `bk_best_isa()` in production.
// Asking for an ISA the CPU lacks, or one above the `BATON_ISA` cap, runs the best usable one below it (an ISA
// of another architecture runs scalar), so a call never faults; check `bk_isa_supported` first when it matters.
//
// Quantized mat-vec follows llama.cpp: activations are quantized to int8 blocks of 32 with one scale
// (`bk_quantize_act`, bit-identical to ggml's AVX2 `quantize_row_q8_0` / `quantize_row_q8_1`), then each
// weight block is multiplied in integers and scaled in f32.
#ifndef CKERNELS_H
#define CKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Instruction-set level of a kernel variant. Each architecture has three levels — scalar, then x86-64's AVX2 and
/// AVX-512 or AArch64's NEON and NEON with `sdot` — and a level includes the ones below it of its architecture.
typedef enum bk_isa {
    BK_ISA_SCALAR = 0,        ///< portable C (any architecture)
    BK_ISA_AVX2 = 1,          ///< AVX2 + FMA + F16C (Haswell, Zen and later)
    BK_ISA_AVX512 = 2,        ///< AVX-512 F/BW/VL/DQ + VNNI + VBMI + F16C (Ice Lake, Zen 4 and later)
    BK_ISA_NEON = 3,          ///< AArch64 Advanced SIMD (every ARMv8-A core)
    BK_ISA_NEON_DOTPROD = 4,  ///< NEON + the int8 dot product `sdot` (ARMv8.2 FEAT_DotProd: Cortex-A55/A76, Apple M1 and later)
} bk_isa;

/// Weight element types, numbered as ggml's `enum ggml_type`.
typedef enum bk_type {
    BK_TYPE_F32 = 0,
    BK_TYPE_F16 = 1,
    BK_TYPE_Q4_0 = 2,
    BK_TYPE_Q4_1 = 3,
    BK_TYPE_Q5_0 = 6,
    BK_TYPE_Q5_1 = 7,
    BK_TYPE_Q8_0 = 8,
    BK_TYPE_Q2_K = 10,
    BK_TYPE_Q3_K = 11,
    BK_TYPE_Q4_K = 12,
    BK_TYPE_Q5_K = 13,
    BK_TYPE_Q6_K = 14,
    BK_TYPE_BF16 = 30,
} bk_type;

/// Spin-wait hint (`pause` on x86, `yield` on AArch64) for busy-waiting threads.
static inline void bk_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

// MARK: - Choosing the ISA
//
// The kernels run the best level the CPU has, unless the environment variable `BATON_ISA` caps it (read once, at
// the first call of any function below): `auto` (or unset, or empty) for the CPU's best, else a level name of this
// architecture (`bk_isa_name`): x86-64 `scalar`, `avx2`, `avx512`; AArch64 `scalar`, `neon`, `neon-dotprod`.
// A value that names no level, or a level the CPU lacks, is an error (`bk_isa_error`): callers must refuse to
// run, and until they do every kernel runs scalar (never a variant the user did not ask for).

/// The best level this CPU (and build) runs, whatever `BATON_ISA` says (detected once).
bk_isa bk_cpu_isa(void);
/// The level the kernels run: the CPU's best, capped by `BATON_ISA`; scalar while `bk_isa_error` is set.
bk_isa bk_best_isa(void);
/// 1 if `BATON_ISA` chose the level (anything but unset, empty or `auto`), else 0.
int bk_isa_forced(void);
/// NULL if `BATON_ISA` is usable, else why not: a message naming the variable, its value, the values allowed on
/// this architecture and the level this CPU runs. Static storage; the same pointer on every call.
const char *bk_isa_error(void);
/// 1 if `isa` is of this architecture and at or below `bk_best_isa()`, else 0.
int bk_isa_supported(bk_isa isa);
/// The level's `BATON_ISA` spelling: "scalar", "avx2", "avx512", "neon", "neon-dotprod" ("unknown" otherwise).
const char *bk_isa_name(bk_isa isa);
/// Parses a `BATON_ISA` value against a CPU whose best level is `cpu` (what `bk_best_isa` does with the
/// environment; separate so tests can try any value): 0 and the level in *isa (`cpu` itself for unset/""/"auto"),
/// or -1 with the reason in `message` (always NUL-terminated, truncated to `size`).
int bk_isa_parse(const char *value, bk_isa cpu, bk_isa *isa, char *message, size_t size);

// MARK: - f16 helpers (IEEE binary16; round-to-nearest-even; NaN stays NaN, quieted)

float bk_f16_to_f32(uint16_t h);
uint16_t bk_f32_to_f16(float f);
void bk_convert_f32_to_f16(bk_isa isa, const float *src, uint16_t *dst, size_t n);
void bk_convert_f16_to_f32(bk_isa isa, const uint16_t *src, float *dst, size_t n);
/// Σ a[i] * b[i] with b in f16.
float bk_dot_f16(bk_isa isa, const float *a, const uint16_t *b, size_t n);
/// y[i] += alpha * x[i] with x in f16.
void bk_axpy_f16(bk_isa isa, float alpha, const uint16_t *x, float *y, size_t n);
float bk_dot_f32(bk_isa isa, const float *a, const float *b, size_t n);
void bk_axpy_f32(bk_isa isa, float alpha, const float *x, float *y, size_t n);

/// y[i] = e^x[i] by Cephes' polynomial after range reduction by ln 2: within 2 ulp of expf over [-87, 88];
/// inputs below -87.3 give ~0, above 88.37 saturate at ~1.7e38. `x` and `y` may be the same buffer.
void bk_exp(bk_isa isa, const float *x, float *y, size_t n);
/// In-place softmax of x[0..<n] (e^x by `bk_exp`'s polynomial).
void bk_softmax(bk_isa isa, float *x, size_t n);
/// gate[i] = silu(gate[i]) · up[i] = gate[i] / (1 + e^-gate[i]) · up[i], with e^x as `bk_exp`.
void bk_swiglu(bk_isa isa, float *gate, const float *up, size_t n);
/// y[i] = x[i] · (1 / √(mean(x²) + epsilon)) · gain[i], as ggml's RMSNorm: each square rounded to float and the
/// squares summed in double (here in a fixed order of eight lanes, so every ISA gives the same bits). `y` may be `x`.
void bk_rms_norm(bk_isa isa, const float *x, const float *gain, float epsilon, float *y, size_t n);
/// Index of the first largest element of x[0..<n] (NaNs never win; 0 when nothing exceeds -infinity).
size_t bk_argmax(bk_isa isa, const float *x, size_t n);

// MARK: - Decode attention over a paged KV cache

// One query group (the `group` query heads that share one KV head, `hd` floats each, adjacent in `q`) of one
// sequence, over its first `count` cached positions. Position t's row of this KV head is at
//   layer_base + table[t / block_size] * block_bytes + offset + (t % block_size) * row_bytes
// with row_bytes = hd * (is_f16 ? 2 : 4): keys at `k_offset`, values at `v_offset` inside each block.

/// scores[h * count + t] = scale · Σ_d q[h * hd + d] · K_t[d]
void bk_attn_scores(bk_isa isa, int is_f16, const float *q, int group, int hd, float scale, const void *layer_base,
                    size_t block_bytes, const int32_t *table, int block_size, size_t k_offset, int count,
                    float *scores);
/// out[h * hd + d] = Σ_t p[h * count + t] · V_t[d]
void bk_attn_values(bk_isa isa, int is_f16, const float *p, int group, int hd, const void *layer_base,
                    size_t block_bytes, const int32_t *table, int block_size, size_t v_offset, int count,
                    float *out);

// MARK: - Quantized activations

/// Bytes of scratch `bk_quantize_act` needs for `batch` vectors of `columns` (a multiple of 32) floats.
/// The scratch should be 64-byte aligned (works unaligned, slower).
size_t bk_act_bytes(int columns, int batch);

/// Quantizes `batch` vectors (x[b * columns + c]) into `scratch` for a mat-vec against weights of `wtype`
/// (one of the Q types; the integer correction terms depend on it). Bit-identical on every ISA.
/// Per block of 32: d = amax / 127 (stored rounded through f16, as ggml keeps it), q = round-half-even(
/// x * 127 / amax), s = f16(d * Σq) — ggml's q8_1 `s`.
void bk_quantize_act(bk_isa isa, bk_type wtype, const float *x, int columns, int batch, void *scratch);

/// Reads back block `block` of vector `vector` from quantized scratch (for tests and tooling).
void bk_act_block(const void *scratch, int columns, int vector, int block,
                  int8_t qs[32], float *d, float *s, int32_t *sum);

/// Rounds `rows` vectors of `columns` (a multiple of 32) floats through 8-bit blocks and back, exactly as
/// `bk_quantize_act` rounds them: y = f16(amax/127) · round-half-even(x · 127/amax). The f32 prefill path
/// applies it before each product with quantized weights, so its products see the activations that
/// llama.cpp's (and Baton's decode path's) integer kernels see. `x` and `y` may be the same buffer.
/// AVX2 (used for AVX2 and AVX-512), NEON and scalar variants give bit-identical results.
void bk_q8_roundtrip(bk_isa isa, const float *x, float *y, int columns, int rows);

// MARK: - Mat-vec

/// For rows r in [row_begin, row_end) and vectors v in [0, batch):
///   out[v * out_stride + r] = Σ_c W[r, c] * x_v[c]
/// where `w` points at row 0 and rows are `row_bytes` apart. Each weight block is read once for all
/// vectors (batch ≤ 8 per pass; larger batches take several passes). For Q types `act` is scratch filled by
/// `bk_quantize_act` for this `wtype`; for F32/F16/BF16 it is the f32 input (x[v * columns + c]).
/// For a given ISA each vector's result is bit-identical whatever the batch size.
void bk_matmul(bk_isa isa, bk_type wtype, const void *w, size_t row_bytes, int row_begin, int row_end,
               int columns, const void *act, int batch, float *out, size_t out_stride);

/// Sixteen-row interleaved copies of quantized weights (Q4_0, Q4_1, Q8_0; Q5_0, Q5_1, Q4_K, Q6_K in kquants_x16.c), for the compute-bound batched
/// mat-vec: the same bytes as the GGUF blocks, reordered so one int32 lane holds one row (layout in matmul.c).
/// Bytes of one group of 16 rows × one block of 32 columns (0 for other types).
size_t bk_x16_group_block_bytes(bk_type wtype);
/// Bytes of the copy of `rows` × `columns` weights; 0 unless rows is a multiple of 16 and columns of the block size.
size_t bk_x16_bytes(bk_type wtype, int rows, int columns);
/// Writes the copy of the weights at `w` (rows `row_bytes` apart) to `dst` (`bk_x16_bytes` bytes).
/// Returns 0, or -1 for a type or shape it does not take.
int bk_x16_pack(bk_type wtype, const void *w, size_t row_bytes, int rows, int columns, void *dst);
/// `bk_matmul` over a copy made by `bk_x16_pack`: row_begin and row_end multiples of 16, `act` from
/// `bk_quantize_act` for `wtype`. Each vector's result is bit-identical whatever the batch; AVX-512 and AVX2 run
/// interleaved kernels (the same f32 steps, so the same results), other ISAs the scalar twins' arithmetic.
void bk_matmul_x16(bk_isa isa, bk_type wtype, const void *packed, int row_begin, int row_end, int columns,
                   const void *act, int batch, float *out, size_t out_stride);

/// 1 where `isa`'s interleaved kernel for `wtype` beats the in-place one (measurements in matmul.c), so an engine
/// should make copies; 0 elsewhere (types without a layout, ISAs that read the copy with scalar code).
int bk_x16_preferred(bk_isa isa, bk_type wtype);

/// The ceiling of the quantized kernels: runs `iterations` rounds of independent, register-only int8
/// dot-product instructions as `isa`'s mat-vec uses them (AVX-512: vpdpbusd, 64 multiply-accumulates each;
/// AVX2: vpmaddubsw + vpmaddwd + vpaddd, 32; NEON with sdot: sdot, 16; NEON: smull + smlal2 + sadalp, 16) and
/// returns how many multiply-accumulates it did (0 on the scalar ISA, which has no such instruction). Timing a
/// call gives the machine's peak; `sink` defeats dead-code removal.
uint64_t bk_int8_dot_burn(bk_isa isa, uint64_t iterations, int32_t *sink);

/// Scalar twins of one row × one quantized vector (vector 0 of `act`), as llama.cpp's `ggml_vec_dot_*`.
float bk_q4_0_dot_scalar(const void *wrow, const void *act, int columns);
float bk_q4_1_dot_scalar(const void *wrow, const void *act, int columns);
float bk_q8_0_dot_scalar(const void *wrow, const void *act, int columns);

/// Dequantizes `count` consecutive elements of one row (count a multiple of the type's block size).
void bk_dequantize_row(bk_isa isa, bk_type wtype, const void *wrow, float *dst, int count);

// MARK: - Q5_0, Q5_1 and K-quants (kquants.c; block layouts documented there)
//
// Q5_0 / Q5_1 take the q8_0 / q8_1 activations above. The K-quants (Q2_K ... Q6_K, rows of whole 256-element
// super-blocks) take q8_K activations, which `bk_quantize_act` makes for those weight types in the same scratch
// (`bk_act_bytes` covers both): per 256 elements d = 1 / (−127 / x_max) in f32, q = ggml's nearest_int(x · −127 /
// x_max) (round half to even) capped at 127, and the sum of every 16 q, exactly ggml's quantize_row_q8_K.

/// Reads back super-block `block` of vector `vector` from q8_K scratch (tests and tooling).
void bk_act_k_block(const void *scratch, int columns, int vector, int block, int8_t qs[256], float *d,
                    int16_t bsums[16]);
/// Rounds `rows` vectors of `columns` (a multiple of 256) floats through q8_K and back (y = d · q), as the
/// decode path's activations for K-quant weights are rounded; the prefill path applies it before products with
/// K-quant weights. `x` and `y` may be the same buffer.
void bk_q8k_roundtrip(const float *x, float *y, int columns, int rows);
/// Scalar twin of one row × one quantized vector for Q5_0, Q5_1 or a K-quant: exact integer dots per block
/// (per super-block for K-quants: S = Σ scale·(Σ q·y − offset·bsum), M = Σ min·bsum), scaled in f32 block by block.
float bk_kq_dot_scalar(bk_type wtype, const void *wrow, const void *act, int columns);

// MARK: - CRC32C (used by the KV transport; independent of the kernels above)

/// CRC32C (Castagnoli) of `len` bytes at `data` (any alignment), continuing from `crc`: pass 0 to start,
/// and the previous result to checksum a buffer in pieces. Uses SSE4.2 `crc32` (x86-64) or the ARMv8 CRC
/// extension (AArch64) when the CPU has it (detected once at load), else `bk_crc32c_portable`.
uint32_t bk_crc32c(uint32_t crc, const void *data, size_t len);
/// The same checksum with portable C (slicing-by-8), whatever the CPU.
uint32_t bk_crc32c_portable(uint32_t crc, const void *data, size_t len);
/// Copies `len` bytes from `src` to `dst` (not overlapping, any alignment) and returns their CRC32C,
/// continuing from `crc` as `bk_crc32c` does, reading the source once.
uint32_t bk_crc32c_copy(uint32_t crc, void *dst, const void *src, size_t len);
/// The same with portable C, whatever the CPU.
uint32_t bk_crc32c_copy_portable(uint32_t crc, void *dst, const void *src, size_t len);
/// 1 if `bk_crc32c` uses the CPU's CRC32C instruction (SSE4.2 or ARMv8 CRC), else 0.
int bk_crc32c_hardware(void);

#ifdef __cplusplus
}
#endif

#endif
