#!/usr/bin/env bash
# Off-site copies between two appliances (docs/copies.md): havend A and
# havend B in two network namespaces joined by a veth pair that this test
# makes and removes, each holding its own repository, speaking real TLS with
# the certificate pinned. A's data is real: a file backup of a copy of /etc
# and part of /usr on an ext4 file system made with mkfs, and an image
# backup of that file system's image. B's repository shares A's chunk-id
# keys (haven init --copy-params-from).
#  - a push sync job from A lands both points at B: B checks clean, and the
#    file and the image restored at B equal the source
#  - a second push sends no chunk
#  - after one more file backup at A with one file changed, a pull sync job
#    on B copies only that point and sends about the changed bytes
#  - tokens without the admin role get 403 on /api/v1/copy/* (a large
#    upload is refused before its body is read)
#  - a remote with a wrong fingerprint is refused (pinning)
#  - the remotes' tokens never appear in havend's logs, job records or
#    state database, and GET /api/v1/remotes never shows them
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/havend_lib.sh"
havend_need curl ip mkfs.ext4 sha256sum
[ "$(id -u)" = 0 ] || { echo "SKIP: network namespaces and loop mounts need root"; exit 0; }

RA=$WORK/repo-a
RB=$WORK/repo-b
STATE=$WORK/state-a  # agent_lib.sh's serve is not used: each site starts its own
. "$(dirname "$0")/agent_lib.sh"
NS_A=$APP
NS_B=$AGT
IP_A=$APP_IP
IP_B=$AGT_IP
MNT=$WORK/src
PID_A=
PID_B=
cleanup() {
  set +e
  local p
  for p in "$PID_A" "$PID_B"; do
    [ -n "$p" ] && { kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; }
  done
  mountpoint -q "$MNT" && { umount "$MNT" 2>/dev/null || umount -l "$MNT"; }
  agent_net_down
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------- helpers
# token SITE ROLE: an API token of ROLE at SITE (a or b), its header line in
# $WORK/token.SITE.ROLE and the bare token in $WORK/secret.SITE.ROLE (both
# 0600): from havend's stdout into files only, never argv or output.
token() {
  local site=$1 role=$2
  (
    umask 077
    set -o pipefail
    "$HAVEND" token create --state-dir "$WORK/state-$site" --role "$role" \
      --name "copy-$site-$role" 2>"$WORK/token.err" >"$WORK/secret.$site.$role"
  ) || fail "token create at $site: $(cat "$WORK/token.err")"
  grep -q '^haven_' "$WORK/secret.$site.$role" || fail "no token printed for $site $role"
  (umask 077 && sed 's/^/Authorization: Bearer /' "$WORK/secret.$site.$role" >"$WORK/token.$site.$role")
}

# start SITE NS REPO: havend for SITE inside NS on every address; sets
# PORT_<SITE> and FP_<SITE>, its pid in PID_<SITE>.
start() {
  local site=$1 ns=$2 repo=$3 pid
  ip netns exec "$ns" "$HAVEND" serve --state-dir "$WORK/state-$site" \
    --repository "main=$repo" --password-file "$WORK/pw" \
    --libvirt-uri test:///default --listen 0.0.0.0:0 \
    >"$WORK/havend-$site.out" 2>"$WORK/havend-$site.log" &
  pid=$!
  eval "PID_${site^^}=$pid"
  for _ in $(seq 150); do
    grep -q "listening on" "$WORK/havend-$site.out" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || fail "havend $site exited: $(cat "$WORK/havend-$site.log")"
    sleep 0.1
  done
  local port fp
  port=$(sed -n 's#^listening on https://[^ ]*:\([0-9]*\)/$#\1#p' "$WORK/havend-$site.out")
  fp=$(sed -n 's/^certificate SHA-256 fingerprint: //p' "$WORK/havend-$site.out")
  [ -n "$port" ] && [[ $fp == SHA256:* ]] || fail "havend $site: no port or fingerprint: $(cat "$WORK/havend-$site.out")"
  eval "PORT_${site^^}=$port FP_${site^^}=$fp"
}

# api SITE ROLE METHOD PATH [BODY-FILE]: curl inside SITE's namespace to its
# own havend; the answer in $WORK/resp, the status in CODE.
api() {
  local site=$1 role=$2 method=$3 path=$4 ns port
  if [ "$site" = a ]; then ns=$NS_A port=$PORT_A; else ns=$NS_B port=$PORT_B; fi
  local args=(-sS --max-time 120 --cacert "$WORK/state-$site/cert.pem" -H "@$WORK/token.$site.$role"
    -o "$WORK/resp" -w '%{http_code}' -X "$method")
  [ $# -ge 5 ] && args+=(-H 'Content-Type: application/json' --data-binary "@$5")
  CODE=$(ip netns exec "$ns" curl "${args[@]}" "https://127.0.0.1:$port$path") || CODE=000
}

# remote SITE NAME URL FP TOKEN-FILE: POST /api/v1/remotes at SITE; the
# token goes from its file into a body file, never argv.
remote() {
  py - "$2" "$3" "$4" "$5" >"$WORK/remote.json" <<'PYEOF'
import json, sys
print(json.dumps({"name": sys.argv[1], "url": sys.argv[2], "fingerprint": sys.argv[3],
                  "token": open(sys.argv[4]).read().strip()}))
PYEOF
  chmod 600 "$WORK/remote.json"
  api "$1" admin POST /api/v1/remotes "$WORK/remote.json"
  rm -f "$WORK/remote.json"
}

# sync SITE BODY: POST /api/v1/sync at SITE, waits for the job's end; the
# job in $WORK/job.json, its state in STATE_OF_JOB.
sync_job() {
  local site=$1 id s
  printf '%s' "$2" >"$WORK/sync.json"
  api "$site" admin POST /api/v1/sync "$WORK/sync.json"
  [ "$CODE" = 202 ] || fail "POST /api/v1/sync at $site: HTTP $CODE $(cat "$WORK/resp")"
  id=$(jget 'j["job"]' "$WORK/resp")
  for _ in $(seq 600); do
    api "$site" admin GET "/api/v1/jobs/$id"
    s=$(jget 'j["state"]' "$WORK/resp")
    case $s in queued | running) sleep 0.2 ;; *) break ;; esac
  done
  cp "$WORK/resp" "$WORK/job.json"
  JOB_ID=$id
  STATE_OF_JOB=$s
}
job() { jget "$1" "$WORK/job.json"; }

