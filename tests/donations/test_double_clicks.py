"""A double click does one thing: one plan per giving form, one mail per pause, resume or
cancel. Two requests race for real (threads, each with its own client and database session);
a barrier the test controls holds both after they have read the plan (or the form) and
before either acts, so both see the state before the other's change."""

from __future__ import annotations

import re
import threading

import pytest
from sqlalchemy import func, select

from donorhub.audit import AuditEvent
from donorhub.donations import checkout, plans, services
from donorhub.donations.models import Donation, PlanStatus, RecurringPlan
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from tests.helpers import HANG_GUARD_SECONDS
from tests.payments.stripe_helpers import Postman, checkout_url, csrf_from, give

MAIL = {
    "pause": "donations/plan_paused",
    "resume": "donations/plan_resumed",
    "cancel": "donations/plan_cancelled",
}


def _race(monkeypatch, target, name: str, requests: list) -> list:
    """Run each request in its own thread; every thread waits at a barrier just after
    `target.name` has returned (its read is done), so none acts before all have read."""
    barrier = threading.Barrier(len(requests), timeout=HANG_GUARD_SECONDS)
    original = getattr(target, name)

    def held(*args, **kwargs):
        result = original(*args, **kwargs)
        barrier.wait(timeout=HANG_GUARD_SECONDS)
        return result

    monkeypatch.setattr(target, name, held)
    results: list = [None] * len(requests)
    errors: list = []

    def run(n: int) -> None:
        try:
            results[n] = requests[n]()
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(repr(error))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    monkeypatch.setattr(target, name, original)
    assert errors == []
    return results


def _count(app, model, *where) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*where))


def _live_plan(app, client, sim) -> tuple[RecurringPlan, str]:
    url = checkout_url(give(client, frequency="monthly"))
    assert sim.pay(url)[0] == 303
    Postman(sim, client).flush()
    with app.app_context():
        plan = db.session.scalar(select(RecurringPlan))
        assert plan.status is PlanStatus.ACTIVE
        token = plans.manage_token(plan)
        db.session.expunge(plan)
    return plan, token


@pytest.mark.parametrize("action", ["pause", "resume", "cancel"])
def test_a_double_clicked_plan_action_acts_and_mails_once(
    pay_app, pay_client, sim, monkeypatch, action, backend
):
    plan, token = _live_plan(pay_app, pay_client, sim)
    if action == "resume":
        first = pay_app.test_client()
        csrf = csrf_from(first, f"/donate/manage/{token}")
        assert (
            first.post(f"/donate/manage/{token}/pause", data={"csrf_token": csrf}).status_code
            == 302
        )
    clients = [pay_app.test_client() for _ in range(2)]
    tokens = [csrf_from(c, f"/donate/manage/{token}") for c in clients]

    def click(n: int):
        return lambda: (
            clients[n]
            .post(f"/donate/manage/{token}/{action}", data={"csrf_token": tokens[n]})
            .status_code
        )

    codes = _race(monkeypatch, services, "plan_for_manage_token", [click(0), click(1)])
    assert codes == [302, 302]
    assert _count(pay_app, OutboxMessage, OutboxMessage.template == MAIL[action]) == 1
    done = {"pause": "plan.paused", "resume": "plan.resumed", "cancel": "plan.cancelled"}
    assert _count(pay_app, AuditEvent, AuditEvent.action == done[action]) == 1
    with pay_app.app_context():
        row = db.session.get(RecurringPlan, plan.id)
        assert (
            row.status
            is {
                "pause": PlanStatus.PAUSED,
                "resume": PlanStatus.ACTIVE,
                "cancel": PlanStatus.CANCELLED,
            }[action]
        )


@pytest.mark.parametrize("frequency", ["once", "monthly"])
def test_a_double_clicked_giving_form_opens_one_gift_and_one_checkout(
    pay_app, sim, monkeypatch, frequency, backend
):
    page = pay_app.test_client().get("/donate").get_data(as_text=True)
    (form_token,) = re.findall(r'name="form_token" value="([^"]+)"', page)
    clients = [pay_app.test_client() for _ in range(2)]

    def submit(n: int):
        return lambda: give(clients[n], frequency=frequency, form_token=form_token)

    responses = _race(monkeypatch, checkout, "price_gift", [submit(0), submit(1)])
    urls = [checkout_url(r) for r in responses]
    assert urls[0] == urls[1]  # the second click goes to the same Checkout page
    model = RecurringPlan if frequency == "monthly" else Donation
    assert _count(pay_app, model) == 1
    sessions = sim.control("/_sim/objects?type=checkout.session", method="GET")["objects"]
    assert len(sessions) == 1
    # Sent again later with another amount (back, change, send): asked again, not charged.
    response = give(
        pay_app.test_client(), frequency=frequency, form_token=form_token, amount_choice="5000"
    )
    assert response.status_code == 422
    assert "already sent this form with a different gift" in response.get_data(as_text=True)
    assert _count(pay_app, model) == 1


def test_a_double_clicked_pause_when_signed_in_mails_once(
    pay_app, pay_client, sim, monkeypatch, make_user, backend
):
    from tests.helpers import sign_in

    user = make_user("gita@example.org")
    plan, _token = _live_plan(pay_app, pay_client, sim)
    page = f"/donate/plans/{plan.public_id}"
    clients = [pay_app.test_client() for _ in range(2)]
    for client in clients:
        sign_in(client, user.email)
    tokens = [csrf_from(c, page) for c in clients]

    def click(n: int):
        return lambda: clients[n].post(f"{page}/pause", data={"csrf_token": tokens[n]}).status_code

    codes = _race(monkeypatch, services, "check_owner", [click(0), click(1)])
    assert codes == [302, 302]
    assert _count(pay_app, OutboxMessage, OutboxMessage.template == "donations/plan_paused") == 1
