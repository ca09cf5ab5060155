"""A sponsorship's price is fixed: no donation route changes, pauses, resumes or cancels its
plan, and Stripe reporting another price for it is flagged for staff, never adopted."""

from __future__ import annotations

import copy

from sqlalchemy import select

from donorhub.donations import plans
from donorhub.donations import services as donations
from donorhub.donations.models import Donation, DonationStatus, Frequency, PlanStatus
from donorhub.extensions import db
from donorhub.sponsorship.models import Sponsorship, SponsorshipStatus
from tests.metrics import METRICS
from tests.payments.stripe_helpers import csrf_from, post_event
from tests.sponsorship.helpers import load_children, signed_in_client, sponsor_through_stripe

S = SponsorshipStatus
#: Each POST route under these prefixes acts on one plan (by id, or by a receipt's token).
PLAN_ROUTE_PREFIXES = ("/donate/plans/", "/donate/manage/<")
#: What the <action> routes do to a plan (updating the card changes nothing of the plan).
PLAN_ACTIONS = ("pause", "resume", "cancel")


def _plan_facts(app, sponsorship_id: int) -> tuple:
    with app.app_context():
        row = db.session.get(Sponsorship, sponsorship_id)
        plan = row.plan
        facts = (
            row.status,
            plan.status,
            plan.amount_minor,
            plan.frequency,
            plan.paused,
            plan.cancelled_at,
            plan.pending_amount_minor,
        )
        db.session.remove()
        return facts


def _stripe_facts(sim, sub_id: str) -> tuple:
    sub = sim.api(f"/v1/subscriptions/{sub_id}")
    price = sub["items"]["data"][0]["price"]
    return (
        sub["status"],
        bool(sub["pause_collection"]),
        price["unit_amount"],
        price["recurring"]["interval"],
    )


def _writes_to(sim, sub_id: str) -> int:
    return len(
        [
            r
            for r in sim.requests(f"/v1/subscriptions/{sub_id}")
            if r["method"] in ("POST", "DELETE")
        ]
    )


def test_no_donation_route_changes_a_sponsorships_plan(pay_app, import_feed, sponsor, sim):
    kids = load_children(pay_app, import_feed, 5, updates=False)
    user = sponsor(target_app=pay_app)
    client = signed_in_client(pay_app, user)
    row, _postman = sponsor_through_stripe(pay_app, client, sim, kids.tokens[0])
    with pay_app.app_context(), pay_app.test_request_context():
        plan = db.session.get(Sponsorship, row.id).plan
        public_id, sub_id = plan.public_id, plan.stripe_subscription_id
        manage_token = plans.manage_token(plan)
        db.session.remove()
    before = _plan_facts(pay_app, row.id)
    assert before[:4] == (S.ACTIVE, PlanStatus.ACTIVE, 2500, Frequency.MONTHLY)
    stripe_before, writes_before = _stripe_facts(sim, sub_id), _writes_to(sim, sub_id)
    guest = pay_app.test_client()
    rules = [
        r
        for r in pay_app.url_map.iter_rules()
        if "POST" in r.methods and r.rule.startswith(PLAN_ROUTE_PREFIXES)
    ]
    assert len(rules) >= 3  # change, the signed-in actions, the receipt link's actions
    tried = []
    for rule in rules:
        actions = PLAN_ACTIONS if "action" in rule.arguments else [None]
        for action in actions:
            values = {"public_id": public_id, "token": manage_token, "action": action}
            path = rule.build({k: v for k, v in values.items() if k in rule.arguments})[1]
            who = client if "public_id" in rule.arguments else guest
            token = csrf_from(who, "/donate")
            response = who.post(
                path, data={"csrf_token": token, "amount": "2", "frequency": "yearly"}
            )
            tried.append(path)
            assert response.status_code in (302, 422), (path, response.status_code)
            assert _plan_facts(pay_app, row.id) == before, path
            assert _stripe_facts(sim, sub_id) == stripe_before, path
            assert _writes_to(sim, sub_id) == writes_before, path
    assert len(tried) >= 7  # change + 3 signed-in actions + 3 receipt-link actions
    # The pages say where a sponsorship is run from, and offer no change form.
    page = client.get(f"/donate/plans/{public_id}").get_data(as_text=True)
    assert "sponsorship page" in page and "Save the change" not in page
    assert "sponsorship page" in client.get("/donate/history").get_data(as_text=True)
    with pay_app.app_context():
        assert donations.flagged_plans() == []  # the sponsorship's own events flag nothing
        db.session.remove()
    METRICS.report(
        "sponsorship plan through donation routes: POSTs tried / changes", f"{len(tried)} / 0"
    )


