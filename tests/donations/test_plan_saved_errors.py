"""Stripe keeps a 500 under its idempotency key for 24 hours and replays it to every retry
with that key. Pausing and resuming set a state at Stripe (doing it twice does no harm), so
each donor's try goes under a key of its own: one 500 does not block the plan for a day."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from donorhub.donations.models import PlanStatus, RecurringPlan
from donorhub.extensions import db
from tests.donations.test_double_clicks import _live_plan
from tests.payments.stripe_helpers import csrf_from


@pytest.mark.parametrize("action", ["pause", "resume"])
def test_a_plan_action_answered_with_a_saved_500_works_on_the_next_try(
    pay_app, pay_client, sim, action, backend
):
    plan, token = _live_plan(pay_app, pay_client, sim)
    client = pay_app.test_client()
    page = f"/donate/manage/{token}"
    if action == "resume":
        assert (
            client.post(f"{page}/pause", data={"csrf_token": csrf_from(client, page)}).status_code
            == 302
        )
    sim.fault(path_prefix="/v1/subscriptions/", status=500, times=1, saved=True)
    first = client.post(f"{page}/{action}", data={"csrf_token": csrf_from(client, page)})
    with pay_app.app_context():
        row = db.session.scalar(select(RecurringPlan).where(RecurringPlan.id == plan.id))
        before = row.status
    assert before is (PlanStatus.ACTIVE if action == "pause" else PlanStatus.PAUSED), (
        first.status_code
    )
    again = client.post(f"{page}/{action}", data={"csrf_token": csrf_from(client, page)})
    assert again.status_code == 302
    with pay_app.app_context():
        row = db.session.scalar(select(RecurringPlan).where(RecurringPlan.id == plan.id))
        assert row.status is (PlanStatus.PAUSED if action == "pause" else PlanStatus.ACTIVE)
    posts = [r for r in sim.requests("/v1/subscriptions/") if r["method"] == "POST"]
    failed_try = [r for r in posts if r["outcome"] in ("fault", "replayed")]
    assert [r["outcome"] for r in failed_try][0] == "fault"  # the library's retries replay it
    assert {r["idempotency_key"] for r in failed_try} == {failed_try[0]["idempotency_key"]}
    assert posts[-1]["outcome"] == "ok"
    assert posts[-1]["idempotency_key"] != failed_try[0]["idempotency_key"]
    subscription = sim.api(f"/v1/subscriptions/{row.stripe_subscription_id}")
    assert bool(subscription.get("pause_collection")) is (action == "pause")
