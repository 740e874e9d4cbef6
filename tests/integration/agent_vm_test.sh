#!/usr/bin/env bash
# Host agents on a remote hypervisor (docs/agents.md, "Host agents"): havend
# in one network namespace, a host agent in another, joined by a veth pair
# this test makes and removes, over real TLS with the certificate pinned; a
# real libvirtd + QEMU VM whose disk holds an ext4 file system made with
# mkfs from a copy of /etc and /usr.
#  - the host agent backs the running VM up through the appliance (full),
#    the point checks clean on the appliance and its disk restores there
#    byte-identical to the VM's disk
#  - the appliance hands the agent (`haven agent run`) a VM backup job: it
#    is incremental (reads no more than the dirty blocks), uploads little,
#    and restores byte-identical
#  - an admin plans a restore onto the host agent (the agent plans against
#    its host) and runs the plan: the VM is defined there under a new name
#    and its disk is byte-identical to the point
#  - the console's Agents page backs the VM up on the host agent ("Back up
#    now" asks for a VM), and its restore wizard restores in Debian's headless
#    chromium (inside the appliance's namespace): target "Another host,
#    through its host agent", the agent's plan shown, run, result
#    succeeded; screenshots in $HAVEN_BUILD_DIR/test-artifacts/agent-vm
#  - a guest agent gets 403 on the host agent's point and cannot read it
#    through the restore job's routes; the host agent cannot delete it
. "$(dirname "$0")/libvirt_lib.sh" ip curl mkfs.ext4
. "$(dirname "$0")/havend_lib.sh"
havend_need curl ip mkfs.ext4 openssl
havend_need_browser fail
SHOTS=${HAVEN_BUILD_DIR:+$HAVEN_BUILD_DIR/test-artifacts/agent-vm}

R=$WORK/repo
STATE=$WORK/state
. "$(dirname "$0")/agent_lib.sh"
T=haven-av-$$
VNET=$T-net
A=$T-a    # the VM the host agent backs up
RN=$T-r   # its restore onto the host agent (API)
RW=$T-w   # and through the console's wizard
VMS=("$A" "$RN" "$RW")
RPID=
chmod 711 "$WORK"
cleanup() {
  set +e
  [ -n "$RPID" ] && { kill -9 "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null; }
  havend_kill
  haven_cleanup_vm "${VMS[@]}"
  haven_cleanup_network "$VNET"
  agent_net_down
  rm -rf "$WORK"
}
DPID=
trap cleanup EXIT
VMDIR=$WORK/vms REF=$WORK/ref OUT=$WORK/restored
mkdir -p "$VMDIR" "$REF" "$OUT"
vsh() { virsh -q -c qemu:///system "$@"; }
GRAN=65536
# job_wait ID: polls job ID until it ends; its JSON in $WORK/job.json.
job_wait() {
  local _ state
  for _ in $(seq 600); do
    "${ADMIN[@]}" -o "$WORK/job.json" "$LOCAL/api/v1/jobs/$1" || fail "GET job $1"
    state=$(jget 'j["state"]' "$WORK/job.json")
    case "$state" in queued|running) sleep 0.5 ;; *) return 0 ;; esac
  done
  fail "job $1 did not end in 300 s: $(cat "$WORK/job.json")"
}
# raw_of FILE OUT: the disk image FILE (any format) as raw bytes.
raw_of() { qemu-img convert -O raw "$1" "$2" || fail "qemu-img convert $1"; }

# ---------------------------------------------------------------- network, appliance
agent_net_up
expect_rc 0 "init" haven -r "$R" init
havend_repo_password
havend_token admin agents-admin
havend_admin_password "$WORK/adminpw" 'agent vm console password'
serve d1 --listen 0.0.0.0:0 --console-dir "$SRC/appliance/console"
ok "havend serves in $APP at $APPLIANCE; the host agent runs in $AGT"

