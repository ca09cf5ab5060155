"""Giving rules: starting a gift, applying Stripe's events, plans, receipts, Gift Aid.

Services flush, never commit (the view, webhook, job or CLI commits once). Mail is queued in
the same transaction as its cause. Webhook handlers are idempotent and order-independent:
each records facts that only move one way and then derives the status (models.py).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, TypeVar
from zoneinfo import ZoneInfo

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from donorhub.audit import record_audit
from donorhub.database import utcnow
from donorhub.donations import dunning, giftaid, refunds
from donorhub.donations.models import (
    MONEY_RECEIVED,
    SPONSORSHIP_DESIGNATION,
    CheckoutSessionRecord,
    Donation,
    DonationKind,
    DonationStatus,
    Donor,
    Frequency,
    GiftAidClaim,
    GiftAidDeclaration,
    GiftAidScope,
    PlanStatus,
    Receipt,
    ReceiptCounter,
    RecurringPlan,
)
from donorhub.donations.schemas import NewGift
from donorhub.errors import DomainError, NotPermitted
from donorhub.extensions import db
from donorhub.forms import name_for_mail, text_for_mail
from donorhub.mail.services import queue_mail
from donorhub.money import STRIPE_MAX_MINOR, fee_cover, format_money
from donorhub.payments.events import (
    ChargeData,
    CheckoutSessionData,
    DisputeData,
    InvoiceData,
    PaymentEvent,
    PaymentIntentData,
    SubscriptionData,
)
from donorhub.payments.gateway import (
    CheckoutRequest,
    GatewayError,
    SubscriptionChange,
    get_gateway,
)
from donorhub.urls import external_url

if TYPE_CHECKING:
    from donorhub.accounts.models import User

log = logging.getLogger(__name__)
T = TypeVar("T")

PRODUCT_NAMES = {"once": "Donation", "monthly": "Monthly donation", "yearly": "Yearly donation"}
#: Stripe's decline codes in plain words, for the mail that asks a donor to update a card.
FAILURE_WORDS = {
    "insufficient_funds": "your bank said there was not enough money in the account",
    "expired_card": "the card has expired",
    "card_declined": "your bank declined the payment",
    "generic_decline": "your bank declined the payment without saying why",
    "do_not_honor": "your bank declined the payment without saying why",
    "lost_card": "the card was reported lost",
    "stolen_card": "the card was reported stolen",
    "incorrect_cvc": "the security code did not match",
    "authentication_required": "your bank needs you to confirm the payment",
    "processing_error": "there was a problem processing the card",
}


class GiftRejected(DomainError):
    """The gift cannot be taken as asked; `field` names the form field to blame."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class CheckoutAlreadyPaid(DomainError):
    """The donor paid the previous checkout session while we were about to replace it."""


class NotReady(Exception):
    """An event refers to a row that another event has not created yet: answer 5xx, so
    Stripe delivers it again later (reconciliation covers it too)."""


# Donors ------------------------------------------------------------------------------------

def find_or_create_donor(email: str, full_name: str) -> Donor:
    """Find a donor by e-mail or create one; safe when two requests race on one address."""
    email = email.strip().lower()
    donor = db.session.scalar(select(Donor).where(Donor.email == email))
    if donor is not None:
        return donor
    try:
        with db.session.begin_nested():
            donor = Donor(email=email, full_name=full_name)
            db.session.add(donor)
    except IntegrityError:
        donor = db.session.scalar(select(Donor).where(Donor.email == email))
        if donor is None:
            raise
    return donor


def donor_for_user(user) -> Donor | None:
    """The donor record of a signed-in account, without writing anything.

    Claiming: a donor linked to the account, or else the donor with the account's e-mail
    once that address is verified (so nobody can read another's gifts by registering with
    their address). The link is written by the next gift the account makes.
    """
    if user is None or not user.is_authenticated:
        return None
    donor = db.session.scalar(select(Donor).where(Donor.user_id == user.id))
    if donor is None and user.is_verified:
        donor = db.session.scalar(select(Donor).where(Donor.email == user.email,
                                                      Donor.user_id.is_(None)))
    return donor


def _owns_address(user, donor: Donor) -> bool:
    """A signed-in account whose verified address is the donor's."""
    return bool(user is not None and user.is_authenticated and user.is_verified
                and (user.email or "").strip().lower() == donor.email)


def _claim(donor: Donor, user) -> None:
    if user is not None and donor.user_id is None and user.is_verified \
            and donor.email == user.email:
        other = db.session.scalar(select(Donor).where(Donor.user_id == user.id))
        if other is None:
            donor.user_id = user.id


# Amounts -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Priced:
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


def check_amount(currency: str, amount_minor: int, *, cover_fees: bool = False,
                 field: str = "custom_amount") -> int:
    """Check a gift against the limits; returns the fee cover to add (0 unless asked).

    The total charged (gift plus fee cover) must stay within the configured maximum and
    Stripe's; the message names the field and gives the range in money."""
    low, high = amount_limits(currency)
    between = (f"Enter an amount between {limit_words(low, currency)} and "
               f"{limit_words(high, currency)}.")
    if not low <= amount_minor <= high:
        raise GiftRejected(field, between)
    cover = fee_cover_for(currency, amount_minor) if cover_fees else 0
    if amount_minor + cover > high:
        largest = largest_covered_gift(currency, high)
        raise GiftRejected(field, (
            f"With the card fees covered the total would be "
            f"{format_money(amount_minor + cover, currency)}, over our limit of "
            f"{limit_words(high, currency)}. Enter an amount between "
            f"{limit_words(low, currency)} and {format_money(largest, currency)}, or leave "
            "out the card fees."))
    return cover


def fee_cover_for(currency: str, gift_minor: int) -> int:
    percent_bp, fixed = current_app.config["DONATION_FEE_COVER"][currency]
    return fee_cover(gift_minor, percent_bp, fixed)


def price_gift(gift: NewGift) -> Priced:
    """Amount and fee cover from the server's own rules; the browser's word is not taken."""
    presets = current_app.config["DONATION_PRESETS"].get(gift.currency, ())
    if gift.preset_minor is not None:
        if gift.preset_minor not in presets:
            raise GiftRejected("amount_choice", "Choose one of the amounts shown, or enter "
                                                "your own.")
        amount = gift.preset_minor
        field = "amount_choice"
    else:
        amount = gift.custom_minor or 0
        field = "custom_amount"
    cover = check_amount(gift.currency, amount, cover_fees=gift.cover_fees, field=field)
    return Priced(amount, cover)


# Starting a gift ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Started:
    kind: str  # "donation" or "plan"
    row: Donation | RecurringPlan
    #: The same form (its one-time token) was sent before: `row` is the gift it started,
    #: and nothing new was recorded. The caller rolls back and reopens that gift's checkout.
    repeated: bool = False


def find_by_form_token(token: str | None) -> Donation | RecurringPlan | None:
    """The gift or plan a giving form's one-time token started, if any."""
    if not token:
        return None
    return (db.session.scalar(select(Donation).where(Donation.form_nonce == token))
            or db.session.scalar(select(RecurringPlan).where(RecurringPlan.form_nonce == token)))


