"""A local Stripe simulator for DonorHub (development, demos and tests; refused in production).

It imports nothing of DonorHub (tests/payments/test_simulator_independent.py checks that).

Start it in a thread::

    sim = start_simulator(webhook_url="http://127.0.0.1:5000/stripe/webhook",
                          webhook_secret="whsec_dev")
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": sim.base_url})
    ...
    sim.shutdown()

or as a process: ``python -m stripe_simulator --port 12111 ...``.
See docs/stripe-simulator.md.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import NamedTuple

from werkzeug.serving import WSGIRequestHandler, make_server

from .objects import API_VERSION
from .webhooks import DEFAULT_WEBHOOK_RETRY_DELAYS
from .wsgi import SimulatorApp, check_loopback_host, create_app, refuse_production

__all__ = [
    "API_VERSION",
    "DEFAULT_PORT",
    "RunningSimulator",
    "SimulatorApp",
    "check_loopback_host",
    "create_app",
    "refuse_production",
    "start_simulator",
]

DEFAULT_PORT = 12111


class RunningSimulator(NamedTuple):
    """``base_url, shutdown = start_simulator(...)`` or use it as a context manager."""

    base_url: str
    shutdown: Callable[[], None]

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


class _QuietRequestHandler(WSGIRequestHandler):
    """No access log in thread mode: tests read /_sim/requests instead."""

    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


def start_simulator(
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    *,
    deliver_webhooks: bool = True,
    db_path: str = ":memory:",
    host: str = "127.0.0.1",
    port: int = 0,
    production: bool | None = None,
    webhook_retry_delays: tuple[float, ...] = DEFAULT_WEBHOOK_RETRY_DELAYS,
    quiet: bool = True,
) -> RunningSimulator:
    """Serve the simulator from a background thread; ``port=0`` picks a free port.

    Raises SystemExit in production or for a non-loopback host. ``shutdown()`` stops the
    server and the webhook thread and closes the database; it is safe to call twice.
    """
    refuse_production(production)
    bind_host = check_loopback_host(host)
    app = create_app(
        db_path=db_path,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        deliver_webhooks=deliver_webhooks,
        webhook_retry_delays=webhook_retry_delays,
        production=production,
    )
    try:
        server = make_server(
            bind_host,
            port,
            app,
            threaded=True,
            request_handler=_QuietRequestHandler if quiet else None,
        )
    except BaseException:
        app.close()
        raise
    # A short poll interval keeps shutdown() quick, which matters in a test suite.
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="stripe-simulator",
        daemon=True,
    )
    thread.start()
    shown_host = f"[{bind_host}]" if ":" in bind_host else bind_host
    stopped = threading.Event()

    def shutdown() -> None:
        if stopped.is_set():
            return
        stopped.set()
        server.shutdown()
        server.server_close()
        thread.join()
        app.close()

    return RunningSimulator(f"http://{shown_host}:{server.server_port}", shutdown)