# ---------------------------------------------------------------- network
agent_net_up
ok "namespaces $NS_A ($IP_A) and $NS_B ($IP_B) joined by a veth pair"

# ---------------------------------------------------------------- data at A
truncate -s 512M "$WORK/src.fs"
mkfs.ext4 -q -F "$WORK/src.fs"
mkdir -p "$MNT"
mount -o loop "$WORK/src.fs" "$MNT" || fail "loop mount of the ext4 file system"
cp -a /etc "$MNT/etc"
real_files "$MNT/usr" $((60 << 20)) >/dev/null
ok "an ext4 file system made with mkfs holds a copy of /etc and $(du -sm "$MNT/usr" | cut -f1) MB of /usr"

expect_rc 0 "init A" haven -r "$RA" init
expect_rc 0 "A: backup files" haven -r "$RA" --json backup files "$MNT/etc" "$MNT/usr" --name tree
FILES_1=$(jget 'j["snapshot"]' "$WORK/out")
umount "$MNT"
expect_rc 0 "A: backup image" haven -r "$RA" --json backup image "$WORK/src.fs" --name fsimage
IMAGE_1=$(jget 'j["id"]' "$WORK/out")
[ ${#FILES_1} = 32 ] && [ ${#IMAGE_1} = 32 ] || fail "backups printed no point ids"
ok "A holds a file backup ($FILES_1) and an image backup ($IMAGE_1)"

expect_rc 0 "init B --copy-params-from A" haven -r "$RB" init --copy-params-from "$RA"
ok "B's repository shares A's chunk-id keys"

# ---------------------------------------------------------------- the two appliances
havend_repo_password
for site in a b; do
  mkdir -p "$WORK/state-$site"
  token "$site" admin
  token "$site" operator
  token "$site" auditor
done
start a "$NS_A" "$RA"
start b "$NS_B" "$RB"
URL_A=https://$IP_A:$PORT_A
URL_B=https://$IP_B:$PORT_B
ok "havend A at $URL_A, havend B at $URL_B"

# ---------------------------------------------------------------- roles
for role in operator auditor; do
  api a "$role" GET /api/v1/copy/info
  [ "$CODE" = 403 ] || fail "$role on /api/v1/copy/info: HTTP $CODE $(cat "$WORK/resp")"
  api a "$role" GET /api/v1/copy/points
  [ "$CODE" = 403 ] || fail "$role on /api/v1/copy/points: HTTP $CODE"
  printf '{"type":"data","ids":[]}' >"$WORK/ids.json"
  api a "$role" POST /api/v1/copy/chunks/read "$WORK/ids.json"
  [ "$CODE" = 403 ] || fail "$role on /api/v1/copy/chunks/read: HTTP $CODE"
done
head -c $((4 << 20)) /dev/urandom >"$WORK/big"
CODE=$(ip netns exec "$NS_A" curl -sS --max-time 60 --cacert "$WORK/state-a/cert.pem" \
  -H "@$WORK/token.a.operator" -H 'Content-Type: application/octet-stream' -o "$WORK/resp" \
  -w '%{http_code}' --data-binary "@$WORK/big" "https://127.0.0.1:$PORT_A/api/v1/copy/chunks/put") || CODE=000
[ "$CODE" = 403 ] || fail "an operator's 4 MiB upload to /copy/chunks/put: HTTP $CODE"
api a admin GET /api/v1/copy/info
[ "$CODE" = 200 ] || fail "admin on /api/v1/copy/info: HTTP $CODE $(cat "$WORK/resp")"
ok "operator and auditor tokens get 403 on /api/v1/copy/* (a large upload before its body is read); admin gets 200"

# ---------------------------------------------------------------- pinning
WRONG=SHA256:$(printf '%s' "$FP_B" | sha256sum | cut -c1-64 | tr a-f A-F | sed 's/../&:/g; s/:$//')
remote a wrongpin "$URL_B" "$WRONG" "$WORK/secret.b.admin"
[ "$CODE" = 201 ] || fail "POST remote wrongpin: HTTP $CODE $(cat "$WORK/resp")"
api a admin GET /api/v1/remotes/wrongpin/points
[ "$CODE" = 502 ] || fail "points of a remote with a wrong fingerprint: HTTP $CODE $(cat "$WORK/resp")"
contains "$WORK/resp" "not the pinned" "the pinning refusal"
sync_job a '{"remote": "wrongpin", "direction": "push"}'
[ "$STATE_OF_JOB" = failed ] || fail "a sync to a wrongly pinned remote: $STATE_OF_JOB $(cat "$WORK/job.json")"
contains "$WORK/job.json" "not the pinned" "the sync job's pinning refusal"
ok "a remote whose certificate is not the pinned one is refused (listing and sync job)"

# ---------------------------------------------------------------- (a) push A -> B
remote a siteb "$URL_B" "$FP_B" "$WORK/secret.b.admin"
[ "$CODE" = 201 ] || fail "POST remote siteb: HTTP $CODE $(cat "$WORK/resp")"
api a admin GET /api/v1/remotes
[ "$CODE" = 200 ] || fail "GET remotes: HTTP $CODE"
[ "$(jget '[r["token_set"] for r in j["remotes"] if r["name"] == "siteb"]' "$WORK/resp")" = '[true]' ] ||
  fail "GET remotes does not say siteb's token is set: $(cat "$WORK/resp")"
lacks "$WORK/resp" "$(cat "$WORK/secret.b.admin")" "GET /api/v1/remotes"
[ "$(stat -c %a "$WORK/state-a/remotes/siteb.token")" = 600 ] || fail "the remote's token file is not 0600"
api a admin GET /api/v1/remotes/siteb/points
[ "$CODE" = 200 ] || fail "siteb's points: HTTP $CODE $(cat "$WORK/resp")"
[ "$(jget 'len(j["points"])' "$WORK/resp")" = 0 ] || fail "B is not empty: $(cat "$WORK/resp")"

T0=$(date +%s)
sync_job a '{"remote": "siteb", "direction": "push"}'
[ "$STATE_OF_JOB" = succeeded ] || fail "push A -> B: $STATE_OF_JOB $(head -c 3000 "$WORK/job.json")"
[ "$(job 'j["result"]["points_copied"]')" = 2 ] || fail "push A -> B copied $(job 'j["result"]["points_copied"]') points, not 2"
SENT1=$(job 'j["result"]["bytes_sent"]')
ok "push sync job $JOB_ID from A to B: 2 points, $(job 'j["result"]["chunks_sent"]') chunks, $SENT1 bytes in $(($(date +%s) - T0)) s"

api a admin GET /api/v1/remotes/siteb/points
[ "$(jget 'sorted(p["id"] for p in j["points"])' "$WORK/resp")" = "$(py -c 'import json,sys; print(json.dumps(sorted(sys.argv[1:])))' "$FILES_1" "$IMAGE_1")" ] ||
  fail "B's points as A sees them: $(cat "$WORK/resp")"
expect_rc 0 "B: check" haven -r "$RB" check --read-data
expect_rc 0 "B: restore files" haven -r "$RB" restore files "$FILES_1" --to "$WORK/rb"
mount -o loop,ro "$WORK/src.fs" "$MNT"
diff -r --no-dereference "$MNT/etc" "$WORK/rb$MNT/etc" >/dev/null || fail "the tree restored at B differs from the source"
F=$(cd "$MNT" && find usr -type f -size +100k | sort | head -1)
same_file "$MNT/$F" "$WORK/rb$MNT/$F" "a file restored at B"
umount "$MNT"
expect_rc 0 "B: restore image" haven -r "$RB" restore image "$IMAGE_1" --to "$WORK/rb.img"
same_file "$WORK/src.fs" "$WORK/rb.img" "the image restored at B"
rm -rf "$WORK/rb" "$WORK/rb.img"
ok "B checks clean (all data read); /etc, $F and the file system image restored at B equal the source"

# ---------------------------------------------------------------- (b) again: nothing to send
# The second push is a schedule's, run now.
printf '%s' '{"name": "offsite", "calendar": "daily", "kind": "sync", "repository": "main",
  "params": {"remote": "nosuch", "direction": "push"}}' >"$WORK/sched.json"
api a admin POST /api/v1/schedules "$WORK/sched.json"
[ "$CODE" = 400 ] || fail "a sync schedule naming no remote: HTTP $CODE $(cat "$WORK/resp")"
sed -i 's/"nosuch"/"siteb"/' "$WORK/sched.json"
api a admin POST /api/v1/schedules "$WORK/sched.json"
[ "$CODE" = 201 ] || fail "a sync schedule: HTTP $CODE $(cat "$WORK/resp")"
SCHED=$(jget 'j["id"]' "$WORK/resp")
printf '{}' >"$WORK/empty.json"
api a admin POST "/api/v1/schedules/$SCHED/run" "$WORK/empty.json"
[ "$CODE" = 202 ] || fail "run the sync schedule: HTTP $CODE $(cat "$WORK/resp")"
JOB_ID=$(jget 'j["job"]' "$WORK/resp")
for _ in $(seq 600); do
  api a admin GET "/api/v1/jobs/$JOB_ID"
  case $(jget 'j["state"]' "$WORK/resp") in queued | running) sleep 0.2 ;; *) break ;; esac
