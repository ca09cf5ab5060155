"""Accounts: registration, sign-in, verification, password reset, two factors, settings."""

from flask import Blueprint

bp = Blueprint("accounts", __name__, url_prefix="/account")
