"""Campaigns: create, edit, publish, close; totals that stay right with refunds, disputes
and several currencies (converted with the rates of donorhub/money.py); sanitised Markdown.

What counts as raised (docs/campaigns.md): for each gift linked to the campaign whose status
is paid or partially refunded, `amount − refunded − fee cover`, never below zero. Open
disputes and lost disputes (charge-backs) count nothing, because the bank has taken the
money back; a won dispute returns the gift to paid and it counts again. Pending, failed,
expired and needs-review gifts count nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING

import nh3
from markdown_it import MarkdownIt
from sqlalchemy import delete, false, func, insert, or_, select, text, update

from donorhub.audit import record_audit
from donorhub.campaigns.models import (
    Campaign,
    CampaignDonor,
    CampaignDonorCount,
    CampaignStatus,
    CampaignTotal,
)
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


@lru_cache(maxsize=256)
def render_markdown(source: str) -> str:
    """Markdown to safe HTML: raw HTML is not passed through, images are not rendered
    (the CSP allows only our own), and nh3 keeps only the allow-listed tags.

    A pure function of the text, so each worker renders a campaign's body once, not on
    every request for its page: an edited body is a new key (public text only)."""
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
    """One campaign's figures, read from the running totals (one statement; two when the
    rates are not given)."""
    return totals_for([campaign], rates)[campaign.id]


def totals_for(
    campaigns: Sequence[Campaign], rates: dict[str, Decimal] | None = None
) -> dict[int, Totals]:
    """The figures of every campaign given, by id, in one statement whatever their number
    and however many gifts they have: the running totals that the database keeps in the
    transaction of every change to a gift (models.CampaignTotal and migration 0020)."""
    if rates is None:
        from flask import current_app

        rates = current_rates(current_app.config["REPORTING_CURRENCY"])
    by_currency: dict[int, dict[str, int]] = {c.id: {} for c in campaigns}
    gifts = dict.fromkeys(by_currency, 0)
    donors = dict.fromkeys(by_currency, 0)
    if by_currency:
        rows = db.session.execute(
            select(
                CampaignDonorCount.campaign_id,
                CampaignDonorCount.donors,
                CampaignTotal.currency,
                CampaignTotal.raised_minor,
                CampaignTotal.gifts,
            )
            .outerjoin(CampaignTotal, CampaignTotal.campaign_id == CampaignDonorCount.campaign_id)
            .where(CampaignDonorCount.campaign_id.in_(list(by_currency)))
        ).all()
        for campaign_id, donor_count, currency, raised, counted in rows:
            donors[campaign_id] = int(donor_count)
            if currency is not None and counted:
                by_currency[campaign_id][currency] = int(raised)
                gifts[campaign_id] += int(counted)
    return {
        c.id: Totals(
            by_currency[c.id],
            donors[c.id],
            gifts[c.id],
            convert(by_currency[c.id], c.goal_currency, rates),
            c.goal_minor,
            c.goal_currency,
        )
        for c in campaigns
    }


# The running totals against a full recount ------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """A campaign's figures counted one way: money and gifts per currency, gifts per
    donor (donors with none left out), distinct donors."""

    money: dict[str, tuple[int, int]]
    donor_gifts: dict[int, int]
    donors: int


def _counted_gifts():
    net = net_gift_expression()
    return net, (Donation.campaign_id.is_not(None), Donation.status.in_(COUNTED_STATUSES), net > 0)


def recount(campaign_ids: Sequence[int] | None = None) -> dict[int, Figures]:
    """Every figure counted afresh from the gifts (what the running totals must equal)."""
    net, counted = _counted_gifts()
    where = list(counted)
    if campaign_ids is not None:
        where.append(Donation.campaign_id.in_(list(campaign_ids)))
    money: dict[int, dict[str, tuple[int, int]]] = {}
    for campaign_id, currency, total, count in db.session.execute(
        select(Donation.campaign_id, Donation.currency, func.sum(net), func.count())
        .where(*where)
        .group_by(Donation.campaign_id, Donation.currency)
    ):
        money.setdefault(int(campaign_id), {})[currency] = (int(total), int(count))
    donor_gifts: dict[int, dict[int, int]] = {}
    for campaign_id, donor_id, count in db.session.execute(
        select(Donation.campaign_id, Donation.donor_id, func.count())
        .where(*where)
        .group_by(Donation.campaign_id, Donation.donor_id)
    ):
        donor_gifts.setdefault(int(campaign_id or 0), {})[donor_id] = int(count)
    return {
        campaign_id: Figures(
            money.get(campaign_id, {}),
            donor_gifts.get(campaign_id, {}),
            len(donor_gifts.get(campaign_id, {})),
        )
        for campaign_id in set(money) | set(donor_gifts)
    }


def stored_figures(campaign_ids: Sequence[int] | None = None) -> dict[int, Figures]:
    """The running totals as stored, in the shape of recount() (rows at zero left out)."""

    def only(column):
        return [] if campaign_ids is None else [column.in_(list(campaign_ids))]

    money: dict[int, dict[str, tuple[int, int]]] = {}
    for total in db.session.scalars(select(CampaignTotal).where(*only(CampaignTotal.campaign_id))):
        if total.raised_minor or total.gifts:
            money.setdefault(total.campaign_id, {})[total.currency] = (
                total.raised_minor,
                total.gifts,
            )
    donor_gifts: dict[int, dict[int, int]] = {}
    for donor in db.session.scalars(select(CampaignDonor).where(*only(CampaignDonor.campaign_id))):
        if donor.gifts:
            donor_gifts.setdefault(donor.campaign_id, {})[donor.donor_id] = donor.gifts
    donors = {
        row.campaign_id: row.donors
        for row in db.session.scalars(
            select(CampaignDonorCount).where(*only(CampaignDonorCount.campaign_id))
        )
        if row.donors
    }
    return {
        campaign_id: Figures(
            money.get(campaign_id, {}), donor_gifts.get(campaign_id, {}), donors.get(campaign_id, 0)
        )
        for campaign_id in set(money) | set(donor_gifts) | set(donors)
    }


def _consistent_snapshot() -> None:
    """Read the stored totals and the gifts from one snapshot: on PostgreSQL the rest of
    this transaction runs REPEATABLE READ (the totals move in the gifts' own transactions,
    so one snapshot always agrees with itself); SQLite holds its write lock, so no gift
    changes between the reads. The caller rolls back."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    else:  # a write that changes nothing takes SQLite's write lock until the rollback
        db.session.execute(update(CampaignDonorCount).where(false()).values(donors=0))


