"""Money: integers of minor units plus an ISO code; Babel for display. Never a float."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from babel.numbers import format_currency

CURRENCIES = ("gbp", "usd", "eur", "inr")
CURRENCY_NAMES = {"gbp": "Pounds (£)", "usd": "US dollars ($)", "eur": "Euros (€)",
                  "inr": "Indian rupees (₹)"}
#: Every currency we take has two decimal places (pence, cents, paise).
MINOR_DIGITS = 2
_LOCALES = {"inr": "en_IN"}


class BadAmount(ValueError):
    """Not an amount of money we can read."""


#: ASCII digits with an optional decimal point and at most two decimals (no "1e3", "inf",
#: "-5", no full-width or other scripts' digits).
_AMOUNT = re.compile(r"\A[0-9]+(?:\.[0-9]{1,2})?\Z")

#: The largest amount Stripe charges in one payment, in minor units, per currency
#: (stripe.com/docs/currencies, "Minimum and maximum charge amounts": 8 digits).
STRIPE_MAX_MINOR = {"gbp": 99_999_999, "usd": 99_999_999, "eur": 99_999_999,
                    "inr": 99_999_999}


def parse_amount(text: str) -> int:
    """'25', '25.5', '1,000.00' -> minor units. At most two decimal places."""
    # Spaces only: a newline, a tab or another script's digits make it unreadable.
    cleaned = text.strip(" ").replace(",", "").lstrip("£$€₹").strip(" ")
    if not cleaned or len(cleaned) > 15 or not _AMOUNT.fullmatch(cleaned):
        raise BadAmount(text)
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise BadAmount(text) from None
    if not value.is_finite() or value != value.quantize(Decimal("0.01")):
        raise BadAmount(text)
    return int(value * 100)


def to_decimal(amount_minor: int) -> Decimal:
    return (Decimal(amount_minor) / (10 ** MINOR_DIGITS)).quantize(Decimal("0.01"))


def format_money(amount_minor: int, currency: str) -> str:
    """£25.00, US$10.00, €7.50, ₹5,000.00"""
    locale = _LOCALES.get(currency, "en_GB")
    return format_currency(to_decimal(amount_minor), currency.upper(), locale=locale)


def plain_amount(amount_minor: int) -> str:
    """'200.00': HMRC's format (no symbol, two decimals)."""
    return f"{to_decimal(amount_minor):.2f}"


def fee_cover(amount_minor: int, percent_bp: int, fixed_minor: int) -> int:
    """What to add so that, after a fee of percent + fixed on the total, we keep amount.

    total = ceil((amount + fixed) / (1 - percent)); added = total - amount. Integers only.
    """
    numerator = (amount_minor + fixed_minor) * 10_000
    denominator = 10_000 - percent_bp
    total = -(-numerator // denominator)
    return total - amount_minor


def round_half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal("1"), rounding=ROUND_HALF_UP))
