"""Input schemas for the staff pages: donors, refunds, offline gifts, data protection, staff
accounts, reports and the audit log's filters (forms refuse unknown fields)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, pre_load, validate

from donorhub.accounts.models import StaffRole
from donorhub.database import uk_today
from donorhub.donations.donors import (
    CONSENT_CHANNELS,
    OFFLINE_METHODS,
    DonorFilters,
    OfflineGiftInput,
)
from donorhub.donations.refunds import REFUND_REASONS
from donorhub.forms import EMAIL_FIELD, CheckboxField, EmailField, FormSchema, check_plain_name
from donorhub.money import CURRENCIES, BadAmount, parse_amount


class OptionalDate(fields.Date):
    def _deserialize(self, value, attr, data, **kwargs):
        if value in ("", None):
            return None
        return super()._deserialize(value, attr, data, **kwargs)


class OptionalInt(fields.Integer):
    def _deserialize(self, value, attr, data, **kwargs):
        if value in ("", None):
            return None
        return super()._deserialize(value, attr, data, **kwargs)


def _amount(text: str, field: str) -> int:
    try:
        value = parse_amount(text)
    except BadAmount:
        raise ValidationError("Enter an amount like 25 or 25.50.", field) from None
    if value <= 0:
        raise ValidationError("The amount must be more than zero.", field)
    return value


class DonorFilterSchema(Schema):
    """Query-string filters of the donor list (links may carry other harmless args)."""

    class Meta:
        unknown = EXCLUDE

    q = fields.String(load_default="", validate=validate.Length(max=100))
    recurring = CheckboxField(load_default=False)
    lapsed = CheckboxField(load_default=False)
    gift_aid = CheckboxField(load_default=False)
    campaign = OptionalInt(load_default=None, allow_none=True)
    first_from = OptionalDate(load_default=None, allow_none=True)
    first_to = OptionalDate(load_default=None, allow_none=True)
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=10_000))

    @post_load
    def build(self, data, **kwargs) -> DonorFilters:
        return DonorFilters(
            q=data["q"].strip(),
            recurring=data["recurring"],
            lapsed=data["lapsed"],
            gift_aid=data["gift_aid"],
            campaign_id=data["campaign"],
            first_from=data["first_from"],
            first_to=data["first_to"],
            page=data["page"],
        )


class NoteSchema(FormSchema):
    body = fields.String(required=True, validate=validate.Length(min=1, max=2000))


class ConsentSchema(FormSchema):
    channel = fields.String(required=True, validate=validate.OneOf(CONSENT_CHANNELS))
    granted = fields.String(required=True, validate=validate.OneOf(("yes", "no")))
    source = fields.String(
        required=True,
        validate=validate.OneOf(("staff_phone", "staff_paper", "staff_email", "web_gift", "event")),
    )


class OfflineGiftSchema(FormSchema):
    donor_id = OptionalInt(load_default=None, allow_none=True)
    email = EmailField(**{**EMAIL_FIELD, "required": False, "load_default": None})
    full_name = fields.String(
        load_default="", validate=[validate.Length(max=200), check_plain_name]
    )
    amount = fields.String(required=True, validate=validate.Length(min=1, max=20))
    currency = fields.String(required=True, validate=validate.OneOf(CURRENCIES))
    method = fields.String(required=True, validate=validate.OneOf(OFFLINE_METHODS))
    reference = fields.String(load_default="", validate=validate.Length(max=64))
    received_on = fields.Date(required=True)
    campaign_id = OptionalInt(load_default=None, allow_none=True)
    send_receipt = CheckboxField(load_default=False)
    entry_key = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{32}$"))

    @post_load
    def build(self, data, **kwargs) -> OfflineGiftInput:
        return OfflineGiftInput(
            donor_id=data["donor_id"],
            email=data["email"],
            full_name=" ".join(data["full_name"].split()) or None,
            amount_minor=_amount(data["amount"], "amount"),
            currency=data["currency"],
            method=data["method"],
            reference=data["reference"].strip() or None,
            received_on=data["received_on"],
            campaign_id=data["campaign_id"],
            send_receipt=data["send_receipt"],
            entry_key=data["entry_key"],
        )


class RefundSchema(FormSchema):
    amount = fields.String(required=True, validate=validate.Length(min=1, max=20))
    reason = fields.String(required=True, validate=validate.OneOf(REFUND_REASONS))
    note = fields.String(load_default="", validate=validate.Length(max=500))
    #: One per rendering of the form: a second submit of it finds the first refund.
    request_token = fields.String(
        required=True,
        validate=validate.Regexp(
            r"^[0-9a-f]{32}$", error="This form is out of date: reload the page and try again."
        ),
    )

    @post_load
    def build(self, data, **kwargs):
        data["amount_minor"] = _amount(data.pop("amount"), "amount")
        data["note"] = data["note"].strip() or None
        return data


class DateRangeSchema(Schema):
    """A report's or export's date range (inclusive), from the query string or a form."""

    class Meta:
        unknown = EXCLUDE

    date_from = OptionalDate(load_default=None, allow_none=True)
    date_to = OptionalDate(load_default=None, allow_none=True)
    period = fields.String(
        load_default="month", validate=validate.OneOf(("month", "quarter", "year"))
    )

    @post_load
    def order(self, data, **kwargs):
        today = uk_today()
        data["date_to"] = data["date_to"] or today
        data["date_from"] = data["date_from"] or date(
            data["date_to"].year - 1, data["date_to"].month, 1
        )
        if data["date_from"] > data["date_to"]:
            raise ValidationError("The start date is after the end date.", "date_from")
        return data


class ExportSchema(FormSchema):
    kind = fields.String(required=True, validate=validate.OneOf(("donations", "donors")))
    date_from = fields.Date(required=True)
    date_to = fields.Date(required=True)
    #: donors: "consented" (marketing e-mail consent only) or "all" (administration only).
    audience = fields.String(
        load_default="consented", validate=validate.OneOf(("consented", "all"))
    )


SAFE_KEY = re.compile(r"^[0-9a-f]{32}$")


# Staff accounts (admins) ------------------------------------------------------------------

#: One checkbox per role, named role_<code>: HTML forms send repeated names, which load_form
#: (one value per name) would cut to the first.
ROLE_FIELDS = {f"role_{role.value}": role for role in StaffRole}


class _RolesMixin:
    @post_load
    def collect_roles(self, data, **kwargs):
        roles = [role for name, role in ROLE_FIELDS.items() if data.pop(name)]
        if not roles:
            raise ValidationError("Choose at least one role.", "roles")
        return {**data, "roles": roles}


class StaffRolesSchema(_RolesMixin, FormSchema):
    role_admin = CheckboxField(load_default=False)
    role_fundraiser = CheckboxField(load_default=False)
    role_safeguarding_officer = CheckboxField(load_default=False)


class StaffInvitationSchema(StaffRolesSchema):
    full_name = fields.String(
        required=True,
        validate=[
            validate.Length(max=200),
            validate.Regexp(r"\S", error="Enter the person's name."),
            check_plain_name,
        ],
        error_messages={"required": "Enter the person's name."},
    )
    email = EmailField(
        **{
            **EMAIL_FIELD,
            "error_messages": {
                "required": "Enter their e-mail address.",
                "invalid": "Enter an e-mail address like name@example.com.",
            },
        }
    )

    @post_load
    def tidy_name(self, data, **kwargs):
        name = " ".join(data["full_name"].split())
        if not name:
            raise ValidationError("Enter the person's name.", "full_name")
        return {**data, "full_name": name}


# The audit log page's filters -----------------------------------------------------------

#: Action prefixes offered as quick filters ("safeguarding views" is what officers check).
ACTION_GROUPS = {
    "": "All",
    "child.": "Safeguarding data viewed",
    "export.": "Exports",
    "donor.": "Donors",
    "donation.": "Gifts and refunds",
    "campaign.": "Campaigns",
    "staff.": "Staff accounts",
    "plan.": "Plans",
    "payment.": "Payments",
    "rate.": "Exchange rates",
}


class AuditFilterSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    actor = fields.Integer(load_default=None, allow_none=True)
    action = fields.String(load_default="", validate=validate.Length(max=64))
    subject_type = fields.String(load_default="", validate=validate.Length(max=32))
    subject_id = fields.Integer(load_default=None, allow_none=True)
    date_from = fields.Date(load_default=None, allow_none=True)
    date_to = fields.Date(load_default=None, allow_none=True)

    @pre_load
    def blanks_and_junk(self, data, **kwargs):
        """Drop empty or unreadable values: a filter page never errors, it just widens."""
        cleaned = {}
        for key in ("actor", "subject_id"):
            value = data.get(key, "")
            if value and str(value).isdigit() and len(str(value)) < 10:
                cleaned[key] = value
        for key in ("date_from", "date_to"):
            value = data.get(key, "")
            try:
                datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)  # a check only
                cleaned[key] = value
            except (TypeError, ValueError):
                pass
        for key in ("action", "subject_type"):
            value = str(data.get(key, ""))[:32]
            if value.replace(".", "").replace("_", "").isalnum():
                cleaned[key] = value
        return cleaned
