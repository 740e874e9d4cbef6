#!/usr/bin/env bash
# Who may do what in havend (issue 16, point 3), over real HTTPS on
# loopback with a real state database:
#  - `havend admin password` (stdin) and `havend token create/revoke` make
#    the admin account and role tokens; only hashes reach havend.db
#  - for EVERY route in /api/v1/openapi.json that is not public: 401
#    without credentials, with a made-up token and with a revoked token,
#    and 403 with each token whose role is below the route's x-haven-role
#    (so the routes other parts add are covered as they are merged)
#  - login sets haven_session with HttpOnly, Secure, SameSite=Strict,
#    Path=/; a state-changing request with the cookie needs X-CSRF-Token
#    (403 without or with a wrong one), a bearer token does not; logout
#    ends the session
#  - tokens made and revoked over the API and by the CLI while havend runs
#    take effect at once
#  - the audit log has a row for each state-changing request and login
#  - 5 failed logins: the next is 429 with Retry-After, even with the right
#    password; after the wait a login works
#  - no password, token, session id or CSRF token in havend's output
. "$(dirname "$0")/lib.sh"
: "${HAVEND:?HAVEND must point at the havend binary}"
command -v curl >/dev/null || fail "curl is missing (scripts/install-deps.sh installs it)"

STATE=$WORK/state
DPID=
cleanup() {
  set +e
  [ -n "$DPID" ] && { kill -9 "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null; }
  rm -rf "$WORK"
}
trap cleanup EXIT

# start_havend NAME: starts havend on 127.0.0.1, port 0; sets PORT and URL;
# its stdout/stderr are $WORK/NAME.out/.log.
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
}
CURL=(curl -sS --max-time 20 --cacert "$STATE/cert.pem")
# call METHOD PATH [curl args...]: sets CODE; body in $WORK/body, headers in
# $WORK/headers.
call() {
  local method=$1 path=$2
  shift 2
  local data=()
  [ "$method" = GET ] || data=(--data-binary "${BODY:-{\}}")
  CODE=$("${CURL[@]}" -X "$method" -o "$WORK/body" -D "$WORK/headers" \
    -w '%{http_code}' "${data[@]}" "$@" "$URL$path")
}
bearer() { echo "Authorization: Bearer $1"; }

# ---------------------------------------------------------------- accounts and tokens by the CLI
PASSWORD='integration admin password'
printf '%s\n' "$PASSWORD" | "$HAVEND" admin password --state-dir "$STATE" 2>"$WORK/err" ||
  fail "admin password: $(cat "$WORK/err")"
printf 'short\n' >"$WORK/short"
expect_rc 2 "a short password" "$HAVEND" admin password --state-dir "$STATE" --password-file "$WORK/short"
contains "$WORK/err" "too short" "short password refused with a reason"
expect_rc 2 "a token with a bad role" "$HAVEND" token create --state-dir "$STATE" --role root --name x
declare -A TOKEN
for role in admin operator auditor; do
  TOKEN[$role]=$("$HAVEND" token create --state-dir "$STATE" --role $role --name "it-$role" 2>"$WORK/err") ||
    fail "token create $role: $(cat "$WORK/err")"
  [[ ${TOKEN[$role]} =~ ^haven_[A-Za-z0-9_-]{43}$ ]] || fail "token format: ${TOKEN[$role]}"
  contains "$WORK/err" "shown only now" "token create says it is shown once"
done
REVOKED=$("$HAVEND" token create --state-dir "$STATE" --role admin --name it-revoked 2>/dev/null)
"$HAVEND" token list --state-dir "$STATE" >"$WORK/list"
rid=$(awk '$2 == "it-revoked" {print $1}' "$WORK/list")
"$HAVEND" token revoke --state-dir "$STATE" "$rid" 2>/dev/null
"$HAVEND" token list --state-dir "$STATE" >"$WORK/list"
grep -q "^$rid .*it-revoked .*admin .*never .*[0-9]Z" "$WORK/list" || fail "revoked token listed: $(cat "$WORK/list")"
lacks "$WORK/list" "haven_" "token list shows no secret"
ok "admin password from stdin (a short one refused), tokens admin/operator/auditor made and one revoked by the CLI"

start_havend first

# ---------------------------------------------------------------- every route: 401 / 403
call GET /api/v1/openapi.json
[ "$CODE" = 200 ] || fail "openapi.json: HTTP $CODE"
cp "$WORK/body" "$WORK/openapi.json"
py - "$URL" "$STATE/cert.pem" "$WORK/openapi.json" "${TOKEN[auditor]}" \
  "${TOKEN[operator]}" "$REVOKED" >"$WORK/matrix" 2>&1 <<'PYEOF' || fail "route matrix: $(cat "$WORK/matrix")"
