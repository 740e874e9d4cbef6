#!/usr/bin/env bash
# bench/s3.sh refuses bad input before it makes anything (each bad option,
# a --ceph-dir without s3.env, a missing haven binary: exit 2 with a message
# naming what was wrong, no work directory created), and a tiny run (one
# round, a 128 MiB image) against a real radosgw completes: every restore is
# verified byte-identical by the script, and its table has the times, the
# requests counted through fault_proxy.py and the bytes in the bucket. The
# benchmark at its defaults takes a few minutes; it is run by hand, see
# docs/benchmark-results.md ("Object storage (S3 on Ceph radosgw)").
. "$(dirname "$0")/lib.sh"

SRC=${HAVEN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
SB=$SRC/bench/s3.sh
export BENCH_DIR=$WORK/bench
sb() { HAVEN=${SB_HAVEN:-$HAVEN} bash "$SB" "$@"; }

expect_rc 0 "--help" sb --help
contains "$WORK/out" "--ceph-dir DIR" "--help"
contains "$WORK/out" "fault_proxy.py" "--help"

bad() {  # TEXT ARGS...: exit 2 and TEXT on stderr
  local text=$1
  shift
  expect_rc 2 "bench/s3.sh $*" sb "$@"
  contains "$WORK/err" "$text" "bench/s3.sh $*"
}
bad "--rounds must be an integer in 1..20, not '0'" --rounds 0
bad "--rounds must be an integer in 1..20, not 'x'" --rounds=x
bad "--rounds needs a value" --rounds
bad "--image-mib must be an integer in 128..16384, not '64'" --image-mib 64
bad "--data-mib must be an integer in 16..819 (80% of the image)" --data-mib 900
bad "--data-mib must be an integer in 16..204 (80% of the image)" --image-mib 256 --data-mib 300
bad "--ceph-dir needs a value" --ceph-dir
bad "--ceph-dir: no s3.env in '$WORK/no-cluster'" --ceph-dir "$WORK/no-cluster"
bad "unknown argument '--nights'" --nights 3
SB_HAVEN=$WORK/no-such-haven bad "haven binary not found at $WORK/no-such-haven" --rounds 1
[ ! -e "$BENCH_DIR" ] || fail "a refused run created $BENCH_DIR: $(ls -la "$BENCH_DIR")"
ok "every refusal exits 2 with its reason and creates nothing"

# ---------------------------------------------------------------- a tiny run
CEPH=${HAVEN_CEPH_DIR:-}
if [ -z "$CEPH" ]; then
  CEPH=$WORK/ceph
  trap 'bash "$SRC/tests/ceph/ceph-cluster.sh" stop "$CEPH" >/dev/null 2>&1; rm -rf "$WORK"' EXIT
  set +e
  bash "$SRC/tests/ceph/ceph-cluster.sh" start "$CEPH" >"$WORK/ceph-start.log" 2>&1
  rc=$?
  set -e
  if [ "$rc" = 77 ]; then
    echo "skip: no Ceph here ($(tail -n 1 "$WORK/ceph-start.log"))"
    exit 77
  fi
  [ "$rc" = 0 ] || fail "ceph-cluster.sh start exited $rc: $(tail -n 20 "$WORK/ceph-start.log")"
fi
[ -f "$CEPH/s3.env" ] || fail "no s3.env in $CEPH"

expect_rc 0 "a tiny run" sb --ceph-dir "$CEPH" --rounds 1 --image-mib 128 --data-mib 24
R=$BENCH_DIR/s3/results.md
[ -f "$R" ] || fail "no $R"
for t in haven-local haven-ceph restic-ceph; do
  contains "$WORK/err" "$t: restored image verified identical" "the tiny run's log"
done
contains "$WORK/err" "haven-ceph (through the proxy): restored image verified identical" "the tiny run's log"
contains "$R" "Command: \`bench/s3.sh --rounds 1 --image-mib 128 --data-mib 24\`" "results.md"
contains "$R" "| step | haven, local dir (s) | haven, Ceph (s) | restic, Ceph (s) | haven Ceph / local | restic / haven (Ceph) |" "results.md"
# Every cell of the tables has a number: backup and restore timed for all
# three, requests counted for both tools, bytes found in the bucket.
py - "$R" <<'PY' || fail "results.md has empty cells: $(cat "$R")"
import re, sys
rows = {}
for line in open(sys.argv[1]):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if line.startswith("| ") and len(cells) > 1:
        rows.setdefault(cells[0], []).append(cells[1:])
def num(c):
    return re.match(r"^\d+(\.\d+)?( \(\d+(\.\d+)?–\d+(\.\d+)?\))?$", c)
times, speeds = rows["backup"][0], rows["backup"][1]
for step in ("backup", "restore"):
    t, req = rows[step][0], rows[step][2]
    assert all(num(c) for c in t), (step, t)
    assert all(num(c) and float(c.split()[0]) > 0 for c in req), (step, req)
size = rows["bytes (MB)"][0]
assert all(num(c) and float(c) > 0 for c in size), size
PY
ok "a tiny run against radosgw: restores identical, times, requests per GB and bucket bytes reported"
echo "$PASS passed, 0 failed"
