#!/usr/bin/env bash
# Instant recovery (issue 21): the time from the restore command to a running
# guest, for `haven restore vm POINT --instant` against a full `haven restore
# vm POINT --start`, on the same recovery point of one VM whose disk holds
# real files. Both are interleaved over several rounds; the report gives
# medians, spreads and the ratio full / instant, and the bytes the instant
# VM's NBD server fetched from the repository against the disk's size. See
# bench/README.md ("Instant recovery benchmark").
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/instant.sh [options]

  --rounds N      interleaved rounds (odd: instant first, even: full first);
                  medians and spreads over them (default 5)
  --disk-gib N    virtual size of the VM's disk vda, an ext4 file system
                  spanning all of it, in GiB (default 8)
  --data-mib N    MiB of real files in that file system: this machine's
                  /usr/share/doc, /usr/bin, /usr/lib, /usr/share, /usr
                  (default: half the disk, 4096 for 8 GiB)
  --read-mib N    after each guest is running, it reads this many MiB of the
                  files (cat, in the guest); timed, as the first work the
                  restored VM does (default: a quarter of --data-mib, at
                  most 256; 0 skips it)
  --timeout S     seconds to wait for a guest's ready line (default 300)
  --keep          keep the repository and the VM's files (the VMs, the
                  network and the NBD servers are always removed)
  -h, --help      this help

Environment:
  BENCH_DIR  work dir (default /var/tmp/haven-bench); everything goes to
             BENCH_DIR/instant/, wiped at the start
  HAVEN      haven binary (default $PWD/build/haven); haven-nbd must sit
             beside it (or be named by HAVEN_NBD)

Run as root: the VMs run on the system libvirt (qemu:///system).
USAGE
}

die_usage() { echo "bench/instant.sh: $*" >&2; exit 2; }

