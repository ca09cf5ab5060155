"""The append-only audit log of staff actions, exports and views of safeguarding data.

Any feature records what staff did through `record_audit`, in the caller's transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, ForeignKey, Index, String, select
from sqlalchemy.orm import Mapped, mapped_column

from donorhub.database import utcnow
from donorhub.extensions import Model, db

if TYPE_CHECKING:
    from donorhub.accounts.models import User

_ALLOWED_DETAIL_TYPES = (int, bool, type(None))


class AuditEvent(Model):
    """Never updated, never deleted: the database refuses both (see the migration)."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_subject", "subject_type", "subject_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    #: Dotted verb, e.g. "staff.role_granted", "child.viewed", "export.gift_aid".
    action: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[int | None]
    #: Ids and codes only: never names, e-mails or free text.
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


def record_audit(
    actor: User | None,
    action: str,
    subject_type: str,
    subject_id: int | None,
    detail: dict[str, Any],
) -> AuditEvent:
    """Append one audit row in the caller's transaction.

    Detail values are limited to numbers, booleans and short codes, so a careless caller
    cannot copy personal data or child data into the log.
    """
    for key, value in detail.items():
        if isinstance(value, str):
            if (
                len(value) > 64
                or not value.replace("_", "").replace("-", "").replace(".", "").isalnum()
            ):
                raise ValueError(f"audit detail {key!r} must be a short code")
        elif not isinstance(value, _ALLOWED_DETAIL_TYPES):
            raise ValueError(f"audit detail {key!r} must be a number, boolean or code")
    event = AuditEvent(
        actor_id=actor.id if actor is not None else None,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        detail=detail,
    )
    db.session.add(event)
    return event


def filtered_events(f: dict, limit: int = 200) -> list[AuditEvent]:
    """The newest events matching the audit page's filters (actor, action prefix, subject,
    dates from and to, both days included); the keys are those of AuditFilterSchema."""
    query = select(AuditEvent)
    if f.get("actor") is not None:
        query = query.where(AuditEvent.actor_id == f["actor"])
    if f.get("action"):
        query = query.where(AuditEvent.action.startswith(f["action"], autoescape=True))
    if f.get("subject_type"):
        query = query.where(AuditEvent.subject_type == f["subject_type"])
    if f.get("subject_id") is not None:
        query = query.where(AuditEvent.subject_id == f["subject_id"])
    if f.get("date_from"):
        query = query.where(AuditEvent.at >= datetime.combine(f["date_from"], time.min, tzinfo=UTC))
    if f.get("date_to"):
        query = query.where(
            AuditEvent.at < datetime.combine(f["date_to"] + timedelta(days=1), time.min, tzinfo=UTC)
        )
    return list(db.session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit)))
