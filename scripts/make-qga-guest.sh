#!/usr/bin/env bash
# make-qga-guest.sh OUTDIR: a tiny bootable test guest that runs the real QEMU
# guest agent, built only from this host's Debian packages:
#   OUTDIR/vmlinuz          the kernel of linux-image-amd64 (/boot/vmlinuz-VER)
#   OUTDIR/kernel-version   VER
#   OUTDIR/initrd.cpio.gz   busybox-static as /init's shell and tools, qemu-ga
#                           (qemu-guest-agent) with every library it links and
#                           the dynamic loader, and the kernel modules for
#                           virtio disks and ports and ext4
# Boot it directly (<os><kernel>, <initrd>, <cmdline>console=ttyS0
# haven.mount=1</cmdline>) with a virtio disk holding ext4 as vda and a
# virtio channel named org.qemu.guest_agent.0. The guest's /init:
#   - mounts proc, sysfs, devtmpfs and loads the modules (dependency order);
#   - with haven.mount=1 on the command line mounts /dev/vda (ext4) on /data
#     and starts a writer that rewrites /data/.haven-guest/heartbeat every
#     second (so an unfrozen capture really catches a dirty journal);
#   - starts qemu-ga on the virtio port whose sysfs name is
#     org.qemu.guest_agent.0 (no udev: no /dev/virtio-ports/ links);
#   - prints "haven-guest: ready ..." on the serial console, then idles.
# In the guest, /bin/haven-data umount|mount stops the writer and unmounts
# /data, or mounts it and starts the writer (for guest-exec).
#
# The result is cached in ${HAVEN_QGA_CACHE:-/var/tmp/haven-qga-guest}, keyed
# by the kernel version, the versions of the three packages and this script,
# so calling it again is a copy (or nothing, when OUTDIR is up to date).
# HAVEN_QGA_KERNEL=VER picks a kernel (default: the newest /boot/vmlinuz-* with
# modules in /lib/modules/VER). Needs: linux-image-amd64, busybox-static,
# qemu-guest-agent, cpio, gzip (scripts/install-deps.sh).
set -euo pipefail
OUT=${1:-}
[ -n "$OUT" ] && [ $# = 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
die() { echo "make-qga-guest: $*" >&2; exit 1; }
SELF=$(readlink -f "$0")
CACHE=${HAVEN_QGA_CACHE:-/var/tmp/haven-qga-guest}
QGA=/usr/sbin/qemu-ga
BUSYBOX=/bin/busybox
# Module names as modprobe knows them (dashes and underscores alike in
# modules.dep file names). crc32c_generic: ext4 and jbd2 ask the crypto API for
# "crc32c" (modules.softdep); crc32c-intel needs SSE4.2, which TCG's default
# CPU lacks, so the generic one is always there.
MODULES="virtio_pci virtio_blk virtio_console crc32c_generic ext4"

# ---------------------------------------------------------------- inputs
if [ -n "${HAVEN_QGA_KERNEL:-}" ]; then
  KVER=$HAVEN_QGA_KERNEL
else
  KVER=
  for k in $(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V); do
    v=${k#/boot/vmlinuz-}
    [ -f "/lib/modules/$v/modules.dep" ] && KVER=$v
  done
fi
[ -n "$KVER" ] ||
  die "no kernel with modules in /boot and /lib/modules (apt-get install --no-install-recommends linux-image-amd64)"
KERNEL=/boot/vmlinuz-$KVER
MODDIR=/lib/modules/$KVER
[ -r "$KERNEL" ] || die "$KERNEL is missing or unreadable"
[ -f "$MODDIR/modules.dep" ] || die "$MODDIR/modules.dep is missing (kernel $KVER without its modules)"
[ -x "$QGA" ] || die "$QGA is missing (apt-get install qemu-guest-agent)"
[ -x "$BUSYBOX" ] || die "$BUSYBOX is missing (apt-get install busybox-static)"
# The guest has no libraries for busybox: it must be the static one.
if ldd "$BUSYBOX" >/dev/null 2>&1; then
  die "$BUSYBOX is dynamically linked (the busybox package); install busybox-static"
fi
for c in cpio gzip ldd; do command -v "$c" >/dev/null || die "$c is not installed"; done

pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }
KEY=$( {
  echo "kernel $KVER $(pkgver "linux-image-$KVER") $(stat -c '%s %Y' "$KERNEL")"
  echo "busybox-static $(pkgver busybox-static) $(stat -c '%s %Y' "$BUSYBOX")"
  echo "qemu-guest-agent $(pkgver qemu-guest-agent) $(stat -c '%s %Y' "$QGA")"
  echo "modules $MODULES"
  sha256sum "$SELF" | cut -d' ' -f1
} | sha256sum | cut -c1-16)

# Up to date: nothing to do.
if [ -f "$OUT/.key" ] && [ "$(cat "$OUT/.key")" = "$KEY" ] &&
  [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.cpio.gz" ] && [ -s "$OUT/kernel-version" ]; then
  exit 0
fi

# ---------------------------------------------------------------- build (cached)
ENTRY=$CACHE/$KVER-$KEY
mkdir -p "$CACHE"
build() {
  local root=$1
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,data,etc,lib/modules}
  cp "$BUSYBOX" "$root/bin/busybox"
  cp "$QGA" "$root/usr/sbin/qemu-ga"
  # Every library qemu-ga links, at the path ldd resolves it to, plus the
  # dynamic loader at the path the binary names as its interpreter.
  local lib
  for lib in $(ldd "$QGA" | awk '/=> \// {print $3} /^\t\/[^ ]+ \(/ {print $1}'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  [ -e "$root/lib64/ld-linux-x86-64.so.2" ] || die "ldd $QGA did not name the dynamic loader"
  # Modules: each one's dependencies (modules.dep lists them all, the ones
  # needed last first) before it, each once.
  local m path deps d order=() seen=" "
  for m in $MODULES; do
    path=$(awk -F: -v m="$m" '{
        n = $1; sub(/.*\//, "", n); sub(/\.ko(\.[a-z]+)?$/, "", n); gsub(/-/, "_", n)
        if (n == m) { print $1; exit } }' "$MODDIR/modules.dep")
    [ -n "$path" ] || die "module $m is not in $MODDIR/modules.dep (built in? then drop it from MODULES)"
    deps=$(awk -F: -v p="$path" '$1 == p { print $2; exit }' "$MODDIR/modules.dep")
    for d in $(echo $deps | tr ' ' '\n' | tac) "$path"; do
      case "$seen" in *" $d "*) continue ;; esac
      seen+="$d "
      order+=("$d")
    done
  done
  local f dst
  : >"$root/lib/modules/load-order"
  for f in "${order[@]}"; do
    dst=${f%.xz}; dst=${dst%.zst}; dst=${dst%.gz}
    mkdir -p "$root/lib/modules/$(dirname "$dst")"
    case "$f" in  # busybox insmod wants plain ELF
      *.xz) xz -dc "$MODDIR/$f" >"$root/lib/modules/$dst" ;;
      *.zst) zstd -qdc "$MODDIR/$f" >"$root/lib/modules/$dst" ;;
      *.gz) gzip -dc "$MODDIR/$f" >"$root/lib/modules/$dst" ;;
      *) cp "$MODDIR/$f" "$root/lib/modules/$dst" ;;
    esac
    echo "$dst" >>"$root/lib/modules/load-order"
  done
  # Init's first console; devtmpfs replaces /dev once mounted.
  mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true

  cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
