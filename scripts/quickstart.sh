#!/usr/bin/env bash
# Haven's main job on the embedded default: install, build, create the
# default local repository if it is missing, back up a disk image into it and
# list the recovery points.
#
#   scripts/quickstart.sh [IMAGE]
#
# IMAGE defaults to a demo ext4 image made from /usr/share/doc. The
# repository is $HAVEN_REPOSITORY or haven's default path. The passphrase is
# $HAVEN_PASSWORD / $HAVEN_PASSWORD_FILE; if neither is set, a random one is
# created once in ~/.config/haven/passphrase (mode 0600) — keep a copy of it
# somewhere safe: without it the backups cannot be read.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
BUILD_DIR=build scripts/build.sh
HAVEN=$PWD/build/haven

if [ -z "${HAVEN_PASSWORD:-}" ] && [ -z "${HAVEN_PASSWORD_FILE:-}" ]; then
  export HAVEN_PASSWORD_FILE="$HOME/.config/haven/passphrase"
  if [ ! -s "$HAVEN_PASSWORD_FILE" ]; then
    mkdir -p "$(dirname "$HAVEN_PASSWORD_FILE")"
    (umask 077 && head -c 24 /dev/urandom | base64 > "$HAVEN_PASSWORD_FILE")
    echo "created a passphrase in $HAVEN_PASSWORD_FILE — keep a copy somewhere safe"
  fi
fi

IMAGE=${1:-}
NAME=${HAVEN_NAME:-}
if [ -z "$IMAGE" ]; then
  DEMO=${HAVEN_DEMO_DIR:-/var/tmp/haven-demo}
  IMAGE=$DEMO/demo-disk.img
  NAME=${NAME:-demo-disk}
  if [ ! -f "$IMAGE" ]; then
    mkdir -p "$DEMO"
    echo "making a demo disk image: $IMAGE (ext4, 256 MiB, files from /usr/share/doc)"
    mkfs.ext4 -q -F -d /usr/share/doc "$IMAGE" 256M >/dev/null
  fi
fi
NAME=${NAME:-$(basename "$IMAGE" | sed 's/\.[^.]*$//')}

REPO_ARGS=()
if [ -n "${HAVEN_REPOSITORY:-}" ]; then REPO_ARGS=(-r "$HAVEN_REPOSITORY"); fi
# Create the repository only when there is none (any other error, such as a
# wrong passphrase, is left for the backup below to report).
probe=$("$HAVEN" "${REPO_ARGS[@]}" snapshots 2>&1 >/dev/null) || true
case "$probe" in
  *"no Haven repository"*) "$HAVEN" "${REPO_ARGS[@]}" init ;;
esac
"$HAVEN" "${REPO_ARGS[@]}" backup image "$IMAGE" --name "$NAME"
"$HAVEN" "${REPO_ARGS[@]}" snapshots
