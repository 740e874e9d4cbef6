#!/usr/bin/env bash
# Restores through havend's API, plan then run, over real HTTPS on loopback
# with a real libvirtd + QEMU host (issue 16, point 2):
# setup: VM A (vda qcow2 with random guest writes) on an isolated network,
#        `haven backup vm A`; an ext4 image of a copy of /etc,
#        `haven backup image`; the reference of A's vda
# (1) POST /restores/vm/plan under a new name with a new identity: 201, the
#     plan names the disk path, the network (exists) and new UUID and MAC;
#     nothing changed on the host; GET /restores/plans/{id} shows the same;
#     POST /restores/vm {plan} runs it as a job: succeeded, the VM exists
#     with the plan's name, UUID and MAC, its disk byte-identical to the
#     backed-up one; the same plan again is 409
# (2) a plan whose name is taken by another domain before the run: the job
#     fails naming the domain that appeared, no disk file is written
# (3) POST /restores/files/plan of /etc from the image point: the plan lists
#     the files to create and writes nothing; the run restores /etc equal to
#     the source (content, symlinks, modes)
# (4) bad requests are 400 naming the field; the routes are in openapi.json
#     with their roles
# Every request carries a real role token (`havend token create`): reads
# as an auditor, plans and runs as an operator, the least roles they need;
# an auditor may not plan (403).
# Skips (exit 0) only when libvirtd cannot be started here; with CI or
# HAVEN_REQUIRE_LIBVIRT=1 in the environment that is a failure instead.
. "$(dirname "$0")/libvirt_lib.sh" curl mke2fs
. "$(dirname "$0")/havend_lib.sh"

