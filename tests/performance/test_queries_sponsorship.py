"""The sponsorship pages send as many statements with 100 children as with 10: the listing
(first and a later page, with and without filters), a child's profile, "Match me" and the
sponsor portal page in SQL and never query once per card."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from donorhub.accounts.models import User
from donorhub.children.models import ChildRelease
from donorhub.database import utcnow
from donorhub.donations.models import Frequency
from donorhub.extensions import db
from donorhub.sponsorship import services
from donorhub.sponsorship.models import SponsorshipStatus
from tests.sponsorship.helpers import load_children, signed_in_client

#: Small pages, so that 10 children already fill several of them.
PAGE_SIZE = 3


def _sponsor_one(app, user_id: int, token: str) -> str:
    """An active sponsorship of `token`, written as the demo writes it (no Stripe)."""
    with app.app_context():
        user = db.session.get(User, user_id)
        sponsorship = services.hold_child(user, token, "gbp")
        plan = sponsorship.plan
        plan.frequency = Frequency.MONTHLY
        plan.checkout_completed = True
        plan.started_at = utcnow()
        plan.settle()
        sponsorship.move(SponsorshipStatus.ACTIVE)
        sponsorship.started_at = utcnow()
        sponsorship.hold_expires_at = None
        db.session.commit()
        portal_token = sponsorship.portal_token
        db.session.remove()
    return portal_token


def _counts(app, count_queries, anonymous, sponsor_client, token, portal_token) -> dict:
    with app.app_context():
        released = db.session.scalar(
            select(ChildRelease).join(ChildRelease.child).where(ChildRelease.is_listed.is_(True))
        )
        age, interest = released.age_text, (released.interests or ["drawing"])[0]
        db.session.remove()
    urls = {
        "listing": "/sponsor",
        "listing page 2": "/sponsor?page=2",
        "listing filtered": f"/sponsor?age={age}&interest={interest}",
        "listing filtered page 2": f"/sponsor?age={age}&interest={interest}&page=2",
        "profile": f"/sponsor/{token}",
        "match me": "/sponsor/match",
        "match me filtered": f"/sponsor/match?age={age}",
    }
    counts = {}
    for name, url in urls.items():
        anonymous.get(url)  # warm: first-request work is not the page's
        with count_queries() as queries:
            response = anonymous.get(url)
        assert response.status_code in (200, 302), (name, response.status_code)
        counts[name] = queries.count
    for name, url in (
        ("portal", "/my/sponsorships"),
        ("sponsorship", f"/my/sponsorships/{portal_token}"),
    ):
        sponsor_client.get(url)
        with count_queries() as queries:
            response = sponsor_client.get(url)
        assert response.status_code == 200, (name, response.status_code)
        counts[name] = queries.count
    return counts


def test_sponsorship_pages_send_the_same_statements_at_10_and_100_children(
    app, import_feed, sponsor, count_queries, monkeypatch
):
    monkeypatch.setattr(services, "PAGE_SIZE", PAGE_SIZE)
    first = load_children(app, import_feed, 10, interests=["drawing"])
    handle = sponsor()
    portal_token = _sponsor_one(app, handle.id, first.tokens[0])
    sponsor_client = signed_in_client(app, handle)
    anonymous = app.test_client()
    at_10 = _counts(app, count_queries, anonymous, sponsor_client, first.tokens[1], portal_token)
    load_children(app, import_feed, 90, interests=["drawing"])
    at_100 = _counts(app, count_queries, anonymous, sponsor_client, first.tokens[1], portal_token)
    assert at_100 == at_10
    # And few: a page of the listing is the listing's state and one page of rows.
    assert at_10["listing"] <= 4 and at_10["listing filtered page 2"] <= 4, at_10
    assert at_10["match me"] <= 4, at_10


@pytest.mark.parametrize("page", ["1", "2"])
def test_a_page_of_the_listing_is_one_statement_for_its_cards(
    app, import_feed, client, count_queries, monkeypatch, page
):
    monkeypatch.setattr(services, "PAGE_SIZE", PAGE_SIZE)
    load_children(app, import_feed, 10, updates=False)
    client.get("/sponsor")
    with count_queries() as queries:
        response = client.get(f"/sponsor?page={page}")
    assert response.status_code == 200
    selects = [s for s in queries.statements if "child_releases" in s]
    assert len(selects) == 2, queries.report()  # the listing's state, then the page
