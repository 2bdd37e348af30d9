#!/usr/bin/env bash
# The C kernels against their scalar twins (Tests/CKernelsTests/kernel_twins.c), outside Swift:
#   - natively, covering every level this CPU has, then again with BATON_ISA forcing each lower level;
#   - for arm64: built with aarch64-linux-gnu-gcc (and with the Swift toolchain's clang, the compiler SwiftPM
#     uses, when it is on PATH) and run under qemu-aarch64 on a CPU with the dot-product extension (-cpu max:
#     NEON + sdot + CRC) and on one without (-cpu cortex-a53: NEON + CRC), and with BATON_ISA forcing neon and scalar.
# Needs a C compiler, gcc-aarch64-linux-gnu and qemu-user (Deploy/setup.sh installs them). Prints each run's checks
# and exits non-zero if any run failed; `bash Deploy/test.sh` runs it through the DeployTests suite.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
unset BATON_ISA  # each run below sets the level it tests (a caller's level may not even exist on arm64)

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
sources=(Sources/CKernels/*.c Tests/CKernelsTests/kernel_twins.c)
flags=(-O3 -fno-math-errno -std=gnu11 -Wall -Wextra -ISources/CKernels/include)
runs=0
failures=()

# run NAME COMMAND...: one harness run, counted and reported.
run() {
    local name="$1"
    shift
    echo "== $name"
    if "$@"; then
        runs=$((runs + 1))
    else
        failures+=("$name")
    fi
}

need() {
    command -v "$1" >/dev/null || { echo "test-kernels.sh: $1 not found (bash Deploy/setup.sh installs $2)" >&2; exit 2; }
}
need "${CC:-cc}" "a C compiler"
need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
need qemu-aarch64 qemu-user

# --- Native: every level this CPU has, then each lower one forced ----------------------------------------------
"${CC:-cc}" "${flags[@]}" -o "$out/native" "${sources[@]}" -lm || exit 1
cpu="$("$out/native" --cpu)"
run "native ($cpu)" "$out/native" --expect-cpu "$cpu"
case "$cpu" in
    avx512) lower=(avx2 scalar) ;;
    neon-dotprod) lower=(neon scalar) ;;
    avx2 | neon) lower=(scalar) ;;
    *) lower=() ;;
esac
for level in "${lower[@]}"; do
    run "native, BATON_ISA=$level" env BATON_ISA="$level" "$out/native"
done

# --- arm64 under qemu ---------------------------------------------------------------------------------------
aarch64-linux-gnu-gcc "${flags[@]}" -static -o "$out/arm64-gcc" "${sources[@]}" -lm || exit 1
binaries=("$out/arm64-gcc")
if command -v clang >/dev/null && command -v ld.lld >/dev/null; then
    if clang --target=aarch64-linux-gnu "${flags[@]}" -static -fuse-ld=lld -o "$out/arm64-clang" "${sources[@]}" -lm; then
        binaries+=("$out/arm64-clang")
    else
        failures+=("arm64 build with clang")
    fi
fi
for binary in "${binaries[@]}"; do
    compiler="${binary##*-}"
    run "arm64 ($compiler), qemu -cpu max: neon-dotprod" qemu-aarch64 -cpu max "$binary" --expect-cpu neon-dotprod
    run "arm64 ($compiler), qemu -cpu cortex-a53: neon" qemu-aarch64 -cpu cortex-a53 "$binary" --expect-cpu neon
done
run "arm64 (gcc), qemu -cpu max, BATON_ISA=neon" env BATON_ISA=neon qemu-aarch64 -cpu max "$out/arm64-gcc"
run "arm64 (gcc), qemu -cpu max, BATON_ISA=scalar" env BATON_ISA=scalar qemu-aarch64 -cpu max "$out/arm64-gcc"

if [ "${#failures[@]}" -gt 0 ]; then
    printf 'kernel twins: %d runs passed, failed: %s\n' "$runs" "$(IFS=';'; echo "${failures[*]}")"
    exit 1
fi
echo "kernel twins: all $runs runs passed"
