"""Reading HTML forms through marshmallow schemas, the same way in every view, and the
field types and base schema every feature's forms are built from."""

from __future__ import annotations

import unicodedata
from typing import Any

from flask import request
from marshmallow import RAISE, Schema, ValidationError, fields, validate

EMAIL_FIELD: dict[str, Any] = dict(
    required=True,
    validate=validate.Length(max=254),
    error_messages={
        "required": "Enter your e-mail address.",
        "invalid": "Enter an e-mail address like name@example.com.",
    },
)


def normalise_email(value: str) -> str:
    return value.strip().lower()


class EmailField(fields.Email):
    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            value = value.strip()
        return normalise_email(super()._deserialize(value, attr, data, **kwargs))


class CheckboxField(fields.Boolean):
    truthy = {"on", "1", "true", "yes", "y"}
    falsy = {"off", "0", "false", "no", "n", ""}


class FormSchema(Schema):
    class Meta:
        unknown = RAISE


class EmptySchema(FormSchema):
    """A form with no fields but its CSRF token: a button that posts."""


def load_form(schema: Schema) -> tuple[Any, dict[str, list[str]]]:
    """(data, {}) when the form is valid, or (None, errors by field) when it is not.

    The CSRF token is checked by Flask-WTF before the view runs, so it is not a field here;
    any other field the schema does not name is refused rather than silently ignored.
    """
    form = {key: value for key, value in request.form.items() if key != "csrf_token"}
    try:
        return schema.load(form), {}
    except ValidationError as error:
        return None, flatten_errors(error.messages)


def flatten_errors(messages: Any) -> dict[str, list[str]]:
    if isinstance(messages, list):
        return {"_schema": [str(m) for m in messages]}
    errors: dict[str, list[str]] = {}
    for field, value in messages.items():
        if isinstance(value, dict):
            value = [text for texts in value.values() for text in texts]
        texts = [str(v) for v in value] if isinstance(value, list) else [str(value)]
        errors[field] = [
            t.replace("Unknown field.", "This form does not accept that field.") for t in texts
        ]
    return errors


#: What makes a name into a link in a mail reader. A person's name never contains these.
_LINK_MARKERS = ("http", "www.", "://")
NAME_WITH_LINK = (
    "Enter a name without a web address (a name cannot contain “http”, “www.” or “://”)."
)


def has_link(value: str | None) -> bool:
    # NFKC first: full-width "ｈｔｔｐ" or "：／／" read as a link in a mail reader too.
    folded = unicodedata.normalize("NFKC", value or "").casefold()
    return any(marker in folded for marker in _LINK_MARKERS)


def check_plain_name(value: str) -> None:
    """Refuse a name that carries a link: names go into mail (receipts, invitations), where
    a link would turn a genuine message from the charity into someone's phishing."""
    if has_link(value):
        raise ValidationError(NAME_WITH_LINK)


TEXT_WITH_LINK = (
    "Leave out web addresses: this text goes into mail, so it cannot contain "
    "“http”, “www.” or “://”."
)


def check_no_link(value: str) -> None:
    """Refuse free text that carries a link: a dedication or any other text a visitor types
    that goes into mail to an address they need not own (the receipt goes to whatever
    address a guest typed), where a link would make the charity's genuine mail phishing."""
    if has_link(value):
        raise ValidationError(TEXT_WITH_LINK)


def text_for_mail(value: str | None) -> str | None:
    """Free text for a message: text stored before links were refused is left out."""
    return None if not value or has_link(value) else value


def name_for_mail(value: str | None, fallback: str = "friend") -> str:
    """A name to address someone by in mail: a name stored before links were refused (or
    by any other path) is never put into a message; the greeting falls back instead."""
    return fallback if not value or has_link(value) else value
