#!/usr/bin/env bash
# havend's GET /api/v1/hosts/{host}/networks and /pools over real HTTPS on
# loopback with real libvirt (issue 17, the restore wizards' network
# mapping and storage choice), as an auditor's token:
#  - networks: an isolated network (active, its bridge, forward
#    "isolated"), a defined NAT network that is never started (active false,
#    forward "nat"); a network stopped since is listed as not active
#  - pools: an active folder pool is usable with its path; a stopped one
#    is not, and says how to start it
#  - another host is 404 (its networks are not known here); 401 without
#    credentials
. "$(dirname "$0")/libvirt_lib.sh" curl
. "$(dirname "$0")/havend_lib.sh"

NET=hres-net-$$
NAT=hres-nat-$$
POOL=hres-pool-$$
OFF=hres-off-$$
DPID=
chmod 711 "$WORK"
cleanup() {
  set +e
  havend_kill
  haven_cleanup_network "$NET"
  haven_cleanup_network "$NAT"
  for p in "$POOL" "$OFF"; do
    virsh -q -c qemu:///system pool-destroy "$p" >/dev/null 2>&1
    virsh -q -c qemu:///system pool-undefine "$p" >/dev/null 2>&1
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
HOST=$(hostname)
vsh() { virsh -q -c qemu:///system "$@" >"$WORK/virsh.out" 2>&1 || fail "virsh $*: $(cat "$WORK/virsh.out")"; }

haven_make_network "$NET" "hr$$" || fail "could not create network $NET"
cat >"$WORK/nat.xml" <<EOF
<network>
  <name>$NAT</name>
  <forward mode='nat'/>
  <bridge name='hn$$' stp='on' delay='0'/>
  <ip address='192.168.253.1' netmask='255.255.255.0'/>
</network>
EOF
vsh net-define "$WORK/nat.xml"
mkdir -p "$WORK/pool" "$WORK/off"
vsh pool-define-as "$POOL" dir --target "$WORK/pool"
vsh pool-start "$POOL"
vsh pool-define-as "$OFF" dir --target "$WORK/off"
ok "networks $NET (running, isolated) and $NAT (defined, NAT); pools $POOL (running) and $OFF (stopped)"

R=$WORK/repo
"$HAVEN" -r "$R" init >/dev/null 2>&1 || fail "init"
havend_repo_password
STATE=$WORK/state
havend_token auditor hres-auditor
havend_start d --repository "main=$R" --password-file "$WORK/pw" --libvirt-uri qemu:///system
URL=$URL/api/v1
get() {
  CODE=$(curl -sS --max-time 30 --cacert "$STATE/cert.pem" -H "@$WORK/token.auditor" \
    -o "$WORK/body" -w '%{http_code}' "$URL$1")
  [ "$CODE" = "${2:-200}" ] || fail "GET $1: HTTP $CODE: $(head -c 2000 "$WORK/body")"
}
# nj NAME EXPR: EXPR over the entry NAME of the body's list KEY (networks|pools)
nj() { jget "(lambda x: ($3))(next(x for x in j['$1'] if x['name'] == '$2'))" "$WORK/body"; }

CODE=$(curl -sS --max-time 30 --cacert "$STATE/cert.pem" -o "$WORK/body" -w '%{http_code}' \
  "$URL/hosts/$HOST/networks")
[ "$CODE" = 401 ] || fail "networks without credentials: HTTP $CODE"

get "/hosts/$HOST/networks"
[ "$(jget 'j["host"]' "$WORK/body")" = "$HOST" ] || fail "host: $(cat "$WORK/body")"
[ "$(nj networks "$NET" 'x["active"], x["bridge"], x["forward"]')" = "(True, 'hr$$', 'isolated')" ] ||
  fail "$NET: $(cat "$WORK/body")"
[ "$(nj networks "$NAT" 'x["active"], x["bridge"], x["forward"], x["autostart"]')" = \
  "(False, 'hn$$', 'nat', False)" ] || fail "$NAT: $(cat "$WORK/body")"
vsh net-destroy "$NET"
get "/hosts/$HOST/networks"
[ "$(nj networks "$NET" 'x["active"]')" = false ] || fail "$NET stopped: $(cat "$WORK/body")"
ok "networks: $NET active, isolated, bridge hr$$; $NAT defined, NAT; $NET not active once stopped"

get "/hosts/$HOST/pools"
[ "$(nj pools "$POOL" 'x["active"], x["type"], x["path"], x["usable"], x["why_not"]')" = \
  "(True, 'dir', '$WORK/pool', True, '')" ] || fail "$POOL: $(cat "$WORK/body")"
[ "$(nj pools "$OFF" 'x["active"], x["usable"], "pool-start" in x["why_not"]')" = \
  "(False, False, True)" ] || fail "$OFF: $(cat "$WORK/body")"
ok "pools: $POOL usable at its folder; $OFF not active, with how to start it"

get "/hosts/hres-nowhere-$$/networks" 404
contains "$WORK/body" "is not this host" "404 for another host"
get "/hosts/hres-nowhere-$$/pools" 404
ok "another host: 404 (no host agents: only this host's libvirt is asked)"

havend_stop d
echo "PASS: $PASS"
