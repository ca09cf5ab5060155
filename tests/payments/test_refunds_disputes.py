"""Refunds and disputes are facts about a payment: every order of Stripe's events about them
ends in the same recorded truth, applied through the real webhook view."""

from __future__ import annotations

import itertools
import time
import uuid

from sqlalchemy import select

from donorhub.campaigns.services import COUNTED_STATUSES
from donorhub.donations.models import (
    Dispute,
    DisputeStatus,
    Donation,
    DonationKind,
    DonationStatus,
    Donor,
    GiftAidDeclaration,
    GiftAidScope,
)
from donorhub.extensions import db
from donorhub.staff.models import Refund, RefundStatus
from tests.metrics import METRICS
from tests.payments.stripe_helpers import post_event

AMOUNT = 5000


class Payment:
    """One paid £50 gift's Stripe ids, and Stripe's events about its refunds and disputes,
    shaped as API version 2026-10-28 sends them."""

    def __init__(self, app, *, gift_aid: bool = False):
        suffix = uuid.uuid4().hex[:12]
        self.intent, self.charge = f"pi_{suffix}", f"ch_{suffix}"
        self.dispute = f"dp_{suffix}"
        self.refund_ids = {1: f"re_a{suffix}", 2: f"re_b{suffix}"}
        self.created = int(time.time()) - 600
        with app.app_context():
            donor = db.session.scalar(select(Donor).where(Donor.email == "facts@example.org"))
            if donor is None:
                donor = Donor(email="facts@example.org", full_name="Fact Giver")
            row = Donation(donor=donor, kind=DonationKind.ONCE, amount_minor=AMOUNT,
                           currency="gbp", stripe_payment_intent_id=self.intent)
            if gift_aid:
                row.gift_aid_declaration = GiftAidDeclaration(
                    donor=donor, first_name="Fact", last_name="Giver", house="1",
                    postcode="SW1A 1AA", scope=GiftAidScope.SINGLE, text_version="2026-1")
            db.session.add(row)
            db.session.commit()
            self.row_id, self.public_id = row.id, row.public_id

    def _event(self, kind: str, obj: dict, offset: int) -> dict:
        return {"id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": kind,
                "api_version": "2026-10-28.endive", "created": self.created + offset,
                "livemode": False, "pending_webhooks": 1, "request": {"id": None},
                "data": {"object": obj}}

    def refund(self, n: int, amount: int, status: str = "succeeded") -> dict:
        return {"id": self.refund_ids[n], "object": "refund", "amount": amount,
                "charge": self.charge, "payment_intent": self.intent, "currency": "gbp",
                "created": self.created + n, "metadata": {}, "reason": None,
                "status": status,
                "failure_reason": "expired_or_canceled_card" if status == "failed" else None}

    def charge_refunded(self, refunds: list[dict], offset: int) -> dict:
        total = sum(r["amount"] for r in refunds if r["status"] not in ("failed", "canceled"))
        charge = {"id": self.charge, "object": "charge", "amount": AMOUNT,
                  "amount_captured": AMOUNT, "amount_refunded": total, "currency": "gbp",
                  "payment_intent": self.intent, "status": "succeeded", "paid": True,
                  "captured": True, "refunded": total == AMOUNT, "disputed": False,
                  "metadata": {}, "refunds": {"object": "list", "data": list(reversed(refunds)),
                                              "has_more": False, "total_count": len(refunds),
                                              "url": f"/v1/charges/{self.charge}/refunds"}}
        return self._event("charge.refunded", charge, offset)

    def dispute_event(self, kind: str, status: str, offset: int) -> dict:
        obj = {"id": self.dispute, "object": "dispute", "amount": AMOUNT, "currency": "gbp",
               "charge": self.charge, "payment_intent": self.intent, "status": status,
               "reason": "fraudulent", "is_charge_refundable": False, "metadata": {},
               "created": self.created + 3, "livemode": False}
        return self._event(kind, obj, offset)

    def refund_event(self, kind: str, n: int, amount: int, status: str, offset: int) -> dict:
        return self._event(kind, self.refund(n, amount, status), offset)


