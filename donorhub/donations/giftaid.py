"""Gift Aid: the declaration texts (versioned), declarations (made with a gift, confirmed by
the owner of the address, cancelled), claims (staff) and HMRC's claim schedule, row by row.

docs/gift-aid.md lists what HMRC requires. A declaration stores the version of the text
the donor saw; the texts are kept here forever, so any declaration can be shown as made.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import or_, select, update

from donorhub.accounts.models import User
from donorhub.audit import record_audit
from donorhub.database import utcnow
from donorhub.donations.models import (
    Donation,
    DonationStatus,
    Donor,
    GiftAidClaim,
    GiftAidDeclaration,
    GiftAidScope,
)
from donorhub.errors import DomainError, NotPermitted
from donorhub.extensions import db
from donorhub.forms import name_for_mail
from donorhub.mail.services import queue_mail
from donorhub.urls import external_url

#: HMRC's dates are UK dates: a gift at 00:30 on 1 July in London is dated 01/07.
UK = ZoneInfo("Europe/London")

#: Every wording ever shown, by version. Never edit one: add a new version.
DECLARATION_TEXTS = {
    "2026-01": (
        "I want to Gift Aid my donation of {amount} and any donations I make in the future "
        "or have made in the past 4 years to {charity}. I am a UK taxpayer and understand "
        "that if I pay less Income Tax and/or Capital Gains Tax in the current tax year "
        "than the amount of Gift Aid claimed on all my donations, it is my responsibility "
        "to pay any difference."
    ),
}
DECLARATION_NOTE = (
    "Gift Aid lets us claim 25p from HMRC for every £1 you give. Please tell us if you want "
    "to cancel this declaration, change your name or home address, or no longer pay enough "
    "Income Tax or Capital Gains Tax."
)

SCHEDULE_COLUMNS = (
    "Title",
    "First name or initial",
    "Last name",
    "House name or number",
    "Postcode",
    "Aggregated donations",
    "Sponsored event",
    "Donation date",
    "Amount",
)

POSTCODE = re.compile(r"^([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})$")
NAME_OK = re.compile(r"^[A-Za-z][A-Za-z '.]*$")


def declaration_text(version: str, *, amount: str, charity: str) -> str:
    """The declaration's wording as shown to the donor, in the version they saw."""
    return DECLARATION_TEXTS[version].format(amount=amount, charity=charity)


def normalise_postcode(value: str) -> str | None:
    """'s19 2bd' -> 'S19 2BD'; None when it is not a UK postcode."""
    match = POSTCODE.match("".join(value.upper().split()))
    if match is None:
        return None
    return f"{match.group(1)} {match.group(2)}"


def schedule_name(value: str) -> str:
    """A name as HMRC's schedule takes it: accents dropped ("Zoë" -> "Zoe"), hyphens as
    spaces (double-barrelled names take a space: "Smith-Jones" -> "Smith Jones")."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", value) if not unicodedata.combining(c))
    plain = "".join(
        " " if unicodedata.category(c) == "Pd" else c for c in plain.replace("\u2019", "'")
    )
    return " ".join(plain.split())


def schedule_last_name(value: str) -> str:
    """A last name as HMRC's schedule takes it."""
    return schedule_name(value)


def claim_deadline(gift_day: date) -> date:
    """The last day to claim a gift: 4 years after the end of the UK tax year (5 April) in
    which it was received (docs/gift-aid.md; the charity's accounting period follows the tax
    year here)."""
    year_end = date(gift_day.year, 4, 5)
    if gift_day > year_end:
        year_end = date(gift_day.year + 1, 4, 5)
    return date(year_end.year + 4, 4, 5)


@dataclass(frozen=True)
class ScheduleRow:
    """One row of HMRC's Gift Aid schedule."""

    donation_id: int
    title: str
    first_name: str
    last_name: str
    house: str
    postcode: str
    date: str
    amount: str

    def cells(self) -> list[str]:
        # Blank, never "0.00" or "n/a", for the columns that do not apply.
        return [
            self.title,
            self.first_name,
            self.last_name,
            self.house,
            self.postcode,
            "",
            "",
            self.date,
            self.amount,
        ]


