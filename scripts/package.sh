#!/usr/bin/env bash
# Builds the Debian package of the haven binary: a Release build in
# ${BUILD_DIR:-build-package} (extra arguments go to cmake), then `cpack -G DEB`
# there. Build output goes to stderr; stdout is the absolute path of the .deb
# (haven_VERSION_ARCH.deb). Install it in a guest with: apt install ./haven_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-package}
# Depends is filled in by dpkg-shlibdeps (dpkg-dev), which needs `file`.
if ! command -v dpkg-shlibdeps >/dev/null || ! command -v file >/dev/null; then
  scripts/install-deps.sh >&2
fi
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
  -DHAVEN_WERROR=ON "$@" >&2
cmake --build "$BUILD_DIR" --target haven >&2
rm -f "$BUILD_DIR"/haven_*.deb
(cd "$BUILD_DIR" && cpack -G DEB) >&2
debs=("$BUILD_DIR"/haven_*.deb)
[ "${#debs[@]}" = 1 ] && [ -f "${debs[0]}" ] || { echo "package.sh: no .deb in $BUILD_DIR" >&2; exit 1; }
echo "$(cd "$(dirname "${debs[0]}")" && pwd)/$(basename "${debs[0]}")"
