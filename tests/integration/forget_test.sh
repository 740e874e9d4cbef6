#!/usr/bin/env bash
# forget and gc, the ordinary way: retention rules applied per backup name
# keep exactly what they should (a dry run changes nothing), a protected
# point is never removed, usage errors are exit 2, gc frees the space of the
# removed points without touching what the others use, and an unreadable
# manifest makes forget (with rules) and gc refuse instead of guessing.
. "$(dirname "$0")/lib.sh"

export TZ=UTC  # retention buckets are local days and weeks
R=$WORK/repo
OUT=$WORK/restored
mkdir -p "$OUT"
hv() { "$HAVEN" -r "$R" "$@"; }
PIDS=()
# The background backups run in subshells: their haven children go first.
trap 'for p in "${PIDS[@]}"; do pkill -9 -P "$p" 2>/dev/null || true;
  kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"' EXIT
MiB=$((1 << 20))

# pack_bytes REPO: the summed size of its pack files.
pack_bytes() {
  find "$1/packs" -mindepth 2 -maxdepth 2 -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}'
}
# listed: sorted ids of the listed recovery points, one a line.
listed() {
  hv --json snapshots >"$WORK/list.json" ||
    fail "snapshots exited non-zero: $(cat "$WORK/list.json")"
  jget '"\n".join(sorted(m["id"] for m in j))' "$WORK/list.json"
}
# night IMG SEED: changes four 64 KiB blocks of IMG at seeded places.
night() {
  py - "$1" "$2" <<'EOF'
import os, random, sys
rng = random.Random(int(sys.argv[2]))
blocks = os.path.getsize(sys.argv[1]) >> 16
with open(sys.argv[1], "r+b") as f:
    for _ in range(4):
        f.seek(rng.randrange(blocks) << 16)
        f.write(rng.randbytes(1 << 16))
EOF
}

# The decisions restic's semantics give, computed here independently from
# the recorded times: expect.py POINTS PROTECTED NAME LAST DAILY WEEKLY
# WITHIN_DAYS prints [{"id", "name", "keep", "reasons"}] ordered by name,
# then newest first (NAME "-": every name; 0: rule off).
cat >"$WORK/expect.py" <<'EOF'
import datetime as dt, json, sys
points_file, protected_file, only = sys.argv[1:4]
last, daily, weekly, within_days = map(int, sys.argv[4:8])
protected = set(open(protected_file).read().split())
groups = {}
for line in open(points_file):
    pid, name, when, _sha = line.split()
    if only in ("-", name):
        t = dt.datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ")
        groups.setdefault(name, []).append((t, pid))
out = []
for name in sorted(groups):
    group = sorted(groups[name], key=lambda p: (-p[0].timestamp(), p[1]))
    newest = group[0][0]
    left = {"last": last, "daily": daily, "weekly": weekly}
    seen = {"daily": None, "weekly": None}
    for t, pid in group:
        reasons = ["protected"] if pid in protected else []
        if left["last"] > 0:
            left["last"] -= 1
            reasons.append("last")
        iso = t.isocalendar()
        for rule, bucket in (("daily", t.date().isoformat()),
                             ("weekly", f"{iso[0]}-W{iso[1]:02d}")):
            if left[rule] > 0 and bucket != seen[rule]:
                left[rule] -= 1
                seen[rule] = bucket
                reasons.append(f"{rule} {bucket}")
        if within_days and t >= newest - dt.timedelta(days=within_days):
            reasons.append(f"within {within_days}d")
        out.append({"id": pid, "name": name, "keep": bool(reasons), "reasons": reasons})
