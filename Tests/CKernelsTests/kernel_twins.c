// The C kernels against their scalar twins, in C, so they can run where Swift cannot: every SIMD variant this CPU
// runs (under BATON_ISA, those at or below the level it forces) on random inputs, exact where the Swift kernel tests
// demand bit-identity (activation quantization, the q8 roundtrip, RMSNorm, argmax, f16 conversion) and within the
// same bounds where they bound (mat-vec, interleaved mat-vec, attention, dot/axpy, exp/softmax/SwiGLU).
//
// Deploy/scripts/test-kernels.sh builds it with the kernel sources natively (each x86-64 level in turn) and with
// aarch64-linux-gnu-gcc for arm64, run under qemu-aarch64 with and without the dot-product extension.
//
// Usage: kernel_twins [--expect-cpu LEVEL]   (fails unless the CPU's detected level is LEVEL)
//        kernel_twins --cpu                  (prints the detected level and exits)
// Prints each failed check, then "N passed, M failed"; exits 1 on any failure.
#include "CKernels.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

static int check(int ok, const char *format, ...) {
    if (ok) {
        passed++;
        return 1;
    }
    if (++failed <= 40) {
        va_list args;
        va_start(args, format);
        printf("FAIL ");
        vprintf(format, args);
        printf("\n");
        va_end(args);
    }
    return 0;
}

// MARK: - Inputs

static uint64_t rng_state = 1;
static uint64_t next_random(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/// Uniform in [-scale, scale).
static float uniform(float scale) { return ((float)(next_random() >> 40) / (float)(1 << 23) - 1.0f) * scale; }
static void fill(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = uniform(scale);
}

static int block_bytes(bk_type t) { return t == BK_TYPE_Q4_0 ? 18 : t == BK_TYPE_Q4_1 ? 20 : t == BK_TYPE_Q8_0 ? 34 : 0; }
static int is_quantized(bk_type t) { return block_bytes(t) > 0; }
static size_t row_bytes(bk_type t, int columns) {
    if (is_quantized(t)) return (size_t)(columns / 32) * (size_t)block_bytes(t);
    return (size_t)columns * (t == BK_TYPE_F32 ? 4 : 2);
}
static const char *type_name(bk_type t) {
    switch (t) {
    case BK_TYPE_Q4_0: return "Q4_0";
    case BK_TYPE_Q4_1: return "Q4_1";
    case BK_TYPE_Q8_0: return "Q8_0";
    case BK_TYPE_F16: return "F16";
    case BK_TYPE_BF16: return "BF16";
    default: return "F32";
    }
}

static void put_f16(uint8_t *p, float v) {
    uint16_t h = bk_f32_to_f16(v);
    memcpy(p, &h, 2);
}
static float get_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return bk_f16_to_f32(h);
}

/// Random weights in GGUF layout: random quant bytes (every nibble, Q8_0 including -128), scales |d| ≤ 0.02,
/// minimums |m| ≤ 0.1; float types within ±0.5.
static uint8_t *random_weights(bk_type t, int rows, int columns) {
    const size_t rb = row_bytes(t, columns), total = rb * (size_t)rows;
    uint8_t *w = malloc(total);
    for (size_t i = 0; i < total; i++) w[i] = (uint8_t)next_random();
    if (is_quantized(t)) {
        for (size_t b = 0; b < total / (size_t)block_bytes(t); b++) {
            uint8_t *blk = w + b * (size_t)block_bytes(t);
            put_f16(blk, uniform(0.02f));
            if (t == BK_TYPE_Q4_1) put_f16(blk + 2, uniform(0.1f));
        }
    } else {
        for (size_t i = 0; i < (size_t)rows * (size_t)columns; i++) {
            const float v = uniform(0.5f);
            if (t == BK_TYPE_F32) memcpy(w + 4 * i, &v, 4);
            else if (t == BK_TYPE_F16) put_f16(w + 2 * i, v);
            else {
                uint32_t u;
                memcpy(&u, &v, 4);
                const uint16_t h = (uint16_t)(u >> 16);
                memcpy(w + 2 * i, &h, 2);
            }
        }
    }
    return w;
}

