"""The one door to Stripe. Nothing outside donorhub/payments imports `stripe`.

Every call that creates or changes something carries our own idempotency key, derived from
our row, so a retry (the library's own, or the donor pressing "Try again") cannot charge or
create twice. Calls have a short timeout and a bounded number of retries.

Without STRIPE_SECRET_KEY (development, demo, tests) the same code talks over HTTP to the
local Stripe simulator at STRIPE_API_BASE (docs/stripe-simulator.md). With a key, calls go to
Stripe itself, except a test key (sk_test_/rk_test_) under ALLOW_STRIPE_TEST_MODE with
STRIPE_API_BASE set: that is the simulator standing in for Stripe on a test site.
"""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import stripe
from flask import Flask, current_app

from donorhub import park_for_kill
from donorhub.errors import GatewayError
from donorhub.payments.events import (
    InvoiceData,
    PaymentEvent,
    PaymentIntentData,
    RefundData,
    SubscriptionData,
    event_from_dict,
    read_object,
)

log = logging.getLogger(__name__)
# stripe-python logs whole response bodies at DEBUG, e-mail addresses included.
logging.getLogger("stripe").setLevel(logging.WARNING)

SIMULATOR_KEY = "sk_test_donorhub_simulator"  # noqa: S105 - the simulator accepts any sk_test_


@dataclass(frozen=True)
class CheckoutRequest:
    """Everything Stripe is told about a gift. Amounts come from our row, never the browser."""

    idempotency_key: str
    mode: str  # "payment" or "subscription"
    amount_minor: int
    currency: str
    #: Generic on purpose: "Donation", "Monthly donation", "Yearly donation".
    product_name: str
    success_url: str
    cancel_url: str
    expires_at: int
    customer_email: str
    #: Our opaque ids only, e.g. {"donation": "<uuid hex>"}.
    metadata: dict[str, str]
    interval: str | None = None  # "month" or "year" in subscription mode


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str


@dataclass(frozen=True)
class PaymentFailure:
    code: str | None
    message: str | None


@dataclass(frozen=True)
class SubscriptionChange:
    subscription_id: str
    idempotency_key: str
    amount_minor: int | None = None
    currency: str | None = None
    interval: str | None = None


@dataclass(frozen=True)
class RefundRequest:
    #: Exactly one of payment_intent_id and charge_id.
    payment_intent_id: str | None
    charge_id: str | None
    amount_minor: int
    #: Stripe's reasons only ("duplicate", "fraudulent", "requested_by_customer") or None.
    reason: str | None
    idempotency_key: str
    #: Opaque ids only: Stripe sees no names, notes or child data.
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RefundResult:
    id: str
    status: str
    amount_minor: int


@dataclass(frozen=True)
class ReceivedEvent:
    """A verified event: ours to read, and the JSON to store until it is applied."""

    event: PaymentEvent
    #: The event as Stripe sent it (verified): personal data, stored and never logged.
    payload: str

    @property
    def id(self) -> str:
        return self.event.id


class InvalidWebhook(Exception):
    """Bad or missing signature, or a timestamp outside the tolerance."""


class PaymentGateway(Protocol):
    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession: ...
    def expire_checkout(self, session_id: str) -> None: ...
    def close_checkout(self, session_id: str, idempotency_key: str) -> str: ...
    def checkout_status(self, session_id: str) -> str: ...
    def payment_intent(self, intent_id: str) -> PaymentIntentData | None: ...
    def invoice(self, invoice_id: str) -> InvoiceData | None: ...
    def parse_webhook(self, payload: bytes, signature: str | None) -> ReceivedEvent: ...
    def list_events(self, since: int) -> Iterator[ReceivedEvent]: ...
    def invoice_payment_failure(self, invoice_id: str) -> PaymentFailure | None: ...
    def invoice_for_payment_intent(self, intent_id: str) -> str | None: ...
    def payment_intent_of_invoice(self, invoice_id: str) -> str | None: ...
    def subscription(self, subscription_id: str) -> SubscriptionData | None: ...
    def change_subscription(self, change: SubscriptionChange) -> None: ...
    def pause_subscription(self, subscription_id: str, idempotency_key: str) -> None: ...
    def resume_subscription(self, subscription_id: str, idempotency_key: str) -> None: ...
    def cancel_subscription(self, subscription_id: str, idempotency_key: str) -> None: ...
    def billing_portal_url(self, customer_id: str, return_url: str) -> str: ...
    def refund(self, request: RefundRequest) -> RefundResult: ...
    def list_refunds(
        self, intent_id: str | None, charge_id: str | None, *, page_size: int = 100
    ) -> list[RefundData]: ...
    def delete_customer(self, customer_id: str) -> bool: ...


