"""Gift Aid declarations and the HMRC claim export; history and yearly statements."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

from sqlalchemy import select

from donorhub.donations import giftaid
from donorhub.donations.models import Donation, GiftAidDeclaration
from donorhub.extensions import db
from tests.helpers import sign_in
from tests.metrics import METRICS
from tests.payments.stripe_helpers import Postman, checkout_url, csrf_from, give, send_mail

GIFT_AID = {
    "gift_aid": "on",
    "gift_aid_title": "Dr",
    "gift_aid_first_name": "Gita",
    "gift_aid_last_name": "Smith-Jones",
    "gift_aid_house": "12",
    "gift_aid_postcode": "s19 2bd",
    "gift_aid_confirm": "on",
}


def test_gift_aid_declaration_receipt_and_claim_export(
    pay_app, pay_client, sim, make_user, mailbox
):
    sim.pay(checkout_url(give(pay_client, cover_fees="on", **GIFT_AID)))
    Postman(sim, pay_client).flush()
    with pay_app.app_context():
        declaration = db.session.scalar(select(GiftAidDeclaration))
        assert (
            declaration.text_version,
            declaration.channel,
            declaration.scope.value,
            declaration.postcode,
        ) == ("2026-01", "web", "all", "S19 2BD")
        gift = db.session.scalar(select(Donation))
        assert gift.gift_aid_declaration_id == declaration.id
    send_mail(pay_app)
    (receipt,) = mailbox.to("gita@example.org")
    assert "Gift Aid: yes" in receipt.text
    staff = make_user(roles=("fundraiser",))
    client = pay_app.test_client()
    sign_in(client, staff.email, totp_secret=staff.totp_secret)
    today = date.today().isoformat()
    preview = client.get(f"/staff/donations/gift-aid?date_from=2020-01-01&date_to={today}")
    assert "1 gifts ready" in preview.get_data(as_text=True)
    token = csrf_from(client, "/staff/donations/gift-aid")
    export = client.post(
        "/staff/donations/gift-aid",
        data={"csrf_token": token, "date_from": "2020-01-01", "date_to": today},
    )
    assert export.status_code == 200 and export.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(export.get_data(as_text=True))))
    assert rows[0] == list(giftaid.SCHEDULE_COLUMNS)
    title, first, last, house, postcode, aggregated, sponsored, when, amount = rows[1]
    assert (title, first, last, house, postcode, aggregated, sponsored) == (
        "Dr",
        "Gita",
        "Smith Jones",
        "12",
        "S19 2BD",
        "",
        "",
    )
    assert when == datetime.now(UTC).strftime("%d/%m/%y")
    assert amount == "25.00"  # the fee cover is not claimed
    again = client.post(
        "/staff/donations/gift-aid",
        data={"csrf_token": token, "date_from": "2020-01-01", "date_to": today},
    )
    assert again.status_code == 422  # each gift is claimed once


def test_claim_rows_are_validated_before_anything_is_written():
    now = datetime.now(UTC)
    good, problems = giftaid.build_row(
        donation_id=1,
        title="Mrs",
        first_name="Ann",
        last_name="Lee",
        house="1",
        postcode="sw1a1aa",
        paid_at=now,
        amount_minor=1000,
        now=now,
    )
    assert problems == [] and good.postcode == "SW1A 1AA" and good.amount == "10.00"
    bad_cases = [
        dict(title="Professor"),
        dict(first_name="A" * 36),
        dict(last_name=""),
        dict(house=""),
        dict(postcode="12345"),
        dict(paid_at=datetime(2019, 1, 1, tzinfo=UTC)),
        dict(amount_minor=0),
    ]
    caught = 0
    for change in bad_cases:
        args = dict(
            donation_id=1,
            title="Mrs",
            first_name="Ann",
            last_name="Lee",
            house="1",
            postcode="SW1A 1AA",
            paid_at=now,
            amount_minor=1000,
            now=now,
        )
        args.update(change)
        _row, problems = giftaid.build_row(**args)
        caught += bool(problems)
    assert caught == len(bad_cases)
    METRICS.report("Gift Aid row checks: bad rows tried / refused", f"{len(bad_cases)} / {caught}")


def test_history_statement_and_cancelling_gift_aid(pay_app, pay_client, sim, make_user):
    sim.pay(checkout_url(give(pay_client, **GIFT_AID)))
    sim.pay(checkout_url(give(pay_client, currency="inr", amount_choice="100000")))
    Postman(sim, pay_client).flush()
    unverified = make_user("gita@example.org", verified=False)
    client = pay_app.test_client()
    sign_in(client, unverified.email)
    # An unverified account with the same address cannot see the guest's gifts.
    assert "£25.00" not in client.get("/donate/history").get_data(as_text=True)
    with pay_app.app_context():
        from donorhub.accounts.models import User
        from donorhub.database import utcnow

        db.session.get(User, unverified.id).email_verified_at = utcnow()
        db.session.commit()
    page = client.get("/donate/history").get_data(as_text=True)
    assert "£25.00" in page and "₹1,000.00" in page
    today = date.today()
    uk_year = today.year if today >= date(today.year, 4, 6) else today.year - 1
    statement = client.get(f"/donate/statement/uk/{uk_year}").get_data(as_text=True)
    assert "Total in GBP" in statement and "Total in INR" in statement
    assert "6 April" in statement
    india = client.get(f"/donate/statement/in/{uk_year - 5}").get_data(as_text=True)
    assert "No gifts in this period" in india and "1 April" in india
    with pay_app.app_context():
        declaration_id = db.session.scalar(select(GiftAidDeclaration.id))
    token = csrf_from(client, "/donate/history")
    response = client.post(f"/donate/gift-aid/{declaration_id}/cancel", data={"csrf_token": token})
    assert response.status_code == 302
    with pay_app.app_context():
        assert db.session.get(GiftAidDeclaration, declaration_id).cancelled_at is not None
    # Another account cannot cancel it (404, the same as a missing one).
    other = make_user("other@example.org")
    stranger = pay_app.test_client()
    sign_in(stranger, other.email)
    token = csrf_from(stranger, "/donate/history")
    assert (
        stranger.post(
            f"/donate/gift-aid/{declaration_id}/cancel", data={"csrf_token": token}
        ).status_code
        == 404
    )
