"""The stored Stripe events: store once, claim what is due, record what applying did.

The webhook and reconciliation store an event (`store_event`) and commit; the worker
(`donorhub/payments/webhooks.py` `apply_due_events`) claims the events that are due
(`claim_due`), applies each through the dispatch table and records the outcome here
(`record_applied`, `record_failure`). An event whose handler keeps failing becomes a dead
letter after WEBHOOK_MAX_ATTEMPTS tries; staff see it and can retry it.

On PostgreSQL the insert and a NOTIFY on NOTIFY_CHANNEL are one statement, so the worker
listening on that channel wakes when the receiving transaction commits (never before).
Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import String, cast, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from donorhub.audit import record_audit
from donorhub.database import utcnow
from donorhub.errors import DomainError
from donorhub.extensions import db
from donorhub.payments.events import HandlerOutcome, PaymentEvent
from donorhub.payments.models import PENDING_STATES, EventState, StripeEvent

#: The PostgreSQL channel the worker LISTENs on; the payload is the stored row's id.
NOTIFY_CHANNEL = "stripe_events"


def store_event(event: PaymentEvent, payload: str, source: str = "webhook") -> bool:
    """Insert the event once (a duplicate id changes nothing); True when this call stored
    it. One statement; on PostgreSQL it also NOTIFYs the worker, which PostgreSQL delivers
    when the caller's transaction commits."""
    values = {
        "event_id": event.id,
        "type": event.type,
        "stripe_created_at": event.created,
        "received_at": utcnow(),
        "source": source,
        "state": EventState.RECEIVED,
        "payload": payload,
        "attempts": 0,
        "next_attempt_at": utcnow(),
    }
    dialect = db.session.get_bind().dialect.name
    table = StripeEvent.__table__
    if dialect == "postgresql":
        inserted = (
            postgresql.insert(table)
            .values(values)
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(table.c.id)
            .cte("inserted")
        )
        notified = select(func.pg_notify(NOTIFY_CHANNEL, cast(inserted.c.id, String)))
        return db.session.execute(notified).first() is not None
    statement = (
        sqlite.insert(table)
        .values(values)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(table.c.id)
    )
    return db.session.execute(statement).first() is not None


