#!/usr/bin/env bash
# bench/host.sh refuses bad input before it makes anything: each bad option,
# a non-root caller, a missing virtnbdbackup and a --parallel-set the haven
# binary cannot run exit 2 with a message naming what was wrong, and no VM,
# network or work directory is created. (The benchmark itself needs libvirt,
# virtnbdbackup and ~15 minutes; it is run by hand, see bench/README.md.)
. "$(dirname "$0")/lib.sh"

SRC=${HAVEN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
HB=$SRC/bench/host.sh
export BENCH_DIR=$WORK/bench
# A haven whose `backup vm` has --all but no --parallel (as before the flag).
cat >"$WORK/haven-no-parallel" <<'EOF'
#!/bin/sh
printf 'Usage: haven backup vm [OPTIONS] [NAME...]\n  --all  every VM\n  --exclude TEXT ...\n'
EOF
chmod 755 "$WORK/haven-no-parallel"
hb() { HAVEN=${HB_HAVEN:-$HAVEN} VIRTNBDBACKUP=${HB_VNB:-/bin/true} bash "$HB" "$@"; }

expect_rc 0 "--help" hb --help
contains "$WORK/out" "--parallel-set LIST" "--help"

bad() {  # TEXT ARGS...: exit 2 and TEXT on stderr
  local text=$1
  shift
  expect_rc 2 "bench/host.sh $*" hb "$@"
  contains "$WORK/err" "$text" "bench/host.sh $*"
}
bad "--rounds must be an integer in 1..20, not '0'" --rounds 0
bad "--rounds must be an integer in 1..20, not 'x'" --rounds=x
bad "--rounds needs a value" --rounds
bad "--vms: 'x' is not a number of VMs in 1..40" --vms "1 x"
bad "--vms: '41' is not a number of VMs in 1..40" --vms 41
bad "--vms lists no host size" --vms " "
bad "--busy-vms must be an integer in 0..40, not '-1'" --busy-vms -1
bad "--changed-mib must be an integer in 1..1024 (the disk is 1 GiB), not '0'" --changed-mib 0
bad "--parallel-set is empty" --parallel-set ""
bad "unknown argument '--nights'" --nights 3
HOST_BENCH_PREFIX=Web bad "HOST_BENCH_PREFIX must be 1-10 characters" --rounds 1

if [ "$(id -u)" = 0 ]; then
  command -v setpriv >/dev/null || fail "setpriv (util-linux) is missing"
  expect_rc 2 "as nobody" setpriv --reuid=nobody --regid=nogroup --clear-groups \
    env HAVEN="$HAVEN" BENCH_DIR="$BENCH_DIR" bash "$HB"
  contains "$WORK/err" "run as root" "as nobody"
  HB_VNB=/nonexistent/virtnbdbackup bad "run HAVEN_WITH_PEERS=1 scripts/install-deps.sh" --rounds 1
  HB_HAVEN=$WORK/no-such-haven bad "haven binary not found at $WORK/no-such-haven" --rounds 1
  # --parallel-set is checked against the binary, after the root check.
  bad "--parallel-set: 'many' is neither 'default' nor a number of VMs in 1..64" --parallel-set "default many"
  bad "--parallel-set: 'default' is given twice" --parallel-set "default,default"
  HB_HAVEN=$WORK/haven-no-parallel bad "'3' needs 'haven backup vm --parallel'" --parallel-set "default 3"
  ok "as root: a non-root caller, no virtnbdbackup, no haven, a bad --parallel-set and --parallel N without the flag are refused"
else
  echo "skip: the checks after the root check need root"
fi
[ ! -e "$BENCH_DIR" ] || fail "a refused run created $BENCH_DIR: $(ls -la "$BENCH_DIR")"
ok "every refusal exits 2 with its reason and creates nothing"
echo "$PASS passed, 0 failed"
