"""Donors, gifts, recurring plans, receipts and Gift Aid declarations.

Money is an integer of minor units plus a lower-case ISO 4217 code, as Stripe sends it.
Statuses are enums whose moves are listed explicitly; any other move raises IllegalTransition.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Enum, ForeignKey, Index, String, Text, UniqueConstraint, case
from sqlalchemy.orm import Mapped, mapped_column, relationship

from donorhub.database import TimestampMixin, check_move, utcnow
from donorhub.extensions import Model
from donorhub.forms import name_for_mail


def new_public_id() -> str:
    """An opaque id: the only thing about a gift that Stripe and URLs ever see."""
    return uuid.uuid4().hex


def _enum(kind: type[StrEnum], length: int = 24) -> Enum:
    return Enum(
        kind,
        native_enum=False,
        length=length,
        validate_strings=True,
        values_callable=lambda members: [m.value for m in members],
    )


class Donor(TimestampMixin, Model):
    """Whoever gives: found or created by e-mail, so guests need no account.

    A signed-in account with the same, verified address claims the donor (user_id)."""

    __tablename__ = "donors"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Lower-cased and trimmed.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), unique=True
    )

    def __repr__(self) -> str:  # no e-mail: reprs end up in logs
        return f"<Donor {self.id}>"


class Frequency(StrEnum):
    ONCE = "once"
    MONTHLY = "monthly"
    YEARLY = "yearly"

    @property
    def stripe_interval(self) -> str:
        return {"monthly": "month", "yearly": "year"}[self.value]


class DonationKind(StrEnum):
    ONCE = "once"
    #: One paid invoice of a recurring plan.
    INSTALMENT = "instalment"


class DonationStatus(StrEnum):
    PENDING = "pending"  # sent to Checkout, nothing confirmed yet
    PROCESSING = "processing"  # a delayed payment method is on its way
    PAID = "paid"
    FAILED = "failed"
    EXPIRED = "expired"  # the Checkout Session closed unpaid
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    DISPUTED = "disputed"
    CHARGED_BACK = "charged_back"  # dispute lost
    NEEDS_REVIEW = "needs_review"  # Stripe's amount or currency differs from ours


_S = DonationStatus
DONATION_MOVES: dict[DonationStatus, frozenset[DonationStatus]] = {
    _S.PENDING: frozenset(
        {
            _S.PROCESSING,
            _S.PAID,
            _S.FAILED,
            _S.EXPIRED,
            _S.NEEDS_REVIEW,
            _S.PARTIALLY_REFUNDED,
            _S.REFUNDED,
            _S.DISPUTED,
            _S.CHARGED_BACK,
        }
    ),
    _S.PROCESSING: frozenset(
        {
            _S.PAID,
            _S.FAILED,
            _S.NEEDS_REVIEW,
            _S.PARTIALLY_REFUNDED,
            _S.REFUNDED,
            _S.DISPUTED,
            _S.CHARGED_BACK,
        }
    ),
    # Money that arrives after a failure or an expiry (another checkout session of the same
    # gift, a late async success) is recorded: facts of payment override failure and expiry.
    _S.FAILED: frozenset(
        {_S.PAID, _S.NEEDS_REVIEW, _S.PARTIALLY_REFUNDED, _S.REFUNDED, _S.DISPUTED, _S.CHARGED_BACK}
    ),
    _S.EXPIRED: frozenset(
        {
            _S.PROCESSING,
            _S.FAILED,
            _S.PAID,
            _S.NEEDS_REVIEW,
            _S.PARTIALLY_REFUNDED,
            _S.REFUNDED,
            _S.DISPUTED,
            _S.CHARGED_BACK,
        }
    ),
    # Once money has arrived, the status is only a label for the facts (refunds, their
    # failures, disputes and their outcomes), which may arrive in any order: any of these
    # labels may follow any other.
    _S.PAID: frozenset(
        {_S.PARTIALLY_REFUNDED, _S.REFUNDED, _S.DISPUTED, _S.CHARGED_BACK, _S.NEEDS_REVIEW}
    ),
    _S.PARTIALLY_REFUNDED: frozenset(
        {_S.PAID, _S.REFUNDED, _S.DISPUTED, _S.CHARGED_BACK, _S.NEEDS_REVIEW}
    ),
    _S.DISPUTED: frozenset(
        {_S.PAID, _S.PARTIALLY_REFUNDED, _S.REFUNDED, _S.CHARGED_BACK, _S.NEEDS_REVIEW}
    ),
    _S.REFUNDED: frozenset(
        {_S.PAID, _S.PARTIALLY_REFUNDED, _S.DISPUTED, _S.CHARGED_BACK, _S.NEEDS_REVIEW}
    ),
    _S.CHARGED_BACK: frozenset({_S.NEEDS_REVIEW}),
    _S.NEEDS_REVIEW: frozenset(),
}
#: Statuses in which money was received (and may since have gone back).
MONEY_RECEIVED = frozenset(
    {_S.PAID, _S.PARTIALLY_REFUNDED, _S.REFUNDED, _S.DISPUTED, _S.CHARGED_BACK}
)


class Donation(TimestampMixin, Model):
    """One gift of money: a one-off gift, or one paid instalment of a recurring plan.

    Its status is derived from facts that only ever grow (paid, amount refunded, dispute
    outcome, ...), so the final state is the same whatever order Stripe's events arrive in.
    """

    __tablename__ = "donations"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    donor_id: Mapped[int] = mapped_column(ForeignKey("donors.id", ondelete="RESTRICT"), index=True)
    plan_id: Mapped[int | None] = mapped_column(
        ForeignKey("recurring_plans.id", ondelete="RESTRICT"), index=True
    )
    kind: Mapped[DonationKind] = mapped_column(_enum(DonationKind, 16))
    #: What the donor pays in total, including any fee cover.
    amount_minor: Mapped[int]
    #: The part of amount_minor that covers card fees (0 when not chosen).
    fee_cover_minor: Mapped[int] = mapped_column(default=0)
    currency: Mapped[str] = mapped_column(String(3))
    #: "general" for the general fund, "campaign" with campaign_id.
    designation: Mapped[str] = mapped_column(String(32), default="general")
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaigns.id", ondelete="RESTRICT"), index=True
    )
    #: Named, not imported: campaigns build on donations, never the other way round.
    campaign = relationship("Campaign", viewonly=True)
    dedication: Mapped[str | None] = mapped_column(String(200))
    #: The payer's name for this gift, as typed on the form that was paid (or copied from
    #: the plan for an instalment). Receipts and mails about this gift use it, never a name
    #: that someone else's checkout under the same address left on the donor record.
    donor_name: Mapped[str | None] = mapped_column(String(200))
    #: The interval the gift was paid under ("once", "monthly", "yearly"): a later switch of
    #: its plan does not relabel it.
    frequency: Mapped[str | None] = mapped_column(String(16))
    #: The one-time token of the giving form that started this gift: the same form sent
    #: twice (a double click) finds this row and its checkout instead of opening another.
    form_nonce: Mapped[str | None] = mapped_column(String(64), unique=True)
    status: Mapped[DonationStatus] = mapped_column(
        _enum(DonationStatus), default=DonationStatus.PENDING, index=True
    )

    # Checkout: the attempt number is part of the idempotency key; it moves on only after
    # Stripe refused the request for good (never after a timeout, 5xx or 429).
    checkout_attempt: Mapped[int] = mapped_column(default=1)
    checkout_expires_at: Mapped[datetime | None]
    stripe_checkout_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_charge_id: Mapped[str | None] = mapped_column(String(255), index=True)

    # Facts from Stripe. Each only ever moves one way.
    paid_at: Mapped[datetime | None]
    processing: Mapped[bool] = mapped_column(default=False)
    payment_failed: Mapped[bool] = mapped_column(default=False)
    expired: Mapped[bool] = mapped_column(default=False)
    #: What has gone back to the donor: derived from the refund facts (donorhub/donations/
    #: refunds.py), so a refund that fails later lowers it again.
    amount_refunded_minor: Mapped[int] = mapped_column(default=0)
    #: The highest `amount_refunded` any charge event of this gift reported (Stripe's own sum,
    #: covering refunds we hear of only through the charge).
    stripe_refunded_minor: Mapped[int] = mapped_column(default=0, server_default="0")
    #: None, "open", "won" or "lost": summarised from the gift's Dispute rows.
    dispute_status: Mapped[str | None] = mapped_column(String(8))
    failure_code: Mapped[str | None] = mapped_column(String(64))
    #: Why staff must look at this gift (amount or currency mismatch); never overwritten.
    review_reason: Mapped[str | None] = mapped_column(String(200))

    gift_aid_declaration_id: Mapped[int | None] = mapped_column(
        ForeignKey("gift_aid_declarations.id", ondelete="RESTRICT"), index=True
    )
    gift_aid_claim_id: Mapped[int | None] = mapped_column(
        ForeignKey("gift_aid_claims.id", ondelete="RESTRICT"), index=True
    )

    donor: Mapped[Donor] = relationship()
    plan: Mapped[RecurringPlan | None] = relationship(back_populates="gifts")
    receipt: Mapped[Receipt | None] = relationship(back_populates="donation", uselist=False)
    gift_aid_declaration: Mapped[GiftAidDeclaration | None] = relationship()

    @property
    def gift_minor(self) -> int:
        """The gift itself, without the fee cover."""
        return self.amount_minor - self.fee_cover_minor

    @property
    def payer_name(self) -> str:
        """Whom mail about this gift addresses: the payer of this gift (never a link)."""
        if self.donor_name:
            return name_for_mail(self.donor_name)
        if self.plan is not None and self.plan.donor_name:
            return name_for_mail(self.plan.donor_name)
        return name_for_mail(self.donor.full_name)

    @property
    def paid_frequency(self) -> str:
        """The interval this gift was paid under (older rows: their plan's, else once)."""
        if self.frequency:
            return self.frequency
        return self.plan.frequency.value if self.plan is not None else "once"

    @property
    def is_paid(self) -> bool:
        return self.paid_at is not None

    def derived_status(self) -> DonationStatus:
        if self.review_reason:
            return _S.NEEDS_REVIEW
        if self.paid_at is not None:
            if self.dispute_status == "lost":
                return _S.CHARGED_BACK
            if self.dispute_status == "open":
                return _S.DISPUTED
            if self.amount_refunded_minor >= self.amount_minor:
                return _S.REFUNDED
            if self.amount_refunded_minor > 0:
                return _S.PARTIALLY_REFUNDED
            return _S.PAID
        if self.payment_failed:
            return _S.FAILED
        if self.processing:
            return _S.PROCESSING
        if self.expired:
            return _S.EXPIRED
        return _S.PENDING

    def settle(self) -> DonationStatus:
        """Move to the status the facts call for; raises IllegalTransition on a regression."""
        target = self.derived_status()
        current = self.status or _S.PENDING
        if target != current:
            check_move(DONATION_MOVES, current, target, f"donation {self.id}")
            self.status = target
        return self.status

    def __repr__(self) -> str:
        return f"<Donation {self.id} {self.status}>"


#: The designation of a sponsorship's plan (donorhub/sponsorship): its amount is fixed and
#: it is run from the sponsorship's pages, never through the donation routes.
SPONSORSHIP_DESIGNATION = "sponsorship"


#: Statuses whose money is with the charity now (a full refund leaves 0 by the formula);
#: campaign totals, the donor search and the reports count the same gifts (docs/campaigns.md).
COUNTED_STATUSES = (DonationStatus.PAID, DonationStatus.PARTIALLY_REFUNDED, DonationStatus.REFUNDED)


def net_gift_expression():
    """SQL for one gift's counted amount in minor units: amount − refunded − fee cover for a
    counted status, never below zero; 0 otherwise."""
    net = Donation.amount_minor - Donation.amount_refunded_minor - Donation.fee_cover_minor
    return case((Donation.status.in_(COUNTED_STATUSES) & (net > 0), net), else_=0)


class PlanStatus(StrEnum):
    PENDING = "pending"  # sent to Checkout
    ACTIVE = "active"
    PAST_DUE = "past_due"  # the latest payment failed; Stripe will retry
    PAUSED = "paused"  # the donor paused collection
    CANCELLED = "cancelled"  # the donor (or staff) stopped it
    ENDED = "ended"  # Stripe ended it, or Checkout expired before it began


_P = PlanStatus
PLAN_MOVES: dict[PlanStatus, frozenset[PlanStatus]] = {
    _P.PENDING: frozenset({_P.ACTIVE, _P.PAST_DUE, _P.PAUSED, _P.CANCELLED, _P.ENDED}),
    # Back to PENDING only when the checkout that started the plan turns out to have charged
    # another amount or currency (its events can arrive after the first invoice's).
    _P.ACTIVE: frozenset({_P.PENDING, _P.PAST_DUE, _P.PAUSED, _P.CANCELLED, _P.ENDED}),
    _P.PAST_DUE: frozenset({_P.PENDING, _P.ACTIVE, _P.PAUSED, _P.CANCELLED, _P.ENDED}),
    _P.PAUSED: frozenset({_P.PENDING, _P.ACTIVE, _P.PAST_DUE, _P.CANCELLED, _P.ENDED}),
    _P.CANCELLED: frozenset(),
    # Only a plan whose checkout had expired unpaid leaves ENDED: money then arrived through
    # another session of it (derived_status keeps a subscription that Stripe ended ENDED).
    _P.ENDED: frozenset({_P.ACTIVE, _P.PAST_DUE, _P.PAUSED}),
}
LIVE_PLAN_STATUSES = frozenset({_P.ACTIVE, _P.PAST_DUE, _P.PAUSED})


class RecurringPlan(TimestampMixin, Model):
    """A monthly or yearly gift: one Stripe subscription; each paid invoice is a Donation."""

    __tablename__ = "recurring_plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    donor_id: Mapped[int] = mapped_column(ForeignKey("donors.id", ondelete="RESTRICT"), index=True)
    amount_minor: Mapped[int]
    fee_cover_minor: Mapped[int] = mapped_column(default=0)
    currency: Mapped[str] = mapped_column(String(3))
    frequency: Mapped[Frequency] = mapped_column(_enum(Frequency, 16))
    designation: Mapped[str] = mapped_column(String(32), default="general")
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaigns.id", ondelete="RESTRICT"), index=True
    )
    dedication: Mapped[str | None] = mapped_column(String(200))
    #: The payer's name, as typed on the form that started the plan (see Donation).
    donor_name: Mapped[str | None] = mapped_column(String(200))
    #: The one-time token of the giving form that started the plan (see Donation).
    form_nonce: Mapped[str | None] = mapped_column(String(64), unique=True)
    status: Mapped[PlanStatus] = mapped_column(
        _enum(PlanStatus), default=PlanStatus.PENDING, index=True
    )

    checkout_attempt: Mapped[int] = mapped_column(default=1)
    checkout_expires_at: Mapped[datetime | None]
    stripe_checkout_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), index=True)

    #: Part of every pause/cancel link; bumping it revokes the links already sent.
    manage_version: Mapped[int] = mapped_column(default=1)
    #: Counts the donor's changes; part of the idempotency key of each change.
    revision: Mapped[int] = mapped_column(default=0)
    #: An amount the donor asked for that Stripe has not confirmed yet (see services).
    pending_amount_minor: Mapped[int | None]
    #: The interval asked for with pending_amount_minor ("monthly" or "yearly").
    pending_frequency: Mapped[str | None] = mapped_column(String(16))

    # Facts from Stripe, applied only when newer than what we hold (Stripe's clock).
    latest_invoice_id: Mapped[str | None] = mapped_column(String(255))
    latest_invoice_created: Mapped[int | None]
    #: "paid", "failed" or "action_required" for latest_invoice_id.
    latest_invoice_state: Mapped[str | None] = mapped_column(String(16))
    last_failure_code: Mapped[str | None] = mapped_column(String(64))
    #: Stripe's `created` and id of the newest subscription event applied (Stripe's clock
    #: only; the id breaks ties within a second).
    subscription_synced_at: Mapped[int | None]
    subscription_synced_event: Mapped[str | None] = mapped_column(String(255))
    paused: Mapped[bool] = mapped_column(default=False)
    checkout_completed: Mapped[bool] = mapped_column(default=False)
    current_period_end: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    #: Stripe ended the subscription (deleted event). Final.
    stripe_ended: Mapped[bool] = mapped_column(default=False)
    #: The plan's checkout session expired unpaid: ENDED unless money arrives after all
    #: (another session of the plan completed), which overrides it.
    checkout_expired: Mapped[bool] = mapped_column(default=False)
    #: Stripe's checkout (or a later subscription) reported another amount, currency or
    #: interval than this plan's: never activated by it, left for staff (see review_reason).
    checkout_mismatch: Mapped[bool] = mapped_column(default=False)
    #: Why staff must look at this plan; the first reason is kept.
    review_reason: Mapped[str | None] = mapped_column(String(200))
    #: The declaration made with this plan's checkout (it covers the plan's instalments).
    gift_aid_declaration_id: Mapped[int | None] = mapped_column(
        ForeignKey("gift_aid_declarations.id", ondelete="RESTRICT"), index=True
    )

    donor: Mapped[Donor] = relationship()
    gifts: Mapped[list[Donation]] = relationship(back_populates="plan", order_by="Donation.id")

    @property
    def gift_minor(self) -> int:
        return self.amount_minor - self.fee_cover_minor

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_PLAN_STATUSES

    @property
    def payer_name(self) -> str:
        """Whom mail about this plan addresses: the person who set it up and paid for it
        (never a link)."""
        return name_for_mail(self.donor_name or self.donor.full_name)

    def derived_status(self) -> PlanStatus:
        if self.cancelled_at is not None:
            return _P.CANCELLED
        if self.stripe_ended:
            return _P.ENDED
        if self.checkout_mismatch:
            return _P.PENDING  # never activated by a checkout that charged something else
        if self.paused:
            return _P.PAUSED
        if self.latest_invoice_state in ("failed", "action_required"):
            return _P.PAST_DUE
        if self.latest_invoice_state == "paid" or self.checkout_completed:
            return _P.ACTIVE
        if self.checkout_expired:
            return _P.ENDED
        return _P.PENDING

    def settle(self) -> PlanStatus:
        target = self.derived_status()
        current = self.status or _P.PENDING
        if target != current:
            check_move(PLAN_MOVES, current, target, f"plan {self.id}")
            self.status = target
        return self.status

    def __repr__(self) -> str:
        return f"<RecurringPlan {self.id} {self.status}>"


