#!/usr/bin/env bash
# File-level backup (issue 7): `haven backup files` against restic 0.14 and
# borg 1.2 on the same directory tree, in one run: first backup, no-change
# re-run, re-run after 1% of the files changed, restore of the latest point,
# and a second "guest" with the same OS files backed up into the same
# repository. See bench/README.md ("File backup benchmark").
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/file-backup.sh [options]

  --rounds N     rounds of measurements (default 3); medians are reported.
                 Every round makes new repositories and runs all steps for
                 every tool, tool after tool (--runs N is the same)
  --only TOOLS   run only these tools (comma separated: haven,restic,borg)
  --skip TOOLS   skip these tools (comma separated)
  --keep         keep the repositories, the trees and the last restores
  -h, --help     this help

Environment:
  BENCH_DIR  work dir (default /var/tmp/haven-bench); uses BENCH_DIR/image.img
             (built by bench/run.sh --dataset-only if missing), extracts its
             files once to BENCH_DIR/tree-src (reused while tree-src.stamp
             matches), backs up BENCH_DIR/tree and BENCH_DIR/tree2 and writes
             everything else under BENCH_DIR/file-backup/
  HAVEN      haven binary (default $PWD/build/haven); copied first, so a
             rebuild during the run does not change what is measured
USAGE
}

ALL_TOOLS=(haven restic borg)
declare -A RUN=([haven]=1 [restic]=1 [borg]=1)
ROUNDS=3
KEEP=0
set_tools() { # $1 = value (0/1) for the listed tools, $2 = comma list
  local t
  IFS=',' read -r -a _ts <<<"$2"
  for t in "${_ts[@]}"; do
    case "$t" in haven|restic|borg) RUN[$t]=$1 ;; *) echo "unknown tool: $t" >&2; exit 2 ;; esac
  done
}
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds|--runs) [ $# -ge 2 ] || { usage >&2; exit 2; }; ROUNDS=$2; shift 2 ;;
    --rounds=*|--runs=*) ROUNDS=${1#*=}; shift ;;
    --only) [ $# -ge 2 ] || { usage >&2; exit 2; }
            RUN=([haven]=0 [restic]=0 [borg]=0); set_tools 1 "$2"; shift 2 ;;
    --only=*) RUN=([haven]=0 [restic]=0 [borg]=0); set_tools 1 "${1#*=}"; shift ;;
    --skip) [ $# -ge 2 ] || { usage >&2; exit 2; }; set_tools 0 "$2"; shift 2 ;;
    --skip=*) set_tools 0 "${1#*=}"; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ "$ROUNDS" =~ ^[0-9]+$ ]] && [ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 50 ] ||
  { echo "--rounds must be an integer in 1..50" >&2; exit 2; }