def _same_form(row: Donation | RecurringPlan, gift: NewGift, priced: Priced,
               email: str) -> Started:
    """The form was sent again (a double click, or back and send): the same gift when it
    asks for the same thing; otherwise the donor is asked again, so nobody is charged an
    amount other than the one they saw last."""
    frequency = row.frequency.value if isinstance(row, RecurringPlan) else "once"
    if (row.amount_minor, row.currency, frequency, row.donor.email) != (
            priced.total_minor, gift.currency, gift.frequency, email):
        raise GiftRejected("_schema", "You already sent this form with a different gift. "
                                      "Check the amount and the details, then send it again.")
    return Started("plan" if isinstance(row, RecurringPlan) else "donation", row,
                   repeated=True)


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
        _claim(donor, user)
    else:
        if not gift.email:
            raise GiftRejected("email", "Enter your e-mail address, for your receipt.")
        donor = find_or_create_donor(gift.email, gift.full_name)
    designation = gift.designation
    if gift.campaign:
        if campaign_id is None:
            raise GiftRejected("campaign", "That campaign is no longer taking gifts; your "
                                           "gift can go to our general fund instead.")
        designation = "campaign"
    else:
        campaign_id = None
    declaration = None
    if gift.gift_aid is not None:
        # Takes effect only when this gift is paid; covers other gifts only once the owner
        # of the address confirms (here: signed in and verified as that address).
        declaration = make_declaration(donor, gift.gift_aid, GiftAidScope.ALL)
        if _owns_address(user, donor):
            declaration.confirmed_at = utcnow()
    common = dict(donor=donor, amount_minor=priced.total_minor,
                  fee_cover_minor=priced.fee_cover_minor, currency=gift.currency,
                  designation=designation, campaign_id=campaign_id,
                  dedication=gift.dedication, donor_name=gift.full_name,
                  form_nonce=gift.form_token,
                  gift_aid_declaration_id=declaration.id if declaration else None)
    if gift.frequency == "once":
        row: Donation | RecurringPlan = Donation(kind=DonationKind.ONCE,
                                                 status=DonationStatus.PENDING,
                       frequency="once", **common)
    else:
        row = RecurringPlan(frequency=Frequency(gift.frequency), status=PlanStatus.PENDING,
                            **common)
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
        amount_minor=row.amount_minor, currency=row.currency,
        product_name=PRODUCT_NAMES[frequency],
        success_url=external_url("donations.thank_you") + "?session_id={CHECKOUT_SESSION_ID}",
        cancel_url=external_url("donations.cancelled", ref=row.public_id),
        expires_at=int(row.checkout_expires_at.timestamp()),
        customer_email=row.donor.email, metadata=ref,
        interval=row.frequency.stripe_interval if isinstance(row, RecurringPlan) else None)
    try:
        session = get_gateway().create_checkout(request)
    except GatewayError as error:
        if error.key_spent:
            # Stripe keeps a refusal, and a 5xx once execution began, under the key for 24
            # hours, so the next try needs a new one. A session made before a 5xx was never
            # shown to anyone and expires unpaid.
            row.checkout_attempt += 1
            row.checkout_expires_at = None
        log.warning("checkout not created", extra={"kind": error.kind,
                                                   "retryable": error.retryable})
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
            status = gateway.close_checkout(session_id,
                                            f"{idempotency_key}-{secrets.token_hex(6)}")
    if status == "complete":
        raise CheckoutAlreadyPaid("Your payment is being confirmed.")
    if status != "expired":
        raise GatewayError("Our payment provider had a problem.", retryable=True,
                           kind="not_expired")


def remember_session(row: Donation | RecurringPlan, session_id: str) -> None:
    """Keep every session id of a gift or plan (a replayed create returns the same id); a
    sponsorship's sessions are kept under its plan, with the sponsorship's attempt number."""
    known = db.session.scalar(select(CheckoutSessionRecord).where(
        CheckoutSessionRecord.session_id == session_id))
    if known is None:
        is_plan = isinstance(row, RecurringPlan)
        db.session.add(CheckoutSessionRecord(
            session_id=session_id, attempt=row.checkout_attempt,
            donation_id=None if is_plan else row.id, plan_id=row.id if is_plan else None))


def find_by_public_id(public_id: str) -> Donation | RecurringPlan | None:
    if not public_id or len(public_id) > 32:
        return None
    return (db.session.scalar(select(Donation).where(Donation.public_id == public_id))
            or db.session.scalar(select(RecurringPlan).where(RecurringPlan.public_id == public_id)))


def find_by_session(session_id: str) -> Donation | RecurringPlan | None:
    """The gift or plan of any checkout session it ever had."""
    if not session_id or len(session_id) > 255:
        return None
    record = db.session.scalar(select(CheckoutSessionRecord).where(
        CheckoutSessionRecord.session_id == session_id))
    if record is not None:
        return (db.session.get(Donation, record.donation_id) if record.donation_id
                else db.session.get(RecurringPlan, record.plan_id))
    return (db.session.scalar(select(Donation).where(
        Donation.stripe_checkout_session_id == session_id))
        or db.session.scalar(select(RecurringPlan).where(
            RecurringPlan.stripe_checkout_session_id == session_id)))


# Gift Aid ----------------------------------------------------------------------------------

def make_declaration(donor: Donor, details, scope: GiftAidScope) -> GiftAidDeclaration:
    declaration = GiftAidDeclaration(
        donor=donor, title=details.title, first_name=details.first_name,
        last_name=details.last_name, house=details.house, address_line=details.address_line,
        postcode=details.postcode, scope=scope,
        text_version=current_app.config["GIFT_AID_DECLARATION_VERSION"], channel="web")
    db.session.add(declaration)
    db.session.flush()
    return declaration


def cancel_declaration(donor: Donor, declaration_id: int) -> GiftAidDeclaration:
    declaration = db.session.get(GiftAidDeclaration, declaration_id)
    if declaration is None or declaration.donor_id != donor.id:
        raise NotPermitted("That declaration is not yours.")
    if declaration.cancelled_at is None:
        declaration.cancelled_at = utcnow()
        queue_mail(donor.email, "donations/gift_aid_cancelled",
                   subject="Your Gift Aid declaration is cancelled",
                   name=name_for_mail(f"{declaration.first_name} {declaration.last_name}"),
                   declared_at=declaration.declared_at)
    return declaration


def _gift_aid_for(donation: Donation) -> None:
    """Link a GBP gift to the declaration that covers it (none for other currencies).

    A declaration made with this gift (or its plan) takes effect now that the money has
    arrived; one from a checkout that was never paid never does."""
    if donation.currency != "gbp" or donation.paid_at is None:
        return
    if donation.gift_aid_declaration_id is not None:
        declaration = db.session.get(GiftAidDeclaration, donation.gift_aid_declaration_id)
        if declaration is not None and declaration.effective_at is None \
                and declaration.cancelled_at is None:
            declaration.effective_at = donation.paid_at
        if declaration is not None and not declaration.covers(donation, donation.paid_at):
            donation.gift_aid_declaration_id = None
        return
    declaration = db.session.scalar(
        select(GiftAidDeclaration).where(
            GiftAidDeclaration.donor_id == donation.donor_id,
            GiftAidDeclaration.scope == GiftAidScope.ALL,
            GiftAidDeclaration.effective_at.is_not(None),
            GiftAidDeclaration.confirmed_at.is_not(None),
            or_(GiftAidDeclaration.cancelled_at.is_(None),
                GiftAidDeclaration.cancelled_at > donation.paid_at))
        .order_by(GiftAidDeclaration.declared_at.desc()).limit(1))
    if declaration is not None:
        donation.gift_aid_declaration_id = declaration.id


def _gift_aid_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"],
                                  salt="donorhub.donations.gift-aid-confirm")


def gift_aid_confirm_url(declaration: GiftAidDeclaration) -> str:
    token = _gift_aid_serializer().dumps({"d": declaration.id})
    return external_url("donations.confirm_gift_aid", token=token)


def declaration_for_confirm_token(token: str) -> GiftAidDeclaration | None:
    """The declaration a mailed link confirms (30 days); None when invalid or not pending."""
    try:
        payload = _gift_aid_serializer().loads(token, max_age=30 * 24 * 3600)
    except (BadSignature, SignatureExpired):
        return None
    declaration = db.session.get(GiftAidDeclaration, payload.get("d")) \
        if isinstance(payload, dict) else None
    if declaration is None or declaration.effective_at is None \
            or declaration.cancelled_at is not None:
        return None
    return declaration


def confirm_declaration(declaration: GiftAidDeclaration, actor=None) -> None:
    """The owner of the address confirmed "this gift and all others" (link or account)."""
    if declaration.confirmed_at is None:
        declaration.confirmed_at = utcnow()
        record_audit(actor, "gift_aid.confirmed", "gift_aid_declaration", declaration.id, {})


def gift_aid_status(donation: Donation) -> str:
    if donation.currency != "gbp":
        return "Gift Aid does not apply to gifts in this currency."
    if donation.gift_aid_declaration_id:
        return ("Gift Aid: yes. We will claim 25p for every £1 you gave, under your "
                "declaration.")
    return "Gift Aid: no declaration. If you are a UK taxpayer, you can add one."


# Receipts ----------------------------------------------------------------------------------

def _next_receipt_sequence(year: int) -> int:
    """Lock the year's counter row and take the next number (sequential, never reused)."""
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        # Both dialects' insert() take the same on_conflict_do_nothing arguments used here.
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    db.session.execute(insert(ReceiptCounter).values(year=year, last=0)
                       .on_conflict_do_nothing(index_elements=["year"]))
    return db.session.execute(
        update(ReceiptCounter).where(ReceiptCounter.year == year)
        .values(last=ReceiptCounter.last + 1).returning(ReceiptCounter.last)).scalar_one()


