"""Benchmark: how fast and how heavy the public pages are, as a browser sees them, served by
gunicorn (2 workers) on PostgreSQL with the demo data.

    .venv/bin/python bench/pages.py [--loads 15] [--database-name donorhub_bench_pages]

Creates the scratch database (dropped first, dropped again afterwards unless --keep),
migrates it, runs `flask demo seed`, starts gunicorn, and with Debian's Chromium loads the
donate page, a live campaign's page, the sponsor list and one child's profile, plus the
trivial endpoint /healthz as the baseline, --loads times each, every load cold (a fresh
browser context, so nothing is cached), the pages taken in turn so that noise from the
shared machine falls on all of them alike. From Navigation Timing it takes time to first
byte (responseStart) and to the end of the load event (loadEventEnd), both from the start
of the navigation, and prints the median and 90th percentile of each, and each as a ratio
to /healthz's in the same run. One more cold load per page counts every request and its
bytes (headers and bodies both ways, as Chromium counted them on the wire).

Exits 1 if any page weighs 100 KB or more, or makes any request to another origin.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.sync_api import sync_playwright  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from tests.browser.conftest import weigh_page  # noqa: E402
from tests.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.system.stack import (  # noqa: E402
    drop_database,
    fresh_database,
    migrate,
    run_flask,
    start_gunicorn,
)

LIMIT_KB = 100
NAVIGATION = """() => {
  const n = performance.getEntriesByType("navigation")[0];
  return {ttfb: n.responseStart - n.startTime, load: n.loadEventEnd - n.startTime};
}"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def page_paths(url: str, base_url: str) -> dict[str, str]:
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as connection:
        slug = connection.execute(
            text("SELECT slug FROM campaigns WHERE status = 'live' ORDER BY id LIMIT 1")
        ).scalar()
    engine.dispose()
    with urllib.request.urlopen(base_url + "/sponsor", timeout=30) as response:  # noqa: S310
        listing = response.read().decode()
    tokens = [
        t
        for t in re.findall(r'href="/sponsor/([\w-]+)"', listing)
        if t not in ("match", "code-of-conduct")
    ]
    if not slug or not tokens:
        raise SystemExit("the demo data has no live campaign or no listed child")
    return {
        "/healthz": "/healthz",
        "donate": "/donate",
        "campaign": f"/campaigns/{slug}",
        "sponsor list": "/sponsor",
        "child profile": f"/sponsor/{tokens[0]}",
    }


def cold_load(browser, url: str) -> dict[str, float]:
    context = browser.new_context()
    page = context.new_page()
    page.goto(url, wait_until="load")
    page.wait_for_function("() => performance.getEntriesByType('navigation')[0].loadEventEnd > 0")
    timing = page.evaluate(NAVIGATION)
    context.close()
    return timing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", type=int, default=15, help="cold loads of each page")
    parser.add_argument("--database-name", default="donorhub_bench_pages")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()

    url = fresh_database(args.database_name)
    log_dir = Path(tempfile.mkdtemp(prefix="donorhub-bench-pages-"))
    web = None
    try:
        migrate(url)
        run_flask(url, "demo", "seed", quiet=True)
        web = start_gunicorn(url, log_dir, workers=2)
        paths = page_paths(url, web.base_url)
        timings: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for path in paths.values():  # warm up the workers, not measured
                cold_load(browser, web.base_url + path)
            for _ in range(args.loads):
                for name, path in paths.items():
                    timings[name].append(cold_load(browser, web.base_url + path))
            weights = {}
            for name, path in paths.items():
                context = browser.new_context()
                weights[name] = weigh_page(context, web.base_url + path)
                context.close()
            browser.close()
    finally:
        if web is not None:
            web.stop()
        if not args.keep:
            drop_database(args.database_name)

    def stats(name: str, key: str) -> tuple[float, float]:
        values = [t[key] for t in timings[name]]
        return statistics.median(values), percentile(values, 0.9)

    base_ttfb, base_load = stats("/healthz", "ttfb"), stats("/healthz", "load")
    print(
        f"gunicorn 2 workers, PostgreSQL, demo data; {args.loads} cold loads per page "
        "(ms; ratio = page / /healthz in this run)"
    )
    header = (
        f"{'page':<14} {'TTFB p50':>9} {'p90':>7} {'ratio':>6} {'load p50':>9} "
        f"{'p90':>7} {'ratio':>6} {'KB':>6} {'req':>4} {'off-origin':>10}"
    )
    print(header)
    print("-" * len(header))
    failures = []
    for name in paths:
        ttfb, load = stats(name, "ttfb"), stats(name, "load")
        weight = weights[name]
        print(
            f"{name:<14} {ttfb[0]:>9.1f} {ttfb[1]:>7.1f} {ttfb[0] / base_ttfb[0]:>6.2f} "
            f"{load[0]:>9.1f} {load[1]:>7.1f} {load[0] / base_load[0]:>6.2f} "
            f"{weight.kilobytes:>6.1f} {len(weight.requests):>4} {len(weight.off_origin):>10}"
        )
        if weight.kilobytes >= LIMIT_KB:
            failures.append(f"{name} weighs {weight.kilobytes:.1f} KB (limit {LIMIT_KB} KB)")
        if weight.off_origin or weight.failed:
            failures.append(f"{name}: off-origin {weight.off_origin}, failed {weight.failed}")
    for failure in failures:
        print("FAIL:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
