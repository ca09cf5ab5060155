"""Applying Stripe's events to gifts and plans: one handler per event type, which the
webhook's table (payments/webhooks.py) and reconciliation point at.

Handlers are idempotent and order-independent: each records facts that only move one way
and then derives the status (models.py). Each returns a HandlerOutcome: applied, ignored
(not ours, or nothing to do) or flagged (for staff). They flush, never commit (the webhook
commits).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import select

from donorhub.audit import record_audit
from donorhub.donations import dunning, refunds
from donorhub.donations.giftaid import link_declaration
from donorhub.donations.models import (
    CheckoutSessionRecord,
    Donation,
    DonationKind,
    DonationStatus,
    PlanStatus,
    RecurringPlan,
)
from donorhub.donations.plans import (
    flag_plan,
    frequency_of,
    is_pending_change,
    is_sponsorship_plan,
    manage_url,
    settle_plan_change,
    tell_paused_or_resumed,
)
from donorhub.donations.receipts import issue_receipt
from donorhub.extensions import db
from donorhub.mail.services import queue_mail
from donorhub.money import format_money
from donorhub.payments.events import (
    ChargeData,
    CheckoutSessionData,
    DisputeData,
    HandlerOutcome,
    InvoiceData,
    PaymentEvent,
    PaymentIntentData,
    SubscriptionData,
)
from donorhub.payments.gateway import GatewayError, get_gateway
from donorhub.urls import external_url

log = logging.getLogger(__name__)


T = TypeVar("T")


#: Stripe's decline codes in plain words, for the mail that asks a donor to update a card.
FAILURE_WORDS = {
    "insufficient_funds": "your bank said there was not enough money in the account",
    "expired_card": "the card has expired",
    "card_declined": "your bank declined the payment",
    "generic_decline": "your bank declined the payment without saying why",
    "do_not_honor": "your bank declined the payment without saying why",
    "lost_card": "the card was reported lost",
    "stolen_card": "the card was reported stolen",
    "incorrect_cvc": "the security code did not match",
    "authentication_required": "your bank needs you to confirm the payment",
    "processing_error": "there was a problem processing the card",
}


class NotReady(Exception):
    """An event refers to a row that another event has not created yet: answer 5xx, so
    Stripe delivers it again later (reconciliation covers it too)."""


def _lock_donation(**where) -> Donation | None:
    query = select(Donation).filter_by(**where).with_for_update()
    return db.session.scalar(query)


def _lock_plan(refs_plan: str | None, subscription_id: str | None) -> RecurringPlan | None:
    plan = None
    if refs_plan:
        plan = db.session.scalar(
            select(RecurringPlan).where(RecurringPlan.public_id == refs_plan).with_for_update()
        )
    if plan is None and subscription_id:
        plan = db.session.scalar(
            select(RecurringPlan)
            .where(RecurringPlan.stripe_subscription_id == subscription_id)
            .with_for_update()
        )
    return plan


def _flag(row: Donation, reason: str, event: PaymentEvent) -> HandlerOutcome:
    if not row.review_reason:
        row.review_reason = reason[:200]
        record_audit(None, "payment.flagged", "donation", row.id, {"event": event.type})
        log.warning(
            "payment flagged for staff", extra={"donation_id": row.id, "event_type": event.type}
        )
    row.settle()
    return HandlerOutcome.FLAGGED


def _amount_matches(row: Donation, amount: int | None, currency: str | None) -> bool:
    return amount == row.amount_minor and (currency or "").lower() == row.currency


def _mismatch(row: Donation, amount: int | None, currency: str | None) -> str:
    return f"Stripe reported {amount} {currency}; the gift is {row.amount_minor} {row.currency}"


def _second_payment(donation: Donation, intent_id: str | None) -> bool:
    """Another PaymentIntent than the one that paid this gift (a second checkout session)."""
    return bool(
        intent_id
        and donation.stripe_payment_intent_id
        and intent_id != donation.stripe_payment_intent_id
    )


def _flag_second_payment(
    donation: Donation, intent_id: str | None, event: PaymentEvent
) -> HandlerOutcome:
    record_audit(
        None,
        "payment.second_payment",
        "donation",
        donation.id,
        {"payment_intent": intent_id, "event": event.type},
    )
    return _flag(
        donation,
        f"paid twice: second payment {intent_id} through another checkout session; refund it",
        event,
    )


def _stripe_time(timestamp: int | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp else None


def _record_paid_at(
    donation: Donation, event: PaymentEvent, paid_at: datetime | None = None
) -> None:
    """When the money was paid, on Stripe's clock: the charge's or invoice's own time where
    the event carries it, else the event's time. A refund or dispute heard first gives a later
    time than the payment's, so the earliest time heard wins: every order of the same events
    ends with the same `paid_at`."""
    when = paid_at or event.created
    if donation.paid_at is None or when < donation.paid_at:
        donation.paid_at = when


def _mark_paid(
    donation: Donation,
    event: PaymentEvent,
    *,
    intent_id: str | None = None,
    charge_id: str | None = None,
    paid_at: datetime | None = None,
) -> HandlerOutcome:
    """Money arrived: record it whatever the status said (expired, failed), link Gift Aid,
    settle, receipt. A second distinct payment for the same gift is flagged for staff."""
    if _second_payment(donation, intent_id):
        return _flag_second_payment(donation, intent_id, event)
    if intent_id and not donation.stripe_payment_intent_id:
        donation.stripe_payment_intent_id = intent_id
    if charge_id and not donation.stripe_charge_id:
        donation.stripe_charge_id = charge_id
    first_payment_heard = donation.paid_at is None
    _record_paid_at(donation, event, paid_at)
    if first_payment_heard:
        _name_donor_after_payment(donation)
    link_declaration(donation)
    donation.settle()
    issue_receipt(donation)
    return HandlerOutcome.FLAGGED if donation.review_reason else HandlerOutcome.APPLIED


def _name_donor_after_payment(donation: Donation) -> None:
    """The donor record's name (staff pages, Gift Aid views, mail of gifts without a payer
    name). Anyone can pay under any address, so a payment never renames someone else:
    a donor record that belongs to an account carries the account holder's own name; a
    guest donor record is named by its first paid gift (never by a checkout left unpaid)
    and keeps that name. Each gift keeps its payer's name for its own receipt."""
    donor = donation.donor
    if donor.user_id is not None:
        from donorhub.accounts.models import User

        user = db.session.get(User, donor.user_id)
        if user is not None and user.full_name and donor.full_name != user.full_name:
            donor.full_name = user.full_name
        return
    if not donation.donor_name or donor.full_name == donation.donor_name:
        return
    paid_before = db.session.scalar(
        select(Donation.id)
        .where(
            Donation.donor_id == donor.id, Donation.id != donation.id, Donation.paid_at.is_not(None)
        )
        .limit(1)
    )
    if paid_before is None:
        donor.full_name = donation.donor_name


