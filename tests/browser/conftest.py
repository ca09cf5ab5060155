"""Headless Chromium (Debian's build) driven by Playwright against a live server."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from werkzeug.serving import make_server

from tests.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.metrics import METRICS

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
        self._source = AXE_SOURCE.read_text()

    def watch(self, page) -> None:
        page.on("framenavigated",
                lambda frame: frame == page.main_frame and self.shown.append(
                    _without_fragment(frame.url)))

    def check(self, page, label: str = "") -> list[dict]:
        page.wait_for_load_state("load")
        if not page.evaluate("() => typeof window.axe === 'object'"):
            page.evaluate(self._source)  # DevTools evaluation: not subject to the page's CSP
        violations = page.evaluate(_RUN_AXE)
        url = _without_fragment(page.url)
        self.origins.add(urlsplit(url)._replace(path="", query="", fragment="").geturl())
        self.audited.setdefault(url, []).extend(
            {**v, "page": label or urlsplit(url).path} for v in violations)
        AXE_TOTALS["pages"] += 1
        return violations

    def failures(self) -> list[dict]:
        return [v for found in self.audited.values() for v in found
                if v["impact"] in FAILING_IMPACTS]

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
    AXE_TOTALS["serious_or_critical"] += len(failures)
    AXE_TOTALS["moderate_or_minor"] += sum(len(v) for v in audit.audited.values()) - len(failures)
    METRICS.report("8.2 axe-core: pages audited / serious or critical / moderate or minor",
                   f"{AXE_TOTALS['pages']} / {AXE_TOTALS['serious_or_critical']} / "
                   f"{AXE_TOTALS['moderate_or_minor']}")
    assert not audit.unaudited(), f"pages shown but not audited: {audit.unaudited()}"
    assert not failures, "serious or critical accessibility violations:\n" + "\n".join(
        f"  {v['page']}: {v['id']} ({v['impact']}) {v['help']} at {v['targets']}"
        for v in failures)
