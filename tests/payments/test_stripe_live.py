"""The same gateway calls against Stripe's test mode, when STRIPE_TEST_SECRET_KEY is set.

Skipped otherwise (this machine has no route to Stripe). Nothing here can move real money:
only a key starting with sk_test_ is accepted.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest

from donorhub.payments.gateway import CheckoutRequest, StripeGateway

KEY = os.environ.get("STRIPE_TEST_SECRET_KEY", "")
pytestmark = [
    pytest.mark.stripe_live,
    pytest.mark.skipif(
        not KEY.startswith("sk_test_"), reason="STRIPE_TEST_SECRET_KEY (sk_test_...) is not set"
    ),
]


@pytest.fixture
def live_gateway():
    return StripeGateway(
        secret_key=KEY,
        api_base="",
        webhook_secret="whsec_unused",
        timeout_seconds=10,
        max_network_retries=2,
        tolerance_seconds=300,
        production=False,
    )


@pytest.mark.parametrize("mode, interval", [("payment", None), ("subscription", "month")])
def test_checkout_is_created_once_per_key_in_test_mode(live_gateway, mode, interval):
    ref = uuid.uuid4().hex
    request = CheckoutRequest(
        idempotency_key=f"donation-{ref}-checkout-1",
        mode=mode,
        amount_minor=2500,
        currency="gbp",
        product_name="Monthly donation" if interval else "Donation",
        success_url="https://example.org/thanks?session_id={CHECKOUT_SESSION_ID}",
        cancel_url="https://example.org/cancelled",
        expires_at=int(time.time()) + 3600,
        customer_email="stripe-live-test@example.org",
        metadata={"donation": ref},
        interval=interval,
    )
    first = live_gateway.create_checkout(request)
    again = live_gateway.create_checkout(request)  # an app-level retry: same key
    assert first.id == again.id and first.url.startswith("https://checkout.stripe.com/")
    live_gateway.expire_checkout(first.id)


def test_events_can_be_listed_for_reconciliation(live_gateway):
    events = [r.event for r in live_gateway.list_events(int(time.time()) - 3600)]
    assert all(event.id.startswith("evt_") for event in events)
