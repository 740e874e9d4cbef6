#!/usr/bin/env bash
# Haven benchmark: image backup vs restic 0.14 and borg 1.2 on the same data.
# See bench/README.md.  Usage: bench/run.sh [--only TOOLS] [--skip TOOLS] [--keep]
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/run.sh [options]

  --only TOOLS   run only these tools (comma separated: haven,restic,borg)
  --skip TOOLS   skip these tools (comma separated)
  --keep         keep repositories, cur.img and restored files after the run
  --dataset-only build (or check) the dataset and exit
  -h, --help     this help

Environment:
  BENCH_DIR  work dir (default /var/tmp/haven-bench); the dataset is kept there
             and reused while its stamp file matches
  HAVEN      haven binary (default $PWD/build/haven)
USAGE
}

ALL_TOOLS=(haven restic borg)
declare -A RUN=([haven]=1 [restic]=1 [borg]=1)
KEEP=0
DATASET_ONLY=0

set_tools() { # $1 = value (0/1) for listed tools, $2 = comma list
  local t
  IFS=',' read -r -a _ts <<<"$2"
  for t in "${_ts[@]}"; do
    case "$t" in haven|restic|borg) RUN[$t]=$1 ;; *) echo "unknown tool: $t" >&2; exit 2 ;; esac
  done
}

while [ $# -gt 0 ]; do
  case "$1" in
    --only) [ $# -ge 2 ] || { usage >&2; exit 2; }
            RUN=([haven]=0 [restic]=0 [borg]=0); set_tools 1 "$2"; shift 2 ;;
    --only=*) RUN=([haven]=0 [restic]=0 [borg]=0); set_tools 1 "${1#*=}"; shift ;;
    --skip) [ $# -ge 2 ] || { usage >&2; exit 2; }; set_tools 0 "$2"; shift 2 ;;
    --skip=*) set_tools 0 "${1#*=}"; shift ;;
    --keep) KEEP=1; shift ;;
    --dataset-only) DATASET_ONLY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

