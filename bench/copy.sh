#!/usr/bin/env bash
# Off-site copies (issue 19): `haven copy` of N nightly points of a VM image
# into an empty repository, then of one more night, side by side with
# `restic copy` between two restic repositories of the same data: wall time
# and bytes written into the target, as ratios. See bench/README.md
# ("Copy benchmark").
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/copy.sh [options]

  --rounds N        interleaved rounds, each into new target repositories;
                    medians and spreads over them (default 3)
  --nights N        nightly points in the first copy (default 7); one more
                    night is backed up and copied after it
  --image-mib N     size of the VM disk image (ext4) in MiB (default 1024)
  --data-mib N      MiB of real files in it: a copy of /etc, then this
                    machine's /usr libraries and /usr/share (default 400)
  --change-pct N    data the "guest" changes each night, in percent of
                    --data-mib (default 3)
  --skip-restic     Haven only
  --keep            keep the image, the repositories and the logs
  -h, --help        this help

Environment:
  BENCH_DIR  work dir (default /var/tmp/haven-bench); the base image is kept in
             BENCH_DIR/copy-base.img while its parameters match, everything
             else goes to BENCH_DIR/copy/, wiped at the start
  HAVEN      haven binary (default $PWD/build/haven)

Run as root (the image is loop-mounted to change it like a guest would).
USAGE
}

die_usage() { echo "bench/copy.sh: $*" >&2; exit 2; }
log() { printf '[copy %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[copy] ERROR: %s\n' "$*" >&2; exit 1; }

ROUNDS=3
NIGHTS=7
IMAGE_MIB=1024
DATA_MIB=400
CHANGE_PCT=3
RESTIC=1
KEEP=0
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds|--nights|--image-mib|--data-mib|--change-pct)
      [ $# -ge 2 ] || die_usage "$1 needs a value (see --help)"
      set -- "$1=$2" "${@:3}" ;;
    --rounds=*) ROUNDS=${1#*=}; shift ;;
    --nights=*) NIGHTS=${1#*=}; shift ;;
    --image-mib=*) IMAGE_MIB=${1#*=}; shift ;;
    --data-mib=*) DATA_MIB=${1#*=}; shift ;;
    --change-pct=*) CHANGE_PCT=${1#*=}; shift ;;
    --skip-restic) RESTIC=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die_usage "unknown argument '$1' (see --help)" ;;
  esac
done
{ is_uint "$ROUNDS" && [ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 20 ]; } ||
  die_usage "--rounds must be an integer in 1..20, not '$ROUNDS'"
{ is_uint "$NIGHTS" && [ "$NIGHTS" -ge 1 ] && [ "$NIGHTS" -le 30 ]; } ||
  die_usage "--nights must be an integer in 1..30, not '$NIGHTS'"
{ is_uint "$IMAGE_MIB" && [ "$IMAGE_MIB" -ge 128 ] && [ "$IMAGE_MIB" -le 16384 ]; } ||
  die_usage "--image-mib must be an integer in 128..16384, not '$IMAGE_MIB'"
{ is_uint "$DATA_MIB" && [ "$DATA_MIB" -ge 16 ] && [ "$DATA_MIB" -le $((IMAGE_MIB * 6 / 10)) ]; } ||
  die_usage "--data-mib must be an integer in 16..$((IMAGE_MIB * 6 / 10)) (60% of the image, room for the nights), not '$DATA_MIB'"
{ is_uint "$CHANGE_PCT" && [ "$CHANGE_PCT" -ge 1 ] && [ "$CHANGE_PCT" -le 20 ]; } ||
  die_usage "--change-pct must be an integer in 1..20, not '$CHANGE_PCT'"
[ "$(id -u)" = 0 ] || die_usage "run as root: the image is loop-mounted to change it each night"
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
HAVEN=${HAVEN:-$PWD/build/haven}
[ -x "$HAVEN" ] || die_usage "haven binary not found at $HAVEN (build it or set HAVEN=/path/to/haven)"
HAVEN=$(readlink -f "$HAVEN")
"$HAVEN" copy --help >/dev/null 2>&1 || die_usage "$HAVEN has no 'copy' command (docs/copies.md)"

