#!/usr/bin/env bash
# haven repair snapshots: after a pack is lost, the recovery points that used
# it are replaced by points whose lost ranges are holes, listed in the
# manifest; everything else stays restorable byte for byte; a restore of a
# repaired point warns and exits 3; check is clean afterwards; the next
# backup stores the lost chunks again. A damaged chunk is only found (and
# repaired) with --read-data. --dry-run changes nothing.
. "$(dirname "$0")/lib.sh"

R=$WORK/repo
hv() { "$HAVEN" -r "$R" "$@"; }
MiB=$((1024 * 1024))
hv -q init --pack-size 1M
random_file "$WORK/a.img" $((12 * MiB)) 31
random_file "$WORK/b.img" $((12 * MiB)) 32
# c shares its first half with a: a lost pack of a hits c too.
head -c $((6 * MiB)) "$WORK/a.img" >"$WORK/c.img"
random_file "$WORK/c2" $((6 * MiB)) 33
cat "$WORK/c2" >>"$WORK/c.img"
for n in a b c; do hv -q backup image "$WORK/$n.img" --name "$n"; done
hv --json snapshots >"$WORK/before.json"
id_of() { jget "[s['id'] for s in j if s['name'] == '$1'][0]" "$WORK/$2"; }
A=$(id_of a before.json) B=$(id_of b before.json) C=$(id_of c before.json)

# Lose the pack holding a's data at offset 1 MiB: the first pack written.
PACK=$(find "$R/packs" -type f -printf '%T@ %p\n' | sort -n | head -1 | cut -d' ' -f2-)
rm -- "$PACK"
expect_rc 1 "check finds the lost pack" hv check
contains "$WORK/out" "which is missing" "check names the missing pack"

digest=$(repo_digest "$R")
expect_rc 0 "repair --dry-run" hv --json repair snapshots --dry-run
[ "$(repo_digest "$R")" = "$digest" ] || fail "--dry-run changed the repository"
[ "$(jget 'sorted(p["old_id"] for p in j["repaired"]) == sorted(["'"$A"'", "'"$C"'"])' "$WORK/out")" = True ] ||
  [ "$(jget 'sorted(p["old_id"] for p in j["repaired"]) == sorted(["'"$A"'", "'"$C"'"])' "$WORK/out")" = true ] ||
  fail "dry run should name a and c only: $(cat "$WORK/out")"
ok "repair --dry-run names the two damaged points and changes nothing"

expect_rc 0 "repair snapshots" hv --json repair snapshots
cp "$WORK/out" "$WORK/repair.json"
[ "$(jget 'len(j["repaired"])' "$WORK/repair.json")" = 2 ] || fail "two points repaired: $(cat "$WORK/repair.json")"
hv --json snapshots >"$WORK/after.json"
[ "$(jget 'len(j)' "$WORK/after.json")" = 3 ] || fail "still three points"
[ "$(id_of b after.json)" = "$B" ] || fail "the undamaged point b kept its id"
NA=$(id_of a after.json) NC=$(id_of c after.json)
[ "$NA" != "$A" ] && [ "$NC" != "$C" ] || fail "a and c were replaced"
[ "$(jget '[s["repaired_from"] for s in j if s["id"] == "'"$NA"'"][0]' "$WORK/after.json")" = "$A" ] ||
  fail "repaired point names the one it replaced"
ok "repair replaced a and c, left b alone, and links each to the original"

# Restores: b exact; a and c exact outside the lost ranges, zeros inside.
expect_rc 0 "restore b" hv restore image b:latest --to "$WORK/b.out"
same_file "$WORK/b.img" "$WORK/b.out" "undamaged point"
for n in a c; do
  expect_rc 3 "restore of repaired $n exits 3" hv restore image "$n:latest" --to "$WORK/$n.out"
  contains "$WORK/err" "restored as zeros" "restore of $n warns about lost ranges"
  hv --json show "$n:latest" >"$WORK/show.json"
  id=$(jget 'j["id"]' "$WORK/show.json")
  "$PYTHON" - "$WORK/$n.img" "$WORK/$n.out" "$WORK/repair.json" "$id" <<'PY'
import json, sys
src, out, rep, new_id = sys.argv[1:5]
lost = [(l["offset"], l["length"]) for p in json.load(open(rep))["repaired"]
        if p["new_id"] == new_id for l in p["lost"]]
assert lost, "no lost ranges recorded"
a, b = open(src, "rb").read(), open(out, "rb").read()
assert len(a) == len(b), "size differs"
mask = bytearray(len(a))
for off, ln in lost:
    assert off + ln <= len(a)
    assert b[off:off + ln] == bytes(ln), f"lost range {off}+{ln} is not zeros"
    mask[off:off + ln] = b"\1" * ln
diff = [i for i in range(0, len(a), 4096) if not mask[i] and a[i:i + 4096] != b[i:i + 4096]]
assert not diff, f"bytes outside the lost ranges differ at {diff[:5]}"
PY
done
ok "repaired points restore exactly outside the listed lost ranges, zeros inside"

expect_rc 0 "check after repair" hv check
contains "$WORK/out" "no errors found" "check is clean after repair"
expect_rc 0 "second repair has nothing to do" hv repair snapshots
contains "$WORK/out" "nothing to repair" "second repair"
# The next backup of a stores the lost chunks again: full restore, exact.
expect_rc 0 "new backup of a" hv -q backup image "$WORK/a.img" --name a
expect_rc 0 "restore new a" hv restore image a:latest --to "$WORK/a2.out"
same_file "$WORK/a.img" "$WORK/a2.out" "backup after repair is complete"
ok "check clean, repair idempotent, the next backup is complete again"

# A flipped bit is only found by --read-data.
PACK=$(largest_pack "$R")
"$PYTHON" - "$PACK" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(5000); b = f.read(1); f.seek(5000); f.write(bytes([b[0] ^ 1]))
PY
expect_rc 0 "repair without --read-data" hv --json repair snapshots
[ "$(jget 'len(j["repaired"])' "$WORK/out")" = 0 ] || fail "structure-only repair should not see a flipped bit"
expect_rc 0 "repair --read-data" hv --json repair snapshots --read-data
[ "$(jget 'len(j["repaired"]) >= 1' "$WORK/out")" = true ] || fail "--read-data repair found nothing: $(cat "$WORK/out")"
expect_rc 0 "structure check after the --read-data repair" hv check
ok "a flipped bit is repaired only with --read-data"

echo "$PASS passed, 0 failed"
