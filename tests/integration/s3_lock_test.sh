#!/usr/bin/env bash
# Object lock and cross-machine locks of the S3 backend, against a real
# Ceph radosgw (tests/ceph):
#  1. init --object-lock in a bucket without object lock is refused;
#  2. in haven-locked: points are retained (forget defers them), packs gc
#     wants gone are kept while retained and deleted after expiry;
#  3. deleting a retained pack version fails: 403 for the agent user, and
#     403 for the bucket owner too (governance, no bypass header);
#  4. two "machines" (own cache dirs and host names): gc waits for a running
#     backup's lock and finishes after it; a kill -9'd backup's lock is
#     ignored once it expires (HAVEN_STORE_LOCK_EXPIRY=20).
. "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || { echo "SKIP: curl missing"; exit 77; }
command -v unshare >/dev/null || { echo "SKIP: unshare missing"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (unshare -u for host names)"; exit 77; }
SRCDIR=${HAVEN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}

OWN_CEPH=
PIDS=()
cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  [ -n "$OWN_CEPH" ] && "$SRCDIR/tests/ceph/ceph-cluster.sh" stop "$OWN_CEPH" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

. "$(dirname "$0")/s3_lib.sh"
LB=$HAVEN_S3_LOCKED_BUCKET
PB=$HAVEN_S3_PLAIN_BUCKET
head_status() { s3py head "$1" "$2" >"$WORK/h"; head -1 "$WORK/h"; }  # BUCKET KEY
# retained BUCKET KEY: the current version has a lock whose date is ahead.
retained() {
  s3py head "$1" "$2" >"$WORK/h"
  local u
  u=$(sed -n 's/^x-amz-object-lock-retain-until-date: *//Ip' "$WORK/h" | tr -d '\r')
  [ -n "$u" ] && [ "$(date -d "$u" +%s)" -gt "$(date +%s)" ]
}
# curl as the agent or as the owner: prints the HTTP status.
s3code() {  # KEY SECRET curl-args...
  local k=$1 s=$2
  shift 2
  curl -sS -m 30 -o "$WORK/curl.body" -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" \
    --user "$k:$s" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"
}
now() { date +%s.%N; }
# at_host NAME CMD...: CMD in a UTS namespace whose host name is NAME (a
# "machine" of its own; same pid, as unshare execs).
at_host() { local h=$1; shift; exec unshare -u sh -c 'hostname "$0"; exec "$@"' "$h" "$@"; }

# ---------------------------------------------------------------- 1. refused
expect_rc 1 "init --object-lock on the plain bucket" haven -r "s3:$EP/$PB/$RUN/refused" init --object-lock 30s
grep -qi "object lock" "$WORK/err" && grep -qiE "not enabled|enable" "$WORK/err" ||
  fail "the refusal does not say object lock is not enabled: $(cat "$WORK/err")"
n=$(s3py list "$PB" "$RUN/refused/" | wc -l)
[ "$n" = 0 ] || fail "the refused init left $n objects: $(s3py list "$PB" "$RUN/refused/")"
ok "init --object-lock on a bucket without object lock is refused: $(head -1 "$WORK/err")"

# ---------------------------------------------------------------- 2. retention
LOCK=60  # packs: 60 s + 25 %
R="s3:$EP/$LB/$RUN/locked"
expect_rc 0 "init --object-lock ${LOCK}s governance" haven -r "$R" init --object-lock ${LOCK}s --object-lock-mode governance
random_file "$WORK/a.img" $((24 << 20)) 1
random_file "$WORK/b.img" $((24 << 20)) 2
random_file "$WORK/c.img" $((200 << 20)) 3
tA=$(date +%s)
expect_rc 0 "backup A" haven -r "$R" --json backup image "$WORK/a.img" --name a
A_ID=$(jget 'j["id"]' "$WORK/out")
s3py list "$LB" "$RUN/locked/packs/" | awk '{print $2}' | sort >"$WORK/packs-a"
[ -s "$WORK/packs-a" ] || fail "no pack in the bucket after backup A"
expect_rc 0 "backup B" haven -r "$R" -q backup image "$WORK/b.img" --name b
s3py head "$LB" "$RUN/locked/snapshots/$A_ID" >"$WORK/head"
[ "$(head -1 "$WORK/head")" = 200 ] || fail "HEAD of A's manifest: $(cat "$WORK/head")"
grep -qi "^x-amz-object-lock-mode: GOVERNANCE" "$WORK/head" || fail "A's manifest is not retained: $(cat "$WORK/head")"
pack=$(head -1 "$WORK/packs-a")
s3py head "$LB" "$pack" >"$WORK/head"
grep -qi "^x-amz-object-lock-mode: GOVERNANCE" "$WORK/head" || fail "A's pack is not retained: $(cat "$WORK/head")"
ok "with --object-lock ${LOCK}s the manifests and packs are written retained (GOVERNANCE)"

# A backup killed -9 leaves retained packs no point uses.
s3py list "$LB" "$RUN/locked/packs/" | awk '{print $2}' | sort >"$WORK/packs-ab"
"$HAVEN" -r "$R" -q backup image "$WORK/c.img" --name c --limit-read 40 &
KILLME=$!
PIDS+=($KILLME)
for _ in $(seq 1 150); do
  [ "$(s3py list "$LB" "$RUN/locked/packs/" | wc -l)" -gt $(($(wc -l <"$WORK/packs-ab") + 1)) ] && break
  kill -0 "$KILLME" 2>/dev/null || break
  sleep 0.2
done
sleep 0.5
kill -9 "$KILLME" 2>/dev/null || fail "backup C ended before it could be killed"
wait "$KILLME" 2>/dev/null || true
s3py list "$LB" "$RUN/locked/packs/" | awk '{print $2}' | sort >"$WORK/packs-abc"
comm -13 "$WORK/packs-ab" "$WORK/packs-abc" >"$WORK/orphans"
[ -s "$WORK/orphans" ] || fail "the killed backup left no pack"
# A pack completed just before the kill may lack its retention (set after
# a multipart upload completes); the others must have it.
while read -r k; do retained "$LB" "$k" && echo "$k"; done <"$WORK/orphans" >"$WORK/orphans-retained"
[ -s "$WORK/orphans-retained" ] || fail "none of the killed backup's packs is retained: $(cat "$WORK/orphans")"

expect_rc 0 "forget A while retained" haven -r "$R" --json forget "$A_ID"
cp "$WORK/out" "$WORK/forget1.json"
[ "$(jget 'j["deferred"]' "$WORK/forget1.json")" = 1 ] || fail "forget of a retained point: $(cat "$WORK/forget1.json")"
[ "$(jget '[s["outcome"] for s in j["snapshots"] if s["id"] == "'"$A_ID"'"][0]' "$WORK/forget1.json")" = skipped ] ||
  fail "the retained point's outcome: $(cat "$WORK/forget1.json")"
expect_rc 0 "snapshots" haven -r "$R" --json snapshots
[ "$(jget 'len([p for p in j if p["id"] == "'"$A_ID"'"])' "$WORK/out")" = 1 ] || fail "the retained point is gone"
ok "forget of a retained point is deferred (outcome skipped, deferred 1); the point stays"

expect_rc 0 "gc with retained orphan packs" haven -r "$R" --json gc
cp "$WORK/out" "$WORK/gc1.json"
[ "$(jget 'j["packs_retained"]' "$WORK/gc1.json")" -gt 0 ] || fail "gc: no pack retained: $(cat "$WORK/gc1.json")"
[ -n "$(jget 'j.get("retained_until") or ""' "$WORK/gc1.json")" ] || fail "gc: no retained_until: $(cat "$WORK/gc1.json")"
while read -r k; do
  [ "$(head_status "$LB" "$k")" = 200 ] || fail "gc deleted the retained pack $k"
done <"$WORK/orphans-retained"
ok "gc keeps the killed backup's retained packs ($(jget 'j["packs_retained"]' "$WORK/gc1.json") retained until $(jget 'j["retained_until"]' "$WORK/gc1.json"))"

# ---------------------------------------------------------------- 3. deletes refused
pack=$(head -1 "$WORK/packs-a")
s3py head "$LB" "$pack" >"$WORK/head"
vid=$(sed -n 's/^x-amz-version-id: *//Ip' "$WORK/head" | tr -d '\r')
[ -n "$vid" ] || fail "no version id for $pack: $(cat "$WORK/head")"
code=$(s3code "$HAVEN_S3_AGENT_KEY_ID" "$HAVEN_S3_AGENT_SECRET" -X DELETE "$EP/$LB/$pack?versionId=$vid")
[ "$code" = 403 ] || fail "the agent's DELETE ?versionId of a pack: HTTP $code $(cat "$WORK/curl.body")"
code=$(s3code "$HAVEN_S3_AGENT_KEY_ID" "$HAVEN_S3_AGENT_SECRET" -X DELETE "$EP/$LB/$pack")
[ "$code" = 403 ] || fail "the agent's DELETE of a pack: HTTP $code $(cat "$WORK/curl.body")"
code=$(s3code "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" -X DELETE "$EP/$LB/$pack?versionId=$vid")
[ "$code" = 403 ] || fail "the owner's DELETE ?versionId of a retained pack: HTTP $code $(cat "$WORK/curl.body")"
[ "$(head_status "$LB" "$pack")" = 200 ] || fail "the pack is gone after the refused deletes"
ok "DELETE of a retained pack's version: 403 for the agent, 403 for the owner without bypass"

# After the manifests' retention: A can be forgotten; its packs are still
# retained (+25 %), so gc keeps them, and deletes them once that expires.
wait_until() { local t=$1; while [ "$(date +%s)" -lt "$t" ]; do sleep 1; done; }
wait_until $((tA + LOCK + 3))
expect_rc 0 "forget A after its retention" haven -r "$R" --json forget "$A_ID"
cp "$WORK/out" "$WORK/forget2.json"
[ "$(jget 'j["removed"]' "$WORK/forget2.json")" = 1 ] && [ "$(jget 'j["deferred"]' "$WORK/forget2.json")" = 0 ] ||
  fail "forget after the retention: $(cat "$WORK/forget2.json")"
expect_rc 0 "gc while A's packs are retained" haven -r "$R" --json gc
cp "$WORK/out" "$WORK/gc2.json"
t_gc2=$(date +%s)
if [ "$t_gc2" -lt $((tA + LOCK * 5 / 4 - 2)) ]; then
  [ "$(jget 'j["packs_retained"]' "$WORK/gc2.json")" -gt 0 ] || fail "gc2: no pack retained: $(cat "$WORK/gc2.json")"
  while read -r k; do
    [ "$(head_status "$LB" "$k")" = 200 ] || fail "gc deleted A's still retained pack $k"
  done <"$WORK/packs-a"
  ok "gc wants A's packs gone but keeps them while retained ($(jget 'j["packs_retained"]' "$WORK/gc2.json") retained)"
else
  echo "note: too slow to see A's packs retained (gc2 $((t_gc2 - tA)) s after A)"
fi
until_s=$(jget 'j.get("retained_until") or ""' "$WORK/gc2.json")
[ -n "$until_s" ] || fail "gc2: no retained_until: $(cat "$WORK/gc2.json")"
# retained_until: Unix seconds (or an ISO-8601 date)
case $until_s in
  *[!0-9.]*) until_epoch=$(date -d "$until_s" +%s) || fail "retained_until '$until_s' is not a date" ;;
  *) until_epoch=${until_s%.*} ;;
