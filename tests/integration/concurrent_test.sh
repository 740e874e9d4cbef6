#!/usr/bin/env bash
# Several haven processes on one repository at once: two image backups and
# a file backup started together all succeed and really run at the same time
# (no writer waits for another: they share the index through short write
# sessions), dedup still works across them, gc beside two running backups
# loses nothing; restores and listings run while backups write.
. "$(dirname "$0")/lib.sh"

R=$WORK/repo
OUT=$WORK/restored
mkdir -p "$OUT"
hv() { "$HAVEN" -r "$R" "$@"; }
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
MiB=$((1 << 20))
mkfifo "$WORK/fifo"
msleep() { read -rt "$(printf '0.%03d' "$1")" <>"$WORK/fifo" || true; }

# version NAME SEED [slow]: $WORK/NAME-SEED.img = 64 MiB: 16 MiB shared by
# every image (dedup across the concurrent writers), 48 MiB of its own;
# "slow": its own data has 4 bits of entropy a byte, which zstd -19 takes
# seconds to compress.
version() {
  py - "$WORK/$1-$2.img" "$1" "$2" "${3:-}" <<'EOF'
import random, sys
path, name, seed, slow = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
shared, own = random.Random(1), random.Random(f"{name}-{seed}")
table = bytes(65 + i % 16 for i in range(256))
with open(path, "wb") as f:
    for k in range(64):
        if k % 4 == 0:
            f.write(shared.randbytes(1 << 20))
        else:
            b = own.randbytes(1 << 20)
            f.write(b.translate(table) if slow else b)
EOF
}
# tree ROUND: $WORK/tree-ROUND, a file backup's source: 8 MiB the same in
# every round, 8 MiB of its own, a few small files; slow to compress like
# "slow" images, so the file backup lasts as long as the image backups.
tree() {
  mkdir -p "$WORK/tree-$1/sub"
  py - "$WORK/tree-$1" "$1" <<'EOF2'
import random, sys
root, rnd = sys.argv[1], sys.argv[2]
table = bytes(65 + i % 16 for i in range(256))
for name, seed in (("same.bin", "same"), ("own.bin", "own-" + rnd)):
    with open(f"{root}/{name}", "wb") as f:
        r = random.Random(seed)
        for _ in range(8):
            f.write(r.randbytes(1 << 20).translate(table))
for i in range(20):
    with open(f"{root}/sub/small-{i}.txt", "w") as f:
        f.write(f"round {rnd} file {i}\n" * (i + 1))
EOF2
}
declare -A IMAGE  # point id -> image file it captured
declare -A TREE   # point id -> directory a file backup captured
# Each job runs in a subshell that stamps its wall-clock start and end (ns)
# in $WORK/TAG.start and $WORK/TAG.end.
stamped() {
  local tag=$1
  shift
  (
    date +%s%N >"$WORK/$tag.start"
    rc=0
    "$@" >"$WORK/$tag.out" 2>"$WORK/$tag.err" || rc=$?
    date +%s%N >"$WORK/$tag.end"
    exit "$rc"
  ) &
  BPID=$!
  PIDS+=("$BPID")
}
# start_backup IMG NAME TAG: backup in the background; pid in BPID.
start_backup() { stamped "$3" "$HAVEN" -r "$R" --json backup image "$1" --name "$2"; }
# start_files DIR NAME TAG: file backup in the background; pid in BPID.
start_files() { stamped "$3" "$HAVEN" -r "$R" --json backup files "$1" --name "$2"; }
# finish_backup PID IMG TAG: waits, checks exit 0, records the point.
finish_backup() {
  local rc=0
  wait "$1" || rc=$?
  [ "$rc" = 0 ] || fail "$3: backup exited $rc: $(cat "$WORK/$3.err")"
  local id
  id=$(jget 'j["id"]' "$WORK/$3.out")
  [ "$(jget 'j["consistency"]' "$WORK/$3.out")" = offline ] || fail "$3: not consistent"
  IMAGE[$id]=$2
}
# finish_files PID DIR TAG: waits, checks exit 0 and not partial, records it.
finish_files() {
  local rc=0
  wait "$1" || rc=$?
  [ "$rc" = 0 ] || fail "$3: file backup exited $rc: $(cat "$WORK/$3.err")"
  [ "$(jget 'j["partial"]' "$WORK/$3.out")" = false ] || fail "$3: partial: $(cat "$WORK/$3.out")"
  TREE[$(jget 'j["snapshot"]' "$WORK/$3.out")]=$2
}
# overlapped WHAT TAG...: the jobs really ran at the same time. Each job's
# working time is its own --json duration_seconds, ending at its end stamp.
# All started before any ended; every two working intervals intersect (so
# none waited for another to finish, as the second backup did when writers
# serialized); and the wall-clock span of all of them is well under the sum
# of their durations (run one after another, it is at least that sum).
overlapped() {
  local what=$1
  shift
  local args=()
  for t in "$@"; do
    args+=("$(cat "$WORK/$t.start")" "$(cat "$WORK/$t.end")" "$(jget 'j["duration_seconds"]' "$WORK/$t.out")")
  done
  py - "$what" "${args[@]}" <<'EOF2' || fail "$what: the jobs did not overlap"
import sys
what, v = sys.argv[1], sys.argv[2:]
jobs = [(int(v[i]) / 1e9, int(v[i + 1]) / 1e9, float(v[i + 2])) for i in range(0, len(v), 3)]
starts, ends = [j[0] for j in jobs], [j[1] for j in jobs]
work = [(end - d, end) for _, end, d in jobs]
span, total = max(ends) - min(starts), sum(j[2] for j in jobs)
print(f"{what}: span {span:.2f} s, durations {[round(j[2], 2) for j in jobs]}")
assert max(starts) < min(ends), "one job ended before another started"
for i in range(len(work)):
    for k in range(i + 1, len(work)):
        a, b = work[i], work[k]
        assert a[0] < b[1] and b[0] < a[1], f"jobs {i} and {k} worked one after the other"
assert span < 0.75 * total, f"span {span:.2f} s is not under 3/4 of the summed durations {total:.2f} s"
EOF2
  for t in "$@"; do lacks "$WORK/$t.err" "waiting" "$what: $t waited for another writer"; done
}

