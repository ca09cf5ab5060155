"""Input schemas for the giving forms. Shape only: limits and presets are checked in services."""

from __future__ import annotations

from dataclasses import dataclass

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from donorhub.donations.giftaid import normalise_postcode
from donorhub.forms import (
    EMAIL_FIELD,
    CheckboxField,
    EmailField,
    FormSchema,
    check_no_link,
    check_plain_name,
)
from donorhub.money import CURRENCIES, BadAmount, parse_amount

FREQUENCIES = ("once", "monthly", "yearly")


@dataclass(frozen=True)
class GiftAidDetails:
    title: str | None
    first_name: str
    last_name: str
    house: str
    address_line: str | None
    postcode: str


@dataclass(frozen=True)
class NewGift:
    frequency: str
    currency: str
    #: A preset the donor picked (minor units), or None when they typed an amount.
    preset_minor: int | None
    custom_minor: int | None
    cover_fees: bool
    dedication: str | None
    designation: str
    full_name: str
    email: str | None
    gift_aid: GiftAidDetails | None
    #: The slug of the campaign the gift goes to (from the campaign page), or None.
    campaign: str | None = None
    #: The form's one-time token: the same form sent twice starts one gift, not two.
    form_token: str | None = None


class NewGiftSchema(FormSchema):
    frequency = fields.String(
        required=True,
        validate=validate.OneOf(FREQUENCIES, error="Choose once, monthly or yearly."),
        error_messages={"required": "Choose how often to give."},
    )
    currency = fields.String(
        required=True,
        validate=validate.OneOf(CURRENCIES, error="Choose pounds, dollars, euros or rupees."),
        error_messages={"required": "Choose a currency."},
    )
    # ASCII digits only, the whole value (\Z: no trailing newline): no other script's digits.
    amount_choice = fields.String(
        load_default="",
        validate=validate.Regexp(r"\A(?:custom|[0-9]{1,9})?\Z", error="Choose an amount."),
    )
    custom_amount = fields.String(load_default="", validate=validate.Length(max=20))
    form_token = fields.String(
        load_default=None,
        validate=validate.Regexp(
            r"\A[A-Za-z0-9_-]{16,64}\Z",
            error="This form has expired. Please check it and send it again.",
        ),
    )
    cover_fees = CheckboxField(load_default=False)
    dedication = fields.String(
        load_default="",
        validate=[
            validate.Length(max=200, error="Keep the dedication under 200 characters."),
            check_no_link,
        ],
    )
    designation = fields.String(
        load_default="general",
        validate=validate.OneOf(("general",), error="Choose where your gift goes."),
    )
    campaign = fields.String(load_default="", validate=validate.Length(max=64))
    full_name = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=200), check_plain_name],
        error_messages={"required": "Enter your name."},
    )
    email = EmailField(**{**EMAIL_FIELD, "required": False, "load_default": None})
    gift_aid = CheckboxField(load_default=False)
    gift_aid_title = fields.String(
        load_default="",
        validate=validate.Length(
            max=4, error="A title has at most 4 letters (Mr, Mrs, Ms, Dr, Prof)."
        ),
    )
    gift_aid_first_name = fields.String(
        load_default="", validate=[validate.Length(max=35), check_plain_name]
    )
    gift_aid_last_name = fields.String(
        load_default="", validate=[validate.Length(max=35), check_plain_name]
    )
    gift_aid_house = fields.String(load_default="", validate=validate.Length(max=40))
    gift_aid_address = fields.String(load_default="", validate=validate.Length(max=200))
    gift_aid_postcode = fields.String(load_default="", validate=validate.Length(max=10))
    gift_aid_confirm = CheckboxField(load_default=False)

    @validates_schema
    def gift_aid_fields(self, data, **_kwargs):
        if not data.get("gift_aid"):
            return
        errors: dict[str, str] = {}
        if data.get("currency") != "gbp":
            errors["gift_aid"] = "Gift Aid applies only to gifts in pounds from UK taxpayers."
        if not data.get("gift_aid_first_name", "").strip():
            errors["gift_aid_first_name"] = "Enter your first name or initial for Gift Aid."
        if not data.get("gift_aid_last_name", "").strip():
            errors["gift_aid_last_name"] = "Enter your last name for Gift Aid."
        if not data.get("gift_aid_house", "").strip():
            errors["gift_aid_house"] = "Enter your house name or number."
        if normalise_postcode(data.get("gift_aid_postcode", "")) is None:
            errors["gift_aid_postcode"] = "Enter a UK postcode, like SW1A 1AA."
        if not data.get("gift_aid_confirm"):
            errors["gift_aid_confirm"] = (
                "Confirm that you are a UK taxpayer and understand the declaration."
            )
        if errors:
            raise ValidationError(errors)

    @post_load
    def build(self, data, **_kwargs) -> NewGift:
        preset, custom = _chosen_amount(data["amount_choice"], data["custom_amount"])
        name = " ".join(data["full_name"].split())
        if not name:
            raise ValidationError("Enter your name.", "full_name")
        gift_aid = None
        if data["gift_aid"]:
            gift_aid = GiftAidDetails(
                title=data["gift_aid_title"].strip() or None,
                first_name=" ".join(data["gift_aid_first_name"].split()),
                last_name=" ".join(data["gift_aid_last_name"].split()),
                house=" ".join(data["gift_aid_house"].split()),
                address_line=" ".join(data["gift_aid_address"].split()) or None,
                postcode=normalise_postcode(data["gift_aid_postcode"]) or "",
            )
        return NewGift(
            frequency=data["frequency"],
            currency=data["currency"],
            preset_minor=preset,
            custom_minor=custom,
            cover_fees=data["cover_fees"],
            dedication=" ".join(data["dedication"].split()) or None,
            designation=data["designation"],
            full_name=name,
            email=data["email"],
            gift_aid=gift_aid,
            campaign=data["campaign"].strip() or None,
            form_token=data["form_token"],
        )


