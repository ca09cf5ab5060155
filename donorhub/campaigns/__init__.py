"""Campaigns: staff-run appeals with goals, public pages, progress and a public JSON total."""

from flask import Blueprint

from donorhub.security import keep_private

bp = Blueprint("campaigns", __name__)
#: Staff pages for fundraisers: campaigns and exchange rates (/staff/campaigns, /staff/rates).
staff_bp = keep_private(Blueprint("campaigns_staff", __name__, url_prefix="/staff"))