print(json.dumps(out))
EOF
# expect NAME LAST DAILY WEEKLY WITHIN_DAYS: expected decisions (JSON) over
# the points still recorded in $WORK/points.
: >"$WORK/protected"
expect() { py "$WORK/expect.py" "$WORK/points" "$WORK/protected" "$@"; }
# kept_ids JSON: sorted ids with keep true, one a line.
kept_ids() { jget '"\n".join(sorted(d["id"] for d in j if d["keep"]))' <<<"$1"; }
# same_decisions FORGET_JSON_FILE EXPECTED_JSON WHAT: forget's decisions
# (id, name, keep, reasons, in order) are the expected ones.
same_decisions() {
  py - "$1" "$2" "$3" <<'EOF' || fail "$3: decisions differ (see above)"
import json, sys
got = json.load(open(sys.argv[1]))["snapshots"]
want = json.loads(sys.argv[2])
got = [{k: d[k] for k in ("id", "name", "keep", "reasons")} for d in got]
if got != want:
    print(f"{sys.argv[3]}: forget decided", file=sys.stderr)
    for d in got: print("  ", d, file=sys.stderr)
    print("expected", file=sys.stderr)
    for d in want: print("  ", d, file=sys.stderr)
    sys.exit(1)
EOF
}

# ------------------------------------------------ two names, ten nights each
expect_rc 0 "init" hv init --pack-size 1M
random_file "$WORK/vm-a.img" $((4 * MiB)) 1
random_file "$WORK/vm-b.img" $((6 * MiB)) 2
# nights NAME FIRST_DAY: ten points, 2026-10-FIRST_DAY .. +9 at 02:00Z, one a
# night, each of the image changed a little; "id name time sha256" lines in
# $WORK/NAME.points. vm-a: 10-01 .. 10-10; vm-b: 10-05 .. 10-14 (different
# newest days, so rules applied across names instead of per name would
# decide differently). The two names are backed up side by side.
nights() {
  local i when id
  for i in $(seq 0 9); do
    when=$(printf '2026-10-%02dT02:00:00Z' $(($2 + i)))
    night "$WORK/$1.img" $((i * 2 + $2))
    "$HAVEN" -r "$R" --json backup image "$WORK/$1.img" --name "$1" --time "$when" \
      >"$WORK/$1.out" 2>"$WORK/$1.err" || fail "backup $1 $when: $(cat "$WORK/$1.err")"
    id=$(jget 'j["id"]' "$WORK/$1.out")
    [ "$(jget 'j["time"]' "$WORK/$1.out")" = "$when" ] || fail "backup $1: time is not $when"
    echo "$id $1 $when $(sha256sum "$WORK/$1.img" | cut -d' ' -f1)" >>"$WORK/$1.points"
  done
}
nights vm-a 1 &
pa=$!
nights vm-b 5 &
pb=$!
PIDS+=("$pa" "$pb")
wait "$pa" || fail "backups of vm-a failed"
wait "$pb" || fail "backups of vm-b failed"
PIDS=()
cat "$WORK/vm-a.points" "$WORK/vm-b.points" >"$WORK/points"  # id name time sha256
ALL=$(listed)
[ "$(wc -l <<<"$ALL")" = 20 ] || fail "expected 20 points, listed: $ALL"
ok "20 points: vm-a and vm-b, ten nights each"
# keep_points IDS: drops from $WORK/points every point not in IDS.
keep_points() {
  awk 'NR == FNR {k[$1]; next} $1 in k' <(echo "$1") "$WORK/points" >"$WORK/points.new"
  mv "$WORK/points.new" "$WORK/points"
}
# point_of NAME TIME: the id recorded for it.
point_of() { awk -v n="$1" -v t="$2" '$2 == n && $3 == t {print $1}' "$WORK/points"; }

# ------------------------------------------------ protection, then a dry run
P=$(point_of vm-a 2026-10-05T02:00:00Z)
[ "$(jget "[d['keep'] for d in j if d['id'] == '$P'][0]" <<<"$(expect - 0 3 2 0)")" = false ] ||
  fail "test setup: the rules should remove $P"
expect_rc 0 "protect $P" hv protect "$P"
echo "$P" >"$WORK/protected"
ok "protected vm-a 2026-10-05 ($P), a point --keep-daily 3 --keep-weekly 2 would remove"