done
cp "$WORK/resp" "$WORK/job.json"
[ "$(job 'j["state"]')" = succeeded ] || fail "second push: $(head -c 3000 "$WORK/job.json")"
[ "$(job 'j["result"]["chunks_sent"]')" = 0 ] || fail "a second push sent chunks: $(job 'j["result"]')"
[ "$(job 'j["result"]["points_copied"]')" = 0 ] || fail "a second push copied points: $(job 'j["result"]')"
ok "a second push (schedule $SCHED of kind sync, run now: job $JOB_ID) sends 0 chunks; both points are present at B"

# ---------------------------------------------------------------- (c) one changed file, pulled by B
mount -o loop "$WORK/src.fs" "$MNT"
CHANGED=$(cd "$MNT" && find usr -type f -size +1M | sort | head -1)
[ -n "$CHANGED" ] || fail "no file over 1 MB to change"
random_file "$MNT/$CHANGED" $((8 << 20))
CHANGED_BYTES=$((8 << 20))
expect_rc 0 "A: second backup files" haven -r "$RA" --json backup files "$MNT/etc" "$MNT/usr" --name tree
FILES_2=$(jget 'j["snapshot"]' "$WORK/out")
umount "$MNT"
remote b sitea "$URL_A" "$FP_A" "$WORK/secret.a.admin"
[ "$CODE" = 201 ] || fail "POST remote sitea at B: HTTP $CODE $(cat "$WORK/resp")"
# A dry run first: it says what it would send (sizes from A's index) and
# sends nothing.
sync_job b '{"remote": "sitea", "direction": "pull", "dry_run": true}'
[ "$STATE_OF_JOB" = succeeded ] || fail "dry-run pull: $STATE_OF_JOB $(head -c 3000 "$WORK/job.json")"
[ "$(job 'j["result"]["points_to_copy"]')" = 1 ] || fail "the dry run would not copy one point: $(job 'j["result"]')"
DRY=$(job 'j["result"]["bytes_sent"]')
[ "$DRY" -ge "$CHANGED_BYTES" ] || fail "the dry run would send $DRY bytes, fewer than the $CHANGED_BYTES changed"
expect_rc 0 "B: points after the dry run" haven -r "$RB" --json snapshots
lacks "$WORK/out" "$FILES_2" "B's points after a dry run"
ok "a dry-run pull says it would copy 1 point, $DRY bytes, and copies nothing"
# Bytes on the wire: what B's end of the veth pair received during the
# pull (TLS, HTTP and the questions' answers included; the test's own API
# calls go over each namespace's loopback).
rx() { ip netns exec "$NS_B" cat "/sys/class/net/$VB/statistics/rx_bytes"; }
RX0=$(rx)
sync_job b '{"remote": "sitea", "direction": "pull"}'
WIRE=$(($(rx) - RX0))
[ "$STATE_OF_JOB" = succeeded ] || fail "pull A -> B: $STATE_OF_JOB $(head -c 3000 "$WORK/job.json")"
[ "$(py -c "print($WIRE <= 1.1 * $CHANGED_BYTES)")" = True ] ||
  fail "the pull received $WIRE bytes on the wire for $CHANGED_BYTES changed bytes (more than 1.1x)"
