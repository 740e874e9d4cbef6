#!/usr/bin/env bash
# `haven restore vm` / `haven restore host` end to end against a real libvirtd
# + QEMU (TCG, no KVM, no guest OS):
# setup: an isolated network (no <forward>) with a fixed bridge, a DHCP range
#        and DHCP reservations for the fixed MACs of two VMs: A (qcow2 vda +
#        raw vdb) and B (qcow2 vda), random data written by the "guest";
#        `backup vm A B`; references of the disks, the inactive domain XML and
#        the network XML. Then the host is "lost": VMs, network, disk files.
# (5) --network-map NET=OTHER onto another existing network: the NIC uses
#     OTHER, NET is not created.
# (1) host loss: `restore host --all --start` brings back both VMs (same XML
#     apart from disk paths, same UUIDs and MACs), the network (identical
#     net-dumpxml: uuid, bridge, DHCP host entries; active, autostart) and
#     byte-identical disks; both run. --dry-run first changes nothing.
# (2) beside the original: --name A2 --new-identity: new UUID and MACs, disks
#     in another folder, both run.
# (3) the same restore again: "already restored from this point", nothing
#     changed; conflicts (same name not restored by Haven, same UUID, existing
#     files; --dry-run; restore host plans all first): exit 1, lines starting
#     "problem:", nothing changed; --replace restores the backed-up disks over
#     a changed VM.
# (4) a restore killed (SIGKILL) after its first disk: no domain; the same
#     command again completes; journal and partial files gone.
# (6) the plan is what runs: a --new-identity dry run's JSON (UUID, MACs,
#     disks, folders to create, networks, space) equals the run's, and the
#     defined domain has that UUID and MAC.
# (7) preflight: a read-only file system, too little free space, a folder
#     QEMU's user cannot enter, a file instead of a folder — each found by
#     the dry run (exit 1, a "problem:" line naming it) and refused by the
#     run with nothing written.
# (8) kill -9 at each phase (disk written, network created, files placed,
#     domain defined, started), then the same command: exit 0, the VM
#     defined and running, its disk byte-identical, the network active, no
#     journal or partial files; the staged disk is not written again.
# (u) usage errors exit 2 and change nothing.
# Skips (exit 0) only when libvirtd cannot be started here; with CI or
# HAVEN_REQUIRE_LIBVIRT=1 in the environment that is a failure instead.
. "$(dirname "$0")/libvirt_lib.sh" dnsmasq

# ---------------------------------------------------------------- setup
T=haven-r-$$
NET=$T-net OTHER=$T-other
A=$T-a     # qcow2 vda + raw vdb, fixed MAC, DHCP reservation
B=$T-b     # qcow2 vda, fixed MAC, DHCP reservation
A2=$T-a2   # (2) beside A
A3=$T-a3 A4=$T-a4 A5=$T-a5  # (3) refused / dry-run names
A6=$T-a6   # (4) interrupted
B2=$T-b2   # (5) network map
A7=$T-a7 A8=$T-a8  # (6) plan = run, (7) preflight
B8=$T-b8   # (8) killed at each phase
VMS=("$A" "$B" "$A2" "$A3" "$A4" "$A5" "$A6" "$B2" "$A7" "$A8" "$B8")
P2=$(printf '%02x:%02x' $((($$ >> 8) & 255)) $(($$ & 255)))
MAC_A=52:54:00:$P2:0a MAC_B=52:54:00:$P2:0b
HPID=
chmod 711 "$WORK"
# pids_with TEXT: haven and qemu-nbd processes whose command line holds TEXT
# (a path of this run's unique work folder): the ones this test started.
pids_with() {
  local p c
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    case "$(cat "/proc/$p/comm" 2>/dev/null)" in haven|qemu-nbd) ;; *) continue ;; esac
    c=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) || continue
    case "$c" in *"$1"*) echo "$p" ;; esac
  done
  return 0
}
cleanup() {
  set +e
  [ -n "$HPID" ] && { kill -9 "$HPID" 2>/dev/null; wait "$HPID" 2>/dev/null; }
  for p in $(pids_with "$WORK/"); do kill -9 "$p" 2>/dev/null; done
  for m in "$WORK"/mnt-*; do mountpoint -q "$m" 2>/dev/null && umount "$m"; done
  haven_cleanup_vm "${VMS[@]}"
  haven_cleanup_network "$NET" "$OTHER"
  # A restore that ignored --storage-dir would have written to the default folder.
  rm -f /var/lib/libvirt/images/"$T"-* /var/lib/libvirt/images/.haven-restore-"$T"-*
  rm -rf "$WORK"
}
trap cleanup EXIT

