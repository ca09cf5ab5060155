"""10.5: Stripe timing out, answering 5xx or 429, or declining while a checkout is created.

Faults are injected by the simulator (/_sim/faults); the app uses the real stripe library
with a short timeout. Every attempt for one gift must carry the same Idempotency-Key,
including the donor's own "Try again".
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import select

from donorhub.donations.models import Donation, DonationStatus
from donorhub.extensions import db
from tests.metrics import METRICS
from tests.payments.stripe_helpers import csrf_from, give, http

TIMEOUT = 1


@pytest.fixture
def fault_app(app_factory, sim):
    return app_factory(
        STRIPE_API_BASE=sim.base_url, CSP_FORM_ACTION=[sim.base_url], STRIPE_TIMEOUT_SECONDS=TIMEOUT
    )


def keys_for_checkout(sim) -> list[str]:
    return [
        r["idempotency_key"] for r in sim.requests("/v1/checkout/sessions") if r["method"] == "POST"
    ]


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
    METRICS.report(
        f"10.5 {name}: attempts / distinct keys / first answer (s)",
        f"{len(keys)} / {distinct} / {latency:.1f}",
    )


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


def test_a_fault_for_one_method_leaves_the_other_methods_alone(sim):
    """Sim.fault(method=...) is the simulator's filter, not the HTTP method of the call that
    adds the fault: reads of the same path go through, the write takes the fault."""
    sim.fault(path_prefix="/v1/checkout/sessions", method="POST", status=500, times=1)
    assert [f["method"] for f in sim.control("/_sim/faults", method="GET")["faults"]] == ["POST"]
    status, _, text = http(
        "GET", f"{sim.base_url}/v1/checkout/sessions/cs_test_none", key="sk_test_tests"
    )
    assert (status, "resource_missing") == (404, json.loads(text)["error"]["code"])  # a GET
    status, _, _ = http(
        "POST", f"{sim.base_url}/v1/checkout/sessions", form={}, key="sk_test_tests"
    )
    assert status == 500
    assert sim.control("/_sim/faults", method="GET")["faults"] == []


@pytest.mark.parametrize("hold_at", ["call", "answer"])
def test_a_hold_keeps_a_call_waiting_until_the_test_releases_it(sim, hold_at):
    """The test, not a clock, decides when Stripe acts (hold_at=call) or answers
    (hold_at=answer)."""
    sim.fault(path_prefix="/v1/events", method="GET", hold="gate", hold_at=hold_at)
    answers: list[int] = []
    caller = threading.Thread(
        target=lambda: answers.append(
            http("GET", f"{sim.base_url}/v1/events", key="sk_test_tests")[0]
        )
    )
    caller.start()
    try:
        assert sim.hold("gate", "wait") == {"hold": "gate", "arrived": 1, "released": 0, "done": 0}
        assert [r["status"] for r in sim.requests("/v1/events")] == [None]
        assert not answers
    finally:
        state = sim.hold("gate", "release")
        caller.join(120)
    assert not caller.is_alive(), "the held call never came back"
    assert state["done"] == 1 and answers == [200]
    assert [r["status"] for r in sim.requests("/v1/events")] == [200]
