"""Nobody can attach a Gift Aid declaration to someone else's gifts by typing their address. A
declaration made in a checkout takes effect only when that gift is paid, and covers other gifts
only once the owner of the address confirms."""

from __future__ import annotations

import re
from datetime import date
from urllib.parse import urlsplit

from sqlalchemy import select

from donorhub.donations import giftaid
from donorhub.donations.models import Donation, GiftAidDeclaration
from donorhub.extensions import db
from tests.helpers import sign_in
from tests.payments.stripe_helpers import (
    Postman,
    checkout_url,
    csrf_from,
    give,
    send_mail,
)

VICTIM = {"email": "victim@example.org", "full_name": "Vic Tim"}
DECLARE = {
    "gift_aid": "on",
    "gift_aid_first_name": "Evil",
    "gift_aid_last_name": "Person",
    "gift_aid_house": "1",
    "gift_aid_postcode": "SW1A 1AA",
    "gift_aid_confirm": "on",
}


def _claim_rows(app) -> list:
    with app.app_context():
        return giftaid.preview_claim(date(2020, 1, 1), date(2100, 1, 1)).rows


def test_an_abandoned_checkout_declares_nothing_for_anyone(pay_app, pay_client, sim, make_user):
    postman = Postman(sim, pay_client)
    sim.pay(checkout_url(give(pay_client, **VICTIM)))
    postman.flush()
    stranger = pay_app.test_client()  # signed out, types the victim's address, never pays
    assert give(stranger, **VICTIM, **DECLARE).status_code == 303
    sim.pay(checkout_url(give(pay_client, **VICTIM)))  # the victim's next gift
    postman.flush()
    assert _claim_rows(pay_app) == []
    with pay_app.app_context():
        declaration = db.session.scalar(select(GiftAidDeclaration))
        assert declaration.effective_at is None
        assert all(
            g.gift_aid_declaration_id is None
            for g in db.session.scalars(select(Donation).where(Donation.paid_at.is_not(None)))
        )
    # ... and it is not shown as the victim's in their history either.
    victim = make_user(VICTIM["email"])
    client = pay_app.test_client()
    sign_in(client, victim.email)
    assert "Evil" not in client.get("/donate/history").get_data(as_text=True)


def test_a_paid_declaration_covers_its_gift_and_others_only_once_confirmed(
    pay_app, pay_client, sim, mailbox
):
    postman = Postman(sim, pay_client)
    sim.pay(checkout_url(give(pay_client, **VICTIM, **DECLARE)))  # someone pays with it
    postman.flush()
    assert len(_claim_rows(pay_app)) == 1  # the gift it was made with
    sim.pay(checkout_url(give(pay_client, **VICTIM)))  # a later gift without Gift Aid
    postman.flush()
    assert len(_claim_rows(pay_app)) == 1  # not covered: the address owner has not confirmed
    send_mail(pay_app)
    receipt = mailbox.to(VICTIM["email"])[0].text
    link = re.search(r"http://\S+/donate/gift-aid/confirm/\S+", receipt).group(0)
    path = urlsplit(link).path
    page = pay_client.get(path)
    assert page.status_code == 200 and "Yes, cover all my gifts" in page.get_data(as_text=True)
    assert pay_client.get(path.replace("confirm/", "confirm/x")).status_code == 400
    with pay_app.app_context():
        assert db.session.scalar(select(GiftAidDeclaration.confirmed_at)) is None  # GET: no
    token = csrf_from(pay_client, path)
    assert pay_client.post(path, data={"csrf_token": token}).status_code == 200
    sim.pay(checkout_url(give(pay_client, **VICTIM)))  # after confirmation
    postman.flush()
    assert len(_claim_rows(pay_app)) == 2


def test_a_signed_in_verified_owner_declares_for_all_gifts_at_once(
    pay_app, pay_client, sim, make_user
):
    owner = make_user(VICTIM["email"])
    client = pay_app.test_client()
    sign_in(client, owner.email)
    postman = Postman(sim, client)
    sim.pay(checkout_url(give(client, **DECLARE)))
    postman.flush()
    sim.pay(checkout_url(give(client)))
    postman.flush()
    assert len(_claim_rows(pay_app)) == 2