# ---------------------------------------------------------------- a VM with real data
mkdir -p "$WORK/tree"
cp -a /etc "$WORK/tree/etc"
real_files "$WORK/tree/usr" $((48 << 20)) >/dev/null
mkfs.ext4 -q -F -d "$WORK/tree" "$WORK/base.raw" 192M || fail "mkfs.ext4 -d"
haven_make_network "$VNET" "hav$$" || fail "could not create network $VNET"
HAVEN_VM_VDA_SIZE=192M HAVEN_VM_VDB_SIZE=16M haven_make_vm "$A" "$VMDIR" "$VNET" "$WORK/base.raw" ||
  fail "could not create VM $A"
ok "VM $A runs; its vda (qcow2 over an ext4 made with mkfs from /etc and $(du -sm "$WORK/tree/usr" | cut -f1) MB of /usr) and a raw vdb"

# ---------------------------------------------------------------- enrollment
enroll_token h host
enroll h "$FP" host
[ "$RC" = 0 ] || fail "enroll h: $(cat "$WORK/err")"
enroll_token g guest
enroll g "$FP"
[ "$RC" = 0 ] || fail "enroll g: $(cat "$WORK/err")"
cred h
cred g
ok "host agent h and guest agent g enrolled with the pinned certificate"

# ---------------------------------------------------------------- full backup from the command line
expect_rc 0 "agent h backup-vm" agent h --json backup-vm "$A"
cp "$WORK/out" "$WORK/b1.json"
P1=$(jget 'j["snapshot"]' "$WORK/b1.json")
[[ $P1 =~ ^[0-9a-f]{32}$ ]] || fail "backup-vm printed no point id: $(cat "$WORK/b1.json")"
[ "$(jget '[d["mode"] for d in j["disks"] if d["name"] == "vda"][0]' "$WORK/b1.json")" = full ] ||
  fail "the first backup of vda is not full: $(cat "$WORK/b1.json")"
[ "$(jget 'j["uploaded_bytes"] > 0' "$WORK/b1.json")" = true ] || fail "the first backup uploaded nothing"
haven_disk_copy "$A" "$VMDIR/$A-vda.qcow2" qcow2 "$REF/p1-vda.raw" || fail "reference copy of vda"
expect_rc 0 "check" haven -r "$R" check
expect_rc 0 "restore image on the appliance" haven -r "$R" restore image "$P1" --disk vda --to "$OUT/p1-vda.raw"
same_file "$REF/p1-vda.raw" "$OUT/p1-vda.raw" "P1's vda restored on the appliance"
expect_rc 0 "points" haven -r "$R" --json snapshots
[ "$(jget "[p['kind'] for p in j if p['id'] == '$P1'][0]" "$WORK/out")" = vm ] || fail "P1 is not a vm point"
expect_rc 0 "config" haven -r "$R" restore config "$P1" --to "$WORK/p1-config"
contains "$WORK/p1-config/domain.xml" "<name>$A</name>" "the domain XML of P1"
[ -s "$WORK/p1-config/networks/$VNET.xml" ] || fail "P1 holds no definition of network $VNET: $(ls -R "$WORK/p1-config")"
rm -f "$OUT/p1-vda.raw"
ok "h backs up $A through the appliance (full, $(jget 'j["uploaded_bytes"]' "$WORK/b1.json") bytes uploaded): P1 checks clean, vda restores byte-identical, the domain and network XML are in it"

