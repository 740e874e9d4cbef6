#!/usr/bin/env bash
# Haven vs virtnbdbackup (Debian 12: 1.9) on running libvirt VMs: one full
# backup, then N "nights" of scattered guest writes, each followed by an
# incremental backup by each tool. Reports incremental time, output size, and
# proves that every Haven point restores alone. See bench/README.md ("VM
# benchmark").
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/vm.sh [options]

  --nights N     incremental nights after the full backup (default 7)
  --writes N     random 64 KiB guest writes per night (default 200, 12.5 MiB)
  --keep         keep the VMs' disks, the repository and the backup folder
  -h, --help     this help

Environment:
  BENCH_DIR  work dir (default /var/tmp/haven-bench); the VM disks start from
             BENCH_DIR/image.img (built by bench/run.sh --dataset-only if
             missing); everything else goes to BENCH_DIR/vm/
  HAVEN      haven binary (default $PWD/build/haven)
USAGE
}

NIGHTS=7
WRITES=200
KEEP=0
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
while [ $# -gt 0 ]; do
  case "$1" in
    --nights|--writes) [ $# -ge 2 ] || { usage >&2; exit 2; }; set -- "$1=$2" "${@:3}" ;;
    --nights=*) NIGHTS=${1#*=}; shift ;;
    --writes=*) WRITES=${1#*=}; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
{ is_uint "$NIGHTS" && [ "$NIGHTS" -ge 1 ] && [ "$NIGHTS" -le 100 ]; } ||
  { echo "--nights must be an integer in 1..100" >&2; exit 2; }
{ is_uint "$WRITES" && [ "$WRITES" -ge 1 ] && [ "$WRITES" -le 20000 ]; } ||
  { echo "--writes must be an integer in 1..20000" >&2; exit 2; }

log() { printf '[vm-bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[vm-bench] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- parameters
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
SRC=$(cd "$SCRIPT_DIR/.." && pwd -P)
W=${BENCH_DIR:-/var/tmp/haven-bench}
HAVEN=${HAVEN:-$PWD/build/haven}
IMG_SIZE=$((3 * 1024 * 1024 * 1024))   # the dataset image of bench/run.sh
BLOCK=65536
SEED_BASE=1000                         # night n writes with seed 1000+n, on both VMs
HV=haven-bench-hv                      # the VM Haven backs up
VN=haven-bench-vnb                     # its identical twin, backed up by virtnbdbackup
NET=haven-bench-net
export LC_ALL=C
export HAVEN_PASSWORD=haven-bench-password

[ "$(id -u)" = 0 ] || die "run as root (libvirtd, qemu:///system)"
. "$SCRIPT_DIR/lib.sh"
need_pkg /usr/bin/time time
need_pkg python3 python3
need_pkg flock util-linux
need_pkg virsh libvirt-clients
need_pkg /usr/sbin/libvirtd libvirt-daemon-system
need_pkg qemu-system-x86_64 qemu-system-x86
need_pkg qemu-img qemu-utils
need_pkg virtnbdbackup virtnbdbackup
. "$SRC/scripts/libvirt-env.sh"
haven_libvirt_start || die "libvirtd cannot be started"

[ -x "$HAVEN" ] || die "haven binary not found at $HAVEN (build it or set HAVEN=/path/to/haven)"
HAVEN=$(readlink -f "$HAVEN")
help=$("$HAVEN" backup --help 2>&1 || true)
grep -qE '^ +vm( |$)' <<<"$help" || die "$HAVEN has no 'backup vm' (rebuild it)"

mkdir -p "$W"
W=$(cd "$W" && pwd -P)
if [ ! -f "$W/image.img" ] || [ "$(stat -c %s "$W/image.img")" != "$IMG_SIZE" ]; then
  log "no dataset in $W: running bench/run.sh --dataset-only"
  BENCH_DIR=$W "$SCRIPT_DIR/run.sh" --dataset-only >&2
fi
exec 9>"$W/vm.lock"
flock -n 9 || die "another bench/vm.sh is running on $W"

V=$W/vm
HREPO=$V/repo-haven
VREPO=$V/virtnbdbackup
LOGS=$V/logs
RAW=$V/raw.tsv              # tool <tab> key <tab> value
NIGHTS_TSV=$V/nights.tsv
haven_cleanup_vm "$HV" "$VN"      # leftovers of an interrupted run
haven_cleanup_network "$NET"
rm -rf "$V"
mkdir -p "$V/vms" "$LOGS" "$V/bin"
chmod 711 "$V"
: >"$RAW"
cp "$HAVEN" "$V/bin/haven"
log "haven: $HAVEN (sha256 $(sha256sum "$HAVEN" | cut -c1-16)), run from $V/bin/haven"
HAVEN=$V/bin/haven
log "virtnbdbackup $(virtnbdbackup -V 2>&1 | tail -1), libvirt $(virsh -c qemu:///system version | awk '/Using library/ {print $NF}'), QEMU $(virsh -c qemu:///system version | awk '/Running hypervisor/ {print $NF}')"

cleanup() {
  local rc=$?
  set +e
  haven_cleanup_vm "$HV" "$VN"
  haven_cleanup_network "$NET"
  rm -f "$V/ref.raw" "$V/restored.raw" "$V/vnb-restored.raw"
  rm -rf "$V/vnb-restore"
  if [ "$KEEP" = 0 ] && [ "$rc" = 0 ]; then
    rm -rf "$HREPO" "$VREPO" "$V/vms" "$V/bin"
  elif [ "$rc" != 0 ]; then
    log "failed (exit $rc): kept $V for inspection"
  fi
  exit "$rc"
}
trap cleanup EXIT

put() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RAW"; }
get() { awk -F'\t' -v t="$1" -v k="$2" '$1 == t && $2 == k {v = $3} END {print v}' "$RAW"; }
size_of() { du -sb "$1" | cut -f1; }
# timed NAME CMD...: runs CMD under /usr/bin/time after a sync; stdout and
# stderr to LOGS/NAME.{out,err}; leaves seconds and peak RSS (KiB) in
# T_SEC / T_RSS; dies if CMD fails.
timed() {
  local name=$1
  shift
  sync
  /usr/bin/time -f '%e %M' -o "$LOGS/$name.time" "$@" >"$LOGS/$name.out" 2>"$LOGS/$name.err" ||
    die "$name failed: $(tail -5 "$LOGS/$name.err")"
  read -r T_SEC T_RSS <"$LOGS/$name.time"
}
# ref_sha VM: sha256 of the VM's disk right now (paused for the copy).
ref_sha() {
  haven_disk_copy "$1" "$V/vms/$1-vda.qcow2" qcow2 "$V/ref.raw" || die "reference copy of $1"
  sha256sum "$V/ref.raw" | cut -d' ' -f1
  rm -f "$V/ref.raw"
}

# ---------------------------------------------------------------- the two VMs
# Both VMs' vda is a qcow2 overlay on one read-only base made from the
# dataset's 3 GiB ext4 image (1.7 GB of files): two clones of one template.
# The bitmaps and checkpoints live in each overlay; the tools read the whole
# chain through the backup job's NBD export.
log "base image: $W/image.img -> $V/vms/base.qcow2"
qemu-img convert -f raw -O qcow2 "$W/image.img" "$V/vms/base.qcow2"
haven_make_network "$NET" hvbench0 || die "network $NET"
for vm in "$HV" "$VN"; do
  HAVEN_VM_VDB_SIZE=0 haven_make_vm "$vm" "$V/vms" "$NET" "$V/vms/base.qcow2" || die "VM $vm"
done
"$HAVEN" -r "$HREPO" init >"$LOGS/haven-init.out" 2>&1 || die "haven init: $(cat "$LOGS/haven-init.out")"
put haven init_bytes "$(size_of "$HREPO")"
mkdir -p "$VREPO"

# haven_night N MODE: Haven's backup of night N (0 = full); checks the JSON.
haven_night() {
  timed "haven-$1" "$HAVEN" -r "$HREPO" --json backup vm "$HV"
  local j=$LOGS/haven-$1.out
  python3 - "$j" "$2" <<'EOF' || die "haven night $1: unexpected result: $(head -c 1500 "$j")"
import json, sys
j = json.load(open(sys.argv[1]))
v = j["vms"][0]
assert v["ok"], v["error"]
d = next(d for d in v["disks"] if d["name"] == "vda")
assert d["mode"] == sys.argv[2], (d["mode"], d["reason"])
EOF
  put haven "time_$1" "$T_SEC"
  put haven "rss_$1" "$T_RSS"
  put haven "id_$1" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["vms"][0]["snapshot"])' "$j")"
  put haven "read_$1" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["vms"][0]["disks"][0]["read_bytes"])' "$j")"
  put haven "size_$1" "$(size_of "$HREPO")"
}
# vnb_night N LEVEL: virtnbdbackup's backup of night N.
vnb_night() {
  timed "vnb-$1" virtnbdbackup -d "$VN" -l "$2" -o "$VREPO" -n
  put vnb "time_$1" "$T_SEC"
  put vnb "rss_$1" "$T_RSS"
  put vnb "size_$1" "$(size_of "$VREPO")"
}

