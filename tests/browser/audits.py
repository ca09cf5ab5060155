"""Accessibility audits (axe-core) and page weights for the browser tests; the `axe` fixture
that runs an audit around a test is in tests/browser/conftest.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Error as PlaywrightError

# Accessibility: axe-core (from the npm registry, test-only) run in every page of a journey ---

AXE_SOURCE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
FAILING_IMPACTS = ("serious", "critical")

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
        page.on(
            "framenavigated",
            lambda frame: (
                frame == page.main_frame and self.shown.append(_without_fragment(frame.url))
            ),
        )

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
            {**v, "page": label or urlsplit(url).path} for v in violations
        )
        self.checks += 1
        return violations

    def failures(self) -> list[dict]:
        return [
            v for found in self.audited.values() for v in found if v["impact"] in FAILING_IMPACTS
        ]

    def verdict(self) -> None:
        """Raise AssertionError on a shown-but-unaudited page or a serious or critical
        violation (what the fixture does at the end of each test)."""
        shown_pages = [url for url in self.shown if url.startswith(("http:", "https:"))]
        assert self.checks or not shown_pages, f"no page was audited of {shown_pages}"
        assert not self.unaudited(), f"pages shown but not audited: {self.unaudited()}"
        failures = self.failures()
        assert not failures, "serious or critical accessibility violations:\n" + "\n".join(
            f"  {v['page']}: {v['id']} ({v['impact']}) {v['help']} at {v['targets']}"
            for v in failures
        )

    def unaudited(self) -> list[str]:
        def origin(url: str) -> str:
            return urlsplit(url)._replace(path="", query="", fragment="").geturl()

        return sorted(
            {url for url in self.shown if origin(url) in self.origins and url not in self.audited}
        )


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
        weight.requests.append(
            (
                request.url,
                sizes["requestHeadersSize"]
                + sizes["requestBodySize"]
                + sizes["responseHeadersSize"]
                + sizes["responseBodySize"],
            )
        )
    for request in finished + failed:
        if not request.url.startswith(origin + "/") and not request.url.startswith("data:"):
            weight.off_origin.append(request.url)
    weight.failed = [request.url for request in failed]
    page.close()
    return weight
