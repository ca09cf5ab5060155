"""Refunds and disputes that arrive before the payment is confirmed, and refunds of invoices
that are not ours."""

from __future__ import annotations

from datetime import date

import pytest
import stripe
from sqlalchemy import func, select, update

from donorhub.database import utcnow
from donorhub.donations import giftaid
from donorhub.donations.models import Donation, DonationStatus
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from donorhub.payments.models import EventState, StripeEvent
from tests.metrics import METRICS
from tests.payments.stripe_helpers import (
    apply_stored_events,
    checkout_url,
    deliver,
    give,
    session_id_from,
)

GIFT_AID = {
    "gift_aid": "on",
    "gift_aid_first_name": "Gita",
    "gift_aid_last_name": "Giver",
    "gift_aid_house": "12",
    "gift_aid_postcode": "s19 2bd",
    "gift_aid_confirm": "on",
}


def _stripe(sim) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_x", base_addresses={"api": sim.base_url})


def _paid(sim, client, **form) -> str:
    url = checkout_url(give(client, **form))
    assert sim.pay(url)[0] == 303
    return sim.api(f"/v1/checkout/sessions/{session_id_from(url)}")["payment_intent"]


def _charge(sim, intent_id: str) -> str:
    charge = sim.api(f"/v1/payment_intents/{intent_id}")["latest_charge"]
    return charge if isinstance(charge, str) else charge["id"]


def _dispute(sim, intent_id: str, outcome: str | None) -> None:
    made = sim.control(f"/_sim/charges/{_charge(sim, intent_id)}/dispute")
    dispute_id = made.get("id") or made.get("dispute", {}).get("id")
    if outcome:
        sim.control(f"/_sim/disputes/{dispute_id}/close", status=outcome)


def _state(app) -> tuple[DonationStatus, int, int]:
    with app.app_context():
        gift = db.session.scalar(select(Donation))
        receipts = db.session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.template == "donations/receipt")
        )
        return gift.status, receipts, gift.amount_refunded_minor


@pytest.mark.parametrize("refund_first", [True, False])
def test_partial_refund_in_any_order_gives_exactly_one_receipt(
    pay_app, pay_client, sim, refund_first
):
    intent = _paid(sim, pay_client)
    _stripe(sim).v1.refunds.create({"payment_intent": intent, "amount": 500})
    events = sim.events()
    refunds = [e for e in events if e["type"] == "charge.refunded"]
    rest = [e for e in events if e["type"] != "charge.refunded"]
    order = refunds + rest if refund_first else rest + refunds
    assert set(deliver(pay_client, order + order)) == {200}
    assert _state(pay_app) == (DonationStatus.PARTIALLY_REFUNDED, 1, 500)
    with pay_app.app_context():
        body = db.session.scalar(
            select(OutboxMessage).where(OutboxMessage.template == "donations/receipt")
        ).text_body
    if refund_first:  # the receipt shows what was received and what went back
        assert "Refunded: £5.00" in body and "£25.00" in body


@pytest.mark.parametrize("outcome", ["won", "lost"])
@pytest.mark.parametrize("dispute_first", [True, False])
def test_dispute_in_any_order(pay_app, pay_client, sim, outcome, dispute_first):
    intent = _paid(sim, pay_client, **GIFT_AID)
    _dispute(sim, intent, outcome)
    events = sim.events()
    disputes = [e for e in events if e["type"].startswith("charge.dispute")]
    rest = [e for e in events if not e["type"].startswith("charge.dispute")]
    order = disputes + rest if dispute_first else rest + disputes
    assert set(deliver(pay_client, order)) == {200}
    with pay_app.app_context():
        outcomes = dict(db.session.execute(select(StripeEvent.type, StripeEvent.outcome)).all())
        assert outcomes["charge.dispute.created"] == "applied"  # never dropped
        claimable = giftaid.preview_claim(date(2020, 1, 1), date(2100, 1, 1)).rows
    status, receipts, _ = _state(pay_app)
    if outcome == "lost":
        # A receipt goes out only if the payment was confirmed before the dispute arrived.
        assert (status, receipts) == (DonationStatus.CHARGED_BACK, 0 if dispute_first else 1)
        assert claimable == []  # no Gift Aid on money taken back
    else:
        assert (status, receipts) == (DonationStatus.PAID, 1)
        assert len(claimable) == 1
    METRICS.report(
        f"4 dispute {outcome}, {'before' if dispute_first else 'after'} confirmation: final state",
        status.value,
    )


def test_refund_of_an_invoice_that_is_not_ours_is_acknowledged(pay_app, pay_client, sim):
    """Another system on the same Stripe account bills a subscription; its refund must not
    make our webhook answer 500 forever."""
    client = _stripe(sim)
    session = client.v1.checkout.sessions.create(
        {
            "mode": "subscription",
            "success_url": "http://127.0.0.1/ok",
            "customer_email": "someone@example.net",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": "gbp",
                        "unit_amount": 1200,
                        "product_data": {"name": "Magazine"},
                        "recurring": {"interval": "month"},
                    },
                }
            ],
        }
    )
    assert sim.pay(session.url)[0] == 303
    intent = next(
        e["data"]["object"]["id"] for e in sim.events() if e["type"] == "payment_intent.succeeded"
    )
    client.v1.refunds.create({"payment_intent": intent})
    _dispute(sim, intent, None)
    foreign = sim.events(("charge.refunded", "charge.dispute.created"))
    assert deliver(pay_client, foreign) == [200, 200]
    with pay_app.app_context():
        assert set(db.session.scalars(select(StripeEvent.outcome))) == {"ignored"}


def test_refund_of_our_invoice_before_its_gift_is_retried(pay_app, pay_client, sim):
    """Ours (the invoice carries our plan reference) but not recorded yet: stored, and the
    worker tries it again after its backoff; after invoice.paid the refund applies."""
    url = checkout_url(give(pay_client, frequency="monthly"))
    sim.pay(url)
    intent = next(
        e["data"]["object"]["id"] for e in sim.events() if e["type"] == "payment_intent.succeeded"
    )
    _stripe(sim).v1.refunds.create({"payment_intent": intent})
    (refund,) = sim.events(("charge.refunded",))
    assert deliver(pay_client, [refund]) == [200]
    with pay_app.app_context():
        row = db.session.scalar(select(StripeEvent).where(StripeEvent.event_id == refund["id"]))
        assert (row.state, row.attempts, row.last_error) == (EventState.RETRYING, 1, "NotReady")
    others = [e for e in sim.events() if e["type"] != "charge.refunded"]
    assert set(deliver(pay_client, others + [refund])) == {200}
    # The refund's own events (refund.created) recorded it meanwhile.
    assert _state(pay_app)[0] is DonationStatus.REFUNDED
    with pay_app.app_context():  # the backoff has passed: charge.refunded applies, once
        db.session.execute(
            update(StripeEvent)
            .where(StripeEvent.event_id == refund["id"])
            .values(next_attempt_at=utcnow())
        )
        db.session.commit()
    assert apply_stored_events(pay_app).applied == 1
    assert _state(pay_app)[0] is DonationStatus.REFUNDED
