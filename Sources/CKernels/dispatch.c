#include "internal.h"

static int detect(void) {
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
#endif
    return BK_ISA_SCALAR;
}

static int cached = -1;

bk_isa bk_best_isa(void) {
    // Racing first calls compute the same value; a plain int store is enough.
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        v = detect();
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return (bk_isa)v;
}

int bk_isa_supported(bk_isa isa) {
    return (int)isa >= 0 && isa <= bk_best_isa();
}

bk_isa bk_effective_isa(bk_isa requested) {
    bk_isa best = bk_best_isa();
    if ((int)requested < 0) return BK_ISA_SCALAR;
    return requested < best ? requested : best;
}
