"""Stripe events: one row per event id, stored when it arrives and applied by the worker."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Enum, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from donorhub.database import check_move, utcnow
from donorhub.extensions import Model


class EventState(StrEnum):
    #: Stored (verified, committed), waiting for the worker.
    RECEIVED = "received"
    #: Its handler failed; the worker tries again at next_attempt_at.
    RETRYING = "retrying"
    #: The handler's effect is committed (outcome says applied, ignored or flagged).
    APPLIED = "applied"
    #: Failed WEBHOOK_MAX_ATTEMPTS times: a dead letter, shown to staff until one retries it.
    DEAD = "dead"


_E = EventState
#: Where an event may go from each state. Only a person moves a dead letter back.
EVENT_MOVES: dict[EventState, frozenset[EventState]] = {
    _E.RECEIVED: frozenset({_E.APPLIED, _E.RETRYING, _E.DEAD}),
    _E.RETRYING: frozenset({_E.APPLIED, _E.RETRYING, _E.DEAD}),
    _E.APPLIED: frozenset(),
    _E.DEAD: frozenset({_E.RETRYING}),
}
#: The states the worker picks up (when next_attempt_at has come).
PENDING_STATES = (EventState.RECEIVED, EventState.RETRYING)


class StripeEvent(Model):
    """Inserted (unique event_id) and committed before Stripe is answered, so a duplicate
    delivery, even a concurrent one, meets the unique constraint and changes nothing; the
    worker applies it later, once, and records the handler's outcome on this row.

    `payload` is the verified event as Stripe sent it: personal data (a Checkout Session
    carries the donor's e-mail and name), kept only until the event is applied (or, for a dead
    letter, until a person resolves it), erased with the donor, never logged."""

    __tablename__ = "stripe_events"
    __table_args__ = (
        # The worker's queue: only events waiting to be applied are in this index.
        Index(
            "ix_stripe_events_pending",
            "next_attempt_at",
            postgresql_where="state IN ('received', 'retrying')",
            sqlite_where="state IN ('received', 'retrying')",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(100), index=True)
    #: When Stripe created the event (its clock); the worker applies in this order.
    stripe_created_at: Mapped[datetime] = mapped_column(index=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: When the handler's effect was committed.
    processed_at: Mapped[datetime | None]
    #: "webhook" or "reconcile": how the event reached us.
    source: Mapped[str] = mapped_column(String(16), default="webhook")
    #: applied, ignored (not a type we handle, or not ours) or flagged (for staff); None
    #: until the event is applied.
    outcome: Mapped[str | None] = mapped_column(String(16))
    state: Mapped[EventState] = mapped_column(
        Enum(
            EventState,
            native_enum=False,
            length=16,
            validate_strings=True,
            values_callable=lambda states: [s.value for s in states],
        ),
        default=EventState.RECEIVED,
    )
    #: The verified JSON as received; NULL once applied (see the class docstring).
    payload: Mapped[str | None] = mapped_column(Text)
    #: Failed tries so far.
    attempts: Mapped[int] = mapped_column(default=0)
    #: When the worker may take it (now, or after a backoff); None once applied.
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    #: The exception's class name only: a message may quote personal data back.
    last_error: Mapped[str | None] = mapped_column(String(200))
    #: When it failed the last time (a dead letter: when it died).
    failed_at: Mapped[datetime | None]

    def move_to(self, target: EventState) -> None:
        check_move(EVENT_MOVES, self.state, target, f"stripe event {self.id}")
        self.state = target
