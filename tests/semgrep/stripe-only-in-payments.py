# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: stripe-only-in-payments.
# (In `semgrep --test` the rule's paths are not applied: this file stands for a module outside
# donorhub/payments/.)
import importlib

# ruleid: stripe-only-in-payments
import stripe
# ruleid: stripe-only-in-payments
import stripe.error
# ruleid: stripe-only-in-payments
from stripe import StripeClient
# ruleid: stripe-only-in-payments
from stripe.params import CustomerCreateParams

# ok: stripe-only-in-payments
from donorhub.payments.gateway import get_gateway

# ruleid: stripe-only-in-payments
sdk = importlib.import_module("stripe")


def checkout(request):
    # ok: stripe-only-in-payments
    return get_gateway().create_checkout(request)


def lookup(session_id):
    return stripe.checkout.Session.retrieve(session_id), StripeClient, CustomerCreateParams, sdk
