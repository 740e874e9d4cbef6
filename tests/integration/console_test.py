#!/usr/bin/python3
"""The web console in a real headless Chromium (selenium), run by
console_test.sh against a real havend, repository and libvirt VM.

Each step names itself; when one fails the test saves a screenshot and the
page's text (failed-STEP.png / failed-STEP.txt beside the other screenshots)
and says what it waited for. The page selectors are the contract in the
console's pages (js/pages/*.js): keep them in step.

Environment (set by console_test.sh):
  CONSOLE_URL             https://127.0.0.1:PORT
  CONSOLE_USER            the admin's name
  CONSOLE_PASSWORD_FILE   the admin's password (first line); never printed
  CONSOLE_VM              the running test VM (its vda: ext4 with /etc)
  CONSOLE_NET             its network; CONSOLE_NET2: the one to map it to
  CONSOLE_NEW_VM          the restored VM's name
  CONSOLE_STORAGE         folder for the restored VM's disks
  CONSOLE_ORIGINAL        the copy of /etc the VM's disk was made from
  CONSOLE_WORK            scratch folder (downloads, browser profile, logs)
  CONSOLE_SHOTS           screenshots of every page reached
  CONSOLE_SCREENSHOT_DIR  optional: docs/img screenshots go here too
  CONSOLE_LIBVIRT_URI     for virsh (default qemu:///system)
"""

import hashlib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

from selenium.common.exceptions import (StaleElementReferenceException, TimeoutException,
                                        WebDriverException)
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

import console_lib

URL = os.environ["CONSOLE_URL"].rstrip("/")
USER = os.environ.get("CONSOLE_USER", "admin")
VM = os.environ["CONSOLE_VM"]
NEW_VM = os.environ["CONSOLE_NEW_VM"]
NET = os.environ["CONSOLE_NET"]
NET2 = os.environ["CONSOLE_NET2"]
STORAGE = os.environ["CONSOLE_STORAGE"]
ORIGINAL = os.environ["CONSOLE_ORIGINAL"]
WORK = os.environ["CONSOLE_WORK"]
SHOTS = os.environ["CONSOLE_SHOTS"]
DOCS = os.environ.get("CONSOLE_SCREENSHOT_DIR", "")
VIRSH = ["virsh", "-q", "-c", os.environ.get("CONSOLE_LIBVIRT_URI", "qemu:///system")]
DOWNLOADS = os.path.join(WORK, "downloads")
BROWSER_LOG = os.path.join(WORK, "browser.log")
FILE = "passwd"  # the /etc file downloaded and compared

# Waits. Generous, because CI runs this beside other tests on two cores
# (Chromium alone takes seconds to start there), and bounded, so a page
# that never shows what it should fails with a message instead of hanging.
UI_WAIT = 60  # an element or a page change after a click
JOB_WAIT = 600  # a backup or restore job to its end
FINAL = {"succeeded", "failed", "cancelled", "interrupted", "partial"}

START = time.monotonic()
driver = None
step_name = "start"
shot_count = 0
browser_entries = []


class Failure(Exception):
    pass


def log(msg):
    print(f"{msg} [{time.monotonic() - START:.0f}s]", flush=True)


def ok(msg):
    log(f"ok: {msg}")


def fail(msg):
    raise Failure(f"step '{step_name}': {msg}")


def step(name):
    global step_name
    step_name = name
    log(f"--- {name}")