def totals_differences() -> list[str]:
    """A sentence per campaign whose running totals differ from a full recount (none when
    they agree). Call it at the start of a transaction, and roll that back."""
    _consistent_snapshot()
    counted, stored = recount(), stored_figures()
    names = {row.id: row.name for row in db.session.execute(select(Campaign.id, Campaign.name))}
    sentences = []
    for campaign_id in sorted(set(counted) | set(stored)):
        want = counted.get(campaign_id, Figures({}, {}, 0))
        have = stored.get(campaign_id, Figures({}, {}, 0))
        if want == have:
            continue
        parts = []
        for currency in sorted(set(want.money) | set(have.money)):
            (w_money, w_gifts), (h_money, h_gifts) = (
                want.money.get(currency, (0, 0)),
                have.money.get(currency, (0, 0)),
            )
            if w_money != h_money:
                parts.append(
                    f"{currency} raised {h_money} stored, {w_money} counted "
                    f"(difference {h_money - w_money:+d} minor units)"
                )
            if w_gifts != h_gifts:
                parts.append(f"{currency} gifts {h_gifts} stored, {w_gifts} counted")
        if want.donors != have.donors:
            parts.append(f"donors {have.donors} stored, {want.donors} counted")
        wrong_donors = sum(
            1
            for donor_id in set(want.donor_gifts) | set(have.donor_gifts)
            if want.donor_gifts.get(donor_id, 0) != have.donor_gifts.get(donor_id, 0)
        )
        if wrong_donors:
            parts.append(f"the gift count of {wrong_donors} donor(s) differs")
        name = names.get(campaign_id, "(deleted)")
        sentences.append(f'Campaign {campaign_id} "{name}": ' + "; ".join(parts) + ".")
    return sentences


def repair_totals() -> None:
    """Rewrite every running total from a full recount, in the caller's transaction. On
    PostgreSQL gifts cannot change meanwhile (their table is locked against writes until
    the commit); on SQLite the first delete takes the database's write lock."""
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("LOCK TABLE donations IN SHARE ROW EXCLUSIVE MODE"))
    for model in (CampaignDonorCount, CampaignDonor, CampaignTotal):
        db.session.execute(delete(model))
    net, counted = _counted_gifts()
    db.session.execute(
        insert(CampaignTotal).from_select(
            ["campaign_id", "currency", "raised_minor", "gifts"],
            select(Donation.campaign_id, Donation.currency, func.sum(net), func.count())
            .where(*counted)
            .group_by(Donation.campaign_id, Donation.currency),
        )
    )
    db.session.execute(
        insert(CampaignDonor).from_select(
            ["campaign_id", "donor_id", "gifts"],
            select(Donation.campaign_id, Donation.donor_id, func.count())
            .where(*counted)
            .group_by(Donation.campaign_id, Donation.donor_id),
        )
    )
    db.session.execute(
        insert(CampaignDonorCount).from_select(
            ["campaign_id", "donors"],
            select(CampaignDonor.campaign_id, func.count()).group_by(CampaignDonor.campaign_id),
        )
    )
    db.session.expire_all()


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
    today = today or uk_today()
    return list(
        db.session.scalars(
            select(Campaign)
            .where(
                Campaign.status == CampaignStatus.LIVE,
                Campaign.starts_on <= today,
                or_(Campaign.ends_on.is_(None), Campaign.ends_on >= today),
            )
            .order_by(Campaign.ends_on, Campaign.id)
        )
    )


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