T=hrst-$$
NET=$T-net
A=$T-a A2=$T-a2 A3=$T-a3
VMS=("$A" "$A2" "$A3")
DPID=
chmod 711 "$WORK"
cleanup() {
  set +e
  [ -n "$DPID" ] && { kill -9 "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null; }
  haven_cleanup_vm "${VMS[@]}"
  haven_cleanup_network "$NET"
  rm -rf "$WORK"
}
trap cleanup EXIT

R=$WORK/repo STATE=$WORK/state PWF=$WORK/passphrase VMDIR=$WORK/vms
ST=$WORK/st REF=$WORK/ref
mkdir -p "$VMDIR" "$ST" "$REF"
chmod 711 "$ST"
printf '%s\n' "havend-restore-test-passphrase" >"$PWF"
chmod 600 "$PWF"
unset HAVEN_PASSWORD
hv() { "$HAVEN" -r "$R" --password-file "$PWF" "$@"; }
vsh() { virsh -q -c qemu:///system "$@"; }
expect_rc 0 "init" hv init --chunk-size 64K

# ---------------------------------------------------------------- setup
haven_make_network "$NET" "hrs$$" || fail "could not create network $NET"
HAVEN_VM_VDA_SIZE=64M HAVEN_VM_VDB_SIZE=0 haven_make_vm "$A" "$VMDIR" "$NET" ||
  fail "could not create VM $A"
haven_guest_write "$A" vda random:61 1M 4M || fail "guest write $A vda"
haven_guest_write "$A" vda 0x5a 40M 1M || fail "guest write $A vda"
run hv --json backup vm "$A"
[ "$RC" = 0 ] || fail "backup vm $A: exit code $RC: $(head -c 2000 "$WORK/err")"
SNAP=$(jget "j['vms'][0]['snapshot']" "$WORK/out")
# Nothing in a guest without an OS writes: the disk now is the disk backed up.
haven_disk_copy "$A" "$VMDIR/$A-vda.qcow2" qcow2 "$REF/a-vda.raw" || fail "reference copy"

# /etc as a disk image: a copy (it must not change under the test), ext4.
SRC=$WORK/src
mkdir -p "$SRC"
cp -a /etc "$SRC/etc" 2>/dev/null || true
# Only what a guest restore brings back: no sockets, FIFOs or device nodes,
# and no set-id bits (the API drops them).
find "$SRC/etc" \( -type s -o -type p -o -type b -o -type c \) -delete
chmod -R ug-s "$SRC/etc"
truncate -s 512M "$WORK/etc.img"
mke2fs -q -F -t ext4 -d "$SRC" "$WORK/etc.img" || fail "mke2fs -d $SRC"
run hv --json backup image "$WORK/etc.img" --name etcdisk
[ "$RC" = 0 ] || fail "backup image: exit code $RC: $(head -c 2000 "$WORK/err")"
SNAP_ETC=$(jget "j['id']" "$WORK/out")
ok "setup: $A backed up (${SNAP:0:8}), /etc as an ext4 image backed up (${SNAP_ETC:0:8})"

havend_token operator restore-operator
havend_token auditor restore-auditor
# start_havend NAME: havend on 127.0.0.1, port 0, with the repository
# "main"; sets URL.
start_havend() { havend_start "$1" --repository "main=$R" --password-file "$PWF"; }
CURL=(curl -sS --max-time 120 --cacert "$STATE/cert.pem")
# api METHOD PATH [BODY]: as the role $AS, or else as an auditor for GET and
# an operator otherwise; the response body in $WORK/resp, the status in CODE.
AS=
api() {
  local as=$AS
  [ -n "$as" ] || { [ "$1" = GET ] && as=auditor || as=operator; }
  local body=(-H "@$WORK/token.$as")
  [ $# -ge 3 ] && body+=(-H 'content-type: application/json' --data-binary "$3")
  CODE=$("${CURL[@]}" -X "$1" -o "$WORK/resp" -w '%{http_code}' "${body[@]}" "$URL$2")
}
# plan KIND BODY TAG: POST /restores/KIND/plan; 201 expected; the answer in
# $WORK/TAG.json, its id in PLAN.
plan() {
  api POST "/api/v1/restores/$1/plan" "$2"
  [ "$CODE" = 201 ] || fail "$3: plan $1 $2: HTTP $CODE $(head -c 3000 "$WORK/resp")"
  cp "$WORK/resp" "$WORK/$3.json"
  PLAN=$(jget 'j["id"]' "$WORK/$3.json")
}
# run_plan KIND ID: POST /restores/KIND {plan}; 202 expected; sets JOB.
run_plan() {
  api POST "/api/v1/restores/$1" '{"plan": "'"$2"'"}'
  [ "$CODE" = 202 ] || fail "run $1 plan $2: HTTP $CODE $(cat "$WORK/resp")"
  JOB=$(jget 'j["job"]' "$WORK/resp")
}
# wait_job ID STATE: waits until the job ended; fails unless it is in STATE.
# The job's JSON is left in $WORK/job.json.
wait_job() {
  local s
  for _ in $(seq 1500); do
    api GET "/api/v1/jobs/$1"
    [ "$CODE" = 200 ] || fail "GET job $1: HTTP $CODE $(cat "$WORK/resp")"
    s=$(jget 'j["state"]' "$WORK/resp")
    case $s in queued | running) sleep 0.2 ;; *) break ;; esac
  done
  cp "$WORK/resp" "$WORK/job.json"
  [ "$s" = "$2" ] || fail "job $1 is $s, expected $2: $(head -c 3000 "$WORK/resp")"
}
pj() { jget "$2" "$WORK/$1.json"; }  # EXPR over a saved plan answer

start_havend a

# ------------------------------------------------ (1) a VM, plan then run
D2=$ST/a2
mkdir -p "$D2" && chmod 755 "$D2"
plan vm '{"repository": "main", "point": "'"$SNAP"'", "name": "'"$A2"'",
  "new_identity": true, "format": "qcow2", "storage_dir": "'"$D2"'"}' p1
[ "$(pj p1 'j["kind"]')" = vm ] && [ "$(pj p1 'j["conflicts"]')" = 0 ] &&
  [ "$(pj p1 'j["runnable"]')" = true ] || fail "(1) plan: $(cat "$WORK/p1.json")"