# ---------------------------------------------------------------- an incremental job handed by the appliance
haven_guest_write "$A" vda random:7 24M 1M || fail "guest write"
haven_guest_write "$A" vda 0x5a 100M 256K || fail "guest write"
# Started directly (not through the agent function), so $! is the agent's
# own pid and the cleanup's kill reaches it.
ip netns exec "$AGT" "$HAVEN" agent run --state-dir "$WORK/agent.h" >"$WORK/run.out" 2>"$WORK/run.log" &
RPID=$!
code=$("${ADMIN[@]}" -o "$WORK/body" -w '%{http_code}' --data "{\"vm\": \"$A\"}" "$LOCAL/api/v1/agents/h/backup")
[ "$code" = 202 ] || fail "POST /agents/h/backup: HTTP $code $(cat "$WORK/body")"
JOB=$(jget 'j["job"]' "$WORK/body")
job_wait "$JOB"
[ "$(jget 'j["state"]' "$WORK/job.json")" = succeeded ] || fail "the VM backup job: $(cat "$WORK/job.json"); agent log: $(tail -5 "$WORK/run.log")"
P2=$(jget 'j["result"]["point"]' "$WORK/job.json")
[[ $P2 =~ ^[0-9a-f]{32}$ ]] && [ "$P2" != "$P1" ] || fail "the job names no new point: $(cat "$WORK/job.json")"
mode=$(jget '[d["mode"] for d in j["result"]["stats"]["disks"] if d["name"] == "vda"][0]' "$WORK/job.json")
[ "$mode" = incremental ] || fail "the job's vda read was $mode: $(cat "$WORK/job.json")"
read=$(jget '[d["read_bytes"] for d in j["result"]["stats"]["disks"] if d["name"] == "vda"][0]' "$WORK/job.json")
bound=$(( (1 << 20) + (256 << 10) + 2 * GRAN ))
[ "$read" -gt 0 ] && [ "$read" -le "$bound" ] || fail "the incremental job read $read bytes of vda (dirty: at most $bound)"
up=$(jget 'j["result"]["stats"]["uploaded_bytes"]' "$WORK/job.json")
[ "$up" -lt $((4 << 20)) ] || fail "the incremental job uploaded $up bytes for 1.25 MiB of changes"
haven_disk_copy "$A" "$VMDIR/$A-vda.qcow2" qcow2 "$REF/p2-vda.raw" || fail "reference copy of vda"
expect_rc 0 "check" haven -r "$R" check
expect_rc 0 "restore image P2" haven -r "$R" restore image "$P2" --disk vda --to "$OUT/p2-vda.raw"
same_file "$REF/p2-vda.raw" "$OUT/p2-vda.raw" "P2's vda restored on the appliance"
rm -f "$OUT/p2-vda.raw"
ok "the appliance hands h a backup job of $A: incremental ($read bytes read, $up uploaded), checks clean, restores byte-identical"

# ---------------------------------------------------------------- isolation and immutability
code=$(AS g -o "$WORK/body" -w '%{http_code}' "$APPLIANCE/api/v1/agent/points/$P2")
[ "$code" = 403 ] || fail "g reading h's VM point: HTTP $code $(cat "$WORK/body")"
code=$(AS h -o "$WORK/body" -w '%{http_code}' -X DELETE "$APPLIANCE/api/v1/agent/points/$P2")
case "$code" in 2*) fail "h deleted its point: HTTP $code" ;; esac
expect_rc 0 "points" haven -r "$R" --json snapshots
[ "$(jget "len([p for p in j if p['id'] == '$P2'])" "$WORK/out")" = 1 ] || fail "P2 is gone"
ok "g gets 403 on h's VM point; h cannot delete it (HTTP $code) and it stays"

# ---------------------------------------------------------------- restore onto the host agent
code=$("${ADMIN[@]}" -o "$WORK/plan.json" -w '%{http_code}' --data "{\"repository\": \"main\", \"point\": \"$P2\", \"agent\": \"h\", \"name\": \"$RN\", \"new_identity\": true, \"storage_dir\": \"$OUT\"}" "$LOCAL/api/v1/restores/vm/plan")
if [ "$code" = 202 ]; then
  job_wait "$(jget 'j["job"]' "$WORK/plan.json")"
  jget 'j["result"]' "$WORK/job.json" >/dev/null || fail "the planning job: $(cat "$WORK/job.json")"
  python3 -c 'import json,sys; json.dump(json.load(open(sys.argv[1]))["result"], open(sys.argv[2], "w"))' "$WORK/job.json" "$WORK/plan.json"
  code=201
