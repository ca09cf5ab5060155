"""Security test plan group 10.1-10.4, 10.6, 10.7: the webhook, with real events from the
simulator, signed as Stripe signs them."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from datetime import timedelta

import stripe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text, update

from donorhub.database import utcnow
from donorhub.donations.models import Donation, DonationKind, DonationStatus, Donor
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from donorhub.payments.models import EventState, StripeEvent
from tests.helpers import HANG_GUARD_SECONDS, join_all
from tests.metrics import METRICS
from tests.payments.stripe_helpers import (
    WEBHOOK_SECRET,
    apply_stored_events,
    checkout_url,
    deliver,
    give,
    post_event,
    sign,
)


def paid_one_off(app, client, sim, **form) -> tuple[Donation, list[dict]]:
    """A gift paid at the simulator's checkout; its events are stored, not delivered."""
    url = checkout_url(give(client, **form))
    sim.pay(url)
    with app.app_context():
        donation = db.session.scalar(select(Donation).order_by(Donation.id.desc()))
        db.session.expunge(donation)
    return donation, sim.events()


def counts(app) -> dict:
    with app.app_context():
        return {
            "events": db.session.scalar(select(func.count()).select_from(StripeEvent)),
            "paid": db.session.scalar(
                select(func.count())
                .select_from(Donation)
                .where(Donation.status == DonationStatus.PAID)
            ),
            "receipts": db.session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.template == "donations/receipt")
            ),
        }


def completed(events: list[dict]) -> dict:
    return next(e for e in events if e["type"] == "checkout.session.completed")


# 10.1 -----------------------------------------------------------------------------------------


def test_webhook_signature_cases(pay_app, pay_client, sim):
    _donation, events = paid_one_off(pay_app, pay_client, sim)
    event = completed(events)
    body = json.dumps(event, indent=2).encode()
    now = int(time.time())
    good = sign(body)
    valid_v1 = good.split("v1=")[1]
    other_v1 = stripe.WebhookSignature.generate_signature_header(
        body.decode(), "whsec_an_old_secret", now
    ).split("v1=")[1]
    # Headers are made at send time: on a loaded machine a second can pass between cases,
    # and the header carries whole seconds, hence +305 s for "more than 5 minutes ahead".
    cases = {
        "wrong secret": (body, lambda: sign(body, secret="whsec_not_ours")),
        "no header": (body, lambda: None),
        "re-serialised body": (json.dumps(event, separators=(",", ":")).encode(), lambda: good),
        "timestamp -301 s": (body, lambda: sign(body, timestamp=int(time.time()) - 301)),
        "timestamp +305 s": (body, lambda: sign(body, timestamp=int(time.time()) + 305)),
        "garbage header": (body, lambda: "t=abc,v1=zzz"),
        "valid": (body, lambda: good),
        "rotation: two v1, one valid": (body, lambda: f"t={now},v1={other_v1},v1={valid_v1}"),
    }
    unexpected = []
    for name, (payload, make_header) in cases.items():
        header = make_header()
        before = counts(pay_app)
        headers = {"Stripe-Signature": header} if header else {}
        response = pay_client.post(
            "/stripe/webhook", data=payload, content_type="application/json", headers=headers
        )
        should_accept = name.startswith(("valid", "rotation"))
        if should_accept != (response.status_code == 200):
            unexpected.append((name, response.status_code))
        if not should_accept and counts(pay_app) != before:
            unexpected.append((name, "changed the database"))
    assert unexpected == []
    apply_stored_events(pay_app)  # the worker, after the deliveries
    after = counts(pay_app)
    assert after["paid"] == 1 and after["events"] == 1
    METRICS.report("10.1 webhook signature cases / unexpected accepts", f"{len(cases)} / 0")


# 10.2 -----------------------------------------------------------------------------------------


