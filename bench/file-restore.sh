#!/usr/bin/env bash
# Single-file restore and directory listing from an image backup (issue 6):
# `haven restore file` and `haven ls` read a guest file system straight from
# the repository; the peers' way to the same file is to restore the whole
# image (restic restore, borg extract) and then read it with debugfs, or to
# FUSE-mount the backup (restic mount, borg mount) and run debugfs on the
# mounted image. See bench/README.md ("File restore benchmark").
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/file-restore.sh [options]

  --runs N       rounds of measurements (default 3); medians are reported
  --skip-peers   measure Haven only (no restic/borg setup)
  --no-mount     do not measure the peers' FUSE-mount paths
  --no-cold      do not measure Haven with dropped page caches
  --keep         keep the repositories and the last outputs
  -h, --help     this help

Environment:
  BENCH_DIR  work dir (default /var/tmp/haven-bench); uses BENCH_DIR/image.img
             (built by bench/run.sh --dataset-only if missing), caches the
             derived image BENCH_DIR/image-10k.img beside it and writes
             everything else under BENCH_DIR/file-restore/
  HAVEN      haven binary (default $PWD/build/haven)
USAGE
}

RUNS=3
PEERS=1
MOUNT=1
COLD=1
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) [ $# -ge 2 ] || { usage >&2; exit 2; }; RUNS=$2; shift 2 ;;
    --runs=*) RUNS=${1#*=}; shift ;;
    --skip-peers) PEERS=0; MOUNT=0; shift ;;
    --no-mount) MOUNT=0; shift ;;
    --no-cold) COLD=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ "$RUNS" =~ ^[0-9]+$ ]] && [ "$RUNS" -ge 1 ] && [ "$RUNS" -le 50 ] ||
  { echo "--runs must be an integer in 1..50" >&2; exit 2; }

