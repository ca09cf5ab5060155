"""Headless Chromium (Debian's build) driven by Playwright against a live server."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from flask import Flask
from werkzeug.serving import make_server

from config import TestingConfig
from donorhub.payments.jobs import run_event_worker
from stripe_simulator import start_simulator
from tests.browser.audits import AXE_SOURCE, AxeAudit
from tests.helpers import CHROMIUM, CHROMIUM_ARGS, in_ci, require
from tests.metrics import METRICS

BROWSER_MISSING = not os.path.exists(CHROMIUM)


def pytest_collection_modifyitems(config, items):
    # The slow tier runs only when asked for (`make test-slow` is `pytest -m slow`).
    if "slow" not in (config.option.markexpr or ""):
        slow = pytest.mark.skip(reason="slow tier: run by `make test-slow`")
        for item in items:
            if "browser" in item.keywords and "slow" in item.keywords:
                item.add_marker(slow)
    if not BROWSER_MISSING or in_ci():
        return
    skip = pytest.mark.skip(
        reason=f"{CHROMIUM} is missing: browser tests NOT run "
        "(install Debian's chromium; `make test` does as root)"
    )
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _chromium_installed():
    """Under CI=true a missing Chromium fails the browser tests instead of skipping them."""
    if BROWSER_MISSING and in_ci():
        require(False, f"{CHROMIUM} (Debian's chromium; `make browser`)", "the browser tests")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [*browser_type_launch_args.get("args", []), *CHROMIUM_ARGS],
    }


@pytest.fixture
def live_server(app_factory) -> Iterator[str]:
    """The app served over real HTTP in a thread; yields its base URL."""
    holder = {}
    # The base URL must be known before the app is built, for links in e-mails.
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


@dataclass(frozen=True)
class SimulatorBesideApp:
    """The running simulator and the app it delivers to: settle_webhooks waits for that
    app's event worker too."""

    base_url: str
    shutdown: Callable[[], None]
    donorhub_app: Flask


@pytest.fixture
def giving_server(app_factory):
    """The app over real HTTP, with a simulator that delivers webhooks to it, and the event
    worker applying what the webhook stored (polling: the tests' SQLite has no NOTIFY)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    running = start_simulator(
        f"{base_url}/stripe/webhook",
        TestingConfig.STRIPE_WEBHOOK_SECRET,
        deliver_webhooks=True,
        webhook_retry_delays=(0.2, 0.5, 1),
    )
    app = app_factory(
        PUBLIC_BASE_URL=base_url,
        STRIPE_API_BASE=running.base_url,
        CSP_FORM_ACTION=[running.base_url],
    )
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sim = SimulatorBesideApp(running.base_url, running.shutdown, app)
    stop = threading.Event()
    worker = threading.Thread(target=run_event_worker, args=(app, stop), daemon=True)
    worker.start()
    yield base_url, app, sim
    stop.set()
    worker.join(timeout=30)
    server.shutdown()
    thread.join(timeout=10)
    sim.shutdown()


@pytest.fixture
def axe(page) -> Iterator[AxeAudit]:
    """axe-core for this test's page; fails the test on serious or critical violations, or
    on a page that the journey showed but never audited."""
    if not AXE_SOURCE.exists():
        pytest.fail(f"{AXE_SOURCE} is missing: run `npm ci` (make test does)")
    audit = AxeAudit()
    audit.watch(page)
    yield audit
    failures = audit.failures()
    METRICS.tally(
        "8.2 axe-core: pages audited / serious or critical / moderate or minor",
        pages=audit.checks,
        serious_or_critical=len(failures),
        moderate_or_minor=sum(len(v) for v in audit.audited.values()) - len(failures),
    )
    audit.verdict()
