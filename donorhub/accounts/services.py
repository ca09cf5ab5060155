"""Account rules: registration, sign-in, verification, reset, two factors, roles.

Services take the acting user as an argument, flush but never commit, and queue mail in the
same transaction (rules of the house, DESIGN.md section 2).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyotp
from flask import current_app
from sqlalchemy import select

from donorhub import urls
from donorhub.accounts import passwords, tokens
from donorhub.accounts.models import DataRequest, DataRequestKind, StaffRole, User, UserRole
from donorhub.database import utcnow
from donorhub.errors import DomainError
from donorhub.extensions import db
from donorhub.mail.services import queue_mail
from donorhub.staff.audit import record_audit

TOTP_STEP_SECONDS = 30


class WeakPassword(DomainError):
    def __init__(self, problems: list[str]):
        super().__init__(" ".join(problems))
        self.problems = problems


class WrongPassword(DomainError):
    """The current password given does not match."""


class EmailTaken(DomainError):
    """Another account already uses that e-mail address."""


def external_url(endpoint: str, **values) -> str:
    """An absolute link for e-mails, built from PUBLIC_BASE_URL, never from the Host header."""
    return urls.external_url(endpoint, **values)


def check_password_policy(password: str, email: str | None = None) -> None:
    config = current_app.config
    problems = passwords.password_problems(
        password, min_length=config["PASSWORD_MIN_LENGTH"],
        max_length=config["PASSWORD_MAX_LENGTH"], email=email)
    if problems:
        raise WeakPassword(problems)


def find_user_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == email.strip().lower()))


# Registration and verification -------------------------------------------------------------

def register_account(email: str, full_name: str, password: str) -> User | None:
    """Create a donor account and mail a verification link.

    When the address is taken, the owner is told by mail instead and nothing else changes;
    the caller shows the same page either way, so registration cannot reveal who has an account.

    :raises WeakPassword: before anything is written.
    """
    check_password_policy(password, email)
    password_hash = passwords.hash_password(password)  # both branches pay for one hash
    existing = find_user_by_email(email)
    if existing is not None:
        queue_mail(existing.email, "accounts/already_registered",
                   subject="Someone tried to create an account with your address",
                   sign_in_url=external_url("accounts.sign_in"),
                   reset_url=external_url("accounts.forgot_password"))
        return None
    user = User(email=email, full_name=full_name, password_hash=password_hash)
    db.session.add(user)
    db.session.flush()
    send_verification(user)
    return user


def send_verification(user: User) -> None:
    token = tokens.make_token("verify", {"uid": user.id, "email": user.email})
    queue_mail(user.email, "accounts/verify", subject="Confirm your e-mail address",
               sensitive=True, name=user.full_name,
               verify_url=external_url("accounts.verify_email", token=token))


def verify_email(token: str) -> User:
    """:raises tokens.InvalidToken: the link is broken, expired or for an old address."""
    payload = tokens.read_token("verify", token, current_app.config["VERIFY_TOKEN_MAX_AGE"])
    user = db.session.get(User, payload.get("uid"))
    if user is None or user.email != payload.get("email") or user.is_disabled:
        raise tokens.InvalidToken("verify")
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
    return user


# Signing in --------------------------------------------------------------------------------

def authenticate(email: str, password: str) -> User | None:
    """The account for these credentials, or None, taking the same time either way."""
    user = find_user_by_email(email)
    if user is None:
        passwords.burn_equal_time(password)
        return None
    if not passwords.verify_password(user.password_hash, password):
        return None
    if user.is_disabled:
        return None
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    user.last_sign_in_at = utcnow()
    return user


def load_user_from_id(user_id_with_version: str) -> User | None:
    """Flask-Login's loader: a stale session version means the session was ended."""
    user_id, _, version = user_id_with_version.partition(".")
    if not user_id.isdigit() or not version.isdigit():
        return None
    user = db.session.get(User, int(user_id))
    if user is None or user.is_disabled or user.session_version != int(version):
        return None
    return user


# Passwords ---------------------------------------------------------------------------------

def request_password_reset(email: str) -> None:
    """Mail a reset link when the account exists; say nothing either way."""
    user = find_user_by_email(email)
    if user is None or user.is_disabled:
        return
    token = tokens.make_token("reset", {"uid": user.id, "fp": tokens.account_fingerprint(user)})
    queue_mail(user.email, "accounts/reset", subject="Reset your password", sensitive=True,
               name=user.full_name, reset_url=external_url("accounts.reset_password",
                                                           token=token))


def user_for_reset_token(token: str) -> User:
    """:raises tokens.InvalidToken: the link is broken, expired, used or outdated."""
    payload = tokens.read_token("reset", token, current_app.config["RESET_TOKEN_MAX_AGE"])
    user = db.session.get(User, payload.get("uid"))
    if (user is None or user.is_disabled
            or payload.get("fp") != tokens.account_fingerprint(user)):
        raise tokens.InvalidToken("reset")
    return user


def reset_password(token: str, new_password: str) -> User:
    user = user_for_reset_token(token)
    set_password(user, new_password)
    # Following the link proved the person reads this mailbox.
    user.email_verified_at = user.email_verified_at or utcnow()
    return user


def change_password(user: User, current_password: str, new_password: str) -> None:
    if not passwords.verify_password(user.password_hash, current_password):
        raise WrongPassword("Your current password is not right.")
    set_password(user, new_password)


def set_password(user: User, new_password: str) -> None:
    check_password_policy(new_password, user.email)
    user.password_hash = passwords.hash_password(new_password)
    user.password_changed_at = utcnow()
    user.end_all_sessions()
    queue_mail(user.email, "accounts/password_changed", subject="Your password was changed",
               name=user.full_name, reset_url=external_url("accounts.forgot_password"))


