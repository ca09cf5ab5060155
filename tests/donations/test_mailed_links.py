"""The links in receipts (managing a regular gift, confirming Gift Aid) name their row by its
random public id, never by a row id that counts up; links mailed before keep working until
they expire."""

from __future__ import annotations

from datetime import timedelta

import time_machine
from itsdangerous import URLSafeTimedSerializer

from donorhub.database import utcnow
from donorhub.donations import giftaid, plans
from donorhub.donations.models import (
    Donor,
    Frequency,
    GiftAidDeclaration,
    GiftAidScope,
    PlanStatus,
    RecurringPlan,
)
from donorhub.extensions import db
from tests.security.opaque_tokens import id_leaks

PLAN_ID = 7_340_921
DONOR_ID = 5_093_318
DECLARATION_ID = 6_177_402


def make_plan(app) -> None:
    with app.app_context():
        db.session.add(Donor(id=DONOR_ID, email="giver@example.org", full_name="Giver"))
        plan = RecurringPlan(
            id=PLAN_ID,
            donor_id=DONOR_ID,
            amount_minor=2500,
            currency="gbp",
            frequency=Frequency.MONTHLY,
            status=PlanStatus.ACTIVE,
        )
        db.session.add(plan)
        db.session.commit()


def test_a_manage_link_carries_no_row_id_and_opens_its_plan(app, client):
    make_plan(app)
    with app.app_context():
        plan = db.session.get_one(RecurringPlan, PLAN_ID)
        token = plans.manage_token(plan)
        public_id = plan.public_id
    assert id_leaks(token, PLAN_ID, DONOR_ID) == []
    page = client.get(f"/donate/manage/{token}")
    assert page.status_code == 200
    assert client.get(f"/donate/manage/{token[:-4]}AAAA").status_code == 400
    assert len(public_id) >= 16


def test_a_link_mailed_before_public_ids_works_until_it_expires(app, client):
    make_plan(app)
    with app.app_context():
        serializer = URLSafeTimedSerializer(
            app.config["SECRET_KEY"], salt="donorhub.donations.manage-plan"
        )
        old_link = serializer.dumps({"p": PLAN_ID, "v": 1})
        forged = URLSafeTimedSerializer("not-our-key", salt="donorhub.donations.manage-plan")
        forged_link = forged.dumps({"p": PLAN_ID, "v": 1})
        lifetime = app.config["PLAN_MANAGE_LINK_MAX_AGE"]
    assert client.get(f"/donate/manage/{old_link}").status_code == 200
    assert client.get(f"/donate/manage/{forged_link}").status_code == 400
    with time_machine.travel(lifetime + timedelta(days=1), tick=False):
        assert client.get(f"/donate/manage/{old_link}").status_code == 400


def make_declaration(app) -> None:
    with app.app_context():
        db.session.add(Donor(id=DONOR_ID, email="giver@example.org", full_name="Giver"))
        db.session.add(
            GiftAidDeclaration(
                id=DECLARATION_ID,
                donor_id=DONOR_ID,
                first_name="Gina",
                last_name="Giver",
                house="1",
                postcode="SW1A 1AA",
                scope=GiftAidScope.SINGLE,
                text_version="1",
                effective_at=utcnow(),
            )
        )
        db.session.commit()


def test_a_gift_aid_confirmation_link_carries_no_row_id_and_opens_its_declaration(app, client):
    make_declaration(app)
    with app.app_context():
        url = giftaid.gift_aid_confirm_url(db.session.get_one(GiftAidDeclaration, DECLARATION_ID))
        serializer = URLSafeTimedSerializer(
            app.config["SECRET_KEY"], salt="donorhub.donations.gift-aid-confirm"
        )
        old_link = serializer.dumps({"d": DECLARATION_ID})
    token = url.rsplit("/", 1)[1]
    assert id_leaks(token, DECLARATION_ID, DONOR_ID) == []
    assert client.get(f"/donate/gift-aid/confirm/{token}").status_code == 200
    assert client.get(f"/donate/gift-aid/confirm/{token[:-4]}AAAA").status_code == 400
    # A link mailed before public ids: honoured for the 30 days it was made for.
    assert client.get(f"/donate/gift-aid/confirm/{old_link}").status_code == 200
    with time_machine.travel(timedelta(days=31), tick=False):
        assert client.get(f"/donate/gift-aid/confirm/{old_link}").status_code == 400