TOOLS=()
for t in "${ALL_TOOLS[@]}"; do [ "${RUN[$t]}" = 1 ] && TOOLS+=("$t"); done
[ ${#TOOLS[@]} -gt 0 ] || { echo "no tools selected" >&2; exit 2; }

log() { printf '[file-backup %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[file-backup] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- parameters
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
W=${BENCH_DIR:-/var/tmp/haven-bench}
HAVEN=${HAVEN:-$PWD/build/haven}
IMG_SIZE=$((3 * 1024 * 1024 * 1024))   # 3 GiB, as built by bench/run.sh
CHANGE_SEED=42       # step 3: 1% of the regular files get 4 KiB appended
GUEST_SEED=7         # step 5: the second guest differs in another 1%
CHANGE_PERMILLE=10   # 1%
APPEND_BYTES=4096
export LC_ALL=C TZ=UTC
export HAVEN_PASSWORD=haven-bench-password
export RESTIC_PASSWORD=haven-bench-password
export BORG_PASSPHRASE=haven-bench-password
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

. "$SCRIPT_DIR/lib.sh"
need_pkg /usr/bin/time time
need_pkg python3 python3
need_pkg diff diffutils
need_pkg flock util-linux
need_pkg debugfs e2fsprogs
[ "${RUN[restic]}" = 1 ] && need_pkg restic restic
[ "${RUN[borg]}" = 1 ] && need_pkg borg borgbackup
python3 -c 'import random; random.randbytes' 2>/dev/null ||
  die "python3 >= 3.9 needed (random.randbytes)"
if [ "${RUN[haven]}" = 1 ]; then
  [ -x "$HAVEN" ] || die "haven binary not found at $HAVEN (build it, set HAVEN=/path/to/haven, or use --skip haven)"
  HAVEN=$(readlink -f "$HAVEN")
  # (an unknown subcommand's --help prints the parent's help with exit 0)
  "$HAVEN" backup files --help 2>&1 | grep -qE 'backup files|--exclude-caches' ||
    die "$HAVEN has no 'backup files' command yet (use --skip haven)"
fi

mkdir -p "$W"
W=$(cd "$W" && pwd -P)   # absolute, symlink-free: every tool stores this path
if [ ! -f "$W/image.img" ] || [ "$(stat -c %s "$W/image.img")" != "$IMG_SIZE" ] || [ ! -f "$W/dataset.stamp" ]; then
  log "no dataset in $W: running bench/run.sh --dataset-only"
  BENCH_DIR=$W "$SCRIPT_DIR/run.sh" --dataset-only >&2
fi

exec 9>"$W/file-backup.lock"
flock -n 9 || die "another bench/file-backup.sh is running on $W"

D="$W/file-backup"
SRC="$W/tree-src"      # pristine copy of the dataset's files (never backed up)
TREE="$W/tree"         # what steps 1-4 back up (a fresh copy of SRC per tool and round)
TREE2="$W/tree2"       # the second guest: SRC plus 1% different files
OUT="$D/out"
MNT="$D/mnt"
LOGS="$D/logs"
RAW="$D/results.tsv"   # tool <tab> round <tab> key <tab> value
mountpoint -q "$MNT" 2>/dev/null && umount "$MNT"
rm -rf "$D" "$TREE" "$TREE2"
mkdir -p "$D" "$OUT" "$LOGS" "$D/bin"
: >"$RAW"
if [ "${RUN[haven]}" = 1 ]; then
  cp "$HAVEN" "$D/bin/haven"
  log "haven: $HAVEN (sha256 $(sha256sum "$HAVEN" | cut -c1-16))"
  HAVEN="$D/bin/haven"
fi
export RESTIC_CACHE_DIR="$D/cache/restic"
export BORG_CACHE_DIR="$D/cache/borg"
export BORG_CONFIG_DIR="$D/cache/borg-config"
export XDG_CACHE_HOME="$D/cache/xdg"

cleanup() {
  local rc=$?
  mountpoint -q "$MNT" 2>/dev/null && umount "$MNT" || true
  if [ "$rc" != 0 ]; then
    log "failed (exit $rc): keeping $D, $TREE and $TREE2 for inspection"
  elif [ "$KEEP" = 0 ]; then
    rm -rf "$D"/repo-* "$OUT" "$D/cache" "${D:?}/bin" "$MNT" "$TREE" "$TREE2"
  fi
}
trap cleanup EXIT

# ---------------------------------------------------------------- the tree
# The dataset's files exactly as bench/run.sh staged them: bench/run.sh
# deletes its staging dir once image.img is built, so they are copied back
# out of image.img (loop mount, read-only; debugfs rdump where no loop
# device is available), without lost+found. Reused while the stamp matches.
SRC_STAMP_TEXT="haven-bench file tree v1: base=[$(cat "$W/dataset.stamp")] base_mtime=$(stat -c %Y "$W/image.img")"
make_src() {
  log "extracting the dataset's files from image.img to $SRC (one-time; reused while tree-src.stamp matches)"
  rm -rf "$SRC" "$SRC.tmp" "$W/tree-src.stamp"
  mkdir -p "$SRC.tmp" "$MNT"
  if mount -o loop,ro,noload "$W/image.img" "$MNT" 2>"$D/mount.err"; then
    cp -a "$MNT/." "$SRC.tmp/"
    umount "$MNT"
  else
    log "loop mount failed ($(head -n 1 "$D/mount.err")): using debugfs rdump (hard links become copies)"
    local top
    for top in $(debugfs -R "ls -p /" "$W/image.img" 2>/dev/null | awk -F/ 'NF >= 6 { print $6 }'); do
      case "$top" in .|..|lost+found) continue ;; esac
      debugfs -R "rdump /$top $SRC.tmp" "$W/image.img" >/dev/null 2>>"$D/rdump.err" ||
        die "debugfs rdump /$top failed"
    done
  fi
  rm -rf "$SRC.tmp/lost+found"
  mv "$SRC.tmp" "$SRC"
  echo "$SRC_STAMP_TEXT" >"$W/tree-src.stamp"
}
if [ -d "$SRC" ] && [ -f "$W/tree-src.stamp" ] && [ "$(cat "$W/tree-src.stamp")" = "$SRC_STAMP_TEXT" ]; then
  log "reusing $SRC"
else
  make_src
fi
SRC_ENTRIES=$(find "$SRC" | wc -l)
SRC_BYTES=$(du -sb "$SRC" | cut -f1)
SRC_FILES=$(find "$SRC" -type f | wc -l)
STAGED_ENTRIES=$(sed -n 's/^staged_entries=//p' "$W/dataset.info" 2>/dev/null || true)
log "tree: $SRC_ENTRIES entries ($SRC_FILES regular files), $((SRC_BYTES / 1000000)) MB (bench/run.sh staged ${STAGED_ENTRIES:-?} entries)"
[ -z "$STAGED_ENTRIES" ] || [ "$STAGED_ENTRIES" = "$SRC_ENTRIES" ] ||
  log "note: $SRC has $SRC_ENTRIES entries, dataset.info says $STAGED_ENTRIES were staged"

# mutate DIR SEED LIST: appends APPEND_BYTES random bytes to CHANGE_PERMILLE/1000
# of DIR's regular files. Deterministic: the regular files in a sorted walk,
# random.seed(SEED), random.sample of them, then randbytes per file in that
# order. LIST gets: relative path, size before, size after. Prints the
# number of files changed.
mutate() {
  python3 - "$1" "$2" "$3" "$CHANGE_PERMILLE" "$APPEND_BYTES" <<'PY'
import os, random, stat, sys
top, seed, out, permille, nbytes = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
files = []
for root, dirs, names in os.walk(top):
    dirs.sort()
    for n in sorted(names):
        p = os.path.join(root, n)
        if stat.S_ISREG(os.lstat(p).st_mode):
            files.append(os.path.relpath(p, top))
random.seed(seed)
pick = random.sample(files, max(1, len(files) * permille // 1000))
with open(out, "w") as f:
    for rel in pick:
        p = os.path.join(top, rel)
        before = os.lstat(p).st_size
        with open(p, "ab") as g:
            g.write(random.randbytes(nbytes))
        f.write(f"{rel}\t{before}\t{os.lstat(p).st_size}\n")
print(len(pick))
PY
}

log "second guest: $TREE2 = copy of the tree, then 1% of its files changed (seed $GUEST_SEED)"
cp -a --reflink=auto "$SRC" "$TREE2"
GUEST_CHANGED=$(mutate "$TREE2" "$GUEST_SEED" "$D/guest-changes.tsv")
# What the second guest adds at most with whole-file dedup: the full new
# contents of its differing files (some appear twice: hard links).
GUEST_DIFF_BYTES=$(awk -F'\t' '{ s += $3 } END { printf "%d", s }' "$D/guest-changes.tsv")
log "second guest: $GUEST_CHANGED files differ (+$APPEND_BYTES bytes each; $((GUEST_DIFF_BYTES / 1000)) kB in those files)"

# ---------------------------------------------------------------- helpers
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RAW"; }
repo_bytes() { du -sb "$1" | cut -f1; }
warm() { find "$@" -type f -exec cat {} + >/dev/null; }
load1() { cut -d' ' -f1 /proc/loadavg; }
jget() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# timed TOOL STEP ROUND cmd... : after a sync, runs cmd under /usr/bin/time
# and records wall seconds, peak RSS (KiB) and CPU seconds (user + sys).
# Output goes to $LOGS/TOOL-STEP-ROUND.{out,err,time}. Haven's exit code 3
# (done, with warnings) is accepted and recorded; anything else non-zero
# stops the run.
timed() {
  local tool=$1 step=$2 round=$3; shift 3
  local base="$LOGS/$tool-$step-$round" rc=0
  sync
  record "$tool" "$round" "load_$step" "$(load1)"
  /usr/bin/time -f '%e %M %U %S' -o "$base.time" "$@" >"$base.out" 2>"$base.err" </dev/null || rc=$?
  if [ "$rc" != 0 ]; then
    if [ "$tool" = haven ] && [ "$rc" = 3 ]; then
      log "WARNING: haven $step exited with 3 (warnings): $(head -n 3 "$base.err" | tr '\n' ' ')"
      record "$tool" "$round" "exit3_$step" 1
    else
      tail -n 20 "$base.err" >&2
      die "$tool $step (round $round) failed with exit code $rc: $*"
    fi
  fi
  local secs rss usr sys
  read -r secs rss usr sys < <(tail -n 1 "$base.time")
  [ -n "$sys" ] || die "could not parse $base.time"
  record "$tool" "$round" "time_$step" "$secs"
  record "$tool" "$round" "rss_$step" "$rss"
  record "$tool" "$round" "cpu_$step" "$(awk -v u="$usr" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')"
  log "$tool $step: ${secs}s, $((rss / 1024)) MiB peak RSS, CPU ${usr}u ${sys}s, load $(load1)"
}

# ---------------------------------------------------------------- per-tool commands
# <tool>_cmd ACTION ARGS... sets the array CMD to a real command (so that
# /usr/bin/time measures the tool itself).
#   init REPO | backup REPO DIR NAME N | restore REPO OUTDIR | list REPO
haven_cmd() {
  case "$1" in
    init)    CMD=("$HAVEN" -r "$2" init) ;;
    backup)  CMD=("$HAVEN" -r "$2" --json backup files "$3" --name "$4") ;;
    restore) CMD=("$HAVEN" -r "$2" --json restore files tree:latest --to "$3") ;;
    list)    CMD=("$HAVEN" -r "$2" snapshots) ;;
  esac
}
restic_cmd() {
  case "$1" in
    init)    CMD=(restic -r "$2" init --repository-version 2) ;;
    backup)  CMD=(restic -r "$2" backup --json --compression auto --host haven-bench "$3") ;;
    restore) CMD=(restic -r "$2" restore latest --host haven-bench --path "$TREE" --target "$3") ;;
    list)    CMD=(restic -r "$2" snapshots) ;;
  esac
}
borg_cmd() {
  case "$1" in
    init)    CMD=(borg init -e repokey-blake2 "$2") ;;
    backup)  CMD=(borg create --json --compression lz4 "$2::$4-$5" "$3") ;;
    # borg extracts relative to the cwd; env -C changes directory and execs borg.
    restore) CMD=(env -C "$3" borg extract "$2::tree-3") ;;
    list)    CMD=(borg list "$2") ;;
  esac
}

