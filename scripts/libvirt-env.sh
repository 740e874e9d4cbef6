# libvirt test and demo environment for Haven. Source it (bash):
#
#   . scripts/libvirt-env.sh
#   haven_libvirt_start                       # virtlogd + libvirtd, no systemd needed
#   haven_make_network NET BRIDGE             # isolated network (no <forward>)
#   haven_make_vm VM DIR NET [BACKING]        # TCG domain, vda qcow2 + vdb raw, running
#   haven_make_dhcp_network NET BRIDGE MAC... # isolated, DHCP range + a <host> per MAC
#   haven_guest_write VM DISK PATTERN OFF LEN # a write by the "guest" (qemu-io over HMP)
#   haven_disk_copy VM DISKFILE FMT OUT.raw   # the disk's content at this instant (VM paused)
#   haven_cleanup_vm VM; haven_cleanup_network NET
#   haven_make_demo_vm [VM [DIR]]             # the README quick start's VM
#   haven_make_qga_vm VM DIR NET MOUNT [ETC]  # a real kernel + qemu-ga, vda ext4 from /etc
#   haven_wait_guest_agent VM [TIMEOUT]       # until guest-ping answers
#   haven_watch_jobs OUT VM... &              # which Haven job folders these VMs' backups used
#
# Everything talks to qemu:///system (override with HAVEN_LIBVIRT_URI) and needs
# root. Functions return non-zero with a message on stderr when something fails;
# they do not exit, so they can be used under `set -e` or not.
#
# Facts about libvirt 9.0 / QEMU 7.2 (Debian 12) these functions rely on:
# - The QEMU process runs as libvirt-qemu: disk images (libvirt chowns them) must
#   sit in directories it can traverse (mktemp -d makes 0700 directories, so
#   haven_make_vm chmods DIR to 0711), and a file given to `qemu-io write -s` must
#   be readable by it.
# - HMP's qemu-io takes its command in DOUBLE quotes; single quotes give
#   "qemu-io: extraneous characters at the end of line". The device is the qdev
#   id or QOM path (/machine/peripheral/virtio-diskN/virtio-backend, N = the
#   disk's alias number). qemu-io's own output ("wrote N/N bytes at offset O",
#   "write failed: ...") does NOT come back over the monitor: it goes to QEMU's
#   stdout, i.e. /var/log/libvirt/qemu/VM.log, which is where haven_guest_write
#   checks it.
# - A <vlan> in a portgroup of a bridge (isolated or NAT) network is refused at
#   define time ("<vlan> element specified for network X, whose type doesn't
#   support vlan configuration"), so the test networks have none.
# - A pc-i440fx domain needs <features><acpi/></features> for PCI hotplug
#   (virsh attach-disk); without it: "Bus 'pci.0' does not support hotplugging".
# - A guest without an OS ignores `virsh shutdown`; use `virsh destroy` (QEMU gets
#   SIGTERM first and still writes its persistent bitmaps).
# - /dev/kvm can be usable for libvirt (domcapabilities --virttype kvm answers)
#   and still not run a real kernel: on these machines, themselves VMs, a kvm
#   domain with the default CPU boots the Debian kernel without printing a
#   single console line, and host-model / host-passthrough CPUs make QEMU
#   abort at start ("failed to set MSR 0x10a"). VMs without an OS do not
#   notice. haven_make_qga_vm therefore checks the console and falls back to
#   TCG (remembering it under /var/tmp/haven-qga-guest).
# - The test guest (scripts/make-qga-guest.sh) under TCG: guest-ping answers
#   8-10 s after `virsh start`. There is no udev in it, so no
#   /dev/virtio-ports/ links: the agent's port is the /dev/vportNpM whose
#   /sys/class/virtio-ports/vportNpM/name is org.qemu.guest_agent.0.
# - qemu-ga (7.2) freezes only mounts backed by a block device: in that guest
#   rootfs, proc, sysfs and devtmpfs are skipped, so with /data unmounted
#   guest-fsfreeze-freeze answers 0 ("Froze 0 filesystem(s)") and succeeds.
# - Freezing ext4 flushes its journal and clears needs_recovery on disk; while
#   it is mounted and not frozen, needs_recovery is set. A disk captured
#   while frozen is clean for dumpe2fs -h; one captured otherwise is not.
# - guest-exec returns a pid at once; guest-exec-status on it reports the
#   exit. A command that kills qemu-ga itself gets no status; afterwards
#   libvirt answers at once "QEMU guest agent is not connected".
# - linux-image-amd64 depends on "initramfs-tools | linux-initramfs-tool";
#   with --no-install-recommends and tiny-initramfs it installs in a
#   container (its hook builds /boot/initrd.img in about a second).
# - A pull backup's scratch files: libvirt deletes the ones it made when the
#   job ends, before the last disk's block job gives their cgroup access and
#   security label back, and logs "unable to stat ...scratch" for that disk.
#   Haven makes them itself (REUSE_EXTERNAL). The job shows no type ~20 ms
#   before the last one is chowned back to root.

