#!/usr/bin/env bash
# The console's Agents page (#/agents, appliance/console/js/pages/agents.js)
# and the schedule kind agent-backup, in Debian's headless chromium against
# a real havend over HTTPS on loopback, with a real agent (`haven agent
# enroll` against that havend, `haven agent run` in the background):
#  - the enrolled agent is a row of table#agent-table
#  - "Back up now" (button.backup-agent) opens a form; empty paths are
#    refused in words; the form starts a job and the console goes to
#    #/job?id=N, which reaches succeeded with its bar at 100
#  - the point exists (GET /points: the agent's agent_id, the name given)
#    and the agent's row links its latest point
#  - a schedule of kind agent-backup is created from #/schedule and the
#    schedules list says what it runs
#  - an auditor sees no "Back up now"
#  - no error in the browser's console but the expected ones
# Screenshots (1280 and 390 px, light and dark) go to
# $HAVEN_BUILD_DIR/test-artifacts/console-agents (or $CONSOLE_SHOTS); with
# CONSOLE_DOCS_DIR set, the two pictures of docs/console.md go there too:
#   CONSOLE_DOCS_DIR=$PWD/docs/img ctest --test-dir build -R console_agents
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/havend_lib.sh"
: "${HAVEN_SOURCE_DIR:?HAVEN_SOURCE_DIR must point at the checkout}"
havend_need_browser fail
APID=
trap 'set +e; [ -n "$APID" ] && { kill -9 "$APID"; wait "$APID"; } 2>/dev/null; havend_kill; rm -rf "$WORK"' EXIT
DPID=

STATE=$WORK/state
R=$WORK/repo
SHOTS=${CONSOLE_SHOTS:-${HAVEN_BUILD_DIR:+$HAVEN_BUILD_DIR/test-artifacts/console-agents}}
haven -q -r "$R" init
havend_repo_password
havend_admin_password "$WORK/adminpw" 'console admin password'
havend_start d --repository main="$R" --password-file "$WORK/pw" \
  --console-dir "$HAVEN_SOURCE_DIR/appliance/console"
FP=$(sed -n 's/^certificate SHA-256 fingerprint: //p' "$WORK/d.out")
[ -n "$FP" ] || fail "no fingerprint line: $(cat "$WORK/d.out")"
havend_token operator console-agents-op
havend_token admin console-agents-admin
# An auditor account for the console (the password in a file, never argv).
py -c 'import json,sys; print(json.dumps({"name": "audrey", "role": "auditor", "password": open(sys.argv[1]).read().strip()}))' \
  "$WORK/adminpw" >"$WORK/audrey.json"
CODE=$(curl -sS --max-time 20 --cacert "$STATE/cert.pem" -H @"$WORK/token.admin" -o "$WORK/body" -w '%{http_code}' \
  -H 'Content-Type: application/json' --data @"$WORK/audrey.json" "$URL/api/v1/users")
[ "$CODE" = 201 ] || fail "POST /users: HTTP $CODE $(cat "$WORK/body")"

# ------------------------------------------------- a real enrolled agent
expect_rc 0 "enroll-token" "$HAVEND" agent enroll-token --state-dir "$STATE" \
  --repository main --name web1 --url "$URL"
(umask 077 && sed -n 1p "$WORK/out" >"$WORK/enroll.token")
HAVEN_ENROLL_TOKEN=$(cat "$WORK/enroll.token") expect_rc 0 "haven agent enroll" \
  "$HAVEN" agent enroll "$URL" --fingerprint "$FP" --state-dir "$WORK/agent"
DATA=$WORK/data
mkdir -p "$DATA/etc/app" "$DATA/home"
echo "listen 80" >"$DATA/etc/app/app.conf"
random_file "$DATA/home/blob.bin" 3000000 7
echo scratch >"$DATA/home/scratch.tmp"
"$HAVEN" agent run --state-dir "$WORK/agent" >"$WORK/run.out" 2>"$WORK/run.err" &
APID=$!
ok "agent web1 enrolled against $URL and running"

PYTHONPATH=$HAVEND_TESTS "$BROWSER_PY" - "$URL" "$STATE/cert.pem" "$WORK/token.operator" "$DATA" \
  "${SHOTS:-}" "${CONSOLE_DOCS_DIR:-}" <<'PYEOF' || fail "the agents page in the browser (above)"
import json, os, ssl, sys, time, urllib.request
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait
import console_lib

url, cert, token_file, data, shots, docs = sys.argv[1:7]
token = open(token_file).read().split("Bearer ", 1)[1].strip()

def api(path):
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = False
    req = urllib.request.Request(url + "/api/v1" + path, headers={"Authorization": "Bearer " + token})
    return json.load(urllib.request.urlopen(req, context=ctx, timeout=20))

d = console_lib.chrome(1280, 900)
wait = WebDriverWait(d, 60)
find = lambda css, root=None: (root or d).find_element(By.CSS_SELECTOR, css)
click = lambda el: console_lib.click(d, el)
def text_in(css, text):
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))
def ok(what):
    print("ok: " + what, flush=True)
