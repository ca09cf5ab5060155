"""A sponsorship ends in the same state whatever order Stripe's events arrive in.

Each case is a real sponsorship paid at the simulator whose renewal fails and which Stripe
then ends (or which the sponsor cancels); its events are delivered, signed, to the real
webhook in one permutation. The fast suite tries a fixed sample of orders (deletion first,
reversed, ...); the slow suite tries every permutation.
"""

from __future__ import annotations

import itertools
import random

import pytest
from sqlalchemy import func, select

from donorhub.extensions import db
from donorhub.sponsorship.models import (
    SponsorMessage,
    Sponsorship,
    SponsorshipPlace,
    SponsorshipStatus,
)
from tests.metrics import METRICS
from tests.payments.stripe_helpers import csrf_from, http, post_event
from tests.sponsorship.helpers import choose, load_children, signed_in_client

S = SponsorshipStatus
#: The events whose order decides the end (the others, such as invoice.created, are delivered
#: after them in Stripe's order).
RELEVANT = (
    "checkout.session.completed",
    "invoice.paid",
    "invoice.payment_failed",
    "customer.subscription.updated",
    "customer.subscription.deleted",
)


def _lapsing_sponsorship(app, client, sim, token: str) -> tuple[int, list[dict], list[dict]]:
    """Paid, its renewal failed, then Stripe ended it; nothing delivered yet."""
    seen = {e["id"] for e in sim.events()}
    response = choose(client, token)
    assert response.status_code == 303, response.status_code
    status, _ = sim.pay(response.headers["Location"])
    assert status == 303
    sub = next(e for e in sim.events(("customer.subscription.created",)) if e["id"] not in seen)[
        "data"
    ]["object"]["id"]
    sim.control(f"/_sim/subscriptions/{sub}/renew", fail="1")
    code, _, _ = http("DELETE", f"{sim.base_url}/v1/subscriptions/{sub}", key="sk_test_tests")
    assert code == 200
    fresh = [e for e in sim.events() if e["id"] not in seen]
    relevant = [e for e in fresh if e["type"] in RELEVANT]
    assert sorted(e["type"] for e in relevant) == sorted(RELEVANT)
    with app.app_context():
        sponsorship_id = db.session.scalar(select(func.max(Sponsorship.id)))
        db.session.remove()
    return sponsorship_id, relevant, [e for e in fresh if e["type"] not in RELEVANT]


def _end_state(app, client, sponsorship_id: int) -> tuple:
    with app.app_context():
        row = db.session.get(Sponsorship, sponsorship_id)
        places = db.session.scalar(
            select(func.count())
            .select_from(SponsorshipPlace)
            .where(SponsorshipPlace.sponsorship_id == row.id)
        )
        messages = sorted(
            db.session.scalars(
                select(SponsorMessage.kind).where(SponsorMessage.sponsorship_id == row.id)
            )
        )
        paid = len([g for g in row.plan.gifts if g.paid_at is not None])
        state = (row.status, row.plan.status, places, tuple(messages), paid)
        token = row.portal_token
        db.session.remove()
    # The sponsor still sees it (and why it ended) in the portal.
    visible = client.get(f"/my/sponsorships/{token}").status_code == 200
    return (*state, visible)


def _orders(relevant: list[dict], every: bool) -> list[tuple[int, ...]]:
    indexes = list(range(len(relevant)))
    if every:
        return list(itertools.permutations(indexes))
    deleted = next(i for i, e in enumerate(relevant) if e["type"].endswith("deleted"))
    rest = [i for i in indexes if i != deleted]
    sample = {
        tuple(indexes),
        tuple(reversed(indexes)),
        (deleted, *rest),
        (deleted, *reversed(rest)),
    }
    rng = random.Random(12)
    while len(sample) < 8:
        sample.add(tuple(rng.sample(indexes, len(indexes))))
    return sorted(sample)


