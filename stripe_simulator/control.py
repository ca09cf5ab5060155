"""The control surface, ``/_sim/...``: what tests and CLI commands drive that Stripe does on
its own (renewals, invoice retries, disputes, failed refunds, delayed payments), faults and
holds on API calls, and the logs a test reads (requests, objects, webhook deliveries)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from werkzeug.routing import Rule
from werkzeug.wrappers import Request, Response

from .engine import Ctx, Engine, request_ctx
from .objects import API_VERSION, Obj
from .params import ApiError, json_response
from .store import Store

#: How long a held request or a control call waiting on a hold waits at most: a guard
#: against a test that never releases (it fails loudly), never a timing the test relies on.
HOLD_GUARD_SECONDS = 300.0


class Hold:
    """A named gate for API calls, driven by the test: requests that take a fault with
    ``hold`` wait at it (in arrival order) until the test releases them one by one, so a
    test decides the order of Stripe's answers instead of racing delays against a clock."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.arrived = 0  # requests that reached the gate
        self.released = 0  # tickets handed out by the test
        self.done = 0  # released requests whose effect is committed
        self._open = False

    def enter(self) -> bool:
        """Wait for this request's ticket; False if the guard ran out."""
        with self._cond:
            self.arrived += 1
            ticket = self.arrived
            self._cond.notify_all()
            return self._cond.wait_for(
                lambda: self._open or self.released >= ticket, HOLD_GUARD_SECONDS
            )

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


class Holds:
    """The named holds, made on first use; a reset lets everyone waiting go on."""

    def __init__(self) -> None:
        self._holds: dict[str, Hold] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Hold:
        with self._lock:
            return self._holds.setdefault(name, Hold())

    def open_all(self) -> None:
        with self._lock:
            for hold in self._holds.values():
                hold.open()

    def reset(self) -> None:
        with self._lock:  # whoever still waits at a hold goes on
            holds, self._holds = list(self._holds.values()), {}
        for hold in holds:
            hold.open()


RULES = [
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
]


