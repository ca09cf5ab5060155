"""The donor back office: finding donors, the donor page, notes, consents and offline gifts.

Services: they take the acting user, flush and never commit; views commit once. Refunds are
in refunds.py, erasure and the donor's own data export in data_protection.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import and_, exists, func, or_, select

from donorhub.audit import record_audit
from donorhub.database import uk_today, utcnow
from donorhub.donations import services as donation_services
from donorhub.donations.models import (
    COUNTED_STATUSES,
    LIVE_PLAN_STATUSES,
    Dispute,
    Donation,
    DonationKind,
    DonationStatus,
    Donor,
    DonorConsent,
    DonorErasure,
    DonorNote,
    GiftAidDeclaration,
    OfflineGift,
    RecurringPlan,
    Refund,
    net_gift_expression,
)
from donorhub.errors import DomainError
from donorhub.extensions import db
from donorhub.money import CURRENCIES

if TYPE_CHECKING:
    from donorhub.accounts.models import User

#: A donor is lapsed when their last counted gift is older than this and no plan is live.
LAPSED_AFTER = timedelta(days=365)
CONSENT_CHANNELS = ("email", "post", "phone")
OFFLINE_METHODS = ("cash", "cheque", "bank_transfer")
PAGE_SIZE = 50


@dataclass(frozen=True)
class DonorFilters:
    q: str = ""
    recurring: bool = False
    lapsed: bool = False
    gift_aid: bool = False
    campaign_id: int | None = None
    first_from: date | None = None
    first_to: date | None = None
    page: int = 1


def _counted():
    return and_(Donation.status.in_(COUNTED_STATUSES), net_gift_expression() > 0)


def _start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def donor_query(f: DonorFilters, now: datetime | None = None):
    """Donors matching the filters, with first and last counted gift dates."""
    now = now or utcnow()
    gifts = (
        select(
            Donation.donor_id.label("donor_id"),
            func.min(Donation.paid_at).label("first_gift"),
            func.max(Donation.paid_at).label("last_gift"),
            func.count().label("gifts"),
        )
        .where(_counted())
        .group_by(Donation.donor_id)
        .subquery()
    )
    query = select(Donor, gifts.c.first_gift, gifts.c.last_gift, gifts.c.gifts).outerjoin(
        gifts, gifts.c.donor_id == Donor.id
    )
    if f.q:
        pattern = "%" + f.q.lower().replace("\\", "").replace("%", "").replace("_", "") + "%"
        query = query.where(
            or_(func.lower(Donor.full_name).like(pattern), Donor.email.like(pattern))
        )
    live_plan = exists().where(
        RecurringPlan.donor_id == Donor.id, RecurringPlan.status.in_(LIVE_PLAN_STATUSES)
    )
    if f.recurring:
        query = query.where(live_plan)
    if f.lapsed:
        query = query.where(gifts.c.last_gift < now - LAPSED_AFTER, ~live_plan)
    if f.gift_aid:
        # Only declarations in effect: one from a checkout never paid covers nothing
        # (GiftAidDeclaration.effective_at), whatever its scope or confirmation.
        query = query.where(
            exists().where(
                GiftAidDeclaration.donor_id == Donor.id,
                GiftAidDeclaration.effective_at.is_not(None),
                GiftAidDeclaration.cancelled_at.is_(None),
            )
        )
    if f.campaign_id:
        query = query.where(
            exists().where(
                Donation.donor_id == Donor.id, Donation.campaign_id == f.campaign_id, _counted()
            )
        )
    if f.first_from:
        query = query.where(gifts.c.first_gift >= _start(f.first_from))
    if f.first_to:
        query = query.where(gifts.c.first_gift < _start(f.first_to + timedelta(days=1)))
    return query.order_by(Donor.id.desc())


def search_donors(f: DonorFilters):
    page = max(f.page, 1)
    return db.session.execute(donor_query(f).limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()


def current_consents(donor_id: int) -> dict[str, DonorConsent]:
    rows = db.session.scalars(
        select(DonorConsent)
        .where(DonorConsent.donor_id == donor_id)
        .order_by(DonorConsent.recorded_at, DonorConsent.id)
    ).all()
    return {row.channel: row for row in rows}


@dataclass
class DonorPage:
    donor: Donor
    gifts: list[Donation]
    plans: list[RecurringPlan]
    declarations: list[GiftAidDeclaration]
    consents: dict[str, DonorConsent]
    notes: list[DonorNote]
    refunds: dict[int, list[Refund]]
    offline: dict[int, OfflineGift]
    erasure: DonorErasure | None
    #: Each gift's disputes (a fact beside its refunds), oldest first.
    disputes: dict[int, list[Dispute]] = field(default_factory=dict)


def donor_page(donor: Donor, actor: User) -> DonorPage:
    gifts = list(
        db.session.scalars(
            select(Donation).where(Donation.donor_id == donor.id).order_by(Donation.id.desc())
        )
    )
    ids = [g.id for g in gifts] or [-1]
    refunds: dict[int, list[Refund]] = {}
    for refund in db.session.scalars(
        select(Refund).where(Refund.donation_id.in_(ids)).order_by(Refund.id)
    ):
        refunds.setdefault(refund.donation_id, []).append(refund)
    offline = {
        o.donation_id: o
        for o in db.session.scalars(select(OfflineGift).where(OfflineGift.donation_id.in_(ids)))
    }
    disputes: dict[int, list[Dispute]] = {}
    for dispute in db.session.scalars(
        select(Dispute).where(Dispute.donation_id.in_(ids)).order_by(Dispute.id)
    ):
        disputes.setdefault(dispute.donation_id, []).append(dispute)
    page = DonorPage(
        donor=donor,
        gifts=gifts,
        plans=list(
            db.session.scalars(
                select(RecurringPlan)
                .where(RecurringPlan.donor_id == donor.id)
                .order_by(RecurringPlan.id.desc())
            )
        ),
        declarations=list(
            db.session.scalars(
                select(GiftAidDeclaration)
                .where(GiftAidDeclaration.donor_id == donor.id)
                .order_by(GiftAidDeclaration.id)
            )
        ),
        consents=current_consents(donor.id),
        notes=list(
            db.session.scalars(
                select(DonorNote)
                .where(DonorNote.donor_id == donor.id)
                .order_by(DonorNote.id.desc())
            )
        ),
        refunds=refunds,
        offline=offline,
        erasure=db.session.scalar(select(DonorErasure).where(DonorErasure.donor_id == donor.id)),
        disputes=disputes,
    )
    record_audit(actor, "donor.donor_viewed", "donor", donor.id, {})
    return page


def add_note(donor: Donor, body: str, actor: User) -> DonorNote:
    if _erased(donor):
        raise DomainError("This donor's personal data was erased; no new notes.")
    note = DonorNote(donor_id=donor.id, author_id=actor.id, body=body)
    db.session.add(note)
    db.session.flush()
    record_audit(actor, "donor.note_added", "donor", donor.id, {"note": note.id})
    return note


def record_consent(
    donor: Donor, channel: str, granted: bool, source: str, actor: User | None
) -> DonorConsent:
    if channel not in CONSENT_CHANNELS:
        raise DomainError("Unknown channel.")
    row = DonorConsent(
        donor_id=donor.id,
        channel=channel,
        granted=granted,
        source=source,
        recorded_by_id=actor.id if actor is not None else None,
    )
    db.session.add(row)
    db.session.flush()
    record_audit(
        actor, "donor.consent_recorded", "donor", donor.id, {"channel": channel, "granted": granted}
    )
    return row


def _erased(donor: Donor) -> bool:
    return (
        db.session.scalar(select(DonorErasure.id).where(DonorErasure.donor_id == donor.id))
        is not None
    )


# Offline gifts -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OfflineGiftInput:
    donor_id: int | None
    email: str | None
    full_name: str | None
    amount_minor: int
    currency: str
    method: str
    reference: str | None
    received_on: date
    campaign_id: int | None
    send_receipt: bool
    #: A random key from the form, so a double submission records one gift, not two.
    entry_key: str


def record_offline_gift(data: OfflineGiftInput, actor: User) -> tuple[Donation, bool]:
    """Record cash, cheque or bank-transfer money that has arrived. (gift, created).

    A campaign_id names a campaign the caller has found (campaigns build on donations, so
    the view checks it)."""
    existing = db.session.scalar(select(OfflineGift).where(OfflineGift.entry_key == data.entry_key))
    if existing is not None:
        return db.session.get_one(Donation, existing.donation_id), False
    if data.method not in OFFLINE_METHODS or data.currency not in CURRENCIES:
        raise DomainError("Unknown payment method or currency.")
    if data.amount_minor <= 0:
        raise DomainError("The amount must be more than zero.")
    if data.received_on > uk_today():
        raise DomainError("The date received cannot be in the future.")
    if data.donor_id is not None:
        donor = db.session.get(Donor, data.donor_id)
        if donor is None:
            raise DomainError("No such donor.")
        if _erased(donor):
            raise DomainError("This donor's personal data was erased.")
    else:
        if not data.email or not data.full_name:
            raise DomainError("Give the donor's e-mail address and name.")
        donor = donation_services.find_or_create_donor(data.email, data.full_name)
    donation = Donation(
        donor=donor,
        kind=DonationKind.ONCE,
        amount_minor=data.amount_minor,
        fee_cover_minor=0,
        currency=data.currency,
        designation="campaign" if data.campaign_id else "general",
        campaign_id=data.campaign_id,
        status=DonationStatus.PENDING,
        paid_at=datetime.combine(data.received_on, time(12, 0), tzinfo=UTC),
    )
    db.session.add(donation)
    db.session.flush()
    donation.settle()
    db.session.add(
        OfflineGift(
            donation_id=donation.id,
            method=data.method,
            reference=data.reference,
            received_on=data.received_on,
            entered_by_id=actor.id,
            entry_key=data.entry_key,
        )
    )
    db.session.flush()
    if data.send_receipt:
        donation_services.issue_receipt(donation)
    record_audit(
        actor,
        "donation.offline_recorded",
        "donation",
        donation.id,
        {"method": data.method, "amount_minor": data.amount_minor, "currency": data.currency},
    )
    return donation, True