# The highest zstd level makes a backup take a second or more, so the jobs
# below really overlap.
expect_rc 0 "init" hv init --chunk-size 64K --compression-level 19

# ------------------------------------------- three backups started together
MiB48=$((48 * MiB))
for round in 1 2 3; do
  version x $round slow
  version y $round slow
  tree $round
  start_backup "$WORK/x-$round.img" vm-x "x$round"
  px=$BPID
  start_backup "$WORK/y-$round.img" vm-y "y$round"
  py_=$BPID
  start_files "$WORK/tree-$round" files "f$round"
  pf=$BPID
  finish_backup "$px" "$WORK/x-$round.img" "x$round"
  finish_backup "$py_" "$WORK/y-$round.img" "y$round"
  finish_files "$pf" "$WORK/tree-$round" "f$round"
  overlapped "round $round" "x$round" "y$round" "f$round"
  ok "round $round: two image backups and a file backup started together all exit 0, ran at the same time, none waited"
done
# Dedup across concurrent writers. A writer finds another's new chunk once
# that writer has indexed the pack holding it and this one's view of the
# index has been refreshed (at a miss, at most every 2 s). So in round 1, x
# and y (reading the same 16 MiB of shared data at the same moment) may each
# store it: at most two copies, one per writer, never more. From round 2 on
# the shared data is indexed before they start: each stores its 48 MiB of
# own data and its chunk list (one 32 KiB node for 1024 chunks; 64 KiB
# allowed), nothing of the shared data; and the file backup stores only what changed (its 8 MiB
# own.bin and the small files), not same.bin again.
r1=$(( $(jget 'j["new_raw_bytes"]' "$WORK/x1.out") + $(jget 'j["new_raw_bytes"]' "$WORK/y1.out") ))
# (Each point also stores its chunk list: up to 64 KiB each.)
[ "$r1" -ge $((96 * MiB + 16 * MiB)) ] && [ "$r1" -le $((96 * MiB + 32 * MiB + 128 * 1024)) ] ||
  fail "round 1 stored $r1 bytes: not between own + shared once and own + shared twice"
for t in x2 y2 x3 y3; do
  n=$(jget 'j["new_raw_bytes"]' "$WORK/$t.out")
  [ "$n" -ge "$MiB48" ] && [ "$n" -le $((MiB48 + 64 * 1024)) ] ||
    fail "$t stored $n new bytes, expected its own 48 MiB (and its chunk list) only"