def _donation_for_session(s: CheckoutSessionData) -> Donation | None:
    if s.refs.donation:
        return _lock_donation(public_id=s.refs.donation)
    record = db.session.scalar(
        select(CheckoutSessionRecord).where(CheckoutSessionRecord.session_id == s.id)
    )
    if record is not None and record.donation_id:
        return _lock_donation(id=record.donation_id)
    return _lock_donation(stripe_checkout_session_id=s.id)


def _subject(event: PaymentEvent, kind: type[T]) -> T:
    """The event's object, checked to be what the dispatch table promised. An explicit check,
    not an assert (which `python -O` removes): a mismatch fails the webhook, so Stripe retries
    once the table is mended."""
    if not isinstance(event.subject, kind):
        raise TypeError(f"{event.type} carries {type(event.subject).__name__}, not {kind.__name__}")
    return event.subject


def record_checkout_completed(event: PaymentEvent) -> HandlerOutcome:
    """A Checkout Session was completed: a gift paid (or processing), or a plan started."""
    s = _subject(event, CheckoutSessionData)
    if s.mode == "subscription":
        return _plan_checkout_completed(event, s)
    donation = _donation_for_session(s)
    if donation is None:
        return HandlerOutcome.IGNORED
    # Any session of the gift counts (an older one may be paid after "Try again"); the
    # current one stays what open_checkout stored.
    donation.stripe_checkout_session_id = donation.stripe_checkout_session_id or s.id
    if not _amount_matches(donation, s.amount_total, s.currency):
        return _flag(donation, _mismatch(donation, s.amount_total, s.currency), event)
    if s.payment_status == "paid":
        return _mark_paid(donation, event, intent_id=s.payment_intent_id)
    elif s.payment_status == "unpaid":
        if donation.paid_at is not None:
            if _second_payment(donation, s.payment_intent_id):
                return _flag_second_payment(donation, s.payment_intent_id, event)
            return HandlerOutcome.APPLIED
        donation.processing = True
        if s.payment_intent_id and not donation.stripe_payment_intent_id:
            donation.stripe_payment_intent_id = s.payment_intent_id
        donation.settle()
    else:
        return _flag(donation, f"unexpected payment status {s.payment_status}", event)
    return HandlerOutcome.APPLIED


