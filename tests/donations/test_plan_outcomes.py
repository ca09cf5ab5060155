"""What Stripe did, not what we happened to hear first: plan changes whose answer never came,
checkouts that charged another amount, invoices of one second, and the time money was paid."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from donorhub.donations import plans
from donorhub.donations.models import (
    Donation,
    DonationStatus,
    Frequency,
    PlanStatus,
    RecurringPlan,
)
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from donorhub.payments.gateway import SubscriptionChange, get_gateway
from donorhub.payments.reconcile import reconcile
from tests.donations.test_plans import start_plan
from tests.helpers import sign_in
from tests.payments.stripe_helpers import (
    apply_stored_events,
    checkout_url,
    csrf_from,
    deliver,
    give,
)

TIMEOUT = 0.5


@pytest.fixture
def slow_app(app_factory, sim):
    return app_factory(
        STRIPE_API_BASE=sim.base_url, CSP_FORM_ACTION=[sim.base_url], STRIPE_TIMEOUT_SECONDS=TIMEOUT
    )


def _plan(app, plan_id: int) -> RecurringPlan:
    with app.app_context():
        row = db.session.get(RecurringPlan, plan_id)
        db.session.expunge(row)
        db.session.remove()
        return row


def _outbox(app, template: str) -> int:
    with app.app_context():
        return len(
            db.session.scalars(
                select(OutboxMessage.id).where(OutboxMessage.template == template)
            ).all()
        )


def test_a_change_whose_answer_timed_out_is_not_called_unchanged_and_settles_from_stripe(
    slow_app, sim, make_user
):
    user = make_user("gita@example.org")
    client = slow_app.test_client()
    plan, postman = start_plan(slow_app, client, sim)
    sign_in(client, user.email)
    page = f"/donate/plans/{plan.public_id}"
    # Stripe is slow: it applies the change (and charges the yearly price at once) only
    # after our request has timed out and its retries were told "still in progress". The
    # test holds the change at the simulator until it has had our answer.
    sim.fault(
        path_prefix=f"/v1/subscriptions/{plan.stripe_subscription_id}",
        method="POST",
        hold="change",
        times=1,
    )
    response = client.post(
        f"{page}/change",
        data={"csrf_token": csrf_from(client, page), "amount": "120", "frequency": "yearly"},
    )
    assert response.status_code == 302
    shown = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "nothing has changed" not in shown
    assert "could not confirm the change" in shown and "e-mail you" in shown
    row = _plan(slow_app, plan.id)
    assert (row.amount_minor, row.pending_amount_minor) == (2500, 12000)
    assert "not confirmed by our payment provider yet" in client.get(page).get_data(as_text=True)
    sim.hold("change", "release")  # returns once Stripe has applied the change
    assert (
        sim.api(f"/v1/subscriptions/{plan.stripe_subscription_id}")["items"]["data"][0]["price"][
            "unit_amount"
        ]
        == 12000
    )
    postman.flush()  # Stripe's events for the change it applied
    row = _plan(slow_app, plan.id)
    assert (row.amount_minor, row.frequency, row.pending_amount_minor, row.status) == (
        12000,
        Frequency.YEARLY,
        None,
        PlanStatus.ACTIVE,
    )
    with slow_app.app_context():
        gifts = db.session.scalars(
            select(Donation).where(Donation.plan_id == plan.id).order_by(Donation.id)
        ).all()
        assert [(g.amount_minor, g.status) for g in gifts] == [
            (2500, DonationStatus.PAID),
            (12000, DonationStatus.PAID),
        ]
        assert all(g.receipt is not None for g in gifts)
        db.session.remove()
    assert _outbox(slow_app, "donations/plan_changed") == 1  # the promised e-mail, once


def test_a_change_stripe_applied_is_confirmed_before_answering(app_factory, sim, make_user):
    """The request timed out, but by the time we ask, Stripe has applied it: say so."""
    app = app_factory(
        STRIPE_API_BASE=sim.base_url,
        CSP_FORM_ACTION=[sim.base_url],
        STRIPE_TIMEOUT_SECONDS=1,
        STRIPE_MAX_NETWORK_RETRIES=0,
    )
    user = make_user("gita@example.org")
    client = app.test_client()
    plan, postman = start_plan(app, client, sim)
    sign_in(client, user.email)
    page = f"/donate/plans/{plan.public_id}"
    sub = f"/v1/subscriptions/{plan.stripe_subscription_id}"
    # Stripe applies the change, but its answer is held back until the test releases it:
    # our request gives up (timeout 1 s, no retry), and then asks Stripe.
    sim.fault(path_prefix=sub, method="POST", hold="answer", hold_at="answer", times=1)
    response = client.post(
        f"{page}/change",
        data={"csrf_token": csrf_from(client, page), "amount": "30", "frequency": "monthly"},
    )
    sim.hold("answer", "release")  # the answer nobody waits for any more
    shown = client.get(response.headers["Location"]).get_data(as_text=True)
    row = _plan(app, plan.id)
    assert "Your regular gift is changed." in shown
    assert (row.amount_minor, row.pending_amount_minor) == (3000, None)
    postman.flush()
    assert _outbox(app, "donations/plan_changed") == 1


@pytest.mark.parametrize("heard_by", ["webhook", "reconcile"])
def test_a_change_stripe_applied_before_the_worker_died_is_settled_by_its_event(
    pay_app, pay_client, sim, heard_by
):
    plan, postman = start_plan(pay_app, pay_client, sim)
    with pay_app.app_context():
        row = db.session.get(RecurringPlan, plan.id)
        plans.prepare_plan_change(row, 2000, "monthly")
        db.session.commit()  # step 1 committed
        get_gateway().change_subscription(
            SubscriptionChange(
                subscription_id=row.stripe_subscription_id,
                idempotency_key="killed-change",
                amount_minor=2000,
                currency="gbp",
                interval="month",
            )
        )
        db.session.rollback()  # the worker died before step 2 committed
        db.session.remove()
    if heard_by == "webhook":
        postman.flush()
    else:  # the webhooks were lost: reconciliation lists Stripe's events and stores them
        with pay_app.app_context():
            assert reconcile().failed == 0
            db.session.remove()
        apply_stored_events(pay_app)  # the event worker
        postman.sent.update(e["id"] for e in sim.events())
    row = _plan(pay_app, plan.id)
    assert (row.amount_minor, row.pending_amount_minor) == (2000, None)
    assert _outbox(pay_app, "donations/plan_changed") == 1
    # A renewal charges the new amount, and it is an ordinary paid gift.
    sim.control(f"/_sim/subscriptions/{plan.stripe_subscription_id}/renew")
    postman.flush()
    with pay_app.app_context():
        last = db.session.scalar(select(Donation).order_by(Donation.id.desc()))
        assert (last.amount_minor, last.status) == (2000, DonationStatus.PAID)
        db.session.remove()


@pytest.mark.parametrize("order", ["stripe", "reversed"])
@pytest.mark.parametrize("what", ["amount", "currency"])
def test_a_plan_whose_checkout_charged_something_else_is_not_activated(
    pay_app, pay_client, sim, order, what
):
    url = checkout_url(give(pay_client, frequency="monthly"))
    sim.pay(url)
    events = copy.deepcopy(sim.events())
    for event in events:
        obj = event["data"]["object"]
        if event["type"] == "checkout.session.completed":
            obj.update(amount_total=999) if what == "amount" else obj.update(currency="usd")
        if event["type"] in ("invoice.paid", "invoice.payment_succeeded"):
            if what == "amount":
                obj.update(amount_paid=999, amount_due=999, total=999)
            else:
                obj.update(currency="usd")
    assert set(deliver(pay_client, events if order == "stripe" else events[::-1])) == {200}
    with pay_app.app_context():
        plan = db.session.scalar(select(RecurringPlan))
        assert plan.status is PlanStatus.PENDING  # never ACTIVE
        assert plan.review_reason and plan in plans.flagged_plans()
        assert [g.status for g in plan.gifts] == [DonationStatus.NEEDS_REVIEW]
        db.session.remove()


@pytest.mark.parametrize("late", ["failure", "payment"])
def test_two_invoices_of_one_second_end_as_stripe_says_whichever_comes_last(
    pay_app, pay_client, sim, late
):
    plan, postman = start_plan(pay_app, pay_client, sim)
    sub = plan.stripe_subscription_id
    failed = sim.control(f"/_sim/subscriptions/{sub}/renew", fail="1")["invoice"]
    paid = sim.control(f"/_sim/subscriptions/{sub}/renew")["invoice"]
    assert sim.api(f"/v1/subscriptions/{sub}")["latest_invoice"] == paid["id"]
    fresh = [e for e in sim.events() if e["id"] not in postman.sent]
    failure = next(e for e in fresh if e["type"] == "invoice.payment_failed")
    payment = next(e for e in fresh if e["type"] == "invoice.paid")
    # Both invoices (and their events) in one Stripe second.
    second = failure["data"]["object"]["created"]
    for event in (failure, payment):
        event["created"] = event["data"]["object"]["created"] = second
    first, last = (payment, failure) if late == "failure" else (failure, payment)
    assert deliver(pay_client, [first, last]) == [200, 200]
    row = _plan(pay_app, plan.id)
    assert (row.status, row.latest_invoice_id) == (PlanStatus.ACTIVE, paid["id"])
    assert failed["id"] != paid["id"]


@pytest.mark.parametrize("first", ["refund", "payment"])
def test_paid_at_is_when_the_charge_was_made_whichever_event_comes_first(
    pay_app, pay_client, sim, first
):
    url = checkout_url(give(pay_client))
    sim.pay(url)
    events = sim.events()
    charge = next(e for e in events if e["type"] == "charge.succeeded")
    refund = copy.deepcopy(charge)
    refund.update(
        id="evt_refund_three_days_later",
        type="charge.refunded",
        created=charge["created"] + 3 * 86400,
    )
    refund["data"]["object"].update(
        refunded=True, amount_refunded=refund["data"]["object"]["amount"]
    )
    ordered = [refund, *events] if first == "refund" else [*events, refund]
    assert set(deliver(pay_client, ordered)) == {200}
    with pay_app.app_context():
        gift = db.session.scalar(select(Donation))
        charged = datetime.fromtimestamp(charge["data"]["object"]["created"], UTC)
        assert abs(gift.paid_at - charged) <= timedelta(seconds=1), (gift.paid_at, charged)
        assert gift.status is DonationStatus.REFUNDED
        db.session.remove()
