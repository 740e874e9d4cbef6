#!/usr/bin/env bash
# Messages that tell the next step, and summaries that count what happened
# (issue 25, points 6 and 7), as a user meets them: a real /etc subtree in a
# file backup and in an ext4 image made with mke2fs -d, run through the
# haven binary. Each case asserts the exit code and the key words.
. "$(dirname "$0")/lib.sh"

R=$WORK/repo
hv() { "$HAVEN" -r "$R" "$@"; }

# A real tree: /etc/apt and /etc/ssl (files, symlinks) plus a hard-linked
# pair, as a file backup and inside an ext4 image.
T=$WORK/tree
mkdir -p "$T/etc"
cp -a /etc/apt /etc/ssl "$T/etc/"
echo "shared content" >"$T/etc/hl-a"
ln "$T/etc/hl-a" "$T/etc/hl-b"
NFILES=$(find "$T" -type f | wc -l)
# Names beyond the first of each hard-linked inode: what is restored as links.
NLINKS=$(find "$T" -type f -links +1 -printf '%i\n' | sort | uniq -c |
  awk '{s += $1 - 1} END {print s + 0}')
[ "$NLINKS" -ge 1 ] || fail "setup: no hard links in the tree"
IMG=$WORK/disk.img
mke2fs -q -t ext4 -d "$T" "$IMG" 64M || fail "mke2fs -d"

# ------------------------------------------------ the repository's path
expect_rc 1 "a repository path that does not exist" "$HAVEN" -r "$WORK/mnt/backup" snapshots
contains "$WORK/err" "$WORK/mnt/backup" "missing path: names the path"
contains "$WORK/err" "does not exist" "missing path"
contains "$WORK/err" "mounted" "missing path: suggests the mount"
first=$(grep -o "Check the repository path\|haven init" "$WORK/err" | head -1)
[ "$first" = "Check the repository path" ] ||
  fail "missing path: the first advice is '$first', not to check the path: $(cat "$WORK/err")"
contains "$WORK/err" "only for creating a new repository" "missing path: init only for a new one"
[ ! -e "$WORK/mnt" ] || fail "opening a missing repository created it"
ok "a missing repository path: exit 1, names the path, check the path and the mount first, init only for a new repository"

mkdir "$WORK/empty-mount"
expect_rc 1 "an empty directory as the repository" "$HAVEN" -r "$WORK/empty-mount" snapshots
contains "$WORK/err" "no config file" "empty directory"
first=$(grep -o "check the repository path\|haven init" "$WORK/err" | head -1)
[ "$first" = "check the repository path" ] || fail "empty directory: first advice '$first'"
ok "an empty directory (an unmounted mount point): exit 1, check the path first"

echo "not a repository" >"$WORK/a-file"
expect_rc 1 "-r pointing at a file" "$HAVEN" -r "$WORK/a-file" snapshots
contains "$WORK/err" "$WORK/a-file is a file, not a repository" "-r a file"
lacks "$WORK/err" "Not a directory" "-r a file: the errno text instead of the reason"
expect_rc 1 "init on a file" "$HAVEN" -r "$WORK/a-file" init
contains "$WORK/err" "is not a directory" "init on a file"
[ "$(cat "$WORK/a-file")" = "not a repository" ] || fail "init changed the file"
ok "-r pointing at a file: 'is a file, not a repository' (exit 1); init refuses it"

# ------------------------------------------------ passphrases
expect_rc 0 "init" hv init --chunk-size 64K
expect_rc 0 "backup files" hv --json backup files "$T" --name web1-files
FILES_ID=$(jget 'j["snapshot"]' "$WORK/out")
echo "$HAVEN_PASSWORD" >"$WORK/good-pass"
echo "stale-passphrase" >"$WORK/bad-pass"
expect_rc 1 "HAVEN_PASSWORD wrong beside a right HAVEN_PASSWORD_FILE" \
  env HAVEN_PASSWORD=stale HAVEN_PASSWORD_FILE="$WORK/good-pass" "$HAVEN" -r "$R" snapshots
contains "$WORK/err" "wrong passphrase" "both set"
contains "$WORK/err" "came from HAVEN_PASSWORD;" "both set: names the one used"
contains "$WORK/err" "HAVEN_PASSWORD_FILE is set too but not read" "both set: names the one not read"
lacks "$WORK/err" "stale" "both set: the passphrase itself in the message"
expect_rc 1 "HAVEN_PASSWORD_FILE wrong" \
  env -u HAVEN_PASSWORD HAVEN_PASSWORD_FILE="$WORK/bad-pass" "$HAVEN" -r "$R" snapshots
contains "$WORK/err" "came from HAVEN_PASSWORD_FILE ($WORK/bad-pass)" "file wrong: names the file"
lacks "$WORK/err" "stale-passphrase" "file wrong: the passphrase itself in the message"
ok "a wrong passphrase names where it came from (HAVEN_PASSWORD or HAVEN_PASSWORD_FILE) and what was set but not read"
expect_rc 2 "no passphrase, no terminal" \
  env -u HAVEN_PASSWORD -u HAVEN_PASSWORD_FILE "$HAVEN" -r "$R" snapshots </dev/null
