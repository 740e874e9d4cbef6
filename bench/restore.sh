#!/usr/bin/env bash
# Restore throughput: `haven restore image` to raw and to qcow2 against
# `restic restore` of the same image and against `qemu-img convert` of the
# local raw file (the machine's limit for writing that image). See
# bench/README.md ("Restore benchmark").
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/restore.sh [options]

  --runs N       rounds of measurements (default 3); medians are reported
  --skip-restic  do not set up or measure restic
  --keep         keep the repositories, cur.img and the last outputs
  -h, --help     this help

Environment:
  BENCH_DIR  work dir (default /var/tmp/haven-bench); uses BENCH_DIR/next.img
             (built by bench/run.sh --dataset-only if missing) and writes
             everything else under BENCH_DIR/restore/
  HAVEN      haven binary (default $PWD/build/haven)
USAGE
}

RUNS=3
RUN_RESTIC=1
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) [ $# -ge 2 ] || { usage >&2; exit 2; }; RUNS=$2; shift 2 ;;
    --runs=*) RUNS=${1#*=}; shift ;;
    --skip-restic) RUN_RESTIC=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ "$RUNS" =~ ^[0-9]+$ ]] && [ "$RUNS" -ge 1 ] && [ "$RUNS" -le 50 ] ||
  { echo "--runs must be an integer in 1..50" >&2; exit 2; }

