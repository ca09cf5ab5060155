"""Refunds and disputes are facts about a payment: every order of Stripe's events about them
ends in the same recorded truth, applied through the real webhook view."""

from __future__ import annotations

import itertools
import json
import uuid

import pytest
import stripe
from sqlalchemy import select

from donorhub.donations.models import (
    COUNTED_STATUSES,
    Dispute,
    DisputeStatus,
    Donation,
    DonationKind,
    DonationStatus,
    Donor,
    GiftAidDeclaration,
    GiftAidScope,
    Refund,
    RefundStatus,
)
from donorhub.extensions import db
from tests.metrics import METRICS
from tests.payments.stripe_helpers import post_event

AMOUNT = 5000


def _stripe(sim) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_x", base_addresses={"api": sim.base_url})


class Payment:
    """One paid £50 gift at the Stripe simulator: the test refunds it, fails refunds and
    disputes it there, and delivers the events the simulator kept, shaped as the pinned API
    version sends them (a Charge carries no list of its refunds), in any order it likes.
    When a handler asks Stripe (the refunds of a payment), it asks the simulator, which
    answers with the payment's state now, as Stripe would."""

    def __init__(self, app, sim, *, gift_aid: bool = False):
        self.sim, self.client = sim, _stripe(sim)
        newest = sim.api("/v1/events?limit=1")["data"]
        self.mark = newest[0]["id"] if newest else None
        self.seen: list[dict] | None = None
        session = self.client.v1.checkout.sessions.create(
            params={
                "mode": "payment",
                "success_url": "http://127.0.0.1/thanks",
                "cancel_url": "http://127.0.0.1/give",
                "customer_email": "facts@example.org",
                "line_items": [
                    {
                        "quantity": 1,
                        "price_data": {
                            "currency": "gbp",
                            "unit_amount": AMOUNT,
                            "product_data": {"name": "Gift"},
                        },
                    }
                ],
            }
        )
        assert sim.pay(session.url)[0] == 303
        self.intent = self.client.v1.checkout.sessions.retrieve(session.id).payment_intent
        self.charge = self.client.v1.payment_intents.retrieve(self.intent).latest_charge
        self.refund_ids: dict[int, str] = {}
        self.dispute: str | None = None
        with app.app_context():
            donor = db.session.scalar(select(Donor).where(Donor.email == "facts@example.org"))
            if donor is None:
                donor = Donor(email="facts@example.org", full_name="Fact Giver")
            row = Donation(
                donor=donor,
                kind=DonationKind.ONCE,
                amount_minor=AMOUNT,
                currency="gbp",
                stripe_payment_intent_id=self.intent,
            )
            if gift_aid:
                row.gift_aid_declaration = GiftAidDeclaration(
                    donor=donor,
                    first_name="Fact",
                    last_name="Giver",
                    house="1",
                    postcode="SW1A 1AA",
                    scope=GiftAidScope.SINGLE,
                    text_version="2026-1",
                )
            db.session.add(row)
            db.session.commit()
            self.row_id, self.public_id = row.id, row.public_id

    # What happens at Stripe --------------------------------------------------------------
    def refund(self, n: int, amount: int) -> None:
        self.seen = None
        self.refund_ids[n] = self.client.v1.refunds.create(
            params={"payment_intent": self.intent, "amount": amount}
        ).id

    def fail_refund(self, n: int) -> None:
        self.seen = None
        self.sim.control(f"/_sim/refunds/{self.refund_ids[n]}/fail")

    def open_dispute(self) -> None:
        self.seen = None
        self.dispute = self.sim.control(f"/_sim/charges/{self.charge}/dispute")["id"]

    def close_dispute(self, outcome: str) -> None:
        self.seen = None
        self.sim.control(f"/_sim/disputes/{self.dispute}/close", status=outcome)

    # What Stripe sent about it -----------------------------------------------------------
    def events(self) -> list[dict]:
        """Every event about this payment, oldest first, exactly as the simulator sends it."""
        if self.seen is not None:
            return self.seen
        mine = (self.intent, self.charge)
        query = "limit=100" + (f"&ending_before={self.mark}" if self.mark else "")
        page = self.sim.api(f"/v1/events?{query}")
        assert not page["has_more"]
        found = []
        for event in reversed(page["data"]):
            obj = event["data"]["object"]
            if (
                obj.get("payment_intent") in mine
                or obj.get("charge") in mine
                or obj.get("id") in mine
            ):
                found.append(event)
        for event in found:
            if event["data"]["object"]["object"] == "charge":
                # The shape Stripe sends since API version 2022-11-15: no list of refunds.
                assert "refunds" not in event["data"]["object"], event["type"]
        self.seen = found
        return found

    def event(self, kind: str, n: int | None = None) -> dict:
        """The one event of `kind` (for charge.refunded: the n-th; for refund events: about
        refund n)."""
        found = [e for e in self.events() if e["type"] == kind]
        if kind == "charge.refunded":
            return found[n - 1]
        if n is not None:
            found = [e for e in found if e["data"]["object"]["id"] == self.refund_ids[n]]
        assert len(found) == 1, (kind, n, [e["type"] for e in self.events()])
        return found[0]

    def label(self, refund_id: str) -> str:
        return {v: f"refund {k}" for k, v in self.refund_ids.items()}.get(refund_id, refund_id)


