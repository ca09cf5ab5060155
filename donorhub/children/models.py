"""Child data held by the platform (tier T1).

Nothing of tier T0 has a column here: no name, no date of birth, no place of origin, no
partner reference in clear. What sponsors and the public may see is the released copy
(`ChildRelease`), recomputed by the release checks on the fixed public schedule.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import JSON, Enum, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from donorhub.database import utcnow
from donorhub.extensions import Model


def enum_column(enum_class, length: int = 24):
    return Enum(
        enum_class,
        native_enum=False,
        length=length,
        validate_strings=True,
        values_callable=lambda members: [m.value for m in members],
    )


class ChildStatus(StrEnum):
    ACTIVE = "active"
    EXITED = "exited"


class ReviewStatus(StrEnum):
    """Free text from the feed: nobody outside safeguarding sees it until APPROVED."""

    PENDING = "pending"  # passed the PII guard; waits for an officer
    QUARANTINED = "quarantined"  # the PII guard fired; waits for an officer
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"  # exit or withdrawn consent: purged from every view


class Child(Model):
    __tablename__ = "children"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: HMAC-SHA256 of the partner's reference under FEED_PSEUDONYM_KEY; never the reference.
    ref_hash: Mapped[str] = mapped_column(String(64), unique=True)
    alias: Mapped[str] = mapped_column(String(40), unique=True)
    #: Random; the only handle on a child that ever appears in a public URL.
    public_token: Mapped[str] = mapped_column(String(43), unique=True)
    illustration: Mapped[int] = mapped_column(default=0)
    status: Mapped[ChildStatus] = mapped_column(
        enum_column(ChildStatus), default=ChildStatus.ACTIVE, index=True
    )
    home_code: Mapped[str] = mapped_column(String(16), index=True)
    age_band: Mapped[str] = mapped_column(String(8))
    gender: Mapped[str] = mapped_column(String(16))
    region: Mapped[str] = mapped_column(String(64))
    stage: Mapped[str] = mapped_column(String(32))
    joined_year: Mapped[int]
    interests: Mapped[list] = mapped_column(JSON, default=list)
    consent_profile: Mapped[bool] = mapped_column(default=False)
    consent_updates: Mapped[bool] = mapped_column(default=False)
    consent_basis: Mapped[str] = mapped_column(String(32))
    #: The last quarter the consent covers, "YYYY-Qn".
    consent_expires: Mapped[str] = mapped_column(String(7))
    #: Keyed hash of the last record imported for this child, to tell "unchanged" from
    #: "updated"; keyed, because the record holds the partner's text.
    content_hash: Mapped[str] = mapped_column(String(64))
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    exited_period: Mapped[str | None] = mapped_column(String(7))
    exited_at: Mapped[datetime | None]

    about: Mapped[ChildText | None] = relationship(
        back_populates="child",
        uselist=False,
        cascade="all, delete-orphan",
        primaryjoin="and_(Child.id == ChildText.child_id)",
    )
    release: Mapped[ChildRelease | None] = relationship(
        back_populates="child", uselist=False, cascade="all, delete-orphan"
    )

    def __repr__(self) -> str:
        return f"<Child {self.id}>"


class ChildText(Model):
    """The partner's `about` text for a child, and the safeguarding decision on it."""

    __tablename__ = "child_texts"

    id: Mapped[int] = mapped_column(primary_key=True)
    child_id: Mapped[int] = mapped_column(
        ForeignKey("children.id", ondelete="CASCADE"), unique=True
    )
    #: As the partner sent it, while it waits for a decision. Shown only to safeguarding
    #: officers, flagged spans masked; erased by the decision (approve, reject, withdraw).
    original: Mapped[str | None] = mapped_column(Text)
    #: Keyed hash (FEED_PSEUDONYM_KEY) of what the partner sent; kept after the decision, so
    #: it proves what was received and a re-sent identical text is recognised.
    original_hash: Mapped[str | None] = mapped_column(String(64))
    #: What sponsors read once approved (the officer may have edited it).
    approved: Mapped[str | None] = mapped_column(Text)
    status: Mapped[ReviewStatus] = mapped_column(enum_column(ReviewStatus), index=True)
    findings: Mapped[list] = mapped_column(JSON, default=list)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reviewed_at: Mapped[datetime | None]

    child: Mapped[Child] = relationship(back_populates="about")


class ChildUpdate(Model):
    """One piece of news from the feed, about one child or one home."""

    __tablename__ = "child_updates"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: Keyed hash of the partner's update id: the id is theirs, not ours to show.
    source_hash: Mapped[str] = mapped_column(String(64), unique=True)
    child_id: Mapped[int | None] = mapped_column(
        ForeignKey("children.id", ondelete="CASCADE"), index=True
    )
    home_code: Mapped[str | None] = mapped_column(String(16), index=True)
    period: Mapped[str] = mapped_column(String(7), index=True)
    category: Mapped[str] = mapped_column(String(32))
    milestones: Mapped[list] = mapped_column(JSON, default=list)
    #: As the partner sent it, until the decision erases it (see ChildText.original).
    original_text: Mapped[str | None] = mapped_column(Text)
    #: Keyed hash of the text the partner sent; None when the update carried none.
    original_hash: Mapped[str | None] = mapped_column(String(64))
    approved_text: Mapped[str | None] = mapped_column(Text)
    status: Mapped[ReviewStatus] = mapped_column(enum_column(ReviewStatus), index=True)
    findings: Mapped[list] = mapped_column(JSON, default=list)
    content_hash: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reviewed_at: Mapped[datetime | None]
    #: Set by the publication schedule; a published update is never replaced.
    published_at: Mapped[datetime | None]
    publication_id: Mapped[int | None] = mapped_column(ForeignKey("publications.id"), index=True)

    child: Mapped[Child | None] = relationship()


