"""Donations: donors, gifts, recurring plans, receipts and Gift Aid."""

from flask import Blueprint

bp = Blueprint("donations", __name__)
#: Staff pages for fundraisers: flagged gifts and the Gift Aid claim export.
staff_bp = Blueprint("donations_staff", __name__, url_prefix="/staff/donations")
