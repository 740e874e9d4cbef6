#!/usr/bin/env bash
# Agents reporting to an appliance across a network (docs/agents.md): havend
# in one network namespace, agents in another, joined by a veth pair that
# this test makes and removes, speaking real TLS with the certificate
# pinned. The data is a copy of this machine's /etc and /usr on an ext4
# file system made with mkfs.
#  - a pinning mismatch is refused before the token is spent
#  - enrollment; a used token is refused in words
#  - agent A's backup lands, checks clean and restores byte-identical, both
#    through the agent (its own restore) and on the appliance
#  - B gets 403 on A's point and does not see it; B's "missing" answer for
#    A's chunk is byte-identical to its answer for bytes nobody stores
#  - a chunk uploaded under a wrong id is refused and nothing is stored
#  - an agent cannot forget points (403) and the point stays
#  - the link cut mid-upload, the agent killed mid-upload, havend killed
#    mid-upload: each ends in a complete point that checks clean, and the
#    rerun after the kill sends less than the whole again
#  - a revoked agent is refused in words
#  - eight agents backing up at once into one appliance all land
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/havend_lib.sh"
havend_need curl ip mkfs.ext4 openssl sha256sum
[ "$(id -u)" = 0 ] || { echo "SKIP: network namespaces and loop mounts need root"; exit 0; }

R=$WORK/repo
STATE=$WORK/state
. "$(dirname "$0")/agent_lib.sh"
MNT=$WORK/src
PIDS=()
cleanup() {
  set +e
  local p
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  havend_kill
  umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
  agent_net_down
  rm -rf "$WORK"
}
DPID=
trap cleanup EXIT

# ---------------------------------------------------------------- network
agent_net_up
ok "namespaces $APP ($APP_IP) and $AGT ($AGT_IP) joined by a veth pair"
in_app() { ip netns exec "$APP" "$@"; }
in_agt() { ip netns exec "$AGT" "$@"; }

# ---------------------------------------------------------------- data
truncate -s 2G "$WORK/src.fs"
mkfs.ext4 -q -F "$WORK/src.fs"
mkdir -p "$MNT"
mount -o loop "$WORK/src.fs" "$MNT" || fail "loop mount of the ext4 file system"
cp -a /etc "$MNT/etc"
real_files "$MNT/usr" $((300 << 20)) >/dev/null
sleep 1  # past the copy's ctime before the reads below (see the keyed block)
# Read everything once, as a running system has: access times then stay
# put (relatime), so the catalog of an unchanged tree stays the same.
find "$MNT" -type f -exec cat {} + >/dev/null
ls -laR "$MNT" >/dev/null
ok "an ext4 file system made with mkfs holds a copy of /etc and $(du -sm "$MNT/usr" | cut -f1) MB of /usr"

# ---------------------------------------------------------------- appliance
expect_rc 0 "init" haven -r "$R" init
havend_repo_password
havend_token admin agents-admin
serve d1 --listen 0.0.0.0:0
ok "havend serves in $APP at $APPLIANCE ($FP)"

# ---------------------------------------------------------------- enrollment
enroll_token a
WRONG=SHA256:$(printf '%s' "$FP" | sha256sum | cut -c1-64 | tr a-f A-F | sed 's/../&:/g; s/:$//')
enroll a "$WRONG"
[ "$RC" != 0 ] || fail "enrollment with a wrong fingerprint succeeded"
contains "$WORK/err" "not the pinned" "the pinning refusal"
[ ! -e "$WORK/agent.a/agent.json" ] || fail "a refused enrollment left a credential"
enroll a "$FP"
[ "$RC" = 0 ] || fail "enroll a: $(cat "$WORK/err")"
[ "$(stat -c %a "$WORK/agent.a/agent.json")" = 600 ] || fail "agent.json is not 0600"
ok "a wrong fingerprint is refused before the token is spent; then a enrolls"
HAVEN_ENROLL_TOKEN=$(cat "$WORK/enroll.a") run agent reuse enroll "$APPLIANCE" --fingerprint "$FP" --name reuse
[ "$RC" != 0 ] || fail "a used enrollment token was accepted again"
contains "$WORK/err" "was used already" "the reused token's refusal"
ok "a used enrollment token is refused: $(head -1 "$WORK/err")"
enroll_token b
enroll b "$FP"
[ "$RC" = 0 ] || fail "enroll b: $(cat "$WORK/err")"

