"""The amount charged is the amount the donor saw last, within our limits and Stripe's.

An amount typed in "Your amount" wins over a preset radio button left ticked; a typed text we
cannot read is asked about again, never replaced by the preset. Amounts are ASCII digits
only. The total charged (gift plus fee cover) stays within the configured maximum and within
Stripe's 8 digits of minor units, and the message gives the range in money.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from donorhub.donations import checkout
from donorhub.donations.models import Donation, RecurringPlan
from donorhub.extensions import db
from donorhub.money import CURRENCIES, STRIPE_MAX_MINOR
from tests.payments.stripe_helpers import checkout_url, give

ROW = {"once": Donation, "monthly": RecurringPlan, "yearly": RecurringPlan}


def _checkout_amounts(sim) -> list[int]:
    """The amounts of every Checkout Session Stripe was asked to open."""
    sessions = sim.control("/_sim/objects?type=checkout.session", method="GET")["objects"]
    return [s["amount_total"] for s in sessions]


def _rows(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Donation)) + db.session.scalar(
            select(func.count()).select_from(RecurringPlan)
        )


@pytest.mark.parametrize("frequency", ["once", "monthly", "yearly"])
def test_a_typed_amount_wins_over_the_preset_left_ticked(pay_app, pay_client, sim, frequency):
    # The donor types £40 in "Your amount" and leaves the preset £25 ticked.
    response = give(pay_client, frequency=frequency, amount_choice="2500", custom_amount="40")
    checkout_url(response)
    with pay_app.app_context():
        row = db.session.scalar(select(ROW[frequency]))
        assert row.amount_minor == 4000
    assert _checkout_amounts(sim) == [4000]


def test_an_unreadable_typed_amount_is_asked_about_never_replaced_by_the_preset(
    pay_app, pay_client, sim
):
    for typed in ("4o", "40.999", "forty"):
        response = give(pay_client, amount_choice="2500", custom_amount=typed)
        assert response.status_code == 422, typed
        page = response.get_data(as_text=True)
        assert "Your amount" in page and "clear it to give the amount ticked above" in page
        # The re-rendered form shows "Another amount" ticked with what was typed.
        assert 'value="custom" checked' in page
    response = give(pay_client, amount_choice="custom", custom_amount="")
    assert response.status_code == 422
    assert "Enter your amount" in response.get_data(as_text=True)
    assert _rows(pay_app) == 0 and sim.requests("/v1/checkout") == []


def test_amounts_are_ascii_digits_only(pay_app, pay_client, sim):
    odd = [
        {"amount_choice": "２５００"},
        {"amount_choice": "2500\n"},
        {"amount_choice": "٢٥٠٠"},
        {"amount_choice": "custom", "custom_amount": "２５"},
        {"amount_choice": "custom", "custom_amount": "25\n"},
        {"amount_choice": "custom", "custom_amount": "25\t"},
    ]
    for change in odd:
        assert give(pay_client, **change).status_code == 422, change
    assert _rows(pay_app) == 0 and sim.requests("/v1/checkout") == []


def test_no_limit_is_above_what_stripe_charges_in_one_payment(pay_app):
    with pay_app.app_context():
        for currency in CURRENCIES:
            low, high = checkout.amount_limits(currency)
            assert 0 < low < high <= STRIPE_MAX_MINOR[currency] == 99_999_999
            assert pay_app.config["DONATION_LIMITS"][currency][1] <= 99_999_999, currency


def test_rupee_gifts_above_stripes_maximum_are_refused_with_the_range(pay_app, pay_client, sim):
    response = give(pay_client, currency="inr", amount_choice="custom", custom_amount="999999.99")
    assert response.status_code == 422
    assert "Enter an amount between ₹100 and ₹9,99,999." in response.get_data(as_text=True)
    response = give(pay_client, currency="inr", amount_choice="custom", custom_amount="20,00,000")
    assert response.status_code == 422
    assert _rows(pay_app) == 0 and sim.requests("/v1/checkout") == []
    checkout_url(give(pay_client, currency="inr", amount_choice="custom", custom_amount="999999"))
    assert _checkout_amounts(sim) == [99_999_900]


@pytest.mark.parametrize(("currency", "typed"), [("gbp", "25000"), ("inr", "999999")])
def test_fee_cover_never_takes_the_total_past_the_maximum(
    pay_app, pay_client, sim, currency, typed
):
    response = give(
        pay_client, currency=currency, amount_choice="custom", custom_amount=typed, cover_fees="on"
    )
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "leave out the card fees" in page and "Enter an amount between" in page
    assert _rows(pay_app) == 0 and sim.requests("/v1/checkout") == []
    with pay_app.app_context():
        high = checkout.amount_limits(currency)[1]
        largest = checkout.largest_covered_gift(currency, high)
        assert largest + checkout.fee_cover_for(currency, largest) <= high
        assert largest + 1 + checkout.fee_cover_for(currency, largest + 1) > high
    checkout_url(
        give(
            pay_client,
            currency=currency,
            amount_choice="custom",
            custom_amount=f"{largest / 100:.2f}",
            cover_fees="on",
        )
    )
    (total,) = _checkout_amounts(sim)
    assert total <= high


def test_a_plan_change_above_the_maximum_names_the_amount_field(pay_app):
    with pay_app.app_context():
        with pytest.raises(checkout.GiftRejected) as refused:
            checkout.check_amount("gbp", 2_500_001, field="amount")
        assert refused.value.field == "amount"
        assert str(refused.value) == "Enter an amount between £2 and £25,000."