R=$WORK/repo
PWF=$WORK/passphrase
echo "vm-restore-test-passphrase" >"$PWF"
unset HAVEN_PASSWORD
VMDIR=$WORK/vms REF=$WORK/ref ST=$WORK/st SAVED=$WORK/saved
mkdir -p "$VMDIR" "$REF" "$ST" "$SAVED"
chmod 711 "$ST"
hv() { "$HAVEN" -r "$R" --password-file "$PWF" "$@"; }
vsh() { virsh -q -c qemu:///system "$@"; }
MiB=$((1 << 20))
VDA_SIZE=$((128 * MiB)) VDB_SIZE=$((64 * MiB))

# storage DIR: a fresh, empty folder for restored disks (QEMU can reach it).
storage() { mkdir -p "$ST/$1" && chmod 755 "$ST/$1" && echo "$ST/$1"; }
# rj TAG EXPR: EXPR over the restore JSON saved as $WORK/TAG.json.
rj() { jget "$2" "$WORK/$1.json"; }
# vmj TAG VM EXPR: EXPR over that VM's entry (v) of a restore JSON.
vmj() { jget "(lambda v: $3)(next(v for v in j['vms'] if v['name'] == '$2'))" "$WORK/$1.json"; }
# restore TAG WANT_RC ARGS...: haven --json restore ARGS; JSON kept in $WORK/TAG.json.
restore() {
  local tag=$1 want=$2
  shift 2
  run hv --json restore "$@"
  cp "$WORK/out" "$WORK/$tag.json"
  cp "$WORK/err" "$WORK/$tag.err"
  [ "$RC" = "$want" ] || fail "$tag: haven --json restore $*: exit code $RC, expected $want; stdout: $(head -c 3000 "$WORK/out"); stderr: $(head -c 3000 "$WORK/err")"
  jget 'j["vms"]' "$WORK/$tag.json" >/dev/null ||
    fail "$tag: no vms[] in the JSON of 'restore $*': $(head -c 2000 "$WORK/out"); stderr: $(head -c 2000 "$WORK/err")"
}
# restore_h TAG WANT_RC ARGS...: the human form; stdout+stderr in $WORK/TAG.txt.
restore_h() {
  local tag=$1 want=$2
  shift 2
  run hv restore "$@"
  cat "$WORK/out" "$WORK/err" >"$WORK/$tag.txt"
  [ "$RC" = "$want" ] || fail "$tag: haven restore $*: exit code $RC, expected $want; output: $(head -c 3000 "$WORK/$tag.txt")"
}
# conflict_line TAG TEXT: a line of the output starting "problem:" holds TEXT.
CONFLICT_RE='^problem:'
conflict_line() {
  grep -E "$CONFLICT_RE" "$WORK/$1.txt" | grep -qiF -- "$2" ||
    fail "$1: no 'problem:' line naming '$2'; output: $(head -c 3000 "$WORK/$1.txt")"
}
# vm_ok TAG VM: that VM succeeded in a restore JSON.
vm_ok() {
  [ "$(vmj "$1" "$2" 'v["ok"]')" = true ] || fail "$1: $2 not ok: $(vmj "$1" "$2" 'v["error"]') $(vmj "$1" "$2" 'v["conflicts"]')"
  [ "$(vmj "$1" "$2" 'v["error"]')" = "" ] || fail "$1: $2 ok but error '$(vmj "$1" "$2" 'v["error"]')'"
  [ "$(vmj "$1" "$2" 'v["defined"]')" = true ] || fail "$1: $2 ok but not defined"
}
# dom VM: facts of the inactive definition, one per line: "uuid U", "mac M",
# "disk TARGET TYPE FORMAT PATH", "net NETWORK", "nvram PATH".
dom() {
  vsh dumpxml --inactive "$1" | py -c '
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.stdin).getroot()
print("uuid", r.findtext("uuid"))
for i in r.iter("interface"):
    m, s = i.find("mac"), i.find("source")
    print("mac", m.get("address") if m is not None else "")
    print("net", s.get("network") or s.get("bridge") if s is not None else "")
for d in r.iter("disk"):
    dr, s, t = d.find("driver"), d.find("source"), d.find("target")
    src = "" if s is None else (s.get("file") or s.get("dev") or s.get("volume") or "")
    print("disk", t.get("dev"), d.get("type"), dr.get("type") if dr is not None else "", src)
nv = r.find("os/nvram")
if nv is not None: print("nvram", nv.text)'
}
domf() { dom "$1" | awk -v k="$2" '$1 == k {sub(/^[^ ]+ /, ""); print}'; }
defined() { vsh dominfo "$1" >/dev/null 2>&1; }
lsdir() { ls -A "$1" | LC_ALL=C sort | tr '\n' ' '; }
# files DIR NAME...: DIR holds exactly these files.
files() {
  local d=$1 want
  shift
  want=$(printf '%s\n' "$@" | LC_ALL=C sort | tr '\n' ' ')
  [ "$(lsdir "$d")" = "$want" ] || fail "files in $d: $(lsdir "$d"), expected $want"
}
# xml_expect SAVED OUT OLD NEW...: SAVED with each OLD replaced by NEW (each
# OLD must occur) -> OUT.
xml_expect() {
  py - "$@" <<'EOF'
import sys
src, out, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
s = open(src).read()
for old, new in zip(pairs[::2], pairs[1::2]):
    if old not in s:
        sys.exit("xml_expect: %r not in %s" % (old, src))
    s = s.replace(old, new)
open(out, "w").write(s)
EOF
}
# restored_from VM: the point named by the domain's Haven restore metadata.
restored_from() {
  vsh metadata "$1" urn:x-haven:restore:1 --config 2>/dev/null |
    sed -nE 's/.*snapshot="([0-9a-f]+)".*/\1/p'
}
# same_domain VM EXPECTED WHAT: `dumpxml --inactive VM` equals EXPECTED, apart
# from the restore metadata Haven adds (checked with restored_from).
same_domain() {
  vsh dumpxml --inactive "$1" | py -c '
import re, sys
s = sys.stdin.read()
s = re.sub(r"\n *<haven:restore [^>]*/>", "", s)
s = re.sub(r"\n *<metadata>\s*</metadata>", "", s)
sys.stdout.write(s)' >"$WORK/now.xml"
  if ! cmp -s "$2" "$WORK/now.xml"; then
    diff "$2" "$WORK/now.xml" | head -40 >&2
    fail "$3: the inactive XML of $1 differs from the expected one (diff above: < expected, > restored)"
  fi
}
# net_xml NET: net-dumpxml without connections='N' (run-time state, not config).
net_xml() { vsh net-dumpxml "$1" | sed -E "s/ connections='[0-9]+'//"; }
# check_disk FILE FORMAT REF WHAT: FILE is a FORMAT image whose content equals REF (raw).
check_disk() {
  [ -f "$1" ] || fail "$4: $1 does not exist (folder: $(ls -A "$(dirname "$1")" | tr '\n' ' '))"
  local info fmt vsize
  info=$(qemu-img info -U --output=json "$1") || fail "$4: qemu-img info $1"
  fmt=$(jget 'j["format"]' <<<"$info") vsize=$(jget 'j["virtual-size"]' <<<"$info")
  [ "$fmt" = "$2" ] || fail "$4: $1 is $fmt, expected $2"
  [ "$vsize" = "$(stat -c %s "$3")" ] || fail "$4: $1 has virtual size $vsize, the backed-up disk $(stat -c %s "$3")"
  qemu-img compare -U -q -f "$2" -F raw "$1" "$3" ||
    fail "$4: $1 differs from the disk at backup time ($(qemu-img compare -U -f "$2" -F raw "$1" "$3" 2>&1 | head -2))"
}
# state: what a refused or dry-run restore must not change: the test's domains
# (definition, state), networks (definition, active, autostart) and every
# file under the storage folders (name, size, mtime, inode).
state() {
  local d n
  for d in $(vsh list --all --name | grep "^$T-" | LC_ALL=C sort || true); do
    echo "domain $d $(vsh domstate "$d") $(vsh dumpxml --inactive "$d" | sha256sum | cut -c1-16)"
  done
  for n in $(vsh net-list --all --name | grep "^$T-" | LC_ALL=C sort || true); do
    echo "network $n $(vsh net-info "$n" | awk '/^(Active|Autostart):/ {printf "%s ", $2}')$(net_xml "$n" | sha256sum | cut -c1-16)"
  done
  find "$ST" -mindepth 1 -printf '%p %s %T@ %i\n' | LC_ALL=C sort
  ls -a /var/lib/libvirt/images 2>/dev/null | grep -F -- "$T-" | sed 's/^/default-dir /' || true
}
unchanged() {  # unchanged BEFORE_FILE WHAT
  state >"$WORK/state-after"
  if ! cmp -s "$1" "$WORK/state-after"; then
    diff "$1" "$WORK/state-after" >&2
    fail "$2 changed the host (diff above: < before, > after)"
  fi
}
no_leftovers() {  # no_leftovers DIR VM WHAT: no journal, no partial files
  [ ! -e "$1/.haven-restore-$2.json" ] || fail "$3: journal $1/.haven-restore-$2.json left behind"
  local left
  left=$(find "$1" -name '*.haven-*' 2>/dev/null || true)
  [ -z "$left" ] || fail "$3: left behind: $left"
}

