"""One account holds at most one child at a time, cannot hoard children by letting holds run
out, and cannot choose faster than a person would."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from donorhub.accounts.models import User
from donorhub.database import utcnow
from donorhub.donations import services as donations_services
from donorhub.extensions import db
from donorhub.sponsorship import jobs, services
from donorhub.sponsorship.models import Sponsorship, SponsorshipPlace, SponsorshipStatus
from tests.helpers import HANG_GUARD_SECONDS, csrf_token, sign_in
from tests.metrics import METRICS
from tests.sponsorship.helpers import load_children


def hold(app, user_id: int, token: str, now=None):
    with app.app_context():
        try:
            row = services.hold_child(db.session.get(User, user_id), token, "gbp", now=now)
            db.session.commit()
            return row.id
        except services.HoldRefused as error:
            db.session.rollback()
            return str(error)
        finally:
            db.session.remove()


def open_holds(app, user_id: int) -> list[tuple[int, int]]:
    with app.app_context():
        rows = db.session.execute(
            select(Sponsorship.child_id, func.count(SponsorshipPlace.id))
            .outerjoin(SponsorshipPlace, SponsorshipPlace.sponsorship_id == Sponsorship.id)
            .where(Sponsorship.user_id == user_id, Sponsorship.status == SponsorshipStatus.PENDING)
            .group_by(Sponsorship.child_id)
        ).all()
        db.session.remove()
    return [tuple(row) for row in rows]


def held_children(app) -> set[int]:
    with app.app_context():
        ids = set(db.session.scalars(select(SponsorshipPlace.child_id)))
        db.session.remove()
    return ids


def test_choosing_another_child_gives_the_first_place_back(app, import_feed, sponsor):
    kids = load_children(app, import_feed, 5, updates=False)
    user = sponsor()
    first = hold(app, user.id, kids.tokens[0])
    second = hold(app, user.id, kids.tokens[1])
    assert isinstance(first, int) and isinstance(second, int)
    assert open_holds(app, user.id) == [(kids.ids[1], 1)]
    with app.app_context():
        assert db.session.get(Sponsorship, first).status == SponsorshipStatus.EXPIRED
        db.session.remove()
    # The first child is waiting for other sponsors again; only the second is held.
    assert held_children(app) == {kids.ids[1]}
    # Hoarding, as it was found: choosing every child in turn leaves one held, not all.
    for token in kids.tokens:
        hold(app, user.id, token)
    assert len(open_holds(app, user.id)) == 1
    assert len(held_children(app)) == 1


def test_two_chooses_at_the_same_moment_leave_one_hold(app, import_feed, sponsor, monkeypatch):
    kids = load_children(app, import_feed, 5, updates=False)
    user = sponsor()
    # Both requests pass every check (neither sees a hold of the other) before either
    # writes: the database alone must refuse the second hold.
    both_checked = threading.Barrier(2, timeout=HANG_GUARD_SECONDS)
    original = donations_services.donor_for_user

    def donor_after_both_checked(account):
        both_checked.wait(timeout=HANG_GUARD_SECONDS)
        return original(account)

    monkeypatch.setattr(donations_services, "donor_for_user", donor_after_both_checked)
    results: list = []
    errors: list = []

    def attempt(token: str) -> None:
        try:
            results.append(hold(app, user.id, token))
        except Exception as error:  # noqa: BLE001 - any other failure fails the test
            errors.append(repr(error))

    threads = [threading.Thread(target=attempt, args=(kids.tokens[n],)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    won = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, str)]
    assert len(won) == 1 and len(refused) == 1
    assert "already choosing a child" in refused[0]
    held = open_holds(app, user.id)
    assert len(held) == 1 and held[0][1] == 1
    with app.app_context():  # the loser left nothing behind: no row, no place
        assert db.session.scalar(select(func.count()).select_from(Sponsorship)) == 1
        assert db.session.scalar(select(func.count()).select_from(SponsorshipPlace)) == 1
        db.session.remove()


def test_an_account_that_lets_three_holds_run_out_in_a_day_waits(app, import_feed, sponsor):
    kids = load_children(app, import_feed, 5, updates=False)
    user = sponsor()
    start = utcnow()
    minutes = app.config["SPONSORSHIP_HOLD_MINUTES"]
    moment = start
    for n in range(3):
        assert isinstance(hold(app, user.id, kids.tokens[n], now=moment), int)
        moment += timedelta(minutes=minutes + 1)
        with app.app_context():
            assert jobs.release_expired_holds(now=moment) == 1
            db.session.remove()
    refused = hold(app, user.id, kids.tokens[3], now=moment)
    assert isinstance(refused, str) and "let 3 holds run out" in refused
    assert open_holds(app, user.id) == []
    # A day after the first ran out, the account may choose again.
    later = start + timedelta(minutes=minutes + 1, hours=24, seconds=1)
    assert isinstance(hold(app, user.id, kids.tokens[3], now=later), int)


@pytest.fixture
def limited_app(app_factory, sim):
    return app_factory(
        STRIPE_API_BASE=sim.base_url,
        CSP_FORM_ACTION=[sim.base_url],
        RATELIMIT_CHOOSE="4 per hour",
        RATELIMIT_CHOOSE_ACCOUNT="2 per hour",
    )


def post_choose(client, token: str, address: str):
    page = f"/sponsor/{token}"
    return client.post(
        f"{page}/choose",
        environ_base={"REMOTE_ADDR": address},
        data={"csrf_token": csrf_token(client, page), "currency": "gbp"},
    )


def test_choose_is_rate_limited_per_account_and_per_address(limited_app, import_feed, sponsor):
    app = limited_app
    kids = load_children(app, import_feed, 8, updates=False)
    people = [sponsor(target_app=app) for _ in range(4)]
    clients = []
    for n, person in enumerate(people):
        client = app.test_client()
        assert sign_in(client, person.email, person.password).status_code == 302, n
        clients.append(client)
    # One account, a new address each time: the account's limit applies.
    codes_account = [
        post_choose(clients[0], kids.tokens[n], f"10.0.0.{n + 1}").status_code for n in range(3)
    ]
    assert codes_account == [303, 303, 429]
    # One address, other accounts (none past its own limit): the address's limit applies.
    codes = [
        post_choose(clients[1 + n % 3], kids.tokens[3 + n], "10.9.9.9").status_code
        for n in range(5)
    ]
    assert codes[:4] == [303, 303, 303, 303] and codes[4] == 429
    METRICS.report(
        "7.4 choose rate limits: first 429 per account / per address",
        f"request {codes_account.index(429) + 1} (limit 2) / "
        f"request {codes.index(429) + 1} (limit 4)",
    )
