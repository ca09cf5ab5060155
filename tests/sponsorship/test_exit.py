"""A sponsored child exits, end to end. Until the neutral notice (7 to 21 days later) the
sponsor's portal shows exactly what it showed before, and collection goes on unchanged. When
the notice is due: collection stops at Stripe, every payment taken since the exit is refunded
(once, whatever happens), the content-free mail (through the real SMTP server) and the portal
message say so, the child's words are purged, and the sponsor chooses what happens next."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from donorhub.children import services as children
from donorhub.children.models import ChildText, ChildUpdate, ExitNotice, ReviewStatus
from donorhub.database import utcnow
from donorhub.donations.models import Donation, DonationStatus, PlanStatus, Refund
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from donorhub.sponsorship import jobs
from donorhub.sponsorship.models import Disclosure, Sponsorship, SponsorshipStatus
from tests.feed.builders import Batch, exit_record
from tests.helpers import csrf_token, mentions
from tests.metrics import METRICS
from tests.payments.stripe_helpers import send_mail
from tests.sponsorship.helpers import (
    load_children,
    signed_in_client,
    sponsor_through_stripe,
    taken_a_minute_ago,
)

S = SponsorshipStatus
REFUNDED = "Every payment taken for this sponsorship since then has been refunded to you."


def subscription_of(app, sponsorship_id: int) -> str:
    with app.app_context():
        value = db.session.get(Sponsorship, sponsorship_id).plan.stripe_subscription_id
        db.session.remove()
        return value


def paid_instalments(app, sponsorship_id: int) -> int:
    with app.app_context():
        plan_id = db.session.get(Sponsorship, sponsorship_id).plan_id
        value = len(
            db.session.scalars(
                select(Donation).where(
                    Donation.plan_id == plan_id, Donation.status == DonationStatus.PAID
                )
            ).all()
        )
        db.session.remove()
        return value


def gifts_of(app, sponsorship_id: int) -> list[tuple[int, str, DonationStatus]]:
    """(id, payment intent, status) of each gift of the sponsorship's plan, oldest first."""
    with app.app_context():
        plan_id = db.session.get(Sponsorship, sponsorship_id).plan_id
        found = [
            (g.id, g.stripe_payment_intent_id or g.stripe_charge_id, g.status)
            for g in db.session.scalars(
                select(Donation).where(Donation.plan_id == plan_id).order_by(Donation.id)
            )
        ]
        db.session.remove()
        return found


def refunds_at_stripe(sim) -> list[dict]:
    """Every refund the simulator made (the API's own list)."""
    return sim.api("/v1/refunds?limit=100")["data"]


def as_seen(client, page: str) -> str:
    """The page as its reader sees it, less what changes on every request by design (the
    CSRF token and the CSP nonce)."""
    body = client.get(page).get_data(as_text=True)
    body = re.sub(r'name="csrf_token" value="[^"]*"', 'name="csrf_token" value=""', body)
    return re.sub(r'nonce="[^"]*"', 'nonce=""', body)


def notice_time(app, child_id: int):
    with app.app_context():
        notice = db.session.scalar(select(ExitNotice).where(ExitNotice.child_id == child_id))
        value = notice.notify_after
        db.session.remove()
        return value


