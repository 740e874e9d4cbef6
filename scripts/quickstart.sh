#!/usr/bin/env bash
# Haven's main job on the embedded default: install, build, create the
# default local repository if it is missing, back up every VM on this host
# (libvirt, qemu:///system) into it and list the recovery points.
#
#   scripts/quickstart.sh               # every VM on this host
#   scripts/quickstart.sh --demo-vm     # also create the small demo VM
#   scripts/quickstart.sh --remove-demo-vm
#
# libvirtd is started if it is not running. When the host has no VM at all,
# the script says so and creates a small demo VM, haven-demo (TCG, no OS, one
# qcow2 disk holding an ext4 file system, on an isolated network), so the
# backup has something to read; set HAVEN_NO_DEMO_VM=1 to skip that. Running
# it again makes an incremental backup (only blocks written since are read).
#
# The repository is $HAVEN_REPOSITORY or haven's default path. The passphrase
# is $HAVEN_PASSWORD / $HAVEN_PASSWORD_FILE; if neither is set, a random one
# is created once in ~/.config/haven/passphrase (mode 0600) — keep a copy of
# it somewhere safe: without it the backups cannot be read.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=0
case "${1:-}" in
  --demo-vm) DEMO=1 ;;
  --remove-demo-vm)
    . scripts/libvirt-env.sh
    haven_cleanup_vm haven-demo; haven_cleanup_network haven-demo-net
    echo "removed the demo VM haven-demo and its network"; exit 0 ;;
  "") ;;
  *) echo "usage: scripts/quickstart.sh [--demo-vm | --remove-demo-vm]" >&2; exit 2 ;;
esac
scripts/install-deps.sh
BUILD_DIR=build scripts/build.sh
HAVEN=$PWD/build/haven
. scripts/libvirt-env.sh
haven_libvirt_start

if [ -z "${HAVEN_PASSWORD:-}" ] && [ -z "${HAVEN_PASSWORD_FILE:-}" ]; then
  export HAVEN_PASSWORD_FILE="$HOME/.config/haven/passphrase"
  if [ ! -s "$HAVEN_PASSWORD_FILE" ]; then
    mkdir -p "$(dirname "$HAVEN_PASSWORD_FILE")"
    (umask 077 && head -c 24 /dev/urandom | base64 > "$HAVEN_PASSWORD_FILE")
    echo "created a passphrase in $HAVEN_PASSWORD_FILE — keep a copy somewhere safe"
  fi
fi

if [ -z "$(virsh -q -c qemu:///system list --all --name)" ] && [ "${HAVEN_NO_DEMO_VM:-0}" != 1 ]; then
  echo "This host has no VM. Creating a small demo VM, haven-demo, to back up"
  echo "(remove it with: scripts/quickstart.sh --remove-demo-vm)."
  DEMO=1
fi
if [ "$DEMO" = 1 ]; then haven_make_demo_vm; fi

REPO_ARGS=()
if [ -n "${HAVEN_REPOSITORY:-}" ]; then REPO_ARGS=(-r "$HAVEN_REPOSITORY"); fi
# Create the repository only when there is none (any other error, such as a
# wrong passphrase, is left for the backup below to report).
probe=$("$HAVEN" "${REPO_ARGS[@]}" snapshots 2>&1 >/dev/null) || true
case "$probe" in
  *"no Haven repository"*) "$HAVEN" "${REPO_ARGS[@]}" init ;;
esac
"$HAVEN" "${REPO_ARGS[@]}" backup vm --all
"$HAVEN" "${REPO_ARGS[@]}" snapshots
