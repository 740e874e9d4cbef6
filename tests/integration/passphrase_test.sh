#!/usr/bin/env bash
# Passphrases: wrong ones change nothing, the sources of a passphrase, and
# key slots (add, list, remove, never the last one).
. "$(dirname "$0")/lib.sh"

R=$WORK/repo
hv() { "$HAVEN" -r "$R" "$@"; }
OLD=$HAVEN_PASSWORD
NEW=battery-staple-2

expect_rc 0 "init" hv init --chunk-size 64K
random_file "$WORK/img" $((3 << 20)) 1
expect_rc 0 "backup" hv --json backup image "$WORK/img" --name vm
SNAP=$(jget 'j["id"]' "$WORK/out")
ok "init and a first backup with the right passphrase"

# ------------------------------------------------------------ wrong passphrase
before=$(repo_digest "$R")
nsnap=$(ls "$R/snapshots" | wc -l)
export HAVEN_PASSWORD=not-the-passphrase
expect_rc 1 "snapshots, wrong passphrase" hv snapshots
contains "$WORK/err" "wrong passphrase" "snapshots, wrong passphrase"
ok "snapshots with a wrong passphrase: exit 1, 'wrong passphrase'"
expect_rc 1 "backup, wrong passphrase" hv backup image "$WORK/img" --name vm
contains "$WORK/err" "wrong passphrase" "backup, wrong passphrase"
ok "backup with a wrong passphrase: exit 1, 'wrong passphrase'"
expect_rc 1 "restore, wrong passphrase" hv restore image latest --to "$WORK/r-wrong"
contains "$WORK/err" "wrong passphrase" "restore, wrong passphrase"
[ ! -e "$WORK/r-wrong" ] && [ ! -e "$WORK/r-wrong.haven-partial" ] ||
  fail "restore with a wrong passphrase created its target"
ok "restore with a wrong passphrase: exit 1, 'wrong passphrase', no target"
expect_rc 1 "show, wrong passphrase" hv show latest
contains "$WORK/err" "wrong passphrase" "show, wrong passphrase"
expect_rc 1 "key list, wrong passphrase" hv key list
contains "$WORK/err" "wrong passphrase" "key list, wrong passphrase"
ok "show and key list with a wrong passphrase: exit 1"
export HAVEN_NEW_PASSWORD=sneaky
expect_rc 1 "key add, wrong passphrase" hv key add
contains "$WORK/err" "wrong passphrase" "key add, wrong passphrase"
unset HAVEN_NEW_PASSWORD
expect_rc 1 "rebuild-index, wrong passphrase" hv rebuild-index
contains "$WORK/err" "wrong passphrase" "rebuild-index, wrong passphrase"
ok "key add and rebuild-index with a wrong passphrase: exit 1"
[ "$(repo_digest "$R")" = "$before" ] || fail "a wrong passphrase changed the repository"
[ "$(ls "$R/snapshots" | wc -l)" = "$nsnap" ] || fail "snapshots/ changed"
[ "$(ls "$R/keys" | wc -l)" = 1 ] || fail "keys/ changed after a refused key add"
ok "wrong passphrases changed nothing in config, keys/, snapshots/, packs/"
export HAVEN_PASSWORD=$OLD

# ---------------------------------------------- no passphrase, no terminal
nopass() { env -u HAVEN_PASSWORD -u HAVEN_PASSWORD_FILE "$HAVEN" -r "$R" "$@" </dev/null; }
expect_rc 2 "snapshots without a passphrase" nopass snapshots
contains "$WORK/err" "HAVEN_PASSWORD" "snapshots without a passphrase"
ok "no passphrase and no terminal: exit 2, message names HAVEN_PASSWORD"
expect_rc 2 "backup without a passphrase" nopass backup image "$WORK/img" --name vm
contains "$WORK/err" "HAVEN_PASSWORD" "backup without a passphrase"
expect_rc 2 "restore without a passphrase" nopass restore image latest --to "$WORK/r-none"
[ ! -e "$WORK/r-none" ] || fail "restore without a passphrase created its target"
ok "backup/restore without a passphrase: exit 2"
expect_rc 2 "init without a passphrase" \
  env -u HAVEN_PASSWORD "$HAVEN" -r "$WORK/repo2" init </dev/null
contains "$WORK/err" "HAVEN_PASSWORD" "init without a passphrase"
[ ! -e "$WORK/repo2" ] || fail "init without a passphrase created the directory"
ok "init without a passphrase: exit 2, nothing created"
[ "$(repo_digest "$R")" = "$before" ] || fail "a missing passphrase changed the repository"

# ----------------------------------------------------------- password files
printf '%s\n' "$OLD" >"$WORK/pw"
printf '%s\n' "nope" >"$WORK/pw-wrong"
: >"$WORK/pw-empty"
expect_rc 0 "--password-file" nopass --password-file "$WORK/pw" --json snapshots
[ "$(jget '[m["id"] for m in j]' "$WORK/out")" = "[\"$SNAP\"]" ] || fail "--password-file listing"
ok "--password-file opens the repository (trailing newline ignored)"
expect_rc 0 "HAVEN_PASSWORD_FILE" \
  env -u HAVEN_PASSWORD HAVEN_PASSWORD_FILE="$WORK/pw" "$HAVEN" -r "$R" snapshots </dev/null