/// Σ over blocks of |the exact integer block term| · |d_w·d_x| (+ |m·s| for Q4_1): bounds the float error of any
/// summation order of the kernels' per-block terms (as QuantizedKernelTests.termBound).
static float term_bound(bk_type t, const uint8_t *row, const void *act, int columns, int vector) {
    float bound = 0;
    for (int b = 0; b < columns / 32; b++) {
        const uint8_t *blk = row + (size_t)b * (size_t)block_bytes(t);
        int8_t qs[32];
        float d, s;
        int32_t sum;
        bk_act_block(act, columns, vector, b, qs, &d, &s, &sum);
        int32_t ints = 0;
        for (int j = 0; j < 32; j++) {
            int q;
            if (t == BK_TYPE_Q8_0) q = (int8_t)blk[2 + j];
            else {
                const uint8_t byte = blk[(t == BK_TYPE_Q4_1 ? 4 : 2) + j % 16];
                q = j < 16 ? byte & 0x0F : byte >> 4;
                if (t == BK_TYPE_Q4_0) q -= 8;
            }
            ints += abs(q * qs[j]);
        }
        bound += fabsf(get_f16(blk) * d) * (float)ints;
        if (t == BK_TYPE_Q4_1) bound += fabsf(get_f16(blk + 2) * s);
    }
    return bound;
}

// MARK: - The ISAs covered

static bk_isa covered[3];
static int covered_count;

/// Prints what runs and what is skipped, and why; fills `covered` with this architecture's levels that run here.
static void choose_isas(void) {
#if defined(__x86_64__)
    const bk_isa all[] = {BK_ISA_SCALAR, BK_ISA_AVX2, BK_ISA_AVX512};
#elif defined(__aarch64__)
    const bk_isa all[] = {BK_ISA_SCALAR, BK_ISA_NEON, BK_ISA_NEON_DOTPROD};
#else
    const bk_isa all[] = {BK_ISA_SCALAR};
#endif
    const int count = (int)(sizeof all / sizeof all[0]);
    int cpu = 0;
    for (int i = 0; i < count; i++)
        if (all[i] == bk_cpu_isa()) cpu = i;
    printf("CPU runs up to %s; kernels run %s%s; covering:", bk_isa_name(bk_cpu_isa()), bk_isa_name(bk_best_isa()),
           bk_isa_forced() ? " (BATON_ISA)" : "");
    for (int i = 0; i < count; i++)
        if (bk_isa_supported(all[i])) {
            covered[covered_count++] = all[i];
            printf(" %s", bk_isa_name(all[i]));
        }
    printf("\n");
    for (int i = 0; i < count; i++)
        if (!bk_isa_supported(all[i]))
            printf("skipping %s: %s\n", bk_isa_name(all[i]), i <= cpu ? "BATON_ISA caps the kernels below it" : "this CPU lacks it");
}

// MARK: - f16 and vector kernels

static void test_f16(void) {
    float *f = malloc(65536 * sizeof(float)), *g = malloc(65536 * sizeof(float));
    uint16_t *h = malloc(65536 * 2), *back = malloc(65536 * 2);
    for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    bk_convert_f16_to_f32(BK_ISA_SCALAR, h, f, 65536);
    for (int k = 0; k < covered_count; k++) {
        const bk_isa isa = covered[k];
        bk_convert_f16_to_f32(isa, h, g, 65536);
        int bad = 0;
        for (int i = 0; i < 65536; i++) {
            if (isnan(f[i]) ? !isnan(g[i]) : memcmp(&f[i], &g[i], 4) != 0) bad++;
        }
        check(bad == 0, "f16 -> f32 %s: %d patterns differ from the scalar twin", bk_isa_name(isa), bad);
        bk_convert_f32_to_f16(isa, g, back, 65536);
        bad = 0;
        for (int i = 0; i < 65536; i++) {
            const int nan = (i & 0x7C00) == 0x7C00 && (i & 0x03FF);
            if (back[i] != (nan ? (i | 0x0200) : i)) bad++;
        }
        check(bad == 0, "f16 -> f32 -> f16 %s: %d patterns do not round-trip (NaNs quieted)", bk_isa_name(isa), bad);
        // Random magnitudes over the whole f16 range and the exact halfway points between neighbours.
        enum { N = 20000 + 890 };
        static float x[N];
        static uint16_t out[N];
        for (int i = 0; i < 20000; i++) x[i] = uniform(1.0f) * ldexpf(1.0f, (int)(next_random() % 40) - 28);
        for (int i = 0; i < 890; i++) {
            const int a = 37 * i;
            x[20000 + i] = (bk_f16_to_f32((uint16_t)a) + bk_f16_to_f32((uint16_t)(a + 1))) / 2;
        }
        bk_convert_f32_to_f16(isa, x, out, N);
        bad = 0;
        for (int i = 0; i < N; i++) bad += out[i] != bk_f32_to_f16(x[i]);
        check(bad == 0, "f32 -> f16 %s: %d of %d roundings differ from the scalar twin", bk_isa_name(isa), bad, N);
    }
    free(f), free(g), free(h), free(back);
}

