#!/usr/bin/env bash
# Ctrl-C and SIGTERM stop a running job at its next safe point: the process
# exits 130, no recovery point is written, the repository checks clean, and
# the next run completes, storing only what the stopped one had not stored.
. "$(dirname "$0")/lib.sh"

R=$WORK/repo
hv() { "$HAVEN" -r "$R" "$@"; }
npoints() { hv --json snapshots | jget 'len(j)'; }
# wait_writing: until the running backup has written pack data (or 20 s).
wait_writing() {
  local i
  for i in $(seq 1 200); do
    if [ -n "$(find "$R/tmp" "$R/packs" -type f -newer "$WORK/marker" 2>/dev/null | head -1)" ]; then
      return 0
    fi
    kill -0 "$1" 2>/dev/null || fail "the backup ended before it could be interrupted: $(cat "$WORK/bg.err")"
    sleep 0.1
  done
  fail "the backup wrote nothing in 20 s"
}

# The highest zstd level makes the backups take seconds: a signal lands mid-way.
expect_rc 0 "init" hv init --compression-level 19
random_file "$WORK/first.img" $((4 << 20)) 1
expect_rc 0 "first backup" hv --json backup image "$WORK/first.img" --name first
FIRST=$(jget 'j["id"]' "$WORK/out")

# An image of 4-bit entropy: slow to compress at level 19.
py - "$WORK/big.img" <<'EOF'
import random, sys
rng, table = random.Random(7), bytes(65 + i % 16 for i in range(256))
with open(sys.argv[1], "wb") as f:
    for _ in range(96):
        f.write(rng.randbytes(1 << 20).translate(table))
EOF

# --------------------------------------------------------- SIGINT (Ctrl-C)
touch "$WORK/marker"
"$HAVEN" -r "$R" backup image "$WORK/big.img" --name big >"$WORK/bg.out" 2>"$WORK/bg.err" &
PID=$!
wait_writing "$PID"
kill -INT "$PID"
rc=0
wait "$PID" || rc=$?
[ "$rc" = 130 ] || fail "SIGINT: exit $rc, expected 130: $(cat "$WORK/bg.err")"
contains "$WORK/bg.err" "stopping at the next safe point" "SIGINT: message"
contains "$WORK/bg.err" "cancelled" "SIGINT: the error says the backup was cancelled"
[ "$(npoints)" = 1 ] || fail "SIGINT: a point was written"
expect_rc 0 "check after SIGINT" hv check --read-data
STORED=$(du -sb "$R/packs" | cut -f1)
ok "SIGINT mid-backup: exit 130, no point, check --read-data clean, $STORED bytes of packs kept"

expect_rc 0 "backup after SIGINT" hv --json backup image "$WORK/big.img" --name big
BIG=$(jget 'j["id"]' "$WORK/out")
NEW=$(jget 'j["new_raw_bytes"]' "$WORK/out")
[ "$NEW" -lt $((96 << 20)) ] || fail "the next run stored everything again ($NEW bytes)"
expect_rc 0 "restore big" hv restore image "$BIG" --to "$WORK/big.back"
same_file "$WORK/big.img" "$WORK/big.back" "big restored"
expect_rc 0 "restore first" hv restore image "$FIRST" --to "$WORK/first.back"
same_file "$WORK/first.img" "$WORK/first.back" "first restored"
ok "the next run stored only $NEW of $((96 << 20)) bytes and restores byte-identical; the earlier point too"

# ------------------------------------------- SIGTERM, a file backup of /usr/share/doc
# A copy of the real tree: tests running beside this one (package_test
# installs a package) change the live /usr/share/doc.
DOC=$WORK/usr-share-doc
cp -a /usr/share/doc "$DOC"
touch "$WORK/marker"
"$HAVEN" -r "$R" backup files "$DOC" --name doc >"$WORK/bg.out" 2>"$WORK/bg.err" &
PID=$!
wait_writing "$PID"
kill -TERM "$PID"
rc=0
wait "$PID" || rc=$?
[ "$rc" = 130 ] || fail "SIGTERM: exit $rc, expected 130: $(cat "$WORK/bg.err")"
[ "$(npoints)" = 2 ] || fail "SIGTERM: a point was written"
expect_rc 0 "check after SIGTERM" hv check
expect_rc 0 "file backup after SIGTERM" hv --json backup files "$DOC" --name doc
expect_rc 0 "restore doc" hv restore files doc:latest "$DOC" --to "$WORK/doc"
diff -r --no-dereference "$DOC" "$WORK/doc$DOC" >/dev/null || fail "restored /usr/share/doc differs"
ok "SIGTERM mid file backup: exit 130, no point, check clean; the next run restores identical"

# ------------------------------------------- a second signal stops at once
py - "$WORK/other.img" <<'EOF'
import random, sys
rng, table = random.Random(8), bytes(65 + i % 16 for i in range(256))
with open(sys.argv[1], "wb") as f:
    for _ in range(64):
        f.write(rng.randbytes(1 << 20).translate(table))
EOF
touch "$WORK/marker"
"$HAVEN" -r "$R" backup image "$WORK/other.img" --name other \
  >"$WORK/bg.out" 2>"$WORK/bg.err" &
PID=$!
wait_writing "$PID"
kill -INT "$PID"
kill -INT "$PID" 2>/dev/null || true
rc=0
wait "$PID" || rc=$?
[ "$rc" = 130 ] || fail "two SIGINTs: exit $rc, expected 130"
[ "$(npoints)" = 3 ] || fail "two SIGINTs: a point was written"
expect_rc 0 "check after two SIGINTs" hv check
ok "two SIGINTs: stopped, no point, check clean"
echo "interrupt_test: $PASS checks passed"
