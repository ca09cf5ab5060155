"""What other features (and donations' own views) may call of donations: a façade.

Features call each other only through `services.py` (docs/architecture.md). The giving rules
themselves live in modules by concern, which import each other directly:

- `donor_records`: finding or creating a donor, and an account's donor record;
- `checkout`: amounts and fee cover, starting a gift, opening and closing Checkout sessions;
- `stripe_events`: applying Stripe's events to gifts and plans (the webhook's handlers);
- `plans`: the donor's changes to a plan, pause, resume, cancel, the signed manage links;
- `receipts`: receipts and their numbers, a donor's history, tax-year statements;
- `giftaid`: Gift Aid declarations, claims and HMRC's schedule rows.

Services flush, never commit (the view, webhook, job or CLI commits once).
"""

from __future__ import annotations

from donorhub.donations.checkout import (
    CheckoutAlreadyPaid,
    GiftRejected,
    amount_limits,
    close_session,
    fee_cover_for,
    find_by_form_token,
    find_by_public_id,
    find_by_session,
    open_checkout,
    remember_session,
    start_donation,
)
from donorhub.donations.donor_records import donor_for_user, find_or_create_donor
from donorhub.donations.giftaid import (
    cancel_declaration,
    claim_rows,
    confirm_declaration,
    declaration_for_confirm_token,
    preview_claim,
    recent_claims,
    record_claim,
)
from donorhub.donations.plans import (
    PlanOutcomeUnknown,
    abandon_plan_change,
    apply_plan_change,
    cancel_plan,
    card_update_url,
    check_donation_plan,
    check_owner,
    confirm_plan_change,
    flag_plan,
    flagged_plans,
    lock_plan_for_change,
    pause_plan,
    plan_for_manage_token,
    prepare_plan_change,
    resume_plan,
)
from donorhub.donations.receipts import history, issue_receipt, statement, tax_year
from donorhub.donations.refunds import (
    automatic_refund_settled,
    refund_refused,
    request_automatic_refund,
    send_refund,
    settle_refund,
)
from donorhub.donations.stripe_events import (
    flagged_gifts,
    record_async_payment_failed,
    record_async_payment_succeeded,
    record_charge_refunded,
    record_checkout_completed,
    record_checkout_expired,
    record_dispute_closed,
    record_dispute_created,
    record_dispute_updated,
    record_invoice_action_required,
    record_invoice_paid,
    record_invoice_payment_failed,
    record_payment_intent_succeeded,
    record_subscription_deleted,
    record_subscription_updated,
)

__all__ = [
    # checkout
    "CheckoutAlreadyPaid",
    "GiftRejected",
    "amount_limits",
    "close_session",
    "fee_cover_for",
    "find_by_form_token",
    "find_by_public_id",
    "find_by_session",
    "open_checkout",
    "remember_session",
    "start_donation",
    # donor records
    "donor_for_user",
    "find_or_create_donor",
    # Gift Aid
    "cancel_declaration",
    "claim_rows",
    "confirm_declaration",
    "declaration_for_confirm_token",
    "preview_claim",
    "recent_claims",
    "record_claim",
    # plans
    "PlanOutcomeUnknown",
    "abandon_plan_change",
    "apply_plan_change",
    "cancel_plan",
    "card_update_url",
    "check_donation_plan",
    "check_owner",
    "confirm_plan_change",
    "flag_plan",
    "flagged_plans",
    "lock_plan_for_change",
    "pause_plan",
    "plan_for_manage_token",
    "prepare_plan_change",
    "resume_plan",
    # refunds a job makes (staff refunds go through their own page)
    "automatic_refund_settled",
    "refund_refused",
    "request_automatic_refund",
    "send_refund",
    "settle_refund",
    # receipts, history, statements
    "history",
    "issue_receipt",
    "statement",
    "tax_year",
    # Stripe's events (payments/webhooks.py's table) and the gifts they flag
    "flagged_gifts",
    "record_async_payment_failed",
    "record_async_payment_succeeded",
    "record_charge_refunded",
    "record_checkout_completed",
    "record_checkout_expired",
    "record_dispute_closed",
    "record_dispute_created",
    "record_dispute_updated",
    "record_invoice_action_required",
    "record_invoice_paid",
    "record_invoice_payment_failed",
    "record_payment_intent_succeeded",
    "record_subscription_deleted",
    "record_subscription_updated",
]
