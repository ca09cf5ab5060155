"""Campaign and exchange-rate forms. Shape only; uniqueness and moves are checked in services."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from donorhub.forms import FormSchema
from donorhub.money import CURRENCIES, BadAmount, parse_amount

SLUG = validate.Regexp(
    r"^[a-z0-9]+(?:-[a-z0-9]+)*$", error="Use lower-case letters, digits and single hyphens."
)


class OptionalDate(fields.Date):
    def _deserialize(self, value, attr, data, **kwargs):
        if value in ("", None):
            return None
        return super()._deserialize(value, attr, data, **kwargs)


class CampaignSchema(FormSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    slug = fields.String(required=True, validate=[validate.Length(min=1, max=64), SLUG])
    summary = fields.String(required=True, validate=validate.Length(min=1, max=300))
    body_md = fields.String(load_default="", validate=validate.Length(max=20_000))
    goal = fields.String(required=True, validate=validate.Length(min=1, max=20))
    goal_currency = fields.String(required=True, validate=validate.OneOf(CURRENCIES))
    starts_on = fields.Date(required=True)
    ends_on = OptionalDate(load_default=None, allow_none=True)
    appeal_code = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=32),
            validate.Regexp(
                r"^[A-Z0-9][A-Z0-9_-]*$",
                error="Use capital letters, digits, hyphens and underscores.",
            ),
        ],
    )

    @validates_schema
    def dates_in_order(self, data, **kwargs):
        if data.get("ends_on") and data.get("starts_on") and data["ends_on"] < data["starts_on"]:
            raise ValidationError("The end date is before the start date.", "ends_on")

    @post_load
    def amounts(self, data, **kwargs):
        try:
            goal = parse_amount(data.pop("goal"))
        except BadAmount:
            raise ValidationError(
                "Enter the goal as an amount, e.g. 5000 or 5000.00.", "goal"
            ) from None
        if goal <= 0:
            raise ValidationError("The goal must be more than zero.", "goal")
        data["goal_minor"] = goal
        data["name"] = data["name"].strip()
        data["summary"] = data["summary"].strip()
        return data


class RateSchema(FormSchema):
    currency = fields.String(required=True, validate=validate.OneOf(CURRENCIES))
    rate = fields.String(required=True, validate=validate.Length(min=1, max=24))

    @post_load
    def decimal_rate(self, data, **kwargs):
        try:
            rate = Decimal(data["rate"].strip())
        except InvalidOperation:
            raise ValidationError("Enter the rate as a number, e.g. 0.0095.", "rate") from None
        if not rate.is_finite() or rate <= 0 or rate != rate.quantize(Decimal("1e-8")):
            raise ValidationError("A positive rate with at most 8 decimal places.", "rate")
        data["rate"] = rate
        return data
