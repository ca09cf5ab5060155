"""Fundraising reports, read-only across donations, campaigns and sponsorship
(docs/reports.md has every formula).

Conventions, decided once:
- Donor level, not household level.
- A *counted gift* has status paid, partially refunded or refunded, and a positive net
  amount `amount − refunded − fee cover` (campaigns.services.net_gift_expression). Fully
  refunded gifts, open disputes and charge-backs are not counted; partial refunds count net.
- Dates are the UTC date of `paid_at`; a range [from, to] includes both days.
- Money is summed per currency in minor units; the "converted" column uses the newest
  staff-set rate per currency, rounding each currency's sum once, half to even.
- Period P is the chosen range; P−1 is the range of the same number of days just before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from flask import current_app
from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    and_,
    case,
    cast,
    exists,
    func,
    not_,
    or_,
    select,
)

from donorhub import money
from donorhub.audit import AuditEvent
from donorhub.campaigns.models import Campaign
from donorhub.donations.models import (
    COUNTED_STATUSES,
    Donation,
    Frequency,
    PlanPaymentFailure,
    RecurringPlan,
)
from donorhub.extensions import db
from donorhub.sponsorship import services as sponsorship_services

REPORTS = {
    "totals": "Totals by period",
    "campaigns": "Totals by campaign",
    "funds": "Totals by fund",
    "gift_size": "Average and median gift",
    "donors": "First-time and repeat donors",
    "retention": "Donor retention, LYBUNT and SYBUNT",
    "mrr": "Recurring revenue (MRR) and its movements",
    "dunning": "Dunning recovery",
    "sponsorship": "Sponsorship",
}
SYBUNT_LOOKBACK_YEARS = 4
PLAN_AMOUNT_ACTIONS = ("plan.changed", "plan.amount_changed_in_stripe")


@dataclass
class Report:
    key: str
    title: str
    columns: list[str]
    rows: list[list]
    #: (label, value) pairs for the bar chart; values are plain numbers.
    chart: list[tuple[str, int]] = field(default_factory=list)
    chart_unit: str = ""
    notes: list[str] = field(default_factory=list)
    empty_message: str | None = None


def _start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _between(column, start: datetime, end: datetime):
    return and_(column >= start, column < end)


def _in_range(date_from: date, date_to: date):
    return _between(Donation.paid_at, _start(date_from), _start(date_to + timedelta(days=1)))


def _net():
    """A gift's amount − refunded − fee cover: its counted amount when `_counted()` holds
    (the same figure as campaigns' net_gift_expression() for a counted gift)."""
    return Donation.amount_minor - Donation.amount_refunded_minor - Donation.fee_cover_minor


def _counted():
    return and_(Donation.status.in_(COUNTED_STATUSES), _net() > 0)


def previous_period(date_from: date, date_to: date) -> tuple[date, date]:
    days = (date_to - date_from).days + 1
    return date_from - timedelta(days=days), date_from - timedelta(days=1)


def _rates() -> tuple[str, dict]:
    reporting = current_app.config["REPORTING_CURRENCY"]
    return reporting, money.current_rates(reporting)


def _dialect() -> str:
    return db.session.get_bind().dialect.name


def period_label(moment: datetime, period: str) -> str:
    """The label of the period holding a UTC moment: "2026", "2026-Q3" or "2026-07"."""
    if period == "year":
        return f"{moment.year}"
    if period == "quarter":
        return f"{moment.year}-Q{(moment.month - 1) // 3 + 1}"
    return f"{moment.year}-{moment.month:02d}"


def period_label_sql(column, period: str, dialect: str):
    """SQL computing `period_label` of a UTC timestamp column, so gifts group in the database:
    to_char on PostgreSQL (timestamptz read in UTC), strftime on SQLite (naive UTC text)."""
    if dialect == "postgresql":
        pattern = {"year": "YYYY", "quarter": 'YYYY-"Q"Q'}.get(period, "YYYY-MM")
        return func.to_char(func.timezone("UTC", column), pattern, type_=String)
    if period == "year":
        return func.strftime("%Y", column, type_=String)
    if period == "quarter":
        quarter = (cast(func.strftime("%m", column), Integer) + 2) // 3
        return func.strftime("%Y", column, type_=String).concat("-Q").concat(cast(quarter, String))
    return func.strftime("%Y-%m", column, type_=String)


def _group_sums(group, date_from: date, date_to: date) -> list[tuple[Any, str, int, int]]:
    """(group, currency, counted gifts, Σ net) for the counted gifts of [from, to], grouped in
    the database: only the aggregated rows travel."""
    gifts = (
        select(group.label("grp"), Donation.currency, _net().label("net"))
        .where(_counted(), _in_range(date_from, date_to))
        .subquery()
    )
    rows = db.session.execute(
        select(gifts.c.grp, gifts.c.currency, func.count(), func.sum(gifts.c.net)).group_by(
            gifts.c.grp, gifts.c.currency
        )
    ).all()
    return [(grp, currency, int(n), int(total)) for grp, currency, n, total in rows]


def _grouped_totals(
    key: str,
    title: str,
    rows: list[tuple[Any, str, int, int]],
    label_of: Callable[[Any], str],
) -> Report:
    """rows: (group, currency, gifts, Σ net). One line per label and currency, plus the
    label's total converted into the reporting currency with the staff-set rates."""
    reporting, rates = _rates()
    groups: dict[str, dict[str, list[int]]] = {}
    for group, currency, count, total in rows:
        bucket = groups.setdefault(label_of(group), {}).setdefault(currency, [0, 0])
        bucket[0] += total
        bucket[1] += count
    table, chart = [], []
    for label in sorted(groups):
        per_currency = {c: v[0] for c, v in groups[label].items()}
        result = money.convert(per_currency, reporting, rates)
        converted, missing = result.total_minor, result.missing
        currencies = sorted(per_currency)
        for currency in currencies:
            total, count = groups[label][currency]
            table.append(
                [
                    label,
                    currency,
                    count,
                    total,
                    converted if currency == currencies[0] else "",
                    " ".join(missing),
                ]
            )
        chart.append((label, converted))
    return Report(
        key,
        title,
        ["group", "currency", "gifts", "net_minor", f"converted_{reporting}_minor", "no_rate_for"],
        table,
        chart,
        f"{reporting.upper()} minor units",
    )


def totals_by_period(date_from: date, date_to: date, period: str = "month") -> Report:
    label = period_label_sql(Donation.paid_at, period, _dialect())
    report = _grouped_totals(
        "totals", f"Totals by {period}", _group_sums(label, date_from, date_to), str
    )
    report.columns[0] = period
    return report


def totals_by_campaign(date_from: date, date_to: date, period: str = "month") -> Report:
    rows = _group_sums(Donation.campaign_id, date_from, date_to)
    ids = {cid for cid, *_ in rows if cid}
    names = dict(
        db.session.execute(
            select(Campaign.id, Campaign.appeal_code).where(Campaign.id.in_(ids or [-1]))
        ).all()
    )
    report = _grouped_totals(
        "campaigns",
        "Totals by campaign",
        rows,
        lambda cid: names.get(cid, "(none)") if cid else "(none)",
    )
    report.columns[0] = "appeal_code"
    return report


def totals_by_fund(date_from: date, date_to: date, period: str = "month") -> Report:
    rows = _group_sums(Donation.designation, date_from, date_to)
    report = _grouped_totals("funds", "Totals by fund", rows, str)
    report.columns[0] = "fund"
    return report


def median(values: list[int]) -> Decimal:
    """The middle value; for an even count, the mean of the two middle values."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return Decimal(0)
    if n % 2:
        return Decimal(ordered[n // 2])
    return (Decimal(ordered[n // 2 - 1]) + Decimal(ordered[n // 2])) / 2


def _round(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _gift_size_rows(date_from: date, date_to: date) -> list[tuple[str, int, int, int]]:
    """(currency, counted gifts, Σ net, twice the median net) per currency. Twice the median
    is an integer: the middle net doubled, or the sum of the two middle nets."""
    net = _net()
    where = (_counted(), _in_range(date_from, date_to))
    if _dialect() == "postgresql":
        # percentile_cont interpolates in double precision: exact for these integers (far
        # below 2**52), and doubled it is a whole number again.
        doubled = cast(func.percentile_cont(0.5).within_group(net) * 2, BigInteger)
        query = (
            select(Donation.currency, func.count(), func.sum(net), doubled)
            .where(*where)
            .group_by(Donation.currency)
        )
    else:
        ranked = (
            select(
                Donation.currency,
                net.label("net"),
                func.row_number().over(partition_by=Donation.currency, order_by=net).label("rn"),
                func.count().over(partition_by=Donation.currency).label("n"),
            )
            .where(*where)
            .subquery()
        )
        r = ranked.c

        def middle(position):
            return func.sum(case((r.rn == position, r.net), else_=0))

        query = select(
            r.currency,
            func.count(),
            func.sum(r.net),
            middle((r.n + 1) // 2) + middle((r.n + 2) // 2),
        ).group_by(r.currency)
    return [(c, int(n), int(total), int(twice)) for c, n, total, twice in db.session.execute(query)]


def gift_size(date_from: date, date_to: date, period: str = "month") -> Report:
    table, chart = [], []
    for currency, count, total, twice_median in sorted(_gift_size_rows(date_from, date_to)):
        average = _round(Decimal(total) / count)
        middle = _round(Decimal(twice_median) / 2)
        table.append([currency, count, total, average, middle])
        chart.append((f"{currency.upper()} mean", average))
        chart.append((f"{currency.upper()} median", middle))
    return Report(
        "gift_size",
        "Average and median gift",
        ["currency", "gifts", "net_minor", "average_minor", "median_minor"],
        table,
        chart,
        "minor units",
        [
            "Average = Σ net / count of counted gifts; median of the net amounts "
            "(even count: mean of the two middle values); both rounded half to even."
        ],
    )


def donor_ids_in(date_from: date, date_to: date):
    """D(P) as a subquery: donors with at least one counted gift in P."""
    return select(Donation.donor_id).where(_counted(), _in_range(date_from, date_to)).distinct()


def first_gift_dates(donor_ids=None) -> dict[int, datetime]:
    """Each donor's first counted gift (of the donors `donor_ids` selects, if given)."""
    query = select(Donation.donor_id, func.min(Donation.paid_at)).where(_counted())
    if donor_ids is not None:
        query = query.where(Donation.donor_id.in_(donor_ids))
    # Counted gifts are paid, so each donor's earliest payment time is never NULL.
    return dict(db.session.execute(query.group_by(Donation.donor_id)).all())  # type: ignore[arg-type]


def _flag(condition):
    """1 for a donor with at least one gift meeting `condition`, else 0 (in a GROUP BY donor)."""
    return func.max(case((condition, 1), else_=0))


def _count_where(condition):
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def donors_report(date_from: date, date_to: date, period: str = "month") -> Report:
    start, end = _start(date_from), _start(date_to + timedelta(days=1))
    # Every donor in D(P) has a gift before `end`, so their first gift is among those.
    per_donor = (
        select(
            func.min(Donation.paid_at).label("first"),
            _flag(Donation.paid_at >= start).label("cur"),
        )
        .where(_counted(), Donation.paid_at < end)
        .group_by(Donation.donor_id)
        .subquery()
    )
    d = per_donor.c
    everyone, first = db.session.execute(
        select(_count_where(d.cur == 1), _count_where(and_(d.cur == 1, d.first >= start)))
    ).one()
    first_time, repeat = int(first), int(everyone) - int(first)
    return Report(
        "donors",
        "First-time and repeat donors",
        ["kind", "donors"],
        [["first_time", first_time], ["repeat", repeat], ["all", int(everyone)]],
        [("First-time", first_time), ("Repeat", repeat)],
        "donors",
        [
            "First-time: donors in D(P) whose first counted gift ever is in P; "
            "repeat: D(P) minus first-time."
        ],
    )


def _percent(part: int, whole: int) -> str:
    if whole == 0:
        return ""
    return str((Decimal(part) * 100 / whole).quantize(Decimal("0.1"), rounding=ROUND_HALF_EVEN))


def retention(date_from: date, date_to: date, period: str = "month") -> Report:
    prev_from, prev_to = previous_period(date_from, date_to)
    start, end = _start(date_from), _start(date_to + timedelta(days=1))
    prev_start = _start(prev_from)  # P−1 ends where P starts
    lookback_from = date(prev_from.year - SYBUNT_LOOKBACK_YEARS, prev_from.month, 1)
    paid = Donation.paid_at
    # One row per donor with a counted gift before the end of P: which periods they gave in,
    # and their first counted gift ever (for those in D(P−1), it is before `end`).
    per_donor = (
        select(
            func.min(paid).label("first"),
            _flag(paid >= start).label("cur"),
            _flag(_between(paid, prev_start, start)).label("prev"),
            _flag(_between(paid, _start(lookback_from), prev_start)).label("earlier"),
        )
        .where(_counted(), paid < end)
        .group_by(Donation.donor_id)
        .subquery()
    )
    d = per_donor.c
    cur, prev, earlier = d.cur == 1, d.prev == 1, d.earlier == 1
    new_prev = and_(prev, d.first >= prev_start)
    repeat_prev = and_(prev, d.first < prev_start)
    figures = db.session.execute(
        select(
            _count_where(prev),
            _count_where(cur),
            _count_where(and_(prev, cur)),
            _count_where(new_prev),
            _count_where(and_(new_prev, cur)),
            _count_where(repeat_prev),
            _count_where(and_(repeat_prev, cur)),
            _count_where(and_(earlier, not_(cur), not_(prev))),
        )
    ).one()
    previous, current, retained, new, new_kept, repeat, repeat_kept, sybunt = map(int, figures)
    lybunt = previous - retained
    rows: list[list[Any]] = [
        ["donors_previous_period", previous],
        ["donors_this_period", current],
        ["retained", retained],
        ["retention_rate_percent", _percent(retained, previous)],
        ["attrition_rate_percent", _percent(previous - retained, previous)],
        ["new_donor_retention_percent", _percent(new_kept, new)],
        ["repeat_donor_retention_percent", _percent(repeat_kept, repeat)],
        ["lybunt", lybunt],
        ["sybunt", sybunt],
    ]
    return Report(
        "retention",
        "Donor retention, LYBUNT and SYBUNT",
        ["measure", "value"],
        rows,
        [
            ("Previous", previous),
            ("Retained", retained),
            ("LYBUNT", lybunt),
            ("SYBUNT", sybunt),
        ],
        "donors",
        [
            f"P−1 = {prev_from} to {prev_to}. Retention = |D(P−1) ∩ D(P)| / |D(P−1)|. "
            "LYBUNT = D(P−1) − D(P). SYBUNT = donors with a counted gift in the "
            f"{SYBUNT_LOOKBACK_YEARS} years before P−1, minus D(P), minus LYBUNT."
        ],
    )


def twelfths(amount_minor: int, frequency: Frequency) -> int:
    """A plan's monthly equivalent in twelfths of a minor unit: an exact integer, so sums of
    yearly plans (amount / 12) are exact and rounded once, half to even, at the end."""
    return amount_minor if frequency is Frequency.YEARLY else amount_minor * 12


def _from_twelfths(total: int) -> int:
    quotient, remainder = divmod(total, 12)
    if remainder * 2 > 12 or (remainder * 2 == 12 and quotient % 2):
        return quotient + 1
    return quotient


def _plan_live_at(plan: RecurringPlan, moment: datetime) -> bool:
    if plan.started_at is None or plan.started_at >= moment:
        return False
    stopped = [t for t in (plan.cancelled_at, plan.ended_at) if t is not None]
    return not stopped or min(stopped) >= moment


def _plan_live_at_sql(moment: datetime):
    """`_plan_live_at` in SQL, for plans with a start."""
    p = RecurringPlan
    return and_(
        p.started_at < moment,
        or_(p.cancelled_at.is_(None), p.cancelled_at >= moment),
        or_(p.ended_at.is_(None), p.ended_at >= moment),
    )


def _amount_events(plan_id):
    a = AuditEvent
    return and_(
        a.subject_type == "plan",
        a.action.in_(PLAN_AMOUNT_ACTIONS),
        a.subject_id == plan_id,
    )


def _amount_history(plans) -> dict[int, list[tuple[datetime, int]]]:
    """The recorded amount changes of the plans `plans` selects (ids), oldest first."""
    events = db.session.execute(
        select(AuditEvent.subject_id, AuditEvent.at, AuditEvent.detail)
        .where(_amount_events(AuditEvent.subject_id), AuditEvent.subject_id.in_(plans))
        .order_by(AuditEvent.id)
    ).all()
    history: dict[int, list[tuple[datetime, int]]] = {}
    for plan_id, at, detail in events:
        if isinstance(detail, dict) and isinstance(detail.get("amount_minor"), int):
            history.setdefault(plan_id, []).append((at, detail["amount_minor"]))
    return history


MRR_MEASURES = (
    "starting",
    "new",
    "expansion",
    "contraction",
    "voluntary_churn",
    "involuntary_churn",
    "ending",
)


def _unchanged_plans_mrr(start: datetime, end: datetime) -> dict[str, dict[str, int]]:
    """The MRR measures, in twelfths, of the plans whose amount never changed (no change in
    the audit log: the amount at any moment is today's), summed in the database per currency.
    Their amount is the same at both ends, so they add nothing to expansion or contraction."""
    p = RecurringPlan
    monthly = case((p.frequency == Frequency.YEARLY, 1), else_=12) * (
        p.amount_minor - p.fee_cover_minor
    )
    live_start, live_end = _plan_live_at_sql(start), _plan_live_at_sql(end)
    involuntary = and_(p.cancelled_at.is_(None), p.last_failure_code.is_not(None))
    churned = and_(live_start, not_(live_end))

    def total(condition):
        return func.coalesce(func.sum(case((condition, monthly), else_=0)), 0)

    rows = db.session.execute(
        select(
            p.currency,
            total(live_start),
            total(and_(not_(live_start), live_end)),
            total(and_(churned, not_(involuntary))),
            total(and_(churned, involuntary)),
            total(live_end),
        )
        .where(p.started_at.is_not(None), not_(exists().where(_amount_events(p.id))))
        .group_by(p.currency)
    ).all()
    return {
        currency: dict(
            zip(
                MRR_MEASURES,
                (int(s), int(n), 0, 0, int(v), int(i), int(e)),
                strict=True,
            )
        )
        for currency, s, n, v, i, e in rows
    }


def mrr(date_from: date, date_to: date, period: str = "month") -> Report:
    """Starting and ending MRR per currency and the movements between them."""
    start, end = _start(date_from), _start(date_to + timedelta(days=1))
    buckets = _unchanged_plans_mrr(start, end)
    # Plans with an amount change in the audit log (few): their amount at a moment is
    # replayed in Python from the recorded changes.
    changed = select(RecurringPlan.id).where(
        RecurringPlan.started_at.is_not(None), exists().where(_amount_events(RecurringPlan.id))
    )
    plans = list(db.session.scalars(select(RecurringPlan).where(RecurringPlan.id.in_(changed))))
    history = _amount_history(changed)
    # The amount before the first recorded change: the plan's first paid instalment.
    first_paid = (
        select(Donation.plan_id, func.min(Donation.paid_at).label("at"))
        .where(Donation.plan_id.in_(changed), Donation.paid_at.is_not(None))
        .group_by(Donation.plan_id)
        .subquery()
    )
    first_amounts = dict(
        db.session.execute(
            select(Donation.plan_id, Donation.amount_minor - Donation.fee_cover_minor)
            .join(
                first_paid,
                and_(Donation.plan_id == first_paid.c.plan_id, Donation.paid_at == first_paid.c.at),
            )
            .order_by(Donation.plan_id, Donation.id)
        ).all()
    )

    def amount_at(plan: RecurringPlan, moment: datetime) -> int:
        changes = history.get(plan.id, [])
        before = [a for t, a in changes if t < moment]
        if before:
            return before[-1]
        if changes:
            return first_amounts.get(plan.id, plan.gift_minor)
        return plan.gift_minor

    for plan in plans:
        b = buckets.setdefault(plan.currency, {n: 0 for n in MRR_MEASURES})
        live_start, live_end = _plan_live_at(plan, start), _plan_live_at(plan, end)
        m_start = twelfths(amount_at(plan, start), plan.frequency)
        m_end = twelfths(amount_at(plan, end), plan.frequency)
        if live_start:
            b["starting"] += m_start
        if live_end:
            b["ending"] += m_end
        if not live_start and live_end:
            b["new"] += m_end
        elif live_start and live_end:
            if m_end > m_start:
                b["expansion"] += m_end - m_start
            elif m_end < m_start:
                b["contraction"] += m_start - m_end
        elif live_start and not live_end:
            involuntary = plan.cancelled_at is None and plan.last_failure_code is not None
            b["involuntary_churn" if involuntary else "voluntary_churn"] += m_start
    table, chart = [], []
    for currency in sorted(buckets):
        b = buckets[currency]
        table.append([currency, *[_from_twelfths(b[n]) for n in MRR_MEASURES]])
        for n in MRR_MEASURES[1:-1]:
            chart.append((f"{currency.upper()} {n.replace('_', ' ')}", _from_twelfths(b[n])))
    return Report(
        "mrr",
        "Recurring revenue (MRR) and its movements",
        ["currency", *[f"{n}_minor" for n in MRR_MEASURES]],
        table,
        chart,
        "minor units a month",
        [
            "MRR = Σ monthly equivalents of live plans (yearly ÷ 12, rounded half to even at "
            "the end). Ending = starting + new + expansion − contraction − churn. Involuntary "
            "churn: Stripe ended the plan after a failed payment; voluntary: the donor or staff "
            "cancelled. Amount changes come from the audit log of plan changes."
        ],
    )


def dunning(date_from: date, date_to: date, period: str = "month") -> Report:
    """Failed instalments whose first failure is in P, and how many were paid later.

    Dunning recovery = recovered / failed (docs/reports.md), per currency and overall;
    the amount recovered is what Stripe collected on the recovered invoices."""
    start, end = _start(date_from), _start(date_to + timedelta(days=1))
    f = PlanPaymentFailure
    rows = db.session.execute(
        select(
            f.currency,
            func.count(),
            func.count(f.recovered_at),
            func.coalesce(func.sum(f.amount_due_minor), 0),
            func.coalesce(func.sum(f.recovered_amount_minor), 0),
        )
        .where(f.failed_at >= start, f.failed_at < end)
        .group_by(f.currency)
        .order_by(f.currency)
    ).all()
    # coalesce(sum, 0) is never NULL.
    table: list[list[Any]] = [
        [
            currency,
            failed,
            recovered,
            _percent(recovered, failed),
            failed - recovered,
            int(due),
            int(collected),  # type: ignore[arg-type]  # coalesce(sum, 0) is never NULL
        ]
        for currency, failed, recovered, due, collected in rows
    ]
    failed, recovered = sum(r[1] for r in table), sum(r[2] for r in table)
    if table:
        table.append(
            ["all", failed, recovered, _percent(recovered, failed), failed - recovered, "", ""]
        )
    return Report(
        "dunning",
        "Dunning recovery",
        [
            "currency",
            "failed",
            "recovered",
            "recovery_rate_percent",
            "not_recovered",
            "failed_amount_minor",
            "recovered_amount_minor",
        ],
        table,
        [("Failed", failed), ("Recovered", recovered), ("Not recovered", failed - recovered)]
        if table
        else [],
        "instalments",
        [
            "Dunning recovery = failed instalments later paid / failed instalments. "
            "A failed instalment is one Stripe invoice of a plan reported failed "
            "(however many retries), counted in the period of its first failure; "
            "recovered when that invoice was paid later (up to today). Amounts: "
            "due on the failed invoices, and collected on the recovered ones."
        ],
        None if table else "No failed instalments in this period.",
    )


def sponsorship(date_from: date, date_to: date, period: str = "month") -> Report:
    rows = [list(r) for r in sponsorship_services.sponsorship_report_rows(date_from, date_to)]
    return Report(
        "sponsorship",
        "Sponsorship",
        ["measure", "value"],
        rows,
        [(str(r[0]), int(r[1])) for r in rows if isinstance(r[1], int)],
        "",
    )


BUILDERS = {
    "totals": totals_by_period,
    "campaigns": totals_by_campaign,
    "funds": totals_by_fund,
    "gift_size": gift_size,
    "donors": donors_report,
    "retention": retention,
    "mrr": mrr,
    "dunning": dunning,
    "sponsorship": sponsorship,
}


def build(key: str, date_from: date, date_to: date, period: str) -> Report:
    return BUILDERS[key](date_from, date_to, period)


@dataclass
class Bar:
    label: str
    value: int
    x: int
    y: int
    width: int
    height: int


def bars(report: Report, width: int = 640, height: int = 220) -> list[Bar]:
    """Geometry of a server-drawn SVG bar chart (no scripts, no styles)."""
    if not report.chart:
        return []
    top = max(max(v for _, v in report.chart), 1)
    slot = width // len(report.chart)
    out = []
    for i, (label, value) in enumerate(report.chart):
        h = max(0, value) * (height - 40) // top
        out.append(Bar(label, value, i * slot + 4, height - 20 - h, max(slot - 8, 2), h))
    return out
