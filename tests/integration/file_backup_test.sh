#!/usr/bin/env bash
# File backups end to end (`haven backup files`, `haven ls`, `haven diff`,
# `haven restore files`) on real file systems: the source tree lives on a
# loop-mounted ext4 (user xattrs and POSIX ACLs on), restores go into
# another freshly made ext4, so xattrs, ACLs and device nodes are supported
# on both sides. Without root or a loop device the trees are plain
# directories under $TMPDIR and the root-only parts are skipped (said so).
#  1. every file type and its metadata round-trips (rsync -AXH --checksum
#     finds nothing; ns mtimes, hard-link inodes, sparse holes, device
#     numbers checked on their own); `haven ls` shows it.
#  2. incremental: nothing re-read without changes; changed files (also one
#     with size and mtime put back, found by ctime) re-read; the new and the
#     old point restore their own content; `haven diff` names exactly them.
#  3. --exclude (name and path globs), --exclude-file, --exclude-caches,
#     --one-file-system (a tmpfs inside the tree).
#  4. a backup as nobody over unreadable entries: exit 3, warnings, partial
#     point that restores the rest.
#  5. --pre/--post hooks: failure, timeout, order, failing post.
#  6. restore selection (path, directory, globs), a missing path, and
#     --overwrite never/if-newer/always (atomic replacement).
#  7. restore safety: symlinks in the target or restored from the point are
#     never followed; a restore as nobody.
#  8. tar and zip export.
#  9. check/forget/gc keep file points; a damaged chunk: the file on it is
#     reported and not written, the others restore.
# 10. a second guest with the same files stores little new data.
. "$(dirname "$0")/lib.sh"
for t in mkfs.ext4 setfattr getfattr setfacl getfacl rsync bsdtar timeout mkfifo; do
  command -v $t >/dev/null ||
    fail "$t is missing (scripts/install-deps.sh installs e2fsprogs attr acl rsync libarchive-tools)"
