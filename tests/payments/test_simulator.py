"""The local Stripe simulator, driven through the real stripe library over HTTP.

Each test starts its own simulator (in-memory state) and, where it needs webhooks, a tiny
receiver that verifies signatures with stripe's own ``construct_event``.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import stripe
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from stripe_simulator import start_simulator
from stripe_simulator.objects import API_VERSION
from stripe_simulator.params import decode_params
from tests.helpers import HANG_GUARD_SECONDS
from tests.payments.stripe_helpers import http

SECRET = "whsec_test_simulator_secret"
FIXTURES = Path(__file__).parents[2] / "stripe_simulator/fixtures.json"
FAST_RETRIES = (0.05, 0.1, 0.2, 0.4)


# --- helpers -----------------------------------------------------------------------------


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass


class WebhookReceiver:
    """A tiny webhook endpoint: verifies each signature like DonorHub's view must."""

    def __init__(self) -> None:
        self.events: list[stripe.Event] = []
        self.payloads: list[tuple[bytes, str]] = []
        self.fail_next = 0  # answer 500 to this many deliveries first
        self._cond = threading.Condition()
        self._verifier = stripe.StripeClient("sk_test_receiver")
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=_Quiet)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_port}/stripe/webhook"

    def _app(self, environ, start_response):
        request = Request(environ)
        raw = request.get_data()
        signature = request.headers.get("Stripe-Signature", "")
        with self._cond:
            if self.fail_next:
                self.fail_next -= 1
                return Response("try again", 500)(environ, start_response)
        try:
            event = self._verifier.construct_event(raw, signature, SECRET)
        except stripe.SignatureVerificationError:
            return Response("bad signature", 400)(environ, start_response)
        with self._cond:
            self.events.append(event)
            self.payloads.append((raw, signature))
            self._cond.notify_all()
        return Response("ok", 200)(environ, start_response)

    def wait_for(self, event_type: str, predicate=lambda e: True, timeout: float = 120):
        """The first matching event, as soon as it arrives; `timeout` only bounds a webhook
        that never comes (a busy machine must not fail a delivery that is on its way)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events:
                    if event.type == event_type and predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [e.type for e in self.events]
                    raise AssertionError(f"no {event_type} webhook; received {seen}")
                self._cond.wait(remaining)

    def types(self) -> list[str]:
        with self._cond:
            return [e.type for e in self.events]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=HANG_GUARD_SECONDS)


def control(sim, path: str, method: str = "POST", **body: Any) -> dict:
    status, _, text = http(
        method, f"{sim.base_url}{path}", json_body=body if method == "POST" else None
    )
    assert status == 200, text
    return json.loads(text)


def raw_get(sim, path: str) -> dict:
    """The exact JSON the API returns, without stripe-python's object layer."""
    status, _, text = http("GET", f"{sim.base_url}{path}", key="sk_test_raw")
    assert status == 200, text
    return json.loads(text)


def pay(session, outcome: str = "succeed", **fields: str) -> tuple[int, str]:
    status, headers, _ = http("POST", f"{session.url}/pay", form={"outcome": outcome, **fields})
    return status, headers.get("Location", "")


def page(url: str) -> str:
    status, _, text = http("GET", url)
    assert status == 200, text
    return text


def gift_params(**overrides: Any) -> dict:
    params = {
        "mode": "payment",
        "success_url": "http://127.0.0.1:5000/give/thanks?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://127.0.0.1:5000/give",
        "customer_email": "donor@example.org",
        "client_reference_id": "gift-42",
        "submit_type": "donate",
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": "gbp",
                    "unit_amount": 2500,
                    "product_data": {"name": "Gift to the general fund"},
                },
            }
        ],
        "metadata": {"gift_id": "42", "kind": "one_off"},
        "payment_intent_data": {"metadata": {"gift_id": "42"}},
    }
    params.update(overrides)
    return params