class DisputeStatus(StrEnum):
    """Stripe's dispute statuses. A dispute only moves forward: a late "created" event never
    reopens a closed dispute (see DISPUTE_STAGE)."""

    WARNING_NEEDS_RESPONSE = "warning_needs_response"
    WARNING_UNDER_REVIEW = "warning_under_review"
    WARNING_CLOSED = "warning_closed"
    NEEDS_RESPONSE = "needs_response"
    UNDER_REVIEW = "under_review"
    PREVENTED = "prevented"
    WON = "won"
    LOST = "lost"


_D = DisputeStatus
#: 0 open and waiting for evidence, 1 under review, 2 closed (final).
DISPUTE_STAGE: dict[DisputeStatus, int] = {
    _D.WARNING_NEEDS_RESPONSE: 0,
    _D.NEEDS_RESPONSE: 0,
    _D.WARNING_UNDER_REVIEW: 1,
    _D.UNDER_REVIEW: 1,
    _D.WARNING_CLOSED: 2,
    _D.PREVENTED: 2,
    _D.WON: 2,
    _D.LOST: 2,
}
DISPUTE_MOVES: dict[DisputeStatus, frozenset[DisputeStatus]] = {
    status: frozenset(
        other
        for other, stage in DISPUTE_STAGE.items()
        if stage > DISPUTE_STAGE[status]
        or (stage == DISPUTE_STAGE[status] and stage < 2 and other != status)
    )
    for status in DisputeStatus
}