TOOLS=()
for t in "${ALL_TOOLS[@]}"; do [ "${RUN[$t]}" = 1 ] && TOOLS+=("$t"); done
if [ "$DATASET_ONLY" = 0 ] && [ ${#TOOLS[@]} -eq 0 ]; then
  echo "no tools selected" >&2; exit 2
fi

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- parameters
W=${BENCH_DIR:-/var/tmp/haven-bench}
HAVEN=${HAVEN:-$PWD/build/haven}
IMG_SIZE=$((3 * 1024 * 1024 * 1024))   # 3 GiB
BLOCK=65536                            # 64 KiB writes
NIGHT_SEED=42 NIGHT_WRITES=1000        # "next night": 1000 x 64 KiB
CLONE_SEED=7 CLONE_WRITES=20           # clone: 20 x 64 KiB
STAGE_TARGET=1800000000                # aim for ~1.8 GB of files
STAGE_MIN=1700000000                   # stop adding dirs once >= 1.7 GB
STAGE_CAP=1900000000                   # copy a dir only partially if it would exceed this
CANDIDATES=(/usr/share/doc /usr/share/locale /usr/lib/x86_64-linux-gnu /usr/lib/gcc
            /usr/share/i18n /usr/lib/python3* /usr/share/perl* /usr/libexec /usr/include
            /usr/share/zoneinfo /usr/share/man /usr/bin /usr/sbin /usr/lib/jvm /usr/lib/llvm-*)
STAMP_TEXT="haven-bench dataset v1: ext4 size=$IMG_SIZE block=4096 stage_target=$STAGE_TARGET stage_min=$STAGE_MIN night=$NIGHT_SEED/$NIGHT_WRITES clone=$CLONE_SEED/$CLONE_WRITES write=$BLOCK"

export HAVEN_PASSWORD=haven-bench-password
export RESTIC_PASSWORD=haven-bench-password
export BORG_PASSPHRASE=haven-bench-password
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export BORG_CHECK_I_KNOW_WHAT_I_AM_DOING=NO
export BORG_DELETE_I_KNOW_WHAT_I_AM_DOING=NO

# ---------------------------------------------------------------- prerequisites
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_pkg mke2fs e2fsprogs
need_pkg /usr/bin/time time
need_pkg python3 python3
need_pkg cmp diffutils
[ "${RUN[restic]}" = 1 ] && [ "$DATASET_ONLY" = 0 ] && need_pkg restic restic
[ "${RUN[borg]}" = 1 ] && [ "$DATASET_ONLY" = 0 ] && need_pkg borg borgbackup
python3 -c 'import random; random.randbytes' 2>/dev/null \
  || die "python3 >= 3.9 needed (random.randbytes)"

if [ "${RUN[haven]}" = 1 ] && [ "$DATASET_ONLY" = 0 ]; then
  if [ ! -x "$HAVEN" ]; then
    die "haven binary not found at $HAVEN (build it first, set HAVEN=/path/to/haven, or use --skip haven)"
  fi
  HAVEN=$(readlink -f "$HAVEN")
fi

mkdir -p "$W"
W=$(cd "$W" && pwd -P)   # absolute, symlink-free: restic/borg store this path


dir_bytes() { { du -sb "$1" 2>/dev/null || true; } | cut -f1; }

# Copy the files of $1 (sorted by path) into the staging dir until $2 bytes are used.
partial_copy() { # dir budget
  python3 - "$1" "$2" "$W/stage.list" <<'PY'
import os, sys
top, budget, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
used = 0
with open(out, "wb") as f:
    for root, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            p = os.path.join(root, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if used + st.st_size > budget:
                continue
            used += st.st_size
            f.write(p.encode("utf-8", "surrogateescape") + b"\0")
PY
  tar -cf - --null --no-recursion -T "$W/stage.list" 2>/dev/null \
    | tar -xpf - -C "$W/stage" 2>/dev/null || true
  rm -f "$W/stage.list"
}

make_dataset() {
  log "building dataset in $W (one-time; reused while $W/dataset.stamp matches)"
  rm -rf "$W/stage" "$W/image.img" "$W/next.img" "$W/clone.img" "$W/dataset.stamp" "$W/dataset.info"
  mkdir -p "$W/stage"
  local staged=0 d sz room used=()
  for d in "${CANDIDATES[@]}"; do
    [ "$staged" -ge "$STAGE_MIN" ] && break
    [ -d "$d" ] && [ ! -L "$d" ] || continue
    sz=$(dir_bytes "$d")
    room=$((STAGE_TARGET - staged))
    if [ $((staged + sz)) -le "$STAGE_CAP" ]; then
      log "  staging $d ($((sz / 1000000)) MB)"
      # tar keeps the full path (stage/usr/...), symlinks (dangling ones too),
      # hard links and modes; unreadable files are reported and skipped.
      { tar -C / -cf - "${d#/}" 2>"$W/stage.err" || true; } \
        | { tar -C "$W/stage" -xpf - 2>>"$W/stage.err" || true; }
      [ -s "$W/stage.err" ] && log "  (some files of $d could not be copied: $(head -n 1 "$W/stage.err"))"
    else
      log "  staging part of $d (~$((room / 1000000)) MB of $((sz / 1000000)) MB)"
      partial_copy "$d" "$room"
    fi
    used+=("$d")
    staged=$(dir_bytes "$W/stage")
    log "  staged total: $((staged / 1000000)) MB"
  done
  rm -f "$W/stage.err"
  [ "$staged" -ge 500000000 ] || die "only $staged bytes staged; not enough system files"
  local nfiles; nfiles=$(find "$W/stage" | wc -l)

  log "mke2fs: 3 GiB ext4 image from $((staged / 1000000)) MB, $nfiles entries"
  # Fixed UUID / hash seed / time so a rebuilt image is as reproducible as possible.
  E2FSPROGS_FAKE_TIME=1700000000 mke2fs -F -q -t ext4 -b 4096 \
    -U 5a1e7c1e-4a7e-4b3e-9a5e-000000000001 -E hash_seed=5a1e7c1e-4a7e-4b3e-9a5e-000000000002 \
    -d "$W/stage" "$W/image.img.tmp" 3G >"$W/mke2fs.log" 2>&1 \
    || { cat "$W/mke2fs.log" >&2; die "mke2fs failed"; }
  rm -f "$W/mke2fs.log"
  [ "$(stat -c %s "$W/image.img.tmp")" = "$IMG_SIZE" ] || die "unexpected image size"
  mv "$W/image.img.tmp" "$W/image.img"
  rm -rf "$W/stage"

  log "next-night image: $NIGHT_WRITES x 64 KiB random writes (seed $NIGHT_SEED)"
  cp --sparse=always "$W/image.img" "$W/next.img.tmp"
  randwrite "$W/next.img.tmp" "$NIGHT_SEED" "$NIGHT_WRITES"
  mv "$W/next.img.tmp" "$W/next.img"

  log "clone image: $CLONE_WRITES x 64 KiB random writes (seed $CLONE_SEED)"
  cp --sparse=always "$W/image.img" "$W/clone.img.tmp"
  randwrite "$W/clone.img.tmp" "$CLONE_SEED" "$CLONE_WRITES"
  mv "$W/clone.img.tmp" "$W/clone.img"

  {
    echo "staged_bytes=$staged"
    echo "staged_entries=$nfiles"
    echo "staged_dirs=${used[*]}"
    echo "image_allocated_bytes=$(( $(stat -c %b "$W/image.img") * $(stat -c %B "$W/image.img") ))"
    echo "created=$(date -u +%FT%TZ)"
  } >"$W/dataset.info"
  echo "$STAMP_TEXT" >"$W/dataset.stamp"
}

if [ -f "$W/dataset.stamp" ] && [ "$(cat "$W/dataset.stamp")" = "$STAMP_TEXT" ] \
   && [ -f "$W/image.img" ] && [ -f "$W/next.img" ] && [ -f "$W/clone.img" ] \
   && [ "$(stat -c %s "$W/image.img")" = "$IMG_SIZE" ]; then
  log "reusing dataset in $W ($(grep staged_bytes "$W/dataset.info" 2>/dev/null | cut -d= -f2) bytes staged)"
else
  make_dataset
fi
[ "$DATASET_ONLY" = 1 ] && { cat "$W/dataset.info"; exit 0; }

# ---------------------------------------------------------------- measurement helpers
RESULTS="$W/results.tsv"   # tool <tab> key <tab> value
LOGS="$W/logs"
rm -rf "$LOGS"; mkdir -p "$LOGS"
: >"$RESULTS"
# Keep tool caches inside the work dir and fresh for every run.
export RESTIC_CACHE_DIR="$W/cache/restic"
export BORG_CACHE_DIR="$W/cache/borg"
export BORG_CONFIG_DIR="$W/cache/borg-config"
export XDG_CACHE_HOME="$W/cache/xdg"
rm -rf "$W/cache"; mkdir -p "$W/cache"

record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RESULTS"; }
repo_bytes() { du -sb "$1" | cut -f1; }
warm() { cat "$@" >/dev/null; }

# timed TOOL STEP cmd... : runs cmd under /usr/bin/time, output to $LOGS/TOOL-STEP.log
timed() {
  local tool=$1 step=$2; shift 2
  local tf="$LOGS/$tool-$step.time" lf="$LOGS/$tool-$step.log"
  sync
  log "$tool: $step"
  if ! /usr/bin/time -f '%e %M' -o "$tf" "$@" >"$lf" 2>&1 </dev/null; then
    echo "---- $lf (last 30 lines) ----" >&2; tail -n 30 "$lf" >&2
    [ -f "$tf" ] && cat "$tf" >&2
    die "$tool $step failed"
  fi
  local secs rss
  read -r secs rss < <(tail -n 1 "$tf")
  record "$tool" "time_$step" "$secs"
  record "$tool" "rss_$step" "$rss"
  log "$tool: $step took ${secs}s, peak RSS $((rss / 1024)) MiB"
}

# ---------------------------------------------------------------- per-tool commands
# Each tool defines <tool>_cmd ACTION ... which sets the array CMD (a real command,
# so /usr/bin/time measures the tool process itself), and <tool>_restored OUTDIR
# which prints where the restored image ends up.
#   ACTION: init REPO | backup REPO FILE SERIES INDEX | restore REPO OUTDIR | list REPO
haven_cmd() {
  case "$1" in
    init)    CMD=("$HAVEN" -r "$2" init) ;;
    backup)  CMD=("$HAVEN" -r "$2" backup image "$3" --name "$4" --json) ;;
    restore) CMD=("$HAVEN" -r "$2" restore image cur:latest --to "$3/cur.img") ;;
    list)    CMD=("$HAVEN" -r "$2" snapshots) ;;
  esac
}
haven_restored() { echo "$1/cur.img"; }

