#!/usr/bin/env bash
# The console's archive download over real HTTPS on loopback: a browser
# saves POST /api/v1/points/{repo}/{id}/archive through its own download
# manager by posting a plain HTML form (application/x-www-form-urlencoded)
# whose field `request` is the JSON request and whose field `csrf_token`
# is the session's CSRF token (a fetch() would hold the archive in memory).
#  - logged in as the console is (havend admin password, POST /api/v1/login):
#    the form downloads a tar of a file point of a copy of /etc, streamed
#    (chunked) with Content-Disposition: attachment and a safe name, whose
#    members equal the source (names, sha256 of several files, diff -r)
#  - a wrong, empty or missing csrf_token is 403 in words (plain text: the
#    browser shows it in place of the console), so is the token in the URL;
#    another route (POST /api/v1/tokens) refuses the form field
#  - a bearer token needs no csrf_token; the JSON body with X-CSRF-Token
#    works as before; a bad form is 400; a form over the body limit is 413
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/havend_lib.sh"
havend_need curl bsdtar unshare sha256sum
R=$WORK/repo
STATE=$WORK/state
havend_trap
hv() { "$HAVEN" -r "$R" "$@"; }

# ---------------------------------------------------------------- data
# A file point of a copy of /etc (bind-mounted over /etc in a mount
# namespace of its own, so the point holds exactly the copy).
SRC=$WORK/root
mkdir -p "$SRC"
cp -a /etc "$SRC/etc"
expect_rc 0 "init" hv init
NS=(unshare -m)
[ "$(id -u)" = 0 ] || NS=(unshare -rm)
expect_rc 0 "backup files" "${NS[@]}" sh -c 'mount --bind "$1/etc" /etc && shift && exec "$@"' \
  - "$SRC" "$HAVEN" -r "$R" --json backup files /etc --name etcfiles
