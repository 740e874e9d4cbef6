#!/usr/bin/env bash
# havend's notifications and /metrics (issue 16, points 7 and 8), with a
# local SMTP sink (aiosmtpd) and a local HTTP receiver on loopback:
#  - through the notifier (tests/tools/notify_send): a job failure arrives
#    as a webhook whose X-Haven-Signature openssl verifies against the
#    secret, and as a mail with the right Subject, Date, Message-ID and body;
#    a receiver that answers 500 is retried until it takes it (same event
#    id); a 410 is not retried; a receiver that never answers does not hold
#    up the mail or the caller; a success is told only with on_success; an
#    overdue VM and the daily report; STARTTLS with a login (and none
#    without TLS)
#  - through havend: a check job that fails and one that succeeds are told
#    by webhook and mail; GET /metrics serves the Prometheus text with the
#    jobs, their durations and the repository's usage; without credentials
#    /metrics is 401, with an auditor token 200; the daily report is mailed at its calendar event; a
#    job left running by a dead havend is told interrupted at the next start
#  - no secret, password or webhook URL token in any log
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/havend_lib.sh"
: "${NOTIFY_SEND:?NOTIFY_SEND must point at the notify_send test driver}"
for c in curl openssl; do
  command -v "$c" >/dev/null || fail "$c is missing (scripts/install-deps.sh installs it)"
done
. "$(dirname "$0")/notify_lib.sh"

cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------- receivers
# HTTP receiver (notify_hook.py): each request saved as $WORK/hooks/N.json
# (path, headers, body); /ok answers 204, /flaky 500 twice then 200, /gone
# 410, /hang never answers (sleeps 60 s).
notify_hook
# SMTP sinks (notify_sink.py): each message saved as DIR/N.eml with N.env
# (envelope and whether the session was TLS); the second offers STARTTLS,
# requires it, and requires AUTH (the login written to DIR/auth).
notify_sink "$WORK/mail" smtp
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -keyout "$WORK/smtp-key.pem" -out "$WORK/smtp-cert.pem" -subj /CN=localhost \
  -addext subjectAltName=IP:127.0.0.1,DNS:localhost 2>/dev/null
notify_sink "$WORK/tlsmail" tlssmtp "$WORK/smtp-cert.pem" "$WORK/smtp-key.pem"
notify_wait "hook:HTTP receiver" "smtp:SMTP sink" "tlssmtp:STARTTLS SMTP sink"
HOOK=http://127.0.0.1:$(cat "$WORK/hook.port")
SMTP=smtp://127.0.0.1:$(cat "$WORK/smtp.port")
TLSSMTP=smtp://127.0.0.1:$(cat "$WORK/tlssmtp.port")
SECRET="hook-secret-$RANDOM-xyz"
echo "$SECRET" >"$WORK/secret"
chmod 600 "$WORK/secret"

# mail_text N: message N with its quoted-printable body decoded.
mail_text() {
  py - "$WORK/mail/$1.eml" <<'PYEOF'
import email, sys
m = email.message_from_binary_file(open(sys.argv[1], "rb"))
for k, v in m.items():
    print("%s: %s" % (k, v))
print()
print(m.get_payload(decode=True).decode("utf-8"))
PYEOF
}
SEND=("$NOTIFY_SEND" --secret-file "$WORK/secret" --from haven@test.local --to ops@test.local)

# ---------------------------------------------------------------- a job failure, both ways
run "${SEND[@]}" --webhook-url "$HOOK/ok?token=URLTOKEN123" --smtp-url "$SMTP" --state failed
[ "$RC" = 0 ] || fail "notify_send: $(cat "$WORK/err")"
[ "$(jget 'j["sent"]' "$WORK/out")" = 2 ] || fail "not both sent: $(cat "$WORK/out") $(cat "$WORK/err")"
wait_for 1 hooks
wait_for 1 mails
H=$WORK/hooks/1.json
verify_hook "$H"
[ "$(jget 'j["path"]' "$H")" = /ok ] || fail "webhook path"
[ "$(jget 'j["headers"]["x-haven-event"]' "$H")" = job.failed ] || fail "X-Haven-Event: $(cat "$H")"
[ "$(jget 'j["headers"]["content-type"]' "$H")" = application/json ] || fail "content type"
B=$WORK/body.json
[ "$(jget 'j["event"]' "$B")" = job.failed ] || fail "event: $(cat "$B")"
[ "$(jget 'j["job"]["id"]' "$B")" = 42 ] || fail "job id: $(cat "$B")"
[ "$(jget 'j["job"]["kind"] + " " + j["job"]["repository"] + " " + j["job"]["state"]' "$B")" = "backup main failed" ] ||
  fail "job fields: $(cat "$B")"
