#!/usr/bin/env bash
# havend's hosts and VMs over real HTTPS on loopback with real libvirt
# (issue 16, point 2): a running VM (prefix hdata-) whose vda is an ext4
# file system holding a copy of /etc is backed up twice with `haven backup
# vm` — once as this host, once in a UTS namespace named as a lost host.
#  - hosts: this host (reachable, its VMs, its points) and the lost host,
#    known only from its point, with the host facts recorded in it
#  - hosts/{host}/vms: the VM running here with its latest point; on the
#    lost host with that host's point; last_attempt from the job history
#    tables (jobs, job_items) when they exist, failed when the last backup
#    job item of the VM failed
#  - points?kind=vm, show with domain XML, network XML and host facts
#  - the VM point's vda browsed and /etc/passwd downloaded byte-identical
# All as an auditor's token (the least role that reads); 401 without one.
. "$(dirname "$0")/libvirt_lib.sh" curl sqlite3 mke2fs unshare
. "$(dirname "$0")/havend_lib.sh"

VM=hdata-$$
NET=hdata-net-$$
LOST=hdata-lost-$$
DPID=
chmod 711 "$WORK"
cleanup() {
  set +e
  [ -n "$DPID" ] && { kill -9 "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null; }
  haven_cleanup_vm "$VM"
  haven_cleanup_network "$NET"
  rm -rf "$WORK"
}
trap cleanup EXIT
R=$WORK/repo
hv() { "$HAVEN" -r "$R" "$@"; }
HOST=$(hostname)

# ---------------------------------------------------------------- the VM
SRC=$WORK/root
mkdir -p "$SRC" "$WORK/vms"
cp -a /etc "$SRC/etc"
truncate -s 48M "$WORK/base.raw"
mke2fs -q -F -t ext4 -d "$SRC" "$WORK/base.raw"
expect_rc 0 "init" hv init
haven_make_network "$NET" "hd$$" || fail "could not create network $NET"
HAVEN_VM_VDB_SIZE=0 haven_make_vm "$VM" "$WORK/vms" "$NET" "$WORK/base.raw" ||
  fail "could not create VM $VM"
expect_rc 0 "backup vm" hv --json backup vm "$VM"
P1=$(jget "next(v for v in j['vms'] if v['name'] == '$VM')['snapshot']" "$WORK/out")
# The same VM backed up by a host that is gone since: its points are all
# that is left of it.
expect_rc 0 "backup vm as the lost host" unshare -u sh -c 'hostname "$1" && shift && exec "$@"' \
  - "$LOST" "$HAVEN" -r "$R" --json backup vm "$VM"
P2=$(jget "next(v for v in j['vms'] if v['name'] == '$VM')['snapshot']" "$WORK/out")
[ ${#P1} = 32 ] && [ ${#P2} = 32 ] || fail "point ids '$P1' '$P2'"
ok "VM $VM backed up as $HOST ($P1) and as $LOST ($P2)"

# ---------------------------------------------------------------- havend
echo "$HAVEN_PASSWORD" >"$WORK/pw"
chmod 600 "$WORK/pw"
STATE=$WORK/state
havend_token auditor vms-auditor
havend_start d --repository "main=$R" --password-file "$WORK/pw" --libvirt-uri qemu:///system
URL=$URL/api/v1
CODE=$(curl -sS --max-time 30 --cacert "$STATE/cert.pem" -o "$WORK/body" -w '%{http_code}' "$URL/hosts")
[ "$CODE" = 401 ] || fail "GET /hosts without credentials: HTTP $CODE"
get() {
  CODE=$(curl -sS --max-time 30 --cacert "$STATE/cert.pem" -H "@$WORK/token.auditor" \
    -o "$WORK/body" -w '%{http_code}' "$URL$1")
  [ "$CODE" = "${2:-200}" ] || fail "GET $1: HTTP $CODE: $(head -c 2000 "$WORK/body")"
}
# hj EXPR: over the host entry named $H of $WORK/body
hj() { jget "(lambda h: ($1))(next(h for h in j['hosts'] if h['name'] == '$H'))" "$WORK/body"; }
# vj EXPR: over the VM entry $VM of $WORK/body
vj() { jget "(lambda v: ($1))(next(v for v in j['vms'] if v['name'] == '$VM'))" "$WORK/body"; }

# ---------------------------------------------------------------- hosts
get /hosts
H=$HOST
[ "$(hj 'h["local"], h["reachable"], h["vms"] >= 1, h["points"], h["vms_with_points"]')" = \
  "(True, True, True, 1, 1)" ] || fail "local host: $(cat "$WORK/body")"
H=$LOST
[ "$(hj 'h["local"], h["points"], h["facts"]["uri"], h["facts"]["hypervisor"] != ""')" = \
  "(False, 1, 'qemu:///system', True)" ] || fail "lost host: $(cat "$WORK/body")"
ok "hosts: $HOST (libvirt reachable, 1 point) and the lost $LOST with its recorded facts"

get "/hosts/$HOST/vms"
[ "$(vj 'v["defined"], v["state"], v["points"], v["last_point"]["id"], v["last_attempt"]')" = \
  "(True, 'running', 1, '$P1', None)" ] || fail "vms of $HOST: $(cat "$WORK/body")"
get "/hosts/$LOST/vms"
[ "$(vj 'v["defined"], v["points"], v["last_point"]["id"], v["last_point"]["consistency"] != ""')" = \
  "(None, 1, '$P2', True)" ] || fail "vms of $LOST: $(cat "$WORK/body")"
get "/hosts/hdata-nowhere-$$/vms" 404
ok "hosts/{host}/vms: $VM running here with its latest point; on $LOST with that host's point; unknown host 404"

# The job history (the jobs part of havend owns these tables): the VM's
# last backup job item decides last_attempt_failed.
sqlite3 "$STATE/havend.db" <<SQL
CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,
  repository TEXT NOT NULL, params TEXT NOT NULL, requested_by TEXT NOT NULL,
  schedule_id INTEGER, state TEXT NOT NULL, queued_at TEXT NOT NULL, started_at TEXT,
  ended_at TEXT, duration_seconds REAL, error TEXT, read_bytes INTEGER NOT NULL DEFAULT 0,
  new_bytes INTEGER NOT NULL DEFAULT 0, stored_bytes INTEGER NOT NULL DEFAULT 0, result TEXT);
CREATE TABLE IF NOT EXISTS job_items (job_id INTEGER NOT NULL, seq INTEGER NOT NULL,
  name TEXT NOT NULL, outcome TEXT NOT NULL, error TEXT, read_bytes INTEGER NOT NULL DEFAULT 0,
  new_bytes INTEGER NOT NULL DEFAULT 0, stored_bytes INTEGER NOT NULL DEFAULT 0, detail TEXT,
  PRIMARY KEY (job_id, seq));
INSERT INTO jobs (id, kind, repository, params, requested_by, state, queued_at, ended_at)
  VALUES (1, 'backup', 'main', '{}', 'test', 'succeeded', '2026-12-07T01:00:00Z', '2026-12-07T01:01:00Z'),
         (2, 'backup', 'main', '{}', 'test', 'partial', '2026-12-07T02:00:00Z', '2026-12-07T02:01:00Z');
INSERT INTO job_items (job_id, seq, name, outcome, error) VALUES
  (1, 1, '$VM', 'ok', NULL), (2, 1, '$VM', 'failed', 'disk vda: NBD export went away');
SQL
get "/hosts/$HOST/vms"
[ "$(vj 'v["last_attempt_failed"], v["last_attempt"]["job"], v["last_attempt"]["error"]')" = \
  "(True, 2, 'disk vda: NBD export went away')" ] || fail "last attempt: $(cat "$WORK/body")"
ok "last_attempt_failed from the job history: the VM's latest backup job item failed"

# Overdue, by the rule of overdue notifications (appliance/overdue.h): an
# hourly schedule names the VM, whose last success (job 1) is hours old.
# Not persistent, so the scheduler does not catch a run up while we look.
[ "$(vj 'v["overdue"]')" = None ] || fail "overdue without a schedule: $(cat "$WORK/body")"
sqlite3 "$STATE/havend.db" <<SQL
INSERT INTO schedules (name, calendar, normalized, kind, repository, params, persistent,
  anchor, created, changed)
  VALUES ('hourly-$$', 'hourly', '*-*-* *:00:00', 'backup', 'main', '{"vms":["$VM"]}', 0,
          0, 0, 0);
SQL
get "/hosts/$HOST/vms"
[ "$(vj 'v["overdue"]["schedule"], v["overdue"]["repository"], v["overdue"]["expected_interval_seconds"], v["overdue"]["last_success"][:10]')" = \
  "('hourly-$$', 'main', 3600, '2026-12-07')" ] || fail "overdue: $(cat "$WORK/body")"
get "/hosts/$LOST/vms"
[ "$(vj 'v["overdue"]')" = None ] || fail "overdue on the lost host: $(cat "$WORK/body")"
ok "overdue: the VM an hourly schedule names, last success hours ago, is overdue here; not on the lost host"

# ---------------------------------------------------------------- points
get "/points?kind=vm&vm=$VM"
[ "$(jget '[p["id"] for p in j["points"]]' "$WORK/body")" = "[\"$P2\", \"$P1\"]" ] ||
  fail "vm points: $(cat "$WORK/body")"
get "/points?kind=vm&agent=$LOST"
[ "$(jget '[p["id"] for p in j["points"]]' "$WORK/body")" = "[\"$P2\"]" ] || fail "agent: $(cat "$WORK/body")"
get "/points/main/$P1"
jget 'j["domain_xml"]' "$WORK/body" >"$WORK/dom"
contains "$WORK/dom" "<name>$VM</name>" "domain XML of the point"
[ "$(jget "'<name>$NET</name>' in j['network_xml']['$NET'], j['host_facts']['uri'], j['disks'][0]['name']" "$WORK/body")" = \
  "(True, 'qemu:///system', 'vda')" ] || fail "show: $(head -c 3000 "$WORK/body")"
ok "points of the VM by kind, name and agent; show has its domain XML, network XML and host facts"

get "/points/main/$P1/files?disk=vda&path=/etc"
jget '"\n".join(sorted(e["name"] for e in j["entries"]))' "$WORK/body" | LC_ALL=C sort >"$WORK/listed"
(cd "$SRC/etc" && LC_ALL=C ls -A | LC_ALL=C sort) >"$WORK/want"
same_file "$WORK/listed" "$WORK/want" "names of /etc in the VM's disk"
get "/points/main/$P1/download?disk=vda&path=/etc/passwd"
same_file "$WORK/body" "$SRC/etc/passwd" "passwd from the VM point"
ok "the VM point's vda browsed (/etc as the source) and /etc/passwd downloaded byte-identical"

kill -TERM "$DPID"
wait "$DPID" || fail "havend exit code $?"
DPID=
