#!/usr/bin/env bash
# haven check: a sound repository passes; a flipped byte is found by
# --read-data and reported with the pack, the chunk and the recovery points
# and image offsets it affects; a missing pack is found by the structure
# check alone; check itself never changes the repository.
. "$(dirname "$0")/lib.sh"

R=$WORK/repo
haven -q -r "$R" init
random_file "$WORK/a.img" $((24 * 1024 * 1024)) 21
cp "$WORK/a.img" "$WORK/b.img"
random_file "$WORK/patch" $((1024 * 1024)) 22
dd if="$WORK/patch" of="$WORK/b.img" bs=1M seek=3 conv=notrunc status=none
haven -q -r "$R" backup image "$WORK/a.img" --name a
haven -q -r "$R" backup image "$WORK/b.img" --name b

expect_rc 0 "check of a sound repository" haven -r "$R" check
contains "$WORK/out" "no errors found" "sound check says so"
contains "$WORK/out" "checked 2 recovery points" "check counts recovery points"
expect_rc 0 "check --read-data of a sound repository" haven -r "$R" --json check --read-data
[ "$(jget 'j["ok"]' "$WORK/out")" = true ] || fail "json ok is not true: $(cat "$WORK/out")"
[ "$(jget 'j["packs_read"] == j["packs"] and j["chunks_read"] == j["index_entries"]' "$WORK/out")" = true ] ||
  fail "--read-data did not read every pack: $(cat "$WORK/out")"
expect_rc 0 "check --read-data=50" haven -r "$R" --json check --read-data=50
[ "$(jget 'j["packs_read"] * 2 >= j["packs"] and j["packs_read"] < j["packs"] + 1' "$WORK/out")" = true ] ||
  fail "--read-data=50 read a wrong share: $(cat "$WORK/out")"
expect_rc 2 "check --read-data=200" haven -r "$R" check --read-data=200
ok "sound repository: check and check --read-data pass; --read-data=50 reads half"

PACK=$(largest_pack "$R")
NAME=$(basename "$PACK")
digest_before=$(repo_digest "$R")
"$PYTHON" - "$PACK" <<'PY'
import sys
p = sys.argv[1]
with open(p, "r+b") as f:
    f.seek(4096)
    b = f.read(1)
    f.seek(4096)
    f.write(bytes([b[0] ^ 0x40]))
PY
digest_damaged=$(repo_digest "$R")
expect_rc 1 "check --read-data of a flipped byte" haven -r "$R" check --read-data
contains "$WORK/out" "DAMAGE: pack $NAME, chunk" "finding names the pack and chunk"
contains "$WORK/out" "authentication failed" "finding says why"
contains "$WORK/out" "affected: snapshot" "finding names the recovery points"
contains "$WORK/out" "image offsets" "finding names image offsets"
[ "$(repo_digest "$R")" = "$digest_damaged" ] || fail "check changed the repository"
ok "flipped byte: --read-data names pack, chunk, recovery points and offsets; nothing changed"

# The damaged chunk sits at the same offsets in both images (b is a copy of
# a with one changed MiB elsewhere): both points must be listed.
grep -q "affected: snapshot .* (a, " "$WORK/out" && grep -q "affected: snapshot .* (b, " "$WORK/out" ||
  fail "not every recovery point sharing the chunk is listed: $(cat "$WORK/out")"
ok "a chunk shared by two recovery points: both are listed"

rm -f "$PACK"
expect_rc 1 "structure check with a missing pack" haven -r "$R" check
contains "$WORK/out" "which is missing" "missing pack named"
contains "$WORK/out" "$NAME" "missing pack's name"
contains "$WORK/out" "image offsets" "missing pack: offsets named"
ok "missing pack: the structure check alone finds it, with offsets"
echo "$PASS passed, 0 failed"
