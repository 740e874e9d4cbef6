#!/usr/bin/env bash
# bench/havend.sh refuses bad input before it makes anything: each bad
# option, a backup comparison asked for by a non-root caller and a missing
# binary exit 2 with a message naming what was wrong, and no work directory
# is created. (The benchmark itself needs libvirt and ~10 minutes; it is run
# by hand, see bench/README.md.)
. "$(dirname "$0")/lib.sh"

SRC=${HAVEN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
HB=$SRC/bench/havend.sh
export BENCH_DIR=$WORK/bench
hb() { HAVEN=${HB_HAVEN:-$HAVEN} HAVEND=${HAVEND:-/bin/true} API_LOAD=/bin/true FILL=/bin/true bash "$HB" "$@"; }

expect_rc 0 "--help" hb --help
contains "$WORK/out" "--backup-vms N" "--help"

bad() {  # TEXT ARGS...: exit 2 and TEXT on stderr
  local text=$1
  shift
  expect_rc 2 "bench/havend.sh $*" hb "$@"
  contains "$WORK/err" "$text" "bench/havend.sh $*"
}
bad "--rounds must be an integer in 1..20, not '0'" --rounds 0
bad "--rounds needs a value" --rounds
bad "--points must be an integer in 1..1000000, not 'x'" --points=x
bad "--clients must be an integer in 1..500, not '0'" --clients 0
bad "--seconds must be an integer in 1..3600, not '-1'" --seconds -1
bad "--data-mib must be an integer in 16..900, not '8'" --data-mib 8
bad "--backup-vms must be an integer in 0..20, not '21'" --backup-vms 21
bad "unknown argument '--nights'" --nights 3
HAVEND_BENCH_PREFIX=Web bad "HAVEND_BENCH_PREFIX must be 1-10 characters" --rounds 1
HB_HAVEN=$WORK/no-such-haven bad "HAVEN: no executable at $WORK/no-such-haven" --backup-vms 0
if [ "$(id -u)" = 0 ]; then
  command -v setpriv >/dev/null || fail "setpriv (util-linux) is missing"
  expect_rc 2 "as nobody" setpriv --reuid=nobody --regid=nogroup --clear-groups \
    env HAVEN="$HAVEN" BENCH_DIR="$BENCH_DIR" bash "$HB"
  contains "$WORK/err" "run as root" "as nobody"
  ok "as root: a non-root caller of the backup comparison is refused"
fi
[ ! -e "$BENCH_DIR" ] || fail "a refused run created $BENCH_DIR: $(ls -la "$BENCH_DIR")"
ok "every refusal exits 2 with its reason and creates nothing"
echo "$PASS passed, 0 failed"
