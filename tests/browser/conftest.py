"""Headless Chromium (Debian's build) driven by Playwright against a live server."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Error as PlaywrightError
from werkzeug.serving import make_server

from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.helpers import in_ci, require
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
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is missing: browser tests NOT run "
                                   "(install Debian's chromium; `make test` does as root)")
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


# Accessibility: axe-core (from the npm registry, test-only) run in every page of a journey ---

AXE_SOURCE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
FAILING_IMPACTS = ("serious", "critical")
AXE_TOTALS = {"pages": 0, "serious_or_critical": 0, "moderate_or_minor": 0}

_RUN_AXE = """async () => {
  const results = await axe.run(document, {resultTypes: ["violations"]});
  return results.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    targets: v.nodes.slice(0, 5).map(n => n.target.join(" ")),
  }));
}"""


def _without_fragment(url: str) -> str:
    return url.split("#", 1)[0]


class AxeAudit:
    """Runs axe-core in pages and remembers every page the journey's main frame showed.

    ``check(page)`` audits the page as it is now. At the end of the test, every page that
    was shown on an audited origin must have been audited, and no page may have a serious
    or critical violation. Pages of other origins (the simulator's stand-in for Stripe's
    hosted checkout) are not ours to audit.
    """

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.audited: dict[str, list[dict]] = {}
        self.origins: set[str] = set()
        self.checks = 0
        self._source = AXE_SOURCE.read_text()

    def watch(self, page) -> None:
        page.on("framenavigated",
                lambda frame: frame == page.main_frame and self.shown.append(
                    _without_fragment(frame.url)))

    def check(self, page, label: str = "") -> list[dict]:
        violations = None
        for attempt in range(3):
            page.wait_for_load_state("load")
            url = _without_fragment(page.url)
            try:
                if not page.evaluate("() => typeof window.axe === 'object'"):
                    page.evaluate(self._source)  # DevTools evaluation: not subject to CSP
                violations = page.evaluate(_RUN_AXE)
            except PlaywrightError as error:
                # A click's navigation may land while axe runs: audit the new page instead.
                if "context was destroyed" not in str(error) or attempt == 2:
                    raise
                continue
            if _without_fragment(page.url) == url:
                break
        url = _without_fragment(page.url)
        self.origins.add(urlsplit(url)._replace(path="", query="", fragment="").geturl())
        self.audited.setdefault(url, []).extend(
            {**v, "page": label or urlsplit(url).path} for v in violations)
        self.checks += 1
        return violations

    def failures(self) -> list[dict]:
        return [v for found in self.audited.values() for v in found
                if v["impact"] in FAILING_IMPACTS]

    def verdict(self) -> None:
        """Raise AssertionError on a shown-but-unaudited page or a serious or critical
        violation (what the fixture does at the end of each test)."""
        shown_pages = [url for url in self.shown if url.startswith(("http:", "https:"))]
        assert self.checks or not shown_pages, f"no page was audited of {shown_pages}"
        assert not self.unaudited(), f"pages shown but not audited: {self.unaudited()}"
        failures = self.failures()
        assert not failures, "serious or critical accessibility violations:\n" + "\n".join(
            f"  {v['page']}: {v['id']} ({v['impact']}) {v['help']} at {v['targets']}"
            for v in failures)

    def unaudited(self) -> list[str]:
        def origin(url: str) -> str:
            return urlsplit(url)._replace(path="", query="", fragment="").geturl()

        return sorted({url for url in self.shown
                       if origin(url) in self.origins and url not in self.audited})


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
    AXE_TOTALS["pages"] += audit.checks
    AXE_TOTALS["serious_or_critical"] += len(failures)
    AXE_TOTALS["moderate_or_minor"] += sum(len(v) for v in audit.audited.values()) - len(failures)
    METRICS.report("8.2 axe-core: pages audited / serious or critical / moderate or minor",
                   f"{AXE_TOTALS['pages']} / {AXE_TOTALS['serious_or_critical']} / "
                   f"{AXE_TOTALS['moderate_or_minor']}")
    audit.verdict()


# Page weight: every request a cold page load makes, and its bytes --------------------------

@dataclass
class PageWeight:
    """What one cold load of a page cost: every request, its bytes both ways (headers and
    bodies, as Chromium counted them on the wire) and the requests to other origins."""

    url: str
    requests: list[tuple[str, int]] = field(default_factory=list)  # (url, bytes)
    off_origin: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(size for _url, size in self.requests)

    @property
    def kilobytes(self) -> float:
        return self.total_bytes / 1024


def weigh_page(context, url: str) -> PageWeight:
    """Load `url` in a new page of `context` (a fresh context has a cold cache) and add up
    every request until the network is idle."""
    weight = PageWeight(url)
    origin = urlsplit(url)._replace(path="", query="", fragment="").geturl()
    finished, failed = [], []
    page = context.new_page()
    page.on("requestfinished", lambda request: finished.append(request))
    page.on("requestfailed", lambda request: failed.append(request))
    page.goto(url, wait_until="networkidle")
    for request in finished:
        sizes = request.sizes()
        weight.requests.append((request.url, sizes["requestHeadersSize"]
                                + sizes["requestBodySize"] + sizes["responseHeadersSize"]
                                + sizes["responseBodySize"]))
    for request in finished + failed:
        if not request.url.startswith(origin + "/") and not request.url.startswith("data:"):
            weight.off_origin.append(request.url)
    weight.failed = [request.url for request in failed]
    page.close()
    return weight
