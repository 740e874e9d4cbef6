#!/usr/bin/env bash
# Haven maintenance benchmark: 30 nightly recovery points, then forget + gc
# vs `restic forget --prune`, and check --read-data vs `restic check --read-data`.
# See bench/README.md ("Maintenance benchmark").
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/maintenance.sh [options]

  --nights N     nightly recovery points to build (default 30)
  --writes N     64 KiB random writes per night (default 300, ~19 MiB)
  --only TOOL    run only haven or only restic
  --keep         keep repositories, cur.img and the caches after the run
  -h, --help     this help

Environment:
  BENCH_DIR  work dir (default /var/tmp/haven-bench); uses BENCH_DIR/image.img
             (built by bench/run.sh --dataset-only if missing) and writes
             everything else under BENCH_DIR/maint/
  HAVEN      haven binary (default $PWD/build/haven)
USAGE
}

NIGHTS=30
WRITES=300
KEEP=0
RUN_HAVEN=1
RUN_RESTIC=1

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

while [ $# -gt 0 ]; do
  case "$1" in
    --nights|--writes|--only)
      [ $# -ge 2 ] || { usage >&2; exit 2; }
      set -- "$1=$2" "${@:3}" ;;
    --nights=*) NIGHTS=${1#*=}; shift ;;
    --writes=*) WRITES=${1#*=}; shift ;;
    --only=*)
      case "${1#*=}" in
        haven)  RUN_HAVEN=1; RUN_RESTIC=0 ;;
        restic) RUN_HAVEN=0; RUN_RESTIC=1 ;;
        *) echo "--only takes haven or restic" >&2; exit 2 ;;
      esac
      shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
if ! { is_uint "$NIGHTS" && [ "$NIGHTS" -ge 1 ] && [ "$NIGHTS" -le 3650 ]; }; then
  echo "--nights must be an integer in 1..3650" >&2; exit 2
fi
if ! { is_uint "$WRITES" && [ "$WRITES" -le 49152 ]; }; then
  echo "--writes must be an integer in 0..49152" >&2; exit 2
fi