import http.client, json, re, ssl, sys
url, cafile, doc_path, auditor, operator, revoked = sys.argv[1:]
host, port = url.split("//")[1].split(":")
ctx = ssl.create_default_context(cafile=cafile)
doc = json.load(open(doc_path))
# --- agents: registry --- "agent" routes refuse every person's token (403).
rank = {"auditor": 1, "operator": 2, "admin": 3, "agent": 100}
lower = {"auditor": auditor, "operator": operator}
fake = "haven_" + "A" * 43
def status(method, path, token):
    c = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=20)
    headers = {"Authorization": "Bearer " + token} if token else {}
    body = None if method in ("GET", "HEAD") else b"{}"
    if body is not None:
        headers["Content-Type"] = "application/json"
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    r.read()
    c.close()
    return r.status
checked = refused403 = 0
for path, ops in doc["paths"].items():
    concrete = re.sub(r"\{[^}]+\}", "1", path)
    for method, op in ops.items():
        method = method.upper()
        if op.get("security") == []:
            continue  # public
        role = op.get("x-haven-role")
        assert role in rank, f"{method} {path}: x-haven-role {role!r}"
        for name, token in (("none", None), ("made-up", fake), ("revoked", revoked)):
            s = status(method, concrete, token)
            assert s == 401, f"{method} {path} with {name} token: HTTP {s}, expected 401"
        for low, token in lower.items():
            if rank[low] < rank[role]:
                s = status(method, concrete, token)
                assert s == 403, f"{method} {path} as {low} (needs {role}): HTTP {s}, expected 403"
                refused403 += 1
        checked += 1
assert checked >= 6, f"only {checked} routes need credentials"
print(f"{checked} routes: 401 x3 each; {refused403} role refusals 403")
PYEOF
for p in "/api/v1/tokens" "/api/v1/tokens/{id}" "/api/v1/audit" "/api/v1/me" "/api/v1/login"; do
  contains "$WORK/openapi.json" "\"$p\"" "openapi.json lists $p"
done
ok "openapi.json: $(cat "$WORK/matrix")"

call GET /api/v1/me -H "$(bearer "${TOKEN[operator]}")"
[ "$CODE" = 200 ] || fail "me as operator: $CODE"
[ "$(jget 'j["name"], j["role"], j["session"]' "$WORK/body")" = "('token:it-operator', 'operator', False)" ] ||
  fail "me: $(cat "$WORK/body")"
call GET /api/v1/tokens -H "$(bearer "${TOKEN[admin]}")"
[ "$CODE" = 200 ] || fail "tokens as admin: $CODE"
[ "$(jget 'sorted(t["name"] for t in j["tokens"] if t["active"])' "$WORK/body")" = \
  '["it-admin", "it-auditor", "it-operator"]' ] || fail "active tokens: $(cat "$WORK/body")"
lacks "$WORK/body" "haven_" "token list over the API shows no secret"
ok "a token's caller is token:NAME with its role; GET /api/v1/tokens lists them without secrets"

# ---------------------------------------------------------------- login, cookie, CSRF
BODY='{"user":"admin","password":"wrong password here"}' call POST /api/v1/login
[ "$CODE" = 401 ] || fail "wrong password: HTTP $CODE"
lacks "$WORK/headers" "set-cookie" "no cookie for a wrong password"
BODY='{"user":"integration admin password","password":"x"}' call POST /api/v1/login
[ "$CODE" = 401 ] || fail "unknown user: HTTP $CODE"
BODY='{"user":"admin"}' call POST /api/v1/login
[ "$CODE" = 400 ] || fail "login without password: HTTP $CODE"
BODY="{\"user\":\"admin\",\"password\":\"$PASSWORD\"}" call POST /api/v1/login
[ "$CODE" = 200 ] || fail "login: HTTP $CODE $(cat "$WORK/body")"
cookie=$(grep -i '^set-cookie: haven_session=' "$WORK/headers" | tr -d '\r') ||
  fail "no session cookie: $(cat "$WORK/headers")"
for flag in HttpOnly Secure SameSite=Strict Path=/ Max-Age=; do
  [[ "$cookie" == *"; $flag"* ]] || fail "cookie lacks $flag: $cookie"
