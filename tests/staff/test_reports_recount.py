"""Every report the database groups and sums equals a straightforward recount in Python of the
same random gifts, plans and failures (on SQLite and on PostgreSQL): period labels, per-currency
sums, conversion with the staff-set rates, medians rounded half to even, donor sets, MRR in
exact twelfths, dunning rates. The recount follows docs/reports.md, one gift at a time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from donorhub import money
from donorhub.audit import AuditEvent
from donorhub.campaigns.models import Campaign, CampaignStatus
from donorhub.donations.models import (
    Donation,
    DonationKind,
    Donor,
    Frequency,
    PlanPaymentFailure,
    RecurringPlan,
)
from donorhub.extensions import db
from donorhub.money import ExchangeRate
from donorhub.reports import services as reports

COUNTED = {"paid", "partially_refunded", "refunded"}
STATUSES = [*COUNTED, "disputed", "charged_back", "failed", "pending"]
CURRENCIES = ["gbp", "usd", "inr", "eur"]
FUNDS = ["general", "campaign", "emergency"]
APPEALS = ["SPR", "AUT"]
EARLIEST = datetime(2019, 1, 1, tzinfo=UTC)
LATEST = datetime(2027, 12, 31, 23, 59, 59, tzinfo=UTC)
#: Any moment, a few fixed boundaries (midnight, end of a quarter), or a moment near the chosen
#: range's edges: ("start" of P, "end" of P, "prev_start" of P−1, "lookback" start) + offset.
ANCHORS = ["start", "end", "prev_start", "lookback"]
OFFSETS = [timedelta(0), timedelta(microseconds=-1)] + [timedelta(days=n) for n in (1, -1, 40, -40)]
NEAR_EDGES = st.tuples(st.sampled_from(ANCHORS), st.sampled_from(OFFSETS))
MOMENTS = st.one_of(
    st.datetimes(
        min_value=EARLIEST.replace(tzinfo=None),
        max_value=LATEST.replace(tzinfo=None),
        timezones=st.just(UTC),
    ),
    st.sampled_from(
        [
            datetime(2025, 1, 1, tzinfo=UTC),
            datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            datetime(2026, 4, 1, tzinfo=UTC),
            datetime(2026, 6, 30, 23, 59, 59, tzinfo=UTC),
        ]
    ),
    NEAR_EDGES,
    NEAR_EDGES,  # twice: half the moments fall near an edge
)
#: A plan's start and stop: mostly near the range's edges, so plans start, churn and carry on
#: across P often.
PLAN_MOMENTS = st.one_of(MOMENTS, NEAR_EDGES, NEAR_EDGES)
DAYS = st.dates(min_value=date(2020, 1, 1), max_value=date(2027, 6, 30))

gifts = st.lists(
    st.fixed_dictionaries(
        {
            "donor": st.integers(0, 5),
            "campaign": st.sampled_from([None, 0, 1]),
            "fund": st.sampled_from(FUNDS),
            "currency": st.sampled_from(CURRENCIES),
            "amount": st.sampled_from([1, 2, 3, 5, 500, 1001, 2500, 99999]),
            "refunded": st.sampled_from([0, 0, 0, 1, 500]),
            "fee": st.sampled_from([0, 0, 1, 30]),
            "status": st.sampled_from(STATUSES),
            "paid_at": MOMENTS,
        }
    ),
    max_size=40,
)
plans = st.lists(
    st.fixed_dictionaries(
        {
            "currency": st.sampled_from(CURRENCIES[:2]),
            "yearly": st.booleans(),
            "amount": st.sampled_from([1, 5, 1000, 5005, 1201]),
            "fee": st.sampled_from([0, 0, 3]),
            "started_at": st.one_of(st.none(), PLAN_MOMENTS, PLAN_MOMENTS, PLAN_MOMENTS),
            # mostly not cancelled, so a plan Stripe ended (involuntary churn) is common
            "cancelled_at": st.one_of(st.none(), st.none(), st.none(), PLAN_MOMENTS),
            "ended_at": st.one_of(st.none(), PLAN_MOMENTS),
            "failure": st.sampled_from([None, "card_declined", "card_declined"]),
            # amount changes recorded in the audit log; a detail without an integer amount
            # is no amount change
            "changes": st.one_of(
                st.just([]),
                st.just([]),
                st.lists(
                    st.tuples(MOMENTS, st.sampled_from([1, 700, 5005, 12000, None])),
                    min_size=1,
                    max_size=3,
                ),
            ),
            # paid instalments (moment, amount): the first is the amount before any change
            "instalments": st.lists(st.tuples(MOMENTS, st.sampled_from([1, 999])), max_size=2),
        }
    ),
    max_size=8,
)
failures = st.lists(
    st.fixed_dictionaries(
        {
            "currency": st.sampled_from(CURRENCIES[:3]),
            "due": st.sampled_from([100, 2500]),
            "failed_at": MOMENTS,
            "recovered": st.booleans(),
        }
    ),
    max_size=8,
)
#: A rate per currency, or none (then the converted column names the currency missing).
rates = st.fixed_dictionaries(
    {
        c: st.one_of(st.none(), st.sampled_from(["0.79", "0.0095", "1.15", "0.5"]))
        for c in ("usd", "inr", "eur")
    }
)


def start(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


def net(g: dict) -> int:
    return g["amount"] - g["refunded"] - g["fee"]


def counted(world: dict) -> list[dict]:
    return [g for g in world["gifts"] if g["status"] in COUNTED and net(g) > 0]


def within(moment: datetime, d_from: date, d_to: date) -> bool:
    return start(d_from) <= moment < start(d_to + timedelta(days=1))


def half_even(value: Fraction) -> int:
    return round(value)  # Fraction rounds half to even


def percent(part: int, whole: int) -> str:
    if whole == 0:
        return ""
    tenths = half_even(Fraction(part * 1000, whole))
    return f"{tenths // 10}.{tenths % 10}"


def label(moment: datetime, period: str) -> str:
    if period == "year":
        return str(moment.year)
    if period == "quarter":
        return f"{moment.year}-Q{(moment.month + 2) // 3}"
    return f"{moment.year}-{moment.month:02d}"


def recount_grouped(world, d_from, d_to, group_of) -> list[list]:
    sums: dict[str, dict[str, list[int]]] = {}
    for g in counted(world):
        if within(g["paid_at"], d_from, d_to):
            cell = sums.setdefault(group_of(g), {}).setdefault(g["currency"], [0, 0])
            cell[0] += 1
            cell[1] += net(g)
    rate_table = {c: Decimal(r) for c, r in world["rates"].items() if r is not None}
    rate_table["gbp"] = Decimal(1)
    rows = []
    for group in sorted(sums):
        converted = money.convert({c: v[1] for c, v in sums[group].items()}, "gbp", rate_table)
        for i, currency in enumerate(sorted(sums[group])):
            n, total = sums[group][currency]
            rows.append(
                [
                    group,
                    currency,
                    n,
                    total,
                    converted.total_minor if i == 0 else "",
                    " ".join(converted.missing),
                ]
            )
    return rows


def recount_gift_size(world, d_from, d_to) -> list[list]:
    nets: dict[str, list[int]] = {}
    for g in counted(world):
        if within(g["paid_at"], d_from, d_to):
            nets.setdefault(g["currency"], []).append(net(g))
    rows = []
    for currency in sorted(nets):
        values = sorted(nets[currency])
        n = len(values)
        middle = Fraction(values[(n - 1) // 2] + values[n // 2], 2)
        average = Fraction(sum(values), n)
        rows.append([currency, n, sum(values), half_even(average), half_even(middle)])
    return rows


def donors_in(world, d_from, d_to) -> set[int]:
    return {g["donor"] for g in counted(world) if within(g["paid_at"], d_from, d_to)}


def first_gifts(world) -> dict[int, datetime]:
    firsts: dict[int, datetime] = {}
    for g in counted(world):
        firsts[g["donor"]] = min(firsts.get(g["donor"], g["paid_at"]), g["paid_at"])
    return firsts


def recount_donors(world, d_from, d_to) -> list[list]:
    current, firsts = donors_in(world, d_from, d_to), first_gifts(world)
    first_time = {d for d in current if within(firsts[d], d_from, d_to)}
    return [
        ["first_time", len(first_time)],
        ["repeat", len(current - first_time)],
        ["all", len(current)],
    ]


def recount_retention(world, d_from, d_to) -> list[list]:
    days = (d_to - d_from).days + 1
    p_from, p_to = d_from - timedelta(days=days), d_from - timedelta(days=1)
    current, previous = donors_in(world, d_from, d_to), donors_in(world, p_from, p_to)
    firsts = first_gifts(world)
    new = {d for d in previous if within(firsts[d], p_from, p_to)}
    repeat = previous - new
    earlier = donors_in(world, date(p_from.year - 4, p_from.month, 1), p_from - timedelta(days=1))
    kept = previous & current
    lybunt = previous - current
    return [
        ["donors_previous_period", len(previous)],
        ["donors_this_period", len(current)],
        ["retained", len(kept)],
        ["retention_rate_percent", percent(len(kept), len(previous))],
        ["attrition_rate_percent", percent(len(previous - current), len(previous))],
        ["new_donor_retention_percent", percent(len(new & current), len(new))],
        ["repeat_donor_retention_percent", percent(len(repeat & current), len(repeat))],
        ["lybunt", len(lybunt)],
        ["sybunt", len(earlier - current - lybunt)],
    ]


def recount_mrr(world, d_from, d_to) -> list[list]:
    t0, t1 = start(d_from), start(d_to + timedelta(days=1))
    names = ["starting", "new", "expansion", "contraction", "voluntary", "involuntary", "ending"]
    sums: dict[str, dict[str, Fraction]] = {}
    for p in world["plans"]:
        if p["started_at"] is None:
            continue
        stops = [t for t in (p["cancelled_at"], p["ended_at"]) if t is not None]

        def live(t, p=p, stops=stops):
            return p["started_at"] < t and (not stops or min(stops) >= t)

        changes = [(at, a) for at, a in p["changes"] if a is not None]
        # the earliest paid instalment; of two paid at the same moment, the one stored last
        first_paid = min(reversed(p["instalments"]), key=lambda i: i[0], default=None)

        def amount(t, p=p, changes=changes, first_paid=first_paid):
            before = [a for at, a in changes if at < t]
            if before:
                return before[-1]
            if changes and first_paid is not None:
                return first_paid[1]
            return p["amount"] - p["fee"]

        per_month = Fraction(1, 12) if p["yearly"] else Fraction(1)
        a0, a1 = amount(t0) * per_month, amount(t1) * per_month
        s = sums.setdefault(p["currency"], dict.fromkeys(names, Fraction(0)))
        if live(t0):
            s["starting"] += a0
        if live(t1):
            s["ending"] += a1
        if live(t1) and not live(t0):
            s["new"] += a1
        if live(t0) and live(t1):
            s["expansion"] += max(a1 - a0, 0)
            s["contraction"] += max(a0 - a1, 0)
        if live(t0) and not live(t1):
            involuntary = p["cancelled_at"] is None and p["failure"] is not None
            s["involuntary" if involuntary else "voluntary"] += a0
    return [[c, *[half_even(sums[c][n]) for n in names]] for c in sorted(sums)]


def recount_dunning(world, d_from, d_to) -> list[list]:
    per: dict[str, list[int]] = {}
    for f in world["failures"]:
        if within(f["failed_at"], d_from, d_to):
            cell = per.setdefault(f["currency"], [0, 0, 0, 0])
            cell[0] += 1
            cell[1] += f["recovered"]
            cell[2] += f["due"]
            cell[3] += f["due"] if f["recovered"] else 0
    rows = [
        [c, n, r, percent(r, n), n - r, due, got] for c, (n, r, due, got) in sorted(per.items())
    ]
    if rows:
        n, r = sum(x[1] for x in rows), sum(x[2] for x in rows)
        rows.append(["all", n, r, percent(r, n), n - r, "", ""])
    return rows


def resolve(value, anchors: dict[str, datetime]):
    """An anchored moment ("start", offset) as a datetime; anything else as it is."""
    if isinstance(value, tuple) and len(value) == 2 and value[0] in anchors:
        return anchors[value[0]] + value[1]
    if isinstance(value, dict):
        return {k: resolve(v, anchors) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(resolve(v, anchors) for v in value)
    return value


def store(world: dict) -> None:
    """The world as rows, in the open transaction (rolled back after the example)."""
    donors = [Donor(email=f"recount{i}@example.org", full_name=f"R{i}") for i in range(6)]
    campaigns = [
        Campaign(
            name=code,
            slug=code.lower(),
            summary="s",
            goal_minor=1000,
            goal_currency="gbp",
            starts_on=date(2019, 1, 1),
            appeal_code=code,
            status=CampaignStatus.LIVE,
        )
        for code in APPEALS
    ]
    db.session.add_all([*donors, *campaigns])
    for currency, rate in world["rates"].items():
        if rate is not None:
            db.session.add(
                ExchangeRate(currency=currency, reporting_currency="gbp", rate=Decimal(rate))
            )
    db.session.flush()
    for g in world["gifts"]:
        gift = Donation(
            donor=donors[g["donor"]],
            kind=DonationKind.ONCE,
            amount_minor=g["amount"],
            fee_cover_minor=g["fee"],
            amount_refunded_minor=g["refunded"],
            currency=g["currency"],
            designation=g["fund"],
            campaign_id=None if g["campaign"] is None else campaigns[g["campaign"]].id,
            paid_at=g["paid_at"],
        )
        gift.status = g["status"]
        db.session.add(gift)
    for n, p in enumerate(world["plans"]):
        plan = RecurringPlan(
            donor=donors[n % 6],
            amount_minor=p["amount"],
            fee_cover_minor=p["fee"],
            currency=p["currency"],
            frequency=Frequency.YEARLY if p["yearly"] else Frequency.MONTHLY,
            status="active",
            started_at=p["started_at"],
            cancelled_at=p["cancelled_at"],
            ended_at=p["ended_at"],
            last_failure_code=p["failure"],
        )
        db.session.add(plan)
        db.session.flush()
        for at, amount in p["changes"]:
            detail = {"amount_minor": amount} if amount is not None else {"frequency": 1}
            db.session.add(
                AuditEvent(
                    at=at,
                    action="plan.changed",
                    subject_type="plan",
                    subject_id=plan.id,
                    detail=detail,
                )
            )
        for k, (at, amount) in enumerate(p["instalments"]):
            instalment = Donation(
                donor=plan.donor,
                plan_id=plan.id,
                kind=DonationKind.INSTALMENT,
                amount_minor=amount,
                fee_cover_minor=0,
                currency=p["currency"],
                designation="general",
                paid_at=at,
                stripe_invoice_id=f"in_recount_{n}_{k}",
            )
            instalment.status = "paid"
            db.session.add(instalment)
            # the instalments are gifts too: the gift reports count them
            world["gifts"].append(
                {
                    "donor": n % 6,
                    "campaign": None,
                    "fund": "general",
                    "currency": p["currency"],
                    "amount": amount,
                    "refunded": 0,
                    "fee": 0,
                    "status": "paid",
                    "paid_at": at,
                }
            )
    if world["plans"] or world["failures"]:
        db.session.flush()
        plan_id = db.session.scalar(db.select(RecurringPlan.id).limit(1))
        if plan_id is None:
            holder = RecurringPlan(
                donor=donors[0],
                amount_minor=1,
                currency="gbp",
                frequency=Frequency.MONTHLY,
                status="pending",
            )
            db.session.add(holder)
            db.session.flush()
            plan_id = holder.id
        for k, f in enumerate(world["failures"]):
            db.session.add(
                PlanPaymentFailure(
                    plan_id=plan_id,
                    stripe_invoice_id=f"in_failed_{k}",
                    currency=f["currency"],
                    amount_due_minor=f["due"],
                    failed_at=f["failed_at"],
                    recovered_at=f["failed_at"] + timedelta(days=3) if f["recovered"] else None,
                    recovered_amount_minor=f["due"] if f["recovered"] else None,
                )
            )
    db.session.flush()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    gifts=gifts,
    plans=plans,
    failures=failures,
    rates=rates,
    day=DAYS,
    days=st.sampled_from([1, 31, 92, 365, 1826]),
)
def test_every_report_equals_a_recount_of_the_same_gifts(
    app, gifts, plans, failures, rates, day, days
):
    d_from, d_to = day, day + timedelta(days=days - 1)
    p_from = d_from - timedelta(days=days)
    anchors = {
        "start": start(d_from),
        "end": start(d_to + timedelta(days=1)),
        "prev_start": start(p_from),
        "lookback": start(date(p_from.year - 4, p_from.month, 1)),
    }
    world = resolve(
        {"gifts": list(gifts), "plans": plans, "failures": failures, "rates": rates}, anchors
    )
    with app.app_context():
        try:
            store(world)
            appeal = {None: "(none)", 0: APPEALS[0], 1: APPEALS[1]}
            for period in ("month", "quarter", "year"):
                got = reports.totals_by_period(d_from, d_to, period).rows
                want = recount_grouped(
                    world, d_from, d_to, lambda g, p=period: label(g["paid_at"], p)
                )
                assert got == want, period
            assert reports.totals_by_campaign(d_from, d_to).rows == recount_grouped(
                world, d_from, d_to, lambda g: appeal[g["campaign"]]
            )
            assert reports.totals_by_fund(d_from, d_to).rows == recount_grouped(
                world, d_from, d_to, lambda g: g["fund"]
            )
            assert reports.gift_size(d_from, d_to).rows == recount_gift_size(world, d_from, d_to)
            assert reports.donors_report(d_from, d_to).rows == recount_donors(world, d_from, d_to)
            assert reports.retention(d_from, d_to).rows == recount_retention(world, d_from, d_to)
            assert reports.mrr(d_from, d_to).rows == recount_mrr(world, d_from, d_to)
            assert reports.dunning(d_from, d_to).rows == recount_dunning(world, d_from, d_to)
        finally:
            db.session.rollback()
