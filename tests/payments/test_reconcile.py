"""Reconciliation: events the webhook never received are stored from /v1/events, once, and
the event worker applies them; dead letters are reported."""

from __future__ import annotations

from sqlalchemy import func, select

from donorhub.donations.models import Donation, DonationStatus, PlanStatus, RecurringPlan
from donorhub.extensions import db
from donorhub.payments.models import EventState, StripeEvent
from tests.metrics import METRICS
from tests.payments.stripe_helpers import apply_stored_events, checkout_url, deliver, give


def test_reconcile_applies_missed_events_idempotently(pay_app, pay_client, sim):
    sim.pay(checkout_url(give(pay_client, email="once@example.org")))
    sim.pay(checkout_url(give(pay_client, frequency="monthly", email="monthly@example.org")))
    events = sim.events()
    # The webhook got only the first half; the rest were "lost".
    deliver(pay_client, events[: len(events) // 2])
    runner = pay_app.test_cli_runner()
    result = runner.invoke(args=["payments", "reconcile", "--since", "2020-01-01"])
    assert result.exit_code == 0, result.output
    assert f"{len(events)} listed" in result.output
    assert f"{len(events) - len(events) // 2} stored for the worker" in result.output
    apply_stored_events(pay_app)  # the event worker
    with pay_app.app_context():
        assert (
            db.session.scalar(select(Donation.status).where(Donation.plan_id.is_(None)))
            is DonationStatus.PAID
        )
        assert db.session.scalar(select(RecurringPlan.status)) is PlanStatus.ACTIVE
        assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == len(events)
    again = runner.invoke(args=["payments", "reconcile"])
    assert again.exit_code == 0 and "0 stored" in again.output, again.output
    assert apply_stored_events(pay_app).claimed == 0
    with pay_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Donation)) == 2
    METRICS.report("reconciliation: events listed / applied twice", f"{len(events)} / 0")


def test_reconcile_job_and_simulate_renewal_command(pay_app, pay_client, sim):
    from donorhub.jobs.registry import find_job, run_job

    sim.pay(checkout_url(give(pay_client, frequency="monthly")))
    with pay_app.app_context():
        job = find_job("reconcile_stripe")
    assert run_job(pay_app, job)
    apply_stored_events(pay_app)
    with pay_app.app_context():
        plan = db.session.scalar(select(RecurringPlan))
        assert plan.status is PlanStatus.ACTIVE
        plan_id = plan.id
    result = pay_app.test_cli_runner().invoke(
        args=["payments", "simulate-renewal", str(plan_id), "--fail"]
    )
    assert result.exit_code == 0, result.output
    assert run_job(pay_app, job)
    apply_stored_events(pay_app)
    with pay_app.app_context():
        assert db.session.get(RecurringPlan, plan_id).status is PlanStatus.PAST_DUE


def test_reconcile_default_path_covers_a_gap_before_a_newer_event(pay_app, pay_client, sim):
    """The webhook was down when a gift was paid; when it came back one
    fresh event arrived live, 20 minutes later. The scheduled run (no --since) must still find
    the gap, whatever the newest event we hold."""
    from datetime import timedelta

    from donorhub.database import utcnow

    sim.pay(checkout_url(give(pay_client)))  # its events are never delivered
    with pay_app.app_context():
        db.session.add(
            StripeEvent(
                event_id="evt_live_after_outage",
                type="customer.created",
                stripe_created_at=utcnow() + timedelta(minutes=20),
                source="webhook",
                outcome="ignored",
                state=EventState.APPLIED,
                next_attempt_at=None,
            )
        )
        db.session.commit()
    result = pay_app.test_cli_runner().invoke(args=["payments", "reconcile"])
    assert result.exit_code == 0, result.output
    apply_stored_events(pay_app)
    with pay_app.app_context():
        assert db.session.scalar(select(Donation.status)) is DonationStatus.PAID


def test_an_event_reconciliation_stored_is_retried_then_reported_as_a_dead_letter(
    app_factory, pay_client, sim, backend
):
    """Reconciliation stores a missed event like the webhook; when its handler keeps failing
    the worker retries it and then leaves it as a dead letter, which the next
    reconciliation reports (and does not store again); once fixed and retried, it applies."""
    from sqlalchemy import update

    from donorhub.database import utcnow
    from donorhub.payments import event_queue
    from tests.payments.test_webhooks import _break_outbox

    pay_app = app_factory(
        STRIPE_API_BASE=sim.base_url, CSP_FORM_ACTION=[sim.base_url], WEBHOOK_MAX_ATTEMPTS=2
    )
    pay_client = pay_app.test_client()
    sim.pay(checkout_url(give(pay_client)))
    with pay_app.app_context():
        _break_outbox(backend, True)  # the receipt cannot be written: the event fails
    runner = pay_app.test_cli_runner()
    stored = runner.invoke(args=["payments", "reconcile"])
    assert stored.exit_code == 0, stored.output
    for _try in range(2):
        assert apply_stored_events(pay_app).failed >= 1
        with pay_app.app_context():  # the backoff has passed
            db.session.execute(update(StripeEvent).values(next_attempt_at=utcnow()))
            db.session.commit()
    assert apply_stored_events(pay_app).claimed == 0  # only dead letters are left
    again = runner.invoke(args=["payments", "reconcile"])
    assert again.exit_code == 0, again.output
    # Both payment events (checkout completed, payment intent succeeded) write the receipt.
    assert "0 stored" in again.output and " 2 dead letters" in again.output, again.output
    with pay_app.app_context():
        assert db.session.scalar(select(Donation.status)) is DonationStatus.PENDING
        dead = event_queue.dead_letters()
        assert sorted(e.type for e in dead) == [
            "checkout.session.completed",
            "payment_intent.succeeded",
        ]
        assert {e.last_error for e in dead} == {
            {"sqlite": "IntegrityError", "postgresql": "ProgrammingError"}[backend]
        }
        _break_outbox(backend, False)
        for row in dead:
            event_queue.retry_dead_letter(None, row.id)
        db.session.commit()
    assert apply_stored_events(pay_app).applied == 2
    with pay_app.app_context():
        assert db.session.scalar(select(Donation.status)) is DonationStatus.PAID
