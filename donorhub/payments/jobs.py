"""Scheduled payments work: reconciliation with Stripe."""

from __future__ import annotations

from flask import current_app

from donorhub.jobs.registry import JobSpec
from donorhub.payments.reconcile import reconcile


def reconcile_stripe() -> str:
    """Apply any Stripe events that the webhook missed."""
    return reconcile().summary()


JOBS = [
    JobSpec(
        name="reconcile_stripe",
        func=reconcile_stripe,
        trigger=lambda: {
            "trigger": "interval",
            "minutes": current_app.config["STRIPE_RECONCILE_INTERVAL_MINUTES"],
        },
        description="List recent Stripe events and apply any the webhook missed",
    ),
]
