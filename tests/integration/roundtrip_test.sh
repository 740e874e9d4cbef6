#!/usr/bin/env bash
# Back up and restore images of every shape and check they come back
# byte-identical; snapshot listing, show, restore-target safety, dedup.
. "$(dirname "$0")/lib.sh"

R=$WORK/repo
IMG=$WORK/img
OUT=$WORK/restored
mkdir -p "$IMG" "$OUT"
hv() { "$HAVEN" -r "$R" "$@"; }

expect_rc 0 "init" hv init --chunk-size 64K
contains "$WORK/out" "chunk size 64.0 KiB" "init summary"
ok "init --chunk-size 64K"

MiB=$((1 << 20))
# (a) random data
random_file "$IMG/rand" $((20 * MiB)) 1
# (b) zeros written explicitly (allocated, not holes) between random data
random_file "$IMG/zeros" $((4 * MiB)) 2
dd if=/dev/zero bs=1M count=8 status=none >>"$IMG/zeros"
random_file "$WORK/tail" $((4 * MiB)) 3
cat "$WORK/tail" >>"$IMG/zeros"
# (c) sparse: 64 MiB with three small data islands, one at the very end
truncate -s 64M "$IMG/sparse"
random_file "$WORK/island" $MiB 4
dd if="$WORK/island" of="$IMG/sparse" bs=1M seek=5 conv=notrunc status=none
dd if="$WORK/island" of="$IMG/sparse" bs=64K seek=650 count=3 conv=notrunc status=none
dd if="$WORK/island" of="$IMG/sparse" bs=1K seek=$((64 * 1024 - 100)) count=100 conv=notrunc status=none
# (d) size not a multiple of the chunk size
random_file "$IMG/odd" $((10 * MiB + 12345)) 5
# (e) empty
: >"$IMG/empty"
# (f) a real ext4 file system holding documentation files (~24 MiB)
mkdir -p "$WORK/fsroot/doc"
for d in /usr/share/doc/*/; do
  [ "$(du -sm "$WORK/fsroot" | cut -f1)" -ge 24 ] && break
  cp -rL "$d" "$WORK/fsroot/doc/" 2>/dev/null || true
done
head -c 3000000 /dev/urandom >"$WORK/fsroot/random.bin"
mkfs.ext4 -q -F -d "$WORK/fsroot" "$IMG/ext4" 64M >/dev/null
[ "$(find "$WORK/fsroot" -type f | wc -l)" -gt 20 ] || fail "ext4 source tree too small"

NAMES="rand zeros sparse odd empty ext4"
declare -A ID
for n in $NAMES; do
  expect_rc 0 "backup image $n" hv --json backup image "$IMG/$n" --name "$n"
  ID[$n]=$(jget 'j["id"]' "$WORK/out")
  cp "$WORK/out" "$WORK/backup-$n.json"
  [ "$(jget 'j["logical_bytes"]' "$WORK/out")" = "$(stat -c %s "$IMG/$n")" ] ||
    fail "backup $n: logical_bytes $(jget 'j["logical_bytes"]' "$WORK/out") != file size"
  [ "$(jget 'j["consistency"]' "$WORK/out")" = offline ] || fail "backup $n: not 'offline'"
  ok "backup image $n (exit 0, logical_bytes = file size)"
done

# Zero ranges and holes are not stored.
hz=$(jget 'j["hole_bytes"]' "$WORK/backup-zeros.json")
[ "$hz" -ge $((8 * MiB)) ] || fail "zeros: hole_bytes $hz < 8 MiB of written zeros"
nz=$(jget 'j["new_raw_bytes"]' "$WORK/backup-zeros.json")
[ "$nz" -le $((8 * MiB + 256 * 1024)) ] || fail "zeros: stored $nz raw bytes, zeros were stored"
ok "explicit zeros are not stored (hole_bytes $hz, new_raw_bytes $nz)"
hs=$(jget 'j["hole_bytes"]' "$WORK/backup-sparse.json")
[ "$hs" -ge $((60 * MiB)) ] || fail "sparse: hole_bytes $hs < 60 MiB"
ok "sparse image holes not stored (hole_bytes $hs)"

for n in $NAMES; do
  expect_rc 0 "restore image $n" hv --json restore image "${ID[$n]}" --to "$OUT/$n"
  same_file "$IMG/$n" "$OUT/$n" "restore $n"
  [ "$(jget 'j["size"]' "$WORK/out")" = "$(stat -c %s "$IMG/$n")" ] || fail "restore $n: size"
  [ ! -e "$OUT/$n.haven-partial" ] || fail "restore $n left $n.haven-partial"
  ok "restore $n is byte-identical"
done
[ "$(stat -c %s "$OUT/empty")" = 0 ] || fail "empty restore not empty"

# Restored holes stay holes.
apparent=$(stat -c %s "$OUT/sparse")
alloc=$(du -B1 "$OUT/sparse" | cut -f1)
orig_alloc=$(du -B1 "$IMG/sparse" | cut -f1)
[ "$alloc" -le $((orig_alloc + MiB)) ] ||
  fail "restored sparse image allocates $alloc bytes, source only $orig_alloc"
[ "$alloc" -lt $((apparent / 8)) ] || fail "restored sparse image is not sparse ($alloc of $apparent)"
ok "restored sparse image is sparse ($alloc bytes allocated of $apparent)"
alloc_z=$(du -B1 "$OUT/zeros" | cut -f1)
[ "$alloc_z" -le $((9 * MiB)) ] || fail "restored zero range is allocated ($alloc_z bytes)"
ok "restored zero range is a hole ($alloc_z bytes allocated of 16 MiB)"
e2fsck -fn "$OUT/ext4" >"$WORK/fsck" 2>&1 || fail "e2fsck of restored ext4: $(cat "$WORK/fsck")"
ok "restored ext4 image passes e2fsck -fn"

# snapshots --json lists every point with its name and size.
expect_rc 0 "snapshots --json" hv --json snapshots
cp "$WORK/out" "$WORK/snaps.json"
got=$(jget '" ".join(sorted(m["name"] for m in j))' "$WORK/snaps.json")
[ "$got" = "$(echo $NAMES | tr ' ' '\n' | sort | tr '\n' ' ' | sed 's/ $//')" ] ||
  fail "snapshots --json names: '$got'"
for n in $NAMES; do
  lb=$(jget "[m['logical_bytes'] for m in j if m['id'] == '${ID[$n]}']" "$WORK/snaps.json")
  [ "$lb" = "[$(stat -c %s "$IMG/$n")]" ] || fail "snapshots --json: $n logical_bytes $lb"
done
ok "snapshots --json parses and lists all 6 points with names and logical_bytes"
expect_rc 0 "snapshots --name odd" hv --json snapshots --name odd
[ "$(jget '[m["id"] for m in j]' "$WORK/out")" = "[\"${ID[odd]}\"]" ] || fail "snapshots --name odd"
ok "snapshots --name filters"

expect_rc 0 "show odd:latest" hv show odd:latest
contains "$WORK/out" "${ID[odd]}" "show odd:latest names the id"
contains "$WORK/out" "10.0 MiB (10498105 bytes)" "show odd:latest disk size"
expect_rc 0 "show --json" hv --json show "${ID[ext4]:0:8}"
[ "$(jget 'j["name"]' "$WORK/out")" = ext4 ] || fail "show by id prefix: wrong point"
ok "show NAME:latest and show ID-PREFIX"
expect_rc 1 "show nosuch:latest" hv show nosuch:latest
contains "$WORK/err" "no snapshot named 'nosuch'" "show of an unknown name"
ok "show of an unknown name fails with exit 1"

# Restoring onto an existing file is refused and leaves it alone.
echo "precious data" >"$OUT/existing"
cp "$OUT/existing" "$WORK/existing.orig"
expect_rc 1 "restore onto an existing file" hv restore image rand:latest --to "$OUT/existing"
contains "$WORK/err" "already exists" "restore onto an existing file"
same_file "$WORK/existing.orig" "$OUT/existing" "existing file after refused restore"
[ ! -e "$OUT/existing.haven-partial" ] || fail "refused restore left a partial file"
ok "restore onto an existing path: exit 1, 'already exists', file untouched"
expect_rc 0 "restore --overwrite" hv restore image rand:latest --to "$OUT/existing" --overwrite
same_file "$IMG/rand" "$OUT/existing" "restore --overwrite"
ok "restore --overwrite replaces the file"

# Usage and not-found errors.
expect_rc 1 "backup of a missing image" hv backup image "$IMG/no-such-image" --name x
contains "$WORK/err" "no-such-image" "backup of a missing image names it"
expect_rc 2 "backup without --name" hv backup image "$IMG/rand"
contains "$WORK/err" "--name" "backup without --name"
expect_rc 1 "snapshots of a missing repository" "$HAVEN" -r "$WORK/no-repo" snapshots
contains "$WORK/err" "no Haven repository" "missing repository"
expect_rc 1 "init over an existing repository" hv init
contains "$WORK/err" "already exists" "init over an existing repository"
expect_rc 1 "restore into a missing directory" hv restore image rand:latest --to "$WORK/no-dir/x"
[ ! -e "$WORK/no-dir" ] || fail "restore into a missing directory created it"
ok "missing image -> 1, no --name -> 2, no repository -> 1, re-init -> 1, bad target dir -> 1"

# An unchanged image costs (almost) nothing the second time.
expect_rc 0 "second backup of rand" hv --json backup image "$IMG/rand" --name rand
nsb=$(jget 'j["new_stored_bytes"]' "$WORK/out")
[ "$nsb" -lt 65536 ] || fail "second backup of an unchanged image stored $nsb bytes"
[ "$(jget 'j["parent"]' "$WORK/out")" = "${ID[rand]}" ] || fail "second backup: parent is not the first"
RAND2=$(jget 'j["id"]' "$WORK/out")
ok "unchanged image: new_stored_bytes $nsb < 64 KiB, parent set"

# A clone with three changed 64 KiB blocks stores about three chunks.
cp "$IMG/rand" "$IMG/clone"
random_file "$WORK/blocks" $((3 * 65536)) 6
for i in 0 1 2; do
  blk=$((3 + i * 101))
  dd if="$WORK/blocks" of="$IMG/clone" bs=64K skip=$i seek=$blk count=1 conv=notrunc status=none
done
expect_rc 0 "backup of the clone" hv --json backup image "$IMG/clone" --name clone
nc=$(jget 'j["new_chunks"]' "$WORK/out")
[ "$nc" -ge 3 ] && [ "$nc" -le 6 ] || fail "clone with 3 changed blocks: new_chunks $nc, expected 3..6"
ok "clone with 3 changed blocks: new_chunks $nc"
expect_rc 0 "restore clone" hv restore image clone:latest --to "$OUT/clone"
same_file "$IMG/clone" "$OUT/clone" "restore clone"
expect_rc 0 "restore rand again" hv restore image "$RAND2" --to "$OUT/rand2"
same_file "$IMG/rand" "$OUT/rand2" "restore of the second rand point"
ok "clone and deduplicated point restore byte-identical"

# NAME:latest must be the most recent point even when two points of a name
# are made within the same second (a manifest time with 1 s resolution got
# this wrong half the time; fixed by microsecond times).
same_second=0
for t in 1 2 3 4 5 6; do
  random_file "$IMG/v1" 65536
  random_file "$IMG/v2" 65536
  # start just after a second boundary so both backups share that second
  py -c 'import time; time.sleep(1.02 - time.time() % 1)'
  expect_rc 0 "quick backup v1" hv --json backup image "$IMG/v1" --name quick$t
  t1=$(jget 'j["time"]' "$WORK/out")
  expect_rc 0 "quick backup v2" hv --json backup image "$IMG/v2" --name quick$t
  t2=$(jget 'j["time"]' "$WORK/out")
  id2=$(jget 'j["id"]' "$WORK/out")
  [ "${t1:0:19}" = "${t2:0:19}" ] && same_second=$((same_second + 1))
  expect_rc 0 "show quick$t:latest" hv --json show "quick$t:latest"
  latest=$(jget 'j["id"]' "$WORK/out")
  if [ "$latest" != "$id2" ]; then
    hv -q restore image "quick$t:latest" --to "$OUT/quick$t" || true
    cmp -s "$IMG/v1" "$OUT/quick$t" || fail "quick$t:latest is neither point?"
    fail "BUG: 'quick$t:latest' is $latest, not the newer point $id2 (times $t1, $t2); restore quick$t:latest gives the OLDER image"
  fi
done
[ "$same_second" -ge 3 ] || fail "could only make $same_second same-second pairs (machine too slow?)"
ok "NAME:latest is the newest point for 6 back-to-back pairs ($same_second within one second)"

echo "$PASS passed, 0 failed"
