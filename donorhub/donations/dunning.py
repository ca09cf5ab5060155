"""The history of failed instalments of recurring plans, for the dunning-recovery report.

A plan keeps only its latest invoice state; this table keeps one row per invoice of ours that
Stripe ever reported as failed (invoice.payment_failed), and marks it recovered when that same
invoice is paid (invoice.paid). Rules, decided once (docs/reports.md):

- One row per invoice, however many retries failed: `failed_at` is the earliest failure
  notice (Stripe's event time), `attempts` the highest attempt count Stripe reported.
- Recovered when the same invoice is paid at a time after its first failure;
  `recovered_amount_minor` is what Stripe collected (invoice amount paid, fee cover included).
- Order-independent: a failure notice that arrives after the invoice's paid notice is still
  recorded, and recovered at once, if Stripe's clock has the failure before the payment. A
  failure that Stripe dates at or after the payment of the same invoice is not a failure of
  that instalment and leaves no row, whatever order the two arrive in.
- Idempotent: replaying either event changes nothing.
- `invoice.payment_action_required` (the bank wants the donor to authenticate) is not a
  failure here; Stripe sends invoice.payment_failed as well when the attempt fails.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from donorhub.donations.models import Donation, PlanPaymentFailure
from donorhub.extensions import db


def record_failure(
    plan_id: int,
    invoice_id: str,
    currency: str,
    amount_due: int,
    attempts: int,
    failed_at: datetime,
) -> PlanPaymentFailure | None:
    """Record one failure notice of an invoice (caller holds the plan's row lock).

    Returns the row, or None when the invoice was already paid at or before this failure.
    """
    row = db.session.scalar(
        select(PlanPaymentFailure).where(PlanPaymentFailure.stripe_invoice_id == invoice_id)
    )
    paid = db.session.execute(
        select(Donation.paid_at, Donation.amount_minor).where(
            Donation.stripe_invoice_id == invoice_id, Donation.paid_at.is_not(None)
        )
    ).first()
    if paid is not None and paid.paid_at <= failed_at:
        return None  # Stripe dates this notice after the payment: not a failed instalment
    if row is None:
        row = PlanPaymentFailure(
            plan_id=plan_id,
            stripe_invoice_id=invoice_id,
            currency=currency,
            amount_due_minor=amount_due,
            failed_at=failed_at,
            attempts=max(attempts, 1),
        )
        db.session.add(row)
    else:
        row.failed_at = min(row.failed_at, failed_at)
        row.attempts = max(row.attempts, attempts, 1)
    if paid is not None and row.recovered_at is None:
        row.recovered_at, row.recovered_amount_minor = paid.paid_at, paid.amount_minor
    db.session.flush()
    return row


def record_payment(invoice_id: str, amount_paid: int, paid_at: datetime) -> None:
    """An invoice was paid: a failure of it dated before the payment is now recovered; a
    "failure" dated at or after the payment was no failure and is removed."""
    row = db.session.scalar(
        select(PlanPaymentFailure).where(PlanPaymentFailure.stripe_invoice_id == invoice_id)
    )
    if row is None:
        return
    if row.failed_at >= paid_at:
        db.session.delete(row)
    elif row.recovered_at is None or paid_at < row.recovered_at:
        row.recovered_at, row.recovered_amount_minor = paid_at, amount_paid
    db.session.flush()
