"""Demo campaigns with gifts, so the home page shows live totals (development only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from donorhub.campaigns.models import Campaign, CampaignStatus
from donorhub.database import uk_today
from donorhub.donations.models import Donation, DonationKind, DonationStatus, Donor
from donorhub.extensions import db
from donorhub.money import ExchangeRate

CAMPAIGNS = [
    (
        "safe-beds-winter",
        "Safe beds this winter",
        "WINTER",
        1_000_000,
        "gbp",
        "Warm bedding and heaters for four safe homes.",
        "## What your gift does\n\nEvery **£25** buys a warm bed set for one girl.\n\n"
        "- blankets and mattresses\n- heaters for the coldest months",
    ),
    (
        "school-fees-2027",
        "School fees 2027",
        "SCHOOL27",
        500_000,
        "gbp",
        "A year of school for every child in our care.",
        "Education is the surest road out. [Read how we protect the children](/#how-we-protect).",
    ),
]


def seed_campaigns() -> None:
    if db.session.scalar(select(Campaign.id)) is not None:
        return
    db.session.add(ExchangeRate(currency="inr", reporting_currency="gbp", rate=Decimal("0.0095")))
    db.session.add(ExchangeRate(currency="usd", reporting_currency="gbp", rate=Decimal("0.79")))
    db.session.add(ExchangeRate(currency="eur", reporting_currency="gbp", rate=Decimal("0.85")))
    today = uk_today()
    for n, (slug, name, code, goal, currency, summary, body) in enumerate(CAMPAIGNS):
        campaign = Campaign(
            slug=slug,
            name=name,
            appeal_code=code,
            goal_minor=goal,
            goal_currency=currency,
            summary=summary,
            body_md=body,
            starts_on=today - timedelta(days=20),
            ends_on=today + timedelta(days=40 + 30 * n),
            status=CampaignStatus.LIVE,
            published_at=datetime.now(UTC),
        )
        db.session.add(campaign)
        db.session.flush()
        for i in range(6 + 4 * n):
            donor = Donor(
                email=f"campaign-donor-{n}-{i}@demo.donorhub.invalid",
                full_name=f"Demo Donor {n}-{i}",
            )
            db.session.add(donor)
            gift = Donation(
                donor=donor,
                kind=DonationKind.ONCE,
                amount_minor=2500 * (i % 4 + 1) if i % 5 else 250_000,
                currency="gbp" if i % 5 else "inr",
                designation="campaign",
                campaign_id=campaign.id,
                status=DonationStatus.PAID,
                paid_at=datetime.now(UTC) - timedelta(days=i),
            )
            db.session.add(gift)
    db.session.flush()
