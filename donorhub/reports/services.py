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

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from flask import current_app
from sqlalchemy import and_, func, select

from donorhub import money
from donorhub.audit import AuditEvent
from donorhub.campaigns.models import Campaign
from donorhub.donations.models import (
    COUNTED_STATUSES,
    Donation,
    Frequency,
    PlanPaymentFailure,
    RecurringPlan,
    net_gift_expression,
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


def _in_range(date_from: date, date_to: date):
    return and_(
        Donation.paid_at >= _start(date_from),
        Donation.paid_at < _start(date_to + timedelta(days=1)),
    )


def _counted():
    return and_(Donation.status.in_(COUNTED_STATUSES), net_gift_expression() > 0)


def previous_period(date_from: date, date_to: date) -> tuple[date, date]:
    days = (date_to - date_from).days + 1
    return date_from - timedelta(days=days), date_from - timedelta(days=1)


def _rates() -> tuple[str, dict]:
    reporting = current_app.config["REPORTING_CURRENCY"]
    return reporting, money.current_rates(reporting)


def _converted(by_currency: dict[str, int]) -> tuple[int, tuple[str, ...]]:
    reporting, rates = _rates()
    result = money.convert(by_currency, reporting, rates)
    return result.total_minor, result.missing


def period_label(moment: datetime, period: str) -> str:
    if period == "year":
        return f"{moment.year}"
    if period == "quarter":
        return f"{moment.year}-Q{(moment.month - 1) // 3 + 1}"
    return f"{moment.year}-{moment.month:02d}"


def _gift_rows(date_from: date, date_to: date, *columns):
    net = net_gift_expression()
    return db.session.execute(
        select(*columns, net.label("net")).where(_counted(), _in_range(date_from, date_to))
    ).all()


def _grouped_totals(key: str, title: str, rows, label_of, reporting: str) -> Report:
    """rows: (group, currency, net). One line per group and currency, plus converted."""
    groups: dict[str, dict[str, list[int]]] = {}
    for group, currency, net in rows:
        bucket = groups.setdefault(label_of(group), {}).setdefault(currency, [0, 0])
        bucket[0] += int(net)
        bucket[1] += 1
    table, chart = [], []
    for label in sorted(groups):
        per_currency = {c: v[0] for c, v in groups[label].items()}
        converted, missing = _converted(per_currency)
        for currency in sorted(per_currency):
            total, count = groups[label][currency]
            table.append(
                [
                    label,
                    currency,
                    count,
                    total,
                    converted if currency == sorted(per_currency)[0] else "",
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
    reporting, _ = _rates()
    rows = _gift_rows(date_from, date_to, Donation.paid_at, Donation.currency)
    report = _grouped_totals(
        "totals",
        f"Totals by {period}",
        [(p, c, n) for p, c, n in rows],
        lambda moment: period_label(moment, period),
        reporting,
    )
    report.columns[0] = period
    return report


def totals_by_campaign(date_from: date, date_to: date, period: str = "month") -> Report:
    reporting, _ = _rates()
    names = dict(db.session.execute(select(Campaign.id, Campaign.appeal_code)).all())
    rows = _gift_rows(date_from, date_to, Donation.campaign_id, Donation.currency)
    report = _grouped_totals(
        "campaigns",
        "Totals by campaign",
        rows,
        lambda cid: names.get(cid, "(none)") if cid else "(none)",
        reporting,
    )
    report.columns[0] = "appeal_code"
    return report


def totals_by_fund(date_from: date, date_to: date, period: str = "month") -> Report:
    reporting, _ = _rates()
    rows = _gift_rows(date_from, date_to, Donation.designation, Donation.currency)
    report = _grouped_totals("funds", "Totals by fund", rows, str, reporting)
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


def gift_size(date_from: date, date_to: date, period: str = "month") -> Report:
    rows = _gift_rows(date_from, date_to, Donation.currency)
    by_currency: dict[str, list[int]] = {}
    for currency, net in rows:
        by_currency.setdefault(currency, []).append(int(net))
    table, chart = [], []
    for currency in sorted(by_currency):
        values = by_currency[currency]
        average = _round(Decimal(sum(values)) / len(values))
        middle = _round(median(values))
        table.append([currency, len(values), sum(values), average, middle])
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


def donor_set(date_from: date, date_to: date) -> set[int]:
    """D(P): donors with at least one counted gift in P."""
    return set(
        db.session.scalars(
            select(Donation.donor_id).where(_counted(), _in_range(date_from, date_to)).distinct()
        )
    )


def first_gift_dates() -> dict[int, datetime]:
    # Counted gifts are paid, so each donor's earliest payment time is never NULL.
    return dict(
        db.session.execute(  # type: ignore[arg-type]
            select(Donation.donor_id, func.min(Donation.paid_at))
            .where(_counted())
            .group_by(Donation.donor_id)
        ).all()
    )


def donors_report(date_from: date, date_to: date, period: str = "month") -> Report:
    donors = donor_set(date_from, date_to)
    firsts = first_gift_dates()
    start, end = _start(date_from), _start(date_to + timedelta(days=1))
    first_time = {d for d in donors if start <= firsts[d] < end}
    repeat = donors - first_time
    return Report(
        "donors",
        "First-time and repeat donors",
        ["kind", "donors"],
        [["first_time", len(first_time)], ["repeat", len(repeat)], ["all", len(donors)]],
        [("First-time", len(first_time)), ("Repeat", len(repeat))],
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
    current, previous = donor_set(date_from, date_to), donor_set(prev_from, prev_to)
    firsts = first_gift_dates()
    retained = previous & current
    new_prev = {
        d for d in previous if _start(prev_from) <= firsts[d] < _start(prev_to + timedelta(days=1))
    }
    repeat_prev = previous - new_prev
    lookback_from = date(prev_from.year - SYBUNT_LOOKBACK_YEARS, prev_from.month, 1)
    earlier = donor_set(lookback_from, prev_from - timedelta(days=1))
    lybunt = previous - current
    sybunt = earlier - current - lybunt
    rows: list[list[Any]] = [
        ["donors_previous_period", len(previous)],
        ["donors_this_period", len(current)],
        ["retained", len(retained)],
        ["retention_rate_percent", _percent(len(retained), len(previous))],
        ["attrition_rate_percent", _percent(len(previous) - len(retained), len(previous))],
        ["new_donor_retention_percent", _percent(len(new_prev & current), len(new_prev))],
        ["repeat_donor_retention_percent", _percent(len(repeat_prev & current), len(repeat_prev))],
        ["lybunt", len(lybunt)],
        ["sybunt", len(sybunt)],
    ]
    return Report(
        "retention",
        "Donor retention, LYBUNT and SYBUNT",
        ["measure", "value"],
        rows,
        [
            ("Previous", len(previous)),
            ("Retained", len(retained)),
            ("LYBUNT", len(lybunt)),
            ("SYBUNT", len(sybunt)),
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


def _amount_history(plan_ids: list[int]) -> dict[int, list[tuple[datetime, int]]]:
    events = db.session.execute(
        select(AuditEvent.subject_id, AuditEvent.at, AuditEvent.detail)
        .where(
            AuditEvent.subject_type == "plan",
            AuditEvent.action.in_(("plan.changed", "plan.amount_changed_in_stripe")),
            AuditEvent.subject_id.in_(plan_ids or [-1]),
        )
        .order_by(AuditEvent.id)
    ).all()
    history: dict[int, list[tuple[datetime, int]]] = {}
    for plan_id, at, detail in events:
        if isinstance(detail, dict) and isinstance(detail.get("amount_minor"), int):
            history.setdefault(plan_id, []).append((at, detail["amount_minor"]))
    return history


def mrr(date_from: date, date_to: date, period: str = "month") -> Report:
    """Starting and ending MRR per currency and the movements between them."""
    start, end = _start(date_from), _start(date_to + timedelta(days=1))
    plans = list(
        db.session.scalars(select(RecurringPlan).where(RecurringPlan.started_at.is_not(None)))
    )
    history = _amount_history([p.id for p in plans])
    # The amount at a moment: replay the recorded changes back from today's amount.
    first_amounts = dict(
        db.session.execute(
            select(Donation.plan_id, Donation.amount_minor - Donation.fee_cover_minor)
            .where(Donation.plan_id.is_not(None), Donation.paid_at.is_not(None))
            .order_by(Donation.plan_id, Donation.paid_at.desc())
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

    buckets: dict[str, dict[str, int]] = {}
    names = (
        "starting",
        "new",
        "expansion",
        "contraction",
        "voluntary_churn",
        "involuntary_churn",
        "ending",
    )
    for plan in plans:
        b = buckets.setdefault(plan.currency, {n: 0 for n in names})
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
        table.append([currency, *[_from_twelfths(b[n]) for n in names]])
        for n in names[1:-1]:
            chart.append((f"{currency.upper()} {n.replace('_', ' ')}", _from_twelfths(b[n])))
    return Report(
        "mrr",
        "Recurring revenue (MRR) and its movements",
        ["currency", *[f"{n}_minor" for n in names]],
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
