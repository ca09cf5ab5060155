"""The outbox: every e-mail is a row written in the same transaction as its cause."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Enum, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from donorhub.database import utcnow
from donorhub.extensions import db


class OutboxStatus(StrEnum):
    PENDING = "pending"
    #: Claimed by a sender; if the sender dies here we cannot know whether SMTP took it.
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    #: A sender died mid-send. Never retried automatically: a person decides (never twice).
    UNCERTAIN = "uncertain"


class OutboxMessage(db.Model):
    __tablename__ = "outbox_messages"
    __table_args__ = (Index("ix_outbox_messages_status_next", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict] = mapped_column(JSON, default=dict)
    #: Template name, e.g. "accounts/verify": what kind of mail this is, for staff and tests.
    template: Mapped[str] = mapped_column(String(100))
    #: Carries a link that signs someone in or changes their account; staff never read it.
    is_sensitive: Mapped[bool] = mapped_column(default=False)
    message_id: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[OutboxStatus] = mapped_column(
        Enum(OutboxStatus, native_enum=False, length=16, validate_strings=True,
             values_callable=lambda statuses: [s.value for s in statuses]),
        default=OutboxStatus.PENDING,
    )
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    #: The error class and SMTP code only: server replies can quote the address back.
    last_error: Mapped[str | None] = mapped_column(String(200))
