"""Reconciliation: list Stripe's recent events and store any we missed; report dead letters.

Stripe retries a webhook for days, but a long outage, a bug fixed later or a lost delivery
can still leave a gap. This walks /v1/events and stores each missing event exactly as the
webhook does (event_queue.store_event, source "reconcile"), so the worker applies it through
the same dispatch table; it is idempotent: events already stored are skipped by their id.
It also reports the queue: events waiting, retrying, and dead letters staff must look at.

It always looks back a fixed window (STRIPE_RECONCILE_LOOKBACK_HOURS, default 72), never
"from the newest event we hold": one event received live after an outage must not hide the
gap before it. An event stored here that then fails is retried by the worker with backoff
and, if it keeps failing, becomes a dead letter (reported here and shown to staff).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from donorhub.database import unit_of_work, utcnow
from donorhub.extensions import db
from donorhub.payments import event_queue
from donorhub.payments.gateway import get_gateway
from donorhub.payments.models import StripeEvent

log = logging.getLogger(__name__)

#: How many ids one "already applied?" query checks.
ID_CHUNK = 500


@dataclass
class ReconcileReport:
    listed: int = 0
    #: Missed events stored for the worker to apply.
    stored: int = 0
    already_seen: int = 0
    failed: int = 0
    #: The queue after this run: waiting (or retrying) and dead letters.
    waiting: int = 0
    dead_letters: int = 0
    since: datetime | None = None
    #: Staff refunds whose Stripe answer was lost, settled by asking Stripe.
    refunds_recovered: int = 0
    refunds_not_sent: int = 0

    def summary(self) -> str:
        return (
            f"since {self.since:%Y-%m-%d %H:%M} UTC: {self.listed} listed, "
            f"{self.stored} stored for the worker, {self.already_seen} already seen, "
            f"{self.failed} failed; refunds recovered {self.refunds_recovered}, "
            f"not sent {self.refunds_not_sent}; queue: {self.waiting} waiting, "
            f"{self.dead_letters} dead letters"
        )


def default_since() -> datetime:
    """A fixed window back from now, whatever we already hold (dedupe is by event id)."""
    hours = current_app.config["STRIPE_RECONCILE_LOOKBACK_HOURS"]
    return utcnow() - timedelta(hours=hours)


def reconcile(
    since: datetime | None = None, refund_age: timedelta | None = None
) -> ReconcileReport:
    """Store every missed event created at or after `since` (default: the lookback window)
    for the worker. Each event is its own unit of work."""
    since = since or default_since()
    report = ReconcileReport(since=since)
    events = list(get_gateway().list_events(int(since.timestamp())))
    db.session.rollback()  # end the read transaction before the per-event ones
    report.listed = len(events)
    ids = [e.event.id for e in events]
    seen: set[str] = set()
    for start in range(0, len(ids), ID_CHUNK):
        seen.update(
            db.session.scalars(
                select(StripeEvent.event_id).where(
                    StripeEvent.event_id.in_(ids[start : start + ID_CHUNK])
                )
            )
        )
    for received in events:
        event = received.event
        if event.id in seen:
            report.already_seen += 1
            continue
        try:
            with unit_of_work():
                stored = event_queue.store_event(event, received.payload, source="reconcile")
        except Exception:
            report.failed += 1
            log.exception(
                "reconcile: event not stored",
                extra={"event_type": event.type, "event_id": event.id},
            )
            continue
        if stored:
            report.stored += 1
        else:
            report.already_seen += 1
    recover_refunds(report, refund_age)
    state = event_queue.queue_state()
    db.session.rollback()
    report.waiting = state.waiting + state.retrying
    report.dead_letters = state.dead
    if state.dead:
        log.warning("reconcile: dead letters wait for staff", extra={"dead_letters": state.dead})
    return report


def recover_refunds(report: ReconcileReport, older_than: timedelta | None = None) -> None:
    """Staff refunds whose Stripe call timed out or whose worker died before recording the
    answer: ask Stripe (list the payment's refunds, match our row id in the metadata). Each
    refund is its own unit of work."""
    from donorhub.donations import refunds

    ids = refunds.stale_refund_ids(older_than if older_than is not None else refunds.RECOVER_AFTER)
    db.session.rollback()
    for refund_id in ids:
        try:
            with unit_of_work():
                outcome = refunds.recover_refund(refund_id)
        except Exception:
            report.failed += 1
            log.exception("reconcile: refund recovery failed", extra={"refund_id": refund_id})
            continue
        if outcome == "recovered":
            report.refunds_recovered += 1
        elif outcome == "not_sent":
            report.refunds_not_sent += 1
