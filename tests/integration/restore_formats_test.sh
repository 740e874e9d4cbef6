#!/usr/bin/env bash
# `haven restore image --format qcow2|vhdx` writes a qcow2 or dynamic VHDX
# (qemu-img create, then the data chunks through qemu-nbd) that qemu reads
# back identical to the original raw image, with the holes left unallocated.
# An existing target is refused without --overwrite and left unchanged; a
# failed restore (missing folder, read-only folder, qemu-img missing, a
# damaged chunk found after writing began) leaves neither the target nor a
# .haven-partial file.
. "$(dirname "$0")/lib.sh"
for t in qemu-img qemu-nbd; do
  command -v $t >/dev/null || fail "$t is missing (scripts/install-deps.sh installs qemu-utils)"
done
R=$WORK/repo
OUT=$WORK/restored
mkdir -p "$OUT"
hv() { "$HAVEN" -r "$R" "$@"; }
MiB=$((1 << 20))
# qinfo IMAGE EXPR: a field of `qemu-img info --output=json`.
qinfo() { qemu-img info --output=json "$1" | jget "$2"; }
no_partial() {  # no *.haven-partial anywhere under DIR
  [ -z "$(find "$1" -name '*.haven-partial')" ] || fail "$2: a .haven-partial file was left: $(find "$1" -name '*.haven-partial')"
}
put() {  # put FILE OFFSET SEED BYTES: random data at OFFSET
  random_file "$WORK/piece" "$4" "$3"
  dd if="$WORK/piece" of="$1" bs=64K oflag=seek_bytes seek="$2" conv=notrunc status=none
}

# A 256 MiB sparse image: data at the start, in the middle at an offset
# that is not chunk-aligned, 2 MiB of explicitly written zeros, and the very
# last 64 KiB; everything else is holes.
SRC=$WORK/disk.raw
truncate -s 256M "$SRC"
put "$SRC" 0 1 $((3 * MiB))
put "$SRC" $((37 * MiB + 4096)) 2 $MiB
dd if=/dev/zero of="$SRC" bs=1M seek=64 count=2 conv=notrunc status=none
put "$SRC" $((150 * MiB + 12345)) 3 $((700 << 10))
put "$SRC" $((256 * MiB - 65536)) 4 65536
# And an image whose size is not a multiple of 512 bytes.
ODD=$WORK/odd.raw
random_file "$ODD" $((8 * MiB + 1000)) 5

expect_rc 0 "init" hv init --chunk-size 64K
expect_rc 0 "backup image" hv --json backup image "$SRC" --name disk
data=$(jget 'j["logical_bytes"] - j["hole_bytes"]' "$WORK/out")
expect_rc 0 "backup odd image" hv backup image "$ODD" --name odd
ok "backed up a 256 MiB sparse image ($data bytes of data) and an odd-sized one"

for fmt in qcow2 vhdx; do
  img=$OUT/disk.$fmt
  expect_rc 0 "restore --format $fmt" hv --json restore image disk:latest --to "$img" --format $fmt
  [ "$(jget 'j["size"]' "$WORK/out")" = $((256 * MiB)) ] || fail "$fmt: size in JSON: $(cat "$WORK/out")"
  [ "$(qinfo "$img" 'j["format"]')" = $fmt ] || fail "$fmt: qemu-img info says $(qinfo "$img" 'j["format"]')"
  [ "$(qinfo "$img" 'j["virtual-size"]')" = $((256 * MiB)) ] ||
    fail "$fmt: virtual size $(qinfo "$img" 'j["virtual-size"]')"
  run qemu-img compare -f $fmt -F raw "$img" "$SRC"
  [ "$RC" = 0 ] || fail "$fmt: qemu-img compare: $(cat "$WORK/out" "$WORK/err")"
  contains "$WORK/out" "Images are identical" "$fmt compare"
  alloc=$(qinfo "$img" 'j["actual-size"]')
  [ "$alloc" -lt $((24 * MiB)) ] ||
    fail "$fmt: $alloc bytes allocated for ~5 MiB of data in 256 MiB: holes were written"
  no_partial "$OUT" "$fmt restore"
  ok "$fmt: qemu-img info says $fmt, compare identical to the source, $((alloc >> 10)) KiB allocated of 256 MiB"
done
run qemu-img check "$OUT/disk.qcow2"
[ "$RC" = 0 ] || fail "qemu-img check of the qcow2: $(cat "$WORK/out" "$WORK/err")"
contains "$WORK/out" "No errors were found" "qemu-img check"
ok "qemu-img check: the qcow2 is clean"

expect_rc 0 "restore --format raw" hv restore image disk:latest --to "$OUT/disk.raw" --format raw
same_file "$OUT/disk.raw" "$SRC" "raw restore"
ok "--format raw still writes the same sparse raw file"

# qemu rounds the virtual size up to 512 bytes; the extra bytes are zeros.
for fmt in qcow2 vhdx; do
  expect_rc 0 "restore odd --format $fmt" hv restore image odd:latest --to "$OUT/odd.$fmt" --format $fmt
  [ "$(qinfo "$OUT/odd.$fmt" 'j["virtual-size"]')" = $((8 * MiB + 1024)) ] ||
    fail "odd $fmt: virtual size $(qinfo "$OUT/odd.$fmt" 'j["virtual-size"]')"
  qemu-img convert -f $fmt -O raw "$OUT/odd.$fmt" "$WORK/odd.back"
  cmp -s -n $((8 * MiB + 1000)) "$WORK/odd.back" "$ODD" || fail "odd $fmt: data differs"
  [ "$(tail -c 24 "$WORK/odd.back" | od -An -tx1 | tr -d ' \n' | tr -d 0)" = "" ] ||
    fail "odd $fmt: the padding is not zeros"