def _translate(error: stripe.StripeError) -> GatewayError:
    status = getattr(error, "http_status", None)
    if isinstance(error, stripe.APIConnectionError):
        return GatewayError(
            "We could not reach our payment provider.",
            retryable=True,
            kind="connection",
            status=status,
        )
    if isinstance(error, stripe.RateLimitError) or status == 429:
        return GatewayError(
            "Our payment provider is busy.", retryable=True, kind="rate_limited", status=status
        )
    if status is not None and (status >= 500 or status == 409):
        return GatewayError(
            "Our payment provider had a problem.",
            retryable=True,
            kind="server_error",
            status=status,
        )
    if isinstance(error, stripe.CardError):
        return GatewayError(
            "The payment was declined.", retryable=False, kind="declined", status=status
        )
    return GatewayError(
        "Our payment provider refused the request.", retryable=False, kind="refused", status=status
    )


#: One element of a Stripe-Signature header, exactly as Stripe writes it: a scheme (t, v1,
#: v0...) and a plain value, no spaces, no signs.
_SIGNATURE_ELEMENT = re.compile(r"(t)=([0-9]{1,12})|(v[0-9])=([0-9a-f]{1,128})")


@dataclass(frozen=True)
class SignatureHeader:
    timestamp: int
    v1: tuple[str, ...]

    def canonical(self) -> str:
        """The header rebuilt from what we read, so stripe verifies the very same t."""
        return ",".join([f"t={self.timestamp}", *(f"v1={sig}" for sig in self.v1)])


def parse_signature_header(header: str) -> SignatureHeader | None:
    """Read a Stripe-Signature header strictly, or None: exactly one `t`, a plain decimal
    integer; at least one `v1` of lower-case hex; nothing else but other `vN` schemes. Our
    checks and stripe's then read one timestamp (a lenient reader could pick another `t`)."""
    timestamps, v1 = [], []
    for element in header.split(","):
        match = _SIGNATURE_ELEMENT.fullmatch(element)
        if match is None:
            return None
        if match.group(1):
            timestamps.append(int(match.group(2)))
        elif match.group(3) == "v1":
            if len(match.group(4)) != 64:
                return None
            v1.append(match.group(4))
    if len(timestamps) != 1 or not v1:
        return None
    return SignatureHeader(timestamps[0], tuple(v1))


