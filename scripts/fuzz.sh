#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for
# ${FUZZ_SECONDS:-20} seconds from its committed seed corpus (copied, so the
# tree is not changed). A crash fails the script and leaves the input in
# build-fuzz/crashes/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-20}
LAUNCHER=()
if command -v ccache >/dev/null; then  # as scripts/build.sh
  export CCACHE_BASEDIR="$PWD" CCACHE_NOHASHDIR=true
  LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DHAVEN_FUZZ=ON -DBUILD_TESTING=OFF "${LAUNCHER[@]}" >/dev/null
# Only the fuzz targets (and the libraries they link): the rest of the tree
# is built and tested by scripts/test.sh.
targets=()
for seeds in tests/fuzz/corpus/*/; do targets+=("$(basename "$seeds")"); done
cmake --build build-fuzz --target "${targets[@]}"
mkdir -p build-fuzz/crashes
passed=0 failed=0
for seeds in tests/fuzz/corpus/*/; do
  t=$(basename "$seeds")
  work=$(mktemp -d)
  cp -r "$seeds". "$work/"
  echo "fuzzing $t for ${SECONDS_EACH}s"
  # guest_fs_fuzz: The Sleuth Kit sizes some buffers by what the image claims;
  # in haven it runs in a child whose address space is bounded
  # (restore/isolated_reader.cc), so an allocation over the bound fails there.
  # The same here: allocations over 1 GiB return NULL instead of being
  # reported as out-of-memory (what TSK then does with NULL is still checked).
  asan=${ASAN_OPTIONS:-}
  [ "$t" = guest_fs_fuzz ] && asan="max_allocation_size_mb=1024:allocator_may_return_null=1${asan:+:$asan}"
  if ASAN_OPTIONS="$asan" build-fuzz/tests/fuzz/"$t" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 \
       -timeout=10 -artifact_prefix=build-fuzz/crashes/"$t"- -print_final_stats=1 \
       "$work" >build-fuzz/"$t".log 2>&1; then
    passed=$((passed + 1))
    grep -E "stat::number_of_executed_units|cov:" build-fuzz/"$t".log | tail -2 || true
  else
    failed=$((failed + 1))
    echo "FUZZ FAILURE in $t:"; tail -40 build-fuzz/"$t".log
  fi
  rm -rf "$work"
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" = 0 ]