HAVEN_LIBVIRT_URI=${HAVEN_LIBVIRT_URI:-qemu:///system}
# The system python: a pyenv shim on PATH costs about a second per start.
if [ -x /usr/bin/python3 ]; then _HV_PY=/usr/bin/python3; else _HV_PY=python3; fi

_hv_virsh() { virsh -q -c "$HAVEN_LIBVIRT_URI" "$@"; }
_hv_err() { echo "libvirt-env: $*" >&2; }
# This file's folder: scripts it runs (make-qga-guest.sh) sit beside it.
_HV_SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# _hv_kvm_group: with no udev running, /dev/kvm stays root-only (0600), so
# libvirt's QEMU user cannot open it and libvirt re-probes QEMU on every
# capabilities call and every define (4-85 s each). Debian's udev rule gives it
# group kvm, mode 0660; do the same. No /dev/kvm (TCG only): nothing to do.
_hv_kvm_group() {
  [ -c /dev/kvm ] && [ "$(id -u)" = 0 ] || return 0
  [ "$(stat -c %a /dev/kvm)" = 600 ] || return 0
  getent group kvm >/dev/null || return 0
  chgrp kvm /dev/kvm && chmod 0660 /dev/kvm || _hv_err "could not open /dev/kvm to group kvm"
  return 0
}

# haven_libvirt_start: starts virtlogd and libvirtd (as daemons, -d) unless
# they run, then waits until `virsh version` answers (up to 30 s). Idempotent.
haven_libvirt_start() {
  _hv_kvm_group
  if virsh -c "$HAVEN_LIBVIRT_URI" version >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" != 0 ]; then _hv_err "libvirtd can only be started as root"; return 1; fi
  local d
  for d in virtlogd libvirtd; do
    if ! command -v "$d" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$d" ]; then
      _hv_err "$d is not installed (apt-get install libvirt-daemon-system)"; return 1
    fi
  done
  PATH=$PATH:/usr/sbin
  pgrep -x virtlogd >/dev/null || virtlogd -d || { _hv_err "virtlogd -d failed"; return 1; }
  pgrep -x libvirtd >/dev/null || libvirtd -d || { _hv_err "libvirtd -d failed"; return 1; }
  local i
  for i in $(seq 1 60); do
    virsh -c "$HAVEN_LIBVIRT_URI" version >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  _hv_err "libvirtd does not answer on $HAVEN_LIBVIRT_URI: $(virsh -c "$HAVEN_LIBVIRT_URI" version 2>&1 | tail -1)"
  return 1
}

# haven_make_network NAME BRIDGE: defines and starts an isolated network (no
# <forward>, so nothing is routed off this machine) on a private /24 chosen from
# NAME (the next one is tried when a subnet is taken), with a DHCP range and one
# static host when dnsmasq is installed (otherwise DNS is off), and two
# portgroups: pg-default (default) and pg-limited (with <bandwidth>).
haven_make_network() {
  local name=$1 bridge=$2
  [ -n "$name" ] && [ -n "$bridge" ] || { _hv_err "usage: haven_make_network NAME BRIDGE"; return 2; }
  [ ${#bridge} -le 15 ] || { _hv_err "bridge name '$bridge' longer than 15 characters"; return 2; }
  local h try a b xml err
  h=$(printf '%s' "$name" | cksum | cut -d' ' -f1)
  xml=$(mktemp /tmp/haven-net.XXXXXX.xml)
  for try in 0 1 2 3 4 5 6 7; do
    a=$((200 + (h / 250 + try) % 50)) b=$(((h + try * 7) % 250 + 1))
    {
      echo "<network>"
      echo "  <name>$name</name>"
      echo "  <bridge name='$bridge' stp='on' delay='0'/>"
      if command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ]; then
        echo "  <domain name='$name.test' localOnly='yes'/>"
        echo "  <ip address='10.$a.$b.1' netmask='255.255.255.0'>"
        echo "    <dhcp>"
        echo "      <range start='10.$a.$b.100' end='10.$a.$b.199'/>"
        echo "      <host mac='52:54:00:$(printf '%02x:%02x' $((a % 256)) "$b"):01' name='fixed-host' ip='10.$a.$b.10'/>"
        echo "    </dhcp>"
        echo "  </ip>"
      else
        echo "  <dns enable='no'/>"
        echo "  <ip address='10.$a.$b.1' netmask='255.255.255.0'/>"
      fi
      echo "  <portgroup name='pg-default' default='yes'/>"
      echo "  <portgroup name='pg-limited'>"
      echo "    <bandwidth>"
      echo "      <inbound average='1000' peak='5000' burst='1024'/>"
      echo "      <outbound average='1000'/>"
      echo "    </bandwidth>"
      echo "  </portgroup>"
      echo "</network>"
    } >"$xml"
    if ! err=$(_hv_virsh net-define "$xml" 2>&1); then
      rm -f "$xml"; _hv_err "net-define $name: $err"; return 1
    fi
    if err=$(_hv_virsh net-start "$name" 2>&1); then
      rm -f "$xml"; return 0
    fi
    _hv_virsh net-undefine "$name" >/dev/null 2>&1 || true
    case "$err" in
      *"in use"*|*"already"*) continue ;;   # subnet or bridge taken: next subnet
    esac
    break
  done
  rm -f "$xml"
  _hv_err "net-start $name: $err"
  return 1
}

# haven_make_dhcp_network NAME BRIDGE MAC...: defines and starts an isolated
# network (no <forward>) with bridge BRIDGE on a private /24 chosen from NAME
# (10.150-199.x.0; the next one is tried when a subnet or bridge is taken), a
# DHCP range .100-.199 and one DHCP reservation per MAC: <host mac=MAC
# name=hostN ip=.N> for N = 11, 12, ... in order, and the portgroup pg-default
# that haven_make_vm's NIC names. Needs dnsmasq. Prints the network's /24
# prefix ("10.A.B").
haven_make_dhcp_network() {
  local name=$1 bridge=$2
  [ -n "$name" ] && [ -n "$bridge" ] || { _hv_err "usage: haven_make_dhcp_network NAME BRIDGE MAC..."; return 2; }
  shift 2
  [ ${#bridge} -le 15 ] || { _hv_err "bridge name '$bridge' longer than 15 characters"; return 2; }
  command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] ||
    { _hv_err "dnsmasq is not installed (DHCP needs it)"; return 1; }
  local h try a b xml err mac n
  h=$(printf '%s' "$name" | cksum | cut -d' ' -f1)
  xml=$(mktemp /tmp/haven-net.XXXXXX.xml)
  for try in 0 1 2 3 4 5 6 7; do
    a=$((150 + (h / 250 + try) % 50)) b=$(((h + try * 7) % 250 + 1))
    {
      echo "<network>"
      echo "  <name>$name</name>"
      echo "  <bridge name='$bridge' stp='on' delay='0'/>"
      echo "  <domain name='$name.test' localOnly='yes'/>"
      echo "  <ip address='10.$a.$b.1' netmask='255.255.255.0'>"
      echo "    <dhcp>"
      echo "      <range start='10.$a.$b.100' end='10.$a.$b.199'/>"
      n=11
      for mac in "$@"; do
        echo "      <host mac='$mac' name='host$n' ip='10.$a.$b.$n'/>"
        n=$((n + 1))
      done
      echo "    </dhcp>"
      echo "  </ip>"
      echo "  <portgroup name='pg-default' default='yes'/>"
      echo "</network>"
    } >"$xml"
    if ! err=$(_hv_virsh net-define "$xml" 2>&1); then
      rm -f "$xml"; _hv_err "net-define $name: $err"; return 1
    fi
    if err=$(_hv_virsh net-start "$name" 2>&1); then
      rm -f "$xml"; echo "10.$a.$b"; return 0
    fi
    _hv_virsh net-undefine "$name" >/dev/null 2>&1 || true
    case "$err" in
      *"in use"*|*"already"*) continue ;;   # subnet or bridge taken: next subnet
    esac
    break
  done
  rm -f "$xml"
  _hv_err "net-start $name: $err"
  return 1
}

# haven_make_vm NAME DIR NETWORK [BACKING]: creates DIR/NAME-vda.qcow2 (256 MiB
# virtual; on top of the BACKING image when given, format probed, then as large
# as BACKING) and DIR/NAME-vdb.raw (128 MiB, sparse), then defines
# (persistently) and starts a TCG domain (type='qemu', no OS, 128 MiB RAM, ACPI
# for hotplug) with both as virtio disks (aliases virtio-disk0 / virtio-disk1)
# and one virtio NIC on NETWORK (portgroup pg-default).
# HAVEN_VM_VDA_SIZE / HAVEN_VM_VDB_SIZE override the sizes (qemu-img suffixes);
# HAVEN_VM_VDB_SIZE=0: no vdb.
# HAVEN_VM_MAC=52:54:00:..: the NIC's MAC address (default: libvirt picks one).
haven_make_vm() {
  local name=$1 dir=$2 net=$3 backing=${4:-}
  [ -n "$name" ] && [ -n "$dir" ] && [ -n "$net" ] ||
    { _hv_err "usage: haven_make_vm NAME DIR NETWORK [BACKING]"; return 2; }
  mkdir -p "$dir" && dir=$(cd "$dir" && pwd) || return 1
  # QEMU runs as libvirt-qemu: it must be able to reach the images.
  local p=$dir
  while [ "$p" != / ]; do
    [ "$(stat -c %u "$p")" = 0 ] && chmod o+x "$p"
    p=$(dirname "$p")
  done
  local vda=$dir/$name-vda.qcow2 vdb=$dir/$name-vdb.raw err
  if [ -n "$backing" ]; then
    local bfmt
    bfmt=$(qemu-img info --output=json "$backing" | "$_HV_PY" -c 'import json,sys; print(json.load(sys.stdin)["format"])') || return 1
    chmod o+r "$backing"
    err=$(qemu-img create -q -f qcow2 -F "$bfmt" -b "$backing" "$vda" ${HAVEN_VM_VDA_SIZE:-} 2>&1) ||
      { _hv_err "qemu-img create $vda: $err"; return 1; }
  else
    err=$(qemu-img create -q -f qcow2 "$vda" "${HAVEN_VM_VDA_SIZE:-256M}" 2>&1) ||
      { _hv_err "qemu-img create $vda: $err"; return 1; }
  fi
  local vdb_xml=
  if [ "${HAVEN_VM_VDB_SIZE:-128M}" != 0 ]; then
    rm -f "$vdb"
    truncate -s "${HAVEN_VM_VDB_SIZE:-128M}" "$vdb" || return 1
    vdb_xml="<disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='$vdb'/>
      <target dev='vdb' bus='virtio'/>
    </disk>"
  fi
  local xml
  xml=$(mktemp /tmp/haven-dom.XXXXXX.xml)
  cat >"$xml" <<EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$vda'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    $vdb_xml
    <interface type='network'>${HAVEN_VM_MAC:+
      <mac address='$HAVEN_VM_MAC'/>}
      <source network='$net' portgroup='pg-default'/>
      <model type='virtio'/>
    </interface>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
  _hv_define_start "$name" "$xml"
}

# _hv_define_start NAME XMLFILE: defines the domain from XMLFILE (removed
# afterwards) and starts it.
_hv_define_start() {
  local err
  err=$(_hv_virsh define "$2" 2>&1) || { rm -f "$2"; _hv_err "define $1: $err"; return 1; }
  rm -f "$2"
  err=$(_hv_virsh start "$1" 2>&1) || { _hv_err "start $1: $err"; return 1; }
}

# _hv_virt_type: kvm when libvirt can use KVM here (domcapabilities for
# virttype kvm answers: /dev/kvm exists and libvirt's QEMU user can open it),
# else qemu (TCG). HAVEN_VM_VIRT_TYPE overrides.
_hv_virt_type() {
  if [ -n "${HAVEN_VM_VIRT_TYPE:-}" ]; then echo "$HAVEN_VM_VIRT_TYPE"; return; fi
  if [ -c /dev/kvm ] && _hv_virsh domcapabilities --virttype kvm >/dev/null 2>&1; then
    echo kvm
  else
    echo qemu
  fi
}

# haven_make_qga_vm NAME DIR NETWORK MOUNT [ETC_SOURCE]: a running VM that
# boots the tiny guest of scripts/make-qga-guest.sh (Debian kernel, busybox,
# the real qemu-ga) directly (<kernel>/<initrd>, command line
# "console=ttyS0 haven.mount=MOUNT"), with:
# - vda: DIR/NAME-vda.qcow2, an ext4 file system (label haven-data) made by
#   mkfs.ext4 -d from a copy of ETC_SOURCE (default /etc) kept in
#   DIR/NAME-etc (unreadable files left out); the guest mounts it on /data
#   when MOUNT is 1 and rewrites /data/.haven-guest/heartbeat every second;
# - the guest agent channel (virtio, org.qemu.guest_agent.0);
# - the serial console written to DIR/NAME-console.log;
# - 256 MiB RAM, one NIC on NETWORK, type kvm when libvirt can use KVM
#   (_hv_virt_type), else qemu (TCG).
# The kernel and initrd are copied to DIR/NAME-guest/. Wait for the agent with
# haven_wait_guest_agent.
haven_make_qga_vm() {
  local name=$1 dir=$2 net=$3 mount=${4:-} etc=${5:-/etc}
  [ -n "$name" ] && [ -n "$dir" ] && [ -n "$net" ] && [ -n "$mount" ] ||
    { _hv_err "usage: haven_make_qga_vm NAME DIR NETWORK MOUNT(0|1) [ETC_SOURCE]"; return 2; }
  case "$mount" in 0|1) ;; *) _hv_err "haven_make_qga_vm: MOUNT must be 0 or 1, not '$mount'"; return 2 ;; esac
  [ -d "$etc" ] || { _hv_err "haven_make_qga_vm: ETC_SOURCE '$etc' is not a directory"; return 2; }
  command -v rsync >/dev/null || { _hv_err "rsync is not installed"; return 1; }
  mkdir -p "$dir" && dir=$(cd "$dir" && pwd) || return 1
  local p=$dir
  while [ "$p" != / ]; do
    [ "$(stat -c %u "$p")" = 0 ] && chmod o+x "$p"
    p=$(dirname "$p")
  done
  local guest=$dir/$name-guest copy=$dir/$name-etc raw=$dir/$name-vda.raw
  local vda=$dir/$name-vda.qcow2 console=$dir/$name-console.log err rc
  err=$("$_HV_SCRIPTS/make-qga-guest.sh" "$guest" 2>&1) || { _hv_err "$err"; return 1; }
  # rsync exits 23/24 for files it could not read or that vanished: those are
  # left out, the rest is copied.
  rm -rf "$copy"
  rc=0
  err=$(rsync -a "$etc/" "$copy/" 2>&1) || rc=$?
  case $rc in 0|23|24) ;; *) _hv_err "rsync $etc: $err"; return 1 ;; esac
  local kib
  kib=$(du -sk "$copy" | cut -f1)
  rm -f "$raw"
  err=$(mkfs.ext4 -q -F -L haven-data -d "$copy" "$raw" "$((kib * 2 / 1024 + 32))M" 2>&1) ||
    { _hv_err "mkfs.ext4 -d $copy: $err"; return 1; }
  err=$(qemu-img convert -f raw -O qcow2 "$raw" "$vda" 2>&1) ||
    { rm -f "$raw"; _hv_err "qemu-img convert: $err"; return 1; }
  rm -f "$raw" "$console"
  local type marker
  type=$(_hv_virt_type)
  # KVM that libvirt accepts but that cannot run this kernel (see the facts
  # at the top): remembered per host kernel and QEMU, so it is tried once.
  marker=${HAVEN_QGA_CACHE:-/var/tmp/haven-qga-guest}/kvm-no-boot-$(uname -r)-$(qemu-system-x86_64 --version 2>/dev/null | awk 'NR == 1 {print $4}')
  [ "$type" = kvm ] && [ -e "$marker" ] && [ -z "${HAVEN_VM_VIRT_TYPE:-}" ] && type=qemu
  if [ "$type" != kvm ]; then
    _hv_qga_define "$name" qemu "$guest" "$mount" "$vda" "$net" "$console"
    return
  fi
  local i
  if _hv_qga_define "$name" kvm "$guest" "$mount" "$vda" "$net" "$console" 2>"$dir/$name-kvm.err"; then
    for i in $(seq 1 100); do
      [ -s "$console" ] && { rm -f "$dir/$name-kvm.err"; return 0; }
      sleep 0.1
    done
    echo "wrote nothing on its console in 10 s" >"$dir/$name-kvm.err"
  fi
  _hv_err "note: $name does not boot under KVM here ($(tail -1 "$dir/$name-kvm.err")); using TCG (type qemu) from now on"
  rm -f "$dir/$name-kvm.err"
  touch "$marker" 2>/dev/null || true
  haven_cleanup_vm "$name"
  rm -f "$console"
  _hv_qga_define "$name" qemu "$guest" "$mount" "$vda" "$net" "$console"
}