# What each backup says it did, from its JSON output, into results.tsv.
backup_stats() { # TOOL STEP ROUND
  local out="$LOGS/$1-$2-$3.out"
  python3 - "$1" "$out" <<'PY' | while IFS=$'\t' read -r k v; do record "$1" "$3" "${2}_$k" "$v"; done
import json, sys
tool, path = sys.argv[1], sys.argv[2]
text = open(path).read()
if tool == "haven":
    j = json.loads(text)
    keys = ["entries", "files", "files_read", "files_unchanged", "bytes", "bytes_read",
            "new_chunks", "new_raw_bytes", "new_stored_bytes", "duration_seconds"]
elif tool == "restic":
    j = [json.loads(l) for l in text.splitlines() if l.startswith("{") and '"summary"' in l][-1]
    keys = ["files_new", "files_changed", "files_unmodified", "data_blobs", "tree_blobs",
            "data_added", "total_files_processed", "total_bytes_processed", "total_duration"]
else:
    j = json.loads(text)["archive"]
    j = dict(j["stats"], duration=j["duration"])
    keys = ["nfiles", "original_size", "compressed_size", "deduplicated_size", "duration"]
for k in keys:
    if k in j:
        print(f"{k}\t{j[k]}")
PY
}

# verify TOOL ROUND RESTORED: the restored tree must equal $TREE: the same paths,
# types, sizes, modes, symlink targets (checked here) and contents (diff -r).
# Differences in owner, mtime or hard links are counted and reported, not fatal.
verify() { # TOOL ROUND RESTORED
  local t=$1 r=$2 got=$3
  [ -d "$got" ] || die "$t: restored tree not found at $got"
  if ! diff -r --no-dereference "$TREE" "$got" >"$LOGS/$t-diff-$r.txt" 2>&1; then
    head -n 20 "$LOGS/$t-diff-$r.txt" >&2
    die "$t: RESTORED TREE DIFFERS from $TREE (diff -r; $LOGS/$t-diff-$r.txt)"
  fi
  python3 - "$TREE" "$got" >"$LOGS/$t-meta-$r.txt" <<'PY' || { head -n 20 "$LOGS/$t-meta-$r.txt" >&2; die "$t: RESTORED TREE DIFFERS from $TREE (metadata)"; }
import os, stat, sys
a, b = sys.argv[1], sys.argv[2]
def walk(top):
    out = {}
    for root, dirs, files in os.walk(top):
        for n in dirs + files:
            p = os.path.join(root, n)
            out[os.path.relpath(p, top)] = os.lstat(p)
    out["."] = os.lstat(top)
    return out
A, B = walk(a), walk(b)
fatal, soft = [], {"owner": 0, "mtime": 0, "hardlinks": 0}
for rel in sorted(set(A) | set(B)):
    if rel not in B: fatal.append(f"missing: {rel}"); continue
    if rel not in A: fatal.append(f"extra: {rel}"); continue
    x, y = A[rel], B[rel]
    if stat.S_IFMT(x.st_mode) != stat.S_IFMT(y.st_mode): fatal.append(f"type: {rel}"); continue
    if not stat.S_ISLNK(x.st_mode) and stat.S_IMODE(x.st_mode) != stat.S_IMODE(y.st_mode):
        fatal.append(f"mode {oct(x.st_mode)} != {oct(y.st_mode)}: {rel}")
    if stat.S_ISREG(x.st_mode) and x.st_size != y.st_size: fatal.append(f"size: {rel}")
    if stat.S_ISLNK(x.st_mode) and os.readlink(os.path.join(a, rel)) != os.readlink(os.path.join(b, rel)):
        fatal.append(f"symlink target: {rel}")
    if (x.st_uid, x.st_gid) != (y.st_uid, y.st_gid): soft["owner"] += 1
    if stat.S_ISREG(x.st_mode) and x.st_mtime_ns != y.st_mtime_ns: soft["mtime"] += 1
    if stat.S_ISREG(x.st_mode) and (x.st_nlink > 1) != (y.st_nlink > 1): soft["hardlinks"] += 1
for f in fatal[:20]: print(f)
print(f"entries {len(A)}; fatal {len(fatal)}; owner differs {soft['owner']}; file mtime differs {soft['mtime']}; hard-link state differs {soft['hardlinks']}")
sys.exit(1 if fatal else 0)
PY
  log "$t: restore verified ($(tail -n 1 "$LOGS/$t-meta-$r.txt"))"
}