def claim_due(limit: int, now: datetime | None = None) -> list[StripeEvent]:
    """Up to `limit` events waiting to be applied whose time has come, oldest by Stripe's
    clock first, locked for this transaction. On PostgreSQL rows another worker holds are
    skipped (FOR UPDATE SKIP LOCKED), so two workers never take one event; SQLite has one
    writer at a time, and a worker whose read went stale cannot commit over another's."""
    now = now or utcnow()
    query = (
        select(StripeEvent)
        .where(StripeEvent.state.in_(PENDING_STATES), StripeEvent.next_attempt_at <= now)
        .order_by(StripeEvent.stripe_created_at, StripeEvent.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(db.session.scalars(query))


def record_applied(row: StripeEvent, outcome: HandlerOutcome) -> None:
    """The handler's effect is in this transaction: the event is done, its payload gone."""
    row.move_to(EventState.APPLIED)
    row.outcome = outcome.value
    row.processed_at = utcnow()
    row.payload = None
    row.next_attempt_at = None
    row.last_error = None


def backoff(attempts: int) -> timedelta:
    """The wait before try number `attempts + 1`: WEBHOOK_RETRY_BASE_SECONDS doubled per
    failed try, at most WEBHOOK_RETRY_MAX_SECONDS."""
    base = current_app.config["WEBHOOK_RETRY_BASE_SECONDS"]
    ceiling = current_app.config["WEBHOOK_RETRY_MAX_SECONDS"]
    return timedelta(seconds=min(ceiling, base * 2 ** max(0, attempts - 1)))


def record_failure(row: StripeEvent, error: BaseException) -> None:
    """The handler failed (its effect rolled back): try again later, or after
    WEBHOOK_MAX_ATTEMPTS tries make it a dead letter. Only the error's class is kept."""
    now = utcnow()
    row.attempts += 1
    row.last_error = type(error).__name__[:200]
    row.failed_at = now
    if row.attempts >= current_app.config["WEBHOOK_MAX_ATTEMPTS"]:
        row.move_to(EventState.DEAD)
        row.next_attempt_at = None
    else:
        row.move_to(EventState.RETRYING)
        row.next_attempt_at = now + backoff(row.attempts)


@dataclass(frozen=True)
class QueueState:
    """What the queue holds now, for staff and reconciliation."""

    waiting: int
    retrying: int
    dead: int
    #: When the oldest event still waiting was received (None: none waiting).
    oldest_waiting: datetime | None


def queue_state() -> QueueState:
    counts = dict(
        db.session.execute(
            select(StripeEvent.state, func.count())
            .where(StripeEvent.state != EventState.APPLIED)
            .group_by(StripeEvent.state)
        ).all()
    )
    oldest = db.session.scalar(
        select(func.min(StripeEvent.received_at)).where(StripeEvent.state.in_(PENDING_STATES))
    )
    return QueueState(
        waiting=counts.get(EventState.RECEIVED, 0),
        retrying=counts.get(EventState.RETRYING, 0),
        dead=counts.get(EventState.DEAD, 0),
        oldest_waiting=oldest,
    )


def dead_letters(limit: int = 200) -> Sequence[StripeEvent]:
    """Events that failed every try, newest failure first (no payload is read)."""
    return db.session.scalars(
        select(StripeEvent)
        .where(StripeEvent.state == EventState.DEAD)
        .order_by(StripeEvent.failed_at.desc(), StripeEvent.id.desc())
        .limit(limit)
    ).all()


def retry_dead_letter(actor, event_row_id: int) -> StripeEvent:
    """A person asks for a dead letter to be tried again, with a fresh set of tries."""
    row = db.session.scalar(
        select(StripeEvent).where(StripeEvent.id == event_row_id).with_for_update()
    )
    if row is None or row.state != EventState.DEAD:
        raise DomainError("That event is not a dead letter any more.")
    if row.payload is None:
        raise DomainError("That event's data was erased; it cannot be applied.")
    row.move_to(EventState.RETRYING)
    row.attempts = 0
    row.next_attempt_at = utcnow()
    record_audit(actor, "payments.event_retried", "stripe_event", row.id, {"type": row.type})
    return row


def erase_payloads(event_row_ids: Sequence[int]) -> int:
    """Forget the stored payloads of these events (a donor's erasure): events not yet
    applied can then never be applied, so they become dead letters without a payload."""
    if not event_row_ids:
        return 0
    result = db.session.execute(
        update(StripeEvent)
        .where(StripeEvent.id.in_(event_row_ids), StripeEvent.payload.is_not(None))
        .values(
            payload=None,
            state=EventState.DEAD,
            next_attempt_at=None,
            last_error="PayloadErased",
            failed_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def events_with_payload_mentioning(needles: Sequence[str]) -> list[int]:
    """Ids of stored events whose payload contains any of `needles` (an e-mail address, a
    Stripe customer id): the rows a donor's erasure or export must account for. Only events
    not yet applied, and dead letters, still hold a payload."""
    found: list[int] = []
    needles = [n for n in needles if n]
    if not needles:
        return found
    for needle in needles:
        found.extend(
            db.session.scalars(
                select(StripeEvent.id).where(
                    StripeEvent.payload.is_not(None),
                    StripeEvent.payload.contains(needle, autoescape=True),
                )
            )
        )
    return sorted(set(found))


def held_events_summary(event_row_ids: Sequence[int]) -> list[dict]:
    """The stored events still holding a payload, as a donor's export lists them."""
    if not event_row_ids:
        return []
    rows = db.session.scalars(
        select(StripeEvent).where(StripeEvent.id.in_(event_row_ids)).order_by(StripeEvent.id)
    )
    return [
        {
            "event": row.event_id,
            "type": row.type,
            "state": row.state.value,
            "received_at": row.received_at.isoformat(),
        }
        for row in rows
    ]
