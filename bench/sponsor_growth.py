"""Benchmark: the sponsorship pages and checks cost no more with 6,000 waiting children than
with 60 (every figure a ratio of the two, measured in the same run).

    .venv/bin/python bench/sponsor_growth.py            # 60 and 6,000 children
    .venv/bin/python bench/sponsor_growth.py --quick    # 60 and 600, shorter wrk runs

One run, for each size: a scratch PostgreSQL database (`donorhub_bench_sponsor_<n>`, dropped
first and afterwards), migrated, and n children seeded straight into `children` with the
coded facts the feed importer writes (twelve classes of look-alikes: four age bands times
three interests, two homes in one state, consent for the year), then published by the real
weekly release (`children.services.publish_releases`), so the released state is the one
the importer and the job would leave. In-process, against that database:

- the release checks: a second weekly publication (every child re-checked, the steady
  state), timed, reported per child;
- "Match me": `sponsorship.services.match`, with no preference and with an age, timed
  (median of many calls).

Then gunicorn (2 sync workers) on each database in turn and `wrk -t2 -c20` on /sponsor
(the first page of the listing), two rounds alternating sizes, best of each; and the size
of the page's body at each size.

Ratios (goals from the issue): /sponsor req/s large / small at least 0.8; page bytes large /
small at most 1.05 (the cards' wording may differ by release level, not their number);
release checks per child and "Match me" large / small at most 1.5. The run is wrong (ratio
not correct) if a size lists fewer cards than children, a page shows another number of cards
than a full page, or wrk saw an answer other than 200.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("DONORHUB_ENV", "development")

from sqlalchemy import create_engine, func, insert, select  # noqa: E402
from sqlalchemy import text as sql  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from bench.ratios import Ratio  # noqa: E402
from config import DevelopmentConfig  # noqa: E402
from donorhub import create_app  # noqa: E402
from donorhub.children import services as children  # noqa: E402
from donorhub.children.models import Child, ChildRelease  # noqa: E402
from donorhub.database import unit_of_work, utcnow  # noqa: E402
from donorhub.extensions import db  # noqa: E402
from donorhub.sponsorship import services as sponsorship  # noqa: E402
from tests.system.stack import drop_database, fresh_database, migrate, start_gunicorn  # noqa: E402

FULL_SIZES = (60, 6_000)
QUICK_SIZES = (60, 600)
AGE_BANDS = ("6-8", "9-11", "12-14", "15-17")
INTERESTS = ("drawing", "football", "reading")
HOMES = "MH-01=Maharashtra,MH-02=Maharashtra,WB-01=West Bengal,DL-01=Delhi"
CARD = re.compile(r'<article class="profile-card"')


@dataclass
class Prepared:
    size: int
    name: str
    url: str
    listed: int
    #: One weekly publication over every child, seconds.
    publish_s: float
    #: One "Match me", milliseconds (median).
    match_ms: float


def app_for(url: str):
    return create_app(DevelopmentConfig, SQLALCHEMY_DATABASE_URI=url, LOG_LEVEL="WARNING")


def seed(size: int) -> list[dict]:
    """`size` children with the coded facts the importer stores (no free text)."""
    year = utcnow().year
    rows = []
    for n in range(size):
        ref = f"bench-child-{n}"
        rows.append(
            dict(
                ref_hash=hashlib.sha256(ref.encode()).hexdigest(),
                alias=f"Bench{n:05d}",
                public_token=secrets.token_urlsafe(32),
                illustration=n % 12 + 1,
                home_code="MH-01" if n % 2 else "MH-02",
                age_band=AGE_BANDS[n % 12 // 3],
                gender="girl",
                region="Maharashtra",
                stage="education",
                joined_year=year - 1 - n % 2,
                interests=[INTERESTS[n % 3]],
                consent_profile=True,
                consent_updates=True,
                consent_basis="guardian_and_child",
                consent_expires=f"{year + 2}-Q4",
                content_hash=hashlib.sha256(f"{ref} facts".encode()).hexdigest(),
            )
        )
    return rows


def timed_match(rounds: int) -> float:
    """Median milliseconds of one "Match me", alternating no preference and an age."""
    preferences = (sponsorship.Filters(), sponsorship.Filters(age="12 to 14"))
    times = []
    for n in range(rounds):
        started = time.perf_counter()
        card = sponsorship.match(preferences[n % 2])
        times.append(time.perf_counter() - started)
        if card is None:
            raise RuntimeError("Match me found no child")
        db.session.rollback()
    return statistics.median(times) * 1000


def prepare(size: int, match_rounds: int) -> Prepared:
    name = f"donorhub_bench_sponsor_{size}"
    url = fresh_database(name)
    migrate(url)
    app = app_for(url)
    app.config["FEED_HOMES"] = dict(item.split("=") for item in HOMES.split(","))
    with app.app_context():
        with unit_of_work():
            db.session.execute(insert(Child), seed(size))
        # The first publication lists them (as the import's first week would).
        first = utcnow() - timedelta(days=7)
        with unit_of_work():
            children.publish_releases(first)
        db.session.remove()
        analyse(url)
        # The release checks as the weekly job runs them: every child again.
        started = time.perf_counter()
        with unit_of_work():
            children.publish_releases(utcnow())
        publish_s = time.perf_counter() - started
        listed = db.session.scalar(
            select(func.count(ChildRelease.id)).where(ChildRelease.is_listed.is_(True))
        )
        timed_match(20)  # warm
        match_ms = timed_match(match_rounds)
        db.session.remove()
        db.engine.dispose()
    return Prepared(size, name, url, listed or 0, publish_s, match_ms)


def analyse(url: str) -> None:
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sql("VACUUM ANALYZE"))
    engine.dispose()


def wrk(base_url: str, seconds: int) -> tuple[float, int]:
    """(requests/s, answers other than 2xx/3xx or socket errors) of wrk on /sponsor."""
    completed = subprocess.run(
        ["wrk", "-t2", "-c20", f"-d{seconds}s", "--timeout=30s", base_url + "/sponsor"],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    out = completed.stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if completed.returncode != 0 or not found:
        raise RuntimeError(f"wrk failed:\n{out[-2000:]}\n{completed.stderr[-2000:]}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    wrong = int(bad.group(1)) if bad else 0
    wrong += sum(int(g) for g in errors.groups()) if errors else 0
    return float(found.group(1)), wrong


def page_body(base_url: str) -> bytes:
    with urllib.request.urlopen(base_url + "/sponsor", timeout=30) as response:  # noqa: S310
        return response.read()


def load(prepared: list[Prepared], seconds: int, rounds: int) -> dict[int, dict]:
    figures: dict[int, dict] = {p.size: {"rps": [], "wrong": 0} for p in prepared}
    with tempfile.TemporaryDirectory(prefix="bench-sponsor-") as scratch:
        servers = {}
        try:
            for p in prepared:
                analyse(p.url)
                servers[p.size] = start_gunicorn(
                    p.url, Path(scratch), name=f"web-{p.size}", FEED_HOMES=HOMES
                )
                body = page_body(servers[p.size].base_url)
                figures[p.size]["bytes"] = len(body)
                figures[p.size]["cards"] = len(CARD.findall(body.decode()))
                wrk(servers[p.size].base_url, 2)  # warm both workers
            for _ in range(rounds):
                for p in prepared:
                    rps, wrong = wrk(servers[p.size].base_url, seconds)
                    figures[p.size]["rps"].append(rps)
                    figures[p.size]["wrong"] += wrong
        finally:
            for server in servers.values():
                server.stop()
    return figures


def measure(quick: bool) -> list[Ratio]:
    sizes = QUICK_SIZES if quick else FULL_SIZES
    seconds, rounds, match_rounds = (5, 1, 200) if quick else (10, 2, 1000)
    prepared: list[Prepared] = []
    try:
        for size in sizes:
            prepared.append(prepare(size, match_rounds))
        figures = load(prepared, seconds, rounds)
    finally:
        for size in sizes:
            drop_database(f"donorhub_bench_sponsor_{size}")
    small, large = prepared
    fs, fl = figures[small.size], figures[large.size]
    rps_s, rps_l = max(fs["rps"]), max(fl["rps"])
    page = min(sponsorship.PAGE_SIZE, small.listed)
    served_right = (
        small.listed == small.size
        and large.listed == large.size
        and fs["cards"] == page
        and fl["cards"] == sponsorship.PAGE_SIZE
        and fs["wrong"] == fl["wrong"] == 0
    )
    label = f"{large.size:,} waiting children / {small.size:,}"
    per_child_s = small.publish_s / small.size * 1e6
    per_child_l = large.publish_s / large.size * 1e6
    return [
        Ratio(
            f"/sponsor req/s, {label}",
            rps_l / rps_s,
            0.8,
            detail=f"{rps_l:.0f} req/s vs {rps_s:.0f} req/s (wrk -t2 -c20, best of {rounds})",
            correct=served_right,
        ),
        Ratio(
            f"/sponsor page bytes, {label}",
            fl["bytes"] / fs["bytes"],
            1.05,
            at_least=False,
            detail=f"{fl['bytes']:,} B vs {fs['bytes']:,} B ({fl['cards']} vs {fs['cards']} cards)",
            correct=served_right,
        ),
        Ratio(
            f"release checks (weekly publication) per child, {label}",
            per_child_l / per_child_s,
            1.5,
            at_least=False,
            detail=(
                f"{per_child_l:.0f} us vs {per_child_s:.0f} us per child "
                f"({large.publish_s:.2f} s vs {small.publish_s:.3f} s)"
            ),
            correct=served_right,
        ),
        Ratio(
            f'"Match me", {label}',
            large.match_ms / small.match_ms,
            1.5,
            at_least=False,
            detail=f"{large.match_ms:.2f} ms vs {small.match_ms:.2f} ms (median of {match_rounds})",
            correct=served_right,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="60 and 600 children, short runs")
    args = parser.parse_args()
    ratios = measure(args.quick)
    for ratio in ratios:
        bound = ">=" if ratio.at_least else "<="
        verdict = "pass" if ratio.passed else ("WRONG RUN" if not ratio.correct else "fail")
        print(
            f"{ratio.name:60} {ratio.value:6.2f} (goal {bound} {ratio.goal})  {verdict}  "
            f"{ratio.detail}"
        )
    with open("/proc/loadavg") as loadavg:
        print(f"load average: {loadavg.read().strip()}")
    return 0 if all(r.passed for r in ratios) else 1


if __name__ == "__main__":
    raise SystemExit(main())