def test_exit_flow_end_to_end(app_factory, import_feed, sponsor, sim, mailbox, backend):
    app = app_factory(
        SPONSORS_PER_CHILD=2, STRIPE_API_BASE=sim.base_url, CSP_FORM_ACTION=[sim.base_url]
    )
    kids = load_children(app, import_feed, 6)
    alice, bob = sponsor(target_app=app), sponsor(target_app=app)
    alice_client, bob_client = signed_in_client(app, alice), signed_in_client(app, bob)
    a_row, postman = sponsor_through_stripe(app, alice_client, sim, kids.tokens[0])
    b_row, _ = sponsor_through_stripe(app, bob_client, sim, kids.tokens[0])
    a_page = f"/my/sponsorships/{a_row.portal_token}"
    b_page = f"/my/sponsorships/{b_row.portal_token}"
    pages = [(alice_client, a_page), (alice_client, "/my/sponsorships"), (bob_client, b_page)]
    before = [as_seen(client, page) for client, page in pages]
    assert "She read a whole book" in before[0] and mentions(before[1], kids.aliases[0])
    assert "Active:" in before[0]
    send_mail(app)
    mailbox.messages.clear()
    with app.app_context():
        outbox_before = len(db.session.scalars(select(OutboxMessage)).all())
        ledger_before = set(db.session.scalars(select(Disclosure.content_hash)))
        db.session.remove()

    # 1. The partner reports the exit. The import calls no Stripe and sends no mail, and the
    #    portal shows byte for byte what it showed before.
    requests_before = len(sim.requests("/v1/"))
    taken_a_minute_ago(app)
    import_feed(Batch().add(exit_record(kids.refs[0])), now=utcnow())
    assert len(sim.requests("/v1/")) == requests_before
    notify_after = notice_time(app, kids.ids[0])
    assert [as_seen(client, page) for client, page in pages] == before

    # 2. Nothing changes while the notice is not due: the jobs run, releases are recomputed,
    #    collection goes on (a renewal is charged), and every poll sees the same page.
    with app.app_context():
        assert jobs.stop_collection_for_exited(notify_after - timedelta(minutes=1)) == 0
        assert jobs.send_due_exit_notices(notify_after - timedelta(minutes=1)) == 0
        children.publish_releases(utcnow())
        db.session.commit()
        db.session.remove()
    for row in (a_row, b_row):
        assert (
            sim.api(f"/v1/subscriptions/{subscription_of(app, row.id)}")["pause_collection"] is None
        )
    paid_before = paid_instalments(app, a_row.id)
    sim.control(f"/_sim/subscriptions/{subscription_of(app, a_row.id)}/renew")
    postman.flush()
    assert paid_instalments(app, a_row.id) == paid_before + 1  # collection continues
    assert [as_seen(client, page) for client, page in pages] == before
    with app.app_context():
        assert len(db.session.scalars(select(OutboxMessage)).all()) > outbox_before  # receipt
        assert not db.session.scalars(
            select(OutboxMessage).where(OutboxMessage.template == "sponsorship/news")
        ).all()
        # The ledger saw the same facts: no new content hash.
        assert set(db.session.scalars(select(Disclosure.content_hash))) == ledger_before
        db.session.remove()
    assert refunds_at_stripe(sim) == []

    # 3. The notice is due: collection stops, the one payment since the exit is refunded,
    #    both sponsors are told (and told of the refund), the child's words are purged.
    with app.app_context():
        assert jobs.send_due_exit_notices(notify_after + timedelta(minutes=1)) == 2
        assert jobs.send_due_exit_notices(notify_after + timedelta(days=1)) == 0
        db.session.remove()
    postman.flush()  # Stripe's refund events
    with app.app_context():
        assert jobs.send_due_exit_notices(notify_after + timedelta(days=2)) == 0
        db.session.remove()
    for row in (a_row, b_row):
        sub = sim.api(f"/v1/subscriptions/{subscription_of(app, row.id)}")
        assert sub["pause_collection"] is not None
    *first, (after_id, after_payment, after_status) = gifts_of(app, a_row.id)
    [refund] = refunds_at_stripe(sim)
    assert after_payment in (refund["payment_intent"], refund["charge"])
    assert after_status is DonationStatus.REFUNDED
    assert all(status is DonationStatus.PAID for _, _, status in first + gifts_of(app, b_row.id))
    with app.app_context():
        assert db.session.get(Sponsorship, a_row.id).status is S.MOVED_ON
        [ours] = db.session.scalars(select(Refund)).all()
        assert ours.donation_id == after_id
        assert db.session.get(ChildText, kids.ids[0]) is None or all(
            t.approved is None
            for t in db.session.scalars(select(ChildText).where(ChildText.child_id == kids.ids[0]))
        )
        updates = db.session.scalars(
            select(ChildUpdate).where(ChildUpdate.child_id == kids.ids[0])
        ).all()
        assert all(u.status is ReviewStatus.WITHDRAWN and u.approved_text is None for u in updates)
        db.session.remove()
    assert send_mail(app) >= 2
    for user in (alice, bob):
        [mail] = [
            m for m in mailbox.to(user.email) if m.subject == "We have news about your sponsorship"
        ]
        assert "We have news about your sponsorship. Please sign in." in mail.text
        assert (
            "Every payment taken for this sponsorship since the change we are telling you "
            "about has been refunded to you." in " ".join(mail.text.split())
        )
        assert not mentions(mail.message.as_string(), kids.aliases[0])
    body = alice_client.get(a_page).get_data(as_text=True)
    assert f"{kids.aliases[0]} has moved on from this part of our programme." in body
    assert REFUNDED in body
    assert "She read a whole book" not in body
    assert "general fund" in body and "Sponsor another child" in body

    # 4. Alice keeps giving, to the general fund; Bob stops.
    response = alice_client.post(
        a_page + "/choice",
        data={"csrf_token": csrf_token(alice_client, a_page), "choice": "general_fund"},
    )
    assert response.status_code == 302
    response = bob_client.post(
        b_page + "/choice", data={"csrf_token": csrf_token(bob_client, b_page), "choice": "stop"}
    )
    assert response.status_code == 302
    a_sub = sim.api(f"/v1/subscriptions/{subscription_of(app, a_row.id)}")
    b_sub = sim.api(f"/v1/subscriptions/{subscription_of(app, b_row.id)}")
    assert a_sub["pause_collection"] is None and a_sub["status"] == "active"
    assert b_sub["status"] == "canceled"
    paid_now = paid_instalments(app, a_row.id)
    sim.control(f"/_sim/subscriptions/{a_sub['id']}/renew")
    postman.flush()
    assert paid_instalments(app, a_row.id) == paid_now + 1
    with app.app_context():
        # The general fund's gift is not a payment for the old sponsorship: never refunded.
        assert jobs.send_due_exit_notices(notify_after + timedelta(days=40)) == 0
        db.session.remove()
    assert len(refunds_at_stripe(sim)) == 1
    METRICS.report(
        f"exit: portal pages identical from exit to notice / refunds per payment after the "
        f"exit / refunds of other payments ({backend})",
        f"{len(pages)} of {len(pages)} / 1 / 0",
    )
    with app.app_context():
        a = db.session.get(Sponsorship, a_row.id)
        b = db.session.get(Sponsorship, b_row.id)
        assert (a.status, a.outcome, a.plan.designation) == (S.ENDED, "general_fund", "general")
        assert (b.status, b.outcome, b.plan.status) == (S.ENDED, "stop", PlanStatus.CANCELLED)
        db.session.remove()
    send_mail(app)
    receipt = [m for m in mailbox.to(alice.email) if "receipt" in m.subject][-1]
    assert "our general fund" in receipt.text and not mentions(receipt.text, kids.aliases[0])
    # A new match is a new choice: the listing is open to Alice again.
    assert alice_client.get("/sponsor").status_code == 200


