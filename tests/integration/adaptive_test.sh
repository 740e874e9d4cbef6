#!/usr/bin/env bash
# --adaptive: a backup slows its reads down while the host's storage is
# busy and speeds up again when it is quiet. A backup of a real file system
# image (ext4 made with mke2fs -d from a copy of /usr, twice over: 512 MiB)
# runs with --limit-read 30 --adaptive; a few seconds in, dd writes to the
# same file system with O_DIRECT for 6 s (the artificial load: every write
# waits for the disk, so /proc/pressure/io rises), then stops. Haven's read
# rate, sampled from /proc/PID/io every 0.5 s, must fall under the load to
# well below the limit, and rise again after it; the backup says each change
# on stderr and ends with a point that restores byte-identical. A kernel
# without PSI: the backup runs with the limit alone and says why.
. "$(dirname "$0")/lib.sh"

R=$WORK/repo
hv() { "$HAVEN" -r "$R" "$@"; }
expect_rc 0 "init" hv init

mkdir -p "$WORK/src"
real_files "$WORK/src" $((200 * 1000 * 1000))
mke2fs -q -t ext4 -d "$WORK/src" "$WORK/fs.img" 256M || fail "mke2fs -d"
rm -rf "$WORK/src"
# Twice over, every block written (no holes): 512 MiB to read.
cat "$WORK/fs.img" "$WORK/fs.img" >"$WORK/disk.img"
rm -f "$WORK/fs.img"

if [ ! -r /proc/pressure/io ]; then
  expect_rc 0 "backup without PSI" hv backup image "$WORK/disk.img" --name ad --adaptive --limit-read 200
  contains "$WORK/err" "adaptive mode off" "no PSI"
  ok "no /proc/pressure/io here: the backup ran with the limit alone and said so"
  echo "$PASS passed, 0 failed"
  exit 0
fi

LIMIT=30
"$HAVEN" -r "$R" backup image "$WORK/disk.img" --name ad --limit-read $LIMIT --adaptive \
  >"$WORK/bg.out" 2>"$WORK/bg.err" &
PID=$!
LOAD=
trap 'set +e; [ -n "$LOAD" ] && kill "$LOAD" 2>/dev/null; kill "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
# samples: "seconds rchar" every 0.5 s while the backup runs.
t0=$(date +%s.%N)
sample() { echo "$(py -c "import time,sys; print(time.time()-float(sys.argv[1]))" "$t0") $(awk '/^rchar/ {print $2}' /proc/$PID/io 2>/dev/null || echo -)"; }
LOAD_START=4 LOAD_END=10
while kill -0 "$PID" 2>/dev/null; do
  s=$(sample)
  [[ "$s" == *" -" ]] || echo "$s" >>"$WORK/samples"
  now=${s%% *}
  if [ -z "$LOAD" ] && py -c "import sys; sys.exit(0 if float(sys.argv[1]) >= $LOAD_START else 1)" "$now"; then
    dd if=/dev/zero of="$WORK/load" bs=1M count=100000 oflag=direct status=none 2>/dev/null &
    LOAD=$!
    echo "$now load-start" >>"$WORK/events"
  fi
  if [ -n "$LOAD" ] && [ "$LOAD" != done ] &&
     py -c "import sys; sys.exit(0 if float(sys.argv[1]) >= $LOAD_END else 1)" "$now"; then
    kill "$LOAD" 2>/dev/null; wait "$LOAD" 2>/dev/null || true
    LOAD=done
    rm -f "$WORK/load"
    echo "$now load-end" >>"$WORK/events"
  fi
  sleep 0.5
done
set +e; wait "$PID"; RC=$?; set -e
[ "$RC" = 0 ] || fail "adaptive backup: exit $RC: $(head -c 2000 "$WORK/bg.err")"
[ "$LOAD" = done ] || fail "the backup ended before the load did (not enough to read?): $(cat "$WORK/samples" | tail -3)"
# Mean read rate (MB/s) over [from, to] seconds of the samples.
rate() {
  py - "$WORK/samples" "$1" "$2" <<'EOF2'
import sys
pts = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
a, b = float(sys.argv[2]), float(sys.argv[3])
w = [p for p in pts if a <= p[0] <= b]
if len(w) < 2: print(-1); sys.exit()
print(round((w[-1][1] - w[0][1]) / (w[-1][0] - w[0][0]) / 1e6, 2))
EOF2
}
END=$(tail -1 "$WORK/samples" | cut -d' ' -f1)
BEFORE=$(rate 0.5 "$LOAD_START")
UNDER=$(rate $((LOAD_START + 3)) "$LOAD_END")
AFTER=$(rate $((LOAD_END + 5)) "$END")
echo "read rate: before the load $BEFORE MB/s, under it $UNDER MB/s, after it $AFTER MB/s (limit $LIMIT)"
contains "$WORK/bg.err" "host I/O pressure" "the adaptive mode's log"
contains "$WORK/bg.err" "reading at most" "a slowdown logged"
py -c "import sys; u=float(sys.argv[1]); sys.exit(0 if 0 <= u < $LIMIT * 0.5 else 1)" "$UNDER" ||
  fail "under the load Haven still read at $UNDER MB/s (limit $LIMIT): $(grep pressure "$WORK/bg.err" | head -5)"
py -c "import sys; u, a = map(float, sys.argv[1:]); sys.exit(0 if a >= 0 and a > 1.5 * u else 1)" "$UNDER" "$AFTER" ||
  fail "after the load Haven read at $AFTER MB/s, not faster than the $UNDER MB/s under it: $(grep pressure "$WORK/bg.err" | tail -5)"
grep -qE "raised to|limit lifted" "$WORK/bg.err" || fail "no speed-up logged: $(grep pressure "$WORK/bg.err" | tail -5)"
ok "--adaptive: $BEFORE MB/s before a dd O_DIRECT load, $UNDER MB/s under it, $AFTER MB/s after ($(grep -c pressure "$WORK/bg.err") changes logged)"

SNAP=$(hv --json snapshots | jget 'j[-1]["id"]')
expect_rc 0 "restore" hv restore image "$SNAP" --to "$WORK/restored.img"
same_file "$WORK/disk.img" "$WORK/restored.img" "restore of the adaptive backup"
ok "the point of the slowed-down backup restores byte-identical"
echo "$PASS passed, 0 failed"
