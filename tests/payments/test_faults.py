"""10.5: Stripe timing out, answering 5xx or 429, or declining while a checkout is created.

Faults are injected by the simulator (/_sim/faults); the app uses the real stripe library
with a short timeout. Every attempt for one gift must carry the same Idempotency-Key,
including the donor's own "Try again".
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from donorhub.donations.models import Donation, DonationStatus
from donorhub.extensions import db
from tests.metrics import METRICS
from tests.payments.stripe_helpers import csrf_from, give

TIMEOUT = 1


@pytest.fixture
def fault_app(app_factory, sim):
    return app_factory(STRIPE_API_BASE=sim.base_url, CSP_FORM_ACTION=[sim.base_url],
                       STRIPE_TIMEOUT_SECONDS=TIMEOUT)


def keys_for_checkout(sim) -> list[str]:
    return [r["idempotency_key"] for r in sim.requests("/v1/checkout/sessions")
            if r["method"] == "POST"]


def wait_until_answered(sim, path_prefix: str, guard: float = 120) -> None:
    """Until the simulator has answered every request it received under `path_prefix` (a
    request is logged when it arrives and given its status when answered). `guard` only
    bounds a request that is never answered."""
    deadline = time.monotonic() + guard
    while any(r["status"] is None for r in sim.requests(path_prefix)):
        assert time.monotonic() < deadline, sim.requests(path_prefix)
        time.sleep(0.02)


CASES = {
    "HTTP 500 x3": {"status": 500, "times": 3},
    "HTTP 429 x3": {"status": 429, "times": 3},
    "delay beyond the timeout x3": {"delay_seconds": TIMEOUT + 1.5, "times": 3},
}


@pytest.mark.parametrize("name", list(CASES))
def test_stripe_api_faults_reuse_the_idempotency_key(fault_app, sim, name):
    client = fault_app.test_client()
    sim.fault(path_prefix="/v1/checkout/sessions", method="POST", **CASES[name])
    started = time.monotonic()
    response = give(client)
    latency = time.monotonic() - started
    page = response.get_data(as_text=True)
    assert response.status_code == 503
    assert "You have not been charged" in page and "Try again" in page
    # (timeout x (retries + 1)) + the library's backoff (0.5 s, 1 s) + 1 s
    assert latency < TIMEOUT * 3 + 1.5 + 1 + 1
    first_attempts = len(keys_for_checkout(sim))
    assert first_attempts <= 3
    with fault_app.app_context():
        donation = db.session.scalar(select(Donation))
        assert donation.status is DonationStatus.PENDING and donation.paid_at is None
        public_id = donation.public_id
    if "delay" in name:  # the slow requests finish at the simulator (we gave up waiting)
        wait_until_answered(sim, "/v1/checkout/sessions")
    sim.clear_faults()  # Stripe has recovered; the donor presses "Try again"
    token = csrf_from(client, "/donate")
    retry = client.post(f"/donate/retry/{public_id}", data={"csrf_token": token})
    assert retry.status_code == 303 and "/checkout/cs_" in retry.headers["Location"]
    keys = keys_for_checkout(sim)
    # Stripe replays a 5xx saved under a key for 24 hours, so after a 5xx the next try
    # takes a new key; a timeout or a 429 (never saved) retries with the same one.
    distinct = 2 if CASES[name].get("status", 0) >= 500 else 1
    assert len(set(keys)) == distinct, keys
    sessions = sim.control("/_sim/objects?type=checkout.session", method="GET")["objects"]
    assert len(sessions) == 1  # never two sessions for one gift
    with fault_app.app_context():
        assert db.session.scalar(select(Donation)).paid_at is None
    METRICS.report(f"10.5 {name}: attempts / distinct keys / first answer (s)",
                   f"{len(keys)} / {distinct} / {latency:.1f}")


def test_a_decline_gives_a_message_and_a_fresh_attempt(fault_app, sim):
    client = fault_app.test_client()
    sim.fault(path_prefix="/v1/checkout/sessions", method="POST", status=402, times=1)
    response = give(client)
    assert response.status_code == 502
    assert "You have not been charged" in response.get_data(as_text=True)
    with fault_app.app_context():
        public_id = db.session.scalar(select(Donation.public_id))
    token = csrf_from(client, "/donate")
    retry = client.post(f"/donate/retry/{public_id}", data={"csrf_token": token})
    assert retry.status_code == 303
    keys = keys_for_checkout(sim)
    # Stripe keeps a refused request's answer under its key, so the next try is a new one.
    assert keys == [f"donation-{public_id}-checkout-1", f"donation-{public_id}-checkout-2"]
    METRICS.report("10.5 card error on create: message shown / next attempt key",
                   "yes / checkout-2")
