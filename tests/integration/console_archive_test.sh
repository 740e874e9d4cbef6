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
havend_need_browser fail
havend_need bsdtar unshare

havend_trap
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
havend_repo_password
havend_admin_password "$WORK/adminpw" 'console admin password'
havend_start d --repository main="$R" --password-file "$WORK/pw" \
  --console-dir "$HAVEN_SOURCE_DIR/appliance/console"
DL=$WORK/downloads
mkdir -p "$DL"

PYTHONPATH=$HAVEND_TESTS "$BROWSER_PY" - "$URL" "$ID" "$DL" "$SHOTS" "$WORK/adminpw" "$WORK/chromium" <<'PYEOF' || fail "the archive download in the browser (above)"
import os, sys, time
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait
import console_lib

url, point, downloads, shots, pwfile, profile = sys.argv[1:7]
# A page of 1280x900, downloads into the download folder (console_lib.py).
d = console_lib.chrome(1280, 900, profile=profile, downloads=downloads)
wait = WebDriverWait(d, 60)
def fail(msg):
    print("FAIL:", msg, file=sys.stderr)
    d.save_screenshot(os.path.join(shots, "failure.png"))
    sys.exit(1)
def find(sel):
    return wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, sel)))
click = lambda el: console_lib.click(d, el)
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
    console_lib.login(d, url, "admin", console_lib.read_password(pwfile), timeout=60)

    files = f"{url}/#/files?repo=main&id={point}&path=/"
    d.get(files)
    row = find('#file-table tr[data-name="etc"]')
    # Before the file browser: the 401 of /me before the login, the
    # dashboard's requests cut off by leaving it. Only CSP errors count.
    early = [e for e in console_lib.browser_log(d) if console_lib.is_csp(e)]
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
    console_lib.set_page_size(d, 390, 844, mobile=True)
    d.save_screenshot(os.path.join(shots, "files-tar-started-390-dark.png"))

    logs = console_lib.browser_log(d)
    for e in logs:
        print("browser:", e["level"], e["message"][:300])
    bad = console_lib.errors(logs)
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
