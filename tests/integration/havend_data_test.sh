#!/usr/bin/env bash
# havend's read side over real HTTPS on loopback (issue 16, point 2):
# repositories, hosts and VMs, recovery points, browsing and downloading a
# point's files. Real data: an ext4 image holding a copy of this machine's
# /etc (mke2fs -d) backed up with `haven backup image`, and /etc itself
# backed up with `haven backup files`; havend runs with the libvirt test
# driver, and every request carries an auditor's token (the least role that
# reads); without credentials it is 401, and there is no switch to serve
# without them.
#  - repositories: id, points, logical/stored bytes, free space
#  - points: filters (kind, vm, agent, since/until), paging, bad filters
#    400 naming the parameter, unknown repository/point 404, bad id 400
#  - show: disks, consistency, sizes
#  - files: /etc listed in both points with the source's names and sizes;
#    search by glob, bounded; /etc/passwd downloaded byte-identical with
#    Content-Length and a safe Content-Disposition; /etc as tar and zip
#    extracted by bsdtar equal to the source
#  - path traversal refused 400 in every form, a missing path 404
#  - a client cut off mid-download does not hurt havend
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/havend_lib.sh"
for c in curl bsdtar mke2fs unshare; do
  command -v "$c" >/dev/null || fail "$c is missing (scripts/install-deps.sh installs it)"
