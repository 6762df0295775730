"""Debian's Chromium, driven by Playwright, for the console's tests.

`playwright install` would download a browser; the suite uses the system's instead (scripts/ensure-chromium).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator

from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.support.running import RunningServer

CHROMIUM = "/usr/bin/chromium"
# Headless as root, and quiet: the machine has no network, and Chromium's own background connections
# (updates, sync, field trials) would otherwise be refused loudly.
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Generous: the machine is small and shared.
TIMEOUT_MS = 20_000
expect.set_options(timeout=TIMEOUT_MS)


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def console_url(server: RunningServer) -> str:
    http = server.server.http
    assert http is not None, "the server has no HTTP listener"
    return f"http://127.0.0.1:{http.port}"


@contextlib.contextmanager
def visitor(browser: Browser, base_url: str) -> Iterator[Page]:
    """A page in a context of its own (its own cookies, so its own session), 1280 pixels wide."""
    context: BrowserContext = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def sign_in(page: Page, token: str) -> None:
    """As a person would: the token into the labelled field, then the button."""
    page.goto("/sign-in")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"^(?!.*/sign-in)"))


def csrf_of(page: Page) -> str:
    """The session's CSRF token, from the sign-out form every signed-in page has."""
    value = page.locator("form[action='/sign-out'] input[name=csrf]").get_attribute("value")
    assert value
    return value


def reload_until(page: Page, seen: Callable[[], bool], timeout: float = 20) -> None:
    """Reloads the page until `seen` holds, as a person waiting for something to show up would."""
    deadline = time.monotonic() + timeout
    while not seen():
        if time.monotonic() > deadline:
            raise AssertionError(f"{page.url} did not show what was expected within {timeout}s")
        time.sleep(0.2)
        page.reload()
