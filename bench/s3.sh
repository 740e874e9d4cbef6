#!/usr/bin/env bash
# Object storage: `haven backup image` and `haven restore image` of one VM
# image into a Ceph bucket (radosgw, S3) against the same into a local
# directory, side by side with restic's S3 backend against the same radosgw
# and the same image: wall time, HTTP requests per GB and the bytes in the
# bucket, as ratios. Results and how to read them: docs/benchmark-results.md
# ("Object storage (S3 on Ceph radosgw)").
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/s3.sh [options]

  --rounds N        timed rounds, tools interleaved (order alternates), each
                    into new repositories; medians and spreads (default 3)
  --image-mib N     size of the VM disk image (ext4) in MiB (default 1024)
  --data-mib N      MiB of real files in it: a copy of /etc, then this
                    machine's /usr libraries and /usr/share (default 500)
  --ceph-dir DIR    a running cluster of tests/ceph/ceph-cluster.sh (its
                    DIR/s3.env is sourced); default: start one in a temp dir
                    on /var/tmp and stop it at the end
  --skip-restic     Haven only
  --keep            keep the image, the local repository and the logs
  -h, --help        this help

Timed rounds talk to radosgw directly. One more round, untimed, sends both
tools through tests/ceph/fault_proxy.py (no faults) to count their requests.

Environment:
  BENCH_DIR  work dir (default /var/tmp/haven-bench); the base image is kept in
             BENCH_DIR/s3-base.img while its parameters match, everything
             else goes to BENCH_DIR/s3/, wiped at the start
  HAVEN      haven binary (default $PWD/build/haven)
USAGE
}

die_usage() { echo "bench/s3.sh: $*" >&2; exit 2; }
log() { printf '[s3 %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[s3] ERROR: %s\n' "$*" >&2; exit 1; }

ROUNDS=3
IMAGE_MIB=1024
DATA_MIB=500
CEPH_DIR=
RESTIC=1
KEEP=0
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds|--image-mib|--data-mib|--ceph-dir)
      [ $# -ge 2 ] || die_usage "$1 needs a value (see --help)"
      set -- "$1=$2" "${@:3}" ;;
    --rounds=*) ROUNDS=${1#*=}; shift ;;
    --image-mib=*) IMAGE_MIB=${1#*=}; shift ;;
    --data-mib=*) DATA_MIB=${1#*=}; shift ;;
    --ceph-dir=*) CEPH_DIR=${1#*=}; [ -n "$CEPH_DIR" ] || die_usage "--ceph-dir needs a value (see --help)"; shift ;;
    --skip-restic) RESTIC=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die_usage "unknown argument '$1' (see --help)" ;;
  esac
done
{ is_uint "$ROUNDS" && [ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 20 ]; } ||
  die_usage "--rounds must be an integer in 1..20, not '$ROUNDS'"
{ is_uint "$IMAGE_MIB" && [ "$IMAGE_MIB" -ge 128 ] && [ "$IMAGE_MIB" -le 16384 ]; } ||
  die_usage "--image-mib must be an integer in 128..16384, not '$IMAGE_MIB'"
{ is_uint "$DATA_MIB" && [ "$DATA_MIB" -ge 16 ] && [ "$DATA_MIB" -le $((IMAGE_MIB * 8 / 10)) ]; } ||
  die_usage "--data-mib must be an integer in 16..$((IMAGE_MIB * 8 / 10)) (80% of the image), not '$DATA_MIB'"
if [ -n "$CEPH_DIR" ]; then
  [ -f "$CEPH_DIR/s3.env" ] || die_usage "--ceph-dir: no s3.env in '$CEPH_DIR' (start one with tests/ceph/ceph-cluster.sh start DIR)"
  CEPH_DIR=$(cd "$CEPH_DIR" && pwd -P)