[ "$(job '[p["id"] for p in j["result"]["points"] if p["outcome"] == "copied"]')" = "[\"$FILES_2\"]" ] ||
  fail "the pull did not copy exactly the new point $FILES_2: $(job 'j["result"]["points"]')"
SENT=$(job 'j["result"]["bytes_sent"]')
[ "$(py -c "print($SENT <= 1.1 * $CHANGED_BYTES)")" = True ] ||
  fail "the pull sent $SENT bytes for $CHANGED_BYTES changed bytes (more than 1.1x)"
expect_rc 0 "B: check after the pull" haven -r "$RB" check
expect_rc 0 "B: restore the changed file" haven -r "$RB" restore files "$FILES_2" "$MNT/$CHANGED" --to "$WORK/rc"
mount -o loop,ro "$WORK/src.fs" "$MNT"
same_file "$MNT/$CHANGED" "$WORK/rc$MNT/$CHANGED" "the changed file restored at B"
umount "$MNT"
ok "B's pull job $JOB_ID copies only the new point: $SENT bytes of chunks, $WIRE bytes on the wire, for $CHANGED_BYTES changed ($(job 'j["result"]["chunks_sent"]') chunks)"

# The command line reaches an appliance too: haven copy pushes A's newest
# image point into B over the veth pair (fingerprint and token from the
# environment, never argv).
mount -o loop "$WORK/src.fs" "$MNT"
random_file "$MNT/cli-copy.bin" $((4 << 20))
umount "$MNT"
expect_rc 0 "A: third image backup" haven -r "$RA" --json backup image "$WORK/src.fs" --name fsimage
IMAGE_3=$(jget 'j["id"]' "$WORK/out")
expect_rc 0 "haven copy --to B" ip netns exec "$NS_A" env HAVEN_TO_FINGERPRINT="$FP_B" \
  HAVEN_TO_TOKEN_FILE="$WORK/secret.b.admin" "$HAVEN" --json -r "$RA" copy --to "$URL_B" fsimage:latest
