"""What every area of the simulated account shares: who acts (``Ctx``), loading and
expanding stored objects, the test cards and their charges, and inline prices.

Each area (checkout, subscriptions and invoices, customers, refunds and disputes, events)
is a mixin over ``EngineBase``; ``Engine`` (``engine/__init__.py``) combines them. An area
that needs another's operation calls it on ``self``; the abstract methods below name those
operations, so each area type-checks on its own.
"""

from __future__ import annotations

import calendar
import hashlib
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from werkzeug.wrappers import Request

from .. import objects
from ..objects import Obj, new_id
from ..params import ApiError, Params
from ..store import Store, StoredObject

CARDS = {
    "visa_4242": {
        "brand": "visa",
        "last4": "4242",
        "behaviour": "succeed",
        "label": "Visa ending 4242: payments succeed",
    },
    "mastercard_4444": {
        "brand": "mastercard",
        "last4": "4444",
        "behaviour": "succeed",
        "label": "Mastercard ending 4444: payments succeed",
    },
    "visa_0341": {
        "brand": "visa",
        "last4": "0341",
        "behaviour": "insufficient_funds",
        "label": "Visa ending 0341: later payments are declined (insufficient funds)",
    },
}

INTERVALS = ("day", "week", "month", "year")


def add_interval(anchor: int, interval: str, count: int) -> int:
    """``anchor`` plus ``count`` intervals, keeping the anchor's day of month where it can."""
    moment = datetime.fromtimestamp(anchor, UTC)
    if interval == "day":
        moment += timedelta(days=count)
    elif interval == "week":
        moment += timedelta(weeks=count)
    else:
        months = count * (12 if interval == "year" else 1)
        years, month_index = divmod(moment.month - 1 + months, 12)
        year, month = moment.year + years, month_index + 1
        day = min(moment.day, calendar.monthrange(year, month)[1])
        moment = moment.replace(year=year, month=month, day=day)
    return int(moment.timestamp())


def interval_text(recurring: Obj | None) -> str:
    if not recurring:
        return ""
    count, interval = recurring["interval_count"], recurring["interval"]
    return interval if count == 1 else f"{count} {interval}s"


def diff(old: Obj, new: Obj) -> Obj:
    """Stripe's ``previous_attributes``: old values of the top-level fields that changed."""
    return {key: old.get(key) for key in new if old.get(key) != new.get(key)}


@dataclass
class Ctx:
    """Who is acting: the API (with a request id and idempotency key) or a page/control."""

    base_url: str
    now: int
    request_id: str | None = None
    idempotency_key: str | None = None


def request_ctx(
    request: Request, *, request_id: str | None = None, idempotency_key: str | None = None
) -> Ctx:
    """Who acts in ``request``, now; links point at the host it was sent to."""
    return Ctx(
        base_url=request.host_url.rstrip("/"),
        now=objects.now(),
        request_id=request_id,
        idempotency_key=idempotency_key,
    )


