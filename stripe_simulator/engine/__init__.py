"""The simulated Stripe account: one ``Engine`` that the API, control and page surfaces
call, made of one mixin per area (see ``base.py`` for how the areas call each other)."""

from __future__ import annotations

from .base import CARDS, Ctx, EngineBase, add_interval, interval_text, request_ctx
from .checkout import CheckoutMixin
from .customers import CustomersMixin
from .events import EventsMixin
from .refunds_disputes import RefundsDisputesMixin
from .subscriptions_invoices import SubscriptionsInvoicesMixin

__all__ = ["CARDS", "Ctx", "Engine", "EngineBase", "add_interval", "interval_text", "request_ctx"]


class Engine(
    CheckoutMixin, SubscriptionsInvoicesMixin, CustomersMixin, RefundsDisputesMixin, EventsMixin
):
    """Stripe's behaviour over the store. Every method runs inside a store transaction."""