[ "$(jget 'j["points_copied"]' "$WORK/out")" = 1 ] || fail "haven copy --to B: $(cat "$WORK/out")"
SENT_CLI=$(jget 'j["bytes_sent"]' "$WORK/out")
lacks "$WORK/err" "$(cat "$WORK/secret.b.admin")" "haven copy's messages"
expect_rc 0 "B: restore the CLI-copied image" haven -r "$RB" restore image "$IMAGE_3" --to "$WORK/img3.back"
same_file "$WORK/src.fs" "$WORK/img3.back" "the image haven copy sent to B"
ok "haven copy --to https://B (from A's namespace) sent $SENT_CLI bytes; the image restores at B byte for byte"

# ---------------------------------------------------------------- (f) tokens stay secret
ip netns exec "$NS_A" curl -sS --cacert "$WORK/state-a/cert.pem" -H "@$WORK/token.a.admin" \
  "https://127.0.0.1:$PORT_A/api/v1/jobs?limit=100" >"$WORK/jobs-a.json"
ip netns exec "$NS_B" curl -sS --cacert "$WORK/state-b/cert.pem" -H "@$WORK/token.b.admin" \
  "https://127.0.0.1:$PORT_B/api/v1/jobs?limit=100" >"$WORK/jobs-b.json"
