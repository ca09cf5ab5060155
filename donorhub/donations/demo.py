"""Demo gifts, plans, a refund and Gift Aid declarations, so every giving screen shows something.

Written straight to the database (there is no Stripe behind them): the demo plans cannot be
paused or cancelled at Stripe; give through /donate to try that with the simulator.
"""

from __future__ import annotations

from datetime import timedelta

from donorhub.accounts.services import find_user_by_email
from donorhub.database import utcnow
from donorhub.donations import services
from donorhub.donations.models import (
    Donation,
    DonationKind,
    Frequency,
    GiftAidDeclaration,
    GiftAidScope,
    RecurringPlan,
)
from donorhub.extensions import db


def _gift(donor, amount, currency, days_ago, *, plan=None, refunded=0, declaration=None):
    paid_at = utcnow() - timedelta(days=days_ago)
    gift = Donation(
        donor=donor,
        plan=plan,
        kind=DonationKind.INSTALMENT if plan else DonationKind.ONCE,
        amount_minor=amount,
        currency=currency,
        paid_at=paid_at,
        amount_refunded_minor=refunded,
        stripe_refunded_minor=refunded,
        gift_aid_declaration_id=declaration.id if declaration else None,
    )
    db.session.add(gift)
    db.session.flush()
    gift.settle()
    services.issue_receipt(gift)
    return gift


def seed_donations() -> None:
    """Called by `flask demo seed` inside its unit of work."""
    donor_user = find_user_by_email("donor@demo.donorhub.invalid")
    monthly_user = find_user_by_email("monthly@demo.donorhub.invalid")
    assert donor_user is not None and monthly_user is not None  # added just before, by `seed`
    dana = services.find_or_create_donor(donor_user.email, donor_user.full_name)
    dana.user_id = donor_user.id
    morgan = services.find_or_create_donor(monthly_user.email, monthly_user.full_name)
    morgan.user_id = monthly_user.id
    guest = services.find_or_create_donor("guest@demo.donorhub.invalid", "Gale Guest")
    declaration = GiftAidDeclaration(
        donor=dana,
        title="Ms",
        first_name="Dana",
        last_name="Donor",
        house="12",
        postcode="SW1A 1AA",
        scope=GiftAidScope.ALL,
        text_version="2026-01",
        declared_at=utcnow() - timedelta(200),
        effective_at=utcnow() - timedelta(200),
        confirmed_at=utcnow() - timedelta(200),
    )
    db.session.add(declaration)
    db.session.flush()
    _gift(dana, 2500, "gbp", 40, declaration=declaration)
    _gift(dana, 10000, "gbp", 200, declaration=declaration)
    _gift(dana, 5000, "usd", 10)
    _gift(guest, 100000, "inr", 5)
    _gift(guest, 1000, "gbp", 3, refunded=1000)  # a refund
    active = RecurringPlan(
        donor=morgan,
        amount_minor=2000,
        currency="gbp",
        frequency=Frequency.MONTHLY,
        checkout_completed=True,
        latest_invoice_state="paid",
        started_at=utcnow() - timedelta(90),
        stripe_subscription_id="sub_demo_active",
        stripe_customer_id="cus_demo_morgan",
        current_period_end=utcnow() + timedelta(days=20),
    )
    past_due = RecurringPlan(
        donor=dana,
        amount_minor=1500,
        currency="gbp",
        frequency=Frequency.MONTHLY,
        checkout_completed=True,
        latest_invoice_state="failed",
        last_failure_code="expired_card",
        started_at=utcnow() - timedelta(60),
        stripe_subscription_id="sub_demo_past_due",
        stripe_customer_id="cus_demo_dana",
    )
    yearly = RecurringPlan(
        donor=guest,
        amount_minor=1_200_000,
        currency="inr",
        frequency=Frequency.YEARLY,
        checkout_completed=True,
        latest_invoice_state="paid",
        started_at=utcnow() - timedelta(30),
        stripe_subscription_id="sub_demo_yearly",
        stripe_customer_id="cus_demo_guest",
    )
    db.session.add_all([active, past_due, yearly])
    db.session.flush()
    for plan in (active, past_due, yearly):
        plan.settle()
    for days in (90, 60, 30):
        _gift(morgan, 2000, "gbp", days, plan=active)
    for days in (60, 30):
        _gift(dana, 1500, "gbp", days, plan=past_due, declaration=declaration)
    _gift(guest, 1_200_000, "inr", 30, plan=yearly)
