#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: set-up (packages, model), build, test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash Deploy/setup.sh --test-models --browser
# The committed protobuf code must match Protos/ (builds protoc-gen-swift once, ~75 s).
bash Deploy/scripts/generate-protos.sh --check
swift build --build-tests
# Serial: the model-heavy tests are synchronous and would starve the 2-core cooperative pool that the
# transport tests' timeouts run on.
# BATON_BROWSER_TESTS: the router page's tests in headless Chromium (installed by --browser above).
BATON_BROWSER_TESTS=1 swift test --skip-build --no-parallel

# The numerics again on every lower ISA path this CPU has, since CI lands on AVX-512 and AVX2-only machines at random
# and users' boxes may have neither: BATON_ISA caps the kernels, and OpenBLAS (prefill's sgemm) gets the core type of
# a CPU of that kind (Deploy/scripts/isa_paths.py). InferenceTests holds what depends on the path: the kernels'
# twin tests (every tensor type) and the engine's agreement with llama.cpp on the default model. The agreement on
# every requantized and every architecture's test model runs once, on the best path: on a lower path it re-tests
# the same kernels through a slower engine (the scalar path alone took 25 minutes of a 2-core box).
read -r -a paths <<<"$(python3 Deploy/scripts/isa_paths.py paths)"
best="${paths[${#paths[@]}-1]}"
echo "[test] the full suite ran on this CPU's best ISA path, $best"
for isa in avx512 avx2 scalar; do
    [ "$isa" = "$best" ] && continue
    if [[ " ${paths[*]} " != *" $isa "* ]]; then
        echo "[test] skipping the $isa path: this CPU does not have it"
        continue
    fi
    mapfile -t forced < <(python3 Deploy/scripts/isa_paths.py env "$isa")
    echo "[test] InferenceTests on the $isa path (${forced[*]})"
    env "${forced[@]}" swift test --skip-build --no-parallel --filter InferenceTests \
        --skip RequantizedModelTests --skip ArchitectureReferenceTests
done
