"""Erasing a donor keeps what HMRC may audit for claims already filed, and erases the rest.

A Gift Aid declaration behind a filed claim is the charity's evidence for that claim (name,
home address, declaration text version, scope, dates): it is kept as claimed. A declaration
behind no filed claim is erased, as is everything else personal.
"""

from __future__ import annotations

from datetime import UTC, datetime

from donorhub.accounts.models import User
from donorhub.donations import services
from donorhub.donations.data_protection import ERASED_NAME, erase_donor
from donorhub.donations.models import (
    Donation,
    DonationKind,
    DonationStatus,
    Donor,
    GiftAidClaim,
    GiftAidDeclaration,
    GiftAidScope,
)
from donorhub.extensions import db


def _declaration(donor: Donor, first: str, house: str, postcode: str) -> GiftAidDeclaration:
    when = datetime(2025, 5, 1, tzinfo=UTC)
    declaration = GiftAidDeclaration(
        donor=donor,
        title="Ms",
        first_name=first,
        last_name="Shah",
        house=house,
        address_line="Long Lane, Leeds",
        postcode=postcode,
        scope=GiftAidScope.ALL,
        text_version="2026-01",
        channel="web",
        declared_at=when,
        effective_at=when,
        confirmed_at=when,
    )
    db.session.add(declaration)
    db.session.flush()
    return declaration


def _gift(donor: Donor, declaration: GiftAidDeclaration, claim: GiftAidClaim | None) -> Donation:
    gift = Donation(
        donor=donor,
        kind=DonationKind.ONCE,
        amount_minor=5000,
        currency="gbp",
        status=DonationStatus.PAID,
        paid_at=datetime(2025, 6, 1, tzinfo=UTC),
        gift_aid_declaration_id=declaration.id,
        donor_name="Asha Shah",
        dedication="For my mother",
        frequency="once",
        gift_aid_claim_id=claim.id if claim else None,
    )
    db.session.add(gift)
    db.session.flush()
    return gift


def test_erasure_keeps_declarations_behind_filed_claims_and_erases_the_rest(app, make_user):
    admin = make_user(roles=("admin",))
    with app.app_context():
        donor = Donor(email="asha@example.org", full_name="Asha Shah")
        db.session.add(donor)
        db.session.flush()
        claimed = _declaration(donor, "Asha", "12", "LS1 4AB")
        unclaimed = _declaration(donor, "A", "Flat 3", "LS2 9ZZ")
        claim = GiftAidClaim(rows=1, total_minor=5000)
        db.session.add(claim)
        db.session.flush()
        filed_gift = _gift(donor, claimed, claim)
        other_gift = _gift(donor, unclaimed, None)
        before = services.claim_rows(claim.id)
        db.session.commit()
        ids = (donor.id, claimed.id, unclaimed.id, filed_gift.id, other_gift.id, claim.id)

        erase_donor(db.session.get(Donor, ids[0]), db.session.get(User, admin.id))
        db.session.commit()
        db.session.expire_all()

        donor = db.session.get(Donor, ids[0])
        assert donor.full_name == ERASED_NAME and "asha" not in donor.email
        kept = db.session.get(GiftAidDeclaration, ids[1])
        assert (
            kept.title,
            kept.first_name,
            kept.last_name,
            kept.house,
            kept.address_line,
            kept.postcode,
            kept.text_version,
            kept.scope,
        ) == (
            "Ms",
            "Asha",
            "Shah",
            "12",
            "Long Lane, Leeds",
            "LS1 4AB",
            "2026-01",
            GiftAidScope.ALL,
        )
        erased = db.session.get(GiftAidDeclaration, ids[2])
        assert (
            erased.title,
            erased.first_name,
            erased.last_name,
            erased.house,
            erased.address_line,
            erased.postcode,
        ) == (None, "Erased", "Erased", "Erased", None, "ERASED")
        for gift_id in ids[3:5]:
            gift = db.session.get(Donation, gift_id)
            assert gift.donor_name is None and gift.dedication is None
            assert gift.amount_minor == 5000  # the financial record stays
        # The filed claim's file downloads again exactly as it was sent to HMRC.
        assert [r.cells() for r in services.claim_rows(ids[5])] == [r.cells() for r in before]