# ---------------------------------------------------------------- parameters
W=${BENCH_DIR:-/var/tmp/haven-bench}
export LC_ALL=C TZ=UTC
export HAVEN_PASSWORD=haven-bench-password        # both Haven repositories
export HAVEN_FROM_PASSWORD=$HAVEN_PASSWORD HAVEN_TO_PASSWORD=$HAVEN_PASSWORD
export RESTIC_PASSWORD=haven-bench-password RESTIC_FROM_PASSWORD=haven-bench-password
IMG_SIZE=$((IMAGE_MIB << 20))
BLOCK=65536
. "$SCRIPT_DIR/lib.sh"
need_pkg /usr/bin/time time
need_pkg python3 python3
need_pkg cmp diffutils
need_pkg flock util-linux
need_pkg mke2fs e2fsprogs
if [ "$RESTIC" = 1 ]; then need_pkg restic restic; fi

mkdir -p "$W"
W=$(cd "$W" && pwd -P)
exec 9>"$W/copy.lock"
flock -n 9 || die "another bench/copy.sh is running on $W"

D=$W/copy
BASE=$W/copy-base.img
IMG=$D/vm.img              # the VM's disk: the same path every night, both tools
MNT=$D/mnt
SRC=$D/haven-src DST=$D/haven-dst
RSRC=$D/restic-src RDST=$D/restic-dst
LOGS=$D/logs
RAW=$D/raw.tsv             # tool <tab> step <tab> round <tab> key <tab> value
rm -rf "$D"
mkdir -p "$D/bin" "$LOGS" "$MNT"
: >"$RAW"
cp "$HAVEN" "$D/bin/haven"   # a rebuild during the run changes nothing
log "haven: $HAVEN (sha256 $(sha256sum "$HAVEN" | cut -c1-16))"
HAVEN=$D/bin/haven
export RESTIC_CACHE_DIR=$D/cache/restic XDG_CACHE_HOME=$D/cache/xdg