def plan_params(**overrides: Any) -> dict:
    params = {
        "mode": "subscription",
        "success_url": "http://127.0.0.1:5000/give/thanks?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://127.0.0.1:5000/give",
        "customer_email": "sponsor@example.org",
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": "gbp",
                    "unit_amount": 3000,
                    "recurring": {"interval": "month"},
                    "product_data": {"name": "Monthly sponsorship"},
                },
            }
        ],
        "metadata": {"plan_id": "7"},
        "subscription_data": {"metadata": {"plan_id": "7", "kind": "sponsorship"}},
    }
    params.update(overrides)
    return params


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def receiver():
    r = WebhookReceiver()
    yield r
    r.close()


@pytest.fixture
def sim(receiver):
    with start_simulator(receiver.url, SECRET, webhook_retry_delays=FAST_RETRIES) as running:
        yield running


@pytest.fixture
def quiet_sim():
    """No webhooks: events are read back from /v1/events."""
    with start_simulator(deliver_webhooks=False) as running:
        yield running


def _client(base_url: str, retries: int = 0) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_simulator",
        base_addresses={"api": base_url},
        max_network_retries=retries,
        http_client=stripe.RequestsClient(timeout=5),
    )


@pytest.fixture
def api(sim):
    c = _client(sim.base_url)
    yield c
    c._requestor._get_http_client().close()


@pytest.fixture
def quiet_api(quiet_sim):
    c = _client(quiet_sim.base_url)
    yield c
    c._requestor._get_http_client().close()


# --- key sets ----------------------------------------------------------------------------

# Where the fixture cannot speak for the whole shape: user content, polymorphic payloads,
# and error/next-action hashes for which the fixture lists only the required ``type``.
_FREE_FORM = {"metadata", "previous_attributes", "last_payment_error", "next_action"}


def key_differences(fixture: Any, ours: Any, path: str = "") -> list[str]:
    """Recursive key-set comparison wherever both sides hold a dict (or a list of dicts)."""
    problems = []
    if isinstance(fixture, dict) and isinstance(ours, dict):
        if set(fixture) != set(ours):
            problems.append(
                f"{path or '<top>'}: missing {sorted(set(fixture) - set(ours))}, "
                f"extra {sorted(set(ours) - set(fixture))}"
            )
        for key in set(fixture) & set(ours):
            if key in _FREE_FORM or (path == "data" and key == "object"):
                continue
            problems += key_differences(fixture[key], ours[key], f"{path}.{key}".lstrip("."))
    elif isinstance(fixture, list) and isinstance(ours, list) and fixture and ours:
        problems += key_differences(fixture[0], ours[0], f"{path}[0]")
    return problems


def test_every_object_type_has_the_fixture_key_set(quiet_sim, quiet_api):
    c = quiet_api
    customer = c.v1.customers.create(params={"email": "donor@example.org"})
    gift = c.v1.checkout.sessions.create(
        params=gift_params(customer_email=None, customer=customer.id)
    )
    assert pay(gift)[0] == 303
    gift = raw_get(quiet_sim, f"/v1/checkout/sessions/{gift.id}")
    intent = raw_get(quiet_sim, f"/v1/payment_intents/{gift['payment_intent']}")
    refund = c.v1.refunds.create(params={"payment_intent": intent["id"], "amount": 500})
    # The fixture shows `refunds` expanded; a Charge has it only when asked for (below).
    charge = raw_get(quiet_sim, f"/v1/charges/{intent['latest_charge']}?expand[]=refunds")
    dispute = control(quiet_sim, f"/_sim/charges/{charge['id']}/dispute")

    plan = c.v1.checkout.sessions.create(params=plan_params())
    assert pay(plan)[0] == 303
    plan = raw_get(quiet_sim, f"/v1/checkout/sessions/{plan.id}")
    sub = raw_get(quiet_sim, f"/v1/subscriptions/{plan['subscription']}")
    invoice = raw_get(quiet_sim, f"/v1/invoices/{plan['invoice']}")
    item = sub["items"]["data"][0]
    portal = c.v1.billing_portal.sessions.create(
        params={"customer": plan["customer"], "return_url": "http://127.0.0.1:5000/account"}
    )
    payments = raw_get(quiet_sim, f"/v1/invoice_payments?invoice={invoice['id']}")
    line_items = raw_get(quiet_sim, f"/v1/checkout/sessions/{plan['id']}/line_items")
    deleted = c.v1.customers.delete(customer.id)
    event = raw_get(quiet_sim, "/v1/events?limit=1")["data"][0]

    ours = {
        "checkout.session": gift,
        "payment_intent": intent,
        "charge": charge,
        "refund": raw_get(quiet_sim, f"/v1/refunds/{refund.id}"),
        "dispute": dispute,
        "subscription": sub,
        "subscription_item": item,
        "price": raw_get(quiet_sim, f"/v1/prices/{item['price']['id']}"),
        "plan": item["plan"],
        "product": raw_get(quiet_sim, f"/v1/products/{item['price']['product']}"),
        "invoice": invoice,
        "invoice_payment": payments["data"][0],
        "item": line_items["data"][0],
        "customer": raw_get(quiet_sim, f"/v1/customers/{plan['customer']}"),
        "deleted_customer": deleted.to_dict(),
        "billing_portal.session": portal.to_dict(),
        "event": event,
    }
    fixtures = json.loads(FIXTURES.read_text())["resources"]
    assert set(ours) == set(fixtures)
    problems = {name: key_differences(fixtures[name], obj) for name, obj in ours.items()}
    # invoice_payment.payment names the PaymentIntent, which the fixture leaves out.
    problems["invoice_payment"] = [
        p
        for p in problems["invoice_payment"]
        if p != "payment: missing [], extra ['payment_intent']"
    ]
    assert {name: found for name, found in problems.items() if found} == {}
    assert all(obj.get("livemode") in (False, None) for obj in ours.values())
    assert event["api_version"] == API_VERSION == stripe.api_version


