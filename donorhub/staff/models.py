"""The append-only audit log of staff actions, exports and views of safeguarding data."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from donorhub.database import utcnow
from donorhub.extensions import db


class AuditEvent(db.Model):
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
