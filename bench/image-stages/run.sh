#!/usr/bin/env bash
# Builds and runs the per-stage timing of the native image preprocessing (stages.cpp; bench/NOTES.md §30).
# usage: bench/image-stages/run.sh [IMAGE] [image_size] [crop] [iters]   (default: the bench's 640×427 JPEG)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${TMPDIR:-/tmp}/torchd-image-stages"
# The addon's flags (CMake Release): -O3, no -march, so the figures are the shipped code's.
g++ -O3 -DNDEBUG -std=c++17 "$here/stages.cpp" -o "$out" $(pkg-config --cflags --libs libturbojpeg libjpeg spng)
"$out" "${1:-$here/../../test/fixtures/models/sample.jpg}" "${@:2}"
