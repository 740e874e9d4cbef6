#!/usr/bin/env bash
# Off-site copies between local repositories (docs/copies.md), on real data:
# an ext4 file system made with mkfs holding a copy of /etc and part of /usr,
# backed up as an image and as files.
#  - a target made with init --copy-params-from receives the points; the
#    copies restore byte for byte and check clean;
#  - the dry run's figures are what the copy then sends;
#  - kill -9 mid-copy, rerun: the target checks clean and the bytes written
#    in total are at most 1.05x those of an uninterrupted copy;
#  - a flipped bit in the source is reported with its point and not copied;
#  - a seed exported to a loop-mounted file system and imported at the other
#    side; the next night's copy sends at most 1.1x the changed bytes;
#  - a target that does not share chunk-id keys is refused, unchanged.
. "$(dirname "$0")/lib.sh"
for t in mkfs.ext4 mount umount losetup; do
  command -v "$t" >/dev/null || { echo "SKIP: $t missing"; exit 77; }
done
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root for loop mounts"; exit 77; }

MNT=$WORK/mnt
USB=$WORK/usb
cleanup() {
  set +e
  for m in "$MNT" "$USB"; do mountpoint -q "$m" && umount "$m"; done
  [ -n "${KILLME:-}" ] && kill -9 "$KILLME" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

SRC=$WORK/src
DST=$WORK/dst
packs_bytes() {  # bytes in a repository's committed packs
  find "$1/packs" -type f -printf '%s\n' 2>/dev/null | awk '{s+=$1} END {print s+0}'
}
inflight_bytes() {  # bytes of packs being written (tmp/pack-*.tmp)
  find "$1/tmp" -type f -name 'pack-*' -printf '%s\n' 2>/dev/null | awk '{s+=$1} END {print s+0}'
}

# ---------------------------------------------------------------- data
truncate -s 640M "$WORK/fs.img"
mkfs.ext4 -q -F "$WORK/fs.img"
mkdir -p "$MNT" "$USB"
mount -o loop "$WORK/fs.img" "$MNT" || fail "loop mount of the ext4 file system"
cp -a /etc "$MNT/etc"
real_files "$MNT/usr" $((240 << 20)) >/dev/null
ok "an ext4 file system made with mkfs holds /etc and $(du -sm "$MNT/usr" | cut -f1) MB of /usr"

haven -q -r "$SRC" init
expect_rc 0 "file backup" haven -r "$SRC" -q backup files "$MNT" --name tree
umount "$MNT"
expect_rc 0 "image backup" haven -r "$SRC" -q backup image "$WORK/fs.img" --name fs
cp "$WORK/fs.img" "$WORK/fs-night1.img"

# ---------------------------------------------------------------- refused
haven -q -r "$WORK/foreign" init
before=$(repo_digest "$WORK/foreign")
expect_rc 1 "copy into a repository made without --copy-params-from" \
  haven copy --from "$SRC" --to "$WORK/foreign"
contains "$WORK/err" "--copy-params-from" "the refusal names the fix"
[ "$(repo_digest "$WORK/foreign")" = "$before" ] || fail "the refused target changed"
ok "a target that does not share chunk-id keys is refused and left unchanged"

# ---------------------------------------------------------------- copy
# The source's passphrase is HAVEN_PASSWORD (lib.sh); each other repository
# has its own, given as HAVEN_TO_PASSWORD / HAVEN_FROM_PASSWORD or, for a
# repository at -r, HAVEN_PASSWORD.
export HAVEN_FROM_PASSWORD=$HAVEN_PASSWORD HAVEN_TO_PASSWORD=other-site-pass
as_dst() { env HAVEN_PASSWORD=other-site-pass "$HAVEN" "$@"; }
expect_rc 0 "init --copy-params-from" as_dst -r "$DST" init --copy-params-from "$SRC"
expect_rc 1 "the target's passphrase does not open the source" as_dst -r "$SRC" snapshots
expect_rc 0 "the target opens with its own passphrase" as_dst -r "$DST" snapshots
cp -a "$DST" "$WORK/ref"  # an empty twin for the uninterrupted reference copy

expect_rc 0 "dry run" haven --json copy --from "$SRC" --to "$DST" --dry-run
cp "$WORK/out" "$WORK/dry.json"
[ "$(jget 'j["points_to_copy"]' "$WORK/dry.json")" = 2 ] || fail "dry run: $(cat "$WORK/dry.json")"
[ -z "$(ls "$DST/snapshots")" ] || fail "the dry run wrote a point"

expect_rc 0 "reference copy" haven --json copy --from "$SRC" --to "$WORK/ref"
cp "$WORK/out" "$WORK/ref.json"
for f in chunks_sent bytes_sent; do
  [ "$(jget "j['$f']" "$WORK/dry.json")" = "$(jget "j['$f']" "$WORK/ref.json")" ] ||
    fail "dry run $f $(jget "j['$f']" "$WORK/dry.json") != copy's $(jget "j['$f']" "$WORK/ref.json")"
done
ok "the dry run said what the copy sent: $(jget 'j["chunks_sent"]' "$WORK/ref.json") chunks, $(jget 'j["bytes_sent"]' "$WORK/ref.json") bytes (copied in $(jget 'round(j["duration_seconds"], 2)' "$WORK/ref.json") s)"
ref_stored=$(packs_bytes "$WORK/ref")

# Interrupted: kill -9 once about a third has arrived, then rerun.
"$HAVEN" -q copy --from "$SRC" --to "$DST" --limit-rate 40M &
KILLME=$!
for _ in $(seq 1 300); do
  [ "$(packs_bytes "$DST")" -gt $((ref_stored / 3)) ] && break
  kill -0 "$KILLME" 2>/dev/null || break
  sleep 0.1
done
# Not right after a pack appeared: a moment unrelated to the copy's steps.
sleep 0.37
kill -9 "$KILLME" 2>/dev/null || fail "the copy ended before it could be killed"
wait "$KILLME" 2>/dev/null || true
KILLME=
at_kill=$(packs_bytes "$DST")
lost=$(inflight_bytes "$DST")
committed=$(ls "$DST/snapshots" | wc -l)  # whole points only: check below reads them
expect_rc 0 "check after kill -9" as_dst -r "$DST" check --read-data
expect_rc 0 "copy after kill -9" haven --json copy --from "$SRC" --to "$DST"
cp "$WORK/out" "$WORK/resume.json"
[ "$(jget 'j["points_copied"]' "$WORK/resume.json")" = $((2 - committed)) ] ||
  fail "resume after $committed points had arrived: $(cat "$WORK/resume.json")"
# Written in total: what had arrived, what was in flight and lost, and
# what the rerun added.
total=$(($(packs_bytes "$DST") + lost))
[ $((total * 100)) -le $((ref_stored * 105)) ] ||
  fail "killed + resumed wrote $total bytes, more than 1.05 x $ref_stored (at the kill: $at_kill in packs, $lost in flight; the rerun sent $(jget 'j["bytes_sent"]' "$WORK/resume.json") raw bytes of $(jget 'j["bytes_sent"]' "$WORK/ref.json"); $(find "$DST/packs" -type f | wc -l) packs against $(find "$WORK/ref/packs" -type f | wc -l))"
ok "killed with $committed points and $at_kill of $ref_stored bytes arrived ($lost in flight, lost), resumed: $total bytes written in total ($((total * 1000 / ref_stored)) per mille of one copy)"

expect_rc 0 "check --read-data of the copy" as_dst -r "$DST" check --read-data
expect_rc 0 "restore image from the copy" as_dst -r "$DST" restore image fs:latest --to "$WORK/fs.back"
same_file "$WORK/fs.img" "$WORK/fs.back" "the image restored from the copy"
expect_rc 0 "restore files from the copy" as_dst -r "$DST" restore files tree:latest --to "$WORK/files.back"
mount -o loop,ro "$WORK/fs.img" "$MNT"
diff -r --no-dereference "$MNT/etc" "$WORK/files.back$MNT/etc" >/dev/null ||
  fail "files restored from the copy differ from the source tree"
diff -r --no-dereference "$MNT/usr" "$WORK/files.back$MNT/usr" >/dev/null ||
  fail "files restored from the copy differ from the source tree (/usr)"
umount "$MNT"
ok "the copy checks clean with --read-data; its image and files restore byte for byte"

expect_rc 0 "copy again" haven --json copy --from "$SRC" --to "$DST"
[ "$(jget 'j["chunks_sent"]' "$WORK/out")" = 0 ] || fail "a second copy sent chunks: $(cat "$WORK/out")"
ok "a second copy sends nothing"

# ---------------------------------------------------------------- flipped bit
cp -a "$SRC" "$WORK/src2"
rm -rf "$WORK/src2/index"  # rebuilt from the packs when opened
# The largest pack holds image data; flip one bit in its middle.
pack=$(largest_pack "$WORK/src2")
size=$(stat -c %s "$pack")
py - "$pack" $((size / 2)) <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2]))
    f.write(bytes([b[0] ^ 0x04]))
