"""A change of interval alone (25.00 monthly to 25.00 yearly) keeps the amount. A pending
change is the amount AND the interval asked for: a routine update of the subscription at the
old interval must not settle it, nor tell the donor it is changed."""

from __future__ import annotations

import copy

from sqlalchemy import func, select

from donorhub.donations import plans
from donorhub.donations.models import Frequency, RecurringPlan
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from donorhub.payments.gateway import SubscriptionChange, get_gateway
from tests.donations.test_double_clicks import _live_plan
from tests.payments.stripe_helpers import post_event


def _facts(app, plan_id: int) -> tuple:
    with app.app_context():
        row = db.session.get(RecurringPlan, plan_id)
        changed = db.session.scalar(
            select(func.count(OutboxMessage.id)).where(
                OutboxMessage.template == "donations/plan_changed"
            )
        )
        facts = (
            row.amount_minor,
            row.frequency,
            row.pending_amount_minor,
            row.pending_frequency,
            changed,
        )
        db.session.remove()
        return facts


def test_a_switch_of_interval_alone_is_not_settled_by_a_routine_update(
    pay_app, pay_client, sim, backend
):
    plan, _token = _live_plan(pay_app, pay_client, sim)
    amount = plan.amount_minor
    with pay_app.app_context():
        # The switch was asked for (step 1 committed) and Stripe's call never applied it.
        plans.prepare_plan_change(db.session.get(RecurringPlan, plan.id), amount, "yearly")
        db.session.commit()
        db.session.remove()
    (latest,) = sim.events(("customer.subscription.created",))[-1:]
    renewal = copy.deepcopy(latest)  # a routine update: same amount, still monthly
    renewal["id"], renewal["type"] = "evt_routine", "customer.subscription.updated"
    renewal["created"] = latest["created"] + 60
    assert post_event(pay_client, renewal).status_code == 200
    assert _facts(pay_app, plan.id) == (amount, Frequency.MONTHLY, amount, "yearly", 0)
    # The page (signed in or not) never hides a change still waiting for Stripe.
    with pay_app.app_context():
        from flask import render_template

        with pay_app.test_request_context():
            summary = render_template(
                "donations/_plan_summary.html", plan=db.session.get(RecurringPlan, plan.id)
            )
        db.session.remove()
    assert "Change asked for" in summary and "yearly" in summary
    # Stripe applies the switch later: its event settles it, and the donor is told once.
    with pay_app.app_context():
        get_gateway().change_subscription(
            SubscriptionChange(
                subscription_id=plan.stripe_subscription_id,
                idempotency_key="late-switch",
                amount_minor=amount,
                currency=plan.currency,
                interval="year",
            )
        )
        db.session.remove()
    applied = [
        e
        for e in sim.events(("customer.subscription.updated",))
        if e["data"]["object"]["items"]["data"][0]["price"]["recurring"]["interval"] == "year"
    ]
    assert applied
    for event in applied:
        event["created"] = renewal["created"] + 60  # after the routine update
    for event in applied * 2:  # delivered twice
        assert post_event(pay_client, event).status_code == 200
    assert _facts(pay_app, plan.id) == (amount, Frequency.YEARLY, None, None, 1)