# --- checkout, payment mode ------------------------------------------------------------


def test_payment_checkout_sends_signed_events_with_our_metadata(sim, api, receiver):
    session = api.v1.checkout.sessions.create(
        params=gift_params(), options={"idempotency_key": "gift-42-checkout"}
    )
    assert session.url == f"{sim.base_url}/checkout/{session.id}"
    assert session.status == "open" and session.payment_intent is None

    text = page(session.url)
    assert "Test payment: no money moves" in text
    assert "£25.00" in text and "Gift to the general fund" in text
    assert "<script" not in text and "style=" not in text

    status, location = pay(session, name="A Donor")
    assert status == 303
    assert location == f"http://127.0.0.1:5000/give/thanks?session={session.id}"

    completed = receiver.wait_for("checkout.session.completed")
    obj = completed.data.object
    assert obj.id == session.id and obj.status == "complete" and obj.payment_status == "paid"
    assert obj.metadata.to_dict() == {"gift_id": "42", "kind": "one_off"}
    assert obj.client_reference_id == "gift-42"
    assert obj.customer_details.email == "donor@example.org"
    assert obj.customer is None  # payment mode without customer_creation=always, like Stripe
    assert completed.request.idempotency_key is None  # the payer acted, not our API call
    assert completed.api_version == API_VERSION

    succeeded = receiver.wait_for("payment_intent.succeeded")
    assert succeeded.data.object.metadata.to_dict() == {"gift_id": "42"}
    charge = receiver.wait_for("charge.succeeded").data.object
    assert charge.metadata.to_dict() == {"gift_id": "42"} and charge.amount == 2500
    types = receiver.types()
    assert types.index("checkout.session.completed") < types.index("payment_intent.succeeded")

    # The signature covers the exact bytes: one changed byte fails verification.
    raw, signature = receiver.payloads[0]
    with pytest.raises(stripe.SignatureVerificationError):
        api.construct_event(raw.replace(b"complete", b"c0mplete"), signature, SECRET)

    # A finished session's page no longer takes payments.
    assert "This payment is complete" in page(session.url)


