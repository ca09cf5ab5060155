"""Sponsorship: anonymized profiles of children waiting for a sponsor, and the sponsor portal."""

from flask import Blueprint

from donorhub.security import keep_private

#: The listing, profiles, match-me, holds and the portal: every page may show a child.
bp = keep_private(Blueprint("sponsorship", __name__))
#: Staff pages for safeguarding officers: the overview and sponsor suspensions.
staff_bp = keep_private(Blueprint("sponsorship_staff", __name__, url_prefix="/staff/sponsorship"))