def test_webhook_duplicate_delivery_sequential_and_concurrent(pay_app, pay_client, sim, backend):
    first, _ = paid_one_off(pay_app, pay_client, sim, email="first@example.org")
    events = sim.events()
    event = next(
        e
        for e in events
        if e["type"] == "checkout.session.completed"
        and e["data"]["object"]["metadata"]["donation"] == first.public_id
    )
    codes = [post_event(pay_client, event).status_code for _ in range(10)]
    assert codes == [200] * 10
    second, _ = paid_one_off(pay_app, pay_client, sim, email="second@example.org")
    event2 = next(
        e
        for e in sim.events()
        if e["type"] == "checkout.session.completed"
        and e["data"]["object"]["metadata"]["donation"] == second.public_id
    )
    payload = json.dumps(event2).encode()
    barrier = threading.Barrier(8, timeout=HANG_GUARD_SECONDS)
    results: list[int] = []
    errors: list[str] = []

    def deliver_once():
        try:
            client = pay_app.test_client()
            barrier.wait(timeout=HANG_GUARD_SECONDS)
            for _ in range(2):  # 16 deliveries from 8 threads
                response = client.post(
                    "/stripe/webhook",
                    data=payload,
                    content_type="application/json",
                    headers={"Stripe-Signature": sign(payload)},
                )
                results.append(response.status_code)
        except Exception as error:  # noqa: BLE001 - reported below
            barrier.abort()  # the others stop waiting at once
            errors.append(repr(error))

    threads = [threading.Thread(target=deliver_once) for _ in range(8)]
    for thread in threads:
        thread.start()
    join_all(threads)
    assert errors == []
    assert results == [200] * 16
    apply_stored_events(pay_app)  # the worker, after the deliveries
    with pay_app.app_context():
        for donation, event_id in ((first, event["id"]), (second, event2["id"])):
            row = db.session.get(Donation, donation.id)
            assert row.status is DonationStatus.PAID
            assert (
                db.session.scalar(
                    select(func.count())
                    .select_from(OutboxMessage)
                    .where(
                        OutboxMessage.template == "donations/receipt",
                        OutboxMessage.recipient == row.donor.email,
                    )
                )
                == 1
            )
            assert (
                db.session.scalar(
                    select(func.count())
                    .select_from(StripeEvent)
                    .where(StripeEvent.event_id == event_id)
                )
                == 1
            )


# 10.3 -----------------------------------------------------------------------------------------


class EventSet:
    """One real paid-and-refunded gift's events, re-labelled for each Hypothesis example."""

    TYPES = ("checkout.session.completed", "payment_intent.succeeded", "charge.refunded")

    def __init__(self, donation: Donation, events: list[dict]):
        self.template = {e["type"]: json.dumps(e) for e in events if e["type"] in self.TYPES}
        assert set(self.template) == set(self.TYPES)
        self.public_id = donation.public_id
        blob = " ".join(self.template.values())
        pattern = r'"((?:cs|pi|ch|evt|py|re|cus|inpay|req)_[A-Za-z0-9_]+)"'
        self.ids = sorted(set(re.findall(pattern, blob)))

    def fresh(self, app, donation_template: Donation) -> tuple[int, dict[str, dict]]:
        """A new pending gift, and the three events rewritten to point at it."""
        with app.app_context():
            donor = db.session.get(Donor, donation_template.donor_id)
            row = Donation(
                donor=donor,
                kind=DonationKind.ONCE,
                amount_minor=donation_template.amount_minor,
                currency=donation_template.currency,
            )
            db.session.add(row)
            db.session.commit()
            row_id, public_id = row.id, row.public_id
        suffix = uuid.uuid4().hex[:8]
        out = {}
        for kind, blob in self.template.items():
            blob = blob.replace(self.public_id, public_id)
            for old in self.ids:
                blob = blob.replace(f'"{old}"', f'"{old}{suffix}"')
            out[kind] = json.loads(blob)
        return row_id, out