def record_async_payment_succeeded(event: PaymentEvent) -> HandlerOutcome:
    """A delayed payment method (e.g. a bank debit) paid the gift."""
    s = _subject(event, CheckoutSessionData)
    donation = _donation_for_session(s)
    if donation is None:
        return HandlerOutcome.IGNORED
    if not _amount_matches(donation, s.amount_total, s.currency):
        return _flag(donation, _mismatch(donation, s.amount_total, s.currency), event)
    donation.processing = True
    return _mark_paid(donation, event, intent_id=s.payment_intent_id)


def record_async_payment_failed(event: PaymentEvent) -> HandlerOutcome:
    """A delayed payment method failed: the gift failed, and the donor is told."""
    s = _subject(event, CheckoutSessionData)
    donation = _donation_for_session(s)
    if donation is None:
        return HandlerOutcome.IGNORED
    if donation.paid_at is not None or donation.stripe_checkout_session_id not in (None, s.id):
        return HandlerOutcome.APPLIED  # paid anyway, or an older session's attempt
    if not donation.payment_failed:
        donation.payment_failed = True
        donation.processing = True
        if donation.settle() is DonationStatus.FAILED:
            queue_mail(
                donation.donor.email,
                "donations/payment_failed_once",
                subject="Your gift did not go through",
                name=donation.payer_name,
                amount=format_money(donation.amount_minor, donation.currency),
                donate_url=external_url("donations.donate"),
            )
    return HandlerOutcome.APPLIED


def record_checkout_expired(event: PaymentEvent) -> HandlerOutcome:
    """A Checkout Session expired unpaid (a fact that a later payment overrides)."""
    s = _subject(event, CheckoutSessionData)
    if s.mode == "subscription":
        plan = _lock_plan(s.refs.plan, None)
        if plan is None or plan.stripe_checkout_session_id not in (None, s.id):
            return HandlerOutcome.IGNORED
        if _superseded(plan, s.id):
            return HandlerOutcome.APPLIED
        # A fact, not an end: an older session of the plan paid later overrides it.
        plan.checkout_expired = True
        plan.settle()
        return HandlerOutcome.APPLIED
    donation = _donation_for_session(s)
    if donation is None or donation.stripe_checkout_session_id not in (None, s.id):
        return HandlerOutcome.IGNORED
    if _superseded(donation, s.id):
        return HandlerOutcome.APPLIED
    donation.expired = True
    donation.settle()
    return HandlerOutcome.APPLIED


def _superseded(row: Donation | RecurringPlan, session_id: str) -> bool:
    """A session we expired ourselves to open a newer attempt (even if opening that attempt
    then failed): its expiry does not end the gift, so the donor can still try again."""
    record = db.session.scalar(
        select(CheckoutSessionRecord).where(CheckoutSessionRecord.session_id == session_id)
    )
    return record is not None and record.attempt < row.checkout_attempt


def record_payment_intent_succeeded(event: PaymentEvent) -> HandlerOutcome:
    """A one-off gift's PaymentIntent succeeded: the money arrived."""
    p = _subject(event, PaymentIntentData)
    if not p.refs.donation:
        return HandlerOutcome.IGNORED  # an invoice's intent: invoice.paid records those gifts
    donation = _lock_donation(public_id=p.refs.donation)
    if donation is None:
        return HandlerOutcome.IGNORED
    if not _amount_matches(donation, p.amount_received, p.currency):
        return _flag(donation, _mismatch(donation, p.amount_received, p.currency), event)
    return _mark_paid(donation, event, intent_id=p.id)


