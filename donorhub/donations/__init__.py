"""Donations: donors, gifts, recurring plans, receipts and Gift Aid."""

from flask import Blueprint

from donorhub.security import keep_private

bp = Blueprint("donations", __name__)
#: Staff pages for fundraisers: flagged gifts and the Gift Aid claim export.
staff_bp = keep_private(Blueprint("donations_staff", __name__, url_prefix="/staff/donations"))
