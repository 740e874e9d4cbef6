#!/usr/bin/env bash
# Haven's main job on the embedded default: the appliance on this host in
# one command:
# install, build, `havend init` with the embedded defaults (a local
# repository with a random passphrase, an admin account, the nightly 02:00
# schedule of every VM), start havend in the background, run the first
# backup of every VM at once through the API, and print the URL, the
# certificate fingerprint and where the admin password is.
#
#   scripts/quickstart.sh              # set up (or reuse), start, back up now
#   scripts/quickstart.sh --no-backup  # set up and start only
#   scripts/quickstart.sh --demo-vm    # also create the small demo VM
#   scripts/quickstart.sh --stop       # stop the havend this script started
#   scripts/quickstart.sh --remove-demo-vm
#
# A host with no VM gets a small demo VM, haven-demo (TCG, no OS, one qcow2
# disk holding an ext4 file system, an isolated network), so the backup has
# something to read; HAVEN_NO_DEMO_VM=1 skips that.
#
# Where things go: as root, the system's places, the same as the havend
# Debian package's — /etc/haven/havend.conf and /var/lib/haven (its
# repository is /var/lib/haven/repository, the `haven` command's default as
# root) — so a later `apt install ./havend_*.deb` and `systemctl enable
# --now havend` take over the same appliance. As another user:
# ${XDG_STATE_HOME:-~/.local/state}/haven, with havend.conf inside it.
# HAVEN_STATE_DIR and HAVEN_CONFIG override both.
#
# On its first set-up havend listens on 127.0.0.1:8421 only (HAVEND_LISTEN
# to change it, e.g. 0.0.0.0:8421 for the console from other machines;
# later, Listen= in havend.conf). Running the script again changes nothing
# in the set-up, reuses a havend that is running (this script's or the
# systemd service) and makes an incremental backup.
#
# The first backup goes through POST /api/v1/backups as the admin (a
# console session: login, then the CSRF token), as the console's "back up
# now" does; the script follows the job to its end and exits non-zero when
# it did not succeed.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=run
DEMO=0
case "${1:-}" in
  --no-backup) MODE=nobackup ;;
  --demo-vm) DEMO=1 ;;
  --stop) MODE=stop ;;
  --remove-demo-vm)
    . scripts/libvirt-env.sh
    haven_cleanup_vm haven-demo; haven_cleanup_network haven-demo-net
    echo "removed the demo VM haven-demo and its network"; exit 0 ;;
  "") ;;
  *) echo "usage: scripts/quickstart.sh [--no-backup | --demo-vm | --stop | --remove-demo-vm]" >&2
     exit 2 ;;
esac

if [ "$(id -u)" = 0 ]; then
  STATE=${HAVEN_STATE_DIR:-/var/lib/haven}
  CONF=${HAVEN_CONFIG:-/etc/haven/havend.conf}
else
  STATE=${HAVEN_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/haven}
  CONF=${HAVEN_CONFIG:-$STATE/havend.conf}
fi
PIDFILE=$STATE/havend.pid

running_pid() {  # the pid of the havend this script started, if alive
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "havend serve" &&
    echo "$pid"
}

if [ "$MODE" = stop ]; then
  if pid=$(running_pid); then
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$PIDFILE"
    echo "stopped havend (pid $pid)"
  else
    echo "no havend started by this script is running (state directory $STATE)"
  fi
  exit 0
fi

scripts/install-deps.sh
BUILD_DIR=build scripts/build.sh
HAVEN=$PWD/build/haven
HAVEND=$PWD/build/havend
. scripts/libvirt-env.sh
haven_libvirt_start

# ---------------------------------------------------------------- set up
INIT_ARGS=(--state-dir "$STATE" --config "$CONF")
if [ ! -e "$CONF" ]; then INIT_ARGS+=(--listen "${HAVEND_LISTEN:-127.0.0.1:8421}"); fi
INIT_OUT=$(mktemp)
trap 'rm -f "$INIT_OUT"' EXIT
"$HAVEND" init "${INIT_ARGS[@]}" | tee "$INIT_OUT"
field() { sed -n "s/^$1: *//p" "$INIT_OUT" | head -1; }
URL=$(field URL)
FP=$(field "certificate fingerprint")
REPO=$(field repository)
PASSFILE=$(field "repository passphrase" | sed 's/^in \(.*\) - copy it somewhere safe$/\1/')
ADMIN_FILE=$STATE/admin.password

# ---------------------------------------------------------------- start
if [ -d /run/systemd/system ] && systemctl is-active --quiet havend 2>/dev/null; then
  echo "havend runs as the systemd service (systemctl status havend); using it"
elif pid=$(running_pid); then
  echo "havend is running already (pid $pid); using it"