static const size_t counts[] = {0, 1, 3, 4, 7, 8, 15, 16, 17, 33, 64, 100, 1000, 1537};

static void test_dot_axpy(void) {
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        const size_t n = counts[c];
        float *a = malloc((n + 1) * 4), *b = malloc((n + 1) * 4), *y0 = malloc((n + 1) * 4), *y = malloc((n + 1) * 4),
              *ys = malloc((n + 1) * 4);
        uint16_t *bh = malloc((n + 1) * 2);
        fill(a, n, 1), fill(b, n, 1), fill(y0, n, 1);
        bk_convert_f32_to_f16(BK_ISA_SCALAR, b, bh, n);
        float magnitude = 0;
        for (size_t i = 0; i < n; i++) magnitude += fabsf(a[i] * b[i]);
        const float tolerance = (float)(n + 4) * FLT_EPSILON * magnitude;
        const float dot = bk_dot_f32(BK_ISA_SCALAR, a, b, n), doth = bk_dot_f16(BK_ISA_SCALAR, a, bh, n);
        for (int k = 1; k < covered_count; k++) {
            const bk_isa isa = covered[k];
            check(fabsf(bk_dot_f32(isa, a, b, n) - dot) <= tolerance, "dot f32 %s n %zu", bk_isa_name(isa), n);
            check(fabsf(bk_dot_f16(isa, a, bh, n) - doth) <= tolerance, "dot f16 %s n %zu", bk_isa_name(isa), n);
            for (int half = 0; half < 2; half++) {
                memcpy(y, y0, n * 4), memcpy(ys, y0, n * 4);
                if (half) {
                    bk_axpy_f16(BK_ISA_SCALAR, 0.75f, bh, ys, n);
                    bk_axpy_f16(isa, 0.75f, bh, y, n);
                } else {
                    bk_axpy_f32(BK_ISA_SCALAR, 0.75f, a, ys, n);
                    bk_axpy_f32(isa, 0.75f, a, y, n);
                }
                int bad = 0;
                for (size_t i = 0; i < n; i++) bad += fabsf(y[i] - ys[i]) > 2 * FLT_EPSILON * (fabsf(y0[i]) + 1);
                check(bad == 0, "axpy %s %s n %zu: %d elements off", half ? "f16" : "f32", bk_isa_name(isa), n, bad);
            }
        }
        free(a), free(b), free(y0), free(y), free(ys), free(bh);
    }
}

/// |a - b| within `ulps` units in the last place of b (or of the smallest normal, near zero).
static int near_ulps(float a, float b, float ulps) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    const float unit = fmaxf(fabsf(b), FLT_MIN) * FLT_EPSILON;
    return fabsf(a - b) <= ulps * unit;
}