cleanup() {
  local rc=$?
  set +e
  mountpoint -q "$MNT" && umount "$MNT"
  if [ "$rc" != 0 ]; then
    log "failed (exit $rc): keeping $D for inspection"
  elif [ "$KEEP" = 0 ]; then
    rm -rf "$IMG" "$SRC" "$DST" "$RSRC" "$RDST" "$D/cache" "$D/out" "$MNT" "${D:?}/bin"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RAW"; }
warm() { find "$@" -type f -exec cat {} + >/dev/null; }
load1() { cut -d' ' -f1 /proc/loadavg; }
bytes_of() { du -sb "$1" | cut -f1; }
count_files() { find "$1" -type f | wc -l; }

# ---------------------------------------------------------------- the base image
# A copy of /etc, then this machine's libraries and /usr/share (as
# real_files in tests/integration/lib.sh), on a fresh ext4 file system.
STAMP_TEXT="image_mib=$IMAGE_MIB data_mib=$DATA_MIB v1"
if [ "$(cat "$BASE.stamp" 2>/dev/null)" != "$STAMP_TEXT" ] || [ ! -f "$BASE" ]; then
  log "base image: $IMAGE_MIB MiB ext4 with $DATA_MIB MiB of /etc and /usr files"
  rm -f "$BASE" "$BASE.stamp"
  STAGE=$W/copy-stage
  rm -rf "$STAGE"
  mkdir -p "$STAGE"
  cp -a /etc "$STAGE/etc" 2>/dev/null || true
  python3 - "$STAGE" $((DATA_MIB << 20)) <<'PY'
import os, shutil, sys
dst, limit = sys.argv[1], int(sys.argv[2])
total = 0
for root, dirs, files in os.walk(dst):
    total += sum(os.path.getsize(os.path.join(root, f)) for f in files
                 if os.path.isfile(os.path.join(root, f)) and not os.path.islink(os.path.join(root, f)))
for top in ("/usr/lib/x86_64-linux-gnu", "/usr/share"):
    for root, dirs, files in os.walk(top):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            if not os.path.isfile(p) or os.path.islink(p):
                continue
            t = os.path.join(dst, p.lstrip("/"))
            os.makedirs(os.path.dirname(t), exist_ok=True)
            try:
                shutil.copy2(p, t)
            except OSError:
                continue
            total += os.path.getsize(t)
            if total >= limit:
                sys.exit(0)
sys.exit("not enough files under /usr")
PY
  E2FSPROGS_FAKE_TIME=1700000000 mke2fs -F -q -t ext4 -b 4096 \
    -U 5a1e7c1e-4a7e-4b3e-9a5e-000000000019 -E hash_seed=5a1e7c1e-4a7e-4b3e-9a5e-000000000020 \
    -d "$STAGE" "$BASE.tmp" "${IMAGE_MIB}M" >"$W/copy-mke2fs.log" 2>&1 ||
    { cat "$W/copy-mke2fs.log" >&2; die "mke2fs failed"; }
  rm -rf "$STAGE" "$W/copy-mke2fs.log"
  mv "$BASE.tmp" "$BASE"
  echo "$STAMP_TEXT" >"$BASE.stamp"
fi
cp --sparse=always "$BASE" "$IMG"

# ---------------------------------------------------------------- a night in the guest
# night N: mounts the image and changes CHANGE_PCT % of DATA_MIB like a guest:
# 10% deleted files, 30% rewritten ranges inside existing files, 10% appended
# log lines, 30% new copies of real files (/usr/bin, /usr/lib/python3, ...;
# each taken once, in a fixed shuffled order), 20% new files of random data.
# random.seed(1900 + N). Prints one line of key=value counts.
guest_night() {
  local n=$1
  mount -o loop "$IMG" "$MNT" || die "cannot loop-mount $IMG (no loop device?)"
  python3 - "$MNT" "$n" $(((DATA_MIB << 20) * CHANGE_PCT / 100)) <<'PY' || { umount "$MNT"; die "night $n failed"; }
import os, random, shutil, sys
mnt, night, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(1900 + night)
state = os.path.join(mnt, "var/lib/bench-guest")
os.makedirs(state, exist_ok=True)

def walk(top, skip_lost=False):
    out = []
    for root, dirs, files in os.walk(top):
        dirs.sort()
        if skip_lost and root == top and "lost+found" in dirs:
            dirs.remove("lost+found")
        for f in sorted(files):
            p = os.path.join(root, f)
            if os.path.isfile(p) and not os.path.islink(p):
                out.append((p, os.path.getsize(p)))
    return out

files = [f for f in walk(mnt, True) if not f[0].startswith(state)]
st = dict(deleted=0, deleted_files=0, rewritten=0, rewritten_files=0, appended=0,
          new_real=0, new_real_files=0, new_random=0, new_random_files=0)
# 1. deletions (10%)
cands = [f for f in files if 4096 <= f[1] <= budget // 10]
rng.shuffle(cands)
gone = set()
for p, s in cands:
    if st["deleted"] + s > budget // 10:
        continue
    os.remove(p)
    gone.add(p)
    st["deleted"] += s
    st["deleted_files"] += 1
    if st["deleted"] >= budget // 10 * 9 // 10:
        break
files = [f for f in files if f[0] not in gone]
# 2. ranges rewritten inside existing files (30%), 4 KiB .. 256 KiB each
big = [f for f in files if f[1] >= 65536]
while st["rewritten"] < budget * 3 // 10:
    p, s = rng.choice(big)
    n = min(rng.randint(1, 64) * 4096, s)
    off = rng.randrange(0, s - n + 1)
    with open(p, "r+b") as f:
        f.seek(off)
        f.write(rng.randbytes(n))
    st["rewritten"] += n
    st["rewritten_files"] += 1
# 3. log lines appended (10%)
logdir = os.path.join(mnt, "var/log/app")
os.makedirs(logdir, exist_ok=True)
words = ["GET", "POST", "/api/v1/items", "/login", "200", "404", "500", "user", "job",
         "done", "started", "queued", "cache", "miss", "hit", "worker"]
for name in ("access.log", "app.log", "audit.log"):
    with open(os.path.join(logdir, name), "a") as f:
        n = 0
        while n < budget // 30:
            line = "2026-10-%02d %02d:%02d:%02d %s\n" % (
                night, rng.randrange(24), rng.randrange(60), rng.randrange(60),
                " ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) +
                " id=%08x" % rng.getrandbits(32))
            f.write(line)
            n += len(line)
        st["appended"] += n
# 4. new copies of real files (30%): a fixed shuffle of a pool the base image
# does not hold, taken in order across nights (the offset is kept in the image)
pool = []
for top in ("/usr/bin", "/usr/sbin", "/usr/libexec", "/usr/lib/python3", "/usr/lib/gcc",
            "/usr/include", "/usr/lib/python3.11"):
    if os.path.isdir(top):
        pool += [f for f in walk(top) if 0 < f[1] <= 8 << 20]
pool = sorted(set(pool))
random.Random(19).shuffle(pool)
off_file = os.path.join(state, "pool-offset")
at = int(open(off_file).read()) if os.path.exists(off_file) else 0
while st["new_real"] < budget * 3 // 10 and at < len(pool):
    p, s = pool[at]
    at += 1
    t = os.path.join(mnt, "opt/night-%d" % night, p.lstrip("/"))
    os.makedirs(os.path.dirname(t), exist_ok=True)
    try:
        shutil.copy2(p, t)
    except OSError:
        continue
    st["new_real"] += s
    st["new_real_files"] += 1
open(off_file, "w").write(str(at))
# 5. new files of random data (20%), 64 KiB .. 2 MiB
ddir = os.path.join(mnt, "home/user/data")
os.makedirs(ddir, exist_ok=True)
k = 0
while st["new_random"] < budget * 2 // 10:
    n = rng.randint(1, 32) * 65536 - rng.randrange(4096)
    with open(os.path.join(ddir, "night-%02d-%03d.bin" % (night, k)), "wb") as f:
        f.write(rng.randbytes(n))
    st["new_random"] += n
    st["new_random_files"] += 1
    k += 1
print(" ".join("%s=%d" % kv for kv in st.items()))
PY
  umount "$MNT"
}

# ---------------------------------------------------------------- timing
# timed TOOL STEP ROUND cmd...: after a sync, runs cmd under /usr/bin/time -v;
# records wall, CPU (user + sys), max RSS (KiB) and the bytes the process
# wrote to and read from the file system (rusage oublock/inblock x 512: the
# kernel's write_bytes of /proc/PID/io, counted when a page is dirtied).
timed() {
  local tool=$1 step=$2 round=$3
  shift 3
  local base="$LOGS/$tool-$step-$round"
  sync
  record "$tool" "$step" "$round" load_before "$(load1)"
  if ! /usr/bin/time -v -o "$base.time" "$@" >"$base.out" 2>"$base.err" </dev/null; then
    tail -n 20 "$base.err" >&2
    die "$tool $step (round $round) failed: $*"
  fi
  python3 - "$base.time" <<'PY' | while IFS=$'\t' read -r k v; do record "$tool" "$step" "$round" "$k" "$v"; done
import sys
t = {}
for line in open(sys.argv[1]):
    if ":" in line:
        k, v = line.strip().rsplit(": ", 1) if ": " in line else (line, "")
        t[k.strip()] = v.strip()
w = 0.0
for p in t["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":"):
    w = w * 60 + float(p)
print("wall\t%.3f" % w)
print("cpu\t%.2f" % (float(t["User time (seconds)"]) + float(t["System time (seconds)"])))
print("rss_kib\t%s" % t["Maximum resident set size (kbytes)"])
print("fs_write_bytes\t%d" % (int(t["File system outputs"]) * 512))
print("fs_read_bytes\t%d" % (int(t["File system inputs"]) * 512))
PY
  log "$tool $step (round $round): $(awk -F'\t' -v t="$tool" -v s="$step" -v r="$round" \
    '$1 == t && $2 == s && $3 == r && $4 ~ /^(wall|cpu|fs_write_bytes)$/ {printf "%s=%s ", $4, $5}' "$RAW")load $(load1)"
}

# ---------------------------------------------------------------- setup: the nights
log "setup: source repositories (haven init; restic init --repository-version 2)"
"$HAVEN" -q -r "$SRC" init
if [ "$RESTIC" = 1 ]; then
  restic -r "$RSRC" init --repository-version 2 >"$LOGS/restic-src-init.log" 2>&1 ||
    { cat "$LOGS/restic-src-init.log" >&2; die "restic init failed"; }
fi
: >"$D/nights.tsv"
for n in $(seq 1 $((NIGHTS + 1))); do
  day=$(date -u -d "2026-10-01 +$((n - 1)) days" +%F)
  changes=$(guest_night "$n")
  sync
  cat "$IMG" >/dev/null
  t0=$EPOCHREALTIME
  "$HAVEN" -r "$SRC" --json backup image "$IMG" --name vm --time "${day}T02:00:00Z" \
    >"$LOGS/haven-backup-$n.json" 2>"$LOGS/haven-backup-$n.err" ||
    { cat "$LOGS/haven-backup-$n.err" >&2; die "haven backup, night $n"; }
  t1=$EPOCHREALTIME
  if [ "$RESTIC" = 1 ]; then
    restic -r "$RSRC" backup --compression auto --host haven-bench --time "$day 02:00:00" "$IMG" \
      >"$LOGS/restic-backup-$n.log" 2>&1 || { tail "$LOGS/restic-backup-$n.log" >&2; die "restic backup, night $n"; }
  fi
  t2=$EPOCHREALTIME
  sum=$(sha256sum "$IMG" | cut -c1-64)
  hs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
  rs=$(awk -v a="$t1" -v b="$t2" 'BEGIN {printf "%.2f", b - a}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$day" "$sum" "$hs" "$rs" "$(bytes_of "$SRC")" "$changes" >>"$D/nights.tsv"
  log "night $n ($day): $changes; backups: haven ${hs}s, restic ${rs}s"
  if [ "$n" = "$NIGHTS" ]; then
    # The state of the sources when the first copy runs (for the report).
    record haven setup 0 src_bytes_first "$(bytes_of "$SRC")"
    record haven setup 0 src_packs_bytes_first "$(bytes_of "$SRC/packs")"
    record haven setup 0 src_pack_files_first "$(count_files "$SRC/packs")"
    if [ "$RESTIC" = 1 ]; then
      record restic setup 0 src_bytes_first "$(bytes_of "$RSRC")"
      record restic setup 0 src_packs_bytes_first "$(bytes_of "$RSRC/data")"
      record restic setup 0 src_pack_files_first "$(count_files "$RSRC/data")"
    fi
  fi
done
record haven setup 0 src_bytes "$(bytes_of "$SRC")"
record haven setup 0 src_packs_bytes "$(bytes_of "$SRC/packs")"
record haven setup 0 src_pack_files "$(count_files "$SRC/packs")"
record haven setup 0 image_allocated "$(($(stat -c %b "$IMG") * $(stat -c %B "$IMG")))"
LATEST_SUM=$(tail -n1 "$D/nights.tsv" | cut -f3)

# The first copy takes the first NIGHTS points by id (the source already holds
# night NIGHTS+1: it is backed up once, before the rounds); the second copy
# takes everything, skips what the target has and sends night NIGHTS+1.
mapfile -t HIDS < <("$HAVEN" -r "$SRC" --json snapshots | python3 -c '
import json, sys
for p in sorted(json.load(sys.stdin), key=lambda p: p["time"]): print(p["id"])')
[ "${#HIDS[@]}" = $((NIGHTS + 1)) ] || die "haven lists ${#HIDS[@]} points, expected $((NIGHTS + 1))"
if [ "$RESTIC" = 1 ]; then
  record restic setup 0 src_bytes "$(bytes_of "$RSRC")"
  record restic setup 0 src_packs_bytes "$(bytes_of "$RSRC/data")"
  record restic setup 0 src_pack_files "$(count_files "$RSRC/data")"
  mapfile -t RIDS < <(restic -r "$RSRC" snapshots --json | python3 -c '
import json, sys
for p in sorted(json.load(sys.stdin), key=lambda p: p["time"]): print(p["id"])')
  [ "${#RIDS[@]}" = $((NIGHTS + 1)) ] || die "restic lists ${#RIDS[@]} snapshots, expected $((NIGHTS + 1))"
fi

# ---------------------------------------------------------------- rounds
copy_cmd() {  # TOOL STEP: sets CMD
  case "$1-$2" in
    haven-first) CMD=("$HAVEN" --json copy --from "$SRC" --to "$DST" "${HIDS[@]:0:NIGHTS}") ;;
    haven-night) CMD=("$HAVEN" --json copy --from "$SRC" --to "$DST") ;;
    restic-first) CMD=(restic -r "$RDST" copy --from-repo "$RSRC" "${RIDS[@]:0:NIGHTS}") ;;
    restic-night) CMD=(restic -r "$RDST" copy --from-repo "$RSRC") ;;
  esac
}
target_of() { [ "$1" = haven ] && echo "$DST" || echo "$RDST"; }
packs_of() { [ "$1" = haven ] && echo "$DST/packs" || echo "$RDST/data"; }

TOOLS=(haven)
if [ "$RESTIC" = 1 ]; then TOOLS+=(restic); fi
for r in $(seq 1 "$ROUNDS"); do
  order=("${TOOLS[@]}")
  if [ $((r % 2)) = 0 ] && [ "${#TOOLS[@]}" = 2 ]; then order=(restic haven); fi
  log "round $r/$ROUNDS (${order[*]})"
  rm -rf "$DST" "$RDST"
  "$HAVEN" -q -r "$DST" init --copy-params-from "$SRC" >"$LOGS/haven-dst-init.log" 2>&1 ||
    { cat "$LOGS/haven-dst-init.log" >&2; die "haven init --copy-params-from failed"; }
  if [ "$RESTIC" = 1 ]; then
    restic -r "$RDST" init --repository-version 2 --from-repo "$RSRC" --copy-chunker-params \
      >"$LOGS/restic-dst-init.log" 2>&1 || { cat "$LOGS/restic-dst-init.log" >&2; die "restic init --from-repo failed"; }
  fi
  if [ "$r" = 1 ]; then
    # What a dry run promises (docs/copies.md: "the figure to plan a link
    # with"), against what the copy then writes. Untimed.
    "$HAVEN" --json copy --dry-run --from "$SRC" --to "$DST" "${HIDS[@]:0:NIGHTS}" >"$LOGS/haven-dry-run.json" ||
      die "haven copy --dry-run failed"
    python3 - "$LOGS/haven-dry-run.json" <<'PY' | while IFS=$'\t' read -r k v; do record haven first 1 "$k" "$v"; done
import json, sys
j = json.load(open(sys.argv[1]))
print("dry_run_bytes\t%d" % j["bytes_sent"])
print("dry_run_chunks\t%d" % j["chunks_sent"])
PY
  fi
  for step in first night; do
    for t in "${order[@]}"; do
      copy_cmd "$t" "$step"
      tgt=$(target_of "$t")
      if [ "$t" = haven ]; then warm "$SRC"; else warm "$RSRC"; fi
      b0=$(bytes_of "$tgt") p0=$(bytes_of "$(packs_of "$t")") f0=$(count_files "$(packs_of "$t")")
      timed "$t" "$step" "$r" "${CMD[@]}"
      record "$t" "$step" "$r" target_growth $(($(bytes_of "$tgt") - b0))
      record "$t" "$step" "$r" packs_growth $(($(bytes_of "$(packs_of "$t")") - p0))
      record "$t" "$step" "$r" pack_files_added $(($(count_files "$(packs_of "$t")") - f0))
      out="$LOGS/$t-$step-$r.out"
      if [ "$t" = haven ]; then
        python3 - "$out" "$NIGHTS" "$step" <<'PY' | while IFS=$'\t' read -r k v; do record haven "$step" "$r" "$k" "$v"; done
import json, sys
j = json.load(open(sys.argv[1]))
nights, step = int(sys.argv[2]), sys.argv[3]
want = (nights, 0) if step == "first" else (1, nights)
got = (j["points_copied"], j["points_present"])
if got != want or j["points_failed"] or j["damaged_chunks"]:
    sys.exit("haven copy %s: copied/present %s, expected %s; failed %s" % (step, got, want, j["points_failed"]))
for k in ("bytes_sent", "chunks_sent", "chunks_checked", "points_copied", "points_present", "duration_seconds"):
    print("%s\t%s" % (k, j[k]))
PY
      else
        saved=$(grep -c '^snapshot .* saved$' "$out" || true)
        skipped=$(grep -c 'was already copied' "$out" || true)
        want_saved=$NIGHTS want_skipped=0
        [ "$step" = night ] && want_saved=1 want_skipped=$NIGHTS
        [ "$saved" = "$want_saved" ] && [ "$skipped" = "$want_skipped" ] ||
          die "restic copy $step: $saved saved, $skipped skipped; expected $want_saved and $want_skipped"
        record restic "$step" "$r" points_copied "$saved"
        record restic "$step" "$r" points_present "$skipped"
      fi
    done
  done
  record haven total "$r" target_bytes "$(bytes_of "$DST")"
  record haven total "$r" target_pack_files "$(count_files "$DST/packs")"
  if [ "$RESTIC" = 1 ]; then
    record restic total "$r" target_bytes "$(bytes_of "$RDST")"
    record restic total "$r" target_pack_files "$(count_files "$RDST/data")"
  fi
  if [ "$r" = 1 ]; then
    # Correctness (untimed): the targets hold every point, and the newest
    # point restored from the target is the image of the last night.
    mkdir -p "$D/out"
    python3 - "$SRC" "$DST" "$HAVEN" <<'PY' || die "haven: the target's points differ from the source's"
import json, subprocess, sys
src, dst, haven = sys.argv[1:4]
ids = lambda r: sorted(p["id"] for p in json.loads(subprocess.check_output([haven, "-r", r, "--json", "snapshots"])))
a, b = ids(src), ids(dst)
if a != b:
    sys.exit("source %s, target %s" % (a, b))
PY
    "$HAVEN" -r "$DST" restore image vm:latest --to "$D/out/haven.img" >"$LOGS/haven-restore.log" 2>&1 ||
      { cat "$LOGS/haven-restore.log" >&2; die "haven restore from the target failed"; }
    [ "$(sha256sum "$D/out/haven.img" | cut -c1-64)" = "$LATEST_SUM" ] ||
      die "haven: the latest point restored from the target differs from the last night's image"
    rm -f "$D/out/haven.img"
    log "haven: the target lists the source's $((NIGHTS + 1)) points; its latest restores byte-identical"
    if [ "$RESTIC" = 1 ]; then
      n=$(restic -r "$RDST" snapshots --json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
      [ "$n" = $((NIGHTS + 1)) ] || die "restic: the target lists $n snapshots, expected $((NIGHTS + 1))"
      restic -r "$RDST" restore latest --target "$D/out/restic" >"$LOGS/restic-restore.log" 2>&1 ||
        { cat "$LOGS/restic-restore.log" >&2; die "restic restore from the target failed"; }
      [ "$(sha256sum "$D/out/restic$IMG" | cut -c1-64)" = "$LATEST_SUM" ] ||
        die "restic: the latest snapshot restored from the target differs from the last night's image"
      rm -rf "$D/out/restic"
      log "restic: the target lists $n snapshots; its latest restores byte-identical"
    fi
  fi
done

# ---------------------------------------------------------------- report
{
  echo "haven=$("$HAVEN" --version 2>/dev/null | head -1)"
  echo "restic=$([ "$RESTIC" = 1 ] && restic version | head -1 || echo skipped)"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') x $(nproc)"
  echo "mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "date=$(date -u +%FT%TZ)"
  echo "rounds=$ROUNDS"
  echo "nights=$NIGHTS"
  echo "image_mib=$IMAGE_MIB"
  echo "data_mib=$DATA_MIB"
  echo "change_pct=$CHANGE_PCT"
  echo "command=bench/copy.sh --rounds $ROUNDS --nights $NIGHTS --image-mib $IMAGE_MIB --data-mib $DATA_MIB --change-pct $CHANGE_PCT$([ "$RESTIC" = 1 ] || echo ' --skip-restic')"
} >"$D/env.info"

python3 - "$RAW" "$D/env.info" "$D/nights.tsv" >"$D/results.md" <<'PY'
import statistics, sys
raw, env_path, nights_path = sys.argv[1:4]
env = dict(l.rstrip("\n").split("=", 1) for l in open(env_path) if "=" in l)
V = {}
for line in open(raw):
    tool, step, rnd, k, v = line.rstrip("\n").split("\t")
    V.setdefault((tool, step, k), []).append(float(v))
nights = [l.rstrip("\n").split("\t") for l in open(nights_path) if l.strip()]
N = int(env["nights"])
MB = 1e6

def med(t, s, k):
    v = V.get((t, s, k))
    return statistics.median(v) if v else None

def rng(t, s, k, fmt):
    v = V.get((t, s, k))
    return f"{fmt(min(v))}–{fmt(max(v))}" if v else "–"

def one(t, s, k):
    v = med(t, s, k)
    return v if v is not None else 0

restic = ("restic", "first", "wall") in V
print("# Off-site copies: haven copy vs restic copy\n")
print(f"Machine: {env['cpu']}, {env['mem']}; {env['date']}.  ")
print(f"Versions: {env['haven']}; {env['restic']}.  ")
print(f"Data: a {env['image_mib']} MiB ext4 image with {env['data_mib']} MiB of /etc and /usr files; "
      f"{N} nights, then one more; each night the guest changes {env['change_pct']}% of the data.  ")
print(f"Command: `{env['command']}`; {env['rounds']} rounds, tools interleaved (order alternates), "
      "new targets each round; medians (min–max). Page cache warm (source read before each copy), not dropped.\n")

def line(label, key, fmt, first_ratio):
    cells = []
    for s in ("first", "night"):
        h = med("haven", s, key)
        cells.append(f"{fmt(h)} ({rng('haven', s, key, fmt)})")
        if restic:
            rr = med("restic", s, key)
            cells.append(f"{fmt(rr)} ({rng('restic', s, key, fmt)})")
            if first_ratio and h and rr:
                x = rr / h if first_ratio == "restic/haven" else h / rr
                cells.append(f"{x:.2f}")
            else:
                cells.append("–")
    print(f"| {label} | " + " | ".join(cells) + " |")

s = lambda x: f"{x:.2f}"
mbf = lambda x: f"{x / MB:.1f}"
mib = lambda x: f"{x / 1024:.0f}"
if restic:
    print(f"| | haven: {N} nights | restic: {N} nights | ratio | haven: night {N + 1} | restic: night {N + 1} | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
else:
    print(f"| | haven: {N} nights | haven: night {N + 1} |")
    print("|---|---:|---:|")
line("wall time (s); ratio restic / haven", "wall", s, "restic/haven")
line("CPU time (s); ratio restic / haven", "cpu", s, "restic/haven")
line("target repository growth, du -sb (MB); ratio haven / restic", "target_growth", mbf, "haven/restic")
line("of it pack files (haven packs/, restic data/) (MB)", "packs_growth", mbf, "haven/restic")
line("bytes written to the file system (rusage, MB); ratio haven / restic", "fs_write_bytes", mbf, "haven/restic")
line("pack files added", "pack_files_added", lambda x: f"{x:.0f}", "haven/restic")
line("peak RSS (MiB)", "rss_kib", mib, "haven/restic")
line("load average before (1 min)", "load_before", lambda x: f"{x:.1f}", None)
print()
print("Haven's own figures (`haven copy --json`, medians):\n")
print("| | bytes_sent (MB, raw) | chunks_sent | chunks_checked | duration_seconds |")
print("|---|---:|---:|---:|---:|")
for st, label in (("first", f"{N} nights"), ("night", f"night {N + 1}")):
    print(f"| {label} | {one('haven', st, 'bytes_sent') / MB:.1f} | {one('haven', st, 'chunks_sent'):.0f} "
          f"| {one('haven', st, 'chunks_checked'):.0f} | {one('haven', st, 'duration_seconds'):.2f} |")
print()
dry = med("haven", "first", "dry_run_bytes")
if dry:
    grow = med("haven", "first", "target_growth")
    print(f"`haven copy --dry-run` of the first copy (round 1): {dry / MB:.1f} MB in "
          f"{med('haven', 'first', 'dry_run_chunks'):.0f} chunks; the copy then grew the target by "
          f"{grow / MB:.1f} MB: the dry run said {dry / grow:.2f}x what the copy stored.\n")
print("Sources and targets (after all copies):\n")
print("| | haven | restic |")
print("|---|---:|---:|")
def both(label, st, key, fmt):
    h = med("haven", st, key)
    r = med("restic", st, key)
    print(f"| {label} | {fmt(h) if h is not None else '–'} | {fmt(r) if r is not None else '–'} |")
both(f"source repository after {N} nights (MB)", "setup", "src_bytes_first", mbf)
both(f"source repository after {N + 1} nights (MB)", "setup", "src_bytes", mbf)
both("source pack files", "setup", "src_pack_files", lambda x: f"{x:.0f}")
both(f"target repository after {N + 1} nights (MB)", "total", "target_bytes", mbf)
both("target pack files", "total", "target_pack_files", lambda x: f"{x:.0f}")
print()
print("Nights (setup, not measured): per night the guest's changes, and each tool's backup time:\n")
print("| night | date | deleted MB | rewritten MB | appended MB | new real files MB | new random MB | haven backup s | restic backup s |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
for n in nights:
    kv = dict(x.split("=") for x in n[6].split())
    f = lambda k: f"{int(kv[k]) / MB:.1f}"
    print(f"| {n[0]} | {n[1]} | {f('deleted')} | {f('rewritten')} | {f('appended')} | {f('new_real')} | {f('new_random')} | {n[3]} | {n[4]} |")
PY

echo
cat "$D/results.md"
echo
log "results: $D/results.md (raw: $RAW, nights: $D/nights.tsv, logs: $LOGS)"
