"""Benchmark: every staff report over 1,000,000 gifts and 100,000 donors on PostgreSQL, each
timed beside one hand-written SQL query that computes the same figures, in the same run.

    .venv/bin/python bench/reports.py [--gifts 1000000 --donors 100000] [--repeat 3]
    .venv/bin/python bench/reports.py --quick       # 100,000 gifts / 10,000 donors

`measure(quick)` (bench/ratios.py) gives one Ratio per report and range: app / SQL, goal at
most 1.5, and correct=False when the figures differ.

Uses a scratch database `donorhub_bench_reports_<gifts>_<donors>` on 127.0.0.1, reused when a
previous run left it complete (--reload drops and loads it again): migrates it, bulk-loads
donors, campaigns, rates, recurring plans with their instalments, one-off gifts, plan amount
changes (audit log) and the failure history (COPY, one transaction; loading is not timed),
then for each report and for a 1-year and a 5-year range: times `reports.build(...)` plus the
chart geometry (what the staff page calls), times the SQL query, checks both give exactly the
same rows, and prints the times and the ratio app / SQL (best of --repeat runs each, the two
taken in turn so machine noise falls on both). Exits non-zero if any figure differs.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
from sqlalchemy import text  # noqa: E402

from bench.ratios import Ratio  # noqa: E402
from config import TestingConfig  # noqa: E402
from donorhub import create_app  # noqa: E402
from donorhub.extensions import db  # noqa: E402
from donorhub.reports import services as reports  # noqa: E402

SERVER = "postgresql://postgres@127.0.0.1"
#: (gifts, donors) of `make bench` and of `make bench-full`.
QUICK = (100_000, 10_000)
FULL = (1_000_000, 100_000)
GOAL = 1.5
TODAY = date(2026, 11, 27)
HISTORY_START = datetime(2019, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 28, tzinfo=UTC)
CURRENCY_MIX = ["gbp"] * 60 + ["inr"] * 25 + ["usd"] * 10 + ["eur"] * 5
RATES = {"inr": "0.00950000", "usd": "0.79000000", "eur": "0.86000000"}
FUNDS = ["general"] * 70 + ["campaign"] * 20 + ["emergency"] * 6 + ["education"] * 4
STATUS_MIX = (
    ["paid"] * 900
    + ["partially_refunded"] * 30
    + ["refunded"] * 20
    + ["disputed"] * 8
    + ["charged_back"] * 5
    + ["failed"] * 20
    + ["pending"] * 10
    + ["expired"] * 5
    + ["needs_review"] * 2
)
AMOUNTS = {
    "gbp": [500, 1000, 1500, 2000, 2500, 5000, 10000, 25000, 100000],
    "usd": [500, 1000, 2000, 5000, 10000, 50000],
    "eur": [500, 1000, 2000, 5000, 10000],
    "inr": [50000, 100000, 200000, 500000, 1000000],
}


# Loading -------------------------------------------------------------------------------------


def ts(moment: datetime) -> str:
    return moment.isoformat()


def copy(conn, table: str, columns: list[str], rows) -> int:
    n = 0
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as out:
        for row in rows:
            out.write_row(row)
            n += 1
    return n


def database_name(gifts: int, donors: int) -> str:
    return f"donorhub_bench_reports_{gifts}_{donors}"


def load(dsn: str, gifts: int, donors: int, seed: int = 7) -> dict:
    rnd = random.Random(seed)
    span = (NOW - HISTORY_START).total_seconds()
    counts = {}
    with psycopg.connect(dsn) as conn:
        now = ts(NOW)
        counts["campaigns"] = copy(
            conn,
            "campaigns",
            [
                "id",
                "slug",
                "name",
                "summary",
                "body_md",
                "goal_minor",
                "goal_currency",
                "starts_on",
                "appeal_code",
                "status",
                "created_at",
                "updated_at",
            ],
            (
                (
                    i,
                    f"c-{i}",
                    f"Campaign {i}",
                    "s",
                    "",
                    1000000,
                    "gbp",
                    date(2019 + i % 8, 1, 1),
                    f"APPEAL{i:02d}",
                    "live",
                    now,
                    now,
                )
                for i in range(1, 21)
            ),
        )
        counts["exchange_rates"] = copy(
            conn,
            "exchange_rates",
            ["currency", "reporting_currency", "rate", "set_at"],
            [(c, "gbp", r, now) for c, r in RATES.items()],
        )
        counts["donors"] = copy(
            conn,
            "donors",
            ["id", "email", "full_name", "created_at", "updated_at"],
            ((i, f"d{i}@bench.invalid", f"Donor {i}", now, now) for i in range(1, donors + 1)),
        )

        # Recurring plans: one donor in eight, monthly or yearly, some cancelled, some ended
        # by Stripe after failures; each paid invoice is an instalment gift.
        plan_rows, instalments, failures, changes = [], [], [], []
        plan_id = 0
        budget = int(gifts * 0.35)
        for donor in range(1, donors + 1, 8):
            if len(instalments) >= budget:
                break
            plan_id += 1
            currency = rnd.choice(CURRENCY_MIX)
            monthly = rnd.random() < 0.85
            amount = rnd.choice(AMOUNTS[currency])
            fee = amount * 3 // 100 if rnd.random() < 0.3 else 0
            started = HISTORY_START + timedelta(seconds=rnd.random() * span * 0.95)
            stop, cancelled, ended, failure = None, None, None, None
            r = rnd.random()
            if r < 0.25:
                cancelled = started + timedelta(days=rnd.randint(40, 1500))
                stop = cancelled
            elif r < 0.33:
                ended = started + timedelta(days=rnd.randint(40, 1500))
                stop, failure = ended, "card_declined"
            if stop is not None and stop >= NOW:
                stop = cancelled = ended = failure = None
            status = "cancelled" if cancelled else "ended" if ended else "active"
            step = timedelta(days=30) if monthly else timedelta(days=365)
            moment, k = started, 0
            while moment < (stop or NOW) and len(instalments) < budget:
                inv = f"in_{plan_id}_{k}"
                st = (
                    "paid"
                    if rnd.random() < 0.97
                    else rnd.choice(["refunded", "partially_refunded", "disputed"])
                )
                refunded = (
                    amount if st == "refunded" else amount // 2 if st == "partially_refunded" else 0
                )
                if rnd.random() < 0.05:  # the instalment failed first
                    failed_at = moment - timedelta(days=rnd.randint(1, 9))
                    recovered = rnd.random() < 0.6
                    failures.append(
                        (
                            plan_id,
                            inv,
                            currency,
                            amount,
                            ts(failed_at),
                            rnd.randint(1, 4),
                            "card_declined",
                            ts(moment) if recovered else None,
                            amount if recovered else None,
                        )
                    )
                    if not recovered:
                        moment += step
                        k += 1
                        continue
                instalments.append(
                    (
                        donor,
                        plan_id,
                        "instalment",
                        amount,
                        fee,
                        currency,
                        "general",
                        None,
                        st,
                        ts(moment),
                        refunded,
                        inv,
                    )
                )
                moment += step
                k += 1
            if rnd.random() < 0.05:  # an amount change, recorded in the audit log
                new = rnd.choice(AMOUNTS[currency])
                at = started + (NOW - started) * rnd.random()
                changes.append(
                    (ts(at), "plan.changed", "plan", plan_id, json.dumps({"amount_minor": new}))
                )
            plan_rows.append(
                (
                    plan_id,
                    f"p{plan_id:031d}",
                    donor,
                    amount,
                    fee,
                    currency,
                    "monthly" if monthly else "yearly",
                    "general",
                    status,
                    1,
                    1,
                    0,
                    failure,
                    ts(started),
                    ts(cancelled) if cancelled else None,
                    ts(ended) if ended else None,
                    ended is not None,
                    True,
                    False,
                    False,
                    now,
                    now,
                )
            )
        counts["recurring_plans"] = copy(
            conn,
            "recurring_plans",
            [
                "id",
                "public_id",
                "donor_id",
                "amount_minor",
                "fee_cover_minor",
                "currency",
                "frequency",
                "designation",
                "status",
                "checkout_attempt",
                "manage_version",
                "revision",
                "last_failure_code",
                "started_at",
                "cancelled_at",
                "ended_at",
                "stripe_ended",
                "checkout_completed",
                "paused",
                "checkout_expired",
                "created_at",
                "updated_at",
            ],
            plan_rows,
        )
        counts["audit_events"] = copy(
            conn, "audit_events", ["at", "action", "subject_type", "subject_id", "detail"], changes
        )
        counts["plan_payment_failures"] = copy(
            conn,
            "plan_payment_failures",
            [
                "plan_id",
                "stripe_invoice_id",
                "currency",
                "amount_due_minor",
                "failed_at",
                "attempts",
                "reason_code",
                "recovered_at",
                "recovered_amount_minor",
            ],
            failures,
        )

        def gift_rows():
            n = 0
            for row in instalments:
                n += 1
                (
                    donor,
                    pid,
                    kind,
                    amount,
                    fee,
                    currency,
                    fund,
                    campaign,
                    st,
                    paid,
                    refunded,
                    inv,
                ) = row
                yield (
                    n,
                    f"{n:032x}",
                    donor,
                    pid,
                    kind,
                    amount,
                    fee,
                    currency,
                    fund,
                    campaign,
                    st,
                    paid,
                    refunded,
                    inv,
                    "lost" if st == "charged_back" else None,
                    1,
                    False,
                    False,
                    False,
                    now,
                    now,
                )
            # one-off gifts; a donor's gifts cluster in a stretch of years (so some lapse)
            while n < gifts:
                n += 1
                donor = rnd.randint(1, donors)
                d_rnd = random.Random(donor)
                centre = d_rnd.random() * span
                offset = min(max(centre + rnd.gauss(0, span / 6), 0), span - 1)
                st = rnd.choice(STATUS_MIX)
                currency = rnd.choice(CURRENCY_MIX)
                amount = rnd.choice(AMOUNTS[currency]) + rnd.choice((0, 0, 0, 1, 33))
                fee = amount * 3 // 100 if rnd.random() < 0.25 else 0
                refunded = (
                    amount
                    if st == "refunded"
                    else rnd.randint(1, amount)
                    if st == "partially_refunded"
                    else 0
                )
                fund = rnd.choice(FUNDS)
                campaign = rnd.randint(1, 20) if fund == "campaign" else None
                paid = HISTORY_START + timedelta(seconds=offset)
                paid_at = None if st in ("pending", "expired") else ts(paid)
                yield (
                    n,
                    f"{n:032x}",
                    donor,
                    None,
                    "once",
                    amount,
                    fee,
                    currency,
                    fund,
                    campaign,
                    st,
                    paid_at,
                    refunded,
                    None,
                    "open" if st == "disputed" else "lost" if st == "charged_back" else None,
                    1,
                    False,
                    st == "failed",
                    st == "expired",
                    now,
                    now,
                )

        counts["donations"] = copy(
            conn,
            "donations",
            [
                "id",
                "public_id",
                "donor_id",
                "plan_id",
                "kind",
                "amount_minor",
                "fee_cover_minor",
                "currency",
                "designation",
                "campaign_id",
                "status",
                "paid_at",
                "amount_refunded_minor",
                "stripe_invoice_id",
                "dispute_status",
                "checkout_attempt",
                "processing",
                "payment_failed",
                "expired",
                "created_at",
                "updated_at",
            ],
            gift_rows(),
        )
        for table in (
            "donors",
            "donations",
            "recurring_plans",
            "campaigns",
            "exchange_rates",
            "audit_events",
            "plan_payment_failures",
        ):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                f"(SELECT coalesce(max(id), 1) FROM {table}))"
            )
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return counts


# The hand-written queries ----------------------------------------------------------------------
# Parameters: :start, :end (half-open UTC instants of P). Rounding half to even is written out.

COUNTED = (
    "status IN ('paid', 'partially_refunded', 'refunded') "
    "AND amount_minor - amount_refunded_minor - fee_cover_minor > 0"
)
NET = "(amount_minor - amount_refunded_minor - fee_cover_minor)"
RATES_CTE = """rates AS (
  SELECT DISTINCT ON (currency) currency, rate FROM exchange_rates
  WHERE reporting_currency = 'gbp' ORDER BY currency, set_at DESC, id DESC)"""


def half_even(x: str) -> str:
    """SQL for round-half-to-even of a non-negative numeric x."""
    return (
        f"(CASE WHEN ({x}) - floor({x}) = 0.5 THEN floor({x}) + mod(floor({x}), 2) "
        f"ELSE round({x}) END)"
    )


def percent(part: str, whole: str) -> str:
    tenths = half_even(f"({part})::numeric * 1000 / ({whole})")
    return f"(CASE WHEN ({whole}) = 0 THEN '' ELSE (({tenths}) / 10)::numeric(14,1)::text END)"


def grouped_sql(label: str) -> str:
    return f"""
