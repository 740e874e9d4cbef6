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

# HAVEND_TESTS: this folder (absolute), for PYTHONPATH=$HAVEND_TESTS to
# import console_lib.py from a python heredoc.
HAVEND_TESTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# havend_need CMD...: fails unless every CMD is installed.
havend_need() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null || fail "$c is missing (scripts/install-deps.sh installs it)"
  done
}

# havend_need_browser fail|skip: Debian's chromium, chromium-driver and
# python3-selenium for /usr/bin/python3 (scripts/install-deps.sh); fails or
# skips the test without them. Sets BROWSER_PY=/usr/bin/python3.
havend_need_browser() {
  local how=$1
  BROWSER_PY=/usr/bin/python3
  [ -x "$BROWSER_PY" ] && "$BROWSER_PY" -c 'import selenium' 2>/dev/null ||
    "$how" "python3-selenium is not installed for /usr/bin/python3 (scripts/install-deps.sh)"
  [ -x /usr/bin/chromium ] || "$how" "chromium is not installed (scripts/install-deps.sh)"
  [ -x /usr/bin/chromedriver ] || "$how" "chromium-driver is not installed (scripts/install-deps.sh)"
}

# havend_kill: kill -9 of a havend still running (DPID), for a trap.
havend_kill() {
  [ -n "${DPID:-}" ] && { kill -9 "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null; }
  return 0
}

# havend_trap: DPID empty and an EXIT trap that kills havend (havend_kill)
# and removes $WORK. Tests with more to clean up write their own trap.
havend_trap() {
  DPID=
  trap 'set +e; havend_kill; rm -rf "$WORK"' EXIT
}

# havend_repo_password: the repository password ($HAVEN_PASSWORD) in
# $WORK/pw (mode 600), for `havend serve --password-file $WORK/pw`.
havend_repo_password() {
  echo "$HAVEN_PASSWORD" >"$WORK/pw"
  chmod 600 "$WORK/pw"
}

# havend_admin_password FILE [PASSWORD]: writes PASSWORD (without it: a
# random one) to FILE (mode 600) and sets it as the password of the user
# admin in $STATE (`havend admin password --password-file FILE`).
havend_admin_password() {
  local file=$1
  (
    umask 077
    if [ $# -ge 2 ]; then
      printf '%s\n' "$2" >"$file"
    else
      head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$file"
    fi
  )
  chmod 600 "$file"
  "$HAVEND" admin password --state-dir "$STATE" --password-file "$file" 2>"$WORK/err" ||
    fail "admin password: $(cat "$WORK/err")"
}

# havend_login USER PASSWORD_FILE: POST /api/v1/login to $URL as the
# console does; the session cookie goes into the jar $WORK/jar, the CSRF
# token (64 hex digits, no newline) into $WORK/csrf. The password goes from
# its file into a request body file: never into argv or the test's output.
havend_login() {
  local user=$1 pwfile=$2 code
  py -c 'import json,sys; print(json.dumps({"user": sys.argv[1], "password": open(sys.argv[2]).read().strip()}))' \
    "$user" "$pwfile" >"$WORK/login.json"
  code=$(curl -sS --max-time 60 --cacert "$STATE/cert.pem" -c "$WORK/jar" -o "$WORK/body" \
    -w '%{http_code}' -H 'Content-Type: application/json' --data "@$WORK/login.json" "$URL/api/v1/login")
  [ "$code" = 200 ] || fail "login: HTTP $code $(cat "$WORK/body")"
  jget 'j["csrf_token"]' "$WORK/body" | tr -d '\n' >"$WORK/csrf"
  [ "$(wc -c <"$WORK/csrf")" = 64 ] || fail "login gave no CSRF token"
}
