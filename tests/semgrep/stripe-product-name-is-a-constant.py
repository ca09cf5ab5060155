# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: stripe-product-name-is-a-constant.
from donorhub.payments.gateway import CheckoutRequest

PRODUCT_NAME = "Sponsorship"
PRODUCT_NAMES = {"once": "Donation", "month": "Monthly donation"}


def checkout(campaign, frequency):
    # ruleid: stripe-product-name-is-a-constant
    CheckoutRequest(product_name=campaign.name)
    # ruleid: stripe-product-name-is-a-constant
    CheckoutRequest(product_name="Gift to " + campaign.name)
    # ok: stripe-product-name-is-a-constant
    CheckoutRequest(product_name=PRODUCT_NAME)
    # ok: stripe-product-name-is-a-constant
    CheckoutRequest(product_name=PRODUCT_NAMES[frequency])
    # ok: stripe-product-name-is-a-constant
    CheckoutRequest(product_name="Donation")