help=$("$HAVEN" restore vm --help 2>&1 || true)
grep -q -- '--new-identity' <<<"$help" || fail "this haven has no 'restore vm' command: $help"
help=$("$HAVEN" restore host --help 2>&1 || true)
grep -q -- '--all' <<<"$help" || fail "this haven has no 'restore host' command: $help"
expect_rc 0 "init" hv init

PREFIX=$(haven_make_dhcp_network "$NET" "hvr$$" "$MAC_A" "$MAC_B") || fail "could not create network $NET"
HAVEN_VM_MAC=$MAC_A HAVEN_VM_VDA_SIZE=128M HAVEN_VM_VDB_SIZE=64M haven_make_vm "$A" "$VMDIR" "$NET" ||
  fail "could not create VM $A"
HAVEN_VM_MAC=$MAC_B HAVEN_VM_VDA_SIZE=128M HAVEN_VM_VDB_SIZE=0 haven_make_vm "$B" "$VMDIR" "$NET" ||
  fail "could not create VM $B"
haven_guest_write_random "$A" vda 101 48 65536 >/dev/null || fail "guest writes $A vda"
haven_guest_write "$A" vda random:102 100M 2M || fail "guest write $A vda"
haven_guest_write_random "$A" vdb 103 16 65536 >/dev/null || fail "guest writes $A vdb"
haven_guest_write "$A" vdb 0xab 63M 1M || fail "guest write $A vdb"
haven_guest_write_random "$B" vda 104 32 65536 >/dev/null || fail "guest writes $B vda"
run hv --json backup vm "$A" "$B"
cp "$WORK/out" "$WORK/backup.json"
[ "$RC" = 0 ] || fail "backup vm $A $B: exit code $RC: $(head -c 2000 "$WORK/out") $(head -c 2000 "$WORK/err")"
SNAP_A=$(jget "next(v['snapshot'] for v in j['vms'] if v['name'] == '$A')" "$WORK/backup.json")
SNAP_B=$(jget "next(v['snapshot'] for v in j['vms'] if v['name'] == '$B')" "$WORK/backup.json")
# Nothing in a guest without an OS writes: the disks now are the disks at the backup.
haven_disk_copy "$A" "$VMDIR/$A-vda.qcow2" qcow2 "$REF/a-vda.raw" || fail "reference copy $A vda"
haven_disk_copy "$A" "$VMDIR/$A-vdb.raw" raw "$REF/a-vdb.raw" || fail "reference copy $A vdb"
haven_disk_copy "$B" "$VMDIR/$B-vda.qcow2" qcow2 "$REF/b-vda.raw" || fail "reference copy $B vda"
vsh dumpxml --inactive "$A" >"$SAVED/a.xml"
vsh dumpxml --inactive "$B" >"$SAVED/b.xml"
net_xml "$NET" >"$SAVED/net.xml"
UUID_A=$(domf "$A" uuid) UUID_B=$(domf "$B" uuid)
[ "$(domf "$A" mac)" = "$MAC_A" ] && [ "$(domf "$B" mac)" = "$MAC_B" ] || fail "setup: the VMs do not have the fixed MACs"
contains "$SAVED/net.xml" "<host mac='$MAC_A' name='host11' ip='$PREFIX.11'/>" "setup: network XML"
ok "setup: network $NET (bridge hvr$$, DHCP reservations for $MAC_A and $MAC_B), $A (vda qcow2 + vdb raw) and $B backed up (${SNAP_A:0:8}, ${SNAP_B:0:8})"