WITH {RATES_CTE},
g AS (
  SELECT {label} AS label, currency, count(*) AS n, sum({NET}) AS total
  FROM donations WHERE {COUNTED} AND paid_at >= :start AND paid_at < :end
  GROUP BY 1, 2),
c AS (
  SELECT g.label,
         sum(CASE WHEN g.currency = 'gbp' THEN g.total
                  WHEN r.rate IS NOT NULL THEN {half_even("g.total * r.rate")} END) AS conv,
         coalesce(string_agg(CASE WHEN g.currency <> 'gbp' AND r.rate IS NULL
                                  THEN g.currency END, ' ' ORDER BY g.currency), '') AS missing
  FROM g LEFT JOIN rates r ON r.currency = g.currency GROUP BY g.label)
SELECT g.label, g.currency, g.n, g.total,
       CASE WHEN g.currency = min(g.currency) OVER (PARTITION BY g.label) THEN c.conv END,
       c.missing
FROM g JOIN c ON c.label = g.label"""


SQL = {
    "totals": grouped_sql("to_char(paid_at AT TIME ZONE 'UTC', 'YYYY-MM')"),
    "campaigns": grouped_sql(
        "coalesce((SELECT appeal_code FROM campaigns "
        "WHERE campaigns.id = donations.campaign_id), '(none)')"
    ),
    "funds": grouped_sql("designation"),
    "gift_size": f"""