esac
[ "$until_epoch" -gt "$t_gc2" ] || fail "retained_until $until_s is not after the gc ($t_gc2)"
[ "$until_epoch" -lt $((tA + 300)) ] || fail "retained_until $until_s is far too late"
wait_until $((until_epoch + 2))
expect_rc 0 "gc after the retention" haven -r "$R" --json gc
cp "$WORK/out" "$WORK/gc3.json"
[ "$(jget 'j["packs_deleted"]' "$WORK/gc3.json")" -gt 0 ] || fail "gc3 deleted no pack: $(cat "$WORK/gc3.json")"
[ "$(jget 'j["packs_retained"]' "$WORK/gc3.json")" = 0 ] || fail "gc3 still retains packs: $(cat "$WORK/gc3.json")"
s3py list "$LB" "$RUN/locked/packs/" | awk '{print $2}' | sort >"$WORK/packs-left"
left=$(comm -12 "$WORK/packs-left" <(sort -u "$WORK/packs-a" "$WORK/orphans") | wc -l)
[ "$left" = 0 ] || fail "$left of A's and the killed backup's packs are still listed after gc"
expect_rc 0 "check --read-data" haven -r "$R" check --read-data
expect_rc 0 "restore B" haven -r "$R" restore image b:latest --to "$WORK/b.back"
same_file "$WORK/b.img" "$WORK/b.back" "B after gc"
rm -f "$WORK/b.back"
ok "after the retention gc deleted $(jget 'j["packs_deleted"]' "$WORK/gc3.json") packs; check --read-data clean; B restores ($(($(date +%s) - tA)) s)"