def build_row(
    *,
    donation_id: int,
    title: str | None,
    first_name: str,
    last_name: str,
    house: str,
    postcode: str,
    paid_at: datetime,
    amount_minor: int,
    now: datetime,
) -> tuple[ScheduleRow, list[str]]:
    """One schedule row and the problems with it (an empty list when it may be claimed)."""
    from donorhub.money import plain_amount

    problems = []
    title = (title or "").strip()
    first = schedule_name(first_name)
    last = schedule_name(last_name)
    house = " ".join(house.split())
    code = normalise_postcode(postcode or "")
    if len(title) > 4:
        problems.append("title is longer than 4 characters")
    if not first or len(first) > 35 or not NAME_OK.match(first):
        problems.append("first name must be 1 to 35 letters (A-Z, spaces, apostrophes)")
    if not last or len(last) > 35 or not NAME_OK.match(last):
        problems.append("last name must be 1 to 35 letters (A-Z, spaces, apostrophes)")
    if not house or len(house) > 40:
        problems.append("house name or number is missing or too long")
    if code is None:
        problems.append("postcode is not a UK postcode")
    gift_day = paid_at.astimezone(UK).date()
    if paid_at > now:
        problems.append("donation date is in the future")
    deadline = claim_deadline(gift_day)
    if now.astimezone(UK).date() > deadline:
        problems.append(f"too late to claim: HMRC's 4-year window closed on {deadline:%-d %B %Y}")
    if amount_minor <= 0:
        problems.append("amount must be more than 0.00")
    row = ScheduleRow(
        donation_id=donation_id,
        title=title,
        first_name=first,
        last_name=last,
        house=house,
        postcode=code or postcode,
        date=gift_day.strftime("%d/%m/%y"),
        amount=plain_amount(amount_minor),
    )
    if not re.fullmatch(r"\d{2}/\d{2}/\d{2}", row.date):
        problems.append("date is not DD/MM/YY")
    if not re.fullmatch(r"\d+\.\d{2}", row.amount):
        problems.append("amount is not in the form 200.00")
    return row, problems


# Declarations -----------------------------------------------------------------------------


def make_declaration(donor: Donor, details, scope: GiftAidScope) -> GiftAidDeclaration:
    """Record a donor's Gift Aid declaration as made on the web (in effect once a gift is paid)."""
    declaration = GiftAidDeclaration(
        donor=donor,
        title=details.title,
        first_name=details.first_name,
        last_name=details.last_name,
        house=details.house,
        address_line=details.address_line,
        postcode=details.postcode,
        scope=scope,
        text_version=current_app.config["GIFT_AID_DECLARATION_VERSION"],
        channel="web",
    )
    db.session.add(declaration)
    db.session.flush()
    return declaration


def cancel_declaration(donor: Donor, declaration_id: int) -> GiftAidDeclaration:
    """The donor cancels one of their declarations; they are told by mail, once."""
    declaration = db.session.get(GiftAidDeclaration, declaration_id)
    if declaration is None or declaration.donor_id != donor.id:
        raise NotPermitted("That declaration is not yours.")
    if declaration.cancelled_at is None:
        declaration.cancelled_at = utcnow()
        queue_mail(
            donor.email,
            "donations/gift_aid_cancelled",
            subject="Your Gift Aid declaration is cancelled",
            name=name_for_mail(f"{declaration.first_name} {declaration.last_name}"),
            declared_at=declaration.declared_at,
        )
    return declaration


