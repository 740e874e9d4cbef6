#!/usr/bin/env bash
# Consistency is recorded truthfully (issue 24, point 5), on a real guest: the
# tiny guest of scripts/make-qga-guest.sh (Debian kernel, busybox, the real
# qemu-ga), booted directly, with vda an ext4 file system made from a copy of
# this host's /etc that the guest mounts on /data and writes to every second.
# One VM serves every case, in this order:
# (a) /data mounted, agent answering: the point is application-consistent and
#     its reason names the number of file systems frozen; the restored vda
#     has no journal recovery pending (needs_recovery clear: a frozen ext4
#     flushed its journal), e2fsck -fn finds nothing, its files equal the
#     source copy.
# (b) /data unmounted in the guest (guest-exec): crash-consistent, and the
#     reason says why in terms of file systems.
# (c) control: /data mounted again, qemu-ga killed: crash-consistent, and the
#     restored ext4 HAS needs_recovery set, so (a)'s check means something.
# (d) libvirtd logged no scratch / security label / cgroup error for the
#     backup jobs of this VM.
# Skips (exit 0) only when libvirtd or the guest's parts are missing here;
# with CI or HAVEN_REQUIRE_LIBVIRT=1 in the environment that is a failure.
. "$(dirname "$0")/libvirt_lib.sh" rsync mkfs.ext4 dumpe2fs e2fsck debugfs
"$SRC/scripts/make-qga-guest.sh" "$WORK/guest-probe" 2>"$WORK/guest.err" ||
  skip "the test guest cannot be built: $(cat "$WORK/guest.err")"

# ---------------------------------------------------------------- setup
T=hvqga-$$
NET=$T-net
VM=$T-vm
chmod 711 "$WORK"
WATCH=
cleanup() {
  set +e
  [ -n "$WATCH" ] && kill "$WATCH" 2>/dev/null
  haven_cleanup_vm "$VM"
  haven_cleanup_network "$NET"
  rm -rf "$WORK"
}
trap cleanup EXIT