# ---------------------------------------------------------------- 4. two machines
export HAVEN_STORE_LOCK_EXPIRY=20
R4="s3:$EP/$PB/$RUN/machines"
expect_rc 0 "init" haven -r "$R4" init
expect_rc 0 "first backup" haven -r "$R4" -q backup image "$WORK/a.img" --name a
expect_rc 0 "second backup" haven -r "$R4" -q backup image "$WORK/b.img" --name a
expect_rc 0 "forget" haven -r "$R4" forget --keep-last 1
# bg TAG CMD...: runs CMD in the background; TAG.pid, TAG.rc, TAG.end.
bg() {
  local tag=$1
  shift
  (
    "$@" >"$WORK/$tag.out" 2>"$WORK/$tag.err" &
    echo $! >"$WORK/$tag.pid"
    set +e
    wait $!
    echo $? >"$WORK/$tag.rc"
    now >"$WORK/$tag.end"
  ) &
  PIDS+=($!)
  for _ in $(seq 1 50); do [ -s "$WORK/$tag.pid" ] && break; sleep 0.1; done
}
wait_lock_object() {  # a lock object appears under locks/
  for _ in $(seq 1 100); do
    [ "$(s3py list "$PB" "$RUN/machines/locks/" | wc -l)" -gt 0 ] && return 0
    sleep 0.1
  done
  fail "no lock object appeared in $RUN/machines/locks/"
}
bg A at_host machine-a env HAVEN_CACHE_DIR="$WORK/machine-a" "$HAVEN" -r "$R4" -q \
  backup image "$WORK/c.img" --name c --limit-read 25