def link_declaration(donation: Donation) -> None:
    """Link a GBP gift to the declaration that covers it (none for other currencies).

    A declaration made with this gift (or its plan) takes effect now that the money has
    arrived; one from a checkout that was never paid never does."""
    if donation.currency != "gbp" or donation.paid_at is None:
        return
    if donation.gift_aid_declaration_id is not None:
        declaration = db.session.get(GiftAidDeclaration, donation.gift_aid_declaration_id)
        if (
            declaration is not None
            and declaration.effective_at is None
            and declaration.cancelled_at is None
        ):
            declaration.effective_at = donation.paid_at
        if declaration is not None and not declaration.covers(donation, donation.paid_at):
            donation.gift_aid_declaration_id = None
        return
    declaration = db.session.scalar(
        select(GiftAidDeclaration)
        .where(
            GiftAidDeclaration.donor_id == donation.donor_id,
            GiftAidDeclaration.scope == GiftAidScope.ALL,
            GiftAidDeclaration.effective_at.is_not(None),
            GiftAidDeclaration.confirmed_at.is_not(None),
            or_(
                GiftAidDeclaration.cancelled_at.is_(None),
                GiftAidDeclaration.cancelled_at > donation.paid_at,
            ),
        )
        .order_by(GiftAidDeclaration.declared_at.desc())
        .limit(1)
    )
    if declaration is not None:
        donation.gift_aid_declaration_id = declaration.id


def _gift_aid_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        current_app.config["SECRET_KEY"], salt="donorhub.donations.gift-aid-confirm"
    )


def gift_aid_confirm_url(declaration: GiftAidDeclaration) -> str:
    """The signed link that confirms a declaration for all gifts."""
    token = _gift_aid_serializer().dumps({"d": declaration.public_id})
    return external_url("donations.confirm_gift_aid", token=token)


def declaration_for_confirm_token(token: str) -> GiftAidDeclaration | None:
    """The declaration a mailed link confirms (30 days); None when invalid or not pending."""
    try:
        payload = _gift_aid_serializer().loads(token, max_age=30 * 24 * 3600)
    except (BadSignature, SignatureExpired):
        return None
    reference = payload.get("d") if isinstance(payload, dict) else None
    if isinstance(reference, str):
        declaration = db.session.scalar(
            select(GiftAidDeclaration).where(GiftAidDeclaration.public_id == reference)
        )
    elif isinstance(reference, int) and not isinstance(reference, bool):
        # Links mailed before public ids named the declaration by row id; they are honoured
        # for the 30 days they were made for, and none is left after that.
        declaration = db.session.get(GiftAidDeclaration, reference)
    else:
        declaration = None
    if (
        declaration is None
        or declaration.effective_at is None
        or declaration.cancelled_at is not None
    ):
        return None
    return declaration


def confirm_declaration(declaration: GiftAidDeclaration, actor: User | None = None) -> None:
    """The owner of the address confirmed "this gift and all others" (link or account)."""
    if declaration.confirmed_at is None:
        declaration.confirmed_at = utcnow()
        record_audit(actor, "gift_aid.confirmed", "gift_aid_declaration", declaration.id, {})


def gift_aid_status(donation: Donation) -> str:
    """What the receipt says about Gift Aid on this gift."""
    if donation.currency != "gbp":
        return "Gift Aid does not apply to gifts in this currency."
    if donation.gift_aid_declaration_id:
        return "Gift Aid: yes. We will claim 25p for every £1 you gave, under your declaration."
    return "Gift Aid: no declaration. If you are a UK taxpayer, you can add one."


# Claims (staff) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimPreview:
    """The gifts a claim would include, and those left out with their problems."""

    rows: list
    problems: list  # (donation id, [problems])

    @property
    def total_minor(self) -> int:
        return sum(r[1] for r in self.rows)


def declared_row(
    gift: Donation, declaration: GiftAidDeclaration, paid_at: datetime, now: datetime
) -> tuple[ScheduleRow, list[str]]:
    """HMRC's schedule row for a gift under its declaration: (row, problems)."""
    return build_row(
        donation_id=gift.id,
        title=declaration.title,
        first_name=declaration.first_name,
        last_name=declaration.last_name,
        house=declaration.house,
        postcode=declaration.postcode,
        paid_at=paid_at,
        # The fee cover is left out until an adviser confirms it qualifies (docs/gift-aid.md).
        amount_minor=gift.gift_minor,
        now=now,
    )