log() { printf '[maint %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[maint] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- parameters
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
W=${BENCH_DIR:-/var/tmp/haven-bench}
HAVEN=${HAVEN:-$PWD/build/haven}
IMG_SIZE=$((3 * 1024 * 1024 * 1024))   # 3 GiB, as built by bench/run.sh
BLOCK=65536                            # 64 KiB writes
SEED_BASE=1000                         # night n uses seed 1000+n
FIRST_DAY=2026-10-01                   # night n is stamped FIRST_DAY + (n-1) days, 02:00 UTC
KEEP_DAILY=7
KEEP_WEEKLY=4
NAME=bench-vm

export TZ=UTC            # restic's --time is local time; make local time UTC
export LC_ALL=C          # number formats of date, time, openssl
export HAVEN_PASSWORD=haven-bench-password
export RESTIC_PASSWORD=haven-bench-password

# ---------------------------------------------------------------- prerequisites
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_pkg /usr/bin/time time
need_pkg python3 python3
need_pkg cmp diffutils
need_pkg openssl openssl
need_pkg flock util-linux
[ "$RUN_RESTIC" = 1 ] && need_pkg restic restic
python3 -c 'import random; random.randbytes' 2>/dev/null \
  || die "python3 >= 3.9 needed (random.randbytes)"

if [ "$RUN_HAVEN" = 1 ]; then
  [ -x "$HAVEN" ] || die "haven binary not found at $HAVEN (build it, set HAVEN=/path/to/haven, or use --only restic)"
  HAVEN=$(readlink -f "$HAVEN")
  missing=()
  # (help text in variables: grep -q on a pipe would SIGPIPE the writer under pipefail)
  top_help=$("$HAVEN" --help 2>&1 || true)
  img_help=$("$HAVEN" backup image --help 2>&1 || true)
  for sub in forget gc; do
    grep -qE "^ +$sub( |$)" <<<"$top_help" || missing+=("haven $sub")
  done
  grep -qE -- '--time( |=|$)' <<<"$img_help" || missing+=("haven backup image --time")
  [ ${#missing[@]} -eq 0 ] \
    || die "$HAVEN lacks: ${missing[*]} (rebuild it, or use --only restic)"
fi

mkdir -p "$W"
W=$(cd "$W" && pwd -P)
if [ ! -f "$W/image.img" ] || [ "$(stat -c %s "$W/image.img")" != "$IMG_SIZE" ]; then
  log "no dataset in $W: running bench/run.sh --dataset-only"
  BENCH_DIR=$W "$SCRIPT_DIR/run.sh" --dataset-only >&2
fi
[ "$(stat -c %s "$W/image.img")" = "$IMG_SIZE" ] || die "$W/image.img is not 3 GiB"

# One maintenance run at a time per work dir.
exec 9>"$W/maintenance.lock"
flock -n 9 || die "another bench/maintenance.sh is running on $W"

M="$W/maint"
HREPO="$M/repo-haven"
RREPO="$M/repo-restic"
CUR="$M/cur.img"
RESTORED="$M/restored.img"
LOGS="$M/logs"
RAW="$M/raw.tsv"            # tool <tab> key <tab> value
NIGHTS_TSV="$M/nights.tsv"  # night <tab> date <tab> sha256 <tab> haven_s <tab> restic_s
rm -rf "$M"
mkdir -p "$M" "$LOGS"
: >"$RAW"
if [ "$RUN_HAVEN" = 1 ]; then
  # Use one copy of the binary for the whole run, even if build/haven is rebuilt meanwhile.
  mkdir -p "$M/bin"
  cp "$HAVEN" "$M/bin/haven"
  log "haven: $HAVEN (sha256 $(sha256sum "$HAVEN" | cut -c1-16)), run from $M/bin/haven"
  HAVEN="$M/bin/haven"
fi
export RESTIC_CACHE_DIR="$M/cache/restic"
export XDG_CACHE_HOME="$M/cache/xdg"
mkdir -p "$RESTIC_CACHE_DIR" "$XDG_CACHE_HOME"

cleanup() {
  local rc=$?
  if [ "$rc" != 0 ]; then
    log "failed (exit $rc): keeping $M for inspection"
  elif [ "$KEEP" = 0 ]; then
    rm -rf "$HREPO" "$RREPO" "$CUR" "$RESTORED" "$M/cache" "${M:?}/bin"
  fi
}
trap cleanup EXIT

record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RAW"; }
repo_bytes() { du -sb "$1" | cut -f1; }
warm() { find "$1" -type f -exec cat {} + >/dev/null; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }


# timed TOOL STEP cmd... : runs cmd under /usr/bin/time -v; stdout to
# $LOGS/TOOL-STEP.out, stderr to .err, time report to .time.  Records
# time_STEP (wall seconds) and rss_STEP (max RSS, KiB).
timed() {
  local tool=$1 step=$2; shift 2
  local tf="$LOGS/$tool-$step.time" out="$LOGS/$tool-$step.out" err="$LOGS/$tool-$step.err"
  sync
  log "$tool: $step: $*"
  if ! /usr/bin/time -v -o "$tf" "$@" >"$out" 2>"$err" </dev/null; then
    echo "---- $err (last 30 lines) ----" >&2; tail -n 30 "$err" >&2
    echo "---- $out (last 10 lines) ----" >&2; tail -n 10 "$out" >&2
    head -n 1 "$tf" >&2 || true
    die "$tool $step failed: $*"
  fi
  local secs rss
  secs=$(awk -F': ' '/Elapsed \(wall clock\) time/ {
           n = split($NF, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.2f", s }' "$tf")
  rss=$(awk -F': ' '/Maximum resident set size/ { print $NF }' "$tf")
  if [ -z "$secs" ] || [ -z "$rss" ]; then die "could not parse $tf"; fi
  record "$tool" "time_$step" "$secs"
  record "$tool" "rss_$step" "$rss"
  log "$tool: $step took ${secs}s, peak RSS $((rss / 1024)) MiB"
}

# snapshot_dates TOOL : prints "DATE<tab>TIME<tab>ID" per point, oldest first
snapshot_dates() {
  local json="$LOGS/$1-snapshots-$2.json"
  if [ "$1" = haven ]; then
    "$HAVEN" -r "$HREPO" --json snapshots >"$json" 2>"$LOGS/haven-snapshots-$2.err" \
      || { cat "$LOGS/haven-snapshots-$2.err" >&2; die "haven snapshots --json failed"; }
  else
    restic -r "$RREPO" snapshots --json >"$json" 2>"$LOGS/restic-snapshots-$2.err" \
      || { cat "$LOGS/restic-snapshots-$2.err" >&2; die "restic snapshots --json failed"; }
  fi
  python3 - "$json" <<'PY'
import json, sys
snaps = json.load(open(sys.argv[1])) or []
for s in sorted(snaps, key=lambda s: s["time"]):
    print(f'{s["time"][:10]}\t{s["time"]}\t{s["id"]}')
PY
}

# sha256 of a file; openssl uses the CPU's SHA extensions (coreutils sha256sum
# is ~5x slower here).
sha_of() { openssl dgst -sha256 -r "$1" | cut -d' ' -f1; }

night_date() { date -u -d "$FIRST_DAY +$(($1 - 1)) days" +%F; }

# ---------------------------------------------------------------- 1. history
log "building $NIGHTS nightly points ($WRITES x 64 KiB writes each) in $M"
cp --sparse=always "$W/image.img" "$CUR"
if [ "$RUN_HAVEN" = 1 ]; then
  "$HAVEN" -r "$HREPO" init >"$LOGS/haven-init.log" 2>&1 \
    || { cat "$LOGS/haven-init.log" >&2; die "haven init failed"; }
fi
if [ "$RUN_RESTIC" = 1 ]; then
  restic -r "$RREPO" init --repository-version 2 >"$LOGS/restic-init.log" 2>&1 \
    || { cat "$LOGS/restic-init.log" >&2; die "restic init failed"; }
fi
: >"$NIGHTS_TSV"
for ((n = 1; n <= NIGHTS; n++)); do
  day=$(night_date "$n")
  randwrite "$CUR" $((SEED_BASE + n)) "$WRITES"
  sha=$(sha_of "$CUR")
  hs=- rs=-
  if [ "$RUN_HAVEN" = 1 ]; then
    t0=$EPOCHREALTIME
    "$HAVEN" -r "$HREPO" backup image "$CUR" --name "$NAME" --time "${day}T02:00:00Z" -q \
      >>"$LOGS/haven-nights.log" 2>&1 </dev/null \
      || { tail -n 20 "$LOGS/haven-nights.log" >&2; die "haven backup of night $n failed"; }
    hs=$(fsub "$EPOCHREALTIME" "$t0")
  fi
  if [ "$RUN_RESTIC" = 1 ]; then
    t0=$EPOCHREALTIME
    (cd "$M" && restic -r "$RREPO" backup --compression auto --time "$day 02:00:00" \
        --host bench --tag nightly cur.img) >>"$LOGS/restic-nights.log" 2>&1 </dev/null \
      || { tail -n 20 "$LOGS/restic-nights.log" >&2; die "restic backup of night $n failed"; }
    rs=$(fsub "$EPOCHREALTIME" "$t0")
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$n" "$day" "$sha" "$hs" "$rs" >>"$NIGHTS_TSV"
  log "night $n/$NIGHTS ($day): haven ${hs}s, restic ${rs}s"
done
for t in haven restic; do
  [ "$t" = haven ] && [ "$RUN_HAVEN" = 0 ] && continue
  [ "$t" = restic ] && [ "$RUN_RESTIC" = 0 ] && continue
  col=$([ "$t" = haven ] && echo 4 || echo 5)
  total=$(awk -F'\t' -v c="$col" '{ s += $c } END { printf "%.1f", s }' "$NIGHTS_TSV")
  record "$t" setup_seconds "$total"
  log "$t: setup of $NIGHTS nights took ${total}s (not part of the measurement)"
done

# Expected survivors of --keep-daily 7 --keep-weekly 4, with restic's rules:
# newest first; a point is kept if it opens a new day (while daily slots
# remain) or a new ISO week (while weekly slots remain).
cut -f2 "$NIGHTS_TSV" | python3 -c '
import datetime, sys
days = sorted((datetime.date.fromisoformat(l.strip()) for l in sys.stdin if l.strip()), reverse=True)
rules = [(int(sys.argv[1]), lambda d: d.isoformat()), (int(sys.argv[2]), lambda d: d.isocalendar()[:2])]
left = [r[0] for r in rules]; last = [None] * len(rules); keep = []
for d in days:
    k = False
    for i, (_, f) in enumerate(rules):
        if left[i] > 0 and f(d) != last[i]:
            k = True; last[i] = f(d); left[i] -= 1
    if k: keep.append(d.isoformat())
print("\n".join(sorted(keep)))
' "$KEEP_DAILY" "$KEEP_WEEKLY" >"$M/expected-kept.txt"
record expected kept "$(wc -l <"$M/expected-kept.txt")"

# ---------------------------------------------------------------- 2. sizes before
for t in haven restic; do
  [ "$t" = haven ] && [ "$RUN_HAVEN" = 0 ] && continue
  [ "$t" = restic ] && [ "$RUN_RESTIC" = 0 ] && continue
  repo=$([ "$t" = haven ] && echo "$HREPO" || echo "$RREPO")
  snapshot_dates "$t" before >"$M/$t-before.txt"
  c=$(wc -l <"$M/$t-before.txt")
  [ "$c" = "$NIGHTS" ] || die "$t lists $c recovery points before forget, expected $NIGHTS"
  record "$t" points_before "$c"
  record "$t" size_before "$(repo_bytes "$repo")"
done
if [ "$RUN_HAVEN" = 1 ]; then
  # --time must be what the points record
  bad=$(awk -F'\t' '$2 !~ ("^" $1 "T02:00:00(\\.0+)?(Z|\\+00:00)$")' "$M/haven-before.txt")
  [ -z "$bad" ] || die "haven points do not carry the --time given (DATE TIME ID): $bad"
fi

# ---------------------------------------------------------------- 3. forget + gc / forget --prune
if [ "$RUN_HAVEN" = 1 ]; then
  timed haven forget "$HAVEN" -r "$HREPO" forget --keep-daily "$KEEP_DAILY" --keep-weekly "$KEEP_WEEKLY"
  timed haven gc "$HAVEN" -r "$HREPO" gc
fi
if [ "$RUN_RESTIC" = 1 ]; then
  timed restic forget_prune restic -r "$RREPO" forget --keep-daily "$KEEP_DAILY" --keep-weekly "$KEEP_WEEKLY" --prune
fi

mismatch=0
for t in haven restic; do
  [ "$t" = haven ] && [ "$RUN_HAVEN" = 0 ] && continue
  [ "$t" = restic ] && [ "$RUN_RESTIC" = 0 ] && continue
  snapshot_dates "$t" after >"$M/$t-after.txt"
  record "$t" points_after "$(wc -l <"$M/$t-after.txt")"
  if ! diff <(cut -f1 "$M/$t-after.txt") "$M/expected-kept.txt" >/dev/null; then
    log "$t kept $(wc -l <"$M/$t-after.txt") points: $(cut -f1 "$M/$t-after.txt" | tr '\n' ' ')"
    log "expected $(wc -l <"$M/expected-kept.txt") (restic's rules): $(tr '\n' ' ' <"$M/expected-kept.txt")"
    mismatch=1
  fi
done
if [ "$RUN_HAVEN" = 1 ] && [ "$RUN_RESTIC" = 1 ]; then
  hc=$(wc -l <"$M/haven-after.txt") rc=$(wc -l <"$M/restic-after.txt")
  [ "$hc" = "$rc" ] || die "KEPT POINTS DIFFER: haven kept $hc, restic kept $rc (see $M/haven-after.txt, $M/restic-after.txt)"
  diff <(cut -f1 "$M/haven-after.txt") <(cut -f1 "$M/restic-after.txt") >&2 \
    || die "KEPT POINTS DIFFER: haven and restic kept different days (diff above: < haven, > restic)"
fi
[ "$mismatch" = 0 ] || die "kept points differ from the expected set"
log "kept points: $(cut -f1 "$M/expected-kept.txt" | tr '\n' ' ')"

# ---------------------------------------------------------------- 4. sizes after
[ "$RUN_HAVEN" = 1 ] && record haven size_after "$(repo_bytes "$HREPO")"
[ "$RUN_RESTIC" = 1 ] && record restic size_after "$(repo_bytes "$RREPO")"

# ---------------------------------------------------------------- 6. correctness after gc
if [ "$RUN_HAVEN" = 1 ]; then
  log "haven: restoring $NAME:latest and comparing with cur.img"
  rm -f "$RESTORED"
  "$HAVEN" -r "$HREPO" restore image "$NAME:latest" --to "$RESTORED" >"$LOGS/haven-restore-latest.log" 2>&1 \
    || { cat "$LOGS/haven-restore-latest.log" >&2; die "haven restore $NAME:latest failed"; }
  cmp "$RESTORED" "$CUR" || die "RESTORED $NAME:latest DIFFERS FROM cur.img"
  latest_id=$(tail -n 1 "$M/haven-after.txt" | cut -f3)
  while IFS=$'\t' read -r day _ id; do
    [ "$id" = "$latest_id" ] && continue
    want=$(awk -F'\t' -v d="$day" '$2 == d { print $3 }' "$NIGHTS_TSV")
    [ -n "$want" ] || die "haven point $id has date $day, which is not a night of this run"
    log "haven: restoring $id ($day) and comparing sha256"
    rm -f "$RESTORED"
    "$HAVEN" -r "$HREPO" restore image "$id" --to "$RESTORED" >"$LOGS/haven-restore-$day.log" 2>&1 \
      || { cat "$LOGS/haven-restore-$day.log" >&2; die "haven restore $id ($day) failed"; }
    got=$(sha_of "$RESTORED")
    [ "$got" = "$want" ] || die "RESTORED POINT $id ($day) DIFFERS: sha256 $got, night had $want"
  done <"$M/haven-after.txt"
  rm -f "$RESTORED"
  log "haven: all $(wc -l <"$M/haven-after.txt") kept points restore to the bytes of their night"
fi

# ---------------------------------------------------------------- 4b. check --read-data
if [ "$RUN_HAVEN" = 1 ]; then
  warm "$HREPO"
  timed haven check "$HAVEN" -r "$HREPO" --json check --read-data
  python3 - "$LOGS/haven-check.out" "$RAW" "$(repo_bytes "$HREPO/packs")" <<'PY' || die "haven check --json: unexpected output"
import json, sys
out, raw, packs = sys.argv[1], sys.argv[2], int(sys.argv[3])
j = json.load(open(out))
if not j.get("ok", False):
    sys.exit(f"haven check reports damage: {j.get('findings')}")
with open(raw, "a") as f:
    f.write(f"haven\tcheck_bytes\t{j.get('bytes_read', packs)}\n")
    if "read_seconds" in j:
        f.write(f"haven\tcheck_read_seconds\t{j['read_seconds']}\n")
PY
fi
if [ "$RUN_RESTIC" = 1 ]; then
  warm "$RREPO"
  timed restic check restic -r "$RREPO" check --read-data
  record restic check_bytes "$(repo_bytes "$RREPO/data")"
fi

# ---------------------------------------------------------------- 5. machine limit
ossl() { # algorithm -> bytes/s, single core, 64 KiB buffers
  openssl speed -evp "$1" -bytes 65536 -seconds 3 2>/dev/null \
    | awk 'END { v = $NF; sub(/k$/, "", v); printf "%.0f", v * 1000 }'
}
log "measuring the machine limit: openssl speed aes-256-gcm and sha256 (3 s each)"
aes=$(ossl aes-256-gcm)
sha=$(ossl sha256)
if [ "${aes:-0}" -le 0 ] || [ "${sha:-0}" -le 0 ]; then die "could not parse openssl speed output"; fi
record machine aes_gcm_Bps "$aes"
record machine sha256_Bps "$sha"
record machine nproc "$(nproc)"

# ---------------------------------------------------------------- 7. report
{
  echo "haven=$([ "$RUN_HAVEN" = 1 ] && { "$HAVEN" --version 2>/dev/null | head -n 1 || echo "$HAVEN"; } || echo skipped)"
  echo "restic=$([ "$RUN_RESTIC" = 1 ] && restic version | head -n 1 || echo skipped)"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') x $(nproc)"
  echo "mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "date=$(date -u +%FT%TZ)"
} >"$M/env.info"

python3 - "$RAW" "$M/env.info" "$M/results.tsv" "$NIGHTS" "$WRITES" "$KEEP_DAILY" "$KEEP_WEEKLY" \
  >"$M/results.md" <<'PY'
import sys
raw, env_path, tsv_path = sys.argv[1:4]
nights, writes, kd, kw = map(int, sys.argv[4:8])
R = {}
for line in open(raw):
    t, k, v = line.rstrip("\n").split("\t")
    R[(t, k)] = float(v)
env = dict(l.strip().split("=", 1) for l in open(env_path) if "=" in l)
g = lambda t, k: R.get((t, k))
MiB, MB = 1048576.0, 1e6

def add(a, b):
    return None if a is None or b is None else a + b
def div(a, b):
    return None if a is None or b is None or b == 0 else a / b
def mib(v):
    return None if v is None else v / MiB
def rss(t, k):
    v = g(t, k)
    return None if v is None else v / 1024

aes, sha, ncpu = g("machine", "aes_gcm_Bps"), g("machine", "sha256_Bps"), g("machine", "nproc")
per_core = 1 / (1 / aes + 1 / sha)
limit = per_core * ncpu

h_fg = add(g("haven", "time_forget"), g("haven", "time_gc"))
h_tp = div(g("haven", "check_bytes"), g("haven", "time_check"))
h_tp_read = div(g("haven", "check_bytes"), g("haven", "check_read_seconds"))
r_tp = div(g("restic", "check_bytes"), g("restic", "time_check"))

def faster(h, r):      # restic time / haven time
    v = div(r, h)
    if v is None: return None, "-"
    return v, (f"{v:.1f}x faster" if v >= 1 else f"{1 / v:.1f}x slower")
def share(h, r):       # haven / restic
    v = div(h, r)
    return v, ("-" if v is None else f"{v:.2f}x")
def none(h, r):
    return None, "-"

rows = []   # label, haven, restic, (ratio value, ratio text), decimals
def row(label, h, r, ratio, nd=1):
    rows.append((label, h, r, ratio(h, r), nd))

row(f"setup: {nights} nightly backups (s, not measured)", g("haven", "setup_seconds"), g("restic", "setup_seconds"), faster)
row("recovery points before", g("haven", "points_before"), g("restic", "points_before"), none, 0)
row(f"recovery points kept (daily {kd} + weekly {kw}; expected {int(g('expected', 'kept'))})",
    g("haven", "points_after"), g("restic", "points_after"), none, 0)
row("repo size before (MiB)", mib(g("haven", "size_before")), mib(g("restic", "size_before")), share)
row("repo size after (MiB)", mib(g("haven", "size_after")), mib(g("restic", "size_after")), share)
row("forget (s)", g("haven", "time_forget"), None, none, 2)
row("gc (s)", g("haven", "time_gc"), None, none, 2)
row("**forget + gc** vs `forget --prune` (s)", h_fg, g("restic", "time_forget_prune"), faster, 2)
row("forget peak RSS (MiB)", rss("haven", "rss_forget"), None, none)
row("**gc** vs `forget --prune` peak RSS (MiB)", rss("haven", "rss_gc"), rss("restic", "rss_forget_prune"), share)
row("check --read-data (s)", g("haven", "time_check"), g("restic", "time_check"), faster, 2)
row("**check --read-data** peak RSS (MiB)", rss("haven", "rss_check"), rss("restic", "rss_check"), share)
row("bytes read by check (MiB)", mib(g("haven", "check_bytes")), mib(g("restic", "check_bytes")), share)
row("read-data throughput, wall (MB/s)", div(h_tp, MB), div(r_tp, MB), share)
row("read-data throughput, read phase (MB/s)", div(h_tp_read, MB), None, none)
row("machine limit (MB/s)", limit / MB, limit / MB, none)
row("**throughput / machine limit** (wall)", div(h_tp, limit), div(r_tp, limit), share, 3)
row("throughput / machine limit (read phase)", div(h_tp_read, limit), None, none, 3)

fmt = lambda v, nd: "-" if v is None else f"{v:.{nd}f}"
print("# Haven maintenance benchmark\n")
print(f"History: {nights} nightly points of the 3 GiB bench image, {writes} x 64 KiB random writes "
      f"per night ({writes * 65536 / MiB:.1f} MiB), stamped 02:00 UTC from 2026-10-01.  ")
print(f"Policy: keep-daily {kd}, keep-weekly {kw}.  ")
print(f"Machine: {env.get('cpu', '?')}, {env.get('mem', '?')}; {env.get('date', '')}.  ")
print(f"Versions: {env.get('haven')}; {env.get('restic')}.  ")
print(f"Machine limit: AES-256-GCM {aes / MB:.0f} MB/s, SHA-256 {sha / MB:.0f} MB/s per core "
      f"(openssl speed, 64 KiB); both in one pass {per_core / MB:.0f} MB/s per core x {int(ncpu)} = {limit / MB:.0f} MB/s.\n")
print("| metric | Haven | restic | ratio |")
print("|---|---:|---:|---:|")
for label, h, r, (rv, rt), nd in rows:
    print(f"| {label} | {fmt(h, nd)} | {fmt(r, nd)} | {rt} |")
print()
print("Time ratios: restic time / Haven time (\"Nx faster\" = Haven is N times faster). "
      "Size, memory and throughput ratios: Haven / restic.\n")

def verdict(name, val, ok, target):
    if val is None:
        return f"* {name}: not measured ({target})"
    return f"* {name}: {val} ({target}): **{'met' if ok else 'NOT met'}**"
fg = div(g("restic", "time_forget_prune"), h_fg)
gm = div(rss("haven", "rss_gc"), rss("restic", "rss_forget_prune"))
cm = div(rss("haven", "rss_check"), rss("restic", "rss_check"))
print("Targets:\n")
print(verdict("forget + gc vs restic forget --prune", None if fg is None else f"{fg:.1f}x faster", fg is not None and fg >= 5, "target: at least 5x faster"))
print(verdict("gc peak RSS / restic prune peak RSS", None if gm is None else f"{gm:.2f}", gm is not None and gm <= 0.5, "target: at most 0.5"))
print(verdict("check peak RSS / restic check peak RSS", None if cm is None else f"{cm:.2f}", cm is not None and cm <= 0.5, "target: at most 0.5"))
tl = div(h_tp, limit)
print(f"* check --read-data throughput / machine limit: {'-' if tl is None else f'{tl:.3f}'} (reported, no target)")

with open(tsv_path, "w") as f:
    f.write("metric\thaven\trestic\tratio\n")
    num = lambda v: "" if v is None else repr(round(v, 6))
    for label, h, r, (rv, rt), nd in rows:
        f.write(f"{label.replace('**', '').replace('`', '')}\t{num(h)}\t{num(r)}\t{num(rv)}\n")
PY

echo
cat "$M/results.md"
echo
log "results: $M/results.md, $M/results.tsv (raw: $RAW, per night: $NIGHTS_TSV, logs: $LOGS)"
