"""Headless Chromium for checking reports: the system's browser driven by Selenium, offline.

Used by the browser tests, ``benchmarks/report.py`` and the documentation's screenshots. It
needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install -y chromium
chromium-driver``) and the ``selenium`` package (the ``dev`` extra); no browser or driver is
ever downloaded. The browser keeps a performance log, so a caller can list every request a page
made (``requests``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
MISSING = (
    "no Chromium here: apt-get install -y chromium chromium-driver (and pip install selenium, "
    "the dev extra)"
)


def chromium_missing() -> str | None:
    """Why the browser cannot run here (one line), or None when it can."""
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        return MISSING
    try:
        import selenium  # noqa: F401
    except ImportError:
        return MISSING
    return None


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A headless Chromium WebDriver with a fresh profile, quit and removed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="quackae-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_page_load_timeout(120)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def requests(driver: Any) -> list[str]:
    """URLs requested since the last call (the performance log's ``Network.requestWillBeSent``)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def settle(driver: Any) -> None:
    """Open ``about:blank`` and drop the log of the browser's own start-up pages."""
    driver.get("about:blank")
    requests(driver)


def file_url(path: Path) -> str:
    """``file://`` URL of a local file."""
    return Path(path).resolve().as_uri()


def screenshot(driver: Any, path: Path, max_height: int = 3000) -> Path:
    """A PNG of the page from its top, as tall as the page (at most ``max_height`` pixels)."""
    width = driver.get_window_size()["width"]
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(width, min(max(height, 400), max_height))
    driver.save_screenshot(str(path))
    return Path(path)
