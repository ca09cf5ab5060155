"""Campaigns: create, edit, publish, close; totals that stay right with refunds, disputes
and several currencies (converted with the rates of donorhub/money.py); sanitised Markdown.

What counts as raised (docs/campaigns.md): for each gift linked to the campaign whose status
is paid or partially refunded, `amount − refunded − fee cover`, never below zero. Open
disputes and lost disputes (charge-backs) count nothing, because the bank has taken the
money back; a won dispute returns the gift to paid and it counts again. Pending, failed,
expired and needs-review gifts count nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING

import nh3
from markdown_it import MarkdownIt
from sqlalchemy import func, select

from donorhub.audit import record_audit
from donorhub.campaigns.models import Campaign, CampaignStatus
from donorhub.database import uk_today
from donorhub.donations.models import (
    COUNTED_STATUSES,
    Donation,
    net_gift_expression,
)
from donorhub.errors import DomainError
from donorhub.extensions import db
from donorhub.money import Converted, convert, current_rates

if TYPE_CHECKING:
    from donorhub.accounts.models import User


# Markdown --------------------------------------------------------------------------------

ALLOWED_TAGS = {
    "p",
    "br",
    "hr",
    "h2",
    "h3",
    "h4",
    "strong",
    "em",
    "a",
    "ul",
    "ol",
    "li",
    "blockquote",
    "code",
    "pre",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}
ALLOWED_URL_SCHEMES = {"https", "http", "mailto"}
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).disable("image")


def render_markdown(source: str) -> str:
    """Markdown to safe HTML: raw HTML is not passed through, images are not rendered
    (the CSP allows only our own), and nh3 keeps only the allow-listed tags."""
    html = _markdown.render(source or "")
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=ALLOWED_URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


# Totals ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Totals:
    by_currency: dict[str, int]
    donors: int
    gifts: int
    converted: Converted
    goal_minor: int
    goal_currency: str

    @property
    def percent(self) -> int:
        if self.goal_minor <= 0:
            return 0
        return min(100, self.converted.total_minor * 100 // self.goal_minor)

    @property
    def raised_minor(self) -> int:
        return self.converted.total_minor


def campaign_totals(campaign: Campaign, rates: dict[str, Decimal] | None = None) -> Totals:
    net = net_gift_expression()
    counted = Donation.campaign_id == campaign.id
    rows = db.session.execute(
        select(Donation.currency, func.sum(net), func.count())
        .where(counted, Donation.status.in_(COUNTED_STATUSES), net > 0)
        .group_by(Donation.currency)
    ).all()
    by_currency = {currency: int(total or 0) for currency, total, _ in rows}
    gifts = sum(int(n) for _, _, n in rows)
    donors = (
        db.session.scalar(
            select(func.count(func.distinct(Donation.donor_id))).where(
                counted, Donation.status.in_(COUNTED_STATUSES), net > 0
            )
        )
        or 0
    )
    from flask import current_app

    if rates is None:
        rates = current_rates(current_app.config["REPORTING_CURRENCY"])
    return Totals(
        by_currency,
        int(donors),
        gifts,
        convert(by_currency, campaign.goal_currency, rates),
        campaign.goal_minor,
        campaign.goal_currency,
    )


# Campaign life cycle -------------------------------------------------------------------------

_EDITABLE = (
    "name",
    "slug",
    "summary",
    "body_md",
    "goal_minor",
    "goal_currency",
    "starts_on",
    "ends_on",
    "appeal_code",
)


def _check_unique(data: dict, campaign_id: int | None) -> None:
    for column, label in ((Campaign.slug, "slug"), (Campaign.appeal_code, "appeal code")):
        key = column.key
        clash = db.session.scalar(select(Campaign.id).where(column == data[key]))
        if clash is not None and clash != campaign_id:
            raise DomainError(f"Another campaign already uses that {label}.")


def create_campaign(data: dict, actor: User) -> Campaign:
    _check_unique(data, None)
    campaign = Campaign(
        **{k: data[k] for k in _EDITABLE}, created_by_id=actor.id, status=CampaignStatus.DRAFT
    )
    db.session.add(campaign)
    db.session.flush()
    record_audit(actor, "campaign.created", "campaign", campaign.id, {})
    return campaign


def update_campaign(campaign: Campaign, data: dict, actor: User) -> Campaign:
    _check_unique(data, campaign.id)
    if campaign.status is not CampaignStatus.DRAFT and (
        data["goal_currency"] != campaign.goal_currency
    ):
        raise DomainError("The goal currency cannot change once the campaign is published.")
    if campaign.status is not CampaignStatus.DRAFT and data["slug"] != campaign.slug:
        raise DomainError("The address cannot change once the campaign is published.")
    changed = [k for k in _EDITABLE if getattr(campaign, k) != data[k]]
    for key in _EDITABLE:
        setattr(campaign, key, data[key])
    db.session.flush()
    record_audit(actor, "campaign.edited", "campaign", campaign.id, {"fields": len(changed)})
    return campaign


def publish_campaign(campaign: Campaign, actor: User) -> None:
    campaign.move_to(CampaignStatus.LIVE)
    record_audit(actor, "campaign.published", "campaign", campaign.id, {})


def close_campaign(campaign: Campaign, actor: User) -> None:
    campaign.move_to(CampaignStatus.CLOSED)
    record_audit(actor, "campaign.closed", "campaign", campaign.id, {})


def all_campaigns() -> list[Campaign]:
    return list(db.session.scalars(select(Campaign).order_by(Campaign.id.desc())))


def get_campaign(campaign_id: int) -> Campaign | None:
    return db.session.get(Campaign, campaign_id)


def is_open_for_gifts(campaign: Campaign, today: date | None = None) -> bool:
    today = today or uk_today()
    return (
        campaign.status is CampaignStatus.LIVE
        and campaign.starts_on <= today
        and (campaign.ends_on is None or today <= campaign.ends_on)
    )


def live_campaigns(today: date | None = None) -> list[Campaign]:
    """Published campaigns whose dates include today, soonest ending first."""
    rows = db.session.scalars(
        select(Campaign)
        .where(Campaign.status == CampaignStatus.LIVE)
        .order_by(Campaign.ends_on, Campaign.id)
    ).all()
    return [c for c in rows if is_open_for_gifts(c, today)]


def public_campaign(slug: str) -> Campaign | None:
    """A campaign the public may see: live or closed, never a draft."""
    return db.session.scalar(
        select(Campaign).where(
            Campaign.slug == slug, Campaign.status.in_((CampaignStatus.LIVE, CampaignStatus.CLOSED))
        )
    )


def campaign_for_gift(slug: str) -> Campaign | None:
    """The campaign a new gift may go to, or None when it is not taking gifts."""
    campaign = public_campaign(slug)
    return campaign if campaign is not None and is_open_for_gifts(campaign) else None


def campaign_choices() -> list[tuple[int, str]]:
    return [(c.id, c.name) for c in db.session.scalars(select(Campaign).order_by(Campaign.name))]


@dataclass
class Thermometer:
    """Geometry of the SVG thermometer, computed here so the template only draws."""

    percent: int
    height: int = 200
    tube_top: int = 10
    tube_height: int = 150
    fill_height: int = field(init=False)
    fill_y: int = field(init=False)

    def __post_init__(self) -> None:
        self.fill_height = self.tube_height * self.percent // 100
        self.fill_y = self.tube_top + self.tube_height - self.fill_height
