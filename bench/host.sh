#!/usr/bin/env bash
# The nightly window: wall time of `haven backup vm --all` on a libvirt host of
# idle VMs and of busy VMs, serial and parallel, against virtnbdbackup run VM
# after VM the way admins script it today. Every measured run is the nightly
# incremental (each tool made its full backup first). See bench/README.md
# ("Host benchmark").
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/host.sh [options]

  --rounds N          interleaved rounds; medians need 3 or more (default 3)
  --vms "1 4 12"      host sizes of the idle scenarios, in VMs (default "1 4 12")
  --busy-vms N        VMs of the busy scenario; 0 skips it (default 4)
  --changed-mib N     MiB each busy VM writes before every run (default 256)
  --parallel-set LIST Haven settings, space or comma separated: "default" (no
                      --parallel flag) and numbers N (--parallel N). Default:
                      "default 1 2 3 4" when `haven backup vm` has --parallel,
                      else "default" (which is then serial)
  --keep              keep the VM disks, Haven's repository and virtnbdbackup's
                      folders (the VMs and their network are always removed)
  -h, --help          this help

Environment:
  BENCH_DIR          work dir (default /var/tmp/haven-bench); everything goes to
                     BENCH_DIR/host/
  HAVEN              haven binary (default $PWD/build/haven)
  VIRTNBDBACKUP      virtnbdbackup command (default virtnbdbackup)
  HOST_BENCH_PREFIX  name prefix of the VMs and the network it makes
                     (default hvhb-; [a-z0-9-], at most 10 characters)
USAGE
}

die_usage() { echo "bench/host.sh: $*" >&2; exit 2; }