WITH g AS (
  SELECT currency, {NET} AS net,
         row_number() OVER (PARTITION BY currency ORDER BY {NET}) AS rn,
         count(*) OVER (PARTITION BY currency) AS n
  FROM donations WHERE {COUNTED} AND paid_at >= :start AND paid_at < :end)
SELECT currency, count(*), sum(net),
       {half_even("sum(net)::numeric / count(*)")},
       {half_even("avg(net) FILTER (WHERE rn IN ((n + 1) / 2, (n + 2) / 2))")}
FROM g GROUP BY currency""",
    "donors": f"""
WITH per AS (
  SELECT donor_id, min(paid_at) AS first,
         bool_or(paid_at >= :start AND paid_at < :end) AS cur
  FROM donations WHERE {COUNTED} GROUP BY donor_id)
SELECT count(*) FILTER (WHERE cur AND first >= :start AND first < :end),
       count(*) FILTER (WHERE cur AND NOT (first >= :start AND first < :end)),
       count(*) FILTER (WHERE cur)
FROM per""",
    "retention": f"""
WITH per AS (
  SELECT donor_id, min(paid_at) AS first,
         bool_or(paid_at >= :start AND paid_at < :end) AS cur,
         bool_or(paid_at >= :pstart AND paid_at < :start) AS prev,
         bool_or(paid_at >= :lstart AND paid_at < :pstart) AS earlier
  FROM donations WHERE {COUNTED} GROUP BY donor_id),
