"""Taking a gift: amounts and fee cover, recording a new gift or plan (pending), and opening
and closing its Stripe Checkout sessions.

Services flush, never commit (the view, webhook, job or CLI commits once). The caller commits
the pending gift before calling Stripe (docs/donations.md).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from donorhub.database import utcnow
from donorhub.donations.donor_records import (
    claim_for_account,
    donor_for_user,
    find_or_create_donor,
    owns_address,
)
from donorhub.donations.giftaid import make_declaration
from donorhub.donations.models import (
    CheckoutSessionRecord,
    Donation,
    DonationKind,
    DonationStatus,
    Frequency,
    GiftAidScope,
    PlanStatus,
    RecurringPlan,
)
from donorhub.donations.schemas import NewGift
from donorhub.errors import DomainError
from donorhub.extensions import db
from donorhub.money import STRIPE_MAX_MINOR, fee_cover, format_money
from donorhub.payments.gateway import CheckoutRequest, GatewayError, get_gateway
from donorhub.urls import external_url

log = logging.getLogger(__name__)


PRODUCT_NAMES = {"once": "Donation", "monthly": "Monthly donation", "yearly": "Yearly donation"}


class GiftRejected(DomainError):
    """The gift cannot be taken as asked; `field` names the form field to blame."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class CheckoutAlreadyPaid(DomainError):
    """The donor paid the previous checkout session while we were about to replace it."""


@dataclass(frozen=True)
class Priced:
    """A gift's amount and the card fees the donor chose to cover, in minor units."""

    gift_minor: int
    fee_cover_minor: int

    @property
    def total_minor(self) -> int:
        return self.gift_minor + self.fee_cover_minor


def amount_limits(currency: str) -> tuple[int, int]:
    """The smallest and largest total we take in one payment: the configured limits, and
    never more than Stripe charges in one payment (8 digits of minor units)."""
    limits = current_app.config["DONATION_LIMITS"]
    if currency not in limits:
        raise GiftRejected("currency", "Choose pounds, dollars, euros or rupees.")
    low, high = limits[currency]
    return low, min(high, STRIPE_MAX_MINOR[currency])


def limit_words(amount_minor: int, currency: str) -> str:
    """£25,000 or ₹9,99,999 for a whole amount, £2.50 otherwise (Babel, per currency)."""
    text = format_money(amount_minor, currency)
    return text[:-3] if amount_minor % 100 == 0 and text.endswith(".00") else text


def largest_covered_gift(currency: str, high: int) -> int:
    """The largest gift whose total with the card fees covered stays within `high`."""
    percent_bp, fixed = current_app.config["DONATION_FEE_COVER"][currency]
    gift = high * (10_000 - percent_bp) // 10_000 - fixed
    while gift > 0 and gift + fee_cover(gift, percent_bp, fixed) > high:
        gift -= 1
    while gift + 1 + fee_cover(gift + 1, percent_bp, fixed) <= high:
        gift += 1
    return max(gift, 0)


def check_amount(
    currency: str, amount_minor: int, *, cover_fees: bool = False, field: str = "custom_amount"
) -> int:
    """Check a gift against the limits; returns the fee cover to add (0 unless asked).

    The total charged (gift plus fee cover) must stay within the configured maximum and
    Stripe's; the message names the field and gives the range in money."""
    low, high = amount_limits(currency)
    between = (
        f"Enter an amount between {limit_words(low, currency)} and {limit_words(high, currency)}."
    )
    if not low <= amount_minor <= high:
        raise GiftRejected(field, between)
    cover = fee_cover_for(currency, amount_minor) if cover_fees else 0
    if amount_minor + cover > high:
        largest = largest_covered_gift(currency, high)
        raise GiftRejected(
            field,
            (
                f"With the card fees covered the total would be "
                f"{format_money(amount_minor + cover, currency)}, over our limit of "
                f"{limit_words(high, currency)}. Enter an amount between "
                f"{limit_words(low, currency)} and {format_money(largest, currency)}, or leave "
                "out the card fees."
            ),
        )
    return cover


