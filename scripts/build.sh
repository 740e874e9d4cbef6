#!/usr/bin/env bash
# Configures and builds Haven into ${BUILD_DIR:-build}. Extra arguments go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHAVEN_WERROR=ON -DBUILD_TESTING=ON "$@" >/dev/null
cmake --build "$BUILD_DIR"