def truth(app, row_id: int) -> dict:
    with app.app_context():
        row = db.session.get(Donation, row_id)
        refunds = sorted((r.stripe_refund_id[:4], r.amount_minor, r.status.value)
                         for r in db.session.scalars(select(Refund).where(
                             Refund.donation_id == row_id)))
        disputes = [d.status.value for d in db.session.scalars(select(Dispute).where(
            Dispute.donation_id == row_id))]
        return {"status": row.status, "refunded": row.amount_refunded_minor,
                "paid": row.paid_at is not None, "dispute": row.dispute_status,
                "disputes": disputes, "refunds": refunds,
                "counted": row.status in COUNTED_STATUSES}


def run_orders(app, client, build, expected_for) -> tuple[int, int]:
    """Deliver every permutation of the events `build(payment)` returns, each to a fresh
    gift; return (orders tried, wrong final states)."""
    tried = wrong = 0
    names = build.names
    for order in itertools.permutations(range(len(names))):
        payment = Payment(app)
        events = build(payment)
        codes = [post_event(client, events[i]).status_code for i in order]
        got = truth(app, payment.row_id)
        tried += 1
        ok = codes == [200] * len(order) and got == expected_for
        wrong += 0 if ok else 1
        assert ok, ([names[i] for i in order], codes, got, expected_for)
    return tried, wrong


def _closing(outcome: str):
    def build(p: Payment) -> list[dict]:
        first, rest = p.refund(1, 2000), p.refund(2, 3000)
        return [p.charge_refunded([first], 10),
                p.charge_refunded([first, rest], 20),
                p.dispute_event("charge.dispute.created", "needs_response", 30),
                p.dispute_event("charge.dispute.closed", outcome, 40)]
    build.names = ["partial refund", "refund of the rest", "dispute", f"dispute {outcome}"]
    return build


def test_refunds_and_disputes_in_every_order_end_in_one_truth(pay_app, pay_client, backend):
    """A partial refund, a refund of the rest, a dispute and its outcome (won or lost), in
    all 24 orders each: the refund before the dispute used to be refused for good (500)."""
    totals = [0, 0]
    for outcome, status in (("lost", DonationStatus.CHARGED_BACK),
                            ("won", DonationStatus.REFUNDED)):
        expected = {"status": status, "refunded": AMOUNT, "paid": True, "dispute": outcome,
                    "disputes": [outcome],
                    "refunds": [("re_a", 2000, "succeeded"), ("re_b", 3000, "succeeded")],
                    "counted": status in COUNTED_STATUSES}
        tried, wrong = run_orders(pay_app, pay_client, _closing(outcome), expected)
        totals[0] += tried
        totals[1] += wrong
    METRICS.report(f"refund/dispute event orders ({backend}): tried / wrong final states",
                   f"{totals[0]} / {totals[1]}")


def test_a_failed_refund_in_any_order_no_longer_counts(pay_app, pay_client, backend):
    """Two refunds, the second of which fails later (under each of the two names Stripe
    uses for it), and an open dispute: every order ends with only the first refund counted,
    the failure recorded, and the gift shown as disputed."""
    tried = wrong = 0
    for failure in ("refund.failed", "charge.refund.updated"):
        def build(p: Payment, failure=failure) -> list[dict]:
            first, rest = p.refund(1, 2000), p.refund(2, 3000)
            return [p.charge_refunded([first], 10),
                    p.charge_refunded([first, rest], 20),
                    p.refund_event(failure, 2, 3000, "failed", 30),
                    p.dispute_event("charge.dispute.created", "needs_response", 40)]
        build.names = ["partial refund", "refund of the rest", failure, "dispute"]
        expected = {"status": DonationStatus.DISPUTED, "refunded": 2000, "paid": True,
                    "dispute": "open", "disputes": ["needs_response"],
                    "refunds": [("re_a", 2000, "succeeded"), ("re_b", 3000, "failed")],
                    "counted": False}
        done = run_orders(pay_app, pay_client, build, expected)
        tried, wrong = tried + done[0], wrong + done[1]
    METRICS.report(f"failed-refund event orders ({backend}): tried / wrong final states",
                   f"{tried} / {wrong}")