def _donation_for_payment(
    refs_donation: str | None, intent_id: str | None, charge_id: str | None
) -> Donation | None:
    if refs_donation:
        donation = _lock_donation(public_id=refs_donation)
        if donation is not None:
            return donation
    if intent_id:
        donation = _lock_donation(stripe_payment_intent_id=intent_id)
        if donation is not None:
            return donation
        if not refs_donation:
            # A dispute carries no metadata, and the intent may not be stored yet: its
            # metadata says whose it is.
            intent = get_gateway().payment_intent(intent_id)
            if intent is not None and intent.refs.donation:
                return _lock_donation(public_id=intent.refs.donation)
        invoice_id = (
            get_gateway().invoice_for_payment_intent(intent_id) if not refs_donation else None
        )
        if invoice_id:
            donation = _lock_donation(stripe_invoice_id=invoice_id)
            if donation is None:
                if _invoice_is_ours(invoice_id):
                    raise NotReady("the invoice's gift is not recorded yet")
                log.info("payment of an invoice that is not ours ignored")
                return None
            if not donation.stripe_payment_intent_id:
                donation.stripe_payment_intent_id = intent_id
            return donation
    if charge_id:
        return _lock_donation(stripe_charge_id=charge_id)
    return None


def _invoice_is_ours(invoice_id: str) -> bool:
    """The invoice belongs to one of our plans (its subscription carries our reference)."""
    invoice = get_gateway().invoice(invoice_id)
    if invoice is None:
        return False
    if invoice.refs.plan or invoice.refs.sponsorship:
        return True
    return (
        invoice.subscription_id is not None
        and db.session.scalar(
            select(RecurringPlan.id).where(
                RecurringPlan.stripe_subscription_id == invoice.subscription_id
            )
        )
        is not None
    )


def find_donation_for_payment(
    refs_donation: str | None, intent_id: str | None, charge_id: str | None
) -> Donation | None:
    """The gift (locked) a charge, refund or dispute is about."""
    return _donation_for_payment(refs_donation, intent_id, charge_id)


def mark_paid_by_reversal(
    donation: Donation,
    event: PaymentEvent,
    intent_id: str | None,
    charge_id: str | None,
    *,
    paid_at: datetime | None = None,
) -> HandlerOutcome:
    """A refund or dispute of a charge proves it succeeded: record the payment as such, at
    the charge's own time where the event carries it."""
    if _second_payment(donation, intent_id):
        # A refund of the duplicate payment (staff's fix), not of this gift's money.
        return _flag_second_payment(donation, intent_id, event)
    return _mark_paid(donation, event, intent_id=intent_id, charge_id=charge_id, paid_at=paid_at)


def tell_donor_of_refund(donation: Donation, refunded_before: int) -> None:
    """The refund mail, once per rise of the refunded amount of a receipted gift."""
    if donation.amount_refunded_minor > refunded_before and donation.receipt is not None:
        queue_mail(
            donation.donor.email,
            "donations/refunded",
            subject=f"Your refund for receipt {donation.receipt.number}",
            name=donation.payer_name,
            number=donation.receipt.number,
            amount=format_money(donation.amount_refunded_minor, donation.currency),
        )


def record_charge_refunded(event: PaymentEvent) -> HandlerOutcome:
    """A charge was refunded, in part or in full."""
    c = _subject(event, ChargeData)
    donation = _donation_for_payment(c.refs.donation, c.payment_intent_id, c.id)
    if donation is None:
        return HandlerOutcome.IGNORED
    if not _amount_matches(donation, c.amount, c.currency):
        return _flag(donation, _mismatch(donation, c.amount, c.currency), event)
    if _second_payment(donation, c.payment_intent_id):
        return _flag_second_payment(donation, c.payment_intent_id, event)
    before = donation.amount_refunded_minor
    had_receipt = donation.receipt is not None
    refunds.record_charge_facts(donation, c)
    refunds.recompute_facts(donation)
    outcome = mark_paid_by_reversal(
        donation, event, c.payment_intent_id, c.id, paid_at=_stripe_time(c.created)
    )
    if outcome is HandlerOutcome.FLAGGED:
        return outcome
    if had_receipt:
        tell_donor_of_refund(donation, before)
    return HandlerOutcome.APPLIED


def _record_dispute(event: PaymentEvent, closed: bool) -> HandlerOutcome:
    d = _subject(event, DisputeData)
    donation = _donation_for_payment(None, d.payment_intent_id, d.charge_id)
    if donation is None:
        return HandlerOutcome.IGNORED
    record_audit(
        None,
        "payment.dispute_closed" if closed else "payment.dispute_opened",
        "donation",
        donation.id,
        {"status": d.status or "unknown"},
    )
    if _second_payment(donation, d.payment_intent_id):
        return _flag_second_payment(donation, d.payment_intent_id, event)
    refunds.record_dispute(donation, d, closed, event.created)
    refunds.recompute_facts(donation)
    # A disputed charge had succeeded: the money arrived (a won dispute keeps it: receipt).
    return _mark_paid(donation, event, intent_id=d.payment_intent_id, charge_id=d.charge_id)


