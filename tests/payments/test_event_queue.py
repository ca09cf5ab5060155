"""The webhook stores first and a worker applies: duplicates stored once, payloads cleared,
two workers never apply one event, NOTIFY wakes the worker, dead letters for staff."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import func, select, update

from donorhub.database import utcnow
from donorhub.donations.models import Donation, DonationStatus
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from donorhub.payments.models import EventState, StripeEvent
from tests.helpers import HANG_GUARD_SECONDS, barrier, join_all, sign_in, wait_for
from tests.payments.stripe_helpers import (
    apply_stored_events,
    checkout_url,
    csrf_from,
    give,
    post_event,
    sign,
)
from tests.payments.test_webhooks import _break_outbox


def _paid_gift(app, client, sim, email: str = "queue@example.org") -> tuple[int, dict]:
    """A gift paid at the simulator; its checkout.session.completed event, not delivered."""
    url = checkout_url(give(client, email=email))
    sim.pay(url)
    with app.app_context():
        gift_id, public_id = db.session.execute(
            select(Donation.id, Donation.public_id).order_by(Donation.id.desc()).limit(1)
        ).one()
    event = next(
        e
        for e in sim.events(("checkout.session.completed",))
        if e["data"]["object"]["metadata"]["donation"] == public_id
    )
    return gift_id, event


def _status(app, gift_id: int) -> DonationStatus:
    with app.app_context():
        status = db.session.get_one(Donation, gift_id).status
        db.session.remove()
        return status


def _event_row(app, event_id: str) -> StripeEvent:
    with app.app_context():
        row = db.session.scalar(select(StripeEvent).where(StripeEvent.event_id == event_id))
        db.session.expunge(row)
        return row


def test_stored_before_the_answer_and_the_payload_cleared_once_applied(pay_app, pay_client, sim):
    gift_id, event = _paid_gift(pay_app, pay_client, sim)
    response = post_event(pay_client, event, apply=False)
    assert (response.status_code, response.get_data(as_text=True)) == (200, "stored\n")
    row = _event_row(pay_app, event["id"])
    assert (row.state, row.attempts, row.outcome) == (EventState.RECEIVED, 0, None)
    assert json.loads(row.payload)["id"] == event["id"]  # the verified payload, as sent
    assert _status(pay_app, gift_id) is DonationStatus.PENDING  # no handler ran
    report = apply_stored_events(pay_app)
    assert (report.applied, report.failed) == (1, 0)
    row = _event_row(pay_app, event["id"])
    assert (row.state, row.outcome, row.payload, row.next_attempt_at) == (
        EventState.APPLIED,
        "applied",
        None,
        None,
    )
    assert _status(pay_app, gift_id) is DonationStatus.PAID
    again = post_event(pay_client, event)
    assert (again.status_code, again.get_data(as_text=True)) == (200, "duplicate\n")
    assert _event_row(pay_app, event["id"]).payload is None  # a duplicate stores nothing


def test_concurrent_duplicate_deliveries_are_stored_once_and_applied_once(
    pay_app, pay_client, sim, backend
):
    gift_id, event = _paid_gift(pay_app, pay_client, sim)
    payload = json.dumps(event).encode()
    start = barrier(8)
    answers: list[str] = []
    errors: list[str] = []

    def deliver():
        try:
            client = pay_app.test_client()
            start.wait(timeout=HANG_GUARD_SECONDS)
            response = client.post(
                "/stripe/webhook",
                data=payload,
                content_type="application/json",
                headers={"Stripe-Signature": sign(payload)},
            )
            answers.append(f"{response.status_code} {response.get_data(as_text=True).strip()}")
        except Exception as error:  # noqa: BLE001 - reported below
            start.abort()
            errors.append(repr(error))

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    join_all(threads)
    assert errors == []
    assert sorted(answers) == ["200 duplicate"] * 7 + ["200 stored"]
    with pay_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == 1
    assert apply_stored_events(pay_app).applied == 1
    assert apply_stored_events(pay_app).claimed == 0
    assert _status(pay_app, gift_id) is DonationStatus.PAID
    with pay_app.app_context():
        receipts = db.session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.template == "donations/receipt")
        )
    assert receipts == 1


def test_a_failing_event_rolls_back_only_itself_in_its_batch(pay_app, pay_client, sim, backend):
    """Two events in one batch: the one whose handler fails is rolled back (savepoint) and
    retried later; the other is applied and committed."""
    first_id, first = _paid_gift(pay_app, pay_client, sim, email="first@example.org")
    second_id, second = _paid_gift(pay_app, pay_client, sim, email="second@example.org")
    with pay_app.app_context():
        # The second gift's receipt cannot be written; the first's can.
        if backend == "sqlite":
            db.session.execute(
                db.text(
                    "CREATE TRIGGER one_fails BEFORE INSERT ON outbox_messages "
                    "WHEN NEW.recipient = 'second@example.org' "
                    "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
                )
            )
        else:
            db.session.execute(
                db.text(
                    "CREATE FUNCTION one_fails() RETURNS trigger AS $$ BEGIN "
                    "IF NEW.recipient = 'second@example.org' THEN "
                    "RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$ "
                    "LANGUAGE plpgsql"
                )
            )
            db.session.execute(
                db.text(
                    "CREATE TRIGGER one_fails BEFORE INSERT ON outbox_messages "
                    "FOR EACH ROW EXECUTE FUNCTION one_fails()"
                )
            )
        db.session.commit()
    try:
        for event in (first, second):
            assert post_event(pay_client, event, apply=False).status_code == 200
        report = apply_stored_events(pay_app)
    finally:
        with pay_app.app_context():
            db.session.execute(
                db.text(
                    "DROP TRIGGER one_fails"
                    if backend == "sqlite"
                    else "DROP TRIGGER one_fails ON outbox_messages"
                )
            )
            if backend != "sqlite":
                db.session.execute(db.text("DROP FUNCTION one_fails()"))
            db.session.commit()
    assert (report.applied, report.failed) == (1, 1)
    assert _status(pay_app, first_id) is DonationStatus.PAID
    assert _status(pay_app, second_id) is DonationStatus.PENDING
    failed = _event_row(pay_app, second["id"])
    assert (failed.state, failed.attempts) == (EventState.RETRYING, 1)
    assert failed.payload is not None  # kept until it applies


def test_a_dead_letter_is_shown_to_staff_and_retried_by_them(
    app_factory, sim, backend, make_user, log_guard
):
    app = app_factory(
        STRIPE_API_BASE=sim.base_url, CSP_FORM_ACTION=[sim.base_url], WEBHOOK_MAX_ATTEMPTS=2
    )
    client = app.test_client()
    gift_id, event = _paid_gift(app, client, sim)
    with app.app_context():
        _break_outbox(backend, True)
    assert post_event(client, event).status_code == 200  # first try fails
    with app.app_context():
        db.session.execute(update(StripeEvent).values(next_attempt_at=utcnow()))
        db.session.commit()
    assert apply_stored_events(app).dead == 1  # second try: a dead letter
    row = _event_row(app, event["id"])
    assert (row.state, row.attempts, row.next_attempt_at) == (EventState.DEAD, 2, None)
    assert row.payload is not None  # kept until resolved
    assert apply_stored_events(app).claimed == 0  # the worker leaves it alone

    # A signed-in staff member with the role sees it: type, times, error class, no payload.
    fundraiser = make_user(roles=("fundraiser",))
    staff_client = app.test_client()
    sign_in(staff_client, fundraiser.email, totp_secret=fundraiser.totp_secret)
    page = staff_client.get("/staff/stripe-events")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert event["id"] in html and "checkout.session.completed" in html
    assert {"sqlite": "IntegrityError", "postgresql": "ProgrammingError"}[backend] in html
    assert "queue@example.org" not in html  # the payload is never shown

    # Retrying needs the CSRF token and the role.
    retry = f"/staff/stripe-events/{row.id}/retry"
    assert staff_client.post(retry).status_code == 400  # no CSRF token
    donor_client = app.test_client()
    donor = make_user()
    sign_in(donor_client, donor.email)
    token = csrf_from(donor_client, "/account/")
    assert donor_client.post(retry, data={"csrf_token": token}).status_code in (403, 404)
    assert _event_row(app, event["id"]).state is EventState.DEAD

    with app.app_context():
        _break_outbox(backend, False)
    token = csrf_from(staff_client, "/staff/stripe-events")
    answer = staff_client.post(retry, data={"csrf_token": token})
    assert answer.status_code == 303
    row = _event_row(app, event["id"])
    assert (row.state, row.attempts) == (EventState.RETRYING, 0)
    assert apply_stored_events(app).applied == 1
    assert _status(app, gift_id) is DonationStatus.PAID
    assert _event_row(app, event["id"]).payload is None
    # Retrying it again is refused with a message, and changes nothing.
    token = csrf_from(staff_client, "/staff/stripe-events")
    again = staff_client.post(retry, data={"csrf_token": token})
    assert again.status_code == 303
    assert "not a dead letter" in staff_client.get("/staff/stripe-events").get_data(as_text=True)


def test_two_workers_on_postgresql_never_apply_one_event(pay_app, pay_client, sim, backend):
    """Two workers claim at the same time: each takes an event the other does not hold
    (FOR UPDATE SKIP LOCKED), both handlers run at once (a barrier both must reach), and
    each event is applied exactly once."""
    if backend != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite has one writer at a time")
    from donorhub.payments import webhooks

    gifts = [_paid_gift(pay_app, pay_client, sim, email=f"w{n}@example.org") for n in range(2)]
    for _gift, event in gifts:
        assert post_event(pay_client, event, apply=False).status_code == 200
    both_inside = barrier(2)
    original = webhooks.HANDLERS["checkout.session.completed"]
    handled: list[str] = []

    def handler(event):
        handled.append(event.id)
        both_inside.wait(
            timeout=HANG_GUARD_SECONDS
        )  # each worker holds its own event here, at the same time
        return original(event)

    reports: list = []
    errors: list[str] = []

    def worker():
        try:
            with pay_app.app_context():
                reports.append(webhooks.apply_due_events(1))
                db.session.remove()
        except Exception as error:  # noqa: BLE001 - reported below
            both_inside.abort()
            errors.append(repr(error))

    webhooks.HANDLERS["checkout.session.completed"] = handler
    try:
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        join_all(threads)
    finally:
        webhooks.HANDLERS["checkout.session.completed"] = original
    assert errors == []
    assert sorted(handled) == sorted(e["id"] for _, e in gifts)  # one each, none twice
    assert [r.applied for r in reports] == [1, 1]
    assert apply_stored_events(pay_app).claimed == 0
    for gift_id, _ in gifts:
        assert _status(pay_app, gift_id) is DonationStatus.PAID


def test_a_second_worker_skips_the_events_the_first_holds(pay_app, pay_client, sim, backend):
    if backend != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's")
    from donorhub.payments import webhooks

    gift_id, event = _paid_gift(pay_app, pay_client, sim)
    assert post_event(pay_client, event, apply=False).status_code == 200
    holding, second_done = threading.Event(), threading.Event()
    original = webhooks.HANDLERS["checkout.session.completed"]
    calls: list[str] = []

    def handler(event):
        calls.append(event.id)
        holding.set()
        wait_for(second_done, "the second worker's claim")
        return original(event)

    results: dict[str, object] = {}

    def first():
        with pay_app.app_context():
            results["first"] = webhooks.apply_due_events(10)
            db.session.remove()

    webhooks.HANDLERS["checkout.session.completed"] = handler
    try:
        thread = threading.Thread(target=first)
        thread.start()
        wait_for(holding, "the first worker holding the event")
        with pay_app.app_context():
            results["second"] = webhooks.apply_due_events(10)  # returns at once: skipped
            db.session.remove()
        second_done.set()
        thread.join(timeout=HANG_GUARD_SECONDS)
    finally:
        webhooks.HANDLERS["checkout.session.completed"] = original
    assert results["second"].claimed == 0
    assert results["first"].applied == 1
    assert calls == [event["id"]]
    assert _status(pay_app, gift_id) is DonationStatus.PAID


def test_notify_wakes_the_worker_on_postgresql(app_factory, sim, backend):
    """The worker waits on LISTEN with a poll interval far beyond the hang guard: the event
    can only be applied because the webhook's commit sent a NOTIFY."""
    if backend != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; SQLite polls")
    from donorhub.payments import jobs

    app = app_factory(
        STRIPE_API_BASE=sim.base_url,
        CSP_FORM_ACTION=[sim.base_url],
        WEBHOOK_WORKER_POLL_SECONDS=HANG_GUARD_SECONDS * 10,
    )
    client = app.test_client()
    gift_id, event = _paid_gift(app, client, sim)
    idle, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=jobs.run_event_worker, args=(app, stop), kwargs={"idle": idle})
    thread.start()
    try:
        wait_for(idle, "the worker's first drain")  # listening, nothing due
        idle.clear()
        assert post_event(client, event, apply=False).status_code == 200
        wait_for(idle, "the worker woken by NOTIFY")
        assert _status(app, gift_id) is DonationStatus.PAID
    finally:
        stop.set()
        with app.app_context():  # wake it so that it sees the stop at once
            db.session.execute(db.text("NOTIFY stripe_events"))
            db.session.commit()
        thread.join(timeout=HANG_GUARD_SECONDS)
    assert not thread.is_alive()