def test_decline_then_authentication_on_the_checkout_page(sim, api, receiver):
    session = api.v1.checkout.sessions.create(params=gift_params())

    status, location = pay(session, "decline")
    assert status == 303 and location.endswith("?error=card_declined")
    assert "Your card was declined" in page(location)
    failed = receiver.wait_for("payment_intent.payment_failed")
    assert failed.data.object.last_payment_error.decline_code == "generic_decline"
    assert api.v1.checkout.sessions.retrieve(session.id).status == "open"

    status, location = pay(session, "requires_action")
    assert location == f"{session.url}/authenticate"
    assert "Fail authentication" in page(location)
    status, _, _ = http("POST", location, form={"result": "fail"})
    assert "unable to authenticate" in page(f"{session.url}?error=authentication_failed")

    pay(session, "requires_action")
    status, headers, _ = http("POST", f"{session.url}/authenticate", form={"result": "pass"})
    assert status == 303 and headers["Location"].startswith("http://127.0.0.1:5000/give/thanks")
    receiver.wait_for("checkout.session.completed")
    intent = api.v1.payment_intents.retrieve(
        api.v1.checkout.sessions.retrieve(session.id).payment_intent
    )
    assert intent.status == "succeeded"


def test_expire_and_async_payment(sim, api, receiver):
    session = api.v1.checkout.sessions.create(params=gift_params())
    expired = api.v1.checkout.sessions.expire(session.id)
    assert expired.status == "expired" and expired.url is None
    receiver.wait_for("checkout.session.expired")
    assert "expired" in page(session.url)
    with pytest.raises(stripe.InvalidRequestError, match="status in"):
        api.v1.checkout.sessions.expire(session.id)

    bank = api.v1.checkout.sessions.create(params=gift_params())
    control(sim, f"/_sim/sessions/{bank.id}/async", outcome="succeeded")
    completed = receiver.wait_for(
        "checkout.session.completed", lambda e: e.data.object.id == bank.id
    )
    assert completed.data.object.payment_status == "unpaid"
    settled = receiver.wait_for("checkout.session.async_payment_succeeded")
    assert settled.data.object.payment_status == "paid"


# --- subscriptions ---------------------------------------------------------------------


def test_subscription_lifecycle(sim, api, receiver):
    session = api.v1.checkout.sessions.create(params=plan_params())
    assert pay(session, email="ignored@example.org")[0] == 303

    paid = receiver.wait_for("invoice.paid").data.object
    sub_id = paid.parent.subscription_details.subscription
    assert sub_id.startswith("sub_")
    assert paid.parent.subscription_details.metadata.to_dict() == {
        "plan_id": "7",
        "kind": "sponsorship",
    }
    assert paid.billing_reason == "subscription_create" and paid.amount_paid == 3000
    assert paid.subscription is None  # the legacy field: use parent.subscription_details
    receiver.wait_for("invoice.payment_succeeded")
    created = receiver.wait_for("customer.subscription.created").data.object
    assert created.id == sub_id and created.status == "active"
    assert created.metadata.to_dict() == {"plan_id": "7", "kind": "sponsorship"}
    completed = receiver.wait_for("checkout.session.completed").data.object
    assert completed.subscription == sub_id and completed.invoice == paid.id
    first_end = created["items"].data[0].current_period_end

    # Renewal: the next period and a paid invoice.
    control(sim, f"/_sim/subscriptions/{sub_id}/renew")
    renewal = receiver.wait_for(
        "invoice.paid", lambda e: e.data.object.billing_reason == "subscription_cycle"
    )
    assert renewal.data.object.lines.data[0].period.start == first_end
    sub = api.v1.subscriptions.retrieve(sub_id)
    assert sub["items"].data[0].current_period_start == first_end

    # A failed renewal: invoice.payment_failed, then past_due.
    result = control(sim, f"/_sim/subscriptions/{sub_id}/renew", fail=1)
    failed = receiver.wait_for("invoice.payment_failed").data.object
    assert failed.id == result["invoice"]["id"] and failed.status == "open"
    assert failed.attempt_count == 1 and failed.next_payment_attempt
    past_due = receiver.wait_for(
        "customer.subscription.updated", lambda e: e.data.object.status == "past_due"
    )
    assert past_due.data.previous_attributes.status == "active"
    # The reason lives on the PaymentIntent, reached through the invoice's payments.
    payments = api.v1.invoice_payments.list(
        params={"invoice": failed.id, "expand": ["data.payment.payment_intent"]}
    )
    reason = payments.data[0].payment.payment_intent.last_payment_error.message
    assert reason == "Your card has insufficient funds."

    control(sim, f"/_sim/invoices/{failed.id}/pay")
    receiver.wait_for(
        "customer.subscription.updated",
        lambda e: (
            e.data.object.status == "active"
            and e.data.previous_attributes.to_dict().get("status") == "past_due"
        ),
    )

    # Change the amount: a new inline price on the same product.
    item = sub["items"].data[0]
    updated = api.v1.subscriptions.update(
        sub_id,
        params={
            "items": [
                {
                    "id": item.id,
                    "price_data": {
                        "currency": "gbp",
                        "unit_amount": 4500,
                        "product": item.price.product,
                        "recurring": {"interval": "month"},
                    },
                }
            ],
            "proration_behavior": "none",
            "metadata": {"kind": ""},  # "" deletes one key, as in Stripe
        },
    )
    assert updated["items"].data[0].price.unit_amount == 4500
    assert updated.metadata.to_dict() == {"plan_id": "7"}
    receiver.wait_for(
        "customer.subscription.updated",
        lambda e: e.data.object["items"].data[0].price.unit_amount == 4500,
    )

    # Pause: renewals make void invoices; resume with pause_collection="".
    paused = api.v1.subscriptions.update(sub_id, params={"pause_collection": {"behavior": "void"}})
    assert paused.pause_collection.behavior == "void"
    control(sim, f"/_sim/subscriptions/{sub_id}/renew")
    voided = receiver.wait_for("invoice.voided").data.object
    assert voided.amount_paid == 0
    resumed = api.v1.subscriptions.update(sub_id, params={"pause_collection": ""})
    assert resumed.pause_collection is None

    # Cancel now.
    canceled = api.v1.subscriptions.cancel(sub_id)
    assert canceled.status == "canceled" and canceled.canceled_at
    deleted = receiver.wait_for("customer.subscription.deleted").data.object
    assert deleted.id == sub_id
    with pytest.raises(stripe.InvalidRequestError):
        api.v1.subscriptions.update(sub_id, params={"pause_collection": ""})