class ControlSurface:
    """Answers ``control:`` endpoints (one method ``_control_<endpoint>`` each, inside a
    store transaction) and ``hold:`` endpoints (outside it)."""

    def __init__(
        self,
        store: Store,
        engine: Engine,
        holds: Holds,
        *,
        webhook_url: str | None,
        delivering: bool,
    ) -> None:
        self.store = store
        self.engine = engine
        self.holds = holds
        self.webhook_url = webhook_url
        self.delivering = delivering

    def handle(self, request: Request, name: str, args: Mapping[str, Any]) -> Response:
        values: dict[str, Any] = {**request.args.to_dict(), **request.form.to_dict()}
        if request.is_json:
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                return json_response({"error": "Send a JSON object."}, 400)
            values.update(body)
        ctx = request_ctx(request)
        try:
            with self.store.transaction():
                self.engine.expire_due_sessions(ctx)
                result = getattr(self, f"_control_{name}")(ctx, values, **args)
        except ApiError as exc:
            return exc.response()
        return json_response(result)

    def handle_hold(self, request: Request, action: str, name: str) -> Response:
        """Holds are driven outside the store's transaction: a held request needs it."""
        values: dict[str, Any] = {**request.args.to_dict()}
        if request.is_json:
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                return json_response({"error": "Send a JSON object."}, 400)
            values.update(body)
        hold = self.holds.get(name)
        try:
            timeout = min(float(values.get("timeout") or HOLD_GUARD_SECONDS), HOLD_GUARD_SECONDS)
            count = int(values.get("count") or 1)
        except (TypeError, ValueError):
            return json_response({"error": "count and timeout must be numbers."}, 400)
        if action == "wait":
            ok = hold.wait_arrived(count, timeout)
        elif action == "release":
            ok = hold.release(count, bool(values.get("wait", True)), timeout)
        else:
            ok = True
        return json_response({"hold": name, **hold.state()}, 200 if ok else 504)

    def _control_health(self, ctx: Ctx, values: dict[str, Any]) -> Obj:
        return {
            "ok": True,
            "api_version": API_VERSION,
            "webhook_url": self.webhook_url,
            "delivering_webhooks": self.delivering,
        }

    def _control_renew(self, ctx: Ctx, values: dict[str, Any], id: str) -> Obj:
        return self.engine.renew(ctx, id, _forced_outcome(values))

    def _control_pay_invoice(self, ctx: Ctx, values: dict[str, Any], id: str) -> Obj:
        return self.engine.retry_invoice(ctx, id, _forced_outcome(values))

    def _control_dispute(self, ctx: Ctx, values: dict[str, Any], id: str) -> Obj:
        reason = str(values.get("reason") or "fraudulent")
        amount = values.get("amount")
        return self.engine.open_dispute(ctx, id, reason, int(amount) if amount else None)

    def _control_fail_refund(self, ctx: Ctx, values: dict[str, Any], id: str) -> Obj:
        reason = values.get("failure_reason") or "expired_or_canceled_card"
        if reason not in ("lost_or_stolen_card", "expired_or_canceled_card", "unknown"):
            raise ApiError.invalid(
                "failure_reason must be lost_or_stolen_card, expired_or_canceled_card or unknown.",
                param="failure_reason",
            )
        return self.engine.fail_refund(ctx, id, reason)

    def _control_close_dispute(self, ctx: Ctx, values: dict[str, Any], id: str) -> Obj:
        status = values.get("status")
        if status not in ("won", "lost"):
            raise ApiError.invalid("Pass status=won or status=lost.", param="status")
        return self.engine.close_dispute(ctx, id, status)

    def _control_async_payment(self, ctx: Ctx, values: dict[str, Any], id: str) -> Obj:
        outcome = values.get("outcome")
        if outcome not in ("pending", "succeeded", "failed"):
            raise ApiError.invalid("Pass outcome=succeeded, failed or pending.", param="outcome")
        return self.engine.async_payment(ctx, id, outcome)

    def _control_list_faults(self, ctx: Ctx, values: dict[str, Any]) -> Obj:
        return {"faults": self.store.faults()}

    def _control_clear_faults(self, ctx: Ctx, values: dict[str, Any]) -> Obj:
        self.store.clear_faults()
        return {"faults": []}

    def _control_add_fault(self, ctx: Ctx, values: dict[str, Any]) -> Obj:
        """The next ``times`` API calls under ``path_prefix`` (and ``method``, if given) wait
        at the named ``hold`` until released, sleep and/or fail."""
        prefix = str(values.get("path_prefix") or "")
        if not prefix.startswith("/v1/"):
            raise ApiError.invalid("path_prefix must start with /v1/", param="path_prefix")
        status = values.get("status")
        status = int(status) if status not in (None, "") else None
        if status is not None and not 400 <= status <= 599:
            raise ApiError.invalid("status must be an HTTP error status (400-599).", param="status")
        delay = float(values.get("delay_seconds") or 0)
        hold = str(values.get("hold") or "") or None
        hold_at = str(values.get("hold_at") or "call")
        if hold_at not in ("call", "answer"):
            raise ApiError.invalid(
                "hold_at is call (before the call runs) or answer (after "
                "its effect, before its answer).",
                param="hold_at",
            )
        if status is None and not delay and not hold:
            raise ApiError.invalid(
                "Give a status, a delay_seconds, a hold, or more than one.", param="status"
            )
        times = int(values.get("times") or 1)
        fault_method = values.get("method")
        saved = str(values.get("saved") or "").lower() in ("1", "true", "yes")
        if saved and (status is None or status in (409, 429)):
            raise ApiError.invalid(
                "Only an error from a request whose execution began is "
                "saved: give a status other than 409 or 429.",
                param="saved",
            )
        self.store.add_fault(
            path_prefix=prefix,
            method=fault_method.upper() if fault_method else None,
            status=status,
            times=times,
            delay_seconds=delay,
            saved=saved,
            hold=hold,
            hold_at=hold_at,
        )
        return {"faults": self.store.faults()}

    def _control_requests(self, ctx: Ctx, values: dict[str, Any]) -> Obj:
        return {"requests": self.store.requests(str(values.get("path_prefix") or ""))}

    def _control_objects(self, ctx: Ctx, values: dict[str, Any]) -> Obj:
        object_type = str(values.get("type") or "")
        if not object_type:
            raise ApiError.invalid(
                "Pass type=checkout.session (or another object type).", param="type"
            )
        return {"objects": [stored.data for stored in self.store.of_type(object_type)]}

    def _control_deliveries(self, ctx: Ctx, values: dict[str, Any]) -> Obj:
        return {"deliveries": self.store.deliveries(int(values.get("since_seq") or 0))}

    def _control_resend(self, ctx: Ctx, values: dict[str, Any], id: str) -> Obj:
        if not self.delivering:
            raise ApiError.invalid("Webhook delivery is off in this simulator.")
        if not self.store.requeue_event(id):
            raise ApiError.missing("event", id)
        return {"requeued": id}

    def _control_reset(self, ctx: Ctx, values: dict[str, Any]) -> Obj:
        self.store.reset()
        self.holds.reset()
        return {"reset": True}


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
