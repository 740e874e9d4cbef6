#!/usr/bin/env bash
# havend serve over real HTTPS on loopback (issue 16, point 1): a temporary
# state directory, a kernel-chosen port, curl and openssl as the clients.
#  - first start makes key.pem + cert.pem (0600); the fingerprint printed and
#    logged equals `openssl x509 -fingerprint -sha256`; a client pinning it
#    (or curl --pinnedpubkey) connects, a wrong pin does not
#  - GET /api/v1/health 200; /api/v1/points 401; security headers
#  - TLS 1.1 refused by the server (a TLS 1.2 and 1.3 client are served);
#    plain HTTP on the port fails
#  - a 10 MB body 413 (with and without Expect: 100-continue); chunked 501
#  - a slowloris client and a client that never finishes its handshake are
#    cut off within the timeouts while 20 concurrent health requests all
#    succeed quickly
#  - SIGTERM stops it cleanly; a restart keeps the fingerprint
#  - bad options and a key of another certificate are clear errors
. "$(dirname "$0")/lib.sh"
: "${HAVEND:?HAVEND must point at the havend binary}"
for c in curl openssl; do
  command -v "$c" >/dev/null || fail "$c is missing (scripts/install-deps.sh installs it)"
done

STATE=$WORK/state
DPID=
cleanup() {
  set +e
  [ -n "$DPID" ] && { kill -9 "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null; }
  rm -rf "$WORK"
}
trap cleanup EXIT

# start_havend NAME: starts havend on 127.0.0.1, port 0; sets PORT, URL, FP,
# PIN from what it prints; its stdout/stderr are $WORK/NAME.out/.log.
start_havend() {
  "$HAVEND" serve --state-dir "$STATE" --listen 127.0.0.1:0 \
    >"$WORK/$1.out" 2>"$WORK/$1.log" &
  DPID=$!
  for _ in $(seq 100); do
    grep -q "listening on" "$WORK/$1.out" 2>/dev/null && break
    kill -0 "$DPID" 2>/dev/null || fail "havend exited: $(cat "$WORK/$1.log")"
    sleep 0.1
  done
  PORT=$(sed -n 's#^listening on https://127\.0\.0\.1:\([0-9]*\)/$#\1#p' "$WORK/$1.out")
  [ -n "$PORT" ] || fail "no 'listening on' line: $(cat "$WORK/$1.out")"
  URL=https://127.0.0.1:$PORT
  FP=$(sed -n 's/^certificate SHA-256 fingerprint: //p' "$WORK/$1.out")
  PIN=$(sed -n 's/^certificate public key pin: //p' "$WORK/$1.out")
}
# stop_havend NAME: SIGTERM; fails unless it exits 0 within 5 s, logging it.
stop_havend() {
  kill -TERM "$DPID"
  for _ in $(seq 50); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$DPID" 2>/dev/null && fail "havend still running 5 s after SIGTERM"
  local rc=0
  wait "$DPID" || rc=$?
  DPID=
  [ "$rc" = 0 ] || fail "havend exited $rc after SIGTERM: $(tail -5 "$WORK/$1.log")"
  contains "$WORK/$1.log" "stopping on SIGTERM" "SIGTERM logged"
  contains "$WORK/$1.log" "havend: stopped" "stop logged"
}
CURL=(curl -sS --max-time 10 --cacert "$STATE/cert.pem")

# ---------------------------------------------------------------- first start
start_havend first
contains "$WORK/first.log" "made a self-signed certificate" "first start makes a certificate"
want=$(openssl x509 -noout -fingerprint -sha256 -in "$STATE/cert.pem")
[ "$FP" = "SHA256:${want#*=}" ] || fail "printed fingerprint $FP, openssl says $want"
contains "$WORK/first.log" "certificate SHA-256 fingerprint: $FP" "fingerprint logged"
for f in key.pem cert.pem; do
  [ "$(stat -c %a "$STATE/$f")" = 600 ] || fail "$f mode $(stat -c %a "$STATE/$f"), expected 600"
done
[ "$(stat -c %a "$STATE")" = 700 ] || fail "state dir mode $(stat -c %a "$STATE")"
ok "first start: key.pem and cert.pem 0600, fingerprint $FP equals openssl's"

# ---------------------------------------------------------------- requests
code=$("${CURL[@]}" -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' "$URL/api/v1/health")
[ "$code" = 200 ] || fail "health: HTTP $code"
[ "$(jget 'j["status"]' "$WORK/body")" = ok ] || fail "health body: $(cat "$WORK/body")"
[ "$(jget 'j["version"]' "$WORK/body")" = "$("$HAVEND" --version | cut -d' ' -f2)" ] ||
  fail "health version: $(cat "$WORK/body")"
for h in "Cache-Control: no-store" "Content-Length: 33" "X-Content-Type-Options: nosniff" \
  "Strict-Transport-Security: max-age=31536000" "Connection: keep-alive"; do
  contains "$WORK/headers" "$h" "health response header"
done
ok "GET /api/v1/health 200 $(cat "$WORK/body") with no-store and security headers (--cacert)"

# Keep-alive: three requests over one connection, each answered whole; a
# client asking to close gets Connection: close.
"${CURL[@]}" -v "$URL/api/v1/health" "$URL/api/v1/health" "$URL/api/v1/health" >"$WORK/three" 2>"$WORK/verbose" ||
  fail "three requests on one connection: $(tail -3 "$WORK/verbose")"
[ "$(grep -o '"status":"ok"' "$WORK/three" | wc -l)" = 3 ] || fail "keep-alive bodies: $(cat "$WORK/three")"
[ "$(grep -ci 'Re-using existing connection' "$WORK/verbose")" -ge 2 ] ||
  fail "curl did not reuse the connection: $(grep -i connect "$WORK/verbose")"
"${CURL[@]}" -o /dev/null -D "$WORK/headers" -H 'Connection: close' "$URL/api/v1/health"
contains "$WORK/headers" "Connection: close" "a client asking to close"
ok "keep-alive: 3 requests over one connection; Connection: close honoured"

code=$("${CURL[@]}" -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' "$URL/api/v1/points")
[ "$code" = 401 ] || fail "/api/v1/points: HTTP $code"
[ "$(jget 'j["error"]' "$WORK/body")" = "authentication required" ] || fail "401 body: $(cat "$WORK/body")"
contains "$WORK/headers" "Cache-Control: no-store" "401 header"
code=$("${CURL[@]}" -o /dev/null -w '%{http_code}' -X DELETE "$URL/api/v1/health")
[ "$code" = 405 ] || fail "DELETE health: HTTP $code"
ok "/api/v1/points 401 {\"error\":\"authentication required\"}; DELETE health 405"

# Clients pin: the public key (curl --pinnedpubkey, no CA at all) ...
code=$(curl -sS --max-time 10 -k --pinnedpubkey "$PIN" -o /dev/null -w '%{http_code}' "$URL/api/v1/health")
[ "$code" = 200 ] || fail "pinned public key: HTTP $code"
run curl -sS --max-time 10 -k --pinnedpubkey "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" "$URL/api/v1/health"
[ "$RC" = 90 ] || fail "a wrong pin: curl exit $RC, expected 90: $(cat "$WORK/err")"
# ... or the certificate's SHA-256 fingerprint, as an agent does.
seen=$(py - "$PORT" <<'PYEOF'
import hashlib, socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])))) as s:
    d = hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest().upper()
