"""Recurring plans: sign-up, renewals, failures, self-service and the receipt's manage link."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from donorhub.donations.models import (
    Donation,
    DonationStatus,
    PlanStatus,
    RecurringPlan,
)
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from tests.helpers import sign_in
from tests.payments.stripe_helpers import (
    Postman,
    checkout_url,
    csrf_from,
    deliver,
    give,
    send_mail,
)


def start_plan(app, client, sim, **form) -> tuple[RecurringPlan, Postman]:
    url = checkout_url(give(client, frequency="monthly", **form))
    status, _ = sim.pay(url)
    assert status == 303
    postman = Postman(sim, client)
    postman.flush()
    with app.app_context():
        plan = db.session.scalar(select(RecurringPlan).order_by(RecurringPlan.id.desc()))
        db.session.expunge(plan)
    return plan, postman


def plan_state(app, plan_id: int) -> tuple[PlanStatus, int]:
    with app.app_context():
        plan = db.session.get(RecurringPlan, plan_id)
        return plan.status, len([g for g in plan.gifts if g.status is DonationStatus.PAID])


def test_monthly_plan_renewals_failure_and_recovery(pay_app, pay_client, sim, mailbox):
    plan, postman = start_plan(pay_app, pay_client, sim)
    assert plan_state(pay_app, plan.id) == (PlanStatus.ACTIVE, 1)
    sub = plan.stripe_subscription_id
    sim.control(f"/_sim/subscriptions/{sub}/renew")
    postman.flush()
    assert plan_state(pay_app, plan.id) == (PlanStatus.ACTIVE, 2)
    result = sim.control(f"/_sim/subscriptions/{sub}/renew", fail="1")
    postman.flush()
    assert plan_state(pay_app, plan.id) == (PlanStatus.PAST_DUE, 2)
    sim.control(f"/_sim/invoices/{result['invoice']['id']}/pay")
    postman.flush()
    assert plan_state(pay_app, plan.id) == (PlanStatus.ACTIVE, 3)
    send_mail(pay_app)
    mails = mailbox.to("gita@example.org")
    receipts = [m for m in mails if "receipt" in m.subject]
    failed = [m for m in mails if "did not go through" in m.subject]
    assert len(receipts) == 3 and len(failed) == 1
    assert "not enough money" in failed[0].text
    assert any("/donate/manage/" in link for link in failed[0].links())
    numbers = sorted(re.search(r"Receipt number: (\S+)", m.text).group(1) for m in receipts)
    assert [n[-6:] for n in numbers] == ["000001", "000002", "000003"]


def test_receipt_link_pauses_resumes_and_cancels_without_signing_in(
    pay_app, pay_client, sim, mailbox
):
    plan, postman = start_plan(pay_app, pay_client, sim)
    send_mail(pay_app)
    (receipt,) = [m for m in mailbox.to("gita@example.org") if "receipt" in m.subject]
    link = next(link for link in receipt.links() if "/donate/manage/" in link)
    path = link.split("donorhub.test", 1)[1]
    guest = pay_app.test_client()
    page = guest.get(path)
    assert page.status_code == 200 and "Pause my gift" in page.get_data(as_text=True)
    token = csrf_from(guest, path)
    assert guest.post(f"{path}/pause", data={"csrf_token": token}).status_code == 302
    assert plan_state(pay_app, plan.id)[0] is PlanStatus.PAUSED
    stripe_sub = sim.api(f"/v1/subscriptions/{plan.stripe_subscription_id}")
    assert stripe_sub["pause_collection"]["behavior"] == "void"
    postman.flush()  # Stripe's own subscription.updated agrees
    assert plan_state(pay_app, plan.id)[0] is PlanStatus.PAUSED
    assert guest.post(f"{path}/resume", data={"csrf_token": token}).status_code == 302
    postman.flush()
    assert plan_state(pay_app, plan.id)[0] is PlanStatus.ACTIVE
    send_mail(pay_app)
    assert [m.subject for m in mailbox.to("gita@example.org") if "running again" in m.subject] == [
        "Your regular gift is running again"
    ]
    # No CSRF token: refused, nothing changes.
    assert guest.post(f"{path}/cancel").status_code == 400
    response = guest.post(f"{path}/cancel", data={"csrf_token": token})
    assert response.status_code == 302 and "manage-done" in response.headers["Location"]
    postman.flush()
    assert plan_state(pay_app, plan.id)[0] is PlanStatus.CANCELLED
    assert sim.api(f"/v1/subscriptions/{plan.stripe_subscription_id}")["status"] == "canceled"
    # The link is revoked once the plan is cancelled; a forged one never worked.
    assert guest.get(path).status_code == 400
    assert guest.get("/donate/manage/forged-token").status_code == 400
    send_mail(pay_app)
    assert any("cancelled" in m.subject for m in mailbox.to("gita@example.org"))


def test_signed_in_donor_changes_amount_and_interval(pay_app, pay_client, sim, make_user):
    user = make_user("gita@example.org")
    plan, postman = start_plan(pay_app, pay_client, sim)
    client = pay_app.test_client()
    sign_in(client, user.email)
    history = client.get("/donate/history").get_data(as_text=True)
    assert "Change, pause or stop" in history
    page = f"/donate/plans/{plan.public_id}"
    token = csrf_from(client, page)
    response = client.post(
        f"{page}/change", data={"csrf_token": token, "amount": "30", "frequency": "monthly"}
    )
    assert response.status_code == 302
    sub = sim.api(f"/v1/subscriptions/{plan.stripe_subscription_id}")
    assert sub["items"]["data"][0]["price"]["unit_amount"] == 3000
    postman.flush()
    response = client.post(
        f"{page}/change", data={"csrf_token": token, "amount": "300", "frequency": "yearly"}
    )
    assert response.status_code == 302
    types = postman.flush()
    assert "invoice.paid" in types  # switching interval charges the new price at once
    with pay_app.app_context():
        row = db.session.get(RecurringPlan, plan.id)
        assert (row.amount_minor, row.frequency.value, row.status) == (
            30000,
            "yearly",
            PlanStatus.ACTIVE,
        )
        amounts = sorted(g.amount_minor for g in row.gifts)
        assert amounts == [2500, 30000]
        assert all(g.status is DonationStatus.PAID for g in row.gifts)
    # Somebody else's plan is not found; GET never changes anything.
    stranger = pay_app.test_client()
    other = make_user("other@example.org")
    sign_in(stranger, other.email)
    assert stranger.get(page).status_code == 404
    token = csrf_from(stranger, "/donate")
    assert stranger.post(f"{page}/cancel", data={"csrf_token": token}).status_code == 404
    # Update card: off to Stripe's Billing Portal.
    token = csrf_from(client, page)
    response = client.post(f"{page}/card", data={"csrf_token": token})
    assert response.status_code == 303
    assert response.headers["Location"].startswith(sim.base_url + "/billing_portal/")


def test_stripe_ending_the_subscription_ends_the_plan(pay_app, pay_client, sim, mailbox):
    import stripe

    plan, postman = start_plan(pay_app, pay_client, sim)
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": sim.base_url})
    client.v1.subscriptions.cancel(plan.stripe_subscription_id)
    postman.flush()
    assert plan_state(pay_app, plan.id)[0] is PlanStatus.ENDED
    send_mail(pay_app)
    assert any("has ended" in m.subject for m in mailbox.to("gita@example.org"))


def test_plan_events_in_reverse_order_reach_the_same_state(pay_app, pay_client, sim):
    url = checkout_url(give(pay_client, frequency="yearly"))
    sim.pay(url)
    with pay_app.app_context():
        plan_id = db.session.scalar(select(RecurringPlan.id))
    events = sim.events()
    assert set(deliver(pay_client, list(reversed(events)) + events)) == {200}
    assert plan_state(pay_app, plan_id) == (PlanStatus.ACTIVE, 1)
    with pay_app.app_context():
        assert (
            db.session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.template == "donations/receipt")
            )
            == 1
        )
        assert db.session.scalar(select(func.count()).select_from(Donation)) == 1


def test_pause_and_resume_in_one_second_end_as_stripe_ends_whatever_the_delivery_order(
    pay_app, pay_client, sim
):
    """Two subscription.updated events of one second cannot be ordered from the events alone
    (the id is random): the plan must follow what Stripe holds, not the luck of the ids."""
    plan, postman = start_plan(pay_app, pay_client, sim)
    with pay_app.app_context():
        from donorhub.donations import plans

        row = db.session.get(RecurringPlan, plan.id)
        plans.pause_plan(row, None, notify=False)
        db.session.commit()
        row = db.session.get(RecurringPlan, plan.id)
        plans.resume_plan(row, None)
        db.session.commit()
    assert sim.api(f"/v1/subscriptions/{plan.stripe_subscription_id}")["pause_collection"] is None
    updates = [
        e
        for e in sim.events()
        if e["id"] not in postman.sent and e["type"] == "customer.subscription.updated"
    ]
    pause, resume = updates[-2], updates[-1]
    assert (
        pause["data"]["object"]["pause_collection"]
        and not resume["data"]["object"]["pause_collection"]
    )
    # Same second; the resume's id sorts first, and it arrives first: the stale pause event,
    # delivered late, must not pause a plan that Stripe is collecting.
    resume.update(created=pause["created"], id="evt_0000000000000000resume")
    pause.update(id="evt_zzzzzzzzzzzzzzzzpause")
    assert deliver(pay_client, [resume, pause]) == [200, 200]
    assert plan_state(pay_app, plan.id)[0] is PlanStatus.ACTIVE
    # And the other way round: the pause arrives first, then the resume: still active.
    with pay_app.app_context():
        row = db.session.get(RecurringPlan, plan.id)
        row.subscription_synced_at, row.subscription_synced_event = 0, ""
        db.session.commit()
    pause.update(id="evt_zzzzzzzzzzzzzzzzpause2")
    resume.update(id="evt_0000000000000000resume2")
    assert deliver(pay_client, [pause, resume]) == [200, 200]
    assert plan_state(pay_app, plan.id)[0] is PlanStatus.ACTIVE
