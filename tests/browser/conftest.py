"""Fixtures for the browser tests: Debian's chromium driven by Playwright.

The browser is never downloaded: chromium must be installed at CHROMIUM (the
test setup installs it); without it these tests fail, they do not skip.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fake_api import create_app
from pages import RecordedPage
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# Module scope: sync Playwright holds an event loop on this thread while it runs,
# which async tests elsewhere in the session must not find.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def recorded(browser: Browser) -> Iterator[RecordedPage]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    rec = RecordedPage(context)
    yield rec
    context.close()
    assert rec.errors == [], f"script errors in the page: {rec.errors}"
    assert rec.policy_violations() == []


@pytest.fixture
def page(recorded: RecordedPage) -> Page:
    return recorded.page


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture(scope="module")
def fake_url() -> Iterator[str]:
    """The pages served by a scripted API on a free port (see fake_api)."""
    sock = _free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the scripted API did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=5)
    sock.close()


@pytest.fixture
def browser_page_375(browser: Browser) -> Iterator[Page]:
    """A phone-sized page (375 px wide)."""
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()
