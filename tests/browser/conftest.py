"""Headless Chromium (Debian's build) driven by Playwright against a live server."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from tests.conftest import CHROMIUM, CHROMIUM_ARGS

BROWSER_MISSING = not os.path.exists(CHROMIUM)


def pytest_collection_modifyitems(config, items):
    if not BROWSER_MISSING:
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is missing: browser tests NOT run "
                                   "(install Debian's chromium; `make test` does as root)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": CHROMIUM,
            "args": [*browser_type_launch_args.get("args", []), *CHROMIUM_ARGS]}


@pytest.fixture
def live_server(app_factory) -> Iterator[str]:
    """The app served over real HTTP in a thread; yields its base URL."""
    holder = {}
    # The base URL must be known before the app is built, for links in e-mails.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    holder["app"] = app_factory(PUBLIC_BASE_URL=base_url)
    server = make_server("127.0.0.1", port, holder["app"], threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    live = LiveServer(base_url, holder["app"])
    yield live
    server.shutdown()
    thread.join(timeout=10)


class LiveServer(str):
    def __new__(cls, url, app):
        instance = super().__new__(cls, url)
        instance.app = app
        return instance
