"""A local Stripe simulator: a plain werkzeug WSGI app speaking the part of Stripe's API that
DonorHub uses, with hosted-looking Checkout and Billing Portal pages and signed webhooks.

Three surfaces:
- ``/v1/...``: the API, form-encoded like stripe-python sends it, answered with objects built
  from Stripe's fixtures (``objects.py``), with Stripe's error shapes and idempotency rules;
- ``/checkout/...``, ``/billing_portal/...``: the pages a donor clicks through;
- ``/_sim/...``: control endpoints for tests and CLI commands (renewals, disputes, faults).

Nothing here imports the rest of DonorHub, so tests and ``make run`` can start it alone.
"""

from __future__ import annotations

import calendar
import copy
import hashlib
import ipaddress
import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
import stripe
from stripe.params import (
    CustomerCreateParams,
    EventListParams,
    InvoicePaymentListParams,
    RefundCreateParams,
    SubscriptionCancelParams,
    SubscriptionUpdateParams,
)
from stripe.params.billing_portal import SessionCreateParams as PortalSessionCreateParams
from stripe.params.checkout import SessionCreateParams as CheckoutSessionCreateParams
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from . import objects
from .objects import API_VERSION, Obj, format_amount, new_id
from .store import Store

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).with_name("templates")

# Retry schedule for webhook delivery: 5 tries in all, like a (much faster) Stripe.
DEFAULT_WEBHOOK_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)
WEBHOOK_TIMEOUT_SECONDS = 10.0

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}

CARDS = {
    "visa_4242": {"brand": "visa", "last4": "4242", "behaviour": "succeed",
                  "label": "Visa ending 4242: payments succeed"},
    "mastercard_4444": {"brand": "mastercard", "last4": "4444", "behaviour": "succeed",
                        "label": "Mastercard ending 4444: payments succeed"},
    "visa_0341": {"brand": "visa", "last4": "0341", "behaviour": "insufficient_funds",
                  "label": "Visa ending 0341: later payments are declined (insufficient funds)"},
}

PAGE_ERRORS = {
    "card_declined": "Your card was declined. Try again, or use a different card.",
    "authentication_failed": objects.decline("authentication_required")["message"],
    "email_required": "Enter your email address.",
}

INTERVALS = ("day", "week", "month", "year")

# Request options that stripe-python's TypedDicts mix into their param types; never sent.
_REQUEST_OPTIONS = {"api_key", "content_type", "headers", "idempotency_key",
                    "max_network_retries", "stripe_account", "stripe_context", "stripe_version"}


def _known(params_type: Any) -> frozenset[str]:
    """The parameter names that Stripe's API accepts, from stripe-python's own typing."""
    keys = params_type.__required_keys__ | params_type.__optional_keys__
    return frozenset(keys - _REQUEST_OPTIONS)


# --- production and host guards -----------------------------------------------------------


def refuse_production(production: bool | None = None) -> None:
    """Raise SystemExit if this is (or looks like) a production deployment."""
    if production or os.environ.get("DONORHUB_ENV", "").strip().lower() == "production":
        raise SystemExit(
            "The Stripe simulator refuses to start in production: it accepts any test key, "
            "fakes payments and has unauthenticated control endpoints. Use real Stripe keys."
        )


