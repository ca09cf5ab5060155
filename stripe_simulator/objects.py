"""Builders for the Stripe objects that the simulator returns.

Every builder deep-copies Stripe's own example object (``fixtures.json``, trimmed from
Stripe's OpenAPI fixtures) and overwrites fields, so the key set of what we return is the
key set Stripe returns today. ``_set`` refuses a key that the fixture does not have: a typo
or an out-of-date field name fails loudly here instead of teaching the gateway a field that
real Stripe never sends.
"""

from __future__ import annotations

import copy
import json
import secrets
import string
import time
from functools import cache
from pathlib import Path
from typing import Any

# The API version that stripe-python 16.1 pins; events carry it like Stripe's do.
API_VERSION = "2026-10-28.endive"

FIXTURES_PATH = Path(__file__).with_name("fixtures.json")

# Stripe's minimum charge per currency, in minor units (subset that DonorHub may use).
MINIMUM_CHARGE = {"gbp": 30, "usd": 50, "eur": 50, "inr": 50, "cad": 50, "aud": 50}

_ALPHABET = string.ascii_letters + string.digits

Obj = dict[str, Any]


@cache
def _fixtures() -> dict[str, Obj]:
    with FIXTURES_PATH.open(encoding="utf-8") as f:
        return json.load(f)["resources"]


def fixture_names() -> list[str]:
    return sorted(_fixtures())


def template(name: str) -> Obj:
    """A fresh deep copy of Stripe's example object called ``name``."""
    return copy.deepcopy(_fixtures()[name])


def now() -> int:
    return int(time.time())


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _set(obj: Obj, **fields: Any) -> Obj:
    unknown = sorted(set(fields) - set(obj))
    if unknown:
        raise KeyError(f"{obj.get('object')} has no field(s) {unknown} in Stripe's fixture")
    obj.update(fields)
    return obj


def format_amount(amount: int, currency: str) -> str:
    """'£25.00' style text for pages and error messages (all our currencies have 2 decimals)."""
    symbol = {"gbp": "£", "usd": "$", "eur": "€", "inr": "₹"}.get(currency, "")
    text = f"{symbol}{amount / 100:,.2f}"
    return text if symbol else f"{text} {currency.upper()}"


# --- catalogue ---------------------------------------------------------------------------


def product(*, name: str, description: str | None, metadata: dict, created: int) -> Obj:
    return _set(
        template("product"),
        id=new_id("prod_", 14),
        active=True,
        created=created,
        updated=created,
        default_price=None,
        description=description,
        images=[],
        livemode=False,
        marketing_features=[],
        metadata=metadata,
        name=name,
        package_dimensions=None,
        shippable=None,
        statement_descriptor=None,
        tax_code=None,
        unit_label=None,
        url=None,
        type="service",
    )


def price(
    *,
    product_id: str,
    currency: str,
    unit_amount: int,
    interval: str | None,
    interval_count: int,
    created: int,
) -> Obj:
    recurring = None
    if interval:
        recurring = {
            "interval": interval,
            "interval_count": interval_count,
            "meter": None,
            "usage_type": "licensed",
            "trial_period_days": None,
        }
    return _set(
        template("price"),
        id=new_id("price_"),
        active=True,
        billing_scheme="per_unit",
        created=created,
        currency=currency,
        custom_unit_amount=None,
        livemode=False,
        lookup_key=None,
        metadata={},
        nickname=None,
        product=product_id,
        recurring=recurring,
        tax_behavior="unspecified",
        tiers_mode=None,
        transform_quantity=None,
        type="recurring" if interval else "one_time",
        unit_amount=unit_amount,
        unit_amount_decimal=str(unit_amount),
    )


def plan_from_price(price_obj: Obj) -> Obj:
    """Subscription items still carry the legacy ``plan`` twin of their price."""
    recurring = price_obj["recurring"]
    return _set(
        template("plan"),
        id=price_obj["id"],
        active=price_obj["active"],
        amount=price_obj["unit_amount"],
        amount_decimal=price_obj["unit_amount_decimal"],
        billing_scheme="per_unit",
        created=price_obj["created"],
        currency=price_obj["currency"],
        interval=recurring["interval"],
        interval_count=recurring["interval_count"],
        livemode=False,
        metadata={},
        meter=None,
        nickname=None,
        product=price_obj["product"],
        tiers_mode=None,
        transform_usage=None,
        trial_period_days=None,
        usage_type="licensed",
    )