f AS (
  SELECT per.*, prev AND first >= :pstart AS new_prev FROM per),
n AS (
  SELECT count(*) FILTER (WHERE prev) AS prev, count(*) FILTER (WHERE cur) AS cur,
         count(*) FILTER (WHERE prev AND cur) AS kept,
         count(*) FILTER (WHERE new_prev) AS new_prev,
         count(*) FILTER (WHERE new_prev AND cur) AS new_kept,
         count(*) FILTER (WHERE prev AND NOT new_prev) AS rep_prev,
         count(*) FILTER (WHERE prev AND NOT new_prev AND cur) AS rep_kept,
         count(*) FILTER (WHERE prev AND NOT cur) AS lybunt,
         count(*) FILTER (WHERE earlier AND NOT cur AND NOT prev) AS sybunt
  FROM f)
SELECT prev, cur, kept, {percent("kept", "prev")}, {percent("prev - kept", "prev")},
       {percent("new_kept", "new_prev")}, {percent("rep_kept", "rep_prev")}, lybunt, sybunt
FROM n""",
    "mrr": """
WITH chg AS (
  SELECT id, subject_id AS plan_id, at, (detail->>'amount_minor')::int AS amount
  FROM audit_events
  WHERE subject_type = 'plan' AND action IN ('plan.changed', 'plan.amount_changed_in_stripe')
    AND json_typeof(detail->'amount_minor') = 'number'),