[ "$(jget 'j["job"]["items"][1]["name"]' "$B")" = $'db\n1 "evil"' ] || fail "item name: $(cat "$B")"
[ "$(jget 'j["job"]["items"][1]["error"]' "$B")" = "disk vda: read error at 4096" ] || fail "item error"
[ "$(jget 'j["job"]["ended_at"]' "$B")" = 2026-12-07T02:12:04Z ] || fail "ended_at"
contains "$B" '"summary":"Backup job 42 (repository main) failed after 12m 03s: 1 of 2 VMs failed. Failed VMs (1 of 2): \"db\\x0a1 \\\"evil\\\"\" (failed: disk vda: read error at 4096)."' "summary"
lacks "$B" "http" "a link in the summary"
ok "job failure: webhook POST with job, items, times and summary; X-Haven-Signature = openssl HMAC-SHA256 over timestamp.body"

mail_text 1 >"$WORK/mail1.txt"
contains "$WORK/mail1.txt" "Subject: [haven] backup job 42 failed (repository main)" "subject"
contains "$WORK/mail1.txt" "From: haven@test.local" "From"
contains "$WORK/mail1.txt" "To: ops@test.local" "To"
grep -qE '^Date: [A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} 20[0-9]{2} [0-9:]{8} \+0000$' "$WORK/mail1.txt" ||
  fail "Date: $(grep Date "$WORK/mail1.txt")"
grep -qE '^Message-ID: <[0-9a-f]{24}\.[0-9]+@haven-test>$' "$WORK/mail1.txt" || fail "Message-ID"
contains "$WORK/mail1.txt" "Backup job 42 (repository main) failed after 12m 03s" "body summary"
contains "$WORK/mail1.txt" "  failed     db?1 \"evil\"" "item with its newline neutralized"
contains "$WORK/mail1.txt" "disk vda: read error at 4096" "item error"
[ "$(jget 'j["from"]' "$WORK/mail/1.env")" = haven@test.local ] || fail "MAIL FROM"
[ "$(jget 'j["to"]' "$WORK/mail/1.env")" = '["ops@test.local"]' ] || fail "RCPT TO"
for f in "$WORK/err" "$WORK/mail1.txt"; do
  lacks "$f" "$SECRET" "the webhook secret"
  lacks "$f" "URLTOKEN123" "the webhook URL's token"
done
ok "job failure: mail with Subject, Date, Message-ID, From/To and the per-VM outcome"

# ---------------------------------------------------------------- STARTTLS and login
SMTPPW="smtp-pass-$RANDOM-word"
echo "$SMTPPW" >"$WORK/smtppw"
chmod 600 "$WORK/smtppw"
run "${SEND[@]}" --smtp-url "$TLSSMTP" --smtp-user haven --password-file "$WORK/smtppw" \
  --ca-file "$WORK/smtp-cert.pem" --state failed
[ "$(jget 'j["sent"]' "$WORK/out")" = 1 ] || fail "STARTTLS + login: $(cat "$WORK/out") $(cat "$WORK/err")"
[ -s "$WORK/tlsmail/1.eml" ] || fail "no mail in the STARTTLS sink"
[ "$(jget 'j["tls"]' "$WORK/tlsmail/1.env")" = true ] || fail "the mail was not sent over TLS"
contains "$WORK/tlsmail/auth" "haven:$SMTPPW" "the login from the password file"
lacks "$WORK/err" "$SMTPPW" "the SMTP password in the log"
# A login never goes over a connection without TLS: the plain sink offers no
# STARTTLS, so nothing is sent (and no password).
m0=$(mails)
run "${SEND[@]}" --smtp-url "$SMTP" --smtp-user haven --password-file "$WORK/smtppw" \
  --retry-delays 0.1 --state failed