wait_lock_object
sleep 1
t0=$(now)
bg B at_host machine-b env HAVEN_CACHE_DIR="$WORK/machine-b" "$HAVEN" -r "$R4" --json gc
for _ in $(seq 1 600); do [ -s "$WORK/A.rc" ] && [ -s "$WORK/B.rc" ] && break; sleep 0.2; done
[ "$(cat "$WORK/A.rc")" = 0 ] || fail "backup on machine A: exit $(cat "$WORK/A.rc"): $(cat "$WORK/A.err")"
[ "$(cat "$WORK/B.rc")" = 0 ] || fail "gc on machine B: exit $(cat "$WORK/B.rc"): $(cat "$WORK/B.err")"
grep -qE "waiting for the (shared|exclusive) lock of machine-a pid $(cat "$WORK/A.pid")" "$WORK/B.err" ||
  fail "gc did not say it waits for machine A's lock: $(cat "$WORK/B.err")"
py -c 'import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(0 if b >= a else 1)' \
  "$(cat "$WORK/A.end")" "$(cat "$WORK/B.end")" ||
  fail "gc on B finished before the backup on A ($(cat "$WORK/B.end") < $(cat "$WORK/A.end"))"
expect_rc 0 "check after the concurrent backup and gc" haven -r "$R4" check --read-data
expect_rc 0 "restore c" haven -r "$R4" restore image c:latest --to "$WORK/c.back"
same_file "$WORK/c.img" "$WORK/c.back" "c after the concurrent gc"
rm -f "$WORK/c.back"
expect_rc 0 "restore a" haven -r "$R4" restore image a:latest --to "$WORK/b.back"
same_file "$WORK/b.img" "$WORK/b.back" "a:latest after the concurrent gc"
rm -f "$WORK/b.back"
ok "gc on machine B waited for machine A's backup ($(grep -m1 waiting "$WORK/B.err")) and finished $(py -c "print(round($(cat "$WORK/B.end") - $(cat "$WORK/A.end"), 1))") s after it; both succeeded; check clean; points restore"

# kill -9 on A: its lock is stale only once it expires (another host).
rm -f "$WORK"/A.* "$WORK"/B.*
expect_rc 0 "forget c" haven -r "$R4" forget c:latest
random_file "$WORK/d.img" $((200 << 20)) 4
bg A at_host machine-a env HAVEN_CACHE_DIR="$WORK/machine-a" "$HAVEN" -r "$R4" -q \
  backup image "$WORK/d.img" --name d --limit-read 25
wait_lock_object
sleep 1
kill -9 "$(cat "$WORK/A.pid")"
for _ in $(seq 1 50); do [ -s "$WORK/A.rc" ] && break; sleep 0.1; done
t0=$(now)
bg B at_host machine-b env HAVEN_CACHE_DIR="$WORK/machine-b" "$HAVEN" -r "$R4" --json gc
for _ in $(seq 1 600); do [ -s "$WORK/B.rc" ] && break; sleep 0.2; done
[ -s "$WORK/B.rc" ] || fail "gc on B did not finish in 120 s: $(cat "$WORK/B.err")"
[ "$(cat "$WORK/B.rc")" = 0 ] || fail "gc on B after the kill: exit $(cat "$WORK/B.rc"): $(cat "$WORK/B.err")"
took=$(py -c "print(int($(cat "$WORK/B.end") - $t0))")
[ "$took" -lt 60 ] || fail "gc took $took s behind a dead process's lock (expiry 20 s)"
grep -q "waiting for the" "$WORK/B.err" || fail "gc did not wait for the dead backup's lock: $(cat "$WORK/B.err")"
expect_rc 0 "check after the stale lock" haven -r "$R4" check
expect_rc 0 "restore a" haven -r "$R4" restore image a:latest --to "$WORK/b.back"
same_file "$WORK/b.img" "$WORK/b.back" "a:latest after gc behind a stale lock"
ok "a kill -9'd backup's lock on another host held gc for $took s (expiry 20 s), then gc went on; check clean"

echo "PASS: $PASS checks"
