"""The donors list's Gift Aid filter shows only declarations in force: taken effect (the gift
or plan it was made with was paid) and not cancelled. A declaration from a checkout that was
never paid covers nothing, even when confirmed at once by a signed-in donor."""

from __future__ import annotations

from datetime import timedelta

from donorhub.database import utcnow
from donorhub.donations.models import Donor, GiftAidDeclaration, GiftAidScope
from donorhub.extensions import db
from tests.campaigns.test_campaigns import staff_client


def _declaration(
    donor: Donor, *, effective: bool, confirmed: bool = False, cancelled: bool = False
) -> GiftAidDeclaration:
    now = utcnow()
    return GiftAidDeclaration(
        donor=donor,
        first_name="Test",
        last_name="Donor",
        house="1",
        postcode="AB1 2CD",
        scope=GiftAidScope.ALL,
        text_version="v1",
        declared_at=now - timedelta(days=3),
        effective_at=now - timedelta(days=2) if effective else None,
        confirmed_at=now - timedelta(days=3) if confirmed else None,
        cancelled_at=now - timedelta(days=1) if cancelled else None,
    )


def test_gift_aid_filter_lists_only_declarations_in_force(app, make_user):
    with app.app_context():
        donors = {
            n: Donor(email=f"{n.lower()}@example.org", full_name=n)
            for n in ("INFORCE", "UNPAID", "UNPAIDCONFIRMED", "CANCELLED", "NONE")
        }
        db.session.add_all(donors.values())
        db.session.add_all(
            [
                _declaration(donors["INFORCE"], effective=True),
                _declaration(donors["UNPAID"], effective=False),
                _declaration(donors["UNPAIDCONFIRMED"], effective=False, confirmed=True),
                _declaration(donors["CANCELLED"], effective=True, cancelled=True),
            ]
        )
        db.session.commit()
    client, _ = staff_client(app, make_user)

    def names(query: str) -> set[str]:
        page = client.get("/staff/donors?" + query).get_data(as_text=True)
        return {n for n in donors if f">{n}</a>" in page}

    assert names("") == set(donors)
    assert names("gift_aid=on") == {"INFORCE"}