# Every repository starts with a new, empty client cache.
clear_cache() { # TOOL
  case "$1" in
    haven)  rm -rf "$XDG_CACHE_HOME" ;;
    restic) rm -rf "$RESTIC_CACHE_DIR" ;;
    borg)   rm -rf "$BORG_CACHE_DIR" "$BORG_CONFIG_DIR" ;;
  esac
}

# ---------------------------------------------------------------- one tool, one round
run_tool() { # TOOL ROUND
  local t=$1 r=$2 repo="$D/repo-$1" out="$OUT/$1" b0 b1 b2 b3 b4 b5
  rm -rf "$repo" "$out" "$TREE"
  clear_cache "$t"
  mkdir -p "$out"
  # A fresh tree for every tool: the same content and mtimes, new inodes.
  cp -a --reflink=auto "$SRC" "$TREE"
  "${t}_cmd" init "$repo"
  "${CMD[@]}" >"$LOGS/$t-init-$r.log" 2>&1 </dev/null || { cat "$LOGS/$t-init-$r.log" >&2; die "$t init failed"; }
  b0=$(repo_bytes "$repo")

  # 1. first backup
  warm "$TREE"
  "${t}_cmd" backup "$repo" "$TREE" tree 1; timed "$t" first "$r" "${CMD[@]}"
  backup_stats "$t" first "$r"
  b1=$(repo_bytes "$repo")

  # 2. no-change re-run
  warm "$TREE"
  "${t}_cmd" backup "$repo" "$TREE" tree 2; timed "$t" nochange "$r" "${CMD[@]}"
  backup_stats "$t" nochange "$r"
  b2=$(repo_bytes "$repo")

  # 3. re-run after 1% of the files changed (the same change for every tool)
  local n; n=$(mutate "$TREE" "$CHANGE_SEED" "$D/changes-$t.tsv")
  record "$t" "$r" changed_files "$n"
  warm "$TREE"
  "${t}_cmd" backup "$repo" "$TREE" tree 3; timed "$t" changed "$r" "${CMD[@]}"
  backup_stats "$t" changed "$r"
  b3=$(repo_bytes "$repo")
  if [ "$t" = haven ]; then
    local fr0 fr1
    fr0=$(jget "$LOGS/haven-nochange-$r.out" files_read)
    fr1=$(jget "$LOGS/haven-changed-$r.out" files_read)
    log "haven: files_read $fr0 on the no-change re-run (expect 0), $fr1 after the change ($n files changed)"
  fi

  # 4. restore the latest point to an empty directory, then verify it
  "${t}_cmd" list "$repo"
  "${CMD[@]}" >"$LOGS/$t-list-$r.log" 2>&1 </dev/null || die "$t: listing the points failed"
  warm "$repo"
  "${t}_cmd" restore "$repo" "$out"; timed "$t" restore "$r" "${CMD[@]}"
  verify "$t" "$r" "$out$TREE"
  rm -rf "$out"
  b4=$(repo_bytes "$repo")

  # 5. the second guest: tree2 under a second name, same repository
  warm "$TREE2"
  "${t}_cmd" backup "$repo" "$TREE2" tree2 1; timed "$t" guest "$r" "${CMD[@]}"
  backup_stats "$t" guest "$r"
  b5=$(repo_bytes "$repo")

  # For reference: opening the repository and listing its points.
  "${t}_cmd" list "$repo"; timed "$t" open "$r" "${CMD[@]}"

  record "$t" "$r" repo_init "$b0"
  record "$t" "$r" repo_first "$((b1 - b0))"
  record "$t" "$r" grow_nochange "$((b2 - b1))"
  record "$t" "$r" grow_changed "$((b3 - b2))"
  record "$t" "$r" grow_guest "$((b5 - b4))"
  record "$t" "$r" repo_total "$((b5 - b0))"
  log "$t: repository $(((b1 - b0) / 1048576)) MiB after the first backup, +$(((b2 - b1) / 1024)) KiB no change, +$(((b3 - b2) / 1024)) KiB 1% changed, +$(((b5 - b4) / 1024)) KiB second guest"
  if [ "$KEEP" = 0 ] || [ "$r" != "$ROUNDS" ]; then rm -rf "$repo"; clear_cache "$t"; fi
}

