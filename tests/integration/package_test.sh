#!/usr/bin/env bash
# The Debian package for guests (scripts/package.sh, CPack): built into a
# temporary build dir (or into $PACKAGE_BUILD_DIR, reused and rebuilt
# incrementally), its control fields (Package, Version, Depends from
# dpkg-shlibdeps) and contents checked, then installed for real with
# `apt-get install ./haven_*.deb`; the installed /usr/bin/haven runs a small
# round trip (init, backup image, snapshots, restore image) and the package is
# removed again, leaving the machine as it was. If haven was installed before
# the test, it is reinstalled from the new package and not removed.
# Needs root, apt-get and dpkg-deb; skips otherwise. Under CTest the build
# that made $HAVEN is packaged as it is (cpack there: no second build);
# by hand, or with PACKAGE_BUILD_DIR, scripts/package.sh does a Release build.
BUILT=${HAVEN:-}
export HAVEN=/usr/bin/haven # the binary under test is the installed one
. "$(dirname "$0")/lib.sh"
SRC=${HAVEN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}

skip() {
  echo "skipped: $*"
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
}
[ "$(id -u)" = 0 ] || skip "needs root (apt-get install)"
for c in apt-get dpkg dpkg-deb cmake cpack; do
  command -v "$c" >/dev/null || skip "$c is not installed"
done

installed() { dpkg-query -W -f='${Status}' haven 2>/dev/null | grep -q "install ok installed"; }
PREINSTALLED=0
if installed; then PREINSTALLED=1; fi
WE_INSTALLED=0
cleanup() {
  if [ "$WE_INSTALLED" = 1 ] && [ "$PREINSTALLED" = 0 ]; then
    apt-get -o DPkg::Lock::Timeout=300 remove -y haven >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
# Another apt/dpkg run (scripts/install-deps.sh) may hold the lock: wait for it.
apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 "$@"; }

# ---------------------------------------------------------------- build
BUILD=${PACKAGE_BUILD_DIR:-$WORK/build}
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
start=$SECONDS
CTEST_BUILD=""
if [ -z "${PACKAGE_BUILD_DIR:-}" ] && [ -n "$BUILT" ] &&
   [ -f "$(dirname "$BUILT")/CPackConfig.cmake" ]; then
  CTEST_BUILD=$(cd "$(dirname "$BUILT")" && pwd)
fi
if [ -n "$CTEST_BUILD" ]; then
  rm -f "$CTEST_BUILD"/haven_*.deb
  (cd "$CTEST_BUILD" && cpack -G DEB -B "$WORK/cpack") >"$WORK/package.log" 2>&1 ||
    fail "cpack in $CTEST_BUILD failed: $(tail -c 3000 "$WORK/package.log")"
  DEB=$(ls "$WORK"/cpack/haven_*.deb 2>/dev/null | head -1)
elif ! DEBS=$(BUILD_DIR=$BUILD "$SRC/scripts/package.sh" 2>"$WORK/package.log"); then
  fail "scripts/package.sh failed: $(tail -c 3000 "$WORK/package.log")"
else
  # One path a line: haven's, then havend's (havend_service_test checks it).
  DEB=$(head -1 <<<"$DEBS")