def record_dispute_created(event: PaymentEvent) -> HandlerOutcome:
    """The donor's bank opened a dispute of a charge."""
    return _record_dispute(event, closed=False)


def record_dispute_closed(event: PaymentEvent) -> HandlerOutcome:
    """A dispute closed, won or lost."""
    return _record_dispute(event, closed=True)


def record_dispute_updated(event: PaymentEvent) -> HandlerOutcome:
    """A dispute moved on (evidence under review, or closed as won/lost)."""
    d = _subject(event, DisputeData)
    return _record_dispute(event, closed=refunds.is_closed(d.status))


def _plan_checkout_completed(event: PaymentEvent, s: CheckoutSessionData) -> HandlerOutcome:
    plan = _lock_plan(s.refs.plan, s.subscription_id)
    if plan is None:
        return HandlerOutcome.IGNORED
    # Any session of the plan counts: an older one may be paid after "Try again".
    plan.stripe_checkout_session_id = plan.stripe_checkout_session_id or s.id
    if _other_subscription(plan, s.subscription_id, event):
        return HandlerOutcome.FLAGGED  # its paid invoice becomes a flagged gift for staff
    _link_subscription(plan, s.subscription_id, s.customer_id)
    if s.amount_total != plan.amount_minor or (s.currency or "") != plan.currency:
        # Not activated, whatever its invoices say; its invoice's gift is flagged too.
        _checkout_mismatched(
            plan,
            f"the checkout charged {s.amount_total} {s.currency}; "
            f"the plan is {plan.amount_minor} {plan.currency}",
            event,
        )
        return HandlerOutcome.FLAGGED
    if s.payment_status in ("paid", "no_payment_required"):
        plan.checkout_completed = True  # an unpaid (delayed) session waits for invoice.paid
        plan.started_at = plan.started_at or event.created
    plan.settle()
    return HandlerOutcome.APPLIED


def _checkout_mismatched(plan: RecurringPlan, reason: str, event: PaymentEvent) -> None:
    """The checkout that starts the plan charged another amount or currency: a fact that
    keeps the plan from becoming active (in every order of its events), for staff."""
    plan.checkout_mismatch = True
    flag_plan(plan, reason, event.type)
    plan.settle()


def _other_subscription(
    plan: RecurringPlan, subscription_id: str | None, event: PaymentEvent
) -> bool:
    """A second subscription for one plan (paid through two checkout sessions): never
    applied to the plan; audited so staff cancel it (its gifts are flagged)."""
    if not (
        subscription_id
        and plan.stripe_subscription_id
        and subscription_id != plan.stripe_subscription_id
    ):
        return False
    record_audit(
        None,
        "plan.second_subscription",
        "plan",
        plan.id,
        {"subscription": subscription_id, "event": event.type},
    )
    log.warning(
        "second subscription for one plan", extra={"plan_id": plan.id, "event_type": event.type}
    )
    return True


def _link_subscription(
    plan: RecurringPlan, subscription_id: str | None, customer_id: str | None
) -> None:
    if subscription_id and not plan.stripe_subscription_id:
        plan.stripe_subscription_id = subscription_id
    if customer_id and not plan.stripe_customer_id:
        plan.stripe_customer_id = customer_id


def _newer_invoice(plan: RecurringPlan, invoice: InvoiceData, state: str) -> bool:
    """Apply an invoice outcome only if it is about the newest invoice we know of; for the
    same invoice, "paid" is final (a late failure notice cannot undo it). Two invoices created
    in the same second cannot be ordered by their `created`: the subscription's latest invoice,
    as Stripe holds it now, says which is newer."""
    if plan.latest_invoice_id == invoice.id:
        return plan.latest_invoice_state != "paid"
    held = plan.latest_invoice_created or 0
    if invoice.created != held or plan.latest_invoice_id is None:
        return invoice.created > held
    try:
        sub = (
            get_gateway().subscription(invoice.subscription_id) if invoice.subscription_id else None
        )
    except GatewayError:
        # Stripe cannot say now: the last heard wins (a later event or reconcile corrects it).
        log.warning("could not order two invoices of one second", extra={"plan_id": plan.id})
        return True
    if sub is None or sub.latest_invoice_id not in (invoice.id, plan.latest_invoice_id):
        return True  # neither is the newest: the last heard wins
    return sub.latest_invoice_id == invoice.id


