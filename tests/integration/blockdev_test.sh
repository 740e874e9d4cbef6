#!/usr/bin/env bash
# Block devices as source and target (loop devices over real files): backup
# reads the device (no allocation map: zero chunks are found by content),
# restore onto a device needs --overwrite, zeroes what the image holds as
# holes, and refuses a device smaller than the image.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ] || ! losetup -f >/dev/null 2>&1; then
  echo "skipped: needs root and loop devices"
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
fi
LOOPS=()
cleanup() {
  for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
# attach FILE: sets DEV to a new loop device over FILE (not in a subshell, so
# the cleanup list sees it).
attach() { DEV=$(losetup -f --show "$1"); LOOPS+=("$DEV"); }

R=$WORK/repo
haven -q -r "$R" init

# Source: 40 MiB + 4 KiB (not a multiple of the chunk size): random data,
# an explicit 8 MiB run of zeros, more data.
SRC=$WORK/src.img
random_file "$SRC" $((40 * 1024 * 1024 + 4096)) 11
dd if=/dev/zero of="$SRC" bs=1M seek=16 count=8 conv=notrunc status=none
attach "$SRC"; SRC_DEV=$DEV

expect_rc 0 "backup of a block device" haven -r "$R" --json backup image "$SRC_DEV" --name blk
[ "$(jget 'j["logical_bytes"]' "$WORK/out")" = $((40 * 1024 * 1024 + 4096)) ] ||
  fail "logical size of the device is wrong: $(cat "$WORK/out")"
[ "$(jget 'j["hole_bytes"] >= 8*1024*1024' "$WORK/out")" = true ] ||
  fail "the 8 MiB zero run was not stored as a hole: $(cat "$WORK/out")"
ok "block device backed up: its size read from the device, zero run stored as a hole"

# Target device, larger than the image and full of 0xff, so holes that are
# not zeroed would show.
DST=$WORK/dst.img
"$PYTHON" -c "open('$DST','wb').write(b'\xff' * (48 * 1024 * 1024))"
attach "$DST"; DST_DEV=$DEV
before=$(sha256sum "$DST" | cut -d' ' -f1)
expect_rc 1 "restore onto a device without --overwrite" \
  haven -r "$R" restore image blk:latest --to "$DST_DEV"
contains "$WORK/err" "--overwrite" "refusal names --overwrite"
[ "$(sha256sum "$DST" | cut -d' ' -f1)" = "$before" ] || fail "refused restore changed the device"
ok "restore onto a device without --overwrite is refused and changes nothing"

expect_rc 0 "restore onto a device" haven -r "$R" restore image blk:latest --to "$DST_DEV" --overwrite
sync
cmp -n $((40 * 1024 * 1024 + 4096)) "$SRC" "$DST_DEV" ||
  fail "device content differs from the source"
ok "restore onto a device: byte-identical, the hole range zeroed"

SMALL=$WORK/small.img
truncate -s 16M "$SMALL"
attach "$SMALL"; SMALL_DEV=$DEV
run haven -r "$R" restore image blk:latest --to "$SMALL_DEV" --overwrite
[ "$RC" != 0 ] || fail "restore onto a too-small device succeeded"
contains "$WORK/err" "smaller than the image" "too-small device named"
ok "restore onto a device smaller than the image is refused"

echo "$PASS passed, 0 failed"