done
export TZ=UTC
R=$WORK/repo
STATE=$WORK/state
DPID=
cleanup() {
  set +e
  [ -n "$DPID" ] && { kill -9 "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null; }
  rm -rf "$WORK"
}
trap cleanup EXIT
hv() { "$HAVEN" -r "$R" "$@"; }
T0=$(date +%s)

# ---------------------------------------------------------------- data
SRC=$WORK/root
mkdir -p "$SRC"
cp -a /etc "$SRC/etc"
random_file "$SRC/big.bin" $((24 << 20)) 7  # for the cut-off download
IMG=$WORK/etc.img
truncate -s 96M "$IMG"
mke2fs -q -F -t ext4 -b 4096 -d "$SRC" "$IMG"
expect_rc 0 "init" hv init
expect_rc 0 "backup image" hv --json backup image "$IMG" --name etcdisk
IMG_ID=$(jget 'j["id"]' "$WORK/out")
# /etc is the machine's and may change meanwhile: the file backup reads
# the copy, bind-mounted over /etc in a mount namespace of its own, so
# its point holds /etc exactly as the image does.
NS=(unshare -m)
[ "$(id -u)" = 0 ] || NS=(unshare -rm)  # a user namespace of its own
expect_rc 0 "backup files" "${NS[@]}" sh -c 'mount --bind "$1/etc" /etc && shift && exec "$@"' \
  - "$SRC" "$HAVEN" -r "$R" --json backup files /etc --name etcfiles
FILE_ID=$(jget 'j["snapshot"]' "$WORK/out")
[ ${#IMG_ID} = 32 ] && [ ${#FILE_ID} = 32 ] || fail "point ids: '$IMG_ID' '$FILE_ID'"
ok "an image point ($IMG_ID) and a file point ($FILE_ID) of /etc"

# ---------------------------------------------------------------- havend
echo "$HAVEN_PASSWORD" >"$WORK/pw"
chmod 600 "$WORK/pw"
havend_token auditor data-auditor
havend_start d --repository "main=$R" --password-file "$WORK/pw" --libvirt-uri test:///default
URL=$URL/api/v1
CURL=(curl -sS --max-time 30 --cacert "$STATE/cert.pem" -H "@$WORK/token.auditor")
# get PATH [CURL ARGS]: GET into $WORK/body, headers $WORK/hdr; CODE is set.
get() {
  local p=$1
  shift
  CODE=$("${CURL[@]}" -o "$WORK/body" -D "$WORK/hdr" -w '%{http_code}' "$@" "$URL$p")
}
# expect_code CODE WHAT PATH [CURL ARGS]
expect_code() {
  local want=$1 what=$2
  shift 2
  get "$@"
  [ "$CODE" = "$want" ] || fail "$what: HTTP $CODE, expected $want: $(head -c 2000 "$WORK/body")"
}
# expect_error CODE TEXT WHAT PATH [CURL ARGS]: the error JSON names TEXT.
expect_error() {
  local want=$1 text=$2 what=$3
  shift 3
  expect_code "$want" "$what" "$@"
  jget 'j["error"]' "$WORK/body" >"$WORK/errtext"
  contains "$WORK/errtext" "$text" "$what"
}

# no credentials: 401 on every route; no switch serves without them
CODE=$(curl -sS --max-time 30 --cacert "$STATE/cert.pem" -o "$WORK/body" -w '%{http_code}' "$URL/repositories")
[ "$CODE" = 401 ] || fail "GET /repositories without credentials: HTTP $CODE"
expect_rc 2 "--insecure-no-auth is no option" "$HAVEND" serve --state-dir "$WORK/s2" \
  --listen 127.0.0.1:0 --insecure-no-auth
contains "$WORK/err" "insecure-no-auth" "the usage error names the switch"
ok "401 without credentials; havend serve has no --insecure-no-auth"

# ---------------------------------------------------------------- repositories
expect_code 200 "repositories" /repositories
REPO_ID=$(py -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$R/config")
[ "$(jget 'j["repositories"][0]["id"]' "$WORK/body")" = "$REPO_ID" ] || fail "repository id: $(cat "$WORK/body")"
[ "$(jget 'j["repositories"][0]["points"]' "$WORK/body")" = 2 ] || fail "points count: $(cat "$WORK/body")"
[ "$(jget 'j["repositories"][0]["stored_bytes"] > 0 and j["repositories"][0]["logical_bytes"] >= 96 << 20' "$WORK/body")" = true ] ||
  fail "sizes: $(cat "$WORK/body")"
[ "$(jget 'j["repositories"][0]["free_bytes"] > 0' "$WORK/body")" = true ] || fail "free: $(cat "$WORK/body")"
ok "repositories: id, 2 points, logical >= 96 MiB, stored and free bytes"

# ---------------------------------------------------------------- points
expect_code 200 "points" /points
[ "$(jget '[p["id"] for p in j["points"]]' "$WORK/body")" = "[\"$FILE_ID\", \"$IMG_ID\"]" ] ||
  fail "points newest first: $(cat "$WORK/body")"
expect_code 200 "kind=file" "/points?kind=file"
[ "$(jget '[p["id"] for p in j["points"]]' "$WORK/body")" = "[\"$FILE_ID\"]" ] || fail "kind=file: $(cat "$WORK/body")"
expect_code 200 "kind=image" "/points?kind=image&repository=main"
[ "$(jget '[p["id"] for p in j["points"]]' "$WORK/body")" = "[\"$IMG_ID\"]" ] || fail "kind=image: $(cat "$WORK/body")"
expect_code 200 "vm" "/points?vm=etcdisk"
[ "$(jget '[p["id"] for p in j["points"]]' "$WORK/body")" = "[\"$IMG_ID\"]" ] || fail "vm=: $(cat "$WORK/body")"
expect_code 200 "agent" "/points?agent=$(hostname)&kind=files"
[ "$(jget 'len(j["points"])' "$WORK/body")" = 1 ] || fail "agent=: $(cat "$WORK/body")"
expect_code 200 "agent other" "/points?agent=nohost"
[ "$(jget 'len(j["points"])' "$WORK/body")" = 0 ] || fail "agent=nohost: $(cat "$WORK/body")"
expect_code 200 "since future" "/points?since=2999-01-01T00:00:00Z"
[ "$(jget 'len(j["points"])' "$WORK/body")" = 0 ] || fail "since: $(cat "$WORK/body")"
expect_code 200 "until future" "/points?until=2999-01-01T00:00:00Z&since=2000-01-01T00:00:00Z"
[ "$(jget 'len(j["points"])' "$WORK/body")" = 2 ] || fail "until: $(cat "$WORK/body")"
expect_code 200 "page 1" "/points?limit=1"
[ "$(jget 'j["points"][0]["id"]' "$WORK/body")" = "$FILE_ID" ] || fail "page 1: $(cat "$WORK/body")"
NEXT=$(jget 'j["next_before"]' "$WORK/body")
[ "$NEXT" = "$FILE_ID" ] || fail "next_before: $(cat "$WORK/body")"
expect_code 200 "page 2" "/points?limit=1&before=$NEXT"
[ "$(jget 'j["points"][0]["id"]' "$WORK/body")" = "$IMG_ID" ] || fail "page 2: $(cat "$WORK/body")"
[ "$(jget 'j["next_before"]' "$WORK/body")" = None ] || fail "last page: $(cat "$WORK/body")"
# 20 clients at once share the repository's refreshes; all get the list.
PIDS=()
for i in $(seq 20); do
  "${CURL[@]}" -o "$WORK/c$i.json" -w '%{http_code}' "$URL/points" >"$WORK/c$i.code" &
  PIDS+=($!)
done
wait "${PIDS[@]}"
for i in $(seq 20); do
  [ "$(cat "$WORK/c$i.code")" = 200 ] && [ "$(jget 'j["total"]' "$WORK/c$i.json")" = 2 ] ||
    fail "concurrent listing $i: $(cat "$WORK/c$i.code") $(head -c 300 "$WORK/c$i.json")"
done
ok "points: newest first, kind/vm/agent/since/until filters, paging with before, 20 concurrent listings"
expect_error 400 "kind" "bad kind" "/points?kind=disk"
expect_error 400 "since" "bad since" "/points?since=yesterday"
expect_error 400 "limit" "bad limit" "/points?limit=0"
expect_error 400 "limit" "bad limit" "/points?limit=abc"
expect_error 400 "before" "bad before" "/points?before=zz"
expect_error 400 "colour" "unknown filter" "/points?colour=red"
expect_error 404 "nope" "unknown repository" "/points?repository=nope"
ok "points: bad filters 400 naming the parameter, unknown repository 404"

expect_code 200 "show" "/points/main/$IMG_ID"
[ "$(jget 'j["kind"], j["name"], j["disks"][0]["size"], j["consistency"] != ""' "$WORK/body")" = \
  "('image', 'etcdisk', $((96 << 20)), True)" ] || fail "show: $(cat "$WORK/body")"
expect_code 200 "show by prefix" "/points/main/${FILE_ID:0:8}"
[ "$(jget 'j["id"], j["paths"]' "$WORK/body")" = "('$FILE_ID', ['/etc'])" ] || fail "show prefix: $(cat "$WORK/body")"
expect_error 404 "hex digits" "not an id" "/points/main/xyz"
expect_error 404 "hex digits" "too short an id" "/points/main/${IMG_ID:0:4}"
expect_error 404 "0123456789abcdef" "unknown id" "/points/main/0123456789abcdef"
expect_error 404 "nope" "unknown repository" "/points/nope/$IMG_ID"
ok "show: a point with its disks; a malformed or unknown id, an unknown repository 404"

# ---------------------------------------------------------------- files
# names SRCDIR: the names in a directory, sorted, one per line
names() { (cd "$1" && LC_ALL=C ls -A | LC_ALL=C sort); }
for id in "$IMG_ID" "$FILE_ID"; do
  expect_code 200 "list /etc of $id" "/points/main/$id/files?path=/etc"
  jget '"\n".join(sorted(e["name"] for e in j["entries"]))' "$WORK/body" | LC_ALL=C sort >"$WORK/listed"
  names "$SRC/etc" >"$WORK/want"
  same_file "$WORK/listed" "$WORK/want" "names of /etc in $id"
  [ "$(jget '[e for e in j["entries"] if e["name"] == "passwd"][0]["size"]' "$WORK/body")" = \
    "$(stat -c %s "$SRC/etc/passwd")" ] || fail "passwd size in $id"
  [ "$(jget '[e for e in j["entries"] if e["name"] == "passwd"][0]["mode"]' "$WORK/body")" = \
    "$(stat -c %A "$SRC/etc/passwd")" ] || fail "passwd mode in $id"
  expect_code 200 "paged" "/points/main/$id/files?path=/etc/&limit=5&offset=5"
  [ "$(jget 'len(j["entries"]), j["next_offset"], j["total"]' "$WORK/body")" = \
    "(5, 10, $(wc -l <"$WORK/want"))" ] || fail "paging: $(head -c 500 "$WORK/body")"

  expect_code 200 "search" "/points/main/$id/files/search?name=passwd"
  jget '[r["path"] for r in j["results"]]' "$WORK/body" >"$WORK/found"
  contains "$WORK/found" '"/etc/passwd"' "search finds /etc/passwd in $id"
  expect_code 200 "search bounded" "/points/main/$id/files/search?name=*.conf&limit=3"
  [ "$(jget 'len(j["results"]), j["truncated"] is not None' "$WORK/body")" = "(3, True)" ] ||
    fail "bounded search: $(head -c 500 "$WORK/body")"

  expect_code 200 "download" "/points/main/$id/download?path=/etc/passwd"
  same_file "$WORK/body" "$SRC/etc/passwd" "downloaded passwd of $id"
  contains "$WORK/hdr" "Content-Length: $(stat -c %s "$SRC/etc/passwd")" "download length"
  contains "$WORK/hdr" 'Content-Disposition: attachment; filename="passwd"' "download name"
  ok "point $id: /etc listed like the source (names, sizes, modes, paging), search, passwd downloaded byte-identical"

  for fmt in tar zip; do
    code=$("${CURL[@]}" -o "$WORK/a.$fmt" -D "$WORK/hdr" -w '%{http_code}' \
      -H 'Content-Type: application/json' --data "{\"paths\": [\"/etc\"], \"format\": \"$fmt\"}" \
      "$URL/points/main/$id/archive")
    [ "$code" = 200 ] || fail "archive $fmt: HTTP $code $(head -c 500 "$WORK/a.$fmt")"
    contains "$WORK/hdr" "Transfer-Encoding: chunked" "$fmt is streamed"
    rm -rf "$WORK/x" && mkdir "$WORK/x"
    bsdtar -xf "$WORK/a.$fmt" -C "$WORK/x" || fail "bsdtar cannot read the $fmt of $id"
    (cd "$SRC" && find etc | LC_ALL=C sort) >"$WORK/want"
    (cd "$WORK/x" && find etc | LC_ALL=C sort) >"$WORK/got"
    same_file "$WORK/got" "$WORK/want" "the $fmt of $id lists the source's names"
    diff -r --no-dereference "$SRC/etc" "$WORK/x/etc" >"$WORK/diff" 2>&1 ||
      fail "the $fmt of $id differs from the source: $(head -20 "$WORK/diff")"
  done
  ok "point $id: /etc as tar and as zip extracted by bsdtar equals the source"

  # Traversal, in every form: refused before any lookup.
  for p in '../etc/passwd' 'etc/passwd' '/etc/../etc/passwd' '/..' '/etc/.' \
    '%2e%2e%2fetc%2fpasswd' '%2Fetc%2F%2E%2E%2F%2E%2E%2Froot' '/etc/passwd%0a' '/etc%5c..'; do
    get "/points/main/$id/download?path=$p"
    case "$p" in
      *%5c*) [ "$CODE" = 404 ] || fail "backslash is an ordinary byte: $p -> $CODE" ;;
      *) [ "$CODE" = 400 ] || fail "traversal $p: HTTP $CODE $(head -c 300 "$WORK/body")" ;;
    esac
    get "/points/main/$id/files?path=$p"
    case "$p" in *%5c*) ;; *) [ "$CODE" = 400 ] || fail "listing traversal $p: HTTP $CODE" ;; esac
  done
  expect_code 400 "encoded NUL" "/points/main/$id/download?path=/etc/passwd%00"
  for body in '{"paths": ["../etc"]}' '{"paths": ["/etc/../../root"]}' '{"paths": ["etc"]}' \
    '{"paths": ["/etc/\u0000x"]}' '{"paths": []}' '{"paths": ["/etc"], "format": "rar"}' 'nonsense'; do
    code=$("${CURL[@]}" -o "$WORK/body" -w '%{http_code}' --data "$body" "$URL/points/main/$id/archive")
    [ "$code" = 400 ] || fail "archive $body: HTTP $code $(head -c 300 "$WORK/body")"
  done
  code=$("${CURL[@]}" --path-as-is -o "$WORK/body" -w '%{http_code}' \
    "$URL/points/main/$id/../../../../etc/passwd")
  [ "$code" = 400 ] || fail "dot segments in the URL: HTTP $code"
  ok "point $id: traversal refused 400 (relative, .., encoded, control characters, NUL, in archive bodies, in the URL)"

  expect_code 404 "missing file" "/points/main/$id/download?path=/etc/no-such-file"
  expect_code 404 "missing dir" "/points/main/$id/files?path=/no/such/dir"
  code=$("${CURL[@]}" -o "$WORK/body" -w '%{http_code}' --data '{"paths": ["/etc/passwd", "/nope"]}' \
    "$URL/points/main/$id/archive")
  [ "$code" = 404 ] || fail "archive of a missing path: HTTP $code"
  expect_error 400 "regular file" "download of a directory" "/points/main/$id/download?path=/etc"
  ok "point $id: a missing path is 404 (listing, download, archive); a directory download 400"