done
ok "odd size (8 MiB + 1000): qcow2 and VHDX hold the data, padded with zeros to 8 MiB + 1024"

# ------------------------------------------------------------ existing target
for fmt in qcow2 vhdx; do
  echo "precious data" >"$OUT/existing.$fmt"
  sum=$(sha256sum <"$OUT/existing.$fmt")
  expect_rc 1 "$fmt onto an existing file" hv restore image disk:latest --to "$OUT/existing.$fmt" --format $fmt
  contains "$WORK/err" "already exists" "$fmt onto an existing file"
  contains "$WORK/err" "--overwrite" "$fmt onto an existing file"
  [ "$(sha256sum <"$OUT/existing.$fmt")" = "$sum" ] || fail "$fmt: the existing file was changed"
  no_partial "$OUT" "$fmt onto an existing file"
done
ok "an existing target is refused without --overwrite (exit 1) and left unchanged"
expect_rc 0 "vhdx --overwrite" hv restore image disk:latest --to "$OUT/existing.vhdx" --format vhdx --overwrite
[ "$(qinfo "$OUT/existing.vhdx" 'j["format"]')" = vhdx ] || fail "--overwrite did not write a vhdx"
run qemu-img compare -f vhdx -F raw "$OUT/existing.vhdx" "$SRC"
[ "$RC" = 0 ] || fail "vhdx --overwrite: compare: $(cat "$WORK/out")"
ok "--overwrite replaces it with the restored image"

# A block device takes only raw (the check comes before the device is
# opened, so an unbacked loop minor is enough).
if mknod "$WORK/blk" b 7 250 2>/dev/null; then
  expect_rc 2 "qcow2 onto a block device" hv restore image disk:latest --to "$WORK/blk" --format qcow2 --overwrite
  contains "$WORK/err" "is a block device" "qcow2 onto a block device"
  contains "$WORK/err" "can only be written to a file" "qcow2 onto a block device"
  ok "qcow2 onto a block device is refused as a usage error (exit 2), with a clear message"
fi

# ------------------------------------------------------------ failed restores
expect_rc 1 "restore into a missing folder" hv restore image disk:latest --to "$WORK/nope/disk.qcow2" --format qcow2
contains "$WORK/err" "$WORK/nope" "missing folder"
contains "$WORK/err" "does not exist" "missing folder"
[ ! -e "$WORK/nope" ] || fail "missing folder was created"
ok "a missing folder: exit 1, the folder named"

RO=$WORK/readonly
mkdir -p "$RO"
if [ "$(id -u)" != 0 ]; then
  chmod 0555 "$RO"
  ro_done() { chmod 0755 "$RO"; }
elif chattr +i "$RO" 2>/dev/null; then  # root ignores modes, not this
  ro_done() { chattr -i "$RO"; }
  trap 'chattr -i "$RO" 2>/dev/null; rm -rf "$WORK"' EXIT
else
  ro_done() { :; }
  RO=
fi
if [ -n "$RO" ]; then
  for fmt in qcow2 vhdx; do
    expect_rc 1 "restore into a read-only folder ($fmt)" hv restore image disk:latest --to "$RO/disk.$fmt" --format $fmt
    contains "$WORK/err" "$RO/disk.$fmt.haven-partial" "read-only folder"
    [ -z "$(ls -A "$RO")" ] || fail "read-only folder: left $(ls -A "$RO")"
  done
  ro_done
  ok "a folder without write permission: exit 1, nothing left in it"
fi

# qemu-img is not on PATH: its failure is reported, the partial removed.
expect_rc 1 "restore without qemu-img" env PATH=/nonexistent "$HAVEN" -r "$R" restore image disk:latest --to "$OUT/noqemu.qcow2" --format qcow2
contains "$WORK/err" "qemu-img" "without qemu-img"
contains "$WORK/err" "$OUT/noqemu.qcow2.haven-partial" "without qemu-img"
[ ! -e "$OUT/noqemu.qcow2" ] || fail "without qemu-img: target exists"
no_partial "$OUT" "without qemu-img"
ok "qemu-img missing: exit 1, says so and names the file; nothing left"

# A damaged chunk is found while qemu-nbd is already writing: the restore
# fails naming the damage, and the half-written image is removed.
# A repository of its own, whose only data pack holds just this image.
R=$WORK/repo2
expect_rc 0 "init repo2" hv init --chunk-size 64K
expect_rc 0 "backup into repo2" hv backup image "$SRC" --name disk
PACK=$(largest_pack "$R")
py - "$PACK" <<'EOF'
import os, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(os.path.getsize(sys.argv[1]) // 2); b = f.read(1)
    f.seek(os.path.getsize(sys.argv[1]) // 2); f.write(bytes([b[0] ^ 0xFF]))
EOF
for fmt in qcow2 vhdx; do
  expect_rc 1 "restore $fmt with a damaged chunk" hv restore image disk:latest --to "$OUT/damaged.$fmt" --format $fmt
  contains "$WORK/err" "could not be read" "$fmt with a damaged chunk"
  contains "$WORK/err" "image offsets" "$fmt with a damaged chunk"
  [ ! -e "$OUT/damaged.$fmt" ] || fail "$fmt with a damaged chunk: target exists"
  no_partial "$OUT" "$fmt with a damaged chunk"
done
[ -z "$(pgrep -f "qemu-nbd.*$WORK" || true)" ] || fail "a qemu-nbd is still running"
ok "a damaged chunk: exit 1, damage named, no target and no partial file, qemu-nbd gone"

echo "$PASS passed"