def _chosen_amount(choice: str, typed: str) -> tuple[int | None, int | None]:
    """(preset, typed amount): exactly one is set.

    An amount the donor typed is what they mean, whichever radio button is still ticked
    (typing £40 and leaving the preset £25 ticked means £40). A typed text we cannot read is
    asked about again, never replaced by a preset; nothing typed means the ticked preset.
    """
    typed = typed.strip(" ")
    if typed:
        try:
            return None, parse_amount(typed)
        except BadAmount:
            raise ValidationError(
                "Enter an amount like 25 or 25.50 in “Your amount”, or "
                "clear it to give the amount ticked above.",
                "custom_amount",
            ) from None
    if choice == "custom":
        raise ValidationError("Enter your amount, like 25 or 25.50.", "custom_amount")
    if not choice:
        raise ValidationError("Choose an amount, or enter your own.", "amount_choice")
    return int(choice), None


@dataclass(frozen=True)
class PlanChange:
    amount_minor: int
    frequency: str


class PlanChangeSchema(FormSchema):
    amount = fields.String(
        required=True,
        validate=validate.Length(max=20),
        error_messages={"required": "Enter an amount."},
    )
    frequency = fields.String(
        required=True,
        validate=validate.OneOf(("monthly", "yearly"), error="Choose monthly or yearly."),
    )

    @post_load
    def build(self, data, **_kwargs) -> PlanChange:
        try:
            amount = parse_amount(data["amount"])
        except BadAmount:
            raise ValidationError("Enter an amount like 25 or 25.50.", "amount") from None
        return PlanChange(amount_minor=amount, frequency=data["frequency"])


class GiftAidExportSchema(FormSchema):
    date_from = fields.Date(
        required=True,
        error_messages={
            "required": "Enter the first date.",
            "invalid": "Enter a date like 2026-04-06.",
        },
    )
    date_to = fields.Date(
        required=True,
        error_messages={
            "required": "Enter the last date.",
            "invalid": "Enter a date like 2027-04-05.",
        },
    )

    @validates_schema
    def ordered(self, data, **_kwargs):
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise ValidationError("The last date must not be before the first.", "date_to")
