# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: stripe-sees-no-child-fields.
from donorhub.payments.gateway import CheckoutRequest

PRODUCT_NAME = "Sponsorship"


def checkout(sponsorship, child, ref):
    # ruleid: stripe-sees-no-child-fields
    CheckoutRequest(product_name=f"Sponsor {child.alias}", currency=sponsorship.currency)
    # ruleid: stripe-sees-no-child-fields
    CheckoutRequest(product_name=PRODUCT_NAME, metadata={"home": sponsorship.child.home_code})
    # ruleid: stripe-sees-no-child-fields
    CheckoutRequest(product_name=PRODUCT_NAME, client_reference_id=sponsorship.child.public_token)
    # ok: stripe-sees-no-child-fields
    CheckoutRequest(product_name=PRODUCT_NAME, currency=sponsorship.currency,
                    amount_minor=sponsorship.amount_minor, metadata=ref,
                    customer_email=sponsorship.user.email)