ROUNDS=3
VMS_LIST="1 4 12"
BUSY_VMS=4
CHANGED_MIB=256
PARALLEL_SET=
KEEP=0
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds|--vms|--busy-vms|--changed-mib|--parallel-set)
      [ $# -ge 2 ] || die_usage "$1 needs a value (see --help)"
      set -- "$1=$2" "${@:3}" ;;
    --rounds=*) ROUNDS=${1#*=}; shift ;;
    --vms=*) VMS_LIST=${1#*=}; shift ;;
    --busy-vms=*) BUSY_VMS=${1#*=}; shift ;;
    --changed-mib=*) CHANGED_MIB=${1#*=}; shift ;;
    --parallel-set=*) PARALLEL_SET=${1#*=}; [ -n "$PARALLEL_SET" ] || die_usage "--parallel-set is empty"; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die_usage "unknown argument '$1' (see --help)" ;;
  esac
done
{ is_uint "$ROUNDS" && [ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 20 ]; } ||
  die_usage "--rounds must be an integer in 1..20, not '$ROUNDS'"
read -r -a IDLE_NS <<<"${VMS_LIST//,/ }"
[ ${#IDLE_NS[@]} -ge 1 ] || die_usage "--vms lists no host size"
for n in "${IDLE_NS[@]}"; do
  { is_uint "$n" && [ "$n" -ge 1 ] && [ "$n" -le 40 ]; } ||
    die_usage "--vms: '$n' is not a number of VMs in 1..40"
done
mapfile -t IDLE_NS < <(printf '%s\n' "${IDLE_NS[@]}" | sort -n -u | sed 's/^0*//')
{ is_uint "$BUSY_VMS" && [ "$BUSY_VMS" -le 40 ]; } ||
  die_usage "--busy-vms must be an integer in 0..40, not '$BUSY_VMS'"
BUSY_VMS=$((10#$BUSY_VMS))
# Each busy VM writes CHANGED_MIB distinct 1 MiB blocks of its 1 GiB disk.
{ is_uint "$CHANGED_MIB" && [ "$CHANGED_MIB" -ge 1 ] && [ "$CHANGED_MIB" -le 1024 ]; } ||
  die_usage "--changed-mib must be an integer in 1..1024 (the disk is 1 GiB), not '$CHANGED_MIB'"
CHANGED_MIB=$((10#$CHANGED_MIB))
PREFIX=${HOST_BENCH_PREFIX:-hvhb-}
[[ "$PREFIX" =~ ^[a-z0-9][a-z0-9-]{0,9}$ ]] ||
  die_usage "HOST_BENCH_PREFIX must be 1-10 characters of a-z, 0-9 and '-' starting with a letter or digit, not '$PREFIX'"

[ "$(id -u)" = 0 ] || die_usage "run as root: the VMs are made on the system libvirt (qemu:///system)"
VNB=${VIRTNBDBACKUP:-virtnbdbackup}
command -v "$VNB" >/dev/null 2>&1 ||
  die_usage "virtnbdbackup ('$VNB') is not installed: run HAVEN_WITH_PEERS=1 scripts/install-deps.sh"
HAVEN=${HAVEN:-$PWD/build/haven}
[ -x "$HAVEN" ] || die_usage "haven binary not found at $HAVEN (build it or set HAVEN=/path/to/haven)"
HAVEN=$(readlink -f "$HAVEN")
vm_help=$("$HAVEN" backup vm --help 2>&1 || true)
grep -q -- '--all' <<<"$vm_help" || die_usage "$HAVEN has no 'backup vm --all' (rebuild it)"
HAS_PARALLEL=0
grep -qE -- '--parallel([ =]|$)' <<<"$vm_help" && HAS_PARALLEL=1
if [ -z "$PARALLEL_SET" ]; then
  if [ "$HAS_PARALLEL" = 1 ]; then PARALLEL_SET="default 1 2 3 4"; else PARALLEL_SET="default"; fi
fi
read -r -a given <<<"${PARALLEL_SET//,/ }"
SETS=()
declare -A seen=()
for s in "${given[@]}"; do
  if [ "$s" = default ]; then :
  elif is_uint "$s" && [ "$((10#$s))" -ge 1 ] && [ "$((10#$s))" -le 64 ]; then
    [ "$HAS_PARALLEL" = 1 ] ||
      die_usage "--parallel-set: '$s' needs 'haven backup vm --parallel', which $HAVEN does not have (give \"default\" or nothing)"
    s=$((10#$s))
  else
    die_usage "--parallel-set: '$s' is neither 'default' nor a number of VMs in 1..64"
  fi
  [ -z "${seen[$s]:-}" ] || die_usage "--parallel-set: '$s' is given twice"
  seen[$s]=1
  SETS+=("$s")
done
[ ${#SETS[@]} -ge 1 ] || die_usage "--parallel-set lists no setting"
unset seen given

log() { printf '[host-bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[host-bench] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- parameters
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
SRC=$(cd "$SCRIPT_DIR/.." && pwd -P)
W=${BENCH_DIR:-/var/tmp/haven-bench}
DISK_SIZE=1G                  # each VM's vda (virtual)
DATA_BYTES=$((512 << 20))     # system files in it, written once (a shared base)
BLOCK=$((1 << 20))            # busy writes: CHANGED_MIB distinct 1 MiB blocks
POOL=${IDLE_NS[-1]}
[ "$BUSY_VMS" -le "$POOL" ] || POOL=$BUSY_VMS
HNAMES=() VNAMES=()           # Haven's VMs and their twins for virtnbdbackup
for i in $(seq 1 "$POOL"); do
  HNAMES+=("$(printf '%sh-%02d' "$PREFIX" "$i")")
  VNAMES+=("$(printf '%sv-%02d' "$PREFIX" "$i")")
done
NET=${PREFIX}net
BRIDGE=${PREFIX//-/}hb0
export LC_ALL=C
export HAVEN_PASSWORD=haven-bench-password

. "$SCRIPT_DIR/lib.sh"
. "$SRC/scripts/libvirt-env.sh"
need_pkg /usr/bin/time time
need_pkg python3 python3
need_pkg flock util-linux
need_pkg mkfs.ext4 e2fsprogs
need_pkg virsh libvirt-clients
need_pkg /usr/sbin/libvirtd libvirt-daemon-system
need_pkg qemu-system-x86_64 qemu-system-x86
need_pkg qemu-img qemu-utils
haven_libvirt_start || die "libvirtd cannot be started"

mkdir -p "$W"
W=$(cd "$W" && pwd -P)
exec 9>"$W/host.lock"
flock -n 9 || die "another bench/host.sh is running on $W"
H=$W/host
REPO=$H/repo-haven
VDIR=$H/virtnbdbackup
LOGS=$H/logs
# scenario, config, round, wall s, Haven's job s, its median VM's s, load (tabs)
RAW=$H/raw.tsv

# From here on, whatever happens, the VMs and network go and (unless --keep)
# so do the disks, the repository and the backup folders.
cleanup() {
  local rc=$?
  set +e
  jobs -p | xargs -r kill 2>/dev/null
  wait 2>/dev/null
  haven_cleanup_vm "${HNAMES[@]}" "${VNAMES[@]}"
  haven_cleanup_network "$NET"
  rm -rf "$H/stage"
  if [ "$KEEP" = 0 ]; then
    rm -rf "$H/vms" "$REPO" "$VDIR" "$H/bin"
  fi
  if [ "$rc" != 0 ] && [ -d "$LOGS" ]; then log "failed (exit $rc): logs kept in $LOGS"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Leftovers of an interrupted run of this script, then a fence: no other
# domain may carry the pool's prefixes, or `--all` below would pick it up.
haven_cleanup_vm "${HNAMES[@]}" "${VNAMES[@]}"
haven_cleanup_network "$NET"
foreign=$(_hv_virsh list --all --name | grep -E "^${PREFIX}[hv]-" || true)
[ -z "$foreign" ] || die "domains with this bench's prefix exist ($(echo $foreign)): remove them or set HOST_BENCH_PREFIX"
# Space: virtnbdbackup's full backups (~600 MB a VM), every busy run's random
# data (Haven's repository per setting, virtnbdbackup's folders once a round)
# and the busy VMs' overlays (up to their 1 GiB each, both pools).
rm -rf "$H"
NEED_MIB=$((POOL * 600 + (${#SETS[@]} + 1) * ROUNDS * BUSY_VMS * CHANGED_MIB + 2 * BUSY_VMS * 1024 + 1024))
FREE_MIB=$(df -Pm "$W" | awk 'NR == 2 {print $4}')
[ "$FREE_MIB" -ge "$NEED_MIB" ] ||
  die "$W has $FREE_MIB MiB free; this run needs about $NEED_MIB MiB (fewer --rounds, settings or --changed-mib need less)"
mkdir -p "$H/vms" "$LOGS" "$H/bin" "$VDIR"
chmod 711 "$H"
cp "$HAVEN" "$H/bin/haven"
log "haven: $HAVEN (sha256 $(sha256sum "$HAVEN" | cut -c1-16)), run from $H/bin/haven"
HAVEN=$H/bin/haven
LIBVIRT_V=$(virsh -c "$HAVEN_LIBVIRT_URI" version | awk '/Using library/ {print $NF}')
QEMU_V=$(virsh -c "$HAVEN_LIBVIRT_URI" version | awk '/Running hypervisor/ {print $NF}')
VNB_V=$("$VNB" -V 2>&1 | tail -1)
log "virtnbdbackup $VNB_V, libvirt $LIBVIRT_V, QEMU $QEMU_V; $(nproc) cores; settings: ${SETS[*]}$([ "$HAS_PARALLEL" = 1 ] || echo ' (this haven has no --parallel: default is serial)')"
LIBVIRTD_LOG_START=$(stat -c %s /var/log/libvirt/libvirtd.log 2>/dev/null || echo -1)


# ---------------------------------------------------------------- the host
# One read-only base (a 1 GiB ext4 file system holding 512 MiB of system
# files: text, binaries, compressed docs) and a qcow2 overlay per VM: the
# bitmaps live in each overlay, and both tools read the whole chain through
# the backup job's NBD export, so the first backup of every VM reads 512 MiB.
log "base image: ext4 with $((DATA_BYTES >> 20)) MiB of system files"
python3 - "$H/stage" "$DATA_BYTES" <<'PY' || die "could not stage the base image's files"
import os, shutil, sys
dst, budget = sys.argv[1], int(sys.argv[2])
total = 0
for top in ("/usr/share/doc", "/usr/bin", "/usr/lib/x86_64-linux-gnu", "/usr/share/locale",
            "/usr/lib", "/usr/share"):
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
mkfs.ext4 -q -F -t ext4 -b 4096 -d "$H/stage" "$H/vms/base.raw" "$DISK_SIZE" ||
  die "mkfs.ext4 of the base image"
rm -rf "$H/stage"
chmod 444 "$H/vms/base.raw"

haven_make_network "$NET" "$BRIDGE" || die "network $NET"
log "defining and starting $((2 * POOL)) VMs (${HNAMES[0]}.. for Haven, ${VNAMES[0]}.. for virtnbdbackup)"
for i in "${!HNAMES[@]}"; do
  for vm in "${HNAMES[$i]}" "${VNAMES[$i]}"; do
    HAVEN_VM_VDB_SIZE=0 HAVEN_VM_VDA_SIZE=$DISK_SIZE haven_make_vm "$vm" "$H/vms" "$NET" "$H/vms/base.raw" ||
      die "VM $vm"
  done
done

# Haven's fence: exclude every name that does not start with the Haven pool's
# prefix P (P itself, its proper prefixes, and P[:i] + [!P[i]]*), so `--all`
# never reaches a domain someone else runs on this host; plus the pool's VMs
# beyond the scenario's size.
HP=${PREFIX}h-
FENCE=(--exclude "$HP")
for ((k = 0; k < ${#HP}; k++)); do
  [ "$k" = 0 ] || FENCE+=(--exclude "${HP:0:k}")
  FENCE+=(--exclude "${HP:0:k}[!${HP:k:1}]*")
done
haven_excludes() {  # N: the exclusions that leave Haven's VMs 1..N
  local j
  EXCL=("${FENCE[@]}")
  for ((j = $1; j < POOL; j++)); do EXCL+=(--exclude "${HNAMES[$j]}"); done
}
parallel_args() {  # SETTING
  PAR=()
  [ "$1" = default ] || PAR=(--parallel "$1")
}

put() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RAW"; }
now() { echo "$EPOCHREALTIME"; }
load1() { cut -d' ' -f1 /proc/loadavg; }

# check_haven JSON N MODE READ: every one of Haven's VMs 1..N backed up (and
# no other), vda in MODE, READ bytes read from each (- = any); prints the
# host job's duration_seconds and the median of the VMs' own.
check_haven() {
  python3 - "$1" "$2" "$3" "$4" "${HNAMES[@]}" <<'PY'
import json, statistics, sys
path, n, mode, read, names = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
j = json.load(open(path))
done = [v for v in j["vms"] if v["outcome"] != "skipped"]
want = names[:n]
got = [v["name"] for v in done]
assert sorted(got) == sorted(want), "backed up %s, expected %s" % (got, want)
for v in done:
    assert v["ok"], "%s: %s" % (v["name"], v["error"])
    d = [d for d in v["disks"] if d["name"] == "vda"]
    assert len(v["disks"]) == 1 and d, "%s: disks %s" % (v["name"], v["disks"])
    assert d[0]["mode"] == mode, "%s: vda %s (%s), expected %s" % (v["name"], d[0]["mode"], d[0]["reason"], mode)
    assert read == "-" or d[0]["read_bytes"] == int(read), \
        "%s: read %d bytes, expected %s" % (v["name"], d[0]["read_bytes"], read)
print("%.4f %.4f" % (j["duration_seconds"], statistics.median(v["duration_seconds"] for v in done)))
PY
}
# run_haven NAME N MODE READ SETTING: one timed `haven backup vm --all` of
# Haven's VMs 1..N; leaves the wall seconds in T_WALL, the job's in T_JOB
# and the median VM's in T_VM.
run_haven() {
  local name=$1 n=$2 mode=$3 read=$4 t0 t1 rc=0
  haven_excludes "$n"
  parallel_args "$5"
  sync
  T_LOAD=$(load1)
  t0=$(now)
  "$HAVEN" -r "$REPO" --json backup vm --all "${EXCL[@]}" "${PAR[@]}" >"$LOGS/$name.out" 2>"$LOGS/$name.err" || rc=$?
  t1=$(now)
  [ "$rc" = 0 ] || die "$name: haven exited $rc: $(tail -5 "$LOGS/$name.err")"
  local t
  t=$(check_haven "$LOGS/$name.out" "$n" "$mode" "$read" 2>"$LOGS/$name.check") ||
    die "$name: $(tail -1 "$LOGS/$name.check")"
  read -r T_JOB T_VM <<<"$t"
  T_WALL=$(python3 -c "print('%.4f' % ($t1 - $t0))")
}
# inc_files VM: virtnbdbackup's incremental data files of VM, one a line.
inc_files() {
  [ -d "$VDIR/$1" ] || return 0
  find "$VDIR/$1" -maxdepth 1 -name 'vda.inc.virtnbdbackup.*.data' | sort -V
}
# run_vnb NAME N MIN_BYTES: one timed loop of virtnbdbackup over the twins
# 1..N, as an admin's nightly script runs it; each VM must get a new
# incremental file of at least MIN_BYTES (- = a full backup instead).
run_vnb() {
  local name=$1 n=$2 min=$3 t0 t1 vm rc=0 before=() i
  for ((i = 0; i < n; i++)); do before+=("$(inc_files "${VNAMES[$i]}" | wc -l)"); done
  sync
  T_LOAD=$(load1)
  t0=$(now)
  for vm in "${VNAMES[@]:0:n}"; do
    "$VNB" -d "$vm" -l auto -o "$VDIR/$vm" -n >>"$LOGS/$name.out" 2>>"$LOGS/$name.err" || { rc=$?; break; }
  done
  t1=$(now)
  [ "$rc" = 0 ] || die "$name: virtnbdbackup -d $vm exited $rc: $(tail -3 "$LOGS/$name.err")"
  for ((i = 0; i < n; i++)); do
    vm=${VNAMES[$i]}
    if [ "$min" = - ]; then
      [ -s "$VDIR/$vm/vda.full.data" ] || die "$name: no full backup of $vm"
      continue
    fi
    [ "$(inc_files "$vm" | wc -l)" = $((before[i] + 1)) ] || die "$name: no new incremental of $vm"
    [ "$(stat -c %s "$(inc_files "$vm" | tail -1)")" -ge "$min" ] ||
      die "$name: the incremental of $vm holds less than the $min bytes written"
  done
  T_JOB=- T_VM=-
  T_WALL=$(python3 -c "print('%.4f' % ($t1 - $t0))")
}
# busy_writes VM... SEED: CHANGED_MIB random 1 MiB blocks at distinct offsets
# into each VM's vda (VM i of the list gets seed SEED+i), all VMs at once.
busy_writes() {
  local seed=${!#} pids=() i=0 vm rc=0
  for vm in "${@:1:$#-1}"; do
    haven_guest_write_random "$vm" vda $((seed + i)) "$CHANGED_MIB" "$BLOCK" >"$LOGS/writes-$vm-$((seed + i))" 2>&1 &
    pids+=($!)
    i=$((i + 1))
  done
  for i in "${pids[@]}"; do wait "$i" || rc=1; done
  [ "$rc" = 0 ] || die "guest writes (seed $seed): $(cat "$LOGS"/writes-*-"$seed"* | grep -v '^[0-9]' | head -3)"
}

# ---------------------------------------------------------------- full backups
"$HAVEN" -r "$REPO" init >"$LOGS/haven-init.out" 2>&1 || die "haven init: $(cat "$LOGS/haven-init.out")"
log "first full backups of $POOL VMs per tool (not part of the figures)"
run_haven full-haven "$POOL" full - default
put full haven 0 "$T_WALL" "$T_JOB" "$T_VM" "$T_LOAD"
log "  haven backup vm --all: $T_WALL s"
run_vnb full-vnb "$POOL" -
put full vnb 0 "$T_WALL" - - "$T_LOAD"
log "  virtnbdbackup loop: $T_WALL s"

# ---------------------------------------------------------------- rounds
# Each round runs every scenario; inside a scenario every configuration once,
# in an order rotated each round, so drift in the machine's load spreads over
# all of them. Busy runs are each preceded by their own writes: Haven's
# setting k gets seeds S+100k+i, the twins virtnbdbackup backs up get the
# seeds of setting 0 (the very bytes and offsets Haven's first setting got).
CONFIGS=()
for s in "${SETS[@]}"; do CONFIGS+=("haven:$s"); done
CONFIGS+=(vnb)
rotated() {  # ROUND: CONFIGS rotated left by ROUND
  local k=$(($1 % ${#CONFIGS[@]}))
  ROT=("${CONFIGS[@]:k}" "${CONFIGS[@]:0:k}")
}
slot_of() {  # SETTING: its index in SETS
  local k
  for k in "${!SETS[@]}"; do [ "${SETS[$k]}" = "$1" ] && { echo "$k"; return; }; done
}
CHANGED_BYTES=$((CHANGED_MIB << 20))
START_ROUNDS=$(now)
for ((r = 1; r <= ROUNDS; r++)); do
  rotated $((r - 1))
  for n in "${IDLE_NS[@]}"; do
    for c in "${ROT[@]}"; do
      if [ "$c" = vnb ]; then
        run_vnb "idle$n-vnb-r$r" "$n" 1
      else
        run_haven "idle$n-${c#haven:}-r$r" "$n" incremental 0 "${c#haven:}"
      fi
      put "idle$n" "$c" "$r" "$T_WALL" "$T_JOB" "$T_VM" "$T_LOAD"
      log "round $r, $n idle: $c $T_WALL s"
    done
  done
  [ "$BUSY_VMS" -gt 0 ] || continue
  seed=$((100000 * r))
  for c in "${ROT[@]}"; do
    if [ "$c" = vnb ]; then
      busy_writes "${VNAMES[@]:0:BUSY_VMS}" "$seed"
      run_vnb "busy-vnb-r$r" "$BUSY_VMS" "$CHANGED_BYTES"
    else
      busy_writes "${HNAMES[@]:0:BUSY_VMS}" $((seed + 100 * $(slot_of "${c#haven:}")))
      run_haven "busy-${c#haven:}-r$r" "$BUSY_VMS" incremental "$CHANGED_BYTES" "${c#haven:}"
    fi
    put busy "$c" "$r" "$T_WALL" "$T_JOB" "$T_VM" "$T_LOAD"
    log "round $r, $BUSY_VMS busy: $c $T_WALL s"
  done
done
ROUNDS_SECONDS=$(python3 -c "print('%.0f' % ($(now) - $START_ROUNDS))")

# libvirtd errors about this bench's VMs (informational; only where libvirtd
# logs to its file).
LIBVIRTD_ERRORS=-
if [ "$LIBVIRTD_LOG_START" -ge 0 ]; then
  LIBVIRTD_ERRORS=$(tail -c +$((LIBVIRTD_LOG_START + 1)) /var/log/libvirt/libvirtd.log |
    grep ' error : ' | grep -cE "${PREFIX}[hv]-[0-9]" || true)
fi

# ---------------------------------------------------------------- results
python3 - "$RAW" "$H/results.md" "$HAS_PARALLEL" "$BUSY_VMS" "$CHANGED_MIB" "$ROUNDS" \
  "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(nproc)" "$LIBVIRT_V" "$QEMU_V" "$VNB_V" "$ROUNDS_SECONDS" \
  "$LIBVIRTD_ERRORS" "${SETS[@]}" <<'PY'
import statistics, sys
(raw, md, has_parallel, busy_vms, changed_mib, rounds, when, cores, libvirt_v, qemu_v, vnb_v,
 rounds_s, libvirtd_errors) = sys.argv[1:14]
sets = sys.argv[14:]
has_parallel, busy_vms = has_parallel == "1", int(busy_vms)
wall, job, vm, load = {}, {}, {}, []
for line in open(raw):
    sc, cfg, rnd, w, j, v, l = line.rstrip("\n").split("\t")
    if sc == "full":
        continue
    wall.setdefault((sc, cfg), []).append(float(w))
    if j != "-":
        job.setdefault((sc, cfg), []).append(float(j))
        vm.setdefault((sc, cfg), []).append(float(v))
    load.append(float(l))
idle = sorted({int(sc[4:]) for sc, _ in wall if sc.startswith("idle")})
scen = ["idle%d" % n for n in idle] + (["busy"] if busy_vms else [])
label_s = {"idle%d" % n: "%d idle VM%s" % (n, "" if n == 1 else "s") for n in idle}
label_s["busy"] = "%d VMs, %d MiB changed each" % (busy_vms, int(changed_mib))
cfgs = ["haven:" + s for s in sets] + ["vnb"]
def label_c(c):
    if c == "vnb":
        return "virtnbdbackup, VM after VM"
    s = c[6:]
    if s == "default":
        return "Haven, default" if has_parallel else "Haven, serial (no --parallel yet)"
    return "Haven `--parallel %s`" % s
med = lambda sc, c: statistics.median(wall[(sc, c)])
# The serial reference: --parallel 1, or the default when there is no flag.
serial = "haven:1" if "1" in sets else (None if has_parallel else "haven:default")
haven_cfgs = ["haven:" + s for s in sets]

out = []
out.append("Wall time of one nightly run (s), median (min–max) of %s rounds:\n" % rounds)
out.append("| host | " + " | ".join(label_c(c) for c in cfgs) + " |")
out.append("|---|" + "---:|" * len(cfgs))
for sc in scen:
    cells = ["%.2f (%.2f–%.2f)" % (med(sc, c), min(wall[(sc, c)]), max(wall[(sc, c)])) for c in cfgs]
    out.append("| %s | %s |" % (label_s[sc], " | ".join(cells)))

lo, hi = "idle%d" % idle[0], "idle%d" % idle[-1]
rows = []
fmt_ratio = lambda x: "%.2fx" % x
if len(idle) > 1:
    d = idle[-1] - idle[0]
    rows.append(("per-VM overhead, (T(%d idle) − T(%d idle)) / %d (s)" % (idle[-1], idle[0], d),
                 {c: "%.3f" % ((med(hi, c) - med(lo, c)) / d) for c in cfgs}, "< 0.1 s",
                 lambda c: (med(hi, c) - med(lo, c)) / d < 0.1))
    rows.append(("%d idle VMs / %d idle VM%s" % (idle[-1], idle[0], "" if idle[0] == 1 else "s"),
                 {c: fmt_ratio(med(hi, c) / med(lo, c)) for c in cfgs}, "< 2x",
                 lambda c: med(hi, c) / med(lo, c) < 2))
ref = {}  # a row's reference column: no verdict there
if busy_vms and serial:
    ref["%s / serial Haven" % label_s["busy"]] = serial
    rows.append(("%s / serial Haven" % label_s["busy"],
                 {c: fmt_ratio(med("busy", c) / med("busy", serial)) for c in cfgs}, "< 0.7x",
                 lambda c: med("busy", c) / med("busy", serial) < 0.7))
for sc in scen:
    rows.append(("virtnbdbackup / this, %s" % label_s[sc],
                 {c: fmt_ratio(med(sc, "vnb") / med(sc, c)) for c in haven_cfgs}, "", None))
jobs = [w - j for k in wall if k in job for w, j in zip(wall[k], job[k])]
if jobs:
    rows.append(("Haven outside the host job: process start, libvirt connection, repository open (s, median)",
                 {c: "%.3f" % statistics.median([w - j for sc in scen for w, j in zip(wall[(sc, c)], job[(sc, c)])])
                  for c in haven_cfgs}, "", None))
    rows.append(("Haven: one idle VM's backup inside the job (s, median over the idle runs' median VMs)",
                 {c: "%.3f" % statistics.median([x for n in idle for x in vm[("idle%d" % n, c)]])
                  for c in haven_cfgs}, "", None))
out.append("\nDerived (from the medians above):\n")
out.append("| measure | " + " | ".join(label_c(c) for c in cfgs) + " | goal (Haven) |")
out.append("|---|" + "---:|" * len(cfgs) + "---|")
for name, vals, goal, ok in rows:
    cells = []
    for c in cfgs:
        v = vals.get(c, "-")
        if ok and c not in ("vnb", ref.get(name)) and goal:
            v += " met" if ok(c) else " missed"
        cells.append(v)
    out.append("| %s | %s | %s |" % (name, " | ".join(cells), goal))
out.append("\n%s; %s cores; libvirt %s, QEMU %s, virtnbdbackup %s; load average (1 min) %.1f–%.1f "
           "at the runs' starts; measured rounds took %s s; libvirtd errors naming the bench's VMs: %s."
           % (when, cores, libvirt_v, qemu_v, vnb_v, min(load), max(load), rounds_s, libvirtd_errors))
if not has_parallel:
    out.append("This haven has no `backup vm --parallel`: only its default, serial, was measured.")
open(md, "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
log "results: $H/results.md; every run in $RAW; logs in $LOGS"