def test_new_match_after_exit_stops_the_old_subscription(pay_app, import_feed, sponsor, sim):
    kids = load_children(pay_app, import_feed, 6)
    user = sponsor(target_app=pay_app)
    client = signed_in_client(pay_app, user)
    row, _ = sponsor_through_stripe(pay_app, client, sim, kids.tokens[1])
    taken_a_minute_ago(pay_app)
    import_feed(Batch().add(exit_record(kids.refs[1])), now=utcnow())
    with pay_app.app_context():
        jobs.send_due_exit_notices(utcnow() + timedelta(days=22))
        db.session.remove()
    page = f"/my/sponsorships/{row.portal_token}"
    response = client.post(
        page + "/choice", data={"csrf_token": csrf_token(client, page), "choice": "new_match"}
    )
    assert response.status_code == 302 and response.headers["Location"].endswith("/sponsor")
    assert sim.api(f"/v1/subscriptions/{subscription_of(pay_app, row.id)}")["status"] == "canceled"
    # Choosing again is refused; the new match is an ordinary new sponsorship.
    response = client.post(
        page + "/choice", data={"csrf_token": csrf_token(client, page), "choice": "stop"}
    )
    assert response.status_code == 302
    new_row, _ = sponsor_through_stripe(pay_app, client, sim, kids.tokens[2])
    with pay_app.app_context():
        assert db.session.get(Sponsorship, new_row.id).status is S.ACTIVE
        assert db.session.get(Sponsorship, row.id).outcome == "new_match"
        db.session.remove()


def test_a_refund_stripe_fails_is_retried_and_the_notice_waits_for_it(
    pay_app, import_feed, sponsor, sim, mailbox
):
    kids = load_children(pay_app, import_feed, 6)
    user = sponsor(target_app=pay_app)
    client = signed_in_client(pay_app, user)
    row, postman = sponsor_through_stripe(pay_app, client, sim, kids.tokens[0])
    taken_a_minute_ago(pay_app)
    import_feed(Batch().add(exit_record(kids.refs[0])), now=utcnow())
    sim.control(f"/_sim/subscriptions/{subscription_of(pay_app, row.id)}/renew")
    postman.flush()
    due = notice_time(pay_app, kids.ids[0]) + timedelta(minutes=1)
    # Stripe answers the refund with server errors (the library's own retries included),
    # then refuses the next one outright.
    sim.fault(path_prefix="/v1/refunds", method="POST", status=500, times=10)
    with pay_app.app_context():
        assert jobs.send_due_exit_notices(due) == 0  # not refunded: the notice waits
        db.session.remove()
    sim.clear_faults()
    sim.fault(path_prefix="/v1/refunds", method="POST", status=400, times=1)
    with pay_app.app_context():
        assert jobs.send_due_exit_notices(due) == 0
        db.session.remove()
    sim.clear_faults()
    assert refunds_at_stripe(sim) == []
    with pay_app.app_context():
        # Stripe is back: the job retries (a new refund row, a new key) and then tells.
        assert jobs.send_due_exit_notices(due + timedelta(hours=1)) == 1
        assert jobs.send_due_exit_notices(due + timedelta(hours=2)) == 0
        tries = db.session.scalars(select(Refund).order_by(Refund.id)).all()
        assert [t.status.value for t in tries[:2]] == ["not_sent", "not_sent"]
        assert len(tries) == 3 and tries[2].stripe_refund_id is not None
        db.session.remove()
    postman.flush()
    [refund] = refunds_at_stripe(sim)
    *_, (_, payment, status) = gifts_of(pay_app, row.id)
    assert payment in (refund["payment_intent"], refund["charge"])
    assert status is DonationStatus.REFUNDED
    page = client.get(f"/my/sponsorships/{row.portal_token}").get_data(as_text=True)
    assert REFUNDED in page and "She read a whole book" not in page
