# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: stripe-metadata-opaque-ids-only.
from donorhub.payments.gateway import CheckoutRequest, RefundRequest


def refunds(donation, refund, note, child, user):
    # ok: stripe-metadata-opaque-ids-only
    RefundRequest(payment_intent_id="pi_1", charge_id=None, amount_minor=100, reason=None,
                  idempotency_key="k", metadata={"donation": donation.public_id,
                                                 "refund": str(refund.id)})
    # ruleid: stripe-metadata-opaque-ids-only
    RefundRequest(payment_intent_id="pi_1", charge_id=None, amount_minor=100, reason=None,
                  idempotency_key="k", metadata={"donation": donation.public_id, "note": note})
    # ruleid: stripe-metadata-opaque-ids-only
    CheckoutRequest(metadata={"sponsorship": child.home_code})
    # ruleid: stripe-metadata-opaque-ids-only
    CheckoutRequest(metadata=dict(donor=user.email))
    # ok: stripe-metadata-opaque-ids-only
    CheckoutRequest(metadata={"sponsorship": child.sponsorship.public_id})
