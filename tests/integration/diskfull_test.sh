#!/usr/bin/env bash
# A full disk during a backup (the repository on a small tmpfs): the backup
# fails with a clear error and exit 1, writes no recovery point, leaves no
# temporary pack behind, and every earlier recovery point still restores and
# checks clean. After space is freed the next backup succeeds.
. "$(dirname "$0")/lib.sh"

MNT=$WORK/mnt
mkdir -p "$MNT"
if [ "$(id -u)" != 0 ] || ! mount -t tmpfs -o size=40M tmpfs "$MNT" 2>/dev/null; then
  echo "skipped: needs root and tmpfs mounts"
  echo "0 passed, 0 failed, 1 skipped"
  exit 0
fi
trap 'umount "$MNT" 2>/dev/null || true; rm -rf "$WORK"' EXIT
R=$MNT/repo
haven -q -r "$R" init

# A first recovery point that fits (16 MiB of random data).
random_file "$WORK/small.img" $((16 * 1024 * 1024)) 31
expect_rc 0 "first backup" haven -r "$R" --json backup image "$WORK/small.img" --name small
FIRST=$(jget 'j["id"]' "$WORK/out")
digest=$(cd "$R" && find config keys snapshots -type f | sort | xargs sha256sum | sha256sum)

# A second that cannot fit: 48 MiB of random data into the ~23 MiB left.
random_file "$WORK/big.img" $((48 * 1024 * 1024)) 32
expect_rc 1 "backup onto a full disk" haven -r "$R" backup image "$WORK/big.img" --name big
contains "$WORK/err" "No space left on device" "the error says the disk is full"
contains "$WORK/err" "no recovery point was written" "the error says nothing was committed"
ok "full disk: backup fails with exit 1 and 'No space left on device'"

[ "$(cd "$R" && find config keys snapshots -type f | sort | xargs sha256sum | sha256sum)" = "$digest" ] ||
  fail "the failed backup changed config, keys or snapshots"
[ -z "$(ls -A "$R/tmp")" ] || fail "temporary packs left behind: $(ls "$R/tmp")"
expect_rc 0 "snapshots after the failure" haven -r "$R" --json snapshots
[ "$(jget 'len(j)' "$WORK/out")" = 1 ] || fail "a recovery point was written: $(cat "$WORK/out")"
ok "nothing committed, no temp pack left, earlier points unchanged"

expect_rc 0 "check after the failure" haven -r "$R" check --read-data
contains "$WORK/out" "no errors found" "check after a full disk"
expect_rc 0 "restore of the earlier point" haven -r "$R" restore image "$FIRST" --to "$WORK/out.img"
same_file "$WORK/small.img" "$WORK/out.img" "earlier point after a full disk"
ok "the repository checks clean and the earlier point restores byte-identical"

# Make room and try again: the finished packs of the failed run are reused.
mount -o remount,size=120M "$MNT"
expect_rc 0 "backup after freeing space" haven -r "$R" --json backup image "$WORK/big.img" --name big
expect_rc 0 "restore of the new point" haven -r "$R" restore image big:latest --to "$WORK/big.out"
same_file "$WORK/big.img" "$WORK/big.out" "backup after freeing space"
ok "after space is freed the backup succeeds and restores"
echo "$PASS passed, 0 failed"
