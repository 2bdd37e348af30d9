#!/usr/bin/env bash
# Builds llama.cpp (the copy vendored in llama-cpp-python 0.3.36's source distribution) once per x86 ISA path, so
# Baton's engine can be compared with llama.cpp on the same path: speed (bench_vs_llamacpp.py --isa) and
# numerics (make_greedy_references.py measures llama.cpp's own spread across these builds).
#
#   bash Deploy/scripts/build-llamacpp.sh [--isa avx2|avx512|scalar|all]... [--no-server] [--python-server] [--jobs N]
#
# Default `--isa all`: avx2, then avx512 (skipped with a message on a CPU without AVX-512), then scalar.
#   avx2    -march off, SSE4.2 AVX AVX2 BMI2 FMA F16C on, every AVX-512/AVX-VNNI/AMX flag off: what llama.cpp's
#           native build is on the AVX2-only EPYC machines (flags avx2 fma f16c bmi2, no avx512*, no avx_vnni).
#   avx512  -march=native (GGML_NATIVE=ON), as a plain `pip install llama-cpp-python` builds it; needs an AVX-512 CPU.
#   scalar  every x86 SIMD flag off: the x86-64 baseline (SSE2, which the compiler may still auto-vectorize to);
#           ggml's hand-written SIMD paths are all compiled out.
#
# Each build lands in ~/.cache/baton/llama.cpp/<isa>/ (BATON_LLAMACPP_DIR overrides the parent): libllama.so and
# the libggml*.so it needs (RPATH $ORIGIN), llama-server (unless --no-server), and BUILD-INFO (the CMake flags
# and llama.cpp's own system-info line). llama-cpp-python loads the library named by LLAMA_CPP_LIB_PATH, so
#   LLAMA_CPP_LIB_PATH=~/.cache/baton/llama.cpp/avx2 ~/.cache/baton/venv/bin/python -c 'import llama_cpp'
# runs the AVX2 build. The Python package itself (llama-cpp-python 0.3.36, installed with LLAMA_BUILD=OFF so it
# compiles nothing and ships no library of its own) and `gguf` go into Baton's venv (~/.cache/baton/venv, BATON_VENV
# overrides). Deploy/scripts/isa_paths.py is the Python side of this layout.
#
# llama-server is the peer of `baton bench serve --compare` (which picks the avx512 build on an AVX-512 CPU, else
# avx2). --python-server also installs the `server` extra of llama-cpp-python (FastAPI, uvicorn, …) into the venv, so
# that `python -m llama_cpp.server` can stand in for llama-server where the binary cannot be built; --compare falls
# back to it and says so in its report.
#
# Idempotent: a build whose BUILD-INFO records the same flags is kept. ccache (installed with cmake if missing)
# makes the second and third ISA cheap: only ggml-cpu depends on the ISA. A build takes ~5-10 min on 2 cores.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="0.3.36"
sdist_sha256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
gguf_version="0.19.0"   # the gguf-py vendored in the same llama.cpp
root="${BATON_LLAMACPP_DIR:-$HOME/.cache/baton/llama.cpp}"
venv="${BATON_VENV:-$HOME/.cache/baton/venv}"
jobs="$(nproc)"
server=1
python_server=0
isas=()

say() { printf '[build-llamacpp] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --isa) [ $# -ge 2 ] || die "--isa needs a value (avx2, avx512, scalar or all)"; isas+=("$2"); shift 2 ;;
        --no-server) server=0; shift ;;
        --python-server) python_server=1; shift ;;
        --jobs) [ $# -ge 2 ] || die "--jobs needs a number"; jobs="$2"; shift 2 ;;
        -h|--help) sed -n '2,29p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
[ "${#isas[@]}" -gt 0 ] || isas=(all)

cpu_has() { grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -qx "$1"; }

expanded=()
for isa in "${isas[@]}"; do
    case "$isa" in
        all)
            expanded+=(avx2)
            if cpu_has avx512f; then expanded+=(avx512); else say "this CPU has no AVX-512: skipping the avx512 build"; fi
            expanded+=(scalar) ;;
        avx2|scalar) expanded+=("$isa") ;;
        avx512) cpu_has avx512f || die "the avx512 build is -march=native and needs an AVX-512 CPU; this one has none"
                expanded+=(avx512) ;;
        *) die "unknown ISA '$isa': expected avx2, avx512, scalar or all" ;;
    esac