contains "$WORK/err" "HAVEN_PASSWORD_FILE" "no passphrase: names HAVEN_PASSWORD_FILE"
contains "$WORK/err" "--password-file" "no passphrase: names --password-file"
ok "no passphrase: exit 2, names HAVEN_PASSWORD, HAVEN_PASSWORD_FILE and --password-file"

# ------------------------------------------------ names and kinds of points
expect_rc 0 "snapshots NAME (positional, as the guide shows)" hv snapshots web1-files
contains "$WORK/out" "${FILES_ID:0:8}" "snapshots web1-files"
expect_rc 0 "backup image" hv --json backup image "$IMG" --name web1
IMG_ID=$(jget 'j["id"]' "$WORK/out")
expect_rc 0 "snapshots web1 --json" hv --json snapshots web1
[ "$(jget '[m["id"] for m in j]' "$WORK/out")" = "[\"$IMG_ID\"]" ] ||
  fail "snapshots web1 listed $(cat "$WORK/out")"
expect_rc 2 "snapshots NAME --name OTHER" hv snapshots web1 --name web1-files
ok "haven snapshots NAME lists that backup's points (as --name); both at once is a usage error"

expect_rc 1 "NAME:latest of a name without points" hv restore image web2:latest --to "$WORK/w2.raw"
contains "$WORK/err" "no image or VM backup named 'web2'" "unknown name"
contains "$WORK/err" "are: web1 (use NAME:latest)" "unknown name: lists the names that have points"
expect_rc 1 "show of a name without points" hv show web2:latest
contains "$WORK/err" "no snapshot named 'web2'" "show unknown name"
contains "$WORK/err" "web1, web1-files" "show unknown name: lists every name"
expect_rc 1 "a name without :latest" hv show web1
contains "$WORK/err" "'web1:latest'" "a bare name: says NAME:latest"
[ ! -e "$WORK/w2.raw" ] || fail "an unknown name wrote a target"
ok "a name that matches no point lists the names that do; a bare name says NAME:latest"

expect_rc 2 "restore host NAME:latest --all" hv restore host web1:latest --all
contains "$WORK/err" "alternatives" "restore host NAME --all"
contains "$WORK/err" "web1:latest" "restore host NAME --all: names the point given"
ok "restore host NAME:latest --all: exit 2, says the two are alternatives"

# After an image backup, restore files latest is the latest file point.
expect_rc 0 "restore files latest after an image backup" hv --json restore files latest --to "$WORK/latest"
[ -f "$WORK/latest$T/etc/hl-a" ] || fail "restore files latest did not restore the file point"
[ "$(jget 'j["files"]' "$WORK/out")" -gt 0 ] || fail "restore files latest restored no file"
[ "$(jget 'j["snapshot"]' "$WORK/out")" = "$FILES_ID" ] ||
  fail "restore files latest chose $(jget 'j["snapshot"]' "$WORK/out"), not the file point $FILES_ID"
# And restore image latest after a file backup is the latest image point.
expect_rc 0 "backup files again (newest point is a file point)" hv backup files "$T" --name web1-files
expect_rc 0 "restore image latest after a file backup" hv restore image latest --to "$WORK/latest.raw"
same_file "$IMG" "$WORK/latest.raw" "restore image latest"
# restore config's latest is a disk point too (this one holds no config).
expect_rc 1 "restore config latest after a file backup" hv restore config latest --to "$WORK/cfg"
contains "$WORK/err" "snapshot ${IMG_ID:0:8} holds no configuration files" "restore config latest"
ok "latest is the latest point of the kind the restore reads (restore files: file backups; restore image: disks)"

expect_rc 1 "restore files NAME:latest of an image backup" hv restore files web1:latest --to "$WORK/wrong-kind"
contains "$WORK/err" "no file backup named 'web1'" "wrong kind"
contains "$WORK/err" "its points are image backups" "wrong kind: says what they are"
contains "$WORK/err" "haven restore file web1:latest" "wrong kind: names the command"
R2=$WORK/repo-images-only
expect_rc 0 "init a second repository" "$HAVEN" -r "$R2" init --chunk-size 64K
expect_rc 0 "image backup into it" "$HAVEN" -r "$R2" backup image "$IMG" --name web1
expect_rc 1 "restore files latest with no file point" "$HAVEN" -r "$R2" restore files latest --to "$WORK/none"
contains "$WORK/err" "has no file backup" "no file point"
contains "$WORK/err" "haven restore file latest" "no file point: names the command for image points"
[ ! -e "$WORK/none" ] || fail "restore files latest with no file point made its target"
ok "restore files of an image point's name, or latest with no file point: exit 1, says so and names restore file"

# ------------------------------------------------ restore file (image points)
expect_rc 1 "a glob given to restore file" hv restore file web1:latest '/etc/apt/*.list' --to "$WORK/glob"
contains "$WORK/err" "globs" "glob"
contains "$WORK/err" "not expanded" "glob"
[ ! -e "$WORK/glob" ] || fail "a refused glob made the target"
ok "a glob given to restore file on an image point: exit 1, 'globs ... are not expanded', nothing written"

