# Shared helpers for the tests that run a real havend over HTTPS on
# loopback with real role tokens. Source it after lib.sh (or
# libvirt_lib.sh), with HAVEND, WORK and STATE set:
#   . "$(dirname "$0")/havend_lib.sh"
# Every request carries a token made by `havend token create`: havend has
# no switch that serves requests without credentials.
: "${HAVEND:?HAVEND must point at the havend binary}"

# havend_token ROLE NAME: makes a token of ROLE in $STATE and writes its
# "Authorization: Bearer ..." header line to $WORK/token.ROLE (mode 600),
# for `curl -H @$WORK/token.ROLE`. The token goes from havend's stdout into
# the file only: never into argv, a variable or the test's output.
havend_token() {
  local role=$1 name=$2 file=$WORK/token.$1
  (
    umask 077
    set -o pipefail
    "$HAVEND" token create --state-dir "$STATE" --role "$role" --name "$name" \
      2>"$WORK/token.err" | sed 's/^/Authorization: Bearer /' >"$file"
  ) || fail "havend token create --role $role: $(cat "$WORK/token.err")"
  grep -q '^Authorization: Bearer haven_' "$file" ||
    fail "havend token create --role $role printed no token"
}

# havend_tokens PREFIX: havend_token for admin, operator and auditor, named
# PREFIX-ROLE.
havend_tokens() {
  local role
  for role in admin operator auditor; do havend_token "$role" "$1-$role"; done
}

# havend_start NAME [ARGS...]: `havend serve --state-dir $STATE --listen
# 127.0.0.1:0 ARGS` in the background (environment from HAVEND_ENV, an
# array of VAR=VALUE, if set); stdout in $WORK/NAME.out, stderr in
# $WORK/NAME.log. Waits for its "listening on" line; sets DPID, PORT and
# URL (https://127.0.0.1:PORT, no trailing slash).
havend_start() {
  local name=$1
  shift
  env "${HAVEND_ENV[@]+"${HAVEND_ENV[@]}"}" "$HAVEND" serve --state-dir "$STATE" \
    --listen 127.0.0.1:0 "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
  DPID=$!
  local _
  for _ in $(seq 100); do
    grep -q "listening on" "$WORK/$name.out" 2>/dev/null && break
    kill -0 "$DPID" 2>/dev/null || fail "havend exited: $(cat "$WORK/$name.log")"
    sleep 0.1
  done
  PORT=$(sed -n 's#^listening on https://127\.0\.0\.1:\([0-9]*\)/$#\1#p' "$WORK/$name.out")
  [ -n "$PORT" ] || fail "no 'listening on' line: $(cat "$WORK/$name.out")"
  URL=https://127.0.0.1:$PORT
}

# havend_stop NAME: SIGTERM, and fails unless havend stops with exit 0.
havend_stop() {
  kill -TERM "$DPID"
  local rc=0
  wait "$DPID" || rc=$?
  DPID=
  [ "$rc" = 0 ] || fail "havend exited $rc after SIGTERM: $(tail -5 "$WORK/$1.log")"
}
