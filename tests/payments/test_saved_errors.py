"""Stripe saves the answer of a request whose execution began, a 500 included, under its
idempotency key and replays it to every retry with that key for 24 hours. The simulator does
the same (a `saved` fault), and the app's retries work with it: after a 5xx the next try
takes a new key, once the first is known to have taken no effect."""

from __future__ import annotations

import json

from sqlalchemy import select

from donorhub.donations.models import Donation, Refund, RefundStatus
from donorhub.extensions import db
from tests.campaigns.test_campaigns import staff_client
from tests.payments.stripe_helpers import checkout_url, csrf_from, give
from tests.payments.test_refund_intents import paid_gift, refund, stripe_refunds


def test_the_simulator_replays_a_saved_500_to_the_same_key_only(pay_app, sim):
    donor_client = pay_app.test_client()
    _gift_id, _donor_id, intent = paid_gift(pay_app, donor_client, sim)
    sim.fault(path_prefix="/v1/refunds", method="POST", status=500, times=1, saved=True)
    form = {"payment_intent": intent, "amount": "700"}
    url = f"{sim.base_url}/v1/refunds"
    answers = [_post(url, form, "key-a") for _ in range(3)]
    assert [status for status, _replayed, _body in answers] == [500, 500, 500]
    assert [replayed for _status, replayed, _body in answers] == [None, "true", "true"]
    assert answers[1][2] == answers[0][2]  # the very same body
    assert stripe_refunds(sim, intent) == []  # a saved 500 made no refund
    status, _replayed, body = _post(url, form, "key-b")
    assert status == 200 and json.loads(body)["amount"] == 700
    outcomes = [r["outcome"] for r in sim.requests("/v1/refunds") if r["method"] == "POST"]
    assert outcomes == ["fault", "replayed", "replayed", "ok"]


def _post(url: str, form: dict, key: str) -> tuple[int, str | None, str]:
    import urllib.error
    import urllib.parse
    import urllib.request

    request = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(form).encode(),
        method="POST",
        headers={
            "Authorization": "Bearer sk_test_tests",
            "Idempotency-Key": key,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            return (
                response.status,
                response.headers.get("Idempotent-Replayed"),
                response.read().decode(),
            )
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers.get("Idempotent-Replayed"), error.read().decode()


def test_a_refund_answered_with_a_saved_500_is_settled_at_once_and_can_be_made_again(
    pay_app, make_user, sim
):
    """Stripe answers the refund with a 500 it keeps under the key: every retry with that
    key (the library's own included) gets the same 500. DonorHub asks Stripe at once,
    finds no refund under our row id, tells staff nothing was refunded, and the next
    refund goes out under a new key: one refund at Stripe."""
    donor_client = pay_app.test_client()
    gift_id, donor_id, intent = paid_gift(pay_app, donor_client, sim)
    staff, _ = staff_client(pay_app, make_user)
    sim.fault(path_prefix="/v1/refunds", method="POST", status=500, times=1, saved=True)
    page = refund(staff, donor_id, gift_id, "20.00")
    assert page.status_code == 303
    said = staff.get(page.headers["Location"]).get_data(as_text=True)
    assert "made no refund. You can refund again." in said
    with pay_app.app_context():
        row = db.session.scalar(select(Refund).where(Refund.donation_id == gift_id))
        assert row.status is RefundStatus.NOT_SENT
    assert refund(staff, donor_id, gift_id, "20.00").status_code == 303
    assert [r["amount"] for r in stripe_refunds(sim, intent)] == [2000]
    with pay_app.app_context():
        rows = db.session.scalars(
            select(Refund).where(Refund.donation_id == gift_id).order_by(Refund.id)
        ).all()
        assert [r.status for r in rows] == [RefundStatus.NOT_SENT, RefundStatus.SUCCEEDED]
        assert len({r.idempotency_key for r in rows}) == 2


def test_checkout_after_a_saved_500_tries_again_with_a_new_key(pay_app, sim):
    """Opening Checkout got a saved 500: "Try again" used to send the same key and get the
    same 500 back for 24 hours. Now the attempt moves on; one session, which opens."""
    client = pay_app.test_client()
    sim.fault(path_prefix="/v1/checkout/sessions", method="POST", status=500, times=1, saved=True)
    assert give(client).status_code == 503
    with pay_app.app_context():
        public_id = db.session.scalar(select(Donation.public_id))
    token = csrf_from(client, "/donate")
    url = checkout_url(client.post(f"/donate/retry/{public_id}", data={"csrf_token": token}))
    assert "/checkout/cs_" in url
    keys = [
        r["idempotency_key"] for r in sim.requests("/v1/checkout/sessions") if r["method"] == "POST"
    ]
    assert set(keys) == {f"donation-{public_id}-checkout-1", f"donation-{public_id}-checkout-2"}
    sessions = sim.control("/_sim/objects?type=checkout.session", method="GET")["objects"]
    assert len(sessions) == 1
