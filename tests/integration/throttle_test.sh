#!/usr/bin/env bash
# --limit-read: a backup reads at most the given MB/s (10^6 bytes), measured
# over the whole run, on a real file system image: an ext4 file system made
# with mke2fs -d from a copy of this machine's /usr/lib (what a VM disk
# holds). The limit holds within 10% (never faster; not much slower), an
# unlimited run of the same data is faster than the limit (so the limit is
# what paced it), a bad value is refused, and a cancelled (SIGTERM) limited
# backup stops at once even while it waits for its budget. --priority: by
# default every thread of a backup runs at nice 10 and I/O best-effort 7;
# --priority normal keeps the caller's.
. "$(dirname "$0")/lib.sh"

R=$WORK/repo
hv() { "$HAVEN" -r "$R" "$@"; }
expect_rc 0 "init" hv init

# ~100 MB of real files (libraries, then documentation) in ext4.
mkdir -p "$WORK/src"
real_files "$WORK/src" $((100 * 1000 * 1000))
mke2fs -q -t ext4 -d "$WORK/src" "$WORK/disk.img" 256M ||
  fail "mke2fs -d of $(du -sm "$WORK/src" | cut -f1) MB"
rm -rf "$WORK/src"

# rate TAG: read_bytes / duration_seconds of the backup JSON in $WORK/TAG.json.
rate() { jget 'j["read_bytes"] / j["duration_seconds"] / 1e6' "$WORK/$1.json"; }

LIMIT=25
expect_rc 0 "limited backup" hv --json backup image "$WORK/disk.img" --name lim --limit-read "$LIMIT"
cp "$WORK/out" "$WORK/lim.json"
READ=$(jget 'j["read_bytes"]' "$WORK/lim.json")
[ "$READ" -ge $((60 * 1000 * 1000)) ] || fail "the backup read only $READ bytes: too little to measure a rate"
R1=$(rate lim)
py -c "import sys; r=float(sys.argv[1]); sys.exit(0 if $LIMIT*0.9 <= r <= $LIMIT*1.1 else 1)" "$R1" ||
  fail "--limit-read $LIMIT: the backup read $READ bytes at $R1 MB/s, not within 10% of $LIMIT"
ok "--limit-read $LIMIT: $READ bytes of an ext4 image of /usr read at $(printf %.1f "$R1") MB/s"

# The same data again, unlimited, into a new repository (nothing to dedup).
R=$WORK/repo2
expect_rc 0 "init 2" hv init
expect_rc 0 "unlimited backup" hv --json backup image "$WORK/disk.img" --name free
cp "$WORK/out" "$WORK/free.json"
R2=$(rate free)
py -c "import sys; sys.exit(0 if float(sys.argv[1]) > $LIMIT * 1.2 else 1)" "$R2" ||
  fail "the unlimited backup ran at $R2 MB/s: the machine is too slow to tell the limit apart"
ok "the same backup unlimited: $(printf %.1f "$R2") MB/s"

expect_rc 2 "--limit-read 0" hv backup image "$WORK/disk.img" --name bad --limit-read 0
expect_rc 2 "--limit-read -5" hv backup image "$WORK/disk.img" --name bad --limit-read -5
expect_rc 2 "--limit-read abc" hv backup image "$WORK/disk.img" --name bad --limit-read abc
ok "--limit-read 0, -5 and abc are refused (exit 2)"

# A limited backup waiting for its budget stops at once on SIGTERM.
R=$WORK/repo3
expect_rc 0 "init 3" hv init
"$HAVEN" -r "$R" backup image "$WORK/disk.img" --name slow --limit-read 1 >"$WORK/bg.out" 2>"$WORK/bg.err" &
PID=$!
sleep 2
T0=$(date +%s.%N)
kill -TERM "$PID"
set +e; wait "$PID"; RC=$?; set -e
T1=$(date +%s.%N)
[ "$RC" = 130 ] || fail "SIGTERM: exit $RC, expected 130: $(head -c 1000 "$WORK/bg.err")"
py -c "import sys; sys.exit(0 if float(sys.argv[2]) - float(sys.argv[1]) < 3 else 1)" "$T0" "$T1" ||
  fail "SIGTERM took $(py -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$T0" "$T1") s to stop a limited backup"
[ "$(hv --json snapshots | jget 'len(j)')" = 0 ] || fail "a cancelled backup left a point"
ok "a backup limited to 1 MB/s stops within 3 s of SIGTERM (exit 130), no point"

# prio PID: "NICE IOPRIO" of every thread of PID, one line each, sorted, unique.
prio() {
  local t
  for t in /proc/"$1"/task/*; do
    t=${t##*/}
    echo "$(awk '{print $19}' "/proc/$1/task/$t/stat") $(ionice -p "$t" | tr -d ' ')"
  done | sort -u
}
# running_backup PRIORITY: starts a slow backup and leaves its pid in BG.
running_backup() {
  R=$WORK/repo-$1
  expect_rc 0 "init $1" hv init
  "$HAVEN" -r "$R" backup image "$WORK/disk.img" --name p --limit-read 2 --priority "$1" \
    >"$WORK/bg.out" 2>"$WORK/bg.err" &
  BG=$!
  sleep 1.5
  kill -0 "$BG" 2>/dev/null || fail "--priority $1: the backup ended early: $(head -c 1000 "$WORK/bg.err")"
}
running_backup low
LOW=$(prio "$BG")
kill -TERM "$BG"; wait "$BG" || true
[ "$LOW" = "10 best-effort:prio7" ] || fail "--priority low: threads at (nice ioprio): $LOW"
running_backup normal
NORMAL=$(prio "$BG")
kill -TERM "$BG"; wait "$BG" || true
OWN="$(awk '{print $19}' /proc/$$/stat)"
case "$NORMAL" in "$OWN "*) ;; *) fail "--priority normal: threads at $NORMAL, this shell at nice $OWN" ;; esac
ok "every thread of a backup runs at nice 10, I/O best-effort 7 by default; --priority normal keeps nice $OWN"
echo "$PASS passed, 0 failed"
