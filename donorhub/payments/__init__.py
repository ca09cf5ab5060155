"""Payments: the only package that imports `stripe` (gateway, webhooks, reconciliation)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """The gateway, the webhook endpoint and `flask payments`."""
    from donorhub.payments import gateway
    from donorhub.payments.cli import payments_cli
    from donorhub.payments.webhooks import bp

    gateway.init_app(app)
    app.register_blueprint(bp)
    app.cli.add_command(payments_cli)
