#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: set-up (packages, model), build, test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash Deploy/setup.sh --test-models
# The committed protobuf code must match Protos/ (builds protoc-gen-swift once, ~75 s).
bash Deploy/scripts/generate-protos.sh --check
swift build --build-tests
# Serial: the model-heavy tests are synchronous and would starve the 2-core cooperative pool that the
# transport tests' timeouts run on.
swift test --skip-build --no-parallel