class Dispute(Model):
    """A dispute (chargeback or inquiry) of a gift's charge: a fact about the payment with its
    own status, beside any refunds. The gift's dispute_status summarises these rows."""

    __tablename__ = "disputes"

    id: Mapped[int] = mapped_column(primary_key=True)
    donation_id: Mapped[int] = mapped_column(
        ForeignKey("donations.id", ondelete="RESTRICT"), index=True
    )
    stripe_dispute_id: Mapped[str] = mapped_column(String(255), unique=True)
    amount_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[DisputeStatus] = mapped_column(_enum(DisputeStatus))
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]

    def advance(self, target: DisputeStatus) -> bool:
        """Move to Stripe's newer status; an older one (delivered late) changes nothing."""
        if target == self.status or DISPUTE_STAGE[target] < DISPUTE_STAGE[self.status]:
            return False
        if self.closed:
            return False  # a closed dispute's outcome is final
        check_move(DISPUTE_MOVES, self.status, target, f"dispute {self.id}")
        self.status = target
        return True

    @property
    def closed(self) -> bool:
        return DISPUTE_STAGE[self.status] == 2


class ReceiptCounter(Model):
    """The last receipt number given in each year; its row lock serialises numbering."""

    __tablename__ = "receipt_counters"

    year: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(default=0)


