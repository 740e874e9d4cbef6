#!/usr/bin/env bash
# The file browser's archive download (#download-zip, #download-tar in
# appliance/console/js/pages/files.js) in Debian's headless chromium against
# a real havend over HTTPS on loopback: the button posts a hidden HTML form
# (fields request and csrf_token) and the browser's download manager saves
# the streamed archive — it is never held in the page's memory.
#  - a file point of a copy of /etc: select etc, "Download as zip"; the zip
#    lands in the download folder and bsdtar extracts it equal to the source
#  - the page stays on the file browser (the answer is an attachment) and
#    says the download started; then a tar of one file the same way
#  - no Content-Security-Policy error in the browser's console, and no
#    error at all once on the file browser
# Screenshots go to $HAVEN_BUILD_DIR/test-artifacts/console-archive when
# HAVEN_BUILD_DIR is set.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/havend_lib.sh"
: "${HAVEN_SOURCE_DIR:?HAVEN_SOURCE_DIR must point at the checkout}"
SEL=/usr/bin/python3
"$SEL" -c 'import selenium' 2>/dev/null || fail "python3-selenium is missing (scripts/install-deps.sh)"
command -v chromedriver >/dev/null || fail "chromium-driver is missing (scripts/install-deps.sh)"
for c in bsdtar unshare; do
  command -v "$c" >/dev/null || fail "$c is missing (scripts/install-deps.sh installs it)"
done

DPID=
cleanup() {
  set +e
  [ -n "$DPID" ] && { kill -9 "$DPID" 2>/dev/null; wait "$DPID" 2>/dev/null; }
  rm -rf "$WORK"
}
trap cleanup EXIT
SHOTS=$WORK/shots
[ -n "${HAVEN_BUILD_DIR:-}" ] && SHOTS=$HAVEN_BUILD_DIR/test-artifacts/console-archive
mkdir -p "$SHOTS"

STATE=$WORK/state
R=$WORK/repo
SRC=$WORK/root
mkdir -p "$SRC"
cp -a /etc "$SRC/etc"
haven -q -r "$R" init
NS=(unshare -m)
[ "$(id -u)" = 0 ] || NS=(unshare -rm)
expect_rc 0 "backup files" "${NS[@]}" sh -c 'mount --bind "$1/etc" /etc && shift && exec "$@"' \
  - "$SRC" "$HAVEN" -r "$R" --json backup files /etc --name etcfiles
ID=$(jget 'j["snapshot"]' "$WORK/out")
echo "$HAVEN_PASSWORD" >"$WORK/pw"
chmod 600 "$WORK/pw"
printf '%s\n' 'console admin password' >"$WORK/adminpw"
"$HAVEND" admin password --state-dir "$STATE" --password-file "$WORK/adminpw" 2>"$WORK/err" ||
  fail "admin password: $(cat "$WORK/err")"
havend_start d --repository main="$R" --password-file "$WORK/pw" \
  --console-dir "$HAVEN_SOURCE_DIR/appliance/console"
DL=$WORK/downloads
mkdir -p "$DL"

"$SEL" - "$URL" "$ID" "$DL" "$SHOTS" "$WORK/adminpw" "$WORK/chromium" <<'PYEOF' || fail "the archive download in the browser (above)"
import os, sys, time
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

url, point, downloads, shots, pwfile, profile = sys.argv[1:7]
opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
          "--ignore-certificate-errors", "--window-size=1280,900", "--no-first-run",
          "--disable-extensions", "--disable-background-networking",
          f"--user-data-dir={profile}"):
    opts.add_argument(a)
opts.add_experimental_option("prefs", {"download.default_directory": downloads,
                                       "download.prompt_for_download": False})
opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
d = webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))
wait = WebDriverWait(d, 60)
def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    d.save_screenshot(os.path.join(shots, "failure.png"))
    sys.exit(1)
def find(sel):
    return wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, sel)))
def click(el):
    d.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
    el.click()
