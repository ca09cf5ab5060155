"""``python -m stripe_simulator``: run the Stripe simulator as a process."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from werkzeug.serving import make_server

from . import DEFAULT_PORT
from .wsgi import check_loopback_host, create_app, refuse_production


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stripe_simulator",
        description="DonorHub's local Stripe simulator (never in production).",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--webhook-url",
        default=os.environ.get("STRIPE_SIMULATOR_WEBHOOK_URL"),
        help="where to POST signed events, e.g. http://127.0.0.1:5000/stripe/webhook",
    )
    parser.add_argument(
        "--webhook-secret",
        default=os.environ.get("STRIPE_WEBHOOK_SECRET"),
        help="whsec_… secret to sign webhooks with (or STRIPE_WEBHOOK_SECRET)",
    )
    parser.add_argument(
        "--no-webhooks",
        action="store_true",
        help="store events for /v1/events but do not send them",
    )
    parser.add_argument(
        "--db",
        default=":memory:",
        help="SQLite file for the simulator's state (default: in memory)",
    )
    parser.add_argument("--production", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    refuse_production(args.production)
    host = check_loopback_host(args.host)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        app = create_app(
            db_path=args.db,
            webhook_url=args.webhook_url,
            webhook_secret=args.webhook_secret,
            deliver_webhooks=not args.no_webhooks,
        )
    except ValueError as exc:
        parser.error(str(exc))
    server = make_server(host, args.port, app, threaded=True)
    target = args.webhook_url if app.deliverer else "nowhere (read /v1/events)"
    print(
        f"Stripe simulator on http://{host}:{server.server_port} "
        f"(test payments, no money moves); webhooks to {target}",
        flush=True,
    )
    # `make run` stops us with SIGTERM: exit through `finally` so the database closes cleanly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.close()


if __name__ == "__main__":
    main()