done
expect_error 400 "file backup" "disk on a file point" "/points/main/$FILE_ID/files?path=/&disk=vda"
expect_error 400 "disk" "unknown disk" "/points/main/$IMG_ID/files?path=/&disk=nope"

# ---------------------------------------------------------------- cut connections
for i in 1 2 3; do
  set +e
  "${CURL[@]}" --limit-rate 200k --max-time 1 -o /dev/null \
    "$URL/points/main/$IMG_ID/download?path=/big.bin" 2>/dev/null
  rc=$?
  "${CURL[@]}" --limit-rate 200k --max-time 1 -o /dev/null --data '{"paths": ["/"]}' \
    "$URL/points/main/$IMG_ID/archive" 2>/dev/null
  rc2=$?
  set -e
  [ "$rc" = 28 ] && [ "$rc2" = 28 ] || fail "the cut-off clients: curl exits $rc, $rc2 (28 expected)"
done
kill -0 "$DPID" 2>/dev/null || fail "havend died after cut connections: $(tail -5 "$WORK/d.log")"
expect_code 200 "download after cuts" "/points/main/$IMG_ID/download?path=/big.bin"
same_file "$WORK/body" "$SRC/big.bin" "the big file after cut-off downloads"
ok "clients cut off mid-download and mid-archive: havend serves on, a whole download is byte-identical"