R=$WORK/repo
PWF=$WORK/passphrase
echo "consistency-test-passphrase" >"$PWF"
unset HAVEN_PASSWORD
VMDIR=$WORK/vms
mkdir -p "$VMDIR"
hv() { "$HAVEN" -r "$R" --password-file "$PWF" "$@"; }
vsh() { virsh -q -c qemu:///system "$@"; }
LIBVIRTD_LOG_START=$(stat -c %s /var/log/libvirt/libvirtd.log 2>/dev/null || echo -1)

expect_rc 0 "init" hv init
haven_make_network "$NET" "hvqga$$" || fail "could not create network $NET"
haven_make_qga_vm "$VM" "$VMDIR" "$NET" 1 2>"$WORK/make.err" ||
  fail "could not create VM $VM: $(cat "$WORK/make.err")"
[ -s "$WORK/make.err" ] && echo "note: $(cat "$WORK/make.err")"
WAITED=$(haven_wait_guest_agent "$VM" 120) || fail "no guest agent in $VM"
CONSOLE=$VMDIR/$VM-console.log ETC=$VMDIR/$VM-etc
contains "$CONSOLE" "haven-guest: ready" "console of $VM"
contains "$CONSOLE" "/data mounted" "console of $VM"
# The job folders of this VM's backups, for (d): other backups may run on
# this host meanwhile.
haven_watch_jobs "$WORK/jobs" "$VM" &
WATCH=$!
ok "$VM ($(vsh dumpxml "$VM" | sed -n "s/^<domain type='\([a-z]*\)'.*/\1/p"), kernel $(cat "$VMDIR/$VM-guest/kernel-version")): guest-ping answered ${WAITED} s after start; /data mounted"

# ---------------------------------------------------------------- helpers
# gexec PATH ARG...: runs a command in the guest through the agent and waits
# for it to exit 0.
gexec() {
  local path=$1 args pid st i
  shift
  args=$(py -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@")
  pid=$(vsh qemu-agent-command "$VM" \
    "{\"execute\":\"guest-exec\",\"arguments\":{\"path\":\"$path\",\"arg\":$args}}" | jget 'j["return"]["pid"]') ||
    fail "guest-exec $path $*"
  for i in $(seq 1 100); do
    st=$(vsh qemu-agent-command "$VM" "{\"execute\":\"guest-exec-status\",\"arguments\":{\"pid\":$pid}}")
    if [ "$(jget 'j["return"]["exited"]' <<<"$st")" = true ]; then
      [ "$(jget 'j["return"].get("exitcode")' <<<"$st")" = 0 ] || fail "guest-exec $path $*: $st"
      return 0
    fi
    sleep 0.1
  done
  fail "guest-exec $path $* did not finish in 10 s"
}
# guest_mounts: the guest's file systems, as the agent reports them.
guest_mounts() {
  vsh qemu-agent-command "$VM" '{"execute":"guest-get-fsinfo"}' |
    jget '" ".join(f["mountpoint"] for f in j["return"])'
}
# backup TAG: haven --json backup vm $VM; the JSON in $WORK/TAG.json, the
# point's consistency and reason in CONS and REASON, its id in SNAP.
# The job is held 0.3 s after it began (test hook), so haven_watch_jobs,
# polling every 50 ms, sees its folder however fast the disk is read.
backup() {
  HAVEN_FAULT_VM_BACKUP_DELAY=0.3 run hv --json backup vm "$VM"
  cp "$WORK/out" "$WORK/$1.json"
  [ "$RC" = 0 ] || fail "$1: backup vm $VM: exit $RC: $(head -c 2000 "$WORK/out") $(head -c 2000 "$WORK/err")"
  local v="next(v for v in j['vms'] if v['name'] == '$VM')"
  [ "$(jget "$v['ok']" "$WORK/$1.json")" = true ] || fail "$1: $VM not ok: $(head -c 2000 "$WORK/out")"
  SNAP=$(jget "$v['snapshot']" "$WORK/$1.json")
  CONS=$(jget "$v['consistency']" "$WORK/$1.json")
  REASON=$(jget "$v['consistency_reason']" "$WORK/$1.json")
  [ -n "$REASON" ] || fail "$1: no consistency_reason"
}
# restore_vda TAG: the point's vda as a raw file $WORK/TAG-vda.raw.
restore_vda() {
  expect_rc 0 "$1: restore image --disk vda" hv restore image "$SNAP" --disk vda --to "$WORK/$1-vda.raw"
}
# features TAG: the ext4 features line of the restored vda.
features() {
  dumpe2fs -h "$WORK/$1-vda.raw" 2>/dev/null | sed -n 's/^Filesystem features: *//p'
}
# same_etc TAG: the restored file system holds the source copy of /etc
# (besides lost+found and the guest's own .haven-guest/), byte for byte.
same_etc() {
  rm -rf "$WORK/$1-root" && mkdir "$WORK/$1-root"
  debugfs -R "rdump / $WORK/$1-root" "$WORK/$1-vda.raw" >/dev/null 2>"$WORK/rdump.err" ||
    fail "$1: debugfs rdump: $(cat "$WORK/rdump.err")"
  diff -r --no-dereference -x lost+found -x .haven-guest "$ETC" "$WORK/$1-root" >"$WORK/$1.diff" 2>&1 ||
    fail "$1: the restored file system differs from the copy of /etc: $(head -c 2000 "$WORK/$1.diff")"
  [ -s "$WORK/$1-root/.haven-guest/heartbeat" ] ||
    fail "$1: no heartbeat of the guest's writer in the restored file system"
}

# ------------------------------------------- (a) mounted, agent answering
[ "$(guest_mounts)" = /data ] || fail "(a) the agent reports mounts '$(guest_mounts)', expected /data"
sleep 2   # the writer has rewritten its file: the journal has work
backup a
[ "$CONS" = application-consistent ] ||
  fail "(a) /data mounted, agent answering: consistency '$CONS' ($REASON), expected application-consistent"
grep -qE '(^|[^0-9])1([^0-9]|$)' <<<"$REASON" && grep -q 'file system' <<<"$REASON" ||
  fail "(a) the reason does not name the 1 file system frozen: '$REASON'"
restore_vda a
FA=$(features a)
[ -n "$FA" ] || fail "(a) dumpe2fs -h of the restored vda shows no features: $(dumpe2fs -h "$WORK/a-vda.raw" 2>&1 | head -5)"
grep -qw has_journal <<<"$FA" || fail "(a) the restored ext4 has no journal ($FA): the check below would prove nothing"
if grep -qw needs_recovery <<<"$FA"; then
  fail "(a) the restored ext4 of an application-consistent point needs journal recovery: $FA"
fi
run e2fsck -fn "$WORK/a-vda.raw"
[ "$RC" = 0 ] || fail "(a) e2fsck -fn of the restored vda: exit $RC: $(head -c 2000 "$WORK/out")"
same_etc a
ok "(a) application-consistent ($REASON); restored ext4: no needs_recovery, e2fsck -fn clean, $(find "$ETC" | wc -l) entries of /etc identical"

# ------------------------------------------- (b) nothing mounted
gexec /bin/haven-data umount
[ -z "$(guest_mounts)" ] || fail "(b) /data still mounted in the guest: $(guest_mounts)"
backup b
[ "$CONS" = crash-consistent ] ||
  fail "(b) no file system mounted: consistency '$CONS' ($REASON), expected crash-consistent"
grep -q 'file system' <<<"$REASON" || fail "(b) the reason does not speak of file systems: '$REASON'"
if grep -qi 'application-consistent' <<<"$REASON"; then fail "(b) the reason says application-consistent: '$REASON'"; fi
ok "(b) /data unmounted: crash-consistent ($REASON)"

# ------------------------------------------- (c) mounted, agent gone
gexec /bin/haven-data mount
[ "$(guest_mounts)" = /data ] || fail "(c) /data not mounted again: '$(guest_mounts)'"
sleep 2
# The agent cannot report the exit of the command that kills it: start it
# and wait until the agent stops answering.
vsh qemu-agent-command "$VM" \
  '{"execute":"guest-exec","arguments":{"path":"/bin/sh","arg":["-c","kill $(cat /run/qga/pid)"]}}' >/dev/null ||
  fail "(c) guest-exec kill qemu-ga"
for i in $(seq 1 50); do
  vsh qemu-agent-command "$VM" --timeout 1 '{"execute":"guest-ping"}' >/dev/null 2>&1 || break
  sleep 0.2
done
if vsh qemu-agent-command "$VM" --timeout 1 '{"execute":"guest-ping"}' >/dev/null 2>&1; then
  fail "(c) the guest agent still answers after it was killed"
fi
backup c
[ "$CONS" = crash-consistent ] ||
  fail "(c) agent killed: consistency '$CONS' ($REASON), expected crash-consistent"
grep -qi 'agent' <<<"$REASON" || fail "(c) the reason does not name the guest agent: '$REASON'"
restore_vda c
FC=$(features c)
grep -qw needs_recovery <<<"$FC" ||
  fail "(c) the restored ext4 of a crash-consistent point of a mounted file system has no needs_recovery ($FC): (a)'s check proves nothing"
same_etc c
ok "(c) agent killed: crash-consistent ($REASON); restored ext4 has needs_recovery, /etc identical"

# ------------------------------------------- (d) libvirtd's log
# Lines about the job folders of this VM's backups (seen open in its QEMU).
kill "$WATCH" 2>/dev/null; wait "$WATCH" 2>/dev/null || true
WATCH=
if [ "$LIBVIRTD_LOG_START" -ge 0 ]; then
  sort -u "$WORK/jobs" 2>/dev/null >"$WORK/jobs.u" || true
  [ "$(grep -c . "$WORK/jobs.u")" = 3 ] ||
    fail "(d) $(grep -c . "$WORK/jobs.u") job folders seen open in $VM's QEMU, expected one per backup (3): $(cat "$WORK/jobs.u")"
  tail -c +$((LIBVIRTD_LOG_START + 1)) /var/log/libvirt/libvirtd.log |
    grep -E 'scratch|Unable to restore security label|Unable to tear down cgroup' |
    grep -F -f "$WORK/jobs.u" >"$WORK/libvirtd-errors" || true
  [ ! -s "$WORK/libvirtd-errors" ] ||
    fail "(d) libvirtd logged errors about the backup jobs of $VM: $(head -c 2000 "$WORK/libvirtd-errors")"
  ok "(d) libvirtd logged no scratch / security label / cgroup error for the 3 backup jobs of $VM"
fi
echo "$PASS passed, 0 failed"
