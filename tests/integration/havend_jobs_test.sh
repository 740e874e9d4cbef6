#!/usr/bin/env bash
# havend's jobs over real HTTPS on loopback, with real role tokens, and a
# real libvirtd + QEMU host of 2 running VMs (issue 16, points 2, 5 and 6):
# (a) POST /api/v1/backups of both VMs: 202 with a job id; the job ends
#     succeeded with one item per VM (outcome ok, bytes read / new / stored
#     > 0, the point's id) and its log; `haven snapshots` shows those points;
#     an SSE client on /api/v1/events saw the job's progress events (phase,
#     item, bytes, rate, ETA) and its state changes queued -> running ->
#     succeeded; a bad request is 400 naming the field; forget/gc/check
#     through the API run as jobs; each route refuses a role below its own
# (b) with a pause in each VM's backup (test hook): a second job on the same
#     repository waits with a queue_reason and, cancelled, never runs; the
#     running one, cancelled through the API, ends cancelled and leaves no
#     new point
# (c) kill -9 of havend during a backup: after the restart the job shows
#     interrupted (ended_at, log line), `haven check` is clean, and a new
#     backup through the API aborts the libvirt job the killed process left
#     on the VM and succeeds
# (d) history survives restarts: every earlier job is listed with its state,
#     items and log
# Skips (exit 0) only when libvirtd cannot be started here; with CI or
# HAVEN_REQUIRE_LIBVIRT=1 in the environment that is a failure instead.
. "$(dirname "$0")/libvirt_lib.sh" curl
. "$(dirname "$0")/havend_lib.sh"