static void test_elementwise(void) {
    const size_t sizes[] = {0, 1, 3, 4, 5, 7, 8, 15, 16, 17, 100, 1536, 49152};
    for (size_t c = 0; c < sizeof sizes / sizeof sizes[0]; c++) {
        const size_t n = sizes[c];
        float *x = malloc((n + 4) * 4), *up = malloc((n + 4) * 4), *want = malloc((n + 4) * 4), *got = malloc((n + 4) * 4);
        fill(x, n, 12), fill(up, n, 3);
        if (n > 3) x[0] = -100, x[1] = 95, x[2] = 0;  // past both clamps of exp, and zero
        for (int k = 1; k < covered_count; k++) {
            const bk_isa isa = covered[k];
            int bad = 0;
            bk_exp(BK_ISA_SCALAR, x, want, n);
            bk_exp(isa, x, got, n);
            for (size_t i = 0; i < n; i++) bad += !near_ulps(got[i], want[i], 2);
            check(bad == 0, "exp %s n %zu: %d elements beyond 2 ulp", bk_isa_name(isa), n, bad);
            memcpy(want, x, n * 4), memcpy(got, x, n * 4);
            bk_swiglu(BK_ISA_SCALAR, want, up, n);
            bk_swiglu(isa, got, up, n);
            bad = 0;
            for (size_t i = 0; i < n; i++) bad += !near_ulps(got[i], want[i], 4);
            check(bad == 0, "swiglu %s n %zu: %d elements beyond 4 ulp", bk_isa_name(isa), n, bad);
            memcpy(want, x, n * 4), memcpy(got, x, n * 4);
            bk_softmax(BK_ISA_SCALAR, want, n);
            bk_softmax(isa, got, n);
            bad = 0;  // the sum's order differs: every probability within (n + 8) ulp of its own size
            for (size_t i = 0; i < n; i++) bad += fabsf(got[i] - want[i]) > (float)(n + 8) * FLT_EPSILON * want[i] + 1e-30f;
            check(bad == 0, "softmax %s n %zu: %d elements off", bk_isa_name(isa), n, bad);
        }
        free(x), free(up), free(want), free(got);
    }
}

static void test_rms_norm(void) {
    const size_t sizes[] = {1, 7, 8, 9, 16, 17, 576, 2048};
    for (size_t c = 0; c < sizeof sizes / sizeof sizes[0]; c++) {
        const size_t n = sizes[c];
        float *x = malloc(n * 4), *gain = malloc(n * 4), *want = malloc(n * 4), *got = malloc(n * 4);
        fill(x, n, 40), fill(gain, n, 2);
        bk_rms_norm(BK_ISA_SCALAR, x, gain, 1e-5f, want, n);
        for (int k = 0; k < covered_count; k++) {
            bk_rms_norm(covered[k], x, gain, 1e-5f, got, n);
            check(memcmp(got, want, n * 4) == 0, "rms_norm %s n %zu: not the scalar twin's bits", bk_isa_name(covered[k]), n);
            memcpy(got, x, n * 4);
            bk_rms_norm(covered[k], got, gain, 1e-5f, got, n);
            check(memcmp(got, want, n * 4) == 0, "rms_norm in place %s n %zu", bk_isa_name(covered[k]), n);
        }
        free(x), free(gain), free(want), free(got);
    }
}

static void test_argmax(void) {
    enum { CASES = 10 };
    const size_t sizes[CASES] = {0, 1, 3, 15, 16, 17, 35, 64, 1000, 49152};
    for (int c = 0; c < CASES; c++) {
        const size_t n = sizes[c];
        float *x = malloc((n + 1) * 4);
        fill(x, n, 1);
        if (n == 3) x[0] = x[1] = x[2] = NAN;
        if (n == 35) x[34] = 9;                                  // the maximum in the tail
        if (n == 64) x[3] = NAN, x[40] = 2, x[41] = NAN;          // NaNs never win
        if (n == 1000) x[900] = 7, x[37] = 7, x[512] = 7;         // the first of equal maxima, in different lanes
        if (n == 17) for (size_t i = 0; i < n; i++) x[i] = i == 9 ? NAN : -INFINITY;
        size_t want = 0;
        float value = -INFINITY;
        for (size_t i = 0; i < n; i++)
            if (x[i] > value) value = x[i], want = i;
        for (int k = 0; k < covered_count; k++)
            check(bk_argmax(covered[k], x, n) == want, "argmax %s n %zu", bk_isa_name(covered[k]), n);
        free(x);
    }
}

// MARK: - Quantized activations and mat-vec

static const bk_type qtypes[] = {BK_TYPE_Q4_0, BK_TYPE_Q4_1, BK_TYPE_Q8_0};
static const bk_type alltypes[] = {BK_TYPE_Q4_0, BK_TYPE_Q4_1, BK_TYPE_Q8_0, BK_TYPE_F16, BK_TYPE_F32, BK_TYPE_BF16};

