"""Dunning recovery: the failure history written by the invoice webhooks (idempotent, in any
delivery order) and the report, against hand-computed figures."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select

from donorhub.donations.models import Donor, Frequency, PlanPaymentFailure, RecurringPlan
from donorhub.extensions import db
from donorhub.payments.events import InvoiceData, PaymentEvent, Refs
from donorhub.payments.webhooks import DuplicateEvent, apply_event
from donorhub.reports import services as reports
from tests.campaigns.test_campaigns import staff_client


def at(y, m, d, h=12, mi=0):
    return datetime(y, m, d, h, mi, tzinfo=UTC)


@pytest.fixture
def dunning_app(app_factory):
    # No Stripe here: the decline reason lookup fails fast and the handler carries on.
    return app_factory(STRIPE_API_BASE="http://127.0.0.1:9", STRIPE_MAX_NETWORK_RETRIES=0)


def make_plan(currency="gbp", amount=1000, sub="sub_1") -> int:
    donor = Donor(email=f"{sub}@example.org", full_name="Dunning Donor")
    plan = RecurringPlan(
        donor=donor,
        amount_minor=amount,
        fee_cover_minor=0,
        currency=currency,
        frequency=Frequency.MONTHLY,
        status="active",
        started_at=at(2025, 1, 1),
        latest_invoice_state="paid",
        stripe_subscription_id=sub,
        checkout_completed=True,
    )
    db.session.add(plan)
    db.session.commit()
    return plan.id


class Events:
    def __init__(self):
        self.n = 0

    def __call__(
        self,
        kind,
        invoice,
        when,
        *,
        sub="sub_1",
        amount=1000,
        currency="gbp",
        attempt=1,
        event_id=None,
    ) -> PaymentEvent:
        self.n += 1
        paid = kind == "invoice.paid"
        subject = InvoiceData(
            id=invoice,
            subscription_id=sub,
            customer_id="cus_1",
            status="paid" if paid else "open",
            billing_reason="subscription_cycle",
            amount_due=amount,
            amount_paid=amount if paid else 0,
            currency=currency,
            refs=Refs(),
            created=int(at(2025, 1, 1).timestamp()),
            attempt_count=attempt,
            next_payment_attempt=None,
        )
        return PaymentEvent(
            id=event_id or f"evt_{self.n}", type=kind, created=when, livemode=False, subject=subject
        )


def deliver(*events) -> None:
    for event in events:
        try:
            apply_event(event)
            db.session.commit()
        except DuplicateEvent:
            db.session.rollback()


def history() -> dict[str, tuple]:
    return {
        r.stripe_invoice_id: (r.failed_at, r.attempts, r.recovered_at, r.recovered_amount_minor)
        for r in db.session.scalars(select(PlanPaymentFailure))
    }


FAILED, PAID, ACTION = "invoice.payment_failed", "invoice.paid", "invoice.payment_action_required"


def test_dunning_report_matches_hand_computed_figures(dunning_app, make_user):
    app = dunning_app
    ev = Events()
    with app.app_context():
        make_plan()
        make_plan("inr", 50000, "sub_2")
        deliver(
            # in_1: failed twice (first on 1 Feb), paid on 5 Feb -> recovered, one row
            ev(FAILED, "in_1", at(2026, 2, 1)),
            ev(FAILED, "in_1", at(2026, 2, 3), attempt=2),
            ev(PAID, "in_1", at(2026, 2, 5)),
            # in_2: failed, never paid; the same event delivered twice changes nothing
            ev(FAILED, "in_2", at(2026, 3, 1), event_id="evt_dup"),
            ev(FAILED, "in_2", at(2026, 3, 1), event_id="evt_dup"),
            # in_3: the paid notice arrives before the (earlier-dated) failure -> recovered
            ev(PAID, "in_3", at(2026, 4, 4)),
            ev(FAILED, "in_3", at(2026, 4, 1)),
            # in_4: a failure dated after the payment of the same invoice -> not a failure
            ev(PAID, "in_4", at(2026, 5, 1)),
            ev(FAILED, "in_4", at(2026, 5, 2)),
            # in_8: the same, delivered the other way round -> no row either
            ev(FAILED, "in_8", at(2026, 5, 12)),
            ev(PAID, "in_8", at(2026, 5, 11)),
            # in_5 (inr): failed in the last minute of P, paid after P -> recovered in P
            ev(FAILED, "in_5", at(2026, 12, 31, 23, 59), sub="sub_2", amount=50000, currency="inr"),
            ev(PAID, "in_5", at(2027, 1, 10), sub="sub_2", amount=50000, currency="inr"),
            # in_6: failed in the last minute before P -> P-1, not P
            ev(FAILED, "in_6", at(2025, 12, 31, 23, 59)),
            ev(PAID, "in_6", at(2026, 1, 2)),
            # in_7: the bank asks for authentication: not a failed instalment
            ev(ACTION, "in_7", at(2026, 6, 1)),
            # a plan's paid invoice with no failure leaves no row
            ev(PAID, "in_9", at(2026, 7, 1)),
        )
        rows = history()
        assert set(rows) == {"in_1", "in_2", "in_3", "in_5", "in_6"}
        assert rows["in_1"] == (at(2026, 2, 1), 2, at(2026, 2, 5), 1000)
        assert rows["in_2"] == (at(2026, 3, 1), 1, None, None)
        assert rows["in_3"] == (at(2026, 4, 1), 1, at(2026, 4, 4), 1000)
        report = reports.dunning(date(2026, 1, 1), date(2026, 12, 31))
        # currency, failed, recovered, rate, not recovered, amount due, amount recovered
        assert report.rows == [
            ["gbp", 3, 2, "66.7", 1, 3000, 2000],
            ["inr", 1, 1, "100.0", 0, 50000, 50000],
            ["all", 4, 3, "75.0", 1, "", ""],
        ]
        assert report.chart == [("Failed", 4), ("Recovered", 3), ("Not recovered", 1)]
        assert reports.dunning(date(2025, 12, 1), date(2025, 12, 31)).rows[0][:4] == [
            "gbp",
            1,
            1,
            "100.0",
        ]
        # a one-day range on the boundary: only in_5
        assert reports.dunning(date(2026, 12, 31), date(2026, 12, 31)).rows[0][:3] == ["inr", 1, 1]
        empty = reports.dunning(date(2024, 1, 1), date(2024, 12, 31))
        assert empty.rows == [] and empty.empty_message
    client, _ = staff_client(app, make_user)
    page = client.get("/staff/reports/dunning?date_from=2026-01-01&date_to=2026-12-31")
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and "<svg" in body and "<desc" in body
    assert "Failed 4; Recovered 3; Not recovered 1" in body and "66.7" in body
    text = client.get(
        "/staff/reports/dunning?date_from=2026-01-01&date_to=2026-12-31&format=csv"
    ).get_data(as_text=True)
    assert list(csv.reader(io.StringIO(text)))[1:] == [
        ["gbp", "3", "2", "66.7", "1", "3000", "2000"],
        ["inr", "1", "1", "100.0", "0", "50000", "50000"],
        ["all", "4", "3", "75.0", "1", "", ""],
    ]
    assert "No failed instalments" in client.get(
        "/staff/reports/dunning?date_from=2024-01-01&date_to=2024-12-31"
    ).get_data(as_text=True)


def test_failure_history_is_the_same_in_every_delivery_order(dunning_app):
    """Two failures and a payment of one invoice, in all 6 orders; a payment and a
    later-dated failure, in both orders: the same history each time."""
    with dunning_app.app_context():
        make_plan()
        ev = Events()
        results = set()
        for n, order in enumerate(itertools.permutations(range(3))):
            invoice = f"in_p{n}"
            events = [
                ev(FAILED, invoice, at(2026, 3, 1)),
                ev(FAILED, invoice, at(2026, 3, 4), attempt=2),
                ev(PAID, invoice, at(2026, 3, 9)),
            ]
            deliver(*(events[i] for i in order), *(events[i] for i in order))  # and again
            results.add(history()[invoice])
        assert results == {(at(2026, 3, 1), 2, at(2026, 3, 9), 1000)}
        for invoice, order in (("in_a", (0, 1)), ("in_b", (1, 0))):
            events = [ev(PAID, invoice, at(2026, 4, 1)), ev(FAILED, invoice, at(2026, 4, 2))]
            deliver(*(events[i] for i in order))
            assert invoice not in history()
        (row,) = db.session.scalars(
            select(PlanPaymentFailure).where(PlanPaymentFailure.stripe_invoice_id == "in_p0")
        )
        assert row.reason_code  # the decline reason (here "unknown": no Stripe to ask)
