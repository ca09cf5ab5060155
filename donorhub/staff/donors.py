"""Staff side of donors: search, the donor page, notes, consents, offline gifts, refunds.

Services: they take the acting user, flush and never commit; views commit once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.exc import IntegrityError

from donorhub.audit import record_audit
from donorhub.campaigns.services import COUNTED_STATUSES, net_gift_expression
from donorhub.database import utcnow
from donorhub.donations import refunds
from donorhub.donations import services as donation_services
from donorhub.donations.models import (
    LIVE_PLAN_STATUSES,
    Dispute,
    Donation,
    DonationKind,
    DonationStatus,
    Donor,
    GiftAidDeclaration,
    RecurringPlan,
)
from donorhub.errors import DomainError
from donorhub.extensions import db
from donorhub.money import CURRENCIES
from donorhub.payments.gateway import RefundRequest, get_gateway
from donorhub.staff.models import (
    REFUND_COUNTED,
    DonorConsent,
    DonorErasure,
    DonorNote,
    OfflineGift,
    Refund,
    RefundStatus,
)

if TYPE_CHECKING:
    from donorhub.accounts.models import User

#: A donor is lapsed when their last counted gift is older than this and no plan is live.
LAPSED_AFTER = timedelta(days=365)
CONSENT_CHANNELS = ("email", "post", "phone")
OFFLINE_METHODS = ("cash", "cheque", "bank_transfer")
REFUND_REASONS = ("requested_by_customer", "duplicate", "fraudulent", "other")
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
    gifts = (select(Donation.donor_id.label("donor_id"),
                    func.min(Donation.paid_at).label("first_gift"),
                    func.max(Donation.paid_at).label("last_gift"),
                    func.count().label("gifts"))
             .where(_counted()).group_by(Donation.donor_id).subquery())
    query = (select(Donor, gifts.c.first_gift, gifts.c.last_gift, gifts.c.gifts)
             .outerjoin(gifts, gifts.c.donor_id == Donor.id))
    if f.q:
        pattern = "%" + f.q.lower().replace("\\", "").replace("%", "").replace("_", "") + "%"
        query = query.where(or_(func.lower(Donor.full_name).like(pattern),
                                Donor.email.like(pattern)))
    live_plan = exists().where(RecurringPlan.donor_id == Donor.id,
                               RecurringPlan.status.in_(LIVE_PLAN_STATUSES))
    if f.recurring:
        query = query.where(live_plan)
    if f.lapsed:
        query = query.where(gifts.c.last_gift < now - LAPSED_AFTER, ~live_plan)
    if f.gift_aid:
        # Only declarations in effect: one from a checkout never paid covers nothing
        # (GiftAidDeclaration.effective_at), whatever its scope or confirmation.
        query = query.where(exists().where(GiftAidDeclaration.donor_id == Donor.id,
                                           GiftAidDeclaration.effective_at.is_not(None),
                                           GiftAidDeclaration.cancelled_at.is_(None)))
    if f.campaign_id:
        query = query.where(exists().where(Donation.donor_id == Donor.id,
                                           Donation.campaign_id == f.campaign_id,
                                           _counted()))
    if f.first_from:
        query = query.where(gifts.c.first_gift >= _start(f.first_from))
    if f.first_to:
        query = query.where(gifts.c.first_gift < _start(f.first_to + timedelta(days=1)))
    return query.order_by(Donor.id.desc())


def search_donors(f: DonorFilters):
    page = max(f.page, 1)
    return db.session.execute(donor_query(f).limit(PAGE_SIZE)
                              .offset((page - 1) * PAGE_SIZE)).all()


def current_consents(donor_id: int) -> dict[str, DonorConsent]:
    rows = db.session.scalars(select(DonorConsent).where(DonorConsent.donor_id == donor_id)
                              .order_by(DonorConsent.recorded_at, DonorConsent.id)).all()
    return {row.channel: row for row in rows}


def sponsorships_for(donor: Donor) -> list | None:
    """The donor's sponsorships, by alias only, through the sponsorship feature's services.

    None when the sponsorship feature does not offer that function."""
    from donorhub.sponsorship import services as sponsorship_services

    finder = getattr(sponsorship_services, "donor_sponsorships", None)
    if finder is None:
        return None
    return list(finder(donor.id))


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
    sponsorships: list | None
    erasure: DonorErasure | None
    #: Each gift's disputes (a fact beside its refunds), oldest first.
    disputes: dict[int, list[Dispute]] = field(default_factory=dict)


def donor_page(donor: Donor, actor: User) -> DonorPage:
    gifts = list(db.session.scalars(select(Donation).where(Donation.donor_id == donor.id)
                                    .order_by(Donation.id.desc())))
    ids = [g.id for g in gifts] or [-1]
    refunds: dict[int, list[Refund]] = {}
    for refund in db.session.scalars(select(Refund).where(Refund.donation_id.in_(ids))
                                     .order_by(Refund.id)):
        refunds.setdefault(refund.donation_id, []).append(refund)
    offline = {o.donation_id: o for o in db.session.scalars(
        select(OfflineGift).where(OfflineGift.donation_id.in_(ids)))}
    disputes: dict[int, list[Dispute]] = {}
    for dispute in db.session.scalars(select(Dispute).where(Dispute.donation_id.in_(ids))
                                      .order_by(Dispute.id)):
        disputes.setdefault(dispute.donation_id, []).append(dispute)
    page = DonorPage(
        donor=donor, gifts=gifts,
        plans=list(db.session.scalars(select(RecurringPlan).where(
            RecurringPlan.donor_id == donor.id).order_by(RecurringPlan.id.desc()))),
        declarations=list(db.session.scalars(select(GiftAidDeclaration).where(
            GiftAidDeclaration.donor_id == donor.id).order_by(GiftAidDeclaration.id))),
        consents=current_consents(donor.id),
        notes=list(db.session.scalars(select(DonorNote).where(DonorNote.donor_id == donor.id)
                                      .order_by(DonorNote.id.desc()))),
        refunds=refunds, offline=offline, sponsorships=sponsorships_for(donor),
        erasure=db.session.scalar(select(DonorErasure).where(
            DonorErasure.donor_id == donor.id)), disputes=disputes)
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


def record_consent(donor: Donor, channel: str, granted: bool, source: str, actor: User | None
                   ) -> DonorConsent:
    if channel not in CONSENT_CHANNELS:
        raise DomainError("Unknown channel.")
    row = DonorConsent(donor_id=donor.id, channel=channel, granted=granted, source=source,
                       recorded_by_id=actor.id if actor is not None else None)
    db.session.add(row)
    db.session.flush()
    record_audit(actor, "donor.consent_recorded", "donor", donor.id,
                 {"channel": channel, "granted": granted})
    return row


def _erased(donor: Donor) -> bool:
    return db.session.scalar(select(DonorErasure.id).where(
        DonorErasure.donor_id == donor.id)) is not None


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
    """Record cash, cheque or bank-transfer money that has arrived. (gift, created)."""
    existing = db.session.scalar(select(OfflineGift).where(
        OfflineGift.entry_key == data.entry_key))
    if existing is not None:
        return db.session.get_one(Donation, existing.donation_id), False
    if data.method not in OFFLINE_METHODS or data.currency not in CURRENCIES:
        raise DomainError("Unknown payment method or currency.")
    if data.amount_minor <= 0:
        raise DomainError("The amount must be more than zero.")
    if data.received_on > date.today():
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
    if data.campaign_id is not None:
        from donorhub.campaigns import services as campaign_services

        if campaign_services.get_campaign(data.campaign_id) is None:
            raise DomainError("No such campaign.")
    donation = Donation(
        donor=donor, kind=DonationKind.ONCE, amount_minor=data.amount_minor,
        fee_cover_minor=0, currency=data.currency,
        designation="campaign" if data.campaign_id else "general",
        campaign_id=data.campaign_id, status=DonationStatus.PENDING,
        paid_at=datetime.combine(data.received_on, time(12, 0), tzinfo=UTC))
    db.session.add(donation)
    db.session.flush()
    donation.settle()
    db.session.add(OfflineGift(donation_id=donation.id, method=data.method,
                               reference=data.reference, received_on=data.received_on,
                               entered_by_id=actor.id, entry_key=data.entry_key))
    db.session.flush()
    if data.send_receipt:
        donation_services.issue_receipt(donation)
    record_audit(actor, "donation.offline_recorded", "donation", donation.id,
                 {"method": data.method, "amount_minor": data.amount_minor,
                  "currency": data.currency})
    return donation, True


# Refunds -------------------------------------------------------------------------------------

def refundable_minor(donation: Donation) -> int:
    """What may still be refunded: never more than was paid, counting refunds asked for
    whose outcome Stripe has not told us yet."""
    asked = db.session.scalar(select(func.coalesce(func.sum(Refund.amount_minor), 0)).where(
        Refund.donation_id == donation.id,
        Refund.status.in_(REFUND_COUNTED | {RefundStatus.REQUESTED}))) or 0
    return max(0, donation.amount_minor - max(donation.amount_refunded_minor, int(asked)))


def request_refund(donation_id: int, amount_minor: int, reason: str, note: str | None,
                   request_token: str, actor: User) -> tuple[Refund, bool]:
    """The refund staff asked for, as a row of its own: (row, created). The caller commits it
    before send_refund calls Stripe, so the idempotency key (refund-<row id>-<random>) and Stripe's
    metadata name this one intent whatever happens next. The gift's row lock serialises two
    submits; the second of the same form (same request_token) gets the first's row.

    An offline gift's refund is recorded at once, because no one else will tell us."""
    donation = db.session.scalar(select(Donation).where(Donation.id == donation_id)
                                 .with_for_update())
    if donation is None:
        raise DomainError("No such gift.")
    existing = db.session.scalar(select(Refund).where(Refund.request_token == request_token))
    if existing is not None:
        if existing.donation_id != donation.id:
            raise DomainError("This form is out of date: reload the page and try again.")
        return existing, False
    if reason not in REFUND_REASONS:
        raise DomainError("Choose a reason.")
    if donation.status not in (DonationStatus.PAID, DonationStatus.PARTIALLY_REFUNDED):
        raise DomainError("Only a paid gift can be refunded.")
    if amount_minor <= 0 or amount_minor > refundable_minor(donation):
        raise DomainError("The amount is more than can be refunded.")
    offline = db.session.scalar(select(OfflineGift).where(
        OfflineGift.donation_id == donation.id))
    if offline is None and not (donation.stripe_payment_intent_id or donation.stripe_charge_id):
        raise DomainError("Stripe holds no payment for this gift.")
    refund = Refund(donation_id=donation.id, amount_minor=amount_minor,
                    currency=donation.currency, reason=reason, note=note,
                    status=RefundStatus.REQUESTED, request_token=request_token,
                    created_by_id=actor.id)
    try:
        with db.session.begin_nested():
            db.session.add(refund)
            db.session.flush()
    except IntegrityError:
        # The same form, submitted at the same moment (where the row lock is a no-op, as on
        # SQLite): the unique token lets one in; the other gets its row.
        existing = db.session.scalar(select(Refund).where(
            Refund.request_token == request_token))
        if existing is None or existing.donation_id != donation.id:
            raise DomainError("This form is out of date: reload the page and try again.") \
                from None
        return existing, False
    # The row id alone is not unique at Stripe: after a database restore (or with a second
    # database on the same Stripe account) ids are handed out again, and within Stripe's 24
    # hours the same key would replay the old refund or be refused. A random part, stored on
    # the row before Stripe is called, makes the key this row's for good.
    refund.idempotency_key = f"refund-{refund.id}-{secrets.token_urlsafe(12)}"
    if offline is not None:
        refund.advance(RefundStatus.SUCCEEDED)
        refunds.recompute(donation)
    record_audit(actor, "donation.refunded", "donation", donation.id,
                 {"refund": refund.id, "amount_minor": amount_minor, "reason": reason})
    db.session.flush()
    return refund, True