def issue_receipt(donation: Donation) -> Receipt | None:
    """One receipt and one e-mail per gift, once the money has arrived and is not all
    refunded (a partial refund, whenever it arrived, is shown on the receipt)."""
    if donation.receipt is not None or donation.status not in (
            DonationStatus.PAID, DonationStatus.PARTIALLY_REFUNDED):
        return None
    if donation.paid_at is None:
        raise RuntimeError("paid gift without paid_at")
    year = donation.paid_at.year
    sequence = _next_receipt_sequence(year)
    receipt = Receipt(donation=donation, year=year, sequence=sequence,
                      number=f"{year}-{sequence:06d}")
    db.session.add(receipt)
    db.session.flush()
    plan = donation.plan
    queue_mail(
        donation.donor.email, "donations/receipt",
        subject=f"Thank you: your receipt {receipt.number}",
        name=donation.payer_name, number=receipt.number,
        amount=format_money(donation.amount_minor, donation.currency),
        gift=format_money(donation.gift_minor, donation.currency),
        fee_cover=(format_money(donation.fee_cover_minor, donation.currency)
                   if donation.fee_cover_minor else None),
        date=donation.paid_at.strftime("%-d %B %Y"),
        designation=_designation_words(donation),
        dedication=text_for_mail(donation.dedication), gift_aid=gift_aid_status(donation),
        refunded=(format_money(donation.amount_refunded_minor, donation.currency)
                  if donation.amount_refunded_minor else None),
        gift_aid_confirm_url=_confirm_link_for(donation),
        registration=current_app.config["CHARITY_REGISTRATION"],
        plan=plan, frequency=plan.frequency.value if plan else None,
        manage_url=manage_url(plan) if plan else None,
        history_url=external_url("donations.history"))
    return receipt


def _designation_words(donation: Donation) -> str:
    """What the receipt says the gift is for: the campaign by its public name."""
    if donation.designation == "campaign" and donation.campaign is not None:
        return f"our campaign “{donation.campaign.name}”"
    return {"general": "our general fund", "sponsorship": "a monthly sponsorship"
            }.get(donation.designation, "a campaign")


def _confirm_link_for(donation: Donation) -> str | None:
    """The link that extends a declaration to all gifts, while it covers only this one."""
    declaration = donation.gift_aid_declaration
    if declaration is None or declaration.scope is not GiftAidScope.ALL \
            or declaration.confirmed_at is not None or declaration.effective_at is None:
        return None
    return gift_aid_confirm_url(declaration)


# Signed link to manage a plan without signing in -------------------------------------------

def _manage_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"],
                                  salt="donorhub.donations.manage-plan")


def manage_token(plan: RecurringPlan) -> str:
    return _manage_serializer().dumps({"p": plan.id, "v": plan.manage_version})


def manage_url(plan: RecurringPlan) -> str:
    return external_url("donations.manage", token=manage_token(plan))


def plan_for_manage_token(token: str) -> RecurringPlan | None:
    max_age = current_app.config["PLAN_MANAGE_LINK_MAX_AGE"]
    try:
        payload = _manage_serializer().loads(token, max_age=int(max_age.total_seconds()))
    except (BadSignature, SignatureExpired):
        return None
    if not isinstance(payload, dict):
        return None
    plan = db.session.get(RecurringPlan, payload.get("p"))
    if plan is None or plan.manage_version != payload.get("v"):
        return None
    return plan


# Applying Stripe's events ------------------------------------------------------------------
# Each handler returns "applied", "ignored" (not ours / nothing to do) or "flagged".

def _lock_donation(**where) -> Donation | None:
    query = select(Donation).filter_by(**where).with_for_update()
    return db.session.scalar(query)


def _lock_plan(refs_plan: str | None, subscription_id: str | None) -> RecurringPlan | None:
    plan = None
    if refs_plan:
        plan = db.session.scalar(select(RecurringPlan).where(
            RecurringPlan.public_id == refs_plan).with_for_update())
    if plan is None and subscription_id:
        plan = db.session.scalar(select(RecurringPlan).where(
            RecurringPlan.stripe_subscription_id == subscription_id).with_for_update())
    return plan


def _flag(row: Donation, reason: str, event: PaymentEvent) -> str:
    if not row.review_reason:
        row.review_reason = reason[:200]
        record_audit(None, "payment.flagged", "donation", row.id, {"event": event.type})
        log.warning("payment flagged for staff", extra={"donation_id": row.id,
                                                        "event_type": event.type})
    row.settle()
    return "flagged"


def _amount_matches(row: Donation, amount: int | None, currency: str | None) -> bool:
    return amount == row.amount_minor and (currency or "").lower() == row.currency


def _mismatch(row: Donation, amount: int | None, currency: str | None) -> str:
    return (f"Stripe reported {amount} {currency}; the gift is {row.amount_minor} "
            f"{row.currency}")


def _second_payment(donation: Donation, intent_id: str | None) -> bool:
    """Another PaymentIntent than the one that paid this gift (a second checkout session)."""
    return bool(intent_id and donation.stripe_payment_intent_id
                and intent_id != donation.stripe_payment_intent_id)


def _flag_second_payment(donation: Donation, intent_id: str | None,
                         event: PaymentEvent) -> str:
    record_audit(None, "payment.second_payment", "donation", donation.id,
                 {"payment_intent": intent_id, "event": event.type})
    return _flag(donation, f"paid twice: second payment {intent_id} through another checkout "
                           "session; refund it", event)


