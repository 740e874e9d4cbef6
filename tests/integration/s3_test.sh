#!/usr/bin/env bash
# The S3 backend end to end, against a real Ceph radosgw (tests/ceph), on
# real data: an ext4 file system made with mkfs holding /etc and part of
# /usr, backed up as an image and /etc as files.
#  1. init on haven-plain/PREFIX; image and file backups; the image restores
#     byte for byte; files restore from the file point and from the image;
#  2. an incremental uploads far less than the image; it restores;
#  3. a file restore from an image point with the cache deleted rebuilds the
#     index and fetches far less than the image (bytes counted by a proxy);
#  4. kill -9 during an upload, rerun: the point completes, check
#     --read-data is clean, the earlier points still restore;
#  5. through fault_proxy.py (503, SlowDown, dropped connections) a backup
#     and a restore succeed byte for byte; faults were injected;
#  6. forget --keep-last 1 + gc frees space in the bucket; check is clean;
#     the remaining point restores;
#  7. copy from a local repository into an S3 one (init --copy-params-from);
#     the copy restores;
#  8. a bad bucket name, no credentials, a wrong secret: clear errors,
#     exit non-zero, the repository unchanged.
. "$(dirname "$0")/lib.sh"
for t in mkfs.ext4 mount umount losetup curl; do
  command -v "$t" >/dev/null || { echo "SKIP: $t missing"; exit 77; }
done
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root for loop mounts"; exit 77; }
SRCDIR=${HAVEN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}

MNT=$WORK/mnt
OWN_CEPH=
PIDS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  mountpoint -q "$MNT" && umount "$MNT"
  [ -n "$OWN_CEPH" ] && "$SRCDIR/tests/ceph/ceph-cluster.sh" stop "$OWN_CEPH" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

