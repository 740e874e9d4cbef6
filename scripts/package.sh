#!/usr/bin/env bash
# Builds the Debian packages: a Release build in ${BUILD_DIR:-build-package}
# (extra arguments go to cmake), then `cpack -G DEB` there, which makes one
# package per install component (CMakeLists.txt, "packaging"):
#   haven_VERSION_ARCH.deb   the haven command (agent, CLI); for hosts and guests
#   havend_VERSION_ARCH.deb  the appliance: havend, its systemd unit and
#                            /etc/haven/havend.conf.example; starts nothing
# Build output goes to stderr; stdout is the absolute path of each .deb, one
# a line, haven's first. Install with: apt install ./haven_*.deb ./havend_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-package}
# Depends is filled in by dpkg-shlibdeps (dpkg-dev), which needs `file`.
if ! command -v dpkg-shlibdeps >/dev/null || ! command -v file >/dev/null; then
  scripts/install-deps.sh >&2
fi
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
  -DHAVEN_WERROR=ON "$@" >&2
cmake --build "$BUILD_DIR" --target haven haven-nbd havend >&2
rm -f "$BUILD_DIR"/haven_*.deb "$BUILD_DIR"/havend_*.deb
(cd "$BUILD_DIR" && cpack -G DEB) >&2
for name in haven havend; do
  debs=("$BUILD_DIR"/"${name}"_*.deb)
  [ "${#debs[@]}" = 1 ] && [ -f "${debs[0]}" ] ||
    { echo "package.sh: no ${name}_*.deb in $BUILD_DIR" >&2; exit 1; }
  echo "$(cd "$(dirname "${debs[0]}")" && pwd)/$(basename "${debs[0]}")"
done