def _stripe_time(timestamp: int | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp else None


def _record_paid_at(donation: Donation, event: PaymentEvent,
                    paid_at: datetime | None = None) -> None:
    """When the money was paid, on Stripe's clock: the charge's or invoice's own time where
    the event carries it, else the event's time. A refund or dispute heard first gives a later
    time than the payment's, so the earliest time heard wins: every order of the same events
    ends with the same `paid_at`."""
    when = paid_at or event.created
    if donation.paid_at is None or when < donation.paid_at:
        donation.paid_at = when


def _mark_paid(donation: Donation, event: PaymentEvent, *, intent_id: str | None = None,
               charge_id: str | None = None, paid_at: datetime | None = None) -> str:
    """Money arrived: record it whatever the status said (expired, failed), link Gift Aid,
    settle, receipt. A second distinct payment for the same gift is flagged for staff."""
    if _second_payment(donation, intent_id):
        return _flag_second_payment(donation, intent_id, event)
    if intent_id and not donation.stripe_payment_intent_id:
        donation.stripe_payment_intent_id = intent_id
    if charge_id and not donation.stripe_charge_id:
        donation.stripe_charge_id = charge_id
    first_payment_heard = donation.paid_at is None
    _record_paid_at(donation, event, paid_at)
    if first_payment_heard:
        _name_donor_after_payment(donation)
    _gift_aid_for(donation)
    donation.settle()
    issue_receipt(donation)
    return "flagged" if donation.review_reason else "applied"


def _name_donor_after_payment(donation: Donation) -> None:
    """The donor record's name (staff pages, Gift Aid views, mail of gifts without a payer
    name). Anyone can pay under any address, so a payment never renames someone else:
    a donor record that belongs to an account carries the account holder's own name; a
    guest donor record is named by its first paid gift (never by a checkout left unpaid)
    and keeps that name. Each gift keeps its payer's name for its own receipt."""
    donor = donation.donor
    if donor.user_id is not None:
        from donorhub.accounts.models import User

        user = db.session.get(User, donor.user_id)
        if user is not None and user.full_name and donor.full_name != user.full_name:
            donor.full_name = user.full_name
        return
    if not donation.donor_name or donor.full_name == donation.donor_name:
        return
    paid_before = db.session.scalar(select(Donation.id).where(
        Donation.donor_id == donor.id, Donation.id != donation.id,
        Donation.paid_at.is_not(None)).limit(1))
    if paid_before is None:
        donor.full_name = donation.donor_name


def _donation_for_session(s: CheckoutSessionData) -> Donation | None:
    if s.refs.donation:
        return _lock_donation(public_id=s.refs.donation)
    record = db.session.scalar(select(CheckoutSessionRecord).where(
        CheckoutSessionRecord.session_id == s.id))
    if record is not None and record.donation_id:
        return _lock_donation(id=record.donation_id)
    return _lock_donation(stripe_checkout_session_id=s.id)


def _subject(event: PaymentEvent, kind: type[T]) -> T:
    """The event's object, checked to be what the dispatch table promised. An explicit check,
    not an assert (which `python -O` removes): a mismatch fails the webhook, so Stripe retries
    once the table is mended."""
    if not isinstance(event.subject, kind):
        raise TypeError(f"{event.type} carries {type(event.subject).__name__}, "
                        f"not {kind.__name__}")
    return event.subject


def record_checkout_completed(event: PaymentEvent) -> str:
    s = _subject(event, CheckoutSessionData)
    if s.mode == "subscription":
        return _plan_checkout_completed(event, s)
    donation = _donation_for_session(s)
    if donation is None:
        return "ignored"
    # Any session of the gift counts (an older one may be paid after "Try again"); the
    # current one stays what open_checkout stored.
    donation.stripe_checkout_session_id = donation.stripe_checkout_session_id or s.id
    if not _amount_matches(donation, s.amount_total, s.currency):
        return _flag(donation, _mismatch(donation, s.amount_total, s.currency), event)
    if s.payment_status == "paid":
        return _mark_paid(donation, event, intent_id=s.payment_intent_id)
    elif s.payment_status == "unpaid":
        if donation.paid_at is not None:
            if _second_payment(donation, s.payment_intent_id):
                return _flag_second_payment(donation, s.payment_intent_id, event)
            return "applied"
        donation.processing = True
        if s.payment_intent_id and not donation.stripe_payment_intent_id:
            donation.stripe_payment_intent_id = s.payment_intent_id
        donation.settle()
    else:
        return _flag(donation, f"unexpected payment status {s.payment_status}", event)
    return "applied"


def record_async_payment_succeeded(event: PaymentEvent) -> str:
    s = _subject(event, CheckoutSessionData)
    donation = _donation_for_session(s)
    if donation is None:
        return "ignored"
    if not _amount_matches(donation, s.amount_total, s.currency):
        return _flag(donation, _mismatch(donation, s.amount_total, s.currency), event)
    donation.processing = True
    return _mark_paid(donation, event, intent_id=s.payment_intent_id)


def record_async_payment_failed(event: PaymentEvent) -> str:
    s = _subject(event, CheckoutSessionData)
    donation = _donation_for_session(s)
    if donation is None:
        return "ignored"
    if donation.paid_at is not None or donation.stripe_checkout_session_id not in (None, s.id):
        return "applied"  # paid anyway, or an older session's attempt
    if not donation.payment_failed:
        donation.payment_failed = True
        donation.processing = True
        if donation.settle() is DonationStatus.FAILED:
            queue_mail(donation.donor.email, "donations/payment_failed_once",
                       subject="Your gift did not go through", name=donation.payer_name,
                       amount=format_money(donation.amount_minor, donation.currency),
                       donate_url=external_url("donations.donate"))
    return "applied"


def record_checkout_expired(event: PaymentEvent) -> str:
    s = _subject(event, CheckoutSessionData)
    if s.mode == "subscription":
        plan = _lock_plan(s.refs.plan, None)
        if plan is None or plan.stripe_checkout_session_id not in (None, s.id):
            return "ignored"
        if _superseded(plan, s.id):
            return "applied"
        # A fact, not an end: an older session of the plan paid later overrides it.
        plan.checkout_expired = True
        plan.settle()
        return "applied"
    donation = _donation_for_session(s)
    if donation is None or donation.stripe_checkout_session_id not in (None, s.id):
        return "ignored"
    if _superseded(donation, s.id):
        return "applied"
    donation.expired = True
    donation.settle()
    return "applied"


def _superseded(row: Donation | RecurringPlan, session_id: str) -> bool:
    """A session we expired ourselves to open a newer attempt (even if opening that attempt
    then failed): its expiry does not end the gift, so the donor can still try again."""
    record = db.session.scalar(select(CheckoutSessionRecord).where(
        CheckoutSessionRecord.session_id == session_id))
    return record is not None and record.attempt < row.checkout_attempt


def record_payment_intent_succeeded(event: PaymentEvent) -> str:
    p = _subject(event, PaymentIntentData)
    if not p.refs.donation:
        return "ignored"  # an invoice's intent: invoice.paid records those gifts
    donation = _lock_donation(public_id=p.refs.donation)
    if donation is None:
        return "ignored"
    if not _amount_matches(donation, p.amount_received, p.currency):
        return _flag(donation, _mismatch(donation, p.amount_received, p.currency), event)
    return _mark_paid(donation, event, intent_id=p.id)


def _donation_for_payment(refs_donation: str | None, intent_id: str | None,
                          charge_id: str | None) -> Donation | None:
    if refs_donation:
        donation = _lock_donation(public_id=refs_donation)
        if donation is not None:
            return donation
    if intent_id:
        donation = _lock_donation(stripe_payment_intent_id=intent_id)
        if donation is not None:
            return donation
        if not refs_donation:
            # A dispute carries no metadata, and the intent may not be stored yet: its
            # metadata says whose it is.
            intent = get_gateway().payment_intent(intent_id)
            if intent is not None and intent.refs.donation:
                return _lock_donation(public_id=intent.refs.donation)
        invoice_id = get_gateway().invoice_for_payment_intent(intent_id) \
            if not refs_donation else None
        if invoice_id:
            donation = _lock_donation(stripe_invoice_id=invoice_id)
            if donation is None:
                if _invoice_is_ours(invoice_id):
                    raise NotReady("the invoice's gift is not recorded yet")
                log.info("payment of an invoice that is not ours ignored")
                return None
            if not donation.stripe_payment_intent_id:
                donation.stripe_payment_intent_id = intent_id
            return donation
    if charge_id:
        return _lock_donation(stripe_charge_id=charge_id)
    return None


def _invoice_is_ours(invoice_id: str) -> bool:
    """The invoice belongs to one of our plans (its subscription carries our reference)."""
    invoice = get_gateway().invoice(invoice_id)
    if invoice is None:
        return False
    if invoice.refs.plan or invoice.refs.sponsorship:
        return True
    return invoice.subscription_id is not None and db.session.scalar(
        select(RecurringPlan.id).where(
            RecurringPlan.stripe_subscription_id == invoice.subscription_id)) is not None


def find_donation_for_payment(refs_donation: str | None, intent_id: str | None,
                              charge_id: str | None) -> Donation | None:
    """The gift (locked) a charge, refund or dispute is about."""
    return _donation_for_payment(refs_donation, intent_id, charge_id)


def mark_paid_by_reversal(donation: Donation, event: PaymentEvent, intent_id: str | None,
                          charge_id: str | None, *, paid_at: datetime | None = None) -> str:
    """A refund or dispute of a charge proves it succeeded: record the payment as such, at
    the charge's own time where the event carries it."""
    if _second_payment(donation, intent_id):
        # A refund of the duplicate payment (staff's fix), not of this gift's money.
        return _flag_second_payment(donation, intent_id, event)
    return _mark_paid(donation, event, intent_id=intent_id, charge_id=charge_id,
                      paid_at=paid_at)


def tell_donor_of_refund(donation: Donation, refunded_before: int) -> None:
    """The refund mail, once per rise of the refunded amount of a receipted gift."""
    if donation.amount_refunded_minor > refunded_before and donation.receipt is not None:
        queue_mail(donation.donor.email, "donations/refunded",
                   subject=f"Your refund for receipt {donation.receipt.number}",
                   name=donation.payer_name, number=donation.receipt.number,
                   amount=format_money(donation.amount_refunded_minor, donation.currency))


def record_charge_refunded(event: PaymentEvent) -> str:
    c = _subject(event, ChargeData)
    donation = _donation_for_payment(c.refs.donation, c.payment_intent_id, c.id)
    if donation is None:
        return "ignored"
    if not _amount_matches(donation, c.amount, c.currency):
        return _flag(donation, _mismatch(donation, c.amount, c.currency), event)
    if _second_payment(donation, c.payment_intent_id):
        return _flag_second_payment(donation, c.payment_intent_id, event)
    before = donation.amount_refunded_minor
    had_receipt = donation.receipt is not None
    refunds.record_charge_facts(donation, c)
    refunds.recompute_facts(donation)
    outcome = mark_paid_by_reversal(donation, event, c.payment_intent_id, c.id,
                                    paid_at=_stripe_time(c.created))
    if outcome == "flagged":
        return outcome
    if had_receipt:
        tell_donor_of_refund(donation, before)
    return "applied"


def _record_dispute(event: PaymentEvent, closed: bool) -> str:
    d = _subject(event, DisputeData)
    donation = _donation_for_payment(None, d.payment_intent_id, d.charge_id)
    if donation is None:
        return "ignored"
    record_audit(None, "payment.dispute_closed" if closed else "payment.dispute_opened",
                 "donation", donation.id, {"status": d.status or "unknown"})
    if _second_payment(donation, d.payment_intent_id):
        return _flag_second_payment(donation, d.payment_intent_id, event)
    refunds.record_dispute(donation, d, closed, event.created)
    refunds.recompute_facts(donation)
    # A disputed charge had succeeded: the money arrived (a won dispute keeps it: receipt).
    return _mark_paid(donation, event, intent_id=d.payment_intent_id, charge_id=d.charge_id)


def record_dispute_created(event: PaymentEvent) -> str:
    return _record_dispute(event, closed=False)


def record_dispute_closed(event: PaymentEvent) -> str:
    return _record_dispute(event, closed=True)


def record_dispute_updated(event: PaymentEvent) -> str:
    """A dispute moved on (evidence under review, or closed as won/lost)."""
    d = _subject(event, DisputeData)
    return _record_dispute(event, closed=refunds.is_closed(d.status))


# Plans -------------------------------------------------------------------------------------

def _plan_checkout_completed(event: PaymentEvent, s: CheckoutSessionData) -> str:
    plan = _lock_plan(s.refs.plan, s.subscription_id)
    if plan is None:
        return "ignored"
    # Any session of the plan counts: an older one may be paid after "Try again".
    plan.stripe_checkout_session_id = plan.stripe_checkout_session_id or s.id
    if _other_subscription(plan, s.subscription_id, event):
        return "flagged"  # its paid invoice becomes a flagged gift for staff
    _link_subscription(plan, s.subscription_id, s.customer_id)
    if s.amount_total != plan.amount_minor or (s.currency or "") != plan.currency:
        # Not activated, whatever its invoices say; its invoice's gift is flagged too.
        _checkout_mismatched(plan, f"the checkout charged {s.amount_total} {s.currency}; "
                                   f"the plan is {plan.amount_minor} {plan.currency}", event)
        return "flagged"
    if s.payment_status in ("paid", "no_payment_required"):
        plan.checkout_completed = True  # an unpaid (delayed) session waits for invoice.paid
        plan.started_at = plan.started_at or event.created
    plan.settle()
    return "applied"


def flag_plan(plan: RecurringPlan, reason: str, event_type: str) -> None:
    """Staff must look at this plan (listed on the staff page); the first reason is kept."""
    if not plan.review_reason:
        plan.review_reason = reason[:200]
        record_audit(None, "plan.flagged", "plan", plan.id, {"event": event_type})
        log.warning("plan flagged for staff", extra={"plan_id": plan.id,
                                                     "event_type": event_type})


def _checkout_mismatched(plan: RecurringPlan, reason: str, event: PaymentEvent) -> None:
    """The checkout that starts the plan charged another amount or currency: a fact that
    keeps the plan from becoming active (in every order of its events), for staff."""
    plan.checkout_mismatch = True
    flag_plan(plan, reason, event.type)
    plan.settle()


def flagged_plans() -> Sequence[RecurringPlan]:
    return db.session.scalars(select(RecurringPlan).where(
        RecurringPlan.review_reason.is_not(None))
        .order_by(RecurringPlan.id.desc()).limit(200)).all()


def _other_subscription(plan: RecurringPlan, subscription_id: str | None,
                        event: PaymentEvent) -> bool:
    """A second subscription for one plan (paid through two checkout sessions): never
    applied to the plan; audited so staff cancel it (its gifts are flagged)."""
    if not (subscription_id and plan.stripe_subscription_id
            and subscription_id != plan.stripe_subscription_id):
        return False
    record_audit(None, "plan.second_subscription", "plan", plan.id,
                 {"subscription": subscription_id, "event": event.type})
    log.warning("second subscription for one plan", extra={"plan_id": plan.id,
                                                           "event_type": event.type})
    return True


def _link_subscription(plan: RecurringPlan, subscription_id: str | None,
                       customer_id: str | None) -> None:
    if subscription_id and not plan.stripe_subscription_id:
        plan.stripe_subscription_id = subscription_id
    if customer_id and not plan.stripe_customer_id:
        plan.stripe_customer_id = customer_id


def _newer_invoice(plan: RecurringPlan, invoice: InvoiceData, state: str) -> bool:
    """Apply an invoice outcome only if it is about the newest invoice we know of; for the
    same invoice, "paid" is final (a late failure notice cannot undo it). Two invoices created
    in the same second cannot be ordered by their `created`: the subscription's latest invoice,
    as Stripe holds it now, says which is newer."""
    if plan.latest_invoice_id == invoice.id:
        return plan.latest_invoice_state != "paid"
    held = plan.latest_invoice_created or 0
    if invoice.created != held or plan.latest_invoice_id is None:
        return invoice.created > held
    try:
        sub = get_gateway().subscription(invoice.subscription_id) \
            if invoice.subscription_id else None
    except GatewayError:
        # Stripe cannot say now: the last heard wins (a later event or reconcile corrects it).
        log.warning("could not order two invoices of one second", extra={"plan_id": plan.id})
        return True
    if sub is None or sub.latest_invoice_id not in (invoice.id, plan.latest_invoice_id):
        return True  # neither is the newest: the last heard wins
    return sub.latest_invoice_id == invoice.id


def record_invoice_paid(event: PaymentEvent) -> str:
    inv = _subject(event, InvoiceData)
    plan = _lock_plan(inv.refs.plan, inv.subscription_id)
    if plan is None:
        return "ignored"
    if _other_subscription(plan, inv.subscription_id, event):
        return _second_subscription_gift(plan, inv, event)
    _link_subscription(plan, inv.subscription_id, inv.customer_id)
    dunning.record_payment(inv.id, inv.amount_paid, event.created)  # failure history
    if _newer_invoice(plan, inv, "paid"):
        plan.latest_invoice_id = inv.id
        plan.latest_invoice_created = inv.created
        plan.latest_invoice_state = "paid"
    plan.started_at = plan.started_at or event.created
    plan.settle()
    expected = {plan.amount_minor, plan.pending_amount_minor or plan.amount_minor}
    if inv.billing_reason == "subscription_create" and (
            inv.amount_paid not in expected or inv.currency != plan.currency):
        _checkout_mismatched(plan, f"the first invoice charged {inv.amount_paid} "
                                   f"{inv.currency}; the plan is {plan.amount_minor} "
                                   f"{plan.currency}", event)
    gift = db.session.scalar(select(Donation).where(Donation.stripe_invoice_id == inv.id))
    if gift is not None:
        return "applied"  # the same invoice through another event or reconciliation
    fee = plan.fee_cover_minor if inv.amount_paid == plan.amount_minor else 0
    # The interval this payment was taken under: the invoice's own, where it says (an invoice
    # delivered after a switch we recorded was still paid under the old interval). Without
    # one, an invoice raised by a switch Stripe has made but we have not recorded yet is
    # under the interval asked for.
    paid_under = plan.frequency.value
    if inv.interval in ("month", "year"):
        paid_under = _frequency_of(inv.interval).value
    elif inv.billing_reason == "subscription_update" and plan.pending_frequency:
        paid_under = plan.pending_frequency
    gift = Donation(kind=DonationKind.INSTALMENT, plan=plan, donor_id=plan.donor_id,
                    donor_name=plan.donor_name, frequency=paid_under,
                    amount_minor=inv.amount_paid, fee_cover_minor=fee,
                    currency=inv.currency, designation=plan.designation,
                    campaign_id=plan.campaign_id, dedication=plan.dedication,
                    status=DonationStatus.PENDING, stripe_invoice_id=inv.id,
                    gift_aid_declaration_id=plan.gift_aid_declaration_id)
    db.session.add(gift)
    db.session.flush()
    paid_at = _stripe_time(inv.paid_at)
    if inv.amount_paid not in expected or inv.currency != plan.currency:
        _record_paid_at(gift, event, paid_at)
        return _flag(gift, f"Stripe charged {inv.amount_paid} {inv.currency}; the plan is "
                           f"{plan.amount_minor} {plan.currency}", event)
    return _mark_paid(gift, event, paid_at=paid_at)


def _second_subscription_gift(plan: RecurringPlan, inv: InvoiceData,
                              event: PaymentEvent) -> str:
    """Money taken by a plan's second subscription: recorded, and flagged for staff to cancel
    that subscription and refund (the plan itself follows its first subscription only)."""
    gift = db.session.scalar(select(Donation).where(Donation.stripe_invoice_id == inv.id))
    if gift is None:
        gift = Donation(kind=DonationKind.INSTALMENT, plan=plan, donor_id=plan.donor_id,
                        donor_name=plan.donor_name, frequency=plan.frequency.value,
                        amount_minor=inv.amount_paid, fee_cover_minor=0,
                        currency=inv.currency, designation=plan.designation,
                        campaign_id=plan.campaign_id, dedication=plan.dedication,
                        status=DonationStatus.PENDING, stripe_invoice_id=inv.id,
                        paid_at=_stripe_time(inv.paid_at) or event.created)
        db.session.add(gift)
        db.session.flush()
    return _flag(gift, f"second subscription {inv.subscription_id} for one regular gift: "
                       "cancel it in Stripe and refund", event)


def _failure_words(code: str | None) -> str:
    return FAILURE_WORDS.get(code or "", "your bank did not accept the payment")


def _record_invoice_problem(event: PaymentEvent, state: str) -> str:
    inv = _subject(event, InvoiceData)
    plan = _lock_plan(inv.refs.plan, inv.subscription_id)
    if plan is None:
        return "ignored"
    if _other_subscription(plan, inv.subscription_id, event):
        return "flagged"
    _link_subscription(plan, inv.subscription_id, inv.customer_id)
    history = dunning.record_failure(plan.id, inv.id, inv.currency, inv.amount_due,
                                     inv.attempt_count, event.created) \
        if state == "failed" else None  # every failed invoice, even an older one
    if not _newer_invoice(plan, inv, state):
        return "applied"  # an older invoice, or one since paid: nothing to tell the donor
    plan.latest_invoice_id = inv.id
    plan.latest_invoice_created = inv.created
    plan.latest_invoice_state = state
    code = "authentication_required" if state == "action_required" else None
    if code is None:
        try:
            failure = get_gateway().invoice_payment_failure(inv.id)
        except GatewayError:
            failure = None  # the reason is a courtesy; the state change must not wait
        code = failure.code if failure else None
    plan.last_failure_code = (code or "unknown")[:64]
    if history is not None and history.reason_code is None:
        history.reason_code = plan.last_failure_code
    if plan.settle() is PlanStatus.PAST_DUE:
        queue_mail(plan.donor.email, "donations/payment_failed",
                   subject="Your regular gift did not go through",
                   name=plan.payer_name, reason=_failure_words(code),
                   amount=format_money(inv.amount_due, inv.currency),
                   frequency=plan.frequency.value, action_required=state == "action_required",
                   manage_url=manage_url(plan))
    return "applied"


def record_invoice_payment_failed(event: PaymentEvent) -> str:
    return _record_invoice_problem(event, "failed")


def record_invoice_action_required(event: PaymentEvent) -> str:
    return _record_invoice_problem(event, "action_required")


def _plan_of_subscription_event(event: PaymentEvent,
                                ) -> tuple[SubscriptionData, RecurringPlan | None, str | None]:
    """The locked plan a subscription event is about, linked to it; or the outcome to answer
    at once: "ignored" (not ours) or "flagged" (a second subscription of one plan)."""
    sub = _subject(event, SubscriptionData)
    plan = _lock_plan(sub.refs.plan, sub.id)
    if plan is None:
        return sub, None, "ignored"
    if _other_subscription(plan, sub.id, event):
        return sub, None, "flagged"
    _link_subscription(plan, sub.id, sub.customer_id)
    return sub, plan, None


def record_subscription_updated(event: PaymentEvent) -> str:
    sub, plan, outcome = _plan_of_subscription_event(event)
    if plan is None:
        if outcome is None:
            raise RuntimeError("no plan and no outcome")
        return outcome
    if sub.status == "canceled":  # final, whatever its order: the ended mail goes once
        _stripe_ended(plan, event)
    # Stripe's clock only, with the event id as a tiebreak within one second: every order of
    # the same events ends in the same state.
    held = (plan.subscription_synced_at or 0, plan.subscription_synced_event or "")
    if event.created_ts < held[0]:
        return "applied"  # older than what we hold
    if event.created_ts == held[0]:
        # Two updates within one second cannot be ordered by their events (the id is random;
        # a pause and a resume a moment apart could leave the plan paused while Stripe
        # collects): take the subscription as Stripe holds it now, newer than both.
        sub = get_gateway().subscription(sub.id) or sub
    elif sub.paused != plan.paused and not is_sponsorship_plan(plan):
        # Paused or resumed: an event delivered late may say what a later request already
        # undid. Stripe's copy now decides (and whether the donor is told).
        sub = get_gateway().subscription(sub.id) or sub
    plan.subscription_synced_at, synced_event = max(held, (event.created_ts, event.id[:255]))
    plan.subscription_synced_event = synced_event
    was_paused, plan.paused = plan.paused, sub.paused
    if sub.current_period_end:
        plan.current_period_end = datetime.fromtimestamp(sub.current_period_end, UTC)
    if is_sponsorship_plan(plan):
        # A sponsorship's price is fixed: whatever path brought this subscription (the event,
        # or Stripe's own copy read back for two updates in one second), its amount and
        # interval are never adopted. Another price is for staff to look at.
        if (sub.amount and (sub.amount, sub.currency) != (plan.amount_minor, plan.currency)) \
                or (sub.interval and sub.interval != plan.frequency.stripe_interval):
            flag_plan(plan, f"the subscription is {sub.amount} {sub.currency} a "
                            f"{sub.interval}; the sponsorship is {plan.amount_minor} "
                            f"{plan.currency} a {plan.frequency.stripe_interval}", event.type)
        plan.settle()
        return "applied"
    if sub.amount and sub.currency == plan.currency and sub.interval in ("month", "year") \
            and _is_pending_change(plan, sub.amount, _frequency_of(sub.interval).value):
        # The donor's change, applied by Stripe, whose answer we never had (a timeout, or a
        # worker that died before recording it): settled here and confirmed by mail. Only
        # the amount AND interval asked for settle it: a routine update at the old interval
        # leaves a change of interval alone pending.
        settle_plan_change(plan, sub.amount, _frequency_of(sub.interval).value, None)
    elif sub.amount and sub.currency == plan.currency and sub.amount != plan.amount_minor:
        # Changed outside DonorHub (Stripe's dashboard): Stripe is what will be charged.
        record_audit(None, "plan.amount_changed_in_stripe", "plan", plan.id,
                     {"amount_minor": sub.amount})
        plan.amount_minor = sub.amount
        plan.fee_cover_minor = 0
    if sub.interval in ("month", "year"):
        plan.frequency = _frequency_of(sub.interval)
    plan.settle()
    if was_paused != plan.paused and plan.is_live:
        # Paused or resumed at Stripe without our request recording it (a request whose
        # answer never came, or Stripe's dashboard): the donor is told here, once. A request
        # that recorded it holds the row first, so this sees no change and mails nothing.
        _tell_paused_or_resumed(plan)
    return "applied"


def record_subscription_deleted(event: PaymentEvent) -> str:
    _sub, plan, outcome = _plan_of_subscription_event(event)
    if plan is None:
        if outcome is None:
            raise RuntimeError("no plan and no outcome")
        return outcome
    _stripe_ended(plan, event)
    return "applied"


def _stripe_ended(plan: RecurringPlan, event: PaymentEvent) -> None:
    """Stripe ended the subscription (deleted, or an update saying canceled, whichever
    comes first): record it once, and tell the donor once unless they cancelled it."""
    if plan.stripe_ended:
        return
    plan.stripe_ended = True
    plan.ended_at = plan.ended_at or event.created
    if plan.settle() is PlanStatus.ENDED:
        queue_mail(plan.donor.email, "donations/plan_ended",
                   subject="Your regular gift has ended", name=plan.payer_name,
                   amount=format_money(plan.amount_minor, plan.currency),
                   frequency=plan.frequency.value, donate_url=external_url("donations.donate"))


# Donor's own changes to a plan -------------------------------------------------------------

def lock_plan_for_change(plan: RecurringPlan) -> RecurringPlan:
    """Hold the plan's row until the commit and read it afresh, so a second request for the
    same change (a double click) waits for the first and then sees its effect: no second
    Stripe call, no second mail. SQLite has no row locks: a write takes its database lock
    (reads there run outside any transaction, so the fresh read sees the first commit)."""
    if db.session.get_bind().dialect.name == "sqlite":
        db.session.execute(update(RecurringPlan).where(RecurringPlan.id == plan.id)
                           .values(revision=RecurringPlan.revision)
                           .execution_options(synchronize_session=False))
    fresh = db.session.scalar(select(RecurringPlan).where(RecurringPlan.id == plan.id)
                              .with_for_update().execution_options(populate_existing=True))
    if fresh is None:  # the caller's plan row; plan rows are never deleted
        raise RuntimeError("plan row vanished")
    return fresh


def _frequency_of(interval: str) -> Frequency:
    return Frequency.MONTHLY if interval == "month" else Frequency.YEARLY


def check_owner(plan: RecurringPlan, user) -> None:
    donor = donor_for_user(user)
    if donor is None or donor.id != plan.donor_id:
        raise NotPermitted("That regular gift is not yours.")


def is_sponsorship_plan(plan: RecurringPlan) -> bool:
    return plan.designation == SPONSORSHIP_DESIGNATION


def check_donation_plan(plan: RecurringPlan) -> None:
    """A sponsorship's plan has the sponsorship's fixed amount and is run from the
    sponsorship's pages (which free the child's place); no donation route changes it."""
    if is_sponsorship_plan(plan):
        raise DomainError("This regular gift is a child's sponsorship. Its amount is fixed; "
                          "you can stop it or update your card from your sponsorship page.")


def _require_live(plan: RecurringPlan) -> str:
    if not plan.is_live or not plan.stripe_subscription_id:
        raise DomainError("This regular gift is not running, so it cannot be changed.")
    return plan.stripe_subscription_id


def prepare_plan_change(plan: RecurringPlan, amount_minor: int, frequency: str) -> None:
    """Step 1 (committed before Stripe is called): note the amount we are about to ask for,
    so an invoice Stripe raises at once for it is recognised, not flagged, and a change
    Stripe applied without our hearing its answer is settled by its event."""
    check_donation_plan(plan)
    _require_live(plan)
    check_amount(plan.currency, amount_minor, field="amount")
    plan.pending_amount_minor = amount_minor
    plan.pending_frequency = Frequency(frequency).value
    plan.revision += 1


def apply_plan_change(plan: RecurringPlan, amount_minor: int, frequency: str,
                      actor: User | None) -> None:
    """Step 2: ask Stripe, then record what it accepted (unless its event already did)."""
    check_donation_plan(plan)
    sub_id = _require_live(plan)
    key = f"plan-{plan.public_id}-change-{plan.revision}-{amount_minor}-{frequency}"
    interval = Frequency(frequency).stripe_interval
    get_gateway().change_subscription(SubscriptionChange(
        subscription_id=sub_id, idempotency_key=key, amount_minor=amount_minor,
        currency=plan.currency, interval=interval))
    settle_plan_change(lock_plan_for_change(plan), amount_minor, frequency, actor)


def confirm_plan_change(plan: RecurringPlan, amount_minor: int, frequency: str,
                        actor: User | None) -> bool:
    """After an answer from Stripe that leaves the outcome unknown (a timeout, a 5xx, a 409
    for a request still running): ask Stripe for the subscription. True: the change is
    applied, and recorded here. False: not (yet) applied; the amount asked for stays pending,
    so the event of a change Stripe applies later settles it (and mails the donor)."""
    plan = lock_plan_for_change(plan)
    if not plan.stripe_subscription_id:
        return False
    try:
        sub = get_gateway().subscription(plan.stripe_subscription_id)
    except GatewayError:
        return False
    interval = Frequency(frequency).stripe_interval
    if sub is None or (sub.amount, sub.currency, sub.interval) != (
            amount_minor, plan.currency, interval):
        return False
    settle_plan_change(plan, amount_minor, frequency, actor)
    return True


def abandon_plan_change(plan: RecurringPlan) -> None:
    """Stripe refused the change for good: nothing is pending any more."""
    plan = lock_plan_for_change(plan)
    plan.pending_amount_minor = None
    plan.pending_frequency = None


def _is_pending_change(plan: RecurringPlan, amount_minor: int, frequency: str) -> bool:
    """The change the donor asked for and we have not recorded: amount and interval both
    (a change of interval alone keeps the amount)."""
    if plan.pending_amount_minor is None or plan.pending_amount_minor != amount_minor:
        return False
    return plan.pending_frequency is None or plan.pending_frequency == frequency


def settle_plan_change(plan: RecurringPlan, amount_minor: int, frequency: str,
                       actor: User | None) -> bool:
    """Record a change Stripe applied, once: by the request that asked for it, or by the
    subscription's event when that request never heard Stripe's answer. The donor is mailed
    once, by whichever comes first. False if it was already recorded (or another change is
    the one pending)."""
    if not _is_pending_change(plan, amount_minor, frequency):
        return False
    plan.amount_minor = amount_minor
    plan.fee_cover_minor = 0
    plan.frequency = Frequency(frequency)
    plan.pending_amount_minor = None
    plan.pending_frequency = None
    record_audit(actor, "plan.changed", "plan", plan.id, {"amount_minor": amount_minor,
                                                          "frequency": frequency})
    queue_mail(plan.donor.email, "donations/plan_changed", subject="Your regular gift is changed",
               name=plan.payer_name, amount=format_money(amount_minor, plan.currency),
               frequency=frequency, manage_url=manage_url(plan))
    return True


def _state_change_key(plan: RecurringPlan, action: str) -> str:
    """A key of its own for each try at pausing or resuming. Stripe keeps a 5xx under its key
    for 24 hours, and a failed try rolls back the revision, so a key made of the revision
    alone would replay that 5xx to every try for a day. Setting the same state twice does no
    harm, and the plan's row lock already makes a double click act once, so nothing needs
    the same key across tries; the library's own retries within one try keep it."""
    return f"plan-{plan.public_id}-{action}-{plan.revision}-{secrets.token_hex(6)}"


class PlanOutcomeUnknown(GatewayError):
    """A pause, resume or cancel whose answer from Stripe never came (a timeout, a 5xx) and
    which Stripe's copy of the subscription, read back, does not show done (yet). Stripe may
    still act: the subscription's event then records it and tells the donor."""

    def __init__(self, status: int | None = None):
        super().__init__("Our payment provider has not confirmed this yet.", retryable=True,
                         kind="outcome_unknown", status=status)


def _stripe_did(plan: RecurringPlan, action: str, error: GatewayError) -> None:
    """After an unclear answer to a pause, resume or cancel: read the subscription back
    (the plan's row is still held, so its event waits for this answer) and return if Stripe
    did what was asked. A refusal is re-raised (nothing changed); otherwise PlanOutcomeUnknown.
    """
    if not error.retryable:
        raise error
    if plan.stripe_subscription_id is None:  # the change was asked of this subscription
        raise RuntimeError("plan without a subscription")
    try:
        sub = get_gateway().subscription(plan.stripe_subscription_id)
    except GatewayError:
        sub = None
    done = sub is not None and {
        "pause": sub.paused and sub.status != "canceled",
        "resume": not sub.paused and sub.status != "canceled",
        "cancel": sub.status == "canceled",
    }[action]
    if not done:
        raise PlanOutcomeUnknown(error.status) from error
    log.info("plan action confirmed by reading back", extra={"plan_id": plan.id,
                                                              "action": action})


def pause_plan(plan: RecurringPlan, actor: User | None, *, notify: bool = True) -> None:
    """`notify=False`: no mail (a sponsorship paused at a child's exit must not tell the
    sponsor before the delayed neutral notice)."""
    sub_id = _require_live(plan)
    if plan.paused:
        return
    plan.revision += 1
    try:
        get_gateway().pause_subscription(sub_id, _state_change_key(plan, "pause"))
    except GatewayError as error:
        _stripe_did(plan, "pause", error)
    plan.paused = True
    plan.settle()
    record_audit(actor, "plan.paused", "plan", plan.id, {})
    if notify:
        _tell_paused_or_resumed(plan)


def resume_plan(plan: RecurringPlan, actor: User | None, *, notify: bool = True) -> None:
    sub_id = _require_live(plan)
    if not plan.paused:
        return
    plan.revision += 1
    try:
        get_gateway().resume_subscription(sub_id, _state_change_key(plan, "resume"))
    except GatewayError as error:
        _stripe_did(plan, "resume", error)
    plan.paused = False
    plan.settle()
    record_audit(actor, "plan.resumed", "plan", plan.id, {})
    if notify:
        _tell_paused_or_resumed(plan)


def _tell_paused_or_resumed(plan: RecurringPlan) -> None:
    if plan.paused:
        queue_mail(plan.donor.email, "donations/plan_paused",
                   subject="Your regular gift is paused", name=plan.payer_name,
                   amount=format_money(plan.amount_minor, plan.currency),
                   frequency=plan.frequency.value, manage_url=manage_url(plan))
    else:
        queue_mail(plan.donor.email, "donations/plan_resumed",
                   subject="Your regular gift is running again", name=plan.payer_name,
                   amount=format_money(plan.amount_minor, plan.currency),
                   frequency=plan.frequency.value, manage_url=manage_url(plan))


def cancel_plan(plan: RecurringPlan, actor: User | None, *, notify: bool = True) -> None:
    """Stop the plan now. The donor's wish is recorded even if Stripe had already ended it.
    `notify=False`: the caller sends its own mail (a sponsorship that lapsed)."""
    if plan.status in (PlanStatus.CANCELLED, PlanStatus.ENDED):
        return
    # The donor's wish is written (flushed) before Stripe is asked: the write holds the plan's
    # row, so the webhook Stripe sends at once for the cancellation waits for this commit and
    # finds a plan the donor cancelled. Asked first, the webhook saw a plan "ended by Stripe"
    # and the donor got "has ended" on top of "is cancelled". The caller rolls back on error.
    plan.cancelled_at = utcnow()
    db.session.flush()
    gateway = get_gateway()
    try:
        if plan.stripe_subscription_id:
            try:
                gateway.cancel_subscription(plan.stripe_subscription_id,
                                            f"plan-{plan.public_id}-cancel")
            except GatewayError as error:
                _stripe_did(plan, "cancel", error)  # cancelled after all: carry on
        elif plan.stripe_checkout_session_id:
            gateway.expire_checkout(plan.stripe_checkout_session_id)
    except Exception:  # Stripe unreachable, or the checkout was paid meanwhile
        plan.cancelled_at = None  # nothing changed at Stripe: nor here
        raise
    plan.manage_version += 1  # the links already sent stop working
    plan.settle()
    record_audit(actor, "plan.cancelled", "plan", plan.id, {})
    if notify:
        queue_mail(plan.donor.email, "donations/plan_cancelled",
                   subject="Your regular gift is cancelled", name=plan.payer_name,
                   amount=format_money(plan.amount_minor, plan.currency),
                   frequency=plan.frequency.value, donate_url=external_url("donations.donate"))


def card_update_url(plan: RecurringPlan, return_url: str) -> str:
    if not plan.stripe_customer_id:
        raise DomainError("There is no card on file for this regular gift yet.")
    return get_gateway().billing_portal_url(plan.stripe_customer_id, return_url)


# History and statements --------------------------------------------------------------------

def history(donor: Donor) -> dict:
    gifts = db.session.scalars(
        select(Donation).where(Donation.donor_id == donor.id,
                               Donation.status.in_(MONEY_RECEIVED | {DonationStatus.PROCESSING,
                                                                     DonationStatus.NEEDS_REVIEW}))
        .order_by(Donation.paid_at.desc(), Donation.id.desc())).all()
    plans = db.session.scalars(select(RecurringPlan).where(
        RecurringPlan.donor_id == donor.id, RecurringPlan.status != PlanStatus.PENDING)
        .order_by(RecurringPlan.id.desc())).all()
    # A declaration from a checkout that was never paid is nobody's word: not shown.
    declarations = db.session.scalars(select(GiftAidDeclaration).where(
        GiftAidDeclaration.donor_id == donor.id, GiftAidDeclaration.effective_at.is_not(None))
        .order_by(GiftAidDeclaration.id.desc())).all()
    return {"gifts": gifts, "plans": plans, "declarations": declarations}


@dataclass(frozen=True)
class TaxYear:
    region: str
    start: date
    end: date  # inclusive
    zone: str

    @property
    def label(self) -> str:
        return f"{self.start:%-d %B %Y} to {self.end:%-d %B %Y}"


def tax_year(region: str, year: int) -> TaxYear:
    """UK: 6 April to 5 April; India: 1 April to 31 March. `year` is the starting year."""
    if region == "in":
        return TaxYear("in", date(year, 4, 1), date(year + 1, 3, 31), "Asia/Kolkata")
    return TaxYear("uk", date(year, 4, 6), date(year + 1, 4, 5), "Europe/London")


def statement(donor: Donor, period: TaxYear) -> dict:
    zone = ZoneInfo(period.zone)
    start = datetime.combine(period.start, time(0), zone).astimezone(UTC)
    end = datetime.combine(period.end + timedelta(days=1), time(0), zone).astimezone(UTC)
    gifts = db.session.scalars(
        select(Donation).where(Donation.donor_id == donor.id, Donation.paid_at >= start,
                               Donation.paid_at < end,
                               Donation.status.in_(MONEY_RECEIVED))
        .order_by(Donation.paid_at)).all()
    rows: list[dict] = []
    totals: dict[str, int] = {}
    for gift in gifts:
        kept = gift.amount_minor - gift.amount_refunded_minor
        if gift.status is DonationStatus.CHARGED_BACK:
            kept = 0
        if kept <= 0:
            continue
        if gift.paid_at is None:
            raise RuntimeError("paid gift without paid_at")  # selected by its payment time
        rows.append({"gift": gift, "kept": kept,
                     "local_date": gift.paid_at.astimezone(zone).date()})
        totals[gift.currency] = totals.get(gift.currency, 0) + kept
    return {"rows": rows, "totals": totals}


# Gift Aid claims (staff) -------------------------------------------------------------------

@dataclass(frozen=True)
class ClaimPreview:
    rows: list
    problems: list  # (donation id, [problems])

    @property
    def total_minor(self) -> int:
        return sum(r[1] for r in self.rows)


def claimable_gifts(date_from: date, date_to: date) -> Sequence[Donation]:
    """Dates are UK dates (Europe/London), as on HMRC's schedule."""
    start = datetime.combine(date_from, time(0), giftaid.UK).astimezone(UTC)
    end = datetime.combine(date_to + timedelta(days=1), time(0), giftaid.UK).astimezone(UTC)
    return db.session.scalars(
        select(Donation).where(
            Donation.currency == "gbp", Donation.status == DonationStatus.PAID,
            Donation.gift_aid_declaration_id.is_not(None), Donation.gift_aid_claim_id.is_(None),
            Donation.paid_at >= start, Donation.paid_at < end)
        .order_by(Donation.paid_at, Donation.id)).all()


def preview_claim(date_from: date, date_to: date) -> ClaimPreview:
    now = utcnow()
    rows, problems = [], []
    for gift in claimable_gifts(date_from, date_to):
        declaration = gift.gift_aid_declaration
        if gift.paid_at is None:
            raise RuntimeError("claimable gift without paid_at")
        if declaration is None or not declaration.covers(gift, gift.paid_at):
            continue
        row, row_problems = giftaid.build_row(
            donation_id=gift.id, title=declaration.title, first_name=declaration.first_name,
            last_name=declaration.last_name, house=declaration.house,
            postcode=declaration.postcode, paid_at=gift.paid_at,
            # The fee cover is left out until an adviser confirms it qualifies (giving.md 3a).
            amount_minor=gift.gift_minor, now=now)
        if row_problems:
            problems.append((gift.id, row_problems))
        else:
            rows.append((row, gift.gift_minor, gift))
    return ClaimPreview(rows=rows, problems=problems)


def record_claim(preview: ClaimPreview, actor: User | None) -> GiftAidClaim:
    """Mark every valid gift of the preview as claimed, so none is claimed twice.

    Rows with problems are left out (the page lists them and why) and stay claimable once
    fixed. The claim is one conditional UPDATE: a concurrent export that claimed any of these
    gifts first makes this one fail whole, so no gift is ever in two claims."""
    if not preview.rows:
        raise DomainError("There are no gifts to claim in those dates.")
    claim = GiftAidClaim(created_by_id=actor.id if actor else None, rows=len(preview.rows),
                         total_minor=preview.total_minor)
    db.session.add(claim)
    db.session.flush()
    ids = [gift.id for _row, _amount, gift in preview.rows]
    claimed = db.session.execute(
        update(Donation).where(Donation.id.in_(ids), Donation.gift_aid_claim_id.is_(None))
        .values(gift_aid_claim_id=claim.id).execution_options(synchronize_session=False))
    if claimed.rowcount != len(ids):  # type: ignore[attr-defined]  # an UPDATE's CursorResult
        raise DomainError("Another export has just claimed some of these gifts. Check "
                          "again, then export what is left.")
    for _row, _amount, gift in preview.rows:
        db.session.expire(gift, ["gift_aid_claim_id"])
    record_audit(actor, "export.gift_aid", "gift_aid_claim", claim.id,
                 {"rows": len(preview.rows), "total_minor": preview.total_minor,
                  "excluded": len(preview.problems)})
    return claim


def claim_rows(claim_id: int) -> list | None:
    """The rows of an earlier claim, to download its file again (None: no such claim)."""
    if db.session.get(GiftAidClaim, claim_id) is None:
        return None
    gifts = db.session.scalars(select(Donation).where(Donation.gift_aid_claim_id == claim_id)
                               .order_by(Donation.paid_at, Donation.id)).all()
    rows = []
    for gift in gifts:
        declaration = gift.gift_aid_declaration
        # A claimed gift was paid under a declaration (both checked when it was claimed).
        if declaration is None or gift.paid_at is None:
            raise RuntimeError("claimed gift without its declaration or paid_at")
        row, _problems = giftaid.build_row(
            donation_id=gift.id, title=declaration.title, first_name=declaration.first_name,
            last_name=declaration.last_name, house=declaration.house,
            postcode=declaration.postcode, paid_at=gift.paid_at, amount_minor=gift.gift_minor,
            now=gift.paid_at)
        rows.append(row)
    return rows


def recent_claims() -> Sequence[GiftAidClaim]:
    return db.session.scalars(select(GiftAidClaim).order_by(GiftAidClaim.id.desc())
                              .limit(20)).all()


def flagged_gifts() -> Sequence[Donation]:
    return db.session.scalars(select(Donation).where(Donation.status.in_(
        [DonationStatus.NEEDS_REVIEW, DonationStatus.DISPUTED, DonationStatus.CHARGED_BACK]))
        .order_by(Donation.id.desc()).limit(200)).all()