def variant(event: dict, kind: str, **fields) -> dict:
    """A copy of a dispute event under another type and status (a new event id)."""
    copy = json.loads(json.dumps(event))
    copy["id"], copy["type"] = f"evt_{uuid.uuid4().hex}", kind
    copy["data"]["object"].update(fields)
    return copy


def truth(app, payment: Payment) -> dict:
    with app.app_context():
        row = db.session.get(Donation, payment.row_id)
        refunds = sorted(
            (payment.label(r.stripe_refund_id), r.amount_minor, r.status.value)
            for r in db.session.scalars(select(Refund).where(Refund.donation_id == payment.row_id))
        )
        disputes = [
            d.status.value
            for d in db.session.scalars(
                select(Dispute).where(Dispute.donation_id == payment.row_id)
            )
        ]
        return {
            "status": row.status,
            "refunded": row.amount_refunded_minor,
            "paid": row.paid_at is not None,
            "dispute": row.dispute_status,
            "disputes": disputes,
            "refunds": refunds,
            "counted": row.status in COUNTED_STATUSES,
        }


def run_orders(app, client, sim, build, expected_for) -> int:
    """Deliver every permutation of the events `build(payment)` returns, each to a fresh
    gift, asserting each ends in `expected_for`; return the number of orders tried."""
    tried = 0
    names = build.names
    for order in itertools.permutations(range(len(names))):
        payment = Payment(app, sim)
        events = build(payment)
        codes = [post_event(client, events[i]).status_code for i in order]
        got = truth(app, payment)
        tried += 1
        ok = codes == [200] * len(order) and got == expected_for
        assert ok, ([names[i] for i in order], codes, got, expected_for)
    return tried


def _closing(outcome: str):
    def build(p: Payment) -> list[dict]:
        p.refund(1, 2000)
        p.refund(2, 3000)
        p.open_dispute()
        p.close_dispute(outcome)
        return [
            p.event("charge.refunded", 1),
            p.event("charge.refunded", 2),
            p.event("charge.dispute.created"),
            p.event("charge.dispute.closed"),
        ]

    build.names = ["partial refund", "refund of the rest", "dispute", f"dispute {outcome}"]
    return build


