# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: no-assert-for-control-flow.
from flask import abort

from donorhub.errors import DomainError


def refund(actor, gift, amount_minor):
    # ruleid: no-assert-for-control-flow
    assert actor.is_staff, "only staff refund"
    # ruleid: no-assert-for-control-flow
    assert amount_minor <= gift.amount_minor
    # ok: no-assert-for-control-flow
    if not actor.is_staff:
        abort(403)
    # ok: no-assert-for-control-flow
    if amount_minor > gift.amount_minor:
        raise DomainError("A refund cannot exceed the gift.")