print("SHA256:" + ":".join(d[i:i + 2] for i in range(0, 64, 2)))
PYEOF
)
[ "$seen" = "$FP" ] || fail "served certificate $seen, printed $FP"
ok "pinning: --pinnedpubkey $PIN 200, a wrong pin refused (exit 90), served certificate's SHA-256 = printed"

# ---------------------------------------------------------------- TLS versions, plain HTTP
run "${CURL[@]}" --tlsv1.1 --tls-max 1.1 "$URL/api/v1/health"
[ "$RC" != 0 ] || fail "TLS 1.1 was served"
# The server's alert, not the client declining to offer TLS 1.1.
contains "$WORK/err" "alert protocol version" "TLS 1.1 refused by the server"
contains "$WORK/first.log" "unsupported protocol" "TLS 1.1 refusal logged"
for v in 1.2 1.3; do
  code=$("${CURL[@]}" --tlsv$v --tls-max $v -o /dev/null -w '%{http_code}' "$URL/api/v1/health")
  [ "$code" = 200 ] || fail "TLS $v: HTTP $code"
done
run curl -sS --max-time 10 -o "$WORK/body" "http://127.0.0.1:$PORT/api/v1/health"
[ "$RC" != 0 ] || fail "plain HTTP answered: $(cat "$WORK/body")"
contains "$WORK/first.log" "http request" "plain HTTP refused in the handshake"
ok "TLS 1.1 refused with a protocol-version alert (curl exit 35), TLS 1.2 and 1.3 served; plain HTTP fails (curl exit $RC)"