# _hv_qga_define NAME TYPE GUESTDIR MOUNT VDA NETWORK CONSOLE: defines and
# starts haven_make_qga_vm's domain.
_hv_qga_define() {
  local name=$1 type=$2 guest=$3 mount=$4 vda=$5 net=$6 console=$7 xml err
  xml=$(mktemp /tmp/haven-dom.XXXXXX.xml)
  cat >"$xml" <<EOF
<domain type='$type'>
  <name>$name</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$guest/vmlinuz</kernel>
    <initrd>$guest/initrd.cpio.gz</initrd>
    <cmdline>console=ttyS0 haven.mount=$mount</cmdline>
  </os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$vda'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <source network='$net'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='$console'/>
      <target port='0'/>
    </serial>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
  _hv_define_start "$name" "$xml"
}

# haven_wait_guest_agent NAME [TIMEOUT]: polls guest-ping until the VM's guest
# agent answers, then prints the seconds it waited; after TIMEOUT seconds
# (default 120) fails with the last answer and the end of the VM's serial
# console log (when it has one in a file).
haven_wait_guest_agent() {
  local name=$1 timeout=${2:-120} start now out
  [ -n "$name" ] || { _hv_err "usage: haven_wait_guest_agent NAME [TIMEOUT]"; return 2; }
  start=$(date +%s.%N)
  while :; do
    if out=$(_hv_virsh qemu-agent-command "$name" --timeout 2 '{"execute":"guest-ping"}' 2>&1); then
      now=$(date +%s.%N)
      awk -v a="$start" -v b="$now" 'BEGIN { printf "%.1f\n", b - a }'
      return 0
    fi
    now=$(date +%s.%N)
    if awk -v a="$start" -v b="$now" -v t="$timeout" 'BEGIN { exit !(b - a > t) }'; then
      local log
      log=$(_hv_virsh dumpxml "$name" 2>/dev/null |
        sed -n "/<serial type='file'>/,/<\/serial>/s/.*<source path='\([^']*\)'.*/\1/p" | head -1)
      _hv_err "the guest agent of $name did not answer in $timeout s: $out${log:+; console $log ends: $(tail -5 "$log" 2>/dev/null)}"
      return 1
    fi
    sleep 0.5
  done
}