def test_cancel_at_period_end_and_portal_card_update(sim, api, receiver):
    session = api.v1.checkout.sessions.create(params=plan_params())
    pay(session)
    sub_id = receiver.wait_for("customer.subscription.created").data.object.id
    customer_id = api.v1.subscriptions.retrieve(sub_id).customer

    portal = api.v1.billing_portal.sessions.create(
        params={"customer": customer_id, "return_url": "http://127.0.0.1:5000/account"}
    )
    text = page(portal.url)
    assert "Test payment: no money moves" in text and "Return to DonorHub" in text
    status, headers, _ = http("POST", f"{portal.url}/card", form={"card": "visa_0341"})
    assert status == 303 and "Your card has been updated" in page(headers["Location"])
    receiver.wait_for("customer.updated")

    # The new card declines, so the next renewal fails without forcing it.
    control(sim, f"/_sim/subscriptions/{sub_id}/renew")
    receiver.wait_for("invoice.payment_failed")

    ending = api.v1.subscriptions.update(sub_id, params={"cancel_at_period_end": True})
    assert ending.cancel_at_period_end and ending.cancel_at
    control(sim, f"/_sim/subscriptions/{sub_id}/renew")
    receiver.wait_for("customer.subscription.deleted")


# --- refunds, disputes, customers ------------------------------------------------------