def css_str(s):
    """A CSS string literal for an attribute selector."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def page_text():
    try:
        return driver.execute_script("return document.body ? document.body.innerText : ''")
    except WebDriverException as e:
        return f"(page text unavailable: {e.msg})"


def shot(name, doc=None, whole=False):
    """Saves a screenshot of the page as NN-name.png; doc: also as
    CONSOLE_SCREENSHOT_DIR/doc (the pictures of docs/console.md); whole: the
    whole page (up to 2400 px high), not only the 1280x900 window."""
    global shot_count
    shot_count += 1
    path = os.path.join(SHOTS, f"{shot_count:02d}-{name}.png")
    if whole:
        high = min(2400, max(900, driver.execute_script(
            "return document.documentElement.scrollHeight")))
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 1280, "height": high, "deviceScaleFactor": 1, "mobile": False})
        time.sleep(0.3)
    driver.save_screenshot(path)
    if whole:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    if doc and DOCS:
        os.makedirs(DOCS, exist_ok=True)
        shutil.copyfile(path, os.path.join(DOCS, doc))
    collect_browser_log()


def collect_browser_log():
    """Moves the browser's console log (it is emptied on every read) into
    browser_entries and BROWSER_LOG."""
    entries = console_lib.browser_log(driver, quiet=True)
    with open(BROWSER_LOG, "a") as f:
        for e in entries:
            e["step"] = step_name
            browser_entries.append(e)
            f.write(f"[{e['step']}] {e['level']} {e.get('source', '')}: {e['message']}\n")


def own_script_errors():
    """The browser's SEVERE entries that are the console's fault: an uncaught
    exception or console.error in its scripts, a Content-Security-Policy
    refusal, a console file that does not load, a 5xx from havend. 4xx
    answers of the API are the pages' business (401 before login, on the
    wrong password and after logout are this test's own doing) and are only
    listed."""
    bad, noted = [], []
    for e in browser_entries:
        if e["level"] != "SEVERE":
            continue
        msg, src = e["message"], e.get("source", "")
        m = re.search(r"status of (\d+)", msg)
        if src == "network" and m:
            status = int(m.group(1))
            api = "/api/v1/" in msg.split(" ", 1)[0]
            (bad if status >= 500 or not api else noted).append(e)
        elif src == "network":
            (noted if "/api/v1/events" in msg else bad).append(e)
        else:
            bad.append(e)
    return bad, noted


def wait_for(what, fn, timeout=UI_WAIT, poll=0.25):
    """Waits until fn() is truthy (WebDriverWait; stale elements are
    retried); fails with `what` when it is not within timeout seconds."""
    broken = []

    def check(d):
        r = fn()
        if not r:
            # The router's own error pages: no use waiting for them to change.
            h1 = find("#view h1")
            if h1 is not None and h1.text in ("This page could not be shown", "Page not found"):
                broken.append(find("#view").text)
                return True
        return r
    try:
        r = WebDriverWait(driver, timeout, poll_frequency=poll,
                          ignored_exceptions=(StaleElementReferenceException,)).until(check)
    except TimeoutException:
        fail(f"waited {timeout} s for {what}")
    if broken:
        fail(f"while waiting for {what}, the console showed: {broken[0]!r}")
    return r


def find(sel, root=None):
    """The first element matching CSS sel, or None."""
    els = (root or driver).find_elements(By.CSS_SELECTOR, sel)
    return els[0] if els else None


def text_of(sel):
    """The text of the first element matching sel, "" when there is none
    (also when the page replaced it between the lookup and the read)."""
    try:
        el = find(sel)
        return el.text if el is not None else ""
    except StaleElementReferenceException:
        return ""


def visible(sel, root=None):
    el = find(sel, root)
    return el if el is not None and el.is_displayed() else None


def wait_visible(sel, what=None, timeout=UI_WAIT):
    return wait_for(what or f"{sel} to be shown", lambda: visible(sel), timeout)


def click(el):
    """Clicks like a user; scrolls first (the header may cover it)."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
    try:
        el.click()
    except WebDriverException:
        driver.execute_script("arguments[0].click()", el)


def set_input(el, text):
    el.clear()
    el.send_keys(text)


def api(path, cookie):
    """GET /api/v1{path} with the session cookie, as a script would:
    (status, parsed body or text)."""
    req = urllib.request.Request(URL + "/api/v1" + path,
                                 headers={"Cookie": f"haven_session={cookie}",
                                          "Accept": "application/json"})
    ctx = ssl._create_unverified_context()  # havend's self-signed certificate, on loopback
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=60) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode(errors="replace")


