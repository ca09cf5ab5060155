"""Stripe's events as our own frozen dataclasses: nothing outside payments/ sees a stripe object.

Only the fields our handlers need are read, from the shapes of the current API version
(for example, an invoice reaches its subscription through parent.subscription_details).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class HandlerOutcome(StrEnum):
    """What a handler did with an event: stored as `StripeEvent.outcome` and answered to
    Stripe as the webhook's text (the values are those words)."""

    APPLIED = "applied"
    #: Not ours, or nothing to do.
    IGNORED = "ignored"
    #: Recorded, and flagged for staff to look at.
    FLAGGED = "flagged"


#: The metadata keys we set on Stripe objects: opaque ids of our rows, nothing else.
OUR_METADATA_KEYS = ("donation", "plan", "sponsorship")


@dataclass(frozen=True)
class Refs:
    """Our opaque ids, read back from a Stripe object's metadata."""

    donation: str | None = None
    plan: str | None = None
    #: A sponsorship's public id (donorhub/sponsorship): its plan's events go there first.
    sponsorship: str | None = None


@dataclass(frozen=True)
class CheckoutSessionData:
    id: str
    mode: str
    status: str | None
    payment_status: str | None
    amount_total: int | None
    currency: str | None
    refs: Refs
    payment_intent_id: str | None
    subscription_id: str | None
    customer_id: str | None


@dataclass(frozen=True)
class PaymentIntentData:
    id: str
    amount: int
    amount_received: int
    currency: str
    status: str
    refs: Refs
    failure_code: str | None


@dataclass(frozen=True)
class ChargeData:
    id: str
    payment_intent_id: str | None
    amount: int
    amount_refunded: int
    currency: str
    status: str
    refunded: bool
    refs: Refs
    #: When the charge was made: the time the money was paid (Stripe's clock).
    created: int | None = None
    # No list of refunds: since API version 2022-11-15 a Charge carries one only when
    # expanded, so charge.refunded tells the sum (amount_refunded) and nothing else. The
    # refunds themselves come from refund.* events, or from GET /v1/refunds (the gateway's
    # list_refunds) when the sum shows one we have not heard of.


@dataclass(frozen=True)
class RefundData:
    id: str
    charge_id: str | None
    payment_intent_id: str | None
    amount: int
    currency: str
    status: str
    #: Our metadata: {"donation": <gift>, "refund": <our Refund row id>}.
    refs: Refs
    intent_row: str | None
    failure_reason: str | None


@dataclass(frozen=True)
class InvoiceData:
    id: str
    subscription_id: str | None
    customer_id: str | None
    status: str | None
    billing_reason: str | None
    amount_due: int
    amount_paid: int
    currency: str
    refs: Refs
    created: int
    attempt_count: int
    next_payment_attempt: int | None
    #: status_transitions.paid_at: when the invoice was paid (Stripe's clock).
    paid_at: int | None = None
    #: "month" or "year": the interval the invoice charged for, from its own subscription
    #: line (None when it has none, e.g. a proration alone).
    interval: str | None = None


@dataclass(frozen=True)
class SubscriptionData:
    id: str
    customer_id: str | None
    status: str
    refs: Refs
    amount: int | None
    currency: str | None
    interval: str | None
    interval_count: int | None
    item_id: str | None
    product_id: str | None
    current_period_end: int | None
    paused: bool
    cancel_at_period_end: bool
    #: The subscription's newest invoice (orders two invoices raised in the same second).
    latest_invoice_id: str | None = None


@dataclass(frozen=True)
class DisputeData:
    id: str
    charge_id: str | None
    payment_intent_id: str | None
    amount: int
    currency: str
    status: str


Subject = (
    CheckoutSessionData
    | PaymentIntentData
    | ChargeData
    | InvoiceData
    | SubscriptionData
    | DisputeData
    | RefundData
)


@dataclass(frozen=True)
class PaymentEvent:
    id: str
    type: str
    created: datetime
    livemode: bool
    #: The event's object as our dataclass, or None for object types we do not read.
    subject: Subject | None

    @property
    def created_ts(self) -> int:
        return int(self.created.timestamp())


class MalformedEvent(ValueError):
    """A verified payload that is not an event in a shape we understand."""


