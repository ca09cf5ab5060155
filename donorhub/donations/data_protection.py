"""Data protection: a donor's own data as JSON, and erasure carried out by staff.

Erasure overwrites personal data (names, e-mails, addresses, notes, dedications), keeps the
financial records the law requires (amounts, dates, currencies, receipt numbers, Gift Aid
claim links, and each Gift Aid declaration behind a claim already filed, as claimed, for
HMRC's audit), deletes the Stripe customers, disables the account, and is audited.
It also forgets the stored Stripe events that still hold the donor's e-mail address or
customer ids (an event is stored with its payload until the worker applies it, and a dead
letter keeps it until resolved): those payloads are cleared, and the export lists them.
"""

from __future__ import annotations

from sqlalchemy import select

from donorhub.accounts.models import DataRequest, DataRequestKind, DataRequestStatus, User
from donorhub.audit import record_audit
from donorhub.database import utcnow
from donorhub.donations import services as donation_services
from donorhub.donations.models import (
    Donation,
    Donor,
    DonorConsent,
    DonorErasure,
    DonorNote,
    GiftAidDeclaration,
    OfflineGift,
    RecurringPlan,
)
from donorhub.errors import DomainError
from donorhub.extensions import db
from donorhub.payments import event_queue
from donorhub.payments.gateway import get_gateway

ERASED_NAME = "Erased donor"


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def export_for_user(user: User) -> dict:
    """Everything we hold about the signed-in person, and nobody else's."""
    donor = donation_services.donor_for_user(user)
    data: dict = {
        "account": {
            "email": user.email,
            "full_name": user.full_name,
            "created_at": _iso(user.created_at),
            "email_verified_at": _iso(user.email_verified_at),
        },
        "donor": None,
        "gifts": [],
        "plans": [],
        "gift_aid_declarations": [],
        "consents": [],
        "payment_events_held": [],
    }
    if donor is None:
        return data
    data["payment_events_held"] = event_queue.held_events_summary(
        event_queue.events_with_payload_mentioning(_stripe_needles(donor))
    )
    data["donor"] = {
        "email": donor.email,
        "full_name": donor.full_name,
        "created_at": _iso(donor.created_at),
    }
    for g in db.session.scalars(
        select(Donation).where(Donation.donor_id == donor.id).order_by(Donation.id)
    ):
        data["gifts"].append(
            {
                "id": g.public_id,
                "amount_minor": g.amount_minor,
                "currency": g.currency,
                "fee_cover_minor": g.fee_cover_minor,
                "status": g.status.value,
                "paid_at": _iso(g.paid_at),
                "refunded_minor": g.amount_refunded_minor,
                "designation": g.designation,
                "dedication": g.dedication,
                "name": g.donor_name,
                "frequency": g.paid_frequency,
                "receipt": g.receipt.number if g.receipt else None,
            }
        )
    for p in db.session.scalars(
        select(RecurringPlan).where(RecurringPlan.donor_id == donor.id).order_by(RecurringPlan.id)
    ):
        data["plans"].append(
            {
                "id": p.public_id,
                "amount_minor": p.amount_minor,
                "currency": p.currency,
                "frequency": p.frequency.value,
                "status": p.status.value,
                "started_at": _iso(p.started_at),
            }
        )
    for d in db.session.scalars(
        select(GiftAidDeclaration)
        .where(GiftAidDeclaration.donor_id == donor.id)
        .order_by(GiftAidDeclaration.id)
    ):
        data["gift_aid_declarations"].append(
            {
                "title": d.title,
                "first_name": d.first_name,
                "last_name": d.last_name,
                "house": d.house,
                "address_line": d.address_line,
                "postcode": d.postcode,
                "scope": d.scope.value,
                "declared_at": _iso(d.declared_at),
                "cancelled_at": _iso(d.cancelled_at),
            }
        )
    for c in db.session.scalars(
        select(DonorConsent).where(DonorConsent.donor_id == donor.id).order_by(DonorConsent.id)
    ):
        data["consents"].append(
            {
                "channel": c.channel,
                "granted": c.granted,
                "source": c.source,
                "recorded_at": _iso(c.recorded_at),
            }
        )
    return data


def _stripe_needles(donor: Donor) -> list[str]:
    """What identifies this donor inside a stored Stripe payload: the e-mail address and
    the Stripe customer ids of their plans."""
    customers = db.session.scalars(
        select(RecurringPlan.stripe_customer_id).where(
            RecurringPlan.donor_id == donor.id, RecurringPlan.stripe_customer_id.is_not(None)
        )
    )
    return [donor.email, *(c for c in customers if c)]


