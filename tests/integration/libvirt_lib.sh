# Shared start of the tests that drive a real libvirtd + QEMU. Source it
# instead of lib.sh:
#   . "$(dirname "$0")/libvirt_lib.sh" [COMMAND...]
# It sources lib.sh and scripts/libvirt-env.sh, defines ok (with the
# elapsed seconds) and skip, checks root and the commands virsh, qemu-img,
# qemu-system-x86_64 and the COMMANDs given, and starts libvirtd. A test
# that cannot run here skips (exit 0); with CI or HAVEN_REQUIRE_LIBVIRT=1 in
# the environment that is a failure instead.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SRC=${HAVEN_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
. "$SRC/scripts/libvirt-env.sh"

ok() { PASS=$((PASS + 1)); echo "ok: $* [${SECONDS}s]"; }
skip() {
  if [ -n "${CI:-}" ] || [ "${HAVEN_REQUIRE_LIBVIRT:-0}" = 1 ]; then
    fail "libvirt is required here (CI / HAVEN_REQUIRE_LIBVIRT) but: $*"
  fi
  echo "SKIP: $*"
  exit 0
}
[ "$(id -u)" = 0 ] || skip "needs root (qemu:///system, libvirtd)"
for _c in virsh qemu-img qemu-system-x86_64 "$@"; do
  command -v "$_c" >/dev/null || [ -x "/usr/sbin/$_c" ] ||
    skip "$_c is not installed (scripts/install-deps.sh)"
done
haven_libvirt_start 2>"$WORK/libvirt-start.err" ||
  skip "libvirtd cannot be started: $(cat "$WORK/libvirt-start.err")"
