"""The outbox: every e-mail is a row written in the same transaction as its cause."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Enum, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from donorhub.database import check_move, utcnow
from donorhub.errors import IllegalTransition
from donorhub.extensions import Model


class OutboxStatus(StrEnum):
    PENDING = "pending"
    #: Claimed by a sender; if the sender dies here we cannot know whether SMTP took it.
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    #: A sender died mid-send. Never retried automatically: a person decides (never twice).
    UNCERTAIN = "uncertain"


_O = OutboxStatus
#: Where a message may go from each status. The sender's claim (pending -> sending) and its
#: sweep of stale claims (sending -> uncertain) are compare-and-set UPDATEs on this table's
#: moves; everything else goes through `OutboxMessage.move_to`.
OUTBOX_MOVES: dict[OutboxStatus, frozenset[OutboxStatus]] = {
    _O.PENDING: frozenset({_O.SENDING}),
    _O.SENDING: frozenset({_O.SENT, _O.PENDING, _O.FAILED, _O.UNCERTAIN}),
    _O.SENT: frozenset(),
    #: Only a person queues a failed or uncertain message again (never twice by itself).
    _O.FAILED: frozenset({_O.PENDING}),
    _O.UNCERTAIN: frozenset({_O.PENDING}),
}


class OutboxMessage(Model):
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
        Enum(
            OutboxStatus,
            native_enum=False,
            length=16,
            validate_strings=True,
            values_callable=lambda statuses: [s.value for s in statuses],
        ),
        default=OutboxStatus.PENDING,
    )
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    #: The error class and SMTP code only: server replies can quote the address back.
    last_error: Mapped[str | None] = mapped_column(String(200))

    def move_to(self, target: OutboxStatus) -> None:
        check_move(OUTBOX_MOVES, self.status, target, f"outbox message {self.id}")
        self.status = target

    def queue_again(self) -> None:
        """A person checked that a failed or uncertain message did not arrive. (A message
        being sent goes back to pending only by the sender's own retry.)"""
        if self.status not in (OutboxStatus.FAILED, OutboxStatus.UNCERTAIN):
            raise IllegalTransition(
                f"outbox message {self.id}: {self.status} is not failed or uncertain"
            )
        self.move_to(OutboxStatus.PENDING)
        self.attempts = 0