def record_invoice_paid(event: PaymentEvent) -> HandlerOutcome:
    """A plan's invoice was paid: record the instalment as a gift (once per invoice)."""
    inv = _subject(event, InvoiceData)
    plan = _lock_plan(inv.refs.plan, inv.subscription_id)
    if plan is None:
        return HandlerOutcome.IGNORED
    if _other_subscription(plan, inv.subscription_id, event):
        return _second_subscription_gift(plan, inv, event)
    _link_subscription(plan, inv.subscription_id, inv.customer_id)
    dunning.record_payment(inv.id, inv.amount_paid, event.created)  # failure history
    if _newer_invoice(plan, inv, "paid"):
        plan.latest_invoice_id = inv.id
        plan.latest_invoice_created = inv.created
        plan.latest_invoice_state = "paid"
    plan.started_at = plan.started_at or event.created
    plan.settle()
    expected = {plan.amount_minor, plan.pending_amount_minor or plan.amount_minor}
    if inv.billing_reason == "subscription_create" and (
        inv.amount_paid not in expected or inv.currency != plan.currency
    ):
        _checkout_mismatched(
            plan,
            f"the first invoice charged {inv.amount_paid} "
            f"{inv.currency}; the plan is {plan.amount_minor} "
            f"{plan.currency}",
            event,
        )
    gift = db.session.scalar(select(Donation).where(Donation.stripe_invoice_id == inv.id))
    if gift is not None:
        return HandlerOutcome.APPLIED  # the same invoice through another event or reconciliation
    fee = plan.fee_cover_minor if inv.amount_paid == plan.amount_minor else 0
    # The interval this payment was taken under: the invoice's own, where it says (an invoice
    # delivered after a switch we recorded was still paid under the old interval). Without
    # one, an invoice raised by a switch Stripe has made but we have not recorded yet is
    # under the interval asked for.
    paid_under = plan.frequency.value
    if inv.interval in ("month", "year"):
        paid_under = frequency_of(inv.interval).value
    elif inv.billing_reason == "subscription_update" and plan.pending_frequency:
        paid_under = plan.pending_frequency
    gift = Donation(
        kind=DonationKind.INSTALMENT,
        plan=plan,
        donor_id=plan.donor_id,
        donor_name=plan.donor_name,
        frequency=paid_under,
        amount_minor=inv.amount_paid,
        fee_cover_minor=fee,
        currency=inv.currency,
        designation=plan.designation,
        campaign_id=plan.campaign_id,
        dedication=plan.dedication,
        status=DonationStatus.PENDING,
        stripe_invoice_id=inv.id,
        gift_aid_declaration_id=plan.gift_aid_declaration_id,
    )
    db.session.add(gift)
    db.session.flush()
    paid_at = _stripe_time(inv.paid_at)
    if inv.amount_paid not in expected or inv.currency != plan.currency:
        _record_paid_at(gift, event, paid_at)
        return _flag(
            gift,
            f"Stripe charged {inv.amount_paid} {inv.currency}; the plan is "
            f"{plan.amount_minor} {plan.currency}",
            event,
        )
    return _mark_paid(gift, event, paid_at=paid_at)


def _second_subscription_gift(
    plan: RecurringPlan, inv: InvoiceData, event: PaymentEvent
) -> HandlerOutcome:
    """Money taken by a plan's second subscription: recorded, and flagged for staff to cancel
    that subscription and refund (the plan itself follows its first subscription only)."""
    gift = db.session.scalar(select(Donation).where(Donation.stripe_invoice_id == inv.id))
    if gift is None:
        gift = Donation(
            kind=DonationKind.INSTALMENT,
            plan=plan,
            donor_id=plan.donor_id,
            donor_name=plan.donor_name,
            frequency=plan.frequency.value,
            amount_minor=inv.amount_paid,
            fee_cover_minor=0,
            currency=inv.currency,
            designation=plan.designation,
            campaign_id=plan.campaign_id,
            dedication=plan.dedication,
            status=DonationStatus.PENDING,
            stripe_invoice_id=inv.id,
            paid_at=_stripe_time(inv.paid_at) or event.created,
        )
        db.session.add(gift)
        db.session.flush()
    return _flag(
        gift,
        f"second subscription {inv.subscription_id} for one regular gift: "
        "cancel it in Stripe and refund",
        event,
    )


