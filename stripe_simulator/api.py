"""The API surface, ``/v1/...``: form-encoded requests as stripe-python sends them, checked
for a test key, answered by the engine with Stripe's error shapes and idempotency rules,
and subject to the faults and holds a test sets up through the control surface."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from .control import Hold, Holds
from .engine import Ctx, Engine, request_ctx
from .objects import API_VERSION, Obj, new_id
from .params import ApiError, Params, decode_params
from .store import Store

log = logging.getLogger(__name__)


def _api(rule: str, endpoint: str, methods: list[str]) -> Rule:
    return Rule(rule, endpoint=f"api:{endpoint}", methods=methods)


RULES = [
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
    *[
        Rule(
            f"/v1/{collection}/<id>",
            endpoint="api:retrieve",
            methods=["GET"],
            defaults={"collection": collection},
        )
        for collection in (
            "invoices",
            "invoice_payments",
            "payment_intents",
            "charges",
            "refunds",
            "disputes",
            "prices",
            "products",
        )
    ],
]

_RETRIEVABLE = {
    "invoices": "invoice",
    "invoice_payments": "invoice_payment",
    "payment_intents": "payment_intent",
    "charges": "charge",
    "refunds": "refund",
    "disputes": "dispute",
    "prices": "price",
    "products": "product",
}


class ApiSurface:
    """Answers ``api:`` endpoints: one method ``_api_<endpoint>`` per route."""

    def __init__(self, store: Store, engine: Engine, holds: Holds) -> None:
        self.store = store
        self.engine = engine
        self.holds = holds
        self._inflight: set[str] = set()
        self._inflight_lock = threading.Lock()

    def handle(self, request: Request, name: str, args: Mapping[str, Any]) -> Response:
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        seq = self.store.log_request(
            request.method, request.path, request.query_string.decode("latin-1"), key
        )
        status, outcome = 500, "error"
        try:
            response, outcome = self._checked(request, name, args, key)
            status = response.status_code
            return response
        finally:
            self.store.finish_request(seq, status, outcome)

    def _checked(
        self, request: Request, name: str, args: Mapping[str, Any], key: str | None
    ) -> tuple[Response, str]:
        request_id = new_id("req_", 14)
        headers = {"Request-Id": request_id, "Stripe-Version": API_VERSION}
        if key:
            headers["Idempotency-Key"] = key
        api_key = _api_key(request)
        if not api_key or not api_key.startswith("sk_test_"):
            shown = f"{api_key[:8]}…" if api_key else "none"
            return ApiError(
                401,
                f"Invalid API Key provided: {shown}. The Stripe simulator "
                "accepts test secret keys (sk_test_…) only.",
                code="api_key_invalid",
            ).response(headers), "unauthorized"
        body = request.get_data(cache=True)
        source = body if request.method == "POST" else request.query_string
        pairs = urllib.parse.parse_qsl(
            source.decode("utf-8", errors="replace"), keep_blank_values=True
        )
        request_hash = hashlib.sha256(
            request.method.encode()
            + b" "
            + request.path.encode()
            + b"\n"
            + json.dumps(sorted(pairs)).encode()
        ).hexdigest()
        if key:
            replay = self._idempotency_check(key, request, request_hash, headers)
            if replay is not None:
                return replay
        hold: Hold | None = None
        held, hold_at = False, "call"
        try:
            fault = self.store.take_fault(request.method, request.path)
            if fault is not None:
                if fault.hold:  # outside the store lock: the test decides when we go on
                    hold, hold_at = self.holds.get(fault.hold), fault.hold_at
                if hold is not None and hold_at == "call":
                    held = True
                    if not hold.enter():
                        return ApiError(
                            500,
                            f"Hold {fault.hold!r} was never released (simulated fault).",
                            type="api_error",
                        ).response(headers), "fault"
                if fault.delay_seconds:
                    time.sleep(fault.delay_seconds)  # outside the store lock: a slow Stripe
                if fault.status:
                    error = _fault_error(fault.status).response(headers)
                    if fault.saved and key:
                        # Execution had begun: Stripe keeps this answer under the key and
                        # replays it to every retry with the same key.
                        self.store.put_idempotent(
                            key,
                            request_hash=request_hash,
                            method=request.method,
                            path=request.path,
                            status=error.status_code,
                            body=error.get_data(as_text=True),
                        )
                    return error, "fault"
            ctx = request_ctx(request, request_id=request_id, idempotency_key=key)
            try:
                with self.store.transaction():
                    params = Params(decode_params(pairs))
                    self.engine.expire_due_sessions(ctx)
                    result = getattr(self, f"_api_{name}")(ctx, params, **args)
                    text = json.dumps(result, indent=2)
                    if key:
                        # Saved with the effect, in one transaction: a replay can never
                        # disagree with what happened.
                        self.store.put_idempotent(
                            key,
                            request_hash=request_hash,
                            method=request.method,
                            path=request.path,
                            status=200,
                            body=text,
                        )
            except ApiError as exc:
                return exc.response(headers), "error"
            except Exception as exc:  # a simulator bug: answer like Stripe's 500, loudly
                log.exception("stripe simulator: %s %s failed", request.method, request.path)
                return ApiError(
                    500,
                    f"The Stripe simulator failed: {type(exc).__name__}: {exc}",
                    type="api_error",
                ).response(headers), "crash"
            if hold is not None and hold_at == "answer":
                held = True
                hold.enter()  # done at Stripe, the answer held back (the guard answers)
            return Response(text, 200, headers=headers, content_type="application/json"), "ok"
        finally:
            if key:
                with self._inflight_lock:
                    self._inflight.discard(key)
            if held and hold is not None:
                hold.leave()

    def _idempotency_check(
        self, key: str, request: Request, request_hash: str, headers: dict[str, str]
    ) -> tuple[Response, str] | None:
        """None to go ahead (key now in flight); else the response and its log outcome."""
        with self._inflight_lock:
            if key in self._inflight:
                return ApiError(
                    409,
                    "There is currently another in-progress request using this "
                    f"Idempotent Key (that probably means you submitted twice, and the "
                    f"other request is still going through): {key}. Please try again "
                    "later.",
                    code="idempotency_key_in_use",
                ).response(headers), "in_use"
            saved = self.store.get_idempotent(key)
            if saved is None:
                self._inflight.add(key)
                return None
        if (saved["method"], saved["path"]) != (request.method, request.path):
            return ApiError(
                400,
                "Keys for idempotent requests can only be used for the same endpoint they "
                f"were first used for ('{saved['method']} {saved['path']}' vs "
                f"'{request.method} {request.path}'). Try using a key other than '{key}' if "
                "you meant to execute a different request.",
                type="idempotency_error",
            ).response(headers), "idempotency_mismatch"
        if saved["request_hash"] != request_hash:
            return ApiError(
                400,
                "Keys for idempotent requests can only be used with the same parameters "
                f"they were first used with. Try using a key other than '{key}' if you "
                "meant to execute a different request.",
                type="idempotency_error",
            ).response(headers), "idempotency_mismatch"
        headers["Idempotent-Replayed"] = "true"
        return Response(
            saved["body"], saved["status"], headers=headers, content_type="application/json"
        ), "replayed"

    def _api_create_checkout_session(self, ctx: Ctx, params: Params) -> Obj:
        return self.engine.create_checkout_session(ctx, params)

    def _retrieve(self, params: Params, object_id: str, object_type: str) -> Obj:
        params.check({"expand"}, {"expand"})
        return self.engine.expand(self.engine.load(object_id, object_type).data, params.expand())

    def _api_retrieve_checkout_session(self, ctx: Ctx, params: Params, id: str) -> Obj:
        return self._retrieve(params, id, "checkout.session")

    def _api_checkout_line_items(self, ctx: Ctx, params: Params, id: str) -> Obj:
        params.check({"ending_before", "expand", "limit", "starting_after"}, {"expand", "limit"})
        session = self.engine.load(id, "checkout.session").data
        return self.engine.expand(self.engine.session_line_items(session), params.expand())

    def _api_expire_checkout_session(self, ctx: Ctx, params: Params, id: str) -> Obj:
        return self.engine.expire_checkout_session(ctx, id, params)

    def _api_retrieve_subscription(self, ctx: Ctx, params: Params, id: str) -> Obj:
        return self._retrieve(params, id, "subscription")

    def _api_update_subscription(self, ctx: Ctx, params: Params, id: str) -> Obj:
        return self.engine.update_subscription(ctx, id, params)

    def _api_cancel_subscription(self, ctx: Ctx, params: Params, id: str) -> Obj:
        return self.engine.cancel_subscription(ctx, id, params)

    def _api_create_portal_session(self, ctx: Ctx, params: Params) -> Obj:
        return self.engine.create_portal_session(ctx, params)

    def _api_create_refund(self, ctx: Ctx, params: Params) -> Obj:
        return self.engine.create_refund(ctx, params)

    def _api_list_refunds(self, ctx: Ctx, params: Params) -> Obj:
        return self.engine.list_refunds(params)

    def _api_list_events(self, ctx: Ctx, params: Params) -> Obj:
        return self.engine.list_events(params)

    def _api_retrieve_event(self, ctx: Ctx, params: Params, id: str) -> Obj:
        params.check({"expand"}, {"expand"})
        event = self.store.get_event(id)
        if event is None:
            raise ApiError.missing("event", id)
        return self.engine.expand(event, params.expand())

    def _api_create_customer(self, ctx: Ctx, params: Params) -> Obj:
        return self.engine.create_customer(ctx, params)

    def _api_retrieve_customer(self, ctx: Ctx, params: Params, id: str) -> Obj:
        return self._retrieve(params, id, "customer")

    def _api_delete_customer(self, ctx: Ctx, params: Params, id: str) -> Obj:
        params.check(set(), set())
        return self.engine.delete_customer(ctx, id)

    def _api_list_invoice_payments(self, ctx: Ctx, params: Params) -> Obj:
        return self.engine.list_invoice_payments(params)

    def _api_retrieve(self, ctx: Ctx, params: Params, id: str, collection: str) -> Obj:
        return self._retrieve(params, id, _RETRIEVABLE[collection])


def _api_key(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer ") :].strip()
    if request.authorization and request.authorization.username:  # Stripe accepts Basic too
        return request.authorization.username
    return None


def _fault_error(status: int) -> ApiError:
    if status == 402:
        return ApiError(
            402,
            "Your card was declined.",
            type="card_error",
            code="card_declined",
            decline_code="generic_decline",
        )
    if status == 429:
        return ApiError(
            429, "Too many requests hit the API too quickly (simulated fault).", code="rate_limit"
        )
    if status == 409:
        return ApiError(
            409,
            "This object cannot be accessed right now because another API "
            "request or Stripe process is currently accessing it (simulated "
            "fault).",
            code="lock_timeout",
        )
    if status >= 500:
        return ApiError(status, "An unknown error occurred (simulated fault).", type="api_error")
    return ApiError(status, "Simulated fault.")