def test_refunds_and_disputes_in_every_order_end_in_one_truth(pay_app, pay_client, sim, backend):
    """A partial refund, a refund of the rest, a dispute and its outcome (won or lost), in
    all 24 orders each, as Stripe sends them now: the two charge.refunded events carry only
    the refunded sum, and their refund.created events are not delivered (late, or lost), so
    the refunds themselves come from asking Stripe for the payment's refunds."""
    tried = 0
    for outcome, status in (
        ("lost", DonationStatus.CHARGED_BACK),
        ("won", DonationStatus.REFUNDED),
    ):
        expected = {
            "status": status,
            "refunded": AMOUNT,
            "paid": True,
            "dispute": outcome,
            "disputes": [outcome],
            "refunds": [("refund 1", 2000, "succeeded"), ("refund 2", 3000, "succeeded")],
            "counted": status in COUNTED_STATUSES,
        }
        tried += run_orders(pay_app, pay_client, sim, _closing(outcome), expected)
    METRICS.report(
        f"refund/dispute event orders ({backend}), each asserted to end in the right state", tried
    )


def test_refund_events_alone_in_every_order_end_in_one_truth(pay_app, pay_client, sim):
    """The other half of what Stripe sends: refund.created for each refund (the Refund
    object, with its status) and the dispute, without any charge.refunded: 24 orders."""

    def build(p: Payment) -> list[dict]:
        p.refund(1, 2000)
        p.refund(2, 3000)
        p.open_dispute()
        p.close_dispute("lost")
        return [
            p.event("refund.created", 1),
            p.event("refund.created", 2),
            p.event("charge.dispute.created"),
            p.event("charge.dispute.closed"),
        ]

    build.names = ["refund 1 created", "refund 2 created", "dispute", "dispute lost"]
    expected = {
        "status": DonationStatus.CHARGED_BACK,
        "refunded": AMOUNT,
        "paid": True,
        "dispute": "lost",
        "disputes": ["lost"],
        "refunds": [("refund 1", 2000, "succeeded"), ("refund 2", 3000, "succeeded")],
        "counted": False,
    }
    assert run_orders(pay_app, pay_client, sim, build, expected) == 24


def test_a_failed_refund_in_any_order_no_longer_counts(pay_app, pay_client, sim, backend):
    """Two refunds, the second of which fails later (under each of the two names Stripe
    uses for it), and an open dispute: every order ends with only the first refund counted,
    the failure recorded, and the gift shown as disputed."""
    tried = 0
    for failure in ("refund.failed", "charge.refund.updated"):

        def build(p: Payment, failure=failure) -> list[dict]:
            p.refund(1, 2000)
            p.refund(2, 3000)
            p.fail_refund(2)
            p.open_dispute()
            return [
                p.event("charge.refunded", 1),
                p.event("charge.refunded", 2),
                p.event(failure, 2),
                p.event("charge.dispute.created"),
            ]

        build.names = ["partial refund", "refund of the rest", failure, "dispute"]
        expected = {
            "status": DonationStatus.DISPUTED,
            "refunded": 2000,
            "paid": True,
            "dispute": "open",
            "disputes": ["needs_response"],
            "refunds": [("refund 1", 2000, "succeeded"), ("refund 2", 3000, "failed")],
            "counted": False,
        }
        tried += run_orders(pay_app, pay_client, sim, build, expected)
    METRICS.report(
        f"failed-refund event orders ({backend}), each asserted to end in the right state", tried
    )


def test_a_failed_refund_gives_the_gift_back_its_count_and_tells_staff(pay_app, pay_client, sim):
    """A full refund that fails: the gift is paid (counted) again and staff see why."""
    p = Payment(pay_app, sim)
    p.refund(1, AMOUNT)
    assert post_event(pay_client, p.event("charge.refunded", 1)).status_code == 200
    assert truth(pay_app, p)["status"] is DonationStatus.REFUNDED
    p.fail_refund(1)
    assert post_event(pay_client, p.event("refund.updated", 1)).status_code == 200
    got = truth(pay_app, p)
    assert got["status"] is DonationStatus.PAID and got["refunded"] == 0 and got["counted"]
    with pay_app.app_context():
        from donorhub.audit import AuditEvent

        row = db.session.scalar(select(Refund).where(Refund.donation_id == p.row_id))
        assert row.status is RefundStatus.FAILED
        assert row.failure_reason == "expired_or_canceled_card"
        assert (
            db.session.scalar(
                select(AuditEvent).where(
                    AuditEvent.action == "donation.refund_failed", AuditEvent.subject_id == p.row_id
                )
            )
            is not None
        )