log "tools: ${TOOLS[*]}; $ROUNDS rounds; warm page caches"
for r in $(seq 1 "$ROUNDS"); do
  log "round $r of $ROUNDS"
  for t in "${TOOLS[@]}"; do run_tool "$t" "$r"; done
done
CHANGED_FILES=$(wc -l <"$D/changes-${TOOLS[0]}.tsv")
for t in "${TOOLS[@]}"; do
  cmp -s "$D/changes-${TOOLS[0]}.tsv" "$D/changes-$t.tsv" || die "the 1% change differed between ${TOOLS[0]} and $t"
done

# ---------------------------------------------------------------- report
{
  echo "haven=$([ "${RUN[haven]}" = 1 ] && { "$HAVEN" --version 2>/dev/null | head -1 || echo haven; } || echo skipped)"
  echo "restic=$([ "${RUN[restic]}" = 1 ] && restic version | head -1 || echo skipped)"
  echo "haven_init=$([ "${RUN[haven]}" = 1 ] && "$HAVEN" init --help 2>&1 | grep -oE -- '--(compression-level|chunk-size|pack-size) [A-Z]+=[^ ]+' | sed 's/ [A-Z]*=/=/' | tr '\n' ' ' || true)"
  echo "borg=$([ "${RUN[borg]}" = 1 ] && borg --version || echo skipped)"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') x $(nproc)"
  echo "mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "fs=$(df -T "$W" | awk 'NR == 2 { print $2 }')"
  echo "date=$(date -u +%FT%TZ)"
  echo "rounds=$ROUNDS"
  echo "tools=${TOOLS[*]}"
  echo "tree=$TREE"
  echo "entries=$SRC_ENTRIES"
  echo "files=$SRC_FILES"
  echo "bytes=$SRC_BYTES"
  echo "changed_files=$CHANGED_FILES"
  echo "changed_bytes=$((CHANGED_FILES * APPEND_BYTES))"
  echo "guest_files=$GUEST_CHANGED"
  echo "guest_bytes=$((GUEST_CHANGED * APPEND_BYTES))"
  echo "guest_diff_bytes=$GUEST_DIFF_BYTES"
} >"$D/env.info"

