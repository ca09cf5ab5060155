"""Statements per webhook delivery and per applied event type: the receiving request is a
fixed few statements whatever the event, and applying each kind of event costs a fixed
number (a handler that starts to query per row, or a second round trip per event, fails
here)."""

from __future__ import annotations

import json

import pytest
import stripe

from tests.payments.stripe_helpers import (
    apply_stored_events,
    checkout_url,
    give,
    post_event,
    session_id_from,
)

#: The receiving request: the insert (with its NOTIFY on PostgreSQL, one statement).
RECEIVE_STATEMENTS = 1

#: Statements to apply one event of each type (savepoint and release included), on top of
#: the batch's claim. Measured on both backends; a change must be explained.
APPLY_STATEMENTS = {
    "checkout.session.completed (payment)": 12,
    "payment_intent.succeeded (already paid)": 5,
    "checkout.session.completed (subscription)": 4,
    "invoice.paid": 16,
    "charge.refunded": 18,
    "charge.dispute.created": 14,
}


@pytest.fixture
def app(pay_app):
    """count_queries counts on `app`: here the app that pays through the simulator."""
    return pay_app


def _stripe(sim) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_x", base_addresses={"api": sim.base_url})


def _count_apply(app, client, count_queries, event: dict) -> int:
    assert post_event(client, event, apply=False).status_code == 200
    with count_queries() as queries:
        report = apply_stored_events(app)
    assert (report.applied, report.failed) == (1, 0), queries.report()
    return queries.count - 2  # the batch's claim, and the empty claim that ends the drain


def test_receiving_an_event_is_one_statement(pay_client, sim, count_queries):
    sim.pay(checkout_url(give(pay_client)))
    events = sim.events()
    for event in events:  # every type costs the same to receive
        with count_queries() as queries:
            response = post_event(pay_client, event, apply=False)
        assert response.status_code == 200
        assert queries.count == RECEIVE_STATEMENTS, queries.report()
    with count_queries() as queries:  # a duplicate too
        assert post_event(pay_client, events[0], apply=False).status_code == 200
    assert queries.count == RECEIVE_STATEMENTS, queries.report()


def test_applying_each_event_type_costs_a_fixed_number_of_statements(
    pay_app, pay_client, sim, count_queries, backend
):
    measured: dict[str, int] = {}
    url = checkout_url(give(pay_client))
    sim.pay(url)
    intent = sim.api(f"/v1/checkout/sessions/{session_id_from(url)}")["payment_intent"]
    once = {e["type"]: e for e in sim.events()}
    measured["checkout.session.completed (payment)"] = _count_apply(
        pay_app, pay_client, count_queries, once["checkout.session.completed"]
    )
    measured["payment_intent.succeeded (already paid)"] = _count_apply(
        pay_app, pay_client, count_queries, once["payment_intent.succeeded"]
    )
    _stripe(sim).v1.refunds.create({"payment_intent": intent, "amount": 500})
    (refunded,) = sim.events(("charge.refunded",))
    measured["charge.refunded"] = _count_apply(pay_app, pay_client, count_queries, refunded)
    charge = sim.api(f"/v1/payment_intents/{intent}")["latest_charge"]
    charge = charge if isinstance(charge, str) else charge["id"]
    sim.control(f"/_sim/charges/{charge}/dispute")
    (disputed,) = sim.events(("charge.dispute.created",))
    measured["charge.dispute.created"] = _count_apply(pay_app, pay_client, count_queries, disputed)

    seen = {e["id"] for e in sim.events()}
    sim.pay(checkout_url(give(pay_client, frequency="monthly", email="plan@example.org")))
    plan = {e["type"]: e for e in sim.events() if e["id"] not in seen}
    measured["checkout.session.completed (subscription)"] = _count_apply(
        pay_app, pay_client, count_queries, plan["checkout.session.completed"]
    )
    measured["invoice.paid"] = _count_apply(
        pay_app, pay_client, count_queries, plan["invoice.paid"]
    )
    assert measured == APPLY_STATEMENTS, json.dumps(measured, indent=2)
