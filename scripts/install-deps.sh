#!/usr/bin/env bash
# Installs everything Haven needs to build, test and benchmark on Debian 12.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
PACKAGES=(
  g++ cmake ninja-build pkg-config          # toolchain
  libssl-dev                                 # AES-GCM, HMAC-SHA256, scrypt
  libzstd-dev                                # chunk compression
  librocksdb-dev                             # chunk index
  nlohmann-json3-dev                         # config, manifests, --json
  libcli11-dev                               # command line
  libgtest-dev libgmock-dev                  # unit tests
  clang libclang-rt-14-dev                   # libFuzzer targets (scripts/fuzz.sh)
  libvhdi-dev libvmdk-dev libbfio-dev        # Hyper-V/VMware disks (headers need libbfio.h)
  libvirt-dev libnbd-dev libxml2-dev         # VM backups: libvirt API, NBD exports, domain XML
  libvirt-daemon-system libvirt-clients      # libvirtd + virsh: the hosts Haven backs up (and tests)
  dnsmasq-base                               # DHCP/DNS of the test VMs' libvirt networks (not on every machine)
  qemu-system-x86 qemu-utils                 # QEMU (TCG VMs in tests), qemu-nbd for qcow2 images
  e2fsprogs python3 time                     # test and bench images, measurements
  libtsk-dev libarchive-dev                  # guest file systems (The Sleuth Kit); tar/zip export
  libboost-filesystem-dev attr acl rsync     # file backups: tree walk; xattr/ACL tools and rsync for tests
  ntfs-3g mtools dosfstools exfatprogs exfat-fuse libarchive-tools fdisk   # file-restore tests: guest file systems, bsdtar
  dpkg-dev file                              # Debian package (scripts/package.sh): dpkg-shlibdeps for Depends
  ccache                                     # compiler cache (scripts/build.sh): CI reuses the last build's objects
  systemd tzdata                             # calendar_test: systemd-analyze calendar is the reference for schedules; Europe/Berlin, America/New_York rules
  libsqlite3-dev                             # havend: accounts, tokens, schedules, job history (appliance/state_db)
  libcurl4-openssl-dev                       # havend: webhook POSTs and e-mail over SMTP
  libboost-dev                               # havend: Boost.Beast + Asio (HTTPS server)
  python3-aiosmtpd                           # havend tests: a local SMTP sink for notification mail
  curl openssl                               # havend tests: HTTPS client (pinning, TLS versions) and the fingerprint/key reference
  chromium chromium-driver python3-selenium  # console tests: a real headless browser against a real havend
  ceph-mon ceph-mgr ceph-osd radosgw ceph-common   # object-store tests: a single-node Ceph cluster with radosgw (tests/ceph)
  # The test guest with a real QEMU guest agent (scripts/make-qga-guest.sh,
  # consistency_test): a Debian kernel and its modules, busybox as the
  # guest's init and tools, qemu-ga (policy-rc.d / its systemd condition keep
  # it from running on this host).
  linux-image-amd64 busybox-static qemu-guest-agent
)
# linux-image-amd64 needs an initramfs tool. A machine that boots through
# initramfs-tools or dracut keeps its own (tiny-initramfs conflicts with
# both); elsewhere (containers, CI) tiny-initramfs: no udev or klibc, and its
# kernel hook works in a container. The test guest does not use the image.
if ! dpkg-query -W -f='${Status}\n' initramfs-tools dracut 2>/dev/null | grep -q "install ok installed"; then
  PACKAGES+=(tiny-initramfs)
fi
if [ "${HAVEN_WITH_PEERS:-0}" = 1 ]; then PACKAGES+=(restic borgbackup virtnbdbackup openssh-server openssh-client); fi
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