def test_a_pending_refund_that_fails_frees_its_amount_again(pay_app, pay_client, sim):
    """A refund Stripe reports as pending holds its amount back from what staff may still
    refund; when it later fails (refund.failed), the amount may be refunded again."""
    from donorhub.donations.refunds import refundable_minor

    p = Payment(pay_app, sim)
    p.refund(1, 2000)
    pending = variant(p.event("refund.created", 1), "refund.created", status="pending")
    assert post_event(pay_client, pending).status_code == 200
    with pay_app.app_context():
        row = db.session.scalar(select(Refund).where(Refund.donation_id == p.row_id))
        assert row.status is RefundStatus.PENDING
        assert refundable_minor(db.session.get(Donation, p.row_id)) == AMOUNT - 2000
    p.fail_refund(1)
    assert post_event(pay_client, p.event("refund.failed", 1)).status_code == 200
    with pay_app.app_context():
        row = db.session.scalar(select(Refund).where(Refund.donation_id == p.row_id))
        assert row.status is RefundStatus.FAILED
        gift = db.session.get(Donation, p.row_id)
        assert refundable_minor(gift) == AMOUNT
        assert gift.amount_refunded_minor == 0 and gift.status is DonationStatus.PAID


def test_a_refund_moves_only_forward_through_its_table():
    """Refund.advance is the one writer of a refund's status: a late older status changes
    nothing, a final status stays final, and a move the table does not list is refused."""
    from donorhub.donations.models import REFUND_MOVES
    from donorhub.errors import IllegalTransition

    row = Refund(id=1, status=RefundStatus.REQUESTED)
    assert row.advance(RefundStatus.PENDING) and row.status is RefundStatus.PENDING
    assert not row.advance(RefundStatus.REQUESTED)
    assert row.advance(RefundStatus.FAILED) and row.status is RefundStatus.FAILED
    assert not row.advance(RefundStatus.SUCCEEDED)  # final
    assert set(REFUND_MOVES) == set(RefundStatus)
    row = Refund(id=2, status=RefundStatus.SUCCEEDED)
    with pytest.raises(IllegalTransition):
        row.advance(RefundStatus.CANCELED)  # Stripe cancels only a refund not yet made


def test_a_dispute_never_moves_back(pay_app, pay_client, sim):
    """A late "created" (needs_response) after the dispute was lost changes nothing."""
    p = Payment(pay_app, sim)
    p.open_dispute()
    created = p.event("charge.dispute.created")
    for kind, status in (
        ("charge.dispute.closed", "lost"),
        ("charge.dispute.updated", "under_review"),
        ("charge.dispute.created", "needs_response"),
    ):
        event = variant(created, kind, status=status)
        assert post_event(pay_client, event).status_code == 200
    got = truth(pay_app, p)
    assert got["disputes"] == [DisputeStatus.LOST.value]
    assert got["status"] is DonationStatus.CHARGED_BACK


def test_gift_aid_and_totals_follow_the_facts(pay_app, pay_client, sim):
    """Gift Aid claims and campaign-style totals read the derived status: a gift refunded
    and then charged back is never claimed nor counted; one whose only refund failed is
    claimable and counted in full again; an open dispute holds the gift out of both."""
    from datetime import date, timedelta

    from donorhub.donations.giftaid import claimable_gifts
    from donorhub.donations.models import net_gift_expression

    lost, failed, disputed = (Payment(pay_app, sim, gift_aid=True) for _ in range(3))
    lost.refund(1, AMOUNT)
    lost.open_dispute()
    lost.close_dispute("lost")
    failed.refund(1, AMOUNT)
    failed.fail_refund(1)
    disputed.open_dispute()
    events = [
        lost.event("charge.refunded", 1),
        lost.event("charge.dispute.closed"),
        failed.event("charge.refunded", 1),
        failed.event("refund.updated", 1),
        disputed.event("charge.dispute.created"),
    ]
    assert [post_event(pay_client, e).status_code for e in events] == [200] * 5
    with pay_app.app_context():
        today = date.today()
        claimable = {
            g.id for g in claimable_gifts(today - timedelta(days=2), today + timedelta(days=1))
        }
        counted = dict(db.session.execute(select(Donation.id, net_gift_expression())).all())
    assert claimable == {failed.row_id}
    assert (counted[lost.row_id], counted[failed.row_id], counted[disputed.row_id]) == (
        0,
        AMOUNT,
        0,
    )