[ "$(jget '[j["sent"], j["given_up"]]' "$WORK/out")" = "[0, 1]" ] || fail "login without TLS: $(cat "$WORK/out")"
[ "$(mails)" = "$m0" ] || fail "a mail was sent with a login over plain SMTP"
contains "$WORK/err" "STARTTLS" "refusal names STARTTLS"
lacks "$WORK/err" "$SMTPPW" "the SMTP password in the log"
# The sink's certificate is not in the system's trust store.
run "${SEND[@]}" --smtp-url "$TLSSMTP" --smtp-user haven --password-file "$WORK/smtppw" \
  --retry-delays "" --state failed
[ "$(jget 'j["sent"]' "$WORK/out")" = 0 ] || fail "an unverified SMTP certificate was accepted"
[ "$(grep -c . "$WORK/tlsmail/auth")" = 1 ] || fail "the password went to an unverified server"
ok "smtp:// with STARTTLS and a login from a password file; no login without TLS; an unknown certificate refused"

# ---------------------------------------------------------------- retries
run "${SEND[@]}" --webhook-url "$HOOK/flaky?token=URLTOKEN123" --retry-delays 0.3,0.3,0.3 --state partial
[ "$RC" = 0 ] || fail "notify_send: $(cat "$WORK/err")"
[ "$(jget '[j["sent"], j["retried"], j["given_up"]]' "$WORK/out")" = "[1, 2, 0]" ] ||
  fail "flaky receiver: $(cat "$WORK/out")"
ids=$(for f in 2 3 4; do jget 'j["body"]' "$WORK/hooks/$f.json" | jget 'j["id"]'; done | sort -u | wc -l)
[ "$ids" = 1 ] || fail "the retries carry $ids different event ids"
for f in 2 3 4; do verify_hook "$WORK/hooks/$f.json"; done
contains "$WORK/err" "attempt 1 failed: HTTP 500; next attempt in" "retry logged"
contains "$WORK/err" "delivered at attempt 3" "delivery logged"
lacks "$WORK/err" "URLTOKEN123" "the webhook URL's token in the log"
lacks "$WORK/err" "$SECRET" "the secret in the log"
ok "a receiver answering 500 is retried (2 retries, same event id, each attempt signed); the log names neither URL nor secret"

before=$(hooks)
run "${SEND[@]}" --webhook-url "$HOOK/gone" --retry-delays 0.2,0.2 --state failed
[ "$(jget '[j["sent"], j["retried"], j["given_up"]]' "$WORK/out")" = "[0, 0, 1]" ] ||
  fail "410 receiver: $(cat "$WORK/out")"
[ "$(hooks)" = $((before + 1)) ] || fail "410 was retried"
contains "$WORK/err" "HTTP 410; given up" "final refusal logged"
run "${SEND[@]}" --webhook-url "http://127.0.0.1:9/x" --retry-delays 0.1,0.1 --state failed
[ "$(jget '[j["sent"], j["retried"], j["given_up"]]' "$WORK/out")" = "[0, 2, 1]" ] ||
  fail "refused connection: $(cat "$WORK/out")"
contains "$WORK/err" "notify webhook 127.0.0.1:9: job.failed" "receiver named by host"
ok "HTTP 410 is final (one request); a closed port is tried 3 times, then given up"

# A receiver that never answers: the caller returns at once, the mail still
# arrives at once, and stopping does not wait for the webhook's timeout.
m0=$(mails)
start=$(date +%s.%N)
run "${SEND[@]}" --webhook-url "$HOOK/hang" --smtp-url "$SMTP" --timeout 30 --wait 2 --state failed
took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
[ "$RC" = 0 ] || fail "notify_send: $(cat "$WORK/err")"
awk -v e="$(jget 'j["enqueue_seconds"]' "$WORK/out")" 'BEGIN { exit !(e < 0.05) }' ||
  fail "queuing took $(jget 'j["enqueue_seconds"]' "$WORK/out") s"
[ "$(jget '[j["idle"], j["sent"]]' "$WORK/out")" = "[false, 1]" ] ||
  fail "hanging webhook: $(cat "$WORK/out")"
