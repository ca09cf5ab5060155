"""The append-only audit log of staff actions, exports and views of safeguarding data.

Any feature records what staff did through `record_audit`, in the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, ForeignKey, Index, String
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


def record_audit(actor: User | None, action: str, subject_type: str, subject_id: int | None,
                 detail: dict[str, Any]) -> AuditEvent:
    """Append one audit row in the caller's transaction.

    Detail values are limited to numbers, booleans and short codes, so a careless caller
    cannot copy personal data or child data into the log.
    """
    for key, value in detail.items():
        if isinstance(value, str):
            if len(value) > 64 or not value.replace("_", "").replace("-", "").replace(
                    ".", "").isalnum():
                raise ValueError(f"audit detail {key!r} must be a short code")
        elif not isinstance(value, _ALLOWED_DETAIL_TYPES):
            raise ValueError(f"audit detail {key!r} must be a number, boolean or code")
    event = AuditEvent(actor_id=actor.id if actor is not None else None, action=action,
                       subject_type=subject_type, subject_id=subject_id, detail=detail)
    db.session.add(event)
    return event