for site in a b; do
  for id in $(jget '" ".join(str(x["id"]) for x in j["jobs"])' "$WORK/jobs-$site.json"); do
    api "$site" admin GET "/api/v1/jobs/$id"
    cat "$WORK/resp" >>"$WORK/records-$site"
    api "$site" admin GET "/api/v1/jobs/$id/log"
    cat "$WORK/resp" >>"$WORK/records-$site"
  done
  api "$site" admin GET "/api/v1/audit"
  cat "$WORK/resp" >>"$WORK/records-$site"
  # Every text in the state database (havend.db): the job history, the
  # audit log, the remotes table.
  py - "$WORK/state-$site/havend.db" >"$WORK/db-$site.txt" <<'PYEOF'
import sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
    for row in db.execute('SELECT * FROM "%s"' % name):
        print(name, *row)
PYEOF
done
for secret in "$WORK/secret.a.admin" "$WORK/secret.b.admin"; do
  for f in "$WORK"/havend-a.* "$WORK"/havend-b.* "$WORK"/records-* "$WORK"/db-*.txt "$WORK"/jobs-*.json; do
    lacks "$f" "$(cat "$secret")" "$(basename "$f")"
  done
done
ok "the remotes' tokens appear in no havend log, job record, audit row or state database table"

kill -TERM "$PID_A" "$PID_B"
wait "$PID_A" || fail "havend A did not stop cleanly"
wait "$PID_B" || fail "havend B did not stop cleanly"
PID_A= PID_B=
echo "$PASS passed, 0 failed"
