"""Edge cases of giving: amounts, the Gift Aid export (UK dates, HMRC's 4-year rule, names, bad
rows, re-download, double claims), plan checkout and subscription events, the Billing Portal's
return page."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select

from donorhub.database import utcnow
from donorhub.donations import giftaid, plans
from donorhub.donations.models import (
    Donation,
    DonationKind,
    DonationStatus,
    Donor,
    GiftAidClaim,
    GiftAidDeclaration,
    GiftAidScope,
    PlanStatus,
    RecurringPlan,
)
from donorhub.errors import DomainError
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from donorhub.money import BadAmount, parse_amount
from tests.helpers import sign_in
from tests.payments.stripe_helpers import (
    Postman,
    checkout_url,
    csrf_from,
    deliver,
    give,
    post_event,
)


def test_parse_amount_takes_only_plain_decimal_amounts():
    assert [parse_amount(t) for t in ("25", "25.5", "1,000.00", "£10", " 7.05 ")] == [
        2500,
        2550,
        100000,
        1000,
        705,
    ]
    bad = ("1e3", "1E3", "inf", "NaN", "-5", "25.123", ".5", "25.", "0x10", "١٢", "1_000")
    for text in bad:
        with pytest.raises(BadAmount):
            parse_amount(text)


# Gift Aid export -------------------------------------------------------------------------


def _row(**change):
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    args = dict(
        donation_id=1,
        title="Ms",
        first_name="Zoë",
        last_name="Smith-Jones",
        house="1",
        postcode="SW1A 1AA",
        paid_at=datetime(2026, 6, 30, 23, 30, tzinfo=UTC),
        amount_minor=1000,
        now=now,
    )
    args.update(change)
    return giftaid.build_row(**args)


def test_schedule_rows_use_uk_dates_hmrc_names_and_the_tax_year_rule():
    row, problems = _row()
    assert problems == []
    assert (row.first_name, row.last_name) == ("Zoe", "Smith Jones")
    assert row.date == "01/07/26"  # 00:30 in London (BST) on 1 July
    for name in ("O'Brien", "José-María", "Ngũgĩ", "Anne‐Marie"):
        assert _row(last_name=name)[1] == [], name
    # HMRC: 4 years from the end of the tax year of the gift (5 April), not 1,460 days.
    assert _row(paid_at=datetime(2022, 4, 10, tzinfo=UTC))[1] == []  # year to 5 Apr 2023
    late = _row(paid_at=datetime(2022, 4, 1, tzinfo=UTC))[1]  # year to 5 Apr 2022
    assert late and "5 April 2026" in late[0]
    assert _row(last_name="李")[1]  # no Latin letters at all: reported, not guessed


def _gift(donor, declaration, *, amount=1000, when=None) -> Donation:
    gift = Donation(
        donor=donor,
        kind=DonationKind.ONCE,
        amount_minor=amount,
        currency="gbp",
        status=DonationStatus.PAID,
        paid_at=when or utcnow(),
        gift_aid_declaration_id=declaration.id,
    )
    db.session.add(gift)
    return gift


def _declared(first: str, last: str, email: str):
    donor = Donor(email=email, full_name=f"{first} {last}")
    declaration = GiftAidDeclaration(
        donor=donor,
        first_name=first,
        last_name=last,
        house="2",
        postcode="S19 2BD",
        scope=GiftAidScope.ALL,
        text_version="2026-01",
        effective_at=utcnow(),
        confirmed_at=utcnow(),
    )
    db.session.add_all([donor, declaration])
    db.session.flush()
    return donor, declaration


def test_a_bad_row_is_left_out_and_reported_and_no_gift_is_claimed_twice(app):
    with app.app_context():
        good_donor, good = _declared("Ann", "Lee", "ann@example.org")
        bad_donor, bad = _declared("Bob", "1234", "bob@example.org")
        _gift(good_donor, good)
        _gift(good_donor, good, amount=2000)
        _gift(bad_donor, bad)
        db.session.commit()
        today = date.today()
        preview = giftaid.preview_claim(date(2020, 1, 1), today)
        assert len(preview.rows) == 2 and len(preview.problems) == 1
        assert "last name" in preview.problems[0][1][0]
        stale = giftaid.preview_claim(date(2020, 1, 1), today)  # a second tab
        claim = giftaid.record_claim(preview, None)
        db.session.commit()
        claim_id = claim.id
        with pytest.raises(DomainError):
            giftaid.record_claim(stale, None)  # the other export claims nothing
        db.session.rollback()
        assert db.session.scalar(select(func.count()).select_from(GiftAidClaim)) == 1
        assert (
            db.session.scalar(
                select(func.count())
                .select_from(Donation)
                .where(Donation.gift_aid_claim_id == claim_id)
            )
            == 2
        )
        again = giftaid.claim_rows(claim_id)
        assert [r.cells() for r in again] == [r.cells() for r, _a, _g in preview.rows]


def test_staff_can_download_an_exported_claim_again(pay_app, make_user):
    with pay_app.app_context():
        donor, declaration = _declared("Ann", "Lee", "ann@example.org")
        _gift(donor, declaration)
        db.session.commit()
    staff = make_user(roles=("fundraiser",))
    client = pay_app.test_client()
    sign_in(client, staff.email, totp_secret=staff.totp_secret)
    token = csrf_from(client, "/staff/donations/gift-aid")
    today = date.today().isoformat()
    first = client.post(
        "/staff/donations/gift-aid",
        data={"csrf_token": token, "date_from": "2020-01-01", "date_to": today},
    )
    assert first.status_code == 200
    page = client.get("/staff/donations/gift-aid").get_data(as_text=True)
    assert "/staff/donations/gift-aid/claims/1.csv" in page
    second = client.get("/staff/donations/gift-aid/claims/1.csv")
    assert second.status_code == 200 and second.data == first.data
    assert client.get("/staff/donations/gift-aid/claims/99.csv").status_code == 404
    assert pay_app.test_client().get("/staff/donations/gift-aid/claims/1.csv").status_code in (
        302,
        401,
        403,
        404,
    )


# Plans -----------------------------------------------------------------------------------


def _plan_completed(pay_client, sim, **change) -> dict:
    sim.pay(checkout_url(give(pay_client, frequency="monthly")))
    event = next(e for e in sim.events() if e["type"] == "checkout.session.completed")
    event = json.loads(json.dumps(event))
    event["data"]["object"].update(change)
    return event


@pytest.mark.parametrize("change", [{"payment_status": "unpaid"}, {"amount_total": 1}])
def test_plan_checkout_unpaid_or_mismatched_does_not_activate(pay_app, pay_client, sim, change):
    event = _plan_completed(pay_client, sim, **change)
    assert post_event(pay_client, event).status_code == 200
    with pay_app.app_context():
        assert db.session.scalar(select(RecurringPlan.status)) is PlanStatus.PENDING


def test_subscription_cancelled_update_first_still_mails_once(pay_app, pay_client, sim):
    import stripe

    sim.pay(checkout_url(give(pay_client, frequency="monthly")))
    postman = Postman(sim, pay_client)
    postman.flush()
    with pay_app.app_context():
        sub_id = db.session.scalar(select(RecurringPlan.stripe_subscription_id))
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": sim.base_url})
    client.v1.subscriptions.cancel(sub_id)
    deleted = sim.events(("customer.subscription.deleted",))[0]
    updated = json.loads(json.dumps(deleted))
    updated.update(id=deleted["id"] + "u", type="customer.subscription.updated")
    assert deliver(pay_client, [updated, deleted, updated, deleted]) == [200] * 4
    with pay_app.app_context():
        assert db.session.scalar(select(RecurringPlan.status)) is PlanStatus.ENDED
        assert (
            db.session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.template == "donations/plan_ended")
            )
            == 1
        )


def test_subscription_updates_in_one_second_converge_in_any_order(pay_app, pay_client, sim):
    sim.pay(checkout_url(give(pay_client, frequency="monthly")))
    Postman(sim, pay_client).flush()
    (base,) = [e for e in sim.events() if e["type"] == "customer.subscription.created"] or [
        next(e for e in sim.events() if e["type"].startswith("customer.subscription"))
    ]
    paused, running = (json.loads(json.dumps(base)) for _ in range(2))
    for event, name, pause in (
        (paused, "evt_zzz_same_second", {"behavior": "void"}),
        (running, "evt_aaa_same_second", None),
    ):
        event.update(id=name, type="customer.subscription.updated", created=base["created"] + 5)
        event["data"]["object"]["pause_collection"] = pause
    assert deliver(pay_client, [paused, running]) == [200, 200]
    with pay_app.app_context():
        first = db.session.scalar(select(RecurringPlan.paused))
        plan = db.session.scalar(select(RecurringPlan))
        plan.paused, plan.subscription_synced_at, plan.subscription_synced_event = False, None, None
        db.session.commit()
    for event in (paused, running):
        event["id"] += "_again"
    assert deliver(pay_client, [running, paused]) == [200, 200]
    with pay_app.app_context():
        # Both orders end alike, and as Stripe holds the subscription (running): events of
        # one second cannot be ordered, so the app asks Stripe instead of trusting the ids.
        assert db.session.scalar(select(RecurringPlan.paused)) is first is False


def test_billing_portal_returns_to_a_plain_page_not_the_manage_link(pay_app, pay_client, sim):
    sim.pay(checkout_url(give(pay_client, frequency="monthly")))
    Postman(sim, pay_client).flush()
    with pay_app.app_context():
        plan = db.session.scalar(select(RecurringPlan))
        token = plans.manage_token(plan)
    page = f"/donate/manage/{token}"
    csrf = csrf_from(pay_client, page)
    response = pay_client.post(f"{page}/card", data={"csrf_token": csrf})
    assert response.status_code == 303
    (portal,) = sim.control("/_sim/objects?type=billing_portal.session", method="GET")["objects"]
    assert portal["return_url"].endswith("/donate/manage/done")
    assert token not in portal["return_url"]
    assert pay_client.get("/donate/manage/done").status_code == 200
