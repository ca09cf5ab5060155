"""Reconciliation: events the webhook never received are applied from /v1/events, once."""

from __future__ import annotations

from sqlalchemy import func, select

from donorhub.donations.models import Donation, DonationStatus, PlanStatus, RecurringPlan
from donorhub.extensions import db
from donorhub.payments.models import StripeEvent
from tests.metrics import METRICS
from tests.payments.stripe_helpers import checkout_url, deliver, give


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
    with pay_app.app_context():
        assert (
            db.session.scalar(select(Donation.status).where(Donation.plan_id.is_(None)))
            is DonationStatus.PAID
        )
        assert db.session.scalar(select(RecurringPlan.status)) is PlanStatus.ACTIVE
        assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == len(events)
    again = runner.invoke(args=["payments", "reconcile"])
    assert again.exit_code == 0 and "0 applied" in again.output, again.output
    with pay_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Donation)) == 2
    METRICS.report("reconciliation: events listed / applied twice", f"{len(events)} / 0")


def test_reconcile_job_and_simulate_renewal_command(pay_app, pay_client, sim):
    from donorhub.jobs.registry import find_job, run_job

    sim.pay(checkout_url(give(pay_client, frequency="monthly")))
    with pay_app.app_context():
        job = find_job("reconcile_stripe")
    assert run_job(pay_app, job)
    with pay_app.app_context():
        plan = db.session.scalar(select(RecurringPlan))
        assert plan.status is PlanStatus.ACTIVE
        plan_id = plan.id
    result = pay_app.test_cli_runner().invoke(
        args=["payments", "simulate-renewal", str(plan_id), "--fail"]
    )
    assert result.exit_code == 0, result.output
    assert run_job(pay_app, job)
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
            )
        )
        db.session.commit()
    result = pay_app.test_cli_runner().invoke(args=["payments", "reconcile"])
    assert result.exit_code == 0, result.output
    with pay_app.app_context():
        assert db.session.scalar(select(Donation.status)) is DonationStatus.PAID


def test_reconcile_retries_an_event_that_failed_in_the_previous_run(
    pay_app, pay_client, sim, backend
):
    from donorhub.jobs.registry import find_job, run_job
    from tests.payments.test_webhooks import _break_outbox

    sim.pay(checkout_url(give(pay_client)))
    with pay_app.app_context():
        _break_outbox(backend, True)  # the receipt cannot be written: the event fails
    failed = pay_app.test_cli_runner().invoke(args=["payments", "reconcile"])
    assert failed.exit_code == 1 and "failed" in failed.output
    with pay_app.app_context():
        assert db.session.scalar(select(Donation.status)) is DonationStatus.PENDING
        _break_outbox(backend, False)
        job = find_job("reconcile_stripe")
    assert run_job(pay_app, job)  # the next scheduled run, default window
    with pay_app.app_context():
        assert db.session.scalar(select(Donation.status)) is DonationStatus.PAID
