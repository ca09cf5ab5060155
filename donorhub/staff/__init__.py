"""The staff area at /staff: every view is for staff roles signed in with two factors."""

from flask import Blueprint

from donorhub.security import keep_private

bp = keep_private(Blueprint("staff", __name__, url_prefix="/staff"))
