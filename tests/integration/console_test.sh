#!/usr/bin/env bash
# The web console (issue 17) in a real headless Chromium against a real
# havend over HTTPS on loopback, a real repository and a real libvirt VM
# (prefix ctest-) whose vda is an ext4 file system holding a copy of /etc.
# console_test.py drives the browser through what an admin does after
# losing a host:
#  1. log in (a wrong password first: the error is in words, not JSON)
#  2. the VM on the dashboard
#  3. back it up from the dashboard and watch the job page reach 100 %
#  4. browse the new point's vda into /etc and download passwd: the same
#     bytes as the copy of /etc the disk was made from
#  5. the VM restore wizard to the end: a new name, a new identity, the
#     VM's network mapped to a second test network; `virsh dumpxml` shows
#     the new domain on that network
#  6. log out: the old session cookie gets 401 from GET /api/v1/me
# and fails on any JavaScript error of the console's own scripts in the
# browser's log. Screenshots of every page reached are kept in
# $HAVEN_BUILD_DIR/test-artifacts/console (printed at the end).
# CONSOLE_SCREENSHOT_DIR=DIR: also writes the screenshots docs/console.md
# shows (docs/img/console-*.png) to DIR.
# HAVEN_CONSOLE_DIR=DIR: serve the console from DIR instead of the source
# tree's appliance/console.
. "$(dirname "$0")/libvirt_lib.sh" curl mke2fs
. "$(dirname "$0")/havend_lib.sh"

# The browser: Debian's chromium, chromium-driver and python3-selenium, for
# the system python (scripts/install-deps.sh).
havend_need_browser skip

CONSOLE_SRC=${HAVEN_SOURCE_DIR:-$SRC}
CONSOLE_DIR=${HAVEN_CONSOLE_DIR:-$CONSOLE_SRC/appliance/console}
[ -f "$CONSOLE_DIR/index.html" ] || fail "no console in $CONSOLE_DIR"
KEEP=${HAVEN_TEST_ARTIFACTS:-${HAVEN_BUILD_DIR:-$(dirname "$HAVEN")}/test-artifacts}/console

VM=ctest-$$
NEW=ctest-new-$$
NET=ctest-net-$$
NET2=ctest-net2-$$
DPID=
chmod 711 "$WORK"
mkdir -p "$WORK/screenshots"
cleanup() {
  set +e
  havend_kill
  haven_cleanup_vm "$NEW" "$VM"
  haven_cleanup_network "$NET" "$NET2"
  # The pictures and logs of this run (also of a failed one) outlive $WORK.
  rm -rf "$KEEP"
  if mkdir -p "$KEEP" 2>/dev/null; then
    cp -a "$WORK/screenshots/." "$KEEP/" 2>/dev/null
    cp "$WORK/browser.log" "$WORK/d.log" "$KEEP/" 2>/dev/null
    echo "screenshots and logs: $KEEP"
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
R=$WORK/repo
hv() { "$HAVEN" -r "$R" "$@"; }

# ---------------------------------------------------------------- the VMs
ROOT=$WORK/root
mkdir -p "$ROOT" "$WORK/vms" "$WORK/restored"
cp -a /etc "$ROOT/etc"
# Incompressible data beside /etc, so that the backup takes long enough for
# the job page to show it running (CONSOLE_FILLER_MIB=0: none).
FILLER=${CONSOLE_FILLER_MIB:-160}
[ "$FILLER" = 0 ] || head -c "${FILLER}M" /dev/urandom >"$ROOT/filler.bin"
truncate -s "$((FILLER + 48))M" "$WORK/base.raw"
mke2fs -q -F -t ext4 -d "$ROOT" "$WORK/base.raw"
expect_rc 0 "init" hv init
haven_make_network "$NET" "ct$$" || fail "could not create network $NET"
haven_make_network "$NET2" "cu$$" || fail "could not create network $NET2"
HAVEN_VM_VDB_SIZE=0 haven_make_vm "$VM" "$WORK/vms" "$NET" "$WORK/base.raw" ||
  fail "could not create VM $VM"
ok "VM $VM (vda: ext4 with a copy of /etc) on $NET; a second network $NET2"

# ---------------------------------------------------------------- havend
havend_repo_password
STATE=$WORK/state
havend_admin_password "$WORK/admin.pw"
havend_start d --repository "main=$R" --password-file "$WORK/pw" \
  --libvirt-uri qemu:///system --console-dir "$CONSOLE_DIR"
CODE=$(curl -sS --max-time 30 --cacert "$STATE/cert.pem" -o "$WORK/index" -w '%{http_code}' "$URL/")
[ "$CODE" = 200 ] || fail "GET / (the console): HTTP $CODE"
contains "$WORK/index" "/js/app.js" "the console's index.html"
ok "havend serves the console from $CONSOLE_DIR at $URL"

# ---------------------------------------------------------------- browser
# At most 17 minutes for the browser part (about 20 s on an idle machine,
# a minute under heavy load): a hung browser or job still leaves time for
# the trap to clean up before CTest's TIMEOUT.
export CONSOLE_URL=$URL CONSOLE_USER=admin CONSOLE_PASSWORD_FILE=$WORK/admin.pw \
  CONSOLE_VM=$VM CONSOLE_NEW_VM=$NEW CONSOLE_NET=$NET CONSOLE_NET2=$NET2 \
  CONSOLE_STORAGE=$WORK/restored CONSOLE_ORIGINAL=$ROOT/etc CONSOLE_WORK=$WORK \
  CONSOLE_SHOTS=$WORK/screenshots CONSOLE_LIBVIRT_URI=$HAVEN_LIBVIRT_URI
[ -z "${CONSOLE_SCREENSHOT_DIR:-}" ] || export CONSOLE_SCREENSHOT_DIR=$(realpath -m "$CONSOLE_SCREENSHOT_DIR")
rc=0
timeout -k 20 1020 "$BROWSER_PY" "$(dirname "$0")/console_test.py" || rc=$?
[ "$rc" = 0 ] || fail "console_test.py exited $rc (havend's log: $(tail -20 "$WORK/d.log"))"
ok "the console in Chromium: login, dashboard, backup to 100 %, file download, restore wizard, logout"

havend_stop d
echo "PASS: $PASS checks"
