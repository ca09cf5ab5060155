"""Each gift keeps the interval it was paid under: switching a plan from monthly to yearly
does not relabel the monthly gifts already paid, in the history or the data download."""

from __future__ import annotations

import re

from sqlalchemy import select

from donorhub.donations.models import RecurringPlan
from donorhub.extensions import db
from tests.helpers import sign_in
from tests.payments.stripe_helpers import Postman, checkout_url, csrf_from, give


def test_history_shows_each_gift_under_the_interval_it_was_paid(
    pay_app, pay_client, sim, make_user
):
    user = make_user("gita@example.org")
    assert sim.pay(checkout_url(give(pay_client, frequency="monthly")))[0] == 303
    postman = Postman(sim, pay_client)
    postman.flush()
    with pay_app.app_context():
        plan = db.session.scalar(select(RecurringPlan))
        public_id, sub = plan.public_id, plan.stripe_subscription_id
    sim.control(f"/_sim/subscriptions/{sub}/renew")  # a second monthly gift
    postman.flush()
    client = pay_app.test_client()
    sign_in(client, user.email)
    page = f"/donate/plans/{public_id}"
    response = client.post(
        f"{page}/change",
        data={"csrf_token": csrf_from(client, page), "amount": "300", "frequency": "yearly"},
    )
    assert response.status_code == 302
    assert "invoice.paid" in postman.flush()  # the switch charges the yearly price at once
    history = client.get("/donate/history").get_data(as_text=True)
    gifts = history.split("Your gifts", 1)[-1] if "Your gifts" in history else history
    labels = re.findall(r"(£[0-9.,]+) \((monthly|yearly)\)", gifts)
    assert sorted(labels) == [
        ("£25.00", "monthly"),
        ("£25.00", "monthly"),
        ("£300.00", "yearly"),
    ], labels
    download = client.get("/account/my-data.json").get_json()
    assert sorted((g["amount_minor"], g["frequency"]) for g in download["gifts"]) == [
        (2500, "monthly"),
        (2500, "monthly"),
        (30000, "yearly"),
    ]


def test_the_switch_invoice_heard_before_the_change_is_recorded_is_yearly(pay_app, pay_client, sim):
    from donorhub.donations import plans
    from donorhub.donations.models import Donation, Frequency
    from donorhub.payments.gateway import SubscriptionChange, get_gateway

    assert sim.pay(checkout_url(give(pay_client, frequency="monthly")))[0] == 303
    postman = Postman(sim, pay_client)
    postman.flush()
    with pay_app.app_context():
        plan = db.session.scalar(select(RecurringPlan))
        plans.prepare_plan_change(plan, 30000, "yearly")
        db.session.commit()
        # Stripe applied the switch and charged at once; our step 2 has not committed yet.
        get_gateway().change_subscription(
            SubscriptionChange(
                subscription_id=plan.stripe_subscription_id,
                idempotency_key="switch-1",
                amount_minor=30000,
                currency="gbp",
                interval="year",
            )
        )
        plan_id = plan.id
    assert "invoice.paid" in postman.flush()
    with pay_app.app_context():
        # invoice.paid came before customer.subscription.updated: when the gift was recorded
        # the plan still said monthly; the interval asked for is what the switch charged.
        assert db.session.get(RecurringPlan, plan_id).frequency is Frequency.YEARLY
        switch = db.session.scalar(select(Donation).where(Donation.amount_minor == 30000))
        first = db.session.scalar(select(Donation).where(Donation.amount_minor == 2500))
        assert (first.paid_frequency, switch.paid_frequency) == ("monthly", "yearly")
