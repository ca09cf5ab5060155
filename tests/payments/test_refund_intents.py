"""A staff refund is an intent row committed before Stripe is called: its id is the
idempotency key, a double submit finds it, a lost answer is recovered by reconcile, and an
unanswered refund never blocks the next one. Real simulator, real stripe library."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

from sqlalchemy import func, select, text

from donorhub.donations.models import Donation, DonationStatus, Refund, RefundStatus
from donorhub.extensions import db
from donorhub.payments import gateway as gateway_module
from donorhub.payments.gateway import GatewayError
from tests.campaigns.test_campaigns import staff_client
from tests.helpers import HANG_GUARD_SECONDS, barrier, csrf_token, join_all
from tests.payments.stripe_helpers import Postman, checkout_url, give

FORM_INPUT = re.compile(r'<input[^>]*name="(csrf_token|request_token)"[^>]*value="([^"]*)"')


def paid_gift(app, client, sim) -> tuple[int, int, str]:
    """A £50 gift paid at the simulator, its events delivered: (gift id, donor id, intent)."""
    sim.pay(checkout_url(give(client, amount_choice="custom", custom_amount="50.00")))
    Postman(sim, client).flush()
    with app.app_context():
        gift = db.session.scalar(select(Donation).order_by(Donation.id.desc()))
        assert gift.status is DonationStatus.PAID
        return gift.id, gift.donor_id, gift.stripe_payment_intent_id


def refund_form(client, donor_id: int, gift_id: int) -> dict:
    """The refund form of one gift as the donor page renders it (its hidden fields)."""
    page = client.get(f"/staff/donors/{donor_id}").get_data(as_text=True)
    start = page.index(f"/staff/gifts/{gift_id}/refund")
    form = page[start : page.index("</form>", start)]
    return dict(FORM_INPUT.findall(form))


def refund(client, donor_id, gift_id, amount: str, form: dict | None = None):
    fields = form or refund_form(client, donor_id, gift_id)
    return client.post(
        f"/staff/gifts/{gift_id}/refund",
        data={**fields, "amount": amount, "reason": "requested_by_customer", "note": ""},
    )


def stripe_refunds(sim, intent: str) -> list[dict]:
    return sim.api(f"/v1/refunds?payment_intent={intent}&limit=100")["data"]


def test_double_submit_of_one_refund_form_refunds_once(pay_app, make_user, sim, backend):
    """Two submits of the same rendered form at the same moment (a double-click): one
    refund at Stripe, one row; the second submit is told, and sends nothing."""
    donor_client = pay_app.test_client()
    gift_id, donor_id, intent = paid_gift(pay_app, donor_client, sim)
    first, _ = staff_client(pay_app, make_user)
    second, _ = staff_client(pay_app, make_user)
    form = refund_form(first, donor_id, gift_id)
    form["csrf_token"] = csrf_token(first, f"/staff/donors/{donor_id}")
    other = dict(form, csrf_token=csrf_token(second, f"/staff/donors/{donor_id}"))
    start = barrier(2)
    codes = {}

    def submit(name, client, fields):
        start.wait(timeout=HANG_GUARD_SECONDS)
        codes[name] = refund(client, donor_id, gift_id, "10.00", fields).status_code

    threads = [
        threading.Thread(target=submit, args=("a", first, form)),
        threading.Thread(target=submit, args=("b", second, other)),
    ]
    for thread in threads:
        thread.start()
    join_all(threads)
    assert codes == {"a": 303, "b": 303}
    made = [
        r for r in sim.requests("/v1/refunds") if r["method"] == "POST" and r["outcome"] == "ok"
    ]
    assert len(made) == 1, made
    assert [r["amount"] for r in stripe_refunds(sim, intent)] == [1000]
    with pay_app.app_context():
        rows = db.session.scalars(select(Refund).where(Refund.donation_id == gift_id)).all()
        assert [r.amount_minor for r in rows] == [1000]
        key = rows[0].idempotency_key
        assert key.startswith(f"refund-{rows[0].id}-")
    keys = {r["idempotency_key"] for r in sim.requests("/v1/refunds") if r["method"] == "POST"}
    assert keys == {key}


def test_a_lost_answer_does_not_block_the_next_refund_and_reconcile_recovers_it(
    pay_app, make_user, sim, monkeypatch
):
    """Stripe refunds £10 but its answer never reaches us (a timeout, a worker that died
    before the commit). Staff are told the outcome is unknown; a later £5 refund gets its
    own key and goes through (it used to reuse the first key: 400 for 24 hours); reconcile
    finds the £10 at Stripe by our row id and records it. Each refund happened once."""
    donor_client = pay_app.test_client()
    gift_id, donor_id, intent = paid_gift(pay_app, donor_client, sim)
    staff, _ = staff_client(pay_app, make_user)
    real_refund = gateway_module.StripeGateway.refund

    def answer_lost(self, request):
        real_refund(self, request)  # Stripe does it ...
        raise GatewayError(
            "We could not reach our payment provider.", retryable=True, kind="connection"
        )  # ... and the answer is lost

    monkeypatch.setattr(gateway_module.StripeGateway, "refund", answer_lost)
    page = refund(staff, donor_id, gift_id, "10.00")
    assert page.status_code == 303
    flashed = staff.get(page.headers["Location"]).get_data(as_text=True)
    assert "may or may not have been made" in flashed
    monkeypatch.setattr(gateway_module.StripeGateway, "refund", real_refund)

    assert refund(staff, donor_id, gift_id, "5.00").status_code == 303
    assert sorted(r["amount"] for r in stripe_refunds(sim, intent)) == [500, 1000]
    with pay_app.app_context():
        rows = db.session.scalars(
            select(Refund).where(Refund.donation_id == gift_id).order_by(Refund.id)
        ).all()
        assert [(r.amount_minor, r.status) for r in rows] == [
            (1000, RefundStatus.REQUESTED),
            (500, RefundStatus.SUCCEEDED),
        ]

        from donorhub.database import utcnow
        from donorhub.payments.reconcile import reconcile

        # Without the events (past the lookback, or not delivered): Stripe's list of the
        # payment's refunds, matched by the row id in their metadata.
        report = reconcile(since=utcnow() + timedelta(minutes=1), refund_age=timedelta(0))
        assert (report.refunds_recovered, report.refunds_not_sent, report.failed) == (1, 0, 0)
        rows = db.session.scalars(
            select(Refund).where(Refund.donation_id == gift_id).order_by(Refund.id)
        ).all()
        assert [(r.amount_minor, r.status) for r in rows] == [
            (1000, RefundStatus.SUCCEEDED),
            (500, RefundStatus.SUCCEEDED),
        ]
        gift = db.session.get(Donation, gift_id)
        assert (gift.amount_refunded_minor, gift.status) == (
            1500,
            DonationStatus.PARTIALLY_REFUNDED,
        )
        report = reconcile(refund_age=timedelta(0))  # now the events too: nothing doubles
        assert (report.refunds_recovered, report.failed) == (0, 0)
        gift = db.session.get(Donation, gift_id)
        assert gift.amount_refunded_minor == 1500
        assert (
            db.session.scalar(
                select(func.count()).select_from(Refund).where(Refund.donation_id == gift_id)
            )
            == 2
        )
    assert len(stripe_refunds(sim, intent)) == 2


def test_a_refund_that_never_reached_stripe_frees_its_amount(pay_app, make_user, sim, monkeypatch):
    """The call never left (connection refused): reconcile finds nothing at Stripe under
    our row id, marks it not sent, and the whole gift is refundable again."""
    donor_client = pay_app.test_client()
    gift_id, donor_id, intent = paid_gift(pay_app, donor_client, sim)
    staff, _ = staff_client(pay_app, make_user)

    def unreachable(self, request):
        raise GatewayError(
            "We could not reach our payment provider.", retryable=True, kind="connection"
        )

    monkeypatch.setattr(gateway_module.StripeGateway, "refund", unreachable)
    assert refund(staff, donor_id, gift_id, "50.00").status_code == 303
    monkeypatch.undo()
    with pay_app.app_context():
        from donorhub.donations.refunds import refundable_minor
        from donorhub.payments.reconcile import reconcile

        gift = db.session.get(Donation, gift_id)
        assert refundable_minor(gift) == 0  # held while the outcome is unknown
        report = reconcile(refund_age=timedelta(0))
        assert (report.refunds_recovered, report.refunds_not_sent) == (0, 1)
        row = db.session.scalar(select(Refund).where(Refund.donation_id == gift_id))
        assert row.status is RefundStatus.NOT_SENT
        assert refundable_minor(db.session.get(Donation, gift_id)) == 5000
    assert stripe_refunds(sim, intent) == []
    assert refund(staff, donor_id, gift_id, "50.00").status_code == 303
    assert [r["amount"] for r in stripe_refunds(sim, intent)] == [5000]


def test_a_refund_the_bank_returns_later_is_followed_to_failed(pay_app, make_user, sim):
    """End to end through the simulator: staff refund the whole gift, Stripe confirms it,
    then the card's bank returns it (refund.failed, refund.updated, charge.refund.updated,
    and the charge's amount_refunded drops). The refund row ends failed, the gift is paid
    and counted again, staff see why on the donor page."""
    donor_client = pay_app.test_client()
    gift_id, donor_id, intent = paid_gift(pay_app, donor_client, sim)
    staff, _ = staff_client(pay_app, make_user)
    assert refund(staff, donor_id, gift_id, "50.00").status_code == 303
    postman = Postman(sim, donor_client)
    postman.flush()
    with pay_app.app_context():
        assert db.session.get(Donation, gift_id).status is DonationStatus.REFUNDED
    (made,) = stripe_refunds(sim, intent)
    sim.control(f"/_sim/refunds/{made['id']}/fail")
    assert {"refund.failed", "refund.updated", "charge.refund.updated"} <= set(postman.flush())
    with pay_app.app_context():
        gift = db.session.get(Donation, gift_id)
        assert (gift.status, gift.amount_refunded_minor) == (DonationStatus.PAID, 0)
        row = db.session.scalar(select(Refund).where(Refund.donation_id == gift_id))
        assert (row.status, row.failure_reason) == (RefundStatus.FAILED, "expired_or_canceled_card")
    page = staff.get(f"/staff/donors/{donor_id}").get_data(as_text=True)
    assert "(failed: expired_or_canceled_card)" in page


def test_a_refund_row_id_handed_out_again_after_a_restore_still_refunds(pay_app, make_user, sim):
    """A database restored from a backup hands out refund row ids again, while Stripe keeps
    keys for 24 hours. The row's random part keeps the new refund's key its own: the second
    gift's £10 is refunded at Stripe (with `refund-<row id>` alone, Stripe refused the reused
    key, or, with the same parameters, replayed the old refund and no money moved)."""
    donor_client = pay_app.test_client()
    first_gift, first_donor, _ = paid_gift(pay_app, donor_client, sim)
    second_gift, second_donor, second_intent = paid_gift(pay_app, donor_client, sim)
    staff, _ = staff_client(pay_app, make_user)
    assert refund(staff, first_donor, first_gift, "10.00").status_code == 303
    with pay_app.app_context():
        row = db.session.scalar(select(Refund).where(Refund.donation_id == first_gift))
        used_id, used_key = row.id, row.idempotency_key
        # The restore: the backup predates this refund row, so its id is free again.
        db.session.delete(row)
        db.session.flush()
        if db.engine.dialect.name == "postgresql":
            db.session.execute(
                text("SELECT setval(pg_get_serial_sequence('refunds', 'id'), :next, false)"),
                {"next": used_id},
            )
        db.session.commit()
    assert refund(staff, second_donor, second_gift, "10.00").status_code == 303
    with pay_app.app_context():
        again = db.session.scalar(select(Refund).where(Refund.donation_id == second_gift))
        assert again.id == used_id  # the id was handed out again
        outcome = (
            again.status,
            again.stripe_refund_id is not None,
            again.idempotency_key != used_key,
        )
    assert [r["amount"] for r in stripe_refunds(sim, second_intent)] == [1000]
    assert outcome == (RefundStatus.SUCCEEDED, True, True)