log() { printf '[restore %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[restore] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- parameters
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
W=${BENCH_DIR:-/var/tmp/haven-bench}
HAVEN=${HAVEN:-$PWD/build/haven}
IMG_SIZE=$((3 * 1024 * 1024 * 1024))   # 3 GiB, as built by bench/run.sh
BLOCK=65536
export LC_ALL=C
export HAVEN_PASSWORD=haven-bench-password
export RESTIC_PASSWORD=haven-bench-password

. "$SCRIPT_DIR/lib.sh"
need_pkg /usr/bin/time time
need_pkg python3 python3
need_pkg cmp diffutils
need_pkg flock util-linux
need_pkg qemu-img qemu-utils
[ "$RUN_RESTIC" = 1 ] && need_pkg restic restic
[ -x "$HAVEN" ] || die "haven binary not found at $HAVEN (build it or set HAVEN=/path/to/haven)"
HAVEN=$(readlink -f "$HAVEN")

mkdir -p "$W"
W=$(cd "$W" && pwd -P)
if [ ! -f "$W/next.img" ] || [ "$(stat -c %s "$W/next.img")" != "$IMG_SIZE" ]; then
  log "no dataset in $W: running bench/run.sh --dataset-only"
  BENCH_DIR=$W "$SCRIPT_DIR/run.sh" --dataset-only >&2
fi

exec 9>"$W/restore.lock"
flock -n 9 || die "another bench/restore.sh is running on $W"

D="$W/restore"
CUR="$D/cur.img"
HREPO="$D/repo-haven"
RREPO="$D/repo-restic"
OUT="$D/out"
LOGS="$D/logs"
RAW="$D/raw.tsv"   # tool <tab> run <tab> key <tab> value
rm -rf "$D"
mkdir -p "$D" "$OUT" "$LOGS" "$D/bin"
: >"$RAW"
# One copy of the binary for the whole run, even if build/haven is rebuilt.
cp "$HAVEN" "$D/bin/haven"
log "haven: $HAVEN (sha256 $(sha256sum "$HAVEN" | cut -c1-16))"
HAVEN="$D/bin/haven"
export RESTIC_CACHE_DIR="$D/cache/restic"
export XDG_CACHE_HOME="$D/cache/xdg"

cleanup() {
  local rc=$?
  if [ "$rc" != 0 ]; then
    log "failed (exit $rc): keeping $D for inspection"
  elif [ "$KEEP" = 0 ]; then
    rm -rf "$HREPO" "$RREPO" "$CUR" "$OUT" "$D/cache" "${D:?}/bin"
  fi
}
trap cleanup EXIT

record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RAW"; }
warm() { find "$@" -type f -exec cat {} + >/dev/null; }
load1() { cut -d' ' -f1 /proc/loadavg; }

# timed TOOL RUN cmd... : after a sync, runs cmd under /usr/bin/time -v and
# records wall seconds, max RSS (KiB) and CPU seconds (user + sys, children
# included: qemu-nbd is haven's child).
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
           n = split($NF, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.2f", s }' "$tf")
  rss=$(awk -F': ' '/Maximum resident set size/ { print $NF }' "$tf")
  cpu=$(awk -F': ' '/User time/ { u = $NF } /System time/ { s = $NF } END { printf "%.2f", u + s }' "$tf")
  [ -n "$secs" ] && [ -n "$rss" ] || die "could not parse $tf"
  record "$tool" "$run" time "$secs"
  record "$tool" "$run" rss "$rss"
  record "$tool" "$run" cpu "$cpu"
  log "$tool (run $run): ${secs}s, $((rss / 1024)) MiB peak RSS, ${cpu}s CPU, load $(load1)"
}

# ---------------------------------------------------------------- setup
log "setup: cur.img = next.img (the image bench/run.sh restores)"
cp --sparse=always "$W/next.img" "$CUR"
DATA_BYTES=$(($(stat -c %b "$CUR") * $(stat -c %B "$CUR")))
log "setup: haven repository (init, backup image)"
"$HAVEN" -q -r "$HREPO" init
"$HAVEN" -r "$HREPO" --json backup image "$CUR" --name cur >"$LOGS/haven-backup.json"
if [ "$RUN_RESTIC" = 1 ]; then
  log "setup: restic repository (init --repository-version 2, backup --compression auto)"
  restic -r "$RREPO" init --repository-version 2 >"$LOGS/restic-init.log" 2>&1 ||
    { cat "$LOGS/restic-init.log" >&2; die "restic init failed"; }
  restic -r "$RREPO" backup --compression auto --host haven-bench "$CUR" \
    >"$LOGS/restic-backup.log" 2>&1 ||
    { tail -n 20 "$LOGS/restic-backup.log" >&2; die "restic backup failed"; }
fi

# ---------------------------------------------------------------- commands
# Each sets CMD (run under /usr/bin/time) and OUTPUT (removed before each
# run); CHECK verifies the output once, after the first run.
TOOLS=(haven-raw haven-qcow2 haven-vhdx)
[ "$RUN_RESTIC" = 1 ] && TOOLS+=(restic)
TOOLS+=(qemu-raw qemu-qcow2 qemu-raw-unsafe qemu-qcow2-unsafe)
command_for() {
  case "$1" in
    haven-raw) OUTPUT=$OUT/haven.raw
      CMD=("$HAVEN" -r "$HREPO" restore image cur:latest --to "$OUTPUT") ;;
    haven-qcow2) OUTPUT=$OUT/haven.qcow2
      CMD=("$HAVEN" -r "$HREPO" restore image cur:latest --format qcow2 --to "$OUTPUT") ;;
    haven-vhdx) OUTPUT=$OUT/haven.vhdx
      CMD=("$HAVEN" -r "$HREPO" restore image cur:latest --format vhdx --to "$OUTPUT") ;;
    restic) OUTPUT=$OUT/restic
      CMD=(restic -r "$RREPO" restore latest --host haven-bench --path "$CUR" --target "$OUTPUT") ;;
    # -t writeback: flushed (fsync) at the end, as Haven's restore is.
    qemu-raw) OUTPUT=$OUT/qemu.raw
      CMD=(qemu-img convert -t writeback -f raw -O raw "$CUR" "$OUTPUT") ;;
    qemu-qcow2) OUTPUT=$OUT/qemu.qcow2
      CMD=(qemu-img convert -t writeback -f raw -O qcow2 "$CUR" "$OUTPUT") ;;
    # qemu-img convert's default cache mode (unsafe): never flushed.
    qemu-raw-unsafe) OUTPUT=$OUT/qemu-unsafe.raw
      CMD=(qemu-img convert -f raw -O raw "$CUR" "$OUTPUT") ;;
    qemu-qcow2-unsafe) OUTPUT=$OUT/qemu-unsafe.qcow2
      CMD=(qemu-img convert -f raw -O qcow2 "$CUR" "$OUTPUT") ;;
  esac
}
check_output() {
  local f=$OUTPUT fmt=raw
  case "$1" in
    restic) f=$OUTPUT$CUR ;;
    *qcow2*) fmt=qcow2 ;;
    *vhdx*) fmt=vhdx ;;
  esac
  if [ "$fmt" = raw ]; then
    cmp "$f" "$CUR" || die "$1: OUTPUT DIFFERS FROM cur.img ($f)"
  else
    qemu-img compare -q -f $fmt -F raw "$f" "$CUR" || die "$1: OUTPUT DIFFERS FROM cur.img ($f)"
  fi
  record "$1" 1 out_allocated "$(($(stat -c %b "$f") * $(stat -c %B "$f")))"
  log "$1: output verified identical to cur.img"
}