def _failure_words(code: str | None) -> str:
    return FAILURE_WORDS.get(code or "", "your bank did not accept the payment")


def _record_invoice_problem(event: PaymentEvent, state: str) -> HandlerOutcome:
    inv = _subject(event, InvoiceData)
    plan = _lock_plan(inv.refs.plan, inv.subscription_id)
    if plan is None:
        return HandlerOutcome.IGNORED
    if _other_subscription(plan, inv.subscription_id, event):
        return HandlerOutcome.FLAGGED
    _link_subscription(plan, inv.subscription_id, inv.customer_id)
    history = (
        dunning.record_failure(
            plan.id, inv.id, inv.currency, inv.amount_due, inv.attempt_count, event.created
        )
        if state == "failed"
        else None
    )  # every failed invoice, even an older one
    if not _newer_invoice(plan, inv, state):
        # An older invoice, or one since paid: nothing to tell the donor.
        return HandlerOutcome.APPLIED
    plan.latest_invoice_id = inv.id
    plan.latest_invoice_created = inv.created
    plan.latest_invoice_state = state
    code = "authentication_required" if state == "action_required" else None
    if code is None:
        try:
            failure = get_gateway().invoice_payment_failure(inv.id)
        except GatewayError:
            failure = None  # the reason is a courtesy; the state change must not wait
        code = failure.code if failure else None
    plan.last_failure_code = (code or "unknown")[:64]
    if history is not None and history.reason_code is None:
        history.reason_code = plan.last_failure_code
    if plan.settle() is PlanStatus.PAST_DUE:
        queue_mail(
            plan.donor.email,
            "donations/payment_failed",
            subject="Your regular gift did not go through",
            name=plan.payer_name,
            reason=_failure_words(code),
            amount=format_money(inv.amount_due, inv.currency),
            frequency=plan.frequency.value,
            action_required=state == "action_required",
            manage_url=manage_url(plan),
        )
    return HandlerOutcome.APPLIED


def record_invoice_payment_failed(event: PaymentEvent) -> HandlerOutcome:
    """A plan's invoice could not be charged: the plan is past due, the donor told."""
    return _record_invoice_problem(event, "failed")


def record_invoice_action_required(event: PaymentEvent) -> HandlerOutcome:
    """A plan's invoice needs the donor to confirm the payment with their bank."""
    return _record_invoice_problem(event, "action_required")


def _plan_of_subscription_event(
    event: PaymentEvent,
) -> tuple[SubscriptionData, RecurringPlan | None, HandlerOutcome | None]:
    """The locked plan a subscription event is about, linked to it; or the outcome to answer
    at once: ignored (not ours) or flagged (a second subscription of one plan)."""
    sub = _subject(event, SubscriptionData)
    plan = _lock_plan(sub.refs.plan, sub.id)
    if plan is None:
        return sub, None, HandlerOutcome.IGNORED
    if _other_subscription(plan, sub.id, event):
        return sub, None, HandlerOutcome.FLAGGED
    _link_subscription(plan, sub.id, sub.customer_id)
    return sub, plan, None