def fee_cover_for(currency: str, gift_minor: int) -> int:
    """The card fees on a gift, from the configured rates of its currency."""
    percent_bp, fixed = current_app.config["DONATION_FEE_COVER"][currency]
    return fee_cover(gift_minor, percent_bp, fixed)


def price_gift(gift: NewGift) -> Priced:
    """Amount and fee cover from the server's own rules; the browser's word is not taken."""
    presets = current_app.config["DONATION_PRESETS"].get(gift.currency, ())
    if gift.preset_minor is not None:
        if gift.preset_minor not in presets:
            raise GiftRejected(
                "amount_choice", "Choose one of the amounts shown, or enter your own."
            )
        amount = gift.preset_minor
        field = "amount_choice"
    else:
        amount = gift.custom_minor or 0
        field = "custom_amount"
    cover = check_amount(gift.currency, amount, cover_fees=gift.cover_fees, field=field)
    return Priced(amount, cover)


@dataclass(frozen=True)
class Started:
    """A gift or plan recorded as pending by `start_donation`."""

    kind: str  # "donation" or "plan"
    row: Donation | RecurringPlan
    #: The same form (its one-time token) was sent before: `row` is the gift it started,
    #: and nothing new was recorded. The caller rolls back and reopens that gift's checkout.
    repeated: bool = False


def find_by_form_token(token: str | None) -> Donation | RecurringPlan | None:
    """The gift or plan a giving form's one-time token started, if any."""
    if not token:
        return None
    return db.session.scalar(
        select(Donation).where(Donation.form_nonce == token)
    ) or db.session.scalar(select(RecurringPlan).where(RecurringPlan.form_nonce == token))


def _same_form(row: Donation | RecurringPlan, gift: NewGift, priced: Priced, email: str) -> Started:
    """The form was sent again (a double click, or back and send): the same gift when it
    asks for the same thing; otherwise the donor is asked again, so nobody is charged an
    amount other than the one they saw last."""
    frequency = row.frequency.value if isinstance(row, RecurringPlan) else "once"
    if (row.amount_minor, row.currency, frequency, row.donor.email) != (
        priced.total_minor,
        gift.currency,
        gift.frequency,
        email,
    ):
        raise GiftRejected(
            "_schema",
            "You already sent this form with a different gift. "
            "Check the amount and the details, then send it again.",
        )
    return Started("plan" if isinstance(row, RecurringPlan) else "donation", row, repeated=True)