# Rounds: every tool once per round, so that a change in the machine's load
# touches all of them alike. Page caches are not dropped: the inputs (the
# repositories, cur.img) are read once before each command, so every tool
# starts from a warm cache; outputs are deleted and synced beforehand.
for run in $(seq 1 "$RUNS"); do
  for t in "${TOOLS[@]}"; do
    command_for "$t"
    rm -rf "$OUTPUT"
    [ "$t" = restic ] && mkdir -p "$OUTPUT"
    case "$t" in
      haven-*) warm "$HREPO" ;;
      restic) warm "$RREPO" ;;
      qemu-*) warm "$CUR" ;;
    esac
    timed "$t" "$run" "${CMD[@]}"
    [ "$run" = 1 ] && check_output "$t"
    rm -rf "$OUTPUT"
  done
done

# ---------------------------------------------------------------- report
{
  echo "haven=$("$HAVEN" --version 2>/dev/null | head -1)"
  echo "restic=$([ "$RUN_RESTIC" = 1 ] && restic version | head -1 || echo skipped)"
  echo "qemu=$(qemu-img --version | head -1)"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') x $(nproc)"
  echo "mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "date=$(date -u +%FT%TZ)"
  echo "data_bytes=$DATA_BYTES"
  echo "image_bytes=$IMG_SIZE"
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
image, data = int(env["image_bytes"]), int(env["data_bytes"])
MB = 1e6

def med(t, k):
    v = V.get((t, k))
    return statistics.median(v) if v else None

rows = [
    ("haven-raw", "haven restore image (raw, sparse)"),
    ("haven-qcow2", "haven restore image --format qcow2"),
    ("haven-vhdx", "haven restore image --format vhdx"),
    ("restic", "restic restore (raw, not sparse, no fsync)"),
    ("qemu-raw", "qemu-img convert -t writeback -O raw"),
    ("qemu-qcow2", "qemu-img convert -t writeback -O qcow2"),
    ("qemu-raw-unsafe", "qemu-img convert -O raw (default: no flush)"),
    ("qemu-qcow2-unsafe", "qemu-img convert -O qcow2 (default: no flush)"),
]
print("# Restore throughput\n")
print(f"Image: `cur.img` of bench/run.sh (3 GiB ext4, {data / 1e9:.2f} GB allocated).  ")
print(f"Machine: {env.get('cpu')}, {env.get('mem')}; {env.get('date')}.  ")
print(f"Versions: {env.get('haven')}; {env.get('restic')}; {env.get('qemu')}.  ")
print(f"{env.get('runs')} rounds, each tool once per round; medians. Page cache warm, not dropped.\n")
print("| command | wall (s) median | min–max | image MB/s | data MB/s | CPU (s) | peak RSS (MiB) | load avg (1 min) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for t, label in rows:
    w = V.get((t, "time"))
    if not w:
        continue
    m = statistics.median(w)
    print(f"| {label} | {m:.2f} | {min(w):.2f}–{max(w):.2f} | {image / m / MB:.0f} | {data / m / MB:.0f} "
          f"| {med(t, 'cpu'):.2f} | {max(V[(t, 'rss')]) / 1024:.0f} | {med(t, 'load_before'):.1f} |")
print()

def ratio(a, b):
    ma, mb = med(a, "time"), med(b, "time")
    return None if ma is None or mb is None else mb / ma

targets = []
r = ratio("haven-raw", "restic")
if r is not None:
    targets.append(("haven raw vs restic restore: restic time / haven time", r, 2.0, "≥ 2x"))
r = ratio("haven-raw", "qemu-raw")
if r is not None:
    targets.append(("haven raw vs qemu-img convert -O raw: haven throughput / qemu-img's", r, 0.8, "≥ 0.80"))
r = ratio("haven-qcow2", "qemu-qcow2")
if r is not None:
    targets.append(("haven qcow2 vs qemu-img convert -O qcow2: haven throughput / qemu-img's", r, 0.8, "≥ 0.80"))
r = ratio("haven-qcow2", "restic")
if r is not None:
    targets.append(("haven qcow2 vs restic restore: restic time / haven time", r, 2.0, "≥ 2x"))
print("| ratio (medians) | value | target | met |")
print("|---|---:|---:|---|")
for label, v, want, text in targets:
    print(f"| {label} | {v:.3f} | {text} | {'yes' if v >= want else '**no**'} |")
PY

echo
cat "$D/results.md"
echo
log "results: $D/results.md (raw: $RAW, logs: $LOGS)"
