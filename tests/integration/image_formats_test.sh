#!/usr/bin/env bash
# `haven backup image` reads other hypervisors' disks natively, without
# conversion: qcow2 with a backing file, VHD, VHDX, a VHDX with a
# differencing child (.avhdx), VMDK (sparse, split and flat). Each restores
# byte-identical to `qemu-img convert -O raw` of the source (for the .avhdx,
# which qemu cannot read, to the parent's conversion with the child's writes
# laid over it). A Hyper-V / VMware VM's config files beside the image are
# stored and restored; broken images fail with an error naming the file and
# write no recovery point.
. "$(dirname "$0")/lib.sh"
command -v qemu-img >/dev/null || fail "qemu-img is missing (scripts/install-deps.sh installs qemu-utils)"
R=$WORK/repo
I=$WORK/img
mkdir -p "$I"
hv() { "$HAVEN" -r "$R" "$@"; }
expect_rc 0 "init" hv init --chunk-size 64K

qio() { qemu-io -f "$1" -c "$2" "$3" >/dev/null; }
# Random data from a file, so that no format can store it compressed.
random_file "$WORK/rand" $((3 << 20)) 7
qwrite_rand() {  # FMT IMAGE OFFSET(bytes) LEN(bytes)
  python3 - "$@" "$WORK/rand" <<'PYEOF'
import subprocess, sys
fmt, img, off, n, src = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
data = open(src, 'rb').read(n)
# qemu-io's 'write -s FILE' writes the bytes of FILE.
tmp = img + '.chunk'
open(tmp, 'wb').write(data)
subprocess.run(['qemu-io', '-f', fmt, '-c', f'write -s {tmp} {off} {n}', img],
               check=True, stdout=subprocess.DEVNULL)
PYEOF
}

# backup_and_compare NAME IMAGE EXPECTED_RAW [--format F]
backup_and_compare() {
  local name=$1 img=$2 want=$3
  shift 3
  expect_rc 0 "backup image $name" hv --json backup image "$img" --name "$name" "$@"
  cp "$WORK/out" "$WORK/$name.json"
  expect_rc 0 "restore $name" hv restore image "$name:latest" --to "$WORK/$name.out"
  same_file "$WORK/$name.out" "$want" "$name restored"
  ok "$name restores byte-identical"
}

# qcow2 on a raw backing file, with writes in both layers.
truncate -s 64M "$I/base.raw"
qwrite_rand raw "$I/base.raw" $((1 << 20)) $((1 << 20))
qio raw "write -P 0x5a 40M 64k" "$I/base.raw"
qemu-img create -q -f qcow2 -b "$I/base.raw" -F raw "$I/top.qcow2"
qwrite_rand qcow2 "$I/top.qcow2" $((1536 << 10)) $((256 << 10))  # over the base's data
qio qcow2 "write -P 0x33 60M 1M" "$I/top.qcow2"
qio qcow2 "write -z 40M 64k" "$I/top.qcow2"                      # zeroes a base extent
qemu-img convert -O raw "$I/top.qcow2" "$WORK/top.raw"
backup_and_compare qcow2-backing "$I/top.qcow2" "$WORK/top.raw"
read_bytes=$(jget 'j["read_bytes"]' "$WORK/qcow2-backing.json")
[ "$read_bytes" -le $((4 << 20)) ] ||
  fail "qcow2: read $read_bytes bytes of a 64 MiB image with ~2.3 MiB allocated"
ok "qcow2: only allocated clusters read ($read_bytes bytes)"

# VHD (dynamic) and VHDX.
for fmt in vpc vhdx; do
  qemu-img create -q -f $fmt "$I/d.$fmt" 48M
  qwrite_rand $fmt "$I/d.$fmt" $((2 << 20)) $((1 << 20))
  qio $fmt "write -P 0xc1 30M 2M" "$I/d.$fmt"
  qemu-img convert -f $fmt -O raw "$I/d.$fmt" "$WORK/d-$fmt.raw"
  backup_and_compare "img-$fmt" "$I/d.$fmt" "$WORK/d-$fmt.raw"
done

# VHDX with a differencing child (Hyper-V checkpoint), plus the VM's
# configuration files in the same folder.
mkdir -p "$I/hyperv"
qemu-img create -q -f vhdx "$I/hyperv/app.vhdx" 32M
qwrite_rand vhdx "$I/hyperv/app.vhdx" 0 $((2 << 20))
qio vhdx "write -P 0x10 20M 3M" "$I/hyperv/app.vhdx"
py "$HAVEN_SOURCE_DIR/tests/tools/make_avhdx.py" "$I/hyperv/app.vhdx" "$I/hyperv/app_1.avhdx" \
  --write 1M:2M:0x44 --write 21M:512:0x99 >/dev/null
