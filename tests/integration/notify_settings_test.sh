#!/usr/bin/env bash
# The console's settings API (issue 17) on a real havend over HTTPS on
# loopback, with a local SMTP sink (aiosmtpd) and an HTTP receiver:
#  - notification settings: none at first (a test is 409 in words); a PUT
#    of a webhook (with its secret) and SMTP takes effect without a restart:
#    the test notification arrives signed (openssl verifies) and as a mail,
#    and a job that ends afterwards is told through the new settings; the
#    secrets are in 0600 files, never in an answer, the log or the audit
#    log; the settings outlive a restart; a receiver that is down is
#    reported in words
#  - users: an admin makes a user, who logs in; a role change ends that
#    session; the last admin cannot be demoted; a delete ends the session;
#    an operator token is refused; every change is in the audit log
#  - usage over time: the repository measured at start is a sample in
#    GET /api/v1/repositories/main/usage
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/havend_lib.sh"
for c in curl openssl; do
  command -v "$c" >/dev/null || fail "$c is missing (scripts/install-deps.sh installs it)"
done
. "$(dirname "$0")/notify_lib.sh"

DPID=
cleanup() {
  set +e
  [ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------- receivers
# HTTP receiver (notify_hook.py): each POST saved as $WORK/hooks/N.json
# (path, headers, body). SMTP sink (notify_sink.py): each message saved as
# $WORK/mail/N.eml.
notify_hook
notify_sink "$WORK/mail" smtp
notify_wait "hook:HTTP receiver" "smtp:SMTP sink"
HOOK=http://127.0.0.1:$(cat "$WORK/hook.port")
SMTP=smtp://127.0.0.1:$(cat "$WORK/smtp.port")
SECRET="hook-secret-$RANDOM-xyz"
SMTPPASS="smtp-pass-$RANDOM-abc"

# ---------------------------------------------------------------- havend
notify_repo 1000000
STATE=$WORK/state
havend_tokens settings
CURL=(curl -sS --max-time 40 --cacert "$STATE/cert.pem")
# call ROLE METHOD PATH [BODY]: sets CODE; the answer in $WORK/body.
call() {
  local args=("${CURL[@]}" -H "@$WORK/token.$1" -o "$WORK/body" -w '%{http_code}' -X "$2")
  [ $# -ge 4 ] && args+=(-H 'Content-Type: application/json' --data-binary "$4")
  CODE=$("${args[@]}" "$URL$3")
}
havend_start d1 --repository main="$R" --password-file "$WORK/pw"

call admin GET /api/v1/settings/notifications
[ "$CODE" = 200 ] || fail "GET settings: HTTP $CODE $(cat "$WORK/body")"
[ "$(jget 'j["source"]' "$WORK/body")" = havend.conf ] || fail "source: $(cat "$WORK/body")"
[ "$(jget 'j["active"]["webhook"] or j["active"]["mail"]' "$WORK/body")" = false ] || fail "active: $(cat "$WORK/body")"
call auditor GET /api/v1/settings/notifications
[ "$CODE" = 403 ] || fail "auditor GET settings: HTTP $CODE"
call admin POST /api/v1/settings/notifications/test "{}"
[ "$CODE" = 409 ] || fail "test with nothing set: HTTP $CODE $(cat "$WORK/body")"
contains "$WORK/body" "set a webhook URL or an SMTP server first" "test with nothing set"
ok "no notifications at first: the test says what to set up (409); auditor refused"

# ---------------------------------------------------------------- PUT takes effect at once
call admin PUT /api/v1/settings/notifications "{\"webhook_url\":\"$HOOK/hook?token=URLTOKEN77\",\
\"webhook_secret\":\"$SECRET\",\"smtp_url\":\"$SMTP\",\"smtp_from\":\"haven@test.local\",\
\"smtp_to\":[\"ops@test.local\"],\"smtp_user\":\"\",\"smtp_password\":\"$SMTPPASS\",\
\"daily_report\":\"\",\"on_success\":true}"
[ "$CODE" = 200 ] || fail "PUT settings: HTTP $CODE $(cat "$WORK/body")"
lacks "$WORK/body" "$SECRET" "the webhook secret in the answer"
lacks "$WORK/body" "$SMTPPASS" "the SMTP password in the answer"
[ "$(jget 'j["webhook_secret"]["set"]' "$WORK/body")" = true ] || fail "secret set: $(cat "$WORK/body")"
[ "$(jget 'j["active"]["webhook"] and j["active"]["mail"]' "$WORK/body")" = true ] || fail "active: $(cat "$WORK/body")"
for f in notify-webhook-secret notify-smtp-password; do
  [ "$(stat -c %a "$STATE/$f")" = 600 ] || fail "$f is mode $(stat -c %a "$STATE/$f")"
done
[ "$(cat "$STATE/notify-webhook-secret")" = "$SECRET" ] || fail "secret file content"
h0=$(hooks)
m0=$(mails)
call admin POST /api/v1/settings/notifications/test "{}"
[ "$CODE" = 200 ] || fail "test: HTTP $CODE $(cat "$WORK/body")"
[ "$(jget 'j["sent"]' "$WORK/body")" = true ] || fail "test not sent: $(cat "$WORK/body")"
wait_for $((h0 + 1)) hooks
wait_for $((m0 + 1)) mails
H=$WORK/hooks/$((h0 + 1)).json
[ "$(jget 'j["headers"]["x-haven-event"]' "$H")" = test ] || fail "X-Haven-Event: $(cat "$H")"
verify_hook "$H"
contains "$WORK/body.json" "Test notification from havend" "the test webhook's summary"
contains "$WORK/body.json" "token:settings-admin" "who sent the test"
M=$WORK/mail/$((m0 + 1)).eml
contains "$M" "Subject: [haven] test notification from" "the test mail's subject"
ok "PUT notification settings: the test arrives at once as a signed webhook and a mail; secrets in 0600 files, not in the answer"

# A job that ends now is told through the new settings (on_success).
h0=$(hooks)
call operator POST /api/v1/repositories/main/check '{}'
[ "$CODE" = 202 ] || fail "check: HTTP $CODE $(cat "$WORK/body")"
job=$(jget 'j["job"]' "$WORK/body")
wait_for $((h0 + 1)) hooks
jget 'j["body"]' "$WORK/hooks/$((h0 + 1)).json" >"$WORK/jobhook"
[ "$(jget 'j["event"] + " " + str(j["job"]["id"])' "$WORK/jobhook")" = "job.succeeded $job" ] ||
  fail "job hook: $(cat "$WORK/jobhook")"
ok "a job that ends after the PUT is told through the new settings, without a restart"

# A receiver that is down: the test says so in words.
call admin PUT /api/v1/settings/notifications '{"webhook_url":"http://127.0.0.1:9/down","smtp_url":""}'
[ "$CODE" = 200 ] || fail "PUT down: HTTP $CODE $(cat "$WORK/body")"
call admin POST /api/v1/settings/notifications/test "{}"
[ "$CODE" = 200 ] || fail "test down: HTTP $CODE $(cat "$WORK/body")"
[ "$(jget 'j["sent"]' "$WORK/body")" = false ] || fail "sent to a dead port: $(cat "$WORK/body")"
err=$(jget 'j["results"][0]["error"]' "$WORK/body")
[ -n "$err" ] && [ "$err" != None ] || fail "no error in words: $(cat "$WORK/body")"
call admin PUT /api/v1/settings/notifications '{"smtp_url":"http://x"}'
[ "$CODE" = 400 ] || fail "bad smtp_url: HTTP $CODE"
contains "$WORK/body" "smtp_url must be an smtp:// or smtps:// URL" "bad smtp_url in words"
ok "a receiver that is down is reported in words ($err); a bad field is named"

# ---------------------------------------------------------------- users
ADMINPW='integration admin password'
printf '%s\n' "$ADMINPW" | "$HAVEND" admin password --state-dir "$STATE" 2>"$WORK/err" ||
  fail "admin password: $(cat "$WORK/err")"
USERPW='alice long password 1'
call admin POST /api/v1/users "{\"name\":\"alice\",\"role\":\"operator\",\"password\":\"$USERPW\"}"
[ "$CODE" = 201 ] || fail "make alice: HTTP $CODE $(cat "$WORK/body")"
call operator GET /api/v1/users
[ "$CODE" = 403 ] || fail "operator lists users: HTTP $CODE"
# alice logs in; her session works until her role changes.
"${CURL[@]}" -c "$WORK/jar" -o "$WORK/login" -H 'Content-Type: application/json' \
  --data-binary "{\"user\":\"alice\",\"password\":\"$USERPW\"}" "$URL/api/v1/login"
[ "$(jget 'j["role"]' "$WORK/login")" = operator ] || fail "alice login: $(cat "$WORK/login")"
me() { "${CURL[@]}" -b "$WORK/jar" -o /dev/null -w '%{http_code}' "$URL/api/v1/me"; }
[ "$(me)" = 200 ] || fail "alice's session"
call admin GET /api/v1/users
[ "$(jget '[u["name"] + ":" + u["role"] + ":" + str(u["sessions"]) for u in j["users"]]' "$WORK/body")" = \
  '["admin:admin:0", "alice:operator:1"]' ] || fail "users: $(cat "$WORK/body")"
call admin PUT /api/v1/users/alice '{"role":"auditor"}'
[ "$CODE" = 200 ] || fail "alice auditor: HTTP $CODE $(cat "$WORK/body")"
[ "$(me)" = 401 ] || fail "alice's session outlived her role change"
call admin PUT /api/v1/users/admin '{"role":"operator"}'
[ "$CODE" = 409 ] || fail "demote the last admin: HTTP $CODE"
contains "$WORK/body" "admin is the last admin" "last admin in words"
call admin DELETE /api/v1/users/admin
[ "$CODE" = 409 ] || fail "delete the last admin: HTTP $CODE"
"${CURL[@]}" -c "$WORK/jar" -o "$WORK/login" -H 'Content-Type: application/json' \
  --data-binary "{\"user\":\"alice\",\"password\":\"$USERPW\"}" "$URL/api/v1/login"
[ "$(me)" = 200 ] || fail "alice's new session"
call admin DELETE /api/v1/users/alice
[ "$CODE" = 200 ] || fail "delete alice: HTTP $CODE $(cat "$WORK/body")"
[ "$(me)" = 401 ] || fail "alice's session outlived her account"
call admin GET '/api/v1/audit?limit=50'
jget '"\n".join(e["method"] + " " + e["path"] + " " + str(e["status"]) for e in j["entries"])' \
  "$WORK/body" >"$WORK/audit"
for line in "PUT /api/v1/users/alice 200" "DELETE /api/v1/users/alice 200" "POST /api/v1/users 201" \
  "PUT /api/v1/users/admin 409" "PUT /api/v1/settings/notifications 200" \
  "POST /api/v1/settings/notifications/test 200"; do
  grep -qxF "$line" "$WORK/audit" || fail "audit lacks '$line': $(cat "$WORK/body")"
done
ok "users: made, logged in, role change and delete end the session, the last admin stays; all audited"

# ---------------------------------------------------------------- usage over time
for _ in $(seq 100); do
  call auditor GET '/api/v1/repositories/main/usage?days=1'
  [ "$CODE" = 200 ] || fail "usage: HTTP $CODE $(cat "$WORK/body")"
  [ "$(jget 'len(j["samples"])' "$WORK/body")" -ge 1 ] && break
  sleep 0.2
done
[ "$(jget 'j["samples"][0]["points"]' "$WORK/body")" = 1 ] || fail "usage sample: $(cat "$WORK/body")"
[ "$(jget 'j["samples"][0]["stored_bytes"] > 0' "$WORK/body")" = true ] || fail "stored: $(cat "$WORK/body")"
call auditor GET '/api/v1/repositories/nope/usage'
[ "$CODE" = 404 ] || fail "usage of an unknown repository: HTTP $CODE"
ok "usage over time: the repository measured at start is a sample"

# ---------------------------------------------------------------- restart
havend_stop d1
havend_start d2 --repository main="$R" --password-file "$WORK/pw"
call admin GET /api/v1/settings/notifications
[ "$(jget 'j["source"] + " " + j["webhook_url"]' "$WORK/body")" = "api http://127.0.0.1:9/down" ] ||
  fail "settings after restart: $(cat "$WORK/body")"
[ "$(jget 'j["active"]["webhook"]' "$WORK/body")" = true ] || fail "webhook after restart"
call auditor GET '/api/v1/repositories/main/usage?days=1'
[ "$(jget 'len(j["samples"])' "$WORK/body")" = 1 ] || fail "samples after restart (one per 10 min): $(cat "$WORK/body")"
havend_stop d2
for f in "$WORK"/d1.log "$WORK"/d2.log "$WORK"/d1.out; do
  lacks "$f" "$SECRET" "the webhook secret in havend's output"
  lacks "$f" "$SMTPPASS" "the SMTP password in havend's output"
  lacks "$f" "URLTOKEN77" "the webhook URL's token in havend's output"
  lacks "$f" "$USERPW" "a user's password in havend's output"
done
lacks "$STATE/havend.db" "$SECRET" "the webhook secret in the state database"
ok "settings outlive a restart; no secret or password in havend's log or database"
echo "notify_settings_test: $PASS checks passed"
