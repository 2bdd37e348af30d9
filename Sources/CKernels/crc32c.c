// CRC32C (Castagnoli, reflected polynomial 0x82F63B78) for the KV transport's chunk checksums.
//
// Hardware path (x86 SSE4.2 `crc32`, AArch64's ARMv8 CRC extension `crc32cx`/`crc32cb`, both the same
// polynomial and bit order): the instruction has a latency of 3 cycles and a throughput of 1 per cycle on
// current cores, so one dependency chain runs at a third of the unit's speed. Large buffers are split
// into three adjacent blocks checksummed as three independent chains, then joined: the CRC of block A
// followed by B equals (A's CRC shifted over |B| zero bytes) XOR B's CRC computed from a zero state.
// Shifting over a fixed length is a linear map on 32 bits, tabulated byte-wise (4 × 256 entries) for
// the two block lengths used (Mark Adler's crc32c.c does the same). Portable path: slicing-by-8.
#include "CKernels.h"

#include <string.h>

#if defined(__x86_64__)
#define BK_CRC_HW 1
#include <immintrin.h>
#define CRC_TARGET __attribute__((target("sse4.2")))
#define CRC_U64(c, v) _mm_crc32_u64((c), (v))
#define CRC_U8(c, b) _mm_crc32_u8((uint32_t)(c), (b))
#elif defined(__aarch64__)
#define BK_CRC_HW 1
#include <arm_acle.h>
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1UL << 7)  // <asm/hwcap.h>, missing from older libc headers
#endif
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#define CRC_TARGET __attribute__((target("arch=armv8-a+crc")))
#define CRC_U64(c, v) __crc32cd((uint32_t)(c), (v))
#define CRC_U8(c, b) __crc32cb((uint32_t)(c), (b))
#else
#define BK_CRC_HW 0
#endif

#define POLY 0x82F63B78u
// Block lengths of the three-way interleave: LONG for bulk data, SHORT for the remainder.
#define LONG_BLOCK 8192
#define SHORT_BLOCK 256

static uint32_t slice_table[8][256];
static uint32_t shift_long[4][256];
static uint32_t shift_short[4][256];
static int hardware;

// The matrix `mat` (32 columns over GF(2)) times the vector `vec`.
static uint32_t gf2_times(const uint32_t *mat, uint32_t vec) {
    uint32_t sum = 0;
    while (vec) {
        if (vec & 1) sum ^= *mat;
        vec >>= 1;
        mat++;
    }
    return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *mat) {
    for (int n = 0; n < 32; n++) square[n] = gf2_times(mat, mat[n]);
}

// The operator that appends `len` zero bytes (a power of two ≥ 1) to a raw CRC state.
static void zeros_operator(uint32_t *even, size_t len) {
    uint32_t odd[32];
    odd[0] = POLY;  // one zero bit
    uint32_t row = 1;
    for (int n = 1; n < 32; n++) {
        odd[n] = row;
        row <<= 1;
    }
    gf2_square(even, odd);  // two zero bits
    gf2_square(odd, even);  // four zero bits (one zero nibble)
    // The first square gives one zero byte (in even), each further one doubles it, until len is used up.
    do {
        gf2_square(even, odd);
        len >>= 1;
        if (len == 0) return;
        gf2_square(odd, even);
        len >>= 1;
    } while (len);
    memcpy(even, odd, sizeof odd);
}

static void shift_tables(uint32_t table[4][256], size_t len) {
    uint32_t op[32];
    zeros_operator(op, len);
    for (uint32_t n = 0; n < 256; n++) {
        table[0][n] = gf2_times(op, n);
        table[1][n] = gf2_times(op, n << 8);
        table[2][n] = gf2_times(op, n << 16);
        table[3][n] = gf2_times(op, n << 24);
    }
}

static inline uint32_t shift(const uint32_t table[4][256], uint32_t crc) {
    return table[0][crc & 0xFF] ^ table[1][(crc >> 8) & 0xFF] ^ table[2][(crc >> 16) & 0xFF] ^ table[3][crc >> 24];
}

__attribute__((constructor)) static void crc32c_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = n;
        for (int k = 0; k < 8; k++) crc = (crc & 1) ? (crc >> 1) ^ POLY : crc >> 1;
        slice_table[0][n] = crc;
    }
    for (int n = 0; n < 256; n++) {
        uint32_t crc = slice_table[0][n];
        for (int k = 1; k < 8; k++) {
            crc = slice_table[0][crc & 0xFF] ^ (crc >> 8);
            slice_table[k][n] = crc;
        }
    }
    shift_tables(shift_long, LONG_BLOCK);
    shift_tables(shift_short, SHORT_BLOCK);
#if defined(__x86_64__)
    __builtin_cpu_init();
    hardware = __builtin_cpu_supports("sse4.2") != 0;
#elif defined(__aarch64__) && defined(__linux__)
    hardware = (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0;
#elif defined(__aarch64__) && defined(__APPLE__)
    int value = 0;
    size_t size = sizeof value;
    hardware = sysctlbyname("hw.optional.armv8_crc32", &value, &size, NULL, 0) == 0 && value;
#endif
}

static inline uint64_t load64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);  // one unaligned load; no alignment assumption
    return v;
}