before=$(repo_digest "$R")
expect_rc 0 "forget --dry-run" hv --json forget --keep-daily 3 --keep-weekly 2 --dry-run
cp "$WORK/out" "$WORK/dry.json"
[ "$(repo_digest "$R")" = "$before" ] || fail "forget --dry-run changed the repository"
[ "$(listed)" = "$ALL" ] || fail "forget --dry-run removed points"
[ -e "$R/protected/$P" ] || fail "forget --dry-run dropped the protection of $P"
ok "forget --dry-run: repository unchanged, all 20 points listed"
want=$(expect - 0 3 2 0)
same_decisions "$WORK/dry.json" "$want" "dry run --keep-daily 3 --keep-weekly 2"
[ "$(jget 'j["dry_run"]' "$WORK/dry.json")" = true ] || fail "dry run: dry_run is not true"
nkeep=$(jget 'sum(d["keep"] for d in j)' <<<"$want")
[ "$(jget 'j["kept"]' "$WORK/dry.json")" = "$nkeep" ] || fail "dry run: kept is not $nkeep"
[ "$(jget 'j["removed"]' "$WORK/dry.json")" = $((20 - nkeep)) ] || fail "dry run: removed is not $((20 - nkeep))"
ok "dry run lists the expected keep/remove decision and reasons for all 20 ($nkeep kept)"
expect_rc 0 "forget --dry-run (text)" hv forget --keep-daily 3 --keep-weekly 2 --dry-run
contains "$WORK/out" "${P:0:8}  2026-10-05 02:00:00  protected" "dry run text"
contains "$WORK/out" "would keep $nkeep and remove $((20 - nkeep))" "dry run text"
ok "dry run in text says why each point is kept and what would go"

expect_rc 0 "forget --dry-run last/within" \
  hv --json forget --keep-last 2 --keep-within 3d --dry-run
same_decisions "$WORK/out" "$(expect - 2 0 0 3)" "dry run --keep-last 2 --keep-within 3d"
[ "$(repo_digest "$R")" = "$before" ] || fail "forget --dry-run changed the repository"
ok "dry run --keep-last 2 --keep-within 3d decides as expected, changes nothing"

# ------------------------------------------------ rules, per name
want_b=$(expect vm-b 0 3 2 0)
expect_rc 0 "forget --name vm-b" hv --json forget --name vm-b --keep-daily 3 --keep-weekly 2
same_decisions "$WORK/out" "$want_b" "forget --name vm-b"
[ "$(jget 'sorted(set(d["name"] for d in j["snapshots"]))' "$WORK/out")" = '["vm-b"]' ] ||
  fail "forget --name vm-b decided about other names: $(cat "$WORK/out")"
now=$(listed)
kept_b=$(kept_ids "$want_b")
want_now=$(sort <<<"$(grep ' vm-a ' "$WORK/points" | cut -d' ' -f1; echo "$kept_b")")
[ "$now" = "$want_now" ] || fail "after forget --name vm-b: listed $now, expected $want_now"
ok "forget --name vm-b keeps exactly the expected $(wc -l <<<"$kept_b") of vm-b; all 10 of vm-a untouched"
keep_points "$now"

want_all=$(expect - 0 3 2 0)
expect_rc 0 "forget per name" hv --json forget --keep-daily 3 --keep-weekly 2
same_decisions "$WORK/out" "$want_all" "forget --keep-daily 3 --keep-weekly 2"
now=$(listed)
[ "$now" = "$(kept_ids "$want_all")" ] || fail "after forget: listed $now, expected $(kept_ids "$want_all")"
grep -qx "$P" <<<"$now" || fail "protected $P was removed"
for vm in vm-a vm-b; do
  echo "$vm keeps: $(awk -v n="$vm" 'NR == FNR {k[$1]; next} $2 == n && $1 in k {printf "%s ", $3}' <(echo "$now") "$WORK/points")"