def test_a_charge_lists_its_refunds_only_when_expanded(quiet_sim, quiet_api):
    """Since API version 2022-11-15 a Charge no longer carries `refunds` unless expanded:
    not in GET /v1/charges/{id}, not in any event's charge (charge.refunded included)."""
    c = quiet_api
    gift = c.v1.checkout.sessions.create(params=gift_params())
    assert pay(gift)[0] == 303
    intent = raw_get(quiet_sim, f"/v1/checkout/sessions/{gift.id}")["payment_intent"]
    refund = c.v1.refunds.create(params={"payment_intent": intent, "amount": 500})
    charge_id = raw_get(quiet_sim, f"/v1/payment_intents/{intent}")["latest_charge"]
    assert "refunds" not in raw_get(quiet_sim, f"/v1/charges/{charge_id}")
    expanded = raw_get(quiet_sim, f"/v1/charges/{charge_id}?expand[]=refunds")["refunds"]
    assert [r["id"] for r in expanded["data"]] == [refund.id]
    events = raw_get(quiet_sim, "/v1/events?limit=100")["data"]
    charges = [e for e in events if e["data"]["object"]["object"] == "charge"]
    assert {e["type"] for e in charges} >= {"charge.succeeded", "charge.refunded"}
    assert all("refunds" not in e["data"]["object"] for e in charges)


def test_refunds_and_disputes(sim, api, receiver):
    session = api.v1.checkout.sessions.create(params=gift_params())
    pay(session)
    intent_id = receiver.wait_for("payment_intent.succeeded").data.object.id

    refund = api.v1.refunds.create(
        params={
            "payment_intent": intent_id,
            "amount": 1000,
            "reason": "requested_by_customer",
            "metadata": {"refund_id": "9"},
        },
        options={"idempotency_key": "refund-9"},
    )
    assert refund.status == "succeeded" and refund.amount == 1000
    refunded = receiver.wait_for("charge.refunded").data.object
    assert refunded.amount_refunded == 1000 and refunded.refunded is False
    with pytest.raises(stripe.InvalidRequestError, match="greater than unrefunded"):
        api.v1.refunds.create(params={"payment_intent": intent_id, "amount": 2000})

    charge_id = refunded.id
    dispute = control(sim, f"/_sim/charges/{charge_id}/dispute")
    assert receiver.wait_for("charge.dispute.created").data.object.id == dispute["id"]
    control(sim, f"/_sim/disputes/{dispute['id']}/close?status=lost")
    closed = receiver.wait_for("charge.dispute.closed").data.object
    assert closed.status == "lost"


def test_deleting_a_customer_cancels_their_subscriptions(sim, api, receiver):
    session = api.v1.checkout.sessions.create(params=plan_params())
    pay(session)
    sub = receiver.wait_for("customer.subscription.created").data.object
    deleted = api.v1.customers.delete(sub.customer)
    assert deleted.deleted is True
    receiver.wait_for("customer.subscription.deleted")
    receiver.wait_for("customer.deleted")
    assert api.v1.customers.retrieve(sub.customer).deleted is True
    with pytest.raises(stripe.InvalidRequestError, match="No such customer"):
        api.v1.checkout.sessions.create(
            params=plan_params(customer_email=None, customer=sub.customer)
        )


# --- idempotency and faults ------------------------------------------------------------


def test_idempotency_replays_and_rejects_a_changed_body(quiet_sim, quiet_api):
    first = quiet_api.v1.checkout.sessions.create(
        params=gift_params(), options={"idempotency_key": "gift-1"}
    )
    second = quiet_api.v1.checkout.sessions.create(
        params=gift_params(), options={"idempotency_key": "gift-1"}
    )
    assert first.id == second.id
    stored = control(quiet_sim, "/_sim/objects?type=checkout.session", method="GET")
    assert [s["id"] for s in stored["objects"]] == [first.id]
    outcomes = [r["outcome"] for r in control(quiet_sim, "/_sim/requests", "GET")["requests"]]
    assert outcomes[-2:] == ["ok", "replayed"]

    with pytest.raises(stripe.IdempotencyError, match="same parameters"):
        quiet_api.v1.checkout.sessions.create(
            params=gift_params(metadata={"gift_id": "43"}), options={"idempotency_key": "gift-1"}
        )


def test_server_errors_are_retried_with_the_same_key(quiet_sim):
    control(quiet_sim, "/_sim/faults", path_prefix="/v1/checkout/sessions", status=500, times=2)
    retrying = _client(quiet_sim.base_url, retries=2)
    try:
        session = retrying.v1.checkout.sessions.create(params=gift_params())
    finally:
        retrying._requestor._get_http_client().close()
    assert session.id.startswith("cs_test_")
    attempts = control(quiet_sim, "/_sim/requests?path_prefix=/v1/checkout/sessions", "GET")[
        "requests"
    ]
    assert [a["status"] for a in attempts] == [500, 500, 200]
    keys = {a["idempotency_key"] for a in attempts}
    assert len(keys) == 1 and None not in keys


