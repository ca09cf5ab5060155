"""An outside observer of the listing's pages: paging itself tells nothing.

The pages of /sponsor, read one after the other by their "next" links, hold every card of the
last publication exactly once, in the day's keyed order, the same on every request of the
day (whatever arrives meanwhile, and whether the day's order was already stored or not),
and a filter shows the same cards in the same relative order as the whole listing. The number
of pages says no more than the cards themselves."""

from __future__ import annotations

import math
from datetime import timedelta

import time_machine
from sqlalchemy import select

from donorhub.children import services as children_services
from donorhub.children.models import Child, ChildRelease
from donorhub.database import unit_of_work
from donorhub.extensions import db
from donorhub.sponsorship import services
from tests.sponsorship import observer
from tests.sponsorship.test_public_observer import (
    HOMES,
    START,
    arrive_sixty,
    feed,
    kid,
    publish,
)


def pages_at(app, at, url: str = "/sponsor") -> list[tuple[str, ...]]:
    with time_machine.travel(at, tick=False):
        return [
            tuple(card.token or "" for card in page)
            for page in observer.listing_pages(app.test_client(), url)
        ]


def released(app) -> dict[str, ChildRelease]:
    with app.app_context():
        rows = db.session.execute(
            select(Child.public_token, ChildRelease)
            .join(ChildRelease, ChildRelease.child_id == Child.id)
            .where(ChildRelease.is_listed.is_(True))
        ).all()
        db.session.expunge_all()
        db.session.remove()
    return dict(rows)


def test_pages_hold_every_card_once_in_an_order_stable_all_day(app_factory):
    app = app_factory(FEED_HOMES=HOMES)
    world, arrival = arrive_sixty(app)
    day = START.replace(hour=4)
    with time_machine.travel(day, tick=False):
        publish(app, day)
    listed = released(app)
    morning = pages_at(app, day.replace(hour=5))

    tokens = [t for page in morning for t in page]
    assert len(tokens) == len(set(tokens)), "no card on two pages"
    assert set(tokens) == set(listed), "the pages hold exactly the cards published"
    assert all(len(page) == services.PAGE_SIZE for page in morning[:-1])
    assert 1 <= len(morning[-1]) <= services.PAGE_SIZE
    # The number of pages is the number of cards, rounded up: nothing the cards do not say.
    assert len(morning) == math.ceil(len(listed) / services.PAGE_SIZE)
    assert tokens == [card.token for card in services_listing(app, day)]
    # Not the order of arrival.
    arrival_tokens = [world.tokens[world.ref_of(alias)] for alias in arrival]
    assert tokens != arrival_tokens and tokens != arrival_tokens[::-1]

    # The same pages on every request of the day, whatever arrives meanwhile.
    at = day.replace(hour=14)
    with time_machine.travel(at, tick=False):
        feed(app, world, ("late", [kid(age_band="6-8", interests=["drawing"])]), now=at)
    assert pages_at(app, day.replace(hour=15)) == morning
    assert pages_at(app, day.replace(hour=23, minute=59)) == morning

    # A filter shows the cards that fit, in the whole listing's order, on pages of its own.
    age = listed[tokens[0]].age_text
    fitting = [t for t in tokens if listed[t].age_text == age]
    filtered = pages_at(app, day.replace(hour=16), f"/sponsor?age={age}")
    assert [t for page in filtered for t in page] == fitting
    interest = "drawing"
    fitting = [t for t in tokens if interest in listed[t].interests]
    filtered = pages_at(app, day.replace(hour=16), f"/sponsor?interest={interest}")
    assert [t for page in filtered for t in page] == fitting


def services_listing(app, day):
    with app.app_context(), time_machine.travel(day.replace(hour=12), tick=False):
        cards = services.listed_profiles()
        db.session.remove()
    return cards


def test_a_new_day_reorders_the_pages_before_and_after_its_order_is_stored(app_factory):
    app = app_factory(FEED_HOMES=HOMES)
    arrive_sixty(app)
    day = START.replace(hour=4)
    with time_machine.travel(day, tick=False):
        publish(app, day)
    first_day = pages_at(app, day.replace(hour=12))
    next_day = day + timedelta(days=1)
    # Past midnight, before the job has stored the new day's order: computed on the fly.
    before_job = pages_at(app, next_day.replace(hour=0, minute=0, second=1))
    assert before_job != first_day
    assert sorted(t for p in before_job for t in p) == sorted(t for p in first_day for t in p)
    with app.app_context(), time_machine.travel(next_day.replace(minute=1), tick=False):
        with unit_of_work():
            written = children_services.shuffle_listing(next_day.date())
        assert written == 60
        db.session.remove()
    # The same pages after the job: the order of a day never depends on when it ran.
    assert pages_at(app, next_day.replace(hour=18)) == before_job


def test_pages_out_of_range_show_no_card_and_lead_back(app_factory):
    app = app_factory(FEED_HOMES=HOMES)
    arrive_sixty(app)
    day = START.replace(hour=4)
    with time_machine.travel(day, tick=False):
        publish(app, day)
    with time_machine.travel(day.replace(hour=6), tick=False):
        client = app.test_client()
        first = observer.listing_pages(client)[0]
        for junk in ("0", "-1", "abc", "99999999", "1.5"):
            # Anything but a page number is the first page.
            assert observer.listing_pages(client, f"/sponsor?page={junk}")[0] == first
        beyond = client.get("/sponsor?page=40&age=under 12")
        assert beyond.status_code == 200
        body = beyond.get_data(as_text=True)
        assert 'class="profile-card"' not in body
        assert "Back to the first page" in body
        assert 'href="/sponsor?age=under+12"' in body