restic_cmd() {
  case "$1" in
    init)    CMD=(restic -r "$2" init --repository-version 2) ;;
    backup)  CMD=(restic -r "$2" backup --compression auto --host haven-bench "$3") ;;
    restore) CMD=(restic -r "$2" restore latest --host haven-bench --path "$W/cur.img" --target "$3") ;;
    list)    CMD=(restic -r "$2" snapshots) ;;
  esac
}
restic_restored() { echo "$1$W/cur.img"; }

borg_cmd() {
  case "$1" in
    init)    CMD=(borg init -e repokey-blake2 "$2") ;;
    backup)  CMD=(borg create --compression zstd,1 "$2::$4-$5" "$3") ;;
    # borg extracts relative to the cwd; env -C changes directory and execs borg.
    restore) CMD=(env -C "$3" borg extract --sparse "$2::cur-2") ;;
    list)    CMD=(borg list "$2") ;;
  esac
}
borg_restored() { echo "$1$W/cur.img"; }

# untimed TOOL NAME ACTION ARGS...
untimed() {
  local t=$1 name=$2; shift 2
  "${t}_cmd" "$@"
  "${CMD[@]}" >"$LOGS/$t-$name.log" 2>&1 </dev/null \
    || { tail -n 30 "$LOGS/$t-$name.log" >&2; die "$t $name failed"; }
}
# step TOOL STEP ACTION ARGS...
step() {
  local t=$1 s=$2; shift 2
  "${t}_cmd" "$@"
  timed "$t" "$s" "${CMD[@]}"
}