def session_cookie():
    c = driver.get_cookie("haven_session")
    if not c or not c.get("value"):
        fail(f"no haven_session cookie in the browser (cookies: "
             f"{[x['name'] for x in driver.get_cookies()]})")
    return c["value"]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def virsh(*args, check=True):
    r = subprocess.run(VIRSH + list(args), capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        fail(f"virsh {' '.join(args)}: {r.stderr.strip()}")
    return r


def start_browser():
    # A page of 1280x900, downloads into DOWNLOADS (console_lib.py).
    d = console_lib.chrome(1280, 900, profile=os.path.join(WORK, "chromium-profile"),
                           downloads=DOWNLOADS)
    d.set_page_load_timeout(120)
    d.set_script_timeout(60)
    return d


# ---------------------------------------------------------------- steps
def login():
    step("login")
    driver.get(URL + "/")
    user = wait_visible("#login-user", "the login form (#login-user)")
    shot("login")
    # A wrong password first: the answer is a sentence, not JSON.
    set_input(user, USER)
    set_input(find("#login-password"), "not-the-password-" + os.urandom(4).hex())
    click(find("#login-submit"))
    err = wait_for("#login-error to say why the login failed",
                   lambda: text_of("#login-error").strip() or None)
    if err.lstrip().startswith(("{", "[")) or '"error"' in err or not re.search(r"[A-Za-z]{3}", err):
        fail(f"the login error is not in words: {err!r}")
    if find("#logout") is not None and find("#logout").is_displayed():
        fail("#logout is shown after a failed login")
    shot("login-wrong-password")
    ok(f"a wrong password is refused in words: {err!r}")

    with open(os.environ["CONSOLE_PASSWORD_FILE"]) as f:
        password = f.readline().rstrip("\n")
    set_input(find("#login-user"), USER)
    set_input(find("#login-password"), password)
    click(find("#login-submit"))
    wait_visible("#logout", "the console after logging in (#logout shown)")
    status, me = api("/me", session_cookie())
    if status != 200 or me.get("name") != USER:
        fail(f"GET /api/v1/me with the session cookie: HTTP {status} {me}")
    ok(f"logged in as {me.get('name')} ({me.get('role')})")
    return me


def dashboard():
    step("dashboard")
    if not driver.current_url.split("#", 1)[-1].startswith("/dashboard"):
        driver.get(URL + "/#/dashboard")
    row_sel = f'#vm-table tr[data-vm={css_str(VM)}]'
    row = wait_visible(row_sel, f"the VM {VM} on the dashboard ({row_sel})")
    b = find(".badge", row)
    state = b.get_attribute("data-state") if b is not None else None
    shot("dashboard")
    ok(f"the dashboard lists {VM} (last backup badge: {state!r})")
    return row


def backup(row):
    step("backup")
    button = find("button.backup-vm", row)
    if button is None:
        fail(f"no button.backup-vm in the row of {VM}: {row.text!r}")
    click(button)
    m = wait_for("the job page (#/job?id=N) after the backup button",
                 lambda: re.search(r"#/job\?(?:.*&)?id=(\d+)", driver.current_url))
    job = int(m.group(1))
    log(f"backup job {job}")
    wait_visible("#job-progress", "#job-progress on the job page")
    wait_for("#job-state with a data-state", lambda: find("#job-state[data-state]"))
    seen_states, seen_values, running_shot = [], [], False
    deadline = time.monotonic() + JOB_WAIT
    state, last_seen = None, time.monotonic()
    while time.monotonic() < deadline:
        try:
            el = find("#job-state")
            state = el.get_attribute("data-state") if el is not None else None
            bar = find("#job-progress")
            now = bar.get_attribute("aria-valuenow") if bar is not None else None
        except StaleElementReferenceException:
            time.sleep(0.1)
            continue
        if el is not None and bar is not None:
            last_seen = time.monotonic()
        elif time.monotonic() - last_seen > UI_WAIT:
            fail(f"#job-state or #job-progress gone from the job page for {UI_WAIT} s "
                 f"(states seen: {seen_states})")
        if state and (not seen_states or seen_states[-1] != state):
            seen_states.append(state)
        if now not in (None, "") and (not seen_values or seen_values[-1] != float(now)):
            seen_values.append(float(now))
        if state == "running" and not running_shot:
            shot("job-running")
            running_shot = True
        if state in FINAL:
            break
        time.sleep(0.2)
    else:
        fail(f"job {job} did not end within {JOB_WAIT} s (states seen: {seen_states}, "
             f"progress seen: {seen_values})")
    if state != "succeeded":
        logtext = text_of("#job-log") or "(no #job-log)"
        fail(f"backup job {job} ended {state}; #job-log: {logtext[-3000:]}")
    wait_for("#job-progress aria-valuenow=100 once the job succeeded",
             lambda: find("#job-progress[aria-valuenow]") is not None and
             float(find("#job-progress").get_attribute("aria-valuenow")) == 100,
             timeout=30)
    shot("job-succeeded")
    moving = [v for v in seen_values if 0 < v < 100]
    how = (f"progress seen moving through {moving}" if len(moving) >= 2 else
           f"progress seen at {moving} before 100" if moving else
           "seen running before 100 (a fast backup)" if "running" in seen_states or
           "queued" in seen_states else "only seen finished (a fast backup)")
    ok(f"backup job {job}: states {seen_states}, #job-progress reached 100, succeeded; {how}")
    return job


def latest_point(cookie):
    status, body = api(f"/points?kind=vm&vm={urllib.parse.quote(VM)}", cookie)
    if status != 200 or not body.get("points"):
        fail(f"GET /points?kind=vm&vm={VM}: HTTP {status} {str(body)[:2000]}")
    p = body["points"][0]
    return p["repository"], p["id"]


def rows(name):
    return f'#file-table tr[data-name={css_str(name)}]'


def files(repo, point):
    step("files")
    driver.get(f"{URL}/#/files?repo={repo}&id={point}")
    # A VM point's root is its (only) disk's file system; a browser that lists
    # the disks first gets vda opened.
    first = wait_for(f"#file-table with the row 'etc' (or the disk 'vda') of point {point}",
                     lambda: visible(rows("etc")) or visible(rows("vda")))
    if first.get_attribute("data-name") == "vda":
        click(find("a", first))
        wait_visible(rows("etc"), "the row 'etc' in the disk vda")
    shot("files-root")
    row = find(rows("etc"))
    link = next((a for a in row.find_elements(By.CSS_SELECTOR, "a")
                 if "download" not in (a.get_attribute("class") or "").split()), None)
    if link is None:
        fail(f"the directory 'etc' is not a link: {row.text!r}")
    click(link)
    wait_for("#file-path to show /etc", lambda: "etc" in text_of("#file-path"))
    frow = wait_visible(rows(FILE), f"the row '{FILE}' in /etc")
    shot("files-etc", "console-files.png")
    a = find("a.download", frow)
    if a is None:
        fail(f"no a.download in the row of {FILE}: {frow.text!r}")
    href = a.get_attribute("href") or ""
    if "/api/v1/points/" not in href or re.search(r"token|password|haven_", href, re.I):
        fail(f"a.download's link is not a plain GET of the download route: {href}")
    before = set(os.listdir(DOWNLOADS))
    click(a)

    def done():
        new = [n for n in set(os.listdir(DOWNLOADS)) - before
               if not n.endswith((".crdownload", ".tmp")) and not n.startswith(".")]
        partial = [n for n in os.listdir(DOWNLOADS) if n.endswith(".crdownload")]
        return new[0] if new and not partial else None
    got = wait_for(f"the download of {FILE} in {DOWNLOADS}", done, timeout=120)
    want = sha256(os.path.join(ORIGINAL, FILE))
    have = sha256(os.path.join(DOWNLOADS, got))
    if have != want:
        fail(f"downloaded {got}: sha256 {have}, the original /etc/{FILE}: {want}")
    ok(f"browsed point {point} into /etc; a.download of {FILE} saved {got} with the original's "
       f"sha256 {want[:16]}…")


def current_step():
    """The wizard's shown step container: (name, element) or (None, None)."""
    for el in driver.find_elements(By.CSS_SELECTOR, "[data-step]"):
        if el.tag_name == "li":  # the step list (ol.steps), not a step
            continue
        try:
            if el.is_displayed():
                return el.get_attribute("data-step"), el
        except StaleElementReferenceException:
            continue
    return None, None


def wizard_next(frm):
    b = visible("#wizard-next")
    if b is None:
        fail(f"no #wizard-next on the wizard's step '{frm}'")
    click(b)
    wait_for(f"the wizard to leave the step '{frm}' after #wizard-next (page: "
             f"{page_text()[-600:]!r})", lambda: current_step()[0] not in (frm, None))


def choose_radio(sel, what):
    el = find(sel)
    if el is None:
        return False
    if not el.is_selected():
        # The radio may be styled away inside its <label>: click what a user sees.
        target = el
        if not el.is_displayed():
            target = driver.execute_script(
                "const e = arguments[0]; return e.closest('label') || "
                "(e.id && document.querySelector('label[for=\"' + CSS.escape(e.id) + '\"]')) || e",
                el)
        click(target)
    wait_for(f"{what} to be selected", el.is_selected, timeout=10)
    return True


def restore(point, orig_xml):
    step("restore wizard")
    driver.get(f"{URL}/#/restore/vm?vm={urllib.parse.quote(VM)}")
    wait_for("a step of the restore wizard ([data-step])", lambda: current_step()[0])
    seen = []
    deadline = time.monotonic() + JOB_WAIT + 300
    while time.monotonic() < deadline:
        name, el = current_step()
        if name is None:
            time.sleep(0.2)
            continue
        if not seen or seen[-1] != name:
            seen.append(name)
            log(f"wizard step: {name}")
        if name == "vm" and len(seen) == 1:
            # With ?vm= the wizard may show its first step only on the way
            # to the point step.
            try:
                WebDriverWait(driver, 3, 0.2).until(lambda d: current_step()[0] != "vm")
                continue
            except TimeoutException:
                pass
        if name == "vm":
            if not choose_radio(f'input[name=vm][value={css_str(VM)}]', f"the VM {VM}"):
                fail(f"no input[name=vm][value={VM}] on the step 'vm'")
            shot("wizard-vm")
            wizard_next(name)
        elif name == "point":
            wait_for("the points of the VM (input[name=point])", lambda: find("input[name=point]"))
            if not choose_radio(f'input[name=point][value={css_str(point)}]', f"the point {point}"):
                checked = find("input[name=point]:checked")
                if checked is None or not point.startswith(checked.get_attribute("value")):
                    fail(f"the new point {point} is neither offered nor preselected: {el.text[:1500]!r}")
            shot("wizard-point")
            wizard_next(name)
        elif name == "target":
            shot("wizard-target")  # default: this host, as a new VM
            wizard_next(name)
        elif name == "options":
            options()
            wizard_next(name)
        elif name == "plan":
            # The plan is a dry run by havend: it may take a moment, and
            # "Making the plan…" may stand there first.
            wait_for(f"the dry-run plan in #plan-text, naming {NEW_VM}",
                     lambda: visible("#plan-text") and NEW_VM in text_of("#plan-text"),
                     timeout=120)
            plan = find("#plan-text").text
            if NET2 not in plan:
                fail(f"the plan does not mention the network {NET2}: {plan[:3000]!r}")
            shot("wizard-plan", "console-restore-plan.png")
            run = wait_visible("#wizard-run", "#wizard-run on the plan step")
            wait_for("#wizard-run to be enabled", run.is_enabled, timeout=30)
            click(run)
            wait_for("the wizard to leave the plan step after #wizard-run",
                     lambda: current_step()[0] not in ("plan", None))
        elif name == "run":
            if "run" not in [s for s in seen[:-1]]:
                shot("wizard-run")
            time.sleep(0.5)
        elif name == "result":
            res = wait_visible("#restore-result", "#restore-result on the result step")
            state = wait_for("#restore-result data-state to be a final job state",
                             lambda: (lambda s: s if s in FINAL else None)(
                                 find("#restore-result").get_attribute("data-state")),
                             timeout=JOB_WAIT)
            shot("wizard-result")
            if state != "succeeded":
                fail(f"the restore ended {state}: {res.text[:3000]!r}")
            ok(f"restore wizard steps {seen}: #restore-result succeeded")
            break
        else:
            fail(f"unknown wizard step '{name}' (steps so far: {seen})")
    else:
        fail(f"the wizard did not reach its result (steps: {seen})")
    check_restored(orig_xml)


def options():
    sel = "#opt-name"
    name = wait_visible(sel, "#opt-name on the options step")
    set_input(name, NEW_VM)
    ident = find("#opt-new-identity")
    if ident is None:
        fail("no #opt-new-identity on the options step")
    if not ident.is_selected():
        click(ident)
    fmt = find("#opt-format")
    if fmt is not None:
        Select(fmt).select_by_value("qcow2")
    storage = find("#opt-storage")
    if storage is None:
        fail("no #opt-storage on the options step")
    set_input(storage, STORAGE)
    net_sel = f'select.net-map[data-network={css_str(NET)}]'
    net = wait_for(f"the network mapping {net_sel}", lambda: find(net_sel))
    values = [o.get_attribute("value") for o in Select(net).options]
    if NET2 not in values:
        fail(f"{net_sel} does not offer {NET2}: {values}")
    Select(net).select_by_value(NET2)
    start = find("#opt-start")
    if start is not None and start.is_selected():
        click(start)
    shot("wizard-options", "console-restore-wizard.png")
    ok(f"options: name {NEW_VM}, new identity, qcow2 in {STORAGE}, {NET} -> {NET2} "
       f"(offered: {values})")


def check_restored(orig_xml):
    step("restored VM in libvirt")
    r = virsh("dumpxml", NEW_VM, check=False)
    if r.returncode != 0:
        fail(f"virsh dumpxml {NEW_VM}: {r.stderr.strip()}")
    new = ET.fromstring(r.stdout)
    old = ET.fromstring(orig_xml)
    nets = [s.get("network") for s in new.findall("./devices/interface/source")]
    if not nets or any(n != NET2 for n in nets):
        fail(f"{NEW_VM}'s interfaces are on {nets}, not {NET2}")
    if new.findtext("uuid") == old.findtext("uuid"):
        fail(f"{NEW_VM} has {VM}'s UUID: no new identity")
    macs = [m.get("address") for m in new.findall("./devices/interface/mac")]
    old_macs = {m.get("address") for m in old.findall("./devices/interface/mac")}
    if set(macs) & old_macs:
        fail(f"{NEW_VM} has {VM}'s MAC addresses {macs}")
    disks = [s.get("file") for s in new.findall("./devices/disk/source") if s.get("file")]
    outside = [d for d in disks if not d.startswith(STORAGE.rstrip("/") + "/")]
    if not disks or outside:
        fail(f"{NEW_VM}'s disks {disks} are not in {STORAGE}")
    ok(f"virsh dumpxml {NEW_VM}: defined, interfaces on {NET2}, new UUID and MACs, disks {disks}")


def remove_restored():
    """Undefines the restored VM and removes its disk files."""
    r = subprocess.run(VIRSH + ["dumpxml", NEW_VM], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        return
    disks = [s.get("file") for s in ET.fromstring(r.stdout).findall("./devices/disk/source")
             if s.get("file")]
    subprocess.run(VIRSH + ["destroy", NEW_VM], capture_output=True, timeout=120)
    subprocess.run(VIRSH + ["undefine", NEW_VM, "--nvram"], capture_output=True, timeout=120)
    for d in disks:
        # Only what the restore made: in the test's folder or named after the VM.
        if d.startswith(STORAGE) or os.path.basename(d).startswith(NEW_VM):
            try:
                os.remove(d)
            except OSError:
                pass
    log(f"removed {NEW_VM} and its disks {disks}")


def dashboard_after(repo, point):
    step("dashboard after the backup")
    driver.get(URL + "/#/dashboard")
    row_sel = f'#vm-table tr[data-vm={css_str(VM)}]'
    wait_for(f"the badge of {VM}'s last backup to say it succeeded ({row_sel} .badge[data-state])",
             lambda: (find(f"{row_sel} .badge") is not None and
                      find(f"{row_sel} .badge").get_attribute("data-state") in ("succeeded", "ok")))
    time.sleep(1)  # the usage chart and the other panels load on their own
    shot("dashboard-after-backup", "console-dashboard.png", whole=True)
    ok(f"the dashboard shows {VM}'s last backup succeeded")
    # Phone width and dark mode: pictures for a person to look at, and the
    # scripts must not fail there either (the browser log is checked at the end).
    step("phone width and dark mode")
    views = [("dashboard", "#/dashboard", "#vm-table"),
             ("files", f"#/files?repo={repo}&id={point}&path=/etc", "#file-table"),
             ("restore", f"#/restore/vm?vm={urllib.parse.quote(VM)}", "[data-step]")]
    for mode in ("phone", "dark"):
        if mode == "phone":
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                   {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
        else:
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                   {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})
            driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                                   {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        for name, route, sel in views:
            driver.get(f"{URL}/{route}")
            wait_visible(sel, f"{sel} on {route} ({mode})")
            time.sleep(0.5)  # the rest of the page's requests
            shot(f"{name}-{mode}")
            if mode == "phone":
                wide = driver.execute_script("return document.documentElement.scrollWidth")
                if wide > 390 + 2:
                    log(f"note: {route} is {wide} px wide at a 390 px phone width (scrolls sideways)")
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    ok("dashboard, file browser and restore wizard shown at 390 px and in dark mode")


def logout():
    step("logout")
    driver.get(URL + "/#/dashboard")
    wait_visible("#logout", "#logout in the header")
    cookie = session_cookie()
    status, _ = api("/me", cookie)
    if status != 200:
        fail(f"GET /api/v1/me with the session cookie before logging out: HTTP {status}")
    click(find("#logout"))
    wait_visible("#login-user", "the login form after #logout")
    shot("logged-out")
    status, body = api("/me", cookie)
    if status != 401:
        fail(f"GET /api/v1/me with the old session cookie after logout: HTTP {status} {body}")
    ok("logged out: the old session cookie gets 401 from GET /api/v1/me")


def main():
    global driver
    os.makedirs(SHOTS, exist_ok=True)
    orig_xml = virsh("dumpxml", VM).stdout
    try:
        step("browser")
        driver = start_browser()
        login()
        row = dashboard()
        backup(row)
        repo, point = latest_point(session_cookie())
        files(repo, point)
        try:
            restore(point, orig_xml)
        finally:
            remove_restored()
        dashboard_after(repo, point)
        logout()
        step("browser log")
        collect_browser_log()
        bad, noted = own_script_errors()
        for e in noted:
            log(f"note: [{e['step']}] {e['message']}")
        if bad:
            fail("errors in the browser's console:\n" +
                 "\n".join(f"  [{e['step']}] {e.get('source', '')}: {e['message']}" for e in bad))
        ok(f"no errors of the console's scripts in the browser log ({len(browser_entries)} entries, "
           f"{len(noted)} expected API refusals)")
    except (Exception, SystemExit) as e:  # SystemExit: the time limit's SIGTERM
        name = re.sub(r"[^a-z0-9]+", "-", step_name.lower()).strip("-")
        text = "(no browser)"
        try:
            driver.save_screenshot(os.path.join(SHOTS, f"failed-{name}.png"))
            text = page_text()
            with open(os.path.join(SHOTS, f"failed-{name}.txt"), "w") as f:
                f.write(f"{driver.current_url}\n\n{text}\n")
            collect_browser_log()
        except Exception:
            pass
        print(f"FAIL: {e if isinstance(e, Failure) else traceback.format_exc()}", file=sys.stderr)
        print(f"the page:\n{text[:4000]}", file=sys.stderr)
        errs = [x for x in browser_entries if x["level"] == "SEVERE"]
        if errs:
            print("browser errors:\n" + "\n".join(f"  [{x['step']}] {x['message']}" for x in errs[-20:]),
                  file=sys.stderr)
        return 1
    finally:
        if driver is not None:
            try:
                driver.quit()
            except Exception:
                pass
    log(f"PASS ({shot_count} screenshots in {SHOTS})")
    return 0


def on_term(signum, frame):
    raise SystemExit(f"FAIL: step '{step_name}': stopped by signal {signum} (time limit)")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_term)
    sys.exit(main())
