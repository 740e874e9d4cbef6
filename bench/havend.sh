#!/usr/bin/env bash
# Appliance benchmark (issue 16): havend's API latency with 10,000 recovery
# points and a job history under 50 concurrent clients, its idle memory, and
# a backup started through havend against the same backup from `haven`.
# See bench/README.md ("Appliance benchmark").
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/havend.sh [options]

  --rounds N       interleaved backup rounds; medians need 3 or more (default 3)
  --points N       recovery points in the listed repository (default 10000)
  --jobs N         jobs run through the API to make the job history (default 300)
  --clients N      concurrent API clients (default 50)
  --seconds N      length of each load run (default 15)
  --backup-vms N   VMs of the backup comparison; 0 skips it (default 2)
  --data-mib N     MiB of files in each VM's disk (default 256)
  --keep           keep the repositories and the state directory
  -h, --help       this help

Environment:
  BENCH_DIR            work dir (default /var/tmp/haven-bench); everything
                       goes to BENCH_DIR/havend/, wiped at the start
  HAVEN, HAVEND        binaries (default $PWD/build/haven, $PWD/build/havend)
  API_LOAD, FILL       the load generator and the setup tool (default
                       $PWD/build/bench/api_load, $PWD/build/bench/fill_points)
  HAVEND_BENCH_PREFIX  name prefix of the VMs and the network (default hvbd-;
                       [a-z0-9-], at most 10 characters)
USAGE
}

die_usage() { echo "bench/havend.sh: $*" >&2; exit 2; }