done
ok "forget --keep-daily 3 --keep-weekly 2 per name keeps exactly the expected ids; protected $P survives"
keep_points "$now"

# ------------------------------------------------ protected, by name
before=$(repo_digest "$R")
run hv forget "$P"
[ "$RC" != 0 ] || fail "forget of protected $P exited 0 (stdout: $(cat "$WORK/out"))"
[ "$RC" != 2 ] || fail "forget of protected $P: usage error? $(cat "$WORK/err")"
contains "$WORK/err" "protected" "forget of protected $P"
grep -qx "$P" <<<"$(listed)" || fail "forget removed protected $P"
[ "$(repo_digest "$R")" = "$before" ] || fail "failed forget changed the repository"
ok "forget $P (protected) fails (exit $RC) saying it is protected; it stays"
expect_rc 0 "unprotect $P" hv unprotect "$P"
[ ! -e "$R/protected/$P" ] || fail "unprotect left protected/$P"
: >"$WORK/protected"
expect_rc 0 "forget $P" hv forget "$P"
! grep -qx "$P" <<<"$(listed)" || fail "forget $P after unprotect did not remove it"
grep -v "^$P " "$WORK/points" >"$WORK/points.new" || true
mv "$WORK/points.new" "$WORK/points"
ok "after unprotect, forget $P removes it"

# ------------------------------------------------ usage errors
before=$(repo_digest "$R")
now=$(listed)
expect_rc 2 "forget without rule or id" hv forget
contains "$WORK/err" "--keep" "forget without rule or id"
expect_rc 2 "forget --dry-run without rule" hv forget --dry-run
contains "$WORK/err" "--keep" "forget --dry-run without rule"
expect_rc 2 "bad --keep-within" hv forget --keep-within 3x
contains "$WORK/err" "3x" "bad --keep-within"
expect_rc 2 "--keep-within 0d" hv forget --keep-within 0d
expect_rc 2 "--keep-within 7" hv forget --keep-within 7
expect_rc 2 "--keep-within 1d1d" hv forget --keep-within 1d1d
expect_rc 2 "negative --keep-daily" hv forget --keep-daily -1
expect_rc 2 "rules and ids" hv forget --keep-last 1 "$(head -1 <<<"$now")"
[ "$(repo_digest "$R")" = "$before" ] && [ "$(listed)" = "$now" ] ||
  fail "a usage error changed the repository"
ok "forget with no rule and no id, bad --keep-within, negative counts, rules with ids: exit 2, nothing changed"

# ------------------------------------------------ gc frees the space
packs0=$(pack_bytes "$R")
npacks0=$(find "$R/packs" -mindepth 2 -type f | wc -l)
expect_rc 0 "gc" hv --json gc
cp "$WORK/out" "$WORK/gc1.json"
packs1=$(pack_bytes "$R")
npacks1=$(find "$R/packs" -mindepth 2 -type f | wc -l)
g() { jget "j['$1']" "$WORK/gc1.json"; }
echo "gc: $(cat "$WORK/gc1.json")"
[ "$(g bytes_before)" = "$packs0" ] || fail "gc bytes_before $(g bytes_before), packs held $packs0"
[ "$(g bytes_after)" = "$packs1" ] || fail "gc bytes_after $(g bytes_after), packs hold $packs1"
[ "$(g bytes_after)" -lt "$(g bytes_before)" ] || fail "gc freed nothing"
[ "$(g bytes_freed)" = $(($(g bytes_before) - $(g bytes_after))) ] || fail "gc bytes_freed is not before - after"
[ "$packs1" -lt "$packs0" ] || fail "packs/ did not shrink ($packs0 -> $packs1)"
[ $(($(g packs_deleted) + $(g packs_repacked))) -gt 0 ] || fail "gc deleted and rewrote no pack"
[ "$(g chunks_removed)" -gt 0 ] || fail "gc removed no chunk"
[ "$(g snapshots)" = "$(wc -l <"$WORK/points")" ] || fail "gc saw $(g snapshots) points"
[ "$(g skipped)" = "[]" ] || fail "gc skipped: $(g skipped)"
ok "gc freed $(g bytes_freed) bytes: packs/ $packs0 -> $packs1 bytes, $npacks0 -> $npacks1 packs"
leftover=$(find "$R/tmp" -mindepth 1)
[ -z "$leftover" ] || fail "gc left files in tmp/: $leftover"
ok "gc leaves tmp/ empty"