def check_loopback_host(host: str) -> str:
    """Return the address to bind; raise SystemExit for anything but the loopback interface."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise SystemExit(
        f"The Stripe simulator listens on the loopback interface only (127.0.0.1), not "
        f"{host!r}: its control endpoints have no authentication."
    )


# --- errors -------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered in Stripe's JSON shape: {"error": {"type", "message", "code", ...}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: Obj = {"type": type, "message": message, "code": code}
        if param is not None:
            self.body["param"] = param
        if decline_code is not None:
            self.body["decline_code"] = decline_code
        if code:
            self.body["doc_url"] = f"https://docs.stripe.com/error-codes/{code.replace('_', '-')}"

    @classmethod
    def invalid(cls, message: str, param: str | None = None, code: str | None = None):
        return cls(400, message, param=param, code=code)

    @classmethod
    def missing(cls, object_type: str, object_id: str, param: str = "id"):
        # Stripe answers 404 for an unknown id in the URL, 400 for one in the parameters.
        return cls(404 if param == "id" else 400, f"No such {object_type}: '{object_id}'",
                   code="resource_missing", param=param)

    def response(self, headers: dict[str, str] | None = None) -> Response:
        return _json_response({"error": self.body}, self.status, headers)


def _json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None):
    return Response(json.dumps(body, indent=2), status=status, headers=headers,
                    content_type="application/json")


# --- Stripe's bracket notation ---------------------------------------------------------------

_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT_RE = re.compile(r"\[([^\[\]]*)\]")


def decode_params(pairs: list[tuple[str, str]]) -> Obj:
    """Turn ``a[b][0][c]=v`` pairs into nested dicts and lists, as Stripe's API reads them.

    ``x[]=1&x[]=2`` appends; dicts whose keys are all indexes become lists, except under
    ``metadata`` where "0" is an ordinary key.
    """
    root: Obj = {}
    for raw_key, value in pairs:
        match = _KEY_RE.match(raw_key)
        if not match:
            raise ApiError.invalid(f"Invalid parameter name: {raw_key}", param=raw_key)
        parts = [match.group(1), *_SEGMENT_RE.findall(match.group(2))]
        node = root
        for depth, part in enumerate(parts):
            if part == "":
                part = str(len(node))
            if depth == len(parts) - 1:
                if isinstance(node.get(part), dict):
                    raise ApiError.invalid(f"Invalid hash: {raw_key}", param=raw_key)
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise ApiError.invalid(f"Invalid hash: {raw_key}", param=raw_key)
                node = child
    return _listify(root, parent_key=None)


def _listify(node: Any, parent_key: str | None) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v, k) for k, v in node.items()}
    if parent_key != "metadata" and converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


class Params:
    """Typed reads of decoded parameters, with Stripe's error messages and param names."""

    def __init__(self, data: Obj, prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix

    def name(self, key: str) -> str:
        return f"{self.prefix}[{key}]" if self.prefix else key

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def check(self, known: frozenset[str] | set[str], supported: set[str]) -> None:
        """Reject unknown parameters as Stripe does, and known ones the simulator lacks."""
        for key in self.data:
            if key not in known:
                raise ApiError.invalid(f"Received unknown parameter: {self.name(key)}",
                                       param=self.name(key), code="parameter_unknown")
            if key not in supported:
                raise ApiError.invalid(
                    f"The Stripe simulator does not implement the parameter {self.name(key)}. "
                    "Extend donorhub/payments/simulator if DonorHub needs it.",
                    param=self.name(key), code="parameter_unknown",
                )

    def _scalar(self, key: str, required: bool) -> str | None:
        if key not in self.data or self.data[key] == "":
            if required:
                raise ApiError.invalid(f"Missing required param: {self.name(key)}.",
                                       param=self.name(key), code="parameter_missing")
            return None
        value = self.data[key]
        if not isinstance(value, str):
            raise ApiError.invalid(f"Invalid string: {self.name(key)} must be a string",
                                   param=self.name(key))
        return value

    def str(self, key: str, *, required: bool = False, choices: tuple[str, ...] = (),
            max_length: int = 5000) -> str | None:
        value = self._scalar(key, required)
        if value is None:
            return None
        if choices and value not in choices:
            options = ", ".join(f"`{c}`" for c in choices)
            raise ApiError.invalid(
                f"Invalid {self.name(key)}: must be one of {options}", param=self.name(key))
        if len(value) > max_length:
            raise ApiError.invalid(
                f"Invalid {self.name(key)}: must be at most {max_length} characters",
                param=self.name(key))
        return value

    def int(self, key: str, *, required: bool = False, minimum: int | None = None) -> int | None:
        value = self._scalar(key, required)
        if value is None:
            return None
        if not re.fullmatch(r"-?\d+", value):
            raise ApiError.invalid(f"Invalid integer: {value}", param=self.name(key))
        number = int(value)
        if minimum is not None and number < minimum:
            raise ApiError.invalid(
                f"Invalid {self.name(key)}: must be greater than or equal to {minimum}",
                param=self.name(key))
        return number

    def bool(self, key: str) -> bool | None:
        value = self._scalar(key, False)
        if value is None:
            return None
        if value not in ("true", "false"):
            raise ApiError.invalid(f"Invalid boolean: {value}", param=self.name(key))
        return value == "true"

    def sub(self, key: str, *, required: bool = False) -> Params | None:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                raise ApiError.invalid(f"Missing required param: {self.name(key)}.",
                                       param=self.name(key), code="parameter_missing")
            return None
        if not isinstance(value, dict):
            raise ApiError.invalid(f"Invalid object: {self.name(key)}", param=self.name(key))
        return Params(value, self.name(key))

    def list(self, key: str) -> list[Any] | None:
        value = self.data.get(key)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            raise ApiError.invalid(f"Invalid array: {self.name(key)}", param=self.name(key))
        return value

    def metadata(self, key: str = "metadata") -> dict[str, str] | None:
        """Metadata as given; "" values are kept so that updates can delete keys."""
        value = self.data.get(key)
        if value is None:
            return None
        if value == "":
            return {}
        if not isinstance(value, dict):
            raise ApiError.invalid(f"Invalid object: {self.name(key)}", param=self.name(key))
        if len(value) > 50:
            raise ApiError.invalid("You can only specify up to 50 metadata keys.",
                                   param=self.name(key))
        for meta_key, meta_value in value.items():
            if not isinstance(meta_value, str):
                raise ApiError.invalid(
                    f"Invalid value for {self.name(key)}[{meta_key}]: metadata values must be "
                    "strings.", param=f"{self.name(key)}[{meta_key}]")
            if len(meta_key) > 40:
                raise ApiError.invalid("Metadata keys can have a maximum length of 40 "
                                       "characters.", param=f"{self.name(key)}[{meta_key}]")
            if len(meta_value) > 500:
                raise ApiError.invalid("Metadata values can have a maximum length of 500 "
                                       "characters.", param=f"{self.name(key)}[{meta_key}]")
        return dict(value)

    def expand(self) -> list[str]:
        return [p for p in (self.list("expand") or []) if isinstance(p, str)]


def _merge_metadata(current: dict[str, str], update: dict[str, str] | None) -> dict[str, str]:
    """Stripe's update rules: ``metadata=""`` clears, ``metadata[k]=""`` deletes one key."""
    if update is None:
        return current
    if update == {}:
        return {}
    merged = dict(current)
    for key, value in update.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _created_filter(params: Params) -> dict[str, int]:
    if "created" not in params:
        return {}
    value = params.data["created"]
    if isinstance(value, str):
        exact = params.int("created")
        return {"gte": exact, "lte": exact}
    ranges = params.sub("created")
    ranges.check({"gt", "gte", "lt", "lte"}, {"gt", "gte", "lt", "lte"})
    return {op: ranges.int(op) for op in ranges.data}


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


def _interval_text(recurring: Obj | None) -> str:
    if not recurring:
        return ""
    count, interval = recurring["interval_count"], recurring["interval"]
    return interval if count == 1 else f"{count} {interval}s"


def _page(found: list[Obj], limit: int, starting_after: str | None,
          ending_before: str | None, object_type: str) -> tuple[list[Obj], bool]:
    """One page of a list (newest first) by Stripe's cursors: (page, has_more)."""
    if starting_after and ending_before:
        raise ApiError.invalid("You may only specify one of these parameters: "
                               "ending_before, starting_after.", param="ending_before")
    ids = [o["id"] for o in found]
    if starting_after:
        if starting_after not in ids:
            raise ApiError.missing(object_type, starting_after, "starting_after")
        rest = found[ids.index(starting_after) + 1:]
        return rest[:limit], len(rest) > limit
    if ending_before:
        if ending_before not in ids:
            raise ApiError.missing(object_type, ending_before, "ending_before")
        rest = found[:ids.index(ending_before)]
        return rest[-limit:], len(rest) > limit
    return found[:limit], len(found) > limit


def _diff(old: Obj, new: Obj) -> Obj:
    """Stripe's ``previous_attributes``: old values of the top-level fields that changed."""
    return {key: old.get(key) for key in new if old.get(key) != new.get(key)}


# --- the simulated account ------------------------------------------------------------------


@dataclass
class Ctx:
    """Who is acting: the API (with a request id and idempotency key) or a page/control."""

    base_url: str
    now: int
    request_id: str | None = None
    idempotency_key: str | None = None


class Engine:
    """Stripe's behaviour over the store. Every method runs inside a store transaction."""

    def __init__(self, store: Store, *, deliver: bool) -> None:
        self.store = store
        self.deliver = deliver

    # -- plumbing --

    def load(self, object_id: str | None, object_type: str, param: str = "id"):
        stored = self.store.get(object_id) if object_id else None
        if stored is None or stored.type != object_type:
            raise ApiError.missing(object_type, object_id or "", param)
        return stored

    def load_live_customer(self, customer_id: str, param: str = "customer"):
        stored = self.load(customer_id, "customer", param)
        if stored.data.get("deleted"):
            raise ApiError.missing("customer", customer_id, param)
        return stored

    def emit(self, ctx: Ctx, event_type: str, obj: Obj, previous: Obj | None = None) -> Obj:
        event = objects.event(
            type=event_type, obj=obj, created=ctx.now, request_id=ctx.request_id,
            idempotency_key=ctx.idempotency_key, previous_attributes=previous,
            pending_webhooks=1 if self.deliver else 0,
        )
        self.store.add_event(event, deliver=self.deliver)
        return event

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
            ("checkout.session", "line_items"), ("invoice", "payments"), ("charge", "refunds")}
        if not isinstance(node, dict) or (key not in node and not virtual):
            raise ApiError.invalid(f"This property cannot be expanded ({full}).", param="expand")
        if virtual:
            if key == "refunds":
                node[key] = self.charge_refunds_list(node["id"])
            else:
                node[key] = (self.session_line_items(node) if key == "line_items"
                             else self.invoice_payments_list(node["id"]))
        elif isinstance(node[key], str):
            stored = self.store.get(node[key])
            if stored is None:
                raise ApiError.invalid(f"This property cannot be expanded ({full}).",
                                       param="expand")
            node[key] = stored.data
        elif node[key] is None:
            return
        elif not isinstance(node[key], dict):
            raise ApiError.invalid(f"This property cannot be expanded ({full}).", param="expand")
        if rest:
            self._expand_path(node[key], rest, full)

    def expire_due_sessions(self, ctx: Ctx) -> None:
        """Stripe expires open Checkout Sessions at ``expires_at``; we do it lazily."""
        for session_id in self.store.open_sessions_due(ctx.now):
            self._expire_session(ctx, self.store.get(session_id))

    # -- checkout --

    def create_checkout_session(self, ctx: Ctx, params: Params) -> Obj:
        params.check(
            _known(CheckoutSessionCreateParams),
            {"mode", "line_items", "success_url", "cancel_url", "customer", "customer_email",
             "customer_creation", "client_reference_id", "metadata", "subscription_data",
             "payment_intent_data", "expires_at", "submit_type", "locale",
             "payment_method_types", "ui_mode", "expand"},
        )
        mode = params.str("mode", required=True, choices=("payment", "setup", "subscription"))
        if mode == "setup":
            raise ApiError.invalid("The Stripe simulator does not implement mode=setup.",
                                   param="mode")
        success_url = self._url(params, "success_url", required=True)
        cancel_url = self._url(params, "cancel_url")
        params.str("ui_mode", choices=("hosted",))
        methods = params.list("payment_method_types")
        if methods is not None and methods != ["card"]:
            raise ApiError.invalid("The Stripe simulator only implements card payments.",
                                   param="payment_method_types")
        customer_id = params.str("customer")
        customer_email = params.str("customer_email", max_length=800)
        if customer_id and customer_email:
            raise ApiError.invalid(
                "You may only specify one of these parameters: customer, customer_email.",
                param="customer_email")
        if customer_id:
            self.load_live_customer(customer_id)
        if customer_email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", customer_email):
            raise ApiError.invalid(f"Invalid email address: {customer_email}",
                                   param="customer_email", code="email_invalid")
        customer_creation = params.str("customer_creation", choices=("always", "if_required"))
        if customer_creation and mode != "payment":
            raise ApiError.invalid("`customer_creation` can only be used in `payment` mode.",
                                   param="customer_creation")
        if mode == "payment" and customer_creation is None:
            customer_creation = "if_required"
        submit_type = params.str("submit_type",
                                 choices=("auto", "book", "donate", "pay", "subscribe"))
        client_reference_id = params.str("client_reference_id", max_length=200)
        metadata = {k: v for k, v in (params.metadata() or {}).items() if v != ""}

        intent_data = params.sub("payment_intent_data")
        if intent_data and mode != "payment":
            raise ApiError.invalid(f"You can not pass `payment_intent_data` in `{mode}` mode.",
                                   param="payment_intent_data")
        intent_private: Obj = {}
        if intent_data:
            intent_data.check(
                {"application_fee_amount", "capture_method", "description", "metadata",
                 "on_behalf_of", "receipt_email", "setup_future_usage", "shipping",
                 "statement_descriptor", "statement_descriptor_suffix", "transfer_data",
                 "transfer_group"},
                {"description", "metadata", "receipt_email", "statement_descriptor_suffix"},
            )
            intent_private = {
                "description": intent_data.str("description", max_length=1000),
                "metadata": {k: v for k, v in (intent_data.metadata() or {}).items() if v},
                "receipt_email": intent_data.str("receipt_email"),
                "statement_descriptor_suffix": intent_data.str("statement_descriptor_suffix",
                                                               max_length=22),
            }
        sub_data = params.sub("subscription_data")
        if sub_data and mode != "subscription":
            raise ApiError.invalid(f"You can not pass `subscription_data` in `{mode}` mode.",
                                   param="subscription_data")
        sub_private: Obj = {}
        if sub_data:
            sub_data.check(
                {"application_fee_percent", "billing_cycle_anchor", "billing_cycle_anchor_config",
                 "billing_mode", "default_tax_rates", "description", "invoice_settings",
                 "metadata", "on_behalf_of", "pending_invoice_item_interval",
                 "proration_behavior", "transfer_data", "trial_end", "trial_period_days",
                 "trial_settings"},
                {"description", "metadata"},
            )
            sub_private = {
                "description": sub_data.str("description", max_length=500),
                "metadata": {k: v for k, v in (sub_data.metadata() or {}).items() if v},
            }

        expires_at = params.int("expires_at")
        if expires_at is None:
            expires_at = ctx.now + 24 * 3600
        elif not ctx.now + 30 * 60 <= expires_at <= ctx.now + 24 * 3600:
            raise ApiError.invalid(
                "The `expires_at` timestamp must be between 30 minutes and 24 hours from "
                "Checkout Session creation.", param="expires_at")

        lines, currency = self._line_items(ctx, params, mode)
        total = sum(line["amount_total"] for line in lines)
        minimum = objects.MINIMUM_CHARGE.get(currency)
        if minimum and total < minimum:
            raise ApiError.invalid(
                "The Checkout Session's total amount due must add up to at least "
                f"{format_amount(minimum, currency)} {currency}", code="amount_too_small",
                param="line_items")

        session = objects.checkout_session(
            mode=mode, currency=currency, amount_total=total, success_url=success_url,
            cancel_url=cancel_url, customer_id=customer_id, customer_email=customer_email,
            customer_creation=customer_creation, client_reference_id=client_reference_id,
            metadata=metadata, submit_type=submit_type, locale=params.str("locale"),
            expires_at=expires_at, created=ctx.now,
        )
        session["url"] = f"{ctx.base_url}/checkout/{session['id']}"
        private = {"line_items": lines, "payment_intent_data": intent_private,
                   "subscription_data": sub_private}
        self.store.save(session, private=private, open_until=expires_at)
        return self.expand(session, params.expand())

    @staticmethod
    def _url(params: Params, key: str, required: bool = False) -> str | None:
        value = params.str(key, required=required, max_length=5000)
        if value is not None and not re.match(r"https?://[^\s/]+", value):
            raise ApiError.invalid(f"Not a valid URL: {value}", param=key, code="url_invalid")
        return value

    def _line_items(self, ctx: Ctx, params: Params, mode: str) -> tuple[list[Obj], str]:
        raw_items = params.list("line_items")
        if not raw_items:
            raise ApiError.invalid("Missing required param: line_items.", param="line_items",
                                   code="parameter_missing")
        lines, currencies, recurring_count = [], set(), 0
        for index, raw in enumerate(raw_items):
            if not isinstance(raw, dict):
                raise ApiError.invalid(f"Invalid object: line_items[{index}]",
                                       param=f"line_items[{index}]")
            item = Params(raw, f"line_items[{index}]")
            item.check({"adjustable_quantity", "metadata", "price", "price_data", "quantity",
                        "tax_rates"}, {"price", "price_data", "quantity"})
            quantity = item.int("quantity", required=True, minimum=1)
            price_id = item.str("price")
            price_data = item.sub("price_data")
            if bool(price_id) == bool(price_data):
                raise ApiError.invalid(
                    f"You must specify either `price` or `price_data` in line_items[{index}].",
                    param=f"line_items[{index}]")
            if price_id:
                price_obj = self.load(price_id, "price", item.name("price")).data
            else:
                price_obj = self._price_from_data(ctx, price_data, product_data_allowed=True)
            product_obj = self.load(price_obj["product"], "product").data
            if price_obj["recurring"]:
                recurring_count += 1
                if mode == "payment":
                    raise ApiError.invalid(
                        "You specified `payment` mode but passed a recurring price. Either "
                        "switch to `subscription` mode or use only one-time prices.",
                        param=f"line_items[{index}]")
            elif mode == "subscription":
                raise ApiError.invalid(
                    "The Stripe simulator implements subscription mode with one recurring "
                    "price only; one-time items are not supported there.",
                    param=f"line_items[{index}]")
            currencies.add(price_obj["currency"])
            lines.append(objects.checkout_line_item(
                price_obj=price_obj, product_name=product_obj["name"], quantity=quantity))
        if mode == "subscription" and recurring_count != 1:
            raise ApiError.invalid(
                "The Stripe simulator implements subscription mode with exactly one line item.",
                param="line_items")
        if len(currencies) > 1:
            raise ApiError.invalid("All line items must use the same currency.",
                                   param="line_items")
        return lines, currencies.pop()

    def _price_from_data(self, ctx: Ctx, data: Params, *, product_data_allowed: bool) -> Obj:
        """Create the inline Price (and Product) that Stripe makes for ``price_data``."""
        allowed = {"currency", "product", "recurring", "tax_behavior", "unit_amount",
                   "unit_amount_decimal"}
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
            raise ApiError.invalid(f"You must specify {which} in {data.prefix}.",
                                   param=data.name("product"), code="parameter_missing")
        if product_id:
            self.load(product_id, "product", data.name("product"))
        else:
            product_data.check({"description", "images", "metadata", "name", "tax_code",
                                "tax_details", "unit_label"},
                               {"description", "metadata", "name"})
            product_obj = objects.product(
                name=product_data.str("name", required=True, max_length=250),
                description=product_data.str("description", max_length=40000),
                metadata={k: v for k, v in (product_data.metadata() or {}).items() if v},
                created=ctx.now,
            )
            self.store.save(product_obj)
            product_id = product_obj["id"]
        interval, interval_count = None, 1
        recurring = data.sub("recurring")
        if recurring:
            recurring.check({"interval", "interval_count"}, {"interval", "interval_count"})
            interval = recurring.str("interval", required=True, choices=INTERVALS)
            interval_count = recurring.int("interval_count", minimum=1) or 1
        price_obj = objects.price(product_id=product_id, currency=currency,
                                  unit_amount=unit_amount, interval=interval,
                                  interval_count=interval_count, created=ctx.now)
        self.store.save(price_obj)
        return price_obj

    def session_line_items(self, session: Obj) -> Obj:
        stored = self.load(session["id"], "checkout.session")
        return {"object": "list", "data": copy.deepcopy(stored.private["line_items"]),
                "has_more": False, "url": f"/v1/checkout/sessions/{session['id']}/line_items"}

    def expire_checkout_session(self, ctx: Ctx, session_id: str, params: Params) -> Obj:
        params.check({"expand"}, {"expand"})
        stored = self.load(session_id, "checkout.session", "session")
        if stored.data["status"] != "open":
            raise ApiError.invalid(
                'Only Checkout Sessions with a status in ["open"] can be expired. This '
                f'Checkout Session has a status of "{stored.data["status"]}".')
        return self.expand(self._expire_session(ctx, stored), params.expand())

    def _expire_session(self, ctx: Ctx, stored) -> Obj:
        session = stored.data
        session.update(status="expired", url=None)
        if session["payment_intent"]:
            intent = self.load(session["payment_intent"], "payment_intent").data
            intent.update(status="canceled", canceled_at=ctx.now,
                          cancellation_reason="abandoned", last_payment_error=None,
                          next_action=None)
            self.store.save(intent)
            self.emit(ctx, "payment_intent.canceled", intent)
        self.store.save(session, open_until=None)
        self.emit(ctx, "checkout.session.expired", session)
        return session

    def attempt_checkout(self, ctx: Ctx, session_id: str, outcome: str, email: str | None,
                         name: str | None) -> str | None:
        """A click on the checkout page. Returns a PAGE_ERRORS code, "authenticate" or None."""
        stored = self.load(session_id, "checkout.session")
        session, private = stored.data, stored.private
        if session["status"] != "open":
            return None
        email = email or self.known_email(session)
        if not email:
            return "email_required"
        private["payer"] = {"email": email, "name": name}
        if outcome == "decline":
            if session["mode"] == "payment":
                self._failed_checkout_payment(ctx, stored, objects.decline("generic_decline"))
            self.store.save(session, private=private, open_until=session["expires_at"])
            return "card_declined"
        if outcome == "requires_action":
            if session["mode"] == "payment":
                intent = self._session_intent(ctx, stored)
                intent.update(status="requires_action", next_action={
                    "type": "use_stripe_sdk",
                    "use_stripe_sdk": {"type": "three_d_secure_redirect",
                                       "stripe_js": f"{ctx.base_url}/checkout/{session_id}"
                                                    "/authenticate"}})
                self.store.save(intent)
                self.emit(ctx, "payment_intent.requires_action", intent)
            private["awaiting_authentication"] = True
            self.store.save(session, private=private, open_until=session["expires_at"])
            return "authenticate"
        self.complete_checkout(ctx, stored, three_d_secure=False)
        return None

    def authenticate_checkout(self, ctx: Ctx, session_id: str, passed: bool) -> str | None:
        stored = self.load(session_id, "checkout.session")
        session, private = stored.data, stored.private
        if session["status"] != "open" or not private.pop("awaiting_authentication", False):
            return None
        if passed:
            self.complete_checkout(ctx, stored, three_d_secure=True)
            return None
        if session["mode"] == "payment":
            failure = objects.decline("authentication_required")
            intent = self._session_intent(ctx, stored)
            intent.update(status="requires_payment_method", next_action=None,
                          last_payment_error=objects.last_payment_error(
                              failure, charge_id=None, payment_method_id=new_id("pm_")))
            self.store.save(intent)
            self.emit(ctx, "payment_intent.payment_failed", intent)
        self.store.save(session, private=private, open_until=session["expires_at"])
        return "authentication_failed"

    def known_email(self, session: Obj) -> str | None:
        if session["customer_email"]:
            return session["customer_email"]
        if session["customer"]:
            return self.load(session["customer"], "customer").data.get("email")
        return None

    def _session_intent(self, ctx: Ctx, stored) -> Obj:
        """The session's PaymentIntent, created at the first confirmation attempt."""
        session = stored.data
        if session["payment_intent"]:
            return self.load(session["payment_intent"], "payment_intent").data
        data = stored.private["payment_intent_data"]
        intent = objects.payment_intent(
            amount=session["amount_total"], currency=session["currency"],
            customer_id=session["customer"], description=data.get("description"),
            metadata=dict(data.get("metadata") or {}),
            receipt_email=data.get("receipt_email"), created=ctx.now)
        intent["statement_descriptor_suffix"] = data.get("statement_descriptor_suffix")
        self.store.save(intent)
        session["payment_intent"] = intent["id"]
        return intent

    def _failed_checkout_payment(self, ctx: Ctx, stored, failure: dict) -> None:
        intent = self._session_intent(ctx, stored)
        payer = stored.private["payer"]
        card = self._new_card("visa_4242")
        charge = self._charge(ctx, intent, card, payer, succeeded=False, failure=failure)
        self.emit(ctx, "charge.failed", charge)
        self.emit(ctx, "payment_intent.payment_failed", intent)

    def _new_card(self, choice: str) -> Obj:
        card = dict(CARDS[choice])
        card["payment_method"] = new_id("pm_")
        card["fingerprint"] = hashlib.sha256(choice.encode()).hexdigest()[:16]
        return card

    def _charge(self, ctx: Ctx, intent: Obj, card: Obj, payer: Obj, *, succeeded: bool,
                failure: dict | None = None, three_d_secure: bool = False) -> Obj:
        """One card attempt on ``intent``: saves the charge and the updated intent."""
        charge = objects.charge(
            payment_intent_obj=intent, card=card, billing_email=payer.get("email"),
            billing_name=payer.get("name"), succeeded=succeeded, failure=failure,
            three_d_secure=three_d_secure, receipt_url="", created=ctx.now)
        charge["receipt_url"] = f"{ctx.base_url}/receipts/{charge['id']}"
        intent.update(latest_charge=charge["id"], payment_method=card["payment_method"],
                      next_action=None)
        if succeeded:
            intent.update(status="succeeded", amount_received=intent["amount"],
                          last_payment_error=None)
        else:
            intent.update(status="requires_payment_method", last_payment_error=(
                objects.last_payment_error(failure, charge_id=charge["id"],
                                           payment_method_id=card["payment_method"])))
        self.store.save(charge)
        self.store.save(intent)
        return charge

    def complete_checkout(self, ctx: Ctx, stored, *, three_d_secure: bool,
                          paid: bool = True) -> None:
        """The payer's payment went through (or, ``paid=False``, is on its way: async)."""
        session, private = stored.data, stored.private
        payer = private["payer"]
        customer = self._checkout_customer(ctx, session, payer)
        card = self._new_card("visa_4242")
        later_events: list[tuple[str, Obj]] = []
        if session["mode"] == "payment":
            intent = self._session_intent(ctx, stored)
            intent["customer"] = customer["id"] if customer else None
            if paid:
                charge = self._charge(ctx, intent, card, payer, succeeded=True,
                                      three_d_secure=three_d_secure)
                later_events = [("payment_intent.succeeded", intent),
                                ("charge.succeeded", charge)]
            else:
                intent.update(status="processing", payment_method=card["payment_method"],
                              processing={"type": "card"})
                self.store.save(intent)
                later_events = [("payment_intent.processing", intent)]
        else:
            self._remember_card(customer, card)
            sub, invoice, intent, charge = self._start_subscription(ctx, session, private,
                                                                    customer, card)
            session.update(subscription=sub["id"], invoice=invoice["id"])
            later_events = [("invoice.paid", invoice), ("invoice.payment_succeeded", invoice),
                            ("customer.subscription.created", sub),
                            ("payment_intent.succeeded", intent), ("charge.succeeded", charge)]
        session.update(
            status="complete", payment_status="paid" if paid else "unpaid", url=None,
            customer=customer["id"] if customer else None,
            customer_details=objects.customer_details(email=payer["email"],
                                                      name=payer.get("name")),
        )
        private.pop("awaiting_authentication", None)
        self.store.save(session, private=private, open_until=None)
        self.emit(ctx, "checkout.session.completed", session)
        for event_type, obj in later_events:
            self.emit(ctx, event_type, obj)

    def _checkout_customer(self, ctx: Ctx, session: Obj, payer: Obj) -> Obj | None:
        if session["customer"]:
            return self.load(session["customer"], "customer").data
        # Stripe makes a Customer in payment mode only with customer_creation=always.
        if session["mode"] == "payment" and session["customer_creation"] != "always":
            return None
        customer = objects.customer(email=payer["email"], name=payer.get("name"),
                                    metadata={}, created=ctx.now)
        self.store.save(customer, private={"cards": {}})
        self.emit(ctx, "customer.created", customer)
        return customer

    def _remember_card(self, customer: Obj, card: Obj) -> None:
        stored = self.load(customer["id"], "customer")
        cards = stored.private.setdefault("cards", {})
        cards[card["payment_method"]] = card
        self.store.save(stored.data, private=stored.private)

    def _card_for(self, sub: Obj) -> Obj:
        customer = self.load(sub["customer"], "customer")
        pm = (sub["default_payment_method"]
              or customer.data["invoice_settings"]["default_payment_method"])
        cards = customer.private.get("cards", {})
        return cards.get(pm) or self._new_card("visa_4242")

    def _start_subscription(self, ctx, session, private, customer, card):
        line = private["line_items"][0]
        price_obj = self.load(line["price"]["id"], "price").data
        data = private.get("subscription_data") or {}
        period = (ctx.now, add_interval(ctx.now, price_obj["recurring"]["interval"],
                                        price_obj["recurring"]["interval_count"]))
        sub = objects.subscription(
            customer_id=customer["id"], price_obj=price_obj, quantity=line["quantity"],
            metadata=dict(data.get("metadata") or {}), description=data.get("description"),
            period=period, created=ctx.now)
        sub["default_payment_method"] = card["payment_method"]
        invoice = self._new_invoice(ctx, sub, "subscription_create", period, (ctx.now, ctx.now))
        self._finalize_invoice(ctx, invoice)
        intent, charge = self._pay_invoice(ctx, invoice, card, "succeed",
                                           description="Subscription creation")
        sub["latest_invoice"] = invoice["id"]
        self.store.save(sub, private={"anchor": period[0], "cycle": 0})
        return sub, invoice, intent, charge

    # -- invoices --

    def _new_invoice(self, ctx, sub, billing_reason, line_period, invoice_period) -> Obj:
        customer = self.load(sub["customer"], "customer")
        item = sub["items"]["data"][0]
        price_obj = item["price"]
        product_name = self.load(price_obj["product"], "product").data["name"]
        description = (f"{item['quantity']} × {product_name} (at "
                       f"{format_amount(price_obj['unit_amount'], price_obj['currency'])} / "
                       f"{_interval_text(price_obj['recurring'])})")
        invoice = objects.invoice(
            sub=sub, customer_obj=customer.data, billing_reason=billing_reason,
            line_period=line_period, invoice_period=invoice_period,
            line_description=description, hosted_url_base=ctx.base_url, created=ctx.now)
        # Drafts have no number or hosted page yet; finalizing gives them both.
        invoice.update(status="draft", number=None, hosted_invoice_url=None)
        invoice["status_transitions"]["finalized_at"] = None
        customer.data["next_invoice_sequence"] += 1
        self.store.save(customer.data)
        self.store.save(invoice, private={"customer_sequence":
                                          customer.data["next_invoice_sequence"] - 1})
        return invoice

    def _finalize_invoice(self, ctx: Ctx, invoice: Obj) -> None:
        stored = self.load(invoice["id"], "invoice")
        customer = self.load(invoice["customer"], "customer").data
        invoice.update(
            status="open",
            number=f"{customer['invoice_prefix']}-{stored.private['customer_sequence']:04d}",
            hosted_invoice_url=f"{ctx.base_url}/invoices/{invoice['id']}",
        )
        invoice["status_transitions"]["finalized_at"] = ctx.now
        self.store.save(invoice)

    def _pay_invoice(self, ctx: Ctx, invoice: Obj, card: Obj, outcome: str,
                     description: str) -> tuple[Obj, Obj | None]:
        """Attempt to collect ``invoice``; saves everything and returns (intent, charge)."""
        stored = self.load(invoice["id"], "invoice")
        customer = self.load(invoice["customer"], "customer").data
        intent_id = stored.private.get("payment_intent")
        if intent_id:  # Stripe retries an invoice on the same PaymentIntent
            intent = self.load(intent_id, "payment_intent").data
        else:
            intent = objects.payment_intent(
                amount=invoice["amount_due"], currency=invoice["currency"],
                customer_id=invoice["customer"], description=description, metadata={},
                receipt_email=None, created=ctx.now)
            self.store.save(intent)
            payment = objects.invoice_payment(invoice_obj=invoice, payment_intent_id=intent["id"],
                                              created=ctx.now)
            self.store.save(payment, parent=invoice["id"])
            stored.private.update(payment_intent=intent["id"], invoice_payment=payment["id"])
        invoice.update(attempted=True, attempt_count=invoice["attempt_count"] + 1)
        payer = {"email": customer.get("email"), "name": customer.get("name")}
        charge = None
        if outcome == "action_required":
            intent.update(status="requires_action", payment_method=card["payment_method"],
                          next_action={"type": "use_stripe_sdk", "use_stripe_sdk": {
                              "type": "three_d_secure_redirect",
                              "stripe_js": invoice["hosted_invoice_url"]}})
            self.store.save(intent)
            invoice["next_payment_attempt"] = None
        elif outcome == "succeed":
            charge = self._charge(ctx, intent, card, payer, succeeded=True)
            invoice.update(status="paid", amount_paid=invoice["amount_due"], amount_remaining=0,
                           next_payment_attempt=None)
            invoice["status_transitions"]["paid_at"] = ctx.now
            payment = self.load(stored.private["invoice_payment"], "invoice_payment").data
            payment.update(status="paid", amount_paid=invoice["amount_due"])
            payment["status_transitions"]["paid_at"] = ctx.now
            self.store.save(payment)
        else:
            charge = self._charge(ctx, intent, card, payer, succeeded=False,
                                  failure=objects.decline(outcome))
            # Smart Retries would try again in a few days; the control endpoint stands in.
            invoice["next_payment_attempt"] = ctx.now + 3 * 86400
        self.store.save(invoice, private=stored.private)
        return intent, charge

    def _invoice_payment_events(self, ctx, invoice, intent, charge, outcome) -> None:
        if outcome == "succeed":
            self.emit(ctx, "charge.succeeded", charge)
            self.emit(ctx, "payment_intent.succeeded", intent)
            self.emit(ctx, "invoice.paid", invoice)
            self.emit(ctx, "invoice.payment_succeeded", invoice)
        elif outcome == "action_required":
            self.emit(ctx, "payment_intent.requires_action", intent)
            self.emit(ctx, "invoice.payment_action_required", invoice)
        else:
            self.emit(ctx, "charge.failed", charge)
            self.emit(ctx, "payment_intent.payment_failed", intent)
            self.emit(ctx, "invoice.payment_failed", invoice)

    def invoice_payments_list(self, invoice_id: str) -> Obj:
        payments = [p.data for p in self.store.children(invoice_id, "invoice_payment")]
        return {"object": "list", "data": payments, "has_more": False,
                "url": f"/v1/invoice_payments?invoice={invoice_id}"}

    def list_invoice_payments(self, params: Params) -> Obj:
        params.check(_known(InvoicePaymentListParams), {"invoice", "payment", "expand", "limit"})
        params.int("limit", minimum=1)
        invoice_id = params.str("invoice")
        payment = params.sub("payment")
        intent_id = None
        if payment:
            payment.check({"payment_intent", "payment_record", "type"},
                          {"payment_intent", "type"})
            payment.str("type", choices=("payment_intent",))
            intent_id = payment.str("payment_intent")
        if not invoice_id and not intent_id:
            raise ApiError.invalid("The Stripe simulator needs `invoice` or "
                                   "`payment[payment_intent]` to list invoice payments.")
        if invoice_id:
            listing = self.invoice_payments_list(invoice_id)
        else:
            found = [p.data for p in self.store.of_type("invoice_payment")
                     if p.data["payment"].get("payment_intent") == intent_id]
            listing = {"object": "list", "data": found, "has_more": False,
                       "url": "/v1/invoice_payments"}
        if intent_id:
            listing["data"] = [p for p in listing["data"]
                               if p["payment"].get("payment_intent") == intent_id]
        return self.expand(listing, params.expand())

    def retry_invoice(self, ctx: Ctx, invoice_id: str, outcome: str) -> Obj:
        """Control: Stripe's next automatic attempt on an open invoice."""
        invoice = self.load(invoice_id, "invoice").data
        if invoice["status"] != "open":
            raise ApiError.invalid(f"Invoice {invoice_id} is {invoice['status']}, not open.")
        sub_id = invoice["parent"]["subscription_details"]["subscription"]
        sub = self.load(sub_id, "subscription").data
        card = self._card_for(sub) if outcome == "auto" else self._new_card("visa_4242")
        if outcome == "auto":
            outcome = card["behaviour"]
        intent, charge = self._pay_invoice(ctx, invoice, card, outcome,
                                           description="Subscription update")
        self._invoice_payment_events(ctx, invoice, intent, charge, outcome)
        if outcome == "succeed" and sub["status"] == "past_due" \
                and sub["latest_invoice"] == invoice_id:
            old = copy.deepcopy(sub)
            sub["status"] = "active"
            self.store.save(sub)
            self.emit(ctx, "customer.subscription.updated", sub, _diff(old, sub))
        return {"invoice": invoice, "subscription": sub}

    # -- subscriptions --

    def renew(self, ctx: Ctx, sub_id: str, outcome: str) -> Obj:
        """Control: the subscription reaches the end of its period (``outcome`` may force)."""
        stored = self.load(sub_id, "subscription")
        sub, private = stored.data, stored.private
        if sub["status"] == "canceled":
            raise ApiError.invalid(f"Subscription {sub_id} is canceled; it does not renew.")
        old = copy.deepcopy(sub)
        item = sub["items"]["data"][0]
        if sub["cancel_at_period_end"] or (sub["cancel_at"] and
                                           sub["cancel_at"] <= item["current_period_end"]):
            sub.update(status="canceled", canceled_at=sub["canceled_at"] or ctx.now,
                       ended_at=ctx.now)
            self.store.save(sub)
            self.emit(ctx, "customer.subscription.deleted", sub)
            return {"subscription": sub, "invoice": None}
        recurring = item["price"]["recurring"]
        private["cycle"] += 1
        old_period = (item["current_period_start"], item["current_period_end"])
        new_period = (old_period[1], add_interval(
            private["anchor"], recurring["interval"],
            recurring["interval_count"] * (private["cycle"] + 1)))
        item.update(current_period_start=new_period[0], current_period_end=new_period[1])
        pause = sub["pause_collection"]
        if pause and pause.get("resumes_at") and pause["resumes_at"] <= new_period[0]:
            sub["pause_collection"] = pause = None
        invoice = self._new_invoice(ctx, sub, "subscription_cycle", new_period, old_period)
        sub["latest_invoice"] = invoice["id"]
        self.emit(ctx, "invoice.created", invoice)
        if pause:
            self._paused_invoice(ctx, invoice, pause["behavior"])
        else:
            self._finalize_invoice(ctx, invoice)
            self.emit(ctx, "invoice.finalized", invoice)
            card = self._card_for(sub)
            if outcome == "auto":
                outcome = card["behaviour"]
            intent, charge = self._pay_invoice(ctx, invoice, card, outcome,
                                               description="Subscription update")
            self._invoice_payment_events(ctx, invoice, intent, charge, outcome)
            sub["status"] = "active" if outcome == "succeed" else "past_due"
        self.store.save(sub, private=private)
        self.emit(ctx, "customer.subscription.updated", sub, _diff(old, sub))
        return {"subscription": sub, "invoice": invoice}

    def _paused_invoice(self, ctx: Ctx, invoice: Obj, behavior: str) -> None:
        """pause_collection: Stripe still makes the invoice but does not collect it."""
        if behavior == "keep_as_draft":
            return
        self._finalize_invoice(ctx, invoice)
        if behavior == "void":
            invoice.update(status="void", amount_remaining=0)
            invoice["status_transitions"]["voided_at"] = ctx.now
            event_type = "invoice.voided"
        else:
            invoice["status"] = "uncollectible"
            invoice["status_transitions"]["marked_uncollectible_at"] = ctx.now
            event_type = "invoice.marked_uncollectible"
        self.store.save(invoice)
        self.emit(ctx, event_type, invoice)

    def update_subscription(self, ctx: Ctx, sub_id: str, params: Params) -> Obj:
        params.check(_known(SubscriptionUpdateParams),
                     {"items", "proration_behavior", "pause_collection", "cancel_at_period_end",
                      "metadata", "description", "cancellation_details", "expand"})
        stored = self.load(sub_id, "subscription", "subscription")
        sub, private = stored.data, stored.private
        old = copy.deepcopy(sub)
        if sub["status"] == "canceled" and set(params.data) - {"metadata", "cancellation_details",
                                                               "expand"}:
            raise ApiError.invalid("A canceled subscription can only update its "
                                   "cancellation_details and metadata.")
        params.str("proration_behavior", choices=("always_invoice", "create_prorations", "none"))
        sub["metadata"] = _merge_metadata(sub["metadata"], params.metadata())
        if "description" in params:
            sub["description"] = params.str("description", max_length=500)
        details = params.sub("cancellation_details")
        if details:
            details.check({"comment", "feedback"}, {"comment", "feedback"})
            sub["cancellation_details"].update(
                comment=details.str("comment", max_length=5000),
                feedback=details.str("feedback", choices=(
                    "customer_service", "low_quality", "missing_features", "other",
                    "switched_service", "too_complex", "too_expensive", "unused")))
        if "pause_collection" in params:
            pause = params.sub("pause_collection")
            if pause is None:
                sub["pause_collection"] = None
            else:
                pause.check({"behavior", "resumes_at"}, {"behavior", "resumes_at"})
                sub["pause_collection"] = {
                    "behavior": pause.str("behavior", required=True,
                                          choices=("keep_as_draft", "mark_uncollectible",
                                                   "void")),
                    "resumes_at": pause.int("resumes_at"),
                }
        cancel_at_period_end = params.bool("cancel_at_period_end")
        if cancel_at_period_end is not None:
            period_end = sub["items"]["data"][0]["current_period_end"]
            sub.update(cancel_at_period_end=cancel_at_period_end,
                       cancel_at=period_end if cancel_at_period_end else None)
            sub["cancellation_details"]["reason"] = (
                "cancellation_requested" if cancel_at_period_end else None)
        interval_changed = False
        if params.list("items"):
            interval_changed = self._update_items(ctx, sub, params)
        invoice_events = None
        if interval_changed:
            # Changing the interval resets the billing cycle and invoices at once (Stripe).
            # The simulator charges the full new price: it does not compute prorations.
            item = sub["items"]["data"][0]
            recurring = item["price"]["recurring"]
            period = (ctx.now, add_interval(ctx.now, recurring["interval"],
                                            recurring["interval_count"]))
            item.update(current_period_start=period[0], current_period_end=period[1])
            sub["billing_cycle_anchor"] = ctx.now
            private.update(anchor=ctx.now, cycle=0)
            invoice = self._new_invoice(ctx, sub, "subscription_update", period,
                                        (ctx.now, ctx.now))
            self._finalize_invoice(ctx, invoice)
            card = self._card_for(sub)
            outcome = card["behaviour"]
            intent, charge = self._pay_invoice(ctx, invoice, card, outcome,
                                               description="Subscription update")
            sub["latest_invoice"] = invoice["id"]
            if outcome != "succeed":
                sub["status"] = "past_due"
            invoice_events = (invoice, intent, charge, outcome)
        self.store.save(sub, private=private)
        if invoice_events:
            self.emit(ctx, "invoice.created", invoice_events[0])
            self._invoice_payment_events(ctx, *invoice_events)
        previous = _diff(old, sub)
        if previous:
            self.emit(ctx, "customer.subscription.updated", sub, previous)
        return self.expand(sub, params.expand())

    def _update_items(self, ctx: Ctx, sub: Obj, params: Params) -> bool:
        """Apply ``items[0]``; returns whether the billing interval changed."""
        raw_items = params.list("items")
        if len(raw_items) != 1 or not isinstance(raw_items[0], dict):
            raise ApiError.invalid("The Stripe simulator implements subscriptions with exactly "
                                   "one item: pass items[0][id] and the new price.",
                                   param="items")
        change = Params(raw_items[0], "items[0]")
        change.check({"billing_thresholds", "clear_usage", "deleted", "discounts", "id",
                      "metadata", "plan", "price", "price_data", "quantity", "tax_rates"},
                     {"id", "price", "price_data", "quantity", "metadata"})
        item = sub["items"]["data"][0]
        item_id = change.str("id")
        if item_id != item["id"]:
            raise ApiError.invalid(
                f"Invalid items[0][id]: pass the subscription's item id ({item['id']}) to "
                "change its price; the simulator does not add second items.",
                param="items[0][id]")
        price_id = change.str("price")
        price_data = change.sub("price_data")
        if price_id and price_data:
            raise ApiError.invalid("You may only specify one of these parameters: price, "
                                   "price_data.", param="items[0][price_data]")
        old_recurring = item["price"]["recurring"]
        if price_id or price_data:
            if price_id:
                price_obj = self.load(price_id, "price", "items[0][price]").data
            else:
                price_obj = self._price_from_data(ctx, price_data, product_data_allowed=False)
            if not price_obj["recurring"]:
                raise ApiError.invalid("The price specified is not recurring; subscriptions "
                                       "need a recurring price.", param="items[0]")
            if price_obj["currency"] != sub["currency"]:
                raise ApiError.invalid(
                    f"The price currency ({price_obj['currency']}) must match the "
                    f"subscription currency ({sub['currency']}).", param="items[0]")
            item["price"] = price_obj
            item["plan"] = objects.plan_from_price(price_obj)
        quantity = change.int("quantity", minimum=1)
        if quantity is not None:
            item["quantity"] = quantity
        item["metadata"] = _merge_metadata(item["metadata"], change.metadata())
        new_recurring = item["price"]["recurring"]
        return (old_recurring["interval"], old_recurring["interval_count"]) != (
            new_recurring["interval"], new_recurring["interval_count"])

    def cancel_subscription(self, ctx: Ctx, sub_id: str, params: Params) -> Obj:
        params.check(_known(SubscriptionCancelParams),
                     {"cancellation_details", "invoice_now", "prorate", "expand"})
        # invoice_now/prorate matter for metered usage and prorations, which we do not model.
        params.bool("invoice_now")
        params.bool("prorate")
        stored = self.load(sub_id, "subscription", "subscription")
        sub = stored.data
        if sub["status"] == "canceled":
            raise ApiError.invalid(f"This subscription has already been canceled: {sub_id}",
                                   code="resource_missing")
        details = params.sub("cancellation_details")
        if details:
            details.check({"comment", "feedback"}, {"comment", "feedback"})
            sub["cancellation_details"].update(comment=details.str("comment"),
                                               feedback=details.str("feedback"))
        self._end_subscription(ctx, sub)
        return self.expand(sub, params.expand())

    def _end_subscription(self, ctx: Ctx, sub: Obj) -> None:
        sub.update(status="canceled", canceled_at=ctx.now, ended_at=ctx.now,
                   cancel_at_period_end=False)
        sub["cancellation_details"]["reason"] = "cancellation_requested"
        self.store.save(sub)
        self.emit(ctx, "customer.subscription.deleted", sub)

    # -- customers, portal --

    def create_customer(self, ctx: Ctx, params: Params) -> Obj:
        params.check(_known(CustomerCreateParams),
                     {"email", "name", "metadata", "description", "expand"})
        customer = objects.customer(
            email=params.str("email", max_length=512), name=params.str("name", max_length=256),
            metadata={k: v for k, v in (params.metadata() or {}).items() if v},
            created=ctx.now)
        customer["description"] = params.str("description")
        self.store.save(customer, private={"cards": {}})
        self.emit(ctx, "customer.created", customer)
        return self.expand(customer, params.expand())

    def delete_customer(self, ctx: Ctx, customer_id: str) -> Obj:
        stored = self.load_live_customer(customer_id, "id")
        # Deleting a customer cancels their subscriptions at once, as Stripe does.
        for sub in self.store.of_type("subscription", where_customer=customer_id):
            if sub.data["status"] != "canceled":
                self._end_subscription(ctx, sub.data)
        stub = objects.deleted_customer(customer_id)
        self.store.save(stub, private={**stored.private, "before_deletion": stored.data})
        self.emit(ctx, "customer.deleted", stored.data)
        return stub

    def create_portal_session(self, ctx: Ctx, params: Params) -> Obj:
        params.check(_known(PortalSessionCreateParams),
                     {"customer", "return_url", "locale", "expand"})
        customer_id = params.str("customer", required=True)
        self.load_live_customer(customer_id)
        session = objects.billing_portal_session(
            customer_id=customer_id, return_url=self._url(params, "return_url"),
            created=ctx.now)
        session.update(url=f"{ctx.base_url}/billing_portal/{session['id']}",
                       locale=params.str("locale"))
        self.store.save(session)
        return self.expand(session, params.expand())

    def update_card(self, ctx: Ctx, portal_id: str, choice: str) -> None:
        portal = self.load(portal_id, "billing_portal.session").data
        stored = self.load_live_customer(portal["customer"])
        customer, card = stored.data, self._new_card(choice)
        old = copy.deepcopy(customer)
        stored.private.setdefault("cards", {})[card["payment_method"]] = card
        customer["invoice_settings"]["default_payment_method"] = card["payment_method"]
        self.store.save(customer, private=stored.private)
        self.emit(ctx, "customer.updated", customer, _diff(old, customer))
        for sub_stored in self.store.of_type("subscription", where_customer=customer["id"]):
            sub = sub_stored.data
            if sub["status"] != "canceled" and sub["default_payment_method"]:
                old_sub = copy.deepcopy(sub)
                sub["default_payment_method"] = card["payment_method"]
                self.store.save(sub)
                self.emit(ctx, "customer.subscription.updated", sub, _diff(old_sub, sub))

    # -- refunds, disputes, async payments --

    def create_refund(self, ctx: Ctx, params: Params) -> Obj:
        params.check(_known(RefundCreateParams),
                     {"payment_intent", "charge", "amount", "reason", "metadata", "expand"})
        charge_id, intent_id = params.str("charge"), params.str("payment_intent")
        if bool(charge_id) == bool(intent_id):
            raise ApiError.invalid("You must pass exactly one of `charge` or `payment_intent`.",
                                   param="charge")
        if intent_id:
            intent = self.load(intent_id, "payment_intent", "payment_intent").data
            if intent["status"] != "succeeded":
                raise ApiError.invalid(
                    f"This PaymentIntent ({intent_id}) does not have a successful charge to "
                    "refund.", param="payment_intent")
            charge_id = intent["latest_charge"]
        charge = self.load(charge_id, "charge", "charge").data
        if charge["status"] != "succeeded":
            raise ApiError.invalid(f"Charge {charge_id} did not succeed; nothing to refund.",
                                   param="charge")
        if charge["disputed"]:
            raise ApiError.invalid(f"Charge {charge_id} has been charged back; cannot issue a "
                                   "refund.", code="charge_disputed", param="charge")
        if charge["refunded"]:
            raise ApiError.invalid(f"Charge {charge_id} has already been refunded.",
                                   code="charge_already_refunded", param="charge")
        remaining = charge["amount"] - charge["amount_refunded"]
        amount = params.int("amount", minimum=1)
        if amount is None:
            amount = remaining
        if amount > remaining:
            currency = charge["currency"]
            raise ApiError.invalid(
                f"Refund amount ({format_amount(amount, currency)}) is greater than unrefunded "
                f"amount on charge ({format_amount(remaining, currency)})",
                code="amount_too_large", param="amount")
        refund = objects.refund(
            charge_obj=charge, amount=amount,
            reason=params.str("reason",
                              choices=("duplicate", "fraudulent", "requested_by_customer")),
            metadata={k: v for k, v in (params.metadata() or {}).items() if v},
            created=ctx.now)
        self.store.save(refund, parent=charge_id)
        old = copy.deepcopy(charge)
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self.store.save(charge)
        self.emit(ctx, "charge.refunded", charge, _diff(old, charge))
        self.emit(ctx, "refund.created", refund)
        return self.expand(refund, params.expand())

    def fail_refund(self, ctx: Ctx, refund_id: str, reason: str) -> Obj:
        """The card's bank returned the refund (days later, after it had succeeded): the
        refund fails, the money is back with the charity, the charge's amount_refunded drops.
        Sends refund.failed, refund.updated and charge.refund.updated."""
        refund = self.load(refund_id, "refund").data
        if refund["status"] in ("failed", "canceled"):
            raise ApiError.invalid(f"Refund {refund_id} has already {refund['status']}.")
        old = copy.deepcopy(refund)
        refund["status"] = "failed"
        refund["failure_reason"] = reason
        refund["failure_balance_transaction"] = new_id("txn_")
        self.store.save(refund)
        charge = self.load(refund["charge"], "charge").data
        charge["amount_refunded"] -= refund["amount"]
        charge["refunded"] = False
        self.store.save(charge)
        changes = _diff(old, refund)
        self.emit(ctx, "refund.failed", refund)
        self.emit(ctx, "refund.updated", refund, changes)
        self.emit(ctx, "charge.refund.updated", refund, changes)
        return refund

    def charge_refunds_list(self, charge_id: str) -> Obj:
        """A Charge's `refunds`, built only when asked for with expand=["refunds"]."""
        found = self.refunds_of(charge_id=charge_id)
        return {"object": "list", "data": found[:10], "has_more": len(found) > 10,
                "url": f"/v1/charges/{charge_id}/refunds"}

    def list_refunds(self, params: Params) -> Obj:
        """GET /v1/refunds filtered by payment_intent or charge, newest first, one page of
        `limit` (1 to 100, default 10) after the `starting_after` (or before the
        `ending_before`) refund, with `has_more`, as Stripe pages every list."""
        params.check({"payment_intent", "charge", "limit", "starting_after", "ending_before",
                      "created", "expand"},
                     {"payment_intent", "charge", "limit", "starting_after", "ending_before",
                      "expand"})
        limit = params.int("limit", minimum=1) or 10
        if limit > 100:
            raise ApiError.invalid("Invalid limit: must be less than or equal to 100",
                                   param="limit")
        intent_id, charge_id = params.str("payment_intent"), params.str("charge")
        found = self.refunds_of(intent_id=intent_id, charge_id=charge_id)
        page, has_more = _page(found, limit, params.str("starting_after"),
                               params.str("ending_before"), "refund")
        listing = {"object": "list", "data": page, "has_more": has_more,
                   "url": "/v1/refunds"}
        return self.expand(listing, params.expand())

    def refunds_of(self, *, intent_id: str | None = None, charge_id: str | None = None
                   ) -> list[Obj]:
        """A payment's or a charge's refunds, newest first."""
        found = [r.data for r in self.store.of_type("refund")
                 if (not intent_id or r.data.get("payment_intent") == intent_id)
                 and (not charge_id or r.data.get("charge") == charge_id)]
        found.reverse()
        return found

    def open_dispute(self, ctx: Ctx, charge_id: str, reason: str, amount: int | None) -> Obj:
        charge = self.load(charge_id, "charge").data
        if charge["status"] != "succeeded":
            raise ApiError.invalid(f"Charge {charge_id} did not succeed; it cannot be disputed.")
        if charge["disputed"]:
            raise ApiError.invalid(f"Charge {charge_id} is already disputed.")
        dispute = objects.dispute(charge_obj=charge, amount=amount or charge["amount"],
                                  reason=reason, created=ctx.now)
        self.store.save(dispute, parent=charge_id)
        charge["disputed"] = True
        self.store.save(charge)
        self.emit(ctx, "charge.dispute.created", dispute)
        return dispute

    def close_dispute(self, ctx: Ctx, dispute_id: str, status: str) -> Obj:
        dispute = self.load(dispute_id, "dispute").data
        if dispute["status"] in ("won", "lost"):
            raise ApiError.invalid(f"Dispute {dispute_id} is already closed ({dispute['status']}).")
        old = copy.deepcopy(dispute)
        dispute["status"] = status
        self.store.save(dispute)
        self.emit(ctx, "charge.dispute.closed", dispute, _diff(old, dispute))
        return dispute

    def async_payment(self, ctx: Ctx, session_id: str, outcome: str) -> Obj:
        """Control: a delayed payment method (e.g. a bank debit) settles or fails."""
        stored = self.load(session_id, "checkout.session")
        session = stored.data
        if session["mode"] != "payment":
            raise ApiError.invalid("The Stripe simulator implements delayed payments in "
                                   "payment mode only.")
        if session["status"] == "open":
            stored.private.setdefault("payer", {"email": self.known_email(session)
                                                or "donor@example.org", "name": None})
            self.complete_checkout(ctx, stored, three_d_secure=False, paid=False)
            stored = self.load(session_id, "checkout.session")
            session = stored.data
        elif session["status"] != "complete" or session["payment_status"] != "unpaid":
            raise ApiError.invalid("Only a completed, unpaid Checkout Session can have a delayed "
                                   "payment outcome.")
        if outcome == "pending":
            return session
        intent = self.load(session["payment_intent"], "payment_intent").data
        card = self._new_card("visa_4242")
        payer = stored.private["payer"]
        if outcome == "succeeded":
            charge = self._charge(ctx, intent, card, payer, succeeded=True)
            session["payment_status"] = "paid"
            self.store.save(session)
            self.emit(ctx, "checkout.session.async_payment_succeeded", session)
            self.emit(ctx, "payment_intent.succeeded", intent)
            self.emit(ctx, "charge.succeeded", charge)
        else:
            charge = self._charge(ctx, intent, card, payer, succeeded=False,
                                  failure=objects.decline("insufficient_funds"))
            self.emit(ctx, "checkout.session.async_payment_failed", session)
            self.emit(ctx, "payment_intent.payment_failed", intent)
            self.emit(ctx, "charge.failed", charge)
        return session

    # -- events --

    def list_events(self, params: Params) -> Obj:
        params.check(_known(EventListParams),
                     {"limit", "starting_after", "ending_before", "created", "type", "types",
                      "expand"})
        limit = params.int("limit", minimum=1) or 10
        if limit > 100:
            raise ApiError.invalid("Invalid limit: must be less than or equal to 100",
                                   param="limit")
        starting_after, ending_before = params.str("starting_after"), params.str("ending_before")
        if starting_after and ending_before:
            raise ApiError.invalid("You may only specify one of these parameters: "
                                   "ending_before, starting_after.", param="ending_before")
        cursors = {}
        for key, value in (("starting_after", starting_after), ("ending_before", ending_before)):
            if value:
                seq = self.store.event_seq(value)
                if seq is None:
                    raise ApiError.missing("event", value, key)
                cursors[key] = seq
        event_type = params.str("type")
        types = [t for t in (params.list("types") or []) if isinstance(t, str)]
        if event_type and types:
            raise ApiError.invalid("You may only specify one of these parameters: type, types.",
                                   param="types")
        page, has_more = self.store.list_events(
            limit=limit, before_seq=cursors.get("starting_after"),
            after_seq=cursors.get("ending_before"), created=_created_filter(params),
            types=[event_type] if event_type else types)
        return self.expand({"object": "list", "data": page, "has_more": has_more,
                            "url": "/v1/events"}, params.expand())