. "$(dirname "$0")/s3_lib.sh"
RGW_PORT=${EP##*:}
R="s3:$EP/$HAVEN_S3_PLAIN_BUCKET/$RUN/main"
# A byte-counting TCP relay (no faults): the bytes radosgw sent are in FILE.
cat >"$WORK/count_proxy.py" <<'PYEOF'
import socket, sys, threading
listen, up, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
lock = threading.Lock(); total = [0, 0]
def save():
    with open(path + ".tmp", "w") as f: f.write("%d %d\n" % (total[0], total[1]))
    __import__("os").replace(path + ".tmp", path)
def pipe(a, b, i):
    try:
        while True:
            d = a.recv(1 << 16)
            if not d: break
            b.sendall(d)
            with lock: total[i] += len(d)
    except OSError: pass
    finally:
        for s in (a, b):
            try: s.shutdown(socket.SHUT_RDWR)
            except OSError: pass
        with lock: save()
def conn(c):
    u = socket.create_connection(("127.0.0.1", up))
    threading.Thread(target=pipe, args=(c, u, 0), daemon=True).start()
    pipe(u, c, 1)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", listen)); s.listen(64); save()
while True:
    c, _ = s.accept()
    threading.Thread(target=conn, args=(c,), daemon=True).start()
PYEOF

# ---------------------------------------------------------------- data
truncate -s 1G "$WORK/fs.img"
mkdir -p "$WORK/tree"
cp -a /etc "$WORK/tree/etc"
real_files "$WORK/tree/usr" $((300 << 20)) >/dev/null
mkfs.ext4 -q -F -N 200000 -d "$WORK/tree" "$WORK/fs.img" || fail "mkfs.ext4 -d"
rm -rf "$WORK/tree/usr"
IMG_SIZE=$(stat -c %s "$WORK/fs.img")
mkdir -p "$MNT"
ok "an ext4 file system made with mkfs holds /etc and 300 MB of /usr ($RUN)"

# ---------------------------------------------------------------- 1. basics
expect_rc 0 "init on $R" haven -r "$R" init
contains "$WORK/out" "created repository" "init says it created the repository"
expect_rc 0 "image backup to S3" haven -r "$R" --json backup image "$WORK/fs.img" --name fs
cp "$WORK/out" "$WORK/full.json"
full_stored=$(jget 'j["new_stored_bytes"]' "$WORK/full.json")
[ "$full_stored" -gt $((60 << 20)) ] || fail "the full backup stored only $full_stored bytes"
in_bucket=$(bucket_bytes "$HAVEN_S3_PLAIN_BUCKET" "$RUN/main/packs/")
[ "$in_bucket" -ge "$full_stored" ] || fail "the bucket's packs hold $in_bucket bytes, the backup said $full_stored"
expect_rc 0 "file backup of /etc to S3" haven -r "$R" -q backup files "$WORK/tree/etc" --name tree
expect_rc 0 "snapshots" haven -r "$R" --json snapshots
[ "$(jget 'len(j)' "$WORK/out")" = 2 ] || fail "two points expected: $(cat "$WORK/out")"
expect_rc 0 "image restore from S3" haven -r "$R" restore image fs:latest --to "$WORK/fs.back"
same_file "$WORK/fs.img" "$WORK/fs.back" "the image restored from S3"
rm -f "$WORK/fs.back"
expect_rc 0 "files restore from the file point" haven -r "$R" restore files tree:latest \
  "$WORK/tree/etc/passwd" "$WORK/tree/etc/hostname" "$WORK/tree/etc/ssl" --to "$WORK/files.back"
same_file "$WORK/tree/etc/passwd" "$WORK/files.back$WORK/tree/etc/passwd" "passwd from the file point"
same_file "$WORK/tree/etc/hostname" "$WORK/files.back$WORK/tree/etc/hostname" "hostname from the file point"
diff -r --no-dereference "$WORK/tree/etc/ssl" "$WORK/files.back$WORK/tree/etc/ssl" >/dev/null ||
  fail "/etc/ssl restored from the file point differs"
expect_rc 0 "file restore from the image point" haven -r "$R" restore file fs:latest \
  /etc/passwd /etc/group /etc/ssl --to "$WORK/img-files.back"
same_file /etc/passwd "$WORK/img-files.back/passwd" "/etc/passwd from the image point"
same_file /etc/group "$WORK/img-files.back/group" "/etc/group from the image point"
diff -r --no-dereference "$WORK/tree/etc/ssl" "$WORK/img-files.back/ssl" >/dev/null ||
  fail "/etc/ssl restored from the image point differs"
expect_rc 0 "ls of the image point" haven -r "$R" ls fs:latest /etc
contains "$WORK/out" "passwd" "ls of the image point's /etc"
ok "init, image ($((full_stored >> 20)) MB stored) and file backups on S3; the image restores byte for byte, files from both points"

# ---------------------------------------------------------------- 2. incremental
cp "$WORK/fs.img" "$WORK/fs-1.img"
mount -o loop "$WORK/fs.img" "$MNT" || fail "loop mount"
random_file "$MNT/new-data.bin" $((8 << 20)) 7
cp -a /etc/ssl "$MNT/etc/ssl-copy"
echo "changed on night 2" >>"$MNT/etc/hostname"
umount "$MNT"
expect_rc 0 "incremental image backup" haven -r "$R" --json backup image "$WORK/fs.img" --name fs
cp "$WORK/out" "$WORK/incr.json"
incr=$(jget 'j["new_stored_bytes"]' "$WORK/incr.json")
before_incr=$in_bucket
in_bucket=$(bucket_bytes "$HAVEN_S3_PLAIN_BUCKET" "$RUN/main/packs/")
grown=$((in_bucket - before_incr))
[ $((incr * 10)) -lt "$full_stored" ] || fail "the incremental stored $incr bytes; the full $full_stored"
[ $((grown * 10)) -lt "$IMG_SIZE" ] || fail "the bucket grew by $grown bytes for the incremental (image $IMG_SIZE)"
expect_rc 0 "restore of the incremental" haven -r "$R" restore image fs:latest --to "$WORK/fs.back"
same_file "$WORK/fs.img" "$WORK/fs.back" "the incremental point restored"
rm -f "$WORK/fs.back"
ok "an incremental stored $((incr >> 10)) KiB (bucket +$((grown >> 10)) KiB, image $((IMG_SIZE >> 20)) MB) and restores byte for byte"

# ---------------------------------------------------------------- 3. cold cache
CP_PORT=$(free_port)
"$PYTHON" "$WORK/count_proxy.py" "$CP_PORT" "$RGW_PORT" "$WORK/count" &
PIDS+=($!)
wait_port "$CP_PORT"
RC3="s3:http://127.0.0.1:$CP_PORT/$HAVEN_S3_PLAIN_BUCKET/$RUN/main"
cold=$WORK/cache-cold
expect_rc 0 "file restore with a cold cache" env HAVEN_CACHE_DIR="$cold" \
  "$HAVEN" -r "$RC3" restore file fs:latest /etc/hostname --to "$WORK/cold.back"
contains "$WORK/err" "index is missing; rebuilding it from the packs" "the index is rebuilt from the bucket"
mount -o loop,ro "$WORK/fs.img" "$MNT"
same_file "$MNT/etc/hostname" "$WORK/cold.back/hostname" "the file restored with a cold cache"
umount "$MNT"
sleep 0.5
read -r up_bytes down_bytes <"$WORK/count"
[ "$down_bytes" -gt 0 ] || fail "the counting proxy saw nothing"
[ $((down_bytes * 10)) -lt "$full_stored" ] ||
  fail "a cold-cache restore of one file fetched $down_bytes bytes; the image's packs hold $full_stored"
ok "a cold-cache file restore from the image point rebuilt the index and fetched $((down_bytes >> 10)) KiB of $((full_stored >> 20)) MB"
# The same with the cache of the main "machine" deleted: nothing is lost.
rm -rf "$HAVEN_CACHE_DIR"
expect_rc 0 "snapshots after deleting the cache" haven -r "$R" --json snapshots
[ "$(jget 'len(j)' "$WORK/out")" = 3 ] || fail "points lost with the cache: $(cat "$WORK/out")"
ok "deleting the cache directory loses no point"

# ---------------------------------------------------------------- 4. kill -9
random_file "$WORK/big.img" $((320 << 20)) 11
"$HAVEN" -r "$R" -q backup image "$WORK/big.img" --name big --limit-read 40 &
KILLME=$!
PIDS+=($KILLME)
sleep 4
kill -0 "$KILLME" 2>/dev/null || fail "the big backup ended before it could be killed"
kill -9 "$KILLME"
wait "$KILLME" 2>/dev/null || true
expect_rc 0 "snapshots after kill -9" haven -r "$R" --json snapshots
[ "$(jget 'len([p for p in j if p["name"] == "big"])' "$WORK/out")" = 0 ] ||
  fail "a killed backup left a point: $(cat "$WORK/out")"
expect_rc 0 "backup rerun after kill -9" haven -r "$R" --json backup image "$WORK/big.img" --name big
expect_rc 0 "check --read-data after kill -9" haven -r "$R" check --read-data
expect_rc 0 "restore of the big point" haven -r "$R" restore image big:latest --to "$WORK/big.back"
same_file "$WORK/big.img" "$WORK/big.back" "the big image after kill -9 and rerun"
rm -f "$WORK/big.back"
expect_rc 0 "snapshots" haven -r "$R" --json snapshots
first_fs=$(jget '[p["id"] for p in sorted(j, key=lambda p: p["time"]) if p["name"] == "fs"][0]' "$WORK/out")
expect_rc 0 "restore of the first point after kill -9" haven -r "$R" restore image "$first_fs" --to "$WORK/fs.back"
same_file "$WORK/fs-1.img" "$WORK/fs.back" "the first point after kill -9"
rm -f "$WORK/fs.back"
ok "a backup killed -9 mid-upload completes on rerun; check --read-data is clean; the earlier points restore"

# ---------------------------------------------------------------- 5. faults
FP_PORT=$(free_port)
"$PYTHON" "$SRCDIR/tests/ceph/fault_proxy.py" "$FP_PORT" "$RGW_PORT" --every-503 7 --every-drop 11 \
  --every-slowdown 13 --stats "$WORK/faults.json" &
PIDS+=($!)
wait_port "$FP_PORT"
RF="s3:http://127.0.0.1:$FP_PORT/$HAVEN_S3_PLAIN_BUCKET/$RUN/main"
random_file "$WORK/faulty.img" $((48 << 20)) 13
# Bounded: a request that never gets its answer must fail the test, not hang it
# (exit 124 = timed out).
expect_rc 0 "backup through the fault proxy" timeout -k 10 150 env HAVEN_CACHE_DIR="$WORK/cache-f" \
  "$HAVEN" -r "$RF" backup image "$WORK/faulty.img" --name faulty
expect_rc 0 "restore through the fault proxy" timeout -k 10 150 env HAVEN_CACHE_DIR="$WORK/cache-f2" \
  "$HAVEN" -r "$RF" restore image faulty:latest --to "$WORK/faulty.back"
same_file "$WORK/faulty.img" "$WORK/faulty.back" "the image through the fault proxy"
rm -f "$WORK/faulty.back"
for k in injected_503 injected_slowdown dropped; do
  [ "$(jget "j['$k']" "$WORK/faults.json")" -gt 0 ] || fail "no $k fault was injected: $(cat "$WORK/faults.json")"
done
expect_rc 0 "check after the faults" haven -r "$R" check
ok "a backup and a restore through 503s, SlowDowns and dropped connections are byte-identical ($(cat "$WORK/faults.json"))"

# ---------------------------------------------------------------- 6. forget + gc
before=$(bucket_bytes "$HAVEN_S3_PLAIN_BUCKET" "$RUN/main/packs/")
expect_rc 0 "forget --keep-last 1" haven -r "$R" --json forget --keep-last 1
[ "$(jget 'j["removed"]' "$WORK/out")" = 1 ] || fail "forget removed: $(cat "$WORK/out")"
expect_rc 0 "forget of the big point" haven -r "$R" forget big:latest
expect_rc 0 "gc" haven -r "$R" --json gc
cp "$WORK/out" "$WORK/gc.json"
[ "$(jget 'j["packs_deleted"]' "$WORK/gc.json")" -gt 0 ] || fail "gc deleted no pack: $(cat "$WORK/gc.json")"
[ "$(jget 'j["bytes_freed"]' "$WORK/gc.json")" -gt $((300 << 20)) ] || fail "gc freed too little: $(cat "$WORK/gc.json")"
after=$(bucket_bytes "$HAVEN_S3_PLAIN_BUCKET" "$RUN/main/packs/")
[ $((before - after)) -gt $((300 << 20)) ] || fail "the bucket's packs went from $before to $after bytes"
expect_rc 0 "check --read-data after gc" haven -r "$R" check --read-data
expect_rc 0 "restore after gc" haven -r "$R" restore image fs:latest --to "$WORK/fs.back"
same_file "$WORK/fs.img" "$WORK/fs.back" "the remaining point after gc"
rm -f "$WORK/fs.back"
ok "forget + gc freed $(((before - after) >> 20)) MB in the bucket; check is clean; the remaining point restores"

# ---------------------------------------------------------------- 7. copy
LOCAL=$WORK/local
haven -q -r "$LOCAL" init
expect_rc 0 "local file backup" haven -r "$LOCAL" -q backup files "$WORK/tree/etc" --name etc
expect_rc 0 "local image backup" haven -r "$LOCAL" -q backup image "$WORK/fs-1.img" --name fs
RC7="s3:$EP/$HAVEN_S3_PLAIN_BUCKET/$RUN/copy"
expect_rc 0 "init --copy-params-from on S3" env HAVEN_PASSWORD=s3-copy-pass HAVEN_FROM_PASSWORD="$HAVEN_PASSWORD" \
  "$HAVEN" -r "$RC7" init --copy-params-from "$LOCAL"
expect_rc 0 "copy local -> S3" env HAVEN_FROM_PASSWORD="$HAVEN_PASSWORD" HAVEN_TO_PASSWORD=s3-copy-pass \
  "$HAVEN" --json copy --from "$LOCAL" --to "$RC7"
[ "$(jget 'j["points_copied"]' "$WORK/out")" = 2 ] || fail "copy: $(cat "$WORK/out")"
as_copy() { env HAVEN_PASSWORD=s3-copy-pass HAVEN_CACHE_DIR="$WORK/cache-c" "$HAVEN" "$@"; }
expect_rc 0 "check the S3 copy" as_copy -r "$RC7" check --read-data
expect_rc 0 "restore image from the S3 copy" as_copy -r "$RC7" restore image fs:latest --to "$WORK/fs.back"
same_file "$WORK/fs-1.img" "$WORK/fs.back" "the image restored from the S3 copy"
rm -f "$WORK/fs.back"
expect_rc 0 "restore files from the S3 copy" as_copy -r "$RC7" restore files etc:latest --to "$WORK/copy.back"
diff -r --no-dereference "$WORK/tree/etc" "$WORK/copy.back$WORK/tree/etc" >/dev/null ||
  fail "the files restored from the S3 copy differ"
ok "copy from a local repository to S3; the copy checks clean and restores byte for byte"

# ---------------------------------------------------------------- 8. bad input
expect_fail() {  # WHAT CMD...: runs CMD and fails unless it exits non-zero (and not by a signal)
  local what=$1
  shift
  run "$@"
  [ "$RC" != 0 ] && [ "$RC" -lt 128 ] || fail "$what: exit code $RC; stderr: $(head -c 3000 "$WORK/err")"
}
expect_rc 0 "snapshots" haven -r "$R" --json snapshots
cp "$WORK/out" "$WORK/snaps-before.json"
digest=$(bucket_digest "$HAVEN_S3_PLAIN_BUCKET" "$RUN/main/")
echo "tiny" >"$WORK/tiny.txt"

expect_fail "a bad bucket name" haven -r "s3:$EP/Bad_Bucket!!/$RUN" snapshots
grep -qi "bucket" "$WORK/err" || fail "the bad bucket name error does not say 'bucket': $(cat "$WORK/err")"
cp "$WORK/err" "$WORK/err-badbucket"
expect_fail "init in a bucket that does not exist" haven -r "s3:$EP/no-such-bucket-$$/$RUN" init
grep -qiE "bucket.*(not exist|no such|not found)|NoSuchBucket" "$WORK/err" ||
  fail "the missing bucket error: $(cat "$WORK/err")"
cp "$WORK/err" "$WORK/err-nobucket"

expect_fail "no credentials" env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY \
  "$HAVEN" -r "$R" backup files "$WORK/tiny.txt" --name bad
grep -q "AWS_ACCESS_KEY_ID" "$WORK/err" || grep -qi "credential" "$WORK/err" ||
  fail "the missing credentials error does not name them: $(cat "$WORK/err")"
cp "$WORK/err" "$WORK/err-nocred"

expect_fail "wrong secret" env AWS_SECRET_ACCESS_KEY=wrong-"$AWS_SECRET_ACCESS_KEY" \
  "$HAVEN" -r "$R" backup files "$WORK/tiny.txt" --name bad
grep -qiE "signature|access denied|AccessDenied|secret|credential" "$WORK/err" ||
  fail "the wrong secret error: $(cat "$WORK/err")"
cp "$WORK/err" "$WORK/err-wrongsecret"

expect_rc 0 "snapshots after the bad input" haven -r "$R" --json snapshots
cmp -s "$WORK/out" "$WORK/snaps-before.json" || fail "the points changed: $(cat "$WORK/out")"
[ "$(bucket_digest "$HAVEN_S3_PLAIN_BUCKET" "$RUN/main/")" = "$digest" ] || fail "the bucket changed"
ok "bad bucket name ('$(head -1 "$WORK/err-badbucket")'), no credentials ('$(head -1 "$WORK/err-nocred")'), wrong secret ('$(head -1 "$WORK/err-wrongsecret")'): exit non-zero, the repository unchanged"

echo "PASS: $PASS checks"
