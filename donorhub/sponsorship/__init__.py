"""Sponsorship: anonymized profiles of children waiting for a sponsor, and the sponsor portal."""

from flask import Blueprint

bp = Blueprint("sponsorship", __name__)
#: Staff pages for safeguarding officers: the overview and sponsor suspensions.
staff_bp = Blueprint("sponsorship_staff", __name__, url_prefix="/staff/sponsorship")
