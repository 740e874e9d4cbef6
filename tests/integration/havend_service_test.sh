#!/usr/bin/env bash
# havend as a systemd service (issue 16, point 9), with the real binaries:
#  - appliance/havend.service passes `systemd-analyze verify`, keeps its
#    hardening options and an exposure score of at most 3.0
#    (`systemd-analyze security --offline`)
#  - `havend serve` tells systemd it is ready (READY=1 on $NOTIFY_SOCKET)
#    once it listens, and STOPPING=1 on SIGTERM
#  - `havend init` in a temporary directory makes the state directory
#    (0700), key/cert (0600, the fingerprint it prints is openssl's), the
#    state database, the repository with a random passphrase file (0600,
#    never printed) and the configuration; run again it changes nothing and
#    says so; an init stopped before the repository finishes it with the
#    same passphrase; a repository without its passphrase file is refused;
#    an existing configuration is read (a typo stops init at its line),
#    never rewritten
#  - `haven` opens that repository with the passphrase file (backup, list)
#  - `havend serve --config` takes the state directory and certificate from
#    the file, command-line options win; a typo and an open secret file are
#    refused naming the file and line
#  - the Debian packages (cpack in the build dir): havend_*.deb holds
#    /usr/sbin/havend, the unit and /etc/haven/havend.conf.example as a
#    conffile, the web console in /usr/share/haven/console; its postinst
#    starts nothing; haven_*.deb is unchanged
#  - the web console's files are served from ConsoleDirectory=
. "$(dirname "$0")/lib.sh"
: "${HAVEND:?HAVEND must point at the havend binary}"
SRC=${HAVEN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
for c in curl openssl systemd-analyze; do
  command -v "$c" >/dev/null || fail "$c is missing (scripts/install-deps.sh installs it)"
done
DPID=
cleanup() {
  set +e
  [ -n "$DPID" ] && { kill -9 "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null; }
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------- the unit
UNIT=$SRC/appliance/havend.service
# verify checks that ExecStart's binary exists: point it at the one built.
mkdir -p "$WORK/unit"
sed "s#/usr/sbin/havend#$HAVEND#" "$UNIT" >"$WORK/unit/havend.service"
expect_rc 0 "systemd-analyze verify" systemd-analyze verify "$WORK/unit/havend.service"
lacks "$WORK/err" "havend.service" "systemd-analyze verify warnings"
for want in "Type=notify" "StateDirectory=haven" "ConfigurationDirectory=haven" \
  "ProtectSystem=strict" "ProtectHome=yes" "PrivateTmp=yes" "NoNewPrivileges=yes" \
  "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK" "LockPersonality=yes" \
  "MemoryDenyWriteExecute=yes" "SystemCallFilter=@system-service" \
  "CapabilityBoundingSet=CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER" \
  "ExecStart=/usr/sbin/havend serve --config /etc/haven/havend.conf"; do
  grep -qxF -- "$want" "$UNIT" || fail "havend.service lacks the line $want"
done
run systemd-analyze security --offline=yes --no-pager "$WORK/unit/havend.service"
score=$(sed -n 's/.*Overall exposure level for havend.service: \([0-9.]*\).*/\1/p' "$WORK/out")
[ -n "$score" ] || fail "no exposure score: $(tail -3 "$WORK/out") $(cat "$WORK/err")"
awk -v s="$score" 'BEGIN { exit !(s <= 3.0) }' || fail "exposure $score, more than 3.0"
ok "havend.service: systemd-analyze verify clean, hardening lines present, exposure $score"

# docs/appliance.md shows the installed example whole.
"$PYTHON" - "$SRC/appliance/havend.conf.example" "$SRC/docs/appliance.md" <<'PYEOF' ||
import sys
sys.exit(open(sys.argv[1]).read() not in open(sys.argv[2]).read())
PYEOF
  fail "docs/appliance.md does not hold appliance/havend.conf.example verbatim"
ok "docs/appliance.md holds the example configuration verbatim"

# ---------------------------------------------------------------- init
STATE=$WORK/state
CONF=$WORK/etc/havend.conf
init() { "$HAVEND" init --state-dir "$STATE" --config "$CONF" --listen 127.0.0.1:8421 "$@"; }
expect_rc 0 "havend init" init
cp "$WORK/out" "$WORK/init1.out"
cp "$WORK/err" "$WORK/init1.err"
mode() { stat -c %a "$1"; }
[ "$(mode "$STATE")" = 700 ] || fail "state dir mode $(mode "$STATE")"
for f in key.pem cert.pem havend.db repository.pass; do
  [ -f "$STATE/$f" ] || fail "init made no $STATE/$f: $(cat "$WORK/init1.out")"
  [ "$(mode "$STATE/$f")" = 600 ] || fail "$f mode $(mode "$STATE/$f"), expected 600"
done
[ -f "$STATE/repository/config" ] || fail "no repository in $STATE/repository"
[ "$(mode "$CONF")" = 640 ] || fail "config mode $(mode "$CONF")"
PASSPHRASE=$(head -1 "$STATE/repository.pass")
[ "${#PASSPHRASE}" = 32 ] || fail "passphrase of ${#PASSPHRASE} characters"
lacks "$WORK/init1.out" "$PASSPHRASE" "init's stdout"
lacks "$WORK/init1.err" "$PASSPHRASE" "init's stderr"
contains "$WORK/init1.out" "made a random passphrase in $STATE/repository.pass (0600) - copy it somewhere safe" "init"
contains "$WORK/init1.out" "made the repository default at $STATE/repository" "init"
contains "$WORK/init1.out" "wrote the configuration $CONF" "init"
contains "$WORK/init1.out" "URL:                         https://127.0.0.1:8421/" "init"
FP=$(sed -n 's/^certificate fingerprint: *//p' "$WORK/init1.out")
want=$(openssl x509 -noout -fingerprint -sha256 -in "$STATE/cert.pem")
[ "$FP" = "SHA256:${want#*=}" ] || fail "init printed fingerprint '$FP', openssl says $want"
# The admin account: its password in a 0600 file, never printed; the
# nightly schedule for every VM.
[ "$(mode "$STATE/admin.password")" = 600 ] || fail "admin.password mode"
ADMINPW=$(cat "$STATE/admin.password")
lacks "$WORK/init1.out" "$ADMINPW" "init's stdout"
lacks "$WORK/init1.err" "$ADMINPW" "init's stderr"
contains "$WORK/init1.out" "admin password:              in $STATE/admin.password" "init"
contains "$WORK/init1.out" "made the nightly schedule" "init"
contains "$WORK/init1.out" "Set up." "init"
ok "init: state 0700, key/cert/db/passphrase 0600, repository, config 0640, fingerprint $FP; no secret printed"

# The configuration it wrote names what it made.
contains "$CONF" "StateDirectory=$STATE" "config"
contains "$CONF" "Listen=127.0.0.1:8421" "config"
contains "$CONF" "[Repository default]" "config"
contains "$CONF" "Path=$STATE/repository" "config"
contains "$CONF" "PasswordFile=$STATE/repository.pass" "config"

# ---------------------------------------------------------------- again
# Every file with its mode, size and mtime, but the database (SQLite's
# -wal/-shm come and go) and the repository's lock file (opening makes it);
# directories by mode only.
snap() {
  (cd "$WORK" && find state etc -type f -printf '%p %m %s %T@\n' | grep -vE 'havend\.db|/locks/' | sort
   cd "$WORK" && find state etc -type d -printf '%p %m\n' | sort)
  sha256sum "$STATE"/*.pem "$STATE/repository.pass" "$CONF"
}
snap >"$WORK/before"
expect_rc 0 "havend init again" init
diff "$WORK/before" <(snap) >/dev/null || fail "init again changed files: $(diff "$WORK/before" <(snap))"
contains "$WORK/out" "Nothing changed: this appliance was set up already." "init again"
contains "$WORK/out" "kept the repository default at $STATE/repository (it opens with $STATE/repository.pass)" "init again"
lacks "$WORK/out" "made " "init again"
contains "$WORK/out" "certificate fingerprint:     $FP" "init again"
ok "init again: nothing changed (files, modes, contents), says so, same fingerprint"

# ---------------------------------------------------------------- the repository
export HAVEN_PASSWORD_FILE=$STATE/repository.pass
unset HAVEN_PASSWORD
random_file "$WORK/disk.img" $((1 << 20)) 3
expect_rc 0 "haven backup image" "$HAVEN" -r "$STATE/repository" backup image "$WORK/disk.img" --name t
expect_rc 0 "haven snapshots" "$HAVEN" -r "$STATE/repository" snapshots
grep -qE ' t +1\.0 MiB' "$WORK/out" || fail "snapshots: $(cat "$WORK/out")"
export HAVEN_PASSWORD=correct-horse
unset HAVEN_PASSWORD_FILE
expect_rc 1 "haven with another passphrase" "$HAVEN" -r "$STATE/repository" snapshots
ok "the repository opens with the generated passphrase file (backup, snapshots), not with another"

# An init stopped after the passphrase file and before the repository
# finishes with the same passphrase; a repository whose passphrase file is
# gone is refused, never re-keyed.
mv "$STATE/repository" "$WORK/repository.kept"
expect_rc 0 "init after a lost repository" init
contains "$WORK/out" "made the repository default" "init"
lacks "$WORK/out" "made a random passphrase" "init"
[ "$(head -1 "$STATE/repository.pass")" = "$PASSPHRASE" ] || fail "passphrase changed"
rm -rf "$STATE/repository"
mv "$WORK/repository.kept" "$STATE/repository"
mv "$STATE/repository.pass" "$WORK/pass.kept"
expect_rc 1 "init without the passphrase file" init
contains "$WORK/err" "the repository $STATE/repository exists but its passphrase file $STATE/repository.pass does not" "init"
[ ! -e "$STATE/repository.pass" ] || fail "init made a new passphrase for an existing repository"
mv "$WORK/pass.kept" "$STATE/repository.pass"
# An existing configuration is read, never rewritten: a typo in it stops
# init at its line; asking for another repository than it names is a warning.
cp "$CONF" "$WORK/conf.kept"
sed -i 's/^MaxJobs=/MaxJob=/' "$CONF"
expect_rc 2 "init with a typo in the configuration" init
contains "$WORK/err" "$CONF:" "init names the file"
contains "$WORK/err" "unknown key \"MaxJob\" in [Jobs]" "init names the key"
cp "$WORK/conf.kept" "$CONF"
expect_rc 0 "init asking for another repository" init --repository "$WORK/other-repo"
contains "$WORK/err" "$CONF is not changed by init and does not say what the command line asked for" "init"
contains "$WORK/err" "[Repository default] Path=$WORK/other-repo" "init"
cmp -s "$CONF" "$WORK/conf.kept" || fail "init changed an existing $CONF"
rm -rf "$WORK/other-repo"
ok "init finishes an interrupted set-up with the same passphrase; refuses a repository without its passphrase; never rewrites an existing configuration"

# ---------------------------------------------------------------- serve --config
# NOTIFY_SOCKET: a datagram socket like systemd's, read by python.
NOTIFY=$WORK/notify.sock
"$PYTHON" - "$NOTIFY" "$WORK/notify.txt" <<'PYEOF' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(30)
with open(sys.argv[2], "w") as out:
    for _ in range(2):
        try:
            msg = s.recv(4096).decode()
        except socket.timeout:
            break
        out.write(msg.replace("\n", " ") + "\n")
        out.flush()
PYEOF
LPID=$!
for _ in $(seq 50); do [ -S "$NOTIFY" ] && break; sleep 0.1; done
# The web console from the file's ConsoleDirectory= (the checkout's).
sed -i "s#^\\[Server\\]\$#[Server]\\nConsoleDirectory=$SRC/appliance/console#" "$CONF"
contains "$CONF" "ConsoleDirectory=$SRC/appliance/console" "config with the console"
NOTIFY_SOCKET=$NOTIFY "$HAVEND" serve --config "$CONF" --listen 127.0.0.1:0 \
  >"$WORK/serve.out" 2>"$WORK/serve.log" &
DPID=$!
for _ in $(seq 100); do
  grep -q "listening on" "$WORK/serve.out" 2>/dev/null && break
  kill -0 "$DPID" 2>/dev/null || fail "havend serve --config exited: $(cat "$WORK/serve.log")"
  sleep 0.1
done
PORT=$(sed -n 's#^listening on https://127\.0\.0\.1:\([0-9]*\)/$#\1#p' "$WORK/serve.out")
[ -n "$PORT" ] || fail "no 'listening on' line: $(cat "$WORK/serve.out")"
contains "$WORK/serve.out" "certificate SHA-256 fingerprint: $FP" "serve --config uses the state dir's certificate"
code=$(curl -sS --max-time 10 --cacert "$STATE/cert.pem" -o "$WORK/body" -w '%{http_code}' \
  "https://127.0.0.1:$PORT/api/v1/health")
[ "$code" = 200 ] || fail "health through the configured server: HTTP $code"
# The console's first page and a module, with the console's policy.
console_get() {
  code=$(curl -sS --max-time 10 --cacert "$STATE/cert.pem" -D "$WORK/head" -o "$WORK/body" \
    -w '%{http_code}' "https://127.0.0.1:$PORT$1")
  [ "$code" = 200 ] || fail "GET $1 (console): HTTP $code"
  cmp -s "$WORK/body" "$SRC/appliance/console$2" || fail "GET $1 is not appliance/console$2"
  grep -qi "^content-type: $3" "$WORK/head" || fail "GET $1: $(grep -i content-type "$WORK/head")"
  grep -qi "^content-security-policy: default-src 'none'; script-src 'self';" "$WORK/head" ||
    fail "GET $1: no console policy in: $(cat "$WORK/head")"
}
console_get / /index.html text/html
console_get /js/app.js /js/app.js text/javascript
ok "the console is served from ConsoleDirectory= with its Content-Security-Policy"
for _ in $(seq 50); do grep -q READY=1 "$WORK/notify.txt" 2>/dev/null && break; sleep 0.1; done
contains "$WORK/notify.txt" "READY=1 STATUS=listening on https://127.0.0.1:$PORT/" "sd_notify"
kill -TERM "$DPID"
rc=0; wait "$DPID" || rc=$?; DPID=
[ "$rc" = 0 ] || fail "havend exited $rc on SIGTERM"
wait "$LPID" || true
contains "$WORK/notify.txt" "STOPPING=1" "sd_notify on SIGTERM"
ok "serve --config: state dir and certificate from the file, --listen over it; READY=1 once listening, STOPPING=1 on SIGTERM"

# Mistakes in the file stop havend before it starts.
cp "$CONF" "$WORK/typo.conf"
sed -i 's/^Listen=/Listn=/' "$WORK/typo.conf"
line=$(grep -n '^Listn=' "$WORK/typo.conf" | cut -d: -f1)
expect_rc 2 "serve with a typo" "$HAVEND" serve --config "$WORK/typo.conf"
contains "$WORK/err" "havend: error: $WORK/typo.conf:$line: unknown key \"Listn\" in [Server]" "typo"
chmod 644 "$STATE/repository.pass"
expect_rc 1 "serve with an open passphrase file" "$HAVEND" serve --config "$CONF"
contains "$WORK/err" "PasswordFile: the secret file $STATE/repository.pass has mode 0644" "open secret"
chmod 600 "$STATE/repository.pass"
expect_rc 1 "serve with a missing config" "$HAVEND" serve --config "$WORK/none.conf"
contains "$WORK/err" "the configuration file $WORK/none.conf does not exist" "missing config"
ok "serve refuses a typo (file:line), a passphrase file others may read, a missing --config"

# ---------------------------------------------------------------- packages
BUILD=$(dirname "$HAVEND")
if [ "${HAVEN_SKIP_PACKAGE:-0}" = 1 ] || ! command -v cpack >/dev/null ||
   [ ! -f "$BUILD/CPackConfig.cmake" ]; then
  echo "note: package check skipped (HAVEN_SKIP_PACKAGE=1, no cpack, or no CPackConfig.cmake in $BUILD)"
else
  start=$SECONDS
  (cd "$BUILD" && cpack -G DEB -B "$WORK/cpack") >"$WORK/cpack.log" 2>&1 ||
    fail "cpack failed: $(tail -c 3000 "$WORK/cpack.log")"
  DEB=$(ls "$WORK"/cpack/havend_*.deb 2>/dev/null | head -1)
  [ -f "$DEB" ] || fail "no havend_*.deb: $(ls "$WORK/cpack")"
  AGENT=$(ls "$WORK"/cpack/haven_*.deb 2>/dev/null | head -1)
  [ -f "$AGENT" ] || fail "no haven_*.deb beside it: $(ls "$WORK/cpack")"
  dpkg-deb -c "$DEB" >"$WORK/contents"
  for f in ./usr/sbin/havend ./lib/systemd/system/havend.service ./etc/haven/havend.conf.example \
    ./usr/share/doc/havend/appliance.md; do
    grep -qE " $f\$" "$WORK/contents" || fail "dpkg-deb -c: $f missing from: $(cat "$WORK/contents")"
  done
  lacks "$WORK/contents" "./usr/bin/haven" "havend package"
  [ "$(dpkg-deb -f "$DEB" Package)" = havend ] || fail "Package: $(dpkg-deb -f "$DEB" Package)"
  DEPENDS=$(dpkg-deb -f "$DEB" Depends)
  for lib in libssl3 libsqlite3 libc6; do
    [[ "$DEPENDS" == *"$lib"* ]] || fail "havend Depends lacks $lib: $DEPENDS"
  done
  mkdir "$WORK/control"
  dpkg-deb -e "$DEB" "$WORK/control"
  contains "$WORK/control/conffiles" "/etc/haven/havend.conf.example" "conffiles"
  for s in postinst prerm postrm; do
    [ "$(mode "$WORK/control/$s")" = 755 ] || fail "$s mode $(mode "$WORK/control/$s")"
  done
  grep -vE '^ *(#|echo)' "$WORK/control/postinst" | grep -E 'systemctl|deb-systemd' |
    grep -vE 'daemon-reload|try-restart' >"$WORK/starts" || true
  [ ! -s "$WORK/starts" ] || fail "postinst may start havend: $(cat "$WORK/starts")"
  mkdir "$WORK/root"
  dpkg-deb -x "$DEB" "$WORK/root"
  cmp -s "$WORK/root/lib/systemd/system/havend.service" "$UNIT" || fail "packaged unit differs from $UNIT"
  "$WORK/root/usr/sbin/havend" --version >"$WORK/v" || fail "packaged havend --version"
  diff -r "$SRC/appliance/console" "$WORK/root/usr/share/haven/console" >"$WORK/console.diff" ||
    fail "the packaged console differs from appliance/console: $(head -20 "$WORK/console.diff")"
  dpkg-deb -c "$AGENT" >"$WORK/agent"
  grep -qE ' ./usr/bin/haven$' "$WORK/agent" || fail "haven package lacks /usr/bin/haven"
  lacks "$WORK/agent" "havend" "haven package"
  ok "havend_*.deb ($(stat -c %s "$DEB") bytes, cpack $((SECONDS - start))s): havend, unit, example conffile, docs; Depends $DEPENDS; postinst starts nothing; haven_*.deb beside it"
fi

echo "$PASS passed, 0 failed"