# ---------------------------------------------------------------- hosts
HOST=$(jget 'j["hosts"][0]["name"]' < <("${CURL[@]}" "$URL/hosts"))
"${CURL[@]}" "$URL/hosts" >"$WORK/hosts"
[ "$(jget 'j["hosts"][0]["local"], j["hosts"][0]["reachable"], j["hosts"][0]["vms"] >= 1' "$WORK/hosts")" = \
  "(True, True, True)" ] || fail "hosts: $(cat "$WORK/hosts")"
expect_code 200 "vms" "/hosts/$HOST/vms"
[ "$(jget '[(v["name"], v["state"], v["points"]) for v in j["vms"]]' "$WORK/body")" = '[["test", "running", 0]]' ] ||
  fail "vms: $(cat "$WORK/body")"
expect_code 404 "unknown host" "/hosts/no-such-host/vms"
ok "hosts: the local libvirt host (test driver) with its VM 'test' running; unknown host 404"

# ---------------------------------------------------------------- openapi
expect_code 200 "openapi" /openapi.json
for p in /api/v1/repositories /api/v1/hosts /api/v1/hosts/{host}/vms /api/v1/points \
  /api/v1/points/{repo}/{id} /api/v1/points/{repo}/{id}/files /api/v1/points/{repo}/{id}/files/search \
  /api/v1/points/{repo}/{id}/download /api/v1/points/{repo}/{id}/archive; do
  [ "$(jget "'$p' in j['paths']" "$WORK/body")" = true ] || fail "openapi lacks $p"
done
ok "openapi.json documents every read route"

# A new point at once shows in the stored bytes beside it (not a figure
# counted before the backup and kept for a minute).
expect_code 200 "repositories" /repositories
STORED1=$(jget 'j["repositories"][0]["stored_bytes"]' "$WORK/body")
head -c $((4 << 20)) /dev/urandom >"$WORK/fresh.bin"
expect_rc 0 "backup files (fresh data)" hv backup files "$WORK/fresh.bin" --name fresh
expect_code 200 "repositories" /repositories
[ "$(jget "j['repositories'][0]['points'], j['repositories'][0]['stored_bytes'] >= $STORED1 + (4 << 20)" "$WORK/body")" = \
  "(3, True)" ] || fail "stored bytes after a new point (before: $STORED1): $(cat "$WORK/body")"
ok "repositories: a new point's 4 MiB show in stored_bytes at once"

lacks "$WORK/d.log" "$HAVEN_PASSWORD" "the passphrase is never logged"
kill -TERM "$DPID"
wait "$DPID" || fail "havend exit code $?"
DPID=
echo "havend_data_test: $PASS checks passed in $(($(date +%s) - T0)) s"
