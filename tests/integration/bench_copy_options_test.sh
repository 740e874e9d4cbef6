#!/usr/bin/env bash
# bench/copy.sh refuses bad input before it makes anything: each bad option,
# a non-root caller, a missing haven binary and one without `haven copy`
# exit 2 with a message naming what was wrong, and no work directory is
# created. (The benchmark itself loop-mounts an image and takes ~5 minutes;
# it is run by hand, see bench/README.md.)
. "$(dirname "$0")/lib.sh"

SRC=${HAVEN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
CB=$SRC/bench/copy.sh
export BENCH_DIR=$WORK/bench
# A haven from before `haven copy`.
cat >"$WORK/haven-no-copy" <<'SH'
#!/bin/sh
[ "$1" = copy ] && { echo "unknown command copy" >&2; exit 2; }
exit 0
SH
chmod 755 "$WORK/haven-no-copy"
cb() { HAVEN=${CB_HAVEN:-$HAVEN} bash "$CB" "$@"; }

expect_rc 0 "--help" cb --help
contains "$WORK/out" "--change-pct N" "--help"

bad() {  # TEXT ARGS...: exit 2 and TEXT on stderr
  local text=$1
  shift
  expect_rc 2 "bench/copy.sh $*" cb "$@"
  contains "$WORK/err" "$text" "bench/copy.sh $*"
}
bad "--rounds must be an integer in 1..20, not '0'" --rounds 0
bad "--rounds must be an integer in 1..20, not 'x'" --rounds=x
bad "--rounds needs a value" --rounds
bad "--nights must be an integer in 1..30, not '31'" --nights 31
bad "--image-mib must be an integer in 128..16384, not '64'" --image-mib 64
bad "--data-mib must be an integer in 16..614 (60% of the image" --data-mib 700
bad "--data-mib must be an integer in 16..153 (60% of the image" --image-mib 256 --data-mib 200
bad "--change-pct must be an integer in 1..20, not '0'" --change-pct 0
bad "unknown argument '--writes'" --writes 3

if [ "$(id -u)" = 0 ]; then
  command -v setpriv >/dev/null || fail "setpriv (util-linux) is missing"
  expect_rc 2 "as nobody" setpriv --reuid=nobody --regid=nogroup --clear-groups \
    env HAVEN="$HAVEN" BENCH_DIR="$BENCH_DIR" bash "$CB"
  contains "$WORK/err" "run as root" "as nobody"
  CB_HAVEN=$WORK/no-such-haven bad "haven binary not found at $WORK/no-such-haven" --rounds 1
  CB_HAVEN=$WORK/haven-no-copy bad "has no 'copy' command" --rounds 1
  ok "as root: a non-root caller, no haven binary and a haven without 'copy' are refused"
else
  echo "skip: the checks after the root check need root"
fi
[ ! -e "$BENCH_DIR" ] || fail "a refused run created $BENCH_DIR: $(ls -la "$BENCH_DIR")"
ok "every refusal exits 2 with its reason and creates nothing"
echo "$PASS passed, 0 failed"