def send_refund(refund_id: int) -> Refund:
    """Call Stripe for a committed refund row and record its answer. The same row always
    sends the same key and the same parameters, so a retry is the same refund, never a
    second one. Locks the gift, then the refund (the webhook's order)."""
    row = db.session.get(Refund, refund_id)
    if row is None:
        raise DomainError("No such refund.")
    donation = db.session.scalar(select(Donation).where(Donation.id == row.donation_id)
                                 .with_for_update())
    row = db.session.scalar(select(Refund).where(Refund.id == refund_id).with_for_update()
                            .execution_options(populate_existing=True))
    if donation is None or row is None:  # both read above; neither is ever deleted
        raise RuntimeError("refund or gift row vanished")
    if row.idempotency_key is None:  # given when the refund was recorded
        raise RuntimeError("refund without an idempotency key")
    if row.status is not RefundStatus.REQUESTED or row.stripe_refund_id:
        return row  # already sent and answered (a webhook or reconcile got there first)
    result = get_gateway().refund(RefundRequest(
        payment_intent_id=donation.stripe_payment_intent_id,
        charge_id=None if donation.stripe_payment_intent_id else donation.stripe_charge_id,
        amount_minor=row.amount_minor, reason=None if row.reason == "other" else row.reason,
        idempotency_key=row.idempotency_key,
        metadata={"donation": donation.public_id, "refund": str(row.id)}))
    if row.stripe_refund_id is None:
        row.stripe_refund_id = result.id
    row.advance(refunds.refund_status(result.status))
    db.session.flush()
    return row


def settle_refund(refund_id: int) -> str | None:
    """Ask Stripe now what became of a refund whose call failed with a 5xx: "recovered"
    (Stripe made it), "not_sent" (it did not: the amount is free again) or None."""
    return refunds.recover_refund(refund_id)


def refund_refused(refund_id: int, kind: str) -> None:
    """Stripe refused the request for good (a 4xx): no money moved; the amount is free again."""
    row = db.session.scalar(select(Refund).where(Refund.id == refund_id).with_for_update())
    if row is not None and row.status is RefundStatus.REQUESTED and not row.stripe_refund_id:
        row.advance(RefundStatus.NOT_SENT)
        row.failure_reason = f"refused by Stripe ({kind})"[:64]
        record_audit(None, "donation.refund_not_sent", "donation", row.donation_id,
                     {"refund": row.id, "kind": kind})