static void test_quantize(void) {
    const int columns_list[] = {32, 64, 96, 224, 576, 800, 1536};
    for (int t = 0; t < 3; t++) {
        for (size_t c = 0; c < sizeof columns_list / sizeof columns_list[0]; c++) {
            const int columns = columns_list[c], batch = 3;
            float *x = malloc((size_t)columns * batch * 4);
            fill(x, (size_t)columns * batch, 5);
            x[0] = 127, x[1] = 2.5f, x[2] = 3.5f, x[3] = -2.5f;  // exact ties in block 0
            const size_t bytes = bk_act_bytes(columns, batch);
            uint8_t *want = calloc(1, bytes), *got = calloc(1, bytes);
            bk_quantize_act(BK_ISA_SCALAR, qtypes[t], x, columns, batch, want);
            int8_t qs[32];
            float d, s;
            int32_t sum;
            bk_act_block(want, columns, 0, 0, qs, &d, &s, &sum);
            check(qs[0] == 127 && qs[1] == 2 && qs[2] == 4 && qs[3] == -2, "quantize rounds ties to even");
            for (int k = 1; k < covered_count; k++) {
                memset(got, 0, bytes);  // as `want`: the scratch has padding no variant writes
                bk_quantize_act(covered[k], qtypes[t], x, columns, batch, got);
                check(memcmp(got, want, bytes) == 0, "quantized activations %s %s %d columns: not the scalar twin's bytes",
                      bk_isa_name(covered[k]), type_name(qtypes[t]), columns);
            }
            // The f32 prefill path's rounding: the same values, written back as floats.
            float *rw = malloc((size_t)columns * batch * 4), *rg = malloc((size_t)columns * batch * 4);
            bk_q8_roundtrip(BK_ISA_SCALAR, x, rw, columns, batch);
            int bad = 0;
            for (int v = 0; v < batch; v++)
                for (int b = 0; b < columns / 32; b++) {
                    bk_act_block(want, columns, v, b, qs, &d, &s, &sum);
                    for (int j = 0; j < 32; j++) bad += rw[(size_t)v * columns + 32 * b + j] != d * (float)qs[j];
                }
            check(bad == 0, "q8 roundtrip equals the dequantized activations (%d off)", bad);
            for (int k = 1; k < covered_count; k++) {
                bk_q8_roundtrip(covered[k], x, rg, columns, batch);
                check(memcmp(rg, rw, (size_t)columns * batch * 4) == 0, "q8 roundtrip %s %d columns: not the scalar twin's bits",
                      bk_isa_name(covered[k]), columns);
            }
            free(x), free(want), free(got), free(rw), free(rg);
        }
    }
}

/// For every covered ISA: `out` (rows × batch, from `run`) within 2·(blocks + 16) ulp of the row's term bound of
/// the scalar twin's.
static void expect_near_scalar(bk_type t, const char *what, bk_isa isa, const uint8_t *w, int rows, int columns,
                               const void *act, int batch, const float *got, const float *want) {
    const float nb = (float)(columns / 32);
    int bad = 0;
    for (int v = 0; v < batch; v++)
        for (int r = 0; r < rows; r++) {
            const size_t i = (size_t)v * rows + r;
            const float bound = term_bound(t, w + (size_t)r * row_bytes(t, columns), act, columns, v);
            if (!(fabsf(got[i] - want[i]) <= 2 * (nb + 16) * FLT_EPSILON * bound)) {
                if (bad++ == 0)
                    printf("  %s %s %s %dx%d vector %d row %d: %g vs %g\n", what, bk_isa_name(isa), type_name(t), rows,
                           columns, v, r, got[i], want[i]);
            }
        }
    check(bad == 0, "%s %s %s %dx%d batch %d: %d results beyond the bound", what, bk_isa_name(isa), type_name(t), rows,
          columns, batch, bad);
}