# --- webhook delivery ------------------------------------------------------------------------


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Stripe counts a 3xx answer as a failed delivery; never follow it."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class WebhookDeliverer:
    """Posts pending events, oldest first, each retried with backoff before the next."""

    def __init__(self, store: Store, url: str, secret: str,
                 retry_delays: tuple[float, ...] = DEFAULT_WEBHOOK_RETRY_DELAYS) -> None:
        self.store, self.url, self.secret = store, url, secret
        self.retry_delays = tuple(retry_delays)
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                   _NoRedirects())
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stripe-simulator-webhooks",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=WEBHOOK_TIMEOUT_SECONDS + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self._deliver_next()
            except Exception:  # e.g. the store closing under us; keep the thread alive
                log.exception("stripe simulator: webhook delivery failed")
                self._stop.wait(1.0)

    def _deliver_next(self) -> None:
        pending = self.store.next_pending_event()
        if pending is None:
            self._wake.wait(1.0)
            return
        seq, data, attempts = pending
        ok, error = self._post(data)
        attempts += 1
        if ok:
            self.store.record_delivery(seq, delivery="delivered", attempts=attempts, error=None)
        elif attempts > len(self.retry_delays):
            log.warning("stripe simulator: giving up on event #%s after %s tries: %s", seq,
                        attempts, error)
            self.store.record_delivery(seq, delivery="failed", attempts=attempts, error=error)
        else:
            self.store.record_delivery(seq, delivery="pending", attempts=attempts, error=error)
            self._stop.wait(self.retry_delays[attempts - 1])

    def _post(self, data: str) -> tuple[bool, str | None]:
        # Stripe sends pretty-printed JSON and signs exactly the bytes it sends, per attempt.
        payload = json.dumps(json.loads(data), indent=2)
        signature = stripe.WebhookSignature.generate_signature_header(payload, self.secret)
        request = urllib.request.Request(  # noqa: S310 - scheme checked in create_app
            self.url, data=payload.encode("utf-8"), method="POST",
            headers={"Content-Type": "application/json; charset=utf-8",
                     "Stripe-Signature": signature,
                     "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"})
        try:
            with self._opener.open(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            exc.close()
            return False, f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return 200 <= status < 300, None if 200 <= status < 300 else f"HTTP {status}"


# --- the WSGI application --------------------------------------------------------------------

_CSS = """\
body { font-family: system-ui, sans-serif; margin: 0; color: #1a1a1a; background: #f6f7f9;
       line-height: 1.5; }
main { max-width: 36rem; margin: 2rem auto; padding: 1.5rem; background: #fff;
       border: 1px solid #d0d4da; border-radius: 8px; }
.test-banner { margin: 0; padding: .75rem 1rem; background: #ffe08a; color: #1a1a1a;
               text-align: center; font-weight: 700; }
.alert { padding: .75rem 1rem; border: 2px solid #b3261e; background: #fdecea; }
.notice { padding: .75rem 1rem; border: 2px solid #1b6e3a; background: #e7f5ec; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .4rem; border-bottom: 1px solid #d0d4da; }
label { display: block; margin-top: 1rem; font-weight: 600; }
input[type=email], input[type=text] { width: 100%; padding: .5rem; font-size: 1rem;
                                      box-sizing: border-box; }
fieldset { margin-top: 1rem; border: 1px solid #d0d4da; }
fieldset label { font-weight: 400; margin-top: .25rem; }
.actions { display: flex; gap: .75rem; flex-wrap: wrap; margin-top: 1.5rem; }
button { font-size: 1rem; padding: .6rem 1.1rem; border-radius: 6px; cursor: pointer;
         border: 2px solid #1a1a1a; background: #fff; color: #1a1a1a; }
button.primary { background: #1d4ed8; border-color: #1d4ed8; color: #fff; }
a { color: #1d4ed8; }
:focus-visible { outline: 3px solid #1a1a1a; outline-offset: 2px; }
"""


def _api(rule: str, endpoint: str, methods: list[str]) -> Rule:
    return Rule(rule, endpoint=f"api:{endpoint}", methods=methods)


#: How long a held request or a control call waiting on a hold waits at most: a guard
#: against a test that never releases (it fails loudly), never a timing the test relies on.
HOLD_GUARD_SECONDS = 300.0


class Hold:
    """A named gate for API calls, driven by the test: requests that take a fault with
    ``hold`` wait at it (in arrival order) until the test releases them one by one, so a
    test decides the order of Stripe's answers instead of racing delays against a clock."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.arrived = 0   # requests that reached the gate
        self.released = 0  # tickets handed out by the test
        self.done = 0      # released requests whose effect is committed
        self._open = False

    def enter(self) -> bool:
        """Wait for this request's ticket; False if the guard ran out."""
        with self._cond:
            self.arrived += 1
            ticket = self.arrived
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._open or self.released >= ticket,
                                       HOLD_GUARD_SECONDS)

    def leave(self) -> None:
        with self._cond:
            self.done += 1
            self._cond.notify_all()

    def wait_arrived(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.arrived >= count, timeout)

    def release(self, count: int, wait: bool, timeout: float) -> bool:
        with self._cond:
            self.released += count
            target = self.released
            self._cond.notify_all()
            return not wait or self._cond.wait_for(lambda: self.done >= target, timeout)

    def open(self) -> None:
        """Let everyone through, now and later (a reset)."""
        with self._cond:
            self._open = True
            self._cond.notify_all()

    def state(self) -> dict[str, int]:
        with self._cond:
            return {"arrived": self.arrived, "released": self.released, "done": self.done}