def saved(suffix, before, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        names = set(os.listdir(downloads)) - before
        done = [n for n in names if n.endswith(suffix)]
        if done and not any(n.endswith(".crdownload") for n in os.listdir(downloads)):
            return done[0]
        time.sleep(0.25)
    fail(f"no {suffix} in {downloads} after {timeout} s: {os.listdir(downloads)}")
try:
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})
    d.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})
    d.get(url + "/")
    for sel, text in (("#login-user", "admin"),
                      ("#login-password", open(pwfile).readline().rstrip("\n"))):
        el = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, sel)))
        el.clear()
        el.send_keys(text)
    find("#login-submit").click()
    wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#logout")))

    files = f"{url}/#/files?repo=main&id={point}&path=/"
    d.get(files)
    row = find('#file-table tr[data-name="etc"]')
    # Before the file browser: the 401 of /me before the login, the
    # dashboard's requests cut off by leaving it. Only CSP errors count.
    early = [e for e in d.get_log("browser")
             if "Content Security Policy" in e["message"] or "Refused" in e["message"]]
    if early:
        fail(f"CSP errors in the browser's console: {early}")
    click(row.find_element(By.CSS_SELECTOR, "input.pick"))
    zip_btn = find("#download-zip")
    wait.until(lambda _: zip_btn.is_enabled())
    click(zip_btn)
    name = saved(".zip", set())
    print("saved", name)
    if not d.current_url.startswith(files.split("#")[0]) or "#/files?" not in d.current_url:
        fail(f"the page left the file browser: {d.current_url}")
    find("#download-zip")  # the page is still there
    status = d.find_element(By.CSS_SELECTOR, "#view").text
    if "downloading" not in status:
        fail(f"the page does not say the download started: {status[:500]!r}")
    d.save_screenshot(os.path.join(shots, "files-zip-started.png"))
    with open(os.path.join(downloads, "zip.name"), "w") as f:
        f.write(name)

    # One file as tar, from inside /etc (the selection stays while walking
    # the folders: clear it first).
    d.get(f"{url}/#/files?repo=main&id={point}&path=/etc")
    click(find("#file-clear-selection"))
    click(find('#file-table tr[data-name="passwd"] input.pick'))
    before = set(os.listdir(downloads))
    click(find("#download-tar"))
    name = saved(".tar", before)
    print("saved", name)
    with open(os.path.join(downloads, "tar.name"), "w") as f:
        f.write(name)
    d.save_screenshot(os.path.join(shots, "files-tar-started.png"))

    # Dark, phone width: the notice and buttons still read.
    d.execute_cdp_cmd("Emulation.setEmulatedMedia",
                      {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
    d.save_screenshot(os.path.join(shots, "files-tar-started-390-dark.png"))

    logs = d.get_log("browser")
    for e in logs:
        print("browser:", e["level"], e["message"][:300])
    bad = [e for e in logs if e["level"] == "SEVERE" or "Content Security Policy" in e["message"]
           or "Refused" in e["message"]]
    if bad:
        fail(f"errors in the browser's console: {bad}")
except Exception:
    d.save_screenshot(os.path.join(shots, "failure.png"))
    print("page:", d.current_url, d.find_element(By.TAG_NAME, "body").text[:1000], file=sys.stderr)
    raise
finally:
    d.quit()
PYEOF

zip=$(cat "$DL/zip.name")
rm -rf "$WORK/x" && mkdir "$WORK/x"
bsdtar -xf "$DL/$zip" -C "$WORK/x" || fail "bsdtar cannot read $zip"
diff -r --no-dereference "$SRC/etc" "$WORK/x/etc" >"$WORK/diff" 2>&1 ||
  fail "the zip differs from the source: $(head -20 "$WORK/diff")"
[ "$zip" = "etcfiles-${ID:0:8}.zip" ] || fail "the zip is named $zip"
ok "#download-zip: the browser saved $zip (a form POST with csrf_token, streamed), equal to the source /etc"
tar=$(cat "$DL/tar.name")
[ "$(bsdtar -tf "$DL/$tar")" = passwd ] || fail "the tar holds $(bsdtar -tf "$DL/$tar" | head)"
bsdtar -xOf "$DL/$tar" passwd | cmp - "$SRC/etc/passwd" || fail "passwd in $tar differs"
ok "#download-tar of /etc/passwd: $tar holds passwd byte-identical; no CSP or other error in the console"
havend_stop d
echo "PASS: $PASS checks"