def shot(name, width=1280, dark=False, doc=None):
    dirs = [x for x in (shots, doc and docs) if x]
    if not dirs:
        return
    console_lib.set_page_size(d, width, 900, mobile=width < 720)
    d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [
        {"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]})
    time.sleep(0.3)
    h = d.execute_script("return document.documentElement.scrollHeight")
    console_lib.set_page_size(d, width, min(max(h, 600), 2400), mobile=width < 720)
    time.sleep(0.2)
    if shots:
        os.makedirs(shots, exist_ok=True)
        d.save_screenshot(os.path.join(shots, name + ".png"))
    if doc and docs:
        d.save_screenshot(os.path.join(docs, doc + ".png"))
    console_lib.set_page_size(d, 1280, 900)
    d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [
        {"name": "prefers-color-scheme", "value": "light"}]})

row_css = 'table#agent-table tr[data-agent="web1"]'
log = []
try:
    console_lib.login(d, url, "admin", "console admin password")
    d.get(url + "/#/agents")
    row = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, row_css)))
    text_in(row_css + " .agent-latest", "none yet")
    ok("the enrolled agent web1 is a row of table#agent-table, no point yet")
    click(find("button.backup-agent", row))
    form = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, "form.agent-backup")))
    assert find("[name=name]", form).get_attribute("value") == "web1"
    assert not form.find_elements(By.CSS_SELECTOR, ".notice.warn"), "a running agent called quiet"
    click(find("button[type=submit]", form))
    text_in("form.agent-backup .error", "at least one path")
    ok("Back up now: a form; no paths is refused in words")
    paths = find("[name=paths]", form)
    name = find("[name=name]", form)
    name.clear()
    name.send_keys("web1-files")
    find("[name=excludes]", form).send_keys("*.tmp")
    if shots or docs:  # the pictures show short paths; the test's follow
        paths.send_keys("/etc\n/srv/www")
        shot("agents-backup-form-1280", doc="console-agents-backup")
        shot("agents-backup-form-390", 390)
        shot("agents-backup-form-1280-dark", dark=True)
        paths.clear()
    paths.send_keys(data + "/etc\n" + data + "/home")
    click(find("button[type=submit]", form))
    wait.until(lambda d: "#/job?id=" in d.current_url)
    job = d.current_url.split("id=")[1]
    wait.until(EC.presence_of_element_located(
        (By.CSS_SELECTOR, '#job-state[data-state="succeeded"]')))
    assert find("#job-progress").get_attribute("aria-valuenow") == "100"
    shot("job-agent-1280")
    ok("the form started job %s, whose page reached succeeded" % job)
    agent = [a for a in api("/agents")["agents"] if a["name"] == "web1"][0]
    points = [p for p in api("/points?repository=main")["points"]
              if p.get("agent_id") == agent["id"]]
    assert len(points) == 1 and points[0]["name"] == "web1-files", points
    files = api("/points/main/%s/files?path=%s" % (points[0]["id"], data + "/home"))
    names = sorted(e["name"] for e in files["entries"])
    assert names == ["blob.bin"], names
    find('#job-items a[href*="%s"]' % points[0]["id"])
    ok("the point %s exists for agent %s, without the excluded file; the job links it" % (points[0]["id"][:8], agent["id"]))
    d.get(url + "/#/agents")
    link = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, row_css + " .agent-latest a")))
    assert points[0]["id"] in link.get_attribute("href"), link.get_attribute("href")
    shot("agents-1280", doc="console-agents")
    shot("agents-390", 390)
    shot("agents-1280-dark", dark=True)
    ok("the agent's row links its latest point")
    # ---- a schedule of kind agent-backup
    d.get(url + "/#/schedule")
    kind = wait.until(EC.presence_of_element_located((By.ID, "sched-kind")))
    find("#sched-name").send_keys("web1-nightly")
    Select(kind).select_by_value("agent-backup")
    Select(find("#sched-agent")).select_by_value("web1")
    find("#sched-agent-paths").send_keys(data + "/etc")
    find("#sched-agent-excludes").send_keys("*.tmp")
    shot("schedule-agent-1280")
    click(find("#sched-save"))
    wait.until(lambda d: "#/schedule?id=" in d.current_url)
    sid = d.current_url.split("id=")[1]
    s = api("/schedules/" + sid)
    assert s["kind"] == "agent-backup" and s["params"] == {
        "agent": "web1", "paths": [data + "/etc"], "excludes": ["*.tmp"]}, s
    assert s["repository"] == "main", s
    text_in("#view", "on agent web1")
    shot("schedule-agent-saved-1280")
    d.get(url + "/#/schedules")
    text_in("#view", "on agent web1")
    shot("schedules-390", 390)
    ok("a schedule of kind agent-backup created; its pages say what it runs")
    log += console_lib.browser_log(d)
    click(find("#logout"))
    console_lib.login(d, url, "audrey", "console admin password")
    d.get(url + "/#/agents")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, row_css)))
    assert not d.find_elements(By.CSS_SELECTOR, "button.backup-agent")
    ok("an auditor sees no Back up now")
    log += console_lib.browser_log(d)
finally:
    d.quit()
# Expected: /me before login (401), the refused empty form never reaches
# the API.
bad = [e["message"] for e in console_lib.errors(log, lambda e: (
    "/api/v1/me " in e["message"] and "401" in e["message"]))]
assert not bad, bad
ok("no unexpected error in the browser's console")
PYEOF
kill -TERM "$APID"
wait "$APID" || fail "haven agent run exited $? after SIGTERM: $(tail -3 "$WORK/run.err")"
APID=
havend_stop d
echo "console_agents_test: passed"
