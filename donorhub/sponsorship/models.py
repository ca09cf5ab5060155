"""Sponsorships, the places they occupy, code-of-conduct acceptances, suspensions, portal
messages and the disclosure ledger.

A child has SPONSORS_PER_CHILD places. A hold and a live sponsorship both occupy one: a row
in `sponsorship_places`, unique per (child, place number), claimed by INSERT. Two sponsors
can therefore never take the same place, whatever the timing: the database refuses the
second insert. Releasing a hold or ending a sponsorship deletes its place row in the same
transaction as the status change.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from donorhub.database import TimestampMixin, check_move, utcnow
from donorhub.extensions import Model


def new_public_id() -> str:
    """The opaque id Stripe sees in metadata: random, says nothing about the child."""
    return uuid.uuid4().hex


def new_portal_token() -> str:
    """256 random bits: the only handle on a sponsorship in the sponsor's portal URLs."""
    return secrets.token_urlsafe(32)


def _enum(kind: type[StrEnum], length: int = 24) -> Enum:
    return Enum(
        kind,
        native_enum=False,
        length=length,
        validate_strings=True,
        values_callable=lambda members: [m.value for m in members],
    )


class SponsorshipStatus(StrEnum):
    PENDING = "pending"  # a place is held while the sponsor pays
    ACTIVE = "active"
    PAST_DUE = "past_due"  # a payment failed (or collection paused); grace period runs
    LAPSED = "lapsed"  # past due longer than the grace period; place freed
    CANCELLED = "cancelled"  # the sponsor stopped it
    EXPIRED = "expired"  # the hold ran out (or the child was unlisted) before payment
    MOVED_ON = "moved_on"  # the child exited: collection stopped, sponsor chooses next
    UNPLACED = "unplaced"  # paid after the hold was gone and the place taken: chooses
    ENDED = "ended"  # closed by the sponsor's choice after moved_on / unplaced


_S = SponsorshipStatus
SPONSORSHIP_MOVES: dict[SponsorshipStatus, frozenset[SponsorshipStatus]] = {
    _S.PENDING: frozenset(
        {_S.ACTIVE, _S.PAST_DUE, _S.EXPIRED, _S.CANCELLED, _S.MOVED_ON, _S.LAPSED}
    ),
    # LAPSED: paid after all, and Stripe had ended it (its end heard before its payment).
    _S.EXPIRED: frozenset({_S.ACTIVE, _S.PAST_DUE, _S.UNPLACED, _S.LAPSED}),
    _S.ACTIVE: frozenset({_S.PAST_DUE, _S.CANCELLED, _S.MOVED_ON, _S.LAPSED}),
    _S.PAST_DUE: frozenset({_S.ACTIVE, _S.CANCELLED, _S.MOVED_ON, _S.LAPSED}),
    _S.MOVED_ON: frozenset({_S.ENDED}),
    _S.UNPLACED: frozenset({_S.ENDED}),
    _S.LAPSED: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.ENDED: frozenset(),
}
#: Statuses that occupy a place.
PLACE_HOLDING = frozenset({_S.PENDING, _S.ACTIVE, _S.PAST_DUE})
#: Statuses in which the sponsor sees the child's released profile and updates.
SHOWS_CHILD = frozenset({_S.ACTIVE, _S.PAST_DUE})
#: Statuses in which the sponsor is asked to choose what happens to the gift.
AWAITS_CHOICE = frozenset({_S.MOVED_ON, _S.UNPLACED})


class Sponsorship(TimestampMixin, Model):
    __tablename__ = "sponsorships"
    __table_args__ = (
        # One open hold per account, whatever the timing: a second concurrent insert fails.
        Index(
            "uq_sponsorships_one_hold_per_user",
            "user_id",
            unique=True,
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Stripe's metadata {"sponsorship": public_id}; nothing else about it reaches Stripe.
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    #: In every portal URL; never the child's id or public token.
    portal_token: Mapped[str] = mapped_column(String(64), unique=True, default=new_portal_token)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    #: NULL only if the child record is ever deleted: the financial record stays.
    child_id: Mapped[int | None] = mapped_column(
        ForeignKey("children.id", ondelete="SET NULL"), index=True
    )
    plan_id: Mapped[int | None] = mapped_column(
        ForeignKey("recurring_plans.id", ondelete="RESTRICT"), unique=True
    )
    status: Mapped[SponsorshipStatus] = mapped_column(
        _enum(SponsorshipStatus), default=SponsorshipStatus.PENDING, index=True
    )
    amount_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))

    hold_expires_at: Mapped[datetime | None]
    checkout_attempt: Mapped[int] = mapped_column(default=1)
    checkout_expires_at: Mapped[datetime | None]
    stripe_checkout_session_id: Mapped[str | None] = mapped_column(String(255), unique=True)

    started_at: Mapped[datetime | None]
    past_due_since: Mapped[datetime | None]
    lapsed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    #: After moved_on / unplaced: "new_match", "general_fund" or "stop".
    outcome: Mapped[str | None] = mapped_column(String(16))
    #: When Stripe was told to stop collecting after the child's exit (or unplacement).
    collection_stopped_at: Mapped[datetime | None]
    #: When the neutral notice (mail + portal message) went to the sponsor.
    notified_at: Mapped[datetime | None]
    #: When the hold ran out unpaid (not replaced, not ended because the child left): too
    #: many of these in a day make the account wait before holding a child again.
    hold_timed_out_at: Mapped[datetime | None]

    plan = relationship("RecurringPlan")
    child = relationship("Child")
    user = relationship("User")

    def move(self, target: SponsorshipStatus) -> None:
        current = self.status or _S.PENDING
        if target == current:
            return
        check_move(SPONSORSHIP_MOVES, current, target, f"sponsorship {self.id}")
        self.status = target

    def __repr__(self) -> str:
        return f"<Sponsorship {self.id} {self.status}>"


