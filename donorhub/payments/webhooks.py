"""POST /stripe/webhook: verify, record the event once, dispatch, commit; 5xx so Stripe retries.

The order inside one transaction is: insert StripeEvent (unique event_id) → dispatch to the
handler → commit. A duplicate, even one arriving at the same moment from another worker, meets the
unique constraint and changes nothing. A handler that fails rolls back everything, its
StripeEvent row included, and answers 500, so Stripe's next delivery applies it once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Response
from flask import request as flask_request
from sqlalchemy.exc import IntegrityError

from donorhub.database import utcnow
from donorhub.donations import refunds
from donorhub.donations import services as donations
from donorhub.errors import problem
from donorhub.extensions import csrf, db
from donorhub.logs import log_security_event
from donorhub.payments import bp
from donorhub.payments.events import HandlerOutcome, MalformedEvent, PaymentEvent
from donorhub.payments.gateway import InvalidWebhook, get_gateway
from donorhub.payments.models import StripeEvent
from donorhub.security import machine
from donorhub.sponsorship import services as sponsorship

log = logging.getLogger(__name__)


#: Every event type we act on, in one place. Anything else is recorded and acknowledged.
HANDLERS: dict[str, Callable[[PaymentEvent], HandlerOutcome]] = {
    "checkout.session.completed": donations.record_checkout_completed,
    "checkout.session.async_payment_succeeded": donations.record_async_payment_succeeded,
    "checkout.session.async_payment_failed": donations.record_async_payment_failed,
    "checkout.session.expired": donations.record_checkout_expired,
    "payment_intent.succeeded": donations.record_payment_intent_succeeded,
    "invoice.paid": donations.record_invoice_paid,
    "invoice.payment_failed": donations.record_invoice_payment_failed,
    "invoice.payment_action_required": donations.record_invoice_action_required,
    "customer.subscription.updated": donations.record_subscription_updated,
    "customer.subscription.deleted": donations.record_subscription_deleted,
    "charge.refunded": donations.record_charge_refunded,
    "charge.dispute.created": donations.record_dispute_created,
    "charge.dispute.closed": donations.record_dispute_closed,
    "charge.dispute.updated": donations.record_dispute_updated,
    # One refund's own status (a refund can fail after it succeeded). Stripe names the
    # update event charge.refund.updated or refund.updated depending on the API version.
    "refund.created": refunds.record_refund_updated,
    "refund.updated": refunds.record_refund_updated,
    "refund.failed": refunds.record_refund_updated,
    "charge.refund.updated": refunds.record_refund_updated,
}


def dispatch(event: PaymentEvent) -> HandlerOutcome:
    """Run the event's handler from the table (ignored when there is none). Events of a
    sponsorship's subscription (metadata {"sponsorship": <opaque id>}) reach the sponsorship
    first, which links its plan and hands the money to the handler."""
    handler = HANDLERS.get(event.type)
    if handler is None or event.subject is None:
        return HandlerOutcome.IGNORED
    return sponsorship.sponsorship_first(handler, event)


class DuplicateEvent(Exception):
    """This event id was applied before."""


def apply_event(event: PaymentEvent, source: str = "webhook") -> HandlerOutcome:
    """Record the event and apply its effect in the caller's transaction (caller commits).

    :raises DuplicateEvent: the event was already applied; the caller rolls back.
    """
    row = StripeEvent(
        event_id=event.id, type=event.type, stripe_created_at=event.created, source=source
    )
    db.session.add(row)
    try:
        db.session.flush()
    except IntegrityError:
        raise DuplicateEvent(event.id) from None
    outcome = dispatch(event)
    row.outcome = outcome.value
    row.processed_at = utcnow()
    db.session.flush()
    return outcome


@bp.post("/stripe/webhook")
@machine
@csrf.exempt
def receive():
    """Stripe's events. Authenticated by signature over the raw body, not by a session."""
    payload = flask_request.get_data(cache=False)
    signature = flask_request.headers.get("Stripe-Signature")
    try:
        event = get_gateway().parse_webhook(payload, signature)
    except (InvalidWebhook, MalformedEvent) as error:
        log_security_event("webhook_rejected", reason=type(error).__name__)
        return problem(400, "Bad request", "The signature or the payload is not valid.")
    try:
        outcome = apply_event(event)
        db.session.commit()
    except DuplicateEvent:
        db.session.rollback()
        return Response("duplicate\n", 200, mimetype="text/plain")
    except Exception:
        db.session.rollback()
        log.exception(
            "webhook handler failed", extra={"event_type": event.type, "event_id": event.id}
        )
        return Response("handler failed; retry\n", 500, mimetype="text/plain")
    log.info(
        "webhook applied",
        extra={"event_type": event.type, "event_id": event.id, "outcome": outcome},
    )
    return Response(f"{outcome}\n", 200, mimetype="text/plain")
