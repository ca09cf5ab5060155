"""Stripe keeps a 500 under its idempotency key for 24 hours and replays it to every retry
with that key. "Try again" expires the gift's old Checkout Session first; a saved 500 on that
call must not block the donor for a day: the session is read back and Stripe's answer acted
on (open: expired under a key of its own; paid: nothing new opened)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from donorhub.database import utcnow
from donorhub.donations.models import Donation
from donorhub.extensions import db
from tests.payments.stripe_helpers import checkout_url, csrf_from, give, session_id_from


def _near_its_end(app) -> tuple[str, str]:
    """The donor comes back when the session is close to its end: "Try again" opens anew."""
    with app.app_context():
        row = db.session.scalar(select(Donation))
        row.checkout_expires_at = utcnow() + timedelta(minutes=5)
        db.session.commit()
        return row.stripe_checkout_session_id, row.public_id


def _try_again(app, public_id: str):
    client = app.test_client()
    return client.post(
        f"/donate/retry/{public_id}", data={"csrf_token": csrf_from(client, "/donate")}
    )


@pytest.mark.parametrize("old_session", ["open", "paid"])
def test_try_again_after_a_saved_500_on_expiring_the_old_session(
    pay_app, pay_client, sim, old_session, backend
):
    first = checkout_url(give(pay_client, frequency="once"))
    if old_session == "paid":
        assert sim.pay(first)[0] == 303  # paid in another tab; the webhook is not here yet
    sid, public_id = _near_its_end(pay_app)
    sim.fault(path_prefix=f"/v1/checkout/sessions/{sid}/expire", status=500, times=1, saved=True)
    answers = [_try_again(pay_app, public_id) for _ in range(2)]
    expires = [r for r in sim.requests("/v1/checkout/sessions") if r["path"].endswith("/expire")]
    assert expires[0]["outcome"] == "fault"  # the 500 happened, and Stripe keeps it
    if old_session == "open":
        assert [a.status_code for a in answers] == [303, 303]
        assert sim.base_url in answers[0].headers["Location"]
        assert session_id_from(answers[0].headers["Location"]) != sid
        # The old session can no longer be paid: nobody pays twice.
        assert sim.api(f"/v1/checkout/sessions/{sid}")["status"] == "expired"
        assert any(r["outcome"] == "ok" for r in expires)
    else:
        # Paid meanwhile: no new session is opened, the donor is shown the thank-you page.
        for answer in answers:
            assert answer.status_code == 302
            assert sim.base_url not in answer.headers["Location"]
        sessions = sim.control("/_sim/objects?type=checkout.session", method="GET")["objects"]
        assert len(sessions) == 1