fi
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
SRC_DIR=$(dirname "$SCRIPT_DIR")
CLUSTER=$SRC_DIR/tests/ceph/ceph-cluster.sh
PROXY=$SRC_DIR/tests/ceph/fault_proxy.py
[ -f "$CLUSTER" ] && [ -f "$PROXY" ] || die_usage "tests/ceph/ceph-cluster.sh or fault_proxy.py missing next to bench/"
HAVEN=${HAVEN:-$PWD/build/haven}
[ -x "$HAVEN" ] || die_usage "haven binary not found at $HAVEN (build it or set HAVEN=/path/to/haven)"
HAVEN=$(readlink -f "$HAVEN")

# ---------------------------------------------------------------- parameters
W=${BENCH_DIR:-/var/tmp/haven-bench}
export LC_ALL=C TZ=UTC
export HAVEN_PASSWORD=haven-bench-password RESTIC_PASSWORD=haven-bench-password
IMG_SIZE=$((IMAGE_MIB << 20))
BLOCK=65536
. "$SCRIPT_DIR/lib.sh"
need_pkg /usr/bin/time time
need_pkg python3 python3
need_pkg flock util-linux
need_pkg mke2fs e2fsprogs
need_pkg curl curl
if [ "$RESTIC" = 1 ]; then need_pkg restic restic; fi

mkdir -p "$W"
W=$(cd "$W" && pwd -P)
exec 9>"$W/s3.lock"
flock -n 9 || die "another bench/s3.sh is running on $W"

D=$W/s3
BASE=$W/s3-base.img
IMG=$D/vm.img
LREPO=$D/haven-local
OUT=$D/out
LOGS=$D/logs
RAW=$D/raw.tsv             # tool <tab> step <tab> round <tab> key <tab> value
rm -rf "$D"
mkdir -p "$D/bin" "$LOGS" "$OUT"
: >"$RAW"
cp "$HAVEN" "$D/bin/haven"   # a rebuild during the run changes nothing
log "haven: $HAVEN (sha256 $(sha256sum "$HAVEN" | cut -c1-16))"
HAVEN=$D/bin/haven
export RESTIC_CACHE_DIR=$D/cache/restic XDG_CACHE_HOME=$D/cache/xdg
RUN_ID=bench-s3-$(date -u +%Y%m%dT%H%M%S)-$$   # unique prefixes in the bucket
OWN_CLUSTER=
PROXY_PID=