done

# --- Tools ------------------------------------------------------------------------------------------
missing=()
for tool in cmake ccache g++; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ]; then
    [ "${BATON_SKIP_APT:-0}" = "1" ] && die "missing ${missing[*]} (BATON_SKIP_APT=1, not installing)"
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    say "installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- Source: the sdist, checked against its pinned SHA-256 ------------------------------------------
mkdir -p "$root/src"
sdist="$root/src/llama_cpp_python-$version.tar.gz"
source_dir="$root/src/llama_cpp_python-$version"
verify() { echo "$sdist_sha256  $sdist" | sha256sum --check --status; }
if [ -f "$sdist" ] && verify; then
    say "source present: $sdist"
else
    say "downloading the llama-cpp-python $version source distribution from PyPI (~77 MB)"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
        -d "$root/src" "llama-cpp-python==$version" >&2
    verify || die "$sdist does not have the pinned SHA-256 $sdist_sha256"
    rm -rf "$source_dir"
fi
if [ ! -f "$source_dir/vendor/llama.cpp/CMakeLists.txt" ]; then
    rm -rf "$source_dir"
    tar -xzf "$sdist" -C "$root/src"
    [ -f "$source_dir/vendor/llama.cpp/CMakeLists.txt" ] || die "$sdist holds no vendor/llama.cpp/CMakeLists.txt"
fi

# --- The Python bindings and gguf, in Baton's venv ----------------------------------------------------------
[ -x "$venv/bin/python" ] || { say "creating the venv $venv"; python3 -m venv "$venv"; }
bindings_present() {
    "$venv/bin/python" - "$version" "$gguf_version" 2>/dev/null <<'PY'
import sys
from importlib.metadata import version
sys.exit(0 if (version("llama_cpp_python"), version("gguf")) == tuple(sys.argv[1:]) else 1)
PY
}
if bindings_present; then
    say "llama-cpp-python $version and gguf $gguf_version present ($venv)"
else
    say "installing llama-cpp-python $version (bindings only: LLAMA_BUILD=OFF) and gguf $gguf_version into $venv"
    CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" "$venv/bin/python" -m pip install -q --disable-pip-version-check \
        --no-cache-dir "$sdist" "gguf==$gguf_version" >&2
    bindings_present || die "llama-cpp-python $version / gguf $gguf_version did not install into $venv"
fi

# The `server` extra of llama-cpp-python 0.3.36 (its pyproject.toml), for `python -m llama_cpp.server`.
if [ "$python_server" = 1 ]; then
    if "$venv/bin/python" -c 'import llama_cpp.server.app' 2>/dev/null; then
        say "llama_cpp.server's dependencies present ($venv)"
    else
        say "installing llama_cpp.server's dependencies (the package's server extra) into $venv"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "uvicorn>=0.22.0" "fastapi>=0.100.0" \
            "pydantic-settings>=2.0.1" "sse-starlette>=1.6.1" "starlette-context>=0.3.6,<0.4" "PyYAML>=5.1" >&2
    fi
fi

# --- One build per ISA ------------------------------------------------------------------------------
x86_flags=(GGML_SSE42 GGML_AVX GGML_AVX2 GGML_BMI2 GGML_FMA GGML_F16C GGML_AVX_VNNI GGML_AVX512 GGML_AVX512_VBMI
           GGML_AVX512_VNNI GGML_AVX512_BF16 GGML_AMX_TILE GGML_AMX_INT8 GGML_AMX_BF16)
