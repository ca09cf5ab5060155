"""Paying for a sponsorship through the simulator with the real stripe library, and its life
after: active, past due (mailed), lapsed after the grace period, cancelled by the sponsor."""

from __future__ import annotations

import json
import random
from datetime import timedelta

from sqlalchemy import select

from donorhub.database import utcnow
from donorhub.donations.models import PlanStatus
from donorhub.extensions import db
from donorhub.sponsorship import jobs, services
from donorhub.sponsorship.models import Sponsorship, SponsorshipPlace, SponsorshipStatus
from tests.helpers import mentions
from tests.metrics import METRICS
from tests.payments.stripe_helpers import Postman, deliver, send_mail
from tests.sponsorship.helpers import (
    choose,
    load_children,
    signed_in_client,
    sponsor_through_stripe,
    state,
)

S = SponsorshipStatus


def test_checkout_tells_stripe_nothing_about_the_child(pay_app, import_feed, sponsor, sim):
    kids = load_children(pay_app, import_feed, 5)
    user = sponsor(target_app=pay_app)
    client = signed_in_client(pay_app, user)
    row, _postman = sponsor_through_stripe(pay_app, client, sim, kids.tokens[0])
    assert state(pay_app, row.id) == (S.ACTIVE, PlanStatus.ACTIVE)
    stored = {
        kind: sim.control(f"/_sim/objects?type={kind}", method="GET")["objects"]
        for kind in ("checkout.session", "subscription", "product", "customer", "invoice", "price")
    }
    assert [p["name"] for p in stored["product"]] == ["Monthly sponsorship"]
    for kind in ("checkout.session", "subscription"):
        assert [o["metadata"] for o in stored[kind]] == [{"sponsorship": row.public_id}]
    assert all(not o.get("statement_descriptor") for o in stored["subscription"])
    everything = json.dumps(stored) + json.dumps(sim.events())
    with pay_app.app_context():
        from donorhub.children.models import Child

        child = db.session.get(Child, kids.ids[0])
        secrets_of_child = [child.alias, child.public_token, child.home_code, child.ref_hash]
        db.session.remove()
    assert [s for s in secrets_of_child if s in everything] == []
    keys = {k for e in sim.events() for k in (e["data"]["object"].get("metadata") or {})}
    assert keys <= {"sponsorship"}
    METRICS.report(
        "sponsorship: Stripe requests+events scanned for alias/token/home/ref",
        f"{sum(map(len, stored.values()))} objects, {len(sim.events())} events / "
        "0 hits; "
        f"metadata keys {sorted(keys)}",
    )


def test_past_due_is_mailed_and_lapses_after_the_grace_period(
    pay_app, import_feed, sponsor, sim, mailbox
):
    kids = load_children(pay_app, import_feed, 5)
    user = sponsor(target_app=pay_app)
    client = signed_in_client(pay_app, user)
    row, postman = sponsor_through_stripe(pay_app, client, sim, kids.tokens[0])
    with pay_app.app_context():
        sub = db.session.get(Sponsorship, row.id).plan.stripe_subscription_id
        db.session.remove()
    sim.control(f"/_sim/subscriptions/{sub}/renew", fail="1")
    postman.flush()
    assert state(pay_app, row.id) == (S.PAST_DUE, PlanStatus.PAST_DUE)
    send_mail(pay_app)
    assert any("did not go through" in m.subject for m in mailbox.to(user.email))
    page = client.get(f"/my/sponsorships/{row.portal_token}").get_data(as_text=True)
    # Still theirs during the grace period.
    assert "did not go through" in page and mentions(page, kids.aliases[0])
    with pay_app.app_context():
        assert jobs.lapse_overdue(utcnow() + timedelta(days=13)) == 0
        assert jobs.lapse_overdue(utcnow() + timedelta(days=15)) == 1
        assert (
            db.session.scalar(
                select(SponsorshipPlace).where(SponsorshipPlace.child_id == kids.ids[0])
            )
            is None
        )
        assert kids.tokens[0] in [c.token for c in services.listed_profiles()]
        db.session.remove()
    assert state(pay_app, row.id) == (S.LAPSED, PlanStatus.CANCELLED)
    assert sim.api(f"/v1/subscriptions/{sub}")["status"] == "canceled"
    postman.flush()  # Stripe's own cancellation events change nothing more
    assert state(pay_app, row.id) == (S.LAPSED, PlanStatus.CANCELLED)
    send_mail(pay_app)
    ended = [m for m in mailbox.to(user.email) if m.subject == "Your sponsorship has ended"]
    assert len(ended) == 1 and not mentions(ended[0].text, kids.aliases[0])


