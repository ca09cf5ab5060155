"""Each staff report page (and its CSV) sends a fixed number of statements: the same with a few
gifts as with many, over many months, campaigns, donors, currencies and plans. The figures are
grouped in the database, so nothing is fetched or queried per gift, per group or per plan."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

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
from donorhub.reports.services import REPORTS
from tests.campaigns.test_campaigns import staff_client
from tests.helpers import csrf_token

RANGE = "date_from=2022-01-01&date_to=2026-12-31"
#: The most statements a report page may send (the session, sign-in checks and the report).
CEILING = 20


def seed(app, size: int, tag: str) -> None:
    """`size` donors, each with gifts in several months, campaigns and currencies, a plan
    (every other one with an amount change in the audit log) and a failed instalment."""
    first = datetime(2022, 1, 15, tzinfo=UTC)
    with app.app_context():
        campaigns = [
            Campaign(
                name=f"C{tag}{n}",
                slug=f"c-{tag}-{n}",
                summary="s",
                goal_minor=1000,
                goal_currency="gbp",
                starts_on=date(2022, 1, 1),
                appeal_code=f"{tag.upper()}{n}",
                status=CampaignStatus.LIVE,
            )
            for n in range(max(1, size // 4))
        ]
        db.session.add_all(campaigns)
        if not db.session.query(ExchangeRate).count():
            db.session.add(
                ExchangeRate(currency="usd", reporting_currency="gbp", rate=Decimal("0.79"))
            )
        db.session.flush()
        for n in range(size):
            donor = Donor(email=f"{tag}{n}@example.org", full_name=f"D{n}")
            plan = RecurringPlan(
                donor=donor,
                amount_minor=1000 + n,
                currency="gbp" if n % 2 else "usd",
                frequency=Frequency.YEARLY if n % 3 else Frequency.MONTHLY,
                status="active",
                started_at=first + timedelta(days=40 * n),
                cancelled_at=first + timedelta(days=900 + 20 * n) if n % 4 == 0 else None,
            )
            db.session.add_all([donor, plan])
            db.session.flush()
            if n % 2:
                db.session.add(
                    AuditEvent(
                        at=first + timedelta(days=500 + n),
                        action="plan.changed",
                        subject_type="plan",
                        subject_id=plan.id,
                        detail={"amount_minor": 2000 + n},
                    )
                )
            db.session.add(
                PlanPaymentFailure(
                    plan_id=plan.id,
                    stripe_invoice_id=f"in_{tag}_{n}",
                    currency=plan.currency,
                    amount_due_minor=plan.amount_minor,
                    failed_at=first + timedelta(days=30 * n),
                    recovered_at=first + timedelta(days=30 * n + 3) if n % 3 else None,
                    recovered_amount_minor=plan.amount_minor if n % 3 else None,
                )
            )
            for k in range(3):
                gift = Donation(
                    donor=donor,
                    plan_id=plan.id if k == 0 else None,
                    kind=DonationKind.INSTALMENT if k == 0 else DonationKind.ONCE,
                    amount_minor=500 + 7 * n + k,
                    currency=("gbp", "usd", "inr")[(n + k) % 3],
                    designation=("general", "emergency")[k % 2],
                    campaign_id=campaigns[(n + k) % len(campaigns)].id,
                    paid_at=first + timedelta(days=37 * n + 90 * k),
                )
                gift.status = "paid"
                db.session.add(gift)
        db.session.commit()


def statements(client, count_queries, url: str) -> int:
    client.get(url)  # once before counting: the same caches warm in both runs
    with count_queries() as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    assert queries.count <= CEILING, queries.report()
    return queries.count


@pytest.mark.parametrize("key", sorted(REPORTS))
def test_a_report_page_sends_the_same_statements_for_few_gifts_and_many(
    app, make_user, count_queries, key
):
    client, _ = staff_client(app, make_user)
    pages = [f"/staff/reports/{key}?{RANGE}", f"/staff/reports/{key}?{RANGE}&format=csv"]
    seed(app, 2, "few")
    few = [statements(client, count_queries, url) for url in pages]
    seed(app, 40, "many")
    many = [statements(client, count_queries, url) for url in pages]
    assert many == few


@pytest.mark.parametrize("kind", ["donations", "donors"])
def test_an_export_sends_the_same_statements_for_few_gifts_and_many(
    app, make_user, count_queries, kind
):
    client, _ = staff_client(app, make_user)
    token = csrf_token(client, "/staff/exports")
    form = {
        "kind": kind,
        "date_from": "2022-01-01",
        "date_to": "2026-12-31",
        "audience": "all",
        "csrf_token": token,
    }

    def export() -> tuple[int, int]:
        with count_queries() as queries:
            response = client.post("/staff/exports", data=form)
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        assert queries.count <= CEILING, queries.report()
        return queries.count, response.get_data(as_text=True).count("\n")

    seed(app, 2, "few")
    few, few_lines = export()
    seed(app, 40, "many")
    many, many_lines = export()
    assert many_lines > few_lines  # the export did grow
    assert many == few