def _id(value: Any) -> str | None:
    """Stripe fields that link objects are an id string, or the object when expanded."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return value.get("id")
    return str(value)


def _refs(metadata: Any) -> Refs:
    if not isinstance(metadata, Mapping):
        return Refs()
    values = {key: str(metadata[key])[:64] for key in OUR_METADATA_KEYS if metadata.get(key)}
    return Refs(**values)


def _checkout_session(o: Mapping[str, Any]) -> CheckoutSessionData:
    return CheckoutSessionData(
        id=o["id"],
        mode=o.get("mode") or "",
        status=o.get("status"),
        payment_status=o.get("payment_status"),
        amount_total=o.get("amount_total"),
        currency=o.get("currency"),
        refs=_refs(o.get("metadata")),
        payment_intent_id=_id(o.get("payment_intent")),
        subscription_id=_id(o.get("subscription")),
        customer_id=_id(o.get("customer")),
    )


def _payment_intent(o: Mapping[str, Any]) -> PaymentIntentData:
    error = o.get("last_payment_error") or {}
    return PaymentIntentData(
        id=o["id"],
        amount=int(o.get("amount") or 0),
        amount_received=int(o.get("amount_received") or 0),
        currency=o.get("currency") or "",
        status=o.get("status") or "",
        refs=_refs(o.get("metadata")),
        failure_code=error.get("decline_code") or error.get("code"),
    )


def _charge(o: Mapping[str, Any]) -> ChargeData:
    return ChargeData(
        id=o["id"],
        payment_intent_id=_id(o.get("payment_intent")),
        amount=int(o.get("amount") or 0),
        amount_refunded=int(o.get("amount_refunded") or 0),
        currency=o.get("currency") or "",
        status=o.get("status") or "",
        refunded=bool(o.get("refunded")),
        refs=_refs(o.get("metadata")),
        created=o.get("created"),
    )


def _refund(o: Mapping[str, Any]) -> RefundData:
    metadata = o.get("metadata")
    if not isinstance(metadata, Mapping):
        metadata = {}
    intent_row = str(metadata.get("refund") or "")[:32] or None
    return RefundData(
        id=o["id"],
        charge_id=_id(o.get("charge")),
        payment_intent_id=_id(o.get("payment_intent")),
        amount=int(o.get("amount") or 0),
        currency=o.get("currency") or "",
        status=o.get("status") or "",
        refs=_refs(metadata),
        intent_row=intent_row,
        failure_reason=o.get("failure_reason"),
    )


def _invoice(o: Mapping[str, Any]) -> InvoiceData:
    parent = o.get("parent") or {}
    details = parent.get("subscription_details") or {}
    return InvoiceData(
        id=o["id"],
        subscription_id=_id(details.get("subscription")),
        customer_id=_id(o.get("customer")),
        status=o.get("status"),
        billing_reason=o.get("billing_reason"),
        amount_due=int(o.get("amount_due") or 0),
        amount_paid=int(o.get("amount_paid") or 0),
        currency=o.get("currency") or "",
        refs=_refs(details.get("metadata")),
        created=int(o.get("created") or 0),
        attempt_count=int(o.get("attempt_count") or 0),
        next_payment_attempt=o.get("next_payment_attempt"),
        paid_at=(o.get("status_transitions") or {}).get("paid_at"),
        interval=_invoice_interval(o),
    )


#: The length in days of a line's service period, for each interval (calendar months and
#: years; a line of one interval never falls in the other's range).
_PERIOD_DAYS = {"month": (27, 32), "year": (360, 367)}


def _invoice_interval(o: Mapping[str, Any]) -> str | None:
    """The interval an invoice charged for, from its first subscription line that is not a
    proration: the line's price where the API version carries it (price.recurring), else its
    service period (since 2025-03-31 a line names its price by id only)."""
    for line in (o.get("lines") or {}).get("data") or []:
        details = (line.get("parent") or {}).get("subscription_item_details") or {}
        if not details or details.get("proration"):
            continue
        interval = ((line.get("price") or {}).get("recurring") or {}).get("interval")
        if interval in _PERIOD_DAYS:
            return interval
        period = line.get("period") or {}
        start, end = period.get("start"), period.get("end")
        if isinstance(start, int) and isinstance(end, int) and end > start:
            days = (end - start) / 86400
            for name, (low, high) in _PERIOD_DAYS.items():
                if low <= days <= high:
                    return name
    return None


def _subscription(o: Mapping[str, Any]) -> SubscriptionData:
    items = (o.get("items") or {}).get("data") or []
    item = items[0] if items else {}
    price = item.get("price") or {}
    recurring = price.get("recurring") or {}
    amount = None
    if price.get("unit_amount") is not None:
        amount = int(price["unit_amount"]) * int(item.get("quantity") or 1)
    return SubscriptionData(
        id=o["id"],
        customer_id=_id(o.get("customer")),
        status=o.get("status") or "",
        refs=_refs(o.get("metadata")),
        amount=amount,
        currency=price.get("currency"),
        interval=recurring.get("interval"),
        interval_count=recurring.get("interval_count"),
        item_id=item.get("id"),
        product_id=_id(price.get("product")),
        current_period_end=item.get("current_period_end"),
        paused=bool(o.get("pause_collection")),
        cancel_at_period_end=bool(o.get("cancel_at_period_end")),
        latest_invoice_id=_id(o.get("latest_invoice")),
    )


def _dispute(o: Mapping[str, Any]) -> DisputeData:
    return DisputeData(
        id=o["id"],
        charge_id=_id(o.get("charge")),
        payment_intent_id=_id(o.get("payment_intent")),
        amount=int(o.get("amount") or 0),
        currency=o.get("currency") or "",
        status=o.get("status") or "",
    )


_READERS: dict[str, Callable[[Mapping[str, Any]], Subject]] = {
    "checkout.session": _checkout_session,
    "payment_intent": _payment_intent,
    "charge": _charge,
    "invoice": _invoice,
    "subscription": _subscription,
    "dispute": _dispute,
    "refund": _refund,
}


def read_object(obj: Mapping[str, Any]) -> Subject | None:
    """One Stripe object (not an event) as our dataclass, or None for other types."""
    reader = _READERS.get(obj.get("object") or "")
    try:
        return reader(obj) if reader else None
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, OSError) as error:
        raise MalformedEvent(type(error).__name__) from error


def event_from_dict(data: Mapping[str, Any]) -> PaymentEvent:
    """Our PaymentEvent from a Stripe event as plain JSON data."""
    try:
        obj = data["data"]["object"]
        reader = _READERS.get(obj.get("object"))
        subject = reader(obj) if reader else None
        return PaymentEvent(
            id=str(data["id"]),
            type=str(data["type"]),
            created=datetime.fromtimestamp(int(data["created"]), UTC),
            livemode=bool(data.get("livemode")),
            subject=subject,
        )
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, OSError) as error:
        raise MalformedEvent(type(error).__name__) from error