_URL_MAP = Map([
    _api("/v1/checkout/sessions", "create_checkout_session", ["POST"]),
    _api("/v1/checkout/sessions/<id>", "retrieve_checkout_session", ["GET"]),
    _api("/v1/checkout/sessions/<id>/line_items", "checkout_line_items", ["GET"]),
    _api("/v1/checkout/sessions/<id>/expire", "expire_checkout_session", ["POST"]),
    _api("/v1/subscriptions/<id>", "retrieve_subscription", ["GET"]),
    _api("/v1/subscriptions/<id>", "update_subscription", ["POST"]),
    _api("/v1/subscriptions/<id>", "cancel_subscription", ["DELETE"]),
    _api("/v1/billing_portal/sessions", "create_portal_session", ["POST"]),
    _api("/v1/refunds", "create_refund", ["POST"]),
    _api("/v1/refunds", "list_refunds", ["GET"]),
    _api("/v1/events", "list_events", ["GET"]),
    _api("/v1/events/<id>", "retrieve_event", ["GET"]),
    _api("/v1/customers", "create_customer", ["POST"]),
    _api("/v1/customers/<id>", "retrieve_customer", ["GET"]),
    _api("/v1/customers/<id>", "delete_customer", ["DELETE"]),
    _api("/v1/invoice_payments", "list_invoice_payments", ["GET"]),
    *[Rule(f"/v1/{collection}/<id>", endpoint="api:retrieve", methods=["GET"],
           defaults={"collection": collection})
      for collection in ("invoices", "invoice_payments", "payment_intents", "charges",
                         "refunds", "disputes", "prices", "products")],
    Rule("/", endpoint="page:index", methods=["GET"]),
    Rule("/static/simulator.css", endpoint="page:css", methods=["GET"]),
    Rule("/checkout/<id>", endpoint="page:checkout", methods=["GET"]),
    Rule("/checkout/<id>/pay", endpoint="page:checkout_pay", methods=["POST"]),
    Rule("/checkout/<id>/authenticate", endpoint="page:authenticate", methods=["GET", "POST"]),
    Rule("/billing_portal/<id>", endpoint="page:portal", methods=["GET"]),
    Rule("/billing_portal/<id>/card", endpoint="page:portal_card", methods=["POST"]),
    Rule("/invoices/<id>", endpoint="page:invoice", methods=["GET"]),
    Rule("/receipts/<id>", endpoint="page:receipt", methods=["GET"]),
    Rule("/_sim/health", endpoint="control:health", methods=["GET"]),
    Rule("/_sim/subscriptions/<id>/renew", endpoint="control:renew", methods=["POST"]),
    Rule("/_sim/invoices/<id>/pay", endpoint="control:pay_invoice", methods=["POST"]),
    Rule("/_sim/charges/<id>/dispute", endpoint="control:dispute", methods=["POST"]),
    Rule("/_sim/disputes/<id>/close", endpoint="control:close_dispute", methods=["POST"]),
    Rule("/_sim/refunds/<id>/fail", endpoint="control:fail_refund", methods=["POST"]),
    Rule("/_sim/sessions/<id>/async", endpoint="control:async_payment", methods=["POST"]),
    Rule("/_sim/faults", endpoint="control:list_faults", methods=["GET"]),
    Rule("/_sim/faults", endpoint="control:add_fault", methods=["POST"]),
    Rule("/_sim/faults", endpoint="control:clear_faults", methods=["DELETE"]),
    Rule("/_sim/holds/<name>", endpoint="hold:state", methods=["GET"]),
    Rule("/_sim/holds/<name>/wait", endpoint="hold:wait", methods=["POST"]),
    Rule("/_sim/holds/<name>/release", endpoint="hold:release", methods=["POST"]),
    Rule("/_sim/requests", endpoint="control:requests", methods=["GET"]),
    Rule("/_sim/objects", endpoint="control:objects", methods=["GET"]),
    Rule("/_sim/deliveries", endpoint="control:deliveries", methods=["GET"]),
    Rule("/_sim/events/<id>/resend", endpoint="control:resend", methods=["POST"]),
    Rule("/_sim/reset", endpoint="control:reset", methods=["POST"]),
], strict_slashes=False)

