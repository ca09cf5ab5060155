"""The link in a receipt that manages a regular gift names the plan by its random public id,
never by a row id that counts up; links mailed before keep working until they expire."""

from __future__ import annotations

from datetime import timedelta

import time_machine
from itsdangerous import URLSafeTimedSerializer

from donorhub.donations import plans
from donorhub.donations.models import Donor, Frequency, PlanStatus, RecurringPlan
from donorhub.extensions import db
from tests.security.opaque_tokens import id_leaks

PLAN_ID = 7_340_921
DONOR_ID = 5_093_318


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
