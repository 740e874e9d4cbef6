#!/usr/bin/env bash
# The console's Settings page (#/settings, appliance/console/js/pages/
# settings.js) in Debian's headless chromium against a real havend over
# HTTPS on loopback:
#  - users: add one (#user-create), change its role (confirm), reset its
#    password (a short one refused in words), it logs in with the new one,
#    delete it; one's own account cannot be deleted
#  - tokens: made with #token-create, the secret shown once (#token-secret,
#    with a copy button) works against the API, is gone once dismissed, and
#    is refused after Revoke
#  - notifications: #notify-form saved, "Send a test" arrives at a local
#    HTTP receiver; a bad SMTP URL is refused in words
#  - an auditor sees a notice, no tables
#  - no error in the browser's console but the expected ones
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/havend_lib.sh"
: "${HAVEN_SOURCE_DIR:?HAVEN_SOURCE_DIR must point at the checkout}"
havend_need_browser fail
havend_trap

STATE=$WORK/state
R=$WORK/repo
haven -q -r "$R" init
havend_repo_password
havend_admin_password "$WORK/adminpw" 'console admin password'
havend_start d --repository main="$R" --password-file "$WORK/pw" \
  --console-dir "$HAVEN_SOURCE_DIR/appliance/console"

PYTHONPATH=$HAVEND_TESTS "$BROWSER_PY" - "$URL" "$STATE/cert.pem" <<'PYEOF' || fail "the settings page in the browser (above)"
import json, ssl, sys, threading, time, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait
import console_lib

url, cert = sys.argv[1], sys.argv[2]
hooks = []
class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        hooks.append((self.headers.get("X-Haven-Event"),
                      self.rfile.read(int(self.headers.get("Content-Length", 0)))))
        self.send_response(204)
        self.end_headers()
    def log_message(self, *a):
        pass
srv = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
threading.Thread(target=srv.serve_forever, daemon=True).start()
hook_url = "http://127.0.0.1:%d/hook" % srv.server_address[1]

def api_status(token, path):
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = False
    req = urllib.request.Request(url + path, headers={"Authorization": "Bearer " + token})
    try:
        return urllib.request.urlopen(req, context=ctx, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code

d = console_lib.chrome(1280, 1000, page_size=False)
wait = WebDriverWait(d, 30)
find = lambda css, root=None: (root or d).find_element(By.CSS_SELECTOR, css)
click = lambda el: console_lib.click(d, el)
def text_in(css, text):
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))
def login(user, password):
    console_lib.login(d, url, user, password)
    d.get(url + "/#/settings")
def ok(what):
    print("ok: " + what, flush=True)
log = []
try:
    login("admin", "console admin password")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, '#user-table tr[data-user="admin"]')))
    assert not find('#user-table tr[data-user="admin"] button.delete-user').is_enabled(), \
        "own account deletable"
    # ---- users
    f = find("#user-create")
    find("[name=name]", f).send_keys("alice")
    find("[name=password]", f).send_keys("alice long password")
    find("[name=password2]", f).send_keys("alice long password")
    click(find("button[type=submit]", f))
    row_css = '#user-table tr[data-user="alice"]'
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, row_css)))
    Select(find(row_css + " select.user-role")).select_by_value("auditor")
    wait.until(EC.alert_is_present())
    d.switch_to.alert.accept()
    text_in("#settings-s0", "alice is now auditor")
    click(find(row_css + " button.reset-password"))
    pw = find(row_css + " .inline-form input")
    pw.send_keys("short")
    click(find(row_css + " .inline-form button[type=submit]"))
    text_in(row_css, "at least 12 characters")
    pw.clear()
    pw.send_keys("alice second password")
    click(find(row_css + " .inline-form button[type=submit]"))
    text_in("#settings-s0", "password of alice was changed")
    ok("users: added, role changed, password reset (a short one refused in words)")
    # ---- tokens
    f = find("#token-create")
    find("[name=name]", f).send_keys("ci-runner")
    Select(find("[name=role]", f)).select_by_value("operator")
    click(find("button[type=submit]", f))
    secret_el = wait.until(EC.presence_of_element_located((By.ID, "token-secret")))
    secret = secret_el.get_attribute("value")
    assert secret.startswith("haven_"), secret[:6]
    assert "only time" in find("#token-secret-box").text
    assert find("#token-copy").is_displayed()
    assert api_status(secret, "/api/v1/jobs") == 200
    click(find("#token-done"))
    assert not d.find_elements(By.ID, "token-secret"), "the secret stays on the page"
    assert secret not in d.page_source
    row = find('#token-table tr[data-name="ci-runner"]')
    click(find("button.revoke-token", row))
    wait.until(EC.alert_is_present())
    d.switch_to.alert.accept()
    text_in("#settings-s1", "ci-runner was revoked")
    assert api_status(secret, "/api/v1/jobs") == 401
    ok("tokens: the secret shown once works, is gone when dismissed, refused after revoke")
    # ---- notifications
    form = find("#notify-form")
    find("[name=webhook_url]", form).send_keys(hook_url)
    find("[name=webhook_secret]", form).send_keys("browser-secret-123")
    click(find("#notify-save"))
    text_in("#notify-form", "Saved.")
    text_in("#notify-effect", "webhook on")
    click(find("#notify-test"))
    text_in("#notify-test-result", "Test sent.")
    assert [h[0] for h in hooks] == ["test"], hooks
    assert "browser-secret-123" not in d.page_source
    form = find("#notify-form")
    find("[name=smtp_url]", form).send_keys("http://mail")
    find("[name=smtp_from]", form).send_keys("haven@example.org")
    find("[name=smtp_to]", form).send_keys("ops@example.org")
    click(find("#notify-save"))
    text_in("#notify-form .error", "smtp_url must be an smtp:// or smtps:// URL")
    ok("notifications: saved, the test arrives, a bad SMTP URL refused in words")
    log += console_lib.browser_log(d)
    # ---- an auditor
    click(find("#logout"))
    login("alice", "alice second password")
    text_in("#view", "managed by an admin")
    assert not d.find_elements(By.ID, "user-table")
    ok("an auditor sees a notice and no tables")
    # ---- delete alice as admin
    click(find("#logout"))
    login("admin", "console admin password")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, row_css)))
    click(find(row_css + " button.delete-user"))
    wait.until(EC.alert_is_present())
    d.switch_to.alert.accept()
    text_in("#settings-s0", "alice was deleted")
    assert not d.find_elements(By.CSS_SELECTOR, row_css)
    ok("users: deleted")
    log += console_lib.browser_log(d)
finally:
    d.quit()
# Expected: /me before login (401), pages not written yet (404), the
# refused settings (400).
bad = [e["message"] for e in console_lib.errors(log, lambda e: (
    "/api/v1/me " in e["message"] and "401" in e["message"] or
    "/js/pages/" in e["message"] and "404" in e["message"] or
    "/api/v1/settings/notifications " in e["message"] and "400" in e["message"]))]
assert not bad, bad
ok("no unexpected error in the browser's console")
PYEOF
havend_stop d
echo "console_settings_test: passed"