def record_subscription_updated(event: PaymentEvent) -> HandlerOutcome:
    """A plan's subscription changed at Stripe (paused, resumed, amount, interval, ended)."""
    sub, plan, outcome = _plan_of_subscription_event(event)
    if plan is None:
        if outcome is None:
            raise RuntimeError("no plan and no outcome")  # an event without a plan has one
        return outcome
    if sub.status == "canceled":  # final, whatever its order: the ended mail goes once
        _stripe_ended(plan, event)
    # Stripe's clock only, with the event id as a tiebreak within one second: every order of
    # the same events ends in the same state.
    held = (plan.subscription_synced_at or 0, plan.subscription_synced_event or "")
    if event.created_ts < held[0]:
        return HandlerOutcome.APPLIED  # older than what we hold
    if event.created_ts == held[0]:
        # Two updates within one second cannot be ordered by their events (the id is random;
        # a pause and a resume a moment apart could leave the plan paused while Stripe
        # collects): take the subscription as Stripe holds it now, newer than both.
        sub = get_gateway().subscription(sub.id) or sub
    elif sub.paused != plan.paused and not is_sponsorship_plan(plan):
        # Paused or resumed: an event delivered late may say what a later request already
        # undid. Stripe's copy now decides (and whether the donor is told).
        sub = get_gateway().subscription(sub.id) or sub
    plan.subscription_synced_at, synced_event = max(held, (event.created_ts, event.id[:255]))
    plan.subscription_synced_event = synced_event
    was_paused, plan.paused = plan.paused, sub.paused
    if sub.current_period_end:
        plan.current_period_end = datetime.fromtimestamp(sub.current_period_end, UTC)
    if is_sponsorship_plan(plan):
        # A sponsorship's price is fixed: whatever path brought this subscription (the event,
        # or Stripe's own copy read back for two updates in one second), its amount and
        # interval are never adopted. Another price is for staff to look at.
        if (sub.amount and (sub.amount, sub.currency) != (plan.amount_minor, plan.currency)) or (
            sub.interval and sub.interval != plan.frequency.stripe_interval
        ):
            flag_plan(
                plan,
                f"the subscription is {sub.amount} {sub.currency} a "
                f"{sub.interval}; the sponsorship is {plan.amount_minor} "
                f"{plan.currency} a {plan.frequency.stripe_interval}",
                event.type,
            )
        plan.settle()
        return HandlerOutcome.APPLIED
    if (
        sub.amount
        and sub.currency == plan.currency
        and sub.interval in ("month", "year")
        and is_pending_change(plan, sub.amount, frequency_of(sub.interval).value)
    ):
        # The donor's change, applied by Stripe, whose answer we never had (a timeout, or a
        # worker that died before recording it): settled here and confirmed by mail. Only
        # the amount AND interval asked for settle it: a routine update at the old interval
        # leaves a change of interval alone pending.
        settle_plan_change(plan, sub.amount, frequency_of(sub.interval).value, None)
    elif sub.amount and sub.currency == plan.currency and sub.amount != plan.amount_minor:
        # Changed outside DonorHub (Stripe's dashboard): Stripe is what will be charged.
        record_audit(
            None, "plan.amount_changed_in_stripe", "plan", plan.id, {"amount_minor": sub.amount}
        )
        plan.amount_minor = sub.amount
        plan.fee_cover_minor = 0
    if sub.interval in ("month", "year"):
        plan.frequency = frequency_of(sub.interval)
    plan.settle()
    if was_paused != plan.paused and plan.is_live:
        # Paused or resumed at Stripe without our request recording it (a request whose
        # answer never came, or Stripe's dashboard): the donor is told here, once. A request
        # that recorded it holds the row first, so this sees no change and mails nothing.
        tell_paused_or_resumed(plan)
    return HandlerOutcome.APPLIED


def record_subscription_deleted(event: PaymentEvent) -> HandlerOutcome:
    """Stripe ended a plan's subscription."""
    _sub, plan, outcome = _plan_of_subscription_event(event)
    if plan is None:
        if outcome is None:
            raise RuntimeError("no plan and no outcome")  # an event without a plan has one
        return outcome
    _stripe_ended(plan, event)
    return HandlerOutcome.APPLIED


def _stripe_ended(plan: RecurringPlan, event: PaymentEvent) -> None:
    """Stripe ended the subscription (deleted, or an update saying canceled, whichever
    comes first): record it once, and tell the donor once unless they cancelled it."""
    if plan.stripe_ended:
        return
    plan.stripe_ended = True
    plan.ended_at = plan.ended_at or event.created
    if plan.settle() is PlanStatus.ENDED:
        queue_mail(
            plan.donor.email,
            "donations/plan_ended",
            subject="Your regular gift has ended",
            name=plan.payer_name,
            amount=format_money(plan.amount_minor, plan.currency),
            frequency=plan.frequency.value,
            donate_url=external_url("donations.donate"),
        )


def flagged_gifts() -> Sequence[Donation]:
    """Gifts for staff to look at (needs review, disputed, charged back), newest first."""
    return db.session.scalars(
        select(Donation)
        .where(
            Donation.status.in_(
                [DonationStatus.NEEDS_REVIEW, DonationStatus.DISPUTED, DonationStatus.CHARGED_BACK]
            )
        )
        .order_by(Donation.id.desc())
        .limit(200)
    ).all()