def open_requests() -> list[DataRequest]:
    return list(
        db.session.scalars(
            select(DataRequest)
            .where(DataRequest.status == DataRequestStatus.REQUESTED)
            .order_by(DataRequest.id)
        )
    )


def donor_for_request(request: DataRequest) -> Donor | None:
    if request.user_id is None:
        return None
    return db.session.scalar(select(Donor).where(Donor.user_id == request.user_id))


def erase_donor(donor: Donor, actor: User, data_request: DataRequest | None = None) -> DonorErasure:
    """Erase a donor's personal data. Stripe first: if it fails, nothing here changes."""
    if db.session.scalar(select(DonorErasure.id).where(DonorErasure.donor_id == donor.id)):
        raise DomainError("This donor was already erased.")
    plans = list(
        db.session.scalars(select(RecurringPlan).where(RecurringPlan.donor_id == donor.id))
    )
    if any(p.is_live for p in plans):
        raise DomainError(
            "Cancel this donor's live plans first, so no payment is taken after erasure."
        )
    customers = sorted({p.stripe_customer_id for p in plans if p.stripe_customer_id})
    held_events = event_queue.events_with_payload_mentioning([donor.email, *customers])
    gateway = get_gateway()
    for customer_id in customers:
        gateway.delete_customer(customer_id)
    event_queue.erase_payloads(held_events)
    tag = f"erased-{donor.id}"
    donor.email = f"{tag}@erased.invalid"
    donor.full_name = ERASED_NAME
    # A declaration behind a claim already filed is kept as claimed (name, address, text
    # version, scope, dates): HMRC may audit the claim for 6 years, and the declaration is
    # the charity's evidence. Every other declaration is erased.
    filed = set(
        db.session.scalars(
            select(Donation.gift_aid_declaration_id)
            .where(
                Donation.gift_aid_claim_id.is_not(None),
                Donation.gift_aid_declaration_id.is_not(None),
            )
            .join(GiftAidDeclaration, GiftAidDeclaration.id == Donation.gift_aid_declaration_id)
            .where(GiftAidDeclaration.donor_id == donor.id)
        )
    )
    for declaration in db.session.scalars(
        select(GiftAidDeclaration).where(GiftAidDeclaration.donor_id == donor.id)
    ):
        if declaration.id in filed:
            continue
        declaration.title = None
        declaration.first_name = "Erased"
        declaration.last_name = "Erased"
        declaration.house = "Erased"
        declaration.address_line = None
        declaration.postcode = "ERASED"
    for gift in db.session.scalars(select(Donation).where(Donation.donor_id == donor.id)):
        gift.dedication = None
        gift.donor_name = None
    for plan in plans:
        plan.dedication = None
        plan.donor_name = None
        plan.stripe_customer_id = None
    for note in db.session.scalars(select(DonorNote).where(DonorNote.donor_id == donor.id)):
        note.body = "[erased]"
    for offline in db.session.scalars(
        select(OfflineGift)
        .join(Donation, Donation.id == OfflineGift.donation_id)
        .where(Donation.donor_id == donor.id)
    ):
        offline.reference = None
    if donor.user_id is not None:
        user = db.session.get_one(User, donor.user_id)
        user.email = f"{tag}@erased.invalid"
        user.full_name = ERASED_NAME
        user.is_disabled = True
        user.totp_secret = None
        user.totp_pending_secret = None
        user.end_all_sessions()
        for request in db.session.scalars(
            select(DataRequest).where(
                DataRequest.user_id == user.id,
                DataRequest.status == DataRequestStatus.REQUESTED,
                DataRequest.kind == DataRequestKind.ERASURE,
            )
        ):
            request.complete(utcnow())
    if data_request is not None and data_request.status is DataRequestStatus.REQUESTED:
        data_request.complete(utcnow())
    erasure = DonorErasure(
        donor_id=donor.id,
        erased_by_id=actor.id,
        data_request_id=data_request.id if data_request else None,
        stripe_customers_deleted=len(customers),
    )
    db.session.add(erasure)
    db.session.flush()
    record_audit(
        actor,
        "donor.erased",
        "donor",
        donor.id,
        {
            "stripe_customers_deleted": len(customers),
            "stripe_event_payloads_erased": len(held_events),
            "gift_aid_declarations_kept_for_filed_claims": len(filed),
            "data_request": data_request.id if data_request else None,
        },
    )
    return erasure