def test_stripe_reporting_another_price_for_a_sponsorship_is_flagged(
    pay_app, import_feed, sponsor, sim
):
    kids = load_children(pay_app, import_feed, 5, updates=False)
    user = sponsor(target_app=pay_app)
    client = signed_in_client(pay_app, user)
    row, _postman = sponsor_through_stripe(pay_app, client, sim, kids.tokens[0])
    # Stripe says the subscription is now 2.00 a year (changed in Stripe's dashboard, or
    # through a route that should not have allowed it) and charges it.
    (latest,) = sim.events(("customer.subscription.created",))[-1:]
    changed = copy.deepcopy(latest)
    changed["id"] = "evt_price_changed"
    changed["type"] = "customer.subscription.updated"
    changed["created"] = latest["created"] + 60
    price = changed["data"]["object"]["items"]["data"][0]["price"]
    price["unit_amount"], price["recurring"]["interval"] = 200, "year"
    (paid,) = sim.events(("invoice.paid",))
    renewal = copy.deepcopy(paid)
    renewal["id"] = "evt_cheap_renewal"
    renewal["created"] = latest["created"] + 120
    invoice = renewal["data"]["object"]
    invoice["id"], invoice["created"] = "in_cheap_renewal", renewal["created"]
    invoice["amount_paid"] = invoice["amount_due"] = 200
    invoice["billing_reason"] = "subscription_update"
    assert post_event(client, changed).status_code == 200
    assert post_event(client, renewal).status_code == 200
    with pay_app.app_context():
        plan = db.session.get(Sponsorship, row.id).plan
        # Not adopted: the plan keeps the fixed price; staff see why.
        assert (plan.amount_minor, plan.frequency) == (2500, Frequency.MONTHLY)
        assert plan.review_reason and "200" in plan.review_reason
        assert plan in donations.flagged_plans()
        cheap = db.session.scalar(
            select(Donation).where(Donation.stripe_invoice_id == "in_cheap_renewal")
        )
        assert cheap.status is DonationStatus.NEEDS_REVIEW
        db.session.remove()


def test_another_price_read_back_for_two_updates_in_one_second_is_not_adopted(
    pay_app, import_feed, sponsor, sim, backend
):
    """Two subscription updates in one second are settled from Stripe's own copy, read back;
    a sponsorship's plan must not adopt the price that copy carries either."""
    from donorhub.payments.gateway import SubscriptionChange, get_gateway

    kids = load_children(pay_app, import_feed, 5, updates=False)
    client = signed_in_client(pay_app, sponsor(target_app=pay_app))
    row, _postman = sponsor_through_stripe(pay_app, client, sim, kids.tokens[0])
    with pay_app.app_context():
        sub_id = db.session.get(Sponsorship, row.id).plan.stripe_subscription_id
        # Stripe now holds 2.00 a year (changed in Stripe's dashboard).
        get_gateway().change_subscription(
            SubscriptionChange(
                subscription_id=sub_id,
                idempotency_key="dashboard-change",
                amount_minor=200,
                currency="gbp",
                interval="year",
            )
        )
        db.session.remove()
    (latest,) = sim.events(("customer.subscription.created",))[-1:]
    # Two updates within one second, each carrying the fixed price: the second is settled
    # from the subscription as Stripe holds it now.
    for n in (1, 2):
        update = copy.deepcopy(latest)
        update["id"] = f"evt_same_second_{n}"
        update["type"] = "customer.subscription.updated"
        update["created"] = latest["created"] + 60
        assert post_event(client, update).status_code == 200
    with pay_app.app_context():
        plan = db.session.get(Sponsorship, row.id).plan
        assert (plan.amount_minor, plan.frequency) == (2500, Frequency.MONTHLY)
        assert plan.pending_amount_minor is None
        assert plan.review_reason and "200" in plan.review_reason
        assert plan in donations.flagged_plans()
        db.session.remove()
