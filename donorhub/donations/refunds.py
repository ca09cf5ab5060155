"""Refunds and disputes as facts about a gift's payment, not steps of one status.

A gift that was paid can be refunded in parts, a refund can fail (or be cancelled) after it
succeeded, and the cardholder can dispute the charge before or after any refund, with an
outcome. Stripe's events about these arrive in any order, so each one records a fact that
only moves forward:

- a Refund row per Stripe refund (staff's own, matched by the id in its metadata, or one made
  in the Dashboard), whose status only advances (models.py REFUND_STAGE);
- the highest `amount_refunded` any charge event reported (Stripe's own sum);
- a Dispute row per Stripe dispute, whose status only advances (models.py DISPUTE_STAGE).

What staff see, reports count and Gift Aid claims follow from `recompute`, which derives the
refunded amount and the dispute summary from those facts, and then the gift's status label
(Donation.derived_status): refunded, partially refunded, disputed, charged back (dispute
lost), paid.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from donorhub.audit import record_audit
from donorhub.database import utcnow
from donorhub.donations.models import (
    DISPUTE_STAGE,
    REFUND_COUNTED,
    REFUND_UNDONE,
    Dispute,
    DisputeStatus,
    Donation,
    DonationStatus,
    OfflineGift,
    Refund,
    RefundStatus,
)
from donorhub.errors import DomainError
from donorhub.extensions import db
from donorhub.payments.events import (
    ChargeData,
    DisputeData,
    HandlerOutcome,
    PaymentEvent,
    RefundData,
)
from donorhub.payments.gateway import GatewayError, RefundRequest, get_gateway

log = logging.getLogger(__name__)


# Refund facts -------------------------------------------------------------------------------


def refund_status(stripe_status: str) -> RefundStatus:
    try:
        return RefundStatus(stripe_status)
    except ValueError:
        return RefundStatus.PENDING  # an unknown new status: money is on its way back


def record_refund(donation: Donation, r: RefundData) -> Refund:
    """The refund as a fact of the gift: the staff row it was made from (by the id in its
    metadata), or a new row for a refund made outside DonorHub. Its status only advances."""
    row = db.session.scalar(select(Refund).where(Refund.stripe_refund_id == r.id).with_for_update())
    if row is None and r.intent_row and r.intent_row.isdigit():
        row = db.session.scalar(
            select(Refund)
            .where(
                Refund.id == int(r.intent_row),
                Refund.donation_id == donation.id,
                Refund.stripe_refund_id.is_(None),
            )
            .with_for_update()
        )
    if row is None:
        row = Refund(
            donation_id=donation.id,
            amount_minor=r.amount,
            currency=(r.currency or donation.currency).lower(),
            reason="other",
            status=RefundStatus.REQUESTED,
        )
        db.session.add(row)
        record_audit(
            None,
            "donation.refund_seen",
            "donation",
            donation.id,
            {"stripe_refund": r.id, "amount_minor": r.amount},
        )
    row.stripe_refund_id = r.id
    if row.advance(refund_status(r.status)):
        if r.failure_reason:
            row.failure_reason = str(r.failure_reason)[:64]
        if row.status in (RefundStatus.FAILED, RefundStatus.CANCELED):
            _tell_staff_refund_failed(donation, row)
    db.session.flush()
    return row


def _tell_staff_refund_failed(donation: Donation, row: Refund) -> None:
    record_audit(
        None,
        "donation.refund_failed",
        "donation",
        donation.id,
        {
            "refund": row.id,
            "status": row.status.value,
            "failure_reason": row.failure_reason or "unknown",
        },
    )
    log.warning("refund failed at Stripe", extra={"donation_id": donation.id, "refund_id": row.id})


def refunded_minor(donation: Donation) -> int:
    """What has gone back to the donor, from the facts: the refunds that count (staff's,
    Stripe's, offline), or Stripe's own sum from the charge less the refunds that failed since,
    whichever is more; never more than was paid."""
    counted = (
        db.session.scalar(
            select(func.coalesce(func.sum(Refund.amount_minor), 0)).where(
                Refund.donation_id == donation.id, Refund.status.in_(REFUND_COUNTED)
            )
        )
        or 0
    )
    undone = (
        db.session.scalar(
            select(func.coalesce(func.sum(Refund.amount_minor), 0)).where(
                Refund.donation_id == donation.id,
                Refund.status.in_(REFUND_UNDONE),
                Refund.stripe_refund_id.is_not(None),
            )
        )
        or 0
    )
    from_charge = max(0, (donation.stripe_refunded_minor or 0) - int(undone))
    return min(donation.amount_minor, max(int(counted), from_charge))


# Staff refunds: asking, sending, settling --------------------------------------------------

REFUND_REASONS = ("requested_by_customer", "duplicate", "fraudulent", "other")


def refundable_minor(donation: Donation) -> int:
    """What may still be refunded: never more than was paid, counting refunds asked for
    whose outcome Stripe has not told us yet."""
    asked = (
        db.session.scalar(
            select(func.coalesce(func.sum(Refund.amount_minor), 0)).where(
                Refund.donation_id == donation.id,
                Refund.status.in_(REFUND_COUNTED | {RefundStatus.REQUESTED}),
            )
        )
        or 0
    )
    return max(0, donation.amount_minor - max(donation.amount_refunded_minor, int(asked)))


def request_refund(
    donation_id: int, amount_minor: int, reason: str, note: str | None, request_token: str, actor
) -> tuple[Refund, bool]:
    """The refund staff (or, with `actor` None, a job) asked for, as a row of its own:
    (row, created). The caller commits it
    before send_refund calls Stripe, so the idempotency key (refund-<row id>-<random>) and Stripe's
    metadata name this one intent whatever happens next. The gift's row lock serialises two
    submits; the second of the same form (same request_token) gets the first's row.

    An offline gift's refund is recorded at once, because no one else will tell us."""
    donation = db.session.scalar(
        select(Donation).where(Donation.id == donation_id).with_for_update()
    )
    if donation is None:
        raise DomainError("No such gift.")
    existing = db.session.scalar(select(Refund).where(Refund.request_token == request_token))
    if existing is not None:
        if existing.donation_id != donation.id:
            raise DomainError("This form is out of date: reload the page and try again.")
        return existing, False
    if reason not in REFUND_REASONS:
        raise DomainError("Choose a reason.")
    if donation.status not in (DonationStatus.PAID, DonationStatus.PARTIALLY_REFUNDED):
        raise DomainError("Only a paid gift can be refunded.")
    if amount_minor <= 0 or amount_minor > refundable_minor(donation):
        raise DomainError("The amount is more than can be refunded.")
    offline = db.session.scalar(select(OfflineGift).where(OfflineGift.donation_id == donation.id))
    if offline is None and not (donation.stripe_payment_intent_id or donation.stripe_charge_id):
        raise DomainError("Stripe holds no payment for this gift.")
    refund = Refund(
        donation_id=donation.id,
        amount_minor=amount_minor,
        currency=donation.currency,
        reason=reason,
        note=note,
        status=RefundStatus.REQUESTED,
        request_token=request_token,
        created_by_id=actor.id if actor is not None else None,
    )
    try:
        with db.session.begin_nested():
            db.session.add(refund)
            db.session.flush()
    except IntegrityError:
        # The same form, submitted at the same moment (where the row lock is a no-op, as on
        # SQLite): the unique token lets one in; the other gets its row.
        existing = db.session.scalar(select(Refund).where(Refund.request_token == request_token))
        if existing is None or existing.donation_id != donation.id:
            raise DomainError("This form is out of date: reload the page and try again.") from None
        return existing, False
    # The row id alone is not unique at Stripe: after a database restore (or with a second
    # database on the same Stripe account) ids are handed out again, and within Stripe's 24
    # hours the same key would replay the old refund or be refused. A random part, stored on
    # the row before Stripe is called, makes the key this row's for good.
    refund.idempotency_key = f"refund-{refund.id}-{secrets.token_urlsafe(12)}"
    if offline is not None:
        refund.advance(RefundStatus.SUCCEEDED)
        recompute(donation)
    record_audit(
        actor,
        "donation.refunded",
        "donation",
        donation.id,
        {"refund": refund.id, "amount_minor": amount_minor, "reason": reason},
    )
    db.session.flush()
    return refund, True


#: A job's refund of one gift is asked for this many times (each a new row once Stripe refused
#: or lost the one before); then it is left to staff, who see every failure in the audit log.
AUTOMATIC_REFUND_ATTEMPTS = 5


def request_automatic_refund(donation_id: int, token_prefix: str, note: str) -> Refund | None:
    """Ask for the rest of a paid gift back on behalf of a job (no person): the row already
    in flight (not answered by Stripe yet: send it again, same key), a new row, or None when
    nothing is left to refund or the attempts are used up.

    An instalment's invoice.paid event names no payment: its PaymentIntent is asked of
    Stripe first (a GatewayError leaves everything as it was, for the next try).

    Each attempt's request token is `<token_prefix>-<n>`, so asking again never makes a
    second refund of what the first one returned, and a row Stripe refused (not sent, or
    failed afterwards) is followed by a new one with a new key. Same rules as staff refunds:
    never more than was paid, counting refunds whose outcome is not known yet."""
    found = db.session.get(Donation, donation_id)
    if found is None:
        raise DomainError("No such gift.")
    intent = None
    if not (found.stripe_payment_intent_id or found.stripe_charge_id) and found.stripe_invoice_id:
        intent = get_gateway().payment_intent_of_invoice(found.stripe_invoice_id)
    donation = db.session.scalar(
        select(Donation)
        .where(Donation.id == donation_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if donation is None:
        raise RuntimeError("gift row vanished")  # read above; gifts are never deleted
    if intent and not (donation.stripe_payment_intent_id or donation.stripe_charge_id):
        donation.stripe_payment_intent_id = intent
    tries = db.session.scalars(
        select(Refund)
        .where(Refund.donation_id == donation.id, Refund.request_token.like(f"{token_prefix}-%"))
        .order_by(Refund.id)
    ).all()
    for row in tries:
        if row.status is RefundStatus.REQUESTED and row.stripe_refund_id is None:
            return row
    if donation.status not in (DonationStatus.PAID, DonationStatus.PARTIALLY_REFUNDED):
        return None
    amount = refundable_minor(donation)
    if amount <= 0:
        return None
    if len(tries) >= AUTOMATIC_REFUND_ATTEMPTS:
        return None  # each failure is in the audit log for staff (refund_not_sent / _failed)
    row, _ = request_refund(
        donation.id, amount, "other", note, f"{token_prefix}-{len(tries) + 1}", None
    )
    return row


def automatic_refund_settled(donation_id: int, token_prefix: str) -> bool:
    """Whether nothing more is to be done for a job's refund of this gift: refunded (Stripe
    accepted it), nothing left to refund, or the attempts are used up (staff were told)."""
    donation = db.session.get(Donation, donation_id)
    if donation is None:
        return True
    tries = db.session.scalars(
        select(Refund).where(
            Refund.donation_id == donation.id, Refund.request_token.like(f"{token_prefix}-%")
        )
    ).all()
    if any(r.status is RefundStatus.REQUESTED for r in tries):
        return False
    if donation.status not in (DonationStatus.PAID, DonationStatus.PARTIALLY_REFUNDED):
        return True
    return refundable_minor(donation) <= 0 or len(tries) >= AUTOMATIC_REFUND_ATTEMPTS


def send_refund(refund_id: int) -> Refund:
    """Call Stripe for a committed refund row and record its answer. The same row always
    sends the same key and the same parameters, so a retry is the same refund, never a
    second one. Locks the gift, then the refund (the webhook's order)."""
    row = db.session.get(Refund, refund_id)
    if row is None:
        raise DomainError("No such refund.")
    donation = db.session.scalar(
        select(Donation).where(Donation.id == row.donation_id).with_for_update()
    )
    row = db.session.scalar(
        select(Refund)
        .where(Refund.id == refund_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if donation is None or row is None:  # both read above; neither is ever deleted
        raise RuntimeError("refund or gift row vanished")
    if row.status is not RefundStatus.REQUESTED or row.stripe_refund_id:
        return row  # already sent and answered (a webhook or reconcile got there first)
    if row.idempotency_key is None:  # given when the refund was recorded
        raise RuntimeError("refund without an idempotency key")
    result = get_gateway().refund(
        RefundRequest(
            payment_intent_id=donation.stripe_payment_intent_id,
            charge_id=None if donation.stripe_payment_intent_id else donation.stripe_charge_id,
            amount_minor=row.amount_minor,
            reason=None if row.reason == "other" else row.reason,
            idempotency_key=row.idempotency_key,
            metadata={"donation": donation.public_id, "refund": str(row.id)},
        )
    )
    if row.stripe_refund_id is None:
        row.stripe_refund_id = result.id
    row.advance(refund_status(result.status))
    db.session.flush()
    return row


def settle_refund(refund_id: int) -> str | None:
    """Ask Stripe now what became of a refund whose call failed with a 5xx: "recovered"
    (Stripe made it), "not_sent" (it did not: the amount is free again) or None."""
    return recover_refund(refund_id)


def refund_refused(refund_id: int, kind: str) -> None:
    """Stripe refused the request for good (a 4xx): no money moved; the amount is free again."""
    row = db.session.scalar(select(Refund).where(Refund.id == refund_id).with_for_update())
    if row is not None and row.status is RefundStatus.REQUESTED and not row.stripe_refund_id:
        row.advance(RefundStatus.NOT_SENT)
        row.failure_reason = f"refused by Stripe ({kind})"[:64]
        record_audit(
            None,
            "donation.refund_not_sent",
            "donation",
            row.donation_id,
            {"refund": row.id, "kind": kind},
        )


# Dispute facts ------------------------------------------------------------------------------


def dispute_status(stripe_status: str, closed: bool) -> DisputeStatus:
    try:
        return DisputeStatus(stripe_status)
    except ValueError:
        # An unknown status: a closed event is an outcome we do not know (keep the money's
        # label as won, like before); anything else is an open dispute.
        return DisputeStatus.WON if closed else DisputeStatus.NEEDS_RESPONSE


def is_closed(stripe_status: str) -> bool:
    return DISPUTE_STAGE[dispute_status(stripe_status, False)] == 2


def record_dispute(donation: Donation, d: DisputeData, closed: bool, when: datetime) -> Dispute:
    row = db.session.scalar(
        select(Dispute).where(Dispute.stripe_dispute_id == d.id).with_for_update()
    )
    if row is None:
        # A dispute recorded before disputes had rows of their own: its next event names it.
        row = db.session.scalar(
            select(Dispute)
            .where(Dispute.stripe_dispute_id == f"recorded-{donation.id}")
            .with_for_update()
        )
        if row is not None:
            row.stripe_dispute_id = d.id
    target = dispute_status(d.status, closed)
    if closed and DISPUTE_STAGE[target] < 2:
        target = DisputeStatus.WON  # a closed event always carries an outcome
    if row is None:
        row = Dispute(
            donation_id=donation.id,
            stripe_dispute_id=d.id,
            amount_minor=d.amount,
            currency=(d.currency or donation.currency).lower(),
            status=target,
            opened_at=when,
        )
        db.session.add(row)
    else:
        row.advance(target)
    if row.closed and row.closed_at is None:
        row.closed_at = when
    db.session.flush()
    return row


def dispute_summary(donation: Donation) -> str | None:
    """ "lost" if any dispute was lost, "open" if any is open, "won" if all closed otherwise."""
    statuses = set(
        db.session.scalars(select(Dispute.status).where(Dispute.donation_id == donation.id))
    )
    if not statuses:
        return None
    if DisputeStatus.LOST in statuses:
        return "lost"
    if any(DISPUTE_STAGE[s] < 2 for s in statuses):
        return "open"
    return "won"


# Deriving ----------------------------------------------------------------------------------


def recompute_facts(donation: Donation) -> None:
    """Derive the refunded amount and the dispute summary from the facts."""
    db.session.flush()
    donation.amount_refunded_minor = refunded_minor(donation)
    donation.dispute_status = dispute_summary(donation)


def recompute(donation: Donation) -> None:
    """recompute_facts, then the status label they call for."""
    recompute_facts(donation)
    donation.settle()


def known_stripe_refunds_minor(donation: Donation) -> int:
    """The sum of the refunds we hold a Stripe id for and that count."""
    return int(
        db.session.scalar(
            select(func.coalesce(func.sum(Refund.amount_minor), 0)).where(
                Refund.donation_id == donation.id,
                Refund.status.in_(REFUND_COUNTED),
                Refund.stripe_refund_id.is_not(None),
            )
        )
        or 0
    )


def record_charge_facts(donation: Donation, c: ChargeData) -> None:
    """charge.refunded: Stripe's sum (amount_refunded), the only refund fact a Charge carries
    since API version 2022-11-15. When the sum is more than the refunds we have heard of, one
    of them is news to us (made in the Dashboard, or its refund.* event is still on its way):
    list the payment's refunds at Stripe and record each. If Stripe cannot be asked now, the
    sum still counts (refunded_minor) and the refund.* events bring the rows."""
    donation.stripe_refunded_minor = max(
        donation.stripe_refunded_minor or 0, min(c.amount_refunded, donation.amount_minor)
    )
    if c.amount_refunded <= known_stripe_refunds_minor(donation):
        return
    try:
        listed = get_gateway().list_refunds(
            c.payment_intent_id, None if c.payment_intent_id else c.id
        )
    except GatewayError as error:
        log.warning(
            "could not list a charge's refunds",
            extra={"donation_id": donation.id, "kind": error.kind},
        )
        return
    for refund in listed:
        if refund.charge_id in (None, c.id):
            record_refund(donation, refund)


# Webhook handlers ---------------------------------------------------------------------------


def record_refund_updated(event: PaymentEvent) -> HandlerOutcome:
    """refund.created / refund.updated / refund.failed / charge.refund.updated (Stripe sends
    either name depending on the API version): one refund's status, failures included."""
    from donorhub.donations import stripe_events

    r = event.subject
    if not isinstance(r, RefundData):
        raise TypeError(f"{event.type} carries {type(r).__name__}, not RefundData")
    donation = stripe_events.find_donation_for_payment(
        r.refs.donation, r.payment_intent_id, r.charge_id
    )
    if donation is None:
        return HandlerOutcome.IGNORED
    before = donation.amount_refunded_minor
    had_receipt = donation.receipt is not None
    record_refund(donation, r)
    recompute_facts(donation)
    # A refund proves the charge succeeded: the money arrived before it went back.
    outcome = stripe_events.mark_paid_by_reversal(donation, event, r.payment_intent_id, r.charge_id)
    if outcome is HandlerOutcome.FLAGGED:
        return outcome
    if had_receipt:
        stripe_events.tell_donor_of_refund(donation, before)
    return HandlerOutcome.APPLIED


# Recovery ----------------------------------------------------------------------------------

#: A staff refund still "requested" after this long was either sent and its answer lost
#: (a timeout, a worker that died) or never sent at all; reconcile asks Stripe which.
RECOVER_AFTER = timedelta(minutes=10)


def stale_refund_ids(older_than: timedelta = RECOVER_AFTER) -> list[int]:
    """Our own refunds (staff's, or a job's: those with our idempotency key) still
    "requested" (no Stripe answer recorded) for longer than a call can take: their outcome
    was lost (a timeout, a worker that died) or they were never sent."""
    cutoff = utcnow() - older_than
    return list(
        db.session.scalars(
            select(Refund.id)
            .where(
                Refund.status == RefundStatus.REQUESTED,
                Refund.stripe_refund_id.is_(None),
                Refund.idempotency_key.is_not(None),
                Refund.created_at <= cutoff,
            )
            .order_by(Refund.id)
        )
    )


def recover_refund(refund_id: int) -> str | None:
    """Settle one staff refund whose Stripe call's outcome we never recorded: list the
    charge's refunds at Stripe and match ours by the row id in their metadata.

    Found: recorded like its event ("recovered"). Not found: Stripe never received it, so it
    is marked not sent ("not_sent") and no longer holds the amount back (a late replay of the
    same call is impossible past the age stale_refund_ids waits). The caller commits."""
    from donorhub.donations import stripe_events

    donation = db.session.scalar(
        select(Donation)
        .join(Refund, Refund.donation_id == Donation.id)
        .where(Refund.id == refund_id)
        .with_for_update(of=Donation)
    )
    row = db.session.scalar(select(Refund).where(Refund.id == refund_id).with_for_update())
    if (
        donation is None
        or row is None
        or row.status is not RefundStatus.REQUESTED
        or row.stripe_refund_id
    ):
        return None
    listed = get_gateway().list_refunds(
        donation.stripe_payment_intent_id, donation.stripe_charge_id
    )
    match = next((r for r in listed if r.intent_row == str(row.id)), None)
    if match is None:
        row.advance(RefundStatus.NOT_SENT)
        row.failure_reason = "not received by Stripe"
        record_audit(None, "donation.refund_not_sent", "donation", donation.id, {"refund": row.id})
        return "not_sent"
    before = donation.amount_refunded_minor
    record_refund(donation, match)
    recompute(donation)
    stripe_events.tell_donor_of_refund(donation, before)
    record_audit(
        None,
        "donation.refund_recovered",
        "donation",
        donation.id,
        {"refund": row.id, "stripe_refund": match.id},
    )
    return "recovered"