fi
[ "$code" = 201 ] || fail "plan onto h: HTTP $code $(cat "$WORK/plan.json")"
[ "$(jget 'j["conflicts"]' "$WORK/plan.json")" = 0 ] || fail "the agent's plan has conflicts: $(cat "$WORK/plan.json")"
[ "$(jget 'j["plan"]["vms"][0]["name"]' "$WORK/plan.json")" = "$RN" ] || fail "the plan restores another name: $(cat "$WORK/plan.json")"
! vsh dominfo "$RN" >/dev/null 2>&1 || fail "planning defined $RN"
PLAN=$(jget 'j["id"]' "$WORK/plan.json")
code=$("${ADMIN[@]}" -o "$WORK/body" -w '%{http_code}' --data "{\"plan\": \"$PLAN\"}" "$LOCAL/api/v1/restores/vm")
[ "$code" = 202 ] || fail "run the plan: HTTP $code $(cat "$WORK/body")"
RJOB=$(jget 'j["job"]' "$WORK/body")
job_wait "$RJOB"
[ "$(jget 'j["state"]' "$WORK/job.json")" = succeeded ] || fail "the restore job on h: $(cat "$WORK/job.json"); agent log: $(tail -5 "$WORK/run.log")"
vsh dominfo "$RN" >/dev/null 2>&1 || fail "$RN is not defined after the restore"
disk=$(vsh domblklist "$RN" --details | awk '$3 == "vda" {print $4}')
[ -n "$disk" ] && [[ $disk == "$OUT"/* ]] || fail "$RN's vda is '$disk', not under $OUT"
raw_of "$disk" "$WORK/r-vda.raw"
same_file "$REF/p2-vda.raw" "$WORK/r-vda.raw" "vda of $RN restored by the host agent"
[ "$(vsh domuuid "$RN")" != "$(vsh domuuid "$A")" ] || fail "the restored VM kept the original's UUID with new_identity"
ok "an admin plans a restore onto h (the agent planned it: 0 conflicts) and runs it: $RN is defined there, vda byte-identical to P2"
code=$(AS g -o "$WORK/body" -w '%{http_code}' -X POST --data-binary @/dev/null "$APPLIANCE/api/v1/agent/jobs/$RJOB/chunks")
[ "$code" = 403 ] || [ "$code" = 404 ] || [ "$code" = 409 ] || fail "g reading through h's restore job: HTTP $code"
code=$(AS h -o "$WORK/body" -w '%{http_code}' "$APPLIANCE/api/v1/agent/jobs/$RJOB/point")
[ "$code" = 403 ] || [ "$code" = 404 ] || [ "$code" = 409 ] || fail "h reading the point after its restore job ended: HTTP $code"
ok "the restore job's reads are refused to g, and to h once the job ended"

# ---------------------------------------------------------------- the console's wizard
mkdir -p "$OUT/wizard"
ip netns exec "$APP" env PYTHONPATH="$SRC/tests/integration" "$BROWSER_PY" - \
  "$LOCAL" "$A" "$P2" h "$RW" "$OUT/wizard" "${SHOTS:-}" >"$WORK/wizard.log" 2>&1 <<'PYEOF' ||
import os, sys, time
import console_lib
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

url, vm, point, agent, name, storage, shots = sys.argv[1:8]
d = console_lib.chrome(1280, 900)

def fail(msg):
    print("FAIL:", msg, "| page:", d.find_element(By.TAG_NAME, "body").text[-1500:])
    sys.exit(1)

def wait(what, fn, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            v = fn()
            if v:
                return v
        except Exception:
            pass
        time.sleep(0.2)
    fail("timed out waiting for " + what)

def find(sel):
    els = [e for e in d.find_elements(By.CSS_SELECTOR, sel) if e.is_displayed()]
    return els[0] if els else None

def step():
    for el in d.find_elements(By.CSS_SELECTOR, "[data-step]"):
        if el.tag_name != "li" and el.is_displayed():
            return el.get_attribute("data-step")
    return None

def shot(n):
    if shots:
        os.makedirs(shots, exist_ok=True)
        h = d.execute_script("return document.documentElement.scrollHeight")
        console_lib.set_page_size(d, 1280, min(max(h, 600), 2400))
        d.save_screenshot(os.path.join(shots, n + ".png"))
        console_lib.set_page_size(d, 1280, 900)

def next_from(s):
    console_lib.click(d, wait("#wizard-next on " + s, lambda: find("#wizard-next")))
    wait("the wizard to leave " + s, lambda: step() not in (s, None), 120)

try:
    console_lib.login(d, url, "admin", "agent vm console password")
    # The Agents page: "Back up now" on the host agent asks for a VM.
    d.get(f"{url}/#/agents")
    row = f'table#agent-table tr[data-agent="{agent}"]'
    btn = wait("Back up now on " + agent, lambda: find(row + " button.backup-agent"))
    console_lib.click(d, btn)
    field = wait("the VM field of the form", lambda: find('input[name="vm"]'))
    field.send_keys(vm)
    shot("agents-backup-vm")
    console_lib.click(d, find("button.backup-agent-start"))
    wait("the job page", lambda: "#/job?id=" in d.current_url, 30)
    wait("the VM backup job to succeed",
         lambda: find('#job-state[data-state="succeeded"]') or
         (find('#job-state[data-state="failed"]') and fail("the VM backup job failed")),
         300)
    print("vm backup from the agents page ok")
    d.get(f"{url}/#/restore/vm?vm={vm}&point={point}")
    wait("the VM step", lambda: step() == "vm")
    next_from("vm")
    wait("the point step", lambda: step() == "point")
    next_from("point")
    wait("the target step", lambda: step() == "target")
    radio = d.find_element(By.CSS_SELECTOR, "input[name=target][value=agent]")
    if not radio.is_enabled():
        fail("the host-agent target is disabled although agent h is enrolled")
    console_lib.click(d, radio if radio.is_displayed() else radio.find_element(By.XPATH, "./ancestor::label[1]"))
    wait("the agent target to be chosen", radio.is_selected, 10)
    pick = Select(wait("#target-agent", lambda: find("#target-agent")))
    if not any(o.text.startswith(agent + " ") for o in pick.options):
        fail("#target-agent does not offer " + agent)
    shot("wizard-target-agent")
    next_from("target")
    wait("the options step", lambda: step() == "options")
    for sel, val in (("#opt-name", name), ("#opt-storage", storage)):
        el = find(sel)
        el.clear()
        el.send_keys(val)
    ident = find("#opt-new-identity")
    if not ident.is_selected():
        console_lib.click(d, ident)
    next_from("options")
    wait("the agent's plan naming " + name,
         lambda: step() == "plan" and name in find("#plan-text").text, 180)
    if agent + " (host agent)" not in find("#plan-text").text:
        fail("the plan does not say it restores onto host agent " + agent)
    shot("wizard-plan-agent")
    run = wait("#wizard-run enabled",
               lambda: (lambda b: b if b and b.is_enabled() else None)(find("#wizard-run")))
    console_lib.click(d, run)
    res = wait("#restore-result", lambda: find("#restore-result"), 300)
    final = ("succeeded", "failed", "partial", "cancelled")
    state = wait("a final state",
                 lambda: (lambda s: s if s in final else None)(res.get_attribute("data-state")), 300)
    shot("wizard-result-agent")
    if state != "succeeded":
        fail("the wizard's restore ended " + state + ": " + res.text[:2000])
    # Expected: /me before the login (401).
    errs = console_lib.errors(
        console_lib.browser_log(d),
        lambda e: "/api/v1/me " in e["message"] and "401" in e["message"])
    if errs:
        fail("errors in the browser's console: " + repr(errs[:5]))
    print("wizard ok")
finally:
    d.quit()
PYEOF
  fail "the console's restore onto the host agent: $(grep -m1 -A3 -e FAIL -e Error "$WORK/wizard.log" | head -c 3000)"
vsh dominfo "$RW" >/dev/null 2>&1 || fail "$RW is not defined after the wizard's restore"
disk=$(vsh domblklist "$RW" --details | awk '$3 == "vda" {print $4}')
[[ $disk == "$OUT/wizard"/* ]] || fail "$RW's vda is '$disk', not under $OUT/wizard"
raw_of "$disk" "$WORK/w-vda.raw"
same_file "$REF/p2-vda.raw" "$WORK/w-vda.raw" "vda of $RW restored through the wizard"
ok "the console backs $A up on h (Agents page) and its wizard restores P2 onto host agent h (target, the agent's plan, run): $RW defined, vda byte-identical"

echo "PASS: $PASS checks"
