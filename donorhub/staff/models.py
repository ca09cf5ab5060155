"""The staff side of donors: notes, consents, offline gifts, refunds and erasures."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Enum, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from donorhub.database import check_move, utcnow
from donorhub.extensions import Model


class DonorNote(Model):
    """A staff note on a donor. Overwritten (not deleted) when the donor is erased."""

    __tablename__ = "donor_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    donor_id: Mapped[int] = mapped_column(ForeignKey("donors.id", ondelete="RESTRICT"),
                                          index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DonorConsent(Model):
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


class OfflineGift(Model):
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


class RefundStatus(StrEnum):
    #: Staff asked for it; our row (and its idempotency key) is committed, Stripe not yet
    #: called or its answer not yet known.
    REQUESTED = "requested"
    # Stripe's refund statuses:
    PENDING = "pending"
    REQUIRES_ACTION = "requires_action"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    #: Stripe refused the request, or reconcile found Stripe never received it: no money moved.
    NOT_SENT = "not_sent"


_R = RefundStatus
#: Stripe's refund moves one way (a succeeded refund may still fail later); events delivered
#: out of order never move it back.
REFUND_STAGE: dict[RefundStatus, int] = {
    _R.REQUESTED: 0, _R.PENDING: 1, _R.REQUIRES_ACTION: 1, _R.SUCCEEDED: 2,
    _R.FAILED: 3, _R.CANCELED: 3, _R.NOT_SENT: 3}
REFUND_MOVES: dict[RefundStatus, frozenset[RefundStatus]] = {
    _R.REQUESTED: frozenset({_R.PENDING, _R.REQUIRES_ACTION, _R.SUCCEEDED, _R.FAILED,
                             _R.CANCELED, _R.NOT_SENT}),
    _R.PENDING: frozenset({_R.REQUIRES_ACTION, _R.SUCCEEDED, _R.FAILED, _R.CANCELED}),
    _R.REQUIRES_ACTION: frozenset({_R.PENDING, _R.SUCCEEDED, _R.FAILED, _R.CANCELED}),
    _R.SUCCEEDED: frozenset({_R.FAILED}),
    _R.FAILED: frozenset(),
    _R.CANCELED: frozenset(),
    _R.NOT_SENT: frozenset(),
}
#: Refunds whose money has gone (or is going) back to the donor.
REFUND_COUNTED = frozenset({_R.PENDING, _R.REQUIRES_ACTION, _R.SUCCEEDED})
#: Refunds that existed at Stripe and then did not happen.
REFUND_UNDONE = frozenset({_R.FAILED, _R.CANCELED})


class Refund(Model):
    """A refund of a gift: one staff asked for (created_by_id), or one Stripe told us of that
    was made elsewhere (the Dashboard). A staff refund's row is committed before Stripe is
    called; its id and a random part stored on it make the idempotency key
    (refund-<id>-<random>), its id is Stripe's metadata, so a retry, a double-click or a
    worker that died is matched to the one refund it asked for."""

    __tablename__ = "refunds"

    id: Mapped[int] = mapped_column(primary_key=True)
    donation_id: Mapped[int] = mapped_column(ForeignKey("donations.id", ondelete="RESTRICT"),
                                             index=True)
    amount_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    #: "requested_by_customer", "duplicate", "fraudulent" or "other".
    reason: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[RefundStatus] = mapped_column(
        Enum(RefundStatus, native_enum=False, length=16, validate_strings=True,
             values_callable=lambda members: [m.value for m in members]),
        default=RefundStatus.REQUESTED)
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    #: refund-<id>-<random> for a staff refund; None for one made outside DonorHub.
    idempotency_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    #: The one-time token of the form that asked for it: a second submit of the same form
    #: finds this row instead of refunding again.
    request_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    #: Stripe's failure_reason, or why it was not sent.
    failure_reason: Mapped[str | None] = mapped_column(String(64))
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def advance(self, target: RefundStatus) -> bool:
        """Move to a newer status; an older one delivered late changes nothing."""
        current = self.status or RefundStatus.REQUESTED
        if target == current or REFUND_STAGE[target] < REFUND_STAGE[current]:
            return False
        if target not in REFUND_MOVES[current] and REFUND_STAGE[current] == 3:
            return False  # final
        check_move(REFUND_MOVES, current, target, f"refund {self.id}")
        self.status = target
        return True


class DonorErasure(Model):
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