def test_card_and_rate_limit_faults_raise_stripe_errors(quiet_sim, quiet_api):
    control(quiet_sim, "/_sim/faults", path_prefix="/v1/refunds", status=402)
    with pytest.raises(stripe.CardError) as card_error:
        quiet_api.v1.refunds.create(params={"charge": "ch_anything"})
    assert card_error.value.code == "card_declined"
    assert card_error.value.user_message == "Your card was declined."

    control(quiet_sim, "/_sim/faults", path_prefix="/v1/checkout/sessions", status=429)
    with pytest.raises(stripe.RateLimitError):
        quiet_api.v1.checkout.sessions.create(params=gift_params())
    assert control(quiet_sim, "/_sim/faults", "GET")["faults"] == []


def test_a_slow_answer_times_out_and_the_retry_replays_it(quiet_sim):
    control(quiet_sim, "/_sim/faults", path_prefix="/v1/checkout/sessions", delay_seconds=1.5)
    impatient = stripe.StripeClient(
        "sk_test_simulator",
        base_addresses={"api": quiet_sim.base_url},
        max_network_retries=3,
        http_client=stripe.RequestsClient(timeout=1),
    )
    try:
        session = impatient.v1.checkout.sessions.create(params=gift_params())
    finally:
        impatient._requestor._get_http_client().close()
    stored = control(quiet_sim, "/_sim/objects?type=checkout.session", "GET")["objects"]
    assert [s["id"] for s in stored] == [session.id]  # executed once despite the retries
    attempts = control(quiet_sim, "/_sim/requests", "GET")["requests"]
    outcomes = [a["outcome"] for a in attempts]
    # The first attempt finished after the client gave up; a retry that overlapped it was
    # told 409 (key in use) and retried; the last one replayed the saved answer.
    assert outcomes[0] == "ok" and outcomes[-1] == "replayed"
    assert set(outcomes[1:-1]) <= {"in_use"}
    assert len({a["idempotency_key"] for a in attempts}) == 1


# --- events, auth, params --------------------------------------------------------------


def test_events_list_newest_first_with_pagination(quiet_sim, quiet_api):
    created = [
        quiet_api.v1.customers.create(params={"email": f"d{i}@example.org"}).id for i in range(5)
    ]
    page1 = quiet_api.v1.events.list(params={"limit": 2})
    assert page1.has_more is True
    assert [e.data.object.id for e in page1.data] == created[::-1][:2]
    page2 = quiet_api.v1.events.list(params={"limit": 2, "starting_after": page1.data[-1].id})
    assert [e.data.object.id for e in page2.data] == created[::-1][2:4]
    page3 = quiet_api.v1.events.list(params={"limit": 2, "starting_after": page2.data[-1].id})
    assert page3.has_more is False and len(page3.data) == 1
    everything = [
        e.data.object.id for e in quiet_api.v1.events.list(params={"limit": 2}).auto_paging_iter()
    ]
    assert everything == created[::-1]
    newer = quiet_api.v1.events.list(params={"ending_before": page2.data[0].id})
    assert [e.data.object.id for e in newer.data] == created[::-1][:2]

    filtered = quiet_api.v1.events.list(
        params={"types": ["checkout.session.completed"], "created": {"gte": int(time.time()) - 60}}
    )
    assert filtered.data == []
    wildcard = quiet_api.v1.events.list(params={"types": ["customer.*"], "limit": 100})
    assert len(wildcard.data) == 5
    one = quiet_api.v1.events.retrieve(page1.data[0].id)
    assert one.type == "customer.created" and one.request.idempotency_key