def test_recovery_and_cancel_by_the_sponsor(pay_app, import_feed, sponsor, sim, mailbox):
    kids = load_children(pay_app, import_feed, 5)
    user = sponsor(target_app=pay_app)
    client = signed_in_client(pay_app, user)
    row, postman = sponsor_through_stripe(pay_app, client, sim, kids.tokens[2])
    with pay_app.app_context():
        sub = db.session.get(Sponsorship, row.id).plan.stripe_subscription_id
        db.session.remove()
    result = sim.control(f"/_sim/subscriptions/{sub}/renew", fail="1")
    postman.flush()
    sim.control(f"/_sim/invoices/{result['invoice']['id']}/pay")
    postman.flush()
    assert state(pay_app, row.id) == (S.ACTIVE, PlanStatus.ACTIVE)
    from tests.helpers import csrf_token

    page = f"/my/sponsorships/{row.portal_token}"
    response = client.post(page + "/cancel", data={"csrf_token": csrf_token(client, page)})
    assert response.status_code == 302
    assert state(pay_app, row.id) == (S.CANCELLED, PlanStatus.CANCELLED)
    assert sim.api(f"/v1/subscriptions/{sub}")["status"] == "canceled"
    with pay_app.app_context():
        assert kids.tokens[2] in [c.token for c in services.listed_profiles()]
        db.session.remove()


def test_events_in_any_order_reach_the_same_state(pay_app, import_feed, sponsor, sim):
    kids = load_children(pay_app, import_feed, 5, updates=False)
    user = sponsor(target_app=pay_app)
    client = signed_in_client(pay_app, user)
    response = choose(client, kids.tokens[3])
    sim.pay(response.headers["Location"])
    events = sim.events()
    shuffled = list(reversed(events)) + random.Random(5).sample(events, len(events))
    assert set(deliver(client, shuffled)) == {200}
    with pay_app.app_context():
        row = db.session.scalar(select(Sponsorship))
        assert row.status is S.ACTIVE and row.plan.status is PlanStatus.ACTIVE
        assert len([g for g in row.plan.gifts]) == 1  # one instalment, not two
        db.session.remove()
    Postman(sim, client).flush()


def test_payment_after_the_hold_ended_re_places_or_asks(pay_app, import_feed, sponsor, sim):
    kids = load_children(pay_app, import_feed, 5, updates=False)
    first, second = sponsor(target_app=pay_app), sponsor(target_app=pay_app)
    client = signed_in_client(pay_app, first)
    url = choose(client, kids.tokens[4]).headers["Location"]
    with pay_app.app_context():
        # The hold ends (the sweep could not expire the session in time) ...
        row = db.session.scalar(select(Sponsorship))
        services._end_hold(row, utcnow())
        db.session.commit()
        # ... and another sponsor takes the place.
        from donorhub.accounts.models import User

        services.hold_child(db.session.get(User, second.id), kids.tokens[4], "gbp")
        db.session.commit()
        db.session.remove()
    sim.pay(url)
    Postman(sim, client).flush()
    with pay_app.app_context():
        row = db.session.scalar(select(Sponsorship).where(Sponsorship.user_id == first.id))
        assert row.status is S.UNPLACED and row.notified_at is not None
        token = row.portal_token
        assert jobs.stop_collection_for_exited() == 1  # collection stops for it too
        db.session.remove()
    page = client.get(f"/my/sponsorships/{token}").get_data(as_text=True)
    assert "another sponsor had taken the place" in page and "general fund" in page
