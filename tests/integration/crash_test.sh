#!/usr/bin/env bash
# SIGKILL crash test: a backup killed at any moment leaves the repository
# consistent (every listed point restores), never blocks the next job, and
# the next backup reuses what the killed ones stored.
. "$(dirname "$0")/lib.sh"

R=$WORK/repo
OUT=$WORK/restored
mkdir -p "$OUT"
hv() { "$HAVEN" -r "$R" "$@"; }
BG=""
trap 'if [ -n "$BG" ]; then kill -9 "$BG" 2>/dev/null || true; fi; rm -rf "$WORK"' EXIT
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }

MiB=$((1 << 20))
SIZE=$((96 * MiB))
PACK_SIZE=$((16 * MiB))
ITERATIONS=16

# Version A: 96 MiB of random data. Every later version is A with 80 of its
# 96 MiB replaced, in 80 places: 16 MiB that all versions share (once a
# killed run stored it, later runs reuse it) and 64 MiB new to the version,
# so every run has real work to do when it is killed.
random_file "$WORK/A.img" $SIZE 11
CHANGED=$((80 * MiB))
make_version() {  # make_version SEED: writes $WORK/image
  cp "$WORK/A.img" "$WORK/image"
  py - "$WORK/image" "$1" <<'EOF'
import random, sys
shared, own = random.Random(7), random.Random(int(sys.argv[2]))
with open(sys.argv[1], "r+b") as f:
    for k in range(96):
        if k % 6 == 0:
            f.seek(k << 20); f.write(shared.randbytes(1 << 20))
        elif k % 6 != 5:
            f.seek(k << 20); f.write(own.randbytes(1 << 20))
EOF
  VER=$1
}
cp "$WORK/A.img" "$WORK/image"

expect_rc 0 "init" hv init --chunk-size 64K
expect_rc 0 "backup A" hv --json backup image "$WORK/image" --name vm
SNAP_A=$(jget 'j["id"]' "$WORK/out")
declare -A VERSION=(["$SNAP_A"]=A)
ok "recovery point A ($SNAP_A)"

