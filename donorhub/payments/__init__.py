"""Payments: the only package that imports `stripe` (gateway, webhooks, reconciliation)."""

from flask import Blueprint

#: The Stripe webhook endpoint (webhooks.py); no pages.
bp = Blueprint("payments_webhook", __name__)
