#!/usr/bin/env bash
# Several haven processes on one repository at once: two backups started
# together both succeed; restores and listings run while a backup writes.
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
declare -A IMAGE  # point id -> image file it captured
# start_backup IMG NAME TAG: backup in the background; pid in BPID.
start_backup() {
  "$HAVEN" -r "$R" --json backup image "$1" --name "$2" >"$WORK/$3.out" 2>"$WORK/$3.err" &
  BPID=$!
  PIDS+=("$BPID")
}
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

# The highest zstd level makes a backup take a second or more, so the jobs
# below really overlap.
expect_rc 0 "init" hv init --chunk-size 64K --compression-level 19

# ------------------------------------------- two backups started together
for round in 1 2 3; do
  version x $round
  version y $round
  start_backup "$WORK/x-$round.img" vm-x "x$round"
  px=$BPID
  start_backup "$WORK/y-$round.img" vm-y "y$round"
  py_=$BPID
  kill -0 "$px" 2>/dev/null || fail "round $round: backup x ended before y started; not concurrent"
  finish_backup "$px" "$WORK/x-$round.img" "x$round"
  finish_backup "$py_" "$WORK/y-$round.img" "y$round"
  ok "round $round: two backups into one repository started together both exit 0"
done
expect_rc 0 "snapshots after concurrent backups" hv --json snapshots
[ "$(jget 'len(j)' "$WORK/out")" = 6 ] || fail "expected 6 points: $(cat "$WORK/out")"
[ "$(jget 'sorted(set(m["name"] for m in j))' "$WORK/out")" = '["vm-x", "vm-y"]' ] ||
  fail "names: $(cat "$WORK/out")"
ok "snapshots lists all 6 points, none damaged"
for id in "${!IMAGE[@]}"; do
  rm -f "$OUT/r"
  expect_rc 0 "restore $id" hv restore image "$id" --to "$OUT/r"
  same_file "${IMAGE[$id]}" "$OUT/r" "restore of concurrent point $id"
done
ok "all 6 points from concurrent backups restore byte-identical"
expect_rc 0 "rebuild-index" hv --json rebuild-index
[ "$(jget 'j["damaged"]' "$WORK/out")" = "[]" ] || fail "damaged packs: $(cat "$WORK/out")"
ok "rebuild-index after concurrent backups: no damaged pack"

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