done
for t in f2 f3; do
  n=$(jget 'j["new_raw_bytes"]' "$WORK/$t.out")
  [ "$n" -lt $((8 * MiB + 64 * 1024)) ] || fail "$t stored $n new bytes: same.bin stored again?"
done
ok "dedup across concurrent writers: round 1 stored the shared data at most twice, later rounds only their own data"
expect_rc 0 "snapshots after concurrent backups" hv --json snapshots
[ "$(jget 'len(j)' "$WORK/out")" = 9 ] || fail "expected 9 points: $(cat "$WORK/out")"
[ "$(jget 'sorted(set(m["name"] for m in j))' "$WORK/out")" = '["files", "vm-x", "vm-y"]' ] ||
  fail "names: $(cat "$WORK/out")"
ok "snapshots lists all 9 points, none damaged"
# restore_all WHAT: every recorded point restores byte-identical.
restore_all() {
  for id in "${!IMAGE[@]}"; do
    rm -f "$OUT/r"
    expect_rc 0 "$1: restore $id" hv restore image "$id" --to "$OUT/r"
    same_file "${IMAGE[$id]}" "$OUT/r" "$1: restore of point $id"
  done
  for id in "${!TREE[@]}"; do
    rm -rf "$OUT/t"
    expect_rc 0 "$1: restore files $id" hv restore files "$id" --to "$OUT/t"
    diff -r "${TREE[$id]}" "$OUT/t${TREE[$id]}" >/dev/null || fail "$1: restore of file point $id differs"
  done
}
# check_clean WHAT: check --read-data reads every pack and finds nothing.
# (A chunk stored twice is two sound copies, not damage.)
check_clean() {
  expect_rc 0 "$1: check --read-data" hv --json check --read-data
  [ "$(jget 'j["ok"] and j["packs_read"] == j["packs"]' "$WORK/out")" = True ] ||
    [ "$(jget 'j["ok"] and j["packs_read"] == j["packs"]' "$WORK/out")" = true ] ||
    fail "$1: check --read-data: $(head -c 2000 "$WORK/out")"
}
restore_all "after three rounds"
ok "all 9 points from concurrent backups restore byte-identical"
check_clean "after three rounds"
ok "check --read-data after concurrent backups: clean"
expect_rc 0 "rebuild-index" hv --json rebuild-index
[ "$(jget 'j["damaged"]' "$WORK/out")" = "[]" ] || fail "damaged packs: $(cat "$WORK/out")"
ok "rebuild-index after concurrent backups: no damaged pack"

# ------------------------------------------- gc while two backups run
# Round 1's points go; gc is started while two slow backups write. Its mark
# runs beside them; its sweep waits for them (exclusive lock), marks what
# they committed, and deletes only what no point uses.
expect_rc 0 "forget round 1" hv --json forget --keep-last 2
for t in x1 y1; do unset "IMAGE[$(jget 'j["id"]' "$WORK/$t.out")]"; done
unset "TREE[$(jget 'j["snapshot"]' "$WORK/f1.out")]"
version x 7 slow
version y 7 slow
start_backup "$WORK/x-7.img" vm-x x7
g1=$BPID
start_backup "$WORK/y-7.img" vm-y y7
g2=$BPID
while kill -0 "$g1" 2>/dev/null && [ -z "$(find "$R/tmp" -name 'pack-*.tmp' -print -quit)" ]; do
  msleep 1
done
stamped gc "$HAVEN" -r "$R" --json gc
gp=$BPID
finish_backup "$g1" "$WORK/x-7.img" x7
finish_backup "$g2" "$WORK/y-7.img" y7
grc=0
wait "$gp" || grc=$?
[ "$grc" = 0 ] || fail "gc beside two backups exited $grc: $(cat "$WORK/gc.err")"
[ "$(cat "$WORK/gc.start")" -lt "$(cat "$WORK/x7.end")" ] &&
  [ "$(cat "$WORK/gc.start")" -lt "$(cat "$WORK/y7.end")" ] ||
  fail "gc started after the backups ended: not beside them"
[ "$(jget 'j["packs_deleted"] + j["packs_repacked"]' "$WORK/gc.out")" -gt 0 ] ||
  fail "gc freed nothing (round 1's own data should go): $(cat "$WORK/gc.out")"