n=0
while read -r id name when sha; do
  rm -f "$OUT/r"
  expect_rc 0 "restore $name $when" hv restore image "$id" --to "$OUT/r"
  [ "$(sha256sum "$OUT/r" | cut -d' ' -f1)" = "$sha" ] || fail "restore of $name $when ($id) differs"
  n=$((n + 1))
done <"$WORK/points"
[ "$n" = "$(wc -l <<<"$(listed)")" ] || fail "restored $n, listed $(listed | wc -l)"
ok "after forget + gc all $n remaining points restore byte-identical"
expect_rc 0 "check --read-data after gc" hv check --read-data
ok "check --read-data passes after gc"

before=$(repo_digest "$R")
expect_rc 0 "second gc" hv --json gc
for f in packs_deleted packs_repacked packs_written chunks_removed chunks_moved bytes_freed; do
  [ "$(jget "j['$f']" "$WORK/out")" = 0 ] || fail "second gc: $f = $(jget "j['$f']" "$WORK/out")"
done
[ "$(repo_digest "$R")" = "$before" ] || fail "second gc changed the repository"
ok "a second gc deletes, rewrites and moves nothing"

# ------------------------------------------------ an unreadable manifest
R2=$WORK/damaged
cp -a "$R" "$R2"
X=$(tail -1 "$WORK/points" | cut -d' ' -f1)
py - "$R2/snapshots/$X" <<'EOF'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[len(b) // 2] ^= 0x40
open(sys.argv[1], "wb").write(b)
EOF
damaged=$(repo_digest "$R2")
run "$HAVEN" -r "$R2" forget --keep-last 1
[ "$RC" = 1 ] || fail "forget with rules beside an unreadable manifest: exit $RC, expected 1; $(cat "$WORK/err")"
contains "$WORK/err" "$X" "forget beside unreadable manifest"
[ "$(repo_digest "$R2")" = "$damaged" ] || fail "forget removed something beside an unreadable manifest"
ok "forget --keep-last 1 refuses (exit 1, names $X) and removes nothing while a manifest is unreadable"
run "$HAVEN" -r "$R2" forget --keep-last 1 --dry-run
[ "$RC" = 1 ] || fail "forget --dry-run beside an unreadable manifest: exit $RC"
ok "forget --dry-run refuses too (exit 1)"
run "$HAVEN" -r "$R2" gc
[ "$RC" != 0 ] || fail "gc beside an unreadable manifest exited 0: $(cat "$WORK/out")"
contains "$WORK/err" "$X" "gc beside unreadable manifest"
[ "$(repo_digest "$R2")" = "$damaged" ] || fail "gc changed packs beside an unreadable manifest"
[ -z "$(find "$R2/tmp" -mindepth 1)" ] || fail "refused gc left files in tmp/: $(find "$R2/tmp" -mindepth 1)"
ok "gc refuses (exit $RC, names $X) and deletes nothing while a manifest is unreadable"
# Naming points still works (what the refusal suggests).
Y=$(head -1 "$WORK/points" | cut -d' ' -f1)
expect_rc 0 "forget by id beside an unreadable manifest" "$HAVEN" -r "$R2" forget "$Y"
[ ! -e "$R2/snapshots/$Y" ] || fail "forget $Y did not remove it"
[ -e "$R2/snapshots/$X" ] || fail "forget $Y removed the unreadable $X"
ok "forget by id still removes exactly the named point beside an unreadable one"

echo "$PASS passed, 0 failed"