done
export TZ=UTC
chmod 755 "$WORK"  # nobody must reach the repository and the trees
ROOT=0
[ "$(id -u)" = 0 ] && ROOT=1
S=$WORK/src  # the source file system
D=$WORK/dst  # the restore file system
mkdir -p "$S" "$D"
MOUNTS=()
cleanup() {
  set +e
  local i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" 2>/dev/null
  done
  chmod -R u+rwX "$WORK" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
LOOP=0
if [ $ROOT = 1 ] && truncate -s 512M "$WORK/src.fs" && truncate -s 1G "$WORK/dst.fs" &&
   mkfs.ext4 -q -F "$WORK/src.fs" && mkfs.ext4 -q -F "$WORK/dst.fs" &&
   mount -o loop "$WORK/src.fs" "$S" 2>/dev/null; then
  MOUNTS+=("$S")
  if mount -o loop "$WORK/dst.fs" "$D" 2>/dev/null; then
    MOUNTS+=("$D")
    LOOP=1
  else
    umount "$S"
    MOUNTS=()
  fi
fi
FSDESC="plain directories"
if [ $LOOP = 1 ]; then
  FSDESC="ext4 to ext4"
  echo "note: source and restore targets are loop-mounted ext4 file systems"
else
  echo "note: NO loop mount possible (not root or no loop device): source and targets are plain directories under $WORK"
fi
[ $ROOT = 1 ] || echo "note: not root: device nodes, foreign owners, set-id bits, runs as nobody and the tmpfs mount are skipped"
# A restore into a folder exits 0 when all is restored; not as root it
# cannot give the point's /var and /var/tmp back to root: exit 3.
TO_RC=0
[ $ROOT = 1 ] || TO_RC=3
R=$WORK/repo
hv() { timeout 300 "$HAVEN" -r "$R" "$@"; }
MiB=$((1 << 20))
SUMMARY=()
FAILS=()
NFAILS_SEEN=0
# bug WHAT: a check that failed because of haven; the test goes on (so the
# later sections still run) and fails at the end.
bug() { FAILS+=("$1"); echo "FAIL: $1" >&2; }
# pass TITLE: the section is done; ok unless bug was called in it.
pass() {
  if [ ${#FAILS[@]} = $NFAILS_SEEN ]; then
    SUMMARY+=("ok    $1")
    ok "$1 [${SECONDS}s]"
  else
    SUMMARY+=("FAIL  ${1%%:*}: $(printf '%s; ' "${FAILS[@]:$NFAILS_SEEN}")")
    echo "FAILED: ${1%%:*} [${SECONDS}s]"
    NFAILS_SEEN=${#FAILS[@]}
  fi
}

# tree_same SRC DST WHAT [EXPECTED-LINE...]: rsync (dry run, checksums,
# ACLs, xattrs, hard links, numeric owners, ns times, --delete) finds no
# difference other than the EXPECTED lines (each must be there).
tree_same() {
  local src=$1 dst=$2 what=$3
  shift 3
  rsync -nai --checksum ${TS_OPTS:--AXH --modify-window=-1} --numeric-ids --delete "$src/" "$dst/" \
    >"$WORK/rsync.out" 2>"$WORK/rsync.err" || fail "$what: rsync failed: $(cat "$WORK/rsync.err")"
  local want
  cp "$WORK/rsync.out" "$WORK/rsync.rest"
  for want in "$@"; do
    grep -qxF -- "$want" "$WORK/rsync.rest" || fail "$what: expected rsync line '$want' missing; rsync says: $(head -c 3000 "$WORK/rsync.out")"
    grep -vxF -- "$want" "$WORK/rsync.rest" >"$WORK/rsync.tmp" || true
    mv "$WORK/rsync.tmp" "$WORK/rsync.rest"
  done
  [ ! -s "$WORK/rsync.rest" ] || fail "$what: $src and $dst differ (rsync -nai --checksum -AXH): $(head -c 3000 "$WORK/rsync.rest")"
}
# rel_list DIR: the paths under DIR (relative, sorted, one a line).
rel_list() { (cd "$1" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort); }
# list_is DIR WHAT PATH...: the paths under DIR are exactly PATH...
list_is() {
  local dir=$1 what=$2
  shift 2
  rel_list "$dir" >"$WORK/list.got"
  printf '%s\n' "$@" | LC_ALL=C sort >"$WORK/list.want"
  cmp -s "$WORK/list.got" "$WORK/list.want" ||
    fail "$what: paths under $dir differ (< expected, > got): $(diff "$WORK/list.want" "$WORK/list.got" | grep '^[<>]' | head -30 | tr '\n' ' ')"
}
# check WHAT FILE PYTHON [ARG...]: runs PYTHON with `j` = the JSON in FILE
# (ARGs in sys.argv[3:]); a failed assert (with its message) fails the test.
check() {
  local what=$1 file=$2 code=$3
  shift 3
  "$PYTHON" -c '
import json, sys
j = json.load(open(sys.argv[1]))
exec(sys.argv[2])' "$file" "$code" "$@" 2>"$WORK/pyerr" ||
    fail "$what: $(tail -3 "$WORK/pyerr"); JSON: $(head -c 3000 "$file")"
}
# inodes DIR: the number of distinct regular-file inodes under DIR.
inodes() { find "$1" -type f -printf '%i\n' | sort -u | wc -l; }
same_meta() {  # same_meta A B WHAT FORMAT: stat -c FORMAT equal
  local a b
  a=$(stat -c "$4" -- "$1") b=$(stat -c "$4" -- "$2")
  [ "$a" = "$b" ] || fail "$3: stat $4 of $1 is '$a', restored '$b'"
}
rmtree() { chmod -R u+rwX "$1" && rm -rf "$1"; }  # also read-only dirs (not root)
no_partials() {  # no_partials DIR WHAT: no temporary files left
  local left
  left=$(find "$1" -name '*haven-partial*' -o -name '.haven-*' 2>/dev/null | head -5)
  [ -z "$left" ] || fail "$2: temporary files left: $left"
}

expect_rc 0 "init" hv init

# ------------------------------------------------ 1. round trip of every file type
T=$S/t
NL=$'new\nline'
mkdir -p "$T"/{d1/d2/d3,emptydir,hl,tri/x,tri/y,etc/sub,private,sticky,sgiddir,acldir,perm}
echo "hello" >"$T/small.txt"
: >"$T/empty"
random_file "$T/big.bin" $((20 * MiB)) 1
# sparse.img: 200 MiB with data at 0, 77 MiB and the last 4 KiB;
# sparse2.img: data at 1 MiB, a hole up to its end at 50 MiB.
truncate -s 200M "$T/sparse.img"
random_file "$WORK/chunk64k" 65536 2
dd if="$WORK/chunk64k" of="$T/sparse.img" conv=notrunc status=none
random_file "$WORK/chunk128k" 131072 3
dd if="$WORK/chunk128k" of="$T/sparse.img" bs=1M seek=77 conv=notrunc status=none
dd if="$WORK/chunk64k" of="$T/sparse.img" bs=4096 count=1 seek=$((200 * 256 - 1)) conv=notrunc status=none
truncate -s 50M "$T/sparse2.img"
dd if="$WORK/chunk64k" of="$T/sparse2.img" bs=1M seek=1 conv=notrunc status=none
echo "deep down" >"$T/d1/d2/d3/deep.txt"
echo "d1 file" >"$T/d1/one.txt"
echo "to be removed" >"$T/d1/gone.txt"
echo "reset me" >"$T/d1/reset.txt"
echo "conf a" >"$T/etc/a.conf"
echo "conf b" >"$T/etc/sub/b.conf"
echo "not conf" >"$T/etc/notconf.txt"
echo "backup of conf" >"$T/etc/x.conf.bak"
echo "top conf" >"$T/top.conf"
ln -s small.txt "$T/rel-link"
ln -s ../../small.txt "$T/d1/d2/up-link"
ln -s /etc/hostname "$T/abs-link"
ln -s does/not/exist "$T/dangling"
echo "pair" >"$T/hl/a"
ln "$T/hl/a" "$T/hl/b"
echo "three names" >"$T/tri/x/one"
ln "$T/tri/x/one" "$T/tri/y/two"
ln "$T/tri/x/one" "$T/tri/three"
mkfifo -m 0620 "$T/fifo"
chmod 1777 "$T/sticky"
echo "nobody may read" >"$T/perm/zero"
if [ $ROOT = 1 ]; then  # set-id bits are restored only by root; only root reads a 0000 file
  printf '#!/bin/sh\necho suid\n' >"$T/suid" && chmod 4755 "$T/suid"
  printf '#!/bin/sh\necho sgid\n' >"$T/sgid" && chmod 2711 "$T/sgid"
  chmod 2775 "$T/sgiddir"
  chmod 0000 "$T/perm/zero"
fi
echo "read only" >"$T/perm/ro" && chmod 0444 "$T/perm/ro"
echo "private" >"$T/private/secret" && chmod 0700 "$T/private"
echo "x" >"$T/with space.txt"
echo "unicode" >"$T/ünïcødé ✓.txt"
echo "latin-1 name" >"$T/latin1-caf"$'\xe9'
echo "bytes" >"$T/"$'\xff\xfe'
echo "newline" >"$T/$NL"
echo "xattrs" >"$T/xattr.txt"
setfattr -n user.comment -v "hello world" "$T/xattr.txt"
setfattr -n user.binary -v 0x00ff10ab00 "$T/xattr.txt"
setfattr -n user.big -v "$(head -c 3000 /dev/zero | tr '\0' 'v')" "$T/xattr.txt"
setfattr -n user.dir -v "on a dir" "$T/d1"
echo "acl" >"$T/acl.txt"
setfacl -m u:1234:rw-,g:5678:r-- "$T/acl.txt"
setfacl -m u:1234:rwx "$T/acldir"
setfacl -d -m u:1234:rwx,g:5678:r-x "$T/acldir"
echo "inherits" >"$T/acldir/inherited.txt"
mkdir -p "$T/rodir" && echo "in a read-only dir" >"$T/rodir/f" && chmod 0555 "$T/rodir"
echo "1965" >"$T/old-mtime" && touch -d '1965-06-07 08:09:10.5' "$T/old-mtime"
echo "2200" >"$T/future-mtime" && touch -d '2200-01-01 00:00:00.25' "$T/future-mtime"
if [ $ROOT = 1 ]; then
  mknod -m 0666 "$T/chr" c 1 3
  mknod -m 0660 "$T/blk" b 7 200
  chown 0:6 "$T/blk"
  echo "owned" >"$T/owned1234" && chown 1234:5678 "$T/owned1234"
  echo "nobody's" >"$T/owned-nobody" && chown nobody:nogroup "$T/owned-nobody"
  chown -h 1234:5678 "$T/rel-link"
  chown 1234:5678 "$T/d1/d2"
  echo "big ids" >"$T/owned-3e9" && chown 3000000000:3000000001 "$T/owned-3e9"
fi
# ns times last (directories change when entries are added).
touch -d '2021-03-04 05:06:07.123456789' "$T/small.txt"
touch -d '2020-02-29 23:59:59.000000001' "$T/big.bin"
touch -h -d '2019-01-02 03:04:05.987654321' "$T/abs-link"
touch -d '2018-05-06 07:08:09.555555555' "$T/d1/d2/d3" "$T/d1/reset.txt"
touch -d '2017-01-01 00:00:00.424242424' "$T/sparse.img"
NFILES=$(inodes "$T")
NEMPTY=$(find "$T" -type f -empty -printf '%i\n' | sort -u | wc -l)  # nothing to read in them
expect_rc 0 "backup files t1" hv --json backup files "$T" --name t1
cp "$WORK/out" "$WORK/b1.json"
check "first backup json" "$WORK/b1.json" '
n, empty = int(sys.argv[3]), int(sys.argv[5])
keys = {"snapshot", "name", "kind", "partial", "warnings", "entries", "files", "dirs", "symlinks", "other",
        "bytes", "files_read", "files_unchanged", "bytes_read", "new_chunks", "new_raw_bytes",
        "new_stored_bytes", "duration_seconds"}
assert keys <= set(j), "missing keys %s" % (keys - set(j))
assert j["kind"] == "files" and j["name"] == "t1" and j["partial"] is False and j["warnings"] == [], j
assert j["files_read"] == n - empty and j["files_unchanged"] == 0, ("files_read", j["files_read"], "inodes", n, "empty", empty)
assert j["symlinks"] == 4, j["symlinks"]
assert j["other"] == (3 if sys.argv[4] == "1" else 1), j["other"]
' "$NFILES" $ROOT "$NEMPTY"
OLD=$(jget 'j["snapshot"]' "$WORK/b1.json")

# The whole point: the name with a newline is refused (a control
# character), everything else is identical.
expect_rc 3 "restore t1 (the newline name is refused)" hv --json restore files "$OLD" --to "$D/r1"
check "restore t1 json" "$WORK/out" '
keys = {"files", "dirs", "symlinks", "fifos", "bytes", "problems", "seconds"}
assert keys <= set(j), "missing keys %s" % (keys - set(j))
assert j["fifos"] == 1, j["fifos"]
p = j["problems"]
if sys.argv[3] == "0":  # not root: the point'"'"'s /var and /var/tmp belong to root
    p = [x for x in p if not x["what"].startswith("owners not restored")]
assert len(p) == 1 and p[0]["path"].endswith("/new\\x0aline") and "invalid name" in p[0]["what"], p' $ROOT
tree_same "$T" "$D/r1$T" "round trip" '>f+++++++++ new\#012line'
RT=$D/r1$T
for f in small.txt big.bin abs-link d1/d2/d3 d1/reset.txt sparse.img old-mtime future-mtime; do
  same_meta "$T/$f" "$RT/$f" "ns mtime of $f" '%y'
done
[ "$(stat -c %y "$RT/small.txt")" = "2021-03-04 05:06:07.123456789 +0000" ] || fail "mtime of small.txt: $(stat -c %y "$RT/small.txt")"
[ "$(readlink "$RT/abs-link")" = /etc/hostname ] && [ -L "$RT/abs-link" ] || fail "absolute symlink"
[ -L "$RT/dangling" ] && [ "$(readlink "$RT/dangling")" = does/not/exist ] || fail "dangling symlink"
i1=$(stat -c %i "$RT/hl/a") i2=$(stat -c %i "$RT/hl/b")
[ "$i1" = "$i2" ] && [ "$(stat -c %h "$RT/hl/a")" = 2 ] || fail "hard-link pair: inodes $i1 $i2, links $(stat -c %h "$RT/hl/a")"
i1=$(stat -c %i "$RT/tri/x/one") i2=$(stat -c %i "$RT/tri/y/two") i3=$(stat -c %i "$RT/tri/three")
[ "$i1" = "$i2" ] && [ "$i1" = "$i3" ] && [ "$(stat -c %h "$RT/tri/three")" = 3 ] || fail "hard-link triple: inodes $i1 $i2 $i3"
[ "$(stat -c %i "$RT/hl/a")" != "$i1" ] || fail "two hard-link groups share an inode"
for f in sparse.img sparse2.img; do
  a=$(du -k "$T/$f" | cut -f1) b=$(du -k "$RT/$f" | cut -f1)
  [ "$b" -le $((a + 512)) ] || fail "$f not sparse after restore: ${b} KiB allocated, source ${a} KiB"
  same_meta "$T/$f" "$RT/$f" "size of $f" '%s'
done
[ -p "$RT/fifo" ] && [ "$(stat -c %a "$RT/fifo")" = 620 ] || fail "fifo: $(stat -c '%F %a' "$RT/fifo")"
[ "$(stat -c %a "$RT/sticky")" = 1777 ] && [ "$(stat -c %a "$RT/private")" = 700 ] || fail "odd modes: sticky $(stat -c %a "$RT/sticky"), private $(stat -c %a "$RT/private")"
if [ $ROOT = 1 ]; then
  [ "$(stat -c %a "$RT/suid")" = 4755 ] && [ "$(stat -c %a "$RT/sgid")" = 2711 ] || fail "set-id bits: $(stat -c %a "$RT/suid") $(stat -c %a "$RT/sgid")"
  [ "$(stat -c %a "$RT/sgiddir")" = 2775 ] || fail "dir mode bits: $(stat -c %a "$RT/sgiddir")"
  [ "$(stat -c %a "$RT/perm/zero")" = 0 ] || fail "mode 0000: $(stat -c %a "$RT/perm/zero")"
fi
getfattr -d -m - --absolute-names -e hex "$T/xattr.txt" | tail -n +2 >"$WORK/xa.src"
getfattr -d -m - --absolute-names -e hex "$RT/xattr.txt" | tail -n +2 >"$WORK/xa.dst"
same_file "$WORK/xa.src" "$WORK/xa.dst" "xattrs of xattr.txt"
contains "$WORK/xa.dst" "user.binary=0x00ff10ab00" "binary xattr"
getfacl -n -p "$T/acldir" | tail -n +2 >"$WORK/acl.src"
getfacl -n -p "$RT/acldir" | tail -n +2 >"$WORK/acl.dst"
same_file "$WORK/acl.src" "$WORK/acl.dst" "ACLs of acldir"
contains "$WORK/acl.dst" "default:user:1234:rwx" "default ACL"
getfacl -n -p "$RT/acl.txt" | grep -q '^user:1234:rw-' || fail "access ACL of acl.txt: $(getfacl -n "$RT/acl.txt")"
if [ $ROOT = 1 ]; then
  [ "$(stat -c '%F %t:%T' "$RT/chr")" = "character special file 1:3" ] || fail "char device: $(stat -c '%F %t:%T' "$RT/chr")"
  [ "$(stat -c '%F %t:%T %g' "$RT/blk")" = "block special file 7:c8 6" ] || fail "block device: $(stat -c '%F %t:%T %g' "$RT/blk")"
  [ "$(stat -c %u:%g "$RT/owned1234")" = 1234:5678 ] || fail "owner 1234:5678: $(stat -c %u:%g "$RT/owned1234")"
  [ "$(stat -c %U:%G "$RT/owned-nobody")" = nobody:nogroup ] || fail "owner nobody: $(stat -c %U:%G "$RT/owned-nobody")"
fi
pass "1. round trip ($FSDESC): files (empty, 20 MiB, sparse 200 MiB), dirs, 4 kinds of symlinks, hard-link pair and triple, fifo, devices, set-id/sticky, odd modes, owners, xattrs, ACLs (default too), ns mtimes, odd names: rsync -AXH --checksum finds no difference; the newline name is refused and reported (exit 3)"

# haven ls: names (non-UTF-8 bytes as \xNN), types, modes, owners, sizes,
# ns mtimes and targets of the tree's top directory; the text form.
expect_rc 0 "ls --json" hv --json ls t1:latest "$T"
check "ls --json of the tree" "$WORK/out" '
import os, stat
top = sys.argv[3].encode()
assert j["path"] == sys.argv[3], j["path"]
def shown(b):
    s = b.decode("utf-8", "surrogateescape")
    return "".join("\\x%02x" % (ord(c) - 0xdc00) if 0xdc80 <= ord(c) <= 0xdcff else
                   "\\x%02x" % ord(c) if ord(c) < 0x20 or ord(c) == 0x7f else c for c in s)
kinds = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFIFO: "fifo",
         stat.S_IFCHR: "chardev", stat.S_IFBLK: "blockdev"}
want = {}
for n in os.listdir(top):
    st = os.lstat(os.path.join(top, n))
    want[shown(n)] = (n, st)
got = {e["name"]: e for e in j["entries"]}
assert sorted(got) == sorted(want), "names %s, want %s" % (sorted(got), sorted(want))
for name, (n, st) in want.items():
    e = got[name]
    k = kinds[stat.S_IFMT(st.st_mode)]
    assert e["type"] == k, (name, e["type"], k)
    assert e["mode"] == stat.filemode(st.st_mode), (name, e["mode"], stat.filemode(st.st_mode))
    assert (e["uid"], e["gid"]) == (st.st_uid, st.st_gid), (name, e["uid"], e["gid"])
    assert e["mtime_ns"] == st.st_mtime_ns, (name, e["mtime_ns"], st.st_mtime_ns)
    if k == "file":
        assert e["size"] == st.st_size, (name, e["size"], st.st_size)
    if k == "symlink":
        assert e["target"] == os.readlink(os.path.join(top, n)).decode(), (name, e.get("target"))
' "$T"
expect_rc 0 "ls text" hv ls t1:latest "$T"
grep -qE '^lrwxrwxrwx .* abs-link -> /etc/hostname$' "$WORK/out" || fail "ls text: no abs-link line: $(cat "$WORK/out")"
[ $ROOT = 0 ] || grep -qE '^-rwsr-xr-x .* suid$' "$WORK/out" || fail "ls text: no suid line: $(cat "$WORK/out")"
grep -qE "^-rw-r--r-- +$(id -un) +$(id -gn) +20971520 2020-02-29 23:59 big.bin\$" "$WORK/out" || fail "ls text: no big.bin line: $(cat "$WORK/out")"
expect_rc 0 "ls of a subdirectory" hv --json ls t1:latest "$T/tri/y"
check "ls tri/y" "$WORK/out" 'assert [e["name"] for e in j["entries"]] == ["two"] and j["entries"][0]["type"] == "file", j'
run hv ls t1:latest "$T/no/such/dir"
[ "$RC" = 1 ] || fail "ls of a missing path: exit $RC"
pass "1b. haven ls: every entry of the tree with its type (fifo/chardev/blockdev too), mode string, owner, size, ns mtime, link target; ls -l text; a missing path exits 1"

# ------------------------------------------------ 2. incremental backups and diff
expect_rc 0 "unchanged backup" hv --json backup files "$T" --name t1
cp "$WORK/out" "$WORK/b2.json"
check "no-change backup" "$WORK/b2.json" '
n = int(sys.argv[3])
assert j["files_read"] == 0, "files_read %s on a no-change re-run" % j["files_read"]
assert j["files_unchanged"] == n, "files_unchanged %s, want %d (regular-file inodes)" % (j["files_unchanged"], n)
assert j["bytes_read"] == 0, j["bytes_read"]
assert j["new_raw_bytes"] < 1 << 20, "new_raw_bytes %d on a no-change re-run" % j["new_raw_bytes"]
assert j["parent"] == sys.argv[4], (j["parent"], sys.argv[4])
' "$NFILES" "$OLD"
SAME=$(jget 'j["snapshot"]' "$WORK/b2.json")
expect_rc 0 "diff of two identical trees" hv --json diff "$OLD" "$SAME"
check "diff identical" "$WORK/out" '
t = sys.argv[3]
inside = [p for k in ("added", "removed", "modified", "metadata", "type") for p in j[k] if p == t or p.startswith(t + "/")]
assert inside == [], inside' "$T"
# Keep the old contents, then change: append; rewrite same size with a new
# mtime; touch only; rewrite same size and put size and mtime back (only
# ctime tells); add a file; remove one.
mkdir -p "$WORK/old"
cp -a "$T/small.txt" "$T/d1" "$T/with space.txt" "$WORK/old/"
echo "appended" >>"$T/small.txt"
echo "DEEP DOWN" >"$T/d1/d2/d3/deep.txt" && touch -d '2022-02-02 02:02:02.2' "$T/d1/d2/d3/deep.txt"
touch -d '2023-03-03 03:03:03.3' "$T/with space.txt"
echo "RESET ME" >"$T/d1/reset.txt" && touch -d '2018-05-06 07:08:09.555555555' "$T/d1/reset.txt"
echo "added" >"$T/d1/added.txt"
rm "$T/d1/gone.txt"
[ "$(stat -c %s%y "$T/d1/reset.txt")" = "$(stat -c %s%y "$WORK/old/d1/reset.txt")" ] || fail "setup: reset.txt size/mtime not put back"
expect_rc 0 "backup after changes" hv --json backup files "$T" --name t1
cp "$WORK/out" "$WORK/b3.json"
check "changed backup" "$WORK/b3.json" '
n = int(sys.argv[3])
assert j["files_read"] == 5, "files_read %s, want 5 (appended, rewritten, touched, ctime-only, added)" % j["files_read"]
assert j["files_unchanged"] == n - 5, "files_unchanged %s, want %d" % (j["files_unchanged"], n - 5)
' "$(inodes "$T")"
NEW=$(jget 'j["snapshot"]' "$WORK/b3.json")
expect_rc 0 "diff OLD NEW" hv --json diff "$OLD" "$NEW"
cp "$WORK/out" "$WORK/diff.json"
check "diff OLD NEW" "$WORK/diff.json" '
t = sys.argv[3]
def mine(k): return sorted(p for p in j[k] if p == t or p.startswith(t + "/"))
anc = [p for k in j for p in j[k] if not (p == t or p.startswith(t + "/"))]
assert all(t.startswith(p.rstrip("/") + "/") for p in anc) and not (set(anc) - set(j["metadata"])), \
    "entries outside the tree that are not its parents (metadata): %s" % anc
assert mine("added") == [t + "/d1/added.txt"], mine("added")
assert mine("removed") == [t + "/d1/gone.txt"], mine("removed")
assert mine("modified") == sorted([t + "/small.txt", t + "/d1/d2/d3/deep.txt", t + "/d1/reset.txt"]), mine("modified")
assert mine("metadata") == sorted([t + "/with space.txt", t + "/d1"]), mine("metadata")
assert mine("type") == [], mine("type")
' "$T"
expect_rc 0 "diff OLD NEW (text)" hv diff "$OLD" "$NEW"
for l in "M $T/small.txt" "M $T/d1/reset.txt" "m $T/with space.txt" "+ $T/d1/added.txt" "- $T/d1/gone.txt"; do
  grep -qxF -- "$l" "$WORK/out" || fail "diff text: no line '$l': $(cat "$WORK/out")"
done
grep -qE '^1 added, 1 removed, ' "$WORK/out" || fail "diff text summary: $(tail -1 "$WORK/out")"
expect_rc 3 "restore NEW" hv restore files "$NEW" --to "$D/r2"
tree_same "$T" "$D/r2$T" "restore of the new point" '>f+++++++++ new\#012line'
rmtree "$D/r2"
expect_rc $TO_RC "restore OLD's changed files" hv restore files "$OLD" "$T/small.txt" "$T/d1" "$T/with space.txt" --to "$D/r2old"
for f in small.txt "with space.txt" d1/reset.txt d1/gone.txt d1/d2/d3/deep.txt d1/one.txt; do
  same_file "$WORK/old/$f" "$D/r2old$T/$f" "old point: $f"
  same_meta "$WORK/old/$f" "$D/r2old$T/$f" "old point: mtime of $f" '%y'
done
[ ! -e "$D/r2old$T/d1/added.txt" ] || fail "old point restored a file added later"
pass "2. incremental: no change -> files_read 0, files_unchanged $NFILES (inodes); 4 changes + 1 new file -> files_read 5 (the rewrite with size and mtime put back found by ctime); diff: M content, m touch-only and the dir, + added, - removed; new and old points restore their own content"

# ------------------------------------------------ 3. excludes
X=$S/x
mkdir -p "$X"/{sub,skipdir/nested,node_modules/pkg,cache1/sub,cache2,mnt}
echo keep >"$X/keep.txt"
echo tmp >"$X/a.tmp"
echo not-tmp >"$X/a.tmp.txt"
echo tmp >"$X/sub/b.tmp"
echo keep >"$X/sub/keep2.txt"
echo skip >"$X/skipdir/f1"
echo skip >"$X/skipdir/nested/f2"
echo js >"$X/node_modules/pkg/index.js"
echo bak >"$X/sub/old.bak"
echo secret >"$X/secret"
printf 'Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n' >"$X/cache1/CACHEDIR.TAG"
echo junk >"$X/cache1/junk.bin"
echo junk >"$X/cache1/sub/more.bin"
printf 'Signature: not the right one\n' >"$X/cache2/CACHEDIR.TAG"
echo kept >"$X/cache2/kept.bin"
printf '# globs for the test\n\n*.bak\nnode_modules\n%s\n' "$X/secret" >"$WORK/excludes"
FS_NOTE="(no tmpfs: not root)"
if [ $ROOT = 1 ] && mount -t tmpfs -o size=1m haven-test-tmpfs "$X/mnt"; then
  MOUNTS+=("$X/mnt")
  echo inside >"$X/mnt/inside.txt"
  FS_NOTE="a tmpfs at x/mnt: the directory kept, its file not"
else
  mkdir -p "$X/mnt"
fi
ALL=$(rel_list "$X")
expect_rc 0 "backup x without options" hv backup files "$X" --name x-all
expect_rc $TO_RC "restore x-all" hv restore files x-all:latest --to "$D/r3all"
[ "$(rel_list "$D/r3all$X")" = "$ALL" ] || fail "without options not everything was kept: $(rel_list "$D/r3all$X" | tr '\n' ' ')"
expect_rc 0 "backup x with excludes" hv backup files "$X" --name x --exclude '*.tmp' --exclude "$X/skipdir/*" \
  --exclude-file "$WORK/excludes" --exclude-caches --one-file-system
expect_rc $TO_RC "restore x" hv restore files x:latest --to "$D/r3"
list_is "$D/r3$X" "excludes" keep.txt a.tmp.txt sub sub/keep2.txt skipdir cache1 cache1/CACHEDIR.TAG \
  cache2 cache2/CACHEDIR.TAG cache2/kept.bin mnt
# A path glob without the * matches the path itself only.
expect_rc 0 "backup x with a directory path exclude" hv backup files "$X" --name x2 --exclude "$X/sub" --exclude "$X/mnt"
expect_rc $TO_RC "restore x2" hv restore files x2:latest --to "$D/r3b"
[ ! -e "$D/r3b$X/sub" ] && [ ! -e "$D/r3b$X/mnt" ] && [ -e "$D/r3b$X/keep.txt" ] && [ -e "$D/r3b$X/cache1/junk.bin" ] ||
  fail "exclude of a directory path: $(rel_list "$D/r3b$X" | tr '\n' ' ')"
pass "3. excludes: '*.tmp' by name (not a.tmp.txt), '$X/skipdir/*' by path (dir kept), --exclude-file (comments, *.bak, a dir name, an absolute path), --exclude-caches (valid tag kept alone, invalid tag ignored), --one-file-system $FS_NOTE; a directory path excludes it whole"

# ------------------------------------------------ 4. a partial backup as nobody
if [ $ROOT = 1 ] && id nobody >/dev/null 2>&1; then
  P=$S/p
  RN=$WORK/repo-nobody
  mkdir -p "$P/sub" "$P/lockeddir" "$RN" "$WORK/nobody-home"
  echo ok1 >"$P/ok1.txt"
  echo ok2 >"$P/sub/ok2.txt"
  echo locked >"$P/locked.txt"
  echo inner >"$P/lockeddir/inner.txt"
  chown -R nobody:nogroup "$P" "$RN" "$WORK/nobody-home"
  chmod 000 "$P/locked.txt" "$P/lockeddir"
  asnobody() { timeout 300 runuser -u nobody -- env HOME="$WORK/nobody-home" HAVEN_PASSWORD="$HAVEN_PASSWORD" "$@"; }
  expect_rc 0 "init as nobody" asnobody "$HAVEN" -r "$RN" init
  expect_rc 3 "backup as nobody over unreadable entries" asnobody "$HAVEN" -r "$RN" backup files "$P" --name p
  contains "$WORK/err" "warning: $P/locked.txt:" "warning for the unreadable file"
  contains "$WORK/err" "warning: $P/lockeddir:" "warning for the unreadable directory"
  expect_rc 3 "backup as nobody (json)" asnobody "$HAVEN" -r "$RN" --json backup files "$P" --name p
  cp "$WORK/out" "$WORK/b4.json"
  check "partial json" "$WORK/b4.json" '
p = sys.argv[3]
assert j["partial"] is True, j["partial"]
w = " ".join(j["warnings"])
assert p + "/locked.txt" in w and p + "/lockeddir" in w, j["warnings"]
assert len(j["warnings"]) == 2, j["warnings"]' "$P"
  PP=$(jget 'j["snapshot"]' "$WORK/b4.json")
  expect_rc 0 "snapshots as nobody" asnobody "$HAVEN" -r "$RN" snapshots --name p
  contains "$WORK/out" "${PP:0:8}" "the partial point is listed"
  [ "$(grep -c ' p ' "$WORK/out")" = 2 ] || fail "expected 2 points of p: $(cat "$WORK/out")"
  expect_rc 3 "restore of the partial point" "$HAVEN" -r "$RN" --json restore files "$PP" --to "$D/r4"
  check "partial restore json" "$WORK/out" '
p = sys.argv[3]
paths = [x["path"] for x in j["problems"]]
assert p + "/locked.txt" in paths, j["problems"]' "$P"
  same_file "$P/ok1.txt" "$D/r4$P/ok1.txt" "partial: ok1"
  same_file "$P/sub/ok2.txt" "$D/r4$P/sub/ok2.txt" "partial: ok2"
  [ ! -e "$D/r4$P/locked.txt" ] || fail "partial: the unreadable file was restored ($(stat -c %s "$D/r4$P/locked.txt") bytes)"
  [ ! -e "$D/r4$P/lockeddir/inner.txt" ] || fail "partial: a file of the unreadable dir was restored"
  pass "4. backup as nobody over a chmod 000 file and dir: exit 3, 'warning: PATH:' for both, JSON partial with 2 warnings, the point is listed; its restore brings the readable files and reports the unreadable one (exit 3)"
else
  echo "note: 4. partial backup as nobody skipped (needs root and user nobody)"
fi

# ------------------------------------------------ 5. --pre / --post hooks
HK=$S/hooks
mkdir -p "$HK"
echo data >"$HK/data.txt"
npoints() { hv --json snapshots --name "$1" | jget 'len(j)'; }
expect_rc 0 "first hooks backup" hv backup files "$HK" --name hooks
n0=$(npoints hooks)
expect_rc 1 "--pre 'exit 7'" hv backup files "$HK" --name hooks --pre 'exit 7' --post "touch '$WORK/post-after-failed-pre'"
[ "$(npoints hooks)" = "$n0" ] || fail "a failed --pre committed a point"
[ ! -e "$WORK/post-after-failed-pre" ] || fail "--post ran although --pre failed"
grep -q '7' "$WORK/err" || fail "--pre failure: the exit status is not named: $(cat "$WORK/err")"
t0=$(date +%s.%N)
expect_rc 1 "--pre that outlives --hook-timeout 2" hv backup files "$HK" --name hooks --pre 'sleep 37.25' --hook-timeout 2
t1=$(date +%s.%N)
el=$(py -c "print(round($t1 - $t0, 2))")
py -c "import sys; sys.exit(0 if $t1 - $t0 < 4.5 else 1)" || fail "--hook-timeout 2: took ${el}s"
[ "$(npoints hooks)" = "$n0" ] || fail "a timed-out --pre committed a point"
sleep 0.2
if pgrep -f 'sleep 37.25' >/dev/null; then fail "the timed-out --pre command is still running: $(pgrep -af 'sleep 37.25')"; fi
expect_rc 0 "--pre/--post with markers" hv --json backup files "$HK" --name hooks \
  --pre "echo from-pre >'$HK/from-pre'; date +%s%N >'$WORK/pre.mark'" \
  --post "echo from-post >'$HK/from-post'; date +%s%N >'$WORK/post.mark'"
HP=$(jget 'j["snapshot"]' "$WORK/out")
[ -s "$WORK/pre.mark" ] && [ -s "$WORK/post.mark" ] || fail "hook markers missing"
[ "$(cat "$WORK/pre.mark")" -le "$(cat "$WORK/post.mark")" ] || fail "--post ran before --pre"
expect_rc $TO_RC "restore hooks point" hv restore files "$HP" --to "$D/r5"
list_is "$D/r5$HK" "hooks point (from-pre read, from-post written after reading)" data.txt from-pre
hv --json snapshots --name hooks >"$WORK/snaps.json"
check "consistency with --pre" "$WORK/snaps.json" '
s = [x for x in j if x["id"] == sys.argv[3]][0]
assert s["consistency"] == "application-consistent", s["consistency"]' "$HP"
expect_rc 3 "--post 'exit 5'" hv --json backup files "$HK" --name hooks --post 'exit 5'
check "failing post" "$WORK/out" 'assert j["warnings"] and j["partial"] is True, (j["partial"], j["warnings"])'
[ "$(npoints hooks)" = $((n0 + 2)) ] || fail "the point with a failing --post was not committed"
pass "5. hooks: a failing --pre -> exit 1, no point, no --post; a --pre over --hook-timeout 2 -> exit 1 after ${el}s, killed; --pre runs before reading, --post after (its file not in the point), application-consistent; a failing --post -> exit 3, partial point"

# ------------------------------------------------ 6. restore selection and --overwrite
expect_rc $TO_RC "restore one file" hv restore files t1:latest "$T/small.txt" --to "$D/r6a"
[ "$(find "$D/r6a" -type f | wc -l)" = 1 ] || fail "restore one file: $(find "$D/r6a" ! -type d)"
same_file "$T/small.txt" "$D/r6a$T/small.txt" "restore one file"
same_meta "$T/small.txt" "$D/r6a$T/small.txt" "restore one file" '%a %u %g %y'
expect_rc $TO_RC "restore a directory" hv restore files t1:latest "$T/d1" --to "$D/r6b"
tree_same "$T/d1" "$D/r6b$T/d1" "restore a directory"
[ "$(ls -A "$D/r6b$T")" = d1 ] || fail "restore a directory brought more: $(ls -A "$D/r6b$T")"
expect_rc $TO_RC "restore '*.conf'" hv restore files t1:latest '*.conf' --to "$D/r6c"
[ "$(cd "$D/r6c$T" && find . ! -type d | LC_ALL=C sort | tr '\n' ' ')" = "./etc/a.conf ./etc/sub/b.conf ./top.conf " ] ||
  fail "glob by name: $(cd "$D/r6c" && find . ! -type d)"
expect_rc $TO_RC "restore a path glob" hv restore files t1:latest "$T/etc/*/b.conf" --to "$D/r6d"
[ "$(cd "$D/r6d$T" && find . ! -type d)" = "./etc/sub/b.conf" ] || fail "glob by path: $(cd "$D/r6d" && find . ! -type d)"
expect_rc $TO_RC "restore a path glob matching a directory" hv restore files t1:latest "$T/etc/s*" --to "$D/r6e"
[ "$(cd "$D/r6e$T" && find . ! -type d)" = "./etc/sub/b.conf" ] || fail "glob matching a dir: $(cd "$D/r6e" && find . ! -type d)"
expect_rc $TO_RC "restore a name glob matching a directory" hv restore files t1:latest 'd[1]' --to "$D/r6g"
tree_same "$T/d1" "$D/r6g$T/d1" "name glob matching a directory"
[ "$(ls -A "$D/r6g$T")" = d1 ] || fail "name glob d[1] brought more: $(ls -A "$D/r6g$T")"
expect_rc 1 "restore a missing path" hv restore files t1:latest "$T/nope" --to "$D/r6f"
contains "$WORK/err" "$T/nope" "missing path named"
[ -z "$(ls -A "$D/r6f" 2>/dev/null)" ] || fail "a missing path: wrote $(find "$D/r6f")"
expect_rc 1 "restore an existing and a missing path" hv restore files t1:latest "$T/small.txt" "$T/nope" --to "$D/r6f"
[ -z "$(ls -A "$D/r6f" 2>/dev/null)" ] || fail "an existing and a missing path: wrote $(find "$D/r6f")"
O=$D/r6o
expect_rc $TO_RC "restore for overwrite" hv restore files t1:latest "$T/small.txt" "$T/top.conf" "$T/etc/a.conf" --to "$O"
local_edit() { echo "local $1" >"$O$T/$1" && touch -d "$2" "$O$T/$1"; }
local_edit small.txt '2000-01-01'
local_edit top.conf '2099-01-01'
local_edit etc/a.conf '2000-01-01'
ln "$O$T/etc/a.conf" "$O/a-conf-link"
ino=$(stat -c %i "$O$T/etc/a.conf")
expect_rc 3 "--overwrite never" hv restore files t1:latest "$T" --to "$O"
contains "$WORK/err" "not restored: $T/small.txt" "--overwrite never"
for f in small.txt top.conf etc/a.conf; do [ "$(cat "$O$T/$f")" = "local $f" ] || fail "--overwrite never replaced $f"; done
same_file "$T/etc/notconf.txt" "$O$T/etc/notconf.txt" "--overwrite never restores missing files"
run hv restore files t1:latest "$T/small.txt" "$T/top.conf" --to "$O" --overwrite if-newer
ifn_rc=$RC
[ "$RC" = 0 ] || [ "$RC" = 3 ] || fail "--overwrite if-newer: exit $RC: $(cat "$WORK/err")"
same_file "$T/small.txt" "$O$T/small.txt" "if-newer replaces an older file"
[ "$(cat "$O$T/top.conf")" = "local top.conf" ] || fail "if-newer replaced a newer file"
expect_rc 0 "--overwrite always" hv restore files t1:latest "$T/top.conf" "$T/etc/a.conf" --to "$O" --overwrite always
same_file "$T/top.conf" "$O$T/top.conf" "always replaces"
same_file "$T/etc/a.conf" "$O$T/etc/a.conf" "always replaces"
same_meta "$T/etc/a.conf" "$O$T/etc/a.conf" "replaced file metadata" '%a %u %g %y %h'
[ "$(stat -c %i "$O$T/etc/a.conf")" != "$ino" ] && [ "$(cat "$O/a-conf-link")" = "local etc/a.conf" ] ||
  fail "--overwrite always wrote into the existing file instead of replacing it (temp file + rename)"
no_partials "$O" "overwrite"
pass "6. restore selection: a file, a directory (its subtree only), '*.conf' by name, path globs (a matched dir brings its subtree); a missing path -> exit 1, nothing written; --overwrite never (kept, exit 3), if-newer (older replaced, newer kept; exit $ifn_rc), always (replaced by rename: a hard link to the old file keeps the old content); no temporary files left"

# ------------------------------------------------ 7. restore safety
OUT=$WORK/outside
mkdir -p "$OUT" "$D/r7a$T" "$D/r7b"
ln -s "$OUT" "$D/r7a$T/d1"
expect_rc 3 "restore where the target has a symlink for a directory" hv restore files t1:latest "$T/d1" "$T/small.txt" --to "$D/r7a"
contains "$WORK/err" "not restored: $T/d1" "a symlink in the target for a directory"
same_file "$T/small.txt" "$D/r7a$T/small.txt" "the file beside the symlink"
[ -z "$(ls -A "$OUT")" ] || fail "restore followed a symlink in the target: wrote $(find "$OUT")"
[ "$(readlink "$D/r7a$T/d1")" = "$OUT" ] || fail "the symlink in the target was replaced"
ln -s "$OUT" "$D/r7b/var"
run hv restore files t1:latest "$T/small.txt" --to "$D/r7b"
r7b=$RC
[ "$RC" = 3 ] || [ "$RC" = 1 ] || fail "restore where the target's top directory is a symlink: exit $RC"
contains "$WORK/err" "/var" "a symlink for /var in the target"
[ -z "$(ls -A "$OUT")" ] || fail "restore followed a symlink at the top of the target: wrote $(find "$OUT")"
# A point with esc -> OUT2 (absolute), then one where esc is a directory
# holding a file: restoring the second over the first must not write
# through the restored symlink.
OUT2=$WORK/outside2
E=$S/esc
mkdir -p "$OUT2" "$E"
ln -s "$OUT2" "$E/esc"
expect_rc 0 "backup esc (symlink)" hv backup files "$E" --name esc
rm "$E/esc" && mkdir "$E/esc" && echo through >"$E/esc/f"
expect_rc 0 "backup esc (directory)" hv backup files "$E" --name esc
hv --json snapshots --name esc | jget '" ".join(x["id"] for x in j)' >"$WORK/esc.ids"
read -r E1 E2 <"$WORK/esc.ids"
expect_rc $TO_RC "restore the symlink point" hv restore files "$E1" --to "$D/r7c"
[ -L "$D/r7c$E/esc" ] && [ "$(readlink "$D/r7c$E/esc")" = "$OUT2" ] || fail "absolute symlink not restored as such"
for ow in never always; do
  expect_rc 3 "restore over a restored symlink (--overwrite $ow)" hv restore files "$E2" --to "$D/r7c" --overwrite $ow
  contains "$WORK/err" "not restored: $E/esc" "restore over a restored symlink (--overwrite $ow)"
  [ "$(readlink "$D/r7c$E/esc")" = "$OUT2" ] || fail "the restored symlink was changed (--overwrite $ow)"
  [ -z "$(ls -A "$OUT2")" ] || fail "restore over a restored symlink (--overwrite $ow) wrote outside: $(find "$OUT2")"
done
NOBODY_NOTE="(as nobody: skipped, needs root)"
if [ $ROOT = 1 ] && id nobody >/dev/null 2>&1; then
  RC7=$WORK/repo-copy
  cp -a "$R" "$RC7" && chown -R nobody:nogroup "$RC7"
  mkdir -p "$D/r7n" && chown nobody:nogroup "$D/r7n"
  expect_rc 3 "restore as nobody" runuser -u nobody -- env HOME="$WORK/nobody-home" HAVEN_PASSWORD="$HAVEN_PASSWORD" \
    timeout 300 "$HAVEN" -r "$RC7" --json restore files t1:latest "$T" --to "$D/r7n"
  cp "$WORK/out" "$WORK/r7n.json"
  check "restore as nobody" "$WORK/r7n.json" '
t = sys.argv[3]
paths = [x["path"] for x in j["problems"]]
for d in ("/chr", "/blk"):
    assert t + d in paths, "device %s not reported: %s" % (d, j["problems"])
assert any("own" in x["what"] for x in j["problems"]), "owners not reported: %s" % j["problems"]' "$T"
  contains "$WORK/err" "not restored: $T/chr" "as nobody: device"
  RN7=$D/r7n$T
  same_file "$T/big.bin" "$RN7/big.bin" "as nobody: big.bin"
  same_file "$T/small.txt" "$RN7/small.txt" "as nobody: small.txt"
  same_file "$T/perm/zero" "$RN7/perm/zero" "as nobody: mode 0000 file"
  same_file "$T/rodir/f" "$RN7/rodir/f" "as nobody: a file in a 0555 directory"
  [ "$(stat -c %a "$RN7/rodir")" = 555 ] || fail "as nobody: rodir mode $(stat -c %a "$RN7/rodir")"
  getfacl -n -p "$RN7/acldir" | grep -q '^default:user:1234:rwx' || fail "as nobody: default ACL lost"
  [ "$(grep -c 'owners not restored\|owner' "$WORK/err")" = 1 ] || fail "as nobody: owners not reported in one line: $(grep -i owner "$WORK/err")"
  [ "$(stat -c %U "$RN7/owned1234")" = nobody ] || fail "as nobody: owner $(stat -c %U "$RN7/owned1234")"
  [ "$(stat -c %a "$RN7/suid")" = 755 ] || fail "as nobody: set-uid kept: $(stat -c %a "$RN7/suid")"
  [ ! -e "$RN7/chr" ] && [ ! -e "$RN7/blk" ] || fail "as nobody: a device node was made"
  [ "$(stat -c %i "$RN7/hl/a")" = "$(stat -c %i "$RN7/hl/b")" ] || fail "as nobody: hard link"
  NOBODY_NOTE="as nobody into its own dir: files restored, devices and owners reported (exit 3)"
fi
pass "7. restore safety: a symlink in the target for a dir (exit 3, reported) or for /var (exit $r7b) is never followed; an absolute symlink is restored as a symlink and a later point with a dir there does not write through it; $NOBODY_NOTE"

# ------------------------------------------------ 8. tar and zip export
TAR=$WORK/t1.tar
expect_rc 3 "tar export (the newline name is refused)" hv restore files t1:latest "$T" --tar "$TAR"
contains "$WORK/err" "new\\x0aline" "tar export reports the newline name"
bsdtar -tvf "$TAR" >"$WORK/tar.list"
grep -qE " ${T#/}/tri/(y/two|three) link to ${T#/}/tri/" "$WORK/tar.list" ||
  fail "tar: the triple is not stored as hard links: $(grep tri/ "$WORK/tar.list")"
if grep -qE '^/|(^|/)\.\.(/|$)' <(bsdtar -tf "$TAR"); then fail "tar: unsafe names"; fi
mkdir -p "$D/r8"
bsdtar -x --xattrs --acls -p --numeric-owner -f "$TAR" -C "$D/r8" 2>"$WORK/bsdtar.err" ||
  fail "bsdtar -x: $(cat "$WORK/bsdtar.err")"
# ACLs travel as pax ACL records (SCHILY.acl.*), which bsdtar --acls applies:
# rsync compares with ACLs; the archive is checked for the records too.
tree_same "$T" "$D/r8$T" "tar export" '>f+++++++++ new\#012line'
py - "$TAR" "${T#/}" <<'PYEOF' 2>"$WORK/pyerr" || fail "tar: $(tail -3 "$WORK/pyerr")"
import sys, tarfile
t = {m.name: m for m in tarfile.open(sys.argv[1]).getmembers()}
top = sys.argv[2]
h = t[top + "/acl.txt"].pax_headers
assert "user:1234:rw-" in h.get("SCHILY.acl.access", ""), "acl.txt: no ACL in %s" % h
h = t[top + "/acldir"].pax_headers
assert "SCHILY.acl.default" in h, "acldir: no default ACL in %s" % h
h = t[top + "/xattr.txt"].pax_headers
assert any(k.endswith("xattr.user.comment") for k in h), "xattr.txt: no user.comment in %s" % h
PYEOF
for f in small.txt big.bin; do
  [ "$(stat -c %y "$D/r8$T/$f")" = "$(stat -c %y "$T/$f")" ] ||
    fail "tar export: $f mtime $(stat -c %y "$T/$f") extracted as $(stat -c %y "$D/r8$T/$f") (no pax mtime)"
done
getfacl -n -p "$D/r8$T/acl.txt" | grep -q '^user:1234:' ||
  fail "tar export: bsdtar -x --acls did not apply the ACL of acl.txt"
[ "$(stat -c %i "$D/r8$T/tri/x/one")" = "$(stat -c %i "$D/r8$T/tri/three")" ] || fail "tar: hard links not links"
getfattr -n user.comment --only-values "$D/r8$T/xattr.txt" 2>/dev/null | grep -qx "hello world" || fail "tar: xattr lost"
# Sparse files are stored sparse (pax GNU sparse 1.0: the backup's data
# ranges) and extracted with their holes: sparse.img holds 196 KiB of data
# in 200 MiB.
py - "$TAR" "${T#/}" <<'PYEOF' 2>"$WORK/pyerr" || fail "tar: $(tail -3 "$WORK/pyerr")"
import sys, tarfile
t = {m.name: m for m in tarfile.open(sys.argv[1]).getmembers()}
for n in ("sparse.img", "sparse2.img"):
    m = t[sys.argv[2] + "/" + n]
    assert m.sparse, "%s: not a sparse entry" % n
    stored = sum(length for _, length in m.sparse)
    assert stored <= 1 << 20, "%s: %d bytes stored of %d" % (n, stored, m.size)
PYEOF
a8=$(($(stat -c %b "$D/r8$T/sparse.img") * 512))
[ "$a8" -le $((1 << 20)) ] || fail "tar export: sparse.img extracted with $a8 bytes allocated"
rmtree "$D/r8"
ZIP=$WORK/t1.zip
run hv restore files t1:latest "$T/d1" "$T/etc" "$T/small.txt" "$T/abs-link" "$T/hl" "$T/tri" "$T/big.bin" --zip "$ZIP"
[ "$RC" = 0 ] || fail "zip export: exit $RC: $(cat "$WORK/err")"
mkdir -p "$D/r8z"
bsdtar -xf "$ZIP" -C "$D/r8z" || fail "zip does not extract"
for f in small.txt big.bin d1/one.txt d1/d2/d3/deep.txt etc/sub/b.conf; do same_file "$T/$f" "$D/r8z$T/$f" "zip: $f"; done
[ "$(readlink "$D/r8z$T/abs-link")" = /etc/hostname ] || fail "zip: symlink"
# zip has no hard links: every name must carry the content.
for f in hl/a hl/b tri/three tri/x/one tri/y/two; do
  cmp -s "$T/$f" "$D/r8z$T/$f" ||
    bug "zip export: hard link $f extracted with $(stat -c %s "$D/r8z$T/$f" 2>/dev/null || echo no) bytes, source $(stat -c %s "$T/$f") (its content is missing from the zip)"
done
run hv restore files t1:latest "$T" --zip "$WORK/all.zip"
[ "$RC" = 3 ] || fail "zip export of the whole tree: exit $RC"
for w in "not restored: $T/chr" "not restored: $T/blk" "not restored: $T/fifo"; do
  [ $ROOT = 0 ] && [ "$w" != "not restored: $T/fifo" ] && continue
  contains "$WORK/err" "$w" "zip export of devices and fifos"
done
echo precious >"$WORK/exists.tar"
echo precious >"$WORK/exists.zip"
for fmt in tar zip; do
  run hv restore files t1:latest "$T/small.txt" --$fmt "$WORK/exists.$fmt"
  [ "$RC" = 1 ] || [ "$RC" = 2 ] || fail "$fmt onto an existing file: exit $RC"
  [ "$(cat "$WORK/exists.$fmt")" = precious ] || fail "$fmt onto an existing file: changed"
done
pass "8. tar and zip export: tar extracts (bsdtar --xattrs --acls) to the same tree as rsync sees it, hard links as links, xattrs in pax; zip export extracts to the same files and symlinks; an existing archive is refused and kept"

# ------------------------------------------------ 10. a second guest with the same files
T2=$S/t2
cp -a "$T" "$T2"
random_file "$T2/guest2-only.bin" $((256 << 10)) 9
expect_rc 0 "backup of the second guest" hv --json backup files "$T2" --name t2
check "second guest dedup" "$WORK/out" '
nb = j["new_raw_bytes"]
assert nb >= 256 << 10, "new_raw_bytes %d below the new file" % nb
assert nb < 0.05 * (20 << 20), "new_raw_bytes %d is not < 5%% of the 20 MiB tree" % nb'
G2=$(jget 'j["new_raw_bytes"]' "$WORK/out")
pass "10. a second guest (copy of the tree + 256 KiB): new_raw_bytes $G2 < 5% of the tree"

# ------------------------------------------------ 9. check, forget, gc, damage
expect_rc 0 "check" hv check --read-data
expect_rc 0 "forget the older points" hv forget "$OLD" "$SAME"
expect_rc 0 "gc" hv gc
expect_rc 0 "snapshots after forget" hv --json snapshots --name t1
check "forgotten points" "$WORK/out" 'assert [x["id"] for x in j] == [sys.argv[3]], [x["id"] for x in j]' "$NEW"
expect_rc 0 "check after gc" hv check --read-data
expect_rc 3 "restore NEW after gc" hv restore files "$NEW" --to "$D/r9"
tree_same "$T" "$D/r9$T" "restore after forget + gc" '>f+++++++++ new\#012line'
rmtree "$D/r9"
R=$WORK/repo9
expect_rc 0 "init repo9" hv init
C=$S/c
mkdir -p "$C"
echo "a" >"$C/a.txt"
random_file "$C/b.bin" 300000 21
expect_rc 0 "backup c" hv backup files "$C" --name c
find "$R/packs" -type f | sort >"$WORK/packs-before"
random_file "$C/victim.bin" $((2 * MiB)) 22
expect_rc 0 "backup c with victim" hv backup files "$C" --name c
find "$R/packs" -type f | sort | comm -13 "$WORK/packs-before" - >"$WORK/packs-new"
[ -s "$WORK/packs-new" ] || fail "the victim's backup added no pack"
VP=$(xargs -d '\n' ls -S <"$WORK/packs-new" | head -1)
py - "$VP" <<'PYEOF'
import os, sys
off = os.path.getsize(sys.argv[1]) // 2
with open(sys.argv[1], "r+b") as f:
    f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0x55]))
