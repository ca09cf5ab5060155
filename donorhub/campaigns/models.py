"""Campaigns: a public appeal with a goal, a page and a life cycle.

Money is an integer of minor units plus a lower-case ISO code, never a float.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Enum, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from donorhub.database import TimestampMixin, check_move, utcnow
from donorhub.extensions import Model


class CampaignStatus(StrEnum):
    DRAFT = "draft"  # staff only
    LIVE = "live"  # published: public page, home page, JSON total
    CLOSED = "closed"  # the public page stays (totals frozen in meaning), no more giving


CAMPAIGN_MOVES: dict[CampaignStatus, frozenset[CampaignStatus]] = {
    CampaignStatus.DRAFT: frozenset({CampaignStatus.LIVE}),
    CampaignStatus.LIVE: frozenset({CampaignStatus.CLOSED}),
    CampaignStatus.CLOSED: frozenset(),
}


class Campaign(TimestampMixin, Model):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    summary: Mapped[str] = mapped_column(String(300))
    #: Markdown, rendered through markdown-it-py then nh3 with an allow-list.
    body_md: Mapped[str] = mapped_column(Text, default="")
    goal_minor: Mapped[int]
    goal_currency: Mapped[str] = mapped_column(String(3))
    starts_on: Mapped[date]
    ends_on: Mapped[date | None]
    #: The appeal (source) code printed on letters and used in reports.
    appeal_code: Mapped[str] = mapped_column(String(32), unique=True)
    status: Mapped[CampaignStatus] = mapped_column(
        Enum(
            CampaignStatus,
            native_enum=False,
            length=16,
            validate_strings=True,
            values_callable=lambda members: [m.value for m in members],
        ),
        default=CampaignStatus.DRAFT,
        index=True,
    )
    published_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))

    def move_to(self, target: CampaignStatus) -> None:
        check_move(CAMPAIGN_MOVES, self.status, target, f"campaign {self.id}")
        self.status = target
        if target is CampaignStatus.LIVE:
            self.published_at = utcnow()
        elif target is CampaignStatus.CLOSED:
            self.closed_at = utcnow()

    def __repr__(self) -> str:
        return f"<Campaign {self.id} {self.status}>"


# Running totals ------------------------------------------------------------------------------
#
# Kept by the database itself: triggers on `donations` (migration 0020_campaign_totals)
# add each gift's counted amount when it starts to count and take it away when it stops, in
# the statement (and so the transaction) that changes the gift, whoever changes it: the ORM,
# a bulk UPDATE, raw SQL or COPY. Nothing in Python writes these tables except the repair
# (services.repair_totals), which rewrites them from a full recount. What counts is the rule of
# donorhub/donations/models.py (COUNTED_STATUSES, net_gift_expression); docs/campaigns.md.


class CampaignTotal(Model):
    """The counted money of one campaign in one currency: Σ net and the number of gifts."""

    __tablename__ = "campaign_totals"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    raised_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    gifts: Mapped[int] = mapped_column(default=0)


class CampaignDonor(Model):
    """How many counted gifts one donor has in one campaign (rows at 0 stay), so the number
    of distinct donors moves exactly when a donor's first gift starts or last gift stops
    counting."""

    __tablename__ = "campaign_donors"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    donor_id: Mapped[int] = mapped_column(
        ForeignKey("donors.id", ondelete="CASCADE"), primary_key=True
    )
    gifts: Mapped[int] = mapped_column(default=0)


class CampaignDonorCount(Model):
    """The number of distinct donors with a counted gift in one campaign."""

    __tablename__ = "campaign_donor_counts"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    donors: Mapped[int] = mapped_column(default=0)