ok "gc started while two backups ran: all exit 0, gc freed round 1's packs"
restore_all "after gc beside backups"
ok "after gc beside two backups every point restores byte-identical"
check_clean "after gc beside backups"
ok "check --read-data after gc beside backups: clean"

# ------------------------------------------- reads while a backup writes
version x 4 slow
start_backup "$WORK/x-4.img" vm-x x4
bx=$BPID
# wait until the backup is writing its first pack
while kill -0 "$bx" 2>/dev/null && [ -z "$(find "$R/tmp" -name 'pack-*.tmp' -print -quit)" ]; do
  msleep 1
done
kill -0 "$bx" 2>/dev/null || fail "the backup ended before a restore could start (too fast)"
t0=$(date +%s%N)
expect_rc 0 "snapshots during a backup" hv --lock-wait 5 snapshots
lacks "$WORK/err" "waiting" "snapshots during a backup"
[ $((($(date +%s%N) - t0) / 1000000)) -lt 4000 ] || fail "snapshots during a backup was slow"
ok "snapshots while a backup writes: exit 0, no waiting"
y3=$(jget 'j["id"]' "$WORK/y3.out")
overlap=0
kill -0 "$bx" 2>/dev/null && overlap=1
expect_rc 0 "restore during a backup" hv --lock-wait 5 restore image "$y3" --to "$OUT/during"
kill -0 "$bx" 2>/dev/null && overlap=2
same_file "$WORK/y-3.img" "$OUT/during" "restore during a backup"
finish_backup "$bx" "$WORK/x-4.img" x4
[ "$overlap" = 2 ] || fail "the backup ended before the restore did: no real overlap (machine too fast?)"
ok "restore while a backup runs (the backup ran throughout): exit 0, byte-identical"
x4=$(jget 'j["id"]' "$WORK/x4.out")
expect_rc 0 "restore x4" hv restore image "$x4" --to "$OUT/x4"
same_file "$WORK/x-4.img" "$OUT/x4" "point made while a restore ran"
ok "the backup made alongside restores is byte-identical"

# ------------------------------------------- a backup while a restore runs
version y 5
hv restore image "$x4" --to "$OUT/x4-again" >"$WORK/r.out" 2>"$WORK/r.err" &
rp=$!
PIDS+=("$rp")
while kill -0 "$rp" 2>/dev/null && [ ! -e "$OUT/x4-again.haven-partial" ]; do msleep 1; done
start_backup "$WORK/y-5.img" vm-y y5
by=$BPID
rrc=0
wait "$rp" || rrc=$?
[ "$rrc" = 0 ] || fail "restore alongside a backup exited $rrc: $(cat "$WORK/r.err")"
finish_backup "$by" "$WORK/y-5.img" y5
same_file "$WORK/x-4.img" "$OUT/x4-again" "restore alongside a starting backup"
expect_rc 0 "restore y5" hv restore image vm-y:latest --to "$OUT/y5"
same_file "$WORK/y-5.img" "$OUT/y5" "backup made while a restore ran"
ok "a backup started during a restore: both exit 0, both byte-identical"

# ------------------------------------------- many restores, two writers
version x 6
version y 6
start_backup "$WORK/x-6.img" vm-x x6
p1=$BPID
start_backup "$WORK/y-6.img" vm-y y6
p2=$BPID
n=0
while kill -0 "$p1" 2>/dev/null || kill -0 "$p2" 2>/dev/null; do
  n=$((n + 1))
  rm -f "$OUT/loop"
  expect_rc 0 "restore $n during two backups" hv --lock-wait 5 restore image "$x4" --to "$OUT/loop"
  same_file "$WORK/x-4.img" "$OUT/loop" "restore $n during two backups"
  [ "$n" -lt 20 ] || break
done
finish_backup "$p1" "$WORK/x-6.img" x6
finish_backup "$p2" "$WORK/y-6.img" y6
for t in x6 y6; do
  id=$(jget 'j["id"]' "$WORK/$t.out")
  rm -f "$OUT/r"
  expect_rc 0 "restore $t" hv restore image "$id" --to "$OUT/r"
  same_file "${IMAGE[$id]}" "$OUT/r" "restore $t"
done
ok "$n restore(s) during two concurrent backups all byte-identical; both new points too"

echo "$PASS passed, 0 failed"
