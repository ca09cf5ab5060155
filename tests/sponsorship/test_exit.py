"""A sponsored child exits, end to end: content gone at once, collection stopped at Stripe
(no mail), the neutral notice after the random delay (content-free mail through the real
SMTP server + portal message), and the sponsor's three choices."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from donorhub.children.models import ChildUpdate, ExitNotice, ReviewStatus
from donorhub.database import utcnow
from donorhub.donations.models import Donation, DonationStatus, PlanStatus
from donorhub.extensions import db
from donorhub.mail.models import OutboxMessage
from donorhub.sponsorship import jobs
from donorhub.sponsorship.models import Sponsorship, SponsorshipStatus
from tests.feed.builders import Batch, exit_record
from tests.helpers import csrf_token, mentions
from tests.payments.stripe_helpers import send_mail
from tests.sponsorship.helpers import load_children, signed_in_client, sponsor_through_stripe

S = SponsorshipStatus


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


def test_exit_flow_end_to_end(app_factory, import_feed, sponsor, sim, mailbox):
    app = app_factory(
        SPONSORS_PER_CHILD=2, STRIPE_API_BASE=sim.base_url, CSP_FORM_ACTION=[sim.base_url]
    )
    kids = load_children(app, import_feed, 6)
    alice, bob = sponsor(target_app=app), sponsor(target_app=app)
    alice_client, bob_client = signed_in_client(app, alice), signed_in_client(app, bob)
    a_row, postman = sponsor_through_stripe(app, alice_client, sim, kids.tokens[0])
    b_row, _ = sponsor_through_stripe(app, bob_client, sim, kids.tokens[0])
    a_page = f"/my/sponsorships/{a_row.portal_token}"
    assert "She read a whole book" in alice_client.get(a_page).get_data(as_text=True)
    send_mail(app)
    mailbox.messages.clear()
    with app.app_context():
        outbox_before = len(db.session.scalars(select(OutboxMessage)).all())
        db.session.remove()

    # 1. The partner reports the exit. The import calls no Stripe and sends no mail.
    requests_before = len(sim.requests("/v1/"))
    import_feed(Batch().add(exit_record(kids.refs[0])))
    assert len(sim.requests("/v1/")) == requests_before
    # The child's content is gone from the portal at once.
    for client, page in (
        (alice_client, a_page),
        (bob_client, f"/my/sponsorships/{b_row.portal_token}"),
    ):
        body = client.get(page).get_data(as_text=True)
        assert not mentions(body, kids.aliases[0]) and "She read a whole book" not in body
    with app.app_context():
        updates = db.session.scalars(
            select(ChildUpdate).where(ChildUpdate.child_id == kids.ids[0])
        ).all()
        assert all(u.status is ReviewStatus.WITHDRAWN and u.approved_text is None for u in updates)
        notice = db.session.scalar(select(ExitNotice).where(ExitNotice.child_id == kids.ids[0]))
        notify_after = notice.notify_after
        db.session.remove()

    # 2. Collection stops at once (the job), quietly.
    with app.app_context():
        assert jobs.stop_collection_for_exited() == 2
        assert jobs.stop_collection_for_exited() == 0  # idempotent
        db.session.remove()
    for row in (a_row, b_row):
        sub = sim.api(f"/v1/subscriptions/{subscription_of(app, row.id)}")
        assert sub["pause_collection"] is not None
    with app.app_context():
        assert db.session.get(Sponsorship, a_row.id).status is S.MOVED_ON
        assert len(db.session.scalars(select(OutboxMessage)).all()) == outbox_before  # no mail
        db.session.remove()
    # A renewal while paused is not charged.
    before = paid_instalments(app, a_row.id)
    sim.control(f"/_sim/subscriptions/{subscription_of(app, a_row.id)}/renew")
    postman.flush()
    assert paid_instalments(app, a_row.id) == before

    # 3. The neutral notice waits for its random delay, then goes to both sponsors.
    with app.app_context():
        assert jobs.send_due_exit_notices(notify_after - timedelta(minutes=1)) == 0
        assert jobs.send_due_exit_notices(notify_after + timedelta(minutes=1)) == 2
        assert jobs.send_due_exit_notices(notify_after + timedelta(days=1)) == 0
        db.session.remove()
    assert send_mail(app) == 2
    for user in (alice, bob):
        [mail] = mailbox.to(user.email)
        assert mail.subject == "We have news about your sponsorship"
        assert "We have news about your sponsorship. Please sign in." in mail.text
        assert not mentions(mail.message.as_string(), kids.aliases[0])
    body = alice_client.get(a_page).get_data(as_text=True)
    assert f"{kids.aliases[0]} has moved on from this part of our programme." in body
    assert "She read a whole book" not in body
    assert "general fund" in body and "Sponsor another child" in body

    # 4. Alice keeps giving, to the general fund; Bob stops.
    response = alice_client.post(
        a_page + "/choice",
        data={"csrf_token": csrf_token(alice_client, a_page), "choice": "general_fund"},
    )
    assert response.status_code == 302
    b_page = f"/my/sponsorships/{b_row.portal_token}"
    response = bob_client.post(
        b_page + "/choice", data={"csrf_token": csrf_token(bob_client, b_page), "choice": "stop"}
    )
    assert response.status_code == 302
    a_sub = sim.api(f"/v1/subscriptions/{subscription_of(app, a_row.id)}")
    b_sub = sim.api(f"/v1/subscriptions/{subscription_of(app, b_row.id)}")
    assert a_sub["pause_collection"] is None and a_sub["status"] == "active"
    assert b_sub["status"] == "canceled"
    sim.control(f"/_sim/subscriptions/{a_sub['id']}/renew")
    postman.flush()
    assert paid_instalments(app, a_row.id) == before + 1
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
    import_feed(Batch().add(exit_record(kids.refs[1])))
    with pay_app.app_context():
        jobs.stop_collection_for_exited()
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
