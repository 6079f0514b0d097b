"""Headless Chromium from the system's packages, driven through Selenium.

Why the system's browser: the machines that run the tests have no route to a browser download
site, and a browser fetched at run time is a version nobody chose. Debian's ``chromium`` and
``chromium-driver`` packages (installed by ``.ci/run``) are used as they are; giving Selenium the
driver's path explicitly keeps Selenium Manager, which would try to download one, out of it.

The flags keep a headless browser quiet on a closed network: no background requests, no
component updates, no sync, no QUIC probes, and a throwaway profile per browser.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service

CHROMIUM = os.environ.get("STREAMLAB_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("STREAMLAB_CHROMEDRIVER", "/usr/bin/chromedriver")
WINDOW = (1280, 900)
PAGE_LOAD_TIMEOUT_S = 30

T = TypeVar("T")


class BrowserMissing(RuntimeError):
    """Chromium or its driver is not installed; the message says which package to install."""


def check_installed() -> None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (Path(path).is_file() and os.access(path, os.X_OK)):
            raise BrowserMissing(
                f"{path} not found: apt-get install chromium chromium-driver (package {package})"
            )


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    """A fresh headless Chromium with an empty profile, closed and deleted afterwards."""
    check_installed()
    profile = tempfile.mkdtemp(prefix="streamlab-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # root in CI: Chromium's sandbox needs an unprivileged user
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-features=MediaRouter,OptimizationHints,Translate",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float = 30) -> T:
    """Poll ``probe`` until it returns something truthy; bounded, naming ``what`` on failure.

    A probe that raises a WebDriverException (an element not there yet, or replaced while the
    page re-renders) counts as "not yet".
    """
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while time.monotonic() < deadline:
        try:
            found = probe()
        except WebDriverException as error:
            last_error = error.msg or type(error).__name__
            found = None
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what} ({last_error})")


def artifacts_dir() -> Path:
    """Where screenshots go: ``$STREAMLAB_ARTIFACTS``, else the harness's run folder."""
    default = Path(os.environ.get("STREAMLAB_RUN", f"/tmp/streamlab-{os.getuid()}")) / "artifacts"
    path = Path(os.environ.get("STREAMLAB_ARTIFACTS", default))
    path.mkdir(parents=True, exist_ok=True)
    return path