# The host is lost: domains, network and disk files gone.
haven_cleanup_vm "$A" "$B"
haven_cleanup_network "$NET"
rm -f "$VMDIR"/*
! defined "$A" && ! defined "$B" && ! vsh net-info "$NET" >/dev/null 2>&1 || fail "could not remove the VMs and the network"
! ip link show "hvr$$" >/dev/null 2>&1 || fail "bridge hvr$$ still exists after the network was removed"

# ------------------------------------------------ (u) usage errors, exit 2
case_u() {
  local d
  d=$(storage u)
  state >"$WORK/state-before"
  expect_rc 2 "--storage-dir with --pool" hv restore vm "$A:latest" --storage-dir "$d" --pool default
  expect_rc 2 "--format vmdk" hv restore vm "$A:latest" --storage-dir "$d" --format vmdk
  expect_rc 2 "--network-map without =" hv restore vm "$A:latest" --storage-dir "$d" --network-map "$NET"
  expect_rc 2 "restore host with neither points nor --all" hv restore host --storage-dir "$d"
  expect_rc 2 "restore vm without a point" hv restore vm --storage-dir "$d"
  unchanged "$WORK/state-before" "(u) usage errors"
  ok "(u) usage errors exit 2 and change nothing"
}
# ------------------------------------------------ (5) network map
# Runs first, while NET is gone from the host, so "NET not created" means
# something.
case_5() {
  haven_make_network "$OTHER" "hvro$$" || fail "could not create network $OTHER"
  local d
  d=$(storage b2)
  restore map 0 vm "$B:latest" --name "$B2" --new-identity --storage-dir "$d" --network-map "$NET=$OTHER" --start
  vm_ok map "$B2"
  [ "$(domf "$B2" net)" = "$OTHER" ] || fail "(5) $B2 uses network '$(domf "$B2" net)', expected $OTHER"
  ! vsh net-info "$NET" >/dev/null 2>&1 || fail "(5) network $NET was created although it was mapped to $OTHER"
  [ "$(vmj map "$B2" "[(n['name'], n['action'], n['from']) for n in v['networks']]")" = "[[\"$OTHER\", \"mapped\", \"$NET\"]]" ] ||
    fail "(5) JSON networks: $(vmj map "$B2" 'v["networks"]'), expected one: $OTHER mapped from $NET"
  [ "$(vsh domstate "$B2")" = running ] || fail "(5) $B2 is $(vsh domstate "$B2") after --start"
  check_disk "$d/$B2-vda.qcow2" qcow2 "$REF/b-vda.raw" "(5) $B2 vda"
  ok "(5) --network-map $NET=$OTHER: $B2 runs on $OTHER, $NET not created"
  haven_cleanup_vm "$B2"
  rm -rf "$d"
}
# ------------------------------------------------ (1) host loss
# net_created TAG WHAT: each VM names NET; the first one planned creates it,
# the other finds it (create + exists; create twice is accepted too).
net_created() {
  local n
  n=$(rj "$1" "sorted((n['name'], n['action']) for v in j['vms'] for n in v['networks'])")
  [ "$n" = "[[\"$NET\", \"create\"], [\"$NET\", \"restore\"]]" ] ||
    fail "$2: JSON networks: $(rj "$1" '[v["networks"] for v in j["vms"]]'), expected $NET created by the first VM and the second told so"
}
case_1() {
  local d
  d=$(storage host)
  state >"$WORK/state-before"
  restore host-dry 0 host --all --storage-dir "$d" --start --dry-run
  [ "$(rj host-dry 'j["dry_run"]')" = true ] || fail "(1) dry run: dry_run is not true"
  [ "$(rj host-dry 'sorted(v["name"] for v in j["vms"])')" = "[\"$A\", \"$B\"]" ] ||
    fail "(1) dry run plans $(rj host-dry '[v["name"] for v in j["vms"]]'), expected $A and $B"
  net_created host-dry "(1) dry run"
  [ "$(vmj host-dry "$A" "sorted((x['target'], x['path'], x['format'], x['size']) for x in v['disks'])")" = \
    "[[\"vda\", \"$d/$A-vda.qcow2\", \"qcow2\", $VDA_SIZE], [\"vdb\", \"$d/$A-vdb.img\", \"raw\", $VDB_SIZE]]" ] ||
    fail "(1) dry run: disks of $A: $(vmj host-dry "$A" 'v["disks"]')"
  unchanged "$WORK/state-before" "(1) restore host --dry-run"
  restore_h host-dry-h 0 host --all --storage-dir "$d" --dry-run
  for s in "$d/$A-vda.qcow2" "$d/$A-vdb.img" "$d/$B-vda.qcow2" "$NET" "created by the restore of $A"; do contains "$WORK/host-dry-h.txt" "$s" "(1) human dry run"; done
  unchanged "$WORK/state-before" "(1) restore host --dry-run (human)"
  ok "(1) restore host --all --dry-run: plans both VMs, their disk paths and formats, network $NET to create; nothing changed"

  restore host 0 host --all --storage-dir "$d" --start
  [ "$(rj host 'j["succeeded"]')" = 2 ] && [ "$(rj host 'j["failed"]')" = 0 ] && [ "$(rj host 'j["dry_run"]')" = false ] ||
    fail "(1) succeeded/failed/dry_run: $(head -c 2000 "$WORK/host.json")"
  for vm in "$A" "$B"; do
    vm_ok host "$vm"
    [ "$(vmj host "$vm" 'v["started"]')" = true ] || fail "(1) $vm not started"
    [ "$(vmj host "$vm" 'v["source_name"]')" = "$vm" ] || fail "(1) $vm source_name $(vmj host "$vm" 'v["source_name"]')"
    [ "$(vmj host "$vm" 'all(x["old"] == x["new"] for x in v["macs"])')" = true ] || fail "(1) $vm MACs changed without --new-identity: $(vmj host "$vm" 'v["macs"]')"
  done
  [ "$(vmj host "$A" 'v["snapshot"]')" = "$SNAP_A" ] && [ "$(vmj host "$B" 'v["snapshot"]')" = "$SNAP_B" ] ||
    fail "(1) restored points $(vmj host "$A" 'v["snapshot"]') / $(vmj host "$B" 'v["snapshot"]'), backed up $SNAP_A / $SNAP_B"
  [ "$(vmj host "$A" 'v["uuid"]')" = "$UUID_A" ] || fail "(1) JSON uuid of $A: $(vmj host "$A" 'v["uuid"]'), expected $UUID_A"
  net_created host "(1)"
  [ "$(vmj host "$A" "next(x for x in v['disks'] if x['target'] == 'vda')['data_bytes'] > 0 and all(x['data_bytes'] <= x['size'] for x in v['disks'])")" = true ] ||
    fail "(1) data_bytes of $A: $(vmj host "$A" 'v["disks"]')"
  xml_expect "$SAVED/a.xml" "$WORK/a-exp.xml" "'$VMDIR/$A-vda.qcow2'" "'$d/$A-vda.qcow2'" "'$VMDIR/$A-vdb.raw'" "'$d/$A-vdb.img'"
  xml_expect "$SAVED/b.xml" "$WORK/b-exp.xml" "'$VMDIR/$B-vda.qcow2'" "'$d/$B-vda.qcow2'"
  same_domain "$A" "$WORK/a-exp.xml" "(1)"
  same_domain "$B" "$WORK/b-exp.xml" "(1)"
  [ "$(restored_from "$A")" = "$SNAP_A" ] && [ "$(restored_from "$B")" = "$SNAP_B" ] ||
    fail "(1) restore metadata: $A '$(restored_from "$A")', $B '$(restored_from "$B")'"
  [ "$(domf "$A" uuid)" = "$UUID_A" ] && [ "$(domf "$B" uuid)" = "$UUID_B" ] || fail "(1) UUIDs changed"
  [ "$(domf "$A" mac)" = "$MAC_A" ] && [ "$(domf "$B" mac)" = "$MAC_B" ] || fail "(1) MACs changed"
  ok "(1) both domains defined: inactive XML as backed up apart from the disk paths (same UUIDs, MACs, network)"

  net_xml "$NET" >"$WORK/net-now.xml"
  if ! cmp -s "$SAVED/net.xml" "$WORK/net-now.xml"; then
    diff "$SAVED/net.xml" "$WORK/net-now.xml" >&2
    fail "(1) net-dumpxml $NET differs from the one before the host was lost (diff above)"
  fi
  contains "$WORK/net-now.xml" "<host mac='$MAC_A' name='host11' ip='$PREFIX.11'/>" "(1) DHCP reservation"
  contains "$WORK/net-now.xml" "<bridge name='hvr$$'" "(1) bridge"
  vsh net-info "$NET" >"$WORK/netinfo"
  grep -qE '^Active: +yes' "$WORK/netinfo" && grep -qE '^Persistent: +yes' "$WORK/netinfo" && grep -qE '^Autostart: +yes' "$WORK/netinfo" ||
    fail "(1) network $NET not active+persistent+autostart: $(cat "$WORK/netinfo")"
  ok "(1) network $NET back: net-dumpxml identical (uuid, bridge hvr$$, DHCP host entries), active, autostart"

  check_disk "$d/$A-vda.qcow2" qcow2 "$REF/a-vda.raw" "(1) $A vda"
  check_disk "$d/$A-vdb.img" raw "$REF/a-vdb.raw" "(1) $A vdb"
  check_disk "$d/$B-vda.qcow2" qcow2 "$REF/b-vda.raw" "(1) $B vda"
  [ "$(vsh domstate "$A")" = running ] && [ "$(vsh domstate "$B")" = running ] ||
    fail "(1) after --start: $A $(vsh domstate "$A"), $B $(vsh domstate "$B")"
  no_leftovers "$d" "$A" "(1)"
  no_leftovers "$d" "$B" "(1)"
  files "$d" "$A-vda.qcow2" "$A-vdb.img" "$B-vda.qcow2"
  D1=$d
  ok "(1) disks byte-identical to the backup (qcow2, raw .img), both VMs running, no journal or partial files"
}
# ------------------------------------------------ (2) beside the original
case_2() {
  local d
  d=$(storage a2)
  restore beside 0 vm "$A:latest" --name "$A2" --new-identity --storage-dir "$d" --start
  vm_ok beside "$A2"
  local u m
  u=$(domf "$A2" uuid) m=$(domf "$A2" mac)
  [[ "$u" =~ ^[0-9a-f-]{36}$ ]] && [ "$u" != "$UUID_A" ] || fail "(2) $A2 UUID '$u' (A: $UUID_A)"
  [ -n "$m" ] && [ "$m" != "$MAC_A" ] && [ "$m" != "$MAC_B" ] || fail "(2) $A2 MAC '$m' (A: $MAC_A)"
  [ "$(vmj beside "$A2" 'v["uuid"]')" = "$u" ] || fail "(2) JSON uuid $(vmj beside "$A2" 'v["uuid"]'), domain $u"
  [ "$(vmj beside "$A2" "[(x['old'], x['new']) for x in v['macs']]")" = "[[\"$MAC_A\", \"$m\"]]" ] ||
    fail "(2) JSON macs $(vmj beside "$A2" 'v["macs"]'), expected $MAC_A -> $m"
  [ "$(vmj beside "$A2" "[(n['name'], n['action']) for n in v['networks']]")" = "[[\"$NET\", \"exists\"]]" ] ||
    fail "(2) JSON networks $(vmj beside "$A2" 'v["networks"]'), expected $NET exists"
  xml_expect "$SAVED/a.xml" "$WORK/a2-exp.xml" "'$VMDIR/$A-vda.qcow2'" "'$d/$A2-vda.qcow2'" \
    "'$VMDIR/$A-vdb.raw'" "'$d/$A2-vdb.img'" "<name>$A</name>" "<name>$A2</name>" \
    "<uuid>$UUID_A</uuid>" "<uuid>$u</uuid>" "'$MAC_A'" "'$m'"
  same_domain "$A2" "$WORK/a2-exp.xml" "(2) (as A's but name, UUID, MAC and disk paths)"
  check_disk "$d/$A2-vda.qcow2" qcow2 "$REF/a-vda.raw" "(2) $A2 vda"
  check_disk "$d/$A2-vdb.img" raw "$REF/a-vdb.raw" "(2) $A2 vdb"
  [ "$(vsh domstate "$A")" = running ] && [ "$(vsh domstate "$A2")" = running ] ||
    fail "(2) $A $(vsh domstate "$A"), $A2 $(vsh domstate "$A2")"
  [ "$(domf "$A" uuid)" = "$UUID_A" ] && [ "$(domf "$A" mac)" = "$MAC_A" ] || fail "(2) $A changed"
  ok "(2) $A2 beside $A: new UUID and MAC ($MAC_A -> $m), disks in $d, both running"
}
# ------------------------------------------------ (3) conflicts, --replace
case_3() {
  local d3 d4 d5 d8
  d3=$(storage a3) d4=$(storage a4) d5=$(storage a5) d8=$(storage host2)
  state >"$WORK/state-before"
  # The same command as (1) again: both VMs were restored from these points.
  restore_h again 0 host --all --storage-dir "$D1" --start
  contains "$WORK/again.txt" "$A: already restored from this point" "(3) the same restore again"
  contains "$WORK/again.txt" "$B: already restored from this point" "(3) the same restore again"
  unchanged "$WORK/state-before" "(3) the same restore host --all again"
  ok "(3) the same 'restore host --all --start' again: exit 0, both VMs already restored from their points, nothing changed"
  # From here on A is a domain Haven did not restore (no metadata).
  vsh metadata "$A" urn:x-haven:restore:1 --remove --config >/dev/null || fail "(3) removing the restore metadata of $A"
  [ -z "$(restored_from "$A")" ] || fail "(3) the restore metadata of $A is still there"
  state >"$WORK/state-before"

  restore_h c-same 1 vm "$A:latest" --storage-dir "$D1"
  conflict_line c-same "$A"
  conflict_line c-same "$D1/$A-vda.qcow2"
  conflict_line c-same "$D1/$A-vdb.img"
  unchanged "$WORK/state-before" "(3) a refused restore of $A"
  restore c-same-j 1 vm "$A:latest" --storage-dir "$d3"
  [ "$(vmj c-same-j "$A" 'v["ok"] is False and v["defined"] is False and len(v["conflicts"]) > 0')" = true ] ||
    fail "(3) JSON of a refused restore: $(head -c 2000 "$WORK/c-same-j.json")"
  [ "$(rj c-same-j 'j["failed"]')" = 1 ] && [ "$(rj c-same-j 'j["succeeded"]')" = 0 ] || fail "(3) JSON counts: $(head -c 2000 "$WORK/c-same-j.json")"
  unchanged "$WORK/state-before" "(3) a refused restore of $A into an empty folder"
  ok "(3) restore of $A while it exists: exit 1, conflict lines name the domain and both disk files; nothing changed"

  restore_h c-dry 1 vm "$A:latest" --storage-dir "$D1" --dry-run
  conflict_line c-dry "$A"
  unchanged "$WORK/state-before" "(3) --dry-run with conflicts"
  restore dry-fresh 0 vm "$A:latest" --name "$A4" --new-identity --storage-dir "$d4" --format raw --dry-run
  [ "$(rj dry-fresh 'j["dry_run"]')" = true ] || fail "(3) dry_run is not true"
  [ "$(vmj dry-fresh "$A4" "v['defined'] or v['started'] or len(v['conflicts']) > 0")" = false ] ||
    fail "(3) dry run of $A4: $(head -c 2000 "$WORK/dry-fresh.json")"
  [ "$(vmj dry-fresh "$A4" "sorted((x['target'], x['path'], x['format'], x['size']) for x in v['disks'])")" = \
    "[[\"vda\", \"$d4/$A4-vda.img\", \"raw\", $VDA_SIZE], [\"vdb\", \"$d4/$A4-vdb.img\", \"raw\", $VDB_SIZE]]" ] ||
    fail "(3) dry run --format raw: disks $(vmj dry-fresh "$A4" 'v["disks"]')"
  [ "$(vmj dry-fresh "$A4" "[(n['name'], n['action']) for n in v['networks']]")" = "[[\"$NET\", \"exists\"]]" ] ||
    fail "(3) dry run: networks $(vmj dry-fresh "$A4" 'v["networks"]')"
  restore_h dry-fresh-h 0 vm "$A:latest" --name "$A4" --new-identity --storage-dir "$d4" --dry-run
  for s in "$d4/$A4-vda.qcow2" "$d4/$A4-vdb.img" qcow2 raw "$NET"; do contains "$WORK/dry-fresh-h.txt" "$s" "(3) dry run plan"; done
  lacks "$WORK/dry-fresh-h.txt" "problem:" "(3) dry run of $A4"
  unchanged "$WORK/state-before" "(3) --dry-run as $A4"
  ! defined "$A4" || fail "(3) --dry-run defined $A4"
  ok "(3) --dry-run: with conflicts exit 1 listing them; as $A4 --new-identity exit 0, the plan (paths, formats, sizes, network), nothing created"

  restore_h c-uuid 1 vm "$A:latest" --name "$A3" --storage-dir "$d3" --replace
  grep -E "$CONFLICT_RE" "$WORK/c-uuid.txt" | grep -qiE "uuid|$UUID_A" ||
    fail "(3) --name $A3 --replace keeping A's UUID: no UUID conflict line: $(head -c 2000 "$WORK/c-uuid.txt")"
  unchanged "$WORK/state-before" "(3) --name $A3 --replace with A's UUID"
  ok "(3) same UUID under another name is refused even with --replace"

  echo "precious" >"$d5/$A5-vdb.img"
  state >"$WORK/state-before"
  restore_h c-file 1 vm "$A:latest" --name "$A5" --new-identity --storage-dir "$d5"
  conflict_line c-file "$d5/$A5-vdb.img"
  [ "$(cat "$d5/$A5-vdb.img")" = precious ] || fail "(3) the existing file was changed"
  unchanged "$WORK/state-before" "(3) a restore onto an existing file"
  ok "(3) an existing disk file at a target path: exit 1, conflict names it, file and host untouched"

  # restore host plans every VM first: one conflict (A) and nothing restored.
  haven_cleanup_vm "$B"
  state >"$WORK/state-before"
  restore_h c-host 1 host --all --storage-dir "$d8"
  conflict_line c-host "$A"
  ! defined "$B" || fail "(3) restore host restored $B although $A had a conflict"
  unchanged "$WORK/state-before" "(3) restore host --all with one conflicting VM"
  ok "(3) restore host --all with $A conflicting: exit 1, the conflict named, $B not restored either"

  # --replace over a changed, running A.
  haven_guest_write "$A" vda random:301 10M 1M || fail "guest write $A vda"
  haven_guest_write "$A" vdb 0x5a 0 1M || fail "guest write $A vdb"
  haven_disk_copy "$A" "$D1/$A-vda.qcow2" qcow2 "$WORK/changed.raw" || fail "copy of changed $A vda"
  ! cmp -s "$WORK/changed.raw" "$REF/a-vda.raw" || fail "(3) the guest write did not change $A vda"
  rm -f "$WORK/changed.raw"
  restore replace 0 vm "$A:latest" --storage-dir "$D1" --replace --start
  vm_ok replace "$A"
  same_domain "$A" "$WORK/a-exp.xml" "(3) --replace"
  check_disk "$D1/$A-vda.qcow2" qcow2 "$REF/a-vda.raw" "(3) --replace $A vda"
  check_disk "$D1/$A-vdb.img" raw "$REF/a-vdb.raw" "(3) --replace $A vdb"
  [ "$(vsh domstate "$A")" = running ] || fail "(3) $A is $(vsh domstate "$A") after --replace --start"
  [ "$(vsh domstate "$A2")" = running ] || fail "(3) --replace of $A touched $A2: $(vsh domstate "$A2")"
  no_leftovers "$D1" "$A" "(3) --replace"
  ok "(3) --replace over a changed, running $A: same XML, disks as backed up, running"
}
# ------------------------------------------------ (4) interrupted restore
case_4() {
  local d f i
  d=$(storage a6)
  local cmd=(restore vm "$A:latest" --name "$A6" --new-identity --storage-dir "$d")
  HAVEN_FAULT_RESTORE_DELAY=30 "$HAVEN" -r "$R" --password-file "$PWF" "${cmd[@]}" >"$WORK/kill.out" 2>"$WORK/kill.err" &
  HPID=$!
  f=
  for i in $(seq 1 300); do
    for c in "$d/$A6"-vd*; do [ -e "$c" ] && f=$c; done
    [ -n "$f" ] && break
    kill -0 "$HPID" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$f" ] || fail "(4) no file of a disk appeared in $d (haven: $(kill -0 "$HPID" 2>/dev/null && echo running || echo exited); $(ls -A "$d" | tr '\n' ' '); $(head -c 2000 "$WORK/kill.err"))"
  sleep 2  # the first disk is small: by now haven sleeps after it
  kill -0 "$HPID" 2>/dev/null ||
    fail "(4) haven finished although HAVEN_FAULT_RESTORE_DELAY=30 ($(head -c 2000 "$WORK/kill.err"))"
  kill -9 "$HPID"
  wait "$HPID" 2>/dev/null || true
  HPID=
  echo "note: killed after $f appeared; left: $(ls -A "$d" | tr '\n' ' ')"
  ! defined "$A6" || fail "(4) $A6 is defined after the restore was killed"
  [ -e "$d/.haven-restore-$A6.json" ] || fail "(4) no journal $d/.haven-restore-$A6.json after the kill: $(ls -A "$d" | tr '\n' ' ')"
  sleep 1
  local orphans
  orphans=$(pids_with "$d/")
  [ -z "$orphans" ] || echo "note: processes left running by the killed restore: $(for p in $orphans; do tr '\0' ' ' <"/proc/$p/cmdline"; echo; done)"
  restore resume 0 "${cmd[@]:1}"
  vm_ok resume "$A6"
  check_disk "$d/$A6-vda.qcow2" qcow2 "$REF/a-vda.raw" "(4) $A6 vda"
  check_disk "$d/$A6-vdb.img" raw "$REF/a-vdb.raw" "(4) $A6 vdb"
  no_leftovers "$d" "$A6" "(4)"
  files "$d" "$A6-vda.qcow2" "$A6-vdb.img"
  [ -z "$orphans" ] || fail "(4) the killed restore left processes running (see note above); the re-run worked"
  ok "(4) restore killed (SIGKILL) after its first disk: no domain, journal kept; the same command again: exit 0, defined, disks identical, no journal or partial files"
}

# ------------------------------------------------ (6) the plan is what runs
case_6() {
  local d=$ST/a7/new/sub
  mkdir -p "$ST/a7" && chmod 755 "$ST/a7"
  local args=(vm "$A:latest" --name "$A7" --new-identity --storage-dir "$d" --format raw)
  restore plan6 0 "${args[@]}" --dry-run
  [ ! -e "$ST/a7/new" ] || fail "(6) the dry run created $ST/a7/new"
  restore run6 0 "${args[@]}"
  vm_ok run6 "$A7"
  # Field by field, everything the plan shows (free space moves with the run).
  local proj='json.dumps([{k: v[k] for k in ("name", "source_name", "snapshot", "uuid", "new_uuid", "state", "dir", "create_dirs", "nvram", "macs", "conflicts", "warnings")} | {"needed": v["space"]["needed"], "full": v["space"]["full"], "disks": [{k: x[k] for k in ("target", "path", "format", "size", "needs", "resume")} for x in v["disks"]], "networks": v["networks"]} for v in j["vms"]], sort_keys=True)'
  py -c "import json,sys; j=json.load(open(sys.argv[1])); print($proj)" "$WORK/plan6.json" >"$WORK/plan6.proj"
  py -c "import json,sys; j=json.load(open(sys.argv[1])); print($proj)" "$WORK/run6.json" >"$WORK/run6.proj"
  if ! cmp -s "$WORK/plan6.proj" "$WORK/run6.proj"; then
    diff <(py -m json.tool "$WORK/plan6.proj") <(py -m json.tool "$WORK/run6.proj") >&2
    fail "(6) the dry run's plan differs from the run's (diff above: < dry run, > run)"
  fi
  [ "$(vmj plan6 "$A7" 'v["create_dirs"]')" = "[\"$ST/a7/new\", \"$ST/a7/new/sub\"]" ] ||
    fail "(6) folders to create: $(vmj plan6 "$A7" 'v["create_dirs"]')"
  local u m
  u=$(vmj plan6 "$A7" 'v["uuid"]') m=$(vmj plan6 "$A7" 'v["macs"][0]["new"]')
  [ "$(domf "$A7" uuid)" = "$u" ] || fail "(6) $A7 has UUID $(domf "$A7" uuid), the dry run showed $u"
  [ "$(domf "$A7" mac)" = "$m" ] || fail "(6) $A7 has MAC $(domf "$A7" mac), the dry run showed $m"
  [ "$u" != "$UUID_A" ] && [ "$m" != "$MAC_A" ] || fail "(6) --new-identity kept the UUID or MAC"
  check_disk "$d/$A7-vda.img" raw "$REF/a-vda.raw" "(6) $A7 vda"
  [ "$(restored_from "$A7")" = "$SNAP_A" ] || fail "(6) restore metadata of $A7: '$(restored_from "$A7")'"
  ok "(6) --new-identity: the dry run's plan equals the run's field by field (UUID $u, MAC $m, folders, disks, space); the domain has them"
  haven_cleanup_vm "$A7"
}
# ------------------------------------------------ (7) preflight
# refused TAG DIR TEXT: dry run and run of A8 into DIR both exit 1 with a
# problem line holding TEXT, and nothing is written or defined.
refused() {
  local tag=$1 dir=$2 text=$3 args
  args=(vm "$A:latest" --name "$A8" --new-identity --storage-dir "$dir" --format raw)
  state >"$WORK/state-before"
  restore_h "$tag-dry" 1 "${args[@]}" --dry-run
  conflict_line "$tag-dry" "$text"
  grep -E '^  problem: ' "$WORK/$tag-dry.txt" | grep -qF -- "$text" ||
    fail "(7) $tag: the printed plan has no 'problem:' line naming '$text': $(head -c 3000 "$WORK/$tag-dry.txt")"
  restore_h "$tag-run" 1 "${args[@]}"
  conflict_line "$tag-run" "$text"
  ! defined "$A8" || fail "(7) $tag: $A8 was defined"
  unchanged "$WORK/state-before" "(7) $tag"
}
case_7() {
  local m
  m=$WORK/mnt-ro; mkdir -p "$m"
  mount -t tmpfs -o ro,size=64m,mode=0755 tmpfs "$m" || fail "(7) mount a read-only tmpfs"
  refused ro "$m/images" "$m is on a read-only file system"
  [ -z "$(ls -A "$m")" ] || fail "(7) something was written to the read-only tmpfs"
  ok "(7) a read-only file system: the dry run finds it, exit 1; the run refuses"

  m=$WORK/mnt-small; mkdir -p "$m"
  mount -t tmpfs -o size=2m,mode=0755 tmpfs "$m" || fail "(7) mount a small tmpfs"
  refused full "$m" "not enough free space in $m"
  grep -E "$CONFLICT_RE" "$WORK/full-dry.txt" | grep -qE "at full size" || fail "(7) full: the sizes are not named: $(cat "$WORK/full-dry.txt")"
  [ -z "$(ls -A "$m")" ] || fail "(7) something was written to the small tmpfs: $(ls -A "$m")"
  ok "(7) too little free space: the dry run says how much is needed (data and full size) and free; the run refuses, nothing written"

  mkdir -m 0700 "$ST/closed" && mkdir -m 0755 "$ST/closed/images"
  refused closed "$ST/closed/images" "cannot enter $ST/closed"
  contains "$WORK/closed-dry.txt" "libvirt-qemu" "(7) closed: names QEMU's user"
  ok "(7) a 0700 folder QEMU's user (libvirt-qemu) cannot enter: found by the dry run, refused by the run"

  echo data >"$ST/afile"
  refused file "$ST/afile" "$ST/afile is not a folder"
  [ "$(cat "$ST/afile")" = data ] || fail "(7) the file was changed"
  ok "(7) a file given as --storage-dir: 'is not a folder', nothing changed"
}
# ------------------------------------------------ (8) killed at each phase
case_8() {
  # The network must be created by the restore: the VMs on it go first.
  haven_cleanup_vm "$A" "$B" "$A2" "$A6" "$B2"
  haven_cleanup_network "$NET"
  local phase d args
  for phase in disk network place define start; do
    d=$(storage "b8-$phase")
    args=(vm "$B:latest" --name "$B8" --new-identity --storage-dir "$d" --start)
    run env HAVEN_FAULT_RESTORE_KILL=$phase "$HAVEN" -r "$R" --password-file "$PWF" restore "${args[@]}"
    [ "$RC" = 137 ] || fail "(8) $phase: the restore was not killed (exit $RC): $(head -c 2000 "$WORK/err")"
    [ -e "$d/.haven-restore-$B8.json" ] || fail "(8) $phase: no journal after the kill: $(ls -A "$d")"
    local staged_ino=
    [ "$phase" = disk ] && staged_ino=$(stat -c %i "$d/$B8-vda.qcow2.haven-restore")
    restore "resume-$phase" 0 "${args[@]}"
    vm_ok "resume-$phase" "$B8"
    case $phase in
      disk) [ "$(vmj "resume-$phase" "$B8" 'v["disks"][0]["resume"]')" = staged ] ||
              fail "(8) disk: the re-run did not use the staged disk: $(vmj "resume-$phase" "$B8" 'v["disks"]')"
            [ "$(stat -c %i "$d/$B8-vda.qcow2")" = "$staged_ino" ] || fail "(8) disk: the staged disk was written again" ;;
      place) [ "$(vmj "resume-$phase" "$B8" 'v["disks"][0]["resume"]')" = placed ] ||
              fail "(8) place: $(vmj "resume-$phase" "$B8" 'v["disks"]')" ;;
      define|start) [ "$(vmj "resume-$phase" "$B8" 'v["state"]')" = finish ] ||
              fail "(8) $phase: state $(vmj "resume-$phase" "$B8" 'v["state"]'), expected finish" ;;
    esac
    [ "$(vsh domstate "$B8")" = running ] || fail "(8) $phase: $B8 is $(vsh domstate "$B8") after the re-run with --start"
    check_disk "$d/$B8-vda.qcow2" qcow2 "$REF/b-vda.raw" "(8) $phase: $B8 vda"
    vsh net-info "$NET" >"$WORK/netinfo"
    grep -qE '^Active: +yes' "$WORK/netinfo" && grep -qE '^Autostart: +yes' "$WORK/netinfo" ||
      fail "(8) $phase: network $NET not active+autostart: $(cat "$WORK/netinfo")"
    no_leftovers "$d" "$B8" "(8) $phase"
    files "$d" "$B8-vda.qcow2"
    [ "$(restored_from "$B8")" = "$SNAP_B" ] || fail "(8) $phase: restore metadata '$(restored_from "$B8")'"
    haven_cleanup_vm "$B8"
    haven_cleanup_network "$NET"
    rm -rf "$d"
  done
  ok "(8) killed (SIGKILL) after each phase — disk, network, place, define, start — the same command finishes: running, disk identical, network active, no journal"
}

# HAVEN_VM_RESTORE_TEST_CASES="u 5 1 2" runs only those (2, 3, 4, 6, 7 need 1).
CASES=${HAVEN_VM_RESTORE_TEST_CASES:-u 5 1 2 3 4 6 7 8}
if [[ " $CASES " =~ " "[234678]" " ]] && [[ " $CASES " != *" 1 "* ]]; then CASES="1 $CASES"; fi
for c in u 5 1 2 3 4 6 7 8; do
  if [[ " $CASES " == *" $c "* ]]; then "case_$c"; fi
done
left=$(ls -a /var/lib/libvirt/images 2>/dev/null | grep -F -- "$T-" || true)
[ -z "$left" ] || fail "files written to the default folder /var/lib/libvirt/images although --storage-dir was given: $left"
echo "$PASS passed, 0 failed [${SECONDS}s]"
