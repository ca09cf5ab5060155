"""Staff exports: donations and donors (respecting consent). Every export is audited."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from sqlalchemy import select

from donorhub.audit import record_audit
from donorhub.donations.models import (
    Donation,
    Donor,
    DonorConsent,
    DonorErasure,
    OfflineGift,
    Receipt,
    net_gift_expression,
)
from donorhub.extensions import db
from donorhub.reports import services as reports

if TYPE_CHECKING:
    from donorhub.accounts.models import User

DONATION_COLUMNS = [
    "gift_id",
    "donor_id",
    "paid_on",
    "currency",
    "amount_minor",
    "fee_cover_minor",
    "refunded_minor",
    "net_minor",
    "status",
    "fund",
    "campaign_id",
    "method",
    "receipt",
]
DONOR_COLUMNS = [
    "donor_id",
    "full_name",
    "email",
    "email_consent",
    "consent_source",
    "consent_recorded_on",
    "first_gift_on",
]


def donations_export(date_from: date, date_to: date, actor: User) -> tuple[list[str], list[list]]:
    net = net_gift_expression()
    rows = db.session.execute(
        select(Donation, net, OfflineGift.method, Receipt.number)
        .outerjoin(OfflineGift, OfflineGift.donation_id == Donation.id)
        .outerjoin(Receipt, Receipt.donation_id == Donation.id)
        .where(Donation.paid_at.is_not(None), reports._in_range(date_from, date_to))
        .order_by(Donation.paid_at, Donation.id)
    ).all()
    out = [
        [
            g.public_id,
            g.donor_id,
            g.paid_at.date().isoformat(),
            g.currency,
            g.amount_minor,
            g.fee_cover_minor,
            g.amount_refunded_minor,
            int(n),
            g.status.value,
            g.designation,
            g.campaign_id,
            method or "card",
            receipt,
        ]
        for g, n, method, receipt in rows
    ]
    record_audit(actor, "export.donations", "export", None, {"rows": len(out)})
    return DONATION_COLUMNS, out


def donors_export(
    date_from: date, date_to: date, audience: str, actor: User
) -> tuple[list[str], list[list]]:
    """Donors with a counted gift in the range. audience "consented": only donors whose
    newest e-mail consent is a yes (for marketing); "all": every such donor (for
    administration, e.g. thanking), never erased donors."""
    in_period = reports.donor_ids_in(date_from, date_to)
    erased = set(db.session.scalars(select(DonorErasure.donor_id)))
    firsts = reports.first_gift_dates(in_period)
    # Each donor's newest e-mail consent (the last recorded wins, as on the donor's page).
    consents = {
        row.donor_id: row
        for row in db.session.scalars(
            select(DonorConsent)
            .where(DonorConsent.channel == "email", DonorConsent.donor_id.in_(in_period))
            .order_by(DonorConsent.recorded_at, DonorConsent.id)
        )
    }
    out = []
    for donor in db.session.scalars(
        select(Donor).where(Donor.id.in_(in_period)).order_by(Donor.id)
    ):
        if donor.id in erased:
            continue
        consent = consents.get(donor.id)
        granted = bool(consent and consent.granted)
        if audience == "consented" and not granted:
            continue
        out.append(
            [
                donor.id,
                donor.full_name,
                donor.email,
                granted,
                consent.source if consent else None,
                consent.recorded_at.date().isoformat() if consent else None,
                firsts[donor.id].date().isoformat() if donor.id in firsts else None,
            ]
        )
    record_audit(actor, "export.donors", "export", None, {"rows": len(out), "audience": audience})
    return DONOR_COLUMNS, out