uint32_t bk_crc32c_portable(uint32_t crc, const void *data, size_t len) {
    const unsigned char *p = data;
    uint32_t c = ~crc;
    while (len >= 8) {
        uint64_t w = load64(p) ^ c;  // little-endian: the low 32 bits meet the state
        c = slice_table[7][w & 0xFF] ^ slice_table[6][(w >> 8) & 0xFF] ^ slice_table[5][(w >> 16) & 0xFF] ^
            slice_table[4][(w >> 24) & 0xFF] ^ slice_table[3][(w >> 32) & 0xFF] ^ slice_table[2][(w >> 40) & 0xFF] ^
            slice_table[1][(w >> 48) & 0xFF] ^ slice_table[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len--) c = slice_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return ~c;
}

#if BK_CRC_HW
// Whole groups of three consecutive `block`-byte streams, checksummed side by side (hiding the instruction's
// latency) and joined by shifting with `table` (built for `block` bytes). Advances *data and *len.
CRC_TARGET static inline uint64_t crc32c_three_way(uint64_t c0, const unsigned char **data,
                                                                          size_t *len, size_t block,
                                                                          const uint32_t table[4][256]) {
    const unsigned char *p = *data;
    while (*len >= 3 * block) {
        uint64_t c1 = 0, c2 = 0;
        const unsigned char *end = p + block;
        do {
            c0 = CRC_U64(c0, load64(p));
            c1 = CRC_U64(c1, load64(p + block));
            c2 = CRC_U64(c2, load64(p + 2 * block));
            p += 8;
        } while (p < end);
        c0 = shift(table, (uint32_t)c0) ^ c1;
        c0 = shift(table, (uint32_t)c0) ^ c2;
        p += 2 * block;
        *len -= 3 * block;
    }
    *data = p;
    return c0;
}

CRC_TARGET static uint32_t crc32c_hw(uint32_t crc, const void *data, size_t len) {
    const unsigned char *p = data;
    uint64_t c0 = (uint32_t)~crc;
    // Align to 8 bytes so the bulk loads never split a cache line.
    while (len && ((uintptr_t)p & 7)) {
        c0 = CRC_U8(c0, *p++);
        len--;
    }
    c0 = crc32c_three_way(c0, &p, &len, LONG_BLOCK, shift_long);
    c0 = crc32c_three_way(c0, &p, &len, SHORT_BLOCK, shift_short);
    while (len >= 8) {
        c0 = CRC_U64(c0, load64(p));
        p += 8;
        len -= 8;
    }
    while (len--) c0 = CRC_U8(c0, *p++);
    return ~(uint32_t)c0;
}
#endif

uint32_t bk_crc32c_copy_portable(uint32_t crc, void *dst, const void *src, size_t len) {
    // Checksum and copy piecewise so each piece is still in L1 for the copy.
    const unsigned char *s = src;
    unsigned char *d = dst;
    while (len) {
        size_t n = len < 4096 ? len : 4096;
        crc = bk_crc32c_portable(crc, s, n);
        memcpy(d, s, n);
        s += n;
        d += n;
        len -= n;
    }
    return crc;
}

#if BK_CRC_HW
static inline void store64(unsigned char *p, uint64_t v) {
    memcpy(p, &v, 8);
}

// crc32c_hw with each loaded word also stored to `dst`: one pass over the source instead of two.
CRC_TARGET static uint32_t crc32c_copy_hw(uint32_t crc, unsigned char *d,
                                                                    const unsigned char *p, size_t len) {
    uint64_t c0 = (uint32_t)~crc;
    while (len && ((uintptr_t)p & 7)) {
        *d++ = *p;
        c0 = CRC_U8(c0, *p++);
        len--;
    }
    while (len >= 3 * LONG_BLOCK) {
        uint64_t c1 = 0, c2 = 0;
        const unsigned char *end = p + LONG_BLOCK;
        do {
            uint64_t w0 = load64(p), w1 = load64(p + LONG_BLOCK), w2 = load64(p + 2 * LONG_BLOCK);
            c0 = CRC_U64(c0, w0);
            c1 = CRC_U64(c1, w1);
            c2 = CRC_U64(c2, w2);
            store64(d, w0);
            store64(d + LONG_BLOCK, w1);
            store64(d + 2 * LONG_BLOCK, w2);
            p += 8;
            d += 8;
        } while (p < end);
        c0 = shift(shift_long, (uint32_t)c0) ^ c1;
        c0 = shift(shift_long, (uint32_t)c0) ^ c2;
        p += 2 * LONG_BLOCK;
        d += 2 * LONG_BLOCK;
        len -= 3 * LONG_BLOCK;
    }
    while (len >= 8) {
        uint64_t w = load64(p);
        c0 = CRC_U64(c0, w);
        store64(d, w);
        p += 8;
        d += 8;
        len -= 8;
    }
    while (len--) {
        *d++ = *p;
        c0 = CRC_U8(c0, *p++);
    }
    return ~(uint32_t)c0;
}
#endif

uint32_t bk_crc32c_copy(uint32_t crc, void *dst, const void *src, size_t len) {
#if BK_CRC_HW
    if (hardware) return crc32c_copy_hw(crc, dst, src, len);
#endif
    return bk_crc32c_copy_portable(crc, dst, src, len);
}

int bk_crc32c_hardware(void) {
    return hardware;
}

uint32_t bk_crc32c(uint32_t crc, const void *data, size_t len) {
#if BK_CRC_HW
    if (hardware) return crc32c_hw(crc, data, len);
#endif
    return bk_crc32c_portable(crc, data, len);
}
