"""Pause, resume and cancel after an answer from Stripe that never came (a 5xx, a timeout):
Stripe may have acted. The subscription is read back before the donor is answered, and what
Stripe did is recorded (one mail); when Stripe's copy does not show it, the donor is told the
outcome is not confirmed, and the subscription's event settles it later (one mail)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from donorhub.donations.models import PlanStatus, RecurringPlan
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from donorhub.payments.gateway import get_gateway
from tests.donations.test_double_clicks import _live_plan
from tests.payments.stripe_helpers import Postman, csrf_from

MAIL = {
    "pause": "donations/plan_paused",
    "resume": "donations/plan_resumed",
    "cancel": "donations/plan_cancelled",
}
AFTER = {"pause": PlanStatus.PAUSED, "resume": PlanStatus.ACTIVE, "cancel": PlanStatus.CANCELLED}
BEFORE = {"pause": PlanStatus.ACTIVE, "resume": PlanStatus.PAUSED, "cancel": PlanStatus.ACTIVE}


def _ready(app, client, sim, action) -> tuple[RecurringPlan, str]:
    plan, token = _live_plan(app, client, sim)
    if action == "resume":
        page = f"/donate/manage/{token}"
        donor = app.test_client()
        assert (
            donor.post(f"{page}/pause", data={"csrf_token": csrf_from(donor, page)}).status_code
            == 302
        )
    return plan, token


def _stripe_acts(app, plan: RecurringPlan, action: str) -> None:
    """Stripe carries the action out (the request whose answer was lost, still running)."""
    with app.app_context():
        gateway = get_gateway()
        sub_id = plan.stripe_subscription_id
        {
            "pause": lambda: gateway.pause_subscription(sub_id, "stripe-acted-pause"),
            "resume": lambda: gateway.resume_subscription(sub_id, "stripe-acted-resume"),
            "cancel": lambda: gateway.cancel_subscription(sub_id, "stripe-acted-cancel"),
        }[action]()
        db.session.remove()


def _click(app, token: str, action: str) -> str:
    donor = app.test_client()
    page = f"/donate/manage/{token}"
    response = donor.post(
        f"{page}/{action}", data={"csrf_token": csrf_from(donor, page)}, follow_redirects=True
    )
    return response.get_data(as_text=True)


def _facts(app, plan_id: int) -> tuple:
    with app.app_context():
        row = db.session.get(RecurringPlan, plan_id)
        mails = dict(
            db.session.execute(
                select(OutboxMessage.template, func.count(OutboxMessage.id))
                .where(OutboxMessage.template.like("donations/plan_%"))
                .group_by(OutboxMessage.template)
            ).all()
        )
        facts = (row.status, mails)
        db.session.remove()
        return facts


def _fault_on(app, sim, plan: RecurringPlan, action: str) -> None:
    """A 500 on the action's call and on each of the library's retries of it; the read-back
    that follows is answered normally. A POST's 500 is kept under its key (its retries are
    replays); a DELETE has no key at Stripe, so each of its tries meets a fault."""
    tries = 1 + (app.config["STRIPE_MAX_NETWORK_RETRIES"] if action == "cancel" else 0)
    sim.fault(
        path_prefix=f"/v1/subscriptions/{plan.stripe_subscription_id}",
        status=500,
        times=tries,
        saved=action != "cancel",
    )


@pytest.mark.parametrize("action", ["pause", "resume", "cancel"])
def test_an_action_stripe_carried_out_is_recorded_before_answering(
    pay_app, pay_client, sim, action, backend
):
    plan, token = _ready(pay_app, pay_client, sim, action)
    _, before = _facts(pay_app, plan.id)
    _stripe_acts(pay_app, plan, action)  # done at Stripe; its answer to us is lost:
    _fault_on(pay_app, sim, plan, action)
    page = _click(pay_app, token, action)
    assert "nothing has changed" not in page
    status, mails = _facts(pay_app, plan.id)
    assert status is AFTER[action]
    assert mails.get(MAIL[action], 0) == before.get(MAIL[action], 0) + 1
    # The subscription's events arrive afterwards: nothing more is recorded or mailed (a
    # cancel stays the donor's cancel: no "has ended" mail).
    Postman(sim, pay_client).flush()
    assert _facts(pay_app, plan.id) == (status, mails)
    assert "donations/plan_ended" not in mails


@pytest.mark.parametrize("action", ["pause", "resume", "cancel"])
def test_an_action_stripe_has_not_confirmed_is_settled_by_its_event(
    pay_app, pay_client, sim, action, backend
):
    plan, token = _ready(pay_app, pay_client, sim, action)
    _, before = _facts(pay_app, plan.id)
    _fault_on(pay_app, sim, plan, action)
    page = _click(pay_app, token, action)
    assert "nothing has changed" not in page
    assert "not confirmed" in page and "e-mail you" in page
    assert _facts(pay_app, plan.id) == (BEFORE[action], before)
    # Stripe carries it out after all; its event records it and tells the donor, once.
    _stripe_acts(pay_app, plan, action)
    Postman(sim, pay_client).flush()
    Postman(sim, pay_client).flush()  # delivered twice
    status, mails = _facts(pay_app, plan.id)
    told = "donations/plan_ended" if action == "cancel" else MAIL[action]
    assert status is (PlanStatus.ENDED if action == "cancel" else AFTER[action])
    assert mails.get(told, 0) == before.get(told, 0) + 1