EOF
expect_rc 0 "init dst3" as_dst -q -r "$WORK/dst3" init --copy-params-from "$WORK/src2"
expect_rc 3 "copy from a damaged source" haven copy --from "$WORK/src2" --to "$WORK/dst3"
cp "$WORK/out" "$WORK/damaged.txt"
contains "$WORK/damaged.txt" "DAMAGED chunk" "the damaged chunk is reported"
contains "$WORK/damaged.txt" "failed" "the point that needs it is reported failed"
expect_rc 0 "the damaged copy's target checks clean" as_dst -r "$WORK/dst3" check
as_dst -r "$WORK/dst3" --json snapshots >"$WORK/dst3.json"
[ "$(jget 'len(j)' "$WORK/dst3.json")" -lt 2 ] || fail "the damaged point was copied: $(cat "$WORK/dst3.json")"
ok "a flipped bit in the source is reported ($(grep -c DAMAGED "$WORK/damaged.txt") chunk) and its point is not copied"

# ---------------------------------------------------------------- seed
truncate -s 1G "$WORK/usb.img"
mkfs.ext4 -q -F "$WORK/usb.img"
mount -o loop "$WORK/usb.img" "$USB"
export HAVEN_FROM_PASSWORD=$HAVEN_PASSWORD HAVEN_TO_PASSWORD=seed-pass
expect_rc 0 "seed export" haven -r "$SRC" seed export --to "$USB/seed" --keep-last 1
expect_rc 0 "check the seed" env HAVEN_PASSWORD=seed-pass "$HAVEN" -r "$USB/seed" check --read-data
umount "$USB"
mount -o loop "$WORK/usb.img" "$USB"  # carried: unmounted, mounted again
REMOTE=$WORK/remote
expect_rc 0 "seed import --init" env HAVEN_FROM_PASSWORD=seed-pass HAVEN_TO_PASSWORD=remote-pass \
  "$HAVEN" -r "$REMOTE" seed import "$USB/seed" --init