# ---------------------------------------------------------------- bodies
head -c 10000000 /dev/urandom >"$WORK/10m"
for expect in "Expect: 100-continue" "Expect:"; do
  code=$("${CURL[@]}" -o "$WORK/body" -w '%{http_code}' -H "$expect" \
    --data-binary @"$WORK/10m" "$URL/api/v1/points")
  [ "$code" = 413 ] || fail "10 MB body ($expect): HTTP $code"
  contains "$WORK/body" "10000000 bytes is over the limit of 1048576" "413 names the sizes"
done
head -c 1000 /dev/urandom >"$WORK/1k"
code=$("${CURL[@]}" -o /dev/null -w '%{http_code}' --data-binary @"$WORK/1k" "$URL/api/v1/points")
[ "$code" = 401 ] || fail "1000-byte body: HTTP $code, expected 401 (under the limit)"
code=$("${CURL[@]}" -o /dev/null -w '%{http_code}' -H 'Transfer-Encoding: chunked' \
  --data-binary @"$WORK/1k" "$URL/api/v1/points")
[ "$code" = 501 ] || fail "chunked body: HTTP $code"
ok "10 MB body 413 (with and without Expect: 100-continue), 1000 bytes reach the API (401), chunked 501"

# ---------------------------------------------------------------- slow clients
# slowloris: a TLS client that sends its request head one byte a second;
# never-finished handshake: a TCP client that sends nothing. Each prints the
# seconds until havend closed its connection.
py - "$PORT" "$STATE/cert.pem" slowloris >"$WORK/slowloris" 2>&1 <<'PYEOF' &
import select, socket, ssl, sys, time
port, ca, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
raw = socket.create_connection(("127.0.0.1", port))
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(raw, server_hostname="localhost")
t0 = time.monotonic()
head = b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 60
got = b""
for b in head:
    s.send(bytes([b]))
    if select.select([s], [], [], 1.0)[0]:
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except (ssl.SSLError, OSError):
            pass
        print("%.1f %s" % (time.monotonic() - t0, got.split(b"\r\n")[0].decode()))
        sys.exit(0)
print("never cut off")
PYEOF
SLOW=$!
py - "$PORT" <<'PYEOF' >"$WORK/nohandshake" 2>&1 &
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
t0 = time.monotonic()
s.settimeout(60)
data = s.recv(100)
print("%.1f %d" % (time.monotonic() - t0, len(data)))
PYEOF
NOHS=$!
sleep 1.5
start=$(date +%s.%N)
for i in $(seq 20); do
  "${CURL[@]}" -o /dev/null -w '%{http_code} %{time_total}\n' "$URL/api/v1/health" \
    >"$WORK/conc.$i" 2>&1 &
done
wait $(jobs -p | grep -v -e "^$SLOW\$" -e "^$NOHS\$" -e "^$DPID\$") 2>/dev/null || true
for i in $(seq 20); do
  read -r code secs <"$WORK/conc.$i" || true
  [ "$code" = 200 ] || fail "concurrent request $i during slowloris: $(cat "$WORK/conc.$i")"
  awk -v s="$secs" 'BEGIN { exit !(s < 2.0) }' || fail "concurrent request $i took $secs s"