[ "$(mails)" = $((m0 + 1)) ] || fail "the mail did not arrive beside a hanging webhook"
awk -v t="$took" 'BEGIN { exit !(t < 6) }' || fail "stopping took $took s (webhook timeout 30 s)"
contains "$WORK/err" "attempt 1 aborted at stop, dropped" "drop at stop logged"
ok "a webhook receiver that never answers: queued in $(jget 'j["enqueue_seconds"]' "$WORK/out") s, the mail delivered meanwhile, stop in $took s"

# ---------------------------------------------------------------- success, overdue, daily report
before=$(hooks)
run "${SEND[@]}" --webhook-url "$HOOK/ok" --state succeeded
[ "$(jget 'j["sent"]' "$WORK/out")" = 0 ] || fail "success told without on_success"
run "${SEND[@]}" --webhook-url "$HOOK/ok" --state cancelled --on-success
[ "$(jget 'j["sent"]' "$WORK/out")" = 0 ] || fail "cancelled told"
run "${SEND[@]}" --webhook-url "$HOOK/ok" --state succeeded --on-success
[ "$(jget 'j["sent"]' "$WORK/out")" = 1 ] || fail "success not told with on_success"
[ "$(hooks)" = $((before + 1)) ] || fail "hooks: $(hooks), expected $((before + 1))"
verify_hook "$WORK/hooks/$(hooks).json"
[ "$(jget 'j["event"]' "$WORK/body.json")" = job.succeeded ] || fail "success event"
ok "success told only with on_success; cancelled never"

m0=$(mails)
run "${SEND[@]}" --webhook-url "$HOOK/ok" --smtp-url "$SMTP" --overdue web9
[ "$(jget 'j["sent"]' "$WORK/out")" = 2 ] || fail "overdue: $(cat "$WORK/out")"
wait_for $((m0 + 1)) mails
verify_hook "$WORK/hooks/$(hooks).json"
[ "$(jget 'j["event"] + " " + j["vm"]["name"] + " " + str(j["vm"]["expected_interval_seconds"])' "$WORK/body.json")" = "vm.overdue web9 86400" ] ||
  fail "overdue body: $(cat "$WORK/body.json")"
mail_text "$(mails)" >"$WORK/overdue.txt"
contains "$WORK/overdue.txt" "Subject: [haven] VM web9 overdue: no successful backup since" "overdue subject"
run "${SEND[@]}" --smtp-url "$SMTP" --daily-report
wait_for $((m0 + 2)) mails
mail_text "$(mails)" >"$WORK/daily.txt"
contains "$WORK/daily.txt" "Subject: [haven] daily report for haven-test: 1 jobs, 1 failed, 1 VMs overdue" "report subject"
contains "$WORK/daily.txt" "main: 12 points, 40.0 GiB logical, 5.0 GiB stored" "report usage"
contains "$WORK/daily.txt" "web2 in main: last success" "report overdue"
ok "overdue VM by webhook and mail; daily report mail with jobs, overdue VMs and usage"

# ---------------------------------------------------------------- through havend
notify_repo 3000000
echo "wrong-password" >"$WORK/badpw"
chmod 600 "$WORK/badpw"
STATE=$WORK/state
# start_havend NAME ARGS...: havend on 127.0.0.1 port 0; sets URL.
start_havend() {
  local name=$1
  shift
  "$HAVEND" serve --state-dir "$STATE" --listen 127.0.0.1:0 "$@" \
    >"$WORK/$name.out" 2>"$WORK/$name.log" &
  DPID=$!
  PIDS+=($DPID)
  for _ in $(seq 150); do
    grep -q "listening on" "$WORK/$name.out" 2>/dev/null && break
    kill -0 "$DPID" 2>/dev/null || fail "havend exited: $(cat "$WORK/$name.log")"
    sleep 0.1
  done
  URL=$(sed -n 's#^listening on \(https://127\.0\.0\.1:[0-9]*\)/$#\1#p' "$WORK/$name.out")
  [ -n "$URL" ] || fail "no 'listening on' line: $(cat "$WORK/$name.out")"
}
stop_havend() {
  kill -TERM "$DPID"
  wait "$DPID" || fail "havend exited $? after SIGTERM: $(tail -5 "$WORK/$1.log")"
}
CURL=(curl -sS --max-time 10 --cacert "$STATE/cert.pem")
# An operator runs the check jobs; Prometheus scrapes with an auditor token.
havend_token operator notify-operator
havend_token auditor prometheus
h0=$(hooks)
m0=$(mails)
start_havend d1 \
  --repository main="$R" --password-file "$WORK/pw" \
  --repository broken="$R" --password-file "$WORK/badpw" \
  --notify-webhook "$HOOK/ok?token=URLTOKEN123" --notify-webhook-secret-file "$WORK/secret" \
  --notify-smtp "$SMTP" --notify-from haven@test.local --notify-to ops@test.local \
  --notify-on-success