first_paid AS (
  SELECT DISTINCT ON (plan_id) plan_id, amount_minor - fee_cover_minor AS amount
  FROM donations WHERE plan_id IS NOT NULL AND paid_at IS NOT NULL
  ORDER BY plan_id, paid_at, id DESC),
p AS (
  SELECT rp.id, rp.currency, CASE WHEN rp.frequency = 'yearly' THEN 1 ELSE 12 END AS w,
         rp.started_at < :start AND (least(rp.cancelled_at, rp.ended_at) IS NULL
              OR least(rp.cancelled_at, rp.ended_at) >= :start) AS live_start,
         rp.started_at < :end AND (least(rp.cancelled_at, rp.ended_at) IS NULL
              OR least(rp.cancelled_at, rp.ended_at) >= :end) AS live_end,
         rp.cancelled_at IS NULL AND rp.last_failure_code IS NOT NULL AS involuntary,
         coalesce((SELECT amount FROM chg WHERE chg.plan_id = rp.id AND chg.at < :start
                   ORDER BY chg.id DESC LIMIT 1),
                  CASE WHEN EXISTS (SELECT 1 FROM chg WHERE chg.plan_id = rp.id)
                       THEN coalesce(fp.amount, rp.amount_minor - rp.fee_cover_minor)
                       ELSE rp.amount_minor - rp.fee_cover_minor END) AS a_start,
         coalesce((SELECT amount FROM chg WHERE chg.plan_id = rp.id AND chg.at < :end
                   ORDER BY chg.id DESC LIMIT 1),
                  CASE WHEN EXISTS (SELECT 1 FROM chg WHERE chg.plan_id = rp.id)
                       THEN coalesce(fp.amount, rp.amount_minor - rp.fee_cover_minor)
                       ELSE rp.amount_minor - rp.fee_cover_minor END) AS a_end
  FROM recurring_plans rp LEFT JOIN first_paid fp ON fp.plan_id = rp.id
  WHERE rp.started_at IS NOT NULL),
s AS (  -- in twelfths of a minor unit: exact integers
  SELECT currency,
    sum(CASE WHEN live_start THEN w * a_start ELSE 0 END) AS starting,
    sum(CASE WHEN NOT live_start AND live_end THEN w * a_end ELSE 0 END) AS new,
    sum(CASE WHEN live_start AND live_end AND a_end > a_start
             THEN w * (a_end - a_start) ELSE 0 END) AS expansion,
    sum(CASE WHEN live_start AND live_end AND a_end < a_start
             THEN w * (a_start - a_end) ELSE 0 END) AS contraction,
    sum(CASE WHEN live_start AND NOT live_end AND NOT involuntary
             THEN w * a_start ELSE 0 END) AS voluntary,
    sum(CASE WHEN live_start AND NOT live_end AND involuntary
             THEN w * a_start ELSE 0 END) AS involuntary,
    sum(CASE WHEN live_end THEN w * a_end ELSE 0 END) AS ending
  FROM p GROUP BY currency)
SELECT currency, """
    + ", ".join(
        half_even(f"{c}::numeric / 12")
        for c in (
            "starting",
            "new",
            "expansion",
            "contraction",
            "voluntary",
            "involuntary",
            "ending",
        )
    )
    + """
FROM s""",
    "dunning": f"""
WITH c AS (
  SELECT currency, count(*) AS failed, count(recovered_at) AS recovered,
         sum(amount_due_minor) AS due, coalesce(sum(recovered_amount_minor), 0) AS collected
  FROM plan_payment_failures WHERE failed_at >= :start AND failed_at < :end
  GROUP BY currency)
SELECT currency, failed, recovered, {percent("recovered", "failed")}, failed - recovered,
       due, collected, 0 AS o FROM c
