"""Stripe events we have applied: one row per event id, written with the event's effect."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from donorhub.database import utcnow
from donorhub.extensions import Model


class StripeEvent(Model):
    """Inserted first in the transaction that applies the event, so a duplicate delivery
    (even a concurrent one) meets the unique constraint and changes nothing; a failed handler
    rolls this row back with everything else, so Stripe's retry applies the event again."""

    __tablename__ = "stripe_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(100), index=True)
    #: When Stripe created the event (its clock); reconciliation resumes from the newest.
    stripe_created_at: Mapped[datetime] = mapped_column(index=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    #: "webhook" or "reconcile": how the event reached us.
    source: Mapped[str] = mapped_column(String(16), default="webhook")
    #: applied, ignored (not a type we handle, or not ours) or flagged (for staff).
    outcome: Mapped[str] = mapped_column(String(16), default="applied")
