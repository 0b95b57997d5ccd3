"""Headless Chromium for the browser tests: Debian's `chromium` driven through its `chromedriver`.

`bash scripts/test.sh` installs both (Debian packages chromium and chromium-driver).
"""
import json
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
)  # fmt: skip
# No host name but the loopback address resolves: a page that reaches for
# anything off this machine (a CDN) finds nothing there, as on a machine
# without internet.
OFFLINE_FLAGS = ("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",)


@contextmanager
def chromium(profile: Path, *, extra_flags: Sequence[str] = ()) -> Iterator[WebDriver]:
    """Start headless Chromium with its own profile directory and its performance log on; quit it afterwards."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not (binary and chromedriver):
        pytest.fail(
            "headless Chromium is not installed: run `bash scripts/test.sh`, which installs them "
            "(Debian packages chromium and chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    # Both paths given, so Selenium Manager never tries to download a browser or a driver.
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, *extra_flags):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    # The DevTools network events, so a test can list every request the page made.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        yield driver
    finally:
        driver.quit()


def requested_urls(browser: WebDriver) -> list[str]:
    """Return the URL of every request the browser sent since the last call (DevTools Network.requestWillBeSent)."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls
