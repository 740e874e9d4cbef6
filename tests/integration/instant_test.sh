#!/usr/bin/env bash
# Instant recovery and verified restores (issue 21) on a real guest: the tiny guest of
# scripts/make-qga-guest.sh (Debian kernel, busybox, qemu-ga, booted
# directly) whose vda is ext4 made from a copy of this host's /etc, grown to
# 2 GiB; its init mounts vda on /data and prints "haven-guest: ready ...
# /data mounted" on the serial console. The VM is backed up, then lost
# (destroyed), then:
# (a) `restore vm POINT --instant` reaches the guest's ready line with /data
#     mounted in under 60 s, and haven-nbd fetched far fewer bytes than the
#     disk holds (stats.json);
# (b) with the repository's pack bytes gone, a read of a part of the disk the
#     guest never read fails in the guest (QEMU logs the I/O error, the
#     server logs it and counts it); it does not return other bytes;
# (c) `--instant --finish` copies onto local storage while the VM runs: the
#     VM keeps running, its definition names the local file, the server and
#     the instant folder are gone, and the local disk equals the point byte
#     for byte except where the guest wrote (the overlay's clusters), and
#     holds a write made before the finish;
# (d) `--instant --discard` on a second instant VM leaves nothing behind;
#     --finish on a VM that does not run from a point, or without --instant,
#     is refused and changes nothing.
. "$(dirname "$0")/libvirt_lib.sh" rsync mkfs.ext4
"$SRC/scripts/make-qga-guest.sh" "$WORK/guest-probe" 2>"$WORK/guest.err" ||
  skip "the test guest cannot be built: $(cat "$WORK/guest.err")"