# ---------------------------------------------------------------- night 0: full
log "night 0: full backups (Haven, then virtnbdbackup)"
haven_night 0 full
vnb_night 0 full
SHA0=$(ref_sha "$HV")
printf 'night\tsha256\thaven_s\tvnb_s\thaven_read\thaven_repo\tvnb_dir\n' >"$NIGHTS_TSV"
row() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$(get haven "time_$1")" "$(get vnb "time_$1")" \
    "$(get haven "read_$1")" "$(get haven "size_$1")" "$(get vnb "size_$1")" >>"$NIGHTS_TSV"
}
row 0 "$SHA0"
log "night 0: haven $(get haven time_0) s, virtnbdbackup $(get vnb time_0) s"

# ---------------------------------------------------------------- nights
for n in $(seq 1 "$NIGHTS"); do
  for vm in "$HV" "$VN"; do
    haven_guest_write_random "$vm" vda $((SEED_BASE + n)) "$WRITES" "$BLOCK" >"$LOGS/writes-$n-$vm" ||
      die "guest writes night $n on $vm"
  done
  cmp -s "$LOGS/writes-$n-$HV" "$LOGS/writes-$n-$VN" || die "night $n: the two VMs got different writes"
  haven_night "$n" incremental
  vnb_night "$n" inc
  row "$n" "$(ref_sha "$HV")"
  log "night $n: haven $(get haven "time_$n") s, virtnbdbackup $(get vnb "time_$n") s"