qemu-img convert -f vhdx -O raw "$I/hyperv/app.vhdx" "$WORK/avhdx.raw"
py - "$WORK/avhdx.raw" <<'PYEOF'
import sys
with open(sys.argv[1], 'r+b') as f:
    for off, n, b in ((1 << 20, 2 << 20, 0x44), (21 << 20, 512, 0x99)):
        f.seek(off); f.write(bytes([b]) * n)
PYEOF
echo '<VM><Name>app</Name></VM>' >"$I/hyperv/app.vmcx"
echo 'not config' >"$I/hyperv/notes.txt"
backup_and_compare avhdx "$I/hyperv/app_1.avhdx" "$WORK/avhdx.raw"
expect_rc 0 "restore config of the Hyper-V VM" hv restore config avhdx:latest --to "$WORK/hv-config"
same_file "$WORK/hv-config/vm/app.vmcx" "$I/hyperv/app.vmcx" "Hyper-V config restored"
[ ! -e "$WORK/hv-config/vm/notes.txt" ] || fail "an unrelated file was stored as config"
ok "Hyper-V .vmcx stored beside the .avhdx, other files not"

# A Hyper-V export: disks in "Virtual Hard Disks", the configuration in the
# sibling "Virtual Machines".
EXP="$I/export/web"
mkdir -p "$EXP/Virtual Hard Disks" "$EXP/Virtual Machines"
cp "$I/d.vhdx" "$EXP/Virtual Hard Disks/web.vhdx"
echo '<VM><Name>web</Name></VM>' >"$EXP/Virtual Machines/6A1F.vmcx"
backup_and_compare hv-export "$EXP/Virtual Hard Disks/web.vhdx" "$WORK/d-vhdx.raw"
expect_rc 0 "restore config of the export" hv restore config hv-export:latest --to "$WORK/exp-config"
same_file "$WORK/exp-config/vm/6A1F.vmcx" "$EXP/Virtual Machines/6A1F.vmcx" "export's .vmcx"
ok "Hyper-V export: .vmcx from 'Virtual Machines' stored with the disk"

# VMDK: monolithic sparse, split sparse, flat; and a .vmx beside one.
mkdir -p "$I/vmware"
for sub in monolithicSparse twoGbMaxExtentSparse monolithicFlat; do
  qemu-img create -q -f vmdk -o subformat=$sub "$I/vmware/$sub.vmdk" 40M
  qwrite_rand vmdk "$I/vmware/$sub.vmdk" $((5 << 20)) $((1 << 20))
  qio vmdk "write -P 0x7e 39M 1M" "$I/vmware/$sub.vmdk"
  qemu-img convert -f vmdk -O raw "$I/vmware/$sub.vmdk" "$WORK/$sub.raw"
done
echo 'displayName = "db"' >"$I/vmware/db.vmx"
for sub in monolithicSparse twoGbMaxExtentSparse monolithicFlat; do
  backup_and_compare "vmdk-$sub" "$I/vmware/$sub.vmdk" "$WORK/$sub.raw"
done
expect_rc 0 "show vmdk" hv show vmdk-monolithicSparse:latest
contains "$WORK/out" "config       vm/db.vmx" "show lists the VMware config"

# Bad input: a truncated VHDX, a child whose parent is missing, garbage
# claiming to be VMDK. Each is an error naming the file; nothing is written.
before=$(hv snapshots --json | jget 'len(j)')
head -c 300000 "$I/d.vhdx" >"$I/trunc.vhdx"
expect_rc 1 "truncated vhdx" hv backup image "$I/trunc.vhdx" --name bad
contains "$WORK/err" "trunc.vhdx" "truncated vhdx error names the file"
mkdir -p "$I/orphan"
cp "$I/hyperv/app_1.avhdx" "$I/orphan/"
expect_rc 1 "avhdx without parent" hv backup image "$I/orphan/app_1.avhdx" --name bad
contains "$WORK/err" "app.vhdx" "missing parent named"
printf 'KDMV\001\000\000\000garbage' >"$I/bad.vmdk"
expect_rc 1 "garbage vmdk" hv backup image "$I/bad.vmdk" --name bad
contains "$WORK/err" "bad.vmdk" "garbage vmdk error names the file"
expect_rc 2 "unknown format" hv backup image "$I/d.vhdx" --name bad --format vdi
after=$(hv snapshots --json | jget 'len(j)')
[ "$before" = "$after" ] || fail "a failed backup wrote a recovery point"
ok "broken images rejected with the file named; no point written"

# --format raw reads a qcow2 file as the bytes it is (no backing chain).
expect_rc 0 "forced raw" hv backup image "$I/top.qcow2" --name forced --format raw
expect_rc 0 "restore forced raw" hv restore image forced:latest --to "$WORK/forced.out"
same_file "$WORK/forced.out" "$I/top.qcow2" "--format raw keeps the file's bytes"
ok "--format raw"

expect_rc 0 "check" hv check --read-data
echo "PASS: $PASS checks"
