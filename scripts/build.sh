#!/usr/bin/env bash
# Configures and builds Haven into ${BUILD_DIR:-build}. Extra arguments go to cmake.
# Compiles through ccache when it is installed (scripts/install-deps.sh installs it):
# base_dir at the checkout and hash_dir off, so a build in another clone of the same
# tree (CI's) reuses this one's objects.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
LAUNCHER=()
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true
  export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-10G}
  LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHAVEN_WERROR=ON -DBUILD_TESTING=ON "${LAUNCHER[@]}" "$@" >/dev/null
cmake --build "$BUILD_DIR"