# ---------------------------------------------------------------- a backup through the appliance
expect_rc 0 "agent a backup" agent a --json backup "$MNT/etc" --name a-etc
A_ID=$(jget 'j["snapshot"]' "$WORK/out")
[ ${#A_ID} = 32 ] || fail "agent backup printed no point id: $(cat "$WORK/out")"
expect_rc 0 "agent a second backup" agent a --json backup "$MNT/etc" --name a-etc
# No file is read again and no content is sent: at most a catalog chunk
# (under CI's load a catalog chunk has differed between two back-to-back
# runs now and then; why is not found yet, see the closing note of issue 18).
[ "$(jget 'j["files_read"]' "$WORK/out")" = 0 ] || fail "an unchanged tree was read again: $(cat "$WORK/out")"
[ "$(jget 'j["uploaded_bytes"] <= 256 * 1024' "$WORK/out")" = true ] || fail "an unchanged tree uploaded more than catalog chunks: $(cat "$WORK/out")"
ok "a second backup of the unchanged tree reads no file and uploads no content ($(jget 'j["uploaded_chunks"]' "$WORK/out") catalog chunks)"
expect_rc 0 "check" haven -r "$R" check
expect_rc 0 "restore on the appliance" haven -r "$R" restore files "$A_ID" --to "$WORK/r1"
diff -r --no-dereference "$MNT/etc" "$WORK/r1$MNT/etc" >/dev/null || fail "the appliance's restore differs from the source"
ok "a's point $A_ID checks clean and restores byte-identical on the appliance"
expect_rc 0 "agent a restore" agent a restore "$A_ID" --to "$WORK/r2"
diff -r --no-dereference "$MNT/etc" "$WORK/r2$MNT/etc" >/dev/null || fail "the agent's own restore differs from the source"
ok "a restores its own point through the appliance, byte-identical"

# ---------------------------------------------------------------- isolation
cred a
cred b
code=$(AS b -o "$WORK/body" -w '%{http_code}' "$APPLIANCE/api/v1/agent/points/$A_ID")
[ "$code" = 403 ] || fail "b reading a's point: HTTP $code $(cat "$WORK/body")"
code=$(AS b -o "$WORK/body" -w '%{http_code}' "$APPLIANCE/api/v1/agent/points/$A_ID/files?path=/")
[ "$code" = 403 ] || fail "b listing a's files: HTTP $code"
expect_rc 0 "agent b points" agent b points
lacks "$WORK/out" "$A_ID" "b's list of points"
ok "b gets 403 on a's point and does not see it"
# A name is one agent's: b cannot add a point to a's series (it would push
# a's points out of keep_last or stand in for a-etc:latest).
run agent b --json backup "$MNT/etc/default" --name a-etc
[ "$RC" != 0 ] || fail "b committed a point under a's name"
contains "$WORK/err" "is taken by another agent" "the name's refusal"
ok "b cannot commit a point under a's backup name"
# No credential, no large body: havend refuses before reading it.
head -c $((4 << 20)) /dev/urandom >"$WORK/big"
code=$(ip netns exec "$AGT" curl -sS --max-time 60 -k -o "$WORK/body" -w '%{http_code}' \
  -H 'Content-Type: application/octet-stream' --data-binary "@$WORK/big" "$APPLIANCE/api/v1/agent/chunks")
[ "$code" = 401 ] || fail "a 4 MiB upload without credentials: HTTP $code"
ok "a large upload without an agent's credential is refused before its body is read"
# One small file of a's: a single chunk whose upload id is its SHA-256.
SMALL=$MNT/etc/hostname
[ -s "$SMALL" ] || SMALL=$MNT/etc/passwd
py - "$SMALL" "$WORK/probe.known" "$WORK/probe.unknown" <<'PYEOF'
import hashlib, os, sys
open(sys.argv[2], "wb").write(hashlib.sha256(open(sys.argv[1], "rb").read()).digest())
open(sys.argv[3], "wb").write(hashlib.sha256(os.urandom(4096)).digest())
PYEOF
missing() {
  AS "$1" -o "$WORK/$3" -w '%{http_code}' -H 'Content-Type: application/octet-stream' \
    --data-binary "@$WORK/$2" "$APPLIANCE/api/v1/agent/chunks/missing"
}
[ "$(missing a probe.known m.a)" = 200 ] || fail "a's missing-query"
[ "$(od -An -tu1 "$WORK/m.a" | tr -d ' ')" = 0 ] || fail "a is told it lacks its own chunk"
[ "$(missing b probe.known m.bk)" = 200 ] || fail "b's missing-query"
[ "$(missing b probe.unknown m.bu)" = 200 ] || fail "b's missing-query"
cmp -s "$WORK/m.bk" "$WORK/m.bu" || fail "b's answer for a's chunk differs from its answer for unknown bytes"
[ "$(od -An -tu1 "$WORK/m.bk" | tr -d ' ')" = 1 ] || fail "b is told a chunk of a's is there"
ok "b's answer for a's chunk equals its answer for bytes nobody stores"
# A frame whose id is the hash of other bytes.
before=$(repo_digest "$R")
py - "$WORK/frame" <<'PYEOF'
import hashlib, os, struct, sys
data = os.urandom(5000)
fake_id = hashlib.sha256(b"other bytes").digest()
open(sys.argv[1], "wb").write(fake_id + struct.pack("<IBI", len(data), 0, len(data)) + data)
PYEOF
code=$(AS b -o "$WORK/body" -w '%{http_code}' -H 'Content-Type: application/octet-stream' \
  --data-binary "@$WORK/frame" "$APPLIANCE/api/v1/agent/chunks")
[ "$code" = 422 ] || fail "a chunk under a wrong id: HTTP $code $(cat "$WORK/body")"
contains "$WORK/body" "do not match" "the wrong id's refusal"
[ "$(repo_digest "$R")" = "$before" ] || fail "a refused batch changed the repository"
ok "a chunk under a wrong id is refused (422) and nothing is stored"
code=$(AS a -o "$WORK/body" -w '%{http_code}' -H 'Content-Type: application/json' \
  --data '{"vm": "a-etc", "keep_last": 1}' "$APPLIANCE/api/v1/repositories/main/forget")
[ "$code" = 403 ] || fail "an agent's forget: HTTP $code $(cat "$WORK/body")"
expect_rc 0 "snapshots" haven -r "$R" --json snapshots
contains "$WORK/out" "$A_ID" "a's point after the forget attempt"
ok "an agent's attempt to forget points is refused (403) and the points stay"

# ---------------------------------------------------------------- interruptions
# The agent's side of the link is held to 200 Mbit/s (a WAN's pace, tc's
# token bucket), so each interruption lands mid-upload: the test acts once
# the repository's packs have grown by a given amount, never on a timer.
ip netns exec "$AGT" tc qdisc add dev "$VB" root tbf rate 200mbit burst 256kb latency 400ms ||
  fail "tc could not limit the agent's link"
packs() { du -sb "$R/packs" | cut -f1; }
# grow_by BYTES PID: waits until the packs grew by BYTES since the call;
# fails if PID (the backup) ends first.
grow_by() {
  local start
  start=$(packs)
  while [ $(($(packs) - start)) -lt "$1" ]; do
    kill -0 "$2" 2>/dev/null || fail "the backup ended before $1 bytes arrived"
    sleep 0.05
  done
}
uploaded() { jget 'j["uploaded_bytes"]' "$1"; }
random_tree() { # DIR SEED: 160 MiB of incompressible files
  mkdir -p "$1"
  local k
  for k in 1 2 3 4 5; do random_file "$1/f$k" $((32 << 20)) "$2$k"; done
}
MIB=$((1 << 20))
# 1. The link cut for 8 s mid-upload: the agent retries and finishes,
#    sending the batch in flight again at most.
random_tree "$MNT/cut" 11
agent a --json backup "$MNT/cut" --name a-cut >"$WORK/cut.out" 2>"$WORK/cut.err" &
BPID=$!
PIDS+=("$BPID")
grow_by $((32 * MIB)) "$BPID"
ip -n "$AGT" link set "$VB" down
sleep 8
ip -n "$AGT" link set "$VB" up
wait "$BPID" || fail "the backup across a cut link failed: $(tail -5 "$WORK/cut.err")"
sent=$(uploaded "$WORK/cut.out")
[ "$sent" -le $((160 * MIB + 16 * MIB)) ] || fail "the cut link made the agent send $sent bytes for 160 MiB"
expect_rc 0 "check after the cut" haven -r "$R" check --read-data
ok "the link cut for 8 s mid-upload: the backup finished ($sent bytes sent for 160 MiB) and checks clean"
# 2. The agent killed mid-upload, then run again: what arrived is not sent again.
random_tree "$MNT/kill" 22
agent a --json backup "$MNT/kill" --name a-kill >"$WORK/k.out" 2>"$WORK/k.err" &
BPID=$!
PIDS+=("$BPID")
before=$(packs)
grow_by $((64 * MIB)) "$BPID"
kill -9 "$BPID"
wait "$BPID" 2>/dev/null || true
arrived=$(($(packs) - before))
expect_rc 0 "rerun after kill" agent a --json backup "$MNT/kill" --name a-kill
sent=$(uploaded "$WORK/out")
[ "$sent" -le $((160 * MIB - arrived + 16 * MIB)) ] ||
  fail "the rerun sent $sent bytes although $arrived of 160 MiB had arrived"
expect_rc 0 "check after the kill" haven -r "$R" check --read-data
ok "agent killed mid-upload after $((arrived / MIB)) MiB arrived: the rerun sent $((sent / MIB)) MiB of 160 and the point checks clean"
# 3. havend killed mid-upload and started again on its port: the agent
#    retries with backoff and the point completes.
random_tree "$MNT/restart" 33
agent a --json backup "$MNT/restart" --name a-restart >"$WORK/h.out" 2>"$WORK/h.err" &
BPID=$!
PIDS+=("$BPID")
grow_by $((32 * MIB)) "$BPID"
kill -9 "$DPID"
wait "$DPID" 2>/dev/null || true
sleep 2
serve d2 --listen "0.0.0.0:$PORT"
wait "$BPID" || fail "the backup across a havend restart failed: $(tail -5 "$WORK/h.err")"
H_ID=$(jget 'j["snapshot"]' "$WORK/h.out")
expect_rc 0 "check after havend's restart" haven -r "$R" check --read-data
expect_rc 0 "restore after havend's restart" haven -r "$R" restore files "$H_ID" --to "$WORK/r3"
diff -r "$MNT/restart" "$WORK/r3$MNT/restart" >/dev/null || fail "the point made across the restart differs from the source"
ok "havend killed mid-upload and restarted: the agent retried, the point checks clean and restores identical"
ip netns exec "$AGT" tc qdisc del dev "$VB" root

# ---------------------------------------------------------------- a job handed to a running agent
# `haven agent run` keeps a long poll open to the appliance (outbound only);
# a backup started on the appliance reaches it through that poll.
ip netns exec "$AGT" "$HAVEN" agent run --state-dir "$WORK/agent.a" >"$WORK/run.out" 2>"$WORK/run.err" &
RPID=$!
PIDS+=("$RPID")
AGENT_A=$("${ADMIN[@]}" "$LOCAL/api/v1/agents" | jget '[a["id"] for a in j["agents"] if a["name"] == "a"][0]')
code=$("${ADMIN[@]}" -o "$WORK/body" -w '%{http_code}' \
  --data "{\"name\": \"a-job\", \"paths\": [\"$MNT/etc\"]}" "$LOCAL/api/v1/agents/$AGENT_A/backup")
[ "$code" = 202 ] || fail "a backup job for a: HTTP $code $(cat "$WORK/body")"
JOB=$(jget 'j["job"]' "$WORK/body")
state=
for _ in $(seq 240); do
  state=$("${ADMIN[@]}" "$LOCAL/api/v1/jobs/$JOB" | jget 'j["state"]')
  case "$state" in succeeded|failed|cancelled|interrupted) break ;; esac
  sleep 0.25
done
[ "$state" = succeeded ] || fail "the job handed to agent a ended '$state': $("${ADMIN[@]}" "$LOCAL/api/v1/jobs/$JOB/log") $(tail -5 "$WORK/run.err")"
expect_rc 0 "snapshots" haven -r "$R" --json snapshots
contains "$WORK/out" '"a-job"' "the point of the job"
kill -TERM "$RPID"
rc=0
wait "$RPID" || rc=$?
[ "$rc" = 0 ] || fail "haven agent run exited $rc after SIGTERM: $(tail -3 "$WORK/run.err")"
ok "a backup job started on the appliance ran on agent a through its long poll (job $JOB)"

# ---------------------------------------------------------------- revocation
AGENT_B=$("${ADMIN[@]}" "$LOCAL/api/v1/agents" | jget '[a["id"] for a in j["agents"] if a["name"] == "b"][0]')
code=$("${ADMIN[@]}" -o "$WORK/body" -w '%{http_code}' --data "{}" "$LOCAL/api/v1/agents/$AGENT_B/revoke")
[ "$code" = 200 ] || fail "revoke b: HTTP $code $(cat "$WORK/body")"
run agent b points
[ "$RC" != 0 ] || fail "a revoked agent listed its points"
contains "$WORK/err" "revoked" "the revoked agent's refusal"
ok "a revoked agent is refused: $(head -1 "$WORK/err")"

# ---------------------------------------------------------------- eight at once
for i in 1 2 3 4 5 6 7 8; do
  enroll_token "g$i"
  enroll "g$i" "$FP"
  [ "$RC" = 0 ] || fail "enroll g$i: $(cat "$WORK/err")"
done
BPIDS=()
for i in 1 2 3 4 5 6 7 8; do
  agent "g$i" --json backup "$MNT/etc" --name "g$i-etc" >"$WORK/g$i.out" 2>"$WORK/g$i.err" &
  BPIDS+=($!)
done
for i in 1 2 3 4 5 6 7 8; do
  wait "${BPIDS[$((i - 1))]}" || fail "agent g$i's backup failed: $(tail -3 "$WORK/g$i.err")"
done
expect_rc 0 "snapshots" haven -r "$R" --json snapshots
for i in 1 2 3 4 5 6 7 8; do contains "$WORK/out" "g$i-etc" "the point of g$i"; done
expect_rc 0 "check after eight agents" haven -r "$R" check
ok "eight agents backing up at once all landed and the repository checks clean"
# ---------------------------------------------------------------- an agent's own key
enroll_token c
enroll c "$FP"
[ "$RC" = 0 ] || fail "enroll c: $(cat "$WORK/err")"
expect_rc 0 "agent c key create" agent c key create
contains "$WORK/err" "ONLY copy" "the warning of key create"
[ "$(stat -c %a "$WORK/agent.c/agent-key")" = 600 ] || fail "the agent key's mode is not 0600"
[ "$(stat -c %s "$WORK/agent.c/agent-key")" = 64 ] || fail "the agent key is not 64 bytes"
run agent c key create
[ "$RC" != 0 ] || fail "a second key create succeeded"
contains "$WORK/err" "never replaced" "the second key create's refusal"
ok "agent c made its own key (0600, 64 bytes) and key create refuses to replace it"
mkdir -p "$WORK/keyed"
cp -a "$MNT/etc" "$WORK/keyed/etc"
SECRET="haven-agent-key-probe-$(od -An -tx8 -N8 /dev/urandom | tr -d ' ')"
for i in $(seq 1 200); do echo "$SECRET line $i"; done >"$WORK/keyed/etc/haven-secret.txt"
# Read once (access times then stay put), as for $MNT above. First let the
# clock pass the copy's ctime: a read in the same tick leaves atime equal to
# ctime, and relatime would then move it again during the first backup.
sleep 1
find "$WORK/keyed" -type f -exec cat {} + >/dev/null
ls -laR "$WORK/keyed" >/dev/null
expect_rc 0 "agent c backup (keyed)" agent c --json backup "$WORK/keyed/etc" --name c-etc
C_ID=$(jget 'j["snapshot"]' "$WORK/out")
[ ${#C_ID} = 32 ] || fail "the keyed backup printed no point id: $(cat "$WORK/out")"
expect_rc 0 "show c's point" haven -r "$R" --json show "$C_ID"
contains "$WORK/out" '"agent_key"' "the manifest of c's point"
expect_rc 0 "agent c second backup (keyed)" agent c --json backup "$WORK/keyed/etc" --name c-etc
[ "$(jget 'j["files_read"]' "$WORK/out")" = 0 ] || fail "an unchanged keyed tree was read again: $(cat "$WORK/out")"
[ "$(jget 'j["uploaded_bytes"] <= 256 * 1024' "$WORK/out")" = true ] || fail "an unchanged keyed tree uploaded more than catalog chunks: $(cat "$WORK/out")"
ok "c's keyed point $C_ID names its key; a second run of the unchanged tree reads no file and sends no content"
run haven -r "$R" restore files "$C_ID" --to "$WORK/r-c-app"
[ "$RC" != 0 ] || fail "the appliance's repository restored a point sealed with c's key"
contains "$WORK/err" "encrypted with agent key" "the repository's refusal of c's point"
! grep -rqs "$SECRET" "$WORK/r-c-app" || fail "the appliance's restore holds the plain text of c's file"
cred c
code=$(AS c -o "$WORK/body" -w '%{http_code}' "$APPLIANCE/api/v1/agent/points/$C_ID/files?path=/")
[ "$code" = 409 ] || fail "/files of c's keyed point: HTTP $code $(cat "$WORK/body")"
contains "$WORK/body" "which the appliance does not hold" "the 409 of /files"
code=$(AS c -o "$WORK/body" -w '%{http_code}' "$APPLIANCE/api/v1/agent/points/$C_ID/archive?path=/")
[ "$code" = 409 ] || fail "/archive of c's keyed point: HTTP $code"
code=$(AS a -o "$WORK/body" -w '%{http_code}' "$APPLIANCE/api/v1/agent/points/$C_ID/manifest")
[ "$code" = 403 ] || fail "a reading c's manifest: HTTP $code"
ok "the appliance cannot list or restore c's keyed point (409), nor another agent read it (403)"
expect_rc 0 "agent c restore (keyed)" agent c restore "$C_ID" --to "$WORK/r-c"
diff -r --no-dereference "$WORK/keyed/etc" "$WORK/r-c$WORK/keyed/etc" >/dev/null ||
  fail "the keyed restore differs from the source"
ok "c restores its keyed point on the agent, byte-identical"
mv "$WORK/agent.c/agent-key" "$WORK/agent-key.c.saved"
run agent c restore "$C_ID" --to "$WORK/r-c2"
[ "$RC" != 0 ] || fail "a keyed point restored without the key"
contains "$WORK/err" "no key file" "the restore without the key"
mv "$WORK/agent-key.c.saved" "$WORK/agent.c/agent-key"
expect_rc 0 "check after the keyed points" haven -r "$R" check
ok "without its key file c's restore is refused in words; the repository checks clean"
echo "PASS ($PASS checks)"
