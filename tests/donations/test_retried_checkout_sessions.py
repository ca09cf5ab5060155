"""One gift or plan, two Checkout Sessions.

"Try again" must expire the previous session before it opens another; and because Stripe
guarantees no order (and two tabs can race), any session's events map to the row, money that
arrives after an expiry is recorded, and a second payment or subscription is flagged.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import stripe
from sqlalchemy import func, select

from donorhub.database import utcnow
from donorhub.donations import checkout, stripe_events
from donorhub.donations.models import (
    Donation,
    DonationStatus,
    PlanStatus,
    RecurringPlan,
)
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from tests.metrics import METRICS
from tests.payments.stripe_helpers import (
    checkout_url,
    csrf_from,
    deliver,
    give,
    session_id_from,
)

ROW = {"once": Donation, "monthly": RecurringPlan}


def _age(app, model, minutes_left: int = 25) -> str:
    """The donor comes back from Checkout's cancel link when the session is nearly over."""
    with app.app_context():
        row = db.session.scalar(select(model))
        row.checkout_expires_at = utcnow() + timedelta(minutes=minutes_left)
        db.session.commit()
        return row.public_id


def _try_again(app, client, model):
    public_id = _age(app, model)
    token = csrf_from(client, f"/donate/cancelled?ref={public_id}")
    return client.post(f"/donate/retry/{public_id}", data={"csrf_token": token})


def _second_open_session(app, model) -> str:
    """Two sessions open at once (two tabs racing "Try again", or a session opened before this
    fix): a new attempt opened without expiring the first. Returns the new session's URL."""
    with app.app_context():
        row = db.session.scalar(select(model))
        row.checkout_attempt += 1
        row.checkout_expires_at = None
        row.stripe_checkout_session_id = None
        url = checkout.open_checkout(row)
        db.session.commit()
        return url


def _receipts(app) -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.template == "donations/receipt")
        )


def _sessions(sim) -> list[dict]:
    return sim.control("/_sim/objects?type=checkout.session", method="GET")["objects"]


@pytest.mark.parametrize("frequency", ["once", "monthly"])
def test_try_again_expires_the_previous_session_first(pay_app, pay_client, sim, frequency):
    url_a = checkout_url(give(pay_client, frequency=frequency))
    response = _try_again(pay_app, pay_client, ROW[frequency])
    url_b = checkout_url(response)
    assert url_a != url_b
    session_a = sim.api(f"/v1/checkout/sessions/{session_id_from(url_a)}")
    assert session_a["status"] == "expired"  # it can no longer be paid
    sim.pay(url_a)  # the old tab tries anyway
    assert sim.api(f"/v1/checkout/sessions/{session_id_from(url_a)}")["status"] == "expired"
    assert not sim.events(("checkout.session.completed", "payment_intent.succeeded"))
    expires = [r for r in sim.requests("/v1/checkout/sessions") if r["path"].endswith("/expire")]
    with pay_app.app_context():
        public_id = db.session.scalar(select(ROW[frequency].public_id))
    assert len(expires) == 1 and public_id in expires[0]["idempotency_key"]
    # Both session ids still lead to the gift (the old tab's return page works).
    for url in (url_a, url_b):
        page = pay_client.get(f"/donate/thank-you?session_id={session_id_from(url)}")
        assert page.status_code == 200


@pytest.mark.parametrize("frequency", ["once", "monthly"])
def test_try_again_after_the_old_session_was_paid_opens_nothing(
    pay_app, pay_client, sim, frequency
):
    url_a = checkout_url(give(pay_client, frequency=frequency))
    assert sim.pay(url_a)[0] == 303  # paid in the old tab; the webhook has not arrived yet
    response = _try_again(pay_app, pay_client, ROW[frequency])
    assert response.status_code in (302, 303)
    assert "/donate/thank-you" in response.headers["Location"]
    page = pay_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "We are confirming your" in page
    assert len(_sessions(sim)) == 1  # no second session to pay