# Stripe's parameter TypedDicts want Literal values (mode, interval, reason...); the gateway
# builds plain dicts of values already checked, so its calls that take them ignore arg-type.
class StripeGateway:
    """Talks to Stripe (or the simulator) through stripe.StripeClient."""

    def __init__(
        self,
        *,
        secret_key: str,
        api_base: str,
        webhook_secret: str,
        timeout_seconds: float,
        max_network_retries: int,
        tolerance_seconds: int,
        production: bool,
        allow_test_mode: bool = False,
    ):
        if not secret_key and production:
            raise RuntimeError("STRIPE_SECRET_KEY is required in production")
        self.uses_simulator = not secret_key
        # A live key is only ever sent to Stripe itself.
        redirected = bool(
            secret_key
            and api_base
            and allow_test_mode
            and secret_key.startswith(("sk_test_", "rk_test_"))
        )
        self.api_base = api_base
        self.webhook_secret = webhook_secret
        self.tolerance = tolerance_seconds
        http_client = park_for_kill.wrap_http_client(
            stripe.new_default_http_client(timeout=timeout_seconds)
        )
        options: dict = {"max_network_retries": max_network_retries, "http_client": http_client}
        if self.uses_simulator or redirected:
            options["base_addresses"] = {"api": api_base}
        self.client = stripe.StripeClient(secret_key or SIMULATOR_KEY, **options)

    # -- Checkout --

    def create_checkout(self, request: CheckoutRequest) -> CheckoutSession:
        price_data: dict = {
            "currency": request.currency,
            "unit_amount": request.amount_minor,
            "product_data": {"name": request.product_name},
        }
        params: dict = {
            "mode": request.mode,
            "line_items": [{"quantity": 1, "price_data": price_data}],
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
            "expires_at": request.expires_at,
            "customer_email": request.customer_email,
            "client_reference_id": next(iter(request.metadata.values())),
            "metadata": dict(request.metadata),
        }
        if request.mode == "subscription":
            price_data["recurring"] = {"interval": request.interval, "interval_count": 1}
            params["subscription_data"] = {
                "metadata": dict(request.metadata),
                "description": request.product_name,
            }
        else:
            params["submit_type"] = "donate"
            params["payment_intent_data"] = {
                "metadata": dict(request.metadata),
                "description": request.product_name,
            }
        try:
            session = self.client.v1.checkout.sessions.create(
                params,  # type: ignore[arg-type]  # a plain dict, see the class
                {"idempotency_key": request.idempotency_key},
            )
        except stripe.StripeError as error:
            raise _translate(error) from None
        if session.url is None:  # a hosted Checkout Session always has its page
            raise RuntimeError("Checkout Session without a URL")
        return CheckoutSession(id=session.id, url=session.url)

    def expire_checkout(self, session_id: str) -> None:
        try:
            self.client.v1.checkout.sessions.expire(session_id)
        except stripe.InvalidRequestError:
            pass  # already complete or expired
        except stripe.StripeError as error:
            raise _translate(error) from None

    def close_checkout(self, session_id: str, idempotency_key: str) -> str:
        """Expire a session so it can no longer be paid; returns its final status:
        "expired", or "complete" when the donor paid it meanwhile (then open no other)."""
        try:
            session = self.client.v1.checkout.sessions.expire(
                session_id, None, {"idempotency_key": idempotency_key}
            )
            return session.status or "expired"
        except stripe.InvalidRequestError as error:
            if getattr(error, "code", "") == "resource_missing":
                return "expired"  # nothing there to pay
        except stripe.StripeError as error:
            raise _translate(error) from None
        try:  # not open any more: complete, or expired already?
            return self.client.v1.checkout.sessions.retrieve(session_id).status or "expired"
        except stripe.StripeError as error:
            raise _translate(error) from None

    def checkout_status(self, session_id: str) -> str:
        """A session's status as Stripe holds it now: "open", "complete" or "expired" (also
        for a session Stripe does not know: nothing there can be paid)."""
        try:
            return self.client.v1.checkout.sessions.retrieve(session_id).status or "expired"
        except stripe.InvalidRequestError as error:
            if getattr(error, "code", "") == "resource_missing":
                return "expired"
            raise _translate(error) from None
        except stripe.StripeError as error:
            raise _translate(error) from None

    @staticmethod
    def _retrieve(resource, object_id: str):
        """One object read from Stripe, as our dataclass; None if Stripe does not know it."""
        try:
            found = resource.retrieve(object_id)
        except stripe.InvalidRequestError as error:
            if getattr(error, "code", "") == "resource_missing":
                return None
            raise _translate(error) from None
        except stripe.StripeError as error:
            raise _translate(error) from None
        return read_object(found.to_dict())

    def payment_intent(self, intent_id: str) -> PaymentIntentData | None:
        """A PaymentIntent as our dataclass (its metadata carries our refs); None if unknown."""
        return self._retrieve(self.client.v1.payment_intents, intent_id)

    def invoice(self, invoice_id: str) -> InvoiceData | None:
        """An invoice as our dataclass (its subscription metadata carries our refs)."""
        return self._retrieve(self.client.v1.invoices, invoice_id)

    # -- Webhooks and events --

    def parse_webhook(self, payload: bytes, signature: str | None) -> ReceivedEvent:
        """Verify over the raw bytes; refuse timestamps too old *or too far in the future*.

        stripe's signature check looks only at age, so a header dated an hour ahead would pass
        it (security-test-plan 0.5); we check the future side ourselves, first. The body is
        read once (json.loads) and verified with stripe's WebhookSignature: no StripeObject
        is built, the webhook only stores the event.
        """
        if not signature or not self.webhook_secret:
            raise InvalidWebhook("missing signature")
        header = parse_signature_header(signature)
        if header is None:
            raise InvalidWebhook("header")
        if header.timestamp > time.time() + self.tolerance:
            raise InvalidWebhook("timestamp")
        try:
            text = payload.decode("utf-8")
            data = json.loads(text)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise InvalidWebhook("payload") from None
        if not isinstance(data, dict):
            raise InvalidWebhook("payload")
        try:
            stripe.WebhookSignature.verify_header(
                text, header.canonical(), self.webhook_secret, self.tolerance
            )
        except stripe.SignatureVerificationError as error:
            raise InvalidWebhook(type(error).__name__) from None
        return ReceivedEvent(event_from_dict(data), text)

    def list_events(self, since: int) -> Iterator[ReceivedEvent]:
        """Every event created at or after `since` (a Unix time), oldest first."""
        try:
            page = self.client.v1.events.list({"created": {"gte": since}, "limit": 100})
            events = []
            for item in page.auto_paging_iter():
                data = item.to_dict()
                # default=str: the library reads Stripe's decimal strings as Decimal.
                events.append(ReceivedEvent(event_from_dict(data), json.dumps(data, default=str)))
        except stripe.StripeError as error:
            raise _translate(error) from None
        events.sort(key=lambda e: (e.event.created, e.event.id))
        return iter(events)

    def invoice_payment_failure(self, invoice_id: str) -> PaymentFailure | None:
        """Why an invoice's payment failed: the PaymentIntent's last_payment_error, reached
        through invoice_payments (the current API has no invoice.payment_intent)."""
        try:
            payments = self.client.v1.invoice_payments.list(
                {"invoice": invoice_id, "expand": ["data.payment.payment_intent"]}
            )
        except stripe.StripeError as error:
            raise _translate(error) from None
        for payment in payments.data:
            intent = (payment.to_dict().get("payment") or {}).get("payment_intent")
            if isinstance(intent, dict) and intent.get("last_payment_error"):
                failure = intent["last_payment_error"]
                return PaymentFailure(
                    code=failure.get("decline_code") or failure.get("code"),
                    message=failure.get("message"),
                )
        return None

    def invoice_for_payment_intent(self, intent_id: str) -> str | None:
        """The invoice a PaymentIntent paid, if any (to find a plan's gift from a refund)."""
        try:
            payments = self.client.v1.invoice_payments.list(
                {"payment": {"type": "payment_intent", "payment_intent": intent_id}}
            )
        except stripe.StripeError as error:
            raise _translate(error) from None
        for payment in payments.data:
            invoice = payment.to_dict().get("invoice")
            return invoice if isinstance(invoice, str) else (invoice or {}).get("id")
        return None

    def payment_intent_of_invoice(self, invoice_id: str) -> str | None:
        """The PaymentIntent that paid an invoice, if any (to refund an instalment, whose
        invoice.paid event names no payment)."""
        try:
            payments = self.client.v1.invoice_payments.list({"invoice": invoice_id})
        except stripe.StripeError as error:
            raise _translate(error) from None
        for payment in payments.data:
            found = payment.to_dict()
            if found.get("status") not in (None, "paid"):
                continue
            intent = (found.get("payment") or {}).get("payment_intent")
            if intent:
                return intent if isinstance(intent, str) else intent.get("id")
        return None

    # -- Subscriptions --

    def _subscription(self, subscription_id: str):
        return self.client.v1.subscriptions.retrieve(subscription_id)

    def subscription(self, subscription_id: str) -> SubscriptionData | None:
        """The subscription as Stripe holds it now; None if Stripe does not know it."""
        return self._retrieve(self.client.v1.subscriptions, subscription_id)

    def change_subscription(self, change: SubscriptionChange) -> None:
        try:
            sub = self._subscription(change.subscription_id).to_dict()
            item = sub["items"]["data"][0]
            price = item["price"]
            product = (
                price["product"] if isinstance(price["product"], str) else price["product"]["id"]
            )
            new_price = {
                "currency": change.currency or price["currency"],
                "unit_amount": change.amount_minor or price["unit_amount"],
                "product": product,
                "recurring": {
                    "interval": change.interval or price["recurring"]["interval"],
                    "interval_count": 1,
                },
            }
            self.client.v1.subscriptions.update(
                change.subscription_id,
                {
                    "items": [{"id": item["id"], "price_data": new_price}],  # type: ignore[arg-type]  # a plain dict, see the class
                    "proration_behavior": "none",
                },
                {"idempotency_key": change.idempotency_key},
            )
        except stripe.StripeError as error:
            raise _translate(error) from None

    def pause_subscription(self, subscription_id: str, idempotency_key: str) -> None:
        self._update(subscription_id, {"pause_collection": {"behavior": "void"}}, idempotency_key)

    def resume_subscription(self, subscription_id: str, idempotency_key: str) -> None:
        self._update(subscription_id, {"pause_collection": ""}, idempotency_key)

    def _update(self, subscription_id: str, params: dict, idempotency_key: str) -> None:
        try:
            self.client.v1.subscriptions.update(
                subscription_id,
                params,  # type: ignore[arg-type]  # a plain dict, see the class
                {"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as error:
            raise _translate(error) from None

    def cancel_subscription(self, subscription_id: str, idempotency_key: str) -> None:
        try:
            self.client.v1.subscriptions.cancel(
                subscription_id, None, {"idempotency_key": idempotency_key}
            )
        except stripe.InvalidRequestError as error:
            if "already been canceled" in str(error) or getattr(error, "code", "") in (
                "resource_missing",
            ):
                return  # the outcome the donor asked for
            raise _translate(error) from None
        except stripe.StripeError as error:
            raise _translate(error) from None

    def billing_portal_url(self, customer_id: str, return_url: str) -> str:
        try:
            session = self.client.v1.billing_portal.sessions.create(
                {"customer": customer_id, "return_url": return_url}
            )
        except stripe.StripeError as error:
            raise _translate(error) from None
        return session.url

    # -- Refunds and customers --

    def refund(self, request: RefundRequest) -> RefundResult:
        """Refund part or all of a charge; the same idempotency key never refunds twice."""
        params: dict = {"amount": request.amount_minor, "metadata": dict(request.metadata)}
        if request.payment_intent_id:
            params["payment_intent"] = request.payment_intent_id
        else:
            params["charge"] = request.charge_id
        if request.reason:
            params["reason"] = request.reason
        try:
            refund = self.client.v1.refunds.create(
                params,  # type: ignore[arg-type]  # a plain dict, see the class
                {"idempotency_key": request.idempotency_key},
            )
        except stripe.StripeError as error:
            raise _translate(error) from None
        return RefundResult(
            id=refund.id, status=refund.status or "pending", amount_minor=refund.amount
        )

    def list_refunds(
        self, intent_id: str | None, charge_id: str | None, *, page_size: int = 100
    ) -> list[RefundData]:
        """Every refund of a payment (to recover a refund whose answer we never recorded, or
        to learn one a charge.refunded sum tells of), page after page: auto_paging_iter asks
        for the next page after the last refund (starting_after) while has_more is true."""
        params: dict = {"limit": page_size}
        if intent_id:
            params["payment_intent"] = intent_id
        elif charge_id:
            params["charge"] = charge_id
        else:
            return []
        try:
            page = self.client.v1.refunds.list(params)  # type: ignore[arg-type]  # a plain dict, see the class
        except stripe.StripeError as error:
            raise _translate(error) from None
        found = []
        for refund in page.auto_paging_iter():
            data = read_object(refund.to_dict())
            if isinstance(data, RefundData):
                found.append(data)
        return found

    def delete_customer(self, customer_id: str) -> bool:
        """Delete a customer (erasure). True when deleted now or already gone."""
        try:
            self.client.v1.customers.delete(customer_id)
        except stripe.InvalidRequestError as error:
            if getattr(error, "code", "") == "resource_missing":
                return True
            raise _translate(error) from None
        except stripe.StripeError as error:
            raise _translate(error) from None
        return True

    # -- The simulator's control endpoints (development and tests only) --

    def simulate(self, path: str, **params: str) -> dict:
        if not self.uses_simulator:
            raise RuntimeError("simulator controls are refused against real Stripe")
        if not re.fullmatch(r"[a-z_]+/[A-Za-z0-9_]+/[a-z_]+", path):
            raise ValueError("bad simulator path")
        url = f"{self.api_base}/_sim/{path}"
        if not url.startswith(("http://127.0.0.1:", "http://localhost:", "http://[::1]:")):
            raise RuntimeError("the simulator listens on the loopback interface only")
        if params:
            url += "?" + urllib.parse.urlencode(params)
        request = urllib.request.Request(url, method="POST", data=b"")  # noqa: S310 - loopback
        try:
            # Plain http to a loopback address, checked above.
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 # nosec B310
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise GatewayError(
                error.read().decode()[:300], retryable=False, kind="simulator", status=error.code
            ) from None


@dataclass
class _Holder:
    gateway: PaymentGateway | None = None
    settings: dict = field(default_factory=dict)


def init_app(app: Flask) -> None:
    app.extensions["donorhub.payments"] = _Holder()


def get_gateway() -> StripeGateway:
    """The app's gateway, built at first use from its configuration."""
    holder: _Holder = current_app.extensions["donorhub.payments"]
    if holder.gateway is None:
        config = current_app.config
        holder.gateway = StripeGateway(
            secret_key=config["STRIPE_SECRET_KEY"],
            api_base=config["STRIPE_API_BASE"],
            webhook_secret=config["STRIPE_WEBHOOK_SECRET"],
            timeout_seconds=config["STRIPE_TIMEOUT_SECONDS"],
            max_network_retries=config["STRIPE_MAX_NETWORK_RETRIES"],
            tolerance_seconds=config["STRIPE_WEBHOOK_TOLERANCE_SECONDS"],
            production=config["ENV_NAME"] == "production",
            allow_test_mode=config["ALLOW_STRIPE_TEST_MODE"],
        )
    return holder.gateway  # type: ignore[return-value]