ID=$(jget 'j["snapshot"]' "$WORK/out")
[ ${#ID} = 32 ] || fail "point id: '$ID'"
ok "a file point ($ID) of a copy of /etc"

# ---------------------------------------------------------------- havend, login
havend_repo_password
havend_admin_password "$WORK/adminpw" 'archive form admin password'
havend_token auditor form-auditor
havend_start d --repository "main=$R" --password-file "$WORK/pw" --libvirt-uri test:///default
CURL=(curl -sS --max-time 60 --cacert "$STATE/cert.pem")
ARCHIVE=$URL/api/v1/points/main/$ID/archive
# The session cookie into the jar $WORK/jar, the CSRF token into $WORK/csrf:
# no secret in argv or in the test's output.
havend_login admin "$WORK/adminpw"
# A wrong token: the right one with its first digit changed.
first=0
[ "$(head -c1 "$WORK/csrf")" = 0 ] && first=1
printf '%s%s' "$first" "$(cut -c2- "$WORK/csrf")" >"$WORK/wrong"
printf '%s' '{"paths": ["/etc"], "format": "tar"}' >"$WORK/request"
ok "logged in as admin: session cookie and CSRF token"

# form OUT [CURL ARGS...]: POSTs a form to the archive route with the
# session cookie; body in OUT, headers in $WORK/hdr; CODE is set.
form() {
  local out=$1
  shift
  CODE=$("${CURL[@]}" -b "$WORK/jar" -o "$out" -D "$WORK/hdr" -w '%{http_code}' "$@" "$ARCHIVE")
}

# ---------------------------------------------------------------- the download
form "$WORK/a.tar" --data-urlencode "request@$WORK/request" --data-urlencode "csrf_token@$WORK/csrf"
[ "$CODE" = 200 ] || fail "form download: HTTP $CODE $(head -c 500 "$WORK/a.tar")"
contains "$WORK/hdr" "Transfer-Encoding: chunked" "the archive is streamed"
contains "$WORK/hdr" "Content-Type: application/x-tar" "tar content type"
contains "$WORK/hdr" "Content-Disposition: attachment; filename=\"etcfiles-${ID:0:8}.tar\"" \
  "attachment with a safe name"
rm -rf "$WORK/x" && mkdir "$WORK/x"
bsdtar -xf "$WORK/a.tar" -C "$WORK/x" || fail "bsdtar cannot read the tar"
(cd "$SRC" && find etc | LC_ALL=C sort) >"$WORK/want"
bsdtar -tf "$WORK/a.tar" | sed 's#/$##' | LC_ALL=C sort >"$WORK/got"
same_file "$WORK/got" "$WORK/want" "the tar's members are the source's names"
# sha256 of several regular files, then the whole tree.
(cd "$SRC" && find etc -type f -size +0 | LC_ALL=C sort | awk 'NR <= 200 && NR % 20 == 1') >"$WORK/some"
for f in etc/passwd etc/group; do [ -f "$SRC/$f" ] && echo "$f"; done >>"$WORK/some"
[ "$(wc -l <"$WORK/some")" -ge 5 ] || fail "too few files to compare: $(cat "$WORK/some")"
(cd "$SRC" && xargs -d '\n' sha256sum <"$WORK/some") >"$WORK/sums.want"
(cd "$WORK/x" && xargs -d '\n' sha256sum <"$WORK/some") >"$WORK/sums.got"
same_file "$WORK/sums.got" "$WORK/sums.want" "sha256 of $(wc -l <"$WORK/some") files"
diff -r --no-dereference "$SRC/etc" "$WORK/x/etc" >"$WORK/diff" 2>&1 ||
  fail "the tar differs from the source: $(head -20 "$WORK/diff")"
ok "the form downloads /etc as a streamed tar (attachment etcfiles-${ID:0:8}.tar) equal to the source ($(wc -l <"$WORK/some") sha256 sums, diff -r)"

# ---------------------------------------------------------------- refusals
# expect_refusal CODE TEXT WHAT [CURL ARGS...]: a form answered CODE with an
# error naming TEXT, and no archive.
expect_refusal() {
  local want=$1 text=$2 what=$3
  shift 3
  form "$WORK/body" "$@"
  [ "$CODE" = "$want" ] || fail "$what: HTTP $CODE, expected $want: $(head -c 500 "$WORK/body")"
  contains "$WORK/body" "$text" "$what says why"
  # The browser shows it in place of the console: a sentence, not JSON.
  contains "$WORK/body" "havend could not answer this download (HTTP $want" "$what in words"
  grep -qi '^content-type: text/plain; charset=utf-8' "$WORK/hdr" ||
    fail "$what is not plain text: $(cat "$WORK/hdr")"
  lacks "$WORK/hdr" "Content-Disposition" "$what is no download"
}
expect_refusal 403 "wrong csrf_token form field" "a wrong csrf_token" \
  --data-urlencode "request@$WORK/request" --data-urlencode "csrf_token@$WORK/wrong"
expect_refusal 403 "wrong csrf_token form field" "an empty csrf_token" \
  --data-urlencode "request@$WORK/request" --data-urlencode "csrf_token="
expect_refusal 403 "no X-CSRF-Token header" "no csrf_token" \
  --data-urlencode "request@$WORK/request"
# The token in the URL is not taken (and never put there by the console).
code=$("${CURL[@]}" -b "$WORK/jar" -o "$WORK/body" -w '%{http_code}' \
  --data-urlencode "request@$WORK/request" "$ARCHIVE?csrf_token=$(cat "$WORK/csrf")")
[ "$code" = 403 ] || fail "csrf_token in the query: HTTP $code"
# Another route does not take the field: the right token in a form is 403.
code=$("${CURL[@]}" -b "$WORK/jar" -o "$WORK/body" -w '%{http_code}' \
  --data-urlencode "name=form-token" --data-urlencode "role=auditor" \
  --data-urlencode "csrf_token@$WORK/csrf" "$URL/api/v1/tokens")
[ "$code" = 403 ] || fail "POST /api/v1/tokens with a form csrf_token: HTTP $code $(cat "$WORK/body")"
contains "$WORK/body" "no X-CSRF-Token header" "other routes ignore a form's csrf_token"
ok "403 in words for a wrong, empty or missing csrf_token, for the token in the URL, and on another route"

# ---------------------------------------------------------------- other callers, bad forms
code=$("${CURL[@]}" -H "@$WORK/token.auditor" -o "$WORK/b.tar" -w '%{http_code}' \
  --data-urlencode "request@$WORK/request" "$ARCHIVE")
[ "$code" = 200 ] || fail "form with a bearer token: HTTP $code $(head -c 300 "$WORK/b.tar")"
bsdtar -tf "$WORK/b.tar" | sed 's#/$##' | LC_ALL=C sort >"$WORK/got"
same_file "$WORK/got" "$WORK/want" "the bearer token's form download"
code=$("${CURL[@]}" -b "$WORK/jar" -H "X-CSRF-Token: $(cat "$WORK/csrf")" -o "$WORK/c.tar" -w '%{http_code}' \
  -H 'Content-Type: application/json' --data "@$WORK/request" "$ARCHIVE")
[ "$code" = 200 ] || fail "JSON with X-CSRF-Token: HTTP $code $(head -c 300 "$WORK/c.tar")"
cmp -s "$WORK/a.tar" "$WORK/c.tar" || {
  bsdtar -tf "$WORK/c.tar" | sed 's#/$##' | LC_ALL=C sort >"$WORK/got"
  same_file "$WORK/got" "$WORK/want" "the JSON download"
}
expect_refusal 400 "no field request" "a form without request" \
  --data-urlencode "csrf_token@$WORK/csrf"
expect_refusal 400 "unknown form field" "a form with another field" \
  --data-urlencode "request@$WORK/request" --data-urlencode "extra=1" --data-urlencode "csrf_token@$WORK/csrf"
expect_refusal 400 "format must be" "a bad request in the form" \
  --data-urlencode 'request={"paths":["/etc"],"format":"rar"}' --data-urlencode "csrf_token@$WORK/csrf"
# Over the body limit (1 MiB by default): 413 before anything is read.
py -c 'import json; print(json.dumps({"paths": ["/etc/" + "x" * 200 + str(i) for i in range(6000)], "format": "tar"}), end="")' \
  >"$WORK/big"
[ "$(wc -c <"$WORK/big")" -gt $((1 << 20)) ] || fail "the big request is not big"
form "$WORK/body" --data-urlencode "request@$WORK/big" --data-urlencode "csrf_token@$WORK/csrf"
[ "$CODE" = 413 ] || fail "a form over the body limit: HTTP $CODE $(head -c 300 "$WORK/body")"
ok "a bearer token's form needs no csrf_token; JSON + X-CSRF-Token as before; bad forms 400 in words; over the body limit 413"

havend_stop d
echo "PASS: $PASS checks"