cleanup() {
  local rc=$?
  set +e
  if [ -n "$PROXY_PID" ]; then kill "$PROXY_PID" 2>/dev/null; wait "$PROXY_PID" 2>/dev/null; fi
  if [ -n "$OWN_CLUSTER" ]; then
    log "stopping the cluster in $OWN_CLUSTER"
    bash "$CLUSTER" stop "$OWN_CLUSTER" >/dev/null 2>&1
  fi
  if [ "$rc" != 0 ]; then
    log "failed (exit $rc): keeping $D for inspection"
  elif [ "$KEEP" = 0 ]; then
    rm -rf "$IMG" "$LREPO" "$OUT" "$D/cache" "${D:?}/bin"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- the cluster
if [ -z "$CEPH_DIR" ]; then
  OWN_CLUSTER=$(mktemp -d /var/tmp/haven-bench-ceph.XXXXXX)
  log "starting a Ceph cluster with radosgw in $OWN_CLUSTER"
  set +e
  bash "$CLUSTER" start "$OWN_CLUSTER" >"$LOGS/ceph-start.log" 2>&1
  rc=$?
  set -e
  if [ "$rc" != 0 ]; then
    tail -n 20 "$LOGS/ceph-start.log" >&2
    [ "$rc" = 77 ] && die "no Ceph here (tests/ceph/ceph-cluster.sh exit 77): install ceph-mon ceph-mgr ceph-osd radosgw ceph-common"
    die "tests/ceph/ceph-cluster.sh start failed (exit $rc)"
  fi
  CEPH_DIR=$OWN_CLUSTER
fi
. "$CEPH_DIR/s3.env"
BUCKET=${HAVEN_S3_PLAIN_BUCKET:-haven-plain}
RGW_PORT=${HAVEN_S3_ENDPOINT##*:}
curl -s -o /dev/null --max-time 5 "$HAVEN_S3_ENDPOINT/" || die "radosgw at $HAVEN_S3_ENDPOINT does not answer"
log "radosgw: $HAVEN_S3_ENDPOINT, bucket $BUCKET, prefixes $RUN_ID/..."

record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RAW"; }
load1() { cut -d' ' -f1 /proc/loadavg; }
bytes_of() { du -sb "$1" | cut -f1; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# bucket_bytes PREFIX: objects and bytes under PREFIX/ (ListObjectsV2, SigV4
# signed here: curl 7.88 signs some query strings wrongly, tests/ceph/README.md).
bucket_bytes() {
  python3 - "$HAVEN_S3_ENDPOINT" "$BUCKET" "$1/" <<'PY'
import datetime, hashlib, hmac, os, re, sys, urllib.parse, urllib.request
endpoint, bucket, prefix = sys.argv[1:4]
key, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
host = urllib.parse.urlparse(endpoint).netloc
region = os.environ.get("HAVEN_S3_REGION", "us-east-1")
def get(query):
    now = datetime.datetime.now(datetime.timezone.utc)
    amz, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    q = "&".join("%s=%s" % (urllib.parse.quote(k, safe="-_.~"), urllib.parse.quote(v, safe="-_.~"))
                 for k, v in sorted(query.items()))
    ph = hashlib.sha256(b"").hexdigest()
    canon = "\n".join(["GET", "/" + bucket, q, "host:%s\nx-amz-content-sha256:%s\nx-amz-date:%s\n" % (host, ph, amz),
                       "host;x-amz-content-sha256;x-amz-date", ph])
    scope = "%s/%s/s3/aws4_request" % (day, region)
    sts = "AWS4-HMAC-SHA256\n%s\n%s\n%s" % (amz, scope, hashlib.sha256(canon.encode()).hexdigest())
    k = ("AWS4" + secret).encode()
    for part in (day, region, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request("%s/%s?%s" % (endpoint, bucket, q), headers={
        "x-amz-date": amz, "x-amz-content-sha256": ph,
        "Authorization": "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
                         "Signature=%s" % (key, scope, sig)})
    return urllib.request.urlopen(req, timeout=30).read().decode()
n = total = 0
query = {"list-type": "2", "prefix": prefix, "max-keys": "1000"}
while True:
    body = get(query)
    sizes = [int(s) for s in re.findall(r"<Size>(\d+)</Size>", body)]
    n += len(sizes)
    total += sum(sizes)
    tok = re.search(r"<NextContinuationToken>([^<]*)</NextContinuationToken>", body)
    if "<IsTruncated>true</IsTruncated>" not in body or not tok:
        break
    query["continuation-token"] = tok.group(1).replace("&amp;", "&")
print(n, total)
PY
}

# ---------------------------------------------------------------- the image
# A copy of /etc, then this machine's libraries and /usr/share (as
# real_files in tests/integration/lib.sh), on a fresh ext4 file system: the
# same recipe as bench/copy.sh's base image.
STAMP_TEXT="image_mib=$IMAGE_MIB data_mib=$DATA_MIB v1"
if [ "$(cat "$BASE.stamp" 2>/dev/null)" != "$STAMP_TEXT" ] || [ ! -f "$BASE" ]; then
  log "base image: $IMAGE_MIB MiB ext4 with $DATA_MIB MiB of /etc and /usr files"
  rm -f "$BASE" "$BASE.stamp"
  STAGE=$W/s3-stage
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
for top in ("/usr/lib/x86_64-linux-gnu", "/usr/share", "/usr/lib", "/usr/bin"):
    for root, dirs, files in os.walk(top):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            if not os.path.isfile(p) or os.path.islink(p):
                continue
            t = os.path.join(dst, p.lstrip("/"))
            if os.path.exists(t) or os.path.getsize(p) > limit - total:
                continue        # a file that would overshoot --data-mib is skipped
            os.makedirs(os.path.dirname(t), exist_ok=True)
            try:
                shutil.copy2(p, t)
            except OSError:
                continue
            total += os.path.getsize(t)
            if total >= limit - (64 << 10):
                sys.exit(0)
if total < limit * 9 // 10:
    sys.exit("not enough files under /usr")
PY
  E2FSPROGS_FAKE_TIME=1700000000 mke2fs -F -q -t ext4 -b 4096 \
    -U 5a1e7c1e-4a7e-4b3e-9a5e-000000000053 -E hash_seed=5a1e7c1e-4a7e-4b3e-9a5e-000000000054 \
    -d "$STAGE" "$BASE.tmp" "${IMAGE_MIB}M" >"$W/s3-mke2fs.log" 2>&1 ||
    { cat "$W/s3-mke2fs.log" >&2; die "mke2fs failed"; }
  rm -rf "$STAGE" "$W/s3-mke2fs.log"
  mv "$BASE.tmp" "$BASE"
  echo "$STAMP_TEXT" >"$BASE.stamp"
fi
cp --sparse=always "$BASE" "$IMG"
IMG_SUM=$(sha256sum "$IMG" | cut -c1-64)
DATA_BYTES=$(($(stat -c %b "$IMG") * $(stat -c %B "$IMG")))
log "image: $IMAGE_MIB MiB, $((DATA_BYTES >> 20)) MiB allocated"

# ---------------------------------------------------------------- the counting proxy
# tests/ceph/fault_proxy.py with no faults: it forwards every request and
# writes the count to its --stats file after each.
start_proxy() {  # STATS_FILE: sets PROXY_PID and PROXY_PORT
  PROXY_PORT=$(free_port)
  python3 "$PROXY" "$PROXY_PORT" "$RGW_PORT" --stats "$1" \
    >"$LOGS/proxy-$PROXY_PORT.log" 2>&1 &
  PROXY_PID=$!
  for _ in $(seq 50); do
    [ -f "$1" ] && (exec 3<>"/dev/tcp/127.0.0.1/$PROXY_PORT") 2>/dev/null && return 0
    sleep 0.1
  done
  die "fault_proxy.py did not start (see $LOGS/proxy-$PROXY_PORT.log)"
}
stop_proxy() { kill "$PROXY_PID" 2>/dev/null; wait "$PROXY_PID" 2>/dev/null || true; PROXY_PID=; }
requests_in() { sleep 0.4; python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["requests"])' "$1"; }

# ---------------------------------------------------------------- timing
# timed TOOL STEP ROUND cmd...: after a sync, runs cmd under /usr/bin/time -v;
# records wall, CPU (user + sys) and max RSS (KiB).
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
    if ": " in line:
        k, v = line.strip().rsplit(": ", 1)
        t[k.strip()] = v.strip()
w = 0.0
for p in t["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":"):
    w = w * 60 + float(p)
print("wall\t%.3f" % w)
print("cpu\t%.2f" % (float(t["User time (seconds)"]) + float(t["System time (seconds)"])))
print("rss_kib\t%s" % t["Maximum resident set size (kbytes)"])
PY
  log "$tool $step (round $round): $(awk -F'\t' -v t="$tool" -v s="$step" -v r="$round" \
    '$1 == t && $2 == s && $3 == r && $4 ~ /^(wall|cpu)$/ {printf "%s=%s ", $4, $5}' "$RAW")load $(load1)"
}

# ---------------------------------------------------------------- commands
# repo_for TOOL ROUND [ENDPOINT]: sets REPO (and the cache dir for Haven).
repo_for() {
  local ep=${3:-$HAVEN_S3_ENDPOINT}
  case "$1" in
    haven-local) REPO=$LREPO ;;
    haven-ceph) REPO=s3:$ep/$BUCKET/$RUN_ID/haven-$2 ;;
    restic-ceph) REPO=s3:$ep/$BUCKET/$RUN_ID/restic-$2 ;;
  esac
  export HAVEN_CACHE_DIR=$D/cache/haven-$1-$2
}
init_repo() {  # TOOL
  case "$1" in
    haven-*) "$HAVEN" -q -r "$REPO" init >"$LOGS/init-$1.log" 2>&1 ;;
    restic-*) restic -r "$REPO" init >"$LOGS/init-$1.log" 2>&1 ;;
  esac || { cat "$LOGS/init-$1.log" >&2; die "$1: init of $REPO failed"; }
}
cmd_for() {  # TOOL STEP: sets CMD and RESTORED (the restored image's path)
  case "$1-$2" in
    haven-*-backup) CMD=("$HAVEN" -r "$REPO" --json backup image "$IMG" --name vm) ;;
    haven-*-restore) RESTORED=$OUT/haven.img
      CMD=("$HAVEN" -r "$REPO" restore image vm:latest --to "$RESTORED") ;;
    restic-*-backup) CMD=(restic -r "$REPO" backup --host haven-bench "$IMG") ;;
    # `sync FILE` fsyncs the restored image: Haven's restore is durable when it returns.
    restic-*-restore) RESTORED=$OUT/restic$IMG
      CMD=(sh -c 'restic -r "$1" restore latest --host haven-bench --target "$2" && sync "$3"' sh "$REPO" "$OUT/restic" "$RESTORED") ;;
  esac
}
verify() {  # TOOL
  [ "$(sha256sum "$RESTORED" | cut -c1-64)" = "$IMG_SUM" ] || die "$1: the restored image differs from the source ($RESTORED)"
  log "$1: restored image verified identical"
}