npacks() { find "$R/packs" -mindepth 2 -type f | wc -l; }
mkfifo "$WORK/fifo"
msleep() {  # msleep MS, without a fork
  read -rt "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))" <>"$WORK/fifo" || true
}
# run_and_kill MODE N LABEL [REPO]: backs up $WORK/image and SIGKILLs it
#   launch N:  N ms after it started;
#   data N:    N ms after its first new temp pack appeared in tmp/;
#   packs N:   as soon as N new packs were renamed into packs/;
#   measure 0: never; sets T_FIRST (ms from start to its first new temp
#              pack) and T_DATA (ms from then to its exit).
# KRC is its exit status (137 = killed, 0 = it finished first).
run_and_kill() {
  local repo=${4:-$R} stale f fresh t t_start packs0 p
  stale=" $(cd "$repo/tmp" && echo *) "
  p=("$repo"/packs/*/*)
  packs0=${#p[@]}
  t_start=${EPOCHREALTIME/./}
  local deadline=$((t_start + 20000000))
  "$HAVEN" -r "$repo" --lock-wait 5 --json backup image "$WORK/image" --name vm \
    >"$WORK/bg.out" 2>"$WORK/bg.err" &
  BG=$!
  if [ "$1" = data ] || [ "$1" = measure ]; then
    fresh=""
    while [ -z "$fresh" ] && kill -0 "$BG" 2>/dev/null; do
      for f in "$repo"/tmp/pack-*.tmp; do
        [ -e "$f" ] && [[ "$stale" != *" ${f##*/} "* ]] && fresh=$f
      done
      [ -n "$fresh" ] || msleep 1
      t=${EPOCHREALTIME/./}
      [ "$t" -lt "$deadline" ] || fail "$3: no temp pack appeared within 20 s"
    done
  elif [ "$1" = packs ]; then
    while kill -0 "$BG" 2>/dev/null; do
      p=("$repo"/packs/*/*)
      [ $((${#p[@]} - packs0)) -ge "$2" ] && break
      msleep 1
      t=${EPOCHREALTIME/./}
      [ "$t" -lt "$deadline" ] || fail "$3: no $2 new packs within 20 s"
    done
  fi
  local t_first=${EPOCHREALTIME/./}
  [ "$1" = packs ] || [ "$1" = measure ] || msleep "$2"
  [ "$1" = measure ] || kill -9 "$BG" 2>/dev/null || true
  set +e
  wait "$BG" 2>/dev/null
  KRC=$?
  set -e
  BG=""
  t=${EPOCHREALTIME/./}
  T_FIRST=$(((t_first - t_start) / 1000))
  T_DATA=$(((t - t_first) / 1000))
  [ "$KRC" = 137 ] || [ "$KRC" = 0 ] ||
    fail "$3: backup exited $KRC (neither killed nor ok): $(cat "$WORK/bg.err")"
  lacks "$WORK/bg.err" "waiting" "$3: the backup waited for a lock"
}
# How long does a backup of a new version take? Measured on a scratch copy
# of the repository, the way the kills below see it: S = from the start to
# its first new temp pack, D = from then to its exit.
cp -a "$R" "$WORK/scratch"
make_version 1
expect_rc 0 "backup of a first version (scratch)" \
  "$HAVEN" -r "$WORK/scratch" --json backup image "$WORK/image" --name vm
make_version 2
run_and_kill measure 0 "measuring backup" "$WORK/scratch"
[ "$KRC" = 0 ] || fail "measuring backup exited $KRC"
S=$T_FIRST D=$T_DATA
FULL1=$(jget 'j["new_stored_bytes"]' "$WORK/bg.out")
rm -rf "$WORK/scratch"
[ "$FULL1" -ge $((64 * MiB * 9 / 10)) ] || fail "a new version stored only $FULL1 bytes (compressible?)"
echo "measured: start-up $S ms, data phase $D ms, stores $FULL1 bytes"
ok "measured a full backup: start-up $S ms + data phase $D ms"

# Kill points with a fixed seed, shuffled; each line "launch MS" (MS after
# the process started: during start-up) or "data MS" (MS after its first new
# pack appeared in tmp/: 12 spread over the data phase, 1 around the commit).
py - "$S" "$D" "$ITERATIONS" <<'EOF' >"$WORK/delays"
import random, sys
s, d, k = map(int, sys.argv[1:])
rng = random.Random(20240229)
mid = k - 4
points = [("launch", rng.uniform(0, s)) for _ in range(3)]
points += [("data", (i + rng.random()) / mid * d) for i in range(mid)]
points += [("data", d * rng.uniform(0.97, 1.15))]
rng.shuffle(points)
for mode, ms in points:
    print(mode, int(ms))
EOF

# check_repo LABEL: the repository lists A and every committed point, none
# damaged, without waiting for a lock; A and every new point restore
# byte-identical to the version they captured (all points are restored
# again at the end).
check_repo() {
  local t0 ids id new
  t0=$(now_ms)
  expect_rc 0 "$1: snapshots" hv --lock-wait 5 --json snapshots
  [ $(($(now_ms) - t0)) -lt 4000 ] || fail "$1: snapshots took $(($(now_ms) - t0)) ms (lock?)"
  lacks "$WORK/err" "waiting" "$1: snapshots waited for a lock"
  ids=$(jget '" ".join(m["id"] for m in j)' "$WORK/out")
  [[ " $ids " == *" $SNAP_A "* ]] || fail "$1: point A is no longer listed"
  local check="$SNAP_A"
  for id in $ids; do
    if [ -z "${VERSION[$id]:-}" ]; then  # committed by the run just made
      VERSION[$id]=v$VER
      [ -e "$WORK/v$VER.img" ] || cp "$WORK/image" "$WORK/v$VER.img"
      COMMITTED=$((COMMITTED + 1))
      check="$check $id"
    fi
  done
  [ "$(wc -w <<<"$ids")" = $((1 + COMMITTED)) ] || fail "$1: listed $ids, expected A + $COMMITTED"
  for id in $check; do
    rm -f "$OUT/r"
    expect_rc 0 "$1: restore $id" hv --lock-wait 5 restore image "$id" --to "$OUT/r"
    same_file "$WORK/${VERSION[$id]}.img" "$OUT/r" "$1: point $id (${VERSION[$id]})"
  done
  NIDS=$(wc -w <<<"$ids")
}

# The measured run calibrates the delays, but later runs can be faster (a
# quieter machine, chunks a killed run left behind): each run that finishes
# before its kill shrinks the delays still to come, so most runs are still
# killed mid-backup however fast this machine is at the moment.
COMMITTED=0 killed=0 i=0 SCALE=100
while read -r mode delay; do
  i=$((i + 1))
  make_version $((100 + i))
  before=$(npacks)
  delay=$((delay * SCALE / 100))
  run_and_kill "$mode" "$delay" "iteration $i"
  [ "$KRC" = 137 ] && killed=$((killed + 1))
  [ "$KRC" = 0 ] && [ "$mode" = data ] && SCALE=$((SCALE * 6 / 10))
  echo "iteration $i: kill $delay ms after $mode: exit $KRC," \
    "packs $before -> $(npacks), tmp files $(find "$R/tmp" -type f | wc -l)"
  check_repo "iteration $i"
  ok "iteration $i: kill $delay ms after $mode; $NIDS point(s) listed, all checked restore byte-identical"
done <"$WORK/delays"
[ "$i" = "$ITERATIONS" ] || fail "ran $i iterations, expected $ITERATIONS"
[ "$killed" -ge 10 ] || fail "only $killed of $ITERATIONS runs were killed (timing off?)"
ok "$killed runs killed, $COMMITTED committed; repository consistent after each"

# A run killed late (once it had stored 3 of its 4 to 5 packs, i.e. past
# 60% of its work) stored packs; the next normal backup must reuse them.
# FULL = what the backup stores without that run (measured on a scratch
# copy).
late=0
for attempt in 1 2 3 4; do
  make_version $((1000 + attempt))
  cp -a "$R" "$WORK/scratch"
  expect_rc 0 "measure" "$HAVEN" -r "$WORK/scratch" --json backup image "$WORK/image" --name vm
  FULL=$(jget 'j["new_stored_bytes"]' "$WORK/out")
  rm -rf "$WORK/scratch"
  mark=$WORK/mark.$attempt
  touch "$mark"
  sleep 0.01
  before=$(npacks)
  run_and_kill packs 3 "late kill $attempt"
  echo "late kill $attempt after 3 new packs: exit $KRC, packs $before -> $(npacks)"
  check_repo "late kill $attempt"
  if [ "$KRC" = 137 ] && [ $(($(npacks) - before)) -ge 3 ]; then
    late=1
    break
  fi
done
[ "$late" = 1 ] || fail "could not kill a backup after it stored 3 packs (timing off?)"
killed_bytes=$(find "$R/packs" -mindepth 2 -type f -newer "$mark" -printf '%s\n' |
  awk '{s += $1} END {print s + 0}')
ok "a backup killed after storing 3 packs left $killed_bytes bytes in packs"

t0=$(now_ms)
expect_rc 0 "final backup" hv --lock-wait 5 --json backup image "$WORK/image" --name vm
lacks "$WORK/err" "waiting" "final backup waited for a lock"
FINAL=$(jget 'j["id"]' "$WORK/out")
final_new=$(jget 'j["new_stored_bytes"]' "$WORK/out")
VERSION[$FINAL]=v$VER
cp "$WORK/image" "$WORK/v$VER.img"
echo "final backup: new_stored_bytes $final_new (without the killed run: $FULL; it left $killed_bytes)"
ok "final backup succeeds (exit 0, no lock wait)"
# What the killed run indexed is reused; allow one pack that the kill may
# have caught between its rename into packs/ and its index entry.
bound=$((FULL - killed_bytes))
[ "$bound" -ge 0 ] || bound=0
bound=$((bound + PACK_SIZE + MiB))
[ "$final_new" -le "$bound" ] ||
  fail "final backup stored $final_new bytes; the killed run had stored $killed_bytes of $FULL, expected at most $bound"
ok "final backup stores only what was missing ($final_new <= $bound)"
[ "$final_new" -lt $((CHANGED / 2)) ] ||
  fail "final backup stored $final_new bytes, not < 50% of the $CHANGED changed bytes"
ok "final backup stored < 50% of the image's changed bytes ($final_new of $CHANGED)"

# No temporary pack survives the next writer.
leftover=$(find "$R/tmp" -mindepth 1)
[ -z "$leftover" ] || fail "temporary files left in tmp/ after a successful backup: $leftover"
ok "tmp/ is empty after the final backup"
stray=$(find "$R/snapshots" "$R/keys" -name '*.tmp-*')
[ -z "$stray" ] || echo "NOTE: stray temporary manifest files (ignored by haven, never cleaned): $stray"

# Every pack in packs/ is whole (packs are renamed into place only when
# complete): rebuilding the index from them finds no damage; all points
# restore afterwards.
expect_rc 0 "rebuild-index after the crashes" hv --json rebuild-index
[ "$(jget 'j["damaged"]' "$WORK/out")" = "[]" ] || fail "damaged packs after crashes: $(cat "$WORK/out")"
ok "rebuild-index: no damaged pack among $(jget 'j["packs"]' "$WORK/out") packs"
for id in "${!VERSION[@]}"; do
  rm -f "$OUT/r"
  expect_rc 0 "final restore $id" hv restore image "$id" --to "$OUT/r"
  same_file "$WORK/${VERSION[$id]}.img" "$OUT/r" "final restore of $id (${VERSION[$id]})"
done
ok "all ${#VERSION[@]} points restore byte-identical at the end"

echo "$PASS passed, 0 failed"
