"""Input schemas for the account forms. Shape only: services check what needs the database."""

from __future__ import annotations

import re
from dataclasses import dataclass

from marshmallow import (
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from donorhub.accounts.codes import normalise_recovery_code
from donorhub.forms import (
    EMAIL_FIELD,
    CheckboxField,
    EmailField,
    FormSchema,
    check_plain_name,
)


class PasswordField(fields.String):
    """Taken exactly as typed: no trimming, no case folding."""

    def __init__(self, **kwargs):
        kwargs.setdefault("validate", validate.Length(min=1, max=1024))
        kwargs.setdefault("error_messages", {"required": "Enter a password."})
        super().__init__(required=True, **kwargs)


class ConfirmedPassword:
    """A new password typed twice: the two must be the same."""

    password = PasswordField()
    password_confirm = PasswordField()

    @validates_schema
    def passwords_match(self, data, **_kwargs):
        if data.get("password") != data.get("password_confirm"):
            raise ValidationError("The two passwords are not the same.", "password_confirm")


@dataclass(frozen=True)
class Registration:
    email: str
    full_name: str
    password: str


class RegisterSchema(ConfirmedPassword, FormSchema):
    full_name = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=200), check_plain_name],
        error_messages={"required": "Enter your name."},
    )
    email = EmailField(**EMAIL_FIELD)

    @post_load
    def build(self, data, **_kwargs) -> Registration:
        name = " ".join(data["full_name"].split())
        if not name:
            raise ValidationError("Enter your name.", "full_name")
        return Registration(email=data["email"], full_name=name, password=data["password"])


class SignInSchema(FormSchema):
    email = EmailField(**EMAIL_FIELD)
    password = PasswordField()
    remember = CheckboxField(load_default=False)


class EmailOnlySchema(FormSchema):
    email = EmailField(**EMAIL_FIELD)


class NewPasswordSchema(ConfirmedPassword, FormSchema):
    """A new password, typed twice."""


class ChangePasswordSchema(NewPasswordSchema):
    current_password = PasswordField()


class ChangeEmailSchema(FormSchema):
    email = EmailField(**EMAIL_FIELD)
    current_password = PasswordField()


CODE_MESSAGE = "Enter the 6-digit code from your authenticator app, or one of your recovery codes."


def _second_factor_code(value: str) -> None:
    if len(value) > 32 or (
        re.fullmatch(r"\s*[0-9]{3}\s?[0-9]{3}\s*", value) is None
        and normalise_recovery_code(value) is None
    ):
        raise ValidationError(CODE_MESSAGE)


class TotpSchema(FormSchema):
    """The second step of a staff sign-in: an authenticator code or a recovery code."""

    code = fields.String(
        required=True, validate=_second_factor_code, error_messages={"required": CODE_MESSAGE}
    )


class AuthenticatorCodeSchema(FormSchema):
    code = fields.String(
        required=True,
        validate=validate.Regexp(
            r"^\s*[0-9]{3}\s?[0-9]{3}\s*$",
            error="Enter the 6-digit code from your authenticator app.",
        ),
        error_messages={"required": "Enter the 6-digit code from your authenticator app."},
    )


class RecoveryCodesSchema(AuthenticatorCodeSchema):
    current_password = PasswordField()


class ConfirmPasswordSchema(FormSchema):
    current_password = PasswordField()
