"""Receipts (numbered per year, never reused), a donor's history and tax-year statements.

Services flush, never commit. Mail is queued in the same transaction as its cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import select, update

from donorhub.donations.giftaid import gift_aid_confirm_url, gift_aid_status
from donorhub.donations.models import (
    MONEY_RECEIVED,
    Donation,
    DonationStatus,
    Donor,
    GiftAidDeclaration,
    GiftAidScope,
    PlanStatus,
    Receipt,
    ReceiptCounter,
    RecurringPlan,
)
from donorhub.donations.plans import manage_url
from donorhub.extensions import db
from donorhub.forms import text_for_mail
from donorhub.mail.services import queue_mail
from donorhub.money import format_money
from donorhub.urls import external_url


def _next_receipt_sequence(year: int) -> int:
    """Lock the year's counter row and take the next number (sequential, never reused)."""
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        # Both dialects' insert() take the same on_conflict_do_nothing arguments used here.
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    db.session.execute(
        insert(ReceiptCounter)
        .values(year=year, last=0)
        .on_conflict_do_nothing(index_elements=["year"])
    )
    return db.session.execute(
        update(ReceiptCounter)
        .where(ReceiptCounter.year == year)
        .values(last=ReceiptCounter.last + 1)
        .returning(ReceiptCounter.last)
    ).scalar_one()


def issue_receipt(donation: Donation) -> Receipt | None:
    """One receipt and one e-mail per gift, once the money has arrived and is not all
    refunded (a partial refund, whenever it arrived, is shown on the receipt)."""
    if donation.receipt is not None or donation.status not in (
        DonationStatus.PAID,
        DonationStatus.PARTIALLY_REFUNDED,
    ):
        return None
    if donation.paid_at is None:  # a paid or partly refunded gift has its payment time
        raise RuntimeError("paid gift without paid_at")
    year = donation.paid_at.year
    sequence = _next_receipt_sequence(year)
    receipt = Receipt(
        donation=donation, year=year, sequence=sequence, number=f"{year}-{sequence:06d}"
    )
    db.session.add(receipt)
    db.session.flush()
    plan = donation.plan
    queue_mail(
        donation.donor.email,
        "donations/receipt",
        subject=f"Thank you: your receipt {receipt.number}",
        name=donation.payer_name,
        number=receipt.number,
        amount=format_money(donation.amount_minor, donation.currency),
        gift=format_money(donation.gift_minor, donation.currency),
        fee_cover=(
            format_money(donation.fee_cover_minor, donation.currency)
            if donation.fee_cover_minor
            else None
        ),
        date=donation.paid_at.strftime("%-d %B %Y"),
        designation=_designation_words(donation),
        dedication=text_for_mail(donation.dedication),
        gift_aid=gift_aid_status(donation),
        refunded=(
            format_money(donation.amount_refunded_minor, donation.currency)
            if donation.amount_refunded_minor
            else None
        ),
        gift_aid_confirm_url=_confirm_link_for(donation),
        registration=current_app.config["CHARITY_REGISTRATION"],
        plan=plan,
        frequency=plan.frequency.value if plan else None,
        manage_url=manage_url(plan) if plan else None,
        history_url=external_url("donations.history"),
    )
    return receipt


def _designation_words(donation: Donation) -> str:
    """What the receipt says the gift is for: the campaign by its public name."""
    if donation.designation == "campaign" and donation.campaign is not None:
        return f"our campaign “{donation.campaign.name}”"
    return {"general": "our general fund", "sponsorship": "a monthly sponsorship"}.get(
        donation.designation, "a campaign"
    )


def _confirm_link_for(donation: Donation) -> str | None:
    """The link that extends a declaration to all gifts, while it covers only this one."""
    declaration = donation.gift_aid_declaration
    if (
        declaration is None
        or declaration.scope is not GiftAidScope.ALL
        or declaration.confirmed_at is not None
        or declaration.effective_at is None
    ):
        return None
    return gift_aid_confirm_url(declaration)


def history(donor: Donor) -> dict:
    """A donor's gifts, plans and declarations, for their history page."""
    gifts = db.session.scalars(
        select(Donation)
        .where(
            Donation.donor_id == donor.id,
            Donation.status.in_(
                MONEY_RECEIVED | {DonationStatus.PROCESSING, DonationStatus.NEEDS_REVIEW}
            ),
        )
        .order_by(Donation.paid_at.desc(), Donation.id.desc())
    ).all()
    plans = db.session.scalars(
        select(RecurringPlan)
        .where(RecurringPlan.donor_id == donor.id, RecurringPlan.status != PlanStatus.PENDING)
        .order_by(RecurringPlan.id.desc())
    ).all()
    # A declaration from a checkout that was never paid is nobody's word: not shown.
    declarations = db.session.scalars(
        select(GiftAidDeclaration)
        .where(
            GiftAidDeclaration.donor_id == donor.id, GiftAidDeclaration.effective_at.is_not(None)
        )
        .order_by(GiftAidDeclaration.id.desc())
    ).all()
    return {"gifts": gifts, "plans": plans, "declarations": declarations}


@dataclass(frozen=True)
class TaxYear:
    """A tax year of a region, with the time zone its dates are in."""

    region: str
    start: date
    end: date  # inclusive
    zone: str

    @property
    def label(self) -> str:
        return f"{self.start:%-d %B %Y} to {self.end:%-d %B %Y}"


def tax_year(region: str, year: int) -> TaxYear:
    """UK: 6 April to 5 April; India: 1 April to 31 March. `year` is the starting year."""
    if region == "in":
        return TaxYear("in", date(year, 4, 1), date(year + 1, 3, 31), "Asia/Kolkata")
    return TaxYear("uk", date(year, 4, 6), date(year + 1, 4, 5), "Europe/London")


def statement(donor: Donor, period: TaxYear) -> dict:
    """The donor's gifts kept (net of refunds) in a tax year, with totals per currency."""
    zone = ZoneInfo(period.zone)
    start = datetime.combine(period.start, time(0), zone).astimezone(UTC)
    end = datetime.combine(period.end + timedelta(days=1), time(0), zone).astimezone(UTC)
    gifts = db.session.scalars(
        select(Donation)
        .where(
            Donation.donor_id == donor.id,
            Donation.paid_at >= start,
            Donation.paid_at < end,
            Donation.status.in_(MONEY_RECEIVED),
        )
        .order_by(Donation.paid_at)
    ).all()
    rows: list[dict] = []
    totals: dict[str, int] = {}
    for gift in gifts:
        kept = gift.amount_minor - gift.amount_refunded_minor
        if gift.status is DonationStatus.CHARGED_BACK:
            kept = 0
        if kept <= 0:
            continue
        if gift.paid_at is None:
            raise RuntimeError("paid gift without paid_at")  # selected by its payment time
        rows.append(
            {"gift": gift, "kept": kept, "local_date": gift.paid_at.astimezone(zone).date()}
        )
        totals[gift.currency] = totals.get(gift.currency, 0) + kept
    return {"rows": rows, "totals": totals}
