"""Shared selenium set-up of the console's browser tests (console_test.py,
the python parts of console_settings_test.sh and console_archive_test.sh):
Debian's headless chromium and chromium-driver for /usr/bin/python3
(scripts/install-deps.sh; havend_need_browser in havend_lib.sh checks them).

console_test.py imports it from its own folder; a heredoc run as
`PYTHONPATH=$HAVEND_TESTS /usr/bin/python3 - ...` does too."""
import os

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def chrome(width=1280, height=900, profile=None, downloads=None, page_size=True):
    """A headless chromium (window width x height) that keeps its console
    log ("browser": ALL) and trusts havend's self-signed certificate.
    profile: its --user-data-dir. downloads: a folder the browser saves
    downloads to without asking (the preference, and Page.setDownloadBehavior
    over CDP: headless chromium ignores the preference alone). page_size:
    the page itself is width x height (--window-size is the window's).
    No chromedriver log: it would hold the typed passwords (sendKeys)."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--ignore-certificate-errors", f"--window-size={width},{height}",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--disable-background-networking", "--disable-component-update"]
    if profile:
        args.append(f"--user-data-dir={profile}")
    for a in args:
        opts.add_argument(a)
    if downloads:
        os.makedirs(downloads, exist_ok=True)
        opts.add_experimental_option("prefs", {
            "download.default_directory": downloads,
            "download.prompt_for_download": False,
            "download.directory_upgrade": True,
            "safebrowsing.enabled": False,
        })
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    try:
        if page_size:
            set_page_size(d, width, height)
        if downloads:
            d.execute_cdp_cmd("Page.setDownloadBehavior",
                              {"behavior": "allow", "downloadPath": downloads})
    except BaseException:
        d.quit()
        raise
    return d


def set_page_size(d, width, height, mobile=False):
    """The page (not the window) width x height, over CDP."""
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})


def click(d, el):
    """Scrolls el to the middle of the page, then clicks it."""
    d.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
    el.click()


def read_password(path):
    """The first line of a password file, without its newline."""
    with open(path) as f:
        return f.readline().rstrip("\n")


def login(d, url, user, password, timeout=30):
    """Logs in on the console's login form at url + "/" and waits until the
    console shows #logout."""
    wait = WebDriverWait(d, timeout)
    d.get(url + "/")
    for sel, text in (("#login-user", user), ("#login-password", password)):
        el = wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, sel)))
        el.clear()
        el.send_keys(text)
    click(d, d.find_element(By.CSS_SELECTOR, "#login-submit"))
    wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#logout")))


def browser_log(d, quiet=False):
    """The browser's console log since the last read (chromedriver empties
    it on every read). quiet: [] when the browser cannot be asked (it is
    gone), else that raises."""
    try:
        return d.get_log("browser")
    except WebDriverException:
        if quiet:
            return []
        raise


def is_csp(e):
    """A Content-Security-Policy refusal."""
    return "Content Security Policy" in e["message"] or "Refused" in e["message"]


def errors(entries, expected=None):
    """The entries that are errors (SEVERE, or a Content-Security-Policy
    refusal at any level) but those expected(entry) allows."""
    return [e for e in entries if (e["level"] == "SEVERE" or is_csp(e))
            and not (expected and expected(e))]
