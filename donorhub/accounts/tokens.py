"""Signed, expiring, single-use links for verification, reset and e-mail change."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from donorhub.accounts.models import User


class InvalidToken(Exception):
    """The link is broken, expired, already used or not for this account."""


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        current_app.config["SECRET_KEY"], salt=f"donorhub.accounts.{purpose}"
    )


def account_fingerprint(user: User) -> str:
    """Changes whenever the password, sign-in time or session version changes.

    Binding a reset token to it makes the token single-use: using it changes the password,
    and signing in or changing the password in between kills it too.
    """
    material = "|".join(
        [
            user.password_hash,
            user.last_sign_in_at.isoformat() if user.last_sign_in_at else "",
            str(user.session_version),
            user.email,
        ]
    )
    return hashlib.sha256(material.encode()).hexdigest()[:24]


def address_digest(email: str) -> str:
    """Binds a link to an address without writing the address into the link (a token's
    payload is only signed, so anyone holding the link can read it)."""
    secret = current_app.config["SECRET_KEY"].encode()
    message = f"donorhub.accounts.address|{email}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


def make_token(purpose: str, payload: dict[str, Any]) -> str:
    return _serializer(purpose).dumps(payload)


def read_token(purpose: str, token: str, max_age: timedelta) -> dict[str, Any]:
    try:
        payload = _serializer(purpose).loads(token, max_age=int(max_age.total_seconds()))
    except (SignatureExpired, BadSignature) as error:
        raise InvalidToken(purpose) from error
    if not isinstance(payload, dict):
        raise InvalidToken(purpose)
    return payload
