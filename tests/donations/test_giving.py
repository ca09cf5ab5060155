"""Giving once through the simulator: form → Checkout → webhook → receipt by real SMTP."""

from __future__ import annotations

from sqlalchemy import func, select

from donorhub.donations.models import Donation, DonationStatus
from donorhub.extensions import db
from donorhub.payments.models import StripeEvent
from tests.payments.stripe_helpers import checkout_url, deliver, give, send_mail


def test_one_off_gift_end_to_end(pay_app, pay_client, sim, mailbox):
    response = give(pay_client, amount_choice="2500", cover_fees="on")
    url = checkout_url(response)
    assert url.startswith(sim.base_url + "/checkout/cs_")
    with pay_app.app_context():
        donation = db.session.scalar(select(Donation))
        assert donation.status is DonationStatus.PENDING
        # £25 with 1.5% + 20p covered: ceil((2500 + 20) / 0.985) = 2559
        assert (donation.amount_minor, donation.fee_cover_minor) == (2559, 59)
    status, location = sim.pay(url)
    assert status == 303 and "/donate/thank-you?session_id=cs_" in location
    thank_you = location.split("donorhub.test", 1)[1]
    page = pay_client.get(thank_you).get_data(as_text=True)
    assert "We are confirming" in page
    codes = deliver(pay_client, sim.events())
    assert set(codes) == {200}
    with pay_app.app_context():
        donation = db.session.scalar(select(Donation))
        assert donation.status is DonationStatus.PAID
        assert donation.receipt.number.endswith("-000001")
        assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == len(codes)
    assert "is confirmed" in pay_client.get(thank_you).get_data(as_text=True)
    assert send_mail(pay_app) == 1
    (mail,) = mailbox.to("gita@example.org")
    assert "receipt" in mail.subject
    for text in (
        "£25.59",
        "£0.59 to cover card fees",
        "Registered charity 1234567",
        "Receipt number: ",
        "Gift Aid: no declaration",
    ):
        assert text in mail.text, text


def test_amount_and_currency_come_from_the_server(pay_app, pay_client, sim):
    bad = [
        {"amount_choice": "1234"},  # not a preset
        {"amount_choice": "custom", "custom_amount": "1"},  # under the minimum
        {"amount_choice": "custom", "custom_amount": "99999999"},
        {"amount_choice": "custom", "custom_amount": "2.999"},
        {"currency": "jpy"},
        {"frequency": "weekly"},
        {"amount_choice": "custom", "custom_amount": "-5"},
        {"gift_aid": "on", "currency": "usd"},
        {"unexpected": "1"},
    ]
    for change in bad:
        response = give(pay_client, **change)
        assert response.status_code == 422, change
    with pay_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Donation)) == 0
    assert sim.requests("/v1/checkout") == []


def test_a_campaign_gift_receipt_names_the_campaign(pay_app, pay_client, sim, mailbox, make_user):
    from datetime import date, timedelta

    from donorhub.accounts.models import User
    from donorhub.campaigns import services as campaigns

    fundraiser = make_user(roles=("fundraiser",))
    with pay_app.app_context():
        actor = db.session.get(User, fundraiser.id)
        campaign = campaigns.create_campaign(
            {
                "name": "Winter beds appeal",
                "slug": "winter-beds",
                "summary": "Warm beds",
                "body_md": "Beds.",
                "goal_minor": 500000,
                "goal_currency": "gbp",
                "starts_on": date.today() - timedelta(days=1),
                "ends_on": date.today() + timedelta(days=30),
                "appeal_code": "WB26",
            },
            actor,
        )
        campaigns.publish_campaign(campaign, actor)
        db.session.commit()
    sim.pay(checkout_url(give(pay_client, campaign="winter-beds")))
    assert set(deliver(pay_client, sim.events())) == {200}
    send_mail(pay_app)
    (receipt,) = [m for m in mailbox.to("gita@example.org") if "receipt" in m.subject]
    assert "Winter beds appeal" in receipt.text
    assert "general fund" not in receipt.text