UNION ALL
SELECT 'all', sum(failed), sum(recovered), {percent("sum(recovered)", "sum(failed)")},
       sum(failed) - sum(recovered), NULL, NULL, 1 FROM c HAVING count(*) > 0""",
}


def normalise(key: str, rows) -> list[list]:
    """The SQL rows in the app's shape (order and Python types only, no arithmetic)."""
    out = []
    for row in rows:
        row = [
            int(v)
            if hasattr(v, "as_integer_ratio")
            and not isinstance(v, bool)
            and v == int(v)
            and not isinstance(v, str)
            else v
            for v in row
        ]
        out.append(row)
    if key in ("totals", "campaigns", "funds"):
        out = [[r[0], r[1], r[2], r[3], "" if r[4] is None else r[4], r[5]] for r in out]
        return sorted(out, key=lambda r: (r[0], r[1]))
    if key == "donors":
        ((first, repeat, total),) = out
        return [["first_time", first], ["repeat", repeat], ["all", total]]
    if key == "retention":
        (v,) = out
        names = [
            "donors_previous_period",
            "donors_this_period",
            "retained",
            "retention_rate_percent",
            "attrition_rate_percent",
            "new_donor_retention_percent",
            "repeat_donor_retention_percent",
            "lybunt",
            "sybunt",
        ]
        return [[n, x] for n, x in zip(names, v, strict=True)]
    if key == "dunning":
        out = sorted(out, key=lambda r: (r[7], r[0]))
        return [[*r[:5], "" if r[5] is None else r[5], "" if r[6] is None else r[6]] for r in out]
    return sorted(out, key=lambda r: r[0])


def app_rows(key: str, rows) -> list[list]:
    if key in ("totals", "campaigns", "funds"):
        return sorted(rows, key=lambda r: (r[0], r[1]))
    return rows


# Timing ---------------------------------------------------------------------------------------


def best_of_each(repeat: int, first, second, min_seconds: float = 2.0, max_rounds: int = 300):
    """Best time of each of two calls, taken in turn (first, second, first, ...): at least
    `repeat` rounds, and more (up to `max_rounds`) until `min_seconds` have passed, so the
    best of a query of a few milliseconds is not one lucky or unlucky draw."""
    best, results = [float("inf"), float("inf")], [None, None]
    started_all, rounds = time.perf_counter(), 0
    while rounds < repeat or (
        time.perf_counter() - started_all < min_seconds and rounds < max_rounds
    ):
        rounds += 1
        for i, fn in enumerate((first, second)):
            started = time.perf_counter()
            results[i] = fn()
            best[i] = min(best[i], time.perf_counter() - started)
    return best, results


def app_for(dsn: str):
    return create_app(
        TestingConfig,
        SQLALCHEMY_DATABASE_URI=dsn.replace("postgresql://", "postgresql+psycopg://"),
        LOG_LEVEL="WARNING",
    )


def run(dsn: str, repeat: int, verbose: bool = True) -> list[dict]:
    """Every report and range: app and SQL seconds (best of `repeat`) and whether the rows agree."""
    app = app_for(dsn)
    ranges = {
        "1 year": (TODAY - timedelta(days=364), TODAY),
        "5 years": (date(TODAY.year - 5, TODAY.month, TODAY.day) + timedelta(days=1), TODAY),
    }
    keys = [k for k in reports.REPORTS if k != "sponsorship"]
    results = []
    if verbose:
        print(f"{'report':<10} {'range':<8} {'app s':>8} {'SQL s':>8} {'app/SQL':>8}  rows  same")
    with app.app_context():
        for key in keys:
            for label, (d_from, d_to) in ranges.items():
                p_from, p_to = reports.previous_period(d_from, d_to)
                lookback = date(p_from.year - reports.SYBUNT_LOOKBACK_YEARS, p_from.month, 1)
                params = {
                    "start": reports._start(d_from),
                    "end": reports._start(d_to + timedelta(days=1)),
                    "pstart": reports._start(p_from),
                    "lstart": reports._start(lookback),
                }

                def app_call(key=key, d_from=d_from, d_to=d_to):
                    report = reports.build(key, d_from, d_to, "month")
                    reports.bars(report)
                    db.session.rollback()  # a fresh transaction each run, as a request has
                    return report

                def sql_call(key=key, params=params):
                    rows = db.session.execute(text(SQL[key]), params).all()
                    db.session.rollback()
                    return rows

                (app_s, sql_s), (report, rows) = best_of_each(repeat, app_call, sql_call)
                got, want = app_rows(key, report.rows), normalise(key, rows)
                same = got == want
                if verbose and not same:
                    print(f"  MISMATCH {key} {label}:\n    app {got[:6]}\n    sql {want[:6]}")
                if verbose:
                    print(
                        f"{key:<10} {label:<8} {app_s:8.3f} {sql_s:8.3f} {app_s / sql_s:7.1f}x "
                        f"{len(got):5d}  {'yes' if same else 'NO'}"
                    )
                results.append(
                    {
                        "key": key,
                        "range": label,
                        "app_s": app_s,
                        "sql_s": sql_s,
                        "rows": len(got),
                        "same": same,
                    }
                )
        db.engine.dispose()
    if verbose:
        print(
            "sponsorship: not timed (counts over the sponsorships table, which this data set "
            "leaves empty)"
        )
    return results