isa_flags() {
    local on=() flag
    case "$1" in
        avx512) echo "-DGGML_NATIVE=ON"; return ;;
        avx2) on=(GGML_SSE42 GGML_AVX GGML_AVX2 GGML_BMI2 GGML_FMA GGML_F16C) ;;
        scalar) on=() ;;
    esac
    echo -n "-DGGML_NATIVE=OFF"
    for flag in "${x86_flags[@]}"; do
        if [[ " ${on[*]} " == *" $flag "* ]]; then echo -n " -D$flag=ON"; else echo -n " -D$flag=OFF"; fi
    done
    echo
}
# What llama.cpp reports it was compiled with, per ISA: the check that the flags took.
expect_system_info() {
    case "$1" in
        avx512) echo "AVX512 = 1" ;;
        avx2) echo "AVX2 = 1" ;;
        scalar) echo "" ;;
    esac
}
forbid_system_info() {
    case "$1" in
        avx512) echo "" ;;
        avx2) echo "AVX512 = 1" ;;
        scalar) echo "AVX = 1|AVX2 = 1|SSE3 = 1|SSSE3 = 1|F16C = 1|FMA = 1|AVX512 = 1" ;;
    esac
}

export CCACHE_DIR="$root/ccache" CCACHE_BASEDIR="$root"
for isa in "${expanded[@]}"; do
    out="$root/$isa"
    build="$root/build/$isa"
    # LLAMA_OPENSSL off: llama-server here serves plain HTTP on loopback; no prebuilt web UI (it is downloaded).
    flags="-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DLLAMA_BUILD_COMMON=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF"
    flags+=" -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON"
    flags+=" -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DGGML_CCACHE=ON"
    flags+=" -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON -DCMAKE_INSTALL_RPATH=\$ORIGIN $(isa_flags "$isa")"
    targets="llama"; [ "$server" = 1 ] && targets+=" llama-server"
    wanted="llama-cpp-python $version; targets: $targets; cmake $flags"
    if [ -f "$out/BUILD-INFO" ] && [ "$(sed -n 1p "$out/BUILD-INFO")" = "$wanted" ] && [ -f "$out/libllama.so" ]; then
        say "$isa: present ($out)"
        continue
    fi
    mkdir -p "$root/build"
    say "$isa: configuring in $build"
    started=$SECONDS
    # shellcheck disable=SC2086  # $flags is a list of -D options
    cmake -S "$source_dir/vendor/llama.cpp" -B "$build" $flags >"$root/build/$isa.configure.log" 2>&1 \
        || die "$isa: cmake configure failed; see $root/build/$isa.configure.log"
    for target in $targets; do
        say "$isa: building $target (-j$jobs; log $root/build/$isa.$target.log)"
        cmake --build "$build" --target "$target" -j "$jobs" >"$root/build/$isa.$target.log" 2>&1 \
            || die "$isa: building $target failed; see $root/build/$isa.$target.log"
    done
    staging="$out.staging"
    rm -rf "$staging"; mkdir -p "$staging"
    cp -a "$build"/bin/lib*.so* "$staging/"
    [ "$server" = 1 ] && cp -a "$build/bin/llama-server" "$staging/"
    info="$(LLAMA_CPP_LIB_PATH="$staging" "$venv/bin/python" -c \
        'import llama_cpp; print(llama_cpp.llama_print_system_info().decode())')" \
        || die "$isa: llama-cpp-python cannot load $staging/libllama.so"
    expected="$(expect_system_info "$isa")"; forbidden="$(forbid_system_info "$isa")"
    if [ -n "$expected" ] && ! grep -q "$expected" <<<"$info"; then die "$isa: llama.cpp lacks '$expected': $info"; fi
    if [ -n "$forbidden" ] && grep -Eq "$forbidden" <<<"$info"; then die "$isa: llama.cpp has one of '$forbidden': $info"; fi
    printf '%s\nsystem info: %s\nbuilt %s with %s in %d s\n' "$wanted" "$info" "$(date -u +%FT%TZ)" \
        "$(g++ --version | head -1)" "$((SECONDS - started))" >"$staging/BUILD-INFO"
    rm -rf "$out"; mv "$staging" "$out"
    say "$isa: ready in $((SECONDS - started)) s: $out ($info)"
done
say "use a build with: LLAMA_CPP_LIB_PATH=$root/<isa> $venv/bin/python ... (or Deploy/scripts/isa_paths.py)"
