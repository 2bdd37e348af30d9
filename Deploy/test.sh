#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: set-up (packages, model), build, test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash Deploy/setup.sh
swift build --build-tests
swift test --skip-build
