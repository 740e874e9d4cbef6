#!/usr/bin/env bash
# GET /api/v1/points/{repo}/{id}/volumes over real HTTPS on loopback, on
# real disk images backed up with `haven backup image` (no VM needed):
#  - a GPT disk with three partitions: an ext4 holding a copy of /etc, a
#    FAT with a few files (label HAVENDATA), and one of zeros. The answer
#    numbers them 1, 2, 3 in disk order with their start, size, type and
#    file system; the empty one has fs null and says why; no default
#    (two readable file systems), so the files routes need partition=
#  - /etc of partition 1 listed through ?partition=1 as `ls -A` of the
#    source; the FAT's files through ?partition=2
#  - a disk without a partition table: one volume, number 0, the default
#  - a file point: kind files, no disks
#  - 404 for an unknown repository or point, 400 for an unknown disk or
#    parameter
# All as an auditor's token (the least role that reads).
. "$(dirname "$0")/lib.sh" curl sfdisk mke2fs mkfs.vfat mcopy
HAVEND=${HAVEND:?HAVEND must point at the havend binary}
. "$(dirname "$0")/havend_lib.sh"

havend_trap
R=$WORK/repo
hv() { "$HAVEN" -r "$R" "$@"; }
MiB=$((1024 * 1024))

# ------------------------------------------------------------ the images
SRC=$WORK/root
mkdir -p "$SRC"
cp -a /etc "$SRC/etc"
truncate -s 40M "$WORK/p1.ext4"
mke2fs -q -F -t ext4 -L havenroot -d "$SRC" "$WORK/p1.ext4"
truncate -s 24M "$WORK/p2.fat"
mkfs.vfat -n HAVENDATA "$WORK/p2.fat" >/dev/null
mkdir -p "$WORK/fat/docs"
echo "volume test" >"$WORK/fat/readme.txt"
head -c 100000 /dev/urandom >"$WORK/fat/docs/blob.bin"
MTOOLS_SKIP_CHECK=1 mcopy -s -i "$WORK/p2.fat" "$WORK/fat/readme.txt" "$WORK/fat/docs" ::/
# GPT: p1 at 1 MiB (40 MiB), p2 at 41 MiB (24 MiB), p3 at 65 MiB (8 MiB,
# zeros), room for the backup table at the end.
truncate -s 80M "$WORK/disk.img"
sfdisk -q "$WORK/disk.img" <<EOF
label: gpt
start=2048, size=81920, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root
start=83968, size=49152, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name=data
start=133120, size=16384, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, name=swap
EOF
dd if="$WORK/p1.ext4" of="$WORK/disk.img" bs=1M seek=1 conv=notrunc status=none
dd if="$WORK/p2.fat" of="$WORK/disk.img" bs=1M seek=41 conv=notrunc status=none