def test_staff_see_a_dispute_of_a_refunded_gift(pay_app, pay_client, sim, make_user):
    """The case that used to answer 500 for good: refunded in full, then disputed. Staff see
    it on the donor page and in the list of gifts that need a person."""
    from tests.campaigns.test_campaigns import staff_client

    p = Payment(pay_app, sim)
    p.refund(1, AMOUNT)
    p.open_dispute()
    for event in (p.event("charge.refunded", 1), p.event("charge.dispute.created")):
        assert post_event(pay_client, event).status_code == 200
    with pay_app.app_context():
        donor_id = db.session.get(Donation, p.row_id).donor_id
    staff, _ = staff_client(pay_app, make_user)
    page = staff.get(f"/staff/donors/{donor_id}").get_data(as_text=True)
    assert "dispute £50.00 (needs response)" in page and ">disputed<" in page
    listed = staff.get("/staff/donations").get_data(as_text=True)
    assert f"<td>#{p.row_id}</td><td>£50.00</td><td>disputed</td>" in listed


def test_refunds_are_listed_page_after_page(pay_app, sim):
    """GET /v1/refunds pages as Stripe does (limit, starting_after, has_more), and the
    gateway reads every page: seven refunds of one payment in pages of two, each once.
    (Before, the simulator ignored starting_after and answered has_more for ever.)"""
    from donorhub.payments.gateway import get_gateway

    p = Payment(pay_app, sim)
    for n in range(1, 8):
        p.refund(n, 100)
    newest_first = [p.refund_ids[n] for n in range(7, 0, -1)]
    seen, after = [], None
    for _ in range(10):  # bounded: a list that never ends fails here instead of hanging
        query = f"payment_intent={p.intent}&limit=2" + (f"&starting_after={after}" if after else "")
        page = sim.api(f"/v1/refunds?{query}")
        seen += [r["id"] for r in page["data"]]
        if not page["has_more"]:
            break
        after = page["data"][-1]["id"]
    assert seen == newest_first
    with pay_app.app_context():
        listed = get_gateway().list_refunds(p.intent, None, page_size=2)
    assert [r.id for r in listed] == newest_first


@pytest.mark.slow
def test_every_refund_and_dispute_event_in_every_order(pay_app, pay_client, sim, backend):
    """Everything Stripe sends about two refunds and a lost dispute, both names of each
    refund (refund.created and charge.refunded) included: all 720 orders."""

    def build(p: Payment) -> list[dict]:
        p.refund(1, 2000)
        p.refund(2, 3000)
        p.open_dispute()
        p.close_dispute("lost")
        return [
            p.event("refund.created", 1),
            p.event("charge.refunded", 1),
            p.event("refund.created", 2),
            p.event("charge.refunded", 2),
            p.event("charge.dispute.created"),
            p.event("charge.dispute.closed"),
        ]

    build.names = [
        "refund 1 created",
        "partial refund",
        "refund 2 created",
        "refund of the rest",
        "dispute",
        "dispute lost",
    ]
    expected = {
        "status": DonationStatus.CHARGED_BACK,
        "refunded": AMOUNT,
        "paid": True,
        "dispute": "lost",
        "disputes": ["lost"],
        "refunds": [("refund 1", 2000, "succeeded"), ("refund 2", 3000, "succeeded")],
        "counted": False,
    }
    tried = run_orders(pay_app, pay_client, sim, build, expected)
    METRICS.report(
        f"all refund/dispute events, every order ({backend}), each asserted to "
        "end in the right state",
        tried,
    )
