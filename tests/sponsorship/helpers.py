"""Sponsorship test helpers: listed children from a real feed import, and paying through the
local Stripe simulator with the real stripe library. The fixtures they take (import_feed,
sponsor, pay_app, sim, ...) are plugins in tests/fixtures/."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from donorhub.children import review
from donorhub.children.models import Child, ChildUpdate
from donorhub.database import utcnow
from donorhub.donations.models import Donation
from donorhub.extensions import db
from donorhub.sponsorship.models import Sponsorship
from tests.feed.builders import Batch, crowd, update
from tests.helpers import csrf_token, sign_in
from tests.payments.stripe_helpers import Postman


@dataclass
class Kids:
    """Children imported from one batch, oldest arrival first."""

    ids: list[int]
    tokens: list[str]
    aliases: list[str]
    refs: list[str]


def load_children(app, import_feed, size: int = 5, *, updates: bool = True, **overrides) -> Kids:
    """`size` look-alike children (listed by the release checks), each with one update that
    an officer approves and that is published, so the portal has content."""
    records = crowd(size, **overrides)
    batch = Batch().add(*records)
    if updates:
        batch.add(*[update(r["ref"], text="She read a whole book to her class.") for r in records])
    import_feed(batch)
    with app.app_context():
        children = db.session.scalars(
            select(Child).where(Child.status == "active").order_by(Child.first_seen_at, Child.id)
        ).all()
        children = children[-size:]
        if updates:
            from donorhub.accounts.models import User

            officer = db.session.scalar(select(User).where(User.email == "officer@x.invalid"))
            if officer is None:
                officer = User(email="officer@x.invalid", full_name="Officer", password_hash="x")  # noqa: S106 - never signs in
                db.session.add(officer)
                db.session.flush()
            for row in db.session.scalars(
                select(ChildUpdate).where(ChildUpdate.child_id.in_([c.id for c in children]))
            ):
                review.approve(officer, "update", row.id)
                row.published_at = utcnow()
        db.session.commit()
        kids = Kids(
            [c.id for c in children],
            [c.public_token for c in children],
            [c.alias for c in children],
            [r["ref"] for r in records],
        )
        db.session.remove()
    return kids


def signed_in_client(app, user):
    client = app.test_client()
    response = sign_in(client, user.email, user.password)
    assert response.status_code == 302
    return client


def choose(client, token: str, currency: str = "gbp"):
    return client.post(
        f"/sponsor/{token}/choose",
        data={"csrf_token": csrf_token(client, f"/sponsor/{token}"), "currency": currency},
    )


def sponsor_through_stripe(app, client, stripe_sim, token: str) -> tuple[Sponsorship, Postman]:
    """Choose a child, pay on the simulator's checkout page, deliver the webhooks."""
    response = choose(client, token)
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    status, _ = stripe_sim.pay(response.headers["Location"])
    assert status == 303
    postman = Postman(stripe_sim, client)
    postman.flush()
    with app.app_context():
        row = db.session.scalar(select(Sponsorship).order_by(Sponsorship.id.desc()))
        db.session.expunge(row)
        db.session.remove()
    return row, postman


def state(app, sponsorship_id: int):
    with app.app_context():
        row = db.session.get(Sponsorship, sponsorship_id)
        result = (row.status, row.plan.status if row.plan else None)
        db.session.remove()
        return result


def taken_a_minute_ago(app) -> None:
    """Date every payment so far a minute back: Stripe dates payments to the whole second,
    and a payment in the very second of the exit counts as after it (refunded)."""
    with app.app_context():
        for gift in db.session.scalars(select(Donation).where(Donation.paid_at.is_not(None))):
            gift.paid_at -= timedelta(minutes=1)
        db.session.commit()
        db.session.remove()