NIGHT_CHANGED=$((NIGHT_WRITES * BLOCK))
CLONE_CHANGED=$((CLONE_WRITES * BLOCK))

run_tool() {
  local t=$1 repo="$W/repo-$1" out="$W/restore-$1" b0 b1 b2 b3
  rm -rf "$repo" "$out" "$W/cur.img"
  mkdir -p "$out"
  untimed "$t" init init "$repo"
  b0=$(repo_bytes "$repo")

  # 1. first backup: cur.img == image.img
  cp --sparse=always "$W/image.img" "$W/cur.img"
  warm "$W/cur.img"
  step "$t" first backup "$repo" "$W/cur.img" cur 1
  b1=$(repo_bytes "$repo")

  # 2. next night: same path, changed content
  rm -f "$W/cur.img"
  cp --sparse=always "$W/next.img" "$W/cur.img"
  warm "$W/cur.img"
  step "$t" night backup "$repo" "$W/cur.img" cur 2
  b2=$(repo_bytes "$repo")
  untimed "$t" snapshots list "$repo"

  # 3. restore the latest recovery point and verify it
  find "$repo" -type f -exec cat {} + >/dev/null
  step "$t" restore restore "$repo" "$out"
  local restored; restored=$("${t}_restored" "$out")
  [ -f "$restored" ] || die "$t: restored file not found at $restored"
  if ! cmp "$restored" "$W/next.img"; then
    die "$t: RESTORED IMAGE DIFFERS FROM next.img ($restored)"
  fi
  log "$t: restore verified (cmp identical to next.img)"
  rm -rf "$out"

  # 4. clone image: different name/path, should dedup against the series
  warm "$W/clone.img"
  step "$t" clone backup "$repo" "$W/clone.img" clone 1
  b3=$(repo_bytes "$repo")

  record "$t" repo_first "$((b1 - b0))"
  record "$t" grow_night "$((b2 - b1))"
  record "$t" grow_clone "$((b3 - b2))"
  log "$t: repo first $(((b1 - b0) / 1048576)) MiB, +$(((b2 - b1) / 1048576)) MiB night, +$(((b3 - b2) / 1048576)) MiB clone"

  if [ "$KEEP" = 0 ]; then rm -rf "$repo" "$W/cur.img"; fi
}

for t in "${TOOLS[@]}"; do run_tool "$t"; done
[ "$KEEP" = 0 ] && rm -rf "$W/cache" "$W/cur.img"

# ---------------------------------------------------------------- report
{
  echo "haven=$( [ "${RUN[haven]}" = 1 ] && { "$HAVEN" --version 2>/dev/null | head -1 || echo "$HAVEN"; } || echo skipped)"
  echo "restic=$( [ "${RUN[restic]}" = 1 ] && restic version | head -1 || echo skipped)"
  echo "borg=$( [ "${RUN[borg]}" = 1 ] && borg --version || echo skipped)"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') x $(nproc)"
  echo "mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "date=$(date -u +%FT%TZ)"
} >"$W/env.info"