def _complete(dsn: str, donors: int) -> bool:
    """Whether a previous run loaded this database whole (the load is one transaction)."""
    try:
        with psycopg.connect(dsn) as conn:
            n_donors = conn.execute("SELECT count(*) FROM donors").fetchone()[0]
            n_gifts = conn.execute("SELECT count(*) FROM donations").fetchone()[0]
    except psycopg.Error:
        return False
    return n_donors == donors and n_gifts > 0


def prepare(gifts: int, donors: int, reload: bool = False, verbose: bool = True) -> str:
    """The DSN of a migrated database holding the data set, loading it only when needed."""
    from flask_migrate import upgrade

    name = database_name(gifts, donors)
    dsn = f"{SERVER}/{name}"
    fresh = reload or not _complete(dsn, donors)
    if fresh:
        host = ["-h", "127.0.0.1", "-U", "postgres"]
        subprocess.run(["dropdb", *host, "--if-exists", name], check=True)
        subprocess.run(["createdb", *host, name], check=True)
    app = app_for(dsn)
    with app.app_context():
        upgrade()  # a reused database gets any migration added since it was loaded
        db.engine.dispose()
    if fresh:
        started = time.perf_counter()
        counts = load(dsn, gifts, donors)
        if verbose:
            print(
                f"loaded in {time.perf_counter() - started:.0f} s (not measured): "
                + ", ".join(f"{v:,} {k}" for k, v in counts.items())
            )
    return dsn


TITLES = {
    "totals": "totals by month",
    "campaigns": "totals by campaign",
    "funds": "totals by fund",
    "gift_size": "average and median gift",
    "donors": "first-time and repeat donors",
    "retention": "retention, LYBUNT, SYBUNT",
    "mrr": "MRR and movements",
    "dunning": "dunning recovery",
}


def measure(quick: bool) -> list[Ratio]:
    """One Ratio per report and range: the staff page's call / the hand-written SQL."""
    gifts, donors = QUICK if quick else FULL
    dsn = prepare(gifts, donors, verbose=False)
    return [
        Ratio(
            name=f"report {TITLES[r['key']]}, {r['range']}, {gifts:,} gifts / hand-written SQL",
            value=r["app_s"] / r["sql_s"],
            goal=GOAL,
            at_least=False,
            detail=f"{r['app_s']:.3f} s vs {r['sql_s']:.3f} s"
            + ("" if r["same"] else "; the figures differ from the SQL's"),
            correct=r["same"],
        )
        for r in run(dsn, repeat=3, verbose=False)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gifts", type=int, default=FULL[0])
    parser.add_argument("--donors", type=int, default=FULL[1])
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK[0]:,} gifts / {QUICK[1]:,} donors"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    parser.add_argument(
        "--reload", action="store_true", help="load the data set again even if present"
    )
    args = parser.parse_args()
    gifts, donors = QUICK if args.quick else (args.gifts, args.donors)
    dsn = prepare(gifts, donors, reload=args.reload)
    with psycopg.connect(dsn) as conn:
        server = conn.execute("SHOW server_version").fetchone()[0]
    with open("/proc/loadavg") as f:
        loadavg = " ".join(f.read().split()[:3])
    print(
        f"PostgreSQL {server}; {gifts:,} gifts, {donors:,} donors; best of {args.repeat} runs "
        f"each; today = {TODAY}; load average {loadavg}"
    )
    results = run(dsn, args.repeat)
    mismatches = sum(not r["same"] for r in results)
    worst = max(r["app_s"] / r["sql_s"] for r in results)
    if args.drop:
        subprocess.run(
            ["dropdb", "-h", "127.0.0.1", "-U", "postgres", database_name(gifts, donors)],
            check=True,
        )
    print(
        ("all figures agree" if not mismatches else f"{mismatches} report(s) disagree")
        + f"; worst app/SQL {worst:.2f} (goal at most {GOAL})"
    )
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