class EngineBase(ABC):
    """Stripe's behaviour over the store. Every method runs inside a store transaction."""

    def __init__(self, store: Store, *, deliver: bool) -> None:
        self.store = store
        self.deliver = deliver

    # -- plumbing --

    def load(self, object_id: str | None, object_type: str, param: str = "id") -> StoredObject:
        stored = self.store.get(object_id) if object_id else None
        if stored is None or stored.type != object_type:
            raise ApiError.missing(object_type, object_id or "", param)
        return stored

    def load_live_customer(self, customer_id: str, param: str = "customer") -> StoredObject:
        stored = self.load(customer_id, "customer", param)
        if stored.data.get("deleted"):
            raise ApiError.missing("customer", customer_id, param)
        return stored

    def expand(self, obj: Obj, paths: list[str]) -> Obj:
        for path in paths:
            self._expand_path(obj, path.split("."), path)
        return obj

    def _expand_path(self, node: Any, parts: list[str], full: str) -> None:
        key, rest = parts[0], parts[1:]
        if isinstance(node, dict) and node.get("object") == "list" and key == "data":
            for item in node["data"]:
                if rest:
                    self._expand_path(item, rest, full)
            return
        virtual = isinstance(node, dict) and (node.get("object"), key) in {
            ("checkout.session", "line_items"),
            ("invoice", "payments"),
            ("charge", "refunds"),
        }
        if not isinstance(node, dict) or (key not in node and not virtual):
            raise ApiError.invalid(f"This property cannot be expanded ({full}).", param="expand")
        if virtual:
            if key == "refunds":
                node[key] = self.charge_refunds_list(node["id"])
            else:
                node[key] = (
                    self.session_line_items(node)
                    if key == "line_items"
                    else self.invoice_payments_list(node["id"])
                )
        elif isinstance(node[key], str):
            stored = self.store.get(node[key])
            if stored is None:
                raise ApiError.invalid(
                    f"This property cannot be expanded ({full}).", param="expand"
                )
            node[key] = stored.data
        elif node[key] is None:
            return
        elif not isinstance(node[key], dict):
            raise ApiError.invalid(f"This property cannot be expanded ({full}).", param="expand")
        if rest:
            self._expand_path(node[key], rest, full)

    # -- cards, charges, inline prices --

    def _new_card(self, choice: str) -> Obj:
        card = dict(CARDS[choice])
        card["payment_method"] = new_id("pm_")
        card["fingerprint"] = hashlib.sha256(choice.encode()).hexdigest()[:16]
        return card

    def _charge(
        self,
        ctx: Ctx,
        intent: Obj,
        card: Obj,
        payer: Obj,
        *,
        failure: dict | None = None,
        three_d_secure: bool = False,
    ) -> Obj:
        """One card attempt on ``intent``, declined with ``failure`` (a ``decline()``) or
        else successful: saves the charge and the updated intent."""
        charge = objects.charge(
            payment_intent_obj=intent,
            card=card,
            billing_email=payer.get("email"),
            billing_name=payer.get("name"),
            succeeded=failure is None,
            failure=failure,
            three_d_secure=three_d_secure,
            receipt_url="",
            created=ctx.now,
        )
        charge["receipt_url"] = f"{ctx.base_url}/receipts/{charge['id']}"
        intent.update(
            latest_charge=charge["id"], payment_method=card["payment_method"], next_action=None
        )
        if failure is None:
            intent.update(
                status="succeeded", amount_received=intent["amount"], last_payment_error=None
            )
        else:
            intent.update(
                status="requires_payment_method",
                last_payment_error=(
                    objects.last_payment_error(
                        failure, charge_id=charge["id"], payment_method_id=card["payment_method"]
                    )
                ),
            )
        self.store.save(charge)
        self.store.save(intent)
        return charge

    def _remember_card(self, customer: Obj, card: Obj) -> None:
        stored = self.load(customer["id"], "customer")
        cards = stored.private.setdefault("cards", {})
        cards[card["payment_method"]] = card
        self.store.save(stored.data, private=stored.private)

    def _card_for(self, sub: Obj) -> Obj:
        customer = self.load(sub["customer"], "customer")
        pm = (
            sub["default_payment_method"]
            or customer.data["invoice_settings"]["default_payment_method"]
        )
        cards = customer.private.get("cards", {})
        return cards.get(pm) or self._new_card("visa_4242")

    def _price_from_data(self, ctx: Ctx, data: Params, *, product_data_allowed: bool) -> Obj:
        """Create the inline Price (and Product) that Stripe makes for ``price_data``."""
        allowed = {
            "currency",
            "product",
            "recurring",
            "tax_behavior",
            "unit_amount",
            "unit_amount_decimal",
        }
        if product_data_allowed:
            allowed.add("product_data")
        data.check(allowed, allowed - {"tax_behavior", "unit_amount_decimal"})
        currency = data.str("currency", required=True)
        if not re.fullmatch(r"[a-z]{3}", currency):
            raise ApiError.invalid(f"Invalid currency: {currency}", param=data.name("currency"))
        unit_amount = data.int("unit_amount", required=True, minimum=0)
        product_id = data.str("product")
        product_data = data.sub("product_data") if product_data_allowed else None
        if bool(product_id) == bool(product_data):
            which = "`product` or `product_data`" if product_data_allowed else "`product`"
            raise ApiError.invalid(
                f"You must specify {which} in {data.prefix}.",
                param=data.name("product"),
                code="parameter_missing",
            )
        if product_data is None:
            product_obj = self.load(product_id, "product", data.name("product")).data
        else:
            product_data.check(
                {
                    "description",
                    "images",
                    "metadata",
                    "name",
                    "tax_code",
                    "tax_details",
                    "unit_label",
                },
                {"description", "metadata", "name"},
            )
            product_obj = objects.product(
                name=product_data.str("name", required=True, max_length=250),
                description=product_data.str("description", max_length=40000),
                metadata={k: v for k, v in (product_data.metadata() or {}).items() if v},
                created=ctx.now,
            )
            self.store.save(product_obj)
        interval, interval_count = None, 1
        recurring = data.sub("recurring")
        if recurring:
            recurring.check({"interval", "interval_count"}, {"interval", "interval_count"})
            interval = recurring.str("interval", required=True, choices=INTERVALS)
            interval_count = recurring.int("interval_count", minimum=1) or 1
        price_obj = objects.price(
            product_id=product_obj["id"],
            currency=currency,
            unit_amount=unit_amount,
            interval=interval,
            interval_count=interval_count,
            created=ctx.now,
        )
        self.store.save(price_obj)
        return price_obj

    # -- operations of the other areas --

    @abstractmethod
    def emit(self, ctx: Ctx, event_type: str, obj: Obj, previous: Obj | None = None) -> Obj:
        """Record an event (events area)."""

    @abstractmethod
    def session_line_items(self, session: Obj) -> Obj:
        """A Checkout Session's ``line_items`` list (checkout area)."""

    @abstractmethod
    def invoice_payments_list(self, invoice_id: str) -> Obj:
        """An invoice's ``payments`` list (subscriptions and invoices area)."""

    @abstractmethod
    def charge_refunds_list(self, charge_id: str) -> Obj:
        """A charge's ``refunds`` list (refunds and disputes area)."""

    @abstractmethod
    def _start_subscription(
        self, ctx: Ctx, session: Obj, private: Obj, customer: Obj, card: Obj
    ) -> tuple[Obj, Obj, Obj, Obj]:
        """Subscribe a completed Checkout Session's customer (subscriptions area)."""

    @abstractmethod
    def _end_subscription(self, ctx: Ctx, sub: Obj) -> None:
        """Cancel a subscription now (subscriptions area)."""