fi
[ -f "$DEB" ] || fail "scripts/package.sh printed '$DEB', not a file"
case $DEB in /*) ;; *) fail "scripts/package.sh printed a relative path: $DEB" ;; esac
ok "built $DEB ($(stat -c %s "$DEB") bytes) in $((SECONDS - start))s"

# ---------------------------------------------------------------- control fields
VERSION=$(sed -n 's/^project(haven VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
[ -n "$VERSION" ] || fail "no project(haven VERSION ...) in $SRC/CMakeLists.txt"
ARCH=$(dpkg --print-architecture)
[ "$(basename "$DEB")" = "haven_${VERSION}_${ARCH}.deb" ] ||
  fail "file name $(basename "$DEB"), expected haven_${VERSION}_${ARCH}.deb"
dpkg-deb -I "$DEB" >"$WORK/info"
contains "$WORK/info" " Package: haven" "dpkg-deb -I"
contains "$WORK/info" " Version: $VERSION" "dpkg-deb -I"
contains "$WORK/info" " Architecture: $ARCH" "dpkg-deb -I"
contains "$WORK/info" " Section: admin" "dpkg-deb -I"
contains "$WORK/info" " Maintainer: " "dpkg-deb -I"
contains "$WORK/info" "Haven backup agent: file-level and image-level deduplicated encrypted backups" \
  "dpkg-deb -I description"
DEPENDS=$(dpkg-deb -f "$DEB" Depends)
for lib in librocksdb libzstd libssl3 libc6; do
  [[ "$DEPENDS" == *"$lib"* ]] || fail "Depends lacks $lib: $DEPENDS"
done
ok "control: Package haven, Version $VERSION, $ARCH, Section admin; Depends: $DEPENDS"

dpkg-deb -c "$DEB" >"$WORK/contents"
for f in ./usr/bin/haven ./usr/lib/haven/haven-nbd ./usr/share/doc/haven/user-guide.md ./usr/share/doc/haven/repository-format.md; do
  grep -qE " $f\$" "$WORK/contents" || fail "dpkg-deb -c: $f missing from: $(cat "$WORK/contents")"
done
ok "contents: ./usr/bin/haven, ./usr/lib/haven/haven-nbd and the docs in ./usr/share/doc/haven"
# --- agents: jobs --- the agent's unit, installed but not enabled
grep -qE " ./lib/systemd/system/haven-agent.service\$" "$WORK/contents" ||
  fail "dpkg-deb -c: ./lib/systemd/system/haven-agent.service missing"
dpkg-deb --fsys-tarfile "$DEB" | tar -xO ./lib/systemd/system/haven-agent.service \
  >"$WORK/haven-agent.service"
contains "$WORK/haven-agent.service" "ExecStart=/usr/bin/haven agent run" "haven-agent.service"
contains "$WORK/haven-agent.service" "RestartPreventExitStatus=1" "haven-agent.service"
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify "$WORK/haven-agent.service" >"$WORK/verify" 2>&1 || true
  lacks "$WORK/verify" "Unknown key" "systemd-analyze verify haven-agent.service"
  lacks "$WORK/verify" "Invalid" "systemd-analyze verify haven-agent.service"
fi
ok "contents: haven-agent.service (RestartPreventExitStatus=1: a revoked agent is not restarted)"

# ---------------------------------------------------------------- install
WE_INSTALLED=1
if [ "$PREINSTALLED" = 1 ]; then
  expect_rc 0 "apt-get install --reinstall $DEB" apt_get install -y --reinstall "$DEB"
else
  expect_rc 0 "apt-get install $DEB" apt_get install -y "$DEB"
fi
installed || fail "dpkg -s haven: not installed after apt-get install: $(dpkg -s haven 2>&1 | head -5)"
dpkg -s haven >"$WORK/status"
contains "$WORK/status" "Status: install ok installed" "dpkg -s haven"
contains "$WORK/status" "Version: $VERSION" "dpkg -s haven"
ok "apt-get install ./$(basename "$DEB"): dpkg -s haven says installed, version $VERSION"

[ -x /usr/bin/haven ] || fail "/usr/bin/haven is not an executable"
ldd /usr/bin/haven >"$WORK/ldd" 2>&1 || true
lacks "$WORK/ldd" "not found" "ldd /usr/bin/haven"
expect_rc 0 "/usr/bin/haven --help" /usr/bin/haven --help
contains "$WORK/out" "Usage: haven" "haven --help"
expect_rc 0 "/usr/bin/haven --version" /usr/bin/haven --version
contains "$WORK/out" "$VERSION" "haven --version"
ok "/usr/bin/haven --help and --version work, every library resolves"

# ---------------------------------------------------------------- round trip
R=$WORK/repo
export HAVEN_PASSWORD=x
random_file "$WORK/disk.img" $((1 << 20)) 7
expect_rc 0 "init" /usr/bin/haven -r "$R" init
expect_rc 0 "backup image" /usr/bin/haven -r "$R" backup image "$WORK/disk.img" --name t
expect_rc 0 "snapshots" /usr/bin/haven -r "$R" snapshots
grep -qE '^[0-9a-f]{8} .* t +1\.0 MiB' "$WORK/out" || fail "snapshots does not list t: $(cat "$WORK/out")"
expect_rc 0 "restore image" /usr/bin/haven -r "$R" restore image t:latest --to "$WORK/restored.img"
same_file "$WORK/disk.img" "$WORK/restored.img" "restore of the installed binary's backup"
ok "installed /usr/bin/haven: init, backup image (1 MiB) --name t, snapshots lists t, restore byte-identical"

# ---------------------------------------------------------------- remove
if [ "$PREINSTALLED" = 0 ]; then
  expect_rc 0 "apt-get remove haven" apt_get remove -y haven
  WE_INSTALLED=0
  if installed; then fail "haven still installed after apt-get remove"; fi
  [ ! -e /usr/bin/haven ] || fail "/usr/bin/haven left behind after apt-get remove"
  ok "apt-get remove -y haven: not installed, /usr/bin/haven gone"
else
  echo "note: haven was installed before the test; left installed (now from $DEB)"
fi

echo "$PASS passed, 0 failed"