[ "$(pj p1 'j["plan"]["vms"][0]["name"]')" = "$A2" ] || fail "(1) the plan's name"
[ "$(pj p1 'j["plan"]["vms"][0]["disks"][0]["path"]')" = "$D2/$A2-vda.qcow2" ] ||
  fail "(1) the plan's disk: $(pj p1 'j["plan"]["vms"][0]["disks"]')"
[ "$(pj p1 'j["plan"]["vms"][0]["networks"][0]["name"]')" = "$NET" ] &&
  [ "$(pj p1 'j["plan"]["vms"][0]["networks"][0]["action"]')" = exists ] ||
  fail "(1) the plan's network: $(pj p1 'j["plan"]["vms"][0]["networks"]')"
P_UUID=$(pj p1 'j["plan"]["vms"][0]["uuid"]')
P_MAC=$(pj p1 'j["plan"]["vms"][0]["macs"][0]["new"]')
[ "$P_UUID" != "$(vsh domuuid "$A")" ] || fail "(1) a new identity keeps the UUID"
! vsh dominfo "$A2" >/dev/null 2>&1 || fail "(1) the plan defined $A2"
[ -z "$(ls -A "$D2")" ] || fail "(1) the plan wrote into $D2: $(ls -A "$D2")"
api GET "/api/v1/restores/plans/$PLAN"
[ "$CODE" = 200 ] || fail "(1) GET plan: HTTP $CODE"
[ "$(jget 'j["plan"]["vms"][0]["uuid"]' "$WORK/resp")" = "$P_UUID" ] || fail "(1) GET plan differs"
ok "(1) plan $PLAN: $A2 in $D2 on $NET, uuid $P_UUID, mac $P_MAC; nothing changed"
AS=auditor api POST "/api/v1/restores/vm/plan" '{"repository": "main", "point": "'"$SNAP"'"}'
[ "$CODE" = 403 ] || fail "(1) a plan as an auditor: HTTP $CODE, expected 403"
ok "(1) an auditor may read the plan but not make one (403)"

run_plan vm "$PLAN"
wait_job "$JOB" succeeded
[ "$(jget 'j["kind"]' "$WORK/job.json")" = restore-vm ] || fail "(1) job kind"
[ "$(vsh domuuid "$A2")" = "$P_UUID" ] || fail "(1) $A2 has UUID $(vsh domuuid "$A2"), the plan $P_UUID"
vsh dumpxml --inactive "$A2" >"$WORK/a2.xml"
contains "$WORK/a2.xml" "<mac address='$P_MAC'/>" "(1) $A2 has the plan's MAC"
contains "$WORK/a2.xml" "$D2/$A2-vda.qcow2" "(1) $A2's disk is the plan's"
qemu-img convert -U -f qcow2 -O raw "$D2/$A2-vda.qcow2" "$WORK/a2-vda.raw" || fail "(1) convert"
same_file "$REF/a-vda.raw" "$WORK/a2-vda.raw" "(1) restored disk"
api POST /api/v1/restores/vm '{"plan": "'"$PLAN"'"}'
[ "$CODE" = 409 ] || fail "(1) the plan again: HTTP $CODE, expected 409"
contains "$WORK/resp" "already ran as job $JOB" "(1) a plan runs once"
ok "(1) job $JOB defined $A2 with the plan's UUID, MAC and disk (byte-identical); a second run is 409"

# ------------------------------------------------ (2) the name is taken since
D3=$ST/a3
mkdir -p "$D3" && chmod 755 "$D3"
plan vm '{"repository": "main", "point": "'"$SNAP"'", "name": "'"$A3"'",
  "new_identity": true, "storage_dir": "'"$D3"'"}' p2