def start_donation(gift: NewGift, user=None, campaign_id: int | None = None) -> Started:
    """Record the gift (pending) for the donor; the caller then opens Checkout.

    `campaign_id` is the live campaign the form named, as the caller found it (None when the
    form named none, or named one that no longer takes gifts).

    A signed-in donor gives as their account's address, whatever the form said. The form's
    one-time token is stored with the gift: the same form sent again finds that gift.
    """
    priced = price_gift(gift)
    if user is not None and user.is_authenticated:
        email = (user.email or "").strip().lower()
    else:
        email = (gift.email or "").strip().lower()
    earlier = find_by_form_token(gift.form_token)
    if earlier is not None:
        return _same_form(earlier, gift, priced, email)
    if user is not None and user.is_authenticated:
        donor = donor_for_user(user) or find_or_create_donor(user.email, gift.full_name)
        claim_for_account(donor, user)
    else:
        if not gift.email:
            raise GiftRejected("email", "Enter your e-mail address, for your receipt.")
        donor = find_or_create_donor(gift.email, gift.full_name)
    designation = gift.designation
    if gift.campaign:
        if campaign_id is None:
            raise GiftRejected(
                "campaign",
                "That campaign is no longer taking gifts; your "
                "gift can go to our general fund instead.",
            )
        designation = "campaign"
    else:
        campaign_id = None
    declaration = None
    if gift.gift_aid is not None:
        # Takes effect only when this gift is paid; covers other gifts only once the owner
        # of the address confirms (here: signed in and verified as that address).
        declaration = make_declaration(donor, gift.gift_aid, GiftAidScope.ALL)
        if owns_address(user, donor):
            declaration.confirmed_at = utcnow()
    common = dict(
        donor=donor,
        amount_minor=priced.total_minor,
        fee_cover_minor=priced.fee_cover_minor,
        currency=gift.currency,
        designation=designation,
        campaign_id=campaign_id,
        dedication=gift.dedication,
        donor_name=gift.full_name,
        form_nonce=gift.form_token,
        gift_aid_declaration_id=declaration.id if declaration else None,
    )
    if gift.frequency == "once":
        row: Donation | RecurringPlan = Donation(
            kind=DonationKind.ONCE, status=DonationStatus.PENDING, frequency="once", **common
        )
    else:
        row = RecurringPlan(
            frequency=Frequency(gift.frequency), status=PlanStatus.PENDING, **common
        )
    try:
        with db.session.begin_nested():
            db.session.add(row)
    except IntegrityError:
        # The same form, sent at the same moment by another request that got there first
        # (the unique token waited for its commit): that request's gift is this one.
        earlier = find_by_form_token(gift.form_token)
        if earlier is None:
            raise
        return _same_form(earlier, gift, priced, email)
    return Started("plan" if isinstance(row, RecurringPlan) else "donation", row)


def checkout_key(row: Donation | RecurringPlan) -> str:
    """Derived from our row: the same gift always sends the same key (until Stripe has
    refused an attempt for good, or its session would expire too soon)."""
    prefix = "donation" if isinstance(row, Donation) else "plan"
    return f"{prefix}-{row.public_id}-checkout-{row.checkout_attempt}"


def open_checkout(row: Donation | RecurringPlan) -> str:
    """Create (or fetch again, by idempotency key) the Checkout Session; returns its URL.

    :raises GatewayError: with .retryable; when Stripe refused for good the attempt number
        moves on, so the donor's next try is a new request.
    """
    if row.status is not DonationStatus.PENDING and row.status is not PlanStatus.PENDING:
        raise DomainError("This gift is no longer waiting for payment.")
    now = utcnow()
    expiry = timedelta(minutes=current_app.config["CHECKOUT_EXPIRY_MINUTES"])
    # Stripe wants expires_at at least 30 minutes ahead; a request repeated with the same key
    # must be identical, so a session too close to its end needs a new attempt.
    if row.checkout_expires_at is None or row.checkout_expires_at < now + timedelta(minutes=31):
        # The previous session must not stay payable beside the new one (paid twice).
        _close_previous_session(row)
        if row.checkout_expires_at is not None:
            row.checkout_attempt += 1
        row.checkout_expires_at = (now + expiry).replace(microsecond=0)
    is_plan = isinstance(row, RecurringPlan)
    frequency = row.frequency.value if isinstance(row, RecurringPlan) else "once"
    ref = {"plan" if is_plan else "donation": row.public_id}
    request = CheckoutRequest(
        idempotency_key=checkout_key(row),
        mode="subscription" if is_plan else "payment",
        amount_minor=row.amount_minor,
        currency=row.currency,
        product_name=PRODUCT_NAMES[frequency],
        success_url=external_url("donations.thank_you") + "?session_id={CHECKOUT_SESSION_ID}",
        cancel_url=external_url("donations.cancelled", ref=row.public_id),
        expires_at=int(row.checkout_expires_at.timestamp()),
        customer_email=row.donor.email,
        metadata=ref,
        interval=row.frequency.stripe_interval if isinstance(row, RecurringPlan) else None,
    )
    try:
        session = get_gateway().create_checkout(request)
    except GatewayError as error:
        if error.key_spent:
            # Stripe keeps a refusal, and a 5xx once execution began, under the key for 24
            # hours, so the next try needs a new one. A session made before a 5xx was never
            # shown to anyone and expires unpaid.
            row.checkout_attempt += 1
            row.checkout_expires_at = None
        log.warning(
            "checkout not created", extra={"kind": error.kind, "retryable": error.retryable}
        )
        raise
    row.stripe_checkout_session_id = session.id
    remember_session(row, session.id)
    db.session.flush()
    return session.url


