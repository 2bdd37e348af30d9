#!/usr/bin/env bash
# Runs Baton on the default model, from a fresh Debian machine: set-up (packages, model), release build, run.
#   bash Deploy/run.sh                      the cluster (placement, prefill worker, decode worker, router as
#                                           separate processes) with the OpenAI API on http://127.0.0.1:8080/v1
#   bash Deploy/run.sh up --port 9000       the same on another port
#   bash Deploy/run.sh serve                everything in one process instead
#   bash Deploy/run.sh chat                 interactive chat in the terminal
#   bash Deploy/run.sh generate --prompt …  any other baton subcommand and its arguments
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash Deploy/setup.sh
swift build -c release --product baton >&2
if [ "$#" -eq 0 ]; then set -- up; fi
exec .build/release/baton "$@"
