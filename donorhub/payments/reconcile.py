"""Reconciliation: list Stripe's events since the last one we saw and apply any we missed.

Stripe retries a webhook for days, but a long outage, a bug fixed later or a lost delivery
can still leave a gap. This walks /v1/events and applies each event through the same code as
the webhook (apply_event), one transaction per event, so it is idempotent: events already
applied are skipped by their id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select

from donorhub.database import utcnow
from donorhub.extensions import db
from donorhub.payments.gateway import get_gateway
from donorhub.payments.models import StripeEvent
from donorhub.payments.webhooks import DuplicateEvent, apply_event

log = logging.getLogger(__name__)

#: Stripe's events are not created in strict order across its servers: look back a little
#: before the newest event we hold. Events already applied are skipped by id.
OVERLAP = timedelta(minutes=10)


@dataclass
class ReconcileReport:
    listed: int = 0
    applied: int = 0
    already_seen: int = 0
    failed: int = 0
    since: datetime | None = None

    def summary(self) -> str:
        return (f"since {self.since:%Y-%m-%d %H:%M} UTC: {self.listed} listed, "
                f"{self.applied} applied, {self.already_seen} already seen, "
                f"{self.failed} failed")


def default_since() -> datetime:
    newest = db.session.scalar(select(func.max(StripeEvent.stripe_created_at)))
    if newest is None:
        hours = current_app.config["STRIPE_RECONCILE_LOOKBACK_HOURS"]
        return utcnow() - timedelta(hours=hours)
    return newest - OVERLAP


def reconcile(since: datetime | None = None) -> ReconcileReport:
    """Apply every missed event created at or after `since` (default: the newest we hold,
    less a small overlap). Each event is its own unit of work."""
    since = since or default_since()
    report = ReconcileReport(since=since)
    events = list(get_gateway().list_events(int(since.timestamp())))
    db.session.rollback()  # end the read transaction before the per-event ones
    report.listed = len(events)
    seen = set(db.session.scalars(select(StripeEvent.event_id).where(
        StripeEvent.event_id.in_([e.id for e in events])))) if events else set()
    for event in events:
        if event.id in seen:
            report.already_seen += 1
            continue
        try:
            apply_event(event, source="reconcile")
            db.session.commit()
            report.applied += 1
        except DuplicateEvent:
            db.session.rollback()
            report.already_seen += 1
        except Exception:
            db.session.rollback()
            report.failed += 1
            log.exception("reconcile: event failed", extra={"event_type": event.type,
                                                            "event_id": event.id})
    return report
