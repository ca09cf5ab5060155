"""Benchmark: the home page and a campaign page cost the same with 1,000,000 gifts as with
none (campaign totals kept up to date in each gift's transaction, read in one statement).

    .venv/bin/python bench/campaign_growth.py            # 1,000,000 gifts, 15 s per run
    .venv/bin/python bench/campaign_growth.py --quick    # 100,000 gifts, 5 s per run
    .venv/bin/python bench/campaign_growth.py --gifts 200000 --duration 8 --keep-database

One run: a scratch PostgreSQL database (donorhub_bench_totals_growth, dropped first and
afterwards unless --keep-database), migrated; 20 live campaigns and no gifts; gunicorn with
2 sync workers; wrk on `/` and on one campaign page (the baseline). Then the gifts are
COPY-loaded across the 20 campaigns (four currencies, paid, partly and fully refunded,
disputed, charged back, pending and failed, some with fee cover) with the totals triggers
off, as a restore or a bulk import would; `flask campaigns verify-totals` must then report
the difference and `--repair` rewrite the totals from a full recount; a second
verify-totals must pass. VACUUM ANALYZE, and wrk on the same two pages again, against the
same gunicorn. The figures every campaign's JSON total, its page and the home page show
are checked against a recount made here in SQL. Ratios: requests/s with the gifts ÷
requests/s without, goal ≥ 0.8 each.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from bench.load import Target, http_get, line, run_wrk  # noqa: E402
from bench.ratios import Ratio  # noqa: E402
from tests.system.stack import (  # noqa: E402
    drop_database,
    fresh_database,
    migrate,
    run_flask,
    start_gunicorn,
)

DATABASE = "donorhub_bench_totals_growth"
CAMPAIGNS = 20
GOAL = 0.8
RATES = {"usd": Decimal("0.79"), "eur": Decimal("0.85"), "inr": Decimal("0.0095")}
CURRENCIES = ("gbp", "gbp", "gbp", "usd", "eur", "inr")
#: (status, share): what the loaded gifts look like; refunds and fee cover set per row.
STATUSES = (
    ("paid", 80),
    ("partially_refunded", 5),
    ("refunded", 3),
    ("disputed", 2),
    ("charged_back", 1),
    ("pending", 5),
    ("failed", 4),
)
COUNTED = ("paid", "partially_refunded", "refunded")


# Setting up ----------------------------------------------------------------------------------


def seed_campaigns(engine, donors: int) -> list[str]:
    """20 live campaigns, the exchange rates and `donors` donors; returns the slugs."""
    today = date.today()
    now = datetime.now(UTC)
    slugs = [f"growth-{n:02d}" for n in range(CAMPAIGNS)]
    with engine.begin() as connection:
        for currency, rate in RATES.items():
            connection.execute(
                text(
                    "INSERT INTO exchange_rates (currency, reporting_currency, rate, set_at) "
                    "VALUES (:c, 'gbp', :r, :t)"
                ),
                {"c": currency, "r": rate, "t": now},
            )
        for n, slug in enumerate(slugs):
            connection.execute(
                text(
                    "INSERT INTO campaigns (slug, name, summary, body_md, goal_minor, "
                    "goal_currency, starts_on, ends_on, appeal_code, status, published_at, "
                    "created_at, updated_at) VALUES (:slug, :name, :summary, :body, :goal, "
                    "'gbp', :starts, :ends, :code, 'live', :now, :now, :now)"
                ),
                {
                    "slug": slug,
                    "name": f"Growth appeal {n}",
                    "summary": "Warm beds, school fees and counselling for the safe homes.",
                    "body": "## What your gift does\n\nEvery **£25** buys a warm bed set.\n\n"
                    "- blankets\n- heaters\n",
                    "goal": 50_000_000,
                    "starts": today - timedelta(days=10),
                    "ends": today + timedelta(days=30 + n),
                    "code": f"GROWTH{n:02d}",
                    "now": now,
                },
            )
    with psycopg.connect(plain_url(engine)) as connection, connection.cursor() as cursor:
        with cursor.copy(
            "COPY donors (email, full_name, created_at, updated_at) FROM STDIN"
        ) as copy:
            for n in range(donors):
                copy.write_row((f"growth-{n}@example.org", f"Donor {n}", now, now))
    return slugs


def plain_url(engine) -> str:
    """psycopg's own form of the engine's URL."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def load_gifts(engine, gifts: int, seed: int = 11) -> float:
    """COPY `gifts` gifts across the campaigns with the totals triggers off; seconds taken."""
    rng = random.Random(seed)
    statuses = [s for s, share in STATUSES for _ in range(share)]
    with engine.connect() as connection:
        campaign_ids = list(
            connection.execute(text("SELECT id FROM campaigns ORDER BY id")).scalars()
        )
        donor_low, donor_high = connection.execute(
            text("SELECT min(id), max(id) FROM donors")
        ).one()
    started = time.monotonic()
    now = datetime.now(UTC)
    with psycopg.connect(plain_url(engine)) as connection:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE donations DISABLE TRIGGER USER")
            with cursor.copy(
                "COPY donations (public_id, donor_id, kind, amount_minor, fee_cover_minor, "
                "currency, designation, campaign_id, status, checkout_attempt, processing, "
                "payment_failed, expired, amount_refunded_minor, stripe_refunded_minor, "
                "paid_at, dispute_status, created_at, updated_at) FROM STDIN"
            ) as copy:
                for _ in range(gifts):
                    status = rng.choice(statuses)
                    amount = rng.choice((500, 1000, 2500, 2500, 5000, 10000, 25000))
                    fee = amount * 2 // 100 if rng.random() < 0.3 else 0
                    refunded = {
                        "partially_refunded": amount // 2,
                        "refunded": amount,
                    }.get(status, 0)
                    paid = status not in ("pending", "failed")
                    copy.write_row(
                        (
                            uuid.uuid4().hex,
                            rng.randint(donor_low, donor_high),
                            "once",
                            amount,
                            fee,
                            rng.choice(CURRENCIES),
                            "campaign",
                            rng.choice(campaign_ids),
                            status,
                            1,
                            False,
                            status == "failed",
                            False,
                            refunded,
                            refunded,
                            now - timedelta(minutes=rng.randint(0, 500_000)) if paid else None,
                            {"disputed": "open", "charged_back": "lost"}.get(status),
                            now,
                            now,
                        )
                    )
            cursor.execute("ALTER TABLE donations ENABLE TRIGGER USER")
        connection.commit()
        connection.autocommit = True
        connection.execute("VACUUM ANALYZE donations")
    return time.monotonic() - started


