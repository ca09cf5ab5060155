"""Each gift keeps the interval it was paid under: an invoice paid before a switch to yearly
and delivered after the switch was recorded is a monthly gift, by the invoice's own line."""

from __future__ import annotations

import copy

from sqlalchemy import select

from donorhub.donations.models import Donation, DonationStatus, Frequency, RecurringPlan
from donorhub.extensions import db
from donorhub.payments.events import event_from_dict
from tests.donations.test_double_clicks import _live_plan
from tests.payments.stripe_helpers import post_event


def test_a_late_monthly_invoice_after_a_recorded_switch_stays_monthly(
    pay_app, pay_client, sim, backend
):
    plan, _token = _live_plan(pay_app, pay_client, sim)
    (paid,) = sim.events(("invoice.paid",))
    assert event_from_dict(paid).subject.interval == "month"  # the simulator's own invoice
    with pay_app.app_context():
        # The switch to yearly is recorded (its event came first)...
        db.session.get(RecurringPlan, plan.id).frequency = Frequency.YEARLY
        db.session.commit()
        db.session.remove()
    # ...and then the monthly renewal, paid before it, is delivered.
    late = copy.deepcopy(paid)
    late["id"] = "evt_late_monthly"
    late["created"] = paid["created"] + 60
    invoice = late["data"]["object"]
    invoice["id"], invoice["billing_reason"] = "in_late_monthly", "subscription_cycle"
    assert post_event(pay_client, late).status_code == 200
    with pay_app.app_context():
        gift = db.session.scalar(
            select(Donation).where(Donation.stripe_invoice_id == "in_late_monthly")
        )
        assert gift.status is DonationStatus.PAID
        assert gift.frequency == "monthly"
        db.session.remove()


def test_an_invoice_without_a_subscription_line_falls_back_to_the_plan():
    event = {
        "id": "evt_x",
        "type": "invoice.paid",
        "created": 1,
        "livemode": False,
        "data": {
            "object": {
                "id": "in_x",
                "object": "invoice",
                "currency": "gbp",
                "lines": {
                    "data": [
                        {
                            "parent": {"subscription_item_details": {"proration": True}},
                            "period": {"start": 0, "end": 30 * 86400},
                        }
                    ]
                },
            }
        },
    }
    assert event_from_dict(event).subject.interval is None
    yearly = copy.deepcopy(event)
    line = yearly["data"]["object"]["lines"]["data"][0]
    line["parent"]["subscription_item_details"]["proration"] = False
    line["period"] = {"start": 0, "end": 365 * 86400}
    assert event_from_dict(yearly).subject.interval == "year"