PYEOF
expect_rc 1 "check --read-data of a damaged pack" hv --json check --read-data
check "check of a damaged pack" "$WORK/out" '
assert j["ok"] is False and any(sys.argv[3] in f for f in j["findings"]), j["findings"]' "$(basename "$VP")"
expect_rc 3 "restore with a damaged chunk" hv --json restore files c:latest --to "$D/r9c"
check "damaged restore" "$WORK/out" '
paths = [x["path"] for x in j["problems"] if not x["what"].startswith("owners not restored")]
assert paths == [sys.argv[3] + "/victim.bin"], j["problems"]' "$C"
[ ! -e "$D/r9c$C/victim.bin" ] || fail "the file on a damaged chunk was written ($(stat -c %s "$D/r9c$C/victim.bin") bytes)"
same_file "$C/a.txt" "$D/r9c$C/a.txt" "damaged: a.txt"
same_file "$C/b.bin" "$D/r9c$C/b.bin" "damaged: b.bin"
no_partials "$D/r9c" "damaged restore"
pass "9. check --read-data ok; forget + gc keep the newer file point byte-identical; a flipped byte in a pack: check exits 1 naming the pack, restore reports only the file on it (exit 3), does not write it, restores the others"

echo
echo "summary (file_backup_test):"
printf '  %s\n' "${SUMMARY[@]}"
echo "$PASS passed, ${#FAILS[@]} failed"
[ ${#FAILS[@]} = 0 ] || exit 1