done
all=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
slowest=$(cat "$WORK"/conc.* | sort -k2 -n | tail -1 | cut -d' ' -f2)
wait "$SLOW" "$NOHS"
read -r cut line <"$WORK/slowloris" || fail "slowloris client: $(cat "$WORK/slowloris")"
awk -v s="$cut" 'BEGIN { exit !(s >= 4 && s <= 8) }' ||
  fail "slowloris cut off after $cut s, expected about 5: $(cat "$WORK/slowloris")"
[[ "$line" == "HTTP/1.1 408"* ]] || fail "slowloris got '$line', expected 408"
read -r hs bytes <"$WORK/nohandshake" || fail "handshake client: $(cat "$WORK/nohandshake")"
awk -v s="$hs" 'BEGIN { exit !(s >= 4 && s <= 8) }' ||
  fail "unfinished handshake cut off after $hs s, expected about 5"
contains "$WORK/first.log" "request head not received within 5000 ms" "slowloris logged"
contains "$WORK/first.log" "failed: timed out" "handshake timeout logged"
ok "slowloris cut off after $cut s ($line), unfinished handshake after $hs s; meanwhile 20 concurrent health requests all 200 in $all s (slowest $slowest s)"

# Nothing of a request but method, path and status is logged.
code=$("${CURL[@]}" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer s3cret-token-xyz" \
  --data-binary 'body-secret-abc' "$URL/api/v1/points?token=query-secret-q")
[ "$code" = 401 ] || fail "authorized POST: HTTP $code"
sleep 0.2
for secret in s3cret-token-xyz body-secret-abc query-secret-q; do
  lacks "$WORK/first.log" "$secret" "request secrets in the log"
done
ok "no Authorization header, body or query in the log"

# ---------------------------------------------------------------- restart
stop_havend first
first_fp=$FP
start_havend second
[ "$FP" = "$first_fp" ] || fail "fingerprint changed on restart: $first_fp -> $FP"
lacks "$WORK/second.log" "made a self-signed" "restart makes no new certificate"
code=$("${CURL[@]}" -o /dev/null -w '%{http_code}' "$URL/api/v1/health")
[ "$code" = 200 ] || fail "health after restart: HTTP $code"
stop_havend second
ok "SIGTERM: exit 0 within 5 s; restart keeps fingerprint $FP"

# ---------------------------------------------------------------- bad input
expect_rc 2 "no --state-dir" "$HAVEND" serve
contains "$WORK/err" "--state-dir is required" "missing state dir named"
expect_rc 2 "bad --listen" "$HAVEND" serve --state-dir "$STATE" --listen localhost:80
contains "$WORK/err" "not a numeric IPv4 or IPv6 address" "bad listen address named"
expect_rc 2 "--cert without --key" "$HAVEND" serve --state-dir "$STATE" --cert "$STATE/cert.pem"
contains "$WORK/err" "--cert and --key go together" "lonely --cert named"
mkdir "$WORK/other"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/other/key.pem" 2>/dev/null
expect_rc 2 "key of another certificate" "$HAVEND" serve --state-dir "$STATE" \
  --cert "$STATE/cert.pem" --key "$WORK/other/key.pem"
contains "$WORK/err" "$WORK/other/key.pem does not belong to the certificate in $STATE/cert.pem" \
  "mismatched key named"
"$HAVEND" serve --state-dir "$STATE" --listen "127.0.0.1:$PORT" >"$WORK/third.out" 2>"$WORK/third.log" &
DPID=$!
sleep 0.5
expect_rc 1 "port in use" "$HAVEND" serve --state-dir "$STATE" --listen "127.0.0.1:$PORT"
contains "$WORK/err" "bind 127.0.0.1 port $PORT: Address already in use" "busy port named"
stop_havend third
ok "bad options, a foreign key and a busy port are clear errors (exit 2 / 1)"

echo "havend_tls_test: $PASS checks passed"