def _close_previous_session(row: Donation | RecurringPlan) -> None:
    """Expire the row's open session before a new attempt opens another.

    :raises CheckoutAlreadyPaid: the donor completed it meanwhile (open no other).
    :raises GatewayError: Stripe could not be asked; nothing new is opened.
    """
    close_session(row.stripe_checkout_session_id, f"{checkout_key(row)}-expire")


def close_session(session_id: str | None, idempotency_key: str) -> None:
    """Expire a Checkout Session at Stripe so it can no longer be paid (gifts, plans and
    sponsorships alike, before any new attempt opens another session).

    :raises CheckoutAlreadyPaid: it was completed meanwhile (open no other).
    :raises GatewayError: Stripe could not be asked; nothing new may be opened.
    """
    if not session_id:
        return
    gateway = get_gateway()
    try:
        status = gateway.close_checkout(session_id, idempotency_key)
    except GatewayError as error:
        if not (error.retryable and error.key_spent):
            raise
        # A 5xx Stripe keeps under the key for 24 hours and replays to every later try: read
        # the session back and act on what Stripe holds. Open: expire it under a key of this
        # try's own (expiring twice is a no-op, so nothing needs the same key across tries).
        status = gateway.checkout_status(session_id)
        if status == "open":
            status = gateway.close_checkout(session_id, f"{idempotency_key}-{secrets.token_hex(6)}")
    if status == "complete":
        raise CheckoutAlreadyPaid("Your payment is being confirmed.")
    if status != "expired":
        raise GatewayError(
            "Our payment provider had a problem.", retryable=True, kind="not_expired"
        )


def remember_session(row: Donation | RecurringPlan, session_id: str) -> None:
    """Keep every session id of a gift or plan (a replayed create returns the same id); a
    sponsorship's sessions are kept under its plan, with the sponsorship's attempt number."""
    known = db.session.scalar(
        select(CheckoutSessionRecord).where(CheckoutSessionRecord.session_id == session_id)
    )
    if known is None:
        is_plan = isinstance(row, RecurringPlan)
        db.session.add(
            CheckoutSessionRecord(
                session_id=session_id,
                attempt=row.checkout_attempt,
                donation_id=None if is_plan else row.id,
                plan_id=row.id if is_plan else None,
            )
        )


def find_by_public_id(public_id: str) -> Donation | RecurringPlan | None:
    """The gift or plan with this public id (the donor's reference), if any."""
    if not public_id or len(public_id) > 32:
        return None
    return db.session.scalar(
        select(Donation).where(Donation.public_id == public_id)
    ) or db.session.scalar(select(RecurringPlan).where(RecurringPlan.public_id == public_id))


def find_by_session(session_id: str) -> Donation | RecurringPlan | None:
    """The gift or plan of any checkout session it ever had."""
    if not session_id or len(session_id) > 255:
        return None
    record = db.session.scalar(
        select(CheckoutSessionRecord).where(CheckoutSessionRecord.session_id == session_id)
    )
    if record is not None:
        return (
            db.session.get(Donation, record.donation_id)
            if record.donation_id
            else db.session.get(RecurringPlan, record.plan_id)
        )
    return db.session.scalar(
        select(Donation).where(Donation.stripe_checkout_session_id == session_id)
    ) or db.session.scalar(
        select(RecurringPlan).where(RecurringPlan.stripe_checkout_session_id == session_id)
    )