code=$("${CURL[@]}" -H "@$WORK/token.operator" -o "$WORK/r" -w '%{http_code}' -X POST -d '{}' "$URL/api/v1/repositories/broken/check")
[ "$code" = 202 ] || fail "check broken: HTTP $code $(cat "$WORK/r")"
wait_for $((h0 + 1)) hooks
wait_for $((m0 + 1)) mails
verify_hook "$WORK/hooks/$(hooks).json"
[ "$(jget 'j["event"] + " " + j["job"]["kind"] + " " + j["job"]["repository"]' "$WORK/body.json")" = "job.failed check broken" ] ||
  fail "havend's webhook: $(cat "$WORK/body.json")"
[ -n "$(jget 'j["job"]["error"]' "$WORK/body.json")" ] || fail "no error in the failed job's webhook"
mail_text "$(mails)" >"$WORK/havend-mail.txt"
job=$(jget 'j["job"]["id"]' "$WORK/body.json")
contains "$WORK/havend-mail.txt" "Subject: [haven] check job $job failed (repository broken)" "havend's mail subject"
code=$("${CURL[@]}" -H "@$WORK/token.operator" -o "$WORK/r" -w '%{http_code}' -X POST -d '{}' "$URL/api/v1/repositories/main/check")
[ "$code" = 202 ] || fail "check main: HTTP $code $(cat "$WORK/r")"
wait_for $((h0 + 2)) hooks
verify_hook "$WORK/hooks/$(hooks).json"
[ "$(jget 'j["event"] + " " + j["job"]["repository"]' "$WORK/body.json")" = "job.succeeded main" ] ||
  fail "havend's success webhook: $(cat "$WORK/body.json")"
ok "havend: a failed check job told by signed webhook and mail ('check job $job failed'), a succeeded one by webhook (on_success)"

# /metrics: the repository is measured after the job on it ended.
for _ in $(seq 100); do
  "${CURL[@]}" -H "@$WORK/token.auditor" -D "$WORK/mh" -o "$WORK/metrics" "$URL/metrics"
  grep -q '^haven_repository_points{repository="main"}' "$WORK/metrics" && break
  sleep 0.1
done
contains "$WORK/mh" "content-type: text/plain; version=0.0.4; charset=utf-8" "metrics content type"
for line in 'haven_jobs_total{kind="check",state="failed"} 1' \
  'haven_jobs_total{kind="check",state="succeeded"} 1' \
  'haven_job_duration_seconds_count{kind="check"} 2' \
  'haven_job_duration_seconds_bucket{kind="check",le="+Inf"} 2' \
  'haven_jobs_running 0' 'haven_jobs_queued 0' \
  'haven_repository_points{repository="main"} 1' \
  '# TYPE haven_vm_last_success_timestamp_seconds gauge'; do
  contains "$WORK/metrics" "$line" "/metrics"
