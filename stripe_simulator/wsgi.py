"""A local Stripe simulator: a plain werkzeug WSGI app speaking the part of Stripe's API that
DonorHub uses, with hosted-looking Checkout and Billing Portal pages and signed webhooks.

Three surfaces, one engine (``engine/``) behind them:
- ``/v1/...`` (``api.py``): the API, form-encoded like stripe-python sends it, answered with
  objects built from Stripe's fixtures (``objects.py``), with Stripe's error shapes and
  idempotency rules;
- ``/checkout/...``, ``/billing_portal/...`` (``pages.py``): the pages a donor clicks through;
- ``/_sim/...`` (``control.py``): control endpoints for tests and CLI commands (renewals,
  disputes, faults, holds).

Nothing here imports DonorHub, so tests and ``make run`` can start it alone.
"""

from __future__ import annotations

import ipaddress
import os
import urllib.parse
from collections.abc import Iterable
from typing import TYPE_CHECKING

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map
from werkzeug.wrappers import Request, Response

from . import api, control, pages
from .engine import Engine
from .params import ApiError
from .store import Store
from .webhooks import DEFAULT_WEBHOOK_RETRY_DELAYS, WebhookDeliverer

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


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


# --- the WSGI application --------------------------------------------------------------------

_URL_MAP = Map([*api.RULES, *pages.RULES, *control.RULES], strict_slashes=False)


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
        self.deliverer: WebhookDeliverer | None = None
        if deliver_webhooks and webhook_url and webhook_secret:
            self.deliverer = WebhookDeliverer(
                store, webhook_url, webhook_secret, webhook_retry_delays
            )
        delivering = self.deliverer is not None
        self.engine = Engine(store, deliver=delivering)
        self.holds = control.Holds()
        self.api = api.ApiSurface(store, self.engine, self.holds)
        self.control = control.ControlSurface(
            store, self.engine, self.holds, webhook_url=webhook_url, delivering=delivering
        )
        self.pages = pages.PagesSurface(
            store, self.engine, webhook_url=webhook_url, delivering=delivering
        )
        if self.deliverer is not None:
            self.deliverer.start()

    def close(self) -> None:
        self.holds.open_all()
        if self.deliverer:
            self.deliverer.stop()
        self.store.close()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
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
                return ApiError(
                    404,
                    f"Unrecognized request URL ({request.method}: "
                    f"{request.path}). The Stripe simulator implements only "
                    "the endpoints DonorHub uses.",
                ).response()
            return exc.get_response(request.environ)
        kind, name = str(endpoint).split(":")
        try:
            if kind == "api":
                return self.api.handle(request, name, args)
            if kind == "control":
                return self.control.handle(request, name, args)
            if kind == "hold":
                return self.control.handle_hold(request, name, args["name"])
            return self.pages.handle(request, name, args)
        finally:
            if self.deliverer:
                self.deliverer.wake()


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
    return SimulatorApp(
        Store(db_path),
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        deliver_webhooks=deliver_webhooks,
        webhook_retry_delays=webhook_retry_delays,
    )
