# Shared start of the tests of agents reporting to an appliance across a
# network (agent_test.sh, agent_vm_test.sh). Source it after lib.sh (or
# libvirt_lib.sh) and havend_lib.sh. It defines:
#   agent_net_up          namespaces $APP and $AGT joined by a veth pair
#                         ($APP_IP, $AGT_IP), checked to carry traffic
#   agent_net_down        removes them (call it from the test's trap)
#   serve NAME [ARGS]     havend inside $APP on every address of it (DPID,
#                         PORT, FP; the repository main=$R)
#   enroll_token NAME [KIND]  a one-time token into $WORK/enroll.NAME
#   agent NAME ARGS...    `haven agent ARGS --state-dir $WORK/agent.NAME`
#                         inside $AGT
#   enroll NAME FP [KIND] enroll agent NAME (guest or host) with fingerprint
#                         FP (run: RC)
#   cred NAME             $WORK/cred.NAME: the agent's Authorization header
#   AS NAME CURL-ARGS...  curl inside $AGT as agent NAME
# and after serve: APPLIANCE (the agents' URL), LOCAL and ADMIN (curl as the
# admin token inside $APP).
TAG=$$
APP=havapp$TAG
AGT=havagt$TAG
VA=hva$TAG
VB=hvb$TAG
NET=10.231.$((TAG % 250)).
APP_IP=${NET}1
AGT_IP=${NET}2

agent_net_down() {
  ip netns del "$AGT" 2>/dev/null
  ip netns del "$APP" 2>/dev/null
  ip link del "$VA" 2>/dev/null
  return 0
}

agent_net_up() {
  ip netns add "$APP" || fail "ip netns add $APP"
  ip netns add "$AGT" || fail "ip netns add $AGT"
  ip link add "$VA" type veth peer name "$VB" || fail "ip link add veth"
  ip link set "$VA" netns "$APP"
  ip link set "$VB" netns "$AGT"
  ip -n "$APP" addr add "$APP_IP/30" dev "$VA"
  ip -n "$AGT" addr add "$AGT_IP/30" dev "$VB"
  local ns
  for ns in "$APP" "$AGT"; do ip -n "$ns" link set lo up; done
  ip -n "$APP" link set "$VA" up
  ip -n "$AGT" link set "$VB" up
  # A refused connection to an unused port proves the pair carries traffic.
  local reached=0 said _
  for _ in $(seq 20); do
    said=$(ip netns exec "$AGT" bash -c "exec 3<>/dev/tcp/$APP_IP/9" 2>&1 || true)
    if [[ $said == *refused* ]]; then
      reached=1
      break
    fi
    sleep 0.25
  done
  [ $reached = 1 ] || fail "the veth pair does not carry traffic (no answer from $APP_IP)"
}

serve() {
  local name=$1
  shift
  ip netns exec "$APP" "$HAVEND" serve --state-dir "$STATE" --repository "main=$R" \
    --password-file "$WORK/pw" --libvirt-uri test:///default "$@" \
    >"$WORK/$name.out" 2>"$WORK/$name.log" &
  DPID=$!
  local _
  for _ in $(seq 150); do
    grep -q "listening on" "$WORK/$name.out" 2>/dev/null && break
    kill -0 "$DPID" 2>/dev/null || fail "havend exited: $(cat "$WORK/$name.log")"
    sleep 0.1
  done
  PORT=$(sed -n 's#^listening on https://[^ ]*:\([0-9]*\)/$#\1#p' "$WORK/$name.out")
  [ -n "$PORT" ] || fail "no 'listening on' line: $(cat "$WORK/$name.out")"
  FP=$(sed -n 's/^certificate SHA-256 fingerprint: //p' "$WORK/$name.out")
  [[ $FP == SHA256:* ]] || fail "no fingerprint line: $(cat "$WORK/$name.out")"
  APPLIANCE=https://$APP_IP:$PORT
  LOCAL=https://127.0.0.1:$PORT
  ADMIN=(ip netns exec "$APP" curl -sS --max-time 60 --cacert "$STATE/cert.pem"
    -H "@$WORK/token.admin" -H 'Content-Type: application/json')
}

enroll_token() {
  local code
  code=$("${ADMIN[@]}" -o "$WORK/body" -w '%{http_code}' \
    --data "{\"name\": \"$1\", \"kind\": \"${2:-guest}\"}" "$LOCAL/api/v1/agents/enrollments")
  [ "$code" = 201 ] || fail "enrollment token for $1: HTTP $code $(cat "$WORK/body")"
  (umask 077 && jget 'j["token"]' "$WORK/body" >"$WORK/enroll.$1")
}

agent() {
  local name=$1
  shift
  ip netns exec "$AGT" "$HAVEN" agent "$@" --state-dir "$WORK/agent.$name"
}

enroll() {
  local name=$1 fp=$2
  HAVEN_ENROLL_TOKEN=$(cat "$WORK/enroll.$name") run agent "$name" enroll "$APPLIANCE" \
    --fingerprint "$fp" --name "$name" --kind "${3:-guest}"
}

cred() {
  (umask 077 && jget '"Authorization: Bearer " + j["credential"]' "$WORK/agent.$1/agent.json" >"$WORK/cred.$1")
}
AS() { local who=$1; shift; ip netns exec "$AGT" curl -sS --max-time 60 -k -H "@$WORK/cred.$who" "$@"; }
