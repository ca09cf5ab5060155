# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: csrf-exempt-only-known-views-in-their-modules (stands
# for donorhub/payments/webhooks.py and donorhub/updates/views.py).
from donorhub.extensions import csrf
from donorhub.security import machine, public


# ok: csrf-exempt-only-known-views-in-their-modules
@bp.post("/stripe/webhook")
@machine
@csrf.exempt
def receive():
    return "", 200


# ok: csrf-exempt-only-known-views-in-their-modules
@bp.post("/updates/unsubscribe/<token>")
@machine
@csrf.exempt
def unsubscribe(token):
    return "", 200


# ruleid: csrf-exempt-only-known-views-in-their-modules
@bp.post("/updates/resubscribe/<token>")
@public
@csrf.exempt
def resubscribe(token):
    return "", 200
