"""A sponsor's new choice (another child, or the same child again near the end of the hold)
expires the stored Checkout Session first. Stripe keeps a 500 on that call under its
idempotency key for 24 hours; it must not block the sponsor for a day."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from donorhub.extensions import db
from donorhub.sponsorship.models import Sponsorship, SponsorshipStatus
from tests.payments.stripe_helpers import session_id_from
from tests.sponsorship.helpers import choose, load_children, signed_in_client
from tests.sponsorship.test_retried_checkout_sessions import _age


@pytest.mark.parametrize("again", ["same child", "another child"])
def test_a_new_choice_after_a_saved_500_on_expiring_the_old_session(
    pay_app, import_feed, sponsor, sim, again, backend
):
    kids = load_children(pay_app, import_feed, 5, updates=False)
    client = signed_in_client(pay_app, sponsor(target_app=pay_app))
    old = session_id_from(choose(client, kids.tokens[0]).headers["Location"])
    _age(pay_app)
    sim.fault(path_prefix=f"/v1/checkout/sessions/{old}/expire", status=500, times=1, saved=True)
    token = kids.tokens[0] if again == "same child" else kids.tokens[1]
    answers = [choose(client, token) for _ in range(2)]
    expires = [r for r in sim.requests("/v1/checkout/sessions") if r["path"].endswith("/expire")]
    assert expires[0]["outcome"] == "fault"
    assert answers[0].status_code == 303, answers[0].get_data(as_text=True)[:300]
    assert sim.base_url in answers[0].headers["Location"]
    assert session_id_from(answers[0].headers["Location"]) != old
    assert answers[1].status_code == 303
    assert sim.api(f"/v1/checkout/sessions/{old}")["status"] == "expired"  # never paid twice
    with pay_app.app_context():
        held = db.session.scalars(
            select(Sponsorship).where(Sponsorship.status == SponsorshipStatus.PENDING)
        ).all()
        assert [row.child.public_token for row in held] == [token]