@pytest.mark.parametrize("old_first", [True, False])
def test_one_off_paid_through_two_sessions_is_flagged(pay_app, pay_client, sim, old_first):
    url_a = checkout_url(give(pay_client))
    url_b = _second_open_session(pay_app, Donation)
    assert sim.pay(url_a)[0] == 303 and sim.pay(url_b)[0] == 303
    intents = [
        o
        for o in sim.control("/_sim/objects?type=payment_intent", method="GET")["objects"]
        if o["status"] == "succeeded"
    ]
    assert len(intents) == 2  # charged twice: staff must refund one
    events = sim.events()
    cut = next(
        i
        for i, e in enumerate(events)
        if e["type"] == "checkout.session.completed"
        and e["data"]["object"]["id"] == session_id_from(url_b)
    )
    order = events if old_first else events[cut:] + events[:cut]
    assert set(deliver(pay_client, order + order)) == {200}
    with pay_app.app_context():
        gift = db.session.scalar(select(Donation))
        assert gift.status is DonationStatus.NEEDS_REVIEW
        assert "paid twice" in gift.review_reason
        second = ({i["id"] for i in intents} - {gift.stripe_payment_intent_id}).pop()
        assert second in gift.review_reason  # staff know which payment to refund
        assert gift in stripe_events.flagged_gifts()


def test_old_session_paid_after_the_new_one_expired_is_recorded(pay_app, pay_client, sim):
    url_a = checkout_url(give(pay_client))
    url_b = _second_open_session(pay_app, Donation)
    sim.pay(url_a)
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": sim.base_url})
    client.v1.checkout.sessions.expire(session_id_from(url_b))
    events = sim.events()
    expired = [e for e in events if e["type"] == "checkout.session.expired"]
    rest = [e for e in events if e["type"] != "checkout.session.expired"]
    assert set(deliver(pay_client, expired + rest)) == {200}  # no 500 loop
    with pay_app.app_context():
        gift = db.session.scalar(select(Donation))
        assert gift.status is DonationStatus.PAID and gift.paid_at is not None
    assert _receipts(pay_app) == 1
    page = pay_client.get(f"/donate/thank-you?session_id={session_id_from(url_a)}")
    assert page.status_code == 200 and "is confirmed" in page.get_data(as_text=True)


def test_plan_old_session_paid_new_session_expiry_first(pay_app, pay_client, sim):
    url_a = checkout_url(give(pay_client, frequency="monthly"))
    url_b = _second_open_session(pay_app, RecurringPlan)
    sim.pay(url_a)
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": sim.base_url})
    client.v1.checkout.sessions.expire(session_id_from(url_b))
    events = sim.events()
    expired = [e for e in events if e["type"] == "checkout.session.expired"]
    rest = [e for e in events if e["type"] != "checkout.session.expired"]
    assert set(deliver(pay_client, expired + rest)) == {200}
    with pay_app.app_context():
        plan = db.session.scalar(select(RecurringPlan))
        sub = sim.api(f"/v1/subscriptions/{plan.stripe_subscription_id}")
        assert sub["status"] == "active"
        assert plan.status is PlanStatus.ACTIVE  # not ENDED while its subscription charges
        assert [g.status for g in plan.gifts] == [DonationStatus.PAID]


def test_plan_paid_through_two_sessions_flags_the_second_subscription(pay_app, pay_client, sim):
    url_a = checkout_url(give(pay_client, frequency="monthly"))
    url_b = _second_open_session(pay_app, RecurringPlan)
    sim.pay(url_a)
    sim.pay(url_b)
    subs = sim.control("/_sim/objects?type=subscription", method="GET")["objects"]
    assert len([s for s in subs if s["status"] == "active"]) == 2
    assert set(deliver(pay_client, sim.events())) == {200}
    with pay_app.app_context():
        plan = db.session.scalar(select(RecurringPlan))
        linked = plan.stripe_subscription_id
        other = next(s["id"] for s in subs if s["id"] != linked)
        flagged = [g for g in plan.gifts if g.review_reason]
        assert plan.status is PlanStatus.ACTIVE
        assert len(flagged) == 1 and other in flagged[0].review_reason
        assert flagged[0].status is DonationStatus.NEEDS_REVIEW
    assert _receipts(pay_app) == 1  # only the plan's own first instalment
    # Staff cancel the second subscription: the plan keeps running on the first.
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": sim.base_url})
    seen = {e["id"] for e in sim.events()}
    client.v1.subscriptions.cancel(other)
    assert set(deliver(pay_client, [e for e in sim.events() if e["id"] not in seen])) == {200}
    with pay_app.app_context():
        assert db.session.scalar(select(RecurringPlan.status)) is PlanStatus.ACTIVE