def test_a_failed_refund_gives_the_gift_back_its_count_and_tells_staff(pay_app, pay_client):
    """A full refund that fails: the gift is paid (counted) again and staff see why."""
    p = Payment(pay_app)
    refund = p.refund(1, AMOUNT)
    assert post_event(pay_client, p.charge_refunded([refund], 10)).status_code == 200
    assert truth(pay_app, p.row_id)["status"] is DonationStatus.REFUNDED
    assert post_event(pay_client, p.refund_event("refund.updated", 1, AMOUNT, "failed",
                                                 20)).status_code == 200
    got = truth(pay_app, p.row_id)
    assert got["status"] is DonationStatus.PAID and got["refunded"] == 0 and got["counted"]
    with pay_app.app_context():
        from donorhub.staff.models import AuditEvent

        row = db.session.scalar(select(Refund).where(Refund.donation_id == p.row_id))
        assert row.status is RefundStatus.FAILED
        assert row.failure_reason == "expired_or_canceled_card"
        assert db.session.scalar(select(AuditEvent).where(
            AuditEvent.action == "donation.refund_failed",
            AuditEvent.subject_id == p.row_id)) is not None


def test_a_dispute_never_moves_back(pay_app, pay_client):
    """A late "created" (needs_response) after the dispute was lost changes nothing."""
    p = Payment(pay_app)
    for kind, status in (("charge.dispute.closed", "lost"),
                         ("charge.dispute.updated", "under_review"),
                         ("charge.dispute.created", "needs_response")):
        assert post_event(pay_client, p.dispute_event(kind, status, 5)).status_code == 200
    got = truth(pay_app, p.row_id)
    assert got["disputes"] == [DisputeStatus.LOST.value]
    assert got["status"] is DonationStatus.CHARGED_BACK


def test_gift_aid_and_totals_follow_the_facts(pay_app, pay_client):
    """Gift Aid claims and campaign-style totals read the derived status: a gift refunded
    and then charged back is never claimed nor counted; one whose only refund failed is
    claimable and counted in full again; an open dispute holds the gift out of both."""
    from datetime import date, timedelta

    from donorhub.campaigns.services import net_gift_expression
    from donorhub.donations.services import claimable_gifts

    lost, failed, disputed = (Payment(pay_app, gift_aid=True) for _ in range(3))
    events = [lost.charge_refunded([lost.refund(1, AMOUNT)], 10),
              lost.dispute_event("charge.dispute.closed", "lost", 20),
              failed.charge_refunded([failed.refund(1, AMOUNT)], 10),
              failed.refund_event("refund.updated", 1, AMOUNT, "failed", 20),
              disputed.dispute_event("charge.dispute.created", "needs_response", 10)]
    assert [post_event(pay_client, e).status_code for e in events] == [200] * 5
    with pay_app.app_context():
        today = date.today()
        claimable = {g.id for g in claimable_gifts(today - timedelta(days=2),
                                                   today + timedelta(days=1))}
        counted = dict(db.session.execute(select(Donation.id, net_gift_expression())).all())
    assert claimable == {failed.row_id}
    assert (counted[lost.row_id], counted[failed.row_id], counted[disputed.row_id]) == (
        0, AMOUNT, 0)


def test_staff_see_a_dispute_of_a_refunded_gift(pay_app, pay_client, make_user):
    """The case that used to answer 500 for good: refunded in full, then disputed. Staff see
    it on the donor page and in the list of gifts that need a person."""
    from tests.campaigns.test_campaigns import staff_client

    p = Payment(pay_app)
    for event in (p.charge_refunded([p.refund(1, AMOUNT)], 10),
                  p.dispute_event("charge.dispute.created", "needs_response", 20)):
        assert post_event(pay_client, event).status_code == 200
    with pay_app.app_context():
        donor_id = db.session.get(Donation, p.row_id).donor_id
    staff, _ = staff_client(pay_app, make_user)
    page = staff.get(f"/staff/donors/{donor_id}").get_data(as_text=True)
    assert "dispute £50.00 (needs response)" in page and ">disputed<" in page
    listed = staff.get("/staff/donations").get_data(as_text=True)
    assert f"<td>#{p.row_id}</td><td>£50.00</td><td>disputed</td>" in listed