class HomeStat(Model):
    __tablename__ = "home_stats"
    __table_args__ = (UniqueConstraint("home_code", "period"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    home_code: Mapped[str] = mapped_column(String(16))
    period: Mapped[str] = mapped_column(String(7))
    children_in_care: Mapped[int]
    in_school: Mapped[int]
    in_vocational_training: Mapped[int]
    reintegrated: Mapped[int]
    new_arrivals: Mapped[int]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ChildRelease(Model):
    """What the release checks allow sponsors and the public to see of one child.

    Recomputed for every child at each publication (`publish_releases`, on a fixed weekly
    schedule) and at no other moment: changes between publications (arrivals, exits,
    sponsorships) reach public pages only then, all together.
    """

    __tablename__ = "child_releases"
    __table_args__ = (
        Index("ix_child_releases_listing", "is_listed", "list_order"),
        Index("ix_child_releases_list_day", "is_listed", "list_day"),
        Index("ix_child_releases_match", "long_wait", "match_rank"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    child_id: Mapped[int] = mapped_column(
        ForeignKey("children.id", ondelete="CASCADE"), unique=True
    )
    #: True: her card is on the public listing until the next publication (open, or
    #: "sponsored"), even if she has left since. False: nothing of her is shown anywhere (no
    #: consent, exited, or the release checks could not hide her in a crowd of K).
    is_listed: Mapped[bool] = mapped_column(default=False)
    #: Her card offers sponsorship: she had a free place at the publication. Frozen until the
    #: next one, so the listing never shows the moment of a sponsorship or of an exit.
    shown_open: Mapped[bool] = mapped_column(default=False)
    updates_allowed: Mapped[bool] = mapped_column(default=False)
    age_text: Mapped[str | None] = mapped_column(String(32))
    gender_text: Mapped[str | None] = mapped_column(String(16))
    region_text: Mapped[str | None] = mapped_column(String(64))
    stage_text: Mapped[str | None] = mapped_column(String(64))
    joined_text: Mapped[str | None] = mapped_column(String(32))
    interests: Mapped[list] = mapped_column(JSON, default=list)
    #: How far the attributes had to be generalised (0 = as sent), for staff.
    level: Mapped[int] = mapped_column(default=0)
    crowd_size: Mapped[int] = mapped_column(default=0)
    #: Bounds on every later card, from the cards she was shown with: never a level finer
    #: than `floor_level`, never an interest outside `interests_cap`, never her state once
    #: withheld. None: never shown.
    floor_level: Mapped[int | None]
    interests_cap: Mapped[list | None] = mapped_column(JSON)
    region_withheld: Mapped[bool] = mapped_column(default=False)
    #: The publication that first listed her: "Match me" measures waiting from it, a moment
    #: the public already saw.
    first_listed_at: Mapped[datetime | None]
    #: Her place in the listing on `list_day` (UTC): a keyed hash of the day and her public
    #: token (`children.services.listing_order_key`), so the order is the same for everyone
    #: all day, new each day and unrelated to arrival. Written for every listed card at each
    #: publication and at the start of each UTC day (`shuffle_listing`), so /sponsor pages in
    #: SQL by an index instead of sorting every card on every request.
    list_order: Mapped[str | None] = mapped_column(String(64))
    list_day: Mapped[date | None]
    #: "Match me"'s waiting band at the publication: first listed at least LONG_WAIT before.
    long_wait: Mapped[bool] = mapped_column(default=False)
    #: An open card's random place 0..n-1 among the open cards of its band, drawn at each
    #: publication, so "Match me" picks uniformly without counting every card. None: not
    #: open at the publication (or not listed).
    match_rank: Mapped[int | None]
    computed_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    child: Mapped[Child] = relationship(back_populates="release")


class AliasUse(Model):
    """Every alias ever given out. Kept after a child leaves, so no alias is reused."""

    __tablename__ = "alias_uses"

    id: Mapped[int] = mapped_column(primary_key=True)
    alias: Mapped[str] = mapped_column(String(40), unique=True)
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)


class ExitNotice(Model):
    """A neutral notice owed to a child's sponsors, sent after a random delay."""

    __tablename__ = "exit_notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    child_id: Mapped[int] = mapped_column(
        ForeignKey("children.id", ondelete="CASCADE"), unique=True
    )
    notify_after: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    #: The released fields sponsors were shown at the exit (children/services.py
    #: SHOWN_RELEASE_FIELDS), kept so their portal shows the same until the notice; None when
    #: the child was not shown to anyone. Coded texts only, never free text.
    shown_release: Mapped[dict | None] = mapped_column(JSON)
