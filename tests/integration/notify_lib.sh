# Shared receivers of the notification tests (notify_test.sh,
# notify_settings_test.sh): a local HTTP receiver (notify_hook.py) and SMTP
# sinks (notify_sink.py). Source it after lib.sh:
#   . "$(dirname "$0")/notify_lib.sh"
# Every receiver started is added to the array PIDS, for the test's trap
# to kill.
NOTIFY_TESTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PIDS=()

# The SMTP sink needs Debian's python3-aiosmtpd: the system python has it
# even when another python3 comes first in PATH.
SMTPPY=
for p in "$PYTHON" /usr/bin/python3; do
  "$p" -c 'import aiosmtpd' 2>/dev/null && { SMTPPY=$p; break; }
done
[ -n "$SMTPPY" ] || fail "python3-aiosmtpd is missing (scripts/install-deps.sh)"

# notify_hook: the HTTP receiver in the background; each request saved as
# $WORK/hooks/N.json (see notify_hook.py), its port in $WORK/hook.port, its
# stderr in $WORK/hook.log. (python started directly, not through the py
# function: $! must be its own pid for the cleanup to kill it)
notify_hook() {
  mkdir -p "$WORK/hooks"
  "$PYTHON" "$NOTIFY_TESTS/notify_hook.py" "$WORK/hooks" "$WORK/hook.port" 2>"$WORK/hook.log" &
  PIDS+=($!)
}

# notify_sink DIR NAME [CERT KEY]: an SMTP sink in the background; each
# message saved in DIR (see notify_sink.py), its port in $WORK/NAME.port,
# its stderr in $WORK/NAME.log. With CERT and KEY: STARTTLS and AUTH
# required.
notify_sink() {
  local dir=$1 name=$2
  shift 2
  mkdir -p "$dir"
  "$SMTPPY" "$NOTIFY_TESTS/notify_sink.py" "$dir" "$WORK/$name.port" "$@" 2>"$WORK/$name.log" &
  PIDS+=($!)
}

# notify_wait NAME:WHAT...: waits (up to 10 s) until every $WORK/NAME.port
# is written; fails naming WHAT with its log otherwise.
notify_wait() {
  local _ arg all
  for _ in $(seq 100); do
    all=1
    for arg in "$@"; do [ -s "$WORK/${arg%%:*}.port" ] || all=; done
    [ -n "$all" ] && break
    sleep 0.1
  done
  for arg in "$@"; do
    [ -s "$WORK/${arg%%:*}.port" ] || fail "${arg#*:} did not start: $(cat "$WORK/${arg%%:*}.log")"
  done
}

# hooks, mails: how many requests the HTTP receiver and messages the SMTP
# sink in $WORK/mail have saved.
hooks() { ls "$WORK/hooks" | grep -c '\.json$' || true; }
mails() { ls "$WORK/mail" | grep -c '\.eml$' || true; }
# wait_for N COUNTER: until COUNTER (hooks/mails) reaches N, up to 15 s.
wait_for() {
  for _ in $(seq 150); do [ "$($2)" -ge "$1" ] && return 0; sleep 0.1; done
  fail "expected $1 $2, have $($2)"
}

# notify_repo BYTES: a repository R=$WORK/repo with one image point "a" of
# BYTES random bytes, its password ($HAVEN_PASSWORD) in $WORK/pw (mode 600)
# for havend.
notify_repo() {
  R=$WORK/repo
  haven -q -r "$R" init
  random_file "$WORK/a.img" "$1" 1
  haven -q -r "$R" backup image "$WORK/a.img" --name a
  echo "$HAVEN_PASSWORD" >"$WORK/pw"
  chmod 600 "$WORK/pw"
}

# verify_hook FILE: the signature of the request saved in FILE (by
# notify_hook.py) over "timestamp.body" is openssl's HMAC with $SECRET, and
# its timestamp is now; the body is left in $WORK/body.json.
verify_hook() {
  local ts sig body want
  ts=$(jget 'j["headers"]["x-haven-timestamp"]' "$1")
  sig=$(jget 'j["headers"]["x-haven-signature"]' "$1")
  jget 'j["body"]' "$1" | head -c -1 >"$WORK/body.json"
  { printf '%s.' "$ts"; cat "$WORK/body.json"; } >"$WORK/signed"
  want=$(openssl dgst -sha256 -hmac "$SECRET" -r "$WORK/signed" | cut -d' ' -f1)
  [ "$sig" = "sha256=$want" ] || fail "signature $sig, openssl says sha256=$want"
  local now
  now=$(date +%s)
  [ $((now - ts)) -lt 60 ] && [ $((ts - now)) -lt 5 ] || fail "timestamp $ts is not now ($now)"
}
