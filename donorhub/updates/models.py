"""Publications (approved updates released together) and who was told about them."""

from __future__ import annotations

import secrets
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Date, Enum, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from donorhub.database import utcnow
from donorhub.extensions import Model


class NotificationChoice(StrEnum):
    EACH = "each"  # a mail after every publication that concerns them
    DIGEST = "digest"  # at most one a quarter
    NONE = "none"


class Publication(Model):
    """One scheduled release. The schedule, not arrival, decides when news appears, so the
    date an update appears says nothing about when something happened."""

    __tablename__ = "publications"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The schedule date this publication belongs to; one publication per date.
    scheduled_for: Mapped[date] = mapped_column(Date, unique=True)
    published_at: Mapped[datetime] = mapped_column(default=utcnow)
    updates_published: Mapped[int] = mapped_column(default=0)
    #: Set when every notification of this publication has been queued.
    notifications_done_at: Mapped[datetime | None]


class UpdateNotification(Model):
    """The one notification a person gets for a publication (or the decision not to send).

    Written in the same transaction as its outbox mail; the unique constraint makes a crash
    or a re-run of the job unable to tell anyone twice.
    """

    __tablename__ = "update_notifications"
    __table_args__ = (UniqueConstraint("user_id", "publication_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    publication_id: Mapped[int] = mapped_column(ForeignKey("publications.id"), index=True)
    #: "mailed", or why not: "digest_later", "opted_out".
    outcome: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def new_unsubscribe_key() -> str:
    """128 random bits, URL-safe: what an unsubscribe link names its person by."""
    return secrets.token_urlsafe(16)


class NotificationPreference(Model):
    __tablename__ = "notification_preferences"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    #: Random, per person: the unsubscribe link carries it instead of any id of ours, so a
    #: link says nothing about how many people signed up before this one, or when.
    unsubscribe_key: Mapped[str] = mapped_column(
        String(32), unique=True, default=new_unsubscribe_key
    )
    choice: Mapped[NotificationChoice] = mapped_column(
        Enum(
            NotificationChoice,
            native_enum=False,
            length=8,
            validate_strings=True,
            values_callable=lambda members: [m.value for m in members],
        ),
        default=NotificationChoice.EACH,
    )
    #: Bumped on every unsubscribe, so an old one-click link cannot undo a newer choice.
    version: Mapped[int] = mapped_column(default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