python3 - "$RAW" "$D/env.info" >"$D/results.md" <<'PY'
import statistics, sys
raw, env_path = sys.argv[1:3]
env = dict(l.rstrip("\n").split("=", 1) for l in open(env_path) if "=" in l)
tools = env["tools"].split()
V = {}
for line in open(raw):
    t, r, k, v = line.rstrip("\n").split("\t")
    V.setdefault((t, k), []).append(float(v))
MiB = 1048576.0
cols = ["haven", "restic", "borg"]
STEPS = [("first", "1. first backup"), ("nochange", "2. no-change re-run"),
         ("changed", "3. re-run, 1% of files changed"), ("restore", "4. restore latest"),
         ("guest", "5. second guest backup")]

def med(t, k):
    v = V.get((t, k))
    return statistics.median(v) if v else None

def fmt(v, nd=1):
    return "-" if v is None else f"{v:,.{nd}f}"

def tratio(h, p):   # peer time / haven time
    if h is None or p is None or h <= 0 or p <= 0:
        return "-"
    r = p / h
    return f"{r:.2f}x faster" if r >= 1 else f"{1 / r:.2f}x slower"

def pratio(h, p):   # peer / haven
    if h is None or p is None or h == 0:
        return "-"
    return f"{p / h:.2f}x"

