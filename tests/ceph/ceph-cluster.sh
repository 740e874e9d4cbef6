#!/usr/bin/env bash
# A throw-away single-node Ceph cluster (1 mon, 1 mgr, 1 file-backed BlueStore
# OSD, radosgw/S3) on 127.0.0.1, for Haven's object-store integration tests.
#
#   ceph-cluster.sh start  DIR   bring it up under DIR, create users/buckets, write DIR/s3.env
#   ceph-cluster.sh stop   DIR   kill every daemon started under DIR, remove DIR
#   ceph-cluster.sh status DIR   print "ok" (exit 0) or "not running" (exit 1)
#   ceph-cluster.sh check  DIR   probe the RGW behaviours listed in README.md
#
# Everything (config, keyring, data, logs, admin sockets, pid files) lives
# under DIR; /etc/ceph and /var/lib/ceph are never used. `start` exits 77 when
# the Ceph packages are missing and cannot be installed (tests skip on 77).
set -euo pipefail

PROG=${0##*/}
die() { echo "$PROG: $*" >&2; exit 1; }
log() { echo "$PROG: $*" >&2; }
usage() { echo "usage: $PROG start|stop|status|check DIR" >&2; exit 2; }

[ $# -eq 2 ] || usage
CMD=$1
DIR=$2
[ -n "$DIR" ] || usage
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
DIR=${DIR%/}
[ -n "$DIR" ] && [ "$DIR" != / ] || die "refusing to use / as DIR"

CONF="$DIR/ceph.conf"
MARK="$DIR/.haven-ceph-cluster"   # only directories carrying this are ever removed
PIDS="$DIR/pids"
REGION=us-east-1
RGW_NAME=client.rgw.haven
START_TIMEOUT=${HAVEN_CEPH_START_TIMEOUT:-180}

NEEDED_BINS=(ceph ceph-mon ceph-mgr ceph-osd radosgw radosgw-admin monmaptool ceph-authtool curl openssl)
NEEDED_PKGS=(ceph-mon ceph-mgr ceph-osd radosgw ceph-common curl openssl)

have_bins() {
  local b
  for b in "${NEEDED_BINS[@]}"; do command -v "$b" >/dev/null 2>&1 || return 1; done
}

ensure_packages() {
  have_bins && return 0
  if [ -z "${HAVEN_CEPH_NO_INSTALL:-}" ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "Ceph packages missing; trying apt-get install ${NEEDED_PKGS[*]}"
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y --no-install-recommends "${NEEDED_PKGS[@]}" \
      >/dev/null 2>&1 || true
  fi
  if ! have_bins; then
    echo "$PROG: SKIP: Ceph is not installed (need ${NEEDED_PKGS[*]}; see scripts/install-deps.sh)" >&2
    exit 77
  fi
}

cephc() { timeout 30 ceph -c "$CONF" --connect-timeout 20 "$@"; }
rgwadmin() { timeout 60 radosgw-admin -c "$CONF" "$@"; }

# --- ports -------------------------------------------------------------------
port_free() {
  # nothing listening on it (any address) and not in use by a connection
  [ -z "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]
}
pick_port() {
  local p i avoid=${1:-0}
  for i in $(seq 1 200); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    [ "$p" -ne "$avoid" ] || continue
    port_free "$p" && { echo "$p"; return 0; }
  done
  die "no free port found"
}

# --- process bookkeeping -------------------------------------------------------
launch() {  # name command...: run a daemon in the foreground (-f), detached in its own session
  local name=$1; shift
  # In a non-interactive shell a background job is not a process-group leader,
  # so setsid execs in place and $! is the daemon's pid.
  setsid "$@" -f </dev/null >>"$DIR/log/$name.stdio" 2>&1 &
  echo $! >"$PIDS/$name.pid"
  disown $! 2>/dev/null || true
  sleep 0.2
  kill -0 "$(cat "$PIDS/$name.pid")" 2>/dev/null || die "$name exited at once (see $DIR/log)"
}

our_pids() {
  # Pids recorded at start plus any process still running with our ceph.conf
  # on its command line (covers a daemon whose pid file was never copied).
  local f p
  {
    for f in "$PIDS"/*.pid "$DIR"/run/*.pid; do
      [ -s "$f" ] || continue
      p=$(cat "$f" 2>/dev/null) || continue
      case "$p" in ''|*[!0-9]*) continue ;; esac
      # only if that pid really is one of ours
      if [ -r "/proc/$p/cmdline" ] && tr '\0' ' ' <"/proc/$p/cmdline" | grep -qF -- "$CONF"; then
        echo "$p"
      fi
    done
    pgrep -f -- "-c $CONF( |\$)" 2>/dev/null || true
  } | sort -un
}

kill_daemons() {
  # The cluster's data is thrown away right after, so there is nothing to
  # shut down cleanly: SIGKILL is immediate (a TERMed osd waits on the mon,
  # radosgw takes seconds) and cannot be ignored.
  local pids p i
  for _ in 1 2 3; do
    pids=$(our_pids)
    [ -n "$pids" ] || return 0
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    # gone (reaped) within 10 s; a zombie is dead enough after 5 s (pid 1
    # of some containers reaps orphans late)
    for i in $(seq 1 100); do
      pids=$(for p in $pids; do
        [ -d "/proc/$p" ] || continue
        [ "$i" -gt 50 ] && grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null && continue
        echo "$p"
      done)
      [ -n "$pids" ] || break
      sleep 0.1
    done
  done
  [ -z "$(our_pids)" ] || die "daemons under $DIR did not exit: $(our_pids | tr '\n' ' ')"
}

# --- S3 helpers ----------------------------------------------------------------
load_env() { [ -s "$DIR/s3.env" ] || return 1; # shellcheck disable=SC1091
  . "$DIR/s3.env"; }

rgw_answers() {  # port
  local code
  code=$(curl -s -o /dev/null -m 3 -w '%{http_code}' "http://127.0.0.1:$1/" 2>/dev/null) || return 1
  [ "$code" = 200 ]
}

# s3 KEY SECRET curl-args...   (prints body; -w etc. as given)
s3() {
  local k=$1 s=$2 a sha=(-H "x-amz-content-sha256: UNSIGNED-PAYLOAD"); shift 2
  # RGW rejects SigV4 without x-amz-content-sha256 (SignatureDoesNotMatch) and
  # curl 7.88 does not add it; curl signs the value given here as the payload hash.
  for a in "$@"; do case "$a" in [Xx]-[Aa]mz-[Cc]ontent-[Ss]ha256:*) sha=() ;; esac; done
  curl -sS -m 30 --aws-sigv4 "aws:amz:$REGION:s3" --user "$k:$s" "${sha[@]}" "$@"
}
s3code() {  # KEY SECRET curl-args... -> prints the HTTP status only
  local k=$1 s=$2; shift 2
  s3 "$k" "$s" -o /dev/null -w '%{http_code}' "$@"
}
# curl 7.88's SigV4 puts the query string into the canonical request as given:
# subresources need "=" (?policy=, ?uploads=), parameters must be in sorted
# order and values percent-encoded (RFC 3986 unreserved kept).
urlenc() {
  local s=$1 out="" c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case "$c" in [A-Za-z0-9._~-]) out+=$c ;; *) out+=$(printf '%%%02X' "'$c") ;; esac
  done
  printf '%s' "$out"
}
md5b64() { openssl md5 -binary "$1" | base64; }
expect() {  # what got want
  if [ "$2" = "$3" ]; then echo "  ok   $1 ($2)"; else echo "  FAIL $1: got $2, want $3"; FAILED=1; fi
}

# --- start -----------------------------------------------------------------------
write_conf() {
  local fsid=$1 monport=$2 rgwport=$3 store=$4
  cat >"$CONF" <<EOF
# Generated by tests/ceph/ceph-cluster.sh: a throw-away single-node test cluster.
[global]
fsid = $fsid
mon_host = v2:127.0.0.1:$monport
public_addr = 127.0.0.1
public_network = 127.0.0.1/32
ms_bind_msgr1 = false
ms_bind_ipv6 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
keyring = $DIR/keyring
run_dir = $DIR/run
admin_socket = $DIR/run/\$cluster-\$name.asok
pid_file = $DIR/run/\$name.pid
log_file = $DIR/log/\$name.log
crash_dir = $DIR/crash
exporter_sock_dir = $DIR/run
log_to_stderr = false
err_to_stderr = false
log_to_syslog = false
mon_cluster_log_to_file = true
mon_cluster_log_file = $DIR/log/cluster.log
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_max_pg_per_osd = 1000
mon_warn_on_pool_no_redundancy = false
mon_warn_on_insecure_global_id_reclaim = false
mon_warn_on_insecure_global_id_reclaim_allowed = false
paxos_propose_interval = 0.2
mgr_initial_modules = iostat
mon_data_avail_warn = 2
mon_data_avail_crit = 1

[mon]
mon_data = $DIR/mon
mon_initial_members = a

[mgr]
mgr_data = $DIR/mgr
mgr/devicehealth/enable_monitoring = false

[osd]
osd_data = $DIR/osd
osd_objectstore = $store
bluestore_block_path = $DIR/osd-block.img
bluestore_block_create = true
bluestore_block_size = 10737418240
bluestore_block_db_create = false
bluestore_block_wal_create = false
bluestore_fsck_on_mount = false
bluestore_cache_autotune = true
osd_memory_target = 939524096
osd_memory_cache_min = 134217728
memstore_device_bytes = 2147483648
osd_op_num_shards = 2
osd_op_num_threads_per_shard = 1
osd_scrub_auto_repair = false
osd_scrub_begin_hour = 0
osd_scrub_end_hour = 0
osd_class_update_on_start = false

[$RGW_NAME]
# radosgw defaults ms_mon_client_mode to secure, which auth 'none' cannot do
ms_mon_client_mode = crc
rgw_frontends = beast endpoint=127.0.0.1:$rgwport
rgw_data = $DIR/rgw
rgw_dns_name = localhost
rgw_thread_pool_size = 64
rgw_enable_usage_log = false
rgw_enable_ops_log = false
EOF
}

start_cluster() {
  ensure_packages
  command -v ss >/dev/null 2>&1 || die "ss (iproute2) is needed to find free ports"

  if load_env && rgw_answers "${HAVEN_S3_ENDPOINT##*:}"; then
    log "already running ($HAVEN_S3_ENDPOINT)"; return 0
  fi
  if [ -d "$DIR" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
    [ -e "$MARK" ] || die "$DIR is not empty and not a cluster directory of this script"
    log "cleaning up a stale cluster in $DIR"
    stop_cluster
  fi

  local t0=$SECONDS
  mkdir -p "$DIR"
  : >"$MARK"
  mkdir -p "$DIR"/{mon,mgr,osd,rgw,run,log,crash,pids}

  local fsid monport rgwport store=bluestore fstype
  fsid=$(cat /proc/sys/kernel/random/uuid)
  monport=$(pick_port)
  rgwport=$(pick_port "$monport")
  # BlueStore opens its block file with O_DIRECT, which tmpfs does not support.
  fstype=$(stat -f -c %T "$DIR")
  if [ "$fstype" = tmpfs ]; then store=memstore; log "$DIR is on tmpfs: using memstore (RAM) for the OSD"; fi
  write_conf "$fsid" "$monport" "$rgwport" "$store"

  # shellcheck disable=SC2154
  trap 'rc=$?; if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then log "start failed; logs in $DIR/log"; tail -n 20 "$DIR"/log/*.log >&2 2>/dev/null || true; [ -n "${HAVEN_CEPH_KEEP_ON_FAIL:-}" ] || kill_daemons || true; fi' EXIT

  # keyring (auth is off, but mkfs paths still like to find one)
  ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$DIR/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
    --cap mgr 'allow *' --cap mds 'allow *' >/dev/null

  # mon
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$monport]" "$DIR/monmap" >/dev/null
  ceph-mon -c "$CONF" -i a --mkfs --monmap "$DIR/monmap" --keyring "$DIR/keyring" >>"$DIR/log/mkfs.log" 2>&1 \
    || die "ceph-mon --mkfs failed (see $DIR/log)"
  launch mon.a ceph-mon -c "$CONF" -i a
  local i
  for i in $(seq 1 60); do cephc mon stat >/dev/null 2>&1 && break; sleep 0.5; done
  cephc mon stat >/dev/null 2>&1 || die "mon did not come up"
  log "mon up on 127.0.0.1:$monport ($((SECONDS - t0)) s)"

  # mgr
  launch mgr.x ceph-mgr -c "$CONF" -i x

  # osd
  local osduuid osdid
  osduuid=$(cat /proc/sys/kernel/random/uuid)
  osdid=$(cephc osd new "$osduuid") || die "ceph osd new failed"
  [ "$osdid" = 0 ] || die "unexpected osd id $osdid"
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osduuid" >>"$DIR/log/mkfs.log" 2>&1 \
    || die "ceph-osd --mkfs failed (see $DIR/log)"
  launch osd.0 ceph-osd -c "$CONF" -i 0
  for i in $(seq 1 120); do
    [ "$(cephc osd stat -f json 2>/dev/null | sed -n 's/.*"num_up_osds":\([0-9]*\).*/\1/p')" = 1 ] && break
    sleep 0.5
  done
  [ "$(cephc osd stat -f json 2>/dev/null | sed -n 's/.*"num_up_osds":\([0-9]*\).*/\1/p')" = 1 ] \
    || die "osd.0 did not come up"
  log "osd.0 up ($((SECONDS - t0)) s)"

  # radosgw (creates the default realm/zonegroup/zone and its pools on first start)
  launch rgw radosgw -c "$CONF" -n "$RGW_NAME"
  for i in $(seq 1 240); do
    rgw_answers "$rgwport" && break
    [ $((SECONDS - t0)) -lt "$START_TIMEOUT" ] || break
    sleep 0.5
  done
  rgw_answers "$rgwport" || die "radosgw does not answer on 127.0.0.1:$rgwport"
  log "radosgw answers on 127.0.0.1:$rgwport ($((SECONDS - t0)) s)"

  # users
  local hk hs ak as
  hk=HAVEN$(openssl rand -hex 8 | tr a-f A-F); hs=$(openssl rand -hex 20)
  ak=AGENT$(openssl rand -hex 8 | tr a-f A-F); as=$(openssl rand -hex 20)
  rgwadmin user create --uid=haven --display-name="Haven backup" --access-key="$hk" --secret-key="$hs" \
    --max-buckets=1000 >/dev/null || die "radosgw-admin user create haven failed"
  rgwadmin user create --uid=agent --display-name="Haven agent" --access-key="$ak" --secret-key="$as" \
    >/dev/null || die "radosgw-admin user create agent failed"

  # buckets (as haven)
  local ep="http://127.0.0.1:$rgwport" c
  c=$(s3code "$hk" "$hs" -X PUT -H 'x-amz-bucket-object-lock-enabled: true' "$ep/haven-locked")
  [ "$c" = 200 ] || die "create bucket haven-locked: HTTP $c"
  c=$(s3code "$hk" "$hs" -X PUT "$ep/haven-plain")
  [ "$c" = 200 ] || die "create bucket haven-plain: HTTP $c"
  local policy
  policy=$(cat <<'EOF'
{"Version":"2012-10-17","Statement":[{"Sid":"agent-put-get-list","Effect":"Allow",
 "Principal":{"AWS":["arn:aws:iam:::user/agent"]},
 "Action":["s3:GetObject","s3:PutObject","s3:ListBucket"],
 "Resource":["arn:aws:s3:::haven-locked","arn:aws:s3:::haven-locked/*"]}]}
EOF
)
  c=$(s3code "$hk" "$hs" -X PUT -H 'Content-Type: application/json' --data-binary "$policy" "$ep/haven-locked?policy=")
  [ "$c" = 204 ] || [ "$c" = 200 ] || die "put bucket policy: HTTP $c"

  # wait for a healthy cluster (all PGs of rgw's pools active+clean)
  local h
  for i in $(seq 1 240); do
    h=$(cephc health 2>/dev/null || true)
    [ "${h%% *}" = HEALTH_OK ] && break
    [ $((SECONDS - t0)) -lt "$START_TIMEOUT" ] || break
    sleep 0.5
  done
  [ "${h%% *}" = HEALTH_OK ] || die "cluster not healthy: $(cephc health detail 2>&1 | head -5)"

  # self-check
  FAILED=0
  local tmp; tmp=$(mktemp -d)
  echo "hello from haven" >"$tmp/obj"
  expect "haven PUT haven-plain/selfcheck" "$(s3code "$hk" "$hs" -X PUT --data-binary @"$tmp/obj" "$ep/haven-plain/selfcheck")" 200 >&2
  s3 "$hk" "$hs" -o "$tmp/back" "$ep/haven-plain/selfcheck" || true
  cmp -s "$tmp/obj" "$tmp/back" || { echo "  FAIL haven GET haven-plain/selfcheck"; FAILED=1; }
  expect "agent PUT haven-locked/selfcheck" "$(s3code "$ak" "$as" -X PUT --data-binary @"$tmp/obj" \
      -D "$tmp/hdr" "$ep/haven-locked/selfcheck")" 200 >&2
  local vid
  vid=$(tr -d '\r' <"$tmp/hdr" | sed -n 's/^x-amz-version-id: *//Ip')
  [ -n "$vid" ] || { echo "  FAIL no x-amz-version-id on a PUT into haven-locked"; FAILED=1; }
  c=$(s3code "$ak" "$as" -X DELETE "$ep/haven-locked/selfcheck?versionId=$vid")
  [ "$c" = 403 ] || { echo "  FAIL agent DELETE ?versionId: HTTP $c, want 403"; FAILED=1; }
  c=$(s3code "$ak" "$as" -X PUT --data-binary @"$tmp/obj" "$ep/haven-plain/selfcheck")
  [ "$c" = 403 ] || { echo "  FAIL agent PUT into haven-plain: HTTP $c, want 403"; FAILED=1; }
  # clean the self-check objects up (haven may delete versions of an unlocked object)
  s3code "$hk" "$hs" -X DELETE "$ep/haven-locked/selfcheck?versionId=$vid" >/dev/null || true
  s3code "$hk" "$hs" -X DELETE "$ep/haven-plain/selfcheck" >/dev/null || true
  rm -rf "$tmp"
  [ "$FAILED" = 0 ] || die "self-check failed"

  cat >"$DIR/s3.env.tmp" <<EOF
# Written by tests/ceph/ceph-cluster.sh start $DIR
HAVEN_S3_ENDPOINT=http://127.0.0.1:$rgwport
HAVEN_S3_REGION=$REGION
HAVEN_S3_LOCKED_BUCKET=haven-locked
HAVEN_S3_PLAIN_BUCKET=haven-plain
AWS_ACCESS_KEY_ID=$hk
AWS_SECRET_ACCESS_KEY=$hs
HAVEN_S3_AGENT_KEY_ID=$ak
HAVEN_S3_AGENT_SECRET=$as
CEPH_CONF=$CONF
export HAVEN_S3_ENDPOINT HAVEN_S3_REGION HAVEN_S3_LOCKED_BUCKET HAVEN_S3_PLAIN_BUCKET
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY HAVEN_S3_AGENT_KEY_ID HAVEN_S3_AGENT_SECRET CEPH_CONF
EOF
  mv "$DIR/s3.env.tmp" "$DIR/s3.env"
  trap - EXIT
  log "ready in $((SECONDS - t0)) s: $DIR/s3.env"
}

# --- stop / status -------------------------------------------------------------------
stop_cluster() {
  [ -d "$DIR" ] || return 0
  if [ ! -e "$MARK" ]; then
    [ -z "$(ls -A "$DIR" 2>/dev/null)" ] && { rmdir "$DIR" 2>/dev/null || true; return 0; }
    die "$DIR is not a cluster directory of this script; not touching it"
  fi
  kill_daemons
  rm -rf "$DIR"
}

status_cluster() {
  if [ -e "$MARK" ] && load_env && rgw_answers "${HAVEN_S3_ENDPOINT##*:}" \
     && [ -n "$(our_pids)" ] && cephc health >/dev/null 2>&1; then
    echo "ok $HAVEN_S3_ENDPOINT ($(cephc health 2>/dev/null))"; return 0
  fi
  echo "not running"; return 1
}

# --- check: probe the RGW behaviours the S3 backend depends on ----------------------------
check_cluster() {
  load_env || die "no $DIR/s3.env; run start first"
  local ep=$HAVEN_S3_ENDPOINT hk=$AWS_ACCESS_KEY_ID hs=$AWS_SECRET_ACCESS_KEY
  local ak=$HAVEN_S3_AGENT_KEY_ID as=$HAVEN_S3_AGENT_SECRET lb=$HAVEN_S3_LOCKED_BUCKET pb=$HAVEN_S3_PLAIN_BUCKET
  local tmp c vid until port=${HAVEN_S3_ENDPOINT##*:} run
  run=$(date +%s%N)
  tmp=$(mktemp -d)
  FAILED=0
  echo "object lock $run" >"$tmp/obj"
  until=$(date -u -d '+2 min' +%Y-%m-%dT%H:%M:%SZ)

  echo "object lock, GOVERNANCE:"
  c=$(s3code "$hk" "$hs" -X PUT -D "$tmp/h" --data-binary @"$tmp/obj" -H "Content-MD5: $(md5b64 "$tmp/obj")" \
      -H 'x-amz-object-lock-mode: GOVERNANCE' -H "x-amz-object-lock-retain-until-date: $until" "$ep/$lb/gov-$run")
  expect "PUT with lock headers" "$c" 200
  vid=$(tr -d '\r' <"$tmp/h" | sed -n 's/^x-amz-version-id: *//Ip')
  s3 "$hk" "$hs" -I "$ep/$lb/gov-$run" | tr -d '\r' >"$tmp/h"
  expect "HEAD x-amz-object-lock-mode" "$(sed -n 's/^x-amz-object-lock-mode: *//Ip' "$tmp/h")" GOVERNANCE
  expect "HEAD x-amz-object-lock-retain-until-date" "$(sed -n 's/^x-amz-object-lock-retain-until-date: *//Ip' "$tmp/h" | cut -c1-19)" "${until%Z}"
  expect "HEAD x-amz-version-id = PUT's" "$(sed -n 's/^x-amz-version-id: *//Ip' "$tmp/h")" "$vid"
  expect "haven DELETE ?versionId while locked" "$(s3code "$hk" "$hs" -X DELETE "$ep/$lb/gov-$run?versionId=$vid")" 403
  s3 "$hk" "$hs" -X DELETE "$ep/$lb/gov-$run?versionId=$vid" | grep -q '<Code>AccessDenied</Code>' \
    && echo "  ok   error code AccessDenied" || { echo "  FAIL error code is not AccessDenied"; FAILED=1; }
  expect "agent DELETE ?versionId" "$(s3code "$ak" "$as" -X DELETE "$ep/$lb/gov-$run?versionId=$vid")" 403
  expect "agent DELETE ?versionId + bypass-governance" "$(s3code "$ak" "$as" -X DELETE -H 'x-amz-bypass-governance-retention: true' "$ep/$lb/gov-$run?versionId=$vid")" 403
  c=$(s3code "$hk" "$hs" -X DELETE "$ep/$lb/gov-$run")
  expect "haven DELETE without versionId (adds a delete marker)" "$c" 204
  expect "GET after delete marker" "$(s3code "$hk" "$hs" "$ep/$lb/gov-$run")" 404
  expect "GET ?versionId after delete marker" "$(s3code "$hk" "$hs" "$ep/$lb/gov-$run?versionId=$vid")" 200
  expect "agent PUT ?retention (shorten)" "$(s3code "$ak" "$as" -X PUT -H "Content-MD5: $(printf '%s' "<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>$until</RetainUntilDate></Retention>" | openssl md5 -binary | base64)" --data-binary "<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>$until</RetainUntilDate></Retention>" "$ep/$lb/gov-$run?retention=&versionId=$vid")" 403
  expect "haven DELETE ?versionId + x-amz-bypass-governance-retention (owner)" \
    "$(s3code "$hk" "$hs" -X DELETE -H 'x-amz-bypass-governance-retention: true' "$ep/$lb/gov-$run?versionId=$vid")" 204

  echo "object lock, COMPLIANCE:"
  c=$(s3code "$hk" "$hs" -X PUT -D "$tmp/h" --data-binary @"$tmp/obj" -H "Content-MD5: $(md5b64 "$tmp/obj")" \
      -H 'x-amz-object-lock-mode: COMPLIANCE' -H "x-amz-object-lock-retain-until-date: $until" "$ep/$lb/comp-$run")
  expect "PUT with COMPLIANCE" "$c" 200
  vid=$(tr -d '\r' <"$tmp/h" | sed -n 's/^x-amz-version-id: *//Ip')
  expect "HEAD mode" "$(s3 "$hk" "$hs" -I "$ep/$lb/comp-$run" | tr -d '\r' | sed -n 's/^x-amz-object-lock-mode: *//Ip')" COMPLIANCE
  expect "haven DELETE ?versionId" "$(s3code "$hk" "$hs" -X DELETE "$ep/$lb/comp-$run?versionId=$vid")" 403
  expect "haven DELETE ?versionId + bypass-governance" "$(s3code "$hk" "$hs" -X DELETE -H 'x-amz-bypass-governance-retention: true' "$ep/$lb/comp-$run?versionId=$vid")" 403
  echo "    (x-amz-object-lock-* on a PUT into $pb, no object lock):" \
    "$(s3code "$hk" "$hs" -X PUT --data-binary @"$tmp/obj" -H 'x-amz-object-lock-mode: GOVERNANCE' -H "x-amz-object-lock-retain-until-date: $until" "$ep/$pb/lk-$run")"
  expect "lock headers with Content-MD5 missing" "$(s3code "$hk" "$hs" -X PUT --data-binary @"$tmp/obj" -H 'x-amz-object-lock-mode: GOVERNANCE' -H "x-amz-object-lock-retain-until-date: $until" "$ep/$lb/nomd5-$run")" 200

  echo "conditional and integrity headers:"
  expect "PUT new key with If-None-Match: *" "$(s3code "$hk" "$hs" -X PUT --data-binary @"$tmp/obj" -H 'If-None-Match: *' "$ep/$pb/inm-$run")" 200
  c=$(s3code "$hk" "$hs" -X PUT --data-binary @"$tmp/obj" -H 'If-None-Match: *' "$ep/$pb/inm-$run")
  echo "    PUT existing key with If-None-Match: * -> $c $(s3 "$hk" "$hs" -X PUT --data-binary @"$tmp/obj" -H 'If-None-Match: *' "$ep/$pb/inm-$run" | sed -n 's/.*<Code>\([^<]*\)<.*/\1/p')"
  c=$(s3code "$hk" "$hs" -X PUT --data-binary @"$tmp/obj" -H 'Content-MD5: AAAAAAAAAAAAAAAAAAAAAA==' "$ep/$pb/md5-$run")
  echo "    PUT with wrong Content-MD5 -> $c $(s3 "$hk" "$hs" -X PUT --data-binary @"$tmp/obj" -H 'Content-MD5: AAAAAAAAAAAAAAAAAAAAAA==' "$ep/$pb/md5-$run" | sed -n 's/.*<Code>\([^<]*\)<.*/\1/p')"
  c=$(s3code "$hk" "$hs" -X PUT --data-binary @"$tmp/obj" -H 'x-amz-checksum-sha256: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=' "$ep/$pb/sha-$run")
  echo "    PUT with wrong x-amz-checksum-sha256 -> $c"
  c=$(s3code "$hk" "$hs" -X PUT --data-binary @"$tmp/obj" -H 'x-amz-content-sha256: 0000000000000000000000000000000000000000000000000000000000000000' "$ep/$pb/csha-$run")
  echo "    PUT with wrong x-amz-content-sha256 -> $c"

  echo "ListObjectsV2 pagination:"
  local k
  for k in a b c d e; do s3code "$hk" "$hs" -X PUT --data-binary @"$tmp/obj" "$ep/$pb/list-$run-$k" >/dev/null; done
  s3 "$hk" "$hs" "$ep/$pb?list-type=2&max-keys=2&prefix=list-$run-" >"$tmp/l1"
  local tok n
  tok=$(sed -n 's/.*<NextContinuationToken>\([^<]*\)<.*/\1/p' "$tmp/l1")
  expect "page 1 keys" "$(grep -o '<Key>' "$tmp/l1" | wc -l)" 2
  expect "page 1 IsTruncated" "$(sed -n 's/.*<IsTruncated>\([^<]*\)<.*/\1/p' "$tmp/l1")" true
  n=2
  while [ -n "$tok" ]; do
    s3 "$hk" "$hs" "$ep/$pb?continuation-token=$(urlenc "$tok")&list-type=2&max-keys=2&prefix=list-$run-" >"$tmp/l2"
    n=$((n + $(grep -o '<Key>' "$tmp/l2" | wc -l)))
    tok=$(sed -n 's/.*<NextContinuationToken>\([^<]*\)<.*/\1/p' "$tmp/l2")
  done
  expect "all keys via continuation tokens" "$n" 5

  echo "multipart upload:"
  head -c $((5 * 1024 * 1024)) /dev/urandom >"$tmp/p1"; echo tail >"$tmp/p2"
  s3 "$hk" "$hs" -X POST -H 'x-amz-object-lock-mode: GOVERNANCE' -H "x-amz-object-lock-retain-until-date: $until" \
    "$ep/$lb/mp-$run?uploads=" >"$tmp/mp"
  local uid e1 e2
  uid=$(sed -n 's/.*<UploadId>\([^<]*\)<.*/\1/p' "$tmp/mp")
  [ -n "$uid" ] && echo "  ok   CreateMultipartUpload with lock headers" || { echo "  FAIL CreateMultipartUpload: $(cat "$tmp/mp")"; FAILED=1; }
  e1=$(s3 "$hk" "$hs" -X PUT --data-binary @"$tmp/p1" -H "Content-MD5: $(md5b64 "$tmp/p1")" -D - -o /dev/null "$ep/$lb/mp-$run?partNumber=1&uploadId=$uid" | tr -d '\r' | sed -n 's/^etag: *//Ip')
  e2=$(s3 "$hk" "$hs" -X PUT --data-binary @"$tmp/p2" -D - -o /dev/null "$ep/$lb/mp-$run?partNumber=2&uploadId=$uid" | tr -d '\r' | sed -n 's/^etag: *//Ip')
  [ -n "$e1" ] && [ -n "$e2" ] && echo "  ok   UploadPart x2" || { echo "  FAIL UploadPart"; FAILED=1; }
  echo "    UploadPart with wrong Content-MD5 -> $(s3 "$hk" "$hs" -X PUT --data-binary @"$tmp/p2" -H 'Content-MD5: AAAAAAAAAAAAAAAAAAAAAA==' -w ' %{http_code}' "$ep/$lb/mp-$run?partNumber=3&uploadId=$uid" | sed 's/.*<Code>\([^<]*\)<.*<\/Error>/\1/')"
  c=$(s3code "$hk" "$hs" -X POST -D "$tmp/h" --data-binary "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>$e1</ETag></Part><Part><PartNumber>2</PartNumber><ETag>$e2</ETag></Part></CompleteMultipartUpload>" \
      "$ep/$lb/mp-$run?uploadId=$uid")
  expect "CompleteMultipartUpload" "$c" 200
  vid=$(tr -d '\r' <"$tmp/h" | sed -n 's/^x-amz-version-id: *//Ip')
  s3 "$hk" "$hs" -I "$ep/$lb/mp-$run" | tr -d '\r' >"$tmp/h"
  expect "multipart object size" "$(sed -n 's/^content-length: *//Ip' "$tmp/h")" $((5 * 1024 * 1024 + 5))
  s3 "$hk" "$hs" "$ep/$lb/mp-$run" -o "$tmp/mpback"
  cat "$tmp/p1" "$tmp/p2" | cmp -s - "$tmp/mpback" && echo "  ok   multipart content" || { echo "  FAIL multipart content"; FAILED=1; }
  echo "    lock headers given to CreateMultipartUpload -> object's x-amz-object-lock-mode after Complete: '$(sed -n 's/^x-amz-object-lock-mode: *//Ip' "$tmp/h")'"
  local ret="<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>$until</RetainUntilDate></Retention>"
  expect "haven PUT ?retention on the completed multipart version" "$(s3code "$hk" "$hs" -X PUT -H "Content-MD5: $(printf '%s' "$ret" | openssl md5 -binary | base64)" --data-binary "$ret" "$ep/$lb/mp-$run?retention=&versionId=$vid")" 200
  expect "multipart object lock mode after PUT ?retention" "$(s3 "$hk" "$hs" -I "$ep/$lb/mp-$run?versionId=$vid" | tr -d '\r' | sed -n 's/^x-amz-object-lock-mode: *//Ip')" GOVERNANCE
  expect "multipart object: DELETE ?versionId" "$(s3code "$hk" "$hs" -X DELETE "$ep/$lb/mp-$run?versionId=$vid")" 403
  echo "    PUT ?retention without Content-MD5 -> $(s3code "$hk" "$hs" -X PUT --data-binary "$ret" "$ep/$lb/mp-$run?retention=&versionId=$vid")"
  # a bucket with a default retention: does a multipart object get it?
  local db="haven-check-$run" cfg="<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>1</Days></DefaultRetention></Rule></ObjectLockConfiguration>"
  s3code "$hk" "$hs" -X PUT -H 'x-amz-bucket-object-lock-enabled: true' "$ep/$db" >/dev/null
  expect "PUT ?object-lock= default retention" "$(s3code "$hk" "$hs" -X PUT -H "Content-MD5: $(printf '%s' "$cfg" | openssl md5 -binary | base64)" --data-binary "$cfg" "$ep/$db?object-lock=")" 200
  uid=$(s3 "$hk" "$hs" -X POST "$ep/$db/mp?uploads=" | sed -n 's/.*<UploadId>\([^<]*\)<.*/\1/p')
  e1=$(s3 "$hk" "$hs" -X PUT --data-binary @"$tmp/p2" -D - -o /dev/null "$ep/$db/mp?partNumber=1&uploadId=$uid" | tr -d '\r' | sed -n 's/^etag: *//Ip')
  s3code "$hk" "$hs" -X POST --data-binary "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>$e1</ETag></Part></CompleteMultipartUpload>" "$ep/$db/mp?uploadId=$uid" >/dev/null
  echo "    multipart object in a bucket with default retention: mode '$(s3 "$hk" "$hs" -I "$ep/$db/mp" | tr -d '\r' | sed -n 's/^x-amz-object-lock-mode: *//Ip')'"
  s3code "$hk" "$hs" -X PUT --data-binary @"$tmp/p2" "$ep/$db/single" >/dev/null
  echo "    single PUT in a bucket with default retention: mode '$(s3 "$hk" "$hs" -I "$ep/$db/single" | tr -d '\r' | sed -n 's/^x-amz-object-lock-mode: *//Ip')'"

  echo "agent and object lock:"
  c=$(s3code "$ak" "$as" -X PUT -D "$tmp/h" --data-binary @"$tmp/obj" -H "Content-MD5: $(md5b64 "$tmp/obj")" \
      -H 'x-amz-object-lock-mode: GOVERNANCE' -H "x-amz-object-lock-retain-until-date: $until" "$ep/$lb/agent-$run")
  expect "agent PUT with lock headers (no s3:PutObjectRetention in the policy)" "$c" 200
  expect "HEAD as agent: lock mode" "$(s3 "$ak" "$as" -I "$ep/$lb/agent-$run" | tr -d '\r' | sed -n 's/^x-amz-object-lock-mode: *//Ip')" GOVERNANCE
  expect "HEAD as haven (bucket owner) of agent's object without ACL" "$(s3code "$hk" "$hs" -I "$ep/$lb/agent-$run")" 403
  expect "agent PUT with x-amz-acl: bucket-owner-full-control + lock" "$(s3code "$ak" "$as" -X PUT --data-binary @"$tmp/obj" -H 'x-amz-acl: bucket-owner-full-control' \
      -H 'x-amz-object-lock-mode: GOVERNANCE' -H "x-amz-object-lock-retain-until-date: $until" "$ep/$lb/agentacl-$run")" 200
  s3 "$hk" "$hs" -I "$ep/$lb/agentacl-$run" | tr -d '\r' >"$tmp/h"
  expect "HEAD as haven of agent's bucket-owner-full-control object" "$(sed -n 's/^HTTP[^ ]* \([0-9]*\).*/\1/p' "$tmp/h")" 200
  vid=$(sed -n 's/^x-amz-version-id: *//Ip' "$tmp/h")
  expect "haven DELETE ?versionId of it while locked" "$(s3code "$hk" "$hs" -X DELETE "$ep/$lb/agentacl-$run?versionId=$vid")" 403
  expect "agent ListObjectVersions (?versions=; not in the policy)" "$(s3code "$ak" "$as" "$ep/$lb?versions=")" 403
  echo "If-None-Match: * on the versioned haven-locked:"
  s3code "$hk" "$hs" -X PUT --data-binary @"$tmp/obj" -H 'If-None-Match: *' "$ep/$lb/inm-$run" >/dev/null
  echo "    PUT existing key with If-None-Match: * -> $(s3code "$hk" "$hs" -X PUT --data-binary @"$tmp/obj" -H 'If-None-Match: *' "$ep/$lb/inm-$run")"
  echo "lock header validation:"
  echo "    retain-until in the past -> $(s3code "$hk" "$hs" -X PUT --data-binary @"$tmp/obj" -H 'x-amz-object-lock-mode: GOVERNANCE' -H 'x-amz-object-lock-retain-until-date: 2020-01-01T00:00:00Z' "$ep/$lb/past-$run")"
  echo "    mode without retain-until -> $(s3code "$hk" "$hs" -X PUT --data-binary @"$tmp/obj" -H 'x-amz-object-lock-mode: GOVERNANCE' "$ep/$lb/onlymode-$run")"
  echo "    retain-until with .000Z fraction -> $(s3code "$hk" "$hs" -X PUT --data-binary @"$tmp/obj" -H 'x-amz-object-lock-mode: GOVERNANCE' -H "x-amz-object-lock-retain-until-date: ${until%Z}.000Z" "$ep/$lb/frac-$run")"
  expect "agent GET haven-locked/agent-$run" "$(s3code "$ak" "$as" "$ep/$lb/agent-$run")" 200
  expect "agent ListObjectsV2 haven-locked" "$(s3code "$ak" "$as" "$ep/$lb?list-type=2&max-keys=1")" 200
  expect "agent ListBuckets shows nothing of haven's" "$(s3 "$ak" "$as" "$ep/" | grep -c '<Name>haven-locked</Name>')" 0
  expect "agent DELETE (no versionId) haven-locked/agent-$run" "$(s3code "$ak" "$as" -X DELETE "$ep/$lb/agent-$run")" 403

  echo "virtual-host style (rgw_dns_name=localhost):"
  echo vhost >"$tmp/v"
  s3code "$hk" "$hs" -X PUT --data-binary @"$tmp/v" "$ep/$pb/vh-$run" >/dev/null
  c=$(s3 "$hk" "$hs" --resolve "$pb.localhost:$port:127.0.0.1" -o "$tmp/vback" -w '%{http_code}' "http://$pb.localhost:$port/vh-$run")
  expect "GET http://$pb.localhost:$port/key" "$c" 200
  cmp -s "$tmp/v" "$tmp/vback" && echo "  ok   content" || { echo "  FAIL virtual-host content"; FAILED=1; }
  rm -rf "$tmp"
  [ "$FAILED" = 0 ] || { echo "check: FAILED"; return 1; }
  echo "check: all ok"
}

case "$CMD" in
  start) start_cluster ;;
  stop) stop_cluster ;;
  status) status_cluster ;;
  check) check_cluster ;;
  *) usage ;;
esac