static void test_matmul(void) {
    const int shapes[][2] = {{96, 1536}, {160, 576}, {37, 160}, {5, 32}, {19, 96}, {7, 800}, {9, 1024}};
    for (int t = 0; t < 3; t++) {
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const int rows = shapes[s][0], columns = shapes[s][1], batch = rows * columns > 100000 ? 3 : 8;
            uint8_t *w = random_weights(qtypes[t], rows, columns);
            float *x = malloc((size_t)columns * batch * 4);
            fill(x, (size_t)columns * batch, 2);
            void *act = malloc(bk_act_bytes(columns, batch));
            bk_quantize_act(BK_ISA_SCALAR, qtypes[t], x, columns, batch, act);
            float *want = malloc((size_t)rows * batch * 4), *got = malloc((size_t)rows * batch * 4);
            bk_matmul(BK_ISA_SCALAR, qtypes[t], w, row_bytes(qtypes[t], columns), 0, rows, columns, act, batch, want, rows);
            for (int k = 1; k < covered_count; k++) {
                for (int i = 0; i < rows * batch; i++) got[i] = NAN;
                bk_matmul(covered[k], qtypes[t], w, row_bytes(qtypes[t], columns), 0, rows, columns, act, batch, got, rows);
                expect_near_scalar(qtypes[t], "mat-vec", covered[k], w, rows, columns, act, batch, got, want);
            }
            // The interleaved copy, where the shape takes one (rows in groups of 16).
            const size_t xbytes = bk_x16_bytes(qtypes[t], rows, columns);
            if (xbytes) {
                void *packed = malloc(xbytes);
                check(bk_x16_pack(qtypes[t], w, row_bytes(qtypes[t], columns), rows, columns, packed) == 0, "x16 pack");
                for (int k = 0; k < covered_count; k++) {
                    for (int i = 0; i < rows * batch; i++) got[i] = NAN;
                    bk_matmul_x16(covered[k], qtypes[t], packed, 0, rows, columns, act, batch, got, rows);
                    expect_near_scalar(qtypes[t], "interleaved mat-vec", covered[k], w, rows, columns, act, batch, got, want);
                }
                free(packed);
            }
            free(w), free(x), free(act), free(want), free(got);
        }
    }
    // Float weights: within (columns + 4) ulp of Σ|w·x| of the scalar twin.
    for (int t = 3; t < 6; t++) {
        const int rows = 37, columns = 163, batch = 5;
        uint8_t *w = random_weights(alltypes[t], rows, columns);
        float *x = malloc((size_t)columns * batch * 4), *want = malloc((size_t)rows * batch * 4), *got = malloc((size_t)rows * batch * 4);
        fill(x, (size_t)columns * batch, 2);
        float *wf = malloc((size_t)rows * columns * 4);
        for (int r = 0; r < rows; r++) bk_dequantize_row(BK_ISA_SCALAR, alltypes[t], w + (size_t)r * row_bytes(alltypes[t], columns), wf + (size_t)r * columns, columns);
        bk_matmul(BK_ISA_SCALAR, alltypes[t], w, row_bytes(alltypes[t], columns), 0, rows, columns, x, batch, want, rows);
        for (int k = 1; k < covered_count; k++) {
            bk_matmul(covered[k], alltypes[t], w, row_bytes(alltypes[t], columns), 0, rows, columns, x, batch, got, rows);
            int bad = 0;
            for (int v = 0; v < batch; v++)
                for (int r = 0; r < rows; r++) {
                    float magnitude = 0;
                    for (int c = 0; c < columns; c++) magnitude += fabsf(wf[(size_t)r * columns + c] * x[(size_t)v * columns + c]);
                    const size_t i = (size_t)v * rows + r;
                    bad += !(fabsf(got[i] - want[i]) <= (float)(columns + 4) * FLT_EPSILON * magnitude);
                }
            check(bad == 0, "mat-vec %s %s: %d results beyond the bound", bk_isa_name(covered[k]), type_name(alltypes[t]), bad);
        }
        free(w), free(x), free(want), free(got), free(wf);
    }
}