T=hjob-$$
NET=$T-net
VMS=("$T-1" "$T-2")
DPID=
SSE=
chmod 711 "$WORK"
cleanup() {
  set +e
  [ -n "$SSE" ] && { kill "$SSE" 2>/dev/null; wait "$SSE" 2>/dev/null; }
  [ -n "$DPID" ] && { kill -9 "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null; }
  haven_cleanup_vm "${VMS[@]}"
  haven_cleanup_network "$NET"
  rm -rf "$WORK"
}
trap cleanup EXIT

R=$WORK/repo STATE=$WORK/state PWF=$WORK/passphrase VMDIR=$WORK/vms
hv() { "$HAVEN" -r "$R" "$@"; }
vsh() { virsh -q -c qemu:///system "$@"; }
printf '%s\n' "$HAVEN_PASSWORD" >"$PWF"
chmod 600 "$PWF"
expect_rc 0 "init" hv init --chunk-size 64K
haven_make_network "$NET" "hjb$$" || fail "could not create network $NET"
for vm in "${VMS[@]}"; do
  HAVEN_VM_VDA_SIZE=64M HAVEN_VM_VDB_SIZE=32M haven_make_vm "$vm" "$VMDIR" "$NET" ||
    fail "could not create VM $vm"
  haven_guest_write "$vm" 0 random:7 1M 4M || fail "write on $vm"
  haven_guest_write "$vm" 1 0x5a 2M 2M || fail "write on $vm vdb"
done
ok "2 VMs running on network $NET"
havend_tokens jobs

# start_havend NAME [VAR=VALUE...]: havend_start with the repository "main"
# and the environment VAR=VALUE.
start_havend() {
  local name=$1
  shift
  HAVEND_ENV=("$@")
  havend_start "$name" --repository "main=$R" --password-file "$PWF"
}
stop_havend() { havend_stop "$@"; }
CURL=(curl -sS --max-time 20 --cacert "$STATE/cert.pem")
# api METHOD PATH [BODY]: as the role $AS (default operator); the response
# body in $WORK/resp, the status in CODE.
AS=operator
api() {
  local body=()
  [ "$AS" = none ] || body=(-H "@$WORK/token.$AS")
  [ $# -ge 3 ] && body+=(-H 'content-type: application/json' --data-binary "$3")
  [ "$1" = POST ] && [ $# -lt 3 ] && body+=(--data-binary '{}')
  CODE=$("${CURL[@]}" -X "$1" -o "$WORK/resp" -w '%{http_code}' "${body[@]}" "$URL$2")
}
# submit PATH BODY: POSTs and sets JOB to the id of the job it queued.
submit() {
  api POST "$1" "$2"
  [ "$CODE" = 202 ] || fail "POST $1 $2: HTTP $CODE $(cat "$WORK/resp")"
  JOB=$(jget 'j["job"]' "$WORK/resp")
}
# job_field ID EXPR: EXPR over the job's JSON (j).
job_field() {
  api GET "/api/v1/jobs/$1"
  [ "$CODE" = 200 ] || fail "GET job $1: HTTP $CODE $(cat "$WORK/resp")"
  jget "$2" "$WORK/resp"
}
# wait_job ID STATE [SECONDS]: waits until the job has ended (or is in
# STATE) and fails unless it is in STATE.
wait_job() {
  local s
  for _ in $(seq $((${3:-300} * 5))); do
    s=$(job_field "$1" 'j["state"]')
    [ "$s" = "$2" ] && return 0
    case $s in queued | running) sleep 0.2 ;; *) break ;; esac
  done
  fail "job $1 is $s, expected $2: $(head -c 3000 "$WORK/resp")"
}
npoints() { hv --json snapshots --name "$1" | jget 'len(j)'; }
# job_on_vm VM: waits until libvirt shows a backup job on VM.
job_on_vm() {
  for _ in $(seq 300); do
    [[ "$(vsh domjobinfo "$1" 2>/dev/null || true)" == *Backup* ]] && return 0
    sleep 0.1
  done
  fail "no backup job on $1 came up"
}

# ----------------------------------------------- (a) a backup through the API
start_havend a
"${CURL[@]}" --max-time 600 -N -H "@$WORK/token.auditor" \
  "$URL/api/v1/events" >"$WORK/sse.txt" 2>"$WORK/sse.err" &
SSE=$!
sleep 0.5
api POST /api/v1/backups '{"vms": ["'"${VMS[0]}"'"], "all": true}'
[ "$CODE" = 400 ] || fail "(a) all + vms: HTTP $CODE, expected 400"
contains "$WORK/resp" "not both" "(a) the 400 says what is wrong"
api POST /api/v1/backups '{"all": true, "paralel": 2}'
[ "$CODE" = 400 ] || fail "(a) a misspelt field: HTTP $CODE, expected 400"
contains "$WORK/resp" "paralel" "(a) the 400 names the field"
api POST /api/v1/repositories/nosuch/check '{}'
[ "$CODE" = 404 ] || fail "(a) check of an unknown repository: HTTP $CODE"
# Roles: auditor reads, operator runs backups and checks, admin forget/gc.
AS=none api GET /api/v1/jobs
[ "$CODE" = 401 ] || fail "(a) no token: HTTP $CODE"
AS=auditor api POST /api/v1/backups '{"all": true}'
[ "$CODE" = 403 ] || fail "(a) auditor runs a backup: HTTP $CODE"
AS=auditor api GET /api/v1/jobs
[ "$CODE" = 200 ] || fail "(a) auditor lists jobs: HTTP $CODE"
for k in forget gc; do
  api POST /api/v1/repositories/main/$k '{"keep_last": 1}'
  [ "$CODE" = 403 ] || fail "(a) operator runs $k: HTTP $CODE"
done
AS=operator
submit /api/v1/backups '{"vms": ["'"${VMS[0]}"'", "'"${VMS[1]}"'"], "parallel": 2}'
A=$JOB
wait_job "$A" succeeded
cp "$WORK/resp" "$WORK/a.json"
[ "$(jget 'len(j["items"])' "$WORK/a.json")" = 2 ] || fail "(a) items: $(head -c 2000 "$WORK/a.json")"
for vm in "${VMS[@]}"; do
  it() { jget "(lambda i: $1)(next(i for i in j['items'] if i['name'] == '$vm'))" "$WORK/a.json"; }
  [ "$(it 'i["outcome"]')" = ok ] || fail "(a) $vm: $(it 'i')"
  for f in read_bytes new_bytes stored_bytes; do
    [ "$(it "i['$f'] > 0")" = true ] || fail "(a) $vm: $f is $(it "i['$f']")"
  done
  [ "$(npoints "$vm")" = 1 ] || fail "(a) haven snapshots shows $(npoints "$vm") points of $vm"
  snap=$(it 'i["detail"]["snapshot"]')
  [ "$(hv --json snapshots --name "$vm" | jget 'j[0]["id"]')" = "$snap" ] ||
    fail "(a) $vm's point is not the job's $snap"
done
[ "$(jget 'j["read_bytes"] == sum(i["read_bytes"] for i in j["items"])' "$WORK/a.json")" = true ] ||
  fail "(a) the job's read_bytes is not the sum of its items'"
api GET "/api/v1/jobs/$A/log"
for line in "queued by token:jobs-operator" "started" "${VMS[0]}: ok" "ended: succeeded"; do
  contains "$WORK/resp" "$line" "(a) the job's log"
done
sleep 1
kill "$SSE" 2>/dev/null || true
wait "$SSE" 2>/dev/null || true
SSE=
# The stream's events of job A: types, states in order, progress fields.
py - "$WORK/sse.txt" "$A" >"$WORK/sse.sum" <<'EOF' || fail "(a) SSE: $(cat "$WORK/sse.sum") $(head -c 3000 "$WORK/sse.txt")"
import json, sys
text, job = open(sys.argv[1]).read(), int(sys.argv[2])
states, progress = [], []
for block in text.split("\n\n"):
    lines = block.split("\n")
    ev = [l[7:] for l in lines if l.startswith("event: ")]
    data = [l[6:] for l in lines if l.startswith("data: ")]
    if not ev or not data: continue
    d = json.loads(data[0])
    if d.get("id") != job: continue
    if ev[0] == "state": states.append(d["state"])
    if ev[0] == "progress": progress.append(d)
assert states == ["queued", "running", "succeeded"], states
assert progress, "no progress event"
for k in ("phase", "item", "done_bytes", "total_bytes", "bytes_per_second", "eta_seconds", "items_done", "items_running"):
    assert k in progress[-1], k
assert any(p["done_bytes"] > 0 for p in progress), progress[-1]
print(len(progress), "progress events, last", json.dumps(progress[-1]))
EOF
ok "(a) backup job $A through the API: 2 VMs ok with bytes and points that haven snapshots shows; SSE: $(cut -c1-60 "$WORK/sse.sum")...; bad requests 400 naming the field"

submit /api/v1/repositories/main/check '{"read_data_percent": 100}'
wait_job "$JOB" succeeded
[ "$(job_field "$JOB" 'j["result"]["packs_read"] > 0')" = true ] || fail "(a) check read no pack"
AS=admin
submit /api/v1/repositories/main/forget '{"keep_last": 5, "dry_run": true}'
wait_job "$JOB" succeeded
[ "$(job_field "$JOB" 'j["result"]["kept"]')" = 2 ] || fail "(a) forget dry run: $(cat "$WORK/resp")"
submit /api/v1/repositories/main/gc '{"dry_run": true}'
wait_job "$JOB" succeeded
AS=operator
ok "(a) check (all data read), forget (dry run) and gc (dry run) through the API; 401 without a token, 403 below each route's role"
stop_havend a

# -------------------------------------- (b) queued and running jobs cancelled
# Each VM's backup pauses 6 s once its libvirt job began (test hook).
start_havend b HAVEN_FAULT_VM_BACKUP_DELAY=6
N0=$(npoints "${VMS[0]}") N1=$(npoints "${VMS[1]}")
submit /api/v1/backups '{"all": true, "exclude": ["*"], "parallel": 1}'
wait_job "$JOB" succeeded  # every VM excluded: nothing to do, still a job
submit /api/v1/backups '{"vms": ["'"${VMS[0]}"'", "'"${VMS[1]}"'"], "parallel": 1}'
B=$JOB
submit /api/v1/repositories/main/check '{}'
Q=$JOB
job_on_vm "${VMS[0]}"
[ "$(job_field "$B" 'j["state"]')" = running ] || fail "(b) job $B is not running"
[ "$(job_field "$Q" 'j["queue_reason"]')" = "waiting: 1 job already running on repository main" ] ||
  fail "(b) queued job's reason: $(cat "$WORK/resp")"
api POST "/api/v1/jobs/$Q/cancel"
[ "$CODE" = 202 ] || fail "(b) cancel of the queued job: HTTP $CODE $(cat "$WORK/resp")"
[ "$(job_field "$Q" '[j["state"], j["started_at"]]')" = '["cancelled", null]' ] ||
  fail "(b) the queued job after cancel: $(cat "$WORK/resp")"
api POST "/api/v1/jobs/$B/cancel"
[ "$CODE" = 202 ] || fail "(b) cancel of the running job: HTTP $CODE $(cat "$WORK/resp")"
wait_job "$B" cancelled 60
[ "$(jget '[i["outcome"] for i in j["items"]]' "$WORK/resp")" = '["cancelled", "cancelled"]' ] ||
  fail "(b) items of the cancelled job: $(head -c 2000 "$WORK/resp")"
contains "$WORK/resp" "cancelled by token:jobs-operator" "(b) who cancelled"
[ "$(npoints "${VMS[0]}") $(npoints "${VMS[1]}")" = "$N0 $N1" ] || fail "(b) the cancelled job left a point"
api POST "/api/v1/jobs/$B/cancel"
[ "$CODE" = 409 ] || fail "(b) cancel of an ended job: HTTP $CODE"
ok "(b) a queued job waits with its reason and, cancelled, never starts; the running backup cancelled through the API ends cancelled with no new point"

# ------------------------------------------------ (c) kill -9 during a backup
submit /api/v1/backups '{"vms": ["'"${VMS[1]}"'"]}'
C=$JOB
job_on_vm "${VMS[1]}"
kill -9 "$DPID"
wait "$DPID" 2>/dev/null || true
DPID=
start_havend c
contains "$WORK/c.log" "marked 1 job(s) interrupted" "(c) the start-up says it"
[ "$(job_field "$C" 'j["state"]')" = interrupted ] || fail "(c) job $C after the restart: $(cat "$WORK/resp")"
[ "$(jget 'j["ended_at"] is not None' "$WORK/resp")" = true ] || fail "(c) no ended_at"
api GET "/api/v1/jobs/$C/log"
contains "$WORK/resp" "interrupted: havend stopped while this job ran" "(c) the job's log"
expect_rc 0 "check after the kill" hv --json check --read-data
[ "$(jget 'j["ok"]' "$WORK/out")" = true ] ||
  fail "(c) check after the kill: $(head -c 2000 "$WORK/out")"
[ "$(npoints "${VMS[1]}")" = "$N1" ] || fail "(c) the killed backup left a point"
# The VM still runs the pull-backup job the killed havend began: the next
# backup aborts it (its owner is gone) and goes on.
submit /api/v1/backups '{"vms": ["'"${VMS[1]}"'"]}'
wait_job "$JOB" succeeded
[ "$(npoints "${VMS[1]}")" = $((N1 + 1)) ] || fail "(c) the next backup left no point"
api GET "/api/v1/jobs/$JOB/log"
contains "$WORK/resp" "aborted the backup job of ${VMS[1]} that a Haven process began and died with" \
  "(c) the leftover libvirt job is aborted and logged"
LEFT=$(jget '[l["text"] for l in j["lines"] if "died with" in l["text"]][0].split("(")[-1].rstrip(")")' "$WORK/resp")
[ -n "$LEFT" ] && [ ! -e "$LEFT" ] || fail "(c) the dead job's folder '$LEFT' is still there"
ok "(c) kill -9 mid-backup: job $C interrupted after the restart, check --read-data clean, the next backup through the API aborts the leftover libvirt job and succeeds"

# ------------------------------------------------ (d) history across restarts
stop_havend c
start_havend d
api GET "/api/v1/jobs?limit=100"
[ "$CODE" = 200 ] || fail "(d) list: HTTP $CODE"
for pair in "$A succeeded" "$B cancelled" "$Q cancelled" "$C interrupted"; do
  set -- $pair
  [ "$(jget "next(x['state'] for x in j['jobs'] if x['id'] == $1)" "$WORK/resp")" = "$2" ] ||
    fail "(d) job $1 is not listed $2: $(head -c 2000 "$WORK/resp")"
done
api GET "/api/v1/jobs?state=cancelled&kind=check"
[ "$(jget '[x["id"] for x in j["jobs"]]' "$WORK/resp")" = "[$Q]" ] || fail "(d) filter: $(cat "$WORK/resp")"
api GET "/api/v1/jobs?limit=2"
next=$(jget 'j["next_before"]' "$WORK/resp")
api GET "/api/v1/jobs?limit=2&before=$next"
[ "$(jget 'all(x["id"] < '"$next"' for x in j["jobs"]) and len(j["jobs"]) == 2' "$WORK/resp")" = true ] ||
  fail "(d) paging: $(cat "$WORK/resp")"
api GET "/api/v1/jobs?state=bogus"
[ "$CODE" = 400 ] || fail "(d) a bad state filter: HTTP $CODE"
[ "$(job_field "$A" 'len(j["items"])')" = 2 ] || fail "(d) job $A lost its items"
api GET "/api/v1/jobs/$A/log?after=1"
[ "$(jget 'j["lines"][0]["line"]' "$WORK/resp")" = 2 ] || fail "(d) log after=1: $(head -c 500 "$WORK/resp")"
contains "$WORK/resp" "ended: succeeded" "(d) job $A's log after restarts"
stop_havend d
ok "(d) history survives restarts: states, items, logs; filters and paging"

# Flags that do not pair up are usage errors.
run "$HAVEND" serve --state-dir "$STATE" --listen 127.0.0.1:0 --repository "x=$R"
[ "$RC" = 2 ] || fail "--repository without --password-file: exit $RC"
contains "$WORK/err" "one --password-file for each --repository" "the usage error says why"
ok "--repository needs its --password-file"
echo "$PASS passed, 0 failed"
