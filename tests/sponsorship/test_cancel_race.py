"""A double-clicked "Cancel my sponsorship" and the webhook Stripe sends for it, all at once
on PostgreSQL: one lock order (sponsorship, then plan) means no deadlock, one cancellation.

The race is driven, not timed: the first click stops right after Stripe cancelled (still
holding its locks) until the second click and the webhook are both waiting for a lock, as
PostgreSQL itself reports; only then does it go on to commit.
"""

from __future__ import annotations

import copy
import threading
import time

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.pool import NullPool

from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from donorhub.payments.gateway import get_gateway
from donorhub.sponsorship.models import Sponsorship, SponsorshipStatus
from tests.helpers import wait_for
from tests.payments.stripe_helpers import csrf_from, post_event
from tests.sponsorship.helpers import load_children, signed_in_client, sponsor_through_stripe


def _lock_waiters(engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
        )


def test_double_clicked_cancel_and_its_webhook_end_in_one_cancel(
    pay_app, import_feed, sponsor, sim, backend
):
    if backend != "postgresql":
        pytest.skip("the lock race needs PostgreSQL's row locks; SQLite serialises writers")
    kids = load_children(pay_app, import_feed, 5, updates=False)
    user = sponsor(target_app=pay_app)
    first, second = signed_in_client(pay_app, user), signed_in_client(pay_app, user)
    row, postman = sponsor_through_stripe(pay_app, first, sim, kids.tokens[0])
    page = f"/my/sponsorships/{row.portal_token}"
    tokens = [csrf_from(first, page), csrf_from(second, page)]
    # The deletion Stripe sends for the cancel, as it will send it.
    created = sim.events(("customer.subscription.created",))[-1]
    deleted = copy.deepcopy(created)
    deleted.update(
        id="evt_deleted_by_cancel", type="customer.subscription.deleted", created=int(time.time())
    )
    deleted["data"]["object"]["status"] = "canceled"
    watcher = create_engine(pay_app.config["SQLALCHEMY_DATABASE_URI"], poolclass=NullPool)
    stripe_done, both_waiting = threading.Event(), threading.Event()
    with pay_app.app_context():
        gateway = get_gateway()
    real_cancel = gateway.cancel_subscription

    def cancel_then_wait(subscription_id: str, key: str) -> None:
        real_cancel(subscription_id, key)
        if stripe_done.is_set():
            return
        stripe_done.set()
        deadline = time.monotonic() + 20
        while _lock_waiters(watcher) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)  # polls PostgreSQL for the two waiters; no race on the clock
        if _lock_waiters(watcher) >= 2:
            both_waiting.set()

    gateway.cancel_subscription = cancel_then_wait
    answers: dict[str, int] = {}

    def click(name: str, client, token: str) -> None:
        answers[name] = client.post(f"{page}/cancel", data={"csrf_token": token}).status_code

    def webhook() -> None:
        wait_for(stripe_done, "the first cancel's Stripe call")
        answers["webhook"] = post_event(pay_app.test_client(), deleted).status_code

    def second_click() -> None:
        wait_for(stripe_done, "the first cancel's Stripe call")
        click("second", second, tokens[1])

    threads = [
        threading.Thread(target=click, args=("first", first, tokens[0])),
        threading.Thread(target=second_click),
        threading.Thread(target=webhook),
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        gateway.cancel_subscription = real_cancel
        watcher.dispose()
    assert both_waiting.is_set()  # the race really happened: two waited on the first's locks
    assert answers == {"first": 302, "second": 302, "webhook": 200}
    postman.flush()  # Stripe's own events, late: nothing changes
    with pay_app.app_context():
        row = db.session.get(Sponsorship, row.id)
        assert (row.status, row.plan.status.value) == (SponsorshipStatus.CANCELLED, "cancelled")
        subjects = db.session.scalars(
            select(OutboxMessage.subject).where(OutboxMessage.recipient == user.email)
        ).all()
        assert len([s for s in subjects if "cancelled" in s]) == 1, subjects
        assert not [s for s in subjects if "has ended" in s], subjects
        assert db.session.scalar(select(func.count()).select_from(Sponsorship)) == 1
        db.session.remove()
    deletes = [r for r in sim.requests("/v1/subscriptions/") if r["method"] == "DELETE"]
    assert len(deletes) == 1