def test_webhooks_are_retried_until_accepted_in_order(sim, api, receiver):
    receiver.fail_next = 2
    for i in range(3):
        api.v1.customers.create(params={"email": f"w{i}@example.org"})
    receiver.wait_for("customer.created", lambda e: e.data.object.email == "w2@example.org")
    assert [e.data.object.email for e in receiver.events] == [
        "w0@example.org",
        "w1@example.org",
        "w2@example.org",
    ]
    # The simulator records a delivery's outcome after our receiver has answered it, so the
    # last one may still read "pending" for a moment: wait for the outcome itself (the
    # deadline only bounds one that never comes).
    deadline = time.monotonic() + 120
    while True:
        deliveries = control(sim, "/_sim/deliveries", "GET")["deliveries"]
        if all(d["delivery"] != "pending" for d in deliveries) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert [(d["delivery"], d["attempts"]) for d in deliveries] == [
        ("delivered", 3),
        ("delivered", 1),
        ("delivered", 1),
    ]

    control(sim, f"/_sim/events/{receiver.events[0].id}/resend")
    deadline = time.monotonic() + 120
    while len(receiver.events) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert receiver.events[3].id == receiver.events[0].id  # a duplicate, for dedupe tests


def test_authentication_and_unknown_parameters(quiet_sim):
    live = stripe.StripeClient(
        "sk_live_nope",
        base_addresses={"api": quiet_sim.base_url},
        http_client=stripe.RequestsClient(timeout=5),
    )
    try:
        with pytest.raises(stripe.AuthenticationError):
            live.v1.customers.retrieve("cus_x")
    finally:
        live._requestor._get_http_client().close()
    status, _, text = http("GET", f"{quiet_sim.base_url}/v1/events")
    assert status == 401 and set(json.loads(text)["error"]) >= {"type", "message", "code"}

    typo = _client(quiet_sim.base_url)
    try:
        params = gift_params()
        params["line_items"][0]["price_data"]["amount"] = 2500
        with pytest.raises(
            stripe.InvalidRequestError,
            match="Received unknown parameter: "
            r"line_items\[0\]\[price_data\]\[amount\]",
        ):
            typo.v1.checkout.sessions.create(params=params)
        with pytest.raises(stripe.InvalidRequestError, match="recurring price"):
            bad = gift_params()
            bad["line_items"][0]["price_data"]["recurring"] = {"interval": "month"}
            typo.v1.checkout.sessions.create(params=bad)
        with pytest.raises(stripe.InvalidRequestError, match="No such subscription"):
            typo.v1.subscriptions.retrieve("sub_missing")
    finally:
        typo._requestor._get_http_client().close()


def test_decode_params_reads_stripe_bracket_notation():
    pairs = [
        ("line_items[0][price_data][unit_amount]", "2500"),
        ("line_items[0][quantity]", "1"),
        ("line_items[1][quantity]", "2"),
        ("metadata[0]", "zero"),
        ("types[]", "a"),
        ("types[]", "b"),
        ("pause_collection", ""),
    ]
    assert decode_params(pairs) == {
        "line_items": [{"price_data": {"unit_amount": "2500"}, "quantity": "1"}, {"quantity": "2"}],
        "metadata": {"0": "zero"},
        "types": ["a", "b"],
        "pause_collection": "",
    }


# --- safety and persistence -------------------------------------------------------------


def test_refuses_production(monkeypatch):
    with pytest.raises(SystemExit, match="production"):
        start_simulator(production=True)
    monkeypatch.setenv("DONORHUB_ENV", "production")
    with pytest.raises(SystemExit, match="production"):
        start_simulator()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "example.org"])
def test_refuses_a_non_loopback_host(host):
    with pytest.raises(SystemExit, match="loopback"):
        start_simulator(host=host)


def test_state_survives_a_restart(tmp_path):
    db = str(tmp_path / "simulator.sqlite3")
    with start_simulator(deliver_webhooks=False, db_path=db) as first:
        c = _client(first.base_url)
        session_id = c.v1.checkout.sessions.create(params=gift_params()).id
        c._requestor._get_http_client().close()
    with start_simulator(deliver_webhooks=False, db_path=db) as second:
        c = _client(second.base_url)
        assert c.v1.checkout.sessions.retrieve(session_id).status == "open"
        c._requestor._get_http_client().close()
