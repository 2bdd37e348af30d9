// Which kernel variant runs: the CPU's best level, capped by BATON_ISA. Every entry point goes through
// bk_effective_isa, so the cap holds for production callers (which pass bk_best_isa()) and tests alike.
#include "internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if BK_ARM && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)  // <asm/hwcap.h>, missing from older libc headers
#endif
#elif BK_ARM && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

static bk_isa detect(void) {
#if BK_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vbmi") &&
        __builtin_cpu_supports("f16c") &&
        __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2"))
        return BK_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
        return BK_ISA_AVX2;
    return BK_ISA_SCALAR;
#elif BK_ARM
    // Advanced SIMD is part of every AArch64 core (the build requires it); only `sdot` is optional.
#if defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) ? BK_ISA_NEON_DOTPROD : BK_ISA_NEON;
#elif defined(__APPLE__)
    int value = 0;
    size_t size = sizeof value;
    if (sysctlbyname("hw.optional.arm.FEAT_DotProd", &value, &size, NULL, 0) == 0 && value) return BK_ISA_NEON_DOTPROD;
    return BK_ISA_NEON;
#else
    return BK_ISA_NEON;
#endif
#else
    return BK_ISA_SCALAR;
#endif
}

/// This architecture's levels, lowest first (what BATON_ISA may name here).
#if BK_X86
static const bk_isa levels[] = {BK_ISA_SCALAR, BK_ISA_AVX2, BK_ISA_AVX512};
static const char architecture[] = "x86-64";
#elif BK_ARM
static const bk_isa levels[] = {BK_ISA_SCALAR, BK_ISA_NEON, BK_ISA_NEON_DOTPROD};
static const char architecture[] = "arm64";
#else
static const bk_isa levels[] = {BK_ISA_SCALAR};
static const char architecture[] = "this architecture";
#endif
static const int level_count = (int)(sizeof levels / sizeof levels[0]);

/// Position of `isa` among this architecture's levels, or -1 for an ISA of another architecture.
static int rank(bk_isa isa) {
    for (int i = 0; i < level_count; i++)
        if (levels[i] == isa) return i;
    return -1;
}

const char *bk_isa_name(bk_isa isa) {
    switch (isa) {
    case BK_ISA_SCALAR: return "scalar";
    case BK_ISA_AVX2: return "avx2";
    case BK_ISA_AVX512: return "avx512";
    case BK_ISA_NEON: return "neon";
    case BK_ISA_NEON_DOTPROD: return "neon-dotprod";
    }
    return "unknown";
}

/// "auto, scalar, avx2, avx512" for the levels up to `top` (all of this architecture's for top = -1).
static void list_values(char *out, size_t size, int top) {
    int n = snprintf(out, size, "auto");
    for (int i = 0; i < level_count && (top < 0 || i <= top) && n >= 0 && (size_t)n < size; i++)
        n += snprintf(out + n, size - (size_t)n, ", %s", bk_isa_name(levels[i]));
}

int bk_isa_parse(const char *value, bk_isa cpu, bk_isa *isa, char *message, size_t size) {
    if (size) message[0] = 0;
    if (!value || !*value || strcmp(value, "auto") == 0) {
        *isa = cpu;
        return 0;
    }
    for (int i = 0; i < level_count; i++) {
        if (strcmp(value, bk_isa_name(levels[i])) != 0) continue;
        if (i <= rank(cpu)) {
            *isa = levels[i];
            return 0;
        }
        char allowed[96];
        list_values(allowed, sizeof allowed, rank(cpu));
        snprintf(message, size, "BATON_ISA=%s asks for kernels this CPU cannot run: it runs up to %s "
                 "(allowed values here: %s)", value, bk_isa_name(cpu), allowed);
        return -1;
    }
    char allowed[96];
    list_values(allowed, sizeof allowed, -1);
    snprintf(message, size, "BATON_ISA=%s is not an instruction-set level of %s: allowed values are %s "
             "(this CPU runs up to %s)", value, architecture, allowed, bk_isa_name(cpu));
    return -1;
}

/// The selection, made once: racing first calls compute the same values, and the `ready` flag is stored last
/// with release order, so a reader that sees it sees the rest.
static struct {
    int ready;
    bk_isa cpu, best;
    int forced;
    int failed;
    char error[256];
} selection;

static void select_isa(void) {
    if (__atomic_load_n(&selection.ready, __ATOMIC_ACQUIRE)) return;
    const bk_isa cpu = detect();
    const char *value = getenv("BATON_ISA");
    bk_isa chosen = cpu;
    char message[256];
    const int failed = bk_isa_parse(value, cpu, &chosen, message, sizeof message) != 0;
    selection.cpu = cpu;
    selection.best = failed ? BK_ISA_SCALAR : chosen;
    selection.forced = value && *value && strcmp(value, "auto") != 0;
    selection.failed = failed;
    memcpy(selection.error, message, sizeof message);
    __atomic_store_n(&selection.ready, 1, __ATOMIC_RELEASE);
}

bk_isa bk_cpu_isa(void) {
    select_isa();
    return selection.cpu;
}

bk_isa bk_best_isa(void) {
    select_isa();
    return selection.best;
}

int bk_isa_forced(void) {
    select_isa();
    return selection.forced;
}

const char *bk_isa_error(void) {
    select_isa();
    return selection.failed ? selection.error : NULL;
}

int bk_isa_supported(bk_isa isa) {
    const int r = rank(isa);
    return r >= 0 && r <= rank(bk_best_isa());
}

bk_isa bk_effective_isa(bk_isa requested) {
    const bk_isa best = bk_best_isa();
    const int r = rank(requested);
    if (r < 0) return BK_ISA_SCALAR;
    return r < rank(best) ? requested : best;
}