[ "$(pj p2 'j["conflicts"]')" = 0 ] || fail "(2) plan: $(cat "$WORK/p2.json")"
# Another domain takes the name: a copy of A's definition, no UUID or MAC.
vsh dumpxml --inactive "$A" |
  sed -e "s#<name>$A</name>#<name>$A3</name>#" -e '/<uuid>/d' -e '/<mac address/d' \
    -e "s#$VMDIR/$A-vda.qcow2#$WORK/other.qcow2#" >"$WORK/a3.xml"
qemu-img create -q -f qcow2 "$WORK/other.qcow2" 64M
vsh define "$WORK/a3.xml" >/dev/null || fail "(2) define the other $A3"
OTHER_UUID=$(vsh domuuid "$A3")
run_plan vm "$PLAN"
wait_job "$JOB" failed
contains "$WORK/job.json" "a domain named $A3 appeared" "(2) the job names what changed"
[ "$(vsh domuuid "$A3")" = "$OTHER_UUID" ] || fail "(2) the other $A3 was touched"
[ -z "$(ls -A "$D3")" ] || fail "(2) the failed run wrote: $(ls -A "$D3")"
ok "(2) a plan whose name was taken since fails naming it, nothing written"

# ------------------------------------------------ (3) files of /etc
OUT=$WORK/restored
plan files '{"repository": "main", "point": "'"$SNAP_ETC"'", "paths": ["/etc"],
  "target": "'"$OUT"'"}' p3
[ "$(pj p3 'j["conflicts"]')" = 0 ] || fail "(3) plan: $(head -c 3000 "$WORK/p3.json")"
[ "$(pj p3 '[e["action"] for e in j["plan"]["planned"] if e["path"] == "etc/hostname"][0]')" = create ] ||
  fail "(3) the plan does not create etc/hostname"
want=$(find "$SRC/etc" -type f | wc -l)
[ "$(pj p3 'j["plan"]["files"] + j["plan"]["hardlinks"]')" = "$want" ] ||
  fail "(3) the plan counts $(pj p3 'j["plan"]["files"]') files, the source has $want"
[ ! -e "$OUT" ] || fail "(3) the plan made $OUT"
run_plan files "$PLAN"
wait_job "$JOB" succeeded
diff -r --no-dereference "$SRC/etc" "$OUT/etc" >"$WORK/diff.txt" 2>&1 ||
  fail "(3) restored /etc differs: $(head -20 "$WORK/diff.txt")"
[ "$(stat -c %a "$SRC/etc/passwd")" = "$(stat -c %a "$OUT/etc/passwd")" ] || fail "(3) mode of passwd"
ok "(3) /etc from the image point: planned ($want files), restored equal to the source"

# ------------------------------------------------ (4) bad requests, openapi
api POST /api/v1/restores/vm/plan '{"repository": "main", "point": "'"$SNAP"'", "colour": 1}'
[ "$CODE" = 400 ] || fail "(4) unknown field: HTTP $CODE"
contains "$WORK/resp" "colour" "(4) the 400 names the field"
api POST /api/v1/restores/files/plan '{"repository": "main", "point": "'"$SNAP_ETC"'", "paths": ["/etc"], "target": "/tmp/../etc"}'
[ "$CODE" = 400 ] || fail "(4) a target with ..: HTTP $CODE"
api POST /api/v1/restores/vm '{"plan": "0123456789abcdef0123456789abcdef"}'
[ "$CODE" = 404 ] || fail "(4) an unknown plan: HTTP $CODE"
api GET /api/v1/openapi.json
for p in vm/plan vm host/plan host files/plan files; do
  [ "$(jget 'j["paths"]["/api/v1/restores/'"$p"'"]["post"]["x-haven-role"]' "$WORK/resp")" = operator ] ||
    fail "(4) openapi.json: /api/v1/restores/$p"
done
[ "$(jget 'j["paths"]["/api/v1/restores/plans/{id}"]["get"]["x-haven-role"]' "$WORK/resp")" = auditor ] ||
  fail "(4) openapi.json: plans/{id}"
ok "(4) bad requests 400/404; the restore routes in openapi.json with their roles"

echo "PASS: $PASS checks"