def _run_orders(pay_app, import_feed, sponsor, sim, every: bool) -> None:
    kids = load_children(pay_app, import_feed, 5, updates=False)
    user = sponsor(target_app=pay_app)
    client = signed_in_client(pay_app, user)
    states, bad = {}, []
    probe_id, probe_events, _ = _lapsing_sponsorship(pay_app, client, sim, kids.tokens[0])
    orders = _orders(probe_events, every)
    for n, order in enumerate(orders):
        if n == 0:
            sponsorship_id, relevant, others = probe_id, probe_events, _
        else:
            sponsorship_id, relevant, others = _lapsing_sponsorship(
                pay_app, client, sim, kids.tokens[n % len(kids.tokens)]
            )
        for event in [relevant[i] for i in order] + others:
            code = post_event(client, event).status_code
            if code != 200:
                bad.append((order, event["type"], code))
        states[order] = _end_state(pay_app, client, sponsorship_id)
    expected = (S.LAPSED, "ended", 0, ("lapsed",), 1, True)
    wrong = {
        order: state
        for order, state in states.items()
        if (state[0], state[1].value, *state[2:]) != expected
    }
    assert bad == []
    assert wrong == {}, [
        (tuple(relevant[i]["type"] for i in o), s) for o, s in list(wrong.items())[:5]
    ]
    METRICS.report(
        f"sponsorship end state, event orders ({'all' if every else 'sample'}) / "
        "wrong final states",
        f"{len(states)} / {len(wrong)}",
    )


def test_a_lapsing_sponsorship_ends_lapsed_in_every_sampled_order(
    pay_app, import_feed, sponsor, sim
):
    _run_orders(pay_app, import_feed, sponsor, sim, every=False)


@pytest.mark.slow
def test_a_lapsing_sponsorship_ends_lapsed_in_every_order(pay_app, import_feed, sponsor, sim):
    _run_orders(pay_app, import_feed, sponsor, sim, every=True)


def test_a_cancelled_sponsorship_ends_cancelled_in_every_order(pay_app, import_feed, sponsor, sim):
    """The sponsor cancels while a renewal has failed: the failure, the past-due update and
    the deletion the cancel causes arrive in any order; it ends cancelled."""
    kids = load_children(pay_app, import_feed, 5, updates=False)
    user = sponsor(target_app=pay_app)
    client = signed_in_client(pay_app, user)
    late_types = (
        "invoice.payment_failed",
        "customer.subscription.updated",
        "customer.subscription.deleted",
    )
    outcomes = {}
    for n, order in enumerate(itertools.permutations(range(3))):
        seen = {e["id"] for e in sim.events()}
        response = choose(client, kids.tokens[n % 5])
        sim.pay(response.headers["Location"])
        first = [e for e in sim.events() if e["id"] not in seen]
        for event in first:
            assert post_event(client, event).status_code == 200
        sub = next(e for e in first if e["type"] == "customer.subscription.created")["data"][
            "object"
        ]["id"]
        seen = {e["id"] for e in sim.events()}
        sim.control(f"/_sim/subscriptions/{sub}/renew", fail="1")
        with pay_app.app_context():
            row = db.session.scalar(select(Sponsorship).order_by(Sponsorship.id.desc()))
            sponsorship_id, token = row.id, row.portal_token
            db.session.remove()
        page = f"/my/sponsorships/{token}"
        response = client.post(f"{page}/cancel", data={"csrf_token": csrf_from(client, page)})
        assert response.status_code == 302
        late = [e for e in sim.events() if e["id"] not in seen and e["type"] in late_types]
        assert sorted(e["type"] for e in late) == sorted(late_types)
        late = [late[i] for i in order] + [
            e for e in sim.events() if e["id"] not in seen and e not in late
        ]
        for event in late:
            assert post_event(client, event).status_code == 200
        with pay_app.app_context():
            row = db.session.get(Sponsorship, sponsorship_id)
            outcomes[order] = (row.status, row.plan.status.value)
            db.session.remove()
    assert set(outcomes.values()) == {(S.CANCELLED, "cancelled")}, outcomes