ROUNDS=5
DISK_GIB=8
DATA_MIB=
READ_MIB=
TIMEOUT=300
KEEP=0
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds|--disk-gib|--data-mib|--read-mib|--timeout)
      [ $# -ge 2 ] || die_usage "$1 needs a value (see --help)"
      set -- "$1=$2" "${@:3}" ;;
    --rounds=*) ROUNDS=${1#*=}; shift ;;
    --disk-gib=*) DISK_GIB=${1#*=}; shift ;;
    --data-mib=*) DATA_MIB=${1#*=}; shift ;;
    --read-mib=*) READ_MIB=${1#*=}; shift ;;
    --timeout=*) TIMEOUT=${1#*=}; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die_usage "unknown argument '$1' (see --help)" ;;
  esac
done
{ is_uint "$ROUNDS" && [ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 20 ]; } ||
  die_usage "--rounds must be an integer in 1..20, not '$ROUNDS'"
{ is_uint "$DISK_GIB" && [ "$((10#$DISK_GIB))" -ge 1 ] && [ "$((10#$DISK_GIB))" -le 64 ]; } ||
  die_usage "--disk-gib must be an integer in 1..64, not '$DISK_GIB'"
DISK_GIB=$((10#$DISK_GIB))
MAX_DATA=$((DISK_GIB * 1024 * 6 / 10))
[ -n "$DATA_MIB" ] || DATA_MIB=$((DISK_GIB * 512))
{ is_uint "$DATA_MIB" && [ "$((10#$DATA_MIB))" -ge 16 ] && [ "$((10#$DATA_MIB))" -le "$MAX_DATA" ]; } ||
  die_usage "--data-mib must be an integer in 16..$MAX_DATA (60% of the disk), not '$DATA_MIB'"
DATA_MIB=$((10#$DATA_MIB))
if [ -z "$READ_MIB" ]; then
  READ_MIB=$((DATA_MIB / 4))
  [ "$READ_MIB" -le 256 ] || READ_MIB=256
fi
{ is_uint "$READ_MIB" && [ "$((10#$READ_MIB))" -le "$DATA_MIB" ]; } ||
  die_usage "--read-mib must be an integer in 0..$DATA_MIB (the data), not '$READ_MIB'"
READ_MIB=$((10#$READ_MIB))
{ is_uint "$TIMEOUT" && [ "$((10#$TIMEOUT))" -ge 10 ] && [ "$((10#$TIMEOUT))" -le 3600 ]; } ||
  die_usage "--timeout must be an integer in 10..3600 (seconds), not '$TIMEOUT'"
TIMEOUT=$((10#$TIMEOUT))
[ "$(id -u)" = 0 ] || die_usage "run as root: the VMs run on the system libvirt (qemu:///system)"
HAVEN=${HAVEN:-$PWD/build/haven}
[ -x "$HAVEN" ] || die_usage "haven binary not found at $HAVEN (build it or set HAVEN=/path/to/haven)"
HAVEN=$(readlink -f "$HAVEN")
"$HAVEN" restore vm --help 2>&1 | grep -q -- '--instant' ||
  die_usage "$HAVEN has no 'restore vm --instant' (rebuild it)"
NBD=${HAVEN_NBD:-$(dirname "$HAVEN")/haven-nbd}
[ -x "$NBD" ] || die_usage "haven-nbd not found at $NBD (it is built beside haven; or set HAVEN_NBD=/path/to/haven-nbd)"
NBD=$(readlink -f "$NBD")

log() { printf '[instant-bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[instant-bench] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- parameters
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
SRC=$(cd "$SCRIPT_DIR/.." && pwd -P)
W=${BENCH_DIR:-/var/tmp/haven-bench}
SRCVM=hvib-src       # the VM that is backed up and then lost
INST=hvib-inst       # its instant recovery
FULL=hvib-full       # its full restore
NET=hvib-net
BRIDGE=hvib0
export LC_ALL=C
export HAVEN_PASSWORD=haven-bench-password
unset HAVEN_NBD      # the copy beside the copied haven is used

. "$SCRIPT_DIR/lib.sh"
. "$SRC/scripts/libvirt-env.sh"
need_pkg python3 python3
# The system python (libvirt-env.sh's choice): a pyenv shim costs about a
# second per start.
python3() { "$_HV_PY" "$@"; }
need_pkg flock util-linux
need_pkg mkfs.ext4 e2fsprogs
need_pkg virsh libvirt-clients
need_pkg /usr/sbin/libvirtd libvirt-daemon-system
need_pkg qemu-system-x86_64 qemu-system-x86
need_pkg qemu-img qemu-utils
haven_libvirt_start || die "libvirtd cannot be started"

mkdir -p "$W"
W=$(cd "$W" && pwd -P)
exec 9>"$W/instant.lock"
flock -n 9 || die "another bench/instant.sh is running on $W"
I=$W/instant
REPO=$I/repo
VMS=$I/vms           # the source VM's files: guest kernel + initrd, console log
STORE=$I/store       # --storage-dir of both restores
LOGS=$I/logs
RAW=$I/raw.tsv       # kind <tab> round <tab> key <tab> value
CONSOLE=$VMS/$SRCVM-console.log   # the restored VMs keep the source's <serial>

# The NBD servers of instant VMs under STORE (pid files are checked against
# the process's command line: only servers of this work dir are stopped).
stop_servers() {
  local d p
  for d in "$STORE"/.haven-instant-*; do
    [ -f "$d/nbd.pid" ] || continue
    p=$(cat "$d/nbd.pid" 2>/dev/null) || continue
    [ -n "$p" ] && tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF "$d/nbd.sock" &&
      kill "$p" 2>/dev/null
  done
  return 0
}
cleanup() {
  local rc=$?
  set +e
  if [ -n "${BOOT_PID:-}" ]; then kill "$BOOT_PID" 2>/dev/null; wait "$BOOT_PID" 2>/dev/null; fi
  if _hv_virsh dominfo "$INST" >/dev/null 2>&1 && [ -x "$I/bin/haven" ]; then
    "$I/bin/haven" restore vm --instant --discard "$INST" >>"$LOGS/cleanup.log" 2>&1
  fi
  haven_cleanup_vm "$SRCVM" "$INST" "$FULL"
  stop_servers
  haven_cleanup_network "$NET"
  rm -rf "$I/stage" "$I/vda.raw" "$STORE"
  if [ "$KEEP" = 0 ]; then
    rm -rf "${REPO:?}" "${VMS:?}" "${I:?}/bin"
  fi
  if [ "$rc" != 0 ] && [ -d "$LOGS" ]; then log "failed (exit $rc): logs kept in $LOGS"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Leftovers of an interrupted run.
haven_cleanup_vm "$SRCVM" "$INST" "$FULL"
stop_servers
haven_cleanup_network "$NET"
rm -rf "$I"
# Space: the stage (hard links, or a copy across file systems), the raw
# image while it is converted, the source qcow2, the repository and the
# full restore's disk: each about the data.
NEED_MIB=$((DATA_MIB * 5 + 1024))
FREE_MIB=$(df -Pm "$W" | awk 'NR == 2 {print $4}')
[ "$FREE_MIB" -ge "$NEED_MIB" ] ||
  die "$W has $FREE_MIB MiB free; this run needs about $NEED_MIB MiB (a smaller --data-mib needs less)"
mkdir -p "$VMS" "$STORE" "$LOGS" "$I/bin"
chmod 711 "$I" "$VMS" "$STORE"
: >"$RAW"
# Copies, so that a rebuild of the tree during the run changes nothing;
# haven finds haven-nbd beside itself.
cp "$HAVEN" "$I/bin/haven"
cp "$NBD" "$I/bin/haven-nbd"
log "haven: $HAVEN (sha256 $(sha256sum "$HAVEN" | cut -c1-16)), haven-nbd $(sha256sum "$NBD" | cut -c1-16); run from $I/bin/"
HAVEN=$I/bin/haven
LIBVIRT_V=$(_hv_virsh version | awk '/Using library/ {print $NF}')
QEMU_V=$(_hv_virsh version | awk '/Running hypervisor/ {print $NF}')

put() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RAW"; }
load1() { cut -d' ' -f1 /proc/loadavg; }
hv() { "$HAVEN" -r "$REPO" "$@"; }

# ---------------------------------------------------------------- the disk
# An ext4 file system over the whole disk (mkfs.ext4 -d) holding DATA_MIB
# MiB of this machine's files, walked in sorted order. The stage holds hard
# links to them (the files are only read), or copies when /usr is on another
# file system.
log "staging $DATA_MIB MiB of files from /usr"
python3 - "$I/stage" "$((DATA_MIB << 20))" "$((READ_MIB << 20))" >"$I/data.info" <<'PY' || die "could not stage the disk's files"
import errno, os, shutil, sys
dst, budget, read_budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
order = []
tops = ("/usr/share/doc", "/usr/bin", "/usr/lib/x86_64-linux-gnu", "/usr/share/locale",
        "/usr/lib", "/usr/share", "/usr")
total = files = linked = 0
used = []
for top in tops:
    before = total
    for root, dirs, names in os.walk(top):
        dirs.sort()
        for f in sorted(names):
            p = os.path.join(root, f)
            q = os.path.join(dst, p.lstrip("/"))
            if os.path.islink(p) or not os.path.isfile(p) or os.path.lexists(q):
                continue
            size = os.path.getsize(p)
            if total + size > budget:
                continue
            os.makedirs(os.path.dirname(q), exist_ok=True)
            try:
                os.link(p, q)
                linked += 1
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
                shutil.copyfile(p, q)
            total += size
            files += 1
            order.append((p.lstrip("/"), size))
    if total > before:
        used.append("%s (%d MiB)" % (top, (total - before) >> 20))
    if total >= budget - (1 << 20):
        break
if total < budget - (1 << 20):
    sys.exit("only %d bytes of files found under /usr, %d wanted" % (total, budget))
# The files the guests read after booting (--read-mib): the first ones
# staged, NUL-separated, paths relative to the file system's root.
n = 0
with open(os.path.join(dst, ".bench-read-list"), "wb") as o:
    for rel, size in order:
        if n >= read_budget:
            break
        o.write(rel.encode() + b"\0")
        n += size
print("read_bytes\t%d" % n)
print("files\t%d" % files)
print("bytes\t%d" % total)
print("hard_links\t%d" % linked)
print("from\t%s" % ", ".join(used))
PY
DATA_BYTES=$(awk -F'\t' '$1 == "bytes" {print $2}' "$I/data.info")
log "staged $(awk -F'\t' '$1 == "files" {print $2}' "$I/data.info") files, $DATA_BYTES bytes, from $(awk -F'\t' '$1 == "from" {print $2}' "$I/data.info")"
T0=$EPOCHREALTIME
mkfs.ext4 -q -F -L haven-data -b 4096 -d "$I/stage" "$I/vda.raw" "${DISK_GIB}G" >"$LOGS/mkfs.out" 2>"$LOGS/mkfs.err" ||
  die "mkfs.ext4 -d: $(tail -3 "$LOGS/mkfs.err")"
rm -rf "$I/stage"
qemu-img convert -f raw -O qcow2 "$I/vda.raw" "$VMS/$SRCVM-vda.qcow2" 2>"$LOGS/convert.err" ||
  die "qemu-img convert: $(tail -3 "$LOGS/convert.err")"
rm -f "$I/vda.raw"
log "ext4 over ${DISK_GIB} GiB made in $(python3 -c "print('%.0f' % ($EPOCHREALTIME - $T0))") s: $VMS/$SRCVM-vda.qcow2 ($(du -BM "$VMS/$SRCVM-vda.qcow2" | cut -f1) allocated)"

# ---------------------------------------------------------------- the source VM
# haven_make_qga_vm's VM (scripts/libvirt-env.sh: the tiny guest of
# scripts/make-qga-guest.sh booted directly, 256 MiB, 1 vCPU, console to a
# file), on the disk above instead of a copy of /etc; KVM when it boots the
# guest here, else TCG, as haven_make_qga_vm decides.
"$SRC/scripts/make-qga-guest.sh" "$VMS/$SRCVM-guest" 2>"$LOGS/guest.err" ||
  die "the test guest cannot be built: $(tail -3 "$LOGS/guest.err")"
haven_make_network "$NET" "$BRIDGE" || die "network $NET"
VIRT=$(_hv_virt_type)
MARKER=${HAVEN_QGA_CACHE:-/var/tmp/haven-qga-guest}/kvm-no-boot-$(uname -r)-$(qemu-system-x86_64 --version 2>/dev/null | awk 'NR == 1 {print $4}')
[ "$VIRT" = kvm ] && [ -e "$MARKER" ] && [ -z "${HAVEN_VM_VIRT_TYPE:-}" ] && VIRT=qemu
rm -f "$CONSOLE"
define_source() {
  _hv_qga_define "$SRCVM" "$1" "$VMS/$SRCVM-guest" 1 "$VMS/$SRCVM-vda.qcow2" "$NET" "$CONSOLE"
}
if [ "$VIRT" = kvm ]; then
  booted=0
  if define_source kvm 2>"$LOGS/kvm.err"; then
    for _ in $(seq 1 100); do [ -s "$CONSOLE" ] && { booted=1; break; }; sleep 0.1; done
  fi
  if [ "$booted" = 0 ]; then
    log "note: the guest does not boot under KVM here: using TCG"
    haven_cleanup_vm "$SRCVM"
    rm -f "$CONSOLE"
    VIRT=qemu
    define_source qemu || die "VM $SRCVM"
  fi
else
  define_source qemu || die "VM $SRCVM"
fi
# wait_ready TIMEOUT: until the console has the ready line; fails unless it
# says /data is mounted.
wait_ready() {
  local i
  for ((i = 0; i < $1 * 10; i++)); do
    grep -q "haven-guest: ready" "$CONSOLE" 2>/dev/null && break
    sleep 0.1
  done
  grep -q "haven-guest: ready.*/data mounted" "$CONSOLE" 2>/dev/null
}
T0=$EPOCHREALTIME
wait_ready "$TIMEOUT" || die "$SRCVM: no ready line with /data mounted: $(tail -5 "$CONSOLE" 2>/dev/null)"
log "$SRCVM ($VIRT) ready in $(python3 -c "print('%.1f' % ($EPOCHREALTIME - $T0))") s after virsh start"
haven_wait_guest_agent "$SRCVM" 60 >/dev/null || die "the guest agent of $SRCVM does not answer"

# ---------------------------------------------------------------- the point
hv init >"$LOGS/init.out" 2>&1 || die "haven init: $(tail -3 "$LOGS/init.out")"
T0=$EPOCHREALTIME
hv --json backup vm "$SRCVM" >"$LOGS/backup.out" 2>"$LOGS/backup.err" ||
  die "backup vm: $(tail -5 "$LOGS/backup.err")"
BACKUP_S=$(python3 -c "print('%.2f' % ($EPOCHREALTIME - $T0))")
read -r POINT READ_BYTES < <(python3 - "$LOGS/backup.out" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))["vms"][0]
assert v["ok"], v["error"]
d = [d for d in v["disks"] if d["name"] == "vda"][0]
print(v["snapshot"], d["read_bytes"])
PY
) || die "backup vm: unexpected result: $(head -c 1500 "$LOGS/backup.out")"
REPO_BYTES=$(du -sb "$REPO" | cut -f1)
put setup 0 backup_seconds "$BACKUP_S"
put setup 0 backup_read_bytes "$READ_BYTES"
put setup 0 repo_bytes "$REPO_BYTES"
log "point $POINT: backup read $READ_BYTES bytes in $BACKUP_S s; repository $REPO_BYTES bytes"
# The host is lost: the VM, its disk and its console log go (its guest kernel
# and initrd stay: the restored definitions boot them).
haven_cleanup_vm "$SRCVM"
rm -f "$VMS/$SRCVM-vda.qcow2" "$CONSOLE"

# ---------------------------------------------------------------- rounds
# The watcher (run_boot): runs CMD (stdout LOGS/NAME.out, stderr
# LOGS/NAME.err) and watches the console file from the moment CMD starts;
# prints the exit code, CMD's wall seconds and the seconds until the ready
# line (- if none within TIMEOUT), checked every 10 ms, and the line.
cat >"$I/bin/watch.py" <<'PY'
import os, signal, subprocess, sys, time
console, timeout, out, err, cmd = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
t0 = time.monotonic()
p = subprocess.Popen(cmd, stdout=open(out, "wb"), stderr=open(err, "wb"))
def stop(sig, frame):  # the script is being stopped: so is the restore
    p.terminate()
    try:
        p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
    sys.exit(128 + sig)
signal.signal(signal.SIGTERM, stop)
t_cmd = t_ready = None
buf, off, line = b"", 0, ""
while True:
    now = time.monotonic()
    if t_cmd is None and p.poll() is not None:
        t_cmd = now - t0
    if t_ready is None:
        try:
            with open(console, "rb") as f:
                f.seek(off)
                chunk = f.read()
            off += len(chunk)
            buf += chunk
        except FileNotFoundError:
            pass
        i = buf.find(b"haven-guest: ready")
        if i >= 0 and b"\n" in buf[i:]:
            t_ready = now - t0
            line = buf[i:].split(b"\n")[0].decode(errors="replace").strip()
    if t_cmd is not None and (t_ready is not None or p.returncode != 0):
        break
    if now - t0 > timeout:
        if t_cmd is None:
            p.kill()
            p.wait()
            t_cmd = now - t0
        break
    time.sleep(0.01)
print(p.returncode, "%.3f" % t_cmd, "-" if t_ready is None else "%.3f" % t_ready, line.replace(" ", "_"))
PY
# run_boot NAME CMD...: boot in the background (a signal to the script
# interrupts the wait; cleanup stops it); leaves its results in B_RC B_CMD
# B_READY B_LINE.
BOOT_PID=
run_boot() {
  local name=$1
  shift
  "$_HV_PY" "$I/bin/watch.py" "$CONSOLE" "$TIMEOUT" "$LOGS/$name.out" "$LOGS/$name.err" "$@" >"$LOGS/$name.boot" &
  BOOT_PID=$!
  wait "$BOOT_PID" || die "$name: the watcher failed (exit $?)"
  BOOT_PID=
  read -r B_RC B_CMD B_READY B_LINE <"$LOGS/$name.boot" || die "$name: no result from the watcher"
}
# prepare: the repository read once into the page cache, dirty pages
# written, the console log gone; leaves the load average in LOAD.
prepare() {
  find "$REPO" -type f -exec cat {} + >/dev/null
  sync
  rm -f "$CONSOLE"
  LOAD=$(load1)
}
# check_boot KIND ROUND: the result of boot (in B_RC B_CMD B_READY B_LINE).
check_boot() {
  [ "$B_RC" = 0 ] || die "$1 round $2: restore exited $B_RC: $(tail -5 "$LOGS/$1-r$2.err")"
  [ "$B_READY" != - ] || die "$1 round $2: no ready line within $TIMEOUT s: $(tail -5 "$CONSOLE" 2>/dev/null)"
  case "$B_LINE" in
    *"/data_mounted"*) ;;
    *) die "$1 round $2: the guest did not mount /data: ${B_LINE//_/ }" ;;
  esac
}
# store_empty WHAT: nothing may be left in STORE after a VM was removed.
store_empty() {
  local left
  left=$(ls -A "$STORE")
  [ -z "$left" ] || die "$1 left files in $STORE: $left"
}

# guest_read VM KIND ROUND: the guest reads the first --read-mib MiB of the
# files (xargs -0 cat of the list staged into the file system; it never read
# them before) through its guest agent; records the seconds the guest took
# (its /proc/uptime before and after) and the host's (guest-exec to its
# status saying exited, polled every 0.1 s).
guest_read() {
  [ "$READ_MIB" -gt 0 ] || return 0
  local vm=$1 kind=$2 r=$3 out
  haven_wait_guest_agent "$vm" 60 >/dev/null || die "$kind round $r: the guest agent of $vm does not answer"
  out=$(python3 - "$HAVEN_LIBVIRT_URI" "$vm" "$TIMEOUT" 2>"$LOGS/$kind-r$r.read.err" <<'PY'
import base64, json, subprocess, sys, time
uri, vm, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
def agent(cmd):
    r = subprocess.run(["virsh", "-q", "-c", uri, "qemu-agent-command", vm, "--timeout", "30", json.dumps(cmd)],
                       capture_output=True, text=True)
    if r.returncode:
        sys.exit("qemu-agent-command: " + r.stderr.strip())
    return json.loads(r.stdout)["return"]
script = ("cd /data && a=$(cut -d' ' -f1 /proc/uptime) && xargs -0 cat <.bench-read-list >/dev/null && "
          "b=$(cut -d' ' -f1 /proc/uptime) && echo $a $b")
t0 = time.monotonic()
pid = agent({"execute": "guest-exec",
             "arguments": {"path": "/bin/sh", "arg": ["-c", script], "capture-output": True}})["pid"]
while True:
    st = agent({"execute": "guest-exec-status", "arguments": {"pid": pid}})
    if st["exited"]:
        break
    if time.monotonic() - t0 > timeout:
        sys.exit("the read did not end within %d s" % timeout)
    time.sleep(0.1)
host = time.monotonic() - t0
out = base64.b64decode(st.get("out-data", "")).decode().split()
if st.get("exitcode") != 0 or len(out) != 2:
    sys.exit("exit %s: %s %s" % (st.get("exitcode"), out, base64.b64decode(st.get("err-data", "")).decode()[-300:]))
print("%.2f %.3f" % (float(out[1]) - float(out[0]), host))
PY
) || die "$kind round $r: the guest's read failed: $(tail -3 "$LOGS/$kind-r$r.read.err")"
  local guest host
  read -r guest host <<<"$out"
  put "$kind" "$r" read_guest_s "$guest"
  put "$kind" "$r" read_host_s "$host"
  READ_S=$guest
}

run_instant() {  # ROUND
  local r=$1 ID=$STORE/.haven-instant-$INST
  prepare
  run_boot "instant-r$r" "$HAVEN" -r "$REPO" --json restore vm "$POINT" \
    --instant --name "$INST" --new-identity --storage-dir "$STORE"
  check_boot instant "$r"
  [ "$(_hv_virsh domstate "$INST")" = running ] || die "instant round $r: $INST is not running"
  # stats.json is rewritten at most once a second.
  sleep 1.2
  [ -f "$ID/stats.json" ] || die "instant round $r: no $ID/stats.json"
  local s
  s=$(python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
print(j["chunk_bytes_fetched"], j["bytes_served"], j["reads"], j["disk_bytes"], j["read_errors"])' "$ID/stats.json") ||
    die "instant round $r: stats.json: $(cat "$ID/stats.json")"
  local fetched served reads disk errors
  read -r fetched served reads disk errors <<<"$s"
  [ "$errors" = 0 ] || die "instant round $r: the server answered $errors reads with errors"
  put instant "$r" load "$LOAD"
  put instant "$r" command_s "$B_CMD"
  put instant "$r" ready_s "$B_READY"
  put instant "$r" fetched_bytes "$fetched"
  put instant "$r" served_bytes "$served"
  put instant "$r" reads "$reads"
  put instant "$r" disk_bytes "$disk"
  put instant "$r" overlay_bytes "$(du -sb "$ID/vda.qcow2" | cut -f1)"
  local also=
  if [ "$READ_MIB" -gt 0 ]; then
    guest_read "$INST" instant "$r"
    sleep 1.2
    local after
    after=$(python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); print(j["chunk_bytes_fetched"], j["read_errors"])' "$ID/stats.json")
    [ "${after#* }" = 0 ] || die "instant round $r: the server answered ${after#* } reads with errors"
    put instant "$r" fetched_after_read_bytes "${after% *}"
    also="; read $READ_MIB MiB of files in $READ_S s (fetched ${after% *} bytes by then)"
  fi
  local t0=$EPOCHREALTIME
  hv restore vm --instant --discard "$INST" >"$LOGS/discard-r$r.out" 2>&1 ||
    die "instant round $r: --discard: $(tail -3 "$LOGS/discard-r$r.out")"
  put instant "$r" discard_s "$(python3 -c "print('%.3f' % ($EPOCHREALTIME - $t0))")"
  _hv_virsh dominfo "$INST" >/dev/null 2>&1 && die "instant round $r: $INST is still defined after --discard"
  store_empty "--discard"
  rm -f "$CONSOLE"
  log "round $r: instant: ready after $B_READY s (command $B_CMD s); fetched $fetched bytes of $disk$also"
}

run_full() {  # ROUND
  local r=$1
  prepare
  run_boot "full-r$r" "$HAVEN" -r "$REPO" --json restore vm "$POINT" \
    --name "$FULL" --new-identity --storage-dir "$STORE" --start
  check_boot full "$r"
  [ "$(_hv_virsh domstate "$FULL")" = running ] || die "full round $r: $FULL is not running"
  local s
  s=$(python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))["vms"][0]
assert v["ok"] and v["started"], v["error"]
d = [d for d in v["disks"] if d["target"] == "vda"][0]
print(d["path"], d["data_bytes"], d["seconds"], v["seconds"])' "$LOGS/full-r$r.out") ||
    die "full round $r: unexpected result: $(head -c 1500 "$LOGS/full-r$r.out")"
  local path written disk_s vm_s
  read -r path written disk_s vm_s <<<"$s"
  put full "$r" load "$LOAD"
  put full "$r" command_s "$B_CMD"
  put full "$r" ready_s "$B_READY"
  put full "$r" written_bytes "$written"
  put full "$r" file_bytes "$(du -sb "$path" | cut -f1)"
  put full "$r" disk_write_s "$disk_s"
  put full "$r" restore_s "$vm_s"
  local also=
  if [ "$READ_MIB" -gt 0 ]; then
    guest_read "$FULL" full "$r"
    also="; read $READ_MIB MiB of files in $READ_S s"
  fi
  haven_cleanup_vm "$FULL"
  rm -f "$path" "$CONSOLE"
  store_empty "the full restore"
  sync
  log "round $r: full: ready after $B_READY s (command $B_CMD s, of it writing vda $(printf '%.3f' "$disk_s") s); $written bytes written$also"
}

log "$ROUNDS round(s): instant and full restore of point ${POINT:0:8}, alternating which goes first"
START_ROUNDS=$EPOCHREALTIME
for ((r = 1; r <= ROUNDS; r++)); do
  if [ $((r % 2)) = 1 ]; then
    run_instant "$r"
    run_full "$r"
  else
    run_full "$r"
    run_instant "$r"
  fi
done
ROUNDS_S=$(python3 -c "print('%.0f' % ($EPOCHREALTIME - $START_ROUNDS))")

# ---------------------------------------------------------------- results
python3 - "$RAW" "$I/results.md" "$ROUNDS" "$DISK_GIB" "$DATA_BYTES" "$VIRT" "$(nproc)" \
  "$LIBVIRT_V" "$QEMU_V" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$ROUNDS_S" \
  "$(awk -F'\t' '$1 == "from" {print $2}' "$I/data.info")" "$READ_MIB" \
  "$(awk -F'\t' '$1 == "read_bytes" {print $2}' "$I/data.info")" <<'PY'
import statistics, sys
raw, md, rounds, disk_gib, data_bytes, virt, cores, libvirt_v, qemu_v, when, rounds_s, data_from = sys.argv[1:13]
read_mib, read_bytes = int(sys.argv[13]), int(sys.argv[14])
rounds, disk_gib, data_bytes = int(rounds), int(disk_gib), int(data_bytes)
R = {}
for line in open(raw):
    kind, rnd, key, val = line.rstrip("\n").split("\t")
    R.setdefault((kind, key), {})[int(rnd)] = float(val)
def vals(kind, key):
    return [R[(kind, key)][r] for r in sorted(R[(kind, key)])]
med = lambda kind, key: statistics.median(vals(kind, key))
def cell(kind, key, scale=1.0, fmt="%.2f"):
    v = [x / scale for x in vals(kind, key)]
    return (fmt + " (" + fmt + "–" + fmt + ")") % (statistics.median(v), min(v), max(v))
GB, MB = 1e9, 1e6
disk = disk_gib << 30
ratios = [R[("full", "ready_s")][r] / R[("instant", "ready_s")][r] for r in range(1, rounds + 1)]
after = {k: [R[(k, "ready_s")][r] - R[(k, "command_s")][r] for r in range(1, rounds + 1)] for k in ("instant", "full")}
def after_cell(k):
    v = after[k]
    return "%.2f (%.2f–%.2f)" % (statistics.median(v), min(v), max(v))
fetched = vals("instant", "fetched_bytes")
o = []
o.append("Median (min–max) of %d round(s); %s GiB disk, %.2f GB of files; guest %s."
         % (rounds, disk_gib, data_bytes / GB, "TCG" if virt == "qemu" else "KVM"))
o.append("")
o.append("| | instant (`--instant`) | full restore + start | full / instant |")
o.append("|---|---:|---:|---:|")
o.append("| **command → guest running (s)** | %s | %s | **%.2fx** |" % (
    cell("instant", "ready_s"), cell("full", "ready_s"), med("full", "ready_s") / med("instant", "ready_s")))
o.append("| the same, ratio per round (median, min–max) | | | %.2fx (%.2f–%.2f) |" % (
    statistics.median(ratios), min(ratios), max(ratios)))
o.append("| the restore command itself (s) | %s | %s | %.2fx |" % (
    cell("instant", "command_s"), cell("full", "command_s"), med("full", "command_s") / med("instant", "command_s")))
o.append("| of it writing vda (s, from `--json`) | – | %s | |" % cell("full", "disk_write_s"))
o.append("| command's end → guest running (s) | %s | %s | |" % (after_cell("instant"), after_cell("full")))
o.append("| bytes written to local storage (MB) | %s overlay | %s | |" % (
    cell("instant", "overlay_bytes", MB, "%.1f"), cell("full", "written_bytes", MB, "%.1f")))
o.append("| chunk bytes fetched from the repository until running (MB) | %s | all: %.1f | |" % (
    cell("instant", "fetched_bytes", MB, "%.1f"), med("full", "written_bytes") / MB))
o.append("| of the disk's %d GiB | %.3f%% (%.3f–%.3f%%) | | |" % (
    disk_gib, 100 * statistics.median(fetched) / disk, 100 * min(fetched) / disk, 100 * max(fetched) / disk))
o.append("| bytes the guest read through NBD (MB) | %s | | |" % cell("instant", "served_bytes", MB, "%.1f"))
if read_mib:
    o.append("| then: the guest reads %d MiB of its files, cold (s, in the guest) | %s | %s | instant %.2fx slower |" % (
        read_mib, cell("instant", "read_guest_s"), cell("full", "read_guest_s"),
        med("instant", "read_guest_s") / med("full", "read_guest_s")))
    o.append("| the same read in MB/s (%.1f MB of files) | %.1f | %.1f | |" % (
        read_bytes / MB, read_bytes / MB / med("instant", "read_guest_s"), read_bytes / MB / med("full", "read_guest_s")))
    o.append("| chunk bytes fetched once the read is done (MB) | %s | | |" % cell("instant", "fetched_after_read_bytes", MB, "%.1f"))
o.append("| removing the VM afterwards (s) | %s `--discard` | | |" % cell("instant", "discard_s"))
o.append("| load average (1 min) at the start | %s | %s | |" % (cell("instant", "load"), cell("full", "load")))
o.append("")
o.append("Per round (s, command → guest running):")
o.append("")
o.append("| round | " + " | ".join(str(r) for r in range(1, rounds + 1)) + " |")
o.append("|---|" + "---:|" * rounds)
for k, name in (("instant", "instant"), ("full", "full restore + start")):
    o.append("| %s | %s |" % (name, " | ".join("%.2f" % x for x in vals(k, "ready_s"))))
o.append("| full / instant | %s |" % " | ".join("%.2f" % x for x in ratios))
o.append("")
b = {k: R[("setup", k)][0] for k in ("backup_seconds", "backup_read_bytes", "repo_bytes")}
o.append("%s; %s cores; libvirt %s, QEMU %s. The point: `backup vm` of the running guest read "
         "%.2f GB in %.1f s; repository %.2f GB. Files from %s. Measured rounds took %s s."
         % (when, cores, libvirt_v, qemu_v, b["backup_read_bytes"] / GB, b["backup_seconds"],
            b["repo_bytes"] / GB, data_from, rounds_s))
open(md, "w").write("\n".join(o) + "\n")
print("\n".join(o))
PY
log "results: $I/results.md; every measurement in $RAW; logs in $LOGS"
