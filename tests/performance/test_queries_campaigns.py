"""The home page and a campaign page send the same number of statements whatever the number
of gifts and of live campaigns: the totals of every live campaign come in one statement,
from the running totals, never from the gifts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from donorhub.campaigns.models import Campaign, CampaignStatus
from donorhub.database import uk_today
from donorhub.donations.models import Donation, DonationKind, DonationStatus, Donor
from donorhub.extensions import db
from tests.helpers import live_campaign

#: The statements of each page now: the campaigns, the exchange rates, the totals of all of
#: them in one (the request sends no transaction control: it only reads).
HOME_AT_MOST = 3
CAMPAIGN_AT_MOST = 3


def add_campaigns(app, campaigns: int) -> list[int]:
    with app.app_context():
        made = [
            live_campaign(
                name=f"Queries {n}",
                summary="Counting statements",
                body_md="Some **words**.",
                ends_on=uk_today() + timedelta(days=10 + n),
            )
            for n in range(campaigns)
        ]
        db.session.commit()
        return [campaign.id for campaign in made]


def add_gifts(app, campaign_ids: list[int], gifts: int) -> None:
    """`gifts` paid gifts in each campaign, from five donors, in three currencies."""
    with app.app_context():
        donors = [Donor(email=f"q{uuid.uuid4().hex}@example.org", full_name="Q") for _ in range(5)]
        db.session.add_all(donors)
        for campaign_id in campaign_ids:
            db.session.add_all(
                Donation(
                    donor=donors[g % len(donors)],
                    kind=DonationKind.ONCE,
                    amount_minor=1_000 + g,
                    currency=("gbp", "usd", "inr")[g % 3],
                    designation="campaign",
                    campaign_id=campaign_id,
                    status=DonationStatus.PAID,
                    paid_at=datetime.now(UTC),
                )
                for g in range(gifts)
            )
        db.session.commit()


def statements(client, count_queries, path: str) -> tuple[int, str]:
    client.get(path)  # templates compiled, the session's first-use costs paid
    with count_queries() as queries:
        response = client.get(path)
    assert response.status_code == 200
    return queries.count, queries.report()


def test_home_and_campaign_page_statements_grow_with_neither_gifts_nor_campaigns(
    app, client, count_queries
):
    first = add_campaigns(app, 3)
    add_gifts(app, first, 1)
    with app.app_context():
        slug = db.session.get(Campaign, first[0]).slug
    counts = {}

    def measure(label: str) -> None:
        home, home_report = statements(client, count_queries, "/")
        page, page_report = statements(client, count_queries, f"/campaigns/{slug}")
        assert home <= HOME_AT_MOST, home_report
        assert page <= CAMPAIGN_AT_MOST, page_report
        for report in (home_report, page_report):  # never a sum over the gifts
            assert " donations" not in report, report
        counts[label] = (home, page)

    measure("3 campaigns, 1 gift each")
    add_gifts(app, first, 59)
    measure("3 campaigns, 60 gifts each")
    add_gifts(app, add_campaigns(app, 17), 60)
    measure("20 campaigns, 60 gifts each")
    with app.app_context():
        live = db.session.scalar(
            db.select(db.func.count()).where(Campaign.status == CampaignStatus.LIVE)
        )
    assert live == 20
    assert len(set(counts.values())) == 1, counts