say() { echo "haven-guest: $*"; }
while read -r m; do
  insmod "/lib/modules/$m" || say "insmod $m failed"
done </lib/modules/load-order
mkdir -p /run/qga /data
if grep -q 'haven.mount=1' /proc/cmdline; then
  haven-data mount || say "could not mount /dev/vda on /data"
fi
port=
for i in $(seq 1 100); do
  for d in /sys/class/virtio-ports/*; do
    [ "$(cat "$d/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] && port=/dev/${d##*/}
  done
  [ -n "$port" ] && [ -c "$port" ] && break
  port=
  sleep 0.1
done
if [ -z "$port" ]; then
  say "no virtio port named org.qemu.guest_agent.0 (is the channel in the domain XML?)"
else
  qemu-ga -m virtio-serial -p "$port" -t /run/qga -l /run/qga/qemu-ga.log &
  echo $! >/run/qga/pid
  say "ready: qemu-ga (pid $!) on $port; /data $(grep -q ' /data ' /proc/mounts && echo mounted || echo not mounted)"
fi
while :; do sleep 3600 & wait $!; done
INIT
  cat >"$root/bin/haven-data" <<'DATA'
#!/bin/sh
# haven-data mount: mount /dev/vda (ext4) on /data and start the writer.
# haven-data umount: stop the writer, unmount /data.
set -e
case "$1" in
  mount)
    i=0
    while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    grep -q ' /data ' /proc/mounts || mount -t ext4 /dev/vda /data
    mkdir -p /data/.haven-guest
    ( n=0; while :; do
        n=$((n + 1)); echo "$n $(date)" >/data/.haven-guest/heartbeat; sleep 1
      done ) </dev/null >/dev/null 2>&1 &
    echo $! >/run/writer.pid ;;
  umount)
    if [ -f /run/writer.pid ]; then
      p=$(cat /run/writer.pid)
      kill "$p" 2>/dev/null || true
      while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
      rm -f /run/writer.pid
    fi
    if grep -q ' /data ' /proc/mounts; then umount /data; fi ;;
  *) echo "usage: haven-data mount|umount" >&2; exit 2 ;;
esac
DATA
  chmod 755 "$root/init" "$root/bin/haven-data"
}

if [ ! -s "$ENTRY/initrd.cpio.gz" ]; then
  TMP=$(mktemp -d "$CACHE/.build.XXXXXX")
  trap 'rm -rf "$TMP"' EXIT
  build "$TMP/root"
  (cd "$TMP/root" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -6 >"$TMP/initrd.cpio.gz"
  cp "$KERNEL" "$TMP/vmlinuz"
  mkdir -p "$TMP/entry"
  mv "$TMP/vmlinuz" "$TMP/initrd.cpio.gz" "$TMP/entry/"
  # Another caller may have finished the same entry meanwhile: either is fine.
  mv -T "$TMP/entry" "$ENTRY" 2>/dev/null || [ -s "$ENTRY/initrd.cpio.gz" ] ||
    die "could not store $ENTRY"
fi

# ---------------------------------------------------------------- OUTDIR
# Copies, not links: libvirt relabels a running guest's kernel and initrd,
# and the cache is shared by every VM.
mkdir -p "$OUT"
cp "$ENTRY/vmlinuz" "$OUT/vmlinuz.tmp" && mv -f "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
cp "$ENTRY/initrd.cpio.gz" "$OUT/initrd.cpio.gz.tmp" && mv -f "$OUT/initrd.cpio.gz.tmp" "$OUT/initrd.cpio.gz"
chmod 644 "$OUT/vmlinuz" "$OUT/initrd.cpio.gz"
echo "$KVER" >"$OUT/kernel-version"
echo "$KEY" >"$OUT/.key"