done
SHA_LAST=$(awk -F'\t' 'END {print $2}' "$NIGHTS_TSV")
[ "$(ref_sha "$VN")" = "$SHA_LAST" ] || die "the two VMs' disks differ after night $NIGHTS"
log "both VMs' disks are identical after night $NIGHTS"

# ---------------------------------------------------------------- restores
# Every Haven point alone (by id), in reverse order, against its night's sha256.
for n in $(seq "$NIGHTS" -1 0); do
  rm -f "$V/restored.raw"
  timed "haven-restore-$n" "$HAVEN" -r "$HREPO" restore image "$(get haven "id_$n")" --disk vda --to "$V/restored.raw"
  put haven "restore_time_$n" "$T_SEC"
  got=$(sha256sum "$V/restored.raw" | cut -d' ' -f1)
  want=$(awk -F'\t' -v n="$n" '$1 == n {print $2}' "$NIGHTS_TSV")
  [ "$got" = "$want" ] || die "haven point of night $n restores to sha256 $got, expected $want"
  log "haven point of night $n restored alone in $T_SEC s: sha256 matches"
done
rm -f "$V/restored.raw"
put haven restored_alone "$((NIGHTS + 1))"
# virtnbdrestore rebuilds a point by replaying the full backup and every
# incremental up to it: the latest, and one in the middle (-u CHECKPOINT).
vnb_restore() {  # NAME SHA [ARGS]
  local name=$1 want=$2
  shift 2
  rm -rf "$V/vnb-restore"
  timed "$name" virtnbdrestore -i "$VREPO" -o "$V/vnb-restore" -n -L "$LOGS/$name.restore-log" "$@"
  put vnb "${name}_time" "$T_SEC"
  put vnb "${name}_files" "$(grep -c 'Applying data from backup file' "$LOGS/$name.err" "$LOGS/$name.out" |
    awk -F: '{s += $2} END {print s}')"
  qemu-img convert -O raw "$V/vnb-restore/$VN-vda.qcow2" "$V/vnb-restored.raw"
  local got
  got=$(sha256sum "$V/vnb-restored.raw" | cut -d' ' -f1)
  rm -rf "$V/vnb-restored.raw" "$V/vnb-restore"
  [ "$got" = "$want" ] || die "virtnbdrestore $name: sha256 $got, expected $want"
}
vnb_restore vnb-restore-latest "$SHA_LAST"
MID=$(((NIGHTS + 1) / 2))
vnb_restore vnb-restore-mid "$(awk -F'\t' -v n="$MID" '$1 == n {print $2}' "$NIGHTS_TSV")" -u "virtnbdbackup.$MID"
log "virtnbdrestore: latest from $(get vnb vnb-restore-latest_files) files, night $MID from $(get vnb vnb-restore-mid_files)"

