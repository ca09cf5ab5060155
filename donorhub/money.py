"""Money: integers of minor units plus an ISO code; Babel for display. Never a float.

Also the staff-set exchange rates that convert campaign and report totals between
currencies: rates are Decimals stored as NUMERIC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import TYPE_CHECKING

from babel.numbers import format_currency
from sqlalchemy import ForeignKey, Index, Numeric, String, select
from sqlalchemy.orm import Mapped, mapped_column

from donorhub.audit import record_audit
from donorhub.database import utcnow
from donorhub.errors import DomainError
from donorhub.extensions import Model, db

if TYPE_CHECKING:
    from donorhub.accounts.models import User

CURRENCIES = ("gbp", "usd", "eur", "inr")
CURRENCY_NAMES = {
    "gbp": "Pounds (£)",
    "usd": "US dollars ($)",
    "eur": "Euros (€)",
    "inr": "Indian rupees (₹)",
}
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
STRIPE_MAX_MINOR = {"gbp": 99_999_999, "usd": 99_999_999, "eur": 99_999_999, "inr": 99_999_999}


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
    return (Decimal(amount_minor) / (10**MINOR_DIGITS)).quantize(Decimal("0.01"))


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


# Exchange rates ------------------------------------------------------------------------------


class ExchangeRate(Model):
    """One unit of `currency` is worth `rate` units of `reporting_currency`.

    Rows are history: the newest row per pair applies. Who set it and when are kept.
    """

    __tablename__ = "exchange_rates"
    __table_args__ = (Index("ix_exchange_rates_pair", "currency", "reporting_currency", "set_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    currency: Mapped[str] = mapped_column(String(3))
    reporting_currency: Mapped[str] = mapped_column(String(3))
    rate: Mapped[Decimal] = mapped_column(Numeric(18, 8))
    set_at: Mapped[datetime] = mapped_column(default=utcnow)
    set_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))


def set_rate(
    currency: str, reporting_currency: str, rate: Decimal, actor: User | None
) -> ExchangeRate:
    if currency == reporting_currency:
        raise DomainError("A currency needs no rate to itself.")
    if rate <= 0:
        raise DomainError("A rate must be greater than zero.")
    row = ExchangeRate(
        currency=currency,
        reporting_currency=reporting_currency,
        rate=rate,
        set_by_id=actor.id if actor is not None else None,
    )
    db.session.add(row)
    db.session.flush()
    record_audit(
        actor,
        "rate.set",
        "exchange_rate",
        row.id,
        {"currency": currency, "reporting_currency": reporting_currency},
    )
    return row


def current_rates(reporting_currency: str) -> dict[str, Decimal]:
    """The newest rate per currency into `reporting_currency` (1 for itself)."""
    rows = db.session.scalars(
        select(ExchangeRate)
        .where(ExchangeRate.reporting_currency == reporting_currency)
        .order_by(ExchangeRate.set_at, ExchangeRate.id)
    ).all()
    rates = {row.currency: Decimal(row.rate) for row in rows}
    rates[reporting_currency] = Decimal(1)
    return rates


def rate_history(limit: int = 50) -> list[ExchangeRate]:
    return list(
        db.session.scalars(select(ExchangeRate).order_by(ExchangeRate.id.desc()).limit(limit))
    )


@dataclass(frozen=True)
class Converted:
    #: Sum of the currencies that had a rate, in the target currency, minor units.
    total_minor: int
    currency: str
    #: Currencies with money but no rate: left out of total_minor, shown to staff.
    missing: tuple[str, ...]


def convert(amounts: dict[str, int], target: str, rates: dict[str, Decimal]) -> Converted:
    """Convert per-currency sums (not single gifts) into `target`, rounding once per
    currency, half to even, to whole minor units. Rates are Decimal; no floats anywhere."""
    total, missing = 0, []
    target_rate = rates.get(target)
    for currency, minor in sorted(amounts.items()):
        if currency == target:
            total += minor
            continue
        rate = rates.get(currency)
        if rate is None or target_rate is None or minor == 0:
            if minor:
                missing.append(currency)
            continue
        value = (Decimal(minor) * rate / target_rate).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
        total += int(value)
    return Converted(total, target, tuple(missing))