def test_plan_events_in_any_order_with_a_second_expired_session(pay_app, pay_client, sim, backend):
    """Hypothesis: a plan paid in its first session while the second expired; its events in
    any order, with duplicates, end ACTIVE with one paid gift and one receipt."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    client = stripe.StripeClient("sk_test_x", base_addresses={"api": sim.base_url})
    stats = {"examples": 0}

    @settings(
        max_examples=12 if backend == "sqlite" else 8,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def check(data):
        sim.reset()  # one plan per example
        with pay_app.app_context():
            before = db.session.scalar(select(func.max(RecurringPlan.id))) or 0
        url_a = checkout_url(give(pay_client, frequency="monthly"))
        with pay_app.app_context():
            plan_id = db.session.scalar(select(func.max(RecurringPlan.id)))
            assert plan_id > before
            plan = db.session.get(RecurringPlan, plan_id)
            plan.checkout_attempt += 1
            plan.checkout_expires_at = None
            plan.stripe_checkout_session_id = None
            url_b = checkout.open_checkout(plan)
            db.session.commit()
        sim.pay(url_a)
        client.v1.checkout.sessions.expire(session_id_from(url_b))
        events = sim.events()
        order = data.draw(st.permutations(events))
        extra = data.draw(st.lists(st.sampled_from(events), max_size=3))
        codes = deliver(pay_client, list(order) + extra)
        with pay_app.app_context():
            plan = db.session.get(RecurringPlan, plan_id)
            gifts = [(g.status, 1 if g.receipt else 0) for g in plan.gifts]
            ok = (
                set(codes) == {200}
                and plan.status is PlanStatus.ACTIVE
                and gifts == [(DonationStatus.PAID, 1)]
            )
        stats["examples"] += 1
        assert ok, ([e["type"] for e in order], codes, plan.status, gifts)

    check()
    METRICS.report(
        f"plan event orders with an expired second session ({backend}), each "
        "asserted to end in the right state",
        stats["examples"],
    )


def test_expiring_the_old_session_then_failing_to_open_a_new_one_keeps_the_gift_open(
    pay_app, pay_client, sim, monkeypatch
):
    """ "Try again" expired the old session, then Stripe failed to open the new one: the old
    session's expiry event must not end the gift, so the next try works."""
    from donorhub.payments.gateway import GatewayError, get_gateway

    url_a = checkout_url(give(pay_client))
    with pay_app.app_context():
        gateway = get_gateway()

    def down(_request):
        raise GatewayError(
            "Our payment provider had a problem.", retryable=True, kind="server_error", status=500
        )

    monkeypatch.setattr(gateway, "create_checkout", down)
    assert _try_again(pay_app, pay_client, Donation).status_code == 503
    monkeypatch.undo()
    assert sim.api(f"/v1/checkout/sessions/{session_id_from(url_a)}")["status"] == "expired"
    assert set(deliver(pay_client, sim.events())) == {200}  # its expiry arrives
    with pay_app.app_context():
        assert db.session.scalar(select(Donation.status)) is DonationStatus.PENDING
    token = csrf_from(pay_client, "/donate")
    with pay_app.app_context():
        public_id = db.session.scalar(select(Donation.public_id))
    url_b = checkout_url(pay_client.post(f"/donate/retry/{public_id}", data={"csrf_token": token}))
    assert sim.pay(url_b)[0] == 303
    assert set(deliver(pay_client, sim.events())) == {200}
    with pay_app.app_context():
        assert db.session.scalar(select(Donation.status)) is DonationStatus.PAID