# ---------------------------------------------------------------- results
python3 - "$RAW" "$NIGHTS" "$WRITES" "$BLOCK" "$V/results.md" "$V/results.tsv" <<'EOF'
import statistics, sys
raw, nights, writes, block, md, tsv = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
R = {}
for line in open(raw):
    t, k, v = line.rstrip("\n").split("\t")
    R[(t, k)] = v
f = lambda t, k: float(R[(t, k)])
MiB = 1 << 20
inc = {t: [f(t, "time_%d" % n) for n in range(1, nights + 1)] for t in ("haven", "vnb")}
rss = {t: max(f(t, "rss_%d" % n) for n in range(0, nights + 1)) / 1024 for t in ("haven", "vnb")}
size0 = {"haven": f("haven", "size_0") - f("haven", "init_bytes"), "vnb": f("vnb", "size_0")}
sizeN = {"haven": f("haven", "size_%d" % nights) - f("haven", "init_bytes"), "vnb": f("vnb", "size_%d" % nights)}
growth = {t: statistics.median([f(t, "size_%d" % n) - f(t, "size_%d" % (n - 1)) for n in range(1, nights + 1)]) / MiB
          for t in ("haven", "vnb")}
changed = writes * block / MiB

def speed(h, p):
    if h <= 0 or p <= 0: return "-"
    return "%.1fx faster" % (p / h) if p >= h else "%.1fx slower" % (h / p)
rows = [
    ("full backup (s)", f("haven", "time_0"), f("vnb", "time_0"), speed(f("haven", "time_0"), f("vnb", "time_0"))),
    ("incremental backup, median of %d nights (s)" % nights, statistics.median(inc["haven"]),
     statistics.median(inc["vnb"]), speed(statistics.median(inc["haven"]), statistics.median(inc["vnb"]))),
    ("incremental backup, min / max (s)", "%.2f / %.2f" % (min(inc["haven"]), max(inc["haven"])),
     "%.2f / %.2f" % (min(inc["vnb"]), max(inc["vnb"])), "-"),
    ("peak RSS over all backups (MiB)", rss["haven"], rss["vnb"], "%.2fx" % (rss["haven"] / rss["vnb"])),
    ("size after the full backup (MiB)", size0["haven"] / MiB, size0["vnb"] / MiB, "%.2fx" % (size0["haven"] / size0["vnb"])),
    ("growth per night, median (MiB)", growth["haven"], growth["vnb"], "%.2fx" % (growth["haven"] / growth["vnb"])),
    ("**total size after %d nights (MiB)**" % nights, sizeN["haven"] / MiB, sizeN["vnb"] / MiB,
     "%.2fx" % (sizeN["haven"] / sizeN["vnb"])),
    ("changed per night (MiB, reference)", changed, changed, "-"),
    ("restore latest point (s)", f("haven", "restore_time_%d" % nights), f("vnb", "vnb-restore-latest_time"),
     speed(f("haven", "restore_time_%d" % nights), f("vnb", "vnb-restore-latest_time"))),
    ("backup files read to restore the latest point", "1 point", "%s files (full + %d incrementals)" % (
        R[("vnb", "vnb-restore-latest_files")], nights), "-"),
    ("points verified to restore alone (sha256)", "%s of %d" % (R[("haven", "restored_alone")], nights + 1),
     "none can: each needs the full and every incremental before it", "-"),
]
fmt = lambda x: "%.2f" % x if isinstance(x, float) else str(x)
with open(md, "w") as o:
    o.write("| metric | Haven | virtnbdbackup | Haven vs virtnbdbackup |\n|---|---:|---:|---:|\n")
    for r in rows:
        o.write("| %s | %s | %s | %s |\n" % (r[0], fmt(r[1]), fmt(r[2]), r[3]))
    o.write("\nIncremental backup time per night (s):\n\n| night | " + " | ".join(str(n) for n in range(1, nights + 1)) +
            " |\n|---|" + "---:|" * nights + "\n")
    for t, name in (("haven", "Haven"), ("vnb", "virtnbdbackup")):
        o.write("| %s | %s |\n" % (name, " | ".join("%.2f" % x for x in inc[t])))
with open(tsv, "w") as o:
    for r in rows:
        o.write("\t".join(fmt(x) for x in r) + "\n")
EOF
cat "$V/results.md"
log "results: $V/results.md, $V/results.tsv, $NIGHTS_TSV; logs in $LOGS"