# _hv_disk_qdev VM DISK: the qdev id of a disk given as an index (0 -> virtio-disk0)
# or a target name (vdc -> its <alias name=...> in the live XML).
_hv_disk_qdev() {
  case "$2" in
    ''|*[!0-9]*)
      _hv_virsh dumpxml "$1" | "$_HV_PY" -c '
import sys, xml.etree.ElementTree as ET
for d in ET.parse(sys.stdin).getroot().iter("disk"):
    t, a = d.find("target"), d.find("alias")
    if t is not None and t.get("dev") == sys.argv[1] and a is not None:
        print(a.get("name")); break
else:
    sys.exit("no disk %s with an alias (is the domain running?)" % sys.argv[1])' "$2" ;;
    *) echo "virtio-disk$2" ;;
  esac
}

# _hv_qemu_io VM QDEV CMD...: runs qemu-io commands (one per argument) through
# HMP in one virsh session and checks the domain log for one "wrote LEN/LEN
# bytes at offset OFF" per command (waits up to 10 s; any "failed" fails).
_hv_qemu_io() {
  local vm=$1 qdev=$2
  shift 2
  local log=/var/log/libvirt/qemu/$vm.log start out c
  start=$(stat -c %s "$log" 2>/dev/null || echo 0)
  # One virsh process, commands separated by ';' (virsh reading stdin echoes prompts).
  local script=
  for c in "$@"; do
    script+="qemu-monitor-command $vm --hmp 'qemu-io -d /machine/peripheral/$qdev/virtio-backend \"$c\"' ; "
  done
  out=$(virsh -q -c "$HAVEN_LIBVIRT_URI" "$script" 2>&1) || { _hv_err "qemu-io on $vm: $out"; return 1; }
  if printf '%s' "$out" | grep -q '[^[:space:]]'; then
    # Any monitor output is an error (device not found, parse error, ...).
    _hv_err "qemu-io on $vm/$qdev: $(printf '%s' "$out" | grep -v '^[[:space:]]*$' | head -5)"
    return 1
  fi
  [ -r "$log" ] || return 0   # no log to check (remote URI): trust the monitor
  local want=$# i got
  for i in $(seq 1 100); do
    got=$(tail -c +$((start + 1)) "$log" | grep -c '^wrote [0-9]*/[0-9]* bytes at offset' || true)
    if tail -c +$((start + 1)) "$log" | grep -q 'failed'; then
      _hv_err "qemu-io on $vm/$qdev: $(tail -c +$((start + 1)) "$log" | grep 'failed' | head -3)"
      return 1
    fi
    [ "$got" -ge "$want" ] && break
    sleep 0.1
  done
  [ "$got" -ge "$want" ] || { _hv_err "qemu-io on $vm/$qdev: $got of $want writes confirmed in $log"; return 1; }
  # A short write shows as "wrote A/B" with A != B.
  if tail -c +$((start + 1)) "$log" | grep '^wrote ' | awk -F'[ /]' '$2 != $3 {bad=1} END {exit !bad}'; then
    _hv_err "qemu-io on $vm/$qdev: short write: $(tail -c +$((start + 1)) "$log" | grep '^wrote ' | head -3)"
    return 1
  fi
}