static void test_batch_invariance(void) {
    const int rows = 48, columns = 160, batch = 11;
    for (int t = 0; t < 6; t++) {
        const bk_type type = alltypes[t];
        uint8_t *w = random_weights(type, rows, columns);
        float *x = malloc((size_t)columns * batch * 4);
        fill(x, (size_t)columns * batch, 1);
        const size_t stride = bk_act_bytes(columns, 1);
        uint8_t *act = malloc(bk_act_bytes(columns, batch));
        if (is_quantized(type)) bk_quantize_act(BK_ISA_SCALAR, type, x, columns, batch, act);
        float *all = malloc((size_t)rows * batch * 4), *one = malloc((size_t)rows * 4);
        void *packed = is_quantized(type) ? malloc(bk_x16_bytes(type, rows, columns)) : NULL;
        if (packed) bk_x16_pack(type, w, row_bytes(type, columns), rows, columns, packed);
        for (int k = 0; k < covered_count; k++) {
            for (int interleaved = 0; interleaved <= (packed != NULL); interleaved++) {
                const void *a0 = is_quantized(type) ? (const void *)act : (const void *)x;
                if (interleaved) bk_matmul_x16(covered[k], type, packed, 0, rows, columns, a0, batch, all, rows);
                else bk_matmul(covered[k], type, w, row_bytes(type, columns), 0, rows, columns, a0, batch, all, rows);
                int bad = 0;
                for (int v = 0; v < batch; v++) {
                    const void *av = is_quantized(type) ? (const void *)(act + (size_t)v * stride) : (const void *)(x + (size_t)v * columns);
                    if (interleaved) bk_matmul_x16(covered[k], type, packed, 0, rows, columns, av, 1, one, rows);
                    else bk_matmul(covered[k], type, w, row_bytes(type, columns), 0, rows, columns, av, 1, one, rows);
                    bad += memcmp(one, all + (size_t)v * rows, (size_t)rows * 4) != 0;
                }
                check(bad == 0, "%s%s %s: batch changes %d vectors' results", interleaved ? "interleaved " : "",
                      type_name(type), bk_isa_name(covered[k]), bad);
            }
        }
        free(w), free(x), free(act), free(all), free(one), free(packed);
    }
}

// MARK: - Attention

static void test_attention(void) {
    const int heads[] = {64, 128, 8, 12, 40, 256};
    for (int f16 = 0; f16 < 2; f16++) {
        for (size_t hi = 0; hi < sizeof heads / sizeof heads[0]; hi++) {
            const int hd = heads[hi], kv = 2, bs = 16, blocks = 5, group = 3, width = f16 ? 2 : 4;
            const size_t block_bytes = (size_t)2 * kv * bs * hd * width;
            uint8_t *cache = malloc(block_bytes * blocks);
            for (size_t i = 0; i < block_bytes * blocks / (size_t)width; i++) {
                const float v = uniform(2);
                if (f16) put_f16(cache + 2 * i, v);
                else memcpy(cache + 4 * i, &v, 4);
            }
            int32_t table[5] = {3, 0, 4, 1, 2};
            const int count_list[] = {1, 16, 17, 70};
            for (int ci = 0; ci < 4; ci++) {
                const int count = count_list[ci];
                const size_t koff = (size_t)1 * bs * hd * width, voff = (size_t)(kv + 1) * bs * hd * width;  // KV head 1
                float *q = malloc((size_t)group * hd * 4), *p = malloc((size_t)group * count * 4);
                fill(q, (size_t)group * hd, 1), fill(p, (size_t)group * count, 1);
                float *sw = malloc((size_t)group * count * 4), *sg = malloc((size_t)group * count * 4);
                float *vw = malloc((size_t)group * hd * 4), *vg = malloc((size_t)group * hd * 4);
                bk_attn_scores(BK_ISA_SCALAR, f16, q, group, hd, 0.125f, cache, block_bytes, table, bs, koff, count, sw);
                bk_attn_values(BK_ISA_SCALAR, f16, p, group, hd, cache, block_bytes, table, bs, voff, count, vw);
                for (int k = 1; k < covered_count; k++) {
                    bk_attn_scores(covered[k], f16, q, group, hd, 0.125f, cache, block_bytes, table, bs, koff, count, sg);
                    bk_attn_values(covered[k], f16, p, group, hd, cache, block_bytes, table, bs, voff, count, vg);
                    int bad = 0;  // |q|, |k| ≤ 2: each product ≤ 2, so hd + 4 ulp of 2·hd bounds any order
                    for (int i = 0; i < group * count; i++)
                        bad += !(fabsf(sg[i] - sw[i]) <= (float)(hd + 4) * FLT_EPSILON * 2 * (float)hd * 0.125f);
                    check(bad == 0, "attention scores %s hd %d %s count %d: %d off", bk_isa_name(covered[k]), hd,
                          f16 ? "f16" : "f32", count, bad);
                    bad = 0;
                    for (int i = 0; i < group * hd; i++)
                        bad += !(fabsf(vg[i] - vw[i]) <= (float)(count + 4) * FLT_EPSILON * 2 * (float)count);
                    check(bad == 0, "attention values %s hd %d %s count %d: %d off", bk_isa_name(covered[k]), hd,
                          f16 ? "f16" : "f32", count, bad);
                }
                free(q), free(p), free(sw), free(sg), free(vw), free(vg);
            }
            free(cache);
        }
    }
}

