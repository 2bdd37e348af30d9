#!/usr/bin/env bash
# Runs Baton on the default model, from a fresh Debian machine: set-up (packages, model), release build, run.
#   bash Deploy/run.sh                      interactive chat with the default model
#   bash Deploy/run.sh generate --prompt …  any other baton subcommand and its arguments
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash Deploy/setup.sh
swift build -c release --product baton >&2
if [ "$#" -eq 0 ]; then set -- chat; fi
exec .build/release/baton "$@"
