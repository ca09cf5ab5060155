"""POST /stripe/webhook: verify, store the event once, commit, answer; a worker applies it.

Store first. The request verifies the signature over the raw body, inserts the event row
(unique event id, the verified payload, state `received`) and its commit point commits it
before the 2xx goes out; on PostgreSQL the same statement NOTIFYs the worker. No handler runs
in the request, so Stripe is answered as fast as a verify-and-enqueue endpoint, and a
duplicate delivery, even a concurrent one, meets the unique constraint and changes nothing.

The worker (`apply_due_events`: the jobs process's event worker, or `flask payments
apply-events`) claims due events in Stripe's order, applies each through HANDLERS in a
savepoint of its own (a failing event rolls back only itself), records the outcome, clears
the payload, and commits the batch. A failing event is tried again with backoff and after
WEBHOOK_MAX_ATTEMPTS tries is a dead letter for staff (donorhub/payments/event_queue.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from flask import Response
from flask import request as flask_request
from sqlalchemy.exc import IntegrityError

from donorhub.donations import refunds
from donorhub.donations import services as donations
from donorhub.errors import problem
from donorhub.extensions import csrf, db
from donorhub.logs import log_security_event
from donorhub.payments import bp, event_queue
from donorhub.payments.events import HandlerOutcome, MalformedEvent, PaymentEvent, event_from_dict
from donorhub.payments.gateway import InvalidWebhook, get_gateway
from donorhub.payments.models import EventState, StripeEvent
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
    """This event id was stored before."""


def apply_event(event: PaymentEvent, source: str = "webhook") -> HandlerOutcome:
    """Record an event we already hold as our dataclass and apply it now, in the caller's
    transaction (the caller commits): for events built in code, which have no payload to
    store. Events from Stripe are stored (`store_event`) and applied by the worker.

    :raises DuplicateEvent: the event id is stored already; the caller rolls back.
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
    event_queue.record_applied(row, outcome)
    db.session.flush()
    return outcome


@dataclass
class ApplyReport:
    claimed: int = 0
    applied: int = 0
    failed: int = 0
    dead: int = 0

    def add(self, other: ApplyReport) -> None:
        self.claimed += other.claimed
        self.applied += other.applied
        self.failed += other.failed
        self.dead += other.dead

    def summary(self) -> str:
        return f"{self.applied} applied, {self.failed} failed ({self.dead} now dead letters)"


def apply_stored(row: StripeEvent) -> HandlerOutcome:
    """Apply one claimed event through the dispatch table and record it applied (its
    payload cleared), in the caller's transaction."""
    if row.payload is None:
        raise MalformedEvent("no payload")
    event = event_from_dict(json.loads(row.payload))
    outcome = dispatch(event)
    event_queue.record_applied(row, outcome)
    db.session.flush()
    return outcome


def apply_due_events(limit: int) -> ApplyReport:
    """The worker's step: claim up to `limit` due events and apply each in a savepoint of its
    own, then commit them together. A failing event's savepoint is rolled back (its effect
    only) and its failure recorded; the others are kept. The caller is the edge (the worker
    loop, the CLI, a test helper); this is its unit of work."""
    report = ApplyReport()
    try:
        rows = event_queue.claim_due(limit)
        report.claimed = len(rows)
        for row in rows:
            try:
                with db.session.begin_nested():
                    outcome = apply_stored(row)
                report.applied += 1
                log.info(
                    "webhook event applied",
                    extra={"event_type": row.type, "event_id": row.event_id, "outcome": outcome},
                )
            except Exception as error:  # noqa: BLE001 - recorded on the row, tried again later
                event_queue.record_failure(row, error)
                db.session.flush()
                report.failed += 1
                report.dead += row.state == EventState.DEAD
                log.warning(
                    "webhook event failed",
                    extra={
                        "event_type": row.type,
                        "event_id": row.event_id,
                        "attempts": row.attempts,
                        "error_class": row.last_error,
                        "dead_letter": row.state == EventState.DEAD,
                    },
                )
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return report


def drain(limit: int, rounds: int = 10_000) -> ApplyReport:
    """Apply due events until none are left (events failing now wait for their backoff)."""
    total = ApplyReport()
    for _ in range(rounds):
        report = apply_due_events(limit)
        total.add(report)
        if report.claimed < limit:
            break
    return total


@bp.post("/stripe/webhook")
@machine
@csrf.exempt
def receive():
    """Stripe's events. Authenticated by signature over the raw body, not by a session.
    Stored and committed (by the request's commit point) before the 200; applied later."""
    payload = flask_request.get_data(cache=False)
    signature = flask_request.headers.get("Stripe-Signature")
    try:
        received = get_gateway().parse_webhook(payload, signature)
    except (InvalidWebhook, MalformedEvent) as error:
        log_security_event("webhook_rejected", reason=type(error).__name__)
        return problem(400, "Bad request", "The signature or the payload is not valid.")
    if not event_queue.store_event(received.event, received.payload):
        return Response("duplicate\n", 200, mimetype="text/plain")
    return Response("stored\n", 200, mimetype="text/plain")