def test_webhook_out_of_order_with_duplicates(pay_app, pay_client, sim, backend):
    donation, _ = paid_one_off(pay_app, pay_client, sim)
    with pay_app.app_context():
        from donorhub.payments.gateway import get_gateway

        intent = db.session.get(Donation, donation.id)
    # Refund at Stripe (through the real library) so a real charge.refunded exists.
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": sim.base_url})
    session = client.v1.checkout.sessions.retrieve(completed(sim.events())["data"]["object"]["id"])
    client.v1.refunds.create({"payment_intent": session.payment_intent})
    del intent, get_gateway
    event_set = EventSet(donation, sim.events())
    stats = {"examples": 0}

    @settings(
        max_examples=40 if backend == "sqlite" else 25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(with_refund=st.booleans(), data=st.data())
    def check(with_refund, data):
        kinds = list(EventSet.TYPES if with_refund else EventSet.TYPES[:2])
        order = data.draw(st.permutations(kinds))
        duplicates = data.draw(st.lists(st.sampled_from(kinds), max_size=3))
        sequence = list(order)
        for kind in duplicates:
            sequence.insert(data.draw(st.integers(0, len(sequence))), kind)
        row_id, events = event_set.fresh(pay_app, donation)
        codes = deliver(pay_client, [events[k] for k in sequence])
        with pay_app.app_context():
            row = db.session.get(Donation, row_id)
            expected = DonationStatus.REFUNDED if with_refund else DonationStatus.PAID
            receipts = 1 if row.receipt else 0
            # The rule: one receipt once the money has arrived and is not all refunded. With
            # a full refund, that is only when a payment event came before the refund.
            paid_first = not with_refund or sequence.index("charge.refunded") > min(
                sequence.index(k) for k in EventSet.TYPES[:2]
            )
            ok = (
                codes == [200] * len(sequence)
                and row.status is expected
                and receipts == (1 if paid_first else 0)
                and row.amount_refunded_minor == (row.amount_minor if with_refund else 0)
            )
        stats["examples"] += 1
        assert ok, (sequence, codes, row.status)

    check()
    METRICS.report(
        f"10.3 event orders tried with duplicates ({backend}), each asserted to "
        "end in the right state",
        stats["examples"],
    )


# 10.4 -----------------------------------------------------------------------------------------


def _break_outbox(backend: str, on: bool) -> None:
    if backend == "sqlite":
        statements = (
            [
                "CREATE TRIGGER injected_failure BEFORE INSERT ON outbox_messages "
                "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
            ]
            if on
            else ["DROP TRIGGER injected_failure"]
        )
    else:
        statements = (
            [
                "CREATE FUNCTION injected_failure() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER injected_failure BEFORE INSERT ON outbox_messages "
                "FOR EACH ROW EXECUTE FUNCTION injected_failure()",
            ]
            if on
            else [
                "DROP TRIGGER injected_failure ON outbox_messages",
                "DROP FUNCTION injected_failure()",
            ]
        )
    for statement in statements:
        db.session.execute(text(statement))
    db.session.commit()


def test_webhook_handler_failure_is_retried_with_backoff(pay_app, pay_client, sim, backend):
    """The event is stored and answered 200 whatever its handler does; the worker's failed
    try rolls back its effect only, and the event waits for its backoff, then applies once."""
    donation, events = paid_one_off(pay_app, pay_client, sim)
    event = completed(events)
    with pay_app.app_context():
        # The receipt's outbox insert fails *after* the donation was marked paid.
        _break_outbox(backend, True)
    try:
        assert post_event(pay_client, event).status_code == 200  # stored; the try fails
        with pay_app.app_context():
            row = db.session.scalar(select(StripeEvent))
            assert (row.state, row.attempts, row.last_error) == (
                EventState.RETRYING,
                1,
                # The class only (the trigger's RAISE is a ProgrammingError on PostgreSQL).
                {"sqlite": "IntegrityError", "postgresql": "ProgrammingError"}[backend],
            )
            assert row.next_attempt_at > utcnow() + timedelta(seconds=25)  # 30 s backoff
            assert row.payload is not None and row.outcome is None
            assert db.session.get(Donation, donation.id).status is DonationStatus.PENDING
        assert apply_stored_events(pay_app).claimed == 0  # not due yet
    finally:
        with pay_app.app_context():
            _break_outbox(backend, False)
    assert post_event(pay_client, event).status_code == 200  # Stripe's retry: a duplicate
    assert counts(pay_app)["paid"] == 0
    with pay_app.app_context():  # the backoff has passed
        db.session.execute(update(StripeEvent).values(next_attempt_at=utcnow()))
        db.session.commit()
    assert apply_stored_events(pay_app).applied == 1
    assert apply_stored_events(pay_app).claimed == 0
    after = counts(pay_app)
    assert (after["events"], after["paid"], after["receipts"]) == (1, 1, 1)
    with pay_app.app_context():
        row = db.session.scalar(select(StripeEvent))
        assert (row.state, row.outcome, row.payload, row.attempts) == (
            EventState.APPLIED,
            "applied",
            None,
            1,
        )


# 10.6 -----------------------------------------------------------------------------------------


def test_tampered_amount_or_currency_is_flagged_not_fulfilled(pay_app, pay_client, sim):
    tampered = 0
    accepted = 0
    for change in ({"amount_total": 100}, {"currency": "usd"}):
        donation, events = paid_one_off(pay_app, pay_client, sim)
        event = json.loads(
            json.dumps(
                completed(
                    [
                        e
                        for e in events
                        if e["data"]["object"].get("metadata", {}).get("donation")
                        == donation.public_id
                    ]
                )
            )
        )
        event["data"]["object"].update(change)
        assert post_event(pay_client, event).status_code == 200
        tampered += 1
        with pay_app.app_context():
            row = db.session.get(Donation, donation.id)
            assert row.status is DonationStatus.NEEDS_REVIEW
            assert row.receipt is None and row.review_reason
            accepted += row.status is DonationStatus.PAID
    # The browser cannot choose the amount either: an "amount" field is refused.
    response = give(pay_client, amount="1")
    assert response.status_code == 422
    # A custom amount is turned into minor units by the server, and that is what Stripe gets.
    url = checkout_url(give(pay_client, amount_choice="custom", custom_amount="12.34"))
    session_id = re.search(r"cs_[A-Za-z0-9_]+", url).group(0)
    session = sim.api(f"/v1/checkout/sessions/{session_id}")
    assert (session["amount_total"], session["currency"]) == (1234, "gbp")
    assert set(session["metadata"]) == {"donation"}
    assert accepted == 0
    staff_page_reasons = counts(pay_app)
    assert staff_page_reasons["receipts"] == 0
    METRICS.report(
        "10.6 tamper attempts (webhook amount, currency, form field) / accepted",
        f"{tampered + 1} / 0",
    )


# 10.7 -----------------------------------------------------------------------------------------


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value *= 2
            value -= 9 if value > 9 else 0
        total += value
    return total % 10 == 0


def test_no_card_data_stored(pay_app, pay_client, sim, log_guard):
    _donation, events = paid_one_off(pay_app, pay_client, sim)
    deliver(pay_client, events)
    checkout_url(give(pay_client, frequency="monthly"))
    # A card number stands on its own: a run of digits inside a longer token (a hex digest, a
    # random id) is part of that token, and one in ten such runs passes Luhn by chance.
    pan = re.compile(r"(?<![0-9A-Za-z])\d{13,19}(?![0-9A-Za-z])")
    columns = 0
    found: list[str] = []
    with pay_app.app_context():
        for table in db.metadata.sorted_tables:
            rows = db.session.execute(text(f"SELECT * FROM {table.name}")).all()
            columns += len(table.columns)
            for row in rows:
                for value in row:
                    found += [f"{table.name}: {c}" for c in pan.findall(str(value)) if _luhn(c)]
    for record in log_guard.records:
        found += [f"log: {c}" for c in pan.findall(record) if _luhn(c)]
    assert "4242424242424242" not in json.dumps(events)
    assert found == []
    matches = len(found)
    METRICS.report("10.7 columns scanned / card-number matches", f"{columns} / {matches}")


def test_unknown_and_foreign_events_are_acknowledged(pay_app, pay_client, sim):
    payload = {
        "id": "evt_foreign_1",
        "object": "event",
        "type": "customer.created",
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": {"id": "cus_1", "object": "customer"}},
    }
    assert post_event(pay_client, payload).status_code == 200
    foreign = {
        "id": "evt_foreign_2",
        "object": "event",
        "type": "charge.refunded",
        "created": int(time.time()),
        "livemode": False,
        "data": {
            "object": {
                "id": "ch_x",
                "object": "charge",
                "amount": 100,
                "amount_refunded": 100,
                "currency": "gbp",
                "status": "succeeded",
                "metadata": {},
                "payment_intent": None,
            }
        },
    }
    assert post_event(pay_client, foreign).status_code == 200
    with pay_app.app_context():
        outcomes = dict(db.session.execute(select(StripeEvent.event_id, StripeEvent.outcome)).all())
    assert outcomes == {"evt_foreign_1": "ignored", "evt_foreign_2": "ignored"}
    assert WEBHOOK_SECRET not in str(outcomes)