TOOLS=(haven-local haven-ceph)
if [ "$RESTIC" = 1 ]; then TOOLS+=(restic-ceph); fi
for r in $(seq 1 "$ROUNDS"); do
  order=("${TOOLS[@]}")
  if [ $((r % 2)) = 0 ]; then
    order=()
    for ((i = ${#TOOLS[@]} - 1; i >= 0; i--)); do order+=("${TOOLS[i]}"); done
  fi
  log "round $r/$ROUNDS (${order[*]})"
  for t in "${order[@]}"; do
    rm -rf "$LREPO" "$OUT"
    mkdir -p "$OUT"
    repo_for "$t" "$r"
    init_repo "$t"
    cat "$IMG" >/dev/null                       # the source from the page cache, for all
    cmd_for "$t" backup
    timed "$t" backup "$r" "${CMD[@]}"
    cmd_for "$t" restore
    timed "$t" restore "$r" "${CMD[@]}"
    [ "$r" = 1 ] && verify "$t"
    case "$t" in
      haven-local) record "$t" repo "$r" bytes "$(bytes_of "$LREPO")"
        record "$t" repo "$r" objects "$(find "$LREPO" -type f | wc -l)" ;;
      *) read -r n b < <(bucket_bytes "${REPO#s3:"$HAVEN_S3_ENDPOINT/$BUCKET/"}")
        record "$t" repo "$r" bytes "$b"
        record "$t" repo "$r" objects "$n" ;;
    esac
    rm -rf "$OUT" "$HAVEN_CACHE_DIR"
  done
done

# ---------------------------------------------------------------- requests
# One more round (untimed) through the counting proxy: new prefixes, same
# commands; requests of init are counted apart.
for t in "${TOOLS[@]}"; do
  [ "$t" = haven-local ] && continue
  rm -rf "$OUT"
  mkdir -p "$OUT"
  start_proxy "$D/proxy-$t.json"
  repo_for "$t" counted "http://127.0.0.1:$PROXY_PORT"
  log "requests: $t through fault_proxy.py on port $PROXY_PORT"
  init_repo "$t"
  n0=$(requests_in "$D/proxy-$t.json")
  cmd_for "$t" backup
  "${CMD[@]}" >"$LOGS/$t-backup-counted.out" 2>"$LOGS/$t-backup-counted.err" </dev/null ||
    { tail "$LOGS/$t-backup-counted.err" >&2; die "$t backup through the proxy failed"; }
  n1=$(requests_in "$D/proxy-$t.json")
  cmd_for "$t" restore
  "${CMD[@]}" >"$LOGS/$t-restore-counted.out" 2>"$LOGS/$t-restore-counted.err" </dev/null ||
    { tail "$LOGS/$t-restore-counted.err" >&2; die "$t restore through the proxy failed"; }
  n2=$(requests_in "$D/proxy-$t.json")
  verify "$t (through the proxy)"
  stop_proxy
  record "$t" init 0 requests "$n0"
  record "$t" backup 0 requests $((n1 - n0))
  record "$t" restore 0 requests $((n2 - n1))
  log "requests: $t init $n0, backup $((n1 - n0)), restore $((n2 - n1))"
  rm -rf "$OUT" "$HAVEN_CACHE_DIR"
done

# ---------------------------------------------------------------- report
{
  echo "haven=$("$HAVEN" --version 2>/dev/null | head -1)"
  echo "restic=$([ "$RESTIC" = 1 ] && restic version | head -1 || echo skipped)"
  echo "ceph=$(radosgw --version 2>/dev/null | head -1 | cut -d' ' -f1-3 || echo '?')"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') x $(nproc)"
  echo "mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "date=$(date -u +%FT%TZ)"
  echo "rounds=$ROUNDS"
  echo "image_mib=$IMAGE_MIB"
  echo "data_mib=$DATA_MIB"
  echo "data_bytes=$DATA_BYTES"
  echo "command=bench/s3.sh --rounds $ROUNDS --image-mib $IMAGE_MIB --data-mib $DATA_MIB$([ "$RESTIC" = 1 ] || echo ' --skip-restic')"
} >"$D/env.info"

python3 - "$RAW" "$D/env.info" >"$D/results.md" <<'PY'
import statistics, sys
raw, env_path = sys.argv[1:3]
env = dict(l.rstrip("\n").split("=", 1) for l in open(env_path) if "=" in l)
V = {}
for line in open(raw):
    tool, step, rnd, k, v = line.rstrip("\n").split("\t")
    V.setdefault((tool, step, k), []).append(float(v))
MB, GB = 1e6, 1e9
data = int(env["data_bytes"])
restic = ("restic-ceph", "backup", "wall") in V

def med(t, s, k):
    v = V.get((t, s, k))
    return statistics.median(v) if v else None

def cell(t, s, k="wall"):
    v = V.get((t, s, k))
    if not v:
        return "–"
    return f"{statistics.median(v):.2f} ({min(v):.2f}–{max(v):.2f})"

def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "–"

print("# Object storage: Haven on Ceph radosgw vs a local directory vs restic's S3 backend\n")
print(f"Machine: {env['cpu']}, {env['mem']}; {env['date']}.  ")
print(f"Versions: {env['haven']}; {env['restic']}; {env['ceph']} (single-node cluster of tests/ceph, OSD on a file).  ")
print(f"Data: a {env['image_mib']} MiB ext4 image with {env['data_mib']} MiB of /etc and /usr files "
      f"({data / MB:.0f} MB allocated).  ")
print(f"Command: `{env['command']}`; {env['rounds']} rounds, tools interleaved (order alternates), new "
      "repositories each round; medians (min–max). Timed rounds talk to radosgw directly; requests were "
      "counted in one more round through tests/ceph/fault_proxy.py. Restores are durable (Haven fsyncs; "
      "restic's output is `sync`ed in the timed command).\n")
print("| step | haven, local dir (s) | haven, Ceph (s) | restic, Ceph (s) | haven Ceph / local | restic / haven (Ceph) |")
print("|---|---:|---:|---:|---:|---:|")
for s in ("backup", "restore"):
    hl, hc, rc = med("haven-local", s, "wall"), med("haven-ceph", s, "wall"), med("restic-ceph", s, "wall")
    print(f"| {s} | {cell('haven-local', s)} | {cell('haven-ceph', s)} | {cell('restic-ceph', s)} "
          f"| {ratio(hc, hl)} | {ratio(rc, hc)} |")
ld = lambda t: f"{med(t, 'backup', 'load_before'):.1f}" if med(t, "backup", "load_before") is not None else "–"
print(f"| load average before (1 min, backups) | {ld('haven-local')} | {ld('haven-ceph')} | {ld('restic-ceph')} | | |")
print()
print("| step | haven local MB/s | haven Ceph MB/s | restic Ceph MB/s | haven CPU s (local / Ceph) | restic CPU s |")
print("|---|---:|---:|---:|---:|---:|")
for s in ("backup", "restore"):
    f = lambda t: f"{data / med(t, s, 'wall') / MB:.0f}" if med(t, s, "wall") else "–"
    c = lambda t: f"{med(t, s, 'cpu'):.1f}" if med(t, s, "cpu") is not None else "–"
    print(f"| {s} | {f('haven-local')} | {f('haven-ceph')} | {f('restic-ceph')} "
          f"| {c('haven-local')} / {c('haven-ceph')} | {c('restic-ceph')} |")
print()
print(f"HTTP requests (one round through the proxy; per GB of image data, {data / GB:.3f} GB):\n")
print("| step | haven requests | haven per GB | restic requests | restic per GB | restic / haven |")
print("|---|---:|---:|---:|---:|---:|")
for s in ("init", "backup", "restore"):
    h, r = med("haven-ceph", s, "requests"), med("restic-ceph", s, "requests")
    fr = lambda x: f"{x:.0f}" if x is not None else "–"
    pg = lambda x: f"{x / (data / GB):.0f}" if x is not None else "–"
    print(f"| {s} | {fr(h)} | {pg(h)} | {fr(r)} | {pg(r)} | {ratio(r, h)} |")
print()
print("Repository after the backup (medians over the rounds):\n")
print("| | haven, local dir | haven, bucket | restic, bucket | restic / haven (bucket) |")
print("|---|---:|---:|---:|---:|")
hb, rb = med("haven-ceph", "repo", "bytes"), med("restic-ceph", "repo", "bytes")
mb = lambda x: f"{x / MB:.1f}" if x is not None else "–"
print(f"| bytes (MB) | {mb(med('haven-local', 'repo', 'bytes'))} | {mb(hb)} | {mb(rb)} | {ratio(rb, hb)} |")
ob = lambda t: f"{med(t, 'repo', 'objects'):.0f}" if med(t, "repo", "objects") is not None else "–"
print(f"| files / objects | {ob('haven-local')} | {ob('haven-ceph')} | {ob('restic-ceph')} | "
      f"{ratio(med('restic-ceph', 'repo', 'objects'), med('haven-ceph', 'repo', 'objects'))} |")
print("\n(The local directory also holds Haven's index, a RocksDB; the bucket holds only the repository's objects.)\n")
print("| peak RSS, backup (MiB) | haven local | haven Ceph | restic Ceph |")
print("|---|---:|---:|---:|")
print(f"| | {med('haven-local', 'backup', 'rss_kib') / 1024:.0f} | "
      f"{med('haven-ceph', 'backup', 'rss_kib') / 1024:.0f} | "
      f"{(med('restic-ceph', 'backup', 'rss_kib') or 0) / 1024:.0f} |")
PY

echo
cat "$D/results.md"
echo
log "results: $D/results.md (raw: $RAW, logs: $LOGS); bucket prefixes $BUCKET/$RUN_ID/ are left in the cluster"
