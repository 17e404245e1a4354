"""The operator console in a real browser (headless chromium): login required, a response in
the list and its steps on its page, a prompt's HTML shown as text and never run, cancel from
the page, and the live tail growing without a reload. A worker process runs the background
responses; the fake upstream streams slowly where a test needs time to act.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openai
import pytest

from app.config import Settings
from tests.fakes.upstream.spy import stream_end, stream_state
from tests.support import PROJECT_ROOT
from tests.support.browser import headless_chromium, log_in, require_browser
from tests.support.clients import sdk_client
from tests.support.servers import running_api
from tests.support.waiting import wait_for

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

ADMIN_KEY = "console-admin-key-5f2a"
SCREENSHOT = PROJECT_ROOT / "docs" / "console.png"
# Words streamed 150 ms apart: several seconds in which the page can act and watch.
SLOW = " ".join(f"w{i}" for i in range(50)) + " [[delay:150]]"
HOSTILE = (
    '<b id="injected">bold</b><img id="injected-img" src="x" '
    "onerror=\"window.__pwned = 'img'\"><script>window.__pwned = 'script'</script>"
)

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    require_browser()
    with headless_chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def console_url(make_settings: Callable[..., Settings]) -> Iterator[str]:
    """An API with an admin key for the console; the API itself stays open."""
    with running_api(make_settings(admin_api_keys=ADMIN_KEY)) as url:
        yield url


@pytest.fixture(scope="module")
def sdk(console_url: str) -> Iterator[openai.OpenAI]:
    with sdk_client(console_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def logged_in(browser: WebDriver, console_url: str) -> WebDriver:
    log_in(browser, console_url, ADMIN_KEY)
    wait_for(lambda: browser.current_url.rstrip("/").endswith("/console"), what="the overview")
    return browser


def by_css(driver: WebDriver, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def text_of(driver: WebDriver, selector: str) -> str:
    """The text of the first element `selector` finds, read in one step: the page swaps
    parts of itself while a response runs."""
    script = "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';"
    return str(driver.execute_script(script, selector))


def live_status(driver: WebDriver) -> str | None:
    script = (
        "const e = document.querySelector('#live .live-body');"
        " return e ? e.getAttribute('data-status') : null;"
    )
    status = driver.execute_script(script)
    return str(status) if status is not None else None


def test_the_console_asks_for_an_admin_key(browser: WebDriver, console_url: str) -> None:
    browser.delete_all_cookies()
    browser.get(f"{console_url}/console")
    assert "/console/login" in browser.current_url
    assert by_css(browser, "#status-counts") == []

    log_in(browser, console_url, "not-an-admin-key")
    wait_for(lambda: by_css(browser, "#login-error"), what="the refusal")
    assert "does not open the console" in text_of(browser, "#login-error")
    assert "/console/login" in browser.current_url

    log_in(browser, console_url, ADMIN_KEY)
    wait_for(lambda: by_css(browser, "#status-counts"), what="the overview")
    cookie = browser.get_cookie("ferry_console")
    assert cookie is not None
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    # A script on the page cannot read the session.
    assert "ferry_console" not in str(browser.execute_script("return document.cookie"))


def test_a_response_is_listed_and_its_page_shows_its_steps(
    logged_in: WebDriver, console_url: str, sdk: openai.OpenAI
) -> None:
    marker = f"console-steps-{uuid.uuid4().hex[:8]}"
    done = sdk.responses.create(
        model="demo", input=f'{marker} [[call:lookup_weather {{"city": "Oslo"}}]]'
    )
    assert done.status == "completed"

    logged_in.get(f"{console_url}/console")
    row = f'#response-list tr[data-id="{done.id}"]'
    wait_for(lambda: by_css(logged_in, row), what="the response in the list")
    by_css(logged_in, f"{row} a.rid")[0].click()
    wait_for(lambda: done.id in logged_in.current_url, what="the response's page")

    steps = by_css(logged_in, "#timeline li.k-step")
    names = [step.find_element("css selector", ".what").text for step in steps]
    assert names == ["model turn", "tool call: lookup_weather", "model turn"]
    assert live_status(logged_in) == "completed"
    # A step's output opens on demand and holds what the tool answered.
    tool_step = steps[1]
    tool_step.find_element("css selector", 'details[data-key$="-out"] > summary').click()
    assert "Oslo" in tool_step.text
    assert "attempt 1" in tool_step.text
    assert "in " in text_of(logged_in, "#usage")


def test_html_in_a_prompt_is_shown_as_text_and_never_run(
    logged_in: WebDriver, console_url: str, sdk: openai.OpenAI
) -> None:
    with sdk.responses.create(
        model="demo", input=f"Echo {HOSTILE}", background=True, stream=True
    ) as stream:
        response_id = next(iter(stream)).response.id
    wait_for(lambda: sdk.responses.retrieve(response_id).status == "completed")

    logged_in.get(f"{console_url}/console/responses/{response_id}")
    wait_for(lambda: by_css(logged_in, '#event-log[data-complete="true"]'), what="the whole log")
    assert by_css(logged_in, "#injected") == [] and by_css(logged_in, "#injected-img") == []
    assert logged_in.execute_script("return window.__pwned === undefined") is True
    # The markup reads as the text it is: in the input, the output, and the live event log.
    assert '<b id="injected">bold</b>' in text_of(logged_in, "#input summary")
    assert "<script>" in text_of(logged_in, "#output summary")
    deltas = text_of(logged_in, '#event-log tr[data-type="response.output_text.delta"]')
    assert "<script>window.__pwned" in deltas


def test_cancel_on_the_page_stops_a_running_response(
    logged_in: WebDriver, console_url: str, sdk: openai.OpenAI, upstream_url: str
) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    marker = f"console-cancel-{uuid.uuid4().hex[:8]}"
    queued = sdk.responses.create(model="demo", input=f"{marker} {SLOW}", background=True)
    wait_for(lambda: stream_state(upstream_url, marker) == "open", what="the upstream stream")

    logged_in.get(f"{console_url}/console/responses/{queued.id}")
    assert live_status(logged_in) == "in_progress"
    by_css(logged_in, "#cancel")[0].click()

    def confirmation() -> Any:
        try:
            return logged_in.switch_to.alert
        except NoAlertPresentException:
            return None

    wait_for(confirmation, what="the confirmation").accept()
    wait_for(lambda: live_status(logged_in) == "cancelled", what="the page to say cancelled")
    assert stream_end(upstream_url, marker) == "abandoned"
    assert sdk.responses.retrieve(queued.id).status == "cancelled"
    assert by_css(logged_in, "#cancel") == [] and by_css(logged_in, "#delete") != []


def test_the_live_tail_shows_new_events_without_a_reload(
    logged_in: WebDriver, console_url: str, sdk: openai.OpenAI
) -> None:
    marker = f"console-tail-{uuid.uuid4().hex[:8]}"
    with sdk.responses.create(
        model="demo", input=f"{marker} {SLOW}", background=True, stream=True
    ) as stream:
        response_id = next(iter(stream)).response.id

    logged_in.get(f"{console_url}/console/responses/{response_id}")
    logged_in.execute_script("window.__sameDocument = true")

    def last_seq() -> int:
        value = logged_in.execute_script(
            "return document.getElementById('event-log').getAttribute('data-last-seq')"
        )
        return int(value) if value else -1

    seen = last_seq()
    assert live_status(logged_in) != "completed", "the response ended before the page watched"
    wait_for(lambda: last_seq() > seen, what="new events on the page")
    wait_for(
        lambda: by_css(logged_in, '#event-log tr[data-type="response.completed"]'),
        timeout_s=30,
        what="the terminal event on the page",
    )
    assert logged_in.execute_script("return window.__sameDocument") is True
    # The timeline followed too, in place.
    wait_for(lambda: live_status(logged_in) == "completed", what="the timeline to end")
    assert logged_in.execute_script("return window.__sameDocument") is True
    assert "w49" in text_of(logged_in, '#event-log tr[data-type="response.output_text.delta"]')


def test_pages_fit_a_phone_screen(
    logged_in: WebDriver, console_url: str, sdk: openai.OpenAI
) -> None:
    done = sdk.responses.create(
        model="demo", input='On a phone [[call:lookup_weather {"city": "Bergen"}]]'
    )
    logged_in.set_window_size(390, 844)
    try:
        for path in ("/console", f"/console/responses/{done.id}", "/console/login"):
            logged_in.get(f"{console_url}{path}")
            overflow = logged_in.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 1, f"{path} is {overflow}px wider than the screen"
    finally:
        logged_in.set_window_size(1280, 900)


def test_the_overview_screenshot(
    logged_in: WebDriver, console_url: str, sdk: openai.OpenAI, tmp_path: Path
) -> None:
    """The README's picture, taken here; written to docs/ when FERRY_UPDATE_SCREENSHOT=1."""
    assert sdk.responses.create(model="demo", input="[[status:503]] refused").status == "failed"
    logged_in.get(f"{console_url}/console?limit=12")
    wait_for(lambda: by_css(logged_in, "#response-list"), what="the list")
    # The whole page in one picture: the window made as tall as the page (within reason).
    height = int(logged_in.execute_script("return document.documentElement.scrollHeight"))
    frame = int(logged_in.execute_script("return window.outerHeight - window.innerHeight"))
    viewport = min(height, 2400)
    logged_in.set_window_size(1280, viewport + frame)
    try:
        wait_for(
            lambda: logged_in.execute_script("return window.innerHeight") >= viewport,
            what="the window to grow",
        )
        png = logged_in.get_screenshot_as_png()
    finally:
        logged_in.set_window_size(1280, 900)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    (tmp_path / "console.png").write_bytes(png)
    if os.environ.get("FERRY_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        SCREENSHOT.write_bytes(png)