log() { printf '[file-restore %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[file-restore] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- parameters
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
W=${BENCH_DIR:-/var/tmp/haven-bench}
HAVEN=${HAVEN:-$PWD/build/haven}
IMG_SIZE=$((3 * 1024 * 1024 * 1024))   # 3 GiB, as built by bench/run.sh
BLOCK=65536
FILE_MIN=900000 FILE_MAX=1200000       # "a file of about 1 MB"
BIG_DIR=/bench-10k BIG_N=10000         # the directory added to the derived image
export LC_ALL=C TZ=UTC
export HAVEN_PASSWORD=haven-bench-password
export RESTIC_PASSWORD=haven-bench-password
export BORG_PASSPHRASE=haven-bench-password
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

. "$SCRIPT_DIR/lib.sh"
need_pkg /usr/bin/time time
need_pkg python3 python3
need_pkg cmp diffutils
need_pkg flock util-linux
need_pkg debugfs e2fsprogs
need_pkg fls sleuthkit
if [ "$PEERS" = 1 ]; then
  need_pkg restic restic
  need_pkg borg borgbackup
fi
if [ "$MOUNT" = 1 ]; then
  if [ ! -e /dev/fuse ]; then
    log "no /dev/fuse: the FUSE-mount paths are not measured"; MOUNT=0
  else
    need_pkg fusermount fuse3
    # borg mount needs llfuse in the interpreter borg runs with.
    BORG_PY=$(head -n 1 "$(command -v borg)" | sed -n 's/^#! *//p' | cut -d' ' -f1)
    if ! "${BORG_PY:-/usr/bin/python3}" -c 'import llfuse' 2>/dev/null; then
      log "installing python3-llfuse (apt-get; borg mount needs it)"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-llfuse >/dev/null ||
        die "could not install python3-llfuse (or use --no-mount)"
    fi
  fi
fi
[ -x "$HAVEN" ] || die "haven binary not found at $HAVEN (build it or set HAVEN=/path/to/haven)"
HAVEN=$(readlink -f "$HAVEN")

mkdir -p "$W"
W=$(cd "$W" && pwd -P)
if [ ! -f "$W/image.img" ] || [ "$(stat -c %s "$W/image.img")" != "$IMG_SIZE" ]; then
  log "no dataset in $W: running bench/run.sh --dataset-only"
  BENCH_DIR=$W "$SCRIPT_DIR/run.sh" --dataset-only >&2
fi

exec 9>"$W/file-restore.lock"
flock -n 9 || die "another bench/file-restore.sh is running on $W"

# ---------------------------------------------------------------- derived image
# image.img has no directory of 10,000 entries (its largest holds ~1,560), so
# the benchmark uses a copy with one added: BIG_DIR with BIG_N small files
# (50-350 bytes, distinct contents), written with `debugfs -w`, then
# `e2fsck -fyD` (indexes the directory as the kernel would: htree) and
# `e2fsck -fn` (must be clean). Built once and reused while its stamp matches.
IMG="$W/image-10k.img"
IMG_STAMP_TEXT="haven-bench file-restore image v1: base=[$(cat "$W/dataset.stamp" 2>/dev/null)] base_mtime=$(stat -c %Y "$W/image.img") dir=$BIG_DIR files=$BIG_N"
make_image() {
  log "building $IMG: image.img + $BIG_DIR with $BIG_N files (one-time; reused while image-10k.stamp matches)"
  rm -f "$IMG" "$W/image-10k.stamp"
  local tmp="$W/image-10k.tmp" src="$W/image-10k.src"
  rm -rf "$tmp" "$src"; mkdir -p "$src"
  cp --sparse=always "$W/image.img" "$tmp"
  python3 - "$src" "$BIG_N" <<'PY'
import sys
src, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(f"{src}/f{i:05d}", "w") as f:
        f.write(f"haven file-restore bench: small file {i:05d}\n" * (i % 7 + 1))
PY
  {
    echo "mkdir $BIG_DIR"
    echo "cd $BIG_DIR"
    for ((i = 0; i < BIG_N; i++)); do printf 'write %s/f%05d f%05d\n' "$src" "$i" "$i"; done
  } >"$src.cmds"
  E2FSPROGS_FAKE_TIME=1700000000 debugfs -w -f "$src.cmds" "$tmp" >"$src.log" 2>&1 ||
    { tail -n 20 "$src.log" >&2; die "debugfs -w failed"; }
  local rc=0
  e2fsck -fyD "$tmp" >"$src.fsck" 2>&1 || rc=$?
  [ "$rc" -le 1 ] || { cat "$src.fsck" >&2; die "e2fsck -fyD failed ($rc)"; }
  e2fsck -fn "$tmp" >"$src.fsck" 2>&1 || { cat "$src.fsck" >&2; die "derived image not clean"; }
  [ "$(stat -c %s "$tmp")" = "$IMG_SIZE" ] || die "derived image has the wrong size"
  mv "$tmp" "$IMG"
  rm -rf "$src" "$src.cmds" "$src.log" "$src.fsck"
  echo "$IMG_STAMP_TEXT" >"$W/image-10k.stamp"
}
if [ -f "$IMG" ] && [ -f "$W/image-10k.stamp" ] && [ "$(cat "$W/image-10k.stamp")" = "$IMG_STAMP_TEXT" ]; then
  log "reusing $IMG"
else
  make_image
fi

# Whole-disk ext4, no partition table (haven ls must show volume 0).
FSSTAT=$(fsstat "$IMG" 2>/dev/null || true)
grep -q '^File System Type: Ext4' <<<"$FSSTAT" || die "$IMG: not an ext4 file system at offset 0"
if mmls "$IMG" >/dev/null 2>&1; then die "$IMG has a partition table; the bench expects a whole-disk file system"; fi

# The file: the first regular file of FILE_MIN..FILE_MAX bytes in a sorted
# walk of the image (fls -r -p -l, sorted by path bytes): deterministic.
read -r FILE_PATH FILE_SIZE < <(fls -r -p -l "$IMG" | python3 -c '
import sys
lo, hi = int(sys.argv[1]), int(sys.argv[2])
best = []
for line in sys.stdin.buffer:
    f = line.rstrip(b"\n").split(b"\t")
    if len(f) < 7 or not f[0].startswith(b"r/r ") or b"(deleted)" in f[0]:
        continue
    size = int(f[6])
    if lo <= size <= hi and b" " not in f[1]:
        best.append((f[1], size))
best.sort()
print("/" + best[0][0].decode(), best[0][1])
' "$FILE_MIN" "$FILE_MAX")
[ -n "${FILE_PATH:-}" ] || die "no regular file of $FILE_MIN..$FILE_MAX bytes in $IMG"
FILE_NAME=${FILE_PATH##*/}
log "file: $FILE_PATH ($FILE_SIZE bytes); directory: $BIG_DIR"

# ---------------------------------------------------------------- work dir
D="$W/file-restore"
HREPO="$D/repo-haven"
RREPO="$D/repo-restic"
BREPO="$D/repo-borg"
OUT="$D/out"
MNT="$D/mnt"
LOGS="$D/logs"
RAW="$D/raw.tsv"   # tool <tab> run <tab> key <tab> value
for m in "$MNT"/restic "$MNT"/borg; do mountpoint -q "$m" 2>/dev/null && fusermount -u "$m"; done
rm -rf "$D"
mkdir -p "$D" "$OUT" "$LOGS" "$D/bin" "$D/ref" "$MNT/restic" "$MNT/borg"
: >"$RAW"
cp "$HAVEN" "$D/bin/haven"
log "haven: $HAVEN (sha256 $(sha256sum "$HAVEN" | cut -c1-16))"
HAVEN="$D/bin/haven"
export RESTIC_CACHE_DIR="$D/cache/restic"
export BORG_CACHE_DIR="$D/cache/borg"
export BORG_CONFIG_DIR="$D/cache/borg-config"
export XDG_CACHE_HOME="$D/cache/xdg"

cleanup() {
  local rc=$? m
  for m in "$MNT"/restic "$MNT"/borg; do mountpoint -q "$m" 2>/dev/null && fusermount -u "$m" || true; done
  if [ "$rc" != 0 ]; then
    log "failed (exit $rc): keeping $D for inspection"
  elif [ "$KEEP" = 0 ]; then
    rm -rf "$HREPO" "$RREPO" "$BREPO" "$OUT" "$D/cache" "${D:?}/bin"
  fi
}
trap cleanup EXIT

record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RAW"; }
warm() { find "$@" -type f -exec cat {} + >/dev/null; }
load1() { cut -d' ' -f1 /proc/loadavg; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
jget() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# timed TOOL RUN cmd... : after a sync, runs cmd under /usr/bin/time -v and
# records wall seconds, max RSS (KiB) and CPU seconds (user + sys, children
# included). stdout goes to $LOGS/TOOL-RUN.out.
timed() {
  local tool=$1 run=$2; shift 2
  local tf="$LOGS/$tool-$run.time" out="$LOGS/$tool-$run.out" err="$LOGS/$tool-$run.err"
  sync
  record "$tool" "$run" load_before "$(load1)"
  if ! /usr/bin/time -v -o "$tf" "$@" >"$out" 2>"$err" </dev/null; then
    tail -n 20 "$err" >&2
    die "$tool (run $run) failed: $*"
  fi
  local secs rss cpu
  secs=$(awk -F': ' '/Elapsed \(wall clock\) time/ {
           n = split($NF, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.3f", s }' "$tf")
  rss=$(awk -F': ' '/Maximum resident set size/ { print $NF }' "$tf")
  cpu=$(awk -F': ' '/User time/ { u = $NF } /System time/ { s = $NF } END { printf "%.2f", u + s }' "$tf")
  [ -n "$secs" ] && [ -n "$rss" ] || die "could not parse $tf"
  record "$tool" "$run" time "$secs"
  record "$tool" "$run" rss "$rss"
  record "$tool" "$run" cpu "$cpu"
  log "$tool (run $run): ${secs}s, $((rss / 1024)) MiB peak RSS, ${cpu}s CPU, load $(load1)"
}

# ---------------------------------------------------------------- reference
# What the guest file system holds, read from the local image with debugfs:
# the file's bytes and the directory's names. Every tool's output is checked
# against these.
debugfs -R "dump -p $FILE_PATH $D/ref/$FILE_NAME" "$IMG" >/dev/null 2>"$LOGS/ref-dump.err"
[ "$(stat -c %s "$D/ref/$FILE_NAME" 2>/dev/null)" = "$FILE_SIZE" ] || die "debugfs dump of $FILE_PATH failed"
names_debugfs() { # debugfs `ls -p` output -> sorted names, . and .. left out
  awk -F/ 'NF >= 6 && $6 != "." && $6 != ".." { print $6 }' "$1" | sort
}
debugfs -R "ls -p $BIG_DIR" "$IMG" 2>/dev/null >"$D/ref/ls.txt"
names_debugfs "$D/ref/ls.txt" >"$D/ref/names.txt"
[ "$(wc -l <"$D/ref/names.txt")" = "$BIG_N" ] || die "$BIG_DIR in $IMG holds $(wc -l <"$D/ref/names.txt") entries, not $BIG_N"

# ---------------------------------------------------------------- setup
DATA_BYTES=$(($(stat -c %b "$IMG") * $(stat -c %B "$IMG")))
log "setup: haven repository (init, backup image)"
"$HAVEN" -q -r "$HREPO" init
/usr/bin/time -f '%e' -o "$LOGS/haven-backup.time" \
  "$HAVEN" -r "$HREPO" --json backup image "$IMG" --name fr >"$LOGS/haven-backup.json"
CHUNK_SIZE=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["disks"][0]["chunk_size"])' "$LOGS/haven-backup.json")
SLOTS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["disks"][0]["chunks"])' "$LOGS/haven-backup.json")
LOGICAL=$(jget "$LOGS/haven-backup.json" logical_bytes)
HOLES=$(jget "$LOGS/haven-backup.json" hole_bytes)
NEW_CHUNKS=$(jget "$LOGS/haven-backup.json" new_chunks)
# Stored chunks of the image: its chunk slots that are not holes (backup
# counts hole_bytes per all-zero chunk). new_chunks (a fresh repository)
# is the number of distinct chunks, after dedup within the image.
STORED=$(( (LOGICAL - HOLES + CHUNK_SIZE - 1) / CHUNK_SIZE ))
log "haven: $SLOTS chunk slots, $STORED non-hole (stored) chunks, $NEW_CHUNKS distinct; backup $(cat "$LOGS/haven-backup.time")s"
# haven ls without a path: the layout must be one whole-disk ext4 volume, 0.
"$HAVEN" -r "$HREPO" --json ls fr:latest >"$LOGS/haven-layout.json"
python3 - "$LOGS/haven-layout.json" <<'PY' || die "haven ls: unexpected layout ($(cat "$LOGS/haven-layout.json"))"
import json, sys
j = json.load(open(sys.argv[1]))
v = j["volumes"]
assert j["scheme"] == "none" and len(v) == 1 and v[0]["number"] == 0 and v[0]["fs"] == "ext4", j
PY
if [ "$PEERS" = 1 ]; then
  log "setup: restic repository (init --repository-version 2, backup --compression auto)"
  restic -r "$RREPO" init --repository-version 2 >"$LOGS/restic-init.log" 2>&1 ||
    { cat "$LOGS/restic-init.log" >&2; die "restic init failed"; }
  /usr/bin/time -f '%e' -o "$LOGS/restic-backup.time" \
    restic -r "$RREPO" backup --compression auto --host haven-bench "$IMG" \
    >"$LOGS/restic-backup.log" 2>&1 ||
    { tail -n 20 "$LOGS/restic-backup.log" >&2; die "restic backup failed"; }
  log "setup: borg repository (init -e repokey-blake2, create --compression zstd,1)"
  borg init -e repokey-blake2 "$BREPO" >"$LOGS/borg-init.log" 2>&1 ||
    { cat "$LOGS/borg-init.log" >&2; die "borg init failed"; }
  /usr/bin/time -f '%e' -o "$LOGS/borg-backup.time" \
    borg create --compression zstd,1 "$BREPO::fr" "$IMG" >"$LOGS/borg-backup.log" 2>&1 ||
    { tail -n 20 "$LOGS/borg-backup.log" >&2; die "borg create failed"; }
  log "setup: restic backup $(cat "$LOGS/restic-backup.time")s, borg create $(cat "$LOGS/borg-backup.time")s"
fi

# FUSE paths: one process that mounts the backup, waits for the image to
# appear, runs debugfs on it and unmounts, so that /usr/bin/time measures
# the whole path (the mount's start-up and index loading included; peak RSS
# is the largest of restic/borg and debugfs).
cat >"$D/bin/mount-path" <<'SH'
#!/usr/bin/env bash
# mount-path restic|borg REPO MNT IMG_IN_MNT debugfs-args...
set -u
tool=$1 repo=$2 mnt=$3 img=$4; shift 4
case "$tool" in
  restic) restic -r "$repo" mount "$mnt" >/dev/null 2>"$mnt.err" & ;;
  borg) borg mount -f "$repo::fr" "$mnt" >/dev/null 2>"$mnt.err" & ;;
esac
pid=$!
for _ in $(seq 1 1200); do [ -f "$img" ] && break; sleep 0.02; done
if [ ! -f "$img" ]; then kill "$pid"; wait "$pid"; echo "mount: $img did not appear" >&2; exit 1; fi
debugfs "$@" "$img"
rc=$?
fusermount -u "$mnt"
wait "$pid"
exit $rc
SH
chmod +x "$D/bin/mount-path"

# ---------------------------------------------------------------- checks
check_haven_file() { # RUN-LABEL DIR
  cmp "$2/$FILE_NAME" "$D/ref/$FILE_NAME" || die "$1: RESTORED FILE DIFFERS from debugfs's dump of $FILE_PATH"
}
check_haven_ls() { # JSON-FILE
  python3 - "$1" "$BIG_DIR" >"$D/haven-names.txt" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
entries = j.get("entries") if isinstance(j, dict) else j
if entries is None:
    for k, v in j.items():
        if isinstance(v, list) and v and isinstance(v[0], dict) and "name" in v[0]:
            entries = v
            break
names = sorted(e["name"] for e in entries if e["name"] not in (".", ".."))
sys.stdout.write("".join(n + "\n" for n in names))
PY
  sort "$D/haven-names.txt" | cmp -s - "$D/ref/names.txt" ||
    die "haven ls $BIG_DIR: names differ from debugfs ls ($(wc -l <"$D/haven-names.txt") vs $BIG_N)"
}
check_peer_dump() { # TOOL FILE
  cmp "$2" "$D/ref/$FILE_NAME" || die "$1: debugfs dump DIFFERS from the reference"
}
check_peer_ls() { # TOOL LS-OUTPUT
  names_debugfs "$2" | cmp -s - "$D/ref/names.txt" || die "$1: debugfs ls of $BIG_DIR differs from the reference"
}

# ---------------------------------------------------------------- rounds
HF=(restore file fr:latest "$FILE_PATH")
HL=(ls fr:latest "$BIG_DIR")
haven_round() { # SUFFIX RUN
  local s=$1 run=$2 j
  rm -rf "$OUT/haven"
  [ "$s" = cold ] && drop_caches || warm "$HREPO"
  timed "haven-file-$s" "$run" "$HAVEN" -r "$HREPO" --json "${HF[@]}" --to "$OUT/haven"
  j="$LOGS/haven-file-$s-$run.out"
  for k in chunks_read nodes_read disk_chunks bytes seconds; do record "haven-file-$s" "$run" "$k" "$(jget "$j" "$k")"; done
  check_haven_file "haven-file-$s" "$OUT/haven"
  rm -rf "$OUT/haven"
  [ "$s" = cold ] && drop_caches || warm "$HREPO"
  timed "haven-ls-$s" "$run" "$HAVEN" -r "$HREPO" --json "${HL[@]}"
  j="$LOGS/haven-ls-$s-$run.out"
  for k in chunks_read nodes_read; do record "haven-ls-$s" "$run" "$k" "$(jget "$j" "$k")"; done
  check_haven_ls "$j"
  # For reference: what any command pays to open the repository (key
  # derivation, index) before it reads a single chunk.
  [ "$s" = cold ] && drop_caches || warm "$HREPO"
  timed "haven-open-$s" "$run" "$HAVEN" -r "$HREPO" --json snapshots
  true
}
peer_round() { # restic|borg RUN
  local t=$1 run=$2 img
  rm -rf "$OUT/$t"; mkdir -p "$OUT/$t"
  if [ "$t" = restic ]; then
    warm "$RREPO"
    timed restic-restore "$run" restic -r "$RREPO" restore latest --host haven-bench --path "$IMG" --target "$OUT/restic"
  else
    warm "$BREPO"
    timed borg-extract "$run" env -C "$OUT/borg" borg extract --sparse "$BREPO::fr"
  fi
  img="$OUT/$t$IMG"
  [ -f "$img" ] || die "$t: restored image not found at $img"
  [ "$run" = 1 ] && { cmp "$img" "$IMG" || die "$t: restored image differs from $IMG"; }
  rm -f "$OUT/$t.dump"
  timed "$t-dump" "$run" debugfs -R "dump -p $FILE_PATH $OUT/$t.dump" "$img"
  check_peer_dump "$t" "$OUT/$t.dump"
  timed "$t-ls" "$run" debugfs -R "ls -l $BIG_DIR" "$img"
  [ "$run" = 1 ] && { debugfs -R "ls -p $BIG_DIR" "$img" 2>/dev/null >"$OUT/$t.ls"; check_peer_ls "$t" "$OUT/$t.ls"; }
  rm -rf "$OUT/$t" "$OUT/$t.dump" "$OUT/$t.ls"
}
mount_round() { # restic|borg RUN
  local t=$1 run=$2 repo img
  if [ "$t" = restic ]; then repo=$RREPO img="$MNT/restic/snapshots/latest$IMG"
  else repo=$BREPO img="$MNT/borg$IMG"; fi
  rm -f "$OUT/$t-mount.dump"
  warm "$repo"
  timed "$t-mount-dump" "$run" "$D/bin/mount-path" "$t" "$repo" "$MNT/$t" "$img" \
    -R "dump -p $FILE_PATH $OUT/$t-mount.dump"
  check_peer_dump "$t mount" "$OUT/$t-mount.dump"
  rm -f "$OUT/$t-mount.dump"
  warm "$repo"
  timed "$t-mount-ls" "$run" "$D/bin/mount-path" "$t" "$repo" "$MNT/$t" "$img" -R "ls -l $BIG_DIR"
  [ "$(grep -c ' f[0-9][0-9][0-9][0-9][0-9] *$' "$LOGS/$t-mount-ls-$run.out")" = "$BIG_N" ] ||
    die "$t mount: debugfs ls of $BIG_DIR did not list $BIG_N files"
}

for run in $(seq 1 "$RUNS"); do
  log "round $run of $RUNS"
  haven_round warm "$run"
  [ "$COLD" = 1 ] && haven_round cold "$run"
  if [ "$PEERS" = 1 ]; then
    peer_round restic "$run"
    peer_round borg "$run"
  fi
  if [ "$MOUNT" = 1 ]; then
    mount_round restic "$run"
    mount_round borg "$run"
  fi
done

# ---------------------------------------------------------------- report
{
  echo "haven=$("$HAVEN" --version 2>/dev/null | head -1)"
  echo "restic=$([ "$PEERS" = 1 ] && restic version | head -1 || echo skipped)"
  echo "borg=$([ "$PEERS" = 1 ] && borg --version || echo skipped)"
  echo "debugfs=$(debugfs -V 2>&1 | head -1)"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') x $(nproc)"
  echo "mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "date=$(date -u +%FT%TZ)"
  echo "data_bytes=$DATA_BYTES"
  echo "file_path=$FILE_PATH"
  echo "file_size=$FILE_SIZE"
  echo "big_dir=$BIG_DIR"
  echo "big_n=$BIG_N"
  echo "chunk_size=$CHUNK_SIZE"
  echo "slots=$SLOTS"
  echo "stored=$STORED"
  echo "distinct=$NEW_CHUNKS"
  echo "haven_backup=$(cat "$LOGS/haven-backup.time")"
  [ "$PEERS" = 1 ] && echo "restic_backup=$(cat "$LOGS/restic-backup.time")"
  [ "$PEERS" = 1 ] && echo "borg_backup=$(cat "$LOGS/borg-backup.time")"
  echo "runs=$RUNS"
} >"$D/env.info"

python3 - "$RAW" "$D/env.info" >"$D/results.md" <<'PY'
import statistics, sys
raw, env_path = sys.argv[1:3]
env = dict(l.rstrip("\n").split("=", 1) for l in open(env_path) if "=" in l)
V = {}
for line in open(raw):
    t, run, k, v = line.rstrip("\n").split("\t")
    V.setdefault((t, k), []).append(float(v))
stored, distinct = int(env["stored"]), int(env["distinct"])

def med(t, k):
    v = V.get((t, k))
    return statistics.median(v) if v else None

def have(t):
    return (t, "time") in V

print("# File restore from an image backup\n")
print(f"Image: `image-10k.img` (3 GiB ext4, whole disk, {int(env['data_bytes']) / 1e9:.2f} GB allocated): "
      f"the bench/run.sh image plus `{env['big_dir']}` with {env['big_n']} files.  ")
print(f"File: `{env['file_path']}` ({int(env['file_size']):,} bytes). Directory: `{env['big_dir']}` ({env['big_n']} entries).  ")
print(f"Haven's backup of the image: {int(env['slots'])} chunk slots of {int(env['chunk_size']) // 1024} KiB, "
      f"**{stored} stored (non-hole)**, {distinct} distinct.  ")
print(f"Setup (not measured): backup {env.get('haven_backup')} s haven, {env.get('restic_backup', '-')} s restic, "
      f"{env.get('borg_backup', '-')} s borg.  ")
print(f"Machine: {env.get('cpu')}, {env.get('mem')}; {env.get('date')}.  ")
print(f"Versions: {env.get('haven')}; {env.get('restic')}; {env.get('borg')}; {env.get('debugfs')}.  ")
print(f"{env.get('runs')} rounds, every command once per round; medians.\n")

print("| command | wall (s) median | min–max | CPU (s) | peak RSS (MiB) | chunks + nodes read | % of stored chunks | load avg |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
rows = [
    ("haven-file-warm", "haven restore file (warm cache)"),
    ("haven-file-cold", "haven restore file (caches dropped)"),
    ("haven-ls-warm", "haven ls 10k dir (warm cache)"),
    ("haven-ls-cold", "haven ls 10k dir (caches dropped)"),
    ("haven-open-warm", "(reference) haven snapshots: opening the repository, warm"),
    ("haven-open-cold", "(reference) haven snapshots: opening the repository, cold"),
    ("restic-restore", "restic restore (whole image)"),
    ("restic-dump", "  then debugfs dump"),
    ("restic-ls", "  then debugfs ls -l 10k dir"),
    ("borg-extract", "borg extract --sparse (whole image)"),
    ("borg-dump", "  then debugfs dump"),
    ("borg-ls", "  then debugfs ls -l 10k dir"),
    ("restic-mount-dump", "restic mount + debugfs dump + umount"),
    ("restic-mount-ls", "restic mount + debugfs ls -l + umount"),
    ("borg-mount-dump", "borg mount + debugfs dump + umount"),
    ("borg-mount-ls", "borg mount + debugfs ls -l + umount"),
]
for t, label in rows:
    if not have(t):
        continue
    w = V[(t, "time")]
    cr, nr = med(t, "chunks_read"), med(t, "nodes_read")
    reads = pct = "-"
    if cr is not None:
        reads = f"{cr:.0f} + {nr:.0f}"
        pct = f"{100 * (cr + nr) / stored:.2f}%"
    print(f"| {label} | {statistics.median(w):.3f} | {min(w):.3f}–{max(w):.3f} | {med(t, 'cpu'):.2f} "
          f"| {max(V[(t, 'rss')]) / 1024:.0f} | {reads} | {pct} | {med(t, 'load_before'):.2f} |")
print()
for s in ("warm", "cold"):
    v = med(f"haven-file-{s}", "seconds")
    if v is not None:
        print(f"haven restore file, {s}: `seconds` from its JSON (the restore itself, after the repository "
              f"and the file system are open): {v:.3f} s median.  ")
print()

# Peer paths: sums of the medians of their steps.
paths = {}
def path(name, steps):
    if all(have(s) for s in steps):
        paths[name] = sum(med(s, "time") for s in steps)
path("restic restore + debugfs dump", ["restic-restore", "restic-dump"])
path("borg extract + debugfs dump", ["borg-extract", "borg-dump"])
path("restic mount + debugfs dump", ["restic-mount-dump"])
path("borg mount + debugfs dump", ["borg-mount-dump"])
path("restic restore + debugfs ls", ["restic-restore", "restic-ls"])
path("borg extract + debugfs ls", ["borg-extract", "borg-ls"])
path("restic mount + debugfs ls", ["restic-mount-ls"])
path("borg mount + debugfs ls", ["borg-mount-ls"])
if paths:
    print("| peers' path to the same result | wall (s) | vs haven (warm) | vs haven (cold) |")
    print("|---|---:|---:|---:|")
    for name, secs in paths.items():
        kind = "file" if "dump" in name else "ls"
        hw, hc = med(f"haven-{kind}-warm", "time"), med(f"haven-{kind}-cold", "time")
        rw = f"{secs / hw:.1f}x" if hw else "-"
        rc = f"{secs / hc:.1f}x" if hc else "-"
        print(f"| {name} | {secs:.2f} | {rw} | {rc} |")
    print()
    print("Ratios: the peer's time / Haven's (median) — how many times faster Haven gets there. "
          "Restore/extract paths are the sum of the medians of their two steps.\n")

print("| target | measured | met |")
print("|---|---|---|")
def verdict(label, ok, text):
    print(f"| {label} | {text} | {'yes' if ok else '**no**'} |")
cr, nr = med("haven-file-warm", "chunks_read"), med("haven-file-warm", "nodes_read")
p = 100 * (cr + nr) / stored
verdict("restore file (~1 MB): reads < 1% of the image's stored chunks",
        p < 1, f"{cr:.0f} chunks + {nr:.0f} nodes = {p:.2f}% of {stored} ({100 * (cr + nr) / distinct:.2f}% of {distinct} distinct)")
for s in ("warm", "cold"):
    if have(f"haven-file-{s}"):
        t = med(f"haven-file-{s}", "time")
        verdict(f"restore file (~1 MB) < 1 s, {s} cache", t < 1, f"{t:.3f} s median, max {max(V[(f'haven-file-{s}', 'time')]):.3f} s")
for s in ("warm", "cold"):
    if have(f"haven-ls-{s}"):
        t = med(f"haven-ls-{s}", "time")
        verdict(f"ls of a 10,000-entry directory < 1 s, {s} cache", t < 1, f"{t:.3f} s median, max {max(V[(f'haven-ls-{s}', 'time')]):.3f} s")
PY

echo
cat "$D/results.md"
echo
log "results: $D/results.md (raw: $RAW, logs: $LOGS)"