class Receipt(Model):
    __tablename__ = "receipts"
    __table_args__ = (UniqueConstraint("year", "sequence"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    donation_id: Mapped[int] = mapped_column(
        ForeignKey("donations.id", ondelete="RESTRICT"), unique=True
    )
    year: Mapped[int]
    sequence: Mapped[int]
    #: e.g. "2026-000042": unique, sequential within the year, never reused.
    number: Mapped[str] = mapped_column(String(20), unique=True)
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)

    donation: Mapped[Donation] = relationship(back_populates="receipt")


class GiftAidScope(StrEnum):
    #: This gift, gifts in the past four years, and all future gifts until cancelled.
    ALL = "all"
    #: Only the gift it was made with.
    SINGLE = "single"


class GiftAidDeclaration(Model):
    """A donor's Gift Aid declaration, with the fields HMRC requires (docs/gift-aid.md)."""

    __tablename__ = "gift_aid_declarations"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: What the mailed confirmation link names the declaration by (the row id counts up).
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    donor_id: Mapped[int] = mapped_column(ForeignKey("donors.id", ondelete="RESTRICT"), index=True)
    title: Mapped[str | None] = mapped_column(String(4))
    first_name: Mapped[str] = mapped_column(String(35))
    last_name: Mapped[str] = mapped_column(String(35))
    house: Mapped[str] = mapped_column(String(100))
    address_line: Mapped[str | None] = mapped_column(String(200))
    postcode: Mapped[str] = mapped_column(String(10))
    scope: Mapped[GiftAidScope] = mapped_column(_enum(GiftAidScope, 8))
    text_version: Mapped[str] = mapped_column(String(16))
    #: "web" (the only channel so far), "oral" or "paper".
    channel: Mapped[str] = mapped_column(String(8), default="web")
    declared_at: Mapped[datetime] = mapped_column(default=utcnow)
    cancelled_at: Mapped[datetime | None]
    #: When the gift (or plan) it was made with was paid. Until then it covers nothing, so a
    #: declaration from an abandoned checkout never takes effect.
    effective_at: Mapped[datetime | None]
    #: When the donor confirmed the "all gifts" scope: signed in with a verified account that
    #: owns the address, or through the signed link mailed to it. Until then a declaration
    #: covers only the gift (or the plan's gifts) it was made with.
    confirmed_at: Mapped[datetime | None]

    donor: Mapped[Donor] = relationship()

    def covers(self, donation: Donation, when: datetime) -> bool:
        if self.effective_at is None:
            return False
        if self.cancelled_at is not None and self.cancelled_at <= when:
            return False
        if self.scope is GiftAidScope.SINGLE or self.confirmed_at is None:
            # Linked from the gift (or the plan's instalments) it was made with.
            return donation.gift_aid_declaration_id == self.id
        return True


class CheckoutSessionRecord(Model):
    """Every Checkout Session ever opened for a gift or plan, so any session's events and
    return page map to the row after "Try again" opened a newer one."""

    __tablename__ = "checkout_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(String(255), unique=True)
    donation_id: Mapped[int | None] = mapped_column(
        ForeignKey("donations.id", ondelete="CASCADE"), index=True
    )
    plan_id: Mapped[int | None] = mapped_column(
        ForeignKey("recurring_plans.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GiftAidClaim(Model):
    """One export of claimable gifts in HMRC's schedule; each gift is claimed once."""

    __tablename__ = "gift_aid_claims"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    rows: Mapped[int]
    total_minor: Mapped[int]


# The back office: notes, consents, offline gifts, refunds, erasures ---------------------


class DonorNote(Model):
    """A staff note on a donor. Overwritten (not deleted) when the donor is erased."""

    __tablename__ = "donor_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    donor_id: Mapped[int] = mapped_column(ForeignKey("donors.id", ondelete="RESTRICT"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DonorConsent(Model):
    """A donor's marketing consent per channel, as history: the newest row per channel holds.

    `source` records the collection context (docs/gift-aid.md): e.g. "web_gift", "staff", "paper".
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
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))


class OfflineGift(Model):
    """How a gift entered by staff arrived: cash, cheque or bank transfer."""

    __tablename__ = "offline_gifts"

    id: Mapped[int] = mapped_column(primary_key=True)
    donation_id: Mapped[int] = mapped_column(
        ForeignKey("donations.id", ondelete="RESTRICT"), unique=True
    )
    #: "cash", "cheque" or "bank_transfer".
    method: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str | None] = mapped_column(String(64))
    received_on: Mapped[date]
    entered_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
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
    _R.REQUESTED: 0,
    _R.PENDING: 1,
    _R.REQUIRES_ACTION: 1,
    _R.SUCCEEDED: 2,
    _R.FAILED: 3,
    _R.CANCELED: 3,
    _R.NOT_SENT: 3,
}
REFUND_MOVES: dict[RefundStatus, frozenset[RefundStatus]] = {
    _R.REQUESTED: frozenset(
        {_R.PENDING, _R.REQUIRES_ACTION, _R.SUCCEEDED, _R.FAILED, _R.CANCELED, _R.NOT_SENT}
    ),
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
    donation_id: Mapped[int] = mapped_column(
        ForeignKey("donations.id", ondelete="RESTRICT"), index=True
    )
    amount_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    #: "requested_by_customer", "duplicate", "fraudulent" or "other".
    reason: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[RefundStatus] = mapped_column(
        Enum(
            RefundStatus,
            native_enum=False,
            length=16,
            validate_strings=True,
            values_callable=lambda members: [m.value for m in members],
        ),
        default=RefundStatus.REQUESTED,
    )
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    #: refund-<id>-<random> for a staff refund; None for one made outside DonorHub.
    idempotency_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    #: The one-time token of the form that asked for it: a second submit of the same form
    #: finds this row instead of refunding again.
    request_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    #: Stripe's failure_reason, or why it was not sent.
    failure_reason: Mapped[str | None] = mapped_column(String(64))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
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
    donor_id: Mapped[int] = mapped_column(ForeignKey("donors.id", ondelete="RESTRICT"), unique=True)
    data_request_id: Mapped[int | None] = mapped_column(
        ForeignKey("data_requests.id", ondelete="RESTRICT")
    )
    erased_at: Mapped[datetime] = mapped_column(default=utcnow)
    erased_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    stripe_customers_deleted: Mapped[int] = mapped_column(default=0)


class PlanPaymentFailure(Model):
    """A failed instalment (one Stripe invoice of a plan) and whether it was paid later."""

    __tablename__ = "plan_payment_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(
        ForeignKey("recurring_plans.id", ondelete="CASCADE"), index=True
    )
    stripe_invoice_id: Mapped[str] = mapped_column(String(255), unique=True)
    currency: Mapped[str] = mapped_column(String(3))
    amount_due_minor: Mapped[int]
    failed_at: Mapped[datetime] = mapped_column(index=True)
    attempts: Mapped[int] = mapped_column(default=1)
    reason_code: Mapped[str | None] = mapped_column(String(64))
    recovered_at: Mapped[datetime | None]
    recovered_amount_minor: Mapped[int | None]
