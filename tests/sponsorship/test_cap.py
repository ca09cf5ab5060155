"""The cap on sponsors per child is enforced by the database: sequentially on both
databases, and under a race of 50 concurrent attempts for 5 children on PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from donorhub.accounts.models import User
from donorhub.children.models import ChildRelease
from donorhub.database import utcnow
from donorhub.extensions import db
from donorhub.sponsorship import conduct, jobs, services
from donorhub.sponsorship.models import (
    ConductAcceptance,
    Sponsorship,
    SponsorshipPlace,
    SponsorshipStatus,
)
from tests.helpers import HANG_GUARD_SECONDS
from tests.metrics import METRICS
from tests.sponsorship.helpers import choose, load_children, signed_in_client


def _hold(app, user_id: int, token: str):
    with app.app_context():
        try:
            row = services.hold_child(db.session.get(User, user_id), token, "gbp")
            db.session.commit()
            return row.id
        except services.ChildTaken:
            db.session.rollback()
            return None
        finally:
            db.session.remove()


def _count(app, model) -> int:
    with app.app_context():
        value = db.session.scalar(select(func.count()).select_from(model))
        db.session.remove()
        return value


def test_one_place_per_child_sequentially(app_factory, import_feed, sponsor, app):
    kids = load_children(app, import_feed, 5, updates=False)
    a, b, c = sponsor(), sponsor(), sponsor()
    assert _hold(app, a.id, kids.tokens[0]) is not None
    assert _hold(app, b.id, kids.tokens[0]) is None  # taken: the database said no
    assert _count(app, SponsorshipPlace) == 1
    with app.app_context():
        # Until the next publication the public card is as published: the listing never
        # shows the moment of a sponsorship (or of an exit, which looks the same).
        listed = [card.token for card in services.listed_profiles()]
        assert kids.tokens[0] in listed and len(listed) == 5
    # With two places per child, a second sponsor fits and a third does not.
    two = app_factory(SPONSORS_PER_CHILD=2)
    assert _hold(two, b.id, kids.tokens[0]) is not None
    assert _hold(two, c.id, kids.tokens[0]) is None
    with two.app_context():
        numbers = sorted(db.session.scalars(select(SponsorshipPlace.place_number)))
        assert numbers == [1, 2]


def test_the_loser_gets_a_clear_page_not_an_error(app, import_feed, sponsor):
    kids = load_children(app, import_feed, 5, updates=False)
    a, b = sponsor(), sponsor()
    assert _hold(app, a.id, kids.tokens[1]) is not None
    client = signed_in_client(app, b)
    # B saw the profile a moment ago; A's hold landed in between.
    with app.app_context():
        page_token = kids.tokens[1]
    response = client.post(
        f"/sponsor/{page_token}/choose", data={"csrf_token": _token(client), "currency": "gbp"}
    )
    assert response.status_code == 409
    assert "Someone else just chose this child" in response.get_data(as_text=True)
    assert _count(app, Sponsorship) == 1  # the loser's rows were rolled back


def _token(client) -> str:
    from tests.helpers import csrf_token

    return csrf_token(client, "/sponsor")


def test_holds_expire_and_unlisted_children_lose_their_holds(app, import_feed, sponsor):
    kids = load_children(app, import_feed, 5, updates=False)
    a, b = sponsor(), sponsor()
    first = _hold(app, a.id, kids.tokens[0])
    second = _hold(app, b.id, kids.tokens[1])
    with app.app_context():
        assert jobs.release_expired_holds() == 0
        # The release checks unlist the second child (e.g. consent withdrawn).
        db.session.execute(
            ChildRelease.__table__.update()
            .where(ChildRelease.child_id == kids.ids[1])
            .values(is_listed=False)
        )
        db.session.commit()
        assert jobs.release_expired_holds() == 1
        assert db.session.get(Sponsorship, second).status is SponsorshipStatus.EXPIRED
        later = utcnow() + timedelta(minutes=16)
        assert jobs.release_expired_holds(later) == 1
        assert db.session.get(Sponsorship, first).status is SponsorshipStatus.EXPIRED
        assert db.session.scalar(select(func.count()).select_from(SponsorshipPlace)) == 0
        assert kids.tokens[0] in [c.token for c in services.listed_profiles()]
        db.session.remove()


def test_choosing_needs_a_verified_address_and_the_code_of_conduct(
    app, import_feed, sponsor, make_user
):
    kids = load_children(app, import_feed, 5, updates=False)
    unverified = make_user(verified=False)
    client = signed_in_client(app, unverified)
    response = choose(client, kids.tokens[0])
    assert response.status_code == 403 and "confirm your e-mail" in response.get_data(as_text=True)
    newcomer = sponsor(accept=False)
    client = signed_in_client(app, newcomer)
    response = choose(client, kids.tokens[0])
    assert (
        response.status_code == 302 and "/sponsor/code-of-conduct" in response.headers["Location"]
    )
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "only through the charity" in page and conduct.CURRENT_VERSION in page
    from tests.helpers import csrf_token

    token = csrf_token(client, "/sponsor/code-of-conduct")
    refused = client.post(
        "/sponsor/code-of-conduct",
        data={"csrf_token": token, "version": conduct.CURRENT_VERSION, "next": ""},
    )
    assert refused.status_code == 400
    accepted = client.post(
        "/sponsor/code-of-conduct",
        data={
            "csrf_token": token,
            "version": conduct.CURRENT_VERSION,
            "accept": "on",
            "next": f"/sponsor/{kids.tokens[0]}",
        },
    )
    assert accepted.status_code == 302
    assert accepted.headers["Location"].endswith(f"/sponsor/{kids.tokens[0]}")
    with app.app_context():
        row = db.session.scalar(
            select(ConductAcceptance).where(ConductAcceptance.user_id == newcomer.id)
        )
        assert row.version == conduct.CURRENT_VERSION
        assert abs((utcnow() - row.accepted_at).total_seconds()) < 60
        db.session.remove()
    assert _count(app, SponsorshipPlace) == 0


@pytest.mark.usefixtures("backend")
def test_fifty_concurrent_attempts_for_five_children_give_five_sponsorships(
    app_factory, import_feed, backend, app
):
    if backend != "postgresql":
        pytest.skip(
            "the race needs PostgreSQL's concurrent writers; SQLite serialises "
            "every write, and the sequential cap test covers it"
        )
    kids = load_children(app, import_feed, 5, updates=False)
    racer = app_factory(
        SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 50, "max_overflow": 5, "pool_pre_ping": True}
    )
    with racer.app_context():
        users = [
            User(
                email=f"racer{n}@example.org",
                full_name=f"Racer {n}",
                password_hash="x",
                email_verified_at=utcnow(),
            )  # noqa: S106
            for n in range(50)
        ]
        db.session.add_all(users)
        db.session.flush()
        db.session.add_all(
            [ConductAcceptance(user_id=u.id, version=conduct.CURRENT_VERSION) for u in users]
        )
        db.session.commit()
        user_ids = [u.id for u in users]
        db.session.remove()
    barrier = threading.Barrier(50, timeout=HANG_GUARD_SECONDS)
    outcomes: list = []
    errors: list = []

    def attempt(n: int) -> None:
        try:
            barrier.wait(timeout=HANG_GUARD_SECONDS)
            outcomes.append(_hold(racer, user_ids[n], kids.tokens[n % 5]))
        except Exception as error:  # a deadlock or any other failure would land here
            barrier.abort()
            errors.append(repr(error))

    started = time.monotonic()
    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)  # a guard against a hang only: a busy machine is slow
    elapsed = time.monotonic() - started
    assert errors == []
    won = [o for o in outcomes if o is not None]
    assert len(outcomes) == 50 and len(won) == 5
    with racer.app_context():
        per_child = db.session.execute(
            select(SponsorshipPlace.child_id, func.count()).group_by(SponsorshipPlace.child_id)
        ).all()
        assert sorted(count for _child, count in per_child) == [1, 1, 1, 1, 1]
        live = db.session.scalar(select(func.count()).select_from(Sponsorship))
        assert live == 5  # the 45 losers rolled back: no sponsorship rows at all
        db.session.remove()
    METRICS.report(
        "sponsorship race (PostgreSQL): attempts / children / sponsorships / errors",
        f"50 / 5 / 5 / 0 in {elapsed:.2f} s",
    )