def claimable_gifts(date_from: date, date_to: date) -> Sequence[Donation]:
    """Dates are UK dates (Europe/London), as on HMRC's schedule."""
    start = datetime.combine(date_from, time(0), UK).astimezone(UTC)
    end = datetime.combine(date_to + timedelta(days=1), time(0), UK).astimezone(UTC)
    return db.session.scalars(
        select(Donation)
        .where(
            Donation.currency == "gbp",
            Donation.status == DonationStatus.PAID,
            Donation.gift_aid_declaration_id.is_not(None),
            Donation.gift_aid_claim_id.is_(None),
            Donation.paid_at >= start,
            Donation.paid_at < end,
        )
        .order_by(Donation.paid_at, Donation.id)
    ).all()


def preview_claim(date_from: date, date_to: date) -> ClaimPreview:
    """The rows of a claim for gifts paid between two UK dates, and the gifts left out."""
    now = utcnow()
    rows, problems = [], []
    for gift in claimable_gifts(date_from, date_to):
        declaration = gift.gift_aid_declaration
        if gift.paid_at is None:
            raise RuntimeError("claimable gift without paid_at")  # only paid gifts are claimable
        if declaration is None or not declaration.covers(gift, gift.paid_at):
            continue
        row, row_problems = declared_row(gift, declaration, gift.paid_at, now)
        if row_problems:
            problems.append((gift.id, row_problems))
        else:
            rows.append((row, gift.gift_minor, gift))
    return ClaimPreview(rows=rows, problems=problems)


def record_claim(preview: ClaimPreview, actor: User | None) -> GiftAidClaim:
    """Mark every valid gift of the preview as claimed, so none is claimed twice.

    Rows with problems are left out (the page lists them and why) and stay claimable once
    fixed. The claim is one conditional UPDATE: a concurrent export that claimed any of these
    gifts first makes this one fail whole, so no gift is ever in two claims."""
    if not preview.rows:
        raise DomainError("There are no gifts to claim in those dates.")
    claim = GiftAidClaim(
        created_by_id=actor.id if actor else None,
        rows=len(preview.rows),
        total_minor=preview.total_minor,
    )
    db.session.add(claim)
    db.session.flush()
    ids = [gift.id for _row, _amount, gift in preview.rows]
    claimed = db.session.execute(
        update(Donation)
        .where(Donation.id.in_(ids), Donation.gift_aid_claim_id.is_(None))
        .values(gift_aid_claim_id=claim.id)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != len(ids):  # type: ignore[attr-defined]  # an UPDATE's CursorResult
        raise DomainError(
            "Another export has just claimed some of these gifts. Check "
            "again, then export what is left."
        )
    for _row, _amount, gift in preview.rows:
        db.session.expire(gift, ["gift_aid_claim_id"])
    record_audit(
        actor,
        "export.gift_aid",
        "gift_aid_claim",
        claim.id,
        {
            "rows": len(preview.rows),
            "total_minor": preview.total_minor,
            "excluded": len(preview.problems),
        },
    )
    return claim


def claim_rows(claim_id: int) -> list | None:
    """The rows of an earlier claim, to download its file again (None: no such claim)."""
    if db.session.get(GiftAidClaim, claim_id) is None:
        return None
    gifts = db.session.scalars(
        select(Donation)
        .where(Donation.gift_aid_claim_id == claim_id)
        .order_by(Donation.paid_at, Donation.id)
    ).all()
    rows = []
    for gift in gifts:
        declaration = gift.gift_aid_declaration
        # A claimed gift was paid under a declaration (both checked when it was claimed).
        if declaration is None or gift.paid_at is None:
            raise RuntimeError("claimed gift without its declaration or paid_at")
        row, _problems = declared_row(gift, declaration, gift.paid_at, gift.paid_at)
        rows.append(row)
    return rows


def recent_claims() -> Sequence[GiftAidClaim]:
    """The last 20 claims, newest first."""
    return db.session.scalars(select(GiftAidClaim).order_by(GiftAidClaim.id.desc()).limit(20)).all()
