#!/usr/bin/env bash
# Agent enrollment against a real havend over HTTPS on loopback, without
# the console (docs/agents.md, "Enrollment"):
#  - `havend agent enroll-token` (while havend serves) prints a token and
#    the command, with the fingerprint havend announced and --name
#  - POST /api/v1/agent/enroll (no credentials) trades it for a
#    havenagent_ credential once; a second use is 401 naming the agent
#  - the credential calls /api/v1/agent/hello (last contact, version) and
#    is 403 on the admin's routes; GET /api/v1/agents shows the agent
#  - revoked through the API: the credential is 401 saying when
#  - no token or credential in havend's output or the database files
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/havend_lib.sh"
havend_need curl
STATE=$WORK/state
havend_trap

REPO=$WORK/repo
expect_rc 0 "haven init" haven -r "$REPO" init
havend_repo_password
havend_token admin it-admin
havend_token auditor it-auditor
havend_start first --repository "main=$REPO" --password-file "$WORK/pw"
FP=$(sed -n 's/^certificate SHA-256 fingerprint: //p' "$WORK/first.out")
[ -n "$FP" ] || fail "no fingerprint line: $(cat "$WORK/first.out")"
CURL=(curl -sS --max-time 20 --cacert "$STATE/cert.pem")
# call METHOD PATH [curl args...]: CODE, body in $WORK/body.
call() {
  local method=$1 path=$2
  shift 2
  local data=()
  [ "$method" = GET ] || data=(--data-binary "${BODY:-{\}}")
  CODE=$("${CURL[@]}" -X "$method" -o "$WORK/body" -w '%{http_code}' \
    "${data[@]}" "$@" "$URL$path")
}

# ---------------------------------------------------------------- the token, by CLI
if [ ! -e /etc/haven/havend.conf ]; then
  expect_rc 2 "enroll-token without a repository or config" \
    "$HAVEND" agent enroll-token --state-dir "$STATE"
  contains "$WORK/err" "--repository is required" "says what is missing"
fi
expect_rc 0 "enroll-token" "$HAVEND" agent enroll-token --state-dir "$STATE" \
  --repository main --name web1 --url "$URL"
TOKEN=$(sed -n 1p "$WORK/out")
[[ "$TOKEN" == havenenroll_* ]] || fail "token line: $(head -c 200 "$WORK/out")"
[ "$(sed -n 2p "$WORK/out")" = "haven agent enroll $URL --token $TOKEN --fingerprint $FP --name web1" ] ||
  fail "command line: $(sed -n 2p "$WORK/out")"
contains "$WORK/err" "shown only now" "enroll-token says what it made"
lacks "$WORK/err" "$TOKEN" "the token only on stdout"
ok "havend agent enroll-token prints the token and the command with havend's fingerprint $FP"

# ---------------------------------------------------------------- enroll, once
BODY="{\"token\":\"$TOKEN\",\"hostname\":\"web1.lan\",\"version\":\"0.1\"}" \
  call POST /api/v1/agent/enroll
[ "$CODE" = 201 ] || fail "enroll: HTTP $CODE $(cat "$WORK/body")"
[ "$(jget 'j["name"], j["kind"], j["repository"]' "$WORK/body")" = "('web1', 'guest', 'main')" ] ||
  fail "enroll answer: $(cat "$WORK/body")"
CRED=$(jget 'j["credential"]' "$WORK/body")
AGENT_ID=$(jget 'j["agent_id"]' "$WORK/body")
[[ "$CRED" == havenagent_* ]] || fail "credential: $(cat "$WORK/body")"
BODY="{\"token\":\"$TOKEN\",\"name\":\"web9\"}" call POST /api/v1/agent/enroll
[ "$CODE" = 401 ] || fail "second use: HTTP $CODE"
contains "$WORK/body" "used already" "second use says so"
contains "$WORK/body" "by agent web1" "second use names the agent"
ok "the token enrolls web1 once; a second use is 401 naming web1"

# ---------------------------------------------------------------- the credential
AGENT=(-H "Authorization: Bearer $CRED")
BODY='{"hostname":"web1.lan","version":"0.2"}' call POST /api/v1/agent/hello "${AGENT[@]}"
[ "$CODE" = 200 ] || fail "hello: HTTP $CODE $(cat "$WORK/body")"
[ "$(jget 'j["agent_id"]' "$WORK/body")" = "$AGENT_ID" ] || fail "hello: $(cat "$WORK/body")"
call GET /api/v1/agents "${AGENT[@]}"
[ "$CODE" = 403 ] || fail "agent on GET /agents: HTTP $CODE"
call GET /api/v1/agents -H @"$WORK/token.auditor"
[ "$CODE" = 200 ] || fail "GET /agents: HTTP $CODE"
[ "$(jget '[(a["name"], a["version"], a["address"], a["revoked"]) for a in j["agents"]]' "$WORK/body")" = \
  '[["web1", "0.2", "127.0.0.1", null]]' ] || fail "agents: $(cat "$WORK/body")"
call POST /api/v1/agent/hello -H @"$WORK/token.admin"
[ "$CODE" = 403 ] || fail "admin token on an agent route: HTTP $CODE"
ok "the credential says hello (version recorded) and is refused on the admin's routes"

# ---------------------------------------------------------------- revoke
call POST "/api/v1/agents/$AGENT_ID/revoke" -H @"$WORK/token.auditor"
[ "$CODE" = 403 ] || fail "revoke as auditor: HTTP $CODE"
call POST "/api/v1/agents/$AGENT_ID/revoke" -H @"$WORK/token.admin"
[ "$CODE" = 200 ] || fail "revoke: HTTP $CODE $(cat "$WORK/body")"
call POST /api/v1/agent/hello "${AGENT[@]}"
[ "$CODE" = 401 ] || fail "hello after revoke: HTTP $CODE"
contains "$WORK/body" "agent web1 was revoked on" "the refusal says when"
ok "revoked: the credential is 401 at once, saying when"

havend_stop first
for f in "$WORK/first.out" "$WORK/first.log" "$STATE"/havend.db*; do
  lacks "$f" "${TOKEN#havenenroll_}" "no enrollment token in $f"
  lacks "$f" "${CRED#havenagent_}" "no credential in $f"
done
ok "no token or credential in havend's output or its database"
echo "PASS ($PASS checks)"