def checkout_line_item(*, price_obj: Obj, product_name: str, quantity: int) -> Obj:
    amount = price_obj["unit_amount"] * quantity
    return _set(
        template("item"),
        id=new_id("li_"),
        amount_discount=0,
        amount_subtotal=amount,
        amount_tax=0,
        amount_total=amount,
        currency=price_obj["currency"],
        description=product_name,
        price=copy.deepcopy(price_obj),
        quantity=quantity,
        metadata={},
        adjustable_quantity=None,
    )


# --- customers ---------------------------------------------------------------------------


def customer(*, email: str | None, name: str | None, metadata: dict, created: int) -> Obj:
    return _set(
        template("customer"),
        id=new_id("cus_", 14),
        address=None,
        balance=0,
        created=created,
        currency=None,
        default_source=None,
        delinquent=False,
        description=None,
        discount=None,
        email=email,
        invoice_prefix=secrets.token_hex(4).upper(),
        invoice_settings={
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        livemode=False,
        metadata=metadata,
        name=name,
        next_invoice_sequence=1,
        phone=None,
        preferred_locales=[],
        shipping=None,
        tax_exempt="none",
        test_clock=None,
    )


def deleted_customer(customer_id: str) -> Obj:
    return _set(template("deleted_customer"), id=customer_id, deleted=True)


def customer_details(*, email: str | None, name: str | None) -> Obj:
    """The ``customer_details`` block of a completed Checkout Session."""
    details = template("checkout.session")["customer_details"]
    address = dict.fromkeys(details["address"])
    return _set(
        details,
        address=address,
        email=email,
        name=name,
        phone=None,
        tax_exempt="none",
        tax_ids=[],
        business_name=None,
        individual_name=None,
    )


# --- checkout ----------------------------------------------------------------------------


def checkout_session(
    *,
    mode: str,
    currency: str,
    amount_total: int,
    success_url: str,
    cancel_url: str | None,
    customer_id: str | None,
    customer_email: str | None,
    customer_creation: str | None,
    client_reference_id: str | None,
    metadata: dict,
    submit_type: str | None,
    locale: str | None,
    expires_at: int,
    created: int,
) -> Obj:
    invoice_creation = None
    if mode == "payment":
        invoice_creation = {
            "enabled": False,
            "invoice_data": {
                "account_tax_ids": None,
                "custom_fields": None,
                "description": None,
                "footer": None,
                "issuer": None,
                "metadata": {},
                "rendering_options": None,
            },
        }
    return _set(
        template("checkout.session"),
        id=new_id("cs_test_", 58),
        after_expiration=None,
        allow_promotion_codes=None,
        amount_subtotal=amount_total,
        amount_total=amount_total,
        automatic_tax={"enabled": False, "liability": None, "status": None, "provider": None},
        billing_address_collection=None,
        cancel_url=cancel_url,
        client_reference_id=client_reference_id,
        client_secret=None,
        consent=None,
        consent_collection=None,
        created=created,
        currency=currency,
        custom_fields=[],
        custom_text={
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        customer=customer_id,
        customer_creation=customer_creation,
        customer_details=None,
        customer_email=customer_email,
        expires_at=expires_at,
        invoice=None,
        invoice_creation=invoice_creation,
        livemode=False,
        locale=locale,
        metadata=metadata,
        mode=mode,
        # Since API 2022-08-01 the PaymentIntent exists only once the payer confirms.
        payment_intent=None,
        payment_link=None,
        payment_method_collection="always" if mode == "subscription" else None,
        payment_method_configuration_details=None,
        payment_method_options={},
        payment_method_types=["card"],
        payment_status="unpaid",
        phone_number_collection={"enabled": False},
        recovered_from=None,
        saved_payment_method_options=None,
        setup_intent=None,
        shipping_address_collection=None,
        shipping_cost=None,
        shipping_options=[],
        status="open",
        submit_type=submit_type,
        subscription=None,
        success_url=success_url,
        total_details={"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        ui_mode="hosted",
        url=None,  # set by the caller, who knows the simulator's address
        adaptive_pricing={"enabled": False},
        discounts=[],
        collected_information=None,
        permissions=None,
        wallet_options=None,
        origin_context=None,
        currency_conversion=None,
        customer_account=None,
        integration_identifier=None,
        managed_payments=None,
    )


# --- payments ----------------------------------------------------------------------------


def payment_intent(
    *,
    amount: int,
    currency: str,
    customer_id: str | None,
    description: str | None,
    metadata: dict,
    receipt_email: str | None,
    created: int,
) -> Obj:
    pi_id = new_id("pi_")
    return _set(
        template("payment_intent"),
        id=pi_id,
        amount=amount,
        amount_capturable=0,
        amount_details={"tip": {}},
        amount_received=0,
        application=None,
        application_fee_amount=None,
        automatic_payment_methods=None,
        canceled_at=None,
        cancellation_reason=None,
        capture_method="automatic_async",
        client_secret=f"{pi_id}_secret_{new_id('', 25)}",
        confirmation_method="automatic",
        created=created,
        currency=currency,
        customer=customer_id,
        description=description,
        last_payment_error=None,
        latest_charge=None,
        livemode=False,
        metadata=metadata,
        next_action=None,
        on_behalf_of=None,
        payment_method=None,
        payment_method_configuration_details=None,
        payment_method_options={},
        payment_method_types=["card"],
        processing=None,
        receipt_email=receipt_email,
        review=None,
        setup_future_usage=None,
        shipping=None,
        statement_descriptor=None,
        statement_descriptor_suffix=None,
        status="requires_payment_method",
        transfer_data=None,
        transfer_group=None,
        source=None,
        excluded_payment_method_types=None,
        customer_account=None,
        managed_payments=None,
    )


def charge(
    *,
    payment_intent_obj: Obj,
    card: dict,
    billing_email: str | None,
    billing_name: str | None,
    succeeded: bool,
    failure: dict | None,
    three_d_secure: bool,
    receipt_url: str,
    created: int,
) -> Obj:
    """A card charge; ``failure`` is a decline from ``decline()`` when ``succeeded`` is false."""
    if succeeded:
        failure = None
    elif failure is None:
        raise ValueError("a declined charge needs its decline (objects.decline())")
    obj = template("charge")
    billing = obj["billing_details"]
    billing.update(
        address=dict.fromkeys(billing["address"]),
        email=billing_email,
        name=billing_name,
        phone=None,
        tax_id=None,
    )
    details = obj["payment_method_details"]
    card_details = details["card"]
    card_details.update(
        amount_authorized=payment_intent_obj["amount"] if succeeded else None,
        brand=card["brand"],
        checks={
            "address_line1_check": None,
            "address_postal_code_check": None,
            "cvc_check": "pass",
        },
        country="GB",
        exp_month=12,
        exp_year=2034,
        extended_authorization={"status": "disabled"},
        fingerprint=card["fingerprint"],
        funding="credit",
        incremental_authorization={"status": "unavailable"},
        installments=None,
        last4=card["last4"],
        mandate=None,
        multicapture={"status": "unavailable"},
        network=card["brand"],
        network_token={"used": False},
        overcapture={
            "maximum_amount_capturable": payment_intent_obj["amount"],
            "status": "unavailable",
        },
        three_d_secure=(
            {
                "authentication_flow": "challenge",
                "electronic_commerce_indicator": "05",
                "exemption_indicator": None,
                "result": "authenticated",
                "result_reason": None,
                "transaction_id": new_id("", 32),
                "version": "2.2.0",
            }
            if three_d_secure
            else None
        ),
        wallet=None,
        authorization_code=new_id("", 6) if succeeded else None,
        regulated_status="unregulated",
        network_transaction_id=new_id("", 15),
        transaction_link_id=None,
    )
    details["type"] = "card"
    charge_id = new_id("ch_")
    amount = payment_intent_obj["amount"]
    if failure is None:
        outcome = {
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "approved_by_network",
            "reason": None,
            "seller_message": "Payment complete.",
            "type": "authorized",
        }
    else:
        outcome = {
            "advice_code": failure.get("advice_code"),
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "declined_by_network",
            "reason": failure["decline_code"],
            "seller_message": "The bank did not return any further details with this decline.",
            "type": "issuer_declined",
        }
    # Stripe's fixture still lists `refunds`, but since API version 2022-11-15 a Charge
    # carries it only when expanded (expand=["refunds"]; the simulator builds it then).
    obj.pop("refunds", None)
    return _set(
        obj,
        id=charge_id,
        amount=amount,
        amount_captured=amount if succeeded else 0,
        amount_refunded=0,
        application=None,
        application_fee=None,
        application_fee_amount=None,
        balance_transaction=new_id("txn_") if succeeded else None,
        calculated_statement_descriptor="DONORHUB TEST",
        captured=succeeded,
        created=created,
        currency=payment_intent_obj["currency"],
        customer=payment_intent_obj["customer"],
        description=payment_intent_obj["description"],
        disputed=False,
        failure_balance_transaction=None,
        failure_code=None if failure is None else failure["code"],
        failure_message=None if failure is None else failure["message"],
        fraud_details={},
        livemode=False,
        # A PaymentIntent's metadata is copied to the charges it creates.
        metadata=copy.deepcopy(payment_intent_obj["metadata"]),
        on_behalf_of=None,
        outcome=outcome,
        paid=succeeded,
        payment_intent=payment_intent_obj["id"],
        payment_method=card["payment_method"],
        receipt_email=payment_intent_obj["receipt_email"],
        receipt_number=None,
        receipt_url=receipt_url,
        refunded=False,
        review=None,
        shipping=None,
        source_transfer=None,
        statement_descriptor=None,
        statement_descriptor_suffix=None,
        status="succeeded" if succeeded else "failed",
        transfer_data=None,
        transfer_group=None,
        source=None,
    )


def decline(decline_code: str) -> dict:
    """Stripe's wording for the card declines that the simulator can produce."""
    messages = {
        "generic_decline": "Your card was declined.",
        "insufficient_funds": "Your card has insufficient funds.",
        "authentication_required": (
            "We are unable to authenticate your payment method. Please choose a different "
            "payment method and try again."
        ),
    }
    code = (
        "payment_intent_authentication_failure"
        if decline_code == "authentication_required"
        else "card_declined"
    )
    return {"code": code, "decline_code": decline_code, "message": messages[decline_code]}


def last_payment_error(failure: dict, *, charge_id: str | None, payment_method_id: str) -> Obj:
    return {
        "type": "card_error",
        "code": failure["code"],
        "decline_code": failure["decline_code"],
        "message": failure["message"],
        "charge": charge_id,
        "doc_url": f"https://docs.stripe.com/error-codes/{failure['code'].replace('_', '-')}",
        "payment_method": {"id": payment_method_id, "object": "payment_method", "type": "card"},
    }


def refund(
    *, charge_obj: Obj, amount: int, reason: str | None, metadata: dict, created: int
) -> Obj:
    return _set(
        template("refund"),
        id=new_id("re_"),
        amount=amount,
        balance_transaction=new_id("txn_"),
        charge=charge_obj["id"],
        created=created,
        currency=charge_obj["currency"],
        destination_details={"card": {"type": "refund"}, "type": "card"},
        metadata=metadata,
        payment_intent=charge_obj["payment_intent"],
        reason=reason,
        receipt_number=None,
        source_transfer_reversal=None,
        status="succeeded",
        transfer_reversal=None,
        customer=charge_obj["customer"],
        customer_account=None,
        payment_method=charge_obj["payment_method"],
    )


def dispute(*, charge_obj: Obj, amount: int, reason: str, created: int) -> Obj:
    obj = template("dispute")
    evidence = dict.fromkeys(obj["evidence"])
    evidence["enhanced_evidence"] = {}
    card = charge_obj["payment_method_details"]["card"]
    return _set(
        obj,
        id=new_id("dp_"),
        amount=amount,
        balance_transactions=[],
        charge=charge_obj["id"],
        created=created,
        currency=charge_obj["currency"],
        evidence=evidence,
        evidence_details={
            "due_by": created + 7 * 86400,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
            "enhanced_eligibility": {},
        },
        is_charge_refundable=False,
        livemode=False,
        metadata={},
        payment_intent=charge_obj["payment_intent"],
        payment_method_details={
            "card": {
                "brand": card["brand"],
                "case_type": "chargeback",
                "network_reason_code": "10.4",
                "network": card["network"],
            },
            "type": "card",
        },
        reason=reason,
        status="needs_response",
        enhanced_eligibility_types=[],
    )


# --- billing -----------------------------------------------------------------------------


def subscription_item(
    *,
    subscription_id: str,
    price_obj: Obj,
    quantity: int,
    period: tuple[int, int],
    created: int,
) -> Obj:
    return _set(
        template("subscription_item"),
        id=new_id("si_", 14),
        created=created,
        discounts=[],
        metadata={},
        price=copy.deepcopy(price_obj),
        quantity=quantity,
        subscription=subscription_id,
        tax_rates=[],
        plan=plan_from_price(price_obj),
        current_period_start=period[0],
        current_period_end=period[1],
        billing_thresholds=None,
    )


def subscription(
    *,
    customer_id: str,
    price_obj: Obj,
    quantity: int,
    metadata: dict,
    description: str | None,
    period: tuple[int, int],
    created: int,
) -> Obj:
    sub_id = new_id("sub_")
    item = subscription_item(
        subscription_id=sub_id,
        price_obj=price_obj,
        quantity=quantity,
        period=period,
        created=created,
    )
    return _set(
        template("subscription"),
        id=sub_id,
        application=None,
        application_fee_percent=None,
        automatic_tax={"enabled": False, "liability": None, "disabled_reason": None},
        billing_cycle_anchor=period[0],
        billing_cycle_anchor_config=None,
        cancel_at=None,
        canceled_at=None,
        cancellation_details={"comment": None, "feedback": None, "reason": None},
        collection_method="charge_automatically",
        created=created,
        currency=price_obj["currency"],
        customer=customer_id,
        days_until_due=None,
        default_payment_method=None,
        default_source=None,
        default_tax_rates=[],
        description=description,
        discounts=[],
        ended_at=None,
        invoice_settings={
            "account_tax_ids": None,
            "issuer": {"type": "self"},
            "custom_fields": None,
            "description": None,
            "footer": None,
        },
        items={
            "data": [item],
            "has_more": False,
            "object": "list",
            "url": f"/v1/subscription_items?subscription={sub_id}",
        },
        latest_invoice=None,
        livemode=False,
        metadata=metadata,
        next_pending_invoice_item_invoice=None,
        on_behalf_of=None,
        pause_collection=None,
        payment_settings={
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        pending_invoice_item_interval=None,
        pending_setup_intent=None,
        pending_update=None,
        schedule=None,
        start_date=created,
        status="active",
        test_clock=None,
        transfer_data=None,
        trial_end=None,
        trial_settings={"end_behavior": {"missing_payment_method": "create_invoice"}},
        trial_start=None,
        cancel_at_period_end=False,
        billing_thresholds=None,
        billing_mode={"type": "classic", "flexible": None},
        customer_account=None,
        managed_payments=None,
        billing_schedules=[],
    )


def invoice_line(
    *, invoice_id: str, sub: Obj, item: Obj, period: tuple[int, int], description: str
) -> Obj:
    line = template("invoice")["lines"]["data"][0]
    price_obj = item["price"]
    amount = price_obj["unit_amount"] * item["quantity"]
    return _set(
        line,
        id=new_id("il_"),
        amount=amount,
        currency=price_obj["currency"],
        description=description,
        discount_amounts=[],
        discountable=True,
        discounts=[],
        invoice=invoice_id,
        livemode=False,
        # Stripe copies the subscription's metadata onto its invoice lines.
        metadata=copy.deepcopy(sub["metadata"]),
        period={"start": period[0], "end": period[1]},
        quantity=item["quantity"],
        subscription=sub["id"],
        pretax_credit_amounts=[],
        taxes=[],
        parent={
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": sub["id"],
                "subscription_item": item["id"],
            },
            "type": "subscription_item_details",
        },
        pricing={"type": "price_details", "unit_amount_decimal": price_obj["unit_amount_decimal"]},
        subtotal=amount,
        quantity_decimal=str(item["quantity"]),
    )


def invoice(
    *,
    sub: Obj,
    customer_obj: Obj,
    billing_reason: str,
    line_period: tuple[int, int],
    invoice_period: tuple[int, int],
    line_description: str,
    hosted_url_base: str,
    created: int,
) -> Obj:
    """A finalized-but-unpaid subscription invoice; the caller records the payment outcome."""
    invoice_id = new_id("in_")
    item = sub["items"]["data"][0]
    line = invoice_line(
        invoice_id=invoice_id, sub=sub, item=item, period=line_period, description=line_description
    )
    total = line["amount"]
    number = f"{customer_obj['invoice_prefix']}-{customer_obj['next_invoice_sequence']:04d}"
    obj = template("invoice")
    payment_settings = {
        "default_mandate": None,
        "payment_method_options": None,
        "payment_method_types": None,
    }
    return _set(
        obj,
        id=invoice_id,
        account_country="GB",
        account_name="DonorHub (simulated Stripe account)",
        account_tax_ids=None,
        amount_due=total,
        amount_paid=0,
        amount_remaining=total,
        amount_shipping=0,
        application=None,
        attempt_count=0,
        attempted=False,
        auto_advance=True,
        automatic_tax={
            "enabled": False,
            "liability": None,
            "status": None,
            "disabled_reason": None,
            "provider": None,
        },
        billing_reason=billing_reason,
        collection_method="charge_automatically",
        created=created,
        currency=sub["currency"],
        custom_fields=None,
        customer=customer_obj["id"],
        customer_address=None,
        customer_email=customer_obj["email"],
        customer_name=customer_obj["name"],
        customer_phone=None,
        customer_shipping=None,
        customer_tax_exempt="none",
        customer_tax_ids=[],
        default_payment_method=None,
        default_source=None,
        default_tax_rates=[],
        description=None,
        discounts=[],
        due_date=None,
        effective_at=created,
        ending_balance=0,
        footer=None,
        from_invoice=None,
        hosted_invoice_url=f"{hosted_url_base}/invoices/{invoice_id}",
        invoice_pdf=None,
        issuer={"type": "self"},
        last_finalization_error=None,
        latest_revision=None,
        lines={
            "data": [line],
            "has_more": False,
            "object": "list",
            "url": f"/v1/invoices/{invoice_id}/lines",
        },
        livemode=False,
        metadata={},
        next_payment_attempt=None,
        number=number,
        on_behalf_of=None,
        payment_settings=payment_settings,
        period_end=invoice_period[1],
        period_start=invoice_period[0],
        post_payment_credit_notes_amount=0,
        pre_payment_credit_notes_amount=0,
        receipt_number=None,
        rendering=None,
        shipping_cost=None,
        shipping_details=None,
        starting_balance=0,
        statement_descriptor=None,
        status="open",
        status_transitions={
            "finalized_at": created,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        # The fixture still lists the legacy top-level field; the current API leaves it null
        # and links the subscription through ``parent.subscription_details``.
        subscription=None,
        subtotal=total,
        subtotal_excluding_tax=total,
        test_clock=None,
        total=total,
        total_discount_amounts=[],
        total_excluding_tax=total,
        webhooks_delivered_at=created,
        automatically_finalizes_at=None,
        total_pretax_credit_amounts=[],
        total_taxes=[],
        amount_overpaid=0,
        parent={
            "quote_details": None,
            "subscription_details": {
                "metadata": copy.deepcopy(sub["metadata"]),
                "subscription": sub["id"],
            },
            "type": "subscription_details",
        },
        customer_account=None,
    )


def invoice_payment(*, invoice_obj: Obj, payment_intent_id: str, created: int) -> Obj:
    obj = template("invoice_payment")
    return _set(
        obj,
        id=new_id("inpay_"),
        amount_paid=None,
        amount_requested=invoice_obj["amount_due"],
        created=created,
        currency=invoice_obj["currency"],
        invoice=invoice_obj["id"],
        is_default=True,
        livemode=False,
        # The fixture lists only the required ``type``; Stripe also names the payment.
        payment={"type": "payment_intent", "payment_intent": payment_intent_id},
        status="open",
        status_transitions={"canceled_at": None, "paid_at": None},
    )


def billing_portal_session(*, customer_id: str, return_url: str | None, created: int) -> Obj:
    return _set(
        template("billing_portal.session"),
        id=new_id("bps_"),
        configuration="bpc_simulator_default",
        created=created,
        customer=customer_id,
        flow=None,
        livemode=False,
        locale=None,
        on_behalf_of=None,
        return_url=return_url,
        url=None,  # set by the caller, who knows the simulator's address
        customer_account=None,
    )


# --- events ------------------------------------------------------------------------------


def event(
    *,
    type: str,
    obj: Obj,
    created: int,
    request_id: str | None,
    idempotency_key: str | None,
    previous_attributes: dict | None,
    pending_webhooks: int,
) -> Obj:
    data: Obj = {"object": copy.deepcopy(obj)}
    if previous_attributes is not None:
        # Stripe adds this only to *.updated events: the old values of changed fields.
        data["previous_attributes"] = copy.deepcopy(previous_attributes)
    return _set(
        template("event"),
        id=new_id("evt_"),
        api_version=API_VERSION,
        created=created,
        data=data,
        livemode=False,
        pending_webhooks=pending_webhooks,
        request={"id": request_id, "idempotency_key": idempotency_key},
        type=type,
    )