def peak(t, step=None):
    v = [x for (tt, k), xs in V.items() if tt == t and k.startswith("rss_")
         and (step is None or k == "rss_" + step) and not k.endswith("_open") for x in xs]
    return max(v) / 1024 if v else None

rows = []
def row(label, vals, ratio, nd=1):
    rows.append(f"| {label} | " + " | ".join([fmt(vals[c], nd) for c in cols] +
                [ratio(vals["haven"], vals[p]) for p in ("restic", "borg")]) + " |")

for s, label in STEPS:
    row(f"{label} (s)", {c: med(c, "time_" + s) for c in cols}, tratio, 2)
row("(reference) open repository + list points (s)", {c: med(c, "time_open") for c in cols}, tratio, 2)
row("peak RSS, all steps (MiB)", {c: peak(c) for c in cols}, pratio, 0)
for s, label in STEPS:
    row(f"  peak RSS, {label[3:]} (MiB)", {c: peak(c, s) for c in cols}, pratio, 0)
def mib(t, k):
    v = med(t, k)
    return None if v is None else v / MiB
row("repository size after the first backup (MiB)", {c: mib(c, "repo_first") for c in cols}, pratio)
row("repository growth, no-change re-run (MiB)", {c: mib(c, "grow_nochange") for c in cols}, pratio, 3)
row("repository growth, 1% changed (MiB)", {c: mib(c, "grow_changed") for c in cols}, pratio, 2)
row("repository growth, second guest (MiB)", {c: mib(c, "grow_guest") for c in cols}, pratio, 2)
row("repository size at the end (MiB)", {c: mib(c, "repo_total") for c in cols}, pratio)

print("# File backup benchmark\n")
print(f"Tree: `{env['tree']}`, {int(env['entries']):,} entries ({int(env['files']):,} regular files), "
      f"{int(env['bytes']) / 1e9:.2f} GB: the files of bench/run.sh's dataset image.  ")
print(f"Step 3 appends 4 KiB of random bytes to {env['changed_files']} files (1%, seed 42); the second guest "
      f"(`tree2`) is the tree with another {env['guest_files']} files changed the same way (seed 7).  ")
