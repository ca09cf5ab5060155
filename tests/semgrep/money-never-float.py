# ruff: noqa  (a semgrep fixture: deliberately bad code, never imported or run)
# Test cases for .semgrep/donorhub.yml: money-never-float.
from decimal import Decimal


def display(gift, data, amount_minor, values):
    # ruleid: money-never-float
    pounds = float(gift.amount_minor)
    # ruleid: money-never-float
    entered = float(data["amount"])
    # ruleid: money-never-float
    shown = gift.amount_minor / 100
    # ruleid: money-never-float
    share = amount_minor * 0.01
    # ok: money-never-float
    exact = Decimal(amount_minor) / 100
    # ok: money-never-float
    whole = amount_minor // 100
    # ok: money-never-float
    pence = amount_minor % 100
    # ok: money-never-float
    ratio = float(len(values)) / 2
    # ok: money-never-float
    limit = float("inf")
    return pounds, entered, shown, share, exact, whole, pence, ratio, limit