done
stored=$(sed -n 's/^haven_repository_stored_bytes{repository="main"} //p' "$WORK/metrics")
want=$(find "$R/packs" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
[ "$stored" = "$want" ] || fail "stored bytes $stored, packs hold $want"
logical=$(sed -n 's/^haven_repository_logical_bytes{repository="main"} //p' "$WORK/metrics")
[ "$logical" = 3000000 ] || fail "logical bytes $logical"
rss=$(sed -n 's/^process_resident_memory_bytes //p' "$WORK/metrics")
[ "${rss:-0}" -gt 1000000 ] || fail "process RSS $rss"
ok "GET /metrics: text format 0.0.4 with jobs by kind/state, durations, repository usage ($stored stored of $logical logical bytes, 1 point), RSS $rss"
stop_havend d1
n=$(grep -c "repository broken: usage not measured" "$WORK/d1.log" || true)
[ "$n" = 1 ] || fail "the broken repository's usage failure logged $n times, expected once"
for f in "$WORK/d1.log" "$WORK/d1.out"; do
  lacks "$f" "$SECRET" "the webhook secret in havend's log"
  lacks "$f" "URLTOKEN123" "the webhook URL's token in havend's log"
  lacks "$f" "$HAVEN_PASSWORD" "the repository password in havend's log"
done

start_havend d2 --repository main="$R" --password-file "$WORK/pw"
code=$("${CURL[@]}" -o "$WORK/r" -w '%{http_code}' "$URL/metrics")
[ "$code" = 401 ] || fail "/metrics without credentials: HTTP $code"
code=$("${CURL[@]}" -H "@$WORK/token.auditor" -o "$WORK/metrics2" -w '%{http_code}' "$URL/metrics")
[ "$code" = 200 ] || fail "/metrics with an auditor token: HTTP $code $(cat "$WORK/metrics2")"
contains "$WORK/metrics2" 'haven_jobs_total{kind="check",state="failed"} 1' "/metrics with a token"
"${CURL[@]}" -o "$WORK/openapi.json" "$URL/api/v1/openapi.json"
[ "$(jget 'j["paths"]["/metrics"]["get"]["x-haven-role"]' "$WORK/openapi.json")" = auditor ] ||
  fail "openapi: /metrics role"
stop_havend d2
ok "/metrics without credentials 401, with an auditor token 200; openapi.json lists it for auditor; no secret in havend's logs"

# The daily report at its calendar event (every 2 s here), from the history
# the first havend left: the two check jobs and the repository's usage.
m0=$(mails)
start_havend d3 --repository main="$R" --password-file "$WORK/pw" \
  --notify-smtp "$SMTP" --notify-from haven@test.local --notify-to ops@test.local \
  --notify-daily-report '*:*:0/2'
wait_for $((m0 + 1)) mails
stop_havend d3
mail_text $((m0 + 1)) >"$WORK/report.txt"
contains "$WORK/report.txt" "Subject: [haven] daily report for " "report subject"
contains "$WORK/report.txt" ": 2 jobs, 1 failed, 0 VMs overdue" "report counts"
contains "$WORK/report.txt" "Jobs (2): 1 failed, 1 succeeded" "report jobs"
grep -qE "^ +$job +check +broken +failed " "$WORK/report.txt" || fail "report line of job $job: $(cat "$WORK/report.txt")"
contains "$WORK/report.txt" "  main: 1 points, " "report usage"
contains "$WORK/d3.log" "daily report mailed" "report logged"
ok "daily report mailed at its calendar event with the jobs of the last 24 h and the repository's usage"

# A job havend was running when it died (a row left "running", as kill -9
# leaves it): marked interrupted at the next start, and told.
py - "$STATE/havend.db" <<'PYEOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("INSERT INTO jobs (kind, repository, params, requested_by, state, "
           "queued_at, started_at) VALUES ('backup', 'main', '{}', 'test', "
           "'running', '2026-12-07T01:00:00Z', '2026-12-07T01:00:01Z')")
db.commit()
PYEOF
h0=$(hooks)
start_havend d4 --repository main="$R" --password-file "$WORK/pw" \
  --notify-webhook "$HOOK/ok" --notify-webhook-secret-file "$WORK/secret"
wait_for $((h0 + 1)) hooks
stop_havend d4
verify_hook "$WORK/hooks/$(hooks).json"
[ "$(jget 'j["event"] + " " + j["job"]["kind"] + " " + j["job"]["state"]' "$WORK/body.json")" = "job.interrupted backup interrupted" ] ||
  fail "interrupted at start: $(cat "$WORK/body.json")"
ok "a job left running by a dead havend is told as job.interrupted at the next start"

echo "notify_test: $PASS checks passed"