done
SID=$(sed 's/^[^=]*=\([^;]*\);.*/\1/' <<<"$cookie")
[ ${#SID} -ge 43 ] || fail "session id too short: ${#SID}"
CSRF=$(jget 'j["csrf_token"]' "$WORK/body")
[ "$(jget 'j["role"]' "$WORK/body")" = admin ] || fail "login body: $(cat "$WORK/body")"
SESSION=(-H "Cookie: haven_session=$SID")
call GET /api/v1/me "${SESSION[@]}"
[ "$CODE" = 200 ] || fail "me with the cookie: $CODE"
[ "$(jget 'j["csrf_token"], j["session"]' "$WORK/body")" = "('$CSRF', True)" ] || fail "me: $(cat "$WORK/body")"
ok "login: 401 for a wrong password or user, 200 with haven_session (HttpOnly; Secure; SameSite=Strict; Path=/) and a CSRF token /me repeats"

BODY='{"name":"by-session","role":"auditor"}' call POST /api/v1/tokens "${SESSION[@]}"
[ "$CODE" = 403 ] || fail "POST with the cookie, no CSRF token: HTTP $CODE"
contains "$WORK/body" "X-CSRF-Token" "403 names the header"
# The token with its last character changed (to one it is not).
WRONG=${CSRF%?}0
[ "$WRONG" != "$CSRF" ] || WRONG=${CSRF%?}1
BODY='{"name":"by-session","role":"auditor"}' call POST /api/v1/tokens "${SESSION[@]}" -H "X-CSRF-Token: $WRONG"
[ "$CODE" = 403 ] || fail "POST with a wrong CSRF token: HTTP $CODE"
BODY='{"name":"by-session","role":"auditor","expires_days":30}' call POST /api/v1/tokens "${SESSION[@]}" -H "X-CSRF-Token: $CSRF"
[ "$CODE" = 201 ] || fail "POST with the CSRF token: HTTP $CODE $(cat "$WORK/body")"
NEW=$(jget 'j["token"]' "$WORK/body")
NEW_ID=$(jget 'j["id"]' "$WORK/body")
call GET /api/v1/me -H "$(bearer "$NEW")"
[ "$CODE" = 200 ] || fail "the token made over the API: $CODE"
BODY='{"name":"by-token","role":"operator"}' call POST /api/v1/tokens -H "$(bearer "${TOKEN[admin]}")"
[ "$CODE" = 201 ] || fail "POST with a bearer token, no CSRF: HTTP $CODE"
BODY='{"name":"bad","role":"root"}' call POST /api/v1/tokens -H "$(bearer "${TOKEN[admin]}")"
[ "$CODE" = 400 ] || fail "bad role: HTTP $CODE"
contains "$WORK/body" "role must be admin, operator or auditor" "400 names the role"
call DELETE "/api/v1/tokens/$NEW_ID" "${SESSION[@]}" -H "X-CSRF-Token: $CSRF"
[ "$CODE" = 200 ] || fail "revoke over the API: HTTP $CODE"
call GET /api/v1/me -H "$(bearer "$NEW")"
[ "$CODE" = 401 ] || fail "a revoked token: HTTP $CODE"
call DELETE /api/v1/tokens/999 -H "$(bearer "${TOKEN[admin]}")"
[ "$CODE" = 404 ] || fail "revoke a missing token: HTTP $CODE"
ok "with the cookie: POST 403 without or with a wrong X-CSRF-Token, 201 with it; a bearer token needs none; API-revoked token 401 at once"

# The CLI, against the running daemon's database.
LIVE=$("$HAVEND" token create --state-dir "$STATE" --role auditor --name it-live 2>/dev/null)
call GET /api/v1/me -H "$(bearer "$LIVE")"
[ "$CODE" = 200 ] || fail "a token made while havend runs: $CODE"
"$HAVEND" token list --state-dir "$STATE" >"$WORK/list"
"$HAVEND" token revoke --state-dir "$STATE" "$(awk '$2 == "it-live" {print $1}' "$WORK/list")" 2>/dev/null
call GET /api/v1/me -H "$(bearer "$LIVE")"
[ "$CODE" = 401 ] || fail "a token revoked by the CLI while havend runs: $CODE"
ok "a token made and revoked by the CLI while havend runs works, then is refused at once"

# ---------------------------------------------------------------- audit log
call GET "/api/v1/audit?limit=100" -H "$(bearer "${TOKEN[admin]}")"
[ "$CODE" = 200 ] || fail "audit: HTTP $CODE"
cp "$WORK/body" "$WORK/audit.json"
has_row() {  # WHO METHOD PATH STATUS
  [ "$(jget "any(e['who'] == '$1' and e['method'] == '$2' and e['path'] == '$3' and e['status'] == $4 for e in j['entries'])" "$WORK/audit.json")" = true ] ||
    fail "no audit row $*: $(cat "$WORK/audit.json")"
}
has_row admin POST /api/v1/tokens 403
has_row admin POST /api/v1/tokens 201
has_row token:it-admin POST /api/v1/tokens 201
has_row token:it-admin POST /api/v1/tokens 400
has_row admin DELETE "/api/v1/tokens/$NEW_ID" 200
has_row token:it-admin DELETE /api/v1/tokens/999 404
has_row admin POST /api/v1/login 200
has_row admin POST /api/v1/login 401
has_row "(unknown user)" POST /api/v1/login 401
has_row token:it-auditor POST /api/v1/tokens 403  # the role matrix
[ "$(jget "any(e['method'] == 'GET' for e in j['entries'])" "$WORK/audit.json")" = false ] ||
  fail "a GET was audited"
lacks "$WORK/audit.json" "integration admin password" "no password in the audit log"
call GET "/api/v1/audit?since=2000-01-01T00:00:00Z&limit=2" -H "$(bearer "${TOKEN[admin]}")"
[ "$(jget 'len(j["entries"]), j["next_before"] is not None' "$WORK/body")" = "(2, True)" ] ||
  fail "audit paging: $(cat "$WORK/body")"
call GET "/api/v1/audit?since=yesterday" -H "$(bearer "${TOKEN[admin]}")"
[ "$CODE" = 400 ] || fail "audit bad since: HTTP $CODE"
ok "audit log: rows for logins (ok, refused, unknown user), token POST/DELETE with 201/400/403/404, role refusals; no GETs, no password; paging and a bad time 400"

# ---------------------------------------------------------------- logout
call POST /api/v1/logout "${SESSION[@]}"
[ "$CODE" = 403 ] || fail "logout without CSRF: HTTP $CODE"
call POST /api/v1/logout "${SESSION[@]}" -H "X-CSRF-Token: $CSRF"
[ "$CODE" = 200 ] || fail "logout: HTTP $CODE"
grep -qi '^set-cookie: haven_session=;.*Max-Age=0' "$WORK/headers" || fail "logout clears the cookie: $(cat "$WORK/headers")"
call GET /api/v1/me "${SESSION[@]}"
[ "$CODE" = 401 ] || fail "the cookie after logout: HTTP $CODE"
ok "logout (with its CSRF token) ends the session: the old cookie is 401"

# ---------------------------------------------------------------- rate limit
# Five failures are free; from then on each attempt waits 1, 2, 4, 8 s after
# the last failure. A loaded machine can take a second between two requests,
# so the failures go on (waiting out each Retry-After) until the wait is 8 s:
# then the right password, sent at once, must be refused.
fails=0
for i in $(seq 1 20); do
  [ "$fails" -lt 8 ] || break
  BODY='{"user":"admin","password":"guess number '$i'"}' call POST /api/v1/login
  case "$CODE" in
    401) fails=$((fails + 1)) ;;
    429)
      [ "$fails" -ge 5 ] || fail "429 after only $fails failed logins"
      sleep "$(grep -i '^retry-after:' "$WORK/headers" | tr -dc 0-9)" ;;
    *) fail "failed login $i: HTTP $CODE" ;;
  esac
