"""Sponsorship: anonymized profiles of children waiting for a sponsor, and the sponsor portal."""

from flask import Blueprint

bp = Blueprint("sponsorship", __name__)