_RETRIEVABLE = {"invoices": "invoice", "invoice_payments": "invoice_payment",
                "payment_intents": "payment_intent", "charges": "charge", "refunds": "refund",
                "disputes": "dispute", "prices": "price", "products": "product"}


class SimulatorApp:
    """The WSGI callable. Build it with ``create_app``; call ``close()`` when done."""

    def __init__(
        self,
        store: Store,
        *,
        webhook_url: str | None,
        webhook_secret: str | None,
        deliver_webhooks: bool,
        webhook_retry_delays: tuple[float, ...] = DEFAULT_WEBHOOK_RETRY_DELAYS,
    ) -> None:
        self.store = store
        self.webhook_url = webhook_url
        delivering = bool(deliver_webhooks and webhook_url)
        self.engine = Engine(store, deliver=delivering)
        self.deliverer = None
        if delivering:
            self.deliverer = WebhookDeliverer(store, webhook_url, webhook_secret,
                                              webhook_retry_delays)
            self.deliverer.start()
        self._inflight: set[str] = set()
        self._inflight_lock = threading.Lock()
        self._holds: dict[str, Hold] = {}
        self._holds_lock = threading.Lock()
        self._jinja = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True,
            undefined=jinja2.StrictUndefined)
        self._jinja.filters["money"] = lambda amount, currency: format_amount(amount, currency)
        self._jinja.filters["date"] = lambda ts: (
            datetime.fromtimestamp(ts, UTC).strftime("%d %B %Y") if ts else "")

    def close(self) -> None:
        with self._holds_lock:
            for hold in self._holds.values():
                hold.open()
        if self.deliverer:
            self.deliverer.stop()
        self.store.close()

    def __call__(self, environ, start_response):
        request = Request(environ)
        response = self.dispatch(request)
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        # Refuse other Host names so that a web page cannot reach the control endpoints
        # through DNS rebinding.
        if request.host.rsplit(":", 1)[0].strip("[]") not in LOOPBACK_HOSTS:
            return Response("The Stripe simulator answers loopback host names only.\n", 400)
        adapter = _URL_MAP.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except (NotFound, MethodNotAllowed) as exc:
            if request.path.startswith("/v1/"):
                return ApiError(404, f"Unrecognized request URL ({request.method}: "
                                     f"{request.path}). The Stripe simulator implements only "
                                     "the endpoints DonorHub uses.").response()
            return exc.get_response(request.environ)
        kind, name = endpoint.split(":")
        try:
            if kind == "api":
                return self._api(request, name, args)
            if kind == "control":
                return self._control(request, name, args)
            if kind == "hold":
                return self._hold_control(request, name, args["name"])
            return self._page(request, name, args)
        finally:
            if self.deliverer:
                self.deliverer.wake()

    def _ctx(self, request: Request, **kwargs: Any) -> Ctx:
        return Ctx(base_url=request.host_url.rstrip("/"), now=objects.now(), **kwargs)

    # -- API --

    def _api(self, request: Request, name: str, args: dict[str, str]) -> Response:
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        seq = self.store.log_request(request.method, request.path,
                                     request.query_string.decode("latin-1"), key)
        status, outcome = 500, "error"
        try:
            response, outcome = self._api_checked(request, name, args, key)
            status = response.status_code
            return response
        finally:
            self.store.finish_request(seq, status, outcome)

    def _api_checked(self, request, name, args, key) -> tuple[Response, str]:
        request_id = new_id("req_", 14)
        headers = {"Request-Id": request_id, "Stripe-Version": API_VERSION}
        if key:
            headers["Idempotency-Key"] = key
        api_key = _api_key(request)
        if not api_key or not api_key.startswith("sk_test_"):
            shown = f"{api_key[:8]}…" if api_key else "none"
            return ApiError(401, f"Invalid API Key provided: {shown}. The Stripe simulator "
                                 "accepts test secret keys (sk_test_…) only.",
                            code="api_key_invalid").response(headers), "unauthorized"
        body = request.get_data(cache=True)
        source = body if request.method == "POST" else request.query_string
        pairs = urllib.parse.parse_qsl(source.decode("utf-8", errors="replace"),
                                       keep_blank_values=True)
        request_hash = hashlib.sha256(
            request.method.encode() + b" " + request.path.encode() + b"\n"
            + json.dumps(sorted(pairs)).encode()).hexdigest()
        if key:
            replay = self._idempotency_check(key, request, request_hash, headers)
            if replay is not None:
                return replay
        hold, held = None, False
        try:
            fault = self.store.take_fault(request.method, request.path)
            if fault is not None:
                if fault.hold:  # outside the store lock: the test decides when we go on
                    hold = self._hold(fault.hold)
                if hold is not None and fault.hold_at == "call":
                    held = True
                    if not hold.enter():
                        return ApiError(500, f"Hold {fault.hold!r} was never released "
                                             "(simulated fault).", type="api_error"
                                        ).response(headers), "fault"
                if fault.delay_seconds:
                    time.sleep(fault.delay_seconds)  # outside the store lock: a slow Stripe
                if fault.status:
                    error = _fault_error(fault.status).response(headers)
                    if fault.saved and key:
                        # Execution had begun: Stripe keeps this answer under the key and
                        # replays it to every retry with the same key.
                        self.store.put_idempotent(
                            key, request_hash=request_hash, method=request.method,
                            path=request.path, status=error.status_code,
                            body=error.get_data(as_text=True))
                    return error, "fault"
            ctx = self._ctx(request, request_id=request_id, idempotency_key=key)
            try:
                with self.store.transaction():
                    params = Params(decode_params(pairs))
                    self.engine.expire_due_sessions(ctx)
                    result = getattr(self, f"_api_{name}")(ctx, params, **args)
                    text = json.dumps(result, indent=2)
                    if key:
                        # Saved with the effect, in one transaction: a replay can never
                        # disagree with what happened.
                        self.store.put_idempotent(key, request_hash=request_hash,
                                                  method=request.method, path=request.path,
                                                  status=200, body=text)
            except ApiError as exc:
                return exc.response(headers), "error"
            except Exception as exc:  # a simulator bug: answer like Stripe's 500, loudly
                log.exception("stripe simulator: %s %s failed", request.method, request.path)
                return ApiError(500, f"The Stripe simulator failed: {type(exc).__name__}: "
                                     f"{exc}", type="api_error").response(headers), "crash"
            if hold is not None and fault.hold_at == "answer":
                held = True
                hold.enter()  # done at Stripe, the answer held back (the guard answers)
            return Response(text, 200, headers=headers, content_type="application/json"), "ok"
        finally:
            if key:
                with self._inflight_lock:
                    self._inflight.discard(key)
            if held:
                hold.leave()

    def _idempotency_check(self, key, request, request_hash, headers):
        """None to go ahead (key now in flight); else the response and its log outcome."""
        with self._inflight_lock:
            if key in self._inflight:
                return ApiError(
                    409, "There is currently another in-progress request using this "
                         f"Idempotent Key (that probably means you submitted twice, and the "
                         f"other request is still going through): {key}. Please try again "
                         "later.", code="idempotency_key_in_use").response(headers), "in_use"
            saved = self.store.get_idempotent(key)
            if saved is None:
                self._inflight.add(key)
                return None
        if (saved["method"], saved["path"]) != (request.method, request.path):
            return ApiError(
                400, "Keys for idempotent requests can only be used for the same endpoint they "
                     f"were first used for ('{saved['method']} {saved['path']}' vs "
                     f"'{request.method} {request.path}'). Try using a key other than '{key}' if "
                     "you meant to execute a different request.",
                type="idempotency_error").response(headers), "idempotency_mismatch"
        if saved["request_hash"] != request_hash:
            return ApiError(
                400, "Keys for idempotent requests can only be used with the same parameters "
                     f"they were first used with. Try using a key other than '{key}' if you "
                     "meant to execute a different request.",
                type="idempotency_error").response(headers), "idempotency_mismatch"
        headers["Idempotent-Replayed"] = "true"
        return Response(saved["body"], saved["status"], headers=headers,
                        content_type="application/json"), "replayed"

    def _api_create_checkout_session(self, ctx, params):
        return self.engine.create_checkout_session(ctx, params)

    def _retrieve(self, params: Params, object_id: str, object_type: str) -> Obj:
        params.check({"expand"}, {"expand"})
        return self.engine.expand(self.engine.load(object_id, object_type).data,
                                  params.expand())

    def _api_retrieve_checkout_session(self, ctx, params, id):
        return self._retrieve(params, id, "checkout.session")

    def _api_checkout_line_items(self, ctx, params, id):
        params.check({"ending_before", "expand", "limit", "starting_after"}, {"expand", "limit"})
        session = self.engine.load(id, "checkout.session").data
        return self.engine.expand(self.engine.session_line_items(session), params.expand())

    def _api_expire_checkout_session(self, ctx, params, id):
        return self.engine.expire_checkout_session(ctx, id, params)

    def _api_retrieve_subscription(self, ctx, params, id):
        return self._retrieve(params, id, "subscription")

    def _api_update_subscription(self, ctx, params, id):
        return self.engine.update_subscription(ctx, id, params)

    def _api_cancel_subscription(self, ctx, params, id):
        return self.engine.cancel_subscription(ctx, id, params)

    def _api_create_portal_session(self, ctx, params):
        return self.engine.create_portal_session(ctx, params)

    def _api_create_refund(self, ctx, params):
        return self.engine.create_refund(ctx, params)

    def _api_list_refunds(self, ctx, params):
        return self.engine.list_refunds(params)

    def _api_list_events(self, ctx, params):
        return self.engine.list_events(params)

    def _api_retrieve_event(self, ctx, params, id):
        params.check({"expand"}, {"expand"})
        event = self.store.get_event(id)
        if event is None:
            raise ApiError.missing("event", id)
        return self.engine.expand(event, params.expand())

    def _api_create_customer(self, ctx, params):
        return self.engine.create_customer(ctx, params)

    def _api_retrieve_customer(self, ctx, params, id):
        return self._retrieve(params, id, "customer")

    def _api_delete_customer(self, ctx, params, id):
        params.check(set(), set())
        return self.engine.delete_customer(ctx, id)

    def _api_list_invoice_payments(self, ctx, params):
        return self.engine.list_invoice_payments(params)

    def _api_retrieve(self, ctx, params, id, collection):
        return self._retrieve(params, id, _RETRIEVABLE[collection])

    # -- control --

    def _control(self, request: Request, name: str, args: dict[str, str]) -> Response:
        values: dict[str, Any] = {**request.args.to_dict(), **request.form.to_dict()}
        if request.is_json:
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                return _json_response({"error": "Send a JSON object."}, 400)
            values.update(body)
        ctx = self._ctx(request)
        try:
            with self.store.transaction():
                self.engine.expire_due_sessions(ctx)
                result = getattr(self, f"_control_{name}")(ctx, values, **args)
        except ApiError as exc:
            return exc.response()
        return _json_response(result)

    def _hold(self, name: str) -> Hold:
        with self._holds_lock:
            return self._holds.setdefault(name, Hold())

    def _hold_control(self, request: Request, action: str, name: str) -> Response:
        """Holds are driven outside the store's transaction: a held request needs it."""
        values: dict[str, Any] = {**request.args.to_dict()}
        if request.is_json:
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                return _json_response({"error": "Send a JSON object."}, 400)
            values.update(body)
        hold = self._hold(name)
        try:
            timeout = min(float(values.get("timeout") or HOLD_GUARD_SECONDS),
                          HOLD_GUARD_SECONDS)
            count = int(values.get("count") or 1)
        except (TypeError, ValueError):
            return _json_response({"error": "count and timeout must be numbers."}, 400)
        if action == "wait":
            ok = hold.wait_arrived(count, timeout)
        elif action == "release":
            ok = hold.release(count, bool(values.get("wait", True)), timeout)
        else:
            ok = True
        return _json_response({"hold": name, **hold.state()}, 200 if ok else 504)

    def _control_health(self, ctx, values):
        return {"ok": True, "api_version": API_VERSION, "webhook_url": self.webhook_url,
                "delivering_webhooks": self.deliverer is not None}

    def _control_renew(self, ctx, values, id):
        return self.engine.renew(ctx, id, _forced_outcome(values))

    def _control_pay_invoice(self, ctx, values, id):
        return self.engine.retry_invoice(ctx, id, _forced_outcome(values))

    def _control_dispute(self, ctx, values, id):
        reason = str(values.get("reason") or "fraudulent")
        amount = values.get("amount")
        return self.engine.open_dispute(ctx, id, reason, int(amount) if amount else None)

    def _control_fail_refund(self, ctx, values, id):
        reason = values.get("failure_reason") or "expired_or_canceled_card"
        if reason not in ("lost_or_stolen_card", "expired_or_canceled_card", "unknown"):
            raise ApiError.invalid("failure_reason must be lost_or_stolen_card, "
                                   "expired_or_canceled_card or unknown.",
                                   param="failure_reason")
        return self.engine.fail_refund(ctx, id, reason)

    def _control_close_dispute(self, ctx, values, id):
        status = values.get("status")
        if status not in ("won", "lost"):
            raise ApiError.invalid("Pass status=won or status=lost.", param="status")
        return self.engine.close_dispute(ctx, id, status)

    def _control_async_payment(self, ctx, values, id):
        outcome = values.get("outcome")
        if outcome not in ("pending", "succeeded", "failed"):
            raise ApiError.invalid("Pass outcome=succeeded, failed or pending.", param="outcome")
        return self.engine.async_payment(ctx, id, outcome)

    def _control_list_faults(self, ctx, values):
        return {"faults": self.store.faults()}

    def _control_clear_faults(self, ctx, values):
        self.store.clear_faults()
        return {"faults": []}

    def _control_add_fault(self, ctx, values):
        """The next ``times`` API calls under ``path_prefix`` (and ``method``, if given) wait
        at the named ``hold`` until released, sleep and/or fail."""
        prefix = str(values.get("path_prefix") or "")
        if not prefix.startswith("/v1/"):
            raise ApiError.invalid("path_prefix must start with /v1/", param="path_prefix")
        status = values.get("status")
        status = int(status) if status not in (None, "") else None
        if status is not None and not 400 <= status <= 599:
            raise ApiError.invalid("status must be an HTTP error status (400-599).",
                                   param="status")
        delay = float(values.get("delay_seconds") or 0)
        hold = str(values.get("hold") or "") or None
        hold_at = str(values.get("hold_at") or "call")
        if hold_at not in ("call", "answer"):
            raise ApiError.invalid("hold_at is call (before the call runs) or answer (after "
                                   "its effect, before its answer).", param="hold_at")
        if status is None and not delay and not hold:
            raise ApiError.invalid("Give a status, a delay_seconds, a hold, or more than "
                                   "one.", param="status")
        times = int(values.get("times") or 1)
        fault_method = values.get("method")
        saved = str(values.get("saved") or "").lower() in ("1", "true", "yes")
        if saved and (status is None or status in (409, 429)):
            raise ApiError.invalid("Only an error from a request whose execution began is "
                                   "saved: give a status other than 409 or 429.",
                                   param="saved")
        self.store.add_fault(path_prefix=prefix, method=fault_method.upper()
                             if fault_method else None, status=status, times=times,
                             delay_seconds=delay, saved=saved, hold=hold, hold_at=hold_at)
        return {"faults": self.store.faults()}

    def _control_requests(self, ctx, values):
        return {"requests": self.store.requests(str(values.get("path_prefix") or ""))}

    def _control_objects(self, ctx, values):
        object_type = str(values.get("type") or "")
        if not object_type:
            raise ApiError.invalid("Pass type=checkout.session (or another object type).",
                                   param="type")
        return {"objects": [stored.data for stored in self.store.of_type(object_type)]}

    def _control_deliveries(self, ctx, values):
        return {"deliveries": self.store.deliveries(int(values.get("since_seq") or 0))}

    def _control_resend(self, ctx, values, id):
        if self.deliverer is None:
            raise ApiError.invalid("Webhook delivery is off in this simulator.")
        if not self.store.requeue_event(id):
            raise ApiError.missing("event", id)
        return {"requeued": id}

    def _control_reset(self, ctx, values):
        self.store.reset()
        with self._holds_lock:  # whoever still waits at a hold goes on
            holds, self._holds = list(self._holds.values()), {}
        for hold in holds:
            hold.open()
        return {"reset": True}

    # -- pages --

    def _render(self, template: str, status: int = 200, **context: Any) -> Response:
        html = self._jinja.get_template(template).render(**context)
        return Response(html, status, content_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-store",
                                 "Content-Security-Policy": "default-src 'self'; "
                                 "form-action *; frame-ancestors 'none'"})

    def _page(self, request: Request, name: str, args: dict[str, str]) -> Response:
        if name == "css":
            return Response(_CSS, content_type="text/css; charset=utf-8")
        ctx = self._ctx(request)
        try:
            with self.store.transaction():
                self.engine.expire_due_sessions(ctx)
                return getattr(self, f"_page_{name}")(ctx, request, **args)
        except ApiError as exc:
            if exc.status == 404:
                return self._render("message.html", 404, title="Not found",
                                    message="This page does not exist in the Stripe simulator.",
                                    link=None)
            return self._render("message.html", exc.status, title="Something went wrong",
                                message=exc.body["message"], link=None)
        except HTTPException as exc:
            return exc.get_response(request.environ)

    def _page_index(self, ctx, request):
        recent = self.store.deliveries()[-25:][::-1]
        return self._render("index.html", events=recent, webhook_url=self.webhook_url,
                            delivering=self.deliverer is not None)

    def _page_checkout(self, ctx, request, id):
        stored = self.engine.load(id, "checkout.session")
        session = stored.data
        if session["status"] == "complete":
            return self._render("message.html", title="Payment complete",
                                message="This payment is complete. Thank you.",
                                link=(_success_url(session), "Return to the site"))
        if session["status"] == "expired":
            return self._render("message.html", title="Checkout expired",
                                message="This checkout page has expired. Start again from "
                                        "the site.",
                                link=(session["cancel_url"], "Return to the site")
                                if session["cancel_url"] else None)
        error = PAGE_ERRORS.get(request.args.get("error", ""))
        payer = stored.private.get("payer") or {}
        lines = []
        for line in stored.private["line_items"]:
            lines.append({"name": line["description"], "quantity": line["quantity"],
                          "amount": line["amount_total"],
                          "every": _interval_text(line["price"]["recurring"])})
        submit = {"donate": "Donate", "book": "Book", "subscribe": "Subscribe"}.get(
            session["submit_type"] or "", "Subscribe" if session["mode"] == "subscription"
            else "Pay")
        return self._render(
            "checkout.html", session=session, lines=lines, error=error,
            known_email=self.engine.known_email(session),
            email=payer.get("email") or "", name=payer.get("name") or "",
            every=lines[0]["every"] if session["mode"] == "subscription" else "",
            submit_label=submit)

    def _page_checkout_pay(self, ctx, request, id):
        outcome = request.form.get("outcome")
        if outcome not in ("succeed", "decline", "requires_action"):
            return Response("Choose an outcome.\n", 400)
        result = self.engine.attempt_checkout(
            ctx, id, outcome, (request.form.get("email") or "").strip() or None,
            (request.form.get("name") or "").strip() or None)
        return self._after_attempt(ctx, id, result)

    def _after_attempt(self, ctx, session_id, result):
        base = f"{ctx.base_url}/checkout/{session_id}"
        if result == "authenticate":
            return redirect(f"{base}/authenticate", 303)
        if result:
            return redirect(f"{base}?error={result}", 303)
        session = self.engine.load(session_id, "checkout.session").data
        if session["status"] == "complete":
            return redirect(_success_url(session), 303)
        return redirect(base, 303)

    def _page_authenticate(self, ctx, request, id):
        stored = self.engine.load(id, "checkout.session")
        if request.method == "POST":
            result = request.form.get("result")
            if result not in ("pass", "fail"):
                return Response("Choose pass or fail.\n", 400)
            outcome = self.engine.authenticate_checkout(ctx, id, result == "pass")
            return self._after_attempt(ctx, id, outcome)
        if stored.data["status"] != "open" or not stored.private.get("awaiting_authentication"):
            return redirect(f"{ctx.base_url}/checkout/{id}", 303)
        return self._render("authenticate.html", session=stored.data)

    def _page_portal(self, ctx, request, id):
        portal = self.engine.load(id, "billing_portal.session").data
        stored = self.engine.load_live_customer(portal["customer"])
        customer = stored.data
        card = stored.private.get("cards", {}).get(
            customer["invoice_settings"]["default_payment_method"])
        subs = []
        for sub in self.store.of_type("subscription", where_customer=customer["id"]):
            data = sub.data
            if card is None and data["status"] != "canceled" and data["default_payment_method"]:
                card = stored.private.get("cards", {}).get(data["default_payment_method"])
            item = data["items"]["data"][0]
            product = self.engine.load(item["price"]["product"], "product").data
            subs.append({"name": product["name"], "status": data["status"],
                         "amount": item["price"]["unit_amount"] * item["quantity"],
                         "currency": data["currency"],
                         "every": _interval_text(item["price"]["recurring"]),
                         "next": item["current_period_end"],
                         "paused": bool(data["pause_collection"]),
                         "ending": data["cancel_at_period_end"]})
        return self._render("portal.html", portal=portal, customer=customer, card=card,
                            subscriptions=subs, cards=CARDS,
                            updated=request.args.get("updated") == "1")

    def _page_portal_card(self, ctx, request, id):
        choice = request.form.get("card")
        if choice not in CARDS:
            return Response("Choose a card.\n", 400)
        self.engine.update_card(ctx, id, choice)
        return redirect(f"{ctx.base_url}/billing_portal/{id}?updated=1", 303)

    def _page_invoice(self, ctx, request, id):
        invoice = self.engine.load(id, "invoice").data
        rows = [("Invoice number", invoice["number"] or "(draft)"),
                ("Status", invoice["status"]),
                ("Amount due", format_amount(invoice["amount_due"], invoice["currency"])),
                ("Amount paid", format_amount(invoice["amount_paid"], invoice["currency"]))]
        rows += [("Item", line["description"]) for line in invoice["lines"]["data"]]
        return self._render("document.html", title="Invoice", rows=rows)

    def _page_receipt(self, ctx, request, id):
        charge = self.engine.load(id, "charge").data
        card = charge["payment_method_details"]["card"]
        rows = [("Amount", format_amount(charge["amount"], charge["currency"])),
                ("Refunded", format_amount(charge["amount_refunded"], charge["currency"])),
                ("Status", charge["status"]),
                ("Card", f"{card['brand'].title()} ending {card['last4']}"),
                ("Date", datetime.fromtimestamp(charge["created"], UTC).strftime("%d %B %Y"))]
        return self._render("document.html", title="Receipt", rows=rows)


