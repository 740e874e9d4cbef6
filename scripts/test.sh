#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test: unit and integration
# tests on the release build, the unit tests again under AddressSanitizer
# and UndefinedBehaviorSanitizer, then each fuzz target for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
BUILD_DIR=build scripts/build.sh
# The VM tests start libvirtd themselves; here they must run, never skip.
export HAVEN_REQUIRE_LIBVIRT=${HAVEN_REQUIRE_LIBVIRT:-1}
ctest --test-dir build --output-on-failure --timeout 900 -j 2
BUILD_DIR=build-asan scripts/build.sh -DHAVEN_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan -L unit --output-on-failure --timeout 900 -j 2
FUZZ_SECONDS=${FUZZ_SECONDS:-20} scripts/fuzz.sh