T=hvinst-$$
NET=$T-net
VM=$T-vm
I1=$T-i1
I2=$T-i2
chmod 711 "$WORK"
cleanup() {
  set +e
  haven_cleanup_vm "$VM" "$I1" "$I2"
  haven_cleanup_network "$NET"
  for d in "$WORK"/store/.haven-instant-*; do
    [ -f "$d/nbd.pid" ] && kill "$(cat "$d/nbd.pid")" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

R=$WORK/repo
PWF=$WORK/passphrase
echo "instant-test-passphrase" >"$PWF"
unset HAVEN_PASSWORD
VMDIR=$WORK/vms
STORE=$WORK/store
mkdir -p "$VMDIR" "$STORE"
chmod 711 "$STORE"
hv() { "$HAVEN" -r "$R" --password-file "$PWF" "$@"; }
vsh() { virsh -q -c qemu:///system "$@"; }
nbd_running() { pgrep -f "haven-nbd .*$1/nbd.sock" >/dev/null; }

expect_rc 0 "init" hv init
haven_make_network "$NET" "hvin$$" || fail "could not create network $NET"
haven_make_qga_vm "$VM" "$VMDIR" "$NET" 1 2>"$WORK/make.err" ||
  fail "could not create VM $VM: $(cat "$WORK/make.err")"
[ -s "$WORK/make.err" ] && echo "note: $(cat "$WORK/make.err")"
CONSOLE=$VMDIR/$VM-console.log
for _ in $(seq 1 120); do grep -q "haven-guest: ready" "$CONSOLE" 2>/dev/null && break; sleep 1; done
contains "$CONSOLE" "/data mounted" "console of $VM"
vsh blockresize "$VM" vda 2G >/dev/null || fail "blockresize"
expect_rc 0 "backup vm" hv backup vm "$VM"
POINT=$(hv --json snapshots | jget 'j[0]["id"]') || fail "no point listed"
# The point's disk, for the byte comparisons.
expect_rc 0 "restore image" hv restore image "$POINT" --disk vda --to "$WORK/point.raw"
DISK_BYTES=$(stat -c %s "$WORK/point.raw")
[ "$DISK_BYTES" = $((2 << 30)) ] || fail "the point's vda is $DISK_BYTES bytes, not 2 GiB"
# A second point of the same VM whose disk does not mount: the ext4
# superblock zeroed while the VM is shut off (backed up offline).
vsh destroy "$VM" >/dev/null
qemu-io -f qcow2 -c "write -z 1024 1024" "$VMDIR/$VM-vda.qcow2" >/dev/null || fail "qemu-io"
expect_rc 0 "backup vm (unbootable)" hv backup vm "$VM"
BAD=$(hv --json snapshots | jget "[p['id'] for p in j if p['id'] != '$POINT'][0]") || fail "no second point"
# The host is lost: the VM and its console log go.
haven_cleanup_vm "$VM"
rm -f "$CONSOLE"
ok "point $POINT of $VM (2 GiB vda, ext4 of /etc) backed up; the VM is gone"

# ------------------------------------------------------------ (a) boot
start=$(date +%s.%N)
expect_rc 0 "restore vm --instant" hv restore vm "$POINT" --instant --name "$I1" \
  --new-identity --storage-dir "$STORE"
ID=$STORE/.haven-instant-$I1
[ "$(vsh domstate "$I1")" = running ] || fail "$I1 is not running"
for _ in $(seq 1 600); do grep -q "haven-guest: ready" "$CONSOLE" 2>/dev/null && break; sleep 0.1; done
boot=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
contains "$CONSOLE" "/data mounted" "console of $I1"
awk -v b="$boot" 'BEGIN { exit !(b < 60) }' || fail "ready line after $boot s"
vsh domblklist "$I1" | grep -q "vda *$ID/vda.qcow2" || fail "$I1 does not run on the overlay: $(vsh domblklist "$I1")"
nbd_running "$ID" || fail "no haven-nbd serves $ID"
[ "$(stat -c %a "$ID")" = 711 ] || fail "instant folder mode $(stat -c %a "$ID")"
[ "$(stat -c %a "$ID/nbd.sock")" = 660 ] || fail "socket mode $(stat -c %a "$ID/nbd.sock")"
sleep 1.2  # the stats file is rewritten at most once a second
fetched=$(jget 'j["chunk_bytes_fetched"]' "$ID/stats.json")
[ "$fetched" -gt 0 ] || fail "the server fetched nothing: $(cat "$ID/stats.json")"
[ $((fetched * 20)) -lt "$DISK_BYTES" ] || fail "fetched $fetched bytes of $DISK_BYTES"
ok "(a) instant boot: ready line with /data mounted $boot s after the command; the server fetched $fetched bytes of chunks for a $DISK_BYTES-byte disk ($(py -c "print(round($fetched * 100 / $DISK_BYTES, 2))")%)"

# ------------------------------------------------------------ (b) lost repository
# Data chunks of the point, 64 KiB each, that are not zeros: a read there
# needs the repository (holes do not).
py - "$WORK/point.raw" >"$WORK/data-chunks" <<'EOF'
import sys
f = open(sys.argv[1], "rb")
i = 0
while True:
    b = f.read(65536)
    if not b:
        break
    if b.count(0) != len(b):
        print(i * 65536)
    i += 1
EOF
[ "$(wc -l <"$WORK/data-chunks")" -gt 20 ] || fail "too few data chunks in the point"
# The repository's storage loses the packs' bytes (each pack is emptied in
# place; the server's open descriptors see it), as a failing disk would.
mkdir -p "$WORK/saved-packs"
find "$R/packs" -type f -name '*' | while read -r p; do
  cp "$p" "$WORK/saved-packs/$(basename "$p")"
  truncate -s 0 "$p"
done
QLOG=/var/log/libvirt/qemu/$I1.log
before=$(stat -c %s "$QLOG")
qdev=$(_hv_disk_qdev "$I1" vda) || fail "no qdev for vda"
# The last 8 data chunks (the guest mounted the file system; file data
# near the end of the copy of /etc it never read).
for off in $(tail -8 "$WORK/data-chunks"); do
  vsh qemu-monitor-command "$I1" --hmp "qemu-io -d /machine/peripheral/$qdev/virtio-backend \"read $off 65536\"" >/dev/null
done
sleep 1.2
find "$R/packs" -type f | while read -r p; do
  cat "$WORK/saved-packs/$(basename "$p")" >"$p"  # the same inode again
done
tail -c +$((before + 1)) "$QLOG" | grep -q "read failed: Input/output error" ||
  fail "no failed read in $QLOG: $(tail -c +$((before + 1)) "$QLOG" | tail -5)"
errors=$(jget 'j["read_errors"]' "$ID/stats.json")
[ "$errors" -gt 0 ] || fail "the server counted no failed read: $(cat "$ID/stats.json")"
contains "$ID/nbd.log" "answered EIO" "haven-nbd's log"
[ "$(vsh domstate "$I1")" = running ] || fail "$I1 stopped after the failed reads"
ok "(b) with the packs' bytes gone, reads of unread parts fail in the guest (EIO; $errors counted, logged in nbd.log); the VM keeps running"

# ------------------------------------------------------------ (c) finish
# A write before the finish (the guest's, through the overlay), then the
# disk as the VM sees it.
haven_guest_write "$I1" vda 0xcd 1536M 1M || fail "guest write"
# The overlay's metadata on disk, for qemu-img map beside the running VM.
vsh qemu-monitor-command "$I1" --hmp "qemu-io -d /machine/peripheral/$qdev/virtio-backend \"flush\"" >/dev/null
qemu-img map -U --output=json "$ID/vda.qcow2" >"$WORK/overlay-map.json" || fail "qemu-img map"
FINAL=$STORE/$I1-vda.qcow2
[ ! -e "$FINAL" ] || fail "$FINAL exists before the finish"
expect_rc 0 "restore vm --instant --finish" hv restore vm --instant --finish "$I1"
contains "$WORK/out" "runs from local storage now" "finish output"
[ "$(vsh domstate "$I1")" = running ] || fail "$I1 is not running after the finish"
vsh domblklist "$I1" | grep -q "vda *$FINAL" || fail "$I1 runs from $(vsh domblklist "$I1")"
vsh dumpxml --inactive "$I1" | grep -q "<source file='$FINAL'/>" || fail "the definition does not name $FINAL"
vsh dumpxml --inactive "$I1" | grep -q "nbd" && fail "the definition still names NBD"
[ ! -e "$ID" ] || fail "$ID is still there after the finish"
nbd_running "$ID" && fail "haven-nbd still runs after the finish"
haven_disk_copy "$I1" "$FINAL" qcow2 "$WORK/final.raw" || fail "copying $FINAL"
py - "$WORK/point.raw" "$WORK/final.raw" "$WORK/overlay-map.json" <<'EOF' || fail "the finished disk differs"
import json, sys
point, final = open(sys.argv[1], "rb"), open(sys.argv[2], "rb")
written = [(e["start"], e["start"] + e["length"]) for e in json.load(open(sys.argv[3]))
           if e["data"] and e["depth"] == 0]
def in_written(a, b):
    return any(s < b and a < e for s, e in written)
size = 1 << 31
step = 1 << 20
diff = 0
for off in range(0, size, step):
    p, f = point.read(step), final.read(step)
    if p != f and not in_written(off, off + step):
        sys.exit("differs at %d outside the guest's writes" % off)
final.seek(1536 << 20)
if final.read(1 << 20) != b"\xcd" * (1 << 20):
    sys.exit("the write before the finish is not on the local disk")
print("same outside %d written extents" % len(written))
EOF
ok "(c) --finish: $I1 still runs, now on $FINAL (definition too); server and $ID gone; the disk equals the point except the guest's writes, which it holds"

# ------------------------------------------------------------ (d) discard, refusals
expect_rc 1 "--finish of a VM that does not run from a point" hv restore vm --instant --finish "$I1"
contains "$WORK/err" "does not run from a recovery point" "finish of a finished VM"
[ "$(vsh domstate "$I1")" = running ] || fail "$I1 changed"
expect_rc 2 "--finish without --instant" hv restore vm --finish "$I1"
contains "$WORK/err" "goes with --instant" "--finish alone"
# The finished VM goes (its console log file is the next one's).
haven_cleanup_vm "$I1"
expect_rc 0 "second instant restore" hv restore vm "$POINT" --instant --name "$I2" \
  --new-identity --storage-dir "$STORE"
ID2=$STORE/.haven-instant-$I2
nbd_running "$ID2" || fail "no server for $I2"
expect_rc 0 "--instant --discard" hv restore vm --instant --discard "$I2"
vsh dominfo "$I2" >/dev/null 2>&1 && fail "$I2 is still defined"
[ ! -e "$ID2" ] || fail "$ID2 is still there"
nbd_running "$ID2" && fail "haven-nbd of $I2 still runs"
[ ! -e "$STORE/$I2-vda.qcow2" ] || fail "discard made a disk file"
ok "(d) --discard leaves no domain, folder or server; --finish of a normal VM and --finish alone are refused"

# ------------------------------------------------------------ (e) verify-restore
left_behind() {
  vsh list --all --name | grep -q '^haven-verify-' && fail "a haven-verify domain is left: $(vsh list --all --name)"
  vsh net-list --all --name | grep -q '^haven-verify-' && fail "a haven-verify network is left"
  ls -A "$STORE" | grep -q '^\.haven-\(verify\|instant\)-' && fail "left in $STORE: $(ls -A "$STORE")"
  pgrep -f "haven-nbd .*$STORE/" >/dev/null && fail "a haven-nbd still serves from $STORE"
  return 0
}
expect_rc 0 "verify-restore (good point)" hv verify-restore "$VM" "$POINT" \
  --check-console "/data mounted" --timeout 90 --storage-dir "$STORE" --screenshot "$WORK/shot.png"
contains "$WORK/out" "verify-restore PASSED" "verify-restore output"
[ "$(head -c 8 "$WORK/shot.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "the screenshot is not a PNG"
left_behind
expect_rc 0 "show the good point" hv show "$POINT"
contains "$WORK/out" "verified     PASSED" "show"
expect_rc 0 "show --json" hv --json show "$POINT"
[ "$(jget 'j["verification"]["passed"], j["verification"]["screenshot"]' "$WORK/out")" = "(True, 'image/png')" ] ||
  fail "show --json verification: $(head -c 600 "$WORK/out")"
ok "(e) verify-restore passes on the good point (console line after $(jget 'round(j["verification"]["boot_seconds"], 1)' "$WORK/out") s, PNG screenshot), stored with the point and shown; nothing left behind"

expect_rc 1 "verify-restore (unbootable point)" hv verify-restore "$VM" "$BAD" \
  --check-console "/data mounted" --timeout 30 --storage-dir "$STORE"
contains "$WORK/out" "verify-restore FAILED" "verify-restore output"
contains "$WORK/out" "no serial console line contained '/data mounted' within 30.0 s" "the reason"
contains "$WORK/out" "/data not mounted" "the console's last line in the reason"
left_behind
expect_rc 0 "show the bad point" hv show "$BAD"
contains "$WORK/out" "verified     FAILED" "show of the bad point"
expect_rc 2 "verify-restore of a point of another VM" hv verify-restore other-vm "$POINT" --storage-dir "$STORE"
contains "$WORK/err" "not of other-vm" "another VM's point"
expect_rc 2 "bad --check-console" hv verify-restore "$VM" "$POINT" --check-console "$(printf 'a\tb')" --storage-dir "$STORE"
contains "$WORK/err" "printable text of at most 256 bytes" "bad console text"
left_behind
ok "(e) verify-restore fails on the point whose disk does not mount, with the reason (the console's last line); refusals for another VM's point and a bad pattern"

# ------------------------------------------------------------ (f) as a havend job
STATE=$WORK/state
. "$(dirname "$0")/havend_lib.sh"
havend_tokens inst
havend_admin_password "$WORK/admin.pw"
havend_start havend --repository "main=$R" --password-file "$PWF" \
  --console-dir "$SRC/appliance/console"
trap 'havend_stop havend >/dev/null 2>&1; cleanup' EXIT
CURL=(curl -sS --max-time 20 --cacert "$STATE/cert.pem" -H "@$WORK/token.operator")
# verify_job BODY: queues a verify job on repository main, waits for its end,
# and leaves the job's JSON in $WORK/job.json.
verify_job() {
  "${CURL[@]}" -o "$WORK/resp" -H 'content-type: application/json' \
    --data-binary "$1" "$URL/api/v1/repositories/main/verify" >/dev/null
  local id
  id=$(jget 'j["job"]' "$WORK/resp") || fail "verify job not queued: $(cat "$WORK/resp")"
  for _ in $(seq 1 600); do
    "${CURL[@]}" -o "$WORK/job.json" "$URL/api/v1/jobs/$id"
    case $(jget 'j["state"]' "$WORK/job.json") in queued | running) sleep 0.5 ;; *) return 0 ;; esac
  done
  fail "verify job $id did not end: $(cat "$WORK/job.json")"
}
"${CURL[@]}" -o "$WORK/resp" -w '%{http_code}' -H 'content-type: application/json' \
  --data-binary '{"all": true, "vms": ["x"]}' "$URL/api/v1/repositories/main/verify" >"$WORK/code"
[ "$(cat "$WORK/code")" = 400 ] || fail "verify job with all and vms: HTTP $(cat "$WORK/code")"
# The VM's latest point is the one that does not mount: the job fails, and
# says why.
verify_job '{"vms": ["'"$VM"'"], "console": "/data mounted", "timeout": 30}'
[ "$(jget 'j["state"]' "$WORK/job.json")" = failed ] || fail "verify job: $(cat "$WORK/job.json")"
contains "$WORK/job.json" "no serial console line contained" "the failed job's error"
left_behind
# Without it, the latest point is the good one: the job succeeds.
expect_rc 0 "forget the unbootable point" hv forget "$BAD"
verify_job '{"vms": ["'"$VM"'"], "console": "/data mounted", "timeout": 90}'
[ "$(jget 'j["state"], j["items"][0]["outcome"]' "$WORK/job.json")" = "('succeeded', 'ok')" ] ||
  fail "verify job: $(cat "$WORK/job.json")"
left_behind
expect_rc 0 "show after the job" hv --json show "$POINT"
[ "$(jget 'j["verification"]["passed"]' "$WORK/out")" = true ] || fail "the job's result is not stored: $(grep -A3 verification "$WORK/out")"
# The API and the console read it: the points list, the point, its screen.
"${CURL[@]}" -o "$WORK/points.json" "$URL/api/v1/points?vm=$VM"
[ "$(jget "[p['verified']['passed'] for p in j['points'] if p['id'] == '$POINT']" "$WORK/points.json")" = "[true]" ] ||
  fail "the points list does not say the point was verified: $(head -c 800 "$WORK/points.json")"
"${CURL[@]}" -o "$WORK/point.json" "$URL/api/v1/points/main/$POINT"
[ "$(jget 'j["verified"]["passed"], "screenshot_png_base64" in j["verified"]' "$WORK/point.json")" = "(True, False)" ] ||
  fail "the point's verification: $(head -c 800 "$WORK/point.json")"
code=$("${CURL[@]}" -o "$WORK/api-shot.png" -w '%{http_code} %{content_type}' "$URL/api/v1/points/main/$POINT/screenshot")
[ "$code" = "200 image/png" ] || fail "screenshot route: $code"
[ "$(head -c 8 "$WORK/api-shot.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "the API's screenshot is not a PNG"
# What the admin sees: the point's page in a real headless chromium says
# it booted and shows the screen (the image loads); the page is kept.
havend_need_browser fail
SHOTS=${HAVEN_BUILD_DIR:-$WORK}/test-artifacts/instant
mkdir -p "$SHOTS"
"$BROWSER_PY" - "$(dirname "$0")" "$URL" "$WORK/admin.pw" "$POINT" "$SHOTS" <<'EOF2' || fail "the console's point page"
import sys, time
sys.path.insert(0, sys.argv[1])
import console_lib
from selenium.webdriver.common.by import By
url, pw, point, shots = sys.argv[2], console_lib.read_password(sys.argv[3]), sys.argv[4], sys.argv[5]
d = console_lib.chrome()
try:
    console_lib.login(d, url, "admin", pw)
    d.get(url + "/#/point?repo=main&id=" + point)
    for _ in range(100):
        v = d.find_elements(By.CSS_SELECTOR, "#point-verified")
        img = d.find_elements(By.CSS_SELECTOR, "#point-verification img")
        if v and img and d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img[0]):
            break
        time.sleep(0.1)
    else:
        d.save_screenshot(shots + "/point-failed.png")
        sys.exit("no verified badge or no screenshot image on the point page")
    text = v[0].text
    assert "booted" in text, text
    width = d.execute_script("return arguments[0].naturalWidth", img[0])
    assert width == 720, width
    d.save_screenshot(shots + "/point.png")
    d.get(url + "/#/points")
    time.sleep(1.5)
    d.save_screenshot(shots + "/points.png")
    # Before the login the console asks /api/v1/me and gets 401: expected.
    bad = console_lib.errors(console_lib.browser_log(d, quiet=True),
                             lambda e: "/api/v1/me" in e["message"] and "401" in e["message"])
    assert not bad, bad
    print("console: " + text.replace("\n", " / "))
finally:
    d.quit()
EOF2
havend_stop havend
trap cleanup EXIT
ok "(f) havend's verify job: fails naming why on the unbootable latest point, succeeds on the good one and stores the result, which the points list, the point and its screenshot route serve, and the console's point page shows (badge, screen); a bad request is 400"

echo "PASS: $PASS checks"
