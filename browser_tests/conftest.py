"""pytest-playwright's fixtures (``page``, ``context``, ``browser``) on the system Chromium,
and a web server on 127.0.0.1 for the site under test.

Chromium is ``$CHROMIUM``, else ``chromium`` (Debian's package), ``chromium-browser`` or
``google-chrome`` on the PATH, else Playwright's own build (``python -m playwright install
chromium``). Every test gets a fresh context with a 1280x900 window.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def find_chromium() -> str | None:
    """Path of the Chromium to launch, or None to use Playwright's bundled build."""
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (path := shutil.which(name)):
            return path
    return None


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright's launch arguments, on the system Chromium, headless and sandbox-free."""
    return {**browser_type_launch_args, "executable_path": find_chromium(), "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def base_url():
    """No one base URL: each site is served on its own port (``serve``). (Also keeps
    pytest-playwright's fallback fixture, deprecated under pytest 9, out of the run.)"""
    return None


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    """pytest-playwright's context arguments, with a desktop-sized window."""
    return {**browser_context_args, "viewport": {"width": 1280, "height": 900}}


@pytest.fixture(scope="session")
def browser(launch_browser, browser_type_launch_args):
    """pytest-playwright's browser, with a failure that says what to install when it cannot start."""
    try:
        browser = launch_browser()
    except PlaywrightError as err:
        where = browser_type_launch_args["executable_path"] or "Playwright's bundled Chromium"
        raise pytest.fail.Exception(  # pytest.fail, without Playwright's launch log
            f"could not start Chromium ({where}): {str(err).splitlines()[0]}. Install it "
            "(Debian/Ubuntu: apt-get install chromium; elsewhere: python -m playwright install "
            "chromium) or set CHROMIUM to a Chromium or Chrome executable.",
            pytrace=False,
        ) from None
    yield browser
    browser.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def serve():
    """``serve(folder)`` serves ``folder`` on a free port of 127.0.0.1 for the rest of the
    session and returns its base URL (ending in '/')."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