// MARK: - CRC32C and the int8 peak probe

static void test_crc(void) {
    enum { MAX = 3 * 8192 * 2 + 777 };
    uint8_t *data = malloc(MAX + 8), *copy = malloc(MAX + 8);
    for (int i = 0; i < MAX + 8; i++) data[i] = (uint8_t)next_random();
    check(bk_crc32c(0, "123456789", 9) == 0xE3069283u, "crc32c check value");
    const size_t lengths[] = {0, 1, 7, 8, 9, 63, 255, 256, 769, 4095, 8191, 3 * 8192, 3 * 8192 + 5, MAX};
    int bad = 0;
    for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++)
        for (int offset = 0; offset < 8; offset++) {
            const size_t n = lengths[li];
            const uint32_t want = bk_crc32c_portable(0x1234567u, data + offset, n);
            bad += bk_crc32c(0x1234567u, data + offset, n) != want;
            memset(copy, 0, n + 8);
            bad += bk_crc32c_copy(0x1234567u, copy + (7 - offset), data + offset, n) != want;
            bad += memcmp(copy + (7 - offset), data + offset, n) != 0;
            bad += bk_crc32c_copy_portable(0x1234567u, copy, data + offset, n) != want;
        }
    check(bad == 0, "crc32c (%s) equals the portable code on every length and alignment: %d mismatches",
          bk_crc32c_hardware() ? "hardware" : "portable", bad);
    free(data), free(copy);
}

static void test_burn(void) {
    for (int k = 0; k < covered_count; k++) {
        int32_t sink = 0;
        const uint64_t macs = bk_int8_dot_burn(covered[k], 1000, &sink);
        uint64_t want_macs = 0;
        int32_t want_sink = 0;
        switch (covered[k]) {
        case BK_ISA_AVX512: want_macs = 1000 * 24 * 64, want_sink = 16 * (276 + 24 * 60 * 1000); break;
        case BK_ISA_AVX2: want_macs = 1000 * 12 * 32, want_sink = 2 * (66 + 12 * 60 * 1000); break;
        case BK_ISA_NEON_DOTPROD: want_macs = 1000 * 24 * 16, want_sink = 2 * (276 + 24 * 60 * 1000); break;
        case BK_ISA_NEON: want_macs = 1000 * 12 * 16, want_sink = 2 * (66 + 12 * 60 * 1000); break;
        default: break;
        }
        check(macs == want_macs && sink == want_sink, "int8 peak probe %s: %llu MACs, sink %d", bk_isa_name(covered[k]),
              (unsigned long long)macs, sink);
    }
}

int main(int argc, char **argv) {
    const char *expect = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--expect-cpu") == 0 && i + 1 < argc) expect = argv[++i];
        else if (strcmp(argv[i], "--cpu") == 0) {
            printf("%s\n", bk_isa_name(bk_cpu_isa()));
            return 0;
        } else {
            fprintf(stderr, "usage: %s [--expect-cpu LEVEL | --cpu]\n", argv[0]);
            return 2;
        }
    }
    if (bk_isa_error()) {
        printf("FAIL %s\n0 passed, 1 failed\n", bk_isa_error());
        return 1;
    }
    choose_isas();
    if (expect) check(strcmp(expect, bk_isa_name(bk_cpu_isa())) == 0, "expected the CPU to run %s, detected %s", expect,
                      bk_isa_name(bk_cpu_isa()));
    test_f16();
    test_dot_axpy();
    test_elementwise();
    test_rms_norm();
    test_argmax();
    test_quantize();
    test_matmul();
    test_batch_invariance();
    test_attention();
    test_crc();
    test_burn();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