def _api_key(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer "):].strip()
    if request.authorization and request.authorization.username:  # Stripe accepts Basic too
        return request.authorization.username
    return None


def _fault_error(status: int) -> ApiError:
    if status == 402:
        return ApiError(402, "Your card was declined.", type="card_error", code="card_declined",
                        decline_code="generic_decline")
    if status == 429:
        return ApiError(429, "Too many requests hit the API too quickly (simulated fault).",
                        code="rate_limit")
    if status == 409:
        return ApiError(409, "This object cannot be accessed right now because another API "
                             "request or Stripe process is currently accessing it (simulated "
                             "fault).", code="lock_timeout")
    if status >= 500:
        return ApiError(status, "An unknown error occurred (simulated fault).", type="api_error")
    return ApiError(status, "Simulated fault.")


def _forced_outcome(values: dict[str, Any]) -> str:
    def flag(name: str) -> bool:
        return str(values.get(name, "")).lower() in ("1", "true", "yes")

    if flag("fail"):
        return "insufficient_funds"
    if flag("action_required"):
        return "action_required"
    if flag("succeed"):
        return "succeed"
    return "auto"  # whatever the customer's saved card does


def _success_url(session: Obj) -> str:
    return session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"])


def create_app(
    *,
    db_path: str = ":memory:",
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    deliver_webhooks: bool = True,
    webhook_retry_delays: tuple[float, ...] = DEFAULT_WEBHOOK_RETRY_DELAYS,
    production: bool | None = None,
) -> SimulatorApp:
    """Build the simulator's WSGI app. Refuses production; validates the webhook target."""
    refuse_production(production)
    if webhook_url:
        if urllib.parse.urlsplit(webhook_url).scheme not in ("http", "https"):
            raise ValueError(f"webhook_url must be an http(s) URL, not {webhook_url!r}")
        if not webhook_secret or not webhook_secret.startswith("whsec_"):
            raise ValueError("webhook_secret must be given (whsec_…) when webhook_url is set")
    return SimulatorApp(Store(db_path), webhook_url=webhook_url, webhook_secret=webhook_secret,
                        deliver_webhooks=deliver_webhooks,
                        webhook_retry_delays=webhook_retry_delays)