class SponsorshipPlace(Model):
    """One of a child's SPONSORS_PER_CHILD places, taken by a hold or a live sponsorship."""

    __tablename__ = "sponsorship_places"
    __table_args__ = (
        UniqueConstraint("child_id", "place_number"),
        CheckConstraint("place_number >= 1", name="place_number_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    child_id: Mapped[int] = mapped_column(ForeignKey("children.id", ondelete="CASCADE"), index=True)
    place_number: Mapped[int]
    sponsorship_id: Mapped[int] = mapped_column(
        ForeignKey("sponsorships.id", ondelete="CASCADE"), unique=True
    )
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConductAcceptance(Model):
    """A sponsor accepted one version of the child-protection code of conduct (conduct.py)."""

    __tablename__ = "conduct_acceptances"
    __table_args__ = (UniqueConstraint("user_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    version: Mapped[str] = mapped_column(String(16))
    accepted_at: Mapped[datetime] = mapped_column(default=utcnow)


class SponsorSuspension(Model):
    """A safeguarding suspension: while open (lifted_at NULL) the sponsor sees no child."""

    __tablename__ = "sponsor_suspensions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: A short code ("concern_raised", "conduct_breach", "review", ...), never free text.
    reason: Mapped[str] = mapped_column(String(32))
    suspended_at: Mapped[datetime] = mapped_column(default=utcnow)
    suspended_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    lifted_at: Mapped[datetime | None]
    lifted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    user = relationship("User", foreign_keys=[user_id])


class SponsorMessage(Model):
    """A message in the sponsor's portal. The words come from a fixed template per kind."""

    __tablename__ = "sponsor_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    sponsorship_id: Mapped[int] = mapped_column(
        ForeignKey("sponsorships.id", ondelete="CASCADE"), index=True
    )
    #: "moved_on", "unplaced" or "lapsed".
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Disclosure(Model):
    """Append-only ledger: what a sponsor was shown of a child, and when.

    One row per sponsorship, identical content and day (dedupe); a change of content or a new
    day writes a new row. Nothing in the application updates or deletes these rows.
    """

    __tablename__ = "sponsor_disclosures"
    __table_args__ = (UniqueConstraint("sponsorship_id", "content_hash", "shown_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    sponsorship_id: Mapped[int] = mapped_column(
        ForeignKey("sponsorships.id", ondelete="RESTRICT"), index=True
    )
    child_id: Mapped[int | None] = mapped_column(
        ForeignKey("children.id", ondelete="SET NULL"), index=True
    )
    #: SHA-256 of the profile fields shown (canonical JSON).
    profile_hash: Mapped[str] = mapped_column(String(64))
    #: The ChildUpdate ids shown, in order.
    update_ids: Mapped[list] = mapped_column(JSON, default=list)
    #: SHA-256 of the safe homes' news and counts shown beside the child (pooled at her
    #: released level); None when none were shown.
    home_hash: Mapped[str | None] = mapped_column(String(64))
    #: The ChildUpdate ids of the homes' news shown, newest first.
    home_update_ids: Mapped[list | None] = mapped_column(JSON, default=list)
    #: SHA-256 over profile_hash, the shown update texts and home_hash: equal means the same
    #: facts.
    content_hash: Mapped[str] = mapped_column(String(64))
    #: "YYYY-MM-DD" (UTC), for the once-a-day dedupe.
    shown_on: Mapped[str] = mapped_column(String(10))
    shown_at: Mapped[datetime] = mapped_column(default=utcnow)