python3 - "$RESULTS" "$W/dataset.info" "$W/env.info" "$NIGHT_CHANGED" "$CLONE_CHANGED" "${TOOLS[*]}" \
  >"$W/results.md" <<'PY'
import sys
res_path, ds_path, env_path, night_changed, clone_changed, tools = sys.argv[1:7]
night_changed, clone_changed = int(night_changed), int(clone_changed)
tools = tools.split()
R = {}
for line in open(res_path):
    t, k, v = line.rstrip("\n").split("\t")
    R[(t, k)] = float(v)
ds = dict(l.strip().split("=", 1) for l in open(ds_path) if "=" in l)
env = dict(l.strip().split("=", 1) for l in open(env_path) if "=" in l)
MiB = 1048576.0
cols = ["haven", "restic", "borg"]

def get(t, k):
    return R.get((t, k))

def peak(t):
    v = [R[(t, k)] for (tt, k) in R if tt == t and k.startswith("rss_")]
    return max(v) / 1024 if v else None

def fmt(v, nd=1):
    return "-" if v is None else f"{v:.{nd}f}"

def time_ratio(h, p):           # peer/haven: how much faster haven is
    if h is None or p is None or h <= 0 or p <= 0:
        return "-"
    r = p / h
    return f"{r:.1f}x faster" if r >= 1 else f"{1 / r:.1f}x slower"

def plain_ratio(h, p):          # haven/peer
    if h is None or p is None or p == 0:
        return "-"
    return f"{h / p:.2f}x"

rows = []
def row(label, vals, ratio, nd=1):
    cells = [fmt(vals[c], nd) for c in cols]
    rr = [ratio(vals["haven"], vals[p]) for p in ("restic", "borg")]
    rows.append(f"| {label} | " + " | ".join(cells + rr) + " |")

for key, label in [("first", "first backup (s)"), ("night", "next-night backup (s)"),
                   ("restore", "restore latest (s)"), ("clone", "clone backup (s)")]:
    row(label, {c: get(c, "time_" + key) for c in cols}, time_ratio)
row("peak RSS (MiB)", {c: peak(c) for c in cols}, plain_ratio, 0)

def mib(t, k):
    v = get(t, k)
    return None if v is None else v / MiB
row("repo size after first backup (MiB)", {c: mib(c, "repo_first") for c in cols}, plain_ratio)
row("repo growth, next night (MiB)", {c: mib(c, "grow_night") for c in cols}, plain_ratio)
row("  growth / changed bytes", {c: (None if get(c, "grow_night") is None else get(c, "grow_night") / night_changed) for c in cols}, plain_ratio, 2)
row("repo growth, clone (MiB)", {c: mib(c, "grow_clone") for c in cols}, plain_ratio)
row("  growth / changed bytes", {c: (None if get(c, "grow_clone") is None else get(c, "grow_clone") / clone_changed) for c in cols}, plain_ratio, 2)
sel = lambda v: {c: (v if c in tools else None) for c in cols}
row("changed next night (MiB, reference)", sel(night_changed / MiB), lambda h, p: "-", 2)
row("changed in clone (MiB, reference)", sel(clone_changed / MiB), lambda h, p: "-", 2)

print("# Haven benchmark results\n")
print(f"Dataset: 3 GiB ext4 image, {int(ds.get('staged_bytes', 0)) / 1e9:.2f} GB of system files "
      f"({ds.get('staged_entries', '?')} entries; {ds.get('staged_dirs', '')}).  ")
print(f"Next night: {night_changed // 65536} x 64 KiB random writes; clone: {clone_changed // 65536} x 64 KiB.  ")
print(f"Machine: {env.get('cpu', '?')}, {env.get('mem', '?')}; {env.get('date', '')}.  ")
print(f"Versions: haven: {env.get('haven')}; {env.get('restic')}; {env.get('borg')}.\n")
print("| step | haven | restic | borg | haven/restic | haven/borg |")
print("|---|---:|---:|---:|---:|---:|")
print("\n".join(rows))
print()
print("Time ratios are peer time / haven time (\"Nx faster\" = haven is N times faster). "
      "Memory and size ratios are haven / peer (lower is better for haven).")
PY

echo
cat "$W/results.md"
echo
log "results saved to $W/results.md (raw: $W/results.tsv, logs: $W/logs)"