expect_rc 0 "init" hv init
expect_rc 0 "backup image disk.img" hv --json backup image "$WORK/disk.img" --name voldisk-$$
P=$(jget 'j.get("snapshot") or j["id"]' "$WORK/out")
expect_rc 0 "backup image p1.ext4" hv --json backup image "$WORK/p1.ext4" --name volwhole-$$
PW=$(jget 'j.get("snapshot") or j["id"]' "$WORK/out")
expect_rc 0 "backup files" hv --json backup files "$WORK/fat" --name volfiles-$$
PF=$(jget 'j.get("snapshot") or j["id"]' "$WORK/out")
[ ${#P} = 32 ] && [ ${#PW} = 32 ] && [ ${#PF} = 32 ] || fail "point ids '$P' '$PW' '$PF'"
ok "a GPT disk (ext4, FAT, empty), a bare ext4 and a file tree backed up ($P, $PW, $PF)"

# ---------------------------------------------------------------- havend
havend_repo_password
STATE=$WORK/state
havend_token auditor vol-auditor
havend_start d --repository "main=$R" --password-file "$WORK/pw"
URL=$URL/api/v1
get() {
  CODE=$(curl -sS --max-time 60 --cacert "$STATE/cert.pem" -H "@$WORK/token.auditor" \
    -o "$WORK/body" -w '%{http_code}' "$URL$1")
  [ "$CODE" = "${2:-200}" ] || fail "GET $1: HTTP $CODE: $(head -c 2000 "$WORK/body")"
}

# ------------------------------------------------------ the GPT disk
get "/points/main/$P/volumes"
DISK=$(jget 'j["disks"][0]["name"]' "$WORK/body")
[ "$(jget '(j["kind"], j["default_disk"], len(j["disks"]), j["disks"][0]["size"], j["disks"][0]["scheme"], j["disks"][0]["default"], j["disks"][0]["error"])' "$WORK/body")" = \
  "('image', '$DISK', 1, $((80 * MiB)), 'gpt', True, None)" ] || fail "volumes: $(cat "$WORK/body")"
# vj N EXPR: over volume number N of the disk
vj() { jget "(lambda v: ($2))(next(v for v in j['disks'][0]['volumes'] if v['number'] == $1))" "$WORK/body"; }
[ "$(jget '[v["number"] for v in j["disks"][0]["volumes"]]' "$WORK/body")" = "[1, 2, 3]" ] ||
  fail "volume numbers: $(cat "$WORK/body")"
[ "$(vj 1 'v["start"], v["size"], v["fs"], v["label"], v["note"], v["default"]')" = \
  "($MiB, $((40 * MiB)), 'ext4', 'havenroot', None, False)" ] || fail "volume 1: $(cat "$WORK/body")"
[ "$(vj 2 'v["start"], v["size"], v["fs"].startswith("fat"), v["label"].strip(), v["note"], v["default"]')" = \
  "($((41 * MiB)), $((24 * MiB)), True, 'HAVENDATA', None, False)" ] || fail "volume 2: $(cat "$WORK/body")"
[ "$(vj 3 'v["start"], v["size"], v["fs"], v["label"], v["note"] != "", v["default"]')" = \
  "($((65 * MiB)), $((8 * MiB)), None, None, True, False)" ] || fail "volume 3: $(cat "$WORK/body")"
[ "$(jget 'j["disks"][0]["default_partition"], "choose one" in j["disks"][0]["default_note"]' "$WORK/body")" = \
  "(None, True)" ] || fail "default: $(cat "$WORK/body")"
for n in 1 2 3; do
  [ -n "$(vj $n 'v["description"]')" ] || fail "volume $n has no description: $(cat "$WORK/body")"
done
ok "volumes of the GPT disk: 1 ext4 'havenroot', 2 $(vj 2 'v["fs"]') 'HAVENDATA', 3 no file system ($(vj 3 'v["note"]')); no default with two readable"

# The files routes take the numbers as given; without one they refuse.
get "/points/main/$P/files?path=/etc" 400
contains "$WORK/body" "several file systems" "files without partition="
get "/points/main/$P/files?partition=1&path=/etc&limit=10000"
[ "$(jget 'j["partition"], j["fs"]' "$WORK/body")" = "(1, 'ext4')" ] || fail "files p1: $(head -c 500 "$WORK/body")"
jget '"\n".join(e["name"] for e in j["entries"])' "$WORK/body" | LC_ALL=C sort >"$WORK/listed"
(cd "$SRC/etc" && LC_ALL=C ls -A | LC_ALL=C sort) >"$WORK/want"
same_file "$WORK/listed" "$WORK/want" "names of /etc in partition 1"
get "/points/main/$P/files?partition=2&path=/"
[ "$(jget 'sorted(e["name"].lower() for e in j["entries"])' "$WORK/body")" = '["docs", "readme.txt"]' ] ||
  fail "files p2: $(head -c 1000 "$WORK/body")"
get "/points/main/$P/download?partition=2&path=/docs/blob.bin"
same_file "$WORK/body" "$WORK/fat/docs/blob.bin" "blob.bin from the FAT partition"
get "/points/main/$P/files?partition=3&path=/" 409
ok "files: /etc of partition 1 as ls -A of the source; the FAT's files and a download from partition 2; partition 3 refused"

# -------------------------------------------- a disk without partitions
get "/points/main/$PW/volumes"
[ "$(jget '(lambda d: (j["default_disk"] == d["name"], d["scheme"], d["default_partition"], [(v["number"], v["start"], v["size"], v["fs"], v["label"], v["default"]) for v in d["volumes"]]))(j["disks"][0])' "$WORK/body")" = \
  "(True, 'none', 0, [(0, 0, $((40 * MiB)), 'ext4', 'havenroot', True)])" ] || fail "whole disk: $(cat "$WORK/body")"
ok "a disk without partition table: one volume, number 0, ext4, the default"

# ------------------------------------------------------ a file point
get "/points/main/$PF/volumes"
[ "$(jget 'j["kind"], j["disks"], j["default_disk"]' "$WORK/body")" = "('files', [], None)" ] ||
  fail "file point: $(cat "$WORK/body")"
ok "a file point: kind files, no disks"

# ------------------------------------------------------------- errors
get "/points/nowhere/$P/volumes" 404
get "/points/main/00000000000000000000000000000000/volumes" 404
get "/points/main/$P/volumes?disk=nope" 400
contains "$WORK/body" "has no disk" "unknown disk"
get "/points/main/$P/volumes?partition=1" 400
contains "$WORK/body" "unknown query parameter" "unknown parameter"
get "/points/main/$P/volumes?disk=$DISK"
[ "$(jget 'len(j["disks"]), len(j["disks"][0]["volumes"])' "$WORK/body")" = "(1, 3)" ] ||
  fail "disk=$DISK: $(cat "$WORK/body")"
get "/points/main/$PF/volumes?disk=x" 400
CODE=$(curl -sS --max-time 30 --cacert "$STATE/cert.pem" -o "$WORK/body" -w '%{http_code}' "$URL/points/main/$P/volumes")
[ "$CODE" = 401 ] || fail "volumes without credentials: HTTP $CODE"
ok "errors in words: 404 unknown repository/point, 400 unknown disk/parameter, disk of a file point; 401 without a token"

havend_stop d
echo "PASS: $PASS checks"