mkdir "$WORK/real-target"
ln -s "$WORK/real-target" "$WORK/link-target"
expect_rc 2 "restore file --to a symlink to a directory" \
  hv restore file web1:latest /etc/apt --to "$WORK/link-target"
contains "$WORK/err" "$WORK/link-target is a symlink (to '$WORK/real-target')" "--to symlink"
lacks "$WORK/err" "is not a directory" "--to symlink: a false reason"
expect_rc 2 "restore files --to a symlink to a directory" \
  hv restore files web1-files:latest --to "$WORK/link-target"
contains "$WORK/err" "is a symlink" "restore files --to symlink"
[ -z "$(ls -A "$WORK/real-target")" ] || fail "a restore wrote through the symlink"
ok "--to a symlink to a directory: refused (exit 2) saying it is a symlink and where it points, nothing written"

# /etc/apt and the linked pair (not /etc/ssl: its long symlink targets are
# another change's, to guest_fs). The image's hard links come back as
# separate files (user guide).
expect_rc 0 "restore file (image)" \
  hv restore file web1:latest /etc/apt /etc/hl-a /etc/hl-b --to "$WORK/from-image"
napt=$(find "$T/etc/apt" -type f | wc -l)
contains "$WORK/out" "restored $((napt + 2)) files" "image restore summary"
diff -r --no-dereference "$T/etc/apt" "$WORK/from-image/apt" >/dev/null ||
  fail "restore file: /etc/apt differs"
same_file "$T/etc/hl-b" "$WORK/from-image/hl-b" "restore file content"
ok "restore file from an image point counts the files it wrote"

# ------------------------------------------------ summaries
D=$WORK/r1
expect_rc 0 "restore files" hv --json restore files web1-files:latest --to "$D"
J1=$(cat "$WORK/out")
w1=$(jget 'j["files"]' <<<"$J1")
[ "$w1" = $((NFILES - NLINKS)) ] || fail "first restore: files $w1, expected $((NFILES - NLINKS))"
[ "$(jget 'j["hardlinks"]' <<<"$J1")" = "$NLINKS" ] || fail "first restore: hardlinks $(jget 'j["hardlinks"]' <<<"$J1")"
[ "$(jget 'j["files_written"]' <<<"$J1")" = "$w1" ] || fail "files_written"
entries=$(jget 'j["files"] + j["symlinks"] + j["hardlinks"]' <<<"$J1")
diff -r --no-dereference "$T" "$D$T" >/dev/null || fail "the first restore differs from the tree"
ok "restore files into an empty folder: $w1 files, $NLINKS hard links counted apart (same tree as the source)"

expect_rc 0 "restore files --overwrite if-newer (nothing newer)" \
  hv restore files web1-files:latest --to "$D" --overwrite if-newer
contains "$WORK/out" "restored 0 files (0 B; $entries skipped: not newer)" "if-newer summary"
lacks "$WORK/out" "restored $w1 files" "if-newer: counts kept files as restored"
expect_rc 0 "the same with --json" hv --json restore files web1-files:latest --to "$D" --overwrite if-newer
[ "$(jget '[j["files"], j["files_written"], j["hardlinks"], j["symlinks"], j["bytes"], j["skipped"]]' "$WORK/out")" = \
  "[0, 0, 0, 0, 0, $entries]" ] || fail "if-newer --json: $(cat "$WORK/out")"
# Older than the backup's: replaced. hl-b is the same inode, so it is older
# too, and comes back as a link to the new hl-a.
touch -d '2001-01-01' "$D$T/etc/hl-a"
expect_rc 0 "if-newer with one older file" hv restore files web1-files:latest --to "$D" --overwrite if-newer
contains "$WORK/out" "restored 1 file (15 B; $((entries - 2)) skipped: not newer)" "if-newer, one replaced"
contains "$WORK/out" ", 1 hard link," "if-newer, its link"
[ "$(stat -c %i "$D$T/etc/hl-a")" = "$(stat -c %i "$D$T/etc/hl-b")" ] || fail "if-newer: the pair is no longer linked"
ok "--overwrite if-newer that wrote nothing says 'restored 0 files (0 B; $entries skipped: not newer)'; --json files 0, skipped $entries"

expect_rc 0 "tar export" hv restore files web1-files:latest --tar "$WORK/x.tar"
links_word=$([ "$NLINKS" = 1 ] && echo "hard link" || echo "hard links")
contains "$WORK/out" "$NLINKS $links_word" "tar summary"
intar=$(tar -tvf "$WORK/x.tar" | grep -c '^h' || true)
[ "$intar" = "$NLINKS" ] || fail "the tar holds $intar link entries, expected $NLINKS"
expect_rc 0 "tar export --json" hv --json restore files web1-files:latest --tar "$WORK/y.tar"
[ "$(jget '[j["files"], j["hardlinks"]]' "$WORK/out")" = "[$((NFILES - NLINKS)), $NLINKS]" ] ||
  fail "tar --json counts: $(cat "$WORK/out")"
ok "a tar export counts the hard links it wrote ($NLINKS, as link entries in the tar)"

echo "$PASS passed"
