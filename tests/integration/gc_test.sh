#!/usr/bin/env bash
# gc and forget under stress: a gc or a forget SIGKILLed at any moment
# leaves every remaining recovery point restorable and the next run finishes
# the job; gc running beside backups never loses a chunk of a point committed
# meanwhile (nor fails because of it); a killed gc's scratch directory is
# removed by the next gc; and gc --dry-run changes nothing.
. "$(dirname "$0")/lib.sh"

export TZ=UTC
R=$WORK/repo
OUT=$WORK/restored
mkdir -p "$OUT"
hv() { "$HAVEN" -r "$R" "$@"; }
PIDS=()
# The concurrent-backup loop is a subshell: its haven child goes first.
trap 'for p in "${PIDS[@]}"; do pkill -9 -P "$p" 2>/dev/null || true;
  kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"' EXIT
reaped() {  # reaped PID: waited for, so no longer ours to kill
  local q=() x
  for x in "${PIDS[@]}"; do [ "$x" = "$1" ] || q+=("$x"); done
  PIDS=("${q[@]}")
}
MiB=$((1 << 20))
mkfifo "$WORK/fifo"
msleep() {  # msleep MS, without a fork
  read -rt "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))" <>"$WORK/fifo" || true
}
now_us() { echo "${EPOCHREALTIME/./}"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
# listed REPO: sorted ids of its recovery points, one a line.
listed() {
  "$HAVEN" -r "$1" --json snapshots >"$WORK/list.json" ||
    fail "snapshots on $1 exited non-zero: $(cat "$WORK/list.json")"
  jget '"\n".join(sorted(m["id"] for m in j))' "$WORK/list.json"
}
# restores_as REPO ID SHA WHAT: ID restores to data with that sha256.
restores_as() {
  rm -f "$OUT/r"
  expect_rc 0 "$4: restore $2" "$HAVEN" -r "$1" restore image "$2" --to "$OUT/r"
  [ "$(sha "$OUT/r")" = "$3" ] || fail "$4: point $2 does not restore byte-identical"
}
# no_scratch REPO WHAT: no gc scratch directory and no temp pack in tmp/.
no_scratch() {
  local left
  left=$(find "$1/tmp" -mindepth 1 -maxdepth 1)
  [ -z "$left" ] || fail "$2: left in tmp/: $left"
}
pack_list() { (cd "$1/packs" && find . -type f | sort); }
manifests() { (cd "$1/snapshots" && find . -maxdepth 1 -type f -printf '%f\n' | sort); }

# ======================================================= (1) gc killed
# Version 1 is 48 MiB of random data; each later version changes 96 blocks
# of 64 KiB at random places, so after forget most packs are partly used
# and gc rewrites many of them (1 MiB packs: ~115 of them).
random_file "$WORK/img" $((48 * MiB)) 1
scatter() {  # scatter SEED: changes 96 random 64 KiB blocks of $WORK/img
  py - "$WORK/img" "$1" <<'EOF'
import random, sys
rng = random.Random(int(sys.argv[2]))
with open(sys.argv[1], "r+b") as f:
    for _ in range(96):
        f.seek(rng.randrange(48 * 16) << 16)
        f.write(rng.randbytes(1 << 16))
EOF
}
expect_rc 0 "init" hv init --pack-size 1M
declare -A SHA
for i in $(seq 1 12); do
  scatter $((100 + i))
  s=$(sha "$WORK/img")
  expect_rc 0 "backup $i" hv --json backup image "$WORK/img" --name vm --time \
    "$(printf '2026-09-%02dT02:00:00Z' "$i")"
  SHA[$(jget 'j["id"]' "$WORK/out")]=$s
done
rm -f "$WORK/img"
expect_rc 0 "forget" hv --json forget --keep-last 2
[ "$(jget 'j["removed"]' "$WORK/out")" = 10 ] || fail "forget removed $(jget 'j["removed"]' "$WORK/out"), not 10"
KEPT=$(listed "$R")
[ "$(wc -l <<<"$KEPT")" = 2 ] || fail "expected 2 points left: $KEPT"
[ "$(manifests "$R")" = "$KEPT" ] || fail "snapshots/ does not hold the listed points"
NEWEST=$(jget 'max(j, key=lambda m: m["time"])["id"]' "$WORK/list.json")
ok "12 points of a 48 MiB image in $(pack_list "$R" | wc -l) packs of 1 MiB; forget --keep-last 2 removed 10"

# ---- (5) gc --dry-run changes nothing
before=$(repo_digest "$R")
expect_rc 0 "gc --dry-run" hv --json gc --dry-run
[ "$(repo_digest "$R")" = "$before" ] || fail "gc --dry-run changed the repository"
[ "$(jget 'j["dry_run"]' "$WORK/out")" = true ] || fail "gc --dry-run: dry_run is not true"
[ "$(jget 'j["packs_deleted"] + j["packs_repacked"]' "$WORK/out")" -gt 0 ] &&
  [ "$(jget 'j["bytes_after"] < j["bytes_before"]' "$WORK/out")" = true ] ||
  fail "gc --dry-run reports nothing to do: $(cat "$WORK/out")"
no_scratch "$R" "gc --dry-run"
ok "gc --dry-run reports $(jget 'j["bytes_freed"]' "$WORK/out") bytes to free and changes nothing"

# A full gc on a scratch copy: how many packs it writes (W), and what it
# leaves (the next gcs after a kill should leave about as much).
cp -a "$R" "$WORK/scratch"
expect_rc 0 "gc (measure)" "$HAVEN" -r "$WORK/scratch" --json gc
W=$(jget 'j["packs_written"]' "$WORK/out")
CLEAN_AFTER=$(jget 'j["bytes_after"]' "$WORK/out")
echo "full gc: $(jget '[j[k] for k in ("packs", "packs_deleted", "packs_repacked", "packs_written")]' "$WORK/out") packs/deleted/repacked/written, $(jget 'j["mark_seconds"]' "$WORK/out") s mark, $(jget 'j["sweep_seconds"]' "$WORK/out") s sweep"
rm -rf "$WORK/scratch"
[ "$(jget 'j["packs_repacked"]' "$WORK/out")" -ge 10 ] && [ "$W" -ge 12 ] ||
  fail "gc rewrote too little to interrupt: $(cat "$WORK/out")"
ok "a full gc rewrites $(jget 'j["packs_repacked"]' "$WORK/out") packs into $W"

# Kill points, by what the gc has done rather than by the clock (machines
# and loads differ), shuffled with a fixed seed:
#   launch MS   MS after it started (passphrase, index, start of the mark);
#   mark MS     MS after its scratch directory appeared in tmp/;
#   packs N     once N of its W new packs were renamed into packs/ (the
#               last at N = W: between the new packs and the index switch);
#   deleting 0  once packs/ holds fewer packs than before (during the final
#               unlinks, which take milliseconds: it may finish first).
py - "$W" <<'EOF' >"$WORK/kills"
import random, sys
w = int(sys.argv[1])
rng = random.Random(20261001)
points = [("launch", rng.randrange(0, 400))]
points += [("mark", rng.randrange(0, 60)) for _ in range(2)]
points += [("packs", max(1, round(w * i / 6))) for i in range(7)]
points += [("deleting", 0)] * 2
rng.shuffle(points)
for mode, n in points:
    print(mode, n)
EOF
# gc_and_kill REPO MODE N: runs gc on REPO and SIGKILLs it at that point;
# KRC is its exit status (137: killed; 0: it finished first).
gc_and_kill() {
  local p0 p sc deadline=$((SECONDS + 30))
  p=("$1"/packs/*/*)
  p0=${#p[@]}
  "$HAVEN" -r "$1" --json gc >"$WORK/gc.out" 2>"$WORK/gc.err" &
  local gp=$!
  PIDS+=("$gp")
  while kill -0 "$gp" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || fail "gc_and_kill $2 $3: gc ran over 30 s"
    case $2 in
      launch) break ;;
      mark)
        sc=("$1"/tmp/gc-*)
        [ -e "${sc[0]}" ] && break ;;
      packs)
        p=("$1"/packs/*/*)
        [ "${#p[@]}" -lt $((p0 + $3)) ] || break ;;
      deleting)
        p=("$1"/packs/*/*)
        [ "${#p[@]}" -ge "$p0" ] || break ;;
    esac
    [ "$2" = deleting ] || msleep 1  # the unlinks take milliseconds
  done
  case $2 in launch | mark) msleep "$3" ;; esac
  kill -9 "$gp" 2>/dev/null || true
  KRC=0
  wait "$gp" 2>/dev/null || KRC=$?
  reaped "$gp"
}
C=$WORK/copy
killed=0 finished=0 in_sweep=0 scratch_left=0 i=0
while read -r mode n; do
  i=$((i + 1))
  rm -rf "$C"
  cp -a "$R" "$C"
  pack_list "$C" >"$WORK/packs.before"
  gc_and_kill "$C" "$mode" "$n"
  phase=finished
  if [ "$KRC" = 137 ]; then
    killed=$((killed + 1))
    phase="before mark"
    [ -n "$(find "$C/tmp" -maxdepth 1 -name 'gc-*' -print -quit)" ] && phase=mark
    if ! pack_list "$C" | cmp -s - "$WORK/packs.before" ||
      [ -n "$(find "$C/tmp" -maxdepth 1 -name 'pack-*.tmp' -print -quit)" ]; then
      phase=sweep
      in_sweep=$((in_sweep + 1))
    fi
    [ "$phase" = "before mark" ] || scratch_left=$((scratch_left + 1))
  elif [ "$KRC" = 0 ]; then
    finished=$((finished + 1))
  else
    fail "iteration $i: gc exited $KRC (neither killed nor ok): $(cat "$WORK/gc.err")"
  fi
  what="$mode $n"
  echo "iteration $i: kill at $what: exit $KRC ($phase); packs" \
    "$(wc -l <"$WORK/packs.before") -> $(pack_list "$C" | wc -l), tmp: $(ls "$C/tmp" | tr '\n' ' ')"
  [ "$(manifests "$C")" = "$KEPT" ] || fail "iteration $i: the killed gc changed the manifests"
  # Data is read in full every third time after the kill, and after the
  # next gc every other time; the structure is checked every time. Both
  # points are restored after a kill in the sweep, the newer one otherwise.
  if [ $((i % 3)) = 0 ]; then
    expect_rc 0 "iteration $i: check --read-data after the kill" "$HAVEN" -r "$C" check --read-data
  else
    expect_rc 0 "iteration $i: check after the kill" "$HAVEN" -r "$C" check
  fi
  sample=$NEWEST
  [ "$phase" = sweep ] && sample=$KEPT
  for id in $sample; do restores_as "$C" "$id" "${SHA[$id]}" "iteration $i"; done
  expect_rc 0 "iteration $i: gc after the kill" "$HAVEN" -r "$C" --json gc
  after=$(jget 'j["bytes_after"]' "$WORK/out")
  [ "$after" -le $((CLEAN_AFTER * 11 / 10 + MiB)) ] ||
    fail "iteration $i: gc after the kill left $after bytes; an uninterrupted gc leaves $CLEAN_AFTER"
  no_scratch "$C" "iteration $i: gc after the kill"
  how=(check)
  [ $((i % 2)) = 0 ] && how=(check --read-data)
  expect_rc 0 "iteration $i: ${how[*]} after the next gc" "$HAVEN" -r "$C" "${how[@]}"
  ok "iteration $i: gc killed at $what ($phase): check passes, $(wc -w <<<"$sample") point(s) restore; the next gc leaves $after bytes, ${how[*]} passes"
done <"$WORK/kills"
echo "gc kills: $killed hit a running gc ($in_sweep of them in the sweep, writing or deleting packs;" \
  "$scratch_left left a scratch directory, removed by the next gc), $finished found it finished"
[ "$killed" -ge 8 ] || fail "only $killed of $i kills hit a running gc (timing off?)"
[ "$in_sweep" -ge 3 ] || fail "only $in_sweep kills landed in the sweep (timing off?)"
ok "$killed of $i gc runs killed ($in_sweep while rewriting/deleting packs); every one recovered"

# ======================================================= (4) stale scratch
rm -rf "$C"
cp -a "$R" "$C"
"$HAVEN" -r "$C" gc >"$WORK/gc.out" 2>"$WORK/gc.err" &
gp=$!
PIDS+=("$gp")
deadline=$(($(now_us) + 20000000))
while kill -0 "$gp" 2>/dev/null && [ -z "$(find "$C/tmp" -maxdepth 1 -name 'gc-*' -print -quit)" ]; do
  msleep 1
  [ "$(now_us)" -lt "$deadline" ] || fail "no tmp/gc-* appeared within 20 s"
done
kill -9 "$gp" 2>/dev/null || true
wait "$gp" 2>/dev/null || true
reaped "$gp"
stale=$(find "$C/tmp" -maxdepth 1 -name 'gc-*')
[ -n "$stale" ] || fail "the killed gc left no scratch directory (it finished first?)"
mkdir "$C/tmp/gc-00000000deadbeef"
echo junk >"$C/tmp/gc-00000000deadbeef/junk"
expect_rc 0 "gc after a killed gc" "$HAVEN" -r "$C" gc
for d in $stale "$C/tmp/gc-00000000deadbeef"; do
  [ ! -e "$d" ] || fail "gc left the stale scratch directory $d"
done
no_scratch "$C" "gc after a killed gc"
ok "stale gc scratch ($(basename "$stale"), and a planted one) removed by the next gc"
rm -rf "$C"

# ======================================================= (2) forget killed
# 4 names x 8 points of a small image (made 4 at a time); forget
# --keep-last 2 removes 24 of them, one unlink at a time.
F=$WORK/forget
expect_rc 0 "init (forget)" "$HAVEN" -r "$F" init --pack-size 1M
for n in 0 1 2 3; do
  (
    for k in $(seq 0 7); do
      random_file "$WORK/f$n.img" 65536 $((n * 100 + k))
      s=$(sha "$WORK/f$n.img")
      "$HAVEN" -r "$F" -q --json backup image "$WORK/f$n.img" --name "vm-f$n" \
        --time "$(printf '2026-08-%02dT%02d:00:00Z' $((k + 1)) "$n")" >"$WORK/f$n.out" ||
        exit 1
      echo "$(jget 'j["id"]' "$WORK/f$n.out") vm-f$n $k $s" >>"$WORK/f$n.points"
    done
  ) &
  PIDS+=("$!")
  FP[$n]=$!
done
for n in 0 1 2 3; do
  wait "${FP[$n]}" || fail "backups of vm-f$n failed"
  reaped "${FP[$n]}"
done
cat "$WORK"/f?.points >"$WORK/fpoints"
FALL=$(listed "$F")
[ "$(wc -l <<<"$FALL")" = 32 ] || fail "expected 32 points, listed $(wc -l <<<"$FALL")"
[ "$(manifests "$F")" = "$FALL" ] || fail "snapshots/ does not hold the listed points"
FKEEP=$(awk '$3 >= 6 {print $1}' "$WORK/fpoints" | sort)  # newest 2 per name
declare -A FSHA
while read -r id _ _ s; do FSHA[$id]=$s; done <"$WORK/fpoints"
ok "32 points: 4 names x 8"

# forget_and_kill REPO N: starts forget --keep-last 2 and SIGKILLs it as
# soon as it removed N points (0: never). Forget removes its 24 points in a
# few milliseconds, so this polls without sleeping or forking.
# KRC is its exit code.
forget_and_kill() {
  "$HAVEN" -r "$1" --json forget --keep-last 2 >"$WORK/fg.out" 2>"$WORK/fg.err" &
  local fp=$! deadline=$((SECONDS + 20)) f
  PIDS+=("$fp")
  if [ "$2" -gt 0 ]; then
    while kill -0 "$fp" 2>/dev/null; do
      f=("$1"/snapshots/*)
      [ "${#f[@]}" -gt $((32 - $2)) ] || break
      [ "$SECONDS" -lt "$deadline" ] || fail "forget removed nothing within 20 s"
    done
    kill -9 "$fp" 2>/dev/null || true
  fi
  KRC=0
  wait "$fp" 2>/dev/null || KRC=$?
  reaped "$fp"
  [ "$KRC" = 137 ] || [ "$KRC" = 0 ] || fail "forget exited $KRC: $(cat "$WORK/fg.err")"
}
cp -a "$F" "$WORK/scratch"
forget_and_kill "$WORK/scratch" 0
[ "$KRC" = 0 ] || fail "forget (measure) exited $KRC"
[ "$(listed "$WORK/scratch")" = "$FKEEP" ] || fail "forget --keep-last 2 kept the wrong points"
rm -rf "$WORK/scratch"
ok "forget --keep-last 2 removes the 24 older points, keeps the newest 2 of each name"

FC=$WORK/forget-copy
partial=0
for i in 1 2 3 4 5 6; do
  rm -rf "$FC"
  cp -a "$F" "$FC"
  after=$((1 + (i - 1) * 4 + RANDOM % 3))  # 1..23 of its 24 removals
  forget_and_kill "$FC" "$after"
  now=$(manifests "$FC")
  left=$(wc -l <<<"$now")
  [ "$KRC" = 137 ] && [ "$left" -gt 8 ] && [ "$left" -lt 32 ] && partial=$((partial + 1))
  echo "forget iteration $i: kill once it removed $after: exit $KRC, $left points left"
  extra=$(comm -13 <(echo "$FALL") <(echo "$now"))
  [ -z "$extra" ] || fail "forget iteration $i: unknown points listed: $extra"
  missing=$(comm -23 <(echo "$FKEEP") <(echo "$now"))
  [ -z "$missing" ] || fail "forget iteration $i: a point the rule keeps is gone: $missing"
  expect_rc 0 "forget iteration $i: check" "$HAVEN" -r "$FC" check
  # The newest point of one name, and one not yet removed point if any.
  n=$((i % 4))
  sample="$(awk -v n="vm-f$n" '$2 == n && $3 == 7 {print $1}' "$WORK/fpoints")"
  sample="$sample $(comm -23 <(echo "$now") <(echo "$FKEEP") | shuf -n 1)"
  for id in $sample; do restores_as "$FC" "$id" "${FSHA[$id]}" "forget iteration $i"; done
  expect_rc 0 "forget iteration $i: forget again" "$HAVEN" -r "$FC" forget --keep-last 2
  [ "$(listed "$FC")" = "$FKEEP" ] || fail "forget iteration $i: the re-run did not leave the 8 newest"
  [ "$(manifests "$FC")" = "$FKEEP" ] || fail "forget iteration $i: snapshots/ holds more than the 8 newest"
  expect_rc 0 "forget iteration $i: check after the re-run" "$HAVEN" -r "$FC" check
  ok "forget iteration $i: killed with $left points left; kept points intact, restorable; a re-run finishes the job"
done
[ "$partial" -ge 3 ] || fail "only $partial of 6 forget runs were killed midway (timing off?)"
ok "$partial of 6 forget runs killed midway; every one recovered"
rm -rf "$FC"
expect_rc 0 "forget" "$HAVEN" -r "$F" forget --keep-last 2
expect_rc 0 "gc after forget" "$HAVEN" -r "$F" gc
for id in $(shuf -n 2 <<<"$FKEEP"); do restores_as "$F" "$id" "${FSHA[$id]}" "after forget + gc"; done
expect_rc 0 "check --read-data after forget + gc" "$HAVEN" -r "$F" check --read-data
ok "after forget + gc check --read-data passes; kept points restore byte-identical"

# ======================================================= (3) gc beside backups
# A background loop backs up 8 versions of an 8 MiB image (2 MiB shared by
# all versions, 6 MiB of their own at 4 bits of entropy a byte, which zstd
# -19 takes a second or two to compress), alternating two names, while the
# foreground runs forget + gc over and over: every other gc is started only
# once a backup is running, so its mark overlaps the backup and the backup
# commits before gc's sweep (which must then mark that point too).
B=$WORK/busy
expect_rc 0 "init (busy)" "$HAVEN" -r "$B" init --pack-size 1M --compression-level 19
version() {  # version PATH SEED
  py - "$1" "$2" <<'EOF'
import random, sys
shared, own = random.Random(1), random.Random(int(sys.argv[2]))
table = bytes(65 + i % 16 for i in range(256))
with open(sys.argv[1], "wb") as f:
    for k in range(8):
        f.write(shared.randbytes(1 << 20) if k % 4 == 0
                else own.randbytes(1 << 20).translate(table))
EOF
}
: >"$WORK/bk.log"  # k rc start_us end_us name sha id waited
(
  for k in $(seq 1 8); do
    name=vm-c
    [ $((k % 2)) = 0 ] && name=vm-d
    version "$WORK/bk.img" $((500 + k))
    s=$(sha "$WORK/bk.img")
    t0=$(now_us)
    rc=0
    touch "$WORK/bk.running"
    "$HAVEN" -r "$B" --json backup image "$WORK/bk.img" --name "$name" \
      >"$WORK/bk$k.out" 2>"$WORK/bk$k.err" || rc=$?
    rm -f "$WORK/bk.running"
    t1=$(now_us)
    id=-
    [ "$rc" = 0 ] && id=$(jget 'j["id"]' "$WORK/bk$k.out")
    waited=0
    grep -q "waiting for the repository lock" "$WORK/bk$k.err" && waited=1
    echo "$k $rc $t0 $t1 $name $s $id $waited" >>"$WORK/bk.log"
  done
) &
loop=$!
PIDS+=("$loop")
: >"$WORK/gc.log"  # start_us end_us wait_seconds
: >"$WORK/seen"    # id sha256 of its restore, right after a gc
rounds=0
while kill -0 "$loop" 2>/dev/null; do
  rounds=$((rounds + 1))
  expect_rc 0 "round $rounds: forget" "$HAVEN" -r "$B" forget --keep-last 2 -q
  if [ $((rounds % 2)) = 1 ]; then
    while kill -0 "$loop" 2>/dev/null && [ ! -e "$WORK/bk.running" ]; do msleep 5; done
  fi
  t0=$(now_us)
  expect_rc 0 "round $rounds: gc" "$HAVEN" -r "$B" --json gc
  t1=$(now_us)
  echo "$t0 $t1 $(jget 'j["wait_seconds"]' "$WORK/out")" >>"$WORK/gc.log"
  # The newest point of each name (perhaps committed during that gc).
  for name in vm-c vm-d; do
    rm -f "$OUT/r"
    run "$HAVEN" -r "$B" --json restore image "$name:latest" --to "$OUT/r"
    if [ "$RC" = 0 ]; then
      echo "$(jget 'j["snapshot"]' "$WORK/out") $(sha "$OUT/r")" >>"$WORK/seen"
    else
      contains "$WORK/err" "no image or VM backup named '$name'" "round $rounds: restore $name:latest"
    fi
  done
  [ "$rounds" -lt 60 ] || fail "the backup loop did not end"
done
wait "$loop" || true
reaped "$loop"
[ "$(wc -l <"$WORK/bk.log")" = 8 ] || fail "the backup loop ran $(wc -l <"$WORK/bk.log") backups, not 8"
awk '$2 != 0' "$WORK/bk.log" | grep -q . &&
  fail "backups beside gc failed: $(awk '$2 != 0 {print $1}' "$WORK/bk.log" | while read -r k; do cat "$WORK/bk$k.err"; done)"
ok "8 backups beside $rounds rounds of forget + gc: all exit 0"

declare -A BSHA
while read -r _ _ _ _ _ s id _; do BSHA[$id]=$s; done <"$WORK/bk.log"
while read -r id s; do
  [ -n "${BSHA[$id]:-}" ] || fail "restored $id, which no backup made"
  [ "${BSHA[$id]}" = "$s" ] || fail "point $id restored right after a gc differs from its image"
done <"$WORK/seen"
ok "$(wc -l <"$WORK/seen") restores of the newest points right after each gc: byte-identical"

expect_rc 0 "final forget" "$HAVEN" -r "$B" forget --keep-last 2 -q
expect_rc 0 "final gc" "$HAVEN" -r "$B" gc
now=$(listed "$B")
[ "$(wc -l <<<"$now")" = 4 ] || fail "expected 2 points per name, listed $now"
for id in $now; do
  [ -n "${BSHA[$id]:-}" ] || fail "listed $id, which no backup made"
  restores_as "$B" "$id" "${BSHA[$id]}" "after the busy rounds"
done
newest=$(awk '$1 >= 7 {print $7}' "$WORK/bk.log")
for id in $newest; do grep -qx "$id" <<<"$now" || fail "newest point $id is gone"; done
expect_rc 0 "check --read-data after the busy rounds" "$HAVEN" -r "$B" check --read-data
ok "all 4 remaining points restore byte-identical; check --read-data passes"

# Did gc and the backups really run at once? Overlapping: a gc run and a
# backup whose times overlap. A gc that waited (>= 0.15 s) for the exclusive
# lock waited for a running backup, which committed after the mark: such
# points must have been restored right after that gc.
py - "$WORK/gc.log" "$WORK/bk.log" "$WORK/seen" <<'EOF' >"$WORK/overlap"
import sys
gcs = [tuple(map(float, l.split())) for l in open(sys.argv[1])]
bks = [l.split() for l in open(sys.argv[2])]
seen = {l.split()[0] for l in open(sys.argv[3])}
over = sum(1 for g0, g1, _ in gcs if any(int(b[2]) < g1 and g0 < int(b[3]) for b in bks))
waited = [g for g in gcs if g[2] >= 0.15]
during = {b[6] for b in bks for g0, g1, _ in waited if g0 < int(b[3]) < g1}
print(over, len(waited), sum(int(b[7]) for b in bks), len(during), len(during & seen))
EOF
read -r overlap gc_waited bk_waited during checked <"$WORK/overlap"
echo "gc runs overlapping a backup: $overlap of $rounds; gc runs that waited for a backup:" \
  "$gc_waited ($during points committed meanwhile, $checked of them restored right after);" \
  "backups that waited for a gc: $bk_waited"
[ "$overlap" -ge 2 ] || fail "only $overlap gc runs overlapped a backup in time"
[ "$gc_waited" -ge 1 ] || fail "no gc waited for a running backup"
[ "$checked" -ge 1 ] || fail "no point committed during a gc was restored right after it"
ok "gc really ran beside the backups ($overlap overlapping runs; $checked point(s) committed during a gc's mark restore byte-identical)"

# ---- (3b) gc started just as a small backup commits
# gc's mark opens the index, then reads the manifests: a backup committing
# in between (or during the mark) must be marked in the sweep, never make gc
# fail. A backup of a 64 KiB image commits right after its start-up, so gc
# is started 0-150 ms after one, 24 times.
: >"$WORK/race"  # id sha256
for i in $(seq 1 24); do
  random_file "$WORK/small.img" 65536 $((900 + i))
  s=$(sha "$WORK/small.img")
  "$HAVEN" -r "$B" --json backup image "$WORK/small.img" --name vm-s \
    >"$WORK/small.out" 2>"$WORK/small.err" &
  sp=$!
  PIDS+=("$sp")
  delay=$(((i - 1) * 150 / 24 + RANDOM % 6))
  msleep "$delay"
  run "$HAVEN" -r "$B" -q gc
  src=0
  wait "$sp" || src=$?
  reaped "$sp"
  [ "$src" = 0 ] || fail "race $i: backup beside gc exited $src: $(cat "$WORK/small.err")"
  [ "$RC" = 0 ] ||
    fail "race $i: gc started $delay ms after a backup (which exited 0) exited $RC: $(cat "$WORK/err")"
  echo "$(jget 'j["id"]' "$WORK/small.out") $s" >>"$WORK/race"
done
ok "24 gc runs started 0-150 ms after a small backup: all exit 0"
now=$(listed "$B")
[ "$(grep -c . <<<"$now")" = 28 ] || fail "expected 28 points, listed $now"
expect_rc 0 "check --read-data after the races" "$HAVEN" -r "$B" check --read-data
n=0
while read -r id s; do
  n=$((n + 1))
  if [ $((n % 3)) = 0 ]; then restores_as "$B" "$id" "$s" "after the races"; fi
done <"$WORK/race"
ok "all 24 small points made beside those gc runs are listed; check --read-data passes; every third restores byte-identical"

echo "$PASS passed, 0 failed"