# haven_guest_write VM DISK PATTERN OFFSET LEN: writes LEN bytes at OFFSET of
# the VM's disk DISK (an index N for virtio-diskN, or a target name such as vdc)
# while it runs, as the guest would. PATTERN is a byte (0xcd: qemu-io -P) or
# random:SEED (LEN deterministic random bytes from SEED). OFFSET and LEN take
# qemu-io suffixes (64M, 8k).
haven_guest_write() {
  local vm=$1 disk=$2 pat=$3 off=$4 len=$5 qdev
  [ $# -eq 5 ] || { _hv_err "usage: haven_guest_write VM DISK PATTERN OFFSET LEN"; return 2; }
  qdev=$(_hv_disk_qdev "$vm" "$disk") || return 1
  case "$pat" in
    random:*)
      local f
      f=$(_hv_random_files "${pat#random:}" 1 "$(_hv_bytes "$len")") || return 1
      _hv_qemu_io "$vm" "$qdev" "write -s $f $off $len"
      local rc=$?
      rm -rf "$(dirname "$f")"
      return $rc ;;
    *) _hv_qemu_io "$vm" "$qdev" "write -P $pat $off $len" ;;
  esac
}

# haven_guest_write_random VM DISK SEED COUNT BLOCK: COUNT writes of BLOCK bytes
# of random data at distinct random BLOCK-aligned offsets of the disk (Python
# random.seed(SEED): offsets from random.sample, then the data with randbytes),
# in one virsh session. Prints the offsets, one a line.
haven_guest_write_random() {
  local vm=$1 disk=$2 seed=$3 count=$4 block=$5 qdev size
  [ $# -eq 5 ] || { _hv_err "usage: haven_guest_write_random VM DISK SEED COUNT BLOCK"; return 2; }
  qdev=$(_hv_disk_qdev "$vm" "$disk") || return 1
  local target=$disk
  case "$disk" in ''|*[!0-9]*) ;; *) target=$(_hv_disk_target "$vm" "$disk") || return 1 ;; esac
  size=$(_hv_virsh domblkinfo "$vm" "$target" | awk '/^Capacity:/ {print $2}')
  [ -n "$size" ] || { _hv_err "no capacity for disk $target of $vm"; return 1; }
  local dir
  dir=$(mktemp -d /var/tmp/haven-gw.XXXXXX) && chmod 755 "$dir" || return 1
  "$_HV_PY" - "$dir" "$seed" "$count" "$block" "$size" <<'PY' || { rm -rf "$dir"; return 1; }
