"""Input schemas for the sponsorship forms. Shape only: rules are checked in services."""

from __future__ import annotations

from marshmallow import fields, validate

from donorhub.forms import CheckboxField, FormSchema
from donorhub.money import CURRENCIES
from donorhub.sponsorship.services import CHOICES, SUSPENSION_REASONS


class ChooseSchema(FormSchema):
    currency = fields.String(
        required=True,
        validate=validate.OneOf(CURRENCIES),
        error_messages={"required": "Choose a currency."},
    )


class ConductSchema(FormSchema):
    version = fields.String(required=True, validate=validate.Length(max=16))
    accept = CheckboxField(load_default=False)
    next = fields.String(load_default="", validate=validate.Length(max=200))


class ChoiceSchema(FormSchema):
    choice = fields.String(
        required=True,
        validate=validate.OneOf(CHOICES),
        error_messages={"required": "Choose one of the three options."},
    )


class SuspendSchema(FormSchema):
    email = fields.String(required=True, validate=validate.Length(min=3, max=254))
    reason = fields.String(required=True, validate=validate.OneOf(SUSPENSION_REASONS))
