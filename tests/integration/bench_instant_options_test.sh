#!/usr/bin/env bash
# bench/instant.sh refuses bad input before it makes anything: each bad
# option, a non-root caller, a missing haven binary, one without `restore vm
# --instant` and one without haven-nbd beside it exit 2 with a message
# naming what was wrong, and no work directory is created. No libvirt is
# needed: all of it is checked before libvirtd is reached. (The benchmark
# itself boots VMs for ~10 minutes; it is run by hand, see bench/README.md.)
. "$(dirname "$0")/lib.sh"

SRC=${HAVEN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
IB=$SRC/bench/instant.sh
export BENCH_DIR=$WORK/bench
# A haven from before instant recovery, and one that has it but no
# haven-nbd beside it.
mkdir -p "$WORK/old" "$WORK/new"
cat >"$WORK/old/haven" <<'SH'
#!/bin/sh
printf 'Usage: haven restore vm [OPTIONS] SNAPSHOT\n  --start  start each VM once defined\n'
SH
cat >"$WORK/new/haven" <<'SH'
#!/bin/sh
printf 'Usage: haven restore vm [OPTIONS] SNAPSHOT\n  --instant  instant recovery\n'
SH
chmod 755 "$WORK/old/haven" "$WORK/new/haven"
ib() { HAVEN=${IB_HAVEN:-$HAVEN} bash "$IB" "$@"; }

expect_rc 0 "--help" ib --help
contains "$WORK/out" "--disk-gib N" "--help"
contains "$WORK/out" "--data-mib N" "--help"
contains "$WORK/out" "--read-mib N" "--help"

bad() {  # TEXT ARGS...: exit 2 and TEXT on stderr
  local text=$1
  shift
  expect_rc 2 "bench/instant.sh $*" ib "$@"
  contains "$WORK/err" "$text" "bench/instant.sh $*"
}
bad "--rounds must be an integer in 1..20, not '0'" --rounds 0
bad "--rounds must be an integer in 1..20, not 'x'" --rounds=x
bad "--rounds needs a value" --rounds
bad "--disk-gib must be an integer in 1..64, not '0'" --disk-gib 0
bad "--disk-gib must be an integer in 1..64, not '65'" --disk-gib 65
bad "--data-mib must be an integer in 16..4915 (60% of the disk), not '5000'" --data-mib 5000
bad "--data-mib must be an integer in 16..614 (60% of the disk), not '1000'" --disk-gib 1 --data-mib 1000
bad "--data-mib must be an integer in 16..4915 (60% of the disk), not '8'" --data-mib 8
bad "--read-mib must be an integer in 0..4096 (the data), not '5000'" --read-mib 5000
bad "--read-mib must be an integer in 0..100 (the data), not 'all'" --data-mib 100 --read-mib all
bad "--timeout must be an integer in 10..3600 (seconds), not '5'" --timeout 5
bad "unknown argument '--nights'" --nights 3

if [ "$(id -u)" = 0 ]; then
  command -v setpriv >/dev/null || fail "setpriv (util-linux) is missing"
  expect_rc 2 "as nobody" setpriv --reuid=nobody --regid=nogroup --clear-groups \
    env HAVEN="$HAVEN" BENCH_DIR="$BENCH_DIR" bash "$IB"
  contains "$WORK/err" "run as root" "as nobody"
  IB_HAVEN=$WORK/no-such-haven bad "haven binary not found at $WORK/no-such-haven" --rounds 1
  IB_HAVEN=$WORK/old/haven bad "has no 'restore vm --instant'" --rounds 1
  IB_HAVEN=$WORK/new/haven bad "haven-nbd not found at $WORK/new/haven-nbd" --rounds 1
  IB_HAVEN=$WORK/new/haven HAVEN_NBD=$WORK/none bad "haven-nbd not found at $WORK/none" --rounds 1
  ok "as root: a non-root caller, no haven, a haven without --instant and no haven-nbd are refused"
else
  echo "skip: the checks after the root check need root"
fi
[ ! -e "$BENCH_DIR" ] || fail "a refused run created $BENCH_DIR: $(ls -la "$BENCH_DIR")"
ok "every refusal exits 2 with its reason and creates nothing"
echo "$PASS passed, 0 failed"