else
  # Its own session, so it outlives this shell; stdout says where it listens.
  : >"$STATE/havend.out"
  # The web console's files: the installed ones, else this checkout's.
  CONSOLE_ARGS=()
  [ -e /usr/share/haven/console/index.html ] || CONSOLE_ARGS=(--console-dir "$PWD/appliance/console")
  setsid "$HAVEND" serve --config "$CONF" "${CONSOLE_ARGS[@]}" >"$STATE/havend.out" 2>>"$STATE/havend.log" </dev/null &
  echo $! >"$PIDFILE"
  for _ in $(seq 100); do
    grep -q "^listening on " "$STATE/havend.out" && break
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null ||
      { echo "havend did not start: $(tail -5 "$STATE/havend.log")" >&2; exit 1; }
    sleep 0.1
  done
  grep -q "^listening on " "$STATE/havend.out" ||
    { echo "havend did not listen within 10 s: $(tail -5 "$STATE/havend.log")" >&2; exit 1; }
  echo "started havend (pid $(cat "$PIDFILE")); log: $STATE/havend.log"
fi
# The API on loopback, at the port havend.conf names (init's URL names this
# host for a wildcard address; the certificate also names 127.0.0.1).
PORT=${URL##*:}
PORT=${PORT%/}
API=https://127.0.0.1:$PORT
CURL=(curl -sS --max-time 30 --cacert "$STATE/cert.pem")

# ---------------------------------------------------------------- first backup
if [ -z "$(virsh -q -c qemu:///system list --all --name)" ] && [ "${HAVEN_NO_DEMO_VM:-0}" != 1 ]; then
  echo "This host has no VM. Creating a small demo VM, haven-demo, to back up"
  echo "(remove it with: scripts/quickstart.sh --remove-demo-vm)."
  DEMO=1
fi
if [ "$DEMO" = 1 ]; then haven_make_demo_vm; fi

# api_backup: logs in as admin, starts a backup of every VM and follows the
# job to its end; fails, saying why, when the API refuses or the job fails.
api_backup() {
  local tmp code csrf job state
  [ -s "$ADMIN_FILE" ] || { echo "no admin password in $ADMIN_FILE (havend init makes it)" >&2; return 1; }
  tmp=$(mktemp -d)
  # The password and the session stay in 0700 files, never in argv.
  python3 - "$ADMIN_FILE" >"$tmp/login.json" <<'PYEOF'
import json, sys
print(json.dumps({"user": "admin", "password": open(sys.argv[1]).read().splitlines()[0]}))
PYEOF
  code=$("${CURL[@]}" -c "$tmp/cookies" -o "$tmp/login.out" -w '%{http_code}' \
    -H 'Content-Type: application/json' --data-binary @"$tmp/login.json" "$API/api/v1/login") || code=000
  if [ "$code" != 200 ]; then
    echo "POST /api/v1/login answered HTTP $code: $(head -c 300 "$tmp/login.out")" >&2
    rm -rf "$tmp"; return 1
  fi
  csrf=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["csrf_token"])' "$tmp/login.out")
  printf 'X-CSRF-Token: %s\n' "$csrf" >"$tmp/headers"
  code=$("${CURL[@]}" -b "$tmp/cookies" -H @"$tmp/headers" -o "$tmp/backup.out" -w '%{http_code}' \
    -H 'Content-Type: application/json' --data '{"repository":"default","all":true}' \
    "$API/api/v1/backups") || code=000
  if [ "$code" != 202 ]; then
    echo "POST /api/v1/backups answered HTTP $code: $(head -c 300 "$tmp/backup.out")" >&2
    rm -rf "$tmp"; return 1
  fi
  job=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["job"])' "$tmp/backup.out")
  echo "backup started through the API: job $job (GET $URL""api/v1/jobs/$job)"
  state=queued
  while [ "$state" = queued ] || [ "$state" = running ]; do
    sleep 2
    "${CURL[@]}" -b "$tmp/cookies" -o "$tmp/job.out" "$API/api/v1/jobs/$job" || true
    state=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("state","?"))' \
      "$tmp/job.out" 2>/dev/null || echo "?")
    echo "  job $job: $state"
  done
  "${CURL[@]}" -b "$tmp/cookies" -o "$tmp/log.out" "$API/api/v1/jobs/$job/log" || true
  python3 -c '
import json, sys
for line in json.load(open(sys.argv[1])).get("lines", []):
    print("  " + (line.get("text", "") if isinstance(line, dict) else str(line)))
' "$tmp/log.out" 2>/dev/null | tail -20 || true
  rm -rf "$tmp"
  [ "$state" = succeeded ]
}

BACKUP_OK=1
if [ "$MODE" = run ]; then
  rc=0
  api_backup || rc=$?
  if [ "$rc" = 0 ]; then
    HAVEN_PASSWORD_FILE=$PASSFILE "$HAVEN" -r "$REPO" snapshots || true
  else
    BACKUP_OK=0
    echo "the first backup did not succeed (see above, or its job: GET /api/v1/jobs)" >&2
  fi
fi

# ---------------------------------------------------------------- summary
echo
echo "The Haven appliance is running."
echo "  web console and API:      $URL (open it in a browser; API under ${URL%/}/api/v1)"
echo "  certificate fingerprint:  $FP"
if [ -s "$ADMIN_FILE" ]; then
  echo "  admin password:           in $ADMIN_FILE (user admin)"
else
  echo "  admin password:           none (havend init made no admin account)"
fi
echo "  repository:               $REPO"
echo "  repository passphrase:    in $PASSFILE - copy it somewhere safe"
echo "  configuration:            $CONF"
echo "  stop it:                  scripts/quickstart.sh --stop"
[ "$BACKUP_OK" = 1 ]