def verify_totals(url: str, *extra: str) -> tuple[int, str]:
    try:
        result = run_flask(url, "campaigns", "verify-totals", *extra, quiet=True, timeout=1800)
    except RuntimeError as error:  # exit status 1: the sentences are in the message
        return 1, str(error)
    return 0, result.stdout + result.stderr


# Checking the figures ------------------------------------------------------------------------


def recount(engine) -> dict[str, tuple[int, int]]:
    """(raised in gbp, donors) per campaign slug, counted here from the gifts in SQL."""
    net = "d.amount_minor - d.amount_refunded_minor - d.fee_cover_minor"
    where = f"d.status IN {COUNTED} AND {net} > 0"
    with engine.connect() as connection:
        money: dict[str, dict[str, int]] = {}
        for slug, currency, total in connection.execute(
            text(
                f"SELECT c.slug, d.currency, SUM({net}) FROM donations d "  # noqa: S608 - constants
                f"JOIN campaigns c ON c.id = d.campaign_id WHERE {where} GROUP BY 1, 2"
            )
        ):
            money.setdefault(slug, {})[currency] = int(total)
        donors = dict(
            connection.execute(
                text(
                    "SELECT c.slug, COUNT(DISTINCT d.donor_id) FROM donations d "  # noqa: S608
                    f"JOIN campaigns c ON c.id = d.campaign_id WHERE {where} GROUP BY 1"
                )
            ).all()
        )
    figures = {}
    for slug in {f"growth-{n:02d}" for n in range(CAMPAIGNS)}:
        total = 0
        for currency, minor in money.get(slug, {}).items():
            rate = Decimal(1) if currency == "gbp" else RATES[currency]
            total += int((Decimal(minor) * rate).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
        figures[slug] = (total, int(donors.get(slug, 0)))
    return figures


def pounds(minor: int) -> str:
    return f"£{minor // 100:,}.{minor % 100:02d}"


def check_pages(base_url: str, engine, page: str) -> list[str]:
    """Every campaign's JSON total, the campaign page and the home page against the recount."""
    import json

    problems = []
    figures = recount(engine)
    _, _, home = http_get(base_url, "/")
    for slug, (raised, donors) in sorted(figures.items()):
        status, _, body = http_get(base_url, f"/api/v1/campaigns/{slug}")
        data = json.loads(body) if status == 200 else {}
        if (data.get("raised_minor"), data.get("donors")) != (raised, donors):
            problems.append(
                f"{slug}: the JSON total says {data.get('raised_minor')} and "
                f"{data.get('donors')} donors, the recount {raised} and {donors}"
            )
        shown = f"<strong>{pounds(raised)}</strong> raised"
        if shown not in home:
            problems.append(f"{slug}: the home page does not show {shown!r}")
    slug = page.rsplit("/", 1)[1]
    _, _, body = http_get(base_url, page)
    raised, donors = figures[slug]
    plural = "" if donors == 1 else "s"
    if f"<strong>{pounds(raised)}</strong> raised" not in body or not re.search(
        rf"· {donors} donor{plural}\b", body
    ):
        problems.append(f"{page} does not show {pounds(raised)} and {donors} donors")
    return problems


# The run -------------------------------------------------------------------------------------


def run(gifts: int, duration: int, keep: bool = False, quiet: bool = False) -> dict:
    def say(message: str) -> None:
        if not quiet:
            print(message, flush=True)

    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk (or make bench-tools)")
    work_dir = Path(tempfile.mkdtemp(prefix="donorhub-bench-totals-"))
    url = fresh_database(DATABASE)
    engine = create_engine(url, poolclass=NullPool)
    server = None
    wrk_args = SimpleNamespace(threads=2, connections=20, duration=duration, timeout=30)
    try:
        migrate(url)
        slugs = seed_campaigns(engine, donors=max(1_000, gifts // 10))
        page = f"/campaigns/{slugs[0]}"
        server = start_gunicorn(url, work_dir / "logs", workers=2, name="web")
        targets = {
            "healthz": Target("healthz", "/healthz", lines=[line("GET", "/healthz")]),
            "home": Target("home", "/", lines=[line("GET", "/")]),
            "campaign page": Target("campaign page", page, lines=[line("GET", page)]),
        }

        def measure(label: str) -> dict[str, float]:
            rates = {}
            for name, target in targets.items():
                for _ in range(6):  # both workers warm, templates compiled
                    if http_get(server.base_url, target.path)[0] != 200:
                        raise RuntimeError(f"{target.path} did not answer 200")
                result = run_wrk(server.base_url, target, wrk_args, work_dir)
                if result.errors:
                    raise RuntimeError(f"{label} {target.path}: {result.errors} errors")
                rates[name] = result.requests_per_s
                say(
                    f"  {label:<12} {target.path:<22} {result.requests_per_s:8.1f} req/s  "
                    f"p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms"
                )
            return rates

        say(f"{CAMPAIGNS} live campaigns, no gifts; wrk -t2 -c20 -d{duration}s under gunicorn -w 2")
        empty = measure("no gifts")
        problems = check_pages(server.base_url, engine, page)
        say(f"loading {gifts:,} gifts with COPY (totals triggers off, as a restore) ...")
        load_seconds = load_gifts(engine, gifts)
        code, before = verify_totals(url)
        if code == 0:
            problems.append("verify-totals passed after a load that bypassed the totals")
        started = time.monotonic()
        code, repaired = verify_totals(url, "--repair")
        repair_seconds = time.monotonic() - started
        if code != 0:
            problems.append(f"verify-totals --repair failed: {repaired[-500:]}")
        after_code, after = verify_totals(url)
        if after_code != 0:
            problems.append(f"verify-totals after the repair: {after[-500:]}")
        say(
            f"  loaded in {load_seconds:.0f} s; verify-totals exited 1 naming the campaigns; "
            f"--repair took {repair_seconds:.1f} s; verify-totals then passed: {not after_code}"
        )
        full = measure(f"{gifts:,} gifts")
        problems += check_pages(server.base_url, engine, page)
        return {
            "gifts": gifts,
            "empty": empty,
            "full": full,
            "problems": problems,
            "load_seconds": load_seconds,
            "repair_seconds": repair_seconds,
        }
    finally:
        if server is not None:
            server.stop()
        engine.dispose()
        if not keep:
            drop_database(DATABASE)


def ratios(result: dict) -> list[Ratio]:
    """Requests/s with the gifts ÷ without. The detail adds the same ratio with each phase's
    figure taken relative to /healthz in that phase: on a shared machine whose load changed
    between the two phases, that one shows what the gifts did, not the neighbours."""
    gifts = result["gifts"]
    correct = not result["problems"]
    empty, full = result["empty"], result["full"]
    drift = full["healthz"] / empty["healthz"]
    return [
        Ratio(
            name=f"{label}, {gifts:,} gifts / none ({CAMPAIGNS} live campaigns)",
            value=full[key] / empty[key],
            goal=GOAL,
            detail=f"{full[key]:.0f} req/s vs {empty[key]:.0f} req/s; /healthz "
            f"{full['healthz']:.0f} vs {empty['healthz']:.0f}, so relative to /healthz "
            f"{full[key] / empty[key] / drift:.2f}"
            + ("" if correct else "; WRONG FIGURES: " + "; ".join(result["problems"][:3])),
            correct=correct,
        )
        for label, key in (("home page", "home"), ("campaign page", "campaign page"))
    ]


def measure(quick: bool) -> list[Ratio]:
    return ratios(run(100_000 if quick else 1_000_000, 5 if quick else 15, quiet=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 gifts, 5 s per run")
    parser.add_argument("--gifts", type=int, help="gifts to load (default 1,000,000)")
    parser.add_argument("--duration", type=int, help="seconds of wrk per run (default 15)")
    parser.add_argument("--keep-database", action="store_true")
    args = parser.parse_args()
    gifts = args.gifts or (100_000 if args.quick else 1_000_000)
    duration = args.duration or (5 if args.quick else 15)
    result = run(gifts, duration, keep=args.keep_database)
    for ratio in ratios(result):
        verdict = "pass" if ratio.passed else "FAIL"
        print(f"{ratio.name}: {ratio.value:.2f} (goal ≥ {ratio.goal}) {verdict}  [{ratio.detail}]")
    for problem in result["problems"]:
        print(f"problem: {problem}", file=sys.stderr)
    return 0 if all(r.passed for r in ratios(result)) else 1


if __name__ == "__main__":
    sys.exit(main())