import os, random, sys
d, seed, n, bs, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
random.seed(seed)
slots = random.sample(range(size // bs), n)
with open(os.path.join(d, "offsets"), "w") as o:
    for i, s in enumerate(slots):
        p = os.path.join(d, "w%d" % i)
        with open(p, "wb") as f:
            f.write(random.randbytes(bs))
        os.chmod(p, 0o644)
        o.write("%d %s\n" % (s * bs, p))
PY
  local cmds=() o p
  while read -r o p; do cmds+=("write -s $p $o $block"); done <"$dir/offsets"
  _hv_qemu_io "$vm" "$qdev" "${cmds[@]}" || { rm -rf "$dir"; return 1; }
  cut -d' ' -f1 "$dir/offsets"
  rm -rf "$dir"
}

# _hv_disk_target VM INDEX: target name (vda...) of the disk with alias virtio-diskINDEX.
_hv_disk_target() {
  _hv_virsh dumpxml "$1" | "$_HV_PY" -c '
import sys, xml.etree.ElementTree as ET
for d in ET.parse(sys.stdin).getroot().iter("disk"):
    a = d.find("alias")
    if a is not None and a.get("name") == "virtio-disk" + sys.argv[1]:
        print(d.find("target").get("dev")); break
else:
    sys.exit("no disk virtio-disk%s" % sys.argv[1])' "$2"
}

# _hv_bytes SIZE: 64k / 8M / 1G / plain bytes -> bytes.
_hv_bytes() {
  "$_HV_PY" -c '
import sys
s = sys.argv[1].strip().lower(); m = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
print(int(s[:-1]) * m[s[-1]] if s[-1] in m else int(s))' "$1"
}

# _hv_random_files SEED COUNT BYTES: makes COUNT files of random bytes readable
# by QEMU and prints their paths.
_hv_random_files() {
  local dir
  dir=$(mktemp -d /var/tmp/haven-gw.XXXXXX) && chmod 755 "$dir" || return 1
  "$_HV_PY" - "$dir" "$@" <<'PY'
import os, random, sys
d, seed, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(seed)
for i in range(n):
    p = os.path.join(d, "w%d" % i)
    with open(p, "wb") as f:
        f.write(rng.randbytes(size))
    os.chmod(p, 0o644)
    print(p)
PY
}

# haven_disk_copy VM DISKFILE FORMAT OUT: the content of DISKFILE (its guest
# view: FORMAT qcow2 or raw, backing chain included) at this instant, as a
# sparse raw file OUT. A running VM is paused around the copy (pausing flushes
# QEMU's caches) and resumed after it, even if the copy fails.
haven_disk_copy() {
  local vm=$1 file=$2 fmt=$3 out=$4 state rc=0 err
  [ $# -eq 4 ] || { _hv_err "usage: haven_disk_copy VM DISKFILE FORMAT OUT"; return 2; }
  state=$(_hv_virsh domstate "$vm" 2>/dev/null) || state=
  if [ "$state" = running ]; then
    err=$(_hv_virsh suspend "$vm" 2>&1) || { _hv_err "suspend $vm: $err"; return 1; }
  fi
  err=$(qemu-img convert -U -f "$fmt" -O raw "$file" "$out" 2>&1) || rc=$?
  if [ "$state" = running ]; then
    _hv_virsh resume "$vm" >/dev/null || { _hv_err "resume $vm failed"; rc=1; }
  fi
  [ $rc = 0 ] || _hv_err "qemu-img convert $file: $err"
  return $rc
}

# haven_watch_jobs OUT VM...: until killed, appends to OUT the Haven job
# folders (/var/lib/haven/jobs/job-*) whose files the QEMU processes of these
# VMs hold open, i.e. the scratch files of their backup jobs, every 50 ms.
# Run it in the background around backups to tell their lines in libvirtd's
# log from those of other backups running on the same host.
haven_watch_jobs() {
  local out=$1 vm p fds
  shift
  while :; do
    fds=()
    for vm in "$@"; do
      p=
      read -r p 2>/dev/null <"/run/libvirt/qemu/$vm.pid" || true
      [ -n "$p" ] && fds+=("/proc/$p/fd")
    done
    if [ ${#fds[@]} -gt 0 ]; then
      ls -l "${fds[@]}" 2>/dev/null | grep -o '/var/lib/haven/jobs/job-[^/ ]*' >>"$out" || true
    fi
    sleep 0.05
  done
}

# haven_cleanup_vm NAME...: destroys and undefines each domain with its
# checkpoint and snapshot metadata and NVRAM. Missing domains are fine. Disk
# files are left to the caller.
haven_cleanup_vm() {
  local vm
  for vm in "$@"; do
    _hv_virsh dominfo "$vm" >/dev/null 2>&1 || continue
    _hv_virsh domjobabort "$vm" >/dev/null 2>&1 || true
    _hv_virsh destroy "$vm" >/dev/null 2>&1 || true
    _hv_virsh undefine "$vm" --checkpoints-metadata --snapshots-metadata --nvram >/dev/null 2>&1 ||
      _hv_virsh undefine "$vm" --checkpoints-metadata --snapshots-metadata >/dev/null 2>&1 ||
      _hv_err "could not undefine $vm"
  done
}

# haven_cleanup_network NAME...: stops and undefines each network (missing ones are fine).
haven_cleanup_network() {
  local net
  for net in "$@"; do
    _hv_virsh net-info "$net" >/dev/null 2>&1 || continue
    _hv_virsh net-destroy "$net" >/dev/null 2>&1 || true
    _hv_virsh net-undefine "$net" >/dev/null 2>&1 || _hv_err "could not undefine network $net"
  done
}

# haven_make_demo_vm [NAME [DIR]]: the quick start's VM (default haven-demo in
# /var/tmp/haven-demo-vm): one 64 MiB qcow2 disk holding a small ext4 file
# system with a few files, on the isolated network haven-demo-net, running.
# Idempotent: an existing, running demo VM is left as it is.
haven_make_demo_vm() {
  local name=${1:-haven-demo} dir=${2:-/var/tmp/haven-demo-vm} net=haven-demo-net err
  haven_libvirt_start || return 1
  if ! _hv_virsh net-info "$net" >/dev/null 2>&1; then
    haven_make_network "$net" havendemo0 || return 1
  elif [ "$(_hv_virsh net-info "$net" | awk '/^Active:/ {print $2}')" != yes ]; then
    _hv_virsh net-start "$net" >/dev/null || return 1
  fi
  if _hv_virsh dominfo "$name" >/dev/null 2>&1; then
    [ "$(_hv_virsh domstate "$name")" = running ] || _hv_virsh start "$name" >/dev/null || return 1
    echo "demo VM $name is running (disk $dir/$name.qcow2)"
    return 0
  fi
  mkdir -p "$dir/files" && chmod 755 "$dir" || return 1
  local p=$dir
  while [ "$p" != / ]; do [ "$(stat -c %u "$p")" = 0 ] && chmod o+x "$p"; p=$(dirname "$p"); done
  cp -r /usr/share/doc/bash /usr/share/doc/coreutils "$dir/files/" 2>/dev/null || true
  echo "Hello from the Haven demo VM" >"$dir/files/hello.txt"
  err=$(mkfs.ext4 -q -F -L haven-demo -d "$dir/files" "$dir/$name.raw" 64M 2>&1) ||
    { _hv_err "mkfs.ext4: $err"; return 1; }
  err=$(qemu-img convert -f raw -O qcow2 "$dir/$name.raw" "$dir/$name.qcow2" 2>&1) ||
    { _hv_err "qemu-img convert: $err"; return 1; }
  rm -rf "$dir/$name.raw" "$dir/files"
  local xml
  xml=$(mktemp /tmp/haven-dom.XXXXXX.xml)
  cat >"$xml" <<EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/><apic/></features>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$dir/$name.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <source network='$net'/>
      <model type='virtio'/>
    </interface>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
  err=$(_hv_virsh define "$xml" 2>&1) || { rm -f "$xml"; _hv_err "define $name: $err"; return 1; }
  rm -f "$xml"
  err=$(_hv_virsh start "$name" 2>&1) || { _hv_err "start $name: $err"; return 1; }
  echo "demo VM $name is running (disk $dir/$name.qcow2, network $net)"
}