contains "$WORK/out" "${SNAP:0:8}" "HAVEN_PASSWORD_FILE listing"
ok "HAVEN_PASSWORD_FILE opens the repository"
expect_rc 0 "restore with --password-file" \
  nopass --password-file "$WORK/pw" restore image latest --to "$WORK/r-file"
same_file "$WORK/img" "$WORK/r-file" "restore with --password-file"
ok "restore with --password-file is byte-identical"
expect_rc 1 "wrong --password-file" nopass --password-file "$WORK/pw-wrong" snapshots
contains "$WORK/err" "wrong passphrase" "wrong --password-file"
expect_rc 2 "missing --password-file" nopass --password-file "$WORK/no-such-file" snapshots
contains "$WORK/err" "cannot read the password file" "missing --password-file"
expect_rc 2 "empty --password-file" nopass --password-file "$WORK/pw-empty" snapshots
contains "$WORK/err" "is empty" "empty --password-file"
ok "password file: wrong -> 1, missing -> 2, empty -> 2"

# ------------------------------------------------------------------ key slots
expect_rc 0 "key list --json" hv --json key list
[ "$(jget 'len(j)' "$WORK/out")" = 1 ] || fail "a new repository should have 1 key slot"
OLDSLOT=$(jget '[s["slot"] for s in j if s["current"]][0]' "$WORK/out")
expect_rc 2 "key add without a new passphrase" env -u HAVEN_NEW_PASSWORD "$HAVEN" -r "$R" key add </dev/null
contains "$WORK/err" "HAVEN_NEW_PASSWORD" "key add without a new passphrase"
ok "key add without a new passphrase: exit 2, names HAVEN_NEW_PASSWORD"
expect_rc 0 "key add" env HAVEN_NEW_PASSWORD="$NEW" "$HAVEN" -r "$R" --json key add
NEWSLOT=$(jget 'j["slot"]' "$WORK/out")
[ "$NEWSLOT" != "$OLDSLOT" ] || fail "key add returned the old slot"
ok "key add with HAVEN_NEW_PASSWORD: new slot $NEWSLOT"
expect_rc 0 "new passphrase opens" env HAVEN_PASSWORD="$NEW" "$HAVEN" -r "$R" --json key list
[ "$(jget 'len(j)' "$WORK/out")" = 2 ] || fail "key list --json: $(cat "$WORK/out")"
[ "$(jget '[s["slot"] for s in j if s["current"]]' "$WORK/out")" = "[\"$NEWSLOT\"]" ] ||
  fail "key list with the new passphrase: current should be $NEWSLOT: $(cat "$WORK/out")"
[ "$(jget 'sorted(s["slot"] for s in j)' "$WORK/out")" = \
  "$(jget 'sorted(j)' <<<"[\"$OLDSLOT\", \"$NEWSLOT\"]")" ] || fail "key list slots"
ok "new passphrase opens; key list --json shows 2 slots, current = new"
expect_rc 0 "old passphrase still opens" hv snapshots
ok "old passphrase still opens before its removal"

export HAVEN_PASSWORD=$NEW
expect_rc 1 "key remove of an unknown slot" hv key remove 0123456789abcdef
contains "$WORK/err" "no key slot" "key remove of an unknown slot"
ok "key remove of an unknown slot: exit 1"
expect_rc 0 "key remove old slot" hv key remove "$OLDSLOT"
contains "$WORK/out" "removed key slot $OLDSLOT" "key remove message"
expect_rc 1 "old passphrase after removal" env HAVEN_PASSWORD="$OLD" "$HAVEN" -r "$R" snapshots
contains "$WORK/err" "wrong passphrase" "old passphrase after removal"
ok "after key remove of the old slot the old passphrase fails"
expect_rc 0 "key list after remove" hv --json key list
[ "$(jget '[s["slot"] for s in j]' "$WORK/out")" = "[\"$NEWSLOT\"]" ] || fail "slots after remove"
expect_rc 1 "removing the last slot" hv key remove "$NEWSLOT"
contains "$WORK/err" "last key slot" "removing the last slot"
[ -f "$R/keys/$NEWSLOT" ] || fail "the last key slot file is gone"
expect_rc 0 "new passphrase after refused removal" hv --json key list
ok "removing the last slot is refused (exit 1) and it still opens"
expect_rc 0 "restore with the new passphrase" hv restore image "$SNAP" --to "$WORK/r-new"
same_file "$WORK/img" "$WORK/r-new" "restore with the new passphrase"
expect_rc 0 "backup with the new passphrase" hv backup image "$WORK/img" --name vm
ok "data written under the old passphrase restores with the new one; backups work"

echo "$PASS passed, 0 failed"
