"""The append-only audit log of staff actions, exports and views of safeguarding data;
the staff side of donors: notes, consents, offline gifts, refunds and erasures."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, ForeignKey, Index, String, Text
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


class DonorNote(db.Model):
    """A staff note on a donor. Overwritten (not deleted) when the donor is erased."""

    __tablename__ = "donor_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    donor_id: Mapped[int] = mapped_column(ForeignKey("donors.id", ondelete="RESTRICT"),
                                          index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DonorConsent(db.Model):
    """A donor's marketing consent per channel, as history: the newest row per channel holds.

    `source` records the collection context (giving.md 3e): e.g. "web_gift", "staff", "paper".
    """

    __tablename__ = "donor_consents"
    __table_args__ = (Index("ix_donor_consents_donor_channel", "donor_id", "channel"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    donor_id: Mapped[int] = mapped_column(ForeignKey("donors.id", ondelete="RESTRICT"))
    #: "email", "post" or "phone".
    channel: Mapped[str] = mapped_column(String(8))
    granted: Mapped[bool]
    source: Mapped[str] = mapped_column(String(32))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
    recorded_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"))


class OfflineGift(db.Model):
    """How a gift entered by staff arrived: cash, cheque or bank transfer."""

    __tablename__ = "offline_gifts"

    id: Mapped[int] = mapped_column(primary_key=True)
    donation_id: Mapped[int] = mapped_column(ForeignKey("donations.id", ondelete="RESTRICT"),
                                             unique=True)
    #: "cash", "cheque" or "bank_transfer".
    method: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str | None] = mapped_column(String(64))
    received_on: Mapped[date]
    entered_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"))
    entered_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: A random key from the entry form: a double submission records one gift, not two.
    entry_key: Mapped[str] = mapped_column(String(32), unique=True)


class Refund(db.Model):
    """A refund staff asked for. For card gifts Stripe confirms it by webhook; the gift's
    amount_refunded_minor only moves on Stripe's word (or at once for an offline gift)."""

    __tablename__ = "refunds"

    id: Mapped[int] = mapped_column(primary_key=True)
    donation_id: Mapped[int] = mapped_column(ForeignKey("donations.id", ondelete="RESTRICT"),
                                             index=True)
    amount_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    #: "requested_by_customer", "duplicate", "fraudulent" or "other".
    reason: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(String(500))
    #: "pending", "succeeded" or "failed".
    status: Mapped[str] = mapped_column(String(16), default="pending")
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DonorErasure(db.Model):
    """The record that a donor's personal data was erased; the gifts themselves stay."""

    __tablename__ = "donor_erasures"

    id: Mapped[int] = mapped_column(primary_key=True)
    donor_id: Mapped[int] = mapped_column(ForeignKey("donors.id", ondelete="RESTRICT"),
                                          unique=True)
    data_request_id: Mapped[int | None] = mapped_column(
        ForeignKey("data_requests.id", ondelete="RESTRICT"))
    erased_at: Mapped[datetime] = mapped_column(default=utcnow)
    erased_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"))
    stripe_customers_deleted: Mapped[int] = mapped_column(default=0)
