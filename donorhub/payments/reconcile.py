"""Reconciliation: list Stripe's recent events and apply any we missed.

Stripe retries a webhook for days, but a long outage, a bug fixed later or a lost delivery
can still leave a gap. This walks /v1/events and applies each event through the same code as
the webhook (apply_event), one transaction per event, so it is idempotent: events already
applied are skipped by their id.

It always looks back a fixed window (STRIPE_RECONCILE_LOOKBACK_HOURS, default 72), never
"from the newest event we hold": one event received live after an outage must not hide the
gap before it. An event that fails is rolled back (no StripeEvent row), so the next run,
whose window still covers it, tries it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import select

from donorhub.database import unit_of_work, utcnow
from donorhub.extensions import db
from donorhub.payments.gateway import get_gateway
from donorhub.payments.models import StripeEvent
from donorhub.payments.webhooks import DuplicateEvent, apply_event

log = logging.getLogger(__name__)

#: How many ids one "already applied?" query checks.
ID_CHUNK = 500


@dataclass
class ReconcileReport:
    listed: int = 0
    applied: int = 0
    already_seen: int = 0
    failed: int = 0
    since: datetime | None = None
    #: Staff refunds whose Stripe answer was lost, settled by asking Stripe.
    refunds_recovered: int = 0
    refunds_not_sent: int = 0

    def summary(self) -> str:
        return (
            f"since {self.since:%Y-%m-%d %H:%M} UTC: {self.listed} listed, "
            f"{self.applied} applied, {self.already_seen} already seen, "
            f"{self.failed} failed; refunds recovered {self.refunds_recovered}, "
            f"not sent {self.refunds_not_sent}"
        )


def default_since() -> datetime:
    """A fixed window back from now, whatever we already hold (dedupe is by event id)."""
    hours = current_app.config["STRIPE_RECONCILE_LOOKBACK_HOURS"]
    return utcnow() - timedelta(hours=hours)


def reconcile(
    since: datetime | None = None, refund_age: timedelta | None = None
) -> ReconcileReport:
    """Apply every missed event created at or after `since` (default: the lookback window).
    Each event is its own unit of work."""
    since = since or default_since()
    report = ReconcileReport(since=since)
    events = list(get_gateway().list_events(int(since.timestamp())))
    db.session.rollback()  # end the read transaction before the per-event ones
    report.listed = len(events)
    ids = [e.id for e in events]
    seen: set[str] = set()
    for start in range(0, len(ids), ID_CHUNK):
        seen.update(
            db.session.scalars(
                select(StripeEvent.event_id).where(
                    StripeEvent.event_id.in_(ids[start : start + ID_CHUNK])
                )
            )
        )
    for event in events:
        if event.id in seen:
            report.already_seen += 1
            continue
        try:
            with unit_of_work():
                apply_event(event, source="reconcile")
            report.applied += 1
        except DuplicateEvent:
            report.already_seen += 1
        except Exception:
            report.failed += 1
            log.exception(
                "reconcile: event failed", extra={"event_type": event.type, "event_id": event.id}
            )
    recover_refunds(report, refund_age)
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
