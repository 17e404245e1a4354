"""A real browser for the console's tests: the system's chromium, headless, driven by
selenium through the system's chromedriver. Nothing is downloaded: without them the browser
tests skip, saying how to get them, except under CI (CI=true), where they must run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
HOW_TO_GET_IT = (
    "install Debian's browser and driver with `apt-get install -y chromium chromium-driver` "
    "(or set CHROMIUM and CHROMEDRIVER), and selenium with `pip install -e '.[test]'`"
)


def missing_browser() -> str | None:
    """What is missing to drive a browser; None when nothing is."""
    missing = []
    if importlib.util.find_spec("selenium") is None:
        missing.append("selenium is not installed")
    if not CHROMIUM.is_file():
        missing.append(f"no browser at {CHROMIUM}")
    if not CHROMEDRIVER.is_file():
        missing.append(f"no driver at {CHROMEDRIVER}")
    return "; ".join(missing) or None


def require_browser() -> None:
    """Skip the test when no browser can be driven here; under CI, fail instead."""
    missing = missing_browser()
    if missing is None:
        return
    message = f"browser tests need a headless chromium: {missing}; {HOW_TO_GET_IT}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def headless_chromium(width: int = 1280, height: int = 900) -> Iterator[WebDriver]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # Selenium's own manager would look for (and download) a browser: told where both are,
    # and to stay offline, it never runs.
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # containers run as root, where chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def log_in(driver: WebDriver, base_url: str, key: str, *, then: str = "/console") -> None:
    """Log in afresh through the console's form with `key`, to land on `then`."""
    from urllib.parse import quote

    from selenium.webdriver.common.by import By

    driver.get(f"{base_url}/console/login")
    driver.delete_all_cookies()  # a session from before would skip the form
    driver.get(f"{base_url}/console/login?next={quote(then, safe='')}")
    field = driver.find_element(By.NAME, "key")
    field.send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()