print(f"Settings: haven `init` defaults (encrypted; {env.get('haven_init', '').strip() or '-'}); restic `init --repository-version 2`, `backup --compression auto` "
      f"(its defaults); borg `init -e repokey-blake2`, `create --compression lz4` (its default). All encrypted.  ")
print(f"Warm page caches (the input is read once before every step, never dropped).  ")
print(f"Machine: {env['cpu']}, {env['mem']}, {env['fs']}; {env['date']}.  ")
print(f"Versions: haven: {env['haven']}; {env['restic']}; {env['borg']}.  ")
print(f"{env['rounds']} rounds, each with new repositories; medians (peak RSS: the maximum over the rounds).\n")
print("| step | haven | restic | borg | restic vs haven | borg vs haven |")
print("|---|---:|---:|---:|---:|---:|")
print("\n".join(rows))
print()
print("Ratios are peer / haven throughout: time rows say how many times faster (or slower) Haven is; "
      "for memory and size rows a ratio above 1 means Haven uses less.\n")

# Per-step detail: CPU and spread.
print("| tool | step | wall median (s) | min–max | CPU median (s) | load before |")
print("|---|---|---:|---:|---:|---:|")
for c in cols:
    if c not in tools:
        continue
    for s, label in STEPS + [("open", "(reference) open + list")]:
        w = V.get((c, "time_" + s))
        if not w:
            continue
        print(f"| {c} | {label} | {statistics.median(w):.2f} | {min(w):.2f}–{max(w):.2f} | "
              f"{fmt(med(c, 'cpu_' + s), 2)} | {fmt(med(c, 'load_' + s), 2)} |")
print()

if "haven" in tools:
    print("| haven backup (JSON, median) | files_read | files_unchanged | bytes_read (MB) | new_stored_bytes (MB) | duration_seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for s, label in STEPS:
        if s == "restore":
            continue
        g = lambda k, d=1: med("haven", f"{s}_{k}")
        mb = lambda v: "-" if v is None else f"{v / 1e6:.2f}"
        print(f"| {label} | {fmt(g('files_read'), 0)} | {fmt(g('files_unchanged'), 0)} | {mb(g('bytes_read'))} | "
              f"{mb(g('new_stored_bytes'))} | {fmt(g('duration_seconds'), 2)} |")
    print()

print("| target | measured | met |")
print("|---|---|---|")
def target(label, h, p, need, kind):
    if h is None or p is None:
        print(f"| {label} | not measured | - |")
        return
    if kind == "time":
        r = p / h
        print(f"| {label} | restic {p:.2f} s / haven {h:.2f} s = {r:.2f}x | {'yes' if r >= need else '**no**'} |")
    else:
        print(f"| {label} | haven {h:.0f} MiB, restic {p:.0f} MiB | {'yes' if h <= p else '**no**'} |")
for s, need, label in [("first", 2, "first backup ≥ 2x faster than restic"),
                       ("nochange", 3, "no-change re-run ≥ 3x faster than restic"),
                       ("changed", 2, "1%-changed re-run ≥ 2x faster than restic"),
                       ("restore", 1.5, "restore ≥ 1.5x faster than restic")]:
    target(label, med("haven", "time_" + s), med("restic", "time_" + s), need, "time")
target("Haven peak RSS ≤ restic's (all steps)", peak("haven"), peak("restic"), None, "rss")
g = med("haven", "grow_guest")
if g is None:
    print("| second guest adds only its differences | not measured | - |")
else:
    diff, first = int(env["guest_diff_bytes"]), med("haven", "repo_first")
    limit = diff + 0.01 * first
    others = ", ".join(f"{c} {med(c, 'grow_guest') / MiB:.2f} MiB" for c in ("restic", "borg") if med(c, "grow_guest") is not None)
    print(f"| second guest adds only its differences (growth ≤ the differing files' full size, "
          f"{diff / MiB:.2f} MiB, + 1% of the first backup for metadata, {0.01 * first / MiB:.2f} MiB) | "
          f"haven +{g / MiB:.2f} MiB ({100 * g / first:.2f}% of the first backup{'; ' + others if others else ''}) | "
          f"{'yes' if g <= limit else '**no**'} |")
PY

echo
cat "$D/results.md"
echo
log "results: $D/results.md (raw: $RAW, logs: $LOGS)"