contains "$WORK/out" "imported 2 of 2" "the import copied both points"
umount "$USB"
ok "a seed exported to a loop-mounted ext4, carried (unmounted and mounted again) and imported"

# The next night: new and changed files in the file system, a new image point.
mount -o loop "$WORK/fs.img" "$MNT"
random_file "$MNT/new-data.bin" $((24 << 20)) 5
cp -a /etc/ssl "$MNT/etc/ssl-copy"
umount "$MNT"
expect_rc 0 "night 2 image backup" haven -r "$SRC" -q backup image "$WORK/fs.img" --name fs
changed=$(py - "$WORK/fs-night1.img" "$WORK/fs.img" <<'EOF'
import sys
a, b = open(sys.argv[1], "rb"), open(sys.argv[2], "rb")
n = 0
while True:
    x, y = a.read(65536), b.read(65536)
    if not x and not y: break
    if x != y: n += len(y)
print(n)
EOF
)
expect_rc 0 "nightly copy" env HAVEN_TO_PASSWORD=remote-pass "$HAVEN" --json copy --from "$SRC" --to "$REMOTE" fs:latest
sent=$(jget 'j["bytes_sent"]' "$WORK/out")
[ "$(jget 'j["points_copied"]' "$WORK/out")" = 1 ] || fail "nightly copy: $(cat "$WORK/out")"
[ $((sent * 100)) -le $((changed * 110)) ] || fail "the nightly copy sent $sent bytes for $changed changed"
ok "the night after the seed sent $sent bytes for $changed bytes of changed 64 KiB chunks ($((sent * 1000 / changed)) per mille)"
expect_rc 0 "restore night 2 at the remote site" env HAVEN_PASSWORD=remote-pass \
  "$HAVEN" -r "$REMOTE" restore image fs:latest --to "$WORK/fs2.back"
same_file "$WORK/fs.img" "$WORK/fs2.back" "night 2 restored at the remote site"
ok "night 2 restores byte for byte at the remote site"

echo "PASS: $PASS checks"