# E-mail address ----------------------------------------------------------------------------

def request_email_change(user: User, new_email: str, current_password: str) -> None:
    if not passwords.verify_password(user.password_hash, current_password):
        raise WrongPassword("Your current password is not right.")
    new_email = new_email.strip().lower()
    if new_email == user.email:
        raise DomainError("That is already your e-mail address.")
    if find_user_by_email(new_email) is not None:
        # Say nothing to the requester that they could not learn from registering; tell the
        # owner of the address instead.
        queue_mail(new_email, "accounts/already_registered",
                   subject="Someone tried to use your address for another account",
                   sign_in_url=external_url("accounts.sign_in"),
                   reset_url=external_url("accounts.forgot_password"))
        return
    token = tokens.make_token("change-email", {"uid": user.id, "old": user.email,
                                               "new": new_email})
    queue_mail(new_email, "accounts/confirm_new_email", subject="Confirm your new e-mail address",
               sensitive=True, name=user.full_name,
               confirm_url=external_url("accounts.confirm_email_change", token=token))
    queue_mail(user.email, "accounts/email_change_requested",
               subject="A change of e-mail address was requested", name=user.full_name)


def confirm_email_change(token: str) -> User:
    payload = tokens.read_token("change-email", token, current_app.config["VERIFY_TOKEN_MAX_AGE"])
    user = db.session.get(User, payload.get("uid"))
    if user is None or user.is_disabled or user.email != payload.get("old"):
        raise tokens.InvalidToken("change-email")
    new_email = str(payload.get("new"))
    if find_user_by_email(new_email) is not None:
        raise EmailTaken("That address is now used by another account.")
    user.email = new_email
    user.email_verified_at = utcnow()
    return user


# Account deletion --------------------------------------------------------------------------

def request_account_deletion(user: User, current_password: str) -> DataRequest:
    if not passwords.verify_password(user.password_hash, current_password):
        raise WrongPassword("Your current password is not right.")
    existing = db.session.scalar(select(DataRequest).where(
        DataRequest.user_id == user.id, DataRequest.kind == DataRequestKind.ERASURE,
        DataRequest.status == "requested"))
    if existing is not None:
        return existing
    request = DataRequest(user_id=user.id, kind=DataRequestKind.ERASURE)
    user.deletion_requested_at = utcnow()
    db.session.add(request)
    db.session.flush()
    queue_mail(user.email, "accounts/deletion_requested",
               subject="We have your request to delete your account", name=user.full_name)
    queue_mail(current_app.config["DATA_PROTECTION_EMAIL"], "accounts/deletion_to_staff",
               subject=f"Erasure request #{request.id}", request_id=request.id,
               user_id=user.id)
    return request


# Staff and roles ---------------------------------------------------------------------------

def create_staff_account(email: str, full_name: str, password: str, role: StaffRole,
                         actor: User | None) -> User:
    """A verified account holding `role`; it must enrol two factors at first sign-in."""
    check_password_policy(password, email)
    email = email.strip().lower()
    user = find_user_by_email(email)
    if user is None:
        user = User(email=email, full_name=full_name,
                    password_hash=passwords.hash_password(password),
                    email_verified_at=utcnow())
        db.session.add(user)
    elif user.has_role(role):
        raise DomainError(f"That account already has the {role.value} role.")
    user.roles.append(UserRole(role=role))
    db.session.flush()
    record_audit(actor, "staff.role_granted", "user", user.id, {"role": role.value})
    return user


def set_account_disabled(actor: User | None, user: User, disabled: bool) -> None:
    user.is_disabled = disabled
    user.end_all_sessions()
    record_audit(actor, "account.disabled" if disabled else "account.enabled", "user",
                 user.id, {})


# Two-factor sign-in ------------------------------------------------------------------------

@dataclass(frozen=True)
class TotpEnrolment:
    secret: str
    provisioning_uri: str


def begin_totp_enrolment(user: User) -> TotpEnrolment:
    if user.totp_pending_secret is None:
        user.totp_pending_secret = pyotp.random_base32()
    uri = pyotp.TOTP(user.totp_pending_secret).provisioning_uri(
        name=user.email, issuer_name=current_app.config["TOTP_ISSUER"])
    return TotpEnrolment(secret=user.totp_pending_secret, provisioning_uri=uri)


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // TOTP_STEP_SECONDS)


def _code_matches(secret: str, code: str, step: int) -> bool:
    expected = pyotp.TOTP(secret).at(step * TOTP_STEP_SECONDS)
    return pyotp.utils.strings_equal(expected, code)


def finish_totp_enrolment(user: User, code: str, now: float | None = None) -> bool:
    code = "".join(code.split())
    step = current_step(now)
    if user.totp_pending_secret is None or not _code_matches(user.totp_pending_secret, code,
                                                             step):
        return False
    user.totp_secret = user.totp_pending_secret
    user.totp_pending_secret = None
    user.totp_last_step = step
    record_audit(user, "staff.totp_enrolled", "user", user.id, {})
    return True


def verify_totp(user: User, code: str, now: float | None = None) -> bool:
    """Only the current 30-second step, and never a step already used (no replays)."""
    code = "".join(code.split())
    step = current_step(now)
    if user.totp_secret is None:
        return False
    if user.totp_last_step is not None and step <= user.totp_last_step:
        return False
    if not _code_matches(user.totp_secret, code, step):
        return False
    user.totp_last_step = step
    return True