def test_the_worker_polls_on_sqlite(app_factory, sim, backend):
    if backend != "sqlite":
        pytest.skip("PostgreSQL is woken by NOTIFY (the test above)")
    from donorhub.payments import jobs

    app = app_factory(
        STRIPE_API_BASE=sim.base_url,
        CSP_FORM_ACTION=[sim.base_url],
        WEBHOOK_WORKER_POLL_SECONDS=0.05,
    )
    client = app.test_client()
    gift_id, event = _paid_gift(app, client, sim)
    idle, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=jobs.run_event_worker, args=(app, stop), kwargs={"idle": idle})
    thread.start()
    try:
        wait_for(idle, "the worker's first drain")
        assert post_event(client, event, apply=False).status_code == 200
        idle.clear()
        wait_for(idle, "the worker's next poll")
        idle.clear()
        wait_for(idle, "one more poll, after the event was surely seen")
        assert _status(app, gift_id) is DonationStatus.PAID
    finally:
        stop.set()
        thread.join(timeout=HANG_GUARD_SECONDS)


def test_the_thank_you_page_and_the_donor_portal_show_the_gift_once_applied(
    pay_app, pay_client, sim, make_user
):
    """Stored is not confirmed: the thank-you page says "confirming" (and its status answer
    says so) until the worker applies the event; then the page, its status answer and the
    donor's own gifts page show the gift paid at once."""
    donor = make_user("portal@example.org")
    sign_in(pay_client, donor.email)
    url = checkout_url(give(pay_client, email=donor.email, full_name="Portal Donor"))
    status, thank_you = sim.pay(url)
    assert status in (302, 303) and "/donate/thank-you" in thank_you
    path = thank_you.split("://", 1)[-1].split("/", 1)[-1]
    page = pay_client.get("/" + path).get_data(as_text=True)
    assert "We are confirming" in page and "data-confirm-status" in page
    status_url = "/donate/thank-you/status?" + page.split("thank-you/status?", 1)[1].split('"')[0]
    status_url = status_url.replace("&amp;", "&")
    assert pay_client.get(status_url).get_json() == {"confirmed": False}
    (event,) = sim.events(("checkout.session.completed",))
    assert post_event(pay_client, event, apply=False).status_code == 200
    assert pay_client.get(status_url).get_json() == {"confirmed": False}  # stored only
    assert "£25.00" not in pay_client.get("/donate/history").get_data(as_text=True)

    assert apply_stored_events(pay_app).applied == 1  # the worker's next step
    assert pay_client.get(status_url).get_json() == {"confirmed": True}
    assert "is confirmed" in pay_client.get("/" + path).get_data(as_text=True)
    history = pay_client.get("/donate/history").get_data(as_text=True)
    assert "£25.00" in history and "Paid" in history