done
[ "$fails" = 8 ] || fail "only $fails failed logins in 20 attempts"
BODY="{\"user\":\"admin\",\"password\":\"$PASSWORD\"}" call POST /api/v1/login
[ "$CODE" = 429 ] || fail "login after 8 failures: HTTP $CODE"
wait_s=$(grep -i '^retry-after:' "$WORK/headers" | tr -dc 0-9)
[ -n "$wait_s" ] && [ "$wait_s" -ge 1 ] || fail "no Retry-After: $(cat "$WORK/headers")"
lacks "$WORK/headers" "set-cookie" "no cookie while rate-limited"
sleep $((wait_s + 1))
BODY="{\"user\":\"admin\",\"password\":\"$PASSWORD\"}" call POST /api/v1/login
[ "$CODE" = 200 ] || fail "login after Retry-After: HTTP $CODE"
SID2=$(grep -i '^set-cookie: haven_session=' "$WORK/headers" | sed 's/^[^=]*=\([^;]*\);.*/\1/')
CSRF2=$(jget 'j["csrf_token"]' "$WORK/body")
ok "failed logins: 5 free, then each waits longer; the right password at once is 429 with Retry-After: $wait_s; after the wait it logs in"

# ---------------------------------------------------------------- no secrets in the output or in clear in the database
kill -TERM "$DPID"
wait "$DPID" || fail "havend exited $? after SIGTERM"
DPID=
for secret in "$PASSWORD" "${TOKEN[admin]}" "${TOKEN[operator]}" "${TOKEN[auditor]}" \
  "$REVOKED" "$NEW" "$LIVE" "$SID" "$CSRF" "$SID2" "$CSRF2" "guess number"; do
  for f in "$WORK/first.out" "$WORK/first.log"; do
    lacks "$f" "$secret" "havend's output"
  done
  for f in "$STATE"/havend.db*; do
    if grep -qaF -- "$secret" "$f"; then fail "a secret in clear in $f"; fi
  done
done
lacks "$WORK/first.log" "haven_" "no token prefix in the log"
ok "no password, token, session id or CSRF token in havend's stdout/stderr or in clear in havend.db"

echo "PASS: $PASS checks"