ROUNDS=3 POINTS=10000 NJOBS=300 CLIENTS=50 SECONDS_=15 BACKUP_VMS=2 DATA_MIB=256 KEEP=0
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds|--points|--jobs|--clients|--seconds|--backup-vms|--data-mib)
      [ $# -ge 2 ] || die_usage "$1 needs a value (see --help)"
      set -- "$1=$2" "${@:3}" ;;
    --rounds=*) ROUNDS=${1#*=}; shift ;;
    --points=*) POINTS=${1#*=}; shift ;;
    --jobs=*) NJOBS=${1#*=}; shift ;;
    --clients=*) CLIENTS=${1#*=}; shift ;;
    --seconds=*) SECONDS_=${1#*=}; shift ;;
    --backup-vms=*) BACKUP_VMS=${1#*=}; shift ;;
    --data-mib=*) DATA_MIB=${1#*=}; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die_usage "unknown argument '$1' (see --help)" ;;
  esac
done
range() {  # NAME VALUE MIN MAX
  { is_uint "$2" && [ "$((10#$2))" -ge "$3" ] && [ "$((10#$2))" -le "$4" ]; } ||
    die_usage "$1 must be an integer in $3..$4, not '$2'"
}
range --rounds "$ROUNDS" 1 20
range --points "$POINTS" 1 1000000
range --jobs "$NJOBS" 0 10000
range --clients "$CLIENTS" 1 500
range --seconds "$SECONDS_" 1 3600
range --backup-vms "$BACKUP_VMS" 0 20
range --data-mib "$DATA_MIB" 16 900
ROUNDS=$((10#$ROUNDS)) POINTS=$((10#$POINTS)) NJOBS=$((10#$NJOBS)) CLIENTS=$((10#$CLIENTS))
SECONDS_=$((10#$SECONDS_)) BACKUP_VMS=$((10#$BACKUP_VMS)) DATA_MIB=$((10#$DATA_MIB))
PREFIX=${HAVEND_BENCH_PREFIX:-hvbd-}
[[ "$PREFIX" =~ ^[a-z0-9][a-z0-9-]{0,9}$ ]] ||
  die_usage "HAVEND_BENCH_PREFIX must be 1-10 characters of a-z, 0-9 and '-' starting with a letter or digit, not '$PREFIX'"
if [ "$BACKUP_VMS" -gt 0 ] && [ "$(id -u)" != 0 ]; then
  die_usage "run as root: the backup comparison makes VMs on the system libvirt (or give --backup-vms 0)"
fi
HAVEN=${HAVEN:-$PWD/build/haven}
HAVEND=${HAVEND:-$PWD/build/havend}
API_LOAD=${API_LOAD:-$PWD/build/bench/api_load}
FILL=${FILL:-$PWD/build/bench/fill_points}
for b in HAVEN HAVEND API_LOAD FILL; do
  [ -x "${!b}" ] || die_usage "$b: no executable at ${!b} (build it: cmake --build build --target havend haven fill_points api_load)"
done

log() { printf '[havend-bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[havend-bench] ERROR: %s\n' "$*" >&2; exit 1; }

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
SRC=$(cd "$SCRIPT_DIR/.." && pwd -P)
W=${BENCH_DIR:-/var/tmp/haven-bench}
IMG_SIZE=$((16 << 20)) BLOCK=65536    # the small image of the points repository
VMNAMES=()
for i in $(seq 1 "$BACKUP_VMS"); do VMNAMES+=("$(printf '%s%02d' "$PREFIX" "$i")"); done
NET=${PREFIX}net
BRIDGE=${PREFIX//-/}b0
export LC_ALL=C TZ=UTC
export HAVEN_PASSWORD=haven-bench-password

. "$SCRIPT_DIR/lib.sh"
need_pkg python3 python3
need_pkg curl curl
need_pkg flock util-linux
if [ "$BACKUP_VMS" -gt 0 ]; then
  . "$SRC/scripts/libvirt-env.sh"
  need_pkg mkfs.ext4 e2fsprogs
  need_pkg virsh libvirt-clients
  need_pkg /usr/sbin/libvirtd libvirt-daemon-system
  need_pkg qemu-system-x86_64 qemu-system-x86
  need_pkg qemu-img qemu-utils
  haven_libvirt_start || die "libvirtd cannot be started"
fi

mkdir -p "$W"
W=$(cd "$W" && pwd -P)
exec 9>"$W/havend.lock"
flock -n 9 || die "another bench/havend.sh is running on $W"
H=$W/havend
LOGS=$H/logs STATE=$H/state PWF=$H/passphrase
DPID=
cleanup() {
  local rc=$?
  set +e
  [ -z "$DPID" ] || { kill "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null; }
  if [ "$BACKUP_VMS" -gt 0 ]; then
    haven_cleanup_vm "${VMNAMES[@]}"
    haven_cleanup_network "$NET"
  fi
  rm -rf "$H/stage"
  [ "$KEEP" = 1 ] || rm -rf "$H/repos" "$H/vms" "$H/bin" "$STATE" "$H/small.img"
  if [ "$rc" != 0 ] && [ -d "$LOGS" ]; then log "failed (exit $rc): logs kept in $LOGS"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$BACKUP_VMS" -gt 0 ]; then
  haven_cleanup_vm "${VMNAMES[@]}"
  haven_cleanup_network "$NET"
  foreign=$(_hv_virsh list --all --name | grep -E "^${PREFIX}" || true)
  [ -z "$foreign" ] || die "domains with this bench's prefix exist ($(echo $foreign)): remove them or set HAVEND_BENCH_PREFIX"
fi
rm -rf "$H"
NEED_MIB=$((2 * ROUNDS * BACKUP_VMS * DATA_MIB + BACKUP_VMS * 1024 + 2048))
FREE_MIB=$(df -Pm "$W" | awk 'NR == 2 {print $4}')
[ "$FREE_MIB" -ge "$NEED_MIB" ] || die "$W has $FREE_MIB MiB free; this run needs about $NEED_MIB MiB"
mkdir -p "$LOGS" "$H/bin" "$H/repos" "$H/vms"
chmod 711 "$H"
# Copies, so a rebuild during the run does not change what is measured.
cp "$HAVEN" "$H/bin/haven"; cp "$HAVEND" "$H/bin/havend"; cp "$API_LOAD" "$H/bin/api_load"
HAVEN=$H/bin/haven HAVEND=$H/bin/havend API_LOAD=$H/bin/api_load
log "haven sha256 $(sha256sum "$HAVEN" | cut -c1-16), havend sha256 $(sha256sum "$HAVEND" | cut -c1-16); $(nproc) cores"
printf '%s\n' "$HAVEN_PASSWORD" >"$PWF"
chmod 600 "$PWF"
RES=$H/results.json   # every figure, merged into results.md at the end
echo '{}' >"$RES"
put() {  # KEY JSON: RES[KEY] = JSON
  python3 - "$RES" "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); r[sys.argv[2]] = json.loads(sys.argv[3])
json.dump(r, open(sys.argv[1], "w"), indent=1)
PY
}
load1() { cut -d' ' -f1 /proc/loadavg; }
now() { echo "$EPOCHREALTIME"; }

# ---------------------------------------------------------------- repositories
# "points": one real backup of a small image plus POINTS copies of it
# (bench-vm-000.. bench-vm-099, as bench/catalog.sh makes them); "hist": one
# small backup, the target of the history's check jobs; hd-R / hv-R: empty,
# round R's full backup through havend / haven.
R_POINTS=$H/repos/points R_HIST=$H/repos/hist
truncate -s "$IMG_SIZE" "$H/small.img"
randwrite "$H/small.img" 15 64
for r in "$R_POINTS" "$R_HIST"; do
  "$HAVEN" -r "$r" init -q >/dev/null 2>"$LOGS/init.err" || die "init $r: $(cat "$LOGS/init.err")"
  "$HAVEN" -r "$r" backup image "$H/small.img" --name bench-small -q >/dev/null 2>"$LOGS/first.err" ||
    die "first backup: $(cat "$LOGS/first.err")"
done
log "making $POINTS points with fill_points"
FILL_T0=$(now)
HAVEN_PASSWORD=$HAVEN_PASSWORD "$FILL" "$R_POINTS" "$POINTS" 100 >"$LOGS/fill.txt" 2>&1 || die "fill_points: $(tail -3 "$LOGS/fill.txt")"
log "  done in $(python3 -c "print('%.0f' % ($(now) - $FILL_T0))") s"
REPO_ARGS=(--repository "points=$R_POINTS" --password-file "$PWF" --repository "hist=$R_HIST" --password-file "$PWF")
for r in $(seq 1 $((BACKUP_VMS > 0 ? ROUNDS : 0))); do
  for t in hd hv; do
    "$HAVEN" -r "$H/repos/$t-$r" init -q >/dev/null 2>"$LOGS/init.err" || die "init $t-$r: $(cat "$LOGS/init.err")"
  done
  REPO_ARGS+=(--repository "hd-$r=$H/repos/hd-$r" --password-file "$PWF")
done

# ---------------------------------------------------------------- havend
AUDITOR=$("$HAVEND" token create --state-dir "$STATE" --role auditor --name bench 2>"$LOGS/token.err") ||
  die "token create: $(cat "$LOGS/token.err")"
OPERATOR=$("$HAVEND" token create --state-dir "$STATE" --role operator --name bench-op 2>"$LOGS/token.err") ||
  die "token create: $(cat "$LOGS/token.err")"
"$HAVEND" serve --state-dir "$STATE" --listen 127.0.0.1:0 "${REPO_ARGS[@]}" \
  >"$LOGS/havend.out" 2>"$LOGS/havend.log" &
DPID=$!
for _ in $(seq 200); do
  grep -q "listening on" "$LOGS/havend.out" 2>/dev/null && break
  kill -0 "$DPID" 2>/dev/null || die "havend exited: $(tail -5 "$LOGS/havend.log")"
  sleep 0.1
done
PORT=$(sed -n 's#^listening on https://127\.0\.0\.1:\([0-9]*\)/$#\1#p' "$LOGS/havend.out")
[ -n "$PORT" ] || die "no 'listening on' line from havend: $(cat "$LOGS/havend.out")"
URL=https://127.0.0.1:$PORT CA=$STATE/cert.pem
log "havend (pid $DPID) on $URL"
# A token goes to curl through a header file, never argv.
printf 'authorization: Bearer %s\n' "$AUDITOR" >"$H/auditor.hdr"
printf 'authorization: Bearer %s\n' "$OPERATOR" >"$H/operator.hdr"
chmod 600 "$H"/*.hdr
api() {  # ROLE METHOD PATH [BODY]: body in $H/resp, status in CODE
  local extra=()
  [ $# -ge 4 ] && extra=(-H 'content-type: application/json' --data-binary "$4")
  CODE=$(curl -sS --max-time 60 --cacert "$CA" -H "@$H/$1.hdr" -X "$2" -o "$H/resp" -w '%{http_code}' \
    "${extra[@]}" "$URL$3")
}
jget() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($1)" "$H/resp"; }
mem() {  # KEY: havend's VmRSS, VmHWM (KiB) and threads into RES[KEY]
  local rss hwm thr
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$DPID/status")
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$DPID/status")
  thr=$(awk '/^Threads:/ {print $2}' "/proc/$DPID/status")
  put "$1" "{\"rss_kib\": $rss, \"hwm_kib\": $hwm, \"threads\": $thr}"
  log "  $1: VmRSS $((rss >> 10)) MiB, VmHWM $((hwm >> 10)) MiB, $thr threads"
}
sleep 5
mem mem_idle_start

# ---------------------------------------------------------------- job history
# NJOBS check jobs (structure only) of the small repository, all submitted at
# once: they queue and run one after another, as a busy history would.
if [ "$NJOBS" -gt 0 ]; then
  log "job history: $NJOBS check jobs through the API"
  T0=$(now)
  for i in $(seq 1 "$NJOBS"); do
    api operator POST /api/v1/repositories/hist/check '{"read_data_percent": 0}'
    [ "$CODE" = 202 ] || die "check job $i: HTTP $CODE $(cat "$H/resp")"
  done
  LAST=$(jget 'j["job"]')
  for _ in $(seq 6000); do
    api auditor GET "/api/v1/jobs/$LAST"
    s=$(jget 'j["state"]')
    case $s in queued | running) sleep 0.2 ;; *) break ;; esac
  done
  [ "$s" = succeeded ] || die "the last check job is $s: $(head -c 2000 "$H/resp")"
  put jobs "{\"count\": $NJOBS, \"seconds\": $(python3 -c "print('%.1f' % ($(now) - $T0))")}"
  log "  done"
fi

# ---------------------------------------------------------------- API load
P_ALL="/api/v1/points?repository=points&limit=100"
P_VM="/api/v1/points?repository=points&vm=bench-vm-042&limit=100"
P_JOBS="/api/v1/jobs?limit=100"
api auditor GET "$P_ALL"
[ "$CODE" = 200 ] || die "GET $P_ALL: HTTP $CODE $(head -c 500 "$H/resp")"
api auditor GET "$P_VM"
[ "$CODE" = 200 ] || die "GET $P_VM: HTTP $CODE"
[ "$(jget 'len(j["points"]) if isinstance(j, dict) else len(j)')" -ge 1 ] || die "the vm filter lists nothing: $(head -c 500 "$H/resp")"
api auditor GET "$P_JOBS"
[ "$CODE" = 200 ] || die "GET $P_JOBS: HTTP $CODE"
for mode in keepalive newconn; do
  for p in "$P_ALL" "$P_VM" "$P_JOBS"; do
    log "load: $CLIENTS clients, $SECONDS_ s, $mode, $p"
    l=$(load1)
    nc=0
    [ "$mode" = newconn ] && nc=1
    HAVEN_TOKEN=$AUDITOR API_LOAD_NEW_CONNECTIONS=$nc "$API_LOAD" 127.0.0.1 "$PORT" "$CA" "$CLIENTS" "$SECONDS_" "$p" \
      >"$LOGS/load-$mode-$(echo "$p" | md5sum | cut -c1-6).json" 2>>"$LOGS/api_load.err" || die "api_load failed: $(tail -3 "$LOGS/api_load.err")"
    j=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); d['load1']=float(sys.argv[2]); print(json.dumps(d))" \
      "$LOGS/load-$mode-$(echo "$p" | md5sum | cut -c1-6).json" "$l")
    put "load $mode $p" "$j"
    python3 -c "import json,sys; d=json.loads(sys.argv[1])['paths'][sys.argv[2]]; assert d['errors'] == 0 and d['not_200'] == 0 and d['requests'] > 0, d; print('  %d requests, p50 %.1f p90 %.1f p99 %.1f ms' % (d['requests'], d['p50_ms'], d['p90_ms'], d['p99_ms']))" "$j" "$p" >&2 ||
      die "load run had errors or non-200 answers"
  done
done
sleep 5
mem mem_idle_after
# havend's monitor wakes every 60 s (and after every job) and gives freed
# heap back to the system then: idle, a minute later.
sleep 60
mem mem_idle_after_65s

# ---------------------------------------------------------------- backups
if [ "$BACKUP_VMS" -gt 0 ]; then
  log "base image: ext4 with $DATA_MIB MiB of system files; $BACKUP_VMS VMs"
  python3 - "$H/stage" $((DATA_MIB << 20)) <<'PY' || die "could not stage the base image's files"
import os, shutil, sys
dst, budget = sys.argv[1], int(sys.argv[2])
total = 0
for top in ("/usr/share/doc", "/usr/bin", "/usr/lib/x86_64-linux-gnu", "/usr/share/locale", "/usr/lib", "/usr/share"):
    for root, dirs, files in os.walk(top):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            q = os.path.join(dst, p.lstrip("/"))
            if os.path.islink(p) or not os.path.isfile(p) or os.path.exists(q):
                continue
            size = os.path.getsize(p)
            if total + size > budget:
                continue
            os.makedirs(os.path.dirname(q), exist_ok=True)
            shutil.copyfile(p, q)
            total += size
    if total >= budget - (1 << 20):
        break
if total < budget - (1 << 20):
    sys.exit("only %d bytes of files found under /usr" % total)
PY
  mkfs.ext4 -q -F -t ext4 -b 4096 -d "$H/stage" "$H/vms/base.raw" 1G || die "mkfs.ext4 of the base image"
  rm -rf "$H/stage"
  chmod 444 "$H/vms/base.raw"
  haven_make_network "$NET" "$BRIDGE" || die "network $NET"
  for vm in "${VMNAMES[@]}"; do
    HAVEN_VM_VDB_SIZE=0 HAVEN_VM_VDA_SIZE=1G haven_make_vm "$vm" "$H/vms" "$NET" "$H/vms/base.raw" || die "VM $vm"
  done
  printf '%s\n' "${VMNAMES[@]}" >"$H/vms.txt"
  # The fence, as in bench/host.sh: both tools back up `--all` but exclude
  # every name that does not start with PREFIX (PREFIX itself, its proper
  # prefixes, and PREFIX[:i] + [!PREFIX[i]]*), so no other domain is touched.
  FENCE=(--exclude "$PREFIX")
  for ((k = 0; k < ${#PREFIX}; k++)); do
    [ "$k" = 0 ] || FENCE+=(--exclude "${PREFIX:0:k}")
    FENCE+=(--exclude "${PREFIX:0:k}[!${PREFIX:k:1}]*")
  done
  EXCLUDE_JSON=$(python3 -c 'import json,sys; print(json.dumps(sys.argv[2::2]))' "${FENCE[@]}")
  # run_haven R: `haven backup vm --all` into hv-R; wall seconds in T.
  run_haven() {
    local t0 t1 rc=0
    sync
    t0=$(now)
    "$HAVEN" -r "$H/repos/hv-$1" --json backup vm --all "${FENCE[@]}" >"$LOGS/haven-$1.json" 2>"$LOGS/haven-$1.err" || rc=$?
    t1=$(now)
    [ "$rc" = 0 ] || die "haven backup (round $1) exited $rc: $(tail -5 "$LOGS/haven-$1.err")"
    python3 - "$LOGS/haven-$1.json" "$H/vms.txt" <<'PY' || die "haven backup (round $1) is not what was asked"
import json, sys
j = json.load(open(sys.argv[1])); want = open(sys.argv[2]).read().split()
done = [v for v in j["vms"] if v["outcome"] != "skipped"]
assert sorted(v["name"] for v in done) == sorted(want), [v["name"] for v in done]
for v in done:
    assert v["ok"], v
    assert all(d["mode"] == "full" for d in v["disks"]), v["disks"]
PY
    T=$(python3 -c "print('%.4f' % ($t1 - $t0))")
  }
  # run_havend R: POST /api/v1/backups into hd-R, timed until the job's end
  # event on /api/v1/events (the stream is open before the POST).
  run_havend() {
    sync
    T=$(python3 - "$PORT" "$CA" "$H/operator.hdr" "$H/auditor.hdr" "hd-$1" "$H/vms.txt" "$LOGS/havend-$1.json" "$EXCLUDE_JSON" <<'PY'
import http.client, json, ssl, sys, time
port, ca, op_hdr, au_hdr, repo, vms, out, exclude = sys.argv[1:9]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
hdr = lambda f: dict([open(f).read().strip().split(": ", 1)])
sse = http.client.HTTPSConnection("127.0.0.1", int(port), context=ctx, timeout=3600)
sse.request("GET", "/api/v1/events", headers=hdr(au_hdr))
stream = sse.getresponse()
assert stream.status == 200, stream.status
c = http.client.HTTPSConnection("127.0.0.1", int(port), context=ctx, timeout=60)
t0 = time.time()
c.request("POST", "/api/v1/backups", body=json.dumps({"repository": repo, "all": True, "exclude": json.loads(exclude)}),
          headers={**hdr(op_hdr), "content-type": "application/json"})
r = c.getresponse()
body = r.read()
assert r.status == 202, (r.status, body)
job = json.loads(body)["job"]
event, end = None, None
while end is None:
    line = stream.readline().decode()
    if not line:
        sys.exit("the event stream ended before job %d did" % job)
    line = line.rstrip("\n")
    if line.startswith("event: "):
        event = line[7:]
    elif line.startswith("data: ") and event == "state":
        d = json.loads(line[6:])
        if d.get("id") == job and d.get("state") not in ("queued", "running"):
            end = time.time()
            state = d["state"]
c = http.client.HTTPSConnection("127.0.0.1", int(port), context=ctx, timeout=60)
c.request("GET", "/api/v1/jobs/%d" % job, headers=hdr(au_hdr))
j = json.loads(c.getresponse().read())
json.dump(j, open(out, "w"), indent=1)
assert state == "succeeded" and j["state"] == "succeeded", (state, j.get("error"))
want = open(vms).read().split()
done = [i for i in j["items"] if i["outcome"] != "skipped"]
assert sorted(i["name"] for i in done) == sorted(want), [i["name"] for i in done]
assert all(i["outcome"] == "ok" for i in done), done
print("%.4f %.4f" % (end - t0, j["duration_seconds"]))
PY
) || die "backup through havend (round $1) failed; see $LOGS/havend-$1.json"
    read -r T TJOB <<<"$T"
  }
  printf 'round\ttool\tseconds\tjob_seconds\tload1\n' >"$H/backups.tsv"
  for r in $(seq 1 "$ROUNDS"); do
    order=(haven havend)
    [ $((r % 2)) = 0 ] && order=(havend haven)
    for tool in "${order[@]}"; do
      l=$(load1)
      if [ "$tool" = haven ]; then run_haven "$r"; TJOB=-; else run_havend "$r"; fi
      printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$tool" "$T" "$TJOB" "$l" >>"$H/backups.tsv"
      log "round $r: $tool $T s"
    done
  done
  mem mem_after_backups
fi
sleep 3
mem mem_idle_end

# ---------------------------------------------------------------- results
python3 - "$RES" "$H/backups.tsv" "$H/results.md" "$POINTS" "$NJOBS" "$CLIENTS" "$SECONDS_" \
  "$BACKUP_VMS" "$DATA_MIB" "$ROUNDS" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(nproc)" "$P_ALL" "$P_VM" "$P_JOBS" <<'PY'
import json, os, statistics, sys
(res, tsv, md, points, njobs, clients, secs, vms, data_mib, rounds, when, cores,
 p_all, p_vm, p_jobs) = sys.argv[1:16]
R = json.load(open(res))
out = []
jobs = R.get("jobs")
out.append("%s points in the listed repository; a job history of %s check jobs run through the API%s; "
           "%s concurrent clients, %s s per run.\n" % (points, njobs,
           " (%.0f s)" % jobs["seconds"] if jobs else "", clients, secs))
out.append("| request | connections | requests/s | p50 ms | p90 ms | p99 ms | max ms | load (1 min) | p99 < 50 ms |")
out.append("|---|---|---:|---:|---:|---:|---:|---:|---|")
label = {p_all: "`GET /api/v1/points?repository=R&limit=100`", p_vm: "`GET /api/v1/points?...&vm=NAME&limit=100`",
         p_jobs: "`GET /api/v1/jobs?limit=100`"}
for mode, mlabel in (("keepalive", "kept alive"), ("newconn", "new TLS connection each")):
    for p in (p_all, p_vm, p_jobs):
        d = R["load %s %s" % (mode, p)]
        x = d["paths"][p]
        out.append("| %s | %s | %.0f | %.1f | %.1f | %.1f | %.1f | %.1f | %s |" % (
            label[p], mlabel, x["rps"], x["p50_ms"], x["p90_ms"], x["p99_ms"], x["max_ms"], d["load1"],
            "met" if x["p99_ms"] < 50 else "missed"))
out.append("\n| havend memory | VmRSS MiB | VmHWM MiB | threads | RSS < 40 MiB |")
out.append("|---|---:|---:|---:|---|")
for k, l in (("mem_idle_start", "idle, 5 s after start"), ("mem_idle_after", "idle, 5 s after the load runs"),
             ("mem_idle_after_65s", "idle, 65 s after the load runs"),
             ("mem_after_backups", "right after the backup rounds"), ("mem_idle_end", "idle at the end")):
    if k in R:
        m = R[k]
        out.append("| %s | %.1f | %.1f | %d | %s |" % (l, m["rss_kib"] / 1024, m["hwm_kib"] / 1024, m["threads"],
                   ("met" if m["rss_kib"] < 40 * 1024 else "missed") if "idle" in l else ""))
if int(vms) > 0:
    rows = [l.rstrip("\n").split("\t") for l in open(tsv)][1:]
    t = {tool: [float(r[2]) for r in rows if r[1] == tool] for tool in ("haven", "havend")}
    job = [float(r[3]) for r in rows if r[1] == "havend"]
    load = [float(r[4]) for r in rows]
    m = {k: statistics.median(v) for k, v in t.items()}
    out.append("\nFirst (full) backup of %s VMs (%s MiB of files each) into a fresh repository, %s interleaved rounds, "
               "seconds, median (min–max):\n" % (vms, data_mib, rounds))
    out.append("| `haven backup vm --all` (wall) | through havend: POST to the job's end event | havend's job duration | haven / havend | target ≥ 0.95 |")
    out.append("|---:|---:|---:|---:|---|")
    ratio = m["haven"] / m["havend"]
    out.append("| %.2f (%.2f–%.2f) | %.2f (%.2f–%.2f) | %.2f (%.2f–%.2f) | %.3f (per round %s) | %s |" % (
        m["haven"], min(t["haven"]), max(t["haven"]), m["havend"], min(t["havend"]), max(t["havend"]),
        statistics.median(job), min(job), max(job), ratio,
        ", ".join("%.2f" % (a / b) for a, b in zip(t["haven"], t["havend"])), "met" if ratio >= 0.95 else "missed"))
    out.append("\nLoad average (1 min) at the backups' starts: %.1f–%.1f." % (min(load), max(load)))
out.append("\n%s; %s cores." % (when, cores))
open(md, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
log "results: $H/results.md; figures in $RES; logs in $LOGS"
