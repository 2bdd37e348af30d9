#!/usr/bin/env bash
# Regenerates the Swift code for Protos/baton/v1/*.proto into Sources/ClusterProtocol/Generated/.
#
#   Deploy/scripts/generate-protos.sh           regenerate in place
#   Deploy/scripts/generate-protos.sh --check   regenerate into a temporary folder and fail (exit 1) if the
#                                               committed code differs: run this in CI
#
# Needs Debian's `protobuf-compiler` (protoc) and protoc-gen-swift from swift-protobuf 1.39.0, which this
# script builds once (release, ~75 s) from the package mirror into $BATON_TOOLS (default
# ~/.cache/baton/tools) unless PROTOC_GEN_SWIFT points at one. Never use SwiftPM's protobuf build plugin:
# it compiles protoc from source on every clean build.
#
# Only message types are generated; WorkerControl's service stubs are not (the cluster serves its RPCs on
# its own NIO HTTP/2 listener).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
protos="$root/Protos"
output="$root/Sources/ClusterProtocol/Generated"
swift_protobuf_version="1.39.0"
tools="${BATON_TOOLS:-$HOME/.cache/baton/tools}"

check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

command -v protoc >/dev/null || { echo "error: protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }

plugin="${PROTOC_GEN_SWIFT:-$tools/swift-protobuf-$swift_protobuf_version/protoc-gen-swift}"
if [[ ! -x "$plugin" ]]; then
  echo "building protoc-gen-swift $swift_protobuf_version into $(dirname "$plugin")" >&2
  source_dir="$(mktemp -d)"
  trap 'rm -rf "$source_dir"' EXIT
  git clone -q https://github.com/apple/swift-protobuf "$source_dir/swift-protobuf"
  git -C "$source_dir/swift-protobuf" -c advice.detachedHead=false checkout -q "$swift_protobuf_version"
  (cd "$source_dir/swift-protobuf" && swift build -c release --product protoc-gen-swift >&2)
  mkdir -p "$(dirname "$plugin")"
  cp "$source_dir/swift-protobuf/.build/release/protoc-gen-swift" "$plugin"
fi

generate() {
  local destination="$1"
  mkdir -p "$destination"
  rm -f "$destination"/*.pb.swift
  (cd "$protos" && protoc \
    --plugin=protoc-gen-swift="$plugin" \
    --swift_out="$destination" \
    --swift_opt=Visibility=Public \
    --swift_opt=FileNaming=DropPath \
    baton/v1/*.proto)
}

if [[ $check -eq 1 ]]; then
  fresh="$(mktemp -d)"
  generate "$fresh"
  if diff -ru "$output" "$fresh" >&2; then
    echo "generated protobuf code is up to date"
    rm -rf "$fresh"
  else
    rm -rf "$fresh"
    echo "error: Sources/ClusterProtocol/Generated is stale; run Deploy/scripts/generate-protos.sh" >&2
    exit 1
  fi
else
  generate "$output"
  echo "generated $(ls "$output" | wc -l) files into Sources/ClusterProtocol/Generated"
fi
